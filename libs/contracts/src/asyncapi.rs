//! The event catalogue as an AsyncAPI 3 document, generated from the descriptors of
//! `proto/crm/v1/events.proto` (messages, comments, protovalidate rules, the platform's
//! options), so it cannot drift from the messages: one channel per stream kind, one
//! message per event type and schema version, a JSON Schema per proto message. The
//! committed copy, `docs/contract/asyncapi.json`, is checked against it by a test
//! (`crm contract asyncapi` writes it).

use std::collections::BTreeMap;

use prost_reflect::{Kind, MessageDescriptor};
use serde_json::{json, Map, Value};

use crate::events::{catalogue, EventMessage};
use crate::options::is_personal;
use crate::schema::{comment, field, well_known};

/// Header of every published event, with what it holds (docs/events.md, "Headers").
pub const HEADERS: &[(&str, &str)] = &[
    ("Nats-Msg-Id", "the event id (server-side de-duplication)"),
    ("Crm-Event-Type", "the event type, e.g. `OwnerAssigned`"),
    ("Crm-Schema-Version", "the payload's schema version"),
    ("Crm-Stream-Id", "`customer-<uuid>` and the like"),
    ("Crm-Stream-Version", "the event's version in its stream"),
    (
        "Crm-Log-Position",
        "`<tx>.<position>` in the store's global log",
    ),
    ("Crm-Command-Id", "the command that produced the event"),
    ("Crm-Correlation-Id", "the conversation's correlation id"),
    ("Crm-Causation-Id", "what caused the command, when known"),
    ("Crm-Actor", "who issued the command"),
    ("Crm-Occurred-At", "RFC 3339 instant the command was issued"),
    (
        "Nats-Expected-Last-Sequence",
        "set by the relay: the stream's sequence before this message",
    ),
    (
        "Nats-Expected-Last-Msg-Id",
        "set by the relay within a batch: the previous event's id",
    ),
];

/// The document as committed in `docs/contract/asyncapi.json`: pretty JSON.
pub fn document() -> String {
    serde_json::to_string_pretty(&asyncapi()).expect("JSON values print")
}

/// The AsyncAPI 3.0 document of the events.
pub fn asyncapi() -> Value {
    let mut streams: BTreeMap<&str, Vec<&EventMessage>> = BTreeMap::new();
    for e in catalogue() {
        streams.entry(e.stream.as_str()).or_default().push(e);
    }
    let mut channels = Map::new();
    let mut operations = Map::new();
    let mut messages = Map::new();
    for (stream, events) in &streams {
        let mut refs = Map::new();
        for e in events {
            let name = e.message.name().to_string();
            refs.insert(
                name.clone(),
                json!({"$ref": format!("#/components/messages/{name}")}),
            );
            messages.insert(name, message(e));
        }
        let ops: Vec<Value> = refs
            .keys()
            .map(|n| json!({"$ref": format!("#/channels/{stream}/messages/{n}")}))
            .collect();
        channels.insert(stream.to_string(), channel(stream, events, refs));
        operations.insert(
            format!("receive_{stream}_events"),
            json!({"action": "receive", "channel": {"$ref": format!("#/channels/{stream}")},
                   "summary": format!("Consume the {stream} events (a durable pull consumer of the stream)"),
                   "messages": ops}),
        );
    }
    json!({
        "asyncapi": "3.0.0",
        "info": {
            "title": "CRM platform events",
            "version": "1.0.0",
            "description": "Every event the CRM platform publishes to JetStream (stream `CRM_EVENTS`). \
    Generated from proto/crm/v1/events.proto: each payload is that file's message in proto3 JSON \
    (field names as in the file). Fields marked `x-crm-personal` hold `enc:v1:` ciphertext that only \
    the query service reads (docs/events.md). Subjects carry the deployment's prefix (`crm` by default).",
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": schemas()},
    })
}

fn channel(stream: &str, events: &[&EventMessage], refs: Map<String, Value>) -> Value {
    let mut types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    types.dedup();
    json!({
        "address": format!("{{prefix}}.events.{stream}.{{partition}}.{{aggregateId}}.{{eventType}}"),
        "title": format!("{stream} events"),
        "description": format!("Events of the `{stream}` streams, in each stream's order."),
        "parameters": {
            "prefix": {"description": "The deployment's subject prefix (CRM_SUBJECT_PREFIX).", "default": "crm"},
            "partition": {"description": "fnv1a32(aggregate id) mod 16: every event of one aggregate has the same partition."},
            "aggregateId": {"description": "The aggregate's id as written in the stream id (`customer-<id>` → `<id>`)."},
            "eventType": {"description": "The event type.", "enum": types},
        },
        "messages": refs,
    })
}

fn message(e: &EventMessage) -> Value {
    let name = e.message.name();
    let mut m = json!({
        "name": e.event_type,
        "title": format!("{} (schema {})", e.event_type, e.schema_version),
        "contentType": "application/json",
        "headers": {"$ref": "#/components/schemas/EventHeaders"},
        "payload": {"allOf": [
            {"$ref": "#/components/schemas/EventEnvelope"},
            {"type": "object", "properties": {
                "event_type": {"const": e.event_type},
                "schema_version": {"const": e.schema_version},
                "payload": {"$ref": format!("#/components/schemas/{name}")},
            }},
        ]},
    });
    if let Some(text) = comment(
        e.message.parent_file().file_descriptor_proto(),
        e.message.path(),
    ) {
        m["summary"] = Value::String(text);
    }
    m
}

/// A JSON Schema for every message of `events.proto` and what they use, and the headers.
fn schemas() -> Value {
    let mut out = Map::new();
    let mut todo: Vec<MessageDescriptor> = crate::descriptors()
        .get_file_by_name("crm/v1/events.proto")
        .expect("events.proto is compiled")
        .messages()
        .collect();
    while let Some(m) = todo.pop() {
        if out.contains_key(m.name()) || well_known(&m).is_some() {
            continue;
        }
        for f in m.fields() {
            if let Kind::Message(inner) = f.kind() {
                todo.push(inner);
            }
        }
        out.insert(m.name().to_string(), object(&m));
    }
    let headers: Map<String, Value> = HEADERS
        .iter()
        .map(|(h, d)| (h.to_string(), json!({"type": "string", "description": d})))
        .collect();
    out.insert(
        "EventHeaders".into(),
        json!({"type": "object", "properties": headers,
               "required": ["Nats-Msg-Id", "Crm-Event-Type", "Crm-Schema-Version", "Crm-Stream-Id",
                            "Crm-Stream-Version", "Crm-Log-Position", "Crm-Command-Id"]}),
    );
    let sorted: BTreeMap<String, Value> = out.into_iter().collect();
    json!(sorted)
}

/// The JSON Schema of a message's proto3 JSON form as the platform writes it: every
/// field without presence is written (required); one with presence may be absent or
/// `null`.
fn object(m: &MessageDescriptor) -> Value {
    let file = m.parent_file();
    let mut properties = Map::new();
    let mut required = Vec::new();
    for f in m.fields() {
        let mut s = field(&f);
        if f.supports_presence() {
            s = json!({"anyOf": [s, {"type": "null"}]});
        } else {
            required.push(Value::String(f.name().to_string()));
        }
        if let Some(text) = comment(file.file_descriptor_proto(), f.path()) {
            s["description"] = Value::String(text);
        }
        if is_personal(&f) {
            s["x-crm-personal"] = Value::Bool(true);
        }
        properties.insert(f.name().to_string(), s);
    }
    let mut s = json!({"type": "object", "properties": properties, "required": required});
    if let Some(text) = comment(file.file_descriptor_proto(), m.path()) {
        s["description"] = Value::String(text);
    }
    s
}

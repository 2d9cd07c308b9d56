//! The OpenAPI 3.1 document of the HTTP command API, generated from the descriptors of
//! `proto/crm/v1/commands.proto` at run time (messages, comments, protovalidate rules:
//! closed sets as `enum`, UUIDs as `format: uuid`, bounds, patterns, and the rules across
//! fields as `x-rules` and in the description), so it cannot drift from the contract.
//! Served at `GET /openapi.json` and committed as `docs/contract/commands.openapi.json`.

use std::sync::LazyLock;

use prost_reflect::{FieldDescriptor, Kind, MessageDescriptor};
use serde_json::{json, Map, Value};

use crate::options::message_rules;
use crate::schema::{comment, field};

/// The document, as served and committed: pretty JSON.
pub fn document() -> &'static str {
    static DOC: LazyLock<String> =
        LazyLock::new(|| serde_json::to_string_pretty(&openapi()).expect("JSON values print"));
    &DOC
}

/// The OpenAPI document of the commands.
pub fn openapi() -> Value {
    let file = crate::descriptors()
        .get_file_by_name("crm/v1/commands.proto")
        .expect("commands.proto is compiled");
    let mut schemas = Map::new();
    let mut paths = Map::new();
    for m in file.messages() {
        schemas.insert(m.name().to_string(), object(&m));
        if is_command(&m) {
            let name = snake(m.name());
            paths.insert(format!("/v1/commands/{name}"), operation(&m, &name));
        }
    }
    schemas.insert("ProblemDetails".into(), problem_details());
    json!({
        "openapi": "3.1.0",
        "info": {"title": "CRM command API", "version": "1.1.0",
                 "description": "Commands of the CRM event platform. Generated from proto/crm/v1 (docs/api.md)."},
        "paths": paths,
        "security": [{"bearer": []}],
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                "description": "A token of the identity provider the platform trusts, or `crm token` in development (docs/api.md, Authentication and roles); 401 without one, 403 when its role or scope does not allow the command or its actor is the platform's own"}},
            "schemas": schemas,
            "responses": {"Problem": {"description": "Refused; nothing was changed",
                "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/ProblemDetails"}}}}}
        }
    })
}

fn is_command(m: &MessageDescriptor) -> bool {
    m.fields().any(|f| {
        f.name() == "meta"
            && matches!(f.kind(), Kind::Message(meta) if meta.name() == "CommandMeta")
    })
}

fn snake(name: &str) -> String {
    let mut s = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            s.push('_');
        }
        s.push(c.to_ascii_lowercase());
    }
    s
}

/// A message's schema: every field without presence is required (a command's `meta`
/// too); the rules across fields listed in `x-rules` and in the description.
fn object(m: &MessageDescriptor) -> Value {
    let file = m.parent_file();
    let mut properties = Map::new();
    let mut required = Vec::new();
    for f in m.fields() {
        let mut s = number_or_string(&f, field(&f));
        if let Some(text) = comment(file.file_descriptor_proto(), f.path()) {
            s["description"] = Value::String(text);
        }
        if !f.supports_presence() || f.name() == "meta" {
            required.push(Value::String(f.name().to_string()));
        }
        properties.insert(f.name().to_string(), s);
    }
    let mut s = json!({"type": "object", "additionalProperties": false,
                       "properties": properties, "required": required});
    let mut description = comment(file.file_descriptor_proto(), m.path()).unwrap_or_default();
    let rules = message_rules(m);
    if !rules.is_empty() {
        for r in &rules {
            description.push_str(&format!(" Rule `{}`: {}.", r.id, r.message));
        }
        s["x-rules"] = json!(rules
            .iter()
            .map(|r| json!({"id": r.id, "message": r.message, "cel": r.expression}))
            .collect::<Vec<_>>());
    }
    if !description.is_empty() {
        s["description"] = Value::String(description.trim().to_string());
    }
    s
}

/// A 64-bit integer field's schema as proto3 JSON reads it: a number, or its decimal
/// text (what standard writers print, since a JSON number loses precision past 2^53).
fn number_or_string(f: &FieldDescriptor, s: Value) -> Value {
    let wide = matches!(
        f.kind(),
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 | Kind::Uint64 | Kind::Fixed64
    );
    if !wide || f.is_list() {
        return s;
    }
    let pattern = if s.get("minimum").is_some() {
        "^[0-9]+$"
    } else {
        "^-?[0-9]+$"
    };
    json!({"oneOf": [s, {"type": "string", "pattern": pattern}]})
}

fn operation(m: &MessageDescriptor, name: &str) -> Value {
    let summary = comment(m.parent_file().file_descriptor_proto(), m.path())
        .unwrap_or_else(|| name.to_string());
    let tag = if name.contains("manager") {
        "managers"
    } else if name.contains("complaint") {
        "complaints"
    } else {
        "customers"
    };
    json!({"post": {
        "operationId": name,
        "summary": summary,
        "tags": [tag],
        "parameters": [{"name": "Idempotency-Key", "in": "header", "required": false,
            "description": "Alternative to meta.command_id (must equal it when both are given)",
            "schema": {"type": "string", "format": "uuid"}}],
        "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{}", m.name())}}}},
        "responses": {
            "200": {"description": "Accepted (or a repeat of an accepted command id: duplicate = true)",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/CommandReply"}}}},
            "400": {"$ref": "#/components/responses/Problem"},
            "401": {"$ref": "#/components/responses/Problem"},
            "403": {"$ref": "#/components/responses/Problem"},
            "404": {"$ref": "#/components/responses/Problem"},
            "409": {"$ref": "#/components/responses/Problem"},
            "413": {"$ref": "#/components/responses/Problem"},
            "415": {"$ref": "#/components/responses/Problem"},
            "422": {"$ref": "#/components/responses/Problem"},
            "503": {"$ref": "#/components/responses/Problem"}
        }
    }})
}

fn problem_details() -> Value {
    json!({"type": "object", "description": "RFC 9457 problem details",
        "properties": {
            "type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
            "detail": {"type": "string"},
            "code": {"type": "string", "description": "stable machine code (docs/api.md), or the id of the contract's rule refused"},
            "command_id": {"type": "string"}},
        "required": ["type", "title", "status", "code"]})
}

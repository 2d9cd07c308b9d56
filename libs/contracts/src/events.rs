//! The event catalogue: the payload message of every stored event type and schema
//! version (`proto/crm/v1/events.proto`), found by its `(crm.v1.event)` option.

use std::sync::LazyLock;

use prost_reflect::{DeserializeOptions, DynamicMessage, MessageDescriptor};

use crate::descriptors;
use crate::options::extension;

/// One event type at one schema version, and its payload's message.
#[derive(Debug, Clone)]
pub struct EventMessage {
    /// As stored and as the `Crm-Event-Type` header carries it.
    pub event_type: String,
    pub schema_version: u32,
    /// The stream kind its events are appended to (`customer`, `manager`, `policy`,
    /// `access`, `verification`): the subject's `<aggregate>` token.
    pub stream: String,
    pub message: MessageDescriptor,
}

/// A stored payload that is not its event's message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    #[error("no message describes {0} schema version {1}")]
    Unknown(String, u32),
    #[error("the payload of {0} is not its message: {1}")]
    Mismatch(String, String),
}

/// Every event message of the contract, in the order `events.proto` declares them.
pub fn catalogue() -> &'static [EventMessage] {
    static CATALOGUE: LazyLock<Vec<EventMessage>> = LazyLock::new(|| {
        let pool = descriptors();
        let option = extension("crm.v1.event");
        pool.all_messages()
            .filter_map(|message| {
                let options = message.options();
                if !options.has_extension(&option) {
                    return None;
                }
                let event = options.get_extension(&option);
                let event = event.as_message()?;
                let text = |name: &str| {
                    event
                        .get_field_by_name(name)
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default()
                };
                Some(EventMessage {
                    event_type: text("type"),
                    schema_version: event
                        .get_field_by_name("schema_version")
                        .and_then(|v| v.as_u32())
                        .unwrap_or_default(),
                    stream: text("stream"),
                    message,
                })
            })
            .collect()
    });
    &CATALOGUE
}

/// The message of `event_type` at `schema_version`.
pub fn message_for(event_type: &str, schema_version: u32) -> Option<&'static EventMessage> {
    catalogue()
        .iter()
        .find(|e| e.event_type == event_type && e.schema_version == schema_version)
}

/// A stored payload read as its event's message (proto3 JSON; a field the message does
/// not have is refused, as a consumer on this contract would refuse it if it denied
/// unknown fields).
pub fn read_payload(
    event_type: &str,
    schema_version: u32,
    payload: &serde_json::Value,
) -> Result<DynamicMessage, PayloadError> {
    let event = message_for(event_type, schema_version)
        .ok_or_else(|| PayloadError::Unknown(event_type.to_string(), schema_version))?;
    DynamicMessage::deserialize_with_options(
        event.message.clone(),
        payload,
        &DeserializeOptions::new().deny_unknown_fields(true),
    )
    .map_err(|e| PayloadError::Mismatch(event_type.to_string(), e.to_string()))
}

/// A published message's body (`EventEnvelope`, JSON) read by the contract: the envelope
/// with unknown fields refused, and its payload as its event's message.
pub fn read_envelope(body: &[u8]) -> Result<DynamicMessage, PayloadError> {
    let mismatch =
        |e: &dyn std::fmt::Display| PayloadError::Mismatch("EventEnvelope".into(), e.to_string());
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| mismatch(&e))?;
    let envelope = descriptors()
        .get_message_by_name("crm.v1.EventEnvelope")
        .expect("events.proto defines the envelope");
    DynamicMessage::deserialize_with_options(
        envelope,
        &value,
        &DeserializeOptions::new().deny_unknown_fields(true),
    )
    .map_err(|e| mismatch(&e))?;
    let event_type = value["event_type"].as_str().unwrap_or_default();
    let version = value["schema_version"]
        .as_u64()
        .and_then(|v| u32::try_from(v).ok())
        .unwrap_or_default();
    read_payload(event_type, version, &value["payload"])
}

//! What a published event looks like: a JSON body (the stored event) and headers that
//! let consumers route and trace without parsing the body.

use async_nats::HeaderMap;
use bytes::Bytes;
use crm_eventstore::{LogPosition, RecordedEvent};

/// Header names, documented in `docs/events.md`.
pub mod headers {
    pub const EVENT_TYPE: &str = "Crm-Event-Type";
    pub const SCHEMA_VERSION: &str = "Crm-Schema-Version";
    pub const STREAM_ID: &str = "Crm-Stream-Id";
    pub const STREAM_VERSION: &str = "Crm-Stream-Version";
    pub const LOG_POSITION: &str = "Crm-Log-Position";
    pub const COMMAND_ID: &str = "Crm-Command-Id";
    pub const CORRELATION_ID: &str = "Crm-Correlation-Id";
    pub const CAUSATION_ID: &str = "Crm-Causation-Id";
    pub const ACTOR: &str = "Crm-Actor";
    pub const OCCURRED_AT: &str = "Crm-Occurred-At";
}

/// The message body: the stored event as JSON, identical to what the store returns.
pub type EventEnvelope = RecordedEvent;

/// Headers of a published event (`Nats-Msg-Id` is set by the publisher).
pub fn headers_for<P>(event: &RecordedEvent<P>) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(headers::EVENT_TYPE, event.event_type.as_str());
    h.insert(
        headers::SCHEMA_VERSION,
        event.schema_version.to_string().as_str(),
    );
    h.insert(headers::STREAM_ID, event.stream_id.as_str());
    h.insert(
        headers::STREAM_VERSION,
        event.stream_version.to_string().as_str(),
    );
    h.insert(
        headers::LOG_POSITION,
        event.log_position.to_string().as_str(),
    );
    h.insert(
        headers::COMMAND_ID,
        event.metadata.command_id.to_string().as_str(),
    );
    h.insert(
        headers::CORRELATION_ID,
        event.metadata.correlation_id.to_string().as_str(),
    );
    if let Some(c) = event.metadata.causation_id {
        h.insert(headers::CAUSATION_ID, c.to_string().as_str());
    }
    h.insert(headers::ACTOR, event.metadata.actor.as_str());
    h.insert(
        headers::OCCURRED_AT,
        event.metadata.occurred_at.to_rfc3339().as_str(),
    );
    h
}

/// The body of `event`, whose payload is a JSON tree or (the relay's) the store's JSON
/// text as a [`serde_json::value::RawValue`]: the same document either way.
pub fn body_for<P: serde::Serialize>(event: &RecordedEvent<P>) -> Bytes {
    Bytes::from(serde_json::to_vec(event).expect("events serialise"))
}

/// Parse a message body back into the event.
pub fn decode(body: &[u8]) -> Result<EventEnvelope, serde_json::Error> {
    serde_json::from_slice(body)
}

/// The log position a published message carries, if any.
pub fn log_position(h: &HeaderMap) -> Option<LogPosition> {
    h.get(headers::LOG_POSITION)?.as_str().parse().ok()
}

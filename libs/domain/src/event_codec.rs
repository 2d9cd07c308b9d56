//! Decoding stored events: the type name and schema version select the payload type.
//! A future schema version gets an upcaster here; stored events are never rewritten.

/// A stored event this code cannot read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("unknown event type {0}")]
    UnknownType(String),
    #[error("event type {0} has no schema version {1}")]
    UnknownVersion(String, u32),
    #[error("payload of {0} does not match its schema: {1}")]
    BadPayload(String, String),
}

pub(crate) fn decode_payload<T: serde::de::DeserializeOwned>(
    event_type: &str,
    payload: &serde_json::Value,
) -> Result<T, DecodeError> {
    T::deserialize(payload)
        .map_err(|e| DecodeError::BadPayload(event_type.to_string(), e.to_string()))
}

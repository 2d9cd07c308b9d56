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

/// A stored payload, as its readers hold it: parsed JSON, or the JSON text (read so by
/// a rebuild, which then builds no JSON tree per event).
pub trait Payload {
    fn deserialize_into<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error>;
}

impl Payload for serde_json::Value {
    fn deserialize_into<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        T::deserialize(self)
    }
}

impl Payload for str {
    fn deserialize_into<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_str(self)
    }
}

impl Payload for String {
    fn deserialize_into<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_str(self)
    }
}

pub(crate) fn decode_payload<T: serde::de::DeserializeOwned, P: Payload + ?Sized>(
    event_type: &str,
    payload: &P,
) -> Result<T, DecodeError> {
    payload
        .deserialize_into()
        .map_err(|e| DecodeError::BadPayload(event_type.to_string(), e.to_string()))
}

//! The bus: NATS JetStream as the distribution log. Where events are published
//! ([`relay`]), what the stream looks like ([`stream`]), how subjects and headers are
//! spelled ([`subjects`], [`envelope`]). See `docs/events.md`.
#![forbid(unsafe_code)]

pub mod connect;
pub mod envelope;
pub mod intake;
pub mod permissions;
pub mod relay;
pub mod stream;
pub mod subjects;

pub use envelope::EventEnvelope;
pub use relay::{Relay, RelayConfig, RelayError};
pub use subjects::Subjects;

#[cfg(feature = "testing")]
pub mod testing;

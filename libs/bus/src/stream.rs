//! The JetStream stream that carries every event.

use std::time::Duration;

use async_nats::jetstream::{self, stream};

use crate::subjects::Subjects;

/// Stream settings; defaults suit one server, `replicas: 3` suits the cluster.
#[derive(Debug, Clone)]
pub struct StreamSpec {
    pub name: String,
    pub subjects: Subjects,
    pub replicas: usize,
    /// Window in which the server drops a repeated `Nats-Msg-Id`.
    pub duplicate_window: Duration,
}

impl StreamSpec {
    pub fn new(name: impl Into<String>, subjects: Subjects) -> Self {
        Self {
            name: name.into(),
            subjects,
            replicas: 1,
            duplicate_window: Duration::from_secs(120),
        }
    }

    pub fn config(&self) -> stream::Config {
        stream::Config {
            name: self.name.clone(),
            description: Some("CRM events, published by the relay in commit-safe order".into()),
            subjects: vec![self.subjects.all_events()],
            storage: stream::StorageType::File,
            retention: stream::RetentionPolicy::Limits,
            // The stream is the distribution log, not an archive: the event store is the
            // source of truth. Still, nothing is dropped by default.
            max_messages: -1,
            max_bytes: -1,
            discard: stream::DiscardPolicy::Old,
            num_replicas: self.replicas,
            duplicate_window: self.duplicate_window,
            allow_direct: true,
            ..Default::default()
        }
    }
}

/// Create the stream, or check the existing one carries the expected subjects.
pub async fn ensure(
    js: &jetstream::Context,
    spec: &StreamSpec,
) -> Result<stream::Stream, async_nats::Error> {
    let mut stream = js.get_or_create_stream(spec.config()).await?;
    let info = stream.info().await?;
    let wanted = spec.subjects.all_events();
    if !info.config.subjects.iter().any(|s| s == &wanted) {
        return Err(format!(
            "stream {} exists with subjects {:?}, expected {wanted}",
            spec.name, info.config.subjects
        )
        .into());
    }
    Ok(stream)
}

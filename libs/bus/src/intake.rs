//! Durable ingestion ("publish and forget"): a system publishes a command to
//! `<prefix>.intake.<name>` in the intake stream (work-queue retention: a command leaves
//! it once decided), with `Nats-Msg-Id` = its command id; the command service decides it
//! at least once and publishes its outcome, once per command id, to
//! `<prefix>.outcomes.<name>.<command id>` in the outcomes stream, which a publisher
//! follows or replays (docs/api.md, "Durable ingestion").

use std::time::Duration;

use async_nats::jetstream::{self, stream};

use crate::subjects::Subjects;

/// The two streams of durable ingestion.
#[derive(Debug, Clone)]
pub struct IntakeSpec {
    /// The commands waiting to be decided (`CRM_INTAKE`).
    pub commands: String,
    /// The outcomes (`CRM_OUTCOMES`).
    pub outcomes: String,
    pub subjects: Subjects,
    pub replicas: usize,
    /// How long outcomes are kept for publishers to replay.
    pub outcomes_max_age: Duration,
}

/// Name of the command service's durable consumer of the intake stream.
pub const CONSUMER: &str = "crm-intake";

impl IntakeSpec {
    pub fn new(
        commands: impl Into<String>,
        outcomes: impl Into<String>,
        subjects: Subjects,
    ) -> Self {
        Self {
            commands: commands.into(),
            outcomes: outcomes.into(),
            subjects,
            replicas: 1,
            outcomes_max_age: Duration::from_secs(7 * 86_400),
        }
    }

    /// The commands: kept until decided (work queue), nothing dropped, a repeated
    /// `Nats-Msg-Id` within two minutes dropped by the server.
    pub fn commands_config(&self) -> stream::Config {
        stream::Config {
            name: self.commands.clone(),
            description: Some("CRM commands published for durable ingestion".into()),
            subjects: vec![self.subjects.all_intake()],
            storage: stream::StorageType::File,
            retention: stream::RetentionPolicy::WorkQueue,
            discard: stream::DiscardPolicy::New,
            num_replicas: self.replicas,
            duplicate_window: Duration::from_secs(120),
            ..Default::default()
        }
    }

    /// The outcomes: one per command id (de-duplicated by `Nats-Msg-Id` too), kept for
    /// [`IntakeSpec::outcomes_max_age`], readable by subject (direct get).
    pub fn outcomes_config(&self) -> stream::Config {
        stream::Config {
            name: self.outcomes.clone(),
            description: Some("Outcomes of the CRM commands taken from the intake".into()),
            subjects: vec![self.subjects.all_outcomes()],
            storage: stream::StorageType::File,
            retention: stream::RetentionPolicy::Limits,
            max_age: self.outcomes_max_age,
            max_messages_per_subject: 1,
            discard: stream::DiscardPolicy::Old,
            num_replicas: self.replicas,
            duplicate_window: Duration::from_secs(120),
            allow_direct: true,
            ..Default::default()
        }
    }

    /// Create both streams when missing (an existing stream is left as it is).
    pub async fn ensure(
        &self,
        js: &jetstream::Context,
    ) -> Result<(stream::Stream, stream::Stream), async_nats::Error> {
        let commands = js.get_or_create_stream(self.commands_config()).await?;
        let outcomes = js.get_or_create_stream(self.outcomes_config()).await?;
        Ok((commands, outcomes))
    }
}

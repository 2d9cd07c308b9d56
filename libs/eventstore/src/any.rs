//! Pick the backend at run time from a URL: `postgres://…` or `sqlite://path`.

use uuid::Uuid;

use crate::error::{AppendError, StoreError};
use crate::migrations::Schema;
use crate::model::*;
use crate::postgres::PgEventStore;
use crate::sqlite::SqliteEventStore;
use crate::{Append, Checkpoints, GlobalCheckpoint, Log, Lookups, Seals, Streams, SubjectKeys};

/// Either backend, chosen by URL; dispatches statically (no boxing on the hot path).
#[derive(Clone)]
pub enum AnyEventStore {
    Postgres(PgEventStore),
    Sqlite(SqliteEventStore),
}

impl AnyEventStore {
    /// `postgres://user@host/db` or `sqlite:///path/to/file.db` / `sqlite://relative.db`.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        Self::connect_with(url, max_connections, Schema::Migrate).await
    }

    /// As [`Self::connect`], PostgreSQL's schema migrated or checked as `schema` says
    /// (SQLite, the embedded store, always migrates).
    pub async fn connect_with(
        url: &str,
        max_connections: u32,
        schema: Schema,
    ) -> Result<Self, StoreError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Self::Postgres(
                PgEventStore::connect_with(url, max_connections, schema).await?,
            ))
        } else if let Some(path) = url.strip_prefix("sqlite://") {
            Ok(Self::Sqlite(SqliteEventStore::open(path).await?))
        } else {
            Err(StoreError::Config(format!(
                "store url {url:?} must start with postgres:// or sqlite://"
            )))
        }
    }

    /// Whether the database answers now (readiness).
    pub async fn ping(&self) -> Result<(), StoreError> {
        match self {
            Self::Postgres(s) => s.ping().await,
            Self::Sqlite(s) => s.ping().await,
        }
    }

    /// This store appends only verification results (`crm audit verify`'s): on
    /// PostgreSQL through the wrapper an auditor's read-only role may call
    /// ([`PgEventStore::verification_records_only`]); the embedded store has no roles.
    pub fn verification_records_only(self) -> Self {
        match self {
            Self::Postgres(s) => Self::Postgres(s.verification_records_only()),
            s @ Self::Sqlite(_) => s,
        }
    }

    pub fn backend(&self) -> &'static str {
        match self {
            Self::Postgres(_) => "postgres",
            Self::Sqlite(_) => "sqlite",
        }
    }
}

macro_rules! dispatch {
    ($self:ident, $s:ident => $e:expr) => {
        match $self {
            AnyEventStore::Postgres($s) => $e,
            AnyEventStore::Sqlite($s) => $e,
        }
    };
}

impl crate::Horizon for AnyEventStore {
    async fn settle(&self) -> Result<std::time::Duration, StoreError> {
        match self {
            Self::Postgres(s) => s.settle().await,
            Self::Sqlite(s) => s.settle().await,
        }
    }
}

impl Append for AnyEventStore {
    async fn append_batch(
        &self,
        requests: Vec<AppendRequest>,
    ) -> Vec<Result<AppendOutcome, AppendError>> {
        dispatch!(self, s => s.append_batch(requests).await)
    }
}

impl Streams for AnyEventStore {
    async fn read_stream_range(
        &self,
        stream_id: &str,
        after_version: u64,
        up_to_version: u64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        dispatch!(self, s => s.read_stream_range(stream_id, after_version, up_to_version).await)
    }
    async fn stream_version(&self, stream_id: &str) -> Result<u64, StoreError> {
        dispatch!(self, s => s.stream_version(stream_id).await)
    }
    async fn stream_ids_with_prefix(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        dispatch!(self, s => s.stream_ids_with_prefix(prefix).await)
    }
}

impl Log for AnyEventStore {
    async fn read_all(
        &self,
        after: LogPosition,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        dispatch!(self, s => s.read_all(after, limit).await)
    }
    async fn read_all_text(
        &self,
        after: LogPosition,
        limit: usize,
    ) -> Result<Vec<RecordedEvent<String>>, StoreError> {
        dispatch!(self, s => s.read_all_text(after, limit).await)
    }
    async fn head(&self) -> Result<(u64, LogPosition), StoreError> {
        dispatch!(self, s => s.head().await)
    }
}

impl Lookups for AnyEventStore {
    async fn key_owner(&self, key: &str) -> Result<Option<String>, StoreError> {
        dispatch!(self, s => s.key_owner(key).await)
    }
    async fn counter(&self, key: &str) -> Result<i64, StoreError> {
        dispatch!(self, s => s.counter(key).await)
    }
    async fn counters(&self, keys: &[String]) -> Result<Vec<i64>, StoreError> {
        dispatch!(self, s => s.counters(keys).await)
    }
    async fn command_outcome(&self, command_id: Uuid) -> Result<Option<AppendOutcome>, StoreError> {
        dispatch!(self, s => s.command_outcome(command_id).await)
    }
}

impl Checkpoints for AnyEventStore {
    async fn load_checkpoint(&self, name: &str) -> Result<Option<Checkpoint>, StoreError> {
        dispatch!(self, s => s.load_checkpoint(name).await)
    }
    async fn save_checkpoint(&self, checkpoint: &Checkpoint) -> Result<(), StoreError> {
        dispatch!(self, s => s.save_checkpoint(checkpoint).await)
    }
}

impl SubjectKeys for AnyEventStore {
    async fn subject_key(&self, subject: &str) -> Result<SubjectKey, StoreError> {
        dispatch!(self, s => s.subject_key(subject).await)
    }
    async fn erase_subject_key(&self, subject: &str) -> Result<(), StoreError> {
        dispatch!(self, s => s.erase_subject_key(subject).await)
    }
}

impl Seals for AnyEventStore {
    async fn last_global_checkpoint(&self) -> Result<Option<GlobalCheckpoint>, StoreError> {
        dispatch!(self, s => s.last_global_checkpoint().await)
    }
    async fn global_checkpoints(
        &self,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<GlobalCheckpoint>, StoreError> {
        dispatch!(self, s => s.global_checkpoints(after_seq, limit).await)
    }
    async fn append_global_checkpoint(
        &self,
        checkpoint: &GlobalCheckpoint,
    ) -> Result<bool, StoreError> {
        dispatch!(self, s => s.append_global_checkpoint(checkpoint).await)
    }
}

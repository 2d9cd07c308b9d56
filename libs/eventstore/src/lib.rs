//! The event store: where events are stored, and the single source of truth.
//!
//! One trait, [`EventStore`], two backends: [`postgres::PgEventStore`] (server mode)
//! and [`sqlite::SqliteEventStore`] (embedded default). Both pass the same
//! conformance suite (`tests/conformance_*.rs`, cases in [`conformance`]).
//!
//! Guarantees every backend gives:
//! - an append is atomic per command and checks each stream's expected version;
//! - a command id is appended once; repeating it returns the first outcome;
//! - [`EventStore::read_all`] follows a commit-safe global order: a reader never skips an
//!   event because an event earlier in the order committed later;
//! - events are append-only at the database level.
#![forbid(unsafe_code)]

pub mod any;
pub mod chain;
pub mod error;
pub mod migrations;
pub mod model;
pub mod plan;
pub mod postgres;
pub mod sqlite;

#[cfg(feature = "testing")]
pub mod conformance;
#[cfg(feature = "testing")]
pub mod testing;

use std::future::Future;

pub use any::AnyEventStore;
pub use chain::{ChainHash, GlobalCheckpoint};

/// Test-only fault injection: called just before an append transaction commits; it may
/// sleep (a slow commit) and returns `true` to roll the transaction back instead.
#[cfg(feature = "testing")]
pub type BeforeCommit =
    std::sync::Arc<dyn Fn() -> std::pin::Pin<Box<dyn Future<Output = bool> + Send>> + Send + Sync>;
pub use error::{AppendError, Conflict, StoreError};
pub use model::*;

/// The values of `keys`, in their order, from the `(key, value)` rows found (0 for a
/// counter never changed): the shape every backend's [`EventStore::counters`] answers in.
pub fn counters_in_order(keys: &[String], found: Vec<(String, i64)>) -> Vec<i64> {
    let found: std::collections::HashMap<String, i64> = found.into_iter().collect();
    keys.iter()
        .map(|k| found.get(k).copied().unwrap_or(0))
        .collect()
}

/// The commit-safe horizon of the global log (ADR 0002): a reader sees an event once
/// every transaction that could still commit before it has ended.
pub trait Horizon {
    /// Wait until every transaction running at the call has ended; then the log holds,
    /// for readers, every event committed before the call. Answers how long it waited. On
    /// PostgreSQL transaction ids are the cluster's: a transaction in any database (a
    /// migration, a session left open) holds the horizon back, and a reader that read "to
    /// the end" without waiting could end short of events already committed.
    fn settle(&self) -> impl Future<Output = Result<std::time::Duration, StoreError>> + Send;
}

/// Storage for event streams with a commit-safe global log.
pub trait EventStore: Send + Sync + 'static {
    /// Append one command's events atomically.
    fn append(
        &self,
        request: AppendRequest,
    ) -> impl Future<Output = Result<AppendOutcome, AppendError>> + Send {
        async move {
            self.append_batch(vec![request])
                .await
                .pop()
                .expect("append_batch answers every request")
        }
    }

    /// Append several commands in one transaction (group commit). Each request is judged
    /// on its own, in order, exactly as if appended alone; one refusal does not affect
    /// the others. A storage failure fails every request of the batch.
    fn append_batch(
        &self,
        requests: Vec<AppendRequest>,
    ) -> impl Future<Output = Vec<Result<AppendOutcome, AppendError>>> + Send;

    /// Events of one stream with `stream_version > after_version`, in version order.
    fn read_stream(
        &self,
        stream_id: &str,
        after_version: u64,
    ) -> impl Future<Output = Result<Vec<RecordedEvent>, StoreError>> + Send {
        self.read_stream_range(stream_id, after_version, u64::MAX)
    }

    /// Events of one stream with `after_version < stream_version <= up_to_version`, in
    /// version order: a page of a stream (the query service reads a timeline page's
    /// payloads this way); `u64::MAX` for the rest of the stream.
    fn read_stream_range(
        &self,
        stream_id: &str,
        after_version: u64,
        up_to_version: u64,
    ) -> impl Future<Output = Result<Vec<RecordedEvent>, StoreError>> + Send;

    /// Up to `limit` events after `after` in commit-safe global order.
    fn read_all(
        &self,
        after: LogPosition,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<RecordedEvent>, StoreError>> + Send;

    /// As [`EventStore::read_all`], each payload as its JSON text rather than parsed:
    /// for readers that decode payloads into their own types (a rebuild reads the whole
    /// log this way, and builds no JSON tree per event).
    fn read_all_text(
        &self,
        after: LogPosition,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<RecordedEvent<String>>, StoreError>> + Send {
        async move {
            Ok(self
                .read_all(after, limit)
                .await?
                .into_iter()
                .map(|e| e.map_payload(|p| p.to_string()))
                .collect())
        }
    }

    /// Number of events in the stream (0 when it does not exist).
    fn stream_version(
        &self,
        stream_id: &str,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// The owner of a unique key, if claimed.
    fn key_owner(
        &self,
        key: &str,
    ) -> impl Future<Output = Result<Option<String>, StoreError>> + Send;

    /// Current value of a counter (0 when never changed).
    fn counter(&self, key: &str) -> impl Future<Output = Result<i64, StoreError>> + Send;

    /// Current values of several counters, in the order of `keys`.
    fn counters(
        &self,
        keys: &[String],
    ) -> impl Future<Output = Result<Vec<i64>, StoreError>> + Send {
        async move {
            let mut out = Vec::with_capacity(keys.len());
            for k in keys {
                out.push(self.counter(k).await?);
            }
            Ok(out)
        }
    }

    /// Ids of the streams whose id starts with `prefix`, in byte order.
    fn stream_ids_with_prefix(
        &self,
        prefix: &str,
    ) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send;

    /// The stored answer for a command id, if that command was appended.
    fn command_outcome(
        &self,
        command_id: uuid::Uuid,
    ) -> impl Future<Output = Result<Option<AppendOutcome>, StoreError>> + Send;

    /// Number of events stored and the position of the last one readers may see.
    fn head(&self) -> impl Future<Output = Result<(u64, LogPosition), StoreError>> + Send;

    fn load_checkpoint(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Option<Checkpoint>, StoreError>> + Send;

    fn save_checkpoint(
        &self,
        checkpoint: &Checkpoint,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The key of a data subject (crypto-shredding, `libs/privacy`).
    fn subject_key(
        &self,
        subject: &str,
    ) -> impl Future<Output = Result<SubjectKey, StoreError>> + Send;

    /// Destroy the subject's key for good (idempotent; a subject without a key gets a
    /// tombstone, so no key is ever created for it again).
    fn erase_subject_key(
        &self,
        subject: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The global checkpoint with the highest sequence number, if any.
    fn last_global_checkpoint(
        &self,
    ) -> impl Future<Output = Result<Option<GlobalCheckpoint>, StoreError>> + Send;

    /// Up to `limit` global checkpoints with `seq > after_seq`, in sequence order.
    fn global_checkpoints(
        &self,
        after_seq: u64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<GlobalCheckpoint>, StoreError>> + Send;

    /// Store a new global checkpoint; `false` (and nothing stored) when one with the same
    /// sequence number exists already: another sealer got there first. Checkpoints are
    /// append-only like events.
    fn append_global_checkpoint(
        &self,
        checkpoint: &GlobalCheckpoint,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
}

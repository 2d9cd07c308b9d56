//! The event store: where events are stored, and the single source of truth.
//!
//! Two backends, [`postgres::PgEventStore`] (server mode) and
//! [`sqlite::SqliteEventStore`] (embedded default), each playing every role of the store,
//! one narrow trait per role:
//! - [`Append`]: one command's events, or a group commit's batch;
//! - [`Streams`]: a stream's events by id, its length, ids by prefix;
//! - [`Log`]: the global log in commit-safe order, and its head;
//! - [`Lookups`]: what a decision reads besides streams (key owners, counters, stored
//!   outcomes of commands);
//! - [`Checkpoints`]: a log reader's saved position;
//! - [`SubjectKeys`]: data subjects' keys (crypto-shredding);
//! - [`Seals`]: the audit's global checkpoints.
//!
//! A caller asks for the roles it uses (the relay for [`Log`] and [`Checkpoints`], the
//! group commit for [`Append`]); [`EventStore`] is all of them, for the callers that use
//! the whole store. Both backends pass the same conformance suite (`tests/conformance_*.rs`,
//! cases in [`conformance`]).
//!
//! Guarantees every backend gives:
//! - an append is atomic per command and checks each stream's expected version;
//! - a command id is appended once; repeating it returns the first outcome;
//! - [`Log::read_all`] follows a commit-safe global order: a reader never skips an
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
/// counter never changed): the shape every backend's [`Lookups::counters`] answers in.
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

/// Every role at once: what a backend is, and what a caller that needs the whole store
/// (the command handler, the conformance suite) asks for. Implemented for every type
/// that plays all the roles; a caller that needs fewer asks for those roles alone.
pub trait EventStore:
    Append + Streams + Log + Lookups + Checkpoints + SubjectKeys + Seals + 'static
{
}

impl<S> EventStore for S where
    S: Append + Streams + Log + Lookups + Checkpoints + SubjectKeys + Seals + 'static
{
}

/// Writing: one command's events, or a batch of commands' (group commit).
pub trait Append: Send + Sync {
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
}

/// Reading streams by id: a customer's events (to decide on it, to replay its history),
/// how long a stream is, which streams share a prefix.
pub trait Streams: Send + Sync {
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

    /// Number of events in the stream (0 when it does not exist).
    fn stream_version(
        &self,
        stream_id: &str,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Ids of the streams whose id starts with `prefix`, in byte order.
    fn stream_ids_with_prefix(
        &self,
        prefix: &str,
    ) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send;
}

/// Reading the global log in commit-safe order (ADR 0002): the relay, rebuilds, audits.
pub trait Log: Send + Sync {
    /// Up to `limit` events after `after` in commit-safe global order.
    fn read_all(
        &self,
        after: LogPosition,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<RecordedEvent>, StoreError>> + Send;

    /// As [`Log::read_all`], each payload as its JSON text rather than parsed: for
    /// readers that decode payloads into their own types (a rebuild reads the whole log
    /// this way, and builds no JSON tree per event).
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

    /// Number of events stored and the position of the last one readers may see.
    fn head(&self) -> impl Future<Output = Result<(u64, LogPosition), StoreError>> + Send;
}

/// What a decision reads besides its streams: owners of unique keys, counters, and the
/// stored answer of a command already appended.
pub trait Lookups: Send + Sync {
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

    /// The stored answer for a command id, if that command was appended.
    fn command_outcome(
        &self,
        command_id: uuid::Uuid,
    ) -> impl Future<Output = Result<Option<AppendOutcome>, StoreError>> + Send;
}

/// A log reader's saved position, by name (the relay's).
pub trait Checkpoints: Send + Sync {
    fn load_checkpoint(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Option<Checkpoint>, StoreError>> + Send;

    fn save_checkpoint(
        &self,
        checkpoint: &Checkpoint,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// Data subjects' keys (crypto-shredding, `libs/privacy`).
pub trait SubjectKeys: Send + Sync {
    /// The key of a data subject.
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
}

/// The audit's global checkpoints: seals over the log's hash chains, append-only like
/// events (`libs/audit`).
pub trait Seals: Send + Sync {
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
    /// sequence number exists already: another sealer got there first.
    fn append_global_checkpoint(
        &self,
        checkpoint: &GlobalCheckpoint,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
}

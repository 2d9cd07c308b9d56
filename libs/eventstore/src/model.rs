//! The store's vocabulary: what goes in (an [`AppendRequest`]) and what comes out
//! (a [`RecordedEvent`]). The store knows nothing of customers or managers: payloads are
//! JSON, streams are strings, and the cross-stream guards (unique keys, bounded
//! counters) are generic.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::chain::ChainHash;

/// Where an event sits in the global log.
///
/// The log is ordered by `(tx, position)`. On PostgreSQL `tx` is the writing
/// transaction's id (`xid8`) and `position` an identity allocated at insert; readers only
/// see transactions below the oldest one still running, so no event with a smaller
/// `(tx, position)` can appear after a reader has moved past it (see
/// `docs/adr/0002-commit-safe-global-order.md`). On SQLite writers are serialised, so
/// `tx == position`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
pub struct LogPosition {
    pub tx: u64,
    pub position: u64,
}

impl LogPosition {
    /// Before the first event.
    pub const START: LogPosition = LogPosition { tx: 0, position: 0 };

    pub fn new(tx: u64, position: u64) -> Self {
        Self { tx, position }
    }
}

impl fmt::Display for LogPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.tx, self.position)
    }
}

impl std::str::FromStr for LogPosition {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (tx, pos) = s
            .split_once('.')
            .ok_or_else(|| format!("log position {s:?} is not of the form <tx>.<position>"))?;
        let tx = tx
            .parse()
            .map_err(|_| format!("bad tx in log position {s:?}"))?;
        let position = pos
            .parse()
            .map_err(|_| format!("bad position in log position {s:?}"))?;
        Ok(Self { tx, position })
    }
}

/// What the writer expects a stream's version to be (the number of events in it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExpectedVersion {
    /// No check.
    Any,
    /// The stream must not exist yet.
    NoStream,
    /// The stream must hold exactly this many events.
    Exact(u64),
}

impl ExpectedVersion {
    pub fn matches(self, actual: u64) -> bool {
        match self {
            ExpectedVersion::Any => true,
            ExpectedVersion::NoStream => actual == 0,
            ExpectedVersion::Exact(v) => v == actual,
        }
    }
}

impl fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpectedVersion::Any => f.write_str("any"),
            ExpectedVersion::NoStream => f.write_str("no stream"),
            ExpectedVersion::Exact(v) => write!(f, "{v}"),
        }
    }
}

/// Who issued the command and how it relates to others; copied onto every event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandMeta {
    /// Idempotency key: the same id twice has one effect.
    pub command_id: Uuid,
    /// Stable snake_case name of the command (`assign_owner`).
    pub command_type: String,
    pub correlation_id: Uuid,
    pub causation_id: Option<Uuid>,
    /// `person:alice`, `service:call-centre`, `system:scheduler`.
    pub actor: String,
    /// When the command was issued; becomes each event's `occurred_at`.
    pub issued_at: DateTime<Utc>,
    /// Hash of the command's content: a reused command id with different content is
    /// refused instead of silently answered with the first outcome.
    pub fingerprint: String,
}

/// One event to append.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewEvent {
    pub event_id: Uuid,
    pub event_type: String,
    pub schema_version: u32,
    pub payload: serde_json::Value,
}

/// Events for one stream, guarded by an expected version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamWrite {
    pub stream_id: String,
    pub expected: ExpectedVersion,
    pub events: Vec<NewEvent>,
}

/// Reserve a unique key (e.g. a normalised phone number) for `owner` (a stream id).
/// Reserving a key the same owner already holds is a no-op.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UniqueClaim {
    pub key: String,
    pub owner: String,
}

/// Move a bounded counter (e.g. a manager's holdings) by `delta`; with `max`, an
/// increase that would end above it refuses the whole command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CounterChange {
    pub key: String,
    pub delta: i64,
    pub max: Option<i64>,
}

/// The encryption key of a data subject that has none yet, stored by the append whose
/// events it sealed: in the same transaction, so a key exists exactly when something
/// sealed with it was committed, and a refused append leaves none behind. A subject that
/// has a key (or had one, erased) refuses the append
/// ([`crate::Conflict::SubjectKeyExists`]): its events must be sealed with the stored one.
#[derive(Clone, PartialEq, Eq)]
pub struct NewSubjectKey {
    pub subject: String,
    pub key: Vec<u8>,
}

impl fmt::Debug for NewSubjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print key material.
        f.debug_struct("NewSubjectKey")
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

/// Everything one command writes; appended atomically or not at all.
#[derive(Debug, Clone, PartialEq)]
pub struct AppendRequest {
    pub meta: CommandMeta,
    pub writes: Vec<StreamWrite>,
    pub claims: Vec<UniqueClaim>,
    /// Keys to free (only freed if `owner` still holds them).
    pub releases: Vec<UniqueClaim>,
    pub counters: Vec<CounterChange>,
    /// Subjects' first keys, stored with these events.
    pub new_keys: Vec<NewSubjectKey>,
}

impl AppendRequest {
    pub fn new(meta: CommandMeta) -> Self {
        Self {
            meta,
            writes: Vec::new(),
            claims: Vec::new(),
            releases: Vec::new(),
            counters: Vec::new(),
            new_keys: Vec::new(),
        }
    }

    pub fn write(
        mut self,
        stream_id: impl Into<String>,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Self {
        self.writes.push(StreamWrite {
            stream_id: stream_id.into(),
            expected,
            events,
        });
        self
    }

    pub fn event_count(&self) -> usize {
        self.writes.iter().map(|w| w.events.len()).sum()
    }

    /// Every name the append must hold a lock on, sorted and deduplicated so that
    /// concurrent batches always lock in the same order (no deadlocks).
    pub fn lock_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .writes
            .iter()
            .map(|w| format!("s:{}", w.stream_id))
            .chain(self.claims.iter().map(|c| format!("k:{}", c.key)))
            .chain(self.releases.iter().map(|c| format!("k:{}", c.key)))
            .chain(self.counters.iter().map(|c| format!("c:{}", c.key)))
            .chain(self.new_keys.iter().map(|k| format!("x:{}", k.subject)))
            .collect();
        names.sort();
        names.dedup();
        names
    }
}

/// Where one appended event landed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppendedEvent {
    pub event_id: Uuid,
    pub event_type: String,
    pub stream_id: String,
    /// 1-based: the first event of a stream has version 1.
    pub stream_version: u64,
    /// Allocation order; with `tx`, the event's [`LogPosition`].
    pub position: u64,
}

/// The answer to an append; a retried command id gets the first answer back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppendOutcome {
    pub command_id: Uuid,
    pub events: Vec<AppendedEvent>,
    /// True when this command id had already been appended and nothing new was written.
    pub duplicate: bool,
}

/// Metadata stored with every event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventMetadata {
    pub command_id: Uuid,
    pub correlation_id: Uuid,
    pub causation_id: Option<Uuid>,
    pub actor: String,
    pub occurred_at: DateTime<Utc>,
    pub recorded_at: DateTime<Utc>,
}

/// An event as stored. The payload is parsed JSON, or (`P = String`, from
/// [`crate::Log::read_all_text`]) its JSON text, for readers that decode it into
/// their own types and need no tree of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedEvent<P = serde_json::Value> {
    pub log_position: LogPosition,
    pub stream_id: String,
    pub stream_version: u64,
    pub event_id: Uuid,
    pub event_type: String,
    pub schema_version: u32,
    pub payload: P,
    pub metadata: EventMetadata,
    /// Link in the stream's hash chain ([`crate::chain::event_hash`] over the previous
    /// event's link and this event). Absent from messages written before chains existed.
    #[serde(default)]
    pub chain_hash: ChainHash,
}

impl<P> RecordedEvent<P> {
    /// The same event with its payload turned into `Q` (parsed, or printed).
    pub fn map_payload<Q>(self, f: impl FnOnce(P) -> Q) -> RecordedEvent<Q> {
        match self.try_map_payload(|p| Ok::<Q, std::convert::Infallible>(f(p))) {
            Ok(e) => e,
            Err(never) => match never {},
        }
    }

    /// As [`RecordedEvent::map_payload`], where turning the payload may fail.
    pub fn try_map_payload<Q, E>(
        self,
        f: impl FnOnce(P) -> Result<Q, E>,
    ) -> Result<RecordedEvent<Q>, E> {
        Ok(RecordedEvent {
            payload: f(self.payload)?,
            log_position: self.log_position,
            stream_id: self.stream_id,
            stream_version: self.stream_version,
            event_id: self.event_id,
            event_type: self.event_type,
            schema_version: self.schema_version,
            metadata: self.metadata,
            chain_hash: self.chain_hash,
        })
    }
}

/// The encryption key of one data subject (a customer) as the store keeps it.
#[derive(Clone, PartialEq, Eq)]
pub enum SubjectKey {
    /// No key yet: nothing personal was recorded.
    Absent,
    Active(Vec<u8>),
    /// Destroyed by an erasure: what was encrypted with it is unreadable for good.
    Erased,
}

impl fmt::Debug for SubjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print key material.
        match self {
            SubjectKey::Absent => f.write_str("Absent"),
            SubjectKey::Active(_) => f.write_str("Active(..)"),
            SubjectKey::Erased => f.write_str("Erased"),
        }
    }
}

/// A named reader's progress through the global log (the relay's, for instance).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub name: String,
    pub position: LogPosition,
    /// Free-form value owned by the reader (the relay keeps the JetStream sequence here).
    pub extra: i64,
}

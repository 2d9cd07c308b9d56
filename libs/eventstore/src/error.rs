//! Two kinds of failure, kept apart: a [`Conflict`] refuses one command and is the
//! caller's business; a [`StoreError`] means storage failed and is for retries and alerts.

use uuid::Uuid;

use crate::model::ExpectedVersion;

/// Storage failed (connection, SQL, corrupt row). Retrying may help; the caller learns
/// nothing about the command's validity.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("schema migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("storage failed: {0}")]
    Failed(String),
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
    #[error("invalid store configuration: {0}")]
    Config(String),
}

/// The append was refused: nothing was written for this command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Conflict {
    #[error("stream {stream_id} is at version {actual}, the command expected {expected}")]
    WrongExpectedVersion {
        stream_id: String,
        expected: ExpectedVersion,
        actual: u64,
    },
    #[error("unique key {key} is already held by {owner}")]
    DuplicateKey { key: String, owner: String },
    #[error("counter {key} is at {value}; adding {delta} would pass its maximum of {max}")]
    CounterLimit {
        key: String,
        value: i64,
        delta: i64,
        max: i64,
    },
    #[error("{subject} has an encryption key already (or had one, erased)")]
    SubjectKeyExists { subject: String },
    #[error("command id {command_id} was already used for a different command")]
    CommandIdReused { command_id: Uuid },
    #[error("the command appends no events")]
    Empty,
}

/// Why an append did not happen.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    #[error(transparent)]
    Conflict(#[from] Conflict),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The database refused this command's data (a text it cannot hold, a value out of
    /// range). Retrying cannot help; nothing was written for it, and the commands it
    /// shared a transaction with were appended without it.
    #[error("the event store cannot hold this command's data: {0}")]
    Unstorable(String),
}

impl From<sqlx::Error> for AppendError {
    fn from(e: sqlx::Error) -> Self {
        AppendError::Store(StoreError::Database(e))
    }
}

//! The results of chain verifications, kept in the event store itself: `crm audit
//! verify` records each one as a `ChainVerified` event in the `verification-chain`
//! stream (evidence, like the records of personal-data reads: hash-chained, sealed and
//! exported, never projected), and the workbench's audit page shows the last one. An
//! auditor's read-only PostgreSQL role may record them (`crm_append_verification`).

use chrono::{DateTime, Utc};
use crm_domain::evidence::{CHAIN_VERIFIED, CHAIN_VERIFIED_VERSION, VERIFICATION_STREAM};
use crm_eventstore::{
    Append, AppendRequest, CommandMeta, ExpectedVersion, LogPosition, NewEvent, StoreError, Streams,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::VerifyReport;

/// One recorded verification: what was checked and what was found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verification {
    pub ok: bool,
    pub events: u64,
    pub streams: u64,
    pub checkpoints: u64,
    pub sealed_events: u64,
    pub unsealed_events: u64,
    /// The last checkpoint checked: its number and hash.
    pub head: Option<Head>,
    /// The last event checked.
    pub through: Option<LogPosition>,
    /// How many problems, and the first (the first bad event).
    pub problems: u64,
    pub first_problem: Option<String>,
    pub took_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    pub seq: u64,
    pub hash: String,
}

impl Verification {
    pub fn of(report: &VerifyReport, took: std::time::Duration) -> Self {
        Self {
            ok: report.ok(),
            events: report.events,
            streams: report.streams,
            checkpoints: report.checkpoints,
            sealed_events: report.sealed_events,
            unsealed_events: report.unsealed_events,
            head: report.head.map(|(seq, hash)| Head {
                seq,
                hash: hash.to_hex(),
            }),
            through: report.through,
            problems: report.problems.len() as u64,
            first_problem: report.problems.first().map(ToString::to_string),
            took_ms: u64::try_from(took.as_millis()).unwrap_or(u64::MAX),
        }
    }
}

/// A verification as the store holds it: when it was recorded, by whom, and its result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// Its number in the stream (1 for the first verification recorded).
    pub number: u64,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub result: Verification,
}

/// Record `result` as verified by `actor` at `at`. Returns its number.
pub async fn record<S: Append + Streams>(
    store: &S,
    result: &Verification,
    actor: &str,
    at: DateTime<Utc>,
) -> Result<u64, StoreError> {
    let command_id = Uuid::now_v7();
    let payload = serde_json::to_value(result).expect("a verification serializes");
    let request = AppendRequest::new(CommandMeta {
        command_id,
        command_type: "record_chain_verification".into(),
        correlation_id: command_id,
        causation_id: None,
        actor: actor.to_string(),
        issued_at: at,
        fingerprint: command_id.to_string(),
    })
    .write(
        VERIFICATION_STREAM,
        ExpectedVersion::Any,
        vec![NewEvent {
            event_id: Uuid::now_v7(),
            event_type: CHAIN_VERIFIED.into(),
            schema_version: CHAIN_VERIFIED_VERSION,
            payload,
        }],
    );
    let outcome = store.append(request).await.map_err(|e| match e {
        crm_eventstore::AppendError::Store(e) => e,
        other => StoreError::Failed(other.to_string()),
    })?;
    let appended = outcome
        .events
        .first()
        .ok_or_else(|| StoreError::Failed("the verification's record was not appended".into()))?;
    Ok(appended.stream_version)
}

/// The last verification recorded, if any.
pub async fn last<S: Streams>(store: &S) -> Result<Option<Recorded>, StoreError> {
    let version = store.stream_version(VERIFICATION_STREAM).await?;
    if version == 0 {
        return Ok(None);
    }
    let events = store
        .read_stream_range(VERIFICATION_STREAM, version - 1, version)
        .await?;
    let Some(e) = events.into_iter().last() else {
        return Ok(None);
    };
    let result = serde_json::from_value(e.payload).map_err(|err| {
        StoreError::Corrupt(format!(
            "verification #{} cannot be read: {err}",
            e.stream_version
        ))
    })?;
    Ok(Some(Recorded {
        number: e.stream_version,
        at: e.metadata.occurred_at,
        actor: e.metadata.actor,
        result,
    }))
}

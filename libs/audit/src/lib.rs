//! The auditor's toolkit: answers replayed from the event store itself, never from read
//! models. [`ownership`] replays who owned a customer when, and why (actor, reason,
//! policy version and rule, command id, log position); "who owned X as of T" is exact to
//! the event. [`checkpoint`] seals the global log with global checkpoints and
//! [`verify`] checks every hash chain and checkpoint, naming the first bad event;
//! [`export`] writes a self-contained, verifiable SQLite copy of part of the log;
//! [`reads`] lists who read which customer's personal data, when, through which route;
//! [`verification`] keeps each verification's result in the store.
#![forbid(unsafe_code)]

pub mod checkpoint;
pub mod export;
pub mod ownership;
pub mod reads;
pub mod verification;
pub mod verify;

pub use checkpoint::{seal_pending, DEFAULT_EVENTS_PER_CHECKPOINT};
pub use export::{export, read_export, ExportError, ExportManifest};
pub use ownership::{
    customer_history, manager_history, owner_as_of, ownership_entries, AsOf, AuditError, Decision,
    ManagerHistory, OwnershipEntry,
};
pub use reads::{personal_data_reads, ReadFilter, ReadRecord};
pub use verify::{verify, Problem, ProblemKind, Start, StreamBase, VerifyOptions, VerifyReport};

use crm_eventstore::{Log, LogPosition, RecordedEvent};

/// Reads the whole global log in pages, in log order, handing each event to `each` and
/// telling `progress` how many events have been read after every page. Returns that
/// count.
pub(crate) async fn scan_log<S: Log>(
    store: &S,
    progress: &mut (dyn FnMut(u64) + Send),
    mut each: impl FnMut(&RecordedEvent) -> Result<(), AuditError>,
) -> Result<u64, AuditError> {
    let mut cursor = LogPosition::START;
    let mut read = 0u64;
    loop {
        let page = store.read_all(cursor, 10_000).await?;
        let Some(last) = page.last() else {
            return Ok(read);
        };
        cursor = last.log_position;
        read += page.len() as u64;
        page.iter().try_for_each(&mut each)?;
        progress(read);
    }
}

//! Sealing the global log: global checkpoints over the events not yet sealed.
//!
//! Any process may seal: a checkpoint's sequence number is its primary key, so when two
//! sealers race, one stores checkpoint N and the other finds N taken, reads the new last
//! checkpoint and seals what is left after it. The relay seals periodically; `crm audit
//! checkpoint` seals on demand. Only events below the commit-safe horizon are sealed (the
//! log the store's readers see), so no later commit can land inside a sealed range.

use chrono::Utc;
use crm_eventstore::chain::Leaf;
use crm_eventstore::{GlobalCheckpoint, Log, LogPosition, Seals, StoreError};
use crm_telemetry::names;

/// Most events one checkpoint seals (48 bytes each in the checkpoint).
pub const DEFAULT_EVENTS_PER_CHECKPOINT: usize = 10_000;

/// Seal every event after the last checkpoint, `per_checkpoint` events at most per
/// checkpoint; returns the checkpoints this call stored (none when nothing was new).
/// `progress` is told each checkpoint as it is stored.
pub async fn seal_pending<S: Log + Seals>(
    store: &S,
    per_checkpoint: usize,
    progress: &mut (dyn FnMut(&GlobalCheckpoint) + Send),
) -> Result<Vec<GlobalCheckpoint>, StoreError> {
    let per_checkpoint = per_checkpoint.max(1);
    let mut stored = Vec::new();
    let mut last = store.last_global_checkpoint().await?;
    loop {
        let after = last.as_ref().map_or(LogPosition::START, |c| c.through);
        let events = store.read_all(after, per_checkpoint).await?;
        if events.is_empty() {
            return Ok(stored);
        }
        let leaves: Vec<Leaf> = events
            .iter()
            .map(|e| Leaf {
                position: e.log_position,
                hash: e.chain_hash,
            })
            .collect();
        let checkpoint = GlobalCheckpoint::seal(last.as_ref(), &leaves, Utc::now());
        if store.append_global_checkpoint(&checkpoint).await? {
            metrics::counter!(names::AUDIT_CHECKPOINTS_TOTAL).increment(1);
            metrics::counter!(names::AUDIT_SEALED_EVENTS_TOTAL).increment(leaves.len() as u64);
            progress(&checkpoint);
            stored.push(checkpoint.clone());
            last = Some(checkpoint);
        } else {
            // Another sealer stored this number first: continue after its checkpoint.
            last = store.last_global_checkpoint().await?;
        }
    }
}

//! Group commit: the appends of concurrent commands share transactions.
//!
//! Commands hand their [`AppendRequest`] to a queue; a few writer tasks each take
//! everything waiting (up to `max_batch`) and append it with one
//! [`Append::append_batch`] call, i.e. one transaction and one fsync. Under load the
//! batches grow by themselves while the previous transaction commits; when idle a
//! command is appended alone with no added delay. Each request is still judged on its
//! own, so a refusal never affects its neighbours.

use std::sync::Arc;

use crm_eventstore::{Append, AppendError, AppendOutcome, AppendRequest, StoreError};
use crm_telemetry::names;
use tokio::sync::{mpsc, oneshot, Mutex};

type Reply = oneshot::Sender<Result<AppendOutcome, AppendError>>;

#[derive(Debug, Clone, Copy)]
pub struct GroupCommitConfig {
    /// Concurrent append transactions.
    pub writers: usize,
    /// Most commands in one transaction.
    pub max_batch: usize,
}

impl Default for GroupCommitConfig {
    fn default() -> Self {
        // Measured on W1 (docs/benchmarks.md): since an append is one round trip, one
        // writer with the largest batches beats 2 (and 2 beat 4) on two cores.
        Self {
            writers: 1,
            max_batch: 256,
        }
    }
}

/// Handle to the group-commit queue; cheap to clone.
#[derive(Clone)]
pub struct GroupCommitter {
    queue: mpsc::Sender<(AppendRequest, Reply)>,
}

impl GroupCommitter {
    /// Start the writer tasks on the current runtime. They stop when every handle is dropped.
    pub fn start<S: Append + Clone + 'static>(store: S, config: GroupCommitConfig) -> Self {
        let (queue, rx) =
            mpsc::channel::<(AppendRequest, Reply)>(config.max_batch * config.writers.max(1) * 4);
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..config.writers.max(1) {
            let (store, rx) = (store.clone(), rx.clone());
            tokio::spawn(async move {
                let mut batch = Vec::with_capacity(config.max_batch);
                loop {
                    {
                        let mut rx = rx.lock().await;
                        let Some(first) = rx.recv().await else { return };
                        batch.push(first);
                        while batch.len() < config.max_batch {
                            match rx.try_recv() {
                                Ok(item) => batch.push(item),
                                Err(_) => break,
                            }
                        }
                    }
                    metrics::histogram!(names::APPEND_BATCH_SIZE).record(batch.len() as f64);
                    let (requests, replies): (Vec<_>, Vec<_>) = batch.drain(..).unzip();
                    let outcomes = store.append_batch(requests).await;
                    for (reply, outcome) in replies.into_iter().zip(outcomes) {
                        // The caller may have gone (timeout); its command is stored anyway
                        // and a retry with the same command id gets this outcome.
                        let _ = reply.send(outcome);
                    }
                }
            });
        }
        Self { queue }
    }

    /// Append one command's request in the next batch.
    pub async fn append(&self, request: AppendRequest) -> Result<AppendOutcome, AppendError> {
        let (tx, rx) = oneshot::channel();
        self.queue.send((request, tx)).await.map_err(|_| {
            AppendError::Store(StoreError::Failed("group committer stopped".into()))
        })?;
        rx.await.map_err(|_| {
            AppendError::Store(StoreError::Failed(
                "group committer dropped the request".into(),
            ))
        })?
    }
}

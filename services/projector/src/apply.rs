//! Where what the partitions deliver is applied: the instance's workers each take every
//! batch the partitions have handed in since and apply them together, in one transaction
//! with each partition's checkpoint.
//!
//! A batch's statements cost the read models' database as much as its rows do, and a
//! batch writes a statement per table: sixteen partitions each applying the few events
//! they hold wrote sixteen times the statements for the same rows. A partition waits for
//! its batch's answer before it takes the next, so each stream's events still come in
//! order, and what one partition delivers is still acknowledged only once its
//! transaction committed. Two workers take turns at the queue, so one transaction is
//! prepared while the other runs (on PostgreSQL; SQLite has one writer at a time). A
//! transaction adds to the counters' stripe of the lowest partition in it: no other
//! transaction uses that stripe meanwhile (a partition has one batch in flight at most,
//! and is held by one instance), so transactions never queue on one another's counter
//! rows (ADR 0012). On SQLite every transaction adds to stripe 0.
//!
//! A transaction that finds fewer events handed in than it may hold, all from partitions
//! that had nothing left to deliver, waits a little (`linger`, 10 ms by default) for more
//! before it begins: most of a transaction's cost to the database is per row, and rows
//! of a larger batch fold together (a counter's amounts, a customer's memo, a row updated
//! twice), so under load the read models cost the shared cores less per event, for a few
//! milliseconds more of lag. A partition that is behind says so, and then no transaction
//! waits: more is coming anyway, and waiting would only hold the worker back while the
//! other's partitions are in its transaction. Nor does one wait once every partition the
//! instance holds is in a transaction (none could hand in more); the linger counts from
//! the first batch's hand-in.
//!
//! One batch's failure is not the others': a transaction of several partitions' batches
//! that fails is tried again batch by batch, each partition answered with its own
//! outcome. A panic while applying is answered as a failure, and the workers go on.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crm_projections::{Fate, Prepared, ReadStore, Target, Writer};
use futures::FutureExt as _;
use tokio::sync::{mpsc, oneshot, Mutex};

/// Transactions an instance runs at once on PostgreSQL (SQLite's writers take turns:
/// one there).
const WORKERS: usize = 2;

/// How a transaction gathers the batches handed in: until it holds `most` events or
/// more, or `linger` has passed since its first batch was handed in, or a partition in it
/// is behind, or every partition held is in a transaction (zero linger: it takes only
/// what was handed in already). A single partition's batch is applied whole.
#[derive(Debug, Clone, Copy)]
pub struct Gather {
    pub most: usize,
    pub linger: Duration,
}

/// A partition's batch, and where its answer goes.
struct Request {
    partition: u32,
    consumer: String,
    batch: Vec<Prepared>,
    /// Whether the partition had more to deliver after this batch.
    behind: bool,
    /// When it was handed in: a linger counts from the first batch's.
    handed_in: tokio::time::Instant,
    answer: oneshot::Sender<Answer>,
}

/// The batch back, with each event's fate or why the transaction failed.
pub type Answer = (Vec<Prepared>, Result<Vec<Fate>, String>);

/// The instance's applier: cheap to clone, one per partition task.
#[derive(Clone)]
pub struct Applier {
    requests: mpsc::Sender<Request>,
    counts: Arc<Counts>,
}

/// What a lingering transaction asks: could another batch still come? Each partition
/// has one batch in flight at most, so none can once every partition held is in a
/// transaction.
#[derive(Default)]
struct Counts {
    /// Partitions the instance consumes ([`Applier::hold`]).
    held: AtomicUsize,
    /// Batches taken into transactions and not yet answered.
    taken: AtomicUsize,
}

impl Counts {
    fn more_may_come(&self) -> bool {
        self.held.load(Ordering::Relaxed) > self.taken.load(Ordering::Relaxed)
    }
}

/// A partition the instance consumes, counted while this lives ([`Applier::hold`]).
pub struct Held(Arc<Counts>);

impl Drop for Held {
    fn drop(&mut self) {
        self.0.held.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Applier {
    /// Start applying to `store`, each transaction gathering batches as `gather` says.
    pub fn spawn(store: ReadStore, gather: Gather) -> Self {
        let (requests, rx) = mpsc::channel(64);
        let rx = Arc::new(Mutex::new(rx));
        let counts = Arc::new(Counts::default());
        let workers = match store {
            ReadStore::Postgres(_) => WORKERS,
            ReadStore::Sqlite(_) => 1,
        };
        for _ in 0..workers {
            let queue = Queue {
                rx: rx.clone(),
                counts: counts.clone(),
            };
            tokio::spawn(work(store.clone(), queue, gather));
        }
        Self { requests, counts }
    }

    /// Count a partition the instance consumes until the guard is dropped (while every
    /// partition held is in a transaction, no transaction waits for more).
    pub fn hold(&self) -> Held {
        self.counts.held.fetch_add(1, Ordering::Relaxed);
        Held(self.counts.clone())
    }

    /// Apply `batch`, which `consumer` (partition `partition`) delivered, with what the
    /// other partitions handed in meanwhile (`behind`: the partition has more to deliver
    /// after it).
    pub async fn apply(
        &self,
        partition: u32,
        consumer: &str,
        batch: Vec<Prepared>,
        behind: bool,
    ) -> Answer {
        let (answer, answered) = oneshot::channel();
        let request = Request {
            partition,
            consumer: consumer.to_string(),
            batch,
            behind,
            handed_in: tokio::time::Instant::now(),
            answer,
        };
        if let Err(gone) = self.requests.send(request).await {
            return (gone.0.batch, Err("the applier has stopped".into()));
        }
        match answered.await {
            Ok(answer) => answer,
            // Only if a worker died mid-transaction: the batch is gone with it, and the
            // messages come again after their ack wait.
            Err(_) => (Vec::new(), Err("the applier stopped mid-batch".into())),
        }
    }
}

/// The queue the workers take from, and what they count.
struct Queue {
    rx: Arc<Mutex<mpsc::Receiver<Request>>>,
    counts: Arc<Counts>,
}

/// One worker: take what is queued, apply it, answer; until every sender is gone.
async fn work(store: ReadStore, queue: Queue, gather: Gather) {
    loop {
        let group = {
            let mut rx = queue.rx.lock().await;
            let Some(first) = rx.recv().await else { return };
            take(&mut rx, &queue.counts, first, gather).await
        };
        let taken = group.len();
        let several = taken > 1;
        let (group, result) = apply_together(&store, group).await;
        match result {
            Err(_) if several => {
                // Not the others' failure: each batch on its own.
                for ran in group {
                    let (mut one, result) = apply_together(&store, vec![ran.request]).await;
                    answer(one.remove(0), result);
                }
            }
            result => {
                for r in group {
                    answer(r, result.as_ref().map(|_| ()).map_err(Clone::clone));
                }
            }
        }
        queue.counts.taken.fetch_sub(taken, Ordering::Relaxed);
    }
}

/// `first` and the batches handed in after it, as `gather` says: waiting for more only
/// while no partition in the group is behind and another partition may still hand in.
async fn take(
    rx: &mut mpsc::Receiver<Request>,
    counts: &Counts,
    first: Request,
    gather: Gather,
) -> Vec<Request> {
    let until = first.handed_in + gather.linger;
    let mut events = first.batch.len();
    let mut behind = first.behind;
    let mut group = vec![first];
    counts.taken.fetch_add(1, Ordering::Relaxed);
    while events < gather.most {
        let wait = !behind && !gather.linger.is_zero() && counts.more_may_come();
        let next = match rx.try_recv() {
            Ok(r) => Some(r),
            Err(mpsc::error::TryRecvError::Empty) if wait => {
                tokio::time::timeout_at(until, rx.recv())
                    .await
                    .ok()
                    .flatten()
            }
            Err(_) => None,
        };
        let Some(r) = next else { break };
        counts.taken.fetch_add(1, Ordering::Relaxed);
        events += r.batch.len();
        behind |= r.behind;
        group.push(r);
    }
    group
}

/// The stripe of a transaction whose lowest partition is `lowest`: its own on
/// PostgreSQL; stripe 0 on SQLite, whose writers take turns anyway (the projector does
/// not fold there, so there is nothing to fold).
fn stripe(store: &ReadStore, lowest: u32) -> i64 {
    match store {
        ReadStore::Postgres(_) => i64::from(lowest) + 1,
        ReadStore::Sqlite(_) => 0,
    }
}

/// A request whose transaction ran: its events back with their fates, or the failure.
struct Ran {
    request: Request,
    fates: Vec<Fate>,
}

/// Send `ran`'s answer (a partition that stopped waiting, shutting down, needs none).
fn answer(ran: Ran, result: Result<(), String>) {
    let Ran { request, fates } = ran;
    let _ = (request.answer).send((request.batch, result.map(|()| fates)));
}

/// One transaction for `group`'s batches, into the stripe of its lowest partition;
/// each request back with its own events and their fates.
async fn apply_together(store: &ReadStore, group: Vec<Request>) -> (Vec<Ran>, Result<(), String>) {
    let events: usize = group.iter().map(|r| r.batch.len()).sum();
    let mut batch = Vec::with_capacity(events);
    let mut shares = Vec::with_capacity(group.len());
    for mut r in group {
        let start = batch.len();
        batch.append(&mut r.batch);
        shares.push((r, start..batch.len()));
    }
    let result = {
        let lowest = shares.iter().map(|s| s.0.partition).min().unwrap_or(0);
        let writer = Writer {
            consumers: (shares.iter())
                .map(|(r, range)| (r.consumer.as_str(), range.clone()))
                .collect(),
            stripe: stripe(store, lowest),
        };
        let applying = store.apply_to(&batch, &Target::Live, &writer);
        match AssertUnwindSafe(applying).catch_unwind().await {
            Ok(Ok(r)) if r.fates.len() == batch.len() => Ok(r.fates),
            Ok(Ok(_)) => Err("the fates do not match the batch".to_string()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("applying the batch panicked".to_string()),
        }
    };
    // Each request's events back, last first (so `split_off` leaves the earlier ones).
    let mut ran = Vec::with_capacity(shares.len());
    for (mut request, range) in shares.into_iter().rev() {
        request.batch = batch.split_off(range.start);
        let fates = match &result {
            Ok(fates) => fates[range].to_vec(),
            Err(_) => Vec::new(),
        };
        ran.push(Ran { request, fates });
    }
    ran.reverse();
    (ran, result.map(|_| ()))
}

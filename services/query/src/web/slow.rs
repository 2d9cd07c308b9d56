//! Answers too slow to wait for on a page. At W2's size some of the funnel's figures are
//! grouped from millions of facts (conversion: 11 s over a million customers, 37 s by
//! team; time in stage: 6 s; `docs/benchmarks.md`), far past what a page may take. A
//! page asks here: the answer is computed in a task of its own and the page waits for it
//! up to [`WAIT`]. Computed in time (every answer on a small book), the page shows it,
//! exact. Otherwise the page shows the last answer computed, with when it was computed,
//! or says that it is being computed, and reloads; the task goes on and keeps what it
//! finds for the next visit. An answer that took longer than [`WAIT`] is reused for
//! [`REUSE`] before it is computed again, so visitors cannot pile slow questions on the
//! database: at most one runs per question. The API's routes still answer exactly, and
//! so do the pages' CSV downloads.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use crm_projections::calendar::Calendar;
use crm_projections::kpi::KpiRow;
use crm_projections::queries::complaints::{ComplaintCount, ComplaintFilter};
use tokio::sync::watch;

use super::format::local;
use crate::problem::Problem;

/// How long a page waits for an answer by default (`Workbench::wait`).
pub const WAIT: Duration = Duration::from_millis(300);
/// How long an answer that took longer than [`WAIT`] is shown before it is computed
/// again.
pub(crate) const REUSE: Duration = Duration::from_secs(60);

/// An answer and when it was computed.
pub(crate) struct Computed<V> {
    pub value: Arc<V>,
    /// When the computation started: the answer holds what was there then.
    pub at: DateTime<Utc>,
    pub took: Duration,
}

impl<V> Clone for Computed<V> {
    fn clone(&self) -> Self {
        Self {
            value: self.value.clone(),
            at: self.at,
            took: self.took,
        }
    }
}

/// What a page gets.
pub(crate) enum Answer<V> {
    /// Computed for this request.
    Now(Computed<V>),
    /// Computed earlier (shown with its time): this request's is still running, or the
    /// answer is recent and slow to compute.
    Earlier(Computed<V>),
    /// Nothing computed yet: it is running.
    Pending,
}

/// When an answer shown on a page was computed, when not for this visit: the local time
/// and how long it took (seconds).
pub(crate) struct Earlier {
    pub at: String,
    pub took: String,
}

impl<V> Answer<V> {
    /// The answer if there is one, and when it was computed if that was not for this
    /// visit.
    pub(crate) fn parts(self, cal: &Calendar) -> (Option<Arc<V>>, Option<Earlier>) {
        match self {
            Answer::Now(c) => (Some(c.value), None),
            Answer::Earlier(c) => {
                let earlier = Earlier {
                    at: local(cal, c.at.timestamp_micros()),
                    took: format!("{:.1}", c.took.as_secs_f64()),
                };
                (Some(c.value), Some(earlier))
            }
            Answer::Pending => (None, None),
        }
    }
}

struct Slot<V> {
    done: Option<Computed<V>>,
    /// Closed when the running computation ends; when it started.
    running: Option<(watch::Receiver<()>, Instant)>,
    /// What the last computation failed with, when it did.
    failed: Option<Problem>,
}

impl<V> Default for Slot<V> {
    fn default() -> Self {
        Self {
            done: None,
            running: None,
            failed: None,
        }
    }
}

pub(crate) struct SlowAnswers<K, V> {
    slots: Mutex<HashMap<K, Slot<V>>>,
    wait: Duration,
    reuse: Duration,
    /// Questions whose answers are kept at most: when full, a new question drops the
    /// answers of every question not being computed (a KPI table at W2's size is about
    /// 10 MB).
    max_kept: usize,
}

impl<K, V> SlowAnswers<K, V>
where
    K: Hash + Eq + Clone + Send + 'static,
    V: Send + Sync + 'static,
{
    pub(crate) fn new(wait: Duration, reuse: Duration, max_kept: usize) -> Arc<Self> {
        Arc::new(Self {
            slots: Mutex::new(HashMap::new()),
            wait,
            reuse,
            max_kept,
        })
    }

    /// The answer to `key`, computed by `compute` unless a recent slow answer is reused.
    pub(crate) async fn get<F, Fut>(
        self: &Arc<Self>,
        key: K,
        compute: F,
    ) -> Result<Answer<V>, Problem>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, Problem>> + Send + 'static,
    {
        let asked = Utc::now();
        let mut running = {
            let mut slots = self.slots.lock().expect("not poisoned");
            if slots.len() >= self.max_kept && !slots.contains_key(&key) {
                slots.retain(|_, s| s.running.is_some());
            }
            let slot = slots.entry(key.clone()).or_default();
            if let Some(done) = slot.done.as_ref().filter(|d| {
                d.took > self.wait && (asked - d.at).to_std().unwrap_or_default() < self.reuse
            }) {
                return Ok(Answer::Earlier(done.clone()));
            }
            match &slot.running {
                Some((rx, started)) => (rx.clone(), *started),
                None => {
                    let (tx, rx) = watch::channel(());
                    let started = Instant::now();
                    slot.running = Some((rx.clone(), started));
                    self.spawn(key.clone(), compute(), tx);
                    (rx, started)
                }
            }
        };
        // Ends when the computation does (its sender is dropped) or at the deadline: the
        // wait after its start (a visitor joining a long computation does not wait).
        let deadline = self.wait.saturating_sub(running.1.elapsed());
        let _ = tokio::time::timeout(deadline, running.0.changed()).await;
        let slots = self.slots.lock().expect("not poisoned");
        // Dropped meanwhile to make room (done, and many other questions asked since).
        let Some(slot) = slots.get(&key) else {
            return Ok(Answer::Pending);
        };
        match (&slot.done, &slot.failed, &slot.running) {
            (Some(d), _, None) if d.at >= asked => Ok(Answer::Now(d.clone())),
            (_, Some(p), None) => Err(p.clone()),
            (Some(d), _, _) => Ok(Answer::Earlier(d.clone())),
            (None, _, _) => Ok(Answer::Pending),
        }
    }

    fn spawn(
        self: &Arc<Self>,
        key: K,
        compute: impl Future<Output = Result<V, Problem>> + Send + 'static,
        done: watch::Sender<()>,
    ) {
        let this = self.clone();
        tokio::spawn(async move {
            let (at, started) = (Utc::now(), Instant::now());
            let result = compute.await;
            let mut slots = this.slots.lock().expect("not poisoned");
            let slot = slots.entry(key).or_default();
            slot.running = None;
            match result {
                Ok(v) => {
                    slot.done = Some(Computed {
                        value: Arc::new(v),
                        at,
                        took: started.elapsed(),
                    });
                    slot.failed = None;
                }
                Err(p) => slot.failed = Some(p),
            }
            drop(done);
        });
    }
}

/// The slow answers the pages ask, one cache per question.
#[derive(Clone)]
pub(crate) struct Caches {
    /// The funnel's conversion, time in stage and moves, by slice.
    pub funnel: Arc<SlowAnswers<String, super::funnel::Figures>>,
    /// The open complaints counted by team, severity and SLA state, by filter (a
    /// manager's scope is part of it).
    pub complaint_counts: Arc<SlowAnswers<ComplaintFilter, Vec<ComplaintCount>>>,
    /// The KPI table, by level, granularity and local period (`[from, to)`).
    pub kpis: Arc<SlowAnswers<KpisAsked, Vec<KpiRow>>>,
}

/// Which KPI table: level and granularity by name, the period's bounds.
pub(crate) type KpisAsked = (&'static str, &'static str, i64, i64);

impl Caches {
    /// Caches whose pages wait `wait` for an answer.
    pub(crate) fn new(wait: Duration) -> Self {
        Self {
            // Six slices.
            funnel: SlowAnswers::new(wait, REUSE, 6),
            // A few hundred rows each; a filter per manager's scope.
            complaint_counts: SlowAnswers::new(wait, REUSE, 256),
            // Tens of thousands of rows each at W2's size.
            kpis: SlowAnswers::new(wait, REUSE, 8),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// A question that takes `took` and counts how often it was computed.
    fn question(
        runs: &Arc<AtomicUsize>,
        took: Duration,
        answer: Result<u32, Problem>,
    ) -> impl FnOnce() -> std::pin::Pin<Box<dyn Future<Output = Result<u32, Problem>> + Send>> {
        let runs = runs.clone();
        move || {
            Box::pin(async move {
                runs.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(took).await;
                answer
            })
        }
    }

    fn value(a: &Answer<u32>) -> (&'static str, Option<u32>) {
        match a {
            Answer::Now(c) => ("now", Some(*c.value)),
            Answer::Earlier(c) => ("earlier", Some(*c.value)),
            Answer::Pending => ("pending", None),
        }
    }

    #[tokio::test]
    async fn a_quick_answer_is_computed_for_every_visit() {
        let cache = SlowAnswers::new(Duration::from_millis(500), Duration::from_secs(60), 8);
        let runs = Arc::new(AtomicUsize::new(0));
        for n in [1, 2] {
            let a = cache
                .get("k", question(&runs, Duration::ZERO, Ok(n)))
                .await
                .unwrap();
            assert_eq!(value(&a), ("now", Some(n)), "exact, never reused");
        }
        assert_eq!(runs.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_slow_answer_is_waited_for_once_then_shown_with_its_time_and_reused() {
        let cache = SlowAnswers::new(Duration::from_millis(30), Duration::from_secs(60), 8);
        let runs = Arc::new(AtomicUsize::new(0));
        let slow = Duration::from_millis(300);
        // Two visitors at once: one computation, neither waits for it.
        let (a, b) = tokio::join!(
            cache.get("k", question(&runs, slow, Ok(7))),
            cache.get("k", question(&runs, slow, Ok(8)))
        );
        assert_eq!(value(&a.unwrap()), ("pending", None));
        assert_eq!(value(&b.unwrap()), ("pending", None));
        tokio::time::sleep(Duration::from_millis(700)).await;
        // Done: shown as computed earlier, and reused rather than computed again.
        let c = cache.get("k", question(&runs, slow, Ok(9))).await.unwrap();
        assert_eq!(value(&c), ("earlier", Some(7)));
        if let Answer::Earlier(c) = c {
            assert!(c.took >= slow, "{:?}", c.took);
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        // Another question is its own.
        let d = cache
            .get("other", question(&runs, Duration::ZERO, Ok(1)))
            .await
            .unwrap();
        assert_eq!(value(&d), ("now", Some(1)));
    }

    #[tokio::test]
    async fn a_reused_answer_is_computed_again_once_old_and_a_failure_is_told() {
        let cache = SlowAnswers::new(Duration::from_millis(20), Duration::from_millis(1_000), 8);
        let runs = Arc::new(AtomicUsize::new(0));
        let slow = Duration::from_millis(50);
        let _ = cache.get("k", question(&runs, slow, Ok(1))).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1_100)).await;
        // Older than the reuse window: computed again; the old one is shown meanwhile.
        let a = cache.get("k", question(&runs, slow, Ok(2))).await.unwrap();
        assert_eq!(value(&a), ("earlier", Some(1)));
        tokio::time::sleep(Duration::from_millis(250)).await;
        let b = cache
            .get("k", question(&runs, Duration::ZERO, Ok(3)))
            .await
            .unwrap();
        assert_eq!(value(&b), ("earlier", Some(2)), "the new one, reused");
        assert_eq!(runs.load(Ordering::SeqCst), 2);

        let failing = cache
            .get(
                "bad",
                question(&runs, Duration::ZERO, Err(Problem::bad("no such slice"))),
            )
            .await;
        assert_eq!(
            failing.err().map(|p| p.detail).as_deref(),
            Some("no such slice")
        );
    }

    #[tokio::test]
    async fn answers_are_kept_for_so_many_questions_at_most() {
        let cache = SlowAnswers::new(Duration::from_millis(500), Duration::from_secs(60), 2);
        let runs = Arc::new(AtomicUsize::new(0));
        for (k, n) in [("a", 1), ("b", 2), ("c", 3)] {
            let a = cache
                .get(k, question(&runs, Duration::ZERO, Ok(n)))
                .await
                .unwrap();
            assert_eq!(value(&a), ("now", Some(n)));
            assert!(cache.slots.lock().unwrap().len() <= 2);
        }
    }
}

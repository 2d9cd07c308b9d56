//! `crm-scheduler`: makes time act. It follows the event store's global log, keeps every
//! customer's deadlines in a [`TimerIndex`], and when a timer is due issues an ordinary
//! command (`ApplyTimer`) through the command handler, where the domain accepts it only
//! if the customer's committed state says it is due.
//!
//! Safe to run twice: a timer's command id is derived from the customer and the
//! timer's own content (its deadline), so two schedulers — or one restarted — issue the
//! same command id and the event store applies it once. The clock is injected
//! ([`Clock`]), so tests drive a simulated year in seconds.
#![forbid(unsafe_code)]

pub mod index;

use std::sync::{Arc, Mutex};
use std::time::Instant;

use chrono::{DateTime, Utc};
use crm_command_handler::{Command, CommandError, CommandHandler, Envelope};
use crm_domain::customer::{ApplyTimer, Timer};
use crm_domain::{Actor, CustomerCommand, CustomerId};
use crm_eventstore::{EventStore, LogPosition, StoreError};
use crm_telemetry::names;
use uuid::Uuid;

pub use index::TimerIndex;

/// Namespace of the scheduler's command ids (UUID v5).
pub const COMMAND_ID_NAMESPACE: Uuid = Uuid::from_u128(0x6372_6d2d_7363_6865_6475_6c65_7200_0001);

/// Where the scheduler reads the time.
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

/// The machine's clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock tests move by hand.
#[derive(Clone)]
pub struct ManualClock(Arc<Mutex<DateTime<Utc>>>);

impl ManualClock {
    pub fn new(at: DateTime<Utc>) -> Self {
        Self(Arc::new(Mutex::new(at)))
    }

    pub fn set(&self, at: DateTime<Utc>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = at;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The command id of a timer: the same lapse always gives the same id.
pub fn command_id(customer: CustomerId, timer: &Timer) -> Uuid {
    let key = format!(
        "{customer}/{}",
        serde_json::to_string(timer).expect("timers serialise")
    );
    Uuid::new_v5(&COMMAND_ID_NAMESPACE, key.as_bytes())
}

/// What one tick did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TickReport {
    /// Events read from the log to catch up.
    pub events_read: u64,
    pub due: usize,
    /// Applied now by this scheduler.
    pub applied: usize,
    /// Already applied (by another scheduler, or before a restart).
    pub duplicates: usize,
    /// No longer due on the committed state (the index had not seen newer events yet).
    pub not_due: usize,
    /// Refused for another reason, or failed (logged; tried again next tick).
    pub failed: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    #[error("reading the event log: {0}")]
    Store(#[from] StoreError),
}

/// Follows the log and issues due timers as `system:<name>`.
pub struct Scheduler<S> {
    store: S,
    handler: CommandHandler<S>,
    index: TimerIndex,
    cursor: LogPosition,
    actor: Actor,
}

impl<S: EventStore + Clone> Scheduler<S> {
    pub fn new(store: S, handler: CommandHandler<S>, name: &str) -> Self {
        Self {
            store,
            handler,
            index: TimerIndex::new(),
            cursor: LogPosition::START,
            actor: Actor::system(name),
        }
    }

    /// Read the log up to its current end into the index.
    pub async fn catch_up(&mut self) -> Result<u64, SchedulerError> {
        let mut read = 0;
        loop {
            let page = self.store.read_all(self.cursor, 5_000).await?;
            let Some(last) = page.last() else { break };
            self.cursor = last.log_position;
            for e in &page {
                self.index.apply(e);
            }
            read += page.len() as u64;
        }
        metrics::gauge!(names::SCHEDULER_CUSTOMERS).set(self.index.len() as f64);
        Ok(read)
    }

    /// Catch up, then issue every timer due at `now`.
    pub async fn tick(&mut self, now: DateTime<Utc>) -> Result<TickReport, SchedulerError> {
        let started = Instant::now();
        let mut report = TickReport {
            events_read: self.catch_up().await?,
            ..TickReport::default()
        };
        let due = self.index.due(now);
        report.due = due.len();
        if let Some(oldest) = due.iter().map(|(_, _, at)| *at).min() {
            let late = (now - oldest).num_milliseconds().max(0) as f64 / 1000.0;
            metrics::histogram!(names::SCHEDULER_DELAY_SECONDS).record(late);
        }
        for (customer, timer, _) in due {
            let name = timer.name();
            let id = command_id(customer, &timer);
            let envelope = Envelope {
                command_id: id,
                correlation_id: id,
                causation_id: None,
                actor: self.actor.clone(),
                issued_at: now,
            };
            let command = Command::Customer(CustomerCommand::ApplyTimer(ApplyTimer {
                customer_id: customer,
                timer,
            }));
            let outcome = match self.handler.handle(envelope, command).await {
                Ok(a) if a.duplicate => {
                    report.duplicates += 1;
                    "duplicate"
                }
                Ok(_) => {
                    report.applied += 1;
                    "applied"
                }
                Err(CommandError::Refused(e)) if e.code() == "timer.not_due" => {
                    report.not_due += 1;
                    "not_due"
                }
                Err(e) => {
                    tracing::warn!(customer_id = %customer, timer = name, code = e.code(), error = %e, "timer not applied; tried again next tick");
                    report.failed += 1;
                    if matches!(e, CommandError::Unavailable(_)) {
                        "failed"
                    } else {
                        "refused"
                    }
                }
            };
            metrics::counter!(names::SCHEDULER_TIMERS_TOTAL, "timer" => name, "outcome" => outcome)
                .increment(1);
        }
        metrics::histogram!(names::SCHEDULER_TICK_SECONDS).record(started.elapsed().as_secs_f64());
        Ok(report)
    }

    /// Tick every `period` until `stop` resolves; `alive` is called at the start of every
    /// tick (liveness).
    pub async fn run(
        mut self,
        clock: &dyn Clock,
        period: std::time::Duration,
        alive: impl Fn(),
        stop: impl std::future::Future<Output = ()>,
    ) -> Result<(), SchedulerError> {
        tokio::pin!(stop);
        loop {
            // A sign of life for every tick, failed or not: a store that is away makes
            // the scheduler unready, never dead.
            alive();
            match self.tick(clock.now()).await {
                Ok(r) if r.due > 0 || r.failed > 0 => {
                    tracing::info!(
                        due = r.due,
                        applied = r.applied,
                        duplicates = r.duplicates,
                        not_due = r.not_due,
                        failed = r.failed,
                        "tick"
                    )
                }
                Ok(_) => {}
                // The store may be restarting: say so and try again next period.
                Err(e) => tracing::error!(error = %e, "tick failed"),
            }
            tokio::select! {
                _ = &mut stop => return Ok(()),
                _ = tokio::time::sleep(period) => {}
            }
        }
    }
}

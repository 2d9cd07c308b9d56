//! Lag and health of one projector instance: per partition it holds, how many messages
//! wait, how old the newest applied event is, and when it last made progress. From that,
//! `GET /healthz` tells "caught up", "catching up" and "stalled" apart.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crm_telemetry::names;
use serde::Serialize;

/// No progress for this long while messages wait: stalled.
pub const STALL_AFTER: Duration = Duration::from_secs(15);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    CaughtUp,
    CatchingUp,
    Stalled,
}

#[derive(Debug, Clone)]
struct Partition {
    behind: u64,
    newest_event_us: i64,
    last_progress: Instant,
    applied: u64,
    error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PartitionReport {
    pub partition: u32,
    pub state: State,
    pub events_behind: u64,
    pub seconds_behind: f64,
    pub events_applied: u64,
    pub seconds_since_progress: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub state: State,
    pub instance: String,
    pub partitions: Vec<PartitionReport>,
}

#[derive(Debug)]
pub struct Health {
    instance: String,
    partitions: Mutex<BTreeMap<u32, Partition>>,
}

impl Health {
    pub fn new(instance: String) -> Self {
        Self {
            instance,
            partitions: Mutex::new(BTreeMap::new()),
        }
    }

    pub fn started(&self, partition: u32) {
        let mut parts = self.partitions.lock().expect("health");
        parts.insert(
            partition,
            Partition {
                behind: 0,
                newest_event_us: 0,
                last_progress: Instant::now(),
                applied: 0,
                error: None,
            },
        );
        metrics::gauge!(names::PROJECTOR_PARTITIONS_HELD).set(parts.len() as f64);
    }

    pub fn stopped(&self, partition: u32) {
        let mut parts = self.partitions.lock().expect("health");
        parts.remove(&partition);
        metrics::gauge!(names::PROJECTOR_PARTITIONS_HELD).set(parts.len() as f64);
        let label = partition.to_string();
        metrics::gauge!(names::PROJECTOR_EVENTS_BEHIND, "partition" => label.clone()).set(0.0);
        metrics::gauge!(names::PROJECTOR_SECONDS_BEHIND, "partition" => label).set(0.0);
    }

    /// A batch was committed: `applied` events, `behind` messages still waiting.
    pub fn progress(&self, partition: u32, applied: usize, behind: u64, newest_event_us: i64) {
        let mut parts = self.partitions.lock().expect("health");
        let Some(p) = parts.get_mut(&partition) else {
            return;
        };
        p.behind = behind;
        p.applied += applied as u64;
        p.error = None;
        if applied > 0 {
            p.last_progress = Instant::now();
            p.newest_event_us = p.newest_event_us.max(newest_event_us);
        }
        let seconds = seconds_behind(p);
        let label = partition.to_string();
        metrics::gauge!(names::PROJECTOR_EVENTS_BEHIND, "partition" => label.clone())
            .set(behind as f64);
        metrics::gauge!(names::PROJECTOR_SECONDS_BEHIND, "partition" => label).set(seconds);
    }

    pub fn failing(&self, partition: u32, error: &str) {
        if let Some(p) = self.partitions.lock().expect("health").get_mut(&partition) {
            p.error = Some(error.to_string());
        }
    }

    /// Messages waiting, as the broker counts them (refreshed between batches).
    pub fn set_behind(&self, partition: u32, behind: u64) {
        if let Some(p) = self.partitions.lock().expect("health").get_mut(&partition) {
            if behind == 0 {
                // Nothing waits: being idle is not being stalled.
                p.last_progress = Instant::now();
            }
            p.behind = behind;
            metrics::gauge!(names::PROJECTOR_EVENTS_BEHIND, "partition" => partition.to_string())
                .set(behind as f64);
        }
    }

    pub fn held(&self) -> Vec<u32> {
        self.partitions
            .lock()
            .expect("health")
            .keys()
            .copied()
            .collect()
    }

    pub fn report(&self) -> Report {
        let parts = self.partitions.lock().expect("health");
        let partitions: Vec<PartitionReport> = parts
            .iter()
            .map(|(&partition, p)| {
                let since = p.last_progress.elapsed();
                let state = if p.behind == 0 && p.error.is_none() {
                    State::CaughtUp
                } else if since < STALL_AFTER {
                    State::CatchingUp
                } else {
                    State::Stalled
                };
                PartitionReport {
                    partition,
                    state,
                    events_behind: p.behind,
                    seconds_behind: seconds_behind(p),
                    events_applied: p.applied,
                    seconds_since_progress: since.as_secs_f64(),
                    error: p.error.clone(),
                }
            })
            .collect();
        Report {
            state: partitions
                .iter()
                .map(|p| p.state)
                .max()
                .unwrap_or(State::CaughtUp),
            instance: self.instance.clone(),
            partitions,
        }
    }
}

fn seconds_behind(p: &Partition) -> f64 {
    if p.behind == 0 || p.newest_event_us == 0 {
        return 0.0;
    }
    let now = chrono::Utc::now().timestamp_micros();
    ((now - p.newest_event_us).max(0)) as f64 / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_follow_backlog_and_progress() {
        let h = Health::new("i".into());
        h.started(3);
        assert_eq!(h.report().state, State::CaughtUp);
        h.progress(3, 10, 500, chrono::Utc::now().timestamp_micros());
        assert_eq!(h.report().state, State::CatchingUp);
        h.partitions
            .lock()
            .unwrap()
            .get_mut(&3)
            .unwrap()
            .last_progress = Instant::now() - STALL_AFTER - Duration::from_secs(1);
        assert_eq!(h.report().state, State::Stalled);
        h.set_behind(3, 0);
        assert_eq!(h.report().state, State::CaughtUp);
        h.failing(3, "database down");
        assert_eq!(
            h.report().state,
            State::CatchingUp,
            "failing, not yet stalled"
        );
        h.stopped(3);
        assert!(h.report().partitions.is_empty());
    }
}

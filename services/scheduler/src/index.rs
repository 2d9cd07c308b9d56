//! The scheduler's view of the log: every customer's state folded from its events, the
//! policy in force, and customers ordered by the instant their next timer fires. No I/O:
//! events go in, due timers come out. Which timers exist and when they fire is decided
//! by `crm_domain::customer::timers`, the same functions `decide` checks them with.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use crm_domain::customer::timers;
use crm_domain::customer::Timer;
use crm_domain::{CustomerId, CustomerState, DomainEvent, PolicyState};
use crm_eventstore::RecordedEvent;

#[derive(Default)]
pub struct TimerIndex {
    policy: PolicyState,
    customers: HashMap<CustomerId, CustomerState>,
    queue: BTreeSet<(DateTime<Utc>, CustomerId)>,
    next: HashMap<CustomerId, DateTime<Utc>>,
}

impl TimerIndex {
    pub fn new() -> Self {
        Self::default()
    }

    /// Customers tracked.
    pub fn len(&self) -> usize {
        self.customers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.customers.is_empty()
    }

    /// Fold one event of the global log (read in commit-safe order). Events the scheduler
    /// cannot read are skipped: they cannot carry a deadline it could act on.
    pub fn apply(&mut self, e: &RecordedEvent) {
        if crm_domain::evidence::is_evidence(&e.stream_id) {
            return;
        }
        let Ok(event) = DomainEvent::decode(&e.event_type, e.schema_version, &e.payload) else {
            tracing::warn!(event_type = %e.event_type, stream = %e.stream_id, "unreadable event skipped");
            return;
        };
        match event {
            DomainEvent::Customer(c) => {
                let id = c.customer_id();
                self.customers.entry(id).or_default().apply(&c);
                self.reindex(id);
            }
            DomainEvent::Policy(p) => {
                self.policy.apply(&p);
                // Every deadline may have moved.
                let ids: Vec<CustomerId> = self.customers.keys().copied().collect();
                for id in ids {
                    self.reindex(id);
                }
            }
            DomainEvent::Manager(_) => {}
        }
    }

    fn reindex(&mut self, id: CustomerId) {
        if let Some(old) = self.next.remove(&id) {
            self.queue.remove(&(old, id));
        }
        let next = self.customers[&id]
            .registered()
            .and_then(|c| timers::next(c, &self.policy.current));
        if let Some(at) = next {
            self.queue.insert((at, id));
            self.next.insert(id, at);
        }
    }

    /// Timers due at `now`, customer by customer (each customer's in firing order),
    /// with the instant each became due.
    pub fn due(&self, now: DateTime<Utc>) -> Vec<(CustomerId, Timer, DateTime<Utc>)> {
        let mut out = Vec::new();
        for (_, id) in self.queue.iter().take_while(|(at, _)| *at <= now) {
            let Some(customer) = self.customers[id].registered() else {
                continue;
            };
            for p in timers::due(customer, &self.policy.current, now) {
                out.push((*id, p.timer, p.fires_at));
            }
        }
        out
    }
}

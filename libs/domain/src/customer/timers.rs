//! The time-driven rules of one customer, as pure functions of its state and the policy:
//! which timers are pending and when each fires. The scheduler uses [`next`] to index
//! customers by their next deadline and [`due`] to issue `ApplyTimer` commands; `decide`
//! uses [`due`] again on the customer's committed state, so a timer is applied only if the
//! rules say it is due now, whatever the scheduler believed. One definition, two users.

use chrono::{DateTime, Duration, Utc};

use super::commands::Timer;
use super::complaint::ComplaintStatus;
use super::events::{PoolCause, SlaClock};
use super::state::Customer;
use crate::ids::ManagerId;
use crate::policy::{days, Policy, ProtectionScope};
use crate::values::{LifecycleStage, TeamId};

/// A pending timer and the instant it fires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub timer: Timer,
    pub fires_at: DateTime<Utc>,
}

/// First-touch protection in force: who holds it and until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Protection {
    pub scope: ProtectionScope,
    pub manager: ManagerId,
    pub team: TeamId,
    pub until: DateTime<Utc>,
}

impl Protection {
    /// Whether a manager of `team` may receive the customer while it holds.
    pub fn admits(&self, manager: ManagerId, team: &TeamId) -> bool {
        match self.scope {
            ProtectionScope::Team => *team == self.team,
            ProtectionScope::Manager => manager == self.manager,
        }
    }

    /// "team east-1" / "manager <id>", for refusals.
    pub fn holder(&self) -> String {
        match self.scope {
            ProtectionScope::Team => format!("team {}", self.team),
            ProtectionScope::Manager => format!("manager {}", self.manager),
        }
    }
}

/// The first-touch protection that holds at `now`, if any: within the protection period
/// and still owned within its scope (a voluntary release to the pool forfeits it).
pub fn protection(state: &Customer, policy: &Policy, now: DateTime<Utc>) -> Option<Protection> {
    protection_window(state, policy).filter(|p| now < p.until)
}

fn protection_window(state: &Customer, policy: &Policy) -> Option<Protection> {
    let rules = &policy.document.protection;
    let first = state.first_touch.as_ref()?;
    if rules.first_touch_days == 0 {
        return None;
    }
    let p = Protection {
        scope: rules.scope,
        manager: first.manager,
        team: first.team.clone(),
        until: first.at + days(rules.first_touch_days),
    };
    let (owner, team) = (state.owner?, state.owner_team.as_ref()?);
    p.admits(owner, team).then_some(p)
}

/// The automatic return to the pool the rules lead to, if any: its cause and the instant
/// it is due (the lapse deadline, pushed back by a lock or first-touch protection).
pub fn pool_return(state: &Customer, policy: &Policy) -> Option<(PoolCause, DateTime<Utc>)> {
    state.owner?;
    let rules = &policy.document.pool;
    let since = state.owned_since?;
    let tier = state.value_tier;
    let mut lapses = Vec::new();
    let n = rules.no_contact_days.of(tier);
    if n > 0 {
        let last = state.last_owner_contact_at.map_or(since, |c| c.max(since));
        lapses.push((last + days(n), PoolCause::NoContact));
    }
    let m = rules.lead_not_won_days.of(tier);
    if m > 0 && state.stage.is_prospect() {
        lapses.push((since + days(m), PoolCause::LeadNotWon));
    }
    let (mut due, cause) = lapses.into_iter().min()?;
    if let Some(lock) = &state.lock {
        due = due.max(lock.until?);
    }
    if let Some(p) = protection_window(state, policy) {
        due = due.max(p.until);
    }
    Some((cause, due))
}

/// Every pending timer of the customer, in no particular order.
pub fn pending(state: &Customer, policy: &Policy) -> Vec<Pending> {
    let mut out = Vec::new();
    let doc = &policy.document;
    if let Some((cause, due_at)) = pool_return(state, policy) {
        out.push(Pending {
            timer: Timer::PoolReturn { cause, due_at },
            fires_at: due_at,
        });
        if doc.pool.warning_days > 0 && state.pool_warned_for != Some(due_at) {
            out.push(Pending {
                timer: Timer::PoolReturnWarning {
                    cause,
                    returns_at: due_at,
                },
                fires_at: due_at - days(doc.pool.warning_days),
            });
        }
    }
    out.extend(complaint_clocks(state, policy));
    let dormant_after = doc.lifecycle.dormant_after_days;
    if dormant_after > 0
        && matches!(
            state.stage,
            LifecycleStage::Active | LifecycleStage::Customer
        )
    {
        let due_at = state.last_activity_at + days(dormant_after);
        out.push(Pending {
            timer: Timer::Dormancy { due_at },
            fires_at: due_at,
        });
    }
    out
}

/// The SLA clocks of the customer's complaints still open: each clock's breach, and its
/// warning until it has been given.
fn complaint_clocks(state: &Customer, policy: &Policy) -> Vec<Pending> {
    let doc = &policy.document;
    let mut out = Vec::new();
    for (id, c) in &state.complaints {
        if matches!(
            c.status,
            ComplaintStatus::Resolved | ComplaintStatus::Closed
        ) {
            continue;
        }
        let mut clock = |clock: SlaClock, from, due_at, warned: bool, breached: bool| {
            if breached {
                return;
            }
            let complaint_id = *id;
            out.push(Pending {
                timer: Timer::SlaBreach {
                    complaint_id,
                    clock,
                    due_at,
                },
                fires_at: runs_out(due_at),
            });
            if !warned {
                out.push(Pending {
                    timer: Timer::SlaWarning {
                        complaint_id,
                        clock,
                        due_at,
                    },
                    fires_at: doc.sla.warn_at(from, due_at),
                });
            }
        };
        if c.status == ComplaintStatus::Open {
            clock(
                SlaClock::FirstResponse,
                c.logged_at,
                c.first_response_due_at,
                c.first_response_warned,
                c.first_response_breached,
            );
        }
        clock(
            SlaClock::Resolution,
            c.clock_started_at,
            c.resolution_due_at,
            c.resolution_warned_for == Some(c.resolution_due_at),
            c.resolution_breached_for == Some(c.resolution_due_at),
        );
    }
    out
}

/// The instant an SLA clock due at `due_at` has run out: the first one after it. An
/// answer at the due instant itself is within the SLA (`within_sla` is `now <= due`), so
/// a breach at that instant would contradict it (microseconds: the store's precision).
pub fn runs_out(due_at: DateTime<Utc>) -> DateTime<Utc> {
    due_at + Duration::microseconds(1)
}

/// The earliest instant a timer of the customer fires.
pub fn next(state: &Customer, policy: &Policy) -> Option<DateTime<Utc>> {
    pending(state, policy).iter().map(|p| p.fires_at).min()
}

/// The timers due at `now`, in firing order. A warning whose deadline has also passed is
/// left out: the breach or return itself is due, and announcing it after the fact
/// would be noise.
pub fn due(state: &Customer, policy: &Policy, now: DateTime<Utc>) -> Vec<Pending> {
    let mut due: Vec<Pending> = pending(state, policy)
        .into_iter()
        .filter(|p| p.fires_at <= now)
        .filter(|p| match &p.timer {
            Timer::PoolReturnWarning { returns_at, .. } => *returns_at > now,
            Timer::SlaWarning { due_at, .. } => runs_out(*due_at) > now,
            _ => true,
        })
        .collect();
    due.sort_by(|a, b| {
        a.fires_at
            .cmp(&b.fires_at)
            .then_with(|| format!("{:?}", a.timer).cmp(&format!("{:?}", b.timer)))
    });
    due
}

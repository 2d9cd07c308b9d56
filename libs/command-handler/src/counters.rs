//! Write-side counters: numbers the rules need across aggregates, kept by the event
//! store in the same transaction as the events they follow from (so they are exact), and
//! bounded where a rule caps them (so two concurrent commands cannot both pass a limit).
//!
//! | key | counts | bounded by |
//! | --- | --- | --- |
//! | `holdings:<manager>` | customers the manager owns | the holding limit, when won customers count |
//! | `prospects:<manager>` | owned customers not yet won (lead, contacted, qualified) | the holding limit, when they do not |
//! | `claims:<manager>:<local day>` | claims from the pool that day | the daily claim cap |
//! | `wins:<manager>:<local day>` | deals won that day by customers the manager owned | — |
//! | `turn:<team>` | assignments by policy into the team (round robin) | — |

use chrono::{DateTime, Duration, NaiveDate, Utc};
use crm_domain::{
    CustomerEvent, CustomerState, DecisionContext, LifecycleStage, ManagerId, Policy, TeamId,
};
use crm_eventstore::CounterChange;

pub fn holdings_key(m: ManagerId) -> String {
    format!("holdings:{m}")
}

pub fn prospects_key(m: ManagerId) -> String {
    format!("prospects:{m}")
}

pub fn claims_key(m: ManagerId, day: NaiveDate) -> String {
    format!("claims:{m}:{day}")
}

pub fn wins_key(m: ManagerId, day: NaiveDate) -> String {
    format!("wins:{m}:{day}")
}

pub fn turn_key(team: &TeamId) -> String {
    format!("turn:{team}")
}

/// The counter a manager's holding limit is checked against under `policy`.
pub fn counted_key(policy: &Policy, m: ManagerId) -> String {
    if policy.document.holding.won_customers_count {
        holdings_key(m)
    } else {
        prospects_key(m)
    }
}

/// The keys of a manager's wins in the policy's performance window ending on `now`'s day.
pub fn window_keys(policy: &Policy, m: ManagerId, now: DateTime<Utc>) -> Vec<String> {
    let today = policy.document.local_day(now);
    (0..i64::from(policy.document.holding.performance_window_days))
        .map(|back| wins_key(m, today - Duration::days(back)))
        .collect()
}

/// The receiving manager of a command and the limit its counted counter may reach.
#[derive(Debug, Clone, Copy)]
pub struct Receiver {
    pub manager: ManagerId,
    pub limit: u32,
}

/// The counter changes implied by a customer's new events. Gains of the receiver's
/// counted counter are bounded by its limit; a claim is bounded by the daily cap.
pub fn changes(
    before: &CustomerState,
    events: &[CustomerEvent],
    receiver: Option<Receiver>,
    ctx: &DecisionContext,
) -> Vec<CounterChange> {
    let policy = &ctx.policy;
    let won_count = policy.document.holding.won_customers_count;
    let mut out = Vec::new();
    let mut owner = before.owner();
    let mut prospect = before.registered().is_none_or(|c| c.stage.is_prospect());
    let bound = |m: ManagerId, all: bool| {
        receiver
            .filter(|r| r.manager == m && all == won_count)
            .map(|r| i64::from(r.limit))
    };
    let gain = |out: &mut Vec<CounterChange>, m: ManagerId, prospect: bool| {
        out.push(CounterChange {
            key: holdings_key(m),
            delta: 1,
            max: bound(m, true),
        });
        if prospect {
            out.push(CounterChange {
                key: prospects_key(m),
                delta: 1,
                max: bound(m, false),
            });
        }
    };
    let loss = |out: &mut Vec<CounterChange>, m: ManagerId, prospect: bool| {
        out.push(CounterChange {
            key: holdings_key(m),
            delta: -1,
            max: None,
        });
        if prospect {
            out.push(CounterChange {
                key: prospects_key(m),
                delta: -1,
                max: None,
            });
        }
    };
    let day = policy.document.local_day(ctx.now);
    for e in events {
        match e {
            CustomerEvent::OwnerAssigned(a) => {
                gain(&mut out, a.manager_id, prospect);
                owner = Some(a.manager_id);
            }
            CustomerEvent::ClaimedFromPool(c) => {
                gain(&mut out, c.manager_id, prospect);
                out.push(CounterChange {
                    key: claims_key(c.manager_id, day),
                    delta: 1,
                    max: Some(i64::from(policy.document.pool.daily_claim_cap)),
                });
                owner = Some(c.manager_id);
            }
            CustomerEvent::OwnershipTransferred(t) => {
                loss(&mut out, t.from_manager, prospect);
                gain(&mut out, t.to_manager, prospect);
                owner = Some(t.to_manager);
            }
            CustomerEvent::ReleasedToPool(r) => {
                loss(&mut out, r.previous_owner, prospect);
                owner = None;
            }
            CustomerEvent::LifecycleStageChanged(l) => {
                let now_prospect = l.to.is_prospect();
                if let Some(m) = owner {
                    if prospect && !now_prospect {
                        out.push(CounterChange {
                            key: prospects_key(m),
                            delta: -1,
                            max: None,
                        });
                    }
                    if l.to == LifecycleStage::Customer {
                        out.push(CounterChange {
                            key: wins_key(m, day),
                            delta: 1,
                            max: None,
                        });
                    }
                }
                prospect = now_prospect;
            }
            _ => {}
        }
    }
    out
}

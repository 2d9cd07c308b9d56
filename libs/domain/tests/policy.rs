//! The ownership policy, first-touch protection, pool rules, complaint clocks and the
//! lifecycle by time: every rule and parameter, with its refusals, given/when/then.

mod support;

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use crm_domain::customer::timers;
use crm_domain::customer::*;
use crm_domain::policy::*;
use crm_domain::*;
use support::*;

fn day(n: i64) -> DateTime<Utc> {
    t0() + Duration::days(n)
}

fn policy(edit: impl FnOnce(&mut PolicyDocument)) -> Arc<Policy> {
    let mut doc = PolicyDocument::default();
    edit(&mut doc);
    doc.validate().unwrap();
    Policy::new(7, doc)
}

fn at_day(n: i64, p: &Arc<Policy>) -> DecisionContext {
    DecisionContext::new(day(n), Actor::system("scheduler")).with_policy(p.clone())
}

fn team_member(n: u128, team: &str, holdings: u32, limit: u32, wins: u32) -> Candidate {
    let mut view = manager(n, holdings, limit);
    view.team = team.parse().unwrap();
    Candidate {
        view,
        recent_wins: wins,
    }
}

fn by_policy(n: u128) -> CustomerCommand {
    CustomerCommand::AssignByPolicy(AssignByPolicy {
        customer_id: cid(n),
        reason: None,
    })
}

fn timer(n: u128, timer: Timer) -> CustomerCommand {
    CustomerCommand::ApplyTimer(ApplyTimer {
        customer_id: cid(n),
        timer,
    })
}

fn rule(name: &str, team: &str, method: Distribution, when: Conditions) -> AssignmentRule {
    AssignmentRule {
        name: name.into(),
        when,
        team: team.parse().unwrap(),
        method,
    }
}

/// Customer `n`, owned by manager `m` (team east-1) from minute 1 of day 0.
fn owned(n: u128, m: u128) -> Given {
    given(owned_by(n, m))
}

// ---- assignment by policy --------------------------------------------------------------

#[test]
fn the_first_matching_rule_picks_the_team_and_its_method_the_manager() {
    let p = policy(|d| {
        d.rules = vec![
            rule(
                "enterprise-auto",
                "industry-auto",
                Distribution::RoundRobin,
                Conditions {
                    industries: vec!["automotive".into()],
                    ..Conditions::default()
                },
            ),
            rule(
                "east",
                "east-1",
                Distribution::LeastLoaded,
                Conditions {
                    regions: vec!["east".parse().unwrap()],
                    ..Conditions::default()
                },
            ),
        ]
    });
    let team = TeamCandidates {
        members: vec![
            team_member(1, "east-1", 5, 10, 0),
            team_member(2, "east-1", 3, 10, 0),
            team_member(3, "east-1", 0, 10, 0), // inactive below
            team_member(4, "east-2", 0, 10, 0), // another team: never
        ],
        turn: 0,
    };
    let mut team3 = team.clone();
    team3.members[2].view.active = false;
    let ctx = at_day(0, &p).with_candidates(team3);
    let (_, events) = given(registered(1)).when(by_policy(1), &ctx).accepted();
    let CustomerEvent::OwnerAssigned(e) = &events[0] else {
        panic!("{events:?}")
    };
    assert_eq!(
        e.manager_id,
        mid(2),
        "least loaded of the active east-1 managers"
    );
    assert_eq!(
        e.policy,
        Some(PolicyDecision {
            policy_version: 7,
            rule: "east".into(),
            rule_index: 1,
            method: Distribution::LeastLoaded,
            eligible: 2,
        })
    );
    assert_eq!(e.assigned_by, Actor::system("scheduler"));
    assert_eq!(e.reason, "policy rule \"east\"");
    assert_eq!(e.at, Some(day(0)));
}

#[test]
fn assignment_by_policy_refusals_name_the_rule() {
    let none = policy(|d| {
        d.rules = vec![rule(
            "west only",
            "west-1",
            Distribution::RoundRobin,
            Conditions {
                regions: vec!["west".parse().unwrap()],
                ..Conditions::default()
            },
        )]
    });
    given(registered(1))
        .when(by_policy(1), &at_day(0, &none))
        .then_error("policy.no_rule_matched");
    let all = policy(|d| {
        d.rules = vec![rule(
            "all",
            "east-1",
            Distribution::RoundRobin,
            Conditions::default(),
        )]
    });
    let full = TeamCandidates {
        members: vec![team_member(1, "east-1", 10, 10, 0)],
        turn: 3,
    };
    let e = given(registered(1))
        .when(by_policy(1), &at_day(0, &all).with_candidates(full.clone()))
        .then_error("policy.no_eligible_manager");
    assert!(e.to_string().contains("\"all\"") && e.to_string().contains("east-1"));
    given(owned_by(1, 1))
        .when(by_policy(1), &at_day(0, &all).with_candidates(full.clone()))
        .then_error("ownership.already_owned");
    // A team limit below the manager's own limit is the one that counts.
    let mut limited = full.clone();
    limited.members[0].view.holdings = 4;
    limited.members[0].view.holding_limit = 4; // min(own 10, team 4), as the handler passes it
    given(registered(1))
        .when(by_policy(1), &at_day(0, &all).with_candidates(limited))
        .then_error("policy.no_eligible_manager");
}

#[test]
fn won_customers_do_not_count_when_the_policy_says_so() {
    let p = policy(|d| {
        d.holding.won_customers_count = false;
        d.rules = vec![rule(
            "all",
            "east-1",
            Distribution::RoundRobin,
            Conditions::default(),
        )];
    });
    let mut won = register(1);
    won.stage = Some(LifecycleStage::Customer);
    let registered_won = decide(
        &CustomerState::default(),
        &CustomerCommand::Register(won),
        &ctx(0),
    )
    .unwrap();
    let full = TeamCandidates {
        members: vec![team_member(1, "east-1", 10, 10, 0)],
        turn: 0,
    };
    given(registered_won.clone())
        .when(by_policy(1), &at_day(0, &p).with_candidates(full.clone()))
        .accepted();
    // The same manager at the limit still cannot receive a lead…
    given(registered(2))
        .when(by_policy(2), &at_day(0, &p).with_candidates(full))
        .then_error("policy.no_eligible_manager");
    // …and an explicit assignment follows the same rule.
    given(registered_won)
        .when(
            CustomerCommand::AssignOwner(AssignOwner {
                customer_id: cid(1),
                manager_id: mid(1),
                reason: "VIP desk".into(),
            }),
            &at_day(0, &p).with_manager(manager(1, 10, 10)),
        )
        .accepted();
}

// ---- first-touch protection -----------------------------------------------------------

fn transfer(n: u128, to: u128) -> CustomerCommand {
    CustomerCommand::TransferOwner(TransferOwner {
        customer_id: cid(n),
        to_manager_id: mid(to),
        reason: "rebalancing".into(),
    })
}

#[test]
fn the_first_toucher_keeps_the_customer_for_the_protection_period() {
    let team_scope = policy(|d| d.protection.first_touch_days = 14);
    let mut other_team = manager(2, 0, 10);
    other_team.team = "west-1".parse().unwrap();
    let e = owned(1, 1)
        .when(
            transfer(1, 2),
            &at_day(13, &team_scope).with_manager(other_team.clone()),
        )
        .then_error("ownership.protected");
    assert_eq!(
        e,
        DomainError::OwnershipProtected {
            customer: cid(1),
            holder: "team east-1".into(),
            until: at(1) + Duration::days(14),
        }
    );
    // Within the team, moves are allowed; after the period, anyone may receive it.
    owned(1, 1)
        .when(
            transfer(1, 3),
            &at_day(13, &team_scope).with_manager(manager(3, 0, 10)),
        )
        .accepted();
    owned(1, 1)
        .when(
            transfer(1, 2),
            &at_day(15, &team_scope).with_manager(other_team.clone()),
        )
        .accepted();
    // Manager scope: even a teammate is refused.
    let manager_scope = policy(|d| {
        d.protection.first_touch_days = 30;
        d.protection.scope = ProtectionScope::Manager;
    });
    owned(1, 1)
        .when(
            transfer(1, 3),
            &at_day(5, &manager_scope).with_manager(manager(3, 0, 10)),
        )
        .then_error("ownership.protected");
    // 0 days: no protection.
    let off = policy(|d| d.protection.first_touch_days = 0);
    owned(1, 1)
        .when(transfer(1, 2), &at_day(1, &off).with_manager(other_team))
        .accepted();
}

#[test]
fn a_voluntary_release_forfeits_the_protection() {
    let p = policy(|_| {});
    let (g, _) = owned(1, 1)
        .when(
            CustomerCommand::ReleaseToPool(ReleaseToPool {
                customer_id: cid(1),
                reason: "not my segment".into(),
            }),
            &at_day(2, &p),
        )
        .accepted();
    let mut other_team = manager(2, 0, 10);
    other_team.team = "west-1".parse().unwrap();
    let (g, _) = g
        .when(
            CustomerCommand::ClaimFromPool(ClaimFromPool {
                customer_id: cid(1),
                manager_id: mid(2),
            }),
            &at_day(3, &p).with_manager(other_team),
        )
        .accepted();
    assert_eq!(timers::protection(&customer(&g.0), &p, day(4)), None);
}

// ---- the pool -------------------------------------------------------------------------

fn pending_timers(g: &Given, p: &Policy) -> Vec<(Timer, DateTime<Utc>)> {
    let mut v: Vec<_> = timers::pending(&customer(&g.0), p)
        .into_iter()
        .map(|t| (t.timer, t.fires_at))
        .collect();
    v.sort_by_key(|(_, at)| *at);
    v
}

#[test]
fn no_contact_by_the_owner_for_n_days_returns_the_customer_after_a_warning() {
    let p = policy(|d| {
        d.protection.first_touch_days = 0;
        d.pool.no_contact_days = TierDays {
            high: 60,
            mid: 45,
            low: 30,
        };
        d.pool.lead_not_won_days = TierDays::all(0);
        d.pool.warning_days = 5;
    });
    let g = owned(1, 1);
    let deadline = at(1) + Duration::days(30);
    assert_eq!(
        pending_timers(&g, &p),
        vec![
            (
                Timer::PoolReturnWarning {
                    cause: PoolCause::NoContact,
                    returns_at: deadline
                },
                deadline - Duration::days(5)
            ),
            (
                Timer::PoolReturn {
                    cause: PoolCause::NoContact,
                    due_at: deadline
                },
                deadline
            ),
        ]
    );
    // Early: refused; then the warning, once.
    let warn = timer(
        1,
        Timer::PoolReturnWarning {
            cause: PoolCause::NoContact,
            returns_at: deadline,
        },
    );
    g.when(warn.clone(), &at_day(20, &p))
        .then_error("timer.not_due");
    let (g, events) = owned(1, 1).when(warn.clone(), &at_day(26, &p)).accepted();
    assert!(matches!(&events[0], CustomerEvent::PoolReturnWarned(w) if w.owner == mid(1)));
    let g = Given(g.0);
    let g2 = Given(g.0.clone());
    g2.when(warn, &at_day(27, &p)).then_error("timer.not_due");
    // A contact by someone else does not count; by the owner it moves the deadline.
    let contact_by = |m: u128| {
        CustomerCommand::RecordContact(RecordContact {
            customer_id: cid(1),
            contact_id: ContactId::new(uuid::Uuid::from_u128(m)),
            manager_id: mid(m),
            channel: ContactChannel::Phone,
            direction: Direction::Outbound,
            outcome: ContactOutcome::NoAnswer,
            summary: None,
            next_follow_up_at: None,
            occurred_at: None,
        })
    };
    let (g, _) = g.when(contact_by(9), &at_day(28, &p)).accepted();
    assert_eq!(
        timers::pool_return(&customer(&g.0), &p),
        Some((PoolCause::NoContact, deadline))
    );
    let (g_moved, _) = Given(g.0.clone())
        .when(contact_by(1), &at_day(28, &p))
        .accepted();
    assert_eq!(
        timers::pool_return(&customer(&g_moved.0), &p),
        Some((PoolCause::NoContact, day(58)))
    );
    // At the deadline the return is due and records its rule.
    let (g, events) = g
        .when(
            timer(
                1,
                Timer::PoolReturn {
                    cause: PoolCause::NoContact,
                    due_at: deadline,
                },
            ),
            &DecisionContext::new(deadline, Actor::system("scheduler")).with_policy(p.clone()),
        )
        .accepted();
    let CustomerEvent::ReleasedToPool(r) = &events[0] else {
        panic!("{events:?}")
    };
    assert_eq!(r.previous_owner, mid(1));
    assert_eq!(r.reason, "no contact by the owner for 30 days");
    assert_eq!(
        r.rule,
        Some(PoolReturn {
            cause: PoolCause::NoContact,
            due_at: deadline,
            policy_version: 7
        })
    );
    assert!(pending_timers(&g, &p).is_empty(), "in the pool: no timers");
}

#[test]
fn the_pool_deadline_follows_the_value_tier_and_the_lead_rule() {
    let p = policy(|d| {
        d.protection.first_touch_days = 0;
        d.pool.no_contact_days = TierDays {
            high: 60,
            mid: 45,
            low: 30,
        };
        d.pool.lead_not_won_days = TierDays {
            high: 120,
            mid: 20,
            low: 90,
        };
    });
    let tier = |t: ValueTier| {
        let mut r = register(1);
        r.value_tier = Some(t);
        let reg = decide(
            &CustomerState::default(),
            &CustomerCommand::Register(r),
            &ctx(0),
        )
        .unwrap();
        let mut s = fold(&reg);
        let assigned = decide(
            &s,
            &CustomerCommand::AssignOwner(AssignOwner {
                customer_id: cid(1),
                manager_id: mid(1),
                reason: "x".into(),
            }),
            &at_day(0, &p).with_manager(manager(1, 0, 10)),
        )
        .unwrap();
        assigned.iter().for_each(|e| s.apply(e));
        timers::pool_return(s.registered().expect("registered"), &p)
    };
    assert_eq!(tier(ValueTier::High), Some((PoolCause::NoContact, day(60))));
    assert_eq!(tier(ValueTier::Mid), Some((PoolCause::LeadNotWon, day(20))));
    assert_eq!(tier(ValueTier::Low), Some((PoolCause::NoContact, day(30))));
}

#[test]
fn locks_and_protection_keep_a_customer_out_of_the_pool() {
    let p = policy(|d| {
        d.protection.first_touch_days = 45;
        d.pool.lead_not_won_days = TierDays::all(0);
    });
    // Protected until day 45 (+1 min): the 30-day return waits for the end of it.
    let g = owned(1, 1);
    assert_eq!(
        timers::pool_return(&customer(&g.0), &p),
        Some((PoolCause::NoContact, at(1) + Duration::days(45)))
    );
    let lock = |until: Option<DateTime<Utc>>| {
        CustomerCommand::LockOwnership(LockOwnership {
            customer_id: cid(1),
            until,
            reason: "VIP".into(),
        })
    };
    let (locked, _) = owned(1, 1).when(lock(None), &at_day(2, &p)).accepted();
    assert_eq!(timers::pool_return(&customer(&locked.0), &p), None);
    assert!(pending_timers(&locked, &p).is_empty());
    Given(locked.0.clone())
        .when(lock(Some(day(100))), &at_day(3, &p))
        .then_error("ownership.already_locked");
    let (until, _) = owned(1, 1)
        .when(lock(Some(day(100))), &at_day(2, &p))
        .accepted();
    assert_eq!(
        timers::pool_return(&customer(&until.0), &p),
        Some((PoolCause::NoContact, day(100)))
    );
    let unlock = CustomerCommand::UnlockOwnership(UnlockOwnership {
        customer_id: cid(1),
        reason: "no longer VIP".into(),
    });
    let (unlocked, _) = locked.when(unlock.clone(), &at_day(50, &p)).accepted();
    assert!(timers::pool_return(&customer(&unlocked.0), &p).is_some());
    unlocked
        .when(unlock, &at_day(51, &p))
        .then_error("ownership.not_locked");
    owned(1, 1)
        .when(lock(Some(day(0))), &at_day(2, &p))
        .then_error("validation.invalid_field");
}

#[test]
fn claims_are_capped_per_day_and_the_previous_owner_waits() {
    let p = policy(|d| {
        d.pool.daily_claim_cap = 3;
        d.pool.reclaim_cooldown_days = 7;
    });
    let (g, _) = owned(1, 1)
        .when(
            CustomerCommand::ReleaseToPool(ReleaseToPool {
                customer_id: cid(1),
                reason: "busy".into(),
            }),
            &at_day(1, &p),
        )
        .accepted();
    let claim = |m: u128| {
        CustomerCommand::ClaimFromPool(ClaimFromPool {
            customer_id: cid(1),
            manager_id: mid(m),
        })
    };
    let e = Given(g.0.clone())
        .when(claim(1), &at_day(7, &p).with_manager(manager(1, 0, 10)))
        .then_error("pool.reclaim_cooldown");
    assert_eq!(
        e,
        DomainError::ReclaimCooldown {
            manager: mid(1),
            until: day(8)
        }
    );
    Given(g.0.clone())
        .when(claim(1), &at_day(8, &p).with_manager(manager(1, 0, 10)))
        .accepted();
    Given(g.0.clone())
        .when(
            claim(2),
            &at_day(1, &p)
                .with_manager(manager(2, 0, 10))
                .with_claims_today(3),
        )
        .then_error("pool.claim_cap_reached");
    Given(g.0)
        .when(
            claim(2),
            &at_day(1, &p)
                .with_manager(manager(2, 0, 10))
                .with_claims_today(2),
        )
        .accepted();
}

// ---- complaint clocks -----------------------------------------------------------------

fn log_complaint(severity: Severity) -> CustomerCommand {
    CustomerCommand::LogComplaint(LogComplaint {
        customer_id: cid(1),
        complaint_id: kid(1),
        severity,
        category: "fees".into(),
        description: "charged twice".into(),
        channel: ContactChannel::Phone,
    })
}

fn minutes(p: &Arc<Policy>, m: i64) -> DecisionContext {
    DecisionContext::new(t0() + Duration::minutes(m), Actor::system("scheduler"))
        .with_policy(p.clone())
        .with_escalation(EscalationChain {
            team_lead: Some(mid(50)),
            branch_manager: Some(mid(60)),
        })
}

#[test]
fn complaint_clocks_warn_breach_once_and_escalate_up_the_chain() {
    let p = policy(|d| {
        d.sla.warn_at_percent = 50;
        d.sla.resolution_hours.critical = 2;
    });
    let (g, _) = owned(1, 1)
        .when(log_complaint(Severity::Critical), &minutes(&p, 10))
        .accepted();
    let first_due = at(20);
    let resolution_due = at(10) + Duration::hours(2);
    let due_now = |g: &Given, m: i64| -> Vec<Timer> {
        timers::due(&customer(&g.0), &p, at(m))
            .into_iter()
            .map(|d| d.timer)
            .collect()
    };
    assert!(due_now(&g, 14).is_empty());
    let warn = Timer::SlaWarning {
        complaint_id: kid(1),
        clock: SlaClock::FirstResponse,
        due_at: first_due,
    };
    assert_eq!(due_now(&g, 15), vec![warn.clone()], "50 % of 10 minutes");
    let (g, events) = g.when(timer(1, warn.clone()), &minutes(&p, 15)).accepted();
    assert!(
        matches!(&events[0], CustomerEvent::ComplaintSlaWarned(w) if w.clock == SlaClock::FirstResponse)
    );
    let g = Given(g.0);
    Given(g.0.clone())
        .when(timer(1, warn), &minutes(&p, 16))
        .then_error("timer.not_due");
    assert!(
        due_now(&g, 20).is_empty(),
        "at the due instant the clock has not run out"
    );
    let breach = Timer::SlaBreach {
        complaint_id: kid(1),
        clock: SlaClock::FirstResponse,
        due_at: first_due,
    };
    let (g, events) = g
        .when(timer(1, breach.clone()), &minutes(&p, 21))
        .accepted();
    assert!(
        matches!(&events[0], CustomerEvent::ComplaintSlaBreached(b) if b.owner == Some(mid(1)))
    );
    assert!(
        matches!(&events[1], CustomerEvent::ComplaintEscalated(e) if e.level == 1 && e.escalated_to == Some(mid(50)) && e.automatic)
    );
    Given(g.0.clone())
        .when(timer(1, breach), &minutes(&p, 22))
        .then_error("timer.not_due");
    // The resolution clock runs on: warning at 50 %, breach at 2 h → branch manager.
    assert_eq!(
        due_now(&g, 131),
        vec![Timer::SlaBreach {
            complaint_id: kid(1),
            clock: SlaClock::Resolution,
            due_at: resolution_due
        }],
        "a warning whose deadline has passed is not announced after the fact"
    );
    let (g, events) = g
        .when(
            timer(
                1,
                Timer::SlaBreach {
                    complaint_id: kid(1),
                    clock: SlaClock::Resolution,
                    due_at: resolution_due,
                },
            ),
            &minutes(&p, 131),
        )
        .accepted();
    assert!(
        matches!(&events[1], CustomerEvent::ComplaintEscalated(e) if e.level == 2 && e.escalated_to == Some(mid(60)))
    );
    assert!(due_now(&g, 10_000).is_empty(), "every clock breached once");
}

#[test]
fn the_clocks_follow_the_policy_in_force() {
    let p = policy(|d| {
        d.sla.first_response_minutes = 20;
        d.sla.resolution_hours.low = 48;
        d.sla.warn_at_percent = 25;
    });
    let (g, events) = owned(1, 1)
        .when(log_complaint(Severity::Low), &minutes(&p, 0))
        .accepted();
    let CustomerEvent::ComplaintLogged(l) = &events[0] else {
        panic!("{events:?}")
    };
    assert_eq!(l.first_response_due_at, at(20));
    assert_eq!(l.resolution_due_at, at(0) + Duration::hours(48));
    let due: Vec<_> = timers::due(&customer(&g.0), &p, at(5))
        .into_iter()
        .map(|d| d.timer)
        .collect();
    assert_eq!(
        due,
        vec![Timer::SlaWarning {
            complaint_id: kid(1),
            clock: SlaClock::FirstResponse,
            due_at: at(20)
        }],
        "25 % of 20 minutes"
    );
}

#[test]
fn acknowledging_stops_the_first_response_clock_and_reopening_restarts_resolution() {
    let p = policy(|_| {});
    let (g, _) = owned(1, 1)
        .when(log_complaint(Severity::Normal), &minutes(&p, 10))
        .accepted();
    let (g, _) = g
        .when(
            CustomerCommand::AcknowledgeComplaint(AcknowledgeComplaint {
                customer_id: cid(1),
                complaint_id: kid(1),
                by: mid(1),
            }),
            &minutes(&p, 12),
        )
        .accepted();
    let clocks = |g: &Given| -> Vec<SlaClock> {
        let mut v: Vec<_> = timers::pending(&customer(&g.0), &p)
            .into_iter()
            .filter_map(|t| match t.timer {
                Timer::SlaBreach { clock, .. } => Some(clock),
                _ => None,
            })
            .collect();
        v.dedup();
        v
    };
    assert_eq!(clocks(&g), vec![SlaClock::Resolution]);
    let (g, _) = g
        .when(
            CustomerCommand::ResolveComplaint(ResolveComplaint {
                customer_id: cid(1),
                complaint_id: kid(1),
                resolved_by: mid(1),
                resolution: "refunded".into(),
            }),
            &minutes(&p, 60),
        )
        .accepted();
    assert!(clocks(&g).is_empty(), "resolved: no clock runs");
    let (g, _) = g
        .when(
            CustomerCommand::ReopenComplaint(ReopenComplaint {
                customer_id: cid(1),
                complaint_id: kid(1),
                reason: "refund missing".into(),
            }),
            &minutes(&p, 600),
        )
        .accepted();
    let due: Vec<_> = timers::pending(&customer(&g.0), &p)
        .into_iter()
        .filter(|t| matches!(t.timer, Timer::SlaBreach { .. }))
        .collect();
    assert_eq!(due.len(), 1);
    assert_eq!(
        due[0].fires_at,
        timers::runs_out(at(600) + Duration::hours(72))
    );
}

#[test]
fn an_answer_at_the_due_instant_is_in_time_and_the_clock_runs_out_just_after_it() {
    let p = policy(|_| {});
    let (g, _) = owned(1, 1)
        .when(log_complaint(Severity::Normal), &minutes(&p, 0))
        .accepted();
    let first_due = at(10); // ten minutes by default
    let breaches = |g: &Given, now: DateTime<Utc>| -> Vec<SlaClock> {
        timers::due(&customer(&g.0), &p, now)
            .into_iter()
            .filter_map(|d| match d.timer {
                Timer::SlaBreach { clock, .. } => Some(clock),
                _ => None,
            })
            .collect()
    };
    assert!(
        breaches(&g, first_due).is_empty(),
        "not yet run out at the due instant"
    );
    assert_eq!(
        breaches(&g, first_due + Duration::microseconds(1)),
        vec![SlaClock::FirstResponse]
    );
    let (g, events) = g
        .when(
            CustomerCommand::AcknowledgeComplaint(AcknowledgeComplaint {
                customer_id: cid(1),
                complaint_id: kid(1),
                by: mid(1),
            }),
            &minutes(&p, 10),
        )
        .accepted();
    assert!(
        matches!(&events[..], [CustomerEvent::ComplaintAcknowledged(a)] if a.within_sla),
        "in time and no breach recorded: {events:?}"
    );
    assert!(
        breaches(&g, at(60)).is_empty(),
        "answered: nothing runs out"
    );
}

// ---- lifecycle by time ----------------------------------------------------------------

#[test]
fn no_activity_for_the_dormancy_period_makes_a_customer_dormant_and_a_contact_wakes_it() {
    let p = policy(|d| {
        d.lifecycle.dormant_after_days = 90;
        d.pool.no_contact_days = TierDays::all(0);
        d.pool.lead_not_won_days = TierDays::all(0);
    });
    let purchase = CustomerCommand::RecordPurchase(RecordPurchase {
        customer_id: cid(1),
        purchase_id: PurchaseId::new(uuid::Uuid::from_u128(1)),
        product_line: "deposit".into(),
        amount_minor: 10_000,
        currency: "CNY".into(),
        manager_id: None,
    });
    let (g, _) = owned(1, 1).when(purchase, &at_day(10, &p)).accepted();
    assert_eq!(customer(&g.0).stage, LifecycleStage::Customer);
    let dormancy = Timer::Dormancy { due_at: day(100) };
    assert_eq!(pending_timers(&g, &p), vec![(dormancy.clone(), day(100))]);
    Given(g.0.clone())
        .when(timer(1, dormancy.clone()), &at_day(99, &p))
        .then_error("timer.not_due");
    let (g, events) = g.when(timer(1, dormancy), &at_day(100, &p)).accepted();
    assert!(
        matches!(&events[0], CustomerEvent::LifecycleStageChanged(e) if e.to == LifecycleStage::Dormant && e.automatic && e.reason == "no activity for 90 days")
    );
    assert!(
        pending_timers(&g, &p).is_empty(),
        "dormant: nothing pending"
    );
    let (g, events) = g
        .when(
            CustomerCommand::RecordContact(RecordContact {
                customer_id: cid(1),
                contact_id: ContactId::new(uuid::Uuid::from_u128(5)),
                manager_id: mid(1),
                channel: ContactChannel::Phone,
                direction: Direction::Inbound,
                outcome: ContactOutcome::Reached,
                summary: None,
                next_follow_up_at: None,
                occurred_at: None,
            }),
            &at_day(120, &p),
        )
        .accepted();
    assert!(
        matches!(&events[1], CustomerEvent::LifecycleStageChanged(e) if e.reactivated && e.to == LifecycleStage::Active)
    );
    assert_eq!(
        pending_timers(&g, &p),
        vec![(Timer::Dormancy { due_at: day(210) }, day(210))]
    );
}

#[test]
fn the_value_tier_follows_purchases_and_aum_across_the_thresholds() {
    let p = policy(|d| {
        d.lifecycle.tiers = TierThresholds {
            high_from_minor: 1_000_000,
            mid_from_minor: 50_000,
        }
    });
    let buy = |n: u128, amount: i64| {
        CustomerCommand::RecordPurchase(RecordPurchase {
            customer_id: cid(1),
            purchase_id: PurchaseId::new(uuid::Uuid::from_u128(n)),
            product_line: "fund".into(),
            amount_minor: amount,
            currency: "CNY".into(),
            manager_id: None,
        })
    };
    let tiers = |events: &[CustomerEvent]| -> Vec<(ValueTier, ValueTier, i64)> {
        events
            .iter()
            .filter_map(|e| match e {
                CustomerEvent::ValueTierChanged(t) => Some((t.from, t.to, t.basis_minor)),
                _ => None,
            })
            .collect()
    };
    let (g, e1) = owned(1, 1).when(buy(1, 30_000), &at_day(1, &p)).accepted();
    assert!(tiers(&e1).is_empty());
    let (g, e2) = g.when(buy(2, 30_000), &at_day(2, &p)).accepted();
    assert_eq!(tiers(&e2), vec![(ValueTier::Low, ValueTier::Mid, 60_000)]);
    let (g, e3) = g
        .when(
            CustomerCommand::UpdateProfile(UpdateProfile {
                customer_id: cid(1),
                aum_minor: Some(2_000_000),
                ..UpdateProfile::default()
            }),
            &at_day(3, &p),
        )
        .accepted();
    assert_eq!(
        tiers(&e3),
        vec![(ValueTier::Mid, ValueTier::High, 2_000_000)]
    );
    assert_eq!(customer(&g.0).value_tier, ValueTier::High);
    // Registration without a tier takes it from the AUM given.
    let mut r = register(2);
    r.aum_minor = Some(60_000);
    let reg = decide(
        &CustomerState::default(),
        &CustomerCommand::Register(r),
        &at_day(0, &p),
    )
    .unwrap();
    assert!(
        matches!(&reg[0], CustomerEvent::CustomerRegistered(e) if e.value_tier == ValueTier::Mid)
    );
}

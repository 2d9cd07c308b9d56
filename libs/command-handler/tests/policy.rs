//! The ownership policy on real stores (PostgreSQL and SQLite): assignment by policy and
//! on registration, holding limits and daily claim caps under concurrency, escalation to
//! the team lead and branch manager, and a policy published by another process.

use chrono::{DateTime, Duration, TimeZone, Utc};
use crm_command_handler::{Accepted, CommandError, CommandHandler, Envelope, HandlerConfig};
use crm_domain::customer::*;
use crm_domain::manager::{ManagerCommand, RegisterManager};
use crm_domain::policy::*;
use crm_domain::*;
use crm_eventstore::testing::{postgres_store, sqlite_store};
use crm_eventstore::EventStore;
use uuid::Uuid;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 25, 10, 0, 0).unwrap()
}

fn envelope_at(at: DateTime<Utc>) -> Envelope {
    Envelope::new(Actor::person("tester"), at)
}

fn envelope() -> Envelope {
    envelope_at(t0())
}

fn manager(id: ManagerId, role: ManagerRole, team: &str, limit: u32) -> Command {
    ManagerCommand::Register(RegisterManager {
        manager_id: id,
        name: "Li Wei".into(),
        role,
        team: team.parse().unwrap(),
        region: "east".parse().unwrap(),
        branch: "sh-01".parse().unwrap(),
        holding_limit: limit,
    })
    .into()
}

fn customer(id: CustomerId, n: usize) -> Command {
    CustomerCommand::Register(RegisterCustomer {
        customer_id: id,
        customer_type: CustomerType::Individual,
        display_name: "Wang Fang".into(),
        phone: Some(format!("+86137{n:08}")),
        email: None,
        registration_number: None,
        region: "east".parse().unwrap(),
        branch: None,
        first_touch_channel: FirstTouchChannel::Web,
        industry: None,
        product_interest: None,
        consents: None,
        stage: None,
        value_tier: None,
        aum_minor: None,
    })
    .into()
}

fn publish(edit: impl FnOnce(&mut PolicyDocument)) -> Command {
    let mut document = PolicyDocument::default();
    edit(&mut document);
    PolicyCommand::Publish(PublishPolicy {
        document,
        note: "test policy".into(),
    })
    .into()
}

fn east_round_robin(d: &mut PolicyDocument) {
    d.rules = vec![AssignmentRule {
        name: "east".into(),
        when: Conditions {
            regions: vec!["east".parse().unwrap()],
            ..Conditions::default()
        },
        team: "east-1".parse().unwrap(),
        method: Distribution::RoundRobin,
    }];
}

fn new_ids<T>(n: usize, f: impl Fn(Uuid) -> T) -> Vec<T> {
    (0..n).map(|_| f(Uuid::now_v7())).collect()
}

/// The manager each OwnerAssigned event of an answer names, with its policy decision.
async fn assignment<S: EventStore>(
    store: &S,
    accepted: &Accepted,
) -> Option<(ManagerId, PolicyDecision)> {
    let e = accepted
        .events
        .iter()
        .find(|e| e.event_type == "OwnerAssigned")?;
    let stored = store
        .read_stream(&e.stream_id, e.stream_version - 1)
        .await
        .unwrap();
    match CustomerEvent::decode(&stored[0].event_type, 1, &stored[0].payload).unwrap() {
        CustomerEvent::OwnerAssigned(a) => Some((a.manager_id, a.policy.expect("by policy"))),
        other => panic!("{other:?}"),
    }
}

async fn registered_customers_are_assigned_by_policy_in_turn<S: EventStore + Clone>(store: S) {
    let handler = CommandHandler::new(store.clone(), HandlerConfig::default());
    let mut east = new_ids(3, ManagerId::new);
    east.sort();
    for m in &east {
        handler
            .handle(envelope(), manager(*m, ManagerRole::Manager, "east-1", 2))
            .await
            .unwrap();
    }
    let west = ManagerId::new(Uuid::now_v7());
    handler
        .handle(envelope(), manager(west, ManagerRole::Manager, "west-1", 9))
        .await
        .unwrap();
    // Without a policy, a registration assigns nobody.
    let first = CustomerId::new(Uuid::now_v7());
    let a = handler
        .handle(envelope(), customer(first, 0))
        .await
        .unwrap();
    assert_eq!(a.events.len(), 1);
    handler
        .handle(envelope(), publish(east_round_robin))
        .await
        .unwrap();
    let customers = new_ids(7, CustomerId::new);
    let mut chosen = Vec::new();
    for (i, c) in customers.iter().enumerate() {
        let env = envelope();
        let a = handler
            .handle(env.clone(), customer(*c, i + 1))
            .await
            .unwrap();
        chosen.push(assignment(&store, &a).await);
        // The same registration again: the same answer, nobody assigned twice.
        let again = handler.handle(env, customer(*c, i + 1)).await.unwrap();
        assert!(again.duplicate);
    }
    let managers: Vec<Option<ManagerId>> =
        chosen.iter().map(|c| c.as_ref().map(|(m, _)| *m)).collect();
    assert_eq!(
        managers,
        vec![
            Some(east[0]),
            Some(east[1]),
            Some(east[2]),
            Some(east[0]),
            Some(east[1]),
            Some(east[2]),
            None // everyone at the holding limit of 2: the customer stays in the pool
        ]
    );
    let (_, decision) = chosen[0].clone().unwrap();
    assert_eq!(
        decision,
        PolicyDecision {
            policy_version: 1,
            rule: "east".into(),
            rule_index: 0,
            method: Distribution::RoundRobin,
            eligible: 3
        }
    );
    for m in &east {
        assert_eq!(store.counter(&format!("holdings:{m}")).await.unwrap(), 2);
    }
    // Assign-by-policy as a command: refused with the rule that names the full team.
    let refused = handler
        .handle(
            envelope(),
            CustomerCommand::AssignByPolicy(AssignByPolicy {
                customer_id: customers[6],
                reason: None,
            })
            .into(),
        )
        .await
        .unwrap_err();
    assert_eq!(refused.code(), "policy.no_eligible_manager");
}

async fn holding_limits_hold_when_policy_assignments_race<S: EventStore + Clone>(store: S) {
    let handler = CommandHandler::new(store.clone(), HandlerConfig::default());
    let east = new_ids(2, ManagerId::new);
    for m in &east {
        handler
            .handle(envelope(), manager(*m, ManagerRole::Manager, "east-1", 3))
            .await
            .unwrap();
    }
    handler
        .handle(
            envelope(),
            publish(|d| {
                east_round_robin(d);
                d.rules[0].method = Distribution::LeastLoaded;
                d.assign_on_registration = false;
            }),
        )
        .await
        .unwrap();
    let customers = new_ids(10, CustomerId::new);
    for (i, c) in customers.iter().enumerate() {
        handler.handle(envelope(), customer(*c, i)).await.unwrap();
    }
    let tasks: Vec<_> = customers
        .iter()
        .map(|c| {
            let (h, c) = (handler.clone(), *c);
            tokio::spawn(async move {
                h.handle(
                    envelope(),
                    CustomerCommand::AssignByPolicy(AssignByPolicy {
                        customer_id: c,
                        reason: None,
                    })
                    .into(),
                )
                .await
                .map_err(|e| e.code())
            })
        })
        .collect();
    let mut accepted = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => accepted += 1,
            Err(code) => assert_eq!(code, "policy.no_eligible_manager"),
        }
    }
    assert_eq!(accepted, 6, "two managers with a limit of 3");
    for m in &east {
        assert_eq!(store.counter(&format!("holdings:{m}")).await.unwrap(), 3);
    }
}

async fn claims_are_capped_per_day_even_when_racing<S: EventStore + Clone>(store: S) {
    let handler = CommandHandler::new(store.clone(), HandlerConfig::default());
    let m = ManagerId::new(Uuid::now_v7());
    handler
        .handle(envelope(), manager(m, ManagerRole::Manager, "east-1", 100))
        .await
        .unwrap();
    handler
        .handle(
            envelope(),
            publish(|d| {
                d.pool.daily_claim_cap = 2;
                d.utc_offset_minutes = 480;
            }),
        )
        .await
        .unwrap();
    let customers = new_ids(6, CustomerId::new);
    for (i, c) in customers.iter().enumerate() {
        handler.handle(envelope(), customer(*c, i)).await.unwrap();
    }
    let claim = |c: CustomerId| -> Command {
        CustomerCommand::ClaimFromPool(ClaimFromPool {
            customer_id: c,
            manager_id: m,
        })
        .into()
    };
    let tasks: Vec<_> = customers[..4]
        .iter()
        .map(|c| {
            let (h, cmd) = (handler.clone(), claim(*c));
            tokio::spawn(async move { h.handle(envelope(), cmd).await.map_err(|e| e.code()) })
        })
        .collect();
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap().map(|_| "accepted"));
    }
    results.sort();
    assert_eq!(
        results,
        vec![
            Ok("accepted"),
            Ok("accepted"),
            Err("pool.claim_cap_reached"),
            Err("pool.claim_cap_reached")
        ]
    );
    // 10:00 UTC is 18:00 in UTC+8; at 16:00 UTC it is the next local day: a new cap.
    let next_day = envelope_at(t0() + Duration::hours(6));
    handler.handle(next_day, claim(customers[4])).await.unwrap();
}

async fn breaches_escalate_to_the_team_lead_then_the_branch_manager<S: EventStore + Clone>(
    store: S,
) {
    let handler = CommandHandler::new(store.clone(), HandlerConfig::default());
    let [owner, lead, head, other_lead] = [0; 4].map(|_| ManagerId::new(Uuid::now_v7()));
    for (m, role, team) in [
        (owner, ManagerRole::Manager, "east-1"),
        (lead, ManagerRole::TeamLead, "east-1"),
        (head, ManagerRole::BranchManager, "branch-office"),
        (other_lead, ManagerRole::TeamLead, "east-2"),
    ] {
        handler
            .handle(envelope(), manager(m, role, team, 10))
            .await
            .unwrap();
    }
    let c = CustomerId::new(Uuid::now_v7());
    handler.handle(envelope(), customer(c, 1)).await.unwrap();
    handler
        .handle(
            envelope(),
            CustomerCommand::AssignOwner(AssignOwner {
                customer_id: c,
                manager_id: owner,
                reason: "walk-in".into(),
            })
            .into(),
        )
        .await
        .unwrap();
    let k = ComplaintId::new(Uuid::now_v7());
    handler
        .handle(
            envelope(),
            CustomerCommand::LogComplaint(LogComplaint {
                customer_id: c,
                complaint_id: k,
                severity: Severity::Critical,
                category: "fees".into(),
                description: "charged twice".into(),
                channel: ContactChannel::Phone,
            })
            .into(),
        )
        .await
        .unwrap();
    let breach = |clock, due_at| -> Command {
        CustomerCommand::ApplyTimer(ApplyTimer {
            customer_id: c,
            timer: Timer::SlaBreach {
                complaint_id: k,
                clock,
                due_at,
            },
        })
        .into()
    };
    let early = handler
        .handle(
            envelope_at(t0() + Duration::minutes(5)),
            breach(SlaClock::FirstResponse, t0() + Duration::minutes(10)),
        )
        .await
        .unwrap_err();
    assert_eq!(early.code(), "timer.not_due");
    let mut escalated = Vec::new();
    for (clock, due) in [
        (SlaClock::FirstResponse, t0() + Duration::minutes(10)),
        (SlaClock::Resolution, t0() + Duration::hours(4)),
    ] {
        let at = due + Duration::seconds(30);
        let env = Envelope::new(Actor::system("scheduler"), at);
        let a = handler.handle(env, breach(clock, due)).await.unwrap();
        assert_eq!(
            a.events
                .iter()
                .map(|e| e.event_type.as_str())
                .collect::<Vec<_>>(),
            vec!["ComplaintSlaBreached", "ComplaintEscalated"]
        );
        let e = store
            .read_stream(&a.events[1].stream_id, a.events[1].stream_version - 1)
            .await
            .unwrap();
        let CustomerEvent::ComplaintEscalated(x) =
            CustomerEvent::decode(&e[0].event_type, 1, &e[0].payload).unwrap()
        else {
            panic!()
        };
        assert!(x.automatic);
        escalated.push((x.level, x.escalated_to));
    }
    assert_eq!(escalated, vec![(1, Some(lead)), (2, Some(head))]);
}

async fn won_customers_do_not_count_when_the_policy_says_so<S: EventStore + Clone>(store: S) {
    let handler = CommandHandler::new(store.clone(), HandlerConfig::default());
    let m = ManagerId::new(Uuid::now_v7());
    handler
        .handle(envelope(), manager(m, ManagerRole::Manager, "east-1", 1))
        .await
        .unwrap();
    handler
        .handle(
            envelope(),
            publish(|d| d.holding.won_customers_count = false),
        )
        .await
        .unwrap();
    let cs = new_ids(3, CustomerId::new);
    for (i, c) in cs.iter().enumerate() {
        handler.handle(envelope(), customer(*c, i)).await.unwrap();
    }
    let assign = |c: CustomerId| -> Command {
        CustomerCommand::AssignOwner(AssignOwner {
            customer_id: c,
            manager_id: m,
            reason: "x".into(),
        })
        .into()
    };
    handler.handle(envelope(), assign(cs[0])).await.unwrap();
    let full = handler.handle(envelope(), assign(cs[1])).await.unwrap_err();
    assert_eq!(full.code(), "ownership.holding_limit_reached");
    // The lead is won: it no longer counts, so the next lead fits.
    handler
        .handle(
            envelope(),
            CustomerCommand::RecordPurchase(RecordPurchase {
                customer_id: cs[0],
                purchase_id: PurchaseId::new(Uuid::now_v7()),
                product_line: "deposit".into(),
                amount_minor: 10_000,
                currency: "CNY".into(),
                manager_id: Some(m),
            })
            .into(),
        )
        .await
        .unwrap();
    handler.handle(envelope(), assign(cs[1])).await.unwrap();
    assert_eq!(store.counter(&format!("holdings:{m}")).await.unwrap(), 2);
    assert_eq!(store.counter(&format!("prospects:{m}")).await.unwrap(), 1);
    let day = t0().date_naive();
    assert_eq!(store.counter(&format!("wins:{m}:{day}")).await.unwrap(), 1);
}

async fn a_policy_published_by_another_process_decides_the_next_assignment<
    S: EventStore + Clone,
>(
    store: S,
) {
    let a = CommandHandler::new(store.clone(), HandlerConfig::default());
    let b = CommandHandler::new(store.clone(), HandlerConfig::default());
    let [east, west] = [0; 2].map(|_| ManagerId::new(Uuid::now_v7()));
    a.handle(
        envelope(),
        manager(east, ManagerRole::Manager, "east-1", 10),
    )
    .await
    .unwrap();
    a.handle(
        envelope(),
        manager(west, ManagerRole::Manager, "west-1", 10),
    )
    .await
    .unwrap();
    a.handle(envelope(), publish(east_round_robin))
        .await
        .unwrap();
    let cs = new_ids(2, CustomerId::new);
    let first = b.handle(envelope(), customer(cs[0], 0)).await.unwrap();
    assert_eq!(assignment(&store, &first).await.unwrap().0, east);
    // Process A moves everyone to west-1; B, holding version 1 in its cache, must not
    // assign by it any more.
    a.handle(
        envelope(),
        publish(|d| {
            east_round_robin(d);
            d.rules[0].team = "west-1".parse().unwrap();
        }),
    )
    .await
    .unwrap();
    let second = b.handle(envelope(), customer(cs[1], 1)).await.unwrap();
    let (m, decision) = assignment(&store, &second).await.unwrap();
    assert_eq!((m, decision.policy_version), (west, 2));
}

/// Manager A wins 3 deals on day 0; then 10 customers are assigned by
/// `weighted_performance` `days_later`, with wins counted over `window` days. Returns how
/// many of the 10 A and B received.
async fn weighted_split<S: EventStore + Clone>(
    store: S,
    window: u32,
    days_later: i64,
) -> (usize, usize) {
    let handler = CommandHandler::new(store.clone(), HandlerConfig::default());
    let [a, b] = [0; 2].map(|_| ManagerId::new(Uuid::now_v7()));
    for m in [a, b] {
        handler
            .handle(envelope(), manager(m, ManagerRole::Manager, "vip", 100))
            .await
            .unwrap();
    }
    handler
        .handle(
            envelope(),
            publish(|d| {
                d.assign_on_registration = false;
                d.holding.performance_window_days = window;
                d.rules = vec![AssignmentRule {
                    name: "all".into(),
                    when: Conditions::default(),
                    team: "vip".parse().unwrap(),
                    method: Distribution::WeightedPerformance,
                }];
            }),
        )
        .await
        .unwrap();
    let phones = 1_000 * days_later as usize; // two runs share a store: distinct phones
    for i in 0..3 {
        let c = CustomerId::new(Uuid::now_v7());
        handler
            .handle(envelope(), customer(c, phones + 900 + i))
            .await
            .unwrap();
        handler
            .handle(
                envelope(),
                CustomerCommand::AssignOwner(AssignOwner {
                    customer_id: c,
                    manager_id: a,
                    reason: "x".into(),
                })
                .into(),
            )
            .await
            .unwrap();
        handler
            .handle(
                envelope(),
                CustomerCommand::RecordPurchase(RecordPurchase {
                    customer_id: c,
                    purchase_id: PurchaseId::new(Uuid::now_v7()),
                    product_line: "wealth".into(),
                    amount_minor: 10_000,
                    currency: "CNY".into(),
                    manager_id: Some(a),
                })
                .into(),
            )
            .await
            .unwrap();
    }
    let later = t0() + Duration::days(days_later);
    let mut got = (0, 0);
    for i in 0..10 {
        let c = CustomerId::new(Uuid::now_v7());
        handler
            .handle(envelope_at(later), customer(c, phones + i))
            .await
            .unwrap();
        handler
            .handle(
                envelope_at(later),
                CustomerCommand::AssignByPolicy(AssignByPolicy {
                    customer_id: c,
                    reason: None,
                })
                .into(),
            )
            .await
            .unwrap();
    }
    for (m, n) in [(a, &mut got.0), (b, &mut got.1)] {
        *n = store.counter(&format!("holdings:{m}")).await.unwrap() as usize;
    }
    (got.0 - 3, got.1)
}

async fn weighted_performance_counts_wins_within_the_window<S: EventStore + Clone>(store: S) {
    // A's 3 recent wins weigh 4 against B's 1: A takes most of the 10 despite holding 3.
    let (a, b) = weighted_split(store.clone(), 30, 1).await;
    assert_eq!(a + b, 10);
    assert!(a > b, "A {a}, B {b}");
    // Out of a 1-day window the wins no longer count: B, holding fewer, takes more.
    let (a, b) = weighted_split(store, 1, 3).await;
    assert!(b > a, "A {a}, B {b}");
}

async fn a_team_limit_below_a_managers_own_limit_applies<S: EventStore + Clone>(store: S) {
    let handler = CommandHandler::new(store.clone(), HandlerConfig::default());
    let m = ManagerId::new(Uuid::now_v7());
    handler
        .handle(envelope(), manager(m, ManagerRole::Manager, "east-1", 10))
        .await
        .unwrap();
    handler
        .handle(
            envelope(),
            publish(|d| {
                d.holding.team_limits.insert("east-1".parse().unwrap(), 2);
            }),
        )
        .await
        .unwrap();
    let mut codes = Vec::new();
    for i in 0..3 {
        let c = CustomerId::new(Uuid::now_v7());
        handler.handle(envelope(), customer(c, i)).await.unwrap();
        let r = handler
            .handle(
                envelope(),
                CustomerCommand::AssignOwner(AssignOwner {
                    customer_id: c,
                    manager_id: m,
                    reason: "x".into(),
                })
                .into(),
            )
            .await;
        codes.push(code(&r).to_string());
    }
    assert_eq!(
        codes,
        vec!["accepted", "accepted", "ownership.holding_limit_reached"]
    );
}

fn code(r: &Result<Accepted, CommandError>) -> &str {
    match r {
        Ok(_) => "accepted",
        Err(e) => e.code(),
    }
}

async fn an_invalid_policy_is_refused_naming_the_field<S: EventStore + Clone>(store: S) {
    let handler = CommandHandler::new(store.clone(), HandlerConfig::default());
    let r = handler
        .handle(envelope(), publish(|d| d.sla.warn_at_percent = 0))
        .await;
    assert_eq!(code(&r), "validation.invalid_field");
    assert!(r.unwrap_err().to_string().contains("sla.warn_at_percent"));
    assert_eq!(store.stream_version(POLICY_STREAM).await.unwrap(), 0);
}

macro_rules! on_both_backends {
    ($($case:ident),* $(,)?) => {
        mod postgres {
            use super::*;
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let (store, _db) = postgres_store().await;
                super::$case(store).await;
            })*
        }
        mod sqlite {
            use super::*;
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let (store, _file) = sqlite_store().await;
                super::$case(store).await;
            })*
        }
    };
}

on_both_backends!(
    registered_customers_are_assigned_by_policy_in_turn,
    holding_limits_hold_when_policy_assignments_race,
    claims_are_capped_per_day_even_when_racing,
    breaches_escalate_to_the_team_lead_then_the_branch_manager,
    won_customers_do_not_count_when_the_policy_says_so,
    a_policy_published_by_another_process_decides_the_next_assignment,
    an_invalid_policy_is_refused_naming_the_field,
    weighted_performance_counts_wins_within_the_window,
    a_team_limit_below_a_managers_own_limit_applies,
);

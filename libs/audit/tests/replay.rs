//! Ownership replay on real event stores (PostgreSQL and SQLite), from events written by
//! the command handler: every change with who, why, policy and command; "as of T" exact
//! to the event; a manager's history over a period.

use chrono::{DateTime, Duration, TimeZone, Utc};
use crm_audit::{customer_history, manager_history, owner_as_of, Decision};
use crm_command_handler::{Accepted, CommandHandler, Envelope, HandlerConfig};
use crm_domain::customer::*;
use crm_domain::manager::{ManagerCommand, RegisterManager};
use crm_domain::policy::*;
use crm_domain::*;
use crm_eventstore::testing::{postgres_store, sqlite_store};
use crm_eventstore::EventStore;
use uuid::Uuid;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 9, 0, 0).unwrap()
}

fn day(n: i64) -> DateTime<Utc> {
    t0() + Duration::days(n)
}

async fn run<S: EventStore + Clone>(
    h: &CommandHandler<S>,
    actor: &str,
    at: DateTime<Utc>,
    command: impl Into<Command>,
) -> Accepted {
    h.handle(Envelope::new(actor.parse().unwrap(), at), command.into())
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

async fn ownership_is_replayed_from_the_store<S: EventStore + Clone>(store: S) {
    let h = CommandHandler::new(store.clone(), HandlerConfig::default());
    let [m1, m2, m3] = [0; 3].map(|_| ManagerId::new(Uuid::now_v7()));
    for (m, team) in [(m1, "a"), (m2, "b"), (m3, "a")] {
        run(
            &h,
            "person:admin",
            t0(),
            ManagerCommand::Register(RegisterManager {
                manager_id: m,
                name: "Li Wei".into(),
                role: ManagerRole::Manager,
                team: team.parse().unwrap(),
                region: "east".parse().unwrap(),
                branch: "b".parse().unwrap(),
                holding_limit: 10,
            }),
        )
        .await;
    }
    // Only m1 can receive by policy (m3 is registered after the policy's first use).
    run(
        &h,
        "person:admin",
        t0(),
        PolicyCommand::Publish(PublishPolicy {
            document: PolicyDocument {
                rules: vec![AssignmentRule {
                    name: "team a".into(),
                    when: Conditions::default(),
                    team: "a".parse().unwrap(),
                    method: Distribution::RoundRobin,
                }],
                ..PolicyDocument::default()
            },
            note: "audit test".into(),
        }),
    )
    .await;
    let c = CustomerId::new(Uuid::now_v7());
    let registered = run(
        &h,
        "service:web",
        day(0) + Duration::hours(1),
        CustomerCommand::Register(RegisterCustomer {
            customer_id: c,
            customer_type: CustomerType::Individual,
            display_name: "Wang Fang".into(),
            phone: Some("+8613900000001".into()),
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
        }),
    )
    .await;
    let first_owner = registered
        .events
        .iter()
        .find(|e| e.event_type == "OwnerAssigned")
        .is_some();
    assert!(first_owner);
    let transfer = run(
        &h,
        "person:team-lead",
        day(1),
        CustomerCommand::TransferOwner(TransferOwner {
            customer_id: c,
            to_manager_id: m3,
            reason: "rebalancing".into(),
        }),
    )
    .await;
    run(
        &h,
        "person:m3",
        day(2),
        CustomerCommand::ReleaseToPool(ReleaseToPool {
            customer_id: c,
            reason: "moved away".into(),
        }),
    )
    .await;
    run(
        &h,
        "person:m2",
        day(3),
        CustomerCommand::ClaimFromPool(ClaimFromPool {
            customer_id: c,
            manager_id: m2,
        }),
    )
    .await;
    // Nobody calls: the scheduler returns the customer 30 days after the claim.
    let due = day(33);
    run(
        &h,
        "system:scheduler",
        day(33) + Duration::minutes(20),
        CustomerCommand::ApplyTimer(ApplyTimer {
            customer_id: c,
            timer: Timer::PoolReturn {
                cause: PoolCause::NoContact,
                due_at: due,
            },
        }),
    )
    .await;

    let entries = customer_history(&store, c).await.unwrap();
    let summary: Vec<(&str, Option<ManagerId>, Option<ManagerId>, &str)> = entries
        .iter()
        .map(|e| {
            (
                e.event_type.as_str(),
                e.previous_owner,
                e.new_owner,
                e.actor.as_str(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("OwnerAssigned", None, Some(m1), "system:policy"),
            (
                "OwnershipTransferred",
                Some(m1),
                Some(m3),
                "person:team-lead"
            ),
            ("ReleasedToPool", Some(m3), None, "person:m3"),
            ("ClaimedFromPool", None, Some(m2), "person:m2"),
            ("ReleasedToPool", Some(m2), None, "system:scheduler"),
        ]
    );
    assert_eq!(
        entries[0].decision,
        Some(Decision {
            policy_version: 1,
            rule: Some("team a".into()),
            method: Some("round_robin".into()),
            pool_rule: None,
            due_at: None
        })
    );
    assert_eq!(
        entries[0].correlation_id, registered.command_id,
        "caused by the registration"
    );
    assert_eq!(entries[1].command_id, transfer.command_id);
    assert_eq!(entries[1].reason.as_deref(), Some("rebalancing"));
    assert_eq!(
        entries[4]
            .decision
            .as_ref()
            .map(|d| (d.pool_rule.clone(), d.due_at)),
        Some((Some("no_contact".to_string()), Some(due)))
    );
    let positions: Vec<u64> = entries.iter().map(|e| e.stream_version).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]));

    // As of: exact to the event (an event at exactly T has happened).
    let owner = |t| owner_as_of(&entries, t).owner;
    assert_eq!(owner(t0()), None, "before registration");
    assert_eq!(owner(day(0) + Duration::hours(1)), Some(m1));
    assert_eq!(owner(day(1) - Duration::microseconds(1)), Some(m1));
    assert_eq!(owner(day(1)), Some(m3));
    assert_eq!(owner(day(2) + Duration::hours(5)), None);
    assert_eq!(owner(day(20)), Some(m2));
    assert_eq!(owner(day(40)), None);
    assert_eq!(
        owner_as_of(&entries, day(20)).since.unwrap().event_type,
        "ClaimedFromPool"
    );

    // A manager's history over a period.
    let mut reads = Vec::new();
    let m1_first_days = manager_history(&store, m1, day(0), day(2), &mut |n| reads.push(n))
        .await
        .unwrap();
    assert!(m1_first_days.held_before.is_empty());
    assert_eq!(
        m1_first_days.entries.len(),
        2,
        "received, then transferred away"
    );
    assert!(m1_first_days.held_at_end.is_empty());
    assert!(!reads.is_empty(), "progress reported");
    let m2_month = manager_history(&store, m2, day(0), day(10), &mut |_| {})
        .await
        .unwrap();
    assert_eq!(m2_month.entries.len(), 1);
    assert_eq!(m2_month.held_at_end, vec![c]);
    let m2_later = manager_history(&store, m2, day(10), day(60), &mut |_| {})
        .await
        .unwrap();
    assert_eq!(m2_later.held_before, vec![c]);
    assert_eq!(m2_later.entries.len(), 1, "lost to the pool rule");
    assert!(m2_later.held_at_end.is_empty());
    assert!(matches!(
        customer_history(&store, CustomerId::new(Uuid::now_v7())).await,
        Err(crm_audit::AuditError::UnknownCustomer(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ownership_is_replayed_from_postgres() {
    let (store, _db) = postgres_store().await;
    ownership_is_replayed_from_the_store(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ownership_is_replayed_from_sqlite() {
    let (store, _file) = sqlite_store().await;
    ownership_is_replayed_from_the_store(store).await;
}

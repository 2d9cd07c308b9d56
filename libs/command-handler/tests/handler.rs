//! The command handler on real stores (PostgreSQL and SQLite): rules that span
//! aggregates hold under concurrency, idempotency, and refusals change nothing.

use chrono::{TimeZone, Utc};
use crm_command_handler::{CommandError, CommandHandler, Envelope, HandlerConfig};
use crm_domain::customer::*;
use crm_domain::manager::{ManagerCommand, RegisterManager};
use crm_domain::*;
use crm_eventstore::testing::{postgres_store, sqlite_store};
use crm_eventstore::EventStore;
use uuid::Uuid;

fn envelope() -> Envelope {
    Envelope::new(
        Actor::person("tester"),
        Utc.with_ymd_and_hms(2026, 11, 25, 10, 0, 0).unwrap(),
    )
}

fn register_manager(id: ManagerId, limit: u32) -> Command {
    ManagerCommand::Register(RegisterManager {
        manager_id: id,
        name: "Li Wei".into(),
        role: ManagerRole::Manager,
        team: "east-1".parse().unwrap(),
        region: "east".parse().unwrap(),
        branch: "sh-01".parse().unwrap(),
        holding_limit: limit,
    })
    .into()
}

fn register_customer(id: CustomerId, phone: &str) -> Command {
    CustomerCommand::Register(RegisterCustomer {
        customer_id: id,
        customer_type: CustomerType::Individual,
        display_name: "Wang Fang".into(),
        phone: Some(phone.into()),
        email: None,
        registration_number: None,
        region: "east".parse().unwrap(),
        branch: None,
        first_touch_channel: FirstTouchChannel::Branch,
        industry: None,
        product_interest: None,
        consents: None,
        stage: None,
        value_tier: None,
        aum_minor: None,
    })
    .into()
}

fn assign(customer: CustomerId, manager: ManagerId) -> Command {
    CustomerCommand::AssignOwner(AssignOwner {
        customer_id: customer,
        manager_id: manager,
        reason: "test".into(),
    })
    .into()
}

fn code(r: Result<crm_command_handler::Accepted, CommandError>) -> String {
    match r {
        Ok(a) => format!("accepted:{}", a.events.len()),
        Err(e) => e.code().to_string(),
    }
}

async fn holding_limit_holds_under_concurrent_assignment<S: EventStore + Clone>(store: S) {
    let handler = CommandHandler::new(store.clone(), HandlerConfig::default());
    let m = ManagerId::new(Uuid::now_v7());
    handler
        .handle(envelope(), register_manager(m, 3))
        .await
        .unwrap();
    let customers: Vec<CustomerId> = (0..12).map(|_| CustomerId::new(Uuid::now_v7())).collect();
    for (i, c) in customers.iter().enumerate() {
        handler
            .handle(envelope(), register_customer(*c, &format!("+86139{i:08}")))
            .await
            .unwrap();
    }
    // Two handlers (two command-service instances) with their own caches, racing.
    let other = CommandHandler::new(store.clone(), HandlerConfig::default());
    let mut tasks = Vec::new();
    for (i, c) in customers.iter().enumerate() {
        let h = if i % 2 == 0 {
            handler.clone()
        } else {
            other.clone()
        };
        let c = *c;
        tasks.push(tokio::spawn(async move {
            h.handle(envelope(), assign(c, m)).await
        }));
    }
    let mut accepted = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => accepted += 1,
            Err(e) => assert_eq!(e.code(), "ownership.holding_limit_reached", "{e}"),
        }
    }
    assert_eq!(accepted, 3, "exactly the holding limit is assigned");
    assert_eq!(store.counter(&format!("holdings:{m}")).await.unwrap(), 3);
}

async fn duplicates_are_caught_even_when_racing<S: EventStore + Clone>(store: S) {
    let handler = CommandHandler::new(store.clone(), HandlerConfig::default());
    let mut tasks = Vec::new();
    for spelling in [
        "13800138000",
        "+86 138 0013 8000",
        "008613800138000",
        "(+86)138-0013-8000",
    ] {
        let h = handler.clone();
        tasks.push(tokio::spawn(async move {
            h.handle(
                envelope(),
                register_customer(CustomerId::new(Uuid::now_v7()), spelling),
            )
            .await
        }));
    }
    let mut codes = Vec::new();
    for t in tasks {
        codes.push(code(t.await.unwrap()));
    }
    codes.sort();
    assert_eq!(
        codes,
        vec![
            "accepted:1",
            "customer.duplicate",
            "customer.duplicate",
            "customer.duplicate"
        ]
    );
}

async fn commands_are_idempotent_and_refusals_change_nothing<S: EventStore + Clone>(store: S) {
    let handler = CommandHandler::new(store.clone(), HandlerConfig::default());
    let c = CustomerId::new(Uuid::now_v7());
    let env = envelope();
    let first = handler
        .handle(env.clone(), register_customer(c, "13800000001"))
        .await
        .unwrap();
    assert!(!first.duplicate);
    assert_eq!(first.events[0].event_type, "CustomerRegistered");
    // The retry would be refused (already registered) if it were decided again.
    let again = handler
        .handle(env.clone(), register_customer(c, "13800000001"))
        .await
        .unwrap();
    assert!(again.duplicate);
    assert_eq!(again.events, first.events);
    // A fresh handler (restart, empty cache) gives the same answer.
    let fresh = CommandHandler::new(store.clone(), HandlerConfig::default());
    assert_eq!(
        fresh
            .handle(env.clone(), register_customer(c, "13800000001"))
            .await
            .unwrap()
            .events,
        first.events
    );
    // The same id for another command is refused.
    let other = register_customer(CustomerId::new(Uuid::now_v7()), "13800000002");
    assert_eq!(code(handler.handle(env, other).await), "command.id_reused");

    let stream = format!("customer-{c}");
    let before = store.stream_version(&stream).await.unwrap();
    let sms = CustomerCommand::RecordContact(RecordContact {
        customer_id: c,
        contact_id: ContactId::new(Uuid::now_v7()),
        manager_id: ManagerId::new(Uuid::now_v7()),
        channel: ContactChannel::Sms,
        direction: Direction::Outbound,
        outcome: ContactOutcome::Reached,
        summary: None,
        next_follow_up_at: None,
        occurred_at: None,
    });
    assert_eq!(
        code(handler.handle(envelope(), sms.into()).await),
        "contact.sms_consent_missing"
    );
    assert_eq!(
        code(
            handler
                .handle(envelope(), assign(c, ManagerId::new(Uuid::now_v7())))
                .await
        ),
        "manager.unknown"
    );
    assert_eq!(
        store.stream_version(&stream).await.unwrap(),
        before,
        "refusals append nothing"
    );
}

async fn stale_caches_are_corrected<S: EventStore + Clone>(store: S) {
    let a = CommandHandler::new(store.clone(), HandlerConfig::default());
    let b = CommandHandler::new(store.clone(), HandlerConfig::default());
    let m1 = ManagerId::new(Uuid::now_v7());
    let m2 = ManagerId::new(Uuid::now_v7());
    a.handle(envelope(), register_manager(m1, 10))
        .await
        .unwrap();
    a.handle(envelope(), register_manager(m2, 10))
        .await
        .unwrap();
    let c = CustomerId::new(Uuid::now_v7());
    a.handle(envelope(), register_customer(c, "13800000003"))
        .await
        .unwrap();
    // b caches the customer unowned; a assigns it; b then tries to assign too.
    let log = CustomerCommand::LogComplaint(LogComplaint {
        customer_id: c,
        complaint_id: ComplaintId::new(Uuid::now_v7()),
        severity: Severity::Low,
        category: "app".into(),
        description: "login fails".into(),
        channel: ContactChannel::Phone,
    });
    b.handle(envelope(), log.into()).await.unwrap();
    a.handle(envelope(), assign(c, m1)).await.unwrap();
    assert_eq!(
        code(b.handle(envelope(), assign(c, m2)).await),
        "ownership.already_owned"
    );
    assert_eq!(store.counter(&format!("holdings:{m2}")).await.unwrap(), 0);
    let transfer = CustomerCommand::TransferOwner(TransferOwner {
        customer_id: c,
        to_manager_id: m2,
        reason: "r".into(),
    });
    b.handle(envelope(), transfer.into()).await.unwrap();
    assert_eq!(store.counter(&format!("holdings:{m1}")).await.unwrap(), 0);
    assert_eq!(store.counter(&format!("holdings:{m2}")).await.unwrap(), 1);
}

/// An append that fails leaves no trace in the cache: the next command is decided on
/// committed state, not on the events that never became history.
async fn a_failed_append_leaves_no_phantom_state<S: EventStore + Clone>(store: S) {
    let handler = CommandHandler::new(store.clone(), HandlerConfig::default());
    let (m1, m2) = (
        ManagerId::new(Uuid::now_v7()),
        ManagerId::new(Uuid::now_v7()),
    );
    handler
        .handle(envelope(), register_manager(m1, 5))
        .await
        .unwrap();
    handler
        .handle(envelope(), register_manager(m2, 5))
        .await
        .unwrap();
    let c = CustomerId::new(Uuid::now_v7());
    let registration = envelope();
    handler
        .handle(registration.clone(), register_customer(c, "13800000009"))
        .await
        .unwrap();
    // The domain accepts this assignment, but its command id is taken: the append fails.
    let reused = Envelope {
        command_id: registration.command_id,
        ..envelope()
    };
    assert_eq!(
        code(handler.handle(reused, assign(c, m1)).await),
        "command.id_reused"
    );
    // The customer is still unowned: assigning it to m2 succeeds.
    assert_eq!(
        code(handler.handle(envelope(), assign(c, m2)).await),
        "accepted:1"
    );
    assert_eq!(store.counter(&format!("holdings:{m1}")).await.unwrap(), 0);
    assert_eq!(store.counter(&format!("holdings:{m2}")).await.unwrap(), 1);
}

/// Two instances whose clocks disagree (and one that steps back): no event of a stream is
/// ever dated before the stream's previous event.
async fn no_event_is_dated_before_its_streams_previous_event<S: EventStore + Clone>(store: S) {
    let at = |minute: u32| {
        Envelope::new(
            Actor::person("tester"),
            Utc.with_ymd_and_hms(2026, 11, 25, 10, minute, 0).unwrap(),
        )
    };
    let ahead = CommandHandler::new(store.clone(), HandlerConfig::default());
    let behind = CommandHandler::new(store.clone(), HandlerConfig::default());
    let (m, c) = (
        ManagerId::new(Uuid::now_v7()),
        CustomerId::new(Uuid::now_v7()),
    );
    ahead.handle(at(30), register_manager(m, 10)).await.unwrap();
    // The manager's stream: a later change from a clock 20 minutes behind.
    behind
        .handle(
            at(10),
            ManagerCommand::Deactivate(crm_domain::manager::DeactivateManager {
                manager_id: m,
                reason: "leave".into(),
            })
            .into(),
        )
        .await
        .unwrap();
    ahead
        .handle(at(40), register_customer(c, "+8613900000001"))
        .await
        .unwrap();
    // Decided on the stream read fresh (by the other handler), then on a stale cache.
    behind
        .handle(
            at(5),
            CustomerCommand::LockOwnership(LockOwnership {
                customer_id: c,
                until: None,
                reason: "vip".into(),
            })
            .into(),
        )
        .await
        .unwrap();
    ahead
        .handle(
            at(20),
            CustomerCommand::UnlockOwnership(UnlockOwnership {
                customer_id: c,
                reason: "done".into(),
            })
            .into(),
        )
        .await
        .unwrap();
    for stream in [format!("customer-{c}"), format!("manager-{m}")] {
        let events = store.read_stream(&stream, 0).await.unwrap();
        assert!(events.len() >= 2, "{stream}: {}", events.len());
        for pair in events.windows(2) {
            assert!(
                pair[1].metadata.occurred_at >= pair[0].metadata.occurred_at,
                "{stream}: {} at {} after {} at {}",
                pair[1].event_type,
                pair[1].metadata.occurred_at,
                pair[0].event_type,
                pair[0].metadata.occurred_at
            );
        }
    }
}

/// A registration is decided without reading the customer's stream (assumed new); a
/// customer that exists is still refused, by this handler and by one that never saw it,
/// and its key (sealed data) stays the one it had.
async fn registering_twice_is_refused<S: EventStore + Clone>(store: S) {
    let handler = CommandHandler::new(store.clone(), HandlerConfig::default());
    let c = CustomerId::new(Uuid::now_v7());
    let first = handler
        .handle(envelope(), register_customer(c, "13800000007"))
        .await;
    assert_eq!(code(first), "accepted:1");
    for h in [
        handler.clone(),
        CommandHandler::new(store.clone(), HandlerConfig::default()),
    ] {
        let again = h
            .handle(envelope(), register_customer(c, "13900000007"))
            .await;
        assert_eq!(code(again), "customer.already_registered");
    }
    let events = store
        .read_stream(&format!("customer-{c}"), 0)
        .await
        .unwrap();
    assert_eq!(events.len(), 1, "nothing appended by the refusals");
    let fresh = CommandHandler::new(store.clone(), HandlerConfig::default());
    let mut payload = events[0].payload.clone();
    fresh
        .vault()
        .open(
            &format!("customer-{c}"),
            &events[0].event_type,
            &mut payload,
        )
        .await
        .unwrap();
    assert_eq!(payload["phone"], "+8613800000007", "{payload}");
    // A new customer with the phone of another is refused before anything is written:
    // not even its key.
    let c2 = CustomerId::new(Uuid::now_v7());
    let duplicate = fresh
        .handle(envelope(), register_customer(c2, "13800000007"))
        .await;
    assert_eq!(code(duplicate), "customer.duplicate");
    assert!(matches!(
        store.subject_key(&format!("customer-{c2}")).await.unwrap(),
        crm_eventstore::SubjectKey::Absent
    ));
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
    registering_twice_is_refused,
    holding_limit_holds_under_concurrent_assignment,
    duplicates_are_caught_even_when_racing,
    commands_are_idempotent_and_refusals_change_nothing,
    stale_caches_are_corrected,
    a_failed_append_leaves_no_phantom_state,
    no_event_is_dated_before_its_streams_previous_event,
);

/// Thirty commands decided at once share group-commit transactions with one whose data
/// PostgreSQL cannot hold (a NUL, from a caller in process, where no ingress checked the
/// text): the thirty are stored, it alone is refused as unstorable. (The ingress refuses
/// such text first; this is the second line.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_commands_unstorable_data_never_fails_its_batch() {
    let (store, _db) = postgres_store().await;
    let handler = CommandHandler::new(store.clone(), HandlerConfig::default());
    let mut tasks = Vec::new();
    for i in 0..31 {
        let handler = handler.clone();
        tasks.push(tokio::spawn(async move {
            let id = ManagerId::new(Uuid::now_v7());
            let mut command = register_manager(id, 10);
            if i == 15 {
                if let Command::Manager(ManagerCommand::Register(r)) = &mut command {
                    r.team = "ab\u{0}c".parse().unwrap();
                }
            }
            (i, handler.handle(envelope(), command).await)
        }));
    }
    let mut stored = 0;
    for t in tasks {
        let (i, result) = t.await.unwrap();
        match (i, result) {
            (15, Err(e)) => assert_eq!(e.code(), "command.unstorable", "{e}"),
            (15, Ok(a)) => panic!("the NUL was stored: {a:?}"),
            (_, Ok(_)) => stored += 1,
            (i, Err(e)) => panic!("command {i} failed with the poisoned one: {e}"),
        }
    }
    assert_eq!(stored, 30);
}

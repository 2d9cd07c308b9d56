//! End to end, as users run it: the command service and two schedulers as processes on
//! one PostgreSQL store. A policy published over HTTP assigns a customer on registration;
//! the customer lapses (no contact for 30 days) and a critical complaint misses its
//! first-response deadline; the schedulers return the customer to the pool and breach and
//! escalate the complaint — each exactly once, though two schedulers run.

use std::time::{Duration, Instant};

use chrono::Utc;
use crm_domain::CustomerEvent;
use crm_eventstore::postgres::PgEventStore;
use crm_eventstore::Streams;
use crm_integration_tests::{Platform, Service};
use serde_json::{json, Value};
use uuid::Uuid;

/// The history the schedulers act on, dated in the past. A caller cannot date commands
/// (the ingress judges them at receipt, which the test checks first); the platform's own
/// tooling can, so it is written by a command handler in process, as an import would.
async fn seed_history(
    platform: &Platform,
    base: &str,
    now: chrono::DateTime<Utc>,
) -> (Uuid, Uuid, Uuid, Uuid) {
    use crm_command_handler::{CommandHandler, Envelope, HandlerConfig};
    use crm_domain::customer::{CustomerCommand, LogComplaint};
    use crm_domain::policy::{PolicyCommand, PublishPolicy};
    use crm_domain::{Actor, Command};

    let long_ago = now - chrono::Duration::days(40);
    let (owner, lead) = (Uuid::now_v7(), Uuid::now_v7());
    // Over HTTP, a command dated 40 days back is refused: rules are judged at receipt.
    let body = json!({"meta": {"command_id": Uuid::now_v7().to_string(), "actor": "person:ops",
                                "issued_at": long_ago.to_rfc3339()},
                      "manager_id": owner.to_string(), "name": "Li Wei", "role": "manager",
                      "team": "east-1", "region": "east", "branch": "sh-01", "holding_limit": 10});
    let r = reqwest::Client::new()
        .post(format!("{base}/v1/commands/register_manager"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let problem: Value = r.json().await.unwrap();
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("meta.issued_at"),
        "{problem}"
    );

    let store = PgEventStore::connect(&platform.db.url, 2).await.unwrap();
    let handler = CommandHandler::new(store, HandlerConfig::default());
    let at = |t| Envelope::new(Actor::person("ops"), t);
    for (id, role) in [(owner, "manager"), (lead, "team_lead")] {
        let mut m = crm_integration_tests::register_manager(id.into(), "Li Wei", "east-1");
        if let Command::Manager(crm_domain::ManagerCommand::Register(r)) = &mut m {
            r.role = role.parse().unwrap();
            r.holding_limit = 10;
        }
        handler.handle(at(long_ago), m).await.unwrap();
    }
    let policy = json!({
        "rules": [{"name": "east", "when": {"regions": ["east"]}, "team": "east-1",
                   "method": "least_loaded"}],
        "utc_offset_minutes": 480
    });
    let publish = PolicyCommand::Publish(PublishPolicy {
        document: serde_json::from_value(policy).unwrap(),
        note: "e2e".into(),
    });
    handler.handle(at(long_ago), publish.into()).await.unwrap();
    let customer = Uuid::now_v7();
    let register = crm_integration_tests::register_customer(
        customer.into(),
        "Wang Fang",
        Some("+8613800138000".into()),
        None,
    );
    let answer = handler.handle(at(long_ago), register).await.unwrap();
    let types: Vec<&str> = answer
        .events
        .iter()
        .map(|e| e.event_type.as_str())
        .collect();
    assert_eq!(types, vec!["CustomerRegistered", "OwnerAssigned"]);
    let complaint = Uuid::now_v7();
    let log = CustomerCommand::LogComplaint(LogComplaint {
        customer_id: customer.into(),
        complaint_id: complaint.into(),
        severity: "critical".parse().unwrap(),
        category: "fees".into(),
        description: "charged twice".into(),
        channel: "phone".parse().unwrap(),
    });
    handler
        .handle(at(now - chrono::Duration::hours(1)), log.into())
        .await
        .unwrap();
    (owner, lead, customer, complaint)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedulers_return_lapsed_customers_and_breach_complaints_once() {
    crm_integration_tests::binary("crm-scheduler");
    let platform = Platform::new().await;
    let mut service = Service::start(
        "crm-command-service",
        &["--http-addr", "127.0.0.1:0"],
        &platform.env(),
    );
    let ready = service.wait_ready().await;
    let base = format!("http://{}", ready["http"].as_str().unwrap());
    let now = Utc::now();
    let long_ago = now - chrono::Duration::days(40);
    let (_owner, lead, customer, _complaint) = seed_history(&platform, &base, now).await;

    // Two schedulers at once, ticking every second.
    let env = platform.env();
    let mut schedulers: Vec<Service> = (0..2)
        .map(|_| Service::start("crm-scheduler", &["--period-seconds", "1"], &env))
        .collect();
    for s in &mut schedulers {
        s.wait_ready().await;
    }

    let store = PgEventStore::connect(&platform.db.url, 2).await.unwrap();
    let stream = format!("customer-{customer}");
    let deadline = Instant::now() + Duration::from_secs(60);
    let events = loop {
        let events: Vec<CustomerEvent> = store
            .read_stream(&stream, 0)
            .await
            .unwrap()
            .iter()
            .map(|e| CustomerEvent::decode(&e.event_type, e.schema_version, &e.payload).unwrap())
            .collect();
        let returned = events
            .iter()
            .any(|e| matches!(e, CustomerEvent::ReleasedToPool(r) if r.rule.is_some()));
        let escalated = events
            .iter()
            .any(|e| matches!(e, CustomerEvent::ComplaintEscalated(_)));
        if returned && escalated {
            // One more period, so a second scheduler had every chance to act twice.
            tokio::time::sleep(Duration::from_secs(3)).await;
            break store
                .read_stream(&stream, 0)
                .await
                .unwrap()
                .iter()
                .map(|e| {
                    CustomerEvent::decode(&e.event_type, e.schema_version, &e.payload).unwrap()
                })
                .collect::<Vec<_>>();
        }
        assert!(
            Instant::now() < deadline,
            "the schedulers did not act within 60 s: {:?}",
            events.iter().map(|e| e.event_type()).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let count = |t: &str| events.iter().filter(|e| e.event_type() == t).count();
    assert_eq!(count("ReleasedToPool"), 1, "returned once");
    assert_eq!(count("ComplaintSlaBreached"), 1, "breached once");
    assert_eq!(count("ComplaintEscalated"), 1, "escalated once");
    assert_eq!(
        count("PoolReturnWarned"),
        0,
        "no warning after the deadline"
    );
    for e in &events {
        match e {
            CustomerEvent::ReleasedToPool(r) => {
                assert_eq!(r.released_by.to_string(), "system:scheduler");
                let rule = r.rule.as_ref().unwrap();
                assert_eq!(rule.policy_version, 1);
                assert_eq!(rule.due_at, long_ago + chrono::Duration::days(30));
            }
            CustomerEvent::ComplaintEscalated(x) => {
                assert!(x.automatic);
                assert_eq!(x.level, 1);
                assert_eq!(x.escalated_to.map(|m| m.as_uuid()), Some(lead));
            }
            _ => {}
        }
    }
    for s in &schedulers {
        assert!(
            !s.output().contains("ERROR"),
            "scheduler logged an error:\n{}",
            s.output()
        );
    }
}

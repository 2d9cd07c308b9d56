//! End to end, as users run it: the command service and two schedulers as processes on
//! one PostgreSQL store. A policy published over HTTP assigns a customer on registration;
//! the customer lapses (no contact for 30 days) and a critical complaint misses its
//! first-response deadline; the schedulers return the customer to the pool and breach and
//! escalate the complaint — each exactly once, though two schedulers run.

use std::time::{Duration, Instant};

use chrono::Utc;
use crm_domain::CustomerEvent;
use crm_eventstore::postgres::PgEventStore;
use crm_eventstore::EventStore;
use crm_integration_tests::{Platform, Service};
use serde_json::{json, Value};
use uuid::Uuid;

async fn post(
    http: &reqwest::Client,
    base: &str,
    command: &str,
    mut body: Value,
    issued: chrono::DateTime<Utc>,
) -> Value {
    body["meta"] = json!({
        "command_id": Uuid::now_v7().to_string(),
        "actor": "person:ops",
        "issued_at": issued.to_rfc3339(),
    });
    let r = http
        .post(format!("{base}/v1/commands/{command}"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let v: Value = r.json().await.unwrap();
    assert!(status.is_success(), "{command}: {status} {v}");
    v
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
    let http = reqwest::Client::new();
    let now = Utc::now();
    let long_ago = now - chrono::Duration::days(40);

    let (owner, lead) = (Uuid::now_v7(), Uuid::now_v7());
    for (id, role) in [(owner, "manager"), (lead, "team_lead")] {
        post(
            &http,
            &base,
            "register_manager",
            json!({"manager_id": id.to_string(), "name": "Li Wei", "role": role,
                   "team": "east-1", "region": "east", "branch": "sh-01", "holding_limit": 10}),
            long_ago,
        )
        .await;
    }
    let policy = json!({
        "rules": [{"name": "east", "when": {"regions": ["east"]}, "team": "east-1",
                   "method": "least_loaded"}],
        "utc_offset_minutes": 480
    });
    post(
        &http,
        &base,
        "publish_policy",
        json!({"document_json": policy.to_string(), "note": "e2e"}),
        long_ago,
    )
    .await;
    let customer = Uuid::now_v7();
    let answer = post(
        &http,
        &base,
        "register_customer",
        json!({"customer_id": customer.to_string(), "customer_type": "individual",
               "display_name": "Wang Fang", "phone": "+8613800138000", "region": "east",
               "first_touch_channel": "web"}),
        long_ago,
    )
    .await;
    let types: Vec<&str> = answer["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        vec!["CustomerRegistered", "OwnerAssigned"],
        "{answer}"
    );
    let complaint = Uuid::now_v7();
    post(
        &http,
        &base,
        "log_complaint",
        json!({"customer_id": customer.to_string(), "complaint_id": complaint.to_string(),
               "severity": "critical", "category": "fees", "description": "charged twice",
               "channel": "phone"}),
        now - chrono::Duration::hours(1),
    )
    .await;

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

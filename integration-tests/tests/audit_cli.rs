//! `crm audit` as an auditor runs it, on the store a demo left behind: the ownership
//! history of a customer the scheduler returned to the pool, its owner as of an instant,
//! and a manager's period, in text and JSON.

use std::process::Command;

fn crm(args: &[&str]) -> String {
    let out = Command::new(crm_integration_tests::binary("crm"))
        .args(args)
        .output()
        .expect("run crm");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "crm {args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auditor_replays_ownership_from_the_store() {
    let db = crm_eventstore::testing::TempPath::new("crm-audit-demo");
    crm(&["demo", "--customers", "60", "--db", db.0.to_str().unwrap()]);
    let url = format!("sqlite://{}", db.0.display());
    let store = crm_eventstore::sqlite::SqliteEventStore::open(&db.0)
        .await
        .unwrap();
    // A customer returned to the pool by a rule, and whoever owned it first.
    let events = {
        use crm_eventstore::{EventStore, LogPosition};
        store.read_all(LogPosition::START, 1_000_000).await.unwrap()
    };
    let returned = events
        .iter()
        .find(|e| e.event_type == "ReleasedToPool" && e.payload.get("rule").is_some())
        .expect("the demo returns customers to the pool");
    let customer = returned.stream_id.strip_prefix("customer-").unwrap();
    let text = crm(&["audit", "ownership", customer, "--store", &url]);
    assert!(text.contains("replayed from the event store"), "{text}");
    assert!(
        text.contains("by system:policy") || text.contains("by person:"),
        "{text}"
    );
    assert!(
        text.contains("by system:scheduler; reason: no contact by the owner"),
        "{text}"
    );
    assert!(text.contains("pool rule no_contact due"), "{text}");

    let json: serde_json::Value = serde_json::from_str(&crm(&[
        "audit",
        "ownership",
        customer,
        "--store",
        &url,
        "--json",
    ]))
    .unwrap();
    let entries = json.as_array().unwrap();
    let first = &entries[0];
    let owner = first["new_owner"].as_str().unwrap().to_string();
    let at = first["at"].as_str().unwrap().to_string();
    let as_of: serde_json::Value = serde_json::from_str(&crm(&[
        "audit",
        "ownership",
        customer,
        "--as-of",
        &at,
        "--store",
        &url,
        "--json",
    ]))
    .unwrap();
    assert_eq!(
        as_of["owner"].as_str(),
        Some(owner.as_str()),
        "exact to the event"
    );

    let period: serde_json::Value = serde_json::from_str(&crm(&[
        "audit",
        "manager",
        &owner,
        "--from",
        "2026-11-01T00:00:00Z",
        "--to",
        "2027-06-01T00:00:00Z",
        "--store",
        &url,
        "--json",
    ]))
    .unwrap();
    assert!(period["held_before"].as_array().unwrap().is_empty());
    let changes = period["entries"].as_array().unwrap();
    assert!(changes
        .iter()
        .any(|e| e["customer_id"].as_str() == Some(customer)));
    assert!(period["events_read"].as_u64().unwrap() as usize >= events.len());
    // The demo keeps its read models beside the store.
    let _read = crm_eventstore::testing::TempPath(db.0.with_extension("read.db"));
}

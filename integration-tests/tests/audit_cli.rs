//! `crm audit` as an auditor runs it: on the store a demo left behind, the ownership
//! history of a customer the scheduler returned to the pool, its owner as of an instant,
//! and a manager's period, in text and JSON; on PostgreSQL sealed by a running relay,
//! `crm audit verify` passing, then naming a row changed in the database.

use std::process::Command;
use std::time::{Duration, Instant};

use crm_eventstore::{Append, EventStore, ExpectedVersion, LogPosition, Seals, Streams};
use crm_integration_tests::{Platform, Service};

/// Run `crm`; its stdout and whether it succeeded.
fn crm_status(args: &[&str]) -> (bool, String) {
    let out = Command::new(crm_integration_tests::binary("crm"))
        .args(args)
        .output()
        .expect("run crm");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    if !out.status.success() {
        eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    }
    (out.status.success(), stdout)
}

fn crm(args: &[&str]) -> String {
    let (ok, stdout) = crm_status(args);
    assert!(ok, "crm {args:?} failed:\n{stdout}");
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_seals_the_log_and_verify_names_a_changed_row() {
    let platform = Platform::new().await;
    let store = crm_eventstore::postgres::PgEventStore::connect(&platform.db.url, 4)
        .await
        .unwrap();
    for s in 0..40 {
        store
            .append(crm_eventstore::conformance::request(
                &format!("customer-{s}"),
                ExpectedVersion::NoStream,
                3,
            ))
            .await
            .unwrap();
    }
    let mut env = platform.env();
    env.push(("CRM_CHECKPOINT_EVERY", "1".into()));
    let mut relay = Service::start("crm-relay", &[], &env);
    relay.wait_ready().await;
    // The relay seals everything within a few periods.
    let last = last_position(&store, 120).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let sealed = store.last_global_checkpoint().await.unwrap();
        if sealed.is_some_and(|c| c.through >= last) {
            break;
        }
        assert!(Instant::now() < deadline, "the relay did not seal the log");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(relay);

    let url = platform.db.url.clone();
    let text = crm(&["audit", "verify", "--store", &url]);
    assert!(text.contains("120 events in 40 streams"), "{text}");
    assert!(
        text.contains("OK: every hash chain and checkpoint verifies"),
        "{text}"
    );
    let report: serde_json::Value =
        serde_json::from_str(&crm(&["audit", "verify", "--store", &url, "--json"])).unwrap();
    let head = report["head"].as_array().unwrap();
    let anchor = format!("{}:{}", head[0], head[1].as_str().unwrap());
    crm(&["audit", "verify", "--store", &url, "--expect", &anchor]);

    // Someone with the owner's rights edits an event in place.
    let victim = store.read_stream("customer-7", 0).await.unwrap()[1].clone();
    sqlx::query("ALTER TABLE events DISABLE TRIGGER USER")
        .execute(store.pool())
        .await
        .unwrap();
    sqlx::query("UPDATE events SET actor = 'person:intruder' WHERE event_id = $1")
        .bind(victim.event_id)
        .execute(store.pool())
        .await
        .unwrap();
    let (ok, text) = crm_status(&["audit", "verify", "--store", &url]);
    assert!(!ok, "verify must fail:\n{text}");
    assert!(text.contains("FAILED: 1 problems"), "{text}");
    assert!(
        text.contains(&format!(
            "→ Altered at log position {} (customer-7 v2, event {})",
            victim.log_position, victim.event_id
        )),
        "{text}"
    );
    // A wrong anchor is refused even when everything else verifies.
    let wrong = format!("{}:{}", head[0], "00".repeat(32));
    let (ok, text) = crm_status(&["audit", "verify", "--store", &url, "--expect", &wrong]);
    assert!(!ok && text.contains("Anchor"), "{text}");
}

/// The log position of the last of `n` events, once all are visible.
async fn last_position<S: EventStore>(store: &S, n: usize) -> LogPosition {
    let all = crm_eventstore::conformance::all_events(store, n).await;
    all.last().unwrap().log_position
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
        use crm_eventstore::{Log, LogPosition};
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

    // The auditor takes an export away and gets the same answers from it, offline.
    let export = crm_eventstore::testing::TempPath::new("crm-audit-export");
    let out = export.0.to_str().unwrap();
    let text = crm(&["audit", "export", "--store", &url, "--out", out]);
    assert!(text.contains(&format!("{} events", events.len())), "{text}");
    let exported = format!("sqlite://{out}");
    let text = crm(&["audit", "verify", "--store", &exported]);
    assert!(text.contains("audit export of sqlite://"), "{text}");
    assert!(
        text.contains("OK: every hash chain and checkpoint verifies"),
        "{text}"
    );
    assert_eq!(
        crm(&["audit", "ownership", customer, "--store", &exported]),
        crm(&["audit", "ownership", customer, "--store", &url]),
        "the export replays like the store"
    );
    // The demo keeps its read models beside the store.
    let _read = crm_eventstore::testing::TempPath(db.0.with_extension("read.db"));
}

/// Text stored before control characters were refused (or written around the platform)
/// cannot drive an auditor's terminal or forge a line of `crm audit`'s answer: it is
/// printed escaped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_text_cannot_drive_an_auditors_terminal() {
    use crm_projections::testing::{append, t0, Log};
    let platform = Platform::new().await;
    let store = crm_eventstore::postgres::PgEventStore::connect(&platform.db.url, 2)
        .await
        .unwrap();
    let (c, m) = (
        uuid::Uuid::new_v4().to_string(),
        uuid::Uuid::new_v4().to_string(),
    );
    let mut log = Log::default();
    log.manager(&m, "east-1");
    log.customer(&c, t0());
    log.push(
        &format!("customer-{c}"),
        "OwnerAssigned",
        t0() + chrono::Duration::hours(1),
        serde_json::json!({
            "assigned_by": "person:\u{1b}[2J\u{1b}[HOK-approved-by-compliance",
            "customer_id": c, "manager_id": m, "previous_owner": null,
            "reason": "walk-in\nOK: every hash chain and checkpoint verifies",
            "region": "east", "team": "east-1"}),
    );
    let (assigned, before) = log.events.split_last().unwrap();
    append(&store, before).await;
    // Recorded by an actor of the same kind, as the old ingress let a caller name it.
    let mut meta = crm_eventstore::conformance::meta(uuid::Uuid::new_v4());
    meta.actor = "person:\u{1b}[2J\u{1b}[HOK-approved-by-compliance".into();
    meta.issued_at = assigned.metadata.occurred_at;
    let request = crm_eventstore::AppendRequest::new(meta).write(
        assigned.stream_id.clone(),
        ExpectedVersion::Exact(assigned.stream_version - 1),
        vec![crm_eventstore::NewEvent {
            event_id: assigned.event_id,
            event_type: assigned.event_type.clone(),
            schema_version: 1,
            payload: assigned.payload.clone(),
        }],
    );
    store.append(request).await.unwrap();
    let out = crm(&["audit", "ownership", &c, "--store", &platform.db.url]);
    assert!(!out.contains('\u{1b}'), "a raw escape:\n{out}");
    assert!(
        !out.lines().any(|l| l.starts_with("OK: every hash chain")),
        "a forged line:\n{out}"
    );
    assert!(
        out.contains("\\u{1b}[2J\\u{1b}[HOK-approved-by-compliance"),
        "{out}"
    );
    assert!(out.contains("walk-in\\nOK: every hash chain"), "{out}");
}

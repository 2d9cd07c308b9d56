//! `crm demo` as a newcomer runs it: it plays the day and the hundred days after it,
//! replays the store, and its own consistency checks (replayed holdings = the store's
//! counters ≤ limits) pass, and the read models built from its log agree with the write
//! side; the policy and the scheduler visibly acted.

use std::process::Command;

#[test]
fn the_demo_plays_a_day_and_reports_it() {
    let db = std::env::temp_dir().join(format!("crm-demo-{}.db", uuid::Uuid::new_v4().simple()));
    let out = Command::new(crm_integration_tests::binary("crm"))
        .args(["demo", "--customers", "120", "--show", "5", "--db"])
        .arg(&db)
        .output()
        .expect("run crm demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "crm demo failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for section in [
        "Commands",
        "Customers (state replayed from the event store)",
        "Managers",
        "Event log",
        "Ownership view",
        "every manager's portfolio matches the write side's holdings",
        "Lifecycle funnel",
        "Manager KPIs for the day",
        "Pool rules, complaint clocks and lifecycle over the 100 days",
    ] {
        assert!(stdout.contains(section), "missing {section}:\n{stdout}");
    }
    assert!(stdout.contains("120 customers registered"), "{stdout}");
    assert!(
        stdout.contains("customer.duplicate"),
        "the duplicate check shows:\n{stdout}"
    );
    assert!(stdout.contains("contact.sms_consent_missing"), "{stdout}");
    assert!(
        stdout.contains("CustomerRegistered") && stdout.contains("OwnerAssigned"),
        "{stdout}"
    );
    assert!(!stdout.contains("MISMATCH"), "{stdout}");
    // The policy and the scheduler acted: refusals by protection, events of time.
    for shown in [
        "ownership policy v1 published",
        "ownership.protected",
        "PoolReturnWarned",
        "SLA breaches",
        "went dormant",
    ] {
        assert!(stdout.contains(shown), "missing {shown}:\n{stdout}");
    }
    // A bank's day shows transfers that go through (within the owner's team, which
    // first-touch protection admits) beside those protection refuses.
    let transfers = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("transfer_owner"))
        .unwrap_or_else(|| panic!("no transfer_owner row:\n{stdout}"));
    let accepted: u64 = transfers
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    assert!(accepted > 0, "some transfers succeed: {transfers}");
    assert!(transfers.contains("ownership.protected"), "{transfers}");
    // The ownership timeline dates its periods (they span the hundred days).
    let timeline = stdout
        .split("ownership timeline of customer")
        .nth(1)
        .unwrap_or_else(|| panic!("no ownership timeline:\n{stdout}"));
    let first = timeline.lines().nth(1).unwrap_or_default().trim_start();
    let dated = |t: &str| {
        let b = t.as_bytes();
        b.len() >= 11 && b[2] == b'-' && b[5] == b' ' && b[8] == b':'
    };
    assert!(
        dated(first),
        "a period starts with its date and time: {first:?}"
    );
    every_stored_event_is_its_contract_message(&db);
    let _ = std::fs::remove_file(&db);
}

/// Every event the day stored (domain events, the policy, the recorded
/// verification) reads as its message in `proto/crm/v1/events.proto` with unknown fields
/// refused, and every field the contract marks personal holds ciphertext.
fn every_stored_event_is_its_contract_message(db: &std::path::Path) {
    use crm_contracts::events::{message_for, read_payload};
    use crm_contracts::options::is_personal;
    use crm_eventstore::{sqlite::SqliteEventStore, Log, LogPosition};
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let events = runtime.block_on(async {
        let store = SqliteEventStore::open(db)
            .await
            .expect("open the demo's store");
        store
            .read_all(LogPosition::START, usize::MAX >> 1)
            .await
            .unwrap()
    });
    let mut types = std::collections::BTreeSet::new();
    let mut personal = 0;
    for e in &events {
        read_payload(&e.event_type, e.schema_version, &e.payload)
            .unwrap_or_else(|err| panic!("{err}\n{}", e.payload));
        let message = &message_for(&e.event_type, e.schema_version)
            .unwrap()
            .message;
        for field in message.fields().filter(is_personal) {
            if let Some(text) = e.payload.get(field.name()).and_then(|v| v.as_str()) {
                assert!(
                    text.starts_with("enc:v1:"),
                    "{}.{} in clear",
                    e.event_type,
                    field.name()
                );
                personal += 1;
            }
        }
        types.insert(e.event_type.clone());
    }
    assert!(events.len() > 1_000, "{} events", events.len());
    assert!(personal > 100, "{personal} personal fields");
    assert!(types.len() >= 20, "{} event types: {types:?}", types.len());
    for expected in [
        "CustomerRegistered",
        "PolicyPublished",
        "OwnershipTransferred",
        "ChainVerified",
    ] {
        assert!(types.contains(expected), "no {expected} among {types:?}");
    }
}

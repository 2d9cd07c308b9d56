//! Stored events must stay readable forever. `fixtures/events_v1.json` holds one stored
//! example of every event type (type, schema version, payload); it was written once and
//! must never be edited: a schema change adds a version and an upcaster instead.

use crm_domain::{CustomerEvent, DomainEvent, ManagerEvent, PolicyEvent};
use serde_json::Value;

#[test]
fn every_stored_event_version_decodes_and_re_encodes_unchanged() {
    let fixtures: Vec<Value> =
        serde_json::from_str(include_str!("fixtures/events_v1.json")).unwrap();
    let mut covered = Vec::new();
    for f in &fixtures {
        let t = f["event_type"].as_str().unwrap();
        let v = f["schema_version"].as_u64().unwrap() as u32;
        let event =
            DomainEvent::decode(t, v, &f["payload"]).unwrap_or_else(|e| panic!("{t} v{v}: {e}"));
        assert_eq!(event.event_type(), t);
        assert_eq!(
            event.payload(),
            f["payload"],
            "{t} re-encodes to the stored payload"
        );
        covered.push(t.to_string());
    }
    for t in CustomerEvent::TYPES
        .iter()
        .chain(ManagerEvent::TYPES)
        .chain(PolicyEvent::TYPES)
    {
        assert!(covered.iter().any(|c| c == t), "no stored fixture for {t}");
    }
}

#[test]
fn unknown_types_and_versions_are_refused() {
    let payload = serde_json::json!({});
    assert!(DomainEvent::decode("CustomerTeleported", 1, &payload).is_err());
    assert!(CustomerEvent::decode("ContactRecorded", 99, &payload).is_err());
    assert!(
        CustomerEvent::decode("ContactRecorded", 1, &payload).is_err(),
        "missing fields"
    );
}

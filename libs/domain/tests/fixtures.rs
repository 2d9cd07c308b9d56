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
        // Read as JSON text (the way a rebuild reads the log), the same event.
        let text = f["payload"].to_string();
        let from_text = DomainEvent::decode(t, v, text.as_str())
            .unwrap_or_else(|e| panic!("{t} v{v} from text: {e}"));
        assert_eq!(from_text, event, "{t}: the text decodes to the same event");
        if let DomainEvent::Customer(c) = &event {
            // The payload text a timeline answers: the same fields and values, in
            // declared order.
            let written = c.payload_text();
            let parsed: Value = serde_json::from_str(&written).unwrap();
            assert_eq!(parsed, f["payload"], "{t}: payload_text holds the payload");
            let DomainEvent::Customer(again) = &from_text else {
                panic!("{t} decoded as another kind from text")
            };
            assert_eq!(again.payload_text(), written, "{t}: one text per event");
        }
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

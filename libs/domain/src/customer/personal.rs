//! Which fields of customer events are personal data (PIPL/GDPR).
//!
//! These fields are stored encrypted with the customer's own key (crypto-shredding,
//! `libs/privacy`); erasing the customer's personal data destroys the key. Everything
//! else (ids, owners, times, stages, amounts, channels, outcomes) stays readable: the
//! history, KPIs and audit trail survive an erasure. Free text written about the
//! customer (contact summaries, complaint texts, referral notes) counts as personal.

use serde_json::Value;

use super::events::CustomerEvent;

/// Streams recording who read customers' personal data (event `PersonalDataRead`):
/// written by the query service, never decided by the domain and never projected; audit
/// evidence, hash-chained like every stream. Schema 2 (now): one stream per answer,
/// `access-<request id>`, one event naming every customer and field it revealed. Schema
/// 1 (before): `access-<customer id>`, one event per customer.
pub const ACCESS_LOG_PREFIX: &str = "access-";

/// The event type of an access record.
pub const PERSONAL_DATA_READ: &str = "PersonalDataRead";

/// The schema version of new access records: `reader`, `role`, `route`, `customers`
/// (ids), `fields` (names).
pub const PERSONAL_DATA_READ_VERSION: u32 = 2;

/// What a personal field reads as once its customer's data was erased.
pub const ERASED: &str = "[erased]";

/// What a personal field reads as where its key is not available (an audit export
/// carries no keys).
pub const WITHHELD: &str = "[withheld]";

/// Whether the field may be absent (null) in its events; the others are required text
/// and read as [`ERASED`] / [`WITHHELD`] when unreadable.
pub fn optional(field: &str) -> bool {
    matches!(
        field,
        "phone" | "email" | "registration_number" | "summary" | "note"
    )
}

/// The personal fields of an event type's payload (top-level string fields).
pub fn fields(event_type: &str) -> &'static [&'static str] {
    match event_type {
        "CustomerRegistered" | "ProfileUpdated" => {
            &["display_name", "phone", "email", "registration_number"]
        }
        "ContactRecorded" => &["summary"],
        "ComplaintLogged" => &["description"],
        "ComplaintResolved" => &["resolution"],
        "ComplaintReopened" => &["reason"],
        "ReferralRecorded" => &["note"],
        _ => &[],
    }
}

/// Whether the event records any personal data (a personal field that is present and
/// not null).
pub fn carries_personal_data(event: &CustomerEvent) -> bool {
    let names = fields(event.event_type());
    if names.is_empty() {
        return false;
    }
    let payload = event.payload();
    names
        .iter()
        .any(|f| !matches!(payload.get(*f), None | Some(Value::Null)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every listed field exists in the stored examples of its event type, as a string.
    #[test]
    fn listed_fields_are_string_fields_of_their_events() {
        let fixtures: Vec<Value> =
            serde_json::from_str(include_str!("../../tests/fixtures/events_v1.json")).unwrap();
        let mut seen = std::collections::BTreeSet::new();
        for f in &fixtures {
            let t = f["event_type"].as_str().unwrap();
            for name in fields(t) {
                if let Some(v) = f["payload"].get(*name) {
                    assert!(v.is_string() || v.is_null(), "{t}.{name} is {v}");
                    seen.insert((t.to_string(), *name));
                }
            }
        }
        for t in [
            "CustomerRegistered",
            "ContactRecorded",
            "ComplaintLogged",
            "ComplaintResolved",
        ] {
            assert!(
                seen.iter().any(|(e, _)| e == t),
                "{t} has a fixture with personal data"
            );
        }
    }
}

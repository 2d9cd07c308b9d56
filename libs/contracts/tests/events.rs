//! The event messages of `proto/crm/v1/events.proto` describe the events the domain
//! writes: one message per event type and schema version, every stored fixture read by
//! its message with unknown fields refused and written back to the same values, and each
//! closed set of values equal to the domain's.

use crm_contracts::events::{catalogue, message_for, read_payload};
use crm_contracts::options::{allowed_values, message_rules};
use crm_domain::customer::CustomerEvent;
use crm_domain::manager::ManagerEvent;
use crm_domain::policy::{Distribution, PolicyEvent};
use crm_domain::values::*;
use prost_reflect::SerializeOptions;
use serde_json::Value;

fn fixtures() -> Vec<Value> {
    let text = include_str!("../../domain/tests/fixtures/events_v1.json");
    serde_json::from_str(text).expect("the fixtures are JSON")
}

/// Every event type the platform writes, with its schema version.
fn written() -> Vec<(String, u32)> {
    let mut all: Vec<(String, u32)> = CustomerEvent::TYPES
        .iter()
        .map(|t| (t.to_string(), CustomerEvent::SCHEMA_VERSION))
        .chain(
            ManagerEvent::TYPES
                .iter()
                .map(|t| (t.to_string(), ManagerEvent::SCHEMA_VERSION)),
        )
        .chain(
            PolicyEvent::TYPES
                .iter()
                .map(|t| (t.to_string(), PolicyEvent::SCHEMA_VERSION)),
        )
        .collect();
    use crm_domain::customer::personal::{PERSONAL_DATA_READ, PERSONAL_DATA_READ_VERSION};
    use crm_domain::evidence::{CHAIN_VERIFIED, CHAIN_VERIFIED_VERSION};
    all.push((PERSONAL_DATA_READ.into(), PERSONAL_DATA_READ_VERSION));
    all.push((PERSONAL_DATA_READ.into(), 1)); // still stored, still published on replay
    all.push((CHAIN_VERIFIED.into(), CHAIN_VERIFIED_VERSION));
    all.sort();
    all
}

#[test]
fn every_event_written_has_one_message_and_every_message_is_an_event() {
    let mut described: Vec<(String, u32)> = catalogue()
        .iter()
        .map(|e| (e.event_type.clone(), e.schema_version))
        .collect();
    described.sort();
    assert_eq!(described, written());
    for e in catalogue() {
        assert!(
            ["customer", "manager", "policy", "access", "verification"]
                .contains(&e.stream.as_str()),
            "{} names the stream kind {:?}",
            e.event_type,
            e.stream
        );
    }
}

/// The values a reader sees: `null`, `false`, `0` and `""` are what proto3 JSON leaves
/// out, so both sides drop them before comparing; numbers compare by value (the policy
/// document is a `google.protobuf.Struct`, whose numbers are doubles: 30 reads as 30.0).
fn meaning(v: &Value) -> Option<Value> {
    match v {
        Value::Null => None,
        Value::Bool(false) => None,
        Value::Number(n) if n.as_f64() == Some(0.0) => None,
        Value::Number(n) if n.is_f64() && n.as_f64().is_some_and(|f| f.fract() == 0.0) => {
            Some(Value::from(n.as_f64().unwrap() as i64))
        }
        Value::String(s) if s.is_empty() => None,
        Value::Object(map) => {
            let kept: serde_json::Map<String, Value> = map
                .iter()
                .filter_map(|(k, v)| meaning(v).map(|v| (k.clone(), v)))
                .collect();
            Some(Value::Object(kept))
        }
        Value::Array(items) => Some(Value::Array(items.iter().filter_map(meaning).collect())),
        other => Some(other.clone()),
    }
}

#[test]
fn every_stored_fixture_reads_as_its_message_and_back_to_the_same_values() {
    let fixtures = fixtures();
    assert!(fixtures.len() >= 30, "{} fixtures", fixtures.len());
    let options = SerializeOptions::new()
        .use_proto_field_name(true)
        .stringify_64_bit_integers(false);
    for f in fixtures {
        let event_type = f["event_type"].as_str().unwrap();
        let version = u32::try_from(f["schema_version"].as_u64().unwrap()).unwrap();
        let message =
            read_payload(event_type, version, &f["payload"]).unwrap_or_else(|e| panic!("{e}\n{f}"));
        let back = message
            .serialize_with_options(serde_json::value::Serializer, &options)
            .unwrap();
        assert_eq!(
            meaning(&back),
            meaning(&f["payload"]),
            "{event_type} written back differs"
        );
    }
}

#[test]
fn a_field_the_message_lacks_is_refused() {
    let mut payload = fixtures()
        .into_iter()
        .find(|f| f["event_type"] == "OwnerAssigned")
        .unwrap()["payload"]
        .clone();
    payload["owner_id"] = Value::String("x".into());
    let refused = read_payload("OwnerAssigned", 1, &payload).unwrap_err();
    assert!(refused.to_string().contains("owner_id"), "{refused}");
    assert!(read_payload("OwnerAssigned", 9, &payload).is_err());
    assert!(message_for("NoSuchEvent", 1).is_none());
}

fn texts<T: std::fmt::Display>(all: &[T]) -> Vec<String> {
    all.iter().map(ToString::to_string).collect()
}

fn serde_names<T: serde::Serialize>(all: &[T]) -> Vec<String> {
    all.iter()
        .map(|v| {
            serde_json::to_value(v)
                .unwrap()
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

/// The domain's values of a field with a closed set, by message and field name.
fn domain_values(message: &str, field: &str) -> Vec<String> {
    use crm_domain::customer::{PoolCause, SlaClock};
    match (message, field) {
        ("RegisterCustomer" | "CustomerRegistered", "stage") => {
            texts(&[LifecycleStage::Lead, LifecycleStage::Customer])
        }
        (_, "customer_type") => texts(CustomerType::ALL),
        (_, "first_touch_channel") => texts(FirstTouchChannel::ALL),
        (_, "channel") => texts(ContactChannel::ALL),
        (_, "direction") => texts(Direction::ALL),
        (_, "outcome") => texts(ContactOutcome::ALL),
        (_, "severity") => texts(Severity::ALL),
        (_, "role") => texts(ManagerRole::ALL),
        (_, "value_tier") | ("ValueTierChanged", "from" | "to") => texts(ValueTier::ALL),
        (_, "stage" | "from" | "to") => texts(LifecycleStage::ALL),
        (_, "method") => serde_names(&[
            Distribution::RoundRobin,
            Distribution::LeastLoaded,
            Distribution::WeightedPerformance,
        ]),
        (_, "cause") => serde_names(&[PoolCause::NoContact, PoolCause::LeadNotWon]),
        (_, "clock") => serde_names(&[SlaClock::FirstResponse, SlaClock::Resolution]),
        _ => panic!("{message}.{field} has a closed set the test does not know"),
    }
}

#[test]
fn each_closed_set_of_values_is_the_domains() {
    let mut checked = 0;
    for message in crm_contracts::descriptors().all_messages() {
        if message.package_name() != "crm.v1" {
            continue;
        }
        for field in message.fields() {
            let Some(values) = allowed_values(&field) else {
                continue;
            };
            let mut domain = domain_values(message.name(), field.name());
            let mut values = values;
            domain.sort();
            values.sort();
            assert_eq!(values, domain, "{}.{}", message.name(), field.name());
            checked += 1;
        }
    }
    assert!(checked >= 30, "only {checked} closed sets");
}

#[test]
fn the_rules_across_fields_are_the_domains() {
    let register = crm_contracts::descriptors()
        .get_message_by_name("crm.v1.RegisterCustomer")
        .unwrap();
    let rules: Vec<(String, String)> = message_rules(&register)
        .into_iter()
        .map(|r| (r.id, r.message))
        .collect();
    let domain: Vec<(String, String)> = crm_domain::CommandRule::ALL
        .iter()
        .map(|r| (r.id().to_string(), r.message().to_string()))
        .collect();
    assert_eq!(rules, domain);
}

#[test]
fn the_committed_documents_are_generated_from_the_proto_files() {
    let committed = include_str!("../../../docs/contract/asyncapi.json");
    assert!(
        committed.trim() == crm_contracts::asyncapi::document().trim(),
        "docs/contract/asyncapi.json is stale: cargo run -p crm -- contract asyncapi > docs/contract/asyncapi.json"
    );
    let committed = include_str!("../../../docs/contract/commands.openapi.json");
    assert!(
        committed.trim() == crm_contracts::openapi::document().trim(),
        "docs/contract/commands.openapi.json is stale: cargo run -p crm -- contract openapi > docs/contract/commands.openapi.json"
    );
}

#[test]
fn the_asyncapi_document_has_every_event_with_its_payload_schema() {
    let doc = crm_contracts::asyncapi::asyncapi();
    assert_eq!(doc["asyncapi"], "3.0.0");
    for e in catalogue() {
        let name = e.message.name();
        let m = &doc["components"]["messages"][name];
        assert_eq!(m["name"], e.event_type.as_str(), "{name}");
        let channel = &doc["channels"][e.stream.as_str()];
        assert!(
            channel["messages"][name].is_object(),
            "{name} not in its channel"
        );
        let schema = &doc["components"]["schemas"][name];
        for field in e.message.fields() {
            assert!(
                schema["properties"][field.name()].is_object(),
                "{name}.{}",
                field.name()
            );
        }
    }
    let personal = &doc["components"]["schemas"]["CustomerRegistered"]["properties"]["phone"];
    assert_eq!(personal["x-crm-personal"], true);
    let set = &doc["components"]["schemas"]["ContactRecorded"]["properties"]["direction"];
    assert_eq!(set["enum"], serde_json::json!(["inbound", "outbound"]));
}

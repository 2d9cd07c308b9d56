//! Every command survives the wire in both encodings, and bad payloads are refused
//! with a message that says what is wrong.

use chrono::{TimeZone, Utc};
use crm_contracts::v1;
use crm_contracts::wire::{decode, encode, Format, WireError, COMMAND_NAMES};
use crm_domain::customer::*;
use crm_domain::manager::*;
use crm_domain::*;
use uuid::Uuid;

fn id() -> Uuid {
    Uuid::now_v7()
}

fn samples() -> Vec<Command> {
    let c = CustomerId::new(id());
    let m = ManagerId::new(id());
    let k = ComplaintId::new(id());
    let t = Utc.with_ymd_and_hms(2026, 11, 26, 9, 0, 0).unwrap();
    use CustomerCommand as C;
    vec![
        C::Register(RegisterCustomer {
            customer_id: c,
            customer_type: CustomerType::Enterprise,
            display_name: "上海某某有限公司".into(),
            phone: Some("+86 21 5555 0000".into()),
            email: None,
            registration_number: Some("91310000717812345X".into()),
            region: "east".parse().unwrap(),
            branch: Some("sh-01".parse().unwrap()),
            first_touch_channel: FirstTouchChannel::Partner,
            industry: Some("logistics".into()),
            product_interest: None,
            consents: Some(Consents {
                sms: true,
                email: false,
                phone: true,
            }),
            stage: Some(LifecycleStage::Customer),
            value_tier: Some(ValueTier::High),
            aum_minor: Some(1_000_000),
        })
        .into(),
        C::UpdateProfile(UpdateProfile {
            customer_id: c,
            email: Some("a@b.cn".into()),
            ..UpdateProfile::default()
        })
        .into(),
        C::AssignOwner(AssignOwner {
            customer_id: c,
            manager_id: m,
            reason: "r".into(),
        })
        .into(),
        C::TransferOwner(TransferOwner {
            customer_id: c,
            to_manager_id: m,
            reason: "r".into(),
        })
        .into(),
        C::ReleaseToPool(ReleaseToPool {
            customer_id: c,
            reason: "r".into(),
        })
        .into(),
        C::ClaimFromPool(ClaimFromPool {
            customer_id: c,
            manager_id: m,
        })
        .into(),
        C::RecordContact(RecordContact {
            customer_id: c,
            contact_id: ContactId::new(id()),
            manager_id: m,
            channel: ContactChannel::Wechat,
            direction: Direction::Inbound,
            outcome: ContactOutcome::CallbackRequested,
            summary: Some("asked for a call".into()),
            next_follow_up_at: Some(t),
            occurred_at: None,
        })
        .into(),
        C::LogComplaint(LogComplaint {
            customer_id: c,
            complaint_id: k,
            severity: Severity::Critical,
            category: "fees".into(),
            description: "d".into(),
            channel: ContactChannel::Branch,
        })
        .into(),
        C::AcknowledgeComplaint(AcknowledgeComplaint {
            customer_id: c,
            complaint_id: k,
            by: m,
        })
        .into(),
        C::EscalateComplaint(EscalateComplaint {
            customer_id: c,
            complaint_id: k,
            reason: "r".into(),
        })
        .into(),
        C::ResolveComplaint(ResolveComplaint {
            customer_id: c,
            complaint_id: k,
            resolved_by: m,
            resolution: "ok".into(),
        })
        .into(),
        C::ReopenComplaint(ReopenComplaint {
            customer_id: c,
            complaint_id: k,
            reason: "r".into(),
        })
        .into(),
        C::CloseComplaint(CloseComplaint {
            customer_id: c,
            complaint_id: k,
            satisfaction: Some(5),
        })
        .into(),
        C::RecordPurchase(RecordPurchase {
            customer_id: c,
            purchase_id: PurchaseId::new(id()),
            product_line: "loan".into(),
            amount_minor: 9,
            currency: "CNY".into(),
            manager_id: None,
        })
        .into(),
        C::RecordReferral(RecordReferral {
            customer_id: c,
            referral_id: ReferralId::new(id()),
            referrer: "staff:1".into(),
            referred_to: m,
            note: None,
        })
        .into(),
        C::ChangeLifecycleStage(ChangeLifecycleStage {
            customer_id: c,
            to: LifecycleStage::Dormant,
            reason: "r".into(),
        })
        .into(),
        ManagerCommand::Register(RegisterManager {
            manager_id: m,
            name: "n".into(),
            role: ManagerRole::BranchManager,
            team: "t".parse().unwrap(),
            region: "r".parse().unwrap(),
            branch: "b".parse().unwrap(),
            holding_limit: 7,
        })
        .into(),
        ManagerCommand::Update(UpdateManager {
            manager_id: m,
            name: None,
            role: None,
            team: None,
            region: None,
            branch: None,
            holding_limit: Some(9),
        })
        .into(),
        ManagerCommand::Deactivate(DeactivateManager {
            manager_id: m,
            reason: "leave".into(),
        })
        .into(),
        ManagerCommand::Reactivate(ReactivateManager { manager_id: m }).into(),
        C::AssignByPolicy(AssignByPolicy {
            customer_id: c,
            reason: Some("new web lead".into()),
        })
        .into(),
        C::LockOwnership(LockOwnership {
            customer_id: c,
            until: Some(t),
            reason: "VIP".into(),
        })
        .into(),
        C::UnlockOwnership(UnlockOwnership {
            customer_id: c,
            reason: "no longer VIP".into(),
        })
        .into(),
        C::EraseCustomerData(EraseCustomerData {
            customer_id: c,
            reason: "DSR-42".into(),
        })
        .into(),
        policy::PolicyCommand::Publish(policy::PublishPolicy {
            document: policy::PolicyDocument {
                rules: vec![policy::AssignmentRule {
                    name: "east".into(),
                    when: policy::Conditions {
                        regions: vec!["east".parse().unwrap()],
                        ..policy::Conditions::default()
                    },
                    team: "east-1".parse().unwrap(),
                    method: policy::Distribution::WeightedPerformance,
                }],
                utc_offset_minutes: 480,
                ..policy::PolicyDocument::default()
            },
            note: "Q4 review".into(),
        })
        .into(),
    ]
}

fn meta() -> v1::CommandMeta {
    v1::CommandMeta {
        command_id: id().to_string(),
        actor: "service:call-centre".into(),
        correlation_id: Some(id().to_string()),
        causation_id: None,
        issued_at: Some("2026-11-25T09:30:00Z".into()),
    }
}

#[test]
fn every_command_round_trips_in_both_encodings() {
    let samples = samples();
    assert_eq!(
        samples.len(),
        COMMAND_NAMES.len(),
        "a sample for every command"
    );
    for command in samples {
        for format in [Format::Protobuf, Format::Json] {
            let meta = meta();
            let bytes = encode(&meta, &command, format).unwrap();
            let decoded = decode(command.name(), &bytes, format)
                .unwrap_or_else(|e| panic!("{} {format:?}: {e}", command.name()));
            assert_eq!(decoded.command, command, "{} {format:?}", command.name());
            assert_eq!(decoded.meta, meta);
        }
    }
}

#[test]
fn bad_payloads_say_what_is_wrong() {
    let err = |name: &str, body: &str| decode(name, body.as_bytes(), Format::Json).unwrap_err();
    assert_eq!(
        err("teleport_customer", "{}"),
        WireError::UnknownCommand("teleport_customer".into())
    );
    let meta =
        r#""meta": {"command_id": "0193a6f0-0000-7000-8000-000000000001", "actor": "person:a"}"#;
    let e = err(
        "assign_owner",
        &format!(
            r#"{{{meta}, "customer_id": "x", "manager_id": "y", "reason": "r", "colour": "red"}}"#
        ),
    );
    assert!(e.to_string().contains("colour"), "{e}");
    let e = err(
        "assign_owner",
        r#"{"customer_id": "0193a6f0-0000-7000-8000-000000000001", "manager_id": "0193a6f0-0000-7000-8000-000000000001", "reason": "r"}"#,
    );
    assert!(e.to_string().contains("meta is required"), "{e}");
    let e = err(
        "assign_owner",
        &format!(
            r#"{{{meta}, "customer_id": "not-a-uuid", "manager_id": "0193a6f0-0000-7000-8000-000000000001", "reason": "r"}}"#
        ),
    );
    assert!(
        matches!(&e, WireError::Invalid { field, .. } if field == "customer_id"),
        "{e}"
    );
    let e = err(
        "record_contact",
        &format!(
            r#"{{{meta}, "customer_id": "0193a6f0-0000-7000-8000-000000000001", "contact_id": "0193a6f0-0000-7000-8000-000000000001", "manager_id": "0193a6f0-0000-7000-8000-000000000001", "channel": "pigeon", "direction": "inbound", "outcome": "reached"}}"#
        ),
    );
    assert!(e.to_string().contains("pigeon"), "{e}");
    assert!(matches!(
        decode("assign_owner", b"\xff\xff\xff", Format::Protobuf),
        Err(WireError::Malformed(_))
    ));
    assert!(matches!(
        decode("assign_owner", b"{", Format::Json),
        Err(WireError::Malformed(_))
    ));
}

/// A register_manager payload in JSON with one field replaced.
fn manager_with(field: &str, value: serde_json::Value) -> Vec<u8> {
    let mut v = serde_json::json!({
        "meta": {"command_id": "0193a6f0-0000-7000-8000-000000000001", "actor": "person:a"},
        "manager_id": "0193a6f0-0000-7000-8000-0000000000aa", "name": "Li Wei",
        "role": "manager", "team": "east-1", "region": "east", "branch": "sh-01",
        "holding_limit": 200
    });
    match field.split_once('.') {
        Some((outer, inner)) => v[outer][inner] = value,
        None => v[field] = value,
    }
    serde_json::to_vec(&v).unwrap()
}

fn invalid_field(e: WireError) -> String {
    match e {
        WireError::Invalid { field, .. } => field,
        other => panic!("expected an invalid field, got {other:?}"),
    }
}

#[test]
fn text_the_store_cannot_hold_or_a_terminal_would_act_on_is_refused_naming_the_field() {
    for (field, text) in [
        ("team", "ab\\u0000c"),
        ("name", "Li\\u0000Wei"),
        ("region", "east\\u001b[2J"),
        ("branch", "sh\\u202e10"),
        ("name", "Li\\nERROR forged"),
        ("meta.actor", "person:\\u001b[2Jok"),
        (
            "meta.command_id",
            "0193a6f0-0000-7000-8000-00000000000\\u0000",
        ),
    ] {
        let value: serde_json::Value = serde_json::from_str(&format!("\"{text}\"")).unwrap();
        let json = manager_with(field, value);
        let e = decode("register_manager", &json, Format::Json).unwrap_err();
        assert_eq!(invalid_field(e), field, "{text:?} in {field}");
        // The same message as protobuf is refused the same way.
        let msg: v1::RegisterManager = serde_json::from_slice(&json).unwrap();
        let e = decode(
            "register_manager",
            &prost::Message::encode_to_vec(&msg),
            Format::Protobuf,
        )
        .unwrap_err();
        assert_eq!(invalid_field(e), field, "{text:?} in {field} (protobuf)");
    }
    // Free text may span lines; nothing else may.
    let meta =
        r#""meta": {"command_id": "0193a6f0-0000-7000-8000-000000000001", "actor": "person:a"}"#;
    let body = format!(
        r#"{{{meta}, "customer_id": "0193a6f0-0000-7000-8000-000000000001", "reason": "line one\nline two\twith a tab"}}"#
    );
    decode("release_to_pool", body.as_bytes(), Format::Json).unwrap();
    let body = format!(
        r#"{{{meta}, "customer_id": "0193a6f0-0000-7000-8000-000000000001", "reason": "stop\u0007"}}"#
    );
    let e = decode("release_to_pool", body.as_bytes(), Format::Json).unwrap_err();
    assert_eq!(invalid_field(e), "reason");
}

#[test]
fn a_wrong_value_is_invalid_and_a_wrong_shape_malformed() {
    // Over-long team, unknown enum value: the message is right, a value is not (422).
    let e = decode(
        "register_manager",
        &manager_with("team", "t".repeat(65).into()),
        Format::Json,
    )
    .unwrap_err();
    assert_eq!(invalid_field(e), "team");
    let e = decode(
        "register_manager",
        &manager_with("role", "overlord".into()),
        Format::Json,
    )
    .unwrap_err();
    assert_eq!(invalid_field(e.clone()), "role");
    assert!(e.to_string().contains("overlord"), "{e}");
    // A number where a string belongs: not this command's message (400).
    let e = decode(
        "register_manager",
        &manager_with("team", 7.into()),
        Format::Json,
    )
    .unwrap_err();
    assert!(matches!(e, WireError::Malformed(_)), "{e:?}");
}

#[test]
fn a_misspelt_policy_field_is_named_with_its_path_inside_the_document() {
    let meta =
        r#""meta": {"command_id": "0193a6f0-0000-7000-8000-000000000001", "actor": "person:a"}"#;
    let body = serde_json::json!({
        "document_json": r#"{"holding": {"team_limitz": {"east-1": 3}}}"#,
        "note": "typo",
    });
    let body = format!("{{{meta}, {}", &body.to_string()[1..]);
    let e = decode("publish_policy", body.as_bytes(), Format::Json).unwrap_err();
    let text = e.to_string();
    assert_eq!(invalid_field(e), "document_json");
    assert!(text.contains("holding.team_limitz"), "{text}");
    // A control character inside the document's own strings is caught too.
    let body = serde_json::json!({
        "document_json": r#"{"rules": [{"name": "r\u001b[2J", "team": "east-1"}]}"#,
        "note": "escape",
    });
    let body = format!("{{{meta}, {}", &body.to_string()[1..]);
    let e = decode("publish_policy", body.as_bytes(), Format::Json).unwrap_err();
    assert!(e.to_string().contains("rules[0].name"), "{e}");
}

#[test]
fn the_openapi_document_lists_every_command() {
    let doc: serde_json::Value = serde_json::from_str(crm_contracts::openapi::document()).unwrap();
    for name in COMMAND_NAMES {
        assert!(
            doc["paths"].get(format!("/v1/commands/{name}")).is_some(),
            "{name} missing from OpenAPI"
        );
    }
    assert_eq!(doc["paths"].as_object().unwrap().len(), COMMAND_NAMES.len());
}

#[test]
fn the_command_id_of_a_payload_that_is_not_a_command_is_still_read() {
    use crm_contracts::wire::claimed_command_id;
    use prost::Message as _;
    let id = "0193a6f0-0000-7000-8000-000000000001";
    // JSON: an unknown field, a wrong type; meta by its proto3 JSON name too.
    for body in [
        format!(r#"{{"meta": {{"command_id": "{id}"}}, "colour": "red"}}"#),
        format!(r#"{{"meta": {{"commandId": "{id}", "actor": 7}}, "manager_id": []}}"#),
    ] {
        let got = claimed_command_id(body.as_bytes(), Format::Json);
        assert_eq!(got.as_deref(), Some(id), "{body}");
    }
    for body in ["{", r#"{"meta": []}"#, r#"{"meta": {"command_id": ""}}"#] {
        assert_eq!(claimed_command_id(body.as_bytes(), Format::Json), None);
    }
    // Protobuf: meta (field 1), then a field 2 of the wrong wire type for any command.
    let mut bytes = v1::RegisterManager {
        meta: Some(v1::CommandMeta {
            command_id: id.into(),
            ..meta()
        }),
        ..Default::default()
    }
    .encode_to_vec();
    bytes.extend([2 << 3, 0x05]);
    assert!(matches!(
        decode("register_manager", &bytes, Format::Protobuf),
        Err(WireError::Malformed(_))
    ));
    assert_eq!(
        claimed_command_id(&bytes, Format::Protobuf).as_deref(),
        Some(id)
    );
    assert_eq!(claimed_command_id(&[0xff; 8], Format::Protobuf), None);
}

/// A command's proto message descriptor (`register_customer` → `crm.v1.RegisterCustomer`).
fn descriptor(name: &str) -> prost_reflect::MessageDescriptor {
    let pascal: String = name
        .split('_')
        .map(|w| w[..1].to_uppercase() + &w[1..])
        .collect();
    crm_contracts::descriptors()
        .get_message_by_name(&format!("crm.v1.{pascal}"))
        .unwrap_or_else(|| panic!("no message for {name}"))
}

/// What a standard proto3 JSON printer writes (Python's `json_format`, Go's `protojson`,
/// Java's `JsonFormat`): lowerCamelCase names, 64-bit integers as strings, fields at their
/// defaults left out. prost-reflect's printer is one.
fn canonical_json(name: &str, protobuf: &[u8]) -> Vec<u8> {
    let m = prost_reflect::DynamicMessage::decode(descriptor(name), protobuf).unwrap();
    let mut out = Vec::new();
    let mut s = serde_json::Serializer::new(&mut out);
    m.serialize_with_options(&mut s, &prost_reflect::SerializeOptions::new())
        .unwrap();
    out
}

#[test]
fn standard_proto3_json_is_read_for_every_command() {
    for command in samples() {
        let name = command.name();
        let meta = meta();
        let json = canonical_json(name, &encode(&meta, &command, Format::Protobuf).unwrap());
        let text = String::from_utf8(json.clone()).unwrap();
        assert!(text.contains("\"commandId\""), "{text}");
        let decoded =
            decode(name, &json, Format::Json).unwrap_or_else(|e| panic!("{name}: {e}\n{text}"));
        assert_eq!(decoded.command, command, "{name}");
        assert_eq!(decoded.meta, meta, "{name}");
    }
}

#[test]
fn the_three_ways_a_standard_client_was_refused_are_read() {
    let body = serde_json::json!({
        "meta": {"commandId": "0193a6f0-0000-7000-8000-000000000001", "actor": "service:crm-py"},
        "customerId": "0193a6f0-0000-7000-8000-0000000000c1",
        "customerType": "individual",
        "displayName": "Wang Fang",
        "phone": "+86 139 1234 5678",
        "region": "east",
        "firstTouchChannel": "web",
        // `sms` at its default (false) left out, as printers do.
        "consents": {"email": true},
        // int64 as a string, as proto3 JSON writes it.
        "aumMinor": "1234500"
    });
    let d = decode(
        "register_customer",
        &serde_json::to_vec(&body).unwrap(),
        Format::Json,
    )
    .unwrap();
    let Command::Customer(CustomerCommand::Register(r)) = d.command else {
        panic!("{:?}", d.command)
    };
    assert_eq!(r.aum_minor, Some(1_234_500));
    assert_eq!(
        r.consents,
        Some(Consents {
            sms: false,
            email: true,
            phone: false
        })
    );
    assert_eq!(d.meta.command_id, "0193a6f0-0000-7000-8000-000000000001");
}

#[test]
fn proto3_json_refusals_name_the_field() {
    let err = |body: serde_json::Value| {
        decode(
            "register_manager",
            &serde_json::to_vec(&body).unwrap(),
            Format::Json,
        )
        .unwrap_err()
        .to_string()
    };
    let meta = serde_json::json!({"commandId": "0193a6f0-0000-7000-8000-000000000001", "actor": "person:a"});
    let e = err(serde_json::json!({"meta": meta, "managerId": "x", "colour": "red"}));
    assert!(e.contains("colour"), "{e}");
    let e = err(serde_json::json!({"meta": meta, "holdingLimit": "lots"}));
    assert!(e.contains("holdingLimit"), "{e}");
    let e = err(serde_json::json!({"meta": {"commandId": 7}}));
    assert!(e.contains("meta.commandId"), "{e}");
    // Anything after the message is refused.
    let e = decode(
        "register_manager",
        br#"{"meta": {"command_id": "a"}} trailing"#,
        Format::Json,
    )
    .unwrap_err();
    assert!(matches!(e, WireError::Malformed(_)), "{e}");
}

#[test]
fn every_reply_is_standard_proto3_json() {
    let reply = v1::CommandReply {
        command_id: id().to_string(),
        accepted: true,
        duplicate: false,
        events: vec![v1::AppendedEvent {
            event_id: id().to_string(),
            event_type: "OwnerAssigned".into(),
            stream_id: format!("customer-{}", id()),
            stream_version: 4,
        }],
        problem: None,
    };
    let refusal = v1::CommandReply {
        command_id: id().to_string(),
        accepted: false,
        problem: Some(v1::Problem {
            code: "ownership.holding_limit_reached".into(),
            title: "Holding limit reached".into(),
            detail: "…".into(),
            status: 422,
        }),
        ..Default::default()
    };
    for reply in [reply, refusal] {
        standard_reader_takes(reply);
    }
}

fn standard_reader_takes(reply: v1::CommandReply) {
    use crm_contracts::wire::{decode_reply, encode_reply};
    let json = encode_reply(&reply, Format::Json);
    // A strict standard reader (unknown fields refused) takes what the platform writes.
    let desc = crm_contracts::descriptors()
        .get_message_by_name("crm.v1.CommandReply")
        .unwrap();
    let mut de = serde_json::Deserializer::from_slice(&json);
    let read = prost_reflect::DynamicMessage::deserialize(desc, &mut de).unwrap();
    assert_eq!(read.transcode_to::<v1::CommandReply>().unwrap(), reply);
    assert_eq!(decode_reply(&json, Format::Json).unwrap(), reply);
}

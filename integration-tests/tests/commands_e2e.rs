//! End to end, as users run it: the command service and the relay as processes; commands
//! over NATS request/reply (protobuf and JSON) and HTTP; refusals in both shapes; the
//! resulting events read back from the JetStream stream.

use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use chrono::Utc;
use crm_contracts::v1;
use crm_contracts::wire::{decode_reply, encode, Format};
use crm_domain::customer::*;
use crm_domain::manager::{ManagerCommand, RegisterManager};
use crm_domain::*;
use crm_eventstore::postgres::PgEventStore;
use crm_eventstore::Log;
use crm_integration_tests::{Platform, Service};
use serde_json::json;
use uuid::Uuid;

fn meta(correlation: Uuid) -> v1::CommandMeta {
    v1::CommandMeta {
        command_id: Uuid::now_v7().to_string(),
        actor: "service:branch-system".into(),
        correlation_id: Some(correlation.to_string()),
        causation_id: None,
        issued_at: Some(Utc::now().to_rfc3339()),
    }
}

async fn nats_command(
    client: &async_nats::Client,
    prefix: &str,
    meta: &v1::CommandMeta,
    command: &Command,
    format: Format,
) -> (Option<HeaderMap>, v1::CommandReply) {
    let body = encode(meta, command, format).unwrap();
    let mut headers = HeaderMap::new();
    if format == Format::Json {
        headers.insert("Content-Type", "application/json");
    }
    let subject = format!("{prefix}.cmd.{}", command.name());
    let msg = client
        .request_with_headers(subject, headers, body.into())
        .await
        .unwrap();
    let reply = decode_reply(&msg.payload, format).unwrap();
    (msg.headers, reply)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_over_nats_and_http_end_up_in_the_stream() {
    crm_integration_tests::binary("crm-command-service");
    let platform = Platform::new().await;
    let prefix = platform.stream.spec.subjects.prefix().to_string();
    let mut service = Service::start(
        "crm-command-service",
        &["--http-addr", "127.0.0.1:0"],
        &platform.env(),
    );
    let mut relay = Service::start("crm-relay", &[], &platform.env());
    let ready = service.wait_ready().await;
    relay.wait_ready().await;
    let base = format!("http://{}", ready["http"].as_str().unwrap());
    let http = reqwest::Client::new();
    let nats = crm_bus::testing::connect().await;
    let store = PgEventStore::connect(&platform.db.url, 2).await.unwrap();
    let correlation = Uuid::now_v7();

    // The service is discoverable through the NATS service API.
    let info = nats
        .request(format!("$SRV.INFO.{prefix}-commands"), "".into())
        .await
        .unwrap();
    let info: serde_json::Value = serde_json::from_slice(&info.payload).unwrap();
    let subjects: Vec<&str> = info["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["subject"].as_str().unwrap())
        .collect();
    assert_eq!(subjects.len(), crm_contracts::wire::COMMAND_NAMES.len());
    assert!(
        subjects.contains(&format!("{prefix}.cmd.assign_owner").as_str()),
        "{subjects:?}"
    );

    // HTTP: a manager.
    let manager = ManagerId::new(Uuid::now_v7());
    let register_manager: Command = ManagerCommand::Register(RegisterManager {
        manager_id: manager,
        name: "Li Wei".into(),
        role: ManagerRole::Manager,
        team: "east-1".parse().unwrap(),
        region: "east".parse().unwrap(),
        branch: "sh-01".parse().unwrap(),
        holding_limit: 50,
    })
    .into();
    let body = encode(&meta(correlation), &register_manager, Format::Json).unwrap();
    let r = http
        .post(format!("{base}/v1/commands/register_manager"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let reply: serde_json::Value = r.json().await.unwrap();
    assert_eq!(reply["accepted"], true);
    assert_eq!(reply["events"][0]["event_type"], "ManagerRegistered");

    // NATS protobuf: a customer.
    let customer = CustomerId::new(Uuid::now_v7());
    let register: Command = CustomerCommand::Register(RegisterCustomer {
        customer_id: customer,
        customer_type: CustomerType::Individual,
        display_name: "王芳".into(),
        phone: Some("139 1234 5678".into()),
        email: None,
        registration_number: None,
        region: "east".parse().unwrap(),
        branch: None,
        first_touch_channel: FirstTouchChannel::App,
        industry: None,
        product_interest: Some("wealth".into()),
        consents: None,
        stage: None,
        value_tier: None,
        aum_minor: None,
    })
    .into();
    let (headers, reply) = nats_command(
        &nats,
        &prefix,
        &meta(correlation),
        &register,
        Format::Protobuf,
    )
    .await;
    assert!(reply.accepted, "{reply:?}");
    assert!(headers.unwrap().get("Crm-Error-Code").is_none());

    // NATS JSON: assign; then the same command id again is a duplicate with the same answer.
    let assign: Command = CustomerCommand::AssignOwner(AssignOwner {
        customer_id: customer,
        manager_id: manager,
        reason: "app sign-up".into(),
    })
    .into();
    let assign_meta = meta(correlation);
    let (_, first) = nats_command(&nats, &prefix, &assign_meta, &assign, Format::Json).await;
    assert!(first.accepted && !first.duplicate, "{first:?}");
    let (_, again) = nats_command(&nats, &prefix, &assign_meta, &assign, Format::Json).await;
    assert!(again.accepted && again.duplicate);
    assert_eq!(again.events[0].event_id, first.events[0].event_id);

    // HTTP: a contact with the JSON form written by hand, idempotency key in a header.
    let contact_id = Uuid::now_v7();
    let key = Uuid::now_v7().to_string();
    let r = http
        .post(format!("{base}/v1/commands/record_contact"))
        .header("idempotency-key", &key)
        .json(&json!({
            "meta": {"command_id": "", "actor": "person:li.wei", "correlation_id": correlation.to_string()},
            "customer_id": customer.to_string(), "contact_id": contact_id.to_string(), "manager_id": manager.to_string(),
            "channel": "phone", "direction": "outbound", "outcome": "reached", "summary": "welcome call"
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());

    let (count_before_refusals, _) = store.head().await.unwrap();

    // Refusals: typed, explained, and nothing stored.
    let sms: Command = CustomerCommand::RecordContact(RecordContact {
        customer_id: customer,
        contact_id: ContactId::new(Uuid::now_v7()),
        manager_id: manager,
        channel: ContactChannel::Sms,
        direction: Direction::Outbound,
        outcome: ContactOutcome::Reached,
        summary: None,
        next_follow_up_at: None,
        occurred_at: None,
    })
    .into();
    let (headers, reply) =
        nats_command(&nats, &prefix, &meta(correlation), &sms, Format::Protobuf).await;
    let headers = headers.unwrap();
    assert_eq!(
        headers.get("Crm-Error-Code").unwrap().as_str(),
        "contact.sms_consent_missing"
    );
    assert_eq!(
        headers.get("Nats-Service-Error-Code").unwrap().as_str(),
        "422"
    );
    assert!(!reply.accepted);
    assert!(reply.problem.unwrap().detail.contains("consent"));

    let unknown = Uuid::now_v7();
    let r = http
        .post(format!("{base}/v1/commands/transfer_owner"))
        .json(&json!({"meta": {"command_id": Uuid::now_v7().to_string(), "actor": "person:li.wei"},
                      "customer_id": customer.to_string(), "to_manager_id": unknown.to_string(), "reason": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let problem: serde_json::Value = r.json().await.unwrap();
    assert_eq!(problem["code"], "manager.unknown");
    assert_eq!(problem["type"], "urn:crm:problem:manager.unknown");
    assert!(problem["detail"]
        .as_str()
        .unwrap()
        .contains(&unknown.to_string()));

    let big = "x".repeat(70 * 1024);
    let r = http
        .post(format!("{base}/v1/commands/log_complaint"))
        .header("content-type", "application/json")
        .body(big.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let msg = nats
        .request(format!("{prefix}.cmd.log_complaint"), big.into())
        .await
        .unwrap();
    assert_eq!(
        msg.headers.unwrap().get("Crm-Error-Code").unwrap().as_str(),
        "request.too_large"
    );

    let r = http
        .post(format!("{base}/v1/commands/assign_owner"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = http
        .post(format!("{base}/v1/commands/assign_owner"))
        .header("content-type", "text/plain")
        .body("hi")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    let r = http
        .post(format!("{base}/v1/commands/teleport"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    tokio::time::sleep(Duration::from_millis(300)).await;
    let (count_after_refusals, _) = store.head().await.unwrap();
    assert_eq!(
        count_after_refusals, count_before_refusals,
        "refusals stored nothing"
    );

    // Everything stored is in the stream, in order, with the correlation id as a header.
    let deadline = Instant::now() + Duration::from_secs(30);
    let messages = loop {
        let m = platform.stream.messages().await;
        if m.len() as u64 >= count_after_refusals || Instant::now() > deadline {
            break m;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(messages.len() as u64, count_after_refusals);
    let customer_types: Vec<String> = messages
        .iter()
        .filter(|m| m.subject.contains(&customer.to_string()))
        .map(|m| {
            m.headers
                .get("Crm-Event-Type")
                .unwrap()
                .as_str()
                .to_string()
        })
        .collect();
    assert_eq!(
        customer_types,
        [
            "CustomerRegistered",
            "OwnerAssigned",
            "ContactRecorded",
            "LifecycleStageChanged"
        ]
    );
    for m in &messages {
        assert_eq!(
            m.headers.get("Crm-Correlation-Id").unwrap().as_str(),
            correlation.to_string()
        );
    }
    every_message_is_the_contracts(&messages);
    let metrics = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("crm_commands_total"), "{metrics}");
    assert!(metrics.contains("code=\"contact.sms_consent_missing\""));
    let openapi: serde_json::Value = http
        .get(format!("{base}/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(openapi["openapi"], "3.1.0");
    drop(relay);
    drop(service);
}

/// Each published message as the contract describes it (proto/crm/v1/events.proto, the
/// AsyncAPI document): the body an `EventEnvelope` whose payload is its event's message,
/// its headers the catalogue's, the subject its channel's address.
fn every_message_is_the_contracts(messages: &[async_nats::jetstream::message::StreamMessage]) {
    let doc = crm_contracts::asyncapi::asyncapi();
    let listed = &doc["components"]["schemas"]["EventHeaders"]["properties"];
    for m in messages {
        crm_contracts::events::read_envelope(&m.payload)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&m.payload)));
        // The platform's own headers are the catalogue's (the server adds its `Nats-…`
        // ones when a message is read directly), and every required one is there.
        for (name, _) in m.headers.iter() {
            let name: &str = name.as_ref();
            assert!(
                !name.starts_with("Crm-") || listed[name].is_object(),
                "header {name} is not in the catalogue"
            );
        }
        let required = doc["components"]["schemas"]["EventHeaders"]["required"]
            .as_array()
            .unwrap();
        for name in required {
            let name = name.as_str().unwrap();
            assert!(m.headers.get(name).is_some(), "no header {name}");
        }
        let tokens: Vec<&str> = m.subject.split('.').collect();
        let event_type = m.headers.get("Crm-Event-Type").unwrap();
        assert_eq!(tokens.len(), 6, "{}", m.subject);
        assert_eq!(tokens[1], "events");
        assert!(doc["channels"][tokens[2]].is_object(), "{}", m.subject);
        assert_eq!(tokens[5], event_type.as_str());
    }
}

//! Erasure end to end, as users run it: a customer with canary personal data (name,
//! phone, e-mail, contact summary, complaint text) goes in through the command service;
//! the relay publishes; the read models are built; the query service shows the data to
//! its reader. Then the customer's data is erased, the read models rebuilt, the log
//! sealed and exported, and the database (event store and read models), the JetStream
//! stream, the export and the services' logs are scanned: 0 plaintext occurrences. The
//! history, the KPIs and the hash chains are unchanged and verify.

use std::process::Command as Process;
use std::time::{Duration, Instant};

use chrono::Utc;
use crm_contracts::v1;
use crm_contracts::wire::{encode, Format};
use crm_domain::customer::*;
use crm_domain::*;
use crm_eventstore::postgres::PgEventStore;
use crm_eventstore::testing::{TempPath, TestDatabase};
use crm_eventstore::{Log, SubjectKey, SubjectKeys};
use crm_integration_tests::{Platform, Service};
use serde_json::Value;
use uuid::Uuid;

fn meta() -> v1::CommandMeta {
    v1::CommandMeta {
        command_id: Uuid::now_v7().to_string(),
        actor: "person:li.wei".into(),
        correlation_id: None,
        causation_id: None,
        issued_at: Some(Utc::now().to_rfc3339()),
    }
}

async fn send(http: &reqwest::Client, base: &str, command: Command) -> Value {
    let body = encode(&meta(), &command, Format::Json).unwrap();
    let r = http
        .post(format!("{base}/v1/commands/{}", command.name()))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let reply: Value = r.json().await.unwrap();
    assert_eq!(status, 200, "{}: {reply}", command.name());
    reply
}

async fn get(http: &reqwest::Client, url: String) -> Value {
    let r = http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200, "{url}");
    r.json().await.unwrap()
}

fn crm(args: &[&str], env: &[(&str, &str)]) -> String {
    let out = Process::new(crm_integration_tests::binary("crm"))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("run crm");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "crm {args:?}:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Wait until the stream holds every stored event.
async fn published(platform: &Platform, store: &PgEventStore) -> Vec<Vec<u8>> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (stored, _) = store.head().await.unwrap();
        let messages = platform.stream.messages().await;
        if messages.len() as u64 >= stored && stored > 0 {
            return messages
                .iter()
                .map(|m| {
                    let mut raw = m.payload.to_vec();
                    raw.extend_from_slice(format!("{:?}", m.headers).as_bytes());
                    raw
                })
                .collect();
        }
        assert!(Instant::now() < deadline, "the relay did not publish");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every row of every table of the database's public schema, as text.
async fn dump(url: &str) -> String {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables \
         WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY 1",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert!(tables.len() > 5, "{tables:?}");
    let mut out = String::new();
    for t in tables {
        let rows: Option<String> = sqlx::query_scalar(&format!(
            "SELECT string_agg(x::text, E'\\n') FROM \"{t}\" AS x"
        ))
        .fetch_one(&mut conn)
        .await
        .unwrap();
        out.push_str(&rows.unwrap_or_default());
        out.push('\n');
    }
    out
}

fn occurrences(haystack: &[u8], canaries: &[String]) -> usize {
    canaries
        .iter()
        .map(|c| {
            haystack
                .windows(c.len())
                .filter(|w| *w == c.as_bytes())
                .count()
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erased_personal_data_is_unreadable_everywhere() {
    let platform = Platform::new().await;
    let read_db = TestDatabase::create().await;
    let mut env = platform.env();
    env.push(("CRM_CHECKPOINT_EVERY", "1".into()));
    // Every level: no personal field in any log line at any level.
    let mut service_env = env.clone();
    service_env.push(("RUST_LOG", "debug".into()));
    let mut service = Service::start(
        "crm-command-service",
        &["--http-addr", "127.0.0.1:0"],
        &service_env,
    );
    let mut relay = Service::start("crm-relay", &[], &env);
    let base = service.http_base().await;
    relay.wait_ready().await;
    let http = reqwest::Client::new();
    let store = PgEventStore::connect(&platform.db.url, 2).await.unwrap();

    // The canaries: text that must not survive the erasure anywhere.
    let tag = &Uuid::new_v4().simple().to_string()[..10];
    let digits: String = tag
        .bytes()
        .map(|b| char::from(b'0' + b % 10))
        .take(8)
        .collect();
    let name = format!("Canary Wang {tag}");
    let phone = format!("+86 139 {} {}", &digits[..4], &digits[4..]);
    let email = format!("canary.{tag}@example.cn");
    let summary = format!("canary-contact-{tag}");
    let description = format!("canary-complaint-{tag}");
    let canaries = vec![
        name.clone(),
        format!("139{digits}"),
        email.clone(),
        summary.clone(),
        description.clone(),
    ];

    let manager = ManagerId::new(Uuid::now_v7());
    send(
        &http,
        &base,
        crm_integration_tests::register_manager(manager, "Li Wei", "east-1"),
    )
    .await;
    let customer = CustomerId::new(Uuid::now_v7());
    let c = |cmd: CustomerCommand| -> Command { cmd.into() };
    send(
        &http,
        &base,
        crm_integration_tests::register_customer(
            customer,
            &name,
            Some(phone.clone()),
            Some(email.clone()),
        ),
    )
    .await;
    send(
        &http,
        &base,
        c(CustomerCommand::AssignOwner(AssignOwner {
            customer_id: customer,
            manager_id: manager,
            reason: "walk-in".into(),
        })),
    )
    .await;
    send(
        &http,
        &base,
        c(CustomerCommand::RecordContact(RecordContact {
            customer_id: customer,
            contact_id: ContactId::new(Uuid::now_v7()),
            manager_id: manager,
            channel: ContactChannel::Phone,
            direction: Direction::Outbound,
            outcome: ContactOutcome::Reached,
            summary: Some(summary.clone()),
            next_follow_up_at: None,
            occurred_at: None,
        })),
    )
    .await;
    send(
        &http,
        &base,
        c(CustomerCommand::LogComplaint(LogComplaint {
            customer_id: customer,
            complaint_id: ComplaintId::new(Uuid::now_v7()),
            severity: Severity::Normal,
            category: "fees".into(),
            description: description.clone(),
            channel: ContactChannel::Phone,
        })),
    )
    .await;
    // Refused commands carrying the canaries: a duplicate phone, a phone and an e-mail
    // that do not parse. Their refusals are logged; the canaries must not be.
    let refused = [
        crm_integration_tests::register_customer(
            CustomerId::new(Uuid::now_v7()),
            &name,
            Some(phone.clone()),
            None,
        ),
        crm_integration_tests::register_customer(
            CustomerId::new(Uuid::now_v7()),
            &name,
            Some(format!("+86 139{digits} ext. 7")),
            None,
        ),
        crm_integration_tests::register_customer(
            CustomerId::new(Uuid::now_v7()),
            &name,
            None,
            Some(format!("{email} (home)")),
        ),
    ];
    for command in refused {
        let body = encode(&meta(), &command, Format::Json).unwrap();
        let r = http
            .post(format!("{base}/v1/commands/{}", command.name()))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_client_error(), "{}", r.status());
    }
    published(&platform, &store).await;

    // Read models built from the store; the query service shows the data to its reader.
    let urls = [
        ("CRM_STORE_URL", platform.db.url.as_str()),
        ("CRM_READ_URL", read_db.url.as_str()),
    ];
    let rebuild_all = || {
        for p in ["ownership", "timeline", "analytics"] {
            crm(&["projections", "rebuild", p], &urls);
        }
    };
    rebuild_all();
    let mut query = Service::start(
        "crm-query",
        &["--http-addr", "127.0.0.1:0"],
        &[
            ("CRM_READ_URL", read_db.url.clone()),
            ("CRM_STORE_URL", platform.db.url.clone()),
        ],
    );
    let qbase = query.http_base().await;
    let shown = get(&http, format!("{qbase}/v1/customers/{customer}")).await;
    assert_eq!(shown["display_name"], name.as_str(), "readable before");
    let timeline_before = get(&http, format!("{qbase}/v1/customers/{customer}/timeline")).await;
    assert!(
        timeline_before.to_string().contains(&summary),
        "{timeline_before}"
    );
    // Decrypted or not, every payload is written as the timeline writes it: the event's
    // fields in declared order.
    for item in timeline_before["items"].as_array().unwrap() {
        let (t, text) = (
            item["event_type"].as_str().unwrap(),
            item["payload"].as_str().unwrap(),
        );
        let event = CustomerEvent::decode(t, CustomerEvent::SCHEMA_VERSION, text).unwrap();
        assert_eq!(event.payload_text(), text, "{t}");
    }
    // The scan finds every canary where it is in clear (a positive control): decrypted
    // for the reader by the query service.
    let control = format!("{shown}{timeline_before}");
    for canary in &canaries {
        assert!(
            occurrences(control.as_bytes(), std::slice::from_ref(canary)) > 0,
            "{canary}"
        );
    }
    let kpis_before = get(&http, format!("{qbase}/v1/kpis?level=manager")).await;
    // At rest, before any erasure, the personal data is already ciphertext.
    let at_rest = dump(&platform.db.url).await + &dump(&read_db.url).await;
    assert_eq!(
        occurrences(at_rest.as_bytes(), &canaries),
        0,
        "encrypted at rest"
    );

    // The erasure.
    send(
        &http,
        &base,
        c(CustomerCommand::EraseCustomerData(EraseCustomerData {
            customer_id: customer,
            reason: "erasure request DSR-2026-0042".into(),
        })),
    )
    .await;
    let messages = published(&platform, &store).await;
    assert_eq!(
        store
            .subject_key(&format!("customer-{customer}"))
            .await
            .unwrap(),
        SubjectKey::Erased
    );
    rebuild_all();

    let shown = get(&http, format!("{qbase}/v1/customers/{customer}")).await;
    assert_eq!(shown["display_name"], "[erased]");
    assert_eq!(shown["owner_id"], manager.to_string(), "the history stays");
    let timeline = get(&http, format!("{qbase}/v1/customers/{customer}/timeline")).await;
    let types: Vec<&str> = timeline["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["event_type"].as_str().unwrap())
        .collect();
    let before: Vec<&str> = timeline_before["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(types[0], "PersonalDataErased");
    assert_eq!(
        types[1..],
        before[..],
        "every earlier event stays in the history"
    );
    assert!(!timeline.to_string().contains(&summary), "{timeline}");
    let kpis_after = get(&http, format!("{qbase}/v1/kpis?level=manager")).await;
    assert_eq!(kpis_before["items"][0]["contacts"], 1);
    assert_eq!(kpis_after, kpis_before, "KPIs unchanged by the erasure");

    // Sealed, verified, exported.
    let store_env = [("CRM_STORE_URL", platform.db.url.as_str())];
    crm(&["audit", "checkpoint"], &store_env);
    let verified = crm(&["audit", "verify"], &store_env);
    assert!(verified.contains("OK: every hash chain"), "{verified}");
    let export = TempPath::new("crm-erasure-export");
    crm(
        &["audit", "export", "--out", export.0.to_str().unwrap()],
        &store_env,
    );
    let offline = format!("sqlite://{}", export.0.display());
    let verified = crm(&["audit", "verify", "--store", &offline], &[]);
    assert!(verified.contains("OK: every hash chain"), "{verified}");

    // The scan.
    let logs: Vec<u8> = [&service, &relay, &query]
        .iter()
        .flat_map(|s| s.output().into_bytes())
        .collect();
    drop(query);
    drop(relay);
    drop(service);
    let mut found = Vec::new();
    let database = dump(&platform.db.url).await + &dump(&read_db.url).await;
    found.push(("database", occurrences(database.as_bytes(), &canaries)));
    let stream: usize = messages.iter().map(|m| occurrences(m, &canaries)).sum();
    found.push(("stream", stream));
    let mut file = std::fs::read(&export.0).unwrap();
    file.extend(std::fs::read(export.0.with_extension("db-wal")).unwrap_or_default());
    found.push(("export", occurrences(&file, &canaries)));
    found.push(("logs", occurrences(&logs, &canaries)));
    println!(
        "plaintext occurrences of {} canaries after erasure: {found:?}; {} bytes of database, \
         {} stream messages, {} bytes of export, {} bytes of logs scanned",
        canaries.len(),
        database.len(),
        messages.len(),
        file.len(),
        logs.len()
    );
    assert!(database.len() > 1_000 && file.len() > 1_000 && !messages.is_empty());
    assert!(found.iter().all(|(_, n)| *n == 0), "{found:?}");
}

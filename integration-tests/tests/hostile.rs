//! Hostile callers, end to end, over both ingresses of a command service run as a
//! process with authentication on: text the store cannot hold, control characters,
//! wrong types, oversized and malformed bodies, wrong clocks, spoofed identities and bad
//! tokens, sent while valid commands flow. One bad caller must never hurt another:
//! every hostile request is refused with a 4xx, no valid command is refused, nothing
//! answers 5xx, nothing panics, no hostile request appends an event, and no log line can
//! be forged. `hostile_callers_hurt_nobody` prints the figures (`HOSTILE …`) that
//! docs/security.md reports.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{Duration, Utc};
use crm_eventstore::postgres::PgEventStore;
use crm_eventstore::Streams;
use crm_integration_tests::ingress::{token, Answer, Ingress, Request, Via};
use crm_integration_tests::{Platform, Service};
use serde_json::{json, Value};
use uuid::Uuid;

const SECRET: &str = "hostile-suite-secret-of-at-least-32-bytes";
const ISSUER: &str = "crm-hostile-idp";

struct Setup {
    platform: Platform,
    service: Service,
    ingress: Ingress,
    /// A service token that may send every command (the valid traffic's).
    load: String,
    /// A customer registered at the start, for commands on a customer.
    customer: Uuid,
    /// More of them, for the valid traffic's contacts.
    customers: Vec<Uuid>,
    manager: Uuid,
}

fn meta(actor: &str) -> Value {
    json!({"command_id": Uuid::now_v7().to_string(), "actor": actor})
}

fn manager_body(id: Uuid) -> Value {
    json!({"meta": meta("service:load"), "manager_id": id.to_string(), "name": "Li Wei",
           "role": "manager", "team": "east-1", "region": "east", "branch": "sh-01",
           "holding_limit": 200})
}

fn customer_body(id: Uuid, phone: u64) -> Value {
    json!({"meta": meta("service:load"), "customer_id": id.to_string(),
           "customer_type": "individual", "display_name": "Wang Fang",
           "phone": format!("+86139{phone:08}"), "region": "east",
           "first_touch_channel": "branch"})
}

fn contact_body(customer: Uuid, manager: Uuid) -> Value {
    json!({"meta": meta("service:load"), "customer_id": customer.to_string(),
           "contact_id": Uuid::now_v7().to_string(), "manager_id": manager.to_string(),
           "channel": "phone", "direction": "outbound", "outcome": "reached"})
}

/// A command service with NATS and authentication on, a manager and a customer.
async fn setup(log_format: &str) -> Setup {
    let platform = Platform::new().await;
    let mut env = platform.env();
    env.push(("CRM_AUTH_HS256_SECRET", SECRET.into()));
    env.push(("CRM_AUTH_ISSUER", ISSUER.into()));
    env.push(("CRM_INDEX_KEY", "hostile-suite-index-key".into()));
    env.push(("CRM_LOG_FORMAT", log_format.into()));
    let mut service = Service::start("crm-command-service", &["--http-addr", "127.0.0.1:0"], &env);
    let ready = service.wait_ready().await;
    let ingress = Ingress::new(
        format!("http://{}", ready["http"].as_str().unwrap()),
        &crm_bus::testing::nats_url(),
        platform.stream.spec.subjects.prefix(),
    )
    .await;
    let load = token(
        SECRET,
        ISSUER,
        "crm-commands",
        "load",
        json!({"role": "service", "commands": ["*"]}),
    );
    let (manager, customer) = (Uuid::now_v7(), Uuid::now_v7());
    for (name, body) in [
        ("register_manager", manager_body(manager)),
        ("register_customer", customer_body(customer, 99_999_999)),
    ] {
        let a = ingress.json(Via::Http, name, &body, Some(&load)).await;
        assert_eq!(a.status, 200, "{name}: {a:?}");
    }
    let customers: Vec<Uuid> = (0..64).map(|_| Uuid::now_v7()).collect();
    for (i, c) in customers.iter().enumerate() {
        let body = customer_body(*c, 90_000_000 + i as u64);
        let a = ingress
            .json(Via::Http, "register_customer", &body, Some(&load))
            .await;
        assert_eq!(a.status, 200, "{a:?}");
    }
    Setup {
        platform,
        service,
        ingress,
        load,
        customer,
        customers,
        manager,
    }
}

/// One kind of hostile request: what it is, what it sends, the status it must get.
struct Hostile {
    label: &'static str,
    command: &'static str,
    body: Vec<u8>,
    content_type: Option<&'static str>,
    token: Option<String>,
    expect: u16,
}

fn with(mut body: Value, path: &str, value: Value) -> Value {
    match path.split_once('.') {
        Some((outer, inner)) => body[outer][inner] = value,
        None => body[path] = value,
    }
    body
}

fn bytes(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap()
}

/// Every kind of hostile request, fresh command ids each time.
fn hostile_kinds(s: &Setup) -> Vec<Hostile> {
    let m = || manager_body(Uuid::now_v7());
    let j = Some("application/json");
    let load = Some(s.load.clone());
    let tok = |sub: &str, extra: Value| Some(token(SECRET, ISSUER, "crm-commands", sub, extra));
    let kind = |label, command, body: Value, expect| Hostile {
        label,
        command,
        body: bytes(&body),
        content_type: j,
        token: load.clone(),
        expect,
    };
    let mut deep = json!(1);
    for _ in 0..300 {
        deep = json!([deep]);
    }
    let release = json!({"meta": meta("service:load"), "customer_id": s.customer.to_string(),
                         "reason": "moved\u{0}on"});
    let mut backdated = contact_body(s.customer, s.manager);
    backdated["occurred_at"] = json!((Utc::now() - Duration::days(8)).to_rfc3339());
    let forged_signature = crm_auth::sign_hs256(
        b"not-the-secret-not-the-secret-not-the-secret",
        &json!({"iss": ISSUER, "aud": "crm-commands", "sub": "x", "role": "admin",
                "exp": Utc::now().timestamp() + 600}),
    );
    let expired = crm_auth::sign_hs256(
        SECRET.as_bytes(),
        &json!({"iss": ISSUER, "aud": "crm-commands", "sub": "x", "role": "admin",
                "exp": Utc::now().timestamp() - 600}),
    );
    let alg_none = {
        use base64::Engine as _;
        let enc = |v: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        format!(
            "{}.{}.",
            enc(json!({"alg": "none", "typ": "JWT"})),
            enc(
                json!({"iss": ISSUER, "aud": "crm-commands", "sub": "x", "role": "admin",
                       "exp": Utc::now().timestamp() + 600})
            )
        )
    };
    vec![
        kind(
            "NUL in team",
            "register_manager",
            with(m(), "team", json!("ab\u{0}c")),
            422,
        ),
        kind(
            "NUL in name",
            "register_manager",
            with(m(), "name", json!("Li\u{0}Wei")),
            422,
        ),
        kind(
            "escape sequence in region",
            "register_manager",
            with(m(), "region", json!("east\u{1b}[2J")),
            422,
        ),
        kind(
            "forged log line in branch",
            "register_manager",
            with(
                m(),
                "branch",
                json!("sh\n2026-12-06T00:00:00Z ERROR forged"),
            ),
            422,
        ),
        kind(
            "bidi override in team",
            "register_manager",
            with(m(), "team", json!("east\u{202e}1")),
            422,
        ),
        kind(
            "control characters in a key",
            "register_manager",
            with(m(), "\n2026 ERROR forged\u{1b}[2J", json!(1)),
            400,
        ),
        kind("NUL in a free-text reason", "release_to_pool", release, 422),
        kind(
            "team name too long",
            "register_manager",
            with(m(), "team", json!("t".repeat(65))),
            422,
        ),
        kind(
            "unknown enum value",
            "register_manager",
            with(m(), "role", json!("overlord")),
            422,
        ),
        kind(
            "id that is not a UUID",
            "register_manager",
            with(m(), "manager_id", json!("not-a-uuid")),
            422,
        ),
        kind(
            "number where text belongs",
            "register_manager",
            with(m(), "team", json!(7)),
            400,
        ),
        kind(
            "text where a number belongs",
            "register_manager",
            with(m(), "holding_limit", json!("lots")),
            400,
        ),
        kind(
            "array where meta belongs",
            "register_manager",
            with(m(), "meta", json!([])),
            400,
        ),
        kind(
            "nesting 300 deep",
            "register_manager",
            with(m(), "team", deep),
            400,
        ),
        kind(
            "phone with a canary",
            "register_customer",
            with(
                customer_body(Uuid::now_v7(), 1),
                "phone",
                json!("+86 CANARY-13912345678"),
            ),
            422,
        ),
        Hostile {
            label: "malformed JSON",
            command: "register_manager",
            body: b"{not json".to_vec(),
            content_type: j,
            token: load.clone(),
            expect: 400,
        },
        Hostile {
            label: "garbage protobuf",
            command: "register_manager",
            body: vec![0xff; 64],
            content_type: Some("application/x-protobuf"),
            token: load.clone(),
            expect: 400,
        },
        Hostile {
            label: "oversized body",
            command: "register_manager",
            body: vec![b' '; 70 * 1024],
            content_type: j,
            token: load.clone(),
            expect: 413,
        },
        Hostile {
            label: "wrong content type",
            command: "register_manager",
            body: b"hi".to_vec(),
            content_type: Some("text/plain"),
            token: load.clone(),
            expect: 415,
        },
        kind("unknown command", "teleport_customer", m(), 404),
        kind(
            "issued_at 31 days ahead",
            "register_manager",
            with(
                m(),
                "meta.issued_at",
                json!((Utc::now() + Duration::days(31)).to_rfc3339()),
            ),
            422,
        ),
        kind(
            "issued_at a day back",
            "register_manager",
            with(
                m(),
                "meta.issued_at",
                json!((Utc::now() - Duration::days(1)).to_rfc3339()),
            ),
            422,
        ),
        kind(
            "issued_at not an instant",
            "register_manager",
            with(m(), "meta.issued_at", json!("yesterday")),
            422,
        ),
        kind(
            "contact dated 8 days back",
            "record_contact",
            backdated,
            422,
        ),
        kind(
            "actor system:scheduler",
            "register_manager",
            with(m(), "meta.actor", json!("system:scheduler")),
            403,
        ),
        kind(
            "actor naming a via",
            "register_manager",
            with(m(), "meta.actor", json!("person:a via service:b")),
            422,
        ),
        kind(
            "actor with an escape",
            "register_manager",
            with(m(), "meta.actor", json!("person:\u{1b}[2Jok")),
            422,
        ),
        Hostile {
            label: "no token",
            command: "register_manager",
            body: bytes(&m()),
            content_type: j,
            token: None,
            expect: 401,
        },
        Hostile {
            label: "forged signature",
            command: "register_manager",
            body: bytes(&m()),
            content_type: j,
            token: Some(forged_signature),
            expect: 401,
        },
        Hostile {
            label: "expired token",
            command: "register_manager",
            body: bytes(&m()),
            content_type: j,
            token: Some(expired),
            expect: 401,
        },
        Hostile {
            label: "alg none",
            command: "register_manager",
            body: bytes(&m()),
            content_type: j,
            token: Some(alg_none),
            expect: 401,
        },
        Hostile {
            label: "token for the query service",
            command: "register_manager",
            body: bytes(&m()),
            content_type: j,
            token: Some(token(
                SECRET,
                ISSUER,
                "crm-query",
                "x",
                json!({"role": "admin"}),
            )),
            expect: 401,
        },
        Hostile {
            label: "token subject with an escape",
            command: "register_manager",
            body: bytes(&m()),
            content_type: j,
            token: tok("\u{1b}[2Jops", json!({"role": "admin"})),
            expect: 401,
        },
        Hostile {
            label: "service acting for a person unallowed",
            command: "register_manager",
            body: bytes(&with(m(), "meta.actor", json!("person:li.wei"))),
            content_type: j,
            token: tok("branch-app", json!({"role": "service", "commands": ["*"]})),
            expect: 403,
        },
        Hostile {
            label: "service outside its scope",
            command: "register_manager",
            body: bytes(&m()),
            content_type: j,
            token: tok(
                "contacts-app",
                json!({"role": "service", "commands": ["record_contact"]}),
            ),
            expect: 403,
        },
    ]
}

/// The command id a hostile body carries, if it has one (to check nothing was stored).
fn command_id(body: &[u8]) -> Option<Uuid> {
    let v: Value = serde_json::from_slice(body).ok()?;
    v["meta"]["command_id"].as_str()?.parse().ok()
}

#[derive(Default)]
struct Tally {
    hostile: usize,
    hostile_4xx: usize,
    wrong_status: Vec<String>,
    /// Refusals of a body that carried a command id, answered without it.
    id_not_echoed: Vec<String>,
    valid: usize,
    valid_refused: Vec<String>,
    server_errors: usize,
    hostile_ids: Vec<Uuid>,
    by_kind: BTreeMap<&'static str, BTreeMap<u16, usize>>,
}

type Shared = Arc<std::sync::Mutex<Tally>>;
const VALID: usize = 600;

impl Tally {
    fn valid_answer(&mut self, what: String, a: &Answer) {
        self.valid += 1;
        if a.status >= 500 || a.status == 0 {
            self.server_errors += 1;
        }
        if a.status != 200 {
            self.valid_refused
                .push(format!("{what}: {} {} {}", a.status, a.code, a.detail));
        }
    }

    fn hostile_answer(&mut self, h: &Hostile, via: Via, a: &Answer) {
        self.hostile += 1;
        if (400..500).contains(&a.status) {
            self.hostile_4xx += 1;
        }
        if a.status >= 500 || a.status == 0 {
            self.server_errors += 1;
        }
        if a.status != h.expect {
            self.wrong_status.push(format!(
                "{} over {via:?}: {} {} {} (expected {})",
                h.label, a.status, a.code, a.detail, h.expect
            ));
        }
        let sent = command_id(&h.body);
        let echoed = a.body["command_id"].as_str().and_then(|i| i.parse().ok());
        // Refusals of what the body says (who calls is answered before the body is read).
        if matches!(a.status, 400 | 409 | 422) && sent.is_some() && echoed != sent {
            self.id_not_echoed.push(format!(
                "{} over {via:?}: {} {} answered command_id {:?}",
                h.label, a.status, a.code, a.body["command_id"]
            ));
        }
        *self
            .by_kind
            .entry(h.label)
            .or_default()
            .entry(a.status)
            .or_default() += 1;
        self.hostile_ids.extend(command_id(&h.body));
    }
}

/// One valid command, chosen by its number: managers, customers and contacts spread
/// over many customers, as in life (eight callers on one customer contend with each
/// other, hostile traffic or not).
fn valid_command(s: &Setup, i: usize) -> (&'static str, Value) {
    match i % 3 {
        0 => ("register_manager", manager_body(Uuid::now_v7())),
        1 => ("register_customer", customer_body(Uuid::now_v7(), i as u64)),
        _ => (
            "record_contact",
            contact_body(s.customers[i % s.customers.len()], s.manager),
        ),
    }
}

/// Valid traffic, every command acceptable, through both ingresses, eight at a time.
fn send_valid(s: Arc<Setup>, tally: Shared) -> tokio::task::JoinHandle<()> {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let workers: Vec<_> = (0..8)
        .map(|_| {
            let (s, tally, next) = (s.clone(), tally.clone(), next.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= VALID {
                        return;
                    }
                    let via = if i % 2 == 0 { Via::Http } else { Via::Nats };
                    let (name, body) = valid_command(&s, i);
                    let a = s.ingress.json(via, name, &body, Some(&s.load)).await;
                    tally
                        .lock()
                        .unwrap()
                        .valid_answer(format!("{name} {via:?}"), &a);
                }
            })
        })
        .collect();
    tokio::spawn(async move {
        for w in workers {
            w.await.unwrap();
        }
    })
}

/// Hostile traffic: every kind, over both ingresses, `rounds` times.
async fn send_hostile(s: &Arc<Setup>, tally: &Shared, rounds: usize) {
    let mut hostile = Vec::new();
    for _ in 0..rounds {
        for h in hostile_kinds(s) {
            let h = Arc::new(h);
            for via in [Via::Http, Via::Nats] {
                let (s, tally, h) = (s.clone(), tally.clone(), h.clone());
                hostile.push(tokio::spawn(async move {
                    let request = Request {
                        command: h.command,
                        body: h.body.clone(),
                        content_type: h.content_type,
                        token: h.token.as_deref(),
                    };
                    let a = s.ingress.send(via, &request).await;
                    tally.lock().unwrap().hostile_answer(&h, via, &a);
                }));
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    }
    for h in hostile {
        h.await.unwrap();
    }
}

async fn events_appended_by(s: &Setup, command_ids: &[Uuid]) -> i64 {
    let store = PgEventStore::connect(&s.platform.db.url, 2).await.unwrap();
    sqlx::query_scalar("SELECT count(*) FROM events WHERE command_id = ANY($1)")
        .bind(command_ids)
        .fetch_one(store.pool())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_callers_hurt_nobody() {
    let s = Arc::new(setup("json").await);
    let tally: Shared = Default::default();
    let valid = send_valid(s.clone(), tally.clone());
    send_hostile(&s, &tally, 4).await;
    valid.await.unwrap();

    let t = std::mem::take(&mut *tally.lock().unwrap());
    let appended = events_appended_by(&s, &t.hostile_ids).await;
    let log = s.service.output();
    let panics = log.matches("panicked").count();
    let not_json = log
        .lines()
        .filter(|l| serde_json::from_str::<Value>(l).is_err())
        .count();
    for (kind, statuses) in &t.by_kind {
        println!("  {kind}: {statuses:?}");
    }
    println!(
        "HOSTILE: {} hostile requests over HTTP and NATS, {} refused with a 4xx; {} valid commands sent with them, {} refused; {} answers 5xx or none; {} panics; {} events appended by hostile requests; {} log lines that are not one JSON object",
        t.hostile, t.hostile_4xx, t.valid, t.valid_refused.len(), t.server_errors, panics, appended, not_json
    );
    assert!(t.hostile >= 200, "{}", t.hostile);
    assert!(t.wrong_status.is_empty(), "{:#?}", t.wrong_status);
    assert!(
        t.id_not_echoed.is_empty(),
        "refusals must name the command id the request carried: {:#?}",
        t.id_not_echoed
    );
    assert_eq!(t.hostile_4xx, t.hostile);
    assert!(t.valid_refused.is_empty(), "{:#?}", t.valid_refused);
    assert_eq!(t.valid, VALID);
    assert_eq!((t.server_errors, panics, appended), (0, 0, 0));
    // The logs: one JSON object per line, no raw control character, no personal data.
    assert_eq!(not_json, 0, "{log}");
    assert!(!log.contains('\u{1b}'), "a raw escape in the log");
    assert!(!log.contains("CANARY"), "personal data in the log");
}

/// Thirty valid commands and one the store cannot hold, at once, five times, over both
/// ingresses: the thirty are accepted every time. (Before, the NUL reached PostgreSQL
/// and failed the shared transaction: 63 of 150 valid commands got 503.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poisoned_command_fails_alone() {
    let s = Arc::new(setup("text").await);
    for burst in 0..5 {
        let mut tasks = Vec::new();
        for i in 0..31 {
            let s = s.clone();
            tasks.push(tokio::spawn(async move {
                let via = if (i + burst) % 2 == 0 {
                    Via::Http
                } else {
                    Via::Nats
                };
                let mut body = manager_body(Uuid::now_v7());
                if i == 15 {
                    body["team"] = json!("ab\u{0}c");
                }
                (
                    i,
                    s.ingress
                        .json(via, "register_manager", &body, Some(&s.load))
                        .await,
                )
            }));
        }
        for t in tasks {
            let (i, a) = t.await.unwrap();
            if i == 15 {
                assert_eq!(
                    (a.status, a.code.as_str()),
                    (422, "validation.invalid_field"),
                    "{a:?}"
                );
                assert!(a.detail.contains("team"), "{a:?}");
            } else {
                assert_eq!(a.status, 200, "burst {burst}, command {i}: {a:?}");
            }
        }
    }
}

/// Rules are judged at the platform's clock: a command stamped a month ahead (a transfer
/// that first-touch protection forbids today) or a day back (a claim on yesterday's cap)
/// is refused; an accepted command's events carry the time of receipt; a contact may be
/// dated when it happened, up to a week back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_are_judged_at_the_platforms_clock() {
    let s = setup("text").await;
    let store = PgEventStore::connect(&s.platform.db.url, 2).await.unwrap();
    for (label, at) in [
        ("a month ahead", Utc::now() + Duration::days(31)),
        ("a day back", Utc::now() - Duration::days(1)),
    ] {
        for via in [Via::Http, Via::Nats] {
            let body = with(
                manager_body(Uuid::now_v7()),
                "meta.issued_at",
                json!(at.to_rfc3339()),
            );
            let a = s
                .ingress
                .json(via, "register_manager", &body, Some(&s.load))
                .await;
            assert_eq!(a.status, 422, "{label} {via:?}: {a:?}");
            assert!(a.detail.contains("meta.issued_at"), "{a:?}");
        }
    }
    // Within the skew bound: accepted, and dated at receipt, not at the stated instant.
    let stated = Utc::now() + Duration::seconds(100);
    let id = Uuid::now_v7();
    let before = Utc::now();
    let body = with(
        manager_body(id),
        "meta.issued_at",
        json!(stated.to_rfc3339()),
    );
    let a = s
        .ingress
        .json(Via::Nats, "register_manager", &body, Some(&s.load))
        .await;
    assert_eq!(a.status, 200, "{a:?}");
    let events = store
        .read_stream(&format!("manager-{id}"), 0)
        .await
        .unwrap();
    let at = events[0].metadata.occurred_at;
    assert!(
        at >= before - Duration::seconds(1) && at < stated - Duration::seconds(60),
        "{at} (stated {stated})"
    );

    // A contact made yesterday, recorded today.
    let yesterday = Utc::now() - Duration::days(1);
    let mut contact = contact_body(s.customer, s.manager);
    contact["occurred_at"] = json!(yesterday.to_rfc3339());
    let a = s
        .ingress
        .json(Via::Http, "record_contact", &contact, Some(&s.load))
        .await;
    assert_eq!(a.status, 200, "{a:?}");
    let stream = store
        .read_stream(&format!("customer-{}", s.customer), 0)
        .await
        .unwrap();
    let recorded = stream
        .iter()
        .find(|e| e.event_type == "ContactRecorded")
        .unwrap();
    let contacted: chrono::DateTime<Utc> =
        serde_json::from_value(recorded.payload["contacted_at"].clone()).unwrap();
    assert!(
        (contacted - yesterday).num_seconds().abs() < 2,
        "{contacted}"
    );
    assert!(recorded.metadata.occurred_at > yesterday + Duration::hours(23));
}

/// Over NATS as over HTTP, the recorded actor is the token's, whatever the payload says;
/// a service may act for a person only if its token allows it, and both are recorded.
/// (Before, NATS recorded whatever the payload said: `system:scheduler` included.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_recorded_actor_is_the_callers() {
    let s = setup("text").await;
    let store = PgEventStore::connect(&s.platform.db.url, 2).await.unwrap();
    let plain = token(
        SECRET,
        ISSUER,
        "crm-commands",
        "branch-app",
        json!({"role": "service", "commands": ["*"]}),
    );
    let delegate = token(
        SECRET,
        ISSUER,
        "crm-commands",
        "call-centre",
        json!({"role": "service", "commands": ["*"], "acts_for_persons": true}),
    );
    let admin = token(
        SECRET,
        ISSUER,
        "crm-commands",
        "ops",
        json!({"role": "admin"}),
    );
    for via in [Via::Nats, Via::Http] {
        let cases: [(&str, &str, u16, Option<&str>); 6] = [
            (
                &plain,
                "service:someone-else",
                200,
                Some("service:branch-app"),
            ),
            (&plain, "system:scheduler", 403, None),
            (&plain, "person:li.wei", 403, None),
            (
                &delegate,
                "person:li.wei",
                200,
                Some("person:li.wei via service:call-centre"),
            ),
            (
                &delegate,
                "service:branch-app",
                200,
                Some("service:call-centre"),
            ),
            (&admin, "person:someone-else", 200, Some("person:ops")),
        ];
        for (tok, claimed, status, recorded) in cases {
            let id = Uuid::now_v7();
            let body = with(manager_body(id), "meta.actor", json!(claimed));
            let a = s
                .ingress
                .json(via, "register_manager", &body, Some(tok))
                .await;
            assert_eq!(a.status, status, "{via:?} {claimed}: {a:?}");
            let events = store
                .read_stream(&format!("manager-{id}"), 0)
                .await
                .unwrap();
            match recorded {
                Some(actor) => assert_eq!(events[0].metadata.actor, actor, "{via:?} {claimed}"),
                None => assert!(
                    events.is_empty(),
                    "{via:?} {claimed}: a refused command wrote"
                ),
            }
        }
        // Without a token, nothing.
        let a = s
            .ingress
            .json(via, "register_manager", &manager_body(Uuid::now_v7()), None)
            .await;
        assert_eq!(
            (a.status, a.code.as_str()),
            (401, "auth.unauthenticated"),
            "{a:?}"
        );
    }
}

/// A caller's text can neither forge a log line nor drive a terminal, and the refusals
/// answer as docs/api.md says: authentication before size and type, 405 as
/// problem+json, a value the domain refuses as 422 naming its field (a misspelt policy
/// field with its path inside the document).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_what_the_docs_say_and_logs_cannot_be_forged() {
    let s = setup("text").await;
    // (No '.' in it: `with` reads a dot as a path.)
    let forged = "\n2026-12-06T00:00:00Z ERROR forged-by-a-caller \u{1b}[2J";
    for via in [Via::Http, Via::Nats] {
        let body = with(manager_body(Uuid::now_v7()), forged, json!(1));
        let a = s
            .ingress
            .json(via, "register_manager", &body, Some(&s.load))
            .await;
        assert_eq!(a.status, 400, "{a:?}");
    }
    let http = &s.ingress.http;
    let base = &s.ingress.base;
    // Unauthenticated: 401 before anything about the body, which is not even read (the
    // request announces 70 KiB of text and sends none of it).
    let addr = base.trim_start_matches("http://");
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let head = format!(
        "POST /v1/commands/register_manager HTTP/1.1\r\nHost: {addr}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
        70 * 1024
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(std::time::Duration::from_secs(5), tcp.read(&mut answer))
        .await
        .expect("an answer before the body")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]).to_lowercase();
    assert!(answer.starts_with("http/1.1 401"), "{answer}");
    assert!(answer.contains("www-authenticate: bearer"), "{answer}");
    // 405: problem+json.
    let r = http
        .get(format!("{base}/v1/commands/register_manager"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let problem: Value = r.json().await.unwrap();
    assert_eq!(problem["code"], "request.method_not_allowed");
    // A misspelt policy field: 422 naming its path.
    let policy = json!({"meta": meta("service:load"), "note": "typo",
                        "document_json": r#"{"holding": {"team_limitz": {"east-1": 3}}}"#});
    let a = s
        .ingress
        .json(Via::Http, "publish_policy", &policy, Some(&s.load))
        .await;
    assert_eq!(
        (a.status, a.code.as_str()),
        (422, "validation.invalid_field"),
        "{a:?}"
    );
    assert!(a.detail.contains("holding.team_limitz"), "{a:?}");

    let log = s.service.output();
    assert!(!log.contains('\u{1b}'), "a raw escape sequence in the log");
    assert!(
        !log.lines()
            .any(|l| l.starts_with("2026-12-06T00:00:00Z ERROR forged")),
        "a forged line in the log:\n{log}"
    );
    // The refusals are logged by code, never with the caller's text (it may be personal
    // data; the formatter escapes whatever text does reach a line: libs/telemetry).
    assert_eq!(
        log.matches("code=request.malformed").count(),
        2,
        "both refusals logged:\n{log}"
    );
    assert!(!log.contains("forged-by-a-caller"), "{log}");
}

/// Safe by default: a service never starts on an example's placeholder secret, and with
/// authentication on the command service needs its own index key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn placeholder_or_missing_secrets_refuse_to_start() {
    let platform = Platform::new().await;
    for (label, extra, expect) in [
        (
            "the example's HS256 secret",
            vec![
                (
                    "CRM_AUTH_HS256_SECRET",
                    "replace-with-at-least-32-random-bytes",
                ),
                ("CRM_INDEX_KEY", "a-real-index-key-0123456789"),
            ],
            "placeholder",
        ),
        (
            "no index key",
            vec![("CRM_AUTH_HS256_SECRET", SECRET)],
            "CRM_INDEX_KEY",
        ),
        (
            "the example's index key",
            vec![
                ("CRM_AUTH_HS256_SECRET", SECRET),
                ("CRM_INDEX_KEY", "replace-with-32-random-bytes"),
            ],
            "placeholder",
        ),
    ] {
        let mut env = platform.env();
        env.push(("CRM_AUTH_ISSUER", ISSUER.into()));
        env.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
        let mut service = Service::start(
            "crm-command-service",
            &["--http-addr", "127.0.0.1:0", "--no-nats"],
            &env,
        );
        let status = service.wait_exit(std::time::Duration::from_secs(30)).await;
        assert!(status.is_some_and(|s| !s.success()), "{label}: it started");
        let output = service.output();
        assert!(output.contains(expect), "{label}: {output}");
        assert!(
            !output.contains(SECRET),
            "{label}: the secret printed: {output}"
        );
    }
    // The scheduler decides commands with the same index: outside development it needs
    // the key too (it fell back to the development key).
    let mut env = platform.env();
    env.push(("CRM_AUTH", "on".into()));
    let mut scheduler = Service::start("crm-scheduler", &[], &env);
    let status = scheduler
        .wait_exit(std::time::Duration::from_secs(30))
        .await;
    let output = scheduler.output();
    assert!(
        status.is_some_and(|s| !s.success()),
        "the scheduler started: {output}"
    );
    assert!(output.contains("CRM_INDEX_KEY is not set"), "{output}");
}

/// A NATS header value holding a bare carriage return (which no well-behaved client
/// sends, but any client allowed to publish can): before async-nats 0.52 it panicked the
/// receiving connection's task, so one caller could cut every caller of the instance
/// off. Sent here over a raw connection; the command service answers it and goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bare_carriage_return_in_a_nats_header_stops_nothing() {
    use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _};
    let s = setup("text").await;
    let url = crm_bus::testing::nats_url();
    let addr = url.trim_start_matches("nats://");
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (read, mut write) = stream.into_split();
    let mut read = tokio::io::BufReader::new(read);
    let mut line = String::new();
    read.read_line(&mut line).await.unwrap();
    assert!(line.starts_with("INFO"), "{line}");
    let body = serde_json::to_vec(&manager_body(Uuid::now_v7())).unwrap();
    let headers = format!(
        "NATS/1.0\r\nContent-Type: application/json\r\nAuthorization: Bearer {}\r\nX-Evil: a\rb\r\n\r\n",
        s.load
    );
    let subject = format!("{}.cmd.register_manager", s.ingress.prefix);
    let frame = format!(
        "CONNECT {{\"verbose\":false,\"pedantic\":false,\"headers\":true,\"protocol\":1}}\r\nSUB _INBOX.raw.1 1\r\nHPUB {subject} _INBOX.raw.1 {} {}\r\n",
        headers.len(),
        headers.len() + body.len()
    );
    write.write_all(frame.as_bytes()).await.unwrap();
    write.write_all(headers.as_bytes()).await.unwrap();
    write.write_all(&body).await.unwrap();
    write.write_all(b"\r\nPING\r\n").await.unwrap();
    // The reply comes back on the raw connection (HMSG: it carries headers).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut seen = String::new();
    while !seen.contains("HMSG _INBOX.raw.1") {
        assert!(std::time::Instant::now() < deadline, "no reply: {seen:?}");
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(std::time::Duration::from_secs(10), read.read(&mut buf))
            .await
            .expect("a reply")
            .unwrap();
        assert!(n > 0, "the server closed the raw connection: {seen:?}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(!seen.contains("Crm-Error-Code"), "refused: {seen}");
    // And the next callers are served as before.
    for via in [Via::Nats, Via::Http] {
        let a = s
            .ingress
            .json(
                via,
                "register_manager",
                &manager_body(Uuid::now_v7()),
                Some(&s.load),
            )
            .await;
        assert_eq!(a.status, 200, "{via:?}: {a:?}");
    }
    assert!(
        !s.service.output().contains("panicked"),
        "{}",
        s.service.output()
    );
}

//! Authorization matrix over HTTP: every role (and no token, an expired token, a token
//! for another service, a forged one) against every route of the query service and the
//! command routes of the command service, both started as processes with HS256 tokens.
//! Every forbidden request must be refused (401/403); every allowed one answered, within
//! its scope: manager A never sees manager B's customers, analysts never receive a
//! personal field, auditors read everything and change nothing. Each read of personal
//! data by a person leaves a `PersonalDataRead` record in the event store.

use std::process::Command as Process;

use chrono::Utc;
use crm_domain::customer::*;
use crm_domain::*;
use crm_eventstore::postgres::PgEventStore;
use crm_eventstore::testing::TestDatabase;
use crm_eventstore::{Horizon, Log, LogPosition, Streams};
use crm_integration_tests::{Platform, Service};
use serde_json::{json, Value};
use uuid::Uuid;

const SECRET: &str = "test-secret-of-at-least-32-bytes-long!";
const ISSUER: &str = "crm-test-idp";

fn token(audience: &str, sub: &str, extra: Value, exp_in: i64) -> String {
    let mut claims = json!({
        "iss": ISSUER, "aud": audience, "sub": sub,
        "exp": Utc::now().timestamp() + exp_in,
    });
    for (k, v) in extra.as_object().unwrap() {
        claims[k] = v.clone();
    }
    crm_auth::sign_hs256(SECRET.as_bytes(), &claims)
}

fn auth_env(env: &mut Vec<(&'static str, String)>) {
    env.push(("CRM_AUTH_HS256_SECRET", SECRET.into()));
    env.push(("CRM_AUTH_ISSUER", ISSUER.into()));
    env.push(("CRM_INDEX_KEY", "authorization-test-index-key".into()));
}

fn command_body(command: &Command) -> Vec<u8> {
    crm_integration_tests::command_body("service:claimed-by-the-payload", command)
}

async fn post(
    http: &reqwest::Client,
    base: &str,
    bearer: Option<&str>,
    command: &Command,
) -> (u16, Value) {
    let mut r = http
        .post(format!("{base}/v1/commands/{}", command.name()))
        .header("content-type", "application/json")
        .body(command_body(command));
    if let Some(t) = bearer {
        r = r.bearer_auth(t);
    }
    let r = r.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_role_against_every_route() {
    let platform = Platform::new().await;
    let read_db = TestDatabase::create().await;
    let mut env = platform.env();
    auth_env(&mut env);
    let mut commands = Service::start(
        "crm-command-service",
        &["--http-addr", "127.0.0.1:0", "--no-nats"],
        &env,
    );
    let base = commands.http_base().await;
    let http = reqwest::Client::new();

    // The command side, by role.
    // An operator's token from the CLI.
    let out = Process::new(crm_integration_tests::binary("crm"))
        .args([
            "token",
            "--role",
            "admin",
            "--sub",
            "ops",
            "--audience",
            "crm-commands",
        ])
        .env("CRM_AUTH_HS256_SECRET", SECRET)
        .env("CRM_AUTH_ISSUER", ISSUER)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let admin_cmd = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let (a, b) = (
        ManagerId::new(Uuid::now_v7()),
        ManagerId::new(Uuid::now_v7()),
    );
    for (m, team) in [(a, "east-1"), (b, "east-2")] {
        let reg: Command =
            crm_integration_tests::register_manager(m, &format!("Manager {team}"), team);
        assert_eq!(post(&http, &base, Some(&admin_cmd), &reg).await.0, 200);
    }
    let register = |c: CustomerId, name: &str| -> Command {
        let phone = format!("+86 139 {:08}", c.as_uuid().as_u128() % 100_000_000);
        crm_integration_tests::register_customer(c, name, Some(phone), None)
    };
    let assign = |c: CustomerId, m: ManagerId| -> Command {
        CustomerCommand::AssignOwner(AssignOwner {
            customer_id: c,
            manager_id: m,
            reason: "walk-in".into(),
        })
        .into()
    };
    let (a1, b1) = (
        CustomerId::new(Uuid::now_v7()),
        CustomerId::new(Uuid::now_v7()),
    );
    let (name_a1, name_b1) = ("Personal Name Alpha", "Personal Name Bravo");
    let branch_system = token(
        "crm-commands",
        "branch-system",
        json!({"role": "service", "commands": ["register_customer", "assign_owner"]}),
        600,
    );
    for cmd in [
        register(a1, name_a1),
        assign(a1, a),
        register(b1, name_b1),
        assign(b1, b),
    ] {
        let (status, reply) = post(&http, &base, Some(&branch_system), &cmd).await;
        assert_eq!(status, 200, "{reply}");
    }
    // A complaint on each (logged by an operator): the complaint routes are scoped by
    // their customer.
    let (ka1, kb1) = (
        ComplaintId::new(Uuid::now_v7()),
        ComplaintId::new(Uuid::now_v7()),
    );
    for (c, k) in [(a1, ka1), (b1, kb1)] {
        let cmd: Command = CustomerCommand::LogComplaint(LogComplaint {
            customer_id: c,
            complaint_id: k,
            severity: Severity::High,
            category: "fees".into(),
            description: "charged twice".into(),
            channel: ContactChannel::Phone,
        })
        .into();
        let (status, reply) = post(&http, &base, Some(&admin_cmd), &cmd).await;
        assert_eq!(status, 200, "{reply}");
    }
    // The actor recorded is the authenticated service, not what the payload claimed.
    let store = PgEventStore::connect(&platform.db.url, 2).await.unwrap();
    let first = store
        .read_stream(&format!("customer-{a1}"), 0)
        .await
        .unwrap();
    assert_eq!(first[0].metadata.actor, "service:branch-system");

    let mut refused = 0;
    let mut forbidden = 0;
    let mut allowed = 0;
    let manager_a = token(
        "crm-query",
        "li.wei",
        json!({"role": "manager", "manager_id": a.to_string()}),
        600,
    );
    let command_tokens: Vec<(&str, Option<String>)> = vec![
        ("no token", None),
        (
            "manager",
            Some(token(
                "crm-commands",
                "li.wei",
                json!({"role": "manager", "manager_id": a.to_string()}),
                600,
            )),
        ),
        (
            "analyst",
            Some(token(
                "crm-commands",
                "ana",
                json!({"role": "analyst"}),
                600,
            )),
        ),
        (
            "auditor",
            Some(token(
                "crm-commands",
                "audrey",
                json!({"role": "auditor"}),
                600,
            )),
        ),
        ("service outside its scope", Some(branch_system.clone())),
        (
            "expired admin",
            Some(token("crm-commands", "ops", json!({"role": "admin"}), -120)),
        ),
        (
            "admin for another service",
            Some(token("crm-query", "ops", json!({"role": "admin"}), 600)),
        ),
        (
            "forged admin",
            Some(crm_auth::sign_hs256(
                b"not-the-secret-but-32-bytes-long!!",
                &json!({"iss": ISSUER, "aud": "crm-commands", "sub": "x", "exp": Utc::now().timestamp() + 600, "role": "admin"}),
            )),
        ),
    ];
    let writes: Vec<Command> = vec![
        CustomerCommand::TransferOwner(TransferOwner {
            customer_id: a1,
            to_manager_id: b,
            reason: "x".into(),
        })
        .into(),
        CustomerCommand::EraseCustomerData(EraseCustomerData {
            customer_id: b1,
            reason: "x".into(),
        })
        .into(),
        CustomerCommand::ReleaseToPool(ReleaseToPool {
            customer_id: a1,
            reason: "x".into(),
        })
        .into(),
    ];
    for (who, t) in &command_tokens {
        for cmd in &writes {
            let (status, reply) = post(&http, &base, t.as_deref(), cmd).await;
            forbidden += 1;
            assert!(
                matches!(status, 401 | 403),
                "{who} {}: {status} {reply}",
                cmd.name()
            );
            refused += 1;
        }
    }
    // Every command route, with every token that may not send it (the token is judged
    // before the body is read).
    for name in crm_contracts::wire::COMMAND_NAMES {
        for (who, t) in &command_tokens {
            let in_scope = ["register_customer", "assign_owner"].contains(name);
            if *who == "service outside its scope" && in_scope {
                continue;
            }
            let mut r = http.post(format!("{base}/v1/commands/{name}")).body("{}");
            if let Some(t) = t {
                r = r.bearer_auth(t);
            }
            let status = r.send().await.unwrap().status().as_u16();
            forbidden += 1;
            assert!(matches!(status, 401 | 403), "{who} {name}: {status}");
            refused += 1;
        }
    }
    println!("command routes: {forbidden} forbidden requests, {refused} refused");
    let head_before = store.head().await.unwrap();

    // Read models, then the query service with authentication.
    let urls = [
        ("CRM_STORE_URL", platform.db.url.as_str()),
        ("CRM_READ_URL", read_db.url.as_str()),
    ];
    for p in ["ownership", "timeline", "analytics"] {
        let out = Process::new(crm_integration_tests::binary("crm"))
            .args(["projections", "rebuild", p])
            .envs(urls)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut qenv = vec![
        ("CRM_READ_URL", read_db.url.clone()),
        ("CRM_STORE_URL", platform.db.url.clone()),
    ];
    auth_env(&mut qenv);
    let mut query = Service::start("crm-query", &["--http-addr", "127.0.0.1:0"], &qenv);
    let q = query.http_base().await;

    let day = "from=2026-01-01T00:00:00Z&to=2030-01-01T00:00:00Z";
    let routes: Vec<(&str, String)> = vec![
        ("customers", "/v1/customers".into()),
        ("customer A1", format!("/v1/customers/{a1}")),
        ("customer B1", format!("/v1/customers/{b1}")),
        ("ownership A1", format!("/v1/customers/{a1}/ownership")),
        ("ownership B1", format!("/v1/customers/{b1}/ownership")),
        ("timeline A1", format!("/v1/customers/{a1}/timeline")),
        ("timeline B1", format!("/v1/customers/{b1}/timeline")),
        ("portfolio A", format!("/v1/managers/{a}/portfolio")),
        ("portfolio B", format!("/v1/managers/{b}/portfolio")),
        ("pool", "/v1/pool".into()),
        ("portfolios", "/v1/portfolios".into()),
        ("managers", "/v1/managers".into()),
        ("funnel", "/v1/funnel/stages".into()),
        ("kpis", "/v1/kpis".into()),
        ("checkpoints", "/v1/projections/checkpoints".into()),
        ("complaints", "/v1/complaints".into()),
        (
            "complaints of B1",
            format!("/v1/complaints?customer_id={b1}"),
        ),
        ("complaint of A1", format!("/v1/complaints/{ka1}")),
        ("complaint of B1", format!("/v1/complaints/{kb1}")),
        (
            "open complaints counted",
            "/v1/complaints/open-counts".into(),
        ),
        (
            "audit ownership A1",
            format!("/v1/audit/customers/{a1}/ownership"),
        ),
        (
            "audit manager A",
            format!("/v1/audit/managers/{a}/ownership?{day}"),
        ),
    ];
    // Which routes each role may read.
    let audit = ["checkpoints", "audit ownership A1", "audit manager A"];
    let may = |role: &str, route: &str| -> bool {
        match role {
            "admin" | "auditor" => true,
            "analyst" => !audit.contains(&route),
            "manager A" => {
                !audit.contains(&route)
                    && ![
                        "customer B1",
                        "ownership B1",
                        "timeline B1",
                        "portfolio B",
                        "complaint of B1",
                    ]
                    .contains(&route)
            }
            _ => false,
        }
    };
    let query_tokens: Vec<(&str, Option<String>)> = vec![
        ("no token", None),
        ("manager A", Some(manager_a.clone())),
        (
            "analyst",
            Some(token("crm-query", "ana", json!({"role": "analyst"}), 600)),
        ),
        (
            "auditor",
            Some(token(
                "crm-query",
                "audrey",
                json!({"role": "auditor"}),
                600,
            )),
        ),
        (
            "admin",
            Some(token("crm-query", "ops", json!({"role": "admin"}), 600)),
        ),
        (
            "service",
            Some(token(
                "crm-query",
                "branch-system",
                json!({"role": "service", "commands": ["*"]}),
                600,
            )),
        ),
        (
            "expired auditor",
            Some(token(
                "crm-query",
                "audrey",
                json!({"role": "auditor"}),
                -120,
            )),
        ),
        (
            "auditor for another service",
            Some(token(
                "crm-commands",
                "audrey",
                json!({"role": "auditor"}),
                600,
            )),
        ),
    ];
    let (mut q_forbidden, mut q_refused) = (0, 0);
    for (who, t) in &query_tokens {
        for (route, path) in &routes {
            let mut r = http.get(format!("{q}{path}"));
            if let Some(t) = t {
                r = r.bearer_auth(t);
            }
            let r = r.send().await.unwrap();
            let status = r.status().as_u16();
            let body = r.text().await.unwrap();
            if may(who, route) {
                allowed += 1;
                assert_eq!(status, 200, "{who} {route}: {body}");
                // Scope: manager A sees A's customers only; analysts no personal field.
                if *who == "manager A" {
                    assert!(
                        !body.contains(&b1.to_string())
                            && !body.contains(name_b1)
                            && !body.contains(&kb1.to_string()),
                        "{route}: {body}"
                    );
                }
                if route.starts_with("complaint of") {
                    // The complaint with its customer and its history (the event store
                    // is the service's): one event, its logging.
                    let k: Value = serde_json::from_str(&body).unwrap();
                    assert_eq!(k["status"], "open", "{body}");
                    assert_eq!(k["history"][0]["event_type"], "ComplaintLogged", "{body}");
                }
                if *route == "complaints" {
                    let page: Value = serde_json::from_str(&body).unwrap();
                    let n = if *who == "manager A" { 1 } else { 2 };
                    assert_eq!(page["items"].as_array().unwrap().len(), n, "{who}: {body}");
                }
                if *who == "analyst" {
                    assert!(
                        !body.contains(name_a1) && !body.contains(name_b1),
                        "{route}: {body}"
                    );
                }
                if *who == "auditor" && *route == "customer B1" {
                    assert!(body.contains(name_b1), "{body}");
                }
            } else if *who == "manager A" && route.ends_with("B1") {
                // Another manager's customer reads as no customer at all (checked
                // against one that does not exist below): ids cannot be probed.
                q_forbidden += 1;
                assert_eq!(status, 404, "{who} {route}: {body}");
                assert!(body.contains("query.not_found"), "{body}");
                q_refused += 1;
            } else {
                q_forbidden += 1;
                assert!(
                    matches!(status, 401 | 403),
                    "{who} {route}: {status} {body}"
                );
                assert!(
                    body.contains("auth."),
                    "problem+json with an auth code: {body}"
                );
                q_refused += 1;
            }
        }
    }
    println!(
        "query routes: {q_forbidden} forbidden requests, {q_refused} refused; {allowed} allowed requests answered within scope"
    );
    assert_eq!(q_forbidden, q_refused);
    assert_eq!(forbidden, refused);

    // A request refused for a bad parameter reveals nothing and records nothing.
    let reads_before = personal_data_reads(&store).await;
    let r = http
        .get(format!("{q}/v1/customers?format=xml"))
        .bearer_auth(&manager_a)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let reads_after = personal_data_reads(&store).await;
    assert_eq!(
        reads_before, reads_after,
        "a refused answer was recorded as a read"
    );

    // Another manager's customer and a customer that does not exist get the same answer.
    let nobody = Uuid::now_v7();
    for (what, suffix) in [
        ("", ""),
        ("ownership", "/ownership"),
        ("timeline", "/timeline"),
    ] {
        let mut answers = Vec::new();
        for id in [b1.to_string(), nobody.to_string()] {
            let r = http
                .get(format!("{q}/v1/customers/{id}{suffix}"))
                .bearer_auth(&manager_a)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let body: Value = r.json().await.unwrap();
            let detail = body["detail"].as_str().unwrap().replace(&id, "<id>");
            answers.push((status, body["code"].clone(), detail));
        }
        assert_eq!(
            answers[0], answers[1],
            "customer {what}: B1 against a missing id"
        );
    }

    // The customer list of manager A is A's portfolio, whatever filter was asked.
    let list: Value = http
        .get(format!("{q}/v1/customers?owner_id={b}"))
        .bearer_auth(&manager_a)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["customer_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [a1.to_string()]);

    // Nothing was written by any refused command; every read of a name by a person is
    // on record, and none by the analyst. (Settled first: another test's transaction
    // anywhere in the cluster holds the log's horizon back.)
    store.settle().await.unwrap();
    let all = store.read_all(LogPosition::START, 10_000).await.unwrap();
    let customer_events = all
        .iter()
        .filter(|e| e.stream_id.starts_with("customer-"))
        .count();
    assert_eq!(
        customer_events as u64,
        head_before.0 - 2,
        "2 manager events, the rest customers'"
    );
    // One record per answer (schema 2), naming every customer and field it revealed.
    let records: Vec<&crm_eventstore::RecordedEvent> = all
        .iter()
        .filter(|e| e.event_type == "PersonalDataRead")
        .collect();
    for r in &records {
        assert_eq!(r.schema_version, 2);
        assert_eq!(r.stream_version, 1, "a stream of its own per answer");
        assert!(
            !r.payload["fields"].as_array().unwrap().is_empty(),
            "{}",
            r.payload
        );
    }
    let reads: Vec<(&str, &str)> = records
        .iter()
        .flat_map(|e| {
            let reader = e.payload["reader"].as_str().unwrap();
            e.payload["customers"]
                .as_array()
                .unwrap()
                .iter()
                .map(move |c| (reader, c.as_str().unwrap()))
        })
        .collect();
    assert!(
        reads.contains(&("person:li.wei", a1.to_string().as_str())),
        "{reads:?}"
    );
    assert!(
        reads.contains(&("person:audrey", b1.to_string().as_str())),
        "{reads:?}"
    );
    assert!(!reads.iter().any(|(r, _)| *r == "person:ana"), "{reads:?}");
    assert!(
        !reads
            .iter()
            .any(|(r, c)| *r == "person:li.wei" && *c == b1.to_string()),
        "{reads:?}"
    );
    println!("{} reads of personal data recorded", reads.len());

    // An auditor lists who read A1's personal data, from the event store.
    let out = Process::new(crm_integration_tests::binary("crm"))
        .args(["audit", "reads", "--json", "--customer", &a1.to_string()])
        .env("CRM_STORE_URL", &platform.db.url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        listed.iter().any(|r| r["reader"] == "person:li.wei"),
        "{listed:?}"
    );
    assert!(listed.iter().all(|r| r["customers"]
        .as_array()
        .unwrap()
        .contains(&json!(a1.to_string()))));
    assert!(
        !listed.iter().any(|r| r["reader"] == "person:ana"),
        "{listed:?}"
    );
}

async fn personal_data_reads(store: &PgEventStore) -> usize {
    store.settle().await.unwrap();
    store
        .read_all(LogPosition::START, 100_000)
        .await
        .unwrap()
        .iter()
        .filter(|e| e.event_type == "PersonalDataRead")
        .count()
}

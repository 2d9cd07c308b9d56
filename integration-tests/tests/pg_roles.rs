//! PostgreSQL least privilege: `crm db migrate` as the owner creates the roles, grants
//! and row-level security; the command service and the query service then run as login
//! roles that are members of `crm_writer` / `crm_query` (`CRM_MIGRATE=off`: they may not
//! create anything) and do their job. Every role then tries every statement of a matrix:
//! every forbidden one is refused by the database; a manager's SQL sees their own
//! customers only (row-level security).

use std::process::Command as Process;

use crm_domain::customer::*;
use crm_domain::*;
use crm_eventstore::testing::TestDatabase;
use crm_eventstore::Append;
use crm_integration_tests::Service;
use serde_json::Value;
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

/// Login roles made for this test, dropped after it.
struct Logins {
    admin: String,
    names: Vec<String>,
}

impl Drop for Logins {
    fn drop(&mut self) {
        let (admin, names) = (self.admin.clone(), self.names.clone());
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async move {
                let mut conn = PgConnection::connect(&admin).await.ok()?;
                for n in names {
                    let _ = sqlx::query(&format!("DROP ROLE IF EXISTS \"{n}\""))
                        .execute(&mut conn)
                        .await;
                }
                Some(())
            })
        })
        .join();
    }
}

fn url_as(db_url: &str, login: &str) -> String {
    // postgres://user@host:port/db → postgres://login@host:port/db
    let (scheme, rest) = db_url.split_once("://").unwrap();
    let host = rest.split_once('@').map_or(rest, |(_, h)| h);
    format!("{scheme}://{login}@{host}")
}

async fn send(http: &reqwest::Client, base: &str, command: Command) {
    let r = http
        .post(format!("{base}/v1/commands/{}", command.name()))
        .header("content-type", "application/json")
        .body(crm_integration_tests::command_body(
            "person:li.wei",
            &command,
        ))
        .send()
        .await
        .unwrap();
    let status = r.status();
    let body = r.text().await.unwrap();
    assert_eq!(status, 200, "{}: {body}", command.name());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_run_as_least_privilege_roles_and_nothing_more() {
    let db = TestDatabase::create().await;
    let out = Process::new(crm_integration_tests::binary("crm"))
        .args(["db", "migrate", "--store", &db.url, "--read", &db.url])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let mut admin = PgConnection::connect(&db.url).await.unwrap();
    let tag = Uuid::new_v4().simple().to_string()[..8].to_string();
    let mut logins = Logins {
        admin: db.url.clone(),
        names: Vec::new(),
    };
    let mut login = |role: &str| {
        let name = format!("{role}_login_{tag}");
        logins.names.push(name.clone());
        (name, role.to_string())
    };
    let (writer, _) = login("crm_writer");
    let (query, _) = login("crm_query");
    let (auditor, _) = login("crm_auditor");
    for (name, role) in [
        (&writer, "crm_writer"),
        (&query, "crm_query"),
        (&auditor, "crm_auditor"),
    ] {
        sqlx::query(&format!("CREATE ROLE \"{name}\" LOGIN IN ROLE {role}"))
            .execute(&mut admin)
            .await
            .unwrap();
    }

    // The command service as a writer: it cannot create tables, so it does not migrate.
    let mut service = Service::start(
        "crm-command-service",
        &["--http-addr", "127.0.0.1:0", "--no-nats"],
        &[
            ("CRM_STORE_URL", url_as(&db.url, &writer)),
            ("CRM_MIGRATE", "off".into()),
        ],
    );
    let base = service.http_base().await;
    let http = reqwest::Client::new();
    let (a, b) = (
        ManagerId::new(Uuid::now_v7()),
        ManagerId::new(Uuid::now_v7()),
    );
    for (m, team) in [(a, "east-1"), (b, "east-2")] {
        send(
            &http,
            &base,
            crm_integration_tests::register_manager(m, &format!("Manager {team}"), team),
        )
        .await;
    }
    let mut customers = Vec::new();
    for (i, m) in [a, b].into_iter().enumerate() {
        let c = CustomerId::new(Uuid::now_v7());
        customers.push(c);
        send(
            &http,
            &base,
            crm_integration_tests::register_customer(
                c,
                &format!("Customer {i}"),
                Some(format!("+86 139 0000 {:04}", 1000 + i)),
                None,
            ),
        )
        .await;
        send(
            &http,
            &base,
            CustomerCommand::AssignOwner(AssignOwner {
                customer_id: c,
                manager_id: m,
                reason: "walk-in".into(),
            })
            .into(),
        )
        .await;
    }
    drop(service);

    // Read models rebuilt by the owner; the query service reads them as crm_query.
    let out = Process::new(crm_integration_tests::binary("crm"))
        .args(["projections", "rebuild", "ownership"])
        .env("CRM_STORE_URL", &db.url)
        .env("CRM_READ_URL", &db.url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut q = Service::start(
        "crm-query",
        &["--http-addr", "127.0.0.1:0"],
        &[
            ("CRM_READ_URL", url_as(&db.url, &query)),
            ("CRM_STORE_URL", url_as(&db.url, &query)),
            ("CRM_MIGRATE", "off".into()),
        ],
    );
    let qbase = q.http_base().await;
    let shown: Value = http
        .get(format!("{qbase}/v1/customers/{}", customers[0]))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        shown["display_name"], "Customer 0",
        "decrypted with crm_query's rights: {shown}"
    );
    drop(q);

    // The query service's role appends its access records and nothing else.
    let as_query = sqlx::PgPool::connect(&url_as(&db.url, &query))
        .await
        .unwrap();
    let access =
        crm_eventstore::postgres::PgEventStore::from_pool(as_query.clone()).access_records_only();
    let mut record = crm_eventstore::conformance::request(
        &format!("access-{}", customers[0]),
        crm_eventstore::ExpectedVersion::Any,
        1,
    );
    record.writes[0].events[0].event_type = "PersonalDataRead".into();
    access.append(record).await.expect("an access record");
    let forged = crm_eventstore::conformance::request(
        &format!("customer-{}", customers[0]),
        crm_eventstore::ExpectedVersion::Any,
        1,
    );
    let refused = access.append(forged.clone()).await;
    assert!(
        format!("{refused:?}").contains("access- streams only"),
        "{refused:?}"
    );
    let direct = crm_eventstore::postgres::PgEventStore::from_pool(as_query)
        .append(forged)
        .await;
    assert!(
        format!("{direct:?}").contains("permission denied"),
        "{direct:?}"
    );

    an_auditor_records_verifications_and_nothing_else(&db.url, &auditor, customers[0]).await;

    let keyed_append = keyed_append_sql();
    // The matrix: (role, statement, allowed).
    let matrix: Vec<(&str, &str, bool)> = vec![
        ("crm_writer", &keyed_append, true),
        // The query service may append its access records only: no keys, no events.
        ("crm_query", &keyed_append, false),
        ("crm_auditor", &keyed_append, false),
        ("crm_writer", "SELECT count(*) FROM events", true),
        ("crm_writer", "INSERT INTO events (stream_id, stream_version, event_id, event_type, schema_version, payload, command_id, correlation_id, actor, occurred_at, chain_hash) VALUES ('x', 1, gen_random_uuid(), 'X', 1, '{}', gen_random_uuid(), gen_random_uuid(), 'person:x', now(), '\\x00')", false),
        ("crm_writer", "UPDATE events SET actor = 'person:x'", false),
        ("crm_writer", "DELETE FROM events", false),
        ("crm_writer", "UPDATE subject_keys SET key = key WHERE false", true),
        ("crm_writer", "INSERT INTO global_checkpoints (seq, after_tx, after_position, through_tx, through_position, event_count, leaves, prev_hash, hash, sealed_at) VALUES (99, 0, 0, 0, 0, 1, '\\x', '\\x', '\\x', now())", false),
        ("crm_writer", "SELECT count(*) FROM rm_customers", false),
        ("crm_writer", "CREATE TABLE sneaky (a int)", false),
        ("crm_relay", "SELECT count(*) FROM events", true),
        ("crm_relay", "UPDATE checkpoints SET extra = extra WHERE false", true),
        ("crm_relay", "DELETE FROM events", false),
        ("crm_relay", "SELECT count(*) FROM subject_keys", false),
        ("crm_relay", "SELECT count(*) FROM rm_customers", false),
        ("crm_query", "SELECT count(*) FROM rm_customers", true),
        ("crm_query", "SELECT count(*) FROM subject_keys", true),
        ("crm_query", "UPDATE subject_keys SET key = NULL", false),
        ("crm_query", "DELETE FROM rm_customers", false),
        ("crm_query", "DELETE FROM events", false),
        ("crm_projector", "DELETE FROM rm_customers WHERE false", true),
        ("crm_projector", "SELECT count(*) FROM events", false),
        ("crm_projector", "SELECT count(*) FROM subject_keys", false),
        ("crm_analyst", "SELECT count(*) FROM v_customers", true),
        ("crm_analyst", "SELECT sum(amount) FROM v_purchases", true),
        ("crm_analyst", "SELECT count(*) FROM v_complaints WHERE sla_breached", true),
        ("crm_analyst", "SELECT count(*) FROM rm_purchases", false),
        ("crm_analyst", "SELECT count(*) FROM rm_customers", false),
        ("crm_analyst", "SELECT count(*) FROM rm_timeline", false),
        ("crm_analyst", "SELECT count(*) FROM events", false),
        ("crm_analyst", "SELECT count(*) FROM subject_keys", false),
        ("crm_auditor", "SELECT count(*) FROM events", true),
        ("crm_auditor", "SELECT count(*) FROM global_checkpoints", true),
        ("crm_auditor", "SELECT count(*) FROM v_ownership_periods", true),
        ("crm_auditor", "INSERT INTO checkpoints (name, tx, position) VALUES ('x', 0, 0)", false),
        ("crm_auditor", "SELECT count(*) FROM subject_keys", false),
        ("crm_manager", "SELECT count(*) FROM events", false),
        ("crm_manager", "SELECT count(*) FROM rm_timeline", false),
    ];
    let (mut forbidden, mut refused) = (0, 0);
    for (role, statement, allowed) in &matrix {
        let mut tx = admin.begin().await.unwrap();
        sqlx::query(&format!("SET LOCAL ROLE {role}"))
            .execute(&mut *tx)
            .await
            .unwrap();
        let result = sqlx::query(statement).execute(&mut *tx).await;
        tx.rollback().await.unwrap();
        if *allowed {
            assert!(result.is_ok(), "{role}: {statement}: {result:?}");
        } else {
            forbidden += 1;
            let e = result.expect_err(&format!("{role} may not: {statement}"));
            assert!(
                e.to_string().contains("permission denied"),
                "{role}: {statement}: {e}"
            );
            refused += 1;
        }
    }
    println!("PostgreSQL: {forbidden} forbidden statements, {refused} refused");

    // A manager's own SQL: row-level security shows their customers only.
    let mut tx = admin.begin().await.unwrap();
    sqlx::query("SET LOCAL ROLE crm_manager")
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query("SELECT set_config('crm.manager_id', $1, true)")
        .bind(a.to_string())
        .execute(&mut *tx)
        .await
        .unwrap();
    let seen: Vec<String> = sqlx::query_scalar("SELECT customer_id FROM rm_customers")
        .fetch_all(&mut *tx)
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    assert_eq!(seen, vec![customers[0].to_string()]);
    let all: i64 = sqlx::query_scalar("SELECT count(*) FROM rm_customers")
        .fetch_one(&mut admin)
        .await
        .unwrap();
    assert_eq!(all, 2);
}

/// On CloudNativePG the group roles are managed roles, there before the first migration,
/// and the owner `initdb` makes has no CREATEROLE (which on PostgreSQL 15 is nearly
/// superuser). `crm db migrate` as that owner must work: PostgreSQL refuses `CREATE
/// ROLE` for want of the privilege before it looks whether the role exists, so the
/// migrations create a role only when it is missing.
#[tokio::test]
async fn an_owner_without_createrole_migrates_when_the_roles_exist() {
    let db = TestDatabase::create().await;
    let mut admin = PgConnection::connect(&db.url).await.unwrap();
    for role in [
        "crm_writer",
        "crm_relay",
        "crm_query",
        "crm_auditor",
        "crm_projector",
        "crm_analyst",
        "crm_manager",
    ] {
        // As the operator's managed roles: created by a superuser, beforehand.
        let _ = sqlx::query(&format!("CREATE ROLE {role} NOLOGIN"))
            .execute(&mut admin)
            .await;
    }
    let owner = format!("crm_owner_{}", &Uuid::new_v4().simple().to_string()[..8]);
    let database = db.url.rsplit('/').next().unwrap().to_string();
    for sql in [
        format!("CREATE ROLE \"{owner}\" LOGIN NOCREATEROLE"),
        format!("ALTER DATABASE \"{database}\" OWNER TO \"{owner}\""),
    ] {
        sqlx::query(&sql).execute(&mut admin).await.unwrap();
    }
    let as_owner = url_as(&db.url, &owner);
    let out = Process::new(crm_integration_tests::binary("crm"))
        .args(["db", "migrate", "--store", &as_owner, "--read", &as_owner])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The changed migration keeps the checksum stores migrated before recorded.
    let recorded: Option<Vec<u8>> =
        sqlx::query_scalar("SELECT checksum FROM _sqlx_migrations WHERE version = 6")
            .fetch_optional(&mut admin)
            .await
            .unwrap();
    // Give everything back before asserting, so the role can go whatever happened.
    for sql in [
        format!("REASSIGN OWNED BY \"{owner}\" TO CURRENT_USER"),
        format!("DROP OWNED BY \"{owner}\""),
        format!("DROP ROLE \"{owner}\""),
    ] {
        sqlx::query(&sql).execute(&mut admin).await.unwrap();
    }
    assert!(
        out.status.success(),
        "crm db migrate as an owner without CREATEROLE: {text}"
    );
    assert!(text.contains("read models: migrated"), "{text}");
    assert_eq!(
        recorded.map(hex::encode).as_deref(),
        Some(crm_eventstore::migrations::ROLES_FIRST_CHECKSUM)
    );
}

/// `crm audit verify` as an auditor's read-only role: it verifies, and records its result
/// through `crm_append_verification`; that wrapper takes nothing else.
async fn an_auditor_records_verifications_and_nothing_else(
    db_url: &str,
    auditor: &str,
    customer: CustomerId,
) {
    let out = Process::new(crm_integration_tests::binary("crm"))
        .args([
            "audit",
            "verify",
            "--migrate",
            "off",
            "--actor",
            "person:auditor.zhou",
        ])
        .args(["--store", &url_as(db_url, auditor)])
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(
        stderr.contains("recorded as verification #1 by person:auditor.zhou"),
        "{stderr}"
    );
    let admin = crm_eventstore::postgres::PgEventStore::connect(db_url, 1)
        .await
        .unwrap();
    let last = crm_audit::verification::last(&admin)
        .await
        .unwrap()
        .expect("the verification recorded");
    assert_eq!(
        (last.number, last.actor.as_str()),
        (1, "person:auditor.zhou")
    );
    assert!(last.result.ok && last.result.events > 0, "{last:?}");

    let as_auditor = sqlx::PgPool::connect(&url_as(db_url, auditor))
        .await
        .unwrap();
    let restricted = crm_eventstore::postgres::PgEventStore::from_pool(as_auditor.clone())
        .verification_records_only();
    for (stream, event_type) in [
        (format!("customer-{customer}"), "ChainVerified"),
        ("verification-chain".to_string(), "PersonalDataRead"),
    ] {
        let mut forged =
            crm_eventstore::conformance::request(&stream, crm_eventstore::ExpectedVersion::Any, 1);
        forged.writes[0].events[0].event_type = event_type.into();
        let refused = restricted.append(forged.clone()).await;
        assert!(
            format!("{refused:?}").contains("verification-chain only"),
            "{stream} {event_type}: {refused:?}"
        );
        let direct = crm_eventstore::postgres::PgEventStore::from_pool(as_auditor.clone())
            .append(forged)
            .await;
        assert!(
            format!("{direct:?}").contains("permission denied"),
            "{direct:?}"
        );
    }
}

/// crm_append with subjects' first keys (migration 9), called with nothing to append.
fn keyed_append_sql() -> String {
    let types = [
        "bigint",
        "uuid",
        "text",
        "bigint",
        "bytea",
        "text",
        "text",
        "text",
        "bigint",
        "text",
        "text",
        "bigint",
        "uuid",
        "text",
        "int",
        "jsonb",
        "uuid",
        "uuid",
        "uuid",
        "text",
        "timestamptz",
        "bytea",
        "uuid",
        "text",
        "text",
        "text",
        "text",
        "text",
        "text",
        "bigint",
        "text",
        "bytea",
    ];
    let args: Vec<String> = types.iter().map(|t| format!("'{{}}'::{t}[]")).collect();
    format!("SELECT * FROM crm_append({})", args.join(", "))
}

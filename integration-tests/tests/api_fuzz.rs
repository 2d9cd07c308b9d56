//! Each HTTP service fuzzed against its own OpenAPI document by schemathesis (pinned,
//! installed by `scripts/services`): thousands of generated requests, valid and not, and
//! every answer must be no server error, a documented status with a documented content
//! type and headers, and a body of the documented schema.
//!
//! The command service's document is generated from the contract (rules included); the
//! query service's from its handlers and the row types they answer (ADR 0010), fuzzed
//! over a demo's day of data, and every operation also called with real ids.

use std::process::Command;

use crm_integration_tests::contract_tools::client_tools;
use crm_integration_tests::{Platform, Service};

/// The checks that hold for any valid input (the document cannot express every business
/// rule, so a schema-valid command may still be refused: positive acceptance is not one).
const CHECKS: &str = "not_a_server_error,response_schema_conformance,status_code_conformance,\
content_type_conformance,response_headers_conformance";

/// Run schemathesis against `base`; how many cases it generated.
fn fuzz(base: &str, examples: &str) -> u64 {
    let seed = std::env::var("CRM_TEST_SEED").unwrap_or_else(|_| "20261207".into());
    let out = Command::new(client_tools().join("python/bin/schemathesis"))
        .args(["run", &format!("{base}/openapi.json"), "--url", base])
        .args([
            "--checks",
            CHECKS,
            "--max-examples",
            examples,
            "--seed",
            &seed,
        ])
        .args(["--no-color"])
        .output()
        .expect("run schemathesis");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "schemathesis found failures (seed {seed}):\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = text
        .lines()
        .find(|l| l.contains(" generated, "))
        .unwrap_or_else(|| panic!("no summary:\n{text}"));
    let numbers: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect();
    assert!(
        numbers.len() == 2 && numbers[0] == numbers[1],
        "every case passes: {line}"
    );
    eprintln!("schemathesis {base}: {line}");
    numbers[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_service_answers_as_its_openapi_says() {
    let platform = Platform::new().await;
    let mut service = Service::start(
        "crm-command-service",
        &["--http-addr", "127.0.0.1:0"],
        &platform.env(),
    );
    let base = service.http_base().await;
    let cases = tokio::task::spawn_blocking(move || fuzz(&base, "25"))
        .await
        .unwrap();
    assert!(cases > 1_000, "{cases} cases for 25 commands");
}

/// The query service over a demo's day (customers, owners, the pool, contacts,
/// complaints in every state, erasures): schemathesis's generated requests, then every
/// operation called with real ids and each value of its enum parameters, each answer
/// validated against the document (`scripts/validate-answers.py`): a fuzzer's random ids
/// find nothing, so the second is what shows the rows answered match their schemas.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_query_service_answers_as_its_openapi_says() {
    let db = crm_eventstore::testing::TempPath::new("crm-query-fuzz");
    let store = db.0.to_str().unwrap().to_string();
    let out = Command::new(crm_integration_tests::binary("crm"))
        .args(["demo", "--customers", "120", "--db", &store])
        .output()
        .expect("run the demo");
    assert!(
        out.status.success(),
        "the demo failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let read = format!("{}.read.db", store.trim_end_matches(".db"));
    let _read_db = crm_eventstore::testing::TempPath(read.clone().into());
    let env = vec![
        ("CRM_AUTH", "off".to_string()),
        ("CRM_STORE_URL", format!("sqlite://{store}")),
        ("CRM_READ_URL", format!("sqlite://{read}")),
    ];
    let mut query = Service::start("crm-query", &["--http-addr", "127.0.0.1:0"], &env);
    let base = query.http_base().await;
    let b = base.clone();
    let cases = tokio::task::spawn_blocking(move || fuzz(&b, "20"))
        .await
        .unwrap();
    assert!(cases > 500, "{cases} cases");
    let out = Command::new(client_tools().join("python/bin/python"))
        .arg(repo().join("integration-tests/scripts/validate-answers.py"))
        .arg(&base)
        .output()
        .expect("run validate-answers.py");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "an answer does not match the document:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answers: u64 = text
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count: {text}"));
    eprintln!("validate-answers {base}: {text}");
    assert!(answers > 80, "{answers} answers validated");
}

fn repo() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

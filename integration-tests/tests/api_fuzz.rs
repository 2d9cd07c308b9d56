//! Each HTTP service fuzzed against its own OpenAPI document by schemathesis (pinned,
//! installed by `scripts/services`): thousands of generated requests, valid and not, and
//! every answer must be no server error, a documented status with a documented content
//! type and headers, and a body of the documented schema.
//!
//! The command service's document is generated from the contract (rules included); the
//! query service's is written by hand and its rows are untyped (issue 23: a typed query
//! API is still to come), so its answers are checked for status and shape only, over
//! empty read models.

use std::process::Command;

use crm_eventstore::testing::TestDatabase;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_query_service_answers_as_its_openapi_says() {
    let store = TestDatabase::create().await;
    let read = TestDatabase::create().await;
    let env = vec![
        ("CRM_STORE_URL", store.url.clone()),
        ("CRM_READ_URL", read.url.clone()),
    ];
    let mut query = Service::start("crm-query", &["--http-addr", "127.0.0.1:0"], &env);
    let base = query.http_base().await;
    let cases = tokio::task::spawn_blocking(move || fuzz(&base, "20"))
        .await
        .unwrap();
    assert!(cases > 500, "{cases} cases");
}

//! The clients in `clients/` as another team uses them, against the running platform
//! (the command service and the relay as processes, PostgreSQL, NATS JetStream): built
//! from `proto/`, they send commands over NATS as protobuf and as standard proto3 JSON,
//! repeat one by its command id, handle refusals by code (one found first by the
//! contract's own rule, checked locally), and read the customer's events from JetStream
//! through a durable consumer, decoded into the generated types.

use std::path::{Path, PathBuf};
use std::process::Command;

use crm_eventstore::postgres::PgEventStore;
use crm_eventstore::Streams;
use crm_integration_tests::contract_tools::client_tools;
use crm_integration_tests::manifests::{run, scratch_dir};
use crm_integration_tests::{Platform, Service};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The command service and the relay on a fresh database, stream and subject prefix.
async fn platform() -> (Platform, Service, Service) {
    let platform = Platform::new().await;
    let mut env = platform.env();
    env.push((
        "CRM_INTAKE",
        format!("{}_INTAKE", platform.stream.spec.name),
    ));
    env.push(("CRM_OUTCOMES", outcomes(&platform)));
    let mut service = Service::start("crm-command-service", &["--http-addr", "127.0.0.1:0"], &env);
    let mut relay = Service::start("crm-relay", &[], &platform.env());
    service.wait_ready().await;
    relay.wait_ready().await;
    (platform, service, relay)
}

/// The outcomes stream of a test's platform (the clients are told it as `CRM_OUTCOMES`).
fn outcomes(platform: &Platform) -> String {
    format!("{}_OUTCOMES", platform.stream.spec.name)
}

/// A walkthrough's settings: the platform's, and its outcomes stream.
fn client_env(platform: &Platform) -> Vec<(&'static str, String)> {
    let mut env = platform.env();
    env.push(("CRM_OUTCOMES", outcomes(platform)));
    env
}

/// What each walkthrough reports: the same refusals, rule and events in every language,
/// and the events it read are what the store holds for its customer.
async fn check_summary(platform: &Platform, stdout: &str) {
    let summary: serde_json::Value = serde_json::from_str(stdout.trim()).expect("its summary");
    assert_eq!(
        summary["refusals"],
        serde_json::json!({
            "no_contact_key": "customer.contact_key_required",
            "assign_twice": "ownership.already_owned",
        })
    );
    assert_eq!(
        summary["local_rules"],
        serde_json::json!(["customer.contact_key_required"]),
        "protovalidate finds the rule the platform refuses by"
    );
    let day = [
        "CustomerRegistered",
        "OwnerAssigned",
        "ContactRecorded",
        "LifecycleStageChanged",
    ];
    assert_eq!(summary["events"], serde_json::json!(day));
    assert_eq!(
        summary["intake"],
        serde_json::json!(["ContactRecorded", "LifecycleStageChanged"]),
        "the contact published to the intake was decided and its outcome read back"
    );
    let store = PgEventStore::connect(&platform.db.url, 1).await.unwrap();
    let stream = format!("customer-{}", summary["customer_id"].as_str().unwrap());
    let stored = store.read_stream(&stream, 0).await.unwrap();
    let types: Vec<&str> = stored.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(types, day);
}

fn succeeded(output: &std::process::Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{what} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_client_against_the_platform() {
    let (platform, _service, _relay) = platform().await;
    let venv = client_tools().join("python/bin");
    let path = format!(
        "{}:{}",
        venv.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let generated = scratch_dir("python-client");
    let (ok, out) = run(Command::new(repo().join("clients/python/generate"))
        .arg(&generated)
        .env("PATH", &path));
    assert!(ok, "clients/python/generate:\n{out}");

    let pythonpath = format!(
        "{}:{}",
        generated.display(),
        repo().join("clients/python/src").display()
    );
    let output = Command::new(venv.join("python"))
        .arg(repo().join("clients/python/examples/walkthrough.py"))
        .env("PYTHONPATH", pythonpath)
        .envs(client_env(&platform))
        .output()
        .expect("run the walkthrough");
    check_summary(&platform, &succeeded(&output, "the Python walkthrough")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_typescript_client_against_the_platform() {
    let (platform, _service, _relay) = platform().await;
    // The client's sources in a directory of their own, with the pinned node_modules.
    let dir = scratch_dir("typescript-client");
    for entry in [
        "package.json",
        "tsconfig.json",
        "buf.gen.yaml",
        "src",
        "examples",
    ] {
        let (ok, out) = run(Command::new("cp")
            .arg("-r")
            .arg(repo().join("clients/typescript").join(entry))
            .arg(&dir));
        assert!(ok, "{out}");
    }
    let modules = client_tools().join("typescript/node_modules");
    std::os::unix::fs::symlink(&modules, dir.join("node_modules")).unwrap();
    let bin = |name: &str| modules.join(".bin").join(name);
    let path = format!(
        "{}:{}",
        modules.join(".bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let (ok, out) = run(Command::new(bin("buf"))
        .current_dir(&dir)
        .env("PATH", &path)
        .arg("generate")
        .arg(repo().join("proto"))
        .args(["--template", "buf.gen.yaml"]));
    assert!(ok, "buf generate:\n{out}");
    let (ok, out) = run(Command::new(bin("tsc")).current_dir(&dir).args(["-p", "."]));
    assert!(ok, "tsc:\n{out}");
    let output = Command::new("node")
        .current_dir(&dir)
        .arg("dist/examples/walkthrough.js")
        .envs(client_env(&platform))
        .output()
        .expect("run the walkthrough");
    check_summary(&platform, &succeeded(&output, "the TypeScript walkthrough")).await;
}

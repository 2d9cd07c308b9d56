//! Secrets are never printed: every service (and `crm db migrate`, `crm projections`,
//! `crm audit`, `crm load`) started with a
//! password in its database and NATS URLs, a token secret and an index key, against a
//! database that does not exist, fails to start, and nothing it wrote (errors,
//! backtraces, logs) holds any of them; nor does its `--help`, with them in its
//! environment. Every service answers `--version`.

use std::process::Command;
use std::time::Duration;

use crm_integration_tests::{binary, Service};

const MARK: &str = "Sekr3tMark";
/// The workbench's session key: hex, so it cannot carry the mark; looked for itself.
const WORKBENCH_KEY: &str = "5e6b72a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1";

fn env() -> Vec<(&'static str, String)> {
    let db = format!("no_such_db_{}", uuid::Uuid::new_v4().simple());
    let pg = format!("postgres://postgres:{MARK}-pg@127.0.0.1:5432/{db}");
    vec![
        ("CRM_STORE_URL", pg.clone()),
        ("CRM_READ_URL", pg),
        (
            "CRM_NATS_URL",
            format!("nats://crm:{MARK}-nats@127.0.0.1:4222"),
        ),
        (
            "CRM_AUTH_HS256_SECRET",
            format!("{MARK}-token-secret-0123456789abcdef"),
        ),
        ("CRM_AUTH_ISSUER", "crm-test".into()),
        (
            "CRM_INDEX_KEY",
            format!("{MARK}-index-key-0123456789abcdef"),
        ),
        ("CRM_TOKEN", format!("{MARK}-bearer")),
        (
            "CRM_COMMAND_URL",
            format!("http://u:{MARK}-cmd@127.0.0.1:1"),
        ),
        (
            "CRM_QUERY_URL",
            format!("http://u:{MARK}-query@127.0.0.1:1"),
        ),
        (
            "CRM_BENCH_PG_URL",
            format!("postgres://postgres:{MARK}-bench@127.0.0.1:5432/postgres"),
        ),
        // The workbench's session key and its client secret at the identity provider.
        ("CRM_WORKBENCH_KEY", WORKBENCH_KEY.into()),
        (
            "CRM_WORKBENCH_OIDC_CLIENT_SECRET",
            format!("{MARK}-oidc-client-secret"),
        ),
        ("RUST_BACKTRACE", "1".into()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_service_prints_a_secret_when_it_cannot_start() {
    // Nobody listens on port 1: `crm load` cannot reach its NATS.
    let load_nats = format!("nats://crm:{MARK}-load@127.0.0.1:1");
    let runs: [(&str, &[&str]); 9] = [
        ("crm-command-service", &["--http-addr", "127.0.0.1:0"]),
        ("crm-relay", &[]),
        ("crm-scheduler", &[]),
        ("crm-projector", &["--http-addr", "127.0.0.1:0"]),
        ("crm-query", &["--http-addr", "127.0.0.1:0"]),
        ("crm", &["db", "migrate"]),
        ("crm", &["projections", "rebuild", "ownership"]),
        ("crm", &["audit", "verify"]),
        ("crm", &["load", "--nats", &load_nats, "--commands", "1"]),
    ];
    for (bin, args) in runs {
        let mut s = Service::start(bin, args, &env());
        let exited = s.wait_exit(Duration::from_secs(60)).await;
        let out = s.output();
        assert!(
            exited.is_some_and(|status| !status.success()),
            "{bin} should refuse to start without its database: {out}"
        );
        assert!(!out.is_empty(), "{bin} says why it stopped");
        assert!(
            !out.contains(MARK) && !out.contains(WORKBENCH_KEY),
            "{bin} printed a secret:\n{out}"
        );
    }
}

#[test]
fn no_help_shows_a_secret_from_the_environment() {
    for bin in [
        "crm-command-service",
        "crm-relay",
        "crm-scheduler",
        "crm-projector",
        "crm-query",
    ] {
        let out = Command::new(binary(bin))
            .arg("--help")
            .envs(env())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{bin} --help");
        assert!(
            !text.contains(MARK) && !text.contains(WORKBENCH_KEY),
            "{bin} --help shows a secret:\n{text}"
        );
        let version = Command::new(binary(bin)).arg("--version").output().unwrap();
        assert_eq!(
            String::from_utf8_lossy(&version.stdout).trim(),
            format!("{bin} {}", env!("CARGO_PKG_VERSION")),
            "{bin} --version"
        );
    }
    let subcommands: [&[&str]; 9] = [
        &["db", "migrate"],
        &["projections", "rebuild"],
        &["projections", "verify"],
        &["load"],
        &["token"],
        &["bench", "append"],
        &["bench", "read"],
        &["bench", "queries"],
        &["bench", "analytics"],
    ];
    for sub in subcommands {
        let out = Command::new(binary("crm"))
            .args(sub)
            .arg("--help")
            .envs(env())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "crm {sub:?} --help");
        assert!(
            !text.contains(MARK),
            "crm {sub:?} --help shows a secret:\n{text}"
        );
    }
}

/// Configuration is read in `main` only: no library reads the environment (each setting
/// is an option of the service's command line, so `--help` lists it). Test support
/// (`testing.rs`, the conformance suite's seed) and build scripts excepted.
#[test]
fn no_library_reads_the_environment() {
    let libs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../libs");
    let mut readers = Vec::new();
    let mut stack = vec![libs];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("libs").flatten() {
            let path = entry.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if path.is_dir() {
                if !["tests", "benches", "target"].contains(&name) {
                    stack.push(path);
                }
                continue;
            }
            if !name.ends_with(".rs")
                || ["testing.rs", "conformance.rs", "build.rs"].contains(&name)
            {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("source");
            if text.contains("env::var") {
                readers.push(path.display().to_string());
            }
        }
    }
    assert!(
        readers.is_empty(),
        "libraries read the environment: {readers:?}"
    );
}

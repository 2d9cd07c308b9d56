//! Operations: every service's `/metrics`, after real work, passes `promtool check
//! metrics`; the shipped Prometheus configuration and alert rules pass `promtool check
//! config` / `check rules` (`deploy/prometheus/`). `scripts/services` installs promtool
//! (Debian package `prometheus`) when it is missing.

use std::io::Write as _;
use std::process::{Command as Process, Stdio};

use crm_integration_tests::{Platform, Service};
use uuid::Uuid;

fn promtool(args: &[&str], stdin: Option<&str>) -> (bool, String) {
    let mut child = Process::new("promtool")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (apt-get install prometheus; scripts/services installs it)");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_service_exposes_clean_metrics_and_the_shipped_config_checks() {
    let deploy = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/prometheus");
    let (ok, out) = promtool(
        &["check", "config", &format!("{deploy}/prometheus.yml")],
        None,
    );
    assert!(ok, "{out}");
    let (ok, out) = promtool(&["check", "rules", &format!("{deploy}/alerts.yml")], None);
    assert!(ok, "{out}");

    let platform = Platform::new().await;
    let mut env = platform.env();
    env.push(("CRM_READ_URL", platform.db.url.clone()));
    env.push(("CRM_CHECKPOINT_EVERY", "1".into()));
    let http = ["--http-addr", "127.0.0.1:0"];
    let mut services = [
        ("http", Service::start("crm-command-service", &http, &env)),
        ("metrics", Service::start("crm-relay", &[], &env)),
        ("http", Service::start("crm-projector", &http, &env)),
        ("http", Service::start("crm-query", &http, &env)),
        ("metrics", Service::start("crm-scheduler", &[], &env)),
    ];
    let mut addrs = Vec::new();
    for (key, s) in services.iter_mut() {
        let ready = s.wait_ready().await;
        addrs.push((s.name.clone(), ready[*key].as_str().unwrap().to_string()));
    }
    // Some real work first, so counters and histograms have samples and labels.
    let client = reqwest::Client::new();
    let body = serde_json::json!({
        "meta": {"command_id": Uuid::now_v7().to_string(), "actor": "person:ops"},
        "manager_id": Uuid::now_v7().to_string(), "name": "Li Wei", "role": "manager",
        "team": "east-1", "region": "east", "branch": "sh-01", "holding_limit": 50
    });
    let r = client
        .post(format!(
            "http://{}/v1/commands/register_manager",
            addrs[0].1
        ))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let refused = client
        .post(format!("http://{}/v1/commands/assign_owner", addrs[0].1))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;

    for (name, addr) in &addrs {
        let text = client
            .get(format!("http://{addr}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        // The query service records no metrics of its own yet: an empty page is valid.
        assert!(
            text.contains("# TYPE") || name == "crm-query",
            "{name}: {text}"
        );
        let (ok, out) = promtool(&["check", "metrics"], Some(&text));
        println!(
            "{name}: {} metric lines, promtool: {}",
            text.lines().count(),
            if out.trim().is_empty() {
                "clean"
            } else {
                out.trim()
            }
        );
        assert!(ok && out.trim().is_empty(), "{name}: {out}");
    }
}

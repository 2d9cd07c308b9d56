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
    let q = client
        .get(format!("http://{}/v1/pool", addrs[3].1))
        .send()
        .await
        .unwrap();
    assert_eq!(q.status(), 200);
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
        // Every service: its process's figures; the HTTP services: requests by route.
        let build = format!("crm_build_info{{version=\"{}\"", env!("CARGO_PKG_VERSION"));
        for needle in [
            "process_cpu_seconds_total",
            "process_resident_memory_bytes",
            &build,
        ] {
            assert!(text.contains(needle), "{name}: {needle} missing:\n{text}");
        }
        if name == "crm-command-service" || name == "crm-query" {
            assert!(
                text.contains("crm_http_requests_total{service="),
                "{name}: {text}"
            );
        }
        // The probes answer on the same address.
        for probe in ["livez", "readyz"] {
            let r = client
                .get(format!("http://{addr}/{probe}"))
                .send()
                .await
                .unwrap();
            assert_eq!(
                r.status(),
                200,
                "{name} /{probe}: {}",
                r.text().await.unwrap()
            );
        }
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

/// Every `crm_*` metric name in `text`, with the Prometheus suffixes of histograms taken
/// off.
fn metric_names(text: &str) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find("crm_") {
        let start = i + at;
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_lowercase() || bytes[end] == b'_') {
            end += 1;
        }
        let name = &text[start..end];
        let name = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(name);
        out.insert(name.to_string());
        i = end.max(start + 4);
    }
    out
}

#[test]
fn the_grafana_dashboard_and_alerts_query_metrics_the_services_export() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let exported = metric_names(
        &std::fs::read_to_string(format!("{root}/libs/telemetry/src/lib.rs")).unwrap(),
    );
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(format!(
            "{root}/deploy/grafana/dashboards/crm-platform.json"
        ))
        .unwrap(),
    )
    .expect("the dashboard is JSON");
    let exprs: Vec<String> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .map(|t| t["expr"].as_str().unwrap().to_string())
        .collect();
    assert!(exprs.len() >= 15, "{} queries", exprs.len());
    let alerts = std::fs::read_to_string(format!("{root}/deploy/prometheus/alerts.yml")).unwrap();
    for (what, text) in [("dashboard", exprs.join("\n")), ("alerts", alerts)] {
        let unknown: Vec<_> = metric_names(&text).difference(&exported).cloned().collect();
        assert!(
            unknown.is_empty(),
            "the {what} queries metrics no service exports: {unknown:?}"
        );
    }
    // Every query parses: promtool checks them as recording rules.
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, e) in exprs.iter().enumerate() {
        rules.push_str(&format!(
            "      - record: crm_dashboard_query_{i}\n        expr: {}\n",
            serde_json::to_string(e).unwrap()
        ));
    }
    let file = std::env::temp_dir().join(format!("dashboard-{}.rules.yml", uuid::Uuid::new_v4()));
    std::fs::write(&file, rules).unwrap();
    let (ok, out) = promtool(&["check", "rules", file.to_str().unwrap()], None);
    let _ = std::fs::remove_file(&file);
    assert!(ok, "dashboard queries: {out}");
    println!(
        "{} dashboard queries parse and use {} exported metrics",
        exprs.len(),
        metric_names(&exprs.join("\n")).len()
    );
}

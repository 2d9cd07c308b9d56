//! The shipped deployment defaults are safe: `deploy/compose/compose.yml`,
//! `deploy/k8s/*.yaml` and what helm renders from `deploy/k8s/30-nats-values.yaml` (the
//! official NATS chart's copy in `deploy/k8s/charts/nats`), read as files (no services
//! needed; the tools `scripts/services` installs: `src/manifests.rs`).
//!
//! One bad default and the command ingress is open: a NATS port published on every
//! interface with no users, an example secret that works if left as is, the HS256 key in
//! a pod that never verifies a token (whoever holds it mints an admin token), Grafana
//! open to anonymous visitors. People copy these files, so each test names every default
//! that breaks a rule of `docs/operations.md` ("Security", "Deployment"):
//!
//! - nothing listens unauthenticated beyond loopback: compose publishes ports on
//!   127.0.0.1 only, NATS runs with the users of `deploy/nats/auth.conf` (and refuses to
//!   start on an empty password in Kubernetes, where nats-server would let the user name
//!   alone in), Grafana asks for a login;
//! - every secret comes from the environment (`${VAR:?…}`, so compose refuses to start
//!   without it) or from a Secret, never as a literal, and the example Secret holds no
//!   value that would start anything;
//! - each process holds only the secrets it uses (the HS256 key: command service and
//!   query; the index key: command service and scheduler);
//! - every Deployment has its readiness (`/readyz`) and liveness (`/livez`) probes, and a
//!   grace period its shutdown (`preStop` pause + `CRM_SHUTDOWN_GRACE`) fits in;
//! - every object is valid for its kind (kubernetes-validate, strict; CloudNativePG's
//!   kinds against their CRDs in `deploy/k8s/schemas`), every container has requests and
//!   limits, every workload of more than one replica a disruption budget;
//! - CloudNativePG manages every database login the services use, which they reach over
//!   verified TLS;
//! - the NATS chart's values ask for a three-node JetStream cluster with its disruption
//!   budget, lame duck and exporter on the pinned server, and render a configuration that
//!   nats-server accepts with the users of `auth.conf`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crm_integration_tests::manifests::{k8s_tool, pinned_nats_server, run, scratch_dir};

use serde::Deserialize as _;
use serde_norway::Value;

/// The secrets each service reads (docs/operations.md, "Configuration"); a service is
/// given no other.
const USES: &[(&str, &[&str])] = &[
    (
        "command-service",
        &[
            "CRM_STORE_URL",
            "CRM_NATS_URL",
            "CRM_AUTH_HS256_SECRET",
            "CRM_AUTH_ISSUER",
            "CRM_INDEX_KEY",
        ],
    ),
    (
        "query",
        &[
            "CRM_READ_URL",
            "CRM_STORE_URL",
            "CRM_AUTH_HS256_SECRET",
            "CRM_AUTH_ISSUER",
        ],
    ),
    ("relay", &["CRM_STORE_URL", "CRM_NATS_URL"]),
    ("projector", &["CRM_READ_URL", "CRM_NATS_URL"]),
    ("scheduler", &["CRM_STORE_URL", "CRM_INDEX_KEY"]),
];

/// Who may hold the token-signing key and the index key: those that verify tokens, and
/// those that compute the duplicate-check index.
const MAY_HOLD: &[(&str, &[&str])] = &[
    ("CRM_AUTH_HS256_SECRET", &["command-service", "query"]),
    ("CRM_INDEX_KEY", &["command-service", "scheduler"]),
];

/// The prefix of the Secret keys that hold each service's own logins (`RELAY_STORE_URL`):
/// a service never receives another's database or NATS login.
const LOGIN_PREFIX: &[(&str, &str)] = &[
    ("command-service", "COMMAND_"),
    ("query", "QUERY_"),
    ("relay", "RELAY_"),
    ("projector", "PROJECTOR_"),
    ("scheduler", "SCHEDULER_"),
];

/// What the command and query services wait for accepted work on SIGTERM when
/// `CRM_SHUTDOWN_GRACE` is not set.
const DEFAULT_SHUTDOWN_GRACE: u64 = 20;

#[test]
fn compose_publishes_nothing_beyond_loopback() {
    let compose = compose();
    let mut problems = Vec::new();
    for (name, service) in compose_services(&compose) {
        if service.get("network_mode").and_then(Value::as_str) == Some("host") {
            problems.push(format!(
                "compose service {name}: network_mode host listens on every interface of the host"
            ));
        }
        let ports = service.get("ports").and_then(Value::as_sequence);
        for port in ports.into_iter().flatten() {
            let on_loopback = match port {
                Value::String(short) => interpolated(short).starts_with("127.0.0.1:"),
                Value::Mapping(_) => {
                    port.get("host_ip").and_then(Value::as_str) == Some("127.0.0.1")
                }
                _ => false,
            };
            if !on_loopback {
                problems.push(format!(
                    "compose service {name} publishes {} beyond loopback: bind it to 127.0.0.1 (\"127.0.0.1:PORT:PORT\")",
                    match port {
                        Value::Mapping(_) => format!(
                            "{}:{} (host_ip {:?})",
                            str_at(port, "published"),
                            str_at(port, "target"),
                            str_at(port, "host_ip")
                        ),
                        _ => scalar(port),
                    }
                ));
            }
        }
    }
    assert_none(problems);
}

#[test]
fn compose_nats_requires_authentication() {
    let compose = compose();
    let mut problems = Vec::new();
    let services = compose_services(&compose);
    let servers: Vec<_> = services
        .iter()
        .filter(|(_, s)| image(s).starts_with("nats"))
        .collect();
    if servers.is_empty() {
        problems.push("compose runs no NATS server (image nats)".to_string());
    }
    let auth = read(&deploy().join("nats/auth.conf"));
    for (name, server) in servers {
        let args = strings_of(server.get("command"));
        let config = args
            .iter()
            .position(|a| a == "-c" || a == "--config")
            .and_then(|i| args.get(i + 1));
        let Some(config) = config else {
            problems.push(format!(
                "compose service {name}: NATS runs without a configuration (-c), so without the users of deploy/nats/auth.conf"
            ));
            continue;
        };
        match host_path(server, config) {
            None => problems.push(format!(
                "compose service {name}: its configuration {config} is not mounted from deploy/"
            )),
            Some(file) => {
                let text = read(&file);
                if !includes_auth(&text) || !file.with_file_name("auth.conf").exists() {
                    problems.push(format!(
                        "compose service {name}: {} does not include auth.conf (the service users and their permissions)",
                        file.display()
                    ));
                }
                if active_lines(&text).any(|l| l.contains("no_auth_user")) {
                    problems.push(format!(
                        "compose service {name}: {} lets clients in without a user (no_auth_user)",
                        file.display()
                    ));
                }
            }
        }
        // nats-server reads the passwords of auth.conf from its environment.
        let env = compose_env(server);
        for var in auth_password_vars(&auth) {
            if !env.contains_key(&var) {
                problems.push(format!(
                    "compose service {name}: {var} (a password of deploy/nats/auth.conf) is not passed to NATS"
                ));
            }
        }
    }
    for (name, service) in &services {
        let env = compose_env(service);
        let Some(url) = env.get("CRM_NATS_URL") else {
            continue;
        };
        let inbox = env.get("CRM_NATS_INBOX").map_or("unset", String::as_str);
        for server in interpolated(url).split(',') {
            match nats_user(server) {
                None => problems.push(format!(
                    "compose service {name}: CRM_NATS_URL {url} connects without a user and password"
                )),
                Some(user) if inbox != format!("_INBOX.{user}") => {
                    problems.push(format!(
                        "compose service {name}: connects as NATS user {user} but CRM_NATS_INBOX is {inbox}, not _INBOX.{user} (its replies would be refused)"
                    ))
                }
                Some(_) => {}
            }
        }
    }
    assert_none(problems);
}

#[test]
fn grafana_asks_for_a_login() {
    let compose = compose();
    let mut problems = Vec::new();
    let grafanas: Vec<_> = compose_services(&compose)
        .into_iter()
        .filter(|(_, s)| image(s).contains("grafana"))
        .collect();
    for (name, grafana) in grafanas {
        let env = compose_env(grafana);
        let anonymous = env.get("GF_AUTH_ANONYMOUS_ENABLED").is_some_and(|v| {
            matches!(v.to_ascii_lowercase().as_str(), "true" | "1" | "yes" | "on")
        });
        if anonymous {
            problems.push(format!(
                "compose service {name}: anonymous access is on (GF_AUTH_ANONYMOUS_ENABLED): anyone reaching it reads the dashboards"
            ));
        }
        match env.get("GF_SECURITY_ADMIN_PASSWORD") {
            Some(v) if is_required_env(v) => {}
            _ => problems.push(format!(
                "compose service {name}: the admin password must come from the environment (GF_SECURITY_ADMIN_PASSWORD: ${{GRAFANA_ADMIN_PASSWORD:?…}}); Grafana's default is admin/admin"
            )),
        }
    }
    assert_none(problems);
}

#[test]
fn compose_secrets_come_from_the_environment() {
    let compose = compose();
    let mut problems = Vec::new();
    let mut environments = Vec::new();
    find_key(&compose, "environment", "", &mut environments);
    for (path, environment) in environments {
        for (name, value) in env_entries(environment) {
            if is_secret_name(&name) && !is_required_env(&value) {
                problems.push(format!(
                    "compose {path}.{name} is {}: take it from the environment (${{{name}:?set {name}}}) so compose refuses to start without it",
                    describe(&value)
                ));
            }
            if name == "CRM_AUTH" && value == "off" {
                problems.push(format!(
                    "compose {path}.CRM_AUTH is off: every caller would be trusted"
                ));
            }
        }
    }
    let mut strings = Vec::new();
    all_strings(&compose, "", &mut strings);
    for (path, text) in strings {
        for password in url_passwords(&interpolated(&text)) {
            if password != REQUIRED.to_string() {
                problems.push(format!(
                    "compose {path}: a URL carries {} as its password: take it from the environment (${{…_PASSWORD:?…}})",
                    describe(&password)
                ));
            }
        }
    }
    assert_none(problems);
}

#[test]
fn k8s_secret_example_holds_no_value() {
    let mut problems = Vec::new();
    let mut secrets = 0;
    for (file, object) in k8s_objects() {
        if kind(&object) != "Secret" {
            continue;
        }
        secrets += 1;
        for field in ["stringData", "data"] {
            let Some(data) = object.get(field).and_then(Value::as_mapping) else {
                continue;
            };
            for (key, value) in data {
                // A login's user name is no secret (CloudNativePG reads it beside the
                // password, and it must name the role).
                let basic_auth = str_at(&object, "type") == "kubernetes.io/basic-auth";
                if basic_auth && scalar(key) == "username" {
                    continue;
                }
                if !scalar(value).is_empty() {
                    problems.push(format!(
                        "{file}: Secret {}: {} is {} — an example value starts a service if left as is; leave it empty (\"\")",
                        name_of(&object),
                        scalar(key),
                        describe(&scalar(value))
                    ));
                }
            }
        }
    }
    assert!(secrets > 0, "deploy/k8s holds no Secret example");
    assert_none(problems);
}

#[test]
fn k8s_secrets_come_from_secrets() {
    let mut problems = Vec::new();
    for (file, object) in k8s_objects() {
        if kind(&object) == "ConfigMap" {
            let data = object.get("data").and_then(Value::as_mapping);
            for (key, value) in data.into_iter().flatten() {
                let (key, value) = (scalar(key), scalar(value));
                if is_secret_name(&key) {
                    problems.push(format!(
                        "{file}: ConfigMap {} holds the secret {key}: put it in a Secret",
                        name_of(&object)
                    ));
                }
                if key == "CRM_AUTH" && value == "off" {
                    problems.push(format!(
                        "{file}: ConfigMap {}: CRM_AUTH is off: every caller would be trusted",
                        name_of(&object)
                    ));
                }
                for line in active_lines(&value) {
                    if url_passwords(line).iter().any(|p| !is_k8s_reference(p)) {
                        problems.push(format!(
                            "{file}: ConfigMap {} key {key}: a URL with a literal password: put it in a Secret",
                            name_of(&object)
                        ));
                    }
                }
            }
        }
        let Some(pod) = pod_spec(&object) else {
            continue;
        };
        for container in containers(pod) {
            let where_ = format!(
                "{file}: {} {} container {}",
                kind(&object),
                name_of(&object),
                str_at(container, "name")
            );
            let env = container.get("env").and_then(Value::as_sequence);
            for entry in env.into_iter().flatten() {
                let name = str_at(entry, "name");
                let literal = entry.get("value").map(scalar);
                if is_secret_name(&name) && (literal.is_some() || secret_key_ref(entry).is_none()) {
                    problems.push(format!(
                        "{where_}: {name} is not taken from a Secret (valueFrom.secretKeyRef)"
                    ));
                }
                let literal = literal.unwrap_or_default();
                if name == "CRM_AUTH" && literal == "off" {
                    problems.push(format!(
                        "{where_}: CRM_AUTH is off: every caller would be trusted"
                    ));
                }
                if url_passwords(&literal).iter().any(|p| !is_k8s_reference(p)) {
                    problems.push(format!(
                        "{where_}: {name} is a URL with a literal password: take it from a Secret"
                    ));
                }
            }
            let mut args = strings_of(container.get("command"));
            args.extend(strings_of(container.get("args")));
            for arg in args {
                if url_passwords(&arg).iter().any(|p| !is_k8s_reference(p)) {
                    problems.push(format!(
                        "{where_}: an argument is a URL with a literal password: take it from a Secret"
                    ));
                }
            }
        }
    }
    assert_none(problems);
}

#[test]
fn each_process_holds_only_the_secrets_it_uses() {
    let mut problems = Vec::new();

    // Compose: a value taken from the host's environment is a secret.
    let compose = compose();
    for (name, service) in compose_services(&compose) {
        let env = compose_env(service);
        let held: BTreeSet<&str> = env
            .iter()
            .filter(|(_, v)| interpolated(v).contains([REQUIRED, OPTIONAL]))
            .map(|(k, _)| k.as_str())
            .collect();
        let names: BTreeSet<&str> = env.keys().map(String::as_str).collect();
        check_holdings(
            &format!("compose service {name}"),
            name,
            &names,
            &held,
            &[],
            &mut problems,
        );
    }

    // Kubernetes: a value from a Secret (secretKeyRef, or every key of a Secret in envFrom).
    let objects = k8s_objects();
    let secret_keys = k8s_secret_keys(&objects);
    for (file, object) in &objects {
        let Some(pod) = pod_spec(object) else {
            continue;
        };
        let workload = name_of(object);
        for container in containers(pod) {
            let where_ = format!(
                "{file}: {} {workload} container {}",
                kind(object),
                str_at(container, "name")
            );
            let mut held = BTreeSet::new();
            let mut keys = Vec::new();
            let from = container.get("envFrom").and_then(Value::as_sequence);
            for source in from.into_iter().flatten() {
                let Some(secret) = source.get("secretRef") else {
                    continue;
                };
                let secret = str_at(secret, "name");
                match secret_keys.get(&secret) {
                    Some(all) => {
                        for key in all {
                            held.insert(key.clone());
                            keys.push(key.clone());
                        }
                    }
                    None => problems.push(format!(
                        "{where_}: takes every key of Secret {secret}, which deploy/k8s does not describe"
                    )),
                }
            }
            let env = container.get("env").and_then(Value::as_sequence);
            for entry in env.into_iter().flatten() {
                if let Some((_, key)) = secret_key_ref(entry) {
                    held.insert(str_at(entry, "name"));
                    keys.push(key);
                }
            }
            let literal: Vec<String> = sequence(container.get("env"))
                .map(|e| str_at(e, "name"))
                .collect();
            let held: BTreeSet<&str> = held.iter().map(String::as_str).collect();
            let mut names = held.clone();
            names.extend(literal.iter().map(String::as_str));
            check_holdings(&where_, &workload, &names, &held, &keys, &mut problems);
        }
    }
    assert_none(problems);
}

#[test]
fn every_deployment_has_probes() {
    let objects = k8s_objects();
    let config_maps = k8s_config_maps(&objects);
    let mut problems = Vec::new();
    let mut deployments = 0;
    for (file, object) in &objects {
        if kind(object) != "Deployment" {
            continue;
        }
        deployments += 1;
        let pod = pod_spec(object).expect("a Deployment has a pod template");
        for container in sequence(pod.get("containers")) {
            let where_ = format!(
                "{file}: Deployment {} container {}",
                name_of(object),
                str_at(container, "name")
            );
            let env = resolved_env(container, &config_maps);
            let listen = ["CRM_HTTP_ADDR", "CRM_METRICS_ADDR"]
                .iter()
                .find_map(|k| env.get(*k))
                .cloned();
            if let Some(addr) = &listen {
                if addr.starts_with("127.")
                    || addr.starts_with("localhost")
                    || addr.starts_with("[::1]")
                {
                    problems.push(format!(
                        "{where_}: listens on {addr}: the kubelet's probes (and Prometheus) cannot reach it"
                    ));
                }
            }
            let listen_port = listen
                .as_deref()
                .and_then(|a| a.rsplit_once(':'))
                .and_then(|(_, p)| p.parse::<u64>().ok());
            let mut budgets = BTreeMap::new();
            for (probe, path) in [("readinessProbe", "/readyz"), ("livenessProbe", "/livez")] {
                let Some(spec) = container.get(probe) else {
                    problems.push(format!("{where_}: no {probe} (GET {path})"));
                    continue;
                };
                let get = spec.get("httpGet");
                let got = get
                    .and_then(|g| g.get("path"))
                    .map(scalar)
                    .unwrap_or_default();
                if got != path {
                    problems.push(format!(
                        "{where_}: the {probe} asks {} instead of {path}",
                        if got.is_empty() {
                            "no HTTP path"
                        } else {
                            got.as_str()
                        }
                    ));
                }
                let port = get
                    .and_then(|g| g.get("port"))
                    .map(|p| container_port(container, p));
                match (port.flatten(), listen_port) {
                    (None, _) => problems.push(format!(
                        "{where_}: the {probe} names no port the container has"
                    )),
                    (Some(p), Some(l)) if p != l => problems.push(format!(
                        "{where_}: the {probe} asks port {p}, the service listens on {l}"
                    )),
                    _ => {}
                }
                // Kubernetes' defaults: every 10 s, 3 failures.
                let period = spec
                    .get("periodSeconds")
                    .and_then(Value::as_u64)
                    .unwrap_or(10);
                let failures = spec
                    .get("failureThreshold")
                    .and_then(Value::as_u64)
                    .unwrap_or(3);
                budgets.insert(probe, period * failures);
            }
            if let (Some(ready), Some(live)) =
                (budgets.get("readinessProbe"), budgets.get("livenessProbe"))
            {
                if live <= ready {
                    problems.push(format!(
                        "{where_}: liveness gives up after {live} s, readiness after {ready} s: a restart must be slower to come than leaving the endpoints"
                    ));
                }
            }
        }
    }
    assert!(deployments > 0, "deploy/k8s holds no Deployment");
    assert_none(problems);
}

#[test]
fn shutdown_fits_in_the_grace_period() {
    let objects = k8s_objects();
    let config_maps = k8s_config_maps(&objects);
    let selectors: Vec<BTreeMap<String, String>> = objects
        .iter()
        .filter(|(_, o)| kind(o) == "Service")
        .filter_map(|(_, o)| o.get("spec").and_then(|s| s.get("selector")))
        .map(string_map)
        .filter(|s| !s.is_empty())
        .collect();
    let mut problems = Vec::new();
    for (file, object) in &objects {
        if kind(object) != "Deployment" {
            continue;
        }
        let where_ = format!("{file}: Deployment {}", name_of(object));
        let pod = pod_spec(object).expect("a Deployment has a pod template");
        let labels = object
            .get("spec")
            .and_then(|s| s.get("template"))
            .and_then(|t| t.get("metadata"))
            .and_then(|m| m.get("labels"))
            .map(string_map)
            .unwrap_or_default();
        let behind_a_service = selectors
            .iter()
            .any(|s| s.iter().all(|(k, v)| labels.get(k) == Some(v)));
        let grace = pod
            .get("terminationGracePeriodSeconds")
            .and_then(Value::as_u64);
        for container in sequence(pod.get("containers")) {
            let env = resolved_env(container, &config_maps);
            let shutdown = env
                .get("CRM_SHUTDOWN_GRACE")
                .and_then(|v| v.parse().ok())
                .unwrap_or(DEFAULT_SHUTDOWN_GRACE);
            let pause = container
                .get("lifecycle")
                .and_then(|l| l.get("preStop"))
                .and_then(|p| p.get("sleep"))
                .and_then(|s| s.get("seconds"))
                .and_then(Value::as_u64);
            if behind_a_service && pause.is_none() {
                problems.push(format!(
                    "{where_} container {}: behind a Service but no preStop sleep: it stops accepting before the endpoints stop routing to it",
                    str_at(container, "name")
                ));
            }
            let needed = shutdown + pause.unwrap_or(0);
            match grace {
                None => problems.push(format!(
                    "{where_}: no terminationGracePeriodSeconds; it must be above {needed} s (preStop pause + CRM_SHUTDOWN_GRACE)"
                )),
                Some(g) if g <= needed => problems.push(format!(
                    "{where_}: terminationGracePeriodSeconds {g} is not above {needed} s (preStop pause + CRM_SHUTDOWN_GRACE): accepted work is killed"
                )),
                Some(_) => {}
            }
        }
    }
    assert_none(problems);
}

#[test]
fn k8s_nats_runs_with_its_users_and_refuses_empty_passwords() {
    let objects = k8s_objects();
    let config_maps = k8s_config_maps(&objects);
    let secret_keys = k8s_secret_keys(&objects);
    let auth = read(&deploy().join("nats/auth.conf"));
    let mut problems = Vec::new();
    let mut servers = 0;
    for (file, object) in &objects {
        let Some(pod) = pod_spec(object) else {
            continue;
        };
        let where_ = format!("{file}: {} {}", kind(object), name_of(object));
        for container in sequence(pod.get("containers")) {
            if !is_nats_server_image(&image(container)) {
                continue;
            }
            servers += 1;
            let mut args = strings_of(container.get("command"));
            args.extend(strings_of(container.get("args")));
            let config = args
                .iter()
                .position(|a| a == "-c" || a == "--config")
                .and_then(|i| args.get(i + 1));
            let Some(config) = config else {
                problems.push(format!(
                    "{where_}: NATS runs without a configuration, so without users"
                ));
                continue;
            };
            match mounted_config_map(pod, container, config) {
                Some((map, key)) => {
                    let data = config_maps.get(&map).cloned().unwrap_or_default();
                    if !data.get(&key).is_some_and(|t| includes_auth(t)) {
                        problems.push(format!(
                            "{where_}: {config} (ConfigMap {map}) does not include auth.conf"
                        ));
                    }
                    if data.get("auth.conf") != Some(&auth) {
                        problems.push(format!(
                            "{where_}: ConfigMap {map} auth.conf differs from deploy/nats/auth.conf (the users and permissions nats_permissions.rs tests)"
                        ));
                    }
                }
                None => problems.push(format!(
                    "{where_}: {config} is not mounted from a ConfigMap"
                )),
            }
            // nats-server takes an empty password as a password: the user name alone gets
            // in. An init container refuses to go on while any is empty.
            let mut passwords = BTreeMap::new();
            let from = container.get("envFrom").and_then(Value::as_sequence);
            for source in from.into_iter().flatten() {
                if let Some(secret) = source.get("secretRef") {
                    let secret = str_at(secret, "name");
                    for key in secret_keys.get(&secret).into_iter().flatten() {
                        passwords.insert(key.clone(), secret.clone());
                    }
                }
            }
            for var in auth_password_vars(&auth) {
                if !passwords.contains_key(&var) {
                    problems.push(format!(
                        "{where_}: {var} (a password of auth.conf) does not come from a Secret"
                    ));
                }
            }
            let guards: Vec<String> = sequence(pod.get("initContainers"))
                .map(|init| {
                    let mut text = strings_of(init.get("command"));
                    text.extend(strings_of(init.get("args")));
                    text.join(" ")
                })
                .collect();
            for var in passwords.keys() {
                if !guards.iter().any(|g| g.contains(var.as_str())) {
                    problems.push(format!(
                        "{where_}: no init container refuses an empty {var}: nats-server would let the user in by name alone"
                    ));
                }
            }
        }
    }
    assert!(servers > 0, "deploy/k8s runs no NATS server");
    assert_none(problems);
}

// ---------------------------------------------------------------------------------------
// Schemas, resources, disruption budgets, database logins.

/// The namespace of the manifests, and the one the NATS chart is installed into.
const NAMESPACE: &str = "crm";
/// The oldest Kubernetes the manifests are for (the preStop `sleep` action: 1.30).
const OLDEST_KUBERNETES: &str = "1.30.0";
/// Where the services read the CA of PostgreSQL's server certificate (`sslrootcert`).
const PG_CA_FILE: &str = "/etc/crm/pg-ca/ca.crt";

/// Every object is valid for its kind. Kubernetes' own kinds against the schemas
/// kubernetes-validate ships, strict (a misspelt or misplaced field fails), for the oldest
/// Kubernetes the manifests support and the newest the validator knows; the chart's
/// objects as helm renders them. CloudNativePG's kinds against the CRDs in
/// `deploy/k8s/schemas`, made strict the same way, with check-jsonschema (the CRDs' CEL
/// rules, `x-kubernetes-validations`, are left to the API server: no validator here
/// evaluates them). A kind in neither fails: nothing would check it.
#[test]
fn k8s_objects_match_their_schemas() {
    let dir = scratch_dir("schemas");
    let crds = crd_schemas(&dir);
    let rendered = dir.join("30-nats-values.rendered.yaml");
    std::fs::write(&rendered, render_nats_chart()).expect("writing the rendered chart");
    let mut files = manifest_files();
    files.push(rendered);
    let mut problems = Vec::new();
    for version in [Some(OLDEST_KUBERNETES), None] {
        let mut validate = Command::new(k8s_tool("kubernetes-validate"));
        validate.args(["--strict", "--quiet"]);
        if let Some(v) = version {
            validate.args(["--kubernetes-version", v]);
        }
        let (ok, out) = run(validate.args(&files));
        let mut reported = false;
        for line in out.lines().filter(|l| !l.trim().is_empty()) {
            match unknown_kind(line) {
                Some(k) if crds.contains_key(&k) => {}
                Some((api, kind)) => problems.push(format!(
                    "{kind} ({api}) has no schema, in kubernetes-validate or deploy/k8s/schemas: {line}"
                )),
                None => {
                    reported = true;
                    problems.push(line.to_string());
                }
            }
        }
        if !ok && !reported {
            problems.push(format!("kubernetes-validate failed: {out}"));
        }
    }
    let checked = check_custom_resources(&crds, &dir, &mut problems);
    assert!(
        checked >= 2,
        "only {checked} CloudNativePG objects were checked against their CRDs"
    );
    let _ = std::fs::remove_dir_all(&dir);
    assert_none(problems);
}

/// `(apiVersion, kind)` of kubernetes-validate's warning that it has no schema for a kind.
fn unknown_kind(line: &str) -> Option<(String, String)> {
    let rest = line.split_once("Couldn't find schema for kind ")?.1;
    let (kind, rest) = rest.split_once(" with api version ")?;
    let api = rest.split_whitespace().next()?;
    Some((api.to_string(), kind.to_string()))
}

/// Checks each custom resource against its CRD's strict schema; returns how many it did.
fn check_custom_resources(
    crds: &BTreeMap<(String, String), PathBuf>,
    dir: &Path,
    problems: &mut Vec<String>,
) -> usize {
    let mut checked = 0;
    for (i, (file, object)) in k8s_objects().iter().enumerate() {
        let key = (str_at(object, "apiVersion"), kind(object));
        let Some(schema) = crds.get(&key) else {
            continue;
        };
        let instance = dir.join(format!("object-{i}.json"));
        let json = serde_json::to_vec(object).expect("an object as JSON");
        std::fs::write(&instance, json).expect("writing an object");
        let mut check = Command::new(k8s_tool("check-jsonschema"));
        let (ok, out) = run(check.arg("--schemafile").arg(schema).arg(&instance));
        if !ok {
            problems.push(format!(
                "{file}: {} {} does not match its CRD: {out}",
                key.1,
                name_of(object)
            ));
        }
        checked += 1;
    }
    checked
}

/// The strict schema of every CRD under deploy/k8s/schemas, by `(group/version, kind)`,
/// each written as a JSON file into `dir` for check-jsonschema.
fn crd_schemas(dir: &Path) -> BTreeMap<(String, String), PathBuf> {
    let mut schemas = BTreeMap::new();
    for path in files_under(&deploy().join("k8s/schemas"), "yaml") {
        for crd in parse(&path) {
            if kind(&crd) != "CustomResourceDefinition" {
                continue;
            }
            let spec = crd.get("spec").expect("a CRD has a spec");
            let group = str_at(spec, "group");
            let kind = spec
                .get("names")
                .map(|n| str_at(n, "kind"))
                .unwrap_or_default();
            for version in sequence(spec.get("versions")) {
                let version_name = str_at(version, "name");
                let schema = version
                    .get("schema")
                    .and_then(|s| s.get("openAPIV3Schema"))
                    .unwrap_or_else(|| panic!("{}: no openAPIV3Schema", path.display()));
                let mut json = serde_json::to_value(schema).expect("a schema as JSON");
                make_strict(&mut json);
                let file = dir.join(format!("{group}-{version_name}-{kind}.json"));
                std::fs::write(&file, json.to_string()).expect("writing a schema");
                schemas.insert((format!("{group}/{version_name}"), kind.clone()), file);
            }
        }
    }
    assert!(!schemas.is_empty(), "no CRD under deploy/k8s/schemas");
    schemas
}

/// Closes every object schema that lists its properties (no other field allowed), as
/// kubernetes-validate's strict schemas do, unless it keeps unknown fields on purpose.
fn make_strict(schema: &mut serde_json::Value) {
    match schema {
        serde_json::Value::Object(map) => {
            let open = map.get("x-kubernetes-preserve-unknown-fields")
                == Some(&serde_json::Value::Bool(true));
            if map.contains_key("properties") && !map.contains_key("additionalProperties") && !open
            {
                map.insert("additionalProperties".into(), false.into());
            }
            map.values_mut().for_each(make_strict);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(make_strict),
        _ => {}
    }
}

/// The files with extension `ext` under `dir`, at any depth, sorted.
fn files_under(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let entries =
        std::fs::read_dir(dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            found.extend(files_under(&path, ext));
        } else if path.extension().is_some_and(|e| e == ext) {
            found.push(path);
        }
    }
    found.sort();
    found
}

/// Every container asks for CPU and memory and is bounded in memory, its request within
/// its limit (the manifests cite, beside each, the peak measured in docs/benchmarks.md or
/// say that none was); PostgreSQL too (the CloudNativePG Cluster's `resources`).
#[test]
fn every_container_has_requests_and_limits() {
    let mut problems = Vec::new();
    let mut seen = 0;
    for (file, object) in &k8s_objects() {
        let mut checks = Vec::new();
        if kind(object) == "Cluster" {
            let resources = object.get("spec").and_then(|s| s.get("resources"));
            checks.push((
                format!("{file}: Cluster {} (PostgreSQL)", name_of(object)),
                resources,
            ));
        }
        for container in pod_spec(object).into_iter().flat_map(containers) {
            let where_ = format!(
                "{file}: {} {} container {}",
                kind(object),
                name_of(object),
                str_at(container, "name")
            );
            checks.push((where_, container.get("resources")));
        }
        for (where_, resources) in checks {
            seen += 1;
            check_resources(&where_, resources, &mut problems);
        }
    }
    // Five services, the migration job, PostgreSQL, and the NATS pod's four containers
    // (server, reloader, exporter, the password check).
    assert!(seen >= 11, "only {seen} containers found in deploy/k8s");
    assert_none(problems);
}

fn check_resources(where_: &str, resources: Option<&Value>, problems: &mut Vec<String>) {
    let get = |section: &str, what: &str| {
        resources
            .and_then(|r| r.get(section))
            .and_then(|s| s.get(what))
            .map(scalar)
            .filter(|v| !v.is_empty())
    };
    for (section, what) in [
        ("requests", "cpu"),
        ("requests", "memory"),
        ("limits", "memory"),
    ] {
        if get(section, what).is_none() {
            problems.push(format!("{where_}: no resources.{section}.{what}"));
        }
    }
    let (Some(request), Some(limit)) = (get("requests", "memory"), get("limits", "memory")) else {
        return;
    };
    match (bytes(&request), bytes(&limit)) {
        (Some(r), Some(l)) if r > l => problems.push(format!(
            "{where_}: memory request {request} is above its limit {limit}"
        )),
        (Some(_), Some(_)) => {}
        _ => problems.push(format!(
            "{where_}: memory {request} / {limit} is not a quantity (like 384Mi)"
        )),
    }
}

/// A memory quantity in bytes (`384Mi`, `2Gi`, `1G`, `512`).
fn bytes(quantity: &str) -> Option<f64> {
    let split = quantity
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(quantity.len());
    let (number, unit) = quantity.split_at(split);
    let factor = match unit {
        "" => 1.0,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        _ => return None,
    };
    Some(number.parse::<f64>().ok()? * factor)
}

/// Every workload of more than one replica has one disruption budget, whose selector picks
/// its pods, that lets a node drain evict one at a time and never all at once: at least one
/// disruption allowed (else drains block for good), at most all but one.
#[test]
fn every_multi_replica_workload_has_a_disruption_budget() {
    let objects = k8s_objects();
    let budgets: Vec<&(String, Value)> = objects
        .iter()
        .filter(|(_, o)| kind(o) == "PodDisruptionBudget")
        .collect();
    let mut problems = Vec::new();
    let mut workloads = 0;
    for (file, object) in &objects {
        if !matches!(kind(object).as_str(), "Deployment" | "StatefulSet") {
            continue;
        }
        let spec = object.get("spec");
        let replicas = spec
            .and_then(|s| s.get("replicas"))
            .and_then(Value::as_u64)
            .unwrap_or(1);
        if replicas < 2 {
            continue;
        }
        workloads += 1;
        let where_ = format!(
            "{file}: {} {} ({replicas} replicas)",
            kind(object),
            name_of(object)
        );
        let labels = spec
            .and_then(|s| s.get("template"))
            .and_then(|t| t.get("metadata"))
            .and_then(|m| m.get("labels"))
            .map(string_map)
            .unwrap_or_default();
        let covering: Vec<_> = budgets
            .iter()
            .filter(|(_, b)| namespace(b) == namespace(object) && selects(b, &labels))
            .collect();
        let [(budget_file, budget)] = covering.as_slice() else {
            problems.push(format!(
                "{where_}: {} PodDisruptionBudgets select its pods, not one (none: a drain may evict them all at once)",
                covering.len()
            ));
            continue;
        };
        match allowed_disruptions(budget, replicas) {
            Some(n) if (1..replicas).contains(&n) => {}
            Some(n) => problems.push(format!(
                "{where_}: PodDisruptionBudget {} ({budget_file}) lets {n} go at once; it must be 1 to {}",
                name_of(budget),
                replicas - 1
            )),
            None => problems.push(format!(
                "{where_}: PodDisruptionBudget {} ({budget_file}) sets neither minAvailable nor maxUnavailable as a number",
                name_of(budget)
            )),
        }
    }
    // command service, relay, projector, query, scheduler, NATS.
    assert!(
        workloads >= 6,
        "only {workloads} multi-replica workloads found"
    );
    assert_none(problems);
}

fn namespace(object: &Value) -> String {
    object
        .get("metadata")
        .map(|m| str_at(m, "namespace"))
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| NAMESPACE.to_string())
}

/// Whether a disruption budget's selector picks pods labelled `labels`.
fn selects(budget: &Value, labels: &BTreeMap<String, String>) -> bool {
    let wanted = budget
        .get("spec")
        .and_then(|s| s.get("selector"))
        .and_then(|s| s.get("matchLabels"))
        .map(string_map)
        .unwrap_or_default();
    !wanted.is_empty() && wanted.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// How many of `replicas` pods a disruption budget lets go at once.
fn allowed_disruptions(budget: &Value, replicas: u64) -> Option<u64> {
    let spec = budget.get("spec")?;
    if let Some(min) = spec.get("minAvailable") {
        return min.as_u64().map(|m| replicas.saturating_sub(m));
    }
    spec.get("maxUnavailable")?.as_u64()
}

/// CloudNativePG keeps every database login the services use, so no password is set by
/// hand: each PostgreSQL URL documented in 10-secrets.example.yaml names a managed role
/// that logs in, with the password of a basic-auth Secret of that user name (labelled so a
/// new password applies at once), in the group deploy/postgres/init.sql gives it; the URL
/// reaches the cluster's read-write service over TLS verified against the cluster's CA
/// (`sslmode=verify-full`), which every workload taking the URL mounts.
#[test]
fn cnpg_managed_roles_cover_every_login_the_services_use() {
    let objects = k8s_objects();
    let cluster = objects
        .iter()
        .map(|(_, o)| o)
        .find(|o| kind(o) == "Cluster")
        .expect("deploy/k8s has a CloudNativePG Cluster");
    let roles: BTreeMap<String, &Value> = sequence(
        cluster
            .get("spec")
            .and_then(|s| s.get("managed"))
            .and_then(|m| m.get("roles")),
    )
    .map(|r| (str_at(r, "name"), r))
    .collect();
    let secrets: BTreeMap<String, &Value> = objects
        .iter()
        .filter(|(_, o)| kind(o) == "Secret")
        .map(|(_, o)| (name_of(o), o))
        .collect();
    let urls = documented_urls(&read(&deploy().join("k8s/10-secrets.example.yaml")));
    let mut problems = Vec::new();
    let mut logins = 0;
    for (key, url) in urls.iter().filter(|(_, u)| u.starts_with("postgres")) {
        logins += 1;
        let login = Login {
            key,
            url,
            cluster: &name_of(cluster),
            roles: &roles,
        };
        login.check_role(&secrets, &mut problems);
        login.check_ca_mounted(&objects, &mut problems);
    }
    assert!(
        logins >= 6,
        "only {logins} database URLs documented in 10-secrets.example.yaml"
    );
    check_init_sql_roles(&roles, &mut problems);
    let initdb = cluster
        .get("spec")
        .and_then(|s| s.get("bootstrap"))
        .and_then(|b| b.get("initdb"));
    let owner = initdb.map(|i| str_at(i, "owner")).unwrap_or_default();
    let owner_secret = initdb
        .and_then(|i| i.get("secret"))
        .map(|s| str_at(s, "name"));
    let managed_secret = roles
        .get(&owner)
        .and_then(|r| r.get("passwordSecret"))
        .map(|s| str_at(s, "name"));
    if owner_secret.is_none() || owner_secret != managed_secret {
        problems.push(format!(
            "Cluster bootstrap: the owner {owner} is created with Secret {owner_secret:?} but managed with {managed_secret:?}: the same Secret, or its password drifts"
        ));
    }
    assert_none(problems);
}

/// One database URL of 10-secrets.example.yaml, checked against the Cluster's roles.
struct Login<'a> {
    key: &'a str,
    url: &'a str,
    cluster: &'a str,
    roles: &'a BTreeMap<String, &'a Value>,
}

impl Login<'_> {
    fn check_role(&self, secrets: &BTreeMap<String, &Value>, problems: &mut Vec<String>) {
        let where_ = format!("10-secrets.example.yaml {} ({})", self.key, self.url);
        let (user, host, params) = parse_pg_url(self.url);
        if host != format!("{}-rw", self.cluster) {
            problems.push(format!(
                "{where_}: host {host} is not the Cluster's read-write service {}-rw",
                self.cluster
            ));
        }
        for (param, want) in [("sslmode", "verify-full"), ("sslrootcert", PG_CA_FILE)] {
            if params.get(param).map(String::as_str) != Some(want) {
                problems.push(format!("{where_}: {param} is not {want}"));
            }
        }
        let Some(role) = self.roles.get(&user) else {
            problems.push(format!(
                "{where_}: {user} is not a managed role of Cluster {}",
                self.cluster
            ));
            return;
        };
        if str_at(role, "login") != "true" || str_at(role, "ensure") == "absent" {
            problems.push(format!("{where_}: managed role {user} cannot log in"));
        }
        for group in sequence(role.get("inRoles")).map(scalar) {
            if !self.roles.contains_key(&group) {
                problems.push(format!(
                    "{where_}: {user} joins {group}, which is not a managed role"
                ));
            }
        }
        let name = role.get("passwordSecret").map(|s| str_at(s, "name"));
        let Some(secret) = name.as_ref().and_then(|n| secrets.get(n)) else {
            problems.push(format!(
                "{where_}: role {user} has no passwordSecret in deploy/k8s ({name:?})"
            ));
            return;
        };
        let username = secret.get("stringData").map(|d| str_at(d, "username"));
        let reload = secret
            .get("metadata")
            .and_then(|m| m.get("labels"))
            .map(|l| str_at(l, "cnpg.io/reload"));
        if str_at(secret, "type") != "kubernetes.io/basic-auth"
            || username.as_deref() != Some(&user)
        {
            problems.push(format!(
                "{where_}: Secret {name:?} is not kubernetes.io/basic-auth with username {user}"
            ));
        }
        if reload.as_deref() != Some("true") {
            problems.push(format!("{where_}: Secret {name:?} lacks the label cnpg.io/reload: \"true\" (a new password waits for a resync)"));
        }
    }

    /// Every workload that takes this URL mounts the Cluster's CA where `sslrootcert`
    /// says, and only its certificate (the operator's Secret also holds the CA's key).
    fn check_ca_mounted(&self, objects: &[(String, Value)], problems: &mut Vec<String>) {
        let (dir, file) = PG_CA_FILE.rsplit_once('/').expect("a path");
        let ca_secret = format!("{}-ca", self.cluster);
        let mut takers = 0;
        for (manifest, object) in objects {
            let Some(pod) = pod_spec(object) else {
                continue;
            };
            for container in containers(pod) {
                let takes = sequence(container.get("env"))
                    .filter_map(secret_key_ref)
                    .any(|(_, key)| key == self.key);
                if !takes {
                    continue;
                }
                takers += 1;
                let mounted = sequence(container.get("volumeMounts"))
                    .filter(|m| str_at(m, "mountPath").trim_end_matches('/') == dir)
                    .filter_map(|m| {
                        sequence(pod.get("volumes"))
                            .find(|v| str_at(v, "name") == str_at(m, "name"))
                    })
                    .filter_map(|v| v.get("secret"))
                    .any(|s| {
                        let items: Vec<(String, String)> = sequence(s.get("items"))
                            .map(|i| (str_at(i, "key"), str_at(i, "path")))
                            .collect();
                        str_at(s, "secretName") == ca_secret
                            && items == [("ca.crt".to_string(), file.to_string())]
                    });
                if !mounted {
                    problems.push(format!(
                        "{manifest}: {} {} container {} takes {} but does not mount ca.crt (only) of Secret {ca_secret} at {dir}",
                        kind(object),
                        name_of(object),
                        str_at(container, "name"),
                        self.key
                    ));
                }
            }
        }
        if takers == 0 {
            problems.push(format!("no workload takes {} of crm-secrets", self.key));
        }
    }
}

/// The roles of deploy/postgres/init.sql, the reference for a database set up by hand, are
/// the managed roles: each group role, and each login in its group.
fn check_init_sql_roles(roles: &BTreeMap<String, &Value>, problems: &mut Vec<String>) {
    let init = read(&deploy().join("postgres/init.sql"));
    let groups: BTreeSet<String> = init
        .lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .flat_map(|l| l.split('\'').skip(1).step_by(2))
        .filter(|r| r.starts_with("crm_"))
        .map(str::to_string)
        .collect();
    for group in &groups {
        match roles.get(group) {
            Some(r) if str_at(r, "login") != "true" => {}
            _ => problems.push(format!(
                "init.sql's group role {group} is not a managed role without login"
            )),
        }
    }
    for line in init
        .lines()
        .map(|l| l.split("--").next().unwrap_or_default())
    {
        let words: Vec<&str> = line
            .split_whitespace()
            .map(|w| w.trim_end_matches(';'))
            .collect();
        let ["CREATE", "ROLE", name, "LOGIN", rest @ ..] = words.as_slice() else {
            continue;
        };
        let group = match rest {
            ["IN", "ROLE", group] => Some(*group),
            _ => None,
        };
        let managed = roles.get(*name).filter(|r| str_at(r, "login") == "true");
        let joined = managed.is_some_and(|r| {
            group.is_none_or(|g| sequence(r.get("inRoles")).any(|i| scalar(i) == g))
        });
        if !joined {
            problems.push(format!(
                "init.sql's login {name} (in {group:?}) is not a managed login role in that group"
            ));
        }
    }
}

/// `(user, host, query parameters)` of `postgres://user:password@host:port/db?k=v&…`.
fn parse_pg_url(url: &str) -> (String, String, BTreeMap<String, String>) {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let (authority, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (userinfo, hostpart) = authority.rsplit_once('@').unwrap_or(("", authority));
    let user = userinfo.split(':').next().unwrap_or_default().to_string();
    let host = hostpart
        .split([':', '/'])
        .next()
        .unwrap_or_default()
        .to_string();
    let params = query
        .split('&')
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    (user, host, params)
}

/// The URL documented in the comment above each key of a Secret example
/// (`#   postgres://…` then `KEY: ""`), by key.
fn documented_urls(text: &str) -> BTreeMap<String, String> {
    let mut urls = BTreeMap::new();
    let mut pending: Option<String> = None;
    for line in text.lines().map(str::trim) {
        if let Some(comment) = line.strip_prefix('#') {
            let url = comment
                .split_whitespace()
                .find(|w| w.starts_with("postgres://") || w.starts_with("nats://"));
            if let Some(url) = url {
                pending = Some(url.to_string());
            }
        } else if let Some((key, _)) = line.split_once(':') {
            if let Some(url) = pending.take() {
                urls.insert(key.trim().to_string(), url);
            }
        }
    }
    urls
}

// ---------------------------------------------------------------------------------------
// The NATS chart.

/// The NATS chart's values and the chart (an unmodified copy of the official one).
const NATS_VALUES: &str = "k8s/30-nats-values.yaml";
const NATS_CHART: &str = "k8s/charts/nats";

/// The NATS chart's values ask for what the platform relies on: a three-node cluster with
/// a JetStream file store, a disruption budget, lame-duck shutdown, the Prometheus
/// exporter, the server version the suite runs (scripts/nats-current), every name `nats`.
/// Every key is one the chart has: it ships no values.schema.json, so helm would ignore a
/// misspelt key silently. The install commands name the chart version of the copy.
#[test]
fn nats_values_ask_for_the_cluster_the_platform_needs() {
    let values = nats_values();
    let mut problems = Vec::new();
    let image = format!("{}-alpine", nats_current_version());
    for (path, want) in [
        ("fullnameOverride", "nats"),
        ("config.cluster.enabled", "true"),
        ("config.cluster.replicas", "3"),
        ("config.jetstream.enabled", "true"),
        ("config.jetstream.fileStore.enabled", "true"),
        ("config.jetstream.fileStore.pvc.enabled", "true"),
        ("config.monitor.enabled", "true"),
        ("config.merge.$include", "auth.conf"),
        ("podDisruptionBudget.enabled", "true"),
        ("promExporter.enabled", "true"),
        ("container.image.repository", "nats"),
        ("container.image.tag", &image),
    ] {
        let got = value_at(&values, path).map(scalar);
        if got.as_deref() != Some(want) {
            problems.push(format!(
                "deploy/{NATS_VALUES}: {path} is {got:?}, not {want}"
            ));
        }
    }
    for path in [
        "config.merge.lame_duck_duration",
        "config.merge.lame_duck_grace_period",
    ] {
        if value_at(&values, path)
            .and_then(|d| seconds(&scalar(d)))
            .is_none()
        {
            problems.push(format!(
                "deploy/{NATS_VALUES}: {path} is not a duration (30s)"
            ));
        }
    }
    let chart = parse(&deploy().join(NATS_CHART).join("values.yaml")).remove(0);
    unknown_keys(&values, &chart, "", &mut problems);
    let version = chart_version();
    for file in [NATS_VALUES, "k8s/README.md"] {
        if !read(&deploy().join(file)).contains(&format!("--version {version}")) {
            problems.push(format!(
                "deploy/{file} does not install the chart version of deploy/{NATS_CHART} (helm … --version {version})"
            ));
        }
    }
    assert_none(problems);
}

/// What helm makes of the values: a StatefulSet of three NATS servers of the pinned image,
/// each with its JetStream volume, stopped in lame-duck mode (the chart's preStop) within
/// the pod's grace period; the exporter beside each; the client Service `nats` on 4222.
#[test]
fn nats_chart_renders_the_cluster_the_platform_needs() {
    let objects = rendered_nats();
    let find = |k: &str, n: &str| {
        objects
            .iter()
            .map(|(_, o)| o)
            .find(|o| kind(o) == k && name_of(o) == n)
    };
    let mut problems = Vec::new();
    let set = find("StatefulSet", "nats").expect("the chart renders the StatefulSet nats");
    let spec = set.get("spec").expect("a StatefulSet has a spec");
    if spec.get("replicas").and_then(Value::as_u64) != Some(3) {
        problems.push("StatefulSet nats: not three replicas".to_string());
    }
    if sequence(spec.get("volumeClaimTemplates")).count() != 1 {
        problems.push("StatefulSet nats: no volume per node for the JetStream store".to_string());
    }
    let pod = pod_spec(set).expect("a pod template");
    let named = |n: &str| sequence(pod.get("containers")).find(|c| str_at(c, "name") == n);
    let server = named("nats").expect("the nats container");
    let want = format!("nats:{}-alpine", nats_current_version());
    if image(server) != want {
        problems.push(format!(
            "the nats container runs {}, not {want}",
            image(server)
        ));
    }
    let pre_stop = strings_of(
        server
            .get("lifecycle")
            .and_then(|l| l.get("preStop"))
            .and_then(|p| p.get("exec"))
            .and_then(|e| e.get("command")),
    );
    if !pre_stop.iter().any(|a| a.contains("ldm")) {
        problems.push(format!(
            "the nats container's preStop {pre_stop:?} does not enter lame-duck mode"
        ));
    }
    let values = nats_values();
    let lame: u64 = ["lame_duck_duration", "lame_duck_grace_period"]
        .iter()
        .filter_map(|k| value_at(&values, &format!("config.merge.{k}")))
        .filter_map(|d| seconds(&scalar(d)))
        .sum();
    let grace = pod
        .get("terminationGracePeriodSeconds")
        .and_then(Value::as_u64)
        .unwrap_or(30);
    if grace < lame + 20 {
        problems.push(format!(
            "terminationGracePeriodSeconds {grace} does not cover lame duck ({lame} s) and 20 s to stop: the node is killed with clients on it"
        ));
    }
    let exporter = named("prom-exporter")
        .map(|c| str_at(c, "image"))
        .unwrap_or_default();
    if !exporter.contains("prometheus-nats-exporter") {
        problems.push("no prometheus-nats-exporter beside the server".to_string());
    }
    let client_ports: Vec<u64> = find("Service", "nats")
        .map(|s| {
            sequence(s.get("spec").and_then(|s| s.get("ports")))
                .filter_map(|p| p.get("port")?.as_u64())
                .collect()
        })
        .unwrap_or_default();
    if !client_ports.contains(&4222) {
        problems.push("no Service nats on 4222 (the services' CRM_NATS_URL)".to_string());
    }
    assert_none(problems);
}

/// The configuration the chart renders is one nats-server accepts (`nats-server -t`, the
/// version the image runs), users of auth.conf included: with every password in the
/// environment it passes; with one missing it fails naming it (the include is live).
#[test]
fn nats_server_accepts_the_rendered_configuration() {
    let data = k8s_config_maps(&rendered_nats())
        .remove("nats-config")
        .expect("the chart renders the ConfigMap nats-config");
    let dir = scratch_dir("nats-conf");
    for (name, text) in &data {
        std::fs::write(dir.join(name), text).expect("writing a configuration file");
    }
    let vars = auth_password_vars(&read(&deploy().join("nats/auth.conf")));
    let server = pinned_nats_server(&nats_current_version());
    let check = |missing: Option<&str>| {
        let mut command = Command::new(&server);
        command.arg("-t").arg("-c").arg(dir.join("nats.conf"));
        command.env("SERVER_NAME", "nats-0");
        for var in &vars {
            if Some(var.as_str()) == missing {
                command.env_remove(var);
            } else {
                command.env(var, "a-password");
            }
        }
        run(&mut command)
    };
    let (ok, out) = check(None);
    assert!(
        ok,
        "nats-server refuses what helm renders from deploy/{NATS_VALUES}:\n{out}"
    );
    let first = vars.iter().next().expect("auth.conf reads passwords");
    let (ok, out) = check(Some(first));
    assert!(
        !ok && out.contains(first.as_str()),
        "nats-server accepts the rendered configuration without {first}: auth.conf is not included\n{out}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Each service reaches NATS through the chart's client Service as its own user of
/// auth.conf (the URLs documented in 10-secrets.example.yaml), with that user's inbox
/// prefix (its replies would be refused otherwise).
#[test]
fn k8s_services_reach_nats_as_their_own_users() {
    let objects = k8s_objects();
    let config_maps = k8s_config_maps(&objects);
    let users = auth_users(&read(&deploy().join("nats/auth.conf")));
    let urls = documented_urls(&read(&deploy().join("k8s/10-secrets.example.yaml")));
    let mut problems = Vec::new();
    let mut nats_urls = 0;
    for (key, url) in urls.iter().filter(|(_, u)| u.starts_with("nats://")) {
        nats_urls += 1;
        let user = url
            .split_once("://")
            .and_then(|(_, r)| r.split_once(':'))
            .map(|(u, _)| u);
        let host = url.rsplit_once('@').map(|(_, h)| h);
        if host != Some("nats:4222") {
            problems.push(format!("{key} ({url}): not the chart's Service nats:4222"));
        }
        let Some(user) = user.filter(|u| users.contains(*u)) else {
            problems.push(format!(
                "{key} ({url}): not a user of deploy/nats/auth.conf"
            ));
            continue;
        };
        for (file, object) in &objects {
            for container in pod_spec(object).into_iter().flat_map(containers) {
                let takes = sequence(container.get("env"))
                    .filter_map(secret_key_ref)
                    .any(|(_, k)| &k == key);
                let inbox = resolved_env(container, &config_maps).remove("CRM_NATS_INBOX");
                if takes && inbox.as_deref() != Some(&format!("_INBOX.{user}")) {
                    problems.push(format!(
                        "{file}: {} {}: connects as {user} ({key}) with CRM_NATS_INBOX {inbox:?}, not _INBOX.{user}",
                        kind(object),
                        name_of(object)
                    ));
                }
            }
        }
    }
    assert!(
        nats_urls >= 3,
        "only {nats_urls} NATS URLs documented in 10-secrets.example.yaml"
    );
    assert_none(problems);
}

/// The user names of auth.conf.
fn auth_users(auth: &str) -> BTreeSet<String> {
    active_lines(auth)
        .filter_map(|l| l.split_once("user:"))
        .filter_map(|(_, rest)| rest.split([',', '}']).next())
        .map(|u| u.trim().to_string())
        .filter(|u| !u.is_empty())
        .collect()
}

fn nats_values() -> Value {
    parse(&deploy().join(NATS_VALUES)).remove(0)
}

/// What helm renders from the NATS chart's values, once per test process.
fn rendered_nats() -> Vec<(String, Value)> {
    static OBJECTS: OnceLock<Vec<(String, Value)>> = OnceLock::new();
    OBJECTS
        .get_or_init(|| {
            let file = format!("deploy/{NATS_VALUES} (helm template)");
            parse_str(&render_nats_chart(), &file)
                .into_iter()
                .map(|o| (file.clone(), o))
                .collect()
        })
        .clone()
}

/// `helm template` of the chart's copy with the platform's values, as installed.
fn render_nats_chart() -> String {
    let output = Command::new(k8s_tool("helm"))
        .args(["template", "nats"])
        .arg(deploy().join(NATS_CHART))
        .args(["--namespace", NAMESPACE, "--skip-tests", "--values"])
        .arg(deploy().join(NATS_VALUES))
        .output()
        .expect("running helm");
    assert!(
        output.status.success(),
        "helm template of deploy/{NATS_VALUES} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("helm prints UTF-8")
}

/// The version of the chart's copy (its Chart.yaml).
fn chart_version() -> String {
    let chart = parse(&deploy().join(NATS_CHART).join("Chart.yaml")).remove(0);
    str_at(&chart, "version")
}

/// The nats-server version the suite runs (scripts/nats-current).
fn nats_current_version() -> String {
    let path = deploy().join("../scripts/nats-current");
    read(&path)
        .lines()
        .find_map(|l| l.strip_prefix("CRM_NATS_VERSION="))
        .map(|v| v.trim().to_string())
        .expect("scripts/nats-current pins CRM_NATS_VERSION")
}

fn value_at<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(v, |v, key| v.get(key))
}

/// Reports each key of `values` the chart's defaults do not have, down to the maps the
/// chart leaves free (empty in its defaults: `merge`, `env`, `resources`, …).
fn unknown_keys(values: &Value, defaults: &Value, path: &str, problems: &mut Vec<String>) {
    let (Some(values), Some(defaults)) = (values.as_mapping(), defaults.as_mapping()) else {
        return;
    };
    if defaults.is_empty() {
        return;
    }
    for (key, value) in values {
        let key = scalar(key);
        let path = if path.is_empty() {
            key.clone()
        } else {
            format!("{path}.{key}")
        };
        match defaults.get(key.as_str()) {
            None => problems.push(format!(
                "deploy/{NATS_VALUES}: {path} is not a value of the chart (deploy/{NATS_CHART}/values.yaml)"
            )),
            Some(default) => unknown_keys(value, default, &path, problems),
        }
    }
}

/// Seconds of a NATS duration (`30s`, `2m`, `1h`).
fn seconds(duration: &str) -> Option<u64> {
    let (number, unit) = duration.split_at(duration.len().checked_sub(1)?);
    let n: u64 = number.parse().ok()?;
    match unit {
        "s" => Some(n),
        "m" => Some(n * 60),
        "h" => Some(n * 3600),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------
// Holdings.

fn check_holdings(
    where_: &str,
    service: &str,
    names: &BTreeSet<&str>,
    held: &BTreeSet<&str>,
    keys: &[String],
    problems: &mut Vec<String>,
) {
    for (secret, allowed) in MAY_HOLD {
        let holds = names.contains(secret) || keys.iter().any(|k| k == secret);
        if holds && !allowed.contains(&service) {
            problems.push(format!(
                "{where_}: holds {secret}, which only {} use",
                allowed.join(" and ")
            ));
        }
    }
    if let Some((_, uses)) = USES.iter().find(|(s, _)| *s == service) {
        for name in held {
            if !uses.contains(name) && !MAY_HOLD.iter().any(|(s, _)| s == name) {
                problems.push(format!(
                    "{where_}: holds the secret {name}, which it does not use"
                ));
            }
        }
    }
    if let Some((_, prefix)) = LOGIN_PREFIX.iter().find(|(s, _)| *s == service) {
        for key in keys.iter().filter(|k| k.ends_with("_URL")) {
            if !key.starts_with(prefix) {
                problems.push(format!(
                    "{where_}: holds the login {key}, not its own ({prefix}…)"
                ));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Secrets and interpolation.

/// Stands for `${NAME:?message}`: compose refuses to start when NAME is unset or empty.
const REQUIRED: char = '\u{E000}';
/// Stands for any other interpolation (`$NAME`, `${NAME}`, `${NAME:-default}`), which
/// may end up empty or a default shipped in the file.
const OPTIONAL: char = '\u{E001}';

fn is_secret_name(name: &str) -> bool {
    let name = name.to_ascii_uppercase();
    name.contains("SECRET")
        || name.contains("PASSWORD")
        || name.ends_with("_TOKEN")
        || name == "CRM_INDEX_KEY"
}

/// Whether a compose value is exactly one required interpolation.
fn is_required_env(value: &str) -> bool {
    interpolated(value) == REQUIRED.to_string()
}

/// A Kubernetes dependent variable (`$(DB_PASSWORD)`), which the kubelet fills in from the
/// container's environment.
fn is_k8s_reference(password: &str) -> bool {
    password
        .strip_prefix("$(")
        .and_then(|p| p.strip_suffix(')'))
        .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
}

/// `text` with each compose interpolation replaced by [`REQUIRED`] or [`OPTIONAL`]
/// (`$$` is a literal `$`).
fn interpolated(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '$' {
            out.push(c);
            continue;
        }
        match chars.peek() {
            Some('$') => {
                chars.next();
                out.push('$');
            }
            Some('{') => {
                chars.next();
                let (mut depth, mut inner) = (1, String::new());
                for c in chars.by_ref() {
                    if c == '{' {
                        depth += 1;
                    } else if c == '}' {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    inner.push(c);
                }
                let name = inner
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(inner.len());
                let required = name > 0 && inner[name..].starts_with(":?");
                out.push(if required { REQUIRED } else { OPTIONAL });
            }
            Some(c) if c.is_ascii_alphabetic() || *c == '_' => {
                while chars
                    .peek()
                    .is_some_and(|c| c.is_ascii_alphanumeric() || *c == '_')
                {
                    chars.next();
                }
                out.push(OPTIONAL);
            }
            _ => out.push('$'),
        }
    }
    out
}

/// The passwords of the URLs in `text` (`scheme://user:password@host`).
fn url_passwords(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        rest = &rest[i + 3..];
        let end = rest
            .find(|c: char| {
                matches!(c, '/' | ',' | '?' | '#' | '"' | '\'' | ']') || c.is_whitespace()
            })
            .unwrap_or(rest.len());
        let authority = &rest[..end];
        if let Some(at) = authority.rfind('@') {
            if let Some((_, password)) = authority[..at].split_once(':') {
                found.push(password.to_string());
            }
        }
        rest = &rest[end..];
    }
    found
}

/// The user of `nats://user:password@host`, when it has both.
fn nats_user(url: &str) -> Option<&str> {
    let authority = url.trim().split_once("://")?.1;
    let (userinfo, _) = authority.rsplit_once('@')?;
    let (user, password) = userinfo.split_once(':')?;
    (!user.is_empty() && !password.is_empty()).then_some(user)
}

/// A value for a failure message: secrets are not printed whole.
fn describe(value: &str) -> String {
    let value = value.replace(REQUIRED, "${…:?…}").replace(OPTIONAL, "${…}");
    if value.is_empty() {
        "empty".to_string()
    } else if value.contains("${") {
        format!("\"{value}\" (may end up empty or a shipped default)")
    } else {
        let shown: String = value.chars().take(6).collect();
        format!("the literal \"{shown}…\"")
    }
}

/// The `$VAR` passwords deploy/nats/auth.conf reads from nats-server's environment.
fn auth_password_vars(auth: &str) -> BTreeSet<String> {
    active_lines(auth)
        .filter_map(|l| l.split_once("password:"))
        .filter_map(|(_, v)| v.trim().strip_prefix('$'))
        .map(|v| {
            v.chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect()
        })
        .collect()
}

fn includes_auth(config: &str) -> bool {
    active_lines(config).any(|l| {
        l.strip_prefix("include").is_some_and(|f| {
            f.trim()
                .trim_end_matches(';')
                .trim_matches(|c| c == '"' || c == '\'')
                == "auth.conf"
        })
    })
}

/// The official NATS server image (`nats:…`, `registry/…/nats:…`), not its helpers
/// (`natsio/…`).
fn is_nats_server_image(image: &str) -> bool {
    let repository = image.rsplit_once(':').map_or(image, |(r, _)| r);
    repository == "nats" || repository.ends_with("/nats")
}

/// The lines of a configuration text that are not comments, trimmed.
fn active_lines(text: &str) -> impl Iterator<Item = &str> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with("//"))
}

// ---------------------------------------------------------------------------------------
// Compose.

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

fn compose() -> Value {
    let path = deploy().join("compose/compose.yml");
    parse(&path)
        .pop()
        .unwrap_or_else(|| panic!("{} is empty", path.display()))
}

fn compose_services(compose: &Value) -> Vec<(&str, &Value)> {
    let services = compose
        .get("services")
        .and_then(Value::as_mapping)
        .expect("compose.yml has services");
    services
        .iter()
        .map(|(k, v)| (k.as_str().expect("a service name"), v))
        .collect()
}

fn compose_env(service: &Value) -> BTreeMap<String, String> {
    service
        .get("environment")
        .map(env_entries)
        .unwrap_or_default()
        .into_iter()
        .collect()
}

/// The entries of a compose `environment`, mapping or `KEY=value` list (a bare `KEY`
/// passes the host's variable through, which may be unset).
fn env_entries(environment: &Value) -> Vec<(String, String)> {
    match environment {
        Value::Mapping(m) => m.iter().map(|(k, v)| (scalar(k), scalar(v))).collect(),
        Value::Sequence(s) => s
            .iter()
            .map(|e| {
                let e = scalar(e);
                match e.split_once('=') {
                    Some((k, v)) => (k.to_string(), v.to_string()),
                    None => (e.clone(), format!("${{{e}}}")),
                }
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// Every Kubernetes image names a version (not `latest`, not none), and the platform's
/// containers run unprivileged: a non-root user, no privilege escalation, a read-only root
/// filesystem, every capability dropped, the runtime's default seccomp profile.
#[test]
fn k8s_images_are_pinned_and_the_platform_runs_unprivileged() {
    let mut problems = Vec::new();
    let mut platform = 0;
    for (file, object) in &k8s_objects() {
        let Some(pod) = pod_spec(object) else {
            continue;
        };
        for container in sequence(pod.get("containers")).chain(sequence(pod.get("initContainers")))
        {
            let where_ = format!(
                "{file}: {} {} container {}",
                kind(object),
                name_of(object),
                str_at(container, "name")
            );
            let image = image(container);
            match image.rsplit_once(':') {
                Some((_, tag)) if tag != "latest" && !tag.contains('/') => {}
                _ => problems.push(format!("{where_}: image {image:?} names no version")),
            }
            if !image.starts_with("crm-platform") {
                continue;
            }
            platform += 1;
            let sc = container.get("securityContext");
            let at = |k: &str| sc.and_then(|s| s.get(k)).map(scalar).unwrap_or_default();
            for (key, want) in [
                ("runAsNonRoot", "true"),
                ("allowPrivilegeEscalation", "false"),
                ("readOnlyRootFilesystem", "true"),
            ] {
                if at(key) != want {
                    problems.push(format!("{where_}: securityContext.{key} is not {want}"));
                }
            }
            let drops: Vec<String> = sequence(
                sc.and_then(|s| s.get("capabilities"))
                    .and_then(|c| c.get("drop")),
            )
            .map(scalar)
            .collect();
            if !drops.iter().any(|d| d == "ALL") {
                problems.push(format!("{where_}: capabilities are not all dropped"));
            }
            let seccomp = sc
                .and_then(|s| s.get("seccompProfile"))
                .map(|p| str_at(p, "type"));
            if seccomp.as_deref() != Some("RuntimeDefault") {
                problems.push(format!("{where_}: no RuntimeDefault seccomp profile"));
            }
        }
    }
    assert!(
        platform >= 6,
        "the services and the migration job run the platform's image ({platform} found)"
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

fn image(v: &Value) -> String {
    v.get("image").map(scalar).unwrap_or_default()
}

/// The file under deploy/ that a compose service sees at `container_path`, through its
/// bind mounts.
fn host_path(service: &Value, container_path: &str) -> Option<PathBuf> {
    let compose_dir = deploy().join("compose");
    for volume in sequence(service.get("volumes")) {
        let (source, target) = match volume {
            Value::String(short) => {
                let mut parts = short.split(':');
                (parts.next()?.to_string(), parts.next()?.to_string())
            }
            Value::Mapping(_) => (str_at(volume, "source"), str_at(volume, "target")),
            _ => continue,
        };
        if !source.starts_with('.') && !source.starts_with('/') {
            continue; // a named volume
        }
        let target = target.trim_end_matches('/');
        if container_path == target {
            return Some(compose_dir.join(&source));
        }
        if let Some(rest) = container_path.strip_prefix(&format!("{target}/")) {
            return Some(compose_dir.join(&source).join(rest));
        }
    }
    None
}

// ---------------------------------------------------------------------------------------
// Kubernetes.

/// Every object deploy/k8s makes, with the file it comes from: the manifests
/// (`deploy/k8s/*.yaml`) and what helm renders from the NATS chart's values file.
fn k8s_objects() -> Vec<(String, Value)> {
    let mut objects = manifest_objects();
    objects.extend(rendered_nats());
    objects
}

/// The manifests: every `deploy/k8s/*.yaml` but the values files of charts (`*-values.yaml`).
fn manifest_files() -> Vec<PathBuf> {
    let dir = deploy().join("k8s");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .filter(|p| !p.to_string_lossy().ends_with("-values.yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no manifests in {}", dir.display());
    files
}

fn manifest_objects() -> Vec<(String, Value)> {
    let mut objects = Vec::new();
    for path in manifest_files() {
        let file = format!("deploy/k8s/{}", path.file_name().unwrap().to_string_lossy());
        for object in parse(&path) {
            objects.push((file.clone(), object));
        }
    }
    objects
}

fn kind(object: &Value) -> String {
    object.get("kind").map(scalar).unwrap_or_default()
}

fn name_of(object: &Value) -> String {
    object
        .get("metadata")
        .map(|m| str_at(m, "name"))
        .unwrap_or_default()
}

fn pod_spec(object: &Value) -> Option<&Value> {
    let spec = object.get("spec")?;
    match kind(object).as_str() {
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" | "Job" => {
            spec.get("template")?.get("spec")
        }
        "CronJob" => spec
            .get("jobTemplate")?
            .get("spec")?
            .get("template")?
            .get("spec"),
        "Pod" => Some(spec),
        _ => None,
    }
}

fn containers(pod: &Value) -> impl Iterator<Item = &Value> {
    sequence(pod.get("containers")).chain(sequence(pod.get("initContainers")))
}

/// `(secret, key)` of an env entry taken from a Secret.
fn secret_key_ref(entry: &Value) -> Option<(String, String)> {
    let r = entry.get("valueFrom")?.get("secretKeyRef")?;
    Some((str_at(r, "name"), str_at(r, "key")))
}

/// The keys of every Secret the manifests describe, by name.
fn k8s_secret_keys(objects: &[(String, Value)]) -> BTreeMap<String, Vec<String>> {
    objects
        .iter()
        .filter(|(_, o)| kind(o) == "Secret")
        .map(|(_, o)| {
            let keys = ["stringData", "data"]
                .iter()
                .filter_map(|f| o.get(*f).and_then(Value::as_mapping))
                .flat_map(|m| m.keys().map(scalar))
                .collect();
            (name_of(o), keys)
        })
        .collect()
}

fn k8s_config_maps(objects: &[(String, Value)]) -> BTreeMap<String, BTreeMap<String, String>> {
    objects
        .iter()
        .filter(|(_, o)| kind(o) == "ConfigMap")
        .map(|(_, o)| {
            (
                name_of(o),
                o.get("data").map(string_map).unwrap_or_default(),
            )
        })
        .collect()
}

/// The literal environment of a container: its ConfigMaps (envFrom, configMapKeyRef),
/// then its own values, later ones winning as in Kubernetes.
fn resolved_env(
    container: &Value,
    config_maps: &BTreeMap<String, BTreeMap<String, String>>,
) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    for source in sequence(container.get("envFrom")) {
        if let Some(map) = source.get("configMapRef") {
            if let Some(data) = config_maps.get(&str_at(map, "name")) {
                env.extend(data.clone());
            }
        }
    }
    for entry in sequence(container.get("env")) {
        let name = str_at(entry, "name");
        if let Some(value) = entry.get("value") {
            env.insert(name, scalar(value));
        } else if let Some(r) = entry
            .get("valueFrom")
            .and_then(|v| v.get("configMapKeyRef"))
        {
            let value = config_maps
                .get(&str_at(r, "name"))
                .and_then(|d| d.get(&str_at(r, "key")));
            if let Some(value) = value {
                env.insert(name, value.clone());
            }
        }
    }
    env
}

/// The number of a probe's port (a number, or the name of one of the container's ports).
fn container_port(container: &Value, port: &Value) -> Option<u64> {
    if let Some(n) = port.as_u64() {
        return Some(n);
    }
    let name = scalar(port);
    if let Ok(n) = name.parse() {
        return Some(n);
    }
    sequence(container.get("ports"))
        .find(|p| str_at(p, "name") == name)
        .and_then(|p| p.get("containerPort"))
        .and_then(Value::as_u64)
}

/// The ConfigMap and key a container sees at `path` through its volume mounts.
fn mounted_config_map(pod: &Value, container: &Value, path: &str) -> Option<(String, String)> {
    let (dir, file) = path.rsplit_once('/')?;
    let mount = sequence(container.get("volumeMounts"))
        .find(|m| str_at(m, "mountPath").trim_end_matches('/') == dir)?;
    let volume =
        sequence(pod.get("volumes")).find(|v| str_at(v, "name") == str_at(mount, "name"))?;
    let map = volume.get("configMap")?;
    Some((str_at(map, "name"), file.to_string()))
}

// ---------------------------------------------------------------------------------------
// YAML.

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// The documents of a YAML file, merge keys (`<<: *anchor`) applied.
fn parse(path: &Path) -> Vec<Value> {
    parse_str(&read(path), &path.display().to_string())
}

/// The documents of a YAML text (`what` names it in a failure).
fn parse_str(text: &str, what: &str) -> Vec<Value> {
    let mut docs = Vec::new();
    for doc in serde_norway::Deserializer::from_str(text) {
        let mut value =
            Value::deserialize(doc).unwrap_or_else(|e| panic!("{what} is not valid YAML: {e}"));
        value
            .apply_merge()
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        if !value.is_null() {
            docs.push(value);
        }
    }
    docs
}

fn sequence(v: Option<&Value>) -> impl Iterator<Item = &Value> {
    v.and_then(Value::as_sequence).into_iter().flatten()
}

fn scalar(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        other => format!("{other:?}"),
    }
}

fn str_at(v: &Value, key: &str) -> String {
    v.get(key).map(scalar).unwrap_or_default()
}

fn strings_of(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::Sequence(s)) => s.iter().map(scalar).collect(),
        Some(Value::String(s)) => s.split_whitespace().map(str::to_string).collect(),
        _ => Vec::new(),
    }
}

fn string_map(v: &Value) -> BTreeMap<String, String> {
    v.as_mapping()
        .into_iter()
        .flatten()
        .map(|(k, v)| (scalar(k), scalar(v)))
        .collect()
}

/// Every mapping under a key named `key`, with its path.
fn find_key<'a>(v: &'a Value, key: &str, path: &str, out: &mut Vec<(String, &'a Value)>) {
    match v {
        Value::Mapping(m) => {
            for (k, child) in m {
                let path = format!("{path}.{}", scalar(k))
                    .trim_start_matches('.')
                    .to_string();
                if scalar(k) == key {
                    out.push((path.clone(), child));
                }
                find_key(child, key, &path, out);
            }
        }
        Value::Sequence(s) => {
            for (i, child) in s.iter().enumerate() {
                find_key(child, key, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// Every string scalar, with its path.
fn all_strings(v: &Value, path: &str, out: &mut Vec<(String, String)>) {
    match v {
        Value::String(s) => out.push((path.to_string(), s.clone())),
        Value::Mapping(m) => {
            for (k, child) in m {
                let path = format!("{path}.{}", scalar(k))
                    .trim_start_matches('.')
                    .to_string();
                all_strings(child, &path, out);
            }
        }
        Value::Sequence(s) => {
            for (i, child) in s.iter().enumerate() {
                all_strings(child, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

fn assert_none(problems: Vec<String>) {
    assert!(
        problems.is_empty(),
        "{} unsafe deployment default(s):\n  {}",
        problems.len(),
        problems.join("\n  ")
    );
}

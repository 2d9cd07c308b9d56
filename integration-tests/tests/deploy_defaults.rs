//! The shipped deployment defaults are safe: `deploy/compose/compose.yml` and
//! `deploy/k8s/*.yaml`, read as files (no services needed).
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
//!   grace period its shutdown (`preStop` pause + `CRM_SHUTDOWN_GRACE`) fits in.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

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
            if !image(container).starts_with("nats") {
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
        l.strip_prefix("include")
            .is_some_and(|f| f.trim().trim_matches(|c| c == '"' || c == '\'') == "auth.conf")
    })
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

/// Every object of deploy/k8s/*.yaml, with its file name.
fn k8s_objects() -> Vec<(String, Value)> {
    let dir = deploy().join("k8s");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no manifests in {}", dir.display());
    let mut objects = Vec::new();
    for path in files {
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
    let text = read(path);
    let mut docs = Vec::new();
    for doc in serde_norway::Deserializer::from_str(&text) {
        let mut value = Value::deserialize(doc)
            .unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", path.display()));
        value
            .apply_merge()
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
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

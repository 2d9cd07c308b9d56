//! End-to-end harness: runs the services as processes, the way users do, against a
//! fresh PostgreSQL database and a fresh JetStream stream per test.

pub mod browser;
pub mod contract_tools;
pub mod faults;
pub mod idp;
pub mod ingress;
pub mod manifests;
pub mod tls;
pub mod workbench;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crm_bus::testing::TestStream;
use crm_eventstore::testing::TestDatabase;

/// Path of a workspace binary, built (once per test process) with the same profile as
/// the tests, so an end-to-end test never runs a stale service. With
/// `CRM_TEST_BIN_DIR` set, the binaries in that directory instead, unbuilt: to run a
/// test against another build (a release before a fix, to see the test fail there).
pub fn binary(name: &str) -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let dir = BUILT.get_or_init(|| {
        if let Some(dir) = std::env::var_os("CRM_TEST_BIN_DIR") {
            return PathBuf::from(dir);
        }
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        // A clean environment: the CARGO_* variables cargo sets for a test process
        // (CARGO_MANIFEST_DIR, …) are tracked by some build scripts, and would make this
        // build and the next ordinary one rebuild each other every time.
        let keep = [
            "PATH",
            "HOME",
            "USER",
            "TMPDIR",
            "RUSTUP_HOME",
            "RUSTUP_TOOLCHAIN",
            "CARGO_HOME",
            "CARGO_TARGET_DIR",
        ];
        let status = Command::new(cargo)
            .env_clear()
            .envs(std::env::vars().filter(|(k, _)| keep.contains(&k.as_str())))
            .args([
                "build",
                "--quiet",
                "-p",
                "crm-command-service",
                "-p",
                "crm-relay",
                "-p",
                "crm-projector",
                "-p",
                "crm-query",
                "-p",
                "crm-scheduler",
                "-p",
                "crm",
            ])
            .status()
            .expect("run cargo build for the service binaries");
        assert!(status.success(), "building the service binaries failed");
        // target/<profile>/deps/<test-binary> → target/<profile>
        let exe = std::env::current_exe().expect("test binary path");
        exe.parent()
            .and_then(Path::parent)
            .expect("target dir")
            .to_path_buf()
    });
    let path = dir.join(name);
    assert!(path.exists(), "{} was not built", path.display());
    path
}

/// A service process; killed (SIGKILL) when dropped. Its output goes to a log file that
/// is printed if the test fails.
pub struct Service {
    pub name: String,
    child: Child,
    pub log: PathBuf,
    pub ready: PathBuf,
}

impl Service {
    /// Start `bin`. Services refuse to start without authentication configured; unless
    /// `env` configures it (`CRM_AUTH_*`), the test runs them with `CRM_AUTH=off`.
    pub fn start(bin: &str, args: &[&str], env: &[(&str, String)]) -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let log = std::env::temp_dir().join(format!("{bin}-{id}.log"));
        let ready = std::env::temp_dir().join(format!("{bin}-{id}.ready"));
        let file = std::fs::File::create(&log).expect("log file");
        let auth_configured = env.iter().any(|(k, _)| k.starts_with("CRM_AUTH_"));
        let mut command = Command::new(binary(bin));
        if !auth_configured {
            command.env("CRM_AUTH", "off");
        }
        let child = command
            .args(args)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .env("CRM_READY_FILE", &ready)
            .env(
                "RUST_LOG",
                env.iter()
                    .find(|(k, _)| *k == "RUST_LOG")
                    .map(|(_, v)| v.clone())
                    .or_else(|| std::env::var("RUST_LOG").ok())
                    .unwrap_or_else(|| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log file"))
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("start {bin}: {e}"));
        Self {
            name: bin.to_string(),
            child,
            log,
            ready,
        }
    }

    /// Wait until the service listens; the base URL of its HTTP server.
    pub async fn http_base(&mut self) -> String {
        let ready = self.wait_ready().await;
        let addr = ready["http"]
            .as_str()
            .expect("an HTTP address in the ready file");
        format!("http://{addr}")
    }

    /// The JSON the service writes once it listens (its bound addresses).
    pub async fn wait_ready(&mut self) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(text) = std::fs::read_to_string(&self.ready) {
                if let Ok(v) = serde_json::from_str(&text) {
                    return v;
                }
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "{} exited with {status} before it was ready:\n{}",
                    self.name,
                    self.output()
                );
            }
            assert!(
                Instant::now() < deadline,
                "{} not ready after 60 s:\n{}",
                self.name,
                self.output()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL: no shutdown hooks run.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.ready);
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Send a signal by name (`TERM`, `STOP`, `CONT`).
    pub fn signal(&self, name: &str) {
        let ok = Command::new("kill")
            .args(["-s", name, &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(ok.success(), "kill -s {name} {}", self.name);
    }

    /// Wait up to `within` for the process to exit; its exit status.
    pub async fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Wait up to `within` for `text` to appear in the output.
    pub async fn wait_output(&self, text: &str, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if self.output().contains(text) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("---- {} output ----\n{}", self.name, self.output());
        }
        let _ = std::fs::remove_file(&self.log);
    }
}

/// A fresh database and stream, and the environment the services need to use them.
pub struct Platform {
    pub db: TestDatabase,
    pub stream: TestStream,
}

impl Platform {
    pub async fn new() -> Self {
        Self {
            db: TestDatabase::create().await,
            stream: TestStream::new().await,
        }
    }

    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("CRM_STORE_URL", self.db.url.clone()),
            ("CRM_NATS_URL", crm_bus::testing::nats_url()),
            ("CRM_STREAM", self.stream.spec.name.clone()),
            (
                "CRM_SUBJECT_PREFIX",
                self.stream.spec.subjects.prefix().to_string(),
            ),
        ]
    }
}

/// A registration command with what tests vary (name, phone, e-mail); an individual in
/// the east region, first touched at a branch, defaults for the rest.
pub fn register_customer(
    id: crm_domain::CustomerId,
    name: &str,
    phone: Option<String>,
    email: Option<String>,
) -> crm_domain::Command {
    use crm_domain::customer::{CustomerCommand, RegisterCustomer};
    CustomerCommand::Register(RegisterCustomer {
        customer_id: id,
        customer_type: crm_domain::CustomerType::Individual,
        display_name: name.into(),
        phone,
        email,
        registration_number: None,
        region: "east".parse().expect("region"),
        branch: None,
        first_touch_channel: crm_domain::FirstTouchChannel::Branch,
        industry: None,
        product_interest: None,
        consents: None,
        stage: None,
        value_tier: None,
        aum_minor: None,
    })
    .into()
}

/// A manager's registration: `name` in `team`, east region, branch sh-01, holding limit 50.
pub fn register_manager(id: crm_domain::ManagerId, name: &str, team: &str) -> crm_domain::Command {
    use crm_domain::manager::{ManagerCommand, RegisterManager};
    ManagerCommand::Register(RegisterManager {
        manager_id: id,
        name: name.into(),
        role: crm_domain::ManagerRole::Manager,
        team: team.parse().expect("team"),
        region: "east".parse().expect("region"),
        branch: "sh-01".parse().expect("branch"),
        holding_limit: 50,
    })
    .into()
}

/// The JSON body of `command` as the HTTP ingress takes it: a fresh command id, issued
/// now, by `actor` (`person:<id>` or `service:<name>`).
pub fn command_body(actor: &str, command: &crm_domain::Command) -> Vec<u8> {
    use crm_contracts::wire::{encode, Format};
    let meta = crm_contracts::v1::CommandMeta {
        command_id: uuid::Uuid::now_v7().to_string(),
        actor: actor.into(),
        correlation_id: None,
        causation_id: None,
        issued_at: Some(chrono::Utc::now().to_rfc3339()),
    };
    encode(&meta, command, Format::Json).expect("a command encodes")
}

//! The fault suite's harness: NATS servers and PostgreSQL clusters of a test's own (so a
//! test may kill and restart them without disturbing the others), `crm load` run as a
//! process the way an operator runs it, and the invariants every fault test checks:
//! 0 accepted commands lost, every event in the stream exactly once, every event
//! applied exactly once to every read model, 0 read-model rows differing from a rebuild
//! out of the event store.

use std::collections::HashSet;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use uuid::Uuid;

use crate::{binary, Platform, Service};
use crm_bus::connect::NatsAccess;
use crm_eventstore::testing::TestDatabase;

/// A TCP port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn scratch_dir(what: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("crm-{what}-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

async fn wait_for_port(port: u16, what: &str, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            Instant::now() < deadline,
            "{what} does not listen on {port} after 30 s:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One `nats-server` with JetStream, alone or as a node of a cluster; its store survives
/// restarts.
pub struct NatsNode {
    pub name: String,
    pub port: u16,
    cluster: Option<(u16, Vec<u16>)>,
    /// Configuration of a single server beyond its port and store (TLS, accounts).
    config: Option<String>,
    dir: PathBuf,
    child: Option<Child>,
}

impl NatsNode {
    fn new(name: &str, cluster: Option<(u16, Vec<u16>)>) -> Self {
        Self {
            name: name.to_string(),
            port: free_port(),
            cluster,
            config: None,
            dir: scratch_dir(&format!("nats-{name}")),
            child: None,
        }
    }

    /// A single server of the test's own.
    pub async fn single() -> Self {
        let mut node = Self::new("solo", None);
        node.start().await;
        node
    }

    /// A single server of the test's own, configured with `config` (the text of a
    /// `nats-server.conf`: TLS, authorization, accounts) besides its port and store.
    pub async fn configured(config: &str) -> Self {
        let mut node = Self::new("configured", None);
        node.config = Some(config.to_string());
        node.start().await;
        node
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The server's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.log()).unwrap_or_default()
    }

    fn log(&self) -> PathBuf {
        self.dir.join("server.log")
    }

    fn spawn(&mut self) {
        let server = std::env::var("CRM_TEST_NATS_SERVER").unwrap_or_else(|_| "nats-server".into());
        let mut cmd = Command::new(&server);
        cmd.args(["-a", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-n", &self.name, "-l"])
            .arg(self.log());
        if self.cluster.is_none() {
            cmd.arg("-js").arg("-sd").arg(self.dir.join("store"));
        }
        if let Some(config) = &self.config {
            let path = self.dir.join("server.conf");
            std::fs::write(&path, config).expect("nats-server.conf");
            cmd.arg("-c").arg(path);
        }
        if let Some((port, routes)) = &self.cluster {
            // The shipped cluster configuration, the node's settings from the
            // environment, as deploy/nats/cluster.conf describes.
            let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/nats/cluster.conf");
            cmd.arg("-c").arg(config);
            cmd.env("NATS_SERVER_NAME", &self.name)
                .env("NATS_PORT", self.port.to_string())
                .env("NATS_CLUSTER_PORT", port.to_string())
                .env("NATS_STORE_DIR", self.dir.join("store"));
            for (i, p) in routes.iter().enumerate() {
                cmd.env(
                    format!("NATS_ROUTE_{}", i + 1),
                    format!("nats://127.0.0.1:{p}"),
                );
            }
        }
        // Configuration errors go to stderr, before the log file exists: keep them in it.
        let console = std::fs::File::create(self.log()).expect("nats log");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(console.try_clone().expect("nats log"))
            .stderr(console)
            .spawn()
            .unwrap_or_else(|e| panic!("start {server} (apt-get install nats-server): {e}"));
        self.child = Some(child);
    }

    pub async fn start(&mut self) {
        self.spawn();
        wait_for_port(
            self.port,
            &format!("nats-server {}", self.name),
            &self.log(),
        )
        .await;
    }

    /// SIGKILL: no goodbye to clients or to the cluster.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub async fn restart(&mut self) {
        self.kill();
        self.start().await;
    }
}

impl Drop for NatsNode {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Three `nats-server` processes on loopback ports forming one JetStream cluster, each
/// started from the shipped `deploy/nats/cluster.conf`.
pub struct NatsCluster {
    pub nodes: Vec<NatsNode>,
}

impl NatsCluster {
    pub async fn start(size: usize) -> Self {
        assert_eq!(size, 3, "deploy/nats/cluster.conf names three routes");
        let cluster_ports: Vec<u16> = (0..size).map(|_| free_port()).collect();
        let mut nodes: Vec<NatsNode> = (0..size)
            .map(|i| {
                NatsNode::new(
                    &format!("n{}", i + 1),
                    Some((cluster_ports[i], cluster_ports.clone())),
                )
            })
            .collect();
        for n in &mut nodes {
            n.spawn();
        }
        for n in &nodes {
            wait_for_port(n.port, &format!("nats-server {}", n.name), &n.log()).await;
        }
        let cluster = Self { nodes };
        // JetStream answers once the nodes have elected a meta leader: create (and
        // delete) a replicated stream to be sure.
        let client = crm_bus::connect::connect(&cluster.urls(), &Default::default())
            .await
            .expect("cluster");
        let js = async_nats::jetstream::new(client);
        let probe = format!("PROBE_{}", Uuid::new_v4().simple());
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let created = js
                .create_stream(async_nats::jetstream::stream::Config {
                    name: probe.clone(),
                    subjects: vec![format!("probe.{probe}")],
                    num_replicas: size,
                    ..Default::default()
                })
                .await;
            match created {
                Ok(_) => break,
                Err(e) => assert!(
                    Instant::now() < deadline,
                    "the JetStream cluster cannot create an R{size} stream after 60 s: {e}\n{}",
                    std::fs::read_to_string(cluster.nodes[0].log()).unwrap_or_default()
                ),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let _ = js.delete_stream(&probe).await;
        cluster
    }

    /// Every node's URL, comma-separated, as clients take them.
    pub fn urls(&self) -> String {
        self.nodes
            .iter()
            .map(NatsNode::url)
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// A PostgreSQL cluster of the test's own (initdb in a scratch directory, a free port),
/// so the test can crash and restart it. Run as the `postgres` user when the tests run
/// as root (initdb refuses root).
pub struct PgCluster {
    pub port: u16,
    dir: PathBuf,
    bin: PathBuf,
    as_postgres: bool,
}

impl PgCluster {
    pub async fn start() -> Self {
        Self::start_with(None).await
    }

    /// A cluster that speaks TLS only, with `certs`' server certificate: `pg_hba.conf`
    /// refuses every connection over TCP that is not encrypted.
    pub async fn start_tls(certs: &crate::tls::Certificates) -> Self {
        Self::start_with(Some(certs)).await
    }

    async fn start_with(tls: Option<&crate::tls::Certificates>) -> Self {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()
            .and_then(|d| {
                d.filter_map(Result::ok)
                    .map(|e| e.path().join("bin"))
                    .filter(|p| p.join("initdb").exists())
                    .max()
            })
            .expect("PostgreSQL server binaries in /usr/lib/postgresql/*/bin (apt-get install postgresql)");
        let as_postgres = std::process::Command::new("id")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
            .unwrap_or(false);
        let dir = scratch_dir("pg");
        let cluster = Self {
            port: free_port(),
            dir,
            bin,
            as_postgres,
        };
        if as_postgres {
            let ok = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&cluster.dir)
                .status()
                .expect("chown");
            assert!(ok.success());
        }
        cluster.run(
            "initdb",
            &[
                "-D",
                &cluster.data(),
                "-U",
                "postgres",
                "-A",
                "trust",
                "--no-sync",
            ],
        );
        if let Some(certs) = tls {
            cluster.serve_tls_only(certs);
        }
        cluster.start_server().await;
        cluster
    }

    fn serve_tls_only(&self, certs: &crate::tls::Certificates) {
        let data = self.dir.join("data");
        std::fs::copy(certs.server_cert(), data.join("server.crt")).expect("server.crt");
        std::fs::copy(certs.server_key(), data.join("server.key")).expect("server.key");
        let mut conf = std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))
            .expect("postgresql.conf");
        std::io::Write::write_all(
            &mut conf,
            b"ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n",
        )
        .expect("postgresql.conf");
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all trust\nhostssl all all 127.0.0.1/32 trust\nhostnossl all all 0.0.0.0/0 reject\n",
        )
        .expect("pg_hba.conf");
        // The key must be the server's own and unreadable by others.
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(
            data.join("server.key"),
            std::fs::Permissions::from_mode(0o600),
        )
        .expect("chmod server.key");
        if self.as_postgres {
            let ok = Command::new("chown")
                .args(["postgres:postgres"])
                .arg(data.join("server.crt"))
                .arg(data.join("server.key"))
                .status()
                .expect("chown");
            assert!(ok.success());
        }
    }

    fn data(&self) -> String {
        self.dir.join("data").display().to_string()
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let exe = self.bin.join(tool);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        let out = cmd.args(args).output().expect("run a PostgreSQL tool");
        assert!(
            out.status.success(),
            "{tool} {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    async fn start_server(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
            self.port,
            self.dir.display()
        );
        let log = self.dir.join("server.log").display().to_string();
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data(),
                "-o",
                &options,
                "-l",
                &log,
                "-w",
                "start",
            ],
        );
        wait_for_port(self.port, "PostgreSQL", Path::new(&log)).await;
    }

    /// Stop as a crash would (immediate: no checkpoint, recovery from the WAL on start).
    pub fn crash(&self) {
        self.run("pg_ctl", &["-D", &self.data(), "-m", "immediate", "stop"]);
    }

    pub async fn start_again(&self) {
        self.start_server().await;
    }

    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    pub async fn create_database(&self) -> String {
        use sqlx::Connection;
        let name = format!("crm_{}", Uuid::new_v4().simple());
        let mut c = sqlx::PgConnection::connect(&self.url("postgres"))
            .await
            .expect("private PostgreSQL");
        sqlx::query(&format!("CREATE DATABASE \"{name}\""))
            .execute(&mut c)
            .await
            .expect("create database");
        self.url(&name)
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let exe = self.bin.join("pg_ctl");
        let data = self.data();
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        let _ = cmd
            .args(["-D", &data, "-m", "immediate", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `crm load` as a process, recording the id of every accepted command.
pub struct Load {
    child: Child,
    pub record: PathBuf,
    json: PathBuf,
    log: PathBuf,
}

impl Load {
    /// Run `crm load` with `args` (ingress, sizes, stream, groups); `--record` and
    /// `--json` are added here.
    pub fn start(args: &[String]) -> Self {
        let dir = std::env::temp_dir();
        let id = Uuid::new_v4().simple().to_string();
        let (record, json, log) = (
            dir.join(format!("load-{id}.accepted")),
            dir.join(format!("load-{id}.json")),
            dir.join(format!("load-{id}.log")),
        );
        let file = std::fs::File::create(&log).expect("load log");
        let child = Command::new(binary("crm"))
            .arg("load")
            .args(args)
            .arg("--record")
            .arg(&record)
            .arg("--json")
            .arg(&json)
            .env_remove("CRM_NATS_URL")
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log"))
            .stderr(file)
            .spawn()
            .expect("start crm load");
        Self {
            child,
            record,
            json,
            log,
        }
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Wait for the load to end; it must succeed. Prints its report; returns the
    /// summary.
    pub async fn finish(mut self) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(900);
        let status = loop {
            if let Ok(Some(s)) = self.child.try_wait() {
                break s;
            }
            assert!(Instant::now() < deadline, "crm load still runs after 900 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let output = std::fs::read_to_string(&self.log).unwrap_or_default();
        println!("{output}");
        assert!(status.success(), "crm load failed ({status}):\n{output}");
        serde_json::from_slice(&std::fs::read(&self.json).expect("load summary"))
            .expect("summary JSON")
    }

    /// The ids of the accepted commands.
    pub fn accepted(path: &Path) -> HashSet<Uuid> {
        std::fs::read_to_string(path)
            .expect("record of accepted commands")
            .lines()
            .map(|l| l.parse().expect("a command id"))
            .collect()
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for p in [&self.json, &self.log] {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// What a fault test checks once the load is over and the faults have stopped.
pub struct Invariants<'a> {
    pub name: &'a str,
    pub store_url: &'a str,
    pub nats_url: &'a str,
    pub nats_access: &'a NatsAccess,
    pub stream: &'a str,
    /// Read-model databases, one per projector group.
    pub read_urls: Vec<&'a str>,
    /// `crm load --record` output.
    pub record: &'a Path,
    /// Messages put into the stream on purpose that are not events (poison).
    pub foreign_messages: u64,
}

/// The figures a fault test prints.
#[derive(Debug)]
pub struct Figures {
    pub accepted: usize,
    pub lost: usize,
    pub events: u64,
    pub stream_duplicates: u64,
    pub stream_missing: u64,
    /// Messages whose log position is not after the one before them.
    pub stream_out_of_order: u64,
    pub applied_twice: i64,
    pub differing_rows: u64,
}

impl Invariants<'_> {
    pub async fn check(&self) -> Figures {
        let (accepted, lost, ids) = self.stored().await;
        let events = ids.len() as u64;
        let (duplicates, missing, out_of_order) = self.in_stream(&ids).await;
        let figures = Figures {
            accepted,
            lost,
            events,
            stream_duplicates: duplicates,
            stream_missing: missing,
            stream_out_of_order: out_of_order,
            applied_twice: self.applied_twice(events).await,
            differing_rows: self.differing_rows(),
        };
        self.report(&figures);
        figures
    }

    /// Every accepted command is in the event store (invariant 1): accepted, lost, the
    /// events' ids.
    async fn stored(&self) -> (usize, usize, HashSet<Uuid>) {
        let store = crm_eventstore::postgres::PgEventStore::connect(self.store_url, 2)
            .await
            .expect("event store");
        let accepted = Load::accepted(self.record);
        let stored: HashSet<Uuid> = sqlx::query_scalar("SELECT DISTINCT command_id FROM events")
            .fetch_all(store.pool())
            .await
            .expect("command ids")
            .into_iter()
            .collect();
        let lost = accepted.difference(&stored).count();
        let ids: HashSet<Uuid> = sqlx::query_scalar("SELECT event_id FROM events")
            .fetch_all(store.pool())
            .await
            .expect("event ids")
            .into_iter()
            .collect();
        (accepted.len(), lost, ids)
    }

    /// The stream, once it holds as many messages as the store has events (and the
    /// foreign ones).
    async fn full_stream(&self, events: u64) -> async_nats::jetstream::stream::Stream {
        let client = crm_bus::connect::connect(self.nats_url, self.nats_access)
            .await
            .expect("NATS");
        let js = async_nats::jetstream::new(client);
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            match js.get_stream(self.stream).await {
                Ok(mut s) => {
                    let last = s.info().await.map(|i| i.state.last_sequence).unwrap_or(0);
                    if last >= events + self.foreign_messages {
                        return s;
                    }
                    assert!(
                        Instant::now() < deadline,
                        "{}: the stream holds {last} messages of {} after 180 s",
                        self.name,
                        events + self.foreign_messages
                    );
                }
                Err(e) => assert!(Instant::now() < deadline, "{}: stream: {e}", self.name),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Every event is in the stream, once, in the log's order (invariant 2): duplicates,
    /// missing, out of order.
    async fn in_stream(&self, ids: &HashSet<Uuid>) -> (u64, u64, u64) {
        let mut stream = self.full_stream(ids.len() as u64).await;
        let total = stream.info().await.expect("stream info").state.messages;
        let consumer = stream
            .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig::default())
            .await
            .expect("ordered consumer");
        let mut messages = consumer.messages().await.expect("messages");
        let mut seen = HashSet::new();
        let mut duplicates = 0u64;
        let mut out_of_order = 0u64;
        let mut last_position = None;
        for _ in 0..total {
            let m = tokio::time::timeout(Duration::from_secs(30), messages.next())
                .await
                .expect("the stream's messages")
                .expect("more messages")
                .expect("a message");
            let id = m
                .headers
                .as_ref()
                .and_then(|h| h.get("Nats-Msg-Id"))
                .and_then(|v| v.as_str().parse::<Uuid>().ok());
            if let Some(id) = id {
                if !seen.insert(id) {
                    duplicates += 1;
                }
            }
            // The stream follows the log's order (ADR 0003): positions only increase.
            if let Some(position) = m.headers.as_ref().and_then(crm_bus::envelope::log_position) {
                if last_position.is_some_and(|last| position <= last) {
                    out_of_order += 1;
                }
                last_position = Some(position);
            }
        }
        let missing = ids.difference(&seen).count() as u64;
        (duplicates, missing, out_of_order)
    }

    /// Every event applied once to every read model (invariant 3): the surplus applied.
    async fn applied_twice(&self, events: u64) -> i64 {
        let mut applied_twice = 0;
        for url in &self.read_urls {
            let read = crm_projections::ReadStore::connect(url, 2)
                .await
                .expect("read store");
            let deadline = Instant::now() + Duration::from_secs(180);
            loop {
                let applied: i64 = read
                    .checkpoints()
                    .await
                    .expect("checkpoints")
                    .iter()
                    .map(|c| c.events_applied)
                    .sum();
                if applied >= events as i64 {
                    applied_twice += applied - events as i64;
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "{}: {url}: {applied} of {events} events applied after 180 s",
                    self.name
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        applied_twice
    }

    /// The read models equal a rebuild from the event store (invariant 4): rows differing.
    fn differing_rows(&self) -> u64 {
        let mut differing = 0;
        for url in &self.read_urls {
            for projection in ["ownership", "timeline", "analytics"] {
                let out = Command::new(binary("crm"))
                    .args(["projections", "verify", projection])
                    .env("CRM_STORE_URL", self.store_url)
                    .env("CRM_READ_URL", url)
                    .output()
                    .expect("crm projections verify");
                let stdout = String::from_utf8_lossy(&out.stdout);
                for line in stdout.lines() {
                    if let Some(n) = line
                        .split(": ")
                        .last()
                        .and_then(|t| t.strip_suffix(" differing rows"))
                        .and_then(|n| n.trim().parse::<u64>().ok())
                    {
                        differing += n;
                    }
                }
                assert!(
                    stdout.contains("differing rows"),
                    "{}: verify {projection}:\n{stdout}\n{}",
                    self.name,
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
        differing
    }

    /// The `FAULT` line, and every invariant held.
    fn report(&self, figures: &Figures) {
        println!(
            "FAULT {}: {} accepted commands, {} lost; {} events, {} missing from the stream, {} twice in it, {} out of order; {} read model(s): {} events applied twice, {} rows differing from a rebuild out of the event store",
            self.name,
            figures.accepted,
            figures.lost,
            figures.events,
            figures.stream_missing,
            figures.stream_duplicates,
            figures.stream_out_of_order,
            self.read_urls.len(),
            figures.applied_twice,
            figures.differing_rows
        );
        assert_eq!(
            (
                figures.lost,
                figures.stream_missing,
                figures.stream_duplicates,
                figures.stream_out_of_order,
                figures.applied_twice,
                figures.differing_rows
            ),
            (0, 0, 0, 0, 0, 0),
            "{}: {figures:?}",
            self.name
        );
        assert!(figures.accepted > 0, "{}: nothing was accepted", self.name);
    }
}

/// Where the platform of one test runs.
pub struct Rig {
    pub store_url: String,
    pub read_url: String,
    pub nats_url: String,
    /// TLS and credentials for NATS, given to every process (and to the checks).
    pub nats_access: NatsAccess,
    pub stream: String,
    pub prefix: String,
    pub group: String,
    pub http_port: u16,
    /// Extra settings for the relay (stream replicas).
    pub relay_env: Vec<(&'static str, String)>,
    /// Extra projector settings (chaos, ack wait).
    pub projector_env: Vec<(&'static str, String)>,
    /// Main-phase commands of the load (after 20 managers and 400 customers).
    pub commands: usize,
    /// Commands per second the load aims at; 0: as fast as answered. A test that must
    /// inject several faults during the load sets it, so the load lasts long enough
    /// however fast the machine answers.
    pub rate: u32,
}

impl Rig {
    pub fn on(platform: &Platform, read: &TestDatabase) -> Self {
        Self {
            store_url: platform.db.url.clone(),
            read_url: read.url.clone(),
            nats_url: crm_bus::testing::nats_url(),
            nats_access: NatsAccess::default(),
            stream: platform.stream.spec.name.clone(),
            prefix: platform.stream.spec.subjects.prefix().to_string(),
            group: "faults".into(),
            http_port: free_port(),
            relay_env: Vec::new(),
            projector_env: Vec::new(),
            commands: 6_000,
            rate: 0,
        }
    }

    pub fn env(&self) -> Vec<(&'static str, String)> {
        [
            ("CRM_STORE_URL", self.store_url.clone()),
            ("CRM_NATS_URL", self.nats_url.clone()),
            ("CRM_STREAM", self.stream.clone()),
            ("CRM_SUBJECT_PREFIX", self.prefix.clone()),
            // Two fault tests run at once next to the rest of the suite: stay well
            // inside PostgreSQL's 100 connections.
            ("CRM_DB_CONNECTIONS", "4".into()),
        ]
        .into_iter()
        .chain(self.nats_access().map(|(env, _, value)| (env, value)))
        .collect()
    }

    /// `nats_access` as each process takes it: (variable, option, value).
    fn nats_access(&self) -> impl Iterator<Item = (&'static str, &'static str, String)> + '_ {
        let a = &self.nats_access;
        [
            ("CRM_NATS_CA_FILE", "--nats-ca-file", &a.nats_ca_file),
            (
                "CRM_NATS_CREDS_FILE",
                "--nats-creds-file",
                &a.nats_creds_file,
            ),
            (
                "CRM_NATS_NKEY_SEED_FILE",
                "--nats-nkey-seed-file",
                &a.nats_nkey_seed_file,
            ),
        ]
        .into_iter()
        .filter_map(|(env, flag, path)| Some((env, flag, path.as_ref()?.display().to_string())))
    }

    pub async fn command_service(&self) -> Service {
        let addr = format!("127.0.0.1:{}", self.http_port);
        let mut s = Service::start("crm-command-service", &["--http-addr", &addr], &self.env());
        s.wait_ready().await;
        s
    }

    pub fn relay_process(&self) -> Service {
        let mut env = self.env();
        env.extend(self.relay_env.iter().cloned());
        Service::start("crm-relay", &[], &env)
    }

    pub async fn relay(&self) -> Service {
        let mut s = self.relay_process();
        s.wait_ready().await;
        s
    }

    pub async fn projector(&self) -> Service {
        let mut env = self.env();
        env.push(("CRM_READ_URL", self.read_url.clone()));
        env.push(("CRM_PROJECTOR_GROUP", self.group.clone()));
        env.push(("CRM_HTTP_ADDR", "127.0.0.1:0".into()));
        env.push(("CRM_PROJECTOR_ACK_WAIT", "2".into()));
        env.extend(self.projector_env.iter().cloned());
        let mut s = Service::start("crm-projector", &[], &env);
        s.wait_ready().await;
        s
    }

    pub fn load(&self, seed: u64) -> Load {
        let args: Vec<String> = [
            "--nats",
            &self.nats_url,
            "--http",
            &format!("http://127.0.0.1:{}", self.http_port),
            "--subject-prefix",
            &self.prefix,
            "--stream",
            &self.stream,
            "--group",
            &self.group,
            "--customers",
            "400",
            "--managers",
            "20",
            "--commands",
            &self.commands.to_string(),
            "--in-flight",
            "16",
            "--timeout",
            "2",
            "--seed",
            &seed.to_string(),
            "--rate",
            &self.rate.to_string(),
        ]
        .iter()
        .map(|s| s.to_string())
        .chain(
            self.nats_access()
                .flat_map(|(_, flag, value)| [flag.to_string(), value]),
        )
        .collect();
        Load::start(&args)
    }

    /// Command service, relay and one projector, each ready.
    pub async fn start_platform(&self) -> [Service; 3] {
        [
            self.command_service().await,
            self.relay().await,
            self.projector().await,
        ]
    }

    /// Wait for `load` to end, then check the invariants; the load's summary and the
    /// figures.
    pub async fn finish(&self, name: &str, load: Load) -> (serde_json::Value, Figures) {
        let record = load.record.clone();
        let summary = load.finish().await;
        let figures = self.invariants(name, &record).check().await;
        let _ = std::fs::remove_file(record);
        (summary, figures)
    }

    pub fn invariants<'a>(&'a self, name: &'a str, load: &'a std::path::Path) -> Invariants<'a> {
        Invariants {
            name,
            store_url: &self.store_url,
            nats_url: &self.nats_url,
            nats_access: &self.nats_access,
            stream: &self.stream,
            read_urls: vec![&self.read_url],
            record: load,
            foreign_messages: 0,
        }
    }
}

//! `crm-projector`: see the library documentation.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use crm_projector::{App, Config};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "crm-projector",
    version,
    about = "Build the read models from the JetStream event stream"
)]
struct Args {
    /// Read-model database: postgres://… or sqlite://path.
    #[arg(long, env = "CRM_READ_URL", hide_env_values = true)]
    read_url: String,
    /// `off` for a least-privilege role: check that the schema's owner has applied the
    /// migrations (`crm db migrate`) instead of applying them.
    #[arg(long, env = "CRM_MIGRATE", default_value = "on")]
    migrate: crm_eventstore::migrations::Schema,
    #[arg(
        long,
        env = "CRM_NATS_URL",
        default_value = "nats://127.0.0.1:4222",
        hide_env_values = true
    )]
    nats_url: String,
    #[command(flatten)]
    nats: crm_bus::connect::NatsAccess,
    /// JetStream stream of events.
    #[arg(long, env = "CRM_STREAM", default_value = "CRM_EVENTS")]
    stream: String,
    #[arg(long, env = "CRM_SUBJECT_PREFIX", default_value = "crm")]
    subject_prefix: String,
    /// Consumer group: instances of one group share the stream's partitions.
    #[arg(long, env = "CRM_PROJECTOR_GROUP", default_value = "read-models")]
    group: String,
    /// `/healthz` and `/metrics`.
    #[arg(long, env = "CRM_HTTP_ADDR", default_value = "127.0.0.1:8082")]
    http_addr: SocketAddr,
    /// Most messages applied in one transaction.
    #[arg(long, env = "CRM_PROJECTOR_BATCH", default_value_t = 256)]
    batch: usize,
    /// Seconds before an unacknowledged message is delivered again.
    #[arg(long, env = "CRM_PROJECTOR_ACK_WAIT", default_value_t = 10)]
    ack_wait: u64,
    /// Fault injection for drills and the fault suite: the share of batches handed back
    /// (NAK) before they are applied, and of acknowledgements dropped after a batch is
    /// committed, so messages come again, late and out of order. 0 in production.
    #[arg(long, env = "CRM_PROJECTOR_CHAOS", default_value_t = 0.0)]
    chaos: f64,
    /// The first part of the instance id in logs and `rm_projector_instances`
    /// (Kubernetes sets it to the pod's name).
    #[arg(long, env = "HOSTNAME", default_value = "projector")]
    host: String,
    /// Milliseconds between folds of the counters' stripes into one row per key (each
    /// transaction adds to rows of its own; a question sums what was added since).
    #[arg(long, env = "CRM_PROJECTOR_FOLD_EVERY_MS", default_value_t = 5000,
          value_parser = clap::value_parser!(u64).range(10..))]
    fold_every_ms: u64,
    /// Milliseconds a transaction holding fewer than four batches' events waits for more
    /// partitions' batches before it begins (0: it takes only what is there); not while
    /// a partition in it is behind, nor when every partition held is in a transaction.
    /// Larger transactions cost the database less per event; each waits at most this.
    #[arg(long, env = "CRM_PROJECTOR_LINGER_MS", default_value_t = crm_projector::DEFAULT_LINGER_MS,
          value_parser = clap::value_parser!(u64).range(0..=1000))]
    linger_ms: u64,
    #[command(flatten)]
    process: crm_telemetry::ProcessArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    crm_telemetry::init_tracing(a.process.log_format);
    let app = App::build(Config {
        nats_url: a.nats_url,
        nats: a.nats,
        read_url: a.read_url,
        schema: a.migrate,
        stream: a.stream,
        subject_prefix: a.subject_prefix,
        group: a.group,
        http_addr: a.http_addr,
        batch: a.batch,
        ack_wait: Duration::from_secs(a.ack_wait),
        chaos: a.chaos,
        host: a.host,
        fold_every: Duration::from_millis(a.fold_every_ms),
        linger: Duration::from_millis(a.linger_ms),
    })
    .await?;
    tracing::info!(http = %app.http_addr, "health at /healthz, metrics at /metrics");
    a.process.announce_ready(&serde_json::json!({
        "http": app.http_addr.to_string(),
        "instance": app.instance(),
    }))?;
    app.run_until(crm_telemetry::shutdown_signal()).await
}

//! `crm-command-service`: HTTP and NATS request/reply ingress for commands.
#![forbid(unsafe_code)]

use std::net::SocketAddr;

use clap::Parser;
use crm_command_handler::group_commit::GroupCommitConfig;
use crm_command_service::{App, Config};

#[derive(Debug, Parser)]
#[command(
    name = "crm-command-service",
    version,
    about = "Accept commands over HTTP and NATS, decide them, store the events"
)]
struct Args {
    /// Event store: postgres://… or sqlite://path.
    #[arg(long, env = "CRM_STORE_URL", hide_env_values = true)]
    store_url: String,
    /// `off` for a least-privilege role: check that the schema's owner has applied the
    /// migrations (`crm db migrate`) instead of applying them.
    #[arg(long, env = "CRM_MIGRATE", default_value = "on")]
    migrate: crm_eventstore::migrations::Schema,
    /// NATS server; the NATS ingress is off with --no-nats.
    #[arg(
        long,
        env = "CRM_NATS_URL",
        default_value = "nats://127.0.0.1:4222",
        hide_env_values = true
    )]
    nats_url: String,
    #[command(flatten)]
    nats: crm_bus::connect::NatsAccess,
    #[arg(long)]
    no_nats: bool,
    #[arg(long, env = "CRM_SUBJECT_PREFIX", default_value = "crm")]
    subject_prefix: String,
    #[arg(long, env = "CRM_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    http_addr: SocketAddr,
    /// Database connections.
    #[arg(long, env = "CRM_DB_CONNECTIONS", default_value_t = 16)]
    db_connections: u32,
    /// Concurrent group-commit transactions.
    #[arg(long, env = "CRM_WRITERS", default_value_t = 1)]
    writers: usize,
    /// Most commands per transaction.
    #[arg(long, env = "CRM_MAX_BATCH", default_value_t = 256)]
    max_batch: usize,
    /// Customer states kept in memory, the most recently used (about 1 KiB each; a miss
    /// reads the customer's stream).
    #[arg(long, env = "CRM_STATE_CACHE", default_value_t = crm_command_handler::handler::DEFAULT_STATE_CACHE)]
    state_cache: usize,
    /// Seconds a shutdown (SIGTERM) waits for accepted requests to be answered; keep it
    /// below the orchestrator's grace (Kubernetes: terminationGracePeriodSeconds).
    #[arg(long, env = "CRM_SHUTDOWN_GRACE", default_value_t = 20)]
    shutdown_grace: u64,
    /// Secret of the duplicate-check index (required unless CRM_AUTH=off).
    #[arg(long, env = "CRM_INDEX_KEY", hide_env_values = true)]
    index_key: Option<String>,
    /// Durable ingestion: the JetStream stream commands are published to
    /// (`<prefix>.intake.<name>`; e.g. CRM_INTAKE); unset, there is none. Created when
    /// missing.
    #[arg(long, env = "CRM_INTAKE")]
    intake: Option<String>,
    /// The stream the intake's outcomes are published to (`<prefix>.outcomes.<name>.<id>`).
    #[arg(long, env = "CRM_OUTCOMES", default_value = "CRM_OUTCOMES")]
    outcomes: String,
    /// Commands of the intake decided at once (each aggregate's one at a time).
    #[arg(long, env = "CRM_INTAKE_LANES", default_value_t = crm_command_service::intake::DEFAULT_LANES)]
    intake_lanes: usize,
    /// Replicas of the intake's streams when it creates them (3 on a NATS cluster).
    #[arg(long, env = "CRM_STREAM_REPLICAS", default_value_t = 1)]
    stream_replicas: usize,
    /// Days the outcomes are kept for publishers to replay.
    #[arg(long, env = "CRM_OUTCOMES_MAX_AGE_DAYS", default_value_t = 7)]
    outcomes_max_age_days: u64,
    #[command(flatten)]
    auth: crm_auth::AuthArgs,
    #[command(flatten)]
    process: crm_telemetry::ProcessArgs,
}

/// The services' allocator (glibc's malloc was a fifth of this service's CPU under load).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    crm_telemetry::init_tracing(args.process.log_format);
    let auth = (args.auth.verifier("crm-commands").await).map_err(anyhow::Error::msg)?;
    let index_key =
        crm_command_handler::handler::index_key(args.index_key.as_deref(), auth.is_none())
            .map_err(anyhow::Error::msg)?;
    let intake = args.intake.map(|commands| {
        let mut spec = crm_bus::intake::IntakeSpec::new(
            commands,
            args.outcomes,
            crm_bus::Subjects::new(args.subject_prefix.clone()),
        );
        spec.outcomes_max_age = std::time::Duration::from_secs(args.outcomes_max_age_days * 86_400);
        spec.replicas = args.stream_replicas;
        spec
    });
    let app = App::build(Config {
        store_url: args.store_url,
        schema: args.migrate,
        nats_url: (!args.no_nats).then_some(args.nats_url),
        nats: args.nats,
        subject_prefix: args.subject_prefix,
        http_addr: args.http_addr,
        db_connections: args.db_connections,
        group_commit: GroupCommitConfig {
            writers: args.writers,
            max_batch: args.max_batch,
        },
        state_cache: args.state_cache,
        shutdown_grace: std::time::Duration::from_secs(args.shutdown_grace),
        auth,
        index_key,
        intake,
        intake_lanes: args.intake_lanes,
    })
    .await?;
    tracing::info!(http = %app.http_addr, "command service ready");
    args.process
        .announce_ready(&serde_json::json!({ "http": app.http_addr.to_string() }))?;
    app.run_until(crm_telemetry::shutdown_signal()).await
}

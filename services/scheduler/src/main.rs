//! `crm-scheduler`: issues the platform's time-driven commands (pool returns and their
//! warnings, complaint SLA warnings and breaches, dormancy). Running two is safe.
#![forbid(unsafe_code)]

use std::net::SocketAddr;

use anyhow::Context as _;
use clap::Parser;
use crm_command_handler::{CommandHandler, HandlerConfig};
use crm_eventstore::AnyEventStore;
use crm_http::ProbesBuilder;
use crm_scheduler::{Scheduler, SystemClock};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "crm-scheduler",
    version,
    about = "Issue due timers (pool returns, SLA breaches, dormancy) as commands"
)]
struct Args {
    /// Event store: postgres://… or sqlite://path.
    #[arg(long, env = "CRM_STORE_URL", hide_env_values = true)]
    store_url: String,
    /// `off` for a least-privilege role: check that the schema's owner has applied the
    /// migrations (`crm db migrate`) instead of applying them.
    #[arg(long, env = "CRM_MIGRATE", default_value = "on")]
    migrate: crm_eventstore::migrations::Schema,
    /// Seconds between ticks: a deadline is acted on at most this long after it passes.
    #[arg(long, env = "CRM_SCHEDULER_PERIOD", default_value_t = 60)]
    period_seconds: u64,
    /// Actor of the commands it issues (`system:<name>`).
    #[arg(long, env = "CRM_SCHEDULER_NAME", default_value = "scheduler")]
    name: String,
    /// Address of the operations endpoint: `/metrics`, `/livez`, `/readyz`.
    #[arg(long, env = "CRM_METRICS_ADDR", default_value = "127.0.0.1:0")]
    metrics_addr: SocketAddr,
    /// Secret of the duplicate-check index, the command services' (required, except in
    /// development: `CRM_AUTH=off`).
    #[arg(long, env = "CRM_INDEX_KEY", hide_env_values = true)]
    index_key: Option<String>,
    /// `off` marks a development setup, as for the command service (the scheduler checks
    /// no token): the development index key is then allowed.
    #[arg(long = "auth", env = "CRM_AUTH", default_value = "on")]
    auth: String,
    #[command(flatten)]
    process: crm_telemetry::ProcessArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    crm_telemetry::init_tracing(args.process.log_format);
    anyhow::ensure!(
        args.period_seconds > 0,
        "--period-seconds must be at least 1"
    );
    let period = std::time::Duration::from_secs(args.period_seconds);
    let store = AnyEventStore::connect_with(&args.store_url, 4, args.migrate)
        .await
        .context("opening the event store (CRM_STORE_URL)")?;
    let mut probes = ProbesBuilder::new().check("event_store", {
        let store = store.clone();
        move || {
            let store = store.clone();
            async move { store.ping().await.map_err(|e| e.to_string()) }
        }
    });
    // A tick is bounded by the store's timeouts; three periods without one is stuck.
    let beat = probes.heartbeat("tick", period * 3 + std::time::Duration::from_secs(60));
    let probes = probes.build();
    let ops = crm_http::ops::serve_ops(args.metrics_addr, &probes).await?;
    tracing::info!(%ops, "metrics at /metrics, probes at /livez and /readyz");
    let development = args.auth == "off";
    if development && args.index_key.is_none() {
        tracing::warn!("CRM_AUTH=off and no CRM_INDEX_KEY: the development index key is used");
    }
    let index_key = crm_command_handler::handler::index_key(args.index_key.as_deref(), development)
        .map_err(anyhow::Error::msg)?;
    let handler = CommandHandler::new(
        store.clone(),
        HandlerConfig {
            index_key,
            ..HandlerConfig::default()
        },
    );
    let scheduler = Scheduler::new(store, handler, &args.name);
    tracing::info!(period_s = args.period_seconds, "scheduler running");
    args.process
        .announce_ready(&serde_json::json!({ "metrics": ops.to_string() }))?;
    scheduler
        .run(
            &SystemClock,
            period,
            || beat.beat(),
            crm_telemetry::shutdown_signal(),
        )
        .await?;
    tracing::info!("scheduler stopped");
    Ok(())
}

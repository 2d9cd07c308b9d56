//! `crm-scheduler`: issues the platform's time-driven commands (pool returns and their
//! warnings, complaint SLA warnings and breaches, dormancy). Running two is safe.
#![forbid(unsafe_code)]

use std::net::SocketAddr;

use anyhow::Context as _;
use clap::Parser;
use crm_command_handler::{CommandHandler, HandlerConfig};
use crm_eventstore::AnyEventStore;
use crm_scheduler::{Scheduler, SystemClock};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "crm-scheduler",
    about = "Issue due timers (pool returns, SLA breaches, dormancy) as commands"
)]
struct Args {
    /// Event store: postgres://… or sqlite://path.
    #[arg(long, env = "CRM_STORE_URL")]
    store_url: String,
    /// Seconds between ticks: a deadline is acted on at most this long after it passes.
    #[arg(long, env = "CRM_SCHEDULER_PERIOD", default_value_t = 60)]
    period_seconds: u64,
    /// Actor of the commands it issues (`system:<name>`).
    #[arg(long, env = "CRM_SCHEDULER_NAME", default_value = "scheduler")]
    name: String,
    /// Address of the Prometheus `/metrics` endpoint.
    #[arg(long, env = "CRM_METRICS_ADDR", default_value = "127.0.0.1:0")]
    metrics_addr: SocketAddr,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    crm_telemetry::init_tracing();
    let args = Args::parse();
    anyhow::ensure!(
        args.period_seconds > 0,
        "--period-seconds must be at least 1"
    );
    let metrics = crm_telemetry::serve_metrics(args.metrics_addr).await?;
    tracing::info!(%metrics, "metrics at /metrics");
    let store = AnyEventStore::connect(&args.store_url, 4)
        .await
        .with_context(|| format!("opening the event store at {}", args.store_url))?;
    let handler = CommandHandler::new(store.clone(), HandlerConfig::default());
    let scheduler = Scheduler::new(store, handler, &args.name);
    tracing::info!(period_s = args.period_seconds, "scheduler running");
    crm_telemetry::announce_ready(&serde_json::json!({ "metrics": metrics.to_string() }))?;
    scheduler
        .run(
            &SystemClock,
            std::time::Duration::from_secs(args.period_seconds),
            crm_telemetry::shutdown_signal(),
        )
        .await?;
    tracing::info!("scheduler stopped");
    Ok(())
}

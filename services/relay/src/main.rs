//! `crm-relay`: publishes the event store's global log to NATS JetStream.
//!
//! Several relays may run; only the holder of the PostgreSQL leader lock publishes, the
//! others wait on standby and take over when it dies.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use crm_bus::relay::{Relay, RelayConfig, SoleRelay};
use crm_bus::stream::StreamSpec;
use crm_bus::Subjects;
use crm_eventstore::postgres::{LeaderLock, PgPool};
use crm_eventstore::AnyEventStore;
use crm_telemetry::names;

/// The allocator every service uses (glibc's malloc cost the command service a fifth of its CPU).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "crm-relay",
    about = "Publish stored events to NATS JetStream, once each, in order"
)]
struct Args {
    /// Event store: postgres://… or sqlite://path.
    #[arg(long, env = "CRM_STORE_URL")]
    store_url: String,
    #[arg(long, env = "CRM_NATS_URL", default_value = "nats://127.0.0.1:4222")]
    nats_url: String,
    /// JetStream stream name.
    #[arg(long, env = "CRM_STREAM", default_value = "CRM_EVENTS")]
    stream: String,
    /// First token of every subject.
    #[arg(long, env = "CRM_SUBJECT_PREFIX", default_value = "crm")]
    subject_prefix: String,
    /// Stream replicas (3 on a NATS cluster).
    #[arg(long, env = "CRM_STREAM_REPLICAS", default_value_t = 1)]
    replicas: usize,
    /// Events per publish round trip.
    #[arg(long, env = "CRM_RELAY_BATCH", default_value_t = 512)]
    batch: usize,
    /// Seconds between sealing new events with a global checkpoint (tamper evidence,
    /// `crm audit verify`); 0 turns sealing off.
    #[arg(long, env = "CRM_CHECKPOINT_EVERY", default_value_t = 10)]
    checkpoint_every: u64,
    /// Address of the Prometheus `/metrics` endpoint.
    #[arg(long, env = "CRM_METRICS_ADDR", default_value = "127.0.0.1:0")]
    metrics_addr: SocketAddr,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    crm_telemetry::init_tracing();
    let args = Args::parse();
    let metrics = crm_telemetry::serve_metrics(args.metrics_addr).await?;
    tracing::info!(%metrics, "metrics at /metrics");

    let store = AnyEventStore::connect(&args.store_url, 4)
        .await
        .with_context(|| format!("opening the event store at {}", args.store_url))?;
    let client = crm_bus::connect::connect(&args.nats_url)
        .await
        .with_context(|| {
            format!(
                "connecting to NATS at {}",
                crm_bus::connect::redacted(&args.nats_url)
            )
        })?;
    let mut spec = StreamSpec::new(args.stream, Subjects::new(args.subject_prefix));
    spec.replicas = args.replicas;
    let config = RelayConfig {
        batch_size: args.batch,
        ..RelayConfig::default()
    };
    let relay = Relay::new(
        store.clone(),
        async_nats::jetstream::new(client),
        spec,
        config,
    );
    if args.checkpoint_every > 0 {
        tokio::spawn(seal_periodically(
            store.clone(),
            Duration::from_secs(args.checkpoint_every),
        ));
    }
    crm_telemetry::announce_ready(&serde_json::json!({ "metrics": metrics.to_string() }))?;

    let shutdown = crm_telemetry::shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        let result = match &store {
            AnyEventStore::Postgres(pg) => {
                let mut lock = tokio::select! {
                    lock = wait_for_leadership(pg.pool()) => lock?,
                    _ = &mut shutdown => return Ok(()),
                };
                metrics::gauge!(names::RELAY_LEADER).set(1.0);
                tracing::info!("leader lock acquired");
                let r = relay.run(&mut lock, &mut shutdown).await;
                metrics::gauge!(names::RELAY_LEADER).set(0.0);
                r
            }
            AnyEventStore::Sqlite(_) => relay.run(&mut SoleRelay, &mut shutdown).await,
        };
        match result {
            Ok(()) => {
                tracing::info!("relay stopped");
                return Ok(());
            }
            Err(e) => {
                // Resuming is always safe: the stream tells where publication stopped.
                tracing::error!(error = %e, "relay failed; resuming in 1 s");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Seal what is new every `period`. Every relay does it, leader or standby: checkpoint
/// numbers are unique, so racing sealers never store two checkpoints for one range.
async fn seal_periodically(store: AnyEventStore, period: Duration) {
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let sealed = crm_audit::seal_pending(
            &store,
            crm_audit::DEFAULT_EVENTS_PER_CHECKPOINT,
            &mut |c| tracing::debug!(seq = c.seq, events = c.event_count, hash = %c.hash, "global checkpoint"),
        )
        .await;
        match sealed {
            Ok(cps) if !cps.is_empty() => tracing::info!(
                checkpoints = cps.len(),
                last = cps.last().map(|c| c.seq),
                "sealed new events"
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "sealing failed; retrying next period"),
        }
    }
}

async fn wait_for_leadership(pool: &PgPool) -> anyhow::Result<LeaderLock> {
    let mut announced = false;
    loop {
        match LeaderLock::try_acquire(pool, "relay").await {
            Ok(Some(lock)) => return Ok(lock),
            Ok(None) => {}
            Err(e) => {
                // The database is away (restarting, failing over): wait for it, do not
                // exit.
                tracing::warn!(error = %e, "cannot reach the store for the leader lock; retrying in 1 s");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        }
        if !announced {
            tracing::info!("another relay holds the leader lock; standing by");
            announced = true;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

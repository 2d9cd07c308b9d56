//! `crm-relay`: publishes the event store's global log to NATS JetStream.
//!
//! Several relays may run; only the holder of the PostgreSQL leader lock publishes, the
//! others wait on standby and take over when it dies, or when it freezes: a leader
//! silent for `LEADER_IDLE_TIMEOUT` loses its session, and with it the lock. A frozen
//! leader that wakes cannot publish out of order: every message it sends expects the
//! stream's last sequence it saw, which the new leader has moved on (`relay.rs`).
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use crm_bus::relay::{Leadership, Relay, RelayConfig, SoleRelay};
use crm_bus::stream::StreamSpec;
use crm_bus::Subjects;
use crm_eventstore::postgres::{LeaderCandidate, LeaderLock, PgPool};
use crm_eventstore::AnyEventStore;
use crm_http::{Heartbeat, ProbesBuilder};
use crm_telemetry::names;

/// The allocator every service uses (glibc's malloc cost the command service a fifth of its CPU).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "crm-relay",
    version,
    about = "Publish stored events to NATS JetStream, once each, in order"
)]
struct Args {
    /// Event store: postgres://… or sqlite://path.
    #[arg(long, env = "CRM_STORE_URL", hide_env_values = true)]
    store_url: String,
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
    /// Address of the operations endpoint: `/metrics`, `/livez`, `/readyz`.
    #[arg(long, env = "CRM_METRICS_ADDR", default_value = "127.0.0.1:0")]
    metrics_addr: SocketAddr,
    #[command(flatten)]
    process: crm_telemetry::ProcessArgs,
}

/// Liveness fails when neither the leader's loop (which checks its lock every second)
/// nor the standby's (which asks for it twice a second) has turned for this long.
const LIVENESS_BOUND: Duration = Duration::from_secs(30);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    crm_telemetry::init_tracing(args.process.log_format);
    let store = AnyEventStore::connect_with(&args.store_url, 4, args.migrate)
        .await
        .context("opening the event store (CRM_STORE_URL)")?;
    let client = crm_bus::connect::connect(&args.nats_url, &args.nats)
        .await
        .with_context(|| {
            format!(
                "connecting to NATS at {}",
                crm_bus::connect::redacted(&args.nats_url)
            )
        })?;
    let mut probes = probes(&store, &client);
    let beat = probes.heartbeat("relay_loop", LIVENESS_BOUND);
    let probes = probes.build();
    let ops = crm_http::ops::serve_ops(args.metrics_addr, &probes).await?;
    tracing::info!(%ops, "metrics at /metrics, probes at /livez and /readyz");
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
    args.process
        .announce_ready(&serde_json::json!({ "metrics": ops.to_string() }))?;

    let shutdown = crm_telemetry::shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        let result = match &store {
            AnyEventStore::Postgres(pg) => {
                let lock = tokio::select! {
                    lock = wait_for_leadership(pg.pool(), &beat) => lock?,
                    _ = &mut shutdown => return Ok(()),
                };
                metrics::gauge!(names::RELAY_LEADER).set(1.0);
                tracing::info!("leader lock acquired");
                let mut leader = Beating { lock, beat: &beat };
                let r = relay.run(&mut leader, &mut shutdown).await;
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

/// Readiness: the store answers and NATS is connected (a standby is ready: it is ready
/// to take over).
fn probes(store: &AnyEventStore, client: &async_nats::Client) -> ProbesBuilder {
    let (store, client) = (store.clone(), client.clone());
    ProbesBuilder::new()
        .check("event_store", move || {
            let store = store.clone();
            async move { store.ping().await.map_err(|e| e.to_string()) }
        })
        .check("nats", move || {
            std::future::ready(crm_bus::connect::connected(&client))
        })
}

/// The leader lock, beating the liveness heartbeat each time the relay checks it.
struct Beating<'a> {
    lock: LeaderLock,
    beat: &'a Heartbeat,
}

impl Leadership for Beating<'_> {
    async fn still_leader(&mut self) -> bool {
        self.beat.beat();
        self.lock.still_leader().await
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

/// Ask for the lock twice a second on a session of its own until it is granted.
async fn wait_for_leadership(pool: &PgPool, beat: &Heartbeat) -> anyhow::Result<LeaderLock> {
    let mut announced = false;
    let mut candidate: Option<LeaderCandidate> = None;
    loop {
        beat.beat();
        let asked = match candidate.take() {
            Some(c) => c.try_lead().await,
            None => match LeaderCandidate::new(pool, "relay").await {
                Ok(c) => c.try_lead().await,
                Err(e) => Err(e),
            },
        };
        match asked {
            Ok(Ok(lock)) => return Ok(lock),
            Ok(Err(standing_by)) => candidate = Some(standing_by),
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

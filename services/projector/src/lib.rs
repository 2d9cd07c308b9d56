//! `crm-projector`: builds the read models from the JetStream event stream.
//!
//! - `partitions.rs`: which instance consumes which stream partition (leases, balance);
//! - `consume.rs`: one partition's durable consumer, batches applied exactly once;
//! - `apply.rs`: the batches the partitions deliver, several applied in one transaction;
//! - `health.rs`: lag per partition and the caught up / catching up / stalled verdict;
//! - the read models themselves are decided in `libs/projections/src/project.rs`.
#![forbid(unsafe_code)]

pub mod apply;
pub mod consume;
pub mod health;
pub mod partitions;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use crm_bus::Subjects;
use crm_http::ProbesBuilder;
use crm_projections::ReadStore;

use crate::apply::Applier;
use crate::consume::Ctx;
use crate::health::{Health, State as Verdict};

#[derive(Debug, Clone)]
pub struct Config {
    pub nats_url: String,
    /// TLS, credentials and reply inbox for NATS.
    pub nats: crm_bus::connect::NatsAccess,
    /// Read-model database: postgres://… (server mode) or sqlite://path (embedded).
    pub read_url: String,
    /// Migrate the read models' schema, or check it (a least-privilege role).
    pub schema: crm_eventstore::migrations::Schema,
    pub stream: String,
    pub subject_prefix: String,
    /// Consumer group: every instance of one group shares the partitions.
    pub group: String,
    pub http_addr: SocketAddr,
    /// Most messages applied in one transaction.
    pub batch: usize,
    pub ack_wait: Duration,
    /// Share of batches NAKed before applying and of acks dropped after (drills only).
    pub chaos: f64,
    /// The first part of the instance id (the pod's name in Kubernetes).
    pub host: String,
    /// How often the counters' stripes are folded into stripe 0
    /// ([`ReadStore::fold_counters`]).
    pub fold_every: Duration,
    /// How long a transaction holding fewer than four batches' events waits for more,
    /// while none of its partitions is behind ([`apply::Gather`]).
    pub linger: Duration,
}

/// Milliseconds a transaction waits for more batches by default ([`Config::linger`]).
pub const DEFAULT_LINGER_MS: u64 = 10;

/// Liveness fails when the partition balancer has not turned for this long (each turn
/// is bounded by the lease timeouts; it turns every second).
pub const LIVENESS_BOUND: Duration = Duration::from_secs(60);

/// Readiness: NATS connected, the read models reachable, no partition stalled.
fn probes(store: &ReadStore, client: &async_nats::Client, health: &Arc<Health>) -> ProbesBuilder {
    let (store, client, health) = (store.clone(), client.clone(), health.clone());
    ProbesBuilder::new()
        .check("read_models", move || {
            let store = store.clone();
            async move { store.ping().await.map_err(|e| e.to_string()) }
        })
        .check("nats", move || {
            std::future::ready(crm_bus::connect::connected(&client))
        })
        .check("caught_up", move || {
            let report = health.report();
            async move {
                match report.state {
                    Verdict::Stalled => Err(format!(
                        "stalled: messages wait and nothing was applied for {} s",
                        health::STALL_AFTER.as_secs()
                    )),
                    _ => Ok(()),
                }
            }
        })
}

pub struct App {
    ctx: Ctx,
    instance: String,
    fold_every: Duration,
    pub http_addr: SocketAddr,
}

impl App {
    /// Connect, migrate the read models, make sure the dead-letter stream exists, and
    /// serve `/healthz` and `/metrics`.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        crm_telemetry::install_prometheus();
        let store = ReadStore::connect_with(&config.read_url, 8, config.schema)
            .await
            .context("opening the read models (CRM_READ_URL)")?;
        let client = crm_bus::connect::connect(&config.nats_url, &config.nats)
            .await
            .with_context(|| {
                format!(
                    "connecting to NATS at {}",
                    crm_bus::connect::redacted(&config.nats_url)
                )
            })?;
        let js = async_nats::jetstream::new(client.clone());
        let subjects = Subjects::new(config.subject_prefix.clone());
        js.get_or_create_stream(async_nats::jetstream::stream::Config {
            name: crm_bus::subjects::dead_letter_stream(&config.stream),
            description: Some("events the projectors could not apply".into()),
            subjects: vec![subjects.all_dead_letters()],
            storage: async_nats::jetstream::stream::StorageType::File,
            duplicate_window: Duration::from_secs(120),
            ..Default::default()
        })
        .await
        .map_err(|e| anyhow::anyhow!("creating the dead-letter stream: {e}"))?;

        let instance = format!("{}-{}", config.host, uuid::Uuid::new_v4().simple());
        let health = Arc::new(Health::new(instance.clone()));
        let mut probes = probes(&store, &client, &health);
        let beat = probes.heartbeat("balance", LIVENESS_BOUND);
        let probes = probes.build();
        let ctx = Ctx {
            js,
            stream: config.stream,
            subjects,
            group: config.group,
            applier: Applier::spawn(
                store.clone(),
                apply::Gather {
                    most: config.batch * 4,
                    linger: config.linger,
                },
            ),
            store,
            batch: config.batch,
            ack_wait: config.ack_wait,
            chaos: config.chaos,
            health: health.clone(),
            beat,
        };

        let app = Router::new()
            .route("/healthz", get(healthz))
            .with_state(health)
            .route(
                "/metrics",
                get(|| async { crm_telemetry::render_metrics() }),
            )
            .merge(probes.routes());
        let listener = tokio::net::TcpListener::bind(config.http_addr).await?;
        let http_addr = listener.local_addr()?;
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "health server stopped");
            }
        });
        Ok(Self {
            ctx,
            instance,
            fold_every: config.fold_every,
            http_addr,
        })
    }

    pub fn instance(&self) -> &str {
        &self.instance
    }

    pub fn health(&self) -> Arc<Health> {
        self.ctx.health.clone()
    }

    pub fn store(&self) -> &ReadStore {
        &self.ctx.store
    }

    /// Consume until `shutdown` resolves.
    pub async fn run_until(
        self,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> anyhow::Result<()> {
        tracing::info!(instance = %self.instance, group = %self.ctx.group, "projector running");
        tokio::pin!(shutdown);
        // The relay creates the stream; a projector started first waits for it.
        let mut announced = false;
        while self.ctx.js.get_stream(&self.ctx.stream).await.is_err() {
            if !announced {
                tracing::info!(stream = %self.ctx.stream, "waiting for the stream (the relay creates it)");
                announced = true;
            }
            tokio::select! {
                _ = &mut shutdown => return Ok(()),
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
        }
        // On SQLite the projector adds to stripe 0 only (`apply.rs`): nothing to fold, and
        // a fold would be a second writer.
        let folding = matches!(self.ctx.store, ReadStore::Postgres(_))
            .then(|| tokio::spawn(fold(self.ctx.store.clone(), self.fold_every)));
        let done = partitions::balance(self.ctx, self.instance, shutdown).await;
        if let Some(folding) = folding {
            folding.abort();
        }
        done
    }
}

/// Fold the counters' stripes every `every` (PostgreSQL), so questions read few rows: each
/// transaction adds to the stripe of the lowest partition in it ([`apply`]), and what
/// they added since the last fold is what a question sums beyond stripe 0. Every
/// instance folds; a fold never waits on a projector's transaction, and the rows it
/// holds are held only until it commits.
async fn fold(store: ReadStore, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        match store.fold_counters().await {
            Ok(keys) => {
                metrics::counter!(crm_telemetry::names::PROJECTOR_FOLDED_KEYS_TOTAL)
                    .increment(keys);
            }
            Err(e) => tracing::warn!(error = %e, "folding the counters' stripes failed"),
        }
    }
}

/// 200 when caught up or catching up, 503 when stalled; the body says which and why.
async fn healthz(State(health): State<Arc<Health>>) -> impl IntoResponse {
    let report = health.report();
    let status = if report.state == Verdict::Stalled {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (status, Json(report))
}

//! The command service: HTTP and NATS ingress in front of the command handler.
#![forbid(unsafe_code)]

pub mod caller;
pub mod execute;
pub mod http;
pub mod intake;
pub mod micro;
pub mod nats;
pub mod problem;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use crm_bus::Subjects;
use crm_command_handler::group_commit::GroupCommitConfig;
use crm_command_handler::{CommandHandler, HandlerConfig};
use crm_eventstore::AnyEventStore;
use crm_http::{Probes, ProbesBuilder};

#[derive(Debug, Clone)]
pub struct Config {
    pub store_url: String,
    /// Migrate the event store's schema, or check it (a least-privilege role).
    pub schema: crm_eventstore::migrations::Schema,
    pub nats_url: Option<String>,
    /// TLS, credentials and reply inbox for NATS.
    pub nats: crm_bus::connect::NatsAccess,
    pub subject_prefix: String,
    pub http_addr: SocketAddr,
    pub db_connections: u32,
    pub group_commit: GroupCommitConfig,
    /// Customer states cached (`HandlerConfig::cache_capacity`).
    pub state_cache: usize,
    /// Bearer-token verification for HTTP and NATS; `None` runs without (`CRM_AUTH=off`).
    pub auth: Option<crm_auth::Verifier>,
    /// The longest a shutdown waits for accepted requests to be answered.
    pub shutdown_grace: Duration,
    /// Secret of the duplicate-check index (`HandlerConfig::index_key`).
    pub index_key: String,
    /// Durable ingestion (`intake.rs`): the streams, or `None` for none.
    pub intake: Option<crm_bus::intake::IntakeSpec>,
    /// Commands of the intake decided at once (`intake::DEFAULT_LANES`).
    pub intake_lanes: usize,
}

/// A running command service.
pub struct App {
    pub http_addr: SocketAddr,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    stop_http: tokio::sync::oneshot::Sender<()>,
    ingress: Option<nats::Ingress>,
    intake: Option<intake::Intake>,
    probes: Probes,
    grace: Duration,
}

/// Connect to NATS and start the request/reply ingress, and the durable intake when it
/// is configured.
async fn start_nats(
    config: &Config,
    url: &str,
    subjects: &Subjects,
    handler: &crm_command_handler::CommandHandler<AnyEventStore>,
) -> anyhow::Result<(async_nats::Client, nats::Ingress, Option<intake::Intake>)> {
    let client = crm_bus::connect::connect(url, &config.nats)
        .await
        .with_context(|| format!("connecting to NATS at {}", crm_bus::connect::redacted(url)))?;
    let ingress = nats::Ingress::start(
        client.clone(),
        subjects.clone(),
        handler.clone(),
        config.auth.clone(),
    )
    .await
    .map_err(|e| anyhow::anyhow!("starting the NATS ingress: {e}"))?;
    let intake = match config.intake.clone() {
        Some(spec) => Some(
            intake::Intake::start(
                client.clone(),
                spec,
                config.intake_lanes,
                handler.clone(),
                config.auth.clone(),
            )
            .await
            .map_err(|e| anyhow::anyhow!("starting the durable intake: {e}"))?,
        ),
        None => None,
    };
    Ok((client, ingress, intake))
}

impl App {
    /// Connect, bind (port 0 allowed) and start serving.
    pub async fn build(config: Config) -> anyhow::Result<App> {
        crm_telemetry::install_prometheus();
        let store =
            AnyEventStore::connect_with(&config.store_url, config.db_connections, config.schema)
                .await
                .context("opening the event store (CRM_STORE_URL)")?;
        let handler = CommandHandler::new(
            store.clone(),
            HandlerConfig {
                group_commit: config.group_commit,
                cache_capacity: config.state_cache,
                index_key: config.index_key.clone(),
                ..HandlerConfig::default()
            },
        );
        let subjects = Subjects::new(config.subject_prefix.clone());
        let mut probes = ProbesBuilder::new().check("event_store", move || {
            let store = store.clone();
            async move { store.ping().await.map_err(|e| e.to_string()) }
        });
        anyhow::ensure!(
            config.nats_url.is_some() || config.intake.is_none(),
            "durable ingestion (CRM_INTAKE) needs NATS: leave out --no-nats, or CRM_INTAKE"
        );
        let (ingress, intake) = match &config.nats_url {
            Some(url) => {
                let (client, ingress, intake) =
                    start_nats(&config, url, &subjects, &handler).await?;
                probes = probes.check("nats", move || {
                    std::future::ready(crm_bus::connect::connected(&client))
                });
                (Some(ingress), intake)
            }
            None => (None, None),
        };
        let probes = probes.build();
        let state = http::HttpState {
            handler,
            subjects,
            auth: config.auth.clone(),
        };
        let listener = tokio::net::TcpListener::bind(config.http_addr)
            .await
            .with_context(|| format!("binding {}", config.http_addr))?;
        let http_addr = listener.local_addr()?;
        let (stop_http, stopped) = tokio::sync::oneshot::channel::<()>();
        let router = http::router(state, &probes);
        let server = tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await
        });
        Ok(App {
            http_addr,
            server,
            stop_http,
            ingress,
            intake,
            probes,
            grace: config.shutdown_grace,
        })
    }

    /// Serve until `shutdown` resolves (or the HTTP server fails), then stop taking work,
    /// answer what was taken, and return, within the grace period.
    pub async fn run_until(
        mut self,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> anyhow::Result<()> {
        tokio::select! {
            r = &mut self.server => { r??; return Ok(()) }
            _ = shutdown => {}
        }
        self.shut_down().await;
        Ok(())
    }

    /// Readiness fails at once; HTTP stops accepting and finishes its requests; NATS hands
    /// over to the other instances (`nats.rs`) and answers what it took.
    async fn shut_down(self) {
        let deadline = Instant::now() + self.grace;
        tracing::info!(
            grace_s = self.grace.as_secs_f64(),
            "shutting down: taking no new work"
        );
        self.probes.drain();
        let _ = self.stop_http.send(());
        let nats = async {
            let intake = async {
                if let Some(intake) = self.intake {
                    intake.stop(deadline).await;
                }
            };
            let ingress = async {
                match self.ingress {
                    Some(ingress) => ingress.stop(deadline).await,
                    None => 0,
                }
            };
            tokio::join!(intake, ingress).1
        };
        let http = tokio::time::timeout_at(tokio::time::Instant::from_std(deadline), self.server);
        let (unanswered, http) = tokio::join!(nats, http);
        match (unanswered, http.is_ok()) {
            (0, true) => tracing::info!("every accepted request answered; stopped"),
            _ => tracing::warn!(
                nats_unanswered = unanswered,
                http_finished = http.is_ok(),
                "the grace period ended with requests in progress"
            ),
        }
    }
}

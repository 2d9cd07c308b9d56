//! The command service: HTTP and NATS ingress in front of the command handler.
#![forbid(unsafe_code)]

pub mod caller;
pub mod execute;
pub mod http;
pub mod nats;
pub mod problem;

use std::net::SocketAddr;

use anyhow::Context as _;
use crm_bus::Subjects;
use crm_command_handler::group_commit::GroupCommitConfig;
use crm_command_handler::{CommandHandler, HandlerConfig};
use crm_eventstore::AnyEventStore;

#[derive(Debug, Clone)]
pub struct Config {
    pub store_url: String,
    pub nats_url: Option<String>,
    pub subject_prefix: String,
    pub http_addr: SocketAddr,
    pub db_connections: u32,
    pub group_commit: GroupCommitConfig,
    /// Customer states cached (`HandlerConfig::cache_capacity`).
    pub state_cache: usize,
    /// Bearer-token verification for HTTP; `None` runs without (`CRM_AUTH=off`).
    pub auth: Option<crm_auth::Verifier>,
}

/// A running command service.
pub struct App {
    pub http_addr: SocketAddr,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    _service: Option<async_nats::service::Service>,
    _nats: Option<async_nats::Client>,
}

impl App {
    /// Connect, bind (port 0 allowed) and start serving.
    pub async fn build(config: Config) -> anyhow::Result<App> {
        let store = AnyEventStore::connect(&config.store_url, config.db_connections)
            .await
            .with_context(|| format!("opening the event store at {}", config.store_url))?;
        let handler = CommandHandler::new(
            store,
            HandlerConfig {
                group_commit: config.group_commit,
                cache_capacity: config.state_cache,
                ..HandlerConfig::default()
            },
        );
        let subjects = Subjects::new(config.subject_prefix.clone());

        let (service, nats) = match &config.nats_url {
            Some(url) => {
                let client = crm_bus::connect::connect(url).await.with_context(|| {
                    format!("connecting to NATS at {}", crm_bus::connect::redacted(url))
                })?;
                let service = nats::serve(
                    client.clone(),
                    subjects.clone(),
                    handler.clone(),
                    config.auth.clone(),
                )
                .await
                .map_err(|e| anyhow::anyhow!("starting the NATS service: {e}"))?;
                (Some(service), Some(client))
            }
            None => (None, None),
        };

        let state = http::HttpState {
            handler,
            subjects,
            metrics: crm_telemetry::install_prometheus(),
            auth: config.auth.clone(),
        };
        let listener = tokio::net::TcpListener::bind(config.http_addr)
            .await
            .with_context(|| format!("binding {}", config.http_addr))?;
        let http_addr = listener.local_addr()?;
        let server = tokio::spawn(async move { axum::serve(listener, http::router(state)).await });
        Ok(App {
            http_addr,
            server,
            _service: service,
            _nats: nats,
        })
    }

    /// Serve until `shutdown` resolves or the HTTP server fails.
    pub async fn run_until(
        self,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> anyhow::Result<()> {
        tokio::select! {
            r = self.server => { r??; Ok(()) }
            _ = shutdown => Ok(()),
        }
    }
}

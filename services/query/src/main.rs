//! `crm-query`: see the library documentation.
#![forbid(unsafe_code)]

use std::net::SocketAddr;

use clap::Parser;
use crm_projections::ReadStore;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "crm-query",
    about = "Serve the read models over HTTP (JSON and CSV)"
)]
struct Args {
    /// Read-model database: postgres://… or sqlite://path.
    #[arg(long, env = "CRM_READ_URL")]
    read_url: String,
    #[arg(long, env = "CRM_HTTP_ADDR", default_value = "127.0.0.1:8081")]
    http_addr: SocketAddr,
    #[arg(long, env = "CRM_DB_CONNECTIONS", default_value_t = 8)]
    db_connections: u32,
    /// Event store holding the customers' keys: postgres://… or sqlite://path. Without
    /// it, personal fields (names, contact texts) are answered as `[withheld]`.
    #[arg(long, env = "CRM_STORE_URL")]
    store_url: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    crm_telemetry::init_tracing();
    let a = Args::parse();
    let store = ReadStore::connect(&a.read_url, a.db_connections).await?;
    let vault = match &a.store_url {
        Some(url) => {
            let keys = crm_eventstore::AnyEventStore::connect(url, 2).await?;
            // No key caching: an erasure takes effect on the next request.
            Some(std::sync::Arc::new(crm_privacy::Vault::new(
                keys,
                std::time::Duration::ZERO,
            )))
        }
        None => None,
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    let server = tokio::spawn(crm_query::serve(
        store,
        vault,
        a.http_addr,
        crm_telemetry::shutdown_signal(),
        tx,
    ));
    let addr = rx.await?;
    tracing::info!(%addr, "query service listening");
    crm_telemetry::announce_ready(&serde_json::json!({ "http": addr.to_string() }))?;
    server.await?
}

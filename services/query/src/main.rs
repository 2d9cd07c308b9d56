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
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    crm_telemetry::init_tracing();
    let a = Args::parse();
    let store = ReadStore::connect(&a.read_url, a.db_connections).await?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    let server = tokio::spawn(crm_query::serve(
        store,
        a.http_addr,
        crm_telemetry::shutdown_signal(),
        tx,
    ));
    let addr = rx.await?;
    tracing::info!(%addr, "query service listening");
    crm_telemetry::announce_ready(&serde_json::json!({ "http": addr.to_string() }))?;
    server.await?
}

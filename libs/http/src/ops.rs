//! The operations endpoint of a service without an API of its own (the relay, the
//! scheduler): `GET /metrics`, `/livez` and `/readyz` on one address.

use std::net::SocketAddr;

use axum::routing::get;
use axum::Router;

use crate::probes::Probes;

/// Serve the operations endpoint on `addr` (port 0: any) until the process ends; the
/// bound address.
pub async fn serve_ops(addr: SocketAddr, probes: &Probes) -> std::io::Result<SocketAddr> {
    crm_telemetry::install_prometheus();
    let app = Router::new()
        .route(
            "/metrics",
            get(|| async { crm_telemetry::render_metrics() }),
        )
        .merge(probes.routes());
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "operations endpoint stopped");
        }
    });
    Ok(bound)
}

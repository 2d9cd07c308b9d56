//! `crm-query`: the read models over HTTP, as JSON or CSV, for managers, analysts and
//! auditors. Every route is listed in `openapi.json` (served at `/openapi.json`) and in
//! `docs/api.md`; errors are RFC 9457 problem+json with a stable code.
#![forbid(unsafe_code)]

mod audit;
mod caller;
pub mod csv;
mod params;
mod problem;
mod reveal;
mod routes;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::routing::get;
use axum::Router;
use crm_auth::Verifier;
use crm_eventstore::AnyEventStore;
use crm_privacy::Vault;
use crm_projections::ReadStore;
use metrics_exporter_prometheus::PrometheusHandle;

use audit::{audit_manager, audit_ownership};
pub use caller::Caller;
pub use params::{Params, Q};
pub use problem::Problem;
use routes::*;

/// The OpenAPI document of this service.
pub const OPENAPI_JSON: &str = include_str!("../openapi.json");

/// The customers' keys, when this service may decrypt personal data.
pub type SharedVault = Arc<Vault<AnyEventStore>>;

/// How the service guards and reveals personal data.
#[derive(Clone, Default)]
pub struct Security {
    /// Bearer-token verification; `None` runs without (`CRM_AUTH=off`, development).
    pub auth: Option<Verifier>,
    /// The customers' keys. Without it, personal fields are answered as `[withheld]`.
    pub vault: Option<SharedVault>,
    /// The event store (the vault's): timeline payloads, audit replay over HTTP, and the
    /// record of every read of personal data by a person. Without it the audit routes
    /// answer 503 and timeline payloads are `null`.
    pub events: Option<AnyEventStore>,
}

#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) store: ReadStore,
    pub(crate) metrics: PrometheusHandle,
    pub(crate) security: Security,
}

/// The routes, for the binary and for tests.
pub fn router(store: ReadStore, security: Security) -> Router {
    let metrics = crm_telemetry::install_prometheus();
    Router::new()
        .route("/v1/customers", get(customers))
        .route("/v1/customers/{id}", get(customer))
        .route("/v1/customers/{id}/ownership", get(ownership))
        .route("/v1/customers/{id}/timeline", get(timeline))
        .route("/v1/managers", get(managers))
        .route("/v1/managers/{id}/portfolio", get(portfolio))
        .route("/v1/pool", get(pool))
        .route("/v1/portfolios", get(portfolios))
        .route("/v1/funnel/stages", get(funnel_stages))
        .route("/v1/funnel/transitions", get(funnel_transitions))
        .route("/v1/funnel/conversion", get(funnel_conversion))
        .route("/v1/funnel/time-in-stage", get(funnel_time_in_stage))
        .route("/v1/kpis", get(kpis))
        .route("/v1/projections/checkpoints", get(checkpoints))
        .route("/v1/audit/customers/{id}/ownership", get(audit_ownership))
        .route("/v1/audit/managers/{id}/ownership", get(audit_manager))
        .route(
            "/openapi.json",
            get(|| async { ([(header::CONTENT_TYPE, "application/json")], OPENAPI_JSON) }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/metrics",
            get(|State(s): State<AppState>| async move { s.metrics.render() }),
        )
        .fallback(|| async { Problem::not_found("no such route; see /openapi.json") })
        .with_state(AppState {
            store,
            metrics,
            security,
        })
}

/// Bind and serve until `shutdown`; returns the bound address through `bound`.
pub async fn serve(
    store: ReadStore,
    security: Security,
    addr: SocketAddr,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    bound: tokio::sync::oneshot::Sender<SocketAddr>,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let _ = bound.send(listener.local_addr()?);
    axum::serve(listener, router(store, security))
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}

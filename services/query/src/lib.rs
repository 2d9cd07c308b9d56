//! `crm-query`: the read models over HTTP, as JSON or CSV, for managers, analysts and
//! auditors. Every route is in the OpenAPI document generated from its handler
//! (`openapi.rs`: served at `/openapi.json`, committed as
//! `docs/contract/query.openapi.json`) and in `docs/api.md`; errors are RFC 9457
//! problem+json with a stable code.
#![forbid(unsafe_code)]

mod audit;
mod caller;
mod complaints;
pub mod csv;
pub mod openapi;
mod params;
mod problem;
mod reads;
mod reveal;
mod routes;
pub mod web;

use std::net::SocketAddr;
use std::sync::Arc;

use std::time::Duration;

use axum::http::{header, StatusCode};
use axum::routing::get;
use axum::Router;
use crm_auth::Verifier;
use crm_eventstore::AnyEventStore;
use crm_http::{Probes, ProbesBuilder};
use crm_privacy::Vault;
use crm_projections::calendar::Calendar;
use crm_projections::ReadStore;

pub use caller::Caller;
pub use params::Q;
pub use problem::Problem;

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
    /// The workbench's session key and sign-in (default: a key of this process, secure
    /// cookies, no local sign-in).
    pub workbench: Option<web::Workbench>,
}

#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) store: ReadStore,
    pub(crate) security: Security,
    /// Whose days, weeks and months periods follow unless a request names a zone.
    pub(crate) calendar: Calendar,
    /// The workbench's sessions and sign-in.
    pub(crate) web: web::Workbench,
    /// Answers too slow for a page to wait for (`web::slow`).
    pub(crate) slow: web::slow::Caches,
}

impl AppState {
    fn new(store: ReadStore, security: Security, calendar: Calendar) -> Self {
        let workbench = security.workbench.clone().unwrap_or_default();
        Self {
            store,
            security,
            calendar,
            slow: web::slow::Caches::new(workbench.wait),
            web: workbench,
        }
    }
}

/// The routes, for the binary and for tests.
pub fn router(store: ReadStore, security: Security, calendar: Calendar) -> Router {
    let probes = probes(&store, &security);
    router_with(AppState::new(store, security, calendar), &probes)
}

/// What readiness checks: the read models answer, and the event store if this service
/// uses one (timeline payloads, personal data, audit replay).
pub fn probes(store: &ReadStore, security: &Security) -> Probes {
    let read = store.clone();
    let mut probes = ProbesBuilder::new().check("read_models", move || {
        let read = read.clone();
        async move { read.ping().await.map_err(|e| e.to_string()) }
    });
    if let Some(events) = security.events.clone() {
        probes = probes.check("event_store", move || {
            let events = events.clone();
            async move { events.ping().await.map_err(|e| e.to_string()) }
        });
    }
    probes.build()
}

fn router_with(state: AppState, probes: &Probes) -> Router {
    crm_telemetry::install_prometheus();
    let (api, doc) = openapi::router().split_for_parts();
    let doc = openapi::json(&doc);
    let routes = api
        .route(
            "/openapi.json",
            get(|| async { ([(header::CONTENT_TYPE, "application/json")], doc) }),
        )
        .route(
            "/metrics",
            get(|| async { crm_telemetry::render_metrics() }),
        )
        .merge(probes.routes_with_healthz())
        .merge(web::routes())
        .fallback(|| async { Problem::not_found("no such route; see /openapi.json") })
        .method_not_allowed_fallback(|| async {
            Problem::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "query.method_not_allowed",
                "this route answers GET only; see /openapi.json",
            )
        })
        .with_state(state);
    let routes = crm_http::guard::refuse_bad_text(routes, "query.bad_parameter");
    crm_http::requests::instrument(routes, "query")
}

/// Bind and serve until `shutdown`, then stop accepting (readiness fails at once) and
/// finish the requests in progress within `grace`; the bound address through `bound`.
pub async fn serve(
    store: ReadStore,
    security: Security,
    calendar: Calendar,
    addr: SocketAddr,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    grace: Duration,
    bound: tokio::sync::oneshot::Sender<SocketAddr>,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let _ = bound.send(listener.local_addr()?);
    let probes = probes(&store, &security);
    let app = router_with(AppState::new(store, security, calendar), &probes);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let mut server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
            })
            .await
    });
    tokio::select! {
        r = &mut server => { r??; return Ok(()) }
        _ = shutdown => {}
    }
    tracing::info!(
        grace_s = grace.as_secs_f64(),
        "shutting down: taking no new requests"
    );
    probes.drain();
    let _ = stop.send(());
    match tokio::time::timeout(grace, server).await {
        Ok(r) => r??,
        Err(_) => tracing::warn!("the grace period ended with requests in progress"),
    }
    Ok(())
}

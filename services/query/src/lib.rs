//! `crm-query`: the read models over HTTP, as JSON or CSV, for managers, analysts and
//! auditors. Every route is listed in `openapi.json` (served at `/openapi.json`) and in
//! `docs/api.md`; errors are RFC 9457 problem+json with a stable code.
#![forbid(unsafe_code)]

pub mod csv;

use std::net::SocketAddr;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use crm_projections::facts::Granularity;
use crm_projections::funnel::{self, Slice};
use crm_projections::kpi::{self, Level};
use crm_projections::{PortfolioBy, ReadError, ReadStore};
use metrics_exporter_prometheus::PrometheusHandle;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

use crm_domain::customer::personal;
use crm_eventstore::AnyEventStore;
use crm_privacy::Vault;

/// The OpenAPI document of this service.
pub const OPENAPI_JSON: &str = include_str!("../openapi.json");

/// The customers' keys, when this service may decrypt personal data.
pub type SharedVault = Arc<Vault<AnyEventStore>>;

#[derive(Clone)]
struct AppState {
    store: ReadStore,
    metrics: PrometheusHandle,
    /// Without it, personal fields are answered as `[withheld]`.
    vault: Option<SharedVault>,
}

impl AppState {
    /// Personal fields of customer rows, decrypted for the caller.
    async fn reveal_customers(
        &self,
        rows: &mut [crm_projections::queries::CustomerRow],
    ) -> Result<(), Problem> {
        for row in rows {
            row.display_name = self
                .reveal(&row.customer_id, "display_name", &row.display_name)
                .await?;
        }
        Ok(())
    }

    async fn reveal(&self, customer: &str, field: &str, text: &str) -> Result<String, Problem> {
        if !crm_privacy::is_sealed(text) {
            return Ok(text.to_string());
        }
        let Some(vault) = &self.vault else {
            return Ok(personal::WITHHELD.to_string());
        };
        let (text, _) = vault
            .reveal(&format!("customer-{customer}"), field, text)
            .await
            .map_err(Problem::privacy)?;
        Ok(text)
    }

    /// The personal fields inside timeline payloads, decrypted for the caller.
    async fn reveal_timeline(
        &self,
        rows: &mut [crm_projections::queries::TimelineRow],
    ) -> Result<(), Problem> {
        for row in rows {
            if !row.payload.contains(crm_privacy::SEALED_PREFIX) {
                continue;
            }
            let mut payload: serde_json::Value = serde_json::from_str(&row.payload)
                .map_err(|e| Problem::privacy(format!("timeline payload: {e}")))?;
            match &self.vault {
                Some(vault) => {
                    vault
                        .open(
                            &format!("customer-{}", row.customer_id),
                            &row.event_type,
                            &mut payload,
                        )
                        .await
                        .map_err(Problem::privacy)?;
                }
                None => {
                    for f in personal::fields(&row.event_type) {
                        if let Some(v) = payload.get_mut(*f) {
                            if v.as_str().is_some_and(crm_privacy::is_sealed) {
                                *v = serde_json::Value::String(personal::WITHHELD.into());
                            }
                        }
                    }
                }
            }
            row.payload = payload.to_string();
        }
        Ok(())
    }
}

/// A refused query.
#[derive(Debug)]
pub struct Problem {
    status: StatusCode,
    code: &'static str,
    detail: String,
}

impl Problem {
    fn bad(detail: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            code: "query.bad_parameter",
            detail: detail.into(),
        }
    }

    fn privacy(e: impl std::fmt::Display) -> Self {
        tracing::error!(error = %e, "personal data could not be decrypted");
        Self {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "query.unavailable",
            detail: "personal data cannot be read right now; retry".into(),
        }
    }

    fn not_found(detail: impl Into<String>) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            code: "query.not_found",
            detail: detail.into(),
        }
    }
}

impl From<ReadError> for Problem {
    fn from(e: ReadError) -> Self {
        tracing::error!(error = %e, "read-model query failed");
        Self {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "query.unavailable",
            detail: "the read models cannot be read right now; retry".into(),
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "type": format!("urn:crm:problem:{}", self.code),
            "title": self.status.canonical_reason().unwrap_or("error"),
            "status": self.status.as_u16(),
            "detail": self.detail,
            "code": self.code,
        });
        (
            self.status,
            [(header::CONTENT_TYPE, "application/problem+json")],
            body.to_string(),
        )
            .into_response()
    }
}

type Answer = Result<Response, Problem>;

/// Query parameters; a malformed or unknown one is a problem+json 400 like any other.
pub struct Q(Params);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Q {
    type Rejection = Problem;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        Query::<Params>::from_request_parts(parts, state)
            .await
            .map(|Query(p)| Q(p))
            .map_err(|e| Problem::bad(e.body_text()))
    }
}

/// Common query parameters.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// `json` (default) or `csv` (also chosen by `Accept: text/csv`).
    format: Option<String>,
    /// Keyset pagination: the last id of the previous page.
    after: Option<String>,
    limit: Option<i64>,
    /// Page of a timeline: versions below this one.
    before_version: Option<i64>,
    /// An instant (RFC 3339): answer as of then.
    as_of: Option<String>,
    from: Option<String>,
    to: Option<String>,
    granularity: Option<String>,
    slice: Option<String>,
    level: Option<String>,
    by: Option<String>,
    // Filters of the customer list.
    region: Option<String>,
    stage: Option<String>,
    owner_id: Option<String>,
    team: Option<String>,
    value_tier: Option<String>,
    customer_type: Option<String>,
    first_touch_channel: Option<String>,
}

impl Params {
    fn csv(&self, headers: &HeaderMap) -> Result<bool, Problem> {
        match self.format.as_deref() {
            Some("csv") => Ok(true),
            Some("json") => Ok(false),
            Some(other) => Err(Problem::bad(format!("format {other:?} is not json or csv"))),
            None => Ok(headers
                .get(header::ACCEPT)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|a| a.contains("text/csv"))),
        }
    }

    fn limit(&self) -> Result<i64, Problem> {
        match self.limit {
            None => Ok(100),
            Some(n) if (1..=10_000).contains(&n) => Ok(n),
            Some(n) => Err(Problem::bad(format!("limit {n} is not within 1..=10000"))),
        }
    }

    fn instant(name: &str, v: &Option<String>) -> Result<Option<i64>, Problem> {
        v.as_deref()
            .map(|s| {
                DateTime::parse_from_rfc3339(s)
                    .map(|t| t.with_timezone(&Utc).timestamp_micros())
                    .map_err(|e| {
                        Problem::bad(format!("{name} {s:?} is not an RFC 3339 instant: {e}"))
                    })
            })
            .transpose()
    }

    fn parsed<T: std::str::FromStr<Err = String>>(
        v: &Option<String>,
        default: T,
    ) -> Result<T, Problem> {
        v.as_deref()
            .map_or(Ok(default), |s| s.parse().map_err(Problem::bad))
    }

    fn range(&self) -> Result<(i64, i64), Problem> {
        let now = Utc::now().timestamp_micros();
        let to = Self::instant("to", &self.to)?.unwrap_or(now);
        let from = Self::instant("from", &self.from)?.unwrap_or(to - 30 * 86_400_000_000);
        if from >= to {
            return Err(Problem::bad("from must be before to"));
        }
        if to - from > 3 * 366 * 86_400_000_000 {
            return Err(Problem::bad("a range may span at most three years"));
        }
        Ok((from, to))
    }
}

/// A page of rows, with the cursor of the next page when there may be one.
#[derive(Serialize)]
struct Page<T> {
    items: Vec<T>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_after: Option<String>,
}

fn rows<T: Serialize>(items: Vec<T>, csv: bool) -> Answer {
    if csv {
        let body = crate::csv::render(&items).map_err(|e| Problem::bad(e.to_string()))?;
        return Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], body).into_response());
    }
    Ok(Json(Page {
        items,
        next_after: None,
    })
    .into_response())
}

fn paged<T: Serialize>(items: Vec<T>, limit: i64, csv: bool, key: impl Fn(&T) -> String) -> Answer {
    if csv {
        return rows(items, true);
    }
    let next_after = (items.len() as i64 == limit)
        .then(|| items.last().map(&key))
        .flatten();
    Ok(Json(Page { items, next_after }).into_response())
}

async fn customers(State(s): State<AppState>, headers: HeaderMap, Q(p): Q) -> Answer {
    let limit = p.limit()?;
    let filter = crm_projections::CustomerFilter {
        region: p.region.clone(),
        stage: p.stage.clone(),
        owner_id: p.owner_id.clone(),
        team: p.team.clone(),
        value_tier: p.value_tier.clone(),
        customer_type: p.customer_type.clone(),
        first_touch_channel: p.first_touch_channel.clone(),
    };
    let mut items = s
        .store
        .customers_where(&filter, p.after.as_deref().unwrap_or(""), limit)
        .await?;
    s.reveal_customers(&mut items).await?;
    paged(items, limit, p.csv(&headers)?, |c| c.customer_id.clone())
}

async fn customer(
    State(s): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Q(p): Q,
) -> Answer {
    let csv = p.csv(&headers)?;
    let Some(c) = s.store.customer(&id).await? else {
        return Err(Problem::not_found(format!("no customer {id}")));
    };
    let mut found = vec![c];
    s.reveal_customers(&mut found).await?;
    if csv {
        rows(found, true)
    } else {
        Ok(Json(found.remove(0)).into_response())
    }
}

async fn ownership(
    State(s): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Q(p): Q,
) -> Answer {
    let csv = p.csv(&headers)?;
    if s.store.customer(&id).await?.is_none() {
        return Err(Problem::not_found(format!("no customer {id}")));
    }
    match Params::instant("as_of", &p.as_of)? {
        // Exactly one row (the period holding the instant) or none: in the pool then.
        Some(at) => rows(s.store.owner_at(&id, at).await?.into_iter().collect(), csv),
        None => rows(s.store.ownership_timeline(&id).await?, csv),
    }
}

async fn timeline(
    State(s): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Q(p): Q,
) -> Answer {
    let limit = p.limit()?;
    let mut items = s
        .store
        .timeline(&id, p.before_version.unwrap_or(0), limit)
        .await?;
    s.reveal_timeline(&mut items).await?;
    if items.is_empty() && s.store.customer(&id).await?.is_none() {
        return Err(Problem::not_found(format!("no customer {id}")));
    }
    paged(items, limit, p.csv(&headers)?, |t| t.version.to_string())
}

async fn portfolio(
    State(s): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Q(p): Q,
) -> Answer {
    let mut items = s.store.portfolio(&id).await?;
    s.reveal_customers(&mut items).await?;
    rows(items, p.csv(&headers)?)
}

async fn pool(State(s): State<AppState>, headers: HeaderMap, Q(p): Q) -> Answer {
    let limit = p.limit()?;
    let mut items = s
        .store
        .pool(p.after.as_deref().unwrap_or(""), limit)
        .await?;
    s.reveal_customers(&mut items).await?;
    paged(items, limit, p.csv(&headers)?, |c| c.customer_id.clone())
}

async fn portfolios(State(s): State<AppState>, headers: HeaderMap, Q(p): Q) -> Answer {
    let by = match p.by.as_deref().unwrap_or("manager") {
        "manager" => PortfolioBy::Manager,
        "team" => PortfolioBy::Team,
        "region" => PortfolioBy::Region,
        other => {
            return Err(Problem::bad(format!(
                "by {other:?} is not manager, team or region"
            )))
        }
    };
    rows(s.store.portfolio_counts(by).await?, p.csv(&headers)?)
}

async fn managers(State(s): State<AppState>, headers: HeaderMap, Q(p): Q) -> Answer {
    rows(s.store.managers().await?, p.csv(&headers)?)
}

async fn funnel_stages(State(s): State<AppState>, headers: HeaderMap, Q(p): Q) -> Answer {
    let csv = p.csv(&headers)?;
    let slice = Params::parsed(&p.slice, Slice::All)?;
    let at = Params::instant("as_of", &p.as_of)?;
    let facts = s.store.facts().await?;
    rows(funnel::stage_counts(&facts, at, slice), csv)
}

async fn funnel_transitions(State(s): State<AppState>, headers: HeaderMap, Q(p): Q) -> Answer {
    let csv = p.csv(&headers)?;
    let slice = Params::parsed(&p.slice, Slice::All)?;
    let g = Params::parsed(&p.granularity, Granularity::Day)?;
    let (from, to) = p.range()?;
    let facts = s.store.facts().await?;
    rows(funnel::transitions(&facts, from, to, g, slice), csv)
}

async fn funnel_conversion(State(s): State<AppState>, headers: HeaderMap, Q(p): Q) -> Answer {
    let csv = p.csv(&headers)?;
    let slice = Params::parsed(&p.slice, Slice::All)?;
    let facts = s.store.facts().await?;
    rows(funnel::conversion(&facts, slice), csv)
}

async fn funnel_time_in_stage(State(s): State<AppState>, headers: HeaderMap, Q(p): Q) -> Answer {
    let csv = p.csv(&headers)?;
    let slice = Params::parsed(&p.slice, Slice::All)?;
    let facts = s.store.facts().await?;
    rows(funnel::time_in_stage(&facts, slice), csv)
}

async fn kpis(State(s): State<AppState>, headers: HeaderMap, Q(p): Q) -> Answer {
    let csv = p.csv(&headers)?;
    let level = Params::parsed(&p.level, Level::Manager)?;
    let g = Params::parsed(&p.granularity, Granularity::Day)?;
    let (from, to) = p.range()?;
    let facts = s.store.facts().await?;
    rows(
        kpi::kpis(&facts, level, g, from, to, Utc::now().timestamp_micros()),
        csv,
    )
}

async fn checkpoints(State(s): State<AppState>, headers: HeaderMap, Q(p): Q) -> Answer {
    rows(s.store.checkpoints().await?, p.csv(&headers)?)
}

/// The router, for the binary and for tests.
/// The routes; with a `vault`, personal fields are decrypted for the caller.
pub fn router(store: ReadStore, vault: Option<SharedVault>) -> Router {
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
            vault,
        })
}

/// Bind and serve until `shutdown`; returns the bound address through `bound`.
pub async fn serve(
    store: ReadStore,
    vault: Option<SharedVault>,
    addr: SocketAddr,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    bound: tokio::sync::oneshot::Sender<SocketAddr>,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let _ = bound.send(listener.local_addr()?);
    axum::serve(listener, router(store, vault))
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}

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
use crm_projections::funnel::Slice;
use crm_projections::kpi::Level;
use crm_projections::{PortfolioBy, ReadError, ReadStore};
use metrics_exporter_prometheus::PrometheusHandle;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

use crm_auth::{Principal, Role, Verifier};
use crm_domain::customer::personal;
use crm_eventstore::{
    AnyEventStore, AppendRequest, CommandMeta, EventStore, ExpectedVersion, NewEvent,
};
use crm_privacy::Vault;
use crm_projections::queries::{CustomerRow, TimelineRow};

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
struct AppState {
    store: ReadStore,
    metrics: PrometheusHandle,
    security: Security,
}

/// What analysts see instead of a personal field.
const MASKED: &str = "***";

/// The caller, verified; `None` inside when authentication is off.
pub struct Caller(Option<Principal>);

impl axum::extract::FromRequestParts<AppState> for Caller {
    type Rejection = Problem;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Some(verifier) = &state.security.auth else {
            return Ok(Caller(None));
        };
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        verifier
            .verify_header(header, crm_auth::now_unix())
            .map(|p| Caller(Some(p)))
            .map_err(|e| Problem {
                status: StatusCode::UNAUTHORIZED,
                code: "auth.unauthenticated",
                detail: e.to_string(),
            })
    }
}

impl Caller {
    /// Refuse unless the caller has one of `roles` (anyone, with authentication off).
    fn allow(&self, roles: &[Role]) -> Result<(), Problem> {
        match &self.0 {
            Some(p) if !roles.contains(&p.role) => Err(Problem::forbidden(format!(
                "the {} role may not read this",
                p.role.as_str()
            ))),
            _ => Ok(()),
        }
    }

    fn role(&self) -> Option<Role> {
        self.0.as_ref().map(|p| p.role)
    }

    /// Analysts see aggregates and masked identities.
    fn masked(&self) -> bool {
        self.role() == Some(Role::Analyst)
    }

    /// A manager sees only their own customers (a team lead: the team's).
    fn may_see(&self, row: &CustomerRow) -> Result<(), Problem> {
        match &self.0 {
            Some(p) if !p.sees_customer(row.owner_id.as_deref(), row.owner_team.as_deref()) => {
                Err(Problem::forbidden(format!(
                    "customer {} is not in your portfolio",
                    row.customer_id
                )))
            }
            _ => Ok(()),
        }
    }
}

/// Routes with customer-level data: who may call them (managers within their scope).
const CUSTOMER_READERS: &[Role] = &[Role::Manager, Role::Analyst, Role::Auditor, Role::Admin];
/// Aggregates carry no personal data.
const AGGREGATE_READERS: &[Role] = &[Role::Manager, Role::Analyst, Role::Auditor, Role::Admin];
const AUDITORS: &[Role] = &[Role::Auditor, Role::Admin];

impl AppState {
    /// Personal fields of customer rows for the caller: masked for analysts, decrypted
    /// for the others, and the read recorded when the caller is a person.
    async fn reveal_customers(
        &self,
        caller: &Caller,
        route: &str,
        rows: &mut [CustomerRow],
    ) -> Result<(), Problem> {
        let mut read = Vec::new();
        for row in rows.iter_mut() {
            if !crm_privacy::is_sealed(&row.display_name) {
                continue;
            }
            if caller.masked() {
                row.display_name = MASKED.into();
                continue;
            }
            let revealed = self
                .reveal(&row.customer_id, "display_name", &row.display_name)
                .await?;
            if revealed != personal::WITHHELD && revealed != personal::ERASED {
                read.push(row.customer_id.clone());
            }
            row.display_name = revealed;
        }
        self.record_reads(caller, route, &read).await
    }

    async fn reveal(&self, customer: &str, field: &str, text: &str) -> Result<String, Problem> {
        if !crm_privacy::is_sealed(text) {
            return Ok(text.to_string());
        }
        let Some(vault) = &self.security.vault else {
            return Ok(personal::WITHHELD.to_string());
        };
        let (text, _) = vault
            .reveal(&format!("customer-{customer}"), field, text)
            .await
            .map_err(Problem::privacy)?;
        Ok(text)
    }

    /// A page of a customer's timeline as answered: each row with its event's payload,
    /// read from the event store by stream and version (the read model keeps no copy),
    /// its personal fields masked for analysts and decrypted for the others (the read
    /// recorded). Without an event store the payloads are `null`.
    async fn timeline_items(
        &self,
        caller: &Caller,
        rows: Vec<TimelineRow>,
    ) -> Result<Vec<TimelineItem>, Problem> {
        let mut payloads = std::collections::HashMap::new();
        // Rows come newest first, all of one customer.
        if let (Some(events), Some(newest), Some(oldest)) =
            (&self.security.events, rows.first(), rows.last())
        {
            let stream = format!("customer-{}", newest.customer_id);
            let after = (oldest.version - 1).max(0) as u64;
            let page = events
                .read_stream_range(&stream, after, newest.version.max(0) as u64)
                .await
                .map_err(Problem::store)?;
            payloads.extend(page.into_iter().map(|e| (e.stream_version as i64, e)));
        }
        let mut read = Vec::new();
        let mut items = Vec::with_capacity(rows.len());
        for row in rows {
            let event = match payloads.remove(&row.version) {
                Some(e) if e.event_id.to_string() == row.event_id => e,
                Some(e) => {
                    // The read models and the store disagree (restored from different
                    // backups?): no payload rather than another event's.
                    tracing::error!(
                        customer = %row.customer_id,
                        version = row.version,
                        read_model_event = %row.event_id,
                        store_event = %e.event_id,
                        "timeline row and event store disagree; answered without payload"
                    );
                    items.push(TimelineItem { row, payload: None });
                    continue;
                }
                None => {
                    items.push(TimelineItem { row, payload: None });
                    continue;
                }
            };
            let mut payload = event.payload;
            let vault = self.security.vault.as_ref().filter(|_| !caller.masked());
            match vault {
                Some(vault) => {
                    let opened = vault
                        .open(
                            &format!("customer-{}", row.customer_id),
                            &row.event_type,
                            &mut payload,
                        )
                        .await
                        .map_err(Problem::privacy)?;
                    if opened == crm_privacy::Opened::Revealed {
                        read.push(row.customer_id.clone());
                    }
                }
                None => {
                    let shown = if caller.masked() {
                        MASKED
                    } else {
                        personal::WITHHELD
                    };
                    for f in personal::fields(&row.event_type) {
                        if let Some(v) = payload.get_mut(*f) {
                            if v.as_str().is_some_and(crm_privacy::is_sealed) {
                                *v = serde_json::Value::String(shown.into());
                            }
                        }
                    }
                }
            }
            // The event's canonical text: its fields in declared order.
            let text = match crm_domain::CustomerEvent::decode(
                &row.event_type,
                event.schema_version,
                &payload,
            ) {
                Ok(e) => e.payload_text(),
                Err(_) => payload.to_string(),
            };
            items.push(TimelineItem {
                row,
                payload: Some(text),
            });
        }
        self.record_reads(caller, "timeline", &read).await?;
        Ok(items)
    }

    /// Append one `PersonalDataRead` record per customer to its `access-` stream before
    /// the answer leaves: no record, no personal data.
    async fn record_reads(
        &self,
        caller: &Caller,
        route: &str,
        customers: &[String],
    ) -> Result<(), Problem> {
        let (Some(p), Some(events)) = (&caller.0, &self.security.events) else {
            return Ok(());
        };
        if customers.is_empty() || !p.is_person() {
            return Ok(());
        }
        let command_id = uuid::Uuid::now_v7();
        let mut request = AppendRequest::new(CommandMeta {
            command_id,
            command_type: "record_personal_data_read".into(),
            correlation_id: command_id,
            causation_id: None,
            actor: p.actor(),
            issued_at: Utc::now(),
            fingerprint: command_id.to_string(),
        });
        let mut seen = std::collections::BTreeSet::new();
        for c in customers {
            if !seen.insert(c) {
                continue;
            }
            request = request.write(
                format!("{}{c}", personal::ACCESS_LOG_PREFIX),
                ExpectedVersion::Any,
                vec![NewEvent {
                    event_id: uuid::Uuid::now_v7(),
                    event_type: personal::PERSONAL_DATA_READ.into(),
                    schema_version: 1,
                    payload: serde_json::json!({
                        "customer_id": c,
                        "reader": p.actor(),
                        "role": p.role.as_str(),
                        "route": route,
                    }),
                }],
            );
        }
        events.append(request).await.map(|_| ()).map_err(|e| {
            Problem::privacy(format!(
                "the read of personal data could not be recorded: {e}"
            ))
        })
    }
}

/// One line of a customer's timeline as answered.
#[derive(Debug, Serialize)]
struct TimelineItem {
    #[serde(flatten)]
    row: TimelineRow,
    /// The event's payload as JSON text (fields in declared order); `null` when the
    /// service runs without the event store.
    payload: Option<String>,
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

    fn forbidden(detail: impl Into<String>) -> Self {
        Self {
            status: StatusCode::FORBIDDEN,
            code: "auth.forbidden",
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

    /// The event store could not be read (timeline payloads).
    fn store(e: impl std::fmt::Display) -> Self {
        tracing::error!(error = %e, "event store read failed");
        Self {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "query.unavailable",
            detail: "the event store cannot be read right now; retry".into(),
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

async fn customers(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Q(p): Q,
) -> Answer {
    caller.allow(CUSTOMER_READERS)?;
    let limit = p.limit()?;
    let mut filter = crm_projections::CustomerFilter {
        region: p.region.clone(),
        stage: p.stage.clone(),
        owner_id: p.owner_id.clone(),
        team: p.team.clone(),
        value_tier: p.value_tier.clone(),
        customer_type: p.customer_type.clone(),
        first_touch_channel: p.first_touch_channel.clone(),
    };
    // A manager's list is their portfolio (a team lead's: the team's), whatever asked.
    if let Some(Principal {
        role: Role::Manager,
        manager_id,
        team,
        ..
    }) = &caller.0
    {
        match team {
            Some(team) => filter.team = Some(team.clone()),
            None => filter.owner_id = manager_id.clone(),
        }
    }
    let mut items = s
        .store
        .customers_where(&filter, p.after.as_deref().unwrap_or(""), limit)
        .await?;
    s.reveal_customers(&caller, "customers", &mut items).await?;
    paged(items, limit, p.csv(&headers)?, |c| c.customer_id.clone())
}

/// The customer, if the caller may see it.
async fn visible_customer(s: &AppState, caller: &Caller, id: &str) -> Result<CustomerRow, Problem> {
    caller.allow(CUSTOMER_READERS)?;
    let Some(c) = s.store.customer(id).await? else {
        return Err(Problem::not_found(format!("no customer {id}")));
    };
    caller.may_see(&c)?;
    Ok(c)
}

async fn customer(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    Q(p): Q,
) -> Answer {
    let csv = p.csv(&headers)?;
    let mut found = vec![visible_customer(&s, &caller, &id).await?];
    s.reveal_customers(&caller, "customer", &mut found).await?;
    if csv {
        rows(found, true)
    } else {
        Ok(Json(found.remove(0)).into_response())
    }
}

async fn ownership(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    Q(p): Q,
) -> Answer {
    let csv = p.csv(&headers)?;
    visible_customer(&s, &caller, &id).await?;
    match Params::instant("as_of", &p.as_of)? {
        // Exactly one row (the period holding the instant) or none: in the pool then.
        Some(at) => rows(s.store.owner_at(&id, at).await?.into_iter().collect(), csv),
        None => rows(s.store.ownership_timeline(&id).await?, csv),
    }
}

async fn timeline(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    Q(p): Q,
) -> Answer {
    let limit = p.limit()?;
    visible_customer(&s, &caller, &id).await?;
    let items = s
        .store
        .timeline(&id, p.before_version.unwrap_or(0), limit)
        .await?;
    let items = s.timeline_items(&caller, items).await?;
    paged(items, limit, p.csv(&headers)?, |t| {
        t.row.version.to_string()
    })
}

async fn portfolio(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    Q(p): Q,
) -> Answer {
    caller.allow(CUSTOMER_READERS)?;
    let mut items = s.store.portfolio(&id).await?;
    if let Some(Principal {
        role: Role::Manager,
        manager_id,
        team,
        ..
    }) = &caller.0
    {
        if manager_id.as_deref() != Some(id.as_str()) {
            // Another manager's portfolio: a team lead sees the part in the team.
            let Some(team) = team else {
                return Err(Problem::forbidden("another manager's portfolio"));
            };
            items.retain(|c| c.owner_team.as_deref() == Some(team.as_str()));
        }
    }
    s.reveal_customers(&caller, "portfolio", &mut items).await?;
    rows(items, p.csv(&headers)?)
}

async fn pool(State(s): State<AppState>, caller: Caller, headers: HeaderMap, Q(p): Q) -> Answer {
    // Managers see the pool: it is where they claim customers from.
    caller.allow(CUSTOMER_READERS)?;
    let limit = p.limit()?;
    let mut items = s
        .store
        .pool(p.after.as_deref().unwrap_or(""), limit)
        .await?;
    s.reveal_customers(&caller, "pool", &mut items).await?;
    paged(items, limit, p.csv(&headers)?, |c| c.customer_id.clone())
}

async fn portfolios(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Q(p): Q,
) -> Answer {
    caller.allow(AGGREGATE_READERS)?;
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

async fn managers(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Q(p): Q,
) -> Answer {
    caller.allow(AGGREGATE_READERS)?;
    rows(s.store.managers().await?, p.csv(&headers)?)
}

async fn funnel_stages(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Q(p): Q,
) -> Answer {
    caller.allow(AGGREGATE_READERS)?;
    let csv = p.csv(&headers)?;
    let slice = Params::parsed(&p.slice, Slice::All)?;
    let at = Params::instant("as_of", &p.as_of)?;
    rows(s.store.stage_counts(at, slice).await?, csv)
}

async fn funnel_transitions(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Q(p): Q,
) -> Answer {
    caller.allow(AGGREGATE_READERS)?;
    let csv = p.csv(&headers)?;
    let slice = Params::parsed(&p.slice, Slice::All)?;
    let g = Params::parsed(&p.granularity, Granularity::Day)?;
    let (from, to) = p.range()?;
    rows(s.store.stage_transitions(from, to, g, slice).await?, csv)
}

async fn funnel_conversion(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Q(p): Q,
) -> Answer {
    caller.allow(AGGREGATE_READERS)?;
    let csv = p.csv(&headers)?;
    let slice = Params::parsed(&p.slice, Slice::All)?;
    rows(s.store.conversion(slice).await?, csv)
}

async fn funnel_time_in_stage(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Q(p): Q,
) -> Answer {
    caller.allow(AGGREGATE_READERS)?;
    let csv = p.csv(&headers)?;
    let slice = Params::parsed(&p.slice, Slice::All)?;
    rows(s.store.time_in_stage(slice).await?, csv)
}

async fn kpis(State(s): State<AppState>, caller: Caller, headers: HeaderMap, Q(p): Q) -> Answer {
    caller.allow(AGGREGATE_READERS)?;
    let csv = p.csv(&headers)?;
    let level = Params::parsed(&p.level, Level::Manager)?;
    let g = Params::parsed(&p.granularity, Granularity::Day)?;
    let (from, to) = p.range()?;
    let now = Utc::now().timestamp_micros();
    rows(s.store.kpis(level, g, from, to, now).await?, csv)
}

async fn checkpoints(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Q(p): Q,
) -> Answer {
    caller.allow(AUDITORS)?;
    rows(s.store.checkpoints().await?, p.csv(&headers)?)
}

fn audit_store(s: &AppState) -> Result<&AnyEventStore, Problem> {
    s.security.events.as_ref().ok_or_else(|| Problem {
        status: StatusCode::SERVICE_UNAVAILABLE,
        code: "query.unavailable",
        detail: "audit replay needs the event store (CRM_STORE_URL)".into(),
    })
}

fn audit_failed(e: crm_audit::AuditError) -> Problem {
    match e {
        crm_audit::AuditError::UnknownCustomer(c) => Problem::not_found(format!("no customer {c}")),
        other => Problem::privacy(other),
    }
}

/// Ownership replayed from the event store (not the read models), for auditors: every
/// change with who, why, policy and command; with `as_of`, the owner then.
async fn audit_ownership(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Q(p): Q,
) -> Answer {
    caller.allow(AUDITORS)?;
    let store = audit_store(&s)?;
    let customer: crm_domain::CustomerId = id
        .parse()
        .map_err(|_| Problem::bad(format!("{id:?} is not a customer id")))?;
    let entries = crm_audit::customer_history(store, customer)
        .await
        .map_err(audit_failed)?;
    match Params::instant("as_of", &p.as_of)? {
        Some(at) => {
            let at = DateTime::<Utc>::from_timestamp_micros(at)
                .ok_or_else(|| Problem::bad("as_of is out of range"))?;
            Ok(Json(crm_audit::owner_as_of(&entries, at)).into_response())
        }
        None => Ok(Json(entries).into_response()),
    }
}

/// A manager's customers over `[from, to)`, replayed from the event store.
async fn audit_manager(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Q(p): Q,
) -> Answer {
    caller.allow(AUDITORS)?;
    let store = audit_store(&s)?;
    let manager: crm_domain::ManagerId = id
        .parse()
        .map_err(|_| Problem::bad(format!("{id:?} is not a manager id")))?;
    let instant = |name: &str, v: &Option<String>| -> Result<DateTime<Utc>, Problem> {
        Params::instant(name, v)?
            .and_then(DateTime::<Utc>::from_timestamp_micros)
            .ok_or_else(|| Problem::bad(format!("{name} (RFC 3339) is required")))
    };
    let (from, to) = (instant("from", &p.from)?, instant("to", &p.to)?);
    if from >= to {
        return Err(Problem::bad("from must be before to"));
    }
    let history = crm_audit::manager_history(store, manager, from, to, &mut |_| {})
        .await
        .map_err(audit_failed)?;
    Ok(Json(history).into_response())
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

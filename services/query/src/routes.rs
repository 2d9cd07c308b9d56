//! The read-model routes: customers, portfolios, the pool, the funnel, the KPIs. Each
//! handler's `#[utoipa::path]` is its entry in the OpenAPI document (`crate::openapi`):
//! its parameters are the type it parses, its rows the type it answers.

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::Json;
use chrono::Utc;
use crm_projections::calendar::Granularity;
use crm_projections::funnel::{Conversion, Slice, StageCount, TimeInStage, TransitionCount};
use crm_projections::kpi::{KpiRow, Level};
use crm_projections::queries::{CustomerRow, ManagerRow, PeriodRow, PortfolioCount};
use crm_projections::store::CheckpointRow;
use crm_projections::PortfolioBy;

use crate::caller::{Caller, AGGREGATE_READERS, AUDITORS, CUSTOMER_READERS};
use crate::openapi::Refusals;
use crate::params::{
    calendar, csv, instant, limit, paged, range, rows, Answer, AsOfQuery, CustomersQuery,
    KpisQuery, Page, Paged, Plain, PortfoliosQuery, SliceQuery, StagesQuery, TimelineQuery,
    TransitionsQuery, Q,
};
use crate::reveal::TimelineItem;
use crate::AppState;

/// Customers with their current owner, in id order, filtered
///
/// A manager sees their own customers (a team lead the team's), whatever the filters
/// say; analysts see names masked.
#[utoipa::path(get, path = "/v1/customers", tag = "customers", params(CustomersQuery),
    responses((status = 200, description = "a page of customers", content(
        (Page<CustomerRow> = "application/json"), (String = "text/csv"))), Refusals))]
pub(crate) async fn customers(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Q(p): Q<CustomersQuery>,
) -> Answer {
    caller.allow(CUSTOMER_READERS)?;
    // Every parameter is checked before personal data is revealed (and the read
    // recorded): an answer refused afterwards would leave a record of nothing shown.
    let csv = csv(p.format, &headers);
    let limit = limit(p.limit)?;
    let text = |v: &'static str| v.to_string();
    let filter = crm_projections::CustomerFilter {
        region: p.region,
        stage: p.stage.map(|v| text(v.as_str())),
        owner_id: p.owner_id,
        team: p.team,
        value_tier: p.value_tier.map(|v| text(v.as_str())),
        customer_type: p.customer_type.map(|v| text(v.as_str())),
        first_touch_channel: p.first_touch_channel.map(|v| text(v.as_str())),
    };
    let after = p.after.unwrap_or_default();
    let mut items = crate::reads::customers(&s, &caller, filter, &after, limit).await?;
    s.reveal_customers(&caller, "customers", &mut items).await?;
    paged(items, limit, csv, |c| c.customer_id.clone())
}

/// One customer now
#[utoipa::path(get, path = "/v1/customers/{id}", tag = "customers",
    params(("id" = String, Path, description = "the customer's id"), Plain),
    responses((status = 200, description = "the customer (CSV: one row)", content(
        (CustomerRow = "application/json"), (String = "text/csv"))), Refusals))]
pub(crate) async fn customer(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    Q(p): Q<Plain>,
) -> Answer {
    let csv = csv(p.format, &headers);
    let mut found = vec![crate::reads::visible_customer(&s, &caller, &id).await?];
    s.reveal_customers(&caller, "customer", &mut found).await?;
    if csv {
        rows(found, true)
    } else {
        Ok(Json(found.remove(0)).into_response())
    }
}

/// A customer's ownership periods, oldest first; with `as_of`, the one holding it
#[utoipa::path(get, path = "/v1/customers/{id}/ownership", tag = "ownership",
    params(("id" = String, Path, description = "the customer's id"), AsOfQuery),
    responses((status = 200, description = "ownership periods (none at `as_of`: in the pool \
        then, or not yet registered)", content(
        (Page<PeriodRow> = "application/json"), (String = "text/csv"))), Refusals))]
pub(crate) async fn ownership(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    Q(p): Q<AsOfQuery>,
) -> Answer {
    let csv = csv(p.format, &headers);
    let at = instant("as_of", p.as_of.as_deref())?;
    rows(crate::reads::ownership(&s, &caller, &id, at).await?, csv)
}

/// Customer 360: every event of a customer, newest first
///
/// Payloads are decrypted for the caller (masked for analysts) and `null` when the
/// service runs without the event store.
#[utoipa::path(get, path = "/v1/customers/{id}/timeline", tag = "customers",
    params(("id" = String, Path, description = "the customer's id"), TimelineQuery),
    responses((status = 200, description = "a page of the timeline, newest first", content(
        (Page<TimelineItem> = "application/json"), (String = "text/csv"))), Refusals))]
pub(crate) async fn timeline(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    Q(p): Q<TimelineQuery>,
) -> Answer {
    let limit = limit(p.limit)?;
    let csv = csv(p.format, &headers);
    crate::reads::visible_customer(&s, &caller, &id).await?;
    let items = s
        .store
        .timeline(&id, p.before_version.unwrap_or(0), limit)
        .await?;
    let items = s.timeline_items(&caller, items).await?;
    paged(items, limit, csv, |t| t.row.version.to_string())
}

/// The customers a manager owns now
///
/// A manager may read their own; a team lead the part of another's in the team.
#[utoipa::path(get, path = "/v1/managers/{id}/portfolio", tag = "ownership",
    params(("id" = String, Path, description = "the manager's id"), Plain),
    responses((status = 200, description = "the portfolio", content(
        (Page<CustomerRow> = "application/json"), (String = "text/csv"))), Refusals))]
pub(crate) async fn portfolio(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    Q(p): Q<Plain>,
) -> Answer {
    let csv = csv(p.format, &headers);
    let mut items = crate::reads::portfolio(&s, &caller, &id).await?;
    s.reveal_customers(&caller, "portfolio", &mut items).await?;
    rows(items, csv)
}

/// The public pool (公海): customers with no owner, in id order
#[utoipa::path(get, path = "/v1/pool", tag = "ownership", params(Paged),
    responses((status = 200, description = "a page of the pool", content(
        (Page<CustomerRow> = "application/json"), (String = "text/csv"))), Refusals))]
pub(crate) async fn pool(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Q(p): Q<Paged>,
) -> Answer {
    let limit = limit(p.limit)?;
    let csv = csv(p.format, &headers);
    let after = p.after.unwrap_or_default();
    let mut items = crate::reads::pool(&s, &caller, &after, limit).await?;
    s.reveal_customers(&caller, "pool", &mut items).await?;
    paged(items, limit, csv, |c| c.customer_id.clone())
}

/// Portfolio sizes now, by owner, team or region
#[utoipa::path(get, path = "/v1/portfolios", tag = "ownership", params(PortfoliosQuery),
    responses((status = 200, description = "customers per owner, team or region", content(
        (Page<PortfolioCount> = "application/json"), (String = "text/csv"))), Refusals))]
pub(crate) async fn portfolios(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Q(p): Q<PortfoliosQuery>,
) -> Answer {
    caller.allow(AGGREGATE_READERS)?;
    let by = p.by.unwrap_or(PortfolioBy::Manager);
    rows(s.store.portfolio_counts(by).await?, csv(p.format, &headers))
}

/// Managers: team, region, branch, holding limit, active
#[utoipa::path(get, path = "/v1/managers", tag = "ownership", params(Plain),
    responses((status = 200, description = "every manager", content(
        (Page<ManagerRow> = "application/json"), (String = "text/csv"))), Refusals))]
pub(crate) async fn managers(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Q(p): Q<Plain>,
) -> Answer {
    caller.allow(AGGREGATE_READERS)?;
    rows(s.store.managers().await?, csv(p.format, &headers))
}

/// Customers per lifecycle stage, now or at an instant
#[utoipa::path(get, path = "/v1/funnel/stages", tag = "funnel", params(StagesQuery),
    responses((status = 200, description = "customers per slice and stage", content(
        (Page<StageCount> = "application/json"), (String = "text/csv"))), Refusals))]
pub(crate) async fn funnel_stages(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Q(p): Q<StagesQuery>,
) -> Answer {
    caller.allow(AGGREGATE_READERS)?;
    let at = instant("as_of", p.as_of.as_deref())?;
    let slice = p.slice.unwrap_or(Slice::All);
    rows(
        s.store.stage_counts(at, slice).await?,
        csv(p.format, &headers),
    )
}

/// Stage moves (and reactivations) per local period
#[utoipa::path(get, path = "/v1/funnel/transitions", tag = "funnel", params(TransitionsQuery),
    responses((status = 200, description = "moves per period, slice and stages", content(
        (Page<TransitionCount> = "application/json"), (String = "text/csv"))), Refusals))]
pub(crate) async fn funnel_transitions(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Q(p): Q<TransitionsQuery>,
) -> Answer {
    caller.allow(AGGREGATE_READERS)?;
    let slice = p.slice.unwrap_or(Slice::All);
    let g = p.granularity.unwrap_or(Granularity::Day);
    let cal = calendar(p.tz.as_deref(), s.calendar)?;
    let (from, to) = range(p.from.as_deref(), p.to.as_deref())?;
    let moves = s
        .store
        .stage_transitions(from, to, (&cal, g), slice)
        .await?;
    rows(moves, csv(p.format, &headers))
}

/// Entered, moved on, next-step and cumulative conversion per stage
#[utoipa::path(get, path = "/v1/funnel/conversion", tag = "funnel", params(SliceQuery),
    responses((status = 200, description = "conversion per slice and stage", content(
        (Page<Conversion> = "application/json"), (String = "text/csv"))), Refusals))]
pub(crate) async fn funnel_conversion(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Q(p): Q<SliceQuery>,
) -> Answer {
    caller.allow(AGGREGATE_READERS)?;
    let slice = p.slice.unwrap_or(Slice::All);
    rows(s.store.conversion(slice).await?, csv(p.format, &headers))
}

/// Median time in each stage
#[utoipa::path(get, path = "/v1/funnel/time-in-stage", tag = "funnel", params(SliceQuery),
    responses((status = 200, description = "completed stays per slice and stage", content(
        (Page<TimeInStage> = "application/json"), (String = "text/csv"))), Refusals))]
pub(crate) async fn funnel_time_in_stage(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Q(p): Q<SliceQuery>,
) -> Answer {
    caller.allow(AGGREGATE_READERS)?;
    let slice = p.slice.unwrap_or(Slice::All);
    rows(s.store.time_in_stage(slice).await?, csv(p.format, &headers))
}

/// Every manager KPI per manager, team or region and local period
#[utoipa::path(get, path = "/v1/kpis", tag = "kpis", params(KpisQuery),
    responses((status = 200, description = "one row per key and period", content(
        (Page<KpiRow> = "application/json"), (String = "text/csv"))), Refusals))]
pub(crate) async fn kpis(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Q(p): Q<KpisQuery>,
) -> Answer {
    caller.allow(AGGREGATE_READERS)?;
    let level = p.level.unwrap_or(Level::Manager);
    let g = p.granularity.unwrap_or(Granularity::Day);
    let cal = calendar(p.tz.as_deref(), s.calendar)?;
    let (from, to) = range(p.from.as_deref(), p.to.as_deref())?;
    let now = Utc::now().timestamp_micros();
    let figures = s.store.kpis(level, (&cal, g), from, to, now).await?;
    rows(figures, csv(p.format, &headers))
}

/// Each projector consumer's progress
#[utoipa::path(get, path = "/v1/projections/checkpoints", tag = "operations", params(Plain),
    responses((status = 200, description = "one row per consumer", content(
        (Page<CheckpointRow> = "application/json"), (String = "text/csv"))), Refusals))]
pub(crate) async fn checkpoints(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Q(p): Q<Plain>,
) -> Answer {
    caller.allow(AUDITORS)?;
    rows(s.store.checkpoints().await?, csv(p.format, &headers))
}

//! The read-model routes: customers, portfolios, the pool, the funnel, the KPIs.

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::Json;
use chrono::Utc;
use crm_projections::calendar::Granularity;
use crm_projections::funnel::Slice;
use crm_projections::kpi::Level;
use crm_projections::PortfolioBy;

use crate::caller::{Caller, AGGREGATE_READERS, AUDITORS, CUSTOMER_READERS};
use crate::params::{paged, rows, Answer, Params, Q};
use crate::problem::Problem;
use crate::AppState;

pub(crate) async fn customers(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Q(p): Q,
) -> Answer {
    caller.allow(CUSTOMER_READERS)?;
    // Every parameter is checked before personal data is revealed (and the read
    // recorded): an answer refused afterwards would leave a record of nothing shown.
    let csv = p.csv(&headers)?;
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
    let mut items =
        crate::reads::customers(&s, &caller, filter, p.after.as_deref().unwrap_or(""), limit)
            .await?;
    s.reveal_customers(&caller, "customers", &mut items).await?;
    paged(items, limit, csv, |c| c.customer_id.clone())
}

pub(crate) async fn customer(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    Q(p): Q,
) -> Answer {
    let csv = p.csv(&headers)?;
    let mut found = vec![crate::reads::visible_customer(&s, &caller, &id).await?];
    s.reveal_customers(&caller, "customer", &mut found).await?;
    if csv {
        rows(found, true)
    } else {
        Ok(Json(found.remove(0)).into_response())
    }
}

pub(crate) async fn ownership(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    Q(p): Q,
) -> Answer {
    let csv = p.csv(&headers)?;
    let at = Params::instant("as_of", &p.as_of)?;
    rows(crate::reads::ownership(&s, &caller, &id, at).await?, csv)
}

pub(crate) async fn timeline(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    Q(p): Q,
) -> Answer {
    let limit = p.limit()?;
    let csv = p.csv(&headers)?;
    crate::reads::visible_customer(&s, &caller, &id).await?;
    let items = s
        .store
        .timeline(&id, p.before_version.unwrap_or(0), limit)
        .await?;
    let items = s.timeline_items(&caller, items).await?;
    paged(items, limit, csv, |t| t.row.version.to_string())
}

pub(crate) async fn portfolio(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    Q(p): Q,
) -> Answer {
    let csv = p.csv(&headers)?;
    let mut items = crate::reads::portfolio(&s, &caller, &id).await?;
    s.reveal_customers(&caller, "portfolio", &mut items).await?;
    rows(items, csv)
}

pub(crate) async fn pool(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Q(p): Q,
) -> Answer {
    let limit = p.limit()?;
    let csv = p.csv(&headers)?;
    let mut items =
        crate::reads::pool(&s, &caller, p.after.as_deref().unwrap_or(""), limit).await?;
    s.reveal_customers(&caller, "pool", &mut items).await?;
    paged(items, limit, csv, |c| c.customer_id.clone())
}

pub(crate) async fn portfolios(
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

pub(crate) async fn managers(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Q(p): Q,
) -> Answer {
    caller.allow(AGGREGATE_READERS)?;
    rows(s.store.managers().await?, p.csv(&headers)?)
}

pub(crate) async fn funnel_stages(
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

pub(crate) async fn funnel_transitions(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Q(p): Q,
) -> Answer {
    caller.allow(AGGREGATE_READERS)?;
    let csv = p.csv(&headers)?;
    let slice = Params::parsed(&p.slice, Slice::All)?;
    let g = Params::parsed(&p.granularity, Granularity::Day)?;
    let cal = p.calendar(s.calendar)?;
    let (from, to) = p.range()?;
    rows(
        s.store
            .stage_transitions(from, to, (&cal, g), slice)
            .await?,
        csv,
    )
}

pub(crate) async fn funnel_conversion(
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

pub(crate) async fn funnel_time_in_stage(
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

pub(crate) async fn kpis(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Q(p): Q,
) -> Answer {
    caller.allow(AGGREGATE_READERS)?;
    let csv = p.csv(&headers)?;
    let level = Params::parsed(&p.level, Level::Manager)?;
    let g = Params::parsed(&p.granularity, Granularity::Day)?;
    let cal = p.calendar(s.calendar)?;
    let (from, to) = p.range()?;
    let now = Utc::now().timestamp_micros();
    rows(s.store.kpis(level, (&cal, g), from, to, now).await?, csv)
}

pub(crate) async fn checkpoints(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Q(p): Q,
) -> Answer {
    caller.allow(AUDITORS)?;
    rows(s.store.checkpoints().await?, p.csv(&headers)?)
}

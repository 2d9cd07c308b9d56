//! The read-model routes: customers, portfolios, the pool, the funnel, the KPIs.

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::Json;
use chrono::Utc;
use crm_auth::{Principal, Role};
use crm_projections::calendar::Granularity;
use crm_projections::funnel::Slice;
use crm_projections::kpi::Level;
use crm_projections::queries::CustomerRow;
use crm_projections::PortfolioBy;

use crate::caller::{no_such_customer, Caller, AGGREGATE_READERS, AUDITORS, CUSTOMER_READERS};
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
    paged(items, limit, csv, |c| c.customer_id.clone())
}

/// The customer, if the caller may see it.
pub(crate) async fn visible_customer(
    s: &AppState,
    caller: &Caller,
    id: &str,
) -> Result<CustomerRow, Problem> {
    caller.allow(CUSTOMER_READERS)?;
    let Some(c) = s.store.customer(id).await? else {
        return Err(no_such_customer(id));
    };
    caller.may_see(&c)?;
    Ok(c)
}

pub(crate) async fn customer(
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

pub(crate) async fn ownership(
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

pub(crate) async fn timeline(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    Q(p): Q,
) -> Answer {
    let limit = p.limit()?;
    let csv = p.csv(&headers)?;
    visible_customer(&s, &caller, &id).await?;
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
    caller.allow(CUSTOMER_READERS)?;
    let csv = p.csv(&headers)?;
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
    rows(items, csv)
}

pub(crate) async fn pool(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Q(p): Q,
) -> Answer {
    // Managers see the pool: it is where they claim customers from.
    caller.allow(CUSTOMER_READERS)?;
    let limit = p.limit()?;
    let csv = p.csv(&headers)?;
    let mut items = s
        .store
        .pool(p.after.as_deref().unwrap_or(""), limit)
        .await?;
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

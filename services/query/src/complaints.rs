//! The complaint routes: a page of complaints (by customer, owner, team, severity,
//! status and SLA state), one complaint with its history, and the open ones counted.
//! Complaints are customer data: a manager sees those of the customers they may see (a
//! team lead: the team's), scoped as the customer list is; analysts see customers' names
//! masked; every answer revealing names to a person is recorded. The workbench's
//! complaint pages ask through the same functions.

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::Json;
use chrono::Utc;
use crm_domain::customer::CustomerEvent;
use crm_eventstore::Streams;
use crm_projections::queries::complaints::{
    After, ComplaintCount, ComplaintFilter, ComplaintRow, Status,
};
use crm_projections::queries::{CustomerRow, TimelineRow};
use serde::Serialize;
use utoipa::ToSchema;

use crate::caller::{BookScope, Caller, CUSTOMER_READERS};
use crate::openapi::Refusals;
use crate::params::{
    csv, limit, paged, rows, Answer, ComplaintCountsQuery, ComplaintsQuery, NoParams, Page, Q,
};
use crate::problem::Problem;
use crate::AppState;

/// `filter` scoped to the caller as the customer list is (`reads::customers`): a
/// manager's own customers, a team lead's team's, whatever was asked.
pub(crate) fn scoped(caller: &Caller, mut filter: ComplaintFilter) -> ComplaintFilter {
    match caller.book_scope() {
        Some(BookScope::Team(team)) => filter.team_scope = Some(team),
        Some(BookScope::Owner(owner)) => filter.owner_id = owner,
        None => {}
    }
    filter
}

/// A page of complaints matching `filter`, scoped to the caller, judged now, names
/// revealed as the caller may see them (the read recorded under `route`).
pub(crate) async fn page(
    s: &AppState,
    caller: &Caller,
    route: &str,
    filter: ComplaintFilter,
    after: Option<&After>,
    limit: i64,
) -> Result<Vec<ComplaintRow>, Problem> {
    caller.allow(CUSTOMER_READERS)?;
    let filter = scoped(caller, filter);
    let now = Utc::now().timestamp_micros();
    let mut rows = s.store.complaints(&filter, now, after, limit).await?;
    reveal(s, caller, route, &mut rows).await?;
    Ok(rows)
}

/// The complaint, if the caller may see its customer: one that does not exist and one
/// they may not see are the same answer, so ids cannot be probed. Names not revealed.
pub(crate) async fn visible(
    s: &AppState,
    caller: &Caller,
    id: &str,
) -> Result<ComplaintRow, Problem> {
    caller.allow(CUSTOMER_READERS)?;
    let now = Utc::now().timestamp_micros();
    let no_such = || {
        Problem::not_found(format!(
            "no complaint {} that you may see",
            crm_domain::text::escaped(id)
        ))
    };
    let k = s.store.complaint(id, now).await?.ok_or_else(no_such)?;
    caller.may_see(&k.customer).map_err(|_| no_such())?;
    Ok(k)
}

/// The customers' names as the caller may see them (masked for analysts; the read
/// recorded).
pub(crate) async fn reveal(
    s: &AppState,
    caller: &Caller,
    route: &str,
    rows: &mut [ComplaintRow],
) -> Result<(), Problem> {
    let mut customers: Vec<CustomerRow> = rows.iter().map(|k| k.customer.clone()).collect();
    s.reveal_customers(caller, route, &mut customers).await?;
    for (k, c) in rows.iter_mut().zip(customers) {
        k.customer = c;
    }
    Ok(())
}

/// The complaint's events, oldest first, from its customer's stream in the event store
/// (tens of events, not the log): each one whose typed `complaint_id` is this one's. The
/// timeline read model holds only text summaries, in which another complaint's id could
/// appear (a category is the caller's text), so it could not say exactly which events
/// are this complaint's. Each as a line of the timeline. `None`: the service has no
/// event store.
pub(crate) async fn history(
    s: &AppState,
    k: &ComplaintRow,
) -> Result<Option<Vec<TimelineRow>>, Problem> {
    let Some(events) = &s.security.events else {
        return Ok(None);
    };
    let stream = format!("customer-{}", k.customer.customer_id);
    let all = events
        .read_stream_range(&stream, 0, u64::MAX)
        .await
        .map_err(Problem::store)?;
    Ok(Some(
        all.iter()
            .filter_map(|e| {
                let event =
                    CustomerEvent::decode(&e.event_type, e.schema_version, &e.payload).ok()?;
                (complaint_of(&event)? == k.complaint_id).then(|| TimelineRow {
                    customer_id: k.customer.customer_id.clone(),
                    version: e.stream_version as i64,
                    event_id: e.event_id.to_string(),
                    event_type: e.event_type.clone(),
                    occurred_at_us: e.metadata.occurred_at.timestamp_micros(),
                    actor: e.metadata.actor.clone(),
                    summary: crm_projections::project::summary(&event),
                })
            })
            .collect(),
    ))
}

/// The complaint an event is about, if it is about one.
fn complaint_of(e: &CustomerEvent) -> Option<String> {
    let id = match e {
        CustomerEvent::ComplaintLogged(x) => x.complaint_id,
        CustomerEvent::ComplaintAcknowledged(x) => x.complaint_id,
        CustomerEvent::ComplaintEscalated(x) => x.complaint_id,
        CustomerEvent::ComplaintResolved(x) => x.complaint_id,
        CustomerEvent::ComplaintReopened(x) => x.complaint_id,
        CustomerEvent::ComplaintClosed(x) => x.complaint_id,
        CustomerEvent::ComplaintSlaWarned(x) => x.complaint_id,
        CustomerEvent::ComplaintSlaBreached(x) => x.complaint_id,
        _ => return None,
    };
    Some(id.to_string())
}

/// A complaint with its history.
#[derive(Serialize, ToSchema)]
pub(crate) struct ComplaintDetail {
    #[serde(flatten)]
    complaint: ComplaintRow,
    /// Its events, oldest first; `null` when the service runs without the event store.
    #[schema(required = true)]
    history: Option<Vec<TimelineRow>>,
}

/// Complaints, oldest logged first, filtered
///
/// By customer, owner now, team, severity, status (open, resolved, closed) and SLA state
/// (due, warned, breached, escalated: `rm_complaints` in docs/read-models.md has the rules), judged at the
/// moment asked. A manager sees the complaints of their own customers (a team lead the
/// team's), whatever the filters say; analysts see names masked.
#[utoipa::path(get, path = "/v1/complaints", operation_id = "complaints", tag = "complaints", params(ComplaintsQuery),
    responses((status = 200, description = "a page of complaints", content(
        (Page<ComplaintRow> = "application/json"), (String = "text/csv"))), Refusals))]
pub(crate) async fn list(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Q(p): Q<ComplaintsQuery>,
) -> Answer {
    let csv = csv(p.format, &headers);
    let limit = limit(p.limit)?;
    if p.sla_state.is_some() && p.status.is_some_and(|st| st != Status::Open) {
        return Err(Problem::bad(
            "an sla_state is a state of open complaints: status must be open or absent",
        ));
    }
    let filter = ComplaintFilter {
        customer_id: p.customer_id,
        owner_id: p.owner_id,
        team: p.team,
        severity: p.severity.map(|v| v.as_str().to_string()),
        status: p.status,
        state: p.sla_state,
        team_scope: None,
    };
    let after: Option<After> = p
        .after
        .as_deref()
        .map(str::parse)
        .transpose()
        .map_err(Problem::bad)?;
    let items = page(&s, &caller, "complaints", filter, after.as_ref(), limit).await?;
    paged(items, limit, csv, |k| After::of(k).to_string())
}

/// One complaint with its history
///
/// Open or not, with its customer now and every event about it (from the event store).
#[utoipa::path(get, path = "/v1/complaints/{id}", operation_id = "complaint", tag = "complaints",
    params(("id" = String, Path, description = "the complaint's id"), NoParams),
    responses((status = 200, description = "the complaint", body = ComplaintDetail),
        Refusals))]
pub(crate) async fn one(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Q(NoParams {}): Q<NoParams>,
) -> Answer {
    let k = visible(&s, &caller, &id).await?;
    let history = history(&s, &k).await?;
    let mut found = vec![k];
    reveal(&s, &caller, "complaint", &mut found).await?;
    let complaint = found.remove(0);
    Ok(Json(ComplaintDetail { complaint, history }).into_response())
}

/// The open complaints counted by team, severity and SLA state
///
/// Judged at the moment asked; scoped to the caller as the list is. Every open complaint
/// is judged: at hundreds of thousands, this takes seconds.
#[utoipa::path(get, path = "/v1/complaints/open-counts", operation_id = "open_complaint_counts", tag = "complaints",
    params(ComplaintCountsQuery),
    responses((status = 200, description = "open complaints per team, severity and state",
        content((Page<ComplaintCount> = "application/json"), (String = "text/csv"))),
        Refusals))]
pub(crate) async fn open_counts(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Q(p): Q<ComplaintCountsQuery>,
) -> Answer {
    caller.allow(CUSTOMER_READERS)?;
    let csv = csv(p.format, &headers);
    let filter = scoped(
        &caller,
        ComplaintFilter {
            team: p.team,
            severity: p.severity.map(|v| v.as_str().to_string()),
            state: p.sla_state,
            ..Default::default()
        },
    );
    let now = Utc::now().timestamp_micros();
    rows(s.store.open_complaint_counts(&filter, now).await?, csv)
}

//! The auditors' routes: ownership replayed from the event store, never the read models.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use chrono::{DateTime, Utc};
use crm_eventstore::AnyEventStore;
use serde::Serialize;
use utoipa::ToSchema;

use crate::caller::{Caller, AUDITORS};
use crate::openapi::Refusals;
use crate::params::{instant, Answer, AuditAsOfQuery, AuditRangeQuery, Q};
use crate::problem::Problem;
use crate::AppState;

/// The event store audit answers replay (the API's and the workbench's): 503 without one.
pub(crate) fn audit_store(s: &AppState) -> Result<&AnyEventStore, Problem> {
    s.security.events.as_ref().ok_or_else(|| {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "query.unavailable",
            "audit replay needs the event store (CRM_STORE_URL)",
        )
    })
}

/// The id in the path, or a 400 naming what it should have been.
pub(crate) fn path_id<T: std::str::FromStr>(id: &str, what: &str) -> Result<T, Problem> {
    id.parse()
        .map_err(|_| Problem::bad(format!("{id:?} is not a {what} id")))
}

pub(crate) fn audit_failed(e: crm_audit::AuditError) -> Problem {
    match e {
        crm_audit::AuditError::UnknownCustomer(c) => Problem::not_found(format!("no customer {c}")),
        other => Problem::store(other),
    }
}

/// A customer's ownership as replayed: every change, or the owner at an instant.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub(crate) enum AuditAnswer {
    /// Without `as_of`: every change of owner, oldest first.
    History(Vec<crm_audit::OwnershipEntry>),
    /// With `as_of`: the owner then, and the change that made them so.
    AsOf(Box<crm_audit::AsOf>),
}

/// Ownership replayed from the event store, for auditors
///
/// Not the read models: every change with who, why, policy and command; with `as_of`,
/// the owner then. JSON only.
#[utoipa::path(get, path = "/v1/audit/customers/{id}/ownership", tag = "audit",
    params(("id" = String, Path, format = Uuid, description = "the customer's id"),
        AuditAsOfQuery),
    responses((status = 200, description = "the changes, or the owner at `as_of`",
        body = AuditAnswer), Refusals))]
pub(crate) async fn audit_ownership(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Q(p): Q<AuditAsOfQuery>,
) -> Answer {
    caller.allow(AUDITORS)?;
    let store = audit_store(&s)?;
    let customer: crm_domain::CustomerId = path_id(&id, "customer")?;
    let at = instant("as_of", p.as_of.as_deref())?;
    let entries = crm_audit::customer_history(store, customer)
        .await
        .map_err(audit_failed)?;
    let answer = match at {
        Some(at) => {
            let at = DateTime::<Utc>::from_timestamp_micros(at)
                .ok_or_else(|| Problem::bad("as_of is out of range"))?;
            AuditAnswer::AsOf(Box::new(crm_audit::owner_as_of(&entries, at)))
        }
        None => AuditAnswer::History(entries),
    };
    Ok(Json(answer).into_response())
}

/// A manager's customers over `[from, to)`, replayed from the event store, for auditors
///
/// JSON only.
#[utoipa::path(get, path = "/v1/audit/managers/{id}/ownership", tag = "audit",
    params(("id" = String, Path, format = Uuid, description = "the manager's id"),
        AuditRangeQuery),
    responses((status = 200, description = "the manager's customers over the range",
        body = crm_audit::ManagerHistory), Refusals))]
pub(crate) async fn audit_manager(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Q(p): Q<AuditRangeQuery>,
) -> Answer {
    caller.allow(AUDITORS)?;
    let store = audit_store(&s)?;
    let manager: crm_domain::ManagerId = path_id(&id, "manager")?;
    let instant = |name: &str, v: &str| -> Result<DateTime<Utc>, Problem> {
        instant(name, Some(v))?
            .and_then(DateTime::<Utc>::from_timestamp_micros)
            .ok_or_else(|| Problem::bad(format!("{name} is out of range")))
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

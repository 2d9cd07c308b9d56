//! The auditors' routes: ownership replayed from the event store, never the read models.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use chrono::{DateTime, Utc};
use crm_eventstore::AnyEventStore;

use crate::caller::{Caller, AUDITORS};
use crate::params::{Answer, Params, Q};
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

/// Ownership replayed from the event store (not the read models), for auditors: every
/// change with who, why, policy and command; with `as_of`, the owner then.
pub(crate) async fn audit_ownership(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Q(p): Q,
) -> Answer {
    caller.allow(AUDITORS)?;
    let store = audit_store(&s)?;
    let customer: crm_domain::CustomerId = path_id(&id, "customer")?;
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
pub(crate) async fn audit_manager(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Q(p): Q,
) -> Answer {
    caller.allow(AUDITORS)?;
    let store = audit_store(&s)?;
    let manager: crm_domain::ManagerId = path_id(&id, "manager")?;
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

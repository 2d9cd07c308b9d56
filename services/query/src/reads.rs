//! The questions about customers, scoped by the caller: the JSON routes and the
//! workbench's pages both ask through these, so a page can never show what the API would
//! refuse (ADR 0007).

use crm_auth::{Principal, Role};
use crm_projections::queries::{CustomerRow, PeriodRow};
use crm_projections::CustomerFilter;

use crate::caller::{no_such_customer, BookScope, Caller, CUSTOMER_READERS};
use crate::problem::Problem;
use crate::AppState;

/// Customers matching `filter`, after `after`, at most `limit`. A manager's list is their
/// portfolio (a team lead's: the team's), whatever the filter asked.
pub(crate) async fn customers(
    s: &AppState,
    caller: &Caller,
    mut filter: CustomerFilter,
    after: &str,
    limit: i64,
) -> Result<Vec<CustomerRow>, Problem> {
    caller.allow(CUSTOMER_READERS)?;
    match caller.book_scope() {
        Some(BookScope::Team(team)) => filter.team = Some(team),
        Some(BookScope::Owner(owner)) => filter.owner_id = owner,
        None => {}
    }
    Ok(s.store.customers_where(&filter, after, limit).await?)
}

/// The customer, if the caller may see it; another manager's is answered as one that
/// does not exist.
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

/// A manager's portfolio now: a manager may read their own; a team lead the part of
/// another's in the team.
pub(crate) async fn portfolio(
    s: &AppState,
    caller: &Caller,
    manager_id: &str,
) -> Result<Vec<CustomerRow>, Problem> {
    caller.allow(CUSTOMER_READERS)?;
    let mut items = s.store.portfolio(manager_id).await?;
    if let Some(Principal {
        role: Role::Manager,
        manager_id: own,
        team,
        ..
    }) = &caller.0
    {
        if own.as_deref() != Some(manager_id) {
            let Some(team) = team else {
                return Err(Problem::forbidden("another manager's portfolio"));
            };
            items.retain(|c| c.owner_team.as_deref() == Some(team.as_str()));
        }
    }
    Ok(items)
}

/// A page of the public pool (公海). Managers see it: it is where they claim from.
pub(crate) async fn pool(
    s: &AppState,
    caller: &Caller,
    after: &str,
    limit: i64,
) -> Result<Vec<CustomerRow>, Problem> {
    caller.allow(CUSTOMER_READERS)?;
    Ok(s.store.pool(after, limit).await?)
}

/// A customer's ownership periods, oldest first; with `at`, the one period holding that
/// instant (none: in the pool then, or not yet registered).
pub(crate) async fn ownership(
    s: &AppState,
    caller: &Caller,
    id: &str,
    at: Option<i64>,
) -> Result<Vec<PeriodRow>, Problem> {
    visible_customer(s, caller, id).await?;
    Ok(match at {
        Some(at) => s.store.owner_at(id, at).await?.into_iter().collect(),
        None => s.store.ownership_timeline(id).await?,
    })
}

//! When an owned customer returns to the public pool on its own: the scheduler's rule
//! (`crm_domain::customer::timers::pool_return`) applied to the customer's state, folded
//! from its stream, under the policy in force, so the page and the scheduler cannot
//! disagree. Only the customers of one page are folded (tens of short streams).

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use crm_domain::customer::{timers, CustomerEvent, CustomerState};
use crm_domain::policy::{Policy, PolicyEvent, PolicyState, POLICY_STREAM};
use crm_eventstore::{AnyEventStore, Streams};
use crm_projections::queries::CustomerRow;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::problem::Problem;
use crate::AppState;

/// A return the rules lead to.
pub(crate) struct Return {
    pub due: DateTime<Utc>,
    /// `no_contact` or `lead_not_won`.
    pub cause: &'static str,
}

/// The policy in force, from its stream (the built-in defaults before any version).
pub(crate) async fn policy(s: &AppState) -> Result<Option<Policy>, Problem> {
    let Some(events) = &s.security.events else {
        return Ok(None);
    };
    let mut state = PolicyState::default();
    for e in events
        .read_stream(POLICY_STREAM, 0)
        .await
        .map_err(Problem::store)?
    {
        let event = PolicyEvent::decode(&e.event_type, e.schema_version, &e.payload)
            .map_err(Problem::store)?;
        state.apply(&event);
    }
    Ok(Some(state.current))
}

/// Streams read at once for a book page: read one after another, a page's 50 customers
/// took 1.3 s on a cold disk at W2's size (a stream's events lie on pages of their own);
/// the query service's event-store pool holds 4 connections by default.
const AT_ONCE: usize = 4;

/// The automatic return of each owned customer of `rows`, by customer id.
pub(crate) async fn returns(
    s: &AppState,
    policy: &Policy,
    rows: &[CustomerRow],
) -> Result<HashMap<String, Return>, Problem> {
    let Some(events) = &s.security.events else {
        return Ok(HashMap::new());
    };
    let policy = Arc::new(policy.clone());
    let permits = Arc::new(Semaphore::new(AT_ONCE));
    let mut reads = JoinSet::new();
    for row in rows.iter().filter(|r| r.owner_id.is_some()) {
        let (events, policy, permits) = (events.clone(), policy.clone(), permits.clone());
        let id = row.customer_id.clone();
        reads.spawn(async move {
            let _permit = permits.acquire_owned().await.expect("never closed");
            let state = customer(&events, &id).await?;
            let due = state
                .registered()
                .and_then(|c| timers::pool_return(c, &policy));
            Ok::<_, Problem>((id, due))
        });
    }
    let mut out = HashMap::new();
    while let Some(read) = reads.join_next().await {
        let (id, due) = read.map_err(|e| Problem::store(e.to_string()))??;
        if let Some((cause, due)) = due {
            let cause = cause.as_str();
            out.insert(id, Return { due, cause });
        }
    }
    Ok(out)
}

/// A customer's state, folded from its stream.
async fn customer(events: &AnyEventStore, id: &str) -> Result<CustomerState, Problem> {
    let mut state = CustomerState::default();
    for e in events
        .read_stream(&format!("customer-{id}"), 0)
        .await
        .map_err(Problem::store)?
    {
        let event = CustomerEvent::decode(&e.event_type, e.schema_version, &e.payload)
            .map_err(Problem::store)?;
        state.apply(&event);
    }
    Ok(state)
}

/// Whole days from `now` until `due` (negative when overdue), and whether the owner is
/// within the policy's warning window.
pub(crate) fn countdown(due: DateTime<Utc>, now: DateTime<Utc>, warning_days: u32) -> (i64, bool) {
    let left = due - now;
    let days = left.num_days();
    (
        days,
        left <= chrono::Duration::days(i64::from(warning_days)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_countdown_counts_whole_days_and_warns_inside_the_window() {
        let now = DateTime::parse_from_rfc3339("2026-12-06T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let in_ = |h: i64| now + chrono::Duration::hours(h);
        assert_eq!(countdown(in_(24 * 10 + 5), now, 3), (10, false));
        assert_eq!(countdown(in_(24 * 3), now, 3), (3, true));
        assert_eq!(countdown(in_(5), now, 3), (0, true));
        assert_eq!(countdown(in_(-30), now, 3), (-1, true));
    }
}

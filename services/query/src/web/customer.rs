//! Customer 360: the profile (as the caller's role may see it, the read recorded), the
//! ownership history with an as-of control (who owned the customer at any instant, by
//! which event, rule and policy version, who acted and why), and the timeline of
//! contacts, complaints, purchases and referrals with local dates.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use crm_domain::customer::CustomerEvent;
use crm_eventstore::Streams;
use crm_projections::queries::{CustomerRow, PeriodRow};
use serde::Deserialize;

use super::format::{input_value, local, maybe_local, money, parse_instant};
use super::i18n::Msg;
use super::view::{urlencode, Chrome, Nav, Viewer};
use crate::caller::AUDITORS;
use crate::problem::Problem;
use crate::AppState;

/// Timeline rows per page.
const TIMELINE_PAGE: i64 = 50;

#[derive(Deserialize)]
pub(crate) struct CustomerQuery {
    as_of: Option<String>,
    before: Option<i64>,
}

/// Why a period began (or the pool period, why it ended): the deciding event as stored.
pub(crate) struct Decision {
    pub event: String,
    pub event_id: String,
    pub reason: String,
    pub by: String,
    pub rule: Option<String>,
    pub policy_version: Option<u32>,
}

/// What the as-of control answers.
pub(crate) enum AsOf {
    Owned {
        manager: String,
        manager_name: String,
        team: String,
        from: String,
        to: String,
        decision: Decision,
    },
    Pool {
        since: Option<String>,
        decision: Option<Decision>,
    },
    NotYetRegistered,
}

pub(crate) struct PeriodLine {
    pub manager: String,
    pub manager_name: String,
    pub team: String,
    pub from: String,
    pub to: Option<String>,
    pub event: String,
    pub reason: String,
    pub by: String,
    pub ended_by: String,
    pub holds_instant: bool,
}

pub(crate) struct TimelineLine {
    pub when: String,
    pub event: String,
    pub actor: String,
    pub summary: String,
}

#[derive(Template)]
#[template(path = "customer.html")]
pub(crate) struct CustomerPage {
    pub chrome: Chrome,
    pub c: CustomerRow,
    pub owner_name: String,
    pub masked: bool,
    /// An auditor or administrator: the page links to the replay from the event store.
    pub auditor: bool,
    pub registered: String,
    pub owned_since: String,
    pub last_contact: String,
    pub next_follow_up: String,
    pub aum: String,
    pub as_of_input: String,
    pub as_of: Option<AsOf>,
    pub periods: Vec<PeriodLine>,
    pub timeline: Vec<TimelineLine>,
    pub older: Option<String>,
}

pub(crate) async fn page(
    State(s): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
    Query(q): Query<CustomerQuery>,
) -> Response {
    match build(&s, &viewer, &id, q).await {
        Ok(page) => viewer.render(StatusCode::OK, &page),
        Err(p) => viewer.refusal(&s, p),
    }
}

async fn build(
    s: &AppState,
    viewer: &Viewer,
    id: &str,
    q: CustomerQuery,
) -> Result<CustomerPage, Problem> {
    let caller = &viewer.caller;
    // Every parameter is checked before personal data is revealed and the read recorded.
    let at = match q.as_of.as_deref().filter(|v| !v.is_empty()) {
        Some(v) => Some(parse_instant(&s.calendar, v).map_err(Problem::bad)?),
        None => None,
    };
    let mut found = vec![crate::reads::visible_customer(s, caller, id).await?];
    let periods = crate::reads::ownership(s, caller, id, None).await?;
    let rows = s
        .store
        .timeline(id, q.before.unwrap_or(0), TIMELINE_PAGE)
        .await?;
    s.reveal_customers(caller, "workbench.customer", &mut found)
        .await?;
    let c = found.remove(0);
    let names = super::ownership::manager_names(s).await?;
    let named = |id: &str| names.get(id).cloned().unwrap_or_else(|| id.to_string());
    let as_of = match at {
        Some(at) => Some(as_of(s, &c, &periods, at, &named).await?),
        None => None,
    };
    let cal = &s.calendar;
    let here = format!("/ui/customers/{}", urlencode(id));
    let older = (rows.len() as i64 == TIMELINE_PAGE)
        .then(|| rows.last())
        .flatten()
        .map(|r| format!("{here}?before={}", r.version));
    Ok(CustomerPage {
        chrome: viewer.chrome(s, Nav::None, &here),
        masked: caller.masked(),
        auditor: caller.allow(AUDITORS).is_ok(),
        registered: local(cal, c.registered_at_us),
        owned_since: maybe_local(cal, c.owned_since_us),
        last_contact: maybe_local(cal, c.last_contact_at_us),
        next_follow_up: maybe_local(cal, c.next_follow_up_us),
        aum: c.aum_minor.map(money).unwrap_or_default(),
        as_of_input: input_value(
            cal,
            at.unwrap_or_else(|| chrono::Utc::now().timestamp_micros()),
        ),
        periods: periods
            .iter()
            .map(|p| period_line(s, p, at, named(&p.manager_id)))
            .collect(),
        owner_name: c.owner_id.as_deref().map(named).unwrap_or_default(),
        timeline: rows
            .into_iter()
            .map(|r| TimelineLine {
                when: local(cal, r.occurred_at_us),
                event: r.event_type,
                actor: r.actor,
                summary: r.summary,
            })
            .collect(),
        older,
        as_of,
        c,
    })
}

fn period_line(s: &AppState, p: &PeriodRow, at: Option<i64>, name: String) -> PeriodLine {
    PeriodLine {
        manager: p.manager_id.clone(),
        manager_name: name,
        team: p.team.clone(),
        from: local(&s.calendar, p.from_us),
        to: p.to_us.map(|t| local(&s.calendar, t)),
        event: p.start_event.clone(),
        reason: p.start_reason.clone().unwrap_or_default(),
        by: p.started_by.clone(),
        ended_by: match (&p.end_event, &p.ended_by) {
            (Some(e), Some(b)) => format!("{e} ({b})"),
            (Some(e), None) => e.clone(),
            _ => String::new(),
        },
        holds_instant: at.is_some_and(|t| p.from_us <= t && p.to_us.is_none_or(|to| to > t)),
    }
}

/// Who owned the customer at `at`: the read model's period holding the instant (as the
/// API answers), with the rule and policy version from the deciding event in the store.
async fn as_of(
    s: &AppState,
    c: &CustomerRow,
    periods: &[PeriodRow],
    at: i64,
    named: &impl Fn(&str) -> String,
) -> Result<AsOf, Problem> {
    if at < c.registered_at_us {
        return Ok(AsOf::NotYetRegistered);
    }
    let cal = &s.calendar;
    let holding = periods
        .iter()
        .rev()
        .find(|p| p.from_us <= at && p.to_us.is_none_or(|to| to > at));
    if let Some(p) = holding {
        let stored = stored_decision(s, c, p.start_version as u64).await?;
        return Ok(AsOf::Owned {
            manager: p.manager_id.clone(),
            manager_name: named(&p.manager_id),
            team: p.team.clone(),
            from: local(cal, p.from_us),
            to: p.to_us.map(|t| local(cal, t)).unwrap_or_default(),
            decision: Decision {
                event: p.start_event.clone(),
                event_id: p.start_event_id.clone(),
                reason: p.start_reason.clone().unwrap_or_default(),
                by: p.started_by.clone(),
                rule: stored.as_ref().and_then(|d| d.rule.clone()),
                policy_version: stored.and_then(|d| d.policy_version),
            },
        });
    }
    // In the pool: since the last period that ended before the instant, if any.
    let ended = periods
        .iter()
        .filter_map(|p| p.to_us.map(|to| (to, p)))
        .filter(|(to, _)| *to <= at)
        .max_by_key(|(to, _)| *to);
    let decision = match ended {
        Some((to, _)) => release_decision(s, c, to).await?,
        None => None,
    };
    Ok(AsOf::Pool {
        since: ended.map(|(to, _)| local(cal, to)),
        decision,
    })
}

/// The rule and policy version of the event at `version` of the customer's stream, when
/// the service reads the event store.
async fn stored_decision(
    s: &AppState,
    c: &CustomerRow,
    version: u64,
) -> Result<Option<Decision>, Problem> {
    let Some(events) = &s.security.events else {
        return Ok(None);
    };
    let stream = format!("customer-{}", c.customer_id);
    let found = events
        .read_stream_range(&stream, version.saturating_sub(1), version)
        .await
        .map_err(Problem::store)?;
    Ok(found.into_iter().next().and_then(|e| decision(&e)))
}

/// The release that put the customer in the pool at `to_us` (the customer's stream is
/// read: tens of events, not the log).
async fn release_decision(
    s: &AppState,
    c: &CustomerRow,
    to_us: i64,
) -> Result<Option<Decision>, Problem> {
    let Some(events) = &s.security.events else {
        return Ok(None);
    };
    let stream = format!("customer-{}", c.customer_id);
    let all = events
        .read_stream_range(&stream, 0, u64::MAX)
        .await
        .map_err(Problem::store)?;
    Ok(all
        .iter()
        .rev()
        .filter(|e| e.event_type == "ReleasedToPool")
        .find(|e| e.metadata.occurred_at.timestamp_micros() <= to_us)
        .and_then(decision))
}

/// What a stored ownership event says about why it happened.
fn decision(e: &crm_eventstore::RecordedEvent) -> Option<Decision> {
    let event = CustomerEvent::decode(&e.event_type, e.schema_version, &e.payload).ok()?;
    let (reason, by, rule, policy_version) = match event {
        CustomerEvent::OwnerAssigned(a) => (
            a.reason,
            a.assigned_by.to_string(),
            a.policy.as_ref().map(|p| p.rule.clone()),
            a.policy.map(|p| p.policy_version),
        ),
        CustomerEvent::OwnershipTransferred(t) => {
            (t.reason, t.transferred_by.to_string(), None, None)
        }
        CustomerEvent::ReleasedToPool(r) => (
            r.reason,
            r.released_by.to_string(),
            r.rule.as_ref().map(|p| p.cause.as_str().to_string()),
            r.rule.map(|p| p.policy_version),
        ),
        CustomerEvent::ClaimedFromPool(c) => (String::new(), c.manager_id.to_string(), None, None),
        _ => return None,
    };
    Some(Decision {
        event: e.event_type.clone(),
        event_id: e.event_id.to_string(),
        reason,
        by,
        rule,
        policy_version,
    })
}

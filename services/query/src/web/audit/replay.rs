//! Ownership replayed from the event store: a customer's every change of owner from its
//! own stream (`crm_audit::customer_history`, one stream), limited to a period and with
//! the owner as of an instant; a manager's customers over a period
//! (`crm_audit::manager_history`, the whole global log).

use std::collections::HashMap;
use std::time::Instant;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::Utc;
use crm_audit::OwnershipEntry;
use crm_domain::{CustomerId, ManagerId};
use crm_projections::calendar::Calendar;
use serde::Deserialize;

use super::{
    audit_store, input_s, instant_param, last_days, local_s, manager_options, query_of, utc,
    ManagerOption,
};
use crate::audit::{audit_failed, path_id};
use crate::problem::Problem;
use crate::web::i18n::Msg;
use crate::web::view::{urlencode, Chrome, Nav, Viewer};
use crate::AppState;

#[derive(Deserialize)]
pub(crate) struct ReplayQuery {
    /// The form's customer (`/ui/audit/customers`) or manager (`/ui/audit/managers`).
    id: Option<String>,
    manager: Option<String>,
    from: Option<String>,
    to: Option<String>,
    as_of: Option<String>,
}

fn given(v: &Option<String>) -> &str {
    v.as_deref().map(str::trim).unwrap_or_default()
}

/// A manager as a cell shows them: name, id, a link to their replay.
pub(crate) struct OwnerRef {
    pub id: String,
    pub name: String,
    pub href: String,
}

/// A customer as a list shows them: id, a link to their replay and to their 360.
pub(crate) struct CustomerRef {
    pub id: String,
    pub replay: String,
    pub page: String,
}

fn customer_ref(id: &str) -> CustomerRef {
    CustomerRef {
        replay: format!("/ui/audit/customers/{}", urlencode(id)),
        page: format!("/ui/customers/{}", urlencode(id)),
        id: id.to_string(),
    }
}

/// One change of owner, as the tables show it.
pub(crate) struct EntryLine {
    pub at: String,
    pub event: String,
    pub customer: CustomerRef,
    pub previous: Option<OwnerRef>,
    /// `None`: to the pool.
    pub new: Option<OwnerRef>,
    pub actor: String,
    pub reason: String,
    pub policy_version: Option<u32>,
    pub rule: Option<String>,
    pub method: Option<String>,
    pub pool_rule: Option<String>,
    pub due_at: Option<String>,
    pub command_id: String,
    pub event_id: String,
    pub stream_version: u64,
    pub position: String,
}

/// Names of managers by id (from the read models; the id when unknown).
struct Names(HashMap<String, String>);

impl Names {
    async fn read(s: &AppState) -> Result<Self, Problem> {
        Ok(Names(crate::web::ownership::manager_names(s).await?))
    }

    fn owner(&self, id: Option<ManagerId>) -> Option<OwnerRef> {
        id.map(|id| self.manager(id.to_string()))
    }

    fn manager(&self, id: String) -> OwnerRef {
        OwnerRef {
            name: self.0.get(&id).cloned().unwrap_or_else(|| id.clone()),
            href: format!("/ui/audit/managers/{}", urlencode(&id)),
            id,
        }
    }
}

fn entry_line(s: &AppState, names: &Names, e: &OwnershipEntry) -> EntryLine {
    let cal = &s.calendar;
    let d = e.decision.as_ref();
    EntryLine {
        at: local_s(cal, e.at),
        event: e.event_type.clone(),
        customer: customer_ref(&e.customer_id.to_string()),
        previous: names.owner(e.previous_owner),
        new: names.owner(e.new_owner),
        actor: e.actor.clone(),
        reason: e.reason.clone().unwrap_or_default(),
        policy_version: d.map(|d| d.policy_version),
        rule: d.and_then(|d| d.rule.clone()),
        method: d.and_then(|d| d.method.clone()),
        pool_rule: d.and_then(|d| d.pool_rule.clone()),
        due_at: d.and_then(|d| d.due_at).map(|t| local_s(cal, t)),
        command_id: e.command_id.to_string(),
        event_id: e.event_id.to_string(),
        stream_version: e.stream_version,
        position: e.position.clone(),
    }
}

/// `/ui/audit/customers?id=…`: the landing page's form, sent on to the replay's address.
pub(crate) async fn customer_form(
    State(s): State<AppState>,
    viewer: Viewer,
    Query(q): Query<ReplayQuery>,
) -> Response {
    let to = audit_store(&s, &viewer).and_then(|_| {
        let id = given(&q.id);
        if id.is_empty() {
            return Err(Problem::bad("give the customer's id"));
        }
        let query = query_of(&[
            ("from", given(&q.from)),
            ("to", given(&q.to)),
            ("as_of", given(&q.as_of)),
        ]);
        Ok(format!("/ui/audit/customers/{}{query}", urlencode(id)))
    });
    match to {
        Ok(to) => Redirect::to(&to).into_response(),
        Err(p) => viewer.refusal(&s, p),
    }
}

/// What the as-of control answers.
pub(crate) struct AsOfLine {
    /// The instant, local.
    pub at: String,
    pub owner: Option<OwnerRef>,
    /// The change that made them owner (or sent the customer to the pool).
    pub since: Option<EntryLine>,
}

#[derive(Template)]
#[template(path = "audit_customer.html")]
pub(crate) struct CustomerReplayPage {
    pub chrome: Chrome,
    pub customer: CustomerRef,
    pub from_input: String,
    pub to_input: String,
    pub as_of_input: String,
    /// The period asked, local (`None`: the whole history).
    pub period: Option<(String, String)>,
    /// With a period: the owner just before its start.
    pub at_start: Option<Option<OwnerRef>>,
    pub as_of: Option<AsOfLine>,
    pub caption: Msg,
    pub lines: Vec<EntryLine>,
    pub show_customer: bool,
}

/// `/ui/audit/customers/{id}?from=&to=&as_of=`: every change of the customer's owner,
/// replayed from its stream.
pub(crate) async fn customer(
    State(s): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
    Query(q): Query<ReplayQuery>,
) -> Response {
    match build_customer(&s, &viewer, &id, &q).await {
        Ok(page) => viewer.render(StatusCode::OK, &page),
        Err(p) => viewer.refusal(&s, p),
    }
}

async fn build_customer(
    s: &AppState,
    viewer: &Viewer,
    id: &str,
    q: &ReplayQuery,
) -> Result<CustomerReplayPage, Problem> {
    let store = audit_store(s, viewer)?;
    let cal = &s.calendar;
    let customer: CustomerId = path_id(id, "customer")?;
    let from = instant_param(cal, "from", q.from.as_deref())?;
    let to = instant_param(cal, "to", q.to.as_deref())?;
    let at = instant_param(cal, "as_of", q.as_of.as_deref())?;
    if let (Some(f), Some(t)) = (from, to) {
        if f >= t {
            return Err(Problem::bad("from must be before to"));
        }
    }
    let entries = crm_audit::customer_history(store, customer)
        .await
        .map_err(audit_failed)?;
    let names = Names::read(s).await?;
    let as_of = match at {
        Some(at) => Some(as_of_line(s, &names, &entries, at)?),
        None => None,
    };
    let inside = |e: &&OwnershipEntry| {
        let t = e.at.timestamp_micros();
        from.is_none_or(|f| t >= f) && to.is_none_or(|to| t < to)
    };
    let at_start = from.map(|f| {
        let before = entries
            .iter()
            .take_while(|e| e.at.timestamp_micros() < f)
            .last();
        names.owner(before.and_then(|e| e.new_owner))
    });
    let show = |v: Option<i64>| v.map(|v| shown(cal, v)).unwrap_or_else(|| "…".into());
    let period = (from.is_some() || to.is_some()).then(|| (show(from), show(to)));
    let value = |v: Option<i64>| v.map(|v| input_s(cal, v)).unwrap_or_default();
    let query = query_of(&[
        ("from", &value(from)),
        ("to", &value(to)),
        ("as_of", &value(at)),
    ]);
    let customer_id = customer.to_string();
    Ok(CustomerReplayPage {
        chrome: viewer.chrome(
            s,
            Nav::Audit,
            &format!("/ui/audit/customers/{}{query}", urlencode(&customer_id)),
        ),
        customer: customer_ref(&customer_id),
        from_input: value(from),
        to_input: value(to),
        as_of_input: value(at),
        caption: if period.is_some() {
            Msg::ChangesInPeriod
        } else {
            Msg::ChangesOfOwner
        },
        period,
        at_start,
        as_of,
        lines: entries
            .iter()
            .filter(inside)
            .map(|e| entry_line(s, &names, e))
            .collect(),
        show_customer: false,
    })
}

/// An instant as the page shows it: `2026-11-25 09:30` (with seconds when it has some).
fn shown(cal: &Calendar, us: i64) -> String {
    input_s(cal, us).replace('T', " ")
}

/// The owner as of `at` (`crm_audit::owner_as_of`: exact to the event).
fn as_of_line(
    s: &AppState,
    names: &Names,
    entries: &[OwnershipEntry],
    at: i64,
) -> Result<AsOfLine, Problem> {
    let answer = crm_audit::owner_as_of(entries, utc(at)?);
    Ok(AsOfLine {
        at: shown(&s.calendar, at),
        owner: names.owner(answer.owner),
        since: answer.since.map(|e| entry_line(s, names, &e)),
    })
}

/// `/ui/audit/managers?manager=…`: the form, sent on to the replay's address.
pub(crate) async fn manager_form(
    State(s): State<AppState>,
    viewer: Viewer,
    Query(q): Query<ReplayQuery>,
) -> Response {
    let to = audit_store(&s, &viewer).and_then(|_| {
        let id = given(&q.manager);
        if id.is_empty() {
            return Err(Problem::bad("choose a manager"));
        }
        let query = query_of(&[("from", given(&q.from)), ("to", given(&q.to))]);
        Ok(format!("/ui/audit/managers/{}{query}", urlencode(id)))
    });
    match to {
        Ok(to) => Redirect::to(&to).into_response(),
        Err(p) => viewer.refusal(&s, p),
    }
}

#[derive(Template)]
#[template(path = "audit_manager.html")]
pub(crate) struct ManagerReplayPage {
    pub chrome: Chrome,
    pub managers: Vec<ManagerOption>,
    pub manager: OwnerRef,
    /// The form: the manager chosen, the period.
    pub selected: String,
    pub m_from: String,
    pub m_to: String,
    /// The period replayed, local.
    pub period: (String, String),
    pub held_before: Vec<CustomerRef>,
    pub caption: Msg,
    pub lines: Vec<EntryLine>,
    pub held_at_end: Vec<CustomerRef>,
    pub events_read: u64,
    pub took_ms: u128,
    pub show_customer: bool,
}

/// `/ui/audit/managers/{id}?from=&to=`: the manager's customers over `[from, to)` (by
/// default the last 7 local days), replayed from the whole global log.
pub(crate) async fn manager(
    State(s): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
    Query(q): Query<ReplayQuery>,
) -> Response {
    match build_manager(&s, &viewer, &id, &q).await {
        Ok(page) => viewer.render(StatusCode::OK, &page),
        Err(p) => viewer.refusal(&s, p),
    }
}

async fn build_manager(
    s: &AppState,
    viewer: &Viewer,
    id: &str,
    q: &ReplayQuery,
) -> Result<ManagerReplayPage, Problem> {
    let store = audit_store(s, viewer)?;
    let cal = &s.calendar;
    let manager: ManagerId = path_id(id, "manager")?;
    let (week_from, week_to) = last_days(cal, Utc::now().timestamp_micros(), 7);
    let asked_to = instant_param(cal, "to", q.to.as_deref())?;
    let to = asked_to.unwrap_or(week_to);
    let from = match instant_param(cal, "from", q.from.as_deref())? {
        Some(from) => from,
        // A week before the end asked, or the last 7 days.
        None if asked_to.is_some() => to - 7 * 86_400_000_000,
        None => week_from,
    };
    if from >= to {
        return Err(Problem::bad("from must be before to"));
    }
    let started = Instant::now();
    let history = crm_audit::manager_history(store, manager, utc(from)?, utc(to)?, &mut |_| {})
        .await
        .map_err(audit_failed)?;
    let took_ms = started.elapsed().as_millis();
    let names = Names::read(s).await?;
    let refs = |ids: &[CustomerId]| ids.iter().map(|c| customer_ref(&c.to_string())).collect();
    let (m_from, m_to) = (input_s(cal, from), input_s(cal, to));
    let manager = names.manager(manager.to_string());
    let query = query_of(&[("from", &m_from), ("to", &m_to)]);
    Ok(ManagerReplayPage {
        chrome: viewer.chrome(
            s,
            Nav::Audit,
            &format!("/ui/audit/managers/{}{query}", urlencode(&manager.id)),
        ),
        managers: manager_options(s).await?,
        period: (shown(cal, from), shown(cal, to)),
        selected: manager.id.clone(),
        manager,
        m_from,
        m_to,
        held_before: refs(&history.held_before),
        caption: Msg::ChangesInPeriod,
        lines: history
            .entries
            .iter()
            .map(|e| entry_line(s, &names, e))
            .collect(),
        held_at_end: refs(&history.held_at_end),
        events_read: history.events_read,
        took_ms,
        show_customer: true,
    })
}

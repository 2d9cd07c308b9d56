//! Complaints: the open ones counted by team, severity and SLA state (due, warned,
//! breached, escalated: `crm_projections::queries::complaints` has the rules), a page of
//! them at a time, and one complaint with its history. Complaints are customer data: a
//! manager sees those of the customers they may see (a team lead: the team's), scoped as
//! the customer list is; analysts see customers' names masked; names shown are read
//! records, as everywhere.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::Utc;
use crm_projections::queries::complaints::{
    After, ComplaintCount, ComplaintFilter, ComplaintRow, SlaState, Status,
};
use serde::Deserialize;

use super::format::{local, maybe_local};
use super::i18n::Msg;
use super::slow::Earlier;
use super::view::{urlencode, Chrome, Nav, Viewer};
use crate::caller::{Caller, CUSTOMER_READERS};
use crate::problem::Problem;
use crate::AppState;

/// Complaints on a page.
const PAGE: i64 = 50;

const SEVERITIES: [&str; 4] = ["critical", "high", "normal", "low"];

/// The words of a severity.
pub(crate) fn severity_msg(s: &str) -> Option<Msg> {
    Some(match s {
        "critical" => Msg::SevCritical,
        "high" => Msg::SevHigh,
        "normal" => Msg::SevNormal,
        "low" => Msg::SevLow,
        _ => return None,
    })
}

/// The words of an SLA state, and of what it means.
pub(crate) fn state_msgs(s: SlaState) -> (Msg, Msg) {
    match s {
        SlaState::Due => (Msg::SlaDue, Msg::SlaDueHelp),
        SlaState::Warned => (Msg::SlaWarned, Msg::SlaWarnedHelp),
        SlaState::Breached => (Msg::SlaBreached, Msg::SlaBreachedHelp),
        SlaState::Escalated => (Msg::SlaEscalated, Msg::SlaEscalatedHelp),
    }
}

#[derive(Deserialize)]
pub(crate) struct ComplaintsQuery {
    team: Option<String>,
    severity: Option<String>,
    state: Option<String>,
    after: Option<String>,
}

/// The filter asked for, checked, then scoped to the caller as the customer list is
/// (`reads::customers`): a manager's own customers, a team lead's team's, whatever was
/// asked.
fn filter(caller: &Caller, q: &ComplaintsQuery) -> Result<ComplaintFilter, Problem> {
    let given = |v: &Option<String>| v.clone().filter(|v| !v.is_empty());
    let severity = given(&q.severity);
    if let Some(s) = &severity {
        if !SEVERITIES.contains(&s.as_str()) {
            return Err(Problem::bad(format!(
                "severity {s:?} is not critical, high, normal or low"
            )));
        }
    }
    let state = match given(&q.state) {
        Some(s) => Some(s.parse::<SlaState>().map_err(Problem::bad)?),
        None => None,
    };
    let f = ComplaintFilter {
        team: given(&q.team),
        severity,
        status: Some(Status::Open),
        state,
        ..Default::default()
    };
    // A manager's complaints are those of their book, as the customer list's.
    Ok(crate::complaints::scoped(caller, f))
}

/// One team and severity: its open complaints by state.
pub(crate) struct CountLine {
    pub team: String,
    pub severity: Msg,
    pub by_state: [i64; 4],
    pub total: i64,
}

/// An open complaint in the list.
pub(crate) struct ComplaintLine {
    pub id: String,
    pub href: String,
    pub customer_id: String,
    pub customer_href: String,
    pub customer_name: String,
    pub severity: Msg,
    pub logged: String,
    pub state: &'static str,
    pub state_msg: Msg,
    pub owner: Option<String>,
    pub owner_name: String,
}

#[derive(Template)]
#[template(path = "complaints.html")]
pub(crate) struct ComplaintsPage {
    pub chrome: Chrome,
    pub teams: Vec<String>,
    pub severities: Vec<(&'static str, Msg)>,
    pub states: Vec<(&'static str, Msg, Msg)>,
    pub team: String,
    pub severity: String,
    pub state: String,
    pub counts: Vec<CountLine>,
    pub totals: [i64; 4],
    pub total: i64,
    pub lines: Vec<ComplaintLine>,
    pub next: Option<String>,
    pub first: Option<String>,
    /// The counts are still being counted (a large book).
    pub counting: bool,
    /// When they were counted, when not for this visit.
    pub counted: Option<Earlier>,
}

pub(crate) async fn list(
    State(s): State<AppState>,
    viewer: Viewer,
    Query(q): Query<ComplaintsQuery>,
) -> Response {
    match build_list(&s, &viewer, &q).await {
        Ok(page) => viewer.render(StatusCode::OK, &page),
        Err(p) => viewer.refusal(&s, p),
    }
}

/// The open complaints counted (through [`super::slow`]: every open complaint is judged,
/// hundreds of thousands at W2's size); with when they were counted, when not for this
/// visit; `None` while they are being counted.
async fn counts(
    s: &AppState,
    f: &ComplaintFilter,
) -> Result<(Option<Arc<Vec<ComplaintCount>>>, Option<Earlier>), Problem> {
    let store = s.store.clone();
    let filter = f.clone();
    let answer = s
        .slow
        .complaint_counts
        .get(f.clone(), move || async move {
            let now = Utc::now().timestamp_micros();
            Ok(store.open_complaint_counts(&filter, now).await?)
        })
        .await?;
    Ok(answer.parts(&s.calendar))
}

async fn build_list(
    s: &AppState,
    viewer: &Viewer,
    q: &ComplaintsQuery,
) -> Result<ComplaintsPage, Problem> {
    let caller = &viewer.caller;
    caller.allow(CUSTOMER_READERS)?;
    let f = filter(caller, q)?;
    let after = q.after.clone().unwrap_or_default();
    let cursor: Option<After> = q
        .after
        .as_deref()
        .filter(|a| !a.is_empty())
        .map(str::parse)
        .transpose()
        .map_err(Problem::bad)?;
    let now = Utc::now().timestamp_micros();
    // The list while the counts are waited for: a first visit waits for the longer of
    // the two, not both.
    let (counted, rows) = tokio::join!(
        counts(s, &f),
        s.store.open_complaints(&f, now, cursor.as_ref(), PAGE)
    );
    let ((counts, counted), mut rows) = (counted?, rows?);
    let counting = counts.is_none();
    crate::complaints::reveal(s, caller, "workbench.complaints", &mut rows).await?;
    let names = super::ownership::manager_names(s).await?;
    let teams: BTreeSet<String> = s
        .store
        .managers()
        .await?
        .into_iter()
        .map(|m| m.team)
        .collect();
    let given = |v: &Option<String>| v.clone().unwrap_or_default();
    let base = format!(
        "/ui/complaints?team={}&severity={}&state={}&",
        urlencode(&given(&q.team)),
        urlencode(&given(&q.severity)),
        urlencode(&given(&q.state))
    );
    let next = (rows.len() as i64 == PAGE)
        .then(|| rows.last())
        .flatten()
        .map(|k| format!("{base}after={}", urlencode(&After::of(k).to_string())));
    let (counts, totals) = count_lines(counts.as_deref().map_or(&[], Vec::as_slice));
    Ok(ComplaintsPage {
        chrome: viewer.chrome(
            s,
            Nav::Complaints,
            &format!("{base}after={}", urlencode(&after)),
        ),
        teams: teams.into_iter().chain(["pool".to_string()]).collect(),
        severities: SEVERITIES
            .iter()
            .filter_map(|v| Some((*v, severity_msg(v)?)))
            .collect(),
        states: SlaState::ALL
            .iter()
            .map(|st| (st.as_str(), state_msgs(*st).0, state_msgs(*st).1))
            .collect(),
        team: given(&q.team),
        severity: given(&q.severity),
        state: given(&q.state),
        total: totals.iter().sum(),
        counts,
        totals,
        lines: rows
            .into_iter()
            .map(|k| complaint_line(s, &names, k))
            .collect(),
        next,
        first: (!after.is_empty()).then(|| base.trim_end_matches(['?', '&']).to_string()),
        counting,
        counted,
    })
}

/// The counts by team and severity (severities in their order), and per state in all.
fn count_lines(counts: &[ComplaintCount]) -> (Vec<CountLine>, [i64; 4]) {
    let rank = |s: &str| {
        SEVERITIES
            .iter()
            .position(|v| *v == s)
            .unwrap_or(SEVERITIES.len())
    };
    let mut lines: BTreeMap<(String, usize, String), [i64; 4]> = BTreeMap::new();
    let mut totals = [0; 4];
    for c in counts {
        let Ok(state) = c.sla_state.parse::<SlaState>() else {
            continue;
        };
        let i = state as usize;
        let key = (c.team.clone(), rank(&c.severity), c.severity.clone());
        lines.entry(key).or_default()[i] += c.complaints;
        totals[i] += c.complaints;
    }
    let lines = lines
        .into_iter()
        .map(|((team, _, severity), by_state)| CountLine {
            team,
            severity: severity_msg(&severity).unwrap_or(Msg::Empty),
            total: by_state.iter().sum(),
            by_state,
        })
        .collect();
    (lines, totals)
}

fn complaint_line(s: &AppState, names: &HashMap<String, String>, k: ComplaintRow) -> ComplaintLine {
    let state = k.sla_state.unwrap_or(SlaState::Due);
    let c = k.customer;
    ComplaintLine {
        href: format!("/ui/complaints/{}", urlencode(&k.complaint_id)),
        id: k.complaint_id,
        customer_href: format!("/ui/customers/{}", urlencode(&c.customer_id)),
        customer_id: c.customer_id,
        customer_name: c.display_name,
        severity: severity_msg(&k.severity).unwrap_or(Msg::Empty),
        logged: local(&s.calendar, k.logged_at_us),
        state: state.as_str(),
        state_msg: state_msgs(state).0,
        owner_name: c
            .owner_id
            .as_deref()
            .map(|o| names.get(o).cloned().unwrap_or_else(|| o.to_string()))
            .unwrap_or_default(),
        owner: c.owner_id,
    }
}

/// One event of the complaint's history.
pub(crate) struct HistoryLine {
    pub when: String,
    pub event: String,
    pub actor: String,
    pub summary: String,
}

#[derive(Template)]
#[template(path = "complaint.html")]
pub(crate) struct ComplaintPage {
    pub chrome: Chrome,
    pub k: ComplaintRow,
    pub customer_href: String,
    pub masked: bool,
    pub severity: Msg,
    pub status: Msg,
    pub state: Option<(&'static str, Msg)>,
    pub logged: String,
    pub first_response_due: String,
    pub first_response_after: String,
    pub resolution_due: String,
    pub owner_then: String,
    pub owner_now: String,
    /// `None`: the service has no event store to read it from.
    pub history: Option<Vec<HistoryLine>>,
}

pub(crate) async fn page(
    State(s): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Response {
    match build_page(&s, &viewer, &id).await {
        Ok(page) => viewer.render(StatusCode::OK, &page),
        Err(p) => viewer.refusal(&s, p),
    }
}

async fn build_page(s: &AppState, viewer: &Viewer, id: &str) -> Result<ComplaintPage, Problem> {
    let caller = &viewer.caller;
    let k = crate::complaints::visible(s, caller, id).await?;
    let history = crate::complaints::history(s, &k).await?.map(|events| {
        events
            .into_iter()
            .map(|e| HistoryLine {
                when: local(&s.calendar, e.occurred_at_us),
                event: e.event_type,
                actor: e.actor,
                summary: e.summary,
            })
            .collect()
    });
    let mut rows = vec![k];
    crate::complaints::reveal(s, caller, "workbench.complaint", &mut rows).await?;
    let k = rows.remove(0);
    let names = super::ownership::manager_names(s).await?;
    let named = |o: &Option<String>| {
        o.as_deref()
            .map(|o| names.get(o).cloned().unwrap_or_else(|| o.to_string()))
            .unwrap_or_default()
    };
    let cal = &s.calendar;
    let status = match (k.closed_at_us, k.resolved_at_us) {
        (Some(_), _) => Msg::StatusClosed,
        (None, Some(_)) => Msg::StatusResolved,
        _ => Msg::StatusOpen,
    };
    Ok(ComplaintPage {
        chrome: viewer.chrome(
            s,
            Nav::Complaints,
            &format!("/ui/complaints/{}", urlencode(id)),
        ),
        customer_href: format!("/ui/customers/{}", urlencode(&k.customer.customer_id)),
        masked: caller.masked(),
        severity: severity_msg(&k.severity).unwrap_or(Msg::Empty),
        status,
        state: k.sla_state.map(|st| (st.as_str(), state_msgs(st).0)),
        logged: local(cal, k.logged_at_us),
        first_response_due: maybe_local(cal, k.first_response_due_us),
        first_response_after: k
            .first_response_s
            .map(|secs| {
                format!(
                    "{:.1} {}",
                    secs as f64 / 60.0,
                    viewer.lang.t(Msg::MinutesShort)
                )
            })
            .unwrap_or_default(),
        resolution_due: maybe_local(cal, k.resolution_due_us),
        owner_then: named(&k.logged_owner_id),
        owner_now: named(&k.customer.owner_id),
        history,
        k,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crm_auth::{Principal, Role};

    fn manager(team: Option<&str>) -> Caller {
        Caller(Some(Principal {
            subject: "li.wei".into(),
            role: Role::Manager,
            manager_id: Some("m-1".into()),
            team: team.map(Into::into),
            commands: Vec::new(),
            acts_for_persons: false,
        }))
    }

    fn q(team: &str, severity: &str, state: &str) -> ComplaintsQuery {
        let v = |s: &str| (!s.is_empty()).then(|| s.to_string());
        ComplaintsQuery {
            team: v(team),
            severity: v(severity),
            state: v(state),
            after: None,
        }
    }

    #[test]
    fn a_manager_is_scoped_whatever_the_filter_asks() {
        let f = filter(&manager(None), &q("north-2", "high", "")).unwrap();
        assert_eq!(f.owner_id.as_deref(), Some("m-1"));
        assert_eq!(f.team.as_deref(), Some("north-2"), "narrows, never widens");
        let f = filter(&manager(Some("east-1")), &q("north-2", "", "")).unwrap();
        assert_eq!(
            (f.owner_id, f.team.as_deref(), f.team_scope.as_deref()),
            (None, Some("north-2"), Some("east-1")),
            "a team lead's scope is the team, apart from the filter (narrows, never widens)"
        );
        let f = filter(&Caller(None), &q("", "", "warned")).unwrap();
        assert_eq!(f.state, Some(SlaState::Warned));
        assert!(filter(&Caller(None), &q("", "urgent", "")).is_err());
        assert!(filter(&Caller(None), &q("", "", "late")).is_err());
    }

    #[test]
    fn counts_are_laid_out_by_team_and_severity() {
        let c = |team: &str, severity: &str, state: &str, n| ComplaintCount {
            team: team.into(),
            severity: severity.into(),
            sla_state: state.into(),
            complaints: n,
        };
        let (lines, totals) = count_lines(&[
            c("east-1", "low", "due", 2),
            c("east-1", "critical", "breached", 1),
            c("east-1", "critical", "escalated", 3),
            c("pool", "normal", "warned", 1),
        ]);
        let got: Vec<(&str, Msg, [i64; 4], i64)> = lines
            .iter()
            .map(|l| (l.team.as_str(), l.severity, l.by_state, l.total))
            .collect();
        assert_eq!(
            got,
            vec![
                ("east-1", Msg::SevCritical, [0, 0, 1, 3], 4),
                ("east-1", Msg::SevLow, [2, 0, 0, 0], 2),
                ("pool", Msg::SevNormal, [0, 1, 0, 0], 1),
            ]
        );
        assert_eq!(totals, [2, 1, 1, 3]);
    }
}

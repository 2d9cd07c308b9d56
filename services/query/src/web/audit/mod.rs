//! The audit pages (审计): ownership replayed from the event store — one customer's from
//! its own stream, one manager's over a period from the whole global log — the global
//! checkpoints and whether their chain links, and the record of who read which customer's
//! personal data. Auditors and administrators only, as the API's audit routes (`AUDITORS`,
//! the same 403); every answer is read from the event store (`crm_audit`), never from the
//! read models, and without an event store the pages answer the API's 503.

mod reads;
mod replay;
mod seal;

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Days, NaiveDate, Utc};
use crm_eventstore::{AnyEventStore, Seals};
use crm_projections::calendar::Calendar;

use super::format::parse_instant;
use super::i18n::Msg;
use super::view::{urlencode, Chrome, Nav, Viewer};
use crate::caller::AUDITORS;
use crate::problem::Problem;
use crate::AppState;

pub(crate) use reads::reads;
pub(crate) use replay::{customer, customer_form, manager, manager_form};
pub(crate) use seal::checkpoints;

/// The event store for a caller allowed to audit: the API's 403 for other roles, its 503
/// when the service reads no event store.
fn audit_store<'a>(s: &'a AppState, viewer: &Viewer) -> Result<&'a AnyEventStore, Problem> {
    viewer.caller.allow(AUDITORS)?;
    crate::audit::audit_store(s)
}

/// `2026-11-25 09:30:15` in the calendar's zone: audit answers to the second.
fn local_s(cal: &Calendar, t: DateTime<Utc>) -> String {
    t.with_timezone(&cal.zone())
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

/// The value of a `datetime-local` control (step 1 s) for an instant: to the minute, or
/// to the second when it has seconds.
fn input_s(cal: &Calendar, us: i64) -> String {
    let Some(t) = DateTime::<Utc>::from_timestamp_micros(us) else {
        return String::new();
    };
    let t = t.with_timezone(&cal.zone());
    if chrono::Timelike::second(&t) == 0 {
        t.format("%Y-%m-%dT%H:%M").to_string()
    } else {
        t.format("%Y-%m-%dT%H:%M:%S").to_string()
    }
}

/// A bound of a period or an instant given to a page: a local date (its first instant),
/// a local date and time, or RFC 3339. `None` when not given.
fn instant_param(cal: &Calendar, name: &str, v: Option<&str>) -> Result<Option<i64>, Problem> {
    let Some(v) = v.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    if let Ok(d) = NaiveDate::parse_from_str(v, "%Y-%m-%d") {
        return Ok(Some(cal.start_of(d)));
    }
    parse_instant(cal, v)
        .map(Some)
        .map_err(|e| Problem::bad(format!("{name}: {e}")))
}

fn utc(us: i64) -> Result<DateTime<Utc>, Problem> {
    DateTime::<Utc>::from_timestamp_micros(us)
        .ok_or_else(|| Problem::bad("an instant is out of range"))
}

/// `[from, to)` of the last `days` local days, today included.
fn last_days(cal: &Calendar, now_us: i64, days: u64) -> (i64, i64) {
    let today = cal.date(now_us);
    let from = today.checked_sub_days(Days::new(days - 1)).unwrap_or(today);
    let to = today.checked_add_days(Days::new(1)).unwrap_or(today);
    (cal.start_of(from), cal.start_of(to))
}

/// `?a=1&b=2` of the parameters given (empty ones left out), or nothing.
fn query_of(params: &[(&str, &str)]) -> String {
    let given: Vec<String> = params
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={}", urlencode(v)))
        .collect();
    if given.is_empty() {
        String::new()
    } else {
        format!("?{}", given.join("&"))
    }
}

/// A manager of the select, by name.
pub(crate) struct ManagerOption {
    pub id: String,
    pub label: String,
}

/// The managers (from the read models: names only), by name.
async fn manager_options(s: &AppState) -> Result<Vec<ManagerOption>, Problem> {
    let mut managers = s.store.managers().await?;
    managers.sort_by(|a, b| a.name.cmp(&b.name).then(a.manager_id.cmp(&b.manager_id)));
    Ok(managers
        .into_iter()
        .map(|m| ManagerOption {
            // Names repeat across teams: the team tells them apart (unless the name
            // already says it).
            label: if m.name.contains(&m.team) {
                m.name
            } else {
                format!("{} ({})", m.name, m.team)
            },
            id: m.manager_id,
        })
        .collect())
}

/// The last checkpoint as the landing page sums it up.
pub(crate) struct LastCheckpoint {
    pub seq: u64,
    pub through: String,
    pub events: u64,
    pub hash: String,
    pub sealed_at: String,
}

/// The last verification recorded by `crm audit verify` (every chain and checkpoint over
/// the whole log), as the audit pages show it.
pub(crate) struct LastVerification {
    pub number: u64,
    pub at: String,
    pub actor: String,
    pub ok: bool,
    pub events: u64,
    pub streams: u64,
    pub checkpoints: u64,
    pub through: String,
    pub problems: u64,
    pub first_problem: Option<String>,
    pub took_s: String,
}

/// The last recorded verification, if any.
async fn last_verification(
    store: &AnyEventStore,
    cal: &Calendar,
) -> Result<Option<LastVerification>, Problem> {
    let last = crm_audit::verification::last(store)
        .await
        .map_err(Problem::store)?;
    Ok(last.map(|v| LastVerification {
        number: v.number,
        at: local_s(cal, v.at),
        actor: v.actor,
        ok: v.result.ok,
        events: v.result.events,
        streams: v.result.streams,
        checkpoints: v.result.checkpoints,
        through: v
            .result
            .through
            .map_or_else(|| "-".to_string(), |p| p.to_string()),
        problems: v.result.problems,
        first_problem: v.result.first_problem,
        took_s: format!("{:.1}", v.result.took_ms as f64 / 1000.0),
    }))
}

#[derive(Template)]
#[template(path = "audit.html")]
pub(crate) struct AuditPage {
    pub chrome: Chrome,
    pub managers: Vec<ManagerOption>,
    /// The manager form: no one chosen, the last 7 local days.
    pub selected: String,
    pub m_from: String,
    pub m_to: String,
    pub last: Option<LastCheckpoint>,
    pub verification: Option<LastVerification>,
}

/// `/ui/audit`: the four audits, each a form (or a summary and a link).
pub(crate) async fn page(State(s): State<AppState>, viewer: Viewer) -> Response {
    match build(&s, &viewer).await {
        Ok(page) => viewer.render(StatusCode::OK, &page),
        Err(p) => viewer.refusal(&s, p),
    }
}

async fn build(s: &AppState, viewer: &Viewer) -> Result<AuditPage, Problem> {
    let store = audit_store(s, viewer)?;
    let cal = &s.calendar;
    let last = store
        .last_global_checkpoint()
        .await
        .map_err(Problem::store)?
        .map(|cp| LastCheckpoint {
            seq: cp.seq,
            through: cp.through.to_string(),
            events: cp.event_count,
            hash: cp.hash.to_hex(),
            sealed_at: local_s(cal, cp.sealed_at),
        });
    let (from, to) = last_days(cal, Utc::now().timestamp_micros(), 7);
    Ok(AuditPage {
        chrome: viewer.chrome(s, Nav::Audit, "/ui/audit"),
        managers: manager_options(s).await?,
        selected: String::new(),
        m_from: input_s(cal, from),
        m_to: input_s(cal, to),
        last,
        verification: last_verification(store, cal).await?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cal() -> Calendar {
        "Asia/Shanghai".parse().unwrap()
    }

    fn us(rfc3339: &str) -> i64 {
        DateTime::parse_from_rfc3339(rfc3339)
            .unwrap()
            .timestamp_micros()
    }

    #[test]
    fn bounds_are_local_dates_or_instants() {
        let cal = cal();
        let midnight = us("2026-11-24T16:00:00Z");
        assert_eq!(
            instant_param(&cal, "from", Some("2026-11-25")).unwrap(),
            Some(midnight)
        );
        assert_eq!(
            instant_param(&cal, "from", Some("2026-11-25T09:30:15")).unwrap(),
            Some(us("2026-11-25T01:30:15Z"))
        );
        assert_eq!(
            instant_param(&cal, "to", Some("2026-11-25T01:30:00Z")).unwrap(),
            Some(us("2026-11-25T01:30:00Z"))
        );
        assert_eq!(instant_param(&cal, "to", Some(" ")).unwrap(), None);
        assert_eq!(instant_param(&cal, "to", None).unwrap(), None);
        let e = instant_param(&cal, "to", Some("last week")).unwrap_err();
        assert!(e.detail.starts_with("to: "), "{}", e.detail);
    }

    #[test]
    fn controls_show_seconds_only_when_there_are_some() {
        let cal = cal();
        assert_eq!(
            input_s(&cal, us("2026-11-25T01:30:00Z")),
            "2026-11-25T09:30"
        );
        assert_eq!(
            input_s(&cal, us("2026-11-25T01:30:15Z")),
            "2026-11-25T09:30:15"
        );
        let t = DateTime::parse_from_rfc3339("2026-11-25T17:30:15Z")
            .unwrap()
            .to_utc();
        assert_eq!(local_s(&cal, t), "2026-11-26 01:30:15");
    }

    #[test]
    fn the_last_seven_days_end_tonight() {
        let cal = cal();
        // 2026-12-06 23:30 in Beijing.
        let (from, to) = last_days(&cal, us("2026-12-06T15:30:00Z"), 7);
        assert_eq!(from, us("2026-11-29T16:00:00Z"));
        assert_eq!(to, us("2026-12-06T16:00:00Z"));
    }

    #[test]
    fn queries_leave_out_what_was_not_given() {
        assert_eq!(query_of(&[("from", ""), ("to", "")]), "");
        assert_eq!(
            query_of(&[("from", "2026-11-25T09:30"), ("to", ""), ("as_of", "a b")]),
            "?from=2026-11-25T09%3A30&as_of=a%20b"
        );
    }
}

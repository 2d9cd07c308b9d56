//! Who read which customer's personal data: the `PersonalDataRead` records of the event
//! store (`crm_audit::personal_data_reads`, a scan of the whole log), by customer, reader
//! and period; the newest 200 shown. A customer or a reader must be given, or a period of
//! at most 31 days, so that nobody scans years of reads by accident.

use std::time::Instant;

use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use crm_audit::{ReadFilter, ReadRecord};
use crm_domain::CustomerId;
use crm_projections::calendar::Calendar;
use serde::Deserialize;

use super::replay::CustomerRef;
use super::{audit_store, input_s, instant_param, local_s, query_of, utc};
use crate::problem::Problem;
use crate::web::i18n::Msg;
use crate::web::view::{urlencode, Chrome, Nav, Viewer};
use crate::AppState;

/// Records shown at most, newest first.
const SHOWN: usize = 200;
/// Customers of one record listed before the rest fold away.
const CUSTOMERS_OPEN: usize = 5;
/// The longest period searched without a customer or a reader.
const MAX_DAYS: i64 = 31;

#[derive(Deserialize, Default)]
pub(crate) struct ReadsQuery {
    customer: Option<String>,
    reader: Option<String>,
    from: Option<String>,
    to: Option<String>,
}

/// Why a search is not made.
#[derive(Debug)]
enum Refused {
    /// A parameter is wrong.
    Bad(Problem),
    /// Neither a customer nor a reader, and no period of at most 31 days.
    TooWide,
}

impl From<Problem> for Refused {
    fn from(p: Problem) -> Self {
        Refused::Bad(p)
    }
}

/// What was asked, checked: `Ok(None)` when nothing was.
fn asked(cal: &Calendar, q: &ReadsQuery) -> Result<Option<ReadFilter>, Refused> {
    let given = |v: &Option<String>| {
        v.as_deref()
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    };
    let customer = match given(&q.customer) {
        Some(c) => Some(
            c.parse::<CustomerId>()
                .map_err(|_| Problem::bad(format!("{c:?} is not a customer id")))?
                .to_string(),
        ),
        None => None,
    };
    // A bare id is a person's: records name readers `person:<id>`.
    let reader = given(&q.reader).map(|r| {
        if r.contains(':') {
            r
        } else {
            format!("person:{r}")
        }
    });
    let from = instant_param(cal, "from", q.from.as_deref())?;
    let to = instant_param(cal, "to", q.to.as_deref())?;
    if customer.is_none() && reader.is_none() && from.is_none() && to.is_none() {
        return Ok(None);
    }
    if let (Some(f), Some(t)) = (from, to) {
        if f >= t {
            return Err(Problem::bad("from must be before to").into());
        }
    }
    let short = matches!((from, to), (Some(f), Some(t)) if t - f <= MAX_DAYS * 86_400_000_000);
    if customer.is_none() && reader.is_none() && !short {
        return Err(Refused::TooWide);
    }
    Ok(Some(ReadFilter {
        customer,
        reader,
        from: from.map(utc).transpose()?,
        to: to.map(utc).transpose()?,
    }))
}

/// One record as the table shows it.
pub(crate) struct ReadLine {
    pub at: String,
    pub reader: String,
    pub role: String,
    pub route: String,
    /// The first customers (the one searched for first), the rest folded away.
    pub customers: Vec<CustomerRef>,
    pub more: Vec<CustomerRef>,
    pub fields: String,
    pub event_id: String,
}

fn read_line(cal: &Calendar, r: &ReadRecord, customer: Option<&str>) -> ReadLine {
    let mut ids: Vec<&String> = r.customers.iter().collect();
    if let Some(c) = customer {
        ids.sort_by_key(|id| id.as_str() != c);
    }
    let mut refs: Vec<CustomerRef> = ids
        .into_iter()
        .map(|id| CustomerRef {
            replay: format!("/ui/audit/customers/{}", urlencode(id)),
            page: format!("/ui/customers/{}", urlencode(id)),
            id: id.clone(),
        })
        .collect();
    let more = refs.split_off(refs.len().min(CUSTOMERS_OPEN));
    ReadLine {
        at: local_s(cal, r.at),
        reader: r.reader.clone(),
        role: r.role.clone(),
        route: r.route.clone(),
        customers: refs,
        more,
        fields: r.fields.join(", "),
        event_id: r.event_id.to_string(),
    }
}

/// The search's outcome.
pub(crate) struct Found {
    pub matched: usize,
    pub lines: Vec<ReadLine>,
    pub events_read: u64,
    pub took_ms: u128,
}

#[derive(Template)]
#[template(path = "audit_reads.html")]
pub(crate) struct ReadsPage {
    pub chrome: Chrome,
    pub customer: String,
    pub reader: String,
    pub from_input: String,
    pub to_input: String,
    /// Why the search was not made (the rule, in the page's language).
    pub error: Option<String>,
    pub found: Option<Found>,
    pub shown_max: usize,
}

/// `/ui/audit/reads?customer=&reader=&from=&to=`.
pub(crate) async fn reads(
    State(s): State<AppState>,
    viewer: Viewer,
    Query(q): Query<ReadsQuery>,
) -> Response {
    match build(&s, &viewer, &q).await {
        Ok((status, page)) => viewer.render(status, &page),
        Err(p) => viewer.refusal(&s, p),
    }
}

async fn build(
    s: &AppState,
    viewer: &Viewer,
    q: &ReadsQuery,
) -> Result<(StatusCode, ReadsPage), Problem> {
    let store = audit_store(s, viewer)?;
    let cal = &s.calendar;
    let shown = |v: &Option<String>| v.clone().unwrap_or_default();
    let mut page = ReadsPage {
        chrome: viewer.chrome(s, Nav::Audit, "/ui/audit/reads"),
        customer: shown(&q.customer),
        reader: shown(&q.reader),
        from_input: shown(&q.from),
        to_input: shown(&q.to),
        error: None,
        found: None,
        shown_max: SHOWN,
    };
    let filter = match asked(cal, q) {
        Ok(Some(f)) => f,
        Ok(None) => return Ok((StatusCode::OK, page)),
        Err(Refused::Bad(problem)) => return Err(problem),
        Err(Refused::TooWide) => {
            page.error = Some(viewer.lang.t(Msg::ReadsNeedFilter).to_string());
            return Ok((StatusCode::BAD_REQUEST, page));
        }
    };
    let value = |t: Option<chrono::DateTime<chrono::Utc>>| {
        t.map(|t| input_s(cal, t.timestamp_micros()))
            .unwrap_or_default()
    };
    page.from_input = value(filter.from);
    page.to_input = value(filter.to);
    page.chrome.here = format!(
        "/ui/audit/reads{}",
        query_of(&[
            ("customer", filter.customer.as_deref().unwrap_or_default()),
            ("reader", filter.reader.as_deref().unwrap_or_default()),
            ("from", &page.from_input),
            ("to", &page.to_input),
        ])
    );
    let started = Instant::now();
    let mut events_read = 0;
    let records = crm_audit::personal_data_reads(store, &filter, &mut |n| events_read = n)
        .await
        .map_err(Problem::store)?;
    page.found = Some(Found {
        matched: records.len(),
        lines: records
            .iter()
            .rev()
            .take(SHOWN)
            .map(|r| read_line(cal, r, filter.customer.as_deref()))
            .collect(),
        events_read,
        took_ms: started.elapsed().as_millis(),
    });
    Ok((StatusCode::OK, page))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(customer: &str, reader: &str, from: &str, to: &str) -> ReadsQuery {
        let v = |s: &str| (!s.is_empty()).then(|| s.to_string());
        ReadsQuery {
            customer: v(customer),
            reader: v(reader),
            from: v(from),
            to: v(to),
        }
    }

    #[test]
    fn a_search_needs_a_customer_a_reader_or_a_short_period() {
        let cal: Calendar = "Asia/Shanghai".parse().unwrap();
        let c = "01a2168e-366c-76b4-a02b-53952429568c";
        assert!(matches!(asked(&cal, &q("", "", "", "")), Ok(None)));
        let f = asked(&cal, &q(c, "", "", "")).unwrap().unwrap();
        assert_eq!(f.customer.as_deref(), Some(c));
        let f = asked(&cal, &q("", "li.wei", "2020-01-01", ""))
            .unwrap()
            .unwrap();
        assert_eq!(
            f.reader.as_deref(),
            Some("person:li.wei"),
            "a bare id is a person's"
        );
        assert!(f.from.is_some() && f.to.is_none());
        let f = asked(&cal, &q("", "service:x", "", "")).unwrap().unwrap();
        assert_eq!(f.reader.as_deref(), Some("service:x"));
        assert!(
            asked(&cal, &q("", "", "2026-11-01", "2026-12-02"))
                .unwrap()
                .is_some(),
            "31 days"
        );
        for (from, to) in [
            ("2026-11-01", "2026-12-02T00:01"),
            ("2026-11-01", ""),
            ("", "2026-12-01"),
        ] {
            assert!(
                matches!(asked(&cal, &q("", "", from, to)), Err(Refused::TooWide)),
                "{from} {to}"
            );
        }
        assert!(matches!(
            asked(&cal, &q("nobody", "", "", "")),
            Err(Refused::Bad(_))
        ));
        assert!(matches!(
            asked(&cal, &q(c, "", "2026-12-01", "2026-11-01")),
            Err(Refused::Bad(_))
        ));
        assert!(matches!(
            asked(&cal, &q(c, "", "yesterday", "")),
            Err(Refused::Bad(_))
        ));
    }

    #[test]
    fn the_customer_searched_for_comes_first_and_long_lists_fold() {
        let cal: Calendar = "Asia/Shanghai".parse().unwrap();
        let r = ReadRecord {
            at: "2026-11-25T01:30:00Z".parse().unwrap(),
            reader: "person:admin".into(),
            role: "admin".into(),
            route: "workbench.pool".into(),
            customers: (0..8).map(|i| format!("c{i}")).collect(),
            fields: vec!["display_name".into()],
            event_id: uuid::Uuid::nil(),
            position: "1.1".into(),
        };
        let line = read_line(&cal, &r, Some("c6"));
        let ids: Vec<&str> = line.customers.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, ["c6", "c0", "c1", "c2", "c3"]);
        assert_eq!(line.more.len(), 3);
        assert_eq!(line.at, "2026-11-25 09:30:00");
        assert_eq!(line.customers[0].page, "/ui/customers/c6");
    }
}

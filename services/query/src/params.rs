//! Query parameters (a malformed or unknown one is a 400 like any other problem) and the
//! shapes of an answer: a page of rows as JSON, or CSV.

use axum::extract::Query;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::problem::Problem;
use crm_projections::calendar::Calendar;

/// A route's answer: the response, or a problem.
pub(crate) type Answer = Result<Response, Problem>;

/// Query parameters; a malformed or unknown one is a problem+json 400 like any other.
pub struct Q(pub(crate) Params);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Q {
    type Rejection = Problem;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        Query::<Params>::from_request_parts(parts, state)
            .await
            .map(|Query(p)| Q(p))
            .map_err(|e| Problem::bad(e.body_text()))
    }
}

/// Common query parameters.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// `json` (default) or `csv` (also chosen by `Accept: text/csv`).
    pub(crate) format: Option<String>,
    /// Keyset pagination: the last id of the previous page.
    pub(crate) after: Option<String>,
    pub(crate) limit: Option<i64>,
    /// Page of a timeline: versions below this one.
    pub(crate) before_version: Option<i64>,
    /// An instant (RFC 3339): answer as of then.
    pub(crate) as_of: Option<String>,
    pub(crate) from: Option<String>,
    pub(crate) to: Option<String>,
    pub(crate) granularity: Option<String>,
    /// The IANA time zone whose days, weeks and months periods follow (default: the
    /// service's, `CRM_TIME_ZONE`).
    pub(crate) tz: Option<String>,
    pub(crate) slice: Option<String>,
    pub(crate) level: Option<String>,
    pub(crate) by: Option<String>,
    // Filters of the customer list.
    pub(crate) region: Option<String>,
    pub(crate) stage: Option<String>,
    pub(crate) owner_id: Option<String>,
    pub(crate) team: Option<String>,
    pub(crate) value_tier: Option<String>,
    pub(crate) customer_type: Option<String>,
    pub(crate) first_touch_channel: Option<String>,
}

impl Params {
    pub(crate) fn csv(&self, headers: &HeaderMap) -> Result<bool, Problem> {
        match self.format.as_deref() {
            Some("csv") => Ok(true),
            Some("json") => Ok(false),
            Some(other) => Err(Problem::bad(format!("format {other:?} is not json or csv"))),
            None => Ok(headers
                .get(header::ACCEPT)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|a| a.contains("text/csv"))),
        }
    }

    pub(crate) fn limit(&self) -> Result<i64, Problem> {
        match self.limit {
            None => Ok(100),
            Some(n) if (1..=10_000).contains(&n) => Ok(n),
            Some(n) => Err(Problem::bad(format!("limit {n} is not within 1..=10000"))),
        }
    }

    pub(crate) fn instant(name: &str, v: &Option<String>) -> Result<Option<i64>, Problem> {
        v.as_deref()
            .map(|s| {
                DateTime::parse_from_rfc3339(s)
                    .map(|t| t.with_timezone(&Utc).timestamp_micros())
                    .map_err(|e| {
                        Problem::bad(format!("{name} {s:?} is not an RFC 3339 instant: {e}"))
                    })
            })
            .transpose()
    }

    pub(crate) fn parsed<T: std::str::FromStr<Err = String>>(
        v: &Option<String>,
        default: T,
    ) -> Result<T, Problem> {
        v.as_deref()
            .map_or(Ok(default), |s| s.parse().map_err(Problem::bad))
    }

    /// The calendar of the request: `tz`, else the service's.
    pub(crate) fn calendar(&self, default: Calendar) -> Result<Calendar, Problem> {
        Self::parsed(&self.tz, default)
    }

    pub(crate) fn range(&self) -> Result<(i64, i64), Problem> {
        let now = Utc::now().timestamp_micros();
        let to = Self::instant("to", &self.to)?.unwrap_or(now);
        let from = Self::instant("from", &self.from)?.unwrap_or(to - 30 * 86_400_000_000);
        if from >= to {
            return Err(Problem::bad("from must be before to"));
        }
        if to - from > 3 * 366 * 86_400_000_000 {
            return Err(Problem::bad("a range may span at most three years"));
        }
        Ok((from, to))
    }
}

/// A page of rows, with the cursor of the next page when there may be one.
#[derive(Serialize)]
pub(crate) struct Page<T> {
    items: Vec<T>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_after: Option<String>,
}

pub(crate) fn rows<T: Serialize>(items: Vec<T>, csv: bool) -> Answer {
    if csv {
        let body = crate::csv::render(&items).map_err(|e| Problem::bad(e.to_string()))?;
        return Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], body).into_response());
    }
    Ok(Json(Page {
        items,
        next_after: None,
    })
    .into_response())
}

pub(crate) fn paged<T: Serialize>(
    items: Vec<T>,
    limit: i64,
    csv: bool,
    key: impl Fn(&T) -> String,
) -> Answer {
    if csv {
        return rows(items, true);
    }
    let next_after = (items.len() as i64 == limit)
        .then(|| items.last().map(&key))
        .flatten();
    Ok(Json(Page { items, next_after }).into_response())
}

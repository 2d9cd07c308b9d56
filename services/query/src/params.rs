//! Query parameters, one type per route (a malformed or unknown one is a 400 like any
//! other problem; the same types describe them in the OpenAPI document), and the shapes
//! of an answer: a page of rows as JSON, or CSV.

use axum::extract::Query;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::problem::Problem;
use crm_domain::{CustomerType, FirstTouchChannel, LifecycleStage, Severity, ValueTier};
use crm_projections::calendar::{Calendar, Granularity};
use crm_projections::funnel::Slice;
use crm_projections::kpi::Level;
use crm_projections::queries::complaints::{SlaState, Status};
use crm_projections::PortfolioBy;

/// A route's answer: the response, or a problem.
pub(crate) type Answer = Result<Response, Problem>;

/// A route's query parameters; a malformed or unknown one is a problem+json 400 like any
/// other.
pub struct Q<T>(pub(crate) T);

impl<S: Send + Sync, T: DeserializeOwned + Send> axum::extract::FromRequestParts<S> for Q<T> {
    type Rejection = Problem;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(p)| Q(p))
            .map_err(|e| Problem::bad(e.body_text()))
    }
}

/// How an answer is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    Json,
    Csv,
}

/// The parameters of a route that answers rows and takes nothing else.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct Plain {
    /// `json` (the default) or `csv`; `Accept: text/csv` also selects CSV.
    #[param(inline)]
    pub(crate) format: Option<Format>,
}

/// A route that takes no parameters (JSON only).
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct NoParams {}

/// A page of customers.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct Paged {
    /// `json` (the default) or `csv`; `Accept: text/csv` also selects CSV.
    #[param(inline)]
    pub(crate) format: Option<Format>,
    /// Keyset pagination: the previous page's `next_after`.
    pub(crate) after: Option<String>,
    /// How many rows at most.
    #[param(minimum = 1, maximum = 10000, default = 100)]
    pub(crate) limit: Option<i64>,
}

/// The customer list: a page, filtered (each filter an exact match).
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CustomersQuery {
    /// `json` (the default) or `csv`; `Accept: text/csv` also selects CSV.
    #[param(inline)]
    pub(crate) format: Option<Format>,
    /// Keyset pagination: the previous page's `next_after`.
    pub(crate) after: Option<String>,
    /// How many rows at most.
    #[param(minimum = 1, maximum = 10000, default = 100)]
    pub(crate) limit: Option<i64>,
    /// Only customers of this region.
    pub(crate) region: Option<String>,
    /// Only customers in this lifecycle stage.
    #[param(schema_with = schema::stage)]
    pub(crate) stage: Option<LifecycleStage>,
    /// Only customers this manager owns now (a manager's own list is theirs whatever this
    /// says).
    pub(crate) owner_id: Option<String>,
    /// Only customers whose owner is in this team now.
    pub(crate) team: Option<String>,
    /// Only customers of this value tier.
    #[param(schema_with = schema::value_tier)]
    pub(crate) value_tier: Option<ValueTier>,
    /// Only customers of this type (`individual`, `enterprise`).
    #[param(schema_with = schema::customer_type)]
    pub(crate) customer_type: Option<CustomerType>,
    /// Only customers first touched through this channel.
    #[param(schema_with = schema::first_touch_channel)]
    pub(crate) first_touch_channel: Option<FirstTouchChannel>,
}

/// A customer's ownership, whole or at an instant.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AsOfQuery {
    /// `json` (the default) or `csv`; `Accept: text/csv` also selects CSV.
    #[param(inline)]
    pub(crate) format: Option<Format>,
    /// An instant (RFC 3339): the period holding it (none: in the pool then).
    #[param(format = DateTime)]
    pub(crate) as_of: Option<String>,
}

/// A page of a customer's timeline, newest first.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TimelineQuery {
    /// `json` (the default) or `csv`; `Accept: text/csv` also selects CSV.
    #[param(inline)]
    pub(crate) format: Option<Format>,
    /// Keyset pagination: versions below this one (the previous page's `next_after`).
    pub(crate) before_version: Option<i64>,
    /// How many rows at most.
    #[param(minimum = 1, maximum = 10000, default = 100)]
    pub(crate) limit: Option<i64>,
}

/// Portfolio sizes.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PortfoliosQuery {
    /// `json` (the default) or `csv`; `Accept: text/csv` also selects CSV.
    #[param(inline)]
    pub(crate) format: Option<Format>,
    /// Grouped by owner (the default), team or region.
    #[param(inline)]
    pub(crate) by: Option<PortfolioBy>,
}

/// A funnel figure, sliced.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SliceQuery {
    /// `json` (the default) or `csv`; `Accept: text/csv` also selects CSV.
    #[param(inline)]
    pub(crate) format: Option<Format>,
    /// What to count separately (default `all`: not sliced).
    #[param(inline)]
    pub(crate) slice: Option<Slice>,
}

/// Customers per stage, now or at an instant.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StagesQuery {
    /// `json` (the default) or `csv`; `Accept: text/csv` also selects CSV.
    #[param(inline)]
    pub(crate) format: Option<Format>,
    /// What to count separately (default `all`: not sliced).
    #[param(inline)]
    pub(crate) slice: Option<Slice>,
    /// An instant (RFC 3339): the stages then (default: now).
    #[param(format = DateTime)]
    pub(crate) as_of: Option<String>,
}

/// Stage moves per local period over a range.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TransitionsQuery {
    /// `json` (the default) or `csv`; `Accept: text/csv` also selects CSV.
    #[param(inline)]
    pub(crate) format: Option<Format>,
    /// What to count separately (default `all`: not sliced).
    #[param(inline)]
    pub(crate) slice: Option<Slice>,
    /// The periods: local days (the default), weeks from Monday, or months.
    #[param(inline)]
    pub(crate) granularity: Option<Granularity>,
    /// The IANA time zone whose days, weeks and months the periods are (default: the
    /// service's, `CRM_TIME_ZONE`).
    #[param(example = "Asia/Shanghai")]
    pub(crate) tz: Option<String>,
    /// The range's start (RFC 3339; default: 30 days before `to`).
    #[param(format = DateTime)]
    pub(crate) from: Option<String>,
    /// The range's end, excluded (RFC 3339; default: now). At most three years after
    /// `from`.
    #[param(format = DateTime)]
    pub(crate) to: Option<String>,
}

/// The KPIs per local period over a range.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct KpisQuery {
    /// `json` (the default) or `csv`; `Accept: text/csv` also selects CSV.
    #[param(inline)]
    pub(crate) format: Option<Format>,
    /// Whose figures: each manager's (the default), team's or region's.
    #[param(inline)]
    pub(crate) level: Option<Level>,
    /// The periods: local days (the default), weeks from Monday, or months.
    #[param(inline)]
    pub(crate) granularity: Option<Granularity>,
    /// The IANA time zone whose days, weeks and months the periods are (default: the
    /// service's, `CRM_TIME_ZONE`).
    #[param(example = "Asia/Shanghai")]
    pub(crate) tz: Option<String>,
    /// The range's start (RFC 3339; default: 30 days before `to`).
    #[param(format = DateTime)]
    pub(crate) from: Option<String>,
    /// The range's end, excluded (RFC 3339; default: now). At most three years after
    /// `from`.
    #[param(format = DateTime)]
    pub(crate) to: Option<String>,
}

/// Complaints: a page, filtered.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ComplaintsQuery {
    /// `json` (the default) or `csv`; `Accept: text/csv` also selects CSV.
    #[param(inline)]
    pub(crate) format: Option<Format>,
    /// Keyset pagination: the previous page's `next_after`.
    pub(crate) after: Option<String>,
    /// How many rows at most.
    #[param(minimum = 1, maximum = 10000, default = 100)]
    pub(crate) limit: Option<i64>,
    /// Only this customer's complaints.
    pub(crate) customer_id: Option<String>,
    /// Only complaints of customers this manager owns now (a manager's own list is
    /// theirs whatever this says).
    pub(crate) owner_id: Option<String>,
    /// Only complaints of customers whose owner is in this team now (`pool`: customers
    /// in the public pool).
    pub(crate) team: Option<String>,
    /// Only complaints of this severity.
    #[param(schema_with = schema::severity)]
    pub(crate) severity: Option<Severity>,
    /// Only open, resolved or closed complaints (default: all).
    #[param(inline)]
    pub(crate) status: Option<Status>,
    /// Only open complaints in this SLA state (implies `status=open`).
    #[param(inline)]
    pub(crate) sla_state: Option<SlaState>,
}

/// Open complaints counted.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ComplaintCountsQuery {
    /// `json` (the default) or `csv`; `Accept: text/csv` also selects CSV.
    #[param(inline)]
    pub(crate) format: Option<Format>,
    /// Only complaints of customers whose owner is in this team now (`pool`: customers
    /// in the public pool).
    pub(crate) team: Option<String>,
    /// Only complaints of this severity.
    #[param(schema_with = schema::severity)]
    pub(crate) severity: Option<Severity>,
    /// Only complaints in this SLA state.
    #[param(inline)]
    pub(crate) sla_state: Option<SlaState>,
}

/// A customer's ownership replayed from the event store.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditAsOfQuery {
    /// An instant (RFC 3339): who owned the customer then, and since which change.
    #[param(format = DateTime)]
    pub(crate) as_of: Option<String>,
}

/// A manager's customers over a range, replayed from the event store.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditRangeQuery {
    /// The range's start (RFC 3339).
    #[param(format = DateTime)]
    pub(crate) from: String,
    /// The range's end, excluded (RFC 3339).
    #[param(format = DateTime)]
    pub(crate) to: String,
}

/// The schemas of parameters that take one of the domain's closed sets of values (its
/// types carry no schemas: the domain knows nothing of HTTP).
mod schema {
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    use utoipa::openapi::Object;

    /// One of `values`; `description` stands for the field's doc comment, which utoipa
    /// does not read beside a `schema_with`.
    fn one_of(values: impl IntoIterator<Item = &'static str>, description: &str) -> Object {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(values))
            .description(Some(description))
            .build()
    }

    pub(super) fn stage() -> Object {
        one_of(
            crm_domain::LifecycleStage::ALL.iter().map(|v| v.as_str()),
            "Only customers in this lifecycle stage.",
        )
    }

    pub(super) fn value_tier() -> Object {
        one_of(
            crm_domain::ValueTier::ALL.iter().map(|v| v.as_str()),
            "Only customers of this value tier.",
        )
    }

    pub(super) fn customer_type() -> Object {
        one_of(
            crm_domain::CustomerType::ALL.iter().map(|v| v.as_str()),
            "Only customers of this type.",
        )
    }

    pub(super) fn first_touch_channel() -> Object {
        one_of(
            crm_domain::FirstTouchChannel::ALL
                .iter()
                .map(|v| v.as_str()),
            "Only customers first touched through this channel.",
        )
    }

    pub(super) fn severity() -> Object {
        one_of(
            crm_domain::Severity::ALL.iter().map(|v| v.as_str()),
            "Only complaints of this severity.",
        )
    }
}

/// CSV or JSON: `format`, else the `Accept` header.
pub(crate) fn csv(format: Option<Format>, headers: &HeaderMap) -> bool {
    match format {
        Some(f) => f == Format::Csv,
        None => headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("text/csv")),
    }
}

/// The page size asked for (default 100).
pub(crate) fn limit(limit: Option<i64>) -> Result<i64, Problem> {
    match limit {
        None => Ok(100),
        Some(n) if (1..=10_000).contains(&n) => Ok(n),
        Some(n) => Err(Problem::bad(format!("limit {n} is not within 1..=10000"))),
    }
}

/// An instant parameter (RFC 3339), in microseconds.
pub(crate) fn instant(name: &str, v: Option<&str>) -> Result<Option<i64>, Problem> {
    v.map(|s| {
        DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc).timestamp_micros())
            .map_err(|e| Problem::bad(format!("{name} {s:?} is not an RFC 3339 instant: {e}")))
    })
    .transpose()
}

/// The calendar of a request: `tz`, else the service's.
pub(crate) fn calendar(tz: Option<&str>, default: Calendar) -> Result<Calendar, Problem> {
    tz.map_or(Ok(default), |s| s.parse().map_err(Problem::bad))
}

/// `[from, to)` in microseconds: by default the last 30 days; at most three years.
pub(crate) fn range(from: Option<&str>, to: Option<&str>) -> Result<(i64, i64), Problem> {
    let now = Utc::now().timestamp_micros();
    let to = instant("to", to)?.unwrap_or(now);
    let from = instant("from", from)?.unwrap_or(to - 30 * 86_400_000_000);
    if from >= to {
        return Err(Problem::bad("from must be before to"));
    }
    if to - from > 3 * 366 * 86_400_000_000 {
        return Err(Problem::bad("a range may span at most three years"));
    }
    Ok((from, to))
}

/// A page of rows, with the cursor of the next page when there may be one.
#[derive(Serialize, ToSchema)]
pub(crate) struct Page<T> {
    /// The rows, in the route's order.
    items: Vec<T>,
    /// Pass it back as `after` (a timeline: `before_version`) for the next page; absent
    /// when this page is not full (there is no more).
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

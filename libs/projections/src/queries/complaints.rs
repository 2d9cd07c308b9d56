//! Complaints as the workbench asks about them: the open ones counted by team, severity
//! and SLA state; a page of them, oldest first; one complaint with its customer. Every
//! filter is a bound parameter, so no text a caller sends becomes SQL.
//!
//! **The SLA state of an open complaint** (not resolved, not closed), judged at an
//! instant `now`, is the furthest of these that applies, in the order the domain takes
//! them (`docs/policies.md`, "Complaint clocks": a breach is followed by an escalation):
//!
//! - `escalated`: escalated at least once, by a breached clock or by a person (the case
//!   is with the team lead or the branch manager);
//! - `breached`: a promise missed: a running clock's deadline has passed (`now` after it:
//!   an answer at the deadline itself is in time), whether or not the scheduler has
//!   recorded the breach yet; or a breach recorded for it (an answer after the deadline
//!   records one, without escalation); or answered or resolved late before;
//! - `warned`: the nearing-breach warning of a running clock recorded for the deadline
//!   that clock has now (a reopening starts a new resolution clock: the old clock's
//!   warning no longer counts). The share of a clock after which it is warned is the
//!   policy's, which the read side does not hold: the recorded warning is the platform's
//!   own decision;
//! - `due`: its clocks run within time.
//!
//! The running clocks: the first response until the complaint is acknowledged or
//! resolved; the resolution clock while open, with the deadline of its logging or last
//! reopening (`first_response_due_us`, `resolution_due_us`, migration 1006). Rows
//! projected before 1006 have no deadlines until `crm projections rebuild analytics`:
//! they are judged from the recorded breaches and warnings alone.

use sqlx::{ColumnIndex, Decode, Row, Type};

use super::{CustomerRow, FromRow};
use crate::calendar::{instant, maybe_instant};
use crate::store::{ReadError, ReadStore};

/// The SLA state of an open complaint (the module's documentation has the rules).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum SlaState {
    Due,
    Warned,
    Breached,
    Escalated,
}

impl SlaState {
    /// In the order a complaint goes through them.
    pub const ALL: [SlaState; 4] = [
        SlaState::Due,
        SlaState::Warned,
        SlaState::Breached,
        SlaState::Escalated,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SlaState::Due => "due",
            SlaState::Warned => "warned",
            SlaState::Breached => "breached",
            SlaState::Escalated => "escalated",
        }
    }
}

impl std::str::FromStr for SlaState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SlaState::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| format!("state {s:?} is not due, warned, breached or escalated"))
    }
}

/// Where a complaint is in its life: open until resolved; resolved until reopened or
/// closed; closed for good.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Open,
    Resolved,
    Closed,
}

impl Status {
    pub const ALL: [Status; 3] = [Status::Open, Status::Resolved, Status::Closed];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Open => "open",
            Status::Resolved => "resolved",
            Status::Closed => "closed",
        }
    }

    /// What the status means of complaint `k`'s own columns.
    fn predicate(self) -> &'static str {
        match self {
            Status::Open => OPEN,
            Status::Resolved => "k.resolved_at_us IS NOT NULL AND k.closed_at_us IS NULL",
            Status::Closed => "k.closed_at_us IS NOT NULL",
        }
    }
}

impl std::str::FromStr for Status {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Status::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| format!("status {s:?} is not open, resolved or closed"))
    }
}

/// Where a page of complaints starts: after the complaint logged at `logged_at_us` with
/// id `complaint_id`, in the lists' order. Its text, `<logged_at_us>.<complaint_id>`, is
/// a page's `next_after`: it names no complaint to look up, so a cursor tells nothing
/// of complaints the caller may not see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct After {
    pub logged_at_us: i64,
    pub complaint_id: String,
}

impl After {
    /// The page after `row`.
    pub fn of(row: &ComplaintRow) -> Self {
        Self {
            logged_at_us: row.logged_at_us,
            complaint_id: row.complaint_id.clone(),
        }
    }
}

impl std::fmt::Display for After {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.logged_at_us, self.complaint_id)
    }
}

impl std::str::FromStr for After {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("after {s:?} is not a page's next_after");
        let (at, id) = s.split_once('.').ok_or_else(bad)?;
        Ok(Self {
            logged_at_us: at.parse().map_err(|_| bad())?,
            complaint_id: id.to_string(),
        })
    }
}

/// Which complaints; `None` matches everything. A manager's scope is set here by the
/// caller's code, as for the customer list (`owner_id`, or a team lead's `team`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct ComplaintFilter {
    /// Complaints of this customer.
    pub customer_id: Option<String>,
    /// Customers owned by this manager now.
    pub owner_id: Option<String>,
    /// Customers owned in this team now; `pool`: customers in the public pool.
    pub team: Option<String>,
    /// A team lead's scope: customers owned in this team now (the pool never, even for
    /// a team named `pool`).
    pub team_scope: Option<String>,
    pub severity: Option<String>,
    /// Open, resolved or closed (a state implies open).
    pub status: Option<Status>,
    /// Open complaints in this SLA state.
    pub state: Option<SlaState>,
}

/// How many open complaints of one team (of the customer's owner now; `pool`), severity
/// and SLA state.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct ComplaintCount {
    /// The team of the customer's owner now; `pool` for customers in the public pool.
    pub team: String,
    /// `critical`, `high`, `normal` or `low`.
    pub severity: String,
    /// `due`, `warned`, `breached` or `escalated`.
    pub sla_state: String,
    /// How many open complaints.
    pub complaints: i64,
}

/// One complaint, with its customer as the ownership view has it now (the customer's
/// fields follow the complaint's).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct ComplaintRow {
    /// The complaint's id (a UUID).
    #[schema(format = Uuid)]
    pub complaint_id: String,
    /// `critical`, `high`, `normal` or `low`.
    pub severity: String,
    /// Open, resolved or closed.
    pub status: Status,
    /// The SLA state when open (the rules: `rm_complaints` in docs/read-models.md); `null`
    /// when resolved or closed.
    pub sla_state: Option<SlaState>,
    /// When it was logged.
    #[serde(rename = "logged_at", serialize_with = "instant")]
    #[schema(value_type = String, format = DateTime)]
    pub logged_at_us: i64,
    /// The customer's owner when it was logged (the KPIs count it against them); `null`:
    /// the customer was in the pool.
    pub logged_owner_id: Option<String>,
    /// Seconds from logging to the first response (acknowledgement or resolution);
    /// `null` until then.
    pub first_response_s: Option<i64>,
    /// The first-response deadline; `null` on complaints projected before migration 1006
    /// until a rebuild.
    #[serde(rename = "first_response_due", serialize_with = "maybe_instant")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub first_response_due_us: Option<i64>,
    /// The resolution deadline of the running clock (from logging or the last reopening).
    #[serde(rename = "resolution_due", serialize_with = "maybe_instant")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub resolution_due_us: Option<i64>,
    /// When it was last resolved; `null` while open.
    #[serde(rename = "resolved_at", serialize_with = "maybe_instant")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub resolved_at_us: Option<i64>,
    /// When it was closed; `null` unless closed.
    #[serde(rename = "closed_at", serialize_with = "maybe_instant")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub closed_at_us: Option<i64>,
    /// How many times it was resolved.
    pub resolutions: i64,
    /// How many times it was reopened.
    pub reopens: i64,
    /// How many times it was escalated (by a breached clock or by a person).
    pub escalations: i64,
    /// The customer's satisfaction at closing, 1 (lowest) to 5; `null` when not given.
    pub satisfaction: Option<i64>,
    /// Its customer, as the ownership view has it now.
    #[serde(flatten)]
    pub customer: CustomerRow,
}

impl ComplaintRow {
    /// The SLA state when open, else the status: as the SQL judged it.
    pub fn state_name(&self) -> &'static str {
        self.sla_state
            .map_or(self.status.as_str(), SlaState::as_str)
    }
}

from_row!(ComplaintCount {
    team,
    severity,
    sla_state,
    complaints
});

/// The logging instant that bounds a list (`min`: none when no row matches).
struct FirstLogged {
    logged_at_us: Option<i64>,
}

from_row!(FirstLogged { logged_at_us });

/// A value the SQL produced that the row's type cannot hold.
fn decode_error(e: String) -> sqlx::Error {
    sqlx::Error::Decode(e.into())
}

impl FromRow for ComplaintRow {
    fn from_row<'r, R: Row>(r: &'r R) -> Result<Self, sqlx::Error>
    where
        &'r str: ColumnIndex<R>,
        String: Decode<'r, R::Database> + Type<R::Database>,
        Option<String>: Decode<'r, R::Database> + Type<R::Database>,
        i64: Decode<'r, R::Database> + Type<R::Database>,
        Option<i64>: Decode<'r, R::Database> + Type<R::Database>,
    {
        let judged: String = r.try_get("sla_state")?;
        let (status, sla_state) = match judged.parse::<SlaState>() {
            Ok(state) => (Status::Open, Some(state)),
            Err(_) => (judged.parse().map_err(decode_error)?, None),
        };
        Ok(ComplaintRow {
            complaint_id: r.try_get("complaint_id")?,
            severity: r.try_get("severity")?,
            logged_at_us: r.try_get("logged_at_us")?,
            logged_owner_id: r.try_get("logged_owner_id")?,
            first_response_s: r.try_get("first_response_s")?,
            first_response_due_us: r.try_get("first_response_due_us")?,
            resolution_due_us: r.try_get("resolution_due_us")?,
            resolved_at_us: r.try_get("resolved_at_us")?,
            closed_at_us: r.try_get("closed_at_us")?,
            resolutions: r.try_get("resolutions")?,
            reopens: r.try_get("reopens")?,
            escalations: r.try_get("escalations")?,
            satisfaction: r.try_get("satisfaction")?,
            status,
            sla_state,
            customer: CustomerRow::from_row(r)?,
        })
    }
}

/// The first-response clock runs: not acknowledged, never resolved.
const FIRST_RUNS: &str = "(k.first_response_s IS NULL AND k.resolutions = 0)";

/// The state of complaint `k` at the instant bound as `$1`.
fn state_sql() -> String {
    format!(
        "CASE WHEN k.closed_at_us IS NOT NULL THEN 'closed' \
         WHEN k.resolved_at_us IS NOT NULL THEN 'resolved' \
         WHEN k.escalations > 0 THEN 'escalated' \
         WHEN k.resolution_due_us < $1 OR ({FIRST_RUNS} AND k.first_response_due_us < $1) \
           OR k.first_response_in_sla = 0 OR k.resolution_breaches > 0 \
           OR EXISTS (SELECT 1 FROM rm_sla_events b WHERE b.complaint_id = k.complaint_id \
             AND b.kind = 'breach') THEN 'breached' \
         WHEN EXISTS (SELECT 1 FROM rm_sla_events w WHERE w.complaint_id = k.complaint_id \
           AND w.kind = 'warning' AND ((w.clock = 'resolution' AND (k.resolution_due_us IS NULL \
             OR w.due_us = k.resolution_due_us)) OR (w.clock = 'first_response' AND {FIRST_RUNS}))) \
           THEN 'warned' \
         ELSE 'due' END"
    )
}

/// A complaint joined to its customer, and the filters (binds `$2` owner, `$3` team
/// asked for, `$4` severity, `$6` customer, `$7` the team of a team lead's scope: owned
/// in it, never the pool, whatever a team may be called).
const FROM_FILTERED: &str = "FROM rm_complaints k JOIN rm_customers c \
    ON c.customer_id = k.customer_id \
    WHERE ($2 IS NULL OR c.owner_id = $2) \
    AND ($3 IS NULL OR COALESCE(c.owner_team, 'pool') = $3) \
    AND ($4 IS NULL OR k.severity = $4) \
    AND ($6 IS NULL OR k.customer_id = $6) \
    AND ($7 IS NULL OR c.owner_team = $7)";

const OPEN: &str = "k.resolved_at_us IS NULL AND k.closed_at_us IS NULL";

/// What the state asked for (bind `$5`, judged at `$1`) implies of a complaint's own
/// columns, checked before [`state_sql`]'s look-ups so that the rows of other states cost
/// little: escalated or not, and for `due` and `warned`, no missed deadline. Implied by
/// [`state_sql`], so it changes no answer.
const STATE_IMPLIES: &str = "($5 IS NULL OR ($5 = 'escalated') = (k.escalations > 0)) \
    AND ($5 IS NULL OR $5 NOT IN ('due', 'warned') \
      OR (COALESCE(k.resolution_due_us, 9223372036854775807) >= $1 \
        AND k.resolution_breaches = 0 AND COALESCE(k.first_response_in_sla, 1) <> 0))";

/// Every column of a complaint row: the customer's, then the complaint's.
const COLUMNS: &str = "c.customer_id, c.customer_type, c.display_name, c.region, c.branch, \
    c.first_touch_channel, c.stage, c.value_tier, c.aum_minor, c.owner_id, c.owner_team, \
    c.owner_region, c.owned_since_us, c.registered_at_us, c.last_contact_at_us, \
    c.next_follow_up_us, k.complaint_id, k.severity, k.logged_at_us, \
    k.owner_id AS logged_owner_id, k.first_response_s, k.first_response_due_us, \
    k.resolution_due_us, k.resolved_at_us, k.closed_at_us, k.resolutions, k.reopens, \
    k.escalations, k.satisfaction";

impl ReadStore {
    /// The open complaints matching `filter`, counted by team, severity and SLA state at
    /// `now_us`, in that order (its `status` is not asked: counts are of open ones).
    pub async fn open_complaint_counts(
        &self,
        filter: &ComplaintFilter,
        now_us: i64,
    ) -> Result<Vec<ComplaintCount>, ReadError> {
        let sql = format!(
            "SELECT team, severity, sla_state, count(*) AS complaints FROM \
             (SELECT COALESCE(c.owner_team, 'pool') AS team, k.severity, {} AS sla_state \
             {FROM_FILTERED} AND {OPEN} AND {STATE_IMPLIES}) s \
             WHERE ($5 IS NULL OR sla_state = $5) \
             GROUP BY team, severity, sla_state ORDER BY team, severity, sla_state",
            state_sql()
        );
        let f = filter;
        Ok(fetch!(
            self,
            ComplaintCount,
            &sql,
            now_us,
            f.owner_id.as_deref(),
            f.team.as_deref(),
            f.severity.as_deref(),
            f.state.map(SlaState::as_str),
            f.customer_id.as_deref(),
            f.team_scope.as_deref()
        ))
    }

    /// A page of the open complaints matching `filter` (whatever its `status`), judged
    /// at `now_us`: [`ReadStore::complaints`].
    pub async fn open_complaints(
        &self,
        filter: &ComplaintFilter,
        now_us: i64,
        after: Option<&After>,
        limit: i64,
    ) -> Result<Vec<ComplaintRow>, ReadError> {
        let open = ComplaintFilter {
            status: Some(Status::Open),
            ..filter.clone()
        };
        self.complaints(&open, now_us, after, limit).await
    }

    /// A page of the complaints matching `filter`, judged at `now_us`: the oldest logged
    /// first, after `after` (keyset pagination; `None`: from the first), at most `limit`.
    /// An SLA state asked for implies open: with another status, nothing.
    pub async fn complaints(
        &self,
        filter: &ComplaintFilter,
        now_us: i64,
        after: Option<&After>,
        limit: i64,
    ) -> Result<Vec<ComplaintRow>, ReadError> {
        let from = match filter.state {
            Some(SlaState::Due | SlaState::Warned) => match self.not_late_from(now_us).await? {
                Some(from) => Some(from),
                None => return Ok(Vec::new()),
            },
            _ => None,
        };
        // The status is a choice among fixed predicates (no caller text), so that the
        // open ones keep their plan.
        let status = filter.status.map_or("TRUE", Status::predicate);
        let sql = format!(
            "SELECT * FROM (SELECT {COLUMNS}, {} AS sla_state {FROM_FILTERED} AND {status} \
             AND {STATE_IMPLIES} AND ($11 IS NULL OR k.logged_at_us >= $11) \
             AND ($8 IS NULL OR (k.logged_at_us, k.complaint_id) > ($8, $9))) s \
             WHERE ($5 IS NULL OR sla_state = $5) \
             ORDER BY logged_at_us, complaint_id LIMIT $10",
            state_sql()
        );
        let f = filter;
        Ok(fetch!(
            self,
            ComplaintRow,
            &sql,
            now_us,
            f.owner_id.as_deref(),
            f.team.as_deref(),
            f.severity.as_deref(),
            f.state.map(SlaState::as_str),
            f.customer_id.as_deref(),
            f.team_scope.as_deref(),
            after.map(|a| a.logged_at_us),
            after.map_or("", |a| a.complaint_id.as_str()),
            limit,
            from
        ))
    }

    /// When the oldest open complaint that could be due or warned at `now_us` was
    /// logged (not escalated, its resolution deadline not passed or not known); `None`
    /// when there is none. Found from the deadline index, so that a page of them does
    /// not judge the many older complaints first. The rows are gathered first
    /// (`MATERIALIZED`): asked for the `min` directly, PostgreSQL walks the logging index
    /// from its start until a row matches (1.2 s at W2's size, against 85 ms).
    async fn not_late_from(&self, now_us: i64) -> Result<Option<i64>, ReadError> {
        let sql = format!(
            "WITH not_late AS MATERIALIZED (SELECT k.logged_at_us FROM rm_complaints k \
             WHERE {OPEN} AND k.escalations = 0 \
             AND (k.resolution_due_us >= $1 OR k.resolution_due_us IS NULL)) \
             SELECT min(logged_at_us) AS logged_at_us FROM not_late"
        );
        Ok(fetch!(self, FirstLogged, &sql, now_us)
            .pop()
            .and_then(|r| r.logged_at_us))
    }

    /// One complaint, open or not, with its customer, judged at `now_us` (who may see it
    /// is the caller's question: its customer's).
    pub async fn complaint(
        &self,
        complaint_id: &str,
        now_us: i64,
    ) -> Result<Option<ComplaintRow>, ReadError> {
        let sql = format!(
            "SELECT {COLUMNS}, {} AS sla_state FROM rm_complaints k JOIN rm_customers c \
             ON c.customer_id = k.customer_id WHERE k.complaint_id = $2",
            state_sql()
        );
        Ok(fetch!(self, ComplaintRow, &sql, now_us, complaint_id).pop())
    }
}

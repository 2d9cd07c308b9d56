//! Reading the read models: the questions managers, analysts and auditors ask.

use sqlx::{ColumnIndex, Decode, Row, Type};

use crate::calendar::{instant, maybe_instant};
use crate::store::{ReadError, ReadStore};

/// A customer as the ownership view shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CustomerRow {
    pub customer_id: String,
    pub customer_type: String,
    pub display_name: String,
    pub region: String,
    pub branch: Option<String>,
    pub first_touch_channel: String,
    pub stage: String,
    pub value_tier: String,
    pub aum_minor: Option<i64>,
    pub owner_id: Option<String>,
    pub owner_team: Option<String>,
    pub owner_region: Option<String>,
    #[serde(rename = "owned_since", serialize_with = "maybe_instant")]
    pub owned_since_us: Option<i64>,
    #[serde(rename = "registered_at", serialize_with = "instant")]
    pub registered_at_us: i64,
    #[serde(rename = "last_contact_at", serialize_with = "maybe_instant")]
    pub last_contact_at_us: Option<i64>,
    #[serde(rename = "next_follow_up", serialize_with = "maybe_instant")]
    pub next_follow_up_us: Option<i64>,
}

/// One period of ownership, `[from_us, to_us)`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PeriodRow {
    pub customer_id: String,
    pub start_version: i64,
    pub manager_id: String,
    pub team: String,
    pub region: String,
    #[serde(rename = "from", serialize_with = "instant")]
    pub from_us: i64,
    #[serde(rename = "to", serialize_with = "maybe_instant")]
    pub to_us: Option<i64>,
    pub start_event: String,
    pub start_reason: Option<String>,
    pub started_by: String,
    pub start_event_id: String,
    pub end_event: Option<String>,
    pub ended_by: Option<String>,
}

/// One line of a customer's timeline.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TimelineRow {
    pub customer_id: String,
    pub version: i64,
    pub event_id: String,
    pub event_type: String,
    #[serde(rename = "occurred_at", serialize_with = "instant")]
    pub occurred_at_us: i64,
    pub actor: String,
    pub summary: String,
}

/// A manager, for portfolios by team and region.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ManagerRow {
    pub manager_id: String,
    pub name: String,
    pub role: String,
    pub team: String,
    pub region: String,
    pub branch: String,
    pub holding_limit: i64,
    pub active: bool,
}

/// Portfolio size of one owner (manager, team or region).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PortfolioCount {
    pub key: String,
    pub customers: i64,
}

trait FromRow: Sized {
    fn from_row<'r, R: Row>(r: &'r R) -> Result<Self, sqlx::Error>
    where
        &'r str: ColumnIndex<R>,
        String: Decode<'r, R::Database> + Type<R::Database>,
        Option<String>: Decode<'r, R::Database> + Type<R::Database>,
        i64: Decode<'r, R::Database> + Type<R::Database>,
        Option<i64>: Decode<'r, R::Database> + Type<R::Database>;
}

macro_rules! from_row {
    ($t:ident { $($field:ident),* $(,)? } $(, $flag:ident)?) => {
        impl FromRow for $t {
            fn from_row<'r, R: Row>(r: &'r R) -> Result<Self, sqlx::Error>
            where
                &'r str: ColumnIndex<R>,
                String: Decode<'r, R::Database> + Type<R::Database>,
                Option<String>: Decode<'r, R::Database> + Type<R::Database>,
                i64: Decode<'r, R::Database> + Type<R::Database>,
                Option<i64>: Decode<'r, R::Database> + Type<R::Database>,
            {
                Ok($t {
                    $($field: r.try_get(stringify!($field))?,)*
                    $($flag: r.try_get::<i64, _>(stringify!($flag))? != 0,)?
                })
            }
        }
    };
}

from_row!(CustomerRow {
    customer_id,
    customer_type,
    display_name,
    region,
    branch,
    first_touch_channel,
    stage,
    value_tier,
    aum_minor,
    owner_id,
    owner_team,
    owner_region,
    owned_since_us,
    registered_at_us,
    last_contact_at_us,
    next_follow_up_us
});
from_row!(PeriodRow {
    customer_id,
    start_version,
    manager_id,
    team,
    region,
    from_us,
    to_us,
    start_event,
    start_reason,
    started_by,
    start_event_id,
    end_event,
    ended_by
});
from_row!(TimelineRow {
    customer_id,
    version,
    event_id,
    event_type,
    occurred_at_us,
    actor,
    summary
});
from_row!(
    ManagerRow {
        manager_id,
        name,
        role,
        team,
        region,
        branch,
        holding_limit
    },
    active
);
from_row!(PortfolioCount { key, customers });

const CUSTOMER: &str = "SELECT customer_id, customer_type, display_name, region, branch, \
    first_touch_channel, stage, value_tier, aum_minor, owner_id, owner_team, owner_region, \
    owned_since_us, registered_at_us, last_contact_at_us, next_follow_up_us FROM rm_customers";
const PERIOD: &str = "SELECT customer_id, start_version, manager_id, team, region, from_us, to_us, \
    start_event, start_reason, started_by, start_event_id, end_event, ended_by FROM rm_ownership_periods";

/// Run `$sql` with text/int binds on either backend and map rows to `$t`.
macro_rules! fetch {
    ($store:expr, $t:ty, $sql:expr $(, $bind:expr)*) => {{
        let sql: &str = $sql;
        let rows: Vec<$t> = match $store {
            ReadStore::Postgres(p) => sqlx::query(sql)$(.bind($bind))*.fetch_all(p).await?
                .iter().map(<$t>::from_row).collect::<Result<_, _>>()?,
            ReadStore::Sqlite(p) => sqlx::query(sql)$(.bind($bind))*.fetch_all(p).await?
                .iter().map(<$t>::from_row).collect::<Result<_, _>>()?,
        };
        rows
    }};
}

impl ReadStore {
    pub async fn customer(&self, customer_id: &str) -> Result<Option<CustomerRow>, ReadError> {
        let sql = format!("{CUSTOMER} WHERE customer_id = $1");
        Ok(fetch!(self, CustomerRow, &sql, customer_id).pop())
    }

    /// Customers in id order, after `after` (keyset pagination), at most `limit`.
    pub async fn customers(&self, after: &str, limit: i64) -> Result<Vec<CustomerRow>, ReadError> {
        self.customers_where(&CustomerFilter::default(), after, limit)
            .await
    }

    /// Customers matching `filter`, in id order after `after`, at most `limit`.
    pub async fn customers_where(
        &self,
        filter: &CustomerFilter,
        after: &str,
        limit: i64,
    ) -> Result<Vec<CustomerRow>, ReadError> {
        // Each filter is bound as a parameter; an absent one matches everything.
        let sql = format!(
            "{CUSTOMER} WHERE customer_id > $1 \
             AND ($3 IS NULL OR region = $3) AND ($4 IS NULL OR stage = $4) \
             AND ($5 IS NULL OR owner_id = $5) AND ($6 IS NULL OR owner_team = $6) \
             AND ($7 IS NULL OR value_tier = $7) AND ($8 IS NULL OR customer_type = $8) \
             AND ($9 IS NULL OR first_touch_channel = $9) \
             ORDER BY customer_id LIMIT $2"
        );
        let f = filter;
        Ok(fetch!(
            self,
            CustomerRow,
            &sql,
            after,
            limit,
            f.region.as_deref(),
            f.stage.as_deref(),
            f.owner_id.as_deref(),
            f.team.as_deref(),
            f.value_tier.as_deref(),
            f.customer_type.as_deref(),
            f.first_touch_channel.as_deref()
        ))
    }

    /// A manager's portfolio now.
    pub async fn portfolio(&self, manager_id: &str) -> Result<Vec<CustomerRow>, ReadError> {
        let sql = format!("{CUSTOMER} WHERE owner_id = $1 ORDER BY customer_id");
        Ok(fetch!(self, CustomerRow, &sql, manager_id))
    }

    /// The pool (customers with no owner), in id order after `after`.
    pub async fn pool(&self, after: &str, limit: i64) -> Result<Vec<CustomerRow>, ReadError> {
        let sql = format!(
            "{CUSTOMER} WHERE owner_id IS NULL AND customer_id > $1 ORDER BY customer_id LIMIT $2"
        );
        Ok(fetch!(self, CustomerRow, &sql, after, limit))
    }

    /// Portfolio sizes by `owner_id`, `owner_team` or `owner_region`.
    pub async fn portfolio_counts(
        &self,
        by: PortfolioBy,
    ) -> Result<Vec<PortfolioCount>, ReadError> {
        let column = by.column();
        let sql = format!(
            "SELECT {column} AS key, count(*) AS customers FROM rm_customers \
             WHERE owner_id IS NOT NULL GROUP BY {column} ORDER BY {column}"
        );
        Ok(fetch!(self, PortfolioCount, &sql))
    }

    /// The full ownership timeline of a customer, oldest first.
    pub async fn ownership_timeline(&self, customer_id: &str) -> Result<Vec<PeriodRow>, ReadError> {
        let sql = format!("{PERIOD} WHERE customer_id = $1 ORDER BY start_version");
        Ok(fetch!(self, PeriodRow, &sql, customer_id))
    }

    /// Who owned the customer at `at_us` (None: in the pool, or not yet registered).
    pub async fn owner_at(
        &self,
        customer_id: &str,
        at_us: i64,
    ) -> Result<Option<PeriodRow>, ReadError> {
        let sql = format!(
            "{PERIOD} WHERE customer_id = $1 AND from_us <= $2 AND (to_us IS NULL OR to_us > $2) \
             ORDER BY start_version DESC LIMIT 1"
        );
        Ok(fetch!(self, PeriodRow, &sql, customer_id, at_us).pop())
    }

    /// Every ownership period (for verification and export), in key order.
    pub async fn all_periods(&self) -> Result<Vec<PeriodRow>, ReadError> {
        let sql = format!("{PERIOD} ORDER BY customer_id, start_version");
        Ok(fetch!(self, PeriodRow, &sql))
    }

    /// A customer's events, newest first, below `before_version` (0: from the newest).
    pub async fn timeline(
        &self,
        customer_id: &str,
        before_version: i64,
        limit: i64,
    ) -> Result<Vec<TimelineRow>, ReadError> {
        let before = if before_version <= 0 {
            i64::MAX
        } else {
            before_version
        };
        Ok(fetch!(
            self,
            TimelineRow,
            "SELECT customer_id, version, event_id, event_type, occurred_at_us, actor, summary \
             FROM rm_timeline WHERE customer_id = $1 AND version < $2 ORDER BY version DESC LIMIT $3",
            customer_id,
            before,
            limit
        ))
    }

    pub async fn managers(&self) -> Result<Vec<ManagerRow>, ReadError> {
        Ok(fetch!(
            self,
            ManagerRow,
            "SELECT manager_id, name, role, team, region, branch, holding_limit, active \
             FROM rm_managers ORDER BY manager_id"
        ))
    }
}

/// Filters of the customer list; `None` matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CustomerFilter {
    pub region: Option<String>,
    pub stage: Option<String>,
    pub owner_id: Option<String>,
    pub team: Option<String>,
    pub value_tier: Option<String>,
    pub customer_type: Option<String>,
    pub first_touch_channel: Option<String>,
}

/// How to group portfolio sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortfolioBy {
    Manager,
    Team,
    Region,
}

impl PortfolioBy {
    fn column(self) -> &'static str {
        match self {
            PortfolioBy::Manager => "owner_id",
            PortfolioBy::Team => "owner_team",
            PortfolioBy::Region => "owner_region",
        }
    }
}

mod fact_rows {
    use super::*;
    use crate::facts::{
        Complaint, Contact, PoolEvent, Referral, SlaEvent, StagePeriod, Transition,
    };

    fn flag<'r, R: Row>(r: &'r R, col: &'r str) -> Result<bool, sqlx::Error>
    where
        &'r str: ColumnIndex<R>,
        i64: Decode<'r, R::Database> + Type<R::Database>,
    {
        Ok(r.try_get::<i64, _>(col)? != 0)
    }

    macro_rules! fact_row {
        ($t:ident |$r:ident| $body:expr) => {
            impl FromRow for $t {
                fn from_row<'r, R: Row>($r: &'r R) -> Result<Self, sqlx::Error>
                where
                    &'r str: ColumnIndex<R>,
                    String: Decode<'r, R::Database> + Type<R::Database>,
                    Option<String>: Decode<'r, R::Database> + Type<R::Database>,
                    i64: Decode<'r, R::Database> + Type<R::Database>,
                    Option<i64>: Decode<'r, R::Database> + Type<R::Database>,
                {
                    Ok($body)
                }
            }
        };
    }

    fact_row!(
        StagePeriod
            | r
            | StagePeriod {
                customer_id: r.try_get("customer_id")?,
                stage: r.try_get("stage")?,
                from_us: r.try_get("from_us")?,
                to_us: r.try_get("to_us")?,
            }
    );
    fact_row!(
        Transition
            | r
            | Transition {
                customer_id: r.try_get("customer_id")?,
                from_stage: r.try_get("from_stage")?,
                to_stage: r.try_get("to_stage")?,
                at_us: r.try_get("at_us")?,
                reactivated: flag(r, "reactivated")?,
                owner_id: r.try_get("owner_id")?,
            }
    );
    fact_row!(
        Contact
            | r
            | Contact {
                customer_id: r.try_get("customer_id")?,
                manager_id: r.try_get("manager_id")?,
                by_owner: flag(r, "by_owner")?,
                at_us: r.try_get("at_us")?,
            }
    );
    fact_row!(
        Complaint
            | r
            | Complaint {
                complaint_id: r.try_get("complaint_id")?,
                customer_id: r.try_get("customer_id")?,
                owner_id: r.try_get("owner_id")?,
                severity: r.try_get("severity")?,
                logged_at_us: r.try_get("logged_at_us")?,
                first_response_s: r.try_get("first_response_s")?,
                first_response_in_sla: r
                    .try_get::<Option<i64>, _>("first_response_in_sla")?
                    .map(|v| v != 0),
                resolution_s: r.try_get("resolution_s")?,
                resolutions: r.try_get("resolutions")?,
                resolution_breaches: r.try_get("resolution_breaches")?,
                reopens: r.try_get("reopens")?,
                satisfaction: r.try_get("satisfaction")?,
            }
    );
    fact_row!(
        Referral
            | r
            | Referral {
                referral_id: r.try_get("referral_id")?,
                referrer: r.try_get("referrer")?,
                referred_to: r.try_get("referred_to")?,
                recorded_at_us: r.try_get("recorded_at_us")?,
                converted_at_us: r.try_get("converted_at_us")?,
            }
    );

    fact_row!(
        PoolEvent
            | r
            | PoolEvent {
                customer_id: r.try_get("customer_id")?,
                kind: r.try_get("kind")?,
                manager_id: r.try_get("manager_id")?,
                at_us: r.try_get("at_us")?,
            }
    );
    fact_row!(
        SlaEvent
            | r
            | SlaEvent {
                complaint_id: r.try_get("complaint_id")?,
                kind: r.try_get("kind")?,
                automatic: flag(r, "automatic")?,
                owner_id: r.try_get("owner_id")?,
                at_us: r.try_get("at_us")?,
            }
    );

    impl ReadStore {
        /// Every fact the funnel and the KPIs are computed from.
        pub async fn facts(&self) -> Result<crate::facts::Facts, ReadError> {
            Ok(crate::facts::Facts {
                customers: self.customers("", i64::MAX).await?,
                managers: self.managers().await?,
                ownership: self.all_periods().await?,
                stages: fetch!(
                    self,
                    StagePeriod,
                    "SELECT customer_id, stage, from_us, to_us FROM rm_stage_periods \
                     ORDER BY customer_id, start_version"
                ),
                transitions: fetch!(
                    self,
                    Transition,
                    "SELECT customer_id, from_stage, to_stage, at_us, reactivated, owner_id \
                     FROM rm_stage_transitions ORDER BY customer_id, version"
                ),
                contacts: fetch!(
                    self,
                    Contact,
                    "SELECT customer_id, manager_id, by_owner, at_us FROM rm_contacts \
                     ORDER BY customer_id, version"
                ),
                complaints: fetch!(
                    self,
                    Complaint,
                    "SELECT complaint_id, customer_id, owner_id, severity, logged_at_us, first_response_s, \
                     first_response_in_sla, resolution_s, resolutions, resolution_breaches, reopens, \
                     satisfaction FROM rm_complaints ORDER BY complaint_id"
                ),
                referrals: fetch!(
                    self,
                    Referral,
                    "SELECT referral_id, referrer, referred_to, recorded_at_us, converted_at_us \
                     FROM rm_referrals ORDER BY referral_id"
                ),
                pool_events: fetch!(
                    self,
                    PoolEvent,
                    "SELECT customer_id, kind, manager_id, at_us FROM rm_pool_events \
                     ORDER BY customer_id, version"
                ),
                sla_events: fetch!(
                    self,
                    SlaEvent,
                    "SELECT complaint_id, kind, automatic, owner_id, at_us FROM rm_sla_events \
                     ORDER BY customer_id, version"
                ),
            })
        }
    }
}

pub mod complaints;

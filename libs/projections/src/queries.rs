//! Reading the read models: the questions managers, analysts and auditors ask.

use sqlx::{ColumnIndex, Decode, Row, Type};

use crate::calendar::{instant, maybe_instant};
use crate::store::{ReadError, ReadStore};

/// A customer as the ownership view shows it: profile attributes as they are now and the
/// current owner (none while the customer is in the pool).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct CustomerRow {
    /// The customer's id (a UUID).
    #[schema(format = "uuid")]
    pub customer_id: String,
    /// The kind of customer: `individual`, `enterprise` or `retail`.
    pub customer_type: String,
    /// The customer's display name. Personal data: opened for the caller where allowed,
    /// `***` for analysts, `[erased]` after an erasure, `[withheld]` when the service
    /// cannot open it.
    pub display_name: String,
    /// The customer's region, as registered or last changed in its profile.
    pub region: String,
    /// The customer's branch, as registered or last changed in its profile; null when
    /// none was given.
    pub branch: Option<String>,
    /// Where the customer first reached us: `branch`, `phone`, `web`, `app`, `event`,
    /// `referral` or `partner`.
    pub first_touch_channel: String,
    /// The customer's lifecycle stage now: `lead`, `contacted`, `qualified`, `customer`,
    /// `active`, `dormant` or `churned`.
    pub stage: String,
    /// The customer's value tier now: `high`, `mid` or `low`.
    pub value_tier: String,
    /// Assets under management, in minor units of the currency (fen/cents); null when
    /// not known.
    pub aum_minor: Option<i64>,
    /// Id (a UUID) of the manager who owns the customer now; null while the customer is
    /// in the pool.
    #[schema(format = "uuid")]
    pub owner_id: Option<String>,
    /// The owner's team, as the ownership change that gave the customer to them recorded
    /// it; null while in the pool.
    pub owner_team: Option<String>,
    /// The owner's region, as the ownership change that gave the customer to them recorded
    /// it; null while in the pool.
    pub owner_region: Option<String>,
    /// When the current owner received the customer (the ownership change's
    /// `occurred_at`), an RFC 3339 timestamp in UTC; null while in the pool.
    #[serde(rename = "owned_since", serialize_with = "maybe_instant")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub owned_since_us: Option<i64>,
    /// When the customer was registered (the registration's `registered_at`), an RFC 3339
    /// timestamp in UTC.
    #[serde(rename = "registered_at", serialize_with = "instant")]
    #[schema(value_type = String, format = DateTime)]
    pub registered_at_us: i64,
    /// When the latest recorded contact with the customer happened (by any manager; the
    /// latest by when it happened, so a contact recorded late, dated earlier, does not
    /// move it back), an RFC 3339 timestamp in UTC; null when there has been none.
    #[serde(rename = "last_contact_at", serialize_with = "maybe_instant")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_contact_at_us: Option<i64>,
    /// The next follow-up set by that latest contact, an RFC 3339 timestamp in UTC; null
    /// when it set none or there has been no contact.
    #[serde(rename = "next_follow_up", serialize_with = "maybe_instant")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub next_follow_up_us: Option<i64>,
}

/// One period of a customer's ownership by one manager, half-open: `[from, to)`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct PeriodRow {
    /// The customer's id (a UUID).
    #[schema(format = "uuid")]
    pub customer_id: String,
    /// Version in the customer's stream of the event that started the period (its
    /// position in the customer's history: 1, 2, …).
    pub start_version: i64,
    /// Id (a UUID) of the manager who owned the customer during the period.
    #[schema(format = "uuid")]
    pub manager_id: String,
    /// The owner's team when the period started, as the starting event recorded it.
    pub team: String,
    /// The owner's region when the period started, as the starting event recorded it.
    pub region: String,
    /// Start of the period (included): when the ownership change that started it
    /// happened (its `occurred_at`), an RFC 3339 timestamp in UTC.
    #[serde(rename = "from", serialize_with = "instant")]
    #[schema(value_type = String, format = DateTime)]
    pub from_us: i64,
    /// End of the period (excluded): when the ownership change that ended it happened,
    /// an RFC 3339 timestamp in UTC; null while the period lasts (the current owner).
    #[serde(rename = "to", serialize_with = "maybe_instant")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub to_us: Option<i64>,
    /// The event type that started the period: `OwnerAssigned`, `OwnershipTransferred`
    /// or `ClaimedFromPool`.
    pub start_event: String,
    /// The reason the starting event gives; null when it gives none (`ClaimedFromPool`).
    pub start_reason: Option<String>,
    /// Who issued the command that started the period: `person:<id>`, `service:<name>`,
    /// `person:<id> via service:<name>` or `system:<name>`.
    pub started_by: String,
    /// Id (a UUID) of the event that started the period.
    #[schema(format = "uuid")]
    pub start_event_id: String,
    /// The event type that ended the period (`OwnershipTransferred` or `ReleasedToPool`);
    /// null while the period lasts.
    pub end_event: Option<String>,
    /// Who issued the command that ended the period (as `started_by`); null while the
    /// period lasts.
    pub ended_by: Option<String>,
}

/// One line of a customer's timeline (customer 360): one event of its stream.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct TimelineRow {
    /// The customer's id (a UUID).
    #[schema(format = "uuid")]
    pub customer_id: String,
    /// The event's version in the customer's stream (1 for its first event, then 2, 3,
    /// …); pages are read newest first, below `before_version`.
    pub version: i64,
    /// Id (a UUID) of the stored event.
    #[schema(format = "uuid")]
    pub event_id: String,
    /// The event type (`CustomerRegistered`, `OwnerAssigned`, …; docs/events.md lists
    /// them).
    pub event_type: String,
    /// When the event happened (its `occurred_at`), an RFC 3339 timestamp in UTC.
    #[serde(rename = "occurred_at", serialize_with = "instant")]
    #[schema(value_type = String, format = DateTime)]
    pub occurred_at_us: i64,
    /// Who issued the command that produced the event: `person:<id>`, `service:<name>`,
    /// `person:<id> via service:<name>` or `system:<name>`.
    pub actor: String,
    /// A one-line human-readable summary of the event.
    pub summary: String,
}

/// A manager, for portfolios by team and region: the manager's org data as it is now.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct ManagerRow {
    /// The manager's id (a UUID).
    #[schema(format = "uuid")]
    pub manager_id: String,
    /// The manager's name.
    pub name: String,
    /// The manager's role: `manager`, `team_lead` or `branch_manager`.
    pub role: String,
    /// The manager's team.
    pub team: String,
    /// The manager's region.
    pub region: String,
    /// The manager's branch.
    pub branch: String,
    /// The manager's own holding limit (保有量上限): the most customers they may own at
    /// once, a count of customers (a team's limit in the policy may be lower).
    pub holding_limit: i64,
    /// Whether the manager is active; inactive (deactivated) managers receive no
    /// customers.
    pub active: bool,
}

/// Portfolio size of one owner (manager, team or region): customers owned now.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct PortfolioCount {
    /// The owner counted, as `by` asks: a manager's id (a UUID), a team or a region.
    pub key: String,
    /// Number of customers owned now by that manager, team or region (customers in the
    /// pool are not counted).
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

/// How to group portfolio sizes: by owner, by the owner's team, or by region.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
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

#[cfg(test)]
mod schema_tests {
    //! The OpenAPI schema of each row the query service answers with names exactly the
    //! fields of the row's JSON, in the same order, each with a description and a type
    //! (and format) that its JSON value has.

    use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
    use serde_json::Value;
    use utoipa::PartialSchema;

    use super::{CustomerRow, ManagerRow, PeriodRow, PortfolioCount, TimelineRow};
    use crate::funnel::{Conversion, StageCount, TimeInStage, TransitionCount};
    use crate::kpi::KpiRow;
    use crate::store::CheckpointRow;

    const C: &str = "01a2168e-366c-76b4-a02b-53952429568c";
    const M: &str = "01a2168e-3642-71f4-97b3-549a481d427a";
    const E: &str = "01a2168f-0000-7000-8000-000000000001";

    /// The keys of a JSON object in the order they are written (a `serde_json::Value`
    /// sorts them).
    struct Keys(Vec<String>);

    impl<'de> serde::Deserialize<'de> for Keys {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct Ordered;
            impl<'de> Visitor<'de> for Ordered {
                type Value = Keys;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("a JSON object")
                }
                fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Keys, A::Error> {
                    let mut keys = Vec::new();
                    while let Some((key, IgnoredAny)) = map.next_entry::<String, IgnoredAny>()? {
                        keys.push(key);
                    }
                    Ok(Keys(keys))
                }
            }
            d.deserialize_map(Ordered)
        }
    }

    #[derive(serde::Deserialize)]
    struct Properties {
        properties: Keys,
    }

    /// Checks that `row`'s schema names the keys of its JSON, in order; returns the schema
    /// and the row as JSON.
    fn same_names<T: serde::Serialize + PartialSchema>(row: &T) -> (Value, Value) {
        let schema_text = serde_json::to_string(&T::schema()).unwrap();
        let row_text = serde_json::to_string(row).unwrap();
        let names = serde_json::from_str::<Properties>(&schema_text).unwrap();
        let keys = serde_json::from_str::<Keys>(&row_text).unwrap();
        assert_eq!(
            names.properties.0,
            keys.0,
            "{}: schema properties ≠ JSON keys",
            std::any::type_name::<T>()
        );
        (
            serde_json::from_str(&schema_text).unwrap(),
            serde_json::from_str(&row_text).unwrap(),
        )
    }

    /// [`same_names`], and each property has a description and a type and format its
    /// value in `row`'s JSON has; returns the schema as JSON.
    fn agrees<T: serde::Serialize + PartialSchema>(row: &T) -> Value {
        let what = std::any::type_name::<T>();
        let (schema, json) = same_names(row);
        assert!(
            schema["description"]
                .as_str()
                .is_some_and(|d| !d.is_empty()),
            "{what} has no description"
        );
        for (name, value) in json.as_object().unwrap() {
            let p = &schema["properties"][name];
            assert!(
                p["description"].as_str().is_some_and(|d| !d.is_empty()),
                "{what}.{name} has no description"
            );
            let kind = match value {
                Value::Null => "null",
                Value::Bool(_) => "boolean",
                Value::Number(n) if n.is_f64() => "number",
                Value::Number(_) => "integer",
                Value::String(_) => "string",
                _ => panic!("{what}.{name}: unexpected {value}"),
            };
            let types: Vec<&str> = match &p["type"] {
                Value::String(t) => vec![t.as_str()],
                Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
                other => panic!("{what}.{name}: no type ({other})"),
            };
            assert!(
                types.contains(&kind),
                "{what}.{name}: JSON {kind}, schema {types:?}"
            );
            match (p["format"].as_str(), value.as_str()) {
                (Some("date-time"), Some(text)) => {
                    assert!(
                        chrono::DateTime::parse_from_rfc3339(text).is_ok(),
                        "{what}.{name}: {text:?} is not RFC 3339"
                    )
                }
                (Some("uuid"), Some(text)) => assert!(
                    uuid::Uuid::parse_str(text).is_ok(),
                    "{what}.{name}: {text:?} is not a UUID"
                ),
                (None, Some(text)) => assert!(
                    chrono::DateTime::parse_from_rfc3339(text).is_err(),
                    "{what}.{name}: {text:?} is an instant without format date-time"
                ),
                _ => {}
            }
        }
        schema
    }

    fn customer() -> CustomerRow {
        CustomerRow {
            customer_id: C.into(),
            customer_type: "individual".into(),
            display_name: "***".into(),
            region: "east".into(),
            branch: Some("east-1".into()),
            first_touch_channel: "web".into(),
            stage: "lead".into(),
            value_tier: "mid".into(),
            aum_minor: Some(1_234_500),
            owner_id: Some(M.into()),
            owner_team: Some("east-a".into()),
            owner_region: Some("east".into()),
            owned_since_us: Some(1_764_000_000_000_000),
            registered_at_us: 1_763_000_000_000_000,
            last_contact_at_us: Some(1_764_100_000_000_000),
            next_follow_up_us: Some(1_764_200_000_000_000),
        }
    }

    fn period() -> PeriodRow {
        PeriodRow {
            customer_id: C.into(),
            start_version: 2,
            manager_id: M.into(),
            team: "east-a".into(),
            region: "east".into(),
            from_us: 1_764_000_000_000_000,
            to_us: Some(1_765_000_000_000_000),
            start_event: "OwnerAssigned".into(),
            start_reason: Some("assigned on registration".into()),
            started_by: "system:policy".into(),
            start_event_id: E.into(),
            end_event: Some("ReleasedToPool".into()),
            ended_by: Some("system:scheduler".into()),
        }
    }

    #[test]
    fn schemas_name_and_type_exactly_what_the_rows_serialize() {
        // Every optional field present, then every one null.
        let c = agrees(&customer());
        agrees(&CustomerRow {
            branch: None,
            aum_minor: None,
            owner_id: None,
            owner_team: None,
            owner_region: None,
            owned_since_us: None,
            last_contact_at_us: None,
            next_follow_up_us: None,
            ..customer()
        });
        // `serde_json::to_value` sorts an object's keys (no `preserve_order`): the order is
        // checked on the JSON text above; here the same names as a set.
        let keys: Vec<String> = serde_json::to_value(customer())
            .unwrap()
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        let mut names: Vec<String> = c["properties"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        names.sort();
        assert_eq!(names, keys);
        assert_eq!(c["properties"]["registered_at"]["format"], "date-time");
        assert_eq!(c["properties"]["registered_at"]["type"], "string");
        assert_eq!(c["properties"]["owned_since"]["format"], "date-time");
        assert!(c["properties"].get("registered_at_us").is_none());
        assert!(c["properties"].get("owned_since_us").is_none());

        let p = agrees(&period());
        agrees(&PeriodRow {
            to_us: None,
            start_reason: None,
            end_event: None,
            ended_by: None,
            ..period()
        });
        assert_eq!(p["properties"]["from"]["format"], "date-time");
        assert_eq!(p["properties"]["to"]["format"], "date-time");
        assert!(p["properties"].get("from_us").is_none());

        // A KPI row's figures, some missing, and its periods as the calendar writes them.
        same_names(&KpiRow::default());
        let k = agrees(&KpiRow {
            key: M.into(),
            period_start_us: 1,
            period_end_us: 2,
            period_start: "2026-12-01T00:00:00+08:00".into(),
            period_end: "2026-12-02T00:00:00+08:00".into(),
            contact_coverage: Some(0.5),
            overdue_follow_ups: Some(3),
            first_response_median_s: Some(300),
            satisfaction_avg: Some(4.5),
            ..KpiRow::default()
        });
        assert_eq!(k["properties"]["period_start"]["format"], "date-time");
        assert!(k["properties"].get("period_start_us").is_none());
        assert!(k["properties"].get("period_end_us").is_none());

        agrees(&TimelineRow {
            customer_id: C.into(),
            version: 3,
            event_id: E.into(),
            event_type: "ContactRecorded".into(),
            occurred_at_us: 1_764_000_000_000_000,
            actor: "person:li.wei".into(),
            summary: "outbound phone contact".into(),
        });
        agrees(&ManagerRow {
            manager_id: M.into(),
            name: "Li Wei".into(),
            role: "manager".into(),
            team: "east-a".into(),
            region: "east".into(),
            branch: "east-1".into(),
            holding_limit: 200,
            active: true,
        });
        agrees(&PortfolioCount {
            key: "east-a".into(),
            customers: 12,
        });
        agrees(&StageCount {
            slice: "all".into(),
            stage: "lead".into(),
            customers: 4,
        });
        let t = agrees(&TransitionCount {
            period_start_us: 1,
            period_start: "2026-12-01T00:00:00+08:00".into(),
            slice: "pool".into(),
            from_stage: Some("dormant".into()),
            to_stage: "active".into(),
            transitions: 2,
            reactivations: 1,
        });
        assert!(t["properties"].get("period_start_us").is_none());
        agrees(&Conversion {
            slice: "east".into(),
            stage: "lead".into(),
            entered: 3,
            reached_next: 2,
            next_step_rate: Some(2.0 / 3.0),
            cumulative_rate: Some(1.0),
        });
        agrees(&TimeInStage {
            slice: "web".into(),
            stage: "lead".into(),
            completed_stays: 2,
            median_seconds: Some(7200),
        });
        agrees(&CheckpointRow {
            consumer: "projector-p00".into(),
            stream_sequence: 42,
            events_applied: 40,
            last_event_us: 1_764_000_000_000_000,
            updated_at_us: 1_764_000_001_000_000,
        });
    }
}

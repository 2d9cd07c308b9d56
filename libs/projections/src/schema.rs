//! The read models' tables, declared once: the live tables are created from these
//! declarations, and so are the fresh tables a rebuild fills before it switches over
//! (`crm projections rebuild`) and the scratch tables a verification compares against
//! (`crm projections verify`).
//!
//! Types are the ones PostgreSQL and SQLite both compare exactly: TEXT, BIGINT
//! (instants in microseconds since the epoch, flags 0/1).

/// One read model: a set of tables, and the last event version applied per stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Projection {
    pub name: &'static str,
    pub model: Model,
    pub about: &'static str,
    pub tables: &'static [Table],
}

/// Which read model a projection is: what [`crate::project`] decides for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Model {
    Ownership,
    Timeline,
    Analytics,
}

/// A read-model table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Table {
    pub name: &'static str,
    pub kind: Kind,
    /// Column definitions, as in `CREATE TABLE`.
    pub columns: &'static [(&'static str, &'static str)],
    pub primary_key: &'static [&'static str],
    /// (index name suffix, columns).
    pub indexes: &'static [(&'static str, &'static str)],
    /// The migration that creates the live table (1001, 1002, …): a table added later
    /// gets a new migration, so existing databases are never asked to re-run an old one.
    pub since: i64,
}

/// How a table's rows come and go, which decides how a rebuild holds them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Rows are only ever inserted: a rebuild writes them out page by page.
    Log,
    /// Rows are updated or read back by later events: a rebuild keeps them in memory
    /// until the end. Every update names the row group by the first key column.
    State,
    /// Counters: rows only ever have amounts added to them ([`crate::change::Add`]), by
    /// their whole key; the adds of a batch are summed before they are written. Since
    /// migration 1010 each key's amounts are kept per stripe ([`Table::striped`]).
    Counter,
    /// What the read model remembers of each customer between events (its first column
    /// is the customer id): projecting an event may read it ([`crate::project::Memo`]),
    /// so the projector reads the rows of a batch's customers before it projects them.
    Memo,
}

/// A column of a read-model table, resolved to its position when the program is
/// compiled ([`col`]), so a change names columns, never positions or SQL text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Col {
    pub table: &'static str,
    pub name: &'static str,
    /// Position in the table's `columns`.
    pub index: usize,
    /// Whether it holds integers (`BIGINT`), else text.
    pub int: bool,
    /// The first column of its table, which groups its rows ([`Table::group_col`]).
    pub group: &'static str,
}

/// Column `name` of `t`; naming a column `t` does not have fails the build.
pub const fn col(t: &Table, name: &'static str) -> Col {
    let mut i = 0;
    while i < t.columns.len() {
        if eq(t.columns[i].0, name) {
            return Col {
                table: t.name,
                name,
                index: i,
                int: starts_with(t.columns[i].1, "BIGINT"),
                group: t.columns[0].0,
            };
        }
        i += 1;
    }
    panic!("no such column")
}

const fn eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && starts_with(a, b)
}

const fn starts_with(a: &str, prefix: &str) -> bool {
    let (a, b) = (a.as_bytes(), prefix.as_bytes());
    if a.len() < b.len() {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// The migration from which counter rows are kept per stripe ([`Table::striped`]).
pub const STRIPES_SINCE: i64 = 1010;

/// The column holding a counter row's stripe: not among a table's declared columns, since
/// no change names it; the SQL of the read side's write path adds it ([`crate::sql`]).
pub const STRIPE: &str = "stripe";

impl Table {
    /// Whether its rows are kept per stripe: a counter's, once migration
    /// [`STRIPES_SINCE`] has run (`as_created: Some(m)`: the table as migration `m` left
    /// it; `None`: now). A key has a row per stripe that added to it, and its count is
    /// their sum: a writer adds to a stripe no other writer uses at once (the projector's
    /// transaction, its lowest partition's), so concurrent transactions never queue on
    /// one another's row locks for the rows every batch adds to (the funnel's "all"
    /// counts of the day) until they commit; questions sum the stripes, and
    /// [`crate::store::ReadStore::fold_counters`] moves them into stripe 0 now and then.
    pub fn striped(&self, as_created: Option<i64>) -> bool {
        self.kind == Kind::Counter && as_created.is_none_or(|m| m >= STRIPES_SINCE)
    }

    /// The positions of the key columns in `columns`, in key order.
    pub fn key_columns(&self) -> Vec<usize> {
        self.primary_key
            .iter()
            .map(|k| {
                self.columns
                    .iter()
                    .position(|(c, _)| c == k)
                    .unwrap_or_else(|| panic!("{} has no key column {k}", self.name))
            })
            .collect()
    }

    /// The column rows are grouped by: the first key column, which is the table's first
    /// column (a test checks). An update names the group it changes rows in.
    pub const fn group_col(&self) -> Col {
        col(self, self.columns[0].0)
    }
}

impl Projection {
    /// The table holding, per event stream, the last version this projection applied.
    pub fn positions_table(&self) -> String {
        format!("rm_{}_positions", self.name)
    }

    /// Every table of the projection, its positions table included.
    pub fn table_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.tables.iter().map(|t| t.name.to_string()).collect();
        names.push(self.positions_table());
        names
    }

    /// This projection's table called `name`.
    pub fn table(&self, name: &str) -> Option<&'static Table> {
        self.tables.iter().find(|t| t.name == name)
    }
}

/// Current owner, portfolios, the pool, ownership timeline and "owner at T"; managers.
pub const OWNERSHIP: Projection = Projection {
    name: "ownership",
    model: Model::Ownership,
    about: "current owner, portfolios, pool, ownership timeline, owner as of an instant, managers",
    tables: &[CUSTOMERS, OWNERSHIP_PERIODS, MANAGERS],
};

/// Customer 360: every event of a customer.
pub const TIMELINE: Projection = Projection {
    name: "timeline",
    model: Model::Timeline,
    about: "customer 360: every event of a customer, newest first",
    tables: &[TIMELINE_ROWS],
};

/// Facts of the lifecycle funnel and the manager KPIs.
pub const ANALYTICS: Projection = Projection {
    name: "analytics",
    model: Model::Analytics,
    about: "facts of the lifecycle funnel and the manager KPIs",
    tables: &[
        ANALYTICS_CUSTOMERS,
        STAGE_PERIODS,
        STAGE_TRANSITIONS,
        CONTACTS,
        COMPLAINTS,
        REFERRALS,
        PURCHASES,
        POOL_EVENTS,
        SLA_EVENTS,
        FUNNEL_NOW,
        FUNNEL_MONTHS,
        FUNNEL_DAYS,
        FUNNEL_MOVES,
        KPI_CUSTOMERS,
        KPI_SPANS,
        KPI_DAYS,
        KPI_MONTHS,
        KPI_GAPS,
        KPI_COMPLAINTS,
        KPI_WINS,
    ],
};

/// Every read model, in the order changes are applied.
pub const PROJECTIONS: [Projection; 3] = [OWNERSHIP, TIMELINE, ANALYTICS];

pub const CUSTOMERS: Table = Table {
    name: "rm_customers",
    kind: Kind::State,
    since: 1001,
    columns: &[
        ("customer_id", "TEXT NOT NULL"),
        ("customer_type", "TEXT NOT NULL"),
        ("display_name", "TEXT NOT NULL"),
        ("region", "TEXT NOT NULL"),
        ("branch", "TEXT"),
        ("first_touch_channel", "TEXT NOT NULL"),
        ("stage", "TEXT NOT NULL"),
        ("value_tier", "TEXT NOT NULL"),
        ("aum_minor", "BIGINT"),
        ("owner_id", "TEXT"),
        ("owner_team", "TEXT"),
        ("owner_region", "TEXT"),
        ("owned_since_us", "BIGINT"),
        ("registered_at_us", "BIGINT NOT NULL"),
        ("last_contact_at_us", "BIGINT"),
        ("next_follow_up_us", "BIGINT"),
    ],
    primary_key: &["customer_id"],
    indexes: &[("owner_idx", "owner_id")],
};

pub const OWNERSHIP_PERIODS: Table = Table {
    name: "rm_ownership_periods",
    kind: Kind::State,
    since: 1001,
    columns: &[
        ("customer_id", "TEXT NOT NULL"),
        ("start_version", "BIGINT NOT NULL"),
        ("manager_id", "TEXT NOT NULL"),
        ("team", "TEXT NOT NULL"),
        ("region", "TEXT NOT NULL"),
        ("from_us", "BIGINT NOT NULL"),
        ("to_us", "BIGINT"),
        ("start_event", "TEXT NOT NULL"),
        ("start_reason", "TEXT"),
        ("started_by", "TEXT NOT NULL"),
        ("start_event_id", "TEXT NOT NULL"),
        ("end_event", "TEXT"),
        ("ended_by", "TEXT"),
    ],
    primary_key: &["customer_id", "start_version"],
    indexes: &[("manager_idx", "manager_id, from_us")],
};

pub const MANAGERS: Table = Table {
    name: "rm_managers",
    kind: Kind::State,
    since: 1001,
    columns: &[
        ("manager_id", "TEXT NOT NULL"),
        ("name", "TEXT NOT NULL"),
        ("role", "TEXT NOT NULL"),
        ("team", "TEXT NOT NULL"),
        ("region", "TEXT NOT NULL"),
        ("branch", "TEXT NOT NULL"),
        ("holding_limit", "BIGINT NOT NULL"),
        ("active", "BIGINT NOT NULL"),
    ],
    primary_key: &["manager_id"],
    indexes: &[],
};

pub const TIMELINE_ROWS: Table = Table {
    name: "rm_timeline",
    kind: Kind::Log,
    since: 1001,
    columns: &[
        ("customer_id", "TEXT NOT NULL"),
        ("version", "BIGINT NOT NULL"),
        ("event_id", "TEXT NOT NULL"),
        ("event_type", "TEXT NOT NULL"),
        ("occurred_at_us", "BIGINT NOT NULL"),
        ("actor", "TEXT NOT NULL"),
        ("summary", "TEXT NOT NULL"),
        // No payload: the query service reads it from the event store, by stream
        // and version (migration 1003 dropped the column).
    ],
    primary_key: &["customer_id", "version"],
    indexes: &[],
};

/// Retired in migration 1004 (`rm_analytics_customers` remembers the owner now); declared
/// still because migration 1001 created it.
pub const ANALYTICS_OWNERS: Table = Table {
    // The owner as this projection sees it, to credit stage moves (the
    // projection keeps its own, so it can be rebuilt alone).
    name: "rm_analytics_owners",
    kind: Kind::Memo,
    since: 1001,
    columns: &[("customer_id", "TEXT NOT NULL"), ("owner_id", "TEXT")],
    primary_key: &["customer_id"],
    indexes: &[],
};

pub const STAGE_PERIODS: Table = Table {
    name: "rm_stage_periods",
    kind: Kind::State,
    since: 1001,
    columns: &[
        ("customer_id", "TEXT NOT NULL"),
        ("start_version", "BIGINT NOT NULL"),
        ("stage", "TEXT NOT NULL"),
        ("from_us", "BIGINT NOT NULL"),
        ("to_us", "BIGINT"),
    ],
    primary_key: &["customer_id", "start_version"],
    indexes: &[],
};

pub const STAGE_TRANSITIONS: Table = Table {
    name: "rm_stage_transitions",
    kind: Kind::Log,
    since: 1001,
    columns: &[
        ("customer_id", "TEXT NOT NULL"),
        ("version", "BIGINT NOT NULL"),
        ("from_stage", "TEXT"),
        ("to_stage", "TEXT NOT NULL"),
        ("at_us", "BIGINT NOT NULL"),
        ("reactivated", "BIGINT NOT NULL"),
        ("owner_id", "TEXT"),
    ],
    primary_key: &["customer_id", "version"],
    indexes: &[("at_idx", "at_us")],
};

pub const CONTACTS: Table = Table {
    name: "rm_contacts",
    kind: Kind::Log,
    since: 1001,
    columns: &[
        ("customer_id", "TEXT NOT NULL"),
        ("version", "BIGINT NOT NULL"),
        ("manager_id", "TEXT NOT NULL"),
        ("by_owner", "BIGINT NOT NULL"),
        ("channel", "TEXT NOT NULL"),
        ("outcome", "TEXT NOT NULL"),
        ("at_us", "BIGINT NOT NULL"),
    ],
    primary_key: &["customer_id", "version"],
    indexes: &[("manager_idx", "manager_id, at_us")],
};

pub const COMPLAINTS: Table = Table {
    name: "rm_complaints",
    kind: Kind::State,
    since: 1001,
    columns: &[
        ("complaint_id", "TEXT NOT NULL"),
        ("customer_id", "TEXT NOT NULL"),
        ("owner_id", "TEXT"),
        ("severity", "TEXT NOT NULL"),
        ("logged_at_us", "BIGINT NOT NULL"),
        ("first_response_s", "BIGINT"),
        ("first_response_in_sla", "BIGINT"),
        ("resolved_at_us", "BIGINT"),
        ("resolution_s", "BIGINT"),
        ("resolution_in_sla", "BIGINT"),
        ("resolved_by", "TEXT"),
        ("resolutions", "BIGINT NOT NULL"),
        ("resolution_breaches", "BIGINT NOT NULL"),
        ("reopens", "BIGINT NOT NULL"),
        ("escalations", "BIGINT NOT NULL"),
        ("closed_at_us", "BIGINT"),
        ("satisfaction", "BIGINT"),
        // The running clocks' deadlines, as the events set them (1006): the first
        // response's from logging; the resolution's from logging, then from the last
        // reopening. NULL on rows projected before 1006 until a rebuild.
        ("first_response_due_us", "BIGINT"),
        ("resolution_due_us", "BIGINT"),
    ],
    primary_key: &["complaint_id"],
    indexes: &[
        ("owner_idx", "owner_id, logged_at_us"),
        // The open complaints oldest first, a page at a time (1007).
        ("logged_idx", "logged_at_us, complaint_id"),
        // Where the complaints not past their resolution deadline begin (1008).
        ("due_idx", "resolution_due_us"),
        // A customer's complaints, oldest first (1009).
        ("customer_idx", "customer_id, logged_at_us"),
    ],
};

pub const REFERRALS: Table = Table {
    name: "rm_referrals",
    kind: Kind::State,
    since: 1001,
    columns: &[
        ("referral_id", "TEXT NOT NULL"),
        ("customer_id", "TEXT NOT NULL"),
        ("referrer", "TEXT NOT NULL"),
        ("referred_to", "TEXT NOT NULL"),
        ("recorded_at_us", "BIGINT NOT NULL"),
        ("converted_at_us", "BIGINT"),
    ],
    primary_key: &["referral_id"],
    indexes: &[],
};

pub const PURCHASES: Table = Table {
    name: "rm_purchases",
    kind: Kind::Log,
    since: 1001,
    columns: &[
        ("purchase_id", "TEXT NOT NULL"),
        ("customer_id", "TEXT NOT NULL"),
        ("manager_id", "TEXT"),
        ("product_line", "TEXT NOT NULL"),
        ("amount_minor", "BIGINT NOT NULL"),
        ("currency", "TEXT NOT NULL"),
        ("at_us", "BIGINT NOT NULL"),
    ],
    primary_key: &["purchase_id"],
    indexes: &[],
};

pub const POOL_EVENTS: Table = Table {
    name: "rm_pool_events",
    kind: Kind::Log,
    since: 1002,
    columns: &[
        ("customer_id", "TEXT NOT NULL"),
        ("version", "BIGINT NOT NULL"),
        // warning | return (automatic returns only; a person's release is an
        // ownership period ended by ReleasedToPool)
        ("kind", "TEXT NOT NULL"),
        ("manager_id", "TEXT NOT NULL"),
        ("cause", "TEXT NOT NULL"),
        ("due_us", "BIGINT NOT NULL"),
        ("at_us", "BIGINT NOT NULL"),
        ("policy_version", "BIGINT NOT NULL"),
    ],
    primary_key: &["customer_id", "version"],
    indexes: &[("manager_idx", "manager_id, at_us")],
};

pub const SLA_EVENTS: Table = Table {
    name: "rm_sla_events",
    kind: Kind::Log,
    since: 1002,
    columns: &[
        ("customer_id", "TEXT NOT NULL"),
        ("version", "BIGINT NOT NULL"),
        ("complaint_id", "TEXT NOT NULL"),
        // warning | breach | escalation
        ("kind", "TEXT NOT NULL"),
        ("clock", "TEXT"),
        ("due_us", "BIGINT"),
        ("level", "BIGINT"),
        ("escalated_to", "TEXT"),
        ("automatic", "BIGINT NOT NULL"),
        ("owner_id", "TEXT"),
        ("at_us", "BIGINT NOT NULL"),
    ],
    primary_key: &["customer_id", "version"],
    indexes: &[("complaint_idx", "complaint_id")],
};

/// The funnel as the analytics read model keeps it, so customers per stage now and as of
/// any instant are read from a few hundred rows whatever the size of the book: every
/// change of a customer's membership in a (slice, stage) is a delta of ±1 at its instant,
/// summed per local month and day (of the analytics zone, `rm_kept.time_zone`); each
/// move is kept (`rm_funnel_moves`) for the part of a day before an instant. Slices by kind: `all`, `region`, `first_touch_channel`,
/// `customer_type`, `value_tier` (as the customer's are now: a change rewrites the
/// customer's history) and `team` (the owner's at the instant; `pool`).
pub const ANALYTICS_CUSTOMERS: Table = Table {
    // What the analytics read model remembers of a customer between events (so it can
    // be rebuilt alone): its owner (to credit stage moves and SLA events), its stage and
    // slices now, and its stays (JSON: [[stage, from_us, to_us or null], …]), to move
    // its history when its region or value tier changes. Replaces rm_analytics_owners.
    name: "rm_analytics_customers",
    kind: Kind::Memo,
    since: 1004,
    columns: &[
        ("customer_id", "TEXT NOT NULL"),
        ("owner_id", "TEXT"),
        ("stage", "TEXT NOT NULL"),
        ("region", "TEXT NOT NULL"),
        ("first_touch_channel", "TEXT NOT NULL"),
        ("customer_type", "TEXT NOT NULL"),
        ("value_tier", "TEXT NOT NULL"),
        ("team", "TEXT NOT NULL"),
        ("stays", "TEXT NOT NULL"),
    ],
    primary_key: &["customer_id"],
    indexes: &[],
};

/// Customers per slice and stage now.
pub const FUNNEL_NOW: Table = Table {
    name: "rm_funnel_now",
    kind: Kind::Counter,
    since: 1004,
    columns: &[
        ("kind", "TEXT NOT NULL"),
        ("value", "TEXT NOT NULL"),
        ("stage", "TEXT NOT NULL"),
        ("customers", "BIGINT NOT NULL"),
    ],
    primary_key: &["kind", "value", "stage"],
    indexes: &[],
};

/// The deltas of each local month of the analytics zone (months since 1970-01).
pub const FUNNEL_MONTHS: Table = Table {
    name: "rm_funnel_months",
    kind: Kind::Counter,
    since: 1004,
    columns: &[
        ("kind", "TEXT NOT NULL"),
        ("value", "TEXT NOT NULL"),
        ("stage", "TEXT NOT NULL"),
        ("month", "BIGINT NOT NULL"),
        ("customers", "BIGINT NOT NULL"),
    ],
    primary_key: &["kind", "value", "stage", "month"],
    indexes: &[("month_idx", "kind, month")],
};

/// The deltas of each local day of the analytics zone (days since 1970-01-01).
pub const FUNNEL_DAYS: Table = Table {
    name: "rm_funnel_days",
    kind: Kind::Counter,
    since: 1004,
    columns: &[
        ("kind", "TEXT NOT NULL"),
        ("value", "TEXT NOT NULL"),
        ("stage", "TEXT NOT NULL"),
        ("day", "BIGINT NOT NULL"),
        ("customers", "BIGINT NOT NULL"),
    ],
    primary_key: &["kind", "value", "stage", "day"],
    indexes: &[("day_idx", "kind, day")],
};

/// Every move of a customer between (slices, stage) places, at its instant (the `n`-th
/// of the event that caused it): from nowhere at registration; a kind whose value does
/// not change has it on both sides.
pub const FUNNEL_MOVES: Table = Table {
    name: "rm_funnel_moves",
    kind: Kind::Log,
    since: 1004,
    columns: &[
        ("customer_id", "TEXT NOT NULL"),
        ("version", "BIGINT NOT NULL"),
        ("n", "BIGINT NOT NULL"),
        ("at_us", "BIGINT NOT NULL"),
        ("from_stage", "TEXT"),
        ("to_stage", "TEXT NOT NULL"),
        ("from_region", "TEXT"),
        ("to_region", "TEXT NOT NULL"),
        ("from_first_touch_channel", "TEXT"),
        ("to_first_touch_channel", "TEXT NOT NULL"),
        ("from_customer_type", "TEXT"),
        ("to_customer_type", "TEXT NOT NULL"),
        ("from_value_tier", "TEXT"),
        ("to_value_tier", "TEXT NOT NULL"),
        ("from_team", "TEXT"),
        ("to_team", "TEXT NOT NULL"),
    ],
    primary_key: &["customer_id", "version", "n"],
    indexes: &[("at_idx", "at_us")],
};

/// What the KPI ledger remembers of a customer (`ledger.rs`): JSON of its ownership
/// periods, runs of contacts per manager, lead stays, value tier and AUM, referrals.
pub const KPI_CUSTOMERS: Table = Table {
    name: "rm_kpi_customers",
    kind: Kind::Memo,
    since: 1005,
    columns: &[
        ("customer_id", "TEXT NOT NULL"),
        ("ledger", "TEXT NOT NULL"),
    ],
    primary_key: &["customer_id"],
    indexes: &[],
};

/// A customer's spans, the `n`-th of their kind: `owned` (an ownership period, as the
/// ownership read model has it), `covered` (owned and contacted by the owner in the 30
/// days before), `overdue` (owned with its next follow-up, as it is now, before); an
/// owned one carries the customer's tier and AUM (as they are now). A span
/// the customer no longer has is emptied (no manager, from = to = 0). Read for the day
/// that holds "now", whose snapshot is taken at an instant (the days before it are in
/// `rm_kpi_days`).
pub const KPI_SPANS: Table = Table {
    name: "rm_kpi_spans",
    kind: Kind::State,
    since: 1005,
    columns: &[
        ("customer_id", "TEXT NOT NULL"),
        ("kind", "TEXT NOT NULL"),
        ("n", "BIGINT NOT NULL"),
        ("manager_id", "TEXT NOT NULL"),
        ("from_us", "BIGINT NOT NULL"),
        ("to_us", "BIGINT"),
        ("value_tier", "TEXT"),
        ("value_minor", "BIGINT NOT NULL"),
    ],
    primary_key: &["customer_id", "kind", "n"],
    indexes: &[("from_idx", "from_us"), ("to_idx", "to_us")],
};

/// Per manager and local day of the ledger's time zone (days since 1970-01-01): the
/// flows of the day (and the complaints logged that day, as they stand), and the deltas
/// of the snapshots (portfolio, tiers, value, covered, overdue) and of the lead stretches
/// (started that day; ended, last owned as a lead, that day).
pub const KPI_DAYS: Table = Table {
    name: "rm_kpi_days",
    kind: Kind::Counter,
    since: 1005,
    columns: &[
        ("day", "BIGINT NOT NULL"),
        ("manager_id", "TEXT NOT NULL"),
        ("portfolio", "BIGINT NOT NULL"),
        ("tier_high", "BIGINT NOT NULL"),
        ("tier_mid", "BIGINT NOT NULL"),
        ("tier_low", "BIGINT NOT NULL"),
        ("value_minor", "BIGINT NOT NULL"),
        ("covered", "BIGINT NOT NULL"),
        ("overdue", "BIGINT NOT NULL"),
        ("lead_starts", "BIGINT NOT NULL"),
        ("lead_ends", "BIGINT NOT NULL"),
        ("contacts", "BIGINT NOT NULL"),
        ("transitions", "BIGINT NOT NULL"),
        ("won", "BIGINT NOT NULL"),
        ("reactivated", "BIGINT NOT NULL"),
        ("lost", "BIGINT NOT NULL"),
        ("returned", "BIGINT NOT NULL"),
        ("pool_warnings", "BIGINT NOT NULL"),
        ("sla_warnings", "BIGINT NOT NULL"),
        ("sla_breaches", "BIGINT NOT NULL"),
        ("escalations", "BIGINT NOT NULL"),
        ("automatic_escalations", "BIGINT NOT NULL"),
        ("referrals_made", "BIGINT NOT NULL"),
        ("referrals_converted", "BIGINT NOT NULL"),
        ("complaints", "BIGINT NOT NULL"),
        ("complaints_breached", "BIGINT NOT NULL"),
        ("complaints_resolved", "BIGINT NOT NULL"),
        ("complaints_reopened", "BIGINT NOT NULL"),
        ("satisfaction_sum", "BIGINT NOT NULL"),
        ("satisfaction_n", "BIGINT NOT NULL"),
    ],
    // By day first: a question reads a range of days.
    primary_key: &["day", "manager_id"],
    indexes: &[],
};

/// The snapshot and lead-stretch deltas of `rm_kpi_days`, per manager and local month
/// (months since 1970-01), so a snapshot sums months, then days.
pub const KPI_MONTHS: Table = Table {
    name: "rm_kpi_months",
    kind: Kind::Counter,
    since: 1005,
    columns: &[
        ("manager_id", "TEXT NOT NULL"),
        ("month", "BIGINT NOT NULL"),
        ("portfolio", "BIGINT NOT NULL"),
        ("tier_high", "BIGINT NOT NULL"),
        ("tier_mid", "BIGINT NOT NULL"),
        ("tier_low", "BIGINT NOT NULL"),
        ("value_minor", "BIGINT NOT NULL"),
        ("covered", "BIGINT NOT NULL"),
        ("overdue", "BIGINT NOT NULL"),
        ("lead_starts", "BIGINT NOT NULL"),
        ("lead_ends", "BIGINT NOT NULL"),
    ],
    primary_key: &["manager_id", "month"],
    indexes: &[],
};

/// A customer's complaints as the KPIs count them, credited to the owner when logged:
/// durations in seconds (the latest), breached (a response or resolution outside its
/// SLA, or a breach recorded), resolved, reopened after a resolution, satisfaction;
/// `day`: the local day it was logged.
pub const KPI_COMPLAINTS: Table = Table {
    name: "rm_kpi_complaints",
    kind: Kind::State,
    since: 1005,
    // By when they were logged first: a question reads a range of them.
    columns: &[
        ("logged_at_us", "BIGINT NOT NULL"),
        ("complaint_id", "TEXT NOT NULL"),
        ("customer_id", "TEXT NOT NULL"),
        ("manager_id", "TEXT"),
        ("day", "BIGINT NOT NULL"),
        ("first_response_s", "BIGINT"),
        ("resolution_s", "BIGINT"),
        ("breached", "BIGINT NOT NULL"),
        ("resolved", "BIGINT NOT NULL"),
        ("reopened", "BIGINT NOT NULL"),
        ("satisfaction", "BIGINT"),
    ],
    primary_key: &["logged_at_us", "complaint_id"],
    indexes: &[],
};

/// A customer's wins (moves to `customer` while owned), the `n`-th: the winner, when,
/// and its lead stretches of the customer around it: the last instant of the latest one
/// that began by the win (`i64::MAX` while open; NULL: none), the start of the first one
/// after it (NULL: none). A win converts a lead in a bucket that holds either. `day`:
/// the win's local day; `converts_on`: the same day if it converts a lead in a bucket of
/// that day alone (else NULL), for BI views.
pub const KPI_WINS: Table = Table {
    name: "rm_kpi_wins",
    kind: Kind::State,
    since: 1005,
    // By instant first: a question reads a range of them.
    columns: &[
        ("at_us", "BIGINT NOT NULL"),
        ("customer_id", "TEXT NOT NULL"),
        ("n", "BIGINT NOT NULL"),
        ("manager_id", "TEXT NOT NULL"),
        ("lead_until_us", "BIGINT"),
        ("lead_next_us", "BIGINT"),
        ("day", "BIGINT NOT NULL"),
        ("converts_on", "BIGINT"),
    ],
    primary_key: &["at_us", "customer_id", "n"],
    indexes: &[],
};

/// Gaps between two lead stretches of one manager and customer: (last day of the one,
/// first day of the next). A bucket holding both days holds both stretches, and counts
/// the pair once.
pub const KPI_GAPS: Table = Table {
    name: "rm_kpi_gaps",
    kind: Kind::Counter,
    since: 1005,
    columns: &[
        ("manager_id", "TEXT NOT NULL"),
        ("first_day", "BIGINT NOT NULL"),
        ("last_day", "BIGINT NOT NULL"),
        ("n", "BIGINT NOT NULL"),
    ],
    primary_key: &["manager_id", "first_day", "last_day"],
    indexes: &[("first_idx", "first_day")],
};

/// The projection called `name`.
pub fn by_name(name: &str) -> Option<Projection> {
    PROJECTIONS.iter().copied().find(|p| p.name == name)
}

/// A column a later migration dropped from a table: migration 1001's SQL, frozen, is
/// still produced from the declarations with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DroppedColumn {
    pub migration: i64,
    pub table: &'static str,
    pub column: &'static str,
    /// As created; dropped columns were each their table's last.
    pub definition: &'static str,
}

/// Every column dropped since its table was created.
pub const DROPPED_COLUMNS: &[DroppedColumn] = &[DroppedColumn {
    // Timeline rows carried a copy of the event's payload: the event store holds it,
    // and writing it again was most of a timeline rebuild's cost.
    migration: 1003,
    table: "rm_timeline",
    column: "payload",
    definition: "TEXT NOT NULL",
}];

/// A column a later migration added to a table created before it: the SQL of the
/// migration that created the table, frozen, is still produced from the declarations
/// without it. Added columns are each their table's last, in the order added (as
/// `ALTER TABLE … ADD COLUMN` leaves them, so a rebuilt table has the live one's order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddedColumn {
    pub migration: i64,
    pub table: &'static str,
    pub column: &'static str,
}

/// Every column added to a table after it was created.
pub const ADDED_COLUMNS: &[AddedColumn] = &[
    AddedColumn {
        // So the workbench can tell an open complaint's SLA state exactly (due, warned,
        // breached): which deadline each running clock has now.
        migration: 1006,
        table: "rm_complaints",
        column: "first_response_due_us",
    },
    AddedColumn {
        migration: 1006,
        table: "rm_complaints",
        column: "resolution_due_us",
    },
];

/// An index a later migration added to a table created before it: the SQL of the
/// migration that created the table, frozen, is still produced from the declarations
/// without it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddedIndex {
    pub migration: i64,
    pub table: &'static str,
    /// Its name among the table's `indexes`.
    pub index: &'static str,
}

/// Every index added to a table after it was created.
pub const ADDED_INDEXES: &[AddedIndex] = &[
    AddedIndex {
        // The workbench's open complaints, oldest first, 50 a page: without it each page
        // sorted every open complaint (2.7 s at W2's size).
        migration: 1007,
        table: "rm_complaints",
        index: "logged_idx",
    },
    AddedIndex {
        // The open complaints due or warned begin with the oldest not past its
        // resolution deadline: without it, a page of them judged every older complaint
        // first (0.6-1.0 s at W2's size).
        migration: 1008,
        table: "rm_complaints",
        index: "due_idx",
    },
    AddedIndex {
        // The query API's complaints of one customer (`/v1/complaints?customer_id=`):
        // without it, every complaint is read to find one customer's.
        migration: 1009,
        table: "rm_complaints",
        index: "customer_idx",
    },
];

/// Tables a later migration dropped: (their projection, table, that migration). Migration
/// 1001's SQL, frozen, is still produced from their declarations (each first among its
/// projection's tables, where it was).
pub const RETIRED_TABLES: &[(&str, Table, i64)] = &[("analytics", ANALYTICS_OWNERS, 1004)];

/// Tables of the projector itself, not of a read model.
pub const SERVICE_DDL: &[&str] = &[
    "CREATE TABLE rm_checkpoints (consumer TEXT PRIMARY KEY, stream_sequence BIGINT NOT NULL, \
     events_applied BIGINT NOT NULL, last_event_us BIGINT NOT NULL, updated_at_us BIGINT NOT NULL)",
    "CREATE TABLE rm_dead_letters (event_id TEXT PRIMARY KEY, stream_id TEXT NOT NULL, \
     version BIGINT NOT NULL, event_type TEXT NOT NULL, reason TEXT NOT NULL, recorded_us BIGINT NOT NULL)",
    "CREATE TABLE rm_projector_instances (instance_id TEXT PRIMARY KEY, group_name TEXT NOT NULL, \
     heartbeat_us BIGINT NOT NULL)",
];

/// The first migration, as released: frozen. A test checks that the declarations of the
/// tables it created (`since: 1001`) still produce exactly this SQL; a change to one of
/// them needs a new migration instead.
pub const FIRST_MIGRATION: &str = include_str!("../migrations/1001_read_models.sql");

pub use crate::sql::migration_sql;

/// Migration 1006 as released: frozen like the first (a test checks the declarations
/// still produce it).
pub const COMPLAINT_DEADLINES_MIGRATION: &str =
    include_str!("../migrations/1006_complaint_deadlines.sql");

/// Migration 1010 as released: frozen like the first (a test checks the declarations
/// still produce it).
pub const STRIPES_MIGRATION: &str = include_str!("../migrations/1010_counters_by_stripe.sql");

/// Statements a migration runs after creating its tables and before dropping what it
/// drops: (migration, statements).
pub const MIGRATION_STEPS: &[(i64, &[&str])] = &[
    (
        1004,
        &[
            // Which kept aggregates are complete: filled from the whole log. A database that
            // had analytics before the funnel was kept has them only from the upgrade on,
            // until `crm projections rebuild analytics` fills them (the query service answers
            // from the facts meanwhile); a new one has them from the first event.
            "CREATE TABLE rm_kept (read_model TEXT PRIMARY KEY, complete BIGINT NOT NULL)",
            "INSERT INTO rm_kept (read_model, complete) SELECT 'analytics', CASE WHEN EXISTS \
         (SELECT 1 FROM rm_analytics_positions) THEN 0 ELSE 1 END",
            // What analytics remembered (the owner) moves to its new memo, with each
            // customer's place as the ownership read model has it now (its stays are not
            // known: the rebuild fills them), so stage moves and SLA events go on being
            // credited to the owner until then.
            "INSERT INTO rm_analytics_customers (customer_id, owner_id, stage, region, \
         first_touch_channel, customer_type, value_tier, team, stays) \
         SELECT c.customer_id, o.owner_id, c.stage, c.region, c.first_touch_channel, \
         c.customer_type, c.value_tier, COALESCE(c.owner_team, 'pool'), '[]' \
         FROM rm_customers c LEFT JOIN rm_analytics_owners o ON o.customer_id = c.customer_id",
        ],
    ),
    (
        1005,
        &[
            // The KPI ledger counts local days of one time zone: the one it was built in.
            // Like the funnel, a database with analytics before it has it only once
            // `crm projections rebuild analytics` has run.
            "ALTER TABLE rm_kept ADD COLUMN time_zone TEXT",
            // The funnel's days and months become the zone's (they were UTC's).
            "UPDATE rm_kept SET complete = 0 WHERE read_model = 'analytics' \
             AND EXISTS (SELECT 1 FROM rm_analytics_positions)",
            "INSERT INTO rm_kept (read_model, complete, time_zone) SELECT 'kpis', CASE WHEN \
             EXISTS (SELECT 1 FROM rm_analytics_positions) THEN 0 ELSE 1 END, 'Asia/Shanghai'",
        ],
    ),
];

/// Every migration of the read models: (version, description, SQL), in order.
pub fn migrations() -> Vec<(i64, &'static str, String)> {
    vec![
        (1001, "read models", FIRST_MIGRATION.to_string()),
        (1002, "pool and SLA events", migration_sql(1002)),
        (1003, "timeline rows without payloads", migration_sql(1003)),
        (1004, "the funnel kept", migration_sql(1004)),
        (1005, "the KPIs kept", migration_sql(1005)),
        (
            1006,
            "complaint deadlines",
            COMPLAINT_DEADLINES_MIGRATION.to_string(),
        ),
        (1007, "open complaints in order", migration_sql(1007)),
        (
            1008,
            "complaints by resolution deadline",
            migration_sql(1008),
        ),
        (1009, "complaints by customer", migration_sql(1009)),
        (
            STRIPES_SINCE,
            "counters by stripe",
            STRIPES_MIGRATION.to_string(),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn released_migrations_never_change() {
        assert_eq!(
            migration_sql(1001),
            FIRST_MIGRATION,
            "a table of migration 1001 changed: declare the change in a new migration"
        );
        let all: Vec<i64> = migrations().iter().map(|m| m.0).collect();
        for p in PROJECTIONS {
            for t in p.tables {
                assert!(all.contains(&t.since), "{} since {}", t.name, t.since);
            }
        }
        for d in DROPPED_COLUMNS {
            assert!(all.contains(&d.migration), "{d:?}");
        }
        assert_eq!(
            migration_sql(1003),
            "ALTER TABLE rm_timeline DROP COLUMN payload;\n"
        );
        assert_eq!(
            migration_sql(1006),
            COMPLAINT_DEADLINES_MIGRATION,
            "migration 1006 as released"
        );
        assert_eq!(
            migration_sql(1007),
            "CREATE INDEX rm_complaints_logged_idx ON rm_complaints (logged_at_us, complaint_id);\n",
            "migration 1007 as released"
        );
        assert_eq!(
            migration_sql(1008),
            "CREATE INDEX rm_complaints_due_idx ON rm_complaints (resolution_due_us);\n",
            "migration 1008 as released"
        );
        assert_eq!(
            migration_sql(1009),
            "CREATE INDEX rm_complaints_customer_idx ON rm_complaints (customer_id, logged_at_us);\n",
            "migration 1009 as released"
        );
        assert_eq!(
            migration_sql(STRIPES_SINCE),
            STRIPES_MIGRATION,
            "migration 1010 as released"
        );
        for i in ADDED_INDEXES {
            assert!(all.contains(&i.migration), "{i:?}");
            let t = PROJECTIONS
                .iter()
                .flat_map(|p| p.tables.iter())
                .find(|t| t.name == i.table)
                .expect("an added index's table");
            assert!(t.since < i.migration, "{i:?}: added after its table");
            assert!(
                t.indexes.iter().any(|(n, _)| *n == i.index),
                "{i:?}: declared"
            );
        }
        for a in ADDED_COLUMNS {
            assert!(all.contains(&a.migration), "{a:?}");
            let t = PROJECTIONS
                .iter()
                .flat_map(|p| p.tables.iter())
                .find(|t| t.name == a.table)
                .expect("an added column's table");
            assert!(t.since < a.migration, "{a:?}: added after its table");
            let later = ADDED_COLUMNS
                .iter()
                .filter(|b| b.table == a.table)
                .skip_while(|b| b != &a)
                .count();
            let at = t.columns.len() - later;
            assert_eq!(t.columns[at].0, a.column, "{a:?}: among its table's last");
        }
    }

    #[test]
    fn every_projection_has_its_own_tables() {
        let mut seen = std::collections::HashSet::new();
        for p in PROJECTIONS {
            for t in p.table_names() {
                assert!(seen.insert(t.clone()), "{t} in two projections");
            }
        }
        assert!(FIRST_MIGRATION.contains("CREATE TABLE rm_timeline ("));
        assert_eq!(by_name("analytics"), Some(ANALYTICS));
        for p in PROJECTIONS {
            for t in p.tables {
                assert_eq!(
                    t.primary_key[0], t.columns[0].0,
                    "{}: group by column",
                    t.name
                );
            }
        }
        assert_eq!(by_name("nope"), None);
    }
}

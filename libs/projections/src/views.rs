//! Read-only SQL for analysts and BI tools (Metabase, Superset, Power BI): documented
//! views over the read models that need no knowledge of the event model: managers with
//! their names, customers with their owner's name, ownership periods, purchases and
//! revenue, complaints with their SLA outcome, contacts, stage moves, pool and SLA
//! events. Instants are timestamps (`timestamptz` on PostgreSQL, RFC 3339 text on
//! SQLite), flags booleans, amounts in currency units beside the minor units. No
//! personal field of a customer is in any view (no names, no timeline payloads).
//!
//! On PostgreSQL they are readable by the `crm_analyst` role, which can read nothing
//! else here; analysts' own login roles are granted `crm_analyst`. The embedded store
//! (SQLite) has the same views. `docs/read-models.md` describes each, with example
//! queries.

use crate::sql::Backend;

/// The role analysts' logins are members of.
pub const ANALYST_ROLE: &str = "crm_analyst";

/// `column` (microseconds since the epoch) as a timestamp named `alias`.
fn ts(b: Backend, column: &str, alias: &str) -> String {
    match b {
        Backend::Postgres => format!("to_timestamp(({column})::double precision / 1e6) AS {alias}"),
        Backend::Sqlite => format!(
            "strftime('%Y-%m-%dT%H:%M:%fZ', ({column}) / 1000000.0, 'unixepoch') AS {alias}"
        ),
    }
}

/// `column` (0/1) as a boolean named `alias` (SQLite has none: 0/1 stays).
fn flag(b: Backend, column: &str, alias: &str) -> String {
    match b {
        Backend::Postgres => format!("({column}) = 1 AS {alias}"),
        Backend::Sqlite => format!("({column}) AS {alias}"),
    }
}

/// Local day number `column` (days since 1970-01-01) as a date named `alias`.
fn date(b: Backend, column: &str, alias: &str) -> String {
    match b {
        Backend::Postgres => format!("DATE '1970-01-01' + CAST({column} AS INTEGER) AS {alias}"),
        Backend::Sqlite => format!("date(({column}) * 86400, 'unixepoch') AS {alias}"),
    }
}

/// `n / d` as a fraction (NULL when `d` is 0).
fn share(n: &str, d: &str, alias: &str) -> String {
    format!("1.0 * ({n}) / NULLIF({d}, 0) AS {alias}")
}

/// Manager KPIs per local day of the analytics zone, from the KPI ledger: the day's
/// flows and complaints, the snapshots at the end of the day, leads owned and converted
/// that day, each rate beside its inputs.
fn kpi_days(b: Backend) -> String {
    // The snapshots, as running sums of their deltas (the lead stretches are counted apart).
    let running: Vec<String> = crate::ledger::SNAPSHOT[..crate::ledger::snap::LEAD_STARTS]
        .iter()
        .map(|c| format!("sum(d.{c}) OVER w AS {c}"))
        .collect();
    format!(
        "WITH d AS (SELECT d.day, d.manager_id, d.contacts, d.won, d.reactivated, d.lost, \
         d.returned, d.pool_warnings, d.sla_warnings, d.sla_breaches, d.automatic_escalations, \
         d.referrals_made, d.referrals_converted, d.complaints, d.complaints_breached, \
         d.complaints_resolved, d.complaints_reopened, d.satisfaction_sum, d.satisfaction_n, \
         {running}, \
         sum(d.lead_starts) OVER w - sum(d.lead_ends) OVER w + d.lead_ends AS stretches \
         FROM {days} d WINDOW w AS (PARTITION BY d.manager_id ORDER BY d.day)), \
         g AS (SELECT manager_id, first_day AS day, sum(n) AS n FROM rm_kpi_gaps \
         WHERE first_day = last_day GROUP BY manager_id, first_day), \
         c AS (SELECT manager_id, converts_on AS day, count(DISTINCT customer_id) AS n \
         FROM rm_kpi_wins WHERE converts_on IS NOT NULL GROUP BY manager_id, converts_on) \
         SELECT {day}, d.manager_id, m.name AS manager_name, m.team, m.region, m.branch, \
         d.portfolio, d.tier_high, d.tier_mid, d.tier_low, d.value_minor, \
         d.value_minor / 100.0 AS value_under_management, d.covered, {coverage}, \
         d.overdue AS overdue_follow_ups, d.contacts, d.won AS new_customers_won, \
         d.stretches - COALESCE(g.n, 0) AS leads_owned, \
         COALESCE(c.n, 0) AS leads_converted, \
         {conversion}, \
         d.complaints, d.complaints_breached, {breach_rate}, d.complaints_resolved, \
         d.complaints_reopened, {reopen_rate}, d.satisfaction_sum, d.satisfaction_n, \
         {satisfaction}, \
         d.referrals_made, d.referrals_converted, d.reactivated, d.lost AS lost_to_pool, \
         d.returned AS returned_by_pool_rules, d.pool_warnings, d.sla_warnings, d.sla_breaches, \
         d.automatic_escalations \
         FROM d LEFT JOIN rm_managers m ON m.manager_id = d.manager_id \
         LEFT JOIN g ON g.manager_id = d.manager_id AND g.day = d.day \
         LEFT JOIN c ON c.manager_id = d.manager_id AND c.day = d.day",
        running = running.join(", "),
        days = crate::sql::summed(&crate::schema::KPI_DAYS),
        day = date(b, "d.day", "day"),
        coverage = share("d.covered", "d.portfolio", "contact_coverage"),
        conversion = share(
            "COALESCE(c.n, 0)",
            "d.stretches - COALESCE(g.n, 0)",
            "lead_conversion_rate"
        ),
        breach_rate = share("d.complaints_breached", "d.complaints", "sla_breach_rate"),
        reopen_rate = share(
            "d.complaints_reopened",
            "d.complaints_resolved",
            "reopen_rate"
        ),
        satisfaction = share("d.satisfaction_sum", "d.satisfaction_n", "satisfaction_avg"),
    )
}

/// A complaint breached its SLA: first response late, a resolution late, or a clock
/// that ran out while it was open (the KPI's definition).
const BREACHED: &str = "(k.first_response_in_sla = 0 OR k.resolution_breaches > 0 \
    OR EXISTS (SELECT 1 FROM rm_sla_events e WHERE e.complaint_id = k.complaint_id \
    AND e.kind = 'breach'))";

/// (view, select) pairs. New columns go at the end of a view, so a view can be replaced
/// in place on a database an older release set up.
pub fn views(b: Backend) -> Vec<(&'static str, String)> {
    let ts = |c: &str, a: &str| ts(b, c, a);
    let flag = |c: &str, a: &str| flag(b, c, a);
    vec![
        (
            "v_customers",
            format!(
                "SELECT c.customer_id, c.customer_type, c.region, c.branch, c.first_touch_channel, \
                 c.stage, c.value_tier, c.aum_minor, c.owner_id, c.owner_team, c.owner_region, \
                 {}, {}, {}, {}, m.name AS owner_name, m.branch AS owner_branch, \
                 c.aum_minor / 100.0 AS aum \
                 FROM rm_customers c LEFT JOIN rm_managers m ON m.manager_id = c.owner_id",
                ts("c.owned_since_us", "owned_since"),
                ts("c.registered_at_us", "registered_at"),
                ts("c.last_contact_at_us", "last_contact_at"),
                ts("c.next_follow_up_us", "next_follow_up")
            ),
        ),
        (
            "v_ownership_periods",
            format!(
                "SELECT p.customer_id, p.start_version, p.manager_id, p.team, p.region, {}, {}, \
                 p.start_event, p.start_reason, p.started_by, p.end_event, p.ended_by, \
                 m.name AS manager_name \
                 FROM rm_ownership_periods p LEFT JOIN rm_managers m ON m.manager_id = p.manager_id",
                ts("p.from_us", "valid_from"),
                ts("p.to_us", "valid_to")
            ),
        ),
        (
            "v_managers",
            format!(
                "SELECT m.manager_id, m.role, m.team, m.region, m.branch, m.holding_limit, {}, \
                 m.name, \
                 (SELECT count(*) FROM rm_customers c WHERE c.owner_id = m.manager_id) AS portfolio \
                 FROM rm_managers m",
                flag("m.active", "active")
            ),
        ),
        (
            "v_stage_periods",
            format!(
                "SELECT customer_id, stage, {}, {} FROM rm_stage_periods",
                ts("from_us", "valid_from"),
                ts("to_us", "valid_to")
            ),
        ),
        (
            "v_stage_transitions",
            format!(
                "SELECT t.customer_id, t.from_stage, t.to_stage, {}, {}, t.owner_id, \
                 m.name AS owner_name \
                 FROM rm_stage_transitions t LEFT JOIN rm_managers m ON m.manager_id = t.owner_id",
                ts("t.at_us", "at"),
                flag("t.reactivated", "reactivated")
            ),
        ),
        (
            "v_contacts",
            format!(
                "SELECT k.customer_id, k.manager_id, {}, k.channel, k.outcome, {}, \
                 m.name AS manager_name \
                 FROM rm_contacts k LEFT JOIN rm_managers m ON m.manager_id = k.manager_id",
                flag("k.by_owner", "by_owner"),
                ts("k.at_us", "at")
            ),
        ),
        (
            "v_complaints",
            format!(
                "SELECT k.complaint_id, k.customer_id, k.owner_id, k.severity, {}, \
                 k.first_response_s, {}, k.resolution_s, {}, k.resolutions, \
                 k.resolution_breaches, k.reopens, k.escalations, {}, k.satisfaction, \
                 m.name AS owner_name, m.team AS owner_team, m.region AS owner_region, \
                 CASE WHEN k.closed_at_us IS NOT NULL THEN 'closed' \
                      WHEN k.resolved_at_us IS NOT NULL THEN 'resolved' ELSE 'open' END AS status, \
                 {}, {} \
                 FROM rm_complaints k LEFT JOIN rm_managers m ON m.manager_id = k.owner_id",
                ts("k.logged_at_us", "logged_at"),
                flag("k.first_response_in_sla", "first_response_in_sla"),
                flag("k.resolution_in_sla", "resolution_in_sla"),
                ts("k.closed_at_us", "closed_at"),
                ts("k.resolved_at_us", "resolved_at"),
                match b {
                    Backend::Postgres => format!("{BREACHED} AS sla_breached"),
                    Backend::Sqlite => format!("CASE WHEN {BREACHED} THEN 1 ELSE 0 END AS sla_breached"),
                },
            ),
        ),
        (
            "v_referrals",
            format!(
                "SELECT r.referral_id, r.customer_id, r.referrer, r.referred_to, {}, {}, \
                 m.name AS referrer_name \
                 FROM rm_referrals r LEFT JOIN rm_managers m ON m.manager_id = r.referrer",
                ts("r.recorded_at_us", "recorded_at"),
                ts("r.converted_at_us", "converted_at")
            ),
        ),
        (
            "v_pool_events",
            format!(
                "SELECT e.customer_id, e.kind, e.manager_id, e.cause, {}, {}, e.policy_version, \
                 m.name AS manager_name \
                 FROM rm_pool_events e LEFT JOIN rm_managers m ON m.manager_id = e.manager_id",
                ts("e.due_us", "due_at"),
                ts("e.at_us", "at")
            ),
        ),
        (
            "v_sla_events",
            format!(
                "SELECT e.complaint_id, e.customer_id, e.kind, e.clock, {}, e.level, \
                 e.escalated_to, {}, e.owner_id, {}, m.name AS owner_name \
                 FROM rm_sla_events e LEFT JOIN rm_managers m ON m.manager_id = e.owner_id",
                ts("e.due_us", "due_at"),
                flag("e.automatic", "automatic"),
                ts("e.at_us", "at")
            ),
        ),
        (
            "v_purchases",
            format!(
                "SELECT p.purchase_id, p.customer_id, p.manager_id, m.name AS manager_name, \
                 m.team, m.region, m.branch, p.product_line, p.amount_minor, \
                 p.amount_minor / 100.0 AS amount, p.currency, {} \
                 FROM rm_purchases p LEFT JOIN rm_managers m ON m.manager_id = p.manager_id",
                ts("p.at_us", "at")
            ),
        ),
        ("v_kpi_days", kpi_days(b)),
        (
            "v_funnel_days",
            format!(
                "SELECT kind AS slice_kind, value AS slice, stage, {}, customers AS change, \
                 sum(customers) OVER (PARTITION BY kind, value, stage ORDER BY day) AS customers \
                 FROM {} d",
                date(b, "day", "day"),
                crate::sql::summed(&crate::schema::FUNNEL_DAYS)
            ),
        ),
    ]
}

/// Statements dropping the views (before a rebuild renames the tables under them: a view
/// follows its table through a rename).
pub fn drop_statements(b: Backend) -> Vec<String> {
    views(b)
        .into_iter()
        .map(|(v, _)| format!("DROP VIEW IF EXISTS {v}"))
        .collect()
}

/// The read side's roles: `crm_projector` writes the read models, `crm_query` reads them,
/// `crm_analyst` reads the views only, `crm_manager` reads its own customers in
/// `rm_customers` (row-level security on `crm.manager_id` / `crm.team`), `crm_auditor`
/// reads the views.
pub const READ_ROLES: [&str; 5] = [
    ANALYST_ROLE,
    "crm_projector",
    "crm_query",
    "crm_manager",
    "crm_auditor",
];

/// Statements (re)creating the views; on PostgreSQL also the roles, the grants and the
/// row-level security of the read models. Idempotent, and run again after a rebuild
/// replaces tables.
pub fn create_statements(b: Backend) -> Vec<String> {
    if b == Backend::Sqlite {
        // No roles, and no CREATE OR REPLACE: each view is made afresh.
        return views(b)
            .into_iter()
            .flat_map(|(v, select)| {
                [
                    format!("DROP VIEW IF EXISTS {v}"),
                    format!("CREATE VIEW {v} AS {select}"),
                ]
            })
            .collect();
    }
    let roles = READ_ROLES
        .iter()
        .map(|r| format!("'{r}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut out = vec![format!(
        "DO $$ DECLARE r text; BEGIN \
           FOREACH r IN ARRAY ARRAY[{roles}] LOOP \
             CONTINUE WHEN EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r); \
             BEGIN EXECUTE format('CREATE ROLE %I NOLOGIN', r); \
             EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END; \
           END LOOP; \
         END $$"
    )];
    for (v, select) in views(b) {
        out.push(format!("CREATE OR REPLACE VIEW {v} AS {select}"));
        out.push(format!(
            "GRANT SELECT ON {v} TO {ANALYST_ROLE}, crm_auditor"
        ));
    }
    // Projectors write every read-model table, the query service reads them; nobody else
    // (analysts go through the views, which run with the owner's rights).
    out.push(
        "DO $$ DECLARE t text; BEGIN \
           FOR t IN SELECT tablename FROM pg_tables \
                    WHERE schemaname = current_schema() AND tablename LIKE 'rm\\_%' LOOP \
             EXECUTE format('REVOKE ALL ON %I FROM PUBLIC', t); \
             EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I TO crm_projector', t); \
             EXECUTE format('GRANT SELECT ON %I TO crm_query', t); \
           END LOOP; \
         END $$"
            .to_string(),
    );
    out.push("GRANT SELECT ON _sqlx_migrations TO crm_projector, crm_query".to_string());
    // Managers' own SQL access (BI tools): their customers only, by row-level security.
    out.extend(
        [
            "ALTER TABLE rm_customers ENABLE ROW LEVEL SECURITY",
            "DROP POLICY IF EXISTS services_all_rows ON rm_customers",
            "CREATE POLICY services_all_rows ON rm_customers TO crm_projector, crm_query \
             USING (true) WITH CHECK (true)",
            "DROP POLICY IF EXISTS manager_scope ON rm_customers",
            "CREATE POLICY manager_scope ON rm_customers FOR SELECT TO crm_manager \
             USING (owner_id = current_setting('crm.manager_id', true) \
                    OR (owner_team IS NOT NULL AND owner_team = current_setting('crm.team', true)))",
            "GRANT SELECT ON rm_customers TO crm_manager",
        ]
        .map(String::from),
    );
    out
}

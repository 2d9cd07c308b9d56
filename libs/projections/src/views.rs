//! Read-only SQL for analysts (PostgreSQL): documented views over the read models, with
//! instants as `timestamptz` and without personal fields (no names, no timeline
//! payloads), readable by the `crm_analyst` role, which can read nothing else here.
//! Analysts' own login roles are granted `crm_analyst`. `docs/read-models.md` describes
//! each view.

/// The role analysts' logins are members of.
pub const ANALYST_ROLE: &str = "crm_analyst";

const TS: &str = "to_timestamp(({c})::double precision / 1e6)";

fn ts(column: &str, alias: &str) -> String {
    format!("{} AS {alias}", TS.replace("{c}", column))
}

/// (view, select) pairs.
pub fn views() -> Vec<(&'static str, String)> {
    vec![
        (
            "v_customers",
            format!(
                "SELECT customer_id, customer_type, region, branch, first_touch_channel, stage, value_tier, \
                 aum_minor, owner_id, owner_team, owner_region, {}, {}, {}, {} FROM rm_customers",
                ts("owned_since_us", "owned_since"),
                ts("registered_at_us", "registered_at"),
                ts("last_contact_at_us", "last_contact_at"),
                ts("next_follow_up_us", "next_follow_up")
            ),
        ),
        (
            "v_ownership_periods",
            format!(
                "SELECT customer_id, start_version, manager_id, team, region, {}, {}, start_event, \
                 start_reason, started_by, end_event, ended_by FROM rm_ownership_periods",
                ts("from_us", "valid_from"),
                ts("to_us", "valid_to")
            ),
        ),
        (
            "v_managers",
            "SELECT manager_id, role, team, region, branch, holding_limit, active = 1 AS active \
             FROM rm_managers"
                .to_string(),
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
                "SELECT customer_id, from_stage, to_stage, {}, reactivated = 1 AS reactivated, owner_id \
                 FROM rm_stage_transitions",
                ts("at_us", "at")
            ),
        ),
        (
            "v_contacts",
            format!(
                "SELECT customer_id, manager_id, by_owner = 1 AS by_owner, channel, outcome, {} FROM rm_contacts",
                ts("at_us", "at")
            ),
        ),
        (
            "v_complaints",
            format!(
                "SELECT complaint_id, customer_id, owner_id, severity, {}, first_response_s, \
                 first_response_in_sla = 1 AS first_response_in_sla, resolution_s, \
                 resolution_in_sla = 1 AS resolution_in_sla, resolutions, resolution_breaches, reopens, \
                 escalations, {}, satisfaction FROM rm_complaints",
                ts("logged_at_us", "logged_at"),
                ts("closed_at_us", "closed_at")
            ),
        ),
        (
            "v_referrals",
            format!(
                "SELECT referral_id, customer_id, referrer, referred_to, {}, {} FROM rm_referrals",
                ts("recorded_at_us", "recorded_at"),
                ts("converted_at_us", "converted_at")
            ),
        ),
        (
            "v_pool_events",
            format!(
                "SELECT customer_id, kind, manager_id, cause, {}, {}, policy_version FROM rm_pool_events",
                ts("due_us", "due_at"),
                ts("at_us", "at")
            ),
        ),
        (
            "v_sla_events",
            format!(
                "SELECT complaint_id, customer_id, kind, clock, {}, level, escalated_to, \
                 automatic = 1 AS automatic, owner_id, {} FROM rm_sla_events",
                ts("due_us", "due_at"),
                ts("at_us", "at")
            ),
        ),
    ]
}

/// Statements dropping the views (before a rebuild renames the tables under them).
pub fn drop_statements() -> Vec<String> {
    views()
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

/// Statements (re)creating the roles, the views, the grants and the row-level security
/// of the read models; idempotent, and run again after a rebuild replaces tables.
pub fn create_statements() -> Vec<String> {
    let roles = READ_ROLES
        .iter()
        .map(|r| format!("'{r}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut out = vec![format!(
        "DO $$ DECLARE r text; BEGIN \
           FOREACH r IN ARRAY ARRAY[{roles}] LOOP \
             BEGIN EXECUTE format('CREATE ROLE %I NOLOGIN', r); \
             EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END; \
           END LOOP; \
         END $$"
    )];
    for (v, select) in views() {
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

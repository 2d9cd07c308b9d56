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
    pub about: &'static str,
    pub tables: &'static [Table],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Table {
    pub name: &'static str,
    /// Column definitions, as in `CREATE TABLE`.
    pub columns: &'static [(&'static str, &'static str)],
    pub primary_key: &'static [&'static str],
    /// (index name suffix, columns).
    pub indexes: &'static [(&'static str, &'static str)],
    /// The migration that creates the live table (1001, 1002, …): a table added later
    /// gets a new migration, so existing databases are never asked to re-run an old one.
    pub since: i64,
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

    /// Every statement creating the tables named with `suffix` (`""` for the live
    /// tables): [`Projection::tables_ddl`] then [`Projection::keys_ddl`].
    pub fn ddl(&self, suffix: &str) -> Vec<String> {
        let mut out = self.tables_ddl(suffix);
        out.extend(self.keys_ddl(suffix));
        out
    }

    /// `CREATE TABLE` statements, without keys or indexes (a rebuild bulk-loads first).
    pub fn tables_ddl(&self, suffix: &str) -> Vec<String> {
        self.tables_ddl_where(suffix, |_| true, true, None)
    }

    /// With `as_created: Some(m)`, each table as migration `m` created it: with the
    /// columns a later migration dropped ([`DROPPED_COLUMNS`]).
    fn tables_ddl_where(
        &self,
        suffix: &str,
        keep: impl Fn(&Table) -> bool,
        positions: bool,
        as_created: Option<i64>,
    ) -> Vec<String> {
        let mut out: Vec<String> = self
            .tables
            .iter()
            .filter(|t| keep(t))
            .map(|t| {
                let dropped = DROPPED_COLUMNS
                    .iter()
                    .filter(|d| d.table == t.name && as_created.is_some_and(|m| d.migration > m));
                let cols: Vec<String> = t
                    .columns
                    .iter()
                    .copied()
                    .chain(dropped.map(|d| (d.column, d.definition)))
                    .map(|(name, ty)| format!("{name} {ty}"))
                    .collect();
                format!("CREATE TABLE {}{suffix} ({})", t.name, cols.join(", "))
            })
            .collect();
        if positions {
            out.push(format!(
                "CREATE TABLE {}{suffix} (stream_id TEXT NOT NULL, version BIGINT NOT NULL)",
                self.positions_table()
            ));
        }
        out
    }

    /// The keys (unique indexes, which both backends accept as `ON CONFLICT` targets)
    /// and indexes: built after a bulk load, which is faster than maintaining them.
    pub fn keys_ddl(&self, suffix: &str) -> Vec<String> {
        self.keys_ddl_where(suffix, |_| true, true)
    }

    /// The keys and indexes of one table (`name` without suffix; the positions table's
    /// name for its key).
    pub fn table_keys_ddl(&self, name: &str, suffix: &str) -> Vec<String> {
        let positions = name == self.positions_table();
        self.keys_ddl_where(suffix, |t| t.name == name, positions)
    }

    fn keys_ddl_where(
        &self,
        suffix: &str,
        keep: impl Fn(&Table) -> bool,
        positions: bool,
    ) -> Vec<String> {
        let mut out = Vec::new();
        for t in self.tables.iter().filter(|t| keep(t)) {
            out.push(format!(
                "CREATE UNIQUE INDEX {}{suffix}_key ON {}{suffix} ({})",
                t.name,
                t.name,
                t.primary_key.join(", ")
            ));
            for (ix, cols) in t.indexes {
                out.push(format!(
                    "CREATE INDEX {}{suffix}_{ix} ON {}{suffix} ({cols})",
                    t.name, t.name
                ));
            }
        }
        if positions {
            let positions = self.positions_table();
            out.push(format!(
                "CREATE UNIQUE INDEX {positions}{suffix}_key ON {positions}{suffix} (stream_id)"
            ));
        }
        out
    }

    /// `sql` with this projection's table names followed by `suffix`.
    pub fn retarget(&self, sql: &str, suffix: &str) -> String {
        if suffix.is_empty() {
            return sql.to_string();
        }
        let mut out = sql.to_string();
        for name in self.table_names() {
            out = replace_identifier(&out, &name, &format!("{name}{suffix}"));
        }
        out
    }
}

/// Replace whole-identifier occurrences of `from` in `sql`.
fn replace_identifier(sql: &str, from: &str, to: &str) -> String {
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut out = String::with_capacity(sql.len() + 16);
    let mut rest = sql;
    while let Some(i) = rest.find(from) {
        let before = rest[..i].chars().next_back();
        let after = rest[i + from.len()..].chars().next();
        out.push_str(&rest[..i]);
        if before.is_some_and(is_ident) || after.is_some_and(is_ident) {
            out.push_str(from);
        } else {
            out.push_str(to);
        }
        rest = &rest[i + from.len()..];
    }
    out.push_str(rest);
    out
}

/// Current owner, portfolios, the pool, ownership timeline and "owner at T"; managers.
pub const OWNERSHIP: Projection = Projection {
    name: "ownership",
    about: "current owner, portfolios, pool, ownership timeline, owner as of an instant, managers",
    tables: &[
        Table {
            name: "rm_customers",
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
        },
        Table {
            name: "rm_ownership_periods",
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
        },
        Table {
            name: "rm_managers",
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
        },
    ],
};

/// Customer 360: every event of a customer.
pub const TIMELINE: Projection = Projection {
    name: "timeline",
    about: "customer 360: every event of a customer, newest first",
    tables: &[Table {
        name: "rm_timeline",
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
    }],
};

/// Facts of the lifecycle funnel and the manager KPIs.
pub const ANALYTICS: Projection = Projection {
    name: "analytics",
    about: "facts of the lifecycle funnel and the manager KPIs",
    tables: &[
        Table {
            // The owner as this projection sees it, to credit stage moves (the
            // projection keeps its own, so it can be rebuilt alone).
            name: "rm_analytics_owners",
            since: 1001,
            columns: &[("customer_id", "TEXT NOT NULL"), ("owner_id", "TEXT")],
            primary_key: &["customer_id"],
            indexes: &[],
        },
        Table {
            name: "rm_stage_periods",
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
        },
        Table {
            name: "rm_stage_transitions",
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
        },
        Table {
            name: "rm_contacts",
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
        },
        Table {
            name: "rm_complaints",
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
            ],
            primary_key: &["complaint_id"],
            indexes: &[("owner_idx", "owner_id, logged_at_us")],
        },
        Table {
            name: "rm_referrals",
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
        },
        Table {
            name: "rm_purchases",
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
        },
        Table {
            name: "rm_pool_events",
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
        },
        Table {
            name: "rm_sla_events",
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
        },
    ],
};

/// Every read model, in the order changes are applied.
pub const PROJECTIONS: [Projection; 3] = [OWNERSHIP, TIMELINE, ANALYTICS];

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

/// The SQL creating the live tables declared `since` a migration (1001: with the
/// positions and service tables).
pub fn migration_sql(since: i64) -> String {
    let first = since == 1001;
    let mut sql: Vec<String> = if first {
        SERVICE_DDL.iter().map(|s| s.to_string()).collect()
    } else {
        Vec::new()
    };
    for p in PROJECTIONS {
        sql.extend(p.tables_ddl_where("", |t| t.since == since, first, Some(since)));
        sql.extend(p.keys_ddl_where("", |t| t.since == since, first));
    }
    for d in DROPPED_COLUMNS.iter().filter(|d| d.migration == since) {
        sql.push(format!("ALTER TABLE {} DROP COLUMN {}", d.table, d.column));
    }
    sql.join(";\n") + ";\n"
}

/// Every migration of the read models: (version, description, SQL), in order.
pub fn migrations() -> Vec<(i64, &'static str, String)> {
    vec![
        (1001, "read models", FIRST_MIGRATION.to_string()),
        (1002, "pool and SLA events", migration_sql(1002)),
        (1003, "timeline rows without payloads", migration_sql(1003)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retargeting_renames_whole_identifiers_only() {
        let sql =
            "UPDATE rm_customers SET owner_id = $2 WHERE customer_id = $1 AND x = 'rm_customers_x'";
        assert_eq!(
            OWNERSHIP.retarget(sql, "_r1"),
            "UPDATE rm_customers_r1 SET owner_id = $2 WHERE customer_id = $1 AND x = 'rm_customers_x'"
        );
        assert_eq!(
            OWNERSHIP.retarget("SELECT version FROM rm_ownership_positions", "_v9"),
            "SELECT version FROM rm_ownership_positions_v9"
        );
        assert_eq!(TIMELINE.retarget(sql, ""), sql);
    }

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
        assert_eq!(by_name("nope"), None);
    }
}

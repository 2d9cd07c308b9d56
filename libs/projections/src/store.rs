//! Where the read models are stored: PostgreSQL in server mode, SQLite in the embedded
//! mode, with the same tables (`schema.rs`) and the same statements (`project.rs`).
//!
//! [`ReadStore::apply`] applies a batch of events in one transaction together with the
//! consumer's checkpoint. For each read model, each event is checked against the last
//! version that read model applied for its stream (`rm_<name>_positions`): at or below
//! it, a duplicate (skipped); the next one, applied; further ahead, early (an earlier
//! event of the same stream is still on its way, e.g. a redelivery): not applied, to be
//! delivered again. So redeliveries, duplicates and reordering never change the result,
//! and each read model can be rebuilt on its own.

use std::borrow::Cow;
use std::time::Duration;

use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use sqlx::{ColumnIndex, Decode, Row, Type};

use crate::project::{Arg, Changes, Poison};
use crate::schema::Projection;
use crm_eventstore::RecordedEvent;

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("read-model database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("read-model migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("{0}")]
    Config(String),
    #[error("stream {0} was projected by another transaction at the same time; retry")]
    Concurrent(String),
}

/// One event as delivered, with what projecting it gives.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub event: RecordedEvent,
    /// Position of the message in its source (JetStream stream sequence, or log position).
    pub sequence: u64,
    pub changes: Result<Changes, Poison>,
}

impl Prepared {
    pub fn new(event: RecordedEvent, sequence: u64) -> Self {
        let changes = crate::project::project(&event);
        Self {
            event,
            sequence,
            changes,
        }
    }
}

/// What happened to each event of a batch, in batch order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    Applied,
    Duplicate,
    /// An earlier event of its stream has not been applied yet: deliver it again later.
    Early,
    /// Could not be projected; recorded as a dead letter, its stream moves on.
    DeadLetter,
}

#[derive(Debug, Default, Clone)]
pub struct ApplyReport {
    pub fates: Vec<Fate>,
}

impl ApplyReport {
    pub fn count(&self, fate: Fate) -> usize {
        self.fates.iter().filter(|f| **f == fate).count()
    }
}

/// A consumer's progress.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CheckpointRow {
    pub consumer: String,
    pub stream_sequence: i64,
    pub events_applied: i64,
    pub last_event_us: i64,
    pub updated_at_us: i64,
}

/// Which tables a batch goes to.
#[derive(Debug, Clone)]
pub enum Target {
    /// Every read model's live tables (the projector).
    Live,
    /// One read model's tables named with a suffix (a rebuild's switch-over catch-up).
    Only {
        projection: Projection,
        suffix: String,
    },
}

/// The read-model database.
#[derive(Clone)]
pub enum ReadStore {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

fn migrator() -> sqlx::migrate::Migrator {
    migrator_up_to(i64::MAX)
}

/// The read models' migrations up to `last` (a test builds a database as an earlier
/// release left it with this).
pub fn migrator_up_to(last: i64) -> sqlx::migrate::Migrator {
    use sqlx::migrate::{Migration, MigrationType, Migrator};
    Migrator {
        migrations: Cow::Owned(
            crate::schema::migrations()
                .into_iter()
                .filter(|(version, _, _)| *version <= last)
                .map(|(version, about, sql)| {
                    Migration::new(
                        version,
                        Cow::Borrowed(about),
                        MigrationType::Simple,
                        Cow::Owned(sql),
                        false,
                    )
                })
                .collect(),
        ),
        // Read models may share a database (and its `_sqlx_migrations` table) with the
        // event store: their versions start at 1001, and each migrator ignores the other's.
        ignore_missing: true,
        ..Migrator::DEFAULT
    }
}

macro_rules! bind_args {
    ($query:expr, $args:expr) => {{
        let mut q = $query;
        for a in $args {
            q = match a {
                $crate::project::Arg::Int(v) => q.bind(*v),
                $crate::project::Arg::Text(v) => q.bind(v.as_str()),
                $crate::project::Arg::NullInt => q.bind(None::<i64>),
                $crate::project::Arg::NullText => q.bind(None::<&str>),
            };
        }
        q
    }};
}

/// Append `sql` to `script` as one statement, each `$n` replaced by the n-th argument as
/// a literal of the type sqlx would have bound (`int8`, `text`), so the statement means
/// exactly what it means with bound parameters. Text goes in an escape string (`E'…'`,
/// backslashes and quotes doubled), whatever `standard_conforming_strings` says; quoted
/// literals of the template itself are copied unchanged. PostgreSQL only.
pub(crate) fn inline_pg(script: &mut String, sql: &str, args: &[Arg]) -> Result<(), ReadError> {
    let bytes = sql.as_bytes();
    let mut i = 0;
    let mut copied = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\'' => {
                // A literal of the template: skip to its closing quote ('' stays inside).
                i += 1;
                while i < bytes.len() {
                    if bytes[i] == b'\'' {
                        if bytes.get(i + 1) == Some(&b'\'') {
                            i += 2;
                            continue;
                        }
                        break;
                    }
                    i += 1;
                }
                i += 1;
            }
            b'$' if bytes.get(i + 1).is_some_and(u8::is_ascii_digit) => {
                script.push_str(&sql[copied..i]);
                let start = i + 1;
                let mut end = start;
                while end < bytes.len() && bytes[end].is_ascii_digit() {
                    end += 1;
                }
                let n: usize = sql[start..end].parse().unwrap_or(0);
                let arg = n
                    .checked_sub(1)
                    .and_then(|k| args.get(k))
                    .ok_or_else(|| ReadError::Config(format!("no argument ${n} for: {sql}")))?;
                push_literal(script, arg)?;
                i = end;
                copied = end;
            }
            _ => i += 1,
        }
    }
    script.push_str(&sql[copied..]);
    script.push_str(";\n");
    Ok(())
}

/// How a projector transaction starts on PostgreSQL. Every statement it runs finds rows
/// by key, but a batch looks up hundreds of keys at once (`IN (…)`, `VALUES` joins), and
/// for that the planner prefers a sequential scan or a hash join over the whole table:
/// fine for a small table, linear in the number of customers for a large one. Index
/// plans only, for this transaction (`SET LOCAL`), in the same round trip as `BEGIN`.
/// No parallel workers and no JIT either: on tables without statistics (a fresh
/// database, autovacuum off or behind) the planner's row estimates grow with the table
/// until a key lookup costs past `jit_above_cost` and the parallel thresholds, and each
/// statement then forks workers and compiles code for a few rows.
const APPLY_BEGIN: &str = "BEGIN; SET LOCAL enable_seqscan = off; \
    SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off; \
    SET LOCAL jit = off; SET LOCAL max_parallel_workers_per_gather = 0";

/// Where a projector records how far it got, in the batch's transaction.
pub(crate) const CHECKPOINT_SQL: &str = "INSERT INTO rm_checkpoints \
    (consumer, stream_sequence, events_applied, last_event_us, updated_at_us) \
    VALUES ($1, $2, $3, $4, $5) ON CONFLICT (consumer) DO UPDATE SET \
    stream_sequence = CASE WHEN excluded.stream_sequence > rm_checkpoints.stream_sequence \
        THEN excluded.stream_sequence ELSE rm_checkpoints.stream_sequence END, \
    events_applied = rm_checkpoints.events_applied + excluded.events_applied, \
    last_event_us = CASE WHEN excluded.last_event_us > rm_checkpoints.last_event_us \
        THEN excluded.last_event_us ELSE rm_checkpoints.last_event_us END, \
    updated_at_us = excluded.updated_at_us";

/// Append to `script` the statements that record a batch's new positions (`inserts`) and
/// move the known ones (`updates`: stream, new version, version read before the batch)
/// in `table`. A position another transaction inserted meanwhile fails the insert (key);
/// one it moved fails the script with an error naming the table (the count of rows
/// moved is checked in the statement, so the whole batch needs no round trip of its
/// own for it). PostgreSQL only.
pub(crate) fn script_positions(
    script: &mut String,
    table: &str,
    inserts: &[(&str, i64)],
    updates: &[(&str, i64, i64)],
) -> Result<(), ReadError> {
    use std::fmt::Write as _;
    if !inserts.is_empty() {
        let _ = write!(script, "INSERT INTO {table} (stream_id, version) VALUES ");
        for (i, (stream, version)) in inserts.iter().enumerate() {
            script.push_str(if i == 0 { "(" } else { ", (" });
            push_literal(script, &Arg::Text((*stream).to_string()))?;
            let _ = write!(script, ", {version}::int8)");
        }
        script.push_str(";\n");
    }
    if !updates.is_empty() {
        let n = updates.len();
        let _ = write!(
            script,
            "WITH moved AS (UPDATE {table} AS p SET version = u.new FROM (VALUES "
        );
        for (i, (stream, version, before)) in updates.iter().enumerate() {
            script.push_str(if i == 0 { "(" } else { ", (" });
            push_literal(script, &Arg::Text((*stream).to_string()))?;
            let _ = write!(script, ", {version}::int8, {before}::int8)");
        }
        // The message is built from the count so it is not a constant: PostgreSQL folds
        // constant expressions while planning, and would raise it even when all moved.
        let _ = writeln!(
            script,
            ") AS u(stream_id, new, old) WHERE p.stream_id = u.stream_id AND p.version = u.old \
             RETURNING 1) SELECT CASE WHEN count(*) = {n} THEN 0 ELSE CAST(\
             'projected by another transaction at the same time: ' || ({n} - count(*)) || \
             ' of {n} positions in {table} had moved; retry' AS int) END FROM moved;"
        );
    }
    Ok(())
}

/// `arg` as a PostgreSQL literal of the type sqlx binds it as (`int8`, `text`).
pub(crate) fn push_literal(script: &mut String, arg: &Arg) -> Result<(), ReadError> {
    use std::fmt::Write as _;
    match arg {
        Arg::Int(v) => {
            let _ = write!(script, "({v}::int8)");
        }
        Arg::Text(v) => {
            if v.contains('\0') {
                return Err(ReadError::Config(format!(
                    "a text value with a NUL character cannot be stored: {v:?}"
                )));
            }
            script.push_str("(E'");
            for c in v.chars() {
                match c {
                    '\'' => script.push_str("''"),
                    '\\' => script.push_str("\\\\"),
                    c => script.push(c),
                }
            }
            script.push_str("'::text)");
        }
        Arg::NullInt => script.push_str("(NULL::int8)"),
        Arg::NullText => script.push_str("(NULL::text)"),
    }
    Ok(())
}

/// The body of [`ReadStore::apply_to`], for either backend's transaction.
macro_rules! apply_in {
    ($tx:expr, $batch:expr, $target:expr, $consumer:expr, $pg:expr) => {{
        let batch: &[$crate::store::Prepared] = $batch;
        let target: &$crate::store::Target = $target;
        let targets: Vec<(usize, $crate::schema::Projection, &str)> = match target {
            $crate::store::Target::Live => $crate::schema::PROJECTIONS.iter().copied().enumerate().map(|(i, p)| (i, p, "")).collect(),
            $crate::store::Target::Only { projection, suffix } => vec![(
                $crate::schema::PROJECTIONS.iter().position(|p| p.name == projection.name).expect("known projection"),
                *projection,
                suffix.as_str(),
            )],
        };
        let positions: Vec<String> = targets
            .iter()
            .map(|(_, p, suffix)| format!("{}{suffix}", p.positions_table()))
            .collect();
        let tx = $tx;
        // (target index, stream) → version applied, as read before the batch and as now.
        let mut known: ::std::collections::HashMap<(usize, &str), i64> = ::std::collections::HashMap::new();
        // Every position the batch needs, in one query.
        {
            let mut streams: Vec<&str> = batch.iter().map(|p| p.event.stream_id.as_str()).collect();
            streams.sort_unstable();
            streams.dedup();
            for chunk in streams.chunks(1000) {
                let marks: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
                let marks = marks.join(", ");
                // One query for every read model (the parameters are shared).
                let sql = positions
                    .iter()
                    .enumerate()
                    .map(|(t, table)| {
                        format!("SELECT CAST({t} AS BIGINT), stream_id, version FROM {table} WHERE stream_id IN ({marks})")
                    })
                    .collect::<Vec<_>>()
                    .join(" UNION ALL ");
                let mut q = sqlx::query(&sql);
                for st in chunk {
                    q = q.bind(*st);
                }
                // Absent: nothing applied yet (version 0).
                for t in 0..positions.len() {
                    for st in chunk {
                        known.insert((t, *st), 0);
                    }
                }
                for row in q.fetch_all(&mut *tx).await? {
                    use sqlx::Row as _;
                    let t = row.try_get::<i64, _>(0)? as usize;
                    let stream: &str = row.try_get(1)?;
                    // Keyed by the batch's own &str (`streams` is sorted): no copy.
                    if let Ok(i) = chunk.binary_search(&stream) {
                        known.insert((t, chunk[i]), row.try_get::<i64, _>(2)?);
                    }
                }
            }
        }
        let mut versions = known.clone();
        // PostgreSQL: the batch's read-model statements, with their arguments inlined, go
        // as one script in one round trip (simple query protocol) instead of one round
        // trip each; SQLite runs in-process and takes them one by one.
        let mut script = String::new();
        let mut fates = Vec::with_capacity(batch.len());
        let mut applied = 0i64;
        let mut last_event_us = 0i64;
        let mut last_sequence = 0i64;
        for p in batch {
            let stream = p.event.stream_id.as_str();
            let version = p.event.stream_version as i64;
            let (mut early, mut moved) = (false, false);
            for (t, (pi, projection, suffix)) in targets.iter().enumerate() {
                // Every stream of the batch was fetched above.
                let current = versions[&(t, stream)];
                if version <= current {
                    continue;
                }
                if version > current + 1 {
                    early = true;
                    continue;
                }
                if let Ok(changes) = &p.changes {
                    for s in &changes[*pi] {
                        let sql: ::std::borrow::Cow<'_, str> = if suffix.is_empty() {
                            ::std::borrow::Cow::Borrowed(s.sql)
                        } else {
                            ::std::borrow::Cow::Owned(projection.retarget(s.sql, suffix))
                        };
                        if $pg {
                            $crate::store::inline_pg(&mut script, &sql, &s.args)?;
                        } else {
                            $crate::store::bind_args!(sqlx::query(&sql), &s.args).execute(&mut *tx).await?;
                        }
                    }
                }
                versions.insert((t, stream), version);
                moved = true;
            }
            let fate = match (&p.changes, early, moved) {
                (_, true, _) => $crate::store::Fate::Early,
                (Err(poison), false, true) => {
                    if matches!(target, $crate::store::Target::Live) {
                        sqlx::query(
                            "INSERT INTO rm_dead_letters (event_id, stream_id, version, event_type, reason, recorded_us) \
                             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (event_id) DO NOTHING",
                        )
                        .bind(p.event.event_id.to_string())
                        .bind(stream)
                        .bind(version)
                        .bind(p.event.event_type.as_str())
                        .bind(poison.to_string())
                        .bind($crate::project::micros(chrono::Utc::now()))
                        .execute(&mut *tx)
                        .await?;
                    }
                    $crate::store::Fate::DeadLetter
                }
                (Ok(_), false, true) => $crate::store::Fate::Applied,
                (_, false, false) => $crate::store::Fate::Duplicate,
            };
            if matches!(fate, $crate::store::Fate::Applied | $crate::store::Fate::DeadLetter) {
                applied += 1;
                last_event_us = last_event_us.max($crate::project::micros(p.event.metadata.recorded_at));
            }
            if fate != $crate::store::Fate::Early {
                last_sequence = last_sequence.max(p.sequence as i64);
            }
            fates.push(fate);
        }
        // Each position once, conditional on the version read above: if another
        // transaction moved it meanwhile (two instances on one partition during a lease
        // change), this batch fails and is retried, finding its events already applied.
        // PostgreSQL: one statement per read model for the new positions and one for the
        // moved ones, in the script.
        let mut inserts: Vec<Vec<(&str, i64)>> = vec![Vec::new(); positions.len()];
        let mut updates: Vec<Vec<(&str, i64, i64)>> = vec![Vec::new(); positions.len()];
        for ((t, stream), version) in &versions {
            let before = known[&(*t, *stream)];
            if before == *version {
                continue;
            }
            if $pg {
                if before == 0 {
                    inserts[*t].push((*stream, *version));
                } else {
                    updates[*t].push((*stream, *version, before));
                }
                continue;
            }
            let moved = if before == 0 {
                let sql = format!("INSERT INTO {} (stream_id, version) VALUES ($1, $2)", positions[*t]);
                sqlx::query(&sql).bind(*stream).bind(*version).execute(&mut *tx).await?.rows_affected()
            } else {
                let sql = format!(
                    "UPDATE {} SET version = $2 WHERE stream_id = $1 AND version = $3",
                    positions[*t]
                );
                sqlx::query(&sql)
                    .bind(*stream)
                    .bind(*version)
                    .bind(before)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected()
            };
            if moved != 1 {
                return Err($crate::store::ReadError::Concurrent((*stream).to_string()));
            }
        }
        for (t, table) in positions.iter().enumerate() {
            $crate::store::script_positions(&mut script, table, &inserts[t], &updates[t])?;
        }
        if let Some(consumer) = $consumer {
            let args = [
                $crate::project::Arg::Text(consumer.to_string()),
                $crate::project::Arg::Int(last_sequence),
                $crate::project::Arg::Int(applied),
                $crate::project::Arg::Int(last_event_us),
                $crate::project::Arg::Int($crate::project::micros(chrono::Utc::now())),
            ];
            if $pg {
                $crate::store::inline_pg(&mut script, $crate::store::CHECKPOINT_SQL, &args)?;
            } else {
                $crate::store::bind_args!(sqlx::query($crate::store::CHECKPOINT_SQL), &args)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        if !script.is_empty() {
            // A query without arguments goes by the simple protocol: the whole script in
            // one message, one round trip.
            sqlx::Executor::execute(&mut *tx, script.as_str()).await?;
        }
        Ok::<_, $crate::store::ReadError>($crate::store::ApplyReport { fates })
    }};
}
pub(crate) use apply_in;
pub(crate) use bind_args;

impl ReadStore {
    /// Whether the read-model database answers now (readiness).
    pub async fn ping(&self) -> Result<(), ReadError> {
        match self {
            Self::Postgres(pool) => sqlx::query("SELECT 1").execute(pool).await.map(|_| ())?,
            Self::Sqlite(pool) => sqlx::query("SELECT 1").execute(pool).await.map(|_| ())?,
        }
        Ok(())
    }

    /// `postgres://…` (server mode) or `sqlite://path` (embedded mode); migrates.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, ReadError> {
        let store = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Self::Postgres(
                PgPoolOptions::new()
                    .max_connections(max_connections)
                    .acquire_timeout(Duration::from_secs(10))
                    .connect(url)
                    .await?,
            )
        } else if let Some(path) = url.strip_prefix("sqlite://") {
            let options = SqliteConnectOptions::new()
                .filename(path)
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .busy_timeout(Duration::from_secs(10));
            Self::Sqlite(
                SqlitePoolOptions::new()
                    .max_connections(max_connections.max(1))
                    .connect_with(options)
                    .await?,
            )
        } else {
            return Err(ReadError::Config(format!(
                "read-model url {url:?} must start with postgres:// or sqlite://"
            )));
        };
        // A schema newer than this binary knows (a rollback past a migration) fails
        // loudly here instead of on the first statement that meets a changed table.
        let known = migrator().iter().map(|m| m.version).max().unwrap_or(0);
        let applied = store.applied_version().await;
        if let Ok(Some(applied)) = applied {
            if applied > known {
                return Err(ReadError::Config(format!(
                    "the read models' schema is at version {applied}, newer than this binary knows ({known}): run the release that migrated it, or a newer one"
                )));
            }
        }
        match &store {
            Self::Postgres(_) if !crm_eventstore::migrations::enabled() => {
                // A least-privilege role: the owner migrated (`crm db migrate`); check it.
                let applied = applied.map_err(|e| {
                    ReadError::Config(format!(
                        "CRM_MIGRATE=off but the read models' schema version cannot be read ({e}): run `crm db migrate` as the owner"
                    ))
                })?;
                if applied.unwrap_or(0) < known {
                    return Err(ReadError::Config(format!(
                        "the read models' schema is at version {}, this binary needs {known}: run `crm db migrate` as the owner",
                        applied.unwrap_or(0)
                    )));
                }
            }
            Self::Postgres(p) => {
                migrator().run(p).await?;
                // Several instances may start at once: one at a time (re)creates the views,
                // or concurrent catalog updates fail.
                let mut conn = p.acquire().await?;
                let key = crm_eventstore::plan::lock_key("crm-read-models:views");
                sqlx::query("SELECT pg_advisory_lock($1)")
                    .bind(key)
                    .execute(&mut *conn)
                    .await?;
                let mut result = Ok(());
                for sql in crate::views::create_statements() {
                    if let Err(e) = sqlx::query(&sql).execute(&mut *conn).await {
                        result = Err(e);
                        break;
                    }
                }
                sqlx::query("SELECT pg_advisory_unlock($1)")
                    .bind(key)
                    .execute(&mut *conn)
                    .await?;
                result?;
            }
            Self::Sqlite(p) => migrator().run(p).await?,
        }
        Ok(store)
    }

    /// The newest read-model migration applied (an error when none ever ran here).
    async fn applied_version(&self) -> Result<Option<i64>, sqlx::Error> {
        const SQL: &str =
            "SELECT max(version) FROM _sqlx_migrations WHERE success AND version >= 1000";
        match self {
            Self::Postgres(p) => sqlx::query_scalar(SQL).fetch_one(p).await,
            Self::Sqlite(p) => sqlx::query_scalar(SQL).fetch_one(p).await,
        }
    }

    pub fn backend(&self) -> &'static str {
        match self {
            Self::Postgres(_) => "postgres",
            Self::Sqlite(_) => "sqlite",
        }
    }

    /// Apply `batch` to every live read model in one transaction with `consumer`'s
    /// checkpoint (if named).
    pub async fn apply(
        &self,
        batch: &[Prepared],
        consumer: Option<&str>,
    ) -> Result<ApplyReport, ReadError> {
        self.apply_to(batch, &Target::Live, consumer).await
    }

    /// Apply `batch` to the tables `target` names, in one transaction.
    pub async fn apply_to(
        &self,
        batch: &[Prepared],
        target: &Target,
        consumer: Option<&str>,
    ) -> Result<ApplyReport, ReadError> {
        match self {
            Self::Postgres(pool) => {
                let mut tx = pool.begin_with(APPLY_BEGIN).await?;
                let report = apply_in!(&mut *tx, batch, target, consumer, true)?;
                tx.commit().await?;
                Ok(report)
            }
            Self::Sqlite(pool) => {
                let mut tx = pool.begin().await?;
                let report = apply_in!(&mut *tx, batch, target, consumer, false)?;
                tx.commit().await?;
                Ok(report)
            }
        }
    }

    pub async fn checkpoints(&self) -> Result<Vec<CheckpointRow>, ReadError> {
        const SQL: &str =
            "SELECT consumer, stream_sequence, events_applied, last_event_us, updated_at_us \
                           FROM rm_checkpoints ORDER BY consumer";
        fn row<'r, R: Row>(r: &'r R) -> Result<CheckpointRow, sqlx::Error>
        where
            &'r str: ColumnIndex<R>,
            String: Decode<'r, R::Database> + Type<R::Database>,
            i64: Decode<'r, R::Database> + Type<R::Database>,
        {
            Ok(CheckpointRow {
                consumer: r.try_get("consumer")?,
                stream_sequence: r.try_get("stream_sequence")?,
                events_applied: r.try_get("events_applied")?,
                last_event_us: r.try_get("last_event_us")?,
                updated_at_us: r.try_get("updated_at_us")?,
            })
        }
        Ok(match self {
            Self::Postgres(p) => sqlx::query(SQL)
                .fetch_all(p)
                .await?
                .iter()
                .map(row)
                .collect::<Result<_, _>>()?,
            Self::Sqlite(p) => sqlx::query(SQL)
                .fetch_all(p)
                .await?
                .iter()
                .map(row)
                .collect::<Result<_, _>>()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inlined(sql: &str, args: &[Arg]) -> Result<String, ReadError> {
        let mut script = String::new();
        inline_pg(&mut script, sql, args).map(|()| script)
    }

    #[test]
    fn placeholders_become_typed_literals() {
        let args: Vec<Arg> = (1..=10).map(Arg::Int).collect();
        assert_eq!(
            inlined("SELECT $1, $10, x-$2", &args).unwrap(),
            "SELECT (1::int8), (10::int8), x-(2::int8);\n"
        );
        assert_eq!(
            inlined(
                "UPDATE t SET a = $1, b = $2, c = $3 WHERE d = $4",
                &[
                    Arg::Text("it's a \\ test".into()),
                    Arg::NullInt,
                    Arg::NullText,
                    Arg::Int(-7)
                ]
            )
            .unwrap(),
            "UPDATE t SET a = (E'it''s a \\\\ test'::text), b = (NULL::int8), c = (NULL::text) WHERE d = (-7::int8);\n"
        );
    }

    #[test]
    fn the_templates_own_literals_and_the_values_are_left_alone() {
        assert_eq!(
            inlined("SELECT 'costs $1 ''or $2''', $1", &[Arg::Text("$2".into())]).unwrap(),
            "SELECT 'costs $1 ''or $2''', (E'$2'::text);\n"
        );
    }

    #[test]
    fn a_missing_argument_or_a_nul_is_an_error_not_a_statement() {
        assert!(inlined("SELECT $2", &[Arg::Int(1)]).is_err());
        assert!(inlined("SELECT $1", &[Arg::Text("a\0b".into())]).is_err());
    }
}

//! Where the read models are stored: PostgreSQL in server mode, SQLite in the embedded
//! mode, with the same tables (`schema.rs`) and the same changes (`project.rs`), planned
//! by `plan.rs` and rendered by `sql.rs`.
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

use std::collections::HashMap;

use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
};
use sqlx::{ColumnIndex, Decode, Row, Type};

use crate::calendar::Calendar;
use crate::change::Change;
use crate::change::Value;
use crate::memory::Memory;
use crate::project::{Decoded, Poison};
use crate::schema::{Kind, Model, Projection, Table, PROJECTIONS};
use crate::sql::{Backend, KeysQuery, Statement};
use crm_eventstore::migrations::Schema;
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

/// One event as delivered, decoded for the read models (it is projected when the batch
/// is applied, against what each read model remembers then).
#[derive(Debug, Clone)]
pub struct Prepared {
    pub event: RecordedEvent,
    /// Position of the message in its source (JetStream stream sequence, or log position).
    pub sequence: u64,
    pub decoded: Result<Decoded, Poison>,
}

impl Prepared {
    pub fn new(event: RecordedEvent, sequence: u64) -> Self {
        let decoded = crate::project::decode(&event);
        Self {
            event,
            sequence,
            decoded,
        }
    }

    /// A page of the global log, each event with its log position as its sequence.
    pub fn from_log(page: Vec<RecordedEvent>) -> Vec<Self> {
        page.into_iter()
            .map(|e| {
                let seq = e.log_position.position;
                Self::new(e, seq)
            })
            .collect()
    }

    /// Why the event cannot be projected, if it cannot.
    pub fn poison(&self) -> Option<&Poison> {
        self.decoded.as_ref().err()
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

/// Who applies a batch to the read models: the consumers that delivered its events, each
/// with the range of them it delivered (its checkpoint moves with the batch), and the
/// stripe its counter amounts are added to ([`crate::schema::Table::striped`]). The
/// projector applies what several partitions delivered in one transaction, into a
/// stripe no other transaction of it uses at once, so they never queue on one another's
/// counter rows. The default: no checkpoint, stripe 0.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Writer<'a> {
    pub consumers: Vec<(&'a str, std::ops::Range<usize>)>,
    pub stripe: i64,
}

impl<'a> Writer<'a> {
    /// Consumer `name` delivered the batch's `n` events; stripe 0.
    pub fn consumer(name: &'a str, n: usize) -> Self {
        Self {
            consumers: vec![(name, 0..n)],
            stripe: 0,
        }
    }

    /// The same, adding to `stripe`.
    pub fn striped(self, stripe: i64) -> Self {
        Self { stripe, ..self }
    }
}

/// A consumer's progress: what it has applied to the read models, written in the same
/// transaction as the read-model changes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct CheckpointRow {
    /// The consumer's name: a projector's durable JetStream consumer (`<group>-pNN`, one
    /// per partition), or another loader of events (such as `demo`).
    pub consumer: String,
    /// The highest sequence number, in the consumer's source (the JetStream stream
    /// sequence for a projector), of the messages it has handled that need no
    /// redelivery.
    pub stream_sequence: i64,
    /// Number of events the consumer has applied or set aside as dead letters, in total
    /// (duplicates and early events are not counted).
    pub events_applied: i64,
    /// The latest instant the event store recorded one of those events (its
    /// `recorded_at`), an RFC 3339 timestamp in UTC.
    #[serde(rename = "last_event_at", serialize_with = "crate::calendar::instant")]
    #[schema(value_type = String, format = DateTime)]
    pub last_event_us: i64,
    /// When the checkpoint was last written (the consumer's clock), an RFC 3339 timestamp
    /// in UTC.
    #[serde(rename = "updated_at", serialize_with = "crate::calendar::instant")]
    #[schema(value_type = String, format = DateTime)]
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

/// How a projector transaction starts on PostgreSQL. Every statement it runs finds rows
/// by key, but a batch looks up hundreds of keys at once (`= ANY(…)`, `VALUES` joins), and
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

/// A connection inside a transaction, on either backend: what the read side runs in a
/// transaction is written once, over this.
pub(crate) enum Conn<'c> {
    Postgres(&'c mut PgConnection),
    Sqlite(&'c mut SqliteConnection),
}

/// `q` with `args` bound (a NULL as the type its column has).
fn bind<'q, DB: sqlx::Database>(
    mut q: sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments<'q>>,
    args: &'q [(Value, bool)],
) -> sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments<'q>>
where
    i64: sqlx::Encode<'q, DB> + Type<DB>,
    &'q str: sqlx::Encode<'q, DB> + Type<DB>,
    Option<i64>: sqlx::Encode<'q, DB> + Type<DB>,
    Option<&'q str>: sqlx::Encode<'q, DB> + Type<DB>,
{
    for (v, int) in args {
        q = match v {
            Value::Int(v) => q.bind(*v),
            Value::Text(v) => q.bind(v.as_str()),
            Value::Doc(_) => unreachable!("a document is bound as its text (Sql::value)"),
            Value::Null if *int => q.bind(None::<i64>),
            Value::Null => q.bind(None::<&str>),
        };
    }
    q
}

impl Conn<'_> {
    pub(crate) fn backend(&self) -> Backend {
        match self {
            Conn::Postgres(_) => Backend::Postgres,
            Conn::Sqlite(_) => Backend::Sqlite,
        }
    }

    /// Run `sql` as it is (on PostgreSQL by the simple protocol: a script of several
    /// statements in one round trip).
    pub(crate) async fn execute(&mut self, sql: &str) -> Result<(), ReadError> {
        match self {
            Conn::Postgres(c) => sqlx::Executor::execute(&mut **c, sql)
                .await?
                .rows_affected(),
            Conn::Sqlite(c) => sqlx::Executor::execute(&mut **c, sql)
                .await?
                .rows_affected(),
        };
        Ok(())
    }

    /// Run a rendered statement, checking the rows it changed when it must change one.
    pub(crate) async fn run(&mut self, s: &Statement) -> Result<(), ReadError> {
        if s.args.is_empty() && s.one_row.is_none() {
            return self.execute(&s.sql).await;
        }
        let changed = match self {
            Conn::Postgres(c) => bind(sqlx::query(&s.sql), &s.args)
                .execute(&mut **c)
                .await?
                .rows_affected(),
            Conn::Sqlite(c) => bind(sqlx::query(&s.sql), &s.args)
                .execute(&mut **c)
                .await?
                .rows_affected(),
        };
        match &s.one_row {
            Some(stream) if changed != 1 => Err(ReadError::Concurrent(stream.clone())),
            _ => Ok(()),
        }
    }

    /// Rows of (integer, text, integer).
    pub(crate) async fn fetch_iti(
        &mut self,
        q: &KeysQuery<'_>,
    ) -> Result<Vec<(i64, String, i64)>, ReadError> {
        fn iti<R: Row>(r: &R) -> Result<(i64, String, i64), sqlx::Error>
        where
            usize: ColumnIndex<R>,
            for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
            for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
        {
            Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?))
        }
        Ok(match self {
            Conn::Postgres(c) => (sqlx::query(&q.sql).bind(q.keys).fetch_all(&mut **c).await?)
                .iter()
                .map(iti)
                .collect::<Result<_, _>>()?,
            Conn::Sqlite(c) => (each_bound(sqlx::query(&q.sql), q.keys))
                .fetch_all(&mut **c)
                .await?
                .iter()
                .map(iti)
                .collect::<Result<_, _>>()?,
        })
    }

    /// Every row of `sql`, each of its `columns` as text (or NULL).
    pub(crate) async fn fetch_text(
        &mut self,
        sql: &str,
        columns: usize,
    ) -> Result<Vec<Vec<Option<String>>>, ReadError> {
        fn texts<R: Row>(r: &R, n: usize) -> Result<Vec<Option<String>>, sqlx::Error>
        where
            usize: ColumnIndex<R>,
            for<'r> Option<String>: Decode<'r, R::Database> + Type<R::Database>,
        {
            (0..n).map(|i| r.try_get(i)).collect()
        }
        Ok(match self {
            Conn::Postgres(c) => sqlx::query(sql)
                .fetch_all(&mut **c)
                .await?
                .iter()
                .map(|r| texts(r, columns))
                .collect::<Result<_, _>>()?,
            Conn::Sqlite(c) => sqlx::query(sql)
                .fetch_all(&mut **c)
                .await?
                .iter()
                .map(|r| texts(r, columns))
                .collect::<Result<_, _>>()?,
        })
    }

    /// The zone the KPI ledger counts local days in.
    pub(crate) async fn ledger_zone(&mut self) -> Result<Calendar, ReadError> {
        let rows = self.fetch_text(crate::sql::LEDGER_ZONE, 1).await?;
        let zone = rows.into_iter().next().and_then(|mut r| r.remove(0));
        zone.as_deref()
            .unwrap_or("UTC")
            .parse()
            .map_err(|e| ReadError::Config(format!("rm_kept.time_zone: {e}")))
    }

    /// The versions each target applied of every stream of `batch` (absent: none).
    async fn positions<'b>(
        &mut self,
        tables: &[String],
        batch: &'b [Prepared],
    ) -> Result<HashMap<(usize, &'b str), i64>, ReadError> {
        let mut streams: Vec<&str> = batch.iter().map(|p| p.event.stream_id.as_str()).collect();
        streams.sort_unstable();
        streams.dedup();
        let mut known = HashMap::new();
        for chunk in streams.chunks(1000) {
            let query = crate::sql::positions_query(self.backend(), tables, chunk);
            for (t, stream, version) in self.fetch_iti(&query).await? {
                // Keyed by the batch's own &str (`chunk` is sorted): no copy.
                if let Ok(i) = chunk.binary_search(&stream.as_str()) {
                    known.insert((t as usize, chunk[i]), version);
                }
            }
        }
        Ok(known)
    }

    /// Apply `batch` to the tables `target` names, as `writer` (its consumers'
    /// checkpoints, its stripe): the positions read, the batch planned
    /// ([`crate::plan`]), its statements rendered ([`crate::sql`]) and run (on
    /// PostgreSQL: one script, one round trip).
    pub(crate) async fn apply(
        &mut self,
        batch: &[Prepared],
        target: &Target,
        writer: &Writer<'_>,
    ) -> Result<ApplyReport, ReadError> {
        let targets = target.resolve();
        let tables: Vec<String> = targets
            .iter()
            .map(|(_, p, suffix)| format!("{}{suffix}", p.positions_table()))
            .collect();
        let known = self.positions(&tables, batch).await?;
        let plan = crate::plan::plan(batch, targets.len(), &known);
        let changes = self.project(batch, &plan, &targets).await?;
        let now = crate::project::micros(chrono::Utc::now());
        let live = matches!(target, Target::Live);
        let consumers: Vec<(&str, crate::plan::Progress)> = (writer.consumers.iter())
            .map(|(name, range)| (*name, plan.progress(batch, range.clone())))
            .collect();
        let statements = crate::sql::batch(
            self.backend(),
            &crate::sql::Batch {
                events: batch,
                plan: &plan,
                targets: &targets,
                changes: &changes,
                dead_letters: live,
                consumers: &consumers,
                stripe: writer.stripe,
                now_us: now,
            },
        )?;
        for s in &statements {
            self.run(s).await?;
        }
        Ok(ApplyReport { fates: plan.fates })
    }
}

impl Conn<'_> {
    /// Project the steps of `plan`, in order: each target's memo rows for the batch's
    /// customers read first, then kept up to date as its events are projected.
    async fn project(
        &mut self,
        batch: &[Prepared],
        plan: &crate::plan::Plan<'_>,
        targets: &[(usize, Projection, &str)],
    ) -> Result<Vec<(usize, Vec<Change>)>, ReadError> {
        let mut caches = Vec::with_capacity(targets.len());
        let analytics = targets.iter().any(|(_, p, _)| p.model == Model::Analytics);
        let zone = match analytics {
            true => self.ledger_zone().await?,
            false => Calendar::UTC,
        };
        for (t, (_, projection, suffix)) in targets.iter().enumerate() {
            let mut customers: Vec<&str> = plan
                .steps
                .iter()
                .filter(|(_, target)| *target == t)
                .filter_map(|(i, _)| match &batch[*i].decoded {
                    Ok(Decoded::Customer(id, _)) => Some(id.as_str()),
                    _ => None,
                })
                .collect();
            customers.sort_unstable();
            customers.dedup();
            let mut cache = Memory::cache(*projection).in_zone(zone);
            for table in projection.tables.iter().filter(|t| t.kind == Kind::Memo) {
                for chunk in customers.chunks(1000) {
                    let query = crate::sql::memo_query(self.backend(), table, suffix, chunk);
                    cache.load(table.name, self.fetch_values(&query, table).await?);
                }
            }
            caches.push(cache);
        }
        let mut out = Vec::with_capacity(plan.steps.len());
        for &(i, t) in &plan.steps {
            let Ok(decoded) = &batch[i].decoded else {
                continue;
            };
            let cache = &mut caches[t];
            let changes = crate::project::changes(&targets[t].1, &batch[i].event, decoded, cache);
            cache.remember(&changes);
            out.push((t, changes));
        }
        Ok(out)
    }

    /// Rows of `q` as values of `table`'s columns.
    async fn fetch_values(
        &mut self,
        q: &KeysQuery<'_>,
        table: &Table,
    ) -> Result<Vec<Vec<Value>>, ReadError> {
        let ints: Vec<bool> = table
            .columns
            .iter()
            .map(|(_, ty)| ty.starts_with("BIGINT"))
            .collect();
        Ok(match self {
            Conn::Postgres(c) => (sqlx::query(&q.sql).bind(q.keys).fetch_all(&mut **c).await?)
                .iter()
                .map(|r| row_values(r, &ints))
                .collect::<Result<_, _>>()?,
            Conn::Sqlite(c) => (each_bound(sqlx::query(&q.sql), q.keys))
                .fetch_all(&mut **c)
                .await?
                .iter()
                .map(|r| row_values(r, &ints))
                .collect::<Result<_, _>>()?,
        })
    }

    /// Rows of `s`, column `i` an integer if `ints[i]`, else text.
    pub(crate) async fn fetch(
        &mut self,
        s: &Statement,
        ints: &[bool],
    ) -> Result<Vec<Vec<Value>>, ReadError> {
        Ok(match self {
            Conn::Postgres(c) => bind(sqlx::query(&s.sql), &s.args)
                .fetch_all(&mut **c)
                .await?
                .iter()
                .map(|r| row_values(r, ints))
                .collect::<Result<_, _>>()?,
            Conn::Sqlite(c) => bind(sqlx::query(&s.sql), &s.args)
                .fetch_all(&mut **c)
                .await?
                .iter()
                .map(|r| row_values(r, ints))
                .collect::<Result<_, _>>()?,
        })
    }
}

/// Row `r`'s values, column `i` an integer if `ints[i]`, else text.
fn row_values<R: Row>(r: &R, ints: &[bool]) -> Result<Vec<Value>, sqlx::Error>
where
    usize: ColumnIndex<R>,
    for<'r> Option<String>: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Option<i64>: Decode<'r, R::Database> + Type<R::Database>,
{
    ints.iter()
        .enumerate()
        .map(|(i, int)| {
            Ok(if *int {
                r.try_get::<Option<i64>, _>(i)?.into()
            } else {
                r.try_get::<Option<String>, _>(i)?.into()
            })
        })
        .collect()
}

/// `q` with each of `keys` bound in turn (SQLite's `IN ($1, …, $n)`: [`KeysQuery`]).
fn each_bound<'q>(
    mut q: sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>>,
    keys: &'q [&'q str],
) -> sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>> {
    for k in keys {
        q = q.bind(*k);
    }
    q
}

impl Target {
    /// (index in [`crate::schema::PROJECTIONS`], projection, table suffix) of each read
    /// model the target names.
    fn resolve(&self) -> Vec<(usize, Projection, &str)> {
        match self {
            Target::Live => PROJECTIONS
                .iter()
                .copied()
                .enumerate()
                .map(|(i, p)| (i, p, ""))
                .collect(),
            Target::Only { projection, suffix } => vec![(
                PROJECTIONS
                    .iter()
                    .position(|p| p.name == projection.name)
                    .expect("a known projection"),
                *projection,
                suffix.as_str(),
            )],
        }
    }
}

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
        Self::connect_with(url, max_connections, Schema::Migrate).await
    }

    /// As [`Self::connect`], PostgreSQL's schema migrated or checked as `schema` says.
    pub async fn connect_with(
        url: &str,
        max_connections: u32,
        schema: Schema,
    ) -> Result<Self, ReadError> {
        let store = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            // No JIT: the read models answer by index walks under a LIMIT, whose cost
            // the planner overestimates past `jit_above_cost`; compiling then took
            // 570-620 ms of a 0.7 ms query (the open complaints of one SLA state at W2's
            // size, docs/benchmarks.md).
            let options = url.parse::<PgConnectOptions>()?.options([("jit", "off")]);
            Self::Postgres(
                PgPoolOptions::new()
                    .max_connections(max_connections)
                    .acquire_timeout(Duration::from_secs(10))
                    .connect_with(options)
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
            Self::Postgres(_) if schema == Schema::Expect => {
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
                for sql in crate::views::create_statements(Backend::Postgres) {
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
            Self::Sqlite(p) => {
                migrator().run(p).await?;
                for sql in crate::views::create_statements(Backend::Sqlite) {
                    sqlx::query(&sql).execute(p).await?;
                }
            }
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

    /// Rows of `s` (read only), column `i` an integer if `ints[i]`, else text.
    pub(crate) async fn fetch(
        &self,
        s: &Statement,
        ints: &[bool],
    ) -> Result<Vec<Vec<Value>>, ReadError> {
        match self {
            Self::Postgres(pool) => {
                Conn::Postgres(&mut *pool.acquire().await?)
                    .fetch(s, ints)
                    .await
            }
            Self::Sqlite(pool) => {
                Conn::Sqlite(&mut *pool.acquire().await?)
                    .fetch(s, ints)
                    .await
            }
        }
    }

    /// The zone the KPI ledger counts local days in.
    pub async fn ledger_zone(&self) -> Result<Calendar, ReadError> {
        match self {
            Self::Postgres(pool) => {
                Conn::Postgres(&mut *pool.acquire().await?)
                    .ledger_zone()
                    .await
            }
            Self::Sqlite(pool) => {
                Conn::Sqlite(&mut *pool.acquire().await?)
                    .ledger_zone()
                    .await
            }
        }
    }

    /// Count analytics' days (the KPI ledger's, the funnel's) in `zone` from now on. A
    /// different zone than the ledger's marks both incomplete (KPI and funnel questions
    /// are answered from the facts) until `crm projections rebuild analytics` has
    /// counted the whole log in it.
    pub async fn set_ledger_zone(&self, zone: Calendar) -> Result<bool, ReadError> {
        if self.ledger_zone().await? == zone {
            return Ok(false);
        }
        let sql = crate::sql::set_ledger_zone(&zone);
        match self {
            Self::Postgres(p) => sqlx::query(&sql).execute(p).await?.rows_affected(),
            Self::Sqlite(p) => sqlx::query(&sql).execute(p).await?.rows_affected(),
        };
        Ok(true)
    }

    pub fn backend(&self) -> &'static str {
        match self {
            Self::Postgres(_) => "postgres",
            Self::Sqlite(_) => "sqlite",
        }
    }

    /// Apply `batch` to every live read model in one transaction with `consumer`'s
    /// checkpoint (if named), its counter amounts into stripe 0.
    pub async fn apply(
        &self,
        batch: &[Prepared],
        consumer: Option<&str>,
    ) -> Result<ApplyReport, ReadError> {
        let writer = consumer.map_or_else(Writer::default, |c| Writer::consumer(c, batch.len()));
        self.apply_to(batch, &Target::Live, &writer).await
    }

    /// Apply `batch` to the tables `target` names, in one transaction, as `writer`.
    pub async fn apply_to(
        &self,
        batch: &[Prepared],
        target: &Target,
        writer: &Writer<'_>,
    ) -> Result<ApplyReport, ReadError> {
        match self {
            Self::Postgres(pool) => {
                let mut tx = pool.begin_with(APPLY_BEGIN).await?;
                let report = Conn::Postgres(&mut tx).apply(batch, target, writer).await?;
                tx.commit().await?;
                Ok(report)
            }
            Self::Sqlite(pool) => {
                let mut tx = pool.begin().await?;
                let report = Conn::Sqlite(&mut tx).apply(batch, target, writer).await?;
                tx.commit().await?;
                Ok(report)
            }
        }
    }

    /// Move the counters' striped rows into stripe 0 ([`crate::sql::fold`]): every sum
    /// stays what it was, and questions read fewer rows. The projector runs it now and
    /// then; folds may run at once, and none waits on a projector's transaction. Returns
    /// how many keys took amounts.
    pub async fn fold_counters(&self) -> Result<u64, ReadError> {
        let striped = crate::schema::PROJECTIONS
            .iter()
            .flat_map(|p| p.tables)
            .filter(|t| t.striped(None));
        let mut keys = 0;
        for t in striped {
            match self {
                // One statement, atomic alone.
                Self::Postgres(p) => {
                    for sql in &crate::sql::fold(Backend::Postgres, t) {
                        keys += sqlx::query(sql).execute(p).await?.rows_affected();
                    }
                }
                Self::Sqlite(p) => {
                    let mut tx = p.begin().await?;
                    for (i, sql) in crate::sql::fold(Backend::Sqlite, t).iter().enumerate() {
                        let done = sqlx::query(sql).execute(&mut *tx).await?;
                        keys += if i == 0 { done.rows_affected() } else { 0 };
                    }
                    tx.commit().await?;
                }
            }
        }
        Ok(keys)
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

//! PostgreSQL backend (server mode): where events are stored.
//!
//! An append batch is one round trip: one call of the `crm_append` function
//! (`migrations/postgres/0009_keys_in_append.sql`; 0002 and 0004 were its earlier
//! versions), which runs as one implicit transaction:
//! 1. the batch is judged here, with [`crate::plan::plan_batch`], against what this
//!    process believes is committed ([`Beliefs`]: its own earlier appends);
//! 2. `crm_append` takes transaction-scoped advisory locks on every stream, unique key,
//!    counter and new subject key the batch touches, in sorted order (no deadlocks
//!    between batches);
//! 3. it checks every belief the plan relied on against the committed state; if one is
//!    stale it writes nothing and answers with the real state, and the batch is judged
//!    again (step 1) on that;
//! 4. otherwise it inserts the accepted events and command records, updates keys and
//!    counters and stores subjects' first keys (ADR 0011); the first insert assigns the
//!    transaction id.
//!
//! Because the transaction id is assigned only after every lock is held, a later writer
//! of a stream always has a larger transaction id than the earlier one: ordering the
//! global log by `(transaction_id, position)` keeps each stream in version order, and
//! reading only below `pg_snapshot_xmin(pg_current_snapshot())` never skips an event
//! that commits late. See `docs/adr/0002-commit-safe-global-order.md`.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
pub use sqlx::postgres::PgPool;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPoolOptions, PgRow};
use sqlx::Row;
use uuid::Uuid;

use crate::chain::{ChainHash, GlobalCheckpoint};
use crate::error::{AppendError, StoreError};
use crate::migrations::Schema;
use crate::model::*;
use crate::plan::{self, Decision, Snapshot, StoredCommand};
use crate::{Append, Checkpoints, Log, Lookups, Seals, Streams, SubjectKeys};
use crm_telemetry::names;

/// Event store on PostgreSQL.
#[derive(Clone)]
pub struct PgEventStore {
    pool: PgPool,
    /// `crm_append`, or a restricted wrapper ([`PgEventStore::access_records_only`],
    /// [`PgEventStore::verification_records_only`]).
    append_fn: AppendFunction,
    beliefs: std::sync::Arc<std::sync::Mutex<Beliefs>>,
    #[cfg(feature = "testing")]
    before_commit: Option<crate::BeforeCommit>,
}

const EVENT_COLUMNS: &str =
    "transaction_id::text::bigint AS tx, position, stream_id, stream_version, \
     event_id, event_type, schema_version, payload, command_id, correlation_id, causation_id, \
     actor, occurred_at, recorded_at, chain_hash";

/// [`EVENT_COLUMNS`] with the payload as its JSON text.
const EVENT_COLUMNS_TEXT: &str =
    "transaction_id::text::bigint AS tx, position, stream_id, stream_version, \
     event_id, event_type, schema_version, payload::text AS payload, command_id, correlation_id, \
     causation_id, actor, occurred_at, recorded_at, chain_hash";

/// A pooled connection idle at least this long is checked before it is used again.
pub const IDLE_CHECK_AFTER: Duration = Duration::from_millis(250);

impl PgEventStore {
    /// Whether the database answers now (readiness).
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Connect with a pool of `max_connections` and apply migrations.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        Self::connect_with(url, max_connections, Schema::Migrate).await
    }

    /// Connect with a pool of `max_connections`; migrate, or check the schema, as
    /// `schema` says.
    pub async fn connect_with(
        url: &str,
        max_connections: u32,
        schema: Schema,
    ) -> Result<Self, StoreError> {
        let options: PgConnectOptions = url
            .parse()
            .map_err(|e| StoreError::Config(format!("bad PostgreSQL url: {e}")))?;
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(10))
            // No ping before each use: it doubled the round trips of every append. A
            // connection that died fails its statement, which the caller sees as a storage
            // error and retries with the same command id; the pool then replaces it.
            .test_before_acquire(false)
            // ...except a connection idle for a while: it may have been broken by a
            // PostgreSQL restart since it was last used (it would fail the next request
            // long after the database is back). A busy pool never waits this long
            // between uses, so the hot path pays nothing.
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for >= IDLE_CHECK_AFTER {
                        sqlx::Connection::ping(conn).await?;
                    }
                    Ok(true)
                })
            })
            // Every statement of the store is a key lookup or an ordered index range: plan
            // it once per connection (planning was a third of PostgreSQL's time on the
            // write path) and never as a sequential scan, which a plan made while `events`
            // was still small would otherwise stay as the log grows. Nor as a parallel or
            // JIT-compiled plan: without statistics (autovacuum off or behind) a generic
            // plan's row estimate grows with the table, and at W2's 12 million events
            // reading one customer's stream forked two workers and compiled code, 50-160
            // ms instead of 0.3 ms (commands/s fell from 4,000 to 1,400; docs/benchmarks.md).
            .connect_with(options.application_name("crm-eventstore").options([
                ("plan_cache_mode", "force_generic_plan"),
                ("enable_seqscan", "off"),
                ("jit", "off"),
                ("max_parallel_workers_per_gather", "0"),
            ]))
            .await?;
        let store = Self::from_pool(pool);
        store.migrate(schema).await?;
        Ok(store)
    }

    pub fn from_pool(pool: PgPool) -> Self {
        Self {
            pool,
            append_fn: AppendFunction::Full,
            beliefs: Default::default(),
            #[cfg(feature = "testing")]
            before_commit: None,
        }
    }

    /// Test-only: run `hook` before each append commits (slow commits, rollbacks).
    #[cfg(feature = "testing")]
    pub fn with_before_commit(mut self, hook: crate::BeforeCommit) -> Self {
        self.before_commit = Some(hook);
        self
    }

    /// Apply the schema migrations, or with [`Schema::Expect`] (`CRM_MIGRATE=off`:
    /// services connecting as least-privilege roles, which may not create anything) check
    /// that the owner has applied them: `crm db migrate`.
    pub async fn migrate(&self, schema: Schema) -> Result<(), StoreError> {
        let migrator = crate::migrations::postgres();
        if schema == Schema::Expect {
            let latest = migrator.iter().map(|m| m.version).max().unwrap_or(0);
            let applied: Option<i64> = sqlx::query_scalar(
                "SELECT max(version) FROM _sqlx_migrations WHERE success AND version < 1000",
            )
            .fetch_one(&self.pool)
            .await
            .map_err(|e| {
                StoreError::Config(format!(
                    "CRM_MIGRATE=off but the schema version cannot be read ({e}): run `crm db migrate` as the owner"
                ))
            })?;
            return match applied {
                Some(v) if v >= latest => Ok(()),
                v => Err(StoreError::Config(format!(
                    "the event store's schema is at version {}, this binary needs {latest}: run `crm db migrate` as the owner",
                    v.unwrap_or(0)
                ))),
            };
        }
        migrator.run(&self.pool).await?;
        Ok(())
    }

    /// This store appends only records of personal-data reads (the query service's).
    pub fn access_records_only(mut self) -> Self {
        self.append_fn = AppendFunction::AccessRecords;
        self
    }

    /// This store appends only results of chain verifications (`crm audit verify`'s, which
    /// an auditor's read-only role may record).
    pub fn verification_records_only(mut self) -> Self {
        self.append_fn = AppendFunction::VerificationRecords;
        self
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    async fn try_append_batch(
        &self,
        requests: &[AppendRequest],
    ) -> Result<Vec<Result<AppendOutcome, AppendError>>, sqlx::Error> {
        let touched = plan::touched(requests);
        if self.append_fn != AppendFunction::Full && !touched.subjects.is_empty() {
            return Err(sqlx::Error::Protocol(
                "this store appends records only: it stores no subject's key".into(),
            ));
        }
        let locks = plan::lock_keys(requests);
        let mut snap = self.beliefs.lock().expect("beliefs").snapshot(&touched);
        for _ in 0..MAX_STALE_ANSWERS {
            let a = Assumed::of(&touched, &snap);
            let plan = plan::plan_batch(requests, snap.clone());
            let w = Writes::of(requests, &plan);
            let query = sqlx::query(self.append_fn.sql())
                .bind(&locks)
                .bind(&a.new_commands)
                .bind(&touched.streams)
                .bind(&a.versions)
                .bind(&a.heads)
                .bind(&touched.keys)
                .bind(&a.owners)
                .bind(&touched.counters)
                .bind(&a.values);
            // The wrappers take no keys (checked above).
            let query = match self.append_fn {
                AppendFunction::Full => query.bind(&a.keyless_subjects),
                AppendFunction::AccessRecords | AppendFunction::VerificationRecords => query,
            };
            let query = w.bind_events(query);
            let query = match self.append_fn {
                AppendFunction::Full => query.bind(&w.new_key_subjects).bind(&w.new_key_bytes),
                AppendFunction::AccessRecords | AppendFunction::VerificationRecords => query,
            };
            let rows = self.run_append(query).await?;
            let stale = rows
                .first()
                .map(|r| r.try_get::<&str, _>("r_kind"))
                .transpose()?
                == Some("stale");
            if stale {
                // Someone else (another process, or a batch that failed) changed what
                // this one touches: plan again on the state crm_append just read.
                metrics::counter!(names::APPEND_STALE_BELIEFS_TOTAL).increment(1);
                let mut read = read_snapshot(&rows[1..])?;
                // A stale answer lists only what was asked; what only ever becomes true
                // (a command stored, a subject keyed) stays known from earlier answers,
                // or it would be asked again, and found stale again.
                read.keyed_subjects.extend(snap.keyed_subjects.drain());
                for (id, stored) in snap.commands.drain() {
                    read.commands.entry(id).or_insert(stored);
                }
                snap = read;
                self.beliefs
                    .lock()
                    .expect("beliefs")
                    .learn(&touched, &snap, None);
                continue;
            }
            let positions = read_positions(&rows)?;
            self.beliefs
                .lock()
                .expect("beliefs")
                .learn(&touched, &snap, Some(&plan));
            return Ok(build_outcomes(requests, &plan, &positions));
        }
        Err(sqlx::Error::Protocol(format!(
            "the batch found its streams changed by other writers {MAX_STALE_ANSWERS} times in a row"
        )))
    }
}

impl PgEventStore {
    /// Runs one `crm_append` call; under test, with the fault-injection hook between
    /// the writes and the commit.
    async fn run_append(
        &self,
        query: sqlx::query::Query<'_, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> Result<Vec<PgRow>, sqlx::Error> {
        #[cfg(feature = "testing")]
        if let Some(hook) = &self.before_commit {
            let mut tx = self.pool.begin().await?;
            let rows = query.fetch_all(&mut *tx).await?;
            if hook().await {
                tx.rollback().await?;
                return Err(sqlx::Error::Protocol(
                    "rolled back by fault injection".into(),
                ));
            }
            tx.commit().await?;
            return Ok(rows);
        }
        query.fetch_all(&self.pool).await
    }
}

/// What a plan assumes is committed, in `crm_append`'s argument order, for it to check
/// under the batch's locks.
struct Assumed<'a> {
    versions: Vec<i64>,
    heads: Vec<&'a [u8]>,
    owners: Vec<Option<&'a str>>,
    values: Vec<i64>,
    new_commands: Vec<Uuid>,
    /// Subjects of new keys believed to have none (a subject known to have one has its
    /// requests refused by the plan, and is not asked about again).
    keyless_subjects: Vec<&'a str>,
}

impl<'a> Assumed<'a> {
    fn of(touched: &'a plan::Touched, snap: &'a Snapshot) -> Self {
        Assumed {
            versions: touched
                .streams
                .iter()
                .map(|s| snap.stream_versions.get(s).copied().unwrap_or(0) as i64)
                .collect(),
            heads: touched
                .streams
                .iter()
                .map(|s| {
                    snap.stream_heads
                        .get(s)
                        .map_or(&ChainHash::GENESIS.0[..], |h| &h.0[..])
                })
                .collect(),
            owners: touched
                .keys
                .iter()
                .map(|k| snap.key_owners.get(k).map(String::as_str))
                .collect(),
            values: touched
                .counters
                .iter()
                .map(|c| snap.counters.get(c).copied().unwrap_or(0))
                .collect(),
            new_commands: touched
                .commands
                .iter()
                .filter(|c| !snap.commands.contains_key(c))
                .copied()
                .collect(),
            keyless_subjects: touched
                .subjects
                .iter()
                .filter(|s| !snap.keyed_subjects.contains(*s))
                .map(String::as_str)
                .collect(),
        }
    }
}

/// The log position `crm_append` gave each event it wrote.
fn read_positions(rows: &[PgRow]) -> Result<HashMap<Uuid, u64>, sqlx::Error> {
    let mut positions = HashMap::with_capacity(rows.len());
    for row in rows {
        let event_id: &str = row.try_get("r_key")?;
        let position: i64 = row.try_get("r_n")?;
        let event_id = event_id
            .parse()
            .map_err(|e: uuid::Error| sqlx::Error::Decode(e.into()))?;
        positions.insert(event_id, position as u64);
    }
    Ok(positions)
}

/// How often a batch is planned again because other writers moved what it touches.
const MAX_STALE_ANSWERS: usize = 8;

/// Most entries [`Beliefs`] keeps before starting over (each costs one extra round trip
/// the next time it is touched).
const BELIEFS_MAX: usize = 250_000;

/// Which append function a store calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AppendFunction {
    /// `crm_append`, with subjects' first keys (migration 9).
    Full,
    /// The query service's store: `crm_append_access`, which takes only
    /// `PersonalDataRead` events in `access-…` streams (the `crm_query` role may call
    /// nothing else that writes).
    AccessRecords,
    /// `crm audit verify`'s store: `crm_append_verification`, which takes only
    /// `ChainVerified` events in the `verification-chain` stream.
    VerificationRecords,
}

impl AppendFunction {
    fn sql(self) -> &'static str {
        match self {
            AppendFunction::Full => {
                "SELECT r_kind, r_key, r_text, r_doc, r_n FROM crm_append(\
                 $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, \
                 $19, $20, $21, $22, $23, $24, $25, $26, $27, $28, $29, $30, $31, $32)"
            }
            AppendFunction::AccessRecords => {
                "SELECT r_kind, r_key, r_text, r_doc, r_n FROM crm_append_access(\
                 $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, \
                 $19, $20, $21, $22, $23, $24, $25, $26, $27, $28, $29)"
            }
            AppendFunction::VerificationRecords => {
                "SELECT r_kind, r_key, r_text, r_doc, r_n FROM crm_append_verification(\
                 $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, \
                 $19, $20, $21, $22, $23, $24, $25, $26, $27, $28, $29)"
            }
        }
    }
}

/// What this process believes is committed for the streams, keys and counters it has
/// touched: learned from its own appends and from stale answers. Never trusted:
/// `crm_append` checks every belief under the batch's locks and answers "stale" with
/// the real state, so a wrong belief costs one more round trip, never a wrong append.
/// Untouched things are believed empty (new streams, free keys, zero counters), which
/// is what a command mostly touches the first time.
#[derive(Default)]
struct Beliefs {
    /// Version and chain head of each stream.
    streams: HashMap<String, (u64, ChainHash)>,
    keys: HashMap<String, Option<String>>,
    counters: HashMap<String, i64>,
}

impl Beliefs {
    fn snapshot(&self, touched: &plan::Touched) -> Snapshot {
        let mut snap = Snapshot::default();
        for s in &touched.streams {
            if let Some(&(v, head)) = self.streams.get(s) {
                snap.stream_versions.insert(s.clone(), v);
                snap.stream_heads.insert(s.clone(), head);
            }
        }
        for k in &touched.keys {
            if let Some(Some(owner)) = self.keys.get(k) {
                snap.key_owners.insert(k.clone(), owner.clone());
            }
        }
        for c in &touched.counters {
            if let Some(&v) = self.counters.get(c) {
                snap.counters.insert(c.clone(), v);
            }
        }
        snap
    }

    /// Record `snap` (checked or just read) and, after a commit, what `plan` wrote.
    fn learn(&mut self, touched: &plan::Touched, snap: &Snapshot, plan: Option<&plan::Plan<'_>>) {
        if self.streams.len() + self.keys.len() + self.counters.len() > BELIEFS_MAX {
            *self = Beliefs::default();
        }
        for s in &touched.streams {
            let v = snap.stream_versions.get(s).copied().unwrap_or(0);
            let head = snap.stream_heads.get(s).copied().unwrap_or_default();
            self.streams.insert(s.clone(), (v, head));
        }
        for k in &touched.keys {
            self.keys.insert(k.clone(), snap.key_owners.get(k).cloned());
        }
        for c in &touched.counters {
            let v = snap.counters.get(c).copied().unwrap_or(0);
            self.counters.insert(c.clone(), v);
        }
        if let Some(plan) = plan {
            for r in &plan.rows {
                let belief = self.streams.entry(r.stream_id.to_string()).or_default();
                if r.stream_version > belief.0 {
                    *belief = (r.stream_version, r.chain_hash);
                }
            }
            for (k, owner) in &plan.keys {
                self.keys.insert(k.clone(), owner.clone());
            }
            for (c, v) in &plan.counters {
                self.counters.insert(c.clone(), *v);
            }
        }
    }
}

/// The write half of a planned batch, as the column arrays `crm_append` takes.
struct Writes<'a> {
    stream_ids: Vec<&'a str>,
    versions: Vec<i64>,
    event_ids: Vec<Uuid>,
    types: Vec<&'a str>,
    schema_versions: Vec<i32>,
    payloads: Vec<&'a serde_json::Value>,
    command_ids: Vec<Uuid>,
    correlation_ids: Vec<Uuid>,
    causation_ids: Vec<Option<Uuid>>,
    actors: Vec<&'a str>,
    occurred: Vec<DateTime<Utc>>,
    hashes: Vec<&'a [u8]>,
    cmd_ids: Vec<Uuid>,
    cmd_types: Vec<&'a str>,
    cmd_fps: Vec<&'a str>,
    claim_keys: Vec<&'a str>,
    claim_owners: Vec<&'a str>,
    freed_keys: Vec<&'a str>,
    counter_keys: Vec<&'a str>,
    counter_values: Vec<i64>,
    new_key_subjects: Vec<&'a str>,
    new_key_bytes: Vec<&'a [u8]>,
}

impl<'a> Writes<'a> {
    fn of(requests: &'a [AppendRequest], plan: &'a plan::Plan<'a>) -> Self {
        let n = plan.rows.len();
        let mut w = Writes {
            stream_ids: Vec::with_capacity(n),
            versions: Vec::with_capacity(n),
            event_ids: Vec::with_capacity(n),
            types: Vec::with_capacity(n),
            schema_versions: Vec::with_capacity(n),
            payloads: Vec::with_capacity(n),
            command_ids: Vec::with_capacity(n),
            correlation_ids: Vec::with_capacity(n),
            causation_ids: Vec::with_capacity(n),
            actors: Vec::with_capacity(n),
            occurred: Vec::with_capacity(n),
            hashes: Vec::with_capacity(n),
            cmd_ids: Vec::new(),
            cmd_types: Vec::new(),
            cmd_fps: Vec::new(),
            claim_keys: Vec::new(),
            claim_owners: Vec::new(),
            freed_keys: Vec::new(),
            counter_keys: Vec::new(),
            counter_values: Vec::new(),
            new_key_subjects: Vec::new(),
            new_key_bytes: Vec::new(),
        };
        for r in &plan.rows {
            w.stream_ids.push(r.stream_id);
            w.versions.push(r.stream_version as i64);
            w.event_ids.push(r.event.event_id);
            w.types.push(r.event.event_type.as_str());
            w.schema_versions.push(r.event.schema_version as i32);
            w.payloads.push(&r.event.payload);
            w.command_ids.push(r.meta.command_id);
            w.correlation_ids.push(r.meta.correlation_id);
            w.causation_ids.push(r.meta.causation_id);
            w.actors.push(r.meta.actor.as_str());
            w.occurred.push(r.meta.issued_at);
            w.hashes.push(&r.chain_hash.0);
        }
        for i in plan.accepted() {
            let meta = &requests[i].meta;
            w.cmd_ids.push(meta.command_id);
            w.cmd_types.push(meta.command_type.as_str());
            w.cmd_fps.push(meta.fingerprint.as_str());
        }
        for (k, owner) in &plan.keys {
            match owner {
                Some(o) => {
                    w.claim_keys.push(k.as_str());
                    w.claim_owners.push(o.as_str());
                }
                None => w.freed_keys.push(k.as_str()),
            }
        }
        for (k, v) in &plan.counters {
            w.counter_keys.push(k.as_str());
            w.counter_values.push(*v);
        }
        for k in &plan.new_keys {
            w.new_key_subjects.push(k.subject.as_str());
            w.new_key_bytes.push(&k.key);
        }
        w
    }

    /// Bind the writes every append function takes (`e_stream_ids` to `n_values`).
    fn bind_events<'q>(
        &'q self,
        query: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
        query
            .bind(&self.stream_ids)
            .bind(&self.versions)
            .bind(&self.event_ids)
            .bind(&self.types)
            .bind(&self.schema_versions)
            .bind(&self.payloads)
            .bind(&self.command_ids)
            .bind(&self.correlation_ids)
            .bind(&self.causation_ids)
            .bind(&self.actors)
            .bind(&self.occurred)
            .bind(&self.hashes)
            .bind(&self.cmd_ids)
            .bind(&self.cmd_types)
            .bind(&self.cmd_fps)
            .bind(&self.claim_keys)
            .bind(&self.claim_owners)
            .bind(&self.freed_keys)
            .bind(&self.counter_keys)
            .bind(&self.counter_values)
    }
}

/// The state rows of a stale answer: command records, stream versions, key owners,
/// counter values and subjects with a key.
fn read_snapshot(rows: &[PgRow]) -> Result<Snapshot, sqlx::Error> {
    let mut snap = Snapshot::default();
    for row in rows {
        let kind: &str = row.try_get("r_kind")?;
        let key: String = row.try_get("r_key")?;
        match kind {
            "c" => {
                let outcome: serde_json::Value = row.try_get("r_doc")?;
                let outcome: AppendOutcome =
                    serde_json::from_value(outcome).map_err(|e| sqlx::Error::Decode(e.into()))?;
                let id = key
                    .parse()
                    .map_err(|e: uuid::Error| sqlx::Error::Decode(e.into()))?;
                snap.commands.insert(
                    id,
                    StoredCommand {
                        fingerprint: row.try_get("r_text")?,
                        outcome,
                    },
                );
            }
            "s" => {
                let version: i64 = row.try_get("r_n")?;
                let head: &str = row.try_get("r_text")?;
                // An event stored before the chains has no link: its successor chains
                // from zeros (and `crm audit verify` reports the unlinked event).
                let head: ChainHash = if head.is_empty() {
                    ChainHash::GENESIS
                } else {
                    head.parse()
                        .map_err(|e: String| sqlx::Error::Decode(e.into()))?
                };
                snap.stream_heads.insert(key.clone(), head);
                snap.stream_versions.insert(key, version as u64);
            }
            "k" => {
                snap.key_owners.insert(key, row.try_get("r_text")?);
            }
            "n" => {
                snap.counters.insert(key, row.try_get("r_n")?);
            }
            "x" => {
                snap.keyed_subjects.insert(key);
            }
            other => {
                return Err(sqlx::Error::Protocol(format!(
                    "crm_append answered an unknown row kind {other:?}"
                )))
            }
        }
    }
    Ok(snap)
}

/// Turn the plan's decisions into answers once positions are known.
pub(crate) fn build_outcomes(
    requests: &[AppendRequest],
    plan: &plan::Plan<'_>,
    positions: &HashMap<Uuid, u64>,
) -> Vec<Result<AppendOutcome, AppendError>> {
    let mut outcomes: Vec<Result<AppendOutcome, AppendError>> = Vec::with_capacity(requests.len());
    for (i, decision) in plan.decisions.iter().enumerate() {
        let outcome = match decision {
            Decision::Accept { first_row, count } => Ok(AppendOutcome {
                command_id: requests[i].meta.command_id,
                events: plan.rows[*first_row..first_row + count]
                    .iter()
                    .map(|r| AppendedEvent {
                        event_id: r.event.event_id,
                        event_type: r.event.event_type.clone(),
                        stream_id: r.stream_id.to_string(),
                        stream_version: r.stream_version,
                        position: positions
                            .get(&r.event.event_id)
                            .copied()
                            .unwrap_or_default(),
                    })
                    .collect(),
                duplicate: false,
            }),
            Decision::Duplicate(outcome) => Ok(outcome.clone()),
            Decision::DuplicateOf(first) => match &outcomes[*first] {
                Ok(o) => Ok(AppendOutcome {
                    duplicate: true,
                    ..o.clone()
                }),
                Err(_) => unreachable!("DuplicateOf points at an accepted request"),
            },
            Decision::Refuse(conflict) => Err(AppendError::Conflict(conflict.clone())),
        };
        outcomes.push(outcome);
    }
    outcomes
}

impl PgEventStore {
    /// One transaction for `requests`, tried again after a deadlock, a serialisation
    /// failure or a connection lost before the answer (PostgreSQL restarted, a pooled
    /// connection broken long ago): the next try runs on another connection, and a
    /// command that did commit is answered as recorded (its command id).
    async fn append_retrying(
        &self,
        requests: &[AppendRequest],
    ) -> Result<Vec<Result<AppendOutcome, AppendError>>, sqlx::Error> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.try_append_batch(requests).await {
                Err(e) if attempt < 5 && (is_retryable(&e) || is_connection_lost(&e)) => {
                    tracing::warn!(error = %e, attempt, "append batch retried");
                }
                other => return other,
            }
        }
    }
}

/// The database refused the data itself (SQLSTATE class 22, data exception: a NUL in a
/// text, a number out of range; class 54, a value past a limit): the same statement
/// would fail again.
fn is_data_error(e: &sqlx::Error) -> bool {
    matches!(e.as_database_error().and_then(|d| d.code()), Some(c) if c.starts_with("22") || c.starts_with("54"))
}

/// What the caller (and the log) is told of a data error: its SQLSTATE only. Some of
/// PostgreSQL's messages quote the value (22P02, 22003), which may be personal data.
fn data_error_reason(e: &sqlx::Error) -> String {
    let code = e
        .as_database_error()
        .and_then(|d| d.code())
        .unwrap_or_default();
    format!("the database refused a value of this command (SQLSTATE {code})")
}

/// The connection broke (or the server is shutting down): another connection may
/// succeed. (Not `Protocol`: the store's own refusals travel as that, and retrying them
/// would hide them.)
pub(crate) fn is_connection_lost(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) => true,
        sqlx::Error::Database(d) => d.code().is_some_and(|c| {
            // admin_shutdown, crash_shutdown, cannot_connect_now; connection exceptions.
            c == "57P01" || c == "57P02" || c == "57P03" || c.starts_with("08")
        }),
        _ => false,
    }
}

fn is_retryable(e: &sqlx::Error) -> bool {
    let Some(d) = e.as_database_error() else {
        return false;
    };
    match d.code().as_deref() {
        // Deadlock or serialisation failure: cannot happen with sorted advisory locks, but
        // a retry is the right answer if an operator's manual transaction causes one.
        Some("40P01" | "40001") => true,
        // A subject's key stored outside the batch's locks (an erasure's tombstone) after
        // crm_append checked it had none: the next try finds it (stale), and the plan
        // refuses the request that brought a key.
        Some("23505") => d.constraint() == Some("subject_keys_pkey"),
        _ => false,
    }
}

fn decode_event(row: &PgRow) -> Result<RecordedEvent, sqlx::Error> {
    decode_event_as(row)
}

fn decode_event_as<P>(row: &PgRow) -> Result<RecordedEvent<P>, sqlx::Error>
where
    P: for<'r> sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
{
    let tx: i64 = row.try_get("tx")?;
    let position: i64 = row.try_get("position")?;
    let version: i64 = row.try_get("stream_version")?;
    let schema_version: i32 = row.try_get("schema_version")?;
    Ok(RecordedEvent {
        log_position: LogPosition::new(tx as u64, position as u64),
        stream_id: row.try_get("stream_id")?,
        stream_version: version as u64,
        event_id: row.try_get("event_id")?,
        event_type: row.try_get("event_type")?,
        schema_version: schema_version as u32,
        payload: row.try_get("payload")?,
        metadata: EventMetadata {
            command_id: row.try_get("command_id")?,
            correlation_id: row.try_get("correlation_id")?,
            causation_id: row.try_get("causation_id")?,
            actor: row.try_get("actor")?,
            occurred_at: row.try_get::<DateTime<Utc>, _>("occurred_at")?,
            recorded_at: row.try_get::<DateTime<Utc>, _>("recorded_at")?,
        },
        // Events older than the chains have an empty link: read as GENESIS, which
        // `crm audit verify` reports as a mismatch.
        chain_hash: ChainHash::from_slice(row.try_get("chain_hash")?).unwrap_or_default(),
    })
}

pub(crate) const CHECKPOINT_COLUMNS: &str =
    "seq, after_tx, after_position, through_tx, through_position, \
     event_count, leaves, prev_hash, hash, sealed_at";

/// A `global_checkpoints` row of either backend.
pub(crate) fn decode_checkpoint<R>(row: &R) -> Result<GlobalCheckpoint, StoreError>
where
    R: Row,
    for<'c> &'c str: sqlx::ColumnIndex<R>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Vec<u8>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> DateTime<Utc>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let n = |c: &str| -> Result<u64, StoreError> { Ok(row.try_get::<i64, _>(c)? as u64) };
    let hash = |c: &str| -> Result<ChainHash, StoreError> {
        ChainHash::from_slice(&row.try_get::<Vec<u8>, _>(c)?)
            .ok_or_else(|| StoreError::Corrupt(format!("global checkpoint {c} is not 32 bytes")))
    };
    Ok(GlobalCheckpoint {
        seq: n("seq")?,
        after: LogPosition::new(n("after_tx")?, n("after_position")?),
        through: LogPosition::new(n("through_tx")?, n("through_position")?),
        event_count: n("event_count")?,
        leaves: row.try_get("leaves")?,
        prev_hash: hash("prev_hash")?,
        hash: hash("hash")?,
        sealed_at: row.try_get("sealed_at")?,
    })
}

impl PgEventStore {
    /// The log after `after` in commit-safe order, `columns` selected (the payload as
    /// JSON or as text: `P`).
    async fn read_all_as<P>(
        &self,
        columns: &str,
        after: LogPosition,
        limit: usize,
    ) -> Result<Vec<RecordedEvent<P>>, StoreError>
    where
        P: for<'r> sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
    {
        let sql = format!(
            "SELECT {columns} FROM events \
             WHERE (transaction_id, position) > ($1::bigint::text::xid8, $2) \
               AND transaction_id < pg_snapshot_xmin(pg_current_snapshot()) \
             ORDER BY transaction_id, position LIMIT $3"
        );
        let rows = sqlx::query(&sql)
            .bind(after.tx as i64)
            .bind(after.position as i64)
            // `usize::MAX` means "no limit", not a negative one.
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&self.pool)
            .await?;
        // Sized once: a page is thousands of events, grown by doubling it is copied ~12
        // times over (`collect` over a fallible map cannot know the length).
        let mut events = Vec::with_capacity(rows.len());
        for row in &rows {
            events.push(decode_event_as(row)?);
        }
        Ok(events)
    }
}

impl crate::Horizon for PgEventStore {
    async fn settle(&self) -> Result<Duration, StoreError> {
        let started = std::time::Instant::now();
        // Every id below the snapshot's xmax was handed out before the call; once xmin has
        // reached it, all of those transactions have ended.
        let target: i64 =
            sqlx::query_scalar("SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint")
                .fetch_one(&self.pool)
                .await?;
        loop {
            let horizon: i64 =
                sqlx::query_scalar("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint")
                    .fetch_one(&self.pool)
                    .await?;
            if horizon >= target {
                return Ok(started.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Append for PgEventStore {
    async fn append_batch(
        &self,
        requests: Vec<AppendRequest>,
    ) -> Vec<Result<AppendOutcome, AppendError>> {
        // When the database refuses a batch for one command's data, the batch is split
        // and its halves appended on their own, down to that command alone: one caller's
        // bad data never fails another caller's command (ARCHITECTURE.md: a batch gives
        // the same results as its appends made one by one).
        let mut outcomes: Vec<Option<Result<AppendOutcome, AppendError>>> =
            (0..requests.len()).map(|_| None).collect();
        let mut pending: Vec<std::ops::Range<usize>> = Vec::new();
        pending.push(0..requests.len());
        while let Some(range) = pending.pop() {
            match self.append_retrying(&requests[range.clone()]).await {
                Ok(done) => {
                    for (slot, outcome) in outcomes[range].iter_mut().zip(done) {
                        *slot = Some(outcome);
                    }
                }
                Err(e) if is_data_error(&e) && range.len() > 1 => {
                    let mid = range.start + range.len() / 2;
                    // The left half first: the batch's order is kept.
                    pending.push(mid..range.end);
                    pending.push(range.start..mid);
                }
                Err(e) if is_data_error(&e) => {
                    let command = &requests[range.start].meta;
                    let reason = data_error_reason(&e);
                    tracing::warn!(%reason, command_id = %command.command_id, command = %command.command_type, "the event store refused a command's data");
                    outcomes[range.start] = Some(Err(AppendError::Unstorable(reason)));
                }
                Err(e) => {
                    tracing::error!(error = %e, batch = range.len(), "append batch failed");
                    for slot in &mut outcomes[range] {
                        *slot = Some(Err(AppendError::Store(StoreError::Failed(e.to_string()))));
                    }
                }
            }
        }
        outcomes
            .into_iter()
            .map(|o| o.expect("every request of the batch is answered"))
            .collect()
    }
}

impl Streams for PgEventStore {
    async fn read_stream_range(
        &self,
        stream_id: &str,
        after_version: u64,
        up_to_version: u64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE stream_id = $1 AND stream_version > $2 \
             AND stream_version <= $3 ORDER BY stream_version"
        );
        let rows = sqlx::query(&sql)
            .bind(stream_id)
            .bind(after_version as i64)
            .bind(up_to_version.min(i64::MAX as u64) as i64)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(decode_event).collect::<Result<_, _>>()?)
    }

    async fn stream_version(&self, stream_id: &str) -> Result<u64, StoreError> {
        let v: Option<i64> =
            sqlx::query_scalar("SELECT max(stream_version) FROM events WHERE stream_id = $1")
                .bind(stream_id)
                .fetch_one(&self.pool)
                .await?;
        Ok(v.unwrap_or(0) as u64)
    }

    async fn stream_ids_with_prefix(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        // text_pattern_ops compares bytes: the range [prefix, prefix + U+10FFFF) holds
        // exactly the ids starting with the prefix, and the partial index answers it.
        let upper = format!("{prefix}\u{10FFFF}");
        Ok(sqlx::query_scalar(
            "SELECT stream_id FROM events WHERE stream_version = 1 \
             AND stream_id ~>=~ $1 AND stream_id ~<~ $2 ORDER BY stream_id USING ~<~",
        )
        .bind(prefix)
        .bind(upper)
        .fetch_all(&self.pool)
        .await?)
    }
}

impl Log for PgEventStore {
    async fn read_all(
        &self,
        after: LogPosition,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.read_all_as(EVENT_COLUMNS, after, limit).await
    }

    async fn read_all_text(
        &self,
        after: LogPosition,
        limit: usize,
    ) -> Result<Vec<RecordedEvent<String>>, StoreError> {
        self.read_all_as(EVENT_COLUMNS_TEXT, after, limit).await
    }

    async fn head(&self) -> Result<(u64, LogPosition), StoreError> {
        let row = sqlx::query(
            "SELECT (SELECT count(*) FROM events WHERE transaction_id < pg_snapshot_xmin(pg_current_snapshot())) AS n, \
                    e.transaction_id::text::bigint AS tx, e.position \
             FROM (SELECT 1) AS one LEFT JOIN LATERAL ( \
                 SELECT transaction_id, position FROM events \
                 WHERE transaction_id < pg_snapshot_xmin(pg_current_snapshot()) \
                 ORDER BY transaction_id DESC, position DESC LIMIT 1) AS e ON true",
        )
        .fetch_one(&self.pool)
        .await?;
        let n: i64 = row.try_get("n")?;
        let tx: Option<i64> = row.try_get("tx")?;
        let pos: Option<i64> = row.try_get("position")?;
        Ok((
            n as u64,
            LogPosition::new(tx.unwrap_or(0) as u64, pos.unwrap_or(0) as u64),
        ))
    }
}

impl Lookups for PgEventStore {
    async fn key_owner(&self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT owner FROM unique_keys WHERE key = $1")
                .bind(key)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    async fn counter(&self, key: &str) -> Result<i64, StoreError> {
        let v: Option<i64> = sqlx::query_scalar("SELECT value FROM counters WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        Ok(v.unwrap_or(0))
    }

    async fn counters(&self, keys: &[String]) -> Result<Vec<i64>, StoreError> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT key, value FROM counters WHERE key = ANY($1)")
                .bind(keys)
                .fetch_all(&self.pool)
                .await?;
        Ok(crate::counters_in_order(keys, rows))
    }

    async fn command_outcome(&self, command_id: Uuid) -> Result<Option<AppendOutcome>, StoreError> {
        let v: Option<serde_json::Value> =
            sqlx::query_scalar("SELECT outcome FROM commands WHERE command_id = $1")
                .bind(command_id)
                .fetch_optional(&self.pool)
                .await?;
        v.map(|v| {
            serde_json::from_value(v)
                .map_err(|e| StoreError::Corrupt(format!("command outcome: {e}")))
        })
        .transpose()
    }
}

impl Checkpoints for PgEventStore {
    async fn load_checkpoint(&self, name: &str) -> Result<Option<Checkpoint>, StoreError> {
        let row = sqlx::query("SELECT tx, position, extra FROM checkpoints WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| -> Result<Checkpoint, StoreError> {
            let tx: i64 = r.try_get("tx")?;
            let pos: i64 = r.try_get("position")?;
            Ok(Checkpoint {
                name: name.to_string(),
                position: LogPosition::new(tx as u64, pos as u64),
                extra: r.try_get("extra")?,
            })
        })
        .transpose()
    }

    async fn save_checkpoint(&self, cp: &Checkpoint) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO checkpoints (name, tx, position, extra) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (name) DO UPDATE SET tx = EXCLUDED.tx, position = EXCLUDED.position, \
             extra = EXCLUDED.extra, updated_at = clock_timestamp()",
        )
        .bind(&cp.name)
        .bind(cp.position.tx as i64)
        .bind(cp.position.position as i64)
        .bind(cp.extra)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

impl SubjectKeys for PgEventStore {
    async fn subject_key(&self, subject: &str) -> Result<SubjectKey, StoreError> {
        let row: Option<Option<Vec<u8>>> =
            sqlx::query_scalar("SELECT key FROM subject_keys WHERE subject = $1")
                .bind(subject)
                .fetch_optional(&self.pool)
                .await?;
        Ok(subject_key_of(row))
    }

    async fn erase_subject_key(&self, subject: &str) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO subject_keys (subject, key, erased_at) VALUES ($1, NULL, clock_timestamp()) \
             ON CONFLICT (subject) DO UPDATE SET key = NULL, \
                 erased_at = coalesce(subject_keys.erased_at, clock_timestamp())",
        )
        .bind(subject)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

impl Seals for PgEventStore {
    async fn last_global_checkpoint(&self) -> Result<Option<GlobalCheckpoint>, StoreError> {
        let sql = format!(
            "SELECT {CHECKPOINT_COLUMNS} FROM global_checkpoints ORDER BY seq DESC LIMIT 1"
        );
        let row = sqlx::query(&sql).fetch_optional(&self.pool).await?;
        row.as_ref().map(decode_checkpoint).transpose()
    }

    async fn global_checkpoints(
        &self,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<GlobalCheckpoint>, StoreError> {
        let sql = format!(
            "SELECT {CHECKPOINT_COLUMNS} FROM global_checkpoints WHERE seq > $1 ORDER BY seq LIMIT $2"
        );
        let rows = sqlx::query(&sql)
            .bind(after_seq as i64)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(decode_checkpoint).collect()
    }

    async fn append_global_checkpoint(&self, cp: &GlobalCheckpoint) -> Result<bool, StoreError> {
        let inserted = sqlx::query(
            "INSERT INTO global_checkpoints (seq, after_tx, after_position, through_tx, \
                 through_position, event_count, leaves, prev_hash, hash, sealed_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (seq) DO NOTHING",
        )
        .bind(cp.seq as i64)
        .bind(cp.after.tx as i64)
        .bind(cp.after.position as i64)
        .bind(cp.through.tx as i64)
        .bind(cp.through.position as i64)
        .bind(cp.event_count as i64)
        .bind(&cp.leaves)
        .bind(&cp.prev_hash.0[..])
        .bind(&cp.hash.0[..])
        .bind(cp.sealed_at)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(inserted == 1)
    }
}

/// A `subject_keys` row (or its absence) as a [`SubjectKey`]: a row without a key is
/// an erasure's tombstone.
pub(crate) fn subject_key_of(row: Option<Option<Vec<u8>>>) -> SubjectKey {
    match row {
        None => SubjectKey::Absent,
        Some(None) => SubjectKey::Erased,
        Some(Some(key)) => SubjectKey::Active(key),
    }
}

/// `sqlx::Error` is not `Clone`: every request of a failed batch gets the same message.
pub(crate) fn fail_all(n: usize, message: &str) -> Vec<Result<AppendOutcome, AppendError>> {
    (0..n)
        .map(|_| Err(AppendError::Store(StoreError::Failed(message.to_string()))))
        .collect()
}

/// Exclusive leadership among processes sharing one database (the relay: only one
/// publishes at a time), held by a session advisory lock on a connection of its own.
/// If the process dies, PostgreSQL releases it; if the process freezes (SIGSTOP, a VM
/// paused, a stuck runtime), the session goes idle and PostgreSQL ends it after
/// [`LEADER_IDLE_TIMEOUT`] (`idle_session_timeout`, PostgreSQL 14+), which releases the
/// lock too, so a standby takes over. While the process lives, a task of its own keeps
/// the session busy every second, whatever the holder is waiting for (a slow publish
/// does not cost a healthy leader its lock); [`LeaderLock::check`] tells whether it is
/// still held.
pub struct LeaderLock {
    conn: std::sync::Arc<tokio::sync::Mutex<PgConnection>>,
    key: i64,
    keepalive: tokio::task::JoinHandle<()>,
}

impl Drop for LeaderLock {
    fn drop(&mut self) {
        self.keepalive.abort();
    }
}

/// How often the holder's session says a word.
const LEADER_KEEPALIVE: Duration = Duration::from_secs(1);

/// How long a leader may go silent before PostgreSQL ends its session and frees the
/// lock for a standby.
pub const LEADER_IDLE_TIMEOUT: Duration = Duration::from_secs(5);

/// A process that wants the leadership: its own session (out of the pool, with the idle
/// timeout set), on which it asks for the lock as often as it likes.
pub struct LeaderCandidate {
    conn: PgConnection,
    key: i64,
}

impl LeaderCandidate {
    /// A session of its own for asking for the lock `name`.
    pub async fn new(pool: &PgPool, name: &str) -> Result<Self, StoreError> {
        let mut conn = pool.acquire().await?.detach();
        sqlx::query("SELECT set_config('idle_session_timeout', $1, false)")
            .bind(format!("{}ms", LEADER_IDLE_TIMEOUT.as_millis()))
            .execute(&mut conn)
            .await?;
        Ok(Self {
            conn,
            key: plan::lock_key(&format!("leader:{name}")),
        })
    }

    /// Ask once: the lock, or the candidate back when another process holds it.
    pub async fn try_lead(mut self) -> Result<Result<LeaderLock, Self>, StoreError> {
        let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(self.key)
            .fetch_one(&mut self.conn)
            .await?;
        Ok(if got {
            let conn = std::sync::Arc::new(tokio::sync::Mutex::new(self.conn));
            let kept = conn.clone();
            let keepalive = tokio::spawn(async move {
                loop {
                    tokio::time::sleep(LEADER_KEEPALIVE).await;
                    let mut c = kept.lock().await;
                    if sqlx::query("SELECT 1").execute(&mut *c).await.is_err() {
                        // The session is gone: `check` says so to the holder.
                        return;
                    }
                }
            });
            Ok(LeaderLock {
                conn,
                key: self.key,
                keepalive,
            })
        } else {
            Err(self)
        })
    }
}

impl LeaderLock {
    /// Try once; `None` when another process holds it.
    pub async fn try_acquire(pool: &PgPool, name: &str) -> Result<Option<Self>, StoreError> {
        Ok(LeaderCandidate::new(pool, name)
            .await?
            .try_lead()
            .await?
            .ok())
    }

    /// Fails when the lock's connection is gone, i.e. leadership may be lost.
    pub async fn check(&mut self) -> Result<(), StoreError> {
        let held: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid() \
             AND objid = ($1::bigint & 4294967295)::oid AND granted)",
        )
        .bind(self.key)
        .fetch_one(&mut *self.conn.lock().await)
        .await?;
        if held {
            Ok(())
        } else {
            Err(StoreError::Config("leader lock lost".into()))
        }
    }

    /// Give the lock up now.
    pub async fn release(self) -> Result<(), StoreError> {
        sqlx::query("SELECT pg_advisory_unlock_all()")
            .execute(&mut *self.conn.lock().await)
            .await?;
        Ok(())
    }
}

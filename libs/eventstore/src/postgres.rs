//! PostgreSQL backend (server mode): where events are stored.
//!
//! An append batch runs in one transaction:
//! 1. take transaction-scoped advisory locks on every stream, unique key and counter the
//!    batch touches, in sorted order (no deadlocks between batches);
//! 2. read those things' current state (no row locks, so still no transaction id);
//! 3. judge each request with [`crate::plan::plan_batch`];
//! 4. insert the accepted events and command records, update keys and counters; the
//!    first insert assigns the transaction id.
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
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::{Executor, Row};
use uuid::Uuid;

use crate::error::{AppendError, StoreError};
use crate::model::*;
use crate::plan::{self, Decision, Snapshot, StoredCommand};
use crate::EventStore;

/// Event store on PostgreSQL.
#[derive(Clone)]
pub struct PgEventStore {
    pool: PgPool,
    #[cfg(feature = "testing")]
    before_commit: Option<crate::BeforeCommit>,
}

const EVENT_COLUMNS: &str =
    "transaction_id::text::bigint AS tx, position, stream_id, stream_version, \
     event_id, event_type, schema_version, payload, command_id, correlation_id, causation_id, \
     actor, occurred_at, recorded_at";

impl PgEventStore {
    /// Connect with a pool of `max_connections` and apply migrations.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        let options: PgConnectOptions = url
            .parse()
            .map_err(|e| StoreError::Config(format!("bad PostgreSQL url: {e}")))?;
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(10))
            // Plan each execution against the tables as they are now. A cached generic
            // plan made while `events` was empty (before autovacuum's first ANALYZE) stays
            // a sequential scan as the log grows, turning every append into O(log size).
            .connect_with(
                options
                    .application_name("crm-eventstore")
                    .options([("plan_cache_mode", "force_custom_plan")]),
            )
            .await?;
        let store = Self::from_pool(pool);
        store.migrate().await?;
        Ok(store)
    }

    pub fn from_pool(pool: PgPool) -> Self {
        Self {
            pool,
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

    pub async fn migrate(&self) -> Result<(), StoreError> {
        crate::migrations::postgres().run(&self.pool).await?;
        Ok(())
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    async fn try_append_batch(
        &self,
        requests: &[AppendRequest],
    ) -> Result<Vec<Result<AppendOutcome, AppendError>>, sqlx::Error> {
        let mut tx = self.pool.begin().await?;

        let locks = plan::lock_keys(requests);
        sqlx::query(
            "SELECT count(pg_advisory_xact_lock(k)) FROM (SELECT k FROM unnest($1::bigint[]) AS t(k) ORDER BY k) AS s",
        )
        .bind(&locks)
        .execute(&mut *tx)
        .await?;

        // One read for everything the batch touches (after the locks: READ COMMITTED
        // takes a fresh snapshot per statement, so it sees every earlier commit).
        let touched = plan::touched(requests);
        let mut snap = Snapshot::default();
        let rows = sqlx::query(
            "SELECT 'c' AS kind, command_id::text AS key, fingerprint AS text, outcome AS doc, NULL::bigint AS n \
               FROM commands WHERE command_id = ANY($1) \
             UNION ALL SELECT 's', stream_id, NULL, NULL, max(stream_version) \
               FROM events WHERE stream_id = ANY($2) GROUP BY stream_id \
             UNION ALL SELECT 'k', key, owner, NULL, NULL FROM unique_keys WHERE key = ANY($3) \
             UNION ALL SELECT 'n', key, NULL, NULL, value FROM counters WHERE key = ANY($4)",
        )
        .bind(&touched.commands)
        .bind(&touched.streams)
        .bind(&touched.keys)
        .bind(&touched.counters)
        .fetch_all(&mut *tx)
        .await?;
        for row in rows {
            let kind: &str = row.try_get("kind")?;
            let key: String = row.try_get("key")?;
            match kind {
                "c" => {
                    let outcome: serde_json::Value = row.try_get("doc")?;
                    let outcome: AppendOutcome = serde_json::from_value(outcome)
                        .map_err(|e| sqlx::Error::Decode(e.into()))?;
                    let id = key
                        .parse()
                        .map_err(|e: uuid::Error| sqlx::Error::Decode(e.into()))?;
                    snap.commands.insert(
                        id,
                        StoredCommand {
                            fingerprint: row.try_get("text")?,
                            outcome,
                        },
                    );
                }
                "s" => {
                    let version: i64 = row.try_get("n")?;
                    snap.stream_versions.insert(key, version as u64);
                }
                "k" => {
                    snap.key_owners.insert(key, row.try_get("text")?);
                }
                _ => {
                    snap.counters.insert(key, row.try_get("n")?);
                }
            }
        }

        let plan = plan::plan_batch(requests, snap);

        // One write: events, the command records (their answer built from the events'
        // positions), unique keys and counters, as data-modifying CTEs.
        let mut positions: HashMap<Uuid, u64> = HashMap::with_capacity(plan.rows.len());
        if !plan.rows.is_empty() {
            let n = plan.rows.len();
            let mut stream_ids = Vec::with_capacity(n);
            let mut versions = Vec::with_capacity(n);
            let mut event_ids = Vec::with_capacity(n);
            let mut types = Vec::with_capacity(n);
            let mut schema_versions = Vec::with_capacity(n);
            let mut payloads = Vec::with_capacity(n);
            let mut command_ids = Vec::with_capacity(n);
            let mut correlation_ids = Vec::with_capacity(n);
            let mut causation_ids: Vec<Option<Uuid>> = Vec::with_capacity(n);
            let mut actors = Vec::with_capacity(n);
            let mut occurred = Vec::with_capacity(n);
            for r in &plan.rows {
                stream_ids.push(r.stream_id);
                versions.push(r.stream_version as i64);
                event_ids.push(r.event.event_id);
                types.push(r.event.event_type.as_str());
                schema_versions.push(r.event.schema_version as i32);
                payloads.push(&r.event.payload);
                command_ids.push(r.meta.command_id);
                correlation_ids.push(r.meta.correlation_id);
                causation_ids.push(r.meta.causation_id);
                actors.push(r.meta.actor.as_str());
                occurred.push(r.meta.issued_at);
            }
            let accepted: Vec<usize> = plan.accepted().collect();
            let cmd_ids: Vec<Uuid> = accepted
                .iter()
                .map(|&i| requests[i].meta.command_id)
                .collect();
            let cmd_types: Vec<&str> = accepted
                .iter()
                .map(|&i| requests[i].meta.command_type.as_str())
                .collect();
            let cmd_fps: Vec<&str> = accepted
                .iter()
                .map(|&i| requests[i].meta.fingerprint.as_str())
                .collect();
            let (claimed, freed): (Vec<_>, Vec<_>) =
                plan.keys.iter().partition(|(_, owner)| owner.is_some());
            let claim_keys: Vec<&str> = claimed.iter().map(|(k, _)| k.as_str()).collect();
            let claim_owners: Vec<&str> =
                claimed.iter().filter_map(|(_, o)| o.as_deref()).collect();
            let freed_keys: Vec<&str> = freed.iter().map(|(k, _)| k.as_str()).collect();
            let counter_keys: Vec<&str> = plan.counters.keys().map(String::as_str).collect();
            let counter_values: Vec<i64> = plan.counters.values().copied().collect();
            let rows = sqlx::query(
                "WITH ev AS ( \
                   INSERT INTO events (stream_id, stream_version, event_id, event_type, schema_version, payload, \
                       command_id, correlation_id, causation_id, actor, occurred_at) \
                   SELECT stream_id, stream_version, event_id, event_type, schema_version, payload, \
                       command_id, correlation_id, causation_id, actor, occurred_at \
                   FROM unnest($1::text[], $2::bigint[], $3::uuid[], $4::text[], $5::int[], $6::jsonb[], \
                       $7::uuid[], $8::uuid[], $9::uuid[], $10::text[], $11::timestamptz[]) WITH ORDINALITY \
                       AS t(stream_id, stream_version, event_id, event_type, schema_version, payload, \
                            command_id, correlation_id, causation_id, actor, occurred_at, ord) \
                   ORDER BY ord \
                   RETURNING event_id, event_type, stream_id, stream_version, position, command_id), \
                 cmd AS ( \
                   INSERT INTO commands (command_id, command_type, fingerprint, outcome) \
                   SELECT c.id, c.t, c.f, jsonb_build_object('command_id', c.id, 'duplicate', false, 'events', \
                       (SELECT jsonb_agg(jsonb_build_object('event_id', e.event_id, 'event_type', e.event_type, \
                            'stream_id', e.stream_id, 'stream_version', e.stream_version, 'position', e.position) \
                            ORDER BY e.position) FROM ev e WHERE e.command_id = c.id)) \
                   FROM unnest($12::uuid[], $13::text[], $14::text[]) AS c(id, t, f)), \
                 claimed AS ( \
                   INSERT INTO unique_keys (key, owner) SELECT * FROM unnest($15::text[], $16::text[]) \
                   ON CONFLICT (key) DO UPDATE SET owner = EXCLUDED.owner), \
                 freed AS (DELETE FROM unique_keys WHERE key = ANY($17)), \
                 counted AS ( \
                   INSERT INTO counters (key, value) SELECT * FROM unnest($18::text[], $19::bigint[]) \
                   ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value) \
                 SELECT event_id, position FROM ev",
            )
            .bind(&stream_ids)
            .bind(&versions)
            .bind(&event_ids)
            .bind(&types)
            .bind(&schema_versions)
            .bind(&payloads)
            .bind(&command_ids)
            .bind(&correlation_ids)
            .bind(&causation_ids)
            .bind(&actors)
            .bind(&occurred)
            .bind(&cmd_ids)
            .bind(&cmd_types)
            .bind(&cmd_fps)
            .bind(&claim_keys)
            .bind(&claim_owners)
            .bind(&freed_keys)
            .bind(&counter_keys)
            .bind(&counter_values)
            .fetch_all(&mut *tx)
            .await?;
            for row in rows {
                let position: i64 = row.try_get("position")?;
                positions.insert(row.try_get("event_id")?, position as u64);
            }
        }
        let outcomes = build_outcomes(requests, &plan, &positions);

        #[cfg(feature = "testing")]
        if let Some(hook) = &self.before_commit {
            if hook().await {
                tx.rollback().await?;
                return Err(sqlx::Error::Protocol(
                    "rolled back by fault injection".into(),
                ));
            }
        }
        tx.commit().await?;
        Ok(outcomes)
    }
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

fn is_retryable(e: &sqlx::Error) -> bool {
    // Deadlock or serialisation failure: cannot happen with sorted advisory locks, but a
    // retry is the right answer if an operator's manual transaction causes one.
    matches!(e.as_database_error().and_then(|d| d.code()), Some(c) if c == "40P01" || c == "40001")
}

fn decode_event(row: &PgRow) -> Result<RecordedEvent, sqlx::Error> {
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
    })
}

impl EventStore for PgEventStore {
    async fn append_batch(
        &self,
        requests: Vec<AppendRequest>,
    ) -> Vec<Result<AppendOutcome, AppendError>> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.try_append_batch(&requests).await {
                Ok(outcomes) => return outcomes,
                Err(e) if attempt < 5 && is_retryable(&e) => {
                    tracing::warn!(error = %e, attempt, "append batch retried");
                    continue;
                }
                Err(e) => {
                    tracing::error!(error = %e, batch = requests.len(), "append batch failed");
                    return fail_all(requests.len(), &e.to_string());
                }
            }
        }
    }

    async fn read_stream(
        &self,
        stream_id: &str,
        after_version: u64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE stream_id = $1 AND stream_version > $2 ORDER BY stream_version"
        );
        let rows = sqlx::query(&sql)
            .bind(stream_id)
            .bind(after_version as i64)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(decode_event).collect::<Result<_, _>>()?)
    }

    async fn read_all(
        &self,
        after: LogPosition,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM events \
             WHERE (transaction_id, position) > ($1::bigint::text::xid8, $2) \
               AND transaction_id < pg_snapshot_xmin(pg_current_snapshot()) \
             ORDER BY transaction_id, position LIMIT $3"
        );
        let rows = sqlx::query(&sql)
            .bind(after.tx as i64)
            .bind(after.position as i64)
            .bind(limit as i64)
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

/// `sqlx::Error` is not `Clone`: every request of a failed batch gets the same message.
pub(crate) fn fail_all(n: usize, message: &str) -> Vec<Result<AppendOutcome, AppendError>> {
    (0..n)
        .map(|_| Err(AppendError::Store(StoreError::Failed(message.to_string()))))
        .collect()
}

/// Exclusive leadership among processes sharing one database (the relay: only one
/// publishes at a time). Held for as long as the dedicated connection lives; if the
/// process dies, PostgreSQL releases it.
pub struct LeaderLock {
    conn: sqlx::pool::PoolConnection<sqlx::Postgres>,
    key: i64,
}

impl LeaderLock {
    /// Try once; `None` when another process holds it.
    pub async fn try_acquire(pool: &PgPool, name: &str) -> Result<Option<Self>, StoreError> {
        let mut conn = pool.acquire().await?;
        let key = plan::lock_key(&format!("leader:{name}"));
        let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(key)
            .fetch_one(&mut *conn)
            .await?;
        Ok(got.then_some(Self { conn, key }))
    }

    /// Fails when the lock's connection is gone, i.e. leadership may be lost.
    pub async fn check(&mut self) -> Result<(), StoreError> {
        let held: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid() \
             AND objid = ($1::bigint & 4294967295)::oid AND granted)",
        )
        .bind(self.key)
        .fetch_one(&mut *self.conn)
        .await?;
        if held {
            Ok(())
        } else {
            Err(StoreError::Config("leader lock lost".into()))
        }
    }

    pub async fn release(mut self) -> Result<(), StoreError> {
        self.conn
            .execute(sqlx::query("SELECT pg_advisory_unlock_all()"))
            .await?;
        Ok(())
    }
}

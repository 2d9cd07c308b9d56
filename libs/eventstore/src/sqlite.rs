//! SQLite backend (embedded default): the same store in one file, for the laptop demo,
//! tests and offline audit. Writes go through a single connection, so SQLite's own
//! writer lock makes allocation order equal commit order (`tx == position`). Events
//! imported from a PostgreSQL store ([`SqliteEventStore::import`], for audit exports)
//! keep their `(tx, position)`, and the log is ordered by `(log_tx, position)`.

use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::Row;
use uuid::Uuid;

use crate::chain::{ChainHash, GlobalCheckpoint};
use crate::error::{AppendError, StoreError};
use crate::model::*;
use crate::plan::{self, Snapshot, StoredCommand};
use crate::postgres::{
    build_outcomes, decode_checkpoint, fail_all, subject_key_of, CHECKPOINT_COLUMNS,
};
use crate::{Append, Checkpoints, Log, Lookups, Seals, Streams, SubjectKeys};

/// Event store in an SQLite file.
#[derive(Clone)]
pub struct SqliteEventStore {
    writer: SqlitePool,
    readers: SqlitePool,
    #[cfg(feature = "testing")]
    before_commit: Option<crate::BeforeCommit>,
}

const EVENT_COLUMNS: &str =
    "log_tx, position, stream_id, stream_version, event_id, event_type, schema_version, payload, \
     command_id, correlation_id, causation_id, actor, occurred_at, recorded_at, chain_hash";

impl SqliteEventStore {
    /// Whether the database answers now (readiness).
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.readers).await?;
        Ok(())
    }

    /// Open (creating if needed) the store at `path` and apply migrations.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::new()
            .filename(path.as_ref())
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: an accepted command survives a power cut, not only a process crash.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(30))
            .foreign_keys(true);
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await?;
        crate::migrations::sqlite().run(&writer).await?;
        let readers = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.read_only(true))
            .await?;
        Ok(Self {
            writer,
            readers,
            #[cfg(feature = "testing")]
            before_commit: None,
        })
    }

    /// Test-only: run `hook` before each append commits (slow commits, rollbacks).
    #[cfg(feature = "testing")]
    pub fn with_before_commit(mut self, hook: crate::BeforeCommit) -> Self {
        self.before_commit = Some(hook);
        self
    }

    /// Store events exactly as another store recorded them (positions, metadata, links),
    /// in one transaction: how an audit export is filled. The events must come in their
    /// log order and after everything already here.
    pub async fn import(&self, events: &[RecordedEvent]) -> Result<(), StoreError> {
        let mut tx = self.writer.begin().await?;
        for e in events {
            sqlx::query(
                "INSERT INTO events (position, source_tx, stream_id, stream_version, event_id, \
                     event_type, schema_version, payload, command_id, correlation_id, causation_id, \
                     actor, occurred_at, recorded_at, chain_hash) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(e.log_position.position as i64)
            .bind(e.log_position.tx as i64)
            .bind(&e.stream_id)
            .bind(e.stream_version as i64)
            .bind(e.event_id.to_string())
            .bind(&e.event_type)
            .bind(e.schema_version as i64)
            .bind(e.payload.to_string())
            .bind(e.metadata.command_id.to_string())
            .bind(e.metadata.correlation_id.to_string())
            .bind(e.metadata.causation_id.map(|c| c.to_string()))
            .bind(&e.metadata.actor)
            .bind(e.metadata.occurred_at)
            .bind(e.metadata.recorded_at)
            .bind(&e.chain_hash.0[..])
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The pool that may write (for tests that try to alter history).
    pub fn writer_pool(&self) -> &SqlitePool {
        &self.writer
    }

    async fn try_append_batch(
        &self,
        requests: &[AppendRequest],
    ) -> Result<Vec<Result<AppendOutcome, AppendError>>, sqlx::Error> {
        let mut tx = self.writer.begin().await?;
        let touched = plan::touched(requests);
        let snap = read_snapshot(&mut tx, &touched).await?;
        let plan = plan::plan_batch(requests, snap);
        let outcomes = write_plan(&mut tx, requests, &plan).await?;
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

type Tx = sqlx::Transaction<'static, sqlx::Sqlite>;

/// The committed state of what a batch touches (the writer's transaction holds SQLite's
/// write lock, so nothing changes it before the plan is written).
async fn read_snapshot(tx: &mut Tx, touched: &plan::Touched) -> Result<Snapshot, sqlx::Error> {
    let mut snap = Snapshot::default();
    let ids: Vec<String> = touched.commands.iter().map(Uuid::to_string).collect();
    for row in sqlx::query("SELECT command_id, fingerprint, outcome FROM commands WHERE command_id IN (SELECT value FROM json_each(?))")
        .bind(json_list(&ids))
        .fetch_all(&mut **tx)
        .await?
    {
        let id: String = row.try_get("command_id")?;
        let outcome: String = row.try_get("outcome")?;
        snap.commands.insert(
            parse_uuid(&id)?,
            StoredCommand {
                fingerprint: row.try_get("fingerprint")?,
                outcome: serde_json::from_str(&outcome).map_err(|e| sqlx::Error::Decode(e.into()))?,
            },
        );
    }
    // With max(), SQLite takes the bare column (chain_hash) from the row holding the
    // maximum: each stream's head link.
    for row in sqlx::query(
        "SELECT stream_id, max(stream_version) AS version, chain_hash FROM events \
         WHERE stream_id IN (SELECT value FROM json_each(?)) GROUP BY stream_id",
    )
    .bind(json_list(&touched.streams))
    .fetch_all(&mut **tx)
    .await?
    {
        let version: i64 = row.try_get("version")?;
        let stream: String = row.try_get("stream_id")?;
        let head = ChainHash::from_slice(row.try_get("chain_hash")?).unwrap_or_default();
        snap.stream_heads.insert(stream.clone(), head);
        snap.stream_versions.insert(stream, version as u64);
    }
    for row in sqlx::query(
        "SELECT key, owner FROM unique_keys WHERE key IN (SELECT value FROM json_each(?))",
    )
    .bind(json_list(&touched.keys))
    .fetch_all(&mut **tx)
    .await?
    {
        snap.key_owners
            .insert(row.try_get("key")?, row.try_get("owner")?);
    }
    for row in
        sqlx::query("SELECT key, value FROM counters WHERE key IN (SELECT value FROM json_each(?))")
            .bind(json_list(&touched.counters))
            .fetch_all(&mut **tx)
            .await?
    {
        snap.counters
            .insert(row.try_get("key")?, row.try_get("value")?);
    }
    if !touched.subjects.is_empty() {
        snap.keyed_subjects = sqlx::query_scalar(
            "SELECT subject FROM subject_keys WHERE subject IN (SELECT value FROM json_each(?))",
        )
        .bind(json_list(&touched.subjects))
        .fetch_all(&mut **tx)
        .await?
        .into_iter()
        .collect();
    }
    Ok(snap)
}

/// Write what the plan accepted; answers each request.
async fn write_plan(
    tx: &mut Tx,
    requests: &[AppendRequest],
    plan: &plan::Plan<'_>,
) -> Result<Vec<Result<AppendOutcome, AppendError>>, sqlx::Error> {
    let now = Utc::now();
    let mut positions: HashMap<Uuid, u64> = HashMap::with_capacity(plan.rows.len());
    for r in &plan.rows {
        let position: i64 = sqlx::query_scalar(
            "INSERT INTO events (stream_id, stream_version, event_id, event_type, schema_version, payload, \
                 command_id, correlation_id, causation_id, actor, occurred_at, recorded_at, chain_hash) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING position",
        )
        .bind(r.stream_id)
        .bind(r.stream_version as i64)
        .bind(r.event.event_id.to_string())
        .bind(&r.event.event_type)
        .bind(r.event.schema_version as i64)
        .bind(r.event.payload.to_string())
        .bind(r.meta.command_id.to_string())
        .bind(r.meta.correlation_id.to_string())
        .bind(r.meta.causation_id.map(|c| c.to_string()))
        .bind(&r.meta.actor)
        .bind(r.meta.issued_at)
        .bind(now)
        .bind(&r.chain_hash.0[..])
        .fetch_one(&mut **tx)
        .await?;
        positions.insert(r.event.event_id, position as u64);
    }

    let outcomes = build_outcomes(requests, plan, &positions);
    for i in plan.accepted() {
        let Ok(outcome) = &outcomes[i] else { continue };
        sqlx::query("INSERT INTO commands (command_id, command_type, fingerprint, outcome, recorded_at) VALUES (?, ?, ?, ?, ?)")
            .bind(requests[i].meta.command_id.to_string())
            .bind(&requests[i].meta.command_type)
            .bind(&requests[i].meta.fingerprint)
            .bind(serde_json::to_string(outcome).map_err(|e| sqlx::Error::Encode(e.into()))?)
            .bind(now)
            .execute(&mut **tx)
            .await?;
    }
    write_guards(tx, plan, now).await?;
    Ok(outcomes)
}

/// Keys, counters and subjects' first keys.
async fn write_guards(
    tx: &mut Tx,
    plan: &plan::Plan<'_>,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    for (key, owner) in &plan.keys {
        match owner {
            Some(owner) => sqlx::query(
                "INSERT INTO unique_keys (key, owner) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET owner = excluded.owner",
            )
            .bind(key)
            .bind(owner),
            None => sqlx::query("DELETE FROM unique_keys WHERE key = ?").bind(key),
        }
        .execute(&mut **tx)
        .await?;
    }
    for (key, value) in &plan.counters {
        sqlx::query("INSERT INTO counters (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value")
            .bind(key)
            .bind(value)
            .execute(&mut **tx)
            .await?;
    }
    for k in &plan.new_keys {
        sqlx::query("INSERT INTO subject_keys (subject, key, created_at) VALUES (?, ?, ?)")
            .bind(&k.subject)
            .bind(&k.key)
            .bind(now)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// JSON array text for `IN (SELECT value FROM json_each(?))`: SQLite has no arrays.
fn json_list(items: &[String]) -> String {
    serde_json::to_string(items).expect("strings serialise")
}

fn parse_uuid(s: &str) -> Result<Uuid, sqlx::Error> {
    Uuid::from_str(s).map_err(|e| sqlx::Error::Decode(e.into()))
}

fn decode_event(row: &SqliteRow) -> Result<RecordedEvent, sqlx::Error> {
    decode_event_as(row, |payload| {
        serde_json::from_str(&payload).map_err(|e| sqlx::Error::Decode(e.into()))
    })
}

/// An event row, its payload (JSON text, as stored) turned into `P` by `payload_as`.
fn decode_event_as<P>(
    row: &SqliteRow,
    payload_as: impl Fn(String) -> Result<P, sqlx::Error>,
) -> Result<RecordedEvent<P>, sqlx::Error> {
    let position: i64 = row.try_get("position")?;
    let log_tx: i64 = row.try_get("log_tx")?;
    let version: i64 = row.try_get("stream_version")?;
    let schema_version: i64 = row.try_get("schema_version")?;
    let payload: String = row.try_get("payload")?;
    let causation: Option<String> = row.try_get("causation_id")?;
    Ok(RecordedEvent {
        log_position: LogPosition::new(log_tx as u64, position as u64),
        stream_id: row.try_get("stream_id")?,
        stream_version: version as u64,
        event_id: parse_uuid(row.try_get("event_id")?)?,
        event_type: row.try_get("event_type")?,
        schema_version: schema_version as u32,
        payload: payload_as(payload)?,
        metadata: EventMetadata {
            command_id: parse_uuid(row.try_get("command_id")?)?,
            correlation_id: parse_uuid(row.try_get("correlation_id")?)?,
            causation_id: causation.as_deref().map(parse_uuid).transpose()?,
            actor: row.try_get("actor")?,
            occurred_at: row.try_get::<DateTime<Utc>, _>("occurred_at")?,
            recorded_at: row.try_get::<DateTime<Utc>, _>("recorded_at")?,
        },
        chain_hash: ChainHash::from_slice(row.try_get("chain_hash")?).unwrap_or_default(),
    })
}

impl SqliteEventStore {
    async fn read_all_rows(
        &self,
        after: LogPosition,
        limit: usize,
    ) -> Result<Vec<SqliteRow>, StoreError> {
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE (log_tx, position) > (?, ?) \
             ORDER BY log_tx, position LIMIT ?"
        );
        Ok(sqlx::query(&sql)
            .bind(after.tx as i64)
            .bind(after.position as i64)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&self.readers)
            .await?)
    }
}

impl crate::Horizon for SqliteEventStore {
    /// One writer at a time, committing in log order: nothing to wait for.
    async fn settle(&self) -> Result<std::time::Duration, StoreError> {
        Ok(std::time::Duration::ZERO)
    }
}

impl Append for SqliteEventStore {
    async fn append_batch(
        &self,
        requests: Vec<AppendRequest>,
    ) -> Vec<Result<AppendOutcome, AppendError>> {
        match self.try_append_batch(&requests).await {
            Ok(outcomes) => outcomes,
            Err(e) => {
                tracing::error!(error = %e, batch = requests.len(), "append batch failed");
                fail_all(requests.len(), &e.to_string())
            }
        }
    }
}

impl Streams for SqliteEventStore {
    async fn read_stream_range(
        &self,
        stream_id: &str,
        after_version: u64,
        up_to_version: u64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE stream_id = ? AND stream_version > ? \
             AND stream_version <= ? ORDER BY stream_version"
        );
        let rows = sqlx::query(&sql)
            .bind(stream_id)
            .bind(after_version as i64)
            .bind(up_to_version.min(i64::MAX as u64) as i64)
            .fetch_all(&self.readers)
            .await?;
        Ok(rows.iter().map(decode_event).collect::<Result<_, _>>()?)
    }

    async fn stream_version(&self, stream_id: &str) -> Result<u64, StoreError> {
        let v: Option<i64> =
            sqlx::query_scalar("SELECT max(stream_version) FROM events WHERE stream_id = ?")
                .bind(stream_id)
                .fetch_one(&self.readers)
                .await?;
        Ok(v.unwrap_or(0) as u64)
    }

    async fn stream_ids_with_prefix(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        // SQLite compares text bytewise (BINARY): a range over the unique
        // (stream_id, stream_version) index.
        let upper = format!("{prefix}\u{10FFFF}");
        Ok(sqlx::query_scalar(
            "SELECT stream_id FROM events WHERE stream_id >= ? AND stream_id < ? \
             AND stream_version = 1 ORDER BY stream_id",
        )
        .bind(prefix)
        .bind(upper)
        .fetch_all(&self.readers)
        .await?)
    }
}

impl Log for SqliteEventStore {
    async fn read_all(
        &self,
        after: LogPosition,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let rows = self.read_all_rows(after, limit).await?;
        Ok(rows.iter().map(decode_event).collect::<Result<_, _>>()?)
    }

    async fn read_all_text(
        &self,
        after: LogPosition,
        limit: usize,
    ) -> Result<Vec<RecordedEvent<String>>, StoreError> {
        let rows = self.read_all_rows(after, limit).await?;
        Ok(rows
            .iter()
            .map(|r| decode_event_as(r, Ok))
            .collect::<Result<_, _>>()?)
    }

    async fn head(&self) -> Result<(u64, LogPosition), StoreError> {
        let row = sqlx::query(
            "SELECT (SELECT count(*) FROM events) AS n, e.log_tx, e.position \
             FROM (SELECT 1) LEFT JOIN (SELECT log_tx, position FROM events \
                 ORDER BY log_tx DESC, position DESC LIMIT 1) AS e",
        )
        .fetch_one(&self.readers)
        .await?;
        let n: i64 = row.try_get("n")?;
        let tx: Option<i64> = row.try_get("log_tx")?;
        let p: Option<i64> = row.try_get("position")?;
        Ok((
            n as u64,
            LogPosition::new(tx.unwrap_or(0) as u64, p.unwrap_or(0) as u64),
        ))
    }
}

impl Lookups for SqliteEventStore {
    async fn key_owner(&self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT owner FROM unique_keys WHERE key = ?")
                .bind(key)
                .fetch_optional(&self.readers)
                .await?,
        )
    }

    async fn counter(&self, key: &str) -> Result<i64, StoreError> {
        let v: Option<i64> = sqlx::query_scalar("SELECT value FROM counters WHERE key = ?")
            .bind(key)
            .fetch_optional(&self.readers)
            .await?;
        Ok(v.unwrap_or(0))
    }

    async fn counters(&self, keys: &[String]) -> Result<Vec<i64>, StoreError> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT key, value FROM counters WHERE key IN (SELECT value FROM json_each(?))",
        )
        .bind(serde_json::to_string(keys).expect("strings serialise"))
        .fetch_all(&self.readers)
        .await?;
        Ok(crate::counters_in_order(keys, rows))
    }

    async fn command_outcome(&self, command_id: Uuid) -> Result<Option<AppendOutcome>, StoreError> {
        let v: Option<String> =
            sqlx::query_scalar("SELECT outcome FROM commands WHERE command_id = ?")
                .bind(command_id.to_string())
                .fetch_optional(&self.readers)
                .await?;
        v.map(|v| {
            serde_json::from_str(&v)
                .map_err(|e| StoreError::Corrupt(format!("command outcome: {e}")))
        })
        .transpose()
    }
}

impl Checkpoints for SqliteEventStore {
    async fn load_checkpoint(&self, name: &str) -> Result<Option<Checkpoint>, StoreError> {
        let row = sqlx::query("SELECT tx, position, extra FROM checkpoints WHERE name = ?")
            .bind(name)
            .fetch_optional(&self.readers)
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
            "INSERT INTO checkpoints (name, tx, position, extra, updated_at) VALUES (?, ?, ?, ?, ?) \
             ON CONFLICT (name) DO UPDATE SET tx = excluded.tx, position = excluded.position, \
             extra = excluded.extra, updated_at = excluded.updated_at",
        )
        .bind(&cp.name)
        .bind(cp.position.tx as i64)
        .bind(cp.position.position as i64)
        .bind(cp.extra)
        .bind(Utc::now())
        .execute(&self.writer)
        .await?;
        Ok(())
    }
}

impl SubjectKeys for SqliteEventStore {
    async fn subject_key(&self, subject: &str) -> Result<SubjectKey, StoreError> {
        // The writer: a key just created or erased must be seen at once.
        let row: Option<Option<Vec<u8>>> =
            sqlx::query_scalar("SELECT key FROM subject_keys WHERE subject = ?")
                .bind(subject)
                .fetch_optional(&self.writer)
                .await?;
        Ok(subject_key_of(row))
    }

    async fn erase_subject_key(&self, subject: &str) -> Result<(), StoreError> {
        let now = Utc::now();
        sqlx::query(
            "INSERT INTO subject_keys (subject, key, created_at, erased_at) VALUES (?, NULL, ?, ?) \
             ON CONFLICT (subject) DO UPDATE SET key = NULL, \
                 erased_at = coalesce(subject_keys.erased_at, excluded.erased_at)",
        )
        .bind(subject)
        .bind(now)
        .bind(now)
        .execute(&self.writer)
        .await?;
        // The old key must not survive in the file's free pages or the WAL.
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&self.writer)
            .await?;
        Ok(())
    }
}

impl Seals for SqliteEventStore {
    async fn last_global_checkpoint(&self) -> Result<Option<GlobalCheckpoint>, StoreError> {
        let sql = format!(
            "SELECT {CHECKPOINT_COLUMNS} FROM global_checkpoints ORDER BY seq DESC LIMIT 1"
        );
        let row = sqlx::query(&sql).fetch_optional(&self.readers).await?;
        row.as_ref().map(decode_checkpoint::<SqliteRow>).transpose()
    }

    async fn global_checkpoints(
        &self,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<GlobalCheckpoint>, StoreError> {
        let sql = format!(
            "SELECT {CHECKPOINT_COLUMNS} FROM global_checkpoints WHERE seq > ? ORDER BY seq LIMIT ?"
        );
        let rows = sqlx::query(&sql)
            .bind(after_seq as i64)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&self.readers)
            .await?;
        rows.iter().map(decode_checkpoint::<SqliteRow>).collect()
    }

    async fn append_global_checkpoint(&self, cp: &GlobalCheckpoint) -> Result<bool, StoreError> {
        let inserted = sqlx::query(
            "INSERT INTO global_checkpoints (seq, after_tx, after_position, through_tx, \
                 through_position, event_count, leaves, prev_hash, hash, sealed_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (seq) DO NOTHING",
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
        .execute(&self.writer)
        .await?
        .rows_affected();
        Ok(inserted == 1)
    }
}

//! Rebuilding a read model from the event store, and verifying one.
//!
//! **Rebuild** (`crm projections rebuild <name>`): the projection's tables are created
//! afresh under a unique suffix and filled from the event store's global log (commit-safe
//! order), page by page, with progress reported: the log is folded in memory and the rows
//! bulk-loaded (`bulk.rs`). Then, in one short transaction, the
//! live tables are locked (positions first, the order the projector takes them, so no
//! deadlock), the last events written since are applied, and the fresh tables take the
//! live names; the old ones are dropped. Queries keep running throughout: they wait only
//! for the rename, and the projector carries on from the fresh positions (what the
//! rebuild applied is a duplicate to it).
//!
//! **Verify** (`crm projections verify <name>`): the live tables and their positions are
//! read in one snapshot; the projection is rebuilt into scratch tables from the store,
//! up to exactly those positions, by the bulk path; every row of every table is compared.
//! The live tables were built by the statement path, so 0 differing rows also proves the
//! two paths agree.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use crm_eventstore::{Horizon, Log, LogPosition};
use futures::StreamExt as _;

use crate::schema::{Kind, Projection};
use crate::store::{Conn, Prepared, ReadError, ReadStore, Target, Writer};

/// Events read from the store per transaction.
pub const PAGE: usize = 10_000;

/// Concurrent bulk loads during a rebuild (2 measured no faster on two cores: PostgreSQL
/// is already busy reading the log).
const WRITERS: usize = 1;

/// Where a long run stands, for a progress bar.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    pub done: u64,
    /// Events in the log when the run started (the log may grow meanwhile).
    pub total: u64,
    pub elapsed: std::time::Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RebuildReport {
    pub projection: &'static str,
    pub events_read: u64,
    pub events_applied: u64,
    /// Events applied in the switch-over transaction (written while the rebuild ran).
    pub caught_up_in_switch: u64,
    /// Reading, folding and bulk-loading the log, keys included.
    pub fill_seconds: f64,
    /// Of `fill_seconds`, the end: rows kept in memory written, keys and indexes built.
    pub keys_seconds: f64,
    /// The switch-over transaction (locks, catch-up, renames).
    pub switch_seconds: f64,
    /// Waiting, before the fill, for the transactions in flight when the rebuild began.
    pub settle_seconds: f64,
}

fn suffix(kind: &str) -> String {
    format!("_{kind}{}", chrono::Utc::now().timestamp_millis())
}

async fn create_tables(read: &ReadStore, p: &Projection, suffix: &str) -> Result<(), ReadError> {
    execute_all(read, p.tables_ddl(suffix)).await
}

async fn execute_all(read: &ReadStore, statements: Vec<String>) -> Result<(), ReadError> {
    for ddl in statements {
        match read {
            ReadStore::Postgres(pool) => sqlx::query(&ddl).execute(pool).await?.rows_affected(),
            ReadStore::Sqlite(pool) => sqlx::query(&ddl).execute(pool).await?.rows_affected(),
        };
    }
    Ok(())
}

/// The end of a fill: each table gets the rows still in memory, then its keys and
/// indexes. On PostgreSQL as many tables at once as the pool has connections, each on
/// its own (index builds take a SHARE lock, which does not conflict with another), so a
/// table complete since the last page builds its keys while others are still loading;
/// on SQLite (one writer) one table after another.
async fn finish(
    read: &ReadStore,
    projection: Projection,
    suffix: &str,
    tables: Vec<(
        String,
        &'static crate::schema::Table,
        Vec<crate::memory::Row>,
    )>,
) -> Result<(), ReadError> {
    let jobs = tables.into_iter().map(|(name, table, rows)| async move {
        crate::load::write_rows(read, &format!("{name}{suffix}"), table, rows).await?;
        execute_all(read, projection.table_keys_ddl(&name, suffix)).await?;
        // Statistics now: without them the planner takes a rebuilt table of a million rows
        // for an empty one until autovacuum comes by (the workbench's open complaints,
        // oldest first, were sorted in 3 s instead of read from their index in 1 ms).
        execute_all(read, vec![format!("ANALYZE {name}{suffix}")]).await
    });
    // Each job holds one connection at a time: as many at once as the pool has (more
    // would wait for a connection past the pool's timeout while a large index builds).
    let at_once = match read {
        ReadStore::Postgres(pool) => pool.options().get_max_connections().max(1) as usize,
        ReadStore::Sqlite(_) => 1,
    };
    let mut jobs = futures::stream::iter(jobs).buffer_unordered(at_once);
    while let Some(r) = jobs.next().await {
        r?;
    }
    Ok(())
}

async fn drop_tables(read: &ReadStore, p: &Projection, suffix: &str) -> Result<(), ReadError> {
    for t in p.table_names() {
        let sql = crate::sql::drop_table(&format!("{t}{suffix}"));
        match read {
            ReadStore::Postgres(pool) => sqlx::query(&sql).execute(pool).await?.rows_affected(),
            ReadStore::Sqlite(pool) => sqlx::query(&sql).execute(pool).await?.rows_affected(),
        };
    }
    Ok(())
}

/// What a fill did.
struct Filled {
    events_read: u64,
    events_applied: u64,
    /// The last position read.
    cursor: LogPosition,
    /// Writing what was kept in memory, and building keys.
    keys_seconds: f64,
}

/// A page of the log, payloads as JSON text (decoded straight into the event types, no
/// JSON tree).
type Page = Vec<crm_eventstore::RecordedEvent<String>>;

/// Rows of one table to write: its name with the suffix, its declaration, the rows.
type RowBatch = (
    String,
    &'static crate::schema::Table,
    Vec<crate::memory::Row>,
);

type Task = tokio::task::JoinHandle<Result<(), ReadError>>;

/// A task reading the whole log page by page, a few pages ahead of the fold.
fn spawn_reader<S: Log + Clone + 'static>(events: &S) -> (Task, tokio::sync::mpsc::Receiver<Page>) {
    let (pages_tx, pages) = tokio::sync::mpsc::channel::<Page>(8);
    let events = events.clone();
    let reader = tokio::spawn(async move {
        let mut cursor = LogPosition::START;
        loop {
            let page = events
                .read_all_text(cursor, PAGE)
                .await
                .map_err(|e| ReadError::Config(format!("event store: {e}")))?;
            let Some(last) = page.last() else { break };
            cursor = last.log_position;
            let full = page.len() == PAGE;
            if pages_tx.send(page).await.is_err() || !full {
                break;
            }
        }
        Ok::<_, ReadError>(())
    });
    (reader, pages)
}

/// [`WRITERS`] tasks, each on its own connection, bulk-loading the batches sent.
fn spawn_writers(read: &ReadStore) -> (tokio::sync::mpsc::Sender<RowBatch>, Vec<Task>) {
    let (rows_tx, rows) = tokio::sync::mpsc::channel::<RowBatch>(4);
    let rows = Arc::new(tokio::sync::Mutex::new(rows));
    let writers = (0..WRITERS)
        .map(|_| {
            let (read, rows) = (read.clone(), rows.clone());
            tokio::spawn(async move {
                loop {
                    let next = rows.lock().await.recv().await;
                    let Some((name, table, batch)) = next else {
                        break;
                    };
                    crate::load::write_rows(&read, &name, table, batch).await?;
                }
                Ok::<_, ReadError>(())
            })
        })
        .collect();
    (rows_tx, writers)
}

/// Fill the `suffix` tables of `projection` from the whole log (only up to `limits` per
/// stream, when given) by folding it in memory and bulk-loading the rows.
///
/// Three stages run at once: a task reads pages of the log, this one folds them, and a
/// task writes the append-only rows, so reading, folding and loading overlap.
async fn fill<S: Log + Clone + 'static>(
    events: &S,
    read: &ReadStore,
    projection: Projection,
    suffix: &str,
    limits: Option<Arc<HashMap<String, i64>>>,
    progress: &mut dyn FnMut(Progress),
) -> Result<Filled, ReadError> {
    let started = Instant::now();
    // The size of the log, for the progress bar only: counted while the first pages are
    // read and folded.
    let counter = {
        let events = events.clone();
        tokio::spawn(async move { events.head().await.map(|(n, _)| n).unwrap_or(0) })
    };
    let mut total: Option<u64> = None;
    let mut counter = Some(counter);

    let (reader, mut pages) = spawn_reader(events);
    let (rows_tx, writers) = spawn_writers(read);

    let zone = read.ledger_zone().await?;
    let mut fold = crate::memory::Memory::new(projection, limits).in_zone(zone);
    let (mut done, mut applied) = (0u64, 0u64);
    let mut cursor = LogPosition::START;
    let folded = async {
        while let Some(page) = pages.recv().await {
            for e in &page {
                applied += u64::from(fold.apply(e));
            }
            if let Some(last) = page.last() {
                cursor = last.log_position;
            }
            for (table, batch) in fold.take_pending() {
                if rows_tx
                    .send((format!("{}{suffix}", table.name), table, batch))
                    .await
                    .is_err()
                {
                    break;
                }
            }
            done += page.len() as u64;
            if counter.as_ref().is_some_and(|c| c.is_finished()) {
                total = counter.take().expect("counter").await.ok();
            }
            progress(Progress {
                done,
                total: total.unwrap_or(done).max(done),
                elapsed: started.elapsed(),
            });
        }
    };
    folded.await;
    drop(rows_tx);
    let read_result = reader
        .await
        .map_err(|e| ReadError::Config(format!("reader task: {e}")))?;
    read_result?;
    for w in writers {
        w.await
            .map_err(|e| ReadError::Config(format!("writer task: {e}")))??;
    }
    let pipeline = started.elapsed();
    finish(read, projection, suffix, fold.into_tables()).await?;
    Ok(Filled {
        events_read: done,
        events_applied: applied,
        cursor,
        keys_seconds: (started.elapsed() - pipeline).as_secs_f64(),
    })
}

/// Rebuild `projection` from `events` and switch the live tables over to the result. It
/// holds every event committed before it began: it first waits for the transactions then
/// in flight to end (`Horizon::settle`).
pub async fn rebuild<S: Log + Horizon + Clone + 'static>(
    events: &S,
    read: &ReadStore,
    projection: Projection,
    progress: &mut dyn FnMut(Progress),
) -> Result<RebuildReport, ReadError> {
    let started = Instant::now();
    let waited = events
        .settle()
        .await
        .map_err(|e| ReadError::Config(format!("event store: {e}")))?;
    let suffix = suffix("r");
    create_tables(read, &projection, &suffix).await?;
    let target = Target::Only {
        projection,
        suffix: suffix.clone(),
    };
    let result = async {
        let f = fill(events, read, projection, &suffix, None, progress).await?;
        let filled = started.elapsed();
        let caught_up = switch_over(events, read, &projection, &suffix, &target, f.cursor).await?;
        Ok::<_, ReadError>(RebuildReport {
            projection: projection.name,
            events_read: f.events_read + caught_up,
            events_applied: f.events_applied + caught_up,
            caught_up_in_switch: caught_up,
            fill_seconds: filled.as_secs_f64(),
            keys_seconds: f.keys_seconds,
            switch_seconds: (started.elapsed() - filled).as_secs_f64(),
            settle_seconds: waited.as_secs_f64(),
        })
    }
    .await;
    if result.is_err() {
        // Leave the live tables as they were; remove the half-built ones.
        let _ = drop_tables(read, &projection, &suffix).await;
    }
    result
}

/// The switch-over, in `tx`: the live tables locked, the events written since the fill
/// (from `cursor` on) applied to the fresh ones, which then take the live names.
async fn switch_in<S: Log>(
    tx: &mut Conn<'_>,
    events: &S,
    projection: &Projection,
    suffix: &str,
    target: &Target,
    cursor: LogPosition,
) -> Result<u64, ReadError> {
    let live = projection.table_names();
    let pg = tx.backend() == crate::sql::Backend::Postgres;
    if pg {
        // The views are recreated below: the same lock as a starting instance takes to
        // create them, taken first (before any table lock, as it does).
        tx.execute(&crate::sql::advisory_xact_lock(
            crm_eventstore::plan::lock_key("crm-read-models:views"),
        ))
        .await?;
        // Positions first: every projector transaction reads them before it writes the
        // data tables, so waiting here for it cannot deadlock.
        let positions = projection.positions_table();
        tx.execute(&crate::sql::lock(&positions)).await?;
        for t in live.iter().filter(|t| **t != positions) {
            tx.execute(&crate::sql::lock(t)).await?;
        }
    }
    // What was written since the fill finished.
    let mut cursor = cursor;
    let mut caught_up = 0u64;
    loop {
        let page = events
            .read_all(cursor, PAGE)
            .await
            .map_err(|e| ReadError::Config(format!("event store: {e}")))?;
        let Some(last) = page.last() else { break };
        cursor = last.log_position;
        let n = page.len();
        let batch = Prepared::from_log(page);
        tx.apply(&batch, target, &Writer::default()).await?;
        caught_up += n as u64;
        if n < PAGE {
            break;
        }
    }
    let old = self::suffix("old");
    // Views follow tables through renames: drop them now, recreate on the new ones.
    for sql in crate::views::drop_statements(tx.backend()) {
        tx.execute(&sql).await?;
    }
    for t in &live {
        tx.execute(&crate::sql::rename(t, &format!("{t}{old}")))
            .await?;
        tx.execute(&crate::sql::rename(&format!("{t}{suffix}"), t))
            .await?;
    }
    for t in &live {
        tx.execute(&crate::sql::drop_table(&format!("{t}{old}")))
            .await?;
    }
    if projection.model == crate::schema::Model::Analytics {
        // Its kept aggregates now hold the whole log.
        tx.execute(&crate::sql::mark_complete(projection.name))
            .await?;
    }
    for sql in crate::views::create_statements(tx.backend()) {
        tx.execute(&sql).await?;
    }
    Ok(caught_up)
}

async fn switch_over<S: Log>(
    events: &S,
    read: &ReadStore,
    projection: &Projection,
    suffix: &str,
    target: &Target,
    cursor: LogPosition,
) -> Result<u64, ReadError> {
    match read {
        ReadStore::Postgres(pool) => {
            let mut tx = pool.begin().await?;
            let mut conn = Conn::Postgres(&mut tx);
            let n = switch_in(&mut conn, events, projection, suffix, target, cursor).await?;
            tx.commit().await?;
            Ok(n)
        }
        ReadStore::Sqlite(pool) => {
            let mut tx = pool.begin().await?;
            let mut conn = Conn::Sqlite(&mut tx);
            let n = switch_in(&mut conn, events, projection, suffix, target, cursor).await?;
            tx.commit().await?;
            Ok(n)
        }
    }
}

/// Rows of a table as text, keyed by their primary key.
type Rows = BTreeMap<Vec<Option<String>>, Vec<Option<String>>>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableDiff {
    pub table: String,
    pub live_rows: usize,
    pub rebuilt_rows: usize,
    /// Rows present on one side only, or with different values.
    pub differing: usize,
    /// A few differing keys, for the report.
    pub examples: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    pub projection: &'static str,
    pub events_read: u64,
    pub tables: Vec<TableDiff>,
}

impl VerifyReport {
    pub fn differing(&self) -> usize {
        self.tables.iter().map(|t| t.differing).sum()
    }
}

/// Every row of `projection`'s tables named with `suffix`, and its positions, in `tx`.
async fn snapshot_in(
    tx: &mut Conn<'_>,
    projection: &Projection,
    suffix: &str,
) -> Result<Snapshot, ReadError> {
    let mut tables: Vec<(String, Rows)> = Vec::new();
    for t in projection.tables {
        let sql = crate::sql::select_as_text(t, suffix);
        let mut rows = Rows::new();
        let keys = t.key_columns();
        for values in tx.fetch_text(&sql, t.columns.len()).await? {
            if t.kind == Kind::Counter && nothing_counted(&keys, &values) {
                continue;
            }
            let key: Vec<Option<String>> = keys.iter().map(|i| values[*i].clone()).collect();
            rows.insert(key, values);
        }
        tables.push((t.name.to_string(), rows));
    }
    let sql = crate::sql::select_positions(&format!("{}{suffix}", projection.positions_table()));
    let mut positions = HashMap::new();
    for row in tx.fetch_text(&sql, 2).await? {
        let (Some(stream), Some(version)) = (&row[0], &row[1]) else {
            continue;
        };
        let version = version
            .parse()
            .map_err(|_| ReadError::Config(format!("position {version:?} of {stream}")))?;
        positions.insert(stream.clone(), version);
    }
    Ok((tables, positions))
}

type Snapshot = (Vec<(String, Rows)>, HashMap<String, i64>);

async fn snapshot(read: &ReadStore, p: &Projection, suffix: &str) -> Result<Snapshot, ReadError> {
    match read {
        ReadStore::Postgres(pool) => {
            let mut tx = pool.begin().await?;
            sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                .execute(&mut *tx)
                .await?;
            let s = snapshot_in(&mut Conn::Postgres(&mut tx), p, suffix).await?;
            tx.commit().await?;
            Ok(s)
        }
        ReadStore::Sqlite(pool) => {
            let mut tx = pool.begin().await?;
            let s = snapshot_in(&mut Conn::Sqlite(&mut tx), p, suffix).await?;
            tx.commit().await?;
            Ok(s)
        }
    }
}

/// Rebuild `projection` into scratch tables and compare them with the live ones.
pub async fn verify<S: Log + Clone + 'static>(
    events: &S,
    read: &ReadStore,
    projection: Projection,
    progress: &mut dyn FnMut(Progress),
) -> Result<VerifyReport, ReadError> {
    let (live, positions) = snapshot(read, &projection, "").await?;
    let suffix = suffix("v");
    create_tables(read, &projection, &suffix).await?;
    let result = async {
        let events_read = fill(
            events,
            read,
            projection,
            &suffix,
            Some(Arc::new(positions)),
            progress,
        )
        .await?
        .events_read;
        let (rebuilt, _) = snapshot(read, &projection, &suffix).await?;
        let tables = live
            .into_iter()
            .zip(rebuilt)
            .map(|((name, a), (_, b))| diff(name, &a, &b))
            .collect();
        Ok::<_, ReadError>(VerifyReport {
            projection: projection.name,
            events_read,
            tables,
        })
    }
    .await;
    drop_tables(read, &projection, &suffix).await?;
    result
}

/// Whether a counter row holds only zeros: it counts what its absence would. (The
/// projector leaves such rows where differences net out, as when a span's end moves from
/// one day to the next; a rebuild, adding each customer's final history once, has none.)
fn nothing_counted(keys: &[usize], values: &[Option<String>]) -> bool {
    values
        .iter()
        .enumerate()
        .all(|(i, v)| keys.contains(&i) || v.as_deref() == Some("0"))
}

fn diff(table: String, live: &Rows, rebuilt: &Rows) -> TableDiff {
    let mut differing = 0;
    let mut examples = Vec::new();
    let mut note = |key: &Vec<Option<String>>, what: &str| {
        differing += 1;
        if examples.len() < 5 {
            let k: Vec<&str> = key.iter().map(|v| v.as_deref().unwrap_or("NULL")).collect();
            examples.push(format!("{} ({what})", k.join("/")));
        }
    };
    for (k, v) in live {
        match rebuilt.get(k) {
            None => note(k, "only in the live table"),
            Some(w) if w != v => note(k, "values differ"),
            Some(_) => {}
        }
    }
    for k in rebuilt.keys() {
        if !live.contains_key(k) {
            note(k, "missing from the live table");
        }
    }
    TableDiff {
        table,
        live_rows: live.len(),
        rebuilt_rows: rebuilt.len(),
        differing,
        examples,
    }
}

//! `crm audit export`: a self-contained, verifiable copy of part of the log.
//!
//! The export is an embedded (SQLite) event store: the events of whole global
//! checkpoints, with their original log positions, metadata and chain links, the
//! checkpoints themselves, and two extra tables:
//! - `export_manifest`: where it comes from, the period asked for, the checkpoints it
//!   holds and the hash the first one chains to;
//! - `export_stream_bases`: for each stream whose first exported event is not its first
//!   event, the version and link just before, so its chain can be checked from there.
//!
//! An auditor opens it with the embedded mode, without any server: `crm audit verify`,
//! `crm audit ownership`, `crm audit manager` and `crm projections rebuild` all take
//! `--store sqlite://<file>`. The file refuses new events and checkpoints.
//!
//! The export holds whole checkpoints: every checkpoint sealed at or after `from`, up to
//! and including the first one sealed at or after `to`, so at least every event recorded
//! in `[from, to)` that was sealed. Events after the last checkpoint are not exported:
//! seal first (`crm audit checkpoint`; the relay does every 10 s).

use std::collections::{HashMap, HashSet};
use std::path::Path;

use chrono::{DateTime, Utc};
use crm_eventstore::sqlite::SqliteEventStore;
use crm_eventstore::{ChainHash, GlobalCheckpoint, Log, LogPosition, Seals, StoreError, Streams};
use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::verify::{StreamBase, VerifyOptions};

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("event store: {0}")]
    Store(#[from] StoreError),
    #[error("export file: {0}")]
    File(#[from] sqlx::Error),
    #[error("{0} exists already: choose a new file, an export is never overwritten")]
    Exists(String),
    #[error("no global checkpoint was sealed in the period: nothing to export (seal with `crm audit checkpoint`)")]
    Nothing,
    #[error("checkpoint #{seq} seals {sealed} events but {found} are in its range: run `crm audit verify` on the source")]
    Damaged { seq: u64, sealed: u64, found: u64 },
}

/// What an export holds and where it comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportManifest {
    /// The source store, without credentials.
    pub source: String,
    pub exported_at: DateTime<Utc>,
    /// The period asked for (`None`: from the beginning / up to the export).
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub first_checkpoint: u64,
    pub last_checkpoint: u64,
    /// The hash checkpoint `first_checkpoint` chains to (zeros when it is #1): compare it
    /// with a hash kept from the source (`--expect <first_checkpoint - 1>:<hash>`).
    pub first_prev_hash: ChainHash,
    /// Where the log was before the first exported event.
    pub starts_after: LogPosition,
    pub last_hash: ChainHash,
    pub events: u64,
    pub streams: u64,
}

impl ExportManifest {
    /// What verify needs to start from the export's first checkpoint instead of #1.
    pub fn verify_start(&self) -> crate::verify::Start {
        crate::verify::Start {
            seq: self.first_checkpoint,
            prev_hash: self.first_prev_hash,
            after: self.starts_after,
        }
    }
}

/// Remove the user and password from a store URL before writing it into a file.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}{}", &url[..scheme + 3], &url[at + 1..])
        }
        _ => url.to_string(),
    }
}

/// Write the export to `out` (a new file). `progress` is told each checkpoint copied.
/// On failure no file is left behind.
pub async fn export<S: Log + Seals + Streams>(
    source: &S,
    source_name: &str,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    out: &Path,
    progress: &mut (dyn FnMut(&GlobalCheckpoint, u64) + Send),
) -> Result<ExportManifest, ExportError> {
    if out.exists() {
        return Err(ExportError::Exists(out.display().to_string()));
    }
    let result = write_export(source, source_name, from, to, out, progress).await;
    if result.is_err() {
        for suffix in ["", "-wal", "-shm"] {
            let mut p = out.as_os_str().to_owned();
            p.push(suffix);
            let _ = std::fs::remove_file(p);
        }
    }
    result
}

async fn write_export<S: Log + Seals + Streams>(
    source: &S,
    source_name: &str,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    out: &Path,
    progress: &mut (dyn FnMut(&GlobalCheckpoint, u64) + Send),
) -> Result<ExportManifest, ExportError> {
    let mut first: Option<GlobalCheckpoint> = None;
    let mut last: Option<GlobalCheckpoint> = None;
    let mut file: Option<SqliteEventStore> = None;
    let mut bases: Vec<(String, StreamBase)> = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    let mut events = 0u64;
    let mut after_seq = 0;
    'checkpoints: loop {
        let batch = source.global_checkpoints(after_seq, 16).await?;
        if batch.is_empty() {
            break;
        }
        for cp in batch {
            after_seq = cp.seq;
            if from.is_some_and(|f| cp.sealed_at < f) {
                continue;
            }
            let range = source
                .read_all(cp.after, cp.event_count as usize)
                .await?
                .into_iter()
                .filter(|e| e.log_position <= cp.through)
                .collect::<Vec<_>>();
            if range.len() as u64 != cp.event_count {
                return Err(ExportError::Damaged {
                    seq: cp.seq,
                    sealed: cp.event_count,
                    found: range.len() as u64,
                });
            }
            for e in &range {
                if seen.insert(e.stream_id.clone()) && e.stream_version > 1 {
                    // The link just before the stream's first exported event.
                    let before = source
                        .read_stream(&e.stream_id, e.stream_version - 2)
                        .await?;
                    let link = before
                        .first()
                        .filter(|b| b.stream_version == e.stream_version - 1)
                        .map_or(ChainHash::GENESIS, |b| b.chain_hash);
                    bases.push((
                        e.stream_id.clone(),
                        StreamBase {
                            version: e.stream_version - 1,
                            link,
                        },
                    ));
                }
            }
            if file.is_none() {
                file = Some(SqliteEventStore::open(out).await?);
            }
            let f = file.as_ref().expect("opened above");
            f.import(&range).await?;
            f.append_global_checkpoint(&cp).await?;
            events += range.len() as u64;
            progress(&cp, events);
            let past_to = to.is_some_and(|t| cp.sealed_at >= t);
            if first.is_none() {
                first = Some(cp.clone());
            }
            last = Some(cp);
            if past_to {
                break 'checkpoints;
            }
        }
    }
    let (Some(first), Some(last), Some(file)) = (first, last, file) else {
        return Err(ExportError::Nothing);
    };
    let manifest = ExportManifest {
        source: redact(source_name),
        exported_at: Utc::now(),
        from,
        to,
        first_checkpoint: first.seq,
        last_checkpoint: last.seq,
        first_prev_hash: first.prev_hash,
        starts_after: first.after,
        last_hash: last.hash,
        events,
        streams: seen.len() as u64,
    };
    let pool = file.writer_pool();
    let mut tx = pool.begin().await?;
    sqlx::query("CREATE TABLE export_manifest (manifest TEXT NOT NULL)")
        .execute(&mut *tx)
        .await?;
    sqlx::query("INSERT INTO export_manifest (manifest) VALUES (?)")
        .bind(serde_json::to_string(&manifest).expect("manifest serialises"))
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "CREATE TABLE export_stream_bases (stream_id TEXT PRIMARY KEY, version INTEGER NOT NULL, link BLOB NOT NULL)",
    )
    .execute(&mut *tx)
    .await?;
    for (stream, base) in &bases {
        sqlx::query("INSERT INTO export_stream_bases (stream_id, version, link) VALUES (?, ?, ?)")
            .bind(stream)
            .bind(base.version as i64)
            .bind(&base.link.0[..])
            .execute(&mut *tx)
            .await?;
    }
    // An export is a record: nothing is added to it afterwards.
    for table in [
        "events",
        "global_checkpoints",
        "export_manifest",
        "export_stream_bases",
    ] {
        for op in ["INSERT", "UPDATE", "DELETE"] {
            sqlx::query(&format!(
                "CREATE TRIGGER export_{table}_{op} BEFORE {op} ON {table} \
                 BEGIN SELECT RAISE(ABORT, 'this is an audit export: {op} refused'); END"
            ))
            .execute(&mut *tx)
            .await?;
        }
    }
    tx.commit().await?;
    file.writer_pool().close().await;
    Ok(manifest)
}

/// The manifest and stream bases of an export, or `None` if the SQLite file at `path`
/// is an ordinary store.
pub async fn read_export(
    path: &Path,
) -> Result<Option<(ExportManifest, HashMap<String, StreamBase>)>, ExportError> {
    use sqlx::sqlite::SqliteConnectOptions;
    use sqlx::Connection;
    let mut conn = sqlx::SqliteConnection::connect_with(
        &SqliteConnectOptions::new().filename(path).read_only(true),
    )
    .await?;
    let is_export: Option<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'export_manifest'",
    )
    .fetch_optional(&mut conn)
    .await?;
    if is_export.is_none() {
        return Ok(None);
    }
    let manifest: String = sqlx::query_scalar("SELECT manifest FROM export_manifest")
        .fetch_one(&mut conn)
        .await?;
    let manifest: ExportManifest = serde_json::from_str(&manifest)
        .map_err(|e| StoreError::Corrupt(format!("export manifest: {e}")))?;
    let mut bases = HashMap::new();
    for row in sqlx::query("SELECT stream_id, version, link FROM export_stream_bases")
        .fetch_all(&mut conn)
        .await?
    {
        let link: Vec<u8> = row.try_get("link")?;
        let version: i64 = row.try_get("version")?;
        bases.insert(
            row.try_get("stream_id")?,
            StreamBase {
                version: version as u64,
                link: ChainHash::from_slice(&link)
                    .ok_or_else(|| StoreError::Corrupt("export stream base link".into()))?,
            },
        );
    }
    Ok(Some((manifest, bases)))
}

/// Verify options for an export: start at its first checkpoint and from its stream bases.
pub fn verify_options(
    manifest: &ExportManifest,
    bases: HashMap<String, StreamBase>,
    expect: Vec<(u64, ChainHash)>,
) -> VerifyOptions {
    VerifyOptions {
        expect,
        start: Some(manifest.verify_start()),
        bases,
        ..Default::default()
    }
}

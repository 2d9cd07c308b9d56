//! The ceilings the write path is measured against: INSERTs into a table shaped like
//! `events` from many connections at once, one row per commit (a) or a batch of rows per
//! commit (e: what group commit could at best get from PostgreSQL). Nothing the platform
//! does per command is included; this is what PostgreSQL alone gives here.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use sqlx::postgres::PgPoolOptions;
use uuid::Uuid;

pub struct RawCeiling {
    pub connections: usize,
    /// Rows in each commit.
    pub batch: usize,
    pub rows: u64,
    pub elapsed: Duration,
}

impl RawCeiling {
    pub fn per_second(&self) -> f64 {
        self.rows as f64 / self.elapsed.as_secs_f64()
    }
}

/// A fresh table shaped like `events`; its name.
async fn events_shaped_table(pool: &sqlx::PgPool) -> anyhow::Result<String> {
    let table = format!("bench_raw_{}", Uuid::new_v4().simple());
    sqlx::query(&format!(
        "CREATE TABLE {table} (position BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, \
         stream_id TEXT NOT NULL, stream_version BIGINT NOT NULL, event_id UUID NOT NULL UNIQUE, \
         event_type TEXT NOT NULL, payload JSONB NOT NULL, recorded_at TIMESTAMPTZ NOT NULL DEFAULT now(), \
         UNIQUE (stream_id, stream_version))"
    ))
    .execute(pool)
    .await?;
    Ok(table)
}

/// Insert for `duration` from `connections` connections, `batch` rows per commit (one
/// statement each), into a fresh table in `url`'s database; the table is dropped
/// afterwards.
pub async fn measure(
    url: &str,
    connections: usize,
    batch: usize,
    duration: Duration,
) -> anyhow::Result<RawCeiling> {
    let pool = PgPoolOptions::new()
        .max_connections(connections as u32)
        .min_connections(connections as u32)
        // As the store's own pool: no ping round trip before each statement.
        .test_before_acquire(false)
        .connect(url)
        .await
        .with_context(|| format!("connecting to {}", crm_bus::connect::redacted(url)))?;
    let table = events_shaped_table(&pool).await?;
    let rows = Arc::new(AtomicU64::new(0));
    // One row: the plain statement (as (a) has always been measured); a batch: arrays.
    let sql = Arc::new(if batch == 1 {
        format!(
            "INSERT INTO {table} (stream_id, stream_version, event_id, event_type, payload) \
             VALUES ($1, $2, $3, $4, $5)"
        )
    } else {
        format!(
            "INSERT INTO {table} (stream_id, stream_version, event_id, event_type, payload) \
             SELECT * FROM unnest($1::text[], $2::bigint[], $3::uuid[], $4::text[], $5::jsonb[])"
        )
    });
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::new();
    for c in 0..connections {
        let (pool, rows, sql) = (pool.clone(), rows.clone(), sql.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0i64;
            let payload = serde_json::json!({"channel": "phone", "direction": "outbound", "outcome": "reached"});
            while Instant::now() < deadline {
                let stream = format!("customer-{c}");
                let query = if batch == 1 {
                    n += 1;
                    sqlx::query(&sql)
                        .bind(stream)
                        .bind(n)
                        .bind(Uuid::new_v4())
                        .bind("ContactRecorded")
                        .bind(&payload)
                } else {
                    let versions: Vec<i64> = (n + 1..=n + batch as i64).collect();
                    n += batch as i64;
                    sqlx::query(&sql)
                        .bind(vec![stream; batch])
                        .bind(versions)
                        .bind((0..batch).map(|_| Uuid::new_v4()).collect::<Vec<_>>())
                        .bind(vec!["ContactRecorded"; batch])
                        .bind(vec![&payload; batch])
                };
                query.execute(&pool).await?;
                rows.fetch_add(batch as u64, Ordering::Relaxed);
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let elapsed = started.elapsed();
    sqlx::query(&format!("DROP TABLE {table}"))
        .execute(&pool)
        .await?;
    Ok(RawCeiling {
        connections,
        batch,
        rows: rows.load(Ordering::Relaxed),
        elapsed,
    })
}

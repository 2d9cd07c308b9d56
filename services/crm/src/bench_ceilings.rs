//! `crm bench ceilings`: what this machine's PostgreSQL and NATS can do with nothing of
//! the platform in the way, for the figures of `crm load` to be read against (run both in
//! one session: `scripts/bench-load`).
//!
//! - raw single-row INSERTs into an events-shaped table, one commit each, 32 connections
//!   (a scratch database, dropped after);
//! - JetStream publishing of event-sized messages with acks pipelined (a scratch stream);
//! - a sequential read of the `events` table of `--store-url`, when given (the store the
//!   load just filled).

use std::time::Duration;

use anyhow::Context as _;
use sqlx::Connection;
use uuid::Uuid;

#[derive(Debug, clap::Args)]
pub struct CeilingArgs {
    /// PostgreSQL server for the scratch database.
    #[arg(
        long,
        env = "CRM_BENCH_PG_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    pg_url: String,
    #[arg(long, env = "CRM_NATS_URL", default_value = "nats://127.0.0.1:4222")]
    nats_url: String,
    /// An event store whose `events` table to read sequentially.
    #[arg(long)]
    store_url: Option<String>,
    /// Seconds per ceiling.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
}

pub async fn run(a: CeilingArgs) -> anyhow::Result<()> {
    let window = Duration::from_secs(a.seconds);
    if let Some(store) = &a.store_url {
        let (n, took) = crate::bench_read::sequential_read(store).await?;
        println!(
            "ceiling: sequential read of the events table: {n} rows in {:.2} s = {:.0} rows/s",
            took.as_secs_f64(),
            n as f64 / took.as_secs_f64()
        );
        return Ok(());
    }
    let db = format!("crm_ceiling_{}", Uuid::new_v4().simple());
    let mut admin = sqlx::PgConnection::connect(&a.pg_url)
        .await
        .with_context(|| format!("connecting to {}", a.pg_url))?;
    sqlx::query(&format!("CREATE DATABASE \"{db}\""))
        .execute(&mut admin)
        .await?;
    let base = &a.pg_url[..a.pg_url.rfind('/').context("the url needs a database")?];
    let raw = crate::bench_raw::measure(&format!("{base}/{db}"), 32, window).await;
    sqlx::query(&format!("DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)"))
        .execute(&mut admin)
        .await?;
    let raw = raw?;
    println!(
        "ceiling: raw single-row INSERT, one commit each, 32 connections: {:.0} rows/s",
        raw.per_second()
    );
    let nats = crm_bus::connect::connect(&a.nats_url).await?;
    let js = async_nats::jetstream::new(nats);
    let publish = crate::bench_nats::jetstream_publish(&js, 512, 700, window).await?;
    println!(
        "ceiling: JetStream publish, file storage, 700-byte messages, 512 acks outstanding: {:.0} messages/s",
        publish.per_second()
    );
    Ok(())
}

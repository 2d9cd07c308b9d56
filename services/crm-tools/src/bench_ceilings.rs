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

#[derive(Debug, clap::Args)]
pub struct CeilingArgs {
    #[command(flatten)]
    pg: crate::bench::PgServer,
    #[command(flatten)]
    nats: crate::bench::NatsServer,
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
    let mut dbs = crate::bench_read::Databases::new(&a.pg.pg_url).await?;
    let raw = match dbs.create("ceiling").await {
        Ok(url) => crate::bench_raw::measure(&url, 32, 1, window).await,
        Err(e) => Err(e),
    };
    dbs.drop_all().await;
    let raw = raw?;
    println!(
        "ceiling: raw single-row INSERT, one commit each, 32 connections: {:.0} rows/s",
        raw.per_second()
    );
    let nats = crm_bus::connect::connect(&a.nats.nats_url, &Default::default()).await?;
    let js = async_nats::jetstream::new(nats);
    let publish = crate::bench_nats::jetstream_publish(&js, 512, 700, window).await?;
    println!(
        "ceiling: JetStream publish, file storage, 700-byte messages, 512 acks outstanding: {:.0} messages/s",
        publish.per_second()
    );
    Ok(())
}

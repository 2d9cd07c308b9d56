//! `crm bench append`: the write path measured against PostgreSQL's raw insert ceiling.

use std::time::Duration;

#[derive(Debug, clap::Subcommand)]
pub enum BenchCmd {
    /// (a) single-row INSERT ceiling at 32 connections, then (b) commands/s end to end.
    Append(AppendArgs),
}

#[derive(Debug, clap::Args)]
pub struct AppendArgs {
    /// PostgreSQL server (a fresh database is created for the run).
    #[arg(
        long,
        env = "CRM_BENCH_PG_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    pg_url: String,
    /// Seconds of raw inserts for the ceiling.
    #[arg(long, default_value_t = 10)]
    ceiling_seconds: u64,
}

pub async fn run(cmd: BenchCmd) -> anyhow::Result<()> {
    match cmd {
        BenchCmd::Append(a) => {
            let r =
                crate::bench_raw::measure(&a.pg_url, 32, Duration::from_secs(a.ceiling_seconds))
                    .await?;
            println!(
                "(a) raw single-row INSERT, one commit each, {} connections: {} rows in {:.1} s = {:.0} rows/s",
                r.connections,
                r.rows,
                r.elapsed.as_secs_f64(),
                r.per_second()
            );
            Ok(())
        }
    }
}

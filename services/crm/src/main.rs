//! `crm`: the platform's command-line tool. `crm demo` plays a day on the embedded
//! store; `crm bench append` measures the write path against PostgreSQL's ceiling;
//! `crm projections rebuild|verify` rebuilds or checks a read model; `crm audit` replays
//! ownership from the event store for auditors.
#![forbid(unsafe_code)]

mod audit;
mod contract;
mod db;
mod demo;
mod demo_serve;
mod nats;
mod out;
mod policy;
mod projections;
mod token;

use clap::{Parser, Subcommand};

// glibc's malloc showed up at ~8 % of the machine in the write-path profile.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(name = "crm", about = "CRM event platform: demo, benchmarks", version)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Play a scripted day at a bank on the embedded SQLite store and print what happened.
    Demo(demo::DemoArgs),
    /// Benchmarks.
    #[command(subcommand)]
    Bench(crm_tools::bench::BenchCmd),
    /// Read models: list, rebuild from the event store, verify.
    #[command(subcommand)]
    Projections(projections::ProjectionsCmd),
    /// Audit: ownership replayed from the event store.
    #[command(subcommand)]
    Audit(audit::AuditCmd),
    /// The ownership policy: show, history, check, publish.
    #[command(subcommand)]
    Policy(policy::PolicyCmd),
    /// The databases: migrate as the owner (roles, grants, row-level security).
    #[command(subcommand)]
    Db(db::DbCmd),
    /// Drive a seeded workload (W1, W2) through the running platform's NATS and HTTP
    /// ingress; report throughput, latency percentiles and final projection lag.
    Load(Box<crm_tools::load::LoadArgs>),
    /// Issue a bearer token for the services (HS256, CRM_AUTH_HS256_SECRET).
    Token(token::TokenArgs),
    /// NATS: the users and permissions for a deployment.
    #[command(subcommand)]
    Nats(nats::NatsCmd),
    /// The contract's machine-readable documents (AsyncAPI of the events, OpenAPI of
    /// the commands).
    #[command(subcommand)]
    Contract(contract::ContractCmd),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if std::env::var_os("RUST_LOG").is_some() {
        crm_telemetry::init_tracing(crm_telemetry::LogFormat::Text);
    }
    match Cli::parse().command {
        Cmd::Demo(args) => demo::run(args).await,
        Cmd::Bench(cmd) => crm_tools::bench::run(cmd).await,
        Cmd::Projections(cmd) => projections::run(cmd).await,
        Cmd::Audit(cmd) => audit::run(cmd).await,
        Cmd::Policy(cmd) => policy::run(cmd).await,
        Cmd::Token(args) => token::run(args),
        Cmd::Nats(cmd) => nats::run(cmd),
        Cmd::Contract(cmd) => contract::run(cmd),
        Cmd::Db(cmd) => db::run(cmd).await,
        Cmd::Load(args) => crm_tools::load::run(*args).await,
    }
}

//! `crm bench append`: the write path, measured in one run against PostgreSQL's ceiling.
//!
//! (a) raw ceiling: single-row INSERTs into an events-shaped table, one commit each,
//!     32 connections (`bench_raw`).
//! (b) end to end, workload W1: 200 managers and 10,000 customers registered, then
//!     100,000 commands (60 % contact, 20 % assign/transfer, 20 % complaint steps) sent
//!     over NATS request/reply to the command service with 32 in flight, appended with
//!     group commit, and published by the relay; the clock stops when the last event is
//!     in the JetStream stream. The load generator runs in the same process and is
//!     included in the figure.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chrono::Utc;
use crm_bus::relay::{Relay, RelayConfig, SoleRelay};
use crm_bus::stream::{self, StreamSpec};
use crm_bus::Subjects;
use crm_command_handler::group_commit::GroupCommitConfig;
use crm_contracts::v1;
use crm_domain::Command;
use crm_eventstore::postgres::PgEventStore;
use crm_eventstore::Log;
use uuid::Uuid;

use crate::load::{Ingress, Outcome};
use crate::stats::Latencies;
use crate::workload::Workload;

#[derive(Debug, clap::Subcommand)]
pub enum BenchCmd {
    /// (a) single-row INSERT ceiling at 32 connections, then (b) W1 commands/s end to end.
    Append(AppendArgs),
    /// The read side: projection lag while W1 is written at full rate, projection
    /// throughput, rebuild speed, beside a sequential read of the events table.
    Read(crate::bench_read::ReadArgs),
    /// Ownership replay of one customer as of an instant with a large log stored.
    Audit(crate::bench_audit::AuditArgs),
    /// PostgreSQL insert and sequential-read, and JetStream publish ceilings, for the
    /// figures of `crm load` (scripts/bench-load runs both).
    Ceilings(crate::bench_ceilings::CeilingArgs),
    /// Latency of the query service's questions (owner as of an instant from the read
    /// model and replayed from the store, timeline, funnel, KPIs), one request at a time.
    Queries(crate::bench_queries::QueryArgs),
    /// The funnel and the KPIs over a seeded book of W2's size (a million customers, about
    /// twelve million events over a year), asked of the read models.
    Analytics(crate::bench_analytics::AnalyticsArgs),
    /// What verifying a bearer token costs per request, per algorithm (one key, or an
    /// identity provider's key set).
    Tokens(crate::bench_tokens::TokenArgs),
    /// A new projector group over a long stream, per NATS server: consumers created,
    /// first messages, drain rate, the server's memory and CPU.
    Replay(crate::bench_replay::ReplayArgs),
    /// Durable ingestion against request/reply: W1 commands published to the intake
    /// (live, and as a backlog decided from a standing start) and sent as requests.
    Intake(crate::bench_intake::IntakeArgs),
    /// Delete a stream a benchmark left (and its dead-letter stream), as
    /// scripts/bench-load does when it ends: W2's stream holds 11 GiB.
    DropStream(DropStreamArgs),
}

/// The PostgreSQL server a benchmark works on: it creates fresh databases there and drops
/// them after.
#[derive(Debug, clap::Args)]
pub struct PgServer {
    #[arg(
        long,
        env = "CRM_BENCH_PG_URL",
        hide_env_values = true,
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    pub pg_url: String,
}

/// The NATS server a benchmark works on (fresh streams, deleted after).
#[derive(Debug, clap::Args)]
pub struct NatsServer {
    #[arg(
        long,
        env = "CRM_NATS_URL",
        hide_env_values = true,
        default_value = "nats://127.0.0.1:4222"
    )]
    pub nats_url: String,
}

#[derive(Debug, clap::Args)]
pub struct DropStreamArgs {
    #[command(flatten)]
    nats: crate::bench::NatsServer,
    /// The stream's name; its `<name>_DLQ` goes with it.
    name: String,
}

async fn drop_stream(a: DropStreamArgs) -> anyhow::Result<()> {
    let js = async_nats::jetstream::new(async_nats::connect(&a.nats.nats_url).await?);
    for name in [
        a.name.clone(),
        crm_bus::subjects::dead_letter_stream(&a.name),
    ] {
        match js.delete_stream(&name).await {
            Ok(_) => println!("deleted stream {name}"),
            Err(e) => println!("stream {name} not deleted: {e}"),
        }
    }
    Ok(())
}

#[derive(Debug, clap::Args)]
pub struct AppendArgs {
    #[command(flatten)]
    pg: crate::bench::PgServer,
    #[command(flatten)]
    nats: crate::bench::NatsServer,
    /// Seconds of each ceiling: (a), (c), (d), (e).
    #[arg(long, default_value_t = 15)]
    ceiling_seconds: u64,
    /// Rows per commit of the batched-insert ceiling (e): the store's batches at 32 in
    /// flight (the run prints their mean size, to set this by).
    #[arg(long, default_value_t = 10)]
    batch_rows: usize,
    /// Connections of the batched-insert ceiling (e).
    #[arg(long, default_value_t = 8)]
    batch_connections: usize,
    #[arg(long, default_value_t = 10_000)]
    customers: usize,
    #[arg(long, default_value_t = 100_000)]
    commands: usize,
    #[arg(long, default_value_t = 200)]
    managers: usize,
    /// Commands in flight.
    #[arg(long, default_value_t = 32)]
    in_flight: usize,
    /// Concurrent group-commit transactions.
    #[arg(long, default_value_t = 1)]
    writers: usize,
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// The command service's ingress the load goes through (b): NATS request/reply
    /// (protobuf), or HTTP (proto3 JSON, as other-language teams send).
    #[arg(long, value_enum, default_value_t = IngressKind::Nats)]
    ingress: IngressKind,
}

/// Which ingress `crm bench append` drives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum IngressKind {
    Nats,
    Http,
}

/// How long a benchmark waits for one answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// The ingress of `nats` under `subjects`, without a token (the benchmarks' command
/// services run without authentication).
pub(crate) fn nats_ingress(nats: &async_nats::Client, subjects: &Subjects) -> Ingress {
    Ingress::Nats(nats.clone(), subjects.clone(), None, ANSWER_TIMEOUT)
}

pub async fn run(cmd: BenchCmd) -> anyhow::Result<()> {
    match cmd {
        BenchCmd::Append(a) => append(a).await,
        BenchCmd::Read(a) => crate::bench_read::run(a).await,
        BenchCmd::Audit(a) => crate::bench_audit::run(a).await,
        BenchCmd::Ceilings(a) => crate::bench_ceilings::run(a).await,
        BenchCmd::Queries(a) => crate::bench_queries::run(a).await,
        BenchCmd::Analytics(a) => crate::bench_analytics::run(a).await,
        BenchCmd::Tokens(a) => crate::bench_tokens::run(a).await,
        BenchCmd::Replay(a) => crate::bench_replay::run(a).await,
        BenchCmd::Intake(a) => crate::bench_intake::run(a).await,
        BenchCmd::DropStream(a) => drop_stream(a).await,
    }
}

pub(crate) struct Phase {
    name: &'static str,
    commands: usize,
    refused: usize,
    pub(crate) elapsed: Duration,
    latencies: Latencies,
}

async fn append(a: AppendArgs) -> anyhow::Result<()> {
    let mut dbs = crate::bench_read::Databases::new(&a.pg.pg_url).await?;
    let result = match dbs.create("append").await {
        Ok(url) => run_in(&a, &url).await,
        Err(e) => Err(e),
    };
    dbs.drop_all().await;
    result
}

/// The ceilings of a command's parts, per second: (a) raw single-row inserts, (c) NATS
/// request/reply, (d) JetStream publishing, (e) batched inserts.
struct Ceilings {
    insert: f64,
    request_reply: f64,
    publish: f64,
    batched: f64,
}

impl Ceilings {
    /// A pipeline whose only costs were its three hops, sharing the cores: the batched
    /// insert, the request/reply and the publish, one after the other per command.
    fn composed(&self) -> f64 {
        1.0 / (1.0 / self.batched + 1.0 / self.request_reply + 1.0 / self.publish)
    }
}

async fn ceilings(
    a: &AppendArgs,
    url: &str,
    nats: &async_nats::Client,
    js: &async_nats::jetstream::Context,
) -> anyhow::Result<Ceilings> {
    // (a)
    eprintln!(
        "(a) measuring the raw INSERT ceiling for {} s …",
        a.ceiling_seconds
    );
    let ceiling =
        crate::bench_raw::measure(url, 32, 1, Duration::from_secs(a.ceiling_seconds)).await?;
    println!(
        "(a) raw single-row INSERT, one commit each, {} connections: {} rows in {:.1} s = {:.0} rows/s",
        ceiling.connections,
        ceiling.rows,
        ceiling.elapsed.as_secs_f64(),
        ceiling.per_second()
    );

    // (c) and (d): the broker's own ceilings for the two hops of every command.
    let window = Duration::from_secs(a.ceiling_seconds);
    eprintln!(
        "(c) measuring NATS request/reply with {} in flight …",
        a.in_flight
    );
    let echo = crate::bench_nats::request_reply(nats, a.in_flight, 200, window).await?;
    println!(
        "(c) NATS request/reply to an instant responder, {} in flight: {} round trips in {:.1} s = {:.0}/s",
        a.in_flight,
        echo.count,
        echo.elapsed.as_secs_f64(),
        echo.per_second()
    );
    eprintln!("(d) measuring JetStream publishing …");
    let publish = crate::bench_nats::jetstream_publish(js, 512, 700, window).await?;
    println!(
        "(d) JetStream publish, file storage, 700-byte messages with Nats-Msg-Id, 512 acks outstanding: {} in {:.1} s = {:.0}/s",
        publish.count,
        publish.elapsed.as_secs_f64(),
        publish.per_second()
    );
    eprintln!(
        "(e) measuring batched INSERTs, {} rows per commit …",
        a.batch_rows
    );
    let batched = crate::bench_raw::measure(url, a.batch_connections, a.batch_rows, window).await?;
    println!(
        "(e) batched INSERT, {} rows per commit, {} connections: {} rows in {:.1} s = {:.0} rows/s",
        batched.batch,
        batched.connections,
        batched.rows,
        batched.elapsed.as_secs_f64(),
        batched.per_second()
    );
    let c = Ceilings {
        insert: ceiling.per_second(),
        request_reply: echo.per_second(),
        publish: publish.per_second(),
        batched: batched.per_second(),
    };
    println!(
        "composed ceiling 1 / (1/(e) + 1/(c) + 1/(d)) = {:.0} commands/s",
        c.composed()
    );
    Ok(c)
}

async fn run_in(a: &AppendArgs, url: &str) -> anyhow::Result<()> {
    println!(
        "machine: {} cores; PostgreSQL {url}; NATS {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        a.nats.nats_url
    );

    let nats = async_nats::connect(&a.nats.nats_url)
        .await
        .with_context(|| format!("connecting to NATS at {}", a.nats.nats_url))?;
    let js = async_nats::jetstream::new(nats.clone());
    let c = ceilings(a, url, &nats, &js).await?;

    // (b) the platform, in this process: command service (NATS ingress) and relay.
    let id = Uuid::new_v4().simple().to_string();
    let subjects = Subjects::new(format!("bench{id}"));
    let spec = StreamSpec::new(format!("BENCH_{id}"), subjects.clone());
    stream::ensure(&js, &spec)
        .await
        .map_err(|e| anyhow::anyhow!("creating the stream: {e}"))?;
    let result = pipeline(a, url, &c, &nats, &js, &subjects, &spec).await;
    // Its messages would otherwise stay on the server (gigabytes over a day of runs,
    // slowing the runs after).
    if let Err(e) = js.delete_stream(&spec.name).await {
        eprintln!("stream {} not deleted: {e}", spec.name);
    }
    result
}

/// (b): the command service and the relay in this process, W1 through them.
async fn pipeline(
    a: &AppendArgs,
    url: &str,
    c: &Ceilings,
    nats: &async_nats::Client,
    js: &async_nats::jetstream::Context,
    subjects: &Subjects,
    spec: &StreamSpec,
) -> anyhow::Result<()> {
    let service = crm_command_service::App::build(service_config(
        url,
        &a.nats.nats_url,
        subjects.prefix(),
        GroupCommitConfig {
            writers: a.writers,
            max_batch: 256,
        },
    ))
    .await?;
    let store = PgEventStore::connect(url, 4).await?;
    let relay = Relay::new(
        store.clone(),
        js.clone(),
        spec.clone(),
        RelayConfig::default(),
    );
    let relay_task =
        tokio::spawn(async move { relay.run(&mut SoleRelay, std::future::pending()).await });

    let ingress = match a.ingress {
        IngressKind::Nats => nats_ingress(nats, subjects),
        IngressKind::Http => Ingress::Http(
            reqwest::Client::new(),
            format!("http://{}", service.http_addr),
            None,
            ANSWER_TIMEOUT,
        ),
    };

    let mut w = Workload::new(a.customers, a.managers, a.seed);
    let started = Instant::now();
    let setup = drive(
        &ingress,
        w.setup(),
        a.in_flight,
        "setup: managers + customers registered",
    )
    .await?;
    let batches_before = append_batches();
    let main = drive(&ingress, w.main(a.commands), a.in_flight, "W1 commands").await?;
    let batches = append_batches();
    let answered = started.elapsed();

    let (stored, _) = store.head().await?;
    let published = published(js, &spec.name, stored).await?;
    let end_to_end = started.elapsed();
    relay_task.abort();
    anyhow::ensure!(
        published == stored,
        "the stream holds {published} of {stored} events"
    );

    for p in [setup, main] {
        p.print();
    }
    report(
        a,
        c,
        &EndToEnd {
            commands: w.issued(),
            events: stored,
            elapsed: end_to_end,
            answered,
            batch: (batches.0 - batches_before.0, batches.1 - batches_before.1),
        },
    );
    Ok(())
}

/// What (b) measured.
struct EndToEnd {
    commands: usize,
    events: u64,
    /// From the first command until the last event was in the stream.
    elapsed: Duration,
    /// Until the last answer.
    answered: Duration,
    /// Commands and appends of the group commit in the W1 phase.
    batch: (f64, f64),
}

/// (b) and its ratios to the ceilings.
fn report(a: &AppendArgs, c: &Ceilings, run: &EndToEnd) {
    let (commands, appends) = run.batch;
    println!(
        "    group commit in the W1 phase: {appends:.0} appends of {:.1} commands on average (set (e)'s --batch-rows by it)",
        commands / appends.max(1.0)
    );
    let (total, stored) = (run.commands, run.events);
    let rate = total as f64 / run.elapsed.as_secs_f64();
    println!(
        "(b) W1 end to end ({} ingress → store → stream, load generator included, {} in flight): {total} commands, {stored} events, all in the stream {:.2} s after the first command (answers done at {:.2} s) = {rate:.0} commands/s",
        match a.ingress {
            IngressKind::Nats => "NATS",
            IngressKind::Http => "HTTP",
        },
        a.in_flight,
        run.elapsed.as_secs_f64(),
        run.answered.as_secs_f64()
    );
    println!(
        "ratio (b)/composed = {:.2} (target ≥ 0.40); (b)/(a) = {:.2}; (b)/(c) = {:.2}; events/s (b) ÷ (d) = {:.2}",
        rate / c.composed(),
        rate / c.insert,
        rate / c.request_reply,
        stored as f64 / run.elapsed.as_secs_f64() / c.publish
    );
}

/// How many messages the stream holds once it holds `stored` (or after two minutes).
async fn published(
    js: &async_nats::jetstream::Context,
    stream: &str,
    stored: u64,
) -> anyhow::Result<u64> {
    let mut info = js
        .get_stream(stream)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let last = info
            .info()
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .state
            .last_sequence;
        if last >= stored || Instant::now() > deadline {
            return Ok(last);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

impl Phase {
    fn print(mut self) {
        println!(
            "    {:<40} {:>7} commands ({} refused) in {:>6.2} s = {:>7.0}/s; latency p50 {:.2} ms, p99 {:.2} ms, p999 {:.2} ms",
            self.name,
            self.commands,
            self.refused,
            self.elapsed.as_secs_f64(),
            self.commands as f64 / self.elapsed.as_secs_f64(),
            self.latencies.quantile(0.5).as_secs_f64() * 1e3,
            self.latencies.quantile(0.99).as_secs_f64() * 1e3,
            self.latencies.quantile(0.999).as_secs_f64() * 1e3,
        );
    }
}

/// The group-commit writer's appends so far: (commands, appends), from its histogram
/// (`crm_append_batch_size`) in this process's metrics.
fn append_batches() -> (f64, f64) {
    let text = crm_telemetry::render_metrics();
    let value = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (
        value("crm_append_batch_size_sum"),
        value("crm_append_batch_size_count"),
    )
}

/// A command service for a benchmark, in its process: the store at `url`, NATS at
/// `nats_url` under `prefix`, authentication off, the development index key, no intake.
pub(crate) fn service_config(
    url: &str,
    nats_url: &str,
    prefix: &str,
    group_commit: GroupCommitConfig,
) -> crm_command_service::Config {
    crm_command_service::Config {
        store_url: url.to_string(),
        nats_url: Some(nats_url.to_string()),
        nats: Default::default(),
        schema: Default::default(),
        subject_prefix: prefix.to_string(),
        http_addr: ([127, 0, 0, 1], 0).into(),
        db_connections: 16,
        group_commit,
        state_cache: crm_command_handler::handler::DEFAULT_STATE_CACHE,
        shutdown_grace: std::time::Duration::from_secs(5),
        index_key: crm_command_handler::handler::DEFAULT_INDEX_KEY.into(),
        intake: None,
        intake_lanes: crm_command_service::intake::DEFAULT_LANES,
        auth: None,
    }
}

/// Send `commands` keeping `in_flight` requests outstanding; measure each answer.
pub(crate) async fn drive(
    ingress: &Ingress,
    commands: Vec<Command>,
    in_flight: usize,
    name: &'static str,
) -> anyhow::Result<Phase> {
    let n = commands.len();
    eprintln!("(b) {name}: {n} commands …");
    let queue = Arc::new(Mutex::new(VecDeque::from(commands)));
    let refused = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..in_flight {
        let (queue, refused, ingress) = (queue.clone(), refused.clone(), ingress.clone());
        workers.push(tokio::spawn(async move {
            let mut lat = Latencies::default();
            loop {
                let Some(command) = queue.lock().expect("queue").pop_front() else {
                    break;
                };
                let meta = v1::CommandMeta {
                    command_id: Uuid::now_v7().to_string(),
                    actor: "service:bench".into(),
                    correlation_id: None,
                    causation_id: None,
                    issued_at: Some(Utc::now().to_rfc3339()),
                };
                let t = Instant::now();
                let outcome = ingress.send(&meta, &command).await?;
                lat.record(t.elapsed());
                match outcome {
                    Outcome::Accepted { .. } => {}
                    Outcome::Refused { code } => {
                        refused.fetch_add(1, Ordering::Relaxed);
                        // A rule's refusal is part of the workload; a request the service
                        // could not take is the benchmark's fault.
                        // (No code, or `?`: an answer that was no problem document.)
                        anyhow::ensure!(
                            !code.is_empty()
                                && code != "?"
                                && !code.starts_with("request.")
                                && code != "command.unstorable"
                                && code != "command.id_reused",
                            "{} was not taken: {code:?}",
                            command.name()
                        );
                    }
                    Outcome::Retry(why) => anyhow::bail!("{} failed: {why}", command.name()),
                }
            }
            anyhow::Ok(lat)
        }));
    }
    let mut latencies = Latencies::default();
    for w in workers {
        latencies.merge(w.await??);
    }
    Ok(Phase {
        name,
        commands: n,
        refused: refused.load(Ordering::Relaxed),
        elapsed: started.elapsed(),
        latencies,
    })
}

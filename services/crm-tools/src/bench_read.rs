//! `crm bench read`: the read side, measured in one run on local PostgreSQL and NATS.
//!
//! 1. **Projection lag under load**: W1 is written at full rate (command service and relay
//!    in this process, as in `crm bench append`) while a projector builds all three read
//!    models; the lag of every applied event (its commit in the store → its read-model
//!    commit) goes to the `crm_projector_lag_seconds` histogram, read here.
//! 2. **Projection throughput**: a second projector group builds the read models of the
//!    same stream into a fresh database from the start; events/s until caught up.
//! 3. **Ceiling**: a sequential read of the whole `events` table (every column decoded),
//!    rows/s: the fastest of three reads.
//! 4. **Rebuild**: each read model rebuilt from the event store (`crm projections
//!    rebuild`) three times, events/s of the fastest, and its ratio to the ceiling
//!    (target ≥ 0.4); also the middle rebuild's ratio to the middle read.
//! 5. **Write floor**: each rebuilt read model's rows, taken out with `COPY … TO STDOUT`,
//!    loaded again into fresh tables with `COPY … FROM STDIN` and keyed as a rebuild
//!    keys them: what writing the result alone costs here, so the best ratio a rebuild
//!    could reach if reading and folding the log were free.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use crm_bus::relay::{Relay, RelayConfig, SoleRelay};
use crm_bus::stream::{self, StreamSpec};
use crm_bus::Subjects;
use crm_command_handler::group_commit::GroupCommitConfig;
use crm_eventstore::postgres::PgEventStore;
use crm_projections::{ReadStore, PROJECTIONS};
use futures::TryStreamExt;
use sqlx::Connection;
use uuid::Uuid;

use crate::bench::drive;
use crate::workload::Workload;

#[derive(Debug, clap::Args)]
pub struct ReadArgs {
    #[command(flatten)]
    pg: crate::bench::PgServer,
    #[command(flatten)]
    nats: crate::bench::NatsServer,
    #[arg(long, default_value_t = 10_000)]
    customers: usize,
    #[arg(long, default_value_t = 100_000)]
    commands: usize,
    #[arg(long, default_value_t = 200)]
    managers: usize,
    #[arg(long, default_value_t = 32)]
    in_flight: usize,
    #[arg(long, default_value_t = 7)]
    seed: u64,
}

pub(crate) struct Databases {
    admin: sqlx::PgConnection,
    base: String,
    /// The URL's parameters (`?sslmode=…`), given to every database made.
    params: String,
    names: Vec<String>,
}

impl Databases {
    pub(crate) async fn new(pg_url: &str) -> anyhow::Result<Self> {
        let admin = sqlx::PgConnection::connect(pg_url)
            .await
            .with_context(|| format!("connecting to {}", crm_bus::connect::redacted(pg_url)))?;
        let (path, params) = match pg_url.split_once('?') {
            Some((path, params)) => (path, format!("?{params}")),
            None => (pg_url, String::new()),
        };
        let base = path[..path
            .rfind('/')
            .context("the PostgreSQL url needs a database")?]
            .to_string();
        Ok(Self {
            admin,
            base,
            params,
            names: Vec::new(),
        })
    }

    pub(crate) async fn create(&mut self, what: &str) -> anyhow::Result<String> {
        let name = format!("crm_bench_{what}_{}", Uuid::new_v4().simple());
        sqlx::query(&format!("CREATE DATABASE \"{name}\""))
            .execute(&mut self.admin)
            .await?;
        self.names.push(name.clone());
        Ok(format!("{}/{name}{}", self.base, self.params))
    }

    pub(crate) async fn drop_all(mut self) {
        if std::env::var_os("CRM_BENCH_KEEP").is_some_and(|v| v == "1") {
            for name in &self.names {
                eprintln!("kept database {}/{name} (CRM_BENCH_KEEP=1)", self.base);
            }
            return;
        }
        for name in &self.names {
            let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                .execute(&mut self.admin)
                .await;
        }
    }
}

pub async fn run(a: ReadArgs) -> anyhow::Result<()> {
    let mut dbs = Databases::new(&a.pg.pg_url).await?;
    let result = run_in(&a, &mut dbs).await;
    dbs.drop_all().await;
    result
}

/// Share of the histogram's observations at or below `bound`, and the smallest bucket
/// bound holding `q` of them, from Prometheus text.
fn histogram(text: &str, name: &str, q: f64) -> (u64, Option<f64>, Option<f64>) {
    let mut buckets: Vec<(f64, u64)> = Vec::new();
    let mut count = 0u64;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix(&format!("{name}_bucket{{le=\"")) {
            let (le, n) = rest.split_once("\"} ").unwrap_or(("", "0"));
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().unwrap_or(f64::NAN)
            };
            buckets.push((le, n.trim().parse().unwrap_or(0)));
        } else if let Some(n) = line.strip_prefix(&format!("{name}_count ")) {
            count = n.trim().parse().unwrap_or(0);
        }
    }
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let within = |bound: f64| {
        buckets
            .iter()
            .rev()
            .find(|(le, _)| *le <= bound + 1e-9)
            .map(|(_, n)| *n as f64 / count.max(1) as f64)
    };
    let q_bound = buckets
        .iter()
        .find(|(_, n)| *n as f64 >= q * count as f64)
        .map(|(le, _)| *le);
    (count, within(0.25), q_bound)
}

async fn run_in(a: &ReadArgs, dbs: &mut Databases) -> anyhow::Result<()> {
    println!(
        "machine: {} cores; PostgreSQL {}; NATS {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        a.pg.pg_url,
        a.nats.nats_url
    );
    let url = dbs.create("read").await?;
    let metrics = crm_telemetry::install_prometheus();

    // 1. W1 at full rate with a live projector.
    let id = Uuid::new_v4().simple().to_string();
    let subjects = Subjects::new(format!("bench{id}"));
    let spec = StreamSpec::new(format!("BENCH_{id}"), subjects.clone());
    let nats = async_nats::connect(&a.nats.nats_url)
        .await
        .with_context(|| format!("connecting to NATS at {}", a.nats.nats_url))?;
    let js = async_nats::jetstream::new(nats.clone());
    stream::ensure(&js, &spec)
        .await
        .map_err(|e| anyhow::anyhow!("creating the stream: {e}"))?;
    let result = phases(a, dbs, &url, &subjects, &spec, &nats, &metrics).await;
    let _ = js.delete_stream(&spec.name).await;
    let _ = js
        .delete_stream(crm_bus::subjects::dead_letter_stream(&spec.name))
        .await;
    result
}

/// What the phases share: the arguments, the written database, the stream.
struct Setting<'a> {
    a: &'a ReadArgs,
    url: &'a str,
    subjects: &'a Subjects,
    spec: &'a StreamSpec,
}

impl Setting<'_> {
    /// A projector of the stream into `read_url`, as group `group`.
    async fn projector(&self, read_url: String, group: &str) -> anyhow::Result<crm_projector::App> {
        crm_projector::App::build(crm_projector::Config {
            nats_url: self.a.nats.nats_url.clone(),
            nats: Default::default(),
            schema: Default::default(),
            read_url,
            stream: self.spec.name.clone(),
            subject_prefix: self.subjects.prefix().to_string(),
            group: group.to_string(),
            http_addr: "127.0.0.1:0".parse().expect("address"),
            batch: 256,
            ack_wait: Duration::from_secs(10),
            chaos: 0.0,
            host: "bench".into(),
            fold_every: Duration::from_secs(5),
            linger: Duration::from_millis(crm_projector::DEFAULT_LINGER_MS),
        })
        .await
    }
}

async fn phases(
    a: &ReadArgs,
    dbs: &mut Databases,
    url: &str,
    subjects: &Subjects,
    spec: &StreamSpec,
    nats: &async_nats::Client,
    metrics: &metrics_exporter_prometheus::PrometheusHandle,
) -> anyhow::Result<()> {
    let s = Setting {
        a,
        url,
        subjects,
        spec,
    };
    let (_service, store, stored) = lag_under_load(&s, nats, metrics).await?;
    let fresh = dbs.create("fresh").await?;
    let took = project_from_start(&s, &fresh, stored).await?;
    let reads = sequential_reads(url).await?;
    let ceiling = reads.fastest_rate();
    let projection_rate = stored as f64 / took.as_secs_f64();
    println!(
        "(2) projection throughput into all three read models (fresh database, from the stream): {stored} events in {:.2} s = {projection_rate:.0} events/s ({:.2} of the ceiling)",
        took.as_secs_f64(),
        projection_rate / ceiling
    );
    let read = ReadStore::connect(&fresh, 4).await?;
    rebuilds(&store, &read, &reads, stored).await?;
    // 5. What writing each rebuild's result alone costs.
    for p in PROJECTIONS {
        let (rows, took) = write_floor(&fresh, &read, p).await?;
        println!(
            "(5) write floor {:<9}: its {rows} rows loaded and keyed in {:.2} s = {:.0} events/s ({:.2} of the ceiling: the most a rebuild could reach)",
            p.name,
            took.as_secs_f64(),
            stored as f64 / took.as_secs_f64(),
            stored as f64 / took.as_secs_f64() / ceiling,
        );
    }
    Ok(())
}

/// Phase 1, W1 at full rate through the command service and the relay, with a live projector;
/// the projection lag printed. Answers the service (kept running through the later
/// phases, as it always was), the store and the number of events stored.
async fn lag_under_load(
    s: &Setting<'_>,
    nats: &async_nats::Client,
    metrics: &metrics_exporter_prometheus::PrometheusHandle,
) -> anyhow::Result<(crm_command_service::App, PgEventStore, u64)> {
    let a = s.a;
    let service = crm_command_service::App::build(crate::bench::service_config(
        s.url,
        &a.nats.nats_url,
        s.subjects.prefix(),
        GroupCommitConfig::default(),
    ))
    .await?;
    let store = PgEventStore::connect(s.url, 4).await?;
    let js = async_nats::jetstream::new(nats.clone());
    let relay = Relay::new(store.clone(), js, s.spec.clone(), RelayConfig::default());
    let relay_task =
        tokio::spawn(async move { relay.run(&mut SoleRelay, std::future::pending()).await });
    let live = s.projector(s.url.to_string(), "live").await?;
    let live_store = live.store().clone();
    let (stop_live, stopped) = tokio::sync::oneshot::channel::<()>();
    let live_task = tokio::spawn(live.run_until(async {
        let _ = stopped.await;
    }));

    eprintln!("(1) writing W1 at full rate with a live projector …");
    let mut w = Workload::new(a.customers, a.managers, a.seed);
    let started = Instant::now();
    let ingress = crate::bench::nats_ingress(nats, s.subjects);
    drive(&ingress, w.setup(), a.in_flight, "setup").await?;
    drive(&ingress, w.main(a.commands), a.in_flight, "W1").await?;
    let written = started.elapsed();
    // Every command was answered, so every event is committed. (The store's head() may
    // lag: the projector's own transactions in this cluster hold the commit-safe
    // horizon back while they run.)
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(store.pool())
        .await?;
    let stored = stored as u64;
    let caught_up = wait_applied(&live_store, stored, Duration::from_secs(300)).await?;
    let rendered = metrics.render();
    let (lag_count, within_250ms, p99_bound) =
        histogram(&rendered, "crm_projector_lag_seconds", 0.99);
    let (_, _, p50_bound) = histogram(&rendered, "crm_projector_lag_seconds", 0.5);
    println!(
        "(1) W1 written: {} commands, {stored} events in {:.1} s = {:.0} commands/s; live projector caught up {:.2} s after the last answer",
        w_issued(&w),
        written.as_secs_f64(),
        w_issued(&w) as f64 / written.as_secs_f64(),
        caught_up.as_secs_f64()
    );
    println!(
        "    projection lag (commit in the store → read-model commit), {lag_count} events: p50 ≤ {} s, p99 ≤ {} s; {:.2} % within 250 ms (target: p99 < 250 ms)",
        fmt_bound(p50_bound),
        fmt_bound(p99_bound),
        within_250ms.unwrap_or(0.0) * 100.0
    );
    let _ = stop_live.send(());
    live_task.await??;
    relay_task.abort();
    Ok((service, store, stored))
}

/// Phase 2, a second projector group over the whole stream into the fresh database `fresh`:
/// how long it takes to apply all `stored` events.
async fn project_from_start(s: &Setting<'_>, fresh: &str, stored: u64) -> anyhow::Result<Duration> {
    eprintln!("(2) projecting the whole stream into a fresh database …");
    let catch_up = s.projector(fresh.to_string(), "catchup").await?;
    let catch_store = catch_up.store().clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(catch_up.run_until(async {
        let _ = stopped.await;
    }));
    let took = wait_applied(&catch_store, stored, Duration::from_secs(900)).await?;
    let _ = stop.send(());
    task.await??;
    Ok(took)
}

/// Three sequential reads of the events table: (rows, time) each.
struct Reads(Vec<(u64, Duration)>);

impl Reads {
    fn fastest(&self) -> (u64, Duration) {
        *self.0.iter().min_by_key(|(_, t)| *t).expect("three reads")
    }

    /// Rows per second of the fastest read: the ceiling.
    fn fastest_rate(&self) -> f64 {
        let (rows, t) = self.fastest();
        rows as f64 / t.as_secs_f64()
    }
}

/// Phase 3, the ceiling: the fastest of three sequential reads of the events table (one read of
/// W1's table lasts under a second, and this VM's noise moves it by a third from one
/// read to the next; the best is the strictest ceiling to compare with).
async fn sequential_reads(url: &str) -> anyhow::Result<Reads> {
    eprintln!("(3) reading the events table sequentially …");
    let mut reads = Vec::new();
    for _ in 0..3 {
        reads.push(sequential_read(url).await?);
    }
    let reads = Reads(reads);
    let (rows, read_time) = reads.fastest();
    let all: Vec<String> = reads
        .0
        .iter()
        .map(|(n, t)| format!("{:.0}", *n as f64 / t.as_secs_f64()))
        .collect();
    println!(
        "(3) ceiling: sequential read of the events table, every column decoded, fastest of three: {rows} rows in {:.2} s = {:.0} rows/s (reads: {} rows/s)",
        read_time.as_secs_f64(),
        reads.fastest_rate(),
        all.join(", ")
    );
    Ok(reads)
}

/// Phase 4, each read model rebuilt from the store three times: the fastest beside the fastest
/// read (both sides get three draws of this VM's noise; the reads all come first, so
/// not the very same moments), and the middle ones beside each other.
async fn rebuilds(
    store: &PgEventStore,
    read: &ReadStore,
    reads: &Reads,
    stored: u64,
) -> anyhow::Result<()> {
    let ceiling = reads.fastest_rate();
    let rows = reads.fastest().0;
    let middle_read = middle(reads.0.iter().map(|(_, t)| *t).collect());
    let mut total = Duration::ZERO;
    for p in PROJECTIONS {
        eprintln!("(4) rebuilding {} three times …", p.name);
        let mut runs = Vec::new();
        for _ in 0..3 {
            let t = Instant::now();
            let r = crm_projections::rebuild::rebuild(store, read, p, &mut |_| {}).await?;
            runs.push((t.elapsed(), r));
        }
        let (took, r) = runs.iter().min_by_key(|(t, _)| *t).expect("three rebuilds");
        total += *took;
        let events = r.events_read as f64;
        let rates: Vec<String> = runs
            .iter()
            .map(|(t, _)| format!("{:.0}", events / t.as_secs_f64()))
            .collect();
        let middle_rebuild = middle(runs.iter().map(|(t, _)| *t).collect());
        println!(
            "(4) rebuild {:<9}: {} events in {:.2} s = {:.0} events/s, fastest of three ({} events/s) = {:.2} of the ceiling (target ≥ 0.40; middle run ÷ middle read: {:.2}); fill {:.2} s (keys {:.2} s), switch-over {:.3} s",
            p.name,
            r.events_read,
            took.as_secs_f64(),
            events / took.as_secs_f64(),
            rates.join(", "),
            events / took.as_secs_f64() / ceiling,
            (events / middle_rebuild.as_secs_f64()) / (rows as f64 / middle_read.as_secs_f64()),
            r.fill_seconds,
            r.keys_seconds,
            r.switch_seconds
        );
    }
    println!(
        "(4) fastest rebuilds of all three: {:.2} s for {stored} events",
        total.as_secs_f64()
    );
    Ok(())
}

/// The middle one of three (or more) durations.
fn middle(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

/// Load `p`'s live rows again into fresh tables (`COPY` out, untimed; `COPY` in, then the
/// keys and indexes a rebuild builds, built at once): rows written and the time taken.
async fn write_floor(
    url: &str,
    read: &ReadStore,
    p: crm_projections::schema::Projection,
) -> anyhow::Result<(u64, Duration)> {
    let ReadStore::Postgres(pool) = read else {
        anyhow::bail!("the write floor is measured on PostgreSQL")
    };
    let mut conn = sqlx::PgConnection::connect(url).await?;
    let mut dumps = Vec::new();
    for t in p.table_names() {
        let mut out = conn.copy_out_raw(&format!("COPY {t} TO STDOUT")).await?;
        let mut bytes = Vec::new();
        while let Some(chunk) = out.try_next().await? {
            bytes.extend_from_slice(&chunk);
        }
        drop(out);
        dumps.push((t, bytes));
    }
    let rows: u64 = dumps
        .iter()
        .map(|(_, b)| b.iter().filter(|c| **c == b'\n').count() as u64)
        .sum();
    let suffix = "_floor";
    let started = Instant::now();
    for (t, bytes) in &dumps {
        sqlx::query(&format!("CREATE TABLE {t}{suffix} (LIKE {t})"))
            .execute(&mut conn)
            .await?;
        let mut copy = conn
            .copy_in_raw(&format!("COPY {t}{suffix} FROM STDIN"))
            .await?;
        for chunk in bytes.chunks(1 << 20) {
            copy.send(chunk).await?;
        }
        copy.finish().await?;
    }
    let keys: Vec<String> = dumps
        .iter()
        .flat_map(|(t, _)| p.table_keys_ddl(t, suffix))
        .collect();
    for r in futures::future::join_all(keys.iter().map(|k| sqlx::query(k).execute(pool))).await {
        r?;
    }
    let took = started.elapsed();
    for (t, _) in &dumps {
        sqlx::query(&format!("DROP TABLE {t}{suffix}"))
            .execute(&mut conn)
            .await?;
    }
    Ok((rows, took))
}

fn w_issued(w: &Workload) -> usize {
    w.issued()
}

fn fmt_bound(b: Option<f64>) -> String {
    match b {
        Some(b) if b.is_finite() => format!("{b}"),
        Some(_) => "∞".into(),
        None => "?".into(),
    }
}

/// Wait until the read models in `read` hold `n` applied events; returns when.
async fn wait_applied(read: &ReadStore, n: u64, limit: Duration) -> anyhow::Result<Duration> {
    let started = Instant::now();
    loop {
        let applied: i64 = read
            .checkpoints()
            .await?
            .iter()
            .map(|c| c.events_applied)
            .sum();
        if applied as u64 >= n {
            return Ok(started.elapsed());
        }
        anyhow::ensure!(
            started.elapsed() < limit,
            "only {applied} of {n} events projected after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub(crate) async fn sequential_read(url: &str) -> anyhow::Result<(u64, Duration)> {
    let mut conn = sqlx::PgConnection::connect(url).await?;
    let started = Instant::now();
    let mut rows = sqlx::query(
        "SELECT transaction_id::text::bigint AS tx, position, stream_id, stream_version, event_id, event_type, \
         schema_version, payload, command_id, correlation_id, causation_id, actor, occurred_at, recorded_at \
         FROM events ORDER BY transaction_id, position",
    )
    .fetch(&mut conn);
    let mut n = 0u64;
    while let Some(row) = rows.try_next().await? {
        use sqlx::Row;
        let _: i64 = row.try_get("position")?;
        let _: String = row.try_get("stream_id")?;
        let _: serde_json::Value = row.try_get("payload")?;
        let _: Uuid = row.try_get("event_id")?;
        let _: chrono::DateTime<chrono::Utc> = row.try_get("recorded_at")?;
        n += 1;
    }
    Ok((n, started.elapsed()))
}

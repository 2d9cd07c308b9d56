//! `crm bench analytics`: how long an analyst waits for the funnel and the KPIs over a
//! book of W2's size, without the hours W2 takes through the write path.
//!
//! 1. **Seed**: a seeded random book (`crm_projections::testing::Book`: 1,000 managers in
//!    teams of ten over four regions, 1,000,000 customers, twelve steps per customer:
//!    about 12 million events of every kind the read models use) spread over a year, is
//!    appended to a fresh event store directly (group commits of 512 events from four
//!    writers, streams split between them), not through the command service: the
//!    figures below are about reading, so how the events were decided does not matter.
//! 2. **Read models**: ownership and analytics rebuilt from the store
//!    (`crm projections rebuild`, the path a deployment takes for an existing store).
//! 3. **Questions**, asked of the read models in this process, `--samples` times each
//!    (the query service adds its JSON or CSV on top): KPIs per manager and local day
//!    for the book's last month; per team and month for the whole year; customers per
//!    stage now and as of random instants, for every slice, both from the facts (the
//!    grouping queries of `aggregate/`) and from the kept funnel (`kept.rs`), checked
//!    equal; transitions per week; conversion; time in stage. p50, p99 and max.
//!
//! `--store` / `--read` reuse a seeded store and its read models (`CRM_BENCH_KEEP=1`
//! keeps them and prints their URLs).

use std::time::Instant;

use anyhow::Context as _;
use chrono::{DateTime, TimeZone, Utc};
use crm_eventstore::postgres::PgEventStore;
use crm_eventstore::{Append, AppendRequest, CommandMeta, ExpectedVersion, NewEvent};
use crm_projections::calendar::{Calendar, Granularity};
use crm_projections::funnel::Slice;
use crm_projections::kpi::Level;
use crm_projections::testing::{Book, BookShape};
use crm_projections::ReadStore;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use uuid::Uuid;

use crate::bench_read::Databases;
use crate::stats::Latencies;

#[derive(Debug, clap::Args)]
pub struct AnalyticsArgs {
    #[command(flatten)]
    pg: crate::bench::PgServer,
    #[arg(long, default_value_t = 1_000_000)]
    customers: usize,
    #[arg(long, default_value_t = 1_000)]
    managers: usize,
    /// The span of the book.
    #[arg(long, default_value_t = 365)]
    days: i64,
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Times each question is asked.
    #[arg(long, default_value_t = 20)]
    samples: usize,
    /// An event store seeded by an earlier run (skips seeding).
    #[arg(long)]
    store: Option<String>,
    /// Read models built by an earlier run from `--store` (skips the rebuilds).
    #[arg(long, requires = "store")]
    read: Option<String>,
    /// The time zone whose days the KPIs are counted in.
    #[arg(long, default_value = "Asia/Shanghai")]
    time_zone: Calendar,
    /// Which questions: kpis, stages, funnel (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "kpis,stages,funnel")]
    questions: Vec<String>,
    /// Times each KPI question is asked of the facts (the slow way), whose answer the
    /// ledger's must equal; 0: the ledger alone, unchecked (for a profile).
    #[arg(long, default_value_t = 5)]
    facts_samples: usize,
}

/// The book starts here (a year of it ends in early 2027).
fn book_start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
}

pub async fn run(a: AnalyticsArgs) -> anyhow::Result<()> {
    let mut dbs = Databases::new(&a.pg.pg_url).await?;
    let result = run_in(&a, &mut dbs).await;
    dbs.drop_all().await;
    result
}

async fn run_in(a: &AnalyticsArgs, dbs: &mut Databases) -> anyhow::Result<()> {
    let shape = BookShape {
        customers: a.customers,
        managers: a.managers,
        team_size: 10,
        days: a.days,
    };
    let store_url = match &a.store {
        Some(url) => url.clone(),
        None => {
            let url = dbs.create("analytics_store").await?;
            seed(&url, a.seed, shape).await?;
            url
        }
    };
    let store = PgEventStore::connect(&store_url, 4).await?;
    let read_url = match &a.read {
        Some(url) => url.clone(),
        None => {
            let url = dbs.create("analytics_read").await?;
            build_read_models(&store, &url).await?;
            url
        }
    };
    // A question from the facts runs eight queries at once.
    let read = ReadStore::connect(&read_url, 8).await?;
    questions(&read, a).await
}

/// Append the book to the store at `url`: four writers, each owning the streams that
/// hash to it, group commits of 512 single-event appends.
async fn seed(url: &str, seed: u64, shape: BookShape) -> anyhow::Result<()> {
    const WRITERS: usize = 4;
    let store = PgEventStore::connect(url, WRITERS as u32 + 1).await?;
    let started = Instant::now();
    let mut book = Book::new(seed, shape, book_start());
    let (mut sent, mut next_report) = (0usize, 1_000_000usize);
    let mut writers: Vec<tokio::sync::mpsc::Sender<Vec<AppendRequest>>> = Vec::new();
    let mut tasks = Vec::new();
    for _ in 0..WRITERS {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<AppendRequest>>(4);
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            while let Some(batch) = rx.recv().await {
                for outcome in store.append_batch(batch).await {
                    outcome.map_err(|e| anyhow::anyhow!("append: {e}"))?;
                }
            }
            Ok::<_, anyhow::Error>(())
        }));
        writers.push(tx);
    }
    let mut pending: Vec<Vec<AppendRequest>> = (0..WRITERS).map(|_| Vec::new()).collect();
    while let Some(page) = book.next_page(50_000) {
        for e in page {
            let w = stream_writer(&e.stream_id, WRITERS);
            pending[w].push(append_request(e));
            if pending[w].len() == 512 {
                writers[w]
                    .send(std::mem::take(&mut pending[w]))
                    .await
                    .context("a writer stopped")?;
            }
            sent += 1;
        }
        if sent >= next_report {
            let rate = sent as f64 / started.elapsed().as_secs_f64();
            eprintln!("(1) seeding: {sent} events appended ({rate:.0}/s)");
            next_report += 1_000_000;
        }
    }
    for (w, batch) in pending.into_iter().enumerate() {
        if !batch.is_empty() {
            writers[w].send(batch).await.context("a writer stopped")?;
        }
    }
    drop(writers);
    for t in tasks {
        t.await??;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "(1) seeded: {sent} events in {secs:.0} s = {:.0} events/s ({} customers, {} managers, {} days)",
        sent as f64 / secs,
        shape.customers,
        shape.managers,
        shape.days
    );
    Ok(())
}

fn stream_writer(stream: &str, writers: usize) -> usize {
    stream
        .bytes()
        .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b.into()))
        % writers
}

/// One stored event of the book as the append that stores it, dated when the book says.
fn append_request(e: crm_eventstore::RecordedEvent) -> AppendRequest {
    let command_id = Uuid::new_v4();
    let meta = CommandMeta {
        command_id,
        command_type: "seed".into(),
        correlation_id: command_id,
        causation_id: None,
        actor: e.metadata.actor,
        issued_at: e.metadata.occurred_at,
        fingerprint: format!("seed-{command_id}"),
    };
    AppendRequest::new(meta).write(
        e.stream_id,
        ExpectedVersion::Exact(e.stream_version - 1),
        vec![NewEvent {
            event_id: e.event_id,
            event_type: e.event_type,
            schema_version: 1,
            payload: e.payload,
        }],
    )
}

async fn build_read_models(store: &PgEventStore, url: &str) -> anyhow::Result<()> {
    let read = ReadStore::connect(url, 4).await?;
    for p in [
        crm_projections::schema::OWNERSHIP,
        crm_projections::schema::ANALYTICS,
    ] {
        let r = crm_projections::rebuild::rebuild(store, &read, p, &mut |_| {}).await?;
        println!(
            "(2) rebuilt {:<9}: {} events in {:.1} s",
            r.projection,
            r.events_read,
            r.fill_seconds + r.switch_seconds
        );
    }
    Ok(())
}

/// Time `ask` `n` times.
async fn timed<F, Fut, T>(n: usize, mut ask: F) -> anyhow::Result<(Latencies, T)>
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let mut l = Latencies::default();
    let mut last = None;
    for i in 0..n {
        let t = Instant::now();
        last = Some(ask(i).await?);
        l.record(t.elapsed());
    }
    Ok((l, last.context("no samples")?))
}

fn report(what: &str, rows: usize, l: &mut Latencies) {
    println!("    {what:<62} {:>7} rows  {}", rows, l.summary());
}

async fn questions(read: &ReadStore, a: &AnalyticsArgs) -> anyhow::Result<()> {
    let start = book_start().timestamp_micros();
    let end = start + a.days * 86_400_000_000;
    println!(
        "(3) questions ({} each; {} days; p50 / p99 / max):",
        a.samples, a.time_zone
    );
    let asked = |q: &str| a.questions.iter().any(|x| x == q);
    if asked("kpis") {
        kpi_questions(read, a, (start, end)).await?;
    }
    if asked("stages") {
        stage_questions(read, a, (start, end)).await?;
    }
    if asked("funnel") {
        funnel_questions(read, a, end).await?;
    }
    Ok(())
}

/// KPIs per manager and day for the book's last 30 days (with "now" after the last fact,
/// and mid-afternoon of its last day), per team and month for all of it: from the facts
/// and from the KPI ledger, checked equal.
async fn kpi_questions(
    read: &ReadStore,
    a: &AnalyticsArgs,
    (start, end): (i64, i64),
) -> anyhow::Result<()> {
    let cal = a.time_zone;
    let ledger = read.ledger_answers(&cal).await?;
    println!("    (KPI ledger complete and counting {cal} days: {ledger})");
    // "Now" is the end of the book: every fact is before it, as in a live system.
    let month = (end - 30 * 86_400_000_000, end);
    let questions = [
        (
            "KPIs per manager and day, last 30 days",
            Level::Manager,
            Granularity::Day,
            month,
            end,
        ),
        (
            "KPIs per manager and day, last 30 days, now 15:00 of the last",
            Level::Manager,
            Granularity::Day,
            month,
            end - 9 * 3_600_000_000,
        ),
        (
            "KPIs per team and month, the whole year",
            Level::Team,
            Granularity::Month,
            (start, end),
            end,
        ),
    ];
    for (what, level, g, (from, to), now) in questions {
        // `--facts-samples 0`: the ledger alone (for a profile), not checked.
        let facts = match a.facts_samples {
            0 => None,
            n => {
                let (mut l, facts) = timed(n, |_| async {
                    Ok(read
                        .kpis_from_facts(level, (&cal, g), from, to, now)
                        .await?)
                })
                .await?;
                report(&format!("{what}, from the facts"), facts.len(), &mut l);
                Some(facts)
            }
        };
        if !ledger {
            continue;
        }
        let (mut l, kept) = timed(a.samples, |_| async {
            Ok(read.kpis_kept(level, (&cal, g), from, to, now).await?)
        })
        .await?;
        report(&format!("{what}, kept"), kept.len(), &mut l);
        if let Some(facts) = facts {
            anyhow::ensure!(kept == facts, "{what}: the ledger and the facts differ");
        }
    }
    Ok(())
}

/// Customers per stage now and as of random instants, by every slice: from the facts
/// and kept, checked equal.
async fn stage_questions(
    read: &ReadStore,
    a: &AnalyticsArgs,
    (start, end): (i64, i64),
) -> anyhow::Result<()> {
    let n = a.samples;
    let slices = [
        Slice::All,
        Slice::Region,
        Slice::FirstTouchChannel,
        Slice::CustomerType,
        Slice::ValueTier,
        Slice::Team,
    ];
    let mut rng = SmallRng::seed_from_u64(a.seed);
    let instants: Vec<i64> = (0..n).map(|_| rng.gen_range(start..end)).collect();
    let kept = read.kept_complete().await?;
    println!("    (kept aggregates complete: {kept})");
    for slice in slices {
        let (mut l, rows) = timed(n, |_| async {
            Ok(read.stage_counts_from_facts(None, slice).await?)
        })
        .await?;
        report(
            &format!("stages now by {slice:?}, from the facts"),
            rows.len(),
            &mut l,
        );
        let (mut l, kept_rows) = timed(n, |_| async {
            Ok(read.stage_counts_kept(None, slice).await?)
        })
        .await?;
        report(
            &format!("stages now by {slice:?}, kept"),
            kept_rows.len(),
            &mut l,
        );
        anyhow::ensure!(!kept || rows == kept_rows, "stages now by {slice:?} differ");
        let (mut l, rows) = timed(n, |i| {
            let at = instants[i];
            async move { Ok(read.stage_counts_from_facts(Some(at), slice).await?) }
        })
        .await?;
        report(
            &format!("stages as of an instant by {slice:?}, from the facts"),
            rows.len(),
            &mut l,
        );
        let (mut l, kept_rows) = timed(n, |i| {
            let at = instants[i];
            async move { Ok(read.stage_counts_kept(Some(at), slice).await?) }
        })
        .await?;
        report(
            &format!("stages as of an instant by {slice:?}, kept"),
            kept_rows.len(),
            &mut l,
        );
        // Both answered the last instant last.
        anyhow::ensure!(
            !kept || rows == kept_rows,
            "stages as of an instant by {slice:?} differ"
        );
    }
    Ok(())
}

/// Transitions per week, conversion, time in stage (grouped from the facts).
async fn funnel_questions(read: &ReadStore, a: &AnalyticsArgs, end: i64) -> anyhow::Result<()> {
    let (cal, n) = (a.time_zone, a.samples);
    let quarter = (end - 91 * 86_400_000_000, end);
    for slice in [Slice::All, Slice::Team] {
        let (mut l, rows) = timed(n.min(5), |_| async {
            Ok(read
                .stage_transitions(quarter.0, quarter.1, (&cal, Granularity::Week), slice)
                .await?)
        })
        .await?;
        report(
            &format!("transitions per week, last 13 weeks, by {slice:?}"),
            rows.len(),
            &mut l,
        );
        let (mut l, rows) =
            timed(n.min(5), |_| async { Ok(read.conversion(slice).await?) }).await?;
        report(&format!("conversion, by {slice:?}"), rows.len(), &mut l);
    }
    let (mut l, rows) = timed(n.min(5), |_| async {
        Ok(read.time_in_stage(Slice::All).await?)
    })
    .await?;
    report("median time in stage", rows.len(), &mut l);
    Ok(())
}

//! `crm bench audit`: ownership replay of one customer as of an instant, with a large
//! log stored (default 1,000,000 events over 100,000 customers, interleaved as commands
//! arrive), against PostgreSQL. Prints p50/p99/max of the whole answer
//! (`crm_audit::customer_history` + `owner_as_of`) beside the floor of reading the
//! customer's stream alone. Then seals the whole log with global checkpoints and
//! verifies it (`crm audit checkpoint`, `crm audit verify`), in events/s beside the
//! ceiling of reading the log through the store in the same run.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use chrono::{DateTime, TimeZone, Utc};
use crm_domain::customer::*;
use crm_domain::*;
use crm_eventstore::postgres::PgEventStore;
use crm_eventstore::{Append, AppendRequest, CommandMeta, ExpectedVersion, Log, NewEvent, Streams};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use uuid::Uuid;

use crate::bench_read::Databases;
use crate::stats::Latencies;

#[derive(Debug, clap::Args)]
pub struct AuditArgs {
    #[command(flatten)]
    pg: crate::bench::PgServer,
    /// Events to store.
    #[arg(long, default_value_t = 1_000_000)]
    events: usize,
    /// Customers they belong to.
    #[arg(long, default_value_t = 100_000)]
    customers: usize,
    /// Replays to time.
    #[arg(long, default_value_t = 2_000)]
    samples: usize,
    #[arg(long, default_value_t = 7)]
    seed: u64,
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
}

/// The `round`-th event of customer `c`: registered, assigned, then contacts with an
/// ownership change every fourth event (transfer, release, claim).
fn event(c: CustomerId, round: usize, managers: &[ManagerId], rng: &mut SmallRng) -> CustomerEvent {
    let m = managers[rng.gen_range(0..managers.len())];
    let at = t0() + chrono::Duration::hours(round as i64 * 24 + rng.gen_range(0..24));
    match round {
        0 => CustomerEvent::CustomerRegistered(CustomerRegistered {
            customer_id: c,
            customer_type: CustomerType::Individual,
            display_name: "Wang Fang".into(),
            phone: Some(format!("+86139{:08}", rng.gen_range(0..99_999_999))),
            email: None,
            registration_number: None,
            region: "east".parse().expect("region"),
            branch: None,
            first_touch_channel: FirstTouchChannel::Branch,
            industry: None,
            product_interest: None,
            consents: Consents::default(),
            stage: LifecycleStage::Lead,
            value_tier: ValueTier::Low,
            aum_minor: None,
            registered_at: at,
        }),
        1 => CustomerEvent::OwnerAssigned(OwnerAssigned {
            customer_id: c,
            manager_id: m,
            team: "east-1".parse().expect("team"),
            region: "east".parse().expect("region"),
            previous_owner: None,
            reason: "walk-in".into(),
            assigned_by: Actor::person("lead"),
            at: Some(at),
            policy: None,
        }),
        r if r % 4 == 1 => CustomerEvent::OwnershipTransferred(OwnershipTransferred {
            customer_id: c,
            from_manager: managers[0],
            to_manager: m,
            to_team: "east-1".parse().expect("team"),
            to_region: "east".parse().expect("region"),
            reason: "rebalancing".into(),
            transferred_by: Actor::person("lead"),
            at: Some(at),
        }),
        _ => CustomerEvent::ContactRecorded(ContactRecorded {
            customer_id: c,
            contact_id: ContactId::new(Uuid::from_u128(rng.gen())),
            manager_id: m,
            by_owner: true,
            channel: ContactChannel::Phone,
            direction: Direction::Outbound,
            outcome: ContactOutcome::Reached,
            summary: Some("follow-up".into()),
            contacted_at: at,
            next_follow_up_at: None,
        }),
    }
}

fn request(c: CustomerId, version: u64, e: &CustomerEvent) -> AppendRequest {
    let command_id = Uuid::now_v7();
    AppendRequest::new(CommandMeta {
        command_id,
        command_type: "bench".into(),
        correlation_id: command_id,
        causation_id: None,
        actor: "person:bench".into(),
        issued_at: t0() + chrono::Duration::hours(version as i64 * 24),
        fingerprint: command_id.to_string(),
    })
    .write(
        format!("customer-{c}"),
        if version == 1 {
            ExpectedVersion::NoStream
        } else {
            ExpectedVersion::Exact(version - 1)
        },
        vec![NewEvent {
            event_id: Uuid::now_v7(),
            event_type: e.event_type().to_string(),
            schema_version: CustomerEvent::SCHEMA_VERSION,
            payload: e.payload(),
        }],
    )
}

pub async fn run(a: AuditArgs) -> anyhow::Result<()> {
    let mut dbs = Databases::new(&a.pg.pg_url).await?;
    let result = run_in(&a, &mut dbs).await;
    dbs.drop_all().await;
    result
}

async fn run_in(a: &AuditArgs, dbs: &mut Databases) -> anyhow::Result<()> {
    anyhow::ensure!(
        a.customers > 0 && a.events >= a.customers,
        "need events ≥ customers > 0"
    );
    let url = dbs.create("audit").await?;
    let store = PgEventStore::connect(&url, 8)
        .await
        .with_context(|| format!("opening {}", crm_bus::connect::redacted(&url)))?;
    println!(
        "machine: {} cores; PostgreSQL {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        a.pg.pg_url
    );
    let mut rng = SmallRng::seed_from_u64(a.seed);
    let customers: Vec<CustomerId> = (0..a.customers)
        .map(|_| CustomerId::new(Uuid::from_u128(rng.gen())))
        .collect();
    let managers: Vec<ManagerId> = (0..200)
        .map(|_| ManagerId::new(Uuid::from_u128(rng.gen())))
        .collect();
    let rounds = a.events.div_ceil(a.customers);

    // Fill: round by round, every customer gets its next event, so each customer's
    // events lie far apart in the log, as when commands arrive over months.
    let started = Instant::now();
    let mut stored = 0usize;
    'fill: for round in 0..rounds {
        for chunk in customers.chunks(1_000) {
            let batch: Vec<AppendRequest> = chunk
                .iter()
                .take(a.events - stored)
                .map(|c| request(*c, round as u64 + 1, &event(*c, round, &managers, &mut rng)))
                .collect();
            let n = batch.len();
            for r in store.append_batch(batch).await {
                r.map_err(|e| anyhow::anyhow!("filling the store: {e}"))?;
            }
            stored += n;
            eprint!(
                "\r  stored {stored} of {} events ({:.0} events/s)",
                a.events,
                stored as f64 / started.elapsed().as_secs_f64()
            );
            if stored >= a.events {
                break 'fill;
            }
        }
    }
    eprintln!();
    println!(
        "stored {stored} events of {} customers ({rounds} each at most) in {:.1} s",
        a.customers,
        started.elapsed().as_secs_f64()
    );
    sqlx::query("ANALYZE events")
        .execute(store.pool())
        .await
        .context("ANALYZE")?;

    // Time the answers, one at a time as an auditor asks them.
    let mut floor = Latencies::default();
    let mut replay = Latencies::default();
    let mut owned = 0usize;
    for _ in 0..a.samples {
        let c = customers[rng.gen_range(0..customers.len())];
        let at = t0() + chrono::Duration::hours(rng.gen_range(0..rounds as i64 * 24));
        let t = Instant::now();
        store.read_stream(&format!("customer-{c}"), 0).await?;
        floor.record(t.elapsed());
        let t = Instant::now();
        let entries = crm_audit::customer_history(&store, c).await?;
        let answer = crm_audit::owner_as_of(&entries, at);
        replay.record(t.elapsed());
        owned += usize::from(answer.owner.is_some());
    }
    println!("floor: read one customer's stream: {}", floor.summary());
    println!(
        "ownership replay as of an instant ({} samples, {owned} owned at the instant): {} (target: p99 < 10 ms)",
        a.samples,
        replay.summary()
    );

    // Tamper evidence over the whole log.
    let rate = |n: u64, d: Duration| n as f64 / d.as_secs_f64();
    let t = Instant::now();
    let sealed =
        crm_audit::seal_pending(&store, crm_audit::DEFAULT_EVENTS_PER_CHECKPOINT, &mut |c| {
            eprint!("\r  checkpoint #{} through {}", c.seq, c.through)
        })
        .await?;
    let seal_time = t.elapsed();
    eprintln!();
    println!(
        "seal: {} global checkpoints over {} events in {:.1} s = {:.0} events/s",
        sealed.len(),
        sealed.iter().map(|c| c.event_count).sum::<u64>(),
        seal_time.as_secs_f64(),
        rate(sealed.iter().map(|c| c.event_count).sum::<u64>(), seal_time)
    );
    // Read right before verify, so both find the same pages in memory.
    let t = Instant::now();
    let mut after = crm_eventstore::LogPosition::START;
    let mut read = 0u64;
    loop {
        let page = store.read_all(after, 5_000).await?;
        let Some(last) = page.last() else { break };
        after = last.log_position;
        read += page.len() as u64;
    }
    let read_time = t.elapsed();
    println!(
        "ceiling: read the whole log through the store (pages of 5,000): {read} events in {:.1} s = {:.0} events/s",
        read_time.as_secs_f64(),
        rate(read, read_time)
    );
    let t = Instant::now();
    let report = crm_audit::verify(&store, &Default::default(), &mut |n| {
        eprint!("\r  verified {n} events")
    })
    .await?;
    let verify_time = t.elapsed();
    eprintln!();
    anyhow::ensure!(report.ok(), "verify found problems: {:?}", report.problems);
    println!(
        "verify: {} events in {} streams, {} checkpoints, OK in {:.1} s = {:.0} events/s ({:.0} % of the read ceiling)",
        report.events,
        report.streams,
        report.checkpoints,
        verify_time.as_secs_f64(),
        rate(report.events, verify_time),
        100.0 * read_time.as_secs_f64() / verify_time.as_secs_f64()
    );

    // The whole log exported to a file, and verified offline from it.
    let file =
        std::env::temp_dir().join(format!("crm-bench-export-{}.db", Uuid::new_v4().simple()));
    let t = Instant::now();
    let manifest = crm_audit::export(&store, "bench", None, None, &file, &mut |c, n| {
        eprint!("\r  exported checkpoint #{}, {n} events", c.seq)
    })
    .await?;
    let export_time = t.elapsed();
    eprintln!();
    let size = std::fs::metadata(&file).map_or(0, |m| m.len());
    let offline = crm_eventstore::sqlite::SqliteEventStore::open(&file).await?;
    let t = Instant::now();
    let report = crm_audit::verify(&offline, &Default::default(), &mut |_| {}).await?;
    let offline_time = t.elapsed();
    drop(offline);
    for suffix in ["", "-wal", "-shm"] {
        let mut p = file.clone().into_os_string();
        p.push(suffix);
        let _ = std::fs::remove_file(p);
    }
    anyhow::ensure!(
        report.ok(),
        "the export does not verify: {:?}",
        report.problems
    );
    println!(
        "export: {} events to an SQLite file of {:.0} MB in {:.1} s = {:.0} events/s; verified offline in {:.1} s = {:.0} events/s",
        manifest.events,
        size as f64 / 1e6,
        export_time.as_secs_f64(),
        rate(manifest.events, export_time),
        offline_time.as_secs_f64(),
        rate(report.events, offline_time)
    );
    Ok(())
}

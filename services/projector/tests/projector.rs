//! The projector against real NATS JetStream and PostgreSQL: events published as the
//! relay publishes them end up in the read models exactly once, whichever instances
//! consume them; poison goes to the dead-letter stream while the rest flows.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::Duration as Span;
use crm_bus::envelope::{body_for, headers_for};
use crm_bus::testing::TestStream;
use crm_eventstore::testing::{Rng, TestDatabase};
use crm_eventstore::RecordedEvent;
use crm_projections::calendar::{Calendar, Granularity};
use crm_projections::facts::Facts;
use crm_projections::funnel::{self, Slice};
use crm_projections::kpi::{self, Level};
use crm_projections::testing::{t0, Log};
use crm_projections::ReadStore;
use crm_projector::{App, Config};
use tokio::sync::oneshot;
use uuid::Uuid;

struct Running {
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    health: std::sync::Arc<crm_projector::health::Health>,
}

impl Running {
    async fn stop(mut self) {
        let _ = self.stop.take().expect("running").send(());
        self.task.await.unwrap().unwrap();
    }
}

async fn start(stream: &TestStream, read_url: &str, group: &str) -> Running {
    let app = App::build(Config {
        nats_url: crm_bus::testing::nats_url(),
        nats: Default::default(),
        schema: Default::default(),
        read_url: read_url.to_string(),
        stream: stream.spec.name.clone(),
        subject_prefix: stream.spec.subjects.prefix().to_string(),
        group: group.to_string(),
        http_addr: "127.0.0.1:0".parse().unwrap(),
        batch: 64,
        ack_wait: Duration::from_secs(5),
        chaos: 0.0,
        host: "projector".into(),
        // Often, so folds run among the partitions' batches.
        fold_every: Duration::from_millis(50),
        linger: Duration::from_millis(crm_projector::DEFAULT_LINGER_MS),
    })
    .await
    .unwrap();
    let health = app.health();
    let (tx, rx) = oneshot::channel();
    let task = tokio::spawn(app.run_until(async {
        let _ = rx.await;
    }));
    Running {
        stop: Some(tx),
        task,
        health,
    }
}

/// A message that is not an event at all, on the customer's partition.
async fn publish_garbage(stream: &TestStream, c: &impl std::fmt::Display) {
    let subject = stream
        .spec
        .subjects
        .event(&format!("customer-{c}"), "Garbage");
    stream
        .js
        .publish(subject, "not json".into())
        .await
        .unwrap()
        .await
        .unwrap();
}

async fn publish(stream: &TestStream, events: &[RecordedEvent]) {
    let mut acks = Vec::new();
    for e in events {
        let subject = stream.spec.subjects.event(&e.stream_id, &e.event_type);
        acks.push(
            stream
                .js
                .publish_with_headers(subject, headers_for(e), body_for(e))
                .await
                .unwrap(),
        );
    }
    for a in acks {
        a.await.unwrap();
    }
}

/// A seeded random day: managers, customers, and ownership moves; returns the log and
/// the owner of each customer at the end, folded here independently of the projector.
fn workload(seed: u64, customers: usize) -> (Log, BTreeMap<String, Option<String>>) {
    let mut rng = Rng::new(seed);
    let mut log = Log::default();
    let managers: Vec<String> = (0..12).map(|_| Uuid::new_v4().to_string()).collect();
    for (i, m) in managers.iter().enumerate() {
        log.manager(m, &format!("team-{}", i % 3));
    }
    let mut owners: BTreeMap<String, Option<String>> = BTreeMap::new();
    let ids: Vec<String> = (0..customers).map(|_| Uuid::new_v4().to_string()).collect();
    for (i, c) in ids.iter().enumerate() {
        log.customer(c, t0() + Span::seconds(i as i64));
        owners.insert(c.clone(), None);
    }
    for step in 0..customers * 6 {
        let c = &ids[rng.below(ids.len() as u64) as usize];
        let m = managers[rng.below(managers.len() as u64) as usize].clone();
        let at = t0() + Span::minutes(10 + step as i64);
        let owner = owners[c].clone();
        match (owner, rng.below(4)) {
            (None, 0 | 1) => {
                log.assign(c, &m, at);
                owners.insert(c.clone(), Some(m));
            }
            (None, _) => {
                log.claim(c, &m, at);
                owners.insert(c.clone(), Some(m));
            }
            (Some(o), 0) => {
                log.release(c, &o, at);
                owners.insert(c.clone(), None);
            }
            (Some(o), 1) if o != m => {
                log.transfer(c, &o, &m, at);
                owners.insert(c.clone(), Some(m));
            }
            (Some(o), _) => log.contact(c, &o, at),
        }
    }
    (log, owners)
}

async fn wait_applied(store: &ReadStore, n: i64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let applied: i64 = store
            .checkpoints()
            .await
            .unwrap()
            .iter()
            .map(|c| c.events_applied)
            .sum();
        if applied >= n {
            assert_eq!(applied, n, "applied more events than were published");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "only {applied} of {n} events applied after 60 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The kept funnel and KPI ledger, counted by the partitions' transactions into stripes
/// of their own and folded by each instance meanwhile, answer what the facts give (the
/// single instance's, for both).
async fn counters_answer_what_the_facts_give(store: &ReadStore, facts: &Facts) {
    let cal: Calendar = "Asia/Shanghai".parse().unwrap();
    let (from, to) = (t0() - Span::days(1), t0() + Span::days(3));
    let (from, to) = (from.timestamp_micros(), to.timestamp_micros());
    for slice in [Slice::All, Slice::Team] {
        assert_eq!(
            store.stage_counts(None, slice).await.unwrap(),
            funnel::stage_counts(facts, None, slice),
            "customers per stage by {slice:?}"
        );
    }
    let days = (&cal, Granularity::Day);
    assert_eq!(
        store
            .kpis_kept(Level::Manager, days, from, to, to)
            .await
            .unwrap(),
        kpi::kpis(facts, Level::Manager, days, from, to, to),
        "KPIs per manager and day"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_build_what_one_builds_and_share_the_partitions() {
    let stream = TestStream::new().await;
    crm_bus::stream::ensure(&stream.js, &stream.spec)
        .await
        .unwrap();
    let (two_db, one_db) = (TestDatabase::create().await, TestDatabase::create().await);
    let (log, owners) = workload(crm_eventstore::conformance::seed(), 300);

    let a1 = start(&stream, &two_db.url, "pair").await;
    let a2 = start(&stream, &two_db.url, "pair").await;
    let b = start(&stream, &one_db.url, "solo").await;

    // Half now, half later; some events published twice (a relay retry without dedupe).
    let half = log.events.len() / 2;
    publish(&stream, &log.events[..half]).await;
    let again: Vec<RecordedEvent> = log.events.iter().step_by(7).cloned().collect();
    publish(&stream, &again).await;
    publish(&stream, &log.events[half..]).await;

    let n = log.events.len() as i64;
    let two = ReadStore::connect(&two_db.url, 2).await.unwrap();
    let one = ReadStore::connect(&one_db.url, 2).await.unwrap();
    wait_applied(&two, n).await;
    wait_applied(&one, n).await;

    // The pair split the 16 partitions between them.
    wait_until("the pair to hold 8 partitions each", || {
        a1.health.held().len() == 8 && a2.health.held().len() == 8
    })
    .await;
    let (h1, h2) = (a1.health.held(), a2.health.held());
    assert!(h1.iter().all(|p| !h2.contains(p)), "{h1:?} vs {h2:?}");
    assert_eq!(b.health.held().len(), 16);

    // Identical read models, and each owner as the independent fold says.
    assert_eq!(
        two.all_periods().await.unwrap(),
        one.all_periods().await.unwrap()
    );
    let customers = two.customers("", 100_000).await.unwrap();
    assert_eq!(customers, one.customers("", 100_000).await.unwrap());
    assert_eq!(customers.len(), owners.len());
    for c in &customers {
        assert_eq!(
            c.owner_id, owners[&c.customer_id],
            "owner of {}",
            c.customer_id
        );
        assert_eq!(
            two.timeline(&c.customer_id, 0, 1000).await.unwrap(),
            one.timeline(&c.customer_id, 0, 1000).await.unwrap()
        );
    }
    let facts = one.facts().await.unwrap();
    for store in [&two, &one] {
        counters_answer_what_the_facts_give(store, &facts).await;
    }
    println!(
        "{} events ({} published twice) applied once each by 2 instances and by 1: identical read models",
        n,
        again.len()
    );

    // One of the pair leaves: the other takes every partition.
    a2.stop().await;
    wait_until("the remaining instance to hold all 16 partitions", || {
        a1.health.held().len() == 16
    })
    .await;
    a1.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_goes_to_the_dead_letter_stream_and_the_rest_flows() {
    let stream = TestStream::new().await;
    crm_bus::stream::ensure(&stream.js, &stream.spec)
        .await
        .unwrap();
    let db = TestDatabase::create().await;
    let c = Uuid::new_v4().to_string();
    let m = Uuid::new_v4().to_string();
    let mut log = Log::default();
    log.manager(&m, "east-1");
    log.customer(&c, t0());
    log.push(
        &format!("customer-{c}"),
        "CustomerTeleported",
        t0(),
        serde_json::json!({"customer_id": c}),
    );
    log.assign(&c, &m, t0() + Span::hours(1));
    let running = start(&stream, &db.url, "dlq").await;
    publish(&stream, &log.events[..3]).await;
    // Not an event at all, on the customer's partition.
    publish_garbage(&stream, &c).await;
    publish(&stream, &log.events[3..]).await;

    let store = ReadStore::connect(&db.url, 2).await.unwrap();
    wait_applied(&store, 4).await;
    let customer = store.customer(&c).await.unwrap().unwrap();
    assert_eq!(
        customer.owner_id.as_deref(),
        Some(m.as_str()),
        "later events applied"
    );

    let mut dlq = stream
        .js
        .get_stream(format!("{}_DLQ", stream.spec.name))
        .await
        .unwrap();
    let held = dlq.info().await.unwrap().state.messages;
    assert_eq!(held, 2, "the unknown event type and the undecodable body");
    wait_until("health to say caught up", || {
        running.health.report().state == crm_projector::health::State::CaughtUp
    })
    .await;
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projector_started_before_the_stream_waits_for_it() {
    let stream = TestStream::new().await;
    let db = TestDatabase::create().await;
    let running = start(&stream, &db.url, "early").await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    crm_bus::stream::ensure(&stream.js, &stream.spec)
        .await
        .unwrap();
    let (log, _) = workload(3, 20);
    publish(&stream, &log.events).await;
    let store = ReadStore::connect(&db.url, 2).await.unwrap();
    wait_applied(&store, log.events.len() as i64).await;
    assert_eq!(store.customers("", 100).await.unwrap().len(), 20);
    running.stop().await;
}

/// A partition whose last message is set aside (the dead-letter path applies nothing)
/// after a batch that saw it waiting: the projector is caught up, and must say so, and
/// keep saying so while idle. (Before, the figure of waiting messages came only from the
/// last applied batch, so it stayed at 1 and health said "stalled" 15 s later, for good:
/// Kubernetes would restart a healthy projector.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_caught_up_projector_says_so() {
    let stream = TestStream::new().await;
    crm_bus::stream::ensure(&stream.js, &stream.spec)
        .await
        .unwrap();
    let db = TestDatabase::create().await;
    let (c, m) = (Uuid::new_v4().to_string(), Uuid::new_v4().to_string());
    let mut log = Log::default();
    log.customer(&c, t0());
    log.assign(&c, &m, t0() + Span::minutes(1));
    for i in 0..62 {
        log.contact(&c, &m, t0() + Span::minutes(2 + i));
    }
    // One batch's worth of events (the projector takes 64 at a time), then a message
    // that is not an event, all before the projector starts.
    publish(&stream, &log.events).await;
    publish_garbage(&stream, &c).await;
    let running = start(&stream, &db.url, "idle").await;
    let store = ReadStore::connect(&db.url, 2).await.unwrap();
    wait_applied(&store, 64).await;
    wait_until("health to say caught up", || {
        running.health.report().state == crm_projector::health::State::CaughtUp
    })
    .await;
    tokio::time::sleep(crm_projector::health::STALL_AFTER + Duration::from_secs(2)).await;
    let report = running.health.report();
    assert_eq!(
        report.state,
        crm_projector::health::State::CaughtUp,
        "{report:?}"
    );
    running.stop().await;
}

/// On SQLite (the embedded default) an instance applies with one writer, every
/// transaction into stripe 0, and folds nothing: its read models answer what the facts
/// give, with one row per counter key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projector_on_sqlite_builds_what_the_facts_give() {
    let stream = TestStream::new().await;
    crm_bus::stream::ensure(&stream.js, &stream.spec)
        .await
        .unwrap();
    let path = crm_eventstore::testing::TempPath::new("crm-projector-sqlite");
    let url = format!("sqlite://{}", path.0.display());
    let (log, owners) = workload(crm_eventstore::conformance::seed(), 100);
    let running = start(&stream, &url, "solo").await;
    publish(&stream, &log.events).await;
    let store = ReadStore::connect(&url, 2).await.unwrap();
    wait_applied(&store, log.events.len() as i64).await;
    let customers = store.customers("", 100_000).await.unwrap();
    assert_eq!(customers.len(), owners.len());
    for c in &customers {
        assert_eq!(
            c.owner_id, owners[&c.customer_id],
            "owner of {}",
            c.customer_id
        );
    }
    let facts = store.facts().await.unwrap();
    counters_answer_what_the_facts_give(&store, &facts).await;
    let ReadStore::Sqlite(pool) = &store else {
        unreachable!("sqlite")
    };
    let striped: i64 = sqlx::query_scalar("SELECT count(*) FROM rm_funnel_now WHERE stripe <> 0")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(striped, 0, "every transaction added to stripe 0");
    running.stop().await;
}

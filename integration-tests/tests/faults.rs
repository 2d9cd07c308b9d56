//! The fault suite. Each test runs the platform as processes (command service, relay,
//! projectors), drives `crm load` through the NATS and HTTP ingress, injects one kind of
//! fault while the load runs, and then checks the same invariants (`faults::Invariants`):
//! 0 accepted commands lost, every event in the stream exactly once, 0 events applied
//! twice, 0 read-model rows differing from a rebuild out of the event store. Each prints
//! a `FAULT` line with its figures.
//!
//! Faults that would disturb other tests (NATS restart, PostgreSQL restart) use a server
//! of the test's own.

use std::time::Duration;

use crm_eventstore::testing::TestDatabase;
use crm_integration_tests::faults::{NatsNode, PgCluster, Rig};
use crm_integration_tests::Platform;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

fn seed() -> u64 {
    crm_eventstore::conformance::seed()
}

async fn pause(rng: &mut SmallRng, ms: std::ops::Range<u64>) {
    tokio::time::sleep(Duration::from_millis(rng.gen_range(ms))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_command_service_relay_and_projector_at_random_points() {
    let platform = Platform::new().await;
    let read = TestDatabase::create().await;
    let mut rig = Rig::on(&platform, &read);
    // 6,420 commands at 400/s: about 16 s of load, room for at least three kill cycles
    // of 1-3.5 s (unlimited, a fast run once ended after two).
    rig.rate = 400;
    let mut command = rig.command_service().await;
    let mut relay = rig.relay().await;
    let mut projector = rig.projector().await;
    let mut load = rig.load(seed());
    let mut rng = SmallRng::seed_from_u64(seed());
    let mut kills = [0usize; 3];
    loop {
        pause(&mut rng, 1_000..3_000).await;
        if !load.is_running() {
            break;
        }
        let victim = rng.gen_range(0..3);
        match victim {
            0 => command.kill(),
            1 => relay.kill(),
            _ => projector.kill(),
        }
        kills[victim] += 1;
        pause(&mut rng, 0..500).await;
        match victim {
            0 => command = rig.command_service().await,
            1 => relay = rig.relay().await,
            _ => projector = rig.projector().await,
        }
    }
    assert!(kills.iter().sum::<usize>() >= 3, "too few kills: {kills:?}");
    let (summary, _) = rig.finish("sigkill", load).await;
    println!(
        "FAULT sigkill: command service SIGKILLed {} times, relay {}, projector {}; {} commands resent by the client",
        kills[0], kills[1], kills[2], summary["retries"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_restart_mid_load() {
    let mut nats = NatsNode::single().await;
    let platform = Platform::new().await;
    let read = TestDatabase::create().await;
    let mut rig = Rig::on(&platform, &read);
    rig.nats_url = nats.url();
    let _platform = rig.start_platform().await;
    let mut load = rig.load(seed());
    let mut rng = SmallRng::seed_from_u64(seed());
    let mut restarts = 0;
    while restarts < 2 && load.is_running() {
        pause(&mut rng, 2_000..4_000).await;
        nats.kill();
        pause(&mut rng, 500..1_500).await;
        nats.start().await;
        restarts += 1;
    }
    assert_eq!(restarts, 2, "the load ended before the restarts");
    let (summary, _) = rig.finish("nats-restart", load).await;
    println!(
        "FAULT nats-restart: NATS SIGKILLed and restarted {restarts} times mid-load; {} commands resent",
        summary["retries"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restart_mid_load() {
    let pg = PgCluster::start().await;
    let store_url = pg.create_database().await;
    let read_url = pg.create_database().await;
    let platform = Platform::new().await;
    let read = TestDatabase::create().await;
    let mut rig = Rig::on(&platform, &read);
    rig.store_url = store_url;
    rig.read_url = read_url;
    let _platform = rig.start_platform().await;
    let mut load = rig.load(seed());
    let mut rng = SmallRng::seed_from_u64(seed());
    let mut restarts = 0;
    while restarts < 2 && load.is_running() {
        pause(&mut rng, 2_000..4_000).await;
        pg.crash();
        pause(&mut rng, 500..1_500).await;
        pg.start_again().await;
        restarts += 1;
    }
    assert_eq!(restarts, 2, "the load ended before the restarts");
    let (summary, _) = rig.finish("postgres-restart", load).await;
    println!(
        "FAULT postgres-restart: PostgreSQL crashed (immediate stop) and restarted {restarts} times mid-load; {} commands resent",
        summary["retries"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redelivery_storm_with_two_projectors() {
    let platform = Platform::new().await;
    let read = TestDatabase::create().await;
    let mut rig = Rig::on(&platform, &read);
    // A third of the batches handed back unapplied, a third of the acks lost, and a
    // one-second ack wait: messages come again, late and out of order.
    rig.projector_env = vec![
        ("CRM_PROJECTOR_CHAOS", "0.3".into()),
        ("CRM_PROJECTOR_ACK_WAIT", "1".into()),
        ("CRM_PROJECTOR_BATCH", "32".into()),
    ];
    let _command = rig.command_service().await;
    let _relay = rig.relay().await;
    let mut a = rig.projector().await;
    let mut b = rig.projector().await;
    let load = rig.load(seed());
    let (_, figures) = rig.finish("redelivery-storm", load).await;
    // How many faults the projectors injected, from their own metrics.
    let mut injected = 0.0;
    for p in [&mut a, &mut b] {
        let addr = std::fs::read_to_string(&p.ready)
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| v["http"].as_str().map(str::to_string))
            .expect("projector address");
        let text = reqwest::get(format!("http://{addr}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        injected += text
            .lines()
            .filter(|l| l.starts_with("crm_projector_chaos_total"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>();
    }
    println!(
        "FAULT redelivery-storm: {injected} batches NAKed or acks dropped by two projectors (ack wait 1 s) for {} events",
        figures.events
    );
    assert!(injected > 10.0, "the storm did not happen: {injected}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_message_mid_load() {
    let platform = Platform::new().await;
    let read = TestDatabase::create().await;
    let rig = Rig::on(&platform, &read);
    let _platform = rig.start_platform().await;
    let mut load = rig.load(seed());
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(load.is_running(), "the load ended before the poison");
    // Not an event: a body no decoder accepts, on a subject of partition 3.
    let js = async_nats::jetstream::new(crm_bus::testing::connect().await);
    js.publish(
        format!("{}.events.customer.3.poison", rig.prefix),
        "\u{0}not an event".into(),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    let record = load.record.clone();
    load.finish().await;
    let mut invariants = rig.invariants("poison", &record);
    invariants.foreign_messages = 1;
    invariants.check().await;
    let mut dlq = js
        .get_stream(format!("{}_DLQ", rig.stream))
        .await
        .expect("dead-letter stream");
    let held = dlq.info().await.unwrap().state.messages;
    println!("FAULT poison: 1 poison message published mid-load; {held} in the dead-letter stream; the rest flowed");
    assert_eq!(held, 1);
    let _ = std::fs::remove_file(record);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_relays_started_at_once_and_the_active_one_killed() {
    let platform = Platform::new().await;
    let read = TestDatabase::create().await;
    let rig = Rig::on(&platform, &read);
    let _command = rig.command_service().await;
    let mut relays = [rig.relay_process(), rig.relay_process()];
    for r in &mut relays {
        r.wait_ready().await;
    }
    let _projector = rig.projector().await;
    let mut load = rig.load(seed());
    let mut rng = SmallRng::seed_from_u64(seed());
    let mut kills = 0;
    while kills < 3 && load.is_running() {
        pause(&mut rng, 1_500..3_000).await;
        // Kill one of the two at random (the active one half the time), start it again:
        // two relays run at once again.
        let i = rng.gen_range(0..2);
        relays[i].kill();
        kills += 1;
        relays[i] = rig.relay_process();
        relays[i].wait_ready().await;
    }
    rig.finish("two-relays", load).await;
    println!(
        "FAULT two-relays: two relays running at once throughout, one SIGKILLed {kills} times"
    );
}

//! Kill the relay process (SIGKILL) again and again during a steady write load; every
//! stored event must end up in the stream exactly once, each customer's in order.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crm_bus::envelope;
use crm_eventstore::conformance::{all_events, request};
use crm_eventstore::postgres::PgEventStore;
use crm_eventstore::testing::Rng;
use crm_eventstore::{Append, ExpectedVersion};
use crm_integration_tests::{Platform, Service};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_killed_repeatedly_publishes_every_event_exactly_once_in_order() {
    crm_integration_tests::binary("crm-relay");
    let platform = Platform::new().await;
    let store = PgEventStore::connect(&platform.db.url, 8).await.unwrap();
    let seed = crm_eventstore::conformance::seed();

    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..4u64 {
        let (store, stop) = (store.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let mut rng = Rng::new(seed ^ (w + 1));
            let mut written = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let customer =
                    format!("customer-{:08x}-0000-4000-8000-000000000000", rng.below(40));
                let req = request(&customer, ExpectedVersion::Any, 1 + rng.below(2));
                written += req.event_count() as u64;
                store.append(req).await.unwrap();
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            written
        }));
    }

    let mut rng = Rng::new(seed);
    let mut kills = 0;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(8) {
        let mut relay = Service::start("crm-relay", &[], &platform.env());
        relay.wait_ready().await;
        tokio::time::sleep(Duration::from_millis(200 + rng.below(700))).await;
        assert!(
            relay.is_running(),
            "relay died on its own:\n{}",
            relay.output()
        );
        relay.kill();
        kills += 1;
    }
    stop.store(true, Ordering::Relaxed);
    let mut written = 0;
    for w in writers {
        written += w.await.unwrap();
    }

    let mut relay = Service::start("crm-relay", &[], &platform.env());
    relay.wait_ready().await;
    let log = all_events(&store, written as usize).await;
    assert_eq!(log.len() as u64, written);
    let deadline = Instant::now() + Duration::from_secs(60);
    let messages = loop {
        let messages = platform.stream.messages().await;
        if messages.len() >= log.len() || Instant::now() > deadline {
            break messages;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    let mut seen = HashSet::new();
    let duplicated = messages
        .iter()
        .filter(|m| !seen.insert(m.headers.get("Nats-Msg-Id").unwrap().as_str().to_string()))
        .count();
    let stored: HashSet<String> = log.iter().map(|e| e.event_id.to_string()).collect();
    let missing = stored.difference(&seen).count();
    let mut versions: HashMap<String, u64> = HashMap::new();
    let mut out_of_order = 0;
    for m in &messages {
        let e = envelope::decode(&m.payload).unwrap();
        let v = versions.entry(e.stream_id.clone()).or_default();
        if e.stream_version != *v + 1 {
            out_of_order += 1;
        }
        *v = e.stream_version;
    }
    println!(
        "relay SIGKILLed {kills} times during the load: {} events stored, {} messages: {missing} missing, {duplicated} duplicated, {out_of_order} out of order",
        log.len(),
        messages.len()
    );
    assert!(kills >= 5);
    assert_eq!(missing, 0, "stored events missing from the stream");
    assert_eq!(duplicated, 0, "events published twice");
    assert_eq!(out_of_order, 0, "customer events out of order");
    assert_eq!(messages.len(), log.len());
}

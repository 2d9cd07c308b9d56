//! Two relays at once: only the holder of the leader lock publishes; when it is killed
//! the standby takes over, and every event is in the stream exactly once.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use crm_eventstore::conformance::{all_events, request};
use crm_eventstore::postgres::PgEventStore;
use crm_eventstore::{Append, ExpectedVersion};
use crm_integration_tests::{Platform, Service};

async fn wait_for_stream(
    platform: &Platform,
    n: usize,
) -> Vec<async_nats::jetstream::message::StreamMessage> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let m = platform.stream.messages().await;
        if m.len() >= n || Instant::now() > deadline {
            return m;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_relay_publishes_and_a_standby_takes_over() {
    crm_integration_tests::binary("crm-relay");
    let platform = Platform::new().await;
    let store = PgEventStore::connect(&platform.db.url, 4).await.unwrap();
    let mut first = Service::start("crm-relay", &[], &platform.env());
    first.wait_ready().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut second = Service::start("crm-relay", &[], &platform.env());
    second.wait_ready().await;

    for i in 0..50u64 {
        store
            .append(request(
                &format!("customer-{}", i % 7),
                ExpectedVersion::Any,
                1,
            ))
            .await
            .unwrap();
    }
    all_events(&store, 50).await;
    assert_eq!(wait_for_stream(&platform, 50).await.len(), 50);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        second.output().contains("standing by"),
        "the second relay waits:\n{}",
        second.output()
    );
    assert!(
        !second.output().contains("relay publishing"),
        "only one relay publishes"
    );

    first.kill();
    for i in 0..50u64 {
        store
            .append(request(
                &format!("customer-{}", i % 7),
                ExpectedVersion::Any,
                1,
            ))
            .await
            .unwrap();
    }
    all_events(&store, 100).await;
    let messages = wait_for_stream(&platform, 100).await;
    assert!(
        second.output().contains("relay publishing"),
        "the standby took over:\n{}",
        second.output()
    );
    let ids: HashSet<_> = messages
        .iter()
        .map(|m| m.headers.get("Nats-Msg-Id").unwrap().as_str().to_string())
        .collect();
    println!(
        "failover: {} events, {} messages, {} distinct",
        100,
        messages.len(),
        ids.len()
    );
    assert_eq!(messages.len(), 100);
    assert_eq!(ids.len(), 100);
}

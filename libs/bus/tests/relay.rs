//! The relay against real PostgreSQL and NATS JetStream.

use std::collections::HashMap;

use crm_bus::envelope::{self, headers};
use crm_bus::relay::{Relay, RelayConfig, RelayError, SoleRelay};
use crm_bus::testing::TestStream;
use crm_eventstore::conformance::{all_events, request};
use crm_eventstore::testing::postgres_store;
use crm_eventstore::{Append, Checkpoint, Checkpoints, EventStore, ExpectedVersion, LogPosition};

fn small_batches() -> RelayConfig {
    RelayConfig {
        batch_size: 7,
        ..RelayConfig::default()
    }
}

/// Append one event to each of `n` customer streams; wait until `total` are in the log.
async fn append_events<S: EventStore>(store: &S, n: u64, total: usize) {
    for i in 0..n {
        store
            .append(request(&format!("customer-{i}"), ExpectedVersion::Any, 1))
            .await
            .unwrap();
    }
    all_events(store, total).await;
}

/// A message nobody's relay published, at the stream's tail; its sequence.
async fn publish_foreign(ts: &TestStream) -> u64 {
    ts.js
        .publish(
            ts.spec.subjects.event("customer-x", "Garbage"),
            "not an event".into(),
        )
        .await
        .unwrap()
        .await
        .unwrap()
        .sequence
}

/// The stream holds each of the store's `total` events once, in log order.
async fn assert_every_event_once_in_order<S: EventStore>(ts: &TestStream, store: &S, total: usize) {
    let positions: Vec<String> = ts
        .messages()
        .await
        .iter()
        .filter_map(|m| {
            m.headers
                .get(headers::LOG_POSITION)
                .map(|v| v.as_str().to_string())
        })
        .collect();
    let expected: Vec<String> = all_events(store, total)
        .await
        .iter()
        .map(|e| e.log_position.to_string())
        .collect();
    assert_eq!(positions, expected, "every event once, in log order");
}

async fn publish_all<S: EventStore>(relay: &Relay<S>) -> usize {
    let mut cursor = relay.resume().await.unwrap();
    let mut total = 0;
    loop {
        let n = relay.step(&mut cursor).await.unwrap();
        if n == 0 {
            return total;
        }
        total += n;
    }
}

#[tokio::test]
async fn publishes_every_event_once_in_log_order_with_headers() {
    let (store, _db) = postgres_store().await;
    let ts = TestStream::new().await;
    let mut expected = 0;
    for i in 0..20u64 {
        let stream = format!("customer-0000000{}-0000-4000-8000-000000000000", i % 4);
        store
            .append(request(&stream, ExpectedVersion::Any, 1 + i % 3))
            .await
            .unwrap();
        expected += 1 + i % 3;
    }
    let log = all_events(&store, expected as usize).await;
    let relay = Relay::new(
        store.clone(),
        ts.js.clone(),
        ts.spec.clone(),
        small_batches(),
    );
    assert_eq!(publish_all(&relay).await, log.len());
    // A second relay (after a restart) finds nothing left to publish.
    let again = Relay::new(
        store.clone(),
        ts.js.clone(),
        ts.spec.clone(),
        small_batches(),
    );
    assert_eq!(publish_all(&again).await, 0);

    let messages = ts.messages().await;
    assert_eq!(messages.len(), log.len());
    for (m, e) in messages.iter().zip(&log) {
        assert_eq!(
            m.headers.get("Nats-Msg-Id").unwrap().as_str(),
            e.event_id.to_string()
        );
        assert_eq!(
            m.headers.get(headers::EVENT_TYPE).unwrap().as_str(),
            e.event_type
        );
        assert_eq!(
            m.headers.get(headers::CORRELATION_ID).unwrap().as_str(),
            e.metadata.correlation_id.to_string()
        );
        assert_eq!(envelope::log_position(&m.headers), Some(e.log_position));
        assert_eq!(
            m.subject.as_str(),
            ts.spec.subjects.event(&e.stream_id, &e.event_type)
        );
        assert_eq!(&envelope::decode(&m.payload).unwrap(), e);
    }
    let cp = store.load_checkpoint("relay").await.unwrap().unwrap();
    assert_eq!(cp.position, log.last().unwrap().log_position);
    assert_eq!(cp.extra as usize, log.len());
}

#[tokio::test]
async fn resumes_from_the_stream_when_the_checkpoint_is_behind() {
    let (store, _db) = postgres_store().await;
    let ts = TestStream::new().await;
    for i in 0..10u64 {
        store
            .append(request(&format!("customer-{i}"), ExpectedVersion::Any, 2))
            .await
            .unwrap();
    }
    all_events(&store, 20).await;
    let relay = Relay::new(
        store.clone(),
        ts.js.clone(),
        ts.spec.clone(),
        small_batches(),
    );
    publish_all(&relay).await;
    // A crash after publishing but before the checkpoint write looks like this:
    store
        .save_checkpoint(&Checkpoint {
            name: "relay".into(),
            position: LogPosition::START,
            extra: 3,
        })
        .await
        .unwrap();
    for i in 0..5u64 {
        store
            .append(request(&format!("customer-{i}"), ExpectedVersion::Any, 1))
            .await
            .unwrap();
    }
    all_events(&store, 25).await;
    let relay = Relay::new(
        store.clone(),
        ts.js.clone(),
        ts.spec.clone(),
        small_batches(),
    );
    assert_eq!(
        publish_all(&relay).await,
        5,
        "only the new events are published"
    );
    let messages = ts.messages().await;
    let mut ids = HashMap::new();
    for m in &messages {
        *ids.entry(m.headers.get("Nats-Msg-Id").unwrap().as_str().to_string())
            .or_insert(0) += 1;
    }
    assert_eq!(messages.len(), 25);
    assert!(ids.values().all(|&n| n == 1), "no event published twice");
}

#[tokio::test]
async fn refuses_to_run_when_the_stream_lost_messages() {
    let (store, _db) = postgres_store().await;
    let ts = TestStream::new().await;
    store
        .append(request("customer-1", ExpectedVersion::Any, 1))
        .await
        .unwrap();
    store
        .save_checkpoint(&Checkpoint {
            name: "relay".into(),
            position: LogPosition::new(1, 1),
            extra: 9,
        })
        .await
        .unwrap();
    let relay = Relay::new(store, ts.js.clone(), ts.spec.clone(), small_batches());
    let err = relay
        .run(&mut SoleRelay, std::future::pending())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            RelayError::StreamBehind {
                last_sequence: 0,
                checkpoint: 9,
                ..
            }
        ),
        "{err}"
    );
}

/// Someone else published into the stream: the relay must neither lose an event (its
/// next event may not take the intruder's place) nor stop for good; it resumes after the
/// foreign message, and every event is in the stream once, in log order.
#[tokio::test]
async fn steps_over_a_foreign_message_without_losing_an_event() {
    let (store, _db) = postgres_store().await;
    let ts = TestStream::new().await;
    append_events(&store, 6, 6).await;
    let relay = Relay::new(
        store.clone(),
        ts.js.clone(),
        ts.spec.clone(),
        small_batches(),
    );
    assert_eq!(publish_all(&relay).await, 6);
    let mut cursor = relay.resume().await.unwrap();
    // The intruder lands at the tail while the relay is idle.
    publish_foreign(&ts).await;
    append_events(&store, 9, 15).await;
    // The relay's next batch is refused as a whole (it expected its own last message)…
    let refused = relay.step(&mut cursor).await;
    assert!(
        matches!(refused, Err(RelayError::Nats(ref m)) if m.contains("stream moved")),
        "{refused:?}"
    );
    // …and after a resume it carries on behind the foreign message.
    assert_eq!(publish_all(&relay).await, 9);
    let messages = ts.messages().await;
    assert_eq!(messages.len(), 16, "15 events and the foreign message");
    assert_every_event_once_in_order(&ts, &store, 15).await;
}

/// An operator deleted a message at the stream's tail (a foreign one, say): the relay's
/// resume steps over the gap instead of stopping, and publishes what follows once.
#[tokio::test]
async fn resumes_over_a_message_deleted_at_the_tail() {
    let (store, _db) = postgres_store().await;
    let ts = TestStream::new().await;
    append_events(&store, 4, 4).await;
    let relay = Relay::new(
        store.clone(),
        ts.js.clone(),
        ts.spec.clone(),
        small_batches(),
    );
    assert_eq!(publish_all(&relay).await, 4);
    let intruder = publish_foreign(&ts).await;
    let stream = ts.js.get_stream(&ts.spec.name).await.unwrap();
    assert!(stream.delete_message(intruder).await.unwrap());
    append_events(&store, 3, 7).await;
    assert_eq!(publish_all(&relay).await, 3);
    assert_every_event_once_in_order(&ts, &store, 7).await;
}

//! The conformance suite every [`EventStore`] backend must pass: one suite, run against
//! PostgreSQL (`tests/conformance_postgres.rs`) and SQLite (`tests/conformance_sqlite.rs`)
//! through [`conformance_suite!`](crate::conformance_suite).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use uuid::Uuid;

use crate::testing::Rng;
use crate::*;

/// Expands to one `#[tokio::test]` per conformance case. `$make` is an async fn
/// `(Option<BeforeCommit>) -> (Store, Guard)`; the guard keeps the database alive.
#[macro_export]
macro_rules! conformance_suite {
    ($make:path) => {
        $crate::conformance_suite!(@case $make, append_and_read_back);
        $crate::conformance_suite!(@case $make, expected_version_is_enforced);
        $crate::conformance_suite!(@case $make, multi_stream_append_is_atomic);
        $crate::conformance_suite!(@case $make, command_ids_are_idempotent);
        $crate::conformance_suite!(@case $make, unique_keys_are_guarded);
        $crate::conformance_suite!(@case $make, counters_are_bounded);
        $crate::conformance_suite!(@case $make, streams_are_listed_by_prefix_and_counters_read_together);
        $crate::conformance_suite!(@case $make, batch_judges_each_request_alone);
        $crate::conformance_suite!(@case $make, global_log_keeps_stream_order_and_pages);
        $crate::conformance_suite!(@case $make, checkpoints_round_trip);
        $crate::conformance_suite!(@case $make, every_stream_is_a_hash_chain);
        $crate::conformance_suite!(@case $make, global_checkpoints_are_sequenced);
        $crate::conformance_suite!(@case $make, subject_keys_are_created_once_and_erased_for_good);

        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn concurrent_writers_with_slow_commits_and_rollbacks_are_never_skipped() {
            let seed = $crate::conformance::seed();
            let (store, _guard) = $make(Some($crate::conformance::random_commit_faults(seed))).await;
            $crate::conformance::concurrent_writers_are_never_skipped(store, seed).await;
        }
    };
    (@case $make:path, $case:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $case() {
            let (store, _guard) = $make(None).await;
            $crate::conformance::$case(store).await;
        }
    };
}

/// Seed for the randomised case: `CRM_TEST_SEED` or the clock, printed for replay.
pub fn seed() -> u64 {
    let seed = std::env::var("CRM_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| Utc::now().timestamp_nanos_opt().unwrap_or(7) as u64);
    println!("seed: CRM_TEST_SEED={seed}");
    seed
}

pub fn meta(command_id: Uuid) -> CommandMeta {
    CommandMeta {
        command_id,
        command_type: "test_command".into(),
        correlation_id: Uuid::new_v4(),
        causation_id: Some(Uuid::new_v4()),
        actor: "person:tester".into(),
        issued_at: Utc.with_ymd_and_hms(2026, 11, 25, 9, 30, 0).unwrap(),
        fingerprint: format!("fp-{command_id}"),
    }
}

pub fn event(event_type: &str, n: u64) -> NewEvent {
    NewEvent {
        event_id: Uuid::new_v4(),
        event_type: event_type.into(),
        schema_version: 1,
        payload: serde_json::json!({ "n": n, "text": "客户 ✓ \"q\"\t\\", "nested": { "b": [1, null], "a": true } }),
    }
}

pub fn request(stream: &str, expected: ExpectedVersion, events: u64) -> AppendRequest {
    AppendRequest::new(meta(Uuid::new_v4())).write(
        stream,
        expected,
        (0..events).map(|n| event("Happened", n)).collect(),
    )
}

/// The whole log once at least `expected` events are visible. Visibility may lag a
/// commit: on PostgreSQL a write transaction open anywhere in the cluster (another test's
/// database included) holds the commit-safe horizon back until it ends.
pub async fn all_events<S: EventStore>(s: &S, expected: usize) -> Vec<RecordedEvent> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let all = s.read_all(LogPosition::START, 1_000_000).await.unwrap();
        if all.len() >= expected || Instant::now() > deadline {
            return all;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn conflict(r: Result<AppendOutcome, AppendError>) -> Conflict {
    match r {
        Err(AppendError::Conflict(c)) => c,
        other => panic!("expected a conflict, got {other:?}"),
    }
}

pub async fn append_and_read_back<S: EventStore>(s: S) {
    let req = request("customer-1", ExpectedVersion::NoStream, 3);
    let sent = req.clone();
    let out = s.append(req).await.unwrap();
    assert!(!out.duplicate);
    assert_eq!(
        out.events
            .iter()
            .map(|e| e.stream_version)
            .collect::<Vec<_>>(),
        vec![1, 2, 3]
    );

    let read = s.read_stream("customer-1", 0).await.unwrap();
    assert_eq!(read.len(), 3);
    for (i, (got, want)) in read.iter().zip(&sent.writes[0].events).enumerate() {
        assert_eq!(got.event_id, want.event_id);
        assert_eq!(got.event_type, want.event_type);
        assert_eq!(got.schema_version, 1);
        assert_eq!(got.payload, want.payload, "payload round trip");
        assert_eq!(got.stream_version, i as u64 + 1);
        assert_eq!(got.metadata.command_id, sent.meta.command_id);
        assert_eq!(got.metadata.correlation_id, sent.meta.correlation_id);
        assert_eq!(got.metadata.causation_id, sent.meta.causation_id);
        assert_eq!(got.metadata.actor, "person:tester");
        assert_eq!(got.metadata.occurred_at, sent.meta.issued_at);
        assert_eq!(got.log_position.position, out.events[i].position);
    }
    assert_eq!(s.read_stream("customer-1", 2).await.unwrap().len(), 1);
    let page = |after, up_to| {
        let s = &s;
        async move {
            s.read_stream_range("customer-1", after, up_to)
                .await
                .unwrap()
                .iter()
                .map(|e| e.stream_version)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(page(0, 2).await, vec![1, 2]);
    assert_eq!(page(1, 3).await, vec![2, 3]);
    assert_eq!(page(1, u64::MAX).await, vec![2, 3]);
    assert_eq!(page(2, 2).await, Vec::<u64>::new());
    assert!(s
        .read_stream_range("customer-9", 0, 9)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(s.stream_version("customer-1").await.unwrap(), 3);
    assert_eq!(s.stream_version("customer-2").await.unwrap(), 0);
    let all = all_events(&s, 3).await;
    let (count, head) = s.head().await.unwrap();
    assert_eq!(count, 3);
    assert_eq!(head, all[2].log_position);
}

pub async fn expected_version_is_enforced<S: EventStore>(s: S) {
    s.append(request("a", ExpectedVersion::NoStream, 2))
        .await
        .unwrap();
    let c = conflict(s.append(request("a", ExpectedVersion::NoStream, 1)).await);
    assert_eq!(
        c,
        Conflict::WrongExpectedVersion {
            stream_id: "a".into(),
            expected: ExpectedVersion::NoStream,
            actual: 2
        }
    );
    let c = conflict(s.append(request("a", ExpectedVersion::Exact(1), 1)).await);
    assert!(matches!(
        c,
        Conflict::WrongExpectedVersion { actual: 2, .. }
    ));
    assert_eq!(
        s.stream_version("a").await.unwrap(),
        2,
        "a refused append writes nothing"
    );
    s.append(request("a", ExpectedVersion::Exact(2), 1))
        .await
        .unwrap();
    s.append(request("a", ExpectedVersion::Any, 1))
        .await
        .unwrap();
    assert_eq!(s.stream_version("a").await.unwrap(), 4);
    assert!(matches!(
        conflict(s.append(AppendRequest::new(meta(Uuid::new_v4()))).await),
        Conflict::Empty
    ));
}

pub async fn multi_stream_append_is_atomic<S: EventStore>(s: S) {
    s.append(request("b", ExpectedVersion::NoStream, 1))
        .await
        .unwrap();
    let req = request("a", ExpectedVersion::NoStream, 1).write(
        "b",
        ExpectedVersion::NoStream,
        vec![event("X", 0)],
    );
    conflict(s.append(req).await);
    assert_eq!(
        s.stream_version("a").await.unwrap(),
        0,
        "no part of a refused command is written"
    );
    let req = request("a", ExpectedVersion::NoStream, 1).write(
        "b",
        ExpectedVersion::Exact(1),
        vec![event("X", 0)],
    );
    let out = s.append(req).await.unwrap();
    assert_eq!(out.events.len(), 2);
    assert_eq!(s.stream_version("b").await.unwrap(), 2);
}

pub async fn command_ids_are_idempotent<S: EventStore>(s: S) {
    let req = request("a", ExpectedVersion::NoStream, 2);
    let first = s.append(req.clone()).await.unwrap();
    // The retry would conflict on its expected version if it were judged again.
    let again = s.append(req.clone()).await.unwrap();
    assert!(again.duplicate);
    assert_eq!(again.events, first.events, "the first outcome is returned");
    assert_eq!(
        s.stream_version("a").await.unwrap(),
        2,
        "nothing appended twice"
    );
    assert_eq!(
        s.command_outcome(req.meta.command_id)
            .await
            .unwrap()
            .unwrap()
            .events,
        first.events
    );

    let mut other = request("b", ExpectedVersion::Any, 1);
    other.meta.command_id = req.meta.command_id;
    assert_eq!(
        conflict(s.append(other).await),
        Conflict::CommandIdReused {
            command_id: req.meta.command_id
        }
    );
    assert_eq!(s.stream_version("b").await.unwrap(), 0);
    assert_eq!(all_events(&s, 2).await.len(), 2);
}

pub async fn unique_keys_are_guarded<S: EventStore>(s: S) {
    let claim = |stream: &str, key: &str| {
        let mut r = request(stream, ExpectedVersion::Any, 1);
        r.claims.push(UniqueClaim {
            key: key.into(),
            owner: stream.into(),
        });
        r
    };
    s.append(claim("customer-a", "phone:+8613800000001"))
        .await
        .unwrap();
    assert_eq!(
        s.key_owner("phone:+8613800000001")
            .await
            .unwrap()
            .as_deref(),
        Some("customer-a")
    );
    // The owner may claim its own key again.
    s.append(claim("customer-a", "phone:+8613800000001"))
        .await
        .unwrap();
    let c = conflict(s.append(claim("customer-b", "phone:+8613800000001")).await);
    assert_eq!(
        c,
        Conflict::DuplicateKey {
            key: "phone:+8613800000001".into(),
            owner: "customer-a".into()
        }
    );
    assert_eq!(s.stream_version("customer-b").await.unwrap(), 0);

    // A refused command claims nothing.
    let mut refused = claim("customer-c", "email:c@example.cn");
    refused.writes[0].expected = ExpectedVersion::Exact(9);
    conflict(s.append(refused).await);
    assert_eq!(s.key_owner("email:c@example.cn").await.unwrap(), None);

    // Release then claim by another owner.
    let mut release = request("customer-a", ExpectedVersion::Any, 1);
    release.releases.push(UniqueClaim {
        key: "phone:+8613800000001".into(),
        owner: "customer-a".into(),
    });
    s.append(release).await.unwrap();
    assert_eq!(s.key_owner("phone:+8613800000001").await.unwrap(), None);
    s.append(claim("customer-b", "phone:+8613800000001"))
        .await
        .unwrap();
    // A release by a non-owner frees nothing.
    let mut stray = request("customer-a", ExpectedVersion::Any, 1);
    stray.releases.push(UniqueClaim {
        key: "phone:+8613800000001".into(),
        owner: "customer-a".into(),
    });
    s.append(stray).await.unwrap();
    assert_eq!(
        s.key_owner("phone:+8613800000001")
            .await
            .unwrap()
            .as_deref(),
        Some("customer-b")
    );
}

pub async fn counters_are_bounded<S: EventStore>(s: S) {
    let change = |stream: &str, delta: i64| {
        let mut r = request(stream, ExpectedVersion::Any, 1);
        r.counters.push(CounterChange {
            key: "holdings:m1".into(),
            delta,
            max: Some(2),
        });
        r
    };
    s.append(change("c1", 1)).await.unwrap();
    s.append(change("c2", 1)).await.unwrap();
    let c = conflict(s.append(change("c3", 1)).await);
    assert_eq!(
        c,
        Conflict::CounterLimit {
            key: "holdings:m1".into(),
            value: 2,
            delta: 1,
            max: 2
        }
    );
    assert_eq!(s.stream_version("c3").await.unwrap(), 0);
    assert_eq!(s.counter("holdings:m1").await.unwrap(), 2);
    s.append(change("c1", -1)).await.unwrap();
    s.append(change("c3", 1)).await.unwrap();
    assert_eq!(s.counter("holdings:m1").await.unwrap(), 2);
    assert_eq!(s.counter("holdings:nobody").await.unwrap(), 0);
}

pub async fn streams_are_listed_by_prefix_and_counters_read_together<S: EventStore>(s: S) {
    for stream in [
        "manager-b",
        "manager-a",
        "customer-1",
        "manager",
        "managers-x",
        "manager-é",
    ] {
        s.append(request(stream, ExpectedVersion::Any, 2))
            .await
            .unwrap();
    }
    assert_eq!(
        s.stream_ids_with_prefix("manager-").await.unwrap(),
        vec!["manager-a", "manager-b", "manager-é"],
        "each stream once, in byte order, and nothing that merely shares a shorter prefix"
    );
    assert!(s.stream_ids_with_prefix("team-").await.unwrap().is_empty());
    let mut r = request("customer-2", ExpectedVersion::Any, 1);
    for (key, delta) in [("k:a", 3), ("k:b", -2)] {
        r.counters.push(CounterChange {
            key: key.into(),
            delta,
            max: None,
        });
    }
    s.append(r).await.unwrap();
    let keys: Vec<String> = ["k:b", "k:none", "k:a"].map(String::from).to_vec();
    assert_eq!(s.counters(&keys).await.unwrap(), vec![-2, 0, 3]);
    assert!(s.counters(&[]).await.unwrap().is_empty());
}

/// Two handles on one store, as two processes would hold them: each sees what the other
/// committed, whatever it remembers of its own appends.
pub async fn two_processes_share_one_store<S: EventStore>(a: S, b: S) {
    a.append(request("x", ExpectedVersion::NoStream, 1))
        .await
        .unwrap();
    // `b` has never seen "x": it must still append after `a`'s event.
    let out = b
        .append(request("x", ExpectedVersion::Exact(1), 1))
        .await
        .unwrap();
    assert_eq!(out.events[0].stream_version, 2);
    // `a` last saw "x" at version 1; the store knows better.
    assert_eq!(
        conflict(a.append(request("x", ExpectedVersion::Exact(1), 1)).await),
        Conflict::WrongExpectedVersion {
            stream_id: "x".into(),
            expected: ExpectedVersion::Exact(1),
            actual: 2
        }
    );
    a.append(request("x", ExpectedVersion::Exact(2), 1))
        .await
        .unwrap();

    // Keys claimed through one handle are held against the other.
    let mut claim = request("x", ExpectedVersion::Any, 1);
    claim.claims.push(UniqueClaim {
        key: "phone:+8613800000009".into(),
        owner: "x".into(),
    });
    a.append(claim).await.unwrap();
    let mut steal = request("y", ExpectedVersion::Any, 1);
    steal.claims.push(UniqueClaim {
        key: "phone:+8613800000009".into(),
        owner: "y".into(),
    });
    assert_eq!(
        conflict(b.append(steal).await),
        Conflict::DuplicateKey {
            key: "phone:+8613800000009".into(),
            owner: "x".into()
        }
    );

    // Counters too.
    let count = |stream: &str| {
        let mut r = request(stream, ExpectedVersion::Any, 1);
        r.counters.push(CounterChange {
            key: "holdings:shared".into(),
            delta: 1,
            max: Some(2),
        });
        r
    };
    a.append(count("p")).await.unwrap();
    b.append(count("q")).await.unwrap();
    assert!(matches!(
        conflict(a.append(count("r")).await),
        Conflict::CounterLimit { value: 2, .. }
    ));

    // A command appended through one handle is a duplicate through the other.
    let once = request("z", ExpectedVersion::NoStream, 1);
    let first = a.append(once.clone()).await.unwrap();
    let again = b.append(once).await.unwrap();
    assert!(again.duplicate);
    assert_eq!(again.events, first.events);

    assert_eq!(b.stream_version("x").await.unwrap(), 4);
    assert_eq!(all_events(&a, 7).await.len(), 7, "nothing written twice");
    // Each handle chained its events onto the other's, never onto a stale head.
    assert_chained(&a.read_stream("x", 0).await.unwrap());
}

/// Every event's link recomputes from its predecessor's.
pub fn assert_chained(events: &[RecordedEvent]) {
    let mut prev = ChainHash::GENESIS;
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.stream_version, i as u64 + 1);
        let expected = chain::event_hash(&prev, &chain::ChainedFields::of(e));
        assert_eq!(
            e.chain_hash, expected,
            "{} v{}: stored link differs from the recomputed one",
            e.stream_id, e.stream_version
        );
        prev = e.chain_hash;
    }
}

pub async fn every_stream_is_a_hash_chain<S: EventStore>(s: S) {
    // Payloads whose stored form differs from the written one (key order, spacing,
    // floats, nesting, non-ASCII) and a time finer than storage keeps.
    let mut first = request("customer-h", ExpectedVersion::NoStream, 0);
    first.meta.issued_at = "2026-11-26T09:00:00.123456789Z".parse().unwrap();
    first.meta.causation_id = None;
    first.writes[0].events = vec![
        NewEvent {
            event_id: Uuid::new_v4(),
            event_type: "CustomerRegistered".into(),
            schema_version: 1,
            payload: serde_json::from_str(
                r#"{"zeta": 1, "alpha": {"b": [1.5, -2, 1e21, 0.1], "a": null}, "name": "王 \"芳\"\n", "ok": true}"#,
            )
            .unwrap(),
        },
        event("ProfileUpdated", 2),
    ];
    let second = request("customer-h", ExpectedVersion::Exact(2), 1);
    let other = request("customer-i", ExpectedVersion::NoStream, 2);
    for r in s.append_batch(vec![first, other, second]).await {
        r.unwrap();
    }
    s.append(request("customer-h", ExpectedVersion::Exact(3), 2))
        .await
        .unwrap();
    let h = s.read_stream("customer-h", 0).await.unwrap();
    assert_eq!(h.len(), 5);
    assert_chained(&h);
    assert_chained(&s.read_stream("customer-i", 0).await.unwrap());
    // The global log carries the same links.
    let all = all_events(&s, 7).await;
    for e in &all {
        let same = h.iter().find(|x| x.event_id == e.event_id);
        if let Some(x) = same {
            assert_eq!(x.chain_hash, e.chain_hash);
        }
    }
    // A changed field no longer matches its link.
    let mut altered = h[0].clone();
    altered.payload["zeta"] = serde_json::json!(2);
    assert_ne!(
        chain::event_hash(&ChainHash::GENESIS, &chain::ChainedFields::of(&altered)),
        altered.chain_hash
    );
}

pub async fn global_checkpoints_are_sequenced<S: EventStore>(s: S) {
    assert_eq!(s.last_global_checkpoint().await.unwrap(), None);
    s.append(request("a", ExpectedVersion::NoStream, 3))
        .await
        .unwrap();
    let events = all_events(&s, 3).await;
    let leaves: Vec<chain::Leaf> = events
        .iter()
        .map(|e| chain::Leaf {
            position: e.log_position,
            hash: e.chain_hash,
        })
        .collect();
    let now = Utc.with_ymd_and_hms(2026, 11, 26, 10, 0, 0).unwrap();
    let first = GlobalCheckpoint::seal(None, &leaves[..2], now);
    let second = GlobalCheckpoint::seal(Some(&first), &leaves[2..], now);
    assert!(s.append_global_checkpoint(&first).await.unwrap());
    // A second sealer racing for the same number loses and changes nothing.
    let rival = GlobalCheckpoint::seal(None, &leaves, now);
    assert!(!s.append_global_checkpoint(&rival).await.unwrap());
    assert!(s.append_global_checkpoint(&second).await.unwrap());
    assert_eq!(
        s.last_global_checkpoint().await.unwrap(),
        Some(second.clone())
    );
    assert_eq!(
        s.global_checkpoints(0, 10).await.unwrap(),
        vec![first.clone(), second.clone()]
    );
    assert_eq!(s.global_checkpoints(1, 10).await.unwrap(), vec![second]);
    assert_eq!(s.global_checkpoints(0, 1).await.unwrap(), vec![first]);
}

pub async fn batch_judges_each_request_alone<S: EventStore>(s: S) {
    let ok1 = request("a", ExpectedVersion::NoStream, 1);
    let stale = request("a", ExpectedVersion::NoStream, 1);
    let ok2 = request("a", ExpectedVersion::Exact(1), 2);
    let other = request("b", ExpectedVersion::NoStream, 1);
    let retry = ok1.clone();
    let out = s.append_batch(vec![ok1, stale, ok2, other, retry]).await;
    assert!(out[0].is_ok());
    assert!(matches!(
        out[1],
        Err(AppendError::Conflict(Conflict::WrongExpectedVersion {
            actual: 1,
            ..
        }))
    ));
    assert_eq!(
        out[2]
            .as_ref()
            .unwrap()
            .events
            .iter()
            .map(|e| e.stream_version)
            .collect::<Vec<_>>(),
        vec![2, 3]
    );
    assert!(out[3].is_ok());
    let retry = out[4].as_ref().unwrap();
    assert!(retry.duplicate);
    assert_eq!(retry.events, out[0].as_ref().unwrap().events);
    assert_eq!(all_events(&s, 4).await.len(), 4);
}

pub async fn global_log_keeps_stream_order_and_pages<S: EventStore>(s: S) {
    for i in 0..10u64 {
        s.append(request(
            &format!("s{}", i % 3),
            ExpectedVersion::Any,
            1 + i % 2,
        ))
        .await
        .unwrap();
    }
    let all = all_events(&s, 15).await;
    assert_eq!(all.len(), 15);
    let mut paged = Vec::new();
    let mut cursor = LogPosition::START;
    loop {
        let page = s.read_all(cursor, 4).await.unwrap();
        let Some(last) = page.last() else { break };
        cursor = last.log_position;
        paged.extend(page);
    }
    assert_eq!(paged, all, "paging gives the same log");
    // The same log with each payload as JSON text: the same events, the text parsing to
    // the same JSON.
    let mut texts = Vec::new();
    let mut cursor = LogPosition::START;
    loop {
        let page = s.read_all_text(cursor, 4).await.unwrap();
        let Some(last) = page.last() else { break };
        cursor = last.log_position;
        texts.extend(page);
    }
    assert_eq!(texts.len(), all.len());
    for (t, e) in texts.into_iter().zip(&all) {
        let as_parsed = t.map_payload(|p| serde_json::from_str::<serde_json::Value>(&p).unwrap());
        assert_eq!(&as_parsed, e, "read_all_text and read_all agree");
    }
    for w in all.windows(2) {
        assert!(
            w[0].log_position < w[1].log_position,
            "strictly increasing positions"
        );
    }
    let mut versions: HashMap<&str, u64> = HashMap::new();
    for e in &all {
        let v = versions.entry(&e.stream_id).or_default();
        *v += 1;
        assert_eq!(
            e.stream_version, *v,
            "each stream in version order in the global log"
        );
    }
}

pub async fn checkpoints_round_trip<S: EventStore>(s: S) {
    assert_eq!(s.load_checkpoint("relay").await.unwrap(), None);
    let cp = Checkpoint {
        name: "relay".into(),
        position: LogPosition::new(7, 9),
        extra: 42,
    };
    s.save_checkpoint(&cp).await.unwrap();
    assert_eq!(s.load_checkpoint("relay").await.unwrap(), Some(cp.clone()));
    let cp2 = Checkpoint {
        position: LogPosition::new(8, 11),
        extra: 43,
        ..cp
    };
    s.save_checkpoint(&cp2).await.unwrap();
    assert_eq!(s.load_checkpoint("relay").await.unwrap(), Some(cp2));
}

/// Slow commits (0–15 ms) and rollbacks (1 in 8) before each append commits.
pub fn random_commit_faults(seed: u64) -> BeforeCommit {
    let counter = Arc::new(AtomicU64::new(seed));
    Arc::new(move || {
        let mut rng = Rng::new(counter.fetch_add(1, Ordering::Relaxed));
        let delay = rng.below(16);
        let rollback = rng.below(8) == 0;
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(delay)).await;
            rollback
        })
    })
}

/// Follow the global log in small pages until `done`, then settle the horizon and read
/// to its end: every event the reader saw, in order.
async fn follow_log<S: EventStore + Horizon>(s: S, done: Arc<AtomicBool>) -> Vec<RecordedEvent> {
    let mut seen = Vec::new();
    let mut cursor = LogPosition::START;
    let mut settled = false;
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        let finished = done.load(Ordering::Acquire);
        let page = s.read_all(cursor, 7).await.unwrap();
        if let Some(last) = page.last() {
            cursor = last.log_position;
        }
        let empty = page.is_empty();
        seen.extend(page);
        if empty {
            if settled {
                break;
            }
            if finished {
                // Every writer's transaction has ended before `settle` returns: the
                // next empty page is the end of the log.
                s.settle().await.unwrap();
                settled = true;
                continue;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    seen
}

/// Many concurrent writers, each commit delayed at random and some rolled back, while a
/// reader follows the global log in small pages. The reader must see every committed
/// event exactly once, never a rolled-back one, and each stream in version order.
///
/// Once the writers are done the reader settles the horizon and then reads to the end:
/// on PostgreSQL any transaction in the cluster (another test's, in another database)
/// holds the horizon back, so "a few empty pages" does not mean the log is fully read.
pub async fn concurrent_writers_are_never_skipped<S: EventStore + Horizon + Clone>(
    s: S,
    seed: u64,
) {
    const WRITERS: u64 = 16;
    const APPENDS: u64 = 25;
    let done = Arc::new(AtomicBool::new(false));
    let reader = tokio::spawn(follow_log(s.clone(), done.clone()));

    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let s = s.clone();
        writers.push(tokio::spawn(async move {
            let mut rng = Rng::new(seed ^ (w + 1).wrapping_mul(0x9E37));
            let mut committed = Vec::new();
            let mut rolled_back = Vec::new();
            for _ in 0..APPENDS {
                let stream = format!("stream-{}", rng.below(12));
                let req = request(&stream, ExpectedVersion::Any, 1 + rng.below(3));
                let ids: Vec<Uuid> = req.writes[0].events.iter().map(|e| e.event_id).collect();
                match s.append(req).await {
                    Ok(_) => committed.extend(ids),
                    Err(AppendError::Store(_)) => rolled_back.extend(ids),
                    Err(e) => panic!("unexpected refusal: {e}"),
                }
            }
            (committed, rolled_back)
        }));
    }
    let mut committed = HashSet::new();
    let mut rolled_back = HashSet::new();
    for w in writers {
        let (c, r) = w.await.unwrap();
        committed.extend(c);
        rolled_back.extend(r);
    }
    done.store(true, Ordering::Release);
    let seen = reader.await.unwrap();

    let mut unique = HashSet::new();
    let duplicated = seen.iter().filter(|e| !unique.insert(e.event_id)).count();
    let skipped = committed.difference(&unique).count();
    let phantom = unique.intersection(&rolled_back).count();
    println!(
        "commit-safe order: {} writers, {} events committed, {} rolled back; reader saw {}: {skipped} skipped, {duplicated} duplicated",
        WRITERS,
        committed.len(),
        rolled_back.len(),
        seen.len()
    );
    assert!(
        !rolled_back.is_empty(),
        "the fault injection must roll some appends back"
    );
    assert_eq!(skipped, 0, "events skipped by the log reader");
    assert_eq!(duplicated, 0, "events read twice");
    assert_eq!(phantom, 0, "rolled-back events read");
    assert_eq!(unique.len(), committed.len());
    let mut versions: HashMap<&str, u64> = HashMap::new();
    for e in &seen {
        let v = versions.entry(&e.stream_id).or_default();
        *v += 1;
        assert_eq!(
            e.stream_version, *v,
            "stream {} out of order in the global log",
            e.stream_id
        );
    }
    assert_eq!(
        seen,
        all_events(&s, seen.len()).await,
        "the follower saw the same log as a full read"
    );
}

pub async fn subject_keys_are_created_once_and_erased_for_good<S: EventStore>(s: S) {
    let keyed = |stream: &str, subject: &str, byte: u8| {
        let mut r = AppendRequest::new(meta(Uuid::new_v4())).write(
            stream,
            ExpectedVersion::Any,
            vec![event("Sealed", u64::from(byte))],
        );
        r.new_keys.push(NewSubjectKey {
            subject: subject.into(),
            key: vec![byte; 32],
        });
        r
    };
    let refused_as_keyed = |r: Result<AppendOutcome, AppendError>, subject: &str| {
        assert!(
            matches!(&r, Err(AppendError::Conflict(Conflict::SubjectKeyExists { subject: s })) if s == subject),
            "{r:?}"
        );
    };
    assert_eq!(
        s.subject_key("customer-1").await.unwrap(),
        SubjectKey::Absent
    );
    // Stored with the events it sealed, in the same transaction.
    s.append(keyed("customer-1", "customer-1", 1))
        .await
        .unwrap();
    assert_eq!(
        s.subject_key("customer-1").await.unwrap(),
        SubjectKey::Active(vec![1; 32])
    );
    // A second first key (a racing writer's) is refused with its events: they were
    // sealed with a key that is not the stored one.
    refused_as_keyed(
        s.append(keyed("customer-1", "customer-1", 2)).await,
        "customer-1",
    );
    assert_eq!(s.stream_version("customer-1").await.unwrap(), 1);
    // In one batch: the first is stored, the second refused, the batch's others kept.
    let out = s
        .append_batch(vec![
            keyed("customer-3", "customer-3", 5),
            keyed("customer-3b", "customer-3", 6),
            keyed("customer-4", "customer-4", 7),
        ])
        .await;
    assert!(out[0].is_ok() && out[2].is_ok(), "{out:?}");
    refused_as_keyed(out.into_iter().nth(1).unwrap(), "customer-3");
    assert_eq!(s.stream_version("customer-3b").await.unwrap(), 0);
    assert_eq!(
        s.subject_key("customer-3").await.unwrap(),
        SubjectKey::Active(vec![5; 32])
    );
    // A refused append stores no key.
    let mut refused = keyed("customer-5", "customer-5", 8);
    refused.writes[0].expected = ExpectedVersion::Exact(3);
    assert!(s.append(refused).await.is_err());
    assert_eq!(
        s.subject_key("customer-5").await.unwrap(),
        SubjectKey::Absent
    );

    an_erased_subject_is_never_keyed_again(&s, keyed, refused_as_keyed).await;
}

async fn an_erased_subject_is_never_keyed_again<S: EventStore>(
    s: &S,
    keyed: impl Fn(&str, &str, u8) -> AppendRequest,
    refused_as_keyed: impl Fn(Result<AppendOutcome, AppendError>, &str),
) {
    s.erase_subject_key("customer-1").await.unwrap();
    s.erase_subject_key("customer-1").await.unwrap();
    assert_eq!(
        s.subject_key("customer-1").await.unwrap(),
        SubjectKey::Erased
    );
    // Never again a key for an erased subject, nor for one erased before it had any.
    refused_as_keyed(
        s.append(keyed("customer-1", "customer-1", 3)).await,
        "customer-1",
    );
    s.erase_subject_key("customer-2").await.unwrap();
    refused_as_keyed(
        s.append(keyed("customer-2", "customer-2", 4)).await,
        "customer-2",
    );
    assert_eq!(
        s.subject_key("customer-2").await.unwrap(),
        SubjectKey::Erased
    );
}

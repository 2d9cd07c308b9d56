//! Verifiable export: part of a PostgreSQL log copied into an SQLite file that verifies
//! and replays offline, starting mid-log; an altered export is caught; an export is
//! never overwritten and refuses new events.

use std::time::Duration;

use crm_audit::{export, read_export, seal_pending, verify, ProblemKind, VerifyReport};
use crm_eventstore::conformance::{all_events, request};
use crm_eventstore::sqlite::SqliteEventStore;
use crm_eventstore::testing::{postgres_store, TempPath};
use crm_eventstore::{
    Append, ChainHash, EventStore, ExpectedVersion, GlobalCheckpoint, Log, LogPosition, Streams,
};

/// Four rounds of 10 streams, each round sealed by its own checkpoint a little later
/// than the one before. Answers the checkpoints.
async fn sealed_rounds<S: EventStore>(store: &S) -> Vec<GlobalCheckpoint> {
    let mut checkpoints = Vec::new();
    for round in 0..4u64 {
        for s in 0..10 {
            let expected = match round {
                0 => ExpectedVersion::NoStream,
                r => ExpectedVersion::Exact(r),
            };
            store
                .append(request(&format!("customer-{s}"), expected, 1))
                .await
                .unwrap();
        }
        all_events(store, (round as usize + 1) * 10).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        checkpoints.extend(seal_pending(store, 1_000, &mut |_| {}).await.unwrap());
    }
    assert_eq!(checkpoints.len(), 4);
    checkpoints
}

async fn verify_export(path: &TempPath, expect: Vec<(u64, ChainHash)>) -> VerifyReport {
    let (manifest, bases) = read_export(&path.0).await.unwrap().expect("an export");
    let store = SqliteEventStore::open(&path.0).await.unwrap();
    let options = crm_audit::export::verify_options(&manifest, bases, expect);
    let report = verify(&store, &options, &mut |_| {}).await.unwrap();
    for p in &report.problems {
        println!("  {p}");
    }
    report
}

#[tokio::test]
async fn an_export_verifies_and_replays_offline() {
    let (source, db) = postgres_store().await;
    let checkpoints = sealed_rounds(&source).await;
    // One more event, not sealed: not exported.
    source
        .append(request("customer-0", ExpectedVersion::Exact(4), 1))
        .await
        .unwrap();

    // The whole log.
    let whole = TempPath::new("crm-export-whole");
    let manifest = export(&source, &db.url, None, None, &whole.0, &mut |_, _| {})
        .await
        .unwrap();
    assert_eq!(
        (manifest.first_checkpoint, manifest.last_checkpoint),
        (1, 4)
    );
    assert_eq!((manifest.events, manifest.streams), (40, 10));
    assert!(
        !manifest.source.contains("postgres@"),
        "credentials are not written"
    );
    let report = verify_export(&whole, vec![(4, checkpoints[3].hash)]).await;
    assert!(report.ok());
    assert_eq!(
        (report.events, report.checkpoints, report.sealed_events),
        (40, 4, 40)
    );
    // The same events, field for field, positions included.
    let copy = SqliteEventStore::open(&whole.0).await.unwrap();
    let exported = copy.read_all(LogPosition::START, 1_000).await.unwrap();
    let original = source.read_all(LogPosition::START, 40).await.unwrap();
    assert_eq!(exported.len(), 40);
    for (a, b) in exported.iter().zip(&original) {
        assert_eq!(
            (
                a.log_position,
                &a.stream_id,
                a.stream_version,
                a.event_id,
                &a.payload,
                a.chain_hash
            ),
            (
                b.log_position,
                &b.stream_id,
                b.stream_version,
                b.event_id,
                &b.payload,
                b.chain_hash
            )
        );
        assert_eq!(a.metadata, b.metadata);
    }
    assert_eq!(
        copy.read_stream("customer-3", 0).await.unwrap().len(),
        4,
        "a stream replays from the file"
    );
    // Nothing can be added to an export, and it is never overwritten.
    let refused = copy
        .append(request("customer-x", ExpectedVersion::NoStream, 1))
        .await;
    assert!(
        format!("{refused:?}").contains("audit export"),
        "{refused:?}"
    );
    let again = export(&source, &db.url, None, None, &whole.0, &mut |_, _| {}).await;
    assert!(matches!(again, Err(crm_audit::ExportError::Exists(_))));

    // A period: from the third checkpoint on. Its streams start mid-chain.
    let part = TempPath::new("crm-export-part");
    let manifest = export(
        &source,
        &db.url,
        Some(checkpoints[2].sealed_at),
        None,
        &part.0,
        &mut |_, _| {},
    )
    .await
    .unwrap();
    assert_eq!(
        (manifest.first_checkpoint, manifest.last_checkpoint),
        (3, 4)
    );
    assert_eq!(manifest.first_prev_hash, checkpoints[1].hash);
    let report = verify_export(&part, vec![(2, checkpoints[1].hash)]).await;
    assert!(report.ok());
    assert_eq!((report.events, report.checkpoints), (20, 2));
    // A kept hash that differs from what the export chains to is reported.
    let report = verify_export(&part, vec![(2, checkpoints[0].hash)]).await;
    assert_eq!(report.problems[0].kind, ProblemKind::Anchor);

    // An export altered after it was written is caught like the store itself.
    let file = SqliteEventStore::open(&part.0).await.unwrap();
    let victim = file.read_all(LogPosition::START, 1).await.unwrap()[0].clone();
    let w = file.writer_pool();
    sqlx::query("DROP TRIGGER export_events_UPDATE")
        .execute(w)
        .await
        .unwrap();
    sqlx::query("DROP TRIGGER events_no_update")
        .execute(w)
        .await
        .unwrap();
    sqlx::query("UPDATE events SET actor = 'person:intruder' WHERE event_id = ?")
        .bind(victim.event_id.to_string())
        .execute(w)
        .await
        .unwrap();
    let report = verify_export(&part, vec![]).await;
    assert_eq!(
        (report.problems[0].kind, report.problems[0].event_id),
        (ProblemKind::Altered, Some(victim.event_id))
    );
}

#[tokio::test]
async fn nothing_sealed_is_nothing_to_export() {
    let (source, db) = postgres_store().await;
    source
        .append(request("customer-1", ExpectedVersion::NoStream, 2))
        .await
        .unwrap();
    let out = TempPath::new("crm-export-empty");
    let r = export(&source, &db.url, None, None, &out.0, &mut |_, _| {}).await;
    assert!(matches!(r, Err(crm_audit::ExportError::Nothing)), "{r:?}");
    assert!(!out.0.exists(), "no file is left behind");
}

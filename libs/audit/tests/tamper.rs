//! Tamper evidence on real stores: history is changed directly in the database (with
//! the append-only triggers switched off, as an intruder with the owner's rights would)
//! and `verify` must name the damage: a flipped payload byte, a deleted row, an inserted
//! row, two rows' positions swapped, an event rewritten with a recomputed link, a damaged
//! checkpoint, and a history rewritten consistently (caught by an anchored checkpoint).

use crm_audit::{seal_pending, verify, ProblemKind, VerifyOptions, VerifyReport};
use crm_eventstore::chain::{event_hash, ChainedFields};
use crm_eventstore::conformance::request;
use crm_eventstore::postgres::PgEventStore;
use crm_eventstore::testing::{postgres_store, sqlite_store, TestDatabase};
use crm_eventstore::{Append, ChainHash, EventStore, ExpectedVersion, RecordedEvent};

const STREAMS: usize = 12;
const EVENTS_PER_STREAM: u64 = 5;
const UNSEALED: usize = 3;

/// 60 events in 12 streams, written by interleaved batches, sealed by checkpoints of 16
/// events; then 3 more events left unsealed. Answers every event in log order.
async fn history<S: EventStore>(store: &S) -> Vec<RecordedEvent> {
    for round in 0..EVENTS_PER_STREAM {
        let batch = (0..STREAMS)
            .map(|s| {
                let expected = if round == 0 {
                    ExpectedVersion::NoStream
                } else {
                    ExpectedVersion::Exact(round)
                };
                request(&format!("customer-{s:02}"), expected, 1)
            })
            .collect::<Vec<_>>();
        // Several transactions per round, so the log spans many transaction ids.
        for chunk in batch.chunks(4) {
            for r in store.append_batch(chunk.to_vec()).await {
                r.unwrap();
            }
        }
    }
    // Seal once all 60 are visible (another test's open transaction can hold the
    // commit-safe horizon back for a moment).
    crm_eventstore::conformance::all_events(store, STREAMS * 5).await;
    let sealed = seal_pending(store, 16, &mut |_| {}).await.unwrap();
    assert_eq!(sealed.len(), 4, "60 events in checkpoints of 16");
    for s in 0..UNSEALED {
        store
            .append(request(
                &format!("customer-{s:02}"),
                ExpectedVersion::Exact(EVENTS_PER_STREAM),
                1,
            ))
            .await
            .unwrap();
    }
    let all = crm_eventstore::conformance::all_events(store, STREAMS * 5 + UNSEALED).await;
    assert_eq!(all.len(), STREAMS * 5 + UNSEALED);
    all
}

async fn check<S: EventStore>(store: &S) -> VerifyReport {
    check_with(store, VerifyOptions::default()).await
}

async fn check_with<S: EventStore>(store: &S, options: VerifyOptions) -> VerifyReport {
    let report = verify(store, &options, &mut |_| {}).await.unwrap();
    for p in &report.problems {
        println!("  {p}");
    }
    report
}

async fn intact<S: EventStore>(store: &S) -> Vec<RecordedEvent> {
    let events = history(store).await;
    let report = check(store).await;
    assert!(report.ok(), "{:?}", report.problems);
    assert_eq!(report.events, 63);
    assert_eq!(report.streams, STREAMS as u64);
    assert_eq!(report.checkpoints, 4);
    assert_eq!(report.sealed_events, 60);
    assert_eq!(report.unsealed_events, 3);
    events
}

async fn pg() -> (PgEventStore, TestDatabase, Vec<RecordedEvent>) {
    let (store, db) = postgres_store().await;
    let events = intact(&store).await;
    sqlx::query("ALTER TABLE events DISABLE TRIGGER USER")
        .execute(store.pool())
        .await
        .unwrap();
    (store, db, events)
}

async fn sql(store: &PgEventStore, statement: &str) {
    sqlx::query(statement)
        .execute(store.pool())
        .await
        .unwrap_or_else(|e| panic!("{statement}: {e}"));
}

fn first(report: &VerifyReport) -> &crm_audit::Problem {
    report
        .problems
        .first()
        .expect("verify must find the damage")
}

#[tokio::test]
async fn a_flipped_payload_byte_is_named() {
    let (store, _db, events) = pg().await;
    let victim = &events[20];
    // "客户 ✓" → "客户 ✔": one byte of the stored text differs.
    sql(
        &store,
        &format!(
            "UPDATE events SET payload = replace(payload::text, '✓', '✔')::jsonb WHERE position = {}",
            victim.log_position.position
        ),
    )
    .await;
    let report = check(&store).await;
    let p = first(&report);
    assert_eq!(p.kind, ProblemKind::Altered);
    assert_eq!(p.event_id, Some(victim.event_id));
    assert_eq!(p.position, Some(victim.log_position));
    assert_eq!(report.problems.len(), 1, "only that event");
}

#[tokio::test]
async fn a_changed_actor_or_time_is_named() {
    let (store, _db, events) = pg().await;
    let (a, b) = (&events[5], &events[40]);
    sql(
        &store,
        &format!(
            "UPDATE events SET actor = 'person:someone.else' WHERE position = {}",
            a.log_position.position
        ),
    )
    .await;
    sql(
        &store,
        &format!(
            "UPDATE events SET occurred_at = occurred_at - interval '1 day' WHERE position = {}",
            b.log_position.position
        ),
    )
    .await;
    let report = check(&store).await;
    let named: Vec<_> = report
        .problems
        .iter()
        .map(|p| (p.kind, p.event_id))
        .collect();
    assert_eq!(
        named,
        vec![
            (ProblemKind::Altered, Some(a.event_id)),
            (ProblemKind::Altered, Some(b.event_id))
        ]
    );
}

#[tokio::test]
async fn a_deleted_row_is_named() {
    let (store, _db, events) = pg().await;
    // A middle event of its stream, and the last event of another stream (which only
    // the checkpoint can miss: no later event chains to it).
    let middle = events
        .iter()
        .find(|e| e.stream_version == 2)
        .unwrap()
        .clone();
    let tail = events
        .iter()
        .rfind(|e| e.stream_id == "customer-11")
        .unwrap()
        .clone();
    assert_eq!(tail.stream_version, EVENTS_PER_STREAM);
    for e in [&middle, &tail] {
        sql(
            &store,
            &format!(
                "DELETE FROM events WHERE position = {}",
                e.log_position.position
            ),
        )
        .await;
    }
    let report = check(&store).await;
    let p = first(&report);
    assert_eq!(p.kind, ProblemKind::Deleted);
    assert_eq!(p.position, Some(middle.log_position));
    assert!(report
        .problems
        .iter()
        .any(|p| p.kind == ProblemKind::Deleted && p.position == Some(tail.log_position)));
    // The chain names the stream and version the hole is in.
    assert!(report
        .problems
        .iter()
        .any(|p| p.kind == ProblemKind::Deleted
            && p.stream_id.as_deref() == Some(middle.stream_id.as_str())
            && p.stream_version == Some(3)));
}

#[tokio::test]
async fn an_inserted_row_is_named_even_with_a_valid_link() {
    let (store, _db, events) = pg().await;
    // A well-formed first event of a new stream, with a correct chain link, slipped into
    // the sealed range: inside the first sealed transaction.
    let template = &events[0];
    let mut forged = template.clone();
    forged.stream_id = "customer-forged".into();
    forged.event_id = uuid::Uuid::new_v4();
    forged.chain_hash = event_hash(&ChainHash::GENESIS, &ChainedFields::of(&forged));
    let position = events
        .iter()
        .map(|e| e.log_position.position)
        .max()
        .unwrap()
        + 100;
    sqlx::query(
        "INSERT INTO events (transaction_id, position, stream_id, stream_version, event_id, event_type, \
             schema_version, payload, command_id, correlation_id, causation_id, actor, occurred_at, chain_hash) \
         OVERRIDING SYSTEM VALUE \
         VALUES ($1::bigint::text::xid8, $2, $3, 1, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
    )
    .bind(template.log_position.tx as i64)
    .bind(position as i64)
    .bind(&forged.stream_id)
    .bind(forged.event_id)
    .bind(&forged.event_type)
    .bind(forged.schema_version as i32)
    .bind(&forged.payload)
    .bind(forged.metadata.command_id)
    .bind(forged.metadata.correlation_id)
    .bind(forged.metadata.causation_id)
    .bind(&forged.metadata.actor)
    .bind(forged.metadata.occurred_at)
    .bind(&forged.chain_hash.0[..])
    .execute(store.pool())
    .await
    .unwrap();
    let report = check(&store).await;
    let p = first(&report);
    assert_eq!(p.kind, ProblemKind::Inserted);
    assert_eq!(p.event_id, Some(forged.event_id));
    assert_eq!(p.checkpoint, Some(1));
    assert_eq!(report.problems.len(), 1);
}

#[tokio::test]
async fn two_swapped_positions_are_named() {
    let (store, _db, events) = pg().await;
    let (a, b) = (&events[3], &events[30]);
    assert_ne!(a.stream_id, b.stream_id);
    // Positions are an identity column: an intruder first lifts that too.
    sql(
        &store,
        "ALTER TABLE events ALTER COLUMN position SET GENERATED BY DEFAULT",
    )
    .await;
    let (pa, pb) = (a.log_position.position, b.log_position.position);
    sql(
        &store,
        &format!("UPDATE events SET position = -1 WHERE position = {pa}"),
    )
    .await;
    sql(
        &store,
        &format!("UPDATE events SET position = {pa} WHERE position = {pb}"),
    )
    .await;
    sql(
        &store,
        &format!("UPDATE events SET position = {pb} WHERE position = -1"),
    )
    .await;
    let report = check(&store).await;
    let moved: Vec<_> = report
        .problems
        .iter()
        .filter(|p| p.kind == ProblemKind::Moved)
        .map(|p| p.event_id)
        .collect();
    assert!(moved.contains(&Some(a.event_id)) && moved.contains(&Some(b.event_id)));
    assert_eq!(first(&report).kind, ProblemKind::Moved);
}

#[tokio::test]
async fn an_event_rewritten_with_recomputed_links_is_named() {
    let (store, _db, events) = pg().await;
    // The intruder changes an event and recomputes its link and every later link of its
    // stream: the stream chain is valid again, the checkpoint is not.
    let stream: Vec<&RecordedEvent> = events
        .iter()
        .filter(|e| e.stream_id == "customer-04")
        .collect();
    let mut prev = stream[1].chain_hash;
    for (i, e) in stream.iter().enumerate().skip(2) {
        let mut e = (*e).clone();
        if i == 2 {
            e.payload["text"] = serde_json::json!("forged");
        }
        e.chain_hash = event_hash(&prev, &ChainedFields::of(&e));
        prev = e.chain_hash;
        sqlx::query("UPDATE events SET payload = $1, chain_hash = $2 WHERE event_id = $3")
            .bind(&e.payload)
            .bind(&e.chain_hash.0[..])
            .bind(e.event_id)
            .execute(store.pool())
            .await
            .unwrap();
    }
    let report = check(&store).await;
    let p = first(&report);
    assert_eq!(p.kind, ProblemKind::Relinked);
    assert_eq!(p.event_id, Some(stream[2].event_id));
    assert!(report
        .problems
        .iter()
        .all(|p| p.kind == ProblemKind::Relinked));
}

#[tokio::test]
async fn damaged_checkpoints_and_rewritten_histories_are_caught() {
    let (store, _db, events) = pg().await;
    let head = check(&store).await.head.unwrap();
    sql(
        &store,
        "ALTER TABLE global_checkpoints DISABLE TRIGGER USER",
    )
    .await;
    // A leaf changed inside checkpoint 2.
    sql(
        &store,
        "UPDATE global_checkpoints SET leaves = set_byte(leaves, 20, get_byte(leaves, 20) # 1) WHERE seq = 2",
    )
    .await;
    let report = check(&store).await;
    assert!(report
        .problems
        .iter()
        .any(|p| p.kind == ProblemKind::Checkpoint && p.checkpoint == Some(2)));

    // Now the intruder rewrites everything consistently: event, links, and every
    // checkpoint recomputed. Only a checkpoint hash kept outside the database tells.
    sql(&store, "DELETE FROM global_checkpoints").await;
    let victim = &events[0];
    let mut forged = victim.clone();
    forged.payload["text"] = serde_json::json!("forged");
    forged.chain_hash = event_hash(&ChainHash::GENESIS, &ChainedFields::of(&forged));
    let mut prev = forged.chain_hash;
    sqlx::query("UPDATE events SET payload = $1, chain_hash = $2 WHERE event_id = $3")
        .bind(&forged.payload)
        .bind(&forged.chain_hash.0[..])
        .bind(forged.event_id)
        .execute(store.pool())
        .await
        .unwrap();
    for e in events
        .iter()
        .filter(|e| e.stream_id == victim.stream_id && e.stream_version > 1)
    {
        let mut e = e.clone();
        e.chain_hash = event_hash(&prev, &ChainedFields::of(&e));
        prev = e.chain_hash;
        sqlx::query("UPDATE events SET chain_hash = $1 WHERE event_id = $2")
            .bind(&e.chain_hash.0[..])
            .bind(e.event_id)
            .execute(store.pool())
            .await
            .unwrap();
    }
    seal_pending(&store, 16, &mut |_| {}).await.unwrap();
    let consistent = check(&store).await;
    assert!(
        consistent.ok(),
        "a consistent rewrite passes without an anchor"
    );
    let anchored = check_with(
        &store,
        VerifyOptions {
            expect: vec![head],
            ..Default::default()
        },
    )
    .await;
    let p = first(&anchored);
    assert_eq!(p.kind, ProblemKind::Anchor);
    assert_eq!(p.checkpoint, Some(head.0));
}

#[tokio::test]
async fn sqlite_tampering_is_named_too() {
    let (store, _path) = sqlite_store().await;
    let events = intact(&store).await;
    let w = store.writer_pool();
    for t in ["events_no_update", "events_no_delete"] {
        sqlx::query(&format!("DROP TRIGGER {t}"))
            .execute(w)
            .await
            .unwrap();
    }
    let (flipped, deleted) = (&events[10], &events[33]);
    sqlx::query("UPDATE events SET payload = replace(payload, '✓', '✔') WHERE position = ?")
        .bind(flipped.log_position.position as i64)
        .execute(w)
        .await
        .unwrap();
    sqlx::query("DELETE FROM events WHERE position = ?")
        .bind(deleted.log_position.position as i64)
        .execute(w)
        .await
        .unwrap();
    let report = check(&store).await;
    let p = first(&report);
    assert_eq!(
        (p.kind, p.event_id),
        (ProblemKind::Altered, Some(flipped.event_id))
    );
    assert!(report
        .problems
        .iter()
        .any(|p| p.kind == ProblemKind::Deleted && p.position == Some(deleted.log_position)));

    // The failed verification is recorded as it came out, and read back as the last one.
    use crm_audit::verification::{last, record, Verification};
    assert_eq!(last(&store).await.unwrap(), None);
    let result = Verification::of(&report, std::time::Duration::from_millis(1_234));
    let at = chrono::Utc::now();
    assert_eq!(
        record(&store, &result, "person:auditor", at).await.unwrap(),
        1
    );
    let read = last(&store).await.unwrap().expect("recorded");
    assert_eq!((read.number, read.actor.as_str()), (1, "person:auditor"));
    assert_eq!(read.result, result);
    assert!(!read.result.ok);
    assert_eq!(read.result.problems, report.problems.len() as u64);
    assert_eq!(read.result.through, report.through);
    let named = read.result.first_problem.expect("the first problem");
    assert!(named.contains(&flipped.event_id.to_string()), "{named}");
    assert_eq!(read.result.took_ms, 1_234);
}

#[tokio::test]
async fn events_stored_before_the_chains_are_reported_and_still_extended() {
    let (store, _db) = postgres_store().await;
    // An event as written before migration 0004: no link (rows written since must have
    // one, so the check is lifted to make it).
    sql(
        &store,
        "ALTER TABLE events DROP CONSTRAINT events_chain_hash_len",
    )
    .await;
    sqlx::query(
        "INSERT INTO events (stream_id, stream_version, event_id, event_type, schema_version, \
             payload, command_id, correlation_id, actor, occurred_at, chain_hash) \
         VALUES ('customer-legacy', 1, gen_random_uuid(), 'CustomerRegistered', 1, '{}', \
             gen_random_uuid(), gen_random_uuid(), 'person:x', now(), '\\x')",
    )
    .execute(store.pool())
    .await
    .unwrap();
    // A process that never saw the stream appends after it.
    store
        .append(request("customer-legacy", ExpectedVersion::Exact(1), 1))
        .await
        .unwrap();
    crm_eventstore::conformance::all_events(&store, 2).await;
    let report = check(&store).await;
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    assert_eq!(report.problems[0].kind, ProblemKind::Altered);
    assert_eq!(report.problems[0].stream_version, Some(1));
    assert!(report.problems[0].detail.contains("no chain link"));
}

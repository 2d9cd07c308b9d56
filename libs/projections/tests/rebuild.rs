//! Rebuild and verify against a real event store: verification finds a tampered row
//! and reports 0 differences otherwise; a rebuild switches over while queries run and
//! events keep arriving, and repairs what was wrong.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use chrono::Duration;
use crm_eventstore::testing::TestDatabase;
use crm_eventstore::{EventStore, LogPosition};
use crm_projections::rebuild::{rebuild, verify};
use crm_projections::testing::{append, t0, Log};
use crm_projections::{Prepared, ReadStore, Target, Writer, PROJECTIONS};
use uuid::Uuid;

/// What a projector does: apply the log to the live read models, a page at a time, the
/// pages' counter amounts into three stripes in turn (as partitions add to their own).
async fn project_all<S: EventStore>(store: &S, read: &ReadStore, from: LogPosition) -> LogPosition {
    let mut cursor = from;
    for page in 0.. {
        let events = store.read_all(cursor, 500).await.unwrap();
        let Some(last) = events.last() else {
            return cursor;
        };
        cursor = last.log_position;
        let batch: Vec<Prepared> = events.into_iter().map(|e| Prepared::new(e, 0)).collect();
        let writer = Writer::consumer("projector", batch.len()).striped(page % 3 + 1);
        read.apply_to(&batch, &Target::Live, &writer).await.unwrap();
    }
    unreachable!("pages run out")
}

fn workload(customers: usize) -> Log {
    let mut log = Log::default();
    let managers: Vec<String> = (0..6).map(|_| Uuid::new_v4().to_string()).collect();
    for (i, m) in managers.iter().enumerate() {
        log.manager(m, &format!("team-{}", i % 2));
    }
    for i in 0..customers {
        let c = Uuid::new_v4().to_string();
        let at = t0() + Duration::minutes(i as i64);
        let m = &managers[i % managers.len()];
        log.customer(&c, at);
        log.assign(&c, m, at + Duration::hours(1));
        log.contact(&c, m, at + Duration::hours(2));
        log.stage(&c, "lead", "contacted", at + Duration::hours(2));
        if i % 3 == 0 {
            log.complaint(&c, Some(m), at + Duration::hours(3), 120, 3600, 4);
        }
        if i % 4 == 0 {
            log.release(&c, m, at + Duration::hours(5));
        } else if i % 5 == 0 {
            log.unanswered_complaint(&c, Some(m), &managers[0], at + Duration::hours(4));
            log.pool_return(&c, m, at + Duration::days(30));
        }
    }
    log
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_finds_tampering_and_rebuild_repairs_it_while_queries_run() {
    let db = TestDatabase::create().await;
    let store = crm_eventstore::postgres::PgEventStore::connect(&db.url, 4)
        .await
        .unwrap();
    let read = ReadStore::connect(&db.url, 4).await.unwrap();
    let first = workload(150);
    append(&store, &first.events).await;
    let cursor = project_all(&store, &read, LogPosition::START).await;

    for p in PROJECTIONS {
        let report = verify(&store, &read, p, &mut |_| {}).await.unwrap();
        assert_eq!(report.differing(), 0, "{}: {:?}", p.name, report.tables);
        assert!(report.tables.iter().all(|t| t.live_rows == t.rebuilt_rows));
    }

    // Tamper with the live ownership view: verification names the row.
    let ReadStore::Postgres(pool) = &read else {
        unreachable!()
    };
    let victim: String = sqlx::query_scalar(
        "SELECT customer_id FROM rm_customers WHERE owner_id IS NOT NULL LIMIT 1",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    sqlx::query("UPDATE rm_customers SET owner_id = 'nobody' WHERE customer_id = $1")
        .bind(&victim)
        .execute(pool)
        .await
        .unwrap();
    let ownership = crm_projections::schema::OWNERSHIP;
    let report = verify(&store, &read, ownership, &mut |_| {}).await.unwrap();
    assert_eq!(report.differing(), 1);
    let customers = report
        .tables
        .iter()
        .find(|t| t.table == "rm_customers")
        .unwrap();
    assert!(
        customers.examples[0].starts_with(&victim),
        "{:?}",
        customers.examples
    );

    // Rebuild while a reader queries without pause and new events are written and
    // projected.
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicU64::new(0));
    let reader = {
        let (read, stop, reads) = (read.clone(), stop.clone(), reads.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                read.customers("", 50).await.expect("queries keep working");
                reads.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    let second = workload(60);
    let writer = {
        let (store, read, events) = (store.clone(), read.clone(), second.events.clone());
        tokio::spawn(async move {
            for chunk in events.chunks(20) {
                append(&store, chunk).await;
                project_all(&store, &read, cursor).await;
            }
        })
    };
    let mut calls = 0;
    let report = rebuild(&store, &read, ownership, &mut |p| {
        calls += 1;
        assert!(p.done <= p.total);
    })
    .await
    .unwrap();
    writer.await.unwrap();
    project_all(&store, &read, cursor).await;
    stop.store(true, Ordering::Relaxed);
    reader.await.unwrap();
    assert!(calls > 0, "progress reported");
    assert!(reads.load(Ordering::Relaxed) > 0);
    assert!(report.events_read >= first.events.len() as u64);
    println!(
        "rebuilt {}: {} events read, {} applied in the switch-over, {} queries answered meanwhile",
        report.projection,
        report.events_read,
        report.caught_up_in_switch,
        reads.load(Ordering::Relaxed)
    );

    for p in PROJECTIONS {
        if p != ownership {
            rebuild(&store, &read, p, &mut |_| {}).await.unwrap();
        }
        let report = verify(&store, &read, p, &mut |_| {}).await.unwrap();
        assert_eq!(
            report.differing(),
            0,
            "{} after the rebuild: {:?}",
            p.name,
            report.tables
        );
        // Every rebuilt table has its unique key and its indexes (a counter's stripes
        // one more).
        let mut expected: Vec<(String, usize)> = p
            .tables
            .iter()
            .map(|t| {
                let n = 1 + t.indexes.len() + usize::from(t.striped(None));
                (t.name.to_string(), n)
            })
            .collect();
        expected.push((p.positions_table(), 1));
        for (table, n) in expected {
            let (indexes, unique): (i64, i64) = sqlx::query_as(
                "SELECT count(*), count(*) FILTER (WHERE i.indisunique) \
                 FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid \
                 WHERE c.relname = $1 AND c.relnamespace = 'public'::regnamespace",
            )
            .bind(&table)
            .fetch_one(pool)
            .await
            .unwrap();
            assert_eq!((indexes, unique), (n as i64, 1), "indexes of {table}");
            // And the planner's statistics: analyzed, not taken for empty.
            let analyzed: bool = sqlx::query_scalar(
                "SELECT last_analyze IS NOT NULL FROM pg_stat_user_tables                  WHERE relname = $1 AND schemaname = 'public'",
            )
            .bind(&table)
            .fetch_one(pool)
            .await
            .unwrap();
            assert!(analyzed, "{table} analyzed after the rebuild");
        }
    }
    // The analysts' views follow the switch-over, and stay read-only and impersonal.
    let mut conn = pool.acquire().await.unwrap();
    sqlx::query("SET ROLE crm_analyst")
        .execute(&mut *conn)
        .await
        .unwrap();
    let n: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM v_customers WHERE owner_id IS NOT NULL OR owner_id IS NULL",
    )
    .fetch_one(&mut *conn)
    .await
    .unwrap();
    assert_eq!(n, 210);
    for refused in [
        "SELECT count(*) FROM rm_customers",
        "SELECT count(*) FROM rm_timeline",
        "SELECT display_name FROM v_customers",
        "UPDATE v_customers SET stage = 'lead'",
        "DELETE FROM v_contacts",
    ] {
        let err = sqlx::query(refused).execute(&mut *conn).await;
        assert!(err.is_err(), "{refused} was allowed");
    }
    sqlx::query("RESET ROLE").execute(&mut *conn).await.unwrap();
    drop(conn);

    let fixed = read.customer(&victim).await.unwrap().unwrap();
    assert_ne!(
        fixed.owner_id.as_deref(),
        Some("nobody"),
        "the rebuild repaired it"
    );
    assert_eq!(read.customers("", 100_000).await.unwrap().len(), 150 + 60);
}

#[tokio::test]
async fn rebuild_and_verify_work_on_the_embedded_store() {
    let path = crm_eventstore::testing::TempPath::new("crm-rebuild");
    let store = crm_eventstore::sqlite::SqliteEventStore::open(&path.0)
        .await
        .unwrap();
    let read_path = crm_eventstore::testing::TempPath::new("crm-rebuild-read");
    let read = ReadStore::connect(&format!("sqlite://{}", read_path.0.display()), 2)
        .await
        .unwrap();
    let log = workload(40);
    append(&store, &log.events).await;
    project_all(&store, &read, LogPosition::START).await;
    // Customers 5, 10, 15, 25, 30, 35 met the scheduler: a warning and a return each, and a
    // complaint warned, breached and escalated; they count on their owner's KPIs.
    let facts = read.facts().await.unwrap();
    fn kinds(mut v: Vec<&str>) -> Vec<&str> {
        v.sort();
        v
    }
    assert_eq!(
        kinds(facts.pool_events.iter().map(|e| e.kind.as_str()).collect()),
        [vec!["return"; 6], vec!["warning"; 6]].concat()
    );
    assert_eq!(
        kinds(facts.sla_events.iter().map(|e| e.kind.as_str()).collect()),
        [vec!["breach"; 6], vec!["escalation"; 6], vec!["warning"; 6]].concat()
    );
    assert!(facts
        .sla_events
        .iter()
        .all(|e| e.automatic && e.owner_id.is_some()));
    for p in PROJECTIONS {
        let before = read.customers("", 1000).await.unwrap();
        let r = rebuild(&store, &read, p, &mut |_| {}).await.unwrap();
        assert_eq!(r.events_read, log.events.len() as u64);
        assert_eq!(read.customers("", 1000).await.unwrap(), before);
        assert_eq!(
            verify(&store, &read, p, &mut |_| {})
                .await
                .unwrap()
                .differing(),
            0
        );
    }
}

/// The projector's statements and the rebuild's fold agree on a random book (every event
/// type, contacts recorded late among them): verify finds 0 differing rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_random_book_rebuilds_to_the_projected_rows() {
    let seed = std::env::var("CRM_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| t0().timestamp_micros() as u64 ^ std::process::id() as u64);
    println!("seed: CRM_TEST_SEED={seed}");
    let db = TestDatabase::create().await;
    let store = crm_eventstore::postgres::PgEventStore::connect(&db.url, 4)
        .await
        .unwrap();
    let read = ReadStore::connect(&db.url, 4).await.unwrap();
    let book = crm_projections::testing::random_book(seed, 200, 30);
    append(&store, &book.events).await;
    project_all(&store, &read, LogPosition::START).await;
    for p in PROJECTIONS {
        let report = verify(&store, &read, p, &mut |_| {}).await.unwrap();
        assert_eq!(report.differing(), 0, "{}: {:?}", p.name, report.tables);
    }
}

/// Transaction ids are the cluster's: a transaction open in another database (a migration
/// elsewhere, a session left open) holds the log's commit-safe horizon below events
/// already committed here. A rebuild waits for the transactions in flight when it began,
/// then holds every event committed before it: it does not end short, reporting success.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_holds_every_event_committed_before_it_began() {
    use sqlx::Connection as _;
    let elsewhere = TestDatabase::create().await;
    let mut blocker = sqlx::PgConnection::connect(&elsewhere.url).await.unwrap();
    let mut open = blocker.begin().await.unwrap();
    // An id of its own, before the events below take theirs.
    sqlx::query("SELECT pg_current_xact_id()")
        .execute(&mut *open)
        .await
        .unwrap();

    let db = TestDatabase::create().await;
    let store = crm_eventstore::postgres::PgEventStore::connect(&db.url, 4)
        .await
        .unwrap();
    let read = ReadStore::connect(&db.url, 4).await.unwrap();
    let log = workload(20);
    append(&store, &log.events).await;
    let ownership = PROJECTIONS[0];
    let mut progress = |_| {};
    let rebuilt = rebuild(&store, &read, ownership, &mut progress);
    tokio::pin!(rebuilt);
    let early = tokio::time::timeout(std::time::Duration::from_millis(500), &mut rebuilt).await;
    assert!(
        early.is_err(),
        "the rebuild must wait for the transaction in flight when it began: {early:?}"
    );
    open.rollback().await.unwrap();
    let report = rebuilt.await.unwrap();
    assert_eq!(report.events_read, log.events.len() as u64, "{report:?}");
    assert!(report.settle_seconds >= 0.4, "{report:?}");
    let rows: i64 = match &read {
        ReadStore::Postgres(pool) => sqlx::query_scalar("SELECT count(*) FROM rm_customers")
            .fetch_one(pool)
            .await
            .unwrap(),
        _ => unreachable!(),
    };
    assert_eq!(rows, 20, "every customer registered before the rebuild");
}

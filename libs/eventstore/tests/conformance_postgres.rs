//! The event-store conformance suite on PostgreSQL, one fresh database per test.

use crm_eventstore::postgres::PgEventStore;
use crm_eventstore::testing::{postgres_store, TestDatabase};
use crm_eventstore::BeforeCommit;

async fn make(hook: Option<BeforeCommit>) -> (PgEventStore, TestDatabase) {
    let (store, db) = postgres_store().await;
    (
        match hook {
            Some(h) => store.with_before_commit(h),
            None => store,
        },
        db,
    )
}

crm_eventstore::conformance_suite!(make);

#[tokio::test]
async fn history_cannot_be_rewritten_in_the_database() {
    let (store, _db) = postgres_store().await;
    crm_eventstore::conformance::append_and_read_back(store.clone()).await;
    for sql in [
        "UPDATE events SET payload = '{}'::jsonb",
        "DELETE FROM events",
        "TRUNCATE events",
        "UPDATE commands SET fingerprint = 'x'",
        "DELETE FROM commands",
    ] {
        let err = sqlx::query(sql).execute(store.pool()).await.expect_err(sql);
        assert!(err.to_string().contains("append-only"), "{sql}: {err}");
    }
    assert_eq!(store.read_stream("customer-1", 0).await.unwrap().len(), 3);
}

use crm_eventstore::EventStore;

#[tokio::test]
async fn two_processes_share_one_store() {
    let (a, db) = postgres_store().await;
    let b = PgEventStore::connect(&db.url, 2).await.unwrap();
    crm_eventstore::conformance::two_processes_share_one_store(a, b).await;
}

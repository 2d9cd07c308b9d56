//! The event-store conformance suite on SQLite, one fresh file per test.

use crm_eventstore::sqlite::SqliteEventStore;
use crm_eventstore::testing::{sqlite_store, TempPath};
use crm_eventstore::{BeforeCommit, Streams};

async fn make(hook: Option<BeforeCommit>) -> (SqliteEventStore, TempPath) {
    let (store, path) = sqlite_store().await;
    (
        match hook {
            Some(h) => store.with_before_commit(h),
            None => store,
        },
        path,
    )
}

crm_eventstore::conformance_suite!(make);

#[tokio::test]
async fn history_cannot_be_rewritten_in_the_database() {
    let (store, _path) = sqlite_store().await;
    crm_eventstore::conformance::append_and_read_back(store.clone()).await;
    for sql in [
        "UPDATE events SET payload = '{}'",
        "DELETE FROM events",
        "UPDATE commands SET fingerprint = 'x'",
        "DELETE FROM commands",
    ] {
        let err = sqlx::query(sql)
            .execute(store.writer_pool())
            .await
            .expect_err(sql);
        assert!(err.to_string().contains("append-only"), "{sql}: {err}");
    }
    assert_eq!(store.read_stream("customer-1", 0).await.unwrap().len(), 3);
}

#[tokio::test]
async fn two_processes_share_one_store() {
    let (a, path) = sqlite_store().await;
    let b = SqliteEventStore::open(&path.0).await.unwrap();
    crm_eventstore::conformance::two_processes_share_one_store(a, b).await;
}

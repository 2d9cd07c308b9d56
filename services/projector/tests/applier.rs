//! The instance's applier against a real read-model database: batches handed in by
//! several partitions while it was busy go in one transaction, each partition's
//! checkpoint taking its own share, the counters into the lowest partition's stripe.

use chrono::Duration;
use crm_eventstore::testing::TestDatabase;
use crm_projections::testing::{t0, Log};
use crm_projections::{Fate, ReadStore};
use crm_projector::apply::{Applier, Gather};

const C1: &str = "01930000-0000-7000-8000-0000000000c1";
const C2: &str = "01930000-0000-7000-8000-0000000000c2";
const A: &str = "01930000-0000-7000-8000-0000000000a1";

/// Up to 1,024 events a transaction, waiting `linger` for them.
fn gather(linger: Duration) -> Gather {
    Gather {
        most: 1024,
        linger: linger.to_std().unwrap(),
    }
}

async fn column(store: &ReadStore, sql: &str) -> Vec<(String, i64)> {
    let ReadStore::Postgres(pool) = store else {
        unreachable!("postgres")
    };
    sqlx::query_as(sql).fetch_all(pool).await.unwrap()
}

#[tokio::test]
async fn batches_handed_in_meanwhile_share_one_transaction() {
    let db = TestDatabase::create().await;
    let store = ReadStore::connect(&db.url, 2).await.unwrap();
    let mut log = Log::default();
    log.manager(A, "east-1");
    log.customer(C1, t0());
    log.assign(C1, A, t0() + Duration::hours(1));
    log.customer(C2, t0());
    let events = log.prepared();
    // C1's stream (and the manager's) as partition 5 delivered it, C2's as partition 3.
    let (five, three): (Vec<_>, Vec<_>) = events
        .into_iter()
        .partition(|p| !p.event.stream_id.contains(C2));
    assert_eq!((five.len(), three.len()), (3, 1));

    let applier = Applier::spawn(store.clone(), gather(Duration::zero()));
    // The applier runs only once this task waits: it finds both batches handed in.
    let ((back5, fates5), (back3, fates3)) = tokio::join!(
        applier.apply(5, "read-models-p05", five, false),
        applier.apply(3, "read-models-p03", three, false)
    );
    assert_eq!(fates5.unwrap(), [Fate::Applied; 3]);
    assert_eq!(fates3.unwrap(), [Fate::Applied]);
    assert_eq!(
        (back5.len(), back3.len()),
        (3, 1),
        "each partition's events back"
    );
    assert!(back3.iter().all(|p| p.event.stream_id.contains(C2)));

    assert_eq!(
        column(
            &store,
            "SELECT consumer, events_applied FROM rm_checkpoints ORDER BY consumer"
        )
        .await,
        [
            ("read-models-p03".to_string(), 1),
            ("read-models-p05".to_string(), 3)
        ],
        "each checkpoint took its own share"
    );
    let transactions = column(
        &store,
        "SELECT 'stripes', count(DISTINCT stripe) FROM rm_funnel_now",
    )
    .await;
    assert_eq!(
        transactions,
        [("stripes".to_string(), 1)],
        "one transaction"
    );
    assert_eq!(
        column(
            &store,
            "SELECT kind, min(stripe) FROM rm_funnel_now GROUP BY kind ORDER BY kind LIMIT 1"
        )
        .await[0]
            .1,
        4,
        "the lowest partition's stripe"
    );
}

/// A batch the database refuses every time (here a text with a NUL character, which no
/// read model can store) fails alone: the batch that shared its transaction is applied.
#[tokio::test]
async fn one_partitions_failing_batch_does_not_fail_the_others() {
    let db = TestDatabase::create().await;
    let store = ReadStore::connect(&db.url, 2).await.unwrap();
    let mut log = Log::default();
    log.customer(C1, t0());
    log.customer(C2, t0());
    log.events[0].payload["region"] = "east\u{0}".into();
    let mut events = log.prepared();
    let good = events.split_off(1);

    let applier = Applier::spawn(store.clone(), gather(Duration::zero()));
    let ((_, bad), (_, fine)) = tokio::join!(
        applier.apply(5, "read-models-p05", events, false),
        applier.apply(3, "read-models-p03", good, false)
    );
    assert!(bad.unwrap_err().contains("NUL"));
    assert_eq!(fine.unwrap(), [Fate::Applied]);
    assert_eq!(
        column(
            &store,
            "SELECT consumer, events_applied FROM rm_checkpoints"
        )
        .await,
        [("read-models-p03".to_string(), 1)]
    );
}

/// The stripes the funnel's counters were added to: one per transaction (each adds to
/// its lowest partition's).
async fn stripes(store: &ReadStore) -> Vec<(String, i64)> {
    column(
        store,
        "SELECT 'stripe', stripe FROM rm_funnel_now GROUP BY stripe ORDER BY stripe",
    )
    .await
}

/// A batch handed in while a transaction lingers joins it; without the linger, or when
/// the first partition is behind (more is coming anyway), a batch handed in a moment
/// after the first is a transaction of its own. A transaction that already holds `most`
/// events, or every partition held, does not wait.
#[tokio::test]
async fn a_transaction_waits_its_linger_for_more_batches() {
    let (mut log, mut late) = (Log::default(), Log::default());
    log.customer(C1, t0());
    late.customer(C2, t0());
    // (linger, the first partition behind, the transactions' stripes)
    let cases = [
        (Duration::milliseconds(2000), false, vec![4]),
        (Duration::zero(), false, vec![4, 6]),
        (Duration::milliseconds(2000), true, vec![4, 6]),
    ];
    for (linger, behind, want) in cases {
        let db = TestDatabase::create().await;
        let store = ReadStore::connect(&db.url, 2).await.unwrap();
        let applier = Applier::spawn(store.clone(), gather(linger));
        let _held = [applier.hold(), applier.hold(), applier.hold()];
        let later = async {
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            applier
                .apply(5, "read-models-p05", late.prepared(), false)
                .await
        };
        let ((_, first), (_, second)) = tokio::join!(
            applier.apply(3, "read-models-p03", log.prepared(), behind),
            later
        );
        assert_eq!(
            (first.unwrap(), second.unwrap()),
            (vec![Fate::Applied], vec![Fate::Applied])
        );
        let got: Vec<i64> = stripes(&store).await.into_iter().map(|(_, s)| s).collect();
        assert_eq!(
            got, want,
            "stripes with a linger of {linger}, behind: {behind}"
        );
    }
    // A transaction begins at once, whatever its linger, when it is full, and when every
    // partition the instance holds is in it (none can hand in more).
    let long = std::time::Duration::from_secs(60);
    for (most, held) in [(1, 3), (1024, 1)] {
        let db = TestDatabase::create().await;
        let store = ReadStore::connect(&db.url, 2).await.unwrap();
        let applier = Applier::spawn(store.clone(), Gather { most, linger: long });
        let _held: Vec<_> = (0..held).map(|_| applier.hold()).collect();
        let applied = tokio::time::timeout(
            std::time::Duration::from_secs(30),
            applier.apply(3, "read-models-p03", log.prepared(), false),
        )
        .await;
        let answer = applied.unwrap_or_else(|_| panic!("waited: most {most}, held {held}"));
        assert_eq!(answer.1.unwrap(), [Fate::Applied]);
    }
}

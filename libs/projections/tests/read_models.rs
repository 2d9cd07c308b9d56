//! The read models on both backends, from hand-built stored events: what each view
//! answers, and that duplicates, reordering and poison never change the result.

use chrono::Duration;
use crm_eventstore::testing::{TempPath, TestDatabase};
use crm_projections::testing::{t0, Log};
use crm_projections::{Fate, PortfolioBy, Prepared, ReadStore};
use serde_json::json;

const C1: &str = "01930000-0000-7000-8000-0000000000c1";
const C2: &str = "01930000-0000-7000-8000-0000000000c2";
const A: &str = "01930000-0000-7000-8000-0000000000a1";
const B: &str = "01930000-0000-7000-8000-0000000000a2";

fn day() -> Log {
    let mut log = Log::default();
    log.manager(A, "east-1");
    log.manager(B, "north-2");
    log.customer(C1, t0());
    log.customer(C2, t0());
    log.assign(C1, A, t0() + Duration::hours(1));
    log.contact(C1, A, t0() + Duration::hours(2));
    log.transfer(C1, A, B, t0() + Duration::hours(3));
    log.release(C1, B, t0() + Duration::hours(4));
    log.claim(C1, A, t0() + Duration::hours(5));
    log.assign(C2, B, t0() + Duration::hours(6));
    log
}

async fn ownership_views_answer_each_question(store: ReadStore) {
    let log = day();
    let report = store.apply(&log.prepared(), Some("test-p0")).await.unwrap();
    assert_eq!(report.count(Fate::Applied), log.events.len());

    let c1 = store.customer(C1).await.unwrap().expect("C1");
    assert_eq!(c1.owner_id.as_deref(), Some(A));
    assert_eq!(c1.owner_team.as_deref(), Some("east-1"));
    assert_eq!(
        c1.owned_since_us,
        Some((t0() + Duration::hours(5)).timestamp_micros())
    );
    assert_eq!(
        c1.last_contact_at_us,
        Some((t0() + Duration::hours(2)).timestamp_micros())
    );

    let periods = store.ownership_timeline(C1).await.unwrap();
    let owners: Vec<(&str, i64, Option<i64>, &str)> = periods
        .iter()
        .map(|p| {
            (
                p.manager_id.as_str(),
                p.from_us,
                p.to_us,
                p.start_event.as_str(),
            )
        })
        .collect();
    let h = |n: i64| (t0() + Duration::hours(n)).timestamp_micros();
    assert_eq!(
        owners,
        vec![
            (A, h(1), Some(h(3)), "OwnerAssigned"),
            (B, h(3), Some(h(4)), "OwnershipTransferred"),
            (A, h(5), None, "ClaimedFromPool"),
        ]
    );
    assert_eq!(periods[1].end_event.as_deref(), Some("ReleasedToPool"));
    assert_eq!(periods[1].team, "north-2");

    // Who owned C1 at each instant, exact to the event.
    let at = |us: i64| {
        let store = store.clone();
        async move { store.owner_at(C1, us).await.unwrap().map(|p| p.manager_id) }
    };
    assert_eq!(at(h(1) - 1).await, None, "before the first assignment");
    assert_eq!(
        at(h(1)).await.as_deref(),
        Some(A),
        "from the instant of the event"
    );
    assert_eq!(at(h(3) - 1).await.as_deref(), Some(A));
    assert_eq!(at(h(3)).await.as_deref(), Some(B));
    assert_eq!(at(h(4)).await, None, "in the pool");
    assert_eq!(at(h(5)).await.as_deref(), Some(A));

    assert_eq!(
        store
            .portfolio(A)
            .await
            .unwrap()
            .iter()
            .map(|c| c.customer_id.as_str())
            .collect::<Vec<_>>(),
        vec![C1]
    );
    assert_eq!(store.pool("", 100).await.unwrap().len(), 0);
    let by_team = store.portfolio_counts(PortfolioBy::Team).await.unwrap();
    assert_eq!(
        by_team
            .iter()
            .map(|c| (c.key.as_str(), c.customers))
            .collect::<Vec<_>>(),
        vec![("east-1", 2)],
        "C2 was assigned in east-1 too"
    );
    assert_eq!(store.managers().await.unwrap().len(), 2);

    // The 360 view: newest first, paged.
    let newest = store.timeline(C1, 0, 2).await.unwrap();
    assert_eq!(
        newest
            .iter()
            .map(|t| t.event_type.as_str())
            .collect::<Vec<_>>(),
        vec!["ClaimedFromPool", "ReleasedToPool"]
    );
    let older = store.timeline(C1, newest[1].version, 10).await.unwrap();
    assert_eq!(older.len(), 4);
    assert_eq!(older.last().unwrap().event_type, "CustomerRegistered");
    assert!(
        older[0].summary.contains("transferred"),
        "{}",
        older[0].summary
    );

    let cps = store.checkpoints().await.unwrap();
    assert_eq!(cps.len(), 1);
    assert_eq!(cps[0].stream_sequence, log.events.len() as i64);
    assert_eq!(cps[0].events_applied, log.events.len() as i64);
}

async fn duplicates_and_reordering_change_nothing(store: ReadStore, reference: ReadStore) {
    let log = day();
    reference.apply(&log.prepared(), None).await.unwrap();

    // Deliver in a scrambled order with every event twice, in small batches; what comes
    // early is delivered again later, as JetStream redelivers what is not acknowledged.
    let mut pending: Vec<Prepared> = log.prepared();
    pending.extend(log.prepared());
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    for i in (1..pending.len()).rev() {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        pending.swap(i, (seed % (i as u64 + 1)) as usize);
    }
    let mut rounds = 0;
    while !pending.is_empty() {
        rounds += 1;
        assert!(rounds < 100, "never converged");
        let mut again = Vec::new();
        for chunk in pending.chunks(3) {
            let report = store.apply(chunk, Some("p0")).await.unwrap();
            for (p, fate) in chunk.iter().zip(&report.fates) {
                if *fate == Fate::Early {
                    again.push(p.clone());
                }
            }
        }
        pending = again;
    }
    assert!(rounds > 1, "the scramble delivered something early");
    assert_eq!(
        store.all_periods().await.unwrap(),
        reference.all_periods().await.unwrap()
    );
    assert_eq!(
        store.customers("", 100).await.unwrap(),
        reference.customers("", 100).await.unwrap()
    );
    for c in [C1, C2] {
        assert_eq!(
            store.timeline(c, 0, 100).await.unwrap(),
            reference.timeline(c, 0, 100).await.unwrap()
        );
    }
}

async fn poison_is_set_aside_and_the_stream_moves_on(store: ReadStore) {
    let mut log = Log::default();
    log.manager(A, "east-1");
    log.customer(C1, t0());
    log.push(
        &format!("customer-{C1}"),
        "OwnerAssigned",
        t0(),
        json!({"nonsense": true}),
    );
    log.contact(C1, A, t0() + Duration::hours(1));
    let report = store.apply(&log.prepared(), Some("p0")).await.unwrap();
    assert_eq!(
        report.fates,
        vec![
            Fate::Applied,
            Fate::Applied,
            Fate::DeadLetter,
            Fate::Applied
        ]
    );
    let c1 = store.customer(C1).await.unwrap().unwrap();
    assert_eq!(c1.owner_id, None);
    assert!(
        c1.last_contact_at_us.is_some(),
        "later events still applied"
    );
    // Redelivering the poison is a duplicate now.
    let again = store
        .apply(&log.prepared()[2..3], Some("p0"))
        .await
        .unwrap();
    assert_eq!(again.fates, vec![Fate::Duplicate]);
}

async fn postgres() -> (ReadStore, TestDatabase) {
    let db = TestDatabase::create().await;
    (ReadStore::connect(&db.url, 4).await.unwrap(), db)
}

async fn sqlite() -> (ReadStore, TempPath) {
    let path = TempPath::new("crm-read");
    let url = format!("sqlite://{}", path.0.display());
    (ReadStore::connect(&url, 2).await.unwrap(), path)
}

macro_rules! on_both {
    ($($case:ident),*) => {
        mod on_postgres {
            use super::*;
            $(#[tokio::test] async fn $case() { let (s, _g) = postgres().await; super::$case(s).await; })*
            #[tokio::test]
            async fn duplicates_and_reordering_change_nothing() {
                let (s, _g) = postgres().await;
                let (r, _h) = postgres().await;
                super::duplicates_and_reordering_change_nothing(s, r).await;
            }
        }
        mod on_sqlite {
            use super::*;
            $(#[tokio::test] async fn $case() { let (s, _g) = sqlite().await; super::$case(s).await; })*
            #[tokio::test]
            async fn duplicates_and_reordering_change_nothing() {
                let (s, _g) = sqlite().await;
                let (r, _h) = sqlite().await;
                super::duplicates_and_reordering_change_nothing(s, r).await;
            }
        }
    };
}

/// The analyst views answer a branch manager's questions without the event model:
/// names beside ids, revenue, each complaint's status and SLA outcome; no personal field
/// of a customer is in any of them.
async fn bi_views_answer_without_the_event_model(store: ReadStore) {
    let mut log = Log::default();
    log.manager_named(A, "east-1", "Wang Fang");
    log.manager_named(B, "north-2", "Zhao Lei");
    log.customer(C1, t0());
    log.customer(C2, t0());
    log.assign(C1, A, t0() + Duration::hours(1));
    log.assign(C2, B, t0() + Duration::hours(1));
    log.purchase(C1, Some(A), 1_234_567, t0() + Duration::hours(2));
    log.purchase(C2, Some(B), 50_000, t0() + Duration::hours(2));
    log.purchase(C2, Some(A), 100, t0() + Duration::hours(3));
    // A's customer waited 20 minutes for an answer (SLA: 10); B's was answered in time.
    log.complaint(C1, Some(A), t0() + Duration::hours(4), 1200, 3600, 2);
    log.complaint(C2, Some(B), t0() + Duration::hours(4), 60, 3600, 5);
    store.apply(&log.prepared(), None).await.unwrap();

    let text = |sql: &'static str| {
        let store = store.clone();
        async move { view_rows(&store, sql).await }
    };
    assert_eq!(
        text("SELECT customer_id, owner_name, owner_branch FROM v_customers ORDER BY 1").await,
        vec![
            vec![
                Some(C1.into()),
                Some("Wang Fang".into()),
                Some("sh-01".into())
            ],
            vec![
                Some(C2.into()),
                Some("Zhao Lei".into()),
                Some("sh-01".into())
            ],
        ]
    );
    assert_eq!(
        text("SELECT name, CAST(portfolio AS TEXT) FROM v_managers ORDER BY 1").await,
        vec![
            vec![Some("Wang Fang".into()), Some("1".into())],
            vec![Some("Zhao Lei".into()), Some("1".into())],
        ]
    );
    // Revenue per manager, in currency units.
    assert_eq!(
        text(
            "SELECT manager_name, CAST(CAST(round(sum(amount) * 100) AS BIGINT) AS TEXT) \
             FROM v_purchases GROUP BY manager_name ORDER BY 1"
        )
        .await,
        vec![
            vec![Some("Wang Fang".into()), Some("1234667".into())],
            vec![Some("Zhao Lei".into()), Some("50000".into())],
        ]
    );
    // Complaints breaching their SLA, by team.
    assert_eq!(
        text(
            "SELECT owner_team, status, CAST(count(*) AS TEXT) FROM v_complaints \
             WHERE sla_breached GROUP BY owner_team, status ORDER BY 1"
        )
        .await,
        vec![vec![
            Some("east-1".into()),
            Some("closed".into()),
            Some("1".into())
        ]]
    );
    // Instants are timestamps.
    let registered = text("SELECT CAST(registered_at AS TEXT) FROM v_customers LIMIT 1").await;
    let registered = registered[0][0].clone().unwrap();
    assert!(registered.starts_with("2026-11-25"), "{registered}");
    // No view holds a customer's personal fields.
    for view in crm_projections::views::views(crm_projections::sql::Backend::Sqlite) {
        let sql = format!("SELECT * FROM {} LIMIT 0", view.0);
        for column in view_columns(&store, &sql).await {
            assert!(
                !["display_name", "phone", "email", "payload", "summary"]
                    .contains(&column.as_str()),
                "{}.{column}",
                view.0
            );
        }
    }
}

/// Rows of `sql` on either backend, every column as text.
async fn view_rows(store: &ReadStore, sql: &str) -> Vec<Vec<Option<String>>> {
    fn texts<R: sqlx::Row>(r: &R) -> Vec<Option<String>>
    where
        usize: sqlx::ColumnIndex<R>,
        for<'a> Option<String>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    {
        (0..r.len()).map(|i| r.try_get(i).unwrap()).collect()
    }
    match store {
        ReadStore::Postgres(p) => sqlx::query(sql)
            .fetch_all(p)
            .await
            .unwrap()
            .iter()
            .map(texts)
            .collect(),
        ReadStore::Sqlite(p) => sqlx::query(sql)
            .fetch_all(p)
            .await
            .unwrap()
            .iter()
            .map(texts)
            .collect(),
    }
}

/// The column names `sql` answers with.
async fn view_columns(store: &ReadStore, sql: &str) -> Vec<String> {
    use sqlx::{Column as _, Executor as _};
    match store {
        ReadStore::Postgres(p) => {
            let d = p.describe(sql).await.unwrap();
            d.columns().iter().map(|c| c.name().to_string()).collect()
        }
        ReadStore::Sqlite(p) => {
            let d = p.describe(sql).await.unwrap();
            d.columns().iter().map(|c| c.name().to_string()).collect()
        }
    }
}

on_both!(
    ownership_views_answer_each_question,
    poison_is_set_aside_and_the_stream_moves_on,
    bi_views_answer_without_the_event_model
);

#[tokio::test]
async fn both_backends_build_identical_read_models() {
    let log = day();
    let (pg, _g) = postgres().await;
    let (lite, _h) = sqlite().await;
    pg.apply(&log.prepared(), None).await.unwrap();
    lite.apply(&log.prepared(), None).await.unwrap();
    assert_eq!(
        pg.all_periods().await.unwrap(),
        lite.all_periods().await.unwrap()
    );
    assert_eq!(
        pg.customers("", 100).await.unwrap(),
        lite.customers("", 100).await.unwrap()
    );
    assert_eq!(
        pg.timeline(C1, 0, 100).await.unwrap(),
        lite.timeline(C1, 0, 100).await.unwrap()
    );
}

/// PostgreSQL runs a batch's statements as one script with the values inlined; SQLite
/// binds them. Text that could break out of a literal or look like a placeholder is
/// stored exactly, and the same on both.
#[tokio::test]
async fn hostile_text_is_stored_exactly_on_both_backends() {
    let names = [
        "O'Brien; DROP TABLE rm_customers; --",
        "back\\slash \\' and '' quotes",
        "$1 $2 $$ $x$ dollar",
        "E'\\x41' 王芳 \u{1F600} tab\tnewline\n",
        "",
    ];
    let mut log = Log::default();
    for (i, name) in names.iter().enumerate() {
        let id = format!("00000000-0000-4000-8000-00000000010{i}");
        log.push(
            &format!("customer-{id}"),
            "CustomerRegistered",
            t0(),
            serde_json::json!({"aum_minor": -5, "branch": "sh-'01\\", "consents": {"email": true, "phone": true, "sms": true},
                   "customer_id": id, "customer_type": "individual", "display_name": name, "email": null,
                   "first_touch_channel": "web", "industry": null, "phone": null, "product_interest": null,
                   "region": "east", "registered_at": t0(), "registration_number": null, "stage": "lead",
                   "value_tier": "mid"}),
        );
    }
    let (pg, _g) = postgres().await;
    let (lite, _h) = sqlite().await;
    pg.apply(&log.prepared(), None).await.unwrap();
    lite.apply(&log.prepared(), None).await.unwrap();
    let rows = pg.customers("", 100).await.unwrap();
    assert_eq!(rows, lite.customers("", 100).await.unwrap());
    let stored: Vec<&str> = rows.iter().map(|r| r.display_name.as_str()).collect();
    assert_eq!(stored, names);
    assert!(rows
        .iter()
        .all(|r| r.branch.as_deref() == Some("sh-'01\\") && r.aum_minor == Some(-5)));
}

/// The day, plus stage moves and complaints, for the funnel and the KPIs.
fn analytic_day() -> Log {
    let mut log = day();
    let h = |n: i64| t0() + Duration::hours(n);
    log.stage(C1, "lead", "contacted", h(2));
    log.stage(C1, "contacted", "qualified", h(6));
    log.stage(C1, "qualified", "customer", h(7));
    log.stage(C2, "lead", "contacted", h(8));
    log.complaint(C1, Some(A), h(9), 300, 7200, 5);
    log.complaint(C2, Some(B), h(9), 1200, 3600, 3);
    log
}

#[tokio::test]
async fn funnel_and_kpis_are_the_same_on_both_backends() {
    use crm_projections::calendar::{Calendar, Granularity};
    use crm_projections::funnel::{self, Slice};
    use crm_projections::kpi::{self, Level};

    let log = analytic_day();
    let (pg, _g) = postgres().await;
    let (lite, _h) = sqlite().await;
    pg.apply(&log.prepared(), None).await.unwrap();
    lite.apply(&log.prepared(), None).await.unwrap();
    let (fp, fl) = (pg.facts().await.unwrap(), lite.facts().await.unwrap());

    let day_start = t0().timestamp_micros() - 9 * 3_600_000_000;
    let day_end = day_start + 24 * 3_600_000_000;
    let now = day_end - 1;
    let utc = Calendar::UTC;
    for slice in [
        Slice::All,
        Slice::Region,
        Slice::Team,
        Slice::FirstTouchChannel,
    ] {
        assert_eq!(
            funnel::stage_counts(&fp, None, slice),
            funnel::stage_counts(&fl, None, slice)
        );
        assert_eq!(
            funnel::conversion(&fp, slice),
            funnel::conversion(&fl, slice)
        );
        assert_eq!(
            funnel::time_in_stage(&fp, slice),
            funnel::time_in_stage(&fl, slice)
        );
        assert_eq!(
            funnel::transitions(&fp, day_start, day_end, (&utc, Granularity::Day), slice),
            funnel::transitions(&fl, day_start, day_end, (&utc, Granularity::Day), slice)
        );
    }
    let kp = kpi::kpis(
        &fp,
        Level::Manager,
        (&utc, Granularity::Day),
        day_start,
        day_end,
        now,
    );
    assert_eq!(
        kp,
        kpi::kpis(
            &fl,
            Level::Manager,
            (&utc, Granularity::Day),
            day_start,
            day_end,
            now
        )
    );

    // C1 was won while A owned it (claimed back at 5h, customer at 7h).
    let a = kp.iter().find(|r| r.key == A).unwrap();
    assert_eq!(a.new_customers_won, 1);
    assert_eq!(a.complaints, 1);
    assert_eq!(a.first_response_median_s, Some(300));
    assert_eq!(a.sla_breach_rate, Some(0.0));
    assert_eq!(a.satisfaction_avg, Some(5.0));
    let b = kp.iter().find(|r| r.key == B).unwrap();
    assert_eq!(b.sla_breach_rate, Some(1.0), "answered after 20 minutes");
    assert_eq!(b.portfolio, 1, "C2");
    let conv = funnel::conversion(&fp, Slice::All);
    let lead = conv.iter().find(|c| c.stage == "lead").unwrap();
    assert_eq!((lead.entered, lead.reached_next), (2, 2));
    let customer = conv.iter().find(|c| c.stage == "customer").unwrap();
    assert_eq!(customer.cumulative_rate, Some(0.5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_instances_can_start_on_one_database_at_once() {
    let db = TestDatabase::create().await;
    let starts: Vec<_> = (0..6)
        .map(|_| {
            let url = db.url.clone();
            tokio::spawn(async move { ReadStore::connect(&url, 2).await.map(|_| ()) })
        })
        .collect();
    for s in starts {
        s.await.unwrap().expect("concurrent start");
    }
}

/// A projector batch finds its positions by key, however large the tables grow: no
/// sequential scan of a positions table (the planner's choice for hundreds of keys at
/// once, linear in the number of customers).
#[tokio::test]
async fn a_batch_reads_and_moves_positions_by_index_not_by_scanning() {
    let db = TestDatabase::create().await;
    // One connection: the statistics flushed below are the ones the batches made.
    let store = ReadStore::connect(&db.url, 1).await.unwrap();
    let ReadStore::Postgres(pool) = &store else {
        unreachable!()
    };
    let ids: Vec<String> = (0..4_000)
        .map(|i| format!("00000000-0000-4000-8000-{i:012}"))
        .collect();
    let mut log = Log::default();
    log.manager(A, "t1");
    for id in &ids {
        log.customer(id, t0());
    }
    // Then 400 known customers assigned, to go in one batch: every position read and moved.
    for id in ids.iter().step_by(10) {
        log.assign(id, A, t0() + Duration::hours(1));
    }
    let prepared = log.prepared();
    let (setup, batch) = prepared.split_at(1 + ids.len());
    for chunk in setup.chunks(500) {
        store.apply(chunk, None).await.unwrap();
    }
    sqlx::query("ANALYZE").execute(pool).await.unwrap();
    let tables: Vec<String> = crm_projections::schema::PROJECTIONS
        .iter()
        .map(|p| p.positions_table())
        .collect();
    let scans = || async {
        let row: (i64, i64) = sqlx::query_as(
            "SELECT coalesce(sum(seq_scan), 0)::int8, coalesce(sum(idx_scan), 0)::int8 \
             FROM pg_stat_user_tables WHERE relname = ANY($1)",
        )
        .bind(&tables)
        .fetch_one(pool)
        .await
        .unwrap();
        row
    };
    sqlx::query("SELECT pg_stat_force_next_flush()")
        .execute(pool)
        .await
        .unwrap();
    let before = scans().await;

    let report = store.apply(batch, None).await.unwrap();
    assert_eq!(report.fates.len(), 400);
    assert!(report.fates.iter().all(|f| *f == Fate::Applied));
    sqlx::query("SELECT pg_stat_force_next_flush()")
        .execute(pool)
        .await
        .unwrap();
    let mut after = scans().await;
    for _ in 0..100 {
        if after.1 > before.1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        after = scans().await;
    }
    assert!(
        after.1 > before.1,
        "index scans counted: {before:?} → {after:?}"
    );
    assert_eq!(after.0, before.0, "sequential scans of a positions table");
}

/// Two transactions applying the same customer's next event (two projector instances on
/// one partition while a lease changes hands): the one that finds its position moved
/// under it fails whole, and applied again it finds the event already there.
#[tokio::test]
async fn a_position_moved_by_another_transaction_fails_the_batch() {
    let db = TestDatabase::create().await;
    // Connections: the other instance's, the racing batch's, and this test's look.
    let store = ReadStore::connect(&db.url, 3).await.unwrap();
    let ReadStore::Postgres(pool) = &store else {
        unreachable!()
    };
    let mut log = Log::default();
    log.manager(A, "t1");
    log.customer(C1, t0());
    log.assign(C1, A, t0() + Duration::hours(1));
    let prepared = log.prepared();
    let (setup, next) = prepared.split_at(2);
    store.apply(setup, Some("c")).await.unwrap();

    // Another instance applies the assignment first and has not committed yet (here it
    // only moves the positions, so what the racing batch writes would show).
    let mut other = pool.begin().await.unwrap();
    for p in crm_projections::schema::PROJECTIONS {
        let moved = sqlx::query(&format!(
            "UPDATE {} SET version = 2 WHERE stream_id = $1",
            p.positions_table()
        ))
        .bind(format!("customer-{C1}"))
        .execute(&mut *other)
        .await
        .unwrap();
        assert_eq!(moved.rows_affected(), 1);
    }
    let racing = {
        let store = store.clone();
        let next = next.to_vec();
        tokio::spawn(async move { store.apply(&next, Some("c")).await })
    };
    // Wait until the racing batch is blocked on the other's locks, then commit the other.
    for _ in 0..200 {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
             AND wait_event_type = 'Lock'",
        )
        .fetch_one(pool)
        .await
        .unwrap();
        if waiting > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    other.commit().await.unwrap();
    let err = racing
        .await
        .unwrap()
        .expect_err("the racing batch must fail");
    assert!(
        err.to_string().contains("another transaction"),
        "a clear reason: {err}"
    );
    // Delivered again, it is a duplicate; nothing the racing batch wrote remains.
    let again = store.apply(next, Some("c")).await.unwrap();
    assert_eq!(again.fates, vec![Fate::Duplicate]);
    assert!(store.ownership_timeline(C1).await.unwrap().is_empty());
    let applied: i64 =
        sqlx::query_scalar("SELECT events_applied FROM rm_checkpoints WHERE consumer = 'c'")
            .fetch_one(pool)
            .await
            .unwrap();
    assert_eq!(applied, 2, "the racing batch left nothing behind");
}

/// The funnel and the KPIs the query service answers (aggregated by the database) equal
/// the reference computations over every fact, row for row, on both backends, for a
/// random book and every slice, granularity, calendar (UTC; Beijing; London, whose clocks
/// go back inside the book) and a spread of instants and ranges.
#[tokio::test]
async fn database_aggregates_equal_the_reference_computations() {
    use crm_projections::calendar::{Calendar, Granularity};
    use crm_projections::funnel::{self, Slice};
    use crm_projections::kpi::{self, Level};
    use crm_projections::testing::random_book_from;

    let seed = std::env::var("CRM_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| t0().timestamp_micros() as u64 ^ std::process::id() as u64);
    println!("seed: CRM_TEST_SEED={seed}");
    let days = 40;
    // London's clocks go back on 2026-10-25, New York's on 2026-11-01.
    let start = chrono::TimeZone::with_ymd_and_hms(&chrono::Utc, 2026, 10, 10, 9, 0, 0).unwrap();
    let log = random_book_from(seed, 300, days, start);
    let (pg, _g) = postgres().await;
    let (lite, _h) = sqlite().await;
    let us = |d: i64, h: i64| start.timestamp_micros() + d * 86_400_000_000 + h * 3_600_000_000;
    let calendars: Vec<Calendar> = ["UTC", "Asia/Shanghai", "Europe/London", "America/New_York"]
        .iter()
        .map(|z| z.parse().unwrap())
        .collect();
    for store in [&pg, &lite] {
        assert_eq!(
            apply_as_partitions(store, &log.prepared()).await,
            log.events.len(),
            "every event of the book projects"
        );
        assert!(
            striped_rows(store).await > 0,
            "the questions below sum stripes"
        );
        let facts = store.facts().await.unwrap();
        assert!(facts.transitions.len() > 500 && facts.complaints.len() > 50);
        funnel_days_view_ends_at_the_counts_now(store, &facts).await;
        for slice in [
            Slice::All,
            Slice::Region,
            Slice::FirstTouchChannel,
            Slice::Team,
            Slice::CustomerType,
            Slice::ValueTier,
        ] {
            let at = format!("{slice:?}");
            assert_eq!(
                store.stage_counts(None, slice).await.unwrap(),
                funnel::stage_counts(&facts, None, slice),
                "stage counts now by {at}"
            );
            for t in [us(-1, 0), us(0, 0), us(3, 7), us(17, 13), us(days + 2, 0)] {
                assert_eq!(
                    store.stage_counts(Some(t), slice).await.unwrap(),
                    funnel::stage_counts(&facts, Some(t), slice),
                    "stage counts at {t} by {at}"
                );
            }
            assert_eq!(
                store.conversion(slice).await.unwrap(),
                funnel::conversion(&facts, slice),
                "conversion by {at}"
            );
            assert_eq!(
                store.time_in_stage(slice).await.unwrap(),
                funnel::time_in_stage(&facts, slice),
                "time in stage by {at}"
            );
            for (cal, g) in calendars.iter().flat_map(|c| {
                [Granularity::Day, Granularity::Week, Granularity::Month].map(|g| (c, g))
            }) {
                for (from, to) in [(us(-3, 0), us(days + 3, 0)), (us(2, 5), us(19, 17))] {
                    assert_eq!(
                        store
                            .stage_transitions(from, to, (cal, g), slice)
                            .await
                            .unwrap(),
                        funnel::transitions(&facts, from, to, (cal, g), slice),
                        "transitions {from}..{to} per {g:?} in {cal} by {at}"
                    );
                }
            }
        }
        let mut rows = 0;
        let mut seen = [0i64; 7];
        for level in [Level::Manager, Level::Team, Level::Region] {
            for (cal, g) in calendars.iter().flat_map(|c| {
                [Granularity::Day, Granularity::Week, Granularity::Month].map(|g| (c, g))
            }) {
                for (from, to) in [(us(-2, 5), us(days + 40, 0)), (us(6, 13), us(23, 2))] {
                    // Now: before the range, inside it (mid-day), after it.
                    for now in [us(-5, 0), us(11, 15), us(days + 30, 0)] {
                        let reference = kpi::kpis(&facts, level, (cal, g), from, to, now);
                        // From the KPI ledger where it counts this zone's days (Beijing's
                        // here), and from the facts.
                        let kept = store.kpis(level, (cal, g), from, to, now).await.unwrap();
                        let answer = store
                            .kpis_from_facts(level, (cal, g), from, to, now)
                            .await
                            .unwrap();
                        for answer in [&kept, &answer] {
                            for (a, r) in answer.iter().zip(&reference) {
                                assert_eq!(
                                    a, r,
                                    "KPIs per {level:?} and {g:?} in {cal}, now {now}"
                                );
                            }
                            assert_eq!(
                                answer.len(),
                                reference.len(),
                                "rows per {level:?} and {g:?}"
                            );
                        }
                        rows += answer.len();
                        for r in &reference {
                            seen[0] += r.leads_converted;
                            seen[1] += i64::from(r.contact_coverage.unwrap_or(0.0) > 0.0);
                            seen[2] += r.overdue_follow_ups.unwrap_or(0);
                            seen[3] += r.reactivated + r.returned_by_pool_rules;
                            seen[4] += r.sla_breaches + r.automatic_escalations;
                            seen[5] += r.referrals_converted + r.lost_to_pool;
                            seen[6] += r.tier_high + r.tier_low;
                        }
                    }
                }
            }
        }
        assert!(rows > 1_000, "{rows} KPI rows compared");
        assert!(
            seen.iter().all(|n| *n > 0),
            "the book exercises every KPI: {seen:?}"
        );
        let beijing = &calendars[1];
        let (range, now, mid) = ((us(-2, 5), us(days + 40, 0)), us(days + 30, 0), us(17, 13));
        the_same_answers_once_folded(store, &facts, beijing, range, [now, mid]).await;
    }
}

/// Folded, the counters hold one row per key and answer as before: the KPIs per manager
/// and day over `range` as of `now`, customers per stage and team now and at `mid`.
async fn the_same_answers_once_folded(
    store: &ReadStore,
    facts: &crm_projections::facts::Facts,
    cal: &crm_projections::calendar::Calendar,
    (from, to): (i64, i64),
    [now, mid]: [i64; 2],
) {
    use crm_projections::calendar::Granularity;
    use crm_projections::funnel::{self, Slice};
    use crm_projections::kpi::{self, Level};
    assert!(store.fold_counters().await.unwrap() > 0);
    assert_eq!(striped_rows(store).await, 0);
    let days = (cal, Granularity::Day);
    assert_eq!(
        store
            .kpis(Level::Manager, days, from, to, now)
            .await
            .unwrap(),
        kpi::kpis(facts, Level::Manager, days, from, to, now),
        "KPIs after the fold"
    );
    for t in [None, Some(mid)] {
        assert_eq!(
            store.stage_counts(t, Slice::Team).await.unwrap(),
            funnel::stage_counts(facts, t, Slice::Team),
            "stage counts at {t:?} after the fold"
        );
    }
}

/// `v_funnel_days` (for BI tools) has one row per stage and day of the "all" slice, and
/// each stage's last running count is its count now.
async fn funnel_days_view_ends_at_the_counts_now(
    store: &ReadStore,
    facts: &crm_projections::facts::Facts,
) {
    use crm_projections::funnel::{self, Slice};
    let rows = view_rows(
        store,
        "SELECT stage, CAST(day AS TEXT), CAST(customers AS TEXT) FROM v_funnel_days \
         WHERE slice_kind = 'all' ORDER BY stage, day",
    )
    .await;
    let mut last = std::collections::BTreeMap::new();
    let mut days = std::collections::HashSet::new();
    for r in &rows {
        let [stage, day, n] = [0, 1, 2].map(|i| r[i].clone().unwrap());
        assert!(
            days.insert((stage.clone(), day)),
            "one row per stage and day"
        );
        last.insert(stage, n.parse::<i64>().unwrap());
    }
    let now: std::collections::BTreeMap<String, i64> =
        funnel::stage_counts(facts, None, Slice::All)
            .into_iter()
            .map(|c| (c.stage, c.customers))
            .collect();
    last.retain(|_, n| *n != 0);
    assert_eq!(last, now, "v_funnel_days' last counts");
}

/// Apply `events` as the projector's partitions do: each stream's events in order, by
/// one of four consumers adding to its own stripe, the four at once (on SQLite, whose
/// writers take turns, one after another); the counters' stripes folded halfway.
/// Returns how many events applied.
async fn apply_as_partitions(store: &ReadStore, events: &[Prepared]) -> usize {
    use crm_projections::{Target, Writer};
    let half = events.len() / 2;
    let mut applied = 0;
    for (part, fold) in [(&events[..half], true), (&events[half..], false)] {
        let mut lanes: Vec<Vec<Prepared>> = vec![Vec::new(); 4];
        for p in part {
            let lane = p.event.stream_id.bytes().map(usize::from).sum::<usize>() % 4;
            lanes[lane].push(p.clone());
        }
        let tasks = lanes.into_iter().enumerate().map(|(i, lane)| {
            let store = store.clone();
            tokio::spawn(async move {
                let name = format!("p{i}");
                let writer = Writer::consumer(&name, lane.len()).striped(i as i64 + 1);
                let report = store.apply_to(&lane, &Target::Live, &writer).await;
                report.unwrap().count(Fate::Applied)
            })
        });
        let tasks: Vec<_> = match store {
            ReadStore::Postgres(_) => tasks.collect(),
            ReadStore::Sqlite(_) => {
                for t in tasks {
                    applied += t.await.unwrap();
                }
                Vec::new()
            }
        };
        for t in tasks {
            applied += t.await.unwrap();
        }
        if fold {
            assert!(store.fold_counters().await.unwrap() > 0, "a fold folds");
        }
    }
    applied
}

/// How many rows of the counter tables are in a stripe other than 0.
async fn striped_rows(store: &ReadStore) -> i64 {
    let mut n = 0;
    for t in crm_projections::schema::ANALYTICS.tables {
        if t.striped(None) {
            let sql = format!(
                "SELECT CAST(count(*) AS TEXT) FROM {} WHERE stripe <> 0",
                t.name
            );
            n += view_rows(store, &sql).await[0][0]
                .as_deref()
                .unwrap()
                .parse::<i64>()
                .unwrap();
        }
    }
    n
}

/// The KPI ledger counts the local days of its own zone (here New York's, whose clocks
/// go back inside the book), on both backends; moving it to another zone once it has
/// counted events hands the questions to the facts until a rebuild.
#[tokio::test]
async fn the_kpi_ledger_counts_the_days_of_its_zone() {
    use crm_projections::calendar::{Calendar, Granularity};
    use crm_projections::kpi::{self, Level};
    use crm_projections::testing::random_book_from;

    let seed = t0().timestamp_micros() as u64 ^ u64::from(std::process::id());
    println!("seed: {seed}");
    let days = 30;
    let start = chrono::TimeZone::with_ymd_and_hms(&chrono::Utc, 2026, 10, 20, 3, 0, 0).unwrap();
    let log = random_book_from(seed, 200, days, start);
    let us = |d: i64, h: i64| start.timestamp_micros() + d * 86_400_000_000 + h * 3_600_000_000;
    let new_york: Calendar = "America/New_York".parse().unwrap();
    let london: Calendar = "Europe/London".parse().unwrap();
    let (pg, _g) = postgres().await;
    let (lite, _h) = sqlite().await;
    for store in [&pg, &lite] {
        assert!(store.set_ledger_zone(new_york).await.unwrap());
        assert!(
            store.ledger_answers(&new_york).await.unwrap(),
            "empty: still complete"
        );
        apply_as_partitions(store, &log.prepared()).await;
        assert!(!store
            .ledger_answers(&"Asia/Shanghai".parse().unwrap())
            .await
            .unwrap());
        let facts = store.facts().await.unwrap();
        let mut rows = 0;
        for level in [Level::Manager, Level::Team] {
            for g in [Granularity::Day, Granularity::Week, Granularity::Month] {
                for (from, to) in [(us(-2, 0), us(days + 9, 0)), (us(4, 13), us(16, 2))] {
                    for now in [us(-1, 0), us(9, 20), us(12, 5), us(days + 30, 0)] {
                        let cal = (&new_york, g);
                        let reference = kpi::kpis(&facts, level, cal, from, to, now);
                        let kept = store.kpis_kept(level, cal, from, to, now).await.unwrap();
                        assert_eq!(kept, reference, "{level:?} per {g:?}, now {now}");
                        rows += kept.len();
                    }
                }
            }
        }
        assert!(rows > 500, "{rows} rows compared");
        // Every day with a row: the last coverage ends 30 days after the last contact.
        let all_days = (us(-2, 0), us(days + 60, 0));
        kpi_days_view_equals_the_reference(store, &facts, &new_york, all_days).await;
        // Another zone: the ledger no longer answers, the facts do.
        assert!(store.set_ledger_zone(london).await.unwrap());
        assert!(!store.ledger_answers(&london).await.unwrap());
        assert!(
            !store.kept_complete().await.unwrap(),
            "the funnel's days move too"
        );
        assert!(!store.ledger_answers(&new_york).await.unwrap());
        let cal = (&london, Granularity::Day);
        assert_eq!(
            store
                .kpis(Level::Manager, cal, us(0, 0), us(20, 0), us(25, 0))
                .await
                .unwrap(),
            kpi::kpis(&facts, Level::Manager, cal, us(0, 0), us(20, 0), us(25, 0))
        );
    }
}

/// `v_kpi_days` (for BI tools) gives, per manager and local day of the ledger's zone on
/// which anything changed, what the reference gives for that one day.
async fn kpi_days_view_equals_the_reference(
    store: &ReadStore,
    facts: &crm_projections::facts::Facts,
    cal: &crm_projections::calendar::Calendar,
    (from, to): (i64, i64),
) {
    use crm_projections::calendar::Granularity;
    use crm_projections::kpi::{self, Level};
    let reference = kpi::kpis(facts, Level::Manager, (cal, Granularity::Day), from, to, to);
    let by_key: std::collections::HashMap<(String, String), &kpi::KpiRow> = reference
        .iter()
        .map(|r| ((r.period_start[..10].to_string(), r.key.clone()), r))
        .collect();
    let rows = view_rows(
        store,
        "SELECT CAST(day AS TEXT), manager_id, CAST(portfolio AS TEXT), CAST(covered AS TEXT), \
         CAST(leads_owned AS TEXT), CAST(leads_converted AS TEXT), CAST(contacts AS TEXT), \
         CAST(complaints AS TEXT), CAST(complaints_breached AS TEXT), \
         CAST(value_minor AS TEXT), CAST(lost_to_pool AS TEXT) FROM v_kpi_days",
    )
    .await;
    let mut compared = 0;
    for r in &rows {
        let text = |i: usize| r[i].clone().unwrap_or_default();
        let n = |i: usize| text(i).parse::<i64>().unwrap();
        let Some(k) = by_key.get(&(text(0), text(1))) else {
            // A day the reference has no row for: nothing owned, nothing happened.
            assert!(n(2) == 0 && n(4) == 0 && n(6) == 0, "{r:?}");
            continue;
        };
        let expected = [
            k.portfolio,
            (k.contact_coverage.unwrap_or(0.0) * k.portfolio as f64).round() as i64,
            k.leads_owned,
            k.leads_converted,
            k.contacts,
            k.complaints,
            (k.sla_breach_rate.unwrap_or(0.0) * k.complaints as f64).round() as i64,
            k.value_under_management_minor,
            k.lost_to_pool,
        ];
        let got: Vec<i64> = (2..11).map(n).collect();
        assert_eq!(got, expected, "v_kpi_days {} {}", text(0), text(1));
        compared += 1;
    }
    assert!(compared > 100, "{compared} view rows compared");
}

/// The migrations of the release before 1003, whose timeline rows carried the payload.
fn release_before_1003() -> sqlx::migrate::Migrator {
    crm_projections::store::migrator_up_to(1002)
}

const OLD_TIMELINE_ROW: &str = "INSERT INTO rm_timeline (customer_id, version, event_id, \
    event_type, occurred_at_us, actor, summary, payload) VALUES ('01930000-0000-7000-8000-0000000000c9', \
    1, 'e-1', 'CustomerRegistered', 0, 'person:li.wei', 'registered', '{\"customer_id\":\"c9\"}')";

/// After the upgrade: the old row is still answered, without its payload, and the
/// projector writes new rows into the altered table.
async fn upgraded_timeline_works(store: ReadStore) {
    let old = store
        .timeline("01930000-0000-7000-8000-0000000000c9", 0, 10)
        .await
        .unwrap();
    assert_eq!(old.len(), 1);
    assert_eq!(old[0].summary, "registered");
    let log = day();
    store.apply(&log.prepared(), None).await.unwrap();
    let c1 = store.timeline(C1, 0, 100).await.unwrap();
    let expected = log
        .events
        .iter()
        .filter(|e| e.stream_id == format!("customer-{C1}"))
        .count();
    assert_eq!(c1.len(), expected);
}

#[tokio::test]
async fn an_older_postgres_database_upgrades_in_place() {
    let db = TestDatabase::create().await;
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    release_before_1003().run(&pool).await.unwrap();
    sqlx::query(OLD_TIMELINE_ROW).execute(&pool).await.unwrap();
    pool.close().await;
    upgraded_timeline_works(ReadStore::connect(&db.url, 2).await.unwrap()).await;
}

#[tokio::test]
async fn an_older_sqlite_database_upgrades_in_place() {
    let path = TempPath::new("crm-read-upgrade");
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&path.0)
        .create_if_missing(true);
    let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
    release_before_1003().run(&pool).await.unwrap();
    sqlx::query(OLD_TIMELINE_ROW).execute(&pool).await.unwrap();
    pool.close().await;
    let url = format!("sqlite://{}", path.0.display());
    upgraded_timeline_works(ReadStore::connect(&url, 2).await.unwrap()).await;
}

/// A database with analytics from before the kept funnel (migration 1004): the owner its
/// analytics remembered is carried into the new memo, so the next stage move is still
/// credited to the owner; the kept funnel is marked incomplete, so the funnel is
/// answered from the facts until a rebuild.
async fn analytics_carry_on_after_1004(store: ReadStore) {
    let rows = |sql: &'static str| {
        let store = store.clone();
        async move { view_rows(&store, sql).await }
    };
    assert!(!store.kept_complete().await.unwrap());
    let beijing = "Asia/Shanghai".parse().unwrap();
    assert!(!store.ledger_answers(&beijing).await.unwrap());
    assert_eq!(
        rows("SELECT owner_id, team FROM rm_analytics_customers").await,
        vec![vec![Some(A.into()), Some("east-1".into())]]
    );
    let mut log = Log::default();
    log.customer(C1, t0());
    log.assign(C1, A, t0() + Duration::hours(1));
    log.contact(C1, A, t0() + Duration::hours(2));
    log.stage(C1, "lead", "contacted", t0() + Duration::hours(3));
    let next = log.prepared().pop().unwrap();
    let report = store.apply(&[next], None).await.unwrap();
    assert_eq!(report.fates, vec![Fate::Applied]);
    assert_eq!(
        rows("SELECT owner_id FROM rm_stage_transitions").await,
        vec![vec![Some(A.into())]]
    );
    let counts = store
        .stage_counts(None, crm_projections::funnel::Slice::All)
        .await
        .unwrap();
    assert_eq!(counts.len(), 1, "from the facts: {counts:?}");
}

const BEFORE_1004: [&str; 5] = [
    "INSERT INTO rm_customers (customer_id, customer_type, display_name, region, \
     first_touch_channel, stage, value_tier, owner_id, owner_team, owner_region, \
     registered_at_us) VALUES ('01930000-0000-7000-8000-0000000000c1', 'individual', 'x', \
     'east', 'web', 'lead', 'mid', '01930000-0000-7000-8000-0000000000a1', 'east-1', 'east', 0)",
    "INSERT INTO rm_analytics_owners (customer_id, owner_id) VALUES \
     ('01930000-0000-7000-8000-0000000000c1', '01930000-0000-7000-8000-0000000000a1')",
    "INSERT INTO rm_analytics_positions (stream_id, version) VALUES \
     ('customer-01930000-0000-7000-8000-0000000000c1', 3)",
    "INSERT INTO rm_ownership_positions (stream_id, version) VALUES \
     ('customer-01930000-0000-7000-8000-0000000000c1', 3)",
    "INSERT INTO rm_timeline_positions (stream_id, version) VALUES \
     ('customer-01930000-0000-7000-8000-0000000000c1', 3)",
];

#[tokio::test]
async fn analytics_from_before_1004_carry_on_on_postgres() {
    let db = OlderDatabase::postgres(1003, &BEFORE_1004).await;
    analytics_carry_on_after_1004(ReadStore::connect(&db.url(), 2).await.unwrap()).await;
}

#[tokio::test]
async fn analytics_from_before_1004_carry_on_on_sqlite() {
    let db = OlderDatabase::sqlite(1003, &BEFORE_1004).await;
    analytics_carry_on_after_1004(ReadStore::connect(&db.url(), 2).await.unwrap()).await;
}

/// A read database as the release before 1010 left it, rebuilt once (so its counters'
/// keys carry a rebuild's name): counts kept in one row per key.
const BEFORE_1010: [&str; 3] = [
    "INSERT INTO rm_funnel_now (kind, value, stage, customers) VALUES \
     ('all', 'all', 'lead', 5), ('all', 'all', 'customer', 2)",
    "DROP INDEX rm_funnel_now_key",
    "CREATE UNIQUE INDEX rm_funnel_now_rebuild17_key ON rm_funnel_now (kind, value, stage)",
];

/// After migration 1010: the counts are stripe 0's; a partition adds to its own stripe,
/// questions sum them, and a fold leaves one row per key.
async fn counters_carry_on_after_1010(store: ReadStore) {
    use crm_projections::funnel::Slice;
    use crm_projections::{Target, Writer};
    let counts = |store: ReadStore| async move {
        let counts = store.stage_counts(None, Slice::All).await.unwrap();
        counts
            .into_iter()
            .map(|c| (c.stage, c.customers))
            .collect::<Vec<_>>()
    };
    let before = vec![("customer".to_string(), 2), ("lead".to_string(), 5)];
    assert_eq!(
        counts(store.clone()).await,
        before,
        "kept through the upgrade"
    );
    let mut log = Log::default();
    log.customer(C1, t0());
    let events = log.prepared();
    let writer = Writer::consumer("p1", events.len()).striped(2);
    store
        .apply_to(&events, &Target::Live, &writer)
        .await
        .unwrap();
    let after = vec![("customer".to_string(), 2), ("lead".to_string(), 6)];
    assert_eq!(counts(store.clone()).await, after, "stripes summed");
    assert!(striped_rows(&store).await > 0);
    store.fold_counters().await.unwrap();
    assert_eq!(striped_rows(&store).await, 0);
    assert_eq!(counts(store.clone()).await, after, "folded");
}

use crm_projections::testing::OlderDatabase;
use crm_projections::{sql::Backend, views};

/// The views as a release before 1010 made them (over its counters), then its rows.
fn before_1010(backend: Backend) -> Vec<String> {
    let views = views::create_statements(backend);
    views
        .into_iter()
        .chain(BEFORE_1010.map(String::from))
        .collect()
}

#[tokio::test]
async fn counters_from_before_1010_carry_on_on_postgres() {
    let old = before_1010(Backend::Postgres);
    let old: Vec<&str> = old.iter().map(String::as_str).collect();
    let db = OlderDatabase::postgres(1009, &old).await;
    counters_carry_on_after_1010(ReadStore::connect(&db.url(), 2).await.unwrap()).await;
}

#[tokio::test]
async fn counters_from_before_1010_carry_on_on_sqlite() {
    let old = before_1010(Backend::Sqlite);
    let old: Vec<&str> = old.iter().map(String::as_str).collect();
    let db = OlderDatabase::sqlite(1009, &old).await;
    counters_carry_on_after_1010(ReadStore::connect(&db.url(), 2).await.unwrap()).await;
}

/// A binary older than the read models' schema (a rollback past a migration) refuses to
/// start, on both backends, instead of failing on the first changed table.
#[tokio::test]
async fn a_schema_newer_than_the_binary_is_refused() {
    const FUTURE: &str = "INSERT INTO _sqlx_migrations (version, description, success, checksum, \
        execution_time) VALUES (9999, 'from a later release', true, $1, 0)";
    let db = TestDatabase::create().await;
    ReadStore::connect(&db.url, 2).await.unwrap();
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    sqlx::query(FUTURE)
        .bind(vec![0u8; 48])
        .execute(&pool)
        .await
        .unwrap();
    let refused = ReadStore::connect(&db.url, 2).await.err().expect("refused");
    assert!(
        refused.to_string().contains("newer than this binary"),
        "{refused}"
    );

    let path = TempPath::new("crm-read-future");
    let url = format!("sqlite://{}", path.0.display());
    ReadStore::connect(&url, 2).await.unwrap();
    let options = sqlx::sqlite::SqliteConnectOptions::new().filename(&path.0);
    let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
    sqlx::query(&FUTURE.replace("$1", "?"))
        .bind(vec![0u8; 48])
        .execute(&pool)
        .await
        .unwrap();
    let refused = ReadStore::connect(&url, 2).await.err().expect("refused");
    assert!(
        refused.to_string().contains("newer than this binary"),
        "{refused}"
    );
}

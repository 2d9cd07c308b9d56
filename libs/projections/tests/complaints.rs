//! Open complaints by SLA state, team and severity, paged, scoped; one complaint with its
//! customer: on both backends, from hand-built stored events, judged at chosen instants.

use chrono::{DateTime, Duration, Utc};
use crm_eventstore::testing::{TempPath, TestDatabase};
use crm_projections::queries::complaints::{After, ComplaintFilter, SlaState, Status};
use crm_projections::testing::{t0, Log, OlderDatabase};
use crm_projections::ReadStore;
use serde_json::json;

const C1: &str = "01930000-0000-7000-8000-0000000000c1";
const C2: &str = "01930000-0000-7000-8000-0000000000c2";
const C3: &str = "01930000-0000-7000-8000-0000000000c3";
const A: &str = "01930000-0000-7000-8000-0000000000a1";
const B: &str = "01930000-0000-7000-8000-0000000000a2";
/// Critical, on C1 (A's, east-1): never answered.
const K1: &str = "01930000-0000-7000-8000-0000000000e1";
/// Normal, on C1: answered in time; its resolution warned, resolved, reopened.
const K2: &str = "01930000-0000-7000-8000-0000000000e2";
/// Low, on C2 (B's, north-2): answered late, so breached, though no clock runs out.
const K3: &str = "01930000-0000-7000-8000-0000000000e3";
/// High, on C3 (in the pool): resolved and closed.
const K4: &str = "01930000-0000-7000-8000-0000000000e4";

fn at(minutes: i64) -> DateTime<Utc> {
    t0() + Duration::minutes(minutes)
}

fn us(minutes: i64) -> i64 {
    at(minutes).timestamp_micros()
}

fn logged(log: &mut Log, c: &str, k: &str, severity: &str, minutes: i64, hours: i64) {
    log.push(
        &format!("customer-{c}"),
        "ComplaintLogged",
        at(minutes),
        json!({"customer_id": c, "complaint_id": k, "severity": severity, "category": "fees",
               "description": "test", "channel": "phone", "owner": null,
               "logged_at": at(minutes), "first_response_due_at": at(minutes + 10),
               "resolution_due_at": at(minutes) + Duration::hours(hours)}),
    );
}

fn event(log: &mut Log, c: &str, event_type: &str, minutes: i64, mut payload: serde_json::Value) {
    payload["customer_id"] = c.into();
    log.push(&format!("customer-{c}"), event_type, at(minutes), payload);
}

/// Events of customer `c`: (type, minutes after t0, payload without the customer).
fn events(log: &mut Log, c: &str, list: Vec<(&str, i64, serde_json::Value)>) {
    for (event_type, minutes, payload) in list {
        event(log, c, event_type, minutes, payload);
    }
}

/// The day's complaints (t0 is 09:00); with `scheduler`, the scheduler's warnings,
/// breach and escalation too.
fn day(scheduler: bool) -> Log {
    let mut log = Log::default();
    log.manager(A, "east-1");
    log.manager(B, "north-2");
    for c in [C1, C2, C3] {
        log.customer(c, t0());
    }
    log.assign(C1, A, at(1));
    log.assign(C2, B, at(1));
    log.transfer(C2, A, B, at(2));
    logged(&mut log, C1, K1, "critical", 5, 4);
    if scheduler {
        let due = at(15);
        events(
            &mut log,
            C1,
            vec![
                (
                    "ComplaintSlaWarned",
                    13,
                    json!({"complaint_id": K1, "clock": "first_response", "due_at": due}),
                ),
                (
                    "ComplaintSlaBreached",
                    16,
                    json!({"complaint_id": K1, "clock": "first_response", "due_at": due, "owner": A}),
                ),
                (
                    "ComplaintEscalated",
                    16,
                    json!({"complaint_id": K1, "level": 1, "reason": "first-response SLA breached", "escalated_to": B, "automatic": true}),
                ),
            ],
        );
    }
    k2(&mut log, scheduler);
    logged(&mut log, C2, K3, "low", 30, 168);
    events(
        &mut log,
        C2,
        vec![
            (
                "ComplaintSlaBreached",
                45,
                json!({"complaint_id": K3, "clock": "first_response", "due_at": at(40), "owner": B}),
            ),
            (
                "ComplaintAcknowledged",
                45,
                json!({"complaint_id": K3, "by": B, "response_seconds": 900, "within_sla": false}),
            ),
        ],
    );
    logged(&mut log, C3, K4, "high", 30, 24);
    events(
        &mut log,
        C3,
        vec![
            (
                "ComplaintResolved",
                35,
                json!({"complaint_id": K4, "resolved_by": A, "resolution": "explained", "resolution_seconds": 300, "within_sla": true}),
            ),
            (
                "ComplaintClosed",
                36,
                json!({"complaint_id": K4, "satisfaction": 4}),
            ),
        ],
    );
    log
}

/// K2: answered in time, its resolution warned, resolved, reopened with a new clock
/// (warned too, with `scheduler`).
fn k2(log: &mut Log, scheduler: bool) {
    logged(log, C1, K2, "normal", 20, 1);
    events(
        log,
        C1,
        vec![
            (
                "ComplaintAcknowledged",
                22,
                json!({"complaint_id": K2, "by": A, "response_seconds": 120, "within_sla": true}),
            ),
            (
                "ComplaintSlaWarned",
                70,
                json!({"complaint_id": K2, "clock": "resolution", "due_at": at(80)}),
            ),
            (
                "ComplaintResolved",
                75,
                json!({"complaint_id": K2, "resolved_by": A, "resolution": "refund", "resolution_seconds": 3300, "within_sla": true}),
            ),
            (
                "ComplaintReopened",
                90,
                json!({"complaint_id": K2, "reason": "not refunded", "previous_resolver": A, "reopened_at": at(90), "resolution_due_at": at(150)}),
            ),
        ],
    );
    if scheduler {
        events(
            log,
            C1,
            vec![(
                "ComplaintSlaWarned",
                140,
                json!({"complaint_id": K2, "clock": "resolution", "due_at": at(150)}),
            )],
        );
    }
}

async fn states(store: &ReadStore, now: i64) -> Vec<(String, String)> {
    let mut rows: Vec<(String, String)> = store
        .open_complaints(&ComplaintFilter::default(), now, None, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|k| {
            let state = k.state_name().to_string();
            (k.complaint_id, state)
        })
        .collect();
    rows.sort();
    // Each state's filter finds exactly the complaints judged in that state, in the list
    // and in the counts (the filter's shortcuts change no answer).
    for state in SlaState::ALL {
        let filter = ComplaintFilter {
            state: Some(state),
            ..Default::default()
        };
        let mut only: Vec<(String, String)> = store
            .open_complaints(&filter, now, None, 100)
            .await
            .unwrap()
            .into_iter()
            .map(|k| {
                let state = k.state_name().to_string();
                (k.complaint_id, state)
            })
            .collect();
        only.sort();
        let want: Vec<_> = rows
            .iter()
            .filter(|r| r.1 == state.as_str())
            .cloned()
            .collect();
        assert_eq!(only, want, "{state:?} at {now}");
        let counted: i64 = store
            .open_complaint_counts(&filter, now)
            .await
            .unwrap()
            .iter()
            .map(|c| c.complaints)
            .sum();
        assert_eq!(counted as usize, want.len(), "{state:?} counted at {now}");
    }
    rows
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

/// Nothing recorded by the scheduler: the deadlines alone decide.
async fn sla_states_follow_the_clocks(store: ReadStore) {
    store.apply(&day(false).prepared(), None).await.unwrap();
    // At 10:35: K1's first-response deadline (09:15) passed unanswered, though nothing
    // recorded the breach; K2's clock since the reopening runs to 11:30, and the warning
    // of its first clock no longer counts; K3 was answered late; K4 is closed.
    let now = us(95);
    assert_eq!(
        states(&store, now).await,
        pairs(&[(K1, "breached"), (K2, "due"), (K3, "breached")])
    );
    let state = |k: &'static str, at: i64| {
        let store = store.clone();
        async move { store.complaint(k, at).await.unwrap().unwrap().state_name() }
    };
    // Before K1's deadline it was due; at the deadline itself still in time.
    assert_eq!(state(K1, us(10)).await, "due");
    assert_eq!(state(K1, us(15)).await, "due");
    assert_eq!(state(K1, us(15) + 1).await, "breached");
    // K2's new clock: past its deadline, breached.
    assert_eq!(state(K2, us(150)).await, "due");
    assert_eq!(state(K2, us(151)).await, "breached");
    let k4 = store.complaint(K4, now).await.unwrap().unwrap();
    assert_eq!((k4.status, k4.sla_state), (Status::Closed, None));
    assert_eq!(k4.customer.customer_id, C3);
    assert_eq!(k4.customer.owner_id, None);
    let k2 = store.complaint(K2, now).await.unwrap().unwrap();
    assert_eq!(
        (k2.status, k2.sla_state),
        (Status::Open, Some(SlaState::Due))
    );
    assert_eq!(
        k2.resolution_due_us,
        Some(us(150)),
        "the reopening's deadline"
    );
    assert_eq!(k2.first_response_due_us, Some(us(30)));
    assert_eq!((k2.reopens, k2.resolutions), (1, 1));
    assert_eq!(k2.customer.owner_team.as_deref(), Some("east-1"));
    assert!(store.complaint("nope", now).await.unwrap().is_none());
}

/// What the scheduler recorded: K1 escalated, K2's running clock warned.
async fn recorded_warnings_and_escalations_count(store: ReadStore) {
    store.apply(&day(true).prepared(), None).await.unwrap();
    assert_eq!(
        states(&store, us(145)).await,
        pairs(&[(K1, "escalated"), (K2, "warned"), (K3, "breached")])
    );
}

async fn counts_filters_scope_and_pages(store: ReadStore) {
    store.apply(&day(true).prepared(), None).await.unwrap();
    let now = us(95);
    let all = ComplaintFilter::default();
    let counts: Vec<(String, String, String, i64)> = store
        .open_complaint_counts(&all, now)
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.team, c.severity, c.sla_state, c.complaints))
        .collect();
    let row = |t: &str, s: &str, st: &str| (t.to_string(), s.to_string(), st.to_string(), 1);
    assert_eq!(
        counts,
        vec![
            row("east-1", "critical", "escalated"),
            row("east-1", "normal", "warned"),
            row("north-2", "low", "breached"),
        ]
    );
    // A manager's scope, a team, a severity, a state.
    let only = |f: ComplaintFilter| {
        let store = store.clone();
        async move {
            let rows = store.open_complaints(&f, now, None, 100).await.unwrap();
            let counted: i64 = store
                .open_complaint_counts(&f, now)
                .await
                .unwrap()
                .iter()
                .map(|c| c.complaints)
                .sum();
            assert_eq!(counted, rows.len() as i64, "{f:?}");
            rows.into_iter().map(|k| k.complaint_id).collect::<Vec<_>>()
        }
    };
    let f = |owner: Option<&str>, team: Option<&str>, sev: Option<&str>, st: Option<SlaState>| {
        ComplaintFilter {
            owner_id: owner.map(Into::into),
            team: team.map(Into::into),
            severity: sev.map(Into::into),
            state: st,
            ..Default::default()
        }
    };
    assert_eq!(only(f(Some(A), None, None, None)).await, vec![K1, K2]);
    assert_eq!(only(f(Some(B), None, None, None)).await, vec![K3]);
    assert_eq!(only(f(None, Some("north-2"), None, None)).await, vec![K3]);
    assert_eq!(
        only(f(Some(A), Some("north-2"), None, None)).await,
        Vec::<String>::new()
    );
    assert_eq!(only(f(None, None, Some("normal"), None)).await, vec![K2]);
    let escalated = Some(SlaState::Escalated);
    assert_eq!(only(f(None, None, None, escalated)).await, vec![K1]);
    assert_eq!(
        only(f(None, Some("pool"), None, None)).await,
        Vec::<String>::new()
    );

    // Pages of one, oldest logged first: each after the last of the one before.
    let mut after = None;
    let mut seen = Vec::new();
    loop {
        let page = store
            .open_complaints(&all, now, after.as_ref(), 1)
            .await
            .unwrap();
        let Some(k) = page.last() else { break };
        after = Some(After::of(k));
        seen.push(k.complaint_id.clone());
    }
    assert_eq!(seen, vec![K1, K2, K3]);
}

async fn hostile_filters_are_values(store: ReadStore) {
    store.apply(&day(false).prepared(), None).await.unwrap();
    let f = ComplaintFilter {
        team: Some("x' OR '1'='1".into()),
        severity: Some("'; DROP TABLE rm_complaints; --".into()),
        ..Default::default()
    };
    assert!(store
        .open_complaints(
            &f,
            us(95),
            Some(&After {
                logged_at_us: 0,
                complaint_id: "' OR 1=1 --".into(),
            }),
            10,
        )
        .await
        .unwrap()
        .is_empty());
    assert!(store
        .open_complaint_counts(&f, us(95))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        states(&store, us(95)).await.len(),
        3,
        "the table is still there"
    );
}

/// A complaint projected before migration 1006: no deadlines, so judged from what was
/// recorded; complaints projected after it have them.
const BEFORE_1006: [&str; 3] = [
    "INSERT INTO rm_customers (customer_id, customer_type, display_name, region, \
     first_touch_channel, stage, value_tier, owner_id, owner_team, owner_region, \
     registered_at_us) VALUES ('01930000-0000-7000-8000-0000000000c9', 'individual', 'x', \
     'east', 'web', 'lead', 'mid', '01930000-0000-7000-8000-0000000000a1', 'east-1', 'east', 0)",
    "INSERT INTO rm_complaints (complaint_id, customer_id, owner_id, severity, logged_at_us, \
     resolutions, resolution_breaches, reopens, escalations) VALUES ('k-old', \
     '01930000-0000-7000-8000-0000000000c9', NULL, 'critical', 0, 0, 0, 0, 0)",
    "INSERT INTO rm_complaints (complaint_id, customer_id, owner_id, severity, logged_at_us, \
     resolutions, resolution_breaches, reopens, escalations) VALUES ('k-old-breached', \
     '01930000-0000-7000-8000-0000000000c9', NULL, 'critical', 0, 0, 0, 0, 0)",
];

const OLD_BREACH: &str = "INSERT INTO rm_sla_events (customer_id, version, complaint_id, kind, \
    clock, due_us, automatic, at_us) VALUES ('01930000-0000-7000-8000-0000000000c9', 5, \
    'k-old-breached', 'breach', 'first_response', 1, 1, 2)";

async fn complaints_from_before_1006_are_judged_by_what_was_recorded(store: ReadStore) {
    let now = us(95);
    let old = store.complaint("k-old", now).await.unwrap().unwrap();
    assert_eq!(
        (old.first_response_due_us, old.resolution_due_us),
        (None, None)
    );
    assert_eq!(old.state_name(), "due");
    let breached = store
        .complaint("k-old-breached", now)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(breached.state_name(), "breached");
    store.apply(&day(false).prepared(), None).await.unwrap();
    let k1 = store.complaint(K1, now).await.unwrap().unwrap();
    assert_eq!(k1.first_response_due_us, Some(us(15)));
    assert_eq!(k1.state_name(), "breached");
}

#[tokio::test]
async fn an_older_postgres_database_gains_the_deadlines() {
    let old: Vec<&str> = BEFORE_1006.iter().copied().chain([OLD_BREACH]).collect();
    let db = OlderDatabase::postgres(1005, &old).await;
    let store = ReadStore::connect(&db.url(), 2).await.unwrap();
    complaints_from_before_1006_are_judged_by_what_was_recorded(store).await;
}

#[tokio::test]
async fn an_older_sqlite_database_gains_the_deadlines() {
    let old: Vec<&str> = BEFORE_1006.iter().copied().chain([OLD_BREACH]).collect();
    let db = OlderDatabase::sqlite(1005, &old).await;
    let store = ReadStore::connect(&db.url(), 2).await.unwrap();
    complaints_from_before_1006_are_judged_by_what_was_recorded(store).await;
}

async fn postgres() -> (ReadStore, TestDatabase) {
    let db = TestDatabase::create().await;
    (ReadStore::connect(&db.url, 4).await.unwrap(), db)
}

async fn sqlite() -> (ReadStore, TempPath) {
    let path = TempPath::new("crm-read-complaints");
    let url = format!("sqlite://{}", path.0.display());
    (ReadStore::connect(&url, 2).await.unwrap(), path)
}

macro_rules! on_both {
    ($($case:ident),*) => {
        mod on_postgres {
            use super::*;
            $(#[tokio::test] async fn $case() { let (s, _g) = postgres().await; super::$case(s).await; })*
        }
        mod on_sqlite {
            use super::*;
            $(#[tokio::test] async fn $case() { let (s, _g) = sqlite().await; super::$case(s).await; })*
        }
    };
}

/// Every complaint, open or not, by status and by customer, oldest logged first.
async fn statuses_and_customers(store: ReadStore) {
    let mut log = day(false);
    // K3 resolved at 10:00, not closed.
    events(
        &mut log,
        C2,
        vec![(
            "ComplaintResolved",
            60,
            json!({"complaint_id": K3, "resolved_by": B, "resolution": "refunded", "resolution_seconds": 1800, "within_sla": true}),
        )],
    );
    store.apply(&log.prepared(), None).await.unwrap();
    let now = us(95);
    let ids = |f: ComplaintFilter| {
        let store = store.clone();
        async move {
            let rows = store.complaints(&f, now, None, 100).await.unwrap();
            rows.into_iter()
                .map(|k| (k.complaint_id.clone(), k.state_name()))
                .collect::<Vec<_>>()
        }
    };
    let f =
        |customer: Option<&str>, status: Option<Status>, state: Option<SlaState>| ComplaintFilter {
            customer_id: customer.map(Into::into),
            status,
            state,
            ..Default::default()
        };
    let k = |id: &str, state: &'static str| (id.to_string(), state);
    // K3 and K4 were logged at the same minute: by id then.
    assert_eq!(
        ids(f(None, None, None)).await,
        vec![
            k(K1, "breached"),
            k(K2, "due"),
            k(K3, "resolved"),
            k(K4, "closed")
        ]
    );
    assert_eq!(
        ids(f(None, Some(Status::Open), None)).await,
        vec![k(K1, "breached"), k(K2, "due")]
    );
    assert_eq!(
        ids(f(None, Some(Status::Resolved), None)).await,
        vec![k(K3, "resolved")]
    );
    assert_eq!(
        ids(f(None, Some(Status::Closed), None)).await,
        vec![k(K4, "closed")]
    );
    assert_eq!(
        ids(f(Some(C1), None, None)).await,
        vec![k(K1, "breached"), k(K2, "due")]
    );
    assert_eq!(ids(f(Some(C3), None, None)).await, vec![k(K4, "closed")]);
    assert_eq!(ids(f(Some(C3), Some(Status::Open), None)).await, vec![]);
    let due = Some(SlaState::Due);
    assert_eq!(ids(f(Some(C1), None, due)).await, vec![k(K2, "due")]);
    assert_eq!(
        ids(f(None, Some(Status::Closed), due)).await,
        vec![],
        "a state implies open"
    );
    // The pool as a filter; a team lead's scope never is the pool, even for a team
    // named so (its complaints were shown to such a team lead before the scope had a
    // field of its own).
    let pool = ComplaintFilter {
        team: Some("pool".into()),
        ..Default::default()
    };
    assert_eq!(ids(pool).await, vec![k(K4, "closed")]);
    let team_named_pool = ComplaintFilter {
        team_scope: Some("pool".into()),
        ..Default::default()
    };
    assert_eq!(ids(team_named_pool.clone()).await, vec![]);
    assert!(store
        .open_complaint_counts(&team_named_pool, now)
        .await
        .unwrap()
        .is_empty());
    let east = ComplaintFilter {
        team_scope: Some("east-1".into()),
        ..Default::default()
    };
    assert_eq!(ids(east).await, vec![k(K1, "breached"), k(K2, "due")]);
    // Pages of one, across statuses.
    let mut after: Option<After> = None;
    let mut seen = Vec::new();
    loop {
        let page = store
            .complaints(&ComplaintFilter::default(), now, after.as_ref(), 1)
            .await
            .unwrap();
        let Some(k) = page.last() else { break };
        // Through the cursor's text, as a caller passes it back.
        after = Some(After::of(k).to_string().parse().unwrap());
        seen.push(k.complaint_id.clone());
    }
    assert_eq!(seen, vec![K1, K2, K3, K4]);
}

on_both!(
    statuses_and_customers,
    sla_states_follow_the_clocks,
    recorded_warnings_and_escalations_count,
    counts_filters_scope_and_pages,
    hostile_filters_are_values
);

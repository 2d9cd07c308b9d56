//! The query API over HTTP on real PostgreSQL: every documented route answers, in JSON
//! and CSV, and bad requests get problem+json with a stable code.

use chrono::Duration;
use crm_eventstore::testing::TestDatabase;
use crm_eventstore::Streams;
use crm_projections::testing::{t0, Log};
use crm_projections::ReadStore;
use serde_json::Value;

const C1: &str = "01930000-0000-7000-8000-0000000000c1";
const C2: &str = "01930000-0000-7000-8000-0000000000c2";
const A: &str = "01930000-0000-7000-8000-0000000000a1";
const B: &str = "01930000-0000-7000-8000-0000000000a2";

/// A customer's first day: two managers, a registration, an assignment, a contact, a
/// stage, a transfer and a complaint worked to its end.
fn day() -> Log {
    let mut log = Log::default();
    let h = |n: i64| t0() + Duration::hours(n);
    log.manager(A, "east-1");
    log.manager(B, "north-2");
    log.customer(C1, t0());
    log.assign(C1, A, h(1));
    log.contact(C1, A, h(2));
    log.stage(C1, "lead", "contacted", h(2));
    log.transfer(C1, A, B, h(3));
    log.complaint(C1, Some(B), h(4), 300, 3600, 4);
    log
}

async fn serve() -> (String, TestDatabase) {
    let db = TestDatabase::create().await;
    let store = ReadStore::connect(&db.url, 4).await.unwrap();
    let log = day();
    store.apply(&log.prepared(), None).await.unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(crm_query::serve(
        store,
        crm_query::Security::default(),
        "Asia/Shanghai".parse().unwrap(),
        "127.0.0.1:0".parse().unwrap(),
        std::future::pending(),
        std::time::Duration::from_secs(5),
        tx,
    ));
    (format!("http://{}", rx.await.unwrap()), db)
}

async fn get(url: &str) -> (u16, String, String) {
    let r = reqwest::get(url).await.unwrap();
    let status = r.status().as_u16();
    let ct = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, ct, r.text().await.unwrap())
}

#[tokio::test]
async fn answers_ownership_questions_in_json_and_csv() {
    let (base, _db) = serve().await;
    let (status, _, body) = get(&format!("{base}/v1/customers/{C1}")).await;
    assert_eq!(status, 200, "{body}");
    let c: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(c["owner_id"], B);

    let at = (t0() + Duration::minutes(150)).to_rfc3339();
    let (status, _, body) = get(&format!(
        "{base}/v1/customers/{C1}/ownership?as_of={}",
        urlencode(&at)
    ))
    .await;
    assert_eq!(status, 200, "{body}");
    let page: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(page["items"][0]["manager_id"], A, "A owned it at 2h30");

    let (status, ct, body) = get(&format!("{base}/v1/customers/{C1}/ownership?format=csv")).await;
    assert_eq!(status, 200);
    assert!(ct.starts_with("text/csv"), "{ct}");
    let lines: Vec<&str> = body.lines().collect();
    assert!(
        lines[0].starts_with("customer_id,start_version,manager_id"),
        "{}",
        lines[0]
    );
    assert_eq!(lines.len(), 3, "header and two periods: {body}");

    let (_, _, body) = get(&format!("{base}/v1/customers?owner_id={B}&stage=contacted")).await;
    let page: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(page["items"].as_array().unwrap().len(), 1, "{body}");
    let (_, _, body) = get(&format!("{base}/v1/customers?owner_id={A}")).await;
    let page: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        page["items"].as_array().unwrap().len(),
        0,
        "A no longer owns it"
    );

    let (_, _, body) = get(&format!("{base}/v1/customers/{C1}/timeline?limit=2")).await;
    let page: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        page["items"][0]["event_type"], "ComplaintClosed",
        "newest first"
    );
    assert!(page["next_after"].is_string());
    assert!(
        page["items"][0]["payload"].is_null(),
        "without the event store a timeline has no payloads: {page}"
    );
}

/// Timeline payloads are read from the event store by stream and version, page by page,
/// each as the event's canonical text (fields in declared order).
#[tokio::test]
async fn timeline_payloads_come_from_the_event_store() {
    let db = TestDatabase::create().await;
    let events = crm_eventstore::AnyEventStore::connect(&db.url, 4)
        .await
        .unwrap();
    let read = ReadStore::connect(&db.url, 4).await.unwrap();
    let log = day();
    crm_projections::testing::append(&events, &log.events).await;
    read.apply(&log.prepared(), None).await.unwrap();
    // A customer whose read-model rows and stored events disagree (other event ids at the
    // same versions, as after restoring the two from different backups).
    let mut stored_c2 = Log::default();
    stored_c2.customer(C2, t0());
    stored_c2.assign(C2, A, t0() + Duration::hours(1));
    let mut projected_c2 = Log::default();
    projected_c2.customer(C2, t0());
    projected_c2.assign(C2, A, t0() + Duration::hours(1));
    crm_projections::testing::append(&events, &stored_c2.events).await;
    read.apply(&projected_c2.prepared(), None).await.unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(crm_query::serve(
        read,
        crm_query::Security {
            events: Some(events.clone()),
            ..Default::default()
        },
        "Asia/Shanghai".parse().unwrap(),
        "127.0.0.1:0".parse().unwrap(),
        std::future::pending(),
        std::time::Duration::from_secs(5),
        tx,
    ));
    let base = format!("http://{}", rx.await.unwrap());

    let stored = events
        .read_stream(&format!("customer-{C1}"), 0)
        .await
        .unwrap();
    assert!(stored.len() > 6, "{}", stored.len());
    let canonical = |version: u64| {
        let e = &stored[version as usize - 1];
        assert_eq!(e.stream_version, version);
        crm_domain::CustomerEvent::decode(&e.event_type, e.schema_version, &e.payload)
            .unwrap()
            .payload_text()
    };
    // Walk the whole timeline three rows a page: every row has its own event's payload.
    let mut seen = Vec::new();
    let mut before = String::new();
    loop {
        let (status, _, body) = get(&format!(
            "{base}/v1/customers/{C1}/timeline?limit=3{before}"
        ))
        .await;
        assert_eq!(status, 200, "{body}");
        let page: Value = serde_json::from_str(&body).unwrap();
        for item in page["items"].as_array().unwrap() {
            let version = item["version"].as_u64().unwrap();
            assert_eq!(
                item["payload"].as_str().unwrap(),
                canonical(version),
                "version {version}"
            );
            seen.push(version);
        }
        match page["next_after"].as_str() {
            Some(v) => before = format!("&before_version={v}"),
            None => break,
        }
    }
    let all: Vec<u64> = (1..=stored.len() as u64).rev().collect();
    assert_eq!(seen, all, "every event once, newest first");

    // CSV carries the payload column too.
    let (status, _, body) = get(&format!(
        "{base}/v1/customers/{C1}/timeline?limit=1&format=csv"
    ))
    .await;
    assert_eq!(status, 200, "{body}");
    let header = body.lines().next().unwrap();
    assert!(header.ends_with(",summary,payload"), "{header}");

    // Another event's payload is never answered: none rather than the wrong one.
    let (status, _, body) = get(&format!("{base}/v1/customers/{C2}/timeline")).await;
    assert_eq!(status, 200, "{body}");
    let page: Value = serde_json::from_str(&body).unwrap();
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{page}");
    assert!(items.iter().all(|i| i["payload"].is_null()), "{page}");
}

#[tokio::test]
async fn bad_requests_are_problems_with_codes() {
    let (base, _db) = serve().await;
    for (url, status, code) in [
        (
            format!("{base}/v1/customers/nobody"),
            404,
            "query.not_found",
        ),
        (
            format!("{base}/v1/customers?limit=0"),
            400,
            "query.bad_parameter",
        ),
        (
            format!("{base}/v1/kpis?granularity=year"),
            400,
            "query.bad_parameter",
        ),
        (
            format!("{base}/v1/funnel/stages?as_of=yesterday"),
            400,
            "query.bad_parameter",
        ),
        (
            format!("{base}/v1/customers?colour=red"),
            400,
            "query.bad_parameter",
        ),
        (format!("{base}/v2/nothing"), 404, "query.not_found"),
    ] {
        let (s, ct, body) = get(&url).await;
        assert_eq!(s, status, "{url}: {body}");
        if !code.is_empty() {
            assert_eq!(ct, "application/problem+json", "{url}");
            let p: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(p["code"], code, "{url}");
        }
    }
}

#[tokio::test]
async fn every_documented_route_answers() {
    let (base, _db) = serve().await;
    let (_, _, doc) = get(&format!("{base}/openapi.json")).await;
    let doc: Value = serde_json::from_str(&doc).unwrap();
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 19);
    let from = urlencode(&(t0() - Duration::days(1)).to_rfc3339());
    let to = urlencode(&(t0() + Duration::days(1)).to_rfc3339());
    let (_, _, body) = get(&format!("{base}/v1/complaints")).await;
    let complaints: Value = serde_json::from_str(&body).unwrap();
    let k = complaints["items"][0]["complaint_id"]
        .as_str()
        .unwrap()
        .to_string();
    for (path, item) in paths {
        if path.starts_with("/v1/audit/") {
            // Replayed from the event store, JSON only: tests/authorization.rs calls them.
            continue;
        }
        let params = item["get"]["parameters"].as_array().unwrap();
        // Pass a range to the routes that document one.
        let takes_range = params.iter().any(|p| p["name"] == "from");
        let id = match path.split('/').nth(2) {
            Some("managers") => A,
            Some("complaints") => k.as_str(),
            _ => C1,
        };
        let mut url = format!("{base}{}", path.replace("{id}", id));
        if takes_range {
            url.push_str(&format!("?from={from}&to={to}"));
        }
        let (status, _, body) = get(&url).await;
        assert_eq!(status, 200, "{path}: {body}");
        if !params.iter().any(|p| p["name"] == "format") {
            continue; // JSON only
        }
        let csv = format!("{url}{}format=csv", if takes_range { "&" } else { "?" });
        let (status, ct, body) = get(&csv).await;
        assert_eq!(status, 200, "{path} as CSV: {body}");
        assert!(ct.starts_with("text/csv"), "{path}: {ct}");
    }
    // The KPI row of B for the day of the complaint.
    let (_, _, body) = get(&format!(
        "{base}/v1/kpis?from={from}&to={to}&granularity=day"
    ))
    .await;
    let page: Value = serde_json::from_str(&body).unwrap();
    let b = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["key"] == B && r["complaints"] == 1)
        .expect("B's complaint day");
    assert_eq!(b["first_response_median_s"], 300);
    assert_eq!(b["satisfaction_avg"], 4.0);
}

fn urlencode(s: &str) -> String {
    s.replace('+', "%2B").replace(':', "%3A")
}

/// What a hostile caller or a hostile record can do to the query service: a NUL or an
/// escape sequence in a parameter or a path is a 400 naming it (it reached PostgreSQL
/// and came back as a 503 before), a wrong method a problem+json 405, and a name that a
/// spreadsheet would run as a formula comes out of CSV inert. Every request is counted
/// by route and status in `/metrics`, beside the process's own figures.
#[tokio::test]
async fn hostile_parameters_methods_and_cells() {
    let db = TestDatabase::create().await;
    let store = ReadStore::connect(&db.url, 4).await.unwrap();
    let mut log = day();
    const C3: &str = "01930000-0000-7000-8000-0000000000c3";
    log.push(
        &format!("customer-{C3}"),
        "CustomerRegistered",
        t0(),
        serde_json::json!({"aum_minor": null, "branch": null, "consents": {},
            "customer_id": C3, "customer_type": "individual",
            "display_name": "=HYPERLINK(\"http://evil.example\",\"click\")", "email": null,
            "first_touch_channel": "web", "industry": null, "phone": null,
            "product_interest": null, "region": "@east", "registered_at": t0(),
            "registration_number": null, "stage": "lead", "value_tier": "mid"}),
    );
    store.apply(&log.prepared(), None).await.unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(crm_query::serve(
        store,
        crm_query::Security::default(),
        "Asia/Shanghai".parse().unwrap(),
        "127.0.0.1:0".parse().unwrap(),
        std::future::pending(),
        std::time::Duration::from_secs(5),
        tx,
    ));
    let base = format!("http://{}", rx.await.unwrap());

    for (url, named) in [
        (format!("{base}/v1/customers?region=ab%00c"), "region"),
        (format!("{base}/v1/customers?team=%1B%5B2J"), "team"),
        (format!("{base}/v1/pool?after=x%E2%80%AEy"), "after"),
        (format!("{base}/v1/customers/ab%00c"), "path"),
        (
            format!("{base}/v1/customers/{C1}/timeline?before_version=1%0A2"),
            "before_version",
        ),
    ] {
        let (status, ct, body) = get(&url).await;
        assert_eq!(status, 400, "{url}: {body}");
        assert_eq!(ct, "application/problem+json");
        let p: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(p["code"], "query.bad_parameter", "{url}");
        assert!(
            p["detail"].as_str().unwrap().contains(named),
            "{url}: {body}"
        );
    }

    let r = reqwest::Client::new()
        .post(format!("{base}/v1/customers"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let p: Value = r.json().await.unwrap();
    assert_eq!(p["code"], "query.method_not_allowed");

    let (status, _, csv) = get(&format!("{base}/v1/customers/{C3}?format=csv")).await;
    assert_eq!(status, 200, "{csv}");
    let row = csv.lines().nth(1).unwrap();
    assert!(
        row.contains("\"'=HYPERLINK(\"\"http://evil.example\"\",\"\"click\"\")\""),
        "{row}"
    );
    assert!(row.contains(",'@east,"), "{row}");
    // JSON answers are unchanged: the neutralising is CSV's alone.
    let (_, _, json) = get(&format!("{base}/v1/customers/{C3}")).await;
    let c: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        c["display_name"],
        "=HYPERLINK(\"http://evil.example\",\"click\")"
    );

    // A method of the caller's invention mints no label value.
    let r = reqwest::Client::new()
        .request(
            reqwest::Method::from_bytes(b"FOO1").unwrap(),
            format!("{base}/v1/customers"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    let (_, _, metrics) = get(&format!("{base}/metrics")).await;
    assert!(!metrics.contains("FOO1"), "{metrics}");
    assert!(
        metrics.contains("method=\"other\",status=\"405\""),
        "{metrics}"
    );
    for needle in [
        "crm_http_requests_total{service=\"query\",route=\"/v1/customers/{id}\",method=\"GET\",status=\"200\"}",
        "crm_http_requests_total{service=\"query\",route=\"/v1/customers\",method=\"GET\",status=\"400\"}",
        "crm_http_request_duration_seconds_bucket{service=\"query\",route=\"/v1/customers/{id}\",method=\"GET\"",
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
    ] {
        assert!(metrics.contains(needle), "{needle} missing from:\n{metrics}");
    }
}

/// Instants are RFC 3339 in every answer; periods are the days of the service's time
/// zone (Beijing here) unless a request names another (`tz`), DST-observing ones
/// included; an unknown zone is a 400.
#[tokio::test]
async fn instants_are_rfc3339_and_days_are_local() {
    let (base, _db) = serve().await;
    let (_, _, body) = get(&format!("{base}/v1/customers/{C1}")).await;
    let c: Value = serde_json::from_str(&body).unwrap();
    assert!(c.get("registered_at_us").is_none(), "{c}");
    let registered = c["registered_at"].as_str().unwrap();
    assert_eq!(
        chrono::DateTime::parse_from_rfc3339(registered).unwrap(),
        t0(),
        "{registered}"
    );
    let (_, _, body) = get(&format!("{base}/v1/customers/{C1}/ownership")).await;
    let page: Value = serde_json::from_str(&body).unwrap();
    assert!(page["items"][0]["from"].is_string(), "{page}");
    assert!(page["items"][1]["to"].is_null(), "the open period: {page}");

    // The events are from 09:00 to 13:00 UTC on 2026-11-25: that Beijing day began at
    // 16:00 UTC the day before.
    let from = urlencode(&(t0() - Duration::hours(20)).to_rfc3339());
    let to = urlencode(&(t0() + Duration::hours(2)).to_rfc3339());
    let day = |tz: &str| {
        let url = format!("{base}/v1/kpis?from={from}&to={to}&granularity=day{tz}");
        async move {
            let (status, _, body) = get(&url).await;
            assert_eq!(status, 200, "{body}");
            let page: Value = serde_json::from_str(&body).unwrap();
            let mut starts: Vec<String> = page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["period_start"].as_str().unwrap().to_string())
                .collect();
            starts.dedup();
            starts
        }
    };
    let beijing = day("").await;
    assert_eq!(
        beijing.first().unwrap(),
        "2026-11-25T00:00:00+08:00",
        "{beijing:?}"
    );
    // The same events, counted in the days of London and of New York.
    let london = day("&tz=Europe%2FLondon").await;
    assert_eq!(london, ["2026-11-25T00:00:00+00:00"]);
    let new_york = day("&tz=America%2FNew_York").await;
    assert_eq!(new_york, ["2026-11-25T00:00:00-05:00"]);
    let (status, _, body) = get(&format!("{base}/v1/kpis?tz=Mars%2FOlympus")).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("IANA time zone"), "{body}");
}

/// Complaints by status, customer and SLA state; one with its customer; CSV with the
/// customer's columns after the complaint's.
#[tokio::test]
async fn complaints_by_status_customer_and_state() {
    let (base, _db) = serve().await;
    let items = |body: &str| -> Vec<Value> {
        let page: Value = serde_json::from_str(body).unwrap();
        page["items"].as_array().unwrap().clone()
    };
    let (status, _, body) = get(&format!("{base}/v1/complaints?customer_id={C1}")).await;
    assert_eq!(status, 200, "{body}");
    let all = items(&body);
    assert_eq!(all.len(), 1, "{body}");
    let k = &all[0];
    assert_eq!(
        (&k["status"], &k["sla_state"], &k["satisfaction"]),
        (&Value::from("closed"), &Value::Null, &Value::from(4))
    );
    assert_eq!(k["customer_id"], C1, "the customer's fields follow: {k}");
    assert_eq!(k["owner_id"], B);
    assert_eq!(k["logged_owner_id"], B);
    assert_eq!(k["first_response_s"], 300);
    let id = k["complaint_id"].as_str().unwrap();
    for (query, n) in [
        ("status=closed", 1),
        ("status=open", 0),
        ("status=resolved", 0),
        ("severity=normal", 1),
        ("severity=critical", 0),
        ("sla_state=due", 0),
        (&format!("customer_id={C2}") as &str, 0),
        (&format!("owner_id={B}"), 1),
        (&format!("owner_id={A}"), 0),
        ("team=north-2", 1),
    ] {
        let (status, _, body) = get(&format!("{base}/v1/complaints?{query}")).await;
        assert_eq!(status, 200, "{query}: {body}");
        assert_eq!(items(&body).len(), n, "{query}: {body}");
    }
    for query in [
        "status=closed&sla_state=due",
        "severity=urgent",
        "status=late",
    ] {
        let (status, _, body) = get(&format!("{base}/v1/complaints?{query}")).await;
        assert_eq!(status, 400, "{query}: {body}");
    }
    let (status, _, body) = get(&format!("{base}/v1/complaints/{id}")).await;
    assert_eq!(status, 200, "{body}");
    let one: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(one["complaint_id"], id);
    assert!(
        one["history"].is_null(),
        "without the event store, no history: {one}"
    );
    let (status, _, _) = get(&format!("{base}/v1/complaints/{C1}")).await;
    assert_eq!(status, 404, "a customer's id is no complaint's");
    let (_, ct, body) = get(&format!("{base}/v1/complaints?format=csv")).await;
    assert!(ct.starts_with("text/csv"), "{ct}");
    let header = body.lines().next().unwrap();
    assert!(
        header.starts_with("complaint_id,severity,status,sla_state,logged_at,")
            && header.contains(",satisfaction,customer_id,customer_type,display_name,"),
        "{header}"
    );
    let (status, _, body) = get(&format!("{base}/v1/complaints/open-counts")).await;
    assert_eq!(status, 200, "{body}");
    assert!(items(&body).is_empty(), "none open: {body}");
}

//! The workbench as a bank deploys it: the command service, relay, projector and query
//! service as processes on PostgreSQL and NATS JetStream, authentication on (tokens of
//! the identity provider, here HS256), the workbench's cookies `Secure` with the
//! `__Host-` prefix (the default). In headless Chromium: sign-in with a token, a customer
//! named `<script>alert(1)</script>` shown as text, the funnel equal to the API's answer,
//! a slow answer said to be computing and then shown with its time (the pages' wait set
//! to nothing), and a manager refused another manager's customer exactly as the API
//! refuses it.

use std::time::{Duration, Instant};

use chrono::Utc;
use crm_domain::customer::*;
use crm_domain::*;
use crm_eventstore::testing::TestDatabase;
use crm_integration_tests::browser::Browser;
use crm_integration_tests::workbench::{
    check_page, click_and_load, funnel_table, sign_in_with_token,
};
use crm_integration_tests::{Platform, Service};
use serde_json::{json, Value};
use uuid::Uuid;

const SECRET: &str = "workbench-test-secret-of-32-bytes-or-more";
const ISSUER: &str = "crm-test-idp";
const XSS: &str = "<script>alert(1)</script>";

fn token(audience: &str, sub: &str, extra: Value) -> String {
    let mut claims = json!({
        "iss": ISSUER, "aud": audience, "sub": sub, "exp": Utc::now().timestamp() + 600,
    });
    for (k, v) in extra.as_object().unwrap() {
        claims[k] = v.clone();
    }
    crm_auth::sign_hs256(SECRET.as_bytes(), &claims)
}

fn with_auth(mut env: Vec<(&'static str, String)>) -> Vec<(&'static str, String)> {
    env.push(("CRM_AUTH_HS256_SECRET", SECRET.into()));
    env.push(("CRM_AUTH_ISSUER", ISSUER.into()));
    env.push(("CRM_INDEX_KEY", "workbench-test-index-key".into()));
    env
}

async fn send(http: &reqwest::Client, base: &str, bearer: &str, command: &Command) {
    let body = crm_integration_tests::command_body("person:ops", command);
    let r = http
        .post(format!("{base}/v1/commands/{}", command.name()))
        .header("content-type", "application/json")
        .bearer_auth(bearer)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status();
    assert_eq!(
        status,
        200,
        "{}: {}",
        command.name(),
        r.text().await.unwrap()
    );
}

async fn get(http: &reqwest::Client, url: &str, bearer: &str) -> (u16, Value) {
    let r = http.get(url).bearer_auth(bearer).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn assign(c: CustomerId, m: ManagerId) -> Command {
    CustomerCommand::AssignOwner(AssignOwner {
        customer_id: c,
        manager_id: m,
        reason: "walk-in".into(),
    })
    .into()
}

/// The services as processes, authentication on; killed when dropped.
struct Deployed {
    _services: Vec<Service>,
    commands: String,
    query: String,
}

async fn deploy(platform: &Platform, read_db: &TestDatabase) -> Deployed {
    let mut commands = Service::start(
        "crm-command-service",
        &["--http-addr", "127.0.0.1:0"],
        &with_auth(platform.env()),
    );
    let mut relay = Service::start("crm-relay", &[], &platform.env());
    let mut projector_env = platform.env();
    projector_env.push(("CRM_READ_URL", read_db.url.clone()));
    projector_env.push(("CRM_HTTP_ADDR", "127.0.0.1:0".into()));
    let mut projector = Service::start("crm-projector", &[], &projector_env);
    let mut query_env = with_auth(vec![
        ("CRM_READ_URL", read_db.url.clone()),
        ("CRM_STORE_URL", platform.db.url.clone()),
        (
            "CRM_WORKBENCH_KEY",
            "5a1c9e7b3d2f4a6c8e0b1d3f5a7c9e1b3d5f7a9c1e3b5d7f9a1c3e5b7d9f1a3c".into(),
        ),
        // Pages do not wait for slow answers: the book's are quick, so only this shows
        // the pages' states for a slow one.
        ("CRM_WORKBENCH_WAIT_MS", "0".into()),
    ]);
    query_env.push(("CRM_HTTP_ADDR", "127.0.0.1:0".into()));
    let mut query = Service::start("crm-query", &[], &query_env);
    let commands_base = commands.http_base().await;
    relay.wait_ready().await;
    projector.wait_ready().await;
    let query_base = query.http_base().await;
    Deployed {
        _services: vec![commands, relay, projector, query],
        commands: commands_base,
        query: query_base,
    }
}

/// Two managers in two teams, two customers each (one named as a script), and the read
/// models caught up with them.
async fn seed(http: &reqwest::Client, d: &Deployed) -> ((ManagerId, ManagerId), Vec<CustomerId>) {
    let admin_cmd = token("crm-commands", "ops", json!({"role": "admin"}));
    let (a, b) = (
        ManagerId::new(Uuid::now_v7()),
        ManagerId::new(Uuid::now_v7()),
    );
    for (m, team) in [(a, "east-1"), (b, "east-2")] {
        let reg = crm_integration_tests::register_manager(m, &format!("Manager {team}"), team);
        send(http, &d.commands, &admin_cmd, &reg).await;
    }
    let ids: Vec<CustomerId> = (0..4).map(|_| CustomerId::new(Uuid::now_v7())).collect();
    let names = ["Alpha Ltd", XSS, "Bravo Ltd", "Charlie Ltd"];
    for (i, (c, name)) in ids.iter().zip(names).enumerate() {
        let phone = format!("+86 139 {:08}", i + 1);
        let reg = crm_integration_tests::register_customer(*c, name, Some(phone), None);
        send(http, &d.commands, &admin_cmd, &reg).await;
        let owner = if i < 2 { a } else { b };
        send(http, &d.commands, &admin_cmd, &assign(*c, owner)).await;
    }
    let admin = token("crm-query", "ops", json!({"role": "admin"}));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let url = format!("{}/v1/customers?owner_id={b}", d.query);
        let (_, page) = get(http, &url, &admin).await;
        if page["items"].as_array().is_some_and(|i| i.len() == 2) {
            return ((a, b), ids);
        }
        assert!(
            Instant::now() < deadline,
            "read models did not catch up: {page}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_workbench_on_postgres_and_nats() {
    let platform = Platform::new().await;
    let read_db = TestDatabase::create().await;
    let deployed = deploy(&platform, &read_db).await;
    let http = reqwest::Client::new();
    let ((a, b), ids) = seed(&http, &deployed).await;
    let base = deployed.query.clone();
    let admin = token("crm-query", "ops", json!({"role": "admin"}));

    let browser = Browser::start_with(&["--window-size=1366,911"])
        .await
        .unwrap();
    browser.goto(&format!("{base}/ui/funnel")).await.unwrap();
    assert!(browser
        .url()
        .await
        .unwrap()
        .contains("/ui/sign-in?next=/ui/funnel"));
    sign_in_with_token(&browser, &base, &admin).await;
    assert!(
        browser.url().await.unwrap().ends_with("/ui/funnel"),
        "back where it began"
    );
    assert_eq!(
        browser.find("#who").await.unwrap().text().await.unwrap(),
        "ops"
    );
    check_page(&browser, "pg-funnel").await;
    assert!(
        browser
            .try_find("#figures-pending")
            .await
            .unwrap()
            .is_some(),
        "a page that does not wait says the figures are being computed"
    );
    let (_, api) = get(&http, &format!("{base}/v1/funnel/stages"), &admin).await;
    let want: std::collections::BTreeMap<(String, String), i64> = api["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let key = (
                r["slice"].as_str().unwrap().into(),
                r["stage"].as_str().unwrap().into(),
            );
            (key, r["customers"].as_i64().unwrap())
        })
        .collect();
    assert_eq!(
        funnel_table(&browser).await,
        want,
        "the page shows the API's funnel"
    );

    a_slow_answer_is_shown_once_computed(&browser, &http, &base, &admin).await;
    a_script_for_a_name_is_shown_as_text(&browser, &base, ids[1]).await;
    a_manager_is_refused_as_the_api_refuses(&browser, &http, &base, (a, b), &ids).await;
    browser.close().await.unwrap();
}

/// The conversion the first visit left computing: a reload shows it with when it was
/// computed and how long that took, equal to the API's.
async fn a_slow_answer_is_shown_once_computed(
    b: &Browser,
    http: &reqwest::Client,
    base: &str,
    bearer: &str,
) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        b.goto(&format!("{base}/ui/funnel")).await.unwrap();
        if b.try_find("#figures-computed").await.unwrap().is_some() {
            break;
        }
        assert!(
            b.try_find("#figures-pending").await.unwrap().is_some(),
            "neither computed nor said to be computing"
        );
        assert!(Instant::now() < deadline, "conversion never computed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(b.try_find("#figures-pending").await.unwrap().is_none());
    check_page(b, "pg-funnel-computed").await;
    let mut shown = std::collections::BTreeMap::new();
    for row in b.find_all("#conversion tbody tr").await.unwrap() {
        let stage = row.find_css("th").await.unwrap().text().await.unwrap();
        let mut n = Vec::new();
        for td in ["td:nth-of-type(2)", "td:nth-of-type(3)"] {
            let cell = row.find_css(td).await.unwrap().text().await.unwrap();
            n.push(cell.parse::<i64>().unwrap());
        }
        shown.insert(stage, (n[0], n[1]));
    }
    let (_, api) = get(http, &format!("{base}/v1/funnel/conversion"), bearer).await;
    let want: std::collections::BTreeMap<String, (i64, i64)> = api["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let n = |k: &str| c[k].as_i64().unwrap();
            (
                c["stage"].as_str().unwrap().into(),
                (n("entered"), n("reached_next")),
            )
        })
        .collect();
    assert!(!want.is_empty());
    assert_eq!(
        shown, want,
        "the conversion shown once computed is the API's"
    );
}

async fn a_script_for_a_name_is_shown_as_text(b: &Browser, base: &str, id: CustomerId) {
    b.goto(&format!("{base}/ui/customers/{id}")).await.unwrap();
    let name = b.find("#customer-name").await.unwrap();
    assert_eq!(
        name.text().await.unwrap(),
        XSS,
        "decrypted and shown as text"
    );
    let html = b
        .execute(
            "return document.getElementById('customer-name').innerHTML;",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(html, json!("&lt;script&gt;alert(1)&lt;/script&gt;"));
    // No script ran (an alert would fail every later command) and none is inline.
    let inline = b
        .execute(
            "return document.querySelectorAll('script:not([src]):not([type=\"application/json\"])').length;",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(inline, json!(0));
    check_page(b, "pg-customer-script-name").await;
    // The pool and book lists escape it too.
    b.goto(&format!("{base}/ui/book")).await.unwrap();
    let listed = crm_integration_tests::workbench::texts(b, "#customers tbody th a").await;
    assert!(listed.iter().any(|n| n == XSS), "{listed:?}");
}

async fn a_manager_is_refused_as_the_api_refuses(
    b: &Browser,
    http: &reqwest::Client,
    base: &str,
    (a, other): (ManagerId, ManagerId),
    ids: &[CustomerId],
) {
    click_and_load(b, "#sign-out").await;
    let manager = token(
        "crm-query",
        "li.wei",
        json!({"role": "manager", "manager_id": a.to_string()}),
    );
    sign_in_with_token(b, base, &manager).await;
    assert!(b.url().await.unwrap().ends_with("/ui/book"));
    let owners =
        crm_integration_tests::workbench::texts(b, "#customers tbody td[data-manager-id]").await;
    assert_eq!(owners.len(), 2, "only manager A's two customers");
    check_page(b, "pg-book").await;

    for theirs in &ids[2..] {
        b.goto(&format!("{base}/ui/customers/{theirs}"))
            .await
            .unwrap();
        let page = b.find("#problem").await.unwrap().text().await.unwrap();
        let (status, api) = get(http, &format!("{base}/v1/customers/{theirs}"), &manager).await;
        assert_eq!(status, 404);
        assert_eq!(
            page,
            api["detail"].as_str().unwrap(),
            "the page and the API alike"
        );
    }
    b.goto(&format!("{base}/ui/book?manager={other}"))
        .await
        .unwrap();
    let shown =
        crm_integration_tests::workbench::texts(b, "#customers tbody td[data-manager-id]").await;
    assert_eq!(
        shown.len(),
        2,
        "another manager's book by URL shows one's own"
    );
    let _ = b.console_errors().await;
}

/// A free port on loopback (the redirect URI registered at the provider names it before
/// the service starts).
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Sign-in through the bank's identity provider: the authorization-code flow with PKCE
/// against a local OpenID provider, the query service verifying its tokens by JWKS.
/// In the browser: the provider's link on the sign-in page, back signed in where the
/// person began. Then what must be refused: an answer for another sign-in (state), a
/// code redeemed twice, an ID token with another nonce, an error from the provider.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_workbench_signs_in_through_the_identity_provider() {
    use crm_integration_tests::idp::Idp;
    let idp = Idp::start("crm-query", json!({"sub": "audrey", "role": "auditor"})).await;
    let read_db = TestDatabase::create().await;
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let env = vec![
        ("CRM_READ_URL", read_db.url.clone()),
        ("CRM_HTTP_ADDR", format!("127.0.0.1:{port}")),
        ("CRM_AUTH_OIDC_DISCOVERY", idp.issuer()),
        ("CRM_AUTH_ISSUER", idp.issuer()),
        ("CRM_WORKBENCH_OIDC_CLIENT_ID", "crm-workbench".into()),
        (
            "CRM_WORKBENCH_OIDC_REDIRECT_URL",
            format!("{base}/ui/callback"),
        ),
    ];
    let mut query = Service::start("crm-query", &[], &env);
    assert_eq!(query.http_base().await, base);

    let b = Browser::start_with(&["--window-size=1366,911"])
        .await
        .unwrap();
    b.goto(&format!("{base}/ui/funnel")).await.unwrap();
    check_page(&b, "sign-in-oidc").await;
    click_and_load(&b, "#oidc-sign-in").await;
    // The provider approved at once and sent the browser back; the session is made.
    b.wait_for("#who", Duration::from_secs(10)).await.unwrap();
    assert!(
        b.url().await.unwrap().ends_with("/ui/funnel"),
        "back where it began"
    );
    assert_eq!(
        b.find("#who").await.unwrap().text().await.unwrap(),
        "audrey"
    );
    assert_eq!(idp.open_grants(), 0, "the code was redeemed");
    b.close().await.unwrap();

    the_flow_refuses_what_it_must(&idp, &base).await;
}

/// Start a sign-in as a browser would, without one: the pending cookie and the
/// provider's redirect back (code and state).
async fn begin(http: &reqwest::Client, base: &str) -> (String, String) {
    let start = http
        .get(format!("{base}/ui/sign-in/oidc?next=/ui/pool"))
        .send()
        .await
        .unwrap();
    assert_eq!(start.status(), 303);
    let pending = start.headers()["set-cookie"].to_str().unwrap();
    let pending = pending.split(';').next().unwrap().to_string();
    let to_idp = start.headers()["location"].to_str().unwrap().to_string();
    let back = http.get(to_idp).send().await.unwrap();
    let callback = back.headers()["location"].to_str().unwrap().to_string();
    (pending, callback)
}

async fn the_flow_refuses_what_it_must(idp: &crm_integration_tests::idp::Idp, base: &str) {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let call = |url: String, cookie: Option<String>| {
        let mut r = http.get(url);
        if let Some(c) = cookie {
            r = r.header("cookie", c);
        }
        r.send()
    };
    let signed_in = |r: &reqwest::Response| {
        r.headers().get_all("set-cookie").iter().any(|v| {
            let v = v.to_str().unwrap();
            v.starts_with("__Host-crm-session=") && !v.starts_with("__Host-crm-session=;")
        })
    };

    // The genuine answer signs in, once; the same code again is refused.
    let (pending, callback) = begin(&http, base).await;
    let ok = call(callback.clone(), Some(pending.clone())).await.unwrap();
    assert_eq!(ok.status(), 303);
    assert!(signed_in(&ok));
    assert_eq!(ok.headers()["location"], "/ui/pool");
    let again = call(callback, Some(pending)).await.unwrap();
    assert_eq!(again.status(), 403, "a code redeemed twice");
    assert!(!signed_in(&again));

    // An answer meant for another browser's sign-in, or with no sign-in pending.
    let (_, theirs) = begin(&http, base).await;
    let (mine, _) = begin(&http, base).await;
    let r = call(theirs.clone(), Some(mine)).await.unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("state differs"));
    let r = call(theirs, None).await.unwrap();
    assert_eq!(r.status(), 403);

    // An ID token whose nonce is not the sign-in's.
    idp.send_wrong_nonce(true);
    let (pending, callback) = begin(&http, base).await;
    let r = call(callback, Some(pending)).await.unwrap();
    assert_eq!(r.status(), 403);
    assert!(!signed_in(&r));
    assert!(r.text().await.unwrap().contains("nonce"));
    idp.send_wrong_nonce(false);

    // The provider's own refusal, shown escaped.
    let r = call(
        format!("{base}/ui/callback?error=access_denied&error_description=%3Cb%3Eno%3C/b%3E"),
        None,
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 403);
    let page = r.text().await.unwrap();
    assert!(
        page.contains("access_denied") && !page.contains("<b>no"),
        "{page}"
    );
}

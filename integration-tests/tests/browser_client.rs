//! The WebDriver client of the workbench browser tests (`crm_integration_tests::browser`),
//! tested against a few static pages served by a tiny axum server: navigation, finding,
//! clicking, forms, the keyboard, scripts, screenshots, the console, Accept-Language and
//! axe-core. Needs Chromium and chromedriver (`scripts/services` installs them).

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::Query;
use axum::http::{header, HeaderMap};
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use axum::Router;
use crm_integration_tests::browser::{keys, serious, Browser};
use serde_json::json;

/// Head of every page: a language, a title, and an empty icon so Chromium does not log
/// a failed `/favicon.ico` load as a console error.
fn page(title: &str, body: &str) -> Html<String> {
    Html(format!(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title}</title><link rel="icon" href="data:,"></head><body><main>{body}</main></body></html>"#
    ))
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

async fn home() -> Html<String> {
    page(
        "Home",
        r#"<h1 id="heading">Workbench</h1><p><a id="to-search" href="/search">Search contacts</a></p>"#,
    )
}

async fn search() -> Html<String> {
    page(
        "Search",
        r#"<h1>Search</h1><form action="/results" method="get"><label for="q">Query</label> <input id="q" name="q" value="old"> <button id="go" type="submit">Search</button></form>"#,
    )
}

async fn results(Query(query): Query<HashMap<String, String>>) -> Html<String> {
    let q = escape(query.get("q").map_or("", String::as_str));
    page(
        "Results",
        &format!(r#"<h1>Results</h1><p id="query">{q}</p>"#),
    )
}

/// The request's Accept-Language, as the workbench would see it.
async fn language(headers: HeaderMap) -> Html<String> {
    let accept = headers.get(header::ACCEPT_LANGUAGE);
    let accept = escape(accept.and_then(|v| v.to_str().ok()).unwrap_or(""));
    page(
        "Language",
        &format!(r#"<h1>Language</h1><p id="accept">{accept}</p>"#),
    )
}

/// A console error from an external script, an image without alt text, an input
/// without a label: what the console and axe checks must catch.
async fn broken() -> Html<String> {
    page(
        "Broken",
        r#"<h1>Broken</h1><script src="/boom.js"></script><img src="data:image/gif;base64,R0lGODlhAQABAAAAACw="><form><input id="nolabel" name="x"></form>"#,
    )
}

async fn boom_js() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript")],
        r#"console.error("boom");"#,
    )
}

/// Serves the pages on a free port; returns the base URL.
async fn serve() -> String {
    let app = Router::new()
        .route("/", get(home))
        .route("/search", get(search))
        .route("/results", get(results))
        .route("/language", get(language))
        .route("/broken", get(broken))
        .route("/boom.js", get(boom_js));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn navigates_clicks_fills_forms_and_uses_the_keyboard() {
    let base = serve().await;
    let browser = Browser::start().await.unwrap();

    browser.goto(&format!("{base}/")).await.unwrap();
    assert_eq!(browser.title().await.unwrap(), "Home");
    assert_eq!(
        browser
            .find("#heading")
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "Workbench"
    );
    assert!(browser.try_find("#missing").await.unwrap().is_none());
    let missing = browser.find("#missing").await.unwrap_err();
    assert!(
        format!("{missing:#}").contains("no such element"),
        "{missing:#}"
    );
    let link = browser.find("a#to-search").await.unwrap();
    assert_eq!(link.attr("href").await.unwrap().as_deref(), Some("/search"));
    link.click().await.unwrap();
    assert_eq!(browser.url().await.unwrap(), format!("{base}/search"));

    // Fill and submit the GET form.
    let input = browser.find("#q").await.unwrap();
    input.clear().await.unwrap();
    input.send_keys("ada & co").await.unwrap();
    browser.find("#go").await.unwrap().click().await.unwrap();
    let echoed = browser
        .wait_for("#query", Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(echoed.text().await.unwrap(), "ada & co");
    assert_eq!(
        browser.url().await.unwrap(),
        format!("{base}/results?q=ada+%26+co")
    );

    // The keyboard alone: Tab to the input, type, Tab to the button, Enter.
    browser.goto(&format!("{base}/search")).await.unwrap();
    browser.send_keys_to_active(keys::TAB).await.unwrap();
    let focused = browser.active_element().await.unwrap();
    assert_eq!(focused.attr("id").await.unwrap().as_deref(), Some("q"));
    // Select all (Control held), then replace; Element::clear would move the focus away.
    let select_all = [keys::CONTROL, "a"].concat();
    browser.send_keys_to_active(&select_all).await.unwrap();
    let typed = [keys::BACKSPACE, "grace", keys::TAB].concat();
    browser.send_keys_to_active(&typed).await.unwrap();
    let focused = browser.active_element().await.unwrap();
    assert_eq!(focused.attr("id").await.unwrap().as_deref(), Some("go"));
    browser.send_keys_to_active(keys::ENTER).await.unwrap();
    let echoed = browser
        .wait_for("#query", Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(echoed.text().await.unwrap(), "grace");

    // Scripts, with arguments and elements.
    let add = "return arguments[0] + arguments[1];";
    let sum = browser.execute(add, &[json!(2), json!(3)]).await.unwrap();
    assert_eq!(sum, json!(5));
    let tag_name = "return arguments[0].tagName;";
    let tag = browser.execute(tag_name, &[echoed.as_arg()]).await.unwrap();
    assert_eq!(tag, json!("P"));
    let done = "arguments[arguments.length - 1](document.title);";
    assert_eq!(
        browser.execute_async(done, &[]).await.unwrap(),
        json!("Results")
    );

    // A screenshot, kept for looking at.
    let png = browser.screenshot_png().await.unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"));
    let saved = browser.save_screenshot("selftest").await.unwrap();
    assert!(
        saved.ends_with("workbench/selftest.png"),
        "{}",
        saved.display()
    );
    assert!(std::fs::read(&saved)
        .unwrap()
        .starts_with(b"\x89PNG\r\n\x1a\n"));

    assert_eq!(
        browser.console_errors().await.unwrap(),
        Vec::<String>::new()
    );
    browser.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_console_errors_and_accessibility_violations() {
    let base = serve().await;
    let browser = Browser::start().await.unwrap();

    browser.goto(&format!("{base}/broken")).await.unwrap();
    let errors = browser.console_errors().await.unwrap();
    assert!(
        errors
            .iter()
            .any(|e| e.contains("boom.js") && e.contains("boom")),
        "{errors:?}"
    );
    assert!(
        browser.console_errors().await.unwrap().is_empty(),
        "reading drains the log"
    );
    let violations = browser.axe().await.unwrap();
    let bad = serious(&violations);
    let ids: Vec<&str> = bad.iter().map(|v| v.id.as_str()).collect();
    assert!(
        ids.contains(&"image-alt") && ids.contains(&"label"),
        "{violations:#?}"
    );
    let label = bad.iter().find(|v| v.id == "label").unwrap();
    assert_eq!(label.targets, ["#nolabel"], "{label}");

    browser.goto(&format!("{base}/search")).await.unwrap();
    assert!(browser.console_errors().await.unwrap().is_empty());
    let violations = browser.axe().await.unwrap();
    assert!(serious(&violations).is_empty(), "{violations:#?}");
}

/// With `--headless=new`, `--lang` alone changes neither Accept-Language nor
/// `navigator.languages`; the client also sets the `intl.accept_languages` preference.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lang_switch_sets_accept_language() {
    let base = serve().await;
    let languages = "return navigator.languages;";
    let (english, chinese) = tokio::join!(Browser::start(), Browser::start_with(&["--lang=zh-CN"]));
    let (english, chinese) = (english.unwrap(), chinese.unwrap());
    for (browser, lang) in [(&english, "en-US"), (&chinese, "zh-CN")] {
        browser.goto(&format!("{base}/language")).await.unwrap();
        let accept = browser.find("#accept").await.unwrap().text().await.unwrap();
        assert!(accept.starts_with(lang), "{lang}: Accept-Language {accept}");
        let navigator = browser.execute(languages, &[]).await.unwrap();
        assert_eq!(navigator[0], json!(lang), "{navigator}");
    }
}

//! Steps the workbench's browser tests share: check a page (console, accessibility,
//! screenshot), click and wait for the next document, sign in with a token.

use std::time::Duration;

use crate::browser::{serious, Browser};

/// No console error, no serious or critical accessibility violation (axe-core); a
/// screenshot named `workbench-<name>` under `target/workbench/`.
pub async fn check_page(b: &Browser, name: &str) {
    let errors = b.console_errors().await.unwrap();
    assert!(errors.is_empty(), "{name}: console errors {errors:#?}");
    let violations = b.axe().await.unwrap();
    let bad = serious(&violations);
    assert!(bad.is_empty(), "{name}: accessibility violations {bad:#?}");
    b.save_screenshot(&format!("workbench-{name}"))
        .await
        .unwrap();
}

/// Click what submits a form or follows a link, and wait for the next document (an
/// element found right after the click could still be the old page's).
pub async fn click_and_load(b: &Browser, css: &str) {
    b.execute(
        "document.documentElement.setAttribute('data-stale', '1');",
        &[],
    )
    .await
    .unwrap();
    b.find(css).await.unwrap().click().await.unwrap();
    b.wait_for("html:not([data-stale])", Duration::from_secs(10))
        .await
        .unwrap();
}

/// Sign in on the sign-in page with an access token; lands on `/ui/` (or the page the
/// sign-in page was asked for).
pub async fn sign_in_with_token(b: &Browser, base: &str, token: &str) {
    if !b.url().await.unwrap().contains("/ui/sign-in") {
        b.goto(&format!("{base}/ui/sign-in")).await.unwrap();
    }
    let field = b.find("#token").await.unwrap();
    b.execute(
        "arguments[0].value = arguments[1];",
        &[field.as_arg(), token.into()],
    )
    .await
    .unwrap();
    click_and_load(b, "#token-sign-in").await;
}

/// The texts of the elements `css` selects.
pub async fn texts(b: &Browser, css: &str) -> Vec<String> {
    let mut out = Vec::new();
    for e in b.find_all(css).await.unwrap() {
        out.push(e.text().await.unwrap());
    }
    out
}

/// The funnel page's stage table as (slice, stage) → customers.
pub async fn funnel_table(b: &Browser) -> std::collections::BTreeMap<(String, String), i64> {
    let mut shown = std::collections::BTreeMap::new();
    for row in b.find_all("#stages tbody tr").await.unwrap() {
        let cells = row.text().await.unwrap();
        let parts: Vec<&str> = cells.split_whitespace().collect();
        let n: i64 = parts[parts.len() - 1].parse().unwrap();
        let stage = parts[parts.len() - 2].to_string();
        shown.insert((parts[..parts.len() - 2].join(" "), stage), n);
    }
    shown
}

//! Signing in and out, and the language switch: the forms that change something, each
//! with its CSRF token and refused when the browser says it came from another site.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use cookie::Cookie;
use serde::Deserialize;

use super::i18n::{Lang, Msg};
use super::session::{random_secret, Session};
use super::view::{add_cookie, base_cookie, names, Chrome, Nav, Viewer, LANG_COOKIE};
use crate::AppState;

/// How long a local sign-in lasts.
const LOCAL_TTL_S: i64 = 8 * 3600;

#[derive(Deserialize)]
pub(crate) struct NextQuery {
    next: Option<String>,
}

pub(crate) struct Person {
    pub index: usize,
    pub label: String,
}

#[derive(Template)]
#[template(path = "sign_in.html")]
pub(crate) struct SignInPage {
    pub chrome: Chrome,
    pub next: String,
    pub people: Vec<Person>,
    pub failed: Option<String>,
    /// The identity provider's sign-in, when configured: its link.
    pub oidc: Option<String>,
}

/// Only a path of this workbench: never another site (an open redirect).
pub(crate) fn local_path(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with("/ui") && !n.starts_with("//") && !n.contains('\\') => n.into(),
        _ => "/ui/".into(),
    }
}

/// The sign-in page (read without the `Viewer` extractor, which sends the signed-out
/// here).
pub(crate) async fn page(
    State(s): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<NextQuery>,
) -> Response {
    let viewer = Viewer::read(&headers, &s).await;
    sign_in_page(
        &s,
        &viewer,
        local_path(q.next.as_deref()),
        None,
        StatusCode::OK,
    )
}

fn sign_in_page(
    s: &AppState,
    viewer: &Viewer,
    next: String,
    failed: Option<String>,
    status: StatusCode,
) -> Response {
    let people = s.web.local.as_ref().map_or_else(Vec::new, |l| {
        l.people
            .iter()
            .enumerate()
            .map(|(index, p)| Person {
                index,
                label: p.label.clone(),
            })
            .collect()
    });
    let oidc = s
        .web
        .oidc
        .as_ref()
        .map(|_| format!("/ui/sign-in/oidc?next={}", super::view::urlencode(&next)));
    let page = SignInPage {
        chrome: viewer.chrome(s, Nav::None, "/ui/sign-in"),
        oidc,
        next,
        people,
        failed,
    };
    viewer.render(status, &page)
}

/// Refuse a form that another site could have sent: `Sec-Fetch-Site` other than
/// same-origin (browsers that send it), or a CSRF token that is not this viewer's.
fn forged(s: &AppState, viewer: &Viewer, headers: &HeaderMap, token: &str) -> bool {
    let site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    let cross = site.is_some_and(|v| v != "same-origin");
    cross || !s.web.sealer.csrf_ok(&viewer.csrf_secret, token)
}

fn refused(s: &AppState, viewer: &Viewer) -> Response {
    let p = crate::problem::Problem::forbidden(
        "this form did not come from this page (its CSRF token is missing or stale): reload and try again",
    );
    viewer.refusal(s, p)
}

#[derive(Deserialize)]
pub(crate) struct LocalForm {
    csrf: String,
    person: usize,
    next: Option<String>,
}

pub(crate) async fn local(
    State(s): State<AppState>,
    headers: HeaderMap,
    Form(f): Form<LocalForm>,
) -> Response {
    let viewer = Viewer::read(&headers, &s).await;
    if forged(&s, &viewer, &headers, &f.csrf) {
        return refused(&s, &viewer);
    }
    let now = crm_auth::now_unix();
    let token = s
        .web
        .local
        .as_ref()
        .and_then(|l| l.token(f.person, now, LOCAL_TTL_S));
    match token {
        Some(token) => signed_in(&s, token, now + LOCAL_TTL_S, local_path(f.next.as_deref())),
        None => viewer.refusal(
            &s,
            crate::problem::Problem::not_found("no such person to sign in as"),
        ),
    }
}

#[derive(Deserialize)]
pub(crate) struct TokenForm {
    csrf: String,
    token: String,
    next: Option<String>,
}

/// Sign in with an access token from the identity provider (or `crm token`): verified
/// exactly as the API verifies a bearer token.
pub(crate) async fn token(
    State(s): State<AppState>,
    headers: HeaderMap,
    Form(f): Form<TokenForm>,
) -> Response {
    let viewer = Viewer::read(&headers, &s).await;
    if forged(&s, &viewer, &headers, &f.csrf) {
        return refused(&s, &viewer);
    }
    let next = local_path(f.next.as_deref());
    let Some(verifier) = &s.security.auth else {
        return Redirect::to(&next).into_response();
    };
    let token = f.token.trim().to_string();
    match verifier.verify(&token, crm_auth::now_unix()).await {
        Ok(_) => {
            let expires = token_expiry(&token).unwrap_or(crm_auth::now_unix() + 3600);
            signed_in(&s, token, expires, next)
        }
        Err(e) => sign_in_page(
            &s,
            &viewer,
            next,
            Some(e.to_string()),
            StatusCode::UNAUTHORIZED,
        ),
    }
}

/// `exp` of a token already verified.
fn token_expiry(token: &str) -> Option<i64> {
    use base64::Engine;
    let payload = token.split('.').nth(1)?;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    serde_json::from_slice::<serde_json::Value>(&raw).ok()?["exp"].as_i64()
}

/// The session cookie for `token`, and on to `next`.
pub(crate) fn signed_in(s: &AppState, token: String, expires: i64, next: String) -> Response {
    let names = names(s.web.secure_cookies);
    let session = Session {
        token,
        expires,
        csrf: random_secret(),
    };
    let sealed = s.web.sealer.seal(names.session, &session);
    let max_age = (expires - crm_auth::now_unix()).max(0);
    let c = base_cookie(names.session, sealed, s.web.secure_cookies)
        .max_age(cookie::time::Duration::seconds(max_age))
        .build();
    let mut res = Redirect::to(&next).into_response();
    add_cookie(&mut res, &c);
    res
}

#[derive(Deserialize)]
pub(crate) struct CsrfForm {
    csrf: String,
}

pub(crate) async fn sign_out(
    State(s): State<AppState>,
    headers: HeaderMap,
    Form(f): Form<CsrfForm>,
) -> Response {
    let viewer = Viewer::read(&headers, &s).await;
    if forged(&s, &viewer, &headers, &f.csrf) {
        return refused(&s, &viewer);
    }
    let names = names(s.web.secure_cookies);
    let gone = base_cookie(names.session, String::new(), s.web.secure_cookies)
        .max_age(cookie::time::Duration::ZERO)
        .build();
    let mut res = Redirect::to("/ui/sign-in").into_response();
    add_cookie(&mut res, &gone);
    res
}

#[derive(Deserialize)]
pub(crate) struct LangForm {
    csrf: String,
    lang: String,
    back: Option<String>,
}

pub(crate) async fn language(
    State(s): State<AppState>,
    headers: HeaderMap,
    Form(f): Form<LangForm>,
) -> Response {
    let viewer = Viewer::read(&headers, &s).await;
    if forged(&s, &viewer, &headers, &f.csrf) {
        return refused(&s, &viewer);
    }
    let Some(lang) = Lang::parse(&f.lang) else {
        let p = crate::problem::Problem::bad(format!("{:?} is not en or zh-CN", f.lang));
        return viewer.refusal(&s, p);
    };
    let c = Cookie::build((LANG_COOKIE, lang.tag()))
        .path("/")
        .same_site(cookie::SameSite::Lax)
        .secure(s.web.secure_cookies)
        .max_age(cookie::time::Duration::days(365))
        .build();
    let mut res = Redirect::to(&local_path(f.back.as_deref())).into_response();
    add_cookie(&mut res, &c);
    res
}

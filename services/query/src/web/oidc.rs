//! Sign-in through the bank's identity provider: the authorization-code flow with PKCE
//! (`crm_auth::oidc`). The sign-in's `state`, `nonce`, PKCE verifier and where to go
//! afterwards travel in a short-lived sealed cookie, so any replica finishes a sign-in
//! another began; the access token the provider issues becomes the session, verified as
//! the API verifies bearer tokens.

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use serde::{Deserialize, Serialize};

use super::session::{random_bytes, random_secret};
use super::signin::{local_path, signed_in};
use super::view::{add_cookie, base_cookie, cookie_value, Viewer};
use crate::problem::Problem;
use crate::AppState;

/// How long a person may take at the provider.
const SIGN_IN_TTL_S: i64 = 600;

/// A sign-in in progress.
#[derive(Serialize, Deserialize)]
struct Pending {
    state: String,
    nonce: String,
    verifier: String,
    next: String,
    expires: i64,
}

fn cookie_name(secure: bool) -> &'static str {
    if secure {
        "__Host-crm-oidc"
    } else {
        "crm-oidc"
    }
}

#[derive(Deserialize)]
pub(crate) struct StartQuery {
    next: Option<String>,
}

/// Off to the provider. A GET (a link), so a person can bookmark the sign-in; it
/// changes nothing but this browser's pending sign-in.
pub(crate) async fn start(
    State(s): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<StartQuery>,
) -> Response {
    let Some(client) = &s.web.oidc else {
        let viewer = Viewer::read(&headers, &s).await;
        let p = Problem::not_found("sign-in through an identity provider is not configured");
        return viewer.refusal(&s, p);
    };
    let (verifier, challenge) = crm_auth::oidc::pkce(&random_bytes());
    let pending = Pending {
        state: random_secret(),
        nonce: random_secret(),
        verifier,
        next: local_path(q.next.as_deref()),
        expires: crm_auth::now_unix() + SIGN_IN_TTL_S,
    };
    let to = client.authorization_url(&pending.state, &pending.nonce, &challenge);
    let name = cookie_name(s.web.secure_cookies);
    let sealed = s.web.sealer.seal(name, &pending);
    let c = base_cookie(name, sealed, s.web.secure_cookies)
        .max_age(cookie::time::Duration::seconds(SIGN_IN_TTL_S))
        .build();
    let mut res = Redirect::to(&to).into_response();
    add_cookie(&mut res, &c);
    res
}

#[derive(Deserialize)]
pub(crate) struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// Back from the provider: the `state` must be this browser's pending sign-in's; the
/// code is exchanged with its PKCE verifier; the ID token's nonce checked; the access
/// token verified; then the session.
pub(crate) async fn callback(
    State(s): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<CallbackQuery>,
) -> Response {
    let viewer = Viewer::read(&headers, &s).await;
    let name = cookie_name(s.web.secure_cookies);
    let pending = cookie_value(&headers, name)
        .and_then(|v| s.web.sealer.open::<Pending>(name, &v))
        .filter(|p| p.expires >= crm_auth::now_unix());
    let finished = match finish(&s, pending, q).await {
        Ok((token, expires, next)) => signed_in(&s, token, expires, next),
        Err(p) => viewer.refusal(&s, p),
    };
    // The pending sign-in is used up, whatever came of it.
    let mut res = finished;
    let gone = base_cookie(name, String::new(), s.web.secure_cookies)
        .max_age(cookie::time::Duration::ZERO)
        .build();
    add_cookie(&mut res, &gone);
    res
}

async fn finish(
    s: &AppState,
    pending: Option<Pending>,
    q: CallbackQuery,
) -> Result<(String, i64, String), Problem> {
    let (Some(client), Some(verifier)) = (&s.web.oidc, &s.security.auth) else {
        return Err(Problem::not_found(
            "sign-in through an identity provider is not configured",
        ));
    };
    if let Some(error) = q.error {
        let detail = [Some(error), q.error_description].into_iter().flatten();
        let detail = detail.collect::<Vec<_>>().join(": ");
        return Err(Problem::forbidden(format!(
            "the identity provider did not sign you in: {}",
            crm_domain::text::escaped(&detail)
        )));
    }
    let pending = pending.ok_or_else(|| {
        Problem::forbidden(
            "no sign-in of this browser is waiting (expired, or begun elsewhere): sign in again",
        )
    })?;
    // Compared as digests: the comparison's time says nothing about the state itself.
    let digest = |v: &str| ring::digest::digest(&ring::digest::SHA256, v.as_bytes());
    let same_state = q
        .state
        .as_deref()
        .is_some_and(|st| digest(st).as_ref() == digest(&pending.state).as_ref());
    let Some(code) = q.code.filter(|_| same_state) else {
        return Err(Problem::forbidden(
            "this answer is not for this browser's sign-in (state differs): sign in again",
        ));
    };
    let now = crm_auth::now_unix();
    let tokens = client
        .exchange(&code, &pending.verifier, &pending.nonce, now)
        .await
        .map_err(Problem::forbidden)?;
    verifier
        .verify(&tokens.access_token, now)
        .await
        .map_err(|e| Problem::forbidden(format!("the access token: {e}")))?;
    let expires = now + tokens.expires_in.unwrap_or(3600).max(60);
    Ok((tokens.access_token, expires, pending.next))
}

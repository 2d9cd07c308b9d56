//! The workbench: server-rendered pages for managers, analysts and auditors, under
//! `/ui/` (ADR 0007). Pages ask through the same scoped reads as the JSON routes
//! (`crate::reads`), with the caller taken from a sealed session cookie holding an access
//! token that the service's own verifier checks on every request.

mod assets;
mod audit;
mod complaints;
mod customer;
mod format;
mod funnel;
pub mod i18n;
mod kpis;
mod oidc;
mod ownership;
mod returns;
pub mod session;
mod signin;
pub(crate) mod slow;
mod view;

use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;
use crm_auth::{sign_hs256, Principal, Role};

use crate::AppState;
pub use session::Sealer;

/// How the workbench keeps sessions and signs people in.
#[derive(Clone, Debug)]
pub struct Workbench {
    /// Seals the session cookie; the same key on every replica.
    pub sealer: Sealer,
    /// Cookies `Secure` with the `__Host-` prefix: on for HTTPS deployments, off only
    /// for the demo on `http://localhost`.
    pub secure_cookies: bool,
    /// Development sign-in as named people (the demo): tokens issued here.
    pub local: Option<Arc<LocalSignIn>>,
    /// Sign-in through the bank's identity provider (authorization code with PKCE).
    pub oidc: Option<Arc<crm_auth::oidc::OidcClient>>,
    /// How long a page waits for a slow answer (conversion, time in stage, moves,
    /// complaint counts, the KPI table) before it shows the last one or says it is
    /// being computed (`slow.rs`; default [`SLOW_ANSWER_WAIT`]).
    pub wait: std::time::Duration,
}

pub use slow::WAIT as SLOW_ANSWER_WAIT;

impl Default for Workbench {
    /// A key of this process, secure cookies, no local sign-in.
    fn default() -> Self {
        Self {
            sealer: Sealer::random(),
            secure_cookies: true,
            local: None,
            oidc: None,
            wait: SLOW_ANSWER_WAIT,
        }
    }
}

/// People one may sign in as without an identity provider (development and the demo),
/// and the HS256 secret their tokens are signed with (the verifier's own).
pub struct LocalSignIn {
    pub secret: Vec<u8>,
    pub issuer: String,
    pub audience: String,
    pub people: Vec<LocalPerson>,
}

impl std::fmt::Debug for LocalSignIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalSignIn")
            .field("issuer", &self.issuer)
            .field("people", &self.people.len())
            .finish_non_exhaustive()
    }
}

/// One person of the local sign-in.
#[derive(Debug, Clone)]
pub struct LocalPerson {
    /// What the sign-in page shows ("Li Wei, manager, east-1").
    pub label: String,
    pub principal: Principal,
}

impl LocalSignIn {
    /// An access token for person `index`, valid `ttl_s` from `now`.
    pub(crate) fn token(&self, index: usize, now: i64, ttl_s: i64) -> Option<String> {
        let p = &self.people.get(index)?.principal;
        let mut claims = serde_json::json!({
            "iss": self.issuer, "aud": self.audience, "sub": p.subject,
            "iat": now, "exp": now + ttl_s, "role": p.role.as_str(),
        });
        if let Some(m) = &p.manager_id {
            claims["manager_id"] = m.clone().into();
        }
        if let Some(t) = &p.team {
            claims["team"] = t.clone().into();
        }
        if p.role == Role::Service {
            return None;
        }
        Some(sign_hs256(&self.secret, &claims))
    }
}

/// The workbench's routes (merged into the service's router).
pub(crate) fn routes() -> Router<AppState> {
    let pages = Router::new()
        .route("/ui", get(ownership::home))
        .route("/ui/", get(ownership::home))
        .route("/ui/ownership", get(ownership::portfolios))
        .route("/ui/pool", get(ownership::pool))
        .route("/ui/book", get(ownership::book))
        .route("/ui/customers/{id}", get(customer::page))
        .route("/ui/funnel", get(funnel::page))
        .route("/ui/funnel.csv", get(funnel::csv))
        .route("/ui/kpis", get(kpis::page))
        .route("/ui/kpis.csv", get(kpis::csv))
        .route("/ui/complaints", get(complaints::list))
        .route("/ui/complaints/{id}", get(complaints::page))
        .route("/ui/audit", get(audit::page))
        .route("/ui/audit/customers", get(audit::customer_form))
        .route("/ui/audit/customers/{id}", get(audit::customer))
        .route("/ui/audit/managers", get(audit::manager_form))
        .route("/ui/audit/managers/{id}", get(audit::manager))
        .route("/ui/audit/checkpoints", get(audit::checkpoints))
        .route("/ui/audit/reads", get(audit::reads))
        .route("/ui/sign-in", get(signin::page))
        .route("/ui/sign-in/local", post(signin::local))
        .route("/ui/sign-in/token", post(signin::token))
        .route("/ui/sign-in/oidc", get(oidc::start))
        .route("/ui/callback", get(oidc::callback))
        .route("/ui/sign-out", post(signin::sign_out))
        .route("/ui/lang", post(signin::language))
        .layer(axum::middleware::from_fn(view::security_headers));
    pages.merge(assets::routes())
}

//! What every page shares: who is looking (the viewer, from the session cookie), the
//! page's frame (navigation, language, sign-out), rendering, errors as pages, and the
//! security headers.

use askama::Template;
use axum::extract::{FromRequestParts, Request};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use cookie::{Cookie, SameSite};
use crm_auth::{Principal, Role};

use super::i18n::{Lang, Msg};
use super::session::{random_secret, Session};
use crate::caller::{Caller, AUDITORS};
use crate::problem::Problem;
use crate::AppState;

pub(crate) const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; \
    base-uri 'none'";

/// Headers of every workbench response: no inline script or style, no framing, no
/// sniffing, no referrer leaving the site, nothing cached that a shared browser could show.
pub(crate) async fn security_headers(req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    let set = |h: &mut HeaderMap, k: header::HeaderName, v: &'static str| {
        h.entry(k).or_insert(HeaderValue::from_static(v));
    };
    set(h, header::CONTENT_SECURITY_POLICY, CSP);
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(h, header::X_FRAME_OPTIONS, "DENY");
    set(h, header::REFERRER_POLICY, "same-origin");
    set(h, header::CACHE_CONTROL, "no-store");
    res
}

/// Cookie names, with the `__Host-` prefix (bound to this host, `Secure`, path `/`) when
/// the workbench is served over HTTPS.
pub(crate) struct Names {
    pub session: &'static str,
    pub pre: &'static str,
}

pub(crate) fn names(secure: bool) -> Names {
    if secure {
        Names {
            session: "__Host-crm-session",
            pre: "__Host-crm-pre",
        }
    } else {
        Names {
            session: "crm-session",
            pre: "crm-pre",
        }
    }
}

pub(crate) const LANG_COOKIE: &str = "crm-lang";

/// Who is looking at a page, in which language, and the secret of their forms' CSRF
/// tokens (the session's, or before sign-in a pre-session cookie's).
pub(crate) struct Viewer {
    pub caller: Caller,
    pub lang: Lang,
    pub csrf_secret: String,
    /// A pre-session cookie to set with the response (none was sent).
    pub new_pre: Option<String>,
    pub signed_in: bool,
    pub secure: bool,
}

/// The cookies of a request.
pub(crate) fn cookies(headers: &HeaderMap) -> impl Iterator<Item = Cookie<'static>> + '_ {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| Cookie::split_parse(v.to_owned()).filter_map(Result::ok))
}

pub(crate) fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    cookies(headers)
        .find(|c| c.name() == name)
        .map(|c| c.value().to_owned())
}

/// The page's language: the switch's cookie, else the browser's preference.
pub(crate) fn lang_of(headers: &HeaderMap) -> Lang {
    cookie_value(headers, LANG_COOKIE)
        .and_then(|v| Lang::parse(&v))
        .unwrap_or_else(|| {
            let accept = headers
                .get(header::ACCEPT_LANGUAGE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            Lang::from_accept_language(accept)
        })
}

/// What is answered instead of the page asked for: with authentication on and no valid
/// session, a redirect to sign in (and back here afterwards); for a link from another
/// site to a page that shows personal data, the page asking the person to go on.
pub(crate) struct Interposed(Response);

impl IntoResponse for Interposed {
    fn into_response(self) -> Response {
        self.0
    }
}

impl FromRequestParts<AppState> for Viewer {
    type Rejection = Interposed;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let viewer = Viewer::read(&parts.headers, state).await;
        let here = parts.uri.path_and_query().map_or("/ui/", |p| p.as_str());
        match (&state.security.auth, viewer.signed_in) {
            (Some(_), false) => {
                let to = format!("/ui/sign-in?next={}", urlencode(here));
                Err(Interposed(Redirect::to(&to).into_response()))
            }
            _ if reveals(parts.uri.path()) && from_another_site(&parts.headers) => {
                let page = ConfirmPage {
                    chrome: viewer.chrome(state, Nav::None, here),
                    href: here.to_string(),
                };
                Err(Interposed(viewer.render(StatusCode::OK, &page)))
            }
            _ => Ok(viewer),
        }
    }
}

/// Pages that show personal data (and record the read): customers, lists of them,
/// complaints.
fn reveals(path: &str) -> bool {
    ["/ui/customers/", "/ui/pool", "/ui/book", "/ui/complaints"]
        .iter()
        .any(|p| path.starts_with(p))
}

/// A navigation another site started (a link or a redirect from elsewhere), as the
/// browser says (`Sec-Fetch-Site`).
fn from_another_site(headers: &HeaderMap) -> bool {
    headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == "cross-site" || v == "same-site")
}

/// Asked of a person who followed a link from another site to a page that shows personal
/// data: the page is shown (and the read recorded) only once they go on from here, so
/// another site cannot make a person's browser read personal data in their name.
#[derive(Template)]
#[template(path = "confirm.html")]
pub(crate) struct ConfirmPage {
    pub chrome: Chrome,
    pub href: String,
}

impl Viewer {
    /// The viewer a request carries: its verified session, if any.
    pub(crate) async fn read(headers: &HeaderMap, state: &AppState) -> Viewer {
        let web = &state.web;
        let names = names(web.secure_cookies);
        let lang = lang_of(headers);
        let session = cookie_value(headers, names.session)
            .and_then(|v| web.sealer.open::<Session>(names.session, &v));
        let principal = match (&state.security.auth, &session) {
            (Some(verifier), Some(s)) => verifier.verify(&s.token, crm_auth::now_unix()).await.ok(),
            _ => None,
        };
        let (csrf_secret, new_pre) = match (&session, &principal) {
            (Some(s), Some(_)) => (s.csrf.clone(), None),
            _ => match cookie_value(headers, names.pre) {
                Some(pre) if pre.len() >= 32 => (pre, None),
                _ => {
                    let pre = random_secret();
                    (pre.clone(), Some(pre))
                }
            },
        };
        Viewer {
            signed_in: principal.is_some(),
            caller: Caller(principal),
            lang,
            csrf_secret,
            new_pre,
            secure: web.secure_cookies,
        }
    }

    /// The frame of a page for this viewer.
    pub(crate) fn chrome(&self, state: &AppState, nav: Nav, here: &str) -> Chrome {
        let p = self.caller.0.as_ref();
        Chrome {
            lang: self.lang,
            nav,
            who: p.map(|p| p.subject.clone()),
            role: p.map(|p| role_msg(p.role)),
            is_manager: p.is_some_and(|p| p.role == Role::Manager),
            is_auditor: self.caller.role().is_some_and(|r| AUDITORS.contains(&r)),
            auth_on: state.security.auth.is_some(),
            signed_in: self.signed_in,
            csrf: state.web.sealer.csrf_token(&self.csrf_secret),
            here: here.to_string(),
            zone: state.calendar.to_string(),
        }
    }

    /// A rendered page, with the pre-session cookie if one was made.
    pub(crate) fn render(&self, status: StatusCode, page: &impl Template) -> Response {
        let body = match page.render() {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "a workbench template failed");
                return (StatusCode::INTERNAL_SERVER_ERROR, "template error").into_response();
            }
        };
        let mut res = (
            status,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            body,
        )
            .into_response();
        if let Some(pre) = &self.new_pre {
            let names = names(self.secure);
            let c = base_cookie(names.pre, pre.clone(), self.secure).build();
            add_cookie(&mut res, &c);
        }
        res
    }

    pub(crate) fn principal(&self) -> Option<&Principal> {
        self.caller.0.as_ref()
    }
}

/// A cookie as the workbench sets them: path `/`, HttpOnly, SameSite=Lax, Secure when
/// served over HTTPS.
pub(crate) fn base_cookie(
    name: &'static str,
    value: String,
    secure: bool,
) -> cookie::CookieBuilder<'static> {
    Cookie::build((name, value))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(secure)
}

pub(crate) fn add_cookie(res: &mut Response, c: &Cookie<'_>) {
    if let Ok(v) = HeaderValue::from_str(&c.to_string()) {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
}

pub(crate) fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn role_msg(role: Role) -> Msg {
    match role {
        Role::Manager => Msg::RoleManager,
        Role::Analyst => Msg::RoleAnalyst,
        Role::Auditor => Msg::RoleAuditor,
        Role::Admin => Msg::RoleAdmin,
        Role::Service => Msg::RoleService,
    }
}

/// The navigation entry a page belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Nav {
    Ownership,
    Book,
    Pool,
    Funnel,
    Kpis,
    Complaints,
    Audit,
    None,
}

/// The frame every page shares.
pub(crate) struct Chrome {
    pub lang: Lang,
    pub nav: Nav,
    pub who: Option<String>,
    pub role: Option<Msg>,
    pub is_manager: bool,
    /// An auditor or an administrator: the audit pages are theirs (`AUDITORS`).
    pub is_auditor: bool,
    pub auth_on: bool,
    pub signed_in: bool,
    /// The CSRF token of this page's forms.
    pub csrf: String,
    /// This page's path and query (the language switch comes back here).
    pub here: String,
    /// The time zone of the dates shown.
    pub zone: String,
}

impl Chrome {
    pub fn t(&self, m: Msg) -> &'static str {
        self.lang.t(m)
    }

    /// A closed value (stage, tier, type, severity) in the page's language.
    pub fn v<'a>(&self, code: &'a str) -> &'a str {
        self.lang.value(code)
    }

    /// `aria-current` for the navigation entry of this page.
    pub fn current(&self, nav: Nav) -> &'static str {
        if nav == self.nav {
            "page"
        } else {
            "false"
        }
    }
}

/// A refusal as a page: the same status and the same words as the API's.
#[derive(Template)]
#[template(path = "error.html")]
pub(crate) struct ErrorPage {
    pub chrome: Chrome,
    pub title: Msg,
    pub detail: String,
}

impl Viewer {
    /// `problem` shown as a page.
    pub(crate) fn refusal(&self, state: &AppState, problem: Problem) -> Response {
        let title = match problem.status {
            StatusCode::NOT_FOUND => Msg::NotFoundTitle,
            StatusCode::FORBIDDEN => Msg::ForbiddenTitle,
            StatusCode::SERVICE_UNAVAILABLE => Msg::UnavailableTitle,
            _ => Msg::ErrorTitle,
        };
        let page = ErrorPage {
            chrome: self.chrome(state, Nav::None, "/ui/"),
            title,
            detail: problem.detail,
        };
        self.render(problem.status, &page)
    }
}

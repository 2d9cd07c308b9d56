//! The URI guard: a request whose path or query, percent-decoded, holds a character the
//! platform refuses in one-line text (a NUL, a control character, a bidirectional
//! override; `crm_domain::text`) is answered 400 before any route sees it, naming the
//! parameter. Without it `?region=ab%00c` reached PostgreSQL, which refused the NUL, and
//! the caller got 503 as if the database were down.

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use crm_domain::text::{self, TextKind};
use percent_encoding::percent_decode_str;

/// `router` behind the guard; refusals carry the problem code `code`.
pub fn refuse_bad_text<S: Clone + Send + Sync + 'static>(
    router: Router<S>,
    code: &'static str,
) -> Router<S> {
    router.layer(middleware::from_fn_with_state(code, guard))
}

async fn guard(State(code): State<&'static str>, request: Request, next: Next) -> Response {
    match check_uri(request.uri().path(), request.uri().query()) {
        Ok(()) => next.run(request).await,
        Err(detail) => problem(code, detail),
    }
}

/// The first offence in a path and query string, as a sentence naming where it is.
pub fn check_uri(path: &str, query: Option<&str>) -> Result<(), String> {
    let decoded = |s: &str| percent_decode_str(s).decode_utf8_lossy().into_owned();
    for segment in path.split('/') {
        text::check(&decoded(segment), TextKind::Line).map_err(|e| format!("the path {e}"))?;
    }
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = decoded(&key.replace('+', " "));
        let value = decoded(&value.replace('+', " "));
        let shown = text::escaped(&key).into_owned();
        text::check(&key, TextKind::Line)
            .map_err(|e| format!("the name of query parameter {shown:?} {e}"))?;
        text::check(&value, TextKind::Line).map_err(|e| format!("query parameter {shown} {e}"))?;
    }
    Ok(())
}

fn problem(code: &'static str, detail: String) -> Response {
    let body = serde_json::json!({
        "type": format!("urn:crm:problem:{code}"),
        "title": "Bad Request",
        "status": 400,
        "code": code,
        "detail": detail,
    });
    (
        StatusCode::BAD_REQUEST,
        [(header::CONTENT_TYPE, "application/problem+json")],
        body.to_string(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::check_uri;

    #[test]
    fn control_characters_anywhere_in_the_uri_are_named() {
        assert_eq!(
            check_uri("/v1/customers", Some("region=east&limit=10")),
            Ok(())
        );
        assert_eq!(
            check_uri("/v1/customers/上海", Some("team=east%201")),
            Ok(())
        );
        let e = check_uri("/v1/customers", Some("region=ab%00c")).unwrap_err();
        assert!(e.contains("region") && e.contains("NUL"), "{e}");
        let e = check_uri("/v1/customers/ab%00c", None).unwrap_err();
        assert!(e.contains("path"), "{e}");
        let e = check_uri("/v1/pool", Some("after=%1B%5B2J")).unwrap_err();
        assert!(e.contains("after") && e.contains("U+001B"), "{e}");
        let e = check_uri("/v1/pool", Some("x%0Ay=1")).unwrap_err();
        assert!(!e.chars().any(char::is_control), "{e}");
        assert!(check_uri("/v1/pool", Some("team=%E2%80%AEevil")).is_err());
    }
}

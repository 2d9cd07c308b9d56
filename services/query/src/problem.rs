//! Every refusal of the query service: RFC 9457 problem+json with a stable code.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use crm_projections::ReadError;
use serde::Serialize;
use utoipa::ToSchema;

/// A refused query.
#[derive(Debug, Clone)]
pub struct Problem {
    pub(crate) status: StatusCode,
    pub(crate) code: &'static str,
    pub(crate) detail: String,
}

impl Problem {
    pub(crate) fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            code,
            detail: detail.into(),
        }
    }

    pub(crate) fn bad(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "query.bad_parameter", detail)
    }

    pub(crate) fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "auth.forbidden", detail)
    }

    pub(crate) fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "query.not_found", detail)
    }

    /// A dependency failed: the cause is logged, the caller learns only to retry.
    fn unavailable(what: &str, cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "{what} failed");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "query.unavailable",
            format!("{what} cannot be done right now; retry"),
        )
    }

    pub(crate) fn privacy(e: impl std::fmt::Display) -> Self {
        Self::unavailable("reading personal data", e)
    }

    /// The event store could not be read (timeline payloads, audit replay).
    pub(crate) fn store(e: impl std::fmt::Display) -> Self {
        Self::unavailable("reading the event store", e)
    }
}

impl From<ReadError> for Problem {
    fn from(e: ReadError) -> Self {
        Self::unavailable("reading the read models", e)
    }
}

/// A refusal as answered: RFC 9457 problem details, with a stable code.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Problem)]
pub(crate) struct ProblemBody {
    /// `urn:crm:problem:` and the code.
    #[serde(rename = "type")]
    #[schema(format = "uri")]
    kind: String,
    /// The HTTP status's reason phrase.
    title: &'static str,
    /// The HTTP status.
    status: u16,
    /// What was wrong, for a person.
    detail: String,
    /// What was wrong, for a program: `query.bad_parameter`, `query.not_found`,
    /// `query.method_not_allowed`, `query.unavailable`, `auth.unauthenticated` or
    /// `auth.forbidden`.
    code: &'static str,
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = ProblemBody {
            kind: format!("urn:crm:problem:{}", self.code),
            title: self.status.canonical_reason().unwrap_or("error"),
            status: self.status.as_u16(),
            detail: self.detail,
            code: self.code,
        };
        let mut response = (
            self.status,
            [(header::CONTENT_TYPE, "application/problem+json")],
            serde_json::to_string(&body).expect("a problem serializes"),
        )
            .into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

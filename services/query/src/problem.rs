//! Every refusal of the query service: RFC 9457 problem+json with a stable code.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use crm_projections::ReadError;

/// A refused query.
#[derive(Debug)]
pub struct Problem {
    pub(crate) status: StatusCode,
    pub(crate) code: &'static str,
    pub(crate) detail: String,
}

impl Problem {
    pub(crate) fn bad(detail: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            code: "query.bad_parameter",
            detail: detail.into(),
        }
    }

    pub(crate) fn forbidden(detail: impl Into<String>) -> Self {
        Self {
            status: StatusCode::FORBIDDEN,
            code: "auth.forbidden",
            detail: detail.into(),
        }
    }

    pub(crate) fn privacy(e: impl std::fmt::Display) -> Self {
        tracing::error!(error = %e, "personal data could not be decrypted");
        Self {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "query.unavailable",
            detail: "personal data cannot be read right now; retry".into(),
        }
    }

    /// The event store could not be read (timeline payloads).
    pub(crate) fn store(e: impl std::fmt::Display) -> Self {
        tracing::error!(error = %e, "event store read failed");
        Self {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "query.unavailable",
            detail: "the event store cannot be read right now; retry".into(),
        }
    }

    pub(crate) fn not_found(detail: impl Into<String>) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            code: "query.not_found",
            detail: detail.into(),
        }
    }
}

impl From<ReadError> for Problem {
    fn from(e: ReadError) -> Self {
        tracing::error!(error = %e, "read-model query failed");
        Self {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "query.unavailable",
            detail: "the read models cannot be read right now; retry".into(),
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "type": format!("urn:crm:problem:{}", self.code),
            "title": self.status.canonical_reason().unwrap_or("error"),
            "status": self.status.as_u16(),
            "detail": self.detail,
            "code": self.code,
        });
        (
            self.status,
            [(header::CONTENT_TYPE, "application/problem+json")],
            body.to_string(),
        )
            .into_response()
    }
}

//! The one place where every failure becomes a reply: RFC 9457 problem details over
//! HTTP, a `CommandReply` with error headers over NATS. Details never leak internals.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use crm_command_handler::CommandError;
use crm_contracts::v1;
use crm_contracts::wire::WireError;
use crm_domain::ErrorKind;
use uuid::Uuid;

/// A refused request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub status: u16,
    pub code: String,
    pub detail: String,
    pub command_id: Option<Uuid>,
    /// The field a validation refusal names (for logs, which never carry the detail: it
    /// may quote the value).
    pub field: Option<String>,
}

impl Problem {
    pub fn new(status: u16, code: &str, detail: impl Into<String>) -> Self {
        Self {
            status,
            code: code.to_string(),
            detail: detail.into(),
            command_id: None,
            field: None,
        }
    }

    pub fn with_command(mut self, id: Uuid) -> Self {
        self.command_id = Some(id);
        self
    }

    pub fn malformed(detail: impl Into<String>) -> Self {
        Self::new(400, "request.malformed", detail)
    }

    /// A field's value breaks its format, range or the text rules: the detail names it
    /// (`field <path>: <reason>`), and so does `field`.
    pub fn invalid(field: &str, reason: impl std::fmt::Display) -> Self {
        let mut p = Self::new(
            422,
            "validation.invalid_field",
            format!("field {field}: {reason}"),
        );
        p.field = Some(field.to_string());
        p
    }

    pub fn too_large(limit: usize) -> Self {
        Self::new(
            413,
            "request.too_large",
            format!("the payload exceeds {limit} bytes"),
        )
    }

    pub fn unsupported_media_type(ct: &str) -> Self {
        Self::new(
            415,
            "request.unsupported_media_type",
            format!("content type {ct:?} is not application/json or application/x-protobuf"),
        )
    }

    pub fn from_wire(e: &WireError) -> Self {
        match e {
            WireError::UnknownCommand(_) => {
                Self::new(404, "request.unknown_command", e.to_string())
            }
            WireError::Malformed(_) => Self::malformed(e.to_string()),
            WireError::Invalid { field, reason } => Self::invalid(field, reason),
        }
    }

    pub fn from_command(e: &CommandError) -> Self {
        match e {
            CommandError::Refused(d) => {
                let status = match d.kind() {
                    ErrorKind::NotFound => 404,
                    ErrorKind::Conflict => 409,
                    ErrorKind::Validation | ErrorKind::RuleViolation => 422,
                };
                Self::new(status, d.code(), d.to_string())
            }
            CommandError::CommandIdReused(_) | CommandError::Contended(_) => {
                Self::new(409, e.code(), e.to_string())
            }
            CommandError::Unstorable(_) => Self::new(422, e.code(), e.to_string()),
            // The cause is logged by the handler; the caller learns only that a retry
            // with the same command id is safe.
            CommandError::Unavailable(_) => Self::new(
                503,
                e.code(),
                "the event store is unavailable; retry with the same command id",
            ),
        }
    }

    /// Short human title derived from the stable code (`ownership.holding_limit_reached`
    /// → "Holding limit reached").
    pub fn title(&self) -> String {
        let tail = self
            .code
            .rsplit('.')
            .next()
            .unwrap_or(&self.code)
            .replace('_', " ");
        let mut chars = tail.chars();
        match chars.next() {
            Some(first) => first.to_uppercase().collect::<String>() + chars.as_str(),
            None => String::new(),
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        let mut v = serde_json::json!({
            "type": format!("urn:crm:problem:{}", self.code),
            "title": self.title(),
            "status": self.status,
            "code": self.code,
            "detail": self.detail,
        });
        if let Some(id) = self.command_id {
            v["command_id"] = serde_json::Value::String(id.to_string());
        }
        v
    }

    pub fn to_proto(&self) -> v1::Problem {
        v1::Problem {
            code: self.code.clone(),
            title: self.title(),
            detail: self.detail.clone(),
            status: u32::from(self.status),
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self.to_json()).expect("problem serialises");
        let mut response = (
            status,
            [(axum::http::header::CONTENT_TYPE, "application/problem+json")],
            body,
        )
            .into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

//! HTTP ingress (axum): `POST /v1/commands/{name}` with the JSON (or protobuf) form of a
//! command; `GET /v1/commands`, `/openapi.json`, `/metrics`; readiness (`/readyz`, and
//! `/healthz` as before) and liveness (`/livez`).

use axum::body::{to_bytes, Body};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use crm_bus::Subjects;
use crm_contracts::wire::{Format, COMMAND_NAMES};

use crate::caller::authenticate;
use crate::execute::{execute, reply, Arrival, Handler, MAX_PAYLOAD};
use crate::problem::Problem;

#[derive(Clone)]
pub struct HttpState {
    pub handler: Handler,
    pub subjects: Subjects,
    pub auth: Option<crm_auth::Verifier>,
}

pub fn router(state: HttpState, probes: &crm_http::Probes) -> Router {
    let routes = Router::new()
        .route("/v1/commands", get(list_commands))
        .route("/v1/commands/{name}", post(post_command))
        .route("/openapi.json", get(openapi))
        .route(
            "/metrics",
            get(|| async { crm_telemetry::render_metrics() }),
        )
        .merge(probes.routes_with_healthz())
        .fallback(|| async {
            Problem::new(404, "request.not_found", "no such route; see /openapi.json")
        })
        .method_not_allowed_fallback(|| async {
            Problem::new(
                405,
                "request.method_not_allowed",
                "this route does not take that method; see /openapi.json",
            )
        })
        .with_state(state);
    let routes = crm_http::guard::refuse_bad_text(routes, "request.malformed");
    crm_http::requests::instrument(routes, "command-service")
}

async fn post_command(
    State(s): State<HttpState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    // Who asks comes first: an unauthenticated caller learns nothing about the body.
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let arrival = Arrival::now("http");
    let principal = match authenticate(
        s.auth.as_ref(),
        authorization,
        &name,
        arrival.at.timestamp(),
    )
    .await
    {
        Ok(p) => p,
        Err(problem) => return problem.into_response(),
    };
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let format = match ct {
        None => Format::Json,
        Some(ct) => match Format::from_content_type(Some(ct)) {
            Some(f) => f,
            None => return Problem::unsupported_media_type(ct).into_response(),
        },
    };
    let bytes = match to_bytes(body, MAX_PAYLOAD).await {
        Ok(b) => b,
        Err(_) => return Problem::too_large(MAX_PAYLOAD).into_response(),
    };
    let key = headers.get("idempotency-key").and_then(|v| v.to_str().ok());
    match execute(
        &s.handler,
        arrival,
        &name,
        &bytes,
        format,
        key,
        principal.as_ref(),
    )
    .await
    {
        Ok(accepted) => (StatusCode::OK, Json(reply(&accepted))).into_response(),
        Err(problem) => problem.into_response(),
    }
}

async fn list_commands(State(s): State<HttpState>) -> Json<serde_json::Value> {
    let commands: Vec<_> = COMMAND_NAMES
        .iter()
        .map(|n| serde_json::json!({"name": n, "http": format!("/v1/commands/{n}"), "nats": s.subjects.command(n)}))
        .collect();
    Json(serde_json::json!({"service": s.subjects.service_name(), "commands": commands}))
}

async fn openapi() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        crm_contracts::openapi::document(),
    )
}

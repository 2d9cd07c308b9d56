//! Request metrics for an HTTP service: every request counted by route, method and status,
//! and timed by route and method (`crm_http_requests_total`,
//! `crm_http_request_duration_seconds`). The route is the matched pattern
//! (`/v1/customers/{id}`), never the path itself: labels carry no customer ids, and no
//! value a caller chooses (an unknown path is `unmatched`, an unknown method `other`).

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::Router;
use crm_telemetry::names;

/// `router` with every request recorded under `service`.
pub fn instrument<S: Clone + Send + Sync + 'static>(
    router: Router<S>,
    service: &'static str,
) -> Router<S> {
    router.layer(middleware::from_fn_with_state(service, record))
}

/// The method as a label: the standard ones by name, any other (hyper accepts any token:
/// `FOO1 /v1/customers`) as `other`, so a caller cannot mint label values.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

async fn record(State(service): State<&'static str>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = method_label(request.method());
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |m| m.as_str().to_string());
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!(names::HTTP_REQUESTS_TOTAL, "service" => service, "route" => route.clone(),
        "method" => method, "status" => status)
    .increment(1);
    metrics::histogram!(names::HTTP_REQUEST_DURATION_SECONDS, "service" => service,
        "route" => route, "method" => method)
    .record(started.elapsed().as_secs_f64());
    response
}

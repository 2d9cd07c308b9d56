//! The query API's OpenAPI 3.1 document (served at `/openapi.json`, committed as
//! `docs/contract/query.openapi.json`), generated from the code that answers: each
//! handler's `#[utoipa::path]`, the parameter type it parses and the row type it answers
//! (ADR 0010). The routes are registered here, through the same router that documents
//! them, so a route cannot be served undocumented or documented unserved.

use std::collections::BTreeMap;

use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{Content, HeaderBuilder, Ref, RefOr};
use utoipa::{IntoResponses, Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::problem::ProblemBody;
use crate::{audit, complaints, routes, AppState};

/// The refusals every route may answer, as problem+json.
pub(crate) struct Refusals;

impl IntoResponses for Refusals {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        let problem = |description: &str| {
            ResponseBuilder::new().description(description).content(
                "application/problem+json",
                Content::new(Some(Ref::from_schema_name("Problem"))),
            )
        };
        let challenge = HeaderBuilder::new()
            .schema(Some(<String as utoipa::PartialSchema>::schema()))
            .description(Some("`Bearer`"))
            .build();
        [
            (
                "400",
                problem(
                    "`query.bad_parameter`: a parameter or the path is malformed, unknown, \
                     out of range or holds a control character",
                ),
            ),
            (
                "401",
                problem("`auth.unauthenticated`: no valid bearer token")
                    .header("WWW-Authenticate", challenge),
            ),
            (
                "403",
                problem("`auth.forbidden`: the caller's role may not read this"),
            ),
            (
                "404",
                problem(
                    "`query.not_found`: nothing by that id that the caller may see (another \
                     manager's customer is answered as one that does not exist)",
                ),
            ),
            (
                "503",
                problem(
                    "`query.unavailable`: the read models or the event store cannot be read \
                     now; retry",
                ),
            ),
        ]
        .into_iter()
        .map(|(status, r)| (status.to_string(), RefOr::T(r.build())))
        .collect()
    }
}

/// Bearer tokens: the identity provider's access tokens (docs/operations.md), or
/// none when the service runs with `CRM_AUTH=off`.
struct Bearer;

impl Modify for Bearer {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
        doc.security = Some(vec![SecurityRequirement::new(
            "bearer",
            Vec::<String>::new(),
        )]);
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "crm-query",
        description = "The read models over HTTP, as JSON or CSV, for managers, analysts and \
            auditors: ownership (current, history, as of an instant, the pool), the \
            lifecycle funnel, manager KPIs, complaints, audit replay. Instants are RFC 3339; \
            money is in minor units; durations in seconds. See docs/api.md."
    ),
    components(schemas(ProblemBody)),
    modifiers(&Bearer),
    tags(
        (name = "customers", description = "customers now and their timelines"),
        (name = "ownership", description = "owners, portfolios and the public pool"),
        (name = "complaints", description = "complaints and their SLA states"),
        (name = "funnel", description = "the lifecycle funnel"),
        (name = "kpis", description = "manager KPIs per local period"),
        (name = "audit", description = "ownership replayed from the event store"),
        (name = "operations", description = "the projectors' progress"),
    )
)]
struct Base;

/// The documented routes.
pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(Base::openapi())
        .routes(routes!(routes::customers))
        .routes(routes!(routes::customer))
        .routes(routes!(routes::ownership))
        .routes(routes!(routes::timeline))
        .routes(routes!(routes::managers))
        .routes(routes!(routes::portfolio))
        .routes(routes!(routes::pool))
        .routes(routes!(routes::portfolios))
        .routes(routes!(complaints::list))
        .routes(routes!(complaints::one))
        .routes(routes!(complaints::open_counts))
        .routes(routes!(routes::funnel_stages))
        .routes(routes!(routes::funnel_transitions))
        .routes(routes!(routes::funnel_conversion))
        .routes(routes!(routes::funnel_time_in_stage))
        .routes(routes!(routes::kpis))
        .routes(routes!(routes::checkpoints))
        .routes(routes!(audit::audit_ownership))
        .routes(routes!(audit::audit_manager))
}

/// The OpenAPI document of this service.
pub fn document() -> utoipa::openapi::OpenApi {
    router().into_openapi()
}

/// The OpenAPI document as served and committed.
pub fn document_json() -> String {
    json(&document())
}

/// `doc` as served and committed.
pub(crate) fn json(doc: &utoipa::openapi::OpenApi) -> String {
    doc.to_pretty_json()
        .expect("the OpenAPI document serializes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_committed_document_is_the_generated_one() {
        let committed = include_str!("../../../docs/contract/query.openapi.json");
        assert_eq!(
            committed.trim_end(),
            document_json(),
            "docs/contract/query.openapi.json is stale: \
             cargo run -q -p crm -- contract query-openapi > docs/contract/query.openapi.json"
        );
    }

    #[test]
    fn every_reference_resolves_and_every_route_refuses_as_documented() {
        let text = document_json();
        let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        for name in text
            .split("\"#/components/schemas/")
            .skip(1)
            .map(|rest| &rest[..rest.find('"').unwrap()])
        {
            assert!(
                schemas.contains_key(name),
                "{name} is referenced, not defined"
            );
        }
        for (path, item) in doc["paths"].as_object().unwrap() {
            let responses = item["get"]["responses"].as_object().unwrap();
            for status in ["200", "400", "401", "403", "404", "503"] {
                assert!(responses.contains_key(status), "{path}: {status}");
            }
        }
    }
}

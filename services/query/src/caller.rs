//! Who is calling: the bearer token verified into a `Principal`, and the role checks
//! every route makes.

use axum::http::{header, StatusCode};
use crm_auth::{Principal, Role};
use crm_projections::queries::CustomerRow;

use crate::problem::Problem;
use crate::AppState;

/// The caller, verified; `None` inside when authentication is off.
pub struct Caller(pub(crate) Option<Principal>);

impl axum::extract::FromRequestParts<AppState> for Caller {
    type Rejection = Problem;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Some(verifier) = &state.security.auth else {
            return Ok(Caller(None));
        };
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        verifier
            .verify_header(header, crm_auth::now_unix())
            .await
            .map(|p| Caller(Some(p)))
            .map_err(|e| {
                Problem::new(
                    StatusCode::UNAUTHORIZED,
                    "auth.unauthenticated",
                    e.to_string(),
                )
            })
    }
}

impl Caller {
    /// Refuse unless the caller has one of `roles` (anyone, with authentication off).
    pub(crate) fn allow(&self, roles: &[Role]) -> Result<(), Problem> {
        match &self.0 {
            Some(p) if !roles.contains(&p.role) => Err(Problem::forbidden(format!(
                "the {} role may not read this",
                p.role.as_str()
            ))),
            _ => Ok(()),
        }
    }

    pub(crate) fn role(&self) -> Option<Role> {
        self.0.as_ref().map(|p| p.role)
    }

    /// Analysts see aggregates and masked identities.
    pub(crate) fn masked(&self) -> bool {
        self.role() == Some(Role::Analyst)
    }

    /// A manager sees only their own customers (a team lead: the team's). Another's is
    /// answered as a customer that does not exist, so ids cannot be probed.
    pub(crate) fn may_see(&self, row: &CustomerRow) -> Result<(), Problem> {
        match &self.0 {
            Some(p) if !p.sees_customer(row.owner_id.as_deref(), row.owner_team.as_deref()) => {
                Err(no_such_customer(&row.customer_id))
            }
            _ => Ok(()),
        }
    }
}

/// What a manager's lists are limited to, whatever they asked.
pub(crate) enum BookScope {
    /// A team lead: the team's customers.
    Team(String),
    /// A manager: their own.
    Owner(Option<String>),
}

impl Caller {
    /// A manager's scope (a team lead's: the team); `None` for every other role, scoped
    /// by route rather than by customer.
    pub(crate) fn book_scope(&self) -> Option<BookScope> {
        match &self.0 {
            Some(Principal {
                role: Role::Manager,
                manager_id,
                team,
                ..
            }) => Some(match team {
                Some(team) => BookScope::Team(team.clone()),
                None => BookScope::Owner(manager_id.clone()),
            }),
            _ => None,
        }
    }
}

/// The answer for a customer that does not exist, or that the caller may not see.
pub(crate) fn no_such_customer(id: &str) -> Problem {
    Problem::not_found(format!(
        "no customer {} that you may see",
        crm_domain::text::escaped(id)
    ))
}

/// Routes with customer-level data: who may call them (managers within their scope).
pub(crate) const CUSTOMER_READERS: &[Role] =
    &[Role::Manager, Role::Analyst, Role::Auditor, Role::Admin];
/// Aggregates carry no personal data.
pub(crate) const AGGREGATE_READERS: &[Role] =
    &[Role::Manager, Role::Analyst, Role::Auditor, Role::Admin];
pub(crate) const AUDITORS: &[Role] = &[Role::Auditor, Role::Admin];

//! Who sends a command, the same on both ingresses: the bearer token (HTTP's
//! `Authorization` header, or the NATS message's header of the same name) verified into
//! a `Principal`, whose scope says which commands it may send, and the actor recorded on
//! the events, bound to that principal whatever the payload claims.

use crm_auth::{Principal, Role, Verifier};
use crm_domain::{Actor, ActorKind};

use crate::problem::Problem;

/// The verified caller of `command`: `Ok(None)` when authentication is off (development),
/// 401 without a valid token, 403 when the token's scope does not cover the command.
pub async fn authenticate(
    verifier: Option<&Verifier>,
    authorization: Option<&str>,
    command: &str,
    at_unix: i64,
) -> Result<Option<Principal>, Problem> {
    let Some(verifier) = verifier else {
        return Ok(None);
    };
    let principal = verifier
        .verify_header(authorization, at_unix)
        .await
        .map_err(|e| Problem::new(401, "auth.unauthenticated", e.to_string()))?;
    if !principal.may_command(command) {
        return Err(Problem::new(
            403,
            "auth.forbidden",
            format!(
                "{} ({}) may not send {command}",
                principal.actor(),
                principal.role.as_str()
            ),
        ));
    }
    Ok(Some(principal))
}

/// The actor recorded for a command whose `meta.actor` says `claimed`:
/// - `system:*` actors are the platform's own processes (the scheduler, the policy's
///   automatic assignment): no caller may claim one;
/// - a payload never names the service a person acted through;
/// - with a verified caller, the actor is the caller (`person:<sub>` or
///   `service:<sub>`); a service whose token allows it (`acts_for_persons`) may name the
///   person it acts for, recorded as `person:<id> via service:<sub>`;
/// - with authentication off, every caller is trusted and the claim stands.
pub fn recorded_actor(claimed: Actor, principal: Option<&Principal>) -> Result<Actor, Problem> {
    if claimed.kind == ActorKind::System {
        return Err(Problem::new(
            403,
            "auth.forbidden",
            format!("{claimed} is one of the platform's own processes; no caller may act as one"),
        ));
    }
    if claimed.via.is_some() {
        return Err(Problem::invalid(
            "meta.actor",
            "names the service a person acted through; the platform records it from the caller's token",
        ));
    }
    let Some(p) = principal else {
        return Ok(claimed);
    };
    let own: Actor = p
        .actor()
        .parse()
        .map_err(|e| Problem::new(401, "auth.unauthenticated", format!("token subject: {e}")))?;
    match (p.role, claimed.kind) {
        (Role::Service, ActorKind::Person) if p.acts_for_persons => {
            Ok(claimed.via(p.subject.clone()))
        }
        (Role::Service, ActorKind::Person) => Err(Problem::new(
            403,
            "auth.forbidden",
            format!(
                "{own} may not act for people (its token has no acts_for_persons); send meta.actor = {own}"
            ),
        )),
        _ => Ok(own),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(role: Role, sub: &str, acts_for_persons: bool) -> Principal {
        Principal {
            subject: sub.into(),
            role,
            manager_id: None,
            team: None,
            commands: vec!["*".into()],
            acts_for_persons,
        }
    }

    fn actor(s: &str) -> Actor {
        s.parse().unwrap()
    }

    #[test]
    fn the_recorded_actor_is_the_verified_caller() {
        let svc = principal(Role::Service, "branch-app", false);
        let admin = principal(Role::Admin, "ops", false);
        // Whatever the payload claims, a caller is recorded as itself.
        for claimed in ["service:someone-else", "person:ops"] {
            assert_eq!(
                recorded_actor(actor(claimed), Some(&admin)).unwrap(),
                actor("person:ops")
            );
        }
        assert_eq!(
            recorded_actor(actor("service:someone-else"), Some(&svc)).unwrap(),
            actor("service:branch-app")
        );
        // Acting for a person takes the token's permission, and records both.
        let e = recorded_actor(actor("person:li.wei"), Some(&svc)).unwrap_err();
        assert_eq!((e.status, e.code.as_str()), (403, "auth.forbidden"));
        let delegate = principal(Role::Service, "call-centre", true);
        assert_eq!(
            recorded_actor(actor("person:li.wei"), Some(&delegate))
                .unwrap()
                .to_string(),
            "person:li.wei via service:call-centre"
        );
    }

    #[test]
    fn nobody_speaks_as_the_platform_or_names_a_via() {
        let delegate = principal(Role::Service, "call-centre", true);
        for p in [None, Some(&delegate)] {
            let e = recorded_actor(actor("system:scheduler"), p).unwrap_err();
            assert_eq!(e.status, 403);
            let e = recorded_actor(actor("person:a via service:b"), p).unwrap_err();
            assert_eq!(e.status, 422);
        }
        // With authentication off the claim stands (development).
        assert_eq!(
            recorded_actor(actor("person:li.wei"), None).unwrap(),
            actor("person:li.wei")
        );
    }
}

//! Where a token's claims say who the caller is. A bank's identity provider names roles
//! and scopes its own way (Keycloak: `realm_access.roles` or
//! `resource_access.<client>.roles`; Entra ID: `roles`; ADFS: a `role` claim; Auth0: a
//! namespaced URL), so each claim the platform reads is found by a JSON Pointer
//! (RFC 6901: `/realm_access/roles`; `~1` stands for `/` in a name), and the provider's
//! role names are mapped to the platform's. `docs/operations.md` shows the mapping for
//! common providers.

use serde_json::Value;

use crate::{AuthError, Role};

/// Where each claim is read, and how role names map.
#[derive(Debug, Clone)]
pub struct ClaimMap {
    /// The role: a string or an array of strings.
    pub role: String,
    /// The provider's role names → the platform's roles. A name not listed is ignored,
    /// so a token may carry the provider's other roles; exactly one platform role must
    /// remain (two are refused as ambiguous).
    pub roles: Vec<(String, Role)>,
    pub manager_id: String,
    pub team: String,
    /// The commands a service may send: an array of strings.
    pub commands: String,
    /// Commands also granted as OAuth scopes with this prefix (`scope`, space-separated,
    /// or `scp`): `crm:record_contact` grants `record_contact`. `None`: scopes grant none.
    pub command_scope_prefix: Option<String>,
    pub acts_for_persons: String,
}

impl Default for ClaimMap {
    /// The platform's own names (what `crm token` issues).
    fn default() -> Self {
        Self {
            role: "/role".into(),
            roles: [
                Role::Manager,
                Role::Analyst,
                Role::Auditor,
                Role::Service,
                Role::Admin,
            ]
            .into_iter()
            .map(|r| (r.as_str().to_string(), r))
            .collect(),
            manager_id: "/manager_id".into(),
            team: "/team".into(),
            commands: "/commands".into(),
            command_scope_prefix: None,
            acts_for_persons: "/acts_for_persons".into(),
        }
    }
}

impl ClaimMap {
    /// Check the pointers are pointers and the role names map to roles, at start-up.
    pub fn validate(&self) -> Result<(), String> {
        for (what, p) in [
            ("role", &self.role),
            ("manager_id", &self.manager_id),
            ("team", &self.team),
            ("commands", &self.commands),
            ("acts_for_persons", &self.acts_for_persons),
        ] {
            if !p.starts_with('/') {
                return Err(format!(
                    "the {what} claim's JSON Pointer must start with '/' (got {p:?})"
                ));
            }
        }
        if self.roles.is_empty() {
            return Err("no provider role is mapped to a platform role".into());
        }
        Ok(())
    }

    /// The platform role the claims name.
    pub(crate) fn role(&self, claims: &Value) -> Result<Role, AuthError> {
        let names: Vec<&str> = match claims.pointer(&self.role) {
            Some(Value::String(s)) => vec![s.as_str()],
            Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        let mut found: Vec<Role> = names
            .iter()
            .filter_map(|n| self.roles.iter().find(|(name, _)| name == n).map(|r| r.1))
            .collect();
        found.sort_by_key(|r| r.as_str());
        found.dedup();
        match found.as_slice() {
            [one] => Ok(*one),
            [] => Err(AuthError::Claims(format!(
                "role is required: the claim at {} names no platform role",
                self.role
            ))),
            _ => Err(AuthError::Claims(format!(
                "the claim at {} names more than one platform role",
                self.role
            ))),
        }
    }

    pub(crate) fn text(&self, claims: &Value, pointer: &str) -> Option<String> {
        claims
            .pointer(pointer)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    }

    /// The commands granted by the commands claim and, with a prefix, by the scopes.
    pub(crate) fn commands(&self, claims: &Value) -> Vec<String> {
        let mut out: Vec<String> = match claims.pointer(&self.commands) {
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect(),
            _ => Vec::new(),
        };
        if let Some(prefix) = &self.command_scope_prefix {
            let scopes = [claims.get("scope"), claims.get("scp")];
            let names = scopes.into_iter().flatten().flat_map(|v| match v {
                Value::String(s) => s.split_whitespace().collect::<Vec<_>>(),
                Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
                _ => Vec::new(),
            });
            out.extend(names.filter_map(|s| s.strip_prefix(prefix.as_str()).map(str::to_string)));
        }
        out
    }

    pub(crate) fn flag(&self, claims: &Value, pointer: &str) -> bool {
        claims.pointer(pointer).and_then(Value::as_bool) == Some(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn keycloak() -> ClaimMap {
        ClaimMap {
            role: "/resource_access/crm/roles".into(),
            roles: vec![
                ("crm-manager".into(), Role::Manager),
                ("crm-analyst".into(), Role::Analyst),
            ],
            manager_id: "/crm_manager_id".into(),
            command_scope_prefix: Some("crm:".into()),
            ..ClaimMap::default()
        }
    }

    #[test]
    fn roles_are_read_where_the_provider_puts_them() {
        let claims = json!({"resource_access": {"crm": {"roles": ["offline_access", "crm-analyst"]},
                                                "other": {"roles": ["crm-manager"]}}});
        assert_eq!(keycloak().role(&claims), Ok(Role::Analyst));
        let both = json!({"resource_access": {"crm": {"roles": ["crm-analyst", "crm-manager"]}}});
        assert!(
            matches!(keycloak().role(&both), Err(AuthError::Claims(e)) if e.contains("more than one"))
        );
        let none = json!({"resource_access": {"crm": {"roles": ["admin"]}}});
        assert!(
            matches!(keycloak().role(&none), Err(AuthError::Claims(_))),
            "unmapped names grant nothing"
        );
        assert_eq!(
            ClaimMap::default().role(&json!({"role": "auditor"})),
            Ok(Role::Auditor)
        );
        let namespaced = ClaimMap {
            role: "/https:~1~1crm.bank.example~1roles".into(),
            ..ClaimMap::default()
        };
        assert_eq!(
            namespaced.role(&json!({"https://crm.bank.example/roles": ["service"]})),
            Ok(Role::Service)
        );
    }

    #[test]
    fn commands_come_from_their_claim_and_prefixed_scopes() {
        let claims = json!({"commands": ["log_complaint"], "scope": "openid crm:record_contact profile",
                            "scp": ["crm:assign_owner", "email"]});
        assert_eq!(
            keycloak().commands(&claims),
            ["log_complaint", "record_contact", "assign_owner"]
        );
        assert_eq!(
            ClaimMap::default().commands(&claims),
            ["log_complaint"],
            "no prefix: scopes grant nothing"
        );
    }

    #[test]
    fn a_pointer_that_is_not_one_is_refused_at_start() {
        let m = ClaimMap {
            role: "realm_access.roles".into(),
            ..ClaimMap::default()
        };
        assert!(m.validate().unwrap_err().contains("JSON Pointer"));
        assert!(keycloak().validate().is_ok());
    }
}

//! The authentication settings a service's `main` reads (flattened into its command
//! line, each with its environment variable, so `--help` lists them), and the verifier
//! they make. Secrets are never shown in `--help` or in errors.

use std::time::Duration;

use crate::claims::ClaimMap;
use crate::keys::{JwksConfig, JwksSource};
use crate::{Role, Verifier, VerifyKey};

#[derive(Clone, clap::Args)]
pub struct AuthArgs {
    /// `off` runs without authentication (tests, the embedded demo; never in production).
    #[arg(long = "auth", env = "CRM_AUTH", default_value = "on")]
    pub mode: String,
    /// The tokens' issuer (`iss`).
    #[arg(long, env = "CRM_AUTH_ISSUER")]
    pub auth_issuer: Option<String>,
    /// The audience (`aud`) tokens must name (default: the service's own name).
    #[arg(long, env = "CRM_AUTH_AUDIENCE")]
    pub auth_audience: Option<String>,
    /// The identity provider's JWKS URL (RS256, PS256, ES256, ES384 and EdDSA keys by `kid`).
    #[arg(long, env = "CRM_AUTH_JWKS_URL", hide_env_values = true)]
    pub auth_jwks_url: Option<String>,
    /// Find the JWKS through this issuer's OpenID discovery document instead.
    #[arg(long, env = "CRM_AUTH_OIDC_DISCOVERY", hide_env_values = true)]
    pub auth_oidc_discovery: Option<String>,
    /// Seconds between fetches of the provider's keys.
    #[arg(long, env = "CRM_AUTH_JWKS_REFRESH", default_value_t = 300)]
    pub auth_jwks_refresh: u64,
    /// At most one fetch per this many seconds for a key id the service does not hold.
    #[arg(long, env = "CRM_AUTH_JWKS_COOLDOWN", default_value_t = 10)]
    pub auth_jwks_cooldown: u64,
    /// Development and `crm token`: a shared HS256 secret (at least 32 bytes).
    #[arg(long, env = "CRM_AUTH_HS256_SECRET", hide_env_values = true)]
    pub auth_hs256_secret: Option<String>,
    /// An Ed25519 public key (hex) tokens are signed for.
    #[arg(long, env = "CRM_AUTH_ED25519_PUBLIC_KEY")]
    pub auth_ed25519_public_key: Option<String>,
    /// JSON Pointer of the role claim (string or array): `/realm_access/roles` (Keycloak), `/roles` (Entra ID).
    #[arg(long, env = "CRM_AUTH_ROLE_CLAIM", default_value = "/role")]
    pub auth_role_claim: String,
    /// The provider's role names → the platform's: `crm-manager=manager,crm-analyst=analyst`
    /// (default: the platform's own names).
    #[arg(long, env = "CRM_AUTH_ROLE_MAP")]
    pub auth_role_map: Option<String>,
    /// JSON Pointer of a manager's id.
    #[arg(long, env = "CRM_AUTH_MANAGER_ID_CLAIM", default_value = "/manager_id")]
    pub auth_manager_id_claim: String,
    /// JSON Pointer of a team lead's team.
    #[arg(long, env = "CRM_AUTH_TEAM_CLAIM", default_value = "/team")]
    pub auth_team_claim: String,
    /// JSON Pointer of a service's commands (an array).
    #[arg(long, env = "CRM_AUTH_COMMANDS_CLAIM", default_value = "/commands")]
    pub auth_commands_claim: String,
    /// Grant commands from OAuth scopes with this prefix (`crm:record_contact`).
    #[arg(long, env = "CRM_AUTH_COMMAND_SCOPE_PREFIX")]
    pub auth_command_scope_prefix: Option<String>,
}

impl std::fmt::Debug for AuthArgs {
    /// Never the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthArgs")
            .field("mode", &self.mode)
            .field("issuer", &self.auth_issuer)
            .field("jwks_url", &self.auth_jwks_url)
            .field("oidc_discovery", &self.auth_oidc_discovery)
            .field(
                "hs256_secret",
                &self.auth_hs256_secret.as_ref().map(|_| "[set]"),
            )
            .field("role_claim", &self.auth_role_claim)
            .finish_non_exhaustive()
    }
}

impl AuthArgs {
    /// The verifier these settings make for `service_audience`: `Ok(None)` with
    /// `--auth off`; an error when no key source (or more than one) is configured, so a
    /// service never runs open by accident. With a JWKS, its keys are fetched now.
    pub async fn verifier(&self, service_audience: &str) -> Result<Option<Verifier>, String> {
        // An empty setting is an unset one.
        let this = self.without_empty();
        match this.mode.as_str() {
            "off" => return Ok(None),
            "on" => {}
            other => return Err(format!("CRM_AUTH is `on` or `off`, not {other:?}")),
        }
        let claims = this.claim_map()?;
        let verifier = this.keys(service_audience).await?;
        verifier.with_claims(claims).map(Some)
    }

    /// The verifier of the one key source configured.
    async fn keys(&self, service_audience: &str) -> Result<Verifier, String> {
        let sources = [
            self.auth_jwks_url.is_some(),
            self.auth_oidc_discovery.is_some(),
            self.auth_hs256_secret.is_some(),
            self.auth_ed25519_public_key.is_some(),
        ];
        match sources.iter().filter(|s| **s).count() {
            0 => {
                return Err(
                    "authentication is not configured: set CRM_AUTH_JWKS_URL or \
                            CRM_AUTH_OIDC_DISCOVERY (an identity provider), CRM_AUTH_HS256_SECRET \
                            or CRM_AUTH_ED25519_PUBLIC_KEY (and CRM_AUTH_ISSUER), or CRM_AUTH=off \
                            to run without it (development only)"
                        .into(),
                )
            }
            1 => {}
            _ => {
                return Err("set one of CRM_AUTH_JWKS_URL, CRM_AUTH_OIDC_DISCOVERY, \
                            CRM_AUTH_HS256_SECRET and CRM_AUTH_ED25519_PUBLIC_KEY"
                    .into())
            }
        }
        let issuer = self
            .auth_issuer
            .clone()
            .ok_or("CRM_AUTH_ISSUER is not set")?;
        let audience = (self.auth_audience.clone()).unwrap_or_else(|| service_audience.into());
        let jwks = |source| JwksConfig {
            refresh_every: Duration::from_secs(self.auth_jwks_refresh.max(1)),
            unknown_kid_cooldown: Duration::from_secs(self.auth_jwks_cooldown),
            ..JwksConfig::new(source)
        };
        if let Some(url) = &self.auth_jwks_url {
            Verifier::from_provider(jwks(JwksSource::Url(url.clone())), issuer, audience).await
        } else if let Some(issuer_url) = &self.auth_oidc_discovery {
            let source = JwksSource::Discovery(issuer_url.clone());
            Verifier::from_provider(jwks(source), issuer, audience).await
        } else if let Some(secret) = &self.auth_hs256_secret {
            let key = VerifyKey::Hs256(secret.clone().into_bytes());
            Verifier::new(key, issuer, audience)
        } else {
            let public = self.auth_ed25519_public_key.as_deref().unwrap_or_default();
            let key = crate::hex_decode(public).ok_or("CRM_AUTH_ED25519_PUBLIC_KEY is not hex")?;
            Verifier::new(VerifyKey::Ed25519(key), issuer, audience)
        }
    }

    fn without_empty(&self) -> Self {
        let keep = |v: &Option<String>| v.clone().filter(|v| !v.trim().is_empty());
        Self {
            auth_issuer: keep(&self.auth_issuer),
            auth_audience: keep(&self.auth_audience),
            auth_jwks_url: keep(&self.auth_jwks_url),
            auth_oidc_discovery: keep(&self.auth_oidc_discovery),
            auth_hs256_secret: keep(&self.auth_hs256_secret),
            auth_ed25519_public_key: keep(&self.auth_ed25519_public_key),
            auth_role_map: keep(&self.auth_role_map),
            auth_command_scope_prefix: keep(&self.auth_command_scope_prefix),
            ..self.clone()
        }
    }

    fn claim_map(&self) -> Result<ClaimMap, String> {
        let roles = match &self.auth_role_map {
            None => ClaimMap::default().roles,
            Some(map) => map
                .split(',')
                .filter(|p| !p.trim().is_empty())
                .map(|pair| {
                    let (name, role) = pair
                        .split_once('=')
                        .ok_or_else(|| format!("CRM_AUTH_ROLE_MAP: {pair:?} is not name=role"))?;
                    let role: Role = serde_json::from_value(serde_json::json!(role.trim()))
                        .map_err(|_| format!("CRM_AUTH_ROLE_MAP: {role:?} is not a platform role (manager, analyst, auditor, service, admin)"))?;
                    Ok((name.trim().to_string(), role))
                })
                .collect::<Result<_, String>>()?,
        };
        let map = ClaimMap {
            role: self.auth_role_claim.clone(),
            roles,
            manager_id: self.auth_manager_id_claim.clone(),
            team: self.auth_team_claim.clone(),
            commands: self.auth_commands_claim.clone(),
            command_scope_prefix: self.auth_command_scope_prefix.clone(),
            ..ClaimMap::default()
        };
        map.validate()?;
        Ok(map)
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        auth: AuthArgs,
    }

    fn args(list: &[&str]) -> AuthArgs {
        let mut argv = vec!["svc"];
        argv.extend_from_slice(list);
        Cli::try_parse_from(argv).unwrap().auth
    }

    const SECRET: &str = "0123456789abcdef0123456789abcdef-secret";

    #[tokio::test]
    async fn settings_make_a_verifier_or_say_what_is_wrong() {
        assert!(args(&["--auth", "off"])
            .verifier("crm-query")
            .await
            .unwrap()
            .is_none());
        let none = args(&["--auth-issuer", "i"]).verifier("crm-query").await;
        assert!(none.unwrap_err().contains("not configured"));
        let no_issuer = args(&["--auth-issuer", "", "--auth-hs256-secret", SECRET]);
        assert!(no_issuer
            .verifier("crm-query")
            .await
            .unwrap_err()
            .contains("CRM_AUTH_ISSUER"));
        // With an issuer and the HS256 secret, one setting more: what it answers.
        for (extra, refusal) in [
            (["--auth-jwks-url", "http://x"], Some("set one of")),
            (["--auth-jwks-url", ""], None),
            (
                ["--auth-role-map", "crm-boss=owner"],
                Some("not a platform role"),
            ),
            (["--auth-role-claim", "roles"], Some("JSON Pointer")),
        ] {
            let mut list = vec!["--auth-issuer", "i", "--auth-hs256-secret", SECRET];
            list.extend(extra);
            let made = args(&list).verifier("crm-query").await;
            match refusal {
                Some(why) => assert!(made.unwrap_err().contains(why), "{extra:?}"),
                // An empty setting is unset.
                None => assert!(made.unwrap().is_some(), "{extra:?}"),
            }
        }
    }

    #[test]
    fn the_secret_is_never_shown() {
        let a = args(&["--auth-issuer", "i", "--auth-hs256-secret", SECRET]);
        assert!(!format!("{a:?}").contains(SECRET));
    }
}

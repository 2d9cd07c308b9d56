//! Signing a person in through the bank's identity provider: OpenID Connect's
//! authorization-code flow with PKCE (RFC 7636, `S256`), for the workbench.
//!
//! Written here rather than taken from `openidconnect` (which needs a newer Rust and
//! brings its own HTTP and crypto stacks beside `jsonwebtoken`, ADR 0007): the flow is
//! a discovery document, one redirect, one token request and an ID token checked by the
//! same verifier as access tokens, on the provider's keys.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::Deserialize;

use crate::keys::{JwksConfig, JwksSource};
use crate::{AuthError, Verifier};

/// The provider's endpoints, from its discovery document.
#[derive(Debug, Clone)]
struct Endpoints {
    authorization: String,
    token: String,
}

/// What the workbench's sign-in is configured with.
#[derive(Clone)]
pub struct OidcSettings {
    /// The issuer's URL (`CRM_AUTH_OIDC_DISCOVERY`): its discovery document is read.
    pub issuer: String,
    pub client_id: String,
    /// For a confidential client; PKCE protects the code either way.
    pub client_secret: Option<String>,
    /// The workbench's callback, as registered at the provider:
    /// `https://<query host>/ui/callback`.
    pub redirect_uri: String,
    /// Space-separated; `openid` is always asked.
    pub scopes: String,
}

impl std::fmt::Debug for OidcSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcSettings")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "[set]"),
            )
            .field("redirect_uri", &self.redirect_uri)
            .finish_non_exhaustive()
    }
}

/// A relying party of the identity provider.
#[derive(Clone)]
pub struct OidcClient {
    settings: OidcSettings,
    endpoints: Endpoints,
    http: reqwest::Client,
    /// Checks ID tokens: the provider's keys, its issuer, the client id as audience.
    id_tokens: Verifier,
}

impl std::fmt::Debug for OidcClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcClient")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// The tokens a code is exchanged for.
#[derive(Deserialize)]
pub struct Tokens {
    pub access_token: String,
    pub id_token: Option<String>,
    pub expires_in: Option<i64>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tokens([redacted])")
    }
}

/// A PKCE verifier (43 characters of base64url) and its `S256` challenge.
pub fn pkce(verifier_bytes: &[u8; 32]) -> (String, String) {
    let verifier = URL_SAFE_NO_PAD.encode(verifier_bytes);
    let digest = ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes());
    (verifier, URL_SAFE_NO_PAD.encode(digest.as_ref()))
}

impl OidcClient {
    /// Read the provider's discovery document (an error if it cannot be read or names
    /// another issuer) and fetch its keys.
    pub async fn discover(settings: OidcSettings) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(10))
            .build()
            .map_err(|e| format!("an HTTP client for the identity provider: {e}"))?;
        let endpoints = endpoints(&http, &settings.issuer).await?;
        let keys = JwksConfig::new(JwksSource::Discovery(settings.issuer.clone()));
        let id_tokens =
            Verifier::from_provider(keys, settings.issuer.clone(), settings.client_id.clone())
                .await?;
        Ok(Self {
            settings,
            endpoints,
            http,
            id_tokens,
        })
    }

    /// Where to send the browser: the provider's authorization endpoint with this
    /// sign-in's `state`, `nonce` and PKCE challenge.
    pub fn authorization_url(&self, state: &str, nonce: &str, challenge: &str) -> String {
        let mut scopes = self.settings.scopes.clone();
        if !scopes.split_whitespace().any(|s| s == "openid") {
            scopes = format!("openid {scopes}").trim().to_string();
        }
        let query = [
            ("response_type", "code"),
            ("client_id", self.settings.client_id.as_str()),
            ("redirect_uri", self.settings.redirect_uri.as_str()),
            ("scope", scopes.as_str()),
            ("state", state),
            ("nonce", nonce),
            ("code_challenge", challenge),
            ("code_challenge_method", "S256"),
        ]
        .iter()
        .map(|(k, v)| format!("{k}={}", form_encode(v)))
        .collect::<Vec<_>>()
        .join("&");
        let sep = if self.endpoints.authorization.contains('?') {
            '&'
        } else {
            '?'
        };
        format!("{}{sep}{query}", self.endpoints.authorization)
    }

    /// Exchange the code the provider sent back for tokens, proving the sign-in with the
    /// PKCE verifier; the ID token (when the provider sends one) is checked, nonce
    /// included.
    pub async fn exchange(
        &self,
        code: &str,
        verifier: &str,
        nonce: &str,
        now: i64,
    ) -> Result<Tokens, String> {
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", self.settings.redirect_uri.as_str()),
            ("client_id", self.settings.client_id.as_str()),
            ("code_verifier", verifier),
        ];
        if let Some(secret) = &self.settings.client_secret {
            form.push(("client_secret", secret.as_str()));
        }
        let body = form
            .iter()
            .map(|(k, v)| format!("{k}={}", form_encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let response = self
            .http
            .post(&self.endpoints.token)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| format!("the identity provider's token endpoint: {e}"))?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|e| e.to_string())?;
        if !status.is_success() {
            return Err(provider_error(status.as_u16(), &bytes));
        }
        let tokens: Tokens = serde_json::from_slice(&bytes)
            .map_err(|_| "the token endpoint's answer has no access_token".to_string())?;
        if let Some(id) = &tokens.id_token {
            self.id_tokens
                .verify_id_token(id, nonce, now)
                .await
                .map_err(|e: AuthError| format!("the ID token: {e}"))?;
        }
        Ok(tokens)
    }
}

/// The provider's `error` and `error_description` (escaped: it is shown to the person).
fn provider_error(status: u16, body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct Refusal {
        error: Option<String>,
        error_description: Option<String>,
    }
    let r: Option<Refusal> = serde_json::from_slice(body).ok();
    let what = r
        .map(|r| {
            [r.error, r.error_description]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(": ")
        })
        .filter(|w| !w.is_empty())
        .unwrap_or_else(|| "no reason given".into());
    format!(
        "the identity provider refused the code ({status}): {}",
        crm_domain::text::escaped(&what)
    )
}

async fn endpoints(http: &reqwest::Client, issuer: &str) -> Result<Endpoints, String> {
    let doc = format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    );
    #[derive(Deserialize)]
    struct Discovery {
        issuer: String,
        authorization_endpoint: String,
        token_endpoint: String,
    }
    let body = http
        .get(&doc)
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .map_err(|e| format!("fetching {doc}: {e}"))?
        .bytes()
        .await
        .map_err(|e| format!("reading {doc}: {e}"))?;
    let found: Discovery = serde_json::from_slice(&body)
        .map_err(|e| format!("{doc}: no issuer, authorization_endpoint and token_endpoint: {e}"))?;
    if found.issuer.trim_end_matches('/') != issuer.trim_end_matches('/') {
        return Err(format!(
            "{doc} names the issuer {:?}, not {issuer:?}",
            crm_domain::text::escaped(&found.issuer)
        ));
    }
    Ok(Endpoints {
        authorization: found.authorization_endpoint,
        token: found.token_endpoint,
    })
}

/// `application/x-www-form-urlencoded` of one value.
pub fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pkce_challenge_is_rfc_7636s() {
        // RFC 7636, appendix B.
        let bytes: [u8; 32] = [
            116, 24, 223, 180, 151, 153, 224, 37, 79, 250, 96, 125, 216, 173, 187, 186, 22, 212,
            37, 77, 105, 214, 191, 240, 91, 88, 5, 88, 83, 132, 141, 121,
        ];
        let (verifier, challenge) = pkce(&bytes);
        assert_eq!(verifier, "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk");
        assert_eq!(challenge, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
    }

    #[test]
    fn form_values_are_encoded() {
        assert_eq!(form_encode("a b&c=d/é"), "a%20b%26c%3Dd%2F%C3%A9");
    }
}

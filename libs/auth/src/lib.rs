//! Who is calling: signed bearer tokens (JWT, RFC 7519) with role and scope claims.
//!
//! Keys (`keys.rs`): the bank's identity provider's JSON Web Key Set (RS256, PS256,
//! ES256, ES384, EdDSA; keys chosen by `kid`, fetched again on rotation), or one
//! configured key (`HS256` with a shared secret for development and `crm token`, or an
//! Ed25519 public key). Each key verifies exactly one algorithm: a token naming any
//! other (`none` included) is refused before its signature is looked at. Signatures are
//! checked by `jsonwebtoken`. Expiry (`exp`, required), not-before (`nbf`), issuer
//! (`iss`) and audience (`aud`) are checked here, with 30 s of leeway for clocks.
//!
//! Claims beyond the registered ones, where [`ClaimMap`] says (these are the defaults;
//! `claims.rs` maps a provider's own names):
//! - `role`: `manager`, `analyst`, `auditor`, `service` or `admin`;
//! - `manager_id` (managers): whose customers they see;
//! - `team` (managers who lead a team): the team whose customers they also see;
//! - `commands` (services): the commands the service may send;
//! - `acts_for_persons` (services): whether the service may send commands for the people
//!   it has authenticated itself (`meta.actor` = `person:<id>`); the actor is then
//!   recorded as `person:<id> via service:<sub>`.
//!
//! `sub` must be a valid actor id (1 to 128 characters, no spaces, no control
//! characters): it becomes the actor recorded on everything the caller does.
//!
//! `docs/api.md` ("Authentication") lists what each role may do.
#![forbid(unsafe_code)]

use std::str::FromStr as _;
use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

mod claims;
mod config;
mod keys;
pub mod oidc;
mod verified;

pub use claims::ClaimMap;
pub use config::AuthArgs;
pub use keys::{JwksConfig, JwksSource};

/// What a caller may do, in broad strokes; the services refine it per route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Their own customers (and, for a team lead, the team's).
    Manager,
    /// Aggregates; personal fields masked.
    Analyst,
    /// Reads everything, changes nothing.
    Auditor,
    /// Another system: sends the commands it is allowed.
    Service,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Manager => "manager",
            Role::Analyst => "analyst",
            Role::Auditor => "auditor",
            Role::Service => "service",
            Role::Admin => "admin",
        }
    }
}

/// The verified caller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    /// `sub`: a person's or a service's id.
    pub subject: String,
    pub role: Role,
    #[serde(default)]
    pub manager_id: Option<String>,
    #[serde(default)]
    pub team: Option<String>,
    #[serde(default)]
    pub commands: Vec<String>,
    /// A service that may act for the people it authenticated.
    #[serde(default)]
    pub acts_for_persons: bool,
}

impl Principal {
    /// The actor recorded on what this caller does: `service:<sub>` or `person:<sub>`.
    pub fn actor(&self) -> String {
        match self.role {
            Role::Service => format!("service:{}", self.subject),
            _ => format!("person:{}", self.subject),
        }
    }

    /// A person, as opposed to another system.
    pub fn is_person(&self) -> bool {
        self.role != Role::Service
    }

    /// Whether this caller may send `command`.
    pub fn may_command(&self, command: &str) -> bool {
        match self.role {
            Role::Admin => true,
            Role::Service => self.commands.iter().any(|c| c == command || c == "*"),
            Role::Manager | Role::Analyst | Role::Auditor => false,
        }
    }

    /// Whether a manager-scoped caller may see a customer owned by `owner` in `team`
    /// (every other role is scoped by route, not by customer).
    pub fn sees_customer(&self, owner: Option<&str>, team: Option<&str>) -> bool {
        match self.role {
            Role::Manager => {
                (owner.is_some() && owner == self.manager_id.as_deref())
                    || (team.is_some() && team == self.team.as_deref())
            }
            Role::Analyst | Role::Auditor | Role::Admin => true,
            Role::Service => false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no bearer token")]
    Missing,
    #[error("the token is malformed: {0}")]
    Malformed(&'static str),
    #[error("the token's algorithm {0:?} is not the one accepted")]
    Algorithm(String),
    #[error("the token's signature does not verify")]
    Signature,
    #[error("the token names no key id (kid)")]
    NoKeyId,
    #[error("the identity provider has no key {0:?}")]
    UnknownKey(String),
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token was issued by {0:?}, not by the expected issuer")]
    Issuer(String),
    #[error("the token is not meant for this service")]
    Audience,
    #[error("the token's claims are incomplete: {0}")]
    Claims(String),
}

/// The key a verifier checks signatures with.
#[derive(Clone)]
pub enum VerifyKey {
    /// `HS256`: a shared secret (at least 32 bytes).
    Hs256(Vec<u8>),
    /// `EdDSA`: an Ed25519 public key (32 bytes).
    Ed25519(Vec<u8>),
}

impl VerifyKey {
    fn key(&self) -> Result<keys::Key, String> {
        use jsonwebtoken::{Algorithm, DecodingKey};
        Ok(match self {
            VerifyKey::Hs256(secret) => keys::Key {
                alg: Algorithm::HS256,
                key: DecodingKey::from_secret(secret).map_err(|e| e.to_string())?,
            },
            VerifyKey::Ed25519(public) => keys::Key {
                alg: Algorithm::EdDSA,
                key: DecodingKey::from_ed_components(&URL_SAFE_NO_PAD.encode(public))
                    .map_err(|e| format!("the Ed25519 public key: {e}"))?,
            },
        })
    }
}

/// Where a verifier's keys come from.
#[derive(Clone)]
enum Keys {
    /// One configured key; tokens need no `kid`.
    One(keys::Key),
    /// The identity provider's key set; tokens name their key.
    Provider(Arc<keys::KeyCache>),
}

/// Checks tokens for one service.
#[derive(Clone)]
pub struct Verifier {
    keys: Keys,
    issuer: String,
    audience: String,
    leeway_s: i64,
    claims: ClaimMap,
    verified: Arc<verified::Verified>,
}

impl Keys {
    /// Changes whenever the keys do (tokens verified before are then verified again).
    fn generation(&self) -> u64 {
        match self {
            Keys::One(_) => 0,
            Keys::Provider(cache) => cache.generation(),
        }
    }
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        let keys = match &self.keys {
            Keys::One(k) => format!("{:?}", k.alg),
            Keys::Provider(_) => "identity provider".into(),
        };
        f.debug_struct("Verifier")
            .field("keys", &keys)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish()
    }
}

/// Seconds since the Unix epoch, for [`Verifier::verify`].
pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    crit: Option<serde_json::Value>,
}

/// The registered claims; the rest are read through the [`ClaimMap`].
#[derive(Deserialize)]
struct Registered {
    iss: Option<String>,
    sub: Option<String>,
    #[serde(default)]
    aud: Option<serde_json::Value>,
    exp: Option<i64>,
    nbf: Option<i64>,
}

impl Verifier {
    pub fn new(
        key: VerifyKey,
        issuer: impl Into<String>,
        audience: impl Into<String>,
    ) -> Result<Self, String> {
        match &key {
            VerifyKey::Hs256(s) if s.len() < 32 => {
                return Err("the HS256 secret must be at least 32 bytes".into())
            }
            VerifyKey::Hs256(s) if is_placeholder(s) => {
                return Err(
                    "the HS256 secret is a placeholder from an example: generate one (openssl rand -hex 32)"
                        .into(),
                )
            }
            VerifyKey::Ed25519(k) if k.len() != 32 => {
                return Err("an Ed25519 public key is 32 bytes".into())
            }
            _ => {}
        }
        Ok(Self {
            keys: Keys::One(key.key()?),
            issuer: issuer.into(),
            audience: audience.into(),
            leeway_s: 30,
            claims: ClaimMap::default(),
            verified: Default::default(),
        })
    }

    /// A verifier of the identity provider's tokens: its keys fetched now (an error if
    /// they cannot be) and kept fresh while the verifier lives.
    pub async fn from_provider(
        config: JwksConfig,
        issuer: impl Into<String>,
        audience: impl Into<String>,
    ) -> Result<Self, String> {
        Ok(Self {
            keys: Keys::Provider(keys::KeyCache::start(config).await?),
            issuer: issuer.into(),
            audience: audience.into(),
            leeway_s: 30,
            claims: ClaimMap::default(),
            verified: Default::default(),
        })
    }

    /// Read the caller's role and scope where `claims` says.
    pub fn with_claims(mut self, claims: ClaimMap) -> Result<Self, String> {
        claims.validate()?;
        self.claims = claims;
        Ok(self)
    }

    /// Verify a token (without `Bearer `) at Unix time `now`.
    pub async fn verify(&self, token: &str, now: i64) -> Result<Principal, AuthError> {
        let digest = verified::digest(token);
        let generation = self.keys.generation();
        if let Some(checked) = self.verified.get(&digest, generation) {
            return self.in_time(&checked, now);
        }
        let claims = self.signed_claims(token).await?;
        let checked = self.principal(claims, now)?;
        // The generation read before the key was looked up: a fetch meanwhile makes
        // this entry stale, never a stale entry current.
        self.verified.put(digest, generation, checked.clone());
        Ok(checked.principal)
    }

    /// The claims of a token whose signature verifies with the key its header names,
    /// under that key's one algorithm.
    async fn signed_claims(&self, token: &str) -> Result<serde_json::Value, AuthError> {
        let mut parts = token.split('.');
        let (Some(h), Some(_), Some(_), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(AuthError::Malformed("not three dot-separated parts"));
        };
        let header: Header = decode_json(h).ok_or(AuthError::Malformed("header"))?;
        if header.crit.is_some() {
            return Err(AuthError::Malformed(
                "critical header extensions are not supported",
            ));
        }
        let key = match &self.keys {
            Keys::One(key) => key.clone(),
            Keys::Provider(cache) => {
                cache
                    .key(header.kid.as_deref().ok_or(AuthError::NoKeyId)?)
                    .await?
            }
        };
        // Pinned: the key's algorithm only, decided before looking at the signature.
        if jsonwebtoken::Algorithm::from_str(&header.alg).ok() != Some(key.alg) {
            return Err(AuthError::Algorithm(
                crm_domain::text::escaped(&header.alg).into_owned(),
            ));
        }
        let mut checks = jsonwebtoken::Validation::new(key.alg);
        // The registered claims are checked by `principal`, with the platform's errors.
        checks.required_spec_claims.clear();
        (
            checks.validate_exp,
            checks.validate_nbf,
            checks.validate_aud,
        ) = (false, false, false);
        let decoded = jsonwebtoken::decode::<serde_json::Value>(token, &key.key, &checks);
        decoded.map(|d| d.claims).map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::InvalidToken
            | jsonwebtoken::errors::ErrorKind::Base64(_)
            | jsonwebtoken::errors::ErrorKind::Json(_)
            | jsonwebtoken::errors::ErrorKind::Utf8(_) => AuthError::Malformed("claims"),
            _ => AuthError::Signature,
        })
    }

    /// The principal, if the token is valid at `now`.
    fn in_time(&self, c: &verified::Checked, now: i64) -> Result<Principal, AuthError> {
        self.times(c.exp, c.nbf, now)?;
        Ok(c.principal.clone())
    }

    /// Expiry and not-before at `now`, with leeway.
    fn times(&self, exp: i64, nbf: Option<i64>, now: i64) -> Result<(), AuthError> {
        if now > exp + self.leeway_s {
            return Err(AuthError::Expired);
        }
        if nbf.is_some_and(|nbf| now + self.leeway_s < nbf) {
            return Err(AuthError::NotYetValid);
        }
        Ok(())
    }

    /// The principal of a signed token's claims: valid now, for this issuer and audience,
    /// with a subject that can be an actor and the claims its role needs.
    fn principal(&self, all: serde_json::Value, now: i64) -> Result<verified::Checked, AuthError> {
        let claims = self.registered(&all, now)?;
        let (exp, nbf) = (claims.exp.unwrap_or_default(), claims.nbf);
        let subject = claims
            .sub
            .filter(|s| !s.is_empty())
            .ok_or(AuthError::Claims("sub is required".into()))?;
        // The subject becomes the recorded actor: it must read back as one.
        let as_actor = format!("person:{subject}").parse::<crm_domain::Actor>();
        if !as_actor.is_ok_and(|a| a.via.is_none()) {
            return Err(AuthError::Claims(
                "sub must be 1 to 128 characters without spaces or control characters".into(),
            ));
        }
        let map = &self.claims;
        let role = map.role(&all)?;
        let manager_id = map.text(&all, &map.manager_id);
        if role == Role::Manager && manager_id.is_none() {
            return Err(AuthError::Claims(format!(
                "a manager's token names its manager_id (at {})",
                map.manager_id
            )));
        }
        let principal = Principal {
            subject,
            role,
            manager_id,
            team: map.text(&all, &map.team),
            commands: map.commands(&all),
            acts_for_persons: role == Role::Service && map.flag(&all, &map.acts_for_persons),
        };
        Ok(verified::Checked {
            principal,
            exp,
            nbf,
        })
    }

    /// The registered claims of signed claims `all`: valid at `now` (`exp` required), for
    /// this issuer and audience.
    fn registered(&self, all: &serde_json::Value, now: i64) -> Result<Registered, AuthError> {
        let claims: Registered = serde_json::from_value(all.clone())
            .map_err(|_| AuthError::Malformed("registered claims"))?;
        let exp = claims
            .exp
            .ok_or(AuthError::Claims("exp is required".into()))?;
        self.times(exp, claims.nbf, now)?;
        if claims.iss.as_deref() != Some(self.issuer.as_str()) {
            let iss = claims.iss.clone().unwrap_or_default();
            return Err(AuthError::Issuer(
                crm_domain::text::escaped(&iss).into_owned(),
            ));
        }
        let audience_ok = match &claims.aud {
            Some(serde_json::Value::String(a)) => *a == self.audience,
            Some(serde_json::Value::Array(list)) => list
                .iter()
                .any(|a| a.as_str() == Some(self.audience.as_str())),
            _ => false,
        };
        if !audience_ok {
            return Err(AuthError::Audience);
        }
        Ok(claims)
    }

    /// Verify an OpenID Connect ID token (OIDC Core 3.1.3.7) for this verifier's
    /// issuer and audience (the client id): signature by the provider's keys, expiry,
    /// and the `nonce` the sign-in sent. Its claims.
    pub async fn verify_id_token(
        &self,
        token: &str,
        nonce: &str,
        now: i64,
    ) -> Result<serde_json::Value, AuthError> {
        let all = self.signed_claims(token).await?;
        self.registered(&all, now)?;
        let sent = all.get("nonce").and_then(|n| n.as_str());
        if sent.map(|n| n.as_bytes()) != Some(nonce.as_bytes()) {
            return Err(AuthError::Claims(
                "the ID token's nonce is not the sign-in's".into(),
            ));
        }
        Ok(all)
    }

    /// Verify the value of an `Authorization` header.
    pub async fn verify_header(
        &self,
        header: Option<&str>,
        now: i64,
    ) -> Result<Principal, AuthError> {
        let token = header
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .ok_or(AuthError::Missing)?;
        self.verify(token.trim(), now).await
    }
}

/// Whether a secret is one of the examples' placeholders ("replace-with-…",
/// "change-me…"): a deployment that forgot to fill it in must not start.
pub fn is_placeholder(secret: &[u8]) -> bool {
    let text = String::from_utf8_lossy(secret).to_lowercase();
    ["replace", "change-me", "changeme", "example", "placeholder"]
        .iter()
        .any(|p| text.contains(p))
}

fn decode_json<T: serde::de::DeserializeOwned>(part: &str) -> Option<T> {
    let bytes = URL_SAFE_NO_PAD.decode(part).ok()?;
    serde_json::from_slice(&bytes).ok()
}

pub(crate) fn hex_decode(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Issue an HS256 token (operators' `crm token`, tests). `claims` must hold `iss`,
/// `aud`, `sub`, `exp`, `role` and the role's scope claims.
pub fn sign_hs256(secret: &[u8], claims: &serde_json::Value) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    let signed = format!("{header}.{payload}");
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let tag = ring::hmac::sign(&key, signed.as_bytes());
    format!("{signed}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
    const NOW: i64 = 1_800_000_000;

    fn verifier() -> Verifier {
        Verifier::new(VerifyKey::Hs256(SECRET.to_vec()), "crm-idp", "crm-query").unwrap()
    }

    fn claims() -> serde_json::Value {
        json!({"iss": "crm-idp", "aud": "crm-query", "sub": "li.wei", "exp": NOW + 600,
               "role": "manager", "manager_id": "m-1", "team": "east-1"})
    }

    fn with(f: impl FnOnce(&mut serde_json::Value)) -> String {
        let mut c = claims();
        f(&mut c);
        sign_hs256(SECRET, &c)
    }

    #[tokio::test]
    async fn a_good_token_names_its_principal() {
        let p = verifier()
            .verify(&sign_hs256(SECRET, &claims()), NOW)
            .await
            .unwrap();
        assert_eq!(p.role, Role::Manager);
        assert_eq!(p.actor(), "person:li.wei");
        assert!(p.sees_customer(Some("m-1"), None));
        assert!(
            p.sees_customer(Some("m-9"), Some("east-1")),
            "a team lead sees the team"
        );
        assert!(!p.sees_customer(Some("m-9"), Some("west-1")));
        assert!(
            !p.sees_customer(None, None),
            "pool customers are not a manager's"
        );
        assert!(!p.may_command("assign_owner"));
    }

    #[tokio::test]
    async fn a_subject_that_cannot_be_an_actor_is_refused() {
        let v = verifier();
        for sub in ["li wei", "\u{1b}[2Jadmin", "a\u{0}b", "x via service:y"] {
            let token = with(|c| c["sub"] = json!(sub));
            assert!(
                matches!(v.verify(&token, NOW).await, Err(AuthError::Claims(_))),
                "{sub:?}"
            );
        }
        let token = with(|c| c["iss"] = json!("evil\n\u{1b}[2J"));
        let e = v.verify(&token, NOW).await.unwrap_err();
        assert!(!e.to_string().chars().any(char::is_control), "{e}");
    }

    #[tokio::test]
    async fn an_examples_placeholder_secret_is_refused() {
        for secret in [
            "replace-with-at-least-32-random-bytes",
            "change-me-to-32-bytes-of-secret-please",
            "EXAMPLE-secret-of-at-least-32-bytes-long",
        ] {
            let e = Verifier::new(VerifyKey::Hs256(secret.into()), "i", "a").unwrap_err();
            assert!(e.contains("placeholder"), "{e}");
        }
        assert!(Verifier::new(VerifyKey::Hs256(SECRET.to_vec()), "i", "a").is_ok());
    }

    #[tokio::test]
    async fn every_bad_token_is_refused() {
        let v = verifier();
        let expired = with(|c| c["exp"] = json!(NOW - 31));
        assert_eq!(v.verify(&expired, NOW).await, Err(AuthError::Expired));
        let early = with(|c| c["nbf"] = json!(NOW + 60));
        assert_eq!(v.verify(&early, NOW).await, Err(AuthError::NotYetValid));
        let issuer = with(|c| c["iss"] = json!("someone-else"));
        assert!(matches!(
            v.verify(&issuer, NOW).await,
            Err(AuthError::Issuer(_))
        ));
        let audience = with(|c| c["aud"] = json!(["crm-commands"]));
        assert_eq!(v.verify(&audience, NOW).await, Err(AuthError::Audience));
        let no_exp = with(|c| {
            c.as_object_mut().unwrap().remove("exp");
        });
        assert!(matches!(
            v.verify(&no_exp, NOW).await,
            Err(AuthError::Claims(_))
        ));
        let no_manager = with(|c| {
            c.as_object_mut().unwrap().remove("manager_id");
        });
        assert!(matches!(
            v.verify(&no_manager, NOW).await,
            Err(AuthError::Claims(_))
        ));
        // Signed with another secret.
        let forged = sign_hs256(b"another secret, also 32 bytes long", &claims());
        assert_eq!(v.verify(&forged, NOW).await, Err(AuthError::Signature));
        // Claims changed after signing.
        let good = sign_hs256(SECRET, &claims());
        let mut parts: Vec<&str> = good.split('.').collect();
        let admin = URL_SAFE_NO_PAD.encode(
            with(|c| c["role"] = json!("admin"))
                .split('.')
                .nth(1)
                .unwrap(),
        );
        let admin = String::from_utf8(URL_SAFE_NO_PAD.decode(admin).unwrap()).unwrap();
        parts[1] = &admin;
        assert_eq!(
            v.verify(&parts.join("."), NOW).await,
            Err(AuthError::Signature)
        );
        // alg "none", and an algorithm other than the pinned one.
        let none = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#),
            URL_SAFE_NO_PAD.encode(claims().to_string())
        );
        assert_eq!(
            v.verify(&none, NOW).await,
            Err(AuthError::Algorithm("none".into()))
        );
        let ed = Verifier::new(VerifyKey::Ed25519(vec![7; 32]), "crm-idp", "crm-query").unwrap();
        assert_eq!(
            ed.verify(&good, NOW).await,
            Err(AuthError::Algorithm("HS256".into())),
            "an HS256 token is refused where EdDSA is pinned"
        );
        assert_eq!(v.verify_header(None, NOW).await, Err(AuthError::Missing));
        assert_eq!(
            v.verify_header(Some("Basic abc"), NOW).await,
            Err(AuthError::Missing)
        );
        assert!(matches!(
            v.verify("a.b", NOW).await,
            Err(AuthError::Malformed(_))
        ));
    }

    #[tokio::test]
    async fn ed25519_tokens_verify_with_the_public_key() {
        use ring::signature::{Ed25519KeyPair, KeyPair};
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"EdDSA","typ":"JWT"}"#);
        let payload = URL_SAFE_NO_PAD.encode(claims().to_string());
        let signed = format!("{header}.{payload}");
        let sig = URL_SAFE_NO_PAD.encode(pair.sign(signed.as_bytes()).as_ref());
        let token = format!("{signed}.{sig}");
        let v = Verifier::new(
            VerifyKey::Ed25519(pair.public_key().as_ref().to_vec()),
            "crm-idp",
            "crm-query",
        )
        .unwrap();
        assert_eq!(v.verify(&token, NOW).await.unwrap().subject, "li.wei");
        let other = Verifier::new(VerifyKey::Ed25519(vec![7; 32]), "crm-idp", "crm-query").unwrap();
        assert_eq!(other.verify(&token, NOW).await, Err(AuthError::Signature));
    }

    #[tokio::test]
    async fn a_token_verified_before_is_checked_for_time_at_every_use() {
        let v = verifier();
        let token = sign_hs256(SECRET, &claims());
        assert!(v.verify(&token, NOW).await.is_ok());
        assert!(
            v.verify(&token, NOW + 600).await.is_ok(),
            "kept, within leeway"
        );
        assert_eq!(v.verify(&token, NOW + 631).await, Err(AuthError::Expired));
        let early = with(|c| c["nbf"] = json!(NOW + 60));
        assert_eq!(v.verify(&early, NOW).await, Err(AuthError::NotYetValid));
        assert!(v.verify(&early, NOW + 60).await.is_ok());
        assert_eq!(v.verify(&early, NOW).await, Err(AuthError::NotYetValid));
    }

    #[tokio::test]
    async fn services_send_only_their_commands() {
        let v = verifier();
        let token = with(|c| {
            c["role"] = json!("service");
            c["sub"] = json!("call-centre");
            c["commands"] = json!(["record_contact", "log_complaint"]);
        });
        let p = v.verify(&token, NOW).await.unwrap();
        assert_eq!(p.actor(), "service:call-centre");
        assert!(p.may_command("record_contact"));
        assert!(!p.may_command("assign_owner"));
        assert!(!p.is_person());
    }
}

//! Who is calling: signed bearer tokens (JWT, RFC 7519) with role and scope claims.
//!
//! The verifier accepts exactly one algorithm, chosen by configuration (`HS256` with a
//! shared secret, or `EdDSA` with an Ed25519 public key): a token naming any other
//! algorithm (`none` included) is refused before its signature is looked at. Expiry
//! (`exp`, required), not-before (`nbf`), issuer (`iss`) and audience (`aud`) are
//! checked, with 30 s of leeway for clocks.
//!
//! Claims beyond the registered ones:
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

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

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
    fn alg(&self) -> &'static str {
        match self {
            VerifyKey::Hs256(_) => "HS256",
            VerifyKey::Ed25519(_) => "EdDSA",
        }
    }
}

/// Checks tokens for one service.
#[derive(Clone)]
pub struct Verifier {
    key: VerifyKey,
    issuer: String,
    audience: String,
    leeway_s: i64,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("Verifier")
            .field("alg", &self.key.alg())
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
    crit: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct Claims {
    iss: Option<String>,
    sub: Option<String>,
    #[serde(default)]
    aud: Option<serde_json::Value>,
    exp: Option<i64>,
    nbf: Option<i64>,
    role: Option<Role>,
    #[serde(default)]
    manager_id: Option<String>,
    #[serde(default)]
    team: Option<String>,
    #[serde(default)]
    commands: Vec<String>,
    #[serde(default)]
    acts_for_persons: bool,
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
            key,
            issuer: issuer.into(),
            audience: audience.into(),
            leeway_s: 30,
        })
    }

    /// The verifier configured by the environment: `CRM_AUTH_ISSUER`,
    /// `CRM_AUTH_AUDIENCE` (default: `service_audience`), and either
    /// `CRM_AUTH_HS256_SECRET` or `CRM_AUTH_ED25519_PUBLIC_KEY` (hex). `Ok(None)` when
    /// `CRM_AUTH=off` (tests, the embedded demo); an error when neither is configured,
    /// so a service never runs open by accident.
    pub fn from_env(service_audience: &str) -> Result<Option<Self>, String> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        if var("CRM_AUTH").as_deref() == Some("off") {
            return Ok(None);
        }
        let key = match (
            var("CRM_AUTH_HS256_SECRET"),
            var("CRM_AUTH_ED25519_PUBLIC_KEY"),
        ) {
            (Some(secret), None) => VerifyKey::Hs256(secret.into_bytes()),
            (None, Some(public)) => VerifyKey::Ed25519(
                hex_decode(&public).ok_or("CRM_AUTH_ED25519_PUBLIC_KEY is not hex")?,
            ),
            (Some(_), Some(_)) => {
                return Err(
                    "set one of CRM_AUTH_HS256_SECRET and CRM_AUTH_ED25519_PUBLIC_KEY".into(),
                )
            }
            (None, None) => {
                return Err(
                    "authentication is not configured: set CRM_AUTH_HS256_SECRET or \
                            CRM_AUTH_ED25519_PUBLIC_KEY (and CRM_AUTH_ISSUER), or CRM_AUTH=off \
                            to run without it (development only)"
                        .into(),
                )
            }
        };
        let issuer = var("CRM_AUTH_ISSUER").ok_or("CRM_AUTH_ISSUER is not set")?;
        let audience = var("CRM_AUTH_AUDIENCE").unwrap_or_else(|| service_audience.to_string());
        Self::new(key, issuer, audience).map(Some)
    }

    /// Verify a token (without `Bearer `) at Unix time `now`.
    pub fn verify(&self, token: &str, now: i64) -> Result<Principal, AuthError> {
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(AuthError::Malformed("not three dot-separated parts"));
        };
        let header: Header = decode_json(h).ok_or(AuthError::Malformed("header"))?;
        // Pinned: the configured algorithm only, decided before looking at the signature.
        if header.alg != self.key.alg() {
            return Err(AuthError::Algorithm(header.alg));
        }
        if header.crit.is_some() {
            return Err(AuthError::Malformed(
                "critical header extensions are not supported",
            ));
        }
        let signature = URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|_| AuthError::Malformed("signature"))?;
        let signed = &token.as_bytes()[..h.len() + 1 + p.len()];
        let ok = match &self.key {
            VerifyKey::Hs256(secret) => {
                let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
                ring::hmac::verify(&key, signed, &signature).is_ok()
            }
            VerifyKey::Ed25519(public) => {
                ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, public)
                    .verify(signed, &signature)
                    .is_ok()
            }
        };
        if !ok {
            return Err(AuthError::Signature);
        }
        let claims: Claims = decode_json(p).ok_or(AuthError::Malformed("claims"))?;
        self.principal(claims, now)
    }

    /// The principal of a signed token's claims: valid now, for this issuer and audience,
    /// with a subject that can be an actor and the claims its role needs.
    fn principal(&self, claims: Claims, now: i64) -> Result<Principal, AuthError> {
        let exp = claims
            .exp
            .ok_or(AuthError::Claims("exp is required".into()))?;
        if now > exp + self.leeway_s {
            return Err(AuthError::Expired);
        }
        if claims.nbf.is_some_and(|nbf| now + self.leeway_s < nbf) {
            return Err(AuthError::NotYetValid);
        }
        if claims.iss.as_deref() != Some(self.issuer.as_str()) {
            let iss = claims.iss.unwrap_or_default();
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
        let role = claims
            .role
            .ok_or(AuthError::Claims("role is required".into()))?;
        if role == Role::Manager && claims.manager_id.is_none() {
            return Err(AuthError::Claims(
                "a manager's token names its manager_id".into(),
            ));
        }
        Ok(Principal {
            subject,
            role,
            manager_id: claims.manager_id,
            team: claims.team,
            commands: claims.commands,
            acts_for_persons: role == Role::Service && claims.acts_for_persons,
        })
    }

    /// Verify the value of an `Authorization` header.
    pub fn verify_header(&self, header: Option<&str>, now: i64) -> Result<Principal, AuthError> {
        let token = header
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .ok_or(AuthError::Missing)?;
        self.verify(token.trim(), now)
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

fn hex_decode(s: &str) -> Option<Vec<u8>> {
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

    #[test]
    fn a_good_token_names_its_principal() {
        let p = verifier()
            .verify(&sign_hs256(SECRET, &claims()), NOW)
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

    #[test]
    fn a_subject_that_cannot_be_an_actor_is_refused() {
        let v = verifier();
        for sub in ["li wei", "\u{1b}[2Jadmin", "a\u{0}b", "x via service:y"] {
            let token = with(|c| c["sub"] = json!(sub));
            assert!(
                matches!(v.verify(&token, NOW), Err(AuthError::Claims(_))),
                "{sub:?}"
            );
        }
        let token = with(|c| c["iss"] = json!("evil\n\u{1b}[2J"));
        let e = v.verify(&token, NOW).unwrap_err();
        assert!(!e.to_string().chars().any(char::is_control), "{e}");
    }

    #[test]
    fn an_examples_placeholder_secret_is_refused() {
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

    #[test]
    fn every_bad_token_is_refused() {
        let v = verifier();
        let expired = with(|c| c["exp"] = json!(NOW - 31));
        assert_eq!(v.verify(&expired, NOW), Err(AuthError::Expired));
        let early = with(|c| c["nbf"] = json!(NOW + 60));
        assert_eq!(v.verify(&early, NOW), Err(AuthError::NotYetValid));
        let issuer = with(|c| c["iss"] = json!("someone-else"));
        assert!(matches!(v.verify(&issuer, NOW), Err(AuthError::Issuer(_))));
        let audience = with(|c| c["aud"] = json!(["crm-commands"]));
        assert_eq!(v.verify(&audience, NOW), Err(AuthError::Audience));
        let no_exp = with(|c| {
            c.as_object_mut().unwrap().remove("exp");
        });
        assert!(matches!(v.verify(&no_exp, NOW), Err(AuthError::Claims(_))));
        let no_manager = with(|c| {
            c.as_object_mut().unwrap().remove("manager_id");
        });
        assert!(matches!(
            v.verify(&no_manager, NOW),
            Err(AuthError::Claims(_))
        ));
        // Signed with another secret.
        let forged = sign_hs256(b"another secret, also 32 bytes long", &claims());
        assert_eq!(v.verify(&forged, NOW), Err(AuthError::Signature));
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
        assert_eq!(v.verify(&parts.join("."), NOW), Err(AuthError::Signature));
        // alg "none", and an algorithm other than the pinned one.
        let none = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#),
            URL_SAFE_NO_PAD.encode(claims().to_string())
        );
        assert_eq!(
            v.verify(&none, NOW),
            Err(AuthError::Algorithm("none".into()))
        );
        let ed = Verifier::new(VerifyKey::Ed25519(vec![7; 32]), "crm-idp", "crm-query").unwrap();
        assert_eq!(
            ed.verify(&good, NOW),
            Err(AuthError::Algorithm("HS256".into())),
            "an HS256 token is refused where EdDSA is pinned"
        );
        assert_eq!(v.verify_header(None, NOW), Err(AuthError::Missing));
        assert_eq!(
            v.verify_header(Some("Basic abc"), NOW),
            Err(AuthError::Missing)
        );
        assert!(matches!(v.verify("a.b", NOW), Err(AuthError::Malformed(_))));
    }

    #[test]
    fn ed25519_tokens_verify_with_the_public_key() {
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
        assert_eq!(v.verify(&token, NOW).unwrap().subject, "li.wei");
        let other = Verifier::new(VerifyKey::Ed25519(vec![7; 32]), "crm-idp", "crm-query").unwrap();
        assert_eq!(other.verify(&token, NOW), Err(AuthError::Signature));
    }

    #[test]
    fn services_send_only_their_commands() {
        let v = verifier();
        let token = with(|c| {
            c["role"] = json!("service");
            c["sub"] = json!("call-centre");
            c["commands"] = json!(["record_contact", "log_complaint"]);
        });
        let p = v.verify(&token, NOW).unwrap();
        assert_eq!(p.actor(), "service:call-centre");
        assert!(p.may_command("record_contact"));
        assert!(!p.may_command("assign_owner"));
        assert!(!p.is_person());
    }
}

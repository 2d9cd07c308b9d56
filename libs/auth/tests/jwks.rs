//! Sign-in through an identity provider: a local OpenID issuer (discovery document and
//! JWKS over HTTP) with keys generated here, rotated while the verifier runs.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use crm_auth::{AuthError, ClaimMap, JwksConfig, JwksSource, Role, Verifier};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ring::signature::KeyPair as _;
use serde_json::{json, Value};

const ISSUER: &str = "https://idp.bank.example/realms/crm";

/// A local issuer: `/.well-known/openid-configuration` and `/jwks`, whose keys the test
/// changes; counts the JWKS fetches.
struct Issuer {
    base: String,
    keys: Arc<Mutex<Value>>,
    fetches: Arc<AtomicUsize>,
    up: Arc<std::sync::atomic::AtomicBool>,
}

impl Issuer {
    async fn start(keys: Vec<Value>) -> Self {
        use axum::http::StatusCode;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let jwks = Arc::new(Mutex::new(json!({ "keys": keys })));
        let fetches = Arc::new(AtomicUsize::new(0));
        let up = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let discovery = json!({"issuer": base, "jwks_uri": format!("{base}/jwks")});
        let (k, f, u) = (jwks.clone(), fetches.clone(), up.clone());
        let app = axum::Router::new()
            .route(
                "/.well-known/openid-configuration",
                axum::routing::get(move || async move { axum::Json(discovery) }),
            )
            .route(
                "/jwks",
                axum::routing::get(move || async move {
                    f.fetch_add(1, Ordering::SeqCst);
                    if !u.load(Ordering::SeqCst) {
                        return Err(StatusCode::SERVICE_UNAVAILABLE);
                    }
                    Ok(axum::Json(k.lock().unwrap().clone()))
                }),
            );
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self {
            base,
            keys: jwks,
            fetches,
            up,
        }
    }

    fn publish(&self, keys: Vec<Value>) {
        *self.keys.lock().unwrap() = json!({ "keys": keys });
    }

    fn fetched(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }

    async fn verifier(&self, cooldown: Duration) -> Verifier {
        let config = JwksConfig {
            unknown_kid_cooldown: cooldown,
            ..JwksConfig::new(JwksSource::Discovery(self.base.clone()))
        };
        Verifier::from_provider(config, ISSUER, "crm-query")
            .await
            .unwrap()
    }
}

/// A signing key of the issuer's, and its public JWK.
struct Signer {
    kid: String,
    alg: Algorithm,
    key: EncodingKey,
    jwk: Value,
    /// The public key's bytes (for the algorithm-confusion forgery).
    public: Vec<u8>,
}

impl Signer {
    fn rsa(kid: &str) -> Self {
        use rsa::pkcs1::{EncodeRsaPrivateKey, EncodeRsaPublicKey};
        use rsa::traits::PublicKeyParts;
        let private = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).unwrap();
        let b64 = |b: Vec<u8>| URL_SAFE_NO_PAD.encode(b);
        Signer {
            kid: kid.into(),
            alg: Algorithm::RS256,
            key: EncodingKey::from_rsa_der(private.to_pkcs1_der().unwrap().as_bytes()),
            jwk: json!({"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
                        "n": b64(private.n().to_bytes_be()), "e": b64(private.e().to_bytes_be())}),
            public: private
                .to_public_key()
                .to_pkcs1_der()
                .unwrap()
                .as_bytes()
                .to_vec(),
        }
    }

    fn ec(kid: &str) -> Self {
        use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING as P256};
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&P256, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&P256, pkcs8.as_ref(), &rng).unwrap();
        let point = pair.public_key().as_ref().to_vec(); // 0x04 ‖ x ‖ y
        Signer {
            kid: kid.into(),
            alg: Algorithm::ES256,
            key: EncodingKey::from_ec_der(pkcs8.as_ref()),
            // No "alg": implied by the curve.
            jwk: json!({"kty": "EC", "kid": kid, "crv": "P-256",
                        "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
                        "y": URL_SAFE_NO_PAD.encode(&point[33..])}),
            public: point,
        }
    }

    fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.key).unwrap()
    }
}

/// An Ed25519 key signs through ring (its PKCS#8 carries the public key too).
fn ed25519(kid: &str) -> (Value, impl Fn(&Value) -> String) {
    use ring::signature::Ed25519KeyPair;
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new()).unwrap();
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
    let jwk = json!({"kty": "OKP", "kid": kid, "crv": "Ed25519", "alg": "EdDSA",
                     "x": URL_SAFE_NO_PAD.encode(pair.public_key().as_ref())});
    let kid = kid.to_string();
    let sign = move |claims: &Value| {
        let header = URL_SAFE_NO_PAD.encode(json!({"alg": "EdDSA", "kid": kid}).to_string());
        let signed = format!("{header}.{}", URL_SAFE_NO_PAD.encode(claims.to_string()));
        let sig = URL_SAFE_NO_PAD.encode(pair.sign(signed.as_bytes()));
        format!("{signed}.{sig}")
    };
    (jwk, sign)
}

fn now() -> i64 {
    crm_auth::now_unix()
}

fn claims() -> Value {
    json!({"iss": ISSUER, "aud": ["account", "crm-query"], "sub": "li.wei", "exp": now() + 300,
           "role": "manager", "manager_id": "m-1"})
}

#[tokio::test]
async fn tokens_of_every_provider_algorithm_sign_in() {
    let (rsa, ec) = (Signer::rsa("r1"), Signer::ec("e1"));
    let (ed_jwk, ed_sign) = ed25519("d1");
    let idp = Issuer::start(vec![rsa.jwk.clone(), ec.jwk.clone(), ed_jwk]).await;
    let v = idp.verifier(Duration::from_secs(10)).await;
    for token in [rsa.sign(&claims()), ec.sign(&claims()), ed_sign(&claims())] {
        let p = v.verify(&token, now()).await.unwrap();
        assert_eq!((p.subject.as_str(), p.role), ("li.wei", Role::Manager));
    }
    assert_eq!(idp.fetched(), 1, "keys are cached");
}

#[tokio::test]
async fn a_rotated_key_signs_in_without_a_restart_and_the_removed_one_is_refused() {
    let (old, new) = (Signer::rsa("2026-11"), Signer::rsa("2026-12"));
    let idp = Issuer::start(vec![old.jwk.clone()]).await;
    let v = idp.verifier(Duration::ZERO).await;
    assert!(v.verify(&old.sign(&claims()), now()).await.is_ok());
    // The provider rotates: the new key published, the old one removed.
    idp.publish(vec![new.jwk.clone()]);
    let p = v.verify(&new.sign(&claims()), now()).await;
    assert!(p.is_ok(), "the new key is fetched on first sight: {p:?}");
    assert_eq!(
        v.verify(&old.sign(&claims()), now()).await,
        Err(AuthError::UnknownKey("2026-11".into()))
    );
}

#[tokio::test]
async fn unknown_key_ids_fetch_at_most_once_per_cool_down() {
    let rsa = Signer::rsa("r1");
    let idp = Issuer::start(vec![rsa.jwk.clone()]).await;
    let v = idp.verifier(Duration::from_secs(60)).await;
    let before = idp.fetched();
    for i in 0..20 {
        let forged = Signer {
            kid: format!("invented-{i}"),
            ..Signer::ec("x")
        };
        assert!(matches!(
            v.verify(&forged.sign(&claims()), now()).await,
            Err(AuthError::UnknownKey(_))
        ));
    }
    assert_eq!(
        idp.fetched(),
        before,
        "fetched within the cool-down of the first fetch: none"
    );
    let no_kid = jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims(), &rsa.key).unwrap();
    assert_eq!(v.verify(&no_kid, now()).await, Err(AuthError::NoKeyId));
}

#[tokio::test]
async fn a_discovery_document_of_another_issuer_is_refused() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let doc =
        json!({"issuer": "https://idp.elsewhere.example", "jwks_uri": format!("{base}/jwks")});
    let app = axum::Router::new().route(
        "/.well-known/openid-configuration",
        axum::routing::get(move || async move { axum::Json(doc) }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let config = JwksConfig::new(JwksSource::Discovery(base));
    let e = Verifier::from_provider(config, ISSUER, "crm-query")
        .await
        .unwrap_err();
    assert!(e.contains("names the issuer"), "{e}");
}

#[tokio::test]
async fn the_provider_down_keeps_the_keys_held() {
    let rsa = Signer::rsa("r1");
    let idp = Issuer::start(vec![rsa.jwk.clone()]).await;
    let v = idp.verifier(Duration::ZERO).await;
    idp.up.store(false, Ordering::SeqCst);
    // An unknown key id makes it fetch; the fetch fails; the keys held still verify.
    let other = Signer::ec("e9");
    assert!(v.verify(&other.sign(&claims()), now()).await.is_err());
    assert!(idp.fetched() >= 2);
    assert!(v.verify(&rsa.sign(&claims()), now()).await.is_ok());
}

#[tokio::test]
async fn algorithm_confusion_and_bad_claims_are_refused() {
    let (rsa, ec) = (Signer::rsa("r1"), Signer::ec("e1"));
    let idp = Issuer::start(vec![rsa.jwk.clone(), ec.jwk.clone()]).await;
    let v = idp.verifier(Duration::from_secs(10)).await;
    // An HS256 token "signed" with the RSA public key as its secret, naming the RSA key.
    let header = URL_SAFE_NO_PAD.encode(json!({"alg": "HS256", "kid": "r1"}).to_string());
    let signed = format!("{header}.{}", URL_SAFE_NO_PAD.encode(claims().to_string()));
    let tag = ring::hmac::sign(
        &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &rsa.public),
        signed.as_bytes(),
    );
    let forged = format!("{signed}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()));
    assert_eq!(
        v.verify(&forged, now()).await,
        Err(AuthError::Algorithm("HS256".into()))
    );
    // An RS256 header on the EC key's id.
    let mixed = Signer {
        kid: "e1".into(),
        alg: rsa.alg,
        key: rsa.key.clone(),
        jwk: Value::Null,
        public: Vec::new(),
    };
    assert_eq!(
        v.verify(&mixed.sign(&claims()), now()).await,
        Err(AuthError::Algorithm("RS256".into()))
    );
    // A signature by a key that is not the provider's, under the provider's key id.
    let impostor = Signer {
        kid: "e1".into(),
        ..Signer::ec("e1")
    };
    assert_eq!(
        v.verify(&impostor.sign(&claims()), now()).await,
        Err(AuthError::Signature)
    );
    let mut c = claims();
    c["exp"] = json!(now() - 31);
    assert_eq!(
        v.verify(&rsa.sign(&c), now()).await,
        Err(AuthError::Expired)
    );
    let mut c = claims();
    c["aud"] = json!("crm-commands");
    assert_eq!(
        v.verify(&rsa.sign(&c), now()).await,
        Err(AuthError::Audience)
    );
    let mut c = claims();
    c["iss"] = json!("https://idp.elsewhere.example");
    assert!(matches!(
        v.verify(&rsa.sign(&c), now()).await,
        Err(AuthError::Issuer(_))
    ));
}

#[tokio::test]
async fn roles_and_scopes_are_read_where_the_provider_puts_them() {
    let rsa = Signer::rsa("r1");
    let idp = Issuer::start(vec![rsa.jwk.clone()]).await;
    let keycloak = ClaimMap {
        role: "/resource_access/crm/roles".into(),
        roles: vec![
            ("crm-service".into(), Role::Service),
            ("crm-manager".into(), Role::Manager),
        ],
        command_scope_prefix: Some("crm:".into()),
        ..ClaimMap::default()
    };
    let v = idp
        .verifier(Duration::from_secs(10))
        .await
        .with_claims(keycloak)
        .unwrap();
    let token = rsa.sign(&json!({
        "iss": ISSUER, "aud": "crm-query", "sub": "call-centre", "exp": now() + 60,
        "resource_access": {"crm": {"roles": ["crm-service", "uma_protection"]}},
        "scope": "openid crm:record_contact crm:log_complaint"}));
    let p = v.verify(&token, now()).await.unwrap();
    assert_eq!(p.role, Role::Service);
    assert!(p.may_command("record_contact") && p.may_command("log_complaint"));
    assert!(!p.may_command("assign_owner"));
    // The platform's own `role` claim means nothing under this mapping.
    let own = rsa.sign(
        &json!({"iss": ISSUER, "aud": "crm-query", "sub": "x", "exp": now() + 60,
                                "role": "admin"}),
    );
    assert!(matches!(
        v.verify(&own, now()).await,
        Err(AuthError::Claims(_))
    ));
}

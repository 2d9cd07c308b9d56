//! A local OpenID Connect provider for the sign-in tests: discovery document, JWKS
//! (P-256 keys generated here, rotatable), and the authorization-code flow with PKCE as
//! Keycloak or Entra ID run it (the authorization endpoint approves at once, as the
//! person the test chose), with knobs to misbehave the way a test needs.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{Form, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Json;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::signature::{EcdsaKeyPair, KeyPair as _, ECDSA_P256_SHA256_FIXED_SIGNING as P256};
use serde::Deserialize;
use serde_json::{json, Value};

/// One of the provider's keys: its id and pair.
pub struct IdpKey {
    pub kid: String,
    pair: EcdsaKeyPair,
}

impl IdpKey {
    pub fn generate(kid: &str) -> Self {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&P256, &rng).expect("a P-256 key");
        Self {
            kid: kid.into(),
            pair: EcdsaKeyPair::from_pkcs8(&P256, pkcs8.as_ref(), &rng).expect("its pair"),
        }
    }

    /// The public JWK.
    pub fn jwk(&self) -> Value {
        let point = self.pair.public_key().as_ref();
        json!({"kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": self.kid,
               "x": URL_SAFE_NO_PAD.encode(&point[1..33]), "y": URL_SAFE_NO_PAD.encode(&point[33..])})
    }

    /// An ES256 token (JWS signatures are r ‖ s, ring's fixed format).
    pub fn sign(&self, claims: &Value) -> String {
        let header = json!({"alg": "ES256", "typ": "JWT", "kid": self.kid});
        let b64 = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
        let signed = format!("{}.{}", b64(&header), b64(claims));
        let rng = ring::rand::SystemRandom::new();
        let sig = self.pair.sign(&rng, signed.as_bytes()).expect("signing");
        format!("{signed}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
    }
}

/// A code handed out and not yet redeemed.
struct Grant {
    client_id: String,
    redirect_uri: String,
    challenge: String,
    nonce: String,
}

struct Inner {
    issuer: String,
    key: IdpKey,
    /// The claims of the person the authorization endpoint signs in (beside iss, sub,
    /// aud, exp).
    person: Mutex<Value>,
    /// The access tokens' audience.
    audience: String,
    grants: Mutex<HashMap<String, Grant>>,
    /// Misbehaviour: ID tokens with another nonce.
    wrong_nonce: AtomicBool,
}

/// The provider, serving until dropped with the test's runtime.
#[derive(Clone)]
pub struct Idp {
    inner: Arc<Inner>,
}

impl Idp {
    /// Start on a free port; access tokens for `audience`, the person signed in `person`
    /// (claims: `sub`, `role`, `manager_id`, …).
    pub async fn start(audience: &str, person: Value) -> Idp {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a port");
        let issuer = format!(
            "http://{}/realms/bank",
            listener.local_addr().expect("addr")
        );
        let idp = Idp {
            inner: Arc::new(Inner {
                issuer,
                key: IdpKey::generate("idp-1"),
                person: Mutex::new(person),
                audience: audience.into(),
                grants: Mutex::new(HashMap::new()),
                wrong_nonce: AtomicBool::new(false),
            }),
        };
        let app = axum::Router::new()
            .route(
                "/realms/bank/.well-known/openid-configuration",
                axum::routing::get(discovery),
            )
            .route("/realms/bank/certs", axum::routing::get(certs))
            .route("/realms/bank/auth", axum::routing::get(authorize))
            .route("/realms/bank/token", axum::routing::post(token))
            .with_state(idp.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        idp
    }

    pub fn issuer(&self) -> String {
        self.inner.issuer.clone()
    }

    /// Who the next sign-in signs in as.
    pub fn sign_in_as(&self, person: Value) {
        *self.inner.person.lock().expect("lock") = person;
    }

    /// Misbehave: ID tokens carry a nonce other than the sign-in's.
    pub fn send_wrong_nonce(&self, on: bool) {
        self.inner.wrong_nonce.store(on, Ordering::SeqCst);
    }

    /// Codes handed out and not yet redeemed.
    pub fn open_grants(&self) -> usize {
        self.inner.grants.lock().expect("lock").len()
    }
}

async fn discovery(State(idp): State<Idp>) -> Json<Value> {
    let base = &idp.inner.issuer;
    Json(json!({
        "issuer": base,
        "jwks_uri": format!("{base}/certs"),
        "authorization_endpoint": format!("{base}/auth"),
        "token_endpoint": format!("{base}/token"),
        "code_challenge_methods_supported": ["S256"],
    }))
}

async fn certs(State(idp): State<Idp>) -> Json<Value> {
    Json(json!({"keys": [idp.inner.key.jwk()]}))
}

#[derive(Deserialize)]
struct AuthorizeQuery {
    response_type: String,
    client_id: String,
    redirect_uri: String,
    scope: String,
    state: String,
    nonce: String,
    code_challenge: String,
    code_challenge_method: String,
}

/// Approve at once, as the chosen person; refuse what a provider refuses.
async fn authorize(State(idp): State<Idp>, Query(q): Query<AuthorizeQuery>) -> Response {
    let ok = q.response_type == "code"
        && q.code_challenge_method == "S256"
        && q.scope.split(' ').any(|s| s == "openid")
        && q.code_challenge.len() == 43;
    if !ok {
        return (axum::http::StatusCode::BAD_REQUEST, "invalid_request").into_response();
    }
    let code = URL_SAFE_NO_PAD.encode(uuid::Uuid::new_v4().as_bytes());
    idp.inner.grants.lock().expect("lock").insert(
        code.clone(),
        Grant {
            client_id: q.client_id,
            redirect_uri: q.redirect_uri.clone(),
            challenge: q.code_challenge,
            nonce: q.nonce,
        },
    );
    let state = crm_auth::oidc::form_encode(&q.state);
    Redirect::to(&format!("{}?code={code}&state={state}", q.redirect_uri)).into_response()
}

#[derive(Deserialize)]
struct TokenForm {
    grant_type: String,
    code: String,
    redirect_uri: String,
    client_id: String,
    code_verifier: String,
}

fn refuse(error: &str, description: &str) -> Response {
    let body = json!({"error": error, "error_description": description});
    (axum::http::StatusCode::BAD_REQUEST, Json(body)).into_response()
}

/// Redeem a code once, for its client and redirect URI, with the PKCE verifier.
async fn token(State(idp): State<Idp>, Form(f): Form<TokenForm>) -> Response {
    let Some(grant) = idp.inner.grants.lock().expect("lock").remove(&f.code) else {
        return refuse("invalid_grant", "unknown or used code");
    };
    let digest = ring::digest::digest(&ring::digest::SHA256, f.code_verifier.as_bytes());
    if f.grant_type != "authorization_code"
        || f.client_id != grant.client_id
        || f.redirect_uri != grant.redirect_uri
    {
        return refuse("invalid_grant", "client or redirect_uri differs");
    }
    if URL_SAFE_NO_PAD.encode(digest.as_ref()) != grant.challenge {
        return refuse("invalid_grant", "PKCE verification failed");
    }
    let inner = &idp.inner;
    let now = chrono::Utc::now().timestamp();
    let person = inner.person.lock().expect("lock").clone();
    let mut access =
        json!({"iss": inner.issuer, "aud": inner.audience, "exp": now + 300, "iat": now});
    for (k, v) in person.as_object().into_iter().flatten() {
        access[k] = v.clone();
    }
    let nonce = if inner.wrong_nonce.load(Ordering::SeqCst) {
        "not-the-sign-ins".to_string()
    } else {
        grant.nonce
    };
    let id = json!({"iss": inner.issuer, "aud": grant.client_id, "sub": person["sub"],
                    "exp": now + 300, "iat": now, "nonce": nonce});
    Json(json!({
        "access_token": inner.key.sign(&access),
        "id_token": inner.key.sign(&id),
        "token_type": "Bearer",
        "expires_in": 300,
    }))
    .into_response()
}

//! The keys tokens are checked with: one configured key (HS256 for development and
//! `crm token`, or an Ed25519 public key), or the identity provider's JSON Web Key Set
//! (RFC 7517), fetched from its URL or found through the issuer's OpenID discovery
//! document, cached, and fetched again on a schedule and when a token names a key id
//! the cache does not hold (at most once per cool-down, so a caller inventing key ids
//! cannot make the service hammer the provider). A key rotation needs no restart: the
//! provider publishes the new key, the next token naming it brings it in, and a key the
//! provider removed is gone after the next fetch.
//!
//! Each key carries the one algorithm it verifies (the JWK's `alg`, else its type's:
//! RSA → RS256, P-256 → ES256, Ed25519 → EdDSA): a token whose header names another is
//! refused before its signature is looked at, so an HS256 token "signed" with an RSA
//! public key never verifies. Signatures are checked by `jsonwebtoken`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey};

use crate::AuthError;

/// A key and the algorithm it verifies.
#[derive(Clone)]
pub(crate) struct Key {
    pub alg: Algorithm,
    pub key: DecodingKey,
}

/// The algorithms a key set's keys may verify: the asymmetric ones an identity provider
/// signs with. (HS256 only ever comes from a configured secret, never from a JWKS.)
const PROVIDER_ALGORITHMS: [Algorithm; 5] = [
    Algorithm::RS256,
    Algorithm::PS256,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// Keys by key id.
#[derive(Clone, Default)]
pub(crate) struct KeySet {
    keys: HashMap<String, Key>,
}

impl KeySet {
    /// The signing keys of a JWKS document with a key id and an algorithm from
    /// [`PROVIDER_ALGORITHMS`]; others (encryption keys, symmetric keys, unknown types)
    /// are left out, and a set holding none is an error.
    pub fn parse(json: &[u8]) -> Result<Self, String> {
        let set: JwkSet =
            serde_json::from_slice(json).map_err(|e| format!("not a JWKS document: {e}"))?;
        let keys: HashMap<String, Key> = set
            .keys
            .iter()
            .filter_map(|jwk| Some((jwk.common.key_id.clone()?, signing_key(jwk)?)))
            .collect();
        if keys.is_empty() {
            return Err("the JWKS document holds no signing key with a key id (kid)".into());
        }
        Ok(Self { keys })
    }

    pub fn get(&self, kid: &str) -> Option<&Key> {
        self.keys.get(kid)
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether `other` holds the same key ids.
    fn same_ids(&self, other: &KeySet) -> bool {
        self.keys.len() == other.keys.len() && self.keys.keys().all(|k| other.keys.contains_key(k))
    }
}

fn signing_key(jwk: &Jwk) -> Option<Key> {
    if jwk
        .common
        .public_key_use
        .as_ref()
        .is_some_and(|u| *u != jsonwebtoken::jwk::PublicKeyUse::Signature)
    {
        return None;
    }
    let implied = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => Algorithm::ES256,
            EllipticCurve::P384 => Algorithm::ES384,
            _ => return None,
        },
        AlgorithmParameters::OctetKeyPair(okp) if okp.curve == EllipticCurve::Ed25519 => {
            Algorithm::EdDSA
        }
        _ => return None,
    };
    let alg = match jwk.common.key_algorithm {
        None => implied,
        Some(KeyAlgorithm::RS256) => Algorithm::RS256,
        Some(KeyAlgorithm::PS256) => Algorithm::PS256,
        Some(KeyAlgorithm::ES256) => Algorithm::ES256,
        Some(KeyAlgorithm::ES384) => Algorithm::ES384,
        Some(KeyAlgorithm::EdDSA) => Algorithm::EdDSA,
        Some(_) => return None,
    };
    let key = DecodingKey::from_jwk(jwk).ok()?;
    // The algorithm must belong to the key's type (no RS256 on an EC key).
    (PROVIDER_ALGORITHMS.contains(&alg) && key.family() == alg.family()).then_some(Key { alg, key })
}

/// Where the key set comes from.
#[derive(Debug, Clone)]
pub enum JwksSource {
    /// The JWKS document's URL.
    Url(String),
    /// An issuer's base URL: its `/.well-known/openid-configuration` names `jwks_uri`.
    Discovery(String),
}

/// How keys are fetched and kept.
#[derive(Debug, Clone)]
pub struct JwksConfig {
    pub source: JwksSource,
    /// Fetch again this often.
    pub refresh_every: Duration,
    /// At most one fetch per this long for key ids the cache does not hold.
    pub unknown_kid_cooldown: Duration,
    /// Give up on one fetch after this long.
    pub timeout: Duration,
}

impl JwksConfig {
    pub fn new(source: JwksSource) -> Self {
        Self {
            source,
            refresh_every: Duration::from_secs(300),
            unknown_kid_cooldown: Duration::from_secs(10),
            timeout: Duration::from_secs(5),
        }
    }
}

/// The identity provider's keys, cached.
pub(crate) struct KeyCache {
    config: JwksConfig,
    http: reqwest::Client,
    keys: RwLock<Arc<KeySet>>,
    /// Counts the changes of `keys` (tokens verified under older keys are checked again).
    generation: AtomicU64,
    /// When keys were last fetched (single flight: one fetch at a time).
    fetched: tokio::sync::Mutex<Instant>,
}

impl KeyCache {
    /// Fetch the keys once (an error if they cannot be had: a service that cannot
    /// check a token must not start), and keep them fresh in a background task.
    pub async fn start(config: JwksConfig) -> Result<Arc<Self>, String> {
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .build()
            .map_err(|e| format!("an HTTP client for the JWKS: {e}"))?;
        let keys = fetch(&http, &config.source).await?;
        let cache = Arc::new(Self {
            config,
            http,
            keys: RwLock::new(Arc::new(keys)),
            generation: AtomicU64::new(0),
            fetched: tokio::sync::Mutex::new(Instant::now()),
        });
        let weak = Arc::downgrade(&cache);
        let every = cache.config.refresh_every;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(cache) = weak.upgrade() else { break };
                cache.refresh(Duration::ZERO).await;
            }
        });
        Ok(cache)
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    fn current(&self) -> Arc<KeySet> {
        self.keys.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The key `kid` names: from the cache, else after one more fetch (if the last is
    /// older than the cool-down).
    pub async fn key(&self, kid: &str) -> Result<Key, AuthError> {
        if let Some(k) = self.current().get(kid) {
            return Ok(k.clone());
        }
        self.refresh(self.config.unknown_kid_cooldown).await;
        self.current()
            .get(kid)
            .cloned()
            .ok_or_else(|| AuthError::UnknownKey(crm_domain::text::escaped(kid).into_owned()))
    }

    /// Fetch the keys again unless they were fetched less than `unless_within` ago. A
    /// failed fetch keeps the keys held (and is logged): the provider being briefly
    /// down must not sign everyone out.
    async fn refresh(&self, unless_within: Duration) {
        let mut fetched = self.fetched.lock().await;
        if !unless_within.is_zero() && fetched.elapsed() < unless_within {
            return;
        }
        match fetch(&self.http, &self.config.source).await {
            Ok(keys) => {
                tracing::info!(keys = keys.len(), "identity provider keys fetched");
                let mut held = self.keys.write().unwrap_or_else(|e| e.into_inner());
                if !held.same_ids(&keys) {
                    self.generation.fetch_add(1, Ordering::AcqRel);
                }
                *held = Arc::new(keys);
            }
            Err(e) => {
                tracing::warn!(error = %e, "fetching the identity provider's keys failed; keeping the keys held")
            }
        }
        *fetched = Instant::now();
    }
}

async fn fetch(http: &reqwest::Client, source: &JwksSource) -> Result<KeySet, String> {
    let url = match source {
        JwksSource::Url(u) => u.clone(),
        JwksSource::Discovery(issuer) => {
            let doc = format!(
                "{}/.well-known/openid-configuration",
                issuer.trim_end_matches('/')
            );
            let body = get(http, &doc).await?;
            #[derive(serde::Deserialize)]
            struct Discovery {
                issuer: String,
                jwks_uri: String,
            }
            let found = serde_json::from_slice::<Discovery>(&body)
                .map_err(|e| format!("{doc}: no issuer and jwks_uri: {e}"))?;
            // OpenID Connect Discovery 1.0, 4.3: the document is the issuer's own.
            if found.issuer.trim_end_matches('/') != issuer.trim_end_matches('/') {
                return Err(format!(
                    "{doc} names the issuer {:?}, not {issuer:?}",
                    crm_domain::text::escaped(&found.issuer)
                ));
            }
            found.jwks_uri
        }
    };
    KeySet::parse(&get(http, &url).await?).map_err(|e| format!("{url}: {e}"))
}

async fn get(http: &reqwest::Client, url: &str) -> Result<Vec<u8>, String> {
    let response = http
        .get(url)
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .map_err(|e| format!("fetching {url}: {e}"))?;
    let body = response
        .bytes()
        .await
        .map_err(|e| format!("reading {url}: {e}"))?;
    Ok(body.to_vec())
}

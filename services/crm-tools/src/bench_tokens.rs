//! `crm bench tokens`: what verifying a bearer token costs, per algorithm, on every
//! request's path: HS256 and EdDSA with one configured key, and RS256, ES256 and EdDSA
//! through an identity provider's key set (served here by a local issuer, keys held).
//! One task: distinct tokens verified once each (the signature checked), then one token
//! verified again and again (a caller's next requests: the verified token is kept).

use std::time::Instant;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use crm_auth::{JwksConfig, JwksSource, Verifier, VerifyKey};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ring::signature::KeyPair as _;
use serde_json::{json, Value};

#[derive(Debug, clap::Args)]
pub struct TokenArgs {
    /// Distinct tokens per algorithm, each verified once.
    #[arg(long, default_value_t = 1_000)]
    tokens: usize,
    /// Verifications of one token again, per algorithm.
    #[arg(long, default_value_t = 20_000)]
    repeats: usize,
}

const ISSUER: &str = "crm-bench-idp";
const SECRET: &[u8] = b"a-benchmark-secret-of-32-bytes-!";

/// The claims of token `n`.
fn claims(n: usize) -> Value {
    json!({"iss": ISSUER, "aud": "crm-query", "sub": "li.wei", "role": "manager",
           "manager_id": "m-1", "exp": crm_auth::now_unix() + 3600, "jti": n})
}

/// ring's errors are not `std::error::Error`s.
fn ok<T, E: std::fmt::Debug>(r: Result<T, E>) -> anyhow::Result<T> {
    r.map_err(|e| anyhow::anyhow!("generating a key: {e:?}"))
}

fn jws(header: &Value, n: usize, sign: impl Fn(&[u8]) -> Vec<u8>) -> String {
    let b64 = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
    let signed = format!("{}.{}", b64(header), b64(&claims(n)));
    let sig = URL_SAFE_NO_PAD.encode(sign(signed.as_bytes()));
    format!("{signed}.{sig}")
}

/// A local issuer serving `keys` as its JWKS; its URL.
async fn issuer(keys: Vec<Value>) -> anyhow::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/certs", listener.local_addr()?);
    let doc = json!({ "keys": keys });
    let app = axum::Router::new().route(
        "/certs",
        axum::routing::get(move || async move { axum::Json(doc) }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(url)
}

/// `n` tokens each signed by an RSA, a P-256 and an Ed25519 key, and those keys' JWKs.
type Signed = Vec<(&'static str, Vec<String>)>;

fn provider_tokens(n: usize) -> anyhow::Result<(Signed, Vec<Value>)> {
    use ring::signature::{EcdsaKeyPair, Ed25519KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING as P256};
    use rsa::pkcs1::EncodeRsaPrivateKey;
    use rsa::traits::PublicKeyParts;
    let rng = ring::rand::SystemRandom::new();
    let b64 = |b: &[u8]| URL_SAFE_NO_PAD.encode(b);
    let rsa = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048)?;
    let rsa_key = EncodingKey::from_rsa_der(rsa.to_pkcs1_der()?.as_bytes());
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("r".into());
    let rs256 = (0..n)
        .map(|i| jsonwebtoken::encode(&header, &claims(i), &rsa_key))
        .collect::<Result<_, _>>()?;
    let ec = ok(EcdsaKeyPair::from_pkcs8(
        &P256,
        ok(EcdsaKeyPair::generate_pkcs8(&P256, &rng))?.as_ref(),
        &rng,
    ))?;
    let es = json!({"alg": "ES256", "kid": "e"});
    let es256 = (0..n)
        .map(|i| {
            jws(&es, i, |m| {
                ec.sign(&rng, m).expect("sign").as_ref().to_vec()
            })
        })
        .collect();
    let ed = ok(Ed25519KeyPair::from_pkcs8(
        ok(Ed25519KeyPair::generate_pkcs8(&rng))?.as_ref(),
    ))?;
    let eh = json!({"alg": "EdDSA", "kid": "d"});
    let eddsa = (0..n)
        .map(|i| jws(&eh, i, |m| ed.sign(m).as_ref().to_vec()))
        .collect();
    let point = ec.public_key().as_ref();
    let keys = vec![
        json!({"kty": "RSA", "kid": "r", "alg": "RS256",
               "n": b64(&rsa.n().to_bytes_be()), "e": b64(&rsa.e().to_bytes_be())}),
        json!({"kty": "EC", "kid": "e", "crv": "P-256", "x": b64(&point[1..33]), "y": b64(&point[33..])}),
        json!({"kty": "OKP", "kid": "d", "crv": "Ed25519", "x": b64(ed.public_key().as_ref())}),
    ];
    let signed = vec![
        ("RS256 (identity provider's JWKS)", rs256),
        ("ES256 (identity provider's JWKS)", es256),
        ("EdDSA (identity provider's JWKS)", eddsa),
    ];
    Ok((signed, keys))
}

/// Each of `tokens` verified once, then the first `repeats` times more.
async fn time(what: &str, v: &Verifier, tokens: &[String], repeats: usize) -> anyhow::Result<()> {
    let check = |r: Result<crm_auth::Principal, crm_auth::AuthError>| {
        std::hint::black_box(r).map_err(|e| anyhow::anyhow!("{what}: {e}"))
    };
    let started = Instant::now();
    for t in tokens {
        check(v.verify(t, crm_auth::now_unix()).await)?;
    }
    let first = started.elapsed().as_secs_f64() / tokens.len() as f64;
    let started = Instant::now();
    for _ in 0..repeats {
        check(v.verify(&tokens[0], crm_auth::now_unix()).await)?;
    }
    let again = started.elapsed().as_secs_f64() / repeats as f64;
    println!(
        "{what:<36} first use {:>7.1} µs ({:>7.0}/s on one core); again {:>5.2} µs",
        first * 1e6,
        1.0 / first,
        again * 1e6
    );
    Ok(())
}

pub async fn run(a: TokenArgs) -> anyhow::Result<()> {
    let n = a.tokens.max(1);
    println!(
        "token verification: {n} distinct tokens per algorithm, then one of them {} times",
        a.repeats
    );
    let hs = Verifier::new(VerifyKey::Hs256(SECRET.to_vec()), ISSUER, "crm-query")
        .map_err(anyhow::Error::msg)?;
    let tokens: Vec<String> = (0..n)
        .map(|i| crm_auth::sign_hs256(SECRET, &claims(i)))
        .collect();
    time("HS256 (one key)", &hs, &tokens, a.repeats).await?;
    let rng = ring::rand::SystemRandom::new();
    let ed = ok(ring::signature::Ed25519KeyPair::from_pkcs8(
        ok(ring::signature::Ed25519KeyPair::generate_pkcs8(&rng))?.as_ref(),
    ))?;
    let one_ed = Verifier::new(
        VerifyKey::Ed25519(ed.public_key().as_ref().to_vec()),
        ISSUER,
        "crm-query",
    )
    .map_err(anyhow::Error::msg)?;
    let header = json!({"alg": "EdDSA"});
    let tokens: Vec<String> = (0..n)
        .map(|i| jws(&header, i, |m| ed.sign(m).as_ref().to_vec()))
        .collect();
    time("EdDSA (one key)", &one_ed, &tokens, a.repeats).await?;
    let (signed, keys) = provider_tokens(n)?;
    let source = JwksSource::Url(issuer(keys).await?);
    let provider = Verifier::from_provider(JwksConfig::new(source), ISSUER, "crm-query")
        .await
        .map_err(anyhow::Error::msg)?;
    for (what, tokens) in signed {
        time(what, &provider, &tokens, a.repeats).await?;
    }
    Ok(())
}

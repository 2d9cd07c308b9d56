//! The workbench's session: the caller's access token in a cookie sealed with AES-256-GCM
//! (so any replica holding the key serves it, and the browser can neither read nor forge
//! it), and the CSRF token every form carries.
//!
//! Written on ring rather than taken from a session crate: the seal is twenty lines over
//! `ring::aead`, which the tree already has, and the session holds one token, not a store.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};

/// What the session cookie holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// The access token the pages verify on every request, as the API does.
    pub token: String,
    /// When the token expires (Unix seconds): the session ends with it.
    pub expires: i64,
    /// The secret of this session's CSRF tokens.
    pub csrf: String,
}

/// Seals and opens session cookies; derives CSRF tokens.
#[derive(Clone)]
pub struct Sealer {
    key: std::sync::Arc<LessSafeKey>,
    csrf_key: ring::hmac::Key,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer([key])")
    }
}

impl Sealer {
    /// From 32 secret bytes (the sealing and CSRF keys are derived from them apart).
    pub fn new(secret: &[u8; 32]) -> Self {
        let derive = |label: &[u8]| {
            let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
            ring::hmac::sign(&k, label)
        };
        let aead = derive(b"crm-workbench session v1");
        let key = UnboundKey::new(&AES_256_GCM, aead.as_ref()).expect("32 bytes");
        let csrf = derive(b"crm-workbench csrf v1");
        Self {
            key: std::sync::Arc::new(LessSafeKey::new(key)),
            csrf_key: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, csrf.as_ref()),
        }
    }

    /// From the `CRM_WORKBENCH_KEY` setting: 64 hex digits, not a placeholder copied from
    /// an example. The error never repeats the value.
    pub fn from_hex(hex: &str) -> Result<Self, String> {
        let hex = hex.trim();
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| {
                hex.get(i..i + 2)
                    .and_then(|b| u8::from_str_radix(b, 16).ok())
            })
            .collect::<Option<_>>()
            .filter(|_| hex.len() == 64)
            .ok_or("CRM_WORKBENCH_KEY must be 32 bytes as 64 hex digits (openssl rand -hex 32)")?;
        if crm_auth::is_placeholder(hex.as_bytes()) || bytes.iter().all(|b| *b == bytes[0]) {
            return Err(
                "CRM_WORKBENCH_KEY is a placeholder: generate one (openssl rand -hex 32)".into(),
            );
        }
        let mut key = [0u8; 32];
        key.copy_from_slice(&bytes);
        Ok(Self::new(&key))
    }

    /// A key of this process only: sessions end when it stops and are not shared.
    pub fn random() -> Self {
        Self::new(&random_bytes())
    }

    /// `value` sealed for the cookie `name` (the name is authenticated too, so one
    /// cookie's value cannot be replayed as another's).
    pub fn seal<T: Serialize>(&self, name: &str, value: &T) -> String {
        let mut data = serde_json::to_vec(value).expect("serializable");
        let nonce: [u8; NONCE_LEN] = random_bytes();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(name.as_bytes()),
                &mut data,
            )
            .expect("sealing cannot fail for a cookie-sized value");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&data);
        URL_SAFE_NO_PAD.encode(out)
    }

    /// The value of a cookie sealed by `seal` under the same name and key; `None` for
    /// anything else (tampered, another key, another cookie, garbage).
    pub fn open<T: for<'de> Deserialize<'de>>(&self, name: &str, sealed: &str) -> Option<T> {
        let raw = URL_SAFE_NO_PAD.decode(sealed).ok()?;
        if raw.len() < NONCE_LEN {
            return None;
        }
        let (nonce, data) = raw.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut data = data.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(name.as_bytes()), &mut data)
            .ok()?;
        serde_json::from_slice(plain).ok()
    }

    /// The CSRF token of forms for a session secret (or, before sign-in, the pre-session
    /// cookie's value): an HMAC, so the page can print it without printing the secret.
    pub fn csrf_token(&self, secret: &str) -> String {
        URL_SAFE_NO_PAD.encode(ring::hmac::sign(&self.csrf_key, secret.as_bytes()))
    }

    /// Whether `token` is the CSRF token of `secret` (constant time).
    pub fn csrf_ok(&self, secret: &str, token: &str) -> bool {
        let Ok(tag) = URL_SAFE_NO_PAD.decode(token) else {
            return false;
        };
        ring::hmac::verify(&self.csrf_key, secret.as_bytes(), &tag).is_ok()
    }
}

/// `N` random bytes from the operating system.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    SystemRandom::new()
        .fill(&mut b)
        .expect("the system's random source");
    b
}

/// A fresh random secret, as text (session CSRF secrets, PKCE verifiers).
pub fn random_secret() -> String {
    URL_SAFE_NO_PAD.encode(random_bytes::<32>())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> Session {
        Session {
            token: "eyJ.token.sig".into(),
            expires: 1_900_000_000,
            csrf: random_secret(),
        }
    }

    #[test]
    fn a_sealed_session_opens_with_its_key_and_name_only() {
        let a = Sealer::new(&[7; 32]);
        let s = session();
        let sealed = a.seal("crm-session", &s);
        assert!(
            !sealed.contains("eyJ"),
            "the token is not readable in the cookie"
        );
        assert_eq!(a.open::<Session>("crm-session", &sealed), Some(s));
        assert_eq!(
            Sealer::new(&[8; 32]).open::<Session>("crm-session", &sealed),
            None
        );
        assert_eq!(a.open::<Session>("crm-other", &sealed), None);
    }

    #[test]
    fn any_changed_byte_is_refused() {
        let a = Sealer::new(&[7; 32]);
        let sealed = URL_SAFE_NO_PAD.decode(a.seal("c", &session())).unwrap();
        for i in 0..sealed.len() {
            let mut t = sealed.clone();
            t[i] ^= 1;
            assert_eq!(
                a.open::<Session>("c", &URL_SAFE_NO_PAD.encode(&t)),
                None,
                "byte {i}"
            );
        }
        assert_eq!(a.open::<Session>("c", "not base64 at all!"), None);
        assert_eq!(a.open::<Session>("c", ""), None);
    }

    #[test]
    fn the_key_setting_is_64_hex_digits_and_not_a_placeholder() {
        let good = "8f2b6c1d9e0a47b3c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c";
        let a = Sealer::from_hex(good).unwrap();
        let b = Sealer::from_hex(good).unwrap();
        let s = session();
        assert_eq!(
            b.open::<Session>("c", &a.seal("c", &s)),
            Some(s),
            "two replicas with one key open each other's cookies"
        );
        for bad in [
            "",
            "abc",
            &good[..62],
            &format!("{good}00"),
            &"0".repeat(64),
            &"zz".repeat(32),
        ] {
            let e = Sealer::from_hex(bad).unwrap_err();
            assert!(e.contains("CRM_WORKBENCH_KEY"), "{e}");
            assert!(
                bad.len() < 8 || !e.contains(bad),
                "the error repeats the value: {e}"
            );
        }
    }

    #[test]
    fn two_seals_of_one_value_differ() {
        let a = Sealer::new(&[7; 32]);
        let s = session();
        assert_ne!(a.seal("c", &s), a.seal("c", &s), "a fresh nonce each time");
    }

    #[test]
    fn csrf_tokens_belong_to_their_secret() {
        let a = Sealer::new(&[7; 32]);
        let t = a.csrf_token("secret-1");
        assert!(a.csrf_ok("secret-1", &t));
        assert!(!a.csrf_ok("secret-2", &t));
        assert!(!Sealer::new(&[9; 32]).csrf_ok("secret-1", &t));
        assert!(!a.csrf_ok("secret-1", ""));
        assert!(!a.csrf_ok("secret-1", "garbage"));
    }
}

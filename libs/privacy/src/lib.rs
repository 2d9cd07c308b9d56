//! Personal data at rest: crypto-shredding.
//!
//! Every customer (data subject) has its own 256-bit key in the event store
//! (`subject_keys`). The personal fields of its events
//! (`crm_domain::customer::personal::fields`) are stored encrypted with it
//! (ChaCha20-Poly1305, a random 96-bit nonce per value, the subject and field name as
//! associated data), as the text `enc:v1:<base64url(nonce ‖ ciphertext ‖ tag)>`. The
//! rest of the event stays in clear: ids, owners, times, stages, amounts.
//!
//! Erasure destroys the key. The ciphertext stays where it is (events, hash chains,
//! JetStream messages, read models, exports) and can never be read again; the history,
//! KPIs and hash chains are untouched. Where the key is not available at all (an audit
//! export carries none) personal fields read as `[withheld]`; once erased, as `[erased]`.
//!
//! Who encrypts: the command handler, before an append ([`Vault::seal`]). Who decrypts:
//! the command handler when it loads a customer, and the query service when a person
//! asks for personal data ([`Vault::open`], [`Vault::reveal`]).
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use crm_domain::customer::personal;
use crm_eventstore::{EventStore, NewEvent, StoreError, SubjectKey};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use serde_json::Value;

/// How every encrypted value starts.
pub const SEALED_PREFIX: &str = "enc:v1:";

#[derive(Debug, thiserror::Error)]
pub enum PrivacyError {
    #[error("event store: {0}")]
    Store(#[from] StoreError),
    #[error("the personal data of {0} was erased")]
    Erased(String),
    #[error("the system's random number generator failed")]
    Random,
    #[error("the stored key of {0} is not a 256-bit key")]
    BadKey(String),
    #[error(
        "field {field} of {subject} does not decrypt: altered, or encrypted for another customer"
    )]
    Undecryptable { subject: String, field: String },
}

/// Whether a text is an encrypted value.
pub fn is_sealed(text: &str) -> bool {
    text.starts_with(SEALED_PREFIX)
}

/// Keys by subject, and the cryptography around them. Cheap to share (`Arc`).
pub struct Vault<S> {
    store: S,
    rng: SystemRandom,
    /// Active keys recently read, with when they were read; dropped after `ttl`, so an
    /// erasure made by another process takes effect here within `ttl`.
    cache: Mutex<HashMap<String, (Arc<LessSafeKey>, Instant)>>,
    ttl: Duration,
}

const CACHE_MAX: usize = 100_000;

/// What [`Vault::open`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opened {
    /// No personal field was encrypted (none present, or none in this event type).
    Clear,
    /// Every personal field was decrypted.
    Revealed,
    /// The subject's data was erased: personal fields read as `[erased]`.
    Erased,
    /// No key here (an export): personal fields read as `[withheld]`.
    Withheld,
}

/// Whether a subject is expected to have a key when its events are sealed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyExpected {
    /// It may: look it up, and create it only if absent.
    Maybe,
    /// It is not (its stream has no events): create it at once.
    None,
}
impl<S: EventStore> Vault<S> {
    /// `ttl`: how long a key read from the store is reused (zero: read every time).
    pub fn new(store: S, ttl: Duration) -> Self {
        Self {
            store,
            rng: SystemRandom::new(),
            cache: Mutex::new(HashMap::new()),
            ttl,
        }
    }

    fn cached(&self, subject: &str) -> Option<Arc<LessSafeKey>> {
        let cache = self.cache.lock().expect("vault cache");
        cache
            .get(subject)
            .filter(|(_, at)| at.elapsed() < self.ttl)
            .map(|(k, _)| k.clone())
    }

    fn remember(&self, subject: &str, key: Arc<LessSafeKey>) {
        if self.ttl.is_zero() {
            return;
        }
        let mut cache = self.cache.lock().expect("vault cache");
        if cache.len() >= CACHE_MAX {
            cache.clear();
        }
        cache.insert(subject.to_string(), (key, Instant::now()));
    }

    fn unbound(subject: &str, bytes: &[u8]) -> Result<Arc<LessSafeKey>, PrivacyError> {
        UnboundKey::new(&CHACHA20_POLY1305, bytes)
            .map(|k| Arc::new(LessSafeKey::new(k)))
            .map_err(|_| PrivacyError::BadKey(subject.to_string()))
    }

    /// The subject's key as stored: `Ok(None)` when absent.
    async fn key(&self, subject: &str) -> Result<Option<Arc<LessSafeKey>>, PrivacyError> {
        if let Some(k) = self.cached(subject) {
            return Ok(Some(k));
        }
        match self.store.subject_key(subject).await? {
            SubjectKey::Active(bytes) => {
                let key = Self::unbound(subject, &bytes)?;
                self.remember(subject, key.clone());
                Ok(Some(key))
            }
            SubjectKey::Absent => Ok(None),
            SubjectKey::Erased => Err(PrivacyError::Erased(subject.to_string())),
        }
    }

    /// The subject's key, created on first use.
    async fn key_for_writing(
        &self,
        subject: &str,
        expected: KeyExpected,
    ) -> Result<Arc<LessSafeKey>, PrivacyError> {
        if let Some(k) = self.cached(subject) {
            return Ok(k);
        }
        if expected == KeyExpected::Maybe {
            if let Some(k) = self.key(subject).await? {
                return Ok(k);
            }
        }
        let mut fresh = [0u8; 32];
        self.rng
            .fill(&mut fresh)
            .map_err(|_| PrivacyError::Random)?;
        match self.store.create_subject_key(subject, &fresh).await? {
            SubjectKey::Active(bytes) => {
                let key = Self::unbound(subject, &bytes)?;
                self.remember(subject, key.clone());
                Ok(key)
            }
            SubjectKey::Erased => Err(PrivacyError::Erased(subject.to_string())),
            SubjectKey::Absent => Err(StoreError::Failed(format!(
                "the key of {subject} was stored but cannot be read back"
            ))
            .into()),
        }
    }

    /// Encrypt the personal fields of events about to be appended to `subject`'s stream.
    /// Events without personal data need no key; with it, a subject whose data was
    /// erased is refused ([`PrivacyError::Erased`]).
    pub async fn seal(&self, subject: &str, events: &mut [NewEvent]) -> Result<(), PrivacyError> {
        self.seal_as(subject, events, KeyExpected::Maybe).await
    }

    /// As [`Vault::seal`], for a subject whose stream has no events yet (a registration):
    /// its key is created without being looked up first, one round trip instead of
    /// three. A key there after all (left by an attempt that failed, or erased) is what
    /// the store answers with, so the result is the same.
    pub async fn seal_new(
        &self,
        subject: &str,
        events: &mut [NewEvent],
    ) -> Result<(), PrivacyError> {
        self.seal_as(subject, events, KeyExpected::None).await
    }

    async fn seal_as(
        &self,
        subject: &str,
        events: &mut [NewEvent],
        expected: KeyExpected,
    ) -> Result<(), PrivacyError> {
        let needs_key = events.iter().any(|e| {
            personal::fields(&e.event_type)
                .iter()
                .any(|f| matches!(e.payload.get(*f), Some(Value::String(s)) if !is_sealed(s)))
        });
        if !needs_key {
            return Ok(());
        }
        let key = self.key_for_writing(subject, expected).await?;
        for e in events.iter_mut() {
            for field in personal::fields(&e.event_type) {
                if let Some(Value::String(text)) = e.payload.get_mut(*field) {
                    if !is_sealed(text) {
                        *text = self.encrypt(&key, subject, field, text)?;
                    }
                }
            }
        }
        Ok(())
    }

    fn encrypt(
        &self,
        key: &LessSafeKey,
        subject: &str,
        field: &str,
        text: &str,
    ) -> Result<String, PrivacyError> {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng
            .fill(&mut nonce)
            .map_err(|_| PrivacyError::Random)?;
        let mut buf = text.as_bytes().to_vec();
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad(subject, field)),
            &mut buf,
        )
        .map_err(|_| PrivacyError::Random)?;
        let mut out = Vec::with_capacity(NONCE_LEN + buf.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&buf);
        Ok(format!("{SEALED_PREFIX}{}", URL_SAFE_NO_PAD.encode(out)))
    }

    fn decrypt(
        key: &LessSafeKey,
        subject: &str,
        field: &str,
        sealed: &str,
    ) -> Result<String, PrivacyError> {
        let undecryptable = || PrivacyError::Undecryptable {
            subject: subject.to_string(),
            field: field.to_string(),
        };
        let bytes = URL_SAFE_NO_PAD
            .decode(&sealed[SEALED_PREFIX.len()..])
            .map_err(|_| undecryptable())?;
        if bytes.len() < NONCE_LEN {
            return Err(undecryptable());
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| undecryptable())?;
        let mut buf = ciphertext.to_vec();
        let plain = key
            .open_in_place(nonce, Aad::from(aad(subject, field)), &mut buf)
            .map_err(|_| undecryptable())?;
        String::from_utf8(plain.to_vec()).map_err(|_| undecryptable())
    }

    /// Decrypt the personal fields of a stored payload of `subject`, in place. Where the
    /// key was erased (or is not here) they read as `[erased]` (`[withheld]`), or null
    /// for optional fields.
    pub async fn open(
        &self,
        subject: &str,
        event_type: &str,
        payload: &mut Value,
    ) -> Result<Opened, PrivacyError> {
        let fields = personal::fields(event_type);
        let sealed = fields
            .iter()
            .any(|f| matches!(payload.get(*f), Some(Value::String(s)) if is_sealed(s)));
        if !sealed {
            return Ok(Opened::Clear);
        }
        let (key, unreadable) = match self.key(subject).await {
            Ok(Some(k)) => (Some(k), Opened::Revealed),
            Ok(None) => (None, Opened::Withheld),
            Err(PrivacyError::Erased(_)) => (None, Opened::Erased),
            Err(e) => return Err(e),
        };
        for field in fields {
            if let Some(value) = payload.get_mut(*field) {
                let Value::String(text) = value else { continue };
                if !is_sealed(text) {
                    continue;
                }
                *value = match &key {
                    Some(k) => Value::String(Self::decrypt(k, subject, field, text)?),
                    None => unreadable_value(field, unreadable),
                };
            }
        }
        Ok(unreadable)
    }

    /// One personal value kept elsewhere (a read-model column), decrypted; `[erased]` or
    /// `[withheld]` when it cannot be.
    pub async fn reveal(
        &self,
        subject: &str,
        field: &str,
        text: &str,
    ) -> Result<(String, Opened), PrivacyError> {
        if !is_sealed(text) {
            return Ok((text.to_string(), Opened::Clear));
        }
        match self.key(subject).await {
            Ok(Some(k)) => Ok((Self::decrypt(&k, subject, field, text)?, Opened::Revealed)),
            Ok(None) => Ok((personal::WITHHELD.to_string(), Opened::Withheld)),
            Err(PrivacyError::Erased(_)) => Ok((personal::ERASED.to_string(), Opened::Erased)),
            Err(e) => Err(e),
        }
    }

    /// Destroy the subject's key everywhere it is kept (the store, this process).
    pub async fn erase(&self, subject: &str) -> Result<(), PrivacyError> {
        self.cache.lock().expect("vault cache").remove(subject);
        self.store.erase_subject_key(subject).await?;
        Ok(())
    }
}

/// A keyed hash (HMAC-SHA-256, hex) of an identifying value, for the duplicate-check
/// index: equal values give equal hashes, and without `secret` the hash tells nothing.
pub fn blind_index(secret: &[u8], value: &str) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let tag = ring::hmac::sign(&key, value.as_bytes());
    tag.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

fn aad(subject: &str, field: &str) -> Vec<u8> {
    let mut a = Vec::with_capacity(subject.len() + field.len() + 1);
    a.extend_from_slice(subject.as_bytes());
    a.push(0);
    a.extend_from_slice(field.as_bytes());
    a
}

fn unreadable_value(field: &str, why: Opened) -> Value {
    if personal::optional(field) {
        Value::Null
    } else if why == Opened::Erased {
        Value::String(personal::ERASED.into())
    } else {
        Value::String(personal::WITHHELD.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crm_eventstore::testing::sqlite_store;
    use serde_json::json;

    fn registered(name: &str, phone: &str) -> NewEvent {
        NewEvent {
            event_id: uuid::Uuid::from_u128(7),
            event_type: "CustomerRegistered".into(),
            schema_version: 1,
            payload: json!({"customer_id": "c1", "display_name": name, "phone": phone, "email": null, "region": "east"}),
        }
    }

    #[tokio::test]
    async fn personal_fields_are_sealed_opened_and_erased() {
        let (store, _path) = sqlite_store().await;
        let vault = Vault::new(store.clone(), Duration::from_secs(60));
        let mut events = vec![registered("王芳 CANARY", "+8613800138000")];
        vault.seal("customer-c1", &mut events).await.unwrap();
        let stored = events[0].payload.clone();
        let text = stored.to_string();
        assert!(
            !text.contains("CANARY") && !text.contains("13800138000"),
            "{text}"
        );
        assert!(is_sealed(stored["display_name"].as_str().unwrap()));
        assert_eq!(stored["region"], "east", "the rest stays in clear");
        assert_eq!(stored["email"], Value::Null);
        // Sealing twice changes nothing; the same text twice gives different ciphertext.
        vault.seal("customer-c1", &mut events).await.unwrap();
        assert_eq!(events[0].payload, stored);
        let mut again = vec![registered("王芳 CANARY", "+8613800138000")];
        vault.seal("customer-c1", &mut again).await.unwrap();
        assert_ne!(again[0].payload["phone"], stored["phone"]);

        let mut p = stored.clone();
        assert_eq!(
            vault
                .open("customer-c1", "CustomerRegistered", &mut p)
                .await
                .unwrap(),
            Opened::Revealed
        );
        assert_eq!(p["display_name"], "王芳 CANARY");
        assert_eq!(p["phone"], "+8613800138000");
        // Bound to its customer and field: moved elsewhere, it does not decrypt.
        let mut moved = stored.clone();
        moved["display_name"] = stored["phone"].clone();
        assert!(matches!(
            vault
                .open("customer-c1", "CustomerRegistered", &mut moved)
                .await,
            Err(PrivacyError::Undecryptable { .. })
        ));

        // A process that never saw the key reads it from the store.
        let other = Vault::new(store.clone(), Duration::ZERO);
        let (name, how) = other
            .reveal(
                "customer-c1",
                "display_name",
                stored["display_name"].as_str().unwrap(),
            )
            .await
            .unwrap();
        assert_eq!((name.as_str(), how), ("王芳 CANARY", Opened::Revealed));

        vault.erase("customer-c1").await.unwrap();
        for v in [&vault, &other] {
            let mut p = stored.clone();
            assert_eq!(
                v.open("customer-c1", "CustomerRegistered", &mut p)
                    .await
                    .unwrap(),
                Opened::Erased
            );
            assert_eq!(p["display_name"], personal::ERASED);
            assert_eq!(p["phone"], Value::Null);
        }
        let mut late = vec![registered("new", "+8613900000000")];
        assert!(matches!(
            vault.seal("customer-c1", &mut late).await,
            Err(PrivacyError::Erased(_))
        ));
        // Another store without the key (an export) withholds.
        let (elsewhere, _p2) = sqlite_store().await;
        let mut p = stored.clone();
        let v = Vault::new(elsewhere, Duration::ZERO);
        assert_eq!(
            v.open("customer-c1", "CustomerRegistered", &mut p)
                .await
                .unwrap(),
            Opened::Withheld
        );
        assert_eq!(p["display_name"], personal::WITHHELD);
    }

    /// A registration's key is created without a look-up; where a key is there after all
    /// (left by an attempt that failed), that one is used, and an erased subject stays
    /// erased.
    #[tokio::test]
    async fn a_new_subject_gets_its_key_at_once_or_the_one_it_has() {
        let (store, _path) = sqlite_store().await;
        let vault = Vault::new(store.clone(), Duration::ZERO);
        let mut first = vec![registered("李娜", "+8613700000001")];
        vault.seal_new("customer-c1", &mut first).await.unwrap();
        let reader = Vault::new(store.clone(), Duration::ZERO);
        let mut p = first[0].payload.clone();
        reader
            .open("customer-c1", "CustomerRegistered", &mut p)
            .await
            .unwrap();
        assert_eq!(p["display_name"], "李娜");
        // Sealed again as if new (a retry after the first attempt's append failed): the
        // stored key, not a fresh one, so both decrypt.
        let mut retry = vec![registered("李娜 again", "+8613700000001")];
        vault.seal_new("customer-c1", &mut retry).await.unwrap();
        for e in [&first[0], &retry[0]] {
            let mut p = e.payload.clone();
            assert_eq!(
                reader
                    .open("customer-c1", "CustomerRegistered", &mut p)
                    .await
                    .unwrap(),
                Opened::Revealed
            );
        }
        vault.erase("customer-c1").await.unwrap();
        let mut late = vec![registered("new", "+8613900000000")];
        assert!(matches!(
            vault.seal_new("customer-c1", &mut late).await,
            Err(PrivacyError::Erased(_))
        ));
    }
}

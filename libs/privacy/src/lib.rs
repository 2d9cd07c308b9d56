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
//! Who encrypts: the command handler, before an append ([`Vault::seal`]). A subject's
//! first key is made by the seal that needs it and stored by the append of the events it
//! sealed, in the same transaction ([`crm_eventstore::NewSubjectKey`]): a key exists
//! exactly when something sealed with it was committed. Who decrypts:
//! the command handler when it loads a customer, and the query service when a person
//! asks for personal data ([`Vault::open`], [`Vault::reveal`]).
#![forbid(unsafe_code)]

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use crm_domain::customer::personal;
use crm_eventstore::{Append, NewEvent, NewSubjectKey, StoreError, SubjectKey, SubjectKeys};
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
    /// Subjects erased by this process: a key stored by an append that committed before
    /// the erasure, but reported after it ([`Vault::stored`]), is not kept.
    erased: Mutex<HashSet<String>>,
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
impl<S: SubjectKeys + Append> Vault<S> {
    /// `ttl`: how long a key read from the store is reused (zero: read every time).
    pub fn new(store: S, ttl: Duration) -> Self {
        Self {
            store,
            rng: SystemRandom::new(),
            cache: Mutex::new(HashMap::new()),
            ttl,
            erased: Mutex::new(HashSet::new()),
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

    /// The key to seal the subject's events with: the stored one, or a new one that the
    /// append must store with them.
    async fn key_for_writing(
        &self,
        subject: &str,
        expected: KeyExpected,
    ) -> Result<(Arc<LessSafeKey>, Option<NewSubjectKey>), PrivacyError> {
        if let Some(k) = self.cached(subject) {
            return Ok((k, None));
        }
        if expected == KeyExpected::Maybe {
            if let Some(k) = self.key(subject).await? {
                return Ok((k, None));
            }
        }
        let mut fresh = vec![0u8; 32];
        self.rng
            .fill(&mut fresh)
            .map_err(|_| PrivacyError::Random)?;
        let key = Self::unbound(subject, &fresh)?;
        Ok((
            key,
            Some(NewSubjectKey {
                subject: subject.to_string(),
                key: fresh,
            }),
        ))
    }

    /// Encrypt the personal fields of events about to be appended to `subject`'s stream.
    /// Events without personal data need no key; with it, a subject whose data was
    /// erased is refused ([`PrivacyError::Erased`]). A subject without a key gets a new
    /// one, answered here: the append must store it with these events
    /// ([`crm_eventstore::AppendRequest::new_keys`]), and refuses them if the subject has
    /// a key by then ([`crm_eventstore::Conflict::SubjectKeyExists`]: seal them again).
    pub async fn seal(
        &self,
        subject: &str,
        events: &mut [NewEvent],
    ) -> Result<Option<NewSubjectKey>, PrivacyError> {
        self.seal_as(subject, events, KeyExpected::Maybe).await
    }

    /// As [`Vault::seal`], for a subject whose stream has no events yet (a registration):
    /// a new key without a look-up first. A subject that has a key after all (one erased
    /// before it was registered, or stored without events by a version before keys
    /// travelled with the append) refuses the append, and the events are sealed again.
    pub async fn seal_new(
        &self,
        subject: &str,
        events: &mut [NewEvent],
    ) -> Result<Option<NewSubjectKey>, PrivacyError> {
        self.seal_as(subject, events, KeyExpected::None).await
    }

    /// A key [`Vault::seal`] made was stored (its append committed): keep it for the next
    /// seal and open. Answers `false` when this process has erased the subject since
    /// (the erasure's append came after, but finished first): the key is destroyed and
    /// not kept, and nothing decrypted with it should be either.
    pub fn stored(&self, key: &NewSubjectKey) -> bool {
        // Under the erasures' lock, which [`Vault::erase`] holds while it forgets the
        // key: a key is either kept before an erasure forgets it, or not kept at all.
        let erased = self.erased.lock().expect("vault erased");
        if erased.contains(&key.subject) {
            return false;
        }
        // Only a cache: a key it cannot keep is read from the store later.
        if let Ok(k) = Self::unbound(&key.subject, &key.key) {
            self.remember(&key.subject, k);
        }
        true
    }

    /// Whether this process has erased the subject.
    pub fn erased_here(&self, subject: &str) -> bool {
        self.erased.lock().expect("vault erased").contains(subject)
    }

    async fn seal_as(
        &self,
        subject: &str,
        events: &mut [NewEvent],
        expected: KeyExpected,
    ) -> Result<Option<NewSubjectKey>, PrivacyError> {
        let needs_key = events.iter().any(|e| {
            personal::fields(&e.event_type)
                .iter()
                .any(|f| matches!(e.payload.get(*f), Some(Value::String(s)) if !is_sealed(s)))
        });
        if !needs_key {
            return Ok(None);
        }
        let (key, new) = self.key_for_writing(subject, expected).await?;
        for e in events.iter_mut() {
            for field in personal::fields(&e.event_type) {
                if let Some(Value::String(text)) = e.payload.get_mut(*field) {
                    if !is_sealed(text) {
                        *text = self.encrypt(&key, subject, field, text)?;
                    }
                }
            }
        }
        Ok(new)
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
        {
            let mut erased = self.erased.lock().expect("vault erased");
            if erased.len() >= CACHE_MAX {
                erased.clear();
            }
            erased.insert(subject.to_string());
            self.cache.lock().expect("vault cache").remove(subject);
        }
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
    use crm_eventstore::{AppendError, AppendRequest, CommandMeta, Conflict, ExpectedVersion};
    use serde_json::json;

    /// A registration's append of `events` to `subject`'s stream, with the key their seal
    /// made.
    fn request(subject: &str, events: &[NewEvent], new: Option<NewSubjectKey>) -> AppendRequest {
        let id = uuid::Uuid::new_v4();
        let mut request = AppendRequest::new(CommandMeta {
            command_id: id,
            command_type: "register_customer".into(),
            correlation_id: id,
            causation_id: None,
            actor: "person:test".into(),
            issued_at: chrono::Utc::now(),
            fingerprint: id.to_string(),
        })
        .write(subject, ExpectedVersion::Any, events.to_vec());
        request.new_keys.extend(new);
        request
    }

    /// Append `events` to `subject`'s stream with the key their seal made, as the command
    /// handler does; then tell the vault it was stored.
    async fn append<S: SubjectKeys + Append>(
        vault: &Vault<S>,
        store: &S,
        subject: &str,
        events: &[NewEvent],
        new: Option<NewSubjectKey>,
    ) -> Result<(), AppendError> {
        store.append(request(subject, events, new.clone())).await?;
        if let Some(k) = &new {
            assert!(vault.stored(k));
        }
        Ok(())
    }

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
        let new = vault.seal("customer-c1", &mut events).await.unwrap();
        assert!(new.is_some(), "a first key, for the append to store");
        append(&vault, &store, "customer-c1", &events, new)
            .await
            .unwrap();
        let stored = events[0].payload.clone();
        let text = stored.to_string();
        assert!(
            !text.contains("CANARY") && !text.contains("13800138000"),
            "{text}"
        );
        assert!(is_sealed(stored["display_name"].as_str().unwrap()));
        assert_eq!(stored["region"], "east", "the rest stays in clear");
        assert_eq!(stored["email"], Value::Null);
        // Sealing twice changes nothing; the same text twice gives different ciphertext,
        // with the stored key.
        assert!(vault
            .seal("customer-c1", &mut events)
            .await
            .unwrap()
            .is_none());
        assert_eq!(events[0].payload, stored);
        let mut again = vec![registered("王芳 CANARY", "+8613800138000")];
        assert!(vault
            .seal("customer-c1", &mut again)
            .await
            .unwrap()
            .is_none());
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

    /// An erasure that finishes before the append of the key's first events is reported
    /// (the two raced in one process): the key is not kept, and the subject stays erased.
    #[tokio::test]
    async fn a_key_reported_stored_after_its_erasure_is_not_kept() {
        let (store, _path) = sqlite_store().await;
        let vault = Vault::new(store.clone(), Duration::from_secs(60));
        let mut first = vec![registered("李娜", "+8613700000001")];
        let new = vault
            .seal_new("customer-c1", &mut first)
            .await
            .unwrap()
            .expect("a first key");
        // Stored with its events, but not yet reported to the vault.
        store
            .append(request("customer-c1", &first, Some(new.clone())))
            .await
            .unwrap();
        vault.erase("customer-c1").await.unwrap();
        assert!(!vault.stored(&new), "reported after the erasure");
        let mut late = vec![registered("new", "+8613900000000")];
        assert!(matches!(
            vault.seal("customer-c1", &mut late).await,
            Err(PrivacyError::Erased(_))
        ));
        let mut p = first[0].payload.clone();
        assert_eq!(
            vault
                .open("customer-c1", "CustomerRegistered", &mut p)
                .await
                .unwrap(),
            Opened::Erased
        );
    }

    /// A registration's key is made without a look-up and stored by its append; a key
    /// stored meanwhile refuses that append (its events were sealed with another key),
    /// and sealed again they use the stored one. A refused append leaves no key.
    #[tokio::test]
    async fn a_new_subject_gets_its_key_with_its_first_events() {
        let (store, _path) = sqlite_store().await;
        let vault = Vault::new(store.clone(), Duration::ZERO);
        let mut first = vec![registered("李娜", "+8613700000001")];
        let new = vault.seal_new("customer-c1", &mut first).await.unwrap();
        assert_eq!(
            store.subject_key("customer-c1").await.unwrap(),
            SubjectKey::Absent,
            "nothing stored before the append"
        );
        // A racing writer seals as new too, with its own key.
        let mut racing = vec![registered("李娜 racing", "+8613700000001")];
        let racing_key = vault.seal_new("customer-c1", &mut racing).await.unwrap();
        append(&vault, &store, "customer-c1", &first, new)
            .await
            .unwrap();
        assert!(matches!(
            append(&vault, &store, "customer-c1", &racing, racing_key).await,
            Err(AppendError::Conflict(Conflict::SubjectKeyExists { .. }))
        ));
        // Sealed again (as the handler decides again): the stored key.
        let mut racing = vec![registered("李娜 racing", "+8613700000001")];
        assert!(vault
            .seal("customer-c1", &mut racing)
            .await
            .unwrap()
            .is_none());
        let reader = Vault::new(store.clone(), Duration::ZERO);
        for e in [&first[0], &racing[0]] {
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
            vault.seal("customer-c1", &mut late).await,
            Err(PrivacyError::Erased(_))
        ));
    }
}

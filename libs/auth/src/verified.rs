//! Tokens verified before. A caller sends the same bearer token with every request for
//! the token's lifetime, and checking an ES256 signature costs about 140 µs here
//! (`crm bench tokens`): the principal a token's signature and claims gave is kept,
//! keyed by the SHA-256 of the token's text, so a repeat costs a hash and a lookup. Only
//! the exact bytes verified before hit; expiry and not-before are checked again on
//! every use; a change of the identity provider's key set empties the cache (a token
//! signed by a removed key is refused at once); at capacity it is emptied too.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::Principal;

/// Entries kept at most (a few hundred bytes each).
const CAPACITY: usize = 10_000;

/// What a token's signature and claims gave.
#[derive(Clone)]
pub(crate) struct Checked {
    pub principal: Principal,
    pub exp: i64,
    pub nbf: Option<i64>,
}

#[derive(Default)]
pub(crate) struct Verified {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// The key set's generation the entries were verified under.
    generation: u64,
    tokens: HashMap<[u8; 32], Checked>,
}

pub(crate) type Digest = [u8; 32];

pub(crate) fn digest(token: &str) -> Digest {
    let d = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

impl Verified {
    pub fn get(&self, token: &Digest, generation: u64) -> Option<Checked> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        (inner.generation == generation)
            .then(|| inner.tokens.get(token).cloned())
            .flatten()
    }

    pub fn put(&self, token: Digest, generation: u64, checked: Checked) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if generation < inner.generation {
            // Verified under keys replaced since: not kept (generations only grow).
            return;
        }
        if inner.generation != generation || inner.tokens.len() >= CAPACITY {
            inner.tokens.clear();
            inner.generation = generation;
        }
        inner.tokens.insert(token, checked);
    }
}

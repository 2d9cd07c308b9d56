//! Aggregate states kept in memory between commands, with the stream version they are at.
//!
//! A cached state may be stale (another process wrote the stream): the append's expected
//! version catches that, the entry is dropped and the command decided again. After a
//! successful decision the new state is cached before the append completes, so commands
//! on the same customer pipeline instead of queueing; if the append fails the entry is
//! dropped and whoever decided on it conflicts and retries.

use std::collections::HashMap;
use std::sync::Mutex;

pub struct StateCache<T> {
    entries: Mutex<HashMap<String, (T, u64)>>,
    capacity: usize,
}

impl<T: Clone> StateCache<T> {
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
        }
    }

    pub fn get(&self, stream: &str) -> Option<(T, u64)> {
        self.lock().get(stream).cloned()
    }

    pub fn put(&self, stream: String, state: T, version: u64) {
        let mut entries = self.lock();
        if entries.len() >= self.capacity && !entries.contains_key(&stream) {
            // Cheap eviction: drop an arbitrary half. Misses only cost a stream read.
            let drop: Vec<String> = entries
                .keys()
                .take(self.capacity / 2 + 1)
                .cloned()
                .collect();
            for k in drop {
                entries.remove(&k);
            }
        }
        entries.insert(stream, (state, version));
    }

    pub fn remove(&self, stream: &str) {
        self.lock().remove(stream);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (T, u64)>> {
        // A panic while holding the lock cannot leave a half-written entry.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}

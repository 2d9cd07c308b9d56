//! Aggregate states kept in memory between commands, with the stream version they are at.
//!
//! A cached state may be stale (another process wrote the stream): the append's expected
//! version catches that, the entry is dropped and the command decided again. After a
//! successful decision the new state is cached before the append completes, so commands
//! on the same customer pipeline instead of queueing; if the append fails the entry is
//! dropped and whoever decided on it conflicts and retries.
//!
//! The cache holds at most `capacity` states and keeps the recently used ones: entries
//! live in two generations of half the capacity each. Puts and hits go to the young
//! generation; when it is full it becomes the old one and the previous old generation is
//! dropped whole. A state used at least once per half-capacity of other states therefore
//! stays; one not used since is read again from its stream (a miss costs one stream
//! read, never a wrong decision). States are shared (`Arc`), so a hit copies a pointer,
//! and the tables hold a pointer per entry rather than the state itself.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use crm_telemetry::names;

/// Where a stream stands: its version, and when its last event happened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Head {
    pub version: u64,
    /// The last event's `occurred_at`; `None` for a stream with no events. A new event
    /// of the stream is never dated before it.
    pub last_at: Option<DateTime<Utc>>,
}

impl Head {
    pub fn new(version: u64, last_at: Option<DateTime<Utc>>) -> Self {
        Self { version, last_at }
    }

    /// The instant a decision on this stream is made at: `now`, or the stream's last
    /// event's instant if a clock behind it (another instance's, a stepped-back one)
    /// would date the new events before it.
    pub fn decision_time(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        self.last_at.map_or(now, |last| now.max(last))
    }
}

type Entry<T> = (Arc<T>, Head);

pub struct StateCache<T> {
    generations: Mutex<Generations<T>>,
    /// Entries per generation: half the capacity.
    half: usize,
    /// The `aggregate` label of the lookup metric.
    aggregate: &'static str,
}

struct Generations<T> {
    young: HashMap<String, Entry<T>>,
    old: HashMap<String, Entry<T>>,
}

/// What [`StateCache::stats`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheStats {
    pub entries: usize,
    pub capacity: usize,
}

impl<T> StateCache<T> {
    /// At most `capacity` states (at least 2) of `aggregate`s (a metric label).
    pub fn new(capacity: usize, aggregate: &'static str) -> Self {
        Self {
            generations: Mutex::new(Generations {
                young: HashMap::new(),
                old: HashMap::new(),
            }),
            half: (capacity / 2).max(1),
            aggregate,
        }
    }

    pub fn get(&self, stream: &str) -> Option<(Arc<T>, Head)> {
        let found = self.lookup(stream);
        let result = if found.is_some() { "hit" } else { "miss" };
        metrics::counter!(names::STATE_CACHE_LOOKUPS_TOTAL, "aggregate" => self.aggregate, "result" => result)
            .increment(1);
        found
    }

    fn lookup(&self, stream: &str) -> Option<(Arc<T>, Head)> {
        let mut g = self.lock();
        if let Some(hit) = g.young.get(stream) {
            return Some(hit.clone());
        }
        let (key, entry) = g.old.remove_entry(stream)?;
        self.insert_young(&mut g, key, entry.clone());
        Some(entry)
    }

    pub fn put(&self, stream: String, state: Arc<T>, head: Head) {
        let mut g = self.lock();
        g.old.remove(&stream);
        self.insert_young(&mut g, stream, (state, head));
    }

    /// As [`StateCache::put`], unless the stream has an entry at this version or later
    /// (a later decision's).
    pub fn put_if_newer(&self, stream: String, state: Arc<T>, head: Head) {
        let mut g = self.lock();
        let cached = g.young.get(&stream).or_else(|| g.old.get(&stream));
        if cached.is_none_or(|(_, h)| h.version < head.version) {
            g.old.remove(&stream);
            self.insert_young(&mut g, stream, (state, head));
        }
    }

    pub fn remove(&self, stream: &str) {
        let mut g = self.lock();
        g.young.remove(stream);
        g.old.remove(stream);
    }

    pub fn stats(&self) -> CacheStats {
        let g = self.lock();
        CacheStats {
            entries: g.young.len() + g.old.len(),
            capacity: self.half * 2,
        }
    }

    fn insert_young(&self, g: &mut Generations<T>, stream: String, entry: Entry<T>) {
        if g.young.len() >= self.half && !g.young.contains_key(&stream) {
            // The young generation ages; the old one (unused since) is dropped. The new
            // young table starts at the old one's size, so a full cache does not regrow
            // its table from empty on every rotation.
            let mut fresh = std::mem::take(&mut g.old);
            fresh.clear();
            g.old = std::mem::replace(&mut g.young, fresh);
        }
        g.young.insert(stream, entry);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Generations<T>> {
        // A panic while holding the lock cannot leave a half-written entry.
        self.generations.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(i: usize) -> String {
        format!("customer-{i}")
    }

    #[test]
    fn a_state_in_use_survives_a_scan_of_others() {
        let cache = StateCache::new(100, "test");
        cache.put(key(0), Arc::new(0usize), Head::new(1, None));
        for i in 1..1_000 {
            cache.put(key(i), Arc::new(i), Head::new(1, None));
            if i % 40 == 0 {
                assert_eq!(cache.get(&key(0)).map(|(s, _)| *s), Some(0), "after {i}");
            }
        }
        assert!(
            cache.get(&key(1)).is_none(),
            "an old, unused state was dropped"
        );
        assert_eq!(
            cache.get(&key(999)).map(|(s, h)| (*s, h.version)),
            Some((999, 1))
        );
    }

    #[test]
    fn put_replaces_and_remove_forgets_in_both_generations() {
        let cache = StateCache::new(4, "test");
        cache.put(key(1), Arc::new("a"), Head::new(1, None));
        cache.put(key(2), Arc::new("b"), Head::new(1, None));
        cache.put(key(3), Arc::new("c"), Head::new(1, None)); // 1 and 2 are now old
        cache.put(key(1), Arc::new("a2"), Head::new(2, None));
        assert_eq!(
            cache.get(&key(1)).map(|(s, h)| (*s, h.version)),
            Some(("a2", 2))
        );
        cache.remove(&key(2));
        cache.remove(&key(3));
        assert!(cache.get(&key(2)).is_none());
        assert!(cache.get(&key(3)).is_none());
    }

    #[test]
    fn put_if_newer_keeps_a_later_entry_in_either_generation() {
        let cache = StateCache::new(8, "test");
        cache.put(key(1), Arc::new("later"), Head::new(2, None));
        cache.put(key(2), Arc::new("empty"), Head::new(0, None));
        cache.put(key(3), Arc::new("c"), Head::new(1, None));
        cache.put(key(4), Arc::new("d"), Head::new(1, None));
        cache.put(key(5), Arc::new("e"), Head::new(1, None)); // 1 to 4 are now old
        cache.put_if_newer(key(1), Arc::new("earlier"), Head::new(1, None));
        cache.put_if_newer(key(2), Arc::new("registered"), Head::new(1, None));
        cache.put_if_newer(key(3), Arc::new("same"), Head::new(1, None));
        cache.put_if_newer(key(6), Arc::new("new"), Head::new(1, None));
        let got = |i| cache.get(&key(i)).map(|(s, h)| (*s, h.version));
        assert_eq!(got(2), Some(("registered", 1)));
        assert_eq!(got(6), Some(("new", 1)));
        assert_eq!(got(1), Some(("later", 2)));
        assert_eq!(got(3), Some(("c", 1)));
    }

    #[test]
    fn a_decision_is_never_dated_before_the_streams_last_event() {
        let t = |s: i64| DateTime::<Utc>::from_timestamp(1_800_000_000 + s, 0).unwrap();
        assert_eq!(Head::new(0, None).decision_time(t(5)), t(5));
        assert_eq!(Head::new(3, Some(t(2))).decision_time(t(5)), t(5));
        // A clock behind the stream: the decision is made at the last event's instant.
        assert_eq!(Head::new(3, Some(t(9))).decision_time(t(5)), t(9));
    }

    #[derive(Debug, Clone)]
    enum Op {
        Get(u8),
        Put(u8, u64),
        Remove(u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u8..40).prop_map(Op::Get),
            (0u8..40, 0u64..1000).prop_map(|(k, v)| Op::Put(k, v)),
            (0u8..40).prop_map(Op::Remove),
        ]
    }

    proptest! {
        /// Never more than the capacity; a hit is always the last value put for that
        /// stream, never one removed since.
        #[test]
        fn bounded_and_never_stale(capacity in 2usize..20, ops in prop::collection::vec(op(), 1..400)) {
            let cache = StateCache::new(capacity, "test");
            let mut truth: HashMap<u8, u64> = HashMap::new();
            for op in ops {
                match op {
                    Op::Get(k) => {
                        if let Some((state, head)) = cache.get(&key(k as usize)) {
                            let version = head.version;
                            prop_assert_eq!(Some(&version), truth.get(&k));
                            prop_assert_eq!(*state, version);
                        }
                    }
                    Op::Put(k, v) => {
                        cache.put(key(k as usize), Arc::new(v), Head::new(v, None));
                        truth.insert(k, v);
                    }
                    Op::Remove(k) => {
                        cache.remove(&key(k as usize));
                        truth.remove(&k);
                    }
                }
                let stats = cache.stats();
                prop_assert!(stats.entries <= capacity.max(2), "{stats:?}");
            }
        }
    }
}

//! The decision half of an append, shared by every backend.
//!
//! A backend locks what a batch touches, reads the current state of those things into a
//! [`Snapshot`], and asks [`plan_batch`] which requests pass. Requests are judged in
//! order, each against the state left by the ones accepted before it, so a batch gives
//! exactly the result the same requests would give one transaction each. The backend
//! then writes what the [`Plan`] says. Keeping this pure means both backends enforce
//! identical rules, and the rules are unit-tested without a database.

use std::collections::{HashMap, HashSet};

use uuid::Uuid;

use crate::chain::{event_hash, ChainHash, ChainedFields};
use crate::error::Conflict;
use crate::model::{AppendOutcome, AppendRequest, CommandMeta, NewEvent, NewSubjectKey};

/// A command already appended: its fingerprint and its answer.
#[derive(Debug, Clone)]
pub struct StoredCommand {
    pub fingerprint: String,
    pub outcome: AppendOutcome,
}

/// The state, as of the locked transaction, of everything a batch touches.
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    pub stream_versions: HashMap<String, u64>,
    /// Chain hash of each stream's last event (absent: the stream is empty).
    pub stream_heads: HashMap<String, ChainHash>,
    pub commands: HashMap<Uuid, StoredCommand>,
    pub key_owners: HashMap<String, String>,
    pub counters: HashMap<String, i64>,
    /// Subjects (of the batch's new keys) that have a key, or had one, erased.
    pub keyed_subjects: HashSet<String>,
}

/// What happens to one request of the batch.
#[derive(Debug, Clone)]
pub enum Decision {
    /// Will be written; its events are `rows[first_row..first_row + count]`.
    Accept {
        first_row: usize,
        count: usize,
    },
    /// Already appended earlier: answer with the stored outcome.
    Duplicate(AppendOutcome),
    /// Same command id as an accepted request earlier in this batch.
    DuplicateOf(usize),
    Refuse(Conflict),
}

/// One event row to insert.
#[derive(Debug)]
pub struct PlannedRow<'a> {
    pub request: usize,
    pub stream_id: &'a str,
    pub stream_version: u64,
    pub event: &'a NewEvent,
    pub meta: &'a CommandMeta,
    /// The event's link in its stream's hash chain.
    pub chain_hash: ChainHash,
}

/// The writes of a batch.
#[derive(Debug)]
pub struct Plan<'a> {
    pub decisions: Vec<Decision>,
    pub rows: Vec<PlannedRow<'a>>,
    /// Final owner of each key claimed or released (None = freed).
    pub keys: HashMap<String, Option<String>>,
    /// Final value of each counter changed.
    pub counters: HashMap<String, i64>,
    /// Subjects' first keys, to store.
    pub new_keys: Vec<&'a NewSubjectKey>,
}

impl Plan<'_> {
    pub fn accepted(&self) -> impl Iterator<Item = usize> + '_ {
        self.decisions
            .iter()
            .enumerate()
            .filter_map(|(i, d)| matches!(d, Decision::Accept { .. }).then_some(i))
    }
}

/// Every stream, key and counter name the batch needs in its snapshot.
pub struct Touched {
    pub streams: Vec<String>,
    pub commands: Vec<Uuid>,
    pub keys: Vec<String>,
    pub counters: Vec<String>,
    /// Subjects of new keys: believed to have none.
    pub subjects: Vec<String>,
}

pub fn touched(requests: &[AppendRequest]) -> Touched {
    let mut streams = HashSet::new();
    let mut commands = HashSet::new();
    let mut keys = HashSet::new();
    let mut counters = HashSet::new();
    let mut subjects = HashSet::new();
    for r in requests {
        commands.insert(r.meta.command_id);
        for w in &r.writes {
            streams.insert(w.stream_id.clone());
        }
        for c in r.claims.iter().chain(&r.releases) {
            keys.insert(c.key.clone());
        }
        for c in &r.counters {
            counters.insert(c.key.clone());
        }
        for k in &r.new_keys {
            subjects.insert(k.subject.clone());
        }
    }
    let sorted = |s: HashSet<String>| {
        let mut v: Vec<String> = s.into_iter().collect();
        v.sort();
        v
    };
    Touched {
        streams: sorted(streams),
        commands: commands.into_iter().collect(),
        keys: sorted(keys),
        counters: sorted(counters),
        subjects: sorted(subjects),
    }
}

/// Judge each request in order against the snapshot and the requests accepted before it.
pub fn plan_batch<'a>(requests: &'a [AppendRequest], mut snap: Snapshot) -> Plan<'a> {
    let mut plan = Plan {
        decisions: Vec::with_capacity(requests.len()),
        rows: Vec::new(),
        keys: HashMap::new(),
        counters: HashMap::new(),
        new_keys: Vec::new(),
    };
    let mut accepted_ids: HashMap<Uuid, (usize, &str)> = HashMap::new();

    for (i, req) in requests.iter().enumerate() {
        let id = req.meta.command_id;
        if let Some(stored) = snap.commands.get(&id) {
            plan.decisions
                .push(if stored.fingerprint == req.meta.fingerprint {
                    Decision::Duplicate(AppendOutcome {
                        duplicate: true,
                        ..stored.outcome.clone()
                    })
                } else {
                    Decision::Refuse(Conflict::CommandIdReused { command_id: id })
                });
            continue;
        }
        if let Some(&(first, fingerprint)) = accepted_ids.get(&id) {
            plan.decisions.push(if fingerprint == req.meta.fingerprint {
                Decision::DuplicateOf(first)
            } else {
                Decision::Refuse(Conflict::CommandIdReused { command_id: id })
            });
            continue;
        }
        match check(req, &snap) {
            Err(conflict) => plan.decisions.push(Decision::Refuse(conflict)),
            Ok(()) => {
                let first_row = plan.rows.len();
                accept(i, req, &mut snap, &mut plan);
                accepted_ids.insert(id, (i, &req.meta.fingerprint));
                plan.decisions.push(Decision::Accept {
                    first_row,
                    count: plan.rows.len() - first_row,
                });
            }
        }
    }
    plan
}

/// Write request `i`'s effects into the plan, and into the snapshot the requests after it
/// are judged against.
fn accept<'a>(i: usize, req: &'a AppendRequest, snap: &mut Snapshot, plan: &mut Plan<'a>) {
    for w in &req.writes {
        let version = snap.stream_versions.entry(w.stream_id.clone()).or_insert(0);
        let head = snap
            .stream_heads
            .entry(w.stream_id.clone())
            .or_insert(ChainHash::GENESIS);
        for event in &w.events {
            *version += 1;
            *head = event_hash(
                head,
                &ChainedFields::planned(&w.stream_id, *version, event, &req.meta),
            );
            plan.rows.push(PlannedRow {
                request: i,
                stream_id: &w.stream_id,
                stream_version: *version,
                event,
                meta: &req.meta,
                chain_hash: *head,
            });
        }
    }
    for r in &req.releases {
        if snap.key_owners.get(&r.key) == Some(&r.owner) {
            snap.key_owners.remove(&r.key);
            plan.keys.insert(r.key.clone(), None);
        }
    }
    for c in &req.claims {
        snap.key_owners.insert(c.key.clone(), c.owner.clone());
        plan.keys.insert(c.key.clone(), Some(c.owner.clone()));
    }
    for c in &req.counters {
        let v = snap.counters.entry(c.key.clone()).or_insert(0);
        *v += c.delta;
        plan.counters.insert(c.key.clone(), *v);
    }
    for k in &req.new_keys {
        snap.keyed_subjects.insert(k.subject.clone());
        plan.new_keys.push(k);
    }
}

fn check(req: &AppendRequest, snap: &Snapshot) -> Result<(), Conflict> {
    if req.event_count() == 0 {
        return Err(Conflict::Empty);
    }
    for w in &req.writes {
        let actual = snap.stream_versions.get(&w.stream_id).copied().unwrap_or(0);
        if !w.expected.matches(actual) {
            return Err(Conflict::WrongExpectedVersion {
                stream_id: w.stream_id.clone(),
                expected: w.expected,
                actual,
            });
        }
    }
    for c in &req.claims {
        // A key released by this same request may be claimed by it again.
        let released_here = req
            .releases
            .iter()
            .any(|r| r.key == c.key && snap.key_owners.get(&c.key) == Some(&r.owner));
        match snap.key_owners.get(&c.key) {
            Some(owner) if owner != &c.owner && !released_here => {
                return Err(Conflict::DuplicateKey {
                    key: c.key.clone(),
                    owner: owner.clone(),
                })
            }
            _ => {}
        }
    }
    for (i, k) in req.new_keys.iter().enumerate() {
        let twice = req.new_keys[..i].iter().any(|o| o.subject == k.subject);
        if twice || snap.keyed_subjects.contains(&k.subject) {
            return Err(Conflict::SubjectKeyExists {
                subject: k.subject.clone(),
            });
        }
    }
    // Counters are checked on their combined effect, so a request that touches one key
    // twice is judged on where it ends.
    let mut after: HashMap<&str, i64> = HashMap::new();
    for c in &req.counters {
        let v = after
            .entry(c.key.as_str())
            .or_insert_with(|| snap.counters.get(&c.key).copied().unwrap_or(0));
        let before = *v;
        *v += c.delta;
        if let Some(max) = c.max {
            if c.delta > 0 && *v > max {
                return Err(Conflict::CounterLimit {
                    key: c.key.clone(),
                    value: before,
                    delta: c.delta,
                    max,
                });
            }
        }
    }
    Ok(())
}

/// Stable 64-bit name for an advisory lock (FNV-1a): the same name always maps to the
/// same lock in every process. Collisions only make two unrelated names share a lock.
pub fn lock_key(name: &str) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h as i64
}

/// The sorted, deduplicated advisory-lock keys for a batch.
pub fn lock_keys(requests: &[AppendRequest]) -> Vec<i64> {
    let mut keys: Vec<i64> = requests
        .iter()
        .flat_map(|r| r.lock_names())
        .map(|n| lock_key(&n))
        .collect();
    keys.sort_unstable();
    keys.dedup();
    keys
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;
    use crate::model::{CounterChange, ExpectedVersion, UniqueClaim};

    fn req(id: u128, stream: &str, expected: ExpectedVersion) -> AppendRequest {
        AppendRequest::new(CommandMeta {
            command_id: Uuid::from_u128(id),
            command_type: "t".into(),
            correlation_id: Uuid::from_u128(id),
            causation_id: None,
            actor: "person:test".into(),
            issued_at: Utc::now(),
            fingerprint: format!("f{id}"),
        })
        .write(
            stream,
            expected,
            vec![NewEvent {
                event_id: Uuid::from_u128(1000 + id),
                event_type: "E".into(),
                schema_version: 1,
                payload: serde_json::json!({}),
            }],
        )
    }

    #[test]
    fn requests_in_one_batch_see_each_other() {
        let reqs = vec![
            req(1, "a", ExpectedVersion::NoStream),
            req(2, "a", ExpectedVersion::NoStream),
            req(3, "a", ExpectedVersion::Exact(1)),
        ];
        let plan = plan_batch(&reqs, Snapshot::default());
        assert!(matches!(plan.decisions[0], Decision::Accept { .. }));
        assert!(matches!(
            plan.decisions[1],
            Decision::Refuse(Conflict::WrongExpectedVersion { actual: 1, .. })
        ));
        assert!(matches!(plan.decisions[2], Decision::Accept { .. }));
        assert_eq!(
            plan.rows
                .iter()
                .map(|r| r.stream_version)
                .collect::<Vec<_>>(),
            vec![1, 2]
        );
        // The second event chains from the first.
        fn fields<'r>(r: &'r PlannedRow<'r>) -> ChainedFields<'r> {
            ChainedFields::planned(r.stream_id, r.stream_version, r.event, r.meta)
        }
        assert_eq!(
            plan.rows[0].chain_hash,
            event_hash(&ChainHash::GENESIS, &fields(&plan.rows[0]))
        );
        assert_eq!(
            plan.rows[1].chain_hash,
            event_hash(&plan.rows[0].chain_hash, &fields(&plan.rows[1]))
        );
    }

    #[test]
    fn a_refused_request_leaves_keys_and_counters_alone() {
        let mut a = req(1, "a", ExpectedVersion::Exact(5));
        a.claims.push(UniqueClaim {
            key: "phone:1".into(),
            owner: "a".into(),
        });
        a.counters.push(CounterChange {
            key: "m".into(),
            delta: 1,
            max: Some(1),
        });
        let mut b = req(2, "b", ExpectedVersion::Any);
        b.claims.push(UniqueClaim {
            key: "phone:1".into(),
            owner: "b".into(),
        });
        b.counters.push(CounterChange {
            key: "m".into(),
            delta: 1,
            max: Some(1),
        });
        let mut c = req(3, "c", ExpectedVersion::Any);
        c.counters.push(CounterChange {
            key: "m".into(),
            delta: 1,
            max: Some(1),
        });
        let reqs = [a, b, c];
        let plan = plan_batch(&reqs, Snapshot::default());
        assert!(matches!(
            plan.decisions[0],
            Decision::Refuse(Conflict::WrongExpectedVersion { .. })
        ));
        assert!(matches!(plan.decisions[1], Decision::Accept { .. }));
        assert!(matches!(
            plan.decisions[2],
            Decision::Refuse(Conflict::CounterLimit { value: 1, .. })
        ));
        assert_eq!(plan.keys.get("phone:1"), Some(&Some("b".to_string())));
        assert_eq!(plan.counters.get("m"), Some(&1));
    }

    #[test]
    fn a_subject_gets_one_first_key() {
        let key = |subject: &str, byte: u8| NewSubjectKey {
            subject: subject.into(),
            key: vec![byte; 32],
        };
        let mut a = req(1, "a", ExpectedVersion::NoStream);
        a.new_keys.push(key("a", 1));
        // Refused (stream a exists by then): its key must not count.
        let mut refused = req(2, "a", ExpectedVersion::NoStream);
        refused.new_keys.push(key("b", 2));
        let mut b = req(3, "b", ExpectedVersion::NoStream);
        b.new_keys.push(key("b", 3));
        // A second first key for a subject keyed earlier in the batch, or stored.
        let mut again = req(4, "c", ExpectedVersion::NoStream);
        again.new_keys.push(key("a", 4));
        let mut stored = req(5, "d", ExpectedVersion::NoStream);
        stored.new_keys.push(key("erased", 5));
        let reqs = [a, refused, b, again, stored];
        let snap = Snapshot {
            keyed_subjects: HashSet::from(["erased".to_string()]),
            ..Snapshot::default()
        };
        let plan = plan_batch(&reqs, snap);
        assert!(matches!(plan.decisions[0], Decision::Accept { .. }));
        assert!(matches!(
            plan.decisions[1],
            Decision::Refuse(Conflict::WrongExpectedVersion { .. })
        ));
        assert!(matches!(plan.decisions[2], Decision::Accept { .. }));
        for refused in [3, 4] {
            assert!(matches!(
                plan.decisions[refused],
                Decision::Refuse(Conflict::SubjectKeyExists { .. })
            ));
        }
        let written: Vec<(&str, u8)> = plan
            .new_keys
            .iter()
            .map(|k| (k.subject.as_str(), k.key[0]))
            .collect();
        assert_eq!(written, vec![("a", 1), ("b", 3)]);
        assert_eq!(touched(&reqs).subjects, vec!["a", "b", "erased"]);
    }

    #[test]
    fn same_command_twice_in_a_batch_is_one_append() {
        let reqs = vec![
            req(1, "a", ExpectedVersion::Any),
            req(1, "a", ExpectedVersion::Any),
        ];
        let plan = plan_batch(&reqs, Snapshot::default());
        assert!(matches!(plan.decisions[1], Decision::DuplicateOf(0)));
        assert_eq!(plan.rows.len(), 1);
    }

    #[test]
    fn lock_keys_are_sorted_and_unique() {
        let reqs = vec![
            req(1, "b", ExpectedVersion::Any),
            req(2, "a", ExpectedVersion::Any),
            req(3, "b", ExpectedVersion::Any),
        ];
        let keys = lock_keys(&reqs);
        assert_eq!(keys.len(), 2);
        assert!(keys[0] < keys[1]);
    }
}

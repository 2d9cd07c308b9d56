//! Tamper evidence: every stream's events form a hash chain, and global checkpoints
//! seal ranges of the global log.
//!
//! An event's chain hash is SHA-256 over the previous event's chain hash (32 zero bytes
//! for a stream's first event) and the event's canonical bytes (see [`event_hash`]). The
//! writer computes it while planning an append ([`crate::plan`]) and the store keeps it
//! with the event; anyone holding the events can recompute every chain.
//!
//! A [`GlobalCheckpoint`] commits to a range of the global log in commit-safe order: it
//! lists, for every event in the range, its log position and chain hash (the "leaves"),
//! and is chained to the checkpoint before it. Deleting, inserting or moving an event
//! inside a sealed range changes the leaves; changing an event changes its chain hash.
//! `docs/audit.md` describes the exact bytes, so an auditor can check them with any
//! SHA-256 tool.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::model::{CommandMeta, LogPosition, NewEvent, RecordedEvent};

/// A SHA-256 value; shown and serialised as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct ChainHash(pub [u8; 32]);

impl ChainHash {
    /// What a stream's first event chains from, and the first checkpoint's predecessor.
    pub const GENESIS: ChainHash = ChainHash([0; 32]);

    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        <[u8; 32]>::try_from(bytes).ok().map(ChainHash)
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn is_genesis(&self) -> bool {
        *self == Self::GENESIS
    }
}

impl std::str::FromStr for ChainHash {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bytes = hex::decode(s).map_err(|e| format!("hash {s:?} is not hex: {e}"))?;
        Self::from_slice(&bytes).ok_or_else(|| format!("hash {s:?} is not 32 bytes"))
    }
}

impl fmt::Display for ChainHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for ChainHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChainHash({})", self.to_hex())
    }
}

impl Serialize for ChainHash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for ChainHash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Everything an event's chain hash covers. Positions and `recorded_at` are assigned by
/// the database after the hash is computed; the global checkpoints cover positions.
#[derive(Debug, Clone, Copy)]
pub struct ChainedFields<'a> {
    pub stream_id: &'a str,
    pub stream_version: u64,
    pub event_id: Uuid,
    pub event_type: &'a str,
    pub schema_version: u32,
    pub payload: &'a serde_json::Value,
    pub command_id: Uuid,
    pub correlation_id: Uuid,
    pub causation_id: Option<Uuid>,
    pub actor: &'a str,
    pub occurred_at: DateTime<Utc>,
}

impl<'a> ChainedFields<'a> {
    /// The fields of an event about to be appended.
    pub fn planned(
        stream_id: &'a str,
        stream_version: u64,
        event: &'a NewEvent,
        meta: &'a CommandMeta,
    ) -> Self {
        Self {
            stream_id,
            stream_version,
            event_id: event.event_id,
            event_type: &event.event_type,
            schema_version: event.schema_version,
            payload: &event.payload,
            command_id: meta.command_id,
            correlation_id: meta.correlation_id,
            causation_id: meta.causation_id,
            actor: &meta.actor,
            occurred_at: meta.issued_at,
        }
    }

    /// The fields of a stored event.
    pub fn of(e: &'a RecordedEvent) -> Self {
        Self {
            stream_id: &e.stream_id,
            stream_version: e.stream_version,
            event_id: e.event_id,
            event_type: &e.event_type,
            schema_version: e.schema_version,
            payload: &e.payload,
            command_id: e.metadata.command_id,
            correlation_id: e.metadata.correlation_id,
            causation_id: e.metadata.causation_id,
            actor: &e.metadata.actor,
            occurred_at: e.metadata.occurred_at,
        }
    }
}

const EVENT_DOMAIN: &[u8] = b"crm-event-v1";
const CHECKPOINT_DOMAIN: &[u8] = b"crm-checkpoint-v1";

/// `SHA-256(prev || field_1 || … || field_n)` where each field is its UTF-8 text
/// preceded by its length as 4 bytes big-endian, in this order: `crm-event-v1`, stream
/// id, stream version, event id, event type, schema version, command id, correlation
/// id, causation id (empty when none), actor, occurred_at (microseconds since the Unix
/// epoch), payload (canonical JSON, [`canonical_json`]). Numbers are decimal, UUIDs
/// hyphenated lowercase.
pub fn event_hash(prev: &ChainHash, f: &ChainedFields<'_>) -> ChainHash {
    let mut h = Sha256::new();
    h.update(prev.0);
    let mut field = |bytes: &[u8]| {
        h.update((bytes.len() as u32).to_be_bytes());
        h.update(bytes);
    };
    field(EVENT_DOMAIN);
    field(f.stream_id.as_bytes());
    field(f.stream_version.to_string().as_bytes());
    field(f.event_id.hyphenated().to_string().as_bytes());
    field(f.event_type.as_bytes());
    field(f.schema_version.to_string().as_bytes());
    field(f.command_id.hyphenated().to_string().as_bytes());
    field(f.correlation_id.hyphenated().to_string().as_bytes());
    field(
        f.causation_id
            .map(|c| c.hyphenated().to_string())
            .unwrap_or_default()
            .as_bytes(),
    );
    field(f.actor.as_bytes());
    field(f.occurred_at.timestamp_micros().to_string().as_bytes());
    field(&canonical_json(f.payload));
    ChainHash(h.finalize().into())
}

/// JSON with object keys sorted by their UTF-8 bytes, no whitespace, strings escaped
/// and numbers written as `serde_json` writes them. Stable across storage: PostgreSQL's
/// `jsonb` reorders keys and SQLite keeps them as written, and both give these bytes.
pub fn canonical_json(value: &serde_json::Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &serde_json::Value, out: &mut Vec<u8>) {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push(b'{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                serde_json::to_writer(&mut *out, k).expect("strings serialise");
                out.push(b':');
                write_canonical(v, out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(v, out);
            }
            out.push(b']');
        }
        scalar => serde_json::to_writer(&mut *out, scalar).expect("scalars serialise"),
    }
}

/// Bytes per leaf of a checkpoint: transaction id, position (8 bytes big-endian each)
/// and the event's chain hash.
pub const LEAF_LEN: usize = 48;

/// One sealed event of a checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Leaf {
    pub position: LogPosition,
    pub hash: ChainHash,
}

impl Leaf {
    pub fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.position.tx.to_be_bytes());
        out.extend_from_slice(&self.position.position.to_be_bytes());
        out.extend_from_slice(&self.hash.0);
    }

    /// The leaves of a checkpoint; `None` when the bytes are not whole leaves.
    pub fn parse_all(bytes: &[u8]) -> Option<Vec<Leaf>> {
        if !bytes.len().is_multiple_of(LEAF_LEN) {
            return None;
        }
        Some(
            bytes
                .chunks_exact(LEAF_LEN)
                .map(|c| Leaf {
                    position: LogPosition::new(
                        u64::from_be_bytes(c[0..8].try_into().expect("8 bytes")),
                        u64::from_be_bytes(c[8..16].try_into().expect("8 bytes")),
                    ),
                    hash: ChainHash::from_slice(&c[16..48]).expect("32 bytes"),
                })
                .collect(),
        )
    }
}

/// A seal over one range of the global log: every event after `after` up to and
/// including `through`, in commit-safe order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GlobalCheckpoint {
    /// 1, 2, 3, … without gaps.
    pub seq: u64,
    /// The previous checkpoint's `through` (the start of the log for the first).
    pub after: LogPosition,
    pub through: LogPosition,
    pub event_count: u64,
    /// [`LEAF_LEN`] bytes per event, in log order.
    #[serde(with = "hex_bytes")]
    pub leaves: Vec<u8>,
    /// The previous checkpoint's hash ([`ChainHash::GENESIS`] for the first).
    pub prev_hash: ChainHash,
    /// [`checkpoint_hash`] of the fields above.
    pub hash: ChainHash,
    pub sealed_at: DateTime<Utc>,
}

impl GlobalCheckpoint {
    /// Seal `leaves` (in log order, all after `prev`'s range) as the next checkpoint.
    pub fn seal(prev: Option<&GlobalCheckpoint>, leaves: &[Leaf], now: DateTime<Utc>) -> Self {
        let mut bytes = Vec::with_capacity(leaves.len() * LEAF_LEN);
        for l in leaves {
            l.write(&mut bytes);
        }
        let seq = prev.map_or(1, |p| p.seq + 1);
        let after = prev.map_or(LogPosition::START, |p| p.through);
        let through = leaves.last().map_or(after, |l| l.position);
        let prev_hash = prev.map_or(ChainHash::GENESIS, |p| p.hash);
        let count = leaves.len() as u64;
        GlobalCheckpoint {
            seq,
            after,
            through,
            event_count: count,
            hash: checkpoint_hash(&prev_hash, seq, after, through, count, &bytes),
            leaves: bytes,
            prev_hash,
            // Microseconds: what both stores keep, so the value read back is this one.
            sealed_at: chrono::SubsecRound::trunc_subsecs(now, 6),
        }
    }

    /// The hash recomputed from the stored fields.
    pub fn recompute(&self) -> ChainHash {
        checkpoint_hash(
            &self.prev_hash,
            self.seq,
            self.after,
            self.through,
            self.event_count,
            &self.leaves,
        )
    }
}

/// `SHA-256(prev || "crm-checkpoint-v1" || seq || after.tx || after.position ||
/// through.tx || through.position || event_count || SHA-256(leaves))`, integers as 8
/// bytes big-endian.
pub fn checkpoint_hash(
    prev: &ChainHash,
    seq: u64,
    after: LogPosition,
    through: LogPosition,
    event_count: u64,
    leaves: &[u8],
) -> ChainHash {
    let mut h = Sha256::new();
    h.update(prev.0);
    h.update(CHECKPOINT_DOMAIN);
    for n in [
        seq,
        after.tx,
        after.position,
        through.tx,
        through.position,
        event_count,
    ] {
        h.update(n.to_be_bytes());
    }
    h.update(Sha256::digest(leaves));
    ChainHash(h.finalize().into())
}

mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        hex::decode(String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(payload: &serde_json::Value) -> ChainedFields<'_> {
        ChainedFields {
            stream_id: "customer-1",
            stream_version: 1,
            event_id: Uuid::from_u128(1),
            event_type: "CustomerRegistered",
            schema_version: 1,
            payload,
            command_id: Uuid::from_u128(2),
            correlation_id: Uuid::from_u128(3),
            causation_id: None,
            actor: "person:li.wei",
            occurred_at: "2026-03-02T09:00:00.123456789Z".parse().unwrap(),
        }
    }

    #[test]
    fn key_order_and_whitespace_do_not_matter() {
        let a: serde_json::Value =
            serde_json::from_str(r#"{"b": 1, "a": {"y": [1, 2.5], "x": "é\n"}}"#).unwrap();
        let b: serde_json::Value =
            serde_json::from_str(r#"{"a":{"x":"é\n","y":[1,2.5]},"b":1}"#).unwrap();
        assert_eq!(canonical_json(&a), canonical_json(&b));
        assert_eq!(
            String::from_utf8(canonical_json(&a)).unwrap(),
            r#"{"a":{"x":"é\n","y":[1,2.5]},"b":1}"#
        );
        assert_eq!(
            event_hash(&ChainHash::GENESIS, &fields(&a)),
            event_hash(&ChainHash::GENESIS, &fields(&b))
        );
    }

    #[test]
    fn every_field_and_the_predecessor_change_the_hash() {
        let p = json!({"name": "Wang"});
        let base = event_hash(&ChainHash::GENESIS, &fields(&p));
        let other = json!({"name": "Wanh"});
        assert_ne!(base, event_hash(&ChainHash::GENESIS, &fields(&other)));
        assert_ne!(base, event_hash(&ChainHash([1; 32]), &fields(&p)));
        let mut f = fields(&p);
        f.stream_version = 2;
        assert_ne!(base, event_hash(&ChainHash::GENESIS, &f));
        let mut f = fields(&p);
        f.causation_id = Some(Uuid::nil());
        assert_ne!(base, event_hash(&ChainHash::GENESIS, &f));
        let mut f = fields(&p);
        f.actor = "person:li.we";
        assert_ne!(base, event_hash(&ChainHash::GENESIS, &f));
        // Fields are length-prefixed: moving a byte between neighbours shows.
        let mut f = fields(&p);
        f.stream_id = "customer-";
        f.event_type = "1CustomerRegistered";
        assert_ne!(base, event_hash(&ChainHash::GENESIS, &f));
    }

    #[test]
    fn time_counts_to_the_microsecond_as_stored() {
        let p = json!({});
        let mut f = fields(&p);
        let base = event_hash(&ChainHash::GENESIS, &f);
        f.occurred_at = "2026-03-02T09:00:00.123456Z".parse().unwrap();
        assert_eq!(base, event_hash(&ChainHash::GENESIS, &f));
        f.occurred_at = "2026-03-02T09:00:00.123457Z".parse().unwrap();
        assert_ne!(base, event_hash(&ChainHash::GENESIS, &f));
    }

    #[test]
    fn checkpoints_chain_and_leaves_round_trip() {
        let leaves: Vec<Leaf> = (1..=3)
            .map(|i| Leaf {
                position: LogPosition::new(10 + i, i),
                hash: ChainHash([i as u8; 32]),
            })
            .collect();
        let first = GlobalCheckpoint::seal(None, &leaves[..2], Utc::now());
        let second = GlobalCheckpoint::seal(Some(&first), &leaves[2..], Utc::now());
        assert_eq!((first.seq, second.seq), (1, 2));
        assert_eq!(second.after, first.through);
        assert_eq!(second.prev_hash, first.hash);
        assert_eq!(first.recompute(), first.hash);
        assert_eq!(Leaf::parse_all(&first.leaves).unwrap(), leaves[..2]);
        let mut moved = first.clone();
        moved.leaves[..2 * LEAF_LEN].rotate_left(LEAF_LEN);
        assert_ne!(moved.recompute(), first.hash);
        let json = serde_json::to_string(&second).unwrap();
        assert_eq!(
            serde_json::from_str::<GlobalCheckpoint>(&json).unwrap(),
            second
        );
    }
}

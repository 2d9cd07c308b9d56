//! Which events of a batch each read model applies, decided purely (as the write side's
//! `plan.rs` decides appends): the projector's transaction on either backend and a
//! rebuild's catch-up run this plan; a rebuild's in-memory fold applies the same
//! [`verdict`] event by event.

use std::collections::HashMap;

use crate::store::{Fate, Prepared};

/// What a read model does with the next event of a stream, given the last version of
/// that stream it applied (0: none yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// At or below the last version: already applied.
    Duplicate,
    /// The next version: apply it.
    Apply,
    /// Further ahead: an earlier event of the stream is still on its way (a
    /// redelivery): not applied now, delivered again later.
    Early,
}

pub fn verdict(applied: i64, version: i64) -> Verdict {
    if version <= applied {
        Verdict::Duplicate
    } else if version == applied + 1 {
        Verdict::Apply
    } else {
        Verdict::Early
    }
}

/// A stream's position to record in a read model's positions table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Move<'b> {
    pub stream: &'b str,
    pub version: i64,
    /// The version read before the batch (0: the stream has no row yet). The move is
    /// conditional on it, so a batch racing another transaction fails instead.
    pub before: i64,
}

/// The plan of one batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan<'b> {
    /// What happened to each event, in batch order.
    pub fates: Vec<Fate>,
    /// (event, target) pairs whose changes are applied, in batch order.
    pub steps: Vec<(usize, usize)>,
    /// Events to record as dead letters (they could not be projected).
    pub dead: Vec<usize>,
    /// Per target, the positions that move, in stream order.
    pub moves: Vec<Vec<Move<'b>>>,
}

/// What a consumer's checkpoint takes from the events of a batch it delivered: events
/// applied or set aside, the last of their recording instants, and the last sequence
/// that needs no redelivery.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    pub applied: i64,
    pub last_event_us: i64,
    pub last_sequence: i64,
}

impl Plan<'_> {
    /// The progress of the events `range` of `batch` (the ones one consumer delivered).
    pub fn progress(&self, batch: &[Prepared], range: std::ops::Range<usize>) -> Progress {
        let mut out = Progress::default();
        for (p, fate) in batch[range.clone()].iter().zip(&self.fates[range]) {
            if matches!(fate, Fate::Applied | Fate::DeadLetter) {
                out.applied += 1;
                let recorded = crate::project::micros(p.event.metadata.recorded_at);
                out.last_event_us = out.last_event_us.max(recorded);
            }
            if *fate != Fate::Early {
                out.last_sequence = out.last_sequence.max(p.sequence as i64);
            }
        }
        out
    }
}

/// Plan `batch` for `targets` read models, each knowing the versions in `known`
/// (by target and stream; absent: 0).
pub fn plan<'b>(
    batch: &'b [Prepared],
    targets: usize,
    known: &HashMap<(usize, &'b str), i64>,
) -> Plan<'b> {
    let mut now: HashMap<(usize, &'b str), i64> = HashMap::new();
    let mut plan = Plan {
        fates: Vec::with_capacity(batch.len()),
        steps: Vec::new(),
        dead: Vec::new(),
        moves: vec![Vec::new(); targets],
    };
    for (i, p) in batch.iter().enumerate() {
        let stream = p.event.stream_id.as_str();
        let version = p.event.stream_version as i64;
        let (mut early, mut moved) = (false, false);
        for t in 0..targets {
            let current = *now
                .entry((t, stream))
                .or_insert_with(|| known.get(&(t, stream)).copied().unwrap_or(0));
            match verdict(current, version) {
                Verdict::Duplicate => {}
                Verdict::Early => early = true,
                Verdict::Apply => {
                    if p.decoded.is_ok() {
                        plan.steps.push((i, t));
                    }
                    now.insert((t, stream), version);
                    moved = true;
                }
            }
        }
        let fate = match (&p.decoded, early, moved) {
            (_, true, _) => Fate::Early,
            (Err(_), false, true) => Fate::DeadLetter,
            (Ok(_), false, true) => Fate::Applied,
            (_, false, false) => Fate::Duplicate,
        };
        if fate == Fate::DeadLetter {
            plan.dead.push(i);
        }
        plan.fates.push(fate);
    }
    for ((t, stream), version) in now {
        let before = known.get(&(t, stream)).copied().unwrap_or(0);
        if version != before {
            plan.moves[t].push(Move {
                stream,
                version,
                before,
            });
        }
    }
    for moves in &mut plan.moves {
        moves.sort_unstable_by_key(|m| m.stream);
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::project::Poison;

    fn event(stream: &str, version: u64, sequence: u64, poison: bool) -> Prepared {
        let at = chrono::DateTime::from_timestamp(1_700_000_000 + sequence as i64, 0).unwrap();
        Prepared {
            event: crm_eventstore::RecordedEvent {
                log_position: crm_eventstore::LogPosition::new(sequence, sequence),
                stream_id: stream.into(),
                stream_version: version,
                event_id: uuid::Uuid::new_v4(),
                event_type: "Test".into(),
                schema_version: 1,
                payload: serde_json::Value::Null,
                metadata: crm_eventstore::EventMetadata {
                    command_id: uuid::Uuid::nil(),
                    correlation_id: uuid::Uuid::nil(),
                    causation_id: None,
                    actor: "person:x".into(),
                    occurred_at: at,
                    recorded_at: at,
                },
                chain_hash: Default::default(),
            },
            sequence,
            decoded: if poison {
                Err(Poison::Decode("bad".into()))
            } else {
                Ok(crate::project::Decoded::Nothing)
            },
        }
    }

    #[test]
    fn the_next_version_applies_older_ones_are_duplicates_later_ones_wait() {
        assert_eq!(verdict(0, 1), Verdict::Apply);
        assert_eq!(verdict(4, 5), Verdict::Apply);
        assert_eq!(verdict(4, 4), Verdict::Duplicate);
        assert_eq!(verdict(4, 1), Verdict::Duplicate);
        assert_eq!(verdict(4, 6), Verdict::Early);
        assert_eq!(verdict(0, 2), Verdict::Early);
    }

    /// A batch holding a redelivery, a stream's next two versions, one arriving ahead of
    /// its predecessor, and an event that cannot be projected.
    #[test]
    fn a_batch_is_planned_event_by_event_in_order() {
        let batch = vec![
            event("a", 3, 10, false), // a was at 3: a duplicate
            event("a", 4, 11, false), // applies
            event("a", 5, 12, false), // applies after 4, in the same batch
            event("b", 2, 13, false), // b has nothing yet: early
            event("c", 1, 14, true),  // poison: set aside, its stream moves on
            event("b", 1, 15, false), // applies
        ];
        let known: HashMap<(usize, &str), i64> = [((0, "a"), 3), ((1, "a"), 3)].into();
        let plan = plan(&batch, 2, &known);
        assert_eq!(
            plan.fates,
            [
                Fate::Duplicate,
                Fate::Applied,
                Fate::Applied,
                Fate::Early,
                Fate::DeadLetter,
                Fate::Applied
            ]
        );
        assert_eq!(plan.steps, [(1, 0), (1, 1), (2, 0), (2, 1), (5, 0), (5, 1)]);
        assert_eq!(plan.dead, [4]);
        let moves = |t: usize| -> Vec<(&str, i64, i64)> {
            plan.moves[t]
                .iter()
                .map(|m| (m.stream, m.version, m.before))
                .collect()
        };
        assert_eq!(moves(0), [("a", 5, 3), ("b", 1, 0), ("c", 1, 0)]);
        assert_eq!(moves(1), moves(0));
        // The early event is not counted, nor its sequence acknowledged as done.
        let all = plan.progress(&batch, 0..batch.len());
        assert_eq!(all.applied, 4);
        assert_eq!(all.last_sequence, 15);
        assert_eq!(all.last_event_us, 1_700_000_015_000_000);
        // Each consumer's share of a batch two delivered.
        let (first, second) = (plan.progress(&batch, 0..3), plan.progress(&batch, 3..6));
        assert_eq!((first.applied, first.last_sequence), (2, 12));
        assert_eq!((second.applied, second.last_sequence), (2, 15));
        assert_eq!(first.last_event_us, 1_700_000_012_000_000);
    }

    /// One read model ahead of another (a rebuild's catch-up): the event applies where
    /// it is next, and is early as a whole while another model waits for an earlier one.
    #[test]
    fn read_models_at_different_versions_each_take_what_is_next_for_them() {
        let batch = vec![event("a", 2, 1, false)];
        let known: HashMap<(usize, &str), i64> = [((0, "a"), 1)].into();
        let plan = plan(&batch, 2, &known);
        assert_eq!(plan.fates, [Fate::Early]);
        assert_eq!(plan.steps, [(0, 0)]);
        assert_eq!(
            plan.moves[0],
            [Move {
                stream: "a",
                version: 2,
                before: 1
            }]
        );
        assert!(plan.moves[1].is_empty());
        assert_eq!(plan.progress(&batch, 0..1), Progress::default());
    }
}

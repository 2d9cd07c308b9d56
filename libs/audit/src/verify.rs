//! `crm audit verify`: check every hash chain and every global checkpoint, and name the
//! first event that does not match.
//!
//! One pass over the global log in commit-safe order:
//! - each event's chain link is recomputed from its stream's previous link and its own
//!   fields; a mismatch means the event was changed after it was written;
//! - each stream's versions must follow 1, 2, 3, … in log order; a gap means events were
//!   deleted, a step back means they were moved;
//! - each global checkpoint's hash is recomputed and must chain to the one before; then
//!   the events now found in its range are compared with the positions and links it
//!   sealed: an event sealed but gone was deleted (or moved out), one found but not
//!   sealed was inserted (or moved in), one whose link differs from the sealed link was
//!   rewritten together with its link.
//!
//! What the chains cannot see on their own: the last events of a stream deleted after the
//! last checkpoint, and a history rewritten consistently by someone who recomputed every
//! hash. The first is closed by sealing often (the relay does); the second by keeping a
//! checkpoint hash outside the database and checking it with [`VerifyOptions::expect`]
//! (`docs/audit.md`, "Anchoring").

use std::collections::{HashMap, HashSet};

use crm_eventstore::chain::{event_hash, ChainedFields, Leaf};
use crm_eventstore::{
    ChainHash, GlobalCheckpoint, Log, LogPosition, RecordedEvent, Seals, StoreError,
};
use serde::Serialize;
use uuid::Uuid;

/// What kind of damage a [`Problem`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// The event's content no longer matches its chain link.
    Altered,
    /// The event's link itself was rewritten (it differs from the sealed one).
    Relinked,
    /// Versions of a stream are missing, or a sealed event is gone.
    Deleted,
    /// The event is in a sealed range but was not sealed there.
    Inserted,
    /// The event sits elsewhere in the log than where it was sealed or chained.
    Moved,
    /// A global checkpoint does not recompute or does not chain to its predecessor.
    Checkpoint,
    /// A checkpoint hash kept outside the database does not match.
    Anchor,
}

/// One finding, tied to the event (or checkpoint) where it shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub kind: ProblemKind,
    /// Log position where the problem shows (absent for checkpoint-only findings).
    pub position: Option<LogPosition>,
    pub stream_id: Option<String>,
    pub stream_version: Option<u64>,
    pub event_id: Option<Uuid>,
    /// The global checkpoint involved, if any.
    pub checkpoint: Option<u64>,
    pub detail: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.kind)?;
        if let Some(p) = self.position {
            write!(f, " at log position {p}")?;
        }
        if let (Some(s), Some(v)) = (&self.stream_id, self.stream_version) {
            write!(f, " ({s} v{v}")?;
            if let Some(id) = self.event_id {
                write!(f, ", event {id}")?;
            }
            write!(f, ")")?;
        }
        if let Some(c) = self.checkpoint {
            write!(f, " [checkpoint #{c}]")?;
        }
        write!(f, ": {}", self.detail)
    }
}

#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// Events per read of the log.
    pub page: usize,
    /// Checkpoint hashes kept elsewhere (`seq`, hash) that must match the stored ones.
    pub expect: Vec<(u64, ChainHash)>,
    /// For a store holding part of a log (an export): the checkpoint it starts at.
    pub start: Option<Start>,
    /// For a store holding part of a log: each stream's last version and link before
    /// its first event here.
    pub bases: HashMap<String, StreamBase>,
}

/// Where a partial log starts: its first checkpoint's number, the hash that checkpoint
/// chains to, and the log position before its first event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Start {
    pub seq: u64,
    pub prev_hash: ChainHash,
    pub after: LogPosition,
}

/// A stream's version and link just before its first event in a partial log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamBase {
    pub version: u64,
    pub link: ChainHash,
}

/// The outcome of a verification.
#[derive(Debug, Clone, Default, Serialize)]
pub struct VerifyReport {
    pub events: u64,
    pub streams: u64,
    pub checkpoints: u64,
    /// Events inside sealed ranges.
    pub sealed_events: u64,
    /// Events after the last checkpoint: chain-checked only.
    pub unsealed_events: u64,
    /// The last checkpoint: its number and hash (what to keep outside the database).
    pub head: Option<(u64, ChainHash)>,
    /// The log position of the last event checked.
    pub through: Option<LogPosition>,
    /// Every finding, in log order; the first is the first bad event.
    pub problems: Vec<Problem>,
}

impl VerifyReport {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Per-stream state: last version seen and its stored link.
struct StreamHead {
    version: u64,
    link: ChainHash,
}

/// The checkpoint being compared, and the events found in its range so far.
struct OpenCheckpoint {
    checkpoint: GlobalCheckpoint,
    sealed: Vec<Leaf>,
    found: Vec<(Leaf, EventRef)>,
}

#[derive(Clone)]
struct EventRef {
    stream_id: String,
    stream_version: u64,
    event_id: Uuid,
}

struct Verifier<'a, S> {
    store: &'a S,
    report: VerifyReport,
    streams: HashMap<String, StreamHead>,
    /// Checkpoints fetched but not yet reached.
    queue: std::collections::VecDeque<GlobalCheckpoint>,
    last_fetched_seq: u64,
    exhausted: bool,
    /// What the next checkpoint must be: its number, where it starts, what it chains to.
    next: Start,
    open: Option<OpenCheckpoint>,
    expect: HashMap<u64, ChainHash>,
}

impl<S> Verifier<'_, S> {
    /// The anchor kept for the checkpoint just before a partial log must be what the log's
    /// first checkpoint chains to.
    fn check_start_anchor(&mut self, start: Start) {
        // An anchor for the checkpoint just before a partial log is what it chains to.
        if let Some(kept) = self.expect.remove(&(start.seq.wrapping_sub(1))) {
            if kept != start.prev_hash {
                self.report.problems.push(Problem {
                    kind: ProblemKind::Anchor,
                    position: None,
                    stream_id: None,
                    stream_version: None,
                    event_id: None,
                    checkpoint: Some(start.seq - 1),
                    detail: format!(
                        "this log starts after checkpoint #{} with hash {}, not the one kept ({kept})",
                        start.seq - 1,
                        start.prev_hash
                    ),
                });
            }
        }
    }
}

/// Verify the whole store. `progress` is told the number of events checked so far after
/// each page.
pub async fn verify<S: Log + Seals>(
    store: &S,
    options: &VerifyOptions,
    progress: &mut (dyn FnMut(u64) + Send),
) -> Result<VerifyReport, StoreError> {
    let page = if options.page == 0 {
        5_000
    } else {
        options.page
    };
    let start = options.start.unwrap_or(Start {
        seq: 1,
        prev_hash: ChainHash::GENESIS,
        after: LogPosition::START,
    });
    let mut v = Verifier {
        store,
        report: VerifyReport::default(),
        streams: options
            .bases
            .iter()
            .map(|(s, b)| {
                (
                    s.clone(),
                    StreamHead {
                        version: b.version,
                        link: b.link,
                    },
                )
            })
            .collect(),
        queue: Default::default(),
        last_fetched_seq: 0,
        exhausted: false,
        next: start,
        open: None,
        expect: options.expect.iter().copied().collect(),
    };
    v.check_start_anchor(start);
    v.open_next().await?;
    // The next page is read while this one is checked: the database works while the
    // hashes are computed here.
    let mut events = store.read_all(LogPosition::START, page).await?;
    while let Some(last) = events.last() {
        v.report.through = Some(last.log_position);
        let check = async {
            for e in &events {
                v.event(e).await?;
            }
            Ok::<_, StoreError>(())
        };
        let (next, checked) =
            futures::future::join(store.read_all(last.log_position, page), check).await;
        checked?;
        progress(v.report.events);
        events = next?;
    }
    // Checkpoints past the last event: everything they sealed is gone.
    while v.open.is_some() {
        v.close_open();
        v.open_next().await?;
    }
    for (seq, _) in v.expect.drain() {
        v.report.problems.push(Problem {
            kind: ProblemKind::Anchor,
            position: None,
            stream_id: None,
            stream_version: None,
            event_id: None,
            checkpoint: Some(seq),
            detail: format!("checkpoint #{seq} was expected but is not in the store"),
        });
    }
    v.report.streams = v.streams.len() as u64;
    v.report.problems.sort_by_key(|p| {
        (
            p.position.is_none(),
            p.position,
            p.checkpoint,
            p.stream_version,
        )
    });
    Ok(v.report)
}

impl<S: Log + Seals> Verifier<'_, S> {
    async fn next_checkpoint(&mut self) -> Result<Option<GlobalCheckpoint>, StoreError> {
        if self.queue.is_empty() && !self.exhausted {
            // A few at a time: each holds up to 48 bytes per event it seals.
            let batch = self
                .store
                .global_checkpoints(self.last_fetched_seq, 16)
                .await?;
            if batch.is_empty() {
                self.exhausted = true;
            }
            if let Some(last) = batch.last() {
                self.last_fetched_seq = last.seq;
            }
            self.queue.extend(batch);
        }
        Ok(self.queue.pop_front())
    }

    /// Check the next checkpoint's own hash and link, and start comparing its range.
    async fn open_next(&mut self) -> Result<(), StoreError> {
        self.open = None;
        let Some(cp) = self.next_checkpoint().await? else {
            return Ok(());
        };
        self.report.checkpoints += 1;
        self.report.head = Some((cp.seq, cp.hash));
        let mut complain = |detail: String| {
            self.report.problems.push(Problem {
                kind: ProblemKind::Checkpoint,
                position: None,
                stream_id: None,
                stream_version: None,
                event_id: None,
                checkpoint: Some(cp.seq),
                detail,
            })
        };
        let Start {
            seq: want_seq,
            after: want_after,
            prev_hash: want_prev,
        } = self.next;
        if cp.seq != want_seq {
            complain(format!(
                "checkpoint numbers jump from #{} to #{}: checkpoints were deleted",
                want_seq - 1,
                cp.seq
            ));
        }
        if cp.recompute() != cp.hash {
            complain("its hash does not recompute from its content".into());
        }
        if cp.prev_hash != want_prev {
            complain("it does not chain to the checkpoint before it".into());
        }
        if cp.after != want_after {
            complain(format!(
                "it starts after {} but the checkpoint before it ends at {want_after}",
                cp.after
            ));
        }
        let sealed = match Leaf::parse_all(&cp.leaves) {
            Some(l) if l.len() as u64 == cp.event_count => l,
            _ => {
                complain("its list of sealed events is damaged".into());
                Vec::new()
            }
        };
        if let Some(expected) = self.expect.remove(&cp.seq) {
            if expected != cp.hash {
                self.report.problems.push(Problem {
                    kind: ProblemKind::Anchor,
                    position: None,
                    stream_id: None,
                    stream_version: None,
                    event_id: None,
                    checkpoint: Some(cp.seq),
                    detail: format!(
                        "stored hash {} differs from the one kept outside the database ({expected}): \
                         the history up to this checkpoint was rewritten",
                        cp.hash
                    ),
                });
            }
        }
        self.next = Start {
            seq: cp.seq + 1,
            after: cp.through,
            prev_hash: cp.hash,
        };
        self.report.sealed_events += sealed.len() as u64;
        self.open = Some(OpenCheckpoint {
            checkpoint: cp,
            sealed,
            found: Vec::new(),
        });
        Ok(())
    }

    async fn event(&mut self, e: &RecordedEvent) -> Result<(), StoreError> {
        self.report.events += 1;
        self.chain(e);
        // Close every checkpoint that ends before this event.
        while let Some(open) = &self.open {
            if e.log_position <= open.checkpoint.through {
                break;
            }
            self.close_open();
            self.open_next().await?;
        }
        let leaf = Leaf {
            position: e.log_position,
            hash: e.chain_hash,
        };
        let r = EventRef {
            stream_id: e.stream_id.clone(),
            stream_version: e.stream_version,
            event_id: e.event_id,
        };
        match &mut self.open {
            Some(open) => open.found.push((leaf, r)),
            None => self.report.unsealed_events += 1,
        }
        Ok(())
    }

    fn chain(&mut self, e: &RecordedEvent) {
        let problem = |kind, detail: String| Problem {
            kind,
            position: Some(e.log_position),
            stream_id: Some(e.stream_id.clone()),
            stream_version: Some(e.stream_version),
            event_id: Some(e.event_id),
            checkpoint: None,
            detail,
        };
        let (expected_version, prev) = match self.streams.get(&e.stream_id) {
            Some(h) => (h.version + 1, h.link),
            None => (1, ChainHash::GENESIS),
        };
        if e.stream_version == expected_version {
            if event_hash(&prev, &ChainedFields::of(e)) != e.chain_hash {
                self.report.problems.push(problem(
                    ProblemKind::Altered,
                    if e.chain_hash.is_genesis() {
                        "the event has no chain link".into()
                    } else {
                        "its content no longer matches its chain link".into()
                    },
                ));
            }
        } else if e.stream_version > expected_version {
            let missing = if e.stream_version == expected_version + 1 {
                format!("version {expected_version} is missing")
            } else {
                format!(
                    "versions {expected_version}–{} are missing",
                    e.stream_version - 1
                )
            };
            self.report.problems.push(problem(
                ProblemKind::Deleted,
                format!("{missing} from the stream before this event"),
            ));
        } else {
            self.report.problems.push(problem(
                ProblemKind::Moved,
                format!(
                    "it comes after version {} of its stream in the log",
                    expected_version - 1
                ),
            ));
        }
        if e.stream_version >= expected_version {
            self.streams.insert(
                e.stream_id.clone(),
                StreamHead {
                    version: e.stream_version,
                    link: e.chain_hash,
                },
            );
        }
    }

    /// Compare the events found in the open checkpoint's range with what it sealed.
    fn close_open(&mut self) {
        let Some(open) = self.open.take() else { return };
        let seq = open.checkpoint.seq;
        let found_leaves: Vec<Leaf> = open.found.iter().map(|(l, _)| *l).collect();
        if found_leaves == open.sealed {
            return;
        }
        let sealed_at: HashMap<LogPosition, ChainHash> =
            open.sealed.iter().map(|l| (l.position, l.hash)).collect();
        let sealed_links: HashMap<ChainHash, LogPosition> =
            open.sealed.iter().map(|l| (l.hash, l.position)).collect();
        let found_at: HashSet<LogPosition> = found_leaves.iter().map(|l| l.position).collect();
        let found_links: HashMap<ChainHash, &EventRef> =
            open.found.iter().map(|(l, r)| (l.hash, r)).collect();
        for (leaf, r) in &open.found {
            let problem = |kind, detail: String| Problem {
                kind,
                position: Some(leaf.position),
                stream_id: Some(r.stream_id.clone()),
                stream_version: Some(r.stream_version),
                event_id: Some(r.event_id),
                checkpoint: Some(seq),
                detail,
            };
            match (sealed_at.get(&leaf.position), sealed_links.get(&leaf.hash)) {
                (Some(h), _) if *h == leaf.hash => {}
                (_, Some(at)) => self.report.problems.push(problem(
                    ProblemKind::Moved,
                    format!("it was sealed at log position {at}"),
                )),
                (Some(_), None) => self.report.problems.push(problem(
                    ProblemKind::Relinked,
                    "its chain link differs from the one sealed at this position: the event \
                     was replaced or rewritten with a new link"
                        .into(),
                )),
                (None, None) => self.report.problems.push(problem(
                    ProblemKind::Inserted,
                    "it lies inside the sealed range but was not sealed".into(),
                )),
            }
        }
        for leaf in &open.sealed {
            if found_at.contains(&leaf.position) || found_links.contains_key(&leaf.hash) {
                continue;
            }
            self.report.problems.push(Problem {
                kind: ProblemKind::Deleted,
                position: Some(leaf.position),
                stream_id: None,
                stream_version: None,
                event_id: None,
                checkpoint: Some(seq),
                detail: format!(
                    "the event sealed here (chain link {}) is no longer in the log",
                    leaf.hash
                ),
            });
        }
    }
}

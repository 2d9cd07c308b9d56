//! Tamper evidence on a page: the latest global checkpoints and whether their chain links
//! (each holds the previous one's hash and starts where it ended, and its own hash
//! recomputes: cheap, no event read), and the latest checkpoint's span of the log read
//! again and compared with what it sealed, each event's content recomputed against its
//! link. The full check, every chain and checkpoint over the whole log, stays
//! `crm audit verify` (`crm_audit::verify`); the page says so.

use std::collections::HashMap;
use std::time::Instant;

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use crm_eventstore::chain::{event_hash, ChainedFields, Leaf};
use crm_eventstore::{
    AnyEventStore, ChainHash, GlobalCheckpoint, Log, LogPosition, RecordedEvent, Seals, Streams,
};

use super::{audit_store, last_verification, local_s, LastVerification};
use crate::problem::Problem;
use crate::web::i18n::Msg;
use crate::web::view::{Chrome, Nav, Viewer};
use crate::AppState;

/// Checkpoints whose link the page checks (the latest ones).
const CHECKED: usize = 20;
/// Findings listed at most (the count says how many in all).
const FINDINGS_SHOWN: usize = 20;
/// Streams whose previous link is read from the store at most, for the span's events
/// whose predecessor lies before the span (one small read each).
const MAX_LOOKUPS: usize = 2_000;

/// What is wrong with one checkpoint's link, or `ok`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LinkCheck {
    pub seq: u64,
    pub problems: Vec<Msg>,
}

/// The link of each of the last `checked` checkpoints of `cps` (in sequence order; the
/// one before them, when given, only anchors the first one's link): numbers without a
/// gap, the previous hash held, the start where the previous one ended (the log's start
/// and the zero hash for #1), its own hash recomputed from its content, its leaves whole
/// and as many as it says.
pub(crate) fn chain_checks(cps: &[GlobalCheckpoint], checked: usize) -> Vec<LinkCheck> {
    let first = cps.len().saturating_sub(checked);
    (first..cps.len())
        .map(|i| {
            let cp = &cps[i];
            let mut problems = Vec::new();
            if cp.recompute() != cp.hash {
                problems.push(Msg::CpNoRecompute);
            }
            if Leaf::parse_all(&cp.leaves).is_none_or(|l| l.len() as u64 != cp.event_count) {
                problems.push(Msg::CpDamaged);
            }
            let (want_seq, want_hash, want_after) = match i.checked_sub(1).map(|p| &cps[p]) {
                Some(prev) => (prev.seq + 1, prev.hash, prev.through),
                None if cp.seq == 1 => (1, ChainHash::GENESIS, LogPosition::START),
                // The one before is not in the store.
                None => (cp.seq.saturating_sub(1), cp.prev_hash, cp.after),
            };
            if cp.seq != want_seq {
                problems.push(Msg::CpGap);
            }
            if cp.prev_hash != want_hash {
                problems.push(Msg::CpNotChained);
            }
            if cp.after != want_after {
                problems.push(Msg::CpStart);
            }
            LinkCheck {
                seq: cp.seq,
                problems,
            }
        })
        .collect()
}

/// One finding in the latest checkpoint's span.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Finding {
    pub kind: Msg,
    pub position: LogPosition,
    /// The event (`stream vN, event id`), when it is in the log.
    pub event: String,
}

/// Compare the leaves found in a span with those sealed: each found must be sealed at its
/// position with its link, each sealed must be found.
pub(crate) fn compare_leaves(sealed: &[Leaf], found: &[(Leaf, String)]) -> Vec<Finding> {
    let sealed_at: HashMap<LogPosition, ChainHash> =
        sealed.iter().map(|l| (l.position, l.hash)).collect();
    let found_at: HashMap<LogPosition, ChainHash> =
        found.iter().map(|(l, _)| (l.position, l.hash)).collect();
    let mut out = Vec::new();
    for (l, event) in found {
        let kind = match sealed_at.get(&l.position) {
            Some(h) if *h == l.hash => continue,
            Some(_) => Msg::FindingRelinked,
            None => Msg::FindingInserted,
        };
        out.push(Finding {
            kind,
            position: l.position,
            event: event.clone(),
        });
    }
    for l in sealed {
        if !found_at.contains_key(&l.position) {
            out.push(Finding {
                kind: Msg::FindingDeleted,
                position: l.position,
                event: String::new(),
            });
        }
    }
    out.sort_by_key(|f| f.position);
    out
}

/// The latest checkpoint's span read again.
pub(crate) struct SpanCheck {
    pub seq: u64,
    pub sealed: u64,
    pub found: usize,
    pub content_ok: u64,
    pub unchecked: u64,
    pub findings: usize,
    pub shown: Vec<Finding>,
    pub took_ms: u128,
}

fn describe(e: &RecordedEvent) -> String {
    format!(
        "{} v{}, event {}",
        e.stream_id, e.stream_version, e.event_id
    )
}

/// The events after `cp.after` up to `cp.through`, in log order.
async fn span_events(
    store: &AnyEventStore,
    cp: &GlobalCheckpoint,
) -> Result<Vec<RecordedEvent>, Problem> {
    let mut out: Vec<RecordedEvent> = Vec::new();
    let mut cursor = cp.after;
    // One more than sealed: an event inserted at the end of the span shows.
    let mut limit = cp.event_count as usize + 1;
    loop {
        let page = store
            .read_all(cursor, limit)
            .await
            .map_err(Problem::store)?;
        let full = page.len() == limit;
        let Some(last) = page.last().map(|e| e.log_position) else {
            return Ok(out);
        };
        out.extend(page.into_iter().filter(|e| e.log_position <= cp.through));
        if !full || last > cp.through {
            return Ok(out);
        }
        cursor = last;
        limit = 1_000;
    }
}

/// Read the latest checkpoint's span again: leaves compared, then each event's content
/// recomputed against its link from its stream's previous link (in the span, else read
/// from the store: one small read per stream, at most `MAX_LOOKUPS`).
async fn check_span(store: &AnyEventStore, cp: &GlobalCheckpoint) -> Result<SpanCheck, Problem> {
    let started = Instant::now();
    let events = span_events(store, cp).await?;
    let found: Vec<(Leaf, String)> = events
        .iter()
        .map(|e| {
            let leaf = Leaf {
                position: e.log_position,
                hash: e.chain_hash,
            };
            (leaf, describe(e))
        })
        .collect();
    let mut findings = compare_leaves(&Leaf::parse_all(&cp.leaves).unwrap_or_default(), &found);
    let (mut content_ok, mut unchecked, mut lookups) = (0u64, 0u64, 0usize);
    let mut heads: HashMap<&str, (u64, ChainHash)> = HashMap::new();
    for e in &events {
        let v = e.stream_version;
        let prev = match heads.get(e.stream_id.as_str()) {
            _ if v == 1 => Some(ChainHash::GENESIS),
            Some((seen, link)) if *seen + 1 == v => Some(*link),
            Some(_) => None,
            None if lookups >= MAX_LOOKUPS => {
                unchecked += 1;
                continue;
            }
            None => {
                lookups += 1;
                let before = store
                    .read_stream_range(&e.stream_id, v - 2, v - 1)
                    .await
                    .map_err(Problem::store)?;
                before
                    .first()
                    .filter(|p| p.stream_version + 1 == v)
                    .map(|p| p.chain_hash)
            }
        };
        heads.insert(&e.stream_id, (v, e.chain_hash));
        let kind = match prev {
            None => Msg::FindingOrder,
            Some(prev) if event_hash(&prev, &ChainedFields::of(e)) != e.chain_hash => {
                Msg::FindingAltered
            }
            Some(_) => {
                content_ok += 1;
                continue;
            }
        };
        findings.push(Finding {
            kind,
            position: e.log_position,
            event: describe(e),
        });
    }
    findings.sort_by_key(|f| f.position);
    Ok(SpanCheck {
        seq: cp.seq,
        sealed: cp.event_count,
        found: events.len(),
        content_ok,
        unchecked,
        findings: findings.len(),
        shown: findings.into_iter().take(FINDINGS_SHOWN).collect(),
        took_ms: started.elapsed().as_millis(),
    })
}

/// One checkpoint as the table shows it.
pub(crate) struct CheckpointLine {
    pub seq: u64,
    pub through: String,
    pub events: u64,
    pub hash: String,
    pub sealed_at: String,
    pub problems: Vec<Msg>,
}

impl CheckpointLine {
    /// What the chain column says when the link holds.
    pub fn linked(&self) -> Msg {
        if self.seq == 1 {
            Msg::FirstLinked
        } else {
            Msg::Linked
        }
    }
}

#[derive(Template)]
#[template(path = "audit_checkpoints.html")]
pub(crate) struct CheckpointsPage {
    pub chrome: Chrome,
    /// Newest first.
    pub lines: Vec<CheckpointLine>,
    /// The numbers checked (first, last), and the anchor's number when one was read.
    pub checked: Option<(u64, u64)>,
    pub anchor: Option<u64>,
    pub linked: bool,
    pub took_ms: u128,
    pub span: Option<SpanCheck>,
    pub verification: Option<LastVerification>,
}

/// `/ui/audit/checkpoints`.
#[derive(serde::Deserialize)]
pub(crate) struct CheckpointsQuery {
    /// `1`: also read the latest checkpoint's events and check them against what it
    /// sealed (thousands of events: asked for, not done on every visit).
    span: Option<u8>,
}

pub(crate) async fn checkpoints(
    State(s): State<AppState>,
    viewer: Viewer,
    axum::extract::Query(q): axum::extract::Query<CheckpointsQuery>,
) -> Response {
    match build(&s, &viewer, q.span == Some(1)).await {
        Ok(page) => viewer.render(StatusCode::OK, &page),
        Err(p) => viewer.refusal(&s, p),
    }
}

async fn build(s: &AppState, viewer: &Viewer, span: bool) -> Result<CheckpointsPage, Problem> {
    let store = audit_store(s, viewer)?;
    let started = Instant::now();
    let last = store
        .last_global_checkpoint()
        .await
        .map_err(Problem::store)?;
    let cps = match &last {
        Some(last) => store
            .global_checkpoints(last.seq.saturating_sub(CHECKED as u64 + 1), CHECKED + 1)
            .await
            .map_err(Problem::store)?,
        None => Vec::new(),
    };
    let checks = chain_checks(&cps, CHECKED);
    let took_ms = started.elapsed().as_millis();
    let span = match cps.last().filter(|_| span) {
        Some(cp) => Some(check_span(store, cp).await?),
        None => None,
    };
    let anchor = (cps.len() > checks.len()).then(|| cps[0].seq);
    let mut lines: Vec<CheckpointLine> = cps[cps.len() - checks.len()..]
        .iter()
        .zip(&checks)
        .map(|(cp, check)| CheckpointLine {
            seq: cp.seq,
            through: cp.through.to_string(),
            events: cp.event_count,
            hash: cp.hash.to_hex(),
            sealed_at: local_s(&s.calendar, cp.sealed_at),
            problems: check.problems.clone(),
        })
        .collect();
    lines.reverse();
    Ok(CheckpointsPage {
        chrome: viewer.chrome(s, Nav::Audit, "/ui/audit/checkpoints"),
        checked: checks
            .first()
            .zip(checks.last())
            .map(|(a, b)| (a.seq, b.seq)),
        linked: checks.iter().all(|c| c.problems.is_empty()),
        anchor,
        lines,
        took_ms,
        span,
        verification: last_verification(store, &s.calendar).await?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn leaves(from: u64, n: u64) -> Vec<Leaf> {
        (from..from + n)
            .map(|i| Leaf {
                position: LogPosition::new(i, i),
                hash: ChainHash([i as u8; 32]),
            })
            .collect()
    }

    /// Checkpoints #1…#n, three events each.
    fn chain(n: u64) -> Vec<GlobalCheckpoint> {
        let mut out: Vec<GlobalCheckpoint> = Vec::new();
        for i in 0..n {
            let cp = GlobalCheckpoint::seal(out.last(), &leaves(1 + 3 * i, 3), Utc::now());
            out.push(cp);
        }
        out
    }

    fn problems(checks: &[LinkCheck]) -> Vec<(u64, Vec<Msg>)> {
        checks
            .iter()
            .filter(|c| !c.problems.is_empty())
            .map(|c| (c.seq, c.problems.clone()))
            .collect()
    }

    #[test]
    fn a_sealed_chain_links_and_the_anchor_is_not_checked() {
        let cps = chain(5);
        let all = chain_checks(&cps, 20);
        assert_eq!(
            all.iter().map(|c| c.seq).collect::<Vec<_>>(),
            [1, 2, 3, 4, 5]
        );
        assert!(problems(&all).is_empty());
        // The last three, #2 read only to anchor #3's link.
        let last = chain_checks(&cps[1..], 3);
        assert_eq!(last.iter().map(|c| c.seq).collect::<Vec<_>>(), [3, 4, 5]);
        assert!(problems(&last).is_empty());
        assert!(chain_checks(&[], 20).is_empty());
    }

    #[test]
    fn a_broken_chain_is_named_where_it_breaks() {
        let cps = chain(5);
        // #3 deleted: #4 follows #2.
        let gap: Vec<_> = cps.iter().filter(|c| c.seq != 3).cloned().collect();
        assert_eq!(
            problems(&chain_checks(&gap, 20)),
            [(4, vec![Msg::CpGap, Msg::CpNotChained, Msg::CpStart])]
        );
        // #2 rebuilt over other events, with a recomputed hash: #3 no longer holds it.
        let mut rebuilt = cps.clone();
        rebuilt[1] = GlobalCheckpoint::seal(Some(&cps[0]), &leaves(4, 2), Utc::now());
        assert_eq!(
            problems(&chain_checks(&rebuilt, 20)),
            [(3, vec![Msg::CpNotChained, Msg::CpStart])]
        );
        // #4's count changed without its hash.
        let mut edited = cps.clone();
        edited[3].event_count = 2;
        assert_eq!(
            problems(&chain_checks(&edited, 20)),
            [(4, vec![Msg::CpNoRecompute, Msg::CpDamaged])]
        );
        // A first checkpoint that chains to something: #1 must chain to zeros.
        let mut forged = cps[..1].to_vec();
        forged[0].prev_hash = ChainHash([9; 32]);
        assert_eq!(
            problems(&chain_checks(&forged, 20)),
            [(1, vec![Msg::CpNoRecompute, Msg::CpNotChained])]
        );
    }

    #[test]
    fn leaves_found_are_compared_with_those_sealed() {
        let sealed = leaves(1, 4);
        let found = |ls: Vec<Leaf>| -> Vec<(Leaf, String)> {
            ls.into_iter()
                .map(|l| (l, format!("e{}", l.position)))
                .collect()
        };
        assert!(compare_leaves(&sealed, &found(sealed.clone())).is_empty());
        let mut changed = sealed.clone();
        changed[1].hash = ChainHash([77; 32]);
        changed.remove(2);
        changed.push(Leaf {
            position: LogPosition::new(9, 9),
            hash: ChainHash([9; 32]),
        });
        let kinds: Vec<(Msg, String)> = compare_leaves(&sealed, &found(changed))
            .into_iter()
            .map(|f| (f.kind, f.position.to_string()))
            .collect();
        assert_eq!(
            kinds,
            [
                (Msg::FindingRelinked, "2.2".into()),
                (Msg::FindingDeleted, "3.3".into()),
                (Msg::FindingInserted, "9.9".into()),
            ]
        );
    }
}

//! What a decision needs from outside its aggregate, looked up by the application layer
//! and passed to the pure domain: the ownership policy in force, the directory of
//! managers (a team's members for assignment by policy, the escalation chain of a
//! complaint), and the counters the policy weighs.
//!
//! The policy and the directory are cached for a short time (`HandlerConfig`): a
//! decision that depends on them for its outcome (assignment by policy, a timer) also
//! guards the versions it read, so a concurrent change makes it decide again on fresh
//! data rather than commit on stale data.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use crm_domain::policy::{Candidate, PolicyEvent, PolicyState, POLICY_STREAM};
use crm_domain::{
    EscalationChain, ManagerId, ManagerRole, ManagerState, Policy, TeamCandidates, TeamId,
};
use crm_eventstore::{EventStore, StoreError};

use crate::cache::Head;
use crate::counters::{counted_key, turn_key, window_keys};
use crate::handler::{CommandError, CommandHandler};

/// Cached copies with the instant they were read.
#[derive(Default)]
pub(crate) struct Lookups {
    policy: Mutex<Option<CachedPolicy>>,
    directory: Mutex<Option<(Vec<ManagerId>, Instant)>>,
}

impl Lookups {
    pub(crate) fn forget_directory(&self) {
        *self.directory.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    pub(crate) fn forget_policy(&self) {
        *self.policy.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

/// The policy as last read: its fold, where the stream stood, and when it was read.
struct CachedPolicy {
    state: PolicyState,
    current: Arc<Policy>,
    head: Head,
    read_at: Instant,
}

/// The members of a team as read for one decision, with their stream versions (for the
/// read guard of the one chosen).
pub(crate) struct Team {
    pub candidates: TeamCandidates,
    pub versions: Vec<(ManagerId, u64)>,
}

impl<S: EventStore + Clone> CommandHandler<S> {
    /// The ownership policy in force and where the policy stream stands. Cached for
    /// `policy_ttl`; `fresh` reads the stream's new events first.
    pub(crate) async fn policy(&self, fresh: bool) -> Result<(Arc<Policy>, Head), CommandError> {
        let (mut state, mut head) = {
            let cached = self
                .lookups
                .policy
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            match cached.as_ref() {
                Some(c) if !fresh && c.read_at.elapsed() < self.config.policy_ttl => {
                    return Ok((c.current.clone(), c.head));
                }
                Some(c) => (c.state.clone(), c.head),
                None => (PolicyState::default(), Head::default()),
            }
        };
        for e in self.store.read_stream(POLICY_STREAM, head.version).await? {
            let event = PolicyEvent::decode(&e.event_type, e.schema_version, &e.payload).map_err(
                |err| StoreError::Corrupt(format!("{} v{}: {err}", e.event_type, e.stream_version)),
            )?;
            state.apply(&event);
            head = Head::new(e.stream_version, Some(e.metadata.occurred_at));
        }
        let current = Arc::new(state.current.clone());
        *self
            .lookups
            .policy
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(CachedPolicy {
            state,
            current: current.clone(),
            head,
            read_at: Instant::now(),
        });
        Ok((current, head))
    }

    /// Every registered manager with its stream version.
    pub(crate) async fn directory(
        &self,
        fresh: bool,
    ) -> Result<Vec<(Arc<ManagerState>, u64)>, CommandError> {
        let cached = self
            .lookups
            .directory
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let ids = match cached {
            Some((ids, at)) if !fresh && at.elapsed() < self.config.directory_ttl => ids,
            _ => {
                let ids: Vec<ManagerId> = self
                    .store
                    .stream_ids_with_prefix("manager-")
                    .await?
                    .iter()
                    .filter_map(|s| s.strip_prefix("manager-")?.parse().ok())
                    .collect();
                *self
                    .lookups
                    .directory
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()) = Some((ids.clone(), Instant::now()));
                ids
            }
        };
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if fresh {
                self.managers.remove(&crate::handler::manager_stream(id));
            }
            let (state, head) = self.load_manager(id).await?;
            if state.is_registered() {
                out.push((state, head.version));
            }
        }
        Ok(out)
    }

    /// The members of `team` as the policy counts them: holdings against the effective
    /// limit, wins in the performance window, and the team's round-robin turn.
    pub(crate) async fn team(
        &self,
        policy: &Policy,
        team: &TeamId,
        now: DateTime<Utc>,
        fresh: bool,
    ) -> Result<Team, CommandError> {
        let members: Vec<(Arc<ManagerState>, u64)> = self
            .directory(fresh)
            .await?
            .into_iter()
            .filter(|(m, _)| m.team.as_ref() == Some(team))
            .collect();
        let window = policy.document.holding.performance_window_days as usize;
        let mut keys = vec![turn_key(team)];
        for (m, _) in &members {
            let id = m.id.expect("registered");
            keys.push(counted_key(policy, id));
            keys.extend(window_keys(policy, id, now));
        }
        let values = self.store.counters(&keys).await?;
        let turn = values[0].max(0) as u64;
        let mut candidates = Vec::with_capacity(members.len());
        let mut versions = Vec::with_capacity(members.len());
        for (i, (m, version)) in members.iter().enumerate() {
            let at = 1 + i * (window + 1);
            let counted = values[at].max(0) as u32;
            let wins: i64 = values[at + 1..at + 1 + window].iter().sum();
            let mut view = m.view(counted).expect("registered managers have a view");
            view.holding_limit = policy.document.holding_limit(team, view.holding_limit);
            candidates.push(Candidate {
                view,
                recent_wins: wins.max(0) as u32,
            });
            versions.push((m.id.expect("registered"), *version));
        }
        Ok(Team {
            candidates: TeamCandidates {
                members: candidates,
                turn,
            },
            versions,
        })
    }

    /// Whom escalations of a customer owned by `owner` go to: an active team lead of the
    /// owner's team, then an active branch manager of the owner's branch (never the
    /// owner; the lowest id when there are several). Read fresh from the store, not from
    /// caches: escalations are rare, and two schedulers must name the same person.
    pub(crate) async fn escalation_chain(
        &self,
        owner: Option<ManagerId>,
    ) -> Result<EscalationChain, CommandError> {
        let Some(owner) = owner else {
            return Ok(EscalationChain::default());
        };
        let directory = self.directory(true).await?;
        let (o, _) = self.load_manager(owner).await?;
        let pick = |role: ManagerRole, same: &dyn Fn(&ManagerState) -> bool| {
            directory
                .iter()
                .map(|(m, _)| m)
                .filter(|m| m.active && m.role == Some(role) && m.id != Some(owner) && same(m))
                .filter_map(|m| m.id)
                .min()
        };
        Ok(EscalationChain {
            team_lead: pick(ManagerRole::TeamLead, &|m| {
                o.team.is_some() && m.team == o.team
            }),
            branch_manager: pick(ManagerRole::BranchManager, &|m| {
                o.branch.is_some() && m.branch == o.branch
            }),
        })
    }
}

/// Defaults of how long looked-up data is trusted before it is read again.
pub const POLICY_TTL: Duration = Duration::from_secs(1);
pub const DIRECTORY_TTL: Duration = Duration::from_secs(5);

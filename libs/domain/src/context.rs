//! What a decision may know besides the aggregate's own state: the time and the actor
//! (from the command), and facts about other aggregates the application looked up.

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};

use crate::ids::{Actor, CustomerId, ManagerId};
use crate::normalize::UniqueKey;
use crate::policy::{Candidate, Policy};
use crate::values::{BranchId, ManagerRole, RegionId, TeamId};

/// Another customer already holds one of this command's unique keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DuplicateMatch {
    pub existing: CustomerId,
    pub key: UniqueKey,
}

/// A manager as the ownership rules see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagerView {
    pub id: ManagerId,
    pub active: bool,
    pub role: ManagerRole,
    pub team: TeamId,
    pub region: RegionId,
    pub branch: BranchId,
    pub holding_limit: u32,
    /// Customers the manager owns now.
    pub holdings: u32,
}

/// Whom an escalation of the customer's complaints goes to: the owner's team lead, then
/// the branch manager.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EscalationChain {
    pub team_lead: Option<ManagerId>,
    pub branch_manager: Option<ManagerId>,
}

impl EscalationChain {
    /// The manager escalation `level` (1 or 2) goes to.
    pub fn at(&self, level: u8) -> Option<ManagerId> {
        match level {
            1 => self.team_lead,
            2 => self.branch_manager,
            _ => None,
        }
    }
}

/// The managers of the team a policy rule names, with the team's round-robin turn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TeamCandidates {
    pub members: Vec<Candidate>,
    pub turn: u64,
}

/// How far a caller's `issued_at` may be from the platform's clock. Rules are judged at
/// the platform's time of receipt; a command stamped further away says the caller's
/// clock is wrong (or that it hopes to be judged at another instant) and is refused.
pub const MAX_CLOCK_SKEW: TimeDelta = TimeDelta::minutes(5);

/// How long before the command a contact may be recorded as made (`occurred_at`): a
/// call logged the next morning, a visit written up after the weekend. The contact is
/// a fact dated when it happened; the rules are judged when it is recorded.
pub const MAX_CONTACT_BACKDATE: TimeDelta = TimeDelta::days(7);

#[derive(Debug, Clone)]
pub struct DecisionContext {
    /// When the command was issued: the only clock the domain knows.
    pub now: DateTime<Utc>,
    pub actor: Actor,
    pub duplicate: Option<DuplicateMatch>,
    /// The manager the command gives a customer (or a referral) to.
    pub manager: Option<ManagerView>,
    /// The ownership policy in force (version 0: built-in defaults).
    pub policy: Arc<Policy>,
    /// For assignment by policy: the team of the matching rule.
    pub candidates: Option<TeamCandidates>,
    /// For escalations: the owner's team lead and branch manager.
    pub escalation: EscalationChain,
    /// For claims from the pool: claims the manager made today (local day).
    pub claims_today: u32,
}

impl DecisionContext {
    pub fn new(now: DateTime<Utc>, actor: Actor) -> Self {
        Self {
            now,
            actor,
            duplicate: None,
            manager: None,
            policy: Policy::defaults(),
            candidates: None,
            escalation: EscalationChain::default(),
            claims_today: 0,
        }
    }

    pub fn with_duplicate(mut self, duplicate: DuplicateMatch) -> Self {
        self.duplicate = Some(duplicate);
        self
    }

    pub fn with_manager(mut self, manager: ManagerView) -> Self {
        self.manager = Some(manager);
        self
    }

    pub fn with_policy(mut self, policy: Arc<Policy>) -> Self {
        self.policy = policy;
        self
    }

    pub fn with_candidates(mut self, candidates: TeamCandidates) -> Self {
        self.candidates = Some(candidates);
        self
    }

    pub fn with_escalation(mut self, escalation: EscalationChain) -> Self {
        self.escalation = escalation;
        self
    }

    pub fn with_claims_today(mut self, claims: u32) -> Self {
        self.claims_today = claims;
        self
    }
}

//! What a decision may know besides the aggregate's own state: the time and the actor
//! (from the command), and facts about other aggregates the application looked up.

use chrono::{DateTime, Utc};

use crate::customer::complaint::SlaPolicy;
use crate::ids::{Actor, CustomerId, ManagerId};
use crate::normalize::UniqueKey;
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

#[derive(Debug, Clone)]
pub struct DecisionContext {
    /// When the command was issued: the only clock the domain knows.
    pub now: DateTime<Utc>,
    pub actor: Actor,
    pub duplicate: Option<DuplicateMatch>,
    /// The manager the command gives a customer (or a referral) to.
    pub manager: Option<ManagerView>,
    pub sla: SlaPolicy,
}

impl DecisionContext {
    pub fn new(now: DateTime<Utc>, actor: Actor) -> Self {
        Self {
            now,
            actor,
            duplicate: None,
            manager: None,
            sla: SlaPolicy::default(),
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

    pub fn with_sla(mut self, sla: SlaPolicy) -> Self {
        self.sla = sla;
        self
    }
}

//! Customer commands: what users and services ask for. Imperative names; every command
//! names its customer first. Time and actor travel in the envelope (`DecisionContext`).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::events::{PoolCause, SlaClock};
use crate::ids::{ComplaintId, ContactId, CustomerId, ManagerId, PurchaseId, ReferralId};
use crate::values::*;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterCustomer {
    pub customer_id: CustomerId,
    pub customer_type: CustomerType,
    pub display_name: String,
    #[serde(default)]
    pub phone: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    /// Required for enterprise customers.
    #[serde(default)]
    pub registration_number: Option<String>,
    pub region: RegionId,
    #[serde(default)]
    pub branch: Option<BranchId>,
    pub first_touch_channel: FirstTouchChannel,
    #[serde(default)]
    pub industry: Option<String>,
    #[serde(default)]
    pub product_interest: Option<String>,
    #[serde(default)]
    pub consents: Option<Consents>,
    /// `lead` (default) or `customer` (an existing client being recorded).
    #[serde(default)]
    pub stage: Option<LifecycleStage>,
    #[serde(default)]
    pub value_tier: Option<ValueTier>,
    #[serde(default)]
    pub aum_minor: Option<i64>,
}

/// Fields given are set; fields left out stay as they are.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct UpdateProfile {
    pub customer_id: CustomerId,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub phone: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub registration_number: Option<String>,
    #[serde(default)]
    pub region: Option<RegionId>,
    #[serde(default)]
    pub branch: Option<BranchId>,
    #[serde(default)]
    pub industry: Option<String>,
    #[serde(default)]
    pub product_interest: Option<String>,
    #[serde(default)]
    pub consents: Option<Consents>,
    #[serde(default)]
    pub aum_minor: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssignOwner {
    pub customer_id: CustomerId,
    pub manager_id: ManagerId,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferOwner {
    pub customer_id: CustomerId,
    pub to_manager_id: ManagerId,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseToPool {
    pub customer_id: CustomerId,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimFromPool {
    pub customer_id: CustomerId,
    pub manager_id: ManagerId,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordContact {
    pub customer_id: CustomerId,
    pub contact_id: ContactId,
    /// The staff member who made or took the contact.
    pub manager_id: ManagerId,
    pub channel: ContactChannel,
    pub direction: Direction,
    pub outcome: ContactOutcome,
    #[serde(default)]
    pub summary: Option<String>,
    #[serde(default)]
    pub next_follow_up_at: Option<DateTime<Utc>>,
    /// When the contact happened, if before the command (at most
    /// [`crate::context::MAX_CONTACT_BACKDATE`] before): the contact's date, never the
    /// instant the rules are judged at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub occurred_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogComplaint {
    pub customer_id: CustomerId,
    pub complaint_id: ComplaintId,
    pub severity: Severity,
    pub category: String,
    pub description: String,
    pub channel: ContactChannel,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcknowledgeComplaint {
    pub customer_id: CustomerId,
    pub complaint_id: ComplaintId,
    pub by: ManagerId,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EscalateComplaint {
    pub customer_id: CustomerId,
    pub complaint_id: ComplaintId,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolveComplaint {
    pub customer_id: CustomerId,
    pub complaint_id: ComplaintId,
    pub resolved_by: ManagerId,
    pub resolution: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReopenComplaint {
    pub customer_id: CustomerId,
    pub complaint_id: ComplaintId,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloseComplaint {
    pub customer_id: CustomerId,
    pub complaint_id: ComplaintId,
    /// 1..=5
    #[serde(default)]
    pub satisfaction: Option<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordPurchase {
    pub customer_id: CustomerId,
    pub purchase_id: PurchaseId,
    pub product_line: String,
    pub amount_minor: i64,
    pub currency: String,
    #[serde(default)]
    pub manager_id: Option<ManagerId>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordReferral {
    pub customer_id: CustomerId,
    pub referral_id: ReferralId,
    /// Staff id of whoever hands the customer over (earns the credit).
    pub referrer: String,
    pub referred_to: ManagerId,
    #[serde(default)]
    pub note: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeLifecycleStage {
    pub customer_id: CustomerId,
    pub to: LifecycleStage,
    pub reason: String,
}

/// Let the ownership policy choose the team and manager (客户归属原则).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssignByPolicy {
    pub customer_id: CustomerId,
    #[serde(default)]
    pub reason: Option<String>,
}

/// Exempt the customer from automatic return to the pool (forever without `until`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockOwnership {
    pub customer_id: CustomerId,
    #[serde(default)]
    pub until: Option<DateTime<Utc>>,
    pub reason: String,
}

/// Erase the customer's personal data (PIPL/GDPR): the customer's key is destroyed, so
/// every personal field ever recorded becomes unreadable everywhere; the history, its
/// hash chains and the KPIs stay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EraseCustomerData {
    pub customer_id: CustomerId,
    /// The request it fulfils (ticket reference, legal basis).
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnlockOwnership {
    pub customer_id: CustomerId,
    pub reason: String,
}

/// A time-driven rule that has come due (issued by the scheduler, never by the public
/// ingress). `decide` accepts it only if the customer's own state says it is due now
/// (`timers::due`). The fields name the deadline the rule computed, so the same lapse
/// always gives the same timer (and the scheduler the same command id).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "timer", rename_all = "snake_case")]
pub enum Timer {
    /// Warn the owner K days before an automatic return.
    PoolReturnWarning {
        cause: PoolCause,
        returns_at: DateTime<Utc>,
    },
    /// Return the customer to the pool.
    PoolReturn {
        cause: PoolCause,
        due_at: DateTime<Utc>,
    },
    /// A complaint clock is nearing breach.
    SlaWarning {
        complaint_id: ComplaintId,
        clock: SlaClock,
        due_at: DateTime<Utc>,
    },
    /// A complaint clock ran out: breach, then escalate one level.
    SlaBreach {
        complaint_id: ComplaintId,
        clock: SlaClock,
        due_at: DateTime<Utc>,
    },
    /// No activity for the dormancy period.
    Dormancy { due_at: DateTime<Utc> },
}

impl Timer {
    /// Stable snake_case name (metrics, logs).
    pub fn name(&self) -> &'static str {
        match self {
            Timer::PoolReturnWarning { .. } => "timer_pool_return_warning",
            Timer::PoolReturn { .. } => "timer_pool_return",
            Timer::SlaWarning { .. } => "timer_sla_warning",
            Timer::SlaBreach { .. } => "timer_sla_breach",
            Timer::Dormancy { .. } => "timer_dormancy",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyTimer {
    pub customer_id: CustomerId,
    pub timer: Timer,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", content = "data", rename_all = "snake_case")]
pub enum CustomerCommand {
    Register(RegisterCustomer),
    UpdateProfile(UpdateProfile),
    AssignOwner(AssignOwner),
    TransferOwner(TransferOwner),
    ReleaseToPool(ReleaseToPool),
    ClaimFromPool(ClaimFromPool),
    RecordContact(RecordContact),
    LogComplaint(LogComplaint),
    AcknowledgeComplaint(AcknowledgeComplaint),
    EscalateComplaint(EscalateComplaint),
    ResolveComplaint(ResolveComplaint),
    ReopenComplaint(ReopenComplaint),
    CloseComplaint(CloseComplaint),
    RecordPurchase(RecordPurchase),
    RecordReferral(RecordReferral),
    ChangeLifecycleStage(ChangeLifecycleStage),
    AssignByPolicy(AssignByPolicy),
    LockOwnership(LockOwnership),
    UnlockOwnership(UnlockOwnership),
    EraseCustomerData(EraseCustomerData),
    ApplyTimer(ApplyTimer),
}

impl CustomerCommand {
    pub fn customer_id(&self) -> CustomerId {
        use CustomerCommand::*;
        match self {
            Register(c) => c.customer_id,
            UpdateProfile(c) => c.customer_id,
            AssignOwner(c) => c.customer_id,
            TransferOwner(c) => c.customer_id,
            ReleaseToPool(c) => c.customer_id,
            ClaimFromPool(c) => c.customer_id,
            RecordContact(c) => c.customer_id,
            LogComplaint(c) => c.customer_id,
            AcknowledgeComplaint(c) => c.customer_id,
            EscalateComplaint(c) => c.customer_id,
            ResolveComplaint(c) => c.customer_id,
            ReopenComplaint(c) => c.customer_id,
            CloseComplaint(c) => c.customer_id,
            RecordPurchase(c) => c.customer_id,
            RecordReferral(c) => c.customer_id,
            ChangeLifecycleStage(c) => c.customer_id,
            AssignByPolicy(c) => c.customer_id,
            LockOwnership(c) => c.customer_id,
            EraseCustomerData(c) => c.customer_id,
            UnlockOwnership(c) => c.customer_id,
            ApplyTimer(c) => c.customer_id,
        }
    }

    /// Stable snake_case name (metrics, NATS subjects, HTTP paths).
    pub fn name(&self) -> &'static str {
        use CustomerCommand::*;
        match self {
            Register(_) => "register_customer",
            UpdateProfile(_) => "update_profile",
            AssignOwner(_) => "assign_owner",
            TransferOwner(_) => "transfer_owner",
            ReleaseToPool(_) => "release_to_pool",
            ClaimFromPool(_) => "claim_from_pool",
            RecordContact(_) => "record_contact",
            LogComplaint(_) => "log_complaint",
            AcknowledgeComplaint(_) => "acknowledge_complaint",
            EscalateComplaint(_) => "escalate_complaint",
            ResolveComplaint(_) => "resolve_complaint",
            ReopenComplaint(_) => "reopen_complaint",
            CloseComplaint(_) => "close_complaint",
            RecordPurchase(_) => "record_purchase",
            RecordReferral(_) => "record_referral",
            ChangeLifecycleStage(_) => "change_lifecycle_stage",
            AssignByPolicy(_) => "assign_by_policy",
            LockOwnership(_) => "lock_ownership",
            UnlockOwnership(_) => "unlock_ownership",
            EraseCustomerData(_) => "erase_customer_data",
            ApplyTimer(c) => c.timer.name(),
        }
    }
}

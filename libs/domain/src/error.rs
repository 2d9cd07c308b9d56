//! Every refusal, each with a stable machine code and a message naming the rule.

use chrono::{DateTime, Utc};

use crate::ids::{ComplaintId, CustomerId, ManagerId, PurchaseId, ReferralId};
use crate::values::{LifecycleStage, TeamId};

/// How transports should classify a refusal (HTTP 404 / 409 / 422).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The command names something that does not exist.
    NotFound,
    /// The command contradicts the current state (already done, wrong step).
    Conflict,
    /// The command itself is malformed or meaningless.
    Validation,
    /// A business rule forbids it now.
    RuleViolation,
}

/// A command refused by a business rule. Nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("field {field} is invalid: {reason}")]
    InvalidField { field: String, reason: String },
    /// A rule across the command's fields (named in the contract: a protovalidate rule
    /// of the command's message with the same id).
    #[error("{}", .0.message())]
    RuleBroken(CommandRule),
    #[error("the command changes nothing")]
    NothingToChange,
    #[error("customer {0} is not registered")]
    UnknownCustomer(CustomerId),
    #[error("customer {0} is already registered")]
    AlreadyRegistered(CustomerId),
    #[error("a customer with the same {key} is already registered as {existing}; duplicates are caught before a second record is created")]
    DuplicateCustomer { existing: CustomerId, key: String },
    #[error("manager {0} is not registered")]
    UnknownManager(ManagerId),
    #[error("manager {0} is already registered")]
    ManagerAlreadyRegistered(ManagerId),
    #[error("manager {0} is inactive; inactive managers receive no customers")]
    ManagerInactive(ManagerId),
    #[error("manager {manager} is already {state}")]
    ManagerAlready {
        manager: ManagerId,
        state: &'static str,
    },
    #[error(
        "manager {manager} holds {holdings} customers; the holding limit of {limit} is reached"
    )]
    HoldingLimitReached {
        manager: ManagerId,
        holdings: u32,
        limit: u32,
    },
    #[error("customer {customer} is owned by {owner}; one owner at a time: transfer instead")]
    AlreadyOwned {
        customer: CustomerId,
        owner: ManagerId,
    },
    #[error("customer {customer} is owned by {owner}, not in the pool")]
    NotInPool {
        customer: CustomerId,
        owner: ManagerId,
    },
    #[error("customer {0} has no owner (it is in the pool)")]
    NotOwned(CustomerId),
    #[error("customer {customer} is already owned by {manager}")]
    SameOwner {
        customer: CustomerId,
        manager: ManagerId,
    },
    #[error("customer {0} has not consented to SMS; an SMS contact needs recorded consent")]
    SmsConsentMissing(CustomerId),
    #[error("complaint {0} does not exist for this customer")]
    UnknownComplaint(ComplaintId),
    #[error("complaint {0} already exists")]
    ComplaintAlreadyExists(ComplaintId),
    #[error("complaint {complaint} is closed; a closed complaint cannot be {action}")]
    ComplaintClosed {
        complaint: ComplaintId,
        action: &'static str,
    },
    #[error("complaint {complaint} is {status}; it cannot be {action}")]
    InvalidComplaintTransition {
        complaint: ComplaintId,
        status: &'static str,
        action: &'static str,
    },
    #[error("complaint {0} is already escalated to the branch manager, the last level")]
    EscalationExhausted(ComplaintId),
    #[error("a customer cannot move from stage {from} to {to}")]
    InvalidStageTransition {
        from: LifecycleStage,
        to: LifecycleStage,
    },
    #[error("purchase {0} is already recorded")]
    DuplicatePurchase(PurchaseId),
    #[error("referral {0} is already recorded")]
    DuplicateReferral(ReferralId),
    #[error("customer {customer} is protected for {holder}, who touched it first, until {until}")]
    OwnershipProtected {
        customer: CustomerId,
        holder: String,
        until: DateTime<Utc>,
    },
    #[error("no rule of policy version {policy_version} matches customer {customer}")]
    NoRuleMatched {
        customer: CustomerId,
        policy_version: u32,
    },
    #[error("rule {rule:?} names team {team}, where no active manager is under the holding limit")]
    NoEligibleManager { rule: String, team: TeamId },
    #[error("manager {manager} has made {cap} claims from the pool today, the daily cap")]
    ClaimCapReached { manager: ManagerId, cap: u32 },
    #[error("manager {manager} released this customer and may not claim it back before {until}")]
    ReclaimCooldown {
        manager: ManagerId,
        until: DateTime<Utc>,
    },
    #[error("customer {0} is already locked against automatic return to the pool")]
    AlreadyLocked(CustomerId),
    #[error("customer {0} is not locked")]
    NotLocked(CustomerId),
    #[error("the personal data of customer {0} was already erased")]
    AlreadyErased(CustomerId),
    #[error("the personal data of customer {0} was erased: no new personal data (name, phone, e-mail, registration number, free text) can be recorded for it")]
    PersonalDataErased(CustomerId),
    #[error("the {timer} timer is not due for this customer now (already applied, moved by newer events, or early)")]
    TimerNotDue { timer: &'static str },
}

/// The rules across a command's fields, each with the id the contract gives it
/// (`proto/crm/v1/commands.proto`, `(buf.validate.message).cel`) and the problem's code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandRule {
    /// register_customer: one of phone, e-mail or registration number.
    ContactKeyRequired,
    /// register_customer: an enterprise's registration number.
    EnterpriseRegistrationNumberRequired,
}

impl CommandRule {
    pub const ALL: &'static [CommandRule] = &[
        CommandRule::ContactKeyRequired,
        CommandRule::EnterpriseRegistrationNumberRequired,
    ];

    pub fn id(self) -> &'static str {
        match self {
            CommandRule::ContactKeyRequired => "customer.contact_key_required",
            CommandRule::EnterpriseRegistrationNumberRequired => {
                "customer.enterprise_registration_number_required"
            }
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            CommandRule::ContactKeyRequired => {
                "at least one of phone, email or registration_number is needed to catch duplicates"
            }
            CommandRule::EnterpriseRegistrationNumberRequired => {
                "an enterprise customer needs its registration number"
            }
        }
    }
}

impl DomainError {
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        DomainError::InvalidField {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// Stable, documented machine code (`docs/api.md`).
    pub fn code(&self) -> &'static str {
        use DomainError::*;
        match self {
            InvalidField { .. } => "validation.invalid_field",
            RuleBroken(rule) => rule.id(),
            NothingToChange => "command.nothing_to_change",
            UnknownCustomer(_) => "customer.unknown",
            AlreadyRegistered(_) => "customer.already_registered",
            DuplicateCustomer { .. } => "customer.duplicate",
            UnknownManager(_) => "manager.unknown",
            ManagerAlreadyRegistered(_) => "manager.already_registered",
            ManagerInactive(_) => "manager.inactive",
            ManagerAlready { .. } => "manager.invalid_transition",
            HoldingLimitReached { .. } => "ownership.holding_limit_reached",
            AlreadyOwned { .. } => "ownership.already_owned",
            NotInPool { .. } => "ownership.not_in_pool",
            NotOwned(_) => "ownership.not_owned",
            SameOwner { .. } => "ownership.same_owner",
            SmsConsentMissing(_) => "contact.sms_consent_missing",
            UnknownComplaint(_) => "complaint.unknown",
            ComplaintAlreadyExists(_) => "complaint.already_exists",
            ComplaintClosed { .. } => "complaint.closed",
            InvalidComplaintTransition { .. } => "complaint.invalid_transition",
            EscalationExhausted(_) => "complaint.escalation_exhausted",
            InvalidStageTransition { .. } => "lifecycle.invalid_transition",
            DuplicatePurchase(_) => "purchase.already_recorded",
            DuplicateReferral(_) => "referral.already_recorded",
            OwnershipProtected { .. } => "ownership.protected",
            NoRuleMatched { .. } => "policy.no_rule_matched",
            NoEligibleManager { .. } => "policy.no_eligible_manager",
            ClaimCapReached { .. } => "pool.claim_cap_reached",
            ReclaimCooldown { .. } => "pool.reclaim_cooldown",
            AlreadyLocked(_) => "ownership.already_locked",
            NotLocked(_) => "ownership.not_locked",
            AlreadyErased(_) => "customer.already_erased",
            PersonalDataErased(_) => "customer.personal_data_erased",
            TimerNotDue { .. } => "timer.not_due",
        }
    }

    pub fn kind(&self) -> ErrorKind {
        use DomainError::*;
        match self {
            InvalidField { .. } | RuleBroken(_) | NothingToChange => ErrorKind::Validation,
            UnknownCustomer(_) | UnknownManager(_) | UnknownComplaint(_) => ErrorKind::NotFound,
            ManagerInactive(_)
            | HoldingLimitReached { .. }
            | SmsConsentMissing(_)
            | EscalationExhausted(_)
            | InvalidStageTransition { .. }
            | OwnershipProtected { .. }
            | NoRuleMatched { .. }
            | NoEligibleManager { .. }
            | ClaimCapReached { .. }
            | ReclaimCooldown { .. } => ErrorKind::RuleViolation,
            _ => ErrorKind::Conflict,
        }
    }
}

/// Every code, for documentation and tests.
pub const ALL_CODES: &[&str] = &[
    "validation.invalid_field",
    "customer.contact_key_required",
    "customer.enterprise_registration_number_required",
    "command.nothing_to_change",
    "customer.unknown",
    "customer.already_registered",
    "customer.duplicate",
    "manager.unknown",
    "manager.already_registered",
    "manager.inactive",
    "manager.invalid_transition",
    "ownership.holding_limit_reached",
    "ownership.already_owned",
    "ownership.not_in_pool",
    "ownership.not_owned",
    "ownership.same_owner",
    "contact.sms_consent_missing",
    "complaint.unknown",
    "complaint.already_exists",
    "complaint.closed",
    "complaint.invalid_transition",
    "complaint.escalation_exhausted",
    "lifecycle.invalid_transition",
    "purchase.already_recorded",
    "referral.already_recorded",
    "ownership.protected",
    "policy.no_rule_matched",
    "policy.no_eligible_manager",
    "pool.claim_cap_reached",
    "pool.reclaim_cooldown",
    "ownership.already_locked",
    "ownership.not_locked",
    "timer.not_due",
];

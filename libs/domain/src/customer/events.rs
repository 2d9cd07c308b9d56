//! Customer events: the facts, past tense, immutable. This file is the event catalogue
//! for the customer stream (`docs/events.md` mirrors it). Every payload carries the
//! customer id so a consumer never needs the stream id to route it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::event_codec::{decode_payload, DecodeError};
use crate::ids::{Actor, ComplaintId, ContactId, CustomerId, ManagerId, PurchaseId, ReferralId};
use crate::policy::Distribution;
use crate::values::*;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerRegistered {
    pub customer_id: CustomerId,
    pub customer_type: CustomerType,
    pub display_name: String,
    /// Normalised (E.164).
    pub phone: Option<String>,
    /// Normalised (lower case).
    pub email: Option<String>,
    /// Normalised (upper case, no separators).
    pub registration_number: Option<String>,
    pub region: RegionId,
    pub branch: Option<BranchId>,
    pub first_touch_channel: FirstTouchChannel,
    pub industry: Option<String>,
    pub product_interest: Option<String>,
    pub consents: Consents,
    pub stage: LifecycleStage,
    pub value_tier: ValueTier,
    pub aum_minor: Option<i64>,
    pub registered_at: DateTime<Utc>,
}

/// Only the fields that changed are present.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ProfileUpdated {
    pub customer_id: CustomerId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration_number: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<RegionId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<BranchId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub industry: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product_interest: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consents: Option<Consents>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aum_minor: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnerAssigned {
    pub customer_id: CustomerId,
    pub manager_id: ManagerId,
    pub team: TeamId,
    pub region: RegionId,
    pub previous_owner: Option<ManagerId>,
    pub reason: String,
    /// Who decided (a person or a service); policy-driven assignment adds the policy.
    pub assigned_by: Actor,
    /// When it happened (absent in events stored before the field existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<DateTime<Utc>>,
    /// Present when the policy chose the manager: which version and rule, and how.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<PolicyDecision>,
}

/// Why the policy chose this manager: an auditor's answer to "why him?".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyDecision {
    pub policy_version: u32,
    pub rule: String,
    /// Position of the rule in the policy (0 = first).
    pub rule_index: u32,
    pub method: Distribution,
    /// Managers of the team who could receive when the choice was made.
    pub eligible: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnershipTransferred {
    pub customer_id: CustomerId,
    pub from_manager: ManagerId,
    pub to_manager: ManagerId,
    pub to_team: TeamId,
    pub to_region: RegionId,
    pub reason: String,
    pub transferred_by: Actor,
    /// When it happened (absent in events stored before the field existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleasedToPool {
    pub customer_id: CustomerId,
    pub previous_owner: ManagerId,
    pub reason: String,
    pub released_by: Actor,
    /// When it happened (absent in events stored before the field existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<DateTime<Utc>>,
    /// Present when a pool rule returned the customer (公海规则), not a person.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<PoolReturn>,
}

/// Which pool rule lapsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PoolCause {
    /// No contact by the owner for N days.
    NoContact,
    /// A lead not won M days after its owner received it.
    LeadNotWon,
}

impl PoolCause {
    pub fn as_str(self) -> &'static str {
        match self {
            PoolCause::NoContact => "no_contact",
            PoolCause::LeadNotWon => "lead_not_won",
        }
    }
}

/// An automatic return to the pool: the rule, its deadline and the policy version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolReturn {
    pub cause: PoolCause,
    pub due_at: DateTime<Utc>,
    pub policy_version: u32,
}

/// The owner is warned K days ahead that the customer will return to the pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolReturnWarned {
    pub customer_id: CustomerId,
    pub owner: ManagerId,
    pub cause: PoolCause,
    pub returns_at: DateTime<Utc>,
    pub policy_version: u32,
}

/// Exempt from automatic return to the pool until `until` (forever when absent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnershipLocked {
    pub customer_id: CustomerId,
    pub until: Option<DateTime<Utc>>,
    pub reason: String,
    pub locked_by: Actor,
    pub at: DateTime<Utc>,
}

/// The customer's personal data was erased: the key that encrypts its personal fields
/// was destroyed (crypto-shredding). Nothing personal is in this event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersonalDataErased {
    pub customer_id: CustomerId,
    pub reason: String,
    pub erased_by: Actor,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnershipUnlocked {
    pub customer_id: CustomerId,
    pub reason: String,
    pub unlocked_by: Actor,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimedFromPool {
    pub customer_id: CustomerId,
    pub manager_id: ManagerId,
    pub team: TeamId,
    pub region: RegionId,
    /// When it happened (absent in events stored before the field existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactRecorded {
    pub customer_id: CustomerId,
    pub contact_id: ContactId,
    pub manager_id: ManagerId,
    /// The contact was made by the customer's owner at the time (KPI: contact coverage).
    pub by_owner: bool,
    pub channel: ContactChannel,
    pub direction: Direction,
    pub outcome: ContactOutcome,
    pub summary: Option<String>,
    pub contacted_at: DateTime<Utc>,
    pub next_follow_up_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComplaintLogged {
    pub customer_id: CustomerId,
    pub complaint_id: ComplaintId,
    pub severity: Severity,
    pub category: String,
    pub description: String,
    pub channel: ContactChannel,
    /// Owner of the customer when the complaint arrived (KPIs count it against them).
    pub owner: Option<ManagerId>,
    pub logged_at: DateTime<Utc>,
    pub first_response_due_at: DateTime<Utc>,
    pub resolution_due_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComplaintAcknowledged {
    pub customer_id: CustomerId,
    pub complaint_id: ComplaintId,
    pub by: ManagerId,
    /// Seconds from logging to this first response.
    pub response_seconds: i64,
    pub within_sla: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComplaintEscalated {
    pub customer_id: CustomerId,
    pub complaint_id: ComplaintId,
    /// 1 = team lead, 2 = branch manager.
    pub level: u8,
    pub reason: String,
    /// The team lead or branch manager it went to, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escalated_to: Option<ManagerId>,
    /// Raised by a breached clock, not by a person.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub automatic: bool,
}

/// The two complaint clocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SlaClock {
    FirstResponse,
    Resolution,
}

impl SlaClock {
    pub fn as_str(self) -> &'static str {
        match self {
            SlaClock::FirstResponse => "first_response",
            SlaClock::Resolution => "resolution",
        }
    }
}

/// A clock is nearing breach (its warning share has run).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComplaintSlaWarned {
    pub customer_id: CustomerId,
    pub complaint_id: ComplaintId,
    pub clock: SlaClock,
    pub due_at: DateTime<Utc>,
}

/// A clock ran out before the response or resolution.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComplaintSlaBreached {
    pub customer_id: CustomerId,
    pub complaint_id: ComplaintId,
    pub clock: SlaClock,
    pub due_at: DateTime<Utc>,
    /// The customer's owner when it was breached (KPIs count it against them).
    pub owner: Option<ManagerId>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComplaintResolved {
    pub customer_id: CustomerId,
    pub complaint_id: ComplaintId,
    pub resolved_by: ManagerId,
    pub resolution: String,
    /// Seconds from logging (or the last reopening) to this resolution.
    pub resolution_seconds: i64,
    pub within_sla: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComplaintReopened {
    pub customer_id: CustomerId,
    pub complaint_id: ComplaintId,
    pub reason: String,
    /// The reopening counts against this resolver.
    pub previous_resolver: ManagerId,
    pub reopened_at: DateTime<Utc>,
    pub resolution_due_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComplaintClosed {
    pub customer_id: CustomerId,
    pub complaint_id: ComplaintId,
    pub satisfaction: Option<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurchaseRecorded {
    pub customer_id: CustomerId,
    pub purchase_id: PurchaseId,
    pub product_line: String,
    pub amount_minor: i64,
    pub currency: String,
    pub manager_id: Option<ManagerId>,
    /// When it happened (absent in events stored before the field existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReferralRecorded {
    pub customer_id: CustomerId,
    pub referral_id: ReferralId,
    pub referrer: String,
    pub referred_to: ManagerId,
    pub note: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReferralConverted {
    pub customer_id: CustomerId,
    pub referral_id: ReferralId,
    /// Earns the credit.
    pub referrer: String,
    pub referred_to: ManagerId,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LifecycleStageChanged {
    pub customer_id: CustomerId,
    pub from: LifecycleStage,
    pub to: LifecycleStage,
    pub reason: String,
    /// A dormant or churned customer came back to active.
    pub reactivated: bool,
    /// When it happened (absent in events stored before the field existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<DateTime<Utc>>,
    /// Moved by time (dormancy), not by a person or a contact.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub automatic: bool,
}

/// The value tier follows max(AUM, purchases recorded) across the policy's thresholds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValueTierChanged {
    pub customer_id: CustomerId,
    pub from: ValueTier,
    pub to: ValueTier,
    pub basis_minor: i64,
    pub policy_version: u32,
}

macro_rules! customer_events {
    ($($variant:ident),* $(,)?) => {
        #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(tag = "type", content = "data")]
        pub enum CustomerEvent { $($variant($variant)),* }

        impl CustomerEvent {
            pub const TYPES: &'static [&'static str] = &[$(stringify!($variant)),*];

            /// Stable type name (PascalCase), stored beside the payload.
            pub fn event_type(&self) -> &'static str {
                match self { $(CustomerEvent::$variant(_) => stringify!($variant)),* }
            }

            pub fn customer_id(&self) -> CustomerId {
                match self { $(CustomerEvent::$variant(e) => e.customer_id),* }
            }

            /// The event's own fields, as stored in the payload column.
            pub fn payload(&self) -> serde_json::Value {
                match self { $(CustomerEvent::$variant(e) => serde_json::to_value(e)),* }
                    .expect("events serialise")
            }

            /// The event's own fields as JSON text, in the order its type declares them
            /// (the query service answers a timeline's payloads in this form, whatever key
            /// order the store holds).
            pub fn payload_text(&self) -> String {
                match self { $(CustomerEvent::$variant(e) => serde_json::to_string(e)),* }
                    .expect("events serialise")
            }

            pub fn decode<P: crate::event_codec::Payload + ?Sized>(event_type: &str, schema_version: u32, payload: &P) -> Result<Self, DecodeError> {
                if schema_version != Self::SCHEMA_VERSION {
                    return Err(DecodeError::UnknownVersion(event_type.to_string(), schema_version));
                }
                match event_type {
                    $(stringify!($variant) => Ok(CustomerEvent::$variant(decode_payload(event_type, payload)?)),)*
                    other => Err(DecodeError::UnknownType(other.to_string())),
                }
            }
        }
    };
}

customer_events!(
    CustomerRegistered,
    ProfileUpdated,
    OwnerAssigned,
    OwnershipTransferred,
    ReleasedToPool,
    ClaimedFromPool,
    ContactRecorded,
    ComplaintLogged,
    ComplaintAcknowledged,
    ComplaintEscalated,
    ComplaintResolved,
    ComplaintReopened,
    ComplaintClosed,
    PurchaseRecorded,
    ReferralRecorded,
    ReferralConverted,
    LifecycleStageChanged,
    ValueTierChanged,
    PoolReturnWarned,
    OwnershipLocked,
    OwnershipUnlocked,
    ComplaintSlaWarned,
    ComplaintSlaBreached,
    PersonalDataErased,
);

impl CustomerEvent {
    pub const SCHEMA_VERSION: u32 = 1;
}

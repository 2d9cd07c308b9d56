//! Customer events: the facts, past tense, immutable. This file is the event catalogue
//! for the customer stream (`docs/events.md` mirrors it). Every payload carries the
//! customer id so a consumer never needs the stream id to route it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::event_codec::{decode_payload, DecodeError};
use crate::ids::{Actor, ComplaintId, ContactId, CustomerId, ManagerId, PurchaseId, ReferralId};
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
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleasedToPool {
    pub customer_id: CustomerId,
    pub previous_owner: ManagerId,
    pub reason: String,
    pub released_by: Actor,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimedFromPool {
    pub customer_id: CustomerId,
    pub manager_id: ManagerId,
    pub team: TeamId,
    pub region: RegionId,
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

            pub fn decode(event_type: &str, schema_version: u32, payload: &serde_json::Value) -> Result<Self, DecodeError> {
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
);

impl CustomerEvent {
    pub const SCHEMA_VERSION: u32 = 1;
}

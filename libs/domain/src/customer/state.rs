//! The customer aggregate's state, folded from its events; `Default` is "not registered".

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};

use super::complaint::{ComplaintState, ComplaintStatus};
use super::events::*;
use crate::ids::{ComplaintId, CustomerId, ManagerId, PurchaseId, ReferralId};
use crate::normalize::UniqueKey;
use crate::values::*;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReferralState {
    pub referrer: String,
    pub referred_to: ManagerId,
    pub converted: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CustomerState {
    pub id: Option<CustomerId>,
    pub customer_type: Option<CustomerType>,
    pub display_name: String,
    pub phone: Option<String>,
    pub email: Option<String>,
    pub registration_number: Option<String>,
    pub region: Option<RegionId>,
    pub branch: Option<BranchId>,
    pub first_touch_channel: Option<FirstTouchChannel>,
    pub industry: Option<String>,
    pub product_interest: Option<String>,
    pub consents: Consents,
    pub stage: Option<LifecycleStage>,
    pub value_tier: Option<ValueTier>,
    pub aum_minor: Option<i64>,
    pub owner: Option<ManagerId>,
    pub previous_owner: Option<ManagerId>,
    pub registered_at: Option<DateTime<Utc>>,
    pub last_contact_at: Option<DateTime<Utc>>,
    pub complaints: BTreeMap<ComplaintId, ComplaintState>,
    pub referrals: BTreeMap<ReferralId, ReferralState>,
    pub purchases: BTreeSet<PurchaseId>,
    pub purchases_total_minor: i64,
    /// Events applied: the stream version this state is at.
    pub version: u64,
}

impl CustomerState {
    pub fn is_registered(&self) -> bool {
        self.id.is_some()
    }

    /// Keys no other customer may hold while this one does.
    pub fn unique_keys(&self) -> Vec<UniqueKey> {
        let mut keys = Vec::new();
        if let Some(p) = &self.phone {
            keys.push(UniqueKey::phone(p));
        }
        if let Some(e) = &self.email {
            keys.push(UniqueKey::email(e));
        }
        if let Some(r) = &self.registration_number {
            keys.push(UniqueKey::registration_number(r));
        }
        keys
    }

    /// Apply one event. Events carry every instant the rules need, so the state is a
    /// pure fold of the stream.
    pub fn apply(&mut self, event: &CustomerEvent) {
        self.version += 1;
        match event {
            CustomerEvent::CustomerRegistered(e) => {
                let version = self.version;
                *self = CustomerState {
                    id: Some(e.customer_id),
                    customer_type: Some(e.customer_type),
                    display_name: e.display_name.clone(),
                    phone: e.phone.clone(),
                    email: e.email.clone(),
                    registration_number: e.registration_number.clone(),
                    region: Some(e.region.clone()),
                    branch: e.branch.clone(),
                    first_touch_channel: Some(e.first_touch_channel),
                    industry: e.industry.clone(),
                    product_interest: e.product_interest.clone(),
                    consents: e.consents,
                    stage: Some(e.stage),
                    value_tier: Some(e.value_tier),
                    aum_minor: e.aum_minor,
                    registered_at: Some(e.registered_at),
                    version,
                    ..CustomerState::default()
                };
            }
            CustomerEvent::ProfileUpdated(e) => {
                macro_rules! set {
                    ($($f:ident),*) => {$( if let Some(v) = &e.$f { self.$f = Some(v.clone()); } )*};
                }
                set!(
                    phone,
                    email,
                    registration_number,
                    region,
                    branch,
                    industry,
                    product_interest,
                    aum_minor
                );
                if let Some(v) = &e.display_name {
                    self.display_name = v.clone();
                }
                if let Some(v) = e.consents {
                    self.consents = v;
                }
            }
            CustomerEvent::OwnerAssigned(e) => self.change_owner(Some(e.manager_id)),
            CustomerEvent::OwnershipTransferred(e) => self.change_owner(Some(e.to_manager)),
            CustomerEvent::ReleasedToPool(_) => self.change_owner(None),
            CustomerEvent::ClaimedFromPool(e) => self.change_owner(Some(e.manager_id)),
            CustomerEvent::ContactRecorded(e) => self.last_contact_at = Some(e.contacted_at),
            CustomerEvent::ComplaintLogged(e) => {
                let logged_at = e.logged_at;
                self.complaints.insert(
                    e.complaint_id,
                    ComplaintState {
                        id: e.complaint_id,
                        severity: e.severity,
                        category: e.category.clone(),
                        status: ComplaintStatus::Open,
                        logged_at,
                        clock_started_at: logged_at,
                        first_response_due_at: e.first_response_due_at,
                        resolution_due_at: e.resolution_due_at,
                        escalation_level: 0,
                        resolved_by: None,
                        reopen_count: 0,
                        satisfaction: None,
                    },
                );
            }
            CustomerEvent::ComplaintAcknowledged(e) => {
                self.complaint(e.complaint_id, |c| c.status = ComplaintStatus::Acknowledged)
            }
            CustomerEvent::ComplaintEscalated(e) => {
                self.complaint(e.complaint_id, |c| c.escalation_level = e.level)
            }
            CustomerEvent::ComplaintResolved(e) => self.complaint(e.complaint_id, |c| {
                c.status = ComplaintStatus::Resolved;
                c.resolved_by = Some(e.resolved_by);
            }),
            CustomerEvent::ComplaintReopened(e) => self.complaint(e.complaint_id, |c| {
                c.status = ComplaintStatus::Acknowledged;
                c.reopen_count += 1;
                c.clock_started_at = e.reopened_at;
                c.resolution_due_at = e.resolution_due_at;
            }),
            CustomerEvent::ComplaintClosed(e) => self.complaint(e.complaint_id, |c| {
                c.status = ComplaintStatus::Closed;
                c.satisfaction = e.satisfaction;
            }),
            CustomerEvent::PurchaseRecorded(e) => {
                self.purchases.insert(e.purchase_id);
                self.purchases_total_minor += e.amount_minor;
            }
            CustomerEvent::ReferralRecorded(e) => {
                self.referrals.insert(
                    e.referral_id,
                    ReferralState {
                        referrer: e.referrer.clone(),
                        referred_to: e.referred_to,
                        converted: false,
                    },
                );
            }
            CustomerEvent::ReferralConverted(e) => {
                if let Some(r) = self.referrals.get_mut(&e.referral_id) {
                    r.converted = true;
                }
            }
            CustomerEvent::LifecycleStageChanged(e) => self.stage = Some(e.to),
        }
    }

    fn change_owner(&mut self, owner: Option<ManagerId>) {
        if self.owner.is_some() {
            self.previous_owner = self.owner;
        }
        self.owner = owner;
    }

    fn complaint(&mut self, id: ComplaintId, f: impl FnOnce(&mut ComplaintState)) {
        if let Some(c) = self.complaints.get_mut(&id) {
            f(c);
        }
    }
}

pub fn evolve(mut state: CustomerState, event: &CustomerEvent) -> CustomerState {
    state.apply(event);
    state
}

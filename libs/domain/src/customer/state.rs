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

/// Who first owned the customer, and when (渠道原则: first-touch protection).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirstTouch {
    pub manager: ManagerId,
    pub team: TeamId,
    pub at: DateTime<Utc>,
}

/// An explicit exemption from automatic return to the pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lock {
    pub until: Option<DateTime<Utc>>,
    pub reason: String,
}

/// The last time the customer went to the pool, and from whom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    pub from: ManagerId,
    pub at: DateTime<Utc>,
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
    /// The owner's team when they received the customer.
    pub owner_team: Option<TeamId>,
    /// When the current owner received the customer.
    pub owned_since: Option<DateTime<Utc>>,
    /// The current owner's last recorded contact.
    pub last_owner_contact_at: Option<DateTime<Utc>>,
    pub previous_owner: Option<ManagerId>,
    pub first_touch: Option<FirstTouch>,
    pub lock: Option<Lock>,
    pub last_release: Option<Release>,
    /// The return-to-pool deadline the owner was last warned about.
    pub pool_warned_for: Option<DateTime<Utc>>,
    /// Registration, an engaged contact, a purchase, or a move to customer/active.
    pub last_activity_at: Option<DateTime<Utc>>,
    pub last_product_line: Option<String>,
    pub registered_at: Option<DateTime<Utc>>,
    pub last_contact_at: Option<DateTime<Utc>>,
    pub complaints: BTreeMap<ComplaintId, ComplaintState>,
    pub referrals: BTreeMap<ReferralId, ReferralState>,
    pub purchases: BTreeSet<PurchaseId>,
    pub purchases_total_minor: i64,
    /// Personal data erased: the personal fields above are blank and stay blank.
    pub erased: bool,
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
                    last_activity_at: Some(e.registered_at),
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
            CustomerEvent::OwnerAssigned(e) => {
                self.change_owner(Some((e.manager_id, e.team.clone())), e.at)
            }
            CustomerEvent::OwnershipTransferred(e) => {
                self.change_owner(Some((e.to_manager, e.to_team.clone())), e.at)
            }
            CustomerEvent::ReleasedToPool(e) => {
                if let Some(at) = e.at {
                    self.last_release = Some(Release {
                        from: e.previous_owner,
                        at,
                    });
                }
                self.change_owner(None, e.at)
            }
            CustomerEvent::ClaimedFromPool(e) => {
                self.change_owner(Some((e.manager_id, e.team.clone())), e.at)
            }
            CustomerEvent::ContactRecorded(e) => {
                // A contact recorded late (dated when it happened) never moves these back.
                let latest = |t: Option<DateTime<Utc>>| {
                    Some(t.map_or(e.contacted_at, |t| t.max(e.contacted_at)))
                };
                self.last_contact_at = latest(self.last_contact_at);
                if e.by_owner {
                    self.last_owner_contact_at = latest(self.last_owner_contact_at);
                }
                if super::lifecycle::is_engaged(e.direction, e.outcome) {
                    self.last_activity_at = latest(self.last_activity_at);
                }
            }
            CustomerEvent::ComplaintLogged(e) => {
                let logged_at = e.logged_at;
                self.complaints.insert(
                    e.complaint_id,
                    ComplaintState {
                        id: e.complaint_id,
                        severity: e.severity,
                        category: e.category.clone(),
                        status: ComplaintStatus::Open,
                        logged_owner: e.owner,
                        logged_at,
                        clock_started_at: logged_at,
                        first_response_due_at: e.first_response_due_at,
                        resolution_due_at: e.resolution_due_at,
                        escalation_level: 0,
                        first_response_warned: false,
                        first_response_breached: false,
                        resolution_warned_for: None,
                        resolution_breached_for: None,
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
                self.last_product_line = Some(e.product_line.clone());
                if e.at.is_some() {
                    self.last_activity_at = e.at;
                }
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
            CustomerEvent::LifecycleStageChanged(e) => {
                self.stage = Some(e.to);
                if matches!(e.to, LifecycleStage::Customer | LifecycleStage::Active)
                    && e.at.is_some()
                {
                    self.last_activity_at = e.at;
                }
            }
            CustomerEvent::ValueTierChanged(e) => self.value_tier = Some(e.to),
            CustomerEvent::PoolReturnWarned(e) => self.pool_warned_for = Some(e.returns_at),
            CustomerEvent::OwnershipLocked(e) => {
                self.lock = Some(Lock {
                    until: e.until,
                    reason: e.reason.clone(),
                })
            }
            CustomerEvent::OwnershipUnlocked(_) => self.lock = None,
            CustomerEvent::PersonalDataErased(_) => {
                self.erased = true;
                self.display_name = crate::customer::personal::ERASED.to_string();
                self.phone = None;
                self.email = None;
                self.registration_number = None;
            }
            CustomerEvent::ComplaintSlaWarned(e) => {
                self.complaint(e.complaint_id, |c| match e.clock {
                    SlaClock::FirstResponse => c.first_response_warned = true,
                    SlaClock::Resolution => c.resolution_warned_for = Some(e.due_at),
                })
            }
            CustomerEvent::ComplaintSlaBreached(e) => {
                self.complaint(e.complaint_id, |c| match e.clock {
                    SlaClock::FirstResponse => c.first_response_breached = true,
                    SlaClock::Resolution => c.resolution_breached_for = Some(e.due_at),
                })
            }
        }
    }

    fn change_owner(&mut self, owner: Option<(ManagerId, TeamId)>, at: Option<DateTime<Utc>>) {
        if self.owner.is_some() {
            self.previous_owner = self.owner;
        }
        if let (Some((manager, team)), Some(at), None) = (&owner, at, &self.first_touch) {
            self.first_touch = Some(FirstTouch {
                manager: *manager,
                team: team.clone(),
                at,
            });
        }
        self.owner = owner.as_ref().map(|(m, _)| *m);
        self.owner_team = owner.map(|(_, t)| t);
        self.owned_since = at;
        self.last_owner_contact_at = None;
        self.pool_warned_for = None;
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

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

/// A customer's state, folded from its stream: not registered yet (`Default`, an empty
/// stream), or registered, with what its events say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum CustomerState {
    #[default]
    Unregistered,
    Registered(Box<Customer>),
}

/// A registered customer: the facts its registration set, and what its later events
/// changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Customer {
    pub id: CustomerId,
    pub customer_type: CustomerType,
    pub display_name: String,
    pub phone: Option<String>,
    pub email: Option<String>,
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
    pub last_activity_at: DateTime<Utc>,
    pub last_product_line: Option<String>,
    pub registered_at: DateTime<Utc>,
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
    /// The customer, once registered.
    pub fn registered(&self) -> Option<&Customer> {
        match self {
            CustomerState::Registered(c) => Some(c),
            CustomerState::Unregistered => None,
        }
    }

    pub fn is_registered(&self) -> bool {
        self.registered().is_some()
    }

    /// The customer's owner: none before registration, or while in the pool.
    pub fn owner(&self) -> Option<ManagerId> {
        self.registered().and_then(|c| c.owner)
    }

    /// The stream version this state is at (0: no events).
    pub fn version(&self) -> u64 {
        self.registered().map_or(0, |c| c.version)
    }

    /// Keys no other customer may hold while this one does (none before registration).
    pub fn unique_keys(&self) -> Vec<UniqueKey> {
        self.registered()
            .map_or_else(Vec::new, Customer::unique_keys)
    }

    /// Apply one event. Events carry every instant the rules need, so the state is a
    /// pure fold of the stream. A stream begins with its registration; an event before
    /// one changes nothing.
    pub fn apply(&mut self, event: &CustomerEvent) {
        match (&mut *self, event) {
            (_, CustomerEvent::CustomerRegistered(e)) => {
                let version = self.version() + 1;
                *self = CustomerState::Registered(Box::new(Customer::registered(e, version)));
            }
            (CustomerState::Registered(c), event) => c.apply(event),
            (CustomerState::Unregistered, _) => {}
        }
    }
}

impl Customer {
    /// The customer as its registration leaves it, at `version`.
    fn registered(e: &CustomerRegistered, version: u64) -> Self {
        Customer {
            id: e.customer_id,
            customer_type: e.customer_type,
            display_name: e.display_name.clone(),
            phone: e.phone.clone(),
            email: e.email.clone(),
            registration_number: e.registration_number.clone(),
            region: e.region.clone(),
            branch: e.branch.clone(),
            first_touch_channel: e.first_touch_channel,
            industry: e.industry.clone(),
            product_interest: e.product_interest.clone(),
            consents: e.consents,
            stage: e.stage,
            value_tier: e.value_tier,
            aum_minor: e.aum_minor,
            owner: None,
            owner_team: None,
            owned_since: None,
            last_owner_contact_at: None,
            previous_owner: None,
            first_touch: None,
            lock: None,
            last_release: None,
            pool_warned_for: None,
            last_activity_at: e.registered_at,
            last_product_line: None,
            registered_at: e.registered_at,
            last_contact_at: None,
            complaints: BTreeMap::new(),
            referrals: BTreeMap::new(),
            purchases: BTreeSet::new(),
            purchases_total_minor: 0,
            erased: false,
            version,
        }
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

    /// Apply one event after the registration (which [`CustomerState::apply`] applies).
    fn apply(&mut self, event: &CustomerEvent) {
        self.version += 1;
        match event {
            CustomerEvent::CustomerRegistered(_) => {}
            CustomerEvent::ProfileUpdated(e) => self.update_profile(e),
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
            CustomerEvent::ContactRecorded(e) => self.record_contact(e),
            CustomerEvent::ComplaintLogged(e) => self.log_complaint(e),
            CustomerEvent::ComplaintAcknowledged(_)
            | CustomerEvent::ComplaintEscalated(_)
            | CustomerEvent::ComplaintResolved(_)
            | CustomerEvent::ComplaintReopened(_)
            | CustomerEvent::ComplaintClosed(_)
            | CustomerEvent::ComplaintSlaWarned(_)
            | CustomerEvent::ComplaintSlaBreached(_) => self.change_complaint(event),
            CustomerEvent::PurchaseRecorded(e) => {
                self.purchases.insert(e.purchase_id);
                self.purchases_total_minor += e.amount_minor;
                self.last_product_line = Some(e.product_line.clone());
                if let Some(at) = e.at {
                    self.last_activity_at = at;
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
                self.stage = e.to;
                if let (LifecycleStage::Customer | LifecycleStage::Active, Some(at)) = (e.to, e.at)
                {
                    self.last_activity_at = at;
                }
            }
            CustomerEvent::ValueTierChanged(e) => self.value_tier = e.to,
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
        }
    }

    fn record_contact(&mut self, e: &ContactRecorded) {
        // A contact recorded late (dated when it happened) never moves these back.
        let latest =
            |t: Option<DateTime<Utc>>| Some(t.map_or(e.contacted_at, |t| t.max(e.contacted_at)));
        self.last_contact_at = latest(self.last_contact_at);
        if e.by_owner {
            self.last_owner_contact_at = latest(self.last_owner_contact_at);
        }
        if super::lifecycle::is_engaged(e.direction, e.outcome) {
            self.last_activity_at = self.last_activity_at.max(e.contacted_at);
        }
    }

    fn log_complaint(&mut self, e: &ComplaintLogged) {
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

    /// A change to one of the customer's complaints (an unknown one is left alone).
    fn change_complaint(&mut self, event: &CustomerEvent) {
        match event {
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
            // `Customer::apply` sends only the complaint changes above here.
            _ => unreachable!("not a change to a complaint: {event:?}"),
        }
    }

    /// The fields a profile update names, replaced; the others kept.
    fn update_profile(&mut self, e: &ProfileUpdated) {
        fn set<T: Clone>(field: &mut Option<T>, new: &Option<T>) {
            if let Some(v) = new {
                *field = Some(v.clone());
            }
        }
        set(&mut self.phone, &e.phone);
        set(&mut self.email, &e.email);
        set(&mut self.registration_number, &e.registration_number);
        set(&mut self.branch, &e.branch);
        set(&mut self.industry, &e.industry);
        set(&mut self.product_interest, &e.product_interest);
        set(&mut self.aum_minor, &e.aum_minor);
        if let Some(v) = &e.region {
            self.region = v.clone();
        }
        if let Some(v) = &e.display_name {
            self.display_name = v.clone();
        }
        if let Some(v) = e.consents {
            self.consents = v;
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

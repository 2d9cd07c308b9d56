//! Where a customer command is decided: `decide(state, command, context) -> events`.
//! Pure: no I/O, no clock (time is `ctx.now`, the command's issue time), no randomness.
//! A refusal returns the rule that refused it and no events.

use chrono::{DateTime, Utc};

use super::commands::*;
use super::complaint::{ComplaintState, ComplaintStatus, MAX_ESCALATION};
use super::events::*;
use super::lifecycle;
use super::state::{Customer, CustomerState};
use super::timers;
use crate::context::{DecisionContext, ManagerView, MAX_CLOCK_SKEW, MAX_CONTACT_BACKDATE};
use crate::error::{CommandRule, DomainError};
use crate::ids::{ComplaintId, CustomerId, ManagerId};
use crate::normalize::{normalize_email, normalize_phone, normalize_registration_number};
use crate::policy::{choose, days, matching_rule, CustomerFacts};
use crate::values::{ContactChannel, CustomerType, LifecycleStage};

type Decision = Result<Vec<CustomerEvent>, DomainError>;

/// Decide one customer command against the customer's current state.
pub fn decide(state: &CustomerState, command: &CustomerCommand, ctx: &DecisionContext) -> Decision {
    let events = decide_command(state, command, ctx)?;
    // After an erasure the customer's history goes on, without personal data.
    if state.registered().is_some_and(|c| c.erased)
        && events.iter().any(super::personal::carries_personal_data)
    {
        return Err(DomainError::PersonalDataErased(command.customer_id()));
    }
    Ok(events)
}

fn decide_command(
    state: &CustomerState,
    command: &CustomerCommand,
    ctx: &DecisionContext,
) -> Decision {
    let id = command.customer_id();
    if let CustomerCommand::Register(c) = command {
        return register(state, c, ctx);
    }
    let Some(state) = state.registered() else {
        return Err(DomainError::UnknownCustomer(id));
    };
    match command {
        CustomerCommand::Register(_) => unreachable!("handled above"),
        CustomerCommand::UpdateProfile(c) => update_profile(state, c, ctx),
        CustomerCommand::AssignOwner(c) => assign_owner(state, c, ctx),
        CustomerCommand::TransferOwner(c) => transfer_owner(state, c, ctx),
        CustomerCommand::ReleaseToPool(c) => release_to_pool(state, c, ctx),
        CustomerCommand::ClaimFromPool(c) => claim_from_pool(state, c, ctx),
        CustomerCommand::RecordContact(c) => record_contact(state, c, ctx),
        CustomerCommand::LogComplaint(c) => log_complaint(state, c, ctx),
        CustomerCommand::AcknowledgeComplaint(c) => acknowledge_complaint(state, c, ctx),
        CustomerCommand::EscalateComplaint(c) => escalate_complaint(state, c, ctx),
        CustomerCommand::ResolveComplaint(c) => resolve_complaint(state, c, ctx),
        CustomerCommand::ReopenComplaint(c) => reopen_complaint(state, c, ctx),
        CustomerCommand::CloseComplaint(c) => close_complaint(state, c),
        CustomerCommand::RecordPurchase(c) => record_purchase(state, c, ctx),
        CustomerCommand::RecordReferral(c) => record_referral(state, c, ctx),
        CustomerCommand::ChangeLifecycleStage(c) => change_stage(state, c, ctx),
        CustomerCommand::AssignByPolicy(c) => assign_by_policy(state, c, ctx),
        CustomerCommand::LockOwnership(c) => lock_ownership(state, c, ctx),
        CustomerCommand::UnlockOwnership(c) => unlock_ownership(state, c, ctx),
        CustomerCommand::EraseCustomerData(c) => erase_customer_data(state, c, ctx),
        CustomerCommand::ApplyTimer(c) => apply_timer(state, c, ctx),
    }
}

// ---- validation helpers -------------------------------------------------------------

/// Trimmed, non-empty, at most `max` characters.
pub(crate) fn check_text(field: &str, text: &str, max: usize) -> Result<String, DomainError> {
    let t = text.trim();
    if t.is_empty() {
        return Err(DomainError::invalid(field, "must not be empty"));
    }
    if t.chars().count() > max {
        return Err(DomainError::invalid(
            field,
            format!("must be at most {max} characters"),
        ));
    }
    Ok(t.to_string())
}

/// Like [`check_text`] for optional fields; blank means absent.
fn opt_text(field: &str, text: &Option<String>, max: usize) -> Result<Option<String>, DomainError> {
    match text.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(t) => check_text(field, t, max).map(Some),
    }
}

fn opt_normalized(
    raw: &Option<String>,
    f: fn(&str) -> Result<String, DomainError>,
) -> Result<Option<String>, DomainError> {
    match raw.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(v) => f(v).map(Some),
    }
}

fn check_duplicate(id: CustomerId, ctx: &DecisionContext) -> Result<(), DomainError> {
    match &ctx.duplicate {
        Some(d) if d.existing != id => Err(DomainError::DuplicateCustomer {
            existing: d.existing,
            // The kind only (phone, email, regno): refusals end up in logs, and the
            // caller knows what it sent.
            key: d.key.kind().to_string(),
        }),
        _ => Ok(()),
    }
}

/// The manager the command gives something to: known and active.
fn target(ctx: &DecisionContext, id: ManagerId) -> Result<&ManagerView, DomainError> {
    let m = ctx
        .manager
        .as_ref()
        .filter(|m| m.id == id)
        .ok_or(DomainError::UnknownManager(id))?;
    if !m.active {
        return Err(DomainError::ManagerInactive(id));
    }
    Ok(m)
}

/// …who may take one more customer under the holding limit (保有量上限). The context's
/// view counts what the policy counts; a won customer does not count when the policy
/// says won customers do not.
fn receiver<'a>(
    state: &Customer,
    ctx: &'a DecisionContext,
    id: ManagerId,
) -> Result<&'a ManagerView, DomainError> {
    let m = target(ctx, id)?;
    if counts_against_limit(state, ctx) && m.holdings >= m.holding_limit {
        return Err(DomainError::HoldingLimitReached {
            manager: id,
            holdings: m.holdings,
            limit: m.holding_limit,
        });
    }
    Ok(m)
}

/// Whether this customer counts against a receiving manager's holding limit.
pub fn counts_against_limit(state: &Customer, ctx: &DecisionContext) -> bool {
    ctx.policy.document.holding.won_customers_count || state.stage.is_prospect()
}

/// First-touch protection: refuse moving the customer to someone outside it.
fn check_protection(
    state: &Customer,
    ctx: &DecisionContext,
    to: &ManagerView,
) -> Result<(), DomainError> {
    match timers::protection(state, &ctx.policy, ctx.now) {
        Some(p) if !p.admits(to.id, &to.team) => Err(DomainError::OwnershipProtected {
            customer: state.id,
            holder: p.holder(),
            until: p.until,
        }),
        _ => Ok(()),
    }
}

fn stage_changed(
    state: &Customer,
    to: LifecycleStage,
    reason: &str,
    ctx: &DecisionContext,
) -> CustomerEvent {
    let from = state.stage;
    CustomerEvent::LifecycleStageChanged(LifecycleStageChanged {
        customer_id: state.id,
        from,
        to,
        reason: reason.to_string(),
        reactivated: lifecycle::is_reactivation(from, to),
        at: Some(ctx.now),
        automatic: false,
    })
}

/// The value tier follows max(AUM, purchases recorded) once either changes.
fn tier_change(
    state: &Customer,
    aum_minor: Option<i64>,
    purchases_minor: i64,
    ctx: &DecisionContext,
) -> Option<CustomerEvent> {
    let basis = aum_minor.unwrap_or(0).max(purchases_minor);
    let to = ctx.policy.document.lifecycle.tiers.tier(basis);
    let from = state.value_tier;
    (to != from).then(|| {
        CustomerEvent::ValueTierChanged(ValueTierChanged {
            customer_id: state.id,
            from,
            to,
            basis_minor: basis,
            policy_version: ctx.policy.version,
        })
    })
}

/// Reaching `customer` converts every open referral: the referrers earn the credit.
fn convert_referrals(state: &Customer) -> impl Iterator<Item = CustomerEvent> + '_ {
    state
        .referrals
        .iter()
        .filter(|(_, r)| !r.converted)
        .map(|(id, r)| {
            CustomerEvent::ReferralConverted(ReferralConverted {
                customer_id: state.id,
                referral_id: *id,
                referrer: r.referrer.clone(),
                referred_to: r.referred_to,
            })
        })
}

// ---- registration and profile ------------------------------------------------------

fn register(state: &CustomerState, c: &RegisterCustomer, ctx: &DecisionContext) -> Decision {
    if state.is_registered() {
        return Err(DomainError::AlreadyRegistered(c.customer_id));
    }
    let display_name = check_text("display_name", &c.display_name, 200)?;
    let phone = opt_normalized(&c.phone, normalize_phone)?;
    let email = opt_normalized(&c.email, normalize_email)?;
    let registration_number =
        opt_normalized(&c.registration_number, normalize_registration_number)?;
    if phone.is_none() && email.is_none() && registration_number.is_none() {
        return Err(DomainError::RuleBroken(CommandRule::ContactKeyRequired));
    }
    if c.customer_type == CustomerType::Enterprise && registration_number.is_none() {
        return Err(DomainError::RuleBroken(
            CommandRule::EnterpriseRegistrationNumberRequired,
        ));
    }
    let stage = c.stage.unwrap_or(LifecycleStage::Lead);
    if !matches!(stage, LifecycleStage::Lead | LifecycleStage::Customer) {
        return Err(DomainError::invalid(
            "stage",
            "a new customer starts as lead or customer",
        ));
    }
    if c.aum_minor.is_some_and(|a| a < 0) {
        return Err(DomainError::invalid("aum_minor", "must not be negative"));
    }
    check_duplicate(c.customer_id, ctx)?;
    Ok(vec![CustomerEvent::CustomerRegistered(
        CustomerRegistered {
            customer_id: c.customer_id,
            customer_type: c.customer_type,
            display_name,
            phone,
            email,
            registration_number,
            region: c.region.clone(),
            branch: c.branch.clone(),
            first_touch_channel: c.first_touch_channel,
            industry: opt_text("industry", &c.industry, 100)?,
            product_interest: opt_text("product_interest", &c.product_interest, 100)?,
            consents: c.consents.unwrap_or_default(),
            stage,
            value_tier: c.value_tier.unwrap_or_else(|| {
                ctx.policy
                    .document
                    .lifecycle
                    .tiers
                    .tier(c.aum_minor.unwrap_or(0))
            }),
            aum_minor: c.aum_minor,
            registered_at: ctx.now,
        },
    )])
}

fn update_profile(state: &Customer, c: &UpdateProfile, ctx: &DecisionContext) -> Decision {
    fn changed<T: PartialEq>(new: Option<T>, old: &Option<T>) -> Option<T> {
        new.filter(|n| Some(n) != old.as_ref())
    }
    if c.aum_minor.is_some_and(|a| a < 0) {
        return Err(DomainError::invalid("aum_minor", "must not be negative"));
    }
    let display_name = c
        .display_name
        .as_deref()
        .map(|n| check_text("display_name", n, 200))
        .transpose()?
        .filter(|n| n != &state.display_name);
    let e = ProfileUpdated {
        customer_id: c.customer_id,
        display_name,
        phone: changed(opt_normalized(&c.phone, normalize_phone)?, &state.phone),
        email: changed(opt_normalized(&c.email, normalize_email)?, &state.email),
        registration_number: changed(
            opt_normalized(&c.registration_number, normalize_registration_number)?,
            &state.registration_number,
        ),
        region: c.region.clone().filter(|r| r != &state.region),
        branch: changed(c.branch.clone(), &state.branch),
        industry: changed(opt_text("industry", &c.industry, 100)?, &state.industry),
        product_interest: changed(
            opt_text("product_interest", &c.product_interest, 100)?,
            &state.product_interest,
        ),
        consents: c.consents.filter(|k| k != &state.consents),
        aum_minor: changed(c.aum_minor, &state.aum_minor),
    };
    if e == (ProfileUpdated {
        customer_id: c.customer_id,
        ..ProfileUpdated::default()
    }) {
        return Err(DomainError::NothingToChange);
    }
    check_duplicate(c.customer_id, ctx)?;
    let tier = e
        .aum_minor
        .and_then(|aum| tier_change(state, Some(aum), state.purchases_total_minor, ctx));
    Ok(std::iter::once(CustomerEvent::ProfileUpdated(e))
        .chain(tier)
        .collect())
}

// ---- ownership ---------------------------------------------------------------------

fn assign_owner(state: &Customer, c: &AssignOwner, ctx: &DecisionContext) -> Decision {
    if let Some(owner) = state.owner {
        return Err(DomainError::AlreadyOwned {
            customer: c.customer_id,
            owner,
        });
    }
    let m = receiver(state, ctx, c.manager_id)?;
    Ok(vec![CustomerEvent::OwnerAssigned(OwnerAssigned {
        customer_id: c.customer_id,
        manager_id: c.manager_id,
        team: m.team.clone(),
        region: m.region.clone(),
        previous_owner: None,
        reason: check_text("reason", &c.reason, 500)?,
        assigned_by: ctx.actor.clone(),
        at: Some(ctx.now),
        policy: None,
    })])
}

fn transfer_owner(state: &Customer, c: &TransferOwner, ctx: &DecisionContext) -> Decision {
    let from = state.owner.ok_or(DomainError::NotOwned(c.customer_id))?;
    if from == c.to_manager_id {
        return Err(DomainError::SameOwner {
            customer: c.customer_id,
            manager: from,
        });
    }
    let m = receiver(state, ctx, c.to_manager_id)?;
    check_protection(state, ctx, m)?;
    Ok(vec![CustomerEvent::OwnershipTransferred(
        OwnershipTransferred {
            customer_id: c.customer_id,
            from_manager: from,
            to_manager: c.to_manager_id,
            to_team: m.team.clone(),
            to_region: m.region.clone(),
            reason: check_text("reason", &c.reason, 500)?,
            transferred_by: ctx.actor.clone(),
            at: Some(ctx.now),
        },
    )])
}

fn release_to_pool(state: &Customer, c: &ReleaseToPool, ctx: &DecisionContext) -> Decision {
    let owner = state.owner.ok_or(DomainError::NotOwned(c.customer_id))?;
    Ok(vec![CustomerEvent::ReleasedToPool(ReleasedToPool {
        customer_id: c.customer_id,
        previous_owner: owner,
        reason: check_text("reason", &c.reason, 500)?,
        released_by: ctx.actor.clone(),
        at: Some(ctx.now),
        rule: None,
    })])
}

fn claim_from_pool(state: &Customer, c: &ClaimFromPool, ctx: &DecisionContext) -> Decision {
    if let Some(owner) = state.owner {
        return Err(DomainError::NotInPool {
            customer: c.customer_id,
            owner,
        });
    }
    let m = receiver(state, ctx, c.manager_id)?;
    let pool = &ctx.policy.document.pool;
    if let Some(r) = state
        .last_release
        .as_ref()
        .filter(|r| r.from == c.manager_id)
    {
        let until = r.at + days(pool.reclaim_cooldown_days);
        if ctx.now < until {
            return Err(DomainError::ReclaimCooldown {
                manager: c.manager_id,
                until,
            });
        }
    }
    if ctx.claims_today >= pool.daily_claim_cap {
        return Err(DomainError::ClaimCapReached {
            manager: c.manager_id,
            cap: pool.daily_claim_cap,
        });
    }
    Ok(vec![CustomerEvent::ClaimedFromPool(ClaimedFromPool {
        customer_id: c.customer_id,
        manager_id: c.manager_id,
        team: m.team.clone(),
        region: m.region.clone(),
        at: Some(ctx.now),
    })])
}

// ---- contacts ----------------------------------------------------------------------

fn record_contact(state: &Customer, c: &RecordContact, ctx: &DecisionContext) -> Decision {
    if c.channel == ContactChannel::Sms && !state.consents.sms {
        return Err(DomainError::SmsConsentMissing(c.customer_id));
    }
    let contacted_at = contact_time(c.occurred_at, ctx)?;
    if let Some(at) = c.next_follow_up_at {
        if at <= ctx.now {
            return Err(DomainError::invalid(
                "next_follow_up_at",
                "must be after the contact",
            ));
        }
    }
    // The owner's contact counts for the owner only if made while they owned it.
    let by_owner = state.owner == Some(c.manager_id)
        && state.owned_since.is_none_or(|since| contacted_at >= since);
    let mut events = vec![CustomerEvent::ContactRecorded(ContactRecorded {
        customer_id: c.customer_id,
        contact_id: c.contact_id,
        manager_id: c.manager_id,
        by_owner,
        channel: c.channel,
        direction: c.direction,
        outcome: c.outcome,
        summary: opt_text("summary", &c.summary, 2000)?,
        contacted_at,
        next_follow_up_at: c.next_follow_up_at,
    })];
    let engaged = lifecycle::is_engaged(c.direction, c.outcome);
    match state.stage {
        LifecycleStage::Lead if engaged => events.push(stage_changed(
            state,
            LifecycleStage::Contacted,
            "first contact",
            ctx,
        )),
        // An unanswered call does not wake a dormant customer; any real exchange does.
        LifecycleStage::Dormant if engaged => {
            events.push(stage_changed(state, LifecycleStage::Active, "contact", ctx))
        }
        _ => {}
    }
    Ok(events)
}

/// When a contact happened: now, or the stated `occurred_at` if it lies within
/// [`MAX_CONTACT_BACKDATE`] before now (a little after now, within the callers' clock
/// skew, is now: a contact cannot be in the future).
fn contact_time(
    occurred_at: Option<DateTime<Utc>>,
    ctx: &DecisionContext,
) -> Result<DateTime<Utc>, DomainError> {
    let Some(at) = occurred_at else {
        return Ok(ctx.now);
    };
    if at > ctx.now + MAX_CLOCK_SKEW {
        return Err(DomainError::invalid(
            "occurred_at",
            "is in the future; a contact is recorded after it happens",
        ));
    }
    if at < ctx.now - MAX_CONTACT_BACKDATE {
        return Err(DomainError::invalid(
            "occurred_at",
            format!(
                "is more than {} days before the command; older contacts cannot be recorded",
                MAX_CONTACT_BACKDATE.num_days()
            ),
        ));
    }
    Ok(at.min(ctx.now))
}

// ---- complaints --------------------------------------------------------------------

fn complaint<'a>(
    state: &'a Customer,
    id: ComplaintId,
    action: &'static str,
) -> Result<&'a ComplaintState, DomainError> {
    let c = state
        .complaints
        .get(&id)
        .ok_or(DomainError::UnknownComplaint(id))?;
    if c.status == ComplaintStatus::Closed {
        return Err(DomainError::ComplaintClosed {
            complaint: id,
            action,
        });
    }
    Ok(c)
}

fn wrong_step(c: &ComplaintState, action: &'static str) -> DomainError {
    DomainError::InvalidComplaintTransition {
        complaint: c.id,
        status: c.status.as_str(),
        action,
    }
}

fn seconds_between(from: DateTime<Utc>, to: DateTime<Utc>) -> i64 {
    (to - from).num_seconds().max(0)
}

fn log_complaint(state: &Customer, c: &LogComplaint, ctx: &DecisionContext) -> Decision {
    if state.complaints.contains_key(&c.complaint_id) {
        return Err(DomainError::ComplaintAlreadyExists(c.complaint_id));
    }
    Ok(vec![CustomerEvent::ComplaintLogged(ComplaintLogged {
        customer_id: c.customer_id,
        complaint_id: c.complaint_id,
        severity: c.severity,
        category: check_text("category", &c.category, 64)?,
        description: check_text("description", &c.description, 4000)?,
        channel: c.channel,
        owner: state.owner,
        logged_at: ctx.now,
        first_response_due_at: ctx.now + ctx.policy.document.sla.policy().first_response,
        resolution_due_at: ctx.now + ctx.policy.document.sla.resolution(c.severity),
    })])
}

fn acknowledge_complaint(
    state: &Customer,
    c: &AcknowledgeComplaint,
    ctx: &DecisionContext,
) -> Decision {
    let k = complaint(state, c.complaint_id, "acknowledged")?;
    if k.status != ComplaintStatus::Open {
        return Err(wrong_step(k, "acknowledged"));
    }
    let mut events = late_answer(state, k, ctx, SlaClock::FirstResponse);
    events.push(CustomerEvent::ComplaintAcknowledged(
        ComplaintAcknowledged {
            customer_id: c.customer_id,
            complaint_id: c.complaint_id,
            by: c.by,
            response_seconds: seconds_between(k.logged_at, ctx.now),
            within_sla: ctx.now <= k.first_response_due_at,
        },
    ));
    Ok(events)
}

/// An answer after a clock's deadline that the scheduler has not flagged yet records the
/// breach itself, so every breach is recorded exactly once whatever the scheduler's
/// period (no escalation: the complaint has just been answered).
fn late_answer(
    state: &Customer,
    k: &ComplaintState,
    ctx: &DecisionContext,
    clock: SlaClock,
) -> Vec<CustomerEvent> {
    let (due_at, flagged) = match clock {
        SlaClock::FirstResponse => (k.first_response_due_at, k.first_response_breached),
        SlaClock::Resolution => (
            k.resolution_due_at,
            k.resolution_breached_for == Some(k.resolution_due_at),
        ),
    };
    if ctx.now <= due_at || flagged {
        return Vec::new();
    }
    vec![CustomerEvent::ComplaintSlaBreached(ComplaintSlaBreached {
        customer_id: state.id,
        complaint_id: k.id,
        clock,
        due_at,
        owner: state.owner,
    })]
}

fn escalate_complaint(state: &Customer, c: &EscalateComplaint, ctx: &DecisionContext) -> Decision {
    let k = complaint(state, c.complaint_id, "escalated")?;
    if k.status == ComplaintStatus::Resolved {
        return Err(wrong_step(k, "escalated"));
    }
    if k.escalation_level >= MAX_ESCALATION {
        return Err(DomainError::EscalationExhausted(c.complaint_id));
    }
    Ok(vec![CustomerEvent::ComplaintEscalated(
        ComplaintEscalated {
            customer_id: c.customer_id,
            complaint_id: c.complaint_id,
            level: k.escalation_level + 1,
            reason: check_text("reason", &c.reason, 500)?,
            escalated_to: ctx.escalation.at(k.escalation_level + 1),
            automatic: false,
        },
    )])
}

fn resolve_complaint(state: &Customer, c: &ResolveComplaint, ctx: &DecisionContext) -> Decision {
    let k = complaint(state, c.complaint_id, "resolved")?;
    if k.status == ComplaintStatus::Resolved {
        return Err(wrong_step(k, "resolved"));
    }
    let mut events = Vec::new();
    if k.status == ComplaintStatus::Open {
        // Resolving ends the first-response clock too.
        events.extend(late_answer(state, k, ctx, SlaClock::FirstResponse));
    }
    events.extend(late_answer(state, k, ctx, SlaClock::Resolution));
    events.push(CustomerEvent::ComplaintResolved(ComplaintResolved {
        customer_id: c.customer_id,
        complaint_id: c.complaint_id,
        resolved_by: c.resolved_by,
        resolution: check_text("resolution", &c.resolution, 4000)?,
        resolution_seconds: seconds_between(k.clock_started_at, ctx.now),
        within_sla: ctx.now <= k.resolution_due_at,
    }));
    Ok(events)
}

fn reopen_complaint(state: &Customer, c: &ReopenComplaint, ctx: &DecisionContext) -> Decision {
    let k = complaint(state, c.complaint_id, "reopened")?;
    let Some(previous_resolver) = k
        .resolved_by
        .filter(|_| k.status == ComplaintStatus::Resolved)
    else {
        return Err(wrong_step(k, "reopened"));
    };
    Ok(vec![CustomerEvent::ComplaintReopened(ComplaintReopened {
        customer_id: c.customer_id,
        complaint_id: c.complaint_id,
        reason: check_text("reason", &c.reason, 500)?,
        previous_resolver,
        reopened_at: ctx.now,
        resolution_due_at: ctx.now + ctx.policy.document.sla.resolution(k.severity),
    })])
}

fn close_complaint(state: &Customer, c: &CloseComplaint) -> Decision {
    let k = complaint(state, c.complaint_id, "closed")?;
    if k.status != ComplaintStatus::Resolved {
        return Err(wrong_step(k, "closed"));
    }
    if let Some(s) = c.satisfaction {
        if !(1..=5).contains(&s) {
            return Err(DomainError::invalid("satisfaction", "must be 1 to 5"));
        }
    }
    Ok(vec![CustomerEvent::ComplaintClosed(ComplaintClosed {
        customer_id: c.customer_id,
        complaint_id: c.complaint_id,
        satisfaction: c.satisfaction,
    })])
}

// ---- purchases, referrals, lifecycle -------------------------------------------------

fn record_purchase(state: &Customer, c: &RecordPurchase, ctx: &DecisionContext) -> Decision {
    if state.purchases.contains(&c.purchase_id) {
        return Err(DomainError::DuplicatePurchase(c.purchase_id));
    }
    if c.amount_minor <= 0 {
        return Err(DomainError::invalid("amount_minor", "must be positive"));
    }
    if c.currency.len() != 3 || !c.currency.chars().all(|ch| ch.is_ascii_uppercase()) {
        return Err(DomainError::invalid(
            "currency",
            "must be an ISO 4217 code such as CNY",
        ));
    }
    let mut events = vec![CustomerEvent::PurchaseRecorded(PurchaseRecorded {
        customer_id: c.customer_id,
        purchase_id: c.purchase_id,
        product_line: check_text("product_line", &c.product_line, 100)?,
        amount_minor: c.amount_minor,
        currency: c.currency.clone(),
        manager_id: c.manager_id,
        at: Some(ctx.now),
    })];
    match state.stage {
        s if s.is_prospect() => {
            events.push(stage_changed(
                state,
                LifecycleStage::Customer,
                "deal won",
                ctx,
            ));
            events.extend(convert_referrals(state));
        }
        LifecycleStage::Dormant | LifecycleStage::Churned => {
            events.push(stage_changed(
                state,
                LifecycleStage::Active,
                "purchase",
                ctx,
            ));
        }
        _ => {}
    }
    let total = state.purchases_total_minor.saturating_add(c.amount_minor);
    events.extend(tier_change(state, state.aum_minor, total, ctx));
    Ok(events)
}

fn record_referral(state: &Customer, c: &RecordReferral, ctx: &DecisionContext) -> Decision {
    if state.referrals.contains_key(&c.referral_id) {
        return Err(DomainError::DuplicateReferral(c.referral_id));
    }
    target(ctx, c.referred_to)?;
    Ok(vec![CustomerEvent::ReferralRecorded(ReferralRecorded {
        customer_id: c.customer_id,
        referral_id: c.referral_id,
        referrer: check_text("referrer", &c.referrer, 128)?,
        referred_to: c.referred_to,
        note: opt_text("note", &c.note, 1000)?,
    })])
}

fn change_stage(state: &Customer, c: &ChangeLifecycleStage, ctx: &DecisionContext) -> Decision {
    let from = state.stage;
    if from == c.to {
        return Err(DomainError::NothingToChange);
    }
    if !lifecycle::allowed(from, c.to) {
        return Err(DomainError::InvalidStageTransition { from, to: c.to });
    }
    let reason = check_text("reason", &c.reason, 500)?;
    let mut events = vec![stage_changed(state, c.to, &reason, ctx)];
    if c.to == LifecycleStage::Customer {
        events.extend(convert_referrals(state));
    }
    Ok(events)
}

// ---- policy, locks and timers --------------------------------------------------------

fn assign_by_policy(state: &Customer, c: &AssignByPolicy, ctx: &DecisionContext) -> Decision {
    if let Some(owner) = state.owner {
        return Err(DomainError::AlreadyOwned {
            customer: c.customer_id,
            owner,
        });
    }
    let reason = opt_text("reason", &c.reason, 500)?;
    let policy = &ctx.policy;
    let facts = CustomerFacts::of(state);
    let (index, rule) =
        matching_rule(&policy.document, &facts).ok_or(DomainError::NoRuleMatched {
            customer: c.customer_id,
            policy_version: policy.version,
        })?;
    let no_one = || DomainError::NoEligibleManager {
        rule: rule.name.clone(),
        team: rule.team.clone(),
    };
    let team = ctx.candidates.as_ref().ok_or_else(no_one)?;
    let mut members: Vec<_> = team
        .members
        .iter()
        .filter(|m| m.view.team == rule.team)
        .cloned()
        .collect();
    if !counts_against_limit(state, ctx) {
        // This (won) customer does not count against the limit: every active member of
        // the team may receive it.
        for m in &mut members {
            m.view.holdings = 0;
            m.view.holding_limit = m.view.holding_limit.max(1);
        }
    }
    let eligible = members.iter().filter(|m| m.can_receive()).count() as u32;
    let chosen = choose(rule.method, &members, team.turn).ok_or_else(no_one)?;
    let m = &members
        .iter()
        .find(|m| m.view.id == chosen)
        .expect("chosen among the members")
        .view;
    Ok(vec![CustomerEvent::OwnerAssigned(OwnerAssigned {
        customer_id: c.customer_id,
        manager_id: chosen,
        team: m.team.clone(),
        region: m.region.clone(),
        previous_owner: None,
        reason: reason.unwrap_or_else(|| format!("policy rule {:?}", rule.name)),
        assigned_by: ctx.actor.clone(),
        at: Some(ctx.now),
        policy: Some(PolicyDecision {
            policy_version: policy.version,
            rule: rule.name.clone(),
            rule_index: index as u32,
            method: rule.method,
            eligible,
        }),
    })])
}

fn lock_ownership(state: &Customer, c: &LockOwnership, ctx: &DecisionContext) -> Decision {
    if state.lock.is_some() {
        return Err(DomainError::AlreadyLocked(c.customer_id));
    }
    if c.until.is_some_and(|u| u <= ctx.now) {
        return Err(DomainError::invalid("until", "must be in the future"));
    }
    Ok(vec![CustomerEvent::OwnershipLocked(OwnershipLocked {
        customer_id: c.customer_id,
        until: c.until,
        reason: check_text("reason", &c.reason, 500)?,
        locked_by: ctx.actor.clone(),
        at: ctx.now,
    })])
}

fn erase_customer_data(state: &Customer, c: &EraseCustomerData, ctx: &DecisionContext) -> Decision {
    if state.erased {
        return Err(DomainError::AlreadyErased(c.customer_id));
    }
    Ok(vec![CustomerEvent::PersonalDataErased(
        PersonalDataErased {
            customer_id: c.customer_id,
            reason: check_text("reason", &c.reason, 500)?,
            erased_by: ctx.actor.clone(),
            at: ctx.now,
        },
    )])
}

fn unlock_ownership(state: &Customer, c: &UnlockOwnership, ctx: &DecisionContext) -> Decision {
    if state.lock.is_none() {
        return Err(DomainError::NotLocked(c.customer_id));
    }
    Ok(vec![CustomerEvent::OwnershipUnlocked(OwnershipUnlocked {
        customer_id: c.customer_id,
        reason: check_text("reason", &c.reason, 500)?,
        unlocked_by: ctx.actor.clone(),
        at: ctx.now,
    })])
}

/// A timer the scheduler believes due: applied only if the rules, on this state and
/// the policy in force, say it is due now.
fn apply_timer(state: &Customer, c: &ApplyTimer, ctx: &DecisionContext) -> Decision {
    let due = timers::due(state, &ctx.policy, ctx.now);
    if !due.iter().any(|p| p.timer == c.timer) {
        return Err(DomainError::TimerNotDue {
            timer: c.timer.name(),
        });
    }
    let id = c.customer_id;
    let version = ctx.policy.version;
    Ok(match &c.timer {
        Timer::PoolReturnWarning { cause, returns_at } => {
            vec![CustomerEvent::PoolReturnWarned(PoolReturnWarned {
                customer_id: id,
                owner: state.owner.expect("a pool timer needs an owner"),
                cause: *cause,
                returns_at: *returns_at,
                policy_version: version,
            })]
        }
        Timer::PoolReturn { cause, due_at } => {
            vec![return_to_pool(state, id, *cause, *due_at, ctx)]
        }
        Timer::SlaWarning {
            complaint_id,
            clock,
            due_at,
        } => vec![CustomerEvent::ComplaintSlaWarned(ComplaintSlaWarned {
            customer_id: id,
            complaint_id: *complaint_id,
            clock: *clock,
            due_at: *due_at,
        })],
        Timer::SlaBreach {
            complaint_id,
            clock,
            due_at,
        } => sla_breach(state, id, *complaint_id, *clock, *due_at, ctx),
        Timer::Dormancy { .. } => {
            let from = state.stage;
            vec![CustomerEvent::LifecycleStageChanged(
                LifecycleStageChanged {
                    customer_id: id,
                    from,
                    to: LifecycleStage::Dormant,
                    reason: format!(
                        "no activity for {} days",
                        ctx.policy.document.lifecycle.dormant_after_days
                    ),
                    reactivated: false,
                    at: Some(ctx.now),
                    automatic: true,
                },
            )]
        }
    })
}

/// The customer returned to the pool by the rules: why, in the policy's words.
fn return_to_pool(
    state: &Customer,
    id: CustomerId,
    cause: PoolCause,
    due_at: DateTime<Utc>,
    ctx: &DecisionContext,
) -> CustomerEvent {
    let pool = &ctx.policy.document.pool;
    let tier = state.value_tier;
    let reason = match cause {
        PoolCause::NoContact => format!(
            "no contact by the owner for {} days",
            pool.no_contact_days.of(tier)
        ),
        PoolCause::LeadNotWon => format!(
            "lead not won within {} days",
            pool.lead_not_won_days.of(tier)
        ),
    };
    CustomerEvent::ReleasedToPool(ReleasedToPool {
        customer_id: id,
        previous_owner: state.owner.expect("a pool timer needs an owner"),
        reason,
        released_by: ctx.actor.clone(),
        at: Some(ctx.now),
        rule: Some(PoolReturn {
            cause,
            due_at,
            policy_version: ctx.policy.version,
        }),
    })
}

/// A complaint's SLA clock run out: the breach, and the complaint escalated one level
/// unless it is at the top already.
fn sla_breach(
    state: &Customer,
    id: CustomerId,
    complaint_id: ComplaintId,
    clock: SlaClock,
    due_at: DateTime<Utc>,
    ctx: &DecisionContext,
) -> Vec<CustomerEvent> {
    let k = &state.complaints[&complaint_id];
    let mut events = vec![CustomerEvent::ComplaintSlaBreached(ComplaintSlaBreached {
        customer_id: id,
        complaint_id,
        clock,
        due_at,
        owner: state.owner,
    })];
    if k.escalation_level < MAX_ESCALATION {
        let level = k.escalation_level + 1;
        events.push(CustomerEvent::ComplaintEscalated(ComplaintEscalated {
            customer_id: id,
            complaint_id,
            level,
            reason: format!("{} SLA breached", clock.as_str().replace('_', "-")),
            escalated_to: ctx.escalation.at(level),
            automatic: true,
        }));
    }
    events
}

//! Every customer command and every refusal, given/when/then.

mod support;

use chrono::Duration;
use crm_domain::customer::*;
use crm_domain::*;
use support::*;
use uuid::Uuid;

fn cmd_assign(n: u128, m: u128) -> CustomerCommand {
    CustomerCommand::AssignOwner(AssignOwner {
        customer_id: cid(n),
        manager_id: mid(m),
        reason: "branch walk-in".into(),
    })
}

fn cmd_transfer(n: u128, m: u128) -> CustomerCommand {
    CustomerCommand::TransferOwner(TransferOwner {
        customer_id: cid(n),
        to_manager_id: mid(m),
        reason: "rebalancing".into(),
    })
}

fn contact(n: u128, m: u128, channel: ContactChannel, outcome: ContactOutcome) -> CustomerCommand {
    CustomerCommand::RecordContact(RecordContact {
        customer_id: cid(n),
        contact_id: ContactId::new(Uuid::from_u128(7)),
        manager_id: mid(m),
        channel,
        direction: Direction::Outbound,
        outcome,
        summary: Some("called about the fund".into()),
        next_follow_up_at: None,
        occurred_at: None,
    })
}

fn contact_made_at(n: u128, m: u128, minutes: i64) -> CustomerCommand {
    let CustomerCommand::RecordContact(mut c) =
        contact(n, m, ContactChannel::Phone, ContactOutcome::Reached)
    else {
        unreachable!()
    };
    c.occurred_at = Some(at(minutes));
    CustomerCommand::RecordContact(c)
}

fn contacted_at(events: &[CustomerEvent]) -> chrono::DateTime<chrono::Utc> {
    match &events[0] {
        CustomerEvent::ContactRecorded(c) => c.contacted_at,
        other => panic!("{other:?}"),
    }
}

fn log(n: u128, k: u128, severity: Severity) -> CustomerCommand {
    CustomerCommand::LogComplaint(LogComplaint {
        customer_id: cid(n),
        complaint_id: kid(k),
        severity,
        category: "fees".into(),
        description: "charged twice".into(),
        channel: ContactChannel::Phone,
    })
}

fn ack(n: u128, k: u128) -> CustomerCommand {
    CustomerCommand::AcknowledgeComplaint(AcknowledgeComplaint {
        customer_id: cid(n),
        complaint_id: kid(k),
        by: mid(1),
    })
}

fn resolve(n: u128, k: u128) -> CustomerCommand {
    CustomerCommand::ResolveComplaint(ResolveComplaint {
        customer_id: cid(n),
        complaint_id: kid(k),
        resolved_by: mid(1),
        resolution: "refunded".into(),
    })
}

fn reopen(n: u128, k: u128) -> CustomerCommand {
    CustomerCommand::ReopenComplaint(ReopenComplaint {
        customer_id: cid(n),
        complaint_id: kid(k),
        reason: "refund missing".into(),
    })
}

fn close(n: u128, k: u128, satisfaction: Option<u8>) -> CustomerCommand {
    CustomerCommand::CloseComplaint(CloseComplaint {
        customer_id: cid(n),
        complaint_id: kid(k),
        satisfaction,
    })
}

fn escalate(n: u128, k: u128) -> CustomerCommand {
    CustomerCommand::EscalateComplaint(EscalateComplaint {
        customer_id: cid(n),
        complaint_id: kid(k),
        reason: "no answer".into(),
    })
}

fn purchase(n: u128, p: u128, amount: i64) -> CustomerCommand {
    CustomerCommand::RecordPurchase(RecordPurchase {
        customer_id: cid(n),
        purchase_id: PurchaseId::new(Uuid::from_u128(p)),
        product_line: "wealth".into(),
        amount_minor: amount,
        currency: "CNY".into(),
        manager_id: Some(mid(1)),
    })
}

fn stage(n: u128, to: LifecycleStage) -> CustomerCommand {
    CustomerCommand::ChangeLifecycleStage(ChangeLifecycleStage {
        customer_id: cid(n),
        to,
        reason: "reviewed".into(),
    })
}

// ---- registration ----------------------------------------------------------------

#[test]
fn register_normalises_and_records_everything() {
    let mut r = register(1);
    r.phone = Some("+86 138-0013-8000".into());
    r.email = Some(" Li.Wei@Example.CN ".into());
    let (_, events) = given([])
        .when(CustomerCommand::Register(r), &ctx(0))
        .accepted();
    let CustomerEvent::CustomerRegistered(e) = &events[0] else {
        panic!("{events:?}")
    };
    assert_eq!(e.phone.as_deref(), Some("+8613800138000"));
    assert_eq!(e.email.as_deref(), Some("li.wei@example.cn"));
    assert_eq!(e.stage, LifecycleStage::Lead);
    assert_eq!(e.value_tier, ValueTier::Low);
    assert_eq!(e.registered_at, at(0));
    let state = fold(&events);
    assert_eq!(state.unique_keys().len(), 2);
}

#[test]
fn register_refusals() {
    given(registered(1))
        .when(CustomerCommand::Register(register(1)), &ctx(1))
        .then_error("customer.already_registered");
    let dup = DuplicateMatch {
        existing: cid(9),
        key: UniqueKey::phone("+8613800130001"),
    };
    given([])
        .when(
            CustomerCommand::Register(register(1)),
            &ctx(0).with_duplicate(dup),
        )
        .then_error("customer.duplicate");

    let mut no_key = register(2);
    no_key.phone = None;
    given([])
        .when(CustomerCommand::Register(no_key), &ctx(0))
        .then_error("customer.contact_key_required");

    let mut enterprise = register(3);
    enterprise.customer_type = CustomerType::Enterprise;
    let e = given([])
        .when(CustomerCommand::Register(enterprise), &ctx(0))
        .then_error("customer.enterprise_registration_number_required");
    assert!(e.to_string().contains("registration number"), "{e}");

    let mut bad_phone = register(4);
    bad_phone.phone = Some("12ab".into());
    given([])
        .when(CustomerCommand::Register(bad_phone), &ctx(0))
        .then_error("validation.invalid_field");

    let mut active = register(5);
    active.stage = Some(LifecycleStage::Active);
    given([])
        .when(CustomerCommand::Register(active), &ctx(0))
        .then_error("validation.invalid_field");

    let mut blank = register(6);
    blank.display_name = "   ".into();
    given([])
        .when(CustomerCommand::Register(blank), &ctx(0))
        .then_error("validation.invalid_field");
}

#[test]
fn a_duplicate_match_on_itself_is_not_a_duplicate() {
    let dup = DuplicateMatch {
        existing: cid(1),
        key: UniqueKey::phone("+8613800130001"),
    };
    given([])
        .when(
            CustomerCommand::Register(register(1)),
            &ctx(0).with_duplicate(dup),
        )
        .accepted();
}

#[test]
fn commands_on_an_unknown_customer_are_refused() {
    for c in [
        cmd_assign(1, 1),
        contact(1, 1, ContactChannel::Phone, ContactOutcome::Reached),
        log(1, 1, Severity::Low),
        stage(1, LifecycleStage::Contacted),
    ] {
        given([])
            .when(c, &ctx(0).with_manager(manager(1, 0, 5)))
            .then_error("customer.unknown");
    }
}

#[test]
fn update_profile_records_only_changes() {
    let upd = UpdateProfile {
        customer_id: cid(1),
        display_name: Some("Customer 1".into()),
        email: Some("NEW@x.cn".into()),
        ..UpdateProfile::default()
    };
    let (_, events) = given(registered(1))
        .when(CustomerCommand::UpdateProfile(upd), &ctx(5))
        .accepted();
    assert_eq!(
        events,
        vec![CustomerEvent::ProfileUpdated(ProfileUpdated {
            customer_id: cid(1),
            email: Some("new@x.cn".into()),
            ..ProfileUpdated::default()
        })]
    );
    let same = UpdateProfile {
        customer_id: cid(1),
        display_name: Some("Customer 1".into()),
        ..UpdateProfile::default()
    };
    given(registered(1))
        .when(CustomerCommand::UpdateProfile(same), &ctx(5))
        .then_error("command.nothing_to_change");
    let dup = UpdateProfile {
        customer_id: cid(1),
        phone: Some("13900000000".into()),
        ..UpdateProfile::default()
    };
    let m = DuplicateMatch {
        existing: cid(2),
        key: UniqueKey::phone("+8613900000000"),
    };
    given(registered(1))
        .when(
            CustomerCommand::UpdateProfile(dup),
            &ctx(5).with_duplicate(m),
        )
        .then_error("customer.duplicate");
}

// ---- ownership -------------------------------------------------------------------

#[test]
fn assign_then_transfer_then_release_then_claim() {
    let g = given(registered(1));
    let (g, events) = g
        .when(cmd_assign(1, 1), &ctx(1).with_manager(manager(1, 3, 10)))
        .accepted();
    assert!(
        matches!(&events[0], CustomerEvent::OwnerAssigned(e) if e.manager_id == mid(1) && e.assigned_by == Actor::person("tester"))
    );
    let (g, events) = g
        .when(cmd_transfer(1, 2), &ctx(2).with_manager(manager(2, 0, 10)))
        .accepted();
    assert!(
        matches!(&events[0], CustomerEvent::OwnershipTransferred(e) if e.from_manager == mid(1) && e.to_manager == mid(2))
    );
    let g = g
        .when(
            CustomerCommand::ReleaseToPool(ReleaseToPool {
                customer_id: cid(1),
                reason: "moved away".into(),
            }),
            &ctx(3),
        )
        .then(&[CustomerEvent::ReleasedToPool(ReleasedToPool {
            customer_id: cid(1),
            previous_owner: mid(2),
            reason: "moved away".into(),
            released_by: Actor::person("tester"),
            at: Some(at(3)),
            rule: None,
        })]);
    assert_eq!(customer(&g.0).owner, None);
    assert_eq!(customer(&g.0).previous_owner, Some(mid(2)));
    let claim = CustomerCommand::ClaimFromPool(ClaimFromPool {
        customer_id: cid(1),
        manager_id: mid(3),
    });
    let g = g
        .when(claim, &ctx(4).with_manager(manager(3, 0, 1)))
        .accepted()
        .0;
    assert_eq!(customer(&g.0).owner, Some(mid(3)));
}

#[test]
fn one_owner_at_a_time() {
    given(owned_by(1, 1))
        .when(cmd_assign(1, 2), &ctx(5).with_manager(manager(2, 0, 5)))
        .then_error("ownership.already_owned");
    let claim = CustomerCommand::ClaimFromPool(ClaimFromPool {
        customer_id: cid(1),
        manager_id: mid(2),
    });
    given(owned_by(1, 1))
        .when(claim, &ctx(5).with_manager(manager(2, 0, 5)))
        .then_error("ownership.not_in_pool");
    given(registered(1))
        .when(cmd_transfer(1, 2), &ctx(5).with_manager(manager(2, 0, 5)))
        .then_error("ownership.not_owned");
    let release = CustomerCommand::ReleaseToPool(ReleaseToPool {
        customer_id: cid(1),
        reason: "x".into(),
    });
    given(registered(1))
        .when(release, &ctx(5))
        .then_error("ownership.not_owned");
    given(owned_by(1, 1))
        .when(cmd_transfer(1, 1), &ctx(5).with_manager(manager(1, 1, 5)))
        .then_error("ownership.same_owner");
}

#[test]
fn holding_limit_and_manager_checks() {
    let e = given(registered(1))
        .when(cmd_assign(1, 1), &ctx(1).with_manager(manager(1, 5, 5)))
        .then_error("ownership.holding_limit_reached");
    assert!(e.to_string().contains("holds 5 customers"), "{e}");
    given(owned_by(1, 1))
        .when(cmd_transfer(1, 2), &ctx(1).with_manager(manager(2, 7, 7)))
        .then_error("ownership.holding_limit_reached");
    let mut inactive = manager(1, 0, 5);
    inactive.active = false;
    given(registered(1))
        .when(cmd_assign(1, 1), &ctx(1).with_manager(inactive))
        .then_error("manager.inactive");
    given(registered(1))
        .when(cmd_assign(1, 1), &ctx(1))
        .then_error("manager.unknown");
    // The looked-up manager must be the one named in the command.
    given(registered(1))
        .when(cmd_assign(1, 1), &ctx(1).with_manager(manager(2, 0, 5)))
        .then_error("manager.unknown");
}

// ---- contacts --------------------------------------------------------------------

#[test]
fn contact_by_owner_moves_a_lead_to_contacted() {
    let (_, events) = given(owned_by(1, 1))
        .when(
            contact(1, 1, ContactChannel::Phone, ContactOutcome::Reached),
            &ctx(10),
        )
        .accepted();
    assert!(
        matches!(&events[0], CustomerEvent::ContactRecorded(e) if e.by_owner && e.contacted_at == at(10))
    );
    assert!(
        matches!(&events[1], CustomerEvent::LifecycleStageChanged(e) if e.from == LifecycleStage::Lead && e.to == LifecycleStage::Contacted)
    );
    let (_, events) = given(owned_by(1, 1))
        .when(
            contact(1, 2, ContactChannel::Phone, ContactOutcome::NoAnswer),
            &ctx(10),
        )
        .accepted();
    assert_eq!(events.len(), 1, "an unanswered call changes no stage");
    assert!(matches!(&events[0], CustomerEvent::ContactRecorded(e) if !e.by_owner));
}

#[test]
fn sms_needs_consent() {
    let e = given(registered(1))
        .when(
            contact(1, 1, ContactChannel::Sms, ContactOutcome::Reached),
            &ctx(1),
        )
        .then_error("contact.sms_consent_missing");
    assert!(e.to_string().contains("consent"));
    given(registered_with_sms(1))
        .when(
            contact(1, 1, ContactChannel::Sms, ContactOutcome::Reached),
            &ctx(1),
        )
        .accepted();
}

#[test]
fn a_contact_may_be_dated_when_it_happened_within_a_week_never_in_the_future() {
    let day = 24 * 60;
    let now = 10 * day;
    // Yesterday's call, recorded today: dated yesterday.
    let (_, events) = given(owned_by(1, 1))
        .when(contact_made_at(1, 1, now - day), &ctx(now))
        .accepted();
    assert_eq!(contacted_at(&events), at(now - day));
    // More than a week back, or after now beyond the clock skew: refused, naming the field.
    let e = given(owned_by(1, 1))
        .when(contact_made_at(1, 1, now - 8 * day), &ctx(now))
        .then_error("validation.invalid_field");
    assert!(e.to_string().contains("occurred_at"), "{e}");
    given(owned_by(1, 1))
        .when(contact_made_at(1, 1, now + 6), &ctx(now))
        .then_error("validation.invalid_field");
    // A little after now (the caller's clock is ahead) is now.
    let (_, events) = given(owned_by(1, 1))
        .when(contact_made_at(1, 1, now + 2), &ctx(now))
        .accepted();
    assert_eq!(contacted_at(&events), at(now));
}

#[test]
fn a_late_recorded_contact_never_moves_the_owners_last_contact_back() {
    let day = 24 * 60;
    let (given_, _) = given(owned_by(1, 1))
        .when(
            contact(1, 1, ContactChannel::Phone, ContactOutcome::Reached),
            &ctx(5 * day),
        )
        .accepted();
    let (given_, events) = given_
        .when(contact_made_at(1, 1, 3 * day), &ctx(6 * day))
        .accepted();
    assert_eq!(contacted_at(&events), at(3 * day));
    let state = customer(&given_.0);
    assert_eq!(state.last_owner_contact_at, Some(at(5 * day)));
    assert_eq!(state.last_contact_at, Some(at(5 * day)));
}

#[test]
fn a_contact_made_before_the_owner_received_the_customer_is_not_the_owners() {
    // Owned since minute 1; a contact the owner made before (as another owner's
    // colleague, say) does not count for the pool rule.
    let (_, events) = given(owned_by(1, 1))
        .when(contact_made_at(1, 1, 0), &ctx(60))
        .accepted();
    match &events[0] {
        CustomerEvent::ContactRecorded(c) => assert!(!c.by_owner, "{c:?}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn follow_up_must_be_in_the_future() {
    let CustomerCommand::RecordContact(mut c) =
        contact(1, 1, ContactChannel::Phone, ContactOutcome::Reached)
    else {
        unreachable!()
    };
    c.next_follow_up_at = Some(at(0));
    given(registered(1))
        .when(CustomerCommand::RecordContact(c.clone()), &ctx(5))
        .then_error("validation.invalid_field");
    c.next_follow_up_at = Some(at(60 * 24));
    given(registered(1))
        .when(CustomerCommand::RecordContact(c), &ctx(5))
        .accepted();
}

#[test]
fn a_real_contact_reactivates_a_dormant_customer() {
    let g = given(registered(1))
        .when(stage(1, LifecycleStage::Qualified), &ctx(1))
        .accepted()
        .0
        .when(stage(1, LifecycleStage::Customer), &ctx(2))
        .accepted()
        .0
        .when(stage(1, LifecycleStage::Active), &ctx(3))
        .accepted()
        .0
        .when(stage(1, LifecycleStage::Dormant), &ctx(4))
        .accepted()
        .0;
    let (_, events) = g
        .when(
            contact(1, 1, ContactChannel::Visit, ContactOutcome::Interested),
            &ctx(5),
        )
        .accepted();
    assert!(
        matches!(&events[1], CustomerEvent::LifecycleStageChanged(e) if e.reactivated && e.to == LifecycleStage::Active)
    );
}

// ---- complaints ------------------------------------------------------------------

#[test]
fn complaint_life_with_sla_figures() {
    let (g, events) = given(owned_by(1, 1))
        .when(log(1, 1, Severity::Critical), &ctx(0))
        .accepted();
    let CustomerEvent::ComplaintLogged(l) = &events[0] else {
        panic!()
    };
    assert_eq!(l.owner, Some(mid(1)));
    assert_eq!(l.first_response_due_at, at(10));
    assert_eq!(l.resolution_due_at, at(4 * 60));
    let (g, events) = g.when(ack(1, 1), &ctx(7)).accepted();
    assert!(
        matches!(&events[0], CustomerEvent::ComplaintAcknowledged(e) if e.response_seconds == 420 && e.within_sla)
    );
    let (g, events) = g.when(escalate(1, 1), &ctx(8)).accepted();
    assert!(matches!(&events[0], CustomerEvent::ComplaintEscalated(e) if e.level == 1));
    let (g, events) = g.when(resolve(1, 1), &ctx(300)).accepted();
    assert!(
        matches!(&events[0], CustomerEvent::ComplaintSlaBreached(b) if b.clock == SlaClock::Resolution && b.due_at == at(240)),
        "a late resolution records the breach no timer flagged"
    );
    assert!(
        matches!(&events[1], CustomerEvent::ComplaintResolved(e) if !e.within_sla && e.resolution_seconds == 300 * 60)
    );
    let (g, events) = g.when(reopen(1, 1), &ctx(400)).accepted();
    assert!(
        matches!(&events[0], CustomerEvent::ComplaintReopened(e) if e.previous_resolver == mid(1) && e.resolution_due_at == at(400 + 240))
    );
    let (g, events) = g.when(resolve(1, 1), &ctx(460)).accepted();
    assert!(
        matches!(&events[0], CustomerEvent::ComplaintResolved(e) if e.within_sla && e.resolution_seconds == 60 * 60),
        "clock restarted at reopening"
    );
    let g = g.when(close(1, 1, Some(4)), &ctx(500)).accepted().0;
    let state = customer(&g.0);
    let k = &state.complaints[&kid(1)];
    assert_eq!(k.status, ComplaintStatus::Closed);
    assert_eq!(k.reopen_count, 1);
    assert_eq!(k.satisfaction, Some(4));
}

#[test]
fn a_late_first_response_is_outside_the_sla() {
    let (g, _) = given(registered(1))
        .when(log(1, 1, Severity::Low), &ctx(0))
        .accepted();
    let (_, events) = g.when(ack(1, 1), &ctx(11)).accepted();
    assert!(
        matches!(&events[0], CustomerEvent::ComplaintSlaBreached(b) if b.clock == SlaClock::FirstResponse && b.due_at == at(10))
    );
    assert!(matches!(&events[1], CustomerEvent::ComplaintAcknowledged(e) if !e.within_sla));
}

#[test]
fn complaint_refusals() {
    let logged = given(registered(1))
        .when(log(1, 1, Severity::Normal), &ctx(0))
        .accepted()
        .0;
    let logged_events = logged.0.clone();
    given(logged_events.clone())
        .when(log(1, 1, Severity::Normal), &ctx(1))
        .then_error("complaint.already_exists");
    given(logged_events.clone())
        .when(ack(1, 2), &ctx(1))
        .then_error("complaint.unknown");
    given(logged_events.clone())
        .when(reopen(1, 1), &ctx(1))
        .then_error("complaint.invalid_transition");
    given(logged_events.clone())
        .when(close(1, 1, None), &ctx(1))
        .then_error("complaint.invalid_transition");

    let acked = given(logged_events.clone())
        .when(ack(1, 1), &ctx(1))
        .accepted()
        .0;
    given(acked.0.clone())
        .when(ack(1, 1), &ctx(2))
        .then_error("complaint.invalid_transition");
    let twice = given(acked.0.clone())
        .when(escalate(1, 1), &ctx(2))
        .accepted()
        .0
        .when(escalate(1, 1), &ctx(3))
        .accepted()
        .0;
    given(twice.0.clone())
        .when(escalate(1, 1), &ctx(4))
        .then_error("complaint.escalation_exhausted");

    let resolved = given(acked.0).when(resolve(1, 1), &ctx(5)).accepted().0;
    given(resolved.0.clone())
        .when(resolve(1, 1), &ctx(6))
        .then_error("complaint.invalid_transition");
    given(resolved.0.clone())
        .when(escalate(1, 1), &ctx(6))
        .then_error("complaint.invalid_transition");
    given(resolved.0.clone())
        .when(close(1, 1, Some(9)), &ctx(6))
        .then_error("validation.invalid_field");

    let closed = given(resolved.0)
        .when(close(1, 1, Some(2)), &ctx(7))
        .accepted()
        .0;
    for c in [
        resolve(1, 1),
        ack(1, 1),
        escalate(1, 1),
        reopen(1, 1),
        close(1, 1, None),
    ] {
        let e = given(closed.0.clone())
            .when(c, &ctx(8))
            .then_error("complaint.closed");
        assert!(e.to_string().contains("is closed"), "{e}");
    }
}

// ---- purchases, referrals, lifecycle ---------------------------------------------

#[test]
fn a_purchase_wins_the_deal_and_converts_referrals() {
    let referral = CustomerCommand::RecordReferral(RecordReferral {
        customer_id: cid(1),
        referral_id: ReferralId::new(Uuid::from_u128(5)),
        referrer: "staff:zhang".into(),
        referred_to: mid(2),
        note: None,
    });
    let (g, _) = given(registered(1))
        .when(referral, &ctx(1).with_manager(manager(2, 99, 1)))
        .accepted();
    let (g, events) = g.when(purchase(1, 1, 50_000), &ctx(2)).accepted();
    assert!(
        matches!(&events[1], CustomerEvent::LifecycleStageChanged(e) if e.to == LifecycleStage::Customer && e.reason == "deal won")
    );
    assert!(
        matches!(&events[2], CustomerEvent::ReferralConverted(e) if e.referrer == "staff:zhang" && e.referred_to == mid(2))
    );
    let (_, events) = g.when(purchase(1, 2, 10), &ctx(3)).accepted();
    assert_eq!(events.len(), 1, "a second purchase converts nothing again");
}

#[test]
fn purchase_and_referral_refusals() {
    let (g, _) = given(registered(1))
        .when(purchase(1, 1, 100), &ctx(1))
        .accepted();
    given(g.0.clone())
        .when(purchase(1, 1, 100), &ctx(2))
        .then_error("purchase.already_recorded");
    given(registered(1))
        .when(purchase(1, 2, 0), &ctx(2))
        .then_error("validation.invalid_field");
    let CustomerCommand::RecordPurchase(mut p) = purchase(1, 3, 100) else {
        unreachable!()
    };
    p.currency = "rmb".into();
    given(registered(1))
        .when(CustomerCommand::RecordPurchase(p), &ctx(2))
        .then_error("validation.invalid_field");
    let referral = |m: u128| {
        CustomerCommand::RecordReferral(RecordReferral {
            customer_id: cid(1),
            referral_id: ReferralId::new(Uuid::from_u128(5)),
            referrer: "staff:zhang".into(),
            referred_to: mid(m),
            note: None,
        })
    };
    given(registered(1))
        .when(referral(2), &ctx(1))
        .then_error("manager.unknown");
    let (g, _) = given(registered(1))
        .when(referral(2), &ctx(1).with_manager(manager(2, 0, 1)))
        .accepted();
    given(g.0)
        .when(referral(2), &ctx(1).with_manager(manager(2, 0, 1)))
        .then_error("referral.already_recorded");
}

#[test]
fn lifecycle_changes_follow_the_funnel() {
    given(registered(1))
        .when(stage(1, LifecycleStage::Lead), &ctx(1))
        .then_error("command.nothing_to_change");
    let e = given(registered(1))
        .when(stage(1, LifecycleStage::Active), &ctx(1))
        .then_error("lifecycle.invalid_transition");
    assert!(e.to_string().contains("lead to active"), "{e}");
    let (_, events) = given(registered(1))
        .when(stage(1, LifecycleStage::Churned), &ctx(1))
        .accepted();
    assert!(matches!(&events[0], CustomerEvent::LifecycleStageChanged(e) if !e.reactivated));
    let churned = given(registered(1))
        .when(stage(1, LifecycleStage::Qualified), &ctx(1))
        .accepted()
        .0
        .when(stage(1, LifecycleStage::Customer), &ctx(2))
        .accepted()
        .0
        .when(stage(1, LifecycleStage::Active), &ctx(3))
        .accepted()
        .0
        .when(stage(1, LifecycleStage::Churned), &ctx(4))
        .accepted()
        .0;
    let (_, events) = churned.when(purchase(1, 1, 100), &ctx(5)).accepted();
    assert!(
        matches!(&events[1], CustomerEvent::LifecycleStageChanged(e) if e.reactivated && e.to == LifecycleStage::Active)
    );
}

#[test]
fn every_error_code_is_documented_once() {
    let mut codes = crm_domain::error::ALL_CODES.to_vec();
    codes.sort();
    codes.dedup();
    assert_eq!(codes.len(), crm_domain::error::ALL_CODES.len());
    let doc = include_str!("../../../docs/api.md");
    for code in crm_domain::error::ALL_CODES {
        assert!(doc.contains(code), "docs/api.md does not document {code}");
    }
}

#[test]
fn sla_policy_defaults_follow_the_service_promise() {
    let sla = SlaPolicy::default();
    assert_eq!(sla.first_response, Duration::minutes(10));
    assert_eq!(sla.resolution(Severity::Critical), Duration::hours(4));
    assert_eq!(sla.resolution(Severity::High), Duration::hours(24));
    assert_eq!(sla.resolution(Severity::Normal), Duration::hours(72));
    assert_eq!(sla.resolution(Severity::Low), Duration::days(7));
}

// ---- erasure of personal data ------------------------------------------------------

fn erase(n: u128) -> CustomerCommand {
    CustomerCommand::EraseCustomerData(EraseCustomerData {
        customer_id: cid(n),
        reason: "erasure request DSR-42".into(),
    })
}

#[test]
fn erasure_blanks_personal_fields_and_frees_the_unique_keys() {
    let before = customer(&registered(1));
    assert!(before.phone.is_some() && !before.unique_keys().is_empty());
    let (given, events) = given(registered(1)).when(erase(1), &ctx(5)).accepted();
    assert_eq!(
        events,
        vec![CustomerEvent::PersonalDataErased(PersonalDataErased {
            customer_id: cid(1),
            reason: "erasure request DSR-42".into(),
            erased_by: ctx(5).actor,
            at: at(5),
        })]
    );
    let after = customer(&[registered(1), events].concat());
    assert!(after.erased);
    assert_eq!(after.display_name, crm_domain::customer::personal::ERASED);
    assert!(after.phone.is_none() && after.email.is_none());
    assert!(after.registration_number.is_none());
    assert!(
        after.unique_keys().is_empty(),
        "the phone can be registered again"
    );
    assert_eq!(after.version, before.version + 1);
    given
        .when(erase(1), &ctx(6))
        .then_error("customer.already_erased");
}

#[test]
fn after_erasure_history_goes_on_without_personal_data() {
    let erased = || {
        let (g, events) = given(owned_by(1, 2)).when(erase(1), &ctx(5)).accepted();
        g.and(events)
    };
    // New personal data is refused ...
    erased()
        .when(
            CustomerCommand::UpdateProfile(UpdateProfile {
                customer_id: cid(1),
                phone: Some("+86 139 0000 0000".into()),
                ..UpdateProfile::default()
            }),
            &ctx(10),
        )
        .then_error("customer.personal_data_erased");
    erased()
        .when(
            contact(1, 2, ContactChannel::Phone, ContactOutcome::Reached),
            &ctx(10),
        )
        .then_error("customer.personal_data_erased");
    erased()
        .when(log(1, 3, Severity::Normal), &ctx(10))
        .then_error("customer.personal_data_erased");
    // ... while facts without it are recorded as before.
    let mut plain = contact(1, 2, ContactChannel::Phone, ContactOutcome::Reached);
    if let CustomerCommand::RecordContact(c) = &mut plain {
        c.summary = None;
    }
    erased().when(plain, &ctx(10)).accepted();
}

#[test]
fn an_unknown_customer_cannot_be_erased() {
    given([])
        .when(erase(9), &ctx(1))
        .then_error("customer.unknown");
}

#[test]
fn a_stream_is_unregistered_until_its_registration() {
    let (_, erased) = given(registered(1)).when(erase(1), &ctx(5)).accepted();
    // An event without the registration before it registers nothing, and counts for
    // nothing: the state is still that of an empty stream.
    assert_eq!(fold(&erased), CustomerState::Unregistered);
    assert_eq!(fold(&erased).version(), 0);
    assert!(fold(&erased).unique_keys().is_empty() && fold(&erased).owner().is_none());
    let c = customer(&[registered(1), erased].concat());
    assert_eq!((c.id, c.version, c.erased), (cid(1), 2, true));
    assert_eq!(c.last_activity_at, c.registered_at);
}

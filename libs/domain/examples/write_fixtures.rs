//! Writes `tests/fixtures/events_v1.json` from events produced by `decide`. Run once per
//! new event type or schema version; existing entries must never change.
use std::collections::BTreeMap;

use chrono::{TimeZone, Utc};
use crm_domain::customer::*;
use crm_domain::manager::{DeactivateManager, ReactivateManager, RegisterManager, UpdateManager};
use crm_domain::*;
use uuid::Uuid;

fn main() {
    let t = |m: i64| {
        Utc.with_ymd_and_hms(2026, 11, 25, 9, 0, 0).unwrap() + chrono::Duration::minutes(m)
    };
    let ctx = |m: i64| DecisionContext::new(t(m), Actor::person("li.wei"));
    let c = CustomerId::new(Uuid::from_u128(0x0193_0000_0000_7000_8000_0000_0000_00c1));
    let m1 = ManagerId::new(Uuid::from_u128(0x0193_0000_0000_7000_8000_0000_0000_00a1));
    let m2 = ManagerId::new(Uuid::from_u128(0x0193_0000_0000_7000_8000_0000_0000_00a2));
    let k = ComplaintId::new(Uuid::from_u128(0x0193_0000_0000_7000_8000_0000_0000_00b1));
    let view = |id: ManagerId| ManagerView {
        id,
        active: true,
        role: ManagerRole::Manager,
        team: "east-1".parse().unwrap(),
        region: "east".parse().unwrap(),
        branch: "sh-01".parse().unwrap(),
        holding_limit: 100,
        holdings: 1,
    };
    let mut state = CustomerState::default();
    let mut out: BTreeMap<String, serde_json::Value> = BTreeMap::new();
    let mut run = |cmd: CustomerCommand, ctx: DecisionContext, state: &mut CustomerState| {
        for e in decide(state, &cmd, &ctx).unwrap() {
            state.apply(&e);
            out.entry(e.event_type().to_string()).or_insert(serde_json::json!({
                "event_type": e.event_type(), "schema_version": CustomerEvent::SCHEMA_VERSION, "payload": e.payload()}));
        }
    };
    use CustomerCommand as C;
    run(
        C::Register(RegisterCustomer {
            customer_id: c,
            customer_type: CustomerType::Individual,
            display_name: "王芳".into(),
            phone: Some("138 0013 8000".into()),
            email: Some("wang.fang@example.cn".into()),
            registration_number: None,
            region: "east".parse().unwrap(),
            branch: Some("sh-01".parse().unwrap()),
            first_touch_channel: FirstTouchChannel::Web,
            industry: None,
            product_interest: Some("wealth".into()),
            consents: Some(Consents {
                sms: true,
                email: true,
                phone: true,
            }),
            stage: None,
            value_tier: Some(ValueTier::Mid),
            aum_minor: Some(8_000_000),
        }),
        ctx(0),
        &mut state,
    );
    run(
        C::UpdateProfile(UpdateProfile {
            customer_id: c,
            email: Some("fang@example.cn".into()),
            ..Default::default()
        }),
        ctx(1),
        &mut state,
    );
    run(
        C::RecordReferral(RecordReferral {
            customer_id: c,
            referral_id: ReferralId::new(Uuid::from_u128(0xd1)),
            referrer: "staff:zhang".into(),
            referred_to: m1,
            note: Some("neighbour".into()),
        }),
        ctx(2).with_manager(view(m1)),
        &mut state,
    );
    run(
        C::AssignOwner(AssignOwner {
            customer_id: c,
            manager_id: m1,
            reason: "walk-in".into(),
        }),
        ctx(3).with_manager(view(m1)),
        &mut state,
    );
    run(
        C::RecordContact(RecordContact {
            customer_id: c,
            contact_id: ContactId::new(Uuid::from_u128(0xe1)),
            manager_id: m1,
            channel: ContactChannel::Phone,
            direction: Direction::Outbound,
            outcome: ContactOutcome::Reached,
            summary: Some("intro call".into()),
            next_follow_up_at: Some(t(60 * 24)),
            occurred_at: None,
        }),
        ctx(4),
        &mut state,
    );
    run(
        C::TransferOwner(TransferOwner {
            customer_id: c,
            to_manager_id: m2,
            reason: "rebalance".into(),
        }),
        ctx(5).with_manager(view(m2)),
        &mut state,
    );
    run(
        C::ReleaseToPool(ReleaseToPool {
            customer_id: c,
            reason: "left the region".into(),
        }),
        ctx(6),
        &mut state,
    );
    run(
        C::ClaimFromPool(ClaimFromPool {
            customer_id: c,
            manager_id: m1,
        }),
        ctx(7).with_manager(view(m1)),
        &mut state,
    );
    run(
        C::LogComplaint(LogComplaint {
            customer_id: c,
            complaint_id: k,
            severity: Severity::High,
            category: "fees".into(),
            description: "charged twice".into(),
            channel: ContactChannel::Phone,
        }),
        ctx(8),
        &mut state,
    );
    run(
        C::AcknowledgeComplaint(AcknowledgeComplaint {
            customer_id: c,
            complaint_id: k,
            by: m1,
        }),
        ctx(12),
        &mut state,
    );
    run(
        C::EscalateComplaint(EscalateComplaint {
            customer_id: c,
            complaint_id: k,
            reason: "customer asked".into(),
        }),
        ctx(13),
        &mut state,
    );
    run(
        C::ResolveComplaint(ResolveComplaint {
            customer_id: c,
            complaint_id: k,
            resolved_by: m1,
            resolution: "refunded".into(),
        }),
        ctx(60),
        &mut state,
    );
    run(
        C::ReopenComplaint(ReopenComplaint {
            customer_id: c,
            complaint_id: k,
            reason: "refund missing".into(),
        }),
        ctx(120),
        &mut state,
    );
    run(
        C::ResolveComplaint(ResolveComplaint {
            customer_id: c,
            complaint_id: k,
            resolved_by: m1,
            resolution: "refund sent".into(),
        }),
        ctx(180),
        &mut state,
    );
    run(
        C::CloseComplaint(CloseComplaint {
            customer_id: c,
            complaint_id: k,
            satisfaction: Some(4),
        }),
        ctx(200),
        &mut state,
    );
    run(
        C::RecordPurchase(RecordPurchase {
            customer_id: c,
            purchase_id: PurchaseId::new(Uuid::from_u128(0xf1)),
            product_line: "wealth".into(),
            amount_minor: 5_000_000,
            currency: "CNY".into(),
            manager_id: Some(m1),
        }),
        ctx(300),
        &mut state,
    );

    let mut ms = ManagerState::default();
    let mut runm = |cmd: ManagerCommand, ms: &mut ManagerState| {
        for e in crm_domain::manager::decide(ms, &cmd, &ctx(0)).unwrap() {
            ms.apply(&e);
            out.entry(e.event_type().to_string()).or_insert(serde_json::json!({
                "event_type": e.event_type(), "schema_version": ManagerEvent::SCHEMA_VERSION, "payload": e.payload()}));
        }
    };
    runm(
        ManagerCommand::Register(RegisterManager {
            manager_id: m1,
            name: "Li Wei".into(),
            role: ManagerRole::Manager,
            team: "east-1".parse().unwrap(),
            region: "east".parse().unwrap(),
            branch: "sh-01".parse().unwrap(),
            holding_limit: 150,
        }),
        &mut ms,
    );
    runm(
        ManagerCommand::Update(UpdateManager {
            manager_id: m1,
            name: None,
            role: Some(ManagerRole::TeamLead),
            team: None,
            region: None,
            branch: None,
            holding_limit: Some(200),
        }),
        &mut ms,
    );
    runm(
        ManagerCommand::Deactivate(DeactivateManager {
            manager_id: m1,
            reason: "parental leave".into(),
        }),
        &mut ms,
    );
    runm(
        ManagerCommand::Reactivate(ReactivateManager { manager_id: m1 }),
        &mut ms,
    );

    let all: Vec<_> = out.into_values().collect();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/events_v1.json");
    std::fs::write(path, serde_json::to_string_pretty(&all).unwrap() + "\n").unwrap();
    println!("wrote {} event types to {path}", all.len());
}

//! Test helpers: stored events built by hand, the way the store records them.

use chrono::{DateTime, Duration, TimeZone, Utc};
use crm_eventstore::{EventMetadata, LogPosition, RecordedEvent};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::store::Prepared;

pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 25, 9, 0, 0).unwrap()
}

/// Builds stored events the way the store records them, one stream version at a time.
#[derive(Default)]
pub struct Log {
    pub events: Vec<RecordedEvent>,
    versions: std::collections::HashMap<String, u64>,
}

impl Log {
    pub fn push(&mut self, stream: &str, event_type: &str, at: DateTime<Utc>, payload: Value) {
        let version = {
            let v = self.versions.entry(stream.to_string()).or_default();
            *v += 1;
            *v
        };
        let n = self.events.len() as u64 + 1;
        self.events.push(RecordedEvent {
            log_position: LogPosition::new(n, n),
            stream_id: stream.to_string(),
            stream_version: version,
            event_id: Uuid::new_v4(),
            event_type: event_type.to_string(),
            schema_version: 1,
            payload,
            metadata: EventMetadata {
                command_id: Uuid::new_v4(),
                correlation_id: Uuid::new_v4(),
                causation_id: None,
                actor: "person:li.wei".into(),
                occurred_at: at,
                recorded_at: at,
            },
            chain_hash: Default::default(),
        });
    }

    pub fn manager(&mut self, id: &str, team: &str) {
        self.push(
            &format!("manager-{id}"),
            "ManagerRegistered",
            t0(),
            json!({"branch": "sh-01", "holding_limit": 150, "manager_id": id, "name": "Li Wei",
                   "region": "east", "role": "manager", "team": team}),
        );
    }

    pub fn customer(&mut self, id: &str, at: DateTime<Utc>) {
        self.push(
            &format!("customer-{id}"),
            "CustomerRegistered",
            at,
            json!({"aum_minor": 8000000, "branch": "sh-01",
                   "consents": {"email": true, "phone": true, "sms": true}, "customer_id": id,
                   "customer_type": "individual", "display_name": "王芳", "email": null,
                   "first_touch_channel": "web", "industry": null, "phone": null,
                   "product_interest": null, "region": "east", "registered_at": at,
                   "registration_number": null, "stage": "lead", "value_tier": "mid"}),
        );
    }

    pub fn assign(&mut self, c: &str, m: &str, at: DateTime<Utc>) {
        self.push(
            &format!("customer-{c}"),
            "OwnerAssigned",
            at,
            json!({"assigned_by": "person:li.wei", "customer_id": c, "manager_id": m,
                   "previous_owner": null, "reason": "walk-in", "region": "east", "team": "east-1"}),
        );
    }

    pub fn transfer(&mut self, c: &str, from: &str, to: &str, at: DateTime<Utc>) {
        self.push(
            &format!("customer-{c}"),
            "OwnershipTransferred",
            at,
            json!({"customer_id": c, "from_manager": from, "reason": "rebalance",
                   "to_manager": to, "to_region": "north", "to_team": "north-2",
                   "transferred_by": "person:li.wei"}),
        );
    }

    pub fn release(&mut self, c: &str, from: &str, at: DateTime<Utc>) {
        self.push(
            &format!("customer-{c}"),
            "ReleasedToPool",
            at,
            json!({"customer_id": c, "previous_owner": from, "reason": "left the region",
                   "released_by": "person:li.wei"}),
        );
    }

    /// The scheduler warns the owner, then returns the customer to the pool at `at`.
    pub fn pool_return(&mut self, c: &str, from: &str, at: DateTime<Utc>) {
        let stream = format!("customer-{c}");
        self.push(
            &stream,
            "PoolReturnWarned",
            at - Duration::days(3),
            json!({"customer_id": c, "owner": from, "cause": "no_contact",
                   "returns_at": at, "policy_version": 2}),
        );
        self.push(
            &stream,
            "ReleasedToPool",
            at + Duration::minutes(1),
            json!({"customer_id": c, "previous_owner": from,
                   "reason": "no contact by the owner for 30 days",
                   "released_by": "system:scheduler", "at": at + Duration::minutes(1),
                   "rule": {"cause": "no_contact", "due_at": at, "policy_version": 2}}),
        );
    }

    /// A complaint left unanswered: warned, breached, escalated to `lead` by the scheduler.
    pub fn unanswered_complaint(
        &mut self,
        c: &str,
        owner: Option<&str>,
        lead: &str,
        at: DateTime<Utc>,
    ) {
        let k = Uuid::new_v4().to_string();
        let stream = format!("customer-{c}");
        let due = at + Duration::minutes(10);
        self.push(
            &stream,
            "ComplaintLogged",
            at,
            json!({"customer_id": c, "complaint_id": k, "severity": "critical", "category": "fees",
                   "description": "test", "channel": "phone", "owner": owner, "logged_at": at,
                   "first_response_due_at": due,
                   "resolution_due_at": at + Duration::hours(4)}),
        );
        self.push(
            &stream,
            "ComplaintSlaWarned",
            at + Duration::minutes(8),
            json!({"customer_id": c, "complaint_id": k, "clock": "first_response", "due_at": due}),
        );
        self.push(
            &stream,
            "ComplaintSlaBreached",
            due,
            json!({"customer_id": c, "complaint_id": k, "clock": "first_response", "due_at": due,
                   "owner": owner}),
        );
        self.push(
            &stream,
            "ComplaintEscalated",
            due,
            json!({"customer_id": c, "complaint_id": k, "level": 1,
                   "reason": "first-response SLA breached", "escalated_to": lead,
                   "automatic": true}),
        );
    }

    pub fn claim(&mut self, c: &str, m: &str, at: DateTime<Utc>) {
        self.push(
            &format!("customer-{c}"),
            "ClaimedFromPool",
            at,
            json!({"customer_id": c, "manager_id": m, "region": "east", "team": "east-1"}),
        );
    }

    pub fn contact(&mut self, c: &str, m: &str, at: DateTime<Utc>) {
        self.push(
            &format!("customer-{c}"),
            "ContactRecorded",
            at,
            json!({"by_owner": true, "channel": "phone", "contact_id": Uuid::new_v4(),
                   "contacted_at": at, "customer_id": c, "direction": "outbound",
                   "manager_id": m, "next_follow_up_at": at + Duration::days(7),
                   "outcome": "reached", "summary": null}),
        );
    }

    pub fn stage(&mut self, c: &str, from: &str, to: &str, at: DateTime<Utc>) {
        self.push(
            &format!("customer-{c}"),
            "LifecycleStageChanged",
            at,
            json!({"customer_id": c, "from": from, "to": to, "reason": "test",
                   "reactivated": from == "dormant" && to == "active"}),
        );
    }

    /// A complaint logged, answered after `response_s`, resolved after `resolution_s`,
    /// closed with `satisfaction`.
    pub fn complaint(
        &mut self,
        c: &str,
        owner: Option<&str>,
        at: DateTime<Utc>,
        response_s: i64,
        resolution_s: i64,
        satisfaction: u8,
    ) {
        let k = Uuid::new_v4().to_string();
        let stream = format!("customer-{c}");
        self.push(
            &stream,
            "ComplaintLogged",
            at,
            json!({"customer_id": c, "complaint_id": k, "severity": "normal", "category": "fees",
                   "description": "test", "channel": "phone", "owner": owner, "logged_at": at,
                   "first_response_due_at": at + Duration::minutes(10),
                   "resolution_due_at": at + Duration::hours(72)}),
        );
        let by = owner.unwrap_or("01930000-0000-7000-8000-0000000000ff");
        self.push(
            &stream,
            "ComplaintAcknowledged",
            at + Duration::seconds(response_s),
            json!({"customer_id": c, "complaint_id": k, "by": by,
                   "response_seconds": response_s, "within_sla": response_s <= 600}),
        );
        self.push(
            &stream,
            "ComplaintResolved",
            at + Duration::seconds(resolution_s),
            json!({"customer_id": c, "complaint_id": k, "resolved_by": by, "resolution": "refund",
                   "resolution_seconds": resolution_s, "within_sla": resolution_s <= 72 * 3600}),
        );
        self.push(
            &stream,
            "ComplaintClosed",
            at + Duration::seconds(resolution_s + 60),
            json!({"customer_id": c, "complaint_id": k, "satisfaction": satisfaction}),
        );
    }

    pub fn prepared(&self) -> Vec<Prepared> {
        self.events
            .iter()
            .enumerate()
            .map(|(i, e)| Prepared::new(e.clone(), i as u64 + 1))
            .collect()
    }
}

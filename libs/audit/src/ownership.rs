//! Ownership replay: every change of a customer's owner, read from the customer's own
//! stream in the event store, with who decided it and why.
//!
//! "As of T" applies the customer's events in stream order up to the first one whose
//! instant (`occurred_at`, the time the command was issued) is after T: the answer is the
//! owner after exactly that prefix of the stream, so it is exact to the event. An event
//! at exactly T counts as having happened.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use crm_domain::{CustomerEvent, CustomerId, ManagerId};
use crm_eventstore::{Log, RecordedEvent, StoreError, Streams};
use serde::Serialize;
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("event store: {0}")]
    Store(#[from] StoreError),
    #[error("event {event_id} ({event_type} v{version} of {stream}) cannot be read: {reason}")]
    Unreadable {
        event_id: Uuid,
        event_type: String,
        version: u64,
        stream: String,
        reason: String,
    },
    #[error("customer {0} has no events in the store")]
    UnknownCustomer(CustomerId),
}

/// Why the owner changed, when a rule rather than a person decided it: an assignment by
/// the ownership policy, or an automatic return to the pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Decision {
    /// The version of the ownership policy in force when the rule decided (the store's
    /// stream `policy-ownership` holds every version's text).
    pub policy_version: u32,
    /// The name of the assignment rule that matched (assignment by policy); null for a
    /// return to the pool.
    pub rule: Option<String>,
    /// How the rule's team chose the manager (assignment by policy): `round_robin`,
    /// `least_loaded` or `weighted_performance`; null for a return to the pool.
    pub method: Option<String>,
    /// The pool rule that lapsed (automatic return to the pool): `no_contact` or
    /// `lead_not_won`; null for an assignment.
    pub pool_rule: Option<String>,
    /// The deadline that lapsed (automatic return to the pool), an RFC 3339 timestamp in
    /// UTC; null for an assignment.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub due_at: Option<DateTime<Utc>>,
}

/// One change of a customer's owner, replayed from the customer's stream in the event
/// store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct OwnershipEntry {
    /// The customer's id (a UUID).
    #[schema(value_type = String, format = "uuid")]
    pub customer_id: CustomerId,
    /// When it happened (the command's issue time: the event's `occurred_at`), an RFC
    /// 3339 timestamp in UTC.
    #[schema(value_type = String, format = DateTime)]
    pub at: DateTime<Utc>,
    /// When the store recorded it, an RFC 3339 timestamp in UTC.
    #[schema(value_type = String, format = DateTime)]
    pub recorded_at: DateTime<Utc>,
    /// The event type: `OwnerAssigned`, `OwnershipTransferred`, `ReleasedToPool` or
    /// `ClaimedFromPool`.
    pub event_type: String,
    /// Id (a UUID) of the manager who owned the customer before the change; null when it
    /// was in the pool.
    #[schema(value_type = Option<String>, format = "uuid")]
    pub previous_owner: Option<ManagerId>,
    /// Id (a UUID) of the manager who owns the customer after the change; null when the
    /// customer went to the pool.
    #[schema(value_type = Option<String>, format = "uuid")]
    pub new_owner: Option<ManagerId>,
    /// Who issued the command (`person:…`, `service:…`, `system:…`).
    pub actor: String,
    /// The reason the event gives; null when it gives none (`ClaimedFromPool`).
    pub reason: Option<String>,
    /// The rule that decided the change, when a rule rather than a person did; null
    /// otherwise.
    pub decision: Option<Decision>,
    /// Id (a UUID) of the command that produced the event (the same id is in the
    /// services' logs and on every event the command produced).
    #[schema(value_type = String, format = "uuid")]
    pub command_id: Uuid,
    /// Correlation id (a UUID) of the command, copied onto every event it caused (the
    /// command id unless the caller gave another).
    #[schema(value_type = String, format = "uuid")]
    pub correlation_id: Uuid,
    /// Id (a UUID) of the stored event.
    #[schema(value_type = String, format = "uuid")]
    pub event_id: Uuid,
    /// The event's version in the customer's stream (its position in the customer's
    /// history: 1, 2, …).
    pub stream_version: u64,
    /// Position in the store's global log (`tx.position`), as text: the writing
    /// transaction and the position allocated at insert, e.g. `71.71`; the log is
    /// ordered by the pair.
    pub position: String,
}

const OWNERSHIP_TYPES: [&str; 4] = [
    "OwnerAssigned",
    "OwnershipTransferred",
    "ReleasedToPool",
    "ClaimedFromPool",
];

fn decode(e: &RecordedEvent) -> Result<CustomerEvent, AuditError> {
    CustomerEvent::decode(&e.event_type, e.schema_version, &e.payload).map_err(|err| {
        AuditError::Unreadable {
            event_id: e.event_id,
            event_type: e.event_type.clone(),
            version: e.stream_version,
            stream: e.stream_id.clone(),
            reason: err.to_string(),
        }
    })
}

/// The ownership entry of one event, given the owner before it; `None` for events that
/// do not change the owner.
fn entry(
    e: &RecordedEvent,
    event: &CustomerEvent,
    before: Option<ManagerId>,
) -> Option<OwnershipEntry> {
    let (new_owner, reason, decision) = match event {
        CustomerEvent::OwnerAssigned(a) => (
            Some(a.manager_id),
            Some(a.reason.clone()),
            a.policy.as_ref().map(|p| Decision {
                policy_version: p.policy_version,
                rule: Some(p.rule.clone()),
                method: Some(p.method.as_str().to_string()),
                pool_rule: None,
                due_at: None,
            }),
        ),
        CustomerEvent::OwnershipTransferred(t) => {
            (Some(t.to_manager), Some(t.reason.clone()), None)
        }
        CustomerEvent::ReleasedToPool(r) => (
            None,
            Some(r.reason.clone()),
            r.rule.as_ref().map(|p| Decision {
                policy_version: p.policy_version,
                rule: None,
                method: None,
                pool_rule: Some(p.cause.as_str().to_string()),
                due_at: Some(p.due_at),
            }),
        ),
        CustomerEvent::ClaimedFromPool(c) => (Some(c.manager_id), None, None),
        _ => return None,
    };
    Some(OwnershipEntry {
        customer_id: event.customer_id(),
        at: e.metadata.occurred_at,
        recorded_at: e.metadata.recorded_at,
        event_type: e.event_type.clone(),
        previous_owner: before,
        new_owner,
        actor: e.metadata.actor.clone(),
        reason,
        decision,
        command_id: e.metadata.command_id,
        correlation_id: e.metadata.correlation_id,
        event_id: e.event_id,
        stream_version: e.stream_version,
        position: format!("{}.{}", e.log_position.tx, e.log_position.position),
    })
}

/// The ownership changes of one customer's stream, in stream order.
pub fn ownership_entries(events: &[RecordedEvent]) -> Result<Vec<OwnershipEntry>, AuditError> {
    let mut owner = None;
    let mut out = Vec::new();
    for e in events {
        if !OWNERSHIP_TYPES.contains(&e.event_type.as_str()) {
            continue;
        }
        let event = decode(e)?;
        if let Some(entry) = entry(e, &event, owner) {
            owner = entry.new_owner;
            out.push(entry);
        }
    }
    Ok(out)
}

/// The owner as of an instant, and the change that made them owner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct AsOf {
    /// The instant asked about (`as_of`), an RFC 3339 timestamp in UTC.
    #[schema(value_type = String, format = DateTime)]
    pub at: DateTime<Utc>,
    /// Id (a UUID) of the manager who owned the customer at that instant; null: in the
    /// pool (or not yet registered).
    #[schema(value_type = Option<String>, format = "uuid")]
    pub owner: Option<ManagerId>,
    /// The last ownership change at or before the instant (a change at exactly that
    /// instant counts); null when there was none.
    pub since: Option<OwnershipEntry>,
}

/// Who owned the customer at `t`, from its ownership entries (stream order).
pub fn owner_as_of(entries: &[OwnershipEntry], t: DateTime<Utc>) -> AsOf {
    let since = entries.iter().take_while(|e| e.at <= t).last().cloned();
    AsOf {
        at: t,
        owner: since.as_ref().and_then(|e| e.new_owner),
        since,
    }
}

/// A customer's ownership history, replayed from its stream.
pub async fn customer_history<S: Streams>(
    store: &S,
    customer: CustomerId,
) -> Result<Vec<OwnershipEntry>, AuditError> {
    let events = store
        .read_stream(&format!("customer-{customer}"), 0)
        .await?;
    if events.is_empty() {
        return Err(AuditError::UnknownCustomer(customer));
    }
    ownership_entries(&events)
}

/// A manager's ownership changes over a period, replayed from the global log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ManagerHistory {
    /// The manager's id.
    #[schema(value_type = String, format = Uuid)]
    pub manager: ManagerId,
    /// The period's start.
    #[schema(value_type = String, format = DateTime)]
    pub from: DateTime<Utc>,
    /// The period's end, excluded.
    #[schema(value_type = String, format = DateTime)]
    pub to: DateTime<Utc>,
    /// Customers the manager owned just before `from` (their ids).
    #[schema(value_type = Vec<String>)]
    pub held_before: Vec<CustomerId>,
    /// Changes in `[from, to)` that gave the manager a customer or took one away, in log
    /// order.
    pub entries: Vec<OwnershipEntry>,
    /// Customers the manager owned just before `to` (their ids).
    #[schema(value_type = Vec<String>)]
    pub held_at_end: Vec<CustomerId>,
    /// How many events of the log the replay read.
    pub events_read: u64,
}

/// `manager`'s history over `[from, to)`, replayed from the whole global log
/// (commit-safe order); `progress` is called with the events read so far.
pub async fn manager_history<S: Log>(
    store: &S,
    manager: ManagerId,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    progress: &mut (dyn FnMut(u64) + Send),
) -> Result<ManagerHistory, AuditError> {
    // Per customer: the owner now (in the replay), just before `from` and `to` (the
    // prefix of its stream with instants before them).
    let mut owner: HashMap<CustomerId, Option<ManagerId>> = HashMap::new();
    let mut before_from: HashMap<CustomerId, Option<ManagerId>> = HashMap::new();
    let mut before_to: HashMap<CustomerId, Option<ManagerId>> = HashMap::new();
    let mut past_from = std::collections::HashSet::new();
    let mut past_to = std::collections::HashSet::new();
    let mut entries = Vec::new();
    let read = crate::scan_log(store, progress, |e| {
        if !OWNERSHIP_TYPES.contains(&e.event_type.as_str()) {
            return Ok(());
        }
        let event = decode(e)?;
        let customer = event.customer_id();
        let before = owner.get(&customer).copied().flatten();
        let Some(entry) = entry(e, &event, before) else {
            return Ok(());
        };
        owner.insert(customer, entry.new_owner);
        for (limit, snapshot, past) in [
            (from, &mut before_from, &mut past_from),
            (to, &mut before_to, &mut past_to),
        ] {
            if past.contains(&customer) {
                continue;
            }
            if entry.at < limit {
                snapshot.insert(customer, entry.new_owner);
            } else {
                past.insert(customer);
            }
        }
        if entry.at >= from
            && entry.at < to
            && (entry.previous_owner == Some(manager) || entry.new_owner == Some(manager))
        {
            entries.push(entry);
        }
        Ok(())
    })
    .await?;
    let held = |snapshot: &HashMap<CustomerId, Option<ManagerId>>| {
        let mut v: Vec<CustomerId> = snapshot
            .iter()
            .filter(|(_, m)| **m == Some(manager))
            .map(|(c, _)| *c)
            .collect();
        v.sort();
        v
    };
    Ok(ManagerHistory {
        manager,
        from,
        to,
        held_before: held(&before_from),
        entries,
        held_at_end: held(&before_to),
        events_read: read,
    })
}

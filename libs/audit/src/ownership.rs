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
use crm_eventstore::{EventStore, RecordedEvent, StoreError};
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

/// Why the owner changed, when a rule rather than a person decided it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub policy_version: u32,
    /// The assignment rule that matched (assignment by policy).
    pub rule: Option<String>,
    /// How the rule's team chose the manager (assignment by policy).
    pub method: Option<String>,
    /// The pool rule that lapsed (automatic return to the pool).
    pub pool_rule: Option<String>,
    /// The deadline that lapsed (automatic return to the pool).
    pub due_at: Option<DateTime<Utc>>,
}

/// One change of a customer's owner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OwnershipEntry {
    pub customer_id: CustomerId,
    /// When it happened (the command's issue time).
    pub at: DateTime<Utc>,
    /// When the store recorded it.
    pub recorded_at: DateTime<Utc>,
    pub event_type: String,
    pub previous_owner: Option<ManagerId>,
    /// `None`: the customer went to the pool.
    pub new_owner: Option<ManagerId>,
    /// Who issued the command (`person:…`, `service:…`, `system:…`).
    pub actor: String,
    pub reason: Option<String>,
    pub decision: Option<Decision>,
    pub command_id: Uuid,
    pub correlation_id: Uuid,
    pub event_id: Uuid,
    pub stream_version: u64,
    /// Position in the store's global log (`tx.position`).
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AsOf {
    pub at: DateTime<Utc>,
    /// `None`: in the pool (or not yet registered).
    pub owner: Option<ManagerId>,
    /// The last ownership change at or before the instant.
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
pub async fn customer_history<S: EventStore>(
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ManagerHistory {
    pub manager: ManagerId,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// Customers the manager owned just before `from`.
    pub held_before: Vec<CustomerId>,
    /// Changes in `[from, to)` that gave the manager a customer or took one away.
    pub entries: Vec<OwnershipEntry>,
    /// Customers the manager owned just before `to`.
    pub held_at_end: Vec<CustomerId>,
    pub events_read: u64,
}

/// `manager`'s history over `[from, to)`, replayed from the whole global log
/// (commit-safe order); `progress` is called with the events read so far.
pub async fn manager_history<S: EventStore>(
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

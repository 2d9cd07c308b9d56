//! The domain: pure business rules of customer ownership, contacts and complaints.
//!
//! Commands are decided by `decide(&state, &command, &context) -> Result<events, error>`
//! and state evolves by applying events. Nothing here performs I/O, reads a clock or
//! draws random numbers: time arrives in the [`DecisionContext`], and facts about other
//! aggregates (duplicates, a manager's holdings) are looked up by the application and
//! passed in. `tests/purity.rs` fails if an I/O crate ever becomes a dependency.
#![forbid(unsafe_code)]

pub mod context;
pub mod customer;
pub mod error;
pub mod event_codec;
pub mod evidence;
pub mod ids;
pub mod manager;
pub mod normalize;
pub mod policy;
pub mod text;
pub mod values;

use serde::{Deserialize, Serialize};

pub use context::{
    DecisionContext, DuplicateMatch, EscalationChain, ManagerView, TeamCandidates, MAX_CLOCK_SKEW,
    MAX_CONTACT_BACKDATE,
};
pub use customer::{CustomerCommand, CustomerEvent, CustomerState, SlaPolicy};
pub use error::{CommandRule, DomainError, ErrorKind};
pub use event_codec::{DecodeError, Payload};
pub use ids::*;
pub use manager::{ManagerCommand, ManagerEvent, ManagerState};
pub use normalize::UniqueKey;
pub use policy::{Policy, PolicyCommand, PolicyDocument, PolicyEvent, PolicyState};
pub use values::*;

/// Every command the platform decides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Command {
    Customer(CustomerCommand),
    Manager(ManagerCommand),
    Policy(PolicyCommand),
}

impl Command {
    /// Stable snake_case name (metrics, NATS subjects, HTTP paths).
    pub fn name(&self) -> &'static str {
        match self {
            Command::Customer(c) => c.name(),
            Command::Manager(c) => c.name(),
            Command::Policy(c) => c.name(),
        }
    }
}

impl From<PolicyCommand> for Command {
    fn from(c: PolicyCommand) -> Self {
        Command::Policy(c)
    }
}

impl From<CustomerCommand> for Command {
    fn from(c: CustomerCommand) -> Self {
        Command::Customer(c)
    }
}

impl From<ManagerCommand> for Command {
    fn from(c: ManagerCommand) -> Self {
        Command::Manager(c)
    }
}

/// Every event, customer or manager; type names are unique across both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DomainEvent {
    Customer(CustomerEvent),
    Manager(ManagerEvent),
    Policy(PolicyEvent),
}

impl DomainEvent {
    pub fn decode<P: crate::event_codec::Payload + ?Sized>(
        event_type: &str,
        schema_version: u32,
        payload: &P,
    ) -> Result<Self, DecodeError> {
        if ManagerEvent::TYPES.contains(&event_type) {
            ManagerEvent::decode(event_type, schema_version, payload).map(DomainEvent::Manager)
        } else if PolicyEvent::TYPES.contains(&event_type) {
            PolicyEvent::decode(event_type, schema_version, payload).map(DomainEvent::Policy)
        } else {
            CustomerEvent::decode(event_type, schema_version, payload).map(DomainEvent::Customer)
        }
    }

    pub fn event_type(&self) -> &'static str {
        match self {
            DomainEvent::Customer(e) => e.event_type(),
            DomainEvent::Manager(e) => e.event_type(),
            DomainEvent::Policy(e) => e.event_type(),
        }
    }

    pub fn payload(&self) -> serde_json::Value {
        match self {
            DomainEvent::Customer(e) => e.payload(),
            DomainEvent::Manager(e) => e.payload(),
            DomainEvent::Policy(e) => e.payload(),
        }
    }
}

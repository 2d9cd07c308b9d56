//! The auditor's toolkit: answers replayed from the event store itself, never from read
//! models. [`ownership`] replays who owned a customer when, and why (actor, reason,
//! policy version and rule, command id, log position); "who owned X as of T" is exact to
//! the event.
#![forbid(unsafe_code)]

pub mod ownership;

pub use ownership::{
    customer_history, manager_history, owner_as_of, ownership_entries, AsOf, AuditError, Decision,
    ManagerHistory, OwnershipEntry,
};

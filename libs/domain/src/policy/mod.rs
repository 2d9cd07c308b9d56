//! The ownership policy (客户归属原则): one versioned document holding every rule the
//! platform applies on its own — which team and manager receive a customer, holding
//! limits, first-touch protection, the public pool (公海), complaint clocks and the
//! lifecycle by time. Publishing a new version is a command and the policy's history is
//! a stream (`policy-ownership`), so every automatic decision names the version and the
//! rule it followed and an auditor can replay why. `docs/policies.md` documents every
//! field and default.
//!
//! - [`document`]: the policy document, its defaults and its validation;
//! - [`assign`]: which rule matches a customer and which manager of the team receives it;
//! - [`aggregate`]: the policy stream (publish → `PolicyPublished`).

pub mod aggregate;
pub mod assign;
pub mod document;

pub use aggregate::{
    PolicyCommand, PolicyEvent, PolicyPublished, PolicyState, PublishPolicy, POLICY_STREAM,
};
pub use assign::{choose, matching_rule, Candidate, CustomerFacts};
pub use document::*;

use std::sync::Arc;

/// The policy a decision applies: the document and its version (0 = the built-in
/// defaults, before any version was published).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Policy {
    pub version: u32,
    pub document: PolicyDocument,
}

impl Policy {
    pub fn new(version: u32, document: PolicyDocument) -> Arc<Self> {
        Arc::new(Self { version, document })
    }

    /// The built-in defaults (version 0).
    pub fn defaults() -> Arc<Self> {
        Arc::new(Self::default())
    }
}

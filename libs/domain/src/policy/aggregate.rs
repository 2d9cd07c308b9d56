//! The policy stream (`policy-ownership`): each published document is a new version.
//! Old versions stay in the stream, so "which policy assigned this customer" is answered
//! by the version number an assignment records.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::document::PolicyDocument;
use super::Policy;
use crate::context::DecisionContext;
use crate::error::DomainError;
use crate::event_codec::{decode_payload, DecodeError};
use crate::ids::Actor;

/// The one stream holding every version of the ownership policy.
pub const POLICY_STREAM: &str = "policy-ownership";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishPolicy {
    pub document: PolicyDocument,
    /// Why this version (shown to auditors).
    pub note: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", content = "data", rename_all = "snake_case")]
pub enum PolicyCommand {
    Publish(PublishPolicy),
}

impl PolicyCommand {
    pub fn name(&self) -> &'static str {
        match self {
            PolicyCommand::Publish(_) => "publish_policy",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyPublished {
    /// 1 for the first published version, then +1.
    pub version: u32,
    pub document: PolicyDocument,
    pub note: String,
    pub published_by: Actor,
    pub published_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum PolicyEvent {
    PolicyPublished(PolicyPublished),
}

impl PolicyEvent {
    pub const SCHEMA_VERSION: u32 = 1;
    pub const TYPES: &'static [&'static str] = &["PolicyPublished"];

    pub fn event_type(&self) -> &'static str {
        match self {
            PolicyEvent::PolicyPublished(_) => "PolicyPublished",
        }
    }

    pub fn payload(&self) -> serde_json::Value {
        match self {
            PolicyEvent::PolicyPublished(e) => serde_json::to_value(e),
        }
        .expect("events serialise")
    }

    pub fn decode<P: crate::event_codec::Payload + ?Sized>(
        event_type: &str,
        schema_version: u32,
        payload: &P,
    ) -> Result<Self, DecodeError> {
        if schema_version != Self::SCHEMA_VERSION {
            return Err(DecodeError::UnknownVersion(
                event_type.to_string(),
                schema_version,
            ));
        }
        match event_type {
            "PolicyPublished" => Ok(PolicyEvent::PolicyPublished(decode_payload(
                event_type, payload,
            )?)),
            other => Err(DecodeError::UnknownType(other.to_string())),
        }
    }
}

/// The current policy, folded from the stream; `Default` is version 0, the built-in
/// defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyState {
    pub current: Policy,
}

impl PolicyState {
    pub fn apply(&mut self, event: &PolicyEvent) {
        match event {
            PolicyEvent::PolicyPublished(e) => {
                self.current = Policy {
                    version: e.version,
                    document: e.document.clone(),
                }
            }
        }
    }
}

/// Decide a policy command: a valid document that differs from the current one becomes
/// the next version.
pub fn decide(
    state: &PolicyState,
    command: &PolicyCommand,
    ctx: &DecisionContext,
) -> Result<Vec<PolicyEvent>, DomainError> {
    match command {
        PolicyCommand::Publish(c) => {
            c.document.validate()?;
            if c.document == state.current.document && state.current.version > 0 {
                return Err(DomainError::NothingToChange);
            }
            Ok(vec![PolicyEvent::PolicyPublished(PolicyPublished {
                version: state.current.version + 1,
                document: c.document.clone(),
                note: crate::customer::decide::check_text("note", &c.note, 1000)?,
                published_by: ctx.actor.clone(),
                published_at: ctx.now,
            })])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_count_up_and_an_unchanged_document_is_refused() {
        let ctx = DecisionContext::new(
            "2026-11-25T09:00:00Z".parse().unwrap(),
            Actor::person("ops"),
        );
        let publish = |doc: PolicyDocument| {
            PolicyCommand::Publish(PublishPolicy {
                document: doc,
                note: "quarterly review".into(),
            })
        };
        let mut state = PolicyState::default();
        let events = decide(&state, &publish(PolicyDocument::default()), &ctx).unwrap();
        let PolicyEvent::PolicyPublished(p) = &events[0];
        assert_eq!(p.version, 1);
        state.apply(&events[0]);
        assert_eq!(
            decide(&state, &publish(PolicyDocument::default()), &ctx),
            Err(DomainError::NothingToChange)
        );
        let mut doc = PolicyDocument::default();
        doc.pool.daily_claim_cap = 5;
        let events = decide(&state, &publish(doc.clone()), &ctx).unwrap();
        state.apply(&events[0]);
        assert_eq!(state.current.version, 2);
        assert_eq!(state.current.document, doc);
        let decoded = PolicyEvent::decode("PolicyPublished", 1, &events[0].payload()).unwrap();
        assert_eq!(decoded, events[0]);
        doc.sla.warn_at_percent = 0;
        assert!(matches!(
            decide(&state, &publish(doc), &ctx),
            Err(DomainError::InvalidField { .. })
        ));
    }
}

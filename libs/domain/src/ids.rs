//! Identifiers. Ids are UUIDs chosen by the caller (so a retried command names the
//! same customer), wrapped so a manager id cannot be passed where a customer id goes.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! uuid_id {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {$(
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            pub const fn new(id: Uuid) -> Self {
                Self(id)
            }
            pub const fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::from_str(s).map(Self)
            }
        }

        impl From<Uuid> for $name {
            fn from(id: Uuid) -> Self {
                Self(id)
            }
        }
    )*};
}

uuid_id!(
    /// A customer (person or organisation).
    CustomerId,
    /// A customer manager / sales adviser (also team leads and branch managers).
    ManagerId,
    /// A complaint case.
    ComplaintId,
    /// One recorded contact.
    ContactId,
    /// One purchase / deal.
    PurchaseId,
    /// One referral.
    ReferralId,
);

/// What kind of caller issued a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActorKind {
    Person,
    Service,
    System,
}

/// Who issued a command: `person:li.wei`, `service:call-centre`, `system:scheduler`, or a
/// person through a service allowed to act for people:
/// `person:li.wei via service:call-centre` (both recorded, as one string in the store).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Actor {
    pub kind: ActorKind,
    pub id: String,
    /// The service that sent the command for this person: set by the ingress from the
    /// authenticated caller, never taken from a payload.
    pub via: Option<String>,
}

/// Separates a person from the service that acted for them.
const VIA: &str = " via service:";

impl Actor {
    fn new(kind: ActorKind, id: impl Into<String>) -> Self {
        Self {
            kind,
            id: id.into(),
            via: None,
        }
    }
    pub fn person(id: impl Into<String>) -> Self {
        Self::new(ActorKind::Person, id)
    }
    pub fn service(id: impl Into<String>) -> Self {
        Self::new(ActorKind::Service, id)
    }
    pub fn system(id: impl Into<String>) -> Self {
        Self::new(ActorKind::System, id)
    }
    /// This person, acting through `service`.
    pub fn via(mut self, service: impl Into<String>) -> Self {
        self.via = Some(service.into());
        self
    }
}

/// An actor's id or service name as stored: 1 to 128 characters, no whitespace.
fn stored_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && !id.chars().any(char::is_whitespace)
}

/// An actor's id or service name as a caller may give it now: stored rules, and no
/// control or bidirectional formatting character either.
fn new_id(id: &str) -> bool {
    stored_id(id) && crate::text::check(id, crate::text::TextKind::Line).is_ok()
}

impl Actor {
    /// Read an actor from stored events, under the rules it was written with: events
    /// written before control characters were refused still read back (and are shown
    /// escaped). New actors are parsed with [`str::parse`], which refuses them.
    pub fn from_stored(s: &str) -> Result<Self, BadActor> {
        Self::parse_with(s, stored_id)
    }

    fn parse_with(s: &str, valid: fn(&str) -> bool) -> Result<Self, BadActor> {
        let bad = || BadActor(crate::text::escaped(s).into_owned());
        let (actor, via) = match s.split_once(VIA) {
            Some((actor, via)) => (actor, Some(via)),
            None => (s, None),
        };
        let (kind, id) = actor.split_once(':').ok_or_else(bad)?;
        let kind = match kind {
            "person" => ActorKind::Person,
            "service" => ActorKind::Service,
            "system" => ActorKind::System,
            _ => return Err(bad()),
        };
        if !valid(id) || via.is_some_and(|v| kind != ActorKind::Person || !valid(v)) {
            return Err(bad());
        }
        Ok(Self {
            kind,
            id: id.into(),
            via: via.map(Into::into),
        })
    }
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            ActorKind::Person => "person",
            ActorKind::Service => "service",
            ActorKind::System => "system",
        };
        write!(f, "{kind}:{}", self.id)?;
        match &self.via {
            Some(service) => write!(f, "{VIA}{service}"),
            None => Ok(()),
        }
    }
}

/// Why an actor string was not understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("actor \"{0}\" must be person:<id>, service:<name> or system:<name> (id 1..=128 chars, no spaces or control characters)")]
pub struct BadActor(pub String);

impl FromStr for Actor {
    type Err = BadActor;
    /// A new actor (a command's, a token's): no control characters.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse_with(s, new_id)
    }
}

impl Serialize for Actor {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Actor {
    /// From stored payloads: under the rules the events were written with.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Actor::from_stored(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_actor_reads_back_as_written_with_or_without_a_service() {
        for text in [
            "person:li.wei",
            "service:call-centre",
            "system:scheduler",
            "person:li.wei via service:call-centre",
        ] {
            let actor: Actor = text.parse().unwrap();
            assert_eq!(actor.to_string(), text);
        }
        let through = Actor::person("li.wei").via("call-centre");
        assert_eq!(through.to_string(), "person:li.wei via service:call-centre");
    }

    #[test]
    fn stored_actors_from_before_the_text_rules_still_read_back() {
        let legacy = "person:\u{1b}[2JOK-approved-by-compliance";
        assert!(legacy.parse::<Actor>().is_err());
        let actor = Actor::from_stored(legacy).unwrap();
        assert_eq!(actor.to_string(), legacy);
        let decoded: Actor = serde_json::from_value(serde_json::json!(legacy)).unwrap();
        assert_eq!(decoded, actor);
    }

    #[test]
    fn control_characters_spaces_and_odd_forms_are_refused() {
        for text in [
            "person:\u{1b}[2Jok",
            "person:a\u{0}b",
            "person:a b",
            "person:",
            "robot:x",
            "service:a via service:b",
            "person:a via service:",
            "person:a via service:b\u{7}",
            "person:a via person:b",
        ] {
            let e = text.parse::<Actor>().unwrap_err();
            assert!(!e.to_string().chars().any(char::is_control), "{e}");
        }
    }
}

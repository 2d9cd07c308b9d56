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

/// Who issued a command: `person:li.wei`, `service:call-centre`, `system:scheduler`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Actor {
    pub kind: ActorKind,
    pub id: String,
}

impl Actor {
    pub fn person(id: impl Into<String>) -> Self {
        Self {
            kind: ActorKind::Person,
            id: id.into(),
        }
    }
    pub fn service(id: impl Into<String>) -> Self {
        Self {
            kind: ActorKind::Service,
            id: id.into(),
        }
    }
    pub fn system(id: impl Into<String>) -> Self {
        Self {
            kind: ActorKind::System,
            id: id.into(),
        }
    }
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            ActorKind::Person => "person",
            ActorKind::Service => "service",
            ActorKind::System => "system",
        };
        write!(f, "{kind}:{}", self.id)
    }
}

/// Why an actor string was not understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("actor {0:?} must be person:<id>, service:<name> or system:<name> (id 1..=128 chars)")]
pub struct BadActor(pub String);

impl FromStr for Actor {
    type Err = BadActor;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (kind, id) = s.split_once(':').ok_or_else(|| BadActor(s.into()))?;
        let kind = match kind {
            "person" => ActorKind::Person,
            "service" => ActorKind::Service,
            "system" => ActorKind::System,
            _ => return Err(BadActor(s.into())),
        };
        if id.is_empty() || id.len() > 128 || id.chars().any(char::is_whitespace) {
            return Err(BadActor(s.into()));
        }
        Ok(Self {
            kind,
            id: id.into(),
        })
    }
}

impl Serialize for Actor {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Actor {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

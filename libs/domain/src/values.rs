//! Value types of the business language (DOMAIN.md "Core language").

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::DomainError;

macro_rules! string_enum {
    ($(#[$doc:meta])* $name:ident { $($variant:ident = $text:literal),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($variant),* }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),*];
            pub fn as_str(&self) -> &'static str {
                match self { $($name::$variant => $text),* }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = DomainError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)*
                    _ => Err(DomainError::invalid(stringify!($name), format!(
                        "{s:?} is not one of {}", [$($text),*].join(", ")))),
                }
            }
        }
    };
}

string_enum!(
    /// 个人 / 企业 / 零售
    CustomerType { Individual = "individual", Enterprise = "enterprise", Retail = "retail" }
);
string_enum!(
    /// Where the customer first reached us (渠道原则).
    FirstTouchChannel { Branch = "branch", Phone = "phone", Web = "web", App = "app", Event = "event", Referral = "referral", Partner = "partner" }
);
string_enum!(
    /// Channel of one contact.
    ContactChannel { Phone = "phone", Sms = "sms", Email = "email", Visit = "visit", Branch = "branch", Wechat = "wechat", Video = "video" }
);
string_enum!(
    Direction { Inbound = "inbound", Outbound = "outbound" }
);
string_enum!(
    ContactOutcome { Reached = "reached", NoAnswer = "no_answer", CallbackRequested = "callback_requested", Interested = "interested", NotInterested = "not_interested", Complaint = "complaint" }
);
string_enum!(
    /// lead (潜在) → contacted → qualified → customer (成交) → active ⇄ dormant (沉睡) → churned.
    LifecycleStage { Lead = "lead", Contacted = "contacted", Qualified = "qualified", Customer = "customer", Active = "active", Dormant = "dormant", Churned = "churned" }
);
string_enum!(
    /// 高/中/低价值
    ValueTier { High = "high", Mid = "mid", Low = "low" }
);
string_enum!(
    /// Complaint severity; sets the resolution SLA.
    Severity { Critical = "critical", High = "high", Normal = "normal", Low = "low" }
);
string_enum!(
    ManagerRole { Manager = "manager", TeamLead = "team_lead", BranchManager = "branch_manager" }
);

impl LifecycleStage {
    /// Stages before the deal is won.
    pub fn is_prospect(self) -> bool {
        matches!(
            self,
            LifecycleStage::Lead | LifecycleStage::Contacted | LifecycleStage::Qualified
        )
    }
}

/// What the customer agreed to be contacted by.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default)]
pub struct Consents {
    pub sms: bool,
    pub email: bool,
    pub phone: bool,
}

macro_rules! org_name {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = DomainError;
            fn try_from(s: String) -> Result<Self, DomainError> {
                let t = s.trim();
                if t.is_empty() || t.chars().count() > 64 {
                    return Err(DomainError::invalid(stringify!($name), "must be 1 to 64 characters"));
                }

                Ok(Self(t.to_string()))
            }
        }

        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0
            }
        }

        impl FromStr for $name {
            type Err = DomainError;
            fn from_str(s: &str) -> Result<Self, DomainError> {
                Self::try_from(s.to_string())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

org_name!(
    /// A team of managers.
    TeamId
);
org_name!(
    /// A geographic region (地域原则).
    RegionId
);
org_name!(
    /// A branch (支行 / 门店).
    BranchId
);

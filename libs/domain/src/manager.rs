//! The manager aggregate (stream `manager-<id>`): the org data ownership rules need.

use serde::{Deserialize, Serialize};

use crate::context::{DecisionContext, ManagerView};
use crate::error::DomainError;
use crate::event_codec::{decode_payload, DecodeError};
use crate::ids::ManagerId;
use crate::values::{BranchId, ManagerRole, RegionId, TeamId};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterManager {
    pub manager_id: ManagerId,
    pub name: String,
    pub role: ManagerRole,
    pub team: TeamId,
    pub region: RegionId,
    pub branch: BranchId,
    pub holding_limit: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateManager {
    pub manager_id: ManagerId,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub role: Option<ManagerRole>,
    #[serde(default)]
    pub team: Option<TeamId>,
    #[serde(default)]
    pub region: Option<RegionId>,
    #[serde(default)]
    pub branch: Option<BranchId>,
    /// Lowering it below the current holdings keeps the customers but blocks new ones.
    #[serde(default)]
    pub holding_limit: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeactivateManager {
    pub manager_id: ManagerId,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReactivateManager {
    pub manager_id: ManagerId,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", content = "data", rename_all = "snake_case")]
pub enum ManagerCommand {
    Register(RegisterManager),
    Update(UpdateManager),
    Deactivate(DeactivateManager),
    Reactivate(ReactivateManager),
}

impl ManagerCommand {
    pub fn manager_id(&self) -> ManagerId {
        match self {
            ManagerCommand::Register(c) => c.manager_id,
            ManagerCommand::Update(c) => c.manager_id,
            ManagerCommand::Deactivate(c) => c.manager_id,
            ManagerCommand::Reactivate(c) => c.manager_id,
        }
    }

    /// Stable snake_case name (metrics, NATS subjects, HTTP paths).
    pub fn name(&self) -> &'static str {
        match self {
            ManagerCommand::Register(_) => "register_manager",
            ManagerCommand::Update(_) => "update_manager",
            ManagerCommand::Deactivate(_) => "deactivate_manager",
            ManagerCommand::Reactivate(_) => "reactivate_manager",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManagerRegistered {
    pub manager_id: ManagerId,
    pub name: String,
    pub role: ManagerRole,
    pub team: TeamId,
    pub region: RegionId,
    pub branch: BranchId,
    pub holding_limit: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManagerUpdated {
    pub manager_id: ManagerId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<ManagerRole>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team: Option<TeamId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<RegionId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<BranchId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holding_limit: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManagerDeactivated {
    pub manager_id: ManagerId,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManagerReactivated {
    pub manager_id: ManagerId,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum ManagerEvent {
    ManagerRegistered(ManagerRegistered),
    ManagerUpdated(ManagerUpdated),
    ManagerDeactivated(ManagerDeactivated),
    ManagerReactivated(ManagerReactivated),
}

impl ManagerEvent {
    pub const SCHEMA_VERSION: u32 = 1;
    pub const TYPES: &'static [&'static str] = &[
        "ManagerRegistered",
        "ManagerUpdated",
        "ManagerDeactivated",
        "ManagerReactivated",
    ];

    pub fn event_type(&self) -> &'static str {
        match self {
            ManagerEvent::ManagerRegistered(_) => "ManagerRegistered",
            ManagerEvent::ManagerUpdated(_) => "ManagerUpdated",
            ManagerEvent::ManagerDeactivated(_) => "ManagerDeactivated",
            ManagerEvent::ManagerReactivated(_) => "ManagerReactivated",
        }
    }

    pub fn manager_id(&self) -> ManagerId {
        match self {
            ManagerEvent::ManagerRegistered(e) => e.manager_id,
            ManagerEvent::ManagerUpdated(e) => e.manager_id,
            ManagerEvent::ManagerDeactivated(e) => e.manager_id,
            ManagerEvent::ManagerReactivated(e) => e.manager_id,
        }
    }

    /// The event's own fields, as stored in the payload column.
    pub fn payload(&self) -> serde_json::Value {
        let v = match self {
            ManagerEvent::ManagerRegistered(e) => serde_json::to_value(e),
            ManagerEvent::ManagerUpdated(e) => serde_json::to_value(e),
            ManagerEvent::ManagerDeactivated(e) => serde_json::to_value(e),
            ManagerEvent::ManagerReactivated(e) => serde_json::to_value(e),
        };
        v.expect("events serialise")
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
        Ok(match event_type {
            "ManagerRegistered" => {
                ManagerEvent::ManagerRegistered(decode_payload(event_type, payload)?)
            }
            "ManagerUpdated" => ManagerEvent::ManagerUpdated(decode_payload(event_type, payload)?),
            "ManagerDeactivated" => {
                ManagerEvent::ManagerDeactivated(decode_payload(event_type, payload)?)
            }
            "ManagerReactivated" => {
                ManagerEvent::ManagerReactivated(decode_payload(event_type, payload)?)
            }
            other => return Err(DecodeError::UnknownType(other.to_string())),
        })
    }
}

/// A manager as folded from its stream; `Default` is "not registered".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ManagerState {
    pub id: Option<ManagerId>,
    pub name: String,
    pub role: Option<ManagerRole>,
    pub team: Option<TeamId>,
    pub region: Option<RegionId>,
    pub branch: Option<BranchId>,
    pub holding_limit: u32,
    pub active: bool,
}

impl ManagerState {
    pub fn is_registered(&self) -> bool {
        self.id.is_some()
    }

    /// The rules' view, given the manager's current holdings; None if not registered.
    pub fn view(&self, holdings: u32) -> Option<ManagerView> {
        Some(ManagerView {
            id: self.id?,
            active: self.active,
            role: self.role?,
            team: self.team.clone()?,
            region: self.region.clone()?,
            branch: self.branch.clone()?,
            holding_limit: self.holding_limit,
            holdings,
        })
    }

    pub fn apply(&mut self, event: &ManagerEvent) {
        match event {
            ManagerEvent::ManagerRegistered(e) => {
                *self = ManagerState {
                    id: Some(e.manager_id),
                    name: e.name.clone(),
                    role: Some(e.role),
                    team: Some(e.team.clone()),
                    region: Some(e.region.clone()),
                    branch: Some(e.branch.clone()),
                    holding_limit: e.holding_limit,
                    active: true,
                }
            }
            ManagerEvent::ManagerUpdated(e) => {
                if let Some(v) = &e.name {
                    self.name = v.clone();
                }
                if let Some(v) = e.role {
                    self.role = Some(v);
                }
                if let Some(v) = &e.team {
                    self.team = Some(v.clone());
                }
                if let Some(v) = &e.region {
                    self.region = Some(v.clone());
                }
                if let Some(v) = &e.branch {
                    self.branch = Some(v.clone());
                }
                if let Some(v) = e.holding_limit {
                    self.holding_limit = v;
                }
            }
            ManagerEvent::ManagerDeactivated(_) => self.active = false,
            ManagerEvent::ManagerReactivated(_) => self.active = true,
        }
    }
}

pub fn evolve(mut state: ManagerState, event: &ManagerEvent) -> ManagerState {
    state.apply(event);
    state
}

fn check_name(name: &str) -> Result<String, DomainError> {
    let t = name.trim();
    if t.is_empty() || t.chars().count() > 200 {
        return Err(DomainError::invalid("name", "must be 1 to 200 characters"));
    }
    Ok(t.to_string())
}

/// Decide a manager command.
pub fn decide(
    state: &ManagerState,
    command: &ManagerCommand,
    _ctx: &DecisionContext,
) -> Result<Vec<ManagerEvent>, DomainError> {
    let id = command.manager_id();
    if let ManagerCommand::Register(c) = command {
        if state.is_registered() {
            return Err(DomainError::ManagerAlreadyRegistered(id));
        }
        return Ok(vec![ManagerEvent::ManagerRegistered(ManagerRegistered {
            manager_id: c.manager_id,
            name: check_name(&c.name)?,
            role: c.role,
            team: c.team.clone(),
            region: c.region.clone(),
            branch: c.branch.clone(),
            holding_limit: c.holding_limit,
        })]);
    }
    if !state.is_registered() {
        return Err(DomainError::UnknownManager(id));
    }
    match command {
        ManagerCommand::Register(_) => unreachable!("handled above"),
        ManagerCommand::Update(c) => {
            fn changed<T: PartialEq + Clone>(new: &Option<T>, old: &Option<T>) -> Option<T> {
                new.clone().filter(|n| Some(n) != old.as_ref())
            }
            let name = c.name.as_deref().map(check_name).transpose()?;
            let e = ManagerUpdated {
                manager_id: id,
                name: name.filter(|n| n != &state.name),
                role: c.role.filter(|r| Some(*r) != state.role),
                team: changed(&c.team, &state.team),
                region: changed(&c.region, &state.region),
                branch: changed(&c.branch, &state.branch),
                holding_limit: c.holding_limit.filter(|l| *l != state.holding_limit),
            };
            let nothing = e.name.is_none()
                && e.role.is_none()
                && e.team.is_none()
                && e.region.is_none()
                && e.branch.is_none()
                && e.holding_limit.is_none();
            if nothing {
                return Err(DomainError::NothingToChange);
            }
            Ok(vec![ManagerEvent::ManagerUpdated(e)])
        }
        ManagerCommand::Deactivate(c) => {
            if !state.active {
                return Err(DomainError::ManagerAlready {
                    manager: id,
                    state: "inactive",
                });
            }
            Ok(vec![ManagerEvent::ManagerDeactivated(ManagerDeactivated {
                manager_id: id,
                reason: crate::customer::decide::check_text("reason", &c.reason, 500)?,
            })])
        }
        ManagerCommand::Reactivate(_) => {
            if state.active {
                return Err(DomainError::ManagerAlready {
                    manager: id,
                    state: "active",
                });
            }
            Ok(vec![ManagerEvent::ManagerReactivated(ManagerReactivated {
                manager_id: id,
            })])
        }
    }
}

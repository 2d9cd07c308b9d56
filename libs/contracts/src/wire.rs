//! Wire payloads ⇄ domain commands. A payload (protobuf, or its JSON form) is first read
//! into its proto message, which fixes the field set (unknown JSON fields are refused),
//! then into the domain command through serde: proto field names are the domain's field
//! names, so one mapping serves both encodings and the OpenAPI document.

use crm_domain::customer::*;
use crm_domain::manager::{
    DeactivateManager, ManagerCommand, ReactivateManager, RegisterManager, UpdateManager,
};
use crm_domain::policy::{PolicyCommand, PolicyDocument, PublishPolicy};
use crm_domain::{Command, CustomerCommand};
use prost::Message;
use serde_json::Value;

use crate::v1;

/// Payload encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Protobuf,
    Json,
}

impl Format {
    /// From a `Content-Type` value; protobuf when absent (the NATS default).
    pub fn from_content_type(ct: Option<&str>) -> Option<Format> {
        match ct.map(|c| {
            c.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        }) {
            None => Some(Format::Protobuf),
            Some(c) if c.is_empty() => Some(Format::Protobuf),
            Some(c) if c == "application/json" => Some(Format::Json),
            Some(c) if c == "application/x-protobuf" || c == "application/protobuf" => {
                Some(Format::Protobuf)
            }
            Some(_) => None,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Protobuf => "application/x-protobuf",
            Format::Json => "application/json",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("no command named {0:?}")]
    UnknownCommand(String),
    #[error("{0}")]
    Malformed(String),
}

/// A decoded command with its envelope fields as sent.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    pub meta: v1::CommandMeta,
    pub command: Command,
}

fn malformed(what: &str, e: impl std::fmt::Display) -> WireError {
    WireError::Malformed(format!("{what}: {e}"))
}

fn read<M: Message + Default + serde::de::DeserializeOwned>(
    body: &[u8],
    format: Format,
) -> Result<M, WireError> {
    match format {
        Format::Protobuf => M::decode(body).map_err(|e| malformed("invalid protobuf", e)),
        Format::Json => serde_json::from_slice(body).map_err(|e| malformed("invalid JSON", e)),
    }
}

fn split_meta<M: serde::Serialize>(msg: &M) -> Result<(v1::CommandMeta, Value), WireError> {
    let mut value = serde_json::to_value(msg).map_err(|e| malformed("payload", e))?;
    let meta = value
        .as_object_mut()
        .and_then(|o| o.remove("meta"))
        .filter(|m| !m.is_null())
        .ok_or_else(|| WireError::Malformed("meta is required (command_id and actor)".into()))?;
    let meta = serde_json::from_value(meta).map_err(|e| malformed("meta", e))?;
    Ok((meta, value))
}

fn inner<T: serde::de::DeserializeOwned>(value: Value) -> Result<T, WireError> {
    serde_json::from_value(value).map_err(|e| malformed("invalid field", e))
}

/// The domain command's own fields, as they appear on the wire (without `meta`).
fn fields(command: &Command) -> Value {
    let v = match command {
        Command::Customer(c) => serde_json::to_value(c),
        Command::Manager(c) => serde_json::to_value(c),
        Command::Policy(PolicyCommand::Publish(p)) => {
            return serde_json::json!({
                "document_json": serde_json::to_string(&p.document).expect("documents serialise"),
                "note": p.note,
            })
        }
    }
    .expect("commands serialise");
    v.get("data").cloned().unwrap_or(Value::Null)
}

/// `publish_policy` on the wire: the document travels as a JSON string.
#[derive(serde::Deserialize)]
struct WirePublishPolicy {
    #[serde(deserialize_with = "document_from_json")]
    document_json: PolicyDocument,
    note: String,
}

fn document_from_json<'de, D: serde::Deserializer<'de>>(d: D) -> Result<PolicyDocument, D::Error> {
    let text = <String as serde::Deserialize>::deserialize(d)?;
    serde_json::from_str(&text).map_err(|e| serde::de::Error::custom(format!("document_json: {e}")))
}

macro_rules! command_table {
    ($($name:literal => $proto:ident => $variant:expr;)*) => {
        /// Every command name, as used in NATS subjects and HTTP paths.
        pub const COMMAND_NAMES: &[&str] = &[$($name),*];

        /// Read a payload for the command `name`.
        pub fn decode(name: &str, body: &[u8], format: Format) -> Result<Decoded, WireError> {
            match name {
                $($name => {
                    let msg: v1::$proto = read(body, format)?;
                    let (meta, rest) = split_meta(&msg)?;
                    Ok(Decoded { meta, command: ($variant)(inner(rest)?) })
                })*
                other => Err(WireError::UnknownCommand(other.to_string())),
            }
        }

        /// Write a command with its envelope (the load generator and tests use this).
        pub fn encode(meta: &v1::CommandMeta, command: &Command, format: Format) -> Result<Vec<u8>, WireError> {
            let mut value = fields(command);
            value["meta"] = serde_json::to_value(meta).map_err(|e| malformed("meta", e))?;
            match command.name() {
                $($name => {
                    let msg: v1::$proto = serde_json::from_value(value).map_err(|e| malformed("command", e))?;
                    Ok(match format {
                        Format::Protobuf => msg.encode_to_vec(),
                        Format::Json => serde_json::to_vec(&msg).expect("proto messages serialise"),
                    })
                })*
                other => Err(WireError::UnknownCommand(other.to_string())),
            }
        }
    };
}

command_table! {
    "register_customer" => RegisterCustomer => |x: RegisterCustomer| Command::Customer(CustomerCommand::Register(x));
    "update_profile" => UpdateProfile => |x: UpdateProfile| Command::Customer(CustomerCommand::UpdateProfile(x));
    "assign_owner" => AssignOwner => |x: AssignOwner| Command::Customer(CustomerCommand::AssignOwner(x));
    "transfer_owner" => TransferOwner => |x: TransferOwner| Command::Customer(CustomerCommand::TransferOwner(x));
    "release_to_pool" => ReleaseToPool => |x: ReleaseToPool| Command::Customer(CustomerCommand::ReleaseToPool(x));
    "claim_from_pool" => ClaimFromPool => |x: ClaimFromPool| Command::Customer(CustomerCommand::ClaimFromPool(x));
    "record_contact" => RecordContact => |x: RecordContact| Command::Customer(CustomerCommand::RecordContact(x));
    "log_complaint" => LogComplaint => |x: LogComplaint| Command::Customer(CustomerCommand::LogComplaint(x));
    "acknowledge_complaint" => AcknowledgeComplaint => |x: AcknowledgeComplaint| Command::Customer(CustomerCommand::AcknowledgeComplaint(x));
    "escalate_complaint" => EscalateComplaint => |x: EscalateComplaint| Command::Customer(CustomerCommand::EscalateComplaint(x));
    "resolve_complaint" => ResolveComplaint => |x: ResolveComplaint| Command::Customer(CustomerCommand::ResolveComplaint(x));
    "reopen_complaint" => ReopenComplaint => |x: ReopenComplaint| Command::Customer(CustomerCommand::ReopenComplaint(x));
    "close_complaint" => CloseComplaint => |x: CloseComplaint| Command::Customer(CustomerCommand::CloseComplaint(x));
    "record_purchase" => RecordPurchase => |x: RecordPurchase| Command::Customer(CustomerCommand::RecordPurchase(x));
    "record_referral" => RecordReferral => |x: RecordReferral| Command::Customer(CustomerCommand::RecordReferral(x));
    "change_lifecycle_stage" => ChangeLifecycleStage => |x: ChangeLifecycleStage| Command::Customer(CustomerCommand::ChangeLifecycleStage(x));
    "assign_by_policy" => AssignByPolicy => |x: AssignByPolicy| Command::Customer(CustomerCommand::AssignByPolicy(x));
    "lock_ownership" => LockOwnership => |x: LockOwnership| Command::Customer(CustomerCommand::LockOwnership(x));
    "unlock_ownership" => UnlockOwnership => |x: UnlockOwnership| Command::Customer(CustomerCommand::UnlockOwnership(x));
    "erase_customer_data" => EraseCustomerData => |x: EraseCustomerData| Command::Customer(CustomerCommand::EraseCustomerData(x));
    "publish_policy" => PublishPolicy => |x: WirePublishPolicy| Command::Policy(PolicyCommand::Publish(PublishPolicy { document: x.document_json, note: x.note }));
    "register_manager" => RegisterManager => |x: RegisterManager| Command::Manager(ManagerCommand::Register(x));
    "update_manager" => UpdateManager => |x: UpdateManager| Command::Manager(ManagerCommand::Update(x));
    "deactivate_manager" => DeactivateManager => |x: DeactivateManager| Command::Manager(ManagerCommand::Deactivate(x));
    "reactivate_manager" => ReactivateManager => |x: ReactivateManager| Command::Manager(ManagerCommand::Reactivate(x));
}

/// Encode a reply in the request's format.
pub fn encode_reply(reply: &v1::CommandReply, format: Format) -> Vec<u8> {
    match format {
        Format::Protobuf => reply.encode_to_vec(),
        Format::Json => serde_json::to_vec(reply).expect("replies serialise"),
    }
}

pub fn decode_reply(body: &[u8], format: Format) -> Result<v1::CommandReply, WireError> {
    read(body, format)
}

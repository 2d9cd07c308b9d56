//! Wire payloads ⇄ domain commands. A payload (protobuf, or its JSON form) is first read
//! into its proto message, which fixes the field set and types (unknown JSON fields and
//! wrong types are refused as malformed, 400), then every string in it is checked against
//! the platform's text rules (`crm_domain::text`), then it is read into the domain command
//! through serde: proto field names are the domain's field names, so one mapping serves
//! both encodings and the OpenAPI document. A value the message carries but the domain
//! does not accept (an unknown enum value, a bad UUID, a team name too long, a control
//! character) is refused as invalid (422), naming the field by its path.

use crm_domain::policy::{PolicyCommand, PolicyDocument};
use crm_domain::text::{self, TextKind};
use crm_domain::Command;
use prost::{Message, Name};
use prost_reflect::{DeserializeOptions, DynamicMessage};
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
    /// Not this command's message: bytes that do not decode, a wrong type, an unknown
    /// field.
    #[error("{0}")]
    Malformed(String),
    /// The message decodes, but a field's value breaks its format, range or the text
    /// rules; `field` is its path (`meta.actor`, `document_json.holding.team_limit`).
    #[error("field {field}: {reason}")]
    Invalid { field: String, reason: String },
}

impl WireError {
    pub fn invalid(field: impl Into<String>, reason: impl std::fmt::Display) -> Self {
        WireError::Invalid {
            field: field.into(),
            reason: reason.to_string(),
        }
    }
}

/// Free-text fields: they may span lines. Every other string is one line.
pub const MULTILINE_FIELDS: &[&str] = &[
    "reason",
    "note",
    "summary",
    "description",
    "resolution",
    "document_json",
];

/// Check every string in `value` (keys too) against the text rules; the first offender
/// is refused with its path.
pub fn check_text(value: &Value, path: &str) -> Result<(), WireError> {
    let kind = match path.rsplit('.').next() {
        Some(last) if MULTILINE_FIELDS.contains(&last) => TextKind::Multiline,
        _ => TextKind::Line,
    };
    let join = |key: &str| {
        if path.is_empty() {
            key.to_string()
        } else {
            format!("{path}.{key}")
        }
    };
    match value {
        Value::String(s) => text::check(s, kind).map_err(|e| WireError::invalid(path, e)),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .try_for_each(|(i, v)| check_text(v, &format!("{path}[{i}]"))),
        Value::Object(map) => map.iter().try_for_each(|(k, v)| {
            text::check(k, TextKind::Line)
                .map_err(|e| WireError::invalid(join(&text::escaped(k)), e))?;
            check_text(v, &join(k))
        }),
        Value::Null | Value::Bool(_) | Value::Number(_) => Ok(()),
    }
}

/// Field 1 of every command message (`meta`), read alone: the other fields are skipped
/// whatever they hold.
#[derive(Clone, PartialEq, Message)]
struct MetaOnly {
    #[prost(message, optional, tag = "1")]
    meta: Option<v1::CommandMeta>,
}

/// The `meta.command_id` a payload carries, read even when the payload is not a valid
/// command (an unknown field, a wrong type elsewhere), so that its refusal can name the
/// command it refuses. Not checked: the caller parses it.
pub fn claimed_command_id(body: &[u8], format: Format) -> Option<String> {
    let id = match format {
        Format::Protobuf => MetaOnly::decode(body).ok()?.meta?.command_id,
        Format::Json => {
            let v: Value = serde_json::from_slice(body).ok()?;
            let meta = v.get("meta")?;
            let id = meta.get("command_id").or_else(|| meta.get("commandId"))?;
            id.as_str()?.to_string()
        }
    };
    Some(id).filter(|i| !i.is_empty())
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

fn read<M: Message + Name + Default>(body: &[u8], format: Format) -> Result<M, WireError> {
    match format {
        Format::Protobuf => M::decode(body).map_err(|e| malformed("invalid protobuf", e)),
        Format::Json => from_proto3_json(body),
    }
}

/// A message from its proto3 JSON form (<https://protobuf.dev/programming-guides/json/>),
/// read by the descriptors: field names as in the proto file or in lowerCamelCase, 64-bit
/// integers as numbers or strings, a field at its default omitted or `null`, enums by
/// name or number. An unknown field is refused by its name, a wrong type with its path.
fn from_proto3_json<M: Message + Name + Default>(body: &[u8]) -> Result<M, WireError> {
    let desc = crate::descriptors()
        .get_message_by_name(&M::full_name())
        .expect("build.rs describes every message");
    let mut json = serde_json::Deserializer::from_slice(body);
    let mut track = serde_path_to_error::Track::new();
    let read = DynamicMessage::deserialize_with_options(
        desc,
        serde_path_to_error::Deserializer::new(&mut json, &mut track),
        &DeserializeOptions::new(),
    )
    .and_then(|m| json.end().map(|()| m));
    let message = read.map_err(|e| {
        let path = track.path();
        match path.iter().next() {
            Some(_) => malformed("invalid JSON", format!("{path}: {e}")),
            None => malformed("invalid JSON", e),
        }
    })?;
    message
        .transcode_to()
        .map_err(|e| malformed("invalid JSON", e))
}

fn split_meta<M: serde::Serialize>(msg: &M) -> Result<(v1::CommandMeta, Value), WireError> {
    let mut value = serde_json::to_value(msg).map_err(|e| malformed("payload", e))?;
    check_text(&value, "")?;
    let meta = value
        .as_object_mut()
        .and_then(|o| o.remove("meta"))
        .filter(|m| !m.is_null())
        .ok_or_else(|| WireError::Malformed("meta is required (command_id and actor)".into()))?;
    let meta = serde_json::from_value(meta).map_err(|e| malformed("meta", e))?;
    Ok((meta, value))
}

/// The domain command from the message's fields: the shapes already match (the proto
/// message was read), so what fails here is a value, refused with its field's path.
fn inner<T: serde::de::DeserializeOwned>(value: Value) -> Result<T, WireError> {
    serde_path_to_error::deserialize(value)
        .map_err(|e| WireError::invalid(e.path().to_string(), e.inner()))
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

/// The policy document inside `document_json`: its strings checked and its fields read
/// like a command's, an error naming the path inside the document
/// (`holding.team_limitz: unknown field`).
fn document_from_json<'de, D: serde::Deserializer<'de>>(d: D) -> Result<PolicyDocument, D::Error> {
    use serde::de::Error as _;
    let text = <String as serde::Deserialize>::deserialize(d)?;
    let value: Value = serde_json::from_str(&text)
        .map_err(|e| D::Error::custom(format!("not a JSON document: {e}")))?;
    check_text(&value, "").map_err(|e| match e {
        WireError::Invalid { field, reason } => D::Error::custom(format!("{field}: {reason}")),
        other => D::Error::custom(other),
    })?;
    serde_path_to_error::deserialize(value)
        .map_err(|e| D::Error::custom(format!("{}: {}", e.path(), e.inner())))
}

/// How one command travels: its name (NATS subject token, HTTP path), how its payload is
/// read into the domain command, and how a domain command's fields are written as its
/// message.
pub struct CommandWire {
    pub name: &'static str,
    read: fn(&[u8], Format) -> Result<Decoded, WireError>,
    write: fn(Value, Format) -> Result<Vec<u8>, WireError>,
}

mod table;
pub use table::COMMANDS;

const NAMES: [&str; COMMANDS.len()] = {
    let mut names = [""; COMMANDS.len()];
    let mut i = 0;
    while i < COMMANDS.len() {
        names[i] = COMMANDS[i].name;
        i += 1;
    }
    names
};

/// Every command name, as used in NATS subjects and HTTP paths.
pub const COMMAND_NAMES: &[&str] = &NAMES;

/// The message `P` read from a payload, then its fields (but `meta`) as the domain's `T`.
fn read_as<P, T>(body: &[u8], format: Format, wrap: fn(T) -> Command) -> Result<Decoded, WireError>
where
    P: Message + Name + Default + serde::Serialize,
    T: serde::de::DeserializeOwned,
{
    let msg: P = read(body, format)?;
    let (meta, rest) = split_meta(&msg)?;
    Ok(Decoded {
        meta,
        command: wrap(inner(rest)?),
    })
}

/// A command's fields and `meta` written as the message `P`.
fn write_as<P>(value: Value, format: Format) -> Result<Vec<u8>, WireError>
where
    P: Message + serde::Serialize + serde::de::DeserializeOwned,
{
    let msg: P = serde_json::from_value(value).map_err(|e| malformed("command", e))?;
    Ok(match format {
        Format::Protobuf => msg.encode_to_vec(),
        Format::Json => serde_json::to_vec(&msg).expect("proto messages serialise"),
    })
}

fn wire_of(name: &str) -> Result<&'static CommandWire, WireError> {
    COMMANDS
        .iter()
        .find(|c| c.name == name)
        .ok_or_else(|| WireError::UnknownCommand(name.to_string()))
}

/// Read a payload for the command `name`.
pub fn decode(name: &str, body: &[u8], format: Format) -> Result<Decoded, WireError> {
    (wire_of(name)?.read)(body, format)
}

/// Write a command with its envelope (the load generator and tests use this).
pub fn encode(
    meta: &v1::CommandMeta,
    command: &Command,
    format: Format,
) -> Result<Vec<u8>, WireError> {
    let mut value = fields(command);
    value["meta"] = serde_json::to_value(meta).map_err(|e| malformed("meta", e))?;
    (wire_of(command.name())?.write)(value, format)
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

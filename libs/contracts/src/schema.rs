//! JSON Schemas of the contract's fields, shared by the documents generated from the
//! descriptors (the events' AsyncAPI, the commands' OpenAPI).

use prost_reflect::{FieldDescriptor, Kind, MessageDescriptor};
use serde_json::{json, Value};

use crate::options::{allowed_values, is_uuid, pattern, uint_range};

/// The JSON Schema of a field's proto3 JSON form: its type, format, closed set of values
/// and bounds from the contract's rules; a message by reference
/// (`#/components/schemas/<Name>`), but the well-known types by their JSON form.
pub(crate) fn field(f: &FieldDescriptor) -> Value {
    let one = match f.kind() {
        Kind::String => {
            let mut s = json!({"type": "string"});
            if is_uuid(f) {
                s["format"] = "uuid".into();
            }
            if let Some(values) = allowed_values(f) {
                s["enum"] = json!(values);
            }
            if let Some(p) = pattern(f) {
                s["pattern"] = p.into();
            }
            s
        }
        Kind::Bool => json!({"type": "boolean"}),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => {
            json!({"type": "integer", "format": "int32"})
        }
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => {
            json!({"type": "integer", "format": "int64"})
        }
        Kind::Uint32 | Kind::Fixed32 | Kind::Uint64 | Kind::Fixed64 => {
            let (min, max) = uint_range(f);
            let mut s = json!({"type": "integer", "minimum": min.unwrap_or(0)});
            if let Some(max) = max {
                s["maximum"] = max.into();
            }
            s
        }
        Kind::Float | Kind::Double => json!({"type": "number"}),
        Kind::Bytes => json!({"type": "string", "contentEncoding": "base64"}),
        Kind::Enum(e) => {
            json!({"type": "string", "enum": e.values().map(|v| v.name().to_string()).collect::<Vec<_>>()})
        }
        Kind::Message(m) => well_known(&m)
            .unwrap_or_else(|| json!({"$ref": format!("#/components/schemas/{}", m.name())})),
    };
    if f.is_list() {
        json!({"type": "array", "items": one})
    } else {
        one
    }
}

/// The JSON form of the well-known types the contract uses.
pub(crate) fn well_known(m: &MessageDescriptor) -> Option<Value> {
    match m.full_name() {
        "google.protobuf.Timestamp" => Some(json!({"type": "string", "format": "date-time"})),
        "google.protobuf.Struct" => Some(json!({"type": "object"})),
        _ => None,
    }
}

/// The comment attached to the element at `path` of `file`, on one line.
pub(crate) fn comment(
    file: &prost_reflect::prost_types::FileDescriptorProto,
    path: &[i32],
) -> Option<String> {
    let location = file
        .source_code_info
        .as_ref()?
        .location
        .iter()
        .find(|l| l.path == path)?;
    let text = location
        .leading_comments
        .as_deref()
        .or(location.trailing_comments.as_deref())?;
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    (!text.is_empty()).then_some(text)
}

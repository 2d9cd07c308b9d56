//! What the contract's options say of a message or a field: protovalidate's rules
//! (`buf/validate/validate.proto`: closed sets of values, UUIDs, rules across fields)
//! and the platform's own (`crm/v1/options.proto`: personal fields).

use prost_reflect::{ExtensionDescriptor, FieldDescriptor, MessageDescriptor, Value as Field};

use crate::descriptors;

/// Whether a field is marked `(crm.v1.personal)`: its value is `enc:v1:` ciphertext.
pub fn is_personal(field: &FieldDescriptor) -> bool {
    let personal = extension("crm.v1.personal");
    field
        .options()
        .get_extension(&personal)
        .as_bool()
        .unwrap_or(false)
}

/// The closed set of values of a string field (its `(buf.validate.field).string.in`
/// rule), if it has one.
pub fn allowed_values(field: &FieldDescriptor) -> Option<Vec<String>> {
    let list = rule(field, &["string", "in"])?;
    let values: Vec<String> = list
        .as_list()?
        .iter()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    (!values.is_empty()).then_some(values)
}

/// The regular expression a string field must match (`(buf.validate.field).string.pattern`).
pub fn pattern(field: &FieldDescriptor) -> Option<String> {
    rule(field, &["string", "pattern"]).and_then(|v| v.as_str().map(str::to_string))
}

/// Whether a string field must hold a UUID (`(buf.validate.field).string.uuid`).
pub fn is_uuid(field: &FieldDescriptor) -> bool {
    rule(field, &["string", "uuid"]).is_some_and(|v| v.as_bool() == Some(true))
}

/// The bounds of an unsigned integer field (`(buf.validate.field).uint32` or `uint64`,
/// `gte` and `lte`), each when set.
pub fn uint_range(field: &FieldDescriptor) -> (Option<u64>, Option<u64>) {
    let bound = |name: &str| {
        ["uint32", "uint64"].iter().find_map(|kind| {
            let v = rule(field, &[kind, name])?;
            v.as_u32().map(u64::from).or_else(|| v.as_u64())
        })
    };
    (bound("gte"), bound("lte"))
}

/// A rule across a message's fields (`(buf.validate.message).cel`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRule {
    pub id: String,
    pub message: String,
    /// The rule in CEL, over `this` (the message).
    pub expression: String,
}

/// The rules across `message`'s fields, in the order declared.
pub fn message_rules(message: &MessageDescriptor) -> Vec<MessageRule> {
    let rules = extension("buf.validate.message");
    let options = message.options();
    if !options.has_extension(&rules) {
        return Vec::new();
    }
    let rules = options.get_extension(&rules);
    let Some(cel) = rules
        .as_message()
        .and_then(|r| r.get_field_by_name("cel"))
        .and_then(|c| c.as_list().map(<[Field]>::to_vec))
    else {
        return Vec::new();
    };
    cel.iter()
        .filter_map(Field::as_message)
        .map(|rule| {
            let text = |name: &str| {
                rule.get_field_by_name(name)
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default()
            };
            MessageRule {
                id: text("id"),
                message: text("message"),
                expression: text("expression"),
            }
        })
        .collect()
}

/// The value at `path` inside a field's `(buf.validate.field)` rules, when set.
fn rule(field: &FieldDescriptor, path: &[&str]) -> Option<Field> {
    let rules = extension("buf.validate.field");
    let options = field.options();
    if !options.has_extension(&rules) {
        return None;
    }
    let mut at = options.get_extension(&rules).into_owned();
    for name in path {
        let message = at.as_message()?;
        if !message.has_field_by_name(name) {
            return None;
        }
        at = message.get_field_by_name(name)?.into_owned();
    }
    Some(at)
}

pub(crate) fn extension(name: &str) -> ExtensionDescriptor {
    descriptors()
        .get_extension_by_name(name)
        .unwrap_or_else(|| panic!("the descriptors define the option {name}"))
}

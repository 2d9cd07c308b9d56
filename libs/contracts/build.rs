//! Compile `proto/crm/v1/*.proto` with protox (pure Rust: no system protoc needed), and
//! derive the HTTP API's OpenAPI document from the same descriptors, so the two can
//! never disagree. Proto comments become schema descriptions.

use std::collections::BTreeMap;
use std::path::Path;

use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, FileDescriptorProto, FileDescriptorSet};
use serde_json::{json, Map, Value};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    println!("cargo:rerun-if-changed={}", root.display());
    let mut compiler = protox::Compiler::new([&root])?;
    compiler.include_source_info(true).include_imports(true);
    // The commands (and what they import) first: the Rust types are made for them alone.
    compiler.open_files([root.join("crm/v1/commands.proto")])?;
    let mut commands = compiler.file_descriptor_set();
    // Their validation rules are options: protovalidate's own messages need no Rust types.
    commands.file.retain(|f| f.package() == "crm.v1");
    compiler.open_files([root.join("crm/v1/events.proto")])?;
    let fds = compiler.file_descriptor_set();

    let out = std::env::var("OUT_DIR")?;
    std::fs::write(
        Path::new(&out).join("openapi.json"),
        serde_json::to_string_pretty(&openapi(&fds))?,
    )?;
    // The descriptors themselves, options included: the proto3 JSON mapping and the
    // event catalogue are read from them at run time.
    std::fs::write(
        Path::new(&out).join("descriptors.bin"),
        compiler.encode_file_descriptor_set(),
    )?;

    prost_build::Config::new()
        // `prost::Name`: each message's full name, to find its descriptor.
        .enable_type_names()
        // The JSON form of a command is its protobuf message, field for field.
        .type_attribute(".crm", "#[derive(serde::Serialize, serde::Deserialize)]")
        .type_attribute(".crm", "#[serde(deny_unknown_fields)]")
        .compile_fds(commands)?;
    Ok(())
}

/// Comments attached to each message (path [4, i]) and field (path [4, i, 2, j]).
fn comments(file: &FileDescriptorProto) -> BTreeMap<Vec<i32>, String> {
    let mut out = BTreeMap::new();
    if let Some(info) = &file.source_code_info {
        for loc in &info.location {
            let text = loc
                .leading_comments
                .clone()
                .or(loc.trailing_comments.clone())
                .unwrap_or_default();
            let text = text.trim().replace('\n', " ");
            if !text.is_empty() {
                out.insert(loc.path.clone(), text);
            }
        }
    }
    out
}

fn snake(name: &str) -> String {
    let mut s = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            s.push('_');
        }
        s.push(c.to_ascii_lowercase());
    }
    s
}

fn schema(msg: &DescriptorProto, path: &[i32], docs: &BTreeMap<Vec<i32>, String>) -> Value {
    let mut props = Map::new();
    let mut required = Vec::new();
    for (j, f) in msg.field.iter().enumerate() {
        let mut fpath = path.to_vec();
        fpath.extend([2, j as i32]);
        let mut s = match f.r#type() {
            Type::String => json!({"type": "string"}),
            Type::Bool => json!({"type": "boolean"}),
            Type::Int64 | Type::Uint64 | Type::Sint64 => {
                json!({"type": "integer", "format": "int64"})
            }
            Type::Int32 | Type::Uint32 | Type::Sint32 => {
                json!({"type": "integer", "format": "int32"})
            }
            Type::Message => {
                let name = f.type_name().rsplit('.').next().unwrap_or_default();
                json!({"$ref": format!("#/components/schemas/{name}")})
            }
            other => json!({"description": format!("{other:?}")}),
        };
        if f.label() == Label::Repeated {
            s = json!({"type": "array", "items": s});
        }
        if let Some(d) = docs.get(&fpath) {
            if let Value::Object(o) = &mut s {
                o.insert("description".into(), Value::String(d.clone()));
            }
        }
        let optional = f.proto3_optional.unwrap_or(false) || f.label() == Label::Repeated;
        if !optional && f.r#type() != Type::Message {
            required.push(Value::String(f.name().to_string()));
        }
        if f.name() == "meta" {
            required.push(Value::String("meta".into()));
        }
        props.insert(f.name().to_string(), s);
    }
    let mut s = json!({"type": "object", "additionalProperties": false, "properties": props, "required": required});
    if let Some(d) = docs.get(path) {
        s["description"] = Value::String(d.clone());
    }
    s
}

fn openapi(fds: &FileDescriptorSet) -> Value {
    let mut schemas = Map::new();
    let mut paths = Map::new();
    for file in fds
        .file
        .iter()
        .filter(|f| f.name() == "crm/v1/commands.proto")
    {
        let docs = comments(file);
        for (i, msg) in file.message_type.iter().enumerate() {
            let path = vec![4, i as i32];
            schemas.insert(msg.name().to_string(), schema(msg, &path, &docs));
            let is_command = msg
                .field
                .iter()
                .any(|f| f.name() == "meta" && f.type_name().ends_with("CommandMeta"));
            if !is_command {
                continue;
            }
            let name = snake(msg.name());
            let summary = docs.get(&path).cloned().unwrap_or_else(|| name.clone());
            paths.insert(
                format!("/v1/commands/{name}"),
                json!({"post": {
                    "operationId": name,
                    "summary": summary,
                    "tags": [if name.contains("manager") { "managers" } else if name.contains("complaint") { "complaints" } else { "customers" }],
                    "parameters": [{"name": "Idempotency-Key", "in": "header", "required": false,
                        "description": "Alternative to meta.command_id (must equal it when both are given)",
                        "schema": {"type": "string", "format": "uuid"}}],
                    "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{}", msg.name())}}}},
                    "responses": {
                        "200": {"description": "Accepted (or a repeat of an accepted command id: duplicate = true)",
                                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/CommandReply"}}}},
                        "400": {"$ref": "#/components/responses/Problem"},
                        "404": {"$ref": "#/components/responses/Problem"},
                        "409": {"$ref": "#/components/responses/Problem"},
                        "413": {"$ref": "#/components/responses/Problem"},
                        "415": {"$ref": "#/components/responses/Problem"},
                        "422": {"$ref": "#/components/responses/Problem"},
                        "503": {"$ref": "#/components/responses/Problem"}
                    }
                }}),
            );
        }
    }
    schemas.insert(
        "ProblemDetails".into(),
        json!({"type": "object", "description": "RFC 9457 problem details",
            "properties": {
                "type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
                "detail": {"type": "string"}, "code": {"type": "string", "description": "stable machine code"},
                "command_id": {"type": "string"}},
            "required": ["type", "title", "status", "code"]}),
    );
    json!({
        "openapi": "3.1.0",
        "info": {"title": "CRM command API", "version": "1.0.0",
                 "description": "Commands of the CRM event platform. Generated from proto/crm/v1 at build time."},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "responses": {"Problem": {"description": "Refused; nothing was changed",
                "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/ProblemDetails"}}}}}
        }
    })
}

//! Compile `proto/` with protox (pure Rust: no system protoc needed): the Rust types of
//! the commands, and the descriptors (options and comments included) from which the
//! proto3 JSON mapping, the event catalogue and the OpenAPI and AsyncAPI documents are
//! read at run time.

use std::path::Path;

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

    let out = std::env::var("OUT_DIR")?;
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

//! The contract in `proto/` checked as other teams depend on it, by buf (pinned, from
//! npm; `proto/buf.yaml`): lint (names, language options, protovalidate rules that do not
//! compile), no change that breaks generated code against the newest released contract,
//! and no change that breaks the wire or the JSON form against any released one
//! (`proto/released/`, one buf image per release; docs/api.md, "The contract: validation, versions, compatibility"); and
//! the documents generated from it valid by their own specifications' tools.

use std::path::{Path, PathBuf};
use std::process::Command;

use crm_integration_tests::contract_tools::{buf, client_tools, contract_tools};
use crm_integration_tests::manifests::{run, scratch_dir};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The released contracts, oldest first (by version in the file name).
fn released() -> Vec<PathBuf> {
    let mut images: Vec<PathBuf> = std::fs::read_dir(repo().join("proto/released"))
        .expect("proto/released")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    let version = |p: &PathBuf| -> Vec<u32> {
        let stem = p.file_stem().unwrap().to_string_lossy().into_owned();
        let v = stem.rsplit("-v").next().unwrap().to_string();
        v.split('.').map(|n| n.parse().unwrap()).collect()
    };
    images.sort_by_key(version);
    assert!(!images.is_empty(), "no released contract in proto/released");
    images
}

/// `buf breaking` of the module `proto` inside `dir` against `image`, with the rule
/// category given.
fn breaking(dir: &Path, image: &Path, category: &str) -> (bool, String) {
    let config = format!(
        r#"{{"version":"v2","modules":[{{"path":"proto"}}],"breaking":{{"use":["{category}"],"ignore":["buf/validate"]}}}}"#
    );
    run(Command::new(buf())
        .current_dir(dir)
        .args(["breaking", "proto"])
        .arg("--against")
        .arg(image)
        .args(["--config", &config]))
}

#[test]
fn the_contract_passes_buf_lint() {
    let (ok, out) = run(Command::new(buf())
        .current_dir(repo())
        .args(["lint", "proto"]));
    assert!(ok, "buf lint proto:\n{out}");
}

#[test]
fn no_released_contract_is_broken() {
    let images = released();
    let newest = images.last().unwrap();
    let (ok, out) = breaking(&repo(), newest, "FILE");
    assert!(
        ok,
        "breaks generated code against {}:\n{out}",
        newest.display()
    );
    for image in &images {
        let (ok, out) = breaking(&repo(), image, "WIRE_JSON");
        assert!(ok, "breaks the wire or JSON of {}:\n{out}", image.display());
    }
}

#[test]
fn a_renumbered_field_is_caught_against_every_release() {
    // A copy of proto/ with one field of a command renumbered: what a careless change
    // does to every caller's protobuf.
    let dir = scratch_dir("contract");
    let copy = dir.join("proto");
    copy_dir(&repo().join("proto"), &copy);
    let commands = copy.join("crm/v1/commands.proto");
    let text = std::fs::read_to_string(&commands).unwrap();
    let renumbered = text.replacen(
        "  string to_manager_id = 3",
        "  string to_manager_id = 13",
        1,
    );
    assert_ne!(
        renumbered, text,
        "the field to renumber is in commands.proto"
    );
    std::fs::write(&commands, renumbered).unwrap();
    for image in released() {
        let (ok, out) = breaking(&dir, &image, "WIRE_JSON");
        assert!(!ok, "not caught against {}", image.display());
        assert!(out.contains("to_manager_id"), "{out}");
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[test]
fn the_openapi_documents_are_valid_openapi() {
    let validator = client_tools().join("python/bin/openapi-spec-validator");
    for doc in [
        "docs/contract/commands.openapi.json",
        "docs/contract/query.openapi.json",
    ] {
        let (ok, out) = run(Command::new(&validator).arg(repo().join(doc)));
        assert!(ok, "{doc}:\n{out}");
    }
}

#[test]
fn the_asyncapi_document_is_valid_asyncapi() {
    let (ok, out) = run(Command::new("node")
        .env("CRM_CONTRACT_TOOLS", contract_tools())
        .arg(repo().join("integration-tests/scripts/asyncapi-check.mjs"))
        .arg(repo().join("docs/contract/asyncapi.json")));
    assert!(ok, "docs/contract/asyncapi.json:\n{out}");
    assert!(out.contains("errors 0, document parsed"), "{out}");
}

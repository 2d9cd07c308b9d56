//! The tool that checks `proto/` (`tests/contract.rs`): `buf`, pinned and installed by
//! `scripts/services` into `$CRM_CONTRACT_TOOLS` (default
//! `${XDG_CACHE_HOME:-$HOME/.cache}/crm/contract-tools`). Missing, it fails the test that
//! needs it, on CI as anywhere.

use std::path::PathBuf;

/// The path of `buf`; panics, naming how to install it, when absent.
pub fn buf() -> PathBuf {
    let dir = std::env::var_os("CRM_CONTRACT_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::manifests::cache_dir().join("crm/contract-tools"));
    let path = dir.join("bin/buf");
    assert!(
        path.exists(),
        "{} is missing: run scripts/services, which installs buf (npm @bufbuild/buf) into {} \
         (CI={}: the contract checks never skip)",
        path.display(),
        dir.display(),
        std::env::var("CI").unwrap_or_default()
    );
    path
}

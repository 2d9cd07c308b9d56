//! The tools that check `proto/` (`tests/contract.rs`: `buf`, in `$CRM_CONTRACT_TOOLS`)
//! and run the clients (`tests/clients.rs`, in `$CRM_CLIENT_TOOLS`), pinned and installed
//! by `scripts/services`. Missing, a tool fails the test that needs it, on CI as anywhere.

use std::path::PathBuf;

/// Where `scripts/services` installs buf and the AsyncAPI parser.
pub fn contract_tools() -> PathBuf {
    std::env::var_os("CRM_CONTRACT_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::manifests::cache_dir().join("crm/contract-tools"))
}

/// The path of `buf`; panics, naming how to install it, when absent.
pub fn buf() -> PathBuf {
    let dir = contract_tools();
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

/// Where `scripts/services` installs the clients' tool chains (`$CRM_CLIENT_TOOLS`,
/// default `${XDG_CACHE_HOME:-$HOME/.cache}/crm/client-tools`): `python/` a venv with the
/// Python client's pinned dependencies. Panics, naming how to install them, when absent.
pub fn client_tools() -> PathBuf {
    let dir = std::env::var_os("CRM_CLIENT_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::manifests::cache_dir().join("crm/client-tools"));
    assert!(
        dir.join("python/bin/python").exists(),
        "{}/python is missing: run scripts/services, which installs the clients' tool chains \
         (CI={}: the client tests never skip)",
        dir.display(),
        std::env::var("CI").unwrap_or_default()
    );
    dir
}

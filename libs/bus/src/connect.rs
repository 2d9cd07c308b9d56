//! Connecting to NATS the way every service does. A NATS operator deploys it one of
//! three ways, and each is a setting here ([`NatsAccess`], flattened into each service's
//! command line): a user and password in the URL (`nats://user:password@host:4222`,
//! `deploy/nats/auth.conf`), a credentials file (`.creds`: a user JWT and its NKey seed,
//! as `nsc` writes them, for servers in operator mode), or an NKey seed (servers that list
//! users by public NKey). TLS is on when the URL says `tls://`, when the server requires
//! it, or when a CA file is given (then a server that does not offer TLS is refused rather
//! than spoken to in clear). Replies arrive on the user's own inbox prefix (a service's
//! `CRM_NATS_INBOX`, e.g. `_INBOX.relay`) so a user may subscribe to its own replies only.

use std::path::{Path, PathBuf};

use async_nats::{ConnectError, ConnectErrorKind, ConnectOptions, ServerAddr};

/// How a service reaches NATS beside the URL: TLS, credentials, its reply inbox. Read by
/// a service's `main` (each setting has its environment variable, so `--help` lists it)
/// and handed to [`connect`]; files are read at connect time and never printed.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct NatsAccess {
    /// The prefix of this service's reply inboxes (`_INBOX.<its NATS user>`), when its NATS
    /// user may subscribe to those only (`deploy/nats/`).
    #[arg(long, env = "CRM_NATS_INBOX")]
    pub nats_inbox: Option<String>,
    /// PEM file of the CA that signed the NATS servers' certificates. TLS is then required:
    /// a server that does not offer it is refused.
    #[arg(long, env = "CRM_NATS_CA_FILE")]
    pub nats_ca_file: Option<PathBuf>,
    /// This service's client certificate (PEM), for servers that verify clients.
    #[arg(long, env = "CRM_NATS_CLIENT_CERT", requires = "nats_client_key")]
    pub nats_client_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, env = "CRM_NATS_CLIENT_KEY", requires = "nats_client_cert")]
    pub nats_client_key: Option<PathBuf>,
    /// A NATS credentials file (user JWT and NKey seed, as `nsc generate creds` writes it).
    #[arg(
        long,
        env = "CRM_NATS_CREDS_FILE",
        conflicts_with = "nats_nkey_seed_file"
    )]
    pub nats_creds_file: Option<PathBuf>,
    /// A file holding the user's NKey seed (`SU…`), for servers that list users by NKey.
    #[arg(long, env = "CRM_NATS_NKEY_SEED_FILE")]
    pub nats_nkey_seed_file: Option<PathBuf>,
    /// Begin with the TLS handshake, before the server's greeting (servers configured with
    /// `handshake_first`, and TLS-terminating proxies).
    #[arg(long, env = "CRM_NATS_TLS_FIRST")]
    pub nats_tls_first: bool,
}

/// Connect to `url` as `access` says. `url` may list several servers of a cluster,
/// comma-separated (`nats://a:4222,nats://b:4222`); the client picks one and fails over
/// to the others.
pub async fn connect(url: &str, access: &NatsAccess) -> Result<async_nats::Client, ConnectError> {
    let mut servers = Vec::new();
    for one in url.split(',').map(str::trim).filter(|u| !u.is_empty()) {
        match one.parse::<ServerAddr>() {
            Ok(addr) => servers.push(addr),
            // Let the client report the bad address in its own words.
            Err(_) => return ConnectOptions::new().connect(one).await,
        }
    }
    access.options(&servers).await?.connect(servers).await
}

impl NatsAccess {
    async fn options(&self, servers: &[ServerAddr]) -> Result<ConnectOptions, ConnectError> {
        let mut options = ConnectOptions::new();
        if let Some(path) = given(&self.nats_creds_file) {
            options = options
                .credentials_file(path)
                .await
                .map_err(|e| unreadable("credentials file", path, e))?;
        } else if let Some(path) = given(&self.nats_nkey_seed_file) {
            let seed =
                std::fs::read_to_string(path).map_err(|e| unreadable("NKey seed file", path, e))?;
            options = options.nkey(seed.trim().to_string());
        } else if let Some(addr) = servers.iter().find(|a| a.username().is_some()) {
            // The client does not take credentials from the URL by itself.
            if let (Some(user), Some(password)) = (addr.username(), addr.password()) {
                options = options.user_and_password(user.to_string(), password.to_string());
            }
        }
        if let Some(ca) = given(&self.nats_ca_file) {
            options = options
                .add_root_certificates(ca.to_path_buf())
                .require_tls(true);
        }
        if let (Some(cert), Some(key)) =
            (given(&self.nats_client_cert), given(&self.nats_client_key))
        {
            options = options.add_client_certificate(cert.to_path_buf(), key.to_path_buf());
        }
        if self.nats_tls_first {
            options = options.tls_first();
        }
        if let Some(prefix) = self.nats_inbox.as_deref().filter(|p| !p.is_empty()) {
            options = options.custom_inbox_prefix(prefix);
        }
        Ok(options)
    }
}

/// A path that was set to something (an empty environment variable counts as unset).
fn given(path: &Option<PathBuf>) -> Option<&Path> {
    path.as_deref().filter(|p| !p.as_os_str().is_empty())
}

/// A credentials file that cannot be read, named by its path (never its contents).
fn unreadable(what: &str, path: &Path, e: std::io::Error) -> ConnectError {
    let e = std::io::Error::new(e.kind(), format!("the NATS {what} {}: {e}", path.display()));
    ConnectError::with_source(ConnectErrorKind::Io, e)
}

/// Readiness of a NATS connection: `Ok` while connected, else its state.
pub fn connected(client: &async_nats::Client) -> Result<(), String> {
    match client.connection_state() {
        async_nats::connection::State::Connected => Ok(()),
        other => Err(other.to_string()),
    }
}

/// `url` without its password, for logs and error messages.
pub fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{user}:***@{}", &url[..scheme + 3], &url[at + 1..])
        }
        _ => url.to_string(),
    }
}

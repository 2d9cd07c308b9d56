//! Connecting to NATS the way every service does: credentials in the URL
//! (`nats://user:password@host:4222`, one NATS user per service with subject
//! permissions, `deploy/nats/`), and replies received on the user's own inbox prefix
//! (a service's `CRM_NATS_INBOX`, e.g. `_INBOX.relay`) so a user may subscribe to its own
//! replies only, never to another service's.

/// Connect to `url`, replies received under `inbox` when given. `url` may list several
/// servers of a cluster, comma-separated (`nats://a:4222,nats://b:4222`); the client
/// picks one and fails over to the others.
pub async fn connect(
    url: &str,
    inbox: Option<&str>,
) -> Result<async_nats::Client, async_nats::ConnectError> {
    let mut options = async_nats::ConnectOptions::new();
    let mut servers = Vec::new();
    for one in url.split(',').map(str::trim).filter(|u| !u.is_empty()) {
        match one.parse::<async_nats::ServerAddr>() {
            Ok(addr) => servers.push(addr),
            // Let the client report the bad address in its own words.
            Err(_) => return options.connect(one).await,
        }
    }
    // The client does not take credentials from the URL by itself.
    if let Some(addr) = servers.iter().find(|a| a.username().is_some()) {
        if let (Some(user), Some(password)) = (addr.username(), addr.password()) {
            options = options.user_and_password(user.to_string(), password.to_string());
        }
    }
    if let Some(prefix) = inbox.filter(|p| !p.is_empty()) {
        options = options.custom_inbox_prefix(prefix);
    }
    options.connect(servers).await
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

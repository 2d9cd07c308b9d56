//! `crm-query`: see the library documentation.
#![forbid(unsafe_code)]

use std::net::SocketAddr;

use clap::Parser;
use crm_projections::ReadStore;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "crm-query",
    version,
    about = "Serve the read models over HTTP (JSON and CSV)"
)]
struct Args {
    /// Read-model database: postgres://… or sqlite://path.
    #[arg(long, env = "CRM_READ_URL", hide_env_values = true)]
    read_url: String,
    /// `off` for a least-privilege role: check that the schema's owner has applied the
    /// migrations (`crm db migrate`) instead of applying them.
    #[arg(long, env = "CRM_MIGRATE", default_value = "on")]
    migrate: crm_eventstore::migrations::Schema,
    #[arg(long, env = "CRM_HTTP_ADDR", default_value = "127.0.0.1:8081")]
    http_addr: SocketAddr,
    #[arg(long, env = "CRM_DB_CONNECTIONS", default_value_t = 8)]
    db_connections: u32,
    /// Event store holding the events and the customers' keys: postgres://… or
    /// sqlite://path. Without it, personal fields (names, contact texts) are answered as
    /// `[withheld]`, timeline payloads as `null`, and the audit routes refuse (503).
    #[arg(long, env = "CRM_STORE_URL", hide_env_values = true)]
    store_url: Option<String>,
    /// Connections to the event store (timeline payloads, keys, audit replay).
    #[arg(long, env = "CRM_STORE_CONNECTIONS", default_value_t = 4)]
    store_connections: u32,
    /// The IANA time zone whose days, weeks and months the funnel's and the KPIs'
    /// periods follow, unless a request names one (`tz`).
    #[arg(long, env = "CRM_TIME_ZONE", default_value = "Asia/Shanghai")]
    time_zone: crm_projections::calendar::Calendar,
    /// Seconds a shutdown (SIGTERM) waits for requests in progress.
    #[arg(long, env = "CRM_SHUTDOWN_GRACE", default_value_t = 20)]
    shutdown_grace: u64,
    /// The workbench's session key: 32 bytes as 64 hex digits (`openssl rand -hex 32`),
    /// the same on every replica. Without it, a key of this process: sessions end when
    /// it stops and are not shared between replicas.
    #[arg(long, env = "CRM_WORKBENCH_KEY", hide_env_values = true)]
    workbench_key: Option<String>,
    /// `off` only to serve the workbench over plain HTTP (its cookies are otherwise
    /// `Secure` with the `__Host-` prefix, which browsers keep only over HTTPS).
    #[arg(long, env = "CRM_WORKBENCH_SECURE_COOKIES", default_value = "on", value_parser = ["on", "off"])]
    workbench_secure_cookies: String,
    /// How long a workbench page waits, in milliseconds, for an answer that can be slow
    /// at a large book's size (conversion, time in stage, moves, complaint counts, the KPI
    /// table) before it shows the last one computed, with its time, or says it is being
    /// computed; the computation goes on either way.
    #[arg(long, env = "CRM_WORKBENCH_WAIT_MS", default_value_t = 300)]
    workbench_wait_ms: u64,
    /// The workbench's client id at the identity provider: sign-in by the
    /// authorization-code flow with PKCE against `CRM_AUTH_OIDC_DISCOVERY`'s issuer.
    #[arg(long, env = "CRM_WORKBENCH_OIDC_CLIENT_ID")]
    workbench_oidc_client_id: Option<String>,
    /// The client's secret, for a confidential client.
    #[arg(long, env = "CRM_WORKBENCH_OIDC_CLIENT_SECRET", hide_env_values = true)]
    workbench_oidc_client_secret: Option<String>,
    /// The callback registered at the provider: `https://<this service>/ui/callback`.
    #[arg(long, env = "CRM_WORKBENCH_OIDC_REDIRECT_URL")]
    workbench_oidc_redirect_url: Option<String>,
    /// Scopes asked (space-separated; `openid` is always asked).
    #[arg(
        long,
        env = "CRM_WORKBENCH_OIDC_SCOPES",
        default_value = "openid profile"
    )]
    workbench_oidc_scopes: String,
    #[command(flatten)]
    auth: crm_auth::AuthArgs,
    #[command(flatten)]
    process: crm_telemetry::ProcessArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    crm_telemetry::init_tracing(a.process.log_format);
    let store = ReadStore::connect_with(&a.read_url, a.db_connections, a.migrate).await?;
    let mut security = crm_query::Security {
        auth: a
            .auth
            .verifier("crm-query")
            .await
            .map_err(anyhow::Error::msg)?,
        ..Default::default()
    };
    security.workbench = Some(workbench(&a).await?);
    if security.auth.is_none() {
        tracing::warn!("CRM_AUTH=off: every caller is trusted; development only");
    }
    if let Some(url) = &a.store_url {
        // It appends nothing but its records of personal-data reads.
        let events =
            match crm_eventstore::AnyEventStore::connect_with(url, a.store_connections, a.migrate)
                .await?
            {
                crm_eventstore::AnyEventStore::Postgres(pg) => {
                    crm_eventstore::AnyEventStore::Postgres(pg.access_records_only())
                }
                other => other,
            };
        // No key caching: an erasure takes effect on the next request.
        security.vault = Some(std::sync::Arc::new(crm_privacy::Vault::new(
            events.clone(),
            std::time::Duration::ZERO,
        )));
        security.events = Some(events);
    }
    let (tx, rx) = tokio::sync::oneshot::channel();
    let server = tokio::spawn(crm_query::serve(
        store,
        security,
        a.time_zone,
        a.http_addr,
        crm_telemetry::shutdown_signal(),
        std::time::Duration::from_secs(a.shutdown_grace),
        tx,
    ));
    let addr = rx.await?;
    tracing::info!(%addr, "query service listening");
    a.process
        .announce_ready(&serde_json::json!({ "http": addr.to_string() }))?;
    server.await?
}

/// The workbench's settings.
async fn workbench(a: &Args) -> anyhow::Result<crm_query::web::Workbench> {
    let sealer = match &a.workbench_key {
        Some(hex) => crm_query::web::Sealer::from_hex(hex).map_err(anyhow::Error::msg)?,
        None => {
            tracing::warn!(
                "CRM_WORKBENCH_KEY is not set: workbench sessions end when this process stops \
                 and are not shared between replicas"
            );
            crm_query::web::Sealer::random()
        }
    };
    Ok(crm_query::web::Workbench {
        sealer,
        secure_cookies: a.workbench_secure_cookies == "on",
        local: None,
        oidc: oidc(a).await?.map(std::sync::Arc::new),
        wait: std::time::Duration::from_millis(a.workbench_wait_ms),
    })
}

/// The identity provider's sign-in, when a client id is set: the issuer is the one the
/// service already trusts (`CRM_AUTH_OIDC_DISCOVERY`).
async fn oidc(a: &Args) -> anyhow::Result<Option<crm_auth::oidc::OidcClient>> {
    let Some(client_id) = &a.workbench_oidc_client_id else {
        return Ok(None);
    };
    let issuer = a.auth.auth_oidc_discovery.clone().ok_or_else(|| {
        anyhow::anyhow!("CRM_WORKBENCH_OIDC_CLIENT_ID needs CRM_AUTH_OIDC_DISCOVERY (the issuer)")
    })?;
    let redirect_uri = a.workbench_oidc_redirect_url.clone().ok_or_else(|| {
        anyhow::anyhow!(
            "CRM_WORKBENCH_OIDC_REDIRECT_URL is not set (https://<this service>/ui/callback)"
        )
    })?;
    let settings = crm_auth::oidc::OidcSettings {
        issuer,
        client_id: client_id.clone(),
        client_secret: a.workbench_oidc_client_secret.clone(),
        redirect_uri,
        scopes: a.workbench_oidc_scopes.clone(),
    };
    let client = crm_auth::oidc::OidcClient::discover(settings)
        .await
        .map_err(anyhow::Error::msg)?;
    Ok(Some(client))
}

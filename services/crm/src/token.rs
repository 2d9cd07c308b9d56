//! `crm token`: issue an HS256 bearer token with the shared secret the services verify
//! with (`CRM_AUTH_HS256_SECRET`, `CRM_AUTH_ISSUER`). For operators and local use; in
//! production an identity provider issues tokens (EdDSA keys are supported too).

#[derive(Debug, clap::Args)]
pub struct TokenArgs {
    /// manager, analyst, auditor, service or admin.
    #[arg(long)]
    role: String,
    /// Who: a person's id (recorded as `person:<sub>`) or a service's name.
    #[arg(long)]
    sub: String,
    /// The service the token is for: crm-commands or crm-query.
    #[arg(long)]
    audience: String,
    /// Managers: whose customers they see.
    #[arg(long)]
    manager_id: Option<String>,
    /// Team leads: the team whose customers they also see.
    #[arg(long)]
    team: Option<String>,
    /// Services: the commands they may send (comma-separated; `*` for all).
    #[arg(long, value_delimiter = ',')]
    commands: Vec<String>,
    /// Lifetime in seconds.
    #[arg(long, default_value_t = 3600)]
    ttl: i64,
    #[arg(long, env = "CRM_AUTH_HS256_SECRET", hide_env_values = true)]
    secret: String,
    #[arg(long, env = "CRM_AUTH_ISSUER")]
    issuer: String,
}

pub fn run(a: TokenArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        a.secret.len() >= 32,
        "CRM_AUTH_HS256_SECRET must be at least 32 bytes"
    );
    let mut claims = serde_json::json!({
        "iss": a.issuer, "aud": a.audience, "sub": a.sub, "role": a.role,
        "iat": crm_auth::now_unix(), "exp": crm_auth::now_unix() + a.ttl,
    });
    if let Some(m) = a.manager_id {
        claims["manager_id"] = m.into();
    }
    if let Some(t) = a.team {
        claims["team"] = t.into();
    }
    if !a.commands.is_empty() {
        claims["commands"] = a.commands.into();
    }
    println!("{}", crm_auth::sign_hs256(a.secret.as_bytes(), &claims));
    Ok(())
}

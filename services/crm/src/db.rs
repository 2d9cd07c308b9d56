//! `crm db migrate`: apply the schema migrations as the owner, and (re)create the roles,
//! grants, views and row-level security. The services can then connect as
//! least-privilege roles with `CRM_MIGRATE=off` (docs/operations.md, "Database roles").

use anyhow::Context as _;

#[derive(Debug, clap::Subcommand)]
pub enum DbCmd {
    /// Migrate the event store and the read models (as the owner of their tables).
    Migrate(MigrateArgs),
}

#[derive(Debug, clap::Args)]
pub struct MigrateArgs {
    /// Event store: postgres://owner@…
    #[arg(long, env = "CRM_STORE_URL", hide_env_values = true)]
    store: String,
    /// Read models (may be the same database).
    #[arg(long, env = "CRM_READ_URL", hide_env_values = true)]
    read: Option<String>,
    /// Must be `on`: this command is what migrates (a service's `off` in the same
    /// environment is refused, not silently overridden).
    #[arg(long, env = "CRM_MIGRATE", default_value = "on")]
    migrate: crm_eventstore::migrations::Schema,
}

pub async fn run(cmd: DbCmd) -> anyhow::Result<()> {
    match cmd {
        DbCmd::Migrate(a) => {
            anyhow::ensure!(
                a.migrate == crm_eventstore::migrations::Schema::Migrate,
                "CRM_MIGRATE=off is set: unset it, this command is what migrates"
            );
            crm_eventstore::AnyEventStore::connect(&a.store, 2)
                .await
                .with_context(|| {
                    format!(
                        "migrating the event store at {}",
                        crm_bus::connect::redacted(&a.store)
                    )
                })?;
            println!("event store: migrated, roles and grants in place");
            if let Some(read) = &a.read {
                crm_projections::ReadStore::connect(read, 2)
                    .await
                    .with_context(|| {
                        format!(
                            "migrating the read models at {}",
                            crm_bus::connect::redacted(read)
                        )
                    })?;
                println!("read models: migrated; views, grants and row-level security in place");
            }
            Ok(())
        }
    }
}

//! `crm nats`: what a NATS operator deploys for the platform.

#[derive(Debug, clap::Subcommand)]
pub enum NatsCmd {
    /// Print the users and permissions (`auth.conf`) for a deployment's subject prefix
    /// and stream, with a user for each event consumer: `deploy/nats/auth.conf` is this
    /// command's output for the defaults.
    AuthConf(AuthConfArgs),
}

#[derive(Debug, clap::Args)]
pub struct AuthConfArgs {
    /// The services' subject prefix.
    #[arg(long, env = "CRM_SUBJECT_PREFIX", default_value = "crm")]
    prefix: String,
    /// The events stream.
    #[arg(long, env = "CRM_STREAM", default_value = "CRM_EVENTS")]
    stream: String,
    /// An event consumer of another team: a user of this name that may read the events
    /// stream through its own durable consumer of the same name, and nothing else
    /// (its password from `CRM_NATS_<NAME>_PASSWORD`). Repeat for several.
    #[arg(long = "consumer", value_name = "NAME")]
    consumers: Vec<String>,
    /// The durable-ingestion stream of commands.
    #[arg(long, env = "CRM_INTAKE", default_value = "CRM_INTAKE")]
    intake: String,
    /// The stream of the intake's outcomes.
    #[arg(long, env = "CRM_OUTCOMES", default_value = "CRM_OUTCOMES")]
    outcomes: String,
}

pub fn run(cmd: NatsCmd) -> anyhow::Result<()> {
    match cmd {
        NatsCmd::AuthConf(a) => {
            for name in a
                .consumers
                .iter()
                .chain([&a.prefix, &a.stream, &a.intake, &a.outcomes])
            {
                anyhow::ensure!(
                    !name.is_empty()
                        && name
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)),
                    "{name:?}: letters, digits, '-', '_' and '.' only"
                );
            }
            for name in &a.consumers {
                anyhow::ensure!(
                    !name.contains('.'),
                    "{name:?}: a consumer's name is one subject token (no '.')"
                );
            }
            let subjects = crm_bus::Subjects::new(a.prefix);
            print!(
                "{}",
                crm_bus::permissions::auth_conf(&crm_bus::permissions::Deployment {
                    subjects: &subjects,
                    stream: &a.stream,
                    consumers: &a.consumers,
                    intake: &a.intake,
                    outcomes: &a.outcomes,
                })
            );
            Ok(())
        }
    }
}

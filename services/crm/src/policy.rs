//! `crm policy`: the ownership policy in the event store — show the version in force,
//! list every version, check a document, publish a new version. `docs/policies.md`
//! documents every field.

use anyhow::Context as _;
use chrono::Utc;
use crm_command_handler::{CommandHandler, Envelope, HandlerConfig};
use crm_domain::policy::{
    PolicyCommand, PolicyDocument, PolicyEvent, PublishPolicy, POLICY_STREAM,
};
use crm_domain::Actor;
use crm_eventstore::{AnyEventStore, Streams};

use crate::out;

#[derive(Debug, clap::Subcommand)]
pub enum PolicyCmd {
    /// The version in force, as JSON (version 0: the built-in defaults).
    Show(Store),
    /// Every published version: number, when, by whom, why.
    History(Store),
    /// Check a policy document (JSON file, `-` for stdin) without publishing it.
    Check { file: String },
    /// Publish a policy document (JSON file, `-` for stdin) as the next version.
    Publish(Publish),
}

#[derive(Debug, clap::Args)]
pub struct Store {
    /// Event store: postgres://… or sqlite://path.
    #[arg(long, env = "CRM_STORE_URL", hide_env_values = true)]
    store: String,
    /// `off` when connecting as a least-privilege role: check the schema, do not migrate.
    #[arg(long, env = "CRM_MIGRATE", default_value = "on")]
    migrate: crm_eventstore::migrations::Schema,
}

#[derive(Debug, clap::Args)]
pub struct Publish {
    file: String,
    /// Why this version (kept with it for auditors).
    #[arg(long)]
    note: String,
    /// Who publishes: person:<id>.
    #[arg(long, default_value = "person:admin")]
    actor: Actor,
    /// Secret of the duplicate-check index, the command services'. Required on a
    /// PostgreSQL store; the embedded (SQLite) store uses the development key when unset.
    #[arg(long, env = "CRM_INDEX_KEY", hide_env_values = true)]
    index_key: Option<String>,
    #[command(flatten)]
    store: Store,
}

fn read_document(file: &str) -> anyhow::Result<PolicyDocument> {
    let text = if file == "-" {
        std::io::read_to_string(std::io::stdin())?
    } else {
        std::fs::read_to_string(file).with_context(|| format!("reading {file}"))?
    };
    let value: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{file} is not JSON"))?;
    // The text rules every command's strings meet at the ingress (docs/api.md, "Text").
    crm_contracts::wire::check_text(&value, "")
        .map_err(|e| anyhow::anyhow!("{file} is refused: {e}"))?;
    let doc: PolicyDocument = serde_json::from_value(value)
        .with_context(|| format!("{file} is not a policy document"))?;
    doc.validate()
        .map_err(|e| anyhow::anyhow!("{file} is refused: {e}"))?;
    Ok(doc)
}

async fn versions(at: &Store) -> anyhow::Result<(AnyEventStore, Vec<PolicyEvent>)> {
    let url = &at.store;
    let store = AnyEventStore::connect_with(url, 2, at.migrate)
        .await
        .with_context(|| {
            format!(
                "opening the event store at {}",
                crm_bus::connect::redacted(url)
            )
        })?;
    let events = store
        .read_stream(POLICY_STREAM, 0)
        .await?
        .iter()
        .map(|e| PolicyEvent::decode(&e.event_type, e.schema_version, &e.payload))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((store, events))
}

pub async fn run(cmd: PolicyCmd) -> anyhow::Result<()> {
    match cmd {
        PolicyCmd::Show(s) => {
            let (_, events) = versions(&s).await?;
            let (version, document) = match events.last() {
                Some(PolicyEvent::PolicyPublished(p)) => (p.version, p.document.clone()),
                None => (0, PolicyDocument::default()),
            };
            println!(
                "{}",
                serde_json::to_string_pretty(
                    &serde_json::json!({"version": version, "document": document})
                )?
            );
        }
        PolicyCmd::History(s) => {
            let (_, events) = versions(&s).await?;
            if events.is_empty() {
                out::line(format_args!(
                    "no policy published: the built-in defaults apply (version 0)"
                ));
            }
            for PolicyEvent::PolicyPublished(p) in &events {
                out::line(format_args!(
                    "v{:<3} {}  by {:<24} {} rules  {}",
                    p.version,
                    p.published_at.to_rfc3339(),
                    p.published_by.to_string(),
                    p.document.rules.len(),
                    p.note
                ));
            }
        }
        PolicyCmd::Check { file } => {
            let doc = read_document(&file)?;
            out::line(format_args!(
                "{file}: a valid policy document with {} rules",
                doc.rules.len()
            ));
        }
        PolicyCmd::Publish(p) => {
            let document = read_document(&p.file)?;
            crm_domain::text::check(&p.note, crm_domain::text::TextKind::Multiline)
                .map_err(|e| anyhow::anyhow!("--note {e}"))?;
            let (store, _) = versions(&p.store).await?;
            let embedded = p.store.store.starts_with("sqlite://");
            let index_key =
                crm_command_handler::handler::index_key(p.index_key.as_deref(), embedded)
                    .map_err(anyhow::Error::msg)?;
            let handler = CommandHandler::new(
                store,
                HandlerConfig {
                    index_key,
                    ..HandlerConfig::default()
                },
            );
            let accepted = handler
                .handle(
                    Envelope::new(p.actor, Utc::now()),
                    PolicyCommand::Publish(PublishPolicy {
                        document,
                        note: p.note,
                    })
                    .into(),
                )
                .await
                .map_err(|e| anyhow::anyhow!("refused ({}): {e}", e.code()))?;
            let version = accepted.events.first().map_or(0, |e| e.stream_version);
            out::line(format_args!(
                "published policy version {version} (command {})",
                accepted.command_id
            ));
        }
    }
    Ok(())
}

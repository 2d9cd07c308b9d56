//! `crm audit`: answers for auditors, replayed from the event store (never from read
//! models): a customer's ownership history and its owner as of an instant, a manager's
//! customers over a period. `docs/audit.md` is the guide.

use std::io::Write as _;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use crm_audit::{customer_history, manager_history, owner_as_of, OwnershipEntry};
use crm_domain::{CustomerId, ManagerId};
use crm_eventstore::AnyEventStore;

#[derive(Debug, clap::Subcommand)]
pub enum AuditCmd {
    /// Every change of a customer's owner: when, from whom to whom, who decided, why
    /// (reason, policy version and rule), command id and log position; with --as-of, the
    /// owner at that instant.
    Ownership(OwnershipArgs),
    /// A manager's customers over a period: held at the start, every change, held at the
    /// end.
    Manager(ManagerArgs),
}

#[derive(Debug, clap::Args)]
pub struct Store {
    /// Event store: postgres://… or sqlite://path.
    #[arg(long, env = "CRM_STORE_URL")]
    store: String,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
pub struct OwnershipArgs {
    customer: CustomerId,
    /// An RFC 3339 instant, e.g. 2026-11-25T10:30:00+08:00.
    #[arg(long)]
    as_of: Option<DateTime<Utc>>,
    #[command(flatten)]
    store: Store,
}

#[derive(Debug, clap::Args)]
pub struct ManagerArgs {
    manager: ManagerId,
    /// Start of the period (RFC 3339, included).
    #[arg(long)]
    from: DateTime<Utc>,
    /// End of the period (RFC 3339, excluded).
    #[arg(long)]
    to: DateTime<Utc>,
    #[command(flatten)]
    store: Store,
}

async fn open(url: &str) -> anyhow::Result<AnyEventStore> {
    AnyEventStore::connect(url, 2)
        .await
        .with_context(|| format!("opening the event store at {url}"))
}

fn who(m: Option<ManagerId>) -> String {
    m.map_or_else(|| "(pool)".to_string(), |m| m.to_string())
}

fn print_entries(entries: &[OwnershipEntry]) {
    for e in entries {
        println!(
            "{}  {:<21} {} → {}",
            e.at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            e.event_type,
            who(e.previous_owner),
            who(e.new_owner)
        );
        let mut why = format!("    by {}", e.actor);
        if let Some(r) = &e.reason {
            why.push_str(&format!("; reason: {r}"));
        }
        if let Some(d) = &e.decision {
            why.push_str(&format!("; policy v{}", d.policy_version));
            if let (Some(rule), Some(method)) = (&d.rule, &d.method) {
                why.push_str(&format!(", rule {rule:?} ({method})"));
            }
            if let (Some(rule), Some(due)) = (&d.pool_rule, d.due_at) {
                why.push_str(&format!(", pool rule {rule} due {}", due.to_rfc3339()));
            }
        }
        println!("{why}");
        println!(
            "    command {}, event {} (stream version {}, log position {})",
            e.command_id, e.event_id, e.stream_version, e.position
        );
    }
}

pub async fn run(cmd: AuditCmd) -> anyhow::Result<()> {
    match cmd {
        AuditCmd::Ownership(a) => {
            let store = open(&a.store.store).await?;
            let entries = customer_history(&store, a.customer).await?;
            match a.as_of {
                Some(t) => {
                    let answer = owner_as_of(&entries, t);
                    if a.store.json {
                        println!("{}", serde_json::to_string_pretty(&answer)?);
                    } else {
                        println!(
                            "customer {} as of {}: {}",
                            a.customer,
                            t.to_rfc3339(),
                            answer.owner.map_or_else(
                                || "no owner (in the pool, or not yet registered)".to_string(),
                                |m| format!("owned by {m}")
                            )
                        );
                        if let Some(since) = &answer.since {
                            println!("since:");
                            print_entries(std::slice::from_ref(since));
                        }
                    }
                }
                None if a.store.json => println!("{}", serde_json::to_string_pretty(&entries)?),
                None => {
                    println!(
                        "customer {}: {} ownership changes, replayed from the event store",
                        a.customer,
                        entries.len()
                    );
                    print_entries(&entries);
                }
            }
        }
        AuditCmd::Manager(a) => {
            anyhow::ensure!(a.from < a.to, "--from must be before --to");
            let store = open(&a.store.store).await?;
            let started = std::time::Instant::now();
            let history = manager_history(&store, a.manager, a.from, a.to, &mut |n| {
                if !a.store.json {
                    eprint!("\r  {n} events replayed");
                    let _ = std::io::stderr().flush();
                }
            })
            .await?;
            if !a.store.json {
                eprintln!(
                    "\r  {} events replayed in {:.1} s",
                    history.events_read,
                    started.elapsed().as_secs_f64()
                );
            }
            if a.store.json {
                println!("{}", serde_json::to_string_pretty(&history)?);
            } else {
                println!(
                    "manager {} from {} to {}",
                    a.manager,
                    a.from.to_rfc3339(),
                    a.to.to_rfc3339()
                );
                println!("held at the start: {} customers", history.held_before.len());
                println!("changes: {}", history.entries.len());
                print_entries(&history.entries);
                println!("held at the end: {} customers", history.held_at_end.len());
            }
        }
    }
    Ok(())
}

//! `crm audit`: answers for auditors, replayed from the event store (never from read
//! models): a customer's ownership history and its owner as of an instant, a manager's
//! customers over a period. `docs/audit.md` is the guide.

use std::io::Write as _;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use crm_audit::{customer_history, manager_history, owner_as_of, OwnershipEntry};
use crm_domain::{CustomerId, ManagerId};
use crm_eventstore::{AnyEventStore, ChainHash};

use crate::out;

#[derive(Debug, clap::Subcommand)]
pub enum AuditCmd {
    /// Every change of a customer's owner: when, from whom to whom, who decided, why
    /// (reason, policy version and rule), command id and log position; with --as-of, the
    /// owner at that instant.
    Ownership(OwnershipArgs),
    /// A manager's customers over a period: held at the start, every change, held at the
    /// end.
    Manager(ManagerArgs),
    /// Check every stream's hash chain and every global checkpoint; name the first event
    /// that was altered, deleted, inserted or moved. Exits with status 1 when anything
    /// is wrong.
    Verify(VerifyArgs),
    /// Seal the events not yet covered by a global checkpoint (the relay does this
    /// periodically; this is for the embedded store and for an auditor before export).
    Checkpoint(CheckpointArgs),
    /// Write a self-contained SQLite file with the events and global checkpoints of a
    /// period, verifiable and replayable offline: `crm audit verify|ownership|manager
    /// --store sqlite://FILE`.
    Export(ExportArgs),
    /// Who read personal data: every answer of the query service that showed it to a
    /// person (reader, role, route, customers, fields, when), replayed from the event
    /// store; filter by customer, reader and period.
    Reads(ReadsArgs),
}

#[derive(Debug, clap::Args)]
pub struct ReadsArgs {
    /// Only the reads of this customer's personal data.
    #[arg(long)]
    customer: Option<CustomerId>,
    /// Only this reader's reads (`person:<id>`).
    #[arg(long)]
    reader: Option<String>,
    /// From this instant (RFC 3339, included).
    #[arg(long)]
    from: Option<DateTime<Utc>>,
    /// Until this instant (RFC 3339, excluded).
    #[arg(long)]
    to: Option<DateTime<Utc>>,
    #[command(flatten)]
    store: Store,
}

/// `crm audit reads`: the records, one line each (or JSON).
async fn reads(a: ReadsArgs) -> anyhow::Result<()> {
    let store = open(&a.store).await?;
    let filter = crm_audit::ReadFilter {
        customer: a.customer.map(|c| c.to_string()),
        reader: a.reader,
        from: a.from,
        to: a.to,
    };
    let json = a.store.json;
    let records = crm_audit::personal_data_reads(&store, &filter, &mut |n| {
        if !json {
            eprint!("\r  {n} events replayed");
            let _ = std::io::stderr().flush();
        }
    })
    .await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&records)?);
        return Ok(());
    }
    eprintln!();
    out::line(format_args!(
        "{} answers showed personal data",
        records.len()
    ));
    for r in &records {
        let customers = match (&filter.customer, r.customers.len()) {
            (Some(c), n) if n > 1 => format!("{c} (and {} others in the same answer)", n - 1),
            _ => r.customers.join(", "),
        };
        out::line(format_args!(
            "{}  {} ({}) via {}: {} [{}]",
            r.at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            r.reader,
            r.role,
            r.route,
            customers,
            if r.fields.is_empty() {
                "fields not recorded".to_string()
            } else {
                r.fields.join(", ")
            }
        ));
    }
    Ok(())
}

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// Start of the period (RFC 3339): checkpoints sealed from then on. Default: the
    /// beginning of the log.
    #[arg(long)]
    from: Option<DateTime<Utc>>,
    /// End of the period (RFC 3339): up to the first checkpoint sealed at or after it.
    /// Default: every checkpoint.
    #[arg(long)]
    to: Option<DateTime<Utc>>,
    /// The file to write (must not exist).
    #[arg(long)]
    out: std::path::PathBuf,
    #[command(flatten)]
    store: Store,
}

#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// A checkpoint hash kept outside the database, as SEQ:HASH (repeatable): verify
    /// fails if the stored checkpoint differs (a history rewritten with new hashes).
    #[arg(long = "expect", value_parser = parse_anchor)]
    expect: Vec<(u64, ChainHash)>,
    /// Who verifies (`person:<id>`, or `system:<job>` for a scheduled run): recorded with
    /// the result.
    #[arg(long, default_value = "system:crm-audit-verify")]
    actor: crm_domain::Actor,
    /// Do not record the result in the store (the workbench shows the last recorded
    /// one). An audit export (`sqlite://` file written by `crm audit export`) is never
    /// written to.
    #[arg(long)]
    no_record: bool,
    #[command(flatten)]
    store: Store,
}

#[derive(Debug, clap::Args)]
pub struct CheckpointArgs {
    /// Most events sealed by one checkpoint.
    #[arg(long, default_value_t = crm_audit::DEFAULT_EVENTS_PER_CHECKPOINT)]
    events_per_checkpoint: usize,
    #[command(flatten)]
    store: Store,
}

fn parse_anchor(s: &str) -> Result<(u64, ChainHash), String> {
    let (seq, hash) = s
        .split_once(':')
        .ok_or_else(|| format!("{s:?} is not SEQ:HASH"))?;
    let seq = seq
        .parse()
        .map_err(|_| format!("{seq:?} is not a checkpoint number"))?;
    Ok((seq, hash.parse()?))
}

#[derive(Debug, clap::Args)]
pub struct Store {
    /// Event store: postgres://… or sqlite://path.
    #[arg(long, env = "CRM_STORE_URL", hide_env_values = true)]
    store: String,
    /// `off` when connecting as a least-privilege role: check the schema, do not migrate.
    #[arg(long, env = "CRM_MIGRATE", default_value = "on")]
    migrate: crm_eventstore::migrations::Schema,
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

async fn open(store: &Store) -> anyhow::Result<AnyEventStore> {
    let url = &store.store;
    AnyEventStore::connect_with(url, 2, store.migrate)
        .await
        .with_context(|| {
            format!(
                "opening the event store at {}",
                crm_bus::connect::redacted(url)
            )
        })
}

fn who(m: Option<ManagerId>) -> String {
    m.map_or_else(|| "(pool)".to_string(), |m| m.to_string())
}

fn print_entries(entries: &[OwnershipEntry]) {
    for e in entries {
        out::line(format_args!(
            "{}  {:<21} {} → {}",
            e.at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            e.event_type,
            who(e.previous_owner),
            who(e.new_owner)
        ));
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
        out::line(format_args!("{why}"));
        out::line(format_args!(
            "    command {}, event {} (stream version {}, log position {})",
            e.command_id, e.event_id, e.stream_version, e.position
        ));
    }
}

pub async fn run(cmd: AuditCmd) -> anyhow::Result<()> {
    match cmd {
        AuditCmd::Ownership(a) => ownership(a).await?,
        AuditCmd::Reads(a) => reads(a).await?,
        AuditCmd::Manager(a) => manager(a).await?,
        AuditCmd::Verify(a) => verify(a).await?,
        AuditCmd::Checkpoint(a) => checkpoint(a).await?,
        AuditCmd::Export(a) => export(a).await?,
    }
    Ok(())
}

async fn ownership(a: OwnershipArgs) -> anyhow::Result<()> {
    let store = open(&a.store).await?;
    let entries = customer_history(&store, a.customer).await?;
    match a.as_of {
        Some(t) => {
            let answer = owner_as_of(&entries, t);
            if a.store.json {
                println!("{}", serde_json::to_string_pretty(&answer)?);
            } else {
                out::line(format_args!(
                    "customer {} as of {}: {}",
                    a.customer,
                    t.to_rfc3339(),
                    answer.owner.map_or_else(
                        || "no owner (in the pool, or not yet registered)".to_string(),
                        |m| format!("owned by {m}")
                    )
                ));
                if let Some(since) = &answer.since {
                    out::line(format_args!("since:"));
                    print_entries(std::slice::from_ref(since));
                }
            }
        }
        None if a.store.json => println!("{}", serde_json::to_string_pretty(&entries)?),
        None => {
            out::line(format_args!(
                "customer {}: {} ownership changes, replayed from the event store",
                a.customer,
                entries.len()
            ));
            print_entries(&entries);
        }
    }
    Ok(())
}

async fn manager(a: ManagerArgs) -> anyhow::Result<()> {
    anyhow::ensure!(a.from < a.to, "--from must be before --to");
    let store = open(&a.store).await?;
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
        out::line(format_args!(
            "manager {} from {} to {}",
            a.manager,
            a.from.to_rfc3339(),
            a.to.to_rfc3339()
        ));
        out::line(format_args!(
            "held at the start: {} customers",
            history.held_before.len()
        ));
        out::line(format_args!("changes: {}", history.entries.len()));
        print_entries(&history.entries);
        out::line(format_args!(
            "held at the end: {} customers",
            history.held_at_end.len()
        ));
    }
    Ok(())
}

async fn verify(a: VerifyArgs) -> anyhow::Result<()> {
    let store = open(&a.store).await?.verification_records_only();
    let started = std::time::Instant::now();
    let json = a.store.json;
    let export = match a.store.store.strip_prefix("sqlite://") {
        Some(path) => crm_audit::read_export(std::path::Path::new(path)).await?,
        None => None,
    };
    let record = !a.no_record && export.is_none();
    let options = match export {
        Some((manifest, bases)) => {
            if !json {
                print_manifest(&manifest);
            }
            crm_audit::export::verify_options(&manifest, bases, a.expect)
        }
        None => crm_audit::VerifyOptions {
            expect: a.expect,
            ..Default::default()
        },
    };
    let report = crm_audit::verify(&store, &options, &mut |n| {
        if !json {
            eprint!("\r  {n} events checked");
            let _ = std::io::stderr().flush();
        }
    })
    .await?;
    let took = started.elapsed();
    let secs = took.as_secs_f64();
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        eprintln!(
            "\r  {} events checked in {secs:.1} s ({:.0} events/s)",
            report.events,
            report.events as f64 / secs.max(1e-9)
        );
        print_verify(&report);
    }
    if record {
        record_result(&store, &report, took, &a.actor).await?;
    }
    if !report.ok() {
        std::process::exit(1);
    }
    Ok(())
}

/// Keep the result in the store, where the workbench shows the last one.
async fn record_result(
    store: &AnyEventStore,
    report: &crm_audit::VerifyReport,
    took: std::time::Duration,
    actor: &crm_domain::Actor,
) -> anyhow::Result<()> {
    let result = crm_audit::verification::Verification::of(report, took);
    let outcome = if report.ok() { "passed" } else { "failed" };
    let n = crm_audit::verification::record(store, &result, &actor.to_string(), chrono::Utc::now())
        .await
        .with_context(|| {
            format!("the verification {outcome}, but its result could not be recorded (--no-record skips recording)")
        })?;
    eprintln!("  recorded as verification #{n} by {actor}");
    Ok(())
}

async fn checkpoint(a: CheckpointArgs) -> anyhow::Result<()> {
    let store = open(&a.store).await?;
    let json = a.store.json;
    let sealed = crm_audit::seal_pending(&store, a.events_per_checkpoint, &mut |c| {
        if !json {
            out::line(format_args!(
                "checkpoint #{} seals {} events ({} – {}): {}",
                c.seq, c.event_count, c.after, c.through, c.hash
            ));
        }
    })
    .await?;
    if json {
        let summary: Vec<_> = sealed
            .iter()
            .map(|c| {
                serde_json::json!({
                    "seq": c.seq, "after": c.after.to_string(),
                    "through": c.through.to_string(),
                    "event_count": c.event_count, "hash": c.hash,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else if sealed.is_empty() {
        out::line(format_args!(
            "nothing to seal: every visible event is under a checkpoint"
        ));
    }
    Ok(())
}

async fn export(a: ExportArgs) -> anyhow::Result<()> {
    if let (Some(f), Some(t)) = (a.from, a.to) {
        anyhow::ensure!(f < t, "--from must be before --to");
    }
    let store = open(&a.store).await?;
    let json = a.store.json;
    let manifest = crm_audit::export(&store, &a.store.store, a.from, a.to, &a.out, &mut |c, n| {
        if !json {
            eprint!("\r  checkpoint #{} copied, {n} events", c.seq);
            let _ = std::io::stderr().flush();
        }
    })
    .await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&manifest)?);
    } else {
        eprintln!();
        out::line(format_args!("wrote {}", a.out.display()));
        print_manifest(&manifest);
        out::line(format_args!(
            "verify it offline: crm audit verify --store sqlite://{}",
            a.out.display()
        ));
    }
    Ok(())
}

fn print_manifest(m: &crm_audit::ExportManifest) {
    let when = |t: Option<DateTime<Utc>>, default: &str| {
        t.map_or_else(|| default.to_string(), |t| t.to_rfc3339())
    };
    out::line(format_args!(
        "audit export of {} made {}: period {} to {}",
        m.source,
        m.exported_at.to_rfc3339(),
        when(m.from, "the beginning"),
        when(m.to, "the export")
    ));
    out::line(format_args!(
        "  {} events in {} streams, global checkpoints #{}–#{} (last hash {})",
        m.events, m.streams, m.first_checkpoint, m.last_checkpoint, m.last_hash
    ));
    if m.first_checkpoint > 1 {
        out::line(format_args!(
            "  starts after checkpoint #{} with hash {}: compare with a hash kept from the source",
            m.first_checkpoint - 1,
            m.first_prev_hash
        ));
    }
}

fn print_verify(r: &crm_audit::VerifyReport) {
    out::line(format_args!(
        "{} events in {} streams; {} global checkpoints seal {} of them, {} are after the last checkpoint",
        r.events, r.streams, r.checkpoints, r.sealed_events, r.unsealed_events
    ));
    if let Some((seq, hash)) = r.head {
        out::line(format_args!("last checkpoint: #{seq} {hash}"));
        out::line(format_args!(
            "  keep it outside the database; later: crm audit verify --expect {seq}:{hash}"
        ));
    }
    if r.ok() {
        out::line(format_args!("OK: every hash chain and checkpoint verifies"));
        return;
    }
    out::line(format_args!(
        "FAILED: {} problems; the first bad event:",
        r.problems.len()
    ));
    for (i, p) in r.problems.iter().enumerate().take(20) {
        out::line(format_args!("{}{p}", if i == 0 { "  → " } else { "    " }));
    }
    if r.problems.len() > 20 {
        out::line(format_args!(
            "    … and {} more (--json lists all)",
            r.problems.len() - 20
        ));
    }
}

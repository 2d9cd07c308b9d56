//! `crm projections`: list, rebuild and verify the read models.

use std::io::Write as _;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use crm_bus::connect::redacted;
use crm_eventstore::AnyEventStore;
use crm_projections::calendar::Calendar;
use crm_projections::rebuild::{self, Progress};
use crm_projections::schema::{self, PROJECTIONS};
use crm_projections::ReadStore;

#[derive(Debug, clap::Subcommand)]
pub enum ProjectionsCmd {
    /// The read models and their tables.
    List,
    /// Rebuild a read model from the event store into fresh tables and switch over;
    /// queries keep working.
    Rebuild(Target),
    /// Rebuild a read model into scratch tables and compare every row with the live one;
    /// exits with status 1 if any row differs.
    Verify(Target),
}

#[derive(Debug, clap::Args)]
pub struct Target {
    /// ownership, timeline or analytics.
    name: String,
    /// Event store: postgres://… or sqlite://path.
    #[arg(long, env = "CRM_STORE_URL", hide_env_values = true)]
    store: String,
    /// Read models: postgres://… or sqlite://path (default: the event store's database).
    #[arg(long, env = "CRM_READ_URL", hide_env_values = true)]
    read: Option<String>,
    /// `off` when connecting as a least-privilege role: check the schema, do not migrate.
    #[arg(long, env = "CRM_MIGRATE", default_value = "on")]
    migrate: crm_eventstore::migrations::Schema,
    /// analytics: count the KPI ledger's and the funnel's days in this IANA time zone from
    /// now on (the query service's `CRM_TIME_ZONE`; as it was, if not given).
    #[arg(long, value_name = "ZONE")]
    time_zone: Option<Calendar>,
}

pub async fn run(cmd: ProjectionsCmd) -> anyhow::Result<()> {
    match cmd {
        ProjectionsCmd::List => {
            for p in PROJECTIONS {
                println!("{:<10} {}", p.name, p.about);
                println!("{:<10} tables: {}", "", p.table_names().join(", "));
            }
            Ok(())
        }
        ProjectionsCmd::Rebuild(t) => {
            let (store, read, projection) = open(&t).await?;
            if let Some(zone) = t.time_zone {
                anyhow::ensure!(
                    projection.model == schema::Model::Analytics,
                    "--time-zone is the analytics read model's; {} counts no days",
                    projection.name
                );
                if read.set_ledger_zone(zone).await? {
                    println!("analytics counts {zone} days from now on: KPIs in them are answered from the facts until this rebuild is done");
                }
            }
            let mut bar = Bar::new("rebuilding");
            let r = rebuild::rebuild(&store, &read, projection, &mut |p| bar.show(p)).await?;
            bar.finish();
            println!(
                "rebuilt {}: {} events read, {} applied ({} in the switch-over); {:.2} s to fill (of which {:.2} s waiting for the transactions in flight at the start, {:.2} s for keys and the rows kept in memory), {:.3} s to switch over",
                r.projection,
                r.events_read,
                r.events_applied,
                r.caught_up_in_switch,
                r.fill_seconds,
                r.settle_seconds,
                r.keys_seconds,
                r.switch_seconds
            );
            Ok(())
        }
        ProjectionsCmd::Verify(t) => {
            anyhow::ensure!(t.time_zone.is_none(), "--time-zone is for a rebuild");
            let (store, read, projection) = open(&t).await?;
            let mut bar = Bar::new("verifying");
            let r = rebuild::verify(&store, &read, projection, &mut |p| bar.show(p)).await?;
            bar.finish();
            for table in &r.tables {
                println!(
                    "{:<24} live {:>9} rows, rebuilt {:>9} rows, {} differing",
                    table.table, table.live_rows, table.rebuilt_rows, table.differing
                );
                for e in &table.examples {
                    crate::out::line(format_args!("    {e}"));
                }
            }
            println!(
                "verified {} against {} events: {} differing rows",
                r.projection,
                r.events_read,
                r.differing()
            );
            if r.differing() > 0 {
                std::process::exit(1);
            }
            Ok(())
        }
    }
}

async fn open(t: &Target) -> anyhow::Result<(AnyEventStore, ReadStore, schema::Projection)> {
    let projection = schema::by_name(&t.name).with_context(|| {
        format!(
            "no read model {:?}; there are: {}",
            t.name,
            PROJECTIONS.map(|p| p.name).join(", ")
        )
    })?;
    let store = AnyEventStore::connect_with(&t.store, 4, t.migrate)
        .await
        .with_context(|| format!("opening the event store at {}", redacted(&t.store)))?;
    let read_url = t.read.as_deref().unwrap_or(&t.store);
    let read = ReadStore::connect_with(read_url, 4, t.migrate)
        .await
        .with_context(|| format!("opening the read models at {}", redacted(read_url)))?;
    Ok((store, read, projection))
}

/// A progress bar on stderr, redrawn at most ten times a second.
struct Bar {
    label: &'static str,
    last: Option<Instant>,
    drawn: bool,
}

impl Bar {
    fn new(label: &'static str) -> Self {
        Self {
            label,
            last: None,
            drawn: false,
        }
    }

    fn show(&mut self, p: Progress) {
        if self
            .last
            .is_some_and(|t| t.elapsed() < Duration::from_millis(100))
            && p.done < p.total
        {
            return;
        }
        self.last = Some(Instant::now());
        self.drawn = true;
        let ratio = if p.total == 0 {
            1.0
        } else {
            p.done as f64 / p.total as f64
        };
        let width = 30;
        let filled = (ratio * width as f64).round() as usize;
        let rate = p.done as f64 / p.elapsed.as_secs_f64().max(1e-3);
        let eta = (p.total.saturating_sub(p.done)) as f64 / rate.max(1.0);
        eprint!(
            "\r{} [{}{}] {:>5.1}% {}/{} events, {:.0}/s, eta {:.0} s   ",
            self.label,
            "#".repeat(filled.min(width)),
            ".".repeat(width - filled.min(width)),
            ratio * 100.0,
            p.done,
            p.total,
            rate,
            eta
        );
        let _ = std::io::stderr().flush();
    }

    fn finish(&self) {
        if self.drawn {
            eprintln!();
        }
    }
}

//! `crm demo`: a scripted day at a bank, in one process on the embedded SQLite store.
//! Managers in four regions and an ownership policy; a few hundred customers registered
//! (some twice, under another spelling of their phone) and assigned by the policy or by
//! their team lead, contacted, complaining, buying, transferred, released to the pool and
//! claimed; some commands break rules on purpose; the scheduler watches the complaint
//! clocks. Then a hundred quieter days go by, compressed, so the pool rules and dormancy
//! act. Afterwards the per-customer state is replayed from the event store and printed
//! with a summary of the event log, and the read models are built and shown.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context as _;
use chrono::{DateTime, Duration, TimeZone, Utc};
use crm_command_handler::{CommandError, CommandHandler, Envelope, HandlerConfig};
use crm_domain::customer::*;
use crm_domain::manager::{DeactivateManager, ManagerCommand, RegisterManager};
use crm_domain::policy::{
    AssignmentRule, Conditions, Distribution, PolicyCommand, PolicyDocument, PoolRules,
    ProtectionRules, PublishPolicy,
};
use crm_domain::*;
use crm_eventstore::sqlite::SqliteEventStore;
use crm_eventstore::{EventStore, Log, LogPosition, Lookups, Streams};
use crm_scheduler::{Scheduler, TickReport};
use futures::future::join_all;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use uuid::Uuid;

#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Customers to register.
    #[arg(long, default_value_t = 300)]
    customers: usize,
    /// Seed of the day's randomness: the same seed plays the same day.
    #[arg(long, default_value_t = 20261125)]
    seed: u64,
    /// Keep the event store in this SQLite file (default: a temporary file, removed).
    #[arg(long)]
    db: Option<PathBuf>,
    /// Customers to list in the state table (0 = all).
    #[arg(long, default_value_t = 0)]
    show: usize,
    /// After the day, serve the workbench (and the query API) on `--serve-addr` until
    /// Ctrl-C, with a sign-in as any of the day's people.
    #[arg(long)]
    serve: bool,
    /// Where `--serve` listens (port 0: any free port; the URL is printed).
    #[arg(long, default_value = "127.0.0.1:8080")]
    serve_addr: std::net::SocketAddr,
}

const REGIONS: [&str; 4] = ["east", "north", "south", "west"];
const SURNAMES: [&str; 12] = [
    "王", "李", "张", "刘", "陈", "杨", "黄", "赵", "吴", "周", "徐", "孙",
];
const GIVEN: [&str; 12] = [
    "芳", "伟", "娜", "敏", "静", "强", "磊", "洋", "艳", "勇", "军", "杰",
];
const MANAGER_NAMES: [&str; 8] = [
    "Li Wei",
    "Zhang Min",
    "Wang Jun",
    "Liu Yang",
    "Chen Jing",
    "Zhao Lei",
    "Sun Li",
    "Zhou Tao",
];

pub(crate) struct Manager {
    pub(crate) id: ManagerId,
    pub(crate) name: String,
    pub(crate) region: &'static str,
    pub(crate) team: String,
    pub(crate) lead: bool,
    limit: u32,
}

struct Customer {
    id: CustomerId,
    region: &'static str,
    phone: String,
    sms: bool,
    owner: Option<usize>,
    /// Won (stage customer or later), as last read back from the store.
    won: bool,
    /// Each complaint with the step the script believes it is at (0 logged, 1 answered,
    /// 2 resolved, 3 closed).
    complaints: Vec<(ComplaintId, u8)>,
}

#[derive(Default)]
struct Tally {
    accepted: BTreeMap<&'static str, u64>,
    refused: BTreeMap<(&'static str, &'static str), u64>,
}

struct Day {
    handler: CommandHandler<SqliteEventStore>,
    scheduler: Scheduler<SqliteEventStore>,
    timers: TickReport,
    tally: Tally,
    clock: DateTime<Utc>,
    rng: SmallRng,
}

impl Day {
    /// Let the scheduler act on whatever is due at `at`.
    async fn schedule(&mut self, at: DateTime<Utc>) -> anyhow::Result<()> {
        let r = self.scheduler.tick(at).await?;
        self.timers.applied += r.applied;
        self.timers.due += r.due;
        self.timers.not_due += r.not_due;
        self.timers.failed += r.failed;
        Ok(())
    }

    fn tick(&mut self, minutes: i64) -> DateTime<Utc> {
        self.clock += Duration::seconds(self.rng.gen_range(0..minutes.max(1) * 60));
        self.clock
    }

    /// Run commands concurrently (they share group-commit transactions), as the branch
    /// systems would send them; returns each result.
    async fn run(&mut self, batch: Vec<(Actor, Command)>) -> Vec<Result<(), CommandError>> {
        let at = self.tick(3);
        let futures = batch.into_iter().map(|(actor, command)| {
            let h = self.handler.clone();
            let name = command.name();
            async move {
                (
                    name,
                    h.handle(Envelope::new(actor, at), command)
                        .await
                        .map(|_| ()),
                )
            }
        });
        let results = join_all(futures).await;
        results
            .into_iter()
            .map(|(name, r)| {
                match &r {
                    Ok(()) => *self.tally.accepted.entry(name).or_default() += 1,
                    Err(e) => *self.tally.refused.entry((name, e.code())).or_default() += 1,
                }
                r
            })
            .collect()
    }
}

fn id() -> Uuid {
    Uuid::now_v7()
}

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let (path, temporary) = match &args.db {
        Some(p) => (p.clone(), false),
        None => (
            std::env::temp_dir().join(format!("crm-demo-{}.db", id().simple())),
            true,
        ),
    };
    if path.exists() {
        anyhow::bail!(
            "{} exists; the demo writes a fresh store (choose another --db)",
            path.display()
        );
    }
    let store = SqliteEventStore::open(&path)
        .await
        .with_context(|| format!("opening the embedded store at {}", path.display()))?;
    let mut day = Day {
        handler: CommandHandler::new(store.clone(), HandlerConfig::default()),
        scheduler: Scheduler::new(
            store.clone(),
            CommandHandler::new(store.clone(), HandlerConfig::default()),
            "scheduler",
        ),
        timers: TickReport::default(),
        tally: Tally::default(),
        clock: Utc.with_ymd_and_hms(2026, 11, 25, 0, 30, 0).unwrap(), // 08:30 in Shanghai
        rng: SmallRng::seed_from_u64(args.seed),
    };
    let day_start = day.clock;
    let admin = Actor::person("admin");
    println!(
        "crm demo: one day at a bank, seed {}, embedded store {}",
        args.seed,
        path.display()
    );

    // 08:30 — the org: 4 regions × 2 teams × 3 managers.
    let mut managers = Vec::new();
    let mut batch = Vec::new();
    for (r, region) in REGIONS.iter().enumerate() {
        for team in 0..2 {
            for k in 0..3 {
                let n = r * 6 + team * 3 + k;
                let limit = if k == 0 { 12 } else { 25 };
                let m = Manager {
                    id: ManagerId::new(id()),
                    name: format!("{} ({region}-{})", MANAGER_NAMES[n % 8], team + 1),
                    region,
                    team: format!("{region}-{}", team + 1),
                    lead: k == 0,
                    limit,
                };
                batch.push((
                    admin.clone(),
                    ManagerCommand::Register(RegisterManager {
                        manager_id: m.id,
                        name: m.name.clone(),
                        role: if k == 0 {
                            ManagerRole::TeamLead
                        } else {
                            ManagerRole::Manager
                        },
                        team: format!("{region}-{}", team + 1).parse()?,
                        region: region.parse()?,
                        branch: format!("{region}-branch").parse()?,
                        holding_limit: limit,
                    })
                    .into(),
                ));
                managers.push(m);
            }
        }
    }
    day.run(batch).await;
    println!(
        "  08:30  {} managers in {} regions registered",
        managers.len(),
        REGIONS.len()
    );
    // The ownership policy: web and app leads go to the region's first team in turn,
    // everyone else to the least loaded manager of the second team.
    let mut rules = Vec::new();
    for region in REGIONS {
        rules.push(AssignmentRule {
            name: format!("{region} digital leads"),
            when: Conditions {
                regions: vec![region.parse()?],
                channels: vec![FirstTouchChannel::Web, FirstTouchChannel::App],
                ..Conditions::default()
            },
            team: format!("{region}-1").parse()?,
            method: Distribution::RoundRobin,
        });
        rules.push(AssignmentRule {
            name: format!("{region} branch and partners"),
            when: Conditions {
                regions: vec![region.parse()?],
                channels: vec![FirstTouchChannel::Partner, FirstTouchChannel::Referral],
                ..Conditions::default()
            },
            team: format!("{region}-2").parse()?,
            method: Distribution::LeastLoaded,
        });
    }
    let policy = PolicyDocument {
        rules,
        protection: ProtectionRules {
            first_touch_days: 14,
            ..ProtectionRules::default()
        },
        pool: PoolRules {
            daily_claim_cap: 5,
            ..PoolRules::default()
        },
        utc_offset_minutes: 480,
        ..PolicyDocument::default()
    };
    day.run(vec![(
        admin.clone(),
        PolicyCommand::Publish(PublishPolicy {
            document: policy,
            note: "regional routing, 14-day first-touch protection".into(),
        })
        .into(),
    )])
    .await;
    println!("  08:45  ownership policy v1 published (8 rules; web/app and partner leads are routed on registration)");

    // 09:00–10:30 — registrations from the branch, app, web and partners; some people
    // come twice (another spelling of the same phone) and are caught.
    let mut customers: Vec<Customer> = Vec::new();
    let branch_system = Actor::service("branch-system");
    for chunk_start in (0..args.customers).step_by(16) {
        let mut batch = Vec::new();
        for i in chunk_start..(chunk_start + 16).min(args.customers) {
            let region = REGIONS[day.rng.gen_range(0..REGIONS.len())];
            let enterprise = day.rng.gen_bool(0.15);
            let phone = format!(
                "1{}{:09}",
                [3, 5, 8][i % 3],
                100_000_000 + i * 7919 % 899_999_999
            );
            let sms = day.rng.gen_bool(0.6);
            let c = Customer {
                id: CustomerId::new(id()),
                region,
                phone: phone.clone(),
                sms,
                owner: None,
                won: false,
                complaints: Vec::new(),
            };
            let name = if enterprise {
                format!("{}{}科技有限公司", SURNAMES[i % 12], GIVEN[(i / 12) % 12])
            } else {
                format!("{}{}", SURNAMES[i % 12], GIVEN[(i / 12) % 12])
            };
            batch.push((
                branch_system.clone(),
                register_cmd(&c, name, enterprise, i, &mut day.rng)?,
            ));
            customers.push(c);
        }
        // A returning person under another spelling of a phone already registered.
        if chunk_start > 0 && day.rng.gen_bool(0.5) {
            let twin = &customers[day.rng.gen_range(0..chunk_start)];
            let spelled = format!(
                "+86 {}-{}-{}",
                &twin.phone[..3],
                &twin.phone[3..7],
                &twin.phone[7..]
            );
            let dup = Customer {
                id: CustomerId::new(id()),
                region: twin.region,
                phone: spelled,
                sms: false,
                owner: None,
                won: false,
                complaints: Vec::new(),
            };
            batch.push((
                branch_system.clone(),
                register_cmd(&dup, "重复登记".into(), false, 0, &mut day.rng)?,
            ));
        }
        day.run(batch).await;
    }
    let by_policy = sync_owners(&store, &mut customers, &managers).await?;
    println!(
        "  10:30  {} customers registered ({} duplicates caught); the policy assigned {by_policy} on registration",
        customers.len(),
        day.tally
            .refused
            .get(&("register_customer", "customer.duplicate"))
            .unwrap_or(&0)
    );

    // 10:30–11:30 — team leads distribute by region; full portfolios are refused and the
    // next manager of the region is tried.
    let lead = Actor::person("team-lead");
    for (ci, c) in customers.iter_mut().enumerate() {
        if ci % 7 == 6 || c.owner.is_some() {
            continue; // some stay in the pool; the policy placed others
        }
        let in_region: Vec<usize> = (0..managers.len())
            .filter(|&m| managers[m].region == c.region)
            .collect();
        let start = day.rng.gen_range(0..in_region.len());
        for k in 0..in_region.len() {
            let m = in_region[(start + k) % in_region.len()];
            let cmd = CustomerCommand::AssignOwner(AssignOwner {
                customer_id: c.id,
                manager_id: managers[m].id,
                reason: format!("region {}", c.region),
            });
            if day.run(vec![(lead.clone(), cmd.into())]).await[0].is_ok() {
                c.owner = Some(m);
                break;
            }
        }
    }
    let owned = customers.iter().filter(|c| c.owner.is_some()).count();
    println!(
        "  11:30  {owned} customers assigned, {} left in the pool",
        customers.len() - owned
    );

    // 13:00 — one manager goes on leave: nobody can give them customers any more.
    let leaving = 4;
    day.run(vec![(
        admin.clone(),
        ManagerCommand::Deactivate(DeactivateManager {
            manager_id: managers[leaving].id,
            reason: "leave".into(),
        })
        .into(),
    )])
    .await;

    // 13:00–18:00 — the working afternoon: rounds of contacts, complaints, deals,
    // transfers, pool moves and referrals.
    for _round in 0..12 {
        let mut batch = Vec::new();
        for _ in 0..(customers.len() / 6).max(4) {
            let roll: f64 = day.rng.gen();
            let open: Vec<usize> = customers
                .iter()
                .enumerate()
                .filter(|(_, c)| c.complaints.iter().any(|(_, step)| *step < 3))
                .map(|(i, _)| i)
                .collect();
            // Complaint work mostly follows up the open cases.
            let ci = if (0.55..0.72).contains(&roll) && !open.is_empty() && day.rng.gen_bool(0.8) {
                open[day.rng.gen_range(0..open.len())]
            } else {
                day.rng.gen_range(0..customers.len())
            };
            let c = &customers[ci];
            let owner = c.owner.unwrap_or(day.rng.gen_range(0..managers.len()));
            let person = Actor::person(
                managers[owner]
                    .name
                    .split(' ')
                    .next()
                    .unwrap_or("staff")
                    .to_lowercase(),
            );
            let cmd: Command = if roll < 0.55 {
                let channel = if day.rng.gen_bool(0.2) {
                    ContactChannel::Sms
                } else {
                    [
                        ContactChannel::Phone,
                        ContactChannel::Visit,
                        ContactChannel::Wechat,
                    ][day.rng.gen_range(0..3)]
                };
                CustomerCommand::RecordContact(RecordContact {
                    customer_id: c.id,
                    contact_id: ContactId::new(id()),
                    manager_id: managers[owner].id,
                    channel,
                    direction: if day.rng.gen_bool(0.7) {
                        Direction::Outbound
                    } else {
                        Direction::Inbound
                    },
                    outcome: [
                        ContactOutcome::Reached,
                        ContactOutcome::NoAnswer,
                        ContactOutcome::Interested,
                        ContactOutcome::CallbackRequested,
                    ][day.rng.gen_range(0..4)],
                    summary: Some("follow-up".into()),
                    next_follow_up_at: Some(day.clock + Duration::days(day.rng.gen_range(1..14))),
                    occurred_at: None,
                })
                .into()
            } else if roll < 0.72 {
                complaint_step(&mut customers[ci], &mut day.rng, managers[owner].id)
            } else if roll < 0.78 {
                CustomerCommand::RecordPurchase(RecordPurchase {
                    customer_id: c.id,
                    purchase_id: PurchaseId::new(id()),
                    product_line: ["deposit", "wealth", "insurance", "loan"]
                        [day.rng.gen_range(0..4)]
                    .into(),
                    amount_minor: day.rng.gen_range(1_000..5_000_000) * 100,
                    currency: "CNY".into(),
                    manager_id: c.owner.map(|o| managers[o].id),
                })
                .into()
            } else if roll < 0.85 {
                // Mostly a team lead rebalancing within the owner's team (managers are
                // numbered three to a team), which first-touch protection admits; now and
                // then to another team, which it refuses while the protection holds.
                let to = if day.rng.gen_bool(0.75) {
                    owner / 3 * 3 + (owner % 3 + day.rng.gen_range(1..3)) % 3
                } else {
                    day.rng.gen_range(0..managers.len())
                };
                CustomerCommand::TransferOwner(TransferOwner {
                    customer_id: c.id,
                    to_manager_id: managers[to].id,
                    reason: "portfolio review".into(),
                })
                .into()
            } else if roll < 0.90 {
                CustomerCommand::ReleaseToPool(ReleaseToPool {
                    customer_id: c.id,
                    reason: "no longer in the region".into(),
                })
                .into()
            } else if roll < 0.95 {
                let m = day.rng.gen_range(0..managers.len());
                CustomerCommand::ClaimFromPool(ClaimFromPool {
                    customer_id: c.id,
                    manager_id: managers[m].id,
                })
                .into()
            } else {
                let m = day.rng.gen_range(0..managers.len());
                CustomerCommand::RecordReferral(RecordReferral {
                    customer_id: c.id,
                    referral_id: ReferralId::new(id()),
                    referrer: format!("staff:{}", day.rng.gen_range(100..999)),
                    referred_to: managers[m].id,
                    note: None,
                })
                .into()
            };
            batch.push((person, cmd));
        }
        day.run(batch).await;
        // The scheduler watches the complaint clocks all afternoon.
        let now = day.clock;
        day.schedule(now).await?;
    }
    let handled: u64 =
        day.tally.accepted.values().sum::<u64>() + day.tally.refused.values().sum::<u64>();
    println!(
        "  18:00  the day is over: {handled} commands handled in {:.1} s; the scheduler applied {} timers",
        started.elapsed().as_secs_f64(),
        day.timers.applied
    );

    // The next 100 days, compressed: owners chase their leads and keep in touch with
    // only some of them, so the pool rules act; won customers are left alone, so they
    // go dormant after 90 days, and in the last days a few of them call in again
    // (reactivated). The scheduler runs every six hours.
    sync_owners(&store, &mut customers, &managers).await?;
    let evening = day.clock;
    for d in 1..=100 {
        let morning = day_start + Duration::days(d) + Duration::hours(1);
        day.clock = day.clock.max(morning);
        let owned: Vec<usize> = (0..customers.len())
            .filter(|&i| customers[i].owner.is_some() && !customers[i].won)
            .collect();
        let mut batch = Vec::new();
        for _ in 0..(owned.len() / 5).max(1) {
            if owned.is_empty() {
                break;
            }
            let c = &customers[owned[day.rng.gen_range(0..owned.len())]];
            let m = &managers[c.owner.expect("owned")];
            batch.push((
                Actor::person("staff"),
                CustomerCommand::RecordContact(RecordContact {
                    customer_id: c.id,
                    contact_id: ContactId::new(id()),
                    manager_id: m.id,
                    channel: ContactChannel::Phone,
                    direction: Direction::Outbound,
                    outcome: ContactOutcome::Reached,
                    summary: Some("keeping in touch".into()),
                    next_follow_up_at: None,
                    occurred_at: None,
                })
                .into(),
            ));
        }
        if d >= 95 {
            let won: Vec<usize> = (0..customers.len()).filter(|&i| customers[i].won).collect();
            for _ in 0..won.len().min(3) {
                let c = &customers[won[day.rng.gen_range(0..won.len())]];
                let m = &managers[c.owner.unwrap_or(day.rng.gen_range(0..managers.len()))];
                batch.push((
                    Actor::service("call-centre"),
                    CustomerCommand::RecordContact(RecordContact {
                        customer_id: c.id,
                        contact_id: ContactId::new(id()),
                        manager_id: m.id,
                        channel: ContactChannel::Phone,
                        direction: Direction::Inbound,
                        outcome: ContactOutcome::Interested,
                        summary: Some("called about a new product".into()),
                        next_follow_up_at: None,
                        occurred_at: None,
                    })
                    .into(),
                ));
            }
        }
        // Managers pick customers up from the pool (up to the daily cap each).
        let pool: Vec<usize> = (0..customers.len())
            .filter(|&i| customers[i].owner.is_none())
            .collect();
        for _ in 0..pool.len().min(8) {
            let c = &customers[pool[day.rng.gen_range(0..pool.len())]];
            let m = &managers[day.rng.gen_range(0..managers.len())];
            batch.push((
                Actor::person("staff"),
                CustomerCommand::ClaimFromPool(ClaimFromPool {
                    customer_id: c.id,
                    manager_id: m.id,
                })
                .into(),
            ));
        }
        day.run(batch).await;
        if d % 5 == 0 {
            sync_owners(&store, &mut customers, &managers).await?;
        }
        for h in [0, 6, 12, 18] {
            day.schedule(morning + Duration::hours(h)).await?;
        }
    }
    let later = day.clock - evening;
    println!(
        "  +{} days  the scheduler issued {} due timers ({} applied, {} no longer due when checked)\n",
        later.num_days(),
        day.timers.due,
        day.timers.applied,
        day.timers.not_due
    );

    // One customer exercises the right to erasure (PIPL art. 47 / GDPR art. 17).
    let erased = customers[0].id;
    for r in day
        .run(vec![(
            Actor::person("dpo"),
            CustomerCommand::EraseCustomerData(EraseCustomerData {
                customer_id: erased,
                reason: "erasure request DSR-2026-0042".into(),
            })
            .into(),
        )])
        .await
    {
        r?;
    }
    println!(
        "  erasure  customer {erased}: personal data erased by destroying its key; its history, \
         KPIs and hash chains stay\n"
    );

    report(&store, &managers, &day.tally, args.show).await?;
    drop(day);
    let read_path = path.with_extension("read.db");
    read_models(&store, &managers, &read_path, day_start).await?;
    tamper_evidence(&store).await?;
    if args.serve {
        crate::demo_serve::serve(&store, &read_path, &managers, args.serve_addr).await?;
    }
    if temporary {
        for base in [&path, &read_path] {
            for suffix in ["", "-wal", "-shm"] {
                let mut p = base.clone().into_os_string();
                p.push(suffix);
                let _ = std::fs::remove_file(p);
            }
        }
    } else {
        println!(
            "\nThe event store is kept in {} and the read models in {} (open them with sqlite3).",
            path.display(),
            read_path.display()
        );
    }
    Ok(())
}

/// Seal the log with global checkpoints and verify every chain, as an auditor would.
async fn tamper_evidence<S: EventStore>(store: &S) -> anyhow::Result<()> {
    println!("\nTamper evidence (crm audit checkpoint, crm audit verify)");
    let sealed = crm_audit::seal_pending(store, 1_000, &mut |_| {}).await?;
    let started = std::time::Instant::now();
    let report = crm_audit::verify(store, &Default::default(), &mut |_| {}).await?;
    println!(
        "  {} events in {} streams, each stream a SHA-256 hash chain; {} global checkpoints \
         (sealed now: {}) cover {} of them",
        report.events,
        report.streams,
        report.checkpoints,
        sealed.len(),
        report.sealed_events
    );
    anyhow::ensure!(report.ok(), "verify found problems: {:?}", report.problems);
    let took = started.elapsed();
    if let Some((seq, hash)) = report.head {
        println!(
            "  verified in {} ms: OK. Last checkpoint #{seq} {hash}",
            took.as_millis()
        );
    }
    // Recorded, as `crm audit verify` records it: the workbench's audit page shows it.
    // Then sealed too, as the relay would within seconds: the whole store is under a
    // checkpoint (an audit export takes sealed events only).
    let result = crm_audit::verification::Verification::of(&report, took);
    crm_audit::verification::record(store, &result, "system:crm-demo", chrono::Utc::now()).await?;
    crm_audit::seal_pending(store, 1_000, &mut |_| {}).await?;
    Ok(())
}

/// Read each customer's owner back from the store (the policy and the scheduler decide
/// some); returns how many were assigned by the policy.
async fn sync_owners(
    store: &SqliteEventStore,
    customers: &mut [Customer],
    managers: &[Manager],
) -> anyhow::Result<usize> {
    let mut by_policy = 0;
    for c in customers.iter_mut() {
        let mut state = CustomerState::default();
        for e in store.read_stream(&format!("customer-{}", c.id), 0).await? {
            let event = CustomerEvent::decode(&e.event_type, e.schema_version, &e.payload)?;
            if matches!(&event, CustomerEvent::OwnerAssigned(a) if a.policy.is_some()) {
                by_policy += 1;
            }
            state.apply(&event);
        }
        c.owner = state
            .owner()
            .and_then(|o| managers.iter().position(|m| m.id == o));
        c.won = state.registered().is_some_and(|s| !s.stage.is_prospect());
    }
    Ok(by_policy)
}

fn register_cmd(
    c: &Customer,
    name: String,
    enterprise: bool,
    i: usize,
    rng: &mut SmallRng,
) -> anyhow::Result<Command> {
    Ok(CustomerCommand::Register(RegisterCustomer {
        customer_id: c.id,
        customer_type: if enterprise {
            CustomerType::Enterprise
        } else if rng.gen_bool(0.2) {
            CustomerType::Retail
        } else {
            CustomerType::Individual
        },
        display_name: name,
        phone: Some(c.phone.clone()),
        email: rng.gen_bool(0.4).then(|| format!("client{i}@example.cn")),
        registration_number: enterprise
            .then(|| format!("91{:016}", 3_100_000_000_000_000u64 + i as u64)),
        region: c.region.parse()?,
        branch: Some(format!("{}-branch", c.region).parse()?),
        first_touch_channel: FirstTouchChannel::ALL[rng.gen_range(0..FirstTouchChannel::ALL.len())],
        industry: enterprise.then(|| ["logistics", "retail", "manufacturing"][i % 3].to_string()),
        product_interest: Some(["deposit", "wealth", "insurance", "loan"][i % 4].into()),
        consents: Some(Consents {
            sms: c.sms,
            email: true,
            phone: true,
        }),
        stage: None,
        value_tier: Some(ValueTier::ALL[rng.gen_range(0..3)]),
        aum_minor: Some(rng.gen_range(0..2_000_000) * 100),
    })
    .into())
}

/// The next step of a customer's complaint story: answered, sometimes escalated,
/// resolved, sometimes reopened, closed with a satisfaction score; and now and then a
/// step that breaks the rules (resolving a closed complaint), on purpose.
fn complaint_step(c: &mut Customer, rng: &mut SmallRng, by: ManagerId) -> Command {
    let customer_id = c.id;
    let open = c.complaints.iter_mut().find(|(_, step)| *step < 3);
    let Some((complaint_id, step)) = open else {
        if let Some((closed, _)) = c.complaints.first().filter(|_| rng.gen_bool(0.15)) {
            let complaint_id = *closed;
            return CustomerCommand::ResolveComplaint(ResolveComplaint {
                customer_id,
                complaint_id,
                resolved_by: by,
                resolution: "again".into(),
            })
            .into();
        }
        let complaint_id = ComplaintId::new(id());
        c.complaints.push((complaint_id, 0));
        return CustomerCommand::LogComplaint(LogComplaint {
            customer_id,
            complaint_id,
            severity: Severity::ALL[rng.gen_range(0..4)],
            category: ["fees", "service", "app", "card"][rng.gen_range(0..4)].into(),
            description: "customer unhappy".into(),
            channel: ContactChannel::Phone,
        })
        .into();
    };
    let complaint_id = *complaint_id;
    match *step {
        0 if rng.gen_bool(0.1) => CustomerCommand::EscalateComplaint(EscalateComplaint {
            customer_id,
            complaint_id,
            reason: "no answer yet".into(),
        })
        .into(),
        0 => {
            *step = 1;
            CustomerCommand::AcknowledgeComplaint(AcknowledgeComplaint {
                customer_id,
                complaint_id,
                by,
            })
            .into()
        }
        1 if rng.gen_bool(0.15) => CustomerCommand::EscalateComplaint(EscalateComplaint {
            customer_id,
            complaint_id,
            reason: "customer asked for a supervisor".into(),
        })
        .into(),
        1 => {
            *step = 2;
            CustomerCommand::ResolveComplaint(ResolveComplaint {
                customer_id,
                complaint_id,
                resolved_by: by,
                resolution: "fee refunded".into(),
            })
            .into()
        }
        _ if rng.gen_bool(0.15) => {
            *step = 1;
            CustomerCommand::ReopenComplaint(ReopenComplaint {
                customer_id,
                complaint_id,
                reason: "refund missing".into(),
            })
            .into()
        }
        _ => {
            *step = 3;
            CustomerCommand::CloseComplaint(CloseComplaint {
                customer_id,
                complaint_id,
                satisfaction: Some(rng.gen_range(1..=5)),
            })
            .into()
        }
    }
}

/// Pad to a display width (CJK characters take two columns).
fn pad(s: &str, width: usize) -> String {
    let w: usize = s.chars().map(|c| if c >= '\u{2E80}' { 2 } else { 1 }).sum();
    format!("{s}{}", " ".repeat(width.saturating_sub(w)))
}

#[derive(Default)]
struct Replayed {
    state: CustomerState,
    contacts: u32,
}

async fn report(
    store: &SqliteEventStore,
    managers: &[Manager],
    tally: &Tally,
    show: usize,
) -> anyhow::Result<()> {
    // Commands
    println!("Commands                     accepted  refused  (refusal codes)");
    let mut names: Vec<&str> = tally.accepted.keys().copied().collect();
    names.extend(tally.refused.keys().map(|(n, _)| *n));
    names.sort();
    names.dedup();
    for n in names {
        let refused: Vec<String> = tally
            .refused
            .iter()
            .filter(|((c, _), _)| *c == n)
            .map(|((_, code), k)| format!("{code} ×{k}"))
            .collect();
        let total_refused: u64 = tally
            .refused
            .iter()
            .filter(|((c, _), _)| *c == n)
            .map(|(_, k)| k)
            .sum();
        println!(
            "  {n:<26} {:>8} {:>8}  {}",
            tally.accepted.get(n).unwrap_or(&0),
            total_refused,
            refused.join(", ")
        );
    }

    // Replay the whole log from the store: the state below is a fold of stored events,
    // personal fields decrypted with each customer's key (or `[erased]`).
    let vault = crm_privacy::Vault::new(store.clone(), std::time::Duration::from_secs(600));
    let mut customers: BTreeMap<String, Replayed> = BTreeMap::new();
    let mut by_type: BTreeMap<String, u64> = BTreeMap::new();
    let mut cursor = LogPosition::START;
    let (mut first, mut last, mut total) = (None, LogPosition::START, 0u64);
    loop {
        let page = store.read_all(cursor, 5_000).await?;
        let Some(end) = page.last() else { break };
        cursor = end.log_position;
        for e in page {
            total += 1;
            first.get_or_insert(e.log_position);
            last = e.log_position;
            *by_type.entry(e.event_type.clone()).or_default() += 1;
            if e.stream_id.starts_with("customer-") {
                let mut payload = e.payload.clone();
                vault
                    .open(&e.stream_id, &e.event_type, &mut payload)
                    .await?;
                let event = CustomerEvent::decode(&e.event_type, e.schema_version, &payload)?;
                let r = customers.entry(e.stream_id.clone()).or_default();
                if matches!(event, CustomerEvent::ContactRecorded(_)) {
                    r.contacts += 1;
                }
                r.state.apply(&event);
            }
        }
    }
    let name_of: HashMap<ManagerId, &str> =
        managers.iter().map(|m| (m.id, m.name.as_str())).collect();

    println!("\nCustomers (state replayed from the event store)");
    println!(
        "  {:<8} {:<16} {:<10} {:<6} {:<9} {:<4} {:<24} {:>8} {:>10} {:>12}",
        "id",
        "name",
        "type",
        "region",
        "stage",
        "tier",
        "owner",
        "contacts",
        "complaints",
        "purchases ¥"
    );
    let mut rows: Vec<_> = customers
        .values()
        .filter_map(|r| r.state.registered().map(|s| (r, s)))
        .collect();
    rows.sort_by_key(|(_, s)| s.registered_at);
    let limit = if show == 0 {
        rows.len()
    } else {
        show.min(rows.len())
    };
    for (r, s) in &rows[..limit] {
        let open = s
            .complaints
            .values()
            .filter(|k| k.status != ComplaintStatus::Closed)
            .count();
        let name: String = s.display_name.chars().take(8).collect();
        let id = s.id.to_string();
        println!(
            "  {:<8} {} {:<10} {:<6} {:<9} {:<4} {:<24} {:>8} {:>10} {:>12}",
            &id[id.len().saturating_sub(8)..],
            pad(&name, 16),
            s.customer_type.as_str(),
            s.region.as_str(),
            s.stage.as_str(),
            s.value_tier.as_str(),
            s.owner
                .map_or("(pool)", |o| name_of.get(&o).copied().unwrap_or("?")),
            r.contacts,
            format!("{}/{}", open, s.complaints.len()),
            format!("{:.2}", s.purchases_total_minor as f64 / 100.0),
        );
    }
    if limit < rows.len() {
        println!("  … {} more (--show 0 lists all)", rows.len() - limit);
    }
    let mut stages: BTreeMap<&str, u32> = BTreeMap::new();
    for (_, s) in &rows {
        *stages.entry(s.stage.as_str()).or_default() += 1;
    }
    println!(
        "  by stage: {}",
        stages
            .iter()
            .map(|(s, n)| format!("{s} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    );

    println!("\nManagers (portfolio replayed / holding limit; counter kept by the store)");
    for m in managers {
        let held = rows.iter().filter(|(_, s)| s.owner == Some(m.id)).count();
        let counter = store.counter(&format!("holdings:{}", m.id)).await?;
        let check = if held as i64 == counter {
            ""
        } else {
            "  MISMATCH"
        };
        println!(
            "  {:<26} {:<6} {:>3} / {:<3}{check}",
            m.name, m.region, held, m.limit
        );
        anyhow::ensure!(
            held as i64 == counter,
            "replayed holdings of {} differ from the store's counter",
            m.name
        );
        anyhow::ensure!(
            held as u32 <= m.limit,
            "{} holds more than the limit",
            m.name
        );
    }

    println!("\nEvent log");
    println!(
        "  {total} events in {} streams, log positions {} … {}",
        customers.len() + managers.len(),
        first.unwrap_or(LogPosition::START),
        last
    );
    for (t, n) in &by_type {
        println!("  {t:<24} {n:>6}");
    }
    Ok(())
}

/// Build the read models from the day's log with the projector's code, then print the
/// ownership view, the funnel and the KPI table, cross-checked against the replay.
async fn read_models(
    store: &SqliteEventStore,
    managers: &[Manager],
    path: &std::path::Path,
    day_start: DateTime<Utc>,
) -> anyhow::Result<()> {
    use crm_projections::calendar::{Calendar, Granularity};
    use crm_projections::funnel::Slice;
    use crm_projections::kpi::Level;
    use crm_projections::{PortfolioBy, Prepared, ReadStore};

    let read = ReadStore::connect(&format!("sqlite://{}", path.display()), 1).await?;
    // The bank's days: Beijing's.
    let cal: Calendar = "Asia/Shanghai".parse().map_err(anyhow::Error::msg)?;
    let mut cursor = LogPosition::START;
    let mut applied = 0usize;
    loop {
        let page = store.read_all(cursor, 1000).await?;
        let Some(last) = page.last() else { break };
        cursor = last.log_position;
        let batch = Prepared::from_log(page);
        applied += read.apply(&batch, Some("demo")).await?.fates.len();
    }
    println!(
        "\nRead models ({applied} events projected by the projector's code into {})",
        path.display()
    );

    println!("\nOwnership view");
    let by_team = read.portfolio_counts(PortfolioBy::Team).await?;
    println!(
        "  portfolios by team:   {}",
        by_team
            .iter()
            .map(|c| format!("{} {}", c.key, c.customers))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let by_region = read.portfolio_counts(PortfolioBy::Region).await?;
    println!(
        "  portfolios by region: {}",
        by_region
            .iter()
            .map(|c| format!("{} {}", c.key, c.customers))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let pool = read.pool("", 100_000).await?;
    println!("  in the pool: {} customers", pool.len());
    for m in managers {
        let portfolio = read.portfolio(&m.id.to_string()).await?.len() as i64;
        let counter = store.counter(&format!("holdings:{}", m.id)).await?;
        anyhow::ensure!(
            portfolio == counter,
            "the ownership view gives {} {portfolio} customers, the write side {counter}",
            m.name
        );
    }
    println!("  (every manager's portfolio matches the write side's holdings)");
    // The customer whose ownership moved most, and who owned it at noon.
    let periods = read.all_periods().await?;
    let mut moves: HashMap<&str, usize> = HashMap::new();
    for p in &periods {
        *moves.entry(p.customer_id.as_str()).or_default() += 1;
    }
    if let Some((busiest, _)) = moves
        .iter()
        .max_by_key(|(c, n)| (**n, std::cmp::Reverse(**c)))
    {
        println!("  ownership timeline of customer {busiest}:");
        let name = |id: &str| {
            managers
                .iter()
                .find(|m| m.id.to_string() == id)
                .map_or(id.to_string(), |m| m.name.clone())
        };
        // Dates as well as times: the periods span the hundred days after the first.
        let hm = |us: i64| {
            Utc.timestamp_micros(us)
                .single()
                .map(|t| (t + Duration::hours(8)).format("%m-%d %H:%M").to_string())
                .unwrap_or_default()
        };
        for p in read.ownership_timeline(busiest).await? {
            println!(
                "    {} – {:<11}  {:<12} {:<22} by {}",
                hm(p.from_us),
                p.to_us.map(hm).unwrap_or_else(|| "now".into()),
                name(&p.manager_id),
                p.start_event,
                p.started_by
            );
        }
        let noon = (day_start + Duration::hours(3)).timestamp_micros();
        let owner = read.owner_at(busiest, noon).await?;
        println!(
            "    owner at {} 11:30 (Shanghai): {}",
            (day_start + Duration::hours(8)).format("%m-%d"),
            owner.map_or("the pool".to_string(), |p| name(&p.manager_id))
        );
    }

    println!("\nLifecycle funnel");
    let counts = read.stage_counts(None, Slice::All).await?;
    println!(
        "  now: {}",
        counts
            .iter()
            .map(|c| format!("{} {}", c.stage, c.customers))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!("  stage        entered  → later  next-step  cumulative from lead");
    for c in read.conversion(Slice::All).await? {
        let pct =
            |r: Option<f64>| r.map_or("     –".to_string(), |r| format!("{:>5.1}%", r * 100.0));
        println!(
            "  {:<12} {:>7}  {:>6}   {}     {}",
            c.stage,
            c.entered,
            c.reached_next,
            pct(c.next_step_rate),
            pct(c.cumulative_rate)
        );
    }

    println!("\nManager KPIs for the day");
    let from = cal.bucket_start(day_start.timestamp_micros(), Granularity::Day);
    let to = cal.bucket_end(from, Granularity::Day);
    let rows = read
        .kpis(Level::Manager, (&cal, Granularity::Day), from, to, to)
        .await?;
    println!(
        "  {:<20} {:>9} {:>8} {:>8} {:>4} {:>10} {:>12} {:>8} {:>6}",
        "manager",
        "portfolio",
        "contacts",
        "coverage",
        "won",
        "complaints",
        "1st resp p50",
        "breach",
        "satisf"
    );
    for m in managers {
        let Some(r) = rows.iter().find(|r| r.key == m.id.to_string()) else {
            continue;
        };
        let pct = |r: Option<f64>| r.map_or("–".to_string(), |r| format!("{:.0}%", r * 100.0));
        println!(
            "  {:<20} {:>9} {:>8} {:>8} {:>4} {:>10} {:>12} {:>8} {:>6}",
            m.name,
            r.portfolio,
            r.contacts,
            pct(r.contact_coverage),
            r.new_customers_won,
            r.complaints,
            r.first_response_median_s
                .map_or("–".to_string(), |s| format!("{s} s")),
            pct(r.sla_breach_rate),
            r.satisfaction_avg
                .map_or("–".to_string(), |s| format!("{s:.1}"))
        );
    }

    println!(
        "\nPool rules, complaint clocks and lifecycle over the 100 days that followed (per team)"
    );
    let end = (day_start + Duration::days(102)).timestamp_micros();
    let rows = read
        .kpis(Level::Team, (&cal, Granularity::Month), from, end, end)
        .await?;
    let mut teams: BTreeMap<String, [i64; 7]> = BTreeMap::new();
    for r in &rows {
        let t = teams.entry(r.key.clone()).or_default();
        for (slot, v) in t.iter_mut().zip([
            r.pool_warnings,
            r.returned_by_pool_rules,
            r.lost_to_pool,
            r.sla_warnings,
            r.sla_breaches,
            r.automatic_escalations,
            r.reactivated,
        ]) {
            *slot += v;
        }
    }
    println!(
        "  {:<10} {:>13} {:>13} {:>9} {:>12} {:>12} {:>11} {:>11}",
        "team",
        "pool warnings",
        "rule returns",
        "all lost",
        "SLA warnings",
        "SLA breaches",
        "escalations",
        "reactivated"
    );
    for (team, v) in teams.iter().filter(|(_, v)| v.iter().any(|n| *n != 0)) {
        println!(
            "  {:<10} {:>13} {:>13} {:>9} {:>12} {:>12} {:>11} {:>11}",
            team, v[0], v[1], v[2], v[3], v[4], v[5], v[6]
        );
    }
    // Over the same span, from the funnel's transitions and the teams' pool returns.
    let moves = read
        .stage_transitions(from, end, (&cal, Granularity::Month), Slice::All)
        .await?;
    let dormant: i64 = moves
        .iter()
        .filter(|m| m.to_stage == "dormant")
        .map(|m| m.transitions)
        .sum();
    let reactivated: i64 = moves.iter().map(|m| m.reactivations).sum();
    let returns: i64 = rows.iter().map(|r| r.returned_by_pool_rules).sum();
    println!(
        "  {returns} automatic returns to the pool; {dormant} customers went dormant after 90 days without activity, {reactivated} came back (reactivated; credited to an owner only if they had one)"
    );
    Ok(())
}

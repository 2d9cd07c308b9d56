//! A simulated year: 2,000+ customers, 40 managers in five teams, a published ownership
//! policy, a seeded random workload (registrations assigned by policy, contacts, claims,
//! transfers, locks, complaints answered late or never, purchases, a manager leaving) and
//! the scheduler ticking every simulated hour on an injected clock, on the embedded
//! store. The final log is then checked by independent folds:
//!
//! - no manager ever exceeds a holding limit, and inactive managers receive nobody;
//! - no customer under first-touch protection is taken by another team;
//! - every lapsed customer reaches the pool within one scheduler period of its deadline;
//! - every complaint clock that ran out is recorded as breached exactly once;
//! - two schedulers running at once produce the same events as one.
//!
//! `CRM_TEST_SEED` replays a run.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use crm_command_handler::{Command, CommandHandler, Envelope, HandlerConfig};
use crm_domain::customer::timers;
use crm_domain::customer::*;
use crm_domain::manager::{DeactivateManager, ManagerCommand, RegisterManager};
use crm_domain::policy::*;
use crm_domain::*;
use crm_eventstore::sqlite::SqliteEventStore;
use crm_eventstore::testing::TempPath;
use crm_eventstore::{Log, LogPosition, RecordedEvent};
use crm_scheduler::Scheduler;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use uuid::Uuid;

const CUSTOMERS: usize = 2_000;
const DAYS: i64 = 365;
const PERIOD: Duration = Duration::hours(1);
const TEAMS: [(&str, &str, u32); 5] = [
    ("east-1", "east", 45),
    ("east-2", "east", 45),
    ("west-1", "west", 50),
    ("vip", "east", 30),
    ("general", "north", 60),
];

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
}

fn seeded_uuid(rng: &mut SmallRng) -> Uuid {
    Uuid::from_u128(rng.gen())
}

fn policy() -> PolicyDocument {
    let rule = |name: &str, team: &str, method, when| AssignmentRule {
        name: name.into(),
        when,
        team: team.parse().unwrap(),
        method,
    };
    PolicyDocument {
        rules: vec![
            rule(
                "high value to the VIP desk",
                "vip",
                Distribution::WeightedPerformance,
                Conditions {
                    value_tiers: vec![ValueTier::High],
                    ..Conditions::default()
                },
            ),
            rule(
                "east web and app leads",
                "east-2",
                Distribution::RoundRobin,
                Conditions {
                    regions: vec!["east".parse().unwrap()],
                    channels: vec![FirstTouchChannel::Web, FirstTouchChannel::App],
                    ..Conditions::default()
                },
            ),
            rule(
                "east",
                "east-1",
                Distribution::LeastLoaded,
                Conditions {
                    regions: vec!["east".parse().unwrap()],
                    ..Conditions::default()
                },
            ),
            rule(
                "west",
                "west-1",
                Distribution::RoundRobin,
                Conditions {
                    regions: vec!["west".parse().unwrap()],
                    ..Conditions::default()
                },
            ),
            rule(
                "everyone else",
                "general",
                Distribution::LeastLoaded,
                Conditions::default(),
            ),
        ],
        holding: HoldingRules {
            team_limits: [("general".parse().unwrap(), 55)].into_iter().collect(),
            ..HoldingRules::default()
        },
        protection: ProtectionRules {
            first_touch_days: 14,
            scope: ProtectionScope::Team,
        },
        pool: PoolRules {
            no_contact_days: TierDays {
                high: 45,
                mid: 30,
                low: 21,
            },
            lead_not_won_days: TierDays {
                high: 90,
                mid: 60,
                low: 45,
            },
            warning_days: 3,
            daily_claim_cap: 4,
            reclaim_cooldown_days: 7,
        },
        lifecycle: LifecycleRules {
            dormant_after_days: 60,
            ..LifecycleRules::default()
        },
        utc_offset_minutes: 480,
        ..PolicyDocument::default()
    }
}

/// The test's own view of the log, to aim the workload (never used by the checks).
#[derive(Default)]
struct View {
    cursor: LogPosition,
    customers: BTreeMap<CustomerId, CustomerState>,
}

impl View {
    async fn catch_up(&mut self, store: &SqliteEventStore) {
        loop {
            let page = store.read_all(self.cursor, 5_000).await.unwrap();
            let Some(last) = page.last() else { break };
            self.cursor = last.log_position;
            for e in &page {
                if let Ok(DomainEvent::Customer(c)) =
                    DomainEvent::decode(&e.event_type, e.schema_version, &e.payload)
                {
                    self.customers.entry(c.customer_id()).or_default().apply(&c);
                }
            }
        }
    }
}

struct Run {
    events: Vec<RecordedEvent>,
    timers_applied: usize,
    commands: usize,
}

/// One simulated year with `schedulers` schedulers ticking at once.
async fn simulate(seed: u64, schedulers: usize) -> Run {
    // On tmpfs when there is one: the simulation checks the rules, not the disk, and a
    // year of commands with an fsync each would take minutes.
    let shm = std::path::Path::new("/dev/shm");
    let dir = if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    let file = TempPath(dir.join(format!("crm-sim-{}.db", Uuid::new_v4().simple())));
    let store = SqliteEventStore::open(&file.0).await.unwrap();
    let handler = CommandHandler::new(store.clone(), HandlerConfig::default());
    let mut rng = SmallRng::seed_from_u64(seed);
    let person = |at| Envelope::new(Actor::person("sim"), at);
    let mut commands = 0usize;
    let mut send = |cmd: Command, at: DateTime<Utc>| {
        commands += 1;
        let h = handler.clone();
        async move { h.handle(person(at), cmd).await }
    };

    // Org and policy.
    let mut managers: Vec<(ManagerId, &str)> = Vec::new();
    for (t, (team, region, limit)) in TEAMS.iter().enumerate() {
        for i in 0..8 {
            let id = ManagerId::new(Uuid::from_u128(0xA000 + (t * 100 + i) as u128));
            let role = if i == 0 {
                ManagerRole::TeamLead
            } else {
                ManagerRole::Manager
            };
            send(
                ManagerCommand::Register(RegisterManager {
                    manager_id: id,
                    name: format!("{team} #{i}"),
                    role,
                    team: team.parse().unwrap(),
                    region: region.parse().unwrap(),
                    branch: format!("{region}-branch").parse().unwrap(),
                    holding_limit: *limit,
                })
                .into(),
                t0(),
            )
            .await
            .unwrap();
            managers.push((id, team));
        }
    }
    for (i, region) in ["east", "west", "north"].into_iter().enumerate() {
        send(
            ManagerCommand::Register(RegisterManager {
                manager_id: ManagerId::new(Uuid::from_u128(0xB000 + i as u128)),
                name: format!("{region} branch manager"),
                role: ManagerRole::BranchManager,
                team: "branch-office".parse().unwrap(),
                region: region.parse().unwrap(),
                branch: format!("{region}-branch").parse().unwrap(),
                holding_limit: 1,
            })
            .into(),
            t0(),
        )
        .await
        .unwrap();
    }
    send(
        PolicyCommand::Publish(PublishPolicy {
            document: policy(),
            note: "simulation".into(),
        })
        .into(),
        t0(),
    )
    .await
    .unwrap();

    let mut scheds: Vec<Scheduler<SqliteEventStore>> = (0..schedulers)
        .map(|_| {
            Scheduler::new(
                store.clone(),
                CommandHandler::new(store.clone(), HandlerConfig::default()),
                // Replicas of one service: the same name, so the same actor.
                "scheduler",
            )
        })
        .collect();
    let mut view = View::default();
    let mut registered = 0usize;
    let mut open_complaints: Vec<(CustomerId, ComplaintId, DateTime<Utc>, DateTime<Utc>)> =
        Vec::new();
    let mut timers_applied = 0;
    let leaving = managers[9].0; // leaves in June

    for hour in 0..DAYS * 24 {
        let start = t0() + Duration::hours(hour);
        let day = hour / 24;
        let working = (1..=10).contains(&(hour % 24)); // 09:00–18:00 UTC+8
        if working {
            view.catch_up(&store).await;
            let at = |rng: &mut SmallRng| start + Duration::minutes(rng.gen_range(0..60));
            // Registrations: the first 150 days; the policy assigns them.
            let per_hour = if day < 150 { 2 } else { 0 };
            for _ in 0..per_hour {
                if registered >= CUSTOMERS {
                    break;
                }
                let id = CustomerId::new(seeded_uuid(&mut rng));
                let region = ["east", "east", "west", "north"][rng.gen_range(0..4)];
                let channel =
                    FirstTouchChannel::ALL[rng.gen_range(0..FirstTouchChannel::ALL.len())];
                let aum = [0i64, 3_000_000, 8_000_000, 150_000_000][rng.gen_range(0..4)];
                let r = send(
                    CustomerCommand::Register(RegisterCustomer {
                        customer_id: id,
                        customer_type: CustomerType::Individual,
                        display_name: format!("Customer {registered}"),
                        phone: Some(format!("+86139{registered:08}")),
                        email: None,
                        registration_number: None,
                        region: region.parse().unwrap(),
                        branch: None,
                        first_touch_channel: channel,
                        industry: None,
                        product_interest: None,
                        consents: None,
                        stage: None,
                        value_tier: None,
                        aum_minor: Some(aum),
                    })
                    .into(),
                    at(&mut rng),
                )
                .await;
                r.unwrap();
                registered += 1;
            }
            let ids: Vec<CustomerId> = view.customers.keys().copied().collect();
            if ids.is_empty() {
                continue;
            }
            let pick = |rng: &mut SmallRng| ids[rng.gen_range(0..ids.len())];
            // Contacts: mostly by the owner, sometimes by someone else.
            for _ in 0..3 {
                let c = pick(&mut rng);
                let owner = view.customers[&c].owner();
                let by = match owner {
                    Some(o) if rng.gen_bool(0.85) => o,
                    _ => managers[rng.gen_range(0..managers.len())].0,
                };
                let outcome = [
                    ContactOutcome::Reached,
                    ContactOutcome::NoAnswer,
                    ContactOutcome::Interested,
                ][rng.gen_range(0..3)];
                let _ = send(
                    CustomerCommand::RecordContact(RecordContact {
                        customer_id: c,
                        contact_id: ContactId::new(seeded_uuid(&mut rng)),
                        manager_id: by,
                        channel: ContactChannel::Phone,
                        direction: Direction::Outbound,
                        outcome,
                        summary: None,
                        next_follow_up_at: None,
                        occurred_at: None,
                    })
                    .into(),
                    at(&mut rng),
                )
                .await;
            }
            // Claims from the pool, transfers, locks: many are refused, that is the point.
            if rng.gen_bool(0.8) {
                let pool: Vec<CustomerId> = view
                    .customers
                    .iter()
                    .filter(|(_, s)| s.owner().is_none())
                    .map(|(id, _)| *id)
                    .collect();
                if !pool.is_empty() {
                    let c = pool[rng.gen_range(0..pool.len())];
                    let m = managers[rng.gen_range(0..managers.len())].0;
                    let _ = send(
                        CustomerCommand::ClaimFromPool(ClaimFromPool {
                            customer_id: c,
                            manager_id: m,
                        })
                        .into(),
                        at(&mut rng),
                    )
                    .await;
                }
            }
            if rng.gen_bool(0.3) {
                let c = pick(&mut rng);
                let m = managers[rng.gen_range(0..managers.len())].0;
                let _ = send(
                    CustomerCommand::TransferOwner(TransferOwner {
                        customer_id: c,
                        to_manager_id: m,
                        reason: "rebalancing".into(),
                    })
                    .into(),
                    at(&mut rng),
                )
                .await;
            }
            if rng.gen_bool(0.02) {
                let c = pick(&mut rng);
                let until = start + Duration::days(rng.gen_range(10..40));
                let _ = send(
                    CustomerCommand::LockOwnership(LockOwnership {
                        customer_id: c,
                        until: Some(until),
                        reason: "key account review".into(),
                    })
                    .into(),
                    at(&mut rng),
                )
                .await;
            }
            // Purchases win deals and move tiers.
            if rng.gen_bool(0.5) {
                let c = pick(&mut rng);
                let _ = send(
                    CustomerCommand::RecordPurchase(RecordPurchase {
                        customer_id: c,
                        purchase_id: PurchaseId::new(seeded_uuid(&mut rng)),
                        product_line: "fund".into(),
                        amount_minor: rng.gen_range(1_000..20_000_000),
                        currency: "CNY".into(),
                        manager_id: view.customers[&c].owner(),
                    })
                    .into(),
                    at(&mut rng),
                )
                .await;
            }
            // Complaints: answered in time, late, or never.
            if rng.gen_bool(0.25) {
                let c = pick(&mut rng);
                let k = ComplaintId::new(seeded_uuid(&mut rng));
                let logged = at(&mut rng);
                let severity = Severity::ALL[rng.gen_range(0..Severity::ALL.len())];
                if send(
                    CustomerCommand::LogComplaint(LogComplaint {
                        customer_id: c,
                        complaint_id: k,
                        severity,
                        category: "service".into(),
                        description: "waited too long".into(),
                        channel: ContactChannel::Phone,
                    })
                    .into(),
                    logged,
                )
                .await
                .is_ok()
                {
                    let ack = logged + Duration::minutes(rng.gen_range(2..240));
                    let resolve = ack + Duration::hours(rng.gen_range(1..200));
                    if rng.gen_bool(0.9) {
                        open_complaints.push((c, k, ack, resolve));
                    }
                }
            }
        }
        // Answers to complaints whose time has come (acknowledge, then resolve).
        let end = start + Duration::hours(1);
        let mut still = Vec::new();
        for (c, k, ack, resolve) in std::mem::take(&mut open_complaints) {
            let by = managers[0].0;
            if ack < end && ack >= start {
                let _ = send(
                    CustomerCommand::AcknowledgeComplaint(AcknowledgeComplaint {
                        customer_id: c,
                        complaint_id: k,
                        by,
                    })
                    .into(),
                    ack,
                )
                .await;
            }
            if resolve < end {
                let _ = send(
                    CustomerCommand::ResolveComplaint(ResolveComplaint {
                        customer_id: c,
                        complaint_id: k,
                        resolved_by: by,
                        resolution: "apologised".into(),
                    })
                    .into(),
                    resolve,
                )
                .await;
            } else {
                still.push((c, k, ack, resolve));
            }
        }
        open_complaints = still;
        if hour == 24 * 160 {
            let _ = send(
                ManagerCommand::Deactivate(DeactivateManager {
                    manager_id: leaving,
                    reason: "left the bank".into(),
                })
                .into(),
                start,
            )
            .await;
        }
        // The schedulers tick at the end of the hour, all at once.
        let reports = futures::future::join_all(scheds.iter_mut().map(|s| s.tick(end))).await;
        for r in reports {
            timers_applied += r.expect("tick").applied;
        }
    }
    // The log with personal fields decrypted: each run encrypts with its own keys and
    // nonces, so runs compare on the clear text.
    let vault = crm_privacy::Vault::new(store.clone(), std::time::Duration::from_secs(3600));
    let mut events = Vec::new();
    let mut cursor = LogPosition::START;
    loop {
        let page = store.read_all(cursor, 10_000).await.unwrap();
        let Some(last) = page.last() else { break };
        cursor = last.log_position;
        for mut e in page {
            vault
                .open(&e.stream_id, &e.event_type, &mut e.payload)
                .await
                .expect("decrypt");
            events.push(e);
        }
    }
    Run {
        events,
        timers_applied,
        commands,
    }
}

fn decode(e: &RecordedEvent) -> Option<DomainEvent> {
    DomainEvent::decode(&e.event_type, e.schema_version, &e.payload).ok()
}

// ---- the checks ---------------------------------------------------------------------

fn check_holding_limits(events: &[RecordedEvent]) -> usize {
    let doc = policy();
    let mut limit: HashMap<ManagerId, (u32, TeamId, bool)> = HashMap::new();
    let mut holdings: HashMap<ManagerId, u32> = HashMap::new();
    let mut gains = 0;
    for e in events {
        match decode(e) {
            Some(DomainEvent::Manager(ManagerEvent::ManagerRegistered(r))) => {
                limit.insert(r.manager_id, (r.holding_limit, r.team, true));
            }
            Some(DomainEvent::Manager(ManagerEvent::ManagerDeactivated(d))) => {
                limit.get_mut(&d.manager_id).unwrap().2 = false;
            }
            Some(DomainEvent::Customer(c)) => {
                let (gain, loss) = match &c {
                    CustomerEvent::OwnerAssigned(a) => (Some(a.manager_id), None),
                    CustomerEvent::ClaimedFromPool(a) => (Some(a.manager_id), None),
                    CustomerEvent::OwnershipTransferred(t) => {
                        (Some(t.to_manager), Some(t.from_manager))
                    }
                    CustomerEvent::ReleasedToPool(r) => (None, Some(r.previous_owner)),
                    _ => (None, None),
                };
                if let Some(m) = loss {
                    *holdings.get_mut(&m).unwrap() -= 1;
                }
                if let Some(m) = gain {
                    gains += 1;
                    let h = holdings.entry(m).or_default();
                    *h += 1;
                    let (own, team, active) = &limit[&m];
                    let cap = doc.holding_limit(team, *own);
                    assert!(*active, "inactive manager {m} received a customer");
                    assert!(*h <= cap, "manager {m} holds {h} > limit {cap}");
                }
            }
            _ => {}
        }
    }
    gains
}

fn check_protection(events: &[RecordedEvent]) -> usize {
    let days = i64::from(policy().protection.first_touch_days);
    // customer → (first team, first at, current owner's team)
    let mut first: HashMap<CustomerId, (TeamId, DateTime<Utc>)> = HashMap::new();
    let mut team_of: HashMap<CustomerId, Option<TeamId>> = HashMap::new();
    let mut protected_moves_refused_would_be = 0;
    for e in events {
        let Some(DomainEvent::Customer(c)) = decode(e) else {
            continue;
        };
        let id = c.customer_id();
        let at = e.metadata.occurred_at;
        let protected = |team_of: &HashMap<CustomerId, Option<TeamId>>| {
            first.get(&id).filter(|(team, since)| {
                at < *since + Duration::days(days)
                    && team_of.get(&id).cloned().flatten().as_ref() == Some(team)
            })
        };
        match &c {
            CustomerEvent::OwnershipTransferred(t) => {
                if let Some((team, _)) = protected(&team_of) {
                    assert_eq!(&t.to_team, team, "{id} taken from its protected team");
                    protected_moves_refused_would_be += 1;
                }
                team_of.insert(id, Some(t.to_team.clone()));
            }
            CustomerEvent::ReleasedToPool(r) => {
                if r.rule.is_some() {
                    assert!(
                        protected(&team_of).is_none(),
                        "{id} returned to the pool during its protection"
                    );
                }
                team_of.insert(id, None);
            }
            CustomerEvent::OwnerAssigned(a) => {
                first.entry(id).or_insert((a.team.clone(), at));
                team_of.insert(id, Some(a.team.clone()));
            }
            CustomerEvent::ClaimedFromPool(a) => {
                first.entry(id).or_insert((a.team.clone(), at));
                team_of.insert(id, Some(a.team.clone()));
            }
            _ => {}
        }
    }
    protected_moves_refused_would_be
}

/// After each event of a customer, the deadline the rules give must not pass by more
/// than one period before the customer's next event (or the end of the run).
fn check_lapses(events: &[RecordedEvent], end: DateTime<Utc>) -> (usize, Duration) {
    let policy = Arc::new(Policy {
        version: 1,
        document: policy(),
    });
    let mut states: HashMap<CustomerId, CustomerState> = HashMap::new();
    let mut deadline: HashMap<CustomerId, DateTime<Utc>> = HashMap::new();
    let mut returns = 0;
    let mut latest = Duration::zero();
    let check = |id: &CustomerId, until: DateTime<Utc>, deadline: &HashMap<_, DateTime<Utc>>| {
        if let Some(d) = deadline.get(id) {
            assert!(
                *d + PERIOD >= until,
                "{id} lapsed at {d} and was still not in the pool at {until}"
            );
        }
    };
    for e in events {
        let Some(DomainEvent::Customer(c)) = decode(e) else {
            continue;
        };
        let id = c.customer_id();
        let at = e.metadata.occurred_at;
        check(&id, at, &deadline);
        if let CustomerEvent::ReleasedToPool(r) = &c {
            if let Some(rule) = &r.rule {
                returns += 1;
                let late = at - rule.due_at;
                assert!(
                    late >= Duration::zero() && late <= PERIOD,
                    "{id} returned {late} after its deadline"
                );
                latest = latest.max(late);
            }
        }
        let s = states.entry(id).or_default();
        s.apply(&c);
        match s.registered().and_then(|c| timers::pool_return(c, &policy)) {
            Some((_, d)) => deadline.insert(id, d),
            None => deadline.remove(&id),
        };
    }
    for id in deadline.keys() {
        check(id, end, &deadline);
    }
    (returns, latest)
}

/// A complaint clock: the complaint, which clock, and its deadline.
type ClockKey = (ComplaintId, SlaClock, DateTime<Utc>);

/// Each complaint clock that ran out before its answer (or the end) is breached once.
fn check_breaches(events: &[RecordedEvent], end: DateTime<Utc>) -> usize {
    // (complaint, clock, due) → (answered at, breach events)
    let mut clocks: BTreeMap<ClockKey, (Option<DateTime<Utc>>, u32)> = BTreeMap::new();
    let mut current: HashMap<ComplaintId, (DateTime<Utc>, DateTime<Utc>)> = HashMap::new(); // first-response due, resolution due
    for e in events {
        let Some(DomainEvent::Customer(c)) = decode(e) else {
            continue;
        };
        let at = e.metadata.occurred_at;
        let mut answer = |clock, k: ComplaintId, due: DateTime<Utc>| {
            let entry = clocks.entry((k, clock, due)).or_default();
            entry.0.get_or_insert(at);
        };
        match &c {
            CustomerEvent::ComplaintLogged(l) => {
                clocks.insert(
                    (
                        l.complaint_id,
                        SlaClock::FirstResponse,
                        l.first_response_due_at,
                    ),
                    (None, 0),
                );
                clocks.insert(
                    (l.complaint_id, SlaClock::Resolution, l.resolution_due_at),
                    (None, 0),
                );
                current.insert(
                    l.complaint_id,
                    (l.first_response_due_at, l.resolution_due_at),
                );
            }
            CustomerEvent::ComplaintAcknowledged(a) => {
                let (fr, _) = current[&a.complaint_id];
                answer(SlaClock::FirstResponse, a.complaint_id, fr);
            }
            CustomerEvent::ComplaintResolved(r) => {
                let (fr, res) = current[&r.complaint_id];
                answer(SlaClock::FirstResponse, r.complaint_id, fr);
                answer(SlaClock::Resolution, r.complaint_id, res);
            }
            CustomerEvent::ComplaintReopened(r) => {
                let fr = current[&r.complaint_id].0;
                current.insert(r.complaint_id, (fr, r.resolution_due_at));
                clocks.insert(
                    (r.complaint_id, SlaClock::Resolution, r.resolution_due_at),
                    (None, 0),
                );
            }
            CustomerEvent::ComplaintSlaBreached(b) => {
                clocks
                    .get_mut(&(b.complaint_id, b.clock, b.due_at))
                    .expect("a breach of a known clock")
                    .1 += 1;
            }
            _ => {}
        }
    }
    let mut breached = 0;
    for ((k, clock, due), (answered, breaches)) in &clocks {
        let ran_out = match answered {
            Some(at) => at > due,
            None => *due + PERIOD <= end,
        };
        let expected = u32::from(ran_out);
        if answered.is_none() && *due <= end && *due + PERIOD > end {
            continue; // due within the last period: the scheduler may not have run yet
        }
        assert_eq!(
            *breaches, expected,
            "complaint {k} {clock:?} due {due}: {breaches} breach events"
        );
        breached += *breaches as usize;
    }
    breached
}

fn by_stream(events: &[RecordedEvent]) -> BTreeMap<String, Vec<(String, serde_json::Value)>> {
    let mut out: BTreeMap<String, Vec<_>> = BTreeMap::new();
    for e in events {
        out.entry(e.stream_id.clone())
            .or_default()
            .push((e.event_type.clone(), e.payload.clone()));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_simulated_year_keeps_every_rule_and_two_schedulers_act_as_one() {
    let seed = crm_eventstore::conformance::seed();
    let started = std::time::Instant::now();
    let one = simulate(seed, 1).await;
    let end = t0() + Duration::hours(DAYS * 24);
    let count = |t: &str| one.events.iter().filter(|e| e.event_type == t).count();
    let gains = check_holding_limits(&one.events);
    let protected = check_protection(&one.events);
    let (returns, latest) = check_lapses(&one.events, end);
    let breaches = check_breaches(&one.events, end);
    println!(
        "one scheduler: {} commands, {} events, {} timers applied in {:.1?}; \
         {gains} ownership gains, {protected} moves within a protected team, \
         {returns} automatic pool returns (latest {} min after its deadline), {} warnings, \
         {breaches} SLA breaches ({} warnings, {} escalations), {} dormant, {} reactivated, {} tier changes",
        one.commands,
        one.events.len(),
        one.timers_applied,
        started.elapsed(),
        latest.num_minutes(),
        count("PoolReturnWarned"),
        count("ComplaintSlaWarned"),
        count("ComplaintEscalated"),
        one.events
            .iter()
            .filter(|e| e.event_type == "LifecycleStageChanged" && e.payload["to"] == "dormant")
            .count(),
        one.events
            .iter()
            .filter(|e| e.payload["reactivated"] == true)
            .count(),
        count("ValueTierChanged"),
    );
    let registered = count("CustomerRegistered");
    assert!(registered >= CUSTOMERS, "{registered} customers");
    // The workload is meant to exercise every rule: make sure it did.
    assert!(returns > 100, "{returns} pool returns");
    assert!(count("PoolReturnWarned") > 100);
    assert!(breaches > 20, "{breaches} breaches");
    assert!(count("ComplaintSlaWarned") > 20);
    assert!(protected > 0);

    let two = simulate(seed, 2).await;
    let (a, b) = (by_stream(&one.events), by_stream(&two.events));
    for (stream, events) in &a {
        let other = b.get(stream).cloned().unwrap_or_default();
        if let Some(i) =
            (0..events.len().max(other.len())).find(|i| events.get(*i) != other.get(*i))
        {
            panic!(
                "two schedulers differ from one on {stream} at event {i}:\n one: {:?}\n two: {:?}\n before: {:?}",
                events.get(i),
                other.get(i),
                events.get(i.saturating_sub(2)..i)
            );
        }
    }
    assert_eq!(a.len(), b.len(), "the same streams");
    assert_eq!(one.timers_applied, two.timers_applied);
    println!(
        "two schedulers: the same {} events; total {:.1?}",
        two.events.len(),
        started.elapsed()
    );
}

//! The read side end to end, as users run it: command service, relay, two projector
//! groups and the query service as processes on real PostgreSQL and NATS. A seeded random
//! workload of more than 20,000 commands goes through the NATS and HTTP ingress while one
//! projector is SIGKILLed and restarted at random moments. Afterwards every read-model row
//! of both groups is checked against a fold of the stored events computed here,
//! independently of the projection code; the interrupted group's read models equal the
//! uninterrupted group's; `crm projections verify` reports 0 differing rows; and no event
//! was applied twice.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use crm_contracts::v1;
use crm_contracts::wire::{decode_reply, encode, Format};
use crm_domain::customer::*;
use crm_domain::manager::{ManagerCommand, RegisterManager};
use crm_domain::*;
use crm_eventstore::postgres::PgEventStore;
use crm_eventstore::testing::TestDatabase;
use crm_eventstore::RecordedEvent;
use crm_integration_tests::{Platform, Service};
use crm_projections::ReadStore;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use uuid::Uuid;

const MANAGERS: usize = 20;
const CUSTOMERS: usize = 2_000;
const COMMANDS: usize = 19_000;
const IN_FLIGHT: usize = 24;

/// The generator's belief about a customer (it may be wrong when commands race; the
/// service then refuses, as in life).
#[derive(Clone)]
struct Belief {
    id: CustomerId,
    owner: Option<usize>,
    stage: LifecycleStage,
    complaints: Vec<(ComplaintId, u8)>,
}

fn workload(seed: u64) -> (Vec<Command>, Vec<Command>) {
    let mut rng = SmallRng::seed_from_u64(seed);
    let managers: Vec<ManagerId> = (0..MANAGERS)
        .map(|_| ManagerId::new(Uuid::now_v7()))
        .collect();
    let mut setup: Vec<Command> = managers
        .iter()
        .enumerate()
        .map(|(i, m)| {
            ManagerCommand::Register(RegisterManager {
                manager_id: *m,
                name: format!("Manager {i}"),
                role: ManagerRole::Manager,
                team: format!("team-{}", i % 5).parse().unwrap(),
                region: ["east", "west"][i % 2].parse().unwrap(),
                branch: format!("branch-{}", i % 4).parse().unwrap(),
                holding_limit: 1_000,
            })
            .into()
        })
        .collect();
    let mut customers: Vec<Belief> = Vec::new();
    for i in 0..CUSTOMERS {
        let id = CustomerId::new(Uuid::now_v7());
        setup.push(
            CustomerCommand::Register(RegisterCustomer {
                customer_id: id,
                customer_type: CustomerType::Individual,
                display_name: format!("Customer {i}"),
                phone: Some(format!("+86137{i:08}")),
                email: None,
                registration_number: None,
                region: ["east", "west"][i % 2].parse().unwrap(),
                branch: None,
                first_touch_channel: FirstTouchChannel::ALL[i % FirstTouchChannel::ALL.len()],
                industry: None,
                product_interest: None,
                consents: Some(Consents {
                    sms: i % 3 == 0,
                    email: true,
                    phone: true,
                }),
                stage: None,
                value_tier: None,
                aum_minor: Some(rng.gen_range(0..10_000_000)),
            })
            .into(),
        );
        customers.push(Belief {
            id,
            owner: None,
            stage: LifecycleStage::Lead,
            complaints: Vec::new(),
        });
    }
    let mut main = Vec::with_capacity(COMMANDS);
    for _ in 0..COMMANDS {
        let ci = rng.gen_range(0..customers.len());
        let m = rng.gen_range(0..MANAGERS);
        let roll: u32 = rng.gen_range(0..100);
        let c = &mut customers[ci];
        let by = managers[c.owner.unwrap_or(m)];
        let cmd: Command = match roll {
            0..=39 => CustomerCommand::RecordContact(RecordContact {
                customer_id: c.id,
                contact_id: ContactId::new(Uuid::now_v7()),
                manager_id: by,
                channel: [
                    ContactChannel::Phone,
                    ContactChannel::Visit,
                    ContactChannel::Sms,
                ][rng.gen_range(0..3)],
                direction: Direction::Outbound,
                outcome: ContactOutcome::Reached,
                summary: None,
                next_follow_up_at: Some(Utc::now() + chrono::Duration::days(rng.gen_range(1..14))),
                occurred_at: None,
            })
            .into(),
            40..=54 => match c.owner {
                None => {
                    c.owner = Some(m);
                    CustomerCommand::AssignOwner(AssignOwner {
                        customer_id: c.id,
                        manager_id: managers[m],
                        reason: "e2e".into(),
                    })
                    .into()
                }
                Some(o) => {
                    let to = if o == m { (m + 1) % MANAGERS } else { m };
                    c.owner = Some(to);
                    CustomerCommand::TransferOwner(TransferOwner {
                        customer_id: c.id,
                        to_manager_id: managers[to],
                        reason: "e2e".into(),
                    })
                    .into()
                }
            },
            55..=59 => match c.owner {
                Some(_) => {
                    c.owner = None;
                    CustomerCommand::ReleaseToPool(ReleaseToPool {
                        customer_id: c.id,
                        reason: "e2e".into(),
                    })
                    .into()
                }
                None => {
                    c.owner = Some(m);
                    CustomerCommand::ClaimFromPool(ClaimFromPool {
                        customer_id: c.id,
                        manager_id: managers[m],
                    })
                    .into()
                }
            },
            60..=74 => match c.complaints.iter_mut().find(|(_, s)| *s < 4) {
                None => {
                    let k = ComplaintId::new(Uuid::now_v7());
                    c.complaints.push((k, 0));
                    CustomerCommand::LogComplaint(LogComplaint {
                        customer_id: c.id,
                        complaint_id: k,
                        severity: Severity::Normal,
                        category: "fees".into(),
                        description: "e2e".into(),
                        channel: ContactChannel::Phone,
                    })
                    .into()
                }
                Some((k, step)) => {
                    *step += 1;
                    let k = *k;
                    match *step {
                        1 => CustomerCommand::AcknowledgeComplaint(AcknowledgeComplaint {
                            customer_id: c.id,
                            complaint_id: k,
                            by,
                        })
                        .into(),
                        2 => CustomerCommand::ResolveComplaint(ResolveComplaint {
                            customer_id: c.id,
                            complaint_id: k,
                            resolved_by: by,
                            resolution: "refund".into(),
                        })
                        .into(),
                        3 if rng.gen_bool(0.2) => {
                            *step = 1;
                            CustomerCommand::ReopenComplaint(ReopenComplaint {
                                customer_id: c.id,
                                complaint_id: k,
                                reason: "not fixed".into(),
                            })
                            .into()
                        }
                        _ => {
                            *step = 4;
                            CustomerCommand::CloseComplaint(CloseComplaint {
                                customer_id: c.id,
                                complaint_id: k,
                                satisfaction: Some(rng.gen_range(1..=5)),
                            })
                            .into()
                        }
                    }
                }
            },
            75..=84 => {
                use LifecycleStage::*;
                let to = match c.stage {
                    Lead => Contacted,
                    Contacted => Qualified,
                    Qualified => Customer,
                    Customer => Active,
                    Active => Dormant,
                    Dormant | Churned => Active,
                };
                c.stage = to;
                CustomerCommand::ChangeLifecycleStage(ChangeLifecycleStage {
                    customer_id: c.id,
                    to,
                    reason: "e2e".into(),
                })
                .into()
            }
            85..=89 => CustomerCommand::RecordPurchase(RecordPurchase {
                customer_id: c.id,
                purchase_id: PurchaseId::new(Uuid::now_v7()),
                product_line: "wealth".into(),
                amount_minor: rng.gen_range(1_000..1_000_000),
                currency: "CNY".into(),
                manager_id: c.owner.map(|o| managers[o]),
            })
            .into(),
            90..=94 => CustomerCommand::RecordReferral(RecordReferral {
                customer_id: c.id,
                referral_id: ReferralId::new(Uuid::now_v7()),
                referrer: managers[m].to_string(),
                referred_to: managers[(m + 3) % MANAGERS],
                note: None,
            })
            .into(),
            _ => CustomerCommand::UpdateProfile(UpdateProfile {
                customer_id: c.id,
                aum_minor: Some(rng.gen_range(0..10_000_000)),
                ..Default::default()
            })
            .into(),
        };
        main.push(cmd);
    }
    (setup, main)
}

/// Send `commands` with `IN_FLIGHT` outstanding, every tenth over HTTP; returns
/// (accepted, refused).
async fn drive(
    nats: &async_nats::Client,
    http: &reqwest::Client,
    base: &str,
    prefix: &str,
    commands: Vec<Command>,
) -> (usize, usize) {
    let queue = Arc::new(Mutex::new(
        commands.into_iter().enumerate().collect::<Vec<_>>(),
    ));
    queue.lock().unwrap().reverse();
    let (accepted, refused) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let codes: Arc<Mutex<BTreeMap<String, usize>>> = Arc::default();
    let mut tasks = Vec::new();
    for _ in 0..IN_FLIGHT {
        let (queue, accepted, refused, codes) = (
            queue.clone(),
            accepted.clone(),
            refused.clone(),
            codes.clone(),
        );
        let (nats, http, base, prefix) = (
            nats.clone(),
            http.clone(),
            base.to_string(),
            prefix.to_string(),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                let Some((i, command)) = queue.lock().unwrap().pop() else {
                    break;
                };
                let meta = v1::CommandMeta {
                    command_id: Uuid::now_v7().to_string(),
                    actor: "service:e2e".into(),
                    correlation_id: None,
                    causation_id: None,
                    issued_at: Some(Utc::now().to_rfc3339()),
                };
                let ok = if i % 10 == 0 {
                    let body = encode(&meta, &command, Format::Json).unwrap();
                    let r = http
                        .post(format!("{base}/v1/commands/{}", command.name()))
                        .header("content-type", "application/json")
                        .body(body)
                        .send()
                        .await
                        .unwrap();
                    let status = r.status().as_u16();
                    if status >= 300 {
                        let body: Value = r.json().await.unwrap();
                        assert!(status < 500, "{}: HTTP {status}: {body}", command.name());
                        *codes.lock().unwrap().entry(s(&body["code"])).or_default() += 1;
                        refused.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    assert!(
                        status < 500,
                        "{}: HTTP {status}: {}",
                        command.name(),
                        r.text().await.unwrap()
                    );
                    status < 300
                } else {
                    let body = encode(&meta, &command, Format::Protobuf).unwrap();
                    let msg = nats
                        .request(format!("{prefix}.cmd.{}", command.name()), body.into())
                        .await
                        .unwrap();
                    let reply = decode_reply(&msg.payload, Format::Protobuf).unwrap();
                    if let Some(p) = &reply.problem {
                        assert!(
                            p.status < 500,
                            "{}: {} {}",
                            command.name(),
                            p.code,
                            p.detail
                        );
                        *codes.lock().unwrap().entry(p.code.clone()).or_default() += 1;
                    }
                    reply.accepted
                };
                if ok {
                    accepted.fetch_add(1, Ordering::Relaxed);
                } else {
                    refused.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    println!("refusals by code: {:?}", codes.lock().unwrap());
    (
        accepted.load(Ordering::Relaxed),
        refused.load(Ordering::Relaxed),
    )
}

/// (owner, first response s, resolutions, reopens, satisfaction)
type ComplaintFacts = (Option<String>, Option<i64>, i64, i64, Option<i64>);

/// What the read models must say, folded here from the stored events' JSON.
#[derive(Debug, Default, PartialEq)]
struct Expected {
    /// customer → (owner, stage, last contact µs)
    customers: BTreeMap<String, (Option<String>, String, Option<i64>)>,
    /// (customer, manager, from µs, to µs)
    periods: Vec<(String, String, i64, Option<i64>)>,
    /// customer → [(version, event type)], oldest first
    timelines: BTreeMap<String, Vec<(i64, String)>>,
    contacts_by_manager: BTreeMap<String, usize>,
    /// complaint → (owner, first response s, resolutions, reopens, satisfaction)
    complaints: BTreeMap<String, ComplaintFacts>,
    /// customer → stage transitions (to stage) in order
    transitions: BTreeMap<String, Vec<String>>,
}

fn us(v: &Value) -> i64 {
    chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap())
        .unwrap()
        .timestamp_micros()
}

fn s(v: &Value) -> String {
    v.as_str().unwrap().to_string()
}

fn fold(events: &[RecordedEvent]) -> Expected {
    let mut x = Expected::default();
    let mut open: BTreeMap<String, usize> = BTreeMap::new();
    for e in events {
        let Some(customer) = e.stream_id.strip_prefix("customer-") else {
            continue;
        };
        let customer = customer.to_string();
        let p = &e.payload;
        let at = e.metadata.occurred_at.timestamp_micros();
        x.timelines
            .entry(customer.clone())
            .or_default()
            .push((e.stream_version as i64, e.event_type.clone()));
        let mut close = |x: &mut Expected| {
            if let Some(i) = open.remove(&customer) {
                x.periods[i].3 = Some(at);
            }
        };
        match e.event_type.as_str() {
            "CustomerRegistered" => {
                x.customers
                    .insert(customer.clone(), (None, s(&p["stage"]), None));
                x.transitions
                    .entry(customer.clone())
                    .or_default()
                    .push(s(&p["stage"]));
            }
            "OwnerAssigned" | "ClaimedFromPool" | "OwnershipTransferred" => {
                close(&mut x);
                let m = s(p.get("manager_id").unwrap_or(&p["to_manager"]));
                open.insert(customer.clone(), x.periods.len());
                x.periods.push((customer.clone(), m.clone(), at, None));
                x.customers.get_mut(&customer).unwrap().0 = Some(m);
            }
            "ReleasedToPool" => {
                close(&mut x);
                x.customers.get_mut(&customer).unwrap().0 = None;
            }
            "ContactRecorded" => {
                x.customers.get_mut(&customer).unwrap().2 = Some(us(&p["contacted_at"]));
                *x.contacts_by_manager
                    .entry(s(&p["manager_id"]))
                    .or_default() += 1;
            }
            "LifecycleStageChanged" => {
                x.customers.get_mut(&customer).unwrap().1 = s(&p["to"]);
                x.transitions
                    .entry(customer.clone())
                    .or_default()
                    .push(s(&p["to"]));
            }
            "ComplaintLogged" => {
                x.complaints.insert(
                    s(&p["complaint_id"]),
                    (p["owner"].as_str().map(str::to_string), None, 0, 0, None),
                );
            }
            "ComplaintAcknowledged" => {
                x.complaints.get_mut(&s(&p["complaint_id"])).unwrap().1 =
                    p["response_seconds"].as_i64();
            }
            "ComplaintResolved" => x.complaints.get_mut(&s(&p["complaint_id"])).unwrap().2 += 1,
            "ComplaintReopened" => x.complaints.get_mut(&s(&p["complaint_id"])).unwrap().3 += 1,
            "ComplaintClosed" => {
                x.complaints.get_mut(&s(&p["complaint_id"])).unwrap().4 =
                    p["satisfaction"].as_i64();
            }
            _ => {}
        }
    }
    x.periods.sort();
    x
}

/// The same shape, read from a read-model database.
async fn observed(read: &ReadStore) -> Expected {
    let mut x = Expected::default();
    for c in read.customers("", i64::MAX).await.unwrap() {
        let timeline = read.timeline(&c.customer_id, 0, i64::MAX).await.unwrap();
        x.timelines.insert(
            c.customer_id.clone(),
            timeline
                .into_iter()
                .rev()
                .map(|t| (t.version, t.event_type))
                .collect(),
        );
        x.customers
            .insert(c.customer_id, (c.owner_id, c.stage, c.last_contact_at_us));
    }
    x.periods = read
        .all_periods()
        .await
        .unwrap()
        .into_iter()
        .map(|p| (p.customer_id, p.manager_id, p.from_us, p.to_us))
        .collect();
    x.periods.sort();
    let facts = read.facts().await.unwrap();
    for c in facts.contacts {
        *x.contacts_by_manager.entry(c.manager_id).or_default() += 1;
    }
    for k in facts.complaints {
        x.complaints.insert(
            k.complaint_id,
            (
                k.owner_id,
                k.first_response_s,
                k.resolutions,
                k.reopens,
                k.satisfaction,
            ),
        );
    }
    for t in facts.transitions {
        x.transitions
            .entry(t.customer_id)
            .or_default()
            .push(t.to_stage);
    }
    x
}

async fn get_json(http: &reqwest::Client, url: String) -> Value {
    http.get(url).send().await.unwrap().json().await.unwrap()
}

async fn applied(read: &ReadStore) -> i64 {
    read.checkpoints()
        .await
        .unwrap()
        .iter()
        .map(|c| c.events_applied)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_thousand_commands_to_read_models_with_projector_kills() {
    crm_integration_tests::binary("crm-projector");
    let platform = Platform::new().await;
    let prefix = platform.stream.spec.subjects.prefix().to_string();
    let steady_db = TestDatabase::create().await;
    let killed_db = TestDatabase::create().await;
    let projector_env = |db: &TestDatabase, group: &str| {
        let mut env = platform.env();
        env.push(("CRM_READ_URL", db.url.clone()));
        env.push(("CRM_PROJECTOR_GROUP", group.to_string()));
        env.push(("CRM_HTTP_ADDR", "127.0.0.1:0".to_string()));
        env.push(("CRM_PROJECTOR_ACK_WAIT", "2".to_string()));
        env
    };

    let mut service = Service::start(
        "crm-command-service",
        &["--http-addr", "127.0.0.1:0"],
        &platform.env(),
    );
    let mut relay = Service::start("crm-relay", &[], &platform.env());
    let base = service.http_base().await;
    relay.wait_ready().await;
    let mut steady = Service::start("crm-projector", &[], &projector_env(&steady_db, "steady"));
    steady.wait_ready().await;
    let flaky_env = projector_env(&killed_db, "flaky");
    let flaky = Arc::new(Mutex::new(Service::start("crm-projector", &[], &flaky_env)));

    // Kill the flaky projector at random moments while the load runs.
    let done = Arc::new(AtomicBool::new(false));
    let kills = Arc::new(AtomicUsize::new(0));
    let killer = {
        let (done, kills, flaky, env) = (
            done.clone(),
            kills.clone(),
            flaky.clone(),
            flaky_env.clone(),
        );
        tokio::spawn(async move {
            let mut rng = SmallRng::seed_from_u64(crm_eventstore::conformance::seed());
            while !done.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(rng.gen_range(300..2_000))).await;
                flaky.lock().unwrap().kill();
                kills.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(rng.gen_range(0..500))).await;
                *flaky.lock().unwrap() = Service::start("crm-projector", &[], &env);
            }
        })
    };

    let nats = crm_bus::testing::connect().await;
    let http = reqwest::Client::new();
    let (setup, main) = workload(crm_eventstore::conformance::seed());
    let started = Instant::now();
    let (a1, r1) = drive(&nats, &http, &base, &prefix, setup).await;
    assert_eq!(r1, 0, "registrations are all valid");
    let (a2, r2) = drive(&nats, &http, &base, &prefix, main).await;
    let sent = a1 + r1 + a2 + r2;
    assert!(sent > 20_000);
    done.store(true, Ordering::Relaxed);
    killer.await.unwrap();
    println!(
        "{sent} commands ({} accepted, {} refused) in {:.1} s; flaky projector SIGKILLed {} times",
        a1 + a2,
        r1 + r2,
        started.elapsed().as_secs_f64(),
        kills.load(Ordering::Relaxed)
    );

    // Everything stored reaches both read models, each event applied once.
    let store = PgEventStore::connect(&platform.db.url, 2).await.unwrap();
    // Every command was answered, so every event is committed; the commit-safe log may
    // still be held back a moment by transactions elsewhere in the cluster (the
    // projectors'), so wait until it shows them all.
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(store.pool())
        .await
        .unwrap();
    let events = crm_eventstore::conformance::all_events(&store, total as usize).await;
    assert_eq!(events.len() as i64, total);
    let steady_read = ReadStore::connect(&steady_db.url, 2).await.unwrap();
    let killed_read = ReadStore::connect(&killed_db.url, 2).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (a, b) = (applied(&steady_read).await, applied(&killed_read).await);
        assert!(
            a <= total && b <= total,
            "applied {a} and {b} of {total}: something twice"
        );
        if a == total && b == total {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after 120 s the read models hold {a} and {b} of {total} events"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let expected = fold(&events);
    assert_eq!(expected.customers.len(), CUSTOMERS);
    for (name, read) in [("steady", &steady_read), ("killed", &killed_read)] {
        let got = observed(read).await;
        assert_eq!(got.customers, expected.customers, "{name}: customers");
        assert_eq!(got.periods, expected.periods, "{name}: ownership periods");
        assert_eq!(got.timelines, expected.timelines, "{name}: timelines");
        assert_eq!(
            got.contacts_by_manager, expected.contacts_by_manager,
            "{name}: contacts"
        );
        assert_eq!(got.complaints, expected.complaints, "{name}: complaints");
        assert_eq!(
            got.transitions, expected.transitions,
            "{name}: stage transitions"
        );
    }
    println!(
        "{total} events: both read models match the independent fold ({} customers, {} ownership periods, {} complaints)",
        expected.customers.len(),
        expected.periods.len(),
        expected.complaints.len()
    );

    // The product's own check agrees: 0 differing rows in every read model.
    for projection in ["ownership", "timeline", "analytics"] {
        let out = std::process::Command::new(crm_integration_tests::binary("crm"))
            .args(["projections", "verify", projection])
            .env("CRM_STORE_URL", &platform.db.url)
            .env("CRM_READ_URL", &killed_db.url)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "verify {projection}:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains(": 0 differing rows"), "{stdout}");
    }

    // And users see it through the query service.
    let mut query = Service::start(
        "crm-query",
        &["--http-addr", "127.0.0.1:0"],
        &[
            ("CRM_READ_URL", killed_db.url.clone()),
            ("CRM_STORE_URL", platform.db.url.clone()),
        ],
    );
    let qbase = query.http_base().await;
    for (customer, (owner, stage, _)) in expected.customers.iter().take(50) {
        let c = get_json(&http, format!("{qbase}/v1/customers/{customer}")).await;
        assert_eq!(c["owner_id"].as_str(), owner.as_deref());
        assert_eq!(c["stage"].as_str(), Some(stage.as_str()));
    }
    let kpis = http
        .get(format!("{qbase}/v1/kpis?level=team"))
        .send()
        .await
        .unwrap();
    assert_eq!(kpis.status().as_u16(), 200);
    let kpis: Value = kpis.json().await.unwrap();
    let contacts: i64 = kpis["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["contacts"].as_i64().unwrap())
        .sum();
    assert_eq!(
        contacts as usize,
        expected.contacts_by_manager.values().sum::<usize>()
    );

    // The funnel the service answers (aggregated by PostgreSQL) is the reference
    // computation over every fact of the read model.
    {
        use crm_projections::funnel::{self, Slice};
        let facts = killed_read.facts().await.unwrap();
        let at = Utc::now().timestamp_micros() - 1_000_000;
        let as_of = chrono::DateTime::from_timestamp_micros(at)
            .unwrap()
            .to_rfc3339();
        let checks = [
            (
                "stages?slice=team".to_string(),
                serde_json::to_value(funnel::stage_counts(&facts, None, Slice::Team)),
            ),
            (
                format!("stages?slice=region&as_of={}", as_of.replace('+', "%2B")),
                serde_json::to_value(funnel::stage_counts(&facts, Some(at), Slice::Region)),
            ),
            (
                "conversion?slice=team".into(),
                serde_json::to_value(funnel::conversion(&facts, Slice::Team)),
            ),
            (
                "time-in-stage?slice=first_touch_channel".into(),
                serde_json::to_value(funnel::time_in_stage(&facts, Slice::FirstTouchChannel)),
            ),
        ];
        for (question, reference) in checks {
            let answer = get_json(&http, format!("{qbase}/v1/funnel/{question}")).await;
            // Through JSON text, as the answer came (serde_json's float parsing is not
            // exactly rounding, so compare what both parse to from the same text).
            let reference: Value = serde_json::from_str(&reference.unwrap().to_string()).unwrap();
            assert_eq!(answer["items"], reference, "funnel/{question}");
        }
    }

    // The latency benchmark asks the same service every kind of question and gets answers.
    let out = std::process::Command::new(crm_integration_tests::binary("crm"))
        .args(["bench", "queries", "--samples", "30", "--book-samples", "2"])
        .args(["--query-url", &qbase, "--read-url", &killed_db.url])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "crm bench queries:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!(
            "30 customers drawn of {}",
            expected.customers.len()
        )),
        "{stdout}"
    );
    for question in [
        "read model",
        "replayed from the store",
        "timeline",
        "funnel",
        "KPIs",
    ] {
        assert!(stdout.contains(question), "{question}: {stdout}");
    }
    assert!(service.is_running() && relay.is_running() && steady.is_running());
}

//! Invariants over random command sequences. The harness plays the application: it
//! keeps each manager's holdings and the unique keys from the events, and passes them to
//! `decide` exactly as the command handler does.

mod support;

use std::collections::{BTreeMap, HashMap};

use chrono::Duration;
use crm_domain::customer::*;
use crm_domain::*;
use proptest::prelude::*;
use support::*;
use uuid::Uuid;

const CUSTOMERS: u128 = 5;
const MANAGERS: u128 = 2;
const LIMIT: u32 = 2;

#[derive(Debug, Clone)]
enum Op {
    Register {
        c: u128,
        phone: u8,
    },
    Assign {
        c: u128,
        m: u128,
    },
    Transfer {
        c: u128,
        m: u128,
    },
    Release {
        c: u128,
    },
    Claim {
        c: u128,
        m: u128,
    },
    Contact {
        c: u128,
        m: u128,
        sms: bool,
        reached: bool,
    },
    Log {
        c: u128,
        k: u128,
        critical: bool,
    },
    Ack {
        c: u128,
        k: u128,
    },
    Escalate {
        c: u128,
        k: u128,
    },
    Resolve {
        c: u128,
        k: u128,
    },
    Reopen {
        c: u128,
        k: u128,
    },
    Close {
        c: u128,
        k: u128,
    },
    Purchase {
        c: u128,
        p: u128,
    },
    Stage {
        c: u128,
        to: usize,
    },
    UpdatePhone {
        c: u128,
        phone: u8,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let c = 0..CUSTOMERS;
    let m = 0..MANAGERS;
    let k = 0..3u128;
    prop_oneof![
        1 => (c.clone(), 0..6u8).prop_map(|(c, phone)| Op::Register { c, phone }),
        4 => (c.clone(), m.clone()).prop_map(|(c, m)| Op::Assign { c, m }),
        3 => (c.clone(), m.clone()).prop_map(|(c, m)| Op::Transfer { c, m }),
        2 => c.clone().prop_map(|c| Op::Release { c }),
        3 => (c.clone(), m.clone()).prop_map(|(c, m)| Op::Claim { c, m }),
        2 => (c.clone(), m.clone(), any::<bool>(), any::<bool>()).prop_map(|(c, m, sms, reached)| Op::Contact { c, m, sms, reached }),
        3 => (c.clone(), k.clone(), any::<bool>()).prop_map(|(c, k, critical)| Op::Log { c, k, critical }),
        2 => (c.clone(), k.clone()).prop_map(|(c, k)| Op::Ack { c, k }),
        2 => (c.clone(), k.clone()).prop_map(|(c, k)| Op::Escalate { c, k }),
        3 => (c.clone(), k.clone()).prop_map(|(c, k)| Op::Resolve { c, k }),
        2 => (c.clone(), k.clone()).prop_map(|(c, k)| Op::Reopen { c, k }),
        3 => (c.clone(), k.clone()).prop_map(|(c, k)| Op::Close { c, k }),
        2 => (c.clone(), 0..4u128).prop_map(|(c, p)| Op::Purchase { c, p }),
        2 => (c.clone(), 0..LifecycleStage::ALL.len()).prop_map(|(c, to)| Op::Stage { c, to }),
        1 => (c, 0..6u8).prop_map(|(c, phone)| Op::UpdatePhone { c, phone }),
    ]
}

fn phone(n: u8) -> String {
    format!("1390000000{n}")
}

fn command(op: &Op) -> (CustomerCommand, Option<u128>) {
    use CustomerCommand as C;
    match *op {
        Op::Register { c, phone: p } => {
            let mut r = register(c);
            r.phone = Some(phone(p));
            r.consents = Some(Consents {
                sms: c % 2 == 0,
                email: false,
                phone: true,
            });
            (C::Register(r), None)
        }
        Op::Assign { c, m } => (
            C::AssignOwner(AssignOwner {
                customer_id: cid(c),
                manager_id: mid(m),
                reason: "r".into(),
            }),
            Some(m),
        ),
        Op::Transfer { c, m } => (
            C::TransferOwner(TransferOwner {
                customer_id: cid(c),
                to_manager_id: mid(m),
                reason: "r".into(),
            }),
            Some(m),
        ),
        Op::Release { c } => (
            C::ReleaseToPool(ReleaseToPool {
                customer_id: cid(c),
                reason: "r".into(),
            }),
            None,
        ),
        Op::Claim { c, m } => (
            C::ClaimFromPool(ClaimFromPool {
                customer_id: cid(c),
                manager_id: mid(m),
            }),
            Some(m),
        ),
        Op::Contact { c, m, sms, reached } => (
            C::RecordContact(RecordContact {
                customer_id: cid(c),
                contact_id: ContactId::new(Uuid::from_u128(c * 100 + m)),
                manager_id: mid(m),
                channel: if sms {
                    ContactChannel::Sms
                } else {
                    ContactChannel::Phone
                },
                direction: Direction::Outbound,
                outcome: if reached {
                    ContactOutcome::Reached
                } else {
                    ContactOutcome::NoAnswer
                },
                summary: None,
                next_follow_up_at: None,
                occurred_at: None,
            }),
            None,
        ),
        Op::Log { c, k, critical } => (
            C::LogComplaint(LogComplaint {
                customer_id: cid(c),
                complaint_id: kid(k),
                severity: if critical {
                    Severity::Critical
                } else {
                    Severity::Low
                },
                category: "service".into(),
                description: "slow".into(),
                channel: ContactChannel::Phone,
            }),
            None,
        ),
        Op::Ack { c, k } => (
            C::AcknowledgeComplaint(AcknowledgeComplaint {
                customer_id: cid(c),
                complaint_id: kid(k),
                by: mid(0),
            }),
            None,
        ),
        Op::Escalate { c, k } => (
            C::EscalateComplaint(EscalateComplaint {
                customer_id: cid(c),
                complaint_id: kid(k),
                reason: "r".into(),
            }),
            None,
        ),
        Op::Resolve { c, k } => (
            C::ResolveComplaint(ResolveComplaint {
                customer_id: cid(c),
                complaint_id: kid(k),
                resolved_by: mid(1),
                resolution: "done".into(),
            }),
            None,
        ),
        Op::Reopen { c, k } => (
            C::ReopenComplaint(ReopenComplaint {
                customer_id: cid(c),
                complaint_id: kid(k),
                reason: "r".into(),
            }),
            None,
        ),
        Op::Close { c, k } => (
            C::CloseComplaint(CloseComplaint {
                customer_id: cid(c),
                complaint_id: kid(k),
                satisfaction: Some(3),
            }),
            None,
        ),
        Op::Purchase { c, p } => (
            C::RecordPurchase(RecordPurchase {
                customer_id: cid(c),
                purchase_id: PurchaseId::new(Uuid::from_u128(c * 10 + p)),
                product_line: "deposit".into(),
                amount_minor: 1000,
                currency: "CNY".into(),
                manager_id: None,
            }),
            None,
        ),
        Op::Stage { c, to } => (
            C::ChangeLifecycleStage(ChangeLifecycleStage {
                customer_id: cid(c),
                to: LifecycleStage::ALL[to],
                reason: "r".into(),
            }),
            None,
        ),
        Op::UpdatePhone { c, phone: p } => (
            C::UpdateProfile(UpdateProfile {
                customer_id: cid(c),
                phone: Some(phone(p)),
                ..UpdateProfile::default()
            }),
            None,
        ),
    }
}

/// What the application keeps beside the aggregates.
#[derive(Default)]
struct World {
    streams: BTreeMap<u128, Vec<CustomerEvent>>,
    states: BTreeMap<u128, CustomerState>,
    holdings: HashMap<ManagerId, u32>,
    keys: HashMap<UniqueKey, CustomerId>,
}

impl World {
    fn context(
        &self,
        minute: i64,
        target: Option<u128>,
        state: &CustomerState,
        cmd: &CustomerCommand,
    ) -> DecisionContext {
        let mut ctx = ctx(minute);
        if let Some(m) = target {
            let mut view = manager(m, *self.holdings.get(&mid(m)).unwrap_or(&0), LIMIT);
            view.id = mid(m);
            ctx = ctx.with_manager(view);
        }
        // Duplicate lookup as the handler does it: keys the command would claim.
        if let Ok(events) = decide(state, cmd, &ctx) {
            let next = events.iter().fold(state.clone(), evolve);
            for key in next.unique_keys() {
                if let Some(owner) = self.keys.get(&key) {
                    if *owner != cmd.customer_id() {
                        ctx = ctx.with_duplicate(DuplicateMatch {
                            existing: *owner,
                            key,
                        });
                    }
                }
            }
        }
        ctx
    }

    fn record(&mut self, c: u128, events: &[CustomerEvent]) {
        let state = self.states.entry(c).or_default();
        let before = state.unique_keys();
        for e in events {
            state.apply(e);
            match e {
                CustomerEvent::OwnerAssigned(e) => {
                    *self.holdings.entry(e.manager_id).or_default() += 1
                }
                CustomerEvent::ClaimedFromPool(e) => {
                    *self.holdings.entry(e.manager_id).or_default() += 1
                }
                CustomerEvent::OwnershipTransferred(e) => {
                    *self.holdings.entry(e.from_manager).or_default() -= 1;
                    *self.holdings.entry(e.to_manager).or_default() += 1;
                }
                CustomerEvent::ReleasedToPool(e) => {
                    *self.holdings.entry(e.previous_owner).or_default() -= 1
                }
                _ => {}
            }
        }
        for k in before {
            self.keys.remove(&k);
        }
        for k in state.unique_keys() {
            self.keys.insert(k, cid(c));
        }
        self.streams.entry(c).or_default().extend_from_slice(events);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn invariants_hold_over_random_histories(ops in proptest::collection::vec(op(), 1..120)) {
        let mut world = World::default();
        // Everyone registered first (phones may collide later through updates).
        let registrations = (0..CUSTOMERS).map(|c| Op::Register { c, phone: c as u8 });
        for (i, op) in registrations.chain(ops.iter().cloned()).enumerate() {
            let op = &op;
            let (cmd, target) = command(op);
            let c = cmd.customer_id().as_uuid().as_u128() - 0xC000;
            let state = world.states.get(&c).cloned().unwrap_or_default();
            let ctx = world.context(i as i64, target, &state, &cmd);
            match decide(&state, &cmd, &ctx) {
                Ok(events) => {
                    prop_assert!(!events.is_empty(), "an accepted command records a fact");
                    for e in &events {
                        prop_assert_eq!(e.customer_id(), cmd.customer_id());
                        // (f) every event round-trips through its stored form
                        let back = CustomerEvent::decode(e.event_type(), CustomerEvent::SCHEMA_VERSION, &e.payload()).unwrap();
                        prop_assert_eq!(&back, e);
                        // (e) a closed complaint never changes again
                        if let Some(k) = complaint_of(e) {
                            if let Some(before) = state.registered().and_then(|s| s.complaints.get(&k)) {
                                prop_assert_ne!(before.status, ComplaintStatus::Closed, "{:?} on a closed complaint", e);
                            }
                        }
                    }
                    world.record(c, &events);
                }
                Err(err) => {
                    // (d) a refusal changes nothing: the world is untouched by construction;
                    // check the refusal is typed and explains itself.
                    prop_assert!(!err.code().is_empty() && !err.to_string().is_empty());
                }
            }
            // (b) holding limits are never exceeded
            for (m, h) in &world.holdings {
                prop_assert!(*h <= LIMIT, "manager {} holds {} > {}", m, h, LIMIT);
            }
        }
        // (a) folding each stream from scratch gives the incrementally built state
        for (c, events) in &world.streams {
            prop_assert_eq!(&fold(events), &world.states[c]);
        }
        // (c) one owner at a time, and holdings equal the owners' portfolio sizes
        let mut owned: HashMap<ManagerId, u32> = HashMap::new();
        for s in world.states.values() {
            if let Some(o) = s.owner() {
                *owned.entry(o).or_default() += 1;
            }
        }
        for m in 0..MANAGERS {
            prop_assert_eq!(owned.get(&mid(m)).copied().unwrap_or(0), world.holdings.get(&mid(m)).copied().unwrap_or(0));
        }
        // no two customers share a key
        let mut seen = HashMap::new();
        for (c, s) in &world.states {
            for k in s.unique_keys() {
                prop_assert!(seen.insert(k.clone(), *c).is_none(), "duplicate key {}", k);
            }
        }
    }
}

fn complaint_of(e: &CustomerEvent) -> Option<ComplaintId> {
    match e {
        CustomerEvent::ComplaintAcknowledged(e) => Some(e.complaint_id),
        CustomerEvent::ComplaintEscalated(e) => Some(e.complaint_id),
        CustomerEvent::ComplaintResolved(e) => Some(e.complaint_id),
        CustomerEvent::ComplaintReopened(e) => Some(e.complaint_id),
        CustomerEvent::ComplaintClosed(e) => Some(e.complaint_id),
        _ => None,
    }
}

#[test]
fn time_only_comes_from_the_context() {
    // The same command on the same state at two instants differs only in the instants.
    let a = decide(
        &CustomerState::default(),
        &CustomerCommand::Register(register(1)),
        &ctx(0),
    )
    .unwrap();
    let b = decide(
        &CustomerState::default(),
        &CustomerCommand::Register(register(1)),
        &ctx(0),
    )
    .unwrap();
    assert_eq!(a, b, "deterministic");
    let later = DecisionContext::new(at(0) + Duration::days(1), Actor::person("tester"));
    let c = decide(
        &CustomerState::default(),
        &CustomerCommand::Register(register(1)),
        &later,
    )
    .unwrap();
    assert_ne!(a, c);
}

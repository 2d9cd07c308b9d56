//! The seeded workloads W1 and W2, generated one command at a time so that W2 (1,000,000
//! customers, 10,000,000 commands) never sits in memory as a list.
//!
//! Setup registers the managers, then the customers. The main phase is 60 % contacts,
//! 20 % assign/transfer and 20 % complaint steps (log → acknowledge → resolve → close)
//! on customers picked uniformly at random. Ownership is tracked as the generator
//! believes it, so most commands are valid; with many in flight a few race and are
//! refused, as in life.

use crm_domain::customer::*;
use crm_domain::manager::{ManagerCommand, RegisterManager};
use crm_domain::*;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use uuid::Uuid;

/// A named workload's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size {
    pub managers: usize,
    pub customers: usize,
    pub commands: usize,
}

/// W1 (issue 3): 200 managers, 10,000 customers, 100,000 commands.
pub const W1: Size = Size {
    managers: 200,
    customers: 10_000,
    commands: 100_000,
};

/// W2: 1,000 managers, 1,000,000 customers, 10,000,000 commands.
pub const W2: Size = Size {
    managers: 1_000,
    customers: 1_000_000,
    commands: 10_000_000,
};

/// What the generator believes about a customer: owner (manager index) and complaints
/// with the step each has reached (0 logged … 3 closed).
struct Belief {
    id: CustomerId,
    owner: Option<u32>,
    complaints: Vec<(ComplaintId, u8)>,
}

pub struct Workload {
    rng: SmallRng,
    managers: Vec<ManagerId>,
    customers: Vec<Belief>,
    /// Setup commands handed out so far (managers first, then customers).
    setup_next: usize,
    issued: usize,
    /// Mobile prefix (130–199) taken from the seed: phone numbers are unique per
    /// customer, and runs with different seeds can share one store.
    phone_prefix: u64,
}

impl Workload {
    pub fn new(customers: usize, managers: usize, seed: u64) -> Self {
        // Time-ordered ids, as the services' clients make them; the seed decides what
        // happens to whom.
        let managers = (0..managers)
            .map(|_| ManagerId::new(Uuid::now_v7()))
            .collect();
        let customers = (0..customers)
            .map(|_| Belief {
                id: CustomerId::new(Uuid::now_v7()),
                owner: None,
                complaints: Vec::new(),
            })
            .collect();
        Self {
            rng: SmallRng::seed_from_u64(seed),
            managers,
            customers,
            setup_next: 0,
            issued: 0,
            phone_prefix: 130 + seed % 70,
        }
    }

    pub fn sized(size: Size, seed: u64) -> Self {
        Self::new(size.customers, size.managers, seed)
    }

    /// Commands generated so far.
    pub fn issued(&self) -> usize {
        self.issued
    }

    /// The whole setup phase as a list (for the smaller benchmarks).
    pub fn setup(&mut self) -> Vec<Command> {
        std::iter::from_fn(|| self.next_setup()).collect()
    }

    /// `n` main-phase commands as a list.
    pub fn main(&mut self, n: usize) -> Vec<Command> {
        (0..n).map(|_| self.next_main()).collect()
    }

    /// The next registration, or `None` when every manager and customer is registered.
    pub fn next_setup(&mut self) -> Option<Command> {
        let i = self.setup_next;
        let command = if let Some(m) = self.managers.get(i) {
            ManagerCommand::Register(RegisterManager {
                manager_id: *m,
                name: format!("Manager {i}"),
                role: ManagerRole::Manager,
                team: format!("team-{}", i % 20).parse().expect("team"),
                region: REGIONS[i % 4].parse().expect("region"),
                branch: format!("branch-{}", i % 40).parse().expect("branch"),
                holding_limit: 10_000,
            })
            .into()
        } else {
            let i = i - self.managers.len();
            let c = self.customers.get(i)?;
            CustomerCommand::Register(RegisterCustomer {
                customer_id: c.id,
                customer_type: CustomerType::Individual,
                display_name: format!("Customer {i}"),
                phone: Some(format!("+86{}{i:08}", self.phone_prefix)),
                email: None,
                registration_number: None,
                region: REGIONS[i % 4].parse().expect("region"),
                branch: None,
                first_touch_channel: FirstTouchChannel::ALL[i % FirstTouchChannel::ALL.len()],
                industry: None,
                product_interest: None,
                consents: Some(Consents {
                    sms: true,
                    email: true,
                    phone: true,
                }),
                stage: None,
                value_tier: None,
                aum_minor: None,
            })
            .into()
        };
        self.setup_next += 1;
        self.issued += 1;
        Some(command)
    }

    /// The next main-phase command.
    pub fn next_main(&mut self) -> Command {
        let ci = self.rng.gen_range(0..self.customers.len());
        let roll: f64 = self.rng.gen();
        let m = self.rng.gen_range(0..self.managers.len());
        let managers = self.managers.len();
        let b = &mut self.customers[ci];
        let c = b.id;
        let by = self.managers[b.owner.map_or(m, |o| o as usize)];
        self.issued += 1;
        if roll < 0.6 {
            return CustomerCommand::RecordContact(RecordContact {
                customer_id: c,
                contact_id: ContactId::new(Uuid::now_v7()),
                manager_id: by,
                channel: ContactChannel::Phone,
                direction: Direction::Outbound,
                outcome: ContactOutcome::Reached,
                summary: None,
                next_follow_up_at: None,
                occurred_at: None,
            })
            .into();
        }
        if roll < 0.8 {
            return match b.owner {
                None => {
                    b.owner = Some(m as u32);
                    CustomerCommand::AssignOwner(AssignOwner {
                        customer_id: c,
                        manager_id: self.managers[m],
                        reason: "load".into(),
                    })
                    .into()
                }
                Some(o) => {
                    let to = if o as usize == m {
                        (m + 1) % managers
                    } else {
                        m
                    };
                    b.owner = Some(to as u32);
                    CustomerCommand::TransferOwner(TransferOwner {
                        customer_id: c,
                        to_manager_id: self.managers[to],
                        reason: "load".into(),
                    })
                    .into()
                }
            };
        }
        // Closed complaints are forgotten: the belief stays small over 10M commands.
        b.complaints.retain(|(_, step)| *step < 3);
        match b.complaints.first_mut() {
            None => {
                let k = ComplaintId::new(Uuid::now_v7());
                b.complaints.push((k, 0));
                CustomerCommand::LogComplaint(LogComplaint {
                    customer_id: c,
                    complaint_id: k,
                    severity: Severity::Normal,
                    category: "service".into(),
                    description: "load".into(),
                    channel: ContactChannel::Phone,
                })
                .into()
            }
            Some((k, step)) => {
                *step += 1;
                let k = *k;
                match *step {
                    1 => CustomerCommand::AcknowledgeComplaint(AcknowledgeComplaint {
                        customer_id: c,
                        complaint_id: k,
                        by,
                    })
                    .into(),
                    2 => CustomerCommand::ResolveComplaint(ResolveComplaint {
                        customer_id: c,
                        complaint_id: k,
                        resolved_by: by,
                        resolution: "done".into(),
                    })
                    .into(),
                    _ => CustomerCommand::CloseComplaint(CloseComplaint {
                        customer_id: c,
                        complaint_id: k,
                        satisfaction: Some(4),
                    })
                    .into(),
                }
            }
        }
    }
}

const REGIONS: [&str; 4] = ["east", "north", "south", "west"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setup_registers_every_manager_then_every_customer_once() {
        let mut w = Workload::new(50, 5, 1);
        let setup = w.setup();
        assert_eq!(setup.len(), 55);
        assert!(setup[..5].iter().all(|c| c.name() == "register_manager"));
        assert!(setup[5..].iter().all(|c| c.name() == "register_customer"));
        assert!(w.next_setup().is_none());
        assert_eq!(w.issued(), 55);
    }

    #[test]
    fn the_mix_is_sixty_twenty_twenty() {
        let mut w = Workload::new(1_000, 20, 2);
        w.setup();
        let mut by_kind = std::collections::BTreeMap::<&str, usize>::new();
        for _ in 0..20_000 {
            let name = w.next_main().name();
            let kind = match name {
                "record_contact" => "contact",
                "assign_owner" | "transfer_owner" => "ownership",
                _ => "complaint",
            };
            *by_kind.entry(kind).or_default() += 1;
        }
        let share = |k| by_kind[k] as f64 / 20_000.0;
        assert!((share("contact") - 0.6).abs() < 0.02, "{by_kind:?}");
        assert!((share("ownership") - 0.2).abs() < 0.02, "{by_kind:?}");
        assert!((share("complaint") - 0.2).abs() < 0.02, "{by_kind:?}");
    }

    #[test]
    fn one_seed_one_sequence_of_commands() {
        let kinds = |seed| {
            let mut w = Workload::new(100, 3, seed);
            w.setup();
            (0..500).map(|_| w.next_main().name()).collect::<Vec<_>>()
        };
        assert_eq!(kinds(9), kinds(9));
        assert_ne!(kinds(9), kinds(10));
    }
}

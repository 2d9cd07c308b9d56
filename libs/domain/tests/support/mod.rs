//! given/when/then for the customer aggregate, and builders for the tests.
#![allow(dead_code)]

use chrono::{DateTime, Duration, TimeZone, Utc};
use crm_domain::customer::*;
use crm_domain::*;
use uuid::Uuid;

pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 25, 9, 0, 0).unwrap()
}

pub fn at(minutes: i64) -> DateTime<Utc> {
    t0() + Duration::minutes(minutes)
}

pub fn cid(n: u128) -> CustomerId {
    CustomerId::new(Uuid::from_u128(0xC000 + n))
}

pub fn mid(n: u128) -> ManagerId {
    ManagerId::new(Uuid::from_u128(0xA000 + n))
}

pub fn kid(n: u128) -> ComplaintId {
    ComplaintId::new(Uuid::from_u128(0xB000 + n))
}

pub fn ctx(minutes: i64) -> DecisionContext {
    DecisionContext::new(at(minutes), Actor::person("tester"))
}

pub fn manager(n: u128, holdings: u32, limit: u32) -> ManagerView {
    ManagerView {
        id: mid(n),
        active: true,
        role: ManagerRole::Manager,
        team: "east-1".parse().unwrap(),
        region: "east".parse().unwrap(),
        branch: "sh-01".parse().unwrap(),
        holding_limit: limit,
        holdings,
    }
}

pub fn register(n: u128) -> RegisterCustomer {
    RegisterCustomer {
        customer_id: cid(n),
        customer_type: CustomerType::Individual,
        display_name: format!("Customer {n}"),
        phone: Some(format!("1380013{:04}", n)),
        email: None,
        registration_number: None,
        region: "east".parse().unwrap(),
        branch: None,
        first_touch_channel: FirstTouchChannel::Branch,
        industry: None,
        product_interest: None,
        consents: None,
        stage: None,
        value_tier: None,
        aum_minor: None,
    }
}

/// The events of a registration as `decide` produces them.
pub fn registered(n: u128) -> Vec<CustomerEvent> {
    decide(
        &CustomerState::default(),
        &CustomerCommand::Register(register(n)),
        &ctx(0),
    )
    .unwrap()
}

pub fn registered_with_sms(n: u128) -> Vec<CustomerEvent> {
    let mut r = register(n);
    r.consents = Some(Consents {
        sms: true,
        email: false,
        phone: true,
    });
    decide(
        &CustomerState::default(),
        &CustomerCommand::Register(r),
        &ctx(0),
    )
    .unwrap()
}

pub fn owned_by(n: u128, m: u128) -> Vec<CustomerEvent> {
    let mut events = registered(n);
    let state = fold(&events);
    events.extend(
        decide(
            &state,
            &CustomerCommand::AssignOwner(AssignOwner {
                customer_id: cid(n),
                manager_id: mid(m),
                reason: "new".into(),
            }),
            &ctx(1).with_manager(manager(m, 0, 10)),
        )
        .unwrap(),
    );
    events
}

pub fn fold(events: &[CustomerEvent]) -> CustomerState {
    events.iter().fold(CustomerState::default(), evolve)
}

/// The registered customer `events` fold to (they begin with its registration).
pub fn customer(events: &[CustomerEvent]) -> Customer {
    match fold(events) {
        CustomerState::Registered(c) => *c,
        CustomerState::Unregistered => panic!("the events register no customer"),
    }
}

pub struct Given(pub Vec<CustomerEvent>);

pub fn given(events: impl IntoIterator<Item = CustomerEvent>) -> Given {
    Given(events.into_iter().collect())
}

impl Given {
    pub fn and(mut self, more: impl IntoIterator<Item = CustomerEvent>) -> Self {
        self.0.extend(more);
        self
    }

    /// Decide `command` on the state folded from the given events; the resulting events
    /// are applied too, so the next `when` sees them (chains a scenario).
    pub fn when(self, command: CustomerCommand, ctx: &DecisionContext) -> Then {
        let state = fold(&self.0);
        let result = decide(&state, &command, ctx);
        Then {
            history: self.0,
            result,
        }
    }
}

pub struct Then {
    pub history: Vec<CustomerEvent>,
    pub result: Result<Vec<CustomerEvent>, DomainError>,
}

impl Then {
    pub fn then(self, expected: &[CustomerEvent]) -> Given {
        let events = self
            .result
            .unwrap_or_else(|e| panic!("expected events, refused: {} ({e})", e.code()));
        assert_eq!(events, expected);
        Given(self.history.into_iter().chain(events).collect())
    }

    /// Accepted; returns the events for closer inspection.
    pub fn accepted(self) -> (Given, Vec<CustomerEvent>) {
        let events = self
            .result
            .unwrap_or_else(|e| panic!("expected events, refused: {} ({e})", e.code()));
        (
            Given(self.history.into_iter().chain(events.clone()).collect()),
            events,
        )
    }

    pub fn then_error(self, code: &str) -> DomainError {
        match self.result {
            Ok(events) => panic!("expected refusal {code}, got {events:?}"),
            Err(e) => {
                assert_eq!(e.code(), code, "{e}");
                e
            }
        }
    }
}

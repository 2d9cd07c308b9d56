//! Test helpers: stored events built by hand, the way the store records them.

use chrono::{DateTime, Duration, TimeZone, Utc};
use crm_eventstore::testing::Rng;
use crm_eventstore::{EventMetadata, LogPosition, RecordedEvent};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::store::Prepared;

pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 25, 9, 0, 0).unwrap()
}

/// Builds stored events the way the store records them, one stream version at a time.
#[derive(Default)]
pub struct Log {
    pub events: Vec<RecordedEvent>,
    versions: std::collections::HashMap<String, u64>,
}

impl Log {
    pub fn push(&mut self, stream: &str, event_type: &str, at: DateTime<Utc>, payload: Value) {
        let version = {
            let v = self.versions.entry(stream.to_string()).or_default();
            *v += 1;
            *v
        };
        let n = self.events.len() as u64 + 1;
        self.events.push(RecordedEvent {
            log_position: LogPosition::new(n, n),
            stream_id: stream.to_string(),
            stream_version: version,
            event_id: Uuid::new_v4(),
            event_type: event_type.to_string(),
            schema_version: 1,
            payload,
            metadata: EventMetadata {
                command_id: Uuid::new_v4(),
                correlation_id: Uuid::new_v4(),
                causation_id: None,
                actor: "person:li.wei".into(),
                occurred_at: at,
                recorded_at: at,
            },
            chain_hash: Default::default(),
        });
    }

    pub fn manager(&mut self, id: &str, team: &str) {
        self.manager_named(id, team, "Li Wei");
    }

    pub fn manager_named(&mut self, id: &str, team: &str, name: &str) {
        self.push(
            &format!("manager-{id}"),
            "ManagerRegistered",
            t0(),
            json!({"branch": "sh-01", "holding_limit": 150, "manager_id": id, "name": name,
                   "region": "east", "role": "manager", "team": team}),
        );
    }

    /// A purchase of `amount_minor` (CNY) by customer `c`, credited to `m`.
    pub fn purchase(&mut self, c: &str, m: Option<&str>, amount_minor: i64, at: DateTime<Utc>) {
        self.push(
            &format!("customer-{c}"),
            "PurchaseRecorded",
            at,
            json!({"customer_id": c, "purchase_id": Uuid::new_v4().to_string(),
                   "manager_id": m, "product_line": "wealth", "amount_minor": amount_minor,
                   "currency": "CNY"}),
        );
    }

    pub fn customer(&mut self, id: &str, at: DateTime<Utc>) {
        self.push(
            &format!("customer-{id}"),
            "CustomerRegistered",
            at,
            json!({"aum_minor": 8000000, "branch": "sh-01",
                   "consents": {"email": true, "phone": true, "sms": true}, "customer_id": id,
                   "customer_type": "individual", "display_name": "王芳", "email": null,
                   "first_touch_channel": "web", "industry": null, "phone": null,
                   "product_interest": null, "region": "east", "registered_at": at,
                   "registration_number": null, "stage": "lead", "value_tier": "mid"}),
        );
    }

    pub fn assign(&mut self, c: &str, m: &str, at: DateTime<Utc>) {
        self.push(
            &format!("customer-{c}"),
            "OwnerAssigned",
            at,
            json!({"assigned_by": "person:li.wei", "customer_id": c, "manager_id": m,
                   "previous_owner": null, "reason": "walk-in", "region": "east", "team": "east-1"}),
        );
    }

    pub fn transfer(&mut self, c: &str, from: &str, to: &str, at: DateTime<Utc>) {
        self.push(
            &format!("customer-{c}"),
            "OwnershipTransferred",
            at,
            json!({"customer_id": c, "from_manager": from, "reason": "rebalance",
                   "to_manager": to, "to_region": "north", "to_team": "north-2",
                   "transferred_by": "person:li.wei"}),
        );
    }

    pub fn release(&mut self, c: &str, from: &str, at: DateTime<Utc>) {
        self.push(
            &format!("customer-{c}"),
            "ReleasedToPool",
            at,
            json!({"customer_id": c, "previous_owner": from, "reason": "left the region",
                   "released_by": "person:li.wei"}),
        );
    }

    /// The scheduler warns the owner, then returns the customer to the pool at `at`.
    pub fn pool_return(&mut self, c: &str, from: &str, at: DateTime<Utc>) {
        let stream = format!("customer-{c}");
        self.push(
            &stream,
            "PoolReturnWarned",
            at - Duration::days(3),
            json!({"customer_id": c, "owner": from, "cause": "no_contact",
                   "returns_at": at, "policy_version": 2}),
        );
        self.push(
            &stream,
            "ReleasedToPool",
            at + Duration::minutes(1),
            json!({"customer_id": c, "previous_owner": from,
                   "reason": "no contact by the owner for 30 days",
                   "released_by": "system:scheduler", "at": at + Duration::minutes(1),
                   "rule": {"cause": "no_contact", "due_at": at, "policy_version": 2}}),
        );
    }

    /// A complaint left unanswered: warned, breached, escalated to `lead` by the scheduler.
    pub fn unanswered_complaint(
        &mut self,
        c: &str,
        owner: Option<&str>,
        lead: &str,
        at: DateTime<Utc>,
    ) {
        let k = Uuid::new_v4().to_string();
        let stream = format!("customer-{c}");
        let due = at + Duration::minutes(10);
        self.push(
            &stream,
            "ComplaintLogged",
            at,
            json!({"customer_id": c, "complaint_id": k, "severity": "critical", "category": "fees",
                   "description": "test", "channel": "phone", "owner": owner, "logged_at": at,
                   "first_response_due_at": due,
                   "resolution_due_at": at + Duration::hours(4)}),
        );
        self.push(
            &stream,
            "ComplaintSlaWarned",
            at + Duration::minutes(8),
            json!({"customer_id": c, "complaint_id": k, "clock": "first_response", "due_at": due}),
        );
        self.push(
            &stream,
            "ComplaintSlaBreached",
            due,
            json!({"customer_id": c, "complaint_id": k, "clock": "first_response", "due_at": due,
                   "owner": owner}),
        );
        self.push(
            &stream,
            "ComplaintEscalated",
            due,
            json!({"customer_id": c, "complaint_id": k, "level": 1,
                   "reason": "first-response SLA breached", "escalated_to": lead,
                   "automatic": true}),
        );
    }

    pub fn claim(&mut self, c: &str, m: &str, at: DateTime<Utc>) {
        self.push(
            &format!("customer-{c}"),
            "ClaimedFromPool",
            at,
            json!({"customer_id": c, "manager_id": m, "region": "east", "team": "east-1"}),
        );
    }

    pub fn contact(&mut self, c: &str, m: &str, at: DateTime<Utc>) {
        self.push(
            &format!("customer-{c}"),
            "ContactRecorded",
            at,
            json!({"by_owner": true, "channel": "phone", "contact_id": Uuid::new_v4(),
                   "contacted_at": at, "customer_id": c, "direction": "outbound",
                   "manager_id": m, "next_follow_up_at": at + Duration::days(7),
                   "outcome": "reached", "summary": null}),
        );
    }

    pub fn stage(&mut self, c: &str, from: &str, to: &str, at: DateTime<Utc>) {
        self.push(
            &format!("customer-{c}"),
            "LifecycleStageChanged",
            at,
            json!({"customer_id": c, "from": from, "to": to, "reason": "test",
                   "reactivated": from == "dormant" && to == "active"}),
        );
    }

    /// A complaint logged, answered after `response_s`, resolved after `resolution_s`,
    /// closed with `satisfaction`.
    pub fn complaint(
        &mut self,
        c: &str,
        owner: Option<&str>,
        at: DateTime<Utc>,
        response_s: i64,
        resolution_s: i64,
        satisfaction: u8,
    ) {
        let k = Uuid::new_v4().to_string();
        let stream = format!("customer-{c}");
        self.push(
            &stream,
            "ComplaintLogged",
            at,
            json!({"customer_id": c, "complaint_id": k, "severity": "normal", "category": "fees",
                   "description": "test", "channel": "phone", "owner": owner, "logged_at": at,
                   "first_response_due_at": at + Duration::minutes(10),
                   "resolution_due_at": at + Duration::hours(72)}),
        );
        let by = owner.unwrap_or("01930000-0000-7000-8000-0000000000ff");
        self.push(
            &stream,
            "ComplaintAcknowledged",
            at + Duration::seconds(response_s),
            json!({"customer_id": c, "complaint_id": k, "by": by,
                   "response_seconds": response_s, "within_sla": response_s <= 600}),
        );
        self.push(
            &stream,
            "ComplaintResolved",
            at + Duration::seconds(resolution_s),
            json!({"customer_id": c, "complaint_id": k, "resolved_by": by, "resolution": "refund",
                   "resolution_seconds": resolution_s, "within_sla": resolution_s <= 72 * 3600}),
        );
        self.push(
            &stream,
            "ComplaintClosed",
            at + Duration::seconds(resolution_s + 60),
            json!({"customer_id": c, "complaint_id": k, "satisfaction": satisfaction}),
        );
    }

    pub fn prepared(&self) -> Vec<Prepared> {
        self.events
            .iter()
            .enumerate()
            .map(|(i, e)| Prepared::new(e.clone(), i as u64 + 1))
            .collect()
    }
}

/// Append hand-built events to a real store, one command each, as commands would (each
/// at its stream's version: the store's versions equal the log's).
pub async fn append<S: crm_eventstore::Append>(store: &S, events: &[RecordedEvent]) {
    for e in events {
        let mut meta = crm_eventstore::conformance::meta(Uuid::new_v4());
        meta.issued_at = e.metadata.occurred_at;
        let request = crm_eventstore::AppendRequest::new(meta).write(
            e.stream_id.clone(),
            crm_eventstore::ExpectedVersion::Exact(e.stream_version - 1),
            vec![crm_eventstore::NewEvent {
                event_id: e.event_id,
                event_type: e.event_type.clone(),
                schema_version: 1,
                payload: e.payload.clone(),
            }],
        );
        store.append(request).await.expect("append");
    }
}

/// The random book's picks, on the event store's seeded generator.
trait Picks {
    fn pick_index(&mut self, n: usize) -> usize;
    fn chance(&mut self, percent: u64) -> bool;
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T;
}

impl Picks for Rng {
    fn pick_index(&mut self, n: usize) -> usize {
        self.below(n as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.pick_index(items.len())]
    }
}

/// A seeded random book over `days` from [`t0`]: managers in several teams and regions;
/// customers of every region, channel, type and tier, assigned, transferred, released,
/// returned by the pool rules and claimed; regions and value tiers changed; contacts by
/// owners and others; stage moves forward, skipped, to dormant and reactivated;
/// complaints answered in time, late or
/// never (breached and escalated); referrals made and converted. For comparing the
/// database's aggregates with the reference computations over the facts.
pub fn random_book(seed: u64, customers: usize, days: i64) -> Log {
    random_book_from(seed, customers, days, t0())
}

/// [`random_book`] starting at `start`.
pub fn random_book_from(seed: u64, customers: usize, days: i64, start: DateTime<Utc>) -> Log {
    let mut book = Book::new(seed, BookShape::small(customers, days), start);
    let mut log = Log::default();
    while let Some(page) = book.next_page(10_000) {
        log.events.extend(page);
    }
    log.versions = std::mem::take(&mut book.log.versions);
    log
}

/// The size of a random book.
#[derive(Debug, Clone, Copy)]
pub struct BookShape {
    pub customers: usize,
    pub managers: usize,
    /// Managers per team (teams are spread over three regions).
    pub team_size: usize,
    pub days: i64,
}

impl BookShape {
    /// Twelve managers in four teams: every team and region well populated.
    pub fn small(customers: usize, days: i64) -> Self {
        Self {
            customers,
            managers: 12,
            team_size: 3,
            days,
        }
    }
}

/// A random book generated page by page (a book of millions of events never has to be
/// held at once): see [`random_book`].
pub struct Book {
    rng: Rng,
    log: Log,
    shape: BookShape,
    start: DateTime<Utc>,
    /// (id, team, region)
    managers: Vec<(String, String, &'static str)>,
    /// customer → (owner, stage)
    state: Vec<(Option<usize>, &'static str)>,
    referrals: Vec<(String, String, String, String)>,
    step: usize,
}

/// The instant of step `step` of `steps` spread over `span_us` from `start`. In 128 bits:
/// a year of microseconds times millions of steps overflows 64 (a W2-sized book once
/// spanned 17 scrambled days instead of a year).
fn step_time(start: DateTime<Utc>, span_us: i64, step: usize, steps: usize) -> DateTime<Utc> {
    let offset = i128::from(span_us) * step as i128 / steps.max(1) as i128;
    start + Duration::microseconds(offset as i64)
}

fn book_id(kind: u128, n: usize) -> String {
    Uuid::from_u128((kind << 64) | n as u128).to_string()
}

/// The customer a step of a [`Book`] acts on, and when.
struct On {
    /// Its index in the book's state.
    i: usize,
    c: String,
    stream: String,
    owner: Option<usize>,
    stage: &'static str,
    at: DateTime<Utc>,
}

impl Book {
    pub fn new(seed: u64, shape: BookShape, start: DateTime<Utc>) -> Self {
        const REGIONS: [&str; 4] = ["east", "east", "west", "north"];
        let teams = shape.managers.div_ceil(shape.team_size.max(1)).max(1);
        let managers = (0..shape.managers)
            .map(|i| {
                let team = i % teams;
                let region = REGIONS[team % REGIONS.len()];
                (book_id(0xA, i), format!("{region}-{}", team + 1), region)
            })
            .collect();
        let mut book = Self {
            rng: Rng::new(seed),
            log: Log::default(),
            shape,
            start,
            managers,
            state: Vec::new(),
            referrals: Vec::new(),
            step: 0,
        };
        for (m, team, region) in &book.managers {
            book.log.push(
                &format!("manager-{m}"),
                "ManagerRegistered",
                start - Duration::days(1),
                json!({"branch": format!("{region}-01"), "holding_limit": 500, "manager_id": m,
                       "name": "M", "region": region, "role": "manager", "team": team}),
            );
        }
        book
    }

    /// The next events, at least `min` of them unless the book ends; `None` at its end.
    pub fn next_page(&mut self, min: usize) -> Option<Vec<RecordedEvent>> {
        let steps = self.shape.customers * 12;
        while self.log.events.len() < min && self.step < steps {
            self.next_step(steps);
            self.step += 1;
        }
        (!self.log.events.is_empty()).then(|| std::mem::take(&mut self.log.events))
    }

    /// The events one step of the book adds.
    fn next_step(&mut self, steps: usize) {
        let span_us = self.shape.days * 86_400_000_000;
        let at = step_time(self.start, span_us, self.step, steps);
        if self.state.len() < self.shape.customers
            && (self.step.is_multiple_of(12) || self.state.is_empty())
        {
            self.register(at);
            return;
        }
        let i = self.rng.pick_index(self.state.len());
        let (owner, stage) = self.state[i];
        let c = book_id(0xC, i);
        let on = On {
            i,
            stream: format!("customer-{c}"),
            c,
            owner,
            stage,
            at,
        };
        match self.rng.pick_index(100) {
            0..=11 => self.give(&on),
            12..=15 => self.release(&on),
            16..=55 => self.contact(&on),
            56..=75 => self.move_stage(&on),
            76..=87 => self.complaint(&on),
            92 => self.log.push(
                &on.stream,
                "ProfileUpdated",
                at,
                json!({"customer_id": on.c, "region": self.rng.pick(&["east", "west", "north"])}),
            ),
            93 => self.log.push(
                &on.stream,
                "ValueTierChanged",
                at,
                json!({"customer_id": on.c, "from": "low", "to": self.rng.pick(&["high", "mid", "low"]),
                       "basis_minor": 5_000_000, "policy_version": 1}),
            ),
            88..=91 => self.refer(&on),
            _ => self.convert_referral(at),
        }
    }

    /// A new customer, registered at `at`.
    fn register(&mut self, at: DateTime<Utc>) {
        let rng = &mut self.rng;
        let c = book_id(0xC, self.state.len());
        let stage = *rng.pick(&["lead", "lead", "lead", "contacted", "customer"]);
        let aum = [0, 3_000_000, 8_000_000, 150_000_000][rng.pick_index(4)];
        self.log.push(
            &format!("customer-{c}"),
            "CustomerRegistered",
            at,
            json!({"aum_minor": aum,
                   "branch": null, "consents": {"email": true, "phone": true, "sms": false}, "customer_id": c,
                   "customer_type": rng.pick(&["individual", "individual", "enterprise", "retail"]),
                   "display_name": "C", "email": null,
                   "first_touch_channel": rng.pick(&["web", "app", "phone", "referral", "branch"]),
                   "industry": null, "phone": null, "product_interest": null,
                   "region": rng.pick(&["east", "west", "north"]), "registered_at": at,
                   "registration_number": null, "stage": stage,
                   "value_tier": rng.pick(&["high", "mid", "low"])}),
        );
        self.state.push((None, stage));
    }

    /// The customer assigned or claimed from the pool, or transferred if owned.
    fn give(&mut self, on: &On) {
        let (rng, managers) = (&mut self.rng, &self.managers);
        let (c, at) = (&on.c, on.at);
        match on.owner {
            None => {
                let k = rng.pick_index(managers.len());
                let (m, team, region) = &managers[k];
                let (event, payload) = if rng.chance(50) {
                    (
                        "OwnerAssigned",
                        json!({"assigned_by": "person:x", "customer_id": c, "manager_id": m,
                               "previous_owner": null, "reason": "walk-in", "region": region,
                               "team": team}),
                    )
                } else {
                    (
                        "ClaimedFromPool",
                        json!({"customer_id": c, "manager_id": m, "region": region, "team": team}),
                    )
                };
                self.log.push(&on.stream, event, at, payload);
                self.state[on.i].0 = Some(k);
            }
            Some(o) => {
                let k = (o + 1 + rng.pick_index(managers.len() - 1)) % managers.len();
                let (m, team, region) = &managers[k];
                self.log.push(
                    &on.stream,
                    "OwnershipTransferred",
                    at,
                    json!({"customer_id": c, "from_manager": managers[o].0, "reason": "rebalance",
                           "to_manager": m, "to_region": region, "to_team": team,
                           "transferred_by": "person:x"}),
                );
                self.state[on.i].0 = Some(k);
            }
        }
    }

    /// An owned customer released to the pool, by hand or (warned first) by the rules.
    fn release(&mut self, on: &On) {
        let Some(o) = on.owner else {
            return;
        };
        let (c, at, m) = (&on.c, on.at, &self.managers[o].0);
        if self.rng.chance(50) {
            self.log.push(
                &on.stream,
                "ReleasedToPool",
                at,
                json!({"customer_id": c, "previous_owner": m, "reason": "moved",
                       "released_by": "person:x"}),
            );
        } else {
            self.log.push(
                &on.stream,
                "PoolReturnWarned",
                at,
                json!({"customer_id": c, "owner": m, "cause": "no_contact",
                       "returns_at": at, "policy_version": 2}),
            );
            self.log.push(
                &on.stream,
                "ReleasedToPool",
                at,
                json!({"customer_id": c, "previous_owner": m,
                       "reason": "no contact", "released_by": "system:scheduler",
                       "at": at, "rule": {"cause": "no_contact", "due_at": at,
                       "policy_version": 2}}),
            );
        }
        self.state[on.i].0 = None;
    }

    /// A contact, mostly by the owner; some recorded late, dated when they happened.
    fn contact(&mut self, on: &On) {
        let (rng, managers) = (&mut self.rng, &self.managers);
        let at = on.at;
        let k = match on.owner {
            Some(o) if rng.chance(80) => o,
            _ => rng.pick_index(managers.len()),
        };
        let follow = at + Duration::hours(rng.pick_index(24 * 20) as i64);
        let contacted = if rng.chance(20) {
            at - Duration::hours(1 + rng.pick_index(72) as i64)
        } else {
            at
        };
        self.log.push(
            &on.stream,
            "ContactRecorded",
            at,
            json!({"by_owner": on.owner == Some(k), "channel": "phone",
                   "contact_id": book_id(0xD, self.step), "contacted_at": contacted, "customer_id": on.c,
                   "direction": "outbound", "manager_id": managers[k].0,
                   "next_follow_up_at": follow, "outcome": "reached", "summary": null}),
        );
    }

    /// The customer moved to a stage its own may lead to.
    fn move_stage(&mut self, on: &On) {
        let next: &[&str] = match on.stage {
            "lead" => &["contacted", "contacted", "qualified", "customer"],
            "contacted" => &["qualified", "qualified", "customer", "lead"],
            "qualified" => &["customer", "customer", "contacted"],
            "customer" => &["active", "active", "churned"],
            "active" => &["dormant", "dormant", "churned"],
            "dormant" | "churned" => &["active"],
            _ => &["lead"],
        };
        let to = *self.rng.pick(next);
        self.log.stage(&on.c, on.stage, to, on.at);
        self.state[on.i].1 = to;
    }

    /// A complaint: mostly acknowledged, resolved and then reopened or closed; some left
    /// unanswered past their deadlines.
    fn complaint(&mut self, on: &On) {
        let (rng, managers) = (&mut self.rng, &self.managers);
        let (c, at) = (&on.c, on.at);
        let owner_id = on.owner.map(|o| managers[o].0.clone());
        if !rng.chance(75) {
            self.log
                .unanswered_complaint(c, owner_id.as_deref(), &managers[1].0, at);
            return;
        }
        let k = book_id(0xE, self.step);
        self.log.push(
            &on.stream,
            "ComplaintLogged",
            at,
            json!({"customer_id": c, "complaint_id": k, "severity": "normal",
                   "category": "fees", "description": "d", "channel": "phone",
                   "owner": owner_id, "logged_at": at,
                   "first_response_due_at": at + Duration::minutes(10),
                   "resolution_due_at": at + Duration::hours(72)}),
        );
        let by = owner_id.unwrap_or_else(|| managers[0].0.clone());
        let response = rng.pick_index(1_500) as i64;
        self.log.push(
            &on.stream,
            "ComplaintAcknowledged",
            at + Duration::seconds(response),
            json!({"customer_id": c, "complaint_id": k, "by": by,
                   "response_seconds": response, "within_sla": response <= 600}),
        );
        if !rng.chance(80) {
            return;
        }
        let resolution = response + rng.pick_index(90 * 3_600) as i64;
        self.log.push(
            &on.stream,
            "ComplaintResolved",
            at + Duration::seconds(resolution),
            json!({"customer_id": c, "complaint_id": k, "resolved_by": by,
                   "resolution": "refund", "resolution_seconds": resolution,
                   "within_sla": resolution <= 72 * 3600}),
        );
        let after = at + Duration::seconds(resolution + 60);
        if rng.chance(20) {
            self.log.push(
                &on.stream,
                "ComplaintReopened",
                after,
                json!({"customer_id": c, "complaint_id": k, "reason": "again",
                       "previous_resolver": by, "reopened_at": after,
                       "resolution_due_at": at + Duration::hours(200)}),
            );
        } else if rng.chance(70) {
            self.log.push(
                &on.stream,
                "ComplaintClosed",
                after,
                json!({"customer_id": c, "complaint_id": k,
                       "satisfaction": 1 + rng.pick_index(5)}),
            );
        }
    }

    /// A referral of the customer, kept to be converted later.
    fn refer(&mut self, on: &On) {
        let (rng, managers) = (&mut self.rng, &self.managers);
        let r = book_id(0xF, self.step);
        let referrer = managers[rng.pick_index(managers.len())].0.clone();
        let to = managers[rng.pick_index(managers.len())].0.clone();
        self.log.push(
            &on.stream,
            "ReferralRecorded",
            on.at,
            json!({"customer_id": on.c, "referral_id": r, "referrer": referrer,
                   "referred_to": to, "note": null}),
        );
        self.referrals.push((on.c.clone(), r, referrer, to));
    }

    /// One of the referrals recorded so far converted, if there is one.
    fn convert_referral(&mut self, at: DateTime<Utc>) {
        if self.referrals.is_empty() {
            return;
        }
        let (rc, r, referrer, to) = self
            .referrals
            .swap_remove(self.rng.pick_index(self.referrals.len()));
        self.log.push(
            &format!("customer-{rc}"),
            "ReferralConverted",
            at,
            json!({"customer_id": rc, "referral_id": r, "referrer": referrer,
                   "referred_to": to}),
        );
    }
}

/// A read-model database as the release of migration `version` left it, then `statements`
/// run in it: where an upgrade test starts. Its URL, and what keeps it (drop it last).
pub enum OlderDatabase {
    Postgres(crm_eventstore::testing::TestDatabase),
    Sqlite(crm_eventstore::testing::TempPath),
}

impl OlderDatabase {
    /// A fresh PostgreSQL database at `version`.
    pub async fn postgres(version: i64, statements: &[&str]) -> Self {
        let db = crm_eventstore::testing::TestDatabase::create().await;
        let pool = sqlx::PgPool::connect(&db.url).await.expect("connect");
        crate::store::migrator_up_to(version)
            .run(&pool)
            .await
            .expect("migrate");
        for sql in statements {
            sqlx::query(sql).execute(&pool).await.expect(sql);
        }
        pool.close().await;
        Self::Postgres(db)
    }

    /// A fresh SQLite file at `version`.
    pub async fn sqlite(version: i64, statements: &[&str]) -> Self {
        let path = crm_eventstore::testing::TempPath::new(&format!("crm-read-{version}"));
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&path.0)
            .create_if_missing(true);
        let pool = sqlx::SqlitePool::connect_with(options).await.expect("open");
        crate::store::migrator_up_to(version)
            .run(&pool)
            .await
            .expect("migrate");
        for sql in statements {
            sqlx::query(sql).execute(&pool).await.expect(sql);
        }
        pool.close().await;
        Self::Sqlite(path)
    }

    pub fn url(&self) -> String {
        match self {
            Self::Postgres(db) => db.url.clone(),
            Self::Sqlite(path) => format!("sqlite://{}", path.0.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_book_of_a_year_and_millions_of_steps_spans_the_year_in_order() {
        let year = 365 * 86_400_000_000;
        let steps = 12_000_000;
        let times: Vec<DateTime<Utc>> = [0, 1, 292_000, 6_000_000, steps - 1]
            .iter()
            .map(|s| step_time(t0(), year, *s, steps))
            .collect();
        assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
        assert_eq!(times[3], t0() + Duration::microseconds(year / 2));
        assert!(times[4] < t0() + Duration::microseconds(year));
    }
}

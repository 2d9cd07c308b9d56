//! Where the read models are decided: one stored event in, the changes it makes to each
//! read model out, as typed values ([`crate::change`]). Pure: no I/O and no SQL here;
//! [`crate::sql`] renders the changes for the projector's transaction and
//! [`crate::memory`] folds them for a rebuild.

use crm_domain::customer::personal;
use crm_domain::{CustomerEvent, DomainEvent, ManagerEvent, Payload};
use crm_eventstore::RecordedEvent;

use crate::calendar::Calendar;
use crate::change::{Change, Cond, Insert, Update, Value};
use crate::schema::{col, Col, Model, Projection, Table, PROJECTIONS};
use crate::schema::{
    COMPLAINTS, CONTACTS, CUSTOMERS, KPI_CUSTOMERS, MANAGERS, OWNERSHIP_PERIODS, POOL_EVENTS,
    PURCHASES, REFERRALS, SLA_EVENTS, STAGE_PERIODS, STAGE_TRANSITIONS, TIMELINE_ROWS,
};

/// Microseconds since the Unix epoch.
pub fn micros(t: chrono::DateTime<chrono::Utc>) -> i64 {
    t.timestamp_micros()
}

/// Why an event can not be projected (it goes to the dead-letter stream).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Poison {
    #[error("cannot decode: {0}")]
    Decode(String),
    #[error("event of stream {stream} names customer {customer}")]
    WrongStream { stream: String, customer: String },
}

/// The changes of one event, per projection, in the order of
/// [`crate::schema::PROJECTIONS`].
pub type Changes = Vec<Vec<Change>>;

/// An event as the read models see it: decoded once, when it is delivered.
#[derive(Debug, Clone)]
pub enum Decoded {
    Customer(String, CustomerEvent),
    Manager(ManagerEvent),
    /// Changes no read model: evidence (records of personal-data reads, verification
    /// results), and the policy's history (read from the event store).
    Nothing,
}

/// Decode `e` for the read models; an event that cannot be projected is poison.
pub fn decode<P: Payload>(e: &RecordedEvent<P>) -> Result<Decoded, Poison> {
    if crm_domain::evidence::is_evidence(&e.stream_id) {
        return Ok(Decoded::Nothing);
    }
    let decoded = DomainEvent::decode(&e.event_type, e.schema_version, &e.payload)
        .map_err(|err| Poison::Decode(err.to_string()))?;
    Ok(match decoded {
        DomainEvent::Customer(c) => {
            let customer = c.customer_id().to_string();
            if e.stream_id.strip_prefix("customer-") != Some(customer.as_str()) {
                return Err(Poison::WrongStream {
                    stream: e.stream_id.clone(),
                    customer,
                });
            }
            Decoded::Customer(customer, c)
        }
        DomainEvent::Manager(m) => Decoded::Manager(m),
        DomainEvent::Policy(_) => Decoded::Nothing,
    })
}

/// What a read model remembers of a customer between events (its [`Kind::Memo`]
/// tables), as its changes left it: what projecting the next event may read.
///
/// [`Kind::Memo`]: crate::schema::Kind::Memo
pub trait Memo {
    /// The row of `table` whose group (first key column) is `key`, if there is one.
    fn row(&self, table: &'static Table, key: &Value) -> Option<&[Value]>;

    /// The time zone whose local days the read model counts in (the KPI ledger's).
    fn calendar(&self) -> Calendar;

    /// Whether the memo sees the whole log before any row is read (a rebuild's fold):
    /// then what follows from a memo row's final state alone is added once, at the end
    /// ([`settle`]), rather than as the difference each event makes to it.
    fn settles_at_end(&self) -> bool;
}

/// What memo row `row` of `table` adds in its final state, in local days of `cal`, when
/// the memo [settles at the end](Memo::settles_at_end).
pub fn settle(table: &'static Table, row: &[Value], cal: &Calendar) -> Vec<Change> {
    match (table.name == KPI_CUSTOMERS.name, row.first()) {
        (true, Some(Value::Text(id))) => crate::ledger::settle(id, row, cal),
        _ => Vec::new(),
    }
}

/// A memory of nothing.
pub struct Forgetful;

impl Memo for Forgetful {
    fn row(&self, _: &'static Table, _: &Value) -> Option<&[Value]> {
        None
    }

    fn calendar(&self) -> Calendar {
        Calendar::UTC
    }

    fn settles_at_end(&self) -> bool {
        false
    }
}

/// The changes of one event to every read model, as if none remembered anything (what
/// each read model decides from the event alone).
pub fn project<P: Payload>(e: &RecordedEvent<P>) -> Result<Changes, Poison> {
    let d = decode(e)?;
    Ok(PROJECTIONS
        .iter()
        .map(|p| changes(p, e, &d, &Forgetful))
        .collect())
}

/// The changes of one decoded event to read model `p`, which remembers `memo`.
pub fn changes<P>(
    p: &Projection,
    e: &RecordedEvent<P>,
    d: &Decoded,
    memo: &dyn Memo,
) -> Vec<Change> {
    match (p.model, d) {
        (Model::Ownership, Decoded::Customer(id, c)) => ownership(&Ctx::new(e, id), c),
        (Model::Ownership, Decoded::Manager(m)) => manager(m).into_iter().collect(),
        (Model::Timeline, Decoded::Customer(id, c)) => vec![timeline(&Ctx::new(e, id), c)],
        (Model::Analytics, Decoded::Customer(id, c)) => analytics(&Ctx::new(e, id), c, memo),
        _ => Vec::new(),
    }
}

/// What every change of a customer event is made of.
#[derive(Clone)]
struct Ctx<'a> {
    id: &'a str,
    version: i64,
    /// When it happened, in microseconds.
    at: i64,
    event_type: &'a str,
    event_id: String,
    actor: &'a str,
    /// The owner the read model remembers (analytics), before this event.
    owner: Option<String>,
}

impl<'a> Ctx<'a> {
    fn new<P>(e: &'a RecordedEvent<P>, id: &'a str) -> Self {
        Self {
            id,
            version: e.stream_version as i64,
            at: micros(e.metadata.occurred_at),
            event_type: &e.event_type,
            event_id: e.event_id.to_string(),
            actor: e.metadata.actor.as_str(),
            owner: None,
        }
    }
}

/// Columns of `rm_customers`.
mod cu {
    use super::*;
    pub const ID: Col = col(&CUSTOMERS, "customer_id");
    pub const TYPE: Col = col(&CUSTOMERS, "customer_type");
    pub const NAME: Col = col(&CUSTOMERS, "display_name");
    pub const REGION: Col = col(&CUSTOMERS, "region");
    pub const BRANCH: Col = col(&CUSTOMERS, "branch");
    pub const CHANNEL: Col = col(&CUSTOMERS, "first_touch_channel");
    pub const STAGE: Col = col(&CUSTOMERS, "stage");
    pub const TIER: Col = col(&CUSTOMERS, "value_tier");
    pub const AUM: Col = col(&CUSTOMERS, "aum_minor");
    pub const OWNER: Col = col(&CUSTOMERS, "owner_id");
    pub const TEAM: Col = col(&CUSTOMERS, "owner_team");
    pub const OWNER_REGION: Col = col(&CUSTOMERS, "owner_region");
    pub const OWNED_SINCE: Col = col(&CUSTOMERS, "owned_since_us");
    pub const REGISTERED: Col = col(&CUSTOMERS, "registered_at_us");
    pub const LAST_CONTACT: Col = col(&CUSTOMERS, "last_contact_at_us");
    pub const FOLLOW_UP: Col = col(&CUSTOMERS, "next_follow_up_us");
}

/// Columns of `rm_ownership_periods`.
mod op {
    use super::*;
    pub const ID: Col = col(&OWNERSHIP_PERIODS, "customer_id");
    pub const VERSION: Col = col(&OWNERSHIP_PERIODS, "start_version");
    pub const MANAGER: Col = col(&OWNERSHIP_PERIODS, "manager_id");
    pub const TEAM: Col = col(&OWNERSHIP_PERIODS, "team");
    pub const REGION: Col = col(&OWNERSHIP_PERIODS, "region");
    pub const FROM: Col = col(&OWNERSHIP_PERIODS, "from_us");
    pub const TO: Col = col(&OWNERSHIP_PERIODS, "to_us");
    pub const EVENT: Col = col(&OWNERSHIP_PERIODS, "start_event");
    pub const REASON: Col = col(&OWNERSHIP_PERIODS, "start_reason");
    pub const BY: Col = col(&OWNERSHIP_PERIODS, "started_by");
    pub const EVENT_ID: Col = col(&OWNERSHIP_PERIODS, "start_event_id");
    pub const END_EVENT: Col = col(&OWNERSHIP_PERIODS, "end_event");
    pub const ENDED_BY: Col = col(&OWNERSHIP_PERIODS, "ended_by");
}

/// Columns of `rm_managers`.
mod ma {
    use super::*;
    pub const ID: Col = col(&MANAGERS, "manager_id");
    pub const NAME: Col = col(&MANAGERS, "name");
    pub const ROLE: Col = col(&MANAGERS, "role");
    pub const TEAM: Col = col(&MANAGERS, "team");
    pub const REGION: Col = col(&MANAGERS, "region");
    pub const BRANCH: Col = col(&MANAGERS, "branch");
    pub const LIMIT: Col = col(&MANAGERS, "holding_limit");
    pub const ACTIVE: Col = col(&MANAGERS, "active");
}

/// Columns of `rm_timeline`.
mod tl {
    use super::*;
    pub const ID: Col = col(&TIMELINE_ROWS, "customer_id");
    pub const VERSION: Col = col(&TIMELINE_ROWS, "version");
    pub const EVENT_ID: Col = col(&TIMELINE_ROWS, "event_id");
    pub const TYPE: Col = col(&TIMELINE_ROWS, "event_type");
    pub const AT: Col = col(&TIMELINE_ROWS, "occurred_at_us");
    pub const ACTOR: Col = col(&TIMELINE_ROWS, "actor");
    pub const SUMMARY: Col = col(&TIMELINE_ROWS, "summary");
}

/// Columns of the analytics tables.
mod an {
    use super::*;

    pub const STAY_ID: Col = col(&STAGE_PERIODS, "customer_id");
    pub const STAY_VERSION: Col = col(&STAGE_PERIODS, "start_version");
    pub const STAY_STAGE: Col = col(&STAGE_PERIODS, "stage");
    pub const STAY_FROM: Col = col(&STAGE_PERIODS, "from_us");
    pub const STAY_TO: Col = col(&STAGE_PERIODS, "to_us");

    pub const MOVE_ID: Col = col(&STAGE_TRANSITIONS, "customer_id");
    pub const MOVE_VERSION: Col = col(&STAGE_TRANSITIONS, "version");
    pub const MOVE_FROM: Col = col(&STAGE_TRANSITIONS, "from_stage");
    pub const MOVE_TO: Col = col(&STAGE_TRANSITIONS, "to_stage");
    pub const MOVE_AT: Col = col(&STAGE_TRANSITIONS, "at_us");
    pub const MOVE_REACTIVATED: Col = col(&STAGE_TRANSITIONS, "reactivated");
    pub const MOVE_OWNER: Col = col(&STAGE_TRANSITIONS, "owner_id");

    pub const CONTACT_ID: Col = col(&CONTACTS, "customer_id");
    pub const CONTACT_VERSION: Col = col(&CONTACTS, "version");
    pub const CONTACT_MANAGER: Col = col(&CONTACTS, "manager_id");
    pub const CONTACT_BY_OWNER: Col = col(&CONTACTS, "by_owner");
    pub const CONTACT_CHANNEL: Col = col(&CONTACTS, "channel");
    pub const CONTACT_OUTCOME: Col = col(&CONTACTS, "outcome");
    pub const CONTACT_AT: Col = col(&CONTACTS, "at_us");

    pub const PURCHASE_ID: Col = col(&PURCHASES, "purchase_id");
    pub const PURCHASE_CUSTOMER: Col = col(&PURCHASES, "customer_id");
    pub const PURCHASE_MANAGER: Col = col(&PURCHASES, "manager_id");
    pub const PURCHASE_LINE: Col = col(&PURCHASES, "product_line");
    pub const PURCHASE_AMOUNT: Col = col(&PURCHASES, "amount_minor");
    pub const PURCHASE_CURRENCY: Col = col(&PURCHASES, "currency");
    pub const PURCHASE_AT: Col = col(&PURCHASES, "at_us");

    pub const REFERRAL_ID: Col = col(&REFERRALS, "referral_id");
    pub const REFERRAL_CUSTOMER: Col = col(&REFERRALS, "customer_id");
    pub const REFERRAL_BY: Col = col(&REFERRALS, "referrer");
    pub const REFERRAL_TO: Col = col(&REFERRALS, "referred_to");
    pub const REFERRAL_AT: Col = col(&REFERRALS, "recorded_at_us");
    pub const REFERRAL_CONVERTED: Col = col(&REFERRALS, "converted_at_us");

    pub const POOL_ID: Col = col(&POOL_EVENTS, "customer_id");
    pub const POOL_VERSION: Col = col(&POOL_EVENTS, "version");
    pub const POOL_KIND: Col = col(&POOL_EVENTS, "kind");
    pub const POOL_MANAGER: Col = col(&POOL_EVENTS, "manager_id");
    pub const POOL_CAUSE: Col = col(&POOL_EVENTS, "cause");
    pub const POOL_DUE: Col = col(&POOL_EVENTS, "due_us");
    pub const POOL_AT: Col = col(&POOL_EVENTS, "at_us");
    pub const POOL_POLICY: Col = col(&POOL_EVENTS, "policy_version");

    pub const SLA_ID: Col = col(&SLA_EVENTS, "customer_id");
    pub const SLA_VERSION: Col = col(&SLA_EVENTS, "version");
    pub const SLA_COMPLAINT: Col = col(&SLA_EVENTS, "complaint_id");
    pub const SLA_KIND: Col = col(&SLA_EVENTS, "kind");
    pub const SLA_CLOCK: Col = col(&SLA_EVENTS, "clock");
    pub const SLA_DUE: Col = col(&SLA_EVENTS, "due_us");
    pub const SLA_LEVEL: Col = col(&SLA_EVENTS, "level");
    pub const SLA_TO: Col = col(&SLA_EVENTS, "escalated_to");
    pub const SLA_AUTOMATIC: Col = col(&SLA_EVENTS, "automatic");
    pub const SLA_OWNER: Col = col(&SLA_EVENTS, "owner_id");
    pub const SLA_AT: Col = col(&SLA_EVENTS, "at_us");
}

/// Columns of `rm_complaints`.
mod co {
    use super::*;
    pub const ID: Col = col(&COMPLAINTS, "complaint_id");
    pub const CUSTOMER: Col = col(&COMPLAINTS, "customer_id");
    pub const OWNER: Col = col(&COMPLAINTS, "owner_id");
    pub const SEVERITY: Col = col(&COMPLAINTS, "severity");
    pub const LOGGED: Col = col(&COMPLAINTS, "logged_at_us");
    pub const FIRST_RESPONSE: Col = col(&COMPLAINTS, "first_response_s");
    pub const FIRST_RESPONSE_IN_SLA: Col = col(&COMPLAINTS, "first_response_in_sla");
    pub const RESOLVED_AT: Col = col(&COMPLAINTS, "resolved_at_us");
    pub const RESOLUTION: Col = col(&COMPLAINTS, "resolution_s");
    pub const RESOLUTION_IN_SLA: Col = col(&COMPLAINTS, "resolution_in_sla");
    pub const RESOLVED_BY: Col = col(&COMPLAINTS, "resolved_by");
    pub const RESOLUTIONS: Col = col(&COMPLAINTS, "resolutions");
    pub const BREACHES: Col = col(&COMPLAINTS, "resolution_breaches");
    pub const REOPENS: Col = col(&COMPLAINTS, "reopens");
    pub const ESCALATIONS: Col = col(&COMPLAINTS, "escalations");
    pub const CLOSED_AT: Col = col(&COMPLAINTS, "closed_at_us");
    pub const SATISFACTION: Col = col(&COMPLAINTS, "satisfaction");
    pub const FIRST_RESPONSE_DUE: Col = col(&COMPLAINTS, "first_response_due_us");
    pub const RESOLUTION_DUE: Col = col(&COMPLAINTS, "resolution_due_us");
}

/// The name of an optional domain value (`as_str`), as text or NULL.
fn text<T: AsRef<str>>(v: Option<T>) -> Value {
    v.map_or(Value::Null, |s| Value::Text(s.as_ref().to_string()))
}

// ----- ownership: rm_customers, rm_ownership_periods, rm_managers -----

/// The open ownership period ends with this event.
fn close_period(x: &Ctx) -> Change {
    Change::Update(
        Update::of(&OWNERSHIP_PERIODS, x.id)
            .when(Cond::IsNull(op::TO))
            .set(op::TO, x.at)
            .set(op::END_EVENT, x.event_type)
            .set(op::ENDED_BY, x.actor),
    )
}

/// The customer's owner, or none (`None`: in the pool).
fn set_owner(x: &Ctx, owner: Option<(String, &str, &str)>) -> Change {
    let (manager, team, region, since) = match owner {
        Some((m, t, r)) => (
            Value::from(m),
            Value::from(t),
            Value::from(r),
            Value::Int(x.at),
        ),
        None => (Value::Null, Value::Null, Value::Null, Value::Null),
    };
    Change::Update(
        Update::of(&CUSTOMERS, x.id)
            .set(cu::OWNER, manager)
            .set(cu::TEAM, team)
            .set(cu::OWNER_REGION, region)
            .set(cu::OWNED_SINCE, since),
    )
}

/// A new owner: the open period closes, the next one opens.
fn take(x: &Ctx, manager: String, team: &str, region: &str, reason: Option<&str>) -> Vec<Change> {
    let open = Insert::into(&OWNERSHIP_PERIODS)
        .set(op::ID, x.id)
        .set(op::VERSION, x.version)
        .set(op::MANAGER, manager.as_str())
        .set(op::TEAM, team)
        .set(op::REGION, region)
        .set(op::FROM, x.at)
        .set(op::EVENT, x.event_type)
        .set(op::REASON, reason)
        .set(op::BY, x.actor)
        .set(op::EVENT_ID, x.event_id.as_str())
        .insert();
    vec![
        close_period(x),
        open,
        set_owner(x, Some((manager, team, region))),
    ]
}

fn ownership(x: &Ctx, c: &CustomerEvent) -> Vec<Change> {
    let customer = || Update::of(&CUSTOMERS, x.id);
    match c {
        CustomerEvent::CustomerRegistered(r) => vec![Insert::into(&CUSTOMERS)
            .set(cu::ID, x.id)
            .set(cu::TYPE, r.customer_type.as_str())
            .set(cu::NAME, r.display_name.as_str())
            .set(cu::REGION, r.region.as_str())
            .set(cu::BRANCH, text(r.branch.as_ref().map(|b| b.as_str())))
            .set(cu::CHANNEL, r.first_touch_channel.as_str())
            .set(cu::STAGE, r.stage.as_str())
            .set(cu::TIER, r.value_tier.as_str())
            .set(cu::AUM, r.aum_minor)
            .set(cu::REGISTERED, micros(r.registered_at))
            .insert()],
        CustomerEvent::ProfileUpdated(p) => customer()
            .set_some(cu::NAME, p.display_name.clone())
            .set_some(cu::REGION, p.region.as_ref().map(|r| r.as_str()))
            .set_some(cu::BRANCH, p.branch.as_ref().map(|b| b.as_str()))
            .set_some(cu::AUM, p.aum_minor)
            .change()
            .into_iter()
            .collect(),
        CustomerEvent::OwnerAssigned(a) => take(
            x,
            a.manager_id.to_string(),
            a.team.as_str(),
            a.region.as_str(),
            Some(&a.reason),
        ),
        CustomerEvent::OwnershipTransferred(t) => take(
            x,
            t.to_manager.to_string(),
            t.to_team.as_str(),
            t.to_region.as_str(),
            Some(&t.reason),
        ),
        CustomerEvent::ClaimedFromPool(cl) => take(
            x,
            cl.manager_id.to_string(),
            cl.team.as_str(),
            cl.region.as_str(),
            None,
        ),
        CustomerEvent::ReleasedToPool(_) => vec![close_period(x), set_owner(x, None)],
        // A contact recorded late (dated when it happened) does not move the last contact
        // back, nor replace a later contact's follow-up.
        CustomerEvent::ContactRecorded(k) => {
            let at = micros(k.contacted_at);
            vec![Change::Update(
                customer()
                    .when(Cond::NullOrAtMost(cu::LAST_CONTACT, at))
                    .set(cu::LAST_CONTACT, at)
                    .set(cu::FOLLOW_UP, k.next_follow_up_at.map(micros)),
            )]
        }
        CustomerEvent::LifecycleStageChanged(l) => {
            vec![Change::Update(customer().set(cu::STAGE, l.to.as_str()))]
        }
        CustomerEvent::ValueTierChanged(t) => {
            vec![Change::Update(customer().set(cu::TIER, t.to.as_str()))]
        }
        CustomerEvent::PersonalDataErased(_) => {
            vec![Change::Update(customer().set(cu::NAME, personal::ERASED))]
        }
        _ => Vec::new(),
    }
}

fn manager(m: &ManagerEvent) -> Option<Change> {
    match m {
        ManagerEvent::ManagerRegistered(r) => Some(
            Insert::into(&MANAGERS)
                .set(ma::ID, r.manager_id.to_string())
                .set(ma::NAME, r.name.as_str())
                .set(ma::ROLE, r.role.as_str())
                .set(ma::TEAM, r.team.as_str())
                .set(ma::REGION, r.region.as_str())
                .set(ma::BRANCH, r.branch.as_str())
                .set(ma::LIMIT, i64::from(r.holding_limit))
                .set(ma::ACTIVE, 1)
                .insert(),
        ),
        ManagerEvent::ManagerUpdated(u) => Update::of(&MANAGERS, u.manager_id.to_string())
            .set_some(ma::NAME, u.name.clone())
            .set_some(ma::ROLE, u.role.map(|r| r.as_str()))
            .set_some(ma::TEAM, u.team.as_ref().map(|t| t.as_str()))
            .set_some(ma::REGION, u.region.as_ref().map(|r| r.as_str()))
            .set_some(ma::BRANCH, u.branch.as_ref().map(|b| b.as_str()))
            .set_some(ma::LIMIT, u.holding_limit.map(i64::from))
            .change(),
        ManagerEvent::ManagerDeactivated(d) => Update::of(&MANAGERS, d.manager_id.to_string())
            .set(ma::ACTIVE, 0)
            .change(),
        ManagerEvent::ManagerReactivated(r) => Update::of(&MANAGERS, r.manager_id.to_string())
            .set(ma::ACTIVE, 1)
            .change(),
    }
}

// ----- timeline: rm_timeline -----

fn timeline(x: &Ctx, c: &CustomerEvent) -> Change {
    Insert::into(&TIMELINE_ROWS)
        .set(tl::ID, x.id)
        .set(tl::VERSION, x.version)
        .set(tl::EVENT_ID, x.event_id.as_str())
        .set(tl::TYPE, x.event_type)
        .set(tl::AT, x.at)
        .set(tl::ACTOR, x.actor)
        .set(tl::SUMMARY, summary(c))
        .insert()
}

// ----- analytics: the funnel's and the KPIs' facts -----

/// A stay in a stage opens.
fn open_stay(x: &Ctx, stage: &str, from: i64) -> Change {
    Insert::into(&STAGE_PERIODS)
        .set(an::STAY_ID, x.id)
        .set(an::STAY_VERSION, x.version)
        .set(an::STAY_STAGE, stage)
        .set(an::STAY_FROM, from)
        .insert()
}

/// A move between stages, credited to the owner at the time (this projection's own).
fn transition(x: &Ctx, from: Option<&str>, to: &str, at: i64, reactivated: bool) -> Change {
    Insert::into(&STAGE_TRANSITIONS)
        .set(an::MOVE_ID, x.id)
        .set(an::MOVE_VERSION, x.version)
        .set(an::MOVE_FROM, from)
        .set(an::MOVE_TO, to)
        .set(an::MOVE_AT, at)
        .set(an::MOVE_REACTIVATED, reactivated)
        .set(an::MOVE_OWNER, x.owner.clone())
        .insert()
}

/// A pool warning or an automatic return.
fn pool_event(x: &Ctx, kind: &str, manager: String, cause: &str, due: i64, policy: u32) -> Change {
    Insert::into(&POOL_EVENTS)
        .set(an::POOL_ID, x.id)
        .set(an::POOL_VERSION, x.version)
        .set(an::POOL_KIND, kind)
        .set(an::POOL_MANAGER, manager)
        .set(an::POOL_CAUSE, cause)
        .set(an::POOL_DUE, due)
        .set(an::POOL_AT, x.at)
        .set(an::POOL_POLICY, i64::from(policy))
        .insert()
}

/// An SLA warning, breach or escalation: credited to the owner the event names, else to
/// this projection's owner at the time.
fn sla_event(x: &Ctx, complaint: String, kind: &str, owner: Option<String>) -> Insert {
    Insert::into(&SLA_EVENTS)
        .set(an::SLA_ID, x.id)
        .set(an::SLA_VERSION, x.version)
        .set(an::SLA_COMPLAINT, complaint)
        .set(an::SLA_KIND, kind)
        .set(an::SLA_OWNER, owner.or_else(|| x.owner.clone()))
        .set(an::SLA_AT, x.at)
}

fn analytics(x: &Ctx, c: &CustomerEvent, memo: &dyn Memo) -> Vec<Change> {
    let mut out = analytics_facts(x, c, memo);
    out.extend(crate::kept::funnel(memo, (x.id, x.version, x.at), c));
    out.extend(crate::ledger::changes(memo, (x.id, x.at), c));
    out
}

/// The facts of the funnel and the KPIs (`rm_stage_periods`, `rm_contacts`, …).
fn analytics_facts(x: &Ctx, c: &CustomerEvent, memo: &dyn Memo) -> Vec<Change> {
    // The owner as this read model last recorded it, for the events credited to it.
    let credits_owner = matches!(
        c,
        CustomerEvent::LifecycleStageChanged(_)
            | CustomerEvent::ComplaintSlaWarned(_)
            | CustomerEvent::ComplaintSlaBreached(_)
            | CustomerEvent::ComplaintEscalated(_)
    );
    let with_owner;
    let x = if credits_owner {
        with_owner = Ctx {
            owner: crate::kept::owner(memo, x.id),
            ..x.clone()
        };
        &with_owner
    } else {
        x
    };
    match c {
        CustomerEvent::CustomerRegistered(r) => {
            let at = micros(r.registered_at);
            vec![
                open_stay(x, r.stage.as_str(), at),
                transition(x, None, r.stage.as_str(), at, false),
            ]
        }
        CustomerEvent::LifecycleStageChanged(l) => vec![
            Change::Update(
                Update::of(&STAGE_PERIODS, x.id)
                    .when(Cond::IsNull(an::STAY_TO))
                    .set(an::STAY_TO, x.at),
            ),
            open_stay(x, l.to.as_str(), x.at),
            transition(x, Some(l.from.as_str()), l.to.as_str(), x.at, l.reactivated),
        ],
        // The owner is remembered with the funnel's place (`kept.rs`).
        CustomerEvent::ReleasedToPool(r) => r
            .rule
            .as_ref()
            .map(|rule| {
                pool_event(
                    x,
                    "return",
                    r.previous_owner.to_string(),
                    rule.cause.as_str(),
                    micros(rule.due_at),
                    rule.policy_version,
                )
            })
            .into_iter()
            .collect(),
        CustomerEvent::PoolReturnWarned(w) => vec![pool_event(
            x,
            "warning",
            w.owner.to_string(),
            w.cause.as_str(),
            micros(w.returns_at),
            w.policy_version,
        )],
        CustomerEvent::ComplaintSlaWarned(w) => {
            vec![sla_event(x, w.complaint_id.to_string(), "warning", None)
                .set(an::SLA_CLOCK, w.clock.as_str())
                .set(an::SLA_DUE, micros(w.due_at))
                .set(an::SLA_AUTOMATIC, 1)
                .insert()]
        }
        CustomerEvent::ComplaintSlaBreached(b) => vec![sla_event(
            x,
            b.complaint_id.to_string(),
            "breach",
            b.owner.map(|o| o.to_string()),
        )
        .set(an::SLA_CLOCK, b.clock.as_str())
        .set(an::SLA_DUE, micros(b.due_at))
        .set(an::SLA_AUTOMATIC, 1)
        .insert()],
        _ => contacts_and_deals(x, c),
    }
}

/// Contacts, purchases and referrals (and, past them, the complaints).
fn contacts_and_deals(x: &Ctx, c: &CustomerEvent) -> Vec<Change> {
    match c {
        CustomerEvent::ContactRecorded(k) => vec![Insert::into(&CONTACTS)
            .set(an::CONTACT_ID, x.id)
            .set(an::CONTACT_VERSION, x.version)
            .set(an::CONTACT_MANAGER, k.manager_id.to_string())
            .set(an::CONTACT_BY_OWNER, k.by_owner)
            .set(an::CONTACT_CHANNEL, k.channel.as_str())
            .set(an::CONTACT_OUTCOME, k.outcome.as_str())
            .set(an::CONTACT_AT, micros(k.contacted_at))
            .insert()],
        CustomerEvent::PurchaseRecorded(p) => vec![Insert::into(&PURCHASES)
            .set(an::PURCHASE_ID, p.purchase_id.to_string())
            .set(an::PURCHASE_CUSTOMER, x.id)
            .set(an::PURCHASE_MANAGER, p.manager_id.map(|m| m.to_string()))
            .set(an::PURCHASE_LINE, p.product_line.as_str())
            .set(an::PURCHASE_AMOUNT, p.amount_minor)
            .set(an::PURCHASE_CURRENCY, p.currency.as_str())
            .set(an::PURCHASE_AT, x.at)
            .insert()],
        CustomerEvent::ReferralRecorded(r) => vec![Insert::into(&REFERRALS)
            .set(an::REFERRAL_ID, r.referral_id.to_string())
            .set(an::REFERRAL_CUSTOMER, x.id)
            .set(an::REFERRAL_BY, r.referrer.as_str())
            .set(an::REFERRAL_TO, r.referred_to.to_string())
            .set(an::REFERRAL_AT, x.at)
            .insert()],
        CustomerEvent::ReferralConverted(r) => vec![Change::Update(
            Update::of(&REFERRALS, r.referral_id.to_string()).set(an::REFERRAL_CONVERTED, x.at),
        )],
        _ => complaint(x, c),
    }
}

/// The complaint's own row, and the SLA event an escalation is.
fn complaint(x: &Ctx, c: &CustomerEvent) -> Vec<Change> {
    let of = |id: &dyn ToString| Update::of(&COMPLAINTS, id.to_string());
    let update = match c {
        CustomerEvent::ComplaintLogged(l) => {
            return vec![Insert::into(&COMPLAINTS)
                .set(co::ID, l.complaint_id.to_string())
                .set(co::CUSTOMER, x.id)
                .set(co::OWNER, l.owner.map(|o| o.to_string()))
                .set(co::SEVERITY, l.severity.as_str())
                .set(co::LOGGED, micros(l.logged_at))
                .set(co::RESOLUTIONS, 0)
                .set(co::BREACHES, 0)
                .set(co::REOPENS, 0)
                .set(co::ESCALATIONS, 0)
                .set(co::FIRST_RESPONSE_DUE, micros(l.first_response_due_at))
                .set(co::RESOLUTION_DUE, micros(l.resolution_due_at))
                .insert()]
        }
        CustomerEvent::ComplaintAcknowledged(a) => of(&a.complaint_id)
            .set(co::FIRST_RESPONSE, a.response_seconds)
            .set(co::FIRST_RESPONSE_IN_SLA, a.within_sla),
        CustomerEvent::ComplaintEscalated(e) => {
            let event = sla_event(x, e.complaint_id.to_string(), "escalation", None)
                .set(an::SLA_LEVEL, i64::from(e.level))
                .set(an::SLA_TO, e.escalated_to.map(|m| m.to_string()))
                .set(an::SLA_AUTOMATIC, e.automatic)
                .insert();
            let count = of(&e.complaint_id).add(co::ESCALATIONS, 1);
            return vec![Change::Update(count), event];
        }
        CustomerEvent::ComplaintResolved(r) => of(&r.complaint_id)
            .set(co::RESOLVED_AT, x.at)
            .set(co::RESOLUTION, r.resolution_seconds)
            .set(co::RESOLUTION_IN_SLA, r.within_sla)
            .set(co::RESOLVED_BY, r.resolved_by.to_string())
            .add(co::RESOLUTIONS, 1)
            .add(co::BREACHES, i64::from(!r.within_sla)),
        // A new resolution clock, with its own deadline.
        CustomerEvent::ComplaintReopened(r) => of(&r.complaint_id)
            .add(co::REOPENS, 1)
            .set(co::RESOLVED_AT, Value::Null)
            .set(co::RESOLUTION_DUE, micros(r.resolution_due_at)),
        CustomerEvent::ComplaintClosed(k) => of(&k.complaint_id)
            .set(co::CLOSED_AT, x.at)
            .set(co::SATISFACTION, k.satisfaction.map(i64::from)),
        _ => return Vec::new(),
    };
    vec![Change::Update(update)]
}

/// One line a person reads in the customer's timeline.
pub fn summary(c: &CustomerEvent) -> String {
    match c {
        CustomerEvent::CustomerRegistered(r) => format!(
            "registered as {} in {} (first touch: {})",
            r.customer_type.as_str(),
            r.region.as_str(),
            r.first_touch_channel.as_str()
        ),
        CustomerEvent::ProfileUpdated(_) => "profile updated".into(),
        CustomerEvent::OwnerAssigned(a) => match &a.policy {
            Some(p) => format!(
                "assigned to {} ({}) by policy v{}, rule {:?}, {}",
                a.manager_id,
                a.team.as_str(),
                p.policy_version,
                p.rule,
                p.method.as_str().replace('_', " ")
            ),
            None => format!(
                "assigned to {} ({}): {}",
                a.manager_id,
                a.team.as_str(),
                a.reason
            ),
        },
        CustomerEvent::OwnershipTransferred(t) => format!(
            "transferred from {} to {} ({}): {}",
            t.from_manager,
            t.to_manager,
            t.to_team.as_str(),
            t.reason
        ),
        CustomerEvent::ReleasedToPool(r) => match &r.rule {
            Some(_) => format!(
                "returned to the pool from {}: {}",
                r.previous_owner, r.reason
            ),
            None => format!("released to the pool by {}: {}", r.previous_owner, r.reason),
        },
        CustomerEvent::ClaimedFromPool(c) => format!("claimed from the pool by {}", c.manager_id),
        CustomerEvent::ContactRecorded(k) => format!(
            "{} {} contact by {}: {}",
            k.direction.as_str(),
            k.channel.as_str(),
            k.manager_id,
            k.outcome.as_str()
        ),
        CustomerEvent::ComplaintLogged(l) => format!(
            "complaint {} logged ({} severity, {})",
            l.complaint_id,
            l.severity.as_str(),
            l.category
        ),
        CustomerEvent::ComplaintAcknowledged(a) => format!(
            "complaint {} acknowledged by {} after {} s{}",
            a.complaint_id,
            a.by,
            a.response_seconds,
            if a.within_sla { "" } else { " (SLA missed)" }
        ),
        CustomerEvent::ComplaintEscalated(x) => format!(
            "complaint {} escalated to level {}: {}",
            x.complaint_id, x.level, x.reason
        ),
        CustomerEvent::ComplaintResolved(r) => format!(
            "complaint {} resolved by {}{}",
            r.complaint_id,
            r.resolved_by,
            if r.within_sla { "" } else { " (SLA missed)" }
        ),
        // The reason is personal data (free text): kept in the payload, encrypted.
        CustomerEvent::ComplaintReopened(r) => format!("complaint {} reopened", r.complaint_id),
        CustomerEvent::PersonalDataErased(e) => {
            format!("personal data erased by {}: {}", e.erased_by, e.reason)
        }
        CustomerEvent::ComplaintClosed(c) => match c.satisfaction {
            Some(s) => format!("complaint {} closed, satisfaction {s}/5", c.complaint_id),
            None => format!("complaint {} closed", c.complaint_id),
        },
        CustomerEvent::PurchaseRecorded(p) => format!(
            "purchase of {} for {} {}",
            p.product_line,
            p.amount_minor as f64 / 100.0,
            p.currency
        ),
        CustomerEvent::ReferralRecorded(r) => {
            format!("referred by {} to {}", r.referrer, r.referred_to)
        }
        CustomerEvent::ReferralConverted(r) => {
            format!("referral by {} converted", r.referrer)
        }
        CustomerEvent::LifecycleStageChanged(l) => format!(
            "stage {} → {}{}",
            l.from.as_str(),
            l.to.as_str(),
            if l.reactivated {
                " (reactivated)".to_string()
            } else if l.automatic {
                format!(" ({})", l.reason)
            } else {
                String::new()
            }
        ),
        CustomerEvent::ValueTierChanged(t) => format!(
            "value tier {} → {} ({} held or bought)",
            t.from.as_str(),
            t.to.as_str(),
            t.basis_minor as f64 / 100.0
        ),
        CustomerEvent::PoolReturnWarned(w) => format!(
            "owner {} warned: back to the pool on {} ({})",
            w.owner,
            w.returns_at.format("%Y-%m-%d %H:%M"),
            w.cause.as_str().replace('_', " ")
        ),
        CustomerEvent::OwnershipLocked(l) => match l.until {
            Some(u) => format!(
                "locked against the pool until {}: {}",
                u.format("%Y-%m-%d"),
                l.reason
            ),
            None => format!("locked against the pool: {}", l.reason),
        },
        CustomerEvent::OwnershipUnlocked(u) => format!("unlocked: {}", u.reason),
        CustomerEvent::ComplaintSlaWarned(w) => format!(
            "complaint {} nearing its {} deadline ({})",
            w.complaint_id,
            w.clock.as_str().replace('_', " "),
            w.due_at.format("%Y-%m-%d %H:%M")
        ),
        CustomerEvent::ComplaintSlaBreached(b) => format!(
            "complaint {} breached its {} deadline ({})",
            b.complaint_id,
            b.clock.as_str().replace('_', " "),
            b.due_at.format("%Y-%m-%d %H:%M")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::change::Change;

    fn fixtures() -> Vec<RecordedEvent> {
        let fixtures: Vec<serde_json::Value> =
            serde_json::from_str(include_str!("../../domain/tests/fixtures/events_v1.json"))
                .unwrap();
        fixtures
            .into_iter()
            .map(|f| {
                let payload = f["payload"].clone();
                let stream = match (payload.get("customer_id"), payload.get("manager_id")) {
                    (Some(c), _) => format!("customer-{}", c.as_str().unwrap()),
                    (None, Some(m)) => format!("manager-{}", m.as_str().unwrap()),
                    (None, None) => "policy-ownership".to_string(),
                };
                RecordedEvent {
                    log_position: crm_eventstore::LogPosition::new(1, 1),
                    stream_id: stream,
                    stream_version: 1,
                    event_id: uuid::Uuid::nil(),
                    event_type: f["event_type"].as_str().unwrap().into(),
                    schema_version: 1,
                    payload,
                    metadata: crm_eventstore::EventMetadata {
                        command_id: uuid::Uuid::nil(),
                        correlation_id: uuid::Uuid::nil(),
                        causation_id: None,
                        actor: "person:x".into(),
                        occurred_at: chrono::Utc::now(),
                        recorded_at: chrono::Utc::now(),
                    },
                    chain_hash: Default::default(),
                }
            })
            .collect()
    }

    /// Every change, and every value it reads, stays within the tables of the projection
    /// it belongs to, so each projection can be rebuilt alone; rows grow only by insert
    /// in tables kept as logs.
    #[test]
    fn changes_stay_within_their_projection() {
        let mut covered = vec![false; PROJECTIONS.len()];
        for e in fixtures() {
            let t = &e.event_type;
            let changes = project(&e).unwrap_or_else(|p| panic!("{t}: {p}"));
            for (i, changes) in changes.iter().enumerate() {
                let p = PROJECTIONS[i];
                for c in changes {
                    covered[i] = true;
                    assert!(
                        p.table(c.table().name).is_some(),
                        "{t}: {c:?} in {}",
                        p.name
                    );
                    match c {
                        Change::Insert(ins) | Change::Upsert(ins) => {
                            assert_eq!(ins.values.len(), ins.table.columns.len());
                        }
                        Change::Add(a) => {
                            assert_eq!(a.table.kind, crate::schema::Kind::Counter, "{t}");
                        }
                        Change::Update(u) => {
                            assert_ne!(u.table.kind, crate::schema::Kind::Log, "{t}");
                            assert!(u.set.iter().all(|(c, _)| c.table == u.table.name));
                        }
                        Change::Delete(d) => {
                            assert_eq!(d.table.kind, crate::schema::Kind::State, "{t}");
                            assert_eq!(d.key.len(), d.table.primary_key.len(), "{t}");
                        }
                    }
                }
            }
            // One projection alone decides exactly what it decides among all three.
            let d = decode(&e).unwrap();
            for (i, p) in PROJECTIONS.iter().enumerate() {
                assert_eq!(super::changes(p, &e, &d, &Forgetful), changes[i], "{t}");
            }
        }
        assert!(covered.iter().all(|c| *c), "every projection has changes");
    }

    /// An update that would set nothing is no change at all (a profile update naming
    /// no field the read models hold).
    #[test]
    fn an_update_setting_nothing_is_no_change() {
        let mut e = fixtures()
            .into_iter()
            .find(|e| e.event_type == "ManagerUpdated")
            .expect("fixture");
        for field in ["name", "role", "team", "region", "branch", "holding_limit"] {
            e.payload
                .as_object_mut()
                .unwrap()
                .insert(field.into(), serde_json::Value::Null);
        }
        assert_eq!(
            project(&e).unwrap(),
            vec![Vec::new(), Vec::new(), Vec::new()]
        );
    }
}

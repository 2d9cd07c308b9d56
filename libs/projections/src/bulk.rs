//! The fast path of a rebuild: fold the log in memory into the rows a read model ends up
//! with, then bulk-load them (PostgreSQL `COPY`, SQLite prepared inserts) into the fresh
//! tables. The rows are the ones the statements of `project.rs` produce applied one by
//! one; `crm projections verify` compares this path with the live, statement-built
//! tables row by row, so any difference between the two is found.
//!
//! Append-only rows (timeline, contacts, transitions, purchases) are written page by
//! page; rows that change (customers, periods, stages, complaints, …) are kept in memory
//! until the end.

use std::collections::HashMap;

use crm_domain::customer::personal;
use crm_domain::{CustomerEvent, DomainEvent, ManagerEvent, Payload};
use crm_eventstore::RecordedEvent;

use crate::project::{micros, summary};
use crate::schema::{Projection, Table, ANALYTICS, OWNERSHIP, TIMELINE};
use crate::store::{ReadError, ReadStore};

/// One cell of a row.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Int(i64),
    Text(String),
    Null,
}

impl From<i64> for Cell {
    fn from(v: i64) -> Self {
        Cell::Int(v)
    }
}
impl From<&str> for Cell {
    fn from(v: &str) -> Self {
        Cell::Text(v.to_string())
    }
}
impl From<String> for Cell {
    fn from(v: String) -> Self {
        Cell::Text(v)
    }
}
impl From<Option<i64>> for Cell {
    fn from(v: Option<i64>) -> Self {
        v.map_or(Cell::Null, Cell::Int)
    }
}
impl From<Option<String>> for Cell {
    fn from(v: Option<String>) -> Self {
        v.map_or(Cell::Null, Cell::Text)
    }
}
impl From<bool> for Cell {
    fn from(v: bool) -> Self {
        Cell::Int(i64::from(v))
    }
}

pub type Row = Vec<Cell>;

/// A customer row of `rm_customers`, in schema column order.
#[derive(Debug, Clone)]
struct Customer {
    cells: Row,
}

const C_DISPLAY_NAME: usize = 2;
const C_REGION: usize = 3;
const C_BRANCH: usize = 4;
const C_STAGE: usize = 6;
const C_TIER: usize = 7;
const C_AUM: usize = 8;
const C_OWNER: usize = 9;
const C_TEAM: usize = 10;
const C_OWNER_REGION: usize = 11;
const C_OWNED_SINCE: usize = 12;
const C_LAST_CONTACT: usize = 14;
const C_FOLLOW_UP: usize = 15;

#[derive(Debug, Clone)]
struct Period {
    cells: Row,
    open: bool,
}

#[derive(Debug, Clone, Default)]
struct Complaint {
    cells: Row,
}

/// Column positions of `rm_complaints`, looked up once.
struct ComplaintCols {
    len: usize,
    complaint_id: usize,
    customer_id: usize,
    owner_id: usize,
    severity: usize,
    logged_at_us: usize,
    first_response_s: usize,
    first_response_in_sla: usize,
    resolved_at_us: usize,
    resolution_s: usize,
    resolution_in_sla: usize,
    resolved_by: usize,
    resolutions: usize,
    resolution_breaches: usize,
    reopens: usize,
    escalations: usize,
    closed_at_us: usize,
    satisfaction: usize,
}

impl ComplaintCols {
    fn new() -> Self {
        let t = table(&ANALYTICS, "rm_complaints");
        Self {
            len: t.columns.len(),
            complaint_id: col(t, "complaint_id"),
            customer_id: col(t, "customer_id"),
            owner_id: col(t, "owner_id"),
            severity: col(t, "severity"),
            logged_at_us: col(t, "logged_at_us"),
            first_response_s: col(t, "first_response_s"),
            first_response_in_sla: col(t, "first_response_in_sla"),
            resolved_at_us: col(t, "resolved_at_us"),
            resolution_s: col(t, "resolution_s"),
            resolution_in_sla: col(t, "resolution_in_sla"),
            resolved_by: col(t, "resolved_by"),
            resolutions: col(t, "resolutions"),
            resolution_breaches: col(t, "resolution_breaches"),
            reopens: col(t, "reopens"),
            escalations: col(t, "escalations"),
            closed_at_us: col(t, "closed_at_us"),
            satisfaction: col(t, "satisfaction"),
        }
    }
}

/// The in-memory state of one read model's rebuild.
pub struct Fold {
    projection: Projection,
    cc: ComplaintCols,
    positions: HashMap<String, i64>,
    limits: Option<std::sync::Arc<HashMap<String, i64>>>,
    customers: HashMap<String, Customer>,
    periods: HashMap<String, Vec<Period>>,
    managers: HashMap<String, Row>,
    owners: HashMap<String, Option<String>>,
    stages: HashMap<String, Vec<(Row, bool)>>,
    complaints: HashMap<String, Complaint>,
    referrals: HashMap<String, Row>,
    /// Append-only rows waiting to be written, per table.
    pending: HashMap<&'static str, Vec<Row>>,
}

fn set(row: &mut Row, i: usize, v: impl Into<Cell>) {
    row[i] = v.into();
}

fn set_some(row: &mut Row, i: usize, v: Option<impl Into<Cell>>) {
    if let Some(v) = v {
        row[i] = v.into();
    }
}

fn col(t: &Table, name: &str) -> usize {
    t.columns
        .iter()
        .position(|(c, _)| *c == name)
        .unwrap_or_else(|| panic!("{} has no column {name}", t.name))
}

fn table(p: &Projection, name: &str) -> &'static Table {
    p.tables
        .iter()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("{} has no table {name}", p.name))
}

impl Fold {
    pub fn new(
        projection: Projection,
        limits: Option<std::sync::Arc<HashMap<String, i64>>>,
    ) -> Self {
        Self {
            projection,
            cc: ComplaintCols::new(),
            positions: HashMap::new(),
            limits,
            customers: HashMap::new(),
            periods: HashMap::new(),
            managers: HashMap::new(),
            owners: HashMap::new(),
            stages: HashMap::new(),
            complaints: HashMap::new(),
            referrals: HashMap::new(),
            pending: HashMap::new(),
        }
    }

    /// Fold one event (read in log order). Returns whether it was applied.
    pub fn apply<P: Payload>(&mut self, e: &RecordedEvent<P>) -> bool {
        let version = e.stream_version as i64;
        if let Some(limits) = &self.limits {
            if version > limits.get(&e.stream_id).copied().unwrap_or(0) {
                return false;
            }
        }
        // A duplicate, or a gap the statement path would also wait on, is not applied.
        // (The stream's id is copied once, at its first event.)
        match self.positions.get_mut(&e.stream_id) {
            Some(current) if version == *current + 1 => *current = version,
            Some(_) => return false,
            None if version == 1 => {
                self.positions.insert(e.stream_id.clone(), version);
            }
            None => return false,
        }
        // An event that cannot be projected moves its stream on and changes nothing.
        let Ok(decoded) = DomainEvent::decode(&e.event_type, e.schema_version, &e.payload) else {
            return true;
        };
        match decoded {
            DomainEvent::Customer(c) => {
                let id = c.customer_id().to_string();
                if e.stream_id.strip_prefix("customer-") != Some(id.as_str()) {
                    return true;
                }
                match self.projection.name {
                    n if n == OWNERSHIP.name => self.ownership(e, &id, &c),
                    n if n == TIMELINE.name => self.timeline(e, &id, &c),
                    _ => self.analytics(e, &id, &c),
                }
            }
            DomainEvent::Manager(m) => {
                if self.projection.name == OWNERSHIP.name {
                    self.manager(&m);
                }
            }
            DomainEvent::Policy(_) => {}
        }
        true
    }

    fn push(&mut self, table: &'static str, row: Row) {
        self.pending.entry(table).or_default().push(row);
    }

    fn ownership<P>(&mut self, e: &RecordedEvent<P>, id: &str, c: &CustomerEvent) {
        let at = micros(e.metadata.occurred_at);
        let actor = e.metadata.actor.as_str();
        let take =
            |this: &mut Self, manager: String, team: &str, region: &str, reason: Option<String>| {
                close_period(this, id, at, &e.event_type, actor);
                this.periods
                    .entry(id.to_string())
                    .or_default()
                    .push(Period {
                        cells: vec![
                            id.into(),
                            (e.stream_version as i64).into(),
                            manager.clone().into(),
                            team.into(),
                            region.into(),
                            at.into(),
                            Cell::Null,
                            e.event_type.as_str().into(),
                            reason.into(),
                            actor.into(),
                            e.event_id.to_string().into(),
                            Cell::Null,
                            Cell::Null,
                        ],
                        open: true,
                    });
                if let Some(row) = this.customers.get_mut(id) {
                    set(&mut row.cells, C_OWNER, manager);
                    set(&mut row.cells, C_TEAM, team);
                    set(&mut row.cells, C_OWNER_REGION, region);
                    set(&mut row.cells, C_OWNED_SINCE, at);
                }
            };
        match c {
            CustomerEvent::CustomerRegistered(r) => {
                self.customers.insert(
                    id.to_string(),
                    Customer {
                        cells: vec![
                            id.into(),
                            r.customer_type.as_str().into(),
                            r.display_name.as_str().into(),
                            r.region.as_str().into(),
                            r.branch.as_ref().map(|b| b.as_str().to_string()).into(),
                            r.first_touch_channel.as_str().into(),
                            r.stage.as_str().into(),
                            r.value_tier.as_str().into(),
                            r.aum_minor.into(),
                            Cell::Null,
                            Cell::Null,
                            Cell::Null,
                            Cell::Null,
                            micros(r.registered_at).into(),
                            Cell::Null,
                            Cell::Null,
                        ],
                    },
                );
            }
            CustomerEvent::ProfileUpdated(p) => {
                if let Some(row) = self.customers.get_mut(id) {
                    set_some(&mut row.cells, C_DISPLAY_NAME, p.display_name.clone());
                    set_some(
                        &mut row.cells,
                        C_REGION,
                        p.region.as_ref().map(|r| r.as_str().to_string()),
                    );
                    set_some(
                        &mut row.cells,
                        C_BRANCH,
                        p.branch.as_ref().map(|b| b.as_str().to_string()),
                    );
                    set_some(&mut row.cells, C_AUM, p.aum_minor);
                }
            }
            CustomerEvent::OwnerAssigned(a) => take(
                self,
                a.manager_id.to_string(),
                a.team.as_str(),
                a.region.as_str(),
                Some(a.reason.clone()),
            ),
            CustomerEvent::OwnershipTransferred(t) => take(
                self,
                t.to_manager.to_string(),
                t.to_team.as_str(),
                t.to_region.as_str(),
                Some(t.reason.clone()),
            ),
            CustomerEvent::ClaimedFromPool(cl) => take(
                self,
                cl.manager_id.to_string(),
                cl.team.as_str(),
                cl.region.as_str(),
                None,
            ),
            CustomerEvent::ReleasedToPool(_) => {
                close_period(self, id, at, &e.event_type, actor);
                if let Some(row) = self.customers.get_mut(id) {
                    for i in [C_OWNER, C_TEAM, C_OWNER_REGION, C_OWNED_SINCE] {
                        row.cells[i] = Cell::Null;
                    }
                }
            }
            CustomerEvent::ContactRecorded(k) => {
                if let Some(row) = self.customers.get_mut(id) {
                    // As the projector does: a late-recorded contact moves nothing back.
                    let at = micros(k.contacted_at);
                    let newer = match row.cells[C_LAST_CONTACT] {
                        Cell::Int(last) => last <= at,
                        _ => true,
                    };
                    if newer {
                        set(&mut row.cells, C_LAST_CONTACT, at);
                        set(&mut row.cells, C_FOLLOW_UP, k.next_follow_up_at.map(micros));
                    }
                }
            }
            CustomerEvent::LifecycleStageChanged(l) => {
                if let Some(row) = self.customers.get_mut(id) {
                    set(&mut row.cells, C_STAGE, l.to.as_str());
                }
            }
            CustomerEvent::ValueTierChanged(t) => {
                if let Some(row) = self.customers.get_mut(id) {
                    set(&mut row.cells, C_TIER, t.to.as_str());
                }
            }
            CustomerEvent::PersonalDataErased(_) => {
                if let Some(row) = self.customers.get_mut(id) {
                    set(&mut row.cells, C_DISPLAY_NAME, personal::ERASED);
                }
            }
            _ => {}
        }
    }

    fn manager(&mut self, m: &ManagerEvent) {
        match m {
            ManagerEvent::ManagerRegistered(r) => {
                self.managers.insert(
                    r.manager_id.to_string(),
                    vec![
                        r.manager_id.to_string().into(),
                        r.name.as_str().into(),
                        r.role.as_str().into(),
                        r.team.as_str().into(),
                        r.region.as_str().into(),
                        r.branch.as_str().into(),
                        i64::from(r.holding_limit).into(),
                        1i64.into(),
                    ],
                );
            }
            ManagerEvent::ManagerUpdated(u) => {
                if let Some(row) = self.managers.get_mut(&u.manager_id.to_string()) {
                    set_some(row, 1, u.name.clone());
                    set_some(row, 2, u.role.map(|r| r.as_str().to_string()));
                    set_some(row, 3, u.team.as_ref().map(|t| t.as_str().to_string()));
                    set_some(row, 4, u.region.as_ref().map(|r| r.as_str().to_string()));
                    set_some(row, 5, u.branch.as_ref().map(|b| b.as_str().to_string()));
                    set_some(row, 6, u.holding_limit.map(i64::from));
                }
            }
            ManagerEvent::ManagerDeactivated(d) => {
                if let Some(row) = self.managers.get_mut(&d.manager_id.to_string()) {
                    row[7] = 0i64.into();
                }
            }
            ManagerEvent::ManagerReactivated(r) => {
                if let Some(row) = self.managers.get_mut(&r.manager_id.to_string()) {
                    row[7] = 1i64.into();
                }
            }
        }
    }

    fn timeline<P>(&mut self, e: &RecordedEvent<P>, id: &str, c: &CustomerEvent) {
        self.push(
            "rm_timeline",
            vec![
                id.into(),
                (e.stream_version as i64).into(),
                e.event_id.to_string().into(),
                e.event_type.as_str().into(),
                micros(e.metadata.occurred_at).into(),
                e.metadata.actor.as_str().into(),
                summary(c).into(),
            ],
        );
    }

    fn analytics<P>(&mut self, e: &RecordedEvent<P>, id: &str, c: &CustomerEvent) {
        let at = micros(e.metadata.occurred_at);
        let version = e.stream_version as i64;
        let owner = |this: &Self| -> Cell { this.owners.get(id).cloned().flatten().into() };
        match c {
            CustomerEvent::CustomerRegistered(r) => {
                let from = micros(r.registered_at);
                self.stages.entry(id.to_string()).or_default().push((
                    vec![
                        id.into(),
                        version.into(),
                        r.stage.as_str().into(),
                        from.into(),
                        Cell::Null,
                    ],
                    true,
                ));
                let o = owner(self);
                self.push(
                    "rm_stage_transitions",
                    vec![
                        id.into(),
                        version.into(),
                        Cell::Null,
                        r.stage.as_str().into(),
                        from.into(),
                        0i64.into(),
                        o,
                    ],
                );
            }
            CustomerEvent::LifecycleStageChanged(l) => {
                let stays = self.stages.entry(id.to_string()).or_default();
                for (row, open) in stays.iter_mut() {
                    if *open {
                        row[4] = at.into();
                        *open = false;
                    }
                }
                stays.push((
                    vec![
                        id.into(),
                        version.into(),
                        l.to.as_str().into(),
                        at.into(),
                        Cell::Null,
                    ],
                    true,
                ));
                let o = owner(self);
                self.push(
                    "rm_stage_transitions",
                    vec![
                        id.into(),
                        version.into(),
                        l.from.as_str().into(),
                        l.to.as_str().into(),
                        at.into(),
                        l.reactivated.into(),
                        o,
                    ],
                );
            }
            CustomerEvent::OwnerAssigned(a) => {
                self.owners
                    .insert(id.to_string(), Some(a.manager_id.to_string()));
            }
            CustomerEvent::OwnershipTransferred(t) => {
                self.owners
                    .insert(id.to_string(), Some(t.to_manager.to_string()));
            }
            CustomerEvent::ClaimedFromPool(cl) => {
                self.owners
                    .insert(id.to_string(), Some(cl.manager_id.to_string()));
            }
            CustomerEvent::ReleasedToPool(r) => {
                if let Some(rule) = &r.rule {
                    self.push(
                        "rm_pool_events",
                        vec![
                            id.into(),
                            version.into(),
                            "return".into(),
                            r.previous_owner.to_string().into(),
                            rule.cause.as_str().into(),
                            micros(rule.due_at).into(),
                            at.into(),
                            i64::from(rule.policy_version).into(),
                        ],
                    );
                }
                self.owners.insert(id.to_string(), None);
            }
            CustomerEvent::PoolReturnWarned(w) => self.push(
                "rm_pool_events",
                vec![
                    id.into(),
                    version.into(),
                    "warning".into(),
                    w.owner.to_string().into(),
                    w.cause.as_str().into(),
                    micros(w.returns_at).into(),
                    at.into(),
                    i64::from(w.policy_version).into(),
                ],
            ),
            CustomerEvent::ComplaintSlaWarned(_) | CustomerEvent::ComplaintSlaBreached(_) => {
                let (kind, complaint, clock, due, recorded_owner) = match c {
                    CustomerEvent::ComplaintSlaWarned(w) => {
                        ("warning", w.complaint_id, w.clock, w.due_at, None)
                    }
                    CustomerEvent::ComplaintSlaBreached(b) => {
                        ("breach", b.complaint_id, b.clock, b.due_at, b.owner)
                    }
                    _ => unreachable!("matched above"),
                };
                // As the statement path: the event's owner, else this model's owner now.
                let o = recorded_owner.map_or_else(|| owner(self), |m| m.to_string().into());
                self.push(
                    "rm_sla_events",
                    vec![
                        id.into(),
                        version.into(),
                        complaint.to_string().into(),
                        kind.into(),
                        clock.as_str().into(),
                        micros(due).into(),
                        Cell::Null,
                        Cell::Null,
                        1i64.into(),
                        o,
                        at.into(),
                    ],
                );
            }
            CustomerEvent::ContactRecorded(k) => self.push(
                "rm_contacts",
                vec![
                    id.into(),
                    version.into(),
                    k.manager_id.to_string().into(),
                    k.by_owner.into(),
                    k.channel.as_str().into(),
                    k.outcome.as_str().into(),
                    micros(k.contacted_at).into(),
                ],
            ),
            CustomerEvent::ComplaintLogged(l) => {
                let cc = &self.cc;
                let mut row: Row = vec![Cell::Null; cc.len];
                row[cc.complaint_id] = l.complaint_id.to_string().into();
                row[cc.customer_id] = id.into();
                row[cc.owner_id] = l.owner.map(|o| o.to_string()).into();
                row[cc.severity] = l.severity.as_str().into();
                row[cc.logged_at_us] = micros(l.logged_at).into();
                for i in [
                    cc.resolutions,
                    cc.resolution_breaches,
                    cc.reopens,
                    cc.escalations,
                ] {
                    row[i] = 0i64.into();
                }
                self.complaints
                    .insert(l.complaint_id.to_string(), Complaint { cells: row });
            }
            CustomerEvent::ComplaintAcknowledged(a) => {
                let cc = &self.cc;
                if let Some(k) = self.complaints.get_mut(&a.complaint_id.to_string()) {
                    k.cells[cc.first_response_s] = a.response_seconds.into();
                    k.cells[cc.first_response_in_sla] = a.within_sla.into();
                }
            }
            CustomerEvent::ComplaintEscalated(x) => {
                let cc = &self.cc;
                if let Some(k) = self.complaints.get_mut(&x.complaint_id.to_string()) {
                    bump(&mut k.cells[cc.escalations], 1);
                }
                let o = owner(self);
                self.push(
                    "rm_sla_events",
                    vec![
                        id.into(),
                        version.into(),
                        x.complaint_id.to_string().into(),
                        "escalation".into(),
                        Cell::Null,
                        Cell::Null,
                        i64::from(x.level).into(),
                        x.escalated_to.map(|m| m.to_string()).into(),
                        x.automatic.into(),
                        o,
                        at.into(),
                    ],
                );
            }
            CustomerEvent::ComplaintResolved(r) => {
                let cc = &self.cc;
                if let Some(k) = self.complaints.get_mut(&r.complaint_id.to_string()) {
                    k.cells[cc.resolved_at_us] = at.into();
                    k.cells[cc.resolution_s] = r.resolution_seconds.into();
                    k.cells[cc.resolution_in_sla] = r.within_sla.into();
                    k.cells[cc.resolved_by] = r.resolved_by.to_string().into();
                    bump(&mut k.cells[cc.resolutions], 1);
                    bump(
                        &mut k.cells[cc.resolution_breaches],
                        i64::from(!r.within_sla),
                    );
                }
            }
            CustomerEvent::ComplaintReopened(r) => {
                let cc = &self.cc;
                if let Some(k) = self.complaints.get_mut(&r.complaint_id.to_string()) {
                    bump(&mut k.cells[cc.reopens], 1);
                    k.cells[cc.resolved_at_us] = Cell::Null;
                }
            }
            CustomerEvent::ComplaintClosed(c) => {
                let cc = &self.cc;
                if let Some(k) = self.complaints.get_mut(&c.complaint_id.to_string()) {
                    k.cells[cc.closed_at_us] = at.into();
                    k.cells[cc.satisfaction] = c.satisfaction.map(i64::from).into();
                }
            }
            CustomerEvent::PurchaseRecorded(p) => self.push(
                "rm_purchases",
                vec![
                    p.purchase_id.to_string().into(),
                    id.into(),
                    p.manager_id.map(|m| m.to_string()).into(),
                    p.product_line.as_str().into(),
                    p.amount_minor.into(),
                    p.currency.as_str().into(),
                    at.into(),
                ],
            ),
            CustomerEvent::ReferralRecorded(r) => {
                self.referrals.insert(
                    r.referral_id.to_string(),
                    vec![
                        r.referral_id.to_string().into(),
                        id.into(),
                        r.referrer.as_str().into(),
                        r.referred_to.to_string().into(),
                        at.into(),
                        Cell::Null,
                    ],
                );
            }
            CustomerEvent::ReferralConverted(r) => {
                if let Some(row) = self.referrals.get_mut(&r.referral_id.to_string()) {
                    row[5] = at.into();
                }
            }
            _ => {}
        }
    }

    /// The append-only rows gathered so far, to be written (to `<table><suffix>`).
    pub fn take_pending(&mut self) -> Vec<(&'static Table, Vec<Row>)> {
        let p = self.projection;
        self.pending
            .iter_mut()
            .filter(|(_, rows)| !rows.is_empty())
            .map(|(t, rows)| {
                // The next page's rows for this table: about as many, room made once.
                let next = Vec::with_capacity(rows.len());
                (table(&p, t), std::mem::replace(rows, next))
            })
            .collect()
    }

    /// Every table of the projection (named without suffix; the positions table's
    /// columns are [`POSITIONS`]) with the rows it still needs: what is in memory.
    pub fn into_tables(mut self) -> Vec<(String, &'static Table, Vec<Row>)> {
        let p = self.projection;
        let mut out: Vec<(&'static str, Vec<Row>)> =
            std::mem::take(&mut self.pending).into_iter().collect();
        match p.name {
            n if n == OWNERSHIP.name => {
                out.push((
                    "rm_customers",
                    self.customers.into_values().map(|c| c.cells).collect(),
                ));
                out.push((
                    "rm_ownership_periods",
                    self.periods
                        .into_values()
                        .flatten()
                        .map(|p| p.cells)
                        .collect(),
                ));
                out.push(("rm_managers", self.managers.into_values().collect()));
            }
            n if n == ANALYTICS.name => {
                out.push((
                    "rm_analytics_owners",
                    self.owners
                        .into_iter()
                        .map(|(c, o)| vec![c.into(), o.into()])
                        .collect(),
                ));
                out.push((
                    "rm_stage_periods",
                    self.stages
                        .into_values()
                        .flatten()
                        .map(|(r, _)| r)
                        .collect(),
                ));
                out.push((
                    "rm_complaints",
                    self.complaints.into_values().map(|c| c.cells).collect(),
                ));
                out.push(("rm_referrals", self.referrals.into_values().collect()));
            }
            _ => {}
        }
        let mut rows: HashMap<&'static str, Vec<Row>> = out.into_iter().collect();
        let mut tables: Vec<(String, &'static Table, Vec<Row>)> = p
            .tables
            .iter()
            .map(|t| {
                (
                    t.name.to_string(),
                    t,
                    rows.remove(t.name).unwrap_or_default(),
                )
            })
            .collect();
        tables.push((
            p.positions_table(),
            &POSITIONS,
            self.positions
                .into_iter()
                .map(|(s, v)| vec![s.into(), v.into()])
                .collect(),
        ));
        tables
    }
}

/// The columns of a projection's positions table (its name is per projection).
pub static POSITIONS: Table = Table {
    name: "positions",
    columns: &[("stream_id", "TEXT"), ("version", "BIGINT")],
    primary_key: &["stream_id"],
    indexes: &[],
    since: 1001,
};

fn close_period(this: &mut Fold, id: &str, at: i64, event_type: &str, actor: &str) {
    if let Some(periods) = this.periods.get_mut(id) {
        for p in periods.iter_mut().filter(|p| p.open) {
            p.cells[6] = at.into();
            p.cells[11] = event_type.into();
            p.cells[12] = actor.into();
            p.open = false;
        }
    }
}

fn bump(cell: &mut Cell, by: i64) {
    if let Cell::Int(v) = cell {
        *v += by;
    }
}

/// Append `s` to a `COPY … FROM STDIN` text-format buffer: backslash, tab, newline and
/// carriage return escaped, every other byte as is (the runs between them found with
/// `memchr` and copied at once: most texts, JSON payloads included, have none).
fn push_copy_text(buf: &mut String, s: &str) {
    let bytes = s.as_bytes();
    let mut start = 0;
    // Carriage returns are searched for apart (memchr3 takes three bytes), once per hit.
    let mut next_cr = memchr::memchr(b'\r', bytes);
    loop {
        let other = memchr::memchr3(b'\\', b'\t', b'\n', &bytes[start..]).map(|i| start + i);
        let Some(i) = (match (other, next_cr) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }) else {
            break;
        };
        let escaped = match bytes[i] {
            b'\\' => "\\\\",
            b'\t' => "\\t",
            b'\n' => "\\n",
            _ => "\\r",
        };
        // The escaped bytes are ASCII, so `i` is a character boundary.
        buf.push_str(&s[start..i]);
        buf.push_str(escaped);
        start = i + 1;
        if next_cr == Some(i) {
            next_cr = memchr::memchr(b'\r', &bytes[start..]).map(|j| start + j);
        }
    }
    buf.push_str(&s[start..]);
}

/// Bulk-load `rows` (in `t`'s column order) into table `name`.
pub(crate) async fn write_rows(
    read: &ReadStore,
    name: &str,
    t: &Table,
    rows: Vec<Row>,
) -> Result<(), ReadError> {
    if rows.is_empty() {
        return Ok(());
    }
    let columns: Vec<&str> = t.columns.iter().map(|(c, _)| *c).collect();
    match read {
        ReadStore::Postgres(pool) => {
            let mut conn = pool.acquire().await?;
            let mut copy = conn
                .copy_in_raw(&format!("COPY {name} ({}) FROM STDIN", columns.join(", ")))
                .await?;
            let mut buf = String::with_capacity(1 << 20);
            for row in rows {
                for (i, cell) in row.iter().enumerate() {
                    if i > 0 {
                        buf.push('\t');
                    }
                    match cell {
                        Cell::Null => buf.push_str("\\N"),
                        Cell::Int(v) => {
                            use std::fmt::Write as _;
                            let _ = write!(buf, "{v}");
                        }
                        Cell::Text(s) => push_copy_text(&mut buf, s),
                    }
                }
                buf.push('\n');
                if buf.len() > (1 << 20) {
                    // One buffer for the whole table: no fresh megabyte per chunk.
                    copy.send(buf.as_bytes()).await?;
                    buf.clear();
                }
            }
            if !buf.is_empty() {
                copy.send(buf.into_bytes()).await?;
            }
            copy.finish().await?;
        }
        ReadStore::Sqlite(pool) => {
            let marks: Vec<String> = (1..=columns.len()).map(|i| format!("${i}")).collect();
            let sql = format!(
                "INSERT INTO {name} ({}) VALUES ({})",
                columns.join(", "),
                marks.join(", ")
            );
            let mut tx = pool.begin().await?;
            for row in rows {
                let mut q = sqlx::query(&sql);
                for cell in row {
                    q = match cell {
                        Cell::Null => q.bind(None::<String>),
                        Cell::Int(v) => q.bind(v),
                        Cell::Text(s) => q.bind(s),
                    };
                }
                q.execute(&mut *tx).await?;
            }
            tx.commit().await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::push_copy_text;

    #[test]
    fn copy_text_escapes_only_what_copy_reads_specially() {
        let mut buf = String::from("x\t");
        push_copy_text(&mut buf, "a\\b\tc\nd\re \"名字\" \\\\n");
        assert_eq!(buf, "x\ta\\\\b\\tc\\nd\\re \"名字\" \\\\\\\\n");
        let mut plain = String::new();
        push_copy_text(&mut plain, "{\"name\":\"王\"}");
        assert_eq!(plain, "{\"name\":\"王\"}");
    }

    /// Every string of up to five characters over the special bytes, a plain one and a
    /// multi-byte one, against a character-by-character escape.
    #[test]
    fn copy_text_matches_a_char_by_char_escape() {
        let alphabet = ['a', '\\', '\t', '\n', '\r', '名'];
        let reference = |s: &str| {
            s.chars()
                .map(|c| match c {
                    '\\' => "\\\\".to_string(),
                    '\t' => "\\t".to_string(),
                    '\n' => "\\n".to_string(),
                    '\r' => "\\r".to_string(),
                    c => c.to_string(),
                })
                .collect::<String>()
        };
        let mut strings = vec![String::new()];
        for _ in 0..5 {
            let longer: Vec<String> = strings
                .iter()
                .filter(|s| s.chars().count() == strings.last().unwrap().chars().count())
                .flat_map(|s| alphabet.iter().map(move |c| format!("{s}{c}")))
                .collect();
            strings.extend(longer);
        }
        assert_eq!(strings.len(), 1 + 6 + 36 + 216 + 1296 + 7776);
        for s in &strings {
            let mut buf = String::new();
            push_copy_text(&mut buf, s);
            assert_eq!(buf, reference(s), "{s:?}");
        }
    }
}

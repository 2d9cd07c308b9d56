//! The KPI ledger: what the analytics read model keeps so a manager-KPI question reads
//! a few rows per manager and day, whatever the size of the book (part of the analytics
//! projection, pure). Its reference is [`crate::kpi::kpis`] over the facts, row for row
//! (tests, on both backends); the database's answer from it is
//! `crate::aggregate::kpi_kept`.
//!
//! Days are the local days of one time zone, the ledger's (`rm_kept.time_zone`, chosen
//! when the read model is built: `crm projections rebuild analytics --time-zone`); a
//! question in another zone is answered from the facts.
//!
//! - **Flows** (contacts, stage moves and wins, customers lost to the pool, pool and SLA
//!   events, referrals) are added to their manager's day as they happen.
//! - **Snapshots and lead stretches** follow from a customer's history: its ownership
//!   periods (portfolio, tier mix and value, with the customer's tier and AUM as they
//!   are now, as the reference takes them), its covered spans (owned and contacted by
//!   the owner within the coverage window) and its lead stretches (owned while a lead).
//!   The memo keeps that history per customer; each event that changes it adds the
//!   difference between the customer's deltas after and before (so a tier change, a
//!   late contact or an event out of time order moves exactly what it changes).
//!   Deltas are added per day and per month: a snapshot at the end of a day is the sum
//!   of the months before its month and the days of its month up to it.
//! - **Spans** (`rm_kpi_spans`) keep each period and covered or overdue span at its
//!   instants, for the day that holds "now" (whose snapshot is taken at an instant, not
//!   at the day's end). Overdue follow-ups are spans too: owned, with the customer's next
//!   follow-up (as it is now, as the reference takes it) before the instant.
//! - **Wins** (`rm_kpi_wins`) carry the winner's lead stretches around them, so a
//!   bucket's conversions are read from its wins alone.
//! - **Complaints** (`rm_kpi_complaints`) are kept one row each, as the KPIs count them,
//!   keyed by when they were logged; their counts (logged, breached, resolved, reopened,
//!   satisfaction) are added to the owner's day as they change, their durations read
//!   one by one (medians and 90th percentiles are not sums).

use std::collections::{BTreeMap, BTreeSet};

use chrono::{Datelike, NaiveDate};
use crm_domain::CustomerEvent;
use serde::{Deserialize, Serialize};

use crate::calendar::Calendar;
use crate::change::{Add, Change, Delete, Doc, Insert, Value};
use crate::kpi::COVERAGE_WINDOW_US;
use crate::project::{micros, Memo};
use crate::schema::{col, Col, KPI_COMPLAINTS, KPI_CUSTOMERS, KPI_DAYS, KPI_GAPS, KPI_MONTHS};
use crate::schema::{KPI_SPANS, KPI_WINS};

/// The snapshot and lead-stretch deltas of a day or month, in this order.
pub const SNAPSHOT: [&str; 9] = [
    "portfolio",
    "tier_high",
    "tier_mid",
    "tier_low",
    "value_minor",
    "covered",
    "overdue",
    "lead_starts",
    "lead_ends",
];

/// The flows of a day, in this order.
pub const FLOWS: [&str; 19] = [
    "contacts",
    "transitions",
    "won",
    "reactivated",
    "lost",
    "returned",
    "pool_warnings",
    "sla_warnings",
    "sla_breaches",
    "escalations",
    "automatic_escalations",
    "referrals_made",
    "referrals_converted",
    "complaints",
    "complaints_breached",
    "complaints_resolved",
    "complaints_reopened",
    "satisfaction_sum",
    "satisfaction_n",
];

/// Positions in [`FLOWS`].
pub mod flow {
    pub const CONTACTS: usize = 0;
    pub const TRANSITIONS: usize = 1;
    pub const WON: usize = 2;
    pub const REACTIVATED: usize = 3;
    pub const LOST: usize = 4;
    pub const RETURNED: usize = 5;
    pub const POOL_WARNINGS: usize = 6;
    pub const SLA_WARNINGS: usize = 7;
    pub const SLA_BREACHES: usize = 8;
    pub const ESCALATIONS: usize = 9;
    pub const AUTOMATIC_ESCALATIONS: usize = 10;
    pub const REFERRALS_MADE: usize = 11;
    pub const REFERRALS_CONVERTED: usize = 12;
    /// Complaints logged that day, and of them: breached, resolved, reopened, the sum
    /// and number of satisfaction scores (`COMPLAINTS + i`).
    pub const COMPLAINTS: usize = 13;
}

/// Positions in [`SNAPSHOT`].
pub mod snap {
    pub const PORTFOLIO: usize = 0;
    /// High, mid, low: `TIERS + i`.
    pub const TIERS: usize = 1;
    pub const VALUE: usize = 4;
    pub const COVERED: usize = 5;
    pub const OVERDUE: usize = 6;
    pub const LEAD_STARTS: usize = 7;
    pub const LEAD_ENDS: usize = 8;
}

mod c {
    use super::*;
    pub const ID: Col = col(&KPI_CUSTOMERS, "customer_id");
    pub const LEDGER: Col = col(&KPI_CUSTOMERS, "ledger");

    pub const SPAN_ID: Col = col(&KPI_SPANS, "customer_id");
    pub const SPAN_KIND: Col = col(&KPI_SPANS, "kind");
    pub const SPAN_N: Col = col(&KPI_SPANS, "n");
    pub const SPAN_MANAGER: Col = col(&KPI_SPANS, "manager_id");
    pub const SPAN_FROM: Col = col(&KPI_SPANS, "from_us");
    pub const SPAN_TO: Col = col(&KPI_SPANS, "to_us");
    pub const SPAN_TIER: Col = col(&KPI_SPANS, "value_tier");
    pub const SPAN_VALUE: Col = col(&KPI_SPANS, "value_minor");

    pub const WIN_ID: Col = col(&KPI_WINS, "customer_id");
    pub const WIN_N: Col = col(&KPI_WINS, "n");
    pub const WIN_MANAGER: Col = col(&KPI_WINS, "manager_id");
    pub const WIN_AT: Col = col(&KPI_WINS, "at_us");
    pub const WIN_UNTIL: Col = col(&KPI_WINS, "lead_until_us");
    pub const WIN_NEXT: Col = col(&KPI_WINS, "lead_next_us");
    pub const WIN_DAY: Col = col(&KPI_WINS, "day");
    pub const WIN_CONVERTS_ON: Col = col(&KPI_WINS, "converts_on");

    pub const COMPLAINT_CUSTOMER: Col = col(&KPI_COMPLAINTS, "customer_id");
    pub const COMPLAINT_ID: Col = col(&KPI_COMPLAINTS, "complaint_id");
    pub const COMPLAINT_MANAGER: Col = col(&KPI_COMPLAINTS, "manager_id");
    pub const COMPLAINT_LOGGED: Col = col(&KPI_COMPLAINTS, "logged_at_us");
    pub const COMPLAINT_DAY: Col = col(&KPI_COMPLAINTS, "day");
    pub const COMPLAINT_FIRST: Col = col(&KPI_COMPLAINTS, "first_response_s");
    pub const COMPLAINT_RESOLUTION: Col = col(&KPI_COMPLAINTS, "resolution_s");
    pub const COMPLAINT_BREACHED: Col = col(&KPI_COMPLAINTS, "breached");
    pub const COMPLAINT_RESOLVED: Col = col(&KPI_COMPLAINTS, "resolved");
    pub const COMPLAINT_REOPENED: Col = col(&KPI_COMPLAINTS, "reopened");
    pub const COMPLAINT_SATISFACTION: Col = col(&KPI_COMPLAINTS, "satisfaction");

    pub const GAP_N: Col = col(&KPI_GAPS, "n");

    pub const DAY_SNAPSHOT: [Col; 9] = [
        col(&KPI_DAYS, "portfolio"),
        col(&KPI_DAYS, "tier_high"),
        col(&KPI_DAYS, "tier_mid"),
        col(&KPI_DAYS, "tier_low"),
        col(&KPI_DAYS, "value_minor"),
        col(&KPI_DAYS, "covered"),
        col(&KPI_DAYS, "overdue"),
        col(&KPI_DAYS, "lead_starts"),
        col(&KPI_DAYS, "lead_ends"),
    ];
    pub const MONTH_SNAPSHOT: [Col; 9] = [
        col(&KPI_MONTHS, "portfolio"),
        col(&KPI_MONTHS, "tier_high"),
        col(&KPI_MONTHS, "tier_mid"),
        col(&KPI_MONTHS, "tier_low"),
        col(&KPI_MONTHS, "value_minor"),
        col(&KPI_MONTHS, "covered"),
        col(&KPI_MONTHS, "overdue"),
        col(&KPI_MONTHS, "lead_starts"),
        col(&KPI_MONTHS, "lead_ends"),
    ];
    pub const DAY_FLOWS: [Col; 19] = [
        col(&KPI_DAYS, "contacts"),
        col(&KPI_DAYS, "transitions"),
        col(&KPI_DAYS, "won"),
        col(&KPI_DAYS, "reactivated"),
        col(&KPI_DAYS, "lost"),
        col(&KPI_DAYS, "returned"),
        col(&KPI_DAYS, "pool_warnings"),
        col(&KPI_DAYS, "sla_warnings"),
        col(&KPI_DAYS, "sla_breaches"),
        col(&KPI_DAYS, "escalations"),
        col(&KPI_DAYS, "automatic_escalations"),
        col(&KPI_DAYS, "referrals_made"),
        col(&KPI_DAYS, "referrals_converted"),
        col(&KPI_DAYS, "complaints"),
        col(&KPI_DAYS, "complaints_breached"),
        col(&KPI_DAYS, "complaints_resolved"),
        col(&KPI_DAYS, "complaints_reopened"),
        col(&KPI_DAYS, "satisfaction_sum"),
        col(&KPI_DAYS, "satisfaction_n"),
    ];
}

/// The kinds of span, as `rm_kpi_spans.kind` names them.
pub const OWNED: &str = "owned";
pub const COVERED: &str = "covered";
pub const OVERDUE: &str = "overdue";
const KINDS: [&str; 3] = [OWNED, COVERED, OVERDUE];

/// A complaint as the ledger remembers it: what `rm_complaints` holds of it, and
/// whether a breach was recorded.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Complaint {
    id: String,
    owner: Option<String>,
    logged: i64,
    first_response: Option<i64>,
    first_in_sla: Option<bool>,
    resolution: Option<i64>,
    resolutions: i64,
    resolution_breaches: i64,
    reopens: i64,
    satisfaction: Option<i64>,
    breach_recorded: bool,
}

impl Complaint {
    fn breached(&self) -> bool {
        self.first_in_sla == Some(false) || self.resolution_breaches > 0 || self.breach_recorded
    }

    /// What it adds to its owner's day (`flow::COMPLAINTS + i`).
    fn counts(&self) -> [i64; 6] {
        let resolved = self.resolutions > 0;
        [
            1,
            i64::from(self.breached()),
            i64::from(resolved),
            i64::from(resolved && self.reopens > 0),
            self.satisfaction.unwrap_or(0),
            i64::from(self.satisfaction.is_some()),
        ]
    }

    /// Its row, as the reference counts it.
    fn row(&self, customer: &str, cal: &Calendar) -> Change {
        let breached = self.breached();
        Insert::into(&KPI_COMPLAINTS)
            .set(c::COMPLAINT_CUSTOMER, customer)
            .set(c::COMPLAINT_ID, self.id.as_str())
            .set(c::COMPLAINT_MANAGER, self.owner.clone())
            .set(c::COMPLAINT_LOGGED, self.logged)
            .set(c::COMPLAINT_DAY, cal.day_number(self.logged))
            .set(c::COMPLAINT_FIRST, self.first_response)
            .set(c::COMPLAINT_RESOLUTION, self.resolution)
            .set(c::COMPLAINT_BREACHED, breached)
            .set(c::COMPLAINT_RESOLVED, self.resolutions > 0)
            .set(
                c::COMPLAINT_REOPENED,
                self.resolutions > 0 && self.reopens > 0,
            )
            .set(c::COMPLAINT_SATISFACTION, self.satisfaction)
            .upsert()
    }
}

/// What the ledger remembers of a customer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Ledger {
    tier: String,
    /// AUM in minor units (none: 0, as the reference sums it).
    aum: i64,
    /// Ownership periods: (manager, from, to), in the order they began.
    periods: Vec<(String, i64, Option<i64>)>,
    /// Runs of contacts per manager: (manager, first, last), two contacts of a run at
    /// most the coverage window apart.
    runs: Vec<(String, i64, i64)>,
    /// The latest contact and the follow-up it asked for (as the ownership read model
    /// keeps them: a contact recorded late changes neither).
    last_contact: Option<i64>,
    follow_up: Option<i64>,
    /// Stays in the `lead` stage: (from, to).
    leads: Vec<(i64, Option<i64>)>,
    /// Whether the open stage stay is a `lead` one.
    in_lead: bool,
    /// Moves to `customer` while owned: (owner, at).
    wins: Vec<(String, i64)>,
    /// (referral, referrer)
    referrals: Vec<(String, String)>,
    complaints: Vec<Complaint>,
}

impl Ledger {
    fn recall(memo: &dyn Memo, id: &str) -> Option<Self> {
        memo.row(&KPI_CUSTOMERS, &Value::from(id))?
            .get(c::LEDGER.index)?
            .document()
    }

    fn into_row(self, id: &str) -> Change {
        Insert::into(&KPI_CUSTOMERS)
            .set(c::ID, id)
            .set(c::LEDGER, Value::Doc(Doc::new(self)))
            .upsert()
    }

    /// A contact by `manager` at `at` (asking for a follow-up at `follow_up`), merged
    /// into that manager's runs.
    fn contact(&mut self, manager: &str, at: i64, follow_up: Option<i64>) {
        if self.last_contact.is_none_or(|last| last <= at) {
            self.last_contact = Some(at);
            self.follow_up = follow_up;
        }
        let (mut mine, others): (Vec<_>, Vec<_>) = std::mem::take(&mut self.runs)
            .into_iter()
            .partition(|r| r.0 == manager);
        mine.push((manager.to_string(), at, at));
        mine.sort_by_key(|r| r.1);
        let mut merged: Vec<(String, i64, i64)> = Vec::with_capacity(mine.len());
        for r in mine {
            match merged.last_mut() {
                Some(last) if r.1 - last.2 <= COVERAGE_WINDOW_US => last.2 = last.2.max(r.2),
                _ => merged.push(r),
            }
        }
        self.runs = others;
        self.runs.extend(merged);
    }

    /// A new owner from `at` (`None`: the pool): the open period closes.
    fn owner(&mut self, manager: Option<String>, at: i64) {
        for p in self.periods.iter_mut().filter(|p| p.2.is_none()) {
            p.2 = Some(at);
        }
        if let Some(m) = manager {
            self.periods.push((m, at, None));
        }
    }

    /// A move to `stage` at `at`: the open stay closes.
    fn stage(&mut self, stage: &str, at: i64) {
        if self.in_lead {
            for s in self.leads.iter_mut().filter(|s| s.1.is_none()) {
                s.1 = Some(at);
            }
        }
        self.in_lead = stage == "lead";
        if self.in_lead {
            self.leads.push((at, None));
        }
    }

    fn complaint(&mut self, id: &dyn ToString) -> Option<&mut Complaint> {
        let id = id.to_string();
        self.complaints.iter_mut().find(|k| k.id == id)
    }
}

/// A span: (manager, from, to, the tier and AUM of an owned one).
type Span<'l> = (&'l str, i64, Option<i64>, Option<&'l str>, i64);

/// A win's row: (manager, at, last instant of the lead stretch before, start of the one
/// after).
type Win<'l> = (&'l str, i64, Option<i64>, Option<i64>);

/// A win's local day, and whether it converts a lead within that day alone.
fn win_days(cal: &Calendar, (_, at, until, next): &Win) -> (i64, Option<i64>) {
    let day = cal.day_number(*at);
    let before = until.is_some_and(|u| u == i64::MAX || cal.day_number(u) >= day);
    let after = next.is_some_and(|n| cal.day_number(n) <= day);
    (day, (before || after).then_some(day))
}

/// A customer's deltas and spans, as its history gives them.
#[derive(Debug, Default, PartialEq)]
struct Deltas<'l> {
    /// (local day, manager) → [`SNAPSHOT`] deltas.
    days: BTreeMap<(i64, &'l str), [i64; 9]>,
    /// Per kind of [`KINDS`]: its spans.
    spans: [Vec<Span<'l>>; 3],
    wins: Vec<Win<'l>>,
    /// (manager, last day of a lead stretch, first day of the next) → count.
    gaps: BTreeMap<(&'l str, i64, i64), i64>,
}

impl<'l> Deltas<'l> {
    fn add(&mut self, manager: &'l str, day: i64, slot: usize, n: i64) {
        if n != 0 {
            self.days.entry((day, manager)).or_default()[slot] += n;
        }
    }

    /// A span of kind `k` (in [`KINDS`]) counted in `slot`: +1 on the day it starts,
    /// -1 on the day it ends.
    fn span(&mut self, cal: &Calendar, k: usize, slot: usize, span: Span<'l>) {
        let (m, from, to, _, _) = span;
        self.add(m, cal.day_number(from), slot, 1);
        if let Some(to) = to {
            self.add(m, cal.day_number(to), slot, -1);
        }
        self.spans[k].push(span);
    }
}

/// The tier column of `tier` ([`snap::TIERS`] + 0, 1, 2: high, mid, any other).
fn tier_slot(tier: &str) -> usize {
    snap::TIERS
        + match tier {
            "high" => 0,
            "mid" => 1,
            _ => 2,
        }
}

/// Which parts of a customer's deltas an event changes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Parts {
    /// Ownership periods with the tier and AUM.
    owned: bool,
    /// Covered spans.
    covered: bool,
    /// Overdue spans.
    overdue: bool,
    /// Lead stretches, their gaps and the wins.
    leads: bool,
}

impl Parts {
    const ALL: Parts = Parts {
        owned: true,
        covered: true,
        overdue: true,
        leads: true,
    };

    fn any(self) -> bool {
        self != Parts::default()
    }
}

/// What `l`'s history adds, in local days of `cal`: the `parts` of it asked for.
fn deltas<'l>(l: &'l Ledger, cal: &Calendar, parts: Parts) -> Deltas<'l> {
    let mut d = Deltas::default();
    if parts.owned {
        owned(l, cal, &mut d);
    }
    if parts.covered {
        covered(l, cal, &mut d);
    }
    if parts.overdue {
        overdue(l, cal, &mut d);
    }
    if parts.leads {
        let stretches = lead_stretches(l, cal, &mut d);
        wins(l, &stretches, &mut d);
    }
    d
}

/// Ownership periods: +1 where they start, -1 where they end (as the ownership read
/// model has them, even one a clock stepping back made end before it began).
fn owned<'l>(l: &'l Ledger, cal: &Calendar, d: &mut Deltas<'l>) {
    for (m, from, to) in &l.periods {
        for (at, sign) in std::iter::once((*from, 1)).chain(to.map(|t| (t, -1))) {
            let day = cal.day_number(at);
            d.add(m, day, tier_slot(&l.tier), sign);
            d.add(m, day, snap::VALUE, sign * l.aum);
        }
        d.span(
            cal,
            0,
            snap::PORTFOLIO,
            (m, *from, *to, Some(&l.tier), l.aum),
        );
    }
}

/// Covered: a run of contacts by a manager, while that manager owned the customer.
fn covered<'l>(l: &'l Ledger, cal: &Calendar, d: &mut Deltas<'l>) {
    for (m, first, last) in &l.runs {
        let end = last + COVERAGE_WINDOW_US;
        for (_, from, to) in l.periods.iter().filter(|p| p.0 == *m) {
            if *from < end && to.is_none_or(|t| t > *first) {
                let b = to.map_or(end, |t| t.min(end));
                d.span(
                    cal,
                    1,
                    snap::COVERED,
                    (m, (*first).max(*from), Some(b), None, 0),
                );
            }
        }
    }
}

/// Overdue: owned, and past the follow-up (strictly: from the next microsecond).
fn overdue<'l>(l: &'l Ledger, cal: &Calendar, d: &mut Deltas<'l>) {
    if let Some(f) = l.follow_up {
        for (m, from, to) in &l.periods {
            let a = (*from).max(f + 1);
            if to.is_none_or(|t| a < t) {
                d.span(cal, 2, snap::OVERDUE, (m, a, *to, None, 0));
            }
        }
    }
}

/// Each win with the winner's lead stretches around it.
fn wins<'l>(l: &'l Ledger, stretches: &BTreeMap<&str, Vec<(i64, i64)>>, d: &mut Deltas<'l>) {
    for (m, at) in &l.wins {
        let mine = stretches.get(m.as_str()).map_or(&[][..], Vec::as_slice);
        let until = mine.iter().rev().find(|s| s.0 <= *at).map(|s| s.1 - 1);
        let next = mine.iter().find(|s| s.0 > *at).map(|s| s.0);
        // An open stretch ends at i64::MAX: its last instant is i64::MAX - 1, kept as MAX.
        let until = until.map(|u| if u == i64::MAX - 1 { i64::MAX } else { u });
        d.wins.push((m, *at, until, next));
    }
}

/// Lead stretches: per manager, the union of the spans in which it owned the customer
/// while a lead (`i64::MAX`: open), with their deltas and the gaps between them.
fn lead_stretches<'l>(
    l: &'l Ledger,
    cal: &Calendar,
    d: &mut Deltas<'l>,
) -> BTreeMap<&'l str, Vec<(i64, i64)>> {
    let managers: BTreeSet<&str> = l.periods.iter().map(|p| p.0.as_str()).collect();
    let mut out = BTreeMap::new();
    for m in managers {
        let mut spans: Vec<(i64, i64)> = Vec::new();
        for (sf, st) in &l.leads {
            for (_, pf, pt) in l.periods.iter().filter(|p| p.0 == m) {
                let lo = (*sf).max(*pf);
                let hi = st.unwrap_or(i64::MAX).min(pt.unwrap_or(i64::MAX));
                if lo < hi {
                    spans.push((lo, hi));
                }
            }
        }
        spans.sort_unstable();
        let mut merged: Vec<(i64, i64)> = Vec::with_capacity(spans.len());
        for (lo, hi) in spans {
            match merged.last_mut() {
                Some(last) if lo <= last.1 => last.1 = last.1.max(hi),
                _ => merged.push((lo, hi)),
            }
        }
        for (i, (lo, hi)) in merged.iter().enumerate() {
            d.add(m, cal.day_number(*lo), snap::LEAD_STARTS, 1);
            if *hi != i64::MAX {
                d.add(m, cal.day_number(hi - 1), snap::LEAD_ENDS, 1);
            }
            if let Some((next, _)) = merged.get(i + 1) {
                let gap = (m, cal.day_number(hi - 1), cal.day_number(*next));
                *d.gaps.entry(gap).or_default() += 1;
            }
        }
        out.insert(m, merged);
    }
    out
}

/// Local months since 1970-01 of local day `day` (days since 1970-01-01).
pub fn month_of_day(day: i64) -> i64 {
    let d = NaiveDate::from_num_days_from_ce_opt((719_163 + day) as i32).unwrap_or_default();
    i64::from(d.year() - 1970) * 12 + i64::from(d.month0())
}

/// The first local day of month `m` (months since 1970-01).
pub fn first_day_of_month(m: i64) -> i64 {
    let (y, mo) = (1970 + m.div_euclid(12), m.rem_euclid(12) + 1);
    NaiveDate::from_ymd_opt(y as i32, mo as u32, 1)
        .map(|d| i64::from(d.num_days_from_ce()) - 719_163)
        .unwrap_or_default()
}

/// The changes that take the ledger's rows from `old`'s deltas to `new`'s.
fn difference(id: &str, cal: &Calendar, old: &Deltas, new: &Deltas, out: &mut Vec<Change>) {
    let keys: BTreeSet<&(i64, &str)> = old.days.keys().chain(new.days.keys()).collect();
    // Months net out moves within a month (a covered span's end moving by a few days).
    let mut months: BTreeMap<(&str, i64), [i64; 9]> = BTreeMap::new();
    for key in keys {
        let (o, n) = (old.days.get(key), new.days.get(key));
        let delta: [i64; 9] =
            std::array::from_fn(|i| n.map_or(0, |v| v[i]) - o.map_or(0, |v| v[i]));
        if delta.iter().all(|v| *v == 0) {
            continue;
        }
        let (day, m) = *key;
        let mut add_day = Add::to(&KPI_DAYS, vec![Value::Int(day), Value::from(m)]);
        let month = months.entry((m, month_of_day(day))).or_default();
        for (i, v) in delta.iter().enumerate().filter(|(_, v)| **v != 0) {
            add_day = add_day.add(c::DAY_SNAPSHOT[i], *v);
            month[i] += v;
        }
        out.push(add_day.change());
    }
    for ((m, month), delta) in months {
        if delta.iter().any(|v| *v != 0) {
            let mut add = Add::to(&KPI_MONTHS, vec![Value::from(m), Value::Int(month)]);
            for (i, v) in delta.iter().enumerate().filter(|(_, v)| **v != 0) {
                add = add.add(c::MONTH_SNAPSHOT[i], *v);
            }
            out.push(add.change());
        }
    }
    for (k, kind) in KINDS.iter().enumerate() {
        let (o, n) = (&old.spans[k], &new.spans[k]);
        for i in (0..o.len().max(n.len())).filter(|i| o.get(*i) != n.get(*i)) {
            let Some(&(m, from, to, tier, value)) = n.get(i) else {
                let key = vec![Value::from(id), Value::from(*kind), Value::Int(i as i64)];
                out.push(Delete::from(&KPI_SPANS, key));
                continue;
            };
            out.push(
                Insert::into(&KPI_SPANS)
                    .set(c::SPAN_ID, id)
                    .set(c::SPAN_KIND, *kind)
                    .set(c::SPAN_N, i as i64)
                    .set(c::SPAN_MANAGER, m)
                    .set(c::SPAN_FROM, from)
                    .set(c::SPAN_TO, to)
                    .set(c::SPAN_TIER, tier)
                    .set(c::SPAN_VALUE, value)
                    .upsert(),
            );
        }
    }
    // Wins only ever grow in number; one that changed is rewritten.
    for (i, w) in new.wins.iter().enumerate() {
        if old.wins.get(i) != Some(w) {
            let (day, converts_on) = win_days(cal, w);
            out.push(
                Insert::into(&KPI_WINS)
                    .set(c::WIN_ID, id)
                    .set(c::WIN_N, i as i64)
                    .set(c::WIN_MANAGER, w.0)
                    .set(c::WIN_AT, w.1)
                    .set(c::WIN_UNTIL, w.2)
                    .set(c::WIN_NEXT, w.3)
                    .set(c::WIN_DAY, day)
                    .set(c::WIN_CONVERTS_ON, converts_on)
                    .upsert(),
            );
        }
    }
    let gaps: BTreeSet<&(&str, i64, i64)> = old.gaps.keys().chain(new.gaps.keys()).collect();
    for key in gaps {
        let v = new.gaps.get(key).copied().unwrap_or(0) - old.gaps.get(key).copied().unwrap_or(0);
        if v != 0 {
            let (m, first, last) = *key;
            let k = vec![Value::from(m), Value::Int(first), Value::Int(last)];
            out.push(Add::to(&KPI_GAPS, k).add(c::GAP_N, v).change());
        }
    }
}

/// Flows of one event: (manager, instant, position in [`FLOWS`], amount).
type Flows = Vec<(String, i64, usize, i64)>;

/// Apply `e` to the ledger `l` (at `at`; `owner`: the analytics read model's owner before
/// it), with the flows it credits; which parts of its deltas may have changed.
fn apply(
    l: &mut Ledger,
    e: &CustomerEvent,
    at: i64,
    owner: Option<&str>,
    flows: &mut Flows,
) -> Parts {
    let mut credit = |m: &str, when: i64, f: usize, n: i64| flows.push((m.to_string(), when, f, n));
    if let Some(parts) = ownership(l, e, at, &mut credit) {
        return parts;
    }
    match e {
        CustomerEvent::ContactRecorded(k) => {
            let (when, m) = (micros(k.contacted_at), k.manager_id.to_string());
            credit(&m, when, flow::CONTACTS, 1);
            l.contact(&m, when, k.next_follow_up_at.map(micros));
            Parts {
                covered: true,
                overdue: true,
                ..Parts::default()
            }
        }
        CustomerEvent::LifecycleStageChanged(s) => {
            if let Some(o) = owner {
                let won = s.to.as_str() == "customer";
                credit(o, at, flow::TRANSITIONS, 1);
                credit(o, at, flow::WON, i64::from(won));
                credit(o, at, flow::REACTIVATED, i64::from(s.reactivated));
                if won {
                    l.wins.push((o.to_string(), at));
                }
            }
            l.stage(s.to.as_str(), at);
            Parts {
                leads: true,
                ..Parts::default()
            }
        }
        CustomerEvent::ValueTierChanged(t) => {
            l.tier = t.to.as_str().to_string();
            Parts {
                owned: true,
                ..Parts::default()
            }
        }
        CustomerEvent::ProfileUpdated(p) => match p.aum_minor {
            Some(aum) => {
                l.aum = aum;
                Parts {
                    owned: true,
                    ..Parts::default()
                }
            }
            None => Parts::default(),
        },
        _ => {
            event_flows(l, e, at, owner, &mut credit);
            complaint(l, e);
            Parts::default()
        }
    }
}

/// Registration and the ownership events: every part of the deltas may change.
fn ownership(
    l: &mut Ledger,
    e: &CustomerEvent,
    at: i64,
    credit: &mut dyn FnMut(&str, i64, usize, i64),
) -> Option<Parts> {
    match e {
        CustomerEvent::CustomerRegistered(r) => {
            let from = micros(r.registered_at);
            l.tier = r.value_tier.as_str().to_string();
            l.aum = r.aum_minor.unwrap_or(0);
            l.stage(r.stage.as_str(), from);
        }
        CustomerEvent::OwnerAssigned(a) => {
            l.owner(Some(a.manager_id.to_string()), at);
        }
        CustomerEvent::OwnershipTransferred(t) => {
            l.owner(Some(t.to_manager.to_string()), at);
        }
        CustomerEvent::ClaimedFromPool(cl) => {
            l.owner(Some(cl.manager_id.to_string()), at);
        }
        CustomerEvent::ReleasedToPool(r) => {
            if let Some(m) = l
                .periods
                .iter()
                .rev()
                .find(|p| p.2.is_none())
                .map(|p| p.0.clone())
            {
                credit(&m, at, flow::LOST, 1);
            }
            if r.rule.is_some() {
                credit(&r.previous_owner.to_string(), at, flow::RETURNED, 1);
            }
            l.owner(None, at);
        }
        _ => return None,
    }
    Some(Parts::ALL)
}

/// The flows of events that change no history.
fn event_flows(
    l: &mut Ledger,
    e: &CustomerEvent,
    at: i64,
    owner: Option<&str>,
    credit: &mut dyn FnMut(&str, i64, usize, i64),
) {
    match e {
        CustomerEvent::PoolReturnWarned(w) => {
            credit(&w.owner.to_string(), at, flow::POOL_WARNINGS, 1)
        }
        CustomerEvent::ComplaintSlaWarned(_) => {
            if let Some(o) = owner {
                credit(o, at, flow::SLA_WARNINGS, 1);
            }
        }
        CustomerEvent::ComplaintSlaBreached(b) => {
            let o = b.owner.map(|o| o.to_string()).or(owner.map(str::to_string));
            if let Some(o) = o {
                credit(&o, at, flow::SLA_BREACHES, 1);
            }
        }
        CustomerEvent::ComplaintEscalated(x) => {
            if let Some(o) = owner {
                credit(o, at, flow::ESCALATIONS, 1);
                credit(o, at, flow::AUTOMATIC_ESCALATIONS, i64::from(x.automatic));
            }
        }
        CustomerEvent::ReferralRecorded(r) => {
            credit(&r.referrer, at, flow::REFERRALS_MADE, 1);
            l.referrals
                .push((r.referral_id.to_string(), r.referrer.clone()));
        }
        CustomerEvent::ReferralConverted(r) => {
            let id = r.referral_id.to_string();
            if let Some((_, by)) = l.referrals.iter().find(|(i, _)| *i == id) {
                credit(by, at, flow::REFERRALS_CONVERTED, 1);
            }
        }
        _ => {}
    }
}

/// A complaint event, as `rm_complaints` takes it.
fn complaint(l: &mut Ledger, e: &CustomerEvent) {
    match e {
        CustomerEvent::ComplaintLogged(k) => l.complaints.push(Complaint {
            id: k.complaint_id.to_string(),
            owner: k.owner.map(|o| o.to_string()),
            logged: micros(k.logged_at),
            ..Complaint::default()
        }),
        CustomerEvent::ComplaintAcknowledged(a) => {
            if let Some(k) = l.complaint(&a.complaint_id) {
                k.first_response = Some(a.response_seconds);
                k.first_in_sla = Some(a.within_sla);
            }
        }
        CustomerEvent::ComplaintResolved(r) => {
            if let Some(k) = l.complaint(&r.complaint_id) {
                k.resolution = Some(r.resolution_seconds);
                k.resolutions += 1;
                k.resolution_breaches += i64::from(!r.within_sla);
            }
        }
        CustomerEvent::ComplaintReopened(r) => {
            if let Some(k) = l.complaint(&r.complaint_id) {
                k.reopens += 1;
            }
        }
        CustomerEvent::ComplaintClosed(c) => {
            if let Some(k) = l.complaint(&c.complaint_id) {
                k.satisfaction = c.satisfaction.map(i64::from);
            }
        }
        CustomerEvent::ComplaintSlaBreached(b) => {
            if let Some(k) = l.complaint(&b.complaint_id) {
                k.breach_recorded = true;
            }
        }
        _ => {}
    }
}

/// What a complaint's change (from `old`) adds to its owner's day.
fn complaint_counts(cal: &Calendar, old: Option<&Complaint>, new: &Complaint) -> Option<Change> {
    let owner = new.owner.as_deref()?;
    let old = old.map_or([0; 6], Complaint::counts);
    let new_counts = new.counts();
    let key = vec![Value::Int(cal.day_number(new.logged)), Value::from(owner)];
    let mut add = Add::to(&KPI_DAYS, key);
    for (i, (n, o)) in new_counts.iter().zip(old).enumerate() {
        add = add.add(c::DAY_FLOWS[flow::COMPLAINTS + i], n - o);
    }
    (new_counts != old).then(|| add.change())
}

/// Whether `e` changes what the ledger remembers (the other events are credited from
/// the owner alone, and their customer's memo is not read).
fn remembered(e: &CustomerEvent) -> bool {
    matches!(
        e,
        CustomerEvent::CustomerRegistered(_)
            | CustomerEvent::OwnerAssigned(_)
            | CustomerEvent::OwnershipTransferred(_)
            | CustomerEvent::ClaimedFromPool(_)
            | CustomerEvent::ReleasedToPool(_)
            | CustomerEvent::ContactRecorded(_)
            | CustomerEvent::LifecycleStageChanged(_)
            | CustomerEvent::ValueTierChanged(_)
            | CustomerEvent::ReferralRecorded(_)
            | CustomerEvent::ReferralConverted(_)
            | CustomerEvent::ComplaintLogged(_)
            | CustomerEvent::ComplaintAcknowledged(_)
            | CustomerEvent::ComplaintResolved(_)
            | CustomerEvent::ComplaintReopened(_)
            | CustomerEvent::ComplaintClosed(_)
            | CustomerEvent::ComplaintSlaBreached(_)
    ) || matches!(e, CustomerEvent::ProfileUpdated(p) if p.aum_minor.is_some())
}

/// The ledger's changes for customer event `e` of customer `id` at `at`, with what the
/// memo remembers (the ledger's own memo, the owner, the time zone).
///
/// What follows from a customer's history (snapshot deltas, spans, wins, lead gaps,
/// complaint rows and counts) is added as the difference the event makes to it; unless
/// the memo [settles at the end](Memo::settles_at_end) (a rebuild), which adds it once
/// per customer from its final history ([`settle`]): the differences of all its events
/// sum to just that.
pub fn changes(memo: &dyn Memo, (id, at): (&str, i64), e: &CustomerEvent) -> Vec<Change> {
    let registered = matches!(e, CustomerEvent::CustomerRegistered(_));
    let remembered = remembered(e);
    let recalled = match remembered && !registered {
        true => Ledger::recall(memo, id),
        false => None,
    };
    if recalled.is_none() && remembered && !registered {
        return Vec::new();
    }
    let mut ledger = recalled.unwrap_or_default();
    let owner = crate::kept::owner(memo, id);
    let cal = memo.calendar();
    let before = (!memo.settles_at_end()).then(|| ledger.clone());
    let mut flows = Flows::new();
    let parts = apply(&mut ledger, e, at, owner.as_deref(), &mut flows);
    let mut out = Vec::new();
    for (m, when, f, n) in flows.into_iter().filter(|f| f.3 != 0) {
        let key = vec![Value::Int(cal.day_number(when)), Value::from(m)];
        out.push(Add::to(&KPI_DAYS, key).add(c::DAY_FLOWS[f], n).change());
    }
    if let Some(before) = &before {
        history(id, &cal, parts, before, &ledger, &mut out);
    }
    if remembered && (registered || before.as_ref() != Some(&ledger)) {
        out.push(ledger.into_row(id));
    }
    out
}

/// What one event's change of a customer's history (`before` → `after`) adds.
fn history(
    id: &str,
    cal: &Calendar,
    parts: Parts,
    before: &Ledger,
    after: &Ledger,
    out: &mut Vec<Change>,
) {
    if parts.any() {
        let (old, new) = (deltas(before, cal, parts), deltas(after, cal, parts));
        difference(id, cal, &old, &new, out);
    }
    for k in &after.complaints {
        if !before.complaints.contains(k) {
            out.push(k.row(id, cal));
            let old = before.complaints.iter().find(|o| o.id == k.id);
            out.extend(complaint_counts(cal, old, k));
        }
    }
}

/// What customer `id`'s whole history, as its memo row `row` of the ledger holds it,
/// adds (a rebuild's settlement: [`changes`] left it out).
pub fn settle(id: &str, row: &[Value], cal: &Calendar) -> Vec<Change> {
    let Some(ledger) = row.get(c::LEDGER.index).and_then(Value::document::<Ledger>) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    history(id, cal, Parts::ALL, &Ledger::default(), &ledger, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000_000;

    #[test]
    fn months_and_their_first_days_agree() {
        assert_eq!(month_of_day(0), 0);
        assert_eq!(month_of_day(31), 1);
        assert_eq!(first_day_of_month(1), 31);
        for day in [-400, -1, 0, 58, 59, 365, 20_000, 20_819] {
            let m = month_of_day(day);
            assert!(first_day_of_month(m) <= day && day < first_day_of_month(m + 1));
        }
    }

    #[test]
    fn contacts_merge_into_runs_whatever_their_order() {
        let w = COVERAGE_WINDOW_US;
        let mut l = Ledger::default();
        for at in [0, 3 * w, w, 10 * w, 2 * w, 4 * w + 1] {
            l.contact("m", at, None);
        }
        l.contact("n", 5, None);
        let mine: Vec<_> = l
            .runs
            .iter()
            .filter(|r| r.0 == "m")
            .map(|r| (r.1, r.2))
            .collect();
        // 0, w, 2w, 3w: each within the window of the one before; 4w + 1 just past it.
        let runs = vec![(0, 3 * w), (4 * w + 1, 4 * w + 1), (10 * w, 10 * w)];
        assert_eq!(mine, runs);
    }

    #[test]
    fn a_lead_owned_twice_in_a_day_leaves_a_gap_inside_that_day() {
        let cal = Calendar::UTC;
        let mut l = Ledger::default();
        l.stage("lead", 0);
        l.owner(Some("m".into()), DAY + 1);
        l.owner(None, DAY + 2);
        l.owner(Some("m".into()), DAY + 5);
        let d = deltas(&l, &cal, Parts::ALL);
        assert_eq!(d.gaps.get(&("m", 1, 1)), Some(&1));
        assert_eq!(d.days[&(1, "m")][snap::LEAD_STARTS], 2);
        assert_eq!(d.days[&(1, "m")][snap::LEAD_ENDS], 1);
    }
}

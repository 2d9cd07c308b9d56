//! Manager KPIs per manager, team or region and per day, week or month, with exactly the
//! formulas of DOMAIN.md (each one is written out in docs/read-models.md). Pure functions
//! of [`Facts`].
//!
//! Attribution: a fact counts for the manager it names (the contact's manager, the owner
//! at the instant of a stage move or of logging a complaint, the referrer); teams and
//! regions add up their managers as the manager table assigns them now. Snapshot figures
//! (portfolio, tier mix, value under management, coverage) are taken at the end of the
//! period, or now for the period that has not ended.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::calendar::{Calendar, Granularity};
use crate::facts::{quantile, rate, Facts};

/// Contact coverage looks back this far from the instant it is taken.
pub const COVERAGE_WINDOW_US: i64 = 30 * 24 * 3_600 * 1_000_000;

/// Whose KPIs: each manager's, team's or region's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    Manager,
    Team,
    Region,
}

impl std::str::FromStr for Level {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "manager" => Ok(Self::Manager),
            "team" => Ok(Self::Team),
            "region" => Ok(Self::Region),
            other => Err(format!("level {other:?} is not manager, team or region")),
        }
    }
}

/// The KPIs of one manager, team or region in one local period (day, week or month).
/// Flows count what happened in the period; snapshot figures (portfolio, tier mix, value
/// under management, coverage, overdue follow-ups) are taken at the end of the period, or
/// now for the period that has not ended. A fact counts for the manager it names (the
/// contact's manager, the owner at the instant of a stage move, of logging a complaint
/// or of an SLA event, the referrer); teams and regions add up their managers as the
/// manager table assigns them now.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct KpiRow {
    /// Whose figures these are, as `level` asks: a manager's id (a UUID), a team or a
    /// region (the team or region is `unknown` for a manager missing from the manager
    /// table).
    pub key: String,
    #[serde(skip)]
    pub period_start_us: i64,
    #[serde(skip)]
    pub period_end_us: i64,
    /// The period's first instant (the start of the local day, week from Monday, or
    /// month), an RFC 3339 timestamp with the offset of the calendar's zone (`tz`, or the
    /// service's `CRM_TIME_ZONE`). The period is `[period_start, period_end)`.
    #[schema(format = DateTime)]
    pub period_start: String,
    /// The period's end (excluded: the next period's first instant), an RFC 3339
    /// timestamp with the offset of the calendar's zone.
    #[schema(format = DateTime)]
    pub period_end: String,
    // Snapshot at the end of the period (or now).
    /// Snapshot: number of customers owned at the end of the period (or now, for the
    /// running period).
    pub portfolio: i64,
    /// Snapshot: of `portfolio`, customers whose value tier (as it is now) is `high`.
    pub tier_high: i64,
    /// Snapshot: of `portfolio`, customers whose value tier (as it is now) is `mid`.
    pub tier_mid: i64,
    /// Snapshot: of `portfolio`, customers whose value tier (as it is now) is `low` (or
    /// any other).
    pub tier_low: i64,
    /// Snapshot: sum of the assets under management (`aum_minor`, as they are now) of the
    /// portfolio, in minor units of the currency (fen/cents); a customer whose AUM is not
    /// known counts 0.
    pub value_under_management_minor: i64,
    /// Snapshot: portfolio customers contacted by their owner in the 30 days up to the
    /// snapshot ÷ `portfolio`: a fraction in [0, 1]; null when the portfolio is empty.
    pub contact_coverage: Option<f64>,
    /// Snapshot: number of portfolio customers whose next follow-up is before now;
    /// counted for the running period only, null for a period that has ended.
    pub overdue_follow_ups: Option<i64>,
    // Flows within the period.
    /// Number of contacts recorded by the manager with their instant in the period (on
    /// any customer, owned or not).
    pub contacts: i64,
    /// Number of moves to stage `customer` in the period, credited to the owner at that
    /// instant.
    pub new_customers_won: i64,
    /// Number of customers in stage `lead` while owned by the manager at some instant of
    /// the period (a manager and customer pair counts once).
    pub leads_owned: i64,
    /// Of `leads_owned`, those that moved to `customer` in the period while owned by the
    /// same manager.
    pub leads_converted: i64,
    /// `leads_converted / leads_owned`: a fraction in [0, 1]; null when `leads_owned` is
    /// zero.
    pub lead_conversion_rate: Option<f64>,
    /// Number of complaints logged in the period on customers the manager owned when each
    /// was logged.
    pub complaints: i64,
    /// Median (nearest rank) time from logging to the first response, in seconds, over
    /// those complaints that were answered; null when none was.
    pub first_response_median_s: Option<i64>,
    /// 90th percentile (nearest rank) time from logging to the first response, in
    /// seconds, over those complaints that were answered; null when none was.
    pub first_response_p90_s: Option<i64>,
    /// Median (nearest rank) time to the latest resolution (from logging, or from the
    /// last reopening), in seconds, over those complaints that were resolved; null when
    /// none was.
    pub resolution_median_s: Option<i64>,
    /// 90th percentile (nearest rank) time to the latest resolution (from logging, or
    /// from the last reopening), in seconds, over those complaints that were resolved;
    /// null when none was.
    pub resolution_p90_s: Option<i64>,
    /// Of `complaints`, those answered after the first-response SLA, resolved late at
    /// least once, or with a recorded breach, ÷ `complaints`: a fraction in [0, 1]; null
    /// when `complaints` is zero.
    pub sla_breach_rate: Option<f64>,
    /// Of `complaints`, those reopened at least once ÷ those resolved at least once: a
    /// fraction in [0, 1]; null when none was resolved.
    pub reopen_rate: Option<f64>,
    /// Mean satisfaction score (1 to 5) of `complaints` closed with a score; null when
    /// none has one.
    pub satisfaction_avg: Option<f64>,
    /// Number of referrals recorded in the period whose referrer is the manager.
    pub referrals_made: i64,
    /// Number of referrals by the manager (as referrer) converted in the period.
    pub referrals_converted: i64,
    /// Number of reactivations (dormant or churned → active) in the period, credited to
    /// the owner at that instant.
    pub reactivated: i64,
    /// Number of the manager's ownership periods ended by `ReleasedToPool` in the period
    /// (customers released by a person or returned by a pool rule).
    pub lost_to_pool: i64,
    /// Of `lost_to_pool`, returned by a pool rule (no contact, lead not won).
    pub returned_by_pool_rules: i64,
    /// Number of warnings of a coming automatic return to the pool the manager received
    /// in the period.
    pub pool_warnings: i64,
    /// Number of complaint SLA warnings (a clock nearing its deadline) recorded in the
    /// period, on customers the manager owned at that instant.
    pub sla_warnings: i64,
    /// Number of complaint SLA breaches (a clock past its deadline) recorded in the
    /// period, on customers the manager owned at that instant.
    pub sla_breaches: i64,
    /// Number of escalations raised by a breach (not by a person) in the period, on
    /// customers the manager owned at that instant.
    pub automatic_escalations: i64,
}

impl KpiRow {
    /// The figure named `name` (its JSON field), as a number; `None` when it has none
    /// (a rate of nothing) or no such figure. Without building the row's JSON: a table of
    /// tens of thousands of rows is sorted and charted by one figure.
    pub fn value(&self, name: &str) -> Option<f64> {
        match name {
            "portfolio" => Some(self.portfolio as f64),
            "tier_high" => Some(self.tier_high as f64),
            "tier_mid" => Some(self.tier_mid as f64),
            "tier_low" => Some(self.tier_low as f64),
            "value_under_management_minor" => Some(self.value_under_management_minor as f64),
            "contacts" => Some(self.contacts as f64),
            "new_customers_won" => Some(self.new_customers_won as f64),
            "leads_owned" => Some(self.leads_owned as f64),
            "leads_converted" => Some(self.leads_converted as f64),
            "complaints" => Some(self.complaints as f64),
            "referrals_made" => Some(self.referrals_made as f64),
            "referrals_converted" => Some(self.referrals_converted as f64),
            "reactivated" => Some(self.reactivated as f64),
            "lost_to_pool" => Some(self.lost_to_pool as f64),
            "returned_by_pool_rules" => Some(self.returned_by_pool_rules as f64),
            "pool_warnings" => Some(self.pool_warnings as f64),
            "sla_warnings" => Some(self.sla_warnings as f64),
            "sla_breaches" => Some(self.sla_breaches as f64),
            "automatic_escalations" => Some(self.automatic_escalations as f64),
            "overdue_follow_ups" => self.overdue_follow_ups.map(|v| v as f64),
            "first_response_median_s" => self.first_response_median_s.map(|v| v as f64),
            "first_response_p90_s" => self.first_response_p90_s.map(|v| v as f64),
            "resolution_median_s" => self.resolution_median_s.map(|v| v as f64),
            "resolution_p90_s" => self.resolution_p90_s.map(|v| v as f64),
            "contact_coverage" => self.contact_coverage,
            "lead_conversion_rate" => self.lead_conversion_rate,
            "sla_breach_rate" => self.sla_breach_rate,
            "reopen_rate" => self.reopen_rate,
            "satisfaction_avg" => self.satisfaction_avg,
            _ => None,
        }
    }
}

/// The figures of one key (manager, team or region) in one bucket, counted. [`Tally::row`]
/// derives the rates, quantiles and averages from them: the one place those formulas
/// are written, for this reference and for the database's answers (`crate::aggregate`).
#[derive(Debug, Default)]
pub(crate) struct Tally {
    pub portfolio: i64,
    /// high, mid, low (any other tier) of the portfolio.
    pub tiers: [i64; 3],
    pub value: i64,
    pub covered: i64,
    pub overdue: i64,
    pub contacts: i64,
    pub won: i64,
    pub reactivated: i64,
    pub leads: i64,
    pub converted: i64,
    pub complaints: i64,
    pub first_response: Vec<i64>,
    pub resolution: Vec<i64>,
    pub breached: i64,
    pub resolved: i64,
    pub reopened: i64,
    /// Sum and number of satisfaction scores.
    pub satisfaction: (i64, i64),
    pub referrals_made: i64,
    pub referrals_converted: i64,
    pub lost: i64,
    pub returned: i64,
    pub pool_warnings: i64,
    pub sla_warnings: i64,
    pub sla_breaches: i64,
    pub automatic_escalations: i64,
}

/// A bucket `[start, end)` of a calendar, with its bounds as RFC 3339 text (made once
/// for all its rows).
pub(crate) struct Period {
    pub start: i64,
    pub end: i64,
    start_text: String,
    end_text: String,
    /// It is running now.
    pub current: bool,
}

impl Period {
    pub(crate) fn new(cal: &Calendar, (start, end): (i64, i64), current: bool) -> Self {
        Self {
            start,
            end,
            start_text: cal.rfc3339(start),
            end_text: cal.rfc3339(end),
            current,
        }
    }
}

impl Tally {
    /// The row of `key` for period `p`.
    pub(crate) fn row(mut self, key: String, p: &Period) -> KpiRow {
        let share = |n: i64, of: i64| rate(n as usize, of as usize);
        let current = p.current;
        KpiRow {
            key,
            period_start_us: p.start,
            period_end_us: p.end,
            period_start: p.start_text.clone(),
            period_end: p.end_text.clone(),
            portfolio: self.portfolio,
            tier_high: self.tiers[0],
            tier_mid: self.tiers[1],
            tier_low: self.tiers[2],
            value_under_management_minor: self.value,
            contact_coverage: share(self.covered, self.portfolio),
            overdue_follow_ups: current.then_some(self.overdue),
            contacts: self.contacts,
            new_customers_won: self.won,
            leads_owned: self.leads,
            leads_converted: self.converted,
            lead_conversion_rate: share(self.converted, self.leads),
            complaints: self.complaints,
            first_response_median_s: quantile(&mut self.first_response, 0.5),
            first_response_p90_s: quantile(&mut self.first_response, 0.9),
            resolution_median_s: quantile(&mut self.resolution, 0.5),
            resolution_p90_s: quantile(&mut self.resolution, 0.9),
            sla_breach_rate: share(self.breached, self.complaints),
            reopen_rate: share(self.reopened, self.resolved),
            satisfaction_avg: (self.satisfaction.1 > 0)
                .then(|| self.satisfaction.0 as f64 / self.satisfaction.1 as f64),
            referrals_made: self.referrals_made,
            referrals_converted: self.referrals_converted,
            reactivated: self.reactivated,
            lost_to_pool: self.lost,
            returned_by_pool_rules: self.returned,
            pool_warnings: self.pool_warnings,
            sla_warnings: self.sla_warnings,
            sla_breaches: self.sla_breaches,
            automatic_escalations: self.automatic_escalations,
        }
    }
}

/// The reference's tally: the sets it counts distinct members of, and the counts.
#[derive(Default)]
struct Acc {
    portfolio: HashSet<String>,
    leads: HashSet<String>,
    converted: HashSet<String>,
    t: Tally,
}

impl std::ops::Deref for Acc {
    type Target = Tally;
    fn deref(&self) -> &Tally {
        &self.t
    }
}

impl std::ops::DerefMut for Acc {
    fn deref_mut(&mut self) -> &mut Tally {
        &mut self.t
    }
}

/// KPIs for every manager (team, region) with any activity or portfolio, for each
/// period of `cal` in `[from_us, to_us)`; `now_us` caps snapshots of the running period.
pub fn kpis(
    facts: &Facts,
    level: Level,
    (cal, g): (&Calendar, Granularity),
    from_us: i64,
    to_us: i64,
    now_us: i64,
) -> Vec<KpiRow> {
    let ix = Index::new(facts, level);
    let mut out = Vec::new();
    for (start, end) in cal.buckets(from_us, to_us, g) {
        let mut b = Bucket {
            ix: &ix,
            acc: BTreeMap::new(),
            start,
            end,
        };
        b.snapshot(now_us);
        b.flows();
        b.leads();
        b.complaints();
        let period = Period::new(cal, (start, end), now_us >= start && now_us < end);
        out.extend(b.rows(&period));
    }
    out
}

/// The facts indexed, so each period is linear in them.
struct Index<'f> {
    facts: &'f Facts,
    level: Level,
    /// Manager → (team, region).
    managers: HashMap<&'f str, (&'f str, &'f str)>,
    customers: HashMap<&'f str, &'f crate::queries::CustomerRow>,
    /// (customer, manager) → the instants of its contacts, in order.
    contact_times: HashMap<(&'f str, &'f str), Vec<i64>>,
    ownership_of: HashMap<&'f str, Vec<&'f crate::queries::PeriodRow>>,
    /// Customer → its moves to `customer` (instant, owner).
    won_by: HashMap<&'f str, Vec<(i64, Option<&'f str>)>>,
    /// Complaints with a recorded breach event (a clock that ran out while still open).
    breached_complaints: HashSet<&'f str>,
}

impl<'f> Index<'f> {
    fn new(facts: &'f Facts, level: Level) -> Self {
        let mut contact_times: HashMap<(&str, &str), Vec<i64>> = HashMap::new();
        for c in &facts.contacts {
            contact_times
                .entry((c.customer_id.as_str(), c.manager_id.as_str()))
                .or_default()
                .push(c.at_us);
        }
        for v in contact_times.values_mut() {
            v.sort_unstable();
        }
        let mut ownership_of: HashMap<&str, Vec<&crate::queries::PeriodRow>> = HashMap::new();
        for p in &facts.ownership {
            ownership_of
                .entry(p.customer_id.as_str())
                .or_default()
                .push(p);
        }
        let mut won_by: HashMap<&str, Vec<(i64, Option<&str>)>> = HashMap::new();
        for t in facts
            .transitions
            .iter()
            .filter(|t| t.to_stage == "customer")
        {
            won_by
                .entry(t.customer_id.as_str())
                .or_default()
                .push((t.at_us, t.owner_id.as_deref()));
        }
        Self {
            facts,
            level,
            managers: facts
                .managers
                .iter()
                .map(|m| (m.manager_id.as_str(), (m.team.as_str(), m.region.as_str())))
                .collect(),
            customers: facts
                .customers
                .iter()
                .map(|c| (c.customer_id.as_str(), c))
                .collect(),
            contact_times,
            ownership_of,
            won_by,
            breached_complaints: facts
                .sla_events
                .iter()
                .filter(|e| e.kind == "breach")
                .map(|e| e.complaint_id.as_str())
                .collect(),
        }
    }

    /// The row a manager's figures count in at this level.
    fn key_of(&self, manager: &str) -> String {
        match self.level {
            Level::Manager => manager.to_string(),
            Level::Team => self
                .managers
                .get(manager)
                .map_or("unknown", |m| m.0)
                .to_string(),
            Level::Region => self
                .managers
                .get(manager)
                .map_or("unknown", |m| m.1)
                .to_string(),
        }
    }

    /// Whether `manager` contacted `customer` in `(at - window, at]`.
    fn covered(&self, customer: &str, manager: &str, at: i64) -> bool {
        self.contact_times
            .get(&(customer, manager))
            .is_some_and(|times| {
                let i = times.partition_point(|&t| t <= at - COVERAGE_WINDOW_US);
                times.get(i).is_some_and(|&t| t <= at)
            })
    }
}

/// One period's tallies, by row key.
struct Bucket<'i, 'f> {
    ix: &'i Index<'f>,
    acc: BTreeMap<String, Acc>,
    start: i64,
    end: i64,
}

impl Bucket<'_, '_> {
    /// Whether an instant is in the period (a copy: tallies are borrowed meanwhile).
    fn within(&self) -> impl Fn(i64) -> bool {
        let (start, end) = (self.start, self.end);
        move |t| t >= start && t < end
    }

    fn of(&mut self, manager: &str) -> &mut Acc {
        self.acc.entry(self.ix.key_of(manager)).or_default()
    }

    /// Portfolio and coverage at the snapshot (the period's end, or now in the running
    /// one, where overdue follow-ups count too), and customers lost to the pool.
    fn snapshot(&mut self, now_us: i64) {
        let snapshot = self.end.min(now_us + 1) - 1;
        let current = now_us >= self.start && now_us < self.end;
        let ix = self.ix;
        for p in &ix.facts.ownership {
            if p.from_us <= snapshot && p.to_us.is_none_or(|t| t > snapshot) {
                let covered = ix.covered(&p.customer_id, &p.manager_id, snapshot);
                let due = current
                    && ix
                        .customers
                        .get(p.customer_id.as_str())
                        .and_then(|c| c.next_follow_up_us)
                        .is_some_and(|d| d < now_us);
                let a = self.of(&p.manager_id);
                a.portfolio.insert(p.customer_id.clone());
                a.covered += i64::from(covered);
                a.overdue += i64::from(due);
            }
            if p.end_event.as_deref() == Some("ReleasedToPool")
                && p.to_us.is_some_and(self.within())
            {
                self.of(&p.manager_id).lost += 1;
            }
        }
    }

    /// Contacts, wins, reactivations, pool and SLA events, referrals.
    fn flows(&mut self) {
        let (facts, within) = (self.ix.facts, self.within());
        for c in facts.contacts.iter().filter(|c| within(c.at_us)) {
            self.of(&c.manager_id).contacts += 1;
        }
        for t in facts.transitions.iter().filter(|t| within(t.at_us)) {
            let Some(owner) = &t.owner_id else { continue };
            let a = self.of(owner);
            a.won += i64::from(t.to_stage == "customer");
            a.reactivated += i64::from(t.reactivated);
        }
        for e in facts.pool_events.iter().filter(|e| within(e.at_us)) {
            let a = self.of(&e.manager_id);
            match e.kind.as_str() {
                "warning" => a.pool_warnings += 1,
                _ => a.returned += 1,
            }
        }
        for e in facts.sla_events.iter().filter(|e| within(e.at_us)) {
            let Some(owner) = &e.owner_id else { continue };
            let a = self.of(owner);
            match e.kind.as_str() {
                "warning" => a.sla_warnings += 1,
                "breach" => a.sla_breaches += 1,
                _ => a.automatic_escalations += i64::from(e.automatic),
            }
        }
        for r in &facts.referrals {
            if within(r.recorded_at_us) {
                self.of(&r.referrer).referrals_made += 1;
            }
            if r.converted_at_us.is_some_and(&within) {
                self.of(&r.referrer).referrals_converted += 1;
            }
        }
    }

    /// Leads owned in the period: a `lead` stay overlapping the period while owned by
    /// the manager. Converted: of those, reached `customer` within the period while
    /// owned by the same manager.
    fn leads(&mut self) {
        let (ix, within) = (self.ix, self.within());
        for s in ix.facts.stages.iter().filter(|s| s.stage == "lead") {
            let s_end = s.to_us.unwrap_or(i64::MAX);
            for p in ix
                .ownership_of
                .get(s.customer_id.as_str())
                .into_iter()
                .flatten()
            {
                let p_end = p.to_us.unwrap_or(i64::MAX);
                let lo = s.from_us.max(p.from_us).max(self.start);
                let hi = s_end.min(p_end).min(self.end);
                if lo >= hi {
                    continue;
                }
                let converted = ix
                    .won_by
                    .get(s.customer_id.as_str())
                    .into_iter()
                    .flatten()
                    .any(|&(at, owner)| within(at) && owner == Some(p.manager_id.as_str()));
                let pair = format!("{}|{}", p.manager_id, s.customer_id);
                let a = self.of(&p.manager_id);
                if converted {
                    a.converted.insert(pair.clone());
                }
                a.leads.insert(pair);
            }
        }
    }

    /// Complaints logged in the period, credited to the owner when logged.
    fn complaints(&mut self) {
        let (ix, within) = (self.ix, self.within());
        for c in ix
            .facts
            .complaints
            .iter()
            .filter(|c| within(c.logged_at_us))
        {
            let Some(owner) = &c.owner_id else { continue };
            let breached = c.first_response_in_sla == Some(false)
                || c.resolution_breaches > 0
                || ix.breached_complaints.contains(c.complaint_id.as_str());
            let a = self.of(owner);
            a.complaints += 1;
            a.first_response.extend(c.first_response_s);
            a.resolution.extend(c.resolution_s);
            a.breached += i64::from(breached);
            if c.resolutions > 0 {
                a.resolved += 1;
                a.reopened += i64::from(c.reopens > 0);
            }
            if let Some(s) = c.satisfaction {
                a.satisfaction.0 += s;
                a.satisfaction.1 += 1;
            }
        }
    }

    /// The period's rows: distinct members counted, tiers and value of the portfolio.
    fn rows(self, period: &Period) -> Vec<KpiRow> {
        let customers = &self.ix.customers;
        self.acc
            .into_iter()
            .map(|(key, mut a)| {
                a.t.portfolio = a.portfolio.len() as i64;
                a.t.leads = a.leads.len() as i64;
                a.t.converted = a.converted.len() as i64;
                for c in a.portfolio.iter().filter_map(|c| customers.get(c.as_str())) {
                    let tier = match c.value_tier.as_str() {
                        "high" => 0,
                        "mid" => 1,
                        _ => 2,
                    };
                    a.t.tiers[tier] += 1;
                    a.t.value += c.aum_minor.unwrap_or(0);
                }
                a.t.row(key, period)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_figure_by_name_is_the_one_its_json_has() {
        let mut r = KpiRow {
            key: "m".into(),
            ..KpiRow::default()
        };
        // Every figure different, some of those that may be missing missing.
        let mut json = serde_json::to_value(&r).unwrap();
        let names: Vec<String> = json
            .as_object()
            .unwrap()
            .keys()
            .filter(|k| !["key", "period_start", "period_end"].contains(&k.as_str()))
            .cloned()
            .collect();
        for (i, name) in names.iter().enumerate() {
            let v = &mut json[name.as_str()];
            let optional = v.is_null();
            *v = if optional && i % 2 == 0 {
                serde_json::Value::Null
            } else if optional && name.contains("rate") {
                serde_json::json!(i as f64 + 0.25)
            } else {
                serde_json::json!(i as i64 + 1)
            };
        }
        r = serde_json::from_value(json.clone()).unwrap();
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(names.len(), 29);
        for name in &names {
            assert_eq!(r.value(name), json[name.as_str()].as_f64(), "{name}");
        }
        assert_eq!(r.value("key"), None);
    }

    use super::*;
    use crate::facts::{Complaint, Contact, Referral, StagePeriod, Transition};
    use crate::queries::{CustomerRow, ManagerRow, PeriodRow};

    const H: i64 = 3_600_000_000;
    const DAY: i64 = 24 * H;

    fn customer(id: &str, tier: &str, aum: i64, follow_up: Option<i64>) -> CustomerRow {
        CustomerRow {
            customer_id: id.into(),
            customer_type: "individual".into(),
            display_name: id.into(),
            region: "east".into(),
            branch: None,
            first_touch_channel: "web".into(),
            stage: "lead".into(),
            value_tier: tier.into(),
            aum_minor: Some(aum),
            owner_id: None,
            owner_team: None,
            owner_region: None,
            owned_since_us: None,
            registered_at_us: 0,
            last_contact_at_us: None,
            next_follow_up_us: follow_up,
        }
    }

    fn manager(id: &str, team: &str) -> ManagerRow {
        ManagerRow {
            manager_id: id.into(),
            name: id.into(),
            role: "manager".into(),
            team: team.into(),
            region: "east".into(),
            branch: "b".into(),
            holding_limit: 100,
            active: true,
        }
    }

    fn owned(c: &str, m: &str, from: i64, to: Option<i64>, end: Option<&str>) -> PeriodRow {
        PeriodRow {
            customer_id: c.into(),
            start_version: from,
            manager_id: m.into(),
            team: "t1".into(),
            region: "east".into(),
            from_us: from,
            to_us: to,
            start_event: "OwnerAssigned".into(),
            start_reason: None,
            started_by: "person:x".into(),
            start_event_id: "e".into(),
            end_event: end.map(str::to_string),
            ended_by: None,
        }
    }

    fn complaint(id: &str, owner: &str, at: i64) -> Complaint {
        Complaint {
            complaint_id: id.into(),
            customer_id: "c1".into(),
            owner_id: Some(owner.into()),
            severity: "normal".into(),
            logged_at_us: at,
            first_response_s: None,
            first_response_in_sla: None,
            resolution_s: None,
            resolutions: 0,
            resolution_breaches: 0,
            reopens: 0,
            satisfaction: None,
        }
    }

    /// Day 0..2. m1 (team t1) owns c1 (high, 100) all along and c2 (low, 50) until it
    /// releases it at day 1 + 1h; m2 (team t1) owns c3 from day 1.
    fn facts() -> Facts {
        let mut f = Facts {
            customers: vec![
                customer("c1", "high", 100, Some(DAY / 2)),
                customer("c2", "low", 50, None),
                customer("c3", "mid", 7, None),
            ],
            managers: vec![manager("m1", "t1"), manager("m2", "t1")],
            ownership: vec![
                owned("c1", "m1", 0, None, None),
                owned("c2", "m1", 0, Some(DAY + H), Some("ReleasedToPool")),
                owned("c3", "m2", DAY, None, None),
            ],
            ..Facts::default()
        };
        f.contacts = vec![
            Contact {
                customer_id: "c1".into(),
                manager_id: "m1".into(),
                by_owner: true,
                at_us: H,
            },
            Contact {
                customer_id: "c2".into(),
                manager_id: "m1".into(),
                by_owner: true,
                at_us: 2 * H,
            },
            Contact {
                customer_id: "c3".into(),
                manager_id: "m1".into(),
                by_owner: false,
                at_us: DAY + 2 * H,
            },
        ];
        // c1: lead from 0, customer at 5h (owned by m1): won and converted on day 0.
        f.stages = vec![
            StagePeriod {
                customer_id: "c1".into(),
                stage: "lead".into(),
                from_us: 0,
                to_us: Some(5 * H),
            },
            StagePeriod {
                customer_id: "c1".into(),
                stage: "customer".into(),
                from_us: 5 * H,
                to_us: None,
            },
            StagePeriod {
                customer_id: "c2".into(),
                stage: "lead".into(),
                from_us: 0,
                to_us: None,
            },
        ];
        f.transitions = vec![Transition {
            customer_id: "c1".into(),
            from_stage: Some("lead".into()),
            to_stage: "customer".into(),
            at_us: 5 * H,
            reactivated: false,
            owner_id: Some("m1".into()),
        }];
        let mut k1 = complaint("k1", "m1", 3 * H);
        k1.first_response_s = Some(300);
        k1.first_response_in_sla = Some(true);
        k1.resolution_s = Some(3600);
        k1.resolutions = 2;
        k1.reopens = 1;
        k1.satisfaction = Some(4);
        let mut k2 = complaint("k2", "m1", 4 * H);
        k2.first_response_s = Some(900);
        k2.first_response_in_sla = Some(false);
        k2.resolution_s = Some(7200);
        k2.resolutions = 1;
        k2.satisfaction = Some(2);
        f.complaints = vec![k1, k2, complaint("k3", "m2", DAY + 3 * H)];
        f.referrals = vec![Referral {
            referral_id: "r1".into(),
            referrer: "m2".into(),
            referred_to: "m1".into(),
            recorded_at_us: H,
            converted_at_us: Some(DAY + H),
        }];
        f
    }

    fn row<'a>(rows: &'a [KpiRow], key: &str, start: i64) -> &'a KpiRow {
        rows.iter()
            .find(|r| r.key == key && r.period_start_us == start)
            .unwrap_or_else(|| panic!("no row {key} at {start}"))
    }

    #[test]
    fn manager_kpis_per_day_follow_the_formulas() {
        // "Now" is day 1, 12h: day 0 has ended, day 1 is running.
        let rows = kpis(
            &facts(),
            Level::Manager,
            (&Calendar::UTC, Granularity::Day),
            0,
            2 * DAY,
            DAY + 12 * H,
        );
        let d0 = row(&rows, "m1", 0);
        assert_eq!(d0.portfolio, 2, "c1 and c2 at the end of day 0");
        assert_eq!((d0.tier_high, d0.tier_mid, d0.tier_low), (1, 0, 1));
        assert_eq!(d0.value_under_management_minor, 150);
        assert_eq!(
            d0.contact_coverage,
            Some(1.0),
            "both contacted by their owner"
        );
        assert_eq!(d0.overdue_follow_ups, None, "only for the running period");
        assert_eq!(d0.contacts, 2);
        assert_eq!(d0.new_customers_won, 1);
        assert_eq!((d0.leads_owned, d0.leads_converted), (2, 1));
        assert_eq!(d0.lead_conversion_rate, Some(0.5));
        assert_eq!(d0.complaints, 2);
        assert_eq!(d0.first_response_median_s, Some(300));
        assert_eq!(d0.first_response_p90_s, Some(900));
        assert_eq!(d0.resolution_median_s, Some(3600));
        assert_eq!(d0.sla_breach_rate, Some(0.5), "k2 answered late");
        assert_eq!(
            d0.reopen_rate,
            Some(0.5),
            "k1 of the 2 resolved was reopened"
        );
        assert_eq!(d0.satisfaction_avg, Some(3.0));
        assert_eq!(d0.lost_to_pool, 0);

        let d1 = row(&rows, "m1", DAY);
        assert_eq!(d1.portfolio, 1, "c2 went back to the pool");
        assert_eq!(d1.lost_to_pool, 1);
        assert_eq!(d1.contacts, 1, "m1 contacted c3, which m2 owns");
        assert_eq!(d1.overdue_follow_ups, Some(1), "c1 was due at 12h on day 0");
        assert_eq!(
            d1.leads_owned, 1,
            "c2 was a lead while m1 owned it on day 1"
        );

        let m2 = row(&rows, "m2", DAY);
        assert_eq!(m2.portfolio, 1);
        assert_eq!(
            m2.contact_coverage,
            Some(0.0),
            "c3 was contacted, not by its owner"
        );
        assert_eq!(m2.referrals_converted, 1);
        assert_eq!(m2.complaints, 1);
        assert_eq!(m2.sla_breach_rate, Some(0.0));
        assert_eq!(row(&rows, "m2", 0).referrals_made, 1);
    }

    #[test]
    fn teams_add_up_their_managers() {
        let rows = kpis(
            &facts(),
            Level::Team,
            (&Calendar::UTC, Granularity::Month),
            0,
            2 * DAY,
            DAY + 12 * H,
        );
        assert_eq!(rows.len(), 1);
        let t = &rows[0];
        assert_eq!(t.key, "t1");
        assert_eq!(t.portfolio, 2, "c1 (m1) and c3 (m2) now");
        assert_eq!(t.contacts, 3);
        assert_eq!(t.complaints, 3);
        assert_eq!(t.lost_to_pool, 1);
    }

    #[test]
    fn pool_rules_and_complaint_clocks_are_counted_for_the_owner() {
        use crate::facts::{PoolEvent, SlaEvent};
        let mut f = facts();
        // m1 is warned about c2 on day 0 and loses it to a pool rule at day 1 + 1h.
        f.pool_events = vec![
            PoolEvent {
                customer_id: "c2".into(),
                kind: "warning".into(),
                manager_id: "m1".into(),
                at_us: 20 * H,
            },
            PoolEvent {
                customer_id: "c2".into(),
                kind: "return".into(),
                manager_id: "m1".into(),
                at_us: DAY + H,
            },
        ];
        // m2's complaint k3 (logged day 1) is warned, breached and escalated on day 1;
        // a person's escalation is not counted as automatic.
        let ev = |kind: &str, automatic: bool, at: i64| SlaEvent {
            complaint_id: "k3".into(),
            kind: kind.into(),
            automatic,
            owner_id: Some("m2".into()),
            at_us: at,
        };
        f.sla_events = vec![
            ev("warning", true, DAY + 3 * H),
            ev("breach", true, DAY + 4 * H),
            ev("escalation", true, DAY + 4 * H),
            ev("escalation", false, DAY + 5 * H),
        ];
        let rows = kpis(
            &f,
            Level::Manager,
            (&Calendar::UTC, Granularity::Day),
            0,
            2 * DAY,
            2 * DAY,
        );
        let m1d0 = row(&rows, "m1", 0);
        assert_eq!((m1d0.pool_warnings, m1d0.returned_by_pool_rules), (1, 0));
        let m1d1 = row(&rows, "m1", DAY);
        assert_eq!((m1d1.returned_by_pool_rules, m1d1.lost_to_pool), (1, 1));
        let m2 = row(&rows, "m2", DAY);
        assert_eq!(
            (m2.sla_warnings, m2.sla_breaches, m2.automatic_escalations),
            (1, 1, 1)
        );
        assert_eq!(
            m2.sla_breach_rate,
            Some(1.0),
            "a complaint breached while still open counts, though no answer was late yet"
        );
    }
}

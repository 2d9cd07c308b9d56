//! The lifecycle funnel (docs/read-models.md has every definition): customers per stage
//! now or as of an instant, transitions per period, next-step and cumulative conversion,
//! median time in stage, reactivations; each sliceable. Pure functions of [`Facts`].

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::calendar::{Calendar, Granularity};
use crate::facts::{quantile, rate, Facts, PIPELINE};
use crate::queries::CustomerRow;

/// What to slice by. Customer attributes are as they are now; the team is the owner's
/// team at the instant considered (`pool` when unowned).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Slice {
    All,
    Region,
    FirstTouchChannel,
    Team,
    CustomerType,
    ValueTier,
}

impl std::str::FromStr for Slice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "all" => Self::All,
            "region" => Self::Region,
            "first_touch_channel" | "channel" => Self::FirstTouchChannel,
            "team" => Self::Team,
            "customer_type" => Self::CustomerType,
            "value_tier" => Self::ValueTier,
            other => {
                return Err(format!(
                    "slice {other:?} is not one of all, region, first_touch_channel, team, customer_type, value_tier"
                ))
            }
        })
    }
}

struct Slicer<'a> {
    ownership: HashMap<&'a str, Vec<&'a crate::queries::PeriodRow>>,
    slice: Slice,
    customers: HashMap<&'a str, &'a CustomerRow>,
}

impl<'a> Slicer<'a> {
    fn new(facts: &'a Facts, slice: Slice) -> Self {
        Self {
            ownership: facts.ownership_index(),
            slice,
            customers: facts
                .customers
                .iter()
                .map(|c| (c.customer_id.as_str(), c))
                .collect(),
        }
    }

    fn value(&self, customer: &str, at_us: i64) -> String {
        let c = self.customers.get(customer);
        let attr = |f: fn(&CustomerRow) -> &str| c.map_or("unknown", |c| f(c)).to_string();
        match self.slice {
            Slice::All => "all".into(),
            Slice::Region => attr(|c| &c.region),
            Slice::FirstTouchChannel => attr(|c| &c.first_touch_channel),
            Slice::CustomerType => attr(|c| &c.customer_type),
            Slice::ValueTier => attr(|c| &c.value_tier),
            Slice::Team => crate::facts::owner_at(&self.ownership, customer, at_us)
                .map_or_else(|| "pool".into(), |p| p.team.clone()),
        }
    }
}

/// Customers in one lifecycle stage, in one slice, now or as of an instant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct StageCount {
    /// The value of the slice dimension asked for (`slice`): `all` when not sliced; the
    /// customer's region, first-touch channel, customer type or value tier as it is now
    /// (`unknown` for a customer not in the customer table); or, by team, the owner's team
    /// at the instant considered (`pool` when unowned).
    /// The team is the owner's at the instant asked (now, or `as_of`).
    pub slice: String,
    /// The lifecycle stage: `lead`, `contacted`, `qualified`, `customer`, `active`,
    /// `dormant` or `churned`.
    pub stage: String,
    /// Number of customers whose stay in this stage is open now, or held the instant
    /// asked (`as_of`).
    pub customers: i64,
}

/// Customers per stage at `at_us` (None: now, i.e. the open stage of each customer).
pub fn stage_counts(facts: &Facts, at_us: Option<i64>, slice: Slice) -> Vec<StageCount> {
    let slicer = Slicer::new(facts, slice);
    let mut counts: BTreeMap<(String, String), i64> = BTreeMap::new();
    for p in &facts.stages {
        let (current, instant) = match at_us {
            None => (p.to_us.is_none(), i64::MAX),
            Some(t) => (p.from_us <= t && p.to_us.is_none_or(|to| to > t), t),
        };
        if current {
            *counts
                .entry((slicer.value(&p.customer_id, instant), p.stage.clone()))
                .or_default() += 1;
        }
    }
    counts
        .into_iter()
        .map(|((slice, stage), customers)| StageCount {
            slice,
            stage,
            customers,
        })
        .collect()
}

/// Moves between two lifecycle stages in one local period (day, week or month), in one
/// slice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct TransitionCount {
    #[serde(skip)]
    pub period_start_us: i64,
    /// The period's first instant (the start of the local day, week from Monday, or
    /// month), an RFC 3339 timestamp with the offset of the calendar's zone (`tz`, or the
    /// service's `CRM_TIME_ZONE`).
    #[schema(format = DateTime)]
    pub period_start: String,
    /// The value of the slice dimension asked for (`slice`): `all` when not sliced; the
    /// customer's region, first-touch channel, customer type or value tier as it is now
    /// (`unknown` for a customer not in the customer table); or, by team, the owner's team
    /// at the instant considered (`pool` when unowned).
    /// The team is the owner's at the instant of the move.
    pub slice: String,
    /// The stage moved from (`lead`, `contacted`, `qualified`, `customer`, `active`,
    /// `dormant` or `churned`); null for the stage a customer was registered in (a
    /// registration).
    pub from_stage: Option<String>,
    /// The stage moved to (one of the same stages).
    pub to_stage: String,
    /// Number of moves from `from_stage` to `to_stage` in the period (a customer moving
    /// twice counts twice).
    pub transitions: i64,
    /// Of `transitions`, the reactivations (dormant or churned → active).
    pub reactivations: i64,
}

/// Moves between stages in `[from_us, to_us)`, per period of `cal`.
pub fn transitions(
    facts: &Facts,
    from_us: i64,
    to_us: i64,
    (cal, g): (&Calendar, Granularity),
    slice: Slice,
) -> Vec<TransitionCount> {
    let slicer = Slicer::new(facts, slice);
    // (period, slice, from, to) → (transitions, reactivations)
    type Key = (i64, String, Option<String>, String);
    let mut counts: BTreeMap<Key, (i64, i64)> = BTreeMap::new();
    for t in facts
        .transitions
        .iter()
        .filter(|t| t.at_us >= from_us && t.at_us < to_us)
    {
        let key = (
            cal.bucket_start(t.at_us, g),
            slicer.value(&t.customer_id, t.at_us),
            t.from_stage.clone(),
            t.to_stage.clone(),
        );
        let e = counts.entry(key).or_default();
        e.0 += 1;
        e.1 += i64::from(t.reactivated);
    }
    counts
        .into_iter()
        .map(
            |((period_start_us, slice, from_stage, to_stage), (n, r))| TransitionCount {
                period_start_us,
                period_start: cal.rfc3339(period_start_us),
                slice,
                from_stage,
                to_stage,
                transitions: n,
                reactivations: r,
            },
        )
        .collect()
}

/// Next-step and cumulative conversion of one pipeline stage, in one slice.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Conversion {
    /// The value of the slice dimension asked for (`slice`): `all` when not sliced; the
    /// customer's region, first-touch channel, customer type or value tier as it is now
    /// (`unknown` for a customer not in the customer table); or, by team, the owner's team
    /// at the instant considered (`pool` when unowned).
    /// A customer's slice is taken at the instant it first entered the stage.
    pub slice: String,
    /// The pipeline stage, in pipeline order: `lead`, `contacted`, `qualified`,
    /// `customer`, `active` (`dormant` and `churned` are not in the pipeline).
    pub stage: String,
    /// Number of customers who ever entered this stage.
    pub entered: i64,
    /// Of those, how many later entered a further pipeline stage (the next one, or one
    /// beyond it when a stage is skipped).
    pub reached_next: i64,
    /// `reached_next / entered`: a fraction in [0, 1]; null when `entered` is zero, and
    /// always null for `active`, the last pipeline stage.
    pub next_step_rate: Option<f64>,
    /// Of the customers who entered `lead`, the share that later reached this stage (the
    /// cohort is sliced at the instant it entered `lead`): a fraction in [0, 1]; null
    /// when the slice's `lead` cohort is empty.
    pub cumulative_rate: Option<f64>,
}

/// Next-step and cumulative conversion along [`PIPELINE`]; a customer's slice is taken
/// at the instant it entered the stage.
pub fn conversion(facts: &Facts, slice: Slice) -> Vec<Conversion> {
    let slicer = Slicer::new(facts, slice);
    // First entry of each (customer, stage).
    let mut first: HashMap<(&str, &str), i64> = HashMap::new();
    for t in &facts.transitions {
        let e = first
            .entry((t.customer_id.as_str(), t.to_stage.as_str()))
            .or_insert(t.at_us);
        *e = (*e).min(t.at_us);
    }
    let mut entered: BTreeMap<(String, &str), HashSet<&str>> = BTreeMap::new();
    let mut reached_next: BTreeMap<(String, &str), usize> = BTreeMap::new();
    for (&(customer, stage), &at) in &first {
        let Some(i) = PIPELINE.iter().position(|s| *s == stage) else {
            continue;
        };
        let key = (slicer.value(customer, at), PIPELINE[i]);
        entered.entry(key.clone()).or_default().insert(customer);
        let moved_on = PIPELINE[i + 1..]
            .iter()
            .any(|later| first.get(&(customer, *later)).is_some_and(|&n| n >= at));
        if moved_on {
            *reached_next.entry(key).or_default() += 1;
        }
    }
    // The lead cohort, and how far each of its customers got.
    let mut cohort: BTreeMap<String, usize> = BTreeMap::new();
    let mut cum_reached: BTreeMap<(String, &str), usize> = BTreeMap::new();
    for (&(customer, stage), &lead_at) in &first {
        if stage != PIPELINE[0] {
            continue;
        }
        let s = slicer.value(customer, lead_at);
        *cohort.entry(s.clone()).or_default() += 1;
        for later in PIPELINE {
            if first
                .get(&(customer, later))
                .is_some_and(|&at| at >= lead_at)
            {
                *cum_reached.entry((s.clone(), later)).or_default() += 1;
            }
        }
    }
    let slices: Vec<String> = entered
        .keys()
        .map(|(s, _)| s.clone())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut out = Vec::new();
    for s in slices {
        let leads = cohort.get(&s).copied().unwrap_or(0);
        for stage in PIPELINE {
            let key = (s.clone(), stage);
            let n = entered.get(&key).map_or(0, HashSet::len);
            let next = reached_next.get(&key).copied().unwrap_or(0);
            out.push(Conversion {
                slice: s.clone(),
                stage: stage.to_string(),
                entered: n as i64,
                reached_next: next as i64,
                next_step_rate: if stage == PIPELINE[PIPELINE.len() - 1] {
                    None
                } else {
                    rate(next, n)
                },
                cumulative_rate: rate(
                    cum_reached.get(&(s.clone(), stage)).copied().unwrap_or(0),
                    leads,
                ),
            });
        }
    }
    out
}

/// Median time customers spent in one lifecycle stage, over the stays that have ended,
/// in one slice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct TimeInStage {
    /// The value of the slice dimension asked for (`slice`): `all` when not sliced; the
    /// customer's region, first-touch channel, customer type or value tier as it is now
    /// (`unknown` for a customer not in the customer table); or, by team, the owner's team
    /// at the instant considered (`pool` when unowned).
    /// A stay's slice is taken at the instant it ended.
    pub slice: String,
    /// The lifecycle stage: `lead`, `contacted`, `qualified`, `customer`, `active`,
    /// `dormant` or `churned`.
    pub stage: String,
    /// Number of stays in the stage that have ended (a stay still open is not counted).
    pub completed_stays: i64,
    /// Median (nearest rank) length of those stays, in seconds (whole seconds, rounded
    /// down); null when there is none.
    pub median_seconds: Option<i64>,
}

/// Median time in each stage over completed stays (a stay still open is not counted);
/// the slice is taken when the stay ended.
pub fn time_in_stage(facts: &Facts, slice: Slice) -> Vec<TimeInStage> {
    let slicer = Slicer::new(facts, slice);
    let mut stays: BTreeMap<(String, String), Vec<i64>> = BTreeMap::new();
    for p in &facts.stages {
        if let Some(to) = p.to_us {
            stays
                .entry((slicer.value(&p.customer_id, to), p.stage.clone()))
                .or_default()
                .push((to - p.from_us) / 1_000_000);
        }
    }
    stays
        .into_iter()
        .map(|((slice, stage), mut v)| TimeInStage {
            slice,
            stage,
            completed_stays: v.len() as i64,
            median_seconds: quantile(&mut v, 0.5),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facts::{StagePeriod, Transition};
    use crate::queries::PeriodRow;

    const H: i64 = 3_600_000_000;

    fn customer(id: &str, region: &str) -> CustomerRow {
        CustomerRow {
            customer_id: id.into(),
            customer_type: "individual".into(),
            display_name: id.into(),
            region: region.into(),
            branch: None,
            first_touch_channel: "web".into(),
            stage: "lead".into(),
            value_tier: "mid".into(),
            aum_minor: None,
            owner_id: None,
            owner_team: None,
            owner_region: None,
            owned_since_us: None,
            registered_at_us: 0,
            last_contact_at_us: None,
            next_follow_up_us: None,
        }
    }

    /// c1: lead(0) → contacted(2h) → qualified(5h) → customer(9h)
    /// c2: lead(0) → contacted(4h)
    /// c3: lead(0)
    /// c4: registered as customer(1h) → active(3h) → dormant(5h) → active(6h, reactivated)
    fn facts() -> Facts {
        let mut f = Facts {
            customers: vec![
                customer("c1", "east"),
                customer("c2", "east"),
                customer("c3", "west"),
                customer("c4", "west"),
            ],
            ..Facts::default()
        };
        let mut moves = |c: &str, steps: &[(&str, i64, bool)]| {
            let mut prev: Option<&str> = None;
            for (i, (stage, h, re)) in steps.iter().enumerate() {
                f.transitions.push(Transition {
                    customer_id: c.into(),
                    from_stage: prev.map(str::to_string),
                    to_stage: (*stage).into(),
                    at_us: h * H,
                    reactivated: *re,
                    owner_id: None,
                });
                f.stages.push(StagePeriod {
                    customer_id: c.into(),
                    stage: (*stage).into(),
                    from_us: h * H,
                    to_us: steps.get(i + 1).map(|s| s.1 * H),
                });
                prev = Some(stage);
            }
        };
        moves(
            "c1",
            &[
                ("lead", 0, false),
                ("contacted", 2, false),
                ("qualified", 5, false),
                ("customer", 9, false),
            ],
        );
        moves("c2", &[("lead", 0, false), ("contacted", 4, false)]);
        moves("c3", &[("lead", 0, false)]);
        moves(
            "c4",
            &[
                ("customer", 1, false),
                ("active", 3, false),
                ("dormant", 5, false),
                ("active", 6, true),
            ],
        );
        f.ownership.push(PeriodRow {
            customer_id: "c1".into(),
            start_version: 2,
            manager_id: "m1".into(),
            team: "east-1".into(),
            region: "east".into(),
            from_us: H,
            to_us: None,
            start_event: "OwnerAssigned".into(),
            start_reason: None,
            started_by: "person:x".into(),
            start_event_id: "e".into(),
            end_event: None,
            ended_by: None,
        });
        f
    }

    fn counts(v: &[StageCount]) -> Vec<(&str, &str, i64)> {
        v.iter()
            .map(|c| (c.slice.as_str(), c.stage.as_str(), c.customers))
            .collect()
    }

    #[test]
    fn stage_counts_now_and_as_of() {
        let f = facts();
        assert_eq!(
            counts(&stage_counts(&f, None, Slice::All)),
            vec![
                ("all", "active", 1),
                ("all", "contacted", 1),
                ("all", "customer", 1),
                ("all", "lead", 1)
            ]
        );
        assert_eq!(
            counts(&stage_counts(&f, Some(2 * H), Slice::Region)),
            vec![
                ("east", "contacted", 1),
                ("east", "lead", 1),
                ("west", "customer", 1),
                ("west", "lead", 1)
            ]
        );
        // Team: the owner's team at the instant; c1 is owned from 1h.
        assert_eq!(
            counts(&stage_counts(&f, Some(H / 2), Slice::Team)),
            vec![("pool", "lead", 3)]
        );
        assert_eq!(
            counts(&stage_counts(&f, Some(2 * H), Slice::Team)),
            vec![
                ("east-1", "contacted", 1),
                ("pool", "customer", 1),
                ("pool", "lead", 2)
            ]
        );
    }

    #[test]
    fn conversion_next_step_and_cumulative() {
        let c = conversion(&facts(), Slice::All);
        let row = |s: &str| c.iter().find(|r| r.stage == s).unwrap().clone();
        assert_eq!((row("lead").entered, row("lead").reached_next), (3, 2));
        assert_eq!(row("lead").next_step_rate, Some(2.0 / 3.0));
        assert_eq!(row("contacted").next_step_rate, Some(0.5));
        assert_eq!(row("qualified").next_step_rate, Some(1.0));
        // c4 entered `customer` without being a lead: it counts as an entry, not in the
        // lead cohort's cumulative rate.
        assert_eq!(row("customer").entered, 2);
        assert_eq!(row("customer").cumulative_rate, Some(1.0 / 3.0));
        assert_eq!(row("contacted").cumulative_rate, Some(2.0 / 3.0));
        assert_eq!(row("lead").cumulative_rate, Some(1.0));
        assert_eq!(row("customer").reached_next, 1);
        assert_eq!(row("active").next_step_rate, None);
    }

    #[test]
    fn transitions_per_period_and_reactivations() {
        let t = transitions(
            &facts(),
            0,
            24 * H,
            (&Calendar::UTC, Granularity::Day),
            Slice::All,
        );
        let total: i64 = t.iter().map(|r| r.transitions).sum();
        assert_eq!(total, 11);
        let re: i64 = t.iter().map(|r| r.reactivations).sum();
        assert_eq!(re, 1);
        let registered: i64 = t
            .iter()
            .filter(|r| r.from_stage.is_none())
            .map(|r| r.transitions)
            .sum();
        assert_eq!(registered, 4);
        // A window that excludes the first hours.
        let late = transitions(
            &facts(),
            5 * H,
            24 * H,
            (&Calendar::UTC, Granularity::Day),
            Slice::All,
        );
        assert_eq!(late.iter().map(|r| r.transitions).sum::<i64>(), 4);
    }

    #[test]
    fn median_time_in_stage_over_completed_stays() {
        let t = time_in_stage(&facts(), Slice::All);
        let row = |s: &str| t.iter().find(|r| r.stage == s).unwrap().clone();
        // lead stays: c1 2h, c2 4h (c3 still a lead) → median (nearest rank) 2h.
        assert_eq!(row("lead").completed_stays, 2);
        assert_eq!(row("lead").median_seconds, Some(2 * 3600));
        assert_eq!(row("contacted").median_seconds, Some(3 * 3600));
        assert_eq!(row("dormant").median_seconds, Some(3600));
    }
}

//! Facts the funnel and the KPIs are computed from, as read from the read-model tables,
//! and the calendar they are bucketed by. Plain data: the computations in
//! [`crate::funnel`] and [`crate::kpi`] are pure functions of these.

use serde::Serialize;

pub use crate::calendar::Granularity;
use crate::queries::{CustomerRow, ManagerRow, PeriodRow};

/// The stages of the pipeline, in order (`dormant`, `churned` sit beside it).
pub const PIPELINE: [&str; 5] = ["lead", "contacted", "qualified", "customer", "active"];

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StagePeriod {
    pub customer_id: String,
    pub stage: String,
    pub from_us: i64,
    pub to_us: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Transition {
    pub customer_id: String,
    pub from_stage: Option<String>,
    pub to_stage: String,
    pub at_us: i64,
    pub reactivated: bool,
    pub owner_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Contact {
    pub customer_id: String,
    pub manager_id: String,
    pub by_owner: bool,
    pub at_us: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Complaint {
    pub complaint_id: String,
    pub customer_id: String,
    pub owner_id: Option<String>,
    pub severity: String,
    pub logged_at_us: i64,
    pub first_response_s: Option<i64>,
    pub first_response_in_sla: Option<bool>,
    pub resolution_s: Option<i64>,
    pub resolutions: i64,
    pub resolution_breaches: i64,
    pub reopens: i64,
    pub satisfaction: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Referral {
    pub referral_id: String,
    pub referrer: String,
    pub referred_to: String,
    pub recorded_at_us: i64,
    pub converted_at_us: Option<i64>,
}

/// A pool warning or an automatic return to the pool (`rm_pool_events`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PoolEvent {
    pub customer_id: String,
    /// `warning` or `return`.
    pub kind: String,
    pub manager_id: String,
    pub at_us: i64,
}

/// An SLA warning, breach or escalation (`rm_sla_events`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SlaEvent {
    pub complaint_id: String,
    /// `warning`, `breach` or `escalation`.
    pub kind: String,
    pub automatic: bool,
    pub owner_id: Option<String>,
    pub at_us: i64,
}

/// Everything the funnel and KPI computations read.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    pub customers: Vec<CustomerRow>,
    pub managers: Vec<ManagerRow>,
    pub ownership: Vec<PeriodRow>,
    pub stages: Vec<StagePeriod>,
    pub transitions: Vec<Transition>,
    pub contacts: Vec<Contact>,
    pub complaints: Vec<Complaint>,
    pub referrals: Vec<Referral>,
    pub pool_events: Vec<PoolEvent>,
    pub sla_events: Vec<SlaEvent>,
}

impl Facts {
    /// Ownership periods by customer, for [`Facts::owner_at`] lookups.
    pub fn ownership_index(&self) -> std::collections::HashMap<&str, Vec<&PeriodRow>> {
        let mut index: std::collections::HashMap<&str, Vec<&PeriodRow>> =
            std::collections::HashMap::new();
        for p in &self.ownership {
            index.entry(p.customer_id.as_str()).or_default().push(p);
        }
        index
    }
}

/// The ownership period of `customer` holding `at_us`, if any.
pub fn owner_at<'a>(
    index: &std::collections::HashMap<&str, Vec<&'a PeriodRow>>,
    customer: &str,
    at_us: i64,
) -> Option<&'a PeriodRow> {
    index
        .get(customer)?
        .iter()
        .find(|p| p.from_us <= at_us && p.to_us.is_none_or(|t| t > at_us))
        .copied()
}

/// Nearest-rank quantile of `values` (sorted here); None when empty.
pub fn quantile(values: &mut [i64], q: f64) -> Option<i64> {
    if values.is_empty() {
        return None;
    }
    values.sort_unstable();
    let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len());
    Some(values[rank - 1])
}

/// `num / den`, None when nothing to divide.
pub fn rate(num: usize, den: usize) -> Option<f64> {
    (den > 0).then(|| num as f64 / den as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_quantiles() {
        let mut v: Vec<i64> = (1..=10).rev().collect();
        assert_eq!(quantile(&mut v, 0.5), Some(5));
        assert_eq!(quantile(&mut v, 0.9), Some(9));
        assert_eq!(quantile(&mut [], 0.5), None);
        assert_eq!(rate(1, 4), Some(0.25));
        assert_eq!(rate(0, 0), None);
    }
}

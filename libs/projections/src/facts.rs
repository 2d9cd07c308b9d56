//! Facts the funnel and the KPIs are computed from, as read from the read-model tables,
//! and the calendar they are bucketed by. Plain data: the computations in
//! [`crate::funnel`] and [`crate::kpi`] are pure functions of these.

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc};
use serde::{Deserialize, Serialize};

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

/// Calendar buckets for "per day / week / month" (UTC; weeks start on Monday).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Granularity {
    Day,
    Week,
    Month,
}

impl std::str::FromStr for Granularity {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "day" => Ok(Self::Day),
            "week" => Ok(Self::Week),
            "month" => Ok(Self::Month),
            other => Err(format!("granularity {other:?} is not day, week or month")),
        }
    }
}

fn at(us: i64) -> DateTime<Utc> {
    Utc.timestamp_micros(us).single().unwrap_or_default()
}

fn midnight(d: NaiveDate) -> i64 {
    d.and_hms_opt(0, 0, 0)
        .expect("midnight exists")
        .and_utc()
        .timestamp_micros()
}

/// Start of the bucket holding `us`.
pub fn bucket_start(us: i64, g: Granularity) -> i64 {
    let d = at(us).date_naive();
    match g {
        Granularity::Day => midnight(d),
        Granularity::Week => {
            midnight(d - Duration::days(i64::from(d.weekday().num_days_from_monday())))
        }
        Granularity::Month => midnight(d.with_day(1).expect("day 1 exists")),
    }
}

/// Start of the bucket after the one starting at `start`.
pub fn bucket_end(start: i64, g: Granularity) -> i64 {
    let d = at(start).date_naive();
    match g {
        Granularity::Day => midnight(d + Duration::days(1)),
        Granularity::Week => midnight(d + Duration::days(7)),
        Granularity::Month => {
            let (y, m) = if d.month() == 12 {
                (d.year() + 1, 1)
            } else {
                (d.year(), d.month() + 1)
            };
            midnight(NaiveDate::from_ymd_opt(y, m, 1).expect("first of month"))
        }
    }
}

/// The buckets `[start, end)` covering `[from_us, to_us)`.
pub fn buckets(from_us: i64, to_us: i64, g: Granularity) -> Vec<(i64, i64)> {
    let mut out = Vec::new();
    let mut start = bucket_start(from_us, g);
    while start < to_us {
        let end = bucket_end(start, g);
        out.push((start, end));
        start = end;
    }
    out
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

    fn us(y: i32, m: u32, d: u32, h: u32) -> i64 {
        Utc.with_ymd_and_hms(y, m, d, h, 0, 0)
            .unwrap()
            .timestamp_micros()
    }

    #[test]
    fn buckets_follow_the_calendar() {
        // 2026-11-25 is a Wednesday.
        assert_eq!(
            bucket_start(us(2026, 11, 25, 15), Granularity::Day),
            us(2026, 11, 25, 0)
        );
        assert_eq!(
            bucket_start(us(2026, 11, 25, 15), Granularity::Week),
            us(2026, 11, 23, 0)
        );
        assert_eq!(
            bucket_start(us(2026, 11, 25, 15), Granularity::Month),
            us(2026, 11, 1, 0)
        );
        assert_eq!(
            bucket_end(us(2026, 12, 1, 0), Granularity::Month),
            us(2027, 1, 1, 0)
        );
        let b = buckets(us(2026, 11, 30, 5), us(2027, 1, 2, 0), Granularity::Month);
        assert_eq!(
            b,
            vec![
                (us(2026, 11, 1, 0), us(2026, 12, 1, 0)),
                (us(2026, 12, 1, 0), us(2027, 1, 1, 0)),
                (us(2027, 1, 1, 0), us(2027, 2, 1, 0)),
            ]
        );
    }

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

//! The policy document: every parameter of the automatic rules, with the defaults of
//! DOMAIN.md. A JSON object; fields left out take their default, unknown fields are
//! refused so a misspelt parameter is never silently ignored.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::customer::complaint::SlaPolicy;
use crate::error::DomainError;
use crate::values::{
    CustomerType, FirstTouchChannel, LifecycleStage, RegionId, Severity, TeamId, ValueTier,
};

/// Version-independent parameters of ownership, pool, complaint and lifecycle rules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyDocument {
    /// Ordered assignment rules; the first that matches a customer decides.
    #[serde(default)]
    pub rules: Vec<AssignmentRule>,
    /// A customer registered without an owner is assigned by policy right away.
    #[serde(default = "yes")]
    pub assign_on_registration: bool,
    #[serde(default)]
    pub holding: HoldingRules,
    #[serde(default)]
    pub protection: ProtectionRules,
    #[serde(default)]
    pub pool: PoolRules,
    #[serde(default)]
    pub sla: SlaRules,
    #[serde(default)]
    pub lifecycle: LifecycleRules,
    /// Local time of the business, for "per day" rules (daily claim caps):
    /// minutes east of UTC (China: 480).
    #[serde(default)]
    pub utc_offset_minutes: i32,
}

fn yes() -> bool {
    true
}

impl Default for PolicyDocument {
    fn default() -> Self {
        Self {
            rules: Vec::new(),
            assign_on_registration: true,
            holding: HoldingRules::default(),
            protection: ProtectionRules::default(),
            pool: PoolRules::default(),
            sla: SlaRules::default(),
            lifecycle: LifecycleRules::default(),
            utc_offset_minutes: 0,
        }
    }
}

/// One assignment rule: if the customer matches `when`, a manager of `team` receives it,
/// chosen by `method`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssignmentRule {
    /// Unique within the document; recorded on every assignment it decides.
    pub name: String,
    #[serde(default)]
    pub when: Conditions,
    pub team: TeamId,
    #[serde(default)]
    pub method: Distribution,
}

/// Every list is "any of"; an empty list matches everything. All lists must match.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Conditions {
    /// 地域: the customer's region.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub regions: Vec<RegionId>,
    /// 产品: the product line the customer wants (profile) or last bought.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub product_lines: Vec<String>,
    /// 渠道: the first-touch channel.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub channels: Vec<FirstTouchChannel>,
    /// 团队: the team that first owned the customer (customers coming back from the pool).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub teams: Vec<TeamId>,
    /// 生命周期: the customer's lifecycle stage.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stages: Vec<LifecycleStage>,
    /// 客户价值: the customer's value tier.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub value_tiers: Vec<ValueTier>,
    /// 行业: the customer's industry (compared without case).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub industries: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub customer_types: Vec<CustomerType>,
}

/// How a rule picks the manager within its team.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Distribution {
    /// In turn, by manager id, skipping those who cannot receive.
    RoundRobin,
    /// The fewest customers counted against the holding limit.
    #[default]
    LeastLoaded,
    /// Shares proportional to 1 + deals won in the performance window: the manager
    /// furthest below their share receives.
    WeightedPerformance,
}

impl Distribution {
    pub fn as_str(self) -> &'static str {
        match self {
            Distribution::RoundRobin => "round_robin",
            Distribution::LeastLoaded => "least_loaded",
            Distribution::WeightedPerformance => "weighted_performance",
        }
    }
}

/// 保有量: how many customers a manager may hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HoldingRules {
    /// A cap for every manager of a team; a manager's own limit applies when lower.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub team_limits: BTreeMap<TeamId, u32>,
    /// Whether won customers (stage customer or later) count against the limit, or
    /// only prospects (lead, contacted, qualified) do.
    #[serde(default = "yes")]
    pub won_customers_count: bool,
    /// Days of deals won that weigh a manager's share (weighted_performance).
    #[serde(default = "thirty")]
    pub performance_window_days: u32,
}

fn thirty() -> u32 {
    30
}

impl Default for HoldingRules {
    fn default() -> Self {
        Self {
            team_limits: BTreeMap::new(),
            won_customers_count: true,
            performance_window_days: 30,
        }
    }
}

/// Whom the first-touch protection shields.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProtectionScope {
    /// The first owner's team keeps the customer (moves within the team are allowed).
    #[default]
    Team,
    /// The first owner personally keeps the customer.
    Manager,
}

/// 渠道原则: whoever first touched a customer keeps it for a while.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProtectionRules {
    /// Days from the first assignment; 0 (the default) turns protection off: a bank
    /// that wants it sets the period in its policy.
    #[serde(default)]
    pub first_touch_days: u32,
    #[serde(default)]
    pub scope: ProtectionScope,
}

impl Default for ProtectionRules {
    fn default() -> Self {
        Self {
            first_touch_days: 0,
            scope: ProtectionScope::Team,
        }
    }
}

/// Days per value tier; 0 turns the rule off for that tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierDays {
    pub high: u32,
    pub mid: u32,
    pub low: u32,
}

impl TierDays {
    pub const fn all(days: u32) -> Self {
        Self {
            high: days,
            mid: days,
            low: days,
        }
    }

    pub fn of(&self, tier: ValueTier) -> u32 {
        match tier {
            ValueTier::High => self.high,
            ValueTier::Mid => self.mid,
            ValueTier::Low => self.low,
        }
    }
}

/// 公海规则.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolRules {
    /// N: no contact by the owner for this many days returns the customer to the pool.
    #[serde(default = "PoolRules::default_no_contact")]
    pub no_contact_days: TierDays,
    /// M: a lead (any prospect stage) not won this many days after its owner received
    /// it returns to the pool.
    #[serde(default = "PoolRules::default_lead")]
    pub lead_not_won_days: TierDays,
    /// K: the owner is warned this many days before a return.
    #[serde(default = "PoolRules::default_warning")]
    pub warning_days: u32,
    /// Claims from the pool per manager per local day.
    #[serde(default = "PoolRules::default_claim_cap")]
    pub daily_claim_cap: u32,
    /// D: the previous owner may not claim the customer back for this many days.
    #[serde(default = "PoolRules::default_cooldown")]
    pub reclaim_cooldown_days: u32,
}

impl PoolRules {
    fn default_no_contact() -> TierDays {
        TierDays::all(30)
    }
    fn default_lead() -> TierDays {
        TierDays::all(90)
    }
    fn default_warning() -> u32 {
        3
    }
    fn default_claim_cap() -> u32 {
        20
    }
    fn default_cooldown() -> u32 {
        7
    }
}

impl Default for PoolRules {
    fn default() -> Self {
        Self {
            no_contact_days: Self::default_no_contact(),
            lead_not_won_days: Self::default_lead(),
            warning_days: Self::default_warning(),
            daily_claim_cap: Self::default_claim_cap(),
            reclaim_cooldown_days: Self::default_cooldown(),
        }
    }
}

/// Resolution time per severity, in hours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeverityHours {
    pub critical: u32,
    pub high: u32,
    pub normal: u32,
    pub low: u32,
}

/// The complaint promise: first response, resolution by severity, and when a clock is
/// "nearing breach".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlaRules {
    #[serde(default = "SlaRules::default_first_response")]
    pub first_response_minutes: u32,
    #[serde(default = "SlaRules::default_resolution")]
    pub resolution_hours: SeverityHours,
    /// A warning is raised once this share of a clock has run (1–99 %).
    #[serde(default = "SlaRules::default_warn")]
    pub warn_at_percent: u32,
}

impl SlaRules {
    fn default_first_response() -> u32 {
        10
    }
    fn default_resolution() -> SeverityHours {
        SeverityHours {
            critical: 4,
            high: 24,
            normal: 72,
            low: 168,
        }
    }
    fn default_warn() -> u32 {
        80
    }

    /// The clocks as durations.
    pub fn policy(&self) -> SlaPolicy {
        let h = |n: u32| Duration::hours(i64::from(n));
        SlaPolicy {
            first_response: Duration::minutes(i64::from(self.first_response_minutes)),
            critical: h(self.resolution_hours.critical),
            high: h(self.resolution_hours.high),
            normal: h(self.resolution_hours.normal),
            low: h(self.resolution_hours.low),
        }
    }

    /// When a clock running from `from` to `due` is nearing breach.
    pub fn warn_at(&self, from: DateTime<Utc>, due: DateTime<Utc>) -> DateTime<Utc> {
        let span = (due - from).num_seconds().max(0);
        from + Duration::seconds(span * i64::from(self.warn_at_percent) / 100)
    }

    pub fn resolution(&self, severity: Severity) -> Duration {
        self.policy().resolution(severity)
    }
}

impl Default for SlaRules {
    fn default() -> Self {
        Self {
            first_response_minutes: Self::default_first_response(),
            resolution_hours: Self::default_resolution(),
            warn_at_percent: Self::default_warn(),
        }
    }
}

/// Value tier thresholds on max(AUM, purchases recorded), in minor units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierThresholds {
    /// high from this value (default 1,000,000.00).
    pub high_from_minor: i64,
    /// mid from this value (default 50,000.00, the mass-affluent threshold).
    pub mid_from_minor: i64,
}

impl TierThresholds {
    pub fn tier(&self, value_minor: i64) -> ValueTier {
        if value_minor >= self.high_from_minor {
            ValueTier::High
        } else if value_minor >= self.mid_from_minor {
            ValueTier::Mid
        } else {
            ValueTier::Low
        }
    }
}

/// The lifecycle by time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LifecycleRules {
    /// An active (or newly won) customer with no activity for this many days becomes
    /// dormant; 0 turns it off.
    #[serde(default = "LifecycleRules::default_dormant")]
    pub dormant_after_days: u32,
    #[serde(default = "LifecycleRules::default_tiers")]
    pub tiers: TierThresholds,
}

impl LifecycleRules {
    fn default_dormant() -> u32 {
        90
    }
    fn default_tiers() -> TierThresholds {
        TierThresholds {
            high_from_minor: 100_000_000,
            mid_from_minor: 5_000_000,
        }
    }
}

impl Default for LifecycleRules {
    fn default() -> Self {
        Self {
            dormant_after_days: Self::default_dormant(),
            tiers: Self::default_tiers(),
        }
    }
}

pub fn days(n: u32) -> Duration {
    Duration::days(i64::from(n))
}

impl PolicyDocument {
    /// The business day of an instant, for daily caps.
    pub fn local_day(&self, at: DateTime<Utc>) -> NaiveDate {
        (at + Duration::minutes(i64::from(self.utc_offset_minutes))).date_naive()
    }

    /// The holding limit that applies to a manager of `team` whose own limit is `own`.
    pub fn holding_limit(&self, team: &TeamId, own: u32) -> u32 {
        self.holding
            .team_limits
            .get(team)
            .map_or(own, |t| (*t).min(own))
    }

    /// Refuse a document whose parameters contradict each other; names the field.
    pub fn validate(&self) -> Result<(), DomainError> {
        let bad = |field: String, reason: &str| Err(DomainError::invalid(field, reason));
        if self.rules.len() > 500 {
            return bad("rules".into(), "at most 500 rules");
        }
        let mut names = BTreeSet::new();
        for (i, r) in self.rules.iter().enumerate() {
            let name = r.name.trim();
            if name.is_empty() || name.chars().count() > 100 {
                return bad(format!("rules[{i}].name"), "must be 1 to 100 characters");
            }
            if !names.insert(name.to_string()) {
                return bad(format!("rules[{i}].name"), "rule names must be unique");
            }
            let texts = r.when.product_lines.iter().chain(&r.when.industries);
            if texts.into_iter().any(|t| t.trim().is_empty()) {
                return bad(format!("rules[{i}].when"), "conditions must not be blank");
            }
        }
        if self.holding.team_limits.values().any(|l| *l == 0) {
            return bad(
                "holding.team_limits".into(),
                "a team limit must be at least 1",
            );
        }
        if !(1..=3650).contains(&self.holding.performance_window_days) {
            return bad(
                "holding.performance_window_days".into(),
                "must be 1 to 3650",
            );
        }
        if self.protection.first_touch_days > 3650 {
            return bad("protection.first_touch_days".into(), "at most 3650");
        }
        let p = &self.pool;
        for (field, d) in [
            ("pool.no_contact_days", p.no_contact_days),
            ("pool.lead_not_won_days", p.lead_not_won_days),
        ] {
            if [d.high, d.mid, d.low].iter().any(|n| *n > 3650) {
                return bad(field.into(), "at most 3650 days");
            }
            if [d.high, d.mid, d.low]
                .iter()
                .any(|n| *n != 0 && *n <= p.warning_days)
            {
                return bad(
                    field.into(),
                    "must be more than pool.warning_days (or 0 for off)",
                );
            }
        }
        if p.daily_claim_cap == 0 {
            return bad("pool.daily_claim_cap".into(), "must be at least 1");
        }
        if p.reclaim_cooldown_days > 3650 {
            return bad("pool.reclaim_cooldown_days".into(), "at most 3650");
        }
        let s = &self.sla;
        let h = s.resolution_hours;
        if s.first_response_minutes == 0 || [h.critical, h.high, h.normal, h.low].contains(&0) {
            return bad("sla".into(), "every clock must be at least 1");
        }
        if !(1..=99).contains(&s.warn_at_percent) {
            return bad("sla.warn_at_percent".into(), "must be 1 to 99");
        }
        let t = self.lifecycle.tiers;
        if t.mid_from_minor <= 0 || t.high_from_minor <= t.mid_from_minor {
            return bad(
                "lifecycle.tiers".into(),
                "need 0 < mid_from_minor < high_from_minor",
            );
        }
        if self.lifecycle.dormant_after_days > 3650 {
            return bad("lifecycle.dormant_after_days".into(), "at most 3650");
        }
        if self.utc_offset_minutes.abs() > 14 * 60 {
            return bad("utc_offset_minutes".into(), "must be within ±840");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_object_is_the_defaults_and_unknown_fields_are_refused() {
        let doc: PolicyDocument = serde_json::from_str("{}").unwrap();
        assert_eq!(doc, PolicyDocument::default());
        assert_eq!(doc.pool.no_contact_days, TierDays::all(30));
        assert_eq!(doc.pool.lead_not_won_days, TierDays::all(90));
        assert_eq!(doc.sla.policy(), SlaPolicy::default());
        assert!(doc.validate().is_ok());
        assert!(serde_json::from_str::<PolicyDocument>(r#"{"pool":{"warnig_days":2}}"#).is_err());
        let round: PolicyDocument =
            serde_json::from_value(serde_json::to_value(&doc).unwrap()).unwrap();
        assert_eq!(round, doc);
    }

    #[test]
    fn contradictions_are_refused_naming_the_field() {
        let field = |doc: PolicyDocument| match doc.validate() {
            Err(DomainError::InvalidField { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        let mut d = PolicyDocument::default();
        d.pool.warning_days = 30;
        assert_eq!(field(d), "pool.no_contact_days");
        let mut d = PolicyDocument::default();
        d.sla.warn_at_percent = 100;
        assert_eq!(field(d), "sla.warn_at_percent");
        let mut d = PolicyDocument::default();
        d.lifecycle.tiers.high_from_minor = 10;
        assert_eq!(field(d), "lifecycle.tiers");
        let rule = |name: &str| AssignmentRule {
            name: name.into(),
            when: Conditions::default(),
            team: "t".parse().unwrap(),
            method: Distribution::RoundRobin,
        };
        let d = PolicyDocument {
            rules: vec![rule("a"), rule("a")],
            ..PolicyDocument::default()
        };
        assert_eq!(field(d), "rules[1].name");
        let mut d = PolicyDocument::default();
        d.pool.daily_claim_cap = 0;
        assert_eq!(field(d), "pool.daily_claim_cap");
    }

    #[test]
    fn tiers_limits_days_and_warnings() {
        let d = PolicyDocument::default();
        let t = d.lifecycle.tiers;
        assert_eq!(t.tier(4_999_999), ValueTier::Low);
        assert_eq!(t.tier(5_000_000), ValueTier::Mid);
        assert_eq!(t.tier(100_000_000), ValueTier::High);
        let mut d = PolicyDocument::default();
        let team: TeamId = "east-1".parse().unwrap();
        assert_eq!(d.holding_limit(&team, 50), 50);
        d.holding.team_limits.insert(team.clone(), 20);
        assert_eq!(d.holding_limit(&team, 50), 20);
        assert_eq!(d.holding_limit(&team, 10), 10);
        let from = "2026-11-25T09:00:00Z".parse().unwrap();
        let due = from + Duration::minutes(10);
        assert_eq!(d.sla.warn_at(from, due), from + Duration::minutes(8));
        d.utc_offset_minutes = 480;
        let late: DateTime<Utc> = "2026-11-25T17:00:00Z".parse().unwrap();
        assert_eq!(d.local_day(late).to_string(), "2026-11-26");
    }
}

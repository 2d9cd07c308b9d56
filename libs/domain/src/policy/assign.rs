//! Assignment by policy: the first rule whose conditions match the customer names a
//! team; the rule's distribution method picks one manager of that team among those who
//! may receive (active, under their holding limit). Pure and deterministic: the same
//! inputs always pick the same manager, ties broken by manager id.

use crate::context::ManagerView;
use crate::customer::Customer;
use crate::ids::ManagerId;
use crate::values::{CustomerType, FirstTouchChannel, LifecycleStage, RegionId, TeamId, ValueTier};

use super::document::{AssignmentRule, Conditions, Distribution, PolicyDocument};

/// What rules can be conditioned on, read from the customer's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerFacts<'a> {
    pub region: &'a RegionId,
    pub product_line: Option<&'a str>,
    pub channel: FirstTouchChannel,
    pub team: Option<&'a TeamId>,
    pub stage: LifecycleStage,
    pub value_tier: ValueTier,
    pub industry: Option<&'a str>,
    pub customer_type: CustomerType,
}

impl<'a> CustomerFacts<'a> {
    pub fn of(state: &'a Customer) -> Self {
        Self {
            region: &state.region,
            product_line: state
                .product_interest
                .as_deref()
                .or(state.last_product_line.as_deref()),
            channel: state.first_touch_channel,
            team: state.first_touch.as_ref().map(|f| &f.team),
            stage: state.stage,
            value_tier: state.value_tier,
            industry: state.industry.as_deref(),
            customer_type: state.customer_type,
        }
    }
}

fn any_of<T: PartialEq>(list: &[T], value: Option<&T>) -> bool {
    list.is_empty() || value.is_some_and(|v| list.contains(v))
}

fn any_text(list: &[String], value: Option<&str>) -> bool {
    list.is_empty()
        || value.is_some_and(|v| list.iter().any(|l| l.trim().eq_ignore_ascii_case(v.trim())))
}

impl Conditions {
    pub fn matches(&self, f: &CustomerFacts<'_>) -> bool {
        any_of(&self.regions, Some(f.region))
            && any_text(&self.product_lines, f.product_line)
            && any_of(&self.channels, Some(&f.channel))
            && any_of(&self.teams, f.team)
            && any_of(&self.stages, Some(&f.stage))
            && any_of(&self.value_tiers, Some(&f.value_tier))
            && any_text(&self.industries, f.industry)
            && any_of(&self.customer_types, Some(&f.customer_type))
    }
}

/// The first rule that matches, with its index.
pub fn matching_rule<'d>(
    doc: &'d PolicyDocument,
    facts: &CustomerFacts<'_>,
) -> Option<(usize, &'d AssignmentRule)> {
    doc.rules
        .iter()
        .enumerate()
        .find(|(_, r)| r.when.matches(facts))
}

/// A manager of the rule's team as the distribution sees them: `view.holdings` and
/// `view.holding_limit` are the ones the policy counts (see `HoldingRules`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub view: ManagerView,
    /// Deals won in the performance window.
    pub recent_wins: u32,
}

impl Candidate {
    pub fn can_receive(&self) -> bool {
        self.view.active && self.view.holdings < self.view.holding_limit
    }
}

/// The manager `method` picks among `candidates` (any order); `turn` is the team's
/// round-robin counter (assignments made so far). None when nobody may receive.
pub fn choose(method: Distribution, candidates: &[Candidate], turn: u64) -> Option<ManagerId> {
    let mut eligible: Vec<&Candidate> = candidates.iter().filter(|c| c.can_receive()).collect();
    eligible.sort_by_key(|c| c.view.id);
    if eligible.is_empty() {
        return None;
    }
    let picked = match method {
        Distribution::RoundRobin => eligible[(turn % eligible.len() as u64) as usize],
        Distribution::LeastLoaded => *eligible
            .iter()
            .min_by_key(|c| (c.view.holdings, c.view.id))
            .expect("not empty"),
        // Furthest below a share proportional to the weight: the smallest
        // (holdings + 1) / weight, compared exactly by cross-multiplication.
        Distribution::WeightedPerformance => *eligible
            .iter()
            .min_by(|a, b| {
                let load = |c: &Candidate| u64::from(c.view.holdings) + 1;
                let weight = |c: &Candidate| u64::from(c.recent_wins) + 1;
                (load(a) * weight(b))
                    .cmp(&(load(b) * weight(a)))
                    .then(a.view.holdings.cmp(&b.view.holdings))
                    .then(a.view.id.cmp(&b.view.id))
            })
            .expect("not empty"),
    };
    Some(picked.view.id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::values::ManagerRole;
    use uuid::Uuid;

    fn m(n: u128, holdings: u32, limit: u32, active: bool, wins: u32) -> Candidate {
        Candidate {
            view: ManagerView {
                id: ManagerId::new(Uuid::from_u128(n)),
                active,
                role: ManagerRole::Manager,
                team: "t".parse().unwrap(),
                region: "r".parse().unwrap(),
                branch: "b".parse().unwrap(),
                holding_limit: limit,
                holdings,
            },
            recent_wins: wins,
        }
    }

    fn id(n: u128) -> ManagerId {
        ManagerId::new(Uuid::from_u128(n))
    }

    #[test]
    fn each_method_picks_as_documented() {
        use Distribution::*;
        let team = [
            m(3, 5, 10, true, 0),
            m(1, 9, 10, true, 8),
            m(2, 2, 10, true, 0),
            m(4, 0, 10, false, 0),  // inactive: never
            m(5, 10, 10, true, 50), // at the limit: never
        ];
        // Round robin walks the eligible managers by id: 1, 2, 3, 1, ...
        let turns: Vec<_> = (0..4)
            .map(|t| choose(RoundRobin, &team, t).unwrap())
            .collect();
        assert_eq!(turns, vec![id(1), id(2), id(3), id(1)]);
        assert_eq!(choose(LeastLoaded, &team, 0), Some(id(2)));
        // (holdings+1)/(wins+1): m1 = 10/9 ≈ 1.1, m2 = 3/1, m3 = 6/1: the performer wins.
        assert_eq!(choose(WeightedPerformance, &team, 0), Some(id(1)));
        assert_eq!(choose(LeastLoaded, &team[3..], 0), None);
    }

    #[test]
    fn weighted_shares_follow_performance_over_many_assignments() {
        // Two managers, one with 3 recent wins (weight 4), one with none (weight 1):
        // assigning 50 customers one at a time gives them 40 and 10.
        let mut team = [m(1, 0, 1000, true, 3), m(2, 0, 1000, true, 0)];
        for _ in 0..50 {
            let who = choose(Distribution::WeightedPerformance, &team, 0).unwrap();
            let c = team.iter_mut().find(|c| c.view.id == who).unwrap();
            c.view.holdings += 1;
        }
        assert_eq!((team[0].view.holdings, team[1].view.holdings), (40, 10));
    }

    #[test]
    fn the_first_matching_rule_decides() {
        let region: RegionId = "east".parse().unwrap();
        let facts = CustomerFacts {
            region: &region,
            product_line: Some("Wealth"),
            channel: FirstTouchChannel::Web,
            team: None,
            stage: LifecycleStage::Lead,
            value_tier: ValueTier::High,
            industry: None,
            customer_type: CustomerType::Individual,
        };
        let rule = |name: &str, when: Conditions| AssignmentRule {
            name: name.into(),
            when,
            team: name.parse().unwrap(),
            method: Distribution::LeastLoaded,
        };
        let doc = PolicyDocument {
            rules: vec![
                rule(
                    "industry",
                    Conditions {
                        industries: vec!["automotive".into()],
                        ..Conditions::default()
                    },
                ),
                rule(
                    "vip",
                    Conditions {
                        value_tiers: vec![ValueTier::High],
                        product_lines: vec!["wealth".into()],
                        ..Conditions::default()
                    },
                ),
                rule("everyone", Conditions::default()),
            ],
            ..PolicyDocument::default()
        };
        let (i, r) = matching_rule(&doc, &facts).unwrap();
        assert_eq!((i, r.name.as_str()), (1, "vip"));
        let low = CustomerFacts {
            value_tier: ValueTier::Low,
            ..facts.clone()
        };
        assert_eq!(matching_rule(&doc, &low).unwrap().1.name, "everyone");
        let none = PolicyDocument {
            rules: doc.rules[..2].to_vec(),
            ..PolicyDocument::default()
        };
        assert!(matching_rule(&none, &low).is_none());
    }

    #[test]
    fn every_condition_matches_its_own_fact_and_nothing_else() {
        let (east, west): (RegionId, RegionId) = ("east".parse().unwrap(), "west".parse().unwrap());
        let (team, other): (TeamId, TeamId) = ("vip".parse().unwrap(), "mass".parse().unwrap());
        let base = CustomerFacts {
            region: &east,
            product_line: Some("Wealth"),
            channel: FirstTouchChannel::Partner,
            team: Some(&team),
            stage: LifecycleStage::Qualified,
            value_tier: ValueTier::Mid,
            industry: Some("Automotive"),
            customer_type: CustomerType::Enterprise,
        };
        let none = Conditions::default();
        assert!(none.matches(&base), "empty conditions match everyone");
        type Case = (&'static str, Conditions, Conditions);
        let cases: Vec<Case> = vec![
            (
                "regions",
                Conditions {
                    regions: vec![east.clone()],
                    ..none.clone()
                },
                Conditions {
                    regions: vec![west.clone()],
                    ..none.clone()
                },
            ),
            (
                "product_lines (without case)",
                Conditions {
                    product_lines: vec!["wealth".into()],
                    ..none.clone()
                },
                Conditions {
                    product_lines: vec!["loans".into()],
                    ..none.clone()
                },
            ),
            (
                "channels",
                Conditions {
                    channels: vec![FirstTouchChannel::Partner],
                    ..none.clone()
                },
                Conditions {
                    channels: vec![FirstTouchChannel::Web],
                    ..none.clone()
                },
            ),
            (
                "teams (first owner's)",
                Conditions {
                    teams: vec![team.clone()],
                    ..none.clone()
                },
                Conditions {
                    teams: vec![other.clone()],
                    ..none.clone()
                },
            ),
            (
                "stages",
                Conditions {
                    stages: vec![LifecycleStage::Qualified],
                    ..none.clone()
                },
                Conditions {
                    stages: vec![LifecycleStage::Lead],
                    ..none.clone()
                },
            ),
            (
                "value_tiers",
                Conditions {
                    value_tiers: vec![ValueTier::Mid],
                    ..none.clone()
                },
                Conditions {
                    value_tiers: vec![ValueTier::High],
                    ..none.clone()
                },
            ),
            (
                "industries (without case)",
                Conditions {
                    industries: vec!["automotive".into()],
                    ..none.clone()
                },
                Conditions {
                    industries: vec!["retail".into()],
                    ..none.clone()
                },
            ),
            (
                "customer_types",
                Conditions {
                    customer_types: vec![CustomerType::Enterprise],
                    ..none.clone()
                },
                Conditions {
                    customer_types: vec![CustomerType::Individual],
                    ..none.clone()
                },
            ),
        ];
        for (name, yes, no) in cases {
            assert!(yes.matches(&base), "{name} should match");
            assert!(!no.matches(&base), "{name} should not match");
        }
        // A fact the customer lacks never matches a non-empty list.
        let bare = CustomerFacts {
            product_line: None,
            team: None,
            industry: None,
            ..base.clone()
        };
        for c in [
            Conditions {
                product_lines: vec!["wealth".into()],
                ..none.clone()
            },
            Conditions {
                teams: vec![team.clone()],
                ..none.clone()
            },
            Conditions {
                industries: vec!["automotive".into()],
                ..none.clone()
            },
        ] {
            assert!(!c.matches(&bare));
        }
        // All lists must hold.
        let both = Conditions {
            regions: vec![east.clone()],
            stages: vec![LifecycleStage::Lead],
            ..none.clone()
        };
        assert!(!both.matches(&base));
    }
}

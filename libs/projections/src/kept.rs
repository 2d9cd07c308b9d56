//! The aggregates the analytics read model keeps, so a question reads a few hundred rows
//! whatever the size of the book: what each event adds to them (part of the analytics
//! projection, pure) and how a question reads them back. Their reference is the same as
//! the database's other answers: [`crate::funnel`] over the facts, row for row (tests).
//!
//! **The funnel.** A customer is in one (slice, stage) place per slice kind at every
//! instant. Each move between places is kept (`rm_funnel_moves`: the places before and
//! after, at its instant), and its deltas of ±1 are added to the counts now
//! (`rm_funnel_now`) and to its local month and day (`rm_funnel_months`,
//! `rm_funnel_days`; of the analytics read model's zone, the KPI ledger's). Customers
//! per stage as of
//! `T` are then the deltas of the months before `T`'s, of the days of its month before
//! its day, and of its day up to `T`: about (months + 31) × slices × stages rows and one
//! day's moves. Customer attributes slice as they are now (as the reference does): when
//! a region or a value tier changes, the customer's whole history moves to the new value
//! (the memo keeps its stays for that). The team is the owner's at each instant.

use crm_domain::CustomerEvent;

use crate::calendar::Calendar;
use crate::change::{Add, Change, Doc, Insert, Value};
use crate::funnel::{Slice, StageCount};
use crate::ledger::{first_day_of_month, month_of_day};
use crate::project::Memo;
use crate::schema::{
    col, Col, ANALYTICS_CUSTOMERS, FUNNEL_DAYS, FUNNEL_MONTHS, FUNNEL_MOVES, FUNNEL_NOW,
};
use crate::sql::Statement;
use crate::store::{ReadError, ReadStore};

/// The slice kinds the funnel keeps, as the query API names them.
pub const KINDS: [&str; 6] = [
    "all",
    "region",
    "first_touch_channel",
    "customer_type",
    "value_tier",
    "team",
];

mod m {
    use super::*;
    pub const ID: Col = col(&ANALYTICS_CUSTOMERS, "customer_id");
    pub const OWNER: Col = col(&ANALYTICS_CUSTOMERS, "owner_id");
    pub const STAGE: Col = col(&ANALYTICS_CUSTOMERS, "stage");
    pub const REGION: Col = col(&ANALYTICS_CUSTOMERS, "region");
    pub const CHANNEL: Col = col(&ANALYTICS_CUSTOMERS, "first_touch_channel");
    pub const TYPE: Col = col(&ANALYTICS_CUSTOMERS, "customer_type");
    pub const TIER: Col = col(&ANALYTICS_CUSTOMERS, "value_tier");
    pub const TEAM: Col = col(&ANALYTICS_CUSTOMERS, "team");
    pub const STAYS: Col = col(&ANALYTICS_CUSTOMERS, "stays");

    pub const NOW_N: Col = col(&FUNNEL_NOW, "customers");
    pub const MONTH_N: Col = col(&FUNNEL_MONTHS, "customers");
    pub const DAY_N: Col = col(&FUNNEL_DAYS, "customers");

    pub const MOVE_ID: Col = col(&FUNNEL_MOVES, "customer_id");
    pub const MOVE_VERSION: Col = col(&FUNNEL_MOVES, "version");
    pub const MOVE_N: Col = col(&FUNNEL_MOVES, "n");
    pub const MOVE_AT: Col = col(&FUNNEL_MOVES, "at_us");
    pub const FROM_STAGE: Col = col(&FUNNEL_MOVES, "from_stage");
    pub const TO_STAGE: Col = col(&FUNNEL_MOVES, "to_stage");
    /// (from, to) columns per slice kind but `all`, in the order of [`KINDS`].
    pub const FROM_TO: [(Col, Col); 5] = [
        (
            col(&FUNNEL_MOVES, "from_region"),
            col(&FUNNEL_MOVES, "to_region"),
        ),
        (
            col(&FUNNEL_MOVES, "from_first_touch_channel"),
            col(&FUNNEL_MOVES, "to_first_touch_channel"),
        ),
        (
            col(&FUNNEL_MOVES, "from_customer_type"),
            col(&FUNNEL_MOVES, "to_customer_type"),
        ),
        (
            col(&FUNNEL_MOVES, "from_value_tier"),
            col(&FUNNEL_MOVES, "to_value_tier"),
        ),
        (
            col(&FUNNEL_MOVES, "from_team"),
            col(&FUNNEL_MOVES, "to_team"),
        ),
    ];
}

/// One stay in a stage: `[from, to)`, open while `to` is `None`.
type Stay = (String, i64, Option<i64>);

/// The owner of customer `id` as the analytics read model remembers it.
pub fn owner(memo: &dyn Memo, id: &str) -> Option<String> {
    match memo
        .row(&ANALYTICS_CUSTOMERS, &Value::from(id))?
        .get(m::OWNER.index)?
    {
        Value::Text(o) => Some(o.clone()),
        _ => None,
    }
}

/// What the analytics read model remembers of a customer.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    owner: Option<String>,
    stage: String,
    /// The slice value per kind, in the order of [`KINDS`].
    values: [String; 6],
    stays: Vec<Stay>,
}

impl Member {
    /// The customer `id` as the memo holds it.
    fn recall(memo: &dyn Memo, id: &str) -> Option<Self> {
        let row = memo.row(&ANALYTICS_CUSTOMERS, &Value::from(id))?;
        let text = |c: Col| match &row[c.index] {
            Value::Text(s) => Some(s.clone()),
            _ => None,
        };
        let stage = text(m::STAGE)?;
        Some(Self {
            owner: text(m::OWNER),
            stage,
            values: [
                "all".to_string(),
                text(m::REGION)?,
                text(m::CHANNEL)?,
                text(m::TYPE)?,
                text(m::TIER)?,
                text(m::TEAM)?,
            ],
            stays: row[m::STAYS.index].document().unwrap_or_default(),
        })
    }

    fn into_row(self, id: &str) -> Change {
        let [_, region, channel, kind, tier, team] = self.values;
        Insert::into(&ANALYTICS_CUSTOMERS)
            .set(m::ID, id)
            .set(m::OWNER, self.owner)
            .set(m::STAGE, self.stage)
            .set(m::REGION, region)
            .set(m::CHANNEL, channel)
            .set(m::TYPE, kind)
            .set(m::TIER, tier)
            .set(m::TEAM, team)
            .set(m::STAYS, Value::Doc(Doc::new(self.stays)))
            .upsert()
    }
}

/// Where a customer is in the funnel: its stage and its value of each slice kind.
#[derive(Debug, Clone, PartialEq)]
struct Place {
    stage: String,
    values: [String; 6],
}

impl Member {
    fn place(&self) -> Place {
        Place {
            stage: self.stage.clone(),
            values: self.values.clone(),
        }
    }
}

/// The moves of one event, and the counts they change.
struct Moves<'a> {
    id: &'a str,
    version: i64,
    out: Vec<Change>,
    n: i64,
    /// Whose days and months the counts are kept in.
    cal: Calendar,
}

impl Moves<'_> {
    /// The customer moves from `from` (None: it enters the funnel) to `to` at `at`.
    fn push(&mut self, at: i64, from: Option<&Place>, to: &Place) {
        for k in 0..KINDS.len() {
            let same = from.is_some_and(|f| f.stage == to.stage && f.values[k] == to.values[k]);
            if same {
                continue;
            }
            if let Some(f) = from {
                self.count(k, &f.values[k], &f.stage, at, -1);
            }
            self.count(k, &to.values[k], &to.stage, at, 1);
        }
        self.n += 1;
        let mut row = Insert::into(&FUNNEL_MOVES)
            .set(m::MOVE_ID, self.id)
            .set(m::MOVE_VERSION, self.version)
            .set(m::MOVE_N, self.n)
            .set(m::MOVE_AT, at)
            .set(m::FROM_STAGE, from.map(|f| f.stage.clone()))
            .set(m::TO_STAGE, to.stage.as_str());
        for (k, (from_col, to_col)) in m::FROM_TO.iter().enumerate() {
            row = row
                .set(*from_col, from.map(|f| f.values[k + 1].clone()))
                .set(*to_col, to.values[k + 1].as_str());
        }
        self.out.push(row.insert());
    }

    /// `n` customers in (kind, value, stage) from instant `at` on.
    fn count(&mut self, kind: usize, value: &str, stage: &str, at: i64, n: i64) {
        let key = |extra: Option<i64>| {
            let mut k = vec![
                Value::from(KINDS[kind]),
                Value::from(value),
                Value::from(stage),
            ];
            k.extend(extra.map(Value::Int));
            k
        };
        self.out
            .push(Add::to(&FUNNEL_NOW, key(None)).add(m::NOW_N, n).change());
        let day = self.cal.day_number(at);
        self.out.push(
            Add::to(&FUNNEL_MONTHS, key(Some(month_of_day(day))))
                .add(m::MONTH_N, n)
                .change(),
        );
        self.out.push(
            Add::to(&FUNNEL_DAYS, key(Some(day)))
                .add(m::DAY_N, n)
                .change(),
        );
    }
}

/// The owner and the owner's team after `c`, if `c` changes the owner (none: in the
/// pool).
fn new_owner(c: &CustomerEvent) -> Option<(Option<String>, &str)> {
    match c {
        CustomerEvent::OwnerAssigned(a) => Some((Some(a.manager_id.to_string()), a.team.as_str())),
        CustomerEvent::OwnershipTransferred(t) => {
            Some((Some(t.to_manager.to_string()), t.to_team.as_str()))
        }
        CustomerEvent::ClaimedFromPool(cl) => {
            Some((Some(cl.manager_id.to_string()), cl.team.as_str()))
        }
        CustomerEvent::ReleasedToPool(_) => Some((None, "pool")),
        _ => None,
    }
}

/// The funnel's changes for customer event `c` of customer `id` (its stream `version`,
/// at `at`), with what the memo remembers.
pub fn funnel(
    memo: &dyn Memo,
    (id, version, at): (&str, i64, i64),
    c: &CustomerEvent,
) -> Vec<Change> {
    let moves_someone = new_owner(c).is_some()
        || matches!(
            c,
            CustomerEvent::CustomerRegistered(_)
                | CustomerEvent::LifecycleStageChanged(_)
                | CustomerEvent::ValueTierChanged(_)
        )
        || matches!(c, CustomerEvent::ProfileUpdated(p) if p.region.is_some());
    if !moves_someone {
        // Most events (contacts, complaints, …) change nothing remembered: the memo is
        // not even read.
        return Vec::new();
    }
    let mut d = Moves {
        id,
        version,
        out: Vec::new(),
        n: 0,
        cal: memo.calendar(),
    };
    let member = match (c, Member::recall(memo, id)) {
        (CustomerEvent::CustomerRegistered(r), _) => {
            let from = crate::project::micros(r.registered_at);
            let member = Member {
                owner: None,
                stage: r.stage.as_str().to_string(),
                values: [
                    "all".to_string(),
                    r.region.as_str().to_string(),
                    r.first_touch_channel.as_str().to_string(),
                    r.customer_type.as_str().to_string(),
                    r.value_tier.as_str().to_string(),
                    "pool".to_string(),
                ],
                stays: vec![(r.stage.as_str().to_string(), from, None)],
            };
            d.push(from, None, &member.place());
            member
        }
        (_, None) => return Vec::new(),
        (_, Some(mut member)) => {
            if !changed(&mut d, &mut member, c, at) {
                return Vec::new();
            }
            member
        }
    };
    let mut out = d.out;
    out.push(member.into_row(id));
    out
}

/// Apply `c` to `member`, adding its deltas; whether anything changed.
fn changed(d: &mut Moves, member: &mut Member, c: &CustomerEvent, at: i64) -> bool {
    let before = member.place();
    if let Some((owner, team)) = new_owner(c) {
        member.owner = owner;
        if team != member.values[5] {
            member.values[5] = team.to_string();
            d.push(at, Some(&before), &member.place());
        }
        return true;
    }
    match c {
        CustomerEvent::LifecycleStageChanged(l) => {
            member.stage = l.to.as_str().to_string();
            d.push(at, Some(&before), &member.place());
            if let Some(stay) = member.stays.iter_mut().rev().find(|s| s.2.is_none()) {
                stay.2 = Some(at);
            }
            member.stays.push((member.stage.clone(), at, None));
            true
        }
        CustomerEvent::ProfileUpdated(p) => match &p.region {
            Some(r) if r.as_str() != member.values[1] => {
                rewrite(d, member, 1, r.as_str());
                true
            }
            _ => false,
        },
        CustomerEvent::ValueTierChanged(t) if t.to.as_str() != member.values[4] => {
            rewrite(d, member, 4, t.to.as_str());
            true
        }
        _ => false,
    }
}

/// The customer's whole history moved from its value of slice kind `kind` to `to`: at
/// the start of each stay from the old value to the new, at its end back (the other
/// kinds stay where they are: their values on both sides of these moves are today's,
/// which changes nothing).
fn rewrite(d: &mut Moves, member: &mut Member, kind: usize, to: &str) {
    let mut old = member.place();
    member.values[kind] = to.to_string();
    let mut new = member.place();
    for (stage, start, end) in &member.stays {
        old.stage.clone_from(stage);
        new.stage.clone_from(stage);
        d.push(*start, Some(&old), &new);
        if let Some(end) = end {
            d.push(*end, Some(&new), &old);
        }
    }
}

/// The kind a slice is kept under: its position in [`KINDS`].
fn kind(slice: Slice) -> usize {
    match slice {
        Slice::All => 0,
        Slice::Region => 1,
        Slice::FirstTouchChannel => 2,
        Slice::CustomerType => 3,
        Slice::ValueTier => 4,
        Slice::Team => 5,
    }
}

/// Customers per (value, stage) of a slice kind now, its stripes summed.
const NOW: &str = "SELECT value, stage, CAST(sum(customers) AS BIGINT) FROM rm_funnel_now \
    WHERE kind = $1 GROUP BY value, stage";

/// Customers per (value, stage) of slice kind `k` (a position in [`KINDS`]) as of an
/// instant: the months before `$2`, the days `[$3, $4)`, the moves `[$5, $6]`. Only the
/// fixed names of the kind's columns go into the text.
fn as_of_sql(k: usize) -> String {
    let (from, to) = match k {
        0 => ("'all'", "'all'"),
        k => (m::FROM_TO[k - 1].0.name, m::FROM_TO[k - 1].1.name),
    };
    format!(
        "SELECT value, stage, CAST(sum(customers) AS BIGINT) FROM (\
         SELECT value, stage, customers FROM rm_funnel_months WHERE kind = $1 AND month < $2 \
         UNION ALL SELECT value, stage, customers FROM rm_funnel_days \
         WHERE kind = $1 AND day >= $3 AND day < $4 \
         UNION ALL SELECT {to}, to_stage, 1 FROM rm_funnel_moves \
         WHERE at_us >= $5 AND at_us <= $6 \
         UNION ALL SELECT {from}, from_stage, -1 FROM rm_funnel_moves \
         WHERE at_us >= $5 AND at_us <= $6 AND from_stage IS NOT NULL) x GROUP BY value, stage"
    )
}

const COMPLETE: &str = "SELECT complete FROM rm_kept WHERE read_model = 'analytics'";

impl ReadStore {
    /// Whether the analytics read model keeps its aggregates from the first event on.
    pub async fn kept_complete(&self) -> Result<bool, ReadError> {
        let s = Statement {
            sql: COMPLETE.into(),
            args: Vec::new(),
            one_row: None,
        };
        let rows = self.fetch(&s, &[true]).await?;
        Ok(rows.first().is_some_and(|r| r[0] == Value::Int(1)))
    }

    /// Customers per stage now (`None`) or as of an instant, from the kept funnel.
    pub async fn stage_counts_kept(
        &self,
        at_us: Option<i64>,
        slice: Slice,
    ) -> Result<Vec<StageCount>, ReadError> {
        let k = kind(slice);
        let kind = (Value::from(KINDS[k]), false);
        let s = match at_us {
            None => Statement {
                sql: NOW.into(),
                args: vec![kind],
                one_row: None,
            },
            Some(t) => {
                let cal = self.ledger_zone().await?;
                let day = cal.day_number(t);
                let month = month_of_day(day);
                let day_start = cal.start_of(cal.date(t));
                let ints = [month, first_day_of_month(month), day, day_start, t];
                Statement {
                    sql: as_of_sql(k),
                    args: std::iter::once(kind)
                        .chain(ints.map(|v| (Value::Int(v), true)))
                        .collect(),
                    one_row: None,
                }
            }
        };
        let mut out: Vec<StageCount> = self
            .fetch(&s, &[false, false, true])
            .await?
            .into_iter()
            .filter_map(|r| match (&r[0], &r[1], &r[2]) {
                (Value::Text(v), Value::Text(stage), Value::Int(n)) if *n != 0 => {
                    Some(StageCount {
                        slice: v.clone(),
                        stage: stage.clone(),
                        customers: *n,
                    })
                }
                _ => None,
            })
            .collect();
        out.sort_by(|a, b| (&a.slice, &a.stage).cmp(&(&b.slice, &b.stage)));
        Ok(out)
    }
}

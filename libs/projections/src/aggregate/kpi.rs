//! Manager KPIs in the database; the reference is [`crate::kpi::kpis`].
//!
//! Everything is grouped by manager and UTC day, then added up here by level (manager,
//! team, region) and calendar bucket:
//!
//! - flows (contacts, wins, complaints, referrals, pool and SLA events, customers lost)
//!   count by the day they happened;
//! - snapshots (portfolio, tier mix, value, coverage) are running sums of +1/-1 deltas:
//!   a period of ownership adds at its start and takes away at its end; a run of
//!   contacts by a manager on a customer covers `[first, last + 30 days)`, cut to the
//!   periods in which that manager owned the customer. A snapshot at the end of a bucket
//!   (or now) sums the deltas up to its last day, counting only deltas not after now:
//!   exact, because every snapshot is either the last instant of a day or now, and no
//!   snapshot is later than now;
//! - leads owned and converted are (manager, customer) pairs whose lead stay overlapped
//!   the manager's ownership within a bucket: the database returns the spans in days,
//!   grouped where a pair has a single span, one by one where a pair has several (so a
//!   pair counts once per bucket) or its customer was won in the range;
//! - complaints logged in the range come back one by one (quantiles need the values).
//!
//! The portfolio is a count of open periods, which is the reference's count of distinct
//! customers because a customer has one open period at an instant (each period ends at
//! the instant the next begins). Only a clock stepping back between two ownership
//! changes of one customer could make two overlap; the funnel's team slice does not rely
//! on it (it takes the first period, as the reference does).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use super::Agg;
use crate::calendar::{Calendar, Granularity};
use crate::kpi::{KpiRow, Level, Period, Tally, COVERAGE_WINDOW_US};
use crate::queries::ManagerRow;
use crate::store::{ReadError, ReadStore};

/// The local days of a range of whole buckets `[start, end)` (`$1` is `start`),
/// numbered from 0.
pub(super) struct Days<'c> {
    pub cal: &'c Calendar,
    pub start: i64,
    pub end: i64,
    /// The local day number of `start`.
    pub first: i64,
}

impl Days<'_> {
    /// The day of instant column `col`, for instants from `start` on.
    fn of(&self, col: &str) -> String {
        format!(
            "({} - {})",
            self.cal.day_sql(col, self.start, self.end),
            self.first
        )
    }

    /// The day of `col`, -1 before `start`.
    fn or_before(&self, col: &str) -> String {
        format!("CASE WHEN {col} < $1 THEN -1 ELSE {} END", self.of(col))
    }

    /// The day holding instant `us`.
    fn index(&self, us: i64) -> i64 {
        self.cal.day_number(us) - self.first
    }
}

/// Per manager, day → deltas of (portfolio, high, mid, low, value, covered).
type Deltas = HashMap<String, BTreeMap<i64, [i64; 6]>>;

/// Open periods at `$1` whose customer's next follow-up is before it, per manager.
const OVERDUE: &str = "SELECT p.manager_id, count(*) FROM rm_ownership_periods p \
     JOIN rm_customers c ON c.customer_id = p.customer_id \
     WHERE p.from_us <= $1 AND (p.to_us IS NULL OR p.to_us > $1) \
     AND c.next_follow_up_us < $1 GROUP BY 1";

/// `CAST(e AS BIGINT)`: PostgreSQL gives sums as `numeric` and small literals as `int4`.
fn int(e: &str) -> String {
    format!("CAST({e} AS BIGINT)")
}

/// Where one kind of flow is counted: whose it is, its source's name (and kind), its
/// instant, two sums beside the count, the table and a condition.
struct FlowSource {
    who: &'static str,
    source: &'static str,
    kind: &'static str,
    at: &'static str,
    x: &'static str,
    y: &'static str,
    table: &'static str,
    condition: &'static str,
}

const FLOW_SOURCES: [FlowSource; 7] = [
    FlowSource {
        who: "manager_id",
        source: "lost",
        kind: "''",
        at: "to_us",
        x: "0",
        y: "0",
        table: "rm_ownership_periods",
        condition: " AND end_event = 'ReleasedToPool'",
    },
    FlowSource {
        who: "manager_id",
        source: "contacts",
        kind: "''",
        at: "at_us",
        x: "0",
        y: "0",
        table: "rm_contacts",
        condition: "",
    },
    FlowSource {
        who: "owner_id",
        source: "moves",
        kind: "''",
        at: "at_us",
        x: "sum(CASE WHEN to_stage = 'customer' THEN 1 ELSE 0 END)",
        y: "sum(reactivated)",
        table: "rm_stage_transitions",
        condition: " AND owner_id IS NOT NULL",
    },
    FlowSource {
        who: "manager_id",
        source: "pool",
        kind: "kind",
        at: "at_us",
        x: "0",
        y: "0",
        table: "rm_pool_events",
        condition: "",
    },
    FlowSource {
        who: "owner_id",
        source: "sla",
        kind: "kind",
        at: "at_us",
        x: "sum(automatic)",
        y: "0",
        table: "rm_sla_events",
        condition: " AND owner_id IS NOT NULL",
    },
    FlowSource {
        who: "referrer",
        source: "referred",
        kind: "''",
        at: "recorded_at_us",
        x: "0",
        y: "0",
        table: "rm_referrals",
        condition: "",
    },
    FlowSource {
        who: "referrer",
        source: "converted",
        kind: "''",
        at: "converted_at_us",
        x: "0",
        y: "0",
        table: "rm_referrals",
        condition: "",
    },
];

/// The buckets of one KPI question and the local days they are made of.
pub(super) struct Range<'c> {
    pub days: Days<'c>,
    pub spans: Vec<(i64, i64)>,
    /// The bucket of each day of the range.
    pub bucket_of: Vec<usize>,
    /// Deltas later than this are in no snapshot.
    limit: i64,
    /// The first bucket's snapshot.
    first_snapshot: i64,
    /// The bucket running now.
    pub current: Option<usize>,
}

impl<'c> Range<'c> {
    pub fn new(
        (cal, g): (&'c Calendar, Granularity),
        from_us: i64,
        to_us: i64,
        now_us: i64,
    ) -> Option<Self> {
        let spans = cal.buckets(from_us, to_us, g);
        let (&(d0, _), &(_, end)) = (spans.first()?, spans.last()?);
        let days = Days {
            cal,
            start: d0,
            end,
            first: cal.day_number(d0),
        };
        let mut bucket_of = Vec::new();
        for (k, (s, e)) in spans.iter().enumerate() {
            let n = days.index(e - 1) - days.index(*s) + 1;
            bucket_of.extend(std::iter::repeat_n(k, n as usize));
        }
        Some(Self {
            limit: now_us.min(end - 1),
            first_snapshot: spans[0].1.min(now_us.saturating_add(1)) - 1,
            current: spans.iter().position(|(s, e)| now_us >= *s && now_us < *e),
            days,
            spans,
            bucket_of,
        })
    }

    /// `[start, end)` of the range.
    pub fn bounds(&self) -> [i64; 2] {
        [self.days.start, self.days.end]
    }

    /// Ownership periods: +1 at the start, -1 at the end, per manager and day, with the
    /// tier mix and value of the customer (binds: start, limit).
    fn deltas_sql(&self) -> String {
        format!(
            "WITH ev AS (SELECT manager_id, customer_id, from_us AS at, 1 AS sign \
             FROM rm_ownership_periods WHERE from_us <= $2 \
             UNION ALL SELECT manager_id, customer_id, to_us, -1 \
             FROM rm_ownership_periods WHERE to_us <= $2) \
             SELECT ev.manager_id, {}, {}, {}, {}, {}, {} \
             FROM ev LEFT JOIN rm_customers c ON c.customer_id = ev.customer_id GROUP BY 1, 2",
            self.days.or_before("ev.at"),
            int("sum(ev.sign)"),
            int("sum(CASE WHEN c.value_tier = 'high' THEN ev.sign ELSE 0 END)"),
            int("sum(CASE WHEN c.value_tier = 'mid' THEN ev.sign ELSE 0 END)"),
            int("sum(CASE WHEN c.value_tier <> 'high' AND c.value_tier <> 'mid' THEN ev.sign ELSE 0 END)"),
            int("sum(COALESCE(c.aum_minor, 0) * ev.sign)"),
        )
    }

    /// Runs of contacts by a manager on a customer, cut to that manager's ownership:
    /// +1 where a covered span starts, -1 where it ends, per manager and day (binds:
    /// start, limit, the first snapshot less the window).
    fn cover_sql(&self) -> String {
        let w = COVERAGE_WINDOW_US;
        format!(
            "WITH c AS (SELECT customer_id, manager_id, at_us, \
             CASE WHEN at_us - lag(at_us) OVER (PARTITION BY customer_id, manager_id \
             ORDER BY at_us) <= {w} THEN 0 ELSE 1 END AS fresh \
             FROM rm_contacts WHERE at_us > $3 AND at_us <= $2 \
             AND EXISTS (SELECT 1 FROM rm_ownership_periods o \
             WHERE o.customer_id = rm_contacts.customer_id \
             AND o.manager_id = rm_contacts.manager_id)), \
             r AS (SELECT customer_id, manager_id, at_us, sum(fresh) OVER \
             (PARTITION BY customer_id, manager_id ORDER BY at_us ROWS UNBOUNDED PRECEDING) AS run \
             FROM c), \
             i AS (SELECT customer_id, manager_id, min(at_us) AS a, max(at_us) + {w} AS b \
             FROM r GROUP BY customer_id, manager_id, run), \
             x AS (SELECT i.manager_id, \
             CASE WHEN i.a > p.from_us THEN i.a ELSE p.from_us END AS a, \
             CASE WHEN p.to_us IS NOT NULL AND p.to_us < i.b THEN p.to_us ELSE i.b END AS b \
             FROM i JOIN rm_ownership_periods p ON p.customer_id = i.customer_id \
             AND p.manager_id = i.manager_id AND p.from_us < i.b \
             AND (p.to_us IS NULL OR p.to_us > i.a)) \
             SELECT manager_id, {}, count(*) FROM x WHERE a <= $2 GROUP BY 1, 2 \
             UNION ALL SELECT manager_id, {}, -count(*) FROM x WHERE b <= $2 GROUP BY 1, 2",
            self.days.or_before("a"),
            self.days.or_before("b")
        )
    }

    /// Flows in the range, per manager and day: (manager, source, kind, day, n, x, y)
    /// (binds: start, end).
    fn flows_sql(&self) -> String {
        let selects: Vec<String> = FLOW_SOURCES
            .iter()
            .map(|f| {
                format!(
                    "SELECT {}, '{}', {}, {}, CAST(count(*) AS BIGINT), CAST({} AS BIGINT), \
                     CAST({} AS BIGINT) FROM {} WHERE {at} >= $1 AND {at} < $2{} \
                     GROUP BY 1, 2, 3, 4",
                    f.who,
                    f.source,
                    f.kind,
                    self.days.of(f.at),
                    f.x,
                    f.y,
                    f.table,
                    f.condition,
                    at = f.at,
                )
            })
            .collect();
        selects.join(" UNION ALL ")
    }

    /// Complaints logged in the range, one by one (binds: start, end).
    fn complaints_sql(&self) -> String {
        format!(
            "SELECT k.owner_id, {}, k.first_response_s, \
             k.resolution_s, {}, {}, {}, k.satisfaction \
             FROM rm_complaints k WHERE k.owner_id IS NOT NULL \
             AND k.logged_at_us >= $1 AND k.logged_at_us < $2",
            self.days.of("k.logged_at_us"),
            int(
                "CASE WHEN k.first_response_in_sla = 0 OR k.resolution_breaches > 0 \
                 OR EXISTS (SELECT 1 FROM rm_sla_events e WHERE e.complaint_id = k.complaint_id \
                 AND e.kind = 'breach') THEN 1 ELSE 0 END"
            ),
            int("CASE WHEN k.resolutions > 0 THEN 1 ELSE 0 END"),
            int("CASE WHEN k.resolutions > 0 AND k.reopens > 0 THEN 1 ELSE 0 END"),
        )
    }

    /// Spans in which a manager owned a customer in its `lead` stage, as (first day,
    /// last day) of the range; grouped, except for a pair with several spans or whose
    /// customer was won in the range (binds: start, end).
    fn leads_sql(&self) -> String {
        format!(
            "WITH won AS (SELECT DISTINCT customer_id FROM rm_stage_transitions \
             WHERE to_stage = 'customer' AND owner_id IS NOT NULL AND at_us >= $1 AND at_us < $2), \
             x AS (SELECT p.manager_id, p.customer_id, \
             CASE WHEN s.from_us > p.from_us THEN s.from_us ELSE p.from_us END AS a, \
             CASE WHEN s.to_us IS NULL OR (p.to_us IS NOT NULL AND p.to_us < s.to_us) \
             THEN p.to_us ELSE s.to_us END AS b \
             FROM rm_stage_periods s JOIN rm_ownership_periods p ON p.customer_id = s.customer_id \
             WHERE s.stage = 'lead' AND (s.to_us IS NULL OR s.to_us > $1) \
             AND (p.to_us IS NULL OR p.to_us > $1) AND s.from_us < $2 AND p.from_us < $2), \
             y AS (SELECT manager_id, customer_id, \
             CASE WHEN a < $1 THEN 0 ELSE {fd} END AS fd, \
             CASE WHEN b IS NULL OR b >= $2 THEN {last} ELSE {ld} END AS ld, \
             count(*) OVER (PARTITION BY manager_id, customer_id) AS spans \
             FROM x WHERE b IS NULL OR b > a) \
             SELECT y.manager_id, CASE WHEN y.spans > 1 OR won.customer_id IS NOT NULL \
             THEN y.customer_id END, y.fd, y.ld, count(*) \
             FROM y LEFT JOIN won ON won.customer_id = y.customer_id GROUP BY 1, 2, 3, 4",
            last = self.bucket_of.len() - 1,
            fd = self.days.of("a"),
            ld = self.days.of("(b - 1)"),
        )
    }

    /// Customers won in the range, and by whom (binds: start, end).
    fn wins_sql(&self) -> String {
        format!(
            "SELECT owner_id, customer_id, {} FROM rm_stage_transitions \
             WHERE to_stage = 'customer' AND owner_id IS NOT NULL AND at_us >= $1 AND at_us < $2",
            self.days.of("at_us")
        )
    }
}

/// The key a manager's figures count under: the manager, or its team or region.
struct Keys {
    level: Level,
    /// manager → (team, region)
    managers: HashMap<String, (String, String)>,
}

impl Keys {
    fn of<'a>(&'a self, manager: &'a str) -> &'a str {
        let m = self.managers.get(manager);
        match self.level {
            Level::Manager => manager,
            Level::Team => m.map_or("unknown", |m| &m.0),
            Level::Region => m.map_or("unknown", |m| &m.1),
        }
    }
}

/// The answers' figures, per bucket and key, as they are added up.
pub(super) struct Books<'r> {
    pub range: &'r Range<'r>,
    keys: Keys,
    acc: Vec<BTreeMap<String, Tally>>,
}

impl<'r> Books<'r> {
    /// No figures yet for the buckets of `range`, counted under `level`'s keys.
    pub fn new(range: &'r Range<'r>, level: Level, managers: Vec<ManagerRow>) -> Self {
        let managers = (managers.into_iter())
            .map(|m| (m.manager_id, (m.team, m.region)))
            .collect();
        Books {
            acc: range.spans.iter().map(|_| BTreeMap::new()).collect(),
            range,
            keys: Keys { level, managers },
        }
    }

    /// The figures of `manager`'s key in bucket `k`.
    pub fn at(&mut self, k: usize, manager: &str) -> &mut Tally {
        let (key, acc) = (self.keys.of(manager), &mut self.acc[k]);
        // The key is copied once, when it first counts in the bucket.
        if !acc.contains_key(key) {
            acc.insert(key.to_string(), Tally::default());
        }
        acc.get_mut(key).expect("inserted above")
    }

    /// The figures of `manager`'s key in the bucket holding `day`.
    pub fn on(&mut self, day: i64, manager: &str) -> &mut Tally {
        self.at(self.range.bucket_of[day as usize], manager)
    }

    /// Snapshots: ownership periods and contact coverage as deltas per manager and day,
    /// summed up to the last day of each bucket.
    fn snapshots(&mut self, deltas_rows: Vec<Agg>, cover_rows: Vec<Agg>) {
        let mut deltas: Deltas = HashMap::new();
        for r in deltas_rows {
            let d = deltas.entry(r.t(0)).or_default().entry(r.n(0)).or_default();
            for (i, slot) in d.iter_mut().take(5).enumerate() {
                *slot += r.n(1 + i);
            }
        }
        for r in cover_rows {
            deltas.entry(r.t(0)).or_default().entry(r.n(0)).or_default()[5] += r.n(1);
        }
        let ends: Vec<i64> = (self.range.spans.iter())
            .map(|(_, e)| self.range.days.index(e - 1))
            .collect();
        for (manager, by_day) in &deltas {
            let mut sum = [0i64; 6];
            let mut by_day = by_day.iter().peekable();
            for (k, last_day) in ends.iter().enumerate() {
                while let Some((_, d)) = by_day.next_if(|(day, _)| *day <= last_day) {
                    for (s, d) in sum.iter_mut().zip(d) {
                        *s += d;
                    }
                }
                if sum[0] > 0 {
                    let a = self.at(k, manager);
                    a.portfolio += sum[0];
                    for (t, s) in a.tiers.iter_mut().zip(&sum[1..4]) {
                        *t += s;
                    }
                    a.value += sum[4];
                    a.covered += sum[5];
                }
            }
        }
    }

    /// Overdue follow-ups, in the bucket running now.
    fn overdue(&mut self, rows: Vec<Agg>) {
        if let Some(k) = self.range.current {
            for r in rows {
                self.at(k, &r.t(0)).overdue += r.n(0);
            }
        }
    }

    /// Flows per manager and day: (manager, source, kind, day, n, x, y).
    fn flows(&mut self, rows: Vec<Agg>) {
        for r in rows {
            let (n, x, y) = (r.n(1), r.n(2), r.n(3));
            let a = self.on(r.n(0), &r.t(0));
            match (r.t(1).as_str(), r.t(2).as_str()) {
                ("lost", _) => a.lost += n,
                ("contacts", _) => a.contacts += n,
                ("moves", _) => {
                    a.won += x;
                    a.reactivated += y;
                }
                ("pool", "warning") => a.pool_warnings += n,
                ("pool", _) => a.returned += n,
                ("sla", "warning") => a.sla_warnings += n,
                ("sla", "breach") => a.sla_breaches += n,
                ("sla", _) => a.automatic_escalations += x,
                ("referred", _) => a.referrals_made += n,
                _ => a.referrals_converted += n,
            }
        }
    }

    /// Complaints logged in the range, one by one.
    fn complaints(&mut self, rows: Vec<Agg>) {
        for r in rows {
            let a = self.on(r.n(0), &r.t(0));
            a.complaints += 1;
            a.first_response.extend(r.num[1]);
            a.resolution.extend(r.num[2]);
            a.breached += r.n(3);
            a.resolved += r.n(4);
            a.reopened += r.n(5);
            if let Some(s) = r.num[6] {
                a.satisfaction.0 += s;
                a.satisfaction.1 += 1;
            }
        }
    }

    /// Leads owned: the days of the range in which a manager owned a customer in its
    /// `lead` stage (first day, last day); grouped, except for a pair with several
    /// spans (it counts once per bucket) or a customer won in the range. Converted: won
    /// within a bucket by a manager who owned it as a lead in it.
    fn leads(&mut self, lead_rows: Vec<Agg>, win_rows: Vec<Agg>) {
        let bucket_of = &self.range.bucket_of;
        let mut pairs: HashMap<(String, String), BTreeSet<usize>> = HashMap::new();
        for r in lead_rows {
            let (first, last) = (bucket_of[r.n(0) as usize], bucket_of[r.n(1) as usize]);
            match &r.text[1] {
                None => {
                    for k in first..=last {
                        self.at(k, &r.t(0)).leads += r.n(2);
                    }
                }
                Some(c) => pairs
                    .entry((r.t(0), c.clone()))
                    .or_default()
                    .extend(first..=last),
            }
        }
        for ((manager, _), spans) in &pairs {
            for k in spans {
                self.at(*k, manager).leads += 1;
            }
        }
        let mut converted: HashSet<(usize, String, String)> = HashSet::new();
        for r in win_rows {
            let k = self.range.bucket_of[r.n(0) as usize];
            let pair = (r.t(0), r.t(1));
            if pairs.get(&pair).is_some_and(|spans| spans.contains(&k)) {
                converted.insert((k, pair.0, pair.1));
            }
        }
        for (k, manager, _) in converted {
            self.at(k, &manager).converted += 1;
        }
    }

    /// The rows, bucket by bucket.
    pub fn rows(self) -> Vec<KpiRow> {
        let (cal, current) = (self.range.days.cal, self.range.current);
        let mut out = Vec::new();
        for (k, (span, keys)) in self.range.spans.iter().zip(self.acc).enumerate() {
            let period = Period::new(cal, *span, current == Some(k));
            for (key, tally) in keys {
                out.push(tally.row(key, &period));
            }
        }
        out
    }
}

impl ReadStore {
    /// KPIs per manager, team or region for each bucket of `cal` in `[from_us, to_us)`;
    /// `now_us` caps the snapshots of the running bucket. Equal to [`crate::kpi::kpis`]:
    /// from the KPI ledger when it counts days in `cal`'s zone, else from the facts.
    pub async fn kpis(
        &self,
        level: Level,
        calendar: (&Calendar, Granularity),
        from_us: i64,
        to_us: i64,
        now_us: i64,
    ) -> Result<Vec<KpiRow>, ReadError> {
        if self.ledger_answers(calendar.0).await? {
            self.kpis_kept(level, calendar, from_us, to_us, now_us)
                .await
        } else {
            self.kpis_from_facts(level, calendar, from_us, to_us, now_us)
                .await
        }
    }

    /// [`ReadStore::kpis`] grouped from the facts, in any zone.
    pub async fn kpis_from_facts(
        &self,
        level: Level,
        calendar: (&Calendar, Granularity),
        from_us: i64,
        to_us: i64,
        now_us: i64,
    ) -> Result<Vec<KpiRow>, ReadError> {
        let Some(range) = Range::new(calendar, from_us, to_us, now_us) else {
            return Ok(Vec::new());
        };
        let (d0, limit) = (range.days.start, range.limit);
        let lo = range.first_snapshot.saturating_sub(COVERAGE_WINDOW_US);
        let overdue = async {
            match range.current {
                Some(_) => self.aggregate(OVERDUE, 1, &[now_us]).await,
                None => Ok(Vec::new()),
            }
        };
        let (deltas_sql, cover_sql, flows_sql) =
            (range.deltas_sql(), range.cover_sql(), range.flows_sql());
        let (complaints_sql, leads_sql, wins_sql) =
            (range.complaints_sql(), range.leads_sql(), range.wins_sql());
        // Every question at once: they are independent, and each is a few scans.
        let (within, upto, cover) = (range.bounds(), [d0, limit], [d0, limit, lo]);
        let (managers, deltas, cover, overdue, flows, complaints, leads, wins) = futures::try_join!(
            self.managers(),
            self.aggregate(&deltas_sql, 1, &upto),
            self.aggregate(&cover_sql, 1, &cover),
            overdue,
            self.aggregate(&flows_sql, 3, &within),
            self.aggregate(&complaints_sql, 1, &within),
            self.aggregate(&leads_sql, 2, &within),
            self.aggregate(&wins_sql, 2, &within),
        )?;
        let mut books = Books::new(&range, level, managers);
        books.snapshots(deltas, cover);
        books.overdue(overdue);
        books.flows(flows);
        books.complaints(complaints);
        books.leads(leads, wins);
        Ok(books.rows())
    }
}

//! Manager KPIs from the KPI ledger ([`crate::ledger`]): a question reads, per manager,
//! the sums of the months before its range and the rows of its days, the spans that
//! start or end on the day holding "now", and the lead gaps, wins and complaint durations
//! of the range.
//! Equal to [`crate::kpi::kpis`] row for row (tests, both backends).

use std::collections::{BTreeMap, HashMap, HashSet};

use super::kpi::{Books, Range};
use super::Agg;
use crate::calendar::{Calendar, Granularity};
use crate::change::Value;
use crate::kpi::{KpiRow, Level, Tally};
use crate::ledger::{first_day_of_month, flow, month_of_day, snap, FLOWS, SNAPSHOT};
use crate::sql::Statement;
use crate::store::{ReadError, ReadStore};

const LEDGER: &str = "SELECT complete, time_zone FROM rm_kept WHERE read_model = 'kpis'";

/// Per manager: the snapshot deltas of the months before `$1`, and of the days
/// `[$2, $3)`.
fn base_sql() -> String {
    let cols = SNAPSHOT.join(", ");
    let sums: Vec<String> = SNAPSHOT
        .iter()
        .map(|c| format!("CAST(sum({c}) AS BIGINT)"))
        .collect();
    format!(
        "SELECT manager_id, {} FROM (SELECT manager_id, {cols} FROM rm_kpi_months \
         WHERE month < $1 UNION ALL SELECT manager_id, {cols} FROM rm_kpi_days \
         WHERE day >= $2 AND day < $3) x GROUP BY manager_id",
        sums.join(", ")
    )
}

/// The rows of the days `[$1, $2]`, their stripes summed: manager, day, [`SNAPSHOT`],
/// [`FLOWS`].
fn days_sql() -> String {
    let sums: Vec<String> = SNAPSHOT
        .iter()
        .chain(FLOWS.iter())
        .map(|c| format!("CAST(sum({c}) AS BIGINT)"))
        .collect();
    format!(
        "SELECT manager_id, day, {} FROM rm_kpi_days WHERE day >= $1 AND day <= $2 \
         GROUP BY manager_id, day",
        sums.join(", ")
    )
}

/// Gaps between lead stretches whose first day is in `[$1, $2]` (a row per stripe: they
/// are summed per bucket).
const GAPS: &str = "SELECT manager_id, first_day, last_day, n FROM rm_kpi_gaps \
     WHERE first_day >= $1 AND first_day <= $2 AND n <> 0";

/// Wins in `[$1, $2)` with the winner's lead stretches around them.
const WINS: &str = "SELECT manager_id, customer_id, at_us, lead_until_us, lead_next_us \
     FROM rm_kpi_wins WHERE at_us >= $1 AND at_us < $2";

/// The durations of the complaints logged in `[$1, $2)` (with an owner and one at
/// least), with the local day each was logged: their medians and 90th percentiles need
/// the values; their counts are in `rm_kpi_days`.
const DURATIONS: &str = "SELECT manager_id, day, first_response_s, resolution_s \
     FROM rm_kpi_complaints WHERE logged_at_us >= $1 AND logged_at_us < $2 \
     AND manager_id IS NOT NULL AND (first_response_s IS NOT NULL OR resolution_s IS NOT NULL)";

/// Per manager, the snapshot deltas of the spans starting or ending in `[$1, $2]`:
/// portfolio, high, mid, low, value, covered, overdue.
const WITHIN_DAY: &str = "WITH s AS (SELECT manager_id, kind, value_tier, value_minor, 1 AS sign \
     FROM rm_kpi_spans WHERE from_us >= $1 AND from_us <= $2 \
     UNION ALL SELECT manager_id, kind, value_tier, value_minor, -1 FROM rm_kpi_spans \
     WHERE to_us >= $1 AND to_us <= $2) \
     SELECT manager_id, \
     CAST(sum(CASE WHEN kind = 'owned' THEN sign ELSE 0 END) AS BIGINT), \
     CAST(sum(CASE WHEN kind = 'owned' AND value_tier = 'high' THEN sign ELSE 0 END) AS BIGINT), \
     CAST(sum(CASE WHEN kind = 'owned' AND value_tier = 'mid' THEN sign ELSE 0 END) AS BIGINT), \
     CAST(sum(CASE WHEN kind = 'owned' AND value_tier <> 'high' AND value_tier <> 'mid' \
     THEN sign ELSE 0 END) AS BIGINT), \
     CAST(sum(value_minor * sign) AS BIGINT), \
     CAST(sum(CASE WHEN kind = 'covered' THEN sign ELSE 0 END) AS BIGINT), \
     CAST(sum(CASE WHEN kind = 'overdue' THEN sign ELSE 0 END) AS BIGINT) \
     FROM s GROUP BY manager_id";

/// One manager's ledger over the range: the sums before its first fetched day, and the
/// fetched days with running sums of the snapshot deltas.
#[derive(Default)]
struct Account {
    base: [i64; 9],
    /// day → (running snapshot sums through the day, the day's flows)
    days: BTreeMap<i64, ([i64; 9], [i64; 19])>,
}

impl Account {
    /// The snapshot sums through day `d`.
    fn through(&self, d: i64) -> [i64; 9] {
        self.days
            .range(..=d)
            .next_back()
            .map_or(self.base, |(_, (sums, _))| *sums)
    }

    /// The flows of the days `[first, last]`.
    fn flows(&self, first: i64, last: i64) -> [i64; 19] {
        let mut out = [0i64; 19];
        for (_, (_, f)) in self.days.range(first..=last) {
            for (o, v) in out.iter_mut().zip(f) {
                *o += v;
            }
        }
        out
    }
}

/// Whether any flow of `f` makes its manager a row of the bucket (as a fact does in
/// the reference: a stage move counts even when it is neither a win nor a reactivation).
fn touches(f: &[i64; 19]) -> bool {
    // Counts of some of another's: a win is a stage move, and so on.
    let part = |i: usize| {
        [flow::WON, flow::REACTIVATED, flow::AUTOMATIC_ESCALATIONS].contains(&i)
            || i > flow::COMPLAINTS
    };
    f.iter().enumerate().any(|(i, v)| *v != 0 && !part(i))
}

fn credit_flows(a: &mut Tally, f: &[i64; 19]) {
    a.contacts += f[flow::CONTACTS];
    a.won += f[flow::WON];
    a.reactivated += f[flow::REACTIVATED];
    a.lost += f[flow::LOST];
    a.returned += f[flow::RETURNED];
    a.pool_warnings += f[flow::POOL_WARNINGS];
    a.sla_warnings += f[flow::SLA_WARNINGS];
    a.sla_breaches += f[flow::SLA_BREACHES];
    a.automatic_escalations += f[flow::AUTOMATIC_ESCALATIONS];
    a.referrals_made += f[flow::REFERRALS_MADE];
    a.referrals_converted += f[flow::REFERRALS_CONVERTED];
    let k = &f[flow::COMPLAINTS..];
    a.complaints += k[0];
    a.breached += k[1];
    a.resolved += k[2];
    a.reopened += k[3];
    a.satisfaction.0 += k[4];
    a.satisfaction.1 += k[5];
}

/// Per manager: the sums of the months and days before the range, and each fetched
/// day with the running sums through it.
fn accounts<'a>(base: &'a [Agg], days: &'a [Agg]) -> HashMap<&'a str, Account> {
    let mut accounts: HashMap<&str, Account> = HashMap::new();
    for r in base {
        let acc = accounts.entry(r.s(0)).or_default();
        acc.base = std::array::from_fn(|i| r.n(i));
    }
    let mut rows: Vec<&Agg> = days.iter().collect();
    rows.sort_unstable_by_key(|r| r.n(0));
    for r in rows {
        let acc = accounts.entry(r.s(0)).or_default();
        let mut sums = acc.days.values().next_back().map_or(acc.base, |d| d.0);
        for (i, s) in sums.iter_mut().enumerate() {
            *s += r.n(1 + i);
        }
        acc.days
            .insert(r.n(0), (sums, std::array::from_fn(|i| r.n(10 + i))));
    }
    accounts
}

/// What the ledger's questions answered.
struct Answers {
    base: Vec<Agg>,
    days: Vec<Agg>,
    within_day: Vec<Agg>,
    gaps: Vec<Agg>,
    wins: Vec<Agg>,
}

impl Books<'_> {
    /// The absolute local days `[first, last]` of bucket `k`.
    fn bucket_days(&self, k: usize) -> (i64, i64) {
        let (s, e) = self.range.spans[k];
        let days = &self.range.days;
        (days.cal.day_number(s), days.cal.day_number(e - 1))
    }

    /// Everything the ledger answers: flows, snapshots, leads owned and converted.
    fn ledger(&mut self, a: Answers, now_us: i64) {
        let accounts = accounts(&a.base, &a.days);
        let within: HashMap<&str, [i64; 7]> = (a.within_day.iter())
            .map(|r| (r.s(0), std::array::from_fn(|i| r.n(i))))
            .collect();
        let cal = self.range.days.cal;
        let today = cal.day_number(now_us);
        let buckets: Vec<(i64, i64)> = (0..self.range.spans.len())
            .map(|k| self.bucket_days(k))
            .collect();
        // Lead gaps inside one bucket: that bucket holds both stretches.
        let mut gaps: HashMap<(usize, &str), i64> = HashMap::new();
        for r in &a.gaps {
            let (first, last) = (r.n(0), r.n(1));
            let k = buckets.iter().position(|(f, l)| first >= *f && last <= *l);
            if let Some(k) = k {
                *gaps.entry((k, r.s(0))).or_default() += r.n(2);
            }
        }
        for (m, acc) in &accounts {
            for (k, (first, last)) in buckets.iter().enumerate() {
                let flows = acc.flows(*first, *last);
                let through_last = acc.through(*last);
                let snapshot: [i64; 7] = if self.range.spans[k].1 <= now_us {
                    std::array::from_fn(|i| through_last[i])
                } else {
                    let (before, w) = (acc.through(today - 1), within.get(m));
                    std::array::from_fn(|i| before[i] + w.map_or(0, |w| w[i]))
                };
                let leads = through_last[snap::LEAD_STARTS]
                    - acc.through(first - 1)[snap::LEAD_ENDS]
                    - gaps.get(&(k, *m)).copied().unwrap_or(0);
                let owned = snapshot[snap::PORTFOLIO] > 0;
                let overdue = self.range.current == Some(k) && snapshot[snap::OVERDUE] != 0;
                let touched = touches(&flows);
                if !(touched || owned || overdue || leads > 0) {
                    continue;
                }
                let t = self.at(k, m);
                if touched {
                    credit_flows(t, &flows);
                }
                if owned {
                    t.portfolio += snapshot[snap::PORTFOLIO];
                    for (i, tier) in t.tiers.iter_mut().enumerate() {
                        *tier += snapshot[snap::TIERS + i];
                    }
                    t.value += snapshot[snap::VALUE];
                    t.covered += snapshot[snap::COVERED];
                }
                if overdue {
                    t.overdue += snapshot[snap::OVERDUE];
                }
                t.leads += leads.max(0);
            }
        }
        self.converted(&a.wins, &buckets);
    }

    /// Converted: won within a bucket by a manager who owned it as a lead in it (a lead
    /// stretch of the pair ends in the bucket or later, or starts in it).
    fn converted(&mut self, wins: &[Agg], buckets: &[(i64, i64)]) {
        let cal = self.range.days.cal;
        let mut converted: HashSet<(usize, String, String)> = HashSet::new();
        for r in wins {
            let won = cal.day_number(r.n(0));
            let Some(k) = buckets.iter().position(|(f, l)| won >= *f && won <= *l) else {
                continue;
            };
            let (first, last) = buckets[k];
            let before = r.num[1].is_some_and(|u| u == i64::MAX || cal.day_number(u) >= first);
            let after = r.num[2].is_some_and(|n| cal.day_number(n) <= last);
            if before || after {
                converted.insert((k, r.t(0), r.t(1)));
            }
        }
        for (k, manager, _) in converted {
            self.at(k, &manager).converted += 1;
        }
    }

    /// The durations of the complaints logged in the range, to their day's bucket.
    fn durations(&mut self, rows: Vec<Agg>) {
        let first = self.range.days.first;
        for r in &rows {
            let a = self.on(r.n(0) - first, r.s(0));
            a.first_response.extend(r.num[1]);
            a.resolution.extend(r.num[2]);
        }
    }
}

/// Parts a range of days is read in at once.
const PARTS: i64 = 4;

impl ReadStore {
    /// The ledger's rows of the days `[from, last]`, read in up to [`PARTS`] ranges at
    /// once, each on its own task and connection: decoding thirty numbers per manager
    /// and day is most of a month's question, and the cores share it.
    async fn days(&self, from: i64, last: i64) -> Result<Vec<Agg>, ReadError> {
        let n = last - from + 1;
        let parts = PARTS.clamp(1, n.max(1));
        let sql = std::sync::Arc::new(days_sql());
        let reads: Vec<_> = (0..parts)
            .map(|i| {
                let (lo, hi) = (from + n * i / parts, from + n * (i + 1) / parts - 1);
                let (store, sql) = (self.clone(), sql.clone());
                tokio::spawn(async move { store.aggregate(&sql, 1, &[lo, hi]).await })
            })
            .collect();
        let mut rows = Vec::new();
        for r in reads {
            let part = r
                .await
                .map_err(|e| ReadError::Config(format!("reading the ledger's days: {e}")))?;
            rows.extend(part?);
        }
        Ok(rows)
    }

    /// Whether the KPI ledger is complete and counts the days of `cal`'s zone.
    pub async fn ledger_answers(&self, cal: &Calendar) -> Result<bool, ReadError> {
        let s = Statement {
            sql: LEDGER.into(),
            args: Vec::new(),
            one_row: None,
        };
        let rows = self.fetch(&s, &[true, false]).await?;
        Ok(rows
            .first()
            .is_some_and(|r| r[0] == Value::Int(1) && r[1] == Value::Text(cal.to_string())))
    }

    /// [`ReadStore::kpis`] from the KPI ledger (which must count `calendar`'s days).
    pub async fn kpis_kept(
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
        let cal = calendar.0;
        let first = range.days.first;
        let last = first + range.bucket_of.len() as i64 - 1;
        let today = cal.day_number(now_us);
        let from_day = first.min(today);
        let month = month_of_day(from_day);
        let today_start = cal.start_of(cal.date(now_us));
        let within = range.bounds();
        let base_sql = base_sql();
        let month_days = [month, first_day_of_month(month), from_day];
        let (gap_days, today_span) = ([first, last], [today_start, now_us]);
        let within_day = async {
            match now_us < range.days.end {
                true => self.aggregate(WITHIN_DAY, 1, &today_span).await,
                false => Ok(Vec::new()),
            }
        };
        let (managers, base, days, within_day, gaps, wins, complaints) = futures::try_join!(
            self.managers(),
            self.aggregate(&base_sql, 1, &month_days),
            self.days(from_day, last),
            within_day,
            self.aggregate(GAPS, 1, &gap_days),
            self.aggregate(WINS, 2, &within),
            self.aggregate(DURATIONS, 1, &within),
        )?;
        let mut books = Books::new(&range, level, managers);
        let answers = Answers {
            base,
            days,
            within_day,
            gaps,
            wins,
        };
        books.ledger(answers, now_us);
        books.durations(complaints);
        Ok(books.rows())
    }
}

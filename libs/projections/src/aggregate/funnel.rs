//! The lifecycle funnel in the database; the reference is [`crate::funnel`].

use std::collections::BTreeMap;

use crate::calendar::{Calendar, Granularity};
use crate::facts::{rate, PIPELINE};
use crate::funnel::{Conversion, Slice, StageCount, TimeInStage, TransitionCount};
use crate::store::{ReadError, ReadStore};

/// The slice of the customer in `row.customer_id` at the instant `at` (an SQL
/// expression), and the join it needs. Mirrors `funnel::Slicer`: customer attributes as
/// they are now (`unknown` without a customer row), the team of the ownership period
/// holding the instant (`pool` when none).
fn slice_sql(slice: Slice, row: &str, at: &str) -> (String, String) {
    let attr = |col: &str| {
        (
            format!("COALESCE(sc.{col}, 'unknown')"),
            format!(" LEFT JOIN rm_customers sc ON sc.customer_id = {row}.customer_id"),
        )
    };
    match slice {
        Slice::All => ("'all'".into(), String::new()),
        Slice::Region => attr("region"),
        Slice::FirstTouchChannel => attr("first_touch_channel"),
        Slice::CustomerType => attr("customer_type"),
        Slice::ValueTier => attr("value_tier"),
        Slice::Team => (
            format!(
                "COALESCE((SELECT sp.team FROM rm_ownership_periods sp \
                 WHERE sp.customer_id = {row}.customer_id AND sp.from_us <= {at} \
                 AND (sp.to_us IS NULL OR sp.to_us > {at}) \
                 ORDER BY sp.start_version LIMIT 1), 'pool')"
            ),
            String::new(),
        ),
    }
}

impl ReadStore {
    /// Customers per stage at `at_us` (None: now); see [`crate::funnel::stage_counts`]:
    /// from the kept funnel ([`crate::kept`]) when it is complete, else from the facts.
    pub async fn stage_counts(
        &self,
        at_us: Option<i64>,
        slice: Slice,
    ) -> Result<Vec<StageCount>, ReadError> {
        if self.kept_complete().await? {
            self.stage_counts_kept(at_us, slice).await
        } else {
            self.stage_counts_from_facts(at_us, slice).await
        }
    }

    /// [`ReadStore::stage_counts`] grouped from the stage periods.
    pub async fn stage_counts_from_facts(
        &self,
        at_us: Option<i64>,
        slice: Slice,
    ) -> Result<Vec<StageCount>, ReadError> {
        // Now: the open stays, and the owner's open period (`i64::MAX` in the reference).
        let (cond, at, binds) = match at_us {
            None => ("s.to_us IS NULL", i64::MAX.to_string(), vec![]),
            Some(t) => (
                "s.from_us <= $1 AND (s.to_us IS NULL OR s.to_us > $1)",
                "$1".to_string(),
                vec![t],
            ),
        };
        let (expr, join) = slice_sql(slice, "s", &at);
        let sql = format!(
            "SELECT {expr} AS slice, s.stage, count(*) FROM rm_stage_periods s{join} \
             WHERE {cond} GROUP BY 1, 2"
        );
        let mut out: Vec<StageCount> = self
            .aggregate(&sql, 2, &binds)
            .await?
            .into_iter()
            .map(|r| StageCount {
                slice: r.t(0),
                stage: r.t(1),
                customers: r.n(0),
            })
            .collect();
        out.sort_by(|a, b| (&a.slice, &a.stage).cmp(&(&b.slice, &b.stage)));
        Ok(out)
    }

    /// Moves between stages in `[from_us, to_us)`, per period of `cal`; see
    /// [`crate::funnel::transitions`].
    pub async fn stage_transitions(
        &self,
        from_us: i64,
        to_us: i64,
        (cal, g): (&Calendar, Granularity),
        slice: Slice,
    ) -> Result<Vec<TransitionCount>, ReadError> {
        let (expr, join) = slice_sql(slice, "t", "t.at_us");
        // Grouped by local day; the days are folded into periods below.
        let day = cal.day_sql("t.at_us", from_us, to_us);
        let sql = format!(
            "SELECT {expr} AS slice, t.from_stage, t.to_stage, {day} AS day, \
             count(*), CAST(sum(t.reactivated) AS BIGINT) FROM rm_stage_transitions t{join} \
             WHERE t.at_us >= $1 AND t.at_us < $2 GROUP BY 1, 2, 3, 4"
        );
        type Key = (i64, String, Option<String>, String);
        let mut counts: BTreeMap<Key, (i64, i64)> = BTreeMap::new();
        for r in self.aggregate(&sql, 3, &[from_us, to_us]).await? {
            let key = (
                cal.bucket_start(cal.day_start(r.n(0)), g),
                r.t(0),
                r.text[1].clone(),
                r.t(2),
            );
            let e = counts.entry(key).or_default();
            e.0 += r.n(1);
            e.1 += r.n(2);
        }
        Ok(counts
            .into_iter()
            .map(
                |((period_start_us, slice, from_stage, to_stage), (n, re))| TransitionCount {
                    period_start_us,
                    period_start: cal.rfc3339(period_start_us),
                    slice,
                    from_stage,
                    to_stage,
                    transitions: n,
                    reactivations: re,
                },
            )
            .collect())
    }

    /// Next-step and cumulative conversion; see [`crate::funnel::conversion`].
    pub async fn conversion(&self, slice: Slice) -> Result<Vec<Conversion>, ReadError> {
        // p: each customer's first entry into each pipeline stage (s0 = lead, …).
        let firsts: Vec<String> = PIPELINE
            .iter()
            .enumerate()
            .map(|(i, s)| format!("max(CASE WHEN to_stage = '{s}' THEN at END) AS s{i}"))
            .collect();
        const N: usize = PIPELINE.len();
        let count_if =
            |cond: &str| format!("CAST(sum(CASE WHEN {cond} THEN 1 ELSE 0 END) AS BIGINT)");
        // Entered stage i, and later a further pipeline stage.
        let moved_on = |i: usize| {
            (i + 1..N)
                .map(|j| format!("p.s{j} >= p.s{i}"))
                .chain(std::iter::once("1 = 0".to_string()))
                .collect::<Vec<_>>()
                .join(" OR ")
        };
        // Of the lead cohort, how many reached each later stage.
        let reached: Vec<String> = (1..N)
            .map(|j| count_if(&format!("p.s{j} >= p.s0")))
            .collect();
        // A customer's attributes do not depend on the instant: one pass over `p`, each
        // row carrying every stage's (entered, reached next) and the cohort's reach. Its
        // team does: then one query per stage (sliced when the customer entered it) and
        // one for the cohort (sliced when it entered `lead`).
        let one_pass = slice != Slice::Team;
        let select = if one_pass {
            let (expr, join) = slice_sql(slice, "p", "");
            let cols: Vec<String> = (0..N)
                .flat_map(|i| [format!("count(p.s{i})"), count_if(&moved_on(i))])
                .collect();
            let any: Vec<String> = (0..N).map(|i| format!("p.s{i}")).collect();
            format!(
                "SELECT {expr} AS slice, {}, {} FROM p{join} \
                 WHERE COALESCE({}) IS NOT NULL GROUP BY 1",
                cols.join(", "),
                reached.join(", "),
                any.join(", ")
            )
        } else {
            let zero = "CAST(0 AS BIGINT)";
            let mut parts: Vec<String> = (0..N)
                .map(|i| {
                    let (expr, join) = slice_sql(slice, "p", &format!("p.s{i}"));
                    format!(
                        "SELECT {expr} AS slice, CAST({i} AS BIGINT) AS kind, count(*) AS a, \
                         {} AS b, {zero} AS c, {zero} AS d, {zero} AS e FROM p{join} \
                         WHERE p.s{i} IS NOT NULL GROUP BY 1",
                        count_if(&moved_on(i))
                    )
                })
                .collect();
            let (expr, join) = slice_sql(slice, "p", "p.s0");
            parts.push(format!(
                "SELECT {expr} AS slice, CAST({N} AS BIGINT) AS kind, count(*), {} FROM p{join} \
                 WHERE p.s0 IS NOT NULL GROUP BY 1",
                reached.join(", ")
            ));
            parts.join(" UNION ALL ")
        };
        let sql = format!(
            "WITH f AS (SELECT customer_id, to_stage, min(at_us) AS at FROM rm_stage_transitions \
             GROUP BY customer_id, to_stage), \
             p AS (SELECT customer_id, {} FROM f GROUP BY customer_id) {select}",
            firsts.join(", "),
        );
        // slice → per stage (entered, reached next); slice → (cohort, reached per stage)
        let mut entered: BTreeMap<String, [(i64, i64); N]> = BTreeMap::new();
        let mut cohort: BTreeMap<String, [i64; N]> = BTreeMap::new();
        for r in self.aggregate(&sql, 1, &[]).await? {
            if one_pass {
                let e = entered.entry(r.t(0)).or_default();
                for (i, slot) in e.iter_mut().enumerate() {
                    *slot = (r.n(2 * i), r.n(2 * i + 1));
                }
                let c = cohort.entry(r.t(0)).or_default();
                c[0] = r.n(0);
                for (j, n) in c.iter_mut().enumerate().skip(1) {
                    *n = r.n(2 * N + j - 1);
                }
                continue;
            }
            let kind = r.n(0) as usize;
            if kind < N {
                entered.entry(r.t(0)).or_default()[kind] = (r.n(1), r.n(2));
            } else {
                let c = cohort.entry(r.t(0)).or_default();
                c[0] = r.n(1);
                for (j, n) in c.iter_mut().enumerate().skip(1) {
                    *n = r.n(1 + j);
                }
            }
        }
        let mut out = Vec::new();
        for (s, stages) in entered {
            let reach = cohort.get(&s).copied().unwrap_or_default();
            for (i, stage) in PIPELINE.iter().enumerate() {
                let (n, next) = stages[i];
                out.push(Conversion {
                    slice: s.clone(),
                    stage: stage.to_string(),
                    entered: n,
                    reached_next: next,
                    next_step_rate: if i == N - 1 {
                        None
                    } else {
                        rate(next as usize, n as usize)
                    },
                    cumulative_rate: rate(reach[i] as usize, reach[0] as usize),
                });
            }
        }
        Ok(out)
    }

    /// Median time in each stage over completed stays; see
    /// [`crate::funnel::time_in_stage`].
    pub async fn time_in_stage(&self, slice: Slice) -> Result<Vec<TimeInStage>, ReadError> {
        let (expr, join) = slice_sql(slice, "x", "x.to_us");
        // The nearest-rank median is the ((n + 1) / 2)-th smallest.
        let sql = format!(
            "WITH s AS (SELECT {expr} AS slice, x.stage AS stage, \
             (x.to_us - x.from_us) / 1000000 AS secs FROM rm_stage_periods x{join} \
             WHERE x.to_us IS NOT NULL), \
             r AS (SELECT slice, stage, secs, \
             row_number() OVER (PARTITION BY slice, stage ORDER BY secs) AS rn, \
             count(*) OVER (PARTITION BY slice, stage) AS n FROM s) \
             SELECT slice, stage, n, secs FROM r WHERE rn = (n + 1) / 2"
        );
        let mut out: Vec<TimeInStage> = self
            .aggregate(&sql, 2, &[])
            .await?
            .into_iter()
            .map(|r| TimeInStage {
                slice: r.t(0),
                stage: r.t(1),
                completed_stays: r.n(0),
                median_seconds: r.num[1],
            })
            .collect();
        out.sort_by(|a, b| (&a.slice, &a.stage).cmp(&(&b.slice, &b.stage)));
        Ok(out)
    }
}

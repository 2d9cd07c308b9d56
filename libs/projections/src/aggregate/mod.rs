//! The funnel and the KPIs as the query service answers them: aggregated by the database,
//! so a request reads groups, not the book (`funnel.rs` and `kpi.rs` loaded every fact
//! of every customer per request: 9–12 s and 1.8 GiB at a million customers).
//!
//! Every answer here equals the reference computation in [`crate::funnel`] and
//! [`crate::kpi`] over [`crate::facts::Facts`], row for row: the definitions live there
//! (and in docs/read-models.md), and the tests run both on the same read models, on
//! PostgreSQL and SQLite. The SQL is portable between the two backends (window
//! functions, `CASE`, correlated subqueries); instants are bound, never spliced, and the
//! only text put into a statement comes from the enums below.
//!
//! Calendar buckets (weeks, months) are not SQL's business: the database groups by local
//! day of the request's time zone (the instant shifted by the offset in force, from
//! [`crate::calendar::Calendar::day_sql`]), and the days are folded into buckets here,
//! which is exact because every bucket boundary is a local midnight.

use sqlx::{ColumnIndex, Decode, Row, Type};

use crate::store::{ReadError, ReadStore};

mod funnel;
mod kpi;
mod kpi_kept;

/// How an aggregate's transaction starts on PostgreSQL (read only; hash and merge joins).
const AGGREGATE_BEGIN: &str = "BEGIN READ ONLY; SET LOCAL enable_nestloop = off";

/// One aggregate row: its first columns are text (possibly NULL), the rest integers.
#[derive(Debug)]
pub(crate) struct Agg {
    pub text: Vec<Option<String>>,
    pub num: Vec<Option<i64>>,
}

impl Agg {
    fn from_row<'r, R: Row>(r: &'r R, texts: usize) -> Result<Self, sqlx::Error>
    where
        usize: ColumnIndex<R>,
        Option<String>: Decode<'r, R::Database> + Type<R::Database>,
        Option<i64>: Decode<'r, R::Database> + Type<R::Database>,
    {
        // The queries cast every number to BIGINT: the type check per value (a tenth of
        // reading a KPI ledger's answer) is skipped.
        Ok(Self {
            text: (0..texts)
                .map(|i| r.try_get_unchecked(i))
                .collect::<Result<_, _>>()?,
            num: (texts..r.len())
                .map(|i| r.try_get_unchecked(i))
                .collect::<Result<_, _>>()?,
        })
    }

    /// Text column `i`, `""` for NULL.
    pub fn t(&self, i: usize) -> String {
        self.text[i].clone().unwrap_or_default()
    }

    /// Text column `i`, borrowed, `""` for NULL.
    pub fn s(&self, i: usize) -> &str {
        self.text[i].as_deref().unwrap_or_default()
    }

    /// Integer column `i` (after the text columns), 0 for NULL.
    pub fn n(&self, i: usize) -> i64 {
        self.num[i].unwrap_or(0)
    }
}

impl ReadStore {
    /// Run an aggregate query whose first `texts` columns are text and the rest integers;
    /// `$1`, `$2`, … are the `binds`.
    pub(crate) async fn aggregate(
        &self,
        sql: &str,
        texts: usize,
        binds: &[i64],
    ) -> Result<Vec<Agg>, ReadError> {
        Ok(match self {
            ReadStore::Postgres(p) => {
                // These queries read large parts of the tables: a nested loop is never
                // the right join, and the planner picks one when statistics lag behind
                // fresh rows (a coverage query took 19 s instead of 1 s at a million
                // customers before the tables were analysed).
                let mut tx = p.begin_with(AGGREGATE_BEGIN).await?;
                let mut q = sqlx::query(sql);
                for b in binds {
                    q = q.bind(*b);
                }
                let rows = q
                    .fetch_all(&mut *tx)
                    .await?
                    .iter()
                    .map(|r| Agg::from_row(r, texts))
                    .collect::<Result<_, _>>()?;
                tx.commit().await?;
                rows
            }
            ReadStore::Sqlite(p) => {
                let mut q = sqlx::query(sql);
                for b in binds {
                    q = q.bind(*b);
                }
                q.fetch_all(p)
                    .await?
                    .iter()
                    .map(|r| Agg::from_row(r, texts))
                    .collect::<Result<_, _>>()?
            }
        })
    }
}

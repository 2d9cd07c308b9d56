//! Manager KPIs: the table the API's `/v1/kpis` answers (per manager, team or region;
//! per local day, week or month of the service's calendar), sorted by any column on the
//! server, a trend chart of one KPI, every figure's definition one click away, and the
//! same rows as CSV.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{Days, NaiveDate, Utc};
use crm_projections::calendar::{Calendar, Granularity};
use crm_projections::kpi::{KpiRow, Level};
use serde::Deserialize;

use super::format::{money, percent};
use super::funnel::script_safe;
use super::i18n::{Lang, Msg};
use super::slow::Earlier;
use super::view::{Chrome, Nav, Viewer};
use crate::caller::AGGREGATE_READERS;
use crate::problem::Problem;
use crate::AppState;

/// Series the trend chart draws at most: more would not be readable.
const CHART_SERIES: usize = 8;

/// How a KPI's value reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Count,
    Rate,
    Seconds,
    Money,
    Mean,
}

/// A KPI column: its name in the API's rows (and in `sort`, `kpi`, `#def-…`), its label
/// and its definition (docs/read-models.md, "Manager KPIs").
pub(crate) struct Kpi {
    pub name: &'static str,
    pub label: Msg,
    pub def: Msg,
    pub kind: Kind,
}

const fn kpi(name: &'static str, label: Msg, def: Msg, kind: Kind) -> Kpi {
    Kpi {
        name,
        label,
        def,
        kind,
    }
}

/// Every KPI of a row, in the API's order.
pub(crate) const KPIS: &[Kpi] = &[
    kpi(
        "portfolio",
        Msg::KpiPortfolio,
        Msg::DefPortfolio,
        Kind::Count,
    ),
    kpi("tier_high", Msg::KpiTierHigh, Msg::DefTierHigh, Kind::Count),
    kpi("tier_mid", Msg::KpiTierMid, Msg::DefTierMid, Kind::Count),
    kpi("tier_low", Msg::KpiTierLow, Msg::DefTierLow, Kind::Count),
    kpi(
        "value_under_management_minor",
        Msg::KpiValue,
        Msg::DefValue,
        Kind::Money,
    ),
    kpi(
        "contact_coverage",
        Msg::KpiCoverage,
        Msg::DefCoverage,
        Kind::Rate,
    ),
    kpi(
        "overdue_follow_ups",
        Msg::KpiOverdue,
        Msg::DefOverdue,
        Kind::Count,
    ),
    kpi("contacts", Msg::KpiContacts, Msg::DefContacts, Kind::Count),
    kpi("new_customers_won", Msg::KpiWon, Msg::DefWon, Kind::Count),
    kpi(
        "leads_owned",
        Msg::KpiLeadsOwned,
        Msg::DefLeadsOwned,
        Kind::Count,
    ),
    kpi(
        "leads_converted",
        Msg::KpiLeadsConverted,
        Msg::DefLeadsConverted,
        Kind::Count,
    ),
    kpi(
        "lead_conversion_rate",
        Msg::KpiLeadConversion,
        Msg::DefLeadConversion,
        Kind::Rate,
    ),
    kpi(
        "complaints",
        Msg::KpiComplaints,
        Msg::DefComplaints,
        Kind::Count,
    ),
    kpi(
        "first_response_median_s",
        Msg::KpiFirstP50,
        Msg::DefFirstP50,
        Kind::Seconds,
    ),
    kpi(
        "first_response_p90_s",
        Msg::KpiFirstP90,
        Msg::DefFirstP90,
        Kind::Seconds,
    ),
    kpi(
        "resolution_median_s",
        Msg::KpiResolutionP50,
        Msg::DefResolutionP50,
        Kind::Seconds,
    ),
    kpi(
        "resolution_p90_s",
        Msg::KpiResolutionP90,
        Msg::DefResolutionP90,
        Kind::Seconds,
    ),
    kpi(
        "sla_breach_rate",
        Msg::KpiBreachRate,
        Msg::DefBreachRate,
        Kind::Rate,
    ),
    kpi(
        "reopen_rate",
        Msg::KpiReopenRate,
        Msg::DefReopenRate,
        Kind::Rate,
    ),
    kpi(
        "satisfaction_avg",
        Msg::KpiSatisfaction,
        Msg::DefSatisfaction,
        Kind::Mean,
    ),
    kpi(
        "referrals_made",
        Msg::KpiReferralsMade,
        Msg::DefReferralsMade,
        Kind::Count,
    ),
    kpi(
        "referrals_converted",
        Msg::KpiReferralsConverted,
        Msg::DefReferralsConverted,
        Kind::Count,
    ),
    kpi(
        "reactivated",
        Msg::KpiReactivated,
        Msg::DefReactivated,
        Kind::Count,
    ),
    kpi("lost_to_pool", Msg::KpiLost, Msg::DefLost, Kind::Count),
    kpi(
        "returned_by_pool_rules",
        Msg::KpiReturned,
        Msg::DefReturned,
        Kind::Count,
    ),
    kpi(
        "pool_warnings",
        Msg::KpiPoolWarnings,
        Msg::DefPoolWarnings,
        Kind::Count,
    ),
    kpi(
        "sla_warnings",
        Msg::KpiSlaWarnings,
        Msg::DefSlaWarnings,
        Kind::Count,
    ),
    kpi(
        "sla_breaches",
        Msg::KpiSlaBreaches,
        Msg::DefSlaBreaches,
        Kind::Count,
    ),
    kpi(
        "automatic_escalations",
        Msg::KpiAutoEscalations,
        Msg::DefAutoEscalations,
        Kind::Count,
    ),
];

const LEVELS: [&str; 3] = ["manager", "team", "region"];
const GRANULARITIES: [&str; 3] = ["day", "week", "month"];

#[derive(Deserialize)]
pub(crate) struct KpisQuery {
    level: Option<String>,
    granularity: Option<String>,
    /// Local dates (`2026-11-25`), both included.
    from: Option<String>,
    to: Option<String>,
    sort: Option<String>,
    dir: Option<String>,
    kpi: Option<String>,
    /// Page of the table (from 1), `ROWS_PER_PAGE` rows each.
    page: Option<usize>,
}

/// Rows of the table per page: a month of days for 33 managers; at W2's 1,000 managers
/// a month by day is 31 pages, not one page of 31,000 rows.
const ROWS_PER_PAGE: usize = 1_000;

/// Rows `[start, end)` of page `page` (from 1) of `total`, and the number of pages.
fn page_range(total: usize, page: usize) -> (usize, usize, usize) {
    let pages = total.div_ceil(ROWS_PER_PAGE).max(1);
    let page = page.clamp(1, pages);
    let start = (page - 1) * ROWS_PER_PAGE;
    (start, (start + ROWS_PER_PAGE).min(total), pages)
}

/// The table's pager: rows shown, of how many, and the links either way.
pub(crate) struct Pager {
    pub first_row: usize,
    pub last_row: usize,
    pub total: usize,
    pub prev: Option<String>,
    pub next: Option<String>,
}

/// What the page was asked, checked.
struct Asked {
    level: Level,
    level_name: &'static str,
    g: Granularity,
    g_name: &'static str,
    from: NaiveDate,
    to: NaiveDate,
    /// `[from_us, to_us)`: the local days `from` to `to`.
    from_us: i64,
    to_us: i64,
    /// `key`, `period` or a KPI's name.
    sort: &'static str,
    desc: bool,
    kpi: &'static Kpi,
}

fn one_of(what: &str, v: Option<&str>, names: &[&'static str]) -> Result<&'static str, Problem> {
    let v = v.filter(|v| !v.is_empty()).unwrap_or(names[0]);
    names
        .iter()
        .find(|n| **n == v)
        .copied()
        .ok_or_else(|| Problem::bad(format!("{what} {v:?} is not one of {}", names.join(", "))))
}

fn date(what: &str, v: Option<&str>, default: NaiveDate) -> Result<NaiveDate, Problem> {
    match v.filter(|v| !v.is_empty()) {
        None => Ok(default),
        Some(v) => NaiveDate::parse_from_str(v, "%Y-%m-%d")
            .map_err(|_| Problem::bad(format!("{what} {v:?} is not a date (2026-11-25)"))),
    }
}

/// The parameters, checked before anything is read; by default the last 30 local days
/// ending today, per manager and day, sorted by manager.
fn asked(cal: &Calendar, q: &KpisQuery, now_us: i64) -> Result<Asked, Problem> {
    let level_name = one_of("level", q.level.as_deref(), &LEVELS)?;
    let g_name = one_of("granularity", q.granularity.as_deref(), &GRANULARITIES)?;
    let today = cal.date(now_us);
    let to = date("to", q.to.as_deref(), today)?;
    let from = date("from", q.from.as_deref(), to - Days::new(29))?;
    if from > to {
        return Err(Problem::bad("from must not be after to"));
    }
    if (to - from).num_days() >= 3 * 366 {
        return Err(Problem::bad("a range may span at most three years"));
    }
    let end = to
        .checked_add_days(Days::new(1))
        .ok_or_else(|| Problem::bad("to is out of range"))?;
    let mut columns = vec!["key", "period"];
    columns.extend(KPIS.iter().map(|k| k.name));
    let sort = one_of("sort", q.sort.as_deref(), &columns)?;
    let kpi_name = q
        .kpi
        .as_deref()
        .filter(|v| !v.is_empty())
        .unwrap_or("contacts");
    let kpi = KPIS
        .iter()
        .find(|k| k.name == kpi_name)
        .ok_or_else(|| Problem::bad(format!("kpi {kpi_name:?} is not a KPI of the table")))?;
    Ok(Asked {
        level: level_name.parse().map_err(Problem::bad)?,
        level_name,
        g: g_name.parse().map_err(Problem::bad)?,
        g_name,
        from,
        to,
        from_us: cal.start_of(from),
        to_us: cal.start_of(end),
        sort,
        desc: one_of("dir", q.dir.as_deref(), &["asc", "desc"])? == "desc",
        kpi,
    })
}

impl Asked {
    /// The query of this page with `sort`, `dir` and `kpi` as given.
    fn query(&self, sort: &str, desc: bool, kpi: &str) -> String {
        format!(
            "level={}&granularity={}&from={}&to={}&sort={sort}&dir={}&kpi={kpi}",
            self.level_name,
            self.g_name,
            self.from,
            self.to,
            if desc { "desc" } else { "asc" }
        )
    }
}

/// A header of the table: the link that sorts by it (again: the other way), and for a
/// KPI the link to its definition.
pub(crate) struct Header {
    pub name: &'static str,
    pub label: Msg,
    pub href: String,
    pub aria_sort: Option<&'static str>,
    pub kpi: bool,
}

pub(crate) struct Cell {
    /// The value as the API's JSON has it (`null`: none).
    pub raw: String,
    pub shown: String,
}

/// A row of the table: one key in one period, as shown.
pub(crate) struct Line {
    pub key: String,
    pub label: String,
    pub period: String,
    pub period_start: String,
    pub cells: Vec<Cell>,
}

/// A row as it is sorted and charted: every row of the answer is one (tens of thousands
/// at W2's size); only the page's rows become [`Line`]s.
struct Ranked<'a> {
    row: &'a KpiRow,
    label: &'a str,
    /// The figure sorted by, if a KPI.
    sorted: Option<f64>,
}

#[derive(Template)]
#[template(path = "kpis.html")]
pub(crate) struct KpisPage {
    pub chrome: Chrome,
    pub levels: [(&'static str, Msg); 3],
    pub granularities: [(&'static str, Msg); 3],
    pub level: &'static str,
    pub granularity: &'static str,
    pub from: String,
    pub to: String,
    pub sort: &'static str,
    pub dir: &'static str,
    pub key_label: Msg,
    pub headers: Vec<Header>,
    pub lines: Vec<Line>,
    pub pager: Pager,
    pub kpis: &'static [Kpi],
    pub kpi: &'static Kpi,
    pub unit: Option<Msg>,
    /// The chart's data, JSON with `<` escaped.
    pub chart: String,
    pub charted: usize,
    pub keys: usize,
    /// The table is still being computed (a large book).
    pub pending: bool,
    /// When it was computed, when not for this visit.
    pub computed: Option<Earlier>,
    pub csv: String,
}

pub(crate) async fn page(
    State(s): State<AppState>,
    viewer: Viewer,
    Query(q): Query<KpisQuery>,
) -> Response {
    match build(&s, &viewer, &q).await {
        Ok(page) => viewer.render(StatusCode::OK, &page),
        Err(p) => viewer.refusal(&s, p),
    }
}

/// Every row of the table asked (through [`super::slow`]: at W2's size the ledger's
/// answer for a month of days is 30,000 rows and takes about 300 ms); with when it was
/// computed and how long it took, when not for this visit; `None` while it is computed.
async fn table(
    s: &AppState,
    a: &Asked,
) -> Result<(Option<Arc<Vec<KpiRow>>>, Option<Earlier>), Problem> {
    let (store, cal) = (s.store.clone(), s.calendar);
    let (level, g, from_us, to_us) = (a.level, a.g, a.from_us, a.to_us);
    let key = (a.level_name, a.g_name, from_us, to_us);
    let answer = s
        .slow
        .kpis
        .get(key, move || async move {
            let now = Utc::now().timestamp_micros();
            Ok(store.kpis(level, (&cal, g), from_us, to_us, now).await?)
        })
        .await?;
    Ok(answer.parts(&s.calendar))
}

async fn build(s: &AppState, viewer: &Viewer, q: &KpisQuery) -> Result<KpisPage, Problem> {
    viewer.caller.allow(AGGREGATE_READERS)?;
    let now = Utc::now().timestamp_micros();
    let a = asked(&s.calendar, q, now)?;
    let cal = &s.calendar;
    let (rows, computed) = table(s, &a).await?;
    let pending = rows.is_none();
    let rows = rows.as_deref().map_or(&[][..], Vec::as_slice);
    let names = match a.level {
        Level::Manager => super::ownership::manager_names(s).await?,
        _ => HashMap::new(),
    };
    let mut ranked: Vec<Ranked> = rows
        .iter()
        .map(|r| Ranked {
            row: r,
            label: names.get(&r.key).map_or(r.key.as_str(), String::as_str),
            sorted: r.value(a.sort),
        })
        .collect();
    sort(&mut ranked, a.sort, a.desc);
    let (chart, charted, keys) = chart_json(&ranked, &a, cal, viewer.lang);
    let here = format!("/ui/kpis?{}", a.query(a.sort, a.desc, a.kpi.name));
    let total = ranked.len();
    let page = q.page.unwrap_or(1);
    let (start, end, pages) = page_range(total, page);
    let page = start / ROWS_PER_PAGE + 1;
    let link = |p: usize| format!("{here}&page={p}");
    let pager = Pager {
        first_row: start + 1,
        last_row: end,
        total,
        prev: (page > 1).then(|| link(page - 1)),
        next: (page < pages).then(|| link(page + 1)),
    };
    let lines: Vec<Line> = ranked[start..end]
        .iter()
        .map(|r| line(cal, a.g, viewer.lang, r))
        .collect();
    Ok(KpisPage {
        chrome: viewer.chrome(s, Nav::Kpis, &here),
        levels: [
            ("manager", Msg::Manager),
            ("team", Msg::Team),
            ("region", Msg::Region),
        ],
        granularities: [
            ("day", Msg::GranDay),
            ("week", Msg::GranWeek),
            ("month", Msg::GranMonth),
        ],
        level: a.level_name,
        granularity: a.g_name,
        from: a.from.to_string(),
        to: a.to.to_string(),
        sort: a.sort,
        dir: if a.desc { "desc" } else { "asc" },
        key_label: match a.level {
            Level::Manager => Msg::Manager,
            Level::Team => Msg::Team,
            Level::Region => Msg::Region,
        },
        headers: headers(&a),
        lines,
        pager,
        kpis: KPIS,
        kpi: a.kpi,
        unit: unit(a.kpi.kind),
        pending,
        computed,
        chart,
        charted,
        keys,
        csv: format!(
            "/ui/kpis.csv?level={}&granularity={}&from={}&to={}",
            a.level_name, a.g_name, a.from, a.to
        ),
    })
}

fn headers(a: &Asked) -> Vec<Header> {
    let key_label = match a.level {
        Level::Manager => Msg::Manager,
        Level::Team => Msg::Team,
        Level::Region => Msg::Region,
    };
    let mut out = vec![("key", key_label, false), ("period", Msg::Period, false)];
    out.extend(KPIS.iter().map(|k| (k.name, k.label, true)));
    out.into_iter()
        .map(|(name, label, kpi)| {
            let sorted = a.sort == name;
            // A new column sorts figures largest first and names from A; the sorted
            // one, the other way.
            let desc = if sorted { !a.desc } else { kpi };
            Header {
                name,
                label,
                href: format!("/ui/kpis?{}", a.query(name, desc, a.kpi.name)),
                aria_sort: sorted.then_some(if a.desc { "descending" } else { "ascending" }),
                kpi,
            }
        })
        .collect()
}

fn line(cal: &Calendar, g: Granularity, lang: Lang, r: &Ranked) -> Line {
    let json = serde_json::to_value(r.row).unwrap_or_default();
    let cells = KPIS
        .iter()
        .map(|k| {
            let v = json.get(k.name).cloned().unwrap_or_default();
            Cell {
                shown: shown(k.kind, v.as_f64(), lang),
                raw: v.to_string(),
            }
        })
        .collect();
    let row = r.row;
    Line {
        label: r.label.to_string(),
        key: row.key.clone(),
        period: period_label(cal, g, row.period_start_us, row.period_end_us),
        period_start: row.period_start.clone(),
        cells,
    }
}

/// `2026-11-25`; a week `2026-11-23 – 2026-11-29`; a month `2026-11`.
fn period_label(cal: &Calendar, g: Granularity, start: i64, end: i64) -> String {
    let first = cal.date(start);
    match g {
        Granularity::Day => first.format("%Y-%m-%d").to_string(),
        Granularity::Week => format!(
            "{} – {}",
            first.format("%Y-%m-%d"),
            cal.date(end - 1).format("%Y-%m-%d")
        ),
        Granularity::Month => first.format("%Y-%m").to_string(),
    }
}

/// A value as the table shows it; `–` for none (a rate of nothing, an answer not yet
/// given).
fn shown(kind: Kind, v: Option<f64>, lang: Lang) -> String {
    let Some(v) = v else {
        return "–".into();
    };
    match kind {
        Kind::Count => format!("{v:.0}"),
        Kind::Rate => percent(Some(v)),
        Kind::Seconds => format!("{:.1} {}", v / 60.0, lang.t(Msg::MinutesShort)),
        Kind::Money => money(v.round() as i64),
        Kind::Mean => format!("{v:.2}"),
    }
}

/// What the chart's values are in (counts: none).
fn unit(kind: Kind) -> Option<Msg> {
    match kind {
        Kind::Count | Kind::Mean => None,
        Kind::Rate => Some(Msg::UnitPercent),
        Kind::Seconds => Some(Msg::UnitMinutes),
        Kind::Money => Some(Msg::UnitMoney),
    }
}

/// The chart's value of a KPI: rates in per cent, durations in minutes, money in major
/// units.
fn scaled(kind: Kind, v: f64) -> f64 {
    match kind {
        Kind::Count | Kind::Mean => v,
        Kind::Rate => v * 100.0,
        Kind::Seconds => v / 60.0,
        Kind::Money => v / 100.0,
    }
}

/// Sort by a column; rows without a value last whichever the direction, ties by key
/// and period.
fn sort(lines: &mut [Ranked], by: &str, desc: bool) {
    lines.sort_by(|a, b| {
        let (ra, rb) = (a.row, b.row);
        let order = match by {
            "key" => a.label.cmp(b.label).then_with(|| ra.key.cmp(&rb.key)),
            "period" => ra.period_start_us.cmp(&rb.period_start_us),
            _ => match (a.sorted, b.sorted) {
                (Some(x), Some(y)) => x.total_cmp(&y),
                (Some(_), None) => return std::cmp::Ordering::Less,
                (None, Some(_)) => return std::cmp::Ordering::Greater,
                (None, None) => std::cmp::Ordering::Equal,
            },
        };
        let order = if desc { order.reverse() } else { order };
        order
            .then_with(|| ra.key.cmp(&rb.key))
            .then_with(|| ra.period_start_us.cmp(&rb.period_start_us))
    });
}

/// `{"x": "Period", "labels": [period, ..], "series": [{"label": key, "values": [..]}]}`: the chosen
/// KPI per period, one series for each of the keys largest by portfolio at the end of
/// the period (at most [`CHART_SERIES`]); with how many were drawn, of how many.
fn chart_json(lines: &[Ranked], a: &Asked, cal: &Calendar, lang: Lang) -> (String, usize, usize) {
    let mut periods: BTreeMap<i64, String> = BTreeMap::new();
    let mut by_key: BTreeMap<(&str, &str), Vec<&KpiRow>> = BTreeMap::new();
    for l in lines {
        let r = l.row;
        periods
            .entry(r.period_start_us)
            .or_insert_with(|| period_label(cal, a.g, r.period_start_us, r.period_end_us));
        by_key.entry((l.label, &r.key)).or_default().push(r);
    }
    let index: HashMap<i64, usize> = periods.keys().enumerate().map(|(i, p)| (*p, i)).collect();
    let last_portfolio = |rs: &[&KpiRow]| {
        rs.iter()
            .max_by_key(|r| r.period_start_us)
            .map_or(0, |r| r.portfolio)
    };
    let mut keys: Vec<(&(&str, &str), &Vec<&KpiRow>)> = by_key.iter().collect();
    keys.sort_by(|x, y| {
        last_portfolio(y.1)
            .cmp(&last_portfolio(x.1))
            .then(x.0.cmp(y.0))
    });
    let series: Vec<serde_json::Value> = keys
        .iter()
        .take(CHART_SERIES)
        .map(|((label, _), rs)| {
            let mut values = vec![serde_json::Value::Null; periods.len()];
            for r in rs.iter() {
                if let Some(v) = r.value(a.kpi.name) {
                    values[index[&r.period_start_us]] = scaled(a.kpi.kind, v).into();
                }
            }
            serde_json::json!({"label": label, "values": values})
        })
        .collect();
    let charted = series.len();
    let json = serde_json::json!({
        "x": lang.t(Msg::Period),
        "labels": periods.values().collect::<Vec<_>>(),
        "series": series,
    });
    (script_safe(&json.to_string()), charted, by_key.len())
}

/// The page's rows as CSV: the rows the API's CSV gives for the same parameters.
pub(crate) async fn csv(
    State(s): State<AppState>,
    viewer: Viewer,
    Query(q): Query<KpisQuery>,
) -> Response {
    let answer = async {
        viewer.caller.allow(AGGREGATE_READERS)?;
        let now = Utc::now().timestamp_micros();
        let a = asked(&s.calendar, &q, now)?;
        let rows = s
            .store
            .kpis(a.level, (&s.calendar, a.g), a.from_us, a.to_us, now)
            .await?;
        crate::params::rows(rows, true)
    }
    .await;
    match answer {
        Ok(mut res) => {
            res.headers_mut().insert(
                header::CONTENT_DISPOSITION,
                HeaderValue::from_static("attachment; filename=\"kpis.csv\""),
            );
            res
        }
        Err(p) => p.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_pages_by_a_thousand_rows() {
        assert_eq!(page_range(0, 1), (0, 0, 1));
        assert_eq!(page_range(720, 1), (0, 720, 1));
        assert_eq!(page_range(31_000, 1), (0, 1_000, 31));
        assert_eq!(page_range(31_000, 31), (30_000, 31_000, 31));
        assert_eq!(page_range(31_001, 32), (31_000, 31_001, 32));
        assert_eq!(
            page_range(2_500, 99),
            (2_000, 2_500, 3),
            "past the end: the last page"
        );
        assert_eq!(
            page_range(2_500, 0),
            (0, 1_000, 3),
            "before the start: the first"
        );
    }

    #[test]
    fn every_kpi_of_a_row_has_a_column() {
        let json = serde_json::to_value(KpiRow::default()).unwrap();
        let fields: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .filter(|k| !["key", "period_start", "period_end"].contains(k))
            .collect();
        let columns: Vec<&str> = KPIS.iter().map(|k| k.name).collect();
        let mut sorted_fields = fields.clone();
        sorted_fields.sort_unstable();
        let mut sorted_columns = columns.clone();
        sorted_columns.sort_unstable();
        assert_eq!(sorted_columns, sorted_fields);
    }

    #[test]
    fn parameters_are_checked_and_default_to_the_last_30_days() {
        let cal: Calendar = "Asia/Shanghai".parse().unwrap();
        let q = |s: &str| -> KpisQuery { serde_json::from_str(s).unwrap() };
        let now = chrono::DateTime::parse_from_rfc3339("2026-12-06T18:00:00Z")
            .unwrap()
            .timestamp_micros();
        let a = asked(&cal, &q("{}"), now).unwrap();
        // 02:00 on the 7th in Beijing: today is the 7th.
        assert_eq!(
            (a.from.to_string(), a.to.to_string()),
            ("2026-11-08".into(), "2026-12-07".into())
        );
        assert_eq!(a.to_us - a.from_us, 30 * 86_400_000_000);
        assert_eq!((a.sort, a.desc, a.kpi.name), ("key", false, "contacts"));
        for bad in [
            r#"{"level": "branch"}"#,
            r#"{"granularity": "hour"}"#,
            r#"{"from": "yesterday"}"#,
            r#"{"from": "2026-12-02", "to": "2026-12-01"}"#,
            r#"{"from": "2020-01-01", "to": "2026-12-01"}"#,
            r#"{"sort": "name; DROP TABLE x"}"#,
            r#"{"dir": "up"}"#,
            r#"{"kpi": "nope"}"#,
        ] {
            assert!(asked(&cal, &q(bad), now).is_err(), "{bad}");
        }
    }
}

//! The lifecycle funnel: customers by stage now or as of an instant, and conversion
//! (next step and cumulative), sliced as the API slices, as a chart and a table, with
//! the same rows as CSV.

use std::collections::BTreeMap;

use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use crm_projections::calendar::Granularity;
use crm_projections::funnel::{Conversion, Slice, StageCount, TimeInStage};
use serde::Deserialize;

use super::format::{input_value, parse_instant, percent};
use super::i18n::Msg;
use super::slow::{Answer, Earlier};
use super::view::{Chrome, Nav, Viewer};
use crate::caller::AGGREGATE_READERS;
use crate::problem::Problem;
use crate::AppState;

/// Every slice the API has, with its name in the query.
const SLICES: [&str; 6] = [
    "all",
    "region",
    "first_touch_channel",
    "team",
    "customer_type",
    "value_tier",
];

#[derive(Deserialize)]
pub(crate) struct FunnelQuery {
    slice: Option<String>,
    as_of: Option<String>,
    /// For CSV: `stages` (default) or `conversion`.
    table: Option<String>,
}

struct Asked {
    slice: Slice,
    slice_name: String,
    at: Option<i64>,
}

fn asked(s: &AppState, q: &FunnelQuery) -> Result<Asked, Problem> {
    let slice_name = q.slice.clone().unwrap_or_else(|| "all".into());
    let slice = slice_name.parse().map_err(Problem::bad)?;
    let at = match q.as_of.as_deref().filter(|v| !v.is_empty()) {
        Some(v) => Some(parse_instant(&s.calendar, v).map_err(Problem::bad)?),
        None => None,
    };
    Ok(Asked {
        slice,
        slice_name,
        at,
    })
}

pub(crate) struct ConversionLine {
    pub slice: String,
    pub stage: String,
    pub entered: i64,
    pub reached_next: i64,
    pub next_step: String,
    pub cumulative: String,
}

#[derive(Template)]
#[template(path = "funnel.html")]
pub(crate) struct FunnelPage {
    pub chrome: Chrome,
    pub slices: &'static [&'static str],
    pub slice: String,
    pub as_of_input: String,
    pub stages: Vec<StageCount>,
    /// Conversion, time in stage and moves are still being computed (a large book).
    pub pending: bool,
    /// When they were computed, when not for this visit.
    pub computed: Option<Earlier>,
    pub conversion: Vec<ConversionLine>,
    /// The chart's data, JSON with `<` escaped (it sits in a `<script>` element).
    pub chart: String,
    pub csv_stages: String,
    pub csv_conversion: String,
    pub time_in_stage: Vec<StayLine>,
    pub csv_time_in_stage: String,
    /// Moves between stages over the last 30 local days, summed.
    pub moves: Vec<MoveLine>,
    pub reactivated: i64,
    pub csv_moves: String,
}

/// Median time in a stage over the stays that ended.
pub(crate) struct StayLine {
    pub slice: String,
    pub stage: String,
    pub stays: i64,
    pub median: String,
}

/// Moves from one stage to another in the window.
#[derive(Clone)]
pub(crate) struct MoveLine {
    pub slice: String,
    pub from: Option<String>,
    pub to: String,
    pub moves: i64,
    pub reactivations: i64,
}

/// The moves' window: the last 30 local days up to now.
fn window(s: &AppState) -> (i64, i64) {
    let now = chrono::Utc::now().timestamp_micros();
    let today = s.calendar.date(now);
    let from = s.calendar.start_of(today - chrono::Days::new(30));
    (from, now)
}

/// Moves in the window, summed over its periods.
async fn moves(s: &AppState, slice: Slice) -> Result<Vec<MoveLine>, Problem> {
    let (from, to) = window(s);
    let rows = s
        .store
        .stage_transitions(from, to, (&s.calendar, Granularity::Month), slice)
        .await?;
    let mut summed: BTreeMap<(String, Option<String>, String), (i64, i64)> = BTreeMap::new();
    for r in rows {
        let e = summed
            .entry((r.slice, r.from_stage, r.to_stage))
            .or_default();
        e.0 += r.transitions;
        e.1 += r.reactivations;
    }
    Ok(summed
        .into_iter()
        .map(|((slice, from, to), (moves, reactivations))| MoveLine {
            slice,
            from,
            to,
            moves,
            reactivations,
        })
        .collect())
}

/// `3 d 4 h`, `5 h 10 min`, `40 min`.
pub(crate) fn duration(seconds: Option<i64>) -> String {
    let Some(s) = seconds else {
        return "–".into();
    };
    let (d, h, m) = (s / 86_400, s % 86_400 / 3_600, s % 3_600 / 60);
    match (d, h) {
        (0, 0) => format!("{m} min"),
        (0, _) => format!("{h} h {m} min"),
        _ => format!("{d} d {h} h"),
    }
}

pub(crate) async fn page(
    State(s): State<AppState>,
    viewer: Viewer,
    Query(q): Query<FunnelQuery>,
) -> Response {
    match build(&s, &viewer, &q).await {
        Ok(page) => viewer.render(StatusCode::OK, &page),
        Err(p) => viewer.refusal(&s, p),
    }
}

/// The funnel's figures grouped from every fact of the book: slow on a large one, so
/// asked through [`super::slow`].
pub(crate) struct Figures {
    conversion: Vec<Conversion>,
    stays: Vec<TimeInStage>,
    moves: Vec<MoveLine>,
}

/// Conversion, time in stage and the last 30 days' moves of `slice`, as a page waits
/// for them.
async fn figures(s: &AppState, slice: Slice, name: &str) -> Result<Answer<Figures>, Problem> {
    let state = s.clone();
    s.slow
        .funnel
        .get(name.to_string(), move || async move {
            Ok(Figures {
                conversion: state.store.conversion(slice).await?,
                stays: state.store.time_in_stage(slice).await?,
                moves: moves(&state, slice).await?,
            })
        })
        .await
}

async fn build(s: &AppState, viewer: &Viewer, q: &FunnelQuery) -> Result<FunnelPage, Problem> {
    viewer.caller.allow(AGGREGATE_READERS)?;
    let a = asked(s, q)?;
    let stages = s.store.stage_counts(a.at, a.slice).await?;
    let (figures, computed) = figures(s, a.slice, &a.slice_name).await?.parts(&s.calendar);
    let pending = figures.is_none();
    let empty = Figures {
        conversion: Vec::new(),
        stays: Vec::new(),
        moves: Vec::new(),
    };
    let f = figures.as_deref().unwrap_or(&empty);
    let as_of =
        a.at.map(|t| input_value(&s.calendar, t))
            .unwrap_or_default();
    let query = format!(
        "slice={}&as_of={}",
        super::view::urlencode(&a.slice_name),
        super::view::urlencode(&as_of)
    );
    Ok(FunnelPage {
        chrome: viewer.chrome(s, Nav::Funnel, &format!("/ui/funnel?{query}")),
        slices: &SLICES,
        slice: a.slice_name,
        as_of_input: as_of,
        chart: chart_json(&stages),
        stages,
        pending,
        computed,
        conversion: f.conversion.iter().map(conversion_line).collect(),
        csv_stages: format!("/ui/funnel.csv?{query}&table=stages"),
        csv_conversion: format!("/ui/funnel.csv?{query}&table=conversion"),
        time_in_stage: f
            .stays
            .iter()
            .map(|t| StayLine {
                median: duration(t.median_seconds),
                slice: t.slice.clone(),
                stage: t.stage.clone(),
                stays: t.completed_stays,
            })
            .collect(),
        csv_time_in_stage: format!("/ui/funnel.csv?{query}&table=time_in_stage"),
        reactivated: f.moves.iter().map(|m| m.reactivations).sum(),
        moves: f.moves.clone(),
        csv_moves: format!("/ui/funnel.csv?{query}&table=moves"),
    })
}

fn conversion_line(c: &Conversion) -> ConversionLine {
    ConversionLine {
        next_step: percent(c.next_step_rate),
        cumulative: percent(c.cumulative_rate),
        slice: c.slice.clone(),
        stage: c.stage.clone(),
        entered: c.entered,
        reached_next: c.reached_next,
    }
}

/// `{"stages": [..], "series": [{"label": slice, "values": [..]}]}`: one series per
/// slice, stages in the order the rows give them.
fn chart_json(rows: &[StageCount]) -> String {
    let mut stages: Vec<&str> = Vec::new();
    for r in rows {
        if !stages.contains(&r.stage.as_str()) {
            stages.push(&r.stage);
        }
    }
    let mut series: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    for r in rows {
        let i = stages.iter().position(|s| *s == r.stage).unwrap_or(0);
        series
            .entry(&r.slice)
            .or_insert_with(|| vec![0; stages.len()])[i] = r.customers;
    }
    let json = serde_json::json!({
        "stages": stages,
        "series": series.into_iter().map(|(label, values)| serde_json::json!({"label": label, "values": values})).collect::<Vec<_>>(),
    });
    script_safe(&json.to_string())
}

/// JSON that can sit inside a `<script type="application/json">` element: no `<`, `>`
/// or `&` left to end the element or open a comment.
pub(crate) fn script_safe(json: &str) -> String {
    json.replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
}

/// The page's rows as CSV: the same rows the API's CSV gives.
pub(crate) async fn csv(
    State(s): State<AppState>,
    viewer: Viewer,
    Query(q): Query<FunnelQuery>,
) -> Response {
    let answer = async {
        viewer.caller.allow(AGGREGATE_READERS)?;
        let a = asked(&s, &q)?;
        match q.table.as_deref().unwrap_or("stages") {
            "stages" => crate::params::rows(s.store.stage_counts(a.at, a.slice).await?, true),
            "conversion" => crate::params::rows(s.store.conversion(a.slice).await?, true),
            "time_in_stage" => crate::params::rows(s.store.time_in_stage(a.slice).await?, true),
            "moves" => {
                let (from, to) = window(&s);
                let cal = (&s.calendar, Granularity::Month);
                crate::params::rows(
                    s.store.stage_transitions(from, to, cal, a.slice).await?,
                    true,
                )
            }
            other => Err(Problem::bad(format!(
                "table {other:?} is not stages, conversion, time_in_stage or moves"
            ))),
        }
    }
    .await;
    match answer {
        Ok(mut res) => {
            res.headers_mut().insert(
                axum::http::header::CONTENT_DISPOSITION,
                axum::http::HeaderValue::from_static("attachment; filename=\"funnel.csv\""),
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
    fn durations_read_as_people_say_them() {
        assert_eq!(duration(None), "–");
        assert_eq!(duration(Some(40 * 60 + 59)), "40 min");
        assert_eq!(duration(Some(5 * 3600 + 600)), "5 h 10 min");
        assert_eq!(duration(Some(3 * 86_400 + 4 * 3600 + 59)), "3 d 4 h");
    }

    #[test]
    fn chart_data_cannot_close_its_script_element() {
        let rows = vec![StageCount {
            slice: "</script><script>alert(1)</script>".into(),
            stage: "lead".into(),
            customers: 3,
        }];
        let json = chart_json(&rows);
        assert!(!json.contains('<') && !json.contains('>'), "{json}");
        let back: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(
            back["series"][0]["label"],
            "</script><script>alert(1)</script>"
        );
    }
}

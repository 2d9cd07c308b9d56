//! Ownership pages: portfolios by manager, team or region with holding limits (保有量) and
//! how full each is; the public pool (公海); a manager's book.

use std::collections::{BTreeMap, HashMap};

use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use crm_auth::Role;
use crm_projections::queries::{CustomerRow, ManagerRow};
use crm_projections::{CustomerFilter, PortfolioBy};
use serde::Deserialize;

use super::format::{local, maybe_local};
use super::i18n::Msg;
use super::view::{urlencode, Chrome, Nav, Viewer};
use crate::caller::AGGREGATE_READERS;
use crate::problem::Problem;
use crate::AppState;

/// Rows of a customer list page.
const PAGE: i64 = 50;

/// A manager lands on their book; everyone else on the portfolios.
pub(crate) async fn home(viewer: Viewer) -> Response {
    match viewer.principal().map(|p| p.role) {
        Some(Role::Manager) => Redirect::to("/ui/book").into_response(),
        _ => Redirect::to("/ui/ownership").into_response(),
    }
}

#[derive(Deserialize)]
pub(crate) struct ByQuery {
    by: Option<String>,
}

/// One portfolio: a manager's, a team's or a region's.
pub(crate) struct PortfolioLine {
    pub key: String,
    pub name: String,
    pub team: String,
    pub region: String,
    pub customers: i64,
    /// 0 = no limit.
    pub limit: i64,
    pub fill: String,
    pub over: bool,
    /// A manager's line links to their book.
    pub book: Option<String>,
}

#[derive(Template)]
#[template(path = "portfolios.html")]
pub(crate) struct PortfoliosPage {
    pub chrome: Chrome,
    pub by: &'static str,
    pub lines: Vec<PortfolioLine>,
    pub total: i64,
}

pub(crate) async fn portfolios(
    State(s): State<AppState>,
    viewer: Viewer,
    Query(q): Query<ByQuery>,
) -> Response {
    let (by, column) = match q.by.as_deref().unwrap_or("manager") {
        "manager" => (PortfolioBy::Manager, "manager"),
        "team" => (PortfolioBy::Team, "team"),
        "region" => (PortfolioBy::Region, "region"),
        other => {
            let p = Problem::bad(format!("by {other:?} is not manager, team or region"));
            return viewer.refusal(&s, p);
        }
    };
    match portfolio_lines(&s, &viewer, by).await {
        Ok(lines) => {
            let page = PortfoliosPage {
                chrome: viewer.chrome(&s, Nav::Ownership, &format!("/ui/ownership?by={column}")),
                by: column,
                total: lines.iter().map(|l| l.customers).sum(),
                lines,
            };
            viewer.render(StatusCode::OK, &page)
        }
        Err(p) => viewer.refusal(&s, p),
    }
}

/// The portfolio counts the API answers, with each owner's holding limit beside them (a
/// team's or region's limit is its managers' together).
async fn portfolio_lines(
    s: &AppState,
    viewer: &Viewer,
    by: PortfolioBy,
) -> Result<Vec<PortfolioLine>, Problem> {
    viewer.caller.allow(AGGREGATE_READERS)?;
    let counts = s.store.portfolio_counts(by).await?;
    let managers = s.store.managers().await?;
    let key_of = |m: &ManagerRow| match by {
        PortfolioBy::Manager => m.manager_id.clone(),
        PortfolioBy::Team => m.team.clone(),
        PortfolioBy::Region => m.region.clone(),
    };
    let mut lines: BTreeMap<String, PortfolioLine> = BTreeMap::new();
    for m in managers.iter().filter(|m| m.active) {
        let line = lines.entry(key_of(m)).or_insert_with(|| PortfolioLine {
            key: key_of(m),
            name: String::new(),
            team: m.team.clone(),
            region: m.region.clone(),
            customers: 0,
            limit: 0,
            fill: String::new(),
            over: false,
            book: None,
        });
        if by == PortfolioBy::Manager {
            line.name = m.name.clone();
            line.book = Some(format!("/ui/book?manager={}", urlencode(&m.manager_id)));
        }
        line.limit += m.holding_limit;
    }
    for c in counts {
        let line = lines.entry(c.key.clone()).or_insert_with(|| PortfolioLine {
            key: c.key.clone(),
            name: String::new(),
            team: String::new(),
            region: String::new(),
            customers: 0,
            limit: 0,
            fill: String::new(),
            over: false,
            book: None,
        });
        line.customers = c.customers;
    }
    Ok(lines
        .into_values()
        .map(|mut l| {
            if l.limit > 0 {
                l.fill = format!("{:.0} %", l.customers as f64 * 100.0 / l.limit as f64);
                l.over = l.customers > l.limit;
            }
            l
        })
        .collect())
}

/// A customer in a list: the columns a manager scans.
pub(crate) struct CustomerLine {
    pub id: String,
    pub href: String,
    pub name: String,
    pub region: String,
    pub stage: String,
    pub tier: String,
    pub owner: String,
    pub owner_name: String,
    pub since: String,
    pub registered: String,
    pub last_contact: String,
    /// When the pool rules return the customer (owned customers, with an event store).
    pub returns: Option<ReturnCell>,
}

/// The countdown to a customer's automatic return to the pool.
pub(crate) struct ReturnCell {
    pub days: i64,
    pub date: String,
    pub cause: Msg,
    /// Within the policy's warning window (the owner has been or is about to be warned).
    pub warn: bool,
    pub overdue: bool,
}

/// The pool rules of the policy in force, as the pool and book pages state them.
pub(crate) struct PoolRulesView {
    pub version: u32,
    pub claim_cap: u32,
    pub cooldown_days: u32,
    pub warning_days: u32,
}

/// Managers' names by id, to show people rather than ids (one small table).
pub(crate) async fn manager_names(s: &AppState) -> Result<HashMap<String, String>, Problem> {
    Ok(s.store
        .managers()
        .await?
        .into_iter()
        .map(|m| (m.manager_id, m.name))
        .collect())
}

fn line(s: &AppState, names: &HashMap<String, String>, c: CustomerRow) -> CustomerLine {
    let owner = c.owner_id.as_deref().unwrap_or_default();
    CustomerLine {
        owner_name: names
            .get(owner)
            .cloned()
            .unwrap_or_else(|| owner.to_string()),
        href: format!("/ui/customers/{}", urlencode(&c.customer_id)),
        id: c.customer_id,
        name: c.display_name,
        region: c.region,
        stage: c.stage,
        tier: c.value_tier,
        owner: c.owner_id.unwrap_or_default(),
        since: maybe_local(&s.calendar, c.owned_since_us),
        registered: local(&s.calendar, c.registered_at_us),
        last_contact: maybe_local(&s.calendar, c.last_contact_at_us),
        returns: None,
    }
}

/// The pool rules in force and, for a book, each owned customer's return countdown.
async fn pool_rules(
    s: &AppState,
    pool: bool,
    lines: &mut [CustomerLine],
    rows: &[CustomerRow],
) -> Result<Option<PoolRulesView>, Problem> {
    let Some(policy) = super::returns::policy(s).await? else {
        return Ok(None);
    };
    let rules = &policy.document.pool;
    if !pool {
        let returns = super::returns::returns(s, &policy, rows).await?;
        let now = chrono::Utc::now();
        for line in lines.iter_mut() {
            if let Some(r) = returns.get(&line.id) {
                let (days, warn) = super::returns::countdown(r.due, now, rules.warning_days);
                line.returns = Some(ReturnCell {
                    days,
                    date: local(&s.calendar, r.due.timestamp_micros()),
                    cause: match r.cause {
                        "lead_not_won" => Msg::CauseLeadNotWon,
                        _ => Msg::CauseNoContact,
                    },
                    warn,
                    overdue: r.due <= now,
                });
            }
        }
    }
    Ok(Some(PoolRulesView {
        version: policy.version,
        claim_cap: rules.daily_claim_cap,
        cooldown_days: rules.reclaim_cooldown_days,
        warning_days: rules.warning_days,
    }))
}

#[derive(Template)]
#[template(path = "customers.html")]
pub(crate) struct CustomersPage {
    pub chrome: Chrome,
    pub heading: String,
    pub intro: Option<Msg>,
    pub pool: bool,
    pub lines: Vec<CustomerLine>,
    /// The pool rules in force (with an event store).
    pub rules: Option<PoolRulesView>,
    /// The next page's URL, when this one is full.
    pub next: Option<String>,
    pub first: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct ListQuery {
    after: Option<String>,
    manager: Option<String>,
}

/// The public pool, a page at a time, names shown as the role may see them (the read
/// recorded, as the API records it).
pub(crate) async fn pool(
    State(s): State<AppState>,
    viewer: Viewer,
    Query(q): Query<ListQuery>,
) -> Response {
    let after = q.after.unwrap_or_default();
    let rows = match crate::reads::pool(&s, &viewer.caller, &after, PAGE).await {
        Ok(rows) => rows,
        Err(p) => return viewer.refusal(&s, p),
    };
    let title = viewer.lang.t(Msg::PoolTitle).to_string();
    list_page(&s, &viewer, "/ui/pool?", title, true, rows, &after).await
}

/// A manager's book: a manager's own customers (a team lead's: the team's), whatever the
/// URL asks; for other roles, the customers of `manager` (or everyone's).
pub(crate) async fn book(
    State(s): State<AppState>,
    viewer: Viewer,
    Query(q): Query<ListQuery>,
) -> Response {
    let after = q.after.unwrap_or_default();
    let filter = CustomerFilter {
        owner_id: q.manager.clone(),
        ..Default::default()
    };
    let rows = match crate::reads::customers(&s, &viewer.caller, filter, &after, PAGE).await {
        Ok(rows) => rows,
        Err(p) => return viewer.refusal(&s, p),
    };
    let names = match manager_names(&s).await {
        Ok(n) => n,
        Err(p) => return viewer.refusal(&s, p),
    };
    let named = |id: &str| names.get(id).cloned().unwrap_or_else(|| id.to_string());
    let whose = match (viewer.principal(), &q.manager) {
        (Some(p), _) if p.role == Role::Manager => match (&p.team, &p.manager_id) {
            (Some(team), _) => team.clone(),
            (None, Some(id)) => named(id),
            (None, None) => String::new(),
        },
        (_, Some(m)) => named(m),
        _ => String::new(),
    };
    let base = match &q.manager {
        Some(m) => format!("/ui/book?manager={}&", urlencode(m)),
        None => "/ui/book?".into(),
    };
    let heading = format!("{} {whose}", viewer.lang.t(Msg::BookOf));
    list_page(&s, &viewer, &base, heading, false, rows, &after).await
}

async fn list_page(
    s: &AppState,
    viewer: &Viewer,
    base: &str,
    heading: String,
    pool: bool,
    mut rows: Vec<CustomerRow>,
    after: &str,
) -> Response {
    let route = if pool {
        "workbench.pool"
    } else {
        "workbench.book"
    };
    if let Err(p) = s.reveal_customers(&viewer.caller, route, &mut rows).await {
        return viewer.refusal(s, p);
    }
    let names = match manager_names(s).await {
        Ok(n) => n,
        Err(p) => return viewer.refusal(s, p),
    };
    let next = (rows.len() as i64 == PAGE)
        .then(|| rows.last())
        .flatten()
        .map(|c| format!("{base}after={}", urlencode(&c.customer_id)));
    let here = format!("{base}after={}", urlencode(after));
    let mut lines: Vec<CustomerLine> = rows.iter().cloned().map(|c| line(s, &names, c)).collect();
    let rules = match pool_rules(s, pool, &mut lines, &rows).await {
        Ok(r) => r,
        Err(p) => return viewer.refusal(s, p),
    };
    let page = CustomersPage {
        chrome: viewer.chrome(s, if pool { Nav::Pool } else { Nav::Book }, &here),
        heading,
        intro: pool.then_some(Msg::PoolIntro),
        pool,
        lines,
        rules,
        next,
        first: (!after.is_empty()).then(|| base.trim_end_matches(['?', '&']).to_string()),
    };
    viewer.render(StatusCode::OK, &page)
}

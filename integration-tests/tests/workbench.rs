//! The workbench in a real browser (headless Chromium through chromedriver), against the
//! embedded demo (`crm demo --serve`, SQLite) as a newcomer runs it: every page loads with
//! no console error and no serious accessibility violation (axe-core), and is saved as a
//! screenshot under `target/workbench/`; the funnel's figures equal the read models'; the
//! as-of control changes the owner shown, naming the rule that decided it; a manager
//! cannot reach another manager's customer by URL, nor the audit pages; the audit pages'
//! replays from the event store agree with the read models; the language switch and the
//! browser's language both work; the keyboard reaches the content; forms refuse forged
//! posts.

use std::collections::BTreeMap;
use std::time::Duration;

use crm_integration_tests::browser::{keys, Browser};
use crm_integration_tests::workbench::{check_page, click_and_load, texts};
use crm_integration_tests::Service;
use crm_projections::funnel::Slice;
use crm_projections::queries::PeriodRow;
use crm_projections::ReadStore;

/// The demo serving its day; the read models it serves, opened beside it.
struct Demo {
    _process: Service,
    base: String,
    read: ReadStore,
    db: crm_eventstore::testing::TempPath,
}

async fn demo() -> Demo {
    let db = crm_eventstore::testing::TempPath::new("crm-workbench");
    let path = db.0.to_str().unwrap().to_string();
    let process = Service::start(
        "crm",
        &[
            "demo",
            "--customers",
            "160",
            "--db",
            &path,
            "--serve",
            "--serve-addr",
            "127.0.0.1:0",
        ],
        &[],
    );
    assert!(
        process
            .wait_output("The workbench: http://", Duration::from_secs(300))
            .await,
        "the demo did not serve the workbench:\n{}",
        process.output()
    );
    let out = process.output();
    let url = out
        .lines()
        .find_map(|l| l.split("The workbench: ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .expect("the workbench's URL");
    let base = url.trim_end_matches("/ui/").to_string();
    let read_path = db.0.with_extension("read.db");
    let read = ReadStore::connect(&format!("sqlite://{}", read_path.display()), 1)
        .await
        .unwrap();
    Demo {
        _process: process,
        base,
        read,
        db,
    }
}

async fn sign_in_as(b: &Browser, base: &str, who: &str) {
    b.goto(&format!("{base}/ui/sign-in")).await.unwrap();
    for button in b.find_all("button.person").await.unwrap() {
        if button.text().await.unwrap().contains(who) {
            let id = button.attr("id").await.unwrap().unwrap();
            click_and_load(b, &format!("#{id}")).await;
            b.find("#who").await.unwrap();
            return;
        }
    }
    panic!("no one to sign in as {who:?}");
}

/// Set the as-of control (a `datetime-local` input) and show.
async fn as_of(b: &Browser, value: &str) -> String {
    let input = b.find("#as_of").await.unwrap();
    b.execute(
        "arguments[0].value = arguments[1];",
        &[input.as_arg(), value.into()],
    )
    .await
    .unwrap();
    click_and_load(b, "#as-of-show").await;
    let then = b.find("#owner-then").await.unwrap();
    // The manager's id when owned, else what the page says (in the pool, not yet …).
    match then.attr("data-manager-id").await.unwrap() {
        Some(id) => id,
        None => then.text().await.unwrap(),
    }
}

fn local_minute(us: i64) -> String {
    let cal: crm_projections::calendar::Calendar = "Asia/Shanghai".parse().unwrap();
    chrono::DateTime::from_timestamp_micros(us)
        .unwrap()
        .with_timezone(&cal.zone())
        .format("%Y-%m-%dT%H:%M")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_workbench_in_a_browser() {
    let d = demo().await;
    let b = Browser::start_with(&["--window-size=1366,911"])
        .await
        .unwrap();
    let viewport = b
        .execute("return [window.innerWidth, window.innerHeight];", &[])
        .await
        .unwrap();
    assert_eq!(
        viewport,
        serde_json::json!([1366, 768]),
        "screenshots at 1366×768"
    );

    // Signed out, every page leads to the sign-in page.
    b.goto(&format!("{}/ui/ownership", d.base)).await.unwrap();
    assert!(b
        .url()
        .await
        .unwrap()
        .contains("/ui/sign-in?next=/ui/ownership"));
    check_page(&b, "sign-in").await;

    sign_in_as(&b, &d.base, "Administrator").await;
    assert!(b.url().await.unwrap().ends_with("/ui/ownership"));
    check_page(&b, "ownership").await;
    the_portfolios_add_up(&b, &d).await;
    b.goto(&format!("{}/ui/pool", d.base)).await.unwrap();
    assert!(!b.find_all("#customers tbody tr").await.unwrap().is_empty());
    check_page(&b, "pool").await;
    the_funnel_equals_the_read_models(&b, &d).await;
    the_as_of_control_changes_the_owner(&b, &d).await;
    the_kpis_equal_the_read_models(&b, &d).await;
    the_complaints_pages_show_the_read_models(&b, &d).await;
    the_audit_pages_work(&b, &d).await;
    the_language_switch_works(&b, &d).await;
    the_keyboard_reaches_the_content(&b, &d).await;

    click_and_load(&b, "#sign-out").await;
    b.find("button.person").await.unwrap();
    b.goto(&format!("{}/ui/pool", d.base)).await.unwrap();
    assert!(b.url().await.unwrap().contains("/ui/sign-in"), "signed out");

    a_manager_sees_only_their_own(&b, &d).await;
    b.close().await.unwrap();

    // A browser that prefers Chinese is answered in Chinese before any switch.
    let zh = Browser::start_with(&["--window-size=1366,911", "--lang=zh-CN"])
        .await
        .unwrap();
    zh.goto(&format!("{}/ui/sign-in", d.base)).await.unwrap();
    assert_eq!(
        zh.find("h1").await.unwrap().text().await.unwrap(),
        "登录客户经营工作台"
    );
    check_page(&zh, "sign-in-zh").await;
    zh.close().await.unwrap();
}

async fn the_portfolios_add_up(b: &Browser, d: &Demo) {
    let owned: i64 = d
        .read
        .portfolio_counts(crm_projections::PortfolioBy::Manager)
        .await
        .unwrap()
        .iter()
        .map(|c| c.customers)
        .sum();
    for by in ["manager", "team", "region"] {
        b.goto(&format!("{}/ui/ownership?by={by}", d.base))
            .await
            .unwrap();
        let shown: i64 = texts(b, "#portfolios tbody td.num:nth-last-child(3)")
            .await
            .iter()
            .map(|t| t.parse::<i64>().unwrap())
            .sum();
        assert_eq!(
            shown, owned,
            "portfolios by {by} add up to the owned customers"
        );
    }
}

async fn the_funnel_equals_the_read_models(b: &Browser, d: &Demo) {
    b.goto(&format!("{}/ui/funnel", d.base)).await.unwrap();
    b.wait_for(
        "#funnel-chart[data-drawn='true'] canvas",
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    check_page(b, "funnel").await;
    time_in_stage_and_moves_equal_the_read_models(b, d).await;
    let want: BTreeMap<String, i64> = d
        .read
        .stage_counts(None, Slice::All)
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.stage, r.customers))
        .collect();
    let mut shown = BTreeMap::new();
    for row in b.find_all("#stages tbody tr").await.unwrap() {
        let cells = row.text().await.unwrap();
        let parts: Vec<&str> = cells.split_whitespace().collect();
        let n: i64 = parts.last().unwrap().parse().unwrap();
        shown.insert(parts[parts.len() - 2].to_string(), n);
    }
    assert_eq!(
        shown, want,
        "the funnel page shows the read models' figures"
    );
    assert!(want.values().sum::<i64>() > 0);

    // Sliced by channel; the CSV link answers the same rows.
    b.goto(&format!("{}/ui/funnel?slice=first_touch_channel", d.base))
        .await
        .unwrap();
    let sliced = d
        .read
        .stage_counts(None, Slice::FirstTouchChannel)
        .await
        .unwrap();
    assert_eq!(
        b.find_all("#stages tbody tr").await.unwrap().len(),
        sliced.len()
    );
    check_page(b, "funnel-by-channel").await;
}

/// A customer with a transfer, and one a pool rule returned.
fn interesting(periods: &[PeriodRow]) -> (Vec<&PeriodRow>, Vec<&PeriodRow>) {
    let mut by_customer: BTreeMap<&str, Vec<&PeriodRow>> = BTreeMap::new();
    for p in periods {
        by_customer.entry(&p.customer_id).or_default().push(p);
    }
    let transferred = by_customer
        .values()
        .find(|ps| {
            ps.len() >= 2
                && ps[1].start_event == "OwnershipTransferred"
                && ps[0].manager_id != ps[1].manager_id
        })
        .expect("the demo's day has a transfer that succeeded")
        .clone();
    let returned = by_customer
        .values()
        .find(|ps| {
            ps.iter().any(|p| {
                p.end_event.as_deref() == Some("ReleasedToPool")
                    && p.ended_by
                        .as_deref()
                        .is_some_and(|b| b.starts_with("system:"))
            })
        })
        .expect("the demo's day has a return to the pool by rule")
        .clone();
    (transferred, returned)
}

async fn the_as_of_control_changes_the_owner(b: &Browser, d: &Demo) {
    let periods = d.read.all_periods().await.unwrap();
    let (transferred, returned) = interesting(&periods);
    let id = &transferred[0].customer_id;
    b.goto(&format!("{}/ui/customers/{id}", d.base))
        .await
        .unwrap();
    check_page(b, "customer").await;
    // A minute into each period (the control's resolution is a minute).
    let first = as_of(b, &local_minute(transferred[0].from_us + 60_000_000)).await;
    assert_eq!(first, transferred[0].manager_id);
    let second = as_of(b, &local_minute(transferred[1].from_us + 60_000_000)).await;
    assert_eq!(second, transferred[1].manager_id);
    assert_ne!(first, second, "the as-of control changed the owner shown");
    check_page(b, "customer-as-of").await;

    let ended = returned
        .iter()
        .find(|p| p.end_event.as_deref() == Some("ReleasedToPool"))
        .unwrap();
    let id = &ended.customer_id;
    b.goto(&format!("{}/ui/customers/{id}", d.base))
        .await
        .unwrap();
    let then = as_of(b, &local_minute(ended.to_us.unwrap() + 60_000_000)).await;
    assert!(then.contains("public pool"), "{then}");
    let rule = b.find("#rule-then").await.unwrap().text().await.unwrap();
    assert!(
        ["no_contact", "lead_not_won"].contains(&rule.as_str()),
        "{rule}"
    );
    let policy = b.find("#policy-then").await.unwrap().text().await.unwrap();
    assert!(policy.parse::<u32>().is_ok(), "{policy}");
}

/// The KPI table as the page shows it: the KPI columns' names, then per row its key,
/// its period's start and each KPI's value as the API's JSON has it.
type ShownKpis = (Vec<String>, Vec<(String, String, Vec<String>)>);

async fn shown_kpis(b: &Browser) -> ShownKpis {
    let table = b
        .execute(
            "const names = Array.from(document.querySelectorAll('#kpis thead a[id^=\"sort-\"]'))\
               .map(a => a.id.slice(5)).filter(n => n !== 'key' && n !== 'period');\
             const rows = Array.from(document.querySelectorAll('#kpis tbody tr')).map(tr =>\
               [tr.dataset.key, tr.dataset.period,\
                Array.from(tr.querySelectorAll('td[data-value]')).map(td => td.dataset.value)]);\
             return [names, rows];",
            &[],
        )
        .await
        .unwrap();
    serde_json::from_value(table).unwrap()
}

/// Each granularity (and level) once, over periods that have ended: every figure the page
/// shows equals the read models' for the same parameters; a header sorts; the chart is
/// drawn; each figure's definition is one click away.
async fn the_kpis_equal_the_read_models(b: &Browser, d: &Demo) {
    b.goto(&format!("{}/ui/kpis", d.base)).await.unwrap();
    check_page(b, "kpis").await;
    for (level, g, from, to) in [
        ("manager", "day", "2026-11-25", "2026-11-27"),
        ("team", "week", "2026-11-23", "2026-11-29"),
        ("region", "month", "2026-11-01", "2026-11-30"),
    ] {
        a_kpi_table_equals_the_read_models(b, d, [level, g, from, to]).await;
    }
    the_kpis_sort_and_define(b, d).await;
}

async fn a_kpi_table_equals_the_read_models(
    b: &Browser,
    d: &Demo,
    [level, g, from, to]: [&str; 4],
) {
    use crm_projections::calendar::{Calendar, Granularity};
    use crm_projections::kpi::Level;
    let query = format!("level={level}&granularity={g}&from={from}&to={to}");
    b.goto(&format!("{}/ui/kpis?{query}&kpi=portfolio", d.base))
        .await
        .unwrap();
    b.wait_for(
        "#kpis-chart[data-drawn='true'] canvas",
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    check_page(b, &format!("kpis-{g}")).await;
    let (names, rows) = shown_kpis(b).await;
    assert_eq!(names.len(), 29, "{names:?}");
    let cal: Calendar = "Asia/Shanghai".parse().unwrap();
    let day = |s: &str| cal.start_of(chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap());
    let now = chrono::Utc::now().timestamp_micros();
    let level: Level = level.parse().unwrap();
    let g: Granularity = g.parse().unwrap();
    let (start, end) = (day(from), day(to) + 86_400_000_000);
    let want = d
        .read
        .kpis(level, (&cal, g), start, end, now)
        .await
        .unwrap();
    assert!(!want.is_empty(), "{query}: the demo's day has KPIs");
    assert_eq!(
        rows.len(),
        want.len(),
        "{query}: one line per row of the API"
    );
    let total = b
        .find("#kpi-rows")
        .await
        .unwrap()
        .attr("data-total")
        .await
        .unwrap();
    assert_eq!(
        total,
        Some(want.len().to_string()),
        "{query}: the pager counts every row"
    );
    for w in &want {
        let json = serde_json::to_value(w).unwrap();
        let (_, _, values) = rows
            .iter()
            .find(|(k, p, _)| *k == w.key && *p == w.period_start)
            .unwrap_or_else(|| panic!("{query}: no line for {} {}", w.key, w.period_start));
        let expected: Vec<String> = names.iter().map(|n| json[n].to_string()).collect();
        assert_eq!(*values, expected, "{query}: {} {}", w.key, w.period_start);
    }
}

/// Sorted by contacts, largest first, by its header, then the other way; the
/// definition one click away.
async fn the_kpis_sort_and_define(b: &Browser, d: &Demo) {
    let query = "level=manager&granularity=day&from=2026-11-25&to=2026-11-25";
    b.goto(&format!("{}/ui/kpis?{query}", d.base))
        .await
        .unwrap();
    click_and_load(b, "#sort-contacts").await;
    b.find("th[aria-sort='descending'] #sort-contacts")
        .await
        .unwrap();
    let (names, rows) = shown_kpis(b).await;
    let i = names.iter().position(|n| n == "contacts").unwrap();
    let contacts: Vec<i64> = rows.iter().map(|r| r.2[i].parse().unwrap()).collect();
    assert!(contacts.windows(2).all(|w| w[0] >= w[1]), "{contacts:?}");
    assert!(contacts.iter().any(|n| *n > 0), "the day had contacts");
    click_and_load(b, "#sort-contacts").await;
    b.find("th[aria-sort='ascending'] #sort-contacts")
        .await
        .unwrap();
    let link = b.find("a.def[href='#def-contacts']").await.unwrap();
    link.click().await.unwrap();
    let definition = b
        .find("#def-contacts + dd")
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        definition.contains("Contacts by the manager"),
        "{definition}"
    );
    b.wait_for(
        "#kpis-chart[data-drawn='true'] canvas",
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    check_page(b, "kpis-sorted").await;
}

/// The open complaints the page counts and lists are the read models' (the
/// administrator sees them all); a complaint's page shows its history.
async fn the_complaints_pages_show_the_read_models(b: &Browser, d: &Demo) {
    use crm_projections::queries::complaints::ComplaintFilter;
    b.goto(&format!("{}/ui/complaints", d.base)).await.unwrap();
    check_page(b, "complaints").await;
    let now = chrono::Utc::now().timestamp_micros();
    let all = ComplaintFilter::default();
    let open = d.read.open_complaints(&all, now, None, 50).await.unwrap();
    let counts = d.read.open_complaint_counts(&all, now).await.unwrap();
    let counted: i64 = counts.iter().map(|c| c.complaints).sum();
    let shown: Vec<(String, String)> = serde_json::from_value(
        b.execute(
            "return Array.from(document.querySelectorAll('#complaints tbody tr')).map(tr =>\
               [tr.dataset.complaintId, tr.querySelector('td[data-state]').dataset.state]);",
            &[],
        )
        .await
        .unwrap(),
    )
    .unwrap();
    let want: Vec<(String, String)> = open
        .iter()
        .map(|k| (k.complaint_id.clone(), k.state_name().to_string()))
        .collect();
    assert_eq!(
        shown, want,
        "the open complaints, oldest first, with their states"
    );
    if counted > 0 {
        let total = b
            .find("#complaints-total")
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(total, counted.to_string());
    }
    a_complaint_page_shows_its_history(b, d).await;
}

/// A complaint that breached (else any): its page, its state as the read models judge
/// it, its history from logging on, the breach among it.
async fn a_complaint_page_shows_its_history(b: &Browser, d: &Demo) {
    let facts = d.read.facts().await.unwrap();
    let breach = |id: &str| {
        facts
            .sla_events
            .iter()
            .any(|e| e.kind == "breach" && e.complaint_id == id)
    };
    let breached = facts.complaints.iter().find(|k| breach(&k.complaint_id));
    if breached.is_none() {
        println!("the demo's day left no breached complaint");
    }
    let id = breached
        .or(facts.complaints.first())
        .expect("the demo's day has complaints")
        .complaint_id
        .clone();
    b.goto(&format!("{}/ui/complaints/{id}", d.base))
        .await
        .unwrap();
    assert_eq!(
        b.find("#complaint-id").await.unwrap().text().await.unwrap(),
        id
    );
    let events = texts(b, "#history tbody tr td:nth-child(2)").await;
    assert_eq!(
        events.first().map(String::as_str),
        Some("ComplaintLogged"),
        "{events:?}"
    );
    assert_eq!(
        events.iter().any(|e| e == "ComplaintSlaBreached"),
        breach(&id),
        "{events:?}"
    );
    let now = chrono::Utc::now().timestamp_micros();
    let k = d.read.complaint(&id, now).await.unwrap().unwrap();
    if let Some(state) = k.sla_state {
        let shown = b.find("#complaint-state").await.unwrap();
        assert_eq!(
            shown.attr("data-state").await.unwrap().unwrap(),
            state.as_str()
        );
    }
    check_page(b, "complaint").await;
}

/// Set a form control's value (a `datetime-local` input, a select) as a person would.
async fn fill(b: &Browser, css: &str, value: &str) {
    let input = b.find(css).await.unwrap();
    b.execute(
        "arguments[0].value = arguments[1];",
        &[input.as_arg(), value.into()],
    )
    .await
    .unwrap();
}

/// The values of attribute `name` of the elements `css` finds, in page order.
async fn attrs(b: &Browser, css: &str, name: &str) -> Vec<String> {
    let mut out = Vec::new();
    for e in b.find_all(css).await.unwrap() {
        out.push(e.attr(name).await.unwrap().unwrap_or_default());
    }
    out
}

/// The audit pages, replayed from the event store, agree with the read models: the
/// transferred customer's owners in order, a manager's customers at the end of a period,
/// the checkpoint chain linked and the latest checkpoint's events as sealed, and the
/// administrator's opening of that customer's 360 recorded as a read.
async fn the_audit_pages_work(b: &Browser, d: &Demo) {
    let periods = d.read.all_periods().await.unwrap();
    let (transferred, _) = interesting(&periods);
    let id = transferred[0].customer_id.clone();
    b.goto(&format!("{}/ui/customers/{id}", d.base))
        .await
        .unwrap();
    let link = b.find("#audit-replay").await.unwrap();
    let href = link.attr("href").await.unwrap().unwrap();
    assert!(
        href.ends_with(&format!("/ui/audit/customers/{id}")),
        "{href}"
    );

    b.goto(&format!("{}/ui/audit", d.base)).await.unwrap();
    b.find("#nav-audit[aria-current='page']").await.unwrap();
    check_page(b, "audit").await;
    fill(b, "#c-id", &id).await;
    click_and_load(b, "#customer-replay").await;
    assert!(b
        .url()
        .await
        .unwrap()
        .contains(&format!("/ui/audit/customers/{id}")));
    check_page(b, "audit-customer").await;
    let replayed: Vec<String> = attrs(b, "#entries tbody tr", "data-new-owner")
        .await
        .into_iter()
        .filter(|o| !o.is_empty())
        .collect();
    let timeline: Vec<String> = d
        .read
        .ownership_timeline(&id)
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.manager_id)
        .collect();
    assert_eq!(replayed, timeline, "the replay and the read model agree");
    let at = local_minute(transferred[1].from_us + 60_000_000);
    fill(b, "#c-as-of", &at).await;
    click_and_load(b, "#customer-replay").await;
    let then = b.find("#replay-owner-then").await.unwrap();
    assert_eq!(
        then.attr("data-manager-id").await.unwrap().as_deref(),
        Some(transferred[1].manager_id.as_str()),
        "as of {at}"
    );
    check_page(b, "audit-customer-as-of").await;

    a_manager_replay_ends_with_the_portfolio(b, d, &id, &transferred[1].manager_id).await;
    the_checkpoint_chain_links(b, d).await;
    the_reads_are_recorded(b, d, &id).await;

    // In Chinese, the auditors' terms.
    b.goto(&format!("{}/ui/audit", d.base)).await.unwrap();
    click_and_load(b, "#lang-switch").await;
    b.find("html[lang='zh-CN']").await.unwrap();
    let h2 = texts(b, "h2").await;
    assert!(h2.contains(&"客户归属审计回放".to_string()), "{h2:?}");
    check_page(b, "audit-zh").await;
    click_and_load(b, "#lang-switch").await;
    b.find("html[lang='en']").await.unwrap();
}

/// Over a period that holds the whole demo, the customers a manager held at its end are
/// their portfolio in the read models: the manager who received the transfer (through the
/// form; the transfer is among the changes), and the largest portfolio (by URL, with
/// local dates).
async fn a_manager_replay_ends_with_the_portfolio(b: &Browser, d: &Demo, id: &str, m: &str) {
    b.goto(&format!("{}/ui/audit", d.base)).await.unwrap();
    fill(b, "#m-manager", m).await;
    fill(b, "#m-from", "2026-01-01T00:00").await;
    fill(b, "#m-to", "2030-01-01T00:00").await;
    click_and_load(b, "#manager-replay").await;
    check_page(b, "audit-manager").await;
    held_at_end_is_the_portfolio(b, d, m).await;
    let received = b
        .find_all(&format!(
            "#entries tbody tr[data-customer-id='{id}'][data-new-owner='{m}']"
        ))
        .await
        .unwrap();
    assert!(!received.is_empty(), "the transfer is among the changes");

    let counts = d
        .read
        .portfolio_counts(crm_projections::PortfolioBy::Manager)
        .await
        .unwrap();
    let largest = counts.iter().max_by_key(|c| c.customers).unwrap();
    b.goto(&format!(
        "{}/ui/audit/managers/{}?from=2026-01-01&to=2030-01-01",
        d.base, largest.key
    ))
    .await
    .unwrap();
    let held = held_at_end_is_the_portfolio(b, d, &largest.key).await;
    assert_eq!(held as i64, largest.customers);
    assert!(held > 0);
}

/// The replay shown is manager `m`'s, and what it held at the end is their portfolio;
/// answers how many.
async fn held_at_end_is_the_portfolio(b: &Browser, d: &Demo, m: &str) -> usize {
    let shown = b.find("#replay-manager").await.unwrap();
    assert_eq!(
        shown.attr("data-manager-id").await.unwrap().as_deref(),
        Some(m)
    );
    let mut held = attrs(b, "#held-at-end li", "data-customer-id").await;
    held.sort();
    let mut want: Vec<String> = d
        .read
        .portfolio(m)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.customer_id)
        .collect();
    want.sort();
    assert_eq!(held, want, "held at the end of the replay = the portfolio");
    let read: u64 = b
        .find("#events-read")
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
        .parse()
        .unwrap();
    assert!(read > 0);
    held.len()
}

/// The demo sealed its log and verified it: the checkpoints checked link, the last
/// verification is shown, and the latest checkpoint's events are those it sealed.
async fn the_checkpoint_chain_links(b: &Browser, d: &Demo) {
    b.goto(&format!("{}/ui/audit", d.base)).await.unwrap();
    click_and_load(b, "#check-chain").await;
    check_page(b, "audit-checkpoints").await;
    b.find("#chain-status[data-linked='true']").await.unwrap();
    // The demo's full verification, recorded in the store as `crm audit verify` records it.
    b.find("#last-verification[data-ok='true'][data-number='1']")
        .await
        .unwrap();
    let rows = attrs(b, "#checkpoints tbody tr", "data-linked").await;
    assert!(
        !rows.is_empty() && rows.iter().all(|l| l == "true"),
        "{rows:?}"
    );
    let last = b.find("#checked-range").await.unwrap();
    let last: u64 = last
        .attr("data-last")
        .await
        .unwrap()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        attrs(b, "#checkpoints tbody tr", "data-seq").await.first(),
        Some(&last.to_string()),
        "newest first"
    );
    assert!(
        b.try_find("#span-status").await.unwrap().is_none(),
        "asked for, not on every visit"
    );
    click_and_load(b, "#check-span").await;
    check_page(b, "audit-checkpoint-span").await;
    b.find("#span-status[data-ok='true']").await.unwrap();
    let found = b.find("#span-found").await.unwrap().text().await.unwrap();
    let sealed = b.find("#span-sealed").await.unwrap().text().await.unwrap();
    assert_eq!(found, sealed);
}

/// Opening the customer's 360 as the administrator was recorded: the reads page lists it.
async fn the_reads_are_recorded(b: &Browser, d: &Demo, id: &str) {
    b.goto(&format!("{}/ui/audit", d.base)).await.unwrap();
    fill(b, "#r-customer", id).await;
    fill(b, "#r-reader", "person:admin").await;
    click_and_load(b, "#reads-search").await;
    check_page(b, "audit-reads").await;
    let routes = attrs(
        b,
        "#reads tbody tr[data-reader='person:admin']",
        "data-route",
    )
    .await;
    assert!(
        routes.iter().any(|r| r == "workbench.customer"),
        "{routes:?}"
    );
    let listed = b
        .find_all(&format!("#reads tbody li[data-customer-id='{id}']"))
        .await
        .unwrap();
    assert_eq!(
        listed.len(),
        routes.len(),
        "every record names the customer"
    );
}

async fn the_language_switch_works(b: &Browser, d: &Demo) {
    b.goto(&format!("{}/ui/ownership", d.base)).await.unwrap();
    assert_eq!(
        b.find("h1").await.unwrap().text().await.unwrap(),
        "Portfolios"
    );
    click_and_load(b, "#lang-switch").await;
    b.find("html[lang='zh-CN']").await.unwrap();
    assert_eq!(
        b.find("h1").await.unwrap().text().await.unwrap(),
        "客户保有量"
    );
    assert!(b.url().await.unwrap().ends_with("/ui/ownership?by=manager"));
    b.goto(&format!("{}/ui/pool", d.base)).await.unwrap();
    assert_eq!(
        b.find("h1").await.unwrap().text().await.unwrap(),
        "公海客户"
    );
    check_page(b, "pool-zh").await;
    click_and_load(b, "#lang-switch").await;
    b.find("html[lang='en']").await.unwrap();
}

async fn the_keyboard_reaches_the_content(b: &Browser, d: &Demo) {
    b.goto(&format!("{}/ui/ownership", d.base)).await.unwrap();
    b.send_keys_to_active(keys::TAB).await.unwrap();
    let skip = b.active_element().await.unwrap();
    assert_eq!(skip.attr("class").await.unwrap().as_deref(), Some("skip"));
    b.send_keys_to_active(keys::ENTER).await.unwrap();
    let focused = b.active_element().await.unwrap();
    assert_eq!(focused.attr("id").await.unwrap().as_deref(), Some("main"));
}

/// The owners of the customers listed.
async fn owner_ids(b: &Browser) -> Vec<String> {
    let mut out = Vec::new();
    for e in b
        .find_all("#customers tbody td[data-manager-id]")
        .await
        .unwrap()
    {
        out.push(e.attr("data-manager-id").await.unwrap().unwrap());
    }
    out
}

async fn a_manager_sees_only_their_own(b: &Browser, d: &Demo) {
    let managers = d.read.managers().await.unwrap();
    let counts = d
        .read
        .portfolio_counts(crm_projections::PortfolioBy::Manager)
        .await
        .unwrap();
    let holds = |id: &str| counts.iter().any(|c| c.key == id && c.customers > 0);
    // A manager (not a team lead) with customers, and another team's manager's customer.
    let a = managers
        .iter()
        .find(|m| m.role == "manager" && holds(&m.manager_id))
        .expect("a manager with customers");
    let b_mgr = managers
        .iter()
        .find(|m| m.team != a.team && holds(&m.manager_id))
        .expect("another team's manager with customers");
    let others = d.read.portfolio(&b_mgr.manager_id).await.unwrap();
    sign_in_as(b, &d.base, &format!("{}, manager", a.name)).await;
    assert!(
        b.url().await.unwrap().ends_with("/ui/book"),
        "a manager lands on their book"
    );
    check_page(b, "book").await;
    the_book_counts_down_to_the_pool(b, d).await;
    let owners = owner_ids(b).await;
    assert!(!owners.is_empty());
    assert!(owners.iter().all(|o| *o == a.manager_id), "{owners:?}");

    // Another manager's book or customer, by URL: the same refusal as the API's.
    b.goto(&format!("{}/ui/book?manager={}", d.base, b_mgr.manager_id))
        .await
        .unwrap();
    let owners = owner_ids(b).await;
    assert!(owners.iter().all(|o| *o == a.manager_id), "{owners:?}");
    b.goto(&format!(
        "{}/ui/customers/{}",
        d.base, others[0].customer_id
    ))
    .await
    .unwrap();
    let problem = b.find("#problem").await.unwrap().text().await.unwrap();
    assert!(problem.contains("no customer"), "{problem}");
    assert_eq!(
        b.find("h1").await.unwrap().text().await.unwrap(),
        "Not found"
    );
    let _ = b.console_errors().await; // the 404 itself is logged as a failed load

    // The audit pages are the auditors' and administrators': not in the navigation, and
    // by URL the API's refusal.
    assert!(b.try_find("#nav-audit").await.unwrap().is_none());
    b.goto(&format!("{}/ui/audit", d.base)).await.unwrap();
    assert_eq!(
        b.find("h1").await.unwrap().text().await.unwrap(),
        "Not allowed"
    );
    let problem = b.find("#problem").await.unwrap().text().await.unwrap();
    assert!(problem.contains("may not read"), "{problem}");
    let _ = b.console_errors().await; // the 403 itself is logged as a failed load
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forms_refuse_forged_posts_and_pages_carry_the_policy() {
    let d = demo().await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let page = http
        .get(format!("{}/ui/sign-in", d.base))
        .send()
        .await
        .unwrap();
    let csp = page.headers()["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert_eq!(page.headers()["x-frame-options"], "DENY");
    let pre = page
        .headers()
        .get_all("set-cookie")
        .iter()
        .find_map(|v| v.to_str().ok()?.strip_prefix("crm-pre="))
        .map(|v| v.split(';').next().unwrap().to_string())
        .expect("a pre-session cookie");
    let html = page.text().await.unwrap();
    let csrf = html
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap()
        .to_string();

    let post = |form: Vec<(&'static str, String)>, site: &'static str| {
        http.post(format!("{}/ui/sign-in/local", d.base))
            .header("cookie", format!("crm-pre={pre}"))
            .header("sec-fetch-site", site)
            .form(&form)
            .send()
    };
    let session = |r: &reqwest::Response| {
        r.headers()
            .get_all("set-cookie")
            .iter()
            .any(|v| v.to_str().unwrap().starts_with("crm-session="))
    };
    // No token, a token of another secret, another site: refused, no session.
    for (form, site) in [
        (
            vec![("csrf", String::new()), ("person", "0".into())],
            "same-origin",
        ),
        (
            vec![("csrf", "AAAA".into()), ("person", "0".into())],
            "same-origin",
        ),
        (
            vec![("csrf", csrf.clone()), ("person", "0".into())],
            "cross-site",
        ),
    ] {
        let r = post(form, site).await.unwrap();
        assert_eq!(r.status(), 403);
        assert!(!session(&r));
    }
    let genuine = vec![
        ("csrf", csrf),
        ("person", "0".into()),
        ("next", "//evil.example/phish".into()),
    ];
    let r = post(genuine, "same-origin").await.unwrap();
    assert_eq!(r.status(), 303);
    assert!(session(&r), "the genuine form signs in");
    // The open redirect a `next` could be: only the workbench's own paths.
    assert_eq!(r.headers()["location"], "/ui/");
    let cookie = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .find_map(|v| v.to_str().ok()?.strip_prefix("crm-session="))
        .map(|v| format!("crm-session={}", v.split(';').next().unwrap()))
        .unwrap();
    a_link_from_another_site_reads_nothing(&http, &d, &cookie).await;
}

/// Each owned customer of the book shows when the pool rules return it: the due instant
/// the domain's own rule gives for its stream under the policy in force, and the warning
/// highlight inside the policy's warning window; the pool page states the claim cap.
async fn the_book_counts_down_to_the_pool(b: &Browser, d: &Demo) {
    use crm_domain::customer::{timers, CustomerEvent, CustomerState};
    use crm_domain::policy::{PolicyEvent, PolicyState, POLICY_STREAM};
    use crm_eventstore::Streams;
    let store = crm_eventstore::sqlite::SqliteEventStore::open(&d.db.0)
        .await
        .unwrap();
    let mut policy = PolicyState::default();
    for e in store.read_stream(POLICY_STREAM, 0).await.unwrap() {
        policy.apply(&PolicyEvent::decode(&e.event_type, e.schema_version, &e.payload).unwrap());
    }
    let policy = policy.current;
    let cells = b.find_all("#customers tbody tr").await.unwrap();
    assert!(!cells.is_empty());
    let mut counted = 0;
    for row in &cells {
        let link = row.find_css("th a").await.unwrap();
        let id = link.attr("href").await.unwrap().unwrap();
        let id = id.trim_start_matches("/ui/customers/");
        let mut state = CustomerState::default();
        for e in store
            .read_stream(&format!("customer-{id}"), 0)
            .await
            .unwrap()
        {
            state.apply(
                &CustomerEvent::decode(&e.event_type, e.schema_version, &e.payload).unwrap(),
            );
        }
        let cell = row.find_css("td.returns").await.unwrap();
        let Some((_, due)) = state
            .registered()
            .and_then(|c| timers::pool_return(c, &policy))
        else {
            assert!(cell.attr("data-days").await.unwrap().is_none());
            continue;
        };
        let days = (due - chrono::Utc::now()).num_days();
        let shown: i64 = cell
            .attr("data-days")
            .await
            .unwrap()
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            (shown - days).abs() <= 1,
            "{id}: shown {shown}, the rule gives {days}"
        );
        let warned = cell.attr("class").await.unwrap().unwrap().contains("warn");
        assert_eq!(
            warned,
            days <= i64::from(policy.document.pool.warning_days),
            "{id}"
        );
        counted += 1;
    }
    assert!(counted > 0, "some customer of the book is due to return");
    b.goto(&format!("{}/ui/pool", d.base)).await.unwrap();
    let cap = b.find("#claim-cap").await.unwrap().text().await.unwrap();
    assert_eq!(cap, policy.document.pool.daily_claim_cap.to_string());
    b.goto(&format!("{}/ui/book", d.base)).await.unwrap();
}

/// The funnel page's time in stage and moves of the last 30 local days, against the read
/// models asked the same questions.
async fn time_in_stage_and_moves_equal_the_read_models(b: &Browser, d: &Demo) {
    let stays: BTreeMap<String, i64> = d
        .read
        .time_in_stage(Slice::All)
        .await
        .unwrap()
        .into_iter()
        .map(|t| (t.stage, t.completed_stays))
        .collect();
    let mut shown = BTreeMap::new();
    for row in b.find_all("#time-in-stage tbody tr").await.unwrap() {
        let stage = row.find_css("th").await.unwrap().text().await.unwrap();
        let n = row
            .find_css("td:nth-of-type(2)")
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        shown.insert(stage, n.parse::<i64>().unwrap());
    }
    assert_eq!(shown, stays, "time in stage: completed stays per stage");
    assert!(!stays.is_empty());
    let cal: crm_projections::calendar::Calendar = "Asia/Shanghai".parse().unwrap();
    let now = chrono::Utc::now().timestamp_micros();
    let from = cal.start_of(cal.date(now) - chrono::Days::new(30));
    let g = crm_projections::calendar::Granularity::Month;
    let moves = d
        .read
        .stage_transitions(from, now, (&cal, g), Slice::All)
        .await
        .unwrap();
    let total: i64 = moves.iter().map(|m| m.transitions).sum();
    let reactivated: i64 = moves.iter().map(|m| m.reactivations).sum();
    let shown: i64 = texts(b, "#moves tbody td.num:nth-last-child(2)")
        .await
        .iter()
        .map(|t| t.parse::<i64>().unwrap())
        .sum();
    assert_eq!(shown, total, "moves in the last 30 days");
    assert!(total > 0);
    let r = b.find("#reactivated").await.unwrap().text().await.unwrap();
    assert_eq!(r, reactivated.to_string());
}

/// The demo's records of personal-data reads so far.
async fn reads_recorded(d: &Demo) -> usize {
    use crm_eventstore::{Log, LogPosition};
    let store = crm_eventstore::sqlite::SqliteEventStore::open(&d.db.0)
        .await
        .unwrap();
    let all = store.read_all(LogPosition::START, 1_000_000).await.unwrap();
    all.iter()
        .filter(|e| e.event_type == "PersonalDataRead")
        .count()
}

/// A link from another site to a page that shows personal data shows a page asking the
/// person to go on, and records no read; going on (same site) shows it and records one.
async fn a_link_from_another_site_reads_nothing(http: &reqwest::Client, d: &Demo, cookie: &str) {
    // Not the first: the demo erased its personal data (nothing left to read).
    let id = d.read.customers("", 2).await.unwrap()[1]
        .customer_id
        .clone();
    let url = format!("{}/ui/customers/{id}", d.base);
    let get = |site: &'static str| {
        http.get(&url)
            .header("cookie", cookie)
            .header("sec-fetch-site", site)
            .send()
    };
    let before = reads_recorded(d).await;
    let page = get("cross-site").await.unwrap().text().await.unwrap();
    assert!(page.contains("id=\"continue\"") && !page.contains("id=\"customer-name\""));
    assert_eq!(
        reads_recorded(d).await,
        before,
        "no read recorded for another site's link"
    );
    let page = get("same-origin").await.unwrap().text().await.unwrap();
    assert!(
        page.contains("id=\"customer-name\""),
        "going on shows the customer"
    );
    assert_eq!(reads_recorded(d).await, before + 1, "and records the read");
}

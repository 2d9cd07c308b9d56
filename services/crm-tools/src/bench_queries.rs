//! `crm bench queries`: what an analyst or an auditor waits for, asked of a running query
//! service one request at a time (scripts/bench-load runs it after the load, against
//! the read models and the store the load just filled).
//!
//! Random customers are drawn from the read model, each with a random instant between
//! its registration and now; then, per customer: who owned it at that instant from the
//! ownership read model (`/v1/customers/{id}/ownership?as_of=`), the same answer replayed
//! from the event store (`/v1/audit/customers/{id}/ownership?as_of=`) and the newest page
//! of its timeline; and a few whole-book questions: the funnel as of an instant and a
//! month of manager KPIs. Latencies are measured at the client (HTTP included), p50, p99
//! and max per question.

use std::time::Instant;

use anyhow::Context as _;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::stats::Latencies;

#[derive(Debug, clap::Args)]
pub struct QueryArgs {
    /// The query service's base URL (e.g. http://127.0.0.1:8081).
    #[arg(long, env = "CRM_QUERY_URL", hide_env_values = true)]
    query_url: String,
    /// The read-model database (to draw customers from).
    #[arg(long, env = "CRM_READ_URL", hide_env_values = true)]
    read_url: String,
    /// Bearer token (an `analyst` token with the audit scope), if the service checks.
    #[arg(long, env = "CRM_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Customers asked about.
    #[arg(long, default_value_t = 1_000)]
    samples: usize,
    /// Whole-book questions (funnel, KPIs) asked.
    #[arg(long, default_value_t = 20)]
    book_samples: usize,
    #[arg(long, default_value_t = 7)]
    seed: u64,
}

pub async fn run(a: QueryArgs) -> anyhow::Result<()> {
    let mut db = <sqlx::PgConnection as sqlx::Connection>::connect(&a.read_url)
        .await
        .with_context(|| format!("connecting to {}", a.read_url))?;
    let customers: Vec<(String, i64)> = sqlx::query_as(
        "SELECT customer_id, registered_at_us FROM rm_customers ORDER BY random() LIMIT $1",
    )
    .bind(a.samples as i64)
    .fetch_all(&mut db)
    .await
    .context("drawing customers from rm_customers")?;
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM rm_customers")
        .fetch_one(&mut db)
        .await?;
    anyhow::ensure!(!customers.is_empty(), "no customers in the read model yet");
    println!(
        "queries: {} customers drawn of {total}, asked one request at a time",
        customers.len()
    );
    let client = Client {
        http: reqwest::Client::new(),
        base: a.query_url.trim_end_matches('/').to_string(),
        token: a.token.clone(),
    };
    let now_us = chrono::Utc::now().timestamp_micros();
    let mut rng = SmallRng::seed_from_u64(a.seed);
    let instant = |rng: &mut SmallRng, from_us: i64| {
        let us = rng.gen_range(from_us..=now_us.max(from_us));
        chrono::DateTime::<chrono::Utc>::from_timestamp_micros(us)
            .expect("in range")
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
    };
    let (mut owner_at, mut replay_at, mut timeline) =
        per_customer(&client, &customers, &mut rng, &instant).await?;
    let first_us: i64 = sqlx::query_scalar("SELECT min(registered_at_us) FROM rm_customers")
        .fetch_one(&mut db)
        .await?;
    let mut funnel = Latencies::default();
    let mut kpis = Latencies::default();
    let mut kpi_bytes = 0;
    for _ in 0..a.book_samples {
        let t = instant(&mut rng, first_us);
        funnel.record(client.get(format!("/v1/funnel/stages?as_of={t}")).await?.0);
        // The last 30 days (the default range).
        let (took, bytes) = client
            .get("/v1/kpis?level=manager&granularity=day".to_string())
            .await?;
        kpis.record(took);
        kpi_bytes = bytes;
    }
    report("owner as of an instant (read model)", &mut owner_at);
    report(
        "owner as of an instant (replayed from the store)",
        &mut replay_at,
    );
    report("timeline, newest 20 events", &mut timeline);
    report(
        &format!("funnel per stage as of an instant ({total} customers)"),
        &mut funnel,
    );
    report(
        &format!("KPIs per manager and day, 30 days ({kpi_bytes} bytes)"),
        &mut kpis,
    );
    let owners: Vec<String> = sqlx::query_scalar(
        "SELECT owner_id FROM (SELECT DISTINCT owner_id FROM rm_customers \
         WHERE owner_id IS NOT NULL) o ORDER BY random() LIMIT $1",
    )
    .bind(a.book_samples as i64)
    .fetch_all(&mut db)
    .await
    .context("drawing managers from rm_customers")?;
    pages(&client, &customers, &owners, a.book_samples, &mut rng).await
}

/// Per customer: the owner as of a random instant (read model, then replayed), and the
/// newest page of its timeline.
async fn per_customer(
    client: &Client,
    customers: &[(String, i64)],
    rng: &mut SmallRng,
    instant: &impl Fn(&mut SmallRng, i64) -> String,
) -> anyhow::Result<(Latencies, Latencies, Latencies)> {
    let mut owner_at = Latencies::default();
    let mut replay_at = Latencies::default();
    let mut timeline = Latencies::default();
    for (id, registered_us) in customers {
        let t = instant(rng, *registered_us);
        let path = format!("/v1/customers/{id}/ownership?as_of={t}");
        owner_at.record(client.get(path).await?.0);
        let path = format!("/v1/audit/customers/{id}/ownership?as_of={t}");
        replay_at.record(client.get(path).await?.0);
        let path = format!("/v1/customers/{id}/timeline?limit=20");
        timeline.record(client.get(path).await?.0);
    }
    Ok((owner_at, replay_at, timeline))
}

/// The query service, asked one request at a time.
struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Client {
    /// GET `path`: how long the answer took (HTTP on loopback included) and its size.
    async fn get(&self, path: String) -> anyhow::Result<(std::time::Duration, usize)> {
        let mut req = self.http.get(format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let started = Instant::now();
        let resp = req.send().await.with_context(|| path.clone())?;
        let status = resp.status();
        let body = resp.bytes().await?;
        anyhow::ensure!(
            status.is_success(),
            "{path}: {status}: {}",
            String::from_utf8_lossy(&body)
        );
        Ok((started.elapsed(), body.len()))
    }
}

/// The workbench's pages (served when the query service runs without authentication, as
/// `scripts/bench-load` runs it): each customer's 360 as of an instant, and the
/// whole-book pages. A page's time is the client's, so HTTP on loopback is included.
async fn pages(
    client: &Client,
    customers: &[(String, i64)],
    owners: &[String],
    book_samples: usize,
    rng: &mut SmallRng,
) -> anyhow::Result<()> {
    if client.token.is_some() {
        println!("  pages: not measured (they take a session, not a bearer token: run the query service with CRM_AUTH=off, as scripts/bench-load does)");
        return Ok(());
    }
    let now_us = chrono::Utc::now().timestamp_micros();
    let mut customer = Latencies::default();
    let mut replay = Latencies::default();
    for (id, registered_us) in customers {
        let us = rng.gen_range(*registered_us..=now_us.max(*registered_us));
        let at = chrono::DateTime::<chrono::Utc>::from_timestamp_micros(us)
            .expect("in range")
            .format("%Y-%m-%dT%H:%M:%SZ");
        let path = format!("/ui/customers/{id}?as_of={at}");
        customer.record(client.get(path).await?.0);
        replay.record(client.get(format!("/ui/audit/customers/{id}")).await?.0);
    }
    report("page: customer 360 as of an instant", &mut customer);
    report("page: audit replay of a customer", &mut replay);
    // Each manager's book once: its customers' streams are read (for the countdowns)
    // as a manager's first visit of the day reads them, from wherever they are.
    let mut books = Latencies::default();
    for owner in owners {
        books.record(client.get(format!("/ui/book?manager={owner}")).await?.0);
    }
    report("page: a manager's book, first 50, each once", &mut books);
    let whole_book = [
        ("page: portfolios by manager", "/ui/ownership?by=manager"),
        ("page: portfolios by region", "/ui/ownership?by=region"),
        ("page: the pool, first 50", "/ui/pool"),
        ("page: the book, first 50", "/ui/book"),
        ("page: the funnel now", "/ui/funnel"),
        ("page: KPIs per manager and day, 30 days", "/ui/kpis"),
        ("page: open complaints by SLA state", "/ui/complaints"),
        (
            "page: open complaints, escalated only",
            "/ui/complaints?state=escalated",
        ),
        (
            "page: open complaints, breached only",
            "/ui/complaints?state=breached",
        ),
        (
            "page: open complaints, warned only",
            "/ui/complaints?state=warned",
        ),
        (
            "page: open complaints, due only",
            "/ui/complaints?state=due",
        ),
        (
            "page: the latest checkpoints checked",
            "/ui/audit/checkpoints",
        ),
        (
            "page: the latest checkpoint's events checked (on request)",
            "/ui/audit/checkpoints?span=1",
        ),
    ];
    for (what, path) in whole_book {
        let mut l = Latencies::default();
        for _ in 0..book_samples {
            l.record(client.get(path.to_string()).await?.0);
        }
        report(what, &mut l);
    }
    Ok(())
}

fn report(what: &str, l: &mut Latencies) {
    println!("  {what:<58} {}", l.summary());
}

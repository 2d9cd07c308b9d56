//! `crm load`: drive a seeded workload (W1, W2 or a custom size) through the running
//! platform's ingress (NATS request/reply, HTTP, or both), at a target rate or as fast as
//! the platform answers, with a live progress line; then report throughput, latency
//! percentiles (p50/p99/p999) and how long the projectors took to catch up.
//!
//! Clients of a CRM retry: a command whose answer never came (service killed, broker
//! restarting, database unavailable → 503) is sent again **with the same command id**
//! until `--retry-for` runs out, so the event store's idempotency decides whether it was
//! already accepted. `--record FILE` writes the id of every accepted command, which the
//! fault suite checks against the event store ("0 accepted commands lost").

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chrono::Utc;
use crm_bus::subjects::PARTITIONS;
use crm_bus::Subjects;
use crm_contracts::v1;
use crm_contracts::wire::{decode_reply, encode, Format};
use crm_domain::Command;
use serde_json::json;
use uuid::Uuid;

use crate::stats::Latencies;
use crate::workload::{self, Size, Workload};

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Preset {
    W1,
    W2,
}

#[derive(Debug, clap::Args)]
pub struct LoadArgs {
    /// Workload size: w1 (200 managers, 10,000 customers, 100,000 commands) or w2
    /// (1,000 managers, 1,000,000 customers, 10,000,000 commands).
    #[arg(long, value_enum, default_value = "w1")]
    workload: Preset,
    /// Override the preset's number of customers.
    #[arg(long)]
    customers: Option<usize>,
    /// Override the preset's number of main-phase commands.
    #[arg(long)]
    commands: Option<usize>,
    /// Override the preset's number of managers.
    #[arg(long)]
    managers: Option<usize>,
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// NATS server of the command service's request/reply ingress (credentials may be in
    /// the URL). Given alone, every command goes over NATS.
    #[arg(long, env = "CRM_NATS_URL", hide_env_values = true)]
    nats: Option<String>,
    #[command(flatten)]
    nats_access: crm_bus::connect::NatsAccess,
    #[arg(long, env = "CRM_SUBJECT_PREFIX", default_value = "crm")]
    subject_prefix: String,
    /// Base URL of the command service's HTTP API (e.g. http://127.0.0.1:8080). Given
    /// alone, every command goes over HTTP.
    #[arg(long, env = "CRM_COMMAND_URL", hide_env_values = true)]
    http: Option<String>,
    /// With both ingresses given: the share of commands sent over HTTP.
    #[arg(long, default_value_t = 0.1)]
    http_share: f64,
    /// Bearer token for both ingresses (a `service` token with the `commands` scope).
    #[arg(long, env = "CRM_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Commands per second to aim at; 0 sends as fast as the platform answers. With a
    /// rate, latency counts from when a command was due, not when it left (no
    /// coordinated omission).
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Commands in flight.
    #[arg(long, default_value_t = 32)]
    in_flight: usize,
    /// Seconds to wait for one answer before sending the command again.
    #[arg(long, default_value_t = 10)]
    timeout: u64,
    /// Keep resending a command that got no answer (or a 503) for this many seconds.
    #[arg(long, default_value_t = 120)]
    retry_for: u64,
    /// Write the id of every accepted command, one per line.
    #[arg(long)]
    record: Option<PathBuf>,
    /// The JetStream stream the relay publishes to (for relay and projection lag).
    #[arg(long, env = "CRM_STREAM", default_value = "CRM_EVENTS")]
    stream: String,
    /// Projector consumer group(s) whose lag to report (repeatable).
    #[arg(long = "group", default_value = "read-models")]
    groups: Vec<String>,
    /// Seconds to wait, after the last answer, for the stream and the projectors.
    #[arg(long, default_value_t = 300)]
    lag_timeout: u64,
    /// Write the summary as JSON to this file too.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// Where one command goes.
#[derive(Clone)]
pub(crate) enum Ingress {
    Nats(async_nats::Client, Subjects, Option<String>, Duration),
    Http(reqwest::Client, String, Option<String>, Duration),
}

/// The answer to one command.
pub(crate) enum Outcome {
    Accepted {
        events: usize,
    },
    Refused {
        code: String,
    },
    /// No answer, a transport error or a 5xx: try again with the same command id.
    Retry(String),
}

impl Ingress {
    pub(crate) async fn send(
        &self,
        meta: &v1::CommandMeta,
        command: &Command,
    ) -> anyhow::Result<Outcome> {
        match self {
            Ingress::Nats(nats, subjects, token, timeout) => {
                let body = encode(meta, command, Format::Protobuf)?;
                let mut request = async_nats::Request::new()
                    .payload(body.into())
                    .timeout(Some(*timeout));
                if let Some(t) = token {
                    let mut headers = async_nats::HeaderMap::new();
                    headers.insert("Authorization", format!("Bearer {t}").as_str());
                    request = request.headers(headers);
                }
                let msg = match nats
                    .send_request(subjects.command(command.name()), request)
                    .await
                {
                    Ok(msg) => msg,
                    Err(e) => return Ok(Outcome::Retry(format!("nats: {e}"))),
                };
                let reply = decode_reply(&msg.payload, Format::Protobuf)?;
                Ok(match (reply.accepted, reply.problem) {
                    (true, _) => Outcome::Accepted {
                        events: reply.events.len(),
                    },
                    (false, Some(p)) if p.status >= 500 => {
                        Outcome::Retry(format!("{} {}", p.status, p.code))
                    }
                    (false, Some(p)) if p.status == 401 || p.status == 403 => anyhow::bail!(
                        "{} {} from the command service over NATS: give a service token (--token or CRM_TOKEN)",
                        p.status,
                        p.code
                    ),
                    (false, p) => Outcome::Refused {
                        code: p.map(|p| p.code).unwrap_or_default(),
                    },
                })
            }
            Ingress::Http(http, base, token, timeout) => {
                let body = encode(meta, command, Format::Json)?;
                let mut request = http
                    .post(format!("{base}/v1/commands/{}", command.name()))
                    .header("content-type", "application/json")
                    .timeout(*timeout)
                    .body(body);
                if let Some(t) = token {
                    request = request.bearer_auth(t);
                }
                let response = match request.send().await {
                    Ok(r) => r,
                    Err(e) => return Ok(Outcome::Retry(format!("http: {e}"))),
                };
                let status = response.status().as_u16();
                let body = match response.bytes().await {
                    Ok(b) => b,
                    Err(e) => return Ok(Outcome::Retry(format!("http: {e}"))),
                };
                if status >= 500 {
                    return Ok(Outcome::Retry(format!("HTTP {status}")));
                }
                if status == 401 || status == 403 {
                    anyhow::bail!(
                        "HTTP {status} from the command service: give a service token (--token or CRM_TOKEN)"
                    );
                }
                if status >= 300 {
                    let problem: serde_json::Value =
                        serde_json::from_slice(&body).unwrap_or_default();
                    return Ok(Outcome::Refused {
                        code: problem["code"].as_str().unwrap_or("?").to_string(),
                    });
                }
                let reply = decode_reply(&body, Format::Json)?;
                Ok(Outcome::Accepted {
                    events: reply.events.len(),
                })
            }
        }
    }
}

/// Counters of one phase, shared by its workers.
#[derive(Default)]
struct Tally {
    sent: usize,
    accepted: usize,
    refused: usize,
    failed: usize,
    retries: usize,
    events: usize,
    latencies: Latencies,
    /// Latencies since the last progress line.
    window: Latencies,
    refusals: BTreeMap<String, usize>,
    last_retry_reason: Option<String>,
}

struct PhaseReport {
    name: &'static str,
    tally: Tally,
    elapsed: Duration,
}

/// The generator, shared by the workers: hands out the next command of the phase with
/// its due time.
struct Source {
    workload: Workload,
    setup: bool,
    remaining: usize,
    ticket: u64,
}

pub async fn run(a: LoadArgs) -> anyhow::Result<()> {
    let preset = match a.workload {
        Preset::W1 => workload::W1,
        Preset::W2 => workload::W2,
    };
    let size = Size {
        managers: a.managers.unwrap_or(preset.managers),
        customers: a.customers.unwrap_or(preset.customers),
        commands: a.commands.unwrap_or(preset.commands),
    };
    anyhow::ensure!(
        size.managers > 0 && size.customers > 0,
        "a workload needs managers and customers"
    );
    anyhow::ensure!(a.in_flight > 0, "--in-flight must be at least 1");
    anyhow::ensure!(
        (0.0..=1.0).contains(&a.http_share),
        "--http-share is a fraction between 0 and 1"
    );
    let nats = match &a.nats {
        Some(url) => Some(
            crm_bus::connect::connect(url, &a.nats_access)
                .await
                .with_context(|| {
                    format!("connecting to NATS at {}", crm_bus::connect::redacted(url))
                })?,
        ),
        None => None,
    };
    let mut ingresses = Vec::new();
    if let Some(n) = &nats {
        ingresses.push(Ingress::Nats(
            n.clone(),
            Subjects::new(a.subject_prefix.clone()),
            a.token.clone(),
            Duration::from_secs(a.timeout),
        ));
    }
    if let Some(base) = &a.http {
        ingresses.push(Ingress::Http(
            reqwest::Client::new(),
            base.trim_end_matches('/').to_string(),
            a.token.clone(),
            Duration::from_secs(a.timeout),
        ));
    }
    anyhow::ensure!(
        !ingresses.is_empty(),
        "give --nats URL and/or --http URL: where the command service listens"
    );
    let via = match (&a.nats, &a.http) {
        (Some(_), Some(_)) => format!("NATS and HTTP ({:.0} % HTTP)", a.http_share * 100.0),
        (Some(_), None) => "NATS request/reply".to_string(),
        _ => "HTTP".to_string(),
    };
    let js = nats.clone().map(async_nats::jetstream::new);
    let lag = Lag {
        js,
        stream: a.stream.clone(),
        groups: a.groups.clone(),
    };
    let stream_start = lag.stream_last().await;

    let mut record = match &a.record {
        Some(path) => Some(std::io::BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
        )),
        None => None,
    };
    eprintln!(
        "crm load: {} managers, {} customers, then {} commands (seed {}) over {via}, {} in flight, {}",
        size.managers,
        size.customers,
        size.commands,
        a.seed,
        a.in_flight,
        if a.rate > 0.0 {
            format!("aiming at {} commands/s", a.rate)
        } else {
            "as fast as answered".into()
        }
    );
    let source = Arc::new(Mutex::new(Source {
        workload: Workload::sized(size, a.seed),
        setup: true,
        remaining: size.managers + size.customers,
        ticket: 0,
    }));
    let started = Instant::now();
    let mut phases = Vec::new();
    let total = size.managers + size.customers + size.commands;
    for (name, n) in [
        (
            "setup (managers and customers registered)",
            size.managers + size.customers,
        ),
        (
            "main (60 % contact, 20 % ownership, 20 % complaint)",
            size.commands,
        ),
    ] {
        {
            let mut s = source.lock().expect("source");
            s.setup = phases.is_empty();
            s.remaining = n;
        }
        let report = phase(
            &a,
            name,
            &ingresses,
            &source,
            started,
            total,
            &lag,
            record.as_mut(),
        )
        .await?;
        phases.push(report);
    }
    let answered = started.elapsed();
    if let Some(r) = record.as_mut() {
        r.flush()?;
    }

    // Lag after the last answer: the relay, then each projector group.
    let events: usize = phases.iter().map(|p| p.tally.events).sum();
    let target = stream_start.unwrap_or(0) + events as u64;
    let final_lag = lag
        .after_load(target, Duration::from_secs(a.lag_timeout))
        .await;

    // Report.
    println!(
        "crm load: {} commands over {via}, {} in flight, seed {}",
        total, a.in_flight, a.seed
    );
    let mut all = Latencies::default();
    let (mut accepted, mut refused, mut failed, mut retries) = (0, 0, 0, 0);
    let mut refusals: BTreeMap<String, usize> = BTreeMap::new();
    let mut phase_json = Vec::new();
    for p in &mut phases {
        let t = &mut p.tally;
        let rate = t.sent as f64 / p.elapsed.as_secs_f64().max(1e-9);
        let (p50, p99, p999) = (
            ms(t.latencies.quantile(0.5)),
            ms(t.latencies.quantile(0.99)),
            ms(t.latencies.quantile(0.999)),
        );
        println!(
            "  {:<52} {:>9} sent, {:>9} accepted, {:>7} refused, {:>4} failed in {:>8.1} s = {:>7.0}/s; p50 {p50:.2} ms, p99 {p99:.2} ms, p999 {p999:.2} ms",
            p.name,
            t.sent,
            t.accepted,
            t.refused,
            t.failed,
            p.elapsed.as_secs_f64(),
            rate
        );
        phase_json.push(json!({
            "phase": p.name, "sent": t.sent, "accepted": t.accepted, "refused": t.refused,
            "failed": t.failed, "retries": t.retries, "events": t.events,
            "seconds": p.elapsed.as_secs_f64(), "per_second": rate,
            "p50_ms": p50, "p99_ms": p99, "p999_ms": p999,
        }));
        accepted += t.accepted;
        refused += t.refused;
        failed += t.failed;
        retries += t.retries;
        for (k, v) in &t.refusals {
            *refusals.entry(k.clone()).or_default() += v;
        }
        all.merge(std::mem::take(&mut t.latencies));
    }
    let rate = total as f64 / answered.as_secs_f64();
    let (p50, p99, p999) = (
        ms(all.quantile(0.5)),
        ms(all.quantile(0.99)),
        ms(all.quantile(0.999)),
    );
    println!(
        "  all: {total} commands in {:.1} s = {rate:.0} commands/s; {accepted} accepted ({events} events), {refused} refused, {failed} without an answer, {retries} resent; latency p50 {p50:.2} ms, p99 {p99:.2} ms, p999 {p999:.2} ms",
        answered.as_secs_f64()
    );
    if !refusals.is_empty() {
        println!("  refusals by code: {refusals:?}");
    }
    if refusals.get("customer.duplicate").copied().unwrap_or(0) * 2 > size.customers {
        println!(
            "  most customers were already registered: this seed ran on this store before; a different --seed registers new ones"
        );
    }
    for line in final_lag.lines() {
        println!("  {line}");
    }
    if let Some(path) = &a.json {
        let summary = json!({
            "commands": total, "accepted": accepted, "refused": refused, "failed": failed,
            "retries": retries, "events": events, "seconds": answered.as_secs_f64(),
            "per_second": rate, "p50_ms": p50, "p99_ms": p99, "p999_ms": p999,
            "in_flight": a.in_flight, "rate_target": a.rate, "seed": a.seed, "via": via,
            "phases": phase_json, "refusals": refusals, "lag": final_lag.json(),
        });
        std::fs::write(path, serde_json::to_vec_pretty(&summary)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    anyhow::ensure!(
        failed == 0,
        "{failed} commands got no answer within {} s of retrying: their outcome is unknown",
        a.retry_for
    );
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

#[allow(clippy::too_many_arguments)]
async fn phase(
    a: &LoadArgs,
    name: &'static str,
    ingresses: &[Ingress],
    source: &Arc<Mutex<Source>>,
    load_started: Instant,
    total: usize,
    lag: &Lag,
    mut record: Option<&mut std::io::BufWriter<std::fs::File>>,
) -> anyhow::Result<PhaseReport> {
    let tally = Arc::new(Mutex::new(Tally::default()));
    let (accepted_tx, mut accepted_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..a.in_flight {
        let (source, tally, accepted_tx) = (source.clone(), tally.clone(), accepted_tx.clone());
        let ingresses = ingresses.to_vec();
        let (rate, share, retry_for) = (a.rate, a.http_share, Duration::from_secs(a.retry_for));
        workers.spawn(async move {
            // Spread HTTP commands evenly: this worker's n-th command goes over HTTP when
            // the running share falls below the target.
            let (mut sent, mut over_http) = (0usize, 0usize);
            loop {
                let (command, due) = {
                    let mut s = source.lock().expect("source");
                    if s.remaining == 0 {
                        break;
                    }
                    let command = if s.setup {
                        match s.workload.next_setup() {
                            Some(c) => c,
                            None => break,
                        }
                    } else {
                        s.workload.next_main()
                    };
                    s.remaining -= 1;
                    s.ticket += 1;
                    let due = (rate > 0.0)
                        .then(|| load_started + Duration::from_secs_f64(s.ticket as f64 / rate));
                    (command, due)
                };
                if let Some(due) = due {
                    tokio::time::sleep_until(due.into()).await;
                }
                let ingress = if ingresses.len() == 1 {
                    &ingresses[0]
                } else if (over_http as f64) < share * (sent + 1) as f64 {
                    over_http += 1;
                    &ingresses[1]
                } else {
                    &ingresses[0]
                };
                sent += 1;
                let meta = v1::CommandMeta {
                    command_id: Uuid::now_v7().to_string(),
                    actor: "service:load".into(),
                    correlation_id: None,
                    causation_id: None,
                    issued_at: Some(Utc::now().to_rfc3339()),
                };
                let t0 = due.unwrap_or_else(Instant::now).min(Instant::now());
                let mut retries = 0;
                let outcome = loop {
                    match ingress.send(&meta, &command).await? {
                        Outcome::Retry(why) if t0.elapsed() < retry_for => {
                            retries += 1;
                            tally.lock().expect("tally").last_retry_reason = Some(why);
                            tokio::time::sleep(Duration::from_millis(100 * retries.min(10))).await;
                        }
                        other => break other,
                    }
                };
                let took = t0.elapsed();
                let mut t = tally.lock().expect("tally");
                t.sent += 1;
                t.retries += retries as usize;
                match outcome {
                    Outcome::Accepted { events } => {
                        t.accepted += 1;
                        t.events += events;
                        t.latencies.record(took);
                        t.window.record(took);
                        let _ = accepted_tx.send(meta.command_id);
                    }
                    Outcome::Refused { code } => {
                        t.refused += 1;
                        t.latencies.record(took);
                        t.window.record(took);
                        *t.refusals.entry(code).or_default() += 1;
                    }
                    Outcome::Retry(why) => {
                        t.failed += 1;
                        t.last_retry_reason = Some(why);
                    }
                }
            }
            anyhow::Ok(())
        });
    }
    drop(accepted_tx);

    let tty = std::io::stderr().is_terminal();
    let every = if tty {
        Duration::from_secs(1)
    } else {
        Duration::from_secs(10)
    };
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    let (mut last_sent, mut last_at) = (0usize, Instant::now());
    loop {
        tokio::select! {
            id = accepted_rx.recv() => match id {
                Some(id) => if let Some(r) = record.as_mut() {
                    writeln!(r, "{id}")?;
                },
                None => {
                    // Every worker is done (each held a sender): surface their errors.
                    while let Some(r) = workers.join_next().await {
                        r??;
                    }
                    break;
                }
            },
            _ = tick.tick() => {
                // A worker that failed (a malformed answer, a refused token) stops the run.
                while let Some(r) = workers.try_join_next() {
                    r??;
                }
                let behind = lag.behind().await;
                let (sent, line) = {
                    let mut t = tally.lock().expect("tally");
                    let now_rate = (t.sent - last_sent) as f64 / last_at.elapsed().as_secs_f64();
                    let p99 = ms(t.window.quantile(0.99));
                    t.window = Latencies::default();
                    let issued = source.lock().expect("source").workload.issued();
                    let line = format!(
                        "[{:>7.1} s] {name}: {:>9}/{total} commands ({:>5.1} %), {now_rate:>7.0}/s now, p99 {p99:>6.1} ms, {} refused, {} resent{}{}",
                        load_started.elapsed().as_secs_f64(),
                        issued,
                        issued as f64 * 100.0 / total as f64,
                        t.refused,
                        t.retries,
                        match behind {
                            Some(b) => format!(", projectors {b} behind"),
                            None => String::new(),
                        },
                        match (&t.last_retry_reason, t.retries) {
                            (Some(why), r) if r > 0 => format!(" (last resend: {why})"),
                            _ => String::new(),
                        }
                    );
                    (t.sent, line)
                };
                last_sent = sent;
                last_at = Instant::now();
                if tty {
                    eprint!("\r{line}\x1b[K");
                } else {
                    eprintln!("{line}");
                }
            }
        }
    }
    if tty {
        eprintln!();
    }
    let tally = Arc::try_unwrap(tally)
        .map_err(|_| anyhow::anyhow!("workers still running"))?
        .into_inner()
        .expect("tally");
    Ok(PhaseReport {
        name,
        tally,
        elapsed: started.elapsed(),
    })
}

/// Relay and projection lag, read from JetStream: the stream's last sequence, and per
/// projector group the messages its partition consumers have not yet acknowledged.
struct Lag {
    js: Option<async_nats::jetstream::Context>,
    stream: String,
    groups: Vec<String>,
}

struct FinalLag {
    /// Seconds after the last answer until every event was in the stream.
    relay: Option<f64>,
    /// Per group: messages behind at the last answer, seconds until caught up.
    groups: Vec<(String, Option<u64>, Option<f64>)>,
    note: Option<String>,
}

impl FinalLag {
    fn lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(note) = &self.note {
            out.push(note.clone());
        }
        if let Some(r) = self.relay {
            out.push(format!(
                "relay: every event in the stream {r:.2} s after the last answer"
            ));
        }
        for (g, behind, caught) in &self.groups {
            out.push(match (behind, caught) {
                (Some(b), Some(s)) => format!(
                    "final projection lag ({g}): {b} events behind at the last answer, caught up {s:.2} s after it"
                ),
                (Some(b), None) => {
                    format!("final projection lag ({g}): {b} events behind at the last answer, NOT caught up within the timeout")
                }
                (None, _) => format!("final projection lag ({g}): no consumers of this group"),
            });
        }
        out
    }

    fn json(&self) -> serde_json::Value {
        json!({
            "relay_seconds": self.relay,
            "groups": self.groups.iter().map(|(g, b, s)| json!({
                "group": g, "behind_at_last_answer": b, "caught_up_seconds": s,
            })).collect::<Vec<_>>(),
            "note": self.note,
        })
    }
}

impl Lag {
    async fn stream_last(&self) -> Option<u64> {
        let js = self.js.as_ref()?;
        let mut stream = js.get_stream(&self.stream).await.ok()?;
        Some(stream.info().await.ok()?.state.last_sequence)
    }

    /// Messages a group's consumers have not acknowledged, or `None` when it has none.
    async fn group_behind(&self, group: &str) -> Option<u64> {
        let js = self.js.as_ref()?;
        let stream = js.get_stream(&self.stream).await.ok()?;
        let mut behind = 0;
        let mut found = false;
        for p in 0..PARTITIONS {
            let name = format!("{group}-p{p:02}");
            let Ok(mut consumer) = stream
                .get_consumer::<async_nats::jetstream::consumer::pull::Config>(&name)
                .await
            else {
                continue;
            };
            if let Ok(info) = consumer.info().await {
                found = true;
                behind += info.num_pending + info.num_ack_pending as u64;
            }
        }
        found.then_some(behind)
    }

    /// The largest backlog of any group, for the progress line.
    async fn behind(&self) -> Option<u64> {
        let mut worst = None;
        for g in &self.groups {
            if let Some(b) = self.group_behind(g).await {
                worst = Some(worst.unwrap_or(0).max(b));
            }
        }
        worst
    }

    async fn after_load(&self, target: u64, timeout: Duration) -> FinalLag {
        let mut result = FinalLag {
            relay: None,
            groups: Vec::new(),
            note: None,
        };
        if self.js.is_none() {
            result.note = Some("relay and projection lag: needs --nats to read JetStream".into());
            return result;
        }
        let t0 = Instant::now();
        let deadline = t0 + timeout;
        let mut behind_at_end = Vec::new();
        for g in &self.groups {
            behind_at_end.push(self.group_behind(g).await);
        }
        loop {
            match self.stream_last().await {
                Some(last) if last >= target => {
                    result.relay = Some(t0.elapsed().as_secs_f64());
                    break;
                }
                None => {
                    result.note = Some(format!("stream {} not found", self.stream));
                    return result;
                }
                Some(last) if Instant::now() > deadline => {
                    result.note = Some(format!(
                        "the stream holds {last} messages, {target} expected, after {} s",
                        timeout.as_secs()
                    ));
                    return result;
                }
                Some(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
        for (g, behind) in self.groups.iter().zip(behind_at_end) {
            let caught = if behind.is_some() {
                loop {
                    if self.group_behind(g).await == Some(0) {
                        break Some(t0.elapsed().as_secs_f64());
                    }
                    if Instant::now() > deadline {
                        break None;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            } else {
                None
            };
            result.groups.push((g.clone(), behind, caught));
        }
        result
    }
}

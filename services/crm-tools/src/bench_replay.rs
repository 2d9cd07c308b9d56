//! `crm bench replay`: a *new* projector group over a long stream, per NATS server.
//!
//! For each `--nats-url` in turn (one server after the other, never at once): a fresh
//! stream (unique name and subject prefix) with the relay's settings and subject layout
//! (`<prefix>.events.customer.<partition>.<id>.<EventType>`) is filled with `--events`
//! event-shaped messages (the envelope's JSON body and headers, `Nats-Msg-Id`), published
//! with `--in-flight` acks outstanding. Then, per `--modes` layout on the same stream,
//! consumers are created all at once as the projector's partition tasks create theirs
//! (durable pull, deliver all, explicit ack, the projector's batch, ack wait and
//! `max_ack_pending`; a failed creation retried after a second) and drained, each message
//! acknowledged as the projector does after its commit. Measured: each consumer's creation
//! time, its first message, when it was drained, the drain rate, and the server's resident
//! memory and CPU, sampled from `/proc` (the server is found by its listening port, or
//! given by `--server-pid`). The stream is deleted at the end unless `--keep`.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer::pull, message::PublishMessage};
use crm_bus::envelope::{body_for, headers_for};
use crm_bus::stream::StreamSpec;
use crm_bus::subjects::{partition_of, PARTITIONS};
use crm_bus::Subjects;
use crm_eventstore::{ChainHash, EventMetadata, LogPosition, RecordedEvent};
use futures::{FutureExt, StreamExt};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use uuid::Uuid;

/// How the partitions are consumed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// One consumer per partition, filtered by `<prefix>.events.*.<p>.>` (the projector).
    Partition,
    /// One consumer per partition with one filter per event type of `--types`
    /// (`filter_subjects`, nats-server 2.10+): a group that needs only those types.
    Types,
    /// One consumer per `--partitions-per-consumer` partitions, one filter each
    /// (`filter_subjects`, nats-server 2.10+).
    Grouped,
}

#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// The servers to measure, one after the other (repeat the flag).
    #[arg(long = "nats-url", default_values_t = ["nats://127.0.0.1:4222".to_string()])]
    nats_urls: Vec<String>,
    /// Each server's pid, in the order of `--nats-url` (default: the process listening
    /// on the URL's port, found in /proc).
    #[arg(long = "server-pid")]
    server_pids: Vec<u32>,
    /// Events in the stream.
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Bytes of each message's body (the event as JSON, as the relay publishes it; its
    /// headers come on top). A real body is the envelope (about 550 bytes) and a payload
    /// of 350 bytes on average (`crm demo`'s events; a contact's is 380).
    #[arg(long, default_value_t = 900)]
    payload_bytes: usize,
    /// Customers the events belong to (0: one per twelve events, W2's ratio). Each
    /// customer's registration comes first, then the rest on customers picked at random.
    #[arg(long, default_value_t = 0)]
    customers: u64,
    /// Partitions consumed (the first N of the 16 in the subjects).
    #[arg(long, default_value_t = PARTITIONS)]
    partitions: u32,
    /// Publishes awaiting their ack while filling.
    #[arg(long, default_value_t = 4096)]
    in_flight: usize,
    /// The stream's duplicate window, seconds. The relay's is 120 s; at a fill rate a
    /// hundred times the relay's, that would make the server hold millions of message
    /// ids during the replay that follows.
    #[arg(long, default_value_t = 1)]
    duplicate_window: u64,
    /// Messages per pull batch (the projector's `CRM_PROJECTOR_BATCH`); at most eight
    /// batches wait for acks (`max_ack_pending`), as in the projector.
    #[arg(long, default_value_t = 256)]
    batch: usize,
    /// Seconds before an unacknowledged message is delivered again.
    #[arg(long, default_value_t = 10)]
    ack_wait: u64,
    /// Consumer layouts, measured in this order on the same stream.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "partition")]
    modes: Vec<Mode>,
    /// The event types of `--modes types` (default: the ownership changes).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "CustomerRegistered,OwnerAssigned,OwnershipTransferred"
    )]
    types: Vec<String>,
    /// Partitions per consumer in `--modes grouped`.
    #[arg(long, default_value_t = 4)]
    partitions_per_consumer: u32,
    /// Seconds a layout may take (creating its consumers and draining them) before it is
    /// given up and what it reached is reported; one per `--nats-url`, comma-separated
    /// (the last one holds for the rest).
    #[arg(long, value_delimiter = ',', default_value = "300")]
    timeout: Vec<u64>,
    /// Seconds between progress lines during a layout.
    #[arg(long, default_value_t = 30)]
    progress: u64,
    /// Milliseconds between samples of the server's memory and CPU.
    #[arg(long, default_value_t = 1000)]
    sample_ms: u64,
    /// Seed of the customers and event types picked.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Keep the stream (its name is printed; `crm bench drop-stream` deletes it).
    #[arg(long)]
    keep: bool,
}

pub async fn run(a: ReplayArgs) -> anyhow::Result<()> {
    check_args(&a)?;
    let mut reports = Vec::new();
    for (i, url) in a.nats_urls.iter().enumerate() {
        println!(
            "\n== {url}, {} ==",
            chrono::Utc::now().format("%Y-%m-%d %H:%M:%S UTC")
        );
        let timeout = a
            .timeout
            .get(i)
            .or(a.timeout.last())
            .copied()
            .unwrap_or(300);
        let at = ServerAt {
            url,
            pid: a.server_pids.get(i).copied(),
            timeout: Duration::from_secs(timeout),
        };
        reports.push(server(&a, at).await?);
    }
    print_summary(&a, &reports);
    Ok(())
}

fn check_args(a: &ReplayArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        (1..=PARTITIONS).contains(&a.partitions),
        "--partitions must be 1..={PARTITIONS}"
    );
    anyhow::ensure!(a.events > 0, "--events must be positive");
    anyhow::ensure!(
        a.partitions_per_consumer > 0,
        "--partitions-per-consumer must be positive"
    );
    anyhow::ensure!(
        a.server_pids.is_empty() || a.server_pids.len() == a.nats_urls.len(),
        "give one --server-pid per --nats-url, or none"
    );
    for t in &a.types {
        anyhow::ensure!(
            type_index(t).is_some(),
            "--types: {t} is not among the stream's types ({})",
            (0..TYPES).map(type_name).collect::<Vec<_>>().join(", ")
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The events

/// The share (per cent) of each event type after a customer's registration: W2's main
/// phase (60 % contacts, 20 % assign/transfer, 20 % complaint steps).
const MIX: [(&str, u32); 7] = [
    ("ContactRecorded", 60),
    ("OwnerAssigned", 9),
    ("OwnershipTransferred", 11),
    ("ComplaintLogged", 5),
    ("ComplaintAcknowledged", 5),
    ("ComplaintResolved", 5),
    ("ComplaintClosed", 5),
];
/// Type 0 is the registration, then [`MIX`].
const TYPES: usize = MIX.len() + 1;

fn type_name(i: usize) -> &'static str {
    if i == 0 {
        "CustomerRegistered"
    } else {
        MIX[i - 1].0
    }
}

fn type_index(name: &str) -> Option<usize> {
    (0..TYPES).find(|&i| type_name(i) == name)
}

/// Messages published, by partition and type.
type Counts = [[u64; TYPES]; PARTITIONS as usize];

/// The events of the stream, one at a time.
struct Generator {
    rng: SmallRng,
    base: u128,
    customers: u64,
    versions: Vec<u32>,
    n: u64,
    manager: Uuid,
    /// The encrypted summary: makes each body `--payload-bytes` long.
    pad: String,
    start: chrono::DateTime<chrono::Utc>,
}

struct Next {
    partition: u32,
    kind: usize,
    event: RecordedEvent,
}

impl Generator {
    fn new(customers: u64, payload_bytes: usize, seed: u64) -> Self {
        let mut rng = SmallRng::seed_from_u64(seed);
        let base = rng.gen::<u128>();
        let manager = uuid::Builder::from_random_bytes(rng.gen()).into_uuid();
        let mut g = Self {
            rng,
            base,
            customers: customers.max(1),
            versions: vec![0; customers.max(1) as usize],
            n: 0,
            manager,
            pad: String::new(),
            start: chrono::Utc::now(),
        };
        let bare = body_for(&g.event(0, 1, 0)).len();
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let cipher: String = (0..payload_bytes.saturating_sub(bare + 7))
            .map(|_| alphabet[g.rng.gen_range(0..64)] as char)
            .collect();
        g.pad = format!("enc:v1:{cipher}");
        g
    }

    fn customer_id(&self, c: u64) -> Uuid {
        uuid::Builder::from_random_bytes((self.base.wrapping_add(u128::from(c))).to_le_bytes())
            .into_uuid()
    }

    fn next(&mut self) -> Next {
        let n = self.n;
        self.n += 1;
        let (customer, kind) = if n < self.customers {
            (n, 0)
        } else {
            let c = self.rng.gen_range(0..self.customers);
            let mut roll = self.rng.gen_range(0..100u32);
            let kind = MIX
                .iter()
                .position(|&(_, share)| {
                    let hit = roll < share;
                    roll = roll.saturating_sub(share);
                    hit
                })
                .map_or(1, |i| i + 1);
            (c, kind)
        };
        self.versions[customer as usize] += 1;
        let version = self.versions[customer as usize];
        let event = self.event(customer, version, kind);
        Next {
            partition: partition_of(&self.customer_id(customer).to_string()),
            kind,
            event,
        }
    }

    fn event(&mut self, customer: u64, version: u32, kind: usize) -> RecordedEvent {
        let id = self.customer_id(customer);
        let mut uuid = || uuid::Builder::from_random_bytes(self.rng.gen()).into_uuid();
        let (event_id, command_id) = (uuid(), uuid());
        let at = self.start + chrono::Duration::milliseconds(self.n as i64);
        RecordedEvent {
            log_position: LogPosition::new(self.n / 4 + 1, self.n + 1),
            stream_id: format!("customer-{id}"),
            stream_version: u64::from(version),
            event_id,
            event_type: type_name(kind).to_string(),
            schema_version: 1,
            payload: serde_json::json!({
                "customer_id": id, "manager_id": self.manager, "channel": "phone",
                "outcome": "reached", "summary": self.pad,
            }),
            metadata: EventMetadata {
                command_id,
                correlation_id: command_id,
                causation_id: None,
                actor: "person:li.wei".into(),
                occurred_at: at,
                recorded_at: at,
            },
            chain_hash: ChainHash(self.rng.gen()),
        }
    }
}

// ---------------------------------------------------------------------------------------
// One server

struct ServerReport {
    url: String,
    version: String,
    pid: Option<u32>,
    fill: Fill,
    fill_usage: Usage,
    idle: Usage,
    modes: Vec<ModeReport>,
}

/// One server to measure.
#[derive(Clone, Copy)]
struct ServerAt<'a> {
    url: &'a str,
    pid: Option<u32>,
    timeout: Duration,
}

async fn server(a: &ReplayArgs, at: ServerAt<'_>) -> anyhow::Result<ServerReport> {
    let (url, pid) = (at.url, at.pid);
    let client = async_nats::connect(url).await?;
    let version = client.server_info().version;
    let js = jetstream::new(client);
    let pid = pid.or_else(|| find_pid(url));
    println!(
        "nats-server {version}, pid {}",
        pid.map_or("unknown (no /proc figures)".into(), |p| p.to_string())
    );
    let sampler = Sampler::start(pid, Duration::from_millis(a.sample_ms));
    let tag = Uuid::new_v4().simple().to_string();
    let mut spec = StreamSpec::new(
        format!("BENCH_REPLAY_{}", &tag[..12]),
        Subjects::new(format!("rp{}", &tag[..8])),
    );
    spec.duplicate_window = Duration::from_secs(a.duplicate_window);
    let result = fill_and_replay(a, at, &js, &spec, &sampler).await;
    if a.keep {
        println!(
            "kept stream {} (subjects {}): crm bench drop-stream {} --nats-url {url}",
            spec.name,
            spec.subjects.all_events(),
            spec.name
        );
    } else {
        delete_stream(&js, &spec.name).await;
    }
    let (fill, fill_usage, idle, modes) = result?;
    Ok(ServerReport {
        url: url.to_string(),
        version,
        pid,
        fill,
        fill_usage,
        idle,
        modes,
    })
}

async fn fill_and_replay(
    a: &ReplayArgs,
    at: ServerAt<'_>,
    js: &jetstream::Context,
    spec: &StreamSpec,
    sampler: &Sampler,
) -> anyhow::Result<(Fill, Usage, Usage, Vec<ModeReport>)> {
    js.create_stream(spec.config())
        .await
        .map_err(|e| anyhow::anyhow!("creating {}: {e}", spec.name))?;
    let started = sampler.mark();
    let fill = fill(a, js, spec).await?;
    let fill_usage = sampler.usage(started, sampler.mark());
    print_fill(a, &fill, &fill_usage);
    // Let the server settle (the duplicate window expire, writes reach the disk) so the
    // replay's figures are its own.
    let settle = sampler.mark();
    tokio::time::sleep(Duration::from_secs(a.duplicate_window.max(5) + 5)).await;
    let idle = sampler.usage(settle, sampler.mark());
    println!(
        "server before the replay: {} MiB resident, {:.2} cores",
        idle.last_rss_kib / 1024,
        idle.mean_cores
    );
    let mut modes = Vec::new();
    for &mode in &a.modes {
        let plans = plans(mode, a, &spec.subjects, &fill.counts);
        let report = replay(a, at.timeout, js, &spec.name, mode, plans, sampler).await?;
        print_mode(&report);
        modes.push(report);
    }
    Ok((fill, fill_usage, idle, modes))
}

/// Delete the stream; a server too busy to answer (2.9 after a stalled replay) is asked
/// again every few seconds, for up to ten minutes.
async fn delete_stream(js: &jetstream::Context, name: &str) {
    let started = Instant::now();
    let mut asked = 0;
    while started.elapsed() < Duration::from_secs(600) {
        asked += 1;
        if js.delete_stream(name).await.is_ok() {
            break;
        }
        // Gone only when the server says so: a busy server's timeout is not an answer.
        let gone = matches!(
            js.get_stream(name).await.map_err(|e| e.kind()),
            Err(jetstream::context::GetStreamErrorKind::JetStream(e)) if e.code() == 404
        );
        if gone {
            break;
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    let took = started.elapsed().as_secs_f64();
    match js.get_stream(name).await.map_err(|e| e.kind()) {
        Err(jetstream::context::GetStreamErrorKind::JetStream(e)) if e.code() == 404 => {
            println!("deleted stream {name} in {took:.1} s ({asked} requests)");
        }
        _ => println!(
            "stream {name} not deleted after {took:.0} s: crm bench drop-stream {name} --nats-url …"
        ),
    }
}

// ---------------------------------------------------------------------------------------
// Filling the stream

struct Fill {
    elapsed: Duration,
    counts: Counts,
    messages: u64,
    bytes: u64,
}

async fn fill(a: &ReplayArgs, js: &jetstream::Context, spec: &StreamSpec) -> anyhow::Result<Fill> {
    let customers = if a.customers == 0 {
        a.events.div_ceil(12)
    } else {
        a.customers
    };
    let mut generator = Generator::new(customers, a.payload_bytes, a.seed);
    let mut counts: Counts = [[0; TYPES]; PARTITIONS as usize];
    let mut pending = VecDeque::with_capacity(a.in_flight);
    let started = Instant::now();
    let report_every = (a.events / 10).max(1);
    for n in 0..a.events {
        let next = generator.next();
        counts[next.partition as usize][next.kind] += 1;
        let e = &next.event;
        let msg = PublishMessage::build()
            .payload(body_for(e))
            .headers(headers_for(e))
            .message_id(e.event_id.to_string());
        let subject = spec.subjects.event(&e.stream_id, &e.event_type);
        let ack = js
            .send_publish(subject, msg)
            .await
            .map_err(|e| anyhow::anyhow!("publishing: {e}"))?;
        pending.push_back(ack);
        if pending.len() >= a.in_flight {
            if let Some(ack) = pending.pop_front() {
                ack.await.map_err(|e| anyhow::anyhow!("publish ack: {e}"))?;
            }
        }
        if (n + 1) % report_every == 0 {
            eprintln!(
                "  filled {} events, {:.0}/s",
                n + 1,
                (n + 1) as f64 / started.elapsed().as_secs_f64()
            );
        }
    }
    for ack in pending {
        ack.await.map_err(|e| anyhow::anyhow!("publish ack: {e}"))?;
    }
    let elapsed = started.elapsed();
    let info = js
        .get_stream(&spec.name)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .cached_info()
        .clone();
    Ok(Fill {
        elapsed,
        counts,
        messages: info.state.messages,
        bytes: info.state.bytes,
    })
}

// ---------------------------------------------------------------------------------------
// The consumers

#[derive(Debug, Clone)]
struct Plan {
    name: String,
    subjects: Vec<String>,
    expected: u64,
}

/// The consumers of `mode`, their filters, and how many messages each must deliver.
fn plans(mode: Mode, a: &ReplayArgs, subjects: &Subjects, counts: &Counts) -> Vec<Plan> {
    let group = format!("replay-{}", &Uuid::new_v4().simple().to_string()[..6]);
    let prefix = subjects.prefix();
    let per_partition = |p: u32| counts[p as usize].iter().sum::<u64>();
    match mode {
        Mode::Partition => (0..a.partitions)
            .map(|p| Plan {
                name: format!("{group}-p{p:02}"),
                subjects: vec![subjects.partition_filter(p)],
                expected: per_partition(p),
            })
            .collect(),
        Mode::Types => (0..a.partitions)
            .map(|p| {
                let kinds: Vec<usize> = a.types.iter().filter_map(|t| type_index(t)).collect();
                Plan {
                    name: format!("{group}-p{p:02}"),
                    subjects: a
                        .types
                        .iter()
                        .map(|t| format!("{prefix}.events.*.{p}.*.{t}"))
                        .collect(),
                    expected: kinds.iter().map(|&k| counts[p as usize][k]).sum(),
                }
            })
            .collect(),
        Mode::Grouped => (0..a.partitions)
            .step_by(a.partitions_per_consumer as usize)
            .map(|first| {
                let last = (first + a.partitions_per_consumer).min(a.partitions);
                Plan {
                    name: format!("{group}-p{first:02}-{:02}", last - 1),
                    subjects: (first..last)
                        .map(|p| subjects.partition_filter(p))
                        .collect(),
                    expected: (first..last).map(per_partition).sum(),
                }
            })
            .collect(),
    }
}

/// What the projector's consumer settings are, for the bench's consumers.
#[derive(Debug, Clone, Copy)]
struct Settings {
    batch: usize,
    ack_wait: Duration,
}

fn consumer_config(plan: &Plan, s: Settings) -> pull::Config {
    pull::Config {
        durable_name: Some(plan.name.clone()),
        description: Some("crm bench replay".into()),
        filter_subject: match plan.subjects.as_slice() {
            [one] => one.clone(),
            _ => String::new(),
        },
        ack_policy: jetstream::consumer::AckPolicy::Explicit,
        ack_wait: s.ack_wait,
        max_ack_pending: (s.batch * 8) as i64,
        deliver_policy: jetstream::consumer::DeliverPolicy::All,
        ..Default::default()
    }
}

type PullConsumer = jetstream::consumer::Consumer<pull::Config>;

/// Create a consumer with several filters. The workspace's async-nats is built without
/// its `server_2_10` feature (no `filter_subjects` field), so the bench sends the
/// JetStream API request itself, and checks the server kept the filters: nats-server
/// 2.9 ignores the field and would create a consumer of every message.
async fn create_filtered(
    js: &jetstream::Context,
    stream: &jetstream::stream::Stream,
    plan: &Plan,
    s: Settings,
) -> anyhow::Result<()> {
    let mut config = serde_json::to_value(consumer_config(plan, s))?;
    config["filter_subjects"] = serde_json::json!(plan.subjects);
    let name = &stream.cached_info().config.name;
    let answer: serde_json::Value = js
        .request(
            format!("CONSUMER.CREATE.{name}.{}", plan.name),
            &serde_json::json!({ "stream_name": name, "config": config }),
        )
        .await?;
    if let Some(error) = answer.get("error") {
        anyhow::bail!("{error}");
    }
    let kept = &answer["config"]["filter_subjects"];
    anyhow::ensure!(
        kept.as_array()
            .is_some_and(|k| k.len() == plan.subjects.len()),
        "the server did not keep filter_subjects (nats-server 2.10+): it answered filter {} {}, \
         a consumer of every message",
        answer["config"]["filter_subject"],
        kept
    );
    Ok(())
}

async fn create_once(
    js: &jetstream::Context,
    stream: &jetstream::stream::Stream,
    plan: &Plan,
    s: Settings,
) -> anyhow::Result<(PullConsumer, Duration)> {
    let started = Instant::now();
    if plan.subjects.len() == 1 {
        // As the projector does it.
        let consumer = stream
            .get_or_create_consumer(&plan.name, consumer_config(plan, s))
            .await?;
        return Ok((consumer, started.elapsed()));
    }
    create_filtered(js, stream, plan, s).await?;
    let took = started.elapsed();
    let consumer = stream
        .get_consumer(&plan.name)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok((consumer, took))
}

/// One consumer's story, times from the start of its layout.
#[derive(Debug, Default, Clone)]
struct Outcome {
    created: Option<Duration>,
    /// The successful attempt's own time.
    took: Option<Duration>,
    attempts: u32,
    first: Option<Duration>,
    done: Option<Duration>,
    received: u64,
    redelivered: u64,
    stream_errors: u32,
    error: Option<String>,
}

type Deadline = tokio::time::Instant;

/// Where a consumer is created and drained.
#[derive(Clone)]
struct Target {
    js: jetstream::Context,
    stream: jetstream::stream::Stream,
    s: Settings,
    t0: Instant,
    deadline: Deadline,
    live: Arc<Live>,
}

/// What the consumers of a layout reached so far, for the progress lines.
#[derive(Default)]
struct Live {
    created: AtomicU64,
    first: AtomicU64,
    drained: AtomicU64,
    received: AtomicU64,
}

/// A line every `every`: what the layout reached, and the server's memory and CPU.
async fn progress(live: Arc<Live>, sampler: Sampler, t0: Instant, every: Duration, n: usize) {
    let mut last = t0;
    loop {
        tokio::time::sleep(every).await;
        let now = sampler.mark();
        let u = sampler.usage(last, now);
        last = now;
        println!(
            "  {:>5.0} s: {}/{n} consumers created, {} with a message, {} drained; {} messages; \
             server {} resident, {:.2} cores",
            t0.elapsed().as_secs_f64(),
            live.created.load(Ordering::Relaxed),
            live.first.load(Ordering::Relaxed),
            live.drained.load(Ordering::Relaxed),
            live.received.load(Ordering::Relaxed),
            mib(u.last_rss_kib),
            u.mean_cores
        );
    }
}

async fn consume(at: Target, plan: Plan) -> Outcome {
    let mut out = Outcome::default();
    if let Some(consumer) = create(&at, &plan, &mut out).await {
        drain(consumer, &plan, &at, &mut out).await;
    }
    out
}

/// Create the consumer as a projector's partition task does: a failure is retried a
/// second later (the task is restarted), until the deadline.
async fn create(at: &Target, plan: &Plan, out: &mut Outcome) -> Option<PullConsumer> {
    loop {
        out.attempts += 1;
        let attempt = create_once(&at.js, &at.stream, plan, at.s);
        match tokio::time::timeout_at(at.deadline, attempt).await {
            Err(_) => {
                out.error = Some("not created before the timeout".into());
                return None;
            }
            Ok(Ok((consumer, took))) => {
                out.created = Some(at.t0.elapsed());
                at.live.created.fetch_add(1, Ordering::Relaxed);
                out.took = Some(took);
                out.error = None;
                return Some(consumer);
            }
            Ok(Err(e)) if e.to_string().contains("filter_subjects") => {
                out.error = Some(e.to_string());
                return None;
            }
            Ok(Err(e)) => {
                out.error = Some(e.to_string());
                if Deadline::now() + Duration::from_secs(1) >= at.deadline {
                    return None;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Pull and acknowledge until every expected message came once, or the deadline. A
/// failed pull (missed heartbeats from a busy server) is opened again.
async fn drain(consumer: PullConsumer, plan: &Plan, at: &Target, out: &mut Outcome) {
    let s = at.s;
    while out.received < plan.expected {
        let pulled = async {
            let mut messages = consumer
                .stream()
                .max_messages_per_batch(s.batch)
                .heartbeat(Duration::from_secs(5))
                .messages()
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            pull(&mut messages, plan, at, out).await
        };
        match tokio::time::timeout_at(at.deadline, pulled).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                out.stream_errors += 1;
                out.error = Some(e.to_string());
            }
            Err(_) => {
                out.error = Some("not drained before the timeout".into());
                return;
            }
        }
    }
    out.done = Some(at.t0.elapsed());
    at.live.drained.fetch_add(1, Ordering::Relaxed);
}

async fn pull(
    messages: &mut pull::Stream,
    plan: &Plan,
    at: &Target,
    out: &mut Outcome,
) -> anyhow::Result<()> {
    let fail = |e: &dyn std::fmt::Display| anyhow::anyhow!("{}: {e}", plan.name);
    while out.received < plan.expected {
        let Some(first) = messages.next().await else {
            anyhow::bail!("{}: the message stream ended", plan.name);
        };
        if out.first.is_none() {
            out.first = Some(at.t0.elapsed());
            at.live.first.fetch_add(1, Ordering::Relaxed);
        }
        let mut batch = vec![first.map_err(|e| fail(&e))?];
        while batch.len() < at.s.batch {
            match messages.next().now_or_never() {
                Some(Some(m)) => batch.push(m.map_err(|e| fail(&e))?),
                _ => break,
            }
        }
        for m in batch {
            let info = m.info().map_err(|e| fail(&e))?;
            if info.delivered == 1 {
                out.received += 1;
                at.live.received.fetch_add(1, Ordering::Relaxed);
            } else {
                out.redelivered += 1;
            }
            m.ack().await.map_err(|e| fail(&e))?;
        }
    }
    Ok(())
}

struct ModeReport {
    mode: Mode,
    plans: Vec<Plan>,
    outcomes: Vec<Outcome>,
    elapsed: Duration,
    usage: Usage,
    timeout: Duration,
}

/// Create every consumer of `plans` at once, drain them, delete them.
async fn replay(
    a: &ReplayArgs,
    timeout: Duration,
    js: &jetstream::Context,
    stream: &str,
    mode: Mode,
    plans: Vec<Plan>,
    sampler: &Sampler,
) -> anyhow::Result<ModeReport> {
    let stream = js
        .get_stream(stream)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let s = Settings {
        batch: a.batch,
        ack_wait: Duration::from_secs(a.ack_wait),
    };
    let at = Target {
        js: js.clone(),
        stream: stream.clone(),
        s,
        t0: sampler.mark(),
        deadline: Deadline::now() + timeout,
        live: Arc::new(Live::default()),
    };
    let t0 = at.t0;
    let tasks: Vec<_> = plans
        .iter()
        .map(|p| tokio::spawn(consume(at.clone(), p.clone())))
        .collect();
    let progress = tokio::spawn(progress(
        at.live.clone(),
        sampler.clone(),
        t0,
        Duration::from_secs(a.progress.max(1)),
        plans.len(),
    ));
    let mut outcomes = Vec::with_capacity(tasks.len());
    for t in tasks {
        outcomes.push(t.await?);
    }
    progress.abort();
    let elapsed = t0.elapsed();
    let usage = sampler.usage(t0, sampler.mark());
    for p in &plans {
        let deleted = stream.delete_consumer(&p.name);
        match tokio::time::timeout(Duration::from_secs(60), deleted).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => println!("consumer {} not deleted: {e}", p.name),
            Err(_) => println!("consumer {} not deleted within 60 s", p.name),
        }
    }
    Ok(ModeReport {
        mode,
        plans,
        outcomes,
        elapsed,
        usage,
        timeout,
    })
}

// ---------------------------------------------------------------------------------------
// The server's memory and CPU

/// Where the process listening on the first server's port of `url` runs.
fn find_pid(url: &str) -> Option<u32> {
    let first = url.split(',').next()?.trim();
    let port = first.parse::<async_nats::ServerAddr>().ok()?.port();
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            // local address (hex ip:port), state 0A = LISTEN, inode in field 9.
            let listens = f.get(3) == Some(&"0A")
                && f.get(1)
                    .and_then(|l| l.rsplit(':').next())
                    .map(|p| u16::from_str_radix(p, 16))
                    == Some(Ok(port));
            if listens {
                inodes.extend(f.get(9).map(|i| format!("socket:[{i}]")));
            }
        }
    }
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let fds = std::fs::read_dir(entry.path().join("fd")).ok()?;
            fds.flatten()
                .filter_map(|fd| std::fs::read_link(fd.path()).ok())
                .any(|target| inodes.iter().any(|i| target.as_os_str() == i.as_str()))
                .then_some(pid)
        })
}

#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Instant,
    rss_kib: u64,
    /// utime + stime, in clock ticks.
    ticks: u64,
}

/// Linux reports CPU time in `USER_HZ` ticks, 100 a second on every architecture it
/// runs on today.
const TICKS_PER_SECOND: f64 = 100.0;

fn read_proc(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces): state is field 3, utime 14.
    let rest: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = rest.get(11)?.parse::<u64>().ok()? + rest.get(12)?.parse::<u64>().ok()?;
    Some((rss, ticks))
}

/// Samples the server; clones share the samples, and the sampling stops when the last
/// one is dropped.
#[derive(Clone)]
struct Sampler {
    pid: Option<u32>,
    samples: Arc<Mutex<Vec<Sample>>>,
    task: Option<Arc<tokio::task::JoinHandle<()>>>,
}

impl Drop for Sampler {
    fn drop(&mut self) {
        if let Some(t) = self.task.take().and_then(|t| Arc::try_unwrap(t).ok()) {
            t.abort();
        }
    }
}

/// The server's figures over a window.
#[derive(Debug, Default, Clone, Copy)]
struct Usage {
    known: bool,
    first_rss_kib: u64,
    peak_rss_kib: u64,
    last_rss_kib: u64,
    peak_cores: f64,
    mean_cores: f64,
}

impl Sampler {
    fn start(pid: Option<u32>, period: Duration) -> Self {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let task = pid.map(|pid| {
            let samples = samples.clone();
            Arc::new(tokio::spawn(async move {
                let mut tick = tokio::time::interval(period);
                loop {
                    tick.tick().await;
                    if let Some((rss_kib, ticks)) = read_proc(pid) {
                        let s = Sample {
                            at: Instant::now(),
                            rss_kib,
                            ticks,
                        };
                        samples.lock().expect("samples").push(s);
                    }
                }
            }))
        });
        Self { pid, samples, task }
    }

    /// Take a sample now (the start or end of a phase), so that even a short phase has
    /// figures of its own.
    fn mark(&self) -> Instant {
        let at = Instant::now();
        if let Some(pid) = self.pid {
            if let Some((rss_kib, ticks)) = read_proc(pid) {
                let s = Sample { at, rss_kib, ticks };
                self.samples.lock().expect("samples").push(s);
            }
        }
        at
    }

    fn usage(&self, from: Instant, to: Instant) -> Usage {
        let mut all = self.samples.lock().expect("samples");
        all.sort_by_key(|s| s.at);
        let w: Vec<Sample> = all
            .iter()
            .filter(|s| s.at >= from && s.at <= to)
            .copied()
            .collect();
        let (Some(first), Some(last)) = (w.first(), w.last()) else {
            return Usage::default();
        };
        let cores = |a: &Sample, b: &Sample| {
            let secs = b.at.duration_since(a.at).as_secs_f64();
            let cpu = b.ticks.saturating_sub(a.ticks) as f64 / TICKS_PER_SECOND;
            if secs > 0.0 {
                cpu / secs
            } else {
                0.0
            }
        };
        Usage {
            known: true,
            first_rss_kib: first.rss_kib,
            peak_rss_kib: w.iter().map(|s| s.rss_kib).max().unwrap_or(0),
            last_rss_kib: last.rss_kib,
            peak_cores: w
                .windows(2)
                .map(|p| cores(&p[0], &p[1]))
                .fold(0.0, f64::max),
            mean_cores: cores(first, last),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Printing

fn mib(kib: u64) -> String {
    format!("{:.0} MiB", kib as f64 / 1024.0)
}

fn secs(d: Option<Duration>) -> String {
    d.map_or("–".into(), |d| format!("{:.2}", d.as_secs_f64()))
}

fn print_fill(a: &ReplayArgs, fill: &Fill, u: &Usage) {
    println!(
        "filled: {} messages ({} asked) in {:.1} s = {:.0} msg/s; {:.2} GiB stored, {} bytes per message \
         ({}-byte bodies); server {} → peak {}, {:.2} cores mean, {:.2} peak",
        fill.messages,
        a.events,
        fill.elapsed.as_secs_f64(),
        fill.messages as f64 / fill.elapsed.as_secs_f64(),
        fill.bytes as f64 / f64::from(1 << 30),
        fill.bytes / fill.messages.max(1),
        a.payload_bytes,
        mib(u.first_rss_kib),
        mib(u.peak_rss_kib),
        u.mean_cores,
        u.peak_cores
    );
}

fn print_mode(r: &ModeReport) {
    println!(
        "\nlayout {:?}: {} consumers, timeout {} s\n",
        r.mode,
        r.plans.len(),
        r.timeout.as_secs()
    );
    println!("| consumer | filters | messages | created at (s) | create request (s) | attempts | first message (s) | drained (s) | received | redelivered | note |");
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for (p, o) in r.plans.iter().zip(&r.outcomes) {
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            p.name,
            p.subjects.join(" "),
            p.expected,
            secs(o.created),
            secs(o.took),
            o.attempts,
            secs(o.first),
            secs(o.done),
            o.received,
            o.redelivered,
            o.error.as_deref().unwrap_or("")
        );
    }
    println!("\n{}", summary_lines(r).join("\n"));
}

/// The figures of one layout, one per line.
fn summary_lines(r: &ModeReport) -> Vec<String> {
    let n = r.outcomes.len();
    let created = r.outcomes.iter().filter(|o| o.created.is_some()).count();
    let drained = r.outcomes.iter().filter(|o| o.done.is_some()).count();
    let max = |f: fn(&Outcome) -> Option<Duration>| r.outcomes.iter().filter_map(f).max();
    let expected: u64 = r.plans.iter().map(|p| p.expected).sum();
    let received: u64 = r.outcomes.iter().map(|o| o.received).sum();
    let end = if drained == n {
        max(|o| o.done).unwrap_or(r.elapsed)
    } else {
        r.elapsed
    };
    let mut firsts: Vec<Duration> = r.outcomes.iter().filter_map(|o| o.first).collect();
    firsts.sort();
    vec![
        format!("consumers created: {created} of {n}, the last after {} s (its create request: {} s at the median, {} s the longest)", secs(max(|o| o.created)), secs(median(r.outcomes.iter().filter_map(|o| o.took).collect())), secs(max(|o| o.took))),
        format!("first message: {} of {n} consumers, the first after {} s, the last after {} s", firsts.len(), secs(firsts.first().copied()), secs(firsts.last().copied())),
        format!("drained: {drained} of {n} consumers; {received} of {expected} messages in {:.1} s = {:.0} msg/s{}", end.as_secs_f64(), received as f64 / end.as_secs_f64(), if drained == n { String::new() } else { format!(" (not drained: {})", r.outcomes.iter().find_map(|o| o.error.as_deref()).unwrap_or("timed out")) }),
        usage_line("server during the replay", &r.usage),
    ]
}

fn median(mut v: Vec<Duration>) -> Option<Duration> {
    v.sort();
    v.get(v.len() / 2).copied()
}

fn usage_line(what: &str, u: &Usage) -> String {
    if !u.known {
        return format!("{what}: no /proc figures");
    }
    format!(
        "{what}: resident {} at the start, peak {}, {} at the end; CPU {:.2} cores mean, {:.2} peak",
        mib(u.first_rss_kib),
        mib(u.peak_rss_kib),
        mib(u.last_rss_kib),
        u.mean_cores,
        u.peak_cores
    )
}

fn print_summary(a: &ReplayArgs, reports: &[ServerReport]) {
    println!(
        "\n== summary: {} events, {}-byte bodies, {} partitions ==\n",
        a.events, a.payload_bytes, a.partitions
    );
    for r in reports {
        println!(
            "nats-server {} ({}, pid {}): fill {:.0} msg/s, {}",
            r.version,
            r.url,
            r.pid.map_or("?".into(), |p| p.to_string()),
            r.fill.messages as f64 / r.fill.elapsed.as_secs_f64(),
            usage_line("server filling", &r.fill_usage)
        );
        println!("  {}", usage_line("server idle before the replay", &r.idle));
        for m in &r.modes {
            println!("  layout {:?}:", m.mode);
            for line in summary_lines(m) {
                println!("    {line}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        a: ReplayArgs,
    }

    fn counts_of(events: u64, customers: u64) -> Counts {
        let mut g = Generator::new(customers, 900, 3);
        let mut counts: Counts = [[0; TYPES]; PARTITIONS as usize];
        for _ in 0..events {
            let next = g.next();
            counts[next.partition as usize][next.kind] += 1;
        }
        counts
    }

    #[test]
    fn events_have_the_relays_shape_and_the_asked_size() {
        let mut g = Generator::new(100, 900, 1);
        let subjects = Subjects::new("t");
        let mut versions: HashMap<String, u64> = HashMap::new();
        for n in 0..2_000 {
            let next = g.next();
            let e = &next.event;
            if n < 100 {
                assert_eq!(e.event_type, "CustomerRegistered");
            }
            let v = versions.entry(e.stream_id.clone()).or_default();
            *v += 1;
            assert_eq!(
                e.stream_version, *v,
                "each customer's versions follow one another"
            );
            let body = body_for(e);
            assert!((850..=950).contains(&body.len()), "{} bytes", body.len());
            assert_eq!(&crm_bus::envelope::decode(&body).expect("decodes"), e);
            let subject = subjects.event(&e.stream_id, &e.event_type);
            let partition = format!("t.events.customer.{}.", next.partition);
            assert!(subject.starts_with(&partition), "{subject}");
            assert!(
                subject.ends_with(&format!(".{}", e.event_type)),
                "{subject}"
            );
        }
    }

    #[test]
    fn every_layout_expects_what_its_filters_match() {
        let a = Cli::parse_from(["replay", "--partitions-per-consumer", "5"]).a;
        let counts = counts_of(20_000, 2_000);
        let subjects = Subjects::new("t");
        let total: u64 = counts.iter().flatten().sum();
        assert_eq!(total, 20_000);

        let partition = plans(Mode::Partition, &a, &subjects, &counts);
        assert_eq!(partition.len(), 16);
        assert_eq!(partition[3].subjects, vec!["t.events.*.3.>".to_string()]);
        assert_eq!(partition.iter().map(|p| p.expected).sum::<u64>(), total);

        let grouped = plans(Mode::Grouped, &a, &subjects, &counts);
        assert_eq!(
            grouped.len(),
            4,
            "16 partitions, 5 a consumer: 5 + 5 + 5 + 1"
        );
        assert_eq!(grouped[3].subjects, vec!["t.events.*.15.>".to_string()]);
        assert_eq!(grouped.iter().map(|p| p.expected).sum::<u64>(), total);

        let types = plans(Mode::Types, &a, &subjects, &counts);
        let kinds: Vec<usize> = a.types.iter().filter_map(|t| type_index(t)).collect();
        assert_eq!(kinds.len(), 3);
        let wanted: u64 = counts
            .iter()
            .map(|p| kinds.iter().map(|&k| p[k]).sum::<u64>())
            .sum();
        assert_eq!(types.iter().map(|p| p.expected).sum::<u64>(), wanted);
        assert!(types[0]
            .subjects
            .contains(&"t.events.*.0.*.OwnerAssigned".to_string()));
        // Registrations come first, one per customer.
        assert_eq!(counts.iter().map(|p| p[0]).sum::<u64>(), 2_000);
    }

    #[test]
    fn the_process_figures_are_read_from_proc() {
        let (rss, _ticks) = read_proc(std::process::id()).expect("/proc of this process");
        assert!(rss > 0);
        assert!(check_args(&Cli::parse_from(["replay", "--types", "Nope"]).a).is_err());
        assert!(check_args(&Cli::parse_from(["replay", "--partitions", "17"]).a).is_err());
    }
}

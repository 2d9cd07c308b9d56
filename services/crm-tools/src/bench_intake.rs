//! `crm bench intake`: durable ingestion against request/reply, in one run, on the same
//! PostgreSQL and NATS. Each side gets a fresh database and subject prefix and the same
//! W1 book (managers and customers registered over request/reply first), then the same
//! number of W1 commands:
//!
//! - request/reply: sent with `--in-flight` outstanding, as `crm bench append` does;
//! - intake, live: published to the intake stream (acknowledged by it, 512 outstanding)
//!   while the command service decides them with each `--lanes`; the clock stops at the
//!   last outcome;
//! - intake, backlog: published while the intake is stopped, then decided from a standing
//!   start (what a service restarted after an outage has to catch up on).

use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_nats::jetstream;
use crm_bus::intake::IntakeSpec;
use crm_bus::Subjects;
use crm_command_handler::group_commit::GroupCommitConfig;
use crm_contracts::v1;
use crm_contracts::wire::{encode, Format};
use crm_domain::Command;
use futures::StreamExt;
use uuid::Uuid;

use crate::workload::Workload;

#[derive(Debug, clap::Args)]
pub struct IntakeArgs {
    #[command(flatten)]
    pg: crate::bench::PgServer,
    #[command(flatten)]
    nats: crate::bench::NatsServer,
    #[arg(long, default_value_t = 10_000)]
    customers: usize,
    #[arg(long, default_value_t = 200)]
    managers: usize,
    /// W1 commands on each side.
    #[arg(long, default_value_t = 50_000)]
    commands: usize,
    /// Lanes of the intake (commands decided at once), each measured live.
    #[arg(long, value_delimiter = ',', default_value = "32,128")]
    lanes: Vec<usize>,
    /// Requests outstanding on the request/reply side.
    #[arg(long, default_value_t = 32)]
    in_flight: usize,
    #[arg(long, default_value_t = 7)]
    seed: u64,
}

pub async fn run(a: IntakeArgs) -> anyhow::Result<()> {
    println!(
        "machine: {} cores; NATS {}; {} W1 commands each side",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        a.nats.nats_url,
        a.commands
    );
    let nats = async_nats::connect(&a.nats.nats_url)
        .await
        .with_context(|| format!("connecting to NATS at {}", a.nats.nats_url))?;
    let mut dbs = crate::bench_read::Databases::new(&a.pg.pg_url).await?;
    let result = async {
        let live = a.lanes.iter().map(|&l| (Side::IntakeLive, l));
        let last = *a
            .lanes
            .last()
            .unwrap_or(&crm_command_service::intake::DEFAULT_LANES);
        let sides = std::iter::once((Side::RequestReply, 0))
            .chain(live)
            .chain([(Side::IntakeBacklog, last)]);
        for (side, lanes) in sides {
            let url = dbs.create("intake").await?;
            let (n, took) = side.run(&a, lanes, &nats, &url).await?;
            let label = match side {
                Side::RequestReply => side.label().to_string(),
                _ => format!("{}, {lanes} lanes", side.label()),
            };
            println!(
                "{label:<60} {n:>7} commands in {:>6.2} s = {:>6.0} commands/s",
                took.as_secs_f64(),
                n as f64 / took.as_secs_f64()
            );
        }
        anyhow::Ok(())
    }
    .await;
    dbs.drop_all().await;
    result
}

#[derive(Clone, Copy, PartialEq)]
enum Side {
    RequestReply,
    IntakeLive,
    IntakeBacklog,
}

impl Side {
    fn label(self) -> &'static str {
        match self {
            Side::RequestReply => "request/reply (answers received)",
            Side::IntakeLive => "intake, published while deciding (last outcome)",
            Side::IntakeBacklog => "intake, backlog decided from a standing start",
        }
    }

    /// The book set up, then the side's commands: how many, and how long they took.
    async fn run(
        self,
        a: &IntakeArgs,
        lanes: usize,
        nats: &async_nats::Client,
        url: &str,
    ) -> anyhow::Result<(usize, Duration)> {
        let id = Uuid::new_v4().simple().to_string();
        let subjects = Subjects::new(format!("bench{id}"));
        let spec = IntakeSpec::new(
            format!("BENCH_{id}_IN"),
            format!("BENCH_{id}_OUT"),
            subjects.clone(),
        );
        let js = jetstream::new(nats.clone());
        spec.ensure(&js)
            .await
            .map_err(|e| anyhow::anyhow!("creating the streams: {e}"))?;
        let with_intake = (self == Side::IntakeLive).then(|| spec.clone());
        let _service = service(a, url, &subjects, with_intake, lanes).await?;
        let mut w = Workload::new(a.customers, a.managers, a.seed);
        let ingress = crate::bench::nats_ingress(nats, &subjects);
        crate::bench::drive(&ingress, w.setup(), a.in_flight, "setup").await?;
        let commands = w.main(a.commands);
        let n = commands.len();
        let took = match self {
            Side::RequestReply => {
                crate::bench::drive(&ingress, commands, a.in_flight, "request/reply")
                    .await?
                    .elapsed
            }
            Side::IntakeLive => {
                let started = Instant::now();
                publish(&js, &subjects, &commands).await?;
                wait_outcomes(&js, &spec.outcomes, n as u64).await?;
                started.elapsed()
            }
            Side::IntakeBacklog => {
                publish(&js, &subjects, &commands).await?;
                let started = Instant::now();
                let _decider = service(a, url, &subjects, Some(spec.clone()), lanes).await?;
                wait_outcomes(&js, &spec.outcomes, n as u64).await?;
                started.elapsed()
            }
        };
        for name in [&spec.commands, &spec.outcomes] {
            let _ = js.delete_stream(name).await;
        }
        Ok((n, took))
    }
}

/// A command service in this process, with the intake when `intake` is given.
async fn service(
    a: &IntakeArgs,
    url: &str,
    subjects: &Subjects,
    intake: Option<IntakeSpec>,
    intake_lanes: usize,
) -> anyhow::Result<crm_command_service::App> {
    crm_command_service::App::build(crm_command_service::Config {
        intake,
        intake_lanes,
        ..crate::bench::service_config(
            url,
            &a.nats.nats_url,
            subjects.prefix(),
            GroupCommitConfig {
                writers: 1,
                max_batch: 256,
            },
        )
    })
    .await
}

/// Publish every command to the intake, 512 acknowledgements outstanding.
async fn publish(
    js: &jetstream::Context,
    subjects: &Subjects,
    commands: &[Command],
) -> anyhow::Result<()> {
    let mut acks = futures::stream::FuturesOrdered::new();
    for command in commands {
        let meta = v1::CommandMeta {
            command_id: Uuid::now_v7().to_string(),
            actor: "service:bench".into(),
            ..Default::default()
        };
        let body = encode(&meta, command, Format::Protobuf)?;
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", meta.command_id.as_str());
        let ack = js
            .publish_with_headers(subjects.intake(command.name()), headers, body.into())
            .await
            .map_err(|e| anyhow::anyhow!("publishing: {e}"))?;
        acks.push_back(std::future::IntoFuture::into_future(ack));
        if acks.len() >= 512 {
            acks.next()
                .await
                .transpose()
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        }
    }
    while let Some(ack) = acks.next().await {
        ack.map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    Ok(())
}

/// Wait until the outcomes stream holds `n` outcomes (10 minutes at most).
async fn wait_outcomes(js: &jetstream::Context, stream: &str, n: u64) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut stream = js
        .get_stream(stream)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    loop {
        let have = stream
            .info()
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .state
            .messages;
        if have >= n {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{have} outcomes of {n} after 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

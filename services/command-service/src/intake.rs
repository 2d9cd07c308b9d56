//! Durable ingestion: commands taken from the intake stream (`crm_bus::intake`), decided
//! at least once through the same path as a NATS request, their outcomes published once
//! per command id.
//!
//! Exactly one decision per command, whatever crashes: a command leaves the intake only
//! after its outcome is stored in the outcomes stream (the publish acknowledged, then the
//! command acknowledged and the acknowledgement confirmed). A command delivered again is
//! first looked up in the outcomes stream by its subject: answered before, it is only
//! acknowledged. Decided but not yet answered when the service died, it is decided again:
//! an accepted command's id is its idempotency key in the store (the first answer comes
//! back, `duplicate`), and a refused one changed nothing, so nothing was decided that
//! anyone saw. The outcome's `Nats-Msg-Id` is the command id as a last guard.
//!
//! Order: commands are decided in intake order per aggregate (customer, manager, the
//! policy): each goes to one of `lanes` lanes by its aggregate's id, and a lane decides
//! one command after another; lanes run concurrently.

use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull, stream::Stream, AckKind};
use async_nats::HeaderMap;
use bytes::Bytes;
use crm_bus::intake::{IntakeSpec, CONSUMER};
use crm_bus::Subjects;
use crm_contracts::wire::{self, Format};
use crm_domain::Command;
use futures::StreamExt;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::execute::{Arrival, Handler};
use crate::nats::{decide, reply_message};

/// Commands decided at once by default (one per lane; per aggregate, one at a time).
pub const DEFAULT_LANES: usize = 512;
/// Commands delivered but not yet acknowledged, at most (the server's bound).
const MAX_ACK_PENDING: i64 = 4096;
/// How long the server waits for an acknowledgement before delivering again.
const ACK_WAIT: Duration = Duration::from_secs(30);
/// How long a lane waits before it asks NATS again (a lookup or an outcome that failed).
const RETRY_AFTER: Duration = Duration::from_secs(1);

#[derive(Clone)]
struct Ctx {
    js: jetstream::Context,
    outcomes: Stream,
    handler: Handler,
    auth: Option<crm_auth::Verifier>,
    subjects: Subjects,
}

/// The running intake.
pub struct Intake {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Intake {
    /// Create the streams when missing, bind the durable consumer and start deciding.
    pub async fn start(
        client: async_nats::Client,
        spec: IntakeSpec,
        lanes: usize,
        handler: Handler,
        auth: Option<crm_auth::Verifier>,
    ) -> Result<Self, async_nats::Error> {
        let js = jetstream::new(client);
        let (commands, outcomes) = spec.ensure(&js).await?;
        let consumer = commands
            .get_or_create_consumer(
                CONSUMER,
                pull::Config {
                    durable_name: Some(CONSUMER.into()),
                    description: Some("the command service: commands to decide".into()),
                    filter_subject: spec.subjects.all_intake(),
                    ack_policy: jetstream::consumer::AckPolicy::Explicit,
                    ack_wait: ACK_WAIT,
                    max_ack_pending: MAX_ACK_PENDING,
                    ..Default::default()
                },
            )
            .await?;
        let gate = Gate::new(consumer.clone()).await?;
        let messages = consumer.messages().await?;
        let ctx = Ctx {
            js,
            outcomes,
            handler,
            auth,
            subjects: spec.subjects,
        };
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(run(ctx, messages, gate, lanes.max(1), stopped));
        tracing::info!(stream = %spec.commands, outcomes = %spec.outcomes, "durable intake started");
        Ok(Intake { stop, task })
    }

    /// Take no more commands: each lane finishes the command it is deciding and hands
    /// the rest it holds back to the server (delivered again, to this or another
    /// instance).
    pub async fn stop(self, deadline: std::time::Instant) {
        let _ = self.stop.send(true);
        let mut task = self.task;
        let wait = tokio::time::timeout_at(deadline.into(), &mut task);
        if wait.await.is_err() {
            task.abort();
            tracing::warn!(
                "the intake's lanes did not finish within the grace period; \
                 the commands not acknowledged are delivered again"
            );
        }
    }
}

/// After a crash, the commands the dead incarnation was deciding come again only when
/// their ack wait runs out, after newer ones are delivered. The gate holds every command
/// newer than the last one delivered before this start until all older ones are
/// acknowledged (the consumer's ack floor reaches it), so each aggregate's commands are
/// still decided in order.
struct Gate {
    consumer: jetstream::consumer::Consumer<pull::Config>,
    /// The last command delivered before this start, while older ones are unacknowledged.
    horizon: Option<u64>,
    held: Vec<jetstream::Message>,
    checks: u32,
}

impl Gate {
    async fn new(
        consumer: jetstream::consumer::Consumer<pull::Config>,
    ) -> Result<Self, async_nats::Error> {
        let info = consumer.get_info().await?;
        let horizon = (info.num_ack_pending > 0).then_some(info.delivered.stream_sequence);
        if let Some(h) = horizon {
            tracing::info!(
                pending = info.num_ack_pending,
                horizon = h,
                "intake: commands of an earlier run are unacknowledged; newer ones wait for them"
            );
        }
        Ok(Gate {
            consumer,
            horizon,
            held: Vec::new(),
            checks: 0,
        })
    }

    fn is_open(&self) -> bool {
        self.horizon.is_none()
    }

    /// The command, if it may be decided now; else it is held.
    fn admit(&mut self, message: jetstream::Message) -> Option<jetstream::Message> {
        let seq = message.info().map(|i| i.stream_sequence).unwrap_or(0);
        match self.horizon {
            Some(h) if seq > h => {
                self.held.push(message);
                None
            }
            _ => Some(message),
        }
    }

    /// Whether the older commands are all acknowledged: then the held ones, in order.
    async fn check(&mut self) -> Vec<jetstream::Message> {
        let Some(h) = self.horizon else {
            return Vec::new();
        };
        self.checks += 1;
        match self.consumer.get_info().await {
            Ok(info) if info.ack_floor.stream_sequence >= h => {
                self.horizon = None;
                tracing::info!(
                    held = self.held.len(),
                    "intake: the earlier run's commands are decided"
                );
                return std::mem::take(&mut self.held);
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "intake: reading the consumer's ack floor"),
        }
        // Keep the held commands ours meanwhile (every 10 s, a third of the ack wait).
        if self.checks.is_multiple_of(20) {
            for m in &self.held {
                let _ = m.ack_with(AckKind::Progress).await;
            }
        }
        Vec::new()
    }
}

/// Deal the delivered commands to the lanes until told to stop.
async fn run(
    ctx: Ctx,
    mut messages: pull::Stream,
    mut gate: Gate,
    count: usize,
    mut stop: watch::Receiver<bool>,
) {
    let mut lanes = Vec::with_capacity(count);
    let mut workers = JoinSet::new();
    for _ in 0..count {
        // Unbounded: the server's MAX_ACK_PENDING bounds what is delivered, and a busy
        // lane must not hold up the others.
        let (tx, mut rx) = mpsc::unbounded_channel::<jetstream::Message>();
        lanes.push(tx);
        let (ctx, stop) = (ctx.clone(), stop.clone());
        workers.spawn(async move {
            while let Some(message) = rx.recv().await {
                if *stop.borrow() {
                    // Stopping: what the lane still holds goes back at once.
                    let _ = message.ack_with(AckKind::Nak(None)).await;
                    continue;
                }
                take(&ctx, message).await;
            }
        });
    }
    let deal = |message: jetstream::Message| {
        let lane = lane_of(&ctx.subjects, &message, count);
        lanes[lane].send(message).is_ok()
    };
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            _ = tick.tick(), if !gate.is_open() => {
                for message in gate.check().await {
                    deal(message);
                }
            }
            next = messages.next() => match next {
                Some(Ok(message)) => {
                    if let Some(message) = gate.admit(message) {
                        if !deal(message) {
                            break;
                        }
                    }
                }
                Some(Err(e)) => tracing::warn!(error = %e, "intake: reading the consumer"),
                None => break,
            },
        }
    }
    drop(lanes);
    while workers.join_next().await.is_some() {}
    tracing::info!("durable intake stopped");
}

/// The lane of a command: by its aggregate's id, so that one aggregate's commands are
/// decided in order. A payload that does not decode goes to lane 0 (it is refused).
fn lane_of(subjects: &Subjects, message: &jetstream::Message, lanes: usize) -> usize {
    let name = command_name(subjects, &message.message);
    let format = content_type(&message.message).unwrap_or(Format::Json);
    let key = match wire::decode(name, &message.message.payload, format).map(|d| d.command) {
        Ok(Command::Customer(c)) => c.customer_id().to_string(),
        Ok(Command::Manager(m)) => m.manager_id().to_string(),
        Ok(Command::Policy(_)) => "policy".to_string(),
        Err(_) => return 0,
    };
    crm_bus::subjects::fnv1a32(&key) as usize % lanes
}

fn command_name<'m>(subjects: &Subjects, message: &'m async_nats::Message) -> &'m str {
    message
        .subject
        .as_str()
        .strip_prefix(&format!("{}.intake.", subjects.prefix()))
        .unwrap_or("")
}

fn content_type(message: &async_nats::Message) -> Option<Format> {
    let ct = message.headers.as_ref().and_then(|h| h.get("Content-Type"));
    Format::from_content_type(ct.map(|v| v.as_str()))
}

/// The id the outcome is filed under: the payload's command id, else the message's
/// `Nats-Msg-Id`, else its place in the intake stream.
fn outcome_key(message: &jetstream::Message) -> String {
    let format = content_type(&message.message).unwrap_or(Format::Json);
    wire::claimed_command_id(&message.message.payload, format)
        .filter(|id| id.parse::<uuid::Uuid>().is_ok())
        .or_else(|| {
            let h = message.message.headers.as_ref()?;
            Some(h.get("Nats-Msg-Id")?.as_str().to_string())
        })
        // One subject token: letters, digits, '-' and '_' only.
        .filter(|id| {
            !id.is_empty()
                && id.len() <= 128
                && id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
        .unwrap_or_else(|| match message.info() {
            Ok(info) => format!("seq-{}", info.stream_sequence),
            Err(_) => "unknown".into(),
        })
}

/// Decide one command (unless it was answered before), store its outcome, then let it
/// leave the intake. The lane waits on NATS rather than skip ahead: the aggregate's next
/// command is not decided before this one's outcome is stored.
async fn take(ctx: &Ctx, message: jetstream::Message) {
    let name = command_name(&ctx.subjects, &message.message).to_string();
    let key = outcome_key(&message);
    let subject = ctx.subjects.outcome(&name, &key);
    if answered_before(ctx, &subject, &message).await {
        return acknowledge(&message, &subject).await;
    }
    let (format, result) = decided(ctx, &name, &message).await;
    let (mut headers, body) = reply_message(format, &result);
    outcome_headers(&mut headers, &key, &message);
    store_outcome(ctx, &subject, headers, Bytes::from(body), &message).await;
    acknowledge(&message, &subject).await;
}

/// The command's decision; one the store could not make now (unavailable, contended) is
/// not an outcome: the lane holds the command and decides it again.
async fn decided(
    ctx: &Ctx,
    name: &str,
    message: &jetstream::Message,
) -> (
    Format,
    Result<crm_command_handler::Accepted, crate::problem::Problem>,
) {
    loop {
        let (format, result) = decide(
            &ctx.handler,
            ctx.auth.as_ref(),
            arrival(message),
            name,
            &message.message,
        )
        .await;
        match &result {
            Err(p) if p.status == 503 || p.code == "command.contended" => {
                tracing::warn!(code = %p.code, command = name, "intake: deciding again");
                hold(message).await;
            }
            _ => return (format, result),
        }
    }
}

/// When the platform received a command of the intake: when the stream stored it (its
/// token and `issued_at` are judged then, so a backlog decided after an outage is not
/// refused for the outage's length).
fn arrival(message: &jetstream::Message) -> Arrival {
    let stored = message.info().ok().and_then(|i| {
        chrono::DateTime::from_timestamp(i.published.unix_timestamp(), i.published.nanosecond())
    });
    Arrival {
        transport: "intake",
        at: stored.unwrap_or_else(chrono::Utc::now),
    }
}

/// Whether the command's outcome is already stored (it was decided and answered before
/// a crash); asked again until NATS answers.
async fn answered_before(ctx: &Ctx, subject: &str, message: &jetstream::Message) -> bool {
    loop {
        // From the stream's leader (not a direct get, which a lagging replica may
        // answer without the outcome).
        match ctx.outcomes.get_last_raw_message_by_subject(subject).await {
            Ok(_) => return true,
            Err(e) if e.kind() == jetstream::stream::LastRawMessageErrorKind::NoMessageFound => {
                return false
            }
            Err(e) => {
                tracing::warn!(error = %e, %subject, "intake: looking up an outcome; trying again");
                hold(message).await;
            }
        }
    }
}

/// Publish the outcome until the outcomes stream acknowledges it.
async fn store_outcome(
    ctx: &Ctx,
    subject: &str,
    headers: HeaderMap,
    body: Bytes,
    message: &jetstream::Message,
) {
    loop {
        let sent = ctx
            .js
            .publish_with_headers(subject.to_string(), headers.clone(), body.clone())
            .await;
        let stored = match sent {
            Ok(ack) => ack.await.map(|_| ()).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match stored {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(error = %e, %subject, "intake: the outcome was not stored; trying again");
                hold(message).await;
            }
        }
    }
}

/// Keep the command ours while NATS is away (the server would deliver it again after
/// the ack wait), then wait a moment.
async fn hold(message: &jetstream::Message) {
    let _ = message.ack_with(AckKind::Progress).await;
    tokio::time::sleep(RETRY_AFTER).await;
}

fn outcome_headers(headers: &mut HeaderMap, key: &str, message: &jetstream::Message) {
    headers.insert("Nats-Msg-Id", key);
    if let Ok(info) = message.info() {
        headers.insert(
            "Crm-Intake-Sequence",
            info.stream_sequence.to_string().as_str(),
        );
    }
}

/// Acknowledge and wait for the server's confirmation (a lost acknowledgement only means
/// the command comes again, and is found answered).
async fn acknowledge(message: &jetstream::Message, subject: &str) {
    if let Err(e) = message.double_ack().await {
        tracing::warn!(error = %e, %subject, "intake: acknowledging a decided command");
    }
}

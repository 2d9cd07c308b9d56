//! NATS ingress: the service `crm-commands`. One queue subscription on
//! `<prefix>.cmd.*` shared by every instance (queue group `crm-commands`), one subject
//! per command, discoverable through the NATS service API (`micro.rs`). Requests are
//! handled concurrently. A request carries the same bearer token as an HTTP call, in its
//! `Authorization` header: the recorded actor is the token's, whatever the payload says
//! (`caller.rs`).
//!
//! Stopping without dropping a request: on shutdown the subscription is told to end
//! after [`HANDOVER_MARGIN`] more requests than this instance has taken
//! (`UNSUB <sid> <max>`). The server and the client count the same deliveries, so every
//! request the server sends before it stops is received and answered, and from then on
//! the other instances get them all. When traffic is too light to reach the count within
//! [`HANDOVER_WAIT`], the count is lowered to one more request: only two requests on the
//! wire at that very moment could then lose one. A plain unsubscribe, as
//! `async_nats::service` does, drops every request already on the wire (and async-nats's
//! `drain` does not wait for the server's acknowledgement either): their callers time out.
//!
//! The counts agree only while the connection lasts: after a reconnect the server counts
//! the resubscribed subscription from zero, the client from the start. So after every
//! reconnect the ingress subscribes afresh and drains the old subscription (a reconnect
//! has already cost the requests that were on the wire).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use async_nats::{HeaderMap, Subscriber};
use bytes::Bytes;
use crm_bus::Subjects;
use crm_contracts::wire::{encode_reply, Format, COMMAND_NAMES};
use futures::StreamExt;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::task::TaskTracker;

use crate::caller::authenticate;
use crate::execute::{execute, refusal, reply, Arrival, Handler};
use crate::micro::{self, Description, Stats};
use crate::problem::Problem;

/// Requests this instance still takes after it is told to stop: more than can be in its
/// buffer or on the wire, so the server's count is reached on a request actually sent.
pub const HANDOVER_MARGIN: u64 = 256;
/// How long it waits for them before lowering the count to one.
pub const HANDOVER_WAIT: Duration = Duration::from_secs(2);
/// How often the connection is checked for a reconnect.
const RECONNECT_CHECK: Duration = Duration::from_millis(500);

/// A timer that does not fire.
const FAR: Duration = Duration::from_secs(365 * 86_400);

/// What every request handler needs.
#[derive(Clone)]
struct Ctx {
    client: async_nats::Client,
    handler: Handler,
    auth: Option<crm_auth::Verifier>,
    stats: Stats,
    subjects: Subjects,
}

/// The running ingress.
pub struct Ingress {
    stop: watch::Sender<bool>,
    receiver: JoinHandle<()>,
    tracker: TaskTracker,
    client: async_nats::Client,
}

impl Ingress {
    /// Subscribe and start answering (and answering the discovery verbs).
    pub async fn start(
        client: async_nats::Client,
        subjects: Subjects,
        handler: Handler,
        auth: Option<crm_auth::Verifier>,
    ) -> Result<Self, async_nats::Error> {
        let group = subjects.service_name();
        let wildcard = format!("{}.cmd.*", subjects.prefix());
        let subscription = Subscription::new(&client, &wildcard, &group).await?;
        let stats = Stats::default();
        let about = Description {
            name: group.to_string(),
            id: uuid::Uuid::new_v4().simple().to_string(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "CRM commands: one endpoint per command, protobuf or JSON (Content-Type: application/json)".into(),
            queue_group: group.to_string(),
            endpoints: COMMAND_NAMES
                .iter()
                .map(|n| (n.to_string(), subjects.command(n)))
                .collect(),
        };
        let discovery = tokio::spawn(micro::serve(client.clone(), about, stats.clone()));
        let ctx = Ctx {
            client: client.clone(),
            handler,
            auth,
            stats,
            subjects,
        };
        let tracker = TaskTracker::new();
        let (stop, stopped) = watch::channel(false);
        let receiver = tokio::spawn(
            Receiver {
                ctx,
                tracker: tracker.clone(),
                wildcard,
                group: group.to_string(),
                current: subscription,
                retiring: None,
            }
            .run(stopped, discovery),
        );
        Ok(Self {
            stop,
            receiver,
            tracker,
            client,
        })
    }

    /// Hand over to the other instances and answer everything taken, by `deadline`.
    /// Returns the requests still unanswered at the deadline (0 unless it was too short).
    pub async fn stop(self, deadline: Instant) -> usize {
        let _ = self.stop.send(true);
        let until = tokio::time::Instant::from_std(deadline);
        let _ = tokio::time::timeout_at(until, self.receiver).await;
        self.tracker.close();
        let _ = tokio::time::timeout_at(until, self.tracker.wait()).await;
        let _ = tokio::time::timeout_at(until, self.client.flush()).await;
        self.tracker.len()
    }
}

/// The queue subscription with the requests this instance took from it, and the
/// connection it was made on (`Statistics::connects` at subscription).
struct Subscription {
    sub: Subscriber,
    taken: u64,
    connects: u64,
}

impl Subscription {
    async fn new(
        client: &async_nats::Client,
        wildcard: &str,
        group: &str,
    ) -> Result<Self, async_nats::Error> {
        let connects = client.statistics().connects.load(Ordering::Relaxed);
        let sub = client
            .queue_subscribe(wildcard.to_string(), group.to_string())
            .await?;
        Ok(Self {
            sub,
            taken: 0,
            connects,
        })
    }
}

/// Where the handing over stands (module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Serving,
    /// The subscription ends after `HANDOVER_MARGIN` more requests.
    Counting,
    /// It ends after one more.
    Closing,
}

/// Takes requests from the subscription (and from one being retired after a reconnect).
struct Receiver {
    ctx: Ctx,
    tracker: TaskTracker,
    wildcard: String,
    group: String,
    current: Subscription,
    retiring: Option<Subscriber>,
}

impl Receiver {
    /// Take requests until the subscription ends; on `stop`, hand over.
    async fn run(
        mut self,
        mut stop: watch::Receiver<bool>,
        discovery: JoinHandle<Result<(), async_nats::Error>>,
    ) {
        let mut phase = Phase::Serving;
        let mut check = tokio::time::interval(RECONNECT_CHECK);
        let lower_at = tokio::time::sleep(FAR);
        tokio::pin!(lower_at);
        loop {
            tokio::select! {
                biased;
                message = self.current.sub.next() => {
                    let Some(message) = message else { break };
                    self.current.taken += 1;
                    self.tracker.spawn(answer(self.ctx.clone(), message));
                }
                message = next(&mut self.retiring), if self.retiring.is_some() => match message {
                    Some(message) => { self.tracker.spawn(answer(self.ctx.clone(), message)); }
                    None => self.retiring = None,
                },
                _ = check.tick(), if phase == Phase::Serving => self.renew_after_reconnect().await,
                _ = stop.changed(), if phase == Phase::Serving => {
                    discovery.abort();
                    self.renew_after_reconnect().await;
                    self.end_after(HANDOVER_MARGIN).await;
                    phase = Phase::Counting;
                    lower_at.as_mut().reset(tokio::time::Instant::now() + HANDOVER_WAIT);
                }
                _ = &mut lower_at, if phase == Phase::Counting => {
                    // Light traffic: one more request at most.
                    self.end_after(1).await;
                    phase = Phase::Closing;
                }
            }
        }
        // What the retired subscription still holds.
        while let Some(message) = next(&mut self.retiring).await {
            self.tracker.spawn(answer(self.ctx.clone(), message));
        }
        tracing::info!(taken = self.current.taken, "NATS subscription ended");
    }

    /// After a reconnect the subscription's counts disagree: subscribe afresh, drain the
    /// old one.
    async fn renew_after_reconnect(&mut self) {
        let connects = self
            .ctx
            .client
            .statistics()
            .connects
            .load(Ordering::Relaxed);
        if connects == self.current.connects || self.retiring.is_some() {
            return;
        }
        match Subscription::new(&self.ctx.client, &self.wildcard, &self.group).await {
            Ok(fresh) => {
                let mut old = std::mem::replace(&mut self.current, fresh);
                let _ = old.sub.drain().await;
                self.retiring = Some(old.sub);
                tracing::info!("reconnected to NATS: subscribed afresh");
            }
            Err(e) => tracing::warn!(error = %e, "could not subscribe afresh after a reconnect"),
        }
    }

    /// Tell the server (and the client) to end the subscription after `more` requests.
    async fn end_after(&mut self, more: u64) {
        let taken = self.current.taken;
        tracing::info!(
            taken,
            more,
            "handing NATS requests over to the other instances"
        );
        if let Err(e) = self.current.sub.unsubscribe_after(taken + more).await {
            tracing::warn!(error = %e, "could not end the subscription; draining it");
            let _ = self.current.sub.drain().await;
        }
    }
}

/// The next message of an optional subscription (`None` when there is none, or it ended).
async fn next(sub: &mut Option<Subscriber>) -> Option<async_nats::Message> {
    match sub {
        Some(s) => s.next().await,
        None => None,
    }
}

/// Handle one request and send its reply.
async fn answer(ctx: Ctx, message: async_nats::Message) {
    let started = Instant::now();
    let Some(reply_to) = message.reply.clone() else {
        return;
    };
    let name = message
        .subject
        .as_str()
        .strip_prefix(&format!("{}.cmd.", ctx.subjects.prefix()))
        .unwrap_or("")
        .to_string();
    let (format, result) = decide(
        &ctx.handler,
        ctx.auth.as_ref(),
        Arrival::now("nats"),
        &name,
        &message,
    )
    .await;
    let (headers, body) = reply_message(format, &result);
    // Counted per known command only: a caller's invented subject mints no entry.
    if COMMAND_NAMES.contains(&name.as_str()) {
        let error = result.as_ref().err().map(|p| p.code.as_str());
        ctx.stats.record(&name, started.elapsed(), error);
    }
    if let Err(e) = ctx
        .client
        .publish_with_headers(reply_to, headers, Bytes::from(body))
        .await
    {
        tracing::warn!(error = %e, command = %name, "could not send the reply");
    }
}

/// One command message's answer (a request's, or one taken from the intake), in the
/// format to answer in.
pub(crate) async fn decide(
    handler: &Handler,
    auth: Option<&crm_auth::Verifier>,
    arrival: Arrival,
    name: &str,
    message: &async_nats::Message,
) -> (Format, Result<crm_command_handler::Accepted, Problem>) {
    let header = |key: &str| {
        message
            .headers
            .as_ref()
            .and_then(|h| h.get(key))
            .map(|v| v.as_str().to_string())
    };
    let ct = header("Content-Type");
    // The answer's format, whatever comes of the request: the one asked for, else JSON.
    let format = Format::from_content_type(ct.as_deref());
    let answer_in = format.unwrap_or(Format::Json);
    // Who asks comes first, as over HTTP: an unauthenticated caller learns nothing more.
    let authorization = header("Authorization");
    let at = arrival.at.timestamp();
    let principal = match authenticate(auth, authorization.as_deref(), name, at).await {
        Ok(p) => p,
        Err(problem) => return (answer_in, Err(problem)),
    };
    let Some(format) = format else {
        let problem = Problem::unsupported_media_type(ct.as_deref().unwrap_or(""));
        return (answer_in, Err(problem));
    };
    if !COMMAND_NAMES.contains(&name) {
        let problem = Problem::new(
            404,
            "request.unknown_command",
            format!("no command named {:?}", crm_domain::text::escaped(name)),
        );
        return (format, Err(problem));
    }
    let result = execute(
        handler,
        arrival,
        name,
        &message.payload,
        format,
        None,
        principal.as_ref(),
    )
    .await;
    (format, result)
}

/// The reply's headers and body; a refusal carries its code and status in headers too.
pub(crate) fn reply_message(
    format: Format,
    result: &Result<crm_command_handler::Accepted, Problem>,
) -> (HeaderMap, Vec<u8>) {
    let mut headers = HeaderMap::new();
    headers.insert("Content-Type", format.content_type());
    let body = match result {
        Ok(accepted) => encode_reply(&reply(accepted), format),
        Err(problem) => {
            headers.insert("Crm-Error-Code", problem.code.as_str());
            headers.insert("Crm-Error-Status", problem.status.to_string().as_str());
            headers.insert("Nats-Service-Error", problem.title().as_str());
            headers.insert(
                "Nats-Service-Error-Code",
                problem.status.to_string().as_str(),
            );
            encode_reply(&refusal(problem), format)
        }
    };
    (headers, body)
}

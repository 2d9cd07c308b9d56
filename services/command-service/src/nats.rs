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
//! [`HANDOVER_WAIT`], the subscription is drained instead (nothing is on its way then).
//! A plain unsubscribe, as `async_nats::service` does, drops the requests already on the
//! wire: their callers time out.

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
use crate::execute::{execute, refusal, reply, Handler};
use crate::micro::{self, Description, Stats};
use crate::problem::Problem;

/// Requests this instance still takes after it is told to stop: more than can be in its
/// buffer or on the wire, so the server's count is reached on a request actually sent.
pub const HANDOVER_MARGIN: u64 = 256;
/// How long it waits for them before draining the subscription instead.
pub const HANDOVER_WAIT: Duration = Duration::from_secs(2);

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
        let subscription = client.queue_subscribe(wildcard, group.to_string()).await?;
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
        let receiver = tokio::spawn(receive(
            subscription,
            ctx,
            stopped,
            tracker.clone(),
            discovery,
        ));
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

/// Take requests until the subscription ends; on `stop`, hand over (module docs).
async fn receive(
    mut subscription: Subscriber,
    ctx: Ctx,
    mut stop: watch::Receiver<bool>,
    tracker: TaskTracker,
    discovery: JoinHandle<Result<(), async_nats::Error>>,
) {
    let mut taken: u64 = 0;
    let mut handing_over = false;
    let drain_at = tokio::time::sleep(FAR);
    tokio::pin!(drain_at);
    loop {
        tokio::select! {
            biased;
            message = subscription.next() => {
                let Some(message) = message else { break };
                taken += 1;
                tracker.spawn(answer(ctx.clone(), message));
            }
            _ = stop.changed(), if !handing_over => {
                handing_over = true;
                discovery.abort();
                tracing::info!(taken, margin = HANDOVER_MARGIN, "handing NATS requests over to the other instances");
                if let Err(e) = subscription.unsubscribe_after(taken + HANDOVER_MARGIN).await {
                    tracing::warn!(error = %e, "could not end the subscription");
                    break;
                }
                drain_at.as_mut().reset(tokio::time::Instant::now() + HANDOVER_WAIT);
            }
            _ = &mut drain_at, if handing_over => {
                // Light traffic: nothing is on its way; drain what is left.
                let _ = subscription.drain().await;
                drain_at.as_mut().reset(tokio::time::Instant::now() + FAR);
            }
        }
    }
    tracing::info!(taken, "NATS subscription ended");
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
    let (format, result) = decide(&ctx, &name, &message).await;
    let (headers, body) = reply_message(format, &result);
    let error = result.as_ref().err().map(|p| p.code.as_str());
    ctx.stats.record(&name, started.elapsed(), error);
    if let Err(e) = ctx
        .client
        .publish_with_headers(reply_to, headers, Bytes::from(body))
        .await
    {
        tracing::warn!(error = %e, command = %name, "could not send the reply");
    }
}

/// One request's answer, in the format to reply in.
async fn decide(
    ctx: &Ctx,
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
    let Some(format) = Format::from_content_type(ct.as_deref()) else {
        let problem = Problem::unsupported_media_type(ct.as_deref().unwrap_or(""));
        return (Format::Json, Err(problem));
    };
    if !COMMAND_NAMES.contains(&name) {
        let problem = Problem::new(
            404,
            "request.unknown_command",
            format!("no command named {:?}", crm_domain::text::escaped(name)),
        );
        return (format, Err(problem));
    }
    let principal = match authenticate(ctx.auth.as_ref(), header("Authorization").as_deref(), name)
    {
        Ok(p) => p,
        Err(problem) => return (format, Err(problem)),
    };
    let result = execute(
        &ctx.handler,
        "nats",
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
fn reply_message(
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

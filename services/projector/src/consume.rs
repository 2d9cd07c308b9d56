//! Where one stream partition is consumed: a durable JetStream pull consumer whose
//! messages are applied to the read models in batches, each batch in one transaction with
//! the consumer's checkpoint, then acknowledged.
//!
//! - duplicates (redeliveries, a crash between commit and ack) are acknowledged and
//!   change nothing;
//! - an event that arrives before an earlier event of its customer is not applied; it is
//!   NAK'd with a short delay and applied once its predecessor is;
//! - a message that cannot be applied (undecodable body, unknown event type, payload that
//!   does not fit its schema) is published to the dead-letter stream, logged, counted,
//!   and acknowledged: its customer's later events keep flowing;
//! - when the read-model database fails, the batch is retried in place with backoff;
//!   nothing is acknowledged before it is committed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer::pull, AckKind};
use crm_bus::Subjects;
use crm_projections::{Fate, Prepared, ReadStore};
use crm_telemetry::names;
use futures::{FutureExt, StreamExt};
use tokio::sync::watch;

use crate::apply::Applier;
use crate::health::Health;

/// What a partition task needs.
#[derive(Clone)]
pub struct Ctx {
    pub js: jetstream::Context,
    pub stream: String,
    pub subjects: Subjects,
    pub group: String,
    pub store: ReadStore,
    /// Applies what the partitions deliver, several partitions' batches at once.
    pub applier: Applier,
    pub batch: usize,
    pub ack_wait: Duration,
    pub chaos: f64,
    pub health: Arc<Health>,
    /// Liveness: the partition balancer beats on every turn.
    pub beat: crm_http::Heartbeat,
}

/// True with probability `p` (fault injection; `p` is 0 outside drills). The low 62 bits
/// of a v4 UUID are random (bits 62–63 hold its variant).
fn chaos(p: f64) -> bool {
    const LOW: u64 = (1 << 62) - 1;
    p > 0.0 && ((uuid::Uuid::new_v4().as_u128() as u64 & LOW) as f64 / LOW as f64) < p
}

impl Ctx {
    pub fn consumer_name(&self, partition: u32) -> String {
        format!("{}-p{partition:02}", self.group)
    }
}

/// Consume `partition` until `stop` turns true. Errors of NATS end the task (the caller
/// restarts it); read-model errors are retried here.
pub async fn run_partition(
    ctx: Ctx,
    partition: u32,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let name = ctx.consumer_name(partition);
    let stream = ctx
        .js
        .get_stream(&ctx.stream)
        .await
        .map_err(|e| anyhow::anyhow!("stream {}: {e}", ctx.stream))?;
    let mut consumer: jetstream::consumer::Consumer<pull::Config> = stream
        .get_or_create_consumer(
            &name,
            pull::Config {
                durable_name: Some(name.clone()),
                description: Some(format!("read models, partition {partition}")),
                filter_subject: ctx.subjects.partition_filter(partition),
                ack_policy: jetstream::consumer::AckPolicy::Explicit,
                ack_wait: ctx.ack_wait,
                max_ack_pending: (ctx.batch * 8) as i64,
                deliver_policy: jetstream::consumer::DeliverPolicy::All,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| anyhow::anyhow!("consumer {name}: {e}"))?;
    let mut messages = consumer
        .stream()
        .max_messages_per_batch(ctx.batch)
        .heartbeat(Duration::from_secs(5))
        .messages()
        .await
        .map_err(|e| anyhow::anyhow!("consumer {name}: {e}"))?;
    tracing::info!(partition, consumer = %name, "consuming");
    ctx.health.started(partition);
    let _held = ctx.applier.hold();
    let mut refresh = tokio::time::interval(BEHIND_REFRESH);

    loop {
        let first = tokio::select! {
            _ = refresh.tick() => {
                refresh_behind(&mut consumer, &ctx.health, partition).await;
                continue;
            }
            _ = stop.changed() => {
                // Hand what was already pulled back at once, so the partition's next
                // owner need not wait for the ack deadline.
                while let Some(Some(Ok(m))) = messages.next().now_or_never() {
                    let _ = m.ack_with(AckKind::Nak(None)).await;
                }
                break;
            }
            m = messages.next() => m,
        };
        let Some(first) = first else { break };
        let mut batch = vec![first.map_err(|e| anyhow::anyhow!("{name}: {e}"))?];
        while batch.len() < ctx.batch {
            match messages.next().now_or_never() {
                Some(Some(m)) => batch.push(m.map_err(|e| anyhow::anyhow!("{name}: {e}"))?),
                _ => break,
            }
        }
        handle_batch(&ctx, partition, &name, batch, &mut stop).await?;
    }
    tracing::info!(partition, "partition released");
    ctx.health.stopped(partition);
    Ok(())
}

/// How often a partition asks the broker how much is left.
pub const BEHIND_REFRESH: Duration = Duration::from_secs(2);

/// What the broker says this partition has left: messages not yet delivered and
/// delivered but not yet acknowledged. The count a batch's last message carried is
/// only a snapshot; this is what tells an idle, caught-up partition from a stuck one.
async fn refresh_behind(
    consumer: &mut jetstream::consumer::Consumer<pull::Config>,
    health: &Health,
    partition: u32,
) {
    match consumer.info().await {
        Ok(info) => health.set_behind(partition, info.num_pending + info.num_ack_pending as u64),
        Err(e) => tracing::debug!(partition, error = %e, "consumer info unavailable"),
    }
}

async fn handle_batch(
    ctx: &Ctx,
    partition: u32,
    consumer: &str,
    batch: Vec<jetstream::Message>,
    stop: &mut watch::Receiver<bool>,
) -> anyhow::Result<()> {
    // A full batch, or the broker holding more: the partition is behind.
    let full = batch.len() >= ctx.batch;
    let Decoded {
        prepared,
        carried,
        pending_after,
    } = decode(ctx, partition, batch).await?;
    if prepared.is_empty() {
        return Ok(());
    }
    if chaos(ctx.chaos) {
        // Drill: hand the whole batch back unapplied; it comes again later, after
        // messages that were behind it.
        metrics::counter!(names::PROJECTOR_CHAOS_TOTAL, "fault" => "nak").increment(1);
        for m in &carried {
            let _ = m
                .ack_with(AckKind::Nak(Some(Duration::from_millis(200))))
                .await;
        }
        return Ok(());
    }
    let behind = full || pending_after > 0;
    let Some((prepared, fates)) = apply(ctx, partition, consumer, prepared, behind, stop).await?
    else {
        // Stopping: give the messages back at once for the next owner.
        for m in &carried {
            let _ = m.ack_with(AckKind::Nak(None)).await;
        }
        return Ok(());
    };
    let newest_us = acknowledge(ctx, &carried, &prepared, &fates).await?;
    let applied = (fates.iter())
        .filter(|f| matches!(f, Fate::Applied | Fate::DeadLetter))
        .count();
    ctx.health
        .progress(partition, applied, pending_after, newest_us);
    Ok(())
}

/// A batch's events, the messages that carried them, and what the broker had left.
struct Decoded {
    prepared: Vec<Prepared>,
    carried: Vec<jetstream::Message>,
    pending_after: u64,
}

/// Decode each message; poison and undecodable bodies go to the dead-letter stream (an
/// undecodable one is acknowledged: there is nothing to apply).
async fn decode(
    ctx: &Ctx,
    partition: u32,
    batch: Vec<jetstream::Message>,
) -> anyhow::Result<Decoded> {
    let mut out = Decoded {
        prepared: Vec::with_capacity(batch.len()),
        carried: Vec::with_capacity(batch.len()),
        pending_after: 0,
    };
    for msg in batch {
        let info = msg.info().map_err(|e| anyhow::anyhow!("{e}"))?;
        let sequence = info.stream_sequence;
        out.pending_after = info.pending;
        match crm_bus::envelope::decode(&msg.payload) {
            Ok(event) => {
                let p = Prepared::new(event, sequence);
                if let Some(poison) = p.poison() {
                    dead_letter(ctx, partition, &msg, sequence, &poison.to_string()).await?;
                }
                out.prepared.push(p);
                out.carried.push(msg);
            }
            Err(e) => {
                // Not even an event: nothing to apply; set it aside and move on.
                let reason = format!("undecodable body: {e}");
                dead_letter(ctx, partition, &msg, sequence, &reason).await?;
                msg.ack().await.map_err(|e| anyhow::anyhow!("{e}"))?;
            }
        }
    }
    Ok(out)
}

/// Apply `prepared` through the instance's applier, retrying with backoff until it
/// commits: its events back with their fates, or `None` once `stop` turns.
async fn apply(
    ctx: &Ctx,
    partition: u32,
    consumer: &str,
    mut prepared: Vec<Prepared>,
    behind: bool,
    stop: &mut watch::Receiver<bool>,
) -> anyhow::Result<Option<(Vec<Prepared>, Vec<Fate>)>> {
    let mut backoff = Duration::from_millis(100);
    loop {
        let (back, result) = (ctx.applier)
            .apply(partition, consumer, prepared, behind)
            .await;
        prepared = back;
        let e = match result {
            Ok(fates) => return Ok(Some((prepared, fates))),
            // The applier is gone with the batch: end the task; the messages come again.
            Err(e) if prepared.is_empty() => anyhow::bail!("{e}"),
            Err(e) => e,
        };
        metrics::counter!(names::PROJECTOR_RETRIES_TOTAL).increment(1);
        tracing::warn!(error = %e, partition, "applying a batch failed; retrying");
        ctx.health.failing(partition, &e);
        tokio::select! {
            _ = stop.changed() => return Ok(None),
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// Acknowledge each committed message by its fate (an early one is handed back for
/// later), with the metrics; the newest recording instant applied or set aside.
async fn acknowledge(
    ctx: &Ctx,
    carried: &[jetstream::Message],
    prepared: &[Prepared],
    fates: &[Fate],
) -> anyhow::Result<i64> {
    let committed_at = chrono::Utc::now();
    let mut newest_us = 0i64;
    for ((msg, p), fate) in carried.iter().zip(prepared).zip(fates) {
        let label = match fate {
            Fate::Applied => "applied",
            Fate::Duplicate => "duplicate",
            Fate::Early => "early",
            Fate::DeadLetter => "dead_letter",
        };
        metrics::counter!(names::PROJECTOR_EVENTS_TOTAL, "fate" => label).increment(1);
        if chaos(ctx.chaos) {
            // Drill: the acknowledgement is lost; the broker delivers it again after
            // the ack wait, when it must be a no-op.
            metrics::counter!(names::PROJECTOR_CHAOS_TOTAL, "fault" => "lost_ack").increment(1);
            continue;
        }
        let result = match fate {
            Fate::Early => {
                msg.ack_with(AckKind::Nak(Some(Duration::from_millis(50))))
                    .await
            }
            _ => msg.ack().await,
        };
        result.map_err(|e| anyhow::anyhow!("acknowledging: {e}"))?;
        if matches!(fate, Fate::Applied | Fate::DeadLetter) {
            let recorded = p.event.metadata.recorded_at;
            newest_us = newest_us.max(recorded.timestamp_micros());
            if *fate == Fate::Applied {
                let lag = (committed_at - recorded).num_microseconds().unwrap_or(0);
                metrics::histogram!(names::PROJECTOR_LAG_SECONDS).record(lag.max(0) as f64 / 1e6);
            }
        }
    }
    Ok(newest_us)
}

/// Publish `msg` to the dead-letter stream with the reason; deduplicated by stream
/// sequence, so a redelivery does not add a second copy.
async fn dead_letter(
    ctx: &Ctx,
    partition: u32,
    msg: &jetstream::Message,
    sequence: u64,
    reason: &str,
) -> anyhow::Result<()> {
    metrics::counter!(names::PROJECTOR_DEAD_LETTERS_TOTAL).increment(1);
    tracing::error!(
        partition,
        sequence,
        subject = %msg.subject,
        reason,
        "message set aside in the dead-letter stream"
    );
    let mut headers = msg.headers.clone().unwrap_or_default();
    headers.insert("Crm-Dead-Letter-Reason", reason);
    headers.insert("Crm-Source-Subject", msg.subject.as_str());
    headers.insert("Crm-Source-Sequence", sequence.to_string().as_str());
    headers.insert(
        "Nats-Msg-Id",
        format!("{}-{}-{sequence}", ctx.stream, ctx.group).as_str(),
    );
    let started = Instant::now();
    ctx.js
        .publish_with_headers(
            ctx.subjects.dead_letter(&ctx.group, partition),
            headers,
            msg.payload.clone(),
        )
        .await
        .map_err(|e| anyhow::anyhow!("dead-letter publish: {e}"))?
        .await
        .map_err(|e| anyhow::anyhow!("dead-letter publish: {e}"))?;
    tracing::debug!(elapsed = ?started.elapsed(), "dead letter stored");
    Ok(())
}

//! The relay: where events are published. It follows the store's commit-safe global log
//! and publishes each event once, in log order, to the JetStream stream.
//!
//! Exactly once, in order, without trusting the duplicate window:
//! - every message carries `Nats-Expected-Last-Sequence` (and, inside a pipelined batch,
//!   `Nats-Expected-Last-Msg-Id` = the previous event), so the server stores event *n*
//!   only right after event *n-1*: the stream is always a gapless prefix of the log,
//!   even when a pipelined publish fails halfway or someone else publishes in between;
//! - on start the relay reads the stream's last message and resumes right after the log
//!   position in its `Crm-Log-Position` header; the checkpoint in the store is written
//!   after each batch and cross-checks the stream;
//! - `Nats-Msg-Id` = event id lets the server drop a repeat if two relays ever raced;
//! - only the holder of the leader lock publishes (see [`Leadership`]).

use std::future::Future;
use std::time::{Duration, Instant};

use async_nats::jetstream::stream::RawMessageErrorKind;
use async_nats::jetstream::{self, context::PublishErrorKind, message::PublishMessage};
use crm_eventstore::{Checkpoint, Checkpoints, Log, LogPosition, RecordedEvent, StoreError};
use crm_telemetry::names;

use crate::envelope::{body_for, headers_for, log_position};
use crate::stream::{self, StreamSpec};

#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Checkpoint name in the store.
    pub name: String,
    /// Events read and published per round trip.
    pub batch_size: usize,
    /// Sleep when the log has nothing new.
    pub idle_poll: Duration,
    /// Longest time between checkpoint writes while publishing.
    pub checkpoint_every: Duration,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            name: "relay".into(),
            batch_size: 512,
            idle_poll: Duration::from_millis(5),
            checkpoint_every: Duration::from_secs(1),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("event store: {0}")]
    Store(#[from] StoreError),
    #[error("NATS: {0}")]
    Nats(String),
    #[error(
        "stream {stream} holds {last_sequence} messages but the checkpoint says {checkpoint} were published: \
         the stream was purged or recreated. Delete the checkpoint row '{name}' to republish the whole log."
    )]
    StreamBehind {
        stream: String,
        last_sequence: u64,
        checkpoint: u64,
        name: String,
    },
    #[error("message {sequence} of stream {stream} has no Crm-Log-Position header: the stream holds foreign messages")]
    ForeignMessage { stream: String, sequence: u64 },
    #[error("leadership lost")]
    LeadershipLost,
}

/// How far back from the stream's tail the relay looks for its own last message.
const FOREIGN_LIMIT: u64 = 10_000;

/// An event whose payload is the store's JSON text, checked to be JSON.
fn raw_payload(
    e: RecordedEvent<String>,
) -> Result<RecordedEvent<Box<serde_json::value::RawValue>>, RelayError> {
    let id = e.event_id;
    e.try_map_payload(serde_json::value::RawValue::from_string)
        .map_err(|err| {
            RelayError::Store(StoreError::Corrupt(format!(
                "event {id}: the payload is not JSON: {err}"
            )))
        })
}

fn nats(e: impl std::fmt::Display) -> RelayError {
    RelayError::Nats(e.to_string())
}

/// Whether this process may still publish.
pub trait Leadership: Send {
    fn still_leader(&mut self) -> impl Future<Output = bool> + Send;
}

/// For the embedded mode and tests with one relay.
pub struct SoleRelay;

impl Leadership for SoleRelay {
    async fn still_leader(&mut self) -> bool {
        true
    }
}

impl Leadership for crm_eventstore::postgres::LeaderLock {
    async fn still_leader(&mut self) -> bool {
        self.check().await.is_ok()
    }
}

/// Where the relay stands: the last published log position and stream sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub position: LogPosition,
    pub sequence: u64,
    /// When the checkpoint was last written.
    pub saved: Option<Instant>,
}

pub struct Relay<S> {
    store: S,
    js: jetstream::Context,
    spec: StreamSpec,
    config: RelayConfig,
}

impl<S: Log + Checkpoints> Relay<S> {
    pub fn new(store: S, js: jetstream::Context, spec: StreamSpec, config: RelayConfig) -> Self {
        Self {
            store,
            js,
            spec,
            config,
        }
    }

    /// Where to resume: right after the stream's last message.
    pub async fn resume(&self) -> Result<Cursor, RelayError> {
        let mut stream = stream::ensure(&self.js, &self.spec).await.map_err(nats)?;
        let last = stream.info().await.map_err(nats)?.state.last_sequence;
        let saved = self.store.load_checkpoint(&self.config.name).await?;
        let saved_seq = saved.as_ref().map_or(0, |c| c.extra as u64);
        if last < saved_seq {
            return Err(RelayError::StreamBehind {
                stream: self.spec.name.clone(),
                last_sequence: last,
                checkpoint: saved_seq,
                name: self.config.name.clone(),
            });
        }
        if last == 0 {
            return Ok(Cursor {
                position: LogPosition::START,
                sequence: 0,
                saved: None,
            });
        }
        if let Some(cp) = saved.as_ref().filter(|c| c.extra as u64 == last) {
            return Ok(Cursor {
                position: cp.position,
                sequence: last,
                saved: None,
            });
        }
        // Published past the checkpoint before a crash: the stream itself knows. Messages
        // someone else put at the tail (no log position) are stepped over: the projectors
        // set them aside in the dead-letter stream, and the relay carries on after them.
        let mut sequence = last;
        let position = loop {
            if sequence == saved_seq {
                // The checkpoint's own message, or the start of an empty log.
                break saved.as_ref().map_or(LogPosition::START, |c| c.position);
            }
            if last - sequence >= FOREIGN_LIMIT {
                return Err(RelayError::ForeignMessage {
                    stream: self.spec.name.clone(),
                    sequence: last,
                });
            }
            let msg: Result<_, _> = stream.get_raw_message(sequence).await;
            match msg {
                Ok(msg) => {
                    if let Some(p) = log_position(&msg.headers) {
                        break p;
                    }
                }
                Err(e) if e.kind() == RawMessageErrorKind::NoMessageFound => {
                    // Deleted by an operator: not the relay's either.
                }
                Err(e) => return Err(nats(e)),
            }
            sequence -= 1;
        };
        if sequence < last {
            metrics::counter!(names::RELAY_FOREIGN_MESSAGES_TOTAL).increment(last - sequence);
            tracing::warn!(
                foreign = last - sequence,
                from = sequence + 1,
                to = last,
                "messages in the stream that the relay did not publish (another publisher?); continuing after them"
            );
        }
        tracing::info!(%position, sequence = last, "relay resumes from the stream's last message");
        Ok(Cursor {
            position,
            sequence: last,
            saved: None,
        })
    }

    /// Write the checkpoint now.
    pub async fn save(&self, cursor: &mut Cursor) -> Result<(), RelayError> {
        self.store
            .save_checkpoint(&Checkpoint {
                name: self.config.name.clone(),
                position: cursor.position,
                extra: cursor.sequence as i64,
            })
            .await?;
        cursor.saved = Some(Instant::now());
        Ok(())
    }

    /// Publish the next batch of the log; returns how many events were published.
    pub async fn step(&self, cursor: &mut Cursor) -> Result<usize, RelayError> {
        // Payloads as the store's JSON text: published as they are, never parsed into a
        // tree and printed again.
        let events = self
            .store
            .read_all_text(cursor.position, self.config.batch_size)
            .await?
            .into_iter()
            .map(raw_payload)
            .collect::<Result<Vec<_>, _>>()?;
        if events.is_empty() {
            metrics::gauge!(names::RELAY_LAG_SECONDS).set(0.0);
            // Caught up: bring the checkpoint up to date if it lags behind the stream.
            if cursor.sequence > 0
                && cursor
                    .saved
                    .is_none_or(|t| t.elapsed() >= self.config.checkpoint_every)
            {
                self.save(cursor).await?;
            }
            return Ok(0);
        }
        let oldest = events[0].metadata.recorded_at;
        let lag = (chrono::Utc::now() - oldest).num_milliseconds().max(0) as f64 / 1000.0;
        metrics::gauge!(names::RELAY_LAG_SECONDS).set(lag);

        // Pipelined: send the whole batch, then collect the acks in order.
        let mut acks = Vec::with_capacity(events.len());
        // Each message names the sequence and the message (the previous event) it must
        // follow: a foreign message slipped in between fails the rest of the batch
        // instead of letting the next event take the failed one's place.
        for (i, e) in events.iter().enumerate() {
            let mut msg = PublishMessage::build()
                .payload(body_for(e))
                .headers(headers_for(e))
                .message_id(e.event_id.to_string())
                .expected_last_sequence(cursor.sequence + i as u64);
            if i > 0 {
                msg = msg.expected_last_message_id(events[i - 1].event_id.to_string());
            }
            let subject = self.spec.subjects.event(&e.stream_id, &e.event_type);
            acks.push(self.js.send_publish(subject, msg).await.map_err(nats)?);
        }
        for (i, ack) in acks.into_iter().enumerate() {
            let ack = ack.await.map_err(|e| {
                if matches!(
                    e.kind(),
                    PublishErrorKind::WrongLastSequence | PublishErrorKind::WrongLastMessageId
                ) {
                    RelayError::Nats(format!(
                        "stream moved under the relay (another publisher?): {e}"
                    ))
                } else {
                    nats(e)
                }
            })?;
            let expected = cursor.sequence + i as u64 + 1;
            if ack.sequence != expected {
                return Err(RelayError::Nats(format!(
                    "event {} stored at sequence {} instead of {expected}",
                    events[i].event_id, ack.sequence
                )));
            }
        }
        cursor.sequence += events.len() as u64;
        cursor.position = events.last().expect("non-empty").log_position;
        // The stream's last message is where a restart resumes; the checkpoint only
        // cross-checks it, so it is written at most every `checkpoint_every`.
        if cursor
            .saved
            .is_none_or(|t| t.elapsed() >= self.config.checkpoint_every)
        {
            self.save(cursor).await?;
        }
        metrics::counter!(names::RELAY_PUBLISHED_TOTAL).increment(events.len() as u64);
        Ok(events.len())
    }

    /// Publish until `shutdown` resolves, leadership is lost, or an error occurs (the
    /// caller restarts after an error: resuming is always safe).
    pub async fn run<L: Leadership>(
        &self,
        leader: &mut L,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), RelayError> {
        let mut cursor = self.resume().await?;
        tracing::info!(position = %cursor.position, sequence = cursor.sequence, stream = %self.spec.name, "relay publishing");
        tokio::pin!(shutdown);
        let mut last_check = Instant::now();
        loop {
            if last_check.elapsed() > Duration::from_secs(1) {
                if !leader.still_leader().await {
                    return Err(RelayError::LeadershipLost);
                }
                last_check = Instant::now();
            }
            let published = tokio::select! {
                r = self.step(&mut cursor) => r?,
                _ = &mut shutdown => return Ok(()),
            };
            if published == 0 {
                tokio::select! {
                    _ = tokio::time::sleep(self.config.idle_poll) => {}
                    _ = &mut shutdown => return Ok(()),
                }
            }
        }
    }
}

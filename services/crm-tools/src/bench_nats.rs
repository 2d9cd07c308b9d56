//! NATS ceilings, beside the PostgreSQL one: what the broker alone gives on this machine
//! for the two hops every command makes.
//!
//! (c) core request/reply to a responder that answers at once, with the same number of
//!     requests in flight as the workload (the ingress hop, nothing else);
//! (d) JetStream publishing of event-sized messages with acks pipelined as the relay
//!     does it (the publication hop, nothing else).
//!
//! The platform's figure can not exceed either: each command costs at least one (c) and
//! each event one (d), on the same two cores.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use futures::StreamExt;
use uuid::Uuid;

pub struct Rate {
    pub count: u64,
    pub elapsed: Duration,
}

impl Rate {
    pub fn per_second(&self) -> f64 {
        self.count as f64 / self.elapsed.as_secs_f64()
    }
}

/// (c) request/reply round trips per second with `in_flight` requesters.
pub async fn request_reply(
    nats: &async_nats::Client,
    in_flight: usize,
    payload: usize,
    duration: Duration,
) -> anyhow::Result<Rate> {
    let subject = format!("bench.echo.{}", Uuid::new_v4().simple());
    let mut sub = nats.subscribe(subject.clone()).await?;
    let responder_client = nats.clone();
    let responder = tokio::spawn(async move {
        while let Some(msg) = sub.next().await {
            if let Some(reply) = msg.reply {
                // A reply the size of a command's answer.
                let _ = responder_client
                    .publish(reply, bytes::Bytes::from_static(&[0u8; 96]))
                    .await;
            }
        }
    });
    nats.flush().await?;
    let count = Arc::new(AtomicU64::new(0));
    let body = bytes::Bytes::from(vec![b'x'; payload]);
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::new();
    for _ in 0..in_flight {
        let (nats, count, subject, body) =
            (nats.clone(), count.clone(), subject.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                nats.request(subject.clone(), body.clone()).await?;
                count.fetch_add(1, Ordering::Relaxed);
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let elapsed = started.elapsed();
    responder.abort();
    Ok(Rate {
        count: count.load(Ordering::Relaxed),
        elapsed,
    })
}

/// (d) JetStream publishes per second into a fresh file-backed stream, `window` acks
/// outstanding, each message with a `Nats-Msg-Id` as the relay sends them.
pub async fn jetstream_publish(
    js: &jetstream::Context,
    window: usize,
    payload: usize,
    duration: Duration,
) -> anyhow::Result<Rate> {
    let name = format!("BENCH_RAW_{}", Uuid::new_v4().simple());
    let subject = format!("benchraw.{}", Uuid::new_v4().simple());
    js.create_stream(jetstream::stream::Config {
        name: name.clone(),
        subjects: vec![format!("{subject}.>")],
        storage: jetstream::stream::StorageType::File,
        ..Default::default()
    })
    .await
    .map_err(|e| anyhow::anyhow!("creating {name}: {e}"))?;
    let body = bytes::Bytes::from(vec![b'x'; payload]);
    let started = Instant::now();
    let deadline = started + duration;
    let mut pending = std::collections::VecDeque::with_capacity(window);
    let mut count = 0u64;
    let mut n = 0u64;
    while Instant::now() < deadline {
        n += 1;
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", Uuid::new_v4().to_string().as_str());
        let ack = js
            .publish_with_headers(format!("{subject}.{}", n % 16), headers, body.clone())
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        pending.push_back(ack);
        if pending.len() >= window {
            if let Some(ack) = pending.pop_front() {
                ack.await.map_err(|e| anyhow::anyhow!("{e}"))?;
                count += 1;
            }
        }
    }
    for ack in pending {
        ack.await.map_err(|e| anyhow::anyhow!("{e}"))?;
        count += 1;
    }
    let elapsed = started.elapsed();
    let _ = js.delete_stream(&name).await;
    Ok(Rate { count, elapsed })
}

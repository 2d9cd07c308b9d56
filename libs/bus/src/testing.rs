//! Test helpers: a NATS connection and a stream of its own for each test. NATS is
//! required: a test that cannot reach it fails loudly, it never skips.

use async_nats::jetstream;
use uuid::Uuid;

use crate::stream::StreamSpec;
use crate::subjects::Subjects;

pub fn nats_url() -> String {
    std::env::var("CRM_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

pub async fn connect() -> async_nats::Client {
    let url = nats_url();
    async_nats::connect(&url).await.unwrap_or_else(|e| {
        panic!("NATS with JetStream is required for this test and is not reachable at {url} ({e}). Start it (scripts/services) or set CRM_TEST_NATS_URL.")
    })
}

/// A stream name and subject prefix no other test run uses; the stream is deleted when
/// the guard drops.
pub struct TestStream {
    pub spec: StreamSpec,
    pub js: jetstream::Context,
}

impl TestStream {
    pub async fn new() -> Self {
        let id = Uuid::new_v4().simple().to_string();
        let spec = StreamSpec::new(format!("T_{id}"), Subjects::new(format!("t{id}")));
        Self {
            spec,
            js: jetstream::new(connect().await),
        }
    }

    /// Every message in the stream, in sequence order (deleted ones left out).
    pub async fn messages(&self) -> Vec<jetstream::message::StreamMessage> {
        let stream = self
            .js
            .get_stream(&self.spec.name)
            .await
            .expect("stream exists");
        let mut info = stream.clone();
        let last = info.info().await.expect("stream info").state.last_sequence;
        let mut out = Vec::with_capacity(last as usize);
        for seq in 1..=last {
            match stream.direct_get(seq).await {
                Ok(m) => out.push(m),
                Err(e) if e.kind() == jetstream::stream::DirectGetErrorKind::NotFound => {}
                Err(e) => panic!("message {seq}: {e}"),
            }
        }
        out
    }
}

impl Drop for TestStream {
    fn drop(&mut self) {
        let name = self.spec.name.clone();
        // Drop blocks the test's runtime, which drives `self.js`'s connection: clean up
        // with a connection of the cleanup thread's own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async move {
                let client = async_nats::connect(nats_url()).await.ok()?;
                let js = jetstream::new(client);
                // Projectors create a dead-letter stream beside it.
                let _ = js
                    .delete_stream(crate::subjects::dead_letter_stream(&name))
                    .await;
                js.delete_stream(&name).await.ok()
            })
        })
        .join();
    }
}

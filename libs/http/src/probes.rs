//! Readiness and liveness, as Kubernetes asks for them.
//!
//! - **Readiness** (`GET /readyz`): can the process do its work now? Every dependency
//!   check passes (the store answers, NATS is connected, the projector is caught up
//!   within its bound, …) and the process is not draining for shutdown. A failing
//!   readiness takes the pod out of its Service; it is never a reason to restart.
//! - **Liveness** (`GET /livez`): is the process alive and making progress? Its HTTP
//!   server answers, and every work loop that registered a heartbeat beat recently. A
//!   failing liveness makes Kubernetes restart the process, so it never depends on
//!   another service: a database that is down makes a service unready, not dead.
//!
//! Both answer JSON naming each check, 200 or 503.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures::future::BoxFuture;
use serde_json::{json, Map, Value};

/// How long one readiness check may take before it counts as failed.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

type CheckFn = dyn Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync;

struct Check {
    name: &'static str,
    run: Box<CheckFn>,
}

struct Beat {
    name: &'static str,
    max_silence: Duration,
    /// Milliseconds since the probes were built, at the last beat.
    last_ms: AtomicU64,
}

struct Inner {
    checks: Vec<Check>,
    beats: Vec<Arc<Beat>>,
    draining: AtomicBool,
    started: Instant,
}

/// A service's probes; cheap to clone.
#[derive(Clone)]
pub struct Probes(Arc<Inner>);

/// Collects the checks and heartbeats of a service.
pub struct ProbesBuilder {
    checks: Vec<Check>,
    beats: Vec<Arc<Beat>>,
    started: Instant,
}

/// A work loop's sign of life: call [`Heartbeat::beat`] at least once per its
/// `max_silence`, or liveness fails.
#[derive(Clone)]
pub struct Heartbeat {
    beat: Arc<Beat>,
    started: Instant,
}

impl Heartbeat {
    pub fn beat(&self) {
        let ms = self.started.elapsed().as_millis() as u64;
        self.beat.last_ms.store(ms, Ordering::Relaxed);
    }
}

impl Default for ProbesBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl ProbesBuilder {
    pub fn new() -> Self {
        Self {
            checks: Vec::new(),
            beats: Vec::new(),
            started: Instant::now(),
        }
    }

    /// A readiness check: `Ok` when the dependency can be used now, else why not.
    pub fn check<F, Fut>(mut self, name: &'static str, check: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        self.checks.push(Check {
            name,
            run: Box::new(move || Box::pin(check())),
        });
        self
    }

    /// A heartbeat for liveness: silent for longer than `max_silence`, the process is
    /// stuck. It counts as beaten at the start.
    pub fn heartbeat(&mut self, name: &'static str, max_silence: Duration) -> Heartbeat {
        let beat = Arc::new(Beat {
            name,
            max_silence,
            last_ms: AtomicU64::new(0),
        });
        self.beats.push(beat.clone());
        Heartbeat {
            beat,
            started: self.started,
        }
    }

    pub fn build(self) -> Probes {
        Probes(Arc::new(Inner {
            checks: self.checks,
            beats: self.beats,
            draining: AtomicBool::new(false),
            started: self.started,
        }))
    }
}

impl Probes {
    /// From now on the process is shutting down: readiness fails, so load balancers stop
    /// sending it work while it finishes what it accepted.
    pub fn drain(&self) {
        self.0.draining.store(true, Ordering::Relaxed);
    }

    pub fn is_draining(&self) -> bool {
        self.0.draining.load(Ordering::Relaxed)
    }

    /// Every check, run concurrently, each within [`CHECK_TIMEOUT`].
    pub async fn readiness(&self) -> (bool, Value) {
        let results = futures::future::join_all(self.0.checks.iter().map(|c| async move {
            let outcome = match tokio::time::timeout(CHECK_TIMEOUT, (c.run)()).await {
                Ok(r) => r,
                Err(_) => Err(format!("no answer within {} s", CHECK_TIMEOUT.as_secs())),
            };
            (c.name, outcome)
        }))
        .await;
        let mut checks = Map::new();
        let mut ready = !self.is_draining();
        for (name, outcome) in results {
            let text = match outcome {
                Ok(()) => "ok".to_string(),
                Err(e) => {
                    ready = false;
                    e
                }
            };
            checks.insert(name.to_string(), Value::String(text));
        }
        let status = match (ready, self.is_draining()) {
            (_, true) => "draining",
            (true, false) => "ready",
            (false, false) => "not_ready",
        };
        (ready, json!({ "status": status, "checks": checks }))
    }

    /// Every heartbeat within its bound.
    pub fn liveness(&self) -> (bool, Value) {
        let now_ms = self.0.started.elapsed().as_millis() as u64;
        let mut alive = true;
        let mut beats = Map::new();
        for b in &self.0.beats {
            let silent =
                Duration::from_millis(now_ms - b.last_ms.load(Ordering::Relaxed).min(now_ms));
            let ok = silent <= b.max_silence;
            alive &= ok;
            beats.insert(
                b.name.to_string(),
                json!({ "ok": ok, "seconds_since_beat": silent.as_secs_f64(),
                        "bound_seconds": b.max_silence.as_secs_f64() }),
            );
        }
        let status = if alive { "alive" } else { "stuck" };
        (alive, json!({ "status": status, "heartbeats": beats }))
    }

    /// `GET /livez`, `GET /readyz`, and `GET /healthz` answering as `/readyz` (what the
    /// API services answered before the two probes existed).
    pub fn routes_with_healthz<S: Clone + Send + Sync + 'static>(&self) -> Router<S> {
        let ready = self.clone();
        self.routes().route(
            "/healthz",
            get(move || {
                let probes = ready.clone();
                async move { answer(probes.readiness().await) }
            }),
        )
    }

    /// `GET /livez` and `GET /readyz`.
    pub fn routes<S: Clone + Send + Sync + 'static>(&self) -> Router<S> {
        let (live, ready) = (self.clone(), self.clone());
        Router::new()
            .route(
                "/livez",
                get(move || {
                    let probes = live.clone();
                    async move { answer(probes.liveness()) }
                }),
            )
            .route(
                "/readyz",
                get(move || {
                    let probes = ready.clone();
                    async move { answer(probes.readiness().await) }
                }),
            )
    }
}

fn answer((ok, body): (bool, Value)) -> Response {
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn readiness_names_each_check_and_draining_makes_it_fail() {
        let down = Arc::new(AtomicBool::new(false));
        let flag = down.clone();
        let probes = ProbesBuilder::new()
            .check("store", || async { Ok(()) })
            .check("nats", move || {
                let down = flag.load(Ordering::Relaxed);
                async move {
                    if down {
                        Err("disconnected".into())
                    } else {
                        Ok(())
                    }
                }
            })
            .build();
        let (ok, body) = probes.readiness().await;
        assert!(ok, "{body}");
        down.store(true, Ordering::Relaxed);
        let (ok, body) = probes.readiness().await;
        assert!(!ok);
        assert_eq!(body["checks"]["nats"], "disconnected");
        assert_eq!(body["checks"]["store"], "ok");
        down.store(false, Ordering::Relaxed);
        probes.drain();
        let (ok, body) = probes.readiness().await;
        assert!(!ok);
        assert_eq!(body["status"], "draining");
    }

    #[tokio::test]
    async fn a_check_that_hangs_fails_within_its_timeout() {
        let probes = ProbesBuilder::new()
            .check("store", std::future::pending)
            .build();
        let started = Instant::now();
        let (ok, body) = probes.readiness().await;
        assert!(!ok);
        assert!(started.elapsed() < CHECK_TIMEOUT + Duration::from_secs(1));
        assert!(body["checks"]["store"]
            .as_str()
            .unwrap()
            .contains("no answer"));
    }

    #[test]
    fn liveness_fails_when_a_loop_goes_silent() {
        let mut builder = ProbesBuilder::new();
        let beat = builder.heartbeat("loop", Duration::from_millis(50));
        let probes = builder.build();
        assert!(probes.liveness().0);
        std::thread::sleep(Duration::from_millis(80));
        let (alive, body) = probes.liveness();
        assert!(!alive, "{body}");
        beat.beat();
        assert!(probes.liveness().0);
    }
}

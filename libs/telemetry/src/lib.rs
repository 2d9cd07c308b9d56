//! Telemetry shared by every service: tracing setup, the Prometheus recorder, and the one
//! module, [`names`], that defines every metric the platform emits.
#![forbid(unsafe_code)]

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Every metric name, in one place. Labels never carry customer ids.
pub mod names {
    /// 1, labelled with the build: `version` (the workspace's), `commit` (`CRM_BUILD_COMMIT`
    /// at build time, `unknown` without it).
    pub const BUILD_INFO: &str = "crm_build_info";
    /// Commands handled. Labels: `command` (snake_case name), `outcome`
    /// (`accepted`, `duplicate`, `refused`, `failed`), `code` (refusal code or `none`).
    pub const COMMANDS_TOTAL: &str = "crm_commands_total";
    /// Time from a command's arrival at the handler to its answer. Labels: `command`.
    pub const COMMAND_DURATION_SECONDS: &str = "crm_command_duration_seconds";
    /// Events appended to the store. Labels: `event_type`.
    pub const EVENTS_APPENDED_TOTAL: &str = "crm_events_appended_total";
    /// Commands per group-commit transaction.
    pub const APPEND_BATCH_SIZE: &str = "crm_append_batch_size";
    /// Append batches planned again because another writer (usually another process)
    /// had changed what they touch since this process last saw it.
    pub const APPEND_STALE_BELIEFS_TOTAL: &str = "crm_append_stale_beliefs_total";
    /// Commands retried after an optimistic-concurrency conflict. Labels: `command`.
    pub const COMMAND_RETRIES_TOTAL: &str = "crm_command_retries_total";
    /// Aggregate states looked up in the command service's cache. Labels: `aggregate`
    /// (`customer`, `manager`), `result` (`hit`, `miss`: read from the store).
    pub const STATE_CACHE_LOOKUPS_TOTAL: &str = "crm_state_cache_lookups_total";
    /// Payloads refused before reaching the domain. Labels: `transport`, `reason`.
    pub const INGRESS_REJECTED_TOTAL: &str = "crm_ingress_rejected_total";
    /// Events the relay published to JetStream.
    pub const RELAY_PUBLISHED_TOTAL: &str = "crm_relay_events_published_total";
    /// Age of the oldest unpublished event.
    pub const RELAY_LAG_SECONDS: &str = "crm_relay_lag_seconds";
    /// 1 while this relay holds the leader lock, else 0.
    pub const RELAY_LEADER: &str = "crm_relay_leader";
    /// Messages found in the stream that the relay did not publish (stepped over).
    pub const RELAY_FOREIGN_MESSAGES_TOTAL: &str = "crm_relay_foreign_messages_total";
    /// Events handled by a projector. Labels: `fate` (`applied`, `duplicate`, `early`,
    /// `dead_letter`).
    pub const PROJECTOR_EVENTS_TOTAL: &str = "crm_projector_events_total";
    /// Messages of a partition not yet applied. Labels: `partition`.
    pub const PROJECTOR_EVENTS_BEHIND: &str = "crm_projector_events_behind";
    /// Age of the newest applied event while messages wait (0 when caught up). Labels:
    /// `partition`.
    pub const PROJECTOR_SECONDS_BEHIND: &str = "crm_projector_seconds_behind";
    /// Messages sent to the dead-letter stream.
    pub const PROJECTOR_DEAD_LETTERS_TOTAL: &str = "crm_projector_dead_letters_total";
    /// Faults injected by `CRM_PROJECTOR_CHAOS` (drills only), by fault.
    pub const PROJECTOR_CHAOS_TOTAL: &str = "crm_projector_chaos_total";
    /// Partitions this projector instance holds.
    pub const PROJECTOR_PARTITIONS_HELD: &str = "crm_projector_partitions_held";
    /// Time from an event's commit in the store to its application to the read models
    /// (relay, stream and projector together).
    pub const PROJECTOR_LAG_SECONDS: &str = "crm_projector_lag_seconds";
    /// Batches whose transaction failed and was retried.
    pub const PROJECTOR_RETRIES_TOTAL: &str = "crm_projector_retries_total";
    /// Counter keys the projector's folds moved the transactions' stripes into.
    pub const PROJECTOR_FOLDED_KEYS_TOTAL: &str = "crm_projector_folded_keys_total";
    /// Timers the scheduler issued. Labels: `timer` (e.g. `timer_pool_return`), `outcome`
    /// (`applied`, `duplicate`, `not_due`, `refused`, `failed`).
    pub const SCHEDULER_TIMERS_TOTAL: &str = "crm_scheduler_timers_total";
    /// Customers the scheduler tracks.
    pub const SCHEDULER_CUSTOMERS: &str = "crm_scheduler_customers";
    /// Duration of one scheduler tick (catch up with the log, issue what is due).
    pub const SCHEDULER_TICK_SECONDS: &str = "crm_scheduler_tick_seconds";
    /// How late the oldest due timer of a tick was (now − its due time).
    pub const SCHEDULER_DELAY_SECONDS: &str = "crm_scheduler_delay_seconds";
    /// HTTP requests answered. Labels: `service`, `route` (the matched pattern, e.g.
    /// `/v1/customers/{id}`; `unmatched` for unknown paths), `method`, `status`.
    pub const HTTP_REQUESTS_TOTAL: &str = "crm_http_requests_total";
    /// Time to answer an HTTP request. Labels: `service`, `route`, `method`.
    pub const HTTP_REQUEST_DURATION_SECONDS: &str = "crm_http_request_duration_seconds";
    /// Global checkpoints stored (tamper evidence over the global log).
    pub const AUDIT_CHECKPOINTS_TOTAL: &str = "crm_audit_checkpoints_total";
    /// Events sealed by global checkpoints.
    pub const AUDIT_SEALED_EVENTS_TOTAL: &str = "crm_audit_sealed_events_total";
}

/// Register descriptions so `/metrics` explains itself.
pub fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(
        names::AUDIT_CHECKPOINTS_TOTAL,
        "Global checkpoints stored over the event log"
    );
    describe_counter!(
        names::AUDIT_SEALED_EVENTS_TOTAL,
        "Events sealed by global checkpoints"
    );
    describe_counter!(
        names::HTTP_REQUESTS_TOTAL,
        "HTTP requests answered, by service, route pattern, method and status"
    );
    describe_histogram!(
        names::HTTP_REQUEST_DURATION_SECONDS,
        Unit::Seconds,
        "Time to answer an HTTP request, by service, route pattern and method"
    );
    describe_counter!(
        names::COMMANDS_TOTAL,
        "Commands handled, by command, outcome and refusal code"
    );
    describe_histogram!(
        names::COMMAND_DURATION_SECONDS,
        Unit::Seconds,
        "Command latency from arrival at the handler to the answer"
    );
    describe_counter!(
        names::EVENTS_APPENDED_TOTAL,
        "Events appended to the event store"
    );
    describe_histogram!(
        names::APPEND_BATCH_SIZE,
        "Commands per group-commit transaction"
    );
    describe_counter!(
        names::APPEND_STALE_BELIEFS_TOTAL,
        "Append batches planned again on fresh state because another writer had moved it"
    );
    describe_counter!(
        names::COMMAND_RETRIES_TOTAL,
        "Commands re-decided after a concurrency conflict"
    );
    describe_counter!(
        names::STATE_CACHE_LOOKUPS_TOTAL,
        "Aggregate states looked up in the command service's cache, by aggregate and result"
    );
    describe_counter!(
        names::INGRESS_REJECTED_TOTAL,
        "Payloads refused before reaching the domain"
    );
    describe_counter!(
        names::PROJECTOR_EVENTS_TOTAL,
        "Events handled by the projector, by fate (applied, duplicate, early, dead_letter)"
    );
    describe_gauge!(
        names::PROJECTOR_EVENTS_BEHIND,
        "Messages of the partition not yet applied to the read models"
    );
    describe_gauge!(
        names::PROJECTOR_SECONDS_BEHIND,
        Unit::Seconds,
        "Age of the newest applied event while messages wait; 0 when caught up"
    );
    describe_counter!(
        names::RELAY_FOREIGN_MESSAGES_TOTAL,
        "Messages in the event stream the relay did not publish, stepped over on resume"
    );
    describe_counter!(
        names::PROJECTOR_CHAOS_TOTAL,
        "Faults injected on purpose by CRM_PROJECTOR_CHAOS (NAKed batches, dropped acks)"
    );
    describe_counter!(
        names::PROJECTOR_DEAD_LETTERS_TOTAL,
        "Messages the projector could not apply, sent to the dead-letter stream"
    );
    describe_gauge!(
        names::PROJECTOR_PARTITIONS_HELD,
        "Stream partitions this projector instance consumes"
    );
    describe_histogram!(
        names::PROJECTOR_LAG_SECONDS,
        Unit::Seconds,
        "From an event's commit in the store to its application to the read models"
    );
    describe_counter!(
        names::PROJECTOR_RETRIES_TOTAL,
        "Projector batches retried after a read-model transaction failed"
    );
    describe_counter!(
        names::PROJECTOR_FOLDED_KEYS_TOTAL,
        "Counter keys the projector's folds moved the transactions' stripes into"
    );
    describe_counter!(
        names::SCHEDULER_TIMERS_TOTAL,
        "Timers issued by the scheduler, by timer and outcome"
    );
    describe_gauge!(
        names::SCHEDULER_CUSTOMERS,
        "Customers whose timers the scheduler tracks"
    );
    describe_histogram!(
        names::SCHEDULER_TICK_SECONDS,
        Unit::Seconds,
        "Duration of one scheduler tick"
    );
    describe_histogram!(
        names::SCHEDULER_DELAY_SECONDS,
        Unit::Seconds,
        "How long after its due time a timer was issued"
    );
    describe_counter!(
        names::RELAY_PUBLISHED_TOTAL,
        "Events published to JetStream by the relay"
    );
    describe_gauge!(
        names::RELAY_LAG_SECONDS,
        Unit::Seconds,
        "Age of the oldest unpublished event"
    );
    describe_gauge!(
        names::RELAY_LEADER,
        "1 while this relay holds the leader lock"
    );
    describe_gauge!(
        names::BUILD_INFO,
        "1; the labels name the build (version, commit)"
    );
}

/// The platform's version (every crate shares the workspace's).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The commit built, when the build said (`CRM_BUILD_COMMIT=$(git rev-parse --short HEAD)`).
pub const COMMIT: &str = match option_env!("CRM_BUILD_COMMIT") {
    Some(c) => c,
    None => "unknown",
};

/// Install the global Prometheus recorder (once per process) and return the handle that
/// renders `/metrics`.
pub fn install_prometheus() -> PrometheusHandle {
    static HANDLE: std::sync::OnceLock<PrometheusHandle> = std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let latency = [
                0.000_5, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ];
            let batch = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full(names::COMMAND_DURATION_SECONDS.into()),
                    &latency,
                )
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Full(names::APPEND_BATCH_SIZE.into()), &batch)
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full(names::HTTP_REQUEST_DURATION_SECONDS.into()),
                        &latency,
                    )
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full(names::PROJECTOR_LAG_SECONDS.into()),
                        &[
                            0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.5, 1.0, 2.5, 5.0,
                            10.0, 30.0,
                        ],
                    )
                })
                .expect("static buckets are valid")
                .build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed (tests in one process): keep ours
            // rendering what it sees rather than fail.
            let _ = metrics::set_global_recorder(recorder);
            describe();
            process_collector().describe();
            metrics::gauge!(names::BUILD_INFO, "version" => VERSION, "commit" => COMMIT).set(1.0);
            handle
        })
        .clone()
}

/// The process's own figures (`process_cpu_seconds_total`, `process_resident_memory_bytes`,
/// open file descriptors, threads, start time), as every Prometheus client exports them;
/// named by the `metrics-process` crate, the one exception to [`names`].
fn process_collector() -> &'static metrics_process::Collector {
    static COLLECTOR: std::sync::OnceLock<metrics_process::Collector> = std::sync::OnceLock::new();
    COLLECTOR.get_or_init(metrics_process::Collector::default)
}

/// The text of `GET /metrics`: the process's figures read now, then everything recorded.
pub fn render_metrics() -> String {
    let handle = install_prometheus();
    process_collector().collect();
    handle.render()
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// One line per event, `key=value` fields; colours only on a terminal.
    #[default]
    Text,
    /// One JSON object per line (for log collectors), never colours.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("log format {other:?} is not text or json")),
        }
    }
}

/// Structured logs to stderr in `format`; `RUST_LOG` filters (default `info`).
///
/// No field can forge a line or drive a terminal: in text, every value is written with
/// its control characters escaped (`\n`, `\u{1b}`), the message too; JSON escapes them
/// by its own rules. A caller's text (an unknown field's name, a refused actor) is
/// data in a line, never a line of its own.
pub fn init_tracing(format: LogFormat) {
    use std::io::IsTerminal as _;
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let subscriber = subscriber(
        format,
        std::io::stderr().is_terminal(),
        std::io::stderr,
        filter,
    );
    let _ = tracing::subscriber::set_global_default(subscriber);
}

/// The subscriber [`init_tracing`] installs, writing to `writer` (tests capture it).
fn subscriber<W>(
    format: LogFormat,
    ansi: bool,
    writer: W,
    filter: tracing_subscriber::EnvFilter,
) -> Box<dyn tracing::Subscriber + Send + Sync>
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    use tracing_subscriber::field::MakeExt as _;
    use tracing_subscriber::fmt::format::debug_fn;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_target(false);
    match format {
        LogFormat::Json => Box::new(builder.json().with_current_span(false).finish()),
        LogFormat::Text => Box::new(
            builder
                .with_ansi(ansi)
                .fmt_fields(
                    debug_fn(|w, field, value| {
                        let text = format!("{value:?}");
                        let shown = crm_domain::text::escaped(&text);
                        match field.name() {
                            "message" => write!(w, "{shown}"),
                            name => write!(w, "{name}={shown}"),
                        }
                    })
                    .delimited(" "),
                )
                .finish(),
        ),
    }
}

#[cfg(test)]
mod log_tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// What a logged line looks like when a caller's text in it tries to forge a line
    /// and clear the terminal, in both formats.
    fn logged(format: LogFormat) -> String {
        let out = Captured::default();
        let writer = out.clone();
        let subscriber = subscriber(
            format,
            false,
            move || writer.clone(),
            tracing_subscriber::EnvFilter::new("info"),
        );
        let forged = "x\n2026-12-06T00:00:00Z ERROR forged\u{1b}[2J\u{7}";
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(field = forged, display = %forged, "refused {forged}");
        });
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        text
    }

    #[test]
    fn no_caller_text_forges_a_line_or_reaches_a_terminal() {
        for format in [LogFormat::Text, LogFormat::Json] {
            let text = logged(format);
            assert_eq!(text.lines().count(), 1, "{format:?}: {text}");
            assert!(
                !text.chars().any(|c| c.is_control() && c != '\n'),
                "{format:?}: {text:?}"
            );
            assert!(text.contains("forged"), "{text}");
            if format == LogFormat::Json {
                let v: serde_json::Value = serde_json::from_str(text.trim_end()).unwrap();
                assert!(v["fields"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("ERROR forged"));
            }
        }
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

/// What every service's command line has for its operators: how it logs and where it
/// tells a supervisor it is up. Flattened into each binary's arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct ProcessArgs {
    /// Log lines as `text` (colours on a terminal only) or `json` (one object per line).
    #[arg(long, env = "CRM_LOG_FORMAT", default_value = "text")]
    pub log_format: LogFormat,
    /// When set, the service writes its bound addresses there (JSON) once it serves.
    #[arg(long, env = "CRM_READY_FILE")]
    pub ready_file: Option<std::path::PathBuf>,
}

impl ProcessArgs {
    /// Tell a supervisor (or a test) that the service is up: `info` as JSON, written
    /// atomically to the ready file, if one was given.
    pub fn announce_ready(&self, info: &impl serde::Serialize) -> std::io::Result<()> {
        let Some(path) = &self.ready_file else {
            return Ok(());
        };
        let tmp = path.with_extension("tmp");
        std::fs::write(
            &tmp,
            serde_json::to_vec(info).map_err(std::io::Error::other)?,
        )?;
        std::fs::rename(tmp, path)
    }
}

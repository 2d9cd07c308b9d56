//! The NATS service discovery protocol ("micro", ADR-32) for the command ingress: answers
//! `$SRV.PING`, `$SRV.INFO` and `$SRV.STATS` (bare, by service name, and by instance id),
//! so `nats micro ls` and `nats micro stats crm-commands` show every instance, its
//! endpoints and their counts.
//!
//! Written here rather than with `async_nats::service`, whose endpoints own their
//! subscriptions and can only unsubscribe at once: a request already on its way to an
//! instance that stops would be dropped, and its caller would time out. The ingress
//! (`nats.rs`) keeps its subscription and hands over at an agreed count instead; this
//! module only describes it, with the response types of `async_nats::service`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::service::endpoint::Info as EndpointInfo;
use async_nats::service::{Info, PingResponse};
use futures::StreamExt;
use serde::Serialize;

/// What the discovery answers describe.
#[derive(Clone)]
pub struct Description {
    pub name: String,
    pub id: String,
    pub version: String,
    pub description: String,
    pub queue_group: String,
    /// Endpoint name → subject.
    pub endpoints: Vec<(String, String)>,
}

/// Per-endpoint counts, as `$SRV.STATS` reports them.
#[derive(Default, Clone)]
struct Counts {
    requests: usize,
    errors: usize,
    processing: Duration,
    last_error: Option<String>,
}

/// The counts of every endpoint; cheap to clone.
#[derive(Clone, Default)]
pub struct Stats(Arc<Mutex<HashMap<String, Counts>>>);

impl Stats {
    /// One request to `endpoint` answered after `took`; `error` when it was refused or
    /// failed (the problem's code).
    pub fn record(&self, endpoint: &str, took: Duration, error: Option<&str>) {
        let mut all = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let c = all.entry(endpoint.to_string()).or_default();
        c.requests += 1;
        c.processing += took;
        if let Some(e) = error {
            c.errors += 1;
            c.last_error = Some(e.to_string());
        }
    }
}

#[derive(Serialize)]
struct EndpointStats {
    name: String,
    subject: String,
    queue_group: String,
    num_requests: usize,
    num_errors: usize,
    /// Nanoseconds, as the protocol has it.
    processing_time: u128,
    average_processing_time: u128,
    last_error: String,
}

#[derive(Serialize)]
struct StatsResponse {
    #[serde(rename = "type")]
    kind: &'static str,
    name: String,
    id: String,
    version: String,
    started: String,
    endpoints: Vec<EndpointStats>,
}

/// Answer the discovery verbs until the client closes.
pub async fn serve(
    client: async_nats::Client,
    about: Description,
    stats: Stats,
) -> Result<(), async_nats::Error> {
    let started = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let mut subscriptions = Vec::new();
    for verb in ["PING", "INFO", "STATS"] {
        for subject in [
            format!("$SRV.{verb}"),
            format!("$SRV.{verb}.{}", about.name),
            format!("$SRV.{verb}.{}.{}", about.name, about.id),
        ] {
            let sub = client.subscribe(subject).await?;
            subscriptions.push(sub.map(move |m| (verb, m)));
        }
    }
    let mut requests = futures::stream::select_all(subscriptions);
    while let Some((verb, message)) = requests.next().await {
        let Some(reply) = message.reply else { continue };
        let body = match verb {
            "PING" => serde_json::to_vec(&PingResponse {
                kind: "io.nats.micro.v1.ping_response".into(),
                name: about.name.clone(),
                id: about.id.clone(),
                version: about.version.clone(),
                metadata: HashMap::new(),
            }),
            "INFO" => serde_json::to_vec(&info(&about)),
            _ => serde_json::to_vec(&stats_response(&about, &stats, &started)),
        }?;
        client.publish(reply, body.into()).await?;
    }
    Ok(())
}

fn info(about: &Description) -> Info {
    Info {
        kind: "io.nats.micro.v1.info_response".into(),
        name: about.name.clone(),
        id: about.id.clone(),
        description: about.description.clone(),
        version: about.version.clone(),
        metadata: HashMap::new(),
        endpoints: about
            .endpoints
            .iter()
            .map(|(name, subject)| EndpointInfo {
                name: name.clone(),
                subject: subject.clone(),
                queue_group: about.queue_group.clone(),
                metadata: HashMap::new(),
            })
            .collect(),
    }
}

fn stats_response(about: &Description, stats: &Stats, started: &str) -> StatsResponse {
    let counts = stats.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
    StatsResponse {
        kind: "io.nats.micro.v1.stats_response",
        name: about.name.clone(),
        id: about.id.clone(),
        version: about.version.clone(),
        started: started.to_string(),
        endpoints: about
            .endpoints
            .iter()
            .map(|(name, subject)| {
                let c = counts.get(name).cloned().unwrap_or_default();
                EndpointStats {
                    name: name.clone(),
                    subject: subject.clone(),
                    queue_group: about.queue_group.clone(),
                    num_requests: c.requests,
                    num_errors: c.errors,
                    processing_time: c.processing.as_nanos(),
                    average_processing_time: c
                        .processing
                        .as_nanos()
                        .checked_div(c.requests as u128)
                        .unwrap_or(0),
                    last_error: c.last_error.unwrap_or_default(),
                }
            })
            .collect(),
    }
}

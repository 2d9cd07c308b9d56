//! What both transports do with a payload: decode it, build the envelope, hand the
//! command to the handler, and shape the answer. Oversized and malformed payloads are
//! refused here, before anything touches the store.

use chrono::{DateTime, Utc};
use crm_command_handler::{Accepted, CommandHandler, Envelope};
use crm_contracts::v1;
use crm_contracts::wire::{self, Format};
use crm_domain::{Actor, MAX_CLOCK_SKEW};
use crm_eventstore::AnyEventStore;
use crm_telemetry::names;
use uuid::Uuid;

use crate::caller::recorded_actor;
use crate::problem::Problem;

/// Largest command payload accepted (bytes).
pub const MAX_PAYLOAD: usize = 64 * 1024;

pub type Handler = CommandHandler<AnyEventStore>;

/// How a command reached the platform: its transport (metrics, logs) and when the
/// platform received it: now for a request; when the intake stored it for a command
/// published there. Its token and its `issued_at` are judged at that instant; the rules
/// are judged when it is decided.
#[derive(Debug, Clone, Copy)]
pub struct Arrival {
    pub transport: &'static str,
    pub at: DateTime<Utc>,
}

impl Arrival {
    /// A request, received now.
    pub fn now(transport: &'static str) -> Self {
        Self {
            transport,
            at: Utc::now(),
        }
    }
}

/// Decode and handle one command. `idempotency_key` is HTTP's `Idempotency-Key`.
pub async fn execute(
    handler: &Handler,
    arrival: Arrival,
    name: &str,
    body: &[u8],
    format: Format,
    idempotency_key: Option<&str>,
    principal: Option<&crm_auth::Principal>,
) -> Result<Accepted, Problem> {
    let transport = arrival.transport;
    let reject = |p: Problem| {
        metrics::counter!(names::INGRESS_REJECTED_TOTAL, "transport" => transport, "reason" => p.code.clone()).increment(1);
        // The code and the field, never the detail: it may quote the value sent.
        tracing::info!(transport, command = name, code = %p.code, field = p.field.as_deref().unwrap_or(""), "payload refused");
        p
    };
    if body.len() > MAX_PAYLOAD {
        return Err(reject(Problem::too_large(MAX_PAYLOAD)));
    }
    // A refusal names the command id the request carried, when it can be read.
    let named = |p: Problem| match claimed(body, format, idempotency_key) {
        Some(id) => reject(p.with_command(id)),
        None => reject(p),
    };
    let decoded = wire::decode(name, body, format).map_err(|e| named(Problem::from_wire(&e)))?;
    let mut envelope =
        envelope(&decoded.meta, idempotency_key, arrival.at, Utc::now()).map_err(named)?;
    envelope.actor = recorded_actor(envelope.actor, principal)
        .map_err(|p| reject(p.with_command(envelope.command_id)))?;
    let command_id = envelope.command_id;
    handler
        .handle(envelope, decoded.command)
        .await
        .map_err(|e| Problem::from_command(&e).with_command(command_id))
}

/// The command id a refused payload carries (or its `Idempotency-Key`), if it is a UUID.
fn claimed(body: &[u8], format: Format, idempotency_key: Option<&str>) -> Option<Uuid> {
    let id = wire::claimed_command_id(body, format).or(idempotency_key.map(str::to_string))?;
    id.parse().ok()
}

fn uuid(field: &str, s: &str) -> Result<Uuid, Problem> {
    s.parse()
        .map_err(|_| Problem::invalid(&format!("meta.{field}"), "not a UUID"))
}

/// The envelope from the wire's `meta`, with documented defaults. The command is judged
/// at `now`; a caller's `issued_at` is checked against the platform's time of receipt,
/// `received` (within [`MAX_CLOCK_SKEW`]), and never used as the decision's instant.
pub fn envelope(
    meta: &v1::CommandMeta,
    idempotency_key: Option<&str>,
    received: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<Envelope, Problem> {
    let command_id = match (meta.command_id.as_str(), idempotency_key) {
        ("", None) => {
            return Err(Problem::invalid(
                "meta.command_id",
                "required (or the Idempotency-Key header)",
            ))
        }
        ("", Some(k)) => uuid("command_id", k)?,
        (id, None) => uuid("command_id", id)?,
        (id, Some(k)) => {
            let id = uuid("command_id", id)?;
            if uuid("command_id", k)? != id {
                return Err(Problem::invalid(
                    "meta.command_id",
                    "differs from the Idempotency-Key header",
                ));
            }
            id
        }
    };
    let actor: Actor = meta
        .actor
        .parse()
        .map_err(|e| Problem::invalid("meta.actor", e))?;
    let correlation_id = match meta.correlation_id.as_deref() {
        Some(c) if !c.is_empty() => uuid("correlation_id", c)?,
        _ => command_id,
    };
    let causation_id = match meta.causation_id.as_deref() {
        Some(c) if !c.is_empty() => Some(uuid("causation_id", c)?),
        _ => None,
    };
    if let Some(t) = meta.issued_at.as_deref().filter(|t| !t.is_empty()) {
        let stated = DateTime::parse_from_rfc3339(t)
            .map_err(|e| Problem::invalid("meta.issued_at", format!("not RFC 3339 ({e})")))?
            .with_timezone(&Utc);
        let off = (stated - received).abs();
        if off > MAX_CLOCK_SKEW {
            return Err(Problem::invalid(
                "meta.issued_at",
                format!(
                "{} from the platform's clock ({}), more than the {} minutes allowed; \
                 commands are judged at their time of receipt: leave issued_at out, or fix the caller's clock",
                human(off),
                received.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                MAX_CLOCK_SKEW.num_minutes()
            ),
            )
            .with_command(command_id));
        }
    }
    Ok(Envelope {
        command_id,
        correlation_id,
        causation_id,
        actor,
        issued_at: now,
    })
}

/// A duration as a person reads it: `31 days`, `2 hours`, `7 minutes`.
fn human(d: chrono::TimeDelta) -> String {
    match (d.num_days(), d.num_hours(), d.num_minutes()) {
        (days, _, _) if days > 1 => format!("{days} days"),
        (_, hours, _) if hours > 1 => format!("{hours} hours"),
        (_, _, minutes) => format!("{minutes} minutes"),
    }
}

/// The reply of an accepted command.
pub fn reply(accepted: &Accepted) -> v1::CommandReply {
    v1::CommandReply {
        command_id: accepted.command_id.to_string(),
        accepted: true,
        duplicate: accepted.duplicate,
        events: accepted
            .events
            .iter()
            .map(|e| v1::AppendedEvent {
                event_id: e.event_id.to_string(),
                event_type: e.event_type.clone(),
                stream_id: e.stream_id.clone(),
                stream_version: e.stream_version,
            })
            .collect(),
        problem: None,
    }
}

/// The reply of a refused command.
pub fn refusal(problem: &Problem) -> v1::CommandReply {
    v1::CommandReply {
        command_id: problem
            .command_id
            .map(|c| c.to_string())
            .unwrap_or_default(),
        accepted: false,
        duplicate: false,
        events: Vec::new(),
        problem: Some(problem.to_proto()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(issued_at: DateTime<Utc>) -> v1::CommandMeta {
        v1::CommandMeta {
            command_id: Uuid::now_v7().to_string(),
            actor: "service:call-centre".into(),
            issued_at: Some(issued_at.to_rfc3339()),
            ..Default::default()
        }
    }

    #[test]
    fn issued_at_is_judged_at_receipt_and_the_rules_at_the_decision() {
        let received = Utc::now() - chrono::TimeDelta::hours(3);
        let now = Utc::now();
        // Published to the intake three hours ago, decided now: on time.
        let e = envelope(&meta(received), None, received, now).unwrap();
        assert_eq!(e.issued_at, now, "the decision's instant is now");
        // The same command, received now: three hours off the clock.
        let off = envelope(&meta(received), None, now, now).unwrap_err();
        assert_eq!(off.field.as_deref(), Some("meta.issued_at"), "{off:?}");
    }
}

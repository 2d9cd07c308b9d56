//! The NATS users of a deployment and what each may publish and subscribe to
//! (`deploy/nats/auth.conf`), written from the same subject names the services use
//! ([`Subjects`]), so a deployment under another prefix or stream name gets permissions
//! that match its subjects (`crm nats auth-conf`). One user per service, least
//! privilege; event consumers of other teams get a user each that may read the event
//! stream through its own durable consumer and nothing else.

use std::fmt::Write as _;

use crate::subjects::{dead_letter_stream, Subjects};

/// What to write the users for.
pub struct Deployment<'a> {
    pub subjects: &'a Subjects,
    /// The events stream (`CRM_STREAM`).
    pub stream: &'a str,
    /// Event consumers: each a user of that name whose durable consumer has that name.
    pub consumers: &'a [String],
    /// The streams of durable ingestion (`CRM_INTAKE`, `CRM_OUTCOMES`).
    pub intake: &'a str,
    pub outcomes: &'a str,
}

/// One user of `auth.conf`.
struct User {
    name: String,
    /// Why the user exists (a comment above it).
    about: &'static str,
    publish: Allowed,
    subscribe: Vec<String>,
    /// May answer requests sent to it (the command service).
    responds: bool,
}

enum Allowed {
    /// Everything (operators).
    All,
    Only(Vec<String>),
}

const HEADER: &str = "\
# Who may publish and subscribe to what: one NATS user per service, least privilege.
# Written by `crm nats auth-conf` from the subjects the services use (this file: prefix
# `crm`, stream `CRM_EVENTS`, dead letters `CRM_EVENTS_DLQ`, durable ingestion
# `CRM_INTAKE` and `CRM_OUTCOMES`; another prefix, streams or event consumers: run it
# with --prefix, --stream, --intake, --outcomes, --consumer). Included by
# nats-server.conf. Passwords come from nats-server's environment (never committed);
# bcrypt hashes (`nats server passwd`) work in their place.
#
# Every user receives replies on its own inbox prefix only (`_INBOX.<user>.>`): the
# services set it with CRM_NATS_INBOX=_INBOX.<user>; clients set it the same way, so
# nobody can read another's replies. Services connect with the user in the URL:
# CRM_NATS_URL=nats://relay:<password>@nats:4222. Tested by
# integration-tests/tests/nats_permissions.rs.
";

/// The `auth.conf` of a deployment.
pub fn auth_conf(d: &Deployment) -> String {
    let mut out = String::from(HEADER);
    out.push_str("\nauthorization {\n  users: [\n");
    for (i, user) in users(d).iter().enumerate() {
        // A blank line before each group of users (a comment opens a group).
        if i > 0 && !user.about.is_empty() {
            out.push('\n');
        }
        render(&mut out, user);
    }
    out.push_str("  ]\n}\n");
    out
}

/// The environment variable nats-server reads a user's password from.
pub fn password_variable(user: &str) -> String {
    format!(
        "CRM_NATS_{}_PASSWORD",
        user.to_uppercase().replace(['-', '.'], "_")
    )
}

fn users(d: &Deployment) -> Vec<User> {
    let (p, s) = (d.subjects, d.stream);
    let inbox = |user: &str| vec![format!("_INBOX.{user}.>")];
    let js = |verbs: &[&str]| -> Vec<String> {
        verbs
            .iter()
            .map(|v| format!("$JS.{}", v.replace("{S}", s)))
            .collect()
    };
    let mut users = vec![
        User {
            name: "admin".into(),
            about: "Operators: streams, consumers, the `nats` CLI.",
            publish: Allowed::All,
            subscribe: Vec::new(),
            responds: false,
        },
        command_service(d),
        User {
            name: "relay".into(),
            about: "Publishes stored events to the events stream; nothing else.",
            publish: Allowed::Only(
                [
                    vec![p.all_events()],
                    js(&[
                        "API.INFO",
                        "API.STREAM.INFO.{S}",
                        "API.STREAM.CREATE.{S}",
                        "API.STREAM.UPDATE.{S}",
                        "API.STREAM.MSG.GET.{S}",
                        "API.DIRECT.GET.{S}.>",
                    ]),
                ]
                .concat(),
            ),
            subscribe: inbox("relay"),
            responds: false,
        },
        projector(p, s),
        client(
            "branch-system",
            d,
            &[
                "register_customer",
                "update_profile",
                "assign_owner",
                "assign_by_policy",
            ],
        ),
        client(
            "call-centre",
            d,
            &[
                "record_contact",
                "log_complaint",
                "acknowledge_complaint",
                "escalate_complaint",
                "resolve_complaint",
            ],
        ),
    ];
    users.extend(d.consumers.iter().map(|name| consumer(name, s)));
    users
}

/// The command service: answers requests; with durable ingestion, consumes the intake
/// through its one durable consumer, looks outcomes up and publishes them.
fn command_service(d: &Deployment) -> User {
    let (p, intake, outcomes) = (d.subjects, d.intake, d.outcomes);
    let consumer = crate::intake::CONSUMER;
    let mut publish = vec![p.all_outcomes(), "$JS.API.INFO".to_string()];
    for stream in [intake, outcomes] {
        publish.push(format!("$JS.API.STREAM.INFO.{stream}"));
        publish.push(format!("$JS.API.STREAM.CREATE.{stream}"));
    }
    for verb in [
        "CONSUMER.CREATE.{I}.{C}",
        "CONSUMER.CREATE.{I}.{C}.>",
        "CONSUMER.DURABLE.CREATE.{I}.{C}",
        "CONSUMER.INFO.{I}.{C}",
        "CONSUMER.MSG.NEXT.{I}.{C}",
    ] {
        let verb = verb.replace("{I}", intake).replace("{C}", consumer);
        publish.push(format!("$JS.API.{verb}"));
    }
    publish.push(format!("$JS.ACK.{intake}.{consumer}.>"));
    // An outcome looked up from the stream's leader (STREAM.MSG.GET, not a direct get).
    publish.push(format!("$JS.API.STREAM.MSG.GET.{outcomes}"));
    User {
        name: "command-service".into(),
        about: "Serves the commands (NATS service API included) and answers; takes the intake's\n    # commands through its durable consumer and publishes their outcomes.",
        publish: Allowed::Only(publish),
        subscribe: vec![p.command(">"), "$SRV.>".into(), "_INBOX.command-service.>".into()],
        responds: true,
    }
}

fn projector(p: &Subjects, s: &str) -> User {
    let dlq = dead_letter_stream(s);
    let mut publish = vec![
        p.all_dead_letters(),
        "$JS.API.INFO".into(),
        format!("$JS.API.STREAM.INFO.{s}"),
        format!("$JS.API.STREAM.INFO.{dlq}"),
        format!("$JS.API.STREAM.CREATE.{dlq}"),
    ];
    for verb in [
        "CONSUMER.CREATE.{S}",
        "CONSUMER.CREATE.{S}.>",
        "CONSUMER.DURABLE.CREATE.{S}.>",
        "CONSUMER.INFO.{S}.>",
        "CONSUMER.MSG.NEXT.{S}.>",
    ] {
        publish.push(format!("$JS.API.{}", verb.replace("{S}", s)));
    }
    publish.push(format!("$JS.ACK.{s}.>"));
    User {
        name: "projector".into(),
        about: "Consumes the events stream (durable pull consumers), acknowledges, sets poison\n    # messages aside in the dead-letter stream.",
        publish: Allowed::Only(publish),
        subscribe: vec!["_INBOX.projector.>".into()],
        responds: false,
    }
}

/// A client service that sends the commands named: as requests, or to the intake, and
/// reads those commands' outcomes (direct get by subject).
fn client(name: &str, d: &Deployment, commands: &[&str]) -> User {
    let p = d.subjects;
    let mut publish: Vec<String> = commands.iter().map(|c| p.command(c)).collect();
    publish.extend(commands.iter().map(|c| p.intake(c)));
    publish.extend(
        commands
            .iter()
            .map(|c| format!("$JS.API.DIRECT.GET.{}.{}", d.outcomes, p.outcome(c, ">"))),
    );
    User {
        name: name.into(),
        about: if name == "branch-system" {
            "Client services: the commands each may send (as their bearer tokens on HTTP),\n    # as requests or to the intake, and those commands' outcomes."
        } else {
            ""
        },
        publish: Allowed::Only(publish),
        subscribe: vec![format!("_INBOX.{name}.>")],
        responds: false,
    }
}

/// An event consumer: reads the stream through the durable consumer named as the user
/// (created with any filter, pulled, acknowledged), and does nothing else: no other
/// consumer, no commands, no events, no stream changes.
fn consumer(name: &str, s: &str) -> User {
    let publish = [
        "$JS.API.INFO".to_string(),
        format!("$JS.API.STREAM.INFO.{s}"),
        format!("$JS.API.CONSUMER.CREATE.{s}.{name}"),
        format!("$JS.API.CONSUMER.CREATE.{s}.{name}.>"),
        format!("$JS.API.CONSUMER.DURABLE.CREATE.{s}.{name}"),
        format!("$JS.API.CONSUMER.INFO.{s}.{name}"),
        format!("$JS.API.CONSUMER.MSG.NEXT.{s}.{name}"),
        format!("$JS.ACK.{s}.{name}.>"),
    ];
    User {
        name: name.into(),
        about: "Event consumer: reads the events stream through its own durable consumer\n    # (named as the user), acknowledges; nothing else.",
        publish: Allowed::Only(publish.to_vec()),
        subscribe: vec![format!("_INBOX.{name}.>")],
        responds: false,
    }
}

fn render(out: &mut String, u: &User) {
    if !u.about.is_empty() {
        let _ = writeln!(out, "    # {}", u.about);
    }
    let password = password_variable(&u.name);
    if let Allowed::All = u.publish {
        let _ = writeln!(out, "    {{ user: {}, password: ${password} }}", u.name);
        return;
    }
    let _ = writeln!(
        out,
        "    {{\n      user: {}\n      password: ${password}\n      permissions: {{",
        u.name
    );
    match &u.publish {
        Allowed::Only(subjects) => list(out, "publish", "allow", subjects),
        Allowed::All => unreachable!("written above"),
    }
    list(out, "subscribe", "allow", &u.subscribe);
    if u.responds {
        out.push_str("        allow_responses: true\n");
    }
    out.push_str("      }\n    }\n");
}

/// `publish: { allow: [...] }`, on one line for two subjects or fewer.
fn list(out: &mut String, what: &str, verdict: &str, subjects: &[String]) {
    let quoted: Vec<String> = subjects.iter().map(|s| format!("\"{s}\"")).collect();
    if quoted.len() <= 2 {
        let _ = writeln!(
            out,
            "        {what}: {{ {verdict}: [{}] }}",
            quoted.join(", ")
        );
        return;
    }
    let _ = writeln!(out, "        {what}: {{\n          {verdict}: [");
    let _ = writeln!(out, "            {}", quoted.join(",\n            "));
    out.push_str("          ]\n        }\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_auth_conf_is_the_one_written_for_the_defaults() {
        let shipped = include_str!("../../../deploy/nats/auth.conf");
        let written = auth_conf(&Deployment {
            subjects: &Subjects::default(),
            stream: "CRM_EVENTS",
            consumers: &[],
            intake: "CRM_INTAKE",
            outcomes: "CRM_OUTCOMES",
        });
        assert_eq!(
            shipped, written,
            "deploy/nats/auth.conf differs from `crm nats auth-conf`: regenerate it"
        );
    }

    #[test]
    fn another_prefix_and_stream_run_through_every_user() {
        let written = auth_conf(&Deployment {
            subjects: &Subjects::new("acme.crm"),
            stream: "ACME_EVENTS",
            consumers: &["fraud-watch".into()],
            intake: "ACME_INTAKE",
            outcomes: "ACME_OUTCOMES",
        });
        let users = &written[written.find("authorization {").unwrap()..];
        assert!(!users.contains("\"crm."), "{users}");
        for default in ["CRM_EVENTS", "CRM_INTAKE", "CRM_OUTCOMES"] {
            assert!(!users.contains(default), "{users}");
        }
        for s in [
            "\"acme.crm.cmd.>\"",
            "\"acme.crm.events.>\"",
            "\"acme.crm.dlq.>\"",
            "\"acme.crm.intake.register_customer\"",
            "$JS.API.DIRECT.GET.ACME_OUTCOMES.acme.crm.outcomes.register_customer.>",
            "$JS.ACK.ACME_INTAKE.crm-intake.>",
            "$JS.API.STREAM.CREATE.ACME_EVENTS_DLQ",
            "$JS.API.CONSUMER.MSG.NEXT.ACME_EVENTS.fraud-watch\"",
            "password: $CRM_NATS_FRAUD_WATCH_PASSWORD",
        ] {
            assert!(written.contains(s), "{s} missing:\n{written}");
        }
    }
}

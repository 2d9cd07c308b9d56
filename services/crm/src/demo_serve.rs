//! `crm demo --serve`: the day's store and read models served by the query service's
//! code, workbench included, with authentication on (a random HS256 secret of this run)
//! and a sign-in page listing the day's people, so a newcomer sees the product in a
//! browser after one command.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use crm_auth::{Principal, Role, Verifier, VerifyKey};
use crm_eventstore::sqlite::SqliteEventStore;
use crm_eventstore::AnyEventStore;
use crm_projections::ReadStore;
use crm_query::web::{LocalPerson, LocalSignIn, Sealer, Workbench};

use crate::demo::Manager;

const ISSUER: &str = "crm-demo";
const AUDIENCE: &str = "crm-query";

/// Serve until Ctrl-C (or SIGTERM); prints the URL once listening.
pub(crate) async fn serve(
    store: &SqliteEventStore,
    read_path: &Path,
    managers: &[Manager],
    addr: SocketAddr,
) -> anyhow::Result<()> {
    let read = ReadStore::connect(&format!("sqlite://{}", read_path.display()), 4).await?;
    let secret: [u8; 32] = crm_query::web::session::random_bytes();
    let verifier = Verifier::new(VerifyKey::Hs256(secret.to_vec()), ISSUER, AUDIENCE)
        .map_err(anyhow::Error::msg)?;
    let events = AnyEventStore::Sqlite(store.clone());
    let security = crm_query::Security {
        auth: Some(verifier),
        vault: Some(Arc::new(crm_privacy::Vault::new(
            events.clone(),
            std::time::Duration::ZERO,
        ))),
        events: Some(events),
        workbench: Some(Workbench {
            sealer: Sealer::random(),
            // Plain HTTP on localhost: cookies without `Secure` and the `__Host-` prefix.
            secure_cookies: false,
            local: Some(Arc::new(LocalSignIn {
                secret: secret.to_vec(),
                issuer: ISSUER.into(),
                audience: AUDIENCE.into(),
                people: people(managers),
            })),
            oidc: None,
            wait: crm_query::web::SLOW_ANSWER_WAIT,
        }),
    };
    let calendar = "Asia/Shanghai".parse().map_err(anyhow::Error::msg)?;
    let (bound_tx, bound_rx) = tokio::sync::oneshot::channel();
    let server = tokio::spawn(crm_query::serve(
        read,
        security,
        calendar,
        addr,
        crm_telemetry::shutdown_signal(),
        std::time::Duration::from_secs(2),
        bound_tx,
    ));
    let bound = bound_rx.await?;
    println!(
        "\nThe workbench: http://{bound}/ui/  (sign in as any of the day's people; Ctrl-C to stop)"
    );
    server.await?
}

/// Who can sign in: an administrator, an auditor, an analyst, then every manager (team
/// leads see their team).
fn people(managers: &[Manager]) -> Vec<LocalPerson> {
    let person = |label: &str, subject: &str, role: Role| LocalPerson {
        label: label.into(),
        principal: Principal {
            subject: subject.into(),
            role,
            manager_id: None,
            team: None,
            commands: Vec::new(),
            acts_for_persons: false,
        },
    };
    let mut people = vec![
        person("Administrator", "admin", Role::Admin),
        person("Auditor (审计)", "auditor", Role::Auditor),
        person("Analyst (分析师, names masked)", "analyst", Role::Analyst),
    ];
    for m in managers {
        let role = if m.lead { "team lead" } else { "manager" };
        // `li.wei.east-1`: a readable login, unique within the day's teams.
        let given = m.name.split(" (").next().unwrap_or(&m.name);
        let login = format!("{}.{}", given.to_lowercase().replace(' ', "."), m.team);
        let mut p = person(
            &format!("{}, {role}, {}", m.name, m.team),
            &login,
            Role::Manager,
        );
        p.principal.manager_id = Some(m.id.to_string());
        p.principal.team = m.lead.then(|| m.team.clone());
        people.push(p);
    }
    people
}

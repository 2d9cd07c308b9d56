//! Sign-in through the bank's identity provider, end to end: a local OpenID issuer
//! (discovery document and JWKS over HTTP, P-256 keys generated here) and the command
//! service started as a process against it, with the provider's claims mapped as a
//! Keycloak deployment would map them. The provider rotates its key mid-run: the new key
//! is accepted without a restart, the removed one refused.

use std::sync::{Arc, Mutex};

use chrono::Utc;
use crm_domain::*;
use crm_integration_tests::idp::IdpKey;
use crm_integration_tests::{Platform, Service};
use serde_json::{json, Value};
use uuid::Uuid;

/// The issuer: `/.well-known/openid-configuration` and `/certs` (the keys published now).
async fn issuer(published: Arc<Mutex<Vec<Value>>>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/realms/bank", listener.local_addr().unwrap());
    let discovery =
        json!({"issuer": base, "jwks_uri": format!("{base}/protocol/openid-connect/certs")});
    let app = axum::Router::new()
        .route(
            "/realms/bank/.well-known/openid-configuration",
            axum::routing::get(move || async move { axum::Json(discovery) }),
        )
        .route(
            "/realms/bank/protocol/openid-connect/certs",
            axum::routing::get(move || async move {
                axum::Json(json!({"keys": published.lock().unwrap().clone()}))
            }),
        );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base
}

/// A client-credentials token for a branch system, as Keycloak issues it: the client
/// role in `resource_access`, the commands as scopes.
fn service_token(key: &IdpKey, issuer: &str, scopes: &str) -> String {
    key.sign(&json!({
        "iss": issuer, "aud": ["account", "crm-commands"], "sub": "branch-system",
        "exp": Utc::now().timestamp() + 300, "azp": "branch-system",
        "resource_access": {"crm-commands": {"roles": ["crm-service"]}, "account": {"roles": ["view-profile"]}},
        "scope": format!("profile email {scopes}"),
    }))
}

async fn register_manager(http: &reqwest::Client, base: &str, bearer: &str) -> (u16, Value) {
    let m = ManagerId::new(Uuid::now_v7());
    let command: Command = crm_integration_tests::register_manager(m, "Wang Fang", "east-1");
    let r = http
        .post(format!("{base}/v1/commands/{}", command.name()))
        .header("content-type", "application/json")
        .bearer_auth(bearer)
        .body(crm_integration_tests::command_body(
            "service:branch-system",
            &command,
        ))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_signs_in_through_the_identity_provider_across_a_key_rotation() {
    let (old, new) = (IdpKey::generate("2026-11"), IdpKey::generate("2026-12"));
    let published = Arc::new(Mutex::new(vec![old.jwk()]));
    let issuer = issuer(published.clone()).await;
    let platform = Platform::new().await;
    let mut env = platform.env();
    env.extend([
        ("CRM_AUTH_OIDC_DISCOVERY", issuer.clone()),
        ("CRM_AUTH_ISSUER", issuer.clone()),
        (
            "CRM_AUTH_ROLE_CLAIM",
            "/resource_access/crm-commands/roles".into(),
        ),
        (
            "CRM_AUTH_ROLE_MAP",
            "crm-service=service,crm-admin=admin".into(),
        ),
        ("CRM_AUTH_COMMAND_SCOPE_PREFIX", "crm:".into()),
        ("CRM_AUTH_JWKS_COOLDOWN", "0".into()),
        ("CRM_INDEX_KEY", "sign-in-test-index-key".into()),
    ]);
    let mut commands = Service::start(
        "crm-command-service",
        &["--http-addr", "127.0.0.1:0", "--no-nats"],
        &env,
    );
    let base = commands.http_base().await;
    let http = reqwest::Client::new();

    let allowed = service_token(&old, &issuer, "crm:register_manager");
    let (status, body) = register_manager(&http, &base, &allowed).await;
    assert_eq!(status, 200, "{body}");
    // Signed in, but the scopes do not cover the command.
    let narrow = service_token(&old, &issuer, "crm:record_contact");
    let (status, body) = register_manager(&http, &base, &narrow).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("auth.forbidden")),
        "{body}"
    );

    // The provider rotates: the new key published, the old one removed.
    *published.lock().unwrap() = vec![new.jwk()];
    let (status, body) = register_manager(
        &http,
        &base,
        &service_token(&new, &issuer, "crm:register_manager"),
    )
    .await;
    assert_eq!(
        status, 200,
        "the new key is accepted without a restart: {body}"
    );
    let (status, body) = register_manager(&http, &base, &allowed).await;
    assert_eq!(status, 401, "{body}");
    assert!(
        body.to_string().contains("no key \\\"2026-11\\\""),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_whose_identity_provider_cannot_be_reached_does_not_start() {
    let platform = Platform::new().await;
    let mut env = platform.env();
    // A port nothing listens on.
    let nowhere = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/realms/bank", l.local_addr().unwrap())
    };
    env.extend([
        ("CRM_AUTH_OIDC_DISCOVERY", nowhere.clone()),
        ("CRM_AUTH_ISSUER", nowhere),
        ("CRM_INDEX_KEY", "sign-in-test-index-key".into()),
    ]);
    let mut commands = Service::start(
        "crm-command-service",
        &["--http-addr", "127.0.0.1:0", "--no-nats"],
        &env,
    );
    let status = commands
        .wait_exit(std::time::Duration::from_secs(30))
        .await
        .expect("it exits");
    assert!(!status.success());
    assert!(
        commands.output().contains("openid-configuration"),
        "the error names what could not be fetched: {}",
        commands.output()
    );
}

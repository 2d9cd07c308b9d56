//! `crm policy` as an operator runs it on an embedded store: check a document, publish
//! it, list the versions, show the one in force; a repeat or an invalid document is
//! refused with the rule.

use std::process::{Command, Output};

fn crm(args: &[&str]) -> Output {
    Command::new(crm_integration_tests::binary("crm"))
        .args(args)
        .env_remove("RUST_BACKTRACE")
        .output()
        .expect("run crm")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn an_operator_publishes_and_reads_the_policy() {
    let db = crm_eventstore::testing::TempPath::new("crm-policy-cli");
    let url = format!("sqlite://{}", db.0.display());
    let doc = crm_eventstore::testing::TempPath::new("crm-policy-doc");
    std::fs::write(
        &doc.0,
        r#"{"rules": [{"name": "east", "when": {"regions": ["east"]}, "team": "east-1",
            "method": "round_robin"}], "utc_offset_minutes": 480}"#,
    )
    .unwrap();
    let file = doc.0.to_str().unwrap();

    let check = crm(&["policy", "check", file]);
    assert!(check.status.success(), "{}", text(&check));
    let none = crm(&["policy", "history", "--store", &url]);
    assert!(
        text(&none).contains("built-in defaults apply (version 0)"),
        "{}",
        text(&none)
    );

    let published = crm(&[
        "policy",
        "publish",
        file,
        "--note",
        "east routing",
        "--store",
        &url,
    ]);
    assert!(published.status.success(), "{}", text(&published));
    assert!(text(&published).contains("published policy version 1"));
    let again = crm(&[
        "policy", "publish", file, "--note", "again", "--store", &url,
    ]);
    assert!(!again.status.success());
    assert!(
        text(&again).contains("command.nothing_to_change"),
        "{}",
        text(&again)
    );

    let history = text(&crm(&["policy", "history", "--store", &url]));
    assert!(
        history.contains("v1") && history.contains("east routing"),
        "{history}"
    );
    let shown: serde_json::Value =
        serde_json::from_slice(&crm(&["policy", "show", "--store", &url]).stdout).unwrap();
    assert_eq!(shown["version"], 1);
    assert_eq!(shown["document"]["rules"][0]["team"], "east-1");
    assert_eq!(
        shown["document"]["pool"]["warning_days"], 3,
        "defaults filled in"
    );

    std::fs::write(&doc.0, r#"{"pool": {"warning_days": 40}}"#).unwrap();
    let bad = crm(&["policy", "check", file]);
    assert!(!bad.status.success());
    assert!(
        text(&bad).contains("pool.no_contact_days"),
        "{}",
        text(&bad)
    );
    let typo = crm(&["policy", "check", "-"]);
    assert!(!typo.status.success(), "empty input is not a document");
}

/// On a PostgreSQL store (production), publishing needs the command services' index key:
/// without it `crm policy publish` stops before writing, rather than fingerprinting the
/// command under the development key that is public in the source.
#[tokio::test]
async fn publishing_to_a_production_store_needs_the_index_key() {
    let db = crm_eventstore::testing::TestDatabase::create().await;
    let doc = crm_eventstore::testing::TempPath::new("crm-policy-doc");
    std::fs::write(&doc.0, r#"{"pool": {"warning_days": 5}}"#).unwrap();
    let file = doc.0.to_str().unwrap();
    let publish = |key: Option<&str>| {
        let mut c = Command::new(crm_integration_tests::binary("crm"));
        c.args(["policy", "publish", file, "--note", "n", "--store", &db.url])
            .env_remove("CRM_INDEX_KEY");
        if let Some(k) = key {
            c.env("CRM_INDEX_KEY", k);
        }
        c.output().expect("run crm")
    };
    let refused = publish(None);
    assert!(!refused.status.success(), "{}", text(&refused));
    assert!(
        text(&refused).contains("CRM_INDEX_KEY is not set"),
        "{}",
        text(&refused)
    );
    let history = text(&crm(&["policy", "history", "--store", &db.url]));
    assert!(
        history.contains("version 0"),
        "nothing was published: {history}"
    );
    let published = publish(Some("0123456789abcdef0123456789abcdef"));
    assert!(published.status.success(), "{}", text(&published));
    assert!(
        text(&published).contains("published policy version 1"),
        "{}",
        text(&published)
    );
}

//! `crm demo` as a newcomer runs it: it plays the day and the hundred days after it,
//! replays the store, and its own consistency checks (replayed holdings = the store's
//! counters ≤ limits) pass, and the read models built from its log agree with the write
//! side; the policy and the scheduler visibly acted.

use std::process::Command;

#[test]
fn the_demo_plays_a_day_and_reports_it() {
    let out = Command::new(crm_integration_tests::binary("crm"))
        .args(["demo", "--customers", "120", "--show", "5"])
        .output()
        .expect("run crm demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "crm demo failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for section in [
        "Commands",
        "Customers (state replayed from the event store)",
        "Managers",
        "Event log",
        "Ownership view",
        "every manager's portfolio matches the write side's holdings",
        "Lifecycle funnel",
        "Manager KPIs for the day",
        "Pool rules, complaint clocks and lifecycle over the 100 days",
    ] {
        assert!(stdout.contains(section), "missing {section}:\n{stdout}");
    }
    assert!(stdout.contains("120 customers registered"), "{stdout}");
    assert!(
        stdout.contains("customer.duplicate"),
        "the duplicate check shows:\n{stdout}"
    );
    assert!(stdout.contains("contact.sms_consent_missing"), "{stdout}");
    assert!(
        stdout.contains("CustomerRegistered") && stdout.contains("OwnerAssigned"),
        "{stdout}"
    );
    assert!(!stdout.contains("MISMATCH"), "{stdout}");
    // The policy and the scheduler acted: refusals by protection, events of time.
    for shown in [
        "ownership policy v1 published",
        "ownership.protected",
        "PoolReturnWarned",
        "SLA breaches",
        "went dormant",
    ] {
        assert!(stdout.contains(shown), "missing {shown}:\n{stdout}");
    }
    // A bank's day shows transfers that go through (within the owner's team, which
    // first-touch protection admits) beside those protection refuses.
    let transfers = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("transfer_owner"))
        .unwrap_or_else(|| panic!("no transfer_owner row:\n{stdout}"));
    let accepted: u64 = transfers
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    assert!(accepted > 0, "some transfers succeed: {transfers}");
    assert!(transfers.contains("ownership.protected"), "{transfers}");
    // The ownership timeline dates its periods (they span the hundred days).
    let timeline = stdout
        .split("ownership timeline of customer")
        .nth(1)
        .unwrap_or_else(|| panic!("no ownership timeline:\n{stdout}"));
    let first = timeline.lines().nth(1).unwrap_or_default().trim_start();
    let dated = |t: &str| {
        let b = t.as_bytes();
        b.len() >= 11 && b[2] == b'-' && b[5] == b' ' && b[8] == b':'
    };
    assert!(
        dated(first),
        "a period starts with its date and time: {first:?}"
    );
}

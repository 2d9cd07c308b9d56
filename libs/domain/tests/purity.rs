//! Architecture invariant: the domain performs no I/O. It may not depend on the async
//! runtime, the database driver, the broker client or the web framework.

#[test]
fn the_domain_depends_on_no_io_crate() {
    let manifest = include_str!("../Cargo.toml");
    let deps = manifest.split("[dev-dependencies]").next().unwrap();
    for banned in [
        "tokio",
        "sqlx",
        "async-nats",
        "axum",
        "reqwest",
        "hyper",
        "futures",
    ] {
        assert!(
            !deps.lines().any(|l| l.trim_start().starts_with(banned)),
            "libs/domain must stay pure, but depends on {banned}"
        );
    }
}

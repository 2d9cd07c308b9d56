//! Fresh, isolated databases for tests: one PostgreSQL database (or SQLite file) per
//! test, so reruns and parallel tests never collide. PostgreSQL is required: a test
//! that cannot reach it fails loudly, it never skips.

use std::path::PathBuf;

use uuid::Uuid;

use crate::postgres::PgEventStore;
use crate::sqlite::SqliteEventStore;

/// Server URL used to create test databases (`CRM_TEST_PG_URL`).
pub fn admin_url() -> String {
    std::env::var("CRM_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A database created for one test and dropped when this guard is dropped.
pub struct TestDatabase {
    pub url: String,
    pub name: String,
    admin: String,
}

impl TestDatabase {
    pub async fn create() -> Self {
        use sqlx::Connection;
        let admin = admin_url();
        let name = format!("crm_test_{}", Uuid::new_v4().simple());
        let mut conn = sqlx::PgConnection::connect(&admin)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "PostgreSQL is required for this test and is not reachable at {admin} ({e}). \
                 Start it (scripts/services) or set CRM_TEST_PG_URL."
                )
            });
        sqlx::query(&format!("CREATE DATABASE \"{name}\""))
            .execute(&mut conn)
            .await
            .expect("create test database");
        let url = match admin.rfind('/') {
            Some(i) => format!("{}/{name}", &admin[..i]),
            None => panic!("CRM_TEST_PG_URL {admin:?} has no database part"),
        };
        Self { url, name, admin }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        // Drop runs inside the test's runtime: use a thread with its own runtime.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async move {
                use sqlx::Connection;
                let mut conn = sqlx::PgConnection::connect(&admin).await.ok()?;
                sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                    .execute(&mut conn)
                    .await
                    .ok()
            })
        })
        .join();
    }
}

/// A migrated PostgreSQL store in a fresh database.
pub async fn postgres_store() -> (PgEventStore, TestDatabase) {
    let db = TestDatabase::create().await;
    let store = PgEventStore::connect(&db.url, 16)
        .await
        .expect("connect to test database");
    (store, db)
}

/// A path for a fresh SQLite file, removed (with its WAL files) when dropped.
pub struct TempPath(pub PathBuf);

impl TempPath {
    pub fn new(prefix: &str) -> Self {
        Self(std::env::temp_dir().join(format!("{prefix}-{}.db", Uuid::new_v4().simple())))
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let mut p = self.0.clone().into_os_string();
            p.push(suffix);
            let _ = std::fs::remove_file(p);
        }
    }
}

/// A migrated SQLite store in a fresh file.
pub async fn sqlite_store() -> (SqliteEventStore, TempPath) {
    let path = TempPath::new("crm-store");
    let store = SqliteEventStore::open(&path.0)
        .await
        .expect("open sqlite store");
    (store, path)
}

/// Deterministic pseudo-random numbers (SplitMix64) so test runs are reproducible from
/// a printed seed without a dependency.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

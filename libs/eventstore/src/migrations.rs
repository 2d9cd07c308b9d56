//! Schema migrations, embedded in the binary so a deployed service needs no files.

use std::borrow::Cow;

use sqlx::migrate::{Migration, MigrationType, Migrator};

fn migrator(files: &[(i64, &'static str, &'static str)]) -> Migrator {
    let migrations: Vec<Migration> = files
        .iter()
        .map(|(version, description, sql)| {
            Migration::new(
                *version,
                Cow::Borrowed(*description),
                MigrationType::Simple,
                Cow::Borrowed(*sql),
                false,
            )
        })
        .collect();
    Migrator {
        migrations: Cow::Owned(migrations),
        // The read models (crm-projections, versions from 1001) may share the database.
        ignore_missing: true,
        ..Migrator::DEFAULT
    }
}

/// SHA-384 of migration 6 as first released (up to commit 1b5e668), which ran `CREATE ROLE`
/// for each group role and caught "already exists". PostgreSQL checks CREATEROLE before
/// it looks whether the role exists, so an owner without it (CloudNativePG's, whose
/// roles the operator makes) could not migrate; the text now skips roles that exist.
/// Nothing changes for a store that ran the first text, so every store records the first
/// text's checksum and those migrated before still validate.
pub const ROLES_FIRST_CHECKSUM: &str =
    "6904b64b1a9a1f6dfd9561ce4bcecc3ee67cb8c9fb17657b0ba4f30e8d55ac7f40a96876f856f2a17e5e9202f579c024";

/// Give `version` the checksum of its first text (hex), after a change that leaves
/// every store that ran the first text as it is.
fn keep_first_checksum(migrator: &mut Migrator, version: i64, checksum: &str) {
    let bytes = hex::decode(checksum).expect("a hex checksum");
    for m in migrator.migrations.to_mut() {
        if m.version == version {
            m.checksum = Cow::Owned(bytes.clone());
        }
    }
}

/// What a process does about the schema when it connects to PostgreSQL (a service's
/// `CRM_MIGRATE`, read by its `main`: `on` or `off`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Schema {
    /// Apply the migrations: the schema's owner (`crm db migrate`), development, tests.
    #[default]
    Migrate,
    /// Only check that the owner has applied them: services connecting as least-privilege
    /// roles, which may not create anything.
    Expect,
}

impl std::str::FromStr for Schema {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "on" => Ok(Self::Migrate),
            "off" => Ok(Self::Expect),
            other => Err(format!(
                "{other:?}: `on` (apply migrations) or `off` (check them)"
            )),
        }
    }
}

pub fn postgres() -> Migrator {
    let mut migrator = migrator(&[
        (
            1,
            "event store",
            include_str!("../migrations/postgres/0001_event_store.sql"),
        ),
        (
            2,
            "append function",
            include_str!("../migrations/postgres/0002_append_function.sql"),
        ),
        (
            3,
            "stream heads",
            include_str!("../migrations/postgres/0003_stream_heads.sql"),
        ),
        (
            4,
            "hash chains",
            include_str!("../migrations/postgres/0004_hash_chains.sql"),
        ),
        (
            5,
            "subject keys",
            include_str!("../migrations/postgres/0005_subject_keys.sql"),
        ),
        (
            6,
            "roles",
            include_str!("../migrations/postgres/0006_roles.sql"),
        ),
        (
            7,
            "access records",
            include_str!("../migrations/postgres/0007_access_records.sql"),
        ),
        (
            8,
            "verification records",
            include_str!("../migrations/postgres/0008_verification_records.sql"),
        ),
        (
            9,
            "keys in the append",
            include_str!("../migrations/postgres/0009_keys_in_append.sql"),
        ),
    ]);
    keep_first_checksum(&mut migrator, 6, ROLES_FIRST_CHECKSUM);
    migrator
}

pub fn sqlite() -> Migrator {
    migrator(&[
        (
            1,
            "event store",
            include_str!("../migrations/sqlite/0001_event_store.sql"),
        ),
        (
            2,
            "hash chains",
            include_str!("../migrations/sqlite/0002_hash_chains.sql"),
        ),
        (
            3,
            "imported positions",
            include_str!("../migrations/sqlite/0003_imported_positions.sql"),
        ),
        (
            4,
            "subject keys",
            include_str!("../migrations/sqlite/0004_subject_keys.sql"),
        ),
    ])
}

//! The migration runner both stores share: the ordered `sql/<dialect>/NNNN_name.sql` files, each
//! applied once, in order, in a transaction of its own, and recorded in `schema_migrations`.
//!
//! The list of files is written once, below, for both dialects: a migration that exists for one
//! dialect and not the other does not compile, and a unit test checks the list against the files
//! in `sql/`. A store supplies only how to read the versions applied and how to run one migration
//! in a transaction ([`MigrationTarget`]); which migrations run, in what order, and how a failure
//! is reported is decided here.

use std::collections::BTreeSet;

use time::OffsetDateTime;

use super::{StoreError, StoreResult};

/// One migration file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Migration {
    /// The number its file name starts with.
    pub version: u32,
    /// Its statements.
    pub sql: &'static str,
}

impl Migration {
    /// The migration in the file `name` (`NNNN_what.sql`); its version is the leading number.
    const fn new(name: &str, sql: &'static str) -> Migration {
        let bytes = name.as_bytes();
        let (mut version, mut i) = (0u32, 0);
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            version = version * 10 + (bytes[i] - b'0') as u32;
            i += 1;
        }
        assert!(i > 0 && i < bytes.len() && bytes[i] == b'_', "a migration file is named NNNN_what.sql");
        Migration { version, sql }
    }
}

/// Lists the migration files, in order, once for both dialects.
macro_rules! migrations {
    ($($file:literal),+ $(,)?) => {
        /// The file names, in order (checked against `sql/` by a unit test).
        #[cfg(test)]
        const FILES: &[&str] = &[$($file),+];
        /// PostgreSQL's migrations, in order.
        pub(crate) const POSTGRES: &[Migration] =
            &[$(Migration::new($file, include_str!(concat!("../../sql/postgres/", $file)))),+];
        /// SQLite's migrations, in order.
        pub(crate) const SQLITE: &[Migration] =
            &[$(Migration::new($file, include_str!(concat!("../../sql/sqlite/", $file)))),+];
    };
}

migrations![
    "0001_initial.sql",
    "0002_postback_ignored_fields.sql",
    "0003_targeting.sql",
    "0004_segment_rollups.sql",
    "0005_held_postbacks.sql",
    "0006_dashboard.sql",
    "0007_event_rollup.sql",
    "0008_partitioned_clicks.sql",
    "0009_event_rollup_by_statement.sql"
];

/// What a store supplies to the runner. Its futures may complete at once (SQLite's do).
pub(crate) trait MigrationTarget {
    /// Creates `schema_migrations` if it does not exist, and returns the versions it lists.
    async fn applied_versions(&mut self) -> StoreResult<BTreeSet<u32>>;

    /// In one transaction: runs `migration`'s statements and records its version as applied at
    /// `applied_at`. An error is the database's description of what failed.
    async fn apply(&mut self, migration: &Migration, applied_at: OffsetDateTime) -> Result<(), String>;
}

/// Applies each of `migrations` that `target` has not applied yet, in order.
pub(crate) async fn run(target: &mut impl MigrationTarget, migrations: &[Migration]) -> StoreResult<()> {
    let applied = target.applied_versions().await?;
    for migration in migrations.iter().filter(|m| !applied.contains(&m.version)) {
        let version = migration.version;
        target
            .apply(migration, OffsetDateTime::now_utc())
            .await
            .map_err(|reason| StoreError::Migration { version, reason })?;
        tracing::info!(version, "applied migration");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files_in(dialect: &str) -> Vec<String> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("sql").join(dialect);
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.ends_with(".sql"))
            .collect();
        names.sort();
        names
    }

    #[test]
    fn the_list_names_every_migration_file_of_both_dialects_in_order() {
        for dialect in ["postgres", "sqlite"] {
            assert_eq!(files_in(dialect), FILES, "sql/{dialect}/ and the list in migrate.rs differ");
        }
    }

    #[test]
    fn versions_count_up_from_one() {
        for list in [POSTGRES, SQLITE] {
            let versions: Vec<u32> = list.iter().map(|m| m.version).collect();
            let expected: Vec<u32> = (1..=list.len() as u32).collect();
            assert_eq!(versions, expected);
        }
    }

    /// Records what the runner asks for.
    struct Recorder {
        applied: BTreeSet<u32>,
        ran: Vec<u32>,
        fail: Option<u32>,
    }

    impl MigrationTarget for Recorder {
        async fn applied_versions(&mut self) -> StoreResult<BTreeSet<u32>> {
            Ok(self.applied.clone())
        }

        async fn apply(&mut self, migration: &Migration, _: OffsetDateTime) -> Result<(), String> {
            if self.fail == Some(migration.version) {
                return Err("syntax error".to_owned());
            }
            self.ran.push(migration.version);
            self.applied.insert(migration.version);
            Ok(())
        }
    }

    const THREE: &[Migration] =
        &[Migration::new("0001_a.sql", "a"), Migration::new("0002_b.sql", "b"), Migration::new("0003_c.sql", "c")];

    #[tokio::test]
    async fn only_the_migrations_not_applied_run_in_order() {
        let mut target = Recorder { applied: BTreeSet::from([2]), ran: Vec::new(), fail: None };
        run(&mut target, THREE).await.unwrap();
        assert_eq!(target.ran, [1, 3]);
        run(&mut target, THREE).await.unwrap();
        assert_eq!(target.ran, [1, 3], "a second run applies nothing");
    }

    #[tokio::test]
    async fn a_failed_migration_stops_the_run_and_names_its_version() {
        let mut target = Recorder { applied: BTreeSet::new(), ran: Vec::new(), fail: Some(2) };
        let error = run(&mut target, THREE).await.unwrap_err();
        assert_eq!(error.to_string(), "migration 2 failed: syntax error");
        assert_eq!(target.ran, [1]);
    }
}

//! Upgrades: a database as an older release left it, with clicks, is migrated by opening the store,
//! and what the new migrations derive from the old data is right (on both stores).

use crate::support;

use casino_router::config::Config;
use casino_router::store::{self, Dimension, Grouping, SegmentStats, Store, TimeRange};
use support::{Backend, TestDb};

/// The schema before targeting (migrations 0001 and 0002, recorded as applied), one offer, and
/// clicks of two hours with two sources: three `fb` (two in the first hour), one without a source.
fn before_targeting(backend: Backend) -> String {
    let (dialect, migrations_table, times, hours, ids) = match backend {
        Backend::Postgres => (
            "postgres",
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now());
             INSERT INTO schema_migrations (version) VALUES (1), (2);",
            ["'2026-03-01 10:05:00+00'", "'2026-03-01 10:45:00+00'", "'2026-03-01 11:15:00+00'", "'2026-03-01 11:20:00+00'"],
            ["'2026-03-01 10:00:00+00'", "'2026-03-01 11:00:00+00'"],
            ["'0195f8a0-0000-7000-8000-000000000001'", "'0195f8a0-0000-7000-8000-000000000002'",
             "'0195f8a0-0000-7000-8000-000000000003'", "'0195f8a0-0000-7000-8000-000000000004'"],
        ),
        Backend::Sqlite => (
            "sqlite",
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL);
             INSERT INTO schema_migrations (version, applied_at) VALUES (1, 0), (2, 0);",
            ["1772359500000000", "1772361900000000", "1772363700000000", "1772364000000000"],
            ["1772359200000000", "1772362800000000"],
            ["'0195f8a0-0000-7000-8000-000000000001'", "'0195f8a0-0000-7000-8000-000000000002'",
             "'0195f8a0-0000-7000-8000-000000000003'", "'0195f8a0-0000-7000-8000-000000000004'"],
        ),
    };
    let read =
        |file: &str| std::fs::read_to_string(format!("{}/sql/{dialect}/{file}", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let (created, active) = match backend {
        Backend::Postgres => ("now()", "TRUE"),
        Backend::Sqlite => ("0", "1"),
    };
    let offer = match backend {
        Backend::Postgres => format!(
            "INSERT INTO offers (id, name, casino_url, postback_secret, active) VALUES (1, 'A', 'https://a.example/', 'secret-a', {active});"
        ),
        Backend::Sqlite => format!(
            "INSERT INTO offers (id, name, casino_url, postback_secret, active, created_at, updated_at)
             VALUES (1, 'A', 'https://a.example/', 'secret-a', {active}, {created}, {created});"
        ),
    };
    let sources = ["'fb'", "'fb'", "'fb'", "NULL"];
    let clicks: Vec<String> = (0..4)
        .map(|i| {
            format!(
                "INSERT INTO clicks (click_id, offer_id, created_at, source, propensity) VALUES ({}, 1, {}, {}, 1.0);",
                ids[i], times[i], sources[i]
            )
        })
        .collect();
    format!(
        "{}\n{}\n{}\n{offer}\n{}\nINSERT INTO click_rollup_hourly (offer_id, hour, clicks) VALUES (1, {}, 2), (1, {}, 2);",
        migrations_table,
        read("0001_initial.sql"),
        read("0002_postback_ignored_fields.sql"),
        clicks.join("\n"),
        hours[0],
        hours[1],
    )
}

async fn grouped(store: &dyn Store, dimension: Dimension) -> Vec<SegmentStats> {
    let grouping = Grouping { by_offer: false, dimension: Some(dimension) };
    let mut rows = store.segment_stats(TimeRange::default(), grouping).await.unwrap();
    rows.sort_by(|a, b| a.value.cmp(&b.value));
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_targeting_migration_rolls_up_the_clicks_stored_before_it() {
    let mut dbs = vec![(Backend::Sqlite, TestDb::create_on(Backend::Sqlite).await)];
    dbs.extend(TestDb::create_postgres().await.map(|db| (Backend::Postgres, db)));
    for (backend, db) in dbs {
        db.execute_batch(&before_targeting(backend)).await;
        let config = Config { database: db.database_config(), db_pool_size: 2, ..Config::default() };
        let store = store::open(&config).await.unwrap();
        let row = |value: Option<&str>, clicks| SegmentStats {
            value: value.map(str::to_owned),
            clicks,
            ..Default::default()
        };
        assert_eq!(grouped(store.as_ref(), Dimension::Source).await, [row(None, 1), row(Some("fb"), 3)], "{backend:?}");
        assert_eq!(grouped(store.as_ref(), Dimension::Country).await, [row(None, 4)], "{backend:?}: unknown country");
        assert_eq!(db.count("SELECT count(*) FROM clicks WHERE is_bot").await, 0, "{backend:?}");
    }
}

/// The schema of migrations 0001 to `last` (recorded as applied), as PostgreSQL had it.
fn postgres_schema_up_to(last: u32) -> String {
    let dir = format!("{}/sql/postgres", env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|entry| entry.unwrap().path()).collect();
    files.sort();
    let mut sql = String::from(
        "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now());\n",
    );
    for (version, file) in (1..=last).zip(files) {
        sql.push_str(&std::fs::read_to_string(file).unwrap());
        sql.push_str(&format!("\nINSERT INTO schema_migrations (version) VALUES ({version});\n"));
    }
    sql
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_partitioning_migration_moves_every_click_into_the_partition_of_its_day() {
    let Some(db) = TestDb::create_postgres().await else { return };
    db.execute_batch(&postgres_schema_up_to(7)).await;
    let now = time::OffsetDateTime::now_utc();
    let days_ago = [40i64, 3, 3, 1, 0];
    let mut clicks = Vec::new();
    for (i, days) in days_ago.iter().enumerate() {
        let at = now - time::Duration::days(*days) - time::Duration::minutes(i as i64);
        let id = casino_router::app::new_click_id(at, &mut rand::rng());
        clicks.push((id, at));
    }
    let values: Vec<String> = clicks
        .iter()
        .map(|(id, at)| {
            format!("('{id}', 1, '{}', 'DE', 1.0)", at.format(&time::format_description::well_known::Rfc3339).unwrap())
        })
        .collect();
    db.execute_batch(&format!(
        "INSERT INTO offers (id, name, casino_url, postback_secret) VALUES (1, 'A', 'https://a.example/', 'secret-a');
         INSERT INTO clicks (click_id, offer_id, created_at, country, propensity) VALUES {};
         INSERT INTO ftd_events (click_id, offer_id, click_at) SELECT click_id, offer_id, created_at FROM clicks
         WHERE click_id = '{}';",
        values.join(", "),
        clicks[1].0
    ))
    .await;
    let config = Config { database: db.database_config(), db_pool_size: 2, ..Config::default() };
    let store = store::open(&config).await.unwrap();

    let mut stored = db.click_ids().await;
    stored.sort();
    let mut expected: Vec<_> = clicks.iter().map(|(id, _)| *id).collect();
    expected.sort();
    assert_eq!(stored, expected, "every click kept");
    for (id, at) in &clicks {
        let rows = db.rows(&format!("SELECT tableoid::regclass::text FROM clicks WHERE click_id = '{id}'")).await;
        let day = format!("click_partitions.d{:04}{:02}{:02}", at.year(), u8::from(at.month()), at.day());
        assert_eq!(rows[0][0].as_deref(), Some(day.as_str()), "{id} minted {at}");
    }
    assert_eq!(db.count("SELECT count(*) FROM pg_class WHERE relname = 'clicks' AND relkind = 'p'").await, 1);
    assert_eq!(
        db.count("SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND confrelid = 'clicks'::regclass").await,
        0
    );
    assert_eq!(db.count("SELECT count(*) FROM ftd_events").await, 1, "events kept");
    let owner = store.click_owner(clicks[4].0).await.unwrap().expect("a moved click is found");
    assert_eq!(owner.offer_id, 1);
    let days_covered = db.count("SELECT count(*) FROM click_partitions.bounds").await;
    assert!(days_covered >= 41 + 7, "from the oldest click's day to a week ahead: {days_covered}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_starting_while_another_migrates_waits_for_it_however_long() {
    let Some(db) = TestDb::create_postgres().await else { return };
    // Another instance's migration session: it holds the migration lock for longer than any other
    // statement of the router waits for a lock (a second).
    let (other, connection) = tokio_postgres::connect(&db.database_url(), tokio_postgres::NoTls).await.unwrap();
    let connection = tokio::spawn(connection);
    const MIGRATION_LOCK: i64 = 0x6361_7369_6e6f_0001;
    other.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK]).await.unwrap();
    let config = Config { database: db.database_config(), db_pool_size: 1, ..Config::default() };
    let opening = tokio::spawn(async move { store::open(&config).await.map(drop) });
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    assert!(!opening.is_finished(), "the store waits for the other instance's migrations");
    other.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK]).await.unwrap();
    opening.await.unwrap().expect("the store opens once the other instance is done");
    let files = std::fs::read_dir(format!("{}/sql/postgres", env!("CARGO_MANIFEST_DIR"))).unwrap().count();
    assert_eq!(db.count("SELECT count(*) FROM schema_migrations").await, files as i64, "every migration applied");
    drop(other);
    connection.await.unwrap().unwrap();
}

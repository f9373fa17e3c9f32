//! Writer ingest: how many clicks per second `Store::insert_clicks` commits in batches of the default
//! size, into the embedded SQLite store and, when `BENCH_DATABASE_URL` names a PostgreSQL server's
//! maintenance database, into PostgreSQL (binary COPY straight into `clicks`), beside the
//! alternative the router does not use: one multi-row `INSERT .. VALUES` per batch. `SEGMENT_BY` sets
//! the segment rollup as it does for the router.
//!
//! With `BENCH_LOADED_DATABASE_URL` naming a database that already holds millions of clicks (a
//! `KEEP_DATABASE=1 CLICKS=50000000 benches/reports.sh` run keeps one), the same batches go into it
//! and into the empty database in alternating rounds (`postgres_copy_empty/N`,
//! `postgres_copy_loaded/N`), so that the machine's noise falls on both alike. Every batch goes into
//! today's partition, as the router's do. `BENCH_CITUS_URL`, naming a database on a Citus
//! coordinator that a router has laid out (and made today's partition in), does the same against
//! it (`postgres_copy_citus/N`).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use casino_router::config::{Config, DatabaseConfig};
use casino_router::routing::SegmentDims;
use casino_router::store::{self, ClickRecord, Store};
use casino_router::visitor::{Country, DeviceClass};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use time::OffsetDateTime;
use tokio_postgres::types::ToSql;
use uuid::Uuid;

const BATCH: usize = 4096;

fn batch() -> Vec<ClickRecord> {
    let now = OffsetDateTime::now_utc();
    (0..BATCH)
        .map(|i| ClickRecord {
            click_id: Uuid::now_v7(),
            offer_id: (i % 3) as i64 + 1,
            created_at: now,
            user_agent: Some("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120.0".into()),
            ip_address: Some(IpAddr::from([203, 0, 113, (i % 250) as u8])),
            referrer: Some("https://lander.example/page".into()),
            source: Some("facebook".into()),
            campaign: Some("winter24".into()),
            propensity: 0.4,
            country: Country::from_code(["DE", "GB", "BR", "CA"][i % 4]),
            device: Some(DeviceClass::ALL[i % 3]),
            is_bot: i % 20 == 0,
            is_fallback: false,
            log_slot: None,
        })
        .collect()
}

fn bench_store(c: &mut Criterion, name: &str, store: Arc<dyn Store>, runtime: &tokio::runtime::Runtime) {
    let mut group = c.benchmark_group("ingest");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.sample_size(20).measurement_time(Duration::from_secs(5));
    group.bench_function(name, |b| {
        b.iter_batched(
            batch,
            |clicks| runtime.block_on(store.insert_clicks(&clicks)).expect("insert batch"),
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

/// The alternative to COPY: the batch as one `INSERT .. VALUES (..), (..) ON CONFLICT DO NOTHING`
/// (4,096 rows of 9 parameters fit PostgreSQL's 65,535), in one transaction. Rows only, no
/// rollup: it is measured against the store's whole write, rollup included.
async fn insert_multirow(client: &mut tokio_postgres::Client, clicks: &[ClickRecord]) -> u64 {
    let mut sql = String::from(
        "INSERT INTO clicks (click_id, offer_id, created_at, user_agent, ip_address, referrer, source, campaign, \
         propensity) VALUES ",
    );
    let mut params: Vec<&(dyn ToSql + Sync)> = Vec::with_capacity(clicks.len() * 9);
    for (row, click) in clicks.iter().enumerate() {
        let first = row * 9;
        let placeholders: Vec<String> = (first + 1..=first + 9).map(|n| format!("${n}")).collect();
        sql.push_str(&format!("{}({})", if row == 0 { "" } else { ", " }, placeholders.join(", ")));
        params.extend_from_slice(&[
            &click.click_id,
            &click.offer_id,
            &click.created_at,
            &click.user_agent,
            &click.ip_address,
            &click.referrer,
            &click.source,
            &click.campaign,
            &click.propensity,
        ]);
    }
    sql.push_str(" ON CONFLICT (click_id) DO NOTHING");
    let tx = client.transaction().await.unwrap();
    let inserted = tx.execute(&sql, &params).await.unwrap();
    tx.commit().await.unwrap();
    inserted
}

fn ingest(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let dir = std::env::temp_dir().join(format!("casino-ingest-{}", Uuid::now_v7().simple()));
    // `SEGMENT_BY` as the router reads it (default: country,device): what the segment rollup costs.
    let segment_by = std::env::var("SEGMENT_BY").map_or(SegmentDims::DEFAULT, |value| value.parse().unwrap());
    let sqlite = Config { database: DatabaseConfig::Sqlite(dir.join("ingest.db")), segment_by, ..Config::default() };
    let store = runtime.block_on(store::open(&sqlite)).unwrap();
    bench_store(c, "sqlite", store, &runtime);
    let _ = std::fs::remove_dir_all(&dir);

    let Ok(maintenance_url) = std::env::var("BENCH_DATABASE_URL") else {
        eprintln!("ingest/postgres skipped: set BENCH_DATABASE_URL (e.g. postgres://postgres@127.0.0.1:5432/postgres)");
        return;
    };
    let name = format!("casino_bench_{}", Uuid::now_v7().simple());
    let admin = runtime.block_on(async {
        let (client, connection) = tokio_postgres::connect(&maintenance_url, tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(connection);
        client.batch_execute(&format!("CREATE DATABASE {name}")).await.unwrap();
        client
    });
    let base = &maintenance_url[..maintenance_url.rfind('/').unwrap()];
    let postgres =
        Config { database: DatabaseConfig::Postgres(format!("{base}/{name}")), segment_by, ..Config::default() };
    let store = runtime.block_on(store::open(&postgres)).unwrap();
    bench_store(c, "postgres_copy", store.clone(), &runtime);
    for (variable, label) in [("BENCH_LOADED_DATABASE_URL", "loaded"), ("BENCH_CITUS_URL", "citus")] {
        let Ok(url) = std::env::var(variable) else { continue };
        let other = Config { database: DatabaseConfig::Postgres(url), segment_by, ..Config::default() };
        let other = runtime.block_on(store::open(&other)).unwrap();
        for round in 1..=3 {
            bench_store(c, &format!("postgres_copy_empty/{round}"), store.clone(), &runtime);
            bench_store(c, &format!("postgres_copy_{label}/{round}"), other.clone(), &runtime);
        }
    }
    drop(store);
    let mut client = runtime.block_on(async {
        let (client, connection) =
            tokio_postgres::connect(&format!("{base}/{name}"), tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(connection);
        client
    });
    let mut group = c.benchmark_group("ingest");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.sample_size(20).measurement_time(Duration::from_secs(5));
    group.bench_function("postgres_multirow_insert", |b| {
        b.iter_batched(
            batch,
            |clicks| assert_eq!(runtime.block_on(insert_multirow(&mut client, &clicks)), BATCH as u64),
            BatchSize::PerIteration,
        )
    });
    group.finish();
    drop(client);
    runtime.block_on(admin.batch_execute(&format!("DROP DATABASE {name} WITH (FORCE)"))).unwrap();
}

criterion_group!(benches, ingest);
criterion_main!(benches);

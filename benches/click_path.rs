//! The click path without the network: offer pick, Location rendering, and the whole handler from
//! parsed request to response (record queued for the real writer).

use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::Arc;

use casino_router::app::App;
use casino_router::config::{Config, DatabaseConfig};
use casino_router::http::handle_click;
use casino_router::journal::Journal;
use casino_router::metrics::Metrics;
use casino_router::routing::{RedirectTemplate, RouteInput, RoutingTable};
use casino_router::store::{self, NewOffer};
use casino_router::writer::{ClickWriter, WriterConfig};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use hyper::header::{HeaderMap, HeaderValue, USER_AGENT};
use rand::SeedableRng;
use rand::rngs::SmallRng;
use uuid::Uuid;

fn table(n_offers: usize) -> RoutingTable {
    let inputs = (0..n_offers)
        .map(|i| RouteInput {
            offer_id: i as i64,
            weight: 0.1 + (i % 7) as f64,
            redirect: RedirectTemplate::parse(&format!("https://offer{i}.example/reg")).unwrap(),
            clicks: Arc::default(),
        })
        .collect();
    RoutingTable::build(inputs, 0.2)
}

fn pick(c: &mut Criterion) {
    let mut group = c.benchmark_group("pick");
    for n_offers in [3, 10, 100] {
        let table = table(n_offers);
        let mut rng = SmallRng::seed_from_u64(1);
        group.bench_with_input(BenchmarkId::new("small_rng", n_offers), &table, |b, table| {
            b.iter(|| black_box(table.pick(&mut rng).map(|offer| offer.offer_id)))
        });
        group.bench_with_input(BenchmarkId::new("thread_rng", n_offers), &table, |b, table| {
            b.iter(|| black_box(table.pick(&mut rand::rng()).map(|offer| offer.offer_id)))
        });
    }
    group.finish();
}

fn location(c: &mut Criterion) {
    let id = Uuid::now_v7();
    let plain = RedirectTemplate::parse("https://casino.example/register?aff=42#welcome").unwrap();
    let macros = RedirectTemplate::parse("https://casino.example/r?btag={click_id}&s={source}&c={campaign}").unwrap();
    let mut group = c.benchmark_group("location");
    group.bench_function("plain", |b| b.iter(|| black_box(plain.render(black_box(&id), "", ""))));
    group.bench_function("macros", |b| {
        b.iter(|| black_box(macros.render(black_box(&id), black_box("facebook ads"), black_box("winter-24"))))
    });
    group.finish();
}

fn handler(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let dir = std::env::temp_dir().join(format!("casino-bench-{}", Uuid::now_v7().simple()));
    let config = Config {
        database: DatabaseConfig::Sqlite(dir.join("bench.db")),
        click_queue_capacity: 1 << 20,
        ..Config::default()
    };
    let (app, writer) = runtime.block_on(async {
        let store = store::open(&config).await.unwrap();
        for i in 0..3 {
            let offer = NewOffer {
                name: format!("Offer {i}"),
                casino_url: format!("https://offer{i}.example/reg?btag={{click_id}}&s={{source}}"),
                weight: 1.0 + i as f64,
                postback_secret: "bench-secret-123".into(),
                active: true,
                event_aliases: Default::default(),
            };
            store.create_offer(&offer).await.unwrap();
        }
        let writer_config = WriterConfig {
            queue_capacity: config.click_queue_capacity,
            batch_size: config.writer_batch_size,
            flush_interval: config.writer_flush_interval,
            spill_after: config.journal_spill_after,
        };
        let journal = Journal::open(&dir.join("journal"), config.journal_max_bytes).unwrap();
        let metrics = Arc::new(Metrics::default());
        let runtime = tokio::runtime::Handle::current();
        let writer = ClickWriter::spawn(store.clone(), writer_config, runtime, metrics.clone(), journal).unwrap();
        let token = "bench-admin-token-xyz".to_owned();
        let app = Arc::new(App::new(config.clone(), store, writer.queue().clone(), token, metrics));
        app.reload_routing().await.unwrap();
        (app, writer)
    });
    let uri: hyper::Uri = "/click?source=facebook&campaign=winter24".parse().unwrap();
    let mut headers = HeaderMap::new();
    headers.insert(USER_AGENT, HeaderValue::from_static("Mozilla/5.0 (X11; Linux x86_64) Bench/1.0"));
    let peer: SocketAddr = "203.0.113.7:40000".parse().unwrap();
    let mut refused = 0u64;
    let mut group = c.benchmark_group("click_handler");
    group.warm_up_time(std::time::Duration::from_millis(500));
    group.bench_function("sqlite_writer", |b| {
        // Each sample is timed on the handler alone; between samples the writer drains the queue, so
        // no sample ever meets a full queue (the writer's own speed is measured by the ingest bench).
        b.iter_custom(|iters| {
            let start = std::time::Instant::now();
            for _ in 0..iters {
                let response = handle_click(&app, black_box(&uri), black_box(&headers), peer);
                refused += u64::from(response.status() != hyper::StatusCode::FOUND);
                black_box(response);
            }
            let elapsed = start.elapsed();
            while writer.queue().depth() > 0 {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            elapsed
        });
    });
    group.finish();
    assert_eq!(refused, 0, "clicks refused with a full queue: the figure would be optimistic");
    runtime.block_on(writer.shutdown());
    let _ = std::fs::remove_dir_all(dir);
}

criterion_group!(benches, pick, location, handler);
criterion_main!(benches);

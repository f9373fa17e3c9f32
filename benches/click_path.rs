//! The click path without the network: offer pick (without rules, and among 30 offers with
//! country, device and source rules), Location rendering, and the whole handler from parsed request
//! to response (visitor classified with the shipped IP database and bot list, record queued for the
//! real writer) over a mix of user agents and addresses.

use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::Arc;

use casino_router::app::{App, VisitorLookup};
use casino_router::click_log::ClickLog;
use casino_router::config::{Config, DatabaseConfig};
use casino_router::http::handle_click;
use casino_router::journal::Journal;
use casino_router::metrics::Metrics;
use casino_router::routing::table::pick_probabilities;
use casino_router::routing::{
    DailyCaps, OfferRules, RedirectTemplate, RouteInput, RoutingTable, Segment, Segmentation, Targeting,
};
use casino_router::store::{self, ClickRecord, NewOffer};
use casino_router::visitor::{BotList, Country, DeviceClass, GeoIp};
use casino_router::writer::{ClickWriter, WriterConfig};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use hyper::header::{HeaderMap, HeaderValue, USER_AGENT};
use rand::SeedableRng;
use rand::rngs::SmallRng;
use uuid::Uuid;

/// The countries of the targeted table and of the visitors in the mix.
const COUNTRIES: [&str; 10] = ["DE", "AT", "GB", "IE", "BR", "CA", "FI", "NO", "JP", "XX"];

/// `n_offers` offers; `targeted`: each accepts three of [`COUNTRIES`], every third one mobile only,
/// every fourth one some sources (an exact value and a prefix).
fn table(n_offers: usize, targeted: bool) -> RoutingTable {
    let inputs: Vec<RouteInput> = (0..n_offers)
        .map(|i| {
            let targeting = if targeted {
                Targeting {
                    countries: Some((0..3).map(|k| COUNTRIES[(i + k) % COUNTRIES.len()].to_owned()).collect()),
                    devices: (i % 3 == 0).then(|| vec!["mobile".to_owned()]),
                    sources: (i % 4 == 0).then(|| vec!["google".to_owned(), "fb_*".to_owned()]),
                    ..Targeting::default()
                }
            } else {
                Targeting::default()
            };
            RouteInput {
                offer_id: i as i64,
                weight: 0.1 + (i % 7) as f64,
                redirect: RedirectTemplate::parse(&format!("https://offer{i}.example/reg")).unwrap(),
                clicks: Arc::default(),
                rules: OfferRules::compile(&targeting),
                caps: DailyCaps::default(),
                today: Arc::default(),
            }
        })
        .collect();
    let weights: Vec<f64> = inputs.iter().map(|input| input.weight).collect();
    RoutingTable::build(inputs, &Segmentation::default(), |_, members| {
        pick_probabilities(members.iter().map(|&i| weights[i]), 0.2)
    })
}

fn pick(c: &mut Criterion) {
    let mut group = c.benchmark_group("pick");
    for n_offers in [3, 10, 100] {
        let table = table(n_offers, false);
        let mut rng = SmallRng::seed_from_u64(1);
        group.bench_with_input(BenchmarkId::new("small_rng", n_offers), &table, |b, table| {
            b.iter(|| black_box(table.pick(black_box(&Segment::ANYONE), &mut rng).map(|pick| pick.offer.offer_id)))
        });
        group.bench_with_input(BenchmarkId::new("thread_rng", n_offers), &table, |b, table| {
            b.iter(|| black_box(table.pick(&Segment::ANYONE, &mut rand::rng()).map(|pick| pick.offer.offer_id)))
        });
    }
    // Visitors of every country in the mix, each device, with and without a matching source.
    let table = table(30, true);
    let sources = [None, Some("google"), Some("fb_spring"), Some("tiktok")];
    let segments: Vec<Segment<'static>> = COUNTRIES
        .iter()
        .flat_map(|&code| DeviceClass::ALL.map(move |device| (code, device)))
        .zip(sources.into_iter().cycle())
        .map(|((code, device), source)| Segment {
            country: Country::from_code(code).unwrap(),
            device,
            source,
            campaign: Some("winter24"),
        })
        .collect();
    let mut rng = SmallRng::seed_from_u64(1);
    let mut next = 0;
    group.bench_function("targeted_30_offers", |b| {
        b.iter(|| {
            next = (next + 1) % segments.len();
            black_box(table.pick(black_box(&segments[next]), &mut rng).map(|pick| pick.offer.offer_id))
        })
    });
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

/// Writing one typical click into the click log, released at once (as the writer would, a batch
/// later), with the periodic `msync` of the product and without it.
fn click_log(c: &mut Criterion) {
    let record = ClickRecord {
        click_id: Uuid::now_v7(),
        offer_id: 7,
        created_at: time::OffsetDateTime::now_utc(),
        user_agent: Some(USER_AGENTS[0].into()),
        ip_address: Some("203.0.113.9".parse().unwrap()),
        referrer: Some("https://landing.example/spring?utm_source=fb".into()),
        source: Some("facebook".into()),
        campaign: Some("winter24".into()),
        propensity: 0.25,
        country: Country::from_code("DE"),
        device: Some(DeviceClass::Mobile),
        is_bot: false,
        is_fallback: false,
        log_slot: None,
    };
    let mut group = c.benchmark_group("click_log");
    for (name, sync) in [("write_no_msync", None), ("write_msync_1s", Some(std::time::Duration::from_secs(1)))] {
        let dir = std::env::temp_dir().join(format!("casino-bench-log-{}", Uuid::now_v7().simple()));
        let (log, _) = ClickLog::open(&dir, sync).unwrap();
        let mut slots = Vec::with_capacity(4096);
        group.bench_function(name, |b| {
            b.iter(|| {
                slots.push(log.write(black_box(&record)).unwrap().slot());
                if slots.len() == slots.capacity() {
                    log.release(slots.drain(..));
                }
            })
        });
        log.release(slots.drain(..));
        log.close();
        let _ = std::fs::remove_dir_all(dir);
    }
    group.finish();
}

/// A real `App` on the embedded store with its writer, and the click log or not.
struct Handler {
    app: Arc<App>,
    writer: ClickWriter,
    dir: std::path::PathBuf,
}

fn handler_on(runtime: &tokio::runtime::Runtime, click_log: bool) -> Handler {
    let dir = std::env::temp_dir().join(format!("casino-bench-{}", Uuid::now_v7().simple()));
    let config = Config {
        database: DatabaseConfig::Sqlite(dir.join("bench.db")),
        click_queue_capacity: 1 << 20,
        ..Config::default()
    };
    runtime.block_on(async {
        let store = store::open(&config).await.unwrap();
        for i in 0..3 {
            let offer = NewOffer {
                name: format!("Offer {i}"),
                casino_url: format!("https://offer{i}.example/reg?btag={{click_id}}&s={{source}}"),
                weight: 1.0 + i as f64,
                postback_secret: "bench-secret-123".into(),
                active: true,
                event_aliases: Default::default(),
                targeting: Default::default(),
                daily_caps: Default::default(),
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
        let log = click_log.then(|| ClickLog::open(&dir.join("journal"), config.click_log_sync).unwrap().0);
        let metrics = Arc::new(Metrics::default());
        let runtime = tokio::runtime::Handle::current();
        let writer = ClickWriter::spawn(store.clone(), writer_config, runtime, metrics.clone(), journal, log).unwrap();
        let token = "bench-admin-token-xyz".to_owned();
        let geoip =
            GeoIp::open(std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/data/geoip/dbip-country.mmdb")))
                .unwrap();
        let lookup = VisitorLookup { geoip: Some(geoip), bots: BotList::bundled() };
        let app = Arc::new(App::new(config.clone(), store, writer.queue().clone(), lookup, token, metrics));
        app.reload_routing().await.unwrap();
        Handler { app, writer, dir }
    })
}

/// The whole handler, with the writer of the product (`sqlite_writer_click_log`: every click
/// written into the memory-mapped click log first) and without the click log (`sqlite_writer`), to
/// see what the log costs a click.
fn handler(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let uri: hyper::Uri = "/click?source=facebook&campaign=winter24".parse().unwrap();
    // A mix of visitors: browsers on phones, tablets and desktops, in-app browsers, a link preview
    // and a crawler, each from an address of another country (looked up in the IP database).
    let visitors: Vec<(HeaderMap, SocketAddr)> = USER_AGENTS
        .iter()
        .zip(ADDRESSES.iter().cycle())
        .map(|(agent, address)| {
            let mut headers = HeaderMap::new();
            headers.insert(USER_AGENT, HeaderValue::from_static(agent));
            (headers, SocketAddr::new(address.parse().unwrap(), 40000))
        })
        .collect();
    let mut group = c.benchmark_group("click_handler");
    group.warm_up_time(std::time::Duration::from_millis(500));
    for (name, click_log) in [("sqlite_writer", false), ("sqlite_writer_click_log", true)] {
        let Handler { app, writer, dir } = handler_on(&runtime, click_log);
        let mut next = 0;
        let mut refused = 0u64;
        group.bench_function(name, |b| {
            // Each sample is timed on the handler alone; between samples the writer drains the
            // queue, so no sample ever meets a full queue (the writer's own speed is measured by the
            // ingest bench).
            b.iter_custom(|iters| {
                let start = std::time::Instant::now();
                for _ in 0..iters {
                    next = (next + 1) % visitors.len();
                    let (headers, peer) = &visitors[next];
                    let response = handle_click(&app, black_box(&uri), black_box(headers), *peer, false);
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
        assert_eq!(refused, 0, "clicks refused with a full queue: the figure would be optimistic");
        runtime.block_on(writer.shutdown());
        drop(app);
        let _ = std::fs::remove_dir_all(dir);
    }
    group.finish();
}

/// Real user agents, most of them people's (as in a landing page's traffic), a few bots.
const USER_AGENTS: [&str; 12] = [
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.6478.122 Mobile Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15",
    "Mozilla/5.0 (Linux; Android 13; SM-X710) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/125.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/21E236 [FBAN/FBIOS;FBAV/468.0.0.46.105]",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.6478.71 Mobile Safari/537.36 Instagram 337.0.0.35.102 Android",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:127.0) Gecko/20100101 Firefox/127.0",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36 Edg/126.0.0.0",
    "Mozilla/5.0 (Linux; Android 14; SAMSUNG SM-A546B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/25.0 Chrome/121.0.0.0 Mobile Safari/537.36",
    "TelegramBot (like TwitterBot)",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
];

/// Addresses of several countries' networks (and one private address).
const ADDRESSES: [&str; 7] =
    ["8.8.8.8", "81.2.69.142", "2.16.0.1", "177.10.0.1", "1.1.1.1", "2001:4860:4860::8888", "10.1.2.3"];

criterion_group!(benches, pick, location, click_log, handler);
criterion_main!(benches);

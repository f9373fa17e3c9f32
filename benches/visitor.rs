//! Visitor classification per click: device class, bot check, GeoIP country, the proxy country
//! header, and all of them together, over a realistic mix of 40 user agents (4 of them bots) and
//! 1,000 IPv4 addresses spread over the whole space (fixed seed). Each iteration classifies one
//! visitor, cycling through the mix. For comparison: the plain `RegexSet` of the full bot list and a
//! lookup in the mmdb tree itself, which the flattened tables replace. Start-up costs last.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use casino_router::visitor::{BotList, Country, GeoIp, device_class};
use criterion::{Criterion, criterion_group, criterion_main};

/// Desktop and mobile browsers, in-app browsers, and 4 bots (10%).
const USER_AGENTS: [&str; 40] = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 OPR/115.0.0.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10.15; rv:133.0) Gecko/20100101 Firefox/133.0",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.6 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/131.0.6778.73 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (iPad; CPU OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Android 15; Mobile; rv:133.0) Gecko/133.0 Firefox/133.0",
    "Mozilla/5.0 (Linux; Android 14; SAMSUNG SM-S928B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/27.0 Chrome/125.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Linux; Android 13; SAMSUNG SM-A536B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/26.0 Chrome/122.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36 EdgA/131.0.0.0",
    "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36 OPR/86.0.0.0",
    "Mozilla/5.0 (Linux; Android 9; KFTRWI) AppleWebKit/537.36 (KHTML, like Gecko) Silk/131.2.1 like Chrome/131.0.6778.85 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 [FBAN/FBIOS;FBAV/490.0.0.42.108;FBBV/660000000;FBDV/iPhone16,2;FBMD/iPhone;FBSN/iOS;FBSV/18.1;FBSS/3;FBID/phone;FBLC/en_US;FBOP/5;FBRV/0]",
    "Mozilla/5.0 (Linux; Android 14; SM-S918B Build/UP1A.231005.007; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/131.0.6778.81 Mobile Safari/537.36 [FB_IAB/FB4A;FBAV/490.0.0.49.108;]",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 Instagram 357.0.0.25.101 (iPhone16,2; iOS 18_1; en_US; en; scale=3.00; 1179x2556; 658000000)",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8 Build/AP2A.240905.003; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/131.0.6778.81 Mobile Safari/537.36 Instagram 357.0.0.43.101 Android (34/14; 420dpi; 1080x2400; Google/google; Pixel 8; shiba; shiba; en_US; 658000000)",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 musical_ly_37.5.0 JsSdk/2.0 NetType/WIFI Channel/App Store ByteLocale/en Region/US",
    "Mozilla/5.0 (Linux; Android 13; SM-X710) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 12; moto g(50)) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36 YaBrowser/24.10.2.104.00 SA/3",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 YaBrowser/24.10.0.0 Safari/537.36",
    "TelegramBot (like TwitterBot)",
    "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.6778.69 Mobile Safari/537.36 (compatible; AdsBot-Google-Mobile; +http://www.google.com/mobile/adsbot.html)",
];

/// A typical desktop browser agent, 111 bytes, for the per-agent figure without the mix.
const CHROME: &str =
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";
/// A typical phone agent, 139 bytes.
const IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1";

fn geoip_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data/geoip/dbip-country.mmdb")
}

/// 1,000 IPv4 addresses spread over the whole space, fixed seed (splitmix64).
fn addresses() -> Vec<IpAddr> {
    let mut state: u64 = 42;
    (0..1_000)
        .map(|_| {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            IpAddr::V4(Ipv4Addr::from((z ^ (z >> 31)) as u32))
        })
        .collect()
}

/// Country headers as a proxy sends them, unknown ones included.
const COUNTRY_HEADERS: [&[u8]; 8] = [b"DE", b"US", b"br", b"T1", b"GB", b"XX", b"", b"JP"];

fn visitor(c: &mut Criterion) {
    let bots = BotList::bundled();
    let geoip = GeoIp::open(&geoip_path()).unwrap();
    let ips = addresses();
    let agents: Vec<&[u8]> = USER_AGENTS.iter().map(|a| a.as_bytes()).collect();
    let mut group = c.benchmark_group("visitor");

    let mut i = 0;
    group.bench_function("device_class_mix", |b| {
        b.iter(|| {
            i = (i + 1) % agents.len();
            device_class(Some(black_box(agents[i])), black_box(None))
        })
    });
    group.bench_function("is_bot_mix", |b| {
        b.iter(|| {
            i = (i + 1) % agents.len();
            bots.is_bot(black_box(agents[i]))
        })
    });
    group.bench_function("is_bot_chrome_desktop", |b| b.iter(|| bots.is_bot(black_box(CHROME.as_bytes()))));
    group.bench_function("is_bot_iphone_safari", |b| b.iter(|| bots.is_bot(black_box(IPHONE.as_bytes()))));
    group.bench_function("geoip_country_1000_ipv4", |b| {
        b.iter(|| {
            i = (i + 1) % ips.len();
            geoip.country(black_box(ips[i]))
        })
    });
    group.bench_function("geoip_country_ipv6", |b| {
        let ip: IpAddr = "2a01:e00::1".parse().unwrap();
        b.iter(|| geoip.country(black_box(ip)))
    });
    group.bench_function("country_from_header", |b| {
        b.iter(|| {
            i = (i + 1) % COUNTRY_HEADERS.len();
            Country::from_header(black_box(COUNTRY_HEADERS[i]))
        })
    });
    group.bench_function("all_per_visitor", |b| {
        let mut n = 0usize;
        b.iter(|| {
            n = n.wrapping_add(1);
            let agent = black_box(agents[n % agents.len()]);
            let ip = black_box(ips[n % ips.len()]);
            let header = black_box(COUNTRY_HEADERS[n % COUNTRY_HEADERS.len()]);
            let device = device_class(Some(agent), Some(b"?0"));
            let bot = bots.is_bot(agent);
            let mut country = Country::from_header(header);
            if country == Country::UNKNOWN {
                country = geoip.country(ip);
            }
            (device, bot, country)
        })
    });
    group.finish();
}

/// What the chosen designs replace: the plain full-list `RegexSet` and the mmdb tree lookup.
fn alternatives(c: &mut Criterion) {
    let patterns: Vec<String> =
        serde_json::from_str::<Vec<serde_json::Value>>(include_str!("../data/bots/crawler-user-agents.json"))
            .unwrap()
            .into_iter()
            .map(|entry| entry["pattern"].as_str().unwrap().to_owned())
            .collect();
    let set = regex::bytes::RegexSet::new(&patterns).unwrap();
    let alternation = regex::bytes::RegexBuilder::new(&patterns.join("|")).size_limit(1 << 30).build().unwrap();
    let reader = maxminddb::Reader::open_readfile(geoip_path()).unwrap();
    let ips = addresses();
    let agents: Vec<&[u8]> = USER_AGENTS.iter().map(|a| a.as_bytes()).collect();
    let mut group = c.benchmark_group("alternatives");
    let mut i = 0;
    group.bench_function("regex_set_mix", |b| {
        b.iter(|| {
            i = (i + 1) % agents.len();
            set.is_match(black_box(agents[i]))
        })
    });
    group.bench_function("regex_alternation_mix", |b| {
        b.iter(|| {
            i = (i + 1) % agents.len();
            alternation.is_match(black_box(agents[i]))
        })
    });
    group.bench_function("regex_alternation_chrome_desktop", |b| {
        b.iter(|| alternation.is_match(black_box(CHROME.as_bytes())))
    });
    group.bench_function("mmdb_tree_country_code_1000_ipv4", |b| {
        #[derive(serde::Deserialize)]
        struct Record<'a> {
            country_code: Option<&'a str>,
        }
        b.iter(|| {
            i = (i + 1) % ips.len();
            let found = reader.lookup(black_box(ips[i])).unwrap();
            let record: Option<Record> = found.decode().unwrap();
            record.and_then(|r| r.country_code).map(|code| Country::from_code(code).unwrap_or(Country::UNKNOWN))
        })
    });
    group.finish();
}

fn startup(c: &mut Criterion) {
    let mut group = c.benchmark_group("startup");
    group.sample_size(10).measurement_time(Duration::from_secs(10));
    group.bench_function("bot_list_bundled", |b| b.iter(BotList::bundled));
    group.bench_function("geoip_open_vendored", |b| b.iter(|| GeoIp::open(black_box(&geoip_path())).unwrap()));
    group.finish();
}

criterion_group!(benches, visitor, alternatives, startup);
criterion_main!(benches);

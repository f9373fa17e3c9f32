//! One Thompson refresh: posteriors and Monte Carlo probabilities of being best for 100 offers with
//! a month of hourly history, as `App::reload_routing` computes them (1,000 draws; 2,000 for scale);
//! and the refresh with learning per segment, 30 offers in 200 segments, from the evidence to the
//! built routing table (the engine, then every segment's draws and pools).

use std::hint::black_box;
use std::sync::Arc;

use casino_router::routing::thompson::{Evidence, HORIZON_HOURS, OfferHistory, Payouts, SegmentHistory, evaluate};
use casino_router::routing::{
    DailyCaps, OfferRules, RedirectTemplate, RouteInput, RoutingTable, SegmentDims, Segmentation, Targeting,
};
use casino_router::visitor::{Country, DeviceClass};
use criterion::{Criterion, criterion_group, criterion_main};

fn histories(offers: usize) -> Vec<OfferHistory> {
    (0..offers)
        .map(|i| {
            let clicks = vec![20 + (i as u64 % 7) * 5; HORIZON_HOURS];
            let ftds: Vec<u64> = (0..HORIZON_HOURS).map(|age| u64::from((age + i) % 40 == 0)).collect();
            let delays =
                ftds.iter().enumerate().filter(|&(_, &n)| n > 0).map(|(age, &n)| (age, (age / 3).min(96), n)).collect();
            let payouts = ftds
                .iter()
                .map(|&n| Payouts { count: n, sum: n as f64 * 120.0, sum_sq: n as f64 * 14_400.0 })
                .collect();
            OfferHistory { offer_id: i as i64, clicks, ftds, payouts, delays }
        })
        .collect()
}

/// Each offer's clicks and FTDs spread over `segments` segments with Zipf-like shares (segment `s`
/// about `1 / (s + 1)`), click by click, so that small segments see an offer only in some hours.
fn segment_histories(offers: &[OfferHistory], segments: usize) -> Vec<SegmentHistory> {
    let mut by_key = std::collections::BTreeMap::new();
    let segment_of = |n: u64| {
        let u = (n as f64 * 0.618_033_988_75).fract();
        ((segments as f64 + 1.0).powf(u) - 1.0) as usize
    };
    for (offer, history) in offers.iter().enumerate() {
        let mut n = offer as u64 * 7_919;
        for (age, (&clicks, &ftds)) in history.clicks.iter().zip(&history.ftds).enumerate() {
            for click in 0..clicks {
                n += 1;
                let entry = by_key.entry((segment_of(n), offer)).or_insert_with(|| SegmentHistory {
                    segment: segment_of(n),
                    offer,
                    ..SegmentHistory::default()
                });
                match entry.clicks.last_mut() {
                    Some((last, count)) if *last == age => *count += 1,
                    _ => entry.clicks.push((age, 1)),
                }
                if click < ftds {
                    entry.ftds.push((age, 1));
                    entry.payouts.push((age, 1, 120.0));
                }
            }
        }
    }
    by_key.into_values().collect()
}

fn refresh(c: &mut Criterion) {
    let mut group = c.benchmark_group("thompson_refresh");
    for (offers, draws) in [(10, 1_000), (100, 1_000), (100, 2_000)] {
        let histories = histories(offers);
        group.bench_function(format!("{offers}_offers_{draws}_draws"), |b| {
            b.iter(|| black_box(evaluate(black_box(&Evidence::offers(&histories)), draws, 7)))
        });
    }

    // 30 offers, 200 segments (67 countries x 3 device classes, less one), a third of the offers
    // licensed in only half of the countries.
    let offers = histories(30);
    let segments = segment_histories(&offers, 200);
    let countries: Vec<Country> = Country::all().take(67).collect();
    let keys: Vec<_> = countries
        .iter()
        .flat_map(|&country| DeviceClass::ALL.map(|device| SegmentDims::DEFAULT.key(country, device, None)))
        .take(200)
        .collect();
    let segmentation = Segmentation::new(SegmentDims::DEFAULT, keys);
    let licensed: Vec<String> = countries.iter().step_by(2).map(|c| c.as_str().to_owned()).collect();
    let inputs: Vec<RouteInput> = (0..30)
        .map(|i| RouteInput {
            offer_id: i,
            weight: 1.0,
            redirect: RedirectTemplate::parse("https://offer.example/").unwrap(),
            clicks: Arc::default(),
            rules: OfferRules::compile(&Targeting {
                countries: (i % 3 == 0).then(|| licensed.clone()),
                ..Targeting::default()
            }),
            caps: DailyCaps::default(),
            today: Arc::default(),
        })
        .collect();
    let evidence =
        Evidence { offers: &offers, segments: &segments, segment_traits: segmentation.traits(), hour_elapsed: 0.5 };
    let resident = || {
        let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
        statm.split_whitespace().nth(1).and_then(|pages| pages.parse::<u64>().ok()).unwrap_or(0) * 4096
    };
    let before = resident();
    let result = evaluate(&evidence, 1_000, 7);
    let table = RoutingTable::build(inputs.clone(), &segmentation, result.probabilities());
    eprintln!(
        "30 offers, 200 segments: {} pools; resident memory grew {:.1} MB with the result and the table",
        table.pool_count(),
        (resident() - before) as f64 / 1e6
    );
    drop((result, table));
    group.bench_function("30_offers_200_segments_to_table", |b| {
        b.iter(|| {
            let result = evaluate(black_box(&evidence), 1_000, 7);
            black_box(RoutingTable::build(inputs.clone(), &segmentation, result.probabilities()))
        })
    });
    group.finish();
}

criterion_group!(benches, refresh);
criterion_main!(benches);

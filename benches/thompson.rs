//! One Thompson refresh: posteriors and Monte Carlo probabilities of being best for 100 offers with
//! a month of hourly history, as `App::reload_routing` computes them (1,000 draws; 2,000 for scale).

use std::hint::black_box;

use casino_router::routing::thompson::{Evidence, HORIZON_HOURS, OfferHistory, evaluate};
use criterion::{Criterion, criterion_group, criterion_main};

fn histories(offers: usize) -> Vec<OfferHistory> {
    (0..offers)
        .map(|i| {
            let clicks = vec![20 + (i as u64 % 7) * 5; HORIZON_HOURS];
            let ftds: Vec<u64> = (0..HORIZON_HOURS).map(|age| u64::from((age + i) % 40 == 0)).collect();
            let delays =
                ftds.iter().enumerate().filter(|&(_, &n)| n > 0).map(|(age, &n)| (age, (age / 3).min(96), n)).collect();
            let known: u64 = ftds.iter().sum();
            OfferHistory {
                offer_id: i as i64,
                clicks,
                ftds,
                payout_sum: known as f64 * 120.0,
                payout_sum_sq: known as f64 * 14_400.0,
                payouts: known,
                delays,
            }
        })
        .collect()
}

fn refresh(c: &mut Criterion) {
    let mut group = c.benchmark_group("thompson_refresh");
    for (offers, draws) in [(10, 1_000), (100, 1_000), (100, 2_000)] {
        let histories = histories(offers);
        group.bench_function(format!("{offers}_offers_{draws}_draws"), |b| {
            b.iter(|| black_box(evaluate(black_box(&Evidence::offers(&histories)), draws, 7)))
        });
    }
    group.finish();
}

criterion_group!(benches, refresh);
criterion_main!(benches);

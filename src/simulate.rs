//! The simulator behind `casino-router simulate`: the router's own routing code against synthetic
//! traffic, on a virtual clock, compared with an oracle that knows every offer's true value.
//!
//! Each run is 30 days of 20,000 clicks a day. Every click is routed by a real [`RoutingTable`] built
//! by the strategy under test: `ev` is the original formula ([`WeightPolicy`] on each offer's last
//! 1,000 clicks, 20% exploration, every 6 hours); `thompson` is [`thompson::evaluate`] on the same
//! hourly rollups the router reads from its database, every hour of virtual time. A click converts
//! with its offer's true FTD rate; the FTD postback arrives after a log-normal delay (hours to days),
//! and only arrived postbacks are visible to the strategies. Revenue is counted in expectation (the
//! true EPC of the offer each click went to) to keep the comparison sharp; the oracle sends every
//! click to the offer with the highest true EPC at that hour.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;

use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use rand_distr::{Distribution, LogNormal};

use crate::config::RoutingStrategy;
use crate::routing::table::pick_probabilities;
use crate::routing::thompson::{self, HORIZON_HOURS, OfferHistory};
use crate::routing::{
    DailyCaps, OfferRules, OfferWindow, RedirectTemplate, RouteInput, RoutingTable, Segment, WeightPolicy,
};

/// Virtual days per run.
pub const DAYS: usize = 30;
/// Clicks per virtual day.
pub const CLICKS_PER_DAY: usize = 20_000;
/// Monte Carlo draws per Thompson refresh in the simulator.
const DRAWS: usize = 1_000;

/// A synthetic offer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OfferSpec {
    /// FTDs per click.
    pub ftd_rate: f64,
    /// Payout per FTD.
    pub cpa: f64,
    /// Median delay from click to FTD postback, in hours.
    pub delay_median_hours: f64,
    /// Hour at which the offer becomes active (0: from the start).
    pub starts_at: usize,
    /// `(hour, factor)`: from that hour on, the FTD rate is multiplied by `factor`.
    pub change: Option<(usize, f64)>,
}

impl OfferSpec {
    const fn new(ftd_rate: f64, cpa: f64, delay_median_hours: f64) -> OfferSpec {
        OfferSpec { ftd_rate, cpa, delay_median_hours, starts_at: 0, change: None }
    }

    fn rate_at(&self, hour: usize) -> f64 {
        match self.change {
            Some((at, factor)) if hour >= at => self.ftd_rate * factor,
            _ => self.ftd_rate,
        }
    }

    fn epc_at(&self, hour: usize) -> f64 {
        self.rate_at(hour) * self.cpa
    }

    fn active_at(&self, hour: usize) -> bool {
        hour >= self.starts_at
    }
}

/// A named set of offers.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    /// Short name, for `--scenario`.
    pub name: &'static str,
    /// What it tests.
    pub description: &'static str,
    /// The offers.
    pub offers: Vec<OfferSpec>,
    /// The hour something changes (the halving, the new offer), for "after the change" figures.
    pub change_hour: Option<usize>,
}

/// Offers with FTD rates of 0.5-6% and CPAs of $50-400, drawn with a fixed seed.
fn generated_offers(count: usize, seed: u64) -> Vec<OfferSpec> {
    let mut rng = SmallRng::seed_from_u64(seed);
    (0..count)
        .map(|_| {
            OfferSpec::new(rng.random_range(0.005..0.06), rng.random_range(50.0..400.0), rng.random_range(4.0..72.0))
        })
        .collect()
}

/// Every scenario, in report order.
pub fn scenarios() -> Vec<Scenario> {
    let halving_day = 15 * 24;
    let new_offer_day = 10 * 24;
    let five = || {
        vec![
            OfferSpec::new(0.030, 150.0, 24.0), // EPC 4.50
            OfferSpec::new(0.045, 80.0, 12.0),  // 3.60
            OfferSpec::new(0.010, 300.0, 48.0), // 3.00
            OfferSpec::new(0.020, 100.0, 24.0), // 2.00
            OfferSpec::new(0.006, 200.0, 36.0), // 1.20
        ]
    };
    vec![
        Scenario {
            name: "stationary-3",
            description: "3 offers, values fixed all month",
            offers: vec![
                OfferSpec::new(0.025, 120.0, 24.0), // EPC 3.00
                OfferSpec::new(0.040, 110.0, 18.0), // 4.40
                OfferSpec::new(0.008, 250.0, 48.0), // 2.00
            ],
            change_hour: None,
        },
        Scenario {
            name: "stationary-10",
            description: "10 offers drawn from FTD rates 0.5-6% and CPAs $50-400",
            offers: generated_offers(10, 10),
            change_hour: None,
        },
        Scenario {
            name: "stationary-30",
            description: "30 offers drawn from FTD rates 0.5-6% and CPAs $50-400",
            offers: generated_offers(30, 30),
            change_hour: None,
        },
        Scenario {
            name: "best-halves",
            description: "5 offers; the best one's FTD rate halves on day 15",
            offers: {
                let mut offers = five();
                offers[0].change = Some((halving_day, 0.5));
                offers
            },
            change_hour: Some(halving_day),
        },
        Scenario {
            name: "new-offer",
            description: "5 offers; a better one appears on day 10",
            offers: {
                let mut offers = five();
                offers.push(OfferSpec { starts_at: new_offer_day, ..OfferSpec::new(0.040, 140.0, 24.0) }); // 5.60
                offers
            },
            change_hour: Some(new_offer_day),
        },
        Scenario {
            name: "slow-postbacks",
            description: "the best offer reports FTDs after 4 days (median), the others within hours",
            offers: vec![
                OfferSpec::new(0.030, 150.0, 96.0), // EPC 4.50, slow
                OfferSpec::new(0.035, 110.0, 2.0),  // 3.85, fast
                OfferSpec::new(0.020, 150.0, 6.0),  // 3.00, fast
            ],
            change_hour: None,
        },
        Scenario {
            name: "close-values",
            description: "4 offers within 10% of each other, and one poor",
            offers: vec![
                OfferSpec::new(0.030, 100.0, 24.0),  // 3.00
                OfferSpec::new(0.029, 100.0, 24.0),  // 2.90
                OfferSpec::new(0.0275, 100.0, 24.0), // 2.75
                OfferSpec::new(0.035, 80.0, 24.0),   // 2.80
                OfferSpec::new(0.010, 100.0, 24.0),  // 1.00
            ],
            change_hour: None,
        },
    ]
}

/// One run's figures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RunResult {
    /// Expected revenue as a share of the oracle's.
    pub revenue_share: f64,
    /// The same, from the scenario's change on (equal to `revenue_share` without a change).
    pub revenue_share_after_change: f64,
    /// Share of clicks sent to the offer with the lowest true EPC at the time.
    pub worst_offer_share: f64,
    /// Hours from the change until the new best offer got more than half of an hour's clicks.
    pub hours_to_shift: Option<f64>,
}

/// A clicked-but-not-yet-reported FTD.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct PendingFtd {
    arrives_at: usize,
    offer: usize,
    clicked_at: usize,
    /// Its click's place in `recent` (kept for `ev` only).
    recent_index: Option<usize>,
}

/// One run of `scenario` under `strategy` with `seed`.
pub fn run(scenario: &Scenario, strategy: RoutingStrategy, seed: u64) -> RunResult {
    let hours = DAYS * 24;
    let k = scenario.offers.len();
    let mut rng = SmallRng::seed_from_u64(seed);
    let delays: Vec<LogNormal<f64>> =
        scenario.offers.iter().map(|o| LogNormal::new(o.delay_median_hours.ln(), 1.0).expect("valid")).collect();
    // What the strategies may see: clicks by hour, FTDs that arrived by click hour, pooled delays.
    let mut clicks = vec![vec![0u64; hours]; k];
    let mut ftds = vec![vec![0u64; hours]; k];
    let mut arrived: Vec<(usize, usize, usize)> = Vec::new(); // (offer, clicked_at, arrived_at)
    let mut recent: Vec<Vec<(usize, Option<usize>)>> = vec![Vec::new(); k]; // for `ev`: (hour, FTD arrival)
    let mut pending = BinaryHeap::new();
    let (mut revenue, mut oracle, mut revenue_after, mut oracle_after) = (0.0, 0.0, 0.0, 0.0);
    let (mut worst_clicks, mut total_clicks) = (0u64, 0u64);
    let mut hours_to_shift = None;
    let mut table = RoutingTable::default();
    let mut routed: Vec<usize> = Vec::new(); // table entry -> offer index

    for hour in 0..hours {
        while pending.peek().is_some_and(|Reverse(ftd): &Reverse<PendingFtd>| ftd.arrives_at <= hour) {
            let Some(Reverse(ftd)) = pending.pop() else { break };
            ftds[ftd.offer][ftd.clicked_at] += 1;
            arrived.push((ftd.offer, ftd.clicked_at, ftd.arrives_at));
            if let Some(index) = ftd.recent_index {
                recent[ftd.offer][index].1 = Some(ftd.arrives_at);
            }
        }
        let active: Vec<usize> = (0..k).filter(|&i| scenario.offers[i].active_at(hour)).collect();
        let refresh_every = match strategy {
            RoutingStrategy::Ev => 6,
            RoutingStrategy::Thompson => 1,
        };
        let offers_changed = routed.len() != active.len();
        if hour % refresh_every == 0 || offers_changed {
            let weights = match strategy {
                RoutingStrategy::Ev => ev_weights(&active, &recent, &scenario.offers, hour),
                RoutingStrategy::Thompson => {
                    thompson_weights(&active, &clicks, &ftds, &arrived, &scenario.offers, hour, seed)
                }
            };
            let exploration = if strategy == RoutingStrategy::Ev { 0.2 } else { 0.0 };
            table = build_table(&active, &weights, exploration);
            routed = active.clone();
        }
        let epcs: Vec<f64> = active.iter().map(|&i| scenario.offers[i].epc_at(hour)).collect();
        let best_epc = epcs.iter().copied().fold(f64::MIN, f64::max);
        let worst_epc = epcs.iter().copied().fold(f64::MAX, f64::min);
        let best_offer = active[epcs.iter().position(|&e| e == best_epc).unwrap_or(0)];
        let per_hour = CLICKS_PER_DAY / 24 + usize::from(hour % 3 == 0); // 20,000 a day on average
        let mut best_clicks = 0;
        for _ in 0..per_hour {
            let Some(picked) = table.pick(&Segment::ANYONE, &mut rng) else { continue };
            let offer = picked.offer.offer_id as usize;
            let spec = &scenario.offers[offer];
            clicks[offer][hour] += 1;
            let epc = spec.epc_at(hour);
            revenue += epc;
            oracle += best_epc;
            if scenario.change_hour.is_some_and(|at| hour >= at) {
                revenue_after += epc;
                oracle_after += best_epc;
            }
            worst_clicks += u64::from(active.len() > 1 && epc <= worst_epc);
            best_clicks += usize::from(offer == best_offer);
            total_clicks += 1;
            let converts = rng.random_bool(spec.rate_at(hour).min(1.0));
            let arrives_at = converts.then(|| hour + delays[offer].sample(&mut rng).ceil() as usize);
            let recent_index = (strategy == RoutingStrategy::Ev).then(|| {
                recent[offer].push((hour, None));
                recent[offer].len() - 1
            });
            if let Some(arrives_at) = arrives_at {
                pending.push(Reverse(PendingFtd { arrives_at, offer, clicked_at: hour, recent_index }));
            }
        }
        if let Some(at) = scenario.change_hour
            && hour >= at
            && hours_to_shift.is_none()
            && best_clicks * 2 > per_hour
        {
            hours_to_shift = Some((hour - at) as f64);
        }
    }
    let after = if scenario.change_hour.is_some() { revenue_after / oracle_after } else { revenue / oracle };
    RunResult {
        revenue_share: revenue / oracle,
        revenue_share_after_change: after,
        worst_offer_share: worst_clicks as f64 / total_clicks as f64,
        hours_to_shift,
    }
}

fn build_table(active: &[usize], weights: &[f64], exploration: f64) -> RoutingTable {
    let redirect = RedirectTemplate::parse("https://offer.example/").expect("valid URL");
    let inputs = active
        .iter()
        .zip(weights)
        .map(|(&offer, &weight)| RouteInput {
            offer_id: offer as i64,
            weight,
            redirect: redirect.clone(),
            clicks: Arc::default(),
            rules: OfferRules::default(),
            caps: DailyCaps::default(),
            today: Arc::default(),
        })
        .collect();
    RoutingTable::build(inputs, &crate::routing::Segmentation::default(), |_, members: &[usize]| {
        pick_probabilities(members.iter().map(|&i| weights[i]), exploration)
    })
}

/// The original formula on each offer's last 1,000 clicks (FTDs that have arrived, their payouts).
fn ev_weights(active: &[usize], recent: &[Vec<(usize, Option<usize>)>], offers: &[OfferSpec], hour: usize) -> Vec<f64> {
    let windows: Vec<OfferWindow> = active
        .iter()
        .map(|&i| {
            let window = &recent[i][recent[i].len().saturating_sub(1_000)..];
            let ftds = window.iter().filter(|(_, arrival)| arrival.is_some_and(|a| a <= hour)).count() as u64;
            OfferWindow { offer_id: i as i64, clicks: window.len() as u64, ftds, revenue: ftds as f64 * offers[i].cpa }
        })
        .collect();
    let policy = WeightPolicy { min_weight: 0.1, min_clicks: 100 };
    policy.weigh(&windows).iter().map(|w| w.weight).collect()
}

/// Thompson probabilities from the hourly rollups as the router's store would give them.
fn thompson_weights(
    active: &[usize],
    clicks: &[Vec<u64>],
    ftds: &[Vec<u64>],
    arrived: &[(usize, usize, usize)],
    offers: &[OfferSpec],
    hour: usize,
    seed: u64,
) -> Vec<f64> {
    // Index by age: age 0 is the hour that just ended.
    let by_age = |series: &[u64]| -> Vec<u64> {
        (0..HORIZON_HOURS).map(|age| if age < hour { series[hour - 1 - age] } else { 0 }).collect()
    };
    let mut delays = vec![std::collections::HashMap::<(usize, usize), u64>::new(); offers.len()];
    for &(offer, clicked_at, arrives_at) in arrived {
        if clicked_at < hour && hour - 1 - clicked_at < HORIZON_HOURS {
            let age = hour - 1 - clicked_at;
            *delays[offer].entry((age, (arrives_at - clicked_at).saturating_sub(1).min(age))).or_default() += 1;
        }
    }
    let histories: Vec<OfferHistory> = active
        .iter()
        .map(|&i| {
            let ftds_by_age = by_age(&ftds[i]);
            let known: u64 = ftds_by_age.iter().sum();
            OfferHistory {
                offer_id: i as i64,
                clicks: by_age(&clicks[i]),
                ftds: ftds_by_age,
                payout_sum: known as f64 * offers[i].cpa,
                payout_sum_sq: known as f64 * offers[i].cpa * offers[i].cpa,
                payouts: known,
                delays: delays[i].iter().map(|(&(age, delay), &n)| (age, delay, n)).collect(),
            }
        })
        .collect();
    thompson::evaluate(&thompson::Evidence::offers(&histories), DRAWS, seed ^ hour as u64).probability_best
}

/// Summary over seeds.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// Mean revenue share and the half-width of its 95% interval.
    pub revenue: (f64, f64),
    /// The same after the change.
    pub revenue_after_change: (f64, f64),
    /// Mean share of clicks to the worst offer and the half-width of its 95% interval.
    pub worst_offer_share: (f64, f64),
    /// Median hours to shift traffic after the change (runs that never shifted count as the rest of
    /// the month).
    pub median_hours_to_shift: Option<f64>,
}

/// Runs `seeds` seeds (in parallel on the machine's cores) and summarises them.
pub fn summarize(scenario: &Scenario, strategy: RoutingStrategy, seeds: u64) -> Summary {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    let results: Vec<RunResult> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                scope.spawn(move || {
                    (0..seeds).filter(|s| s % threads == t).map(|s| run(scenario, strategy, s + 1)).collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().expect("simulation thread")).collect()
    });
    let interval = |values: Vec<f64>| {
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n;
        let sd = (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0)).sqrt();
        (mean, 1.96 * sd / n.sqrt())
    };
    let median_hours_to_shift = scenario.change_hour.map(|at| {
        let mut hours: Vec<f64> = results.iter().map(|r| r.hours_to_shift.unwrap_or((DAYS * 24 - at) as f64)).collect();
        hours.sort_unstable_by(f64::total_cmp);
        hours[hours.len() / 2]
    });
    Summary {
        revenue: interval(results.iter().map(|r| r.revenue_share).collect()),
        revenue_after_change: interval(results.iter().map(|r| r.revenue_share_after_change).collect()),
        worst_offer_share: interval(results.iter().map(|r| r.worst_offer_share).collect()),
        median_hours_to_shift,
    }
}

/// The report `casino-router simulate` prints: one Markdown row per scenario and strategy.
pub fn report(seeds: u64, only: Option<&str>, mut progress: impl FnMut(&str)) -> String {
    let mut out = String::from(
        "| scenario | strategy | revenue, % of oracle | after the change | clicks to the worst offer | hours to shift (median) |\n\
         | --- | --- | --- | --- | --- | --- |\n",
    );
    for scenario in scenarios().iter().filter(|s| only.is_none_or(|name| name == s.name)) {
        for strategy in [RoutingStrategy::Thompson, RoutingStrategy::Ev] {
            progress(&format!("{} / {}", scenario.name, strategy.name()));
            let summary = summarize(scenario, strategy, seeds);
            let percent = |(mean, half): (f64, f64)| format!("{:.1} ± {:.1}", 100.0 * mean, 100.0 * half);
            let after = if scenario.change_hour.is_some() { percent(summary.revenue_after_change) } else { "-".into() };
            let shift = summary.median_hours_to_shift.map_or("-".into(), |h| format!("{h:.0}"));
            let (worst, worst_half) = summary.worst_offer_share;
            out.push_str(&format!(
                "| {} | {} | {} | {} | {:.2} ± {:.2}% | {} |\n",
                scenario.name,
                strategy.name(),
                percent(summary.revenue),
                after,
                100.0 * worst,
                100.0 * worst_half,
                shift
            ));
        }
    }
    out
}

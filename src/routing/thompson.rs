//! Thompson sampling on earnings per click (EPC), with delay-aware conversion counting and change
//! detection. Pure code: the router feeds it per-offer hourly rollups from the store, the simulator
//! feeds it synthetic ones, and both get the same routing probabilities.
//!
//! The model, per offer:
//! - **FTD rate** `r ~ Gamma(1 + ftds, 1/m + exposure)`: a Gamma-Poisson posterior whose prior is
//!   worth one FTD at the pooled rate `m` of all offers. `exposure` is not the click count: each click
//!   counts as the probability `F(age)` that its FTD, if it converts, would have arrived by now, so a
//!   click from a minute ago is not a failure.
//! - **Delay** `F` is estimated per offer from its own FTDs, by delay hour, shrunk toward a vague
//!   long-tailed prior worth [`DELAY_PRIOR_FTDS`] FTDs at each delay. Per offer, not pooled: in the
//!   simulator, delays pooled over offers made an offer whose platform reports after days look like
//!   a failing one, and it was starved. The data are right truncated (a click of age `a` can only
//!   show delays up to `a`), so `F` is the Lynden-Bell estimator: the reverse hazard at delay `d` is
//!   the share of FTDs observable at `d` (delay <= d <= age) whose delay is exactly `d`, and `F(d)`
//!   is the product of `(1 - hazard)` above `d`.
//! - **Mean payout** `mu ~ Normal(mean_n, sd / sqrt(n + 1))`, shrunk toward the pooled mean by one
//!   pseudo-observation.
//! - **Change**: the offer's recent FTDs are compared with its older ones, on several window lengths,
//!   by a conditional binomial test given the exposures; when the most significant window passes
//!   [`CHANGE_Z`], the data older than that window is forgotten.
//!
//! Routing probabilities are each offer's probability of having the highest `EPC = r * mu` under the
//! posterior, estimated by Monte Carlo with a fixed seed (so instances with the same data agree).

use rand::SeedableRng;
use rand::rngs::SmallRng;
use rand_distr::{Distribution, Gamma, Normal};

/// Hours of history the engine looks at (30 days).
pub const HORIZON_HOURS: usize = 30 * 24;
/// Windows, in hours, on which a change is tested: dense, so that a change is still found when the
/// changed offer has had little traffic since (its recent windows would hold no evidence).
pub const CHANGE_WINDOWS: [usize; 14] = [6, 12, 24, 36, 48, 72, 96, 120, 144, 168, 216, 264, 336, 432];
/// |z| a change must pass. A high bar (about one false alarm in 150,000 tests), for many windows.
pub const CHANGE_Z: f64 = 4.5;
/// FTDs (recent and older) a change test needs.
const CHANGE_MIN_FTDS: u64 = 12;
/// Scale of the vague delay: `F(d) = ln(1 + d/s) / ln(1 + horizon/s)` (F(1 day) = 0.2, F(4 days) = 0.47).
const VAGUE_DELAY_SCALE_HOURS: f64 = 24.0;
/// Weight of the vague delay distribution in each offer's own, in FTDs.
const DELAY_PRIOR_FTDS: f64 = 20.0;

/// What the engine knows of one offer, by click age in whole hours (`[0]` = the last hour's clicks).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct OfferHistory {
    /// The offer's id.
    pub offer_id: i64,
    /// `clicks[a]`: clicks aged `a` hours, for `a < HORIZON_HOURS`.
    pub clicks: Vec<u64>,
    /// `ftds[a]`: FTDs (not rejected) that have arrived for clicks aged `a` hours.
    pub ftds: Vec<u64>,
    /// Sum of the FTD payouts known.
    pub payout_sum: f64,
    /// Sum of their squares (for the spread).
    pub payout_sum_sq: f64,
    /// How many FTDs have a payout.
    pub payouts: u64,
    /// The offer's arrived FTDs by `(click age in hours, delay in hours, FTDs)`.
    pub delays: Vec<(usize, usize, u64)>,
}

/// FTD delays: `(click age in hours, delay in hours, FTDs)`.
pub type DelayCounts = [(usize, usize, u64)];

/// `F(d)`: the probability that an FTD arrives within `d` hours of its click, for whole hours.
#[derive(Debug, Clone, PartialEq)]
pub struct DelayModel {
    /// Reverse hazard by delay hour: P(delay = d | delay <= d).
    hazard: Vec<f64>,
    cdf: Vec<f64>,
}

impl DelayModel {
    /// One offer's estimate from its `delays`, shrunk toward `prior` by [`DELAY_PRIOR_FTDS`]
    /// pseudo-FTDs at every delay.
    pub fn estimate(delays: &DelayCounts, prior: &DelayModel) -> DelayModel {
        DelayModel::lynden_bell(delays, prior)
    }

    fn lynden_bell(delays: &DelayCounts, prior: &DelayModel) -> DelayModel {
        let h = HORIZON_HOURS;
        let mut at_delay = vec![0u64; h];
        // The risk set at d is the FTDs with delay <= d <= age: +n from d = delay, -n after d = age.
        let mut changes = vec![0i64; h + 1];
        for &(age, delay, n) in delays {
            if delay >= h || age >= h || delay > age {
                continue;
            }
            at_delay[delay] += n;
            changes[delay] += n as i64;
            changes[age + 1] -= n as i64;
        }
        let mut hazard = vec![0.0; h];
        let mut risk = 0i64;
        for d in 0..h {
            risk += changes[d];
            let (n, r) = (at_delay[d] as f64, risk.max(0) as f64);
            hazard[d] = (n + DELAY_PRIOR_FTDS * prior.hazard[d]) / (r + DELAY_PRIOR_FTDS);
        }
        DelayModel::from_hazard(hazard)
    }

    fn from_hazard(hazard: Vec<f64>) -> DelayModel {
        let mut cdf = vec![1.0; hazard.len()];
        let mut product = 1.0;
        for d in (0..hazard.len()).rev() {
            cdf[d] = product;
            product *= 1.0 - hazard[d];
        }
        DelayModel { hazard, cdf }
    }

    /// A vague delay with a long tail (median about 4 days), the prior of every offer's own delay
    /// estimate: an offer's silence counts as failure only once its clicks are old enough for even a
    /// slow platform to have reported.
    pub fn vague() -> DelayModel {
        let top = (1.0 + HORIZON_HOURS as f64 / VAGUE_DELAY_SCALE_HOURS).ln();
        let cdf = |d: usize| (1.0 + (d + 1) as f64 / VAGUE_DELAY_SCALE_HOURS).ln() / top;
        let hazard = (0..HORIZON_HOURS)
            .map(|d| {
                let below = if d == 0 { 0.0 } else { cdf(d - 1) };
                (cdf(d) - below) / cdf(d)
            })
            .collect();
        DelayModel::from_hazard(hazard)
    }

    /// Probability that the FTD of a click aged `age` hours (if it converts) has arrived.
    pub fn arrived_by(&self, age: usize) -> f64 {
        self.cdf.get(age).copied().unwrap_or(1.0)
    }
}

/// One offer's posterior, for routing and for `/admin/stats`.
#[derive(Debug, Clone, PartialEq)]
pub struct OfferPosterior {
    /// The offer's id.
    pub offer_id: i64,
    /// Shape and rate of the FTD-rate Gamma.
    pub rate_shape: f64,
    /// See `rate_shape`.
    pub rate_rate: f64,
    /// Mean and spread of the mean payout.
    pub payout_mean: f64,
    /// See `payout_mean`.
    pub payout_sd: f64,
    /// Hours of history used (shorter than the horizon after a detected change).
    pub window_hours: usize,
    /// Effective clicks: each click weighted by the probability its FTD would have arrived.
    pub exposure: f64,
    /// FTDs in the window.
    pub ftds: u64,
    /// Clicks in the window.
    pub clicks: u64,
}

impl OfferPosterior {
    /// Posterior mean FTD rate.
    pub fn mean_rate(&self) -> f64 {
        self.rate_shape / self.rate_rate
    }

    /// Posterior mean EPC.
    pub fn mean_epc(&self) -> f64 {
        self.mean_rate() * self.payout_mean
    }
}

/// The engine's answer: posteriors, and each offer's probability of having the highest EPC.
#[derive(Debug, Clone, PartialEq)]
pub struct ThompsonResult {
    /// Per offer, in input order.
    pub posteriors: Vec<OfferPosterior>,
    /// Probability of being best, in input order; sums to 1.
    pub probability_best: Vec<f64>,
    /// 5th and 95th percentiles of each offer's EPC, in input order.
    pub epc_interval: Vec<(f64, f64)>,
}

/// Computes posteriors and routing probabilities with `draws` Monte Carlo draws.
pub fn evaluate(offers: &[OfferHistory], draws: usize, seed: u64) -> ThompsonResult {
    let prior = DelayModel::vague();
    let exposures: Vec<Vec<f64>> = offers
        .iter()
        .map(|offer| {
            let delay = DelayModel::estimate(&offer.delays, &prior);
            offer.clicks.iter().enumerate().map(|(age, &n)| n as f64 * delay.arrived_by(age)).collect()
        })
        .collect();
    let total_ftds: u64 = offers.iter().flat_map(|o| &o.ftds).sum();
    let total_exposure: f64 = exposures.iter().flatten().sum();
    let pooled_rate = if total_ftds > 0 && total_exposure > 0.0 { total_ftds as f64 / total_exposure } else { 0.02 };
    let pooled_payouts: u64 = offers.iter().map(|o| o.payouts).sum();
    let pooled_mean = if pooled_payouts > 0 {
        offers.iter().map(|o| o.payout_sum).sum::<f64>() / pooled_payouts as f64
    } else {
        100.0
    };
    let pooled_var = if pooled_payouts > 1 {
        let sq: f64 = offers.iter().map(|o| o.payout_sum_sq).sum();
        (sq / pooled_payouts as f64 - pooled_mean * pooled_mean).max(0.0)
    } else {
        0.0
    }
    .max((0.05 * pooled_mean).powi(2));

    let posteriors: Vec<OfferPosterior> = offers
        .iter()
        .zip(&exposures)
        .map(|(offer, exposure)| {
            let window = change_window(&offer.ftds, exposure);
            let ftds: u64 = offer.ftds.iter().take(window).sum();
            let clicks: u64 = offer.clicks.iter().take(window).sum();
            let exposure: f64 = exposure.iter().take(window).sum();
            let n = offer.payouts as f64;
            let mean = (pooled_mean + offer.payout_sum) / (1.0 + n);
            OfferPosterior {
                offer_id: offer.offer_id,
                rate_shape: 1.0 + ftds as f64,
                rate_rate: 1.0 / pooled_rate + exposure,
                payout_mean: mean,
                payout_sd: (pooled_var / (1.0 + n)).sqrt(),
                window_hours: window,
                exposure,
                ftds,
                clicks,
            }
        })
        .collect();
    let (probability_best, epc_interval) = monte_carlo(&posteriors, draws, seed);
    ThompsonResult { posteriors, probability_best, epc_interval }
}

/// Hours of an offer's history to use: all of it, or the most significant recent window whose FTD
/// rate differs from the older data's.
pub fn change_window(ftds: &[u64], exposure: &[f64]) -> usize {
    let mut best: Option<(f64, usize)> = None;
    for window in CHANGE_WINDOWS {
        if window >= exposure.len() {
            break;
        }
        let (recent_ftds, older_ftds) = (ftds[..window].iter().sum::<u64>(), ftds[window..].iter().sum::<u64>());
        let (recent_exp, older_exp) = (exposure[..window].iter().sum::<f64>(), exposure[window..].iter().sum::<f64>());
        let n = recent_ftds + older_ftds;
        if n < CHANGE_MIN_FTDS || recent_exp <= 0.0 || older_exp <= 0.0 {
            continue;
        }
        // Given n FTDs in all, the recent ones are Binomial(n, p) if the rate did not change.
        let p = recent_exp / (recent_exp + older_exp);
        let z = (recent_ftds as f64 - n as f64 * p) / (n as f64 * p * (1.0 - p)).sqrt();
        if z.abs() > CHANGE_Z && best.is_none_or(|(best_z, _)| z.abs() > best_z) {
            best = Some((z.abs(), window));
        }
    }
    // The most significant window may straddle the change (the grid is coarse): keep the next shorter
    // one, which holds only data from after it.
    best.map_or(ftds.len().min(exposure.len()), |(_, window)| {
        CHANGE_WINDOWS.iter().rev().find(|&&shorter| shorter < window).copied().unwrap_or(window)
    })
}

fn monte_carlo(posteriors: &[OfferPosterior], draws: usize, seed: u64) -> (Vec<f64>, Vec<(f64, f64)>) {
    let k = posteriors.len();
    if k == 0 {
        return (Vec::new(), Vec::new());
    }
    let mut rng = SmallRng::seed_from_u64(seed);
    let samplers: Vec<(Gamma<f64>, Normal<f64>)> = posteriors
        .iter()
        .map(|p| {
            let rate = Gamma::new(p.rate_shape, 1.0 / p.rate_rate).expect("positive shape and scale");
            let payout = Normal::new(p.payout_mean, p.payout_sd).expect("finite spread");
            (rate, payout)
        })
        .collect();
    let draws = draws.max(1);
    let mut wins = vec![0u64; k];
    let mut samples = vec![Vec::with_capacity(draws); k];
    for _ in 0..draws {
        let mut best = (f64::NEG_INFINITY, 0);
        for (index, (rate, payout)) in samplers.iter().enumerate() {
            let epc = rate.sample(&mut rng) * payout.sample(&mut rng).max(0.0);
            samples[index].push(epc);
            if epc > best.0 {
                best = (epc, index);
            }
        }
        wins[best.1] += 1;
    }
    let probabilities = wins.iter().map(|&w| w as f64 / draws as f64).collect();
    let intervals = samples
        .into_iter()
        .map(|mut s| {
            // Two selections, not a sort: O(draws) per offer.
            let mut at = |q: f64| {
                let index = ((s.len() - 1) as f64 * q).round() as usize;
                *s.select_nth_unstable_by(index, f64::total_cmp).1
            };
            (at(0.05), at(0.95))
        })
        .collect();
    (probabilities, intervals)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_distr::{Exp, Poisson};

    /// An exponential delay with `mean_hours`, truncated at the horizon: the truth of the tests.
    fn exponential(mean_hours: f64) -> DelayModel {
        let cdf = |d: usize| 1.0 - (-(d as f64 + 1.0) / mean_hours).exp();
        let top = cdf(HORIZON_HOURS - 1);
        let hazard = (0..HORIZON_HOURS)
            .map(|d| {
                let below = if d == 0 { 0.0 } else { cdf(d - 1) / top };
                let at = cdf(d) / top;
                (at - below) / at
            })
            .collect();
        DelayModel::from_hazard(hazard)
    }

    /// Synthetic history: `per_hour` clicks an hour for the whole horizon, FTD rate `rate(age)`,
    /// delays exponential with `delay_mean` hours; only FTDs that have arrived are counted.
    fn history(
        offer_id: i64,
        per_hour: u64,
        rate: impl Fn(usize) -> f64,
        delay_mean: f64,
        seed: u64,
    ) -> (OfferHistory, Vec<(usize, usize, u64)>) {
        let mut rng = SmallRng::seed_from_u64(seed);
        let delay = Exp::new(1.0 / delay_mean).unwrap();
        let mut offer = OfferHistory {
            offer_id,
            clicks: vec![per_hour; HORIZON_HOURS],
            ftds: vec![0; HORIZON_HOURS],
            ..Default::default()
        };
        let mut delays = Vec::new();
        for age in 0..HORIZON_HOURS {
            let converted = Poisson::new(per_hour as f64 * rate(age)).unwrap().sample(&mut rng) as u64;
            for _ in 0..converted {
                let d = delay.sample(&mut rng) as usize;
                if d <= age {
                    offer.delays.push((age, d, 1));
                    offer.ftds[age] += 1;
                    offer.payout_sum += 100.0;
                    offer.payout_sum_sq += 100.0 * 100.0;
                    offer.payouts += 1;
                    delays.push((age, d, 1));
                }
            }
        }
        (offer, delays)
    }

    #[test]
    fn the_delay_estimate_recovers_a_known_distribution_despite_truncation() {
        let mut delays = Vec::new();
        for seed in 0..4 {
            delays.extend(history(seed as i64, 40, |_| 0.04, 48.0, seed).1);
        }
        let estimated = DelayModel::estimate(&delays, &DelayModel::vague());
        let truth = exponential(48.0);
        for d in [6, 24, 48, 96, 200] {
            let (e, t) = (estimated.arrived_by(d), truth.arrived_by(d));
            assert!((e - t).abs() < 0.05, "F({d}) estimated {e:.3}, true {t:.3}");
        }
        // Naive counting (observed delays only) would be biased toward short delays: the estimate is not.
        let naive_median = {
            let mut all: Vec<usize> = delays.iter().map(|&(_, d, _)| d).collect();
            all.sort_unstable();
            all[all.len() / 2]
        };
        assert!(naive_median < 33, "the truncated sample's median is short ({naive_median} h)");
    }

    #[test]
    fn without_ftds_an_offer_gets_the_vague_delay() {
        let vague = DelayModel::vague();
        let estimated = DelayModel::estimate(&[], &vague);
        for d in [0, 5, 24, 200, HORIZON_HOURS - 1] {
            assert!((estimated.arrived_by(d) - vague.arrived_by(d)).abs() < 1e-9, "F({d})");
        }
        assert!(vague.arrived_by(24) < 0.25 && vague.arrived_by(96) < 0.5, "a long tail: slow platforms exist");
    }

    #[test]
    fn young_clicks_are_not_counted_as_failures() {
        // An offer whose every click is from the last hour, with slow postbacks: no FTD yet, and its
        // posterior mean rate stays near the pooled rate instead of collapsing to zero.
        let (old, delays) = history(1, 30, |_| 0.04, 48.0, 9);
        let mut young = OfferHistory {
            offer_id: 2,
            clicks: vec![0; HORIZON_HOURS],
            ftds: vec![0; HORIZON_HOURS],
            ..Default::default()
        };
        young.clicks[0] = 2_000;
        assert!(!delays.is_empty());
        let result = evaluate(&[old, young], 2_000, 1);
        let young_rate = result.posteriors[1].mean_rate();
        let naive_rate = 1.0 / (1.0 / 0.04 + 2_000.0); // the same prior, every click a failure
        assert!(young_rate > 0.01 && young_rate > 20.0 * naive_rate, "posterior mean rate {young_rate}");
        assert!(result.posteriors[1].exposure < 50.0, "2000 young clicks weigh {}", result.posteriors[1].exposure);
    }

    #[test]
    fn the_posterior_matches_the_data_and_prefers_the_better_offer() {
        let (good, _) = history(1, 30, |_| 0.05, 24.0, 1);
        let (poor, _) = history(2, 30, |_| 0.02, 24.0, 2);
        let result = evaluate(&[good, poor], 4_000, 7);
        let rate = |i: usize| result.posteriors[i].mean_rate();
        assert!((rate(0) - 0.05).abs() < 0.005, "good offer rate {}", rate(0));
        assert!((rate(1) - 0.02).abs() < 0.004, "poor offer rate {}", rate(1));
        assert!(result.probability_best[0] > 0.99, "{:?}", result.probability_best);
        assert!((result.probability_best.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        let (low, high) = result.epc_interval[0];
        assert!(low < result.posteriors[0].mean_epc() && result.posteriors[0].mean_epc() < high);
    }

    #[test]
    fn an_offer_whose_platform_reports_late_is_judged_by_its_own_delays() {
        // Same FTD rate; the fast offer has ten times the traffic: delays pooled over both offers
        // would be the fast offer's, and the slow one's young clicks would count as failures.
        let (fast, _) = history(1, 300, |_| 0.04, 4.0, 11);
        let (slow, _) = history(2, 30, |_| 0.04, 96.0, 12);
        let result = evaluate(&[fast, slow], 1_000, 3);
        let rate = |i: usize| result.posteriors[i].mean_rate();
        assert!((rate(0) - 0.04).abs() < 0.004, "fast offer rate {}", rate(0));
        assert!((rate(1) - 0.04).abs() < 0.008, "slow offer rate {}", rate(1));
    }

    #[test]
    fn the_change_detector_fires_on_a_halving_and_not_on_noise() {
        let delay = exponential(24.0);
        let exposure = |offer: &OfferHistory| -> Vec<f64> {
            offer.clicks.iter().enumerate().map(|(a, &n)| n as f64 * delay.arrived_by(a)).collect()
        };
        // Halved 48 hours ago, on an offer with 400 clicks an hour (about 380 FTDs a day before).
        for seed in 0..10 {
            let (halved, _) = history(1, 400, |age| if age < 48 { 0.02 } else { 0.04 }, 24.0, 100 + seed);
            let window = change_window(&halved.ftds, &exposure(&halved));
            assert!(window <= 72, "seed {seed}: a halving 48 h ago kept {window} h of history");
        }
        // Stationary: the whole horizon is kept.
        let mut alarms = 0;
        for seed in 0..50 {
            let (steady, _) = history(1, 400, |_| 0.04, 24.0, 200 + seed);
            alarms += usize::from(change_window(&steady.ftds, &exposure(&steady)) < HORIZON_HOURS);
        }
        assert_eq!(alarms, 0, "false alarms on stationary data");
    }
}

//! Thompson sampling on earnings per click (EPC), with delay-aware conversion counting and change
//! detection. Pure code: the router feeds it per-offer hourly rollups from the store, the simulator
//! feeds it synthetic ones, and both get the same routing probabilities.
//!
//! The model, per offer:
//! - **Delay** from click to FTD postback, per offer, in two layers. The data are right truncated (a
//!   click aged `a` hours can only show delays up to `a`), and both layers say so.
//!   - A parametric fit says how much is still to come: [`DELAY_SHAPES`] shapes (log-normal and
//!     exponential, medians from an hour to five days, each with a small uniform tail so that one
//!     odd postback cannot rule a shape out; none leaving more than [`DELAY_BEYOND_HORIZON_MAX`] of
//!     its FTDs beyond the horizon), weighed by Bayes' rule on the offer's FTDs, from a prior learned
//!     from the other offers (see [`ShapeVotes::log_prior_without`]). An FTD
//!     seen at delay `d` weighs `f(d)`; the clicks weigh by how many FTDs the shape says should have
//!     arrived, with the rate integrated out. So an offer whose FTDs all arrive within two hours is
//!     fast and its silent week-old clicks are failures, while an offer with no FTD yet might be
//!     slow and its young clicks are not.
//!   - The Lynden-Bell estimator follows the data where they exist: the reverse hazard at delay `d`
//!     is the share of FTDs observable at `d` (delay <= d <= age) whose delay is exactly `d`, shrunk
//!     toward the parametric fit's by [`DELAY_PRIOR_FTDS`] pseudo-FTDs. Beyond the oldest click, and
//!     for an offer with few FTDs, it is the parametric fit.
//!
//!   Each click then counts as the probability `F(age)` that its FTD, if it converts, would have
//!   arrived by now: a click from a minute ago is not a failure. Per offer, not pooled: in the
//!   simulator, delays pooled over offers made an offer whose platform reports after days look like
//!   a failing one.
//! - **FTD rate** `r ~ Gamma(1 + ftds, 1/m + exposure)`: a Gamma-Poisson posterior whose prior is
//!   worth one FTD at the rate `m` that would give the offer the pooled EPC of all offers (the pooled
//!   rate times the pooled mean payout, over the offer's mean payout); `exposure` is the sum of the
//!   clicks' `F(age)`. A priori every offer is worth the average click, whatever it pays per FTD:
//!   offers that pay more per FTD convert less, and a prior at the pooled rate would make a
//!   high-payout offer look best until its silence said otherwise.
//! - **Mean payout** `mu ~ Normal(mean_n, sd / sqrt(n + 1))`, shrunk toward the pooled mean by one
//!   pseudo-observation, over the payouts since the last change of payout
//!   ([`payout_change_window`]): payouts are terms a casino changes at a stroke.
//! - **Change**: the offer's recent FTDs are compared with its older ones, on several window lengths,
//!   by a conditional binomial test given the exposures, segment by segment (traffic moving between
//!   segments that convert differently is no change); when the most significant window passes
//!   [`CHANGE_Z`], the data older than that window is forgotten.
//!
//! Routing probabilities are each offer's probability of having the highest `EPC = r * mu` under the
//! posterior (with the rate's spread narrowed around its mean, see [`POSTERIOR_SHARPNESS`]), estimated by Monte Carlo
//! with a fixed seed (so instances with the same data agree).

use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

use rand::SeedableRng;
use rand::rngs::SmallRng;
use rand_distr::{Distribution, Gamma, Normal};

use super::table::pick_probabilities;

/// Hours of history the engine looks at (30 days).
pub const HORIZON_HOURS: usize = 30 * 24;
/// Windows, in hours, on which a change is sought: dense, so that a change is still found when the
/// changed offer has had little traffic since (its recent windows would hold no evidence), and
/// densest in the first day, where a change must be found within hours.
pub const CHANGE_WINDOWS: [usize; 20] =
    [6, 9, 12, 15, 18, 21, 24, 30, 36, 48, 60, 72, 96, 120, 144, 168, 216, 264, 336, 432];
/// |z| a change must pass. A high bar (about one false alarm in 150,000 tests), for many windows.
pub const CHANGE_Z: f64 = 4.5;
/// FTDs (recent and older) a change test needs.
const CHANGE_MIN_FTDS: f64 = 12.0;
/// Recent FTDs a window must expect (if nothing changed) to be tested: below it the normal
/// approximation fails, and one early postback of a slow platform's young click passed the bar.
const CHANGE_MIN_EXPECTED: f64 = 5.0;
/// Median delays, in hours, of the delay shapes: an hour to five days, by factors of sqrt(2).
const DELAY_MEDIANS_HOURS: [f64; 15] =
    [1.0, 1.41, 2.0, 2.83, 4.0, 5.66, 8.0, 11.3, 16.0, 22.6, 32.0, 45.3, 64.0, 90.5, 128.0];
/// The families of delay shape, each at every median: log-normal of three spreads (a slow start, a
/// peak, a tail) and exponential (most likely at once).
const DELAY_FAMILIES: [Family; 4] = [
    Family::LogNormal { sigma: 0.5 },
    Family::LogNormal { sigma: 1.0 },
    Family::LogNormal { sigma: 1.5 },
    Family::Exponential,
];
/// Number of delay shapes: every family at every median, `shape = median * families + family`.
const DELAY_SHAPES: usize = DELAY_MEDIANS_HOURS.len() * DELAY_FAMILIES.len();
/// Share of an offer's prior over delay medians that follows the other offers' medians; the rest is
/// spread evenly over the grid, so that an offer slower or faster than the others is still found.
const DELAY_MEDIAN_POOLED_SHARE: f64 = 0.8;
/// How far an offer's median delay is presumed to lie from the other offers' (the standard
/// deviation of its log, in octaves) in the pooled part of its prior: platforms differ. Pooled at
/// the others' very medians, an offer whose platform is twice as slow as its one established peer
/// had its first day's rate read 38% low (the median over the unit test's 100 seeded histories), its
/// young clicks taken for more exposure than they were; at an octave, 16% low. An offer as fast as
/// its peer is read 3% high (1.4% low before; RESEARCH.md, session 18).
const DELAY_MEDIAN_SPREAD_OCTAVES: f64 = 1.0;
/// A delay prior under which every shape is equally likely (log weights, all zero).
const EVEN_SHAPE_PRIOR: [f64; DELAY_SHAPES] = [0.0; DELAY_SHAPES];
/// Share of every shape spread evenly over the horizon: the tail that keeps an odd postback from
/// ruling a shape out.
const DELAY_UNIFORM_SHARE: f64 = 0.01;
/// The Monte Carlo draws each FTD rate from its posterior with the variance divided by this (the
/// spread divided by about 2.4); in a segment, all but the part that is the spread between segments
/// (see [`segment_posteriors`]). Plain Thompson sampling explores more than pays over a month;
/// Chapelle and Li (2011, "An Empirical Evaluation of Thompson Sampling") report that reshaping the
/// posterior this way can lower regret in practice. In the simulator (20 seeds) a factor of 4 lifted
/// five scenarios of seven (30 stationary offers from 96.9% to 97.8% of the oracle, best-halves from
/// 96.4% to 96.9%). With the delay prior learned across offers, 6 rather than 4 took the clicks to
/// the worst offer from 0.61% to 0.50% in slow-postbacks and from 0.46% to 0.33% in stationary-3,
/// every revenue figure within its interval.
const POSTERIOR_SHARPNESS: f64 = 6.0;
/// Largest share of FTDs a delay shape may leave beyond the horizon. Platforms report FTDs within
/// hours to days, and the engine cannot count what arrives after its horizon anyway; without this
/// bound, a young offer's first few FTDs could be fitted by a very slow, wide shape (a median of four
/// days with 12% of FTDs after a month), which reads its silent clicks as still to come and
/// overstates its rate two to three times.
const DELAY_BEYOND_HORIZON_MAX: f64 = 0.05;
/// Weight of the parametric fit in each offer's Lynden-Bell delay estimate, in FTDs.
const DELAY_PRIOR_FTDS: f64 = 20.0;
/// What the spread of FTD rates between segments is taken to be before the data say (a squared
/// coefficient of variation: segments' rates typically within about 20% of their offer's) ...
const SEGMENT_SPREAD_PRIOR: f64 = 0.05;
/// ... and what that belief weighs against the data: as much as two segments whose rates are known
/// exactly.
const SEGMENT_SPREAD_PRIOR_WEIGHT: f64 = 2.0;
/// The spread's bounds: segments are never taken for identical, and a segment's prior is always
/// worth a fraction of an FTD at least.
const SEGMENT_SPREAD_RANGE: (f64, f64) = (0.002, 4.0);
/// At most this many rounds of estimating the spread and the pools it discounts (see [`OfferPool`]),
/// from the prior, until it changes by less than 0.1%.
const SEGMENT_SPREAD_ROUNDS: usize = 10;
/// Sweeps of fitting each trait's factors given the others' (see [`Margins::new`]).
const MARGIN_SWEEPS: usize = 3;
/// Payouts a segment's mean payout is pooled toward its offer's with.
const SEGMENT_PAYOUT_PRIOR: f64 = 10.0;
/// Payouts a change of payout needs on each side of it.
const PAYOUT_CHANGE_MIN: u64 = 5;
/// Least spread of payouts, relative to their mean, that the engine assumes: a fixed CPA has none,
/// and a change of a few percent is not worth forgetting the older payouts for.
const PAYOUT_MIN_SPREAD: f64 = 0.05;

/// What the engine knows of one offer, by click age in whole hours (`[0]` = the last hour's clicks).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct OfferHistory {
    /// The offer's id.
    pub offer_id: i64,
    /// `clicks[a]`: clicks of the hour that began `a` hours before the current one (`[0]`: the
    /// current hour, [`Evidence::hour_elapsed`] of it gone), for `a < HORIZON_HOURS`.
    pub clicks: Vec<u64>,
    /// `ftds[a]`: FTDs (not rejected) that have arrived for clicks aged `a` whole hours.
    pub ftds: Vec<u64>,
    /// `payouts[a]`: the payouts of those FTDs (empty: none known).
    pub payouts: Vec<Payouts>,
    /// The offer's arrived FTDs by `(click age in hours, delay in hours, FTDs)`.
    pub delays: Vec<(usize, usize, u64)>,
}

/// Payouts of FTDs: how many, their sum, and the sum of their squares (for the spread).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Payouts {
    pub count: u64,
    pub sum: f64,
    pub sum_sq: f64,
}

impl Payouts {
    /// One payout.
    pub fn of(amount: f64) -> Payouts {
        Payouts { count: 1, sum: amount, sum_sq: amount * amount }
    }

    /// These and `other` together.
    pub fn add(&mut self, other: Payouts) {
        self.count += other.count;
        self.sum += other.sum;
        self.sum_sq += other.sum_sq;
    }

    /// The payouts of `all` that are not these.
    fn without(self, all: Payouts) -> Payouts {
        Payouts { count: all.count - self.count, sum: all.sum - self.sum, sum_sq: all.sum_sq - self.sum_sq }
    }

    fn mean(&self) -> f64 {
        self.sum / self.count.max(1) as f64
    }

    /// Sum of squared deviations from the mean.
    fn squares(&self) -> f64 {
        (self.sum_sq - self.sum * self.mean()).max(0.0)
    }
}

impl std::iter::Sum for Payouts {
    fn sum<I: Iterator<Item = Payouts>>(payouts: I) -> Payouts {
        payouts.fold(Payouts::default(), |mut total, p| {
            total.add(p);
            total
        })
    }
}

/// FTD delays: `(click age in hours, delay in hours, FTDs)`.
type DelayCounts = [(usize, usize, u64)];

/// One delay shape on whole hours: `cdf[a]` is the probability that the FTD of a click aged `a`
/// hours has arrived, `log_pmf[d]` the log probability of a delay of `d` whole hours.
#[derive(Debug)]
struct DelayShape {
    cdf: Vec<f64>,
    log_pmf: Vec<f64>,
    /// Log prior weight: 0, or minus infinity for a shape that leaves more than
    /// [`DELAY_BEYOND_HORIZON_MAX`] of its FTDs beyond the horizon.
    log_prior: f64,
}

/// A family of delay distributions.
#[derive(Debug, Clone, Copy)]
enum Family {
    LogNormal { sigma: f64 },
    Exponential,
}

impl Family {
    /// `(P(delay < t), P(delay >= t))` for the member with `median` hours, each computed so that
    /// neither tail loses precision.
    fn below_above(self, median: f64, t: f64) -> (f64, f64) {
        match self {
            Family::LogNormal { sigma } => {
                let z = (t / median).ln() / (sigma * std::f64::consts::SQRT_2);
                (0.5 * erfc(-z), 0.5 * erfc(z))
            }
            Family::Exponential => {
                let x = std::f64::consts::LN_2 * t / median;
                (-(-x).exp_m1(), (-x).exp())
            }
        }
    }
}

impl DelayShape {
    fn new(family: Family, median_hours: f64) -> DelayShape {
        let h = HORIZON_HOURS;
        let below = |t: f64| family.below_above(median_hours, t).0;
        let above = |t: f64| family.below_above(median_hours, t).1;
        let uniform = |hours: f64| DELAY_UNIFORM_SHARE * hours / h as f64;
        let main = 1.0 - DELAY_UNIFORM_SHARE;
        let cdf = (0..h).map(|a| main * below((a + 1) as f64) + uniform((a + 1) as f64)).collect();
        let log_pmf = (0..h)
            .map(|d| {
                let (from, to) = (d as f64, (d + 1) as f64);
                let mass = if to <= median_hours { below(to) - below(from) } else { above(from) - above(to) };
                (main * mass + uniform(1.0)).ln()
            })
            .collect();
        let log_prior = if above(h as f64) <= DELAY_BEYOND_HORIZON_MAX { 0.0 } else { f64::NEG_INFINITY };
        DelayShape { cdf, log_pmf, log_prior }
    }

    /// Every shape, built once.
    fn all() -> &'static [DelayShape] {
        static SHAPES: OnceLock<Vec<DelayShape>> = OnceLock::new();
        SHAPES.get_or_init(|| {
            DELAY_MEDIANS_HOURS
                .iter()
                .flat_map(|&median| DELAY_FAMILIES.iter().map(move |&family| DelayShape::new(family, median)))
                .collect()
        })
    }
}

/// The complementary error function (Numerical Recipes' Chebyshev fit, relative error < 1.2e-7).
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98 + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let value = t * poly.exp();
    if x >= 0.0 { value } else { 2.0 - value }
}

/// Each click bucket's `F` at the mean age of its clicks, given a CDF on whole hours (`cdf[k]` =
/// `F(k + 1)`) and the share of the current hour elapsed. Bucket 0 is the current hour: its clicks are
/// `hour_elapsed / 2` hours old on average; bucket `a` is the hour that began `a` hours before it, its
/// clicks `a - 1/2 + hour_elapsed` hours old. Between whole hours `F` is linear, from `F(0) = 0`; past
/// the last, flat. Every bucket but the first lies the same fraction past a whole hour, so this is
/// one pass of multiply-adds.
fn mean_age_weights(cdf: &[f64], hour_elapsed: f64) -> Vec<f64> {
    let h = cdf.len();
    // F at whole hours 0..=h+1.
    let at_whole = |k: usize| if k == 0 { 0.0 } else { cdf[(k - 1).min(h - 1)] };
    let mut weights = Vec::with_capacity(h);
    weights.push(hour_elapsed / 2.0 * at_whole(1));
    let past = hour_elapsed + 0.5;
    let (shift, fraction) = (past.floor() as usize, past.fract());
    weights.extend((1..h).map(|age| {
        let whole = age - 1 + shift;
        (1.0 - fraction) * at_whole(whole) + fraction * at_whole(whole + 1)
    }));
    weights
}

/// Each delay shape's click-bucket weights ([`mean_age_weights`] along its CDF) for one share of the
/// current hour elapsed: the same for every offer, so computed once per evaluation. Stored by age
/// (`[age][shape]`), so that an offer's exposure under every shape is one pass over its click
/// buckets, each adding its clicks times a row: the shapes side by side in vector registers, and the
/// hours without clicks skipped.
#[derive(Debug)]
struct ShapeExposure(Vec<[f64; DELAY_SHAPES]>);

impl ShapeExposure {
    fn new(hour_elapsed: f64) -> ShapeExposure {
        let mut by_age = vec![[0.0; DELAY_SHAPES]; HORIZON_HOURS];
        for (shape, delay) in DelayShape::all().iter().enumerate() {
            for (row, weight) in by_age.iter_mut().zip(mean_age_weights(&delay.cdf, hour_elapsed)) {
                row[shape] = weight;
            }
        }
        ShapeExposure(by_age)
    }
}

/// Every shape's `log_pmf` by delay (`[delay][shape]`), built once: see [`ShapeExposure`] for why.
fn log_pmf_by_delay() -> &'static [[f64; DELAY_SHAPES]] {
    static BY_DELAY: OnceLock<Vec<[f64; DELAY_SHAPES]>> = OnceLock::new();
    BY_DELAY.get_or_init(|| {
        let shapes = DelayShape::all();
        (0..HORIZON_HOURS).map(|delay| std::array::from_fn(|shape| shapes[shape].log_pmf[delay])).collect()
    })
}

/// `total += n * row`, shape by shape.
fn add_row(total: &mut [f64; DELAY_SHAPES], n: f64, row: &[f64; DELAY_SHAPES]) {
    total.iter_mut().zip(row).for_each(|(total, x)| *total += n * x);
}

/// One offer's delay evidence, per shape: the log likelihood of its FTDs' delays, and its clicks'
/// exposure (each click weighted by the shape's `F(age)`).
#[derive(Debug, Clone, PartialEq)]
struct DelayEvidence {
    log_likelihood: [f64; DELAY_SHAPES],
    exposure: [f64; DELAY_SHAPES],
}

impl DelayEvidence {
    /// The evidence of `delays` (`(click age, delay, FTDs)`, whole hours) and `clicks` (by age), with
    /// each shape's click buckets weighed by `weights` (see [`ShapeExposure`]).
    fn new(delays: &DelayCounts, clicks: &[u64], weights: &ShapeExposure) -> DelayEvidence {
        // The likelihood depends on the delay alone: FTDs of one delay (at any age) are one row.
        let mut by_delay = vec![0u64; HORIZON_HOURS];
        for &(_, delay, n) in delays.iter().filter(|&&(age, delay, _)| delay <= age && age < HORIZON_HOURS) {
            by_delay[delay] += n;
        }
        let mut log_likelihood = [0.0; DELAY_SHAPES];
        for (&n, row) in by_delay.iter().zip(log_pmf_by_delay()).filter(|&(&n, _)| n > 0) {
            add_row(&mut log_likelihood, n as f64, row);
        }
        let mut exposure = [0.0; DELAY_SHAPES];
        for (&n, row) in clicks.iter().zip(&weights.0).filter(|&(&n, _)| n > 0) {
            add_row(&mut exposure, n as f64, row);
        }
        DelayEvidence { log_likelihood, exposure }
    }

    /// Posterior weights of the shapes given the delays and the offer's `ftds`, from the prior
    /// `log_prior` (see [`ShapeVotes::log_prior_without`]; [`EVEN_SHAPE_PRIOR`] for equal weights).
    /// With a `prior_rate`, the rate has a `Gamma(1, 1 / prior_rate)` prior and is integrated out;
    /// without, the weights are those of the delays given the FTD count. Either way a shape is penalised for predicting more FTDs by
    /// now than arrived: a fast shape fits a handful of short delays well, but not the silence of
    /// the clicks it says are done.
    fn shape_weights(
        &self,
        ftds: u64,
        prior_rate: Option<f64>,
        log_prior: &[f64; DELAY_SHAPES],
    ) -> [f64; DELAY_SHAPES] {
        let mut log_weight = self.log_likelihood;
        for (((weight, exposure), shape), prior) in
            log_weight.iter_mut().zip(self.exposure).zip(DelayShape::all()).zip(log_prior)
        {
            *weight += shape.log_prior + prior;
            *weight -= match prior_rate {
                Some(rate) => (1.0 + ftds as f64) * (1.0 / rate + exposure).ln(),
                None if ftds > 0 => ftds as f64 * exposure.max(f64::MIN_POSITIVE).ln(),
                None => 0.0,
            };
        }
        let top = log_weight.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let mut weights = log_weight.map(|w| (w - top).exp());
        let sum: f64 = weights.iter().sum();
        weights.iter_mut().for_each(|w| *w /= sum);
        weights
    }

    /// The offer's clicks weighted by the shapes mixed by `weights`.
    fn mixed_exposure(&self, weights: &[f64; DELAY_SHAPES]) -> f64 {
        weights.iter().zip(self.exposure).map(|(w, e)| w * e).sum()
    }
}

/// The offers' delay shapes as their own FTDs weigh them, summed with one vote per FTD: what each
/// offer's delay prior is learned from.
#[derive(Debug, Clone)]
struct ShapeVotes {
    families: [f64; DELAY_FAMILIES.len()],
    medians: [f64; DELAY_MEDIANS_HOURS.len()],
}

impl ShapeVotes {
    /// The votes of offers whose own shape weights are `shapes`, with `ftds` FTDs each.
    fn new(shapes: &[[f64; DELAY_SHAPES]], ftds: &[u64]) -> ShapeVotes {
        let mut votes = ShapeVotes { families: [0.0; DELAY_FAMILIES.len()], medians: [0.0; DELAY_MEDIANS_HOURS.len()] };
        for (weights, &n) in shapes.iter().zip(ftds) {
            votes.add(weights, n as f64);
        }
        votes
    }

    fn add(&mut self, weights: &[f64; DELAY_SHAPES], ftds: f64) {
        for (shape, w) in weights.iter().enumerate() {
            self.families[shape % DELAY_FAMILIES.len()] += ftds * w;
            self.medians[shape / DELAY_FAMILIES.len()] += ftds * w;
        }
    }

    /// The log prior of every shape for one offer (whose own weights and FTDs are `own` and
    /// `ftds`), from the other offers' votes: leave one out, so that an offer does not confirm
    /// itself.
    /// - The family (how spread the delays are) is the platforms': its prior is the Dirichlet(1, ..)
    ///   posterior predictive of the others' votes. A day-old offer's delays, cut off at its age, fit
    ///   its own median with a narrow shape about as well as a slower, wider one that leaves more
    ///   FTDs to come; with equal priors the wide shapes read its young clicks as a fifth less
    ///   exposure than they are, and its rate as that much higher.
    /// - The median is the offer's own: [`DELAY_MEDIAN_POOLED_SHARE`] of its prior follows the
    ///   others' medians, spread by [`DELAY_MEDIAN_SPREAD_OCTAVES`] (platforms differ), the rest is
    ///   even, so a slow platform among fast ones is still found.
    ///
    /// Without other offers' FTDs every shape is equally likely.
    fn log_prior_without(&self, own: &[f64; DELAY_SHAPES], ftds: u64) -> [f64; DELAY_SHAPES] {
        let mut others = self.clone();
        others.add(own, -(ftds as f64));
        // Each FTD votes 1 in all: below one, the others have none (and what is left is rounding).
        let total: f64 = others.families.iter().sum();
        if total < 0.5 {
            return EVEN_SHAPE_PRIOR;
        }
        let families = others.families.map(|v| ((1.0 + v.max(0.0)) / (DELAY_FAMILIES.len() as f64 + total)).ln());
        let even = (1.0 - DELAY_MEDIAN_POOLED_SHARE) / DELAY_MEDIANS_HOURS.len() as f64;
        let mut near_others = [0.0; DELAY_MEDIANS_HOURS.len()];
        for (votes, spread) in others.medians.iter().zip(median_kernel()) {
            near_others.iter_mut().zip(spread).for_each(|(near, share)| *near += votes.max(0.0) * share);
        }
        let medians = near_others.map(|v| (even + DELAY_MEDIAN_POOLED_SHARE * v / total).ln());
        std::array::from_fn(|shape| families[shape % DELAY_FAMILIES.len()] + medians[shape / DELAY_FAMILIES.len()])
    }
}

type MedianKernel = [[f64; DELAY_MEDIANS_HOURS.len()]; DELAY_MEDIANS_HOURS.len()];

/// `[i][j]`: the share of a vote for median `i` that goes to median `j` in the pooled part of an
/// offer's delay prior, a normal kernel of [`DELAY_MEDIAN_SPREAD_OCTAVES`] on the log2 medians (each
/// row sums to 1: a vote keeps its weight).
fn median_kernel() -> &'static MedianKernel {
    static KERNEL: OnceLock<MedianKernel> = OnceLock::new();
    KERNEL.get_or_init(|| {
        DELAY_MEDIANS_HOURS.map(|from| {
            let row =
                DELAY_MEDIANS_HOURS.map(|to| (-0.5 * ((to / from).log2() / DELAY_MEDIAN_SPREAD_OCTAVES).powi(2)).exp());
            let sum: f64 = row.iter().sum();
            row.map(|share| share / sum)
        })
    })
}

/// `F(age)`: the probability that the FTD of a click aged `age` whole hours, if it converts, has
/// arrived by now.
#[derive(Debug, Clone, PartialEq)]
struct DelayModel {
    cdf: Vec<f64>,
}

impl DelayModel {
    /// The shapes mixed by `weights`.
    fn parametric(weights: &[f64; DELAY_SHAPES]) -> DelayModel {
        let mut cdf = vec![0.0; HORIZON_HOURS];
        // Shape by shape, along each shape's contiguous CDF, and only the shapes the evidence leaves
        // a say: most of the weight sits on a few.
        for (&weight, shape) in weights.iter().zip(DelayShape::all()).filter(|&(&w, _)| w > 1e-12) {
            cdf.iter_mut().zip(&shape.cdf).for_each(|(total, f)| *total += weight * f);
        }
        DelayModel { cdf }
    }

    /// The Lynden-Bell estimate from `delays`, shrunk toward `prior` by [`DELAY_PRIOR_FTDS`]
    /// pseudo-FTDs at every delay.
    fn estimate(delays: &DelayCounts, prior: &DelayModel) -> DelayModel {
        let h = HORIZON_HOURS;
        let mut at_delay = vec![0u64; h];
        // The risk set at d is the FTDs with delay <= d <= age: +n from d = delay, -n after d = age.
        let mut changes = vec![0i64; h + 1];
        for &(age, delay, n) in delays.iter().filter(|&&(age, delay, _)| delay <= age && age < h) {
            at_delay[delay] += n;
            changes[delay] += n as i64;
            changes[age + 1] -= n as i64;
        }
        // Reverse hazard P(delay = d | delay <= d), and F(d) as the product of (1 - hazard) above d,
        // from the prior's F at the horizon (what arrives later is the prior's to say).
        let mut cdf = vec![0.0; h];
        let mut product = prior.cdf[h - 1];
        let mut risk: i64 = changes[..h].iter().sum();
        for d in (0..h).rev() {
            cdf[d] = product;
            let prior_hazard = if d == 0 { 1.0 } else { 1.0 - prior.cdf[d - 1] / prior.cdf[d] };
            let hazard =
                (at_delay[d] as f64 + DELAY_PRIOR_FTDS * prior_hazard) / (risk.max(0) as f64 + DELAY_PRIOR_FTDS);
            product *= 1.0 - hazard;
            risk -= changes[d];
        }
        DelayModel { cdf }
    }

    /// Probability that the FTD of a click aged `age` whole hours (if it converts) has arrived.
    #[cfg(test)]
    fn arrived_by(&self, age: usize) -> f64 {
        self.cdf.get(age).copied().unwrap_or(1.0)
    }

    /// Each click bucket's weight: the probability that the FTD of one of its clicks (if it converts)
    /// has arrived, at the bucket's mean age (see [`mean_age_weights`]).
    fn exposure_weights(&self, hour_elapsed: f64) -> Vec<f64> {
        mean_age_weights(&self.cdf, hour_elapsed)
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
    /// Shape and rate of the Gamma routing draws the FTD rate from: the posterior's mean, its spread
    /// narrowed by [`POSTERIOR_SHARPNESS`] but for the spread between segments (see
    /// [`segment_posteriors`]).
    pub draw_shape: f64,
    /// See `draw_shape`.
    pub draw_rate: f64,
    /// Mean and spread of the mean payout.
    pub payout_mean: f64,
    /// See `payout_mean`.
    pub payout_sd: f64,
    /// Hours of history used (shorter than the horizon after a detected change).
    pub window_hours: usize,
    /// Hours of payouts used (shorter than the horizon after a detected change of payout), and
    /// how many payouts there are in them.
    pub payout_window_hours: usize,
    /// See `payout_window_hours`.
    pub payouts: u64,
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

/// What the engine is given: every offer's history over all traffic and, for learning per segment,
/// each segment's part of it.
#[derive(Debug, Clone, Copy)]
pub struct Evidence<'a> {
    /// Per offer, over all traffic.
    pub offers: &'a [OfferHistory],
    /// Each segment's part of an offer's history: at most one entry per segment and offer, any order.
    pub segments: &'a [SegmentHistory],
    /// `segment_traits[s]`: what segment `s` is made of (see [`Traits`]); empty, or short of a
    /// segment, when the segments have no known structure.
    pub segment_traits: &'a [Traits],
    /// Share of the current hour (click bucket 0) elapsed, in `[0, 1]`: how old its clicks are.
    pub hour_elapsed: f64,
}

impl<'a> Evidence<'a> {
    /// Offer-level evidence only, taken as an hour ends.
    pub fn offers(offers: &'a [OfferHistory]) -> Evidence<'a> {
        Evidence { offers, segments: &[], segment_traits: &[], hour_elapsed: 1.0 }
    }
}

/// The traits a segment is made of (its visitors' country, their device class, the clicks' source),
/// each a number the caller assigns (one value, one number; `None` for a trait that does not make
/// segments). Segments that share a trait tell of each other: an offer that converts twice as well on
/// mobile in Germany likely does so in Austria too (see [`Margins`]).
pub type Traits = [Option<u32>; TRAITS];

/// The number of traits a segment can be made of.
pub const TRAITS: usize = 3;

/// One segment's part of one offer's history, sparse: most segments see an offer in few hours.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SegmentHistory {
    /// The segment (an index the caller gives meaning to).
    pub segment: usize,
    /// The offer's index in [`Evidence::offers`].
    pub offer: usize,
    /// `(click age, clicks)`, ages as in [`OfferHistory::clicks`].
    pub clicks: Vec<(usize, u64)>,
    /// `(click age, FTDs arrived)`.
    pub ftds: Vec<(usize, u64)>,
    /// `(click age, FTDs with a payout, the payouts' sum)`.
    pub payouts: Vec<(usize, u64, f64)>,
}

/// Every offer's posterior within one segment.
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentPosterior {
    /// The segment.
    pub segment: usize,
    /// Per offer, in input order (an offer the segment has not seen has the prior its other traffic
    /// gives it).
    pub offers: Vec<OfferPosterior>,
}

/// The engine's answer: posteriors, and each offer's probability of having the highest EPC, over all
/// traffic and per segment.
#[derive(Debug, Clone, PartialEq)]
pub struct ThompsonResult {
    /// Per offer, in input order.
    pub posteriors: Vec<OfferPosterior>,
    /// Probability of being best, in input order; sums to 1.
    pub probability_best: Vec<f64>,
    /// The routing draws behind `probability_best`: per draw, each offer's sampled EPC (draw-major),
    /// so that the probability of being best among any subset of the offers can be read off them.
    pub route_draws: Vec<f64>,
    /// Per segment with evidence, ascending by segment.
    pub segments: Vec<SegmentPosterior>,
    /// How far FTD rates differ between segments, as the pooling assumed it (the squared
    /// coefficient of variation of a segment's rate around its offer's, learned from the data).
    pub segment_spread: f64,
    /// Monte Carlo draws per segment, and the seed they derive theirs from.
    draws: usize,
    seed: u64,
}

impl ThompsonResult {
    /// The posterior of `segment`, if it has evidence.
    pub fn segment(&self, segment: usize) -> Option<&SegmentPosterior> {
        self.segments.binary_search_by_key(&segment, |s| s.segment).ok().map(|i| &self.segments[i])
    }

    /// 5th and 95th percentiles of each offer's EPC (its posterior as it is, not sharpened), in input
    /// order: drawn on request, for reports, so that a refresh does not pay for them.
    pub fn epc_intervals(&self) -> Vec<(f64, f64)> {
        let mut rng = SmallRng::seed_from_u64(self.seed ^ 0x5eed_1e7e_0f90_0005);
        self.posteriors
            .iter()
            .map(|posterior| {
                let rate =
                    Gamma::new(posterior.rate_shape, 1.0 / posterior.rate_rate).expect("positive shape and scale");
                let (_, payout) = routing_samplers(posterior);
                let mut samples: Vec<f64> =
                    (0..self.draws).map(|_| rate.sample(&mut rng) * payout.sample(&mut rng).max(0.0)).collect();
                // Two selections, not a sort: O(draws) per offer.
                let mut at = |q: f64| {
                    let index = ((samples.len() - 1) as f64 * q).round() as usize;
                    *samples.select_nth_unstable_by(index, f64::total_cmp).1
                };
                (at(0.05), at(0.95))
            })
            .collect()
    }

    /// The probability of each of `members` (indices in input order) being best among them alone for
    /// a visitor of `segment` (`None`, or a segment without evidence: over all traffic). Sums to 1.
    pub fn probability_best_among(&self, segment: Option<usize>, members: &[usize]) -> Vec<f64> {
        match segment.and_then(|s| self.segment(s)) {
            Some(posterior) => best_among(&self.segment_draws(posterior), self.posteriors.len(), members),
            None => best_among(&self.route_draws, self.posteriors.len(), members),
        }
    }

    /// [`probability_best_among`](Self::probability_best_among) for many sets: a segment's draws are
    /// made once and kept while the calls stay with that segment.
    pub fn probabilities(&self) -> impl FnMut(Option<usize>, &[usize]) -> Vec<f64> + '_ {
        let mut kept: Option<(usize, Vec<f64>)> = None;
        move |segment, members| {
            let k = self.posteriors.len();
            let Some(posterior) = segment.and_then(|s| self.segment(s)) else {
                return best_among(&self.route_draws, k, members);
            };
            let draws = match &mut kept {
                Some((segment, draws)) if *segment == posterior.segment => draws,
                slot => &slot.insert((posterior.segment, self.segment_draws(posterior))).1,
            };
            best_among(draws, k, members)
        }
    }

    /// The routing shares of many sets: each one's [`probabilities`](Self::probabilities) with
    /// `exploration` of the traffic spread evenly over its members (see
    /// [`THOMPSON_EXPLORATION_RATE`](crate::config::THOMPSON_EXPLORATION_RATE)).
    pub fn routing_shares(&self, exploration: f64) -> impl FnMut(Option<usize>, &[usize]) -> Vec<f64> + '_ {
        let mut probabilities = self.probabilities();
        move |segment, members| pick_probabilities(probabilities(segment, members).into_iter(), exploration)
    }

    /// A segment's routing draws (draw-major), seeded from the segment so that instances agree.
    fn segment_draws(&self, posterior: &SegmentPosterior) -> Vec<f64> {
        let seed = self.seed ^ (posterior.segment as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let mut rng = SmallRng::seed_from_u64(seed);
        let samplers: Vec<(Gamma<f64>, Normal<f64>)> = posterior.offers.iter().map(routing_samplers).collect();
        let mut draws = Vec::with_capacity(self.draws * samplers.len());
        for _ in 0..self.draws {
            for (rate, payout) in &samplers {
                draws.push(rate.sample(&mut rng) * payout.sample(&mut rng).max(0.0));
            }
        }
        draws
    }
}

/// Of `members`, the share of the draws (draw-major, `k` offers each) in which each is best.
fn best_among(draws: &[f64], k: usize, members: &[usize]) -> Vec<f64> {
    if k == 0 || members.is_empty() {
        return Vec::new();
    }
    let mut wins = vec![0u64; members.len()];
    let draws = draws.chunks_exact(k);
    let n_draws = draws.len().max(1);
    for draw in draws {
        let mut best = (f64::NEG_INFINITY, 0);
        for (slot, &index) in members.iter().enumerate() {
            if draw[index] > best.0 {
                best = (draw[index], slot);
            }
        }
        wins[best.1] += 1;
    }
    wins.iter().map(|&w| w as f64 / n_draws as f64).collect()
}

/// The samplers routing draws from: the FTD rate's sharpened posterior (`draw_shape`, `draw_rate`)
/// and the mean payout's.
fn routing_samplers(posterior: &OfferPosterior) -> (Gamma<f64>, Normal<f64>) {
    let rate = Gamma::new(posterior.draw_shape, 1.0 / posterior.draw_rate).expect("positive shape and scale");
    (rate, Normal::new(posterior.payout_mean, posterior.payout_sd).expect("finite spread"))
}

/// Computes posteriors (over all traffic and per segment) and the offer-level routing probabilities
/// with `draws` Monte Carlo draws; segments' probabilities are drawn on request, with as many.
pub fn evaluate(evidence: &Evidence<'_>, draws: usize, seed: u64) -> ThompsonResult {
    let offers = evidence.offers;
    let hour_elapsed = evidence.hour_elapsed.clamp(0.0, 1.0);
    let shape_exposure = ShapeExposure::new(hour_elapsed);
    let delay_evidence: Vec<DelayEvidence> =
        offers.iter().map(|o| DelayEvidence::new(&o.delays, &o.clicks, &shape_exposure)).collect();
    let offer_ftds: Vec<u64> = offers.iter().map(|o| o.ftds.iter().sum()).collect();
    // Each offer's delay shapes as its delays alone weigh them: for the pooled rate, and for the
    // other offers' delay priors.
    let own_shapes: Vec<[f64; DELAY_SHAPES]> = delay_evidence
        .iter()
        .zip(&offer_ftds)
        .map(|(e, &ftds)| e.shape_weights(ftds, None, &EVEN_SHAPE_PRIOR))
        .collect();
    let shape_votes = ShapeVotes::new(&own_shapes, &offer_ftds);
    let total_ftds: u64 = offer_ftds.iter().sum();
    let total_exposure: f64 = delay_evidence.iter().zip(&own_shapes).map(|(e, shapes)| e.mixed_exposure(shapes)).sum();
    let pooled_rate = if total_ftds > 0 && total_exposure > 0.0 { total_ftds as f64 / total_exposure } else { 0.02 };
    let offer_payouts: Vec<Payouts> =
        offers.iter().map(|o| o.payouts.iter().take(HORIZON_HOURS).copied().sum()).collect();
    let pooled: Payouts = offer_payouts.iter().copied().sum();
    let pooled_mean = if pooled.count > 0 { pooled.mean() } else { 100.0 };
    let pooled_var =
        if pooled.count > 1 { (pooled.sum_sq / pooled.count as f64 - pooled_mean * pooled_mean).max(0.0) } else { 0.0 }
            .max((PAYOUT_MIN_SPREAD * pooled_mean).powi(2));

    let mut segments_of: Vec<Vec<&SegmentHistory>> = vec![Vec::new(); offers.len()];
    for segment in evidence.segments.iter().filter(|s| s.offer < offers.len()) {
        segments_of[segment.offer].push(segment);
    }

    // Per offer: its posterior, and the weight of each click bucket (the delay model at its age).
    let (posteriors, bucket_weights): (Vec<OfferPosterior>, Vec<Vec<f64>>) = offers
        .iter()
        .zip(&delay_evidence)
        .zip(own_shapes.iter().zip(&offer_ftds))
        .zip(&segments_of)
        .zip(&offer_payouts)
        .map(|((((offer, evidence), (own, &all_ftds)), segments), &all_payouts)| {
            let (payout_window, payouts) = payout_change_window(&offer.payouts, all_payouts);
            let n = payouts.count as f64;
            let payout_mean = (pooled_mean + payouts.sum) / (1.0 + n);
            // No more than one FTD per click, and the pooled rate where nothing has paid yet.
            let prior_rate =
                if payout_mean > 0.0 { (pooled_rate * pooled_mean / payout_mean).min(1.0) } else { pooled_rate };
            let shape_prior = shape_votes.log_prior_without(own, all_ftds);
            let fit = DelayModel::parametric(&evidence.shape_weights(all_ftds, Some(prior_rate), &shape_prior));
            let weights = DelayModel::estimate(&offer.delays, &fit).exposure_weights(hour_elapsed);
            let exposure: Vec<f64> = offer.clicks.iter().zip(&weights).map(|(&n, w)| n as f64 * w).collect();
            let hours = offer.ftds.len().min(exposure.len());
            let parts_on =
                |grid: &WindowGrid| change_parts(&offer.ftds[..hours], &exposure[..hours], segments, &weights, grid);
            let window = change_window(parts_on, hours);
            let ftds: u64 = offer.ftds.iter().take(window).sum();
            let exposure: f64 = exposure.iter().take(window).sum();
            let (rate_shape, rate_rate) = (1.0 + ftds as f64, 1.0 / prior_rate + exposure);
            let posterior = OfferPosterior {
                offer_id: offer.offer_id,
                rate_shape,
                rate_rate,
                draw_shape: rate_shape * POSTERIOR_SHARPNESS,
                draw_rate: rate_rate * POSTERIOR_SHARPNESS,
                payout_mean,
                payout_sd: (pooled_var / (1.0 + n)).sqrt(),
                window_hours: window,
                payout_window_hours: payout_window,
                payouts: payouts.count,
                exposure,
                ftds,
                clicks: offer.clicks.iter().take(window).sum(),
            };
            (posterior, weights)
        })
        .unzip();
    let (segments, segment_spread) = segment_posteriors(evidence, &posteriors, &bucket_weights, pooled_var);
    let (probability_best, route_draws) = monte_carlo(&posteriors, draws, seed);
    ThompsonResult { posteriors, probability_best, route_draws, segments, segment_spread, draws: draws.max(1), seed }
}

/// One segment's evidence on one offer, within the offer's window.
#[derive(Debug, Clone, Copy, Default)]
struct SegmentTally {
    ftds: u64,
    exposure: f64,
    clicks: u64,
    payout_sum: f64,
    payouts: u64,
}

impl SegmentTally {
    /// The segment's clicks and FTDs within the offer's window, and its payouts within the offer's
    /// payout window.
    fn new(history: &SegmentHistory, offer: &OfferPosterior, weights: &[f64]) -> SegmentTally {
        let recent = |&&(age, _): &&(usize, u64)| age < offer.window_hours;
        let paid = || history.payouts.iter().filter(|&&(age, _, _)| age < offer.payout_window_hours);
        SegmentTally {
            ftds: history.ftds.iter().filter(recent).map(|&(_, n)| n).sum(),
            exposure: history.clicks.iter().filter(recent).map(|&(age, n)| n as f64 * weights[age]).sum(),
            clicks: history.clicks.iter().filter(recent).map(|&(_, n)| n).sum(),
            payout_sum: paid().map(|&(_, _, sum)| sum).sum(),
            payouts: paid().map(|&(_, n, _)| n).sum(),
        }
    }
}

/// Hours of an offer's payouts to believe, and those payouts (the horizon and `all` of them, unless
/// there is a change): the window, of [`CHANGE_WINDOWS`], whose payouts' mean differs most from the
/// older ones', if it passes [`CHANGE_Z`] with [`PAYOUT_CHANGE_MIN`] payouts on each side. A casino
/// that cuts its CPA from $150 to $75 is otherwise read at the month's average for weeks. The spread
/// is the payouts' own within the two parts, at least [`PAYOUT_MIN_SPREAD`] of the mean (a fixed CPA
/// has none).
fn payout_change_window(payouts: &[Payouts], all: Payouts) -> (usize, Payouts) {
    let hours = payouts.len().min(HORIZON_HOURS);
    if all.count < 2 * PAYOUT_CHANGE_MIN {
        return (HORIZON_HOURS, all);
    }
    let floor = (PAYOUT_MIN_SPREAD * all.mean()).powi(2);
    let mut found = (CHANGE_Z, HORIZON_HOURS, all);
    // One pass from the youngest clicks: at each window's edge, `recent` holds the younger ones.
    let (mut recent, mut windows) = (Payouts::default(), CHANGE_WINDOWS.iter().peekable());
    for (age, &paid) in payouts.iter().enumerate().take(hours) {
        if windows.next_if_eq(&&age).is_some() {
            let older = recent.without(all);
            if recent.count >= PAYOUT_CHANGE_MIN && older.count >= PAYOUT_CHANGE_MIN {
                let within = (recent.squares() + older.squares()) / (all.count - 2) as f64;
                let variance = within.max(floor) * (1.0 / recent.count as f64 + 1.0 / older.count as f64);
                let z = (recent.mean() - older.mean()).abs() / variance.sqrt();
                if variance > 0.0 && z > found.0 {
                    found = (z, age, recent);
                }
            }
        }
        recent.add(paid);
    }
    (found.1, found.2)
}

/// One offer's evidence over its segments, each segment's counts discounted by how much it can tell
/// of the others: the offer's rate in a segment it has not seen is that of a typical segment, not of
/// the segments it was routed to most.
///
/// Pooling FTDs and exposure as they are would let the segments where an offer wins (and so gets
/// most of its traffic) set its rate everywhere: an offer three times as good in Germany, with all
/// of Germany's traffic, would be presumed as good in every small country. Segments' rates differ
/// by `spread` (a squared coefficient of variation) around the offer's typical rate, so a segment
/// that expects `m` FTDs knows that typical rate only as well as `m / (1 + spread * m)` FTDs would:
/// its counts are scaled by `1 / (1 + spread * m)` (the weights of a random-effects mean). With no
/// spread this is the plain pool; the part of the offer's traffic that no segment holds counts as one
/// more segment.
#[derive(Debug, Clone, Copy)]
struct OfferPool {
    /// The offer's prior FTDs and exposure plus every segment's, discounted.
    shape: f64,
    rate: f64,
    /// The offer's mean rate over all its traffic, which sets each segment's expected FTDs.
    typical_rate: f64,
}

impl OfferPool {
    /// Every offer's pool, from the segments' `tallies` (`(segment, offer, tally)`).
    fn all(offers: &[OfferPosterior], tallies: &[(usize, usize, SegmentTally)], spread: f64) -> Vec<OfferPool> {
        let mut pools: Vec<OfferPool> = offers
            .iter()
            .map(|offer| OfferPool {
                shape: offer.rate_shape - offer.ftds as f64,
                rate: offer.rate_rate - offer.exposure,
                typical_rate: offer.mean_rate(),
            })
            .collect();
        let mut held = vec![(0u64, 0.0); offers.len()];
        for &(_, offer, tally) in tallies {
            pools[offer].add(tally.ftds as f64, tally.exposure, spread);
            held[offer].0 += tally.ftds;
            held[offer].1 += tally.exposure;
        }
        for ((pool, offer), (ftds, exposure)) in pools.iter_mut().zip(offers).zip(held) {
            pool.add(offer.ftds.saturating_sub(ftds) as f64, (offer.exposure - exposure).max(0.0), spread);
        }
        pools
    }

    /// The rate the pool expects of a segment: the mean of its discounted evidence (unlike
    /// `typical_rate`, which only scales the discounts).
    fn mean(&self) -> f64 {
        self.shape / self.rate
    }

    fn discount(&self, exposure: f64, spread: f64) -> f64 {
        1.0 / (1.0 + spread * self.typical_rate * exposure)
    }

    fn add(&mut self, ftds: f64, exposure: f64, spread: f64) {
        let discount = self.discount(exposure, spread);
        self.shape += discount * ftds;
        self.rate += discount * exposure;
    }

    /// The offer's typical rate from its other segments' evidence (and its prior): mean and Gamma
    /// shape. Leaving the segment's own data out keeps it from being counted twice, in the prior
    /// and again as evidence.
    fn rate_without(&self, tally: &SegmentTally, spread: f64) -> (f64, f64) {
        let discount = self.discount(tally.exposure, spread);
        // At least one prior FTD at the prior rate (>= 1 per unit of exposure); rounding aside.
        let shape = (self.shape - discount * tally.ftds as f64).max(1.0);
        let rate = (self.rate - discount * tally.exposure).max(1.0);
        (shape / rate, shape)
    }
}

/// Every offer's evidence by trait value (over the segments of each country, of each device class,
/// of each source): its FTDs and exposure there, each segment's discounted as in its [`OfferPool`].
///
/// A segment's prior rate for an offer is the offer's typical rate times one factor per trait: the
/// offer's rate in the *other* segments that share the segment's value of that trait, relative to
/// its typical rate, shrunk toward 1 by a Gamma prior as wide as the spread between segments around
/// that typical rate (before the factors). So
/// Brazilian mobile visitors are presumed to take to an offer as its other mobile visitors do and as
/// its other Brazilian visitors do (effects multiplied), not as its typical visitor, who is mostly
/// of the segments where it wins: an offer that converts 1.5 times as well on desktop and is
/// German desktop's best otherwise lent that rate to Brazilian mobile (RESEARCH.md, session 20).
///
/// Only traits with two values or more among the segments take part, and only with two such traits
/// does a segment have others that share one of its values; otherwise every factor is 1 and the
/// pooling is the plain one. The spread between segments is then estimated around these
/// predictions: it is what the traits do not explain. How well the other segments predict a
/// segment is its own matter: an offer seen on desktop only from google cannot be predicted on
/// mobile google, however many FTDs it has, and a point estimate there would say it can. What the
/// factors' correlations add to the variance of the prediction's log ([`FactorCovariance`]) widens
/// that segment's prior.
struct Margins<'a> {
    /// Which margins there are (none: no structure, every factor 1).
    layout: Option<&'a MarginLayout<'a>>,
    /// Over an offer's segments of one trait value, by the layout's index: the discounted FTDs, the
    /// FTDs its typical rate and the other traits' factors expect there, and the factor.
    margins: Vec<Margin>,
    /// The factors' Gamma prior, its shape and rate: the inverse of the spread between segments
    /// around their offer's typical rate (how far a trait may move a rate, before the data say).
    strength: f64,
    /// By offer: the covariance of its factors' logs, once asked for ([`Margins::with_covariance`]).
    covariance: Vec<FactorCovariance>,
}

/// Which margins the segments of a refresh make, and which of them each tally belongs to: the same
/// in every round of settling the spread (only the sums change), so built once.
struct MarginLayout<'a> {
    /// `(offer, trait, value)`: the index of that margin.
    index: HashMap<(usize, usize, u32), usize>,
    /// By tally: its margin of each trait.
    of_tally: Vec<[Option<usize>; TRAITS]>,
    /// By margin: its offer, and its place among that offer's margins of the wide trait or of the
    /// others.
    place: Vec<(usize, Place)>,
    /// By offer: how many margins of the wide trait it has, and of the others.
    per_offer: Vec<(usize, usize)>,
    /// What each segment is made of, by segment index.
    traits: &'a [Traits],
    /// Which traits take part.
    crossed: [bool; TRAITS],
}

impl<'a> MarginLayout<'a> {
    /// The margins of the `crossed` traits over `tallies` (`(segment, offer, tally)`).
    fn new(traits: &'a [Traits], crossed: [bool; TRAITS], tallies: &[(usize, usize, SegmentTally)]) -> Self {
        // The crossed trait with the most values: the diagonal block of each offer's
        // [`FactorCovariance`].
        let distinct = |t: usize| {
            let values = tallies.iter().filter_map(|&(segment, _, _)| traits.get(segment).and_then(|v| v[t]));
            values.collect::<HashSet<u32>>().len()
        };
        let wide = (0..TRAITS).filter(|&t| crossed[t]).max_by_key(|&t| distinct(t)).unwrap_or(0);
        let (mut index, mut place, mut per_offer) = (HashMap::new(), Vec::new(), Vec::<(usize, usize)>::new());
        let of_tally = tallies
            .iter()
            .map(|&(segment, offer, _)| {
                let mut of_tally = [None; TRAITS];
                for key in MarginLayout::keys(traits, crossed, segment, offer) {
                    let margin = *index.entry(key).or_insert_with(|| {
                        if per_offer.len() <= offer {
                            per_offer.resize(offer + 1, (0, 0));
                        }
                        let (wide_count, rest_count) = &mut per_offer[offer];
                        let at = if key.1 == wide {
                            *wide_count += 1;
                            Place::Wide(*wide_count - 1)
                        } else {
                            *rest_count += 1;
                            Place::Rest(*rest_count - 1)
                        };
                        place.push((offer, at));
                        place.len() - 1
                    });
                    of_tally[key.1] = Some(margin);
                }
                of_tally
            })
            .collect();
        MarginLayout { index, of_tally, place, per_offer, traits, crossed }
    }

    /// The margins `segment` belongs to for `offer`, by trait.
    fn of_segment(&self, segment: usize, offer: usize) -> [Option<usize>; TRAITS] {
        let mut own = [None; TRAITS];
        for key in MarginLayout::keys(self.traits, self.crossed, segment, offer) {
            own[key.1] = self.index.get(&key).copied();
        }
        own
    }

    /// The margins `segment` belongs to for `offer`, of the `crossed` traits.
    fn keys(
        traits: &[Traits],
        crossed: [bool; TRAITS],
        segment: usize,
        offer: usize,
    ) -> impl Iterator<Item = (usize, usize, u32)> + use<> {
        let values = traits.get(segment).copied().unwrap_or_default();
        (0..TRAITS).filter_map(move |t| values[t].filter(|_| crossed[t]).map(|value| (offer, t, value)))
    }
}

/// A margin's place among its offer's: the `n`th of the wide trait, or of the others.
#[derive(Debug, Clone, Copy)]
enum Place {
    Wide(usize),
    Rest(usize),
}

/// The covariance of one offer's log factors: the inverse of what the factors' prior and the
/// offer's segments tell of them together (the information: each segment's fitted FTDs on each of
/// its factors and on each pair of them, as a Poisson's at the fit). A country's factor and a
/// device class's are told apart only by segments that hold one without the other.
///
/// Kept in blocks around the wide trait, whose information is diagonal (a segment has one value of
/// it): with `D` that diagonal, `B` the information between its margins and the others, and `R`
/// the others', the variance of a segment's log factor at wide value `w` and other margins `x` (an
/// indicator) is `1 / D_w + (B_w / D_w - x)' S^-1 (B_w / D_w - x)`, where `S = R - B' D^-1 B`.
/// Inverting `S` costs the cube of the other margins' number (a few device classes), not of all
/// (67 countries more in the bench, where inverting all cost 65% more per refresh).
struct FactorCovariance {
    /// `D`: by margin of the wide trait.
    wide: Vec<f64>,
    /// `B`: by margin of the wide trait, by other margin.
    between: Vec<f64>,
    /// `S^-1`.
    rest: Vec<f64>,
    /// `R`'s diagonal: each other margin's own information.
    rest_diagonal: Vec<f64>,
    /// The number of other margins.
    others: usize,
}

/// What [`FactorCovariance`] inverts, gathered segment by segment: `D`, `B` and `R`.
struct FactorInformation {
    wide: Vec<f64>,
    between: Vec<f64>,
    rest: Vec<f64>,
    others: usize,
}

impl FactorInformation {
    /// The prior's information alone (`strength` on each log factor), for `(wide, others)` margins.
    fn new(strength: f64, (wide, others): (usize, usize)) -> FactorInformation {
        let rest = (0..others * others).map(|i| if i % (others + 1) == 0 { strength } else { 0.0 }).collect();
        FactorInformation { wide: vec![strength; wide], between: vec![0.0; wide * others], rest, others }
    }

    /// A segment's information: its `fitted` FTDs on each of its factors (`places`) and each pair.
    fn add(&mut self, places: impl Iterator<Item = Place> + Clone, fitted: f64) {
        let n = self.others;
        let wide = places.clone().find_map(|p| if let Place::Wide(w) = p { Some(w) } else { None });
        let others = places.filter_map(|p| if let Place::Rest(r) = p { Some(r) } else { None });
        if let Some(w) = wide {
            self.wide[w] += fitted;
        }
        for a in others.clone() {
            if let Some(w) = wide {
                self.between[w * n + a] += fitted;
            }
            for b in others.clone() {
                self.rest[a * n + b] += fitted;
            }
        }
    }

    /// The covariance: `S^-1` from `R` less what the wide trait's margins explain.
    fn covariance(self) -> FactorCovariance {
        let FactorInformation { wide, between, mut rest, others: n } = self;
        let rest_diagonal = (0..n).map(|a| rest[a * n + a]).collect();
        for (d, row) in wide.iter().zip(between.chunks(n.max(1))) {
            for a in 0..n {
                for b in 0..n {
                    rest[a * n + b] -= row[a] * row[b] / d;
                }
            }
        }
        FactorCovariance { wide, between, rest: inverse(rest, n), rest_diagonal, others: n }
    }
}

impl FactorCovariance {
    /// The variance of the log of the product of the factors at `places`.
    fn variance(&self, places: impl Iterator<Item = Place>) -> f64 {
        let n = self.others;
        let mut deviation = vec![0.0; n];
        let mut variance = 0.0;
        for place in places {
            match place {
                Place::Wide(w) => {
                    let d = self.wide[w];
                    variance += 1.0 / d;
                    deviation.iter_mut().zip(&self.between[w * n..(w + 1) * n]).for_each(|(u, b)| *u += b / d);
                }
                Place::Rest(r) => deviation[r] -= 1.0,
            }
        }
        let quadratic: f64 =
            (0..n).map(|a| deviation[a] * (0..n).map(|b| self.rest[a * n + b] * deviation[b]).sum::<f64>()).sum();
        variance + quadratic
    }

    /// What the correlations of the factors at `places` add to the variance of their product's log,
    /// beyond their own variances, once a segment's `own` fitted FTDs are taken out of the
    /// information (Sherman-Morrison for the product, each factor's own for the sum). Large where
    /// the offer's other segments never showed two of these traits apart; nothing where they did.
    fn hidden(&self, places: impl Iterator<Item = Place> + Clone, own: f64) -> f64 {
        let with_own = self.variance(places.clone());
        let left = 1.0 - own * with_own;
        let product = if left > 0.0 { with_own / left } else { f64::INFINITY };
        let information = |place| match place {
            Place::Wide(w) => self.wide[w],
            Place::Rest(r) => self.rest_diagonal[r],
        };
        let factors: f64 = places.map(|place| 1.0 / (information(place) - own)).sum();
        (product - factors).max(0.0)
    }
}

/// One offer's evidence over the segments of one trait value (see [`Margins`]).
#[derive(Debug, Clone, Copy)]
struct Margin {
    ftds: f64,
    expected: f64,
    factor: f64,
}

impl Margin {
    const EMPTY: Margin = Margin { ftds: 0.0, expected: 0.0, factor: 1.0 };
}

impl<'a> Margins<'a> {
    /// No structure: segments are exchangeable.
    fn none() -> Margins<'static> {
        Margins { layout: None, margins: Vec::new(), strength: 1.0, covariance: Vec::new() }
    }

    /// Which traits vary among the segments of `tallies` (`(segment, offer, tally)`), if two or more do.
    fn crossed(segment_traits: &[Traits], tallies: &[(usize, usize, SegmentTally)]) -> Option<[bool; TRAITS]> {
        let traits_of = |segment: usize| segment_traits.get(segment).copied().unwrap_or_default();
        let mut crossed = [false; TRAITS];
        for (trait_index, crossed) in crossed.iter_mut().enumerate() {
            let mut values = tallies.iter().filter_map(|&(segment, _, _)| traits_of(segment)[trait_index]);
            *crossed = values.next().is_some_and(|first| values.any(|value| value != first));
        }
        (crossed.iter().filter(|&&c| c).count() >= 2).then_some(crossed)
    }

    /// The margins of `layout` over its `tallies`, discounted by `pools` at `spread`. A trait's
    /// factors are fitted given the others' (backfitting, [`MARGIN_SWEEPS`] sweeps): the segments
    /// of one country may be mostly of one device class, whose effect is not the country's.
    fn new(
        layout: &'a MarginLayout<'a>,
        tallies: &[(usize, usize, SegmentTally)],
        (pools, spread): (&[OfferPool], f64),
        strength: f64,
    ) -> Margins<'a> {
        let members = Margins::members(tallies, (pools, spread));
        let mut margins = vec![Margin::EMPTY; layout.index.len()];
        for _ in 0..MARGIN_SWEEPS {
            for trait_index in (0..TRAITS).filter(|&t| layout.crossed[t]) {
                let mut sums = vec![(0.0, 0.0); margins.len()];
                for (of_tally, (ftds, expected)) in layout.of_tally.iter().zip(&members) {
                    let Some(own) = of_tally[trait_index] else { continue };
                    let others = product_but(of_tally, trait_index, |&m| margins[m].factor);
                    sums[own].0 += ftds;
                    sums[own].1 += expected * others;
                }
                for (margin, (ftds, expected)) in margins.iter_mut().zip(sums) {
                    if expected > 0.0 || ftds > 0.0 {
                        *margin = Margin { ftds, expected, factor: (strength + ftds) / (strength + expected) };
                    }
                }
            }
        }
        Margins { layout: Some(layout), margins, strength, covariance: Vec::new() }
    }

    /// Each tally's discounted FTDs, and those its offer's typical rate expects.
    fn members(tallies: &[(usize, usize, SegmentTally)], (pools, spread): (&[OfferPool], f64)) -> Vec<(f64, f64)> {
        tallies
            .iter()
            .map(|&(_, offer, tally)| {
                let pool = &pools[offer];
                let discount = pool.discount(tally.exposure, spread);
                (discount * tally.ftds as f64, discount * tally.exposure * pool.mean())
            })
            .collect()
    }

    /// These margins with each offer's [`FactorCovariance`], at the fit to `tallies` discounted by
    /// `pools` at `spread` (those the margins were fitted with). Only the posteriors use it: the
    /// spread is estimated without it (what the factors' correlations leave unknown rests on the
    /// factors' prior, which rests on the spread; taken out of it, it made the spread of a few
    /// large segments crossed by country and device small, and every prior too sure).
    fn with_covariance(mut self, tallies: &[(usize, usize, SegmentTally)], pools: (&[OfferPool], f64)) -> Self {
        let Some(layout) = self.layout else { return self };
        let mut information: Vec<FactorInformation> =
            layout.per_offer.iter().map(|&counts| FactorInformation::new(self.strength, counts)).collect();
        for (of_tally, &(_, expected)) in layout.of_tally.iter().zip(&Margins::members(tallies, pools)) {
            let Some(&first) = of_tally.iter().flatten().next() else { continue };
            let fitted = expected * of_tally.iter().flatten().map(|&m| self.margins[m].factor).product::<f64>();
            information[layout.place[first].0].add(of_tally.iter().flatten().map(|&m| layout.place[m].1), fitted);
        }
        self.covariance = information.into_iter().map(FactorInformation::covariance).collect();
        self
    }

    /// The factor `segment`'s traits put on `offer`'s typical rate, from its other segments: each
    /// margin with the segment's own `tally` left out (the offer's pool at `spread` discounts it).
    fn factor(&self, segment: usize, offer: usize, tally: &SegmentTally, pool: (&OfferPool, f64)) -> f64 {
        let Some(layout) = self.layout else { return 1.0 };
        self.factor_of(&layout.of_segment(segment, offer), tally, pool)
    }

    /// [`Margins::factor`] of the `own` margins.
    fn factor_of(&self, own: &[Option<usize>; TRAITS], tally: &SegmentTally, (pool, spread): (&OfferPool, f64)) -> f64 {
        let discount = pool.discount(tally.exposure, spread);
        let own_expected = discount * tally.exposure * pool.mean();
        (0..TRAITS)
            .filter_map(|trait_index| own[trait_index].map(|m| (trait_index, &self.margins[m])))
            .map(|(trait_index, margin)| {
                let ftds = (margin.ftds - discount * tally.ftds as f64).max(0.0);
                let expected = (margin.expected
                    - own_expected * product_but(own, trait_index, |&m| self.margins[m].factor))
                .max(0.0);
                (self.strength + ftds) / (self.strength + expected)
            })
            .product()
    }

    /// [`Margins::factor`], and what the factors' correlations add to the variance of its log (none
    /// without [`Margins::with_covariance`]): how little the other segments tell of this one's
    /// combination of traits. Where an offer's desktop clicks all came from google and its mobile
    /// ones from fb, the other segments cannot say whether google or desktop made its rate, and a
    /// mobile google segment's prior must say so rather than settle on one reading. The factors' own
    /// variances are not added: the spread, estimated on predictions that leave each segment out,
    /// holds their typical error already, and added again they made every small segment explore
    /// (RESEARCH.md, session 23).
    fn prior(&self, segment: usize, offer: usize, tally: &SegmentTally, pool: (&OfferPool, f64)) -> (f64, f64) {
        let Some(layout) = self.layout else { return (1.0, 0.0) };
        let own = layout.of_segment(segment, offer);
        let factor = self.factor_of(&own, tally, pool);
        let places = own.iter().flatten().map(|&m| layout.place[m].1);
        let seen = places.clone().count() as f64;
        let Some(covariance) = self.covariance.get(offer).filter(|_| seen > 1.0) else { return (factor, 0.0) };
        let own_fitted = pool.0.discount(tally.exposure, pool.1)
            * tally.exposure
            * pool.0.mean()
            * own.iter().flatten().map(|&m| self.margins[m].factor).product::<f64>();
        (factor, covariance.hidden(places, own_fitted).min(seen / self.strength))
    }
}

/// The inverse of a symmetric positive definite `k` x `k` matrix (row-major), by Gauss-Jordan
/// elimination; its pivots are positive, so none is sought.
fn inverse(mut matrix: Vec<f64>, k: usize) -> Vec<f64> {
    let mut inverse: Vec<f64> = (0..k * k).map(|i| if i % (k + 1) == 0 { 1.0 } else { 0.0 }).collect();
    for pivot in 0..k {
        let scale = 1.0 / matrix[pivot * k + pivot];
        for column in 0..k {
            matrix[pivot * k + column] *= scale;
            inverse[pivot * k + column] *= scale;
        }
        for row in (0..k).filter(|&row| row != pivot) {
            let by = matrix[row * k + pivot];
            if by != 0.0 {
                for column in 0..k {
                    matrix[row * k + column] -= by * matrix[pivot * k + column];
                    inverse[row * k + column] -= by * inverse[pivot * k + column];
                }
            }
        }
    }
    inverse
}

/// The product of the factors of a segment's margins (`of`, by trait), but `trait_index`'s: what the
/// other traits expect of it.
fn product_but<T>(of: &[Option<T>; TRAITS], trait_index: usize, factor: impl Fn(&T) -> f64) -> f64 {
    (of.iter().enumerate()).filter(|&(t, _)| t != trait_index).filter_map(|(_, m)| m.as_ref()).map(factor).product()
}

/// The spread between segments around what `margins_of` (given the pools and the spread) predicts,
/// settled in rounds from the prior, with the pools it discounts and the margins of both.
///
/// Each pair's squared deviation from that prediction, less what Poisson noise and the uncertain
/// rate elsewhere explain, relative to the offer's typical rate, estimates the spread. Weighted by
/// precision (the inverse of the estimate's variance, about `2 (spread + 1 / typical FTDs + 1 /
/// shape)^2`): one segment with thousands of FTDs counts as one well-measured segment, not as
/// thousands.
fn settle_spread<'a>(
    offers: &[OfferPosterior],
    tallies: &[(usize, usize, SegmentTally)],
    margins_of: impl Fn(&[OfferPool], f64) -> Margins<'a>,
) -> (f64, Vec<OfferPool>, Margins<'a>) {
    let mut spread = SEGMENT_SPREAD_PRIOR;
    let mut pools = OfferPool::all(offers, tallies, spread);
    for _ in 0..SEGMENT_SPREAD_ROUNDS {
        let margins = margins_of(&pools, spread);
        let (mut excess, mut precision) = (0.0, 0.0);
        for (segment, offer, tally) in tallies {
            let pool = &pools[*offer];
            let (rate, shape) = pool.rate_without(tally, spread);
            let expected = rate * margins.factor(*segment, *offer, tally, (pool, spread)) * tally.exposure;
            let typical = pool.mean() * tally.exposure;
            let deviation = (tally.ftds as f64 - expected).powi(2) - expected - expected * expected / shape;
            let discount = 1.0 / (1.0 + typical * (spread + 1.0 / shape)).powi(2);
            excess += discount * deviation;
            precision += discount * typical * typical;
        }
        // The prior counts as SEGMENT_SPREAD_PRIOR_WEIGHT segments measured without noise.
        let prior_precision = SEGMENT_SPREAD_PRIOR_WEIGHT / (spread * spread);
        let estimate = ((excess + SEGMENT_SPREAD_PRIOR * prior_precision) / (precision + prior_precision))
            .clamp(SEGMENT_SPREAD_RANGE.0, SEGMENT_SPREAD_RANGE.1);
        let settled = (estimate / spread - 1.0).abs() < 1e-3;
        spread = estimate;
        pools = OfferPool::all(offers, tallies, spread);
        if settled {
            break;
        }
    }
    let margins = margins_of(&pools, spread);
    (spread, pools, margins)
}

/// Per segment with evidence, every offer's posterior there, pooled toward the offer's typical rate
/// in its other segments; and the spread between segments the pooling used.
///
/// Empirical Bayes: a segment's FTD rate for an offer is a priori Gamma-distributed around the
/// offer's typical rate elsewhere ([`OfferPool`]), times the factors of the segment's traits where
/// segments cross two traits or more ([`Margins`]), with a squared coefficient of variation of
/// `spread + uncertainty + 1 / shape` (how far segments differ, how little the factors' data tell
/// of this segment's combination of traits, and how little is known of the offer elsewhere).
/// `spread` is estimated by the method of moments over every segment and offer (each segment's
/// FTDs against the count its exposure predicts, less the Poisson and the estimate's own variance,
/// weighted by precision), shrunk toward [`SEGMENT_SPREAD_PRIOR`]. A segment with a few dozen
/// clicks is routed nearly as its offers are overall; one with thousands of FTDs, on its own.
fn segment_posteriors(
    evidence: &Evidence<'_>,
    offers: &[OfferPosterior],
    bucket_weights: &[Vec<f64>],
    pooled_var: f64,
) -> (Vec<SegmentPosterior>, f64) {
    let mut tallies: Vec<(usize, usize, SegmentTally)> = evidence
        .segments
        .iter()
        .filter(|s| s.offer < offers.len())
        .map(|s| (s.segment, s.offer, SegmentTally::new(s, &offers[s.offer], &bucket_weights[s.offer])))
        .collect();
    tallies.sort_unstable_by_key(|&(segment, offer, _)| (segment, offer));

    // The spread sets the pools' discounts and the estimate's weights, and the pools the estimate:
    // rounds settle both. Around each offer's typical rate first; then, if the segments are crossed
    // (see [`Margins`]), around what their traits predict, the factors' prior as wide as that first
    // spread.
    let (mut spread, mut pools, mut margins) = settle_spread(offers, &tallies, |_, _| Margins::none());
    let layout = Margins::crossed(evidence.segment_traits, &tallies)
        .map(|crossed| MarginLayout::new(evidence.segment_traits, crossed, &tallies));
    if let Some(layout) = &layout {
        let strength = 1.0 / spread;
        (spread, pools, margins) =
            settle_spread(offers, &tallies, |pools, spread| Margins::new(layout, &tallies, (pools, spread), strength));
        margins = margins.with_covariance(&tallies, (&pools, spread));
    }

    let segments = tallies
        .chunk_by(|a, b| a.0 == b.0)
        .map(|group| {
            let posteriors = offers
                .iter()
                .enumerate()
                .map(|(index, offer)| {
                    let tally = group.iter().find(|(_, i, _)| *i == index).map_or_else(SegmentTally::default, |t| t.2);
                    let (rate, shape) = pools[index].rate_without(&tally, spread);
                    let (factor, uncertainty) = margins.prior(group[0].0, index, &tally, (&pools[index], spread));
                    let rate = rate * factor;
                    let prior_shape = 1.0 / (spread + uncertainty + 1.0 / shape);
                    let (rate_shape, rate_rate) =
                        (prior_shape + tally.ftds as f64, prior_shape / rate + tally.exposure);
                    // Routing draws around the posterior mean, narrowing what is known of the offer
                    // and the segment but not the spread between segments: narrowed too, it left a
                    // segment's best offer (poor elsewhere) unexplored there for good. Nor what the
                    // factors leave unknown of the segment, for the same reason.
                    let draw_shape = 1.0 / (spread + uncertainty + 1.0 / (POSTERIOR_SHARPNESS * shape))
                        + POSTERIOR_SHARPNESS * tally.ftds as f64;
                    // The mean payout, pooled toward the offer's elsewhere by up to
                    // SEGMENT_PAYOUT_PRIOR payouts (no more than the offer has elsewhere, plus one).
                    let payouts_elsewhere = offer.payouts.saturating_sub(tally.payouts) as f64;
                    let prior_payouts = SEGMENT_PAYOUT_PRIOR.min(1.0 + payouts_elsewhere);
                    let mean_elsewhere = (offer.payout_mean * (1.0 + offer.payouts as f64) - tally.payout_sum)
                        / (1.0 + payouts_elsewhere);
                    let n = tally.payouts as f64;
                    OfferPosterior {
                        offer_id: offer.offer_id,
                        rate_shape,
                        rate_rate,
                        draw_shape,
                        draw_rate: draw_shape * rate_rate / rate_shape,
                        payout_mean: (prior_payouts * mean_elsewhere + tally.payout_sum) / (prior_payouts + n),
                        payout_sd: (pooled_var / (prior_payouts + n)).sqrt(),
                        window_hours: offer.window_hours,
                        payout_window_hours: offer.payout_window_hours,
                        payouts: tally.payouts,
                        exposure: tally.exposure,
                        ftds: tally.ftds,
                        clicks: tally.clicks,
                    }
                })
                .collect();
            SegmentPosterior { segment: group[0].0, offers: posteriors }
        })
        .collect();
    (segments, spread)
}

/// Windows (hours, ascending) the change test reads: [`CHANGE_WINDOWS`] to find a change, or a finer
/// grid between two of them to locate it (see [`change_window`]).
pub type WindowGrid = [usize; CHANGE_WINDOWS.len()];

/// One part of an offer's traffic (a segment, the rest, or all of it) as the change test sees it: its FTDs and
/// exposure within each window of a [`WindowGrid`] (the most recent hours) and over all its history.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct WindowTotals {
    /// `[i]`: FTDs of the clicks of the last `grid[i]` hours.
    recent_ftds: [u64; CHANGE_WINDOWS.len()],
    /// `[i]`: exposure of the same clicks.
    recent_exposure: [f64; CHANGE_WINDOWS.len()],
    ftds: u64,
    exposure: f64,
}

impl WindowTotals {
    /// The totals on `grid` of clicks given as `(age in hours, FTDs, exposure)`, in any order.
    fn of(clicks: impl IntoIterator<Item = (usize, u64, f64)>, grid: &WindowGrid) -> WindowTotals {
        let mut totals = WindowTotals::default();
        for (age, ftds, exposure) in clicks {
            totals.ftds += ftds;
            totals.exposure += exposure;
            // In the shortest window holding the age for now; each window adds the shorter ones below.
            let window = grid.partition_point(|&hours| hours <= age);
            if window < grid.len() {
                totals.recent_ftds[window] += ftds;
                totals.recent_exposure[window] += exposure;
            }
        }
        for window in 1..CHANGE_WINDOWS.len() {
            totals.recent_ftds[window] += totals.recent_ftds[window - 1];
            totals.recent_exposure[window] += totals.recent_exposure[window - 1];
        }
        totals
    }

    /// The totals on `grid` of dense histories: `ftds[a]` and `exposure[a]` of the clicks aged `a` hours.
    pub fn dense(ftds: &[u64], exposure: &[f64], grid: &WindowGrid) -> WindowTotals {
        let clicks = ftds.iter().zip(exposure).enumerate().map(|(age, (&ftds, &exposure))| (age, ftds, exposure));
        WindowTotals::of(clicks, grid)
    }

    /// What `self` holds beyond `parts` (which it contains): the traffic no part accounts for.
    fn beyond(&self, parts: &[WindowTotals]) -> WindowTotals {
        let mut rest = *self;
        for part in parts {
            rest.ftds = rest.ftds.saturating_sub(part.ftds);
            rest.exposure -= part.exposure;
            for window in 0..CHANGE_WINDOWS.len() {
                rest.recent_ftds[window] = rest.recent_ftds[window].saturating_sub(part.recent_ftds[window]);
                rest.recent_exposure[window] -= part.recent_exposure[window];
            }
        }
        // A segment's FTD counted after the whole was read must not leave more recent FTDs than FTDs.
        rest.recent_ftds.iter_mut().for_each(|recent| *recent = (*recent).min(rest.ftds));
        // A difference of sums: rounding leaves specks of exposure where the parts hold it all.
        if rest.exposure <= 1e-9 * self.exposure {
            rest = WindowTotals { ftds: rest.ftds, recent_ftds: rest.recent_ftds, ..WindowTotals::default() };
        }
        rest
    }
}

/// The parts of one offer's traffic the change test is stratified by: each of its `segments`, and what
/// they leave of its whole history (`ftds` and `exposure` by age; `weights[age]` a click's exposure).
/// That rest (traffic in no segment the store keeps) is one part: a move of traffic within it would
/// still read as a change.
fn change_parts(
    ftds: &[u64],
    exposure: &[f64],
    segments: &[&SegmentHistory],
    weights: &[f64],
    grid: &WindowGrid,
) -> Vec<WindowTotals> {
    let whole = WindowTotals::dense(ftds, exposure, grid);
    let hours = ftds.len().min(exposure.len());
    let mut parts: Vec<WindowTotals> = segments
        .iter()
        .map(|segment| {
            let clicks = segment.clicks.iter().filter(|&&(age, _)| age < hours);
            let ftds = segment.ftds.iter().filter(|&&(age, _)| age < hours);
            WindowTotals::of(
                clicks
                    .map(|&(age, clicks)| (age, 0, clicks as f64 * weights[age]))
                    .chain(ftds.map(|&(age, ftds)| (age, ftds, 0.0))),
                grid,
            )
        })
        .collect();
    parts.push(whole.beyond(&parts));
    parts
}

/// Hours of an offer's `hours` of history to use: all of it, or those since a change of its FTD rate.
///
/// The test is stratified by the parts of the offer's traffic (its segments, see [`WindowTotals`]):
/// given each part's FTDs, its recent ones are binomial with the recent share of its exposure if
/// nothing changed. The window where they deviate most (the parts' deviations summed, a score test)
/// locates a change, and the likelihood ratio of a common factor between the recent and the older
/// rates against none says whether it is one ([`signed_root_likelihood_ratio`]). A shift of the
/// offer's traffic between segments that convert differently (the router sending it more of the
/// countries where it wins) is then no change, as it is not: tested on the totals, it read as one
/// and cut the history of every segment of the offer.
///
/// The most significant window of [`CHANGE_WINDOWS`] is looked at closer ([`locate_change`];
/// `parts_on` gives the parts' totals on any grid). On the coarse grid alone, a change whose offer
/// lost its traffic soon after was lost again days later: its evidence is the hours after it, which
/// the coarse windows either side of them dilute with as many hours from before; and cutting at the
/// coarse grid's windows dropped up to a third of those hours, most of what is known of the offer's
/// new rate.
pub fn change_window(parts_on: impl Fn(&WindowGrid) -> Vec<WindowTotals>, hours: usize) -> usize {
    most_significant(&parts_on(&CHANGE_WINDOWS), &CHANGE_WINDOWS, hours)
        .and_then(|index| locate_change(&parts_on, index, hours))
        .unwrap_or(hours)
}

/// Looks closer around window `index` of [`CHANGE_WINDOWS`]: the most significant window of a grid
/// of as many windows between its two neighbours must pass [`CHANGE_Z`], and rounds of finer grids
/// around the most significant window locate the change to the hour. The window since the change.
fn locate_change(parts_on: &impl Fn(&WindowGrid) -> Vec<WindowTotals>, index: usize, hours: usize) -> Option<usize> {
    let mut below = index.checked_sub(1).map_or(0, |i| CHANGE_WINDOWS[i]);
    let mut above = CHANGE_WINDOWS.get(index + 1).map_or(hours, |&window| window.min(hours));
    let mut fine = grid_between(below, above);
    let parts = parts_on(&fine);
    let mut index = most_significant(&parts, &fine, hours)?;
    let tested: Vec<Stratum> = strata(&parts, index).collect();
    if signed_root_likelihood_ratio(&tested).abs() <= CHANGE_Z {
        return None;
    }
    loop {
        let located = fine[index];
        // The located window may straddle the change by part of a step: keep the next shorter one,
        // which holds only data from after it.
        let shorter = fine[..index].iter().rev().find(|&&window| window < located).map_or(below, |&w| w);
        let longer = fine[index + 1..].iter().find(|&&window| window > located).map_or(above, |&w| w);
        let found = if shorter > 0 { shorter } else { located };
        if above - below <= CHANGE_WINDOWS.len() + 1 || (shorter, longer) == (below, above) {
            return Some(found);
        }
        (below, above) = (shorter, longer);
        fine = grid_between(below, above);
        match most_significant(&parts_on(&fine), &fine, hours) {
            Some(next) => index = next,
            None => return Some(found),
        }
    }
}

/// As many windows as [`CHANGE_WINDOWS`] spread evenly between `below` and `above` hours (exclusive
/// of `below`).
fn grid_between(below: usize, above: usize) -> WindowGrid {
    std::array::from_fn(|k| below + (above - below) * (k + 1) / (CHANGE_WINDOWS.len() + 1))
}

/// The window of `grid` (shorter than `hours`) whose stratified score statistic is largest in size:
/// the recent FTDs' deviation from their mean if nothing changed, over its standard deviation. It
/// locates a change; [`signed_root_likelihood_ratio`] says whether it is one.
fn most_significant(parts: &[WindowTotals], grid: &WindowGrid, hours: usize) -> Option<usize> {
    let mut best: Option<(f64, usize)> = None;
    for (index, _) in grid.iter().enumerate().take_while(|&(_, &window)| window < hours) {
        let Some(z) = score(strata(parts, index)) else { continue };
        let z = z.abs();
        if best.is_none_or(|(best_z, _)| z > best_z) {
            best = Some((z, index));
        }
    }
    best.map(|(_, index)| index)
}

/// The stratified score statistic: the recent FTDs' deviation from their mean if the rate did not
/// change, over its standard deviation; `None` with too few FTDs to test.
fn score(strata: impl Iterator<Item = Stratum>) -> Option<f64> {
    // FTDs in all, recent FTDs, and the recent FTDs' mean and variance if the rate did not change.
    let (mut n, mut recent, mut mean, mut variance) = (0.0, 0.0, 0.0, 0.0);
    for stratum in strata {
        n += stratum.ftds;
        recent += stratum.recent;
        mean += stratum.ftds * stratum.share;
        variance += stratum.ftds * stratum.share * (1.0 - stratum.share);
    }
    (n >= CHANGE_MIN_FTDS && mean >= CHANGE_MIN_EXPECTED).then(|| (recent - mean) / variance.sqrt())
}

/// The parts that can tell a change in window `index`: those with exposure both recent and older.
fn strata(parts: &[WindowTotals], index: usize) -> impl Iterator<Item = Stratum> + '_ {
    parts.iter().filter_map(move |part| {
        // A part without exposure (NaN here) tells nothing; nor does one all recent or all older,
        // within rounding.
        let share = part.recent_exposure[index] / part.exposure;
        (part.ftds > 0 && (1e-9..=1.0 - 1e-9).contains(&share)).then(|| Stratum {
            ftds: part.ftds as f64,
            recent: part.recent_ftds[index] as f64,
            share,
        })
    })
}

/// One part of an offer's traffic as a window's change test reads it.
#[derive(Debug, Clone, Copy)]
struct Stratum {
    /// FTDs of all its clicks.
    ftds: f64,
    /// FTDs of its recent clicks.
    recent: f64,
    /// The recent clicks' share of its exposure.
    share: f64,
}

/// The change test's statistic: the signed root of the likelihood ratio of "the recent FTD rate is
/// the older one times a factor common to every stratum" against "unchanged", each stratum's recent
/// FTDs binomial given its FTDs (a recent share `s` of the exposure turns into `q = t s / (t s + 1 -
/// s)` at a factor `t`). Under no change it is about standard normal, as the score test's `z` is,
/// but closer in the tails when a window expects few FTDs: the score test read a burst of 16
/// postbacks where 5 were expected as 4.9 standard errors (the likelihood ratio: 3.9; the Poisson
/// tail is as rare as 3.8), and in the simulator every false alarm on a stationary offer was such a
/// burst in its last 4 to 45 hours; while it read a drop, the change that matters most, as smaller
/// (3 FTDs where 20 were expected: 3.8; the likelihood ratio 4.8, the tail 4.5).
fn signed_root_likelihood_ratio(strata: &[Stratum]) -> f64 {
    let (recent, mean): (f64, f64) = strata.iter().fold((0.0, 0.0), |(r, m), s| (r + s.recent, m + s.ftds * s.share));
    // Newton's method on the log factor (the log likelihood is concave in it), from the ratio of the
    // recent FTDs to their mean; steps bounded, and the factor too (all or none of the FTDs recent).
    let mut log_factor = ((recent + 0.5) / (mean + 0.5)).ln();
    for _ in 0..50 {
        let factor = log_factor.exp();
        let (mut gradient, mut curvature) = (recent, 0.0);
        for stratum in strata {
            let q = factor * stratum.share / (factor * stratum.share + 1.0 - stratum.share);
            gradient -= stratum.ftds * q;
            curvature += stratum.ftds * q * (1.0 - q);
        }
        let step = (gradient / curvature).clamp(-2.0, 2.0);
        if !step.is_finite() {
            break;
        }
        log_factor = (log_factor + step).clamp(-20.0, 20.0);
        if step.abs() < 1e-9 {
            break;
        }
    }
    let factor = log_factor.exp();
    // The log likelihood's gain over no change: recent ln t - sum of ftds ln(1 + s (t - 1)).
    let gain = recent * log_factor - strata.iter().map(|s| s.ftds * (s.share * (factor - 1.0)).ln_1p()).sum::<f64>();
    (2.0 * gain).max(0.0).sqrt().copysign(log_factor)
}

/// The routing draws (sharpened rates, see [`routing_samplers`]): each offer's probability of being
/// best, and every draw's EPCs, draw-major.
fn monte_carlo(posteriors: &[OfferPosterior], draws: usize, seed: u64) -> (Vec<f64>, Vec<f64>) {
    let k = posteriors.len();
    if k == 0 {
        return (Vec::new(), Vec::new());
    }
    let mut rng = SmallRng::seed_from_u64(seed);
    let samplers: Vec<(Gamma<f64>, Normal<f64>)> = posteriors.iter().map(routing_samplers).collect();
    let draws = draws.max(1);
    let mut wins = vec![0u64; k];
    let mut route_draws = Vec::with_capacity(draws * k);
    for _ in 0..draws {
        let mut best = (f64::NEG_INFINITY, 0);
        for (index, (rate, payout)) in samplers.iter().enumerate() {
            let epc = rate.sample(&mut rng) * payout.sample(&mut rng).max(0.0);
            route_draws.push(epc);
            if epc > best.0 {
                best = (epc, index);
            }
        }
        wins[best.1] += 1;
    }
    (wins.iter().map(|&w| w as f64 / draws as f64).collect(), route_draws)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::RngExt;
    use rand_distr::{Exp, LogNormal, Poisson};

    /// `F(age)` of an exponential delay with `mean_hours`: the truth of most tests.
    fn exponential(mean_hours: f64) -> impl Fn(usize) -> f64 {
        move |age| 1.0 - (-(age as f64 + 1.0) / mean_hours).exp()
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
        simulated(HORIZON_HOURS, offer_id, per_hour, rate, exponential_delays(delay_mean), seed)
    }

    /// Draws exponential delays with `mean_hours`.
    fn exponential_delays(mean_hours: f64) -> impl FnMut(&mut SmallRng) -> f64 {
        let delay = Exp::new(1.0 / mean_hours).unwrap();
        move |rng| delay.sample(rng)
    }

    /// The same for an offer that has had clicks only for the last `hours` hours, with delays (in
    /// hours) drawn by `sample_delay`.
    fn median(mut values: Vec<f64>) -> f64 {
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    }

    fn simulated(
        hours: usize,
        offer_id: i64,
        per_hour: u64,
        rate: impl Fn(usize) -> f64,
        sample_delay: impl FnMut(&mut SmallRng) -> f64,
        seed: u64,
    ) -> (OfferHistory, Vec<(usize, usize, u64)>) {
        let clicks = |age| if age < hours { per_hour } else { 0 };
        simulated_traffic(offer_id, clicks, rate, sample_delay, seed)
    }

    /// The same with `clicks(age)` clicks in the hour aged `age`.
    fn simulated_traffic(
        offer_id: i64,
        clicks: impl Fn(usize) -> u64,
        rate: impl Fn(usize) -> f64,
        mut sample_delay: impl FnMut(&mut SmallRng) -> f64,
        seed: u64,
    ) -> (OfferHistory, Vec<(usize, usize, u64)>) {
        let mut rng = SmallRng::seed_from_u64(seed);
        let mut offer = OfferHistory {
            offer_id,
            clicks: (0..HORIZON_HOURS).map(&clicks).collect(),
            ftds: vec![0; HORIZON_HOURS],
            payouts: vec![Payouts::default(); HORIZON_HOURS],
            ..Default::default()
        };
        let mut delays = Vec::new();
        for age in 0..HORIZON_HOURS {
            let expected = clicks(age) as f64 * rate(age);
            if expected <= 0.0 {
                continue;
            }
            let converted = Poisson::new(expected).unwrap().sample(&mut rng) as u64;
            for _ in 0..converted {
                // Clicked at a uniform time within its hour (the hour ended now), the FTD has arrived
                // if its delay is shorter than the time since.
                let delay = sample_delay(&mut rng);
                if delay <= age as f64 + rng.random::<f64>() {
                    let d = delay as usize;
                    offer.delays.push((age, d, 1));
                    offer.ftds[age] += 1;
                    offer.payouts[age].add(Payouts::of(100.0));
                    delays.push((age, d, 1));
                }
            }
        }
        (offer, delays)
    }

    /// `F(age)` as `offer`'s delays alone weigh the shapes.
    fn estimated_delay(offer: &OfferHistory) -> impl Fn(usize) -> f64 + use<> {
        let evidence = DelayEvidence::new(&offer.delays, &offer.clicks, &ShapeExposure::new(1.0));
        let fit = DelayModel::parametric(&evidence.shape_weights(offer.ftds.iter().sum(), None, &EVEN_SHAPE_PRIOR));
        let delay = DelayModel::estimate(&offer.delays, &fit);
        move |age| delay.arrived_by(age)
    }

    #[test]
    fn the_delay_estimate_recovers_a_known_distribution_despite_truncation() {
        let (offer, delays) = history(1, 160, |_| 0.04, 48.0, 0);
        let (estimated, truth) = (estimated_delay(&offer), exponential(48.0));
        for d in [6, 24, 48, 96, 200] {
            let (e, t) = (estimated(d), truth(d));
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
    fn a_delay_outside_the_fitted_shapes_is_recovered_from_a_month_of_data() {
        // Two peaks, as when some players deposit at once and others days later: 60% exponential
        // with a 2-hour mean, 40% log-normal around 5 days. No single shape of the fit is like it.
        let late = LogNormal::new(120f64.ln(), 0.5).unwrap();
        let early = Exp::new(0.5).unwrap();
        let sample = |rng: &mut SmallRng| if rng.random_bool(0.6) { early.sample(rng) } else { late.sample(rng) };
        let (offer, _) = simulated(HORIZON_HOURS, 1, 160, |_| 0.04, sample, 3);
        let estimated = estimated_delay(&offer);
        let truth = |age: usize| {
            let hours = (age + 1) as f64;
            let late_share = 0.5 * erfc(-(hours / 120.0).ln() / (0.5 * std::f64::consts::SQRT_2));
            0.6 * (1.0 - (-hours / 2.0).exp()) + 0.4 * late_share
        };
        for age in [1, 6, 24, 72, 120, 200, 400] {
            let (e, t) = (estimated(age), truth(age));
            assert!((e - t).abs() < 0.05, "F({age}) estimated {e:.3}, true {t:.3}");
        }
    }

    #[test]
    fn a_day_of_censored_delays_tells_a_fast_platform_from_a_slow_one() {
        // Both offers are one day old, with the same FTD rate: every click younger than a day, most
        // of the slow offer's FTDs still to come.
        let (fast, _) = simulated(24, 1, 300, |_| 0.04, exponential_delays(3.0), 21);
        let (slow, _) = simulated(24, 2, 300, |_| 0.04, exponential_delays(96.0), 22);
        let slow_ftds: u64 = slow.ftds.iter().sum();
        let (fast_f, slow_f, fast_truth) = (estimated_delay(&fast), estimated_delay(&slow), exponential(3.0));
        for age in [6, 12, 23] {
            assert!((fast_f(age) - fast_truth(age)).abs() < 0.1, "fast F({age}) = {:.3}", fast_f(age));
            // The truth is at most 0.22.
            assert!(slow_f(age) < 0.4, "slow F({age}) = {:.3}", slow_f(age));
        }
        // The slow offer's silence is not read as failure: its rate is not far below the fast one's.
        let result = evaluate(&Evidence::offers(&[fast, slow]), 1_000, 5);
        let rates: Vec<f64> = result.posteriors.iter().map(OfferPosterior::mean_rate).collect();
        assert!((rates[0] - 0.04).abs() < 0.006, "fast offer rate {rates:?}");
        let naive = slow_ftds as f64 / (24.0 * 300.0); // every click without an FTD a failure
        assert!(rates[1] > 0.025 && rates[1] > 4.0 * naive, "slow offer rate {rates:?}, naive {naive:.4}");
    }

    #[test]
    fn without_ftds_an_offer_is_given_every_shape_including_slow_ones() {
        let silent = OfferHistory { clicks: vec![10; HORIZON_HOURS], ..Default::default() };
        let evidence = DelayEvidence::new(&[], &silent.clicks, &ShapeExposure::new(1.0));
        let weights = evidence.shape_weights(0, None, &EVEN_SHAPE_PRIOR);
        let plausible = DelayShape::all().iter().filter(|s| s.log_prior == 0.0).count();
        assert!(plausible > DELAY_SHAPES * 9 / 10, "{plausible} of {DELAY_SHAPES} shapes are plausible");
        for (w, shape) in weights.iter().zip(DelayShape::all()) {
            let expected = if shape.log_prior == 0.0 { 1.0 / plausible as f64 } else { 0.0 };
            assert!((w - expected).abs() < 1e-12, "{weights:?}");
        }
        let f = estimated_delay(&silent);
        assert!(f(24) < 0.7 && f(96) < 0.9, "a long tail: slow platforms exist (F(1 day) = {:.2})", f(24));
        assert!(f(0) < f(24) && f(24) < f(96) && f(96) < f(HORIZON_HOURS - 1));
    }

    #[test]
    fn a_young_offers_rate_is_not_overstated_by_slow_wide_delay_shapes() {
        // Offers one to three days old, with log-normal delays of a day's median: a few of their
        // first FTDs can fit a very slow, wide shape best, one that leaves FTDs to arrive after the
        // horizon and so reads the silent clicks as FTDs still to come. Over many seeded histories
        // the posterior mean rate stays near the truth (unbounded shapes: a median 22% high, a
        // quarter of the histories 50% high).
        let delay = LogNormal::new(24f64.ln(), 1.0).unwrap();
        let mut ratios = Vec::new();
        for seed in 0..200 {
            for hours in [24, 36, 48, 72] {
                let (young, _) = simulated(hours, 1, 100, |_| 0.025, |rng: &mut SmallRng| delay.sample(rng), seed);
                let (other, _) =
                    simulated(hours, 2, 300, |_| 0.04, |rng: &mut SmallRng| delay.sample(rng), seed + 1_000);
                ratios.push(evaluate(&Evidence::offers(&[young, other]), 10, 1).posteriors[0].mean_rate() / 0.025);
            }
        }
        let overstated = ratios.iter().filter(|&&r| r > 1.5).count() as f64 / ratios.len() as f64;
        let median = median(ratios);
        assert!((0.9..1.12).contains(&median), "median rate / truth {median:.2}");
        assert!(overstated < 0.12, "{:.0}% of histories overstate the rate by half", 100.0 * overstated);
    }

    #[test]
    fn a_young_offers_delay_spread_is_learned_from_the_other_offers() {
        // A day-old offer whose platform reports within hours (log-normal, median 6 hours) beside an
        // established one whose delays have the same spread (median 2 hours). The young offer's
        // delays, cut off at its age, fit a slower and wider shape about as well as its own, and
        // such a shape reads its young clicks as less exposure than they are: alone, its rate comes
        // out overstated (median over 100 seeded histories: 14% high). With the spread learned from
        // the established offer it is about right (0%).
        let young_delay = LogNormal::new(6f64.ln(), 1.0).unwrap();
        let established_delay = LogNormal::new(2f64.ln(), 1.0).unwrap();
        let (mut alone, mut beside) = (Vec::new(), Vec::new());
        for seed in 0..100 {
            let (young, _) = simulated(24, 1, 100, |_| 0.02, |rng: &mut SmallRng| young_delay.sample(rng), seed);
            let (established, _) =
                simulated(HORIZON_HOURS, 2, 30, |_| 0.035, |rng: &mut SmallRng| established_delay.sample(rng), seed);
            alone.push(
                evaluate(&Evidence::offers(std::slice::from_ref(&young)), 10, 1).posteriors[0].mean_rate() / 0.02,
            );
            beside.push(evaluate(&Evidence::offers(&[young, established]), 10, 1).posteriors[0].mean_rate() / 0.02);
        }
        let (alone, beside) = (median(alone), median(beside));
        assert!((0.9..1.1).contains(&beside), "median rate / truth beside the established offer {beside:.2}");
        assert!(alone > beside + 0.08, "alone {alone:.2}, beside the established offer {beside:.2}");
    }

    #[test]
    fn a_young_offer_slower_than_its_peer_is_not_presumed_as_fast() {
        // A 20-hour-old offer whose platform reports after a day (median), beside an established one
        // reporting after 12 hours: the young offer's own delays, cut off at 20 hours, cannot tell a
        // day from half a day, and a prior at the peer's very median read its young clicks as more
        // exposure than they are: its rate 38% low (median over 100 seeded histories); 16% with the
        // prior spread by an octave.
        let young_delay = LogNormal::new(24f64.ln(), 1.0).unwrap();
        let peer_delay = LogNormal::new(12f64.ln(), 1.0).unwrap();
        let ratios: Vec<f64> = (0..100)
            .map(|seed| {
                let (young, _) = simulated(20, 1, 200, |_| 0.02, |rng: &mut SmallRng| young_delay.sample(rng), seed);
                let (peer, _) =
                    simulated(HORIZON_HOURS, 2, 30, |_| 0.035, |rng: &mut SmallRng| peer_delay.sample(rng), seed);
                evaluate(&Evidence::offers(&[young, peer]), 10, 1).posteriors[0].mean_rate() / 0.02
            })
            .collect();
        let median = median(ratios);
        assert!((0.78..1.1).contains(&median), "median rate / truth {median:.2}");
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
        let result = evaluate(&Evidence::offers(&[old, young]), 2_000, 1);
        let young_rate = result.posteriors[1].mean_rate();
        let naive_rate = 1.0 / (1.0 / 0.04 + 2_000.0); // the same prior, every click a failure
        assert!(young_rate > 0.01 && young_rate > 20.0 * naive_rate, "posterior mean rate {young_rate}");
        assert!(result.posteriors[1].exposure < 50.0, "2000 young clicks weigh {}", result.posteriors[1].exposure);
    }

    /// Three offers converting at 4%, 2% and 1%, 40 clicks an hour each.
    fn three_offers() -> Vec<OfferHistory> {
        [(1, 0.04), (2, 0.02), (3, 0.01)]
            .iter()
            .map(|&(id, rate)| history(id, 40, move |_| rate, 6.0, id as u64).0)
            .collect()
    }

    #[test]
    fn the_best_among_a_subset_is_read_off_the_same_draws() {
        // Offer 1 converts at 4%, offers 2 and 3 at 2% and 1%: among 2 and 3 alone, 2 is nearly
        // always best, though it is nearly never best of all three.
        let offers = three_offers();
        let result = evaluate(&Evidence::offers(&offers), 2_000, 7);
        assert_eq!(result.probability_best_among(None, &[0, 1, 2]), result.probability_best, "the full set");
        assert!(result.probability_best[1] < 0.05, "{:?}", result.probability_best);
        let among = result.probability_best_among(None, &[1, 2]);
        assert!(among[0] > 0.9 && (among.iter().sum::<f64>() - 1.0).abs() < 1e-12, "{among:?}");
        assert_eq!(result.probability_best_among(None, &[2]), [1.0]);
    }

    #[test]
    fn a_cut_in_payout_is_believed_from_the_change_on_and_steady_noisy_payouts_are_not_cut() {
        // 3% of 40 clicks an hour; the casino paid $150 per FTD until 60 hours ago, $75 since.
        let (mut cut, _) = history(1, 40, |_| 0.03, 6.0, 11);
        for (age, payouts) in cut.payouts.iter_mut().enumerate() {
            let (amount, n) = (if age < 60 { 75.0 } else { 150.0 }, payouts.count as f64);
            *payouts = Payouts { count: payouts.count, sum: amount * n, sum_sq: amount * amount * n };
        }
        // A revenue share: every FTD pays differently (log-normal, spread 1), the same all month.
        let (mut revshare, _) = history(2, 40, |_| 0.03, 6.0, 12);
        let mut rng = SmallRng::seed_from_u64(5);
        let amounts = rand_distr::LogNormal::new(4.5, 1.0).unwrap();
        for payouts in &mut revshare.payouts {
            let mut drawn = Payouts::default();
            (0..payouts.count).for_each(|_| drawn.add(Payouts::of(amounts.sample(&mut rng))));
            *payouts = drawn;
        }
        let result = evaluate(&Evidence::offers(&[cut, revshare]), 1_000, 1);
        let cut = &result.posteriors[0];
        assert!((48..=72).contains(&cut.payout_window_hours), "window {}", cut.payout_window_hours);
        assert!((cut.payout_mean - 75.0).abs() < 5.0, "mean payout {:.1}", cut.payout_mean);
        assert_eq!(result.posteriors[1].payout_window_hours, HORIZON_HOURS, "{:?}", result.posteriors[1]);
    }

    #[test]
    fn an_exploration_rate_gives_every_member_its_even_part_of_that_share() {
        let offers = three_offers();
        let result = evaluate(&Evidence::offers(&offers), 2_000, 7);
        assert_eq!(result.probability_best[2], 0.0, "the 1% offer is never best: {:?}", result.probability_best);
        let mut without = result.routing_shares(0.0);
        assert_eq!(without(None, &[0, 1, 2]), result.probability_best);
        let mut with = result.routing_shares(0.3);
        for (members, alone) in [(vec![0, 1, 2], result.probability_best.clone()), (vec![1, 2], without(None, &[1, 2]))]
        {
            let shares = with(None, &members);
            let even = 0.3 / members.len() as f64;
            for (share, p) in shares.iter().zip(&alone) {
                assert!((share - (0.7 * p + even)).abs() < 1e-12, "{shares:?} from {alone:?}");
            }
            assert!((shares.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        }
    }

    #[test]
    fn a_high_payout_does_not_make_a_young_offer_look_best_before_its_clicks_have_spoken() {
        // An established offer (3% at $100: EPC 3) and a young one whose first click converted at
        // $400. A priori an offer is worth the pooled EPC: its rate's prior is what would give it
        // that EPC at its payout, so the young offer's posterior EPC is about 5 (twice the evidence
        // of one FTD on a few clicks, shrunk toward 3). A prior at the pooled rate of 3% would put it
        // above 10, and it would take nearly all traffic until its clicks proved it poor.
        let (established, _) = history(1, 30, |_| 0.03, 24.0, 5);
        let mut young = OfferHistory {
            offer_id: 2,
            clicks: vec![0; HORIZON_HOURS],
            ftds: vec![0; HORIZON_HOURS],
            payouts: vec![Payouts::of(400.0)],
            delays: vec![(0, 0, 1)],
        };
        (young.clicks[0], young.ftds[0]) = (40, 1);
        let result = evaluate(&Evidence::offers(&[established, young]), 1_000, 1);
        let epc = |i: usize| result.posteriors[i].mean_epc();
        assert!((epc(0) - 3.0).abs() < 0.4, "established offer's EPC {:.2}", epc(0));
        assert!(epc(1) < 2.0 * epc(0), "young offer's EPC {:.2} against {:.2}", epc(1), epc(0));
        assert!(epc(1) > epc(0), "one FTD on 40 clicks is good news: {:.2} against {:.2}", epc(1), epc(0));
    }

    #[test]
    fn the_posterior_matches_the_data_and_prefers_the_better_offer() {
        let (good, _) = history(1, 30, |_| 0.05, 24.0, 1);
        let (poor, _) = history(2, 30, |_| 0.02, 24.0, 2);
        let result = evaluate(&Evidence::offers(&[good, poor]), 4_000, 7);
        let rate = |i: usize| result.posteriors[i].mean_rate();
        assert!((rate(0) - 0.05).abs() < 0.005, "good offer rate {}", rate(0));
        assert!((rate(1) - 0.02).abs() < 0.004, "poor offer rate {}", rate(1));
        assert!(result.probability_best[0] > 0.99, "{:?}", result.probability_best);
        assert!((result.probability_best.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        let (low, high) = result.epc_intervals()[0];
        assert!(low < result.posteriors[0].mean_epc() && result.posteriors[0].mean_epc() < high);
    }

    #[test]
    fn an_offer_whose_platform_reports_late_is_judged_by_its_own_delays() {
        // Same FTD rate; the fast offer has ten times the traffic: delays pooled over both offers
        // would be the fast offer's, and the slow one's young clicks would count as failures.
        let (fast, _) = history(1, 300, |_| 0.04, 4.0, 11);
        let (slow, _) = history(2, 30, |_| 0.04, 96.0, 12);
        let result = evaluate(&Evidence::offers(&[fast, slow]), 1_000, 3);
        let rate = |i: usize| result.posteriors[i].mean_rate();
        assert!((rate(0) - 0.04).abs() < 0.004, "fast offer rate {}", rate(0));
        assert!((rate(1) - 0.04).abs() < 0.008, "slow offer rate {}", rate(1));
    }

    #[test]
    fn the_change_detector_fires_on_a_halving_and_not_on_noise() {
        let delay = exponential(24.0);
        let exposure = |offer: &OfferHistory| -> Vec<f64> {
            offer.clicks.iter().enumerate().map(|(a, &n)| n as f64 * delay(a)).collect()
        };
        // Halved 48 hours ago, on an offer with 400 clicks an hour (about 380 FTDs a day before).
        for seed in 0..10 {
            let (halved, _) = history(1, 400, |age| if age < 48 { 0.02 } else { 0.04 }, 24.0, 100 + seed);
            let parts_on = |grid: &WindowGrid| vec![WindowTotals::dense(&halved.ftds, &exposure(&halved), grid)];
            let window = change_window(parts_on, HORIZON_HOURS);
            assert!(window <= 72, "seed {seed}: a halving 48 h ago kept {window} h of history");
            // Located within hours, so that the data since the change is kept (the coarse grid's
            // next shorter window would keep 48 of 73 hours).
            let (halved, _) = history(1, 400, |age| if age < 73 { 0.02 } else { 0.04 }, 24.0, 300 + seed);
            let parts_on = |grid: &WindowGrid| vec![WindowTotals::dense(&halved.ftds, &exposure(&halved), grid)];
            let window = change_window(parts_on, HORIZON_HOURS);
            assert!((64..=76).contains(&window), "seed {seed}: a halving 73 h ago kept {window} h of history");
        }
        // Stationary: the whole horizon is kept.
        let mut alarms = 0;
        for seed in 0..200 {
            let (steady, _) = history(1, 400, |_| 0.04, 24.0, 200 + seed);
            let parts_on = |grid: &WindowGrid| vec![WindowTotals::dense(&steady.ftds, &exposure(&steady), grid)];
            let window = change_window(parts_on, HORIZON_HOURS);
            alarms += usize::from(window < HORIZON_HOURS);
        }
        assert_eq!(alarms, 0, "false alarms on stationary data");
    }

    #[test]
    fn the_change_statistic_reads_a_burst_of_few_postbacks_as_less_than_a_drop() {
        // One stratum, its recent clicks a hundredth of its exposure (Poisson-like recent FTDs).
        let one = |ftds: f64, recent: f64| signed_root_likelihood_ratio(&[Stratum { ftds, recent, share: 0.01 }]);
        let score = |ftds: f64, recent: f64| score([Stratum { ftds, recent, share: 0.01 }].into_iter()).unwrap();
        // 16 postbacks where 5 were expected: 4.9 standard errors to the score test, below the bar here.
        let burst = one(500.0, 16.0);
        assert!(score(500.0, 16.0) > CHANGE_Z && (3.7..4.1).contains(&burst), "burst: {burst}");
        // 3 where 20 were expected: below the bar to the score test, above it here.
        let drop = one(2000.0, 3.0);
        assert!(score(2000.0, 3.0) > -CHANGE_Z && (-4.9..-4.6).contains(&drop), "drop: {drop}");
        // None recent, or all: finite, and the sign of the change.
        assert!(one(2000.0, 0.0) < -6.0 && one(20.0, 20.0) > 6.0);
        // As expected: no evidence of a change.
        assert!(one(2000.0, 20.0).abs() < 1e-6);
        // Strata share one factor: a rise in one and a fall in another do not add up to a change,
        // the same rise in both adds up to more than either alone.
        let stratum = |recent: f64| Stratum { ftds: 1000.0, recent, share: 0.02 };
        let mixed = signed_root_likelihood_ratio(&[stratum(30.0), stratum(10.0)]);
        let both = signed_root_likelihood_ratio(&[stratum(30.0), stratum(30.0)]);
        let alone = signed_root_likelihood_ratio(&[stratum(30.0)]);
        assert!(mixed.abs() < 1e-6 && both > alone * 1.3, "mixed {mixed}, both {both}, alone {alone}");
    }

    #[test]
    fn a_change_stays_found_after_the_offer_lost_its_traffic() {
        // Halved 360 hours ago, and routed away a day later: since then a trickle of 2 clicks an
        // hour. The day after the change is its evidence, 336 to 360 hours old, between the coarse
        // windows of 336 and 432 hours; both dilute it with as many hours from before the change.
        let delay = exponential(24.0);
        for seed in 0..10 {
            let clicks = |age: usize| if age < 336 { 2 } else { 400 };
            let rate = |age: usize| if age < 360 { 0.02 } else { 0.04 };
            let (offer, _) = simulated_traffic(1, clicks, rate, exponential_delays(24.0), 400 + seed);
            let exposure: Vec<f64> = offer.clicks.iter().enumerate().map(|(a, &n)| n as f64 * delay(a)).collect();
            let parts_on = |grid: &WindowGrid| vec![WindowTotals::dense(&offer.ftds, &exposure, grid)];
            let window = change_window(parts_on, HORIZON_HOURS);
            // Found, and located within a few hours: most of that day kept, little from before it.
            assert!((340..=366).contains(&window), "seed {seed}: kept {window} h of history");
        }
    }

    /// One offer's traffic in segments: `(segment, clicks an hour, FTD rate)` each, simulated for the
    /// whole horizon with exponential delays of 12 hours; the offer's history is their sum.
    fn segmented(
        offer_id: i64,
        offer: usize,
        parts: &[(usize, u64, f64)],
        seed: u64,
    ) -> (OfferHistory, Vec<SegmentHistory>) {
        let parts = parts.iter().enumerate().map(|(i, &(segment, per_hour, rate))| {
            (segment, history(offer_id, per_hour, move |_| rate, 12.0, seed * 100 + i as u64).0)
        });
        combined(offer_id, offer, parts)
    }

    /// One offer's history made of its segments' `(segment, history)`.
    fn combined(
        offer_id: i64,
        offer: usize,
        parts: impl IntoIterator<Item = (usize, OfferHistory)>,
    ) -> (OfferHistory, Vec<SegmentHistory>) {
        let mut total = OfferHistory {
            offer_id,
            clicks: vec![0; HORIZON_HOURS],
            ftds: vec![0; HORIZON_HOURS],
            payouts: vec![Payouts::default(); HORIZON_HOURS],
            ..Default::default()
        };
        let mut segments = Vec::new();
        for (segment, part) in parts {
            let sparse = |series: &[u64]| series.iter().copied().enumerate().filter(|&(_, n)| n > 0).collect();
            segments.push(SegmentHistory {
                segment,
                offer,
                clicks: sparse(&part.clicks),
                ftds: sparse(&part.ftds),
                payouts: (part.payouts.iter().enumerate())
                    .filter(|(_, p)| p.count > 0)
                    .map(|(age, p)| (age, p.count, p.sum))
                    .collect(),
            });
            total.clicks.iter_mut().zip(&part.clicks).for_each(|(t, n)| *t += n);
            total.ftds.iter_mut().zip(&part.ftds).for_each(|(t, n)| *t += n);
            total.payouts.iter_mut().zip(&part.payouts).for_each(|(t, &p)| t.add(p));
            total.delays.extend(part.delays);
        }
        (total, segments)
    }

    fn evaluate_segmented(parts: &[Vec<(usize, u64, f64)>], seed: u64) -> ThompsonResult {
        let (offers, segments): (Vec<OfferHistory>, Vec<Vec<SegmentHistory>>) =
            parts.iter().enumerate().map(|(i, p)| segmented(i as i64 + 1, i, p, seed + i as u64)).unzip();
        let segments: Vec<SegmentHistory> = segments.into_iter().flatten().collect();
        evaluate(
            &Evidence { offers: &offers, segments: &segments, segment_traits: &[], hour_elapsed: 1.0 },
            2_000,
            seed,
        )
    }

    #[test]
    fn traffic_moving_between_segments_is_no_change_but_a_halving_in_any_part_is() {
        // The offer converts at 6% in segment 0 and 2% in segment 1. Two days ago its traffic moved
        // from mostly segment 1 to mostly segment 0, as routing moves an offer toward where it wins:
        // its rate over all traffic nearly doubled, in no segment did it change.
        // `halved[s]`: segment `s`'s rate halved since the move.
        let moved = |halved: [bool; 2], seed: u64| {
            let rate = |base: f64, halved: bool| move |age: usize| if halved && age < 48 { base / 2.0 } else { base };
            let clicks = |recent: u64, before: u64| move |age: usize| if age < 48 { recent } else { before };
            let parts = [(0, clicks(160, 40), rate(0.06, halved[0])), (1, clicks(40, 160), rate(0.02, halved[1]))];
            combined(
                1,
                0,
                parts.into_iter().map(|(segment, clicks, rate)| {
                    let delays = exponential_delays(12.0);
                    (segment, simulated_traffic(1, clicks, rate, delays, seed * 10 + segment as u64).0)
                }),
            )
        };
        let window = |offer: &OfferHistory, segments: &[SegmentHistory]| {
            let offers = std::slice::from_ref(offer);
            evaluate(&Evidence { offers, segments, segment_traits: &[], hour_elapsed: 1.0 }, 100, 1).posteriors[0]
                .window_hours
        };
        for seed in 0..10 {
            let (offer, segments) = moved([false, false], seed);
            assert_eq!(
                window(&offer, &segments),
                HORIZON_HOURS,
                "seed {seed}: a move between segments cut the history"
            );
            // Segment 0 not kept apart: the rest of the offer's traffic is a part of its own.
            assert_eq!(window(&offer, &segments[1..]), HORIZON_HOURS, "seed {seed}: the rest read as a change");
            // Without its segments the same move reads as a change: the segments are what tell.
            assert!(window(&offer, &[]) < HORIZON_HOURS, "seed {seed}: the totals alone showed no change");
            let (offer, segments) = moved([true, true], seed);
            assert!(window(&offer, &segments) <= 72, "seed {seed}: a halving in every segment was missed");
            let (offer, segments) = moved([true, false], seed);
            assert!(window(&offer, &segments[1..]) <= 72, "seed {seed}: a halving in the rest was missed");
        }
    }

    #[test]
    fn a_segment_with_plenty_of_evidence_is_routed_on_its_own() {
        // Offer 1 converts at 6% in segment 0 and 2% in segment 1, offer 2 the other way round: over
        // all traffic they are even, in each segment one is clearly best.
        let result = evaluate_segmented(&[vec![(0, 20, 0.06), (1, 20, 0.02)], vec![(0, 20, 0.02), (1, 20, 0.06)]], 1);
        for overall in &result.posteriors {
            assert!((overall.mean_rate() - 0.04).abs() < 0.003, "over all traffic the offers are alike: {overall:?}");
        }
        for (segment, best) in [(0, 0), (1, 1)] {
            let shares = result.probability_best_among(Some(segment), &[0, 1]);
            assert!(shares[best] > 0.99, "segment {segment}: {shares:?}");
            let posterior = &result.segment(segment).unwrap().offers[best];
            assert!((posterior.mean_rate() - 0.06).abs() < 0.006, "segment {segment}: {posterior:?}");
        }
        assert!(result.segment_spread > 0.2, "segments differ twofold: spread {}", result.segment_spread);
    }

    #[test]
    fn a_segment_with_little_evidence_borrows_its_offers_overall_rates() {
        // A big segment where offer 1 converts at 5% and offer 2 at 2%, and a small one (a click a
        // day) with the same rates: what little the small segment shows is read against the big one,
        // so offer 1 stays the favourite there and its rate near 5%.
        let offers_parts = [vec![(0, 40, 0.05)], vec![(0, 40, 0.02)]];
        let (offers, mut segments): (Vec<OfferHistory>, Vec<Vec<SegmentHistory>>) =
            offers_parts.iter().enumerate().map(|(i, p)| segmented(i as i64 + 1, i, p, 7 + i as u64)).unzip();
        // The small segment's own data: 30 clicks of each offer some days ago, one FTD for the poorer
        // (a part of the offers' histories too small to matter there).
        segments[0].push(SegmentHistory { segment: 1, offer: 0, clicks: vec![(100, 30)], ..Default::default() });
        segments[1].push(SegmentHistory {
            segment: 1,
            offer: 1,
            clicks: vec![(100, 30)],
            ftds: vec![(100, 1)],
            payouts: vec![(100, 1, 100.0)],
        });
        let segments: Vec<SegmentHistory> = segments.into_iter().flatten().collect();
        let result = evaluate(
            &Evidence { offers: &offers, segments: &segments, segment_traits: &[], hour_elapsed: 1.0 },
            2_000,
            3,
        );
        assert!(result.segment_spread < 0.05, "the segments agree: spread {}", result.segment_spread);
        let small = result.segment(1).unwrap();
        assert!((small.offers[0].mean_rate() - 0.05).abs() < 0.01, "{:?}", small.offers[0]);
        let shares = result.probability_best_among(Some(1), &[0, 1]);
        assert!(shares[0] > 0.8, "one lucky FTD does not turn the small segment: {shares:?}");
    }

    #[test]
    fn an_offer_best_in_its_busiest_segment_is_not_presumed_best_in_the_others() {
        // Offer 1 converts at 6% in segment 0, where it gets most of its traffic, and at 2% in the
        // four others; offer 0 at 3% in segment 0 and 4% elsewhere. Over all their traffic offer 1
        // looks better, but a new segment is more like the typical one: offer 0 is its favourite.
        let typical = |rate| (1..=4).map(move |segment| (segment, 3, rate));
        let offer_0 = [(0, 5, 0.03)].into_iter().chain(typical(0.04)).collect();
        let offer_1 = [(0, 60, 0.06)].into_iter().chain(typical(0.02)).collect();
        let (offers, mut segments): (Vec<OfferHistory>, Vec<Vec<SegmentHistory>>) = [offer_0, offer_1]
            .iter()
            .enumerate()
            .map(|(i, parts): (usize, &Vec<(usize, u64, f64)>)| segmented(i as i64 + 1, i, parts, 11 + i as u64))
            .unzip();
        for (offer, parts) in segments.iter_mut().enumerate() {
            parts.push(SegmentHistory { segment: 5, offer, clicks: vec![(50, 2)], ..Default::default() });
        }
        let segments: Vec<SegmentHistory> = segments.into_iter().flatten().collect();
        let result = evaluate(
            &Evidence { offers: &offers, segments: &segments, segment_traits: &[], hour_elapsed: 1.0 },
            2_000,
            5,
        );
        assert!(
            result.posteriors[1].mean_rate() > 1.2 * result.posteriors[0].mean_rate(),
            "over all traffic offer 1 looks better: {:?}",
            result.posteriors
        );
        let new_segment = result.segment(5).unwrap();
        assert!(new_segment.offers[0].mean_rate() > 0.034, "{:?}", new_segment.offers[0]);
        assert!(new_segment.offers[1].mean_rate() < 0.034, "{:?}", new_segment.offers[1]);
        let shares = result.probability_best_among(Some(5), &[0, 1]);
        // Favoured, not sure: how far a segment may differ from the typical one is not narrowed.
        assert!(shares[0] > 0.6, "the new segment favours the typical segments' best: {shares:?}");
        let busiest = result.probability_best_among(Some(0), &[0, 1]);
        assert!(busiest[1] > 0.99, "segment 0 keeps its own best: {busiest:?}");
    }

    /// Segments 0-5: desktop and mobile visitors (in that order) of Germany, Britain and Brazil.
    fn three_countries_two_devices() -> Vec<Traits> {
        (0..6).map(|segment| [Some(segment / 2), Some(segment % 2), None]).collect()
    }

    /// Offer 0 converts three times as well on mobile (2% and 6%) in every country; offer 1 at 4%
    /// everywhere. Brazilian mobile (segment 5) has had ten clicks of each, no FTD.
    fn a_mobile_offer_in_three_countries() -> (Vec<OfferHistory>, Vec<SegmentHistory>) {
        let offer_0 = vec![(0, 30, 0.02), (1, 10, 0.06), (2, 30, 0.02), (3, 10, 0.06), (4, 30, 0.02)];
        let offer_1 = vec![(0, 10, 0.04), (1, 30, 0.04), (2, 10, 0.04), (3, 30, 0.04), (4, 10, 0.04)];
        let (offers, mut segments): (Vec<OfferHistory>, Vec<Vec<SegmentHistory>>) = [offer_0, offer_1]
            .iter()
            .enumerate()
            .map(|(i, parts)| segmented(i as i64 + 1, i, parts, 31 + i as u64))
            .unzip();
        for (offer, parts) in segments.iter_mut().enumerate() {
            parts.push(SegmentHistory { segment: 5, offer, clicks: vec![(50, 10)], ..Default::default() });
        }
        (offers, segments.into_iter().flatten().collect())
    }

    #[test]
    fn a_segment_borrows_from_the_segments_that_share_its_country_or_its_device() {
        let (offers, segments) = a_mobile_offer_in_three_countries();
        let evidence =
            |segment_traits| Evidence { offers: &offers, segments: &segments, segment_traits, hour_elapsed: 1.0 };
        let traits = three_countries_two_devices();
        let crossed = evaluate(&evidence(&traits), 2_000, 7);
        let brazilian_mobile = &crossed.segment(5).unwrap().offers;
        // Offer 0's typical visitor is on desktop (it got 60 desktop clicks an hour to 10 mobile);
        // in Brazilian mobile it is taken for what it is on mobile, and preferred.
        assert!((0.045..0.075).contains(&brazilian_mobile[0].mean_rate()), "{:?}", brazilian_mobile[0]);
        assert!((0.03..0.05).contains(&brazilian_mobile[1].mean_rate()), "{:?}", brazilian_mobile[1]);
        let shares = crossed.probability_best_among(Some(5), &[0, 1]);
        assert!(shares[0] > 0.6, "Brazilian mobile favours the mobile offer: {shares:?}");
        // Brazilian desktop, with its own evidence, keeps offer 1.
        assert!(crossed.probability_best_among(Some(4), &[0, 1])[1] > 0.99);

        // Segments taken as exchangeable: Brazilian mobile borrows offer 0's typical, desktop, rate.
        let exchangeable = evaluate(&evidence(&[]), 2_000, 7);
        let brazilian_mobile = &exchangeable.segment(5).unwrap().offers;
        assert!(brazilian_mobile[0].mean_rate() < 0.04, "{:?}", brazilian_mobile[0]);
        let shares = exchangeable.probability_best_among(Some(5), &[0, 1]);
        assert!(shares[1] > 0.5, "without the traits the typical rates rule: {shares:?}");
    }

    /// The factor the margins give `segment` for offer 0, and what the factors' correlations add to
    /// its log's variance, over segments `4 c + i` of three countries `c` (desktop google, mobile
    /// fb, mobile google and desktop fb for `i` 0-3) from the tallies of `seen` (`(segment, FTD
    /// rate)`, 10,000 clicks each): a spread of 0.01 around the typical rate, the factors' prior as
    /// wide as 0.05.
    fn margin_prior(seen: &[(usize, f64)], segment: usize) -> (f64, f64) {
        let combinations = [(0, 0), (1, 1), (1, 0), (0, 1)];
        let traits: Vec<Traits> = (0..12)
            .map(|s| (s / 4, combinations[s as usize % 4]))
            .map(|(country, (device, source))| [Some(country), Some(device), Some(source)])
            .collect();
        let tallies: Vec<(usize, usize, SegmentTally)> = (seen.iter())
            .map(|&(s, rate)| {
                let tally = SegmentTally { ftds: (rate * 10_000.0) as u64, exposure: 10_000.0, ..Default::default() };
                (s, 0, tally)
            })
            .collect();
        let (ftds, exposure) = tallies.iter().fold((0.0, 0.0), |(f, e), t| (f + t.2.ftds as f64, e + t.2.exposure));
        let spread = 0.01;
        let mut pool = OfferPool { shape: 1.0, rate: 1.0 / (ftds / exposure), typical_rate: ftds / exposure };
        tallies.iter().for_each(|t| pool.add(t.2.ftds as f64, t.2.exposure, spread));
        let layout = MarginLayout::new(&traits, [true; TRAITS], &tallies);
        let margins =
            Margins::new(&layout, &tallies, (&[pool], spread), 1.0 / 0.05).with_covariance(&tallies, (&[pool], spread));
        let own = tallies.iter().find(|t| t.0 == segment).map_or_else(SegmentTally::default, |t| t.2);
        margins.prior(segment, 0, &own, (&pool, spread))
    }

    #[test]
    fn a_segments_prior_is_unsure_where_its_offer_was_never_seen_with_its_traits_apart() {
        // The offer converts at 4%, 1.4 times that from google and 0.9 times on mobile, in three
        // countries.
        let rates = [0.056, 0.036, 0.0504, 0.04];
        let in_countries = |combinations: &[usize]| -> Vec<(usize, f64)> {
            (0..12).filter(|s| combinations.contains(&(s % 4))).map(|s| (s, rates[s % 4])).collect()
        };
        // Seen on desktop only from google and on mobile only from fb: whether google or desktop
        // made its rate the segments cannot tell, and mobile google is nearly as unsure as the prior
        // (0.05) allows for a device class and a source, though each of their factors rests on
        // thousands of FTDs.
        let confounded = in_countries(&[0, 1]);
        let (_, unsure) = margin_prior(&confounded, 2);
        assert!(unsure > 0.6 * 0.05, "{unsure}");
        // Seen on desktop from fb too, the effects are told apart: mobile google is predicted.
        let apart = in_countries(&[0, 1, 3]);
        let (factor, known) = margin_prior(&apart, 2);
        assert!(known < unsure / 5.0, "{known} against {unsure}");
        assert!((1.1..1.35).contains(&factor), "mobile google predicted at {factor} times the typical rate");
        // A segment with evidence of its own, its combination seen in the other countries: as sure.
        let (_, own) = margin_prior(&confounded, 4);
        assert!(own < unsure / 5.0, "{own} against {unsure}");
    }

    #[test]
    fn with_one_trait_that_varies_the_pooling_is_the_plain_one() {
        // Six countries, all desktop: no segment shares a country with another, so the traits say
        // nothing and the posteriors are exactly those of exchangeable segments.
        let (offers, segments) = a_mobile_offer_in_three_countries();
        let desktops: Vec<Traits> = (0..6).map(|country| [Some(country), Some(0), None]).collect();
        let of = |segment_traits| {
            evaluate(&Evidence { offers: &offers, segments: &segments, segment_traits, hour_elapsed: 1.0 }, 200, 7)
        };
        assert_eq!(of(&desktops), of(&[]));
    }

    #[test]
    fn a_segments_prior_does_not_count_its_own_clicks_twice() {
        // One segment holds all of the offers' traffic: its posteriors are the offer-level ones, not
        // twice as sure.
        let result = evaluate_segmented(&[vec![(0, 30, 0.04)], vec![(0, 30, 0.03)]], 5);
        for (overall, within) in result.posteriors.iter().zip(&result.segment(0).unwrap().offers) {
            assert!((within.mean_rate() / overall.mean_rate() - 1.0).abs() < 0.02, "{within:?} against {overall:?}");
            assert!(within.rate_shape < 1.05 * overall.rate_shape, "{within:?} against {overall:?}");
        }
    }

    #[test]
    fn many_sets_of_a_segment_are_read_off_one_set_of_draws() {
        let result =
            evaluate_segmented(&[vec![(0, 10, 0.04), (1, 10, 0.03)], vec![(0, 10, 0.03)], vec![(1, 10, 0.05)]], 9);
        let mut probabilities = result.probabilities();
        for segment in [None, Some(0), Some(0), Some(1), Some(7)] {
            for members in [&[0, 1, 2][..], &[0, 2], &[1]] {
                assert_eq!(probabilities(segment, members), result.probability_best_among(segment, members));
            }
        }
        assert_eq!(
            result.probability_best_among(Some(7), &[0, 1, 2]),
            result.probability_best,
            "no evidence: offer level"
        );
    }

    #[test]
    fn the_current_hours_clicks_weigh_by_the_time_elapsed() {
        let (established, _) = history(1, 30, |_| 0.04, 6.0, 2);
        let mut young = OfferHistory {
            offer_id: 2,
            clicks: vec![0; HORIZON_HOURS],
            ftds: vec![0; HORIZON_HOURS],
            ..Default::default()
        };
        young.clicks[0] = 1_000;
        let offers = [established, young];
        let exposure = |hour_elapsed| {
            evaluate(&Evidence { offers: &offers, segments: &[], segment_traits: &[], hour_elapsed }, 10, 1).posteriors
                [1]
            .exposure
        };
        let (early, late) = (exposure(0.05), exposure(1.0));
        assert!(early > 0.0 && early < late / 5.0, "3 minutes in: {early:.2}, an hour in: {late:.2}");
    }

    #[test]
    fn click_buckets_weigh_at_their_mean_age() {
        // F(t) = t / 10 over whole hours: linear, so the weight is the mean age over 10.
        let cdf: Vec<f64> = (1..=20).map(|k| (k as f64 / 10.0).min(1.0)).collect();
        for hour_elapsed in [0.0, 0.25, 0.5, 0.9, 1.0] {
            let weights = mean_age_weights(&cdf, hour_elapsed);
            assert_eq!(weights.len(), cdf.len());
            assert!((weights[0] - hour_elapsed / 20.0).abs() < 1e-12, "{hour_elapsed}: {weights:?}");
            for age in 1..8 {
                let mean_age = age as f64 - 0.5 + hour_elapsed;
                assert!((weights[age] - mean_age / 10.0).abs() < 1e-12, "{hour_elapsed}, {age}: {weights:?}");
            }
            assert_eq!(weights[19], 1.0, "flat past the horizon");
        }
    }
}

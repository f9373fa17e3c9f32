//! The routing table: which offer a click goes to, precomputed so that a pick is one alias draw.
//!
//! Each active offer gets probability `p_i = e/K + (1-e) * w_i / sum(w)` (e = exploration rate, K =
//! active offers, w = weights; equal shares when every weight is zero). The probabilities feed a Vose
//! alias table (`rand_distr::WeightedAliasIndex`): O(1) per pick whatever the number of offers.
//! Each entry also carries its offer's prepared redirect and its propensity, the probability with which
//! it was picked, recorded with the click so any other policy can later be scored offline.
//!
//! Invariant: a table is immutable once built. Changes build a new table that is swapped in whole
//! (`arc-swap`), so a click sees either the old or the new table, never a mixture, and takes no lock.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use rand::Rng;
use rand_distr::Distribution;
use rand_distr::weighted::WeightedAliasIndex;

use super::redirect::RedirectTemplate;

/// What the table needs of one active offer.
#[derive(Debug, Clone)]
pub struct RouteInput {
    /// The offer's id.
    pub offer_id: i64,
    /// Its routing weight (>= 0).
    pub weight: f64,
    /// Its validated redirect.
    pub redirect: RedirectTemplate,
    /// Its redirect counter (see [`crate::metrics::Metrics::offer_click_counter`]).
    pub clicks: Arc<AtomicU64>,
}

/// One offer as the click path sees it.
#[derive(Debug, Clone)]
pub struct RoutedOffer {
    /// The offer's id, recorded with the click.
    pub offer_id: i64,
    /// The probability with which this offer is picked.
    pub propensity: f64,
    /// The weight it was given.
    pub weight: f64,
    /// Where its clicks are sent.
    pub redirect: RedirectTemplate,
    /// Counts its redirects, for `/metrics`; shared with every table that holds the offer.
    pub clicks: Arc<AtomicU64>,
}

/// An immutable snapshot of the active offers and their pick probabilities.
#[derive(Debug, Default)]
pub struct RoutingTable {
    offers: Box<[RoutedOffer]>,
    /// `None` when there is no active offer.
    alias: Option<WeightedAliasIndex<f64>>,
}

impl RoutingTable {
    /// Builds the table for `offers` with exploration rate `exploration` (in `[0, 1]`).
    pub fn build(offers: Vec<RouteInput>, exploration: f64) -> RoutingTable {
        let probabilities = pick_probabilities(offers.iter().map(|offer| offer.weight), exploration);
        let alias = WeightedAliasIndex::new(probabilities.clone()).ok();
        let offers = offers
            .into_iter()
            .zip(probabilities)
            .map(|(input, propensity)| RoutedOffer {
                offer_id: input.offer_id,
                propensity,
                weight: input.weight,
                redirect: input.redirect,
                clicks: input.clicks,
            })
            .collect();
        RoutingTable { offers, alias }
    }

    /// Picks an offer, or `None` if no offer is active.
    #[inline]
    pub fn pick<R: Rng + ?Sized>(&self, rng: &mut R) -> Option<&RoutedOffer> {
        let index = self.alias.as_ref()?.sample(rng);
        self.offers.get(index)
    }

    /// The offers in the table, with their probabilities.
    pub fn offers(&self) -> &[RoutedOffer] {
        &self.offers
    }
}

/// `p_i = e/K + (1-e) * w_i / sum(w)`; equal shares when the weights sum to zero (or are not finite).
pub fn pick_probabilities(weights: impl ExactSizeIterator<Item = f64> + Clone, exploration: f64) -> Vec<f64> {
    let n_offers = weights.len();
    if n_offers == 0 {
        return Vec::new();
    }
    let uniform = 1.0 / n_offers as f64;
    let total: f64 = weights.clone().map(|w| w.max(0.0)).sum();
    if !(total > 0.0 && total.is_finite()) {
        return vec![uniform; n_offers];
    }
    let exploration = exploration.clamp(0.0, 1.0);
    weights.map(|w| exploration * uniform + (1.0 - exploration) * w.max(0.0) / total).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    fn inputs(weights: &[f64]) -> Vec<RouteInput> {
        weights
            .iter()
            .enumerate()
            .map(|(i, &weight)| RouteInput {
                offer_id: i as i64 + 1,
                weight,
                redirect: RedirectTemplate::parse(&format!("https://o{i}.example/")).unwrap(),
                clicks: Arc::default(),
            })
            .collect()
    }

    #[test]
    fn probabilities_mix_exploration_and_weights() {
        let p = pick_probabilities([1.0, 3.0].into_iter(), 0.2);
        assert!((p[0] - (0.1 + 0.8 * 0.25)).abs() < 1e-12);
        assert!((p[1] - (0.1 + 0.8 * 0.75)).abs() < 1e-12);
        assert_eq!(pick_probabilities([0.0, 0.0, 0.0].into_iter(), 0.2), vec![1.0 / 3.0; 3]);
        assert!(pick_probabilities(std::iter::empty(), 0.2).is_empty());
    }

    #[test]
    fn an_empty_table_picks_nothing() {
        let table = RoutingTable::build(Vec::new(), 0.2);
        assert!(table.pick(&mut SmallRng::seed_from_u64(1)).is_none());
    }

    #[test]
    fn propensities_sum_to_one() {
        let table = RoutingTable::build(inputs(&[0.1, 1.0, 0.5, 0.0]), 0.2);
        let total: f64 = table.offers().iter().map(|o| o.propensity).sum();
        assert!((total - 1.0).abs() < 1e-12);
        assert!(table.offers()[3].propensity > 0.0, "exploration keeps a zero-weight offer alive");
    }

    #[test]
    fn pick_frequencies_match_probabilities_chi_square() {
        let table = RoutingTable::build(inputs(&[1.0, 0.5, 0.1, 2.0, 0.0]), 0.2);
        let mut rng = SmallRng::seed_from_u64(42);
        let n = 200_000;
        let mut counts = [0u64; 5];
        for _ in 0..n {
            let offer = table.pick(&mut rng).unwrap();
            counts[(offer.offer_id - 1) as usize] += 1;
        }
        let chi_square: f64 = table
            .offers()
            .iter()
            .zip(counts)
            .map(|(offer, observed)| {
                let expected = offer.propensity * n as f64;
                (observed as f64 - expected).powi(2) / expected
            })
            .sum();
        // 4 degrees of freedom: the 99.9th percentile is 18.47.
        assert!(chi_square < 18.47, "chi-square {chi_square}, counts {counts:?}");
    }
}

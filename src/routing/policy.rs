//! The EV weight policy of the original design, as a pure function of each offer's recent window.
//!
//! `EV = (FTDs / clicks) x average payout`, which is the window's revenue per click. The best offer gets
//! weight 1 and the others `EV / max EV`, floored at `min_weight` so that none is starved. Offers with
//! fewer than `min_clicks` clicks keep weight 1.0 until there is enough data to judge them, and when
//! no offer has earned anything yet every offer gets the same weight.

/// What the policy knows of one offer: its last `LAST_N_CLICKS` clicks and what they earned.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OfferWindow {
    /// The offer's id.
    pub offer_id: i64,
    /// Clicks in the window.
    pub clicks: u64,
    /// FTDs of those clicks that were not rejected.
    pub ftds: u64,
    /// What those clicks earned: FTD payouts of non-rejected FTDs plus further deposits.
    pub revenue: f64,
}

impl OfferWindow {
    /// Revenue per click: FTD rate times average payout per FTD.
    pub fn ev(&self) -> f64 {
        if self.clicks == 0 { 0.0 } else { self.revenue / self.clicks as f64 }
    }
}

/// The policy's settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WeightPolicy {
    /// Floor of a weight for an offer with data.
    pub min_weight: f64,
    /// Clicks needed before an offer's EV is trusted.
    pub min_clicks: u64,
}

/// One offer's outcome of a recalculation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WeightedOffer {
    /// The window the weight was computed from.
    pub window: OfferWindow,
    /// Its EV (revenue per click).
    pub ev: f64,
    /// Its new weight, in `[min_weight, 1]`.
    pub weight: f64,
}

impl WeightPolicy {
    /// Computes each offer's new weight from its window.
    pub fn weigh(&self, windows: &[OfferWindow]) -> Vec<WeightedOffer> {
        let is_judged = |w: &OfferWindow| w.clicks > 0 && w.clicks >= self.min_clicks;
        let max_ev = windows.iter().filter(|w| is_judged(w)).map(OfferWindow::ev).fold(0.0, f64::max);
        windows
            .iter()
            .map(|&window| {
                let ev = window.ev();
                let weight = if !is_judged(&window) || max_ev <= 0.0 {
                    1.0
                } else {
                    (ev / max_ev).max(self.min_weight).min(1.0)
                };
                WeightedOffer { window, ev, weight }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: WeightPolicy = WeightPolicy { min_weight: 0.1, min_clicks: 100 };

    fn window(offer_id: i64, clicks: u64, ftds: u64, revenue: f64) -> OfferWindow {
        OfferWindow { offer_id, clicks, ftds, revenue }
    }

    #[test]
    fn weights_are_ev_over_max_ev_with_a_floor() {
        // EVs: 3000/1000 = 3.0, 1500/1000 = 1.5, 100/1000 = 0.1 -> 1.0, 0.5, 0.033 floored to 0.1.
        let out = POLICY.weigh(&[window(1, 1000, 30, 3000.0), window(2, 1000, 10, 1500.0), window(3, 1000, 1, 100.0)]);
        let weights: Vec<f64> = out.iter().map(|o| o.weight).collect();
        assert_eq!(weights, [1.0, 0.5, 0.1]);
        assert_eq!(out[0].ev, 3.0);
        assert_eq!(out[2].ev, 0.1);
    }

    #[test]
    fn no_data_or_no_revenue_gives_equal_weights() {
        assert!(POLICY.weigh(&[window(1, 0, 0, 0.0), window(2, 0, 0, 0.0)]).iter().all(|o| o.weight == 1.0));
        let zero = POLICY.weigh(&[window(1, 500, 0, 0.0), window(2, 800, 0, 0.0)]);
        assert!(zero.iter().all(|o| o.weight == 1.0 && o.ev == 0.0));
    }

    #[test]
    fn offers_below_the_minimum_clicks_are_explored_at_full_weight() {
        let out = POLICY.weigh(&[window(1, 1000, 20, 2000.0), window(2, 99, 0, 0.0), window(3, 1000, 0, 0.0)]);
        assert_eq!(out[1].weight, 1.0, "too few clicks to judge");
        assert_eq!(out[2].weight, 0.1, "judged and earning nothing: floor");
    }
}

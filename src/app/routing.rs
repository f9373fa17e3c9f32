//! Building and swapping the routing table, under either strategy.
//!
//! `ev`: the stored weights (recomputed on schedule by the EV engine, in the store's transaction)
//! plus the exploration share. `thompson`: each offer's probability of being best, from the store's
//! hourly evidence, recomputed on every refresh; nothing is written back, and every instance computes
//! the same table from the same data (a fixed seed).
//!
//! Either way the table holds one pool per set of offers a visitor can be eligible for (targeting
//! rules), each with the strategy's probabilities for that set; offers at a daily cap are out.
//!
//! Invariant: a table is built whole from one reading of the store and swapped in under `rebuild`,
//! so an older snapshot never replaces a newer one.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use time::OffsetDateTime;

use super::App;
use crate::config::RoutingStrategy;
use crate::routing::segments::Segmentation;
use crate::routing::table::pick_probabilities;
use crate::routing::thompson::{self, HORIZON_HOURS, ThompsonResult};
use crate::routing::{
    DailyCaps, OfferRules, OfferWindow, RedirectTemplate, RouteInput, RoutingTable, WeightPolicy, WeightedOffer,
};
use crate::store::{StoreError, StoreResult};

/// Monte Carlo draws per Thompson refresh: probabilities within about 1.6 points (one standard
/// error at worst), and 100 offers refreshed in a few milliseconds (BENCHMARKS.md).
const THOMPSON_DRAWS: usize = 1_000;
/// Seed of those draws.
const THOMPSON_SEED: u64 = 0x5eed;

/// What the Thompson engine learned at one refresh: its posteriors, and the segments they cover
/// (segment `i` of the result is `segmentation.keys()[i]`).
#[derive(Debug)]
pub struct Learned {
    /// Posteriors and probabilities, over all traffic and per segment.
    pub result: ThompsonResult,
    /// The segments with evidence.
    pub segmentation: Segmentation,
}

impl App {
    /// Rebuilds the routing table from the active offers in the store and swaps it in. Under the
    /// `thompson` strategy the weights are recomputed from the store's evidence first.
    pub async fn reload_routing(&self) -> StoreResult<()> {
        let _guard = self.rebuild.lock().await;
        let version = self.store.routing_version().await?;
        let offers: Vec<_> = self
            .store
            .list_offers(true)
            .await?
            .into_iter()
            .filter(|offer| match RedirectTemplate::parse(&offer.casino_url) {
                Ok(_) => true,
                Err(error) => {
                    // Only validated URLs are stored; one that no longer parses is skipped, not fatal.
                    tracing::error!(offer_id = offer.id, %error, "offer skipped: invalid casino_url");
                    false
                }
            })
            .collect();
        if offers.iter().any(|offer| offer.daily_caps != DailyCaps::default()) {
            self.sync_day_counts().await?;
        }
        let thompson = match self.config.routing_strategy {
            RoutingStrategy::Thompson => {
                let learned = Arc::new(self.thompson(&offers.iter().map(|offer| offer.id).collect::<Vec<_>>()).await?);
                self.thompson.store(Some(learned.clone()));
                Some(learned)
            }
            RoutingStrategy::Ev => None,
        };
        let inputs: Vec<RouteInput> = offers
            .iter()
            .zip(0..)
            .map(|(offer, index)| RouteInput {
                offer_id: offer.id,
                weight: thompson.as_ref().map_or(offer.weight, |learned| learned.result.probability_best[index]),
                redirect: RedirectTemplate::parse(&offer.casino_url).expect("checked above"),
                clicks: self.metrics.offer_click_counter(offer.id),
                rules: OfferRules::compile(&offer.targeting),
                caps: offer.daily_caps,
                today: self.day_counts(offer.id),
            })
            .collect();
        let (exploration, thompson_exploration) = (self.config.exploration_rate, self.config.thompson_exploration_rate);
        // Many offers with many rules make many pools: built on a blocking thread, not a worker.
        let build = move || match thompson {
            // Thompson sampling explores by itself: each pool's shares are its offers' probabilities
            // of being best among them, for the pool's segment (and, if set, an even share).
            Some(learned) => {
                RoutingTable::build(inputs, &learned.segmentation, learned.result.routing_shares(thompson_exploration))
            }
            None => {
                let weights: Vec<f64> = inputs.iter().map(|input| input.weight).collect();
                RoutingTable::build(inputs, &Segmentation::default(), |_, members| {
                    pick_probabilities(members.iter().map(|&i| weights[i]), exploration)
                })
            }
        };
        let table = tokio::task::spawn_blocking(build)
            .await
            .map_err(|error| StoreError::Query(format!("routing table build failed: {error}")))?;
        self.table.store(Arc::new(table));
        self.loaded_version.store(version, Ordering::Release);
        self.record_routing(OffsetDateTime::now_utc()).await;
        Ok(())
    }

    /// Rebuilds the table if offers or weights changed since it was built (here or elsewhere), or if
    /// an offer reached a daily cap or a new UTC day brought one back.
    pub async fn refresh_if_changed(&self) -> StoreResult<bool> {
        let version = self.store.routing_version().await?;
        let table = self.table.load_full();
        let mut changed = version != self.loaded_version.load(Ordering::Acquire);
        if !changed && table.offers().iter().any(|offer| offer.caps != DailyCaps::default()) {
            self.sync_day_counts().await?;
            changed = table.offers().iter().any(|offer| offer.is_capped() == offer.in_rotation);
        }
        if changed {
            self.reload_routing().await?;
        }
        Ok(changed)
    }

    /// The Thompson posteriors of `offer_ids`, over all traffic and per segment, from the store's
    /// hourly evidence.
    pub async fn thompson(&self, offer_ids: &[i64]) -> StoreResult<Learned> {
        let evidence = self.store.routing_evidence(OffsetDateTime::now_utc(), HORIZON_HOURS).await?;
        let offers = evidence.histories(offer_ids);
        let (keys, segments) = evidence.segments.histories(offer_ids);
        let segmentation = Segmentation::new(self.config.segment_by, keys);
        let input = thompson::Evidence {
            offers: &offers,
            segments: &segments,
            segment_traits: segmentation.traits(),
            hour_elapsed: evidence.hour_elapsed,
        };
        // A fixed seed: instances that read the same evidence compute the same table.
        Ok(Learned { result: thompson::evaluate(&input, THOMPSON_DRAWS, THOMPSON_SEED), segmentation })
    }

    /// What the current table was built from, under the `thompson` strategy.
    pub fn current_thompson(&self) -> Option<Arc<Learned>> {
        self.thompson.load_full()
    }

    /// Recomputes the weights now: the EV engine under `ev` (then swaps in the new table; `None` when
    /// another instance is recalculating right now), a refresh of the probabilities under `thompson`.
    pub async fn recalculate_weights(&self) -> StoreResult<Option<Vec<WeightedOffer>>> {
        if self.config.routing_strategy == RoutingStrategy::Thompson {
            self.reload_routing().await?;
            self.metrics.recalculated(OffsetDateTime::now_utc().unix_timestamp());
            let Some(learned) = self.current_thompson() else { return Ok(Some(Vec::new())) };
            let result = &learned.result;
            let weights = result
                .posteriors
                .iter()
                .zip(&result.probability_best)
                .map(|(posterior, &probability)| WeightedOffer {
                    window: OfferWindow {
                        offer_id: posterior.offer_id,
                        clicks: posterior.clicks,
                        ftds: posterior.ftds,
                        revenue: posterior.ftds as f64 * posterior.payout_mean,
                    },
                    ev: posterior.mean_epc(),
                    weight: probability,
                })
                .collect::<Vec<_>>();
            // Refreshed every minute: only a change since the last line is worth one at INFO.
            if self.logged_thompson.load().as_deref().is_none_or(|logged| !same_table(&logged.result, result)) {
                log_weights(&weights, "thompson probabilities changed");
                self.logged_thompson.store(Some(learned.clone()));
            }
            return Ok(Some(weights));
        }
        let policy =
            WeightPolicy { min_weight: self.config.min_weight, min_clicks: u64::from(self.config.min_clicks_for_ev) };
        let result = self.store.recalculate_weights(self.config.last_n_clicks, &policy).await?;
        if let Some(weights) = &result {
            self.metrics.recalculated(OffsetDateTime::now_utc().unix_timestamp());
            log_weights(weights, "weights recalculated");
            // The weights are committed; if the rebuild fails now, the version poll retries it.
            if let Err(error) = self.reload_routing().await {
                tracing::warn!(%error, "routing table not rebuilt after recalculation");
            }
        }
        Ok(result)
    }
}

/// Whether two Thompson results route alike: the same offers, each probability equal to the four
/// places the log shows.
fn same_table(a: &ThompsonResult, b: &ThompsonResult) -> bool {
    let ids = |r: &ThompsonResult| r.posteriors.iter().map(|p| p.offer_id).collect::<Vec<_>>();
    ids(a) == ids(b) && a.probability_best.iter().zip(&b.probability_best).all(|(x, y)| (x - y).abs() < 0.5e-4)
}

/// One log line per recalculation: the new weights as `offer_id:weight` pairs, in offer order.
fn log_weights(weights: &[WeightedOffer], message: &'static str) {
    let summary: Vec<String> = weights.iter().map(|w| format!("{}:{:.4}", w.window.offer_id, w.weight)).collect();
    tracing::info!(offers = weights.len(), weights = %summary.join(" "), "{message}");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(offers: &[(i64, f64)]) -> ThompsonResult {
        let histories: Vec<_> = offers
            .iter()
            .map(|&(offer_id, _)| thompson::OfferHistory {
                offer_id,
                clicks: vec![0; HORIZON_HOURS],
                ftds: vec![0; HORIZON_HOURS],
                ..thompson::OfferHistory::default()
            })
            .collect();
        let mut result = thompson::evaluate(&thompson::Evidence::offers(&histories), 10, 1);
        result.probability_best = offers.iter().map(|&(_, p)| p).collect();
        result
    }

    #[test]
    fn a_refresh_that_routes_alike_is_not_a_change() {
        let before = result(&[(1, 0.5), (2, 0.5)]);
        assert!(same_table(&before, &result(&[(1, 0.50001), (2, 0.49999)])), "below the logged precision");
        assert!(!same_table(&before, &result(&[(1, 0.6), (2, 0.4)])), "probabilities moved");
        assert!(!same_table(&before, &result(&[(1, 0.5), (3, 0.5)])), "another offer");
        assert!(!same_table(&before, &result(&[(1, 1.0)])), "an offer left");
    }
}

//! The state every request shares: configuration, the store, the current routing table and the click
//! queue, plus the operations that change the table.
//!
//! Invariant: the routing table is replaced whole, under `rebuild`, from what the store says at that
//! moment; the click path only ever `load()`s it.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use arc_swap::ArcSwap;

use arc_swap::ArcSwapOption;
use time::OffsetDateTime;

use crate::config::{Config, RoutingStrategy};
use crate::metrics::Metrics;
use crate::routing::thompson::{self, HORIZON_HOURS, ThompsonResult};
use crate::routing::{OfferWindow, RedirectTemplate, RouteInput, RoutingTable, WeightPolicy, WeightedOffer};
use crate::store::{Store, StoreResult};
use crate::writer::ClickQueue;

/// Shared state of a running router.
pub struct App {
    /// The validated configuration.
    pub config: Config,
    /// Where everything but the click path reads and writes.
    pub store: Arc<dyn Store>,
    /// The current routing table: one `load()` per click.
    pub table: ArcSwap<RoutingTable>,
    /// Where clicks go to be written.
    pub queue: ClickQueue,
    /// Bearer token of the admin API.
    pub admin_token: String,
    /// Counters and histograms for `/metrics`.
    pub metrics: Arc<Metrics>,
    /// Routing version of the store when the current table was built.
    loaded_version: AtomicI64,
    /// Serialises rebuilds, so an older snapshot never replaces a newer one.
    rebuild: tokio::sync::Mutex<()>,
    /// Under `thompson`: the posterior the current table was built from.
    thompson: ArcSwapOption<ThompsonResult>,
}

/// Monte Carlo draws per Thompson refresh: probabilities within about 1.6 points (one standard
/// error at worst), and 100 offers refreshed in a few milliseconds (BENCHMARKS.md).
const THOMPSON_DRAWS: usize = 1_000;
/// Seed of those draws.
const THOMPSON_SEED: u64 = 0x5eed;

impl App {
    /// State with an empty routing table; call [`App::reload_routing`] before serving.
    pub fn new(
        config: Config,
        store: Arc<dyn Store>,
        queue: ClickQueue,
        admin_token: String,
        metrics: Arc<Metrics>,
    ) -> App {
        App {
            config,
            store,
            table: ArcSwap::from_pointee(RoutingTable::default()),
            queue,
            admin_token,
            metrics,
            loaded_version: AtomicI64::new(i64::MIN),
            rebuild: tokio::sync::Mutex::new(()),
            thompson: ArcSwapOption::empty(),
        }
    }

    /// Rebuilds the routing table from the active offers in the store and swaps it in. Under the
    /// `thompson` strategy the weights are recomputed from the store's evidence first.
    pub async fn reload_routing(&self) -> StoreResult<()> {
        let _guard = self.rebuild.lock().await;
        let version = self.store.routing_version().await?;
        let mut offers = self.store.list_offers(true).await?;
        let mut exploration = self.config.exploration_rate;
        if self.config.routing_strategy == RoutingStrategy::Thompson {
            let result = self.thompson(&offers.iter().map(|offer| offer.id).collect::<Vec<_>>()).await?;
            for (offer, probability) in offers.iter_mut().zip(&result.probability_best) {
                offer.weight = *probability;
            }
            // Thompson sampling explores by itself: the probabilities are the traffic shares.
            exploration = 0.0;
            self.thompson.store(Some(Arc::new(result)));
        }
        let inputs = offers
            .into_iter()
            .filter_map(|offer| match RedirectTemplate::parse(&offer.casino_url) {
                Ok(redirect) => Some(RouteInput {
                    offer_id: offer.id,
                    weight: offer.weight,
                    redirect,
                    clicks: self.metrics.offer_click_counter(offer.id),
                }),
                Err(error) => {
                    // Only validated URLs are stored; one that no longer parses is skipped, not fatal.
                    tracing::error!(offer_id = offer.id, %error, "offer skipped: invalid casino_url");
                    None
                }
            })
            .collect();
        self.table.store(Arc::new(RoutingTable::build(inputs, exploration)));
        self.loaded_version.store(version, Ordering::Release);
        Ok(())
    }

    /// Rebuilds the table if offers or weights changed since it was built (here or elsewhere).
    pub async fn refresh_if_changed(&self) -> StoreResult<bool> {
        let version = self.store.routing_version().await?;
        if version == self.loaded_version.load(Ordering::Acquire) {
            return Ok(false);
        }
        self.reload_routing().await?;
        Ok(true)
    }

    /// The Thompson posterior of `offer_ids`, from the store's hourly evidence.
    pub async fn thompson(&self, offer_ids: &[i64]) -> StoreResult<ThompsonResult> {
        let evidence = self.store.routing_evidence(OffsetDateTime::now_utc(), HORIZON_HOURS).await?;
        // A fixed seed: instances that read the same evidence compute the same table.
        Ok(thompson::evaluate(&evidence.histories(offer_ids), THOMPSON_DRAWS, THOMPSON_SEED))
    }

    /// The posterior behind the current table, under the `thompson` strategy.
    pub fn current_thompson(&self) -> Option<Arc<ThompsonResult>> {
        self.thompson.load_full()
    }

    /// Recomputes the weights now: the EV engine under `ev` (then swaps in the new table; `None` when
    /// another instance is recalculating right now), a refresh of the probabilities under `thompson`.
    pub async fn recalculate_weights(&self) -> StoreResult<Option<Vec<WeightedOffer>>> {
        if self.config.routing_strategy == RoutingStrategy::Thompson {
            self.reload_routing().await?;
            self.metrics.recalculated(OffsetDateTime::now_utc().unix_timestamp());
            let Some(result) = self.current_thompson() else { return Ok(Some(Vec::new())) };
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
            log_weights(&weights, "thompson probabilities recomputed");
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

/// One log line per recalculation: the new weights as `offer_id:weight` pairs, in offer order.
fn log_weights(weights: &[WeightedOffer], message: &'static str) {
    let summary: Vec<String> = weights.iter().map(|w| format!("{}:{:.4}", w.window.offer_id, w.weight)).collect();
    tracing::info!(offers = weights.len(), weights = %summary.join(" "), "{message}");
}

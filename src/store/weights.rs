//! The EV weight recalculation both stores share: read each active offer's window, apply the
//! [`WeightPolicy`], save the weights with their history and bump the routing version, all in the
//! transaction the store opened (PostgreSQL's under its advisory lock). A store supplies only the
//! statements ([`WeightTransaction`]); the order of the steps and what is saved are decided here.

use time::OffsetDateTime;

use super::{RoutingVersion, StoreResult};
use crate::routing::{OfferWindow, WeightPolicy, WeightedOffer};

/// The steps of a recalculation, inside one open transaction. Futures may complete at once
/// (SQLite's do).
pub(crate) trait WeightTransaction: RoutingVersion {
    /// The ids of the active offers, ascending.
    async fn active_offer_ids(&mut self) -> StoreResult<Vec<i64>>;

    /// Offer `offer_id`'s last `last_n_clicks` clicks and what they brought.
    async fn window(&mut self, offer_id: i64, last_n_clicks: u32) -> StoreResult<OfferWindow>;

    /// Sets the offer's weight and records it, with its window and EV, in `weight_history`.
    async fn save_weight(&mut self, run_at: OffsetDateTime, offer: &WeightedOffer) -> StoreResult<()>;
}

/// Recomputes and saves the weights of the active offers from their last `last_n_clicks` clicks.
pub(crate) async fn recalculate(
    tx: &mut impl WeightTransaction,
    last_n_clicks: u32,
    policy: &WeightPolicy,
) -> StoreResult<Vec<WeightedOffer>> {
    let offer_ids = tx.active_offer_ids().await?;
    let mut windows = Vec::with_capacity(offer_ids.len());
    for offer_id in offer_ids {
        windows.push(tx.window(offer_id, last_n_clicks).await?);
    }
    let weighted = policy.weigh(&windows);
    let run_at = OffsetDateTime::now_utc();
    for offer in &weighted {
        tx.save_weight(run_at, offer).await?;
    }
    tx.bump_routing_version().await?;
    Ok(weighted)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fixed windows; records what is saved and in what order.
    #[derive(Default)]
    struct Recorder {
        steps: Vec<String>,
    }

    impl WeightTransaction for Recorder {
        async fn active_offer_ids(&mut self) -> StoreResult<Vec<i64>> {
            self.steps.push("offers".to_owned());
            Ok(vec![3, 7])
        }

        async fn window(&mut self, offer_id: i64, last_n_clicks: u32) -> StoreResult<OfferWindow> {
            self.steps.push(format!("window {offer_id} of {last_n_clicks}"));
            let revenue = if offer_id == 3 { 400.0 } else { 100.0 };
            Ok(OfferWindow { offer_id, clicks: 100, ftds: 2, revenue })
        }

        async fn save_weight(&mut self, _: OffsetDateTime, offer: &WeightedOffer) -> StoreResult<()> {
            self.steps.push(format!("save {} {}", offer.window.offer_id, offer.weight));
            Ok(())
        }
    }

    impl RoutingVersion for Recorder {
        async fn bump_routing_version(&mut self) -> StoreResult<()> {
            self.steps.push("bump".to_owned());
            Ok(())
        }
    }

    #[tokio::test]
    async fn each_active_offer_is_read_weighed_and_saved_then_the_version_bumped_once() {
        let mut tx = Recorder::default();
        let policy = WeightPolicy { min_weight: 0.1, min_clicks: 10 };
        let weighted = recalculate(&mut tx, 500, &policy).await.unwrap();
        assert_eq!(weighted.iter().map(|o| o.weight).collect::<Vec<_>>(), [1.0, 0.25]);
        assert_eq!(tx.steps, ["offers", "window 3 of 500", "window 7 of 500", "save 3 1", "save 7 0.25", "bump"]);
    }
}

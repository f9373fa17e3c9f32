//! Offer changes, the rules both stores share: every change bumps the routing version in its own
//! transaction, so that every instance rebuilds its table; a change that finds no offer, and a
//! delete refused because the offer has clicks (deleting it would lose history), change nothing
//! and bump nothing. A store supplies one statement per step ([`OfferTransaction`]).

use super::{DeleteOutcome, NewOffer, Offer, OfferPatch, RoutingVersion, StoreResult};

/// The steps of an offer change, inside one open transaction. Futures may complete at once
/// (SQLite's do).
pub(crate) trait OfferTransaction: RoutingVersion {
    /// Inserts the offer and returns it as stored.
    async fn insert_offer(&mut self, offer: &NewOffer) -> StoreResult<Offer>;

    /// Changes the fields `patch` gives; the offer as stored, or `None` if there is no such offer.
    async fn patch_offer(&mut self, id: i64, patch: &OfferPatch) -> StoreResult<Option<Offer>>;

    /// Whether the offer exists (locked until the end of the transaction where the database locks
    /// rows).
    async fn offer_exists(&mut self, id: i64) -> StoreResult<bool>;

    /// Whether the offer has any recorded click.
    async fn offer_has_clicks(&mut self, id: i64) -> StoreResult<bool>;

    /// Deletes the offer.
    async fn delete_offer(&mut self, id: i64) -> StoreResult<()>;
}

/// Creates an offer.
pub(crate) async fn create(tx: &mut impl OfferTransaction, offer: &NewOffer) -> StoreResult<Offer> {
    let created = tx.insert_offer(offer).await?;
    tx.bump_routing_version().await?;
    Ok(created)
}

/// Changes the given fields of an offer; `None` if there is no such offer.
pub(crate) async fn update(tx: &mut impl OfferTransaction, id: i64, patch: &OfferPatch) -> StoreResult<Option<Offer>> {
    let updated = tx.patch_offer(id, patch).await?;
    if updated.is_some() {
        tx.bump_routing_version().await?;
    }
    Ok(updated)
}

/// Deletes an offer that has no clicks.
pub(crate) async fn delete(tx: &mut impl OfferTransaction, id: i64) -> StoreResult<DeleteOutcome> {
    if !tx.offer_exists(id).await? {
        return Ok(DeleteOutcome::NotFound);
    }
    if tx.offer_has_clicks(id).await? {
        return Ok(DeleteOutcome::HasClicks);
    }
    tx.delete_offer(id).await?;
    tx.bump_routing_version().await?;
    Ok(DeleteOutcome::Deleted)
}

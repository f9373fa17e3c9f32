//! The rule of holding a postback for a click not stored yet, which both stores share (see
//! [`HeldPostback`] and `sql/postgres/0005_held_postbacks.sql`). A store supplies one statement per
//! step ([`HoldTransaction`]), run in one transaction: the click is looked up again (another
//! instance may have stored it since the postback's first lookup), the limits are checked, and the
//! pending log line and the held row are written together. Two instances holding the same event at
//! once meet at the held rows' unique key: the second is a duplicate.

use uuid::Uuid;

use super::{HeldPostback, HoldLimits, HoldOutcome, PostbackLogEntry, PostbackOutcome, StoreResult};

/// The reason an expired held postback's log line gives.
pub(crate) const EXPIRED_REASON: &str = "its click was not stored in time";

/// The steps of holding a postback, inside one open transaction. Futures may complete at once
/// (SQLite's do).
pub(crate) trait HoldTransaction {
    /// Whether the click is stored.
    async fn click_stored(&mut self, click_id: Uuid) -> StoreResult<bool>;

    /// Postbacks held for `offer_id`, and in all.
    async fn held_counts(&mut self, offer_id: i64) -> StoreResult<(u64, u64)>;

    /// Writes a postback-log line; returns its id.
    async fn insert_log_line(&mut self, entry: &PostbackLogEntry) -> StoreResult<i64>;

    /// Writes the held row (its log line `log_id`); `false` if the same event is held already.
    async fn insert_held(&mut self, held: &HeldPostback, log: &PostbackLogEntry, log_id: i64) -> StoreResult<bool>;

    /// Sets a log line's outcome and reason.
    async fn set_log_outcome(&mut self, log_id: i64, outcome: PostbackOutcome, reason: &str) -> StoreResult<()>;
}

/// Holds `held`, logged by `log` (whose outcome is set here), within `limits`.
pub(crate) async fn hold(
    tx: &mut impl HoldTransaction,
    held: &HeldPostback,
    log: &PostbackLogEntry,
    limits: HoldLimits,
) -> StoreResult<HoldOutcome> {
    if tx.click_stored(held.click_id).await? {
        return Ok(HoldOutcome::ClickStored);
    }
    let (per_offer, total) = tx.held_counts(held.offer_id).await?;
    if per_offer >= limits.per_offer || total >= limits.total {
        return Ok(HoldOutcome::Full);
    }
    let pending = PostbackLogEntry {
        outcome: PostbackOutcome::Pending,
        reason: Some("held until its click is stored".to_owned()),
        ..log.clone()
    };
    let log_id = tx.insert_log_line(&pending).await?;
    if tx.insert_held(held, log, log_id).await? {
        return Ok(HoldOutcome::Held);
    }
    let reason = format!("{} already held for this click", held.kind.as_str());
    tx.set_log_outcome(log_id, PostbackOutcome::Duplicate, &reason).await?;
    Ok(HoldOutcome::Duplicate)
}

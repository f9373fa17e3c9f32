//! The rules of applying the postback events that read before they write, which both stores share:
//! a payout needs an FTD and is recorded once per FTD; a rejection voids the FTD once, and needs
//! one. A store supplies one statement per step ([`ConversionTransaction`]), run in the transaction
//! that also writes the postback's log line. FTDs, registrations and deposits are plain inserts that
//! a unique constraint makes idempotent, so each store writes them its own way (PostgreSQL one
//! statement per kind for a batch of concurrent postbacks) and they do not pass through here.

use uuid::Uuid;

use super::{Conversion, ConversionOutcome, StoreError, StoreResult};
use crate::conversion::EventKind;

/// The steps of applying an event, inside one open transaction. Futures may complete at once
/// (SQLite's do). Each `insert_` step tells whether it inserted its row (`false`: a unique
/// constraint already held one).
pub(crate) trait ConversionTransaction {
    /// The id of the click's FTD, if it has one (locked until the end of the transaction where
    /// the database locks rows).
    async fn ftd_of(&mut self, click_id: Uuid) -> StoreResult<Option<i64>>;

    /// Records the payout of FTD `ftd_id`, of click `click_id`.
    async fn insert_payout(&mut self, click_id: Uuid, ftd_id: i64, amount: f64, currency: &str) -> StoreResult<bool>;

    /// Voids the click's FTD unless it is void already; whether it did.
    async fn void_ftd(&mut self, click_id: Uuid) -> StoreResult<bool>;
}

/// Applies a payout or a rejection.
pub(crate) async fn apply(tx: &mut impl ConversionTransaction, c: &Conversion) -> StoreResult<ConversionOutcome> {
    let outcome = match c.kind {
        EventKind::Ftd | EventKind::Reg | EventKind::Deposit => {
            return Err(StoreError::Query(format!("{} is recorded by the store itself", c.kind.as_str())));
        }
        EventKind::Payout => match (tx.ftd_of(c.click_id).await?, c.payout) {
            (Some(ftd_id), Some(payout)) => inserted(tx.insert_payout(c.click_id, ftd_id, payout, &c.currency).await?),
            _ => ConversionOutcome::NoFtd,
        },
        EventKind::Rejected if tx.void_ftd(c.click_id).await? => ConversionOutcome::Recorded,
        EventKind::Rejected if tx.ftd_of(c.click_id).await?.is_some() => ConversionOutcome::Duplicate,
        EventKind::Rejected => ConversionOutcome::NoFtd,
    };
    Ok(outcome)
}

/// Whether an `INSERT .. ON CONFLICT DO NOTHING` inserted its row, as an outcome.
pub(crate) fn inserted(new: bool) -> ConversionOutcome {
    if new { ConversionOutcome::Recorded } else { ConversionOutcome::Duplicate }
}

//! The rules of applying a postback's event, which both stores share: a payout needs an FTD and
//! is recorded once per FTD; registrations and deposits are recorded once (the unique constraints
//! decide); a rejection voids the FTD once, and needs one. A store supplies one statement per step
//! ([`ConversionTransaction`]), run in the transaction that also writes the postback's log line.
//! FTDs are recorded by each store its own way (PostgreSQL commits concurrent ones together), so
//! they do not pass through here.

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

    /// Records FTD `ftd_id`'s payout.
    async fn insert_payout(&mut self, ftd_id: i64, amount: f64, currency: &str) -> StoreResult<bool>;

    /// Records the registration `conversion` reports.
    async fn insert_registration(&mut self, conversion: &Conversion) -> StoreResult<bool>;

    /// Records the further deposit `conversion` reports.
    async fn insert_deposit(&mut self, conversion: &Conversion) -> StoreResult<bool>;

    /// Voids the click's FTD unless it is void already; whether it did.
    async fn void_ftd(&mut self, click_id: Uuid) -> StoreResult<bool>;
}

/// Applies a payout, registration, deposit or rejection.
pub(crate) async fn apply(tx: &mut impl ConversionTransaction, c: &Conversion) -> StoreResult<ConversionOutcome> {
    let outcome = match c.kind {
        EventKind::Ftd => return Err(StoreError::Query("an FTD is recorded by the store itself".to_owned())),
        EventKind::Payout => match (tx.ftd_of(c.click_id).await?, c.payout) {
            (Some(ftd_id), Some(payout)) => inserted(tx.insert_payout(ftd_id, payout, &c.currency).await?),
            _ => ConversionOutcome::NoFtd,
        },
        EventKind::Reg => inserted(tx.insert_registration(c).await?),
        EventKind::Deposit => inserted(tx.insert_deposit(c).await?),
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

//! Daily caps: each offer's clicks and FTDs of the current UTC day, kept in memory for the click path.
//!
//! Several instances may share one database, and a shared counter on the click path would be a
//! database round trip. So each instance counts what it routes itself (exactly: the table reserves a
//! cap slot with an atomic add) and, every `TABLE_REFRESH_SECONDS`, reads the day's stored totals of
//! all instances and keeps the larger of its own count and the stored one. An offer at its cap thus
//! leaves rotation at once on the instance that filled it, and on every other instance at its next
//! refresh; the overshoot is bounded by what the other instances route between two refreshes (plus
//! clicks still in a writer's queue). FTDs count by their arrival; an FTD that passes the cap is still
//! recorded (the money is real), it only stops further traffic.
//!
//! When the UTC day changes, the counts restart from the new day's stored totals and the table is
//! rebuilt with the capped offers back, at the first refresh of the day.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use time::OffsetDateTime;

use super::App;
use crate::routing::{DailyCaps, DayCounts};
use crate::store::{Offer, StoreResult};

const SECONDS_PER_DAY: i64 = 86_400;

/// The offers' counts for one UTC day.
#[derive(Debug, Default)]
pub(super) struct DailyCounts {
    /// The UTC day counted (days since the Unix epoch).
    day: i64,
    /// Per offer: shared with every routing table that holds the offer.
    by_offer: HashMap<i64, Arc<DayCounts>>,
}

impl App {
    /// The counts of `offer_id` today, for a routing table being built.
    pub(super) fn day_counts(&self, offer_id: i64) -> Arc<DayCounts> {
        self.daily_counts().by_offer.entry(offer_id).or_default().clone()
    }

    /// What this instance counts of `offer` for the current UTC day, `(clicks, ftds)`, for an offer
    /// with a daily cap (others are not counted).
    pub fn counts_today(&self, offer: &Offer) -> Option<(u64, u64)> {
        if offer.daily_caps == DailyCaps::default() {
            return None;
        }
        let counts = self.daily_counts().by_offer.get(&offer.id).cloned().unwrap_or_default();
        Some((counts.clicks.load(Ordering::Relaxed), counts.ftds.load(Ordering::Relaxed)))
    }

    /// Counts an FTD of `offer_id` that arrived on this instance.
    pub(super) fn count_ftd_today(&self, offer_id: i64) {
        self.day_counts(offer_id).ftds.fetch_add(1, Ordering::Relaxed);
    }

    /// Reads the stored totals of the current UTC day and raises each offer's counts to them; on a
    /// new day, the counts restart from those totals.
    pub(super) async fn sync_day_counts(&self) -> StoreResult<()> {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let day = now.div_euclid(SECONDS_PER_DAY);
        let day_start =
            OffsetDateTime::from_unix_timestamp(day * SECONDS_PER_DAY).unwrap_or(OffsetDateTime::UNIX_EPOCH);
        let totals = self.store.daily_totals(day_start).await?;
        let mut counts = self.daily_counts();
        if day < counts.day {
            // A sync begun before midnight, finishing after one begun after it: stale.
            return Ok(());
        }
        if counts.day != day {
            counts.day = day;
            for offer in counts.by_offer.values() {
                offer.clicks.store(0, Ordering::Relaxed);
                offer.ftds.store(0, Ordering::Relaxed);
            }
        }
        for total in totals {
            let offer = counts.by_offer.entry(total.offer_id).or_default();
            offer.clicks.fetch_max(total.clicks, Ordering::Relaxed);
            offer.ftds.fetch_max(total.ftds, Ordering::Relaxed);
        }
        Ok(())
    }

    fn daily_counts(&self) -> std::sync::MutexGuard<'_, DailyCounts> {
        // Never held across an `.await`, and never taken on the click path.
        self.daily_counts.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

//! What the dashboard's pages show, one operation per page: activity over a period (totals and a
//! series per offer), the offers with how they route and what their caps used today, the latest
//! clicks, the routing's history, and the routing history's recording.
//!
//! Everything is read from the rollups or from bounded queries (whole hours of `click_rollup_hourly`,
//! one grouped pass per kind of event, the newest clicks through the primary key), so a page costs
//! the same on ten million clicks as on ten thousand.

use std::collections::BTreeMap;

use time::{Duration, OffsetDateTime};

use super::{App, AppError, OfferReport};
use crate::store::{ClickSummary, FALLBACK_OFFER_ID, Figures, Offer, RoutingShare, TimeRange, current_hour};

/// The longest period a page reports on.
pub const MAX_PERIOD_DAYS: i64 = 400;
/// How far apart the routing history's records are.
pub const ROUTING_SLOT: Duration = Duration::minutes(10);
/// Most clicks the live view lists.
pub const MAX_LIVE_CLICKS: u32 = 500;

/// How a series is cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket {
    /// One point per hour.
    Hour,
    /// One point per UTC day.
    Day,
}

impl Bucket {
    fn length(self) -> Duration {
        match self {
            Bucket::Hour => Duration::HOUR,
            Bucket::Day => Duration::DAY,
        }
    }
}

/// A period of whole hours, `[from, to)`, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    from: OffsetDateTime,
    to: OffsetDateTime,
}

impl Period {
    /// `[from, to)`, both whole UTC hours, `from` before `to`, at most [`MAX_PERIOD_DAYS`] apart.
    pub fn new(from: OffsetDateTime, to: OffsetDateTime) -> Result<Period, AppError> {
        let whole_hour = |t: OffsetDateTime| t.unix_timestamp() % 3600 == 0 && t.nanosecond() == 0;
        if !whole_hour(from) || !whole_hour(to) {
            return Err(AppError::invalid("from and to must be whole hours"));
        }
        if from >= to {
            return Err(AppError::invalid("from must be before to"));
        }
        if to - from > Duration::days(MAX_PERIOD_DAYS) {
            return Err(AppError::invalid(format!("the period may span at most {MAX_PERIOD_DAYS} days")));
        }
        Ok(Period { from, to })
    }

    /// Today so far, in whole hours: from the UTC day's midnight to the end of `now`'s hour.
    pub fn today(now: OffsetDateTime) -> Period {
        let hour_end = current_hour(now).0 + Duration::HOUR;
        let midnight = now.to_offset(time::UtcOffset::UTC).replace_time(time::Time::MIDNIGHT);
        Period { from: midnight, to: hour_end }
    }

    /// The `days` days up to the end of `now`'s hour.
    pub fn last_days(days: i64, now: OffsetDateTime) -> Result<Period, AppError> {
        let hour_end = current_hour(now).0 + Duration::HOUR;
        Period::new(hour_end - Duration::days(days), hour_end)
    }

    /// Its start.
    pub fn from(self) -> OffsetDateTime {
        self.from
    }

    /// Its end (excluded).
    pub fn to(self) -> OffsetDateTime {
        self.to
    }

    /// The same as a [`TimeRange`].
    pub fn range(self) -> TimeRange {
        TimeRange { from: Some(self.from), to: Some(self.to) }
    }

    /// The starts of its buckets.
    fn buckets(self, bucket: Bucket) -> Vec<OffsetDateTime> {
        let mut starts = Vec::new();
        let mut start = self.from;
        while start < self.to {
            starts.push(start);
            start += bucket.length();
        }
        starts
    }
}

/// One offer's part of an [`Activity`].
#[derive(Debug, Clone, PartialEq)]
pub struct OfferActivity {
    /// The offer ([`FALLBACK_OFFER_ID`] for the fallback URL).
    pub offer_id: i64,
    /// Its name (`fallback URL`, or `offer N` for a deleted one).
    pub name: String,
    /// Its share of new clicks now (0 for an offer out of the routing).
    pub traffic_share_now: f64,
    /// Its figures per bucket, in the order of [`Activity::buckets`].
    pub series: Vec<Figures>,
    /// Its figures over the period.
    pub totals: Figures,
}

/// What happened over a period: totals, and each offer's figures per bucket.
#[derive(Debug, Clone, PartialEq)]
pub struct Activity {
    /// The period.
    pub period: Period,
    /// How it is cut.
    pub bucket: Bucket,
    /// The starts of the buckets.
    pub buckets: Vec<OffsetDateTime>,
    /// Every offer with clicks or events in the period, and every offer routed now, by id.
    pub offers: Vec<OfferActivity>,
    /// Everything added up.
    pub totals: Figures,
}

/// An offer on the Offers page: as stored, its report, and its caps used today.
#[derive(Debug, Clone, PartialEq)]
pub struct OfferStanding {
    /// The offer.
    pub offer: Offer,
    /// Its figures over the period asked for, and how it routes now.
    pub report: OfferReport,
    /// `(clicks, ftds)` counted today, for an offer with a daily cap.
    pub today: Option<(u64, u64)>,
}

/// A click of the live view, with its offer's name.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveClick {
    /// The click.
    pub click: ClickSummary,
    /// Its offer's name (`fallback URL`, or `offer N` for a deleted one).
    pub offer_name: String,
}

/// The routing over a period: each offer's share per recorded slot, and how it routes now.
#[derive(Debug, Clone, PartialEq)]
pub struct RoutingHistory {
    /// The recorded slots, oldest first.
    pub slots: Vec<OffsetDateTime>,
    /// Each offer in the history or routed now: its name, its share per slot (`None`: not routed
    /// then), and its report now (figures of the last 24 hours, posterior now).
    pub offers: Vec<OfferRouting>,
}

/// One offer of a [`RoutingHistory`].
#[derive(Debug, Clone, PartialEq)]
pub struct OfferRouting {
    /// The offer.
    pub offer_id: i64,
    /// Its name.
    pub name: String,
    /// Its share of new clicks in each slot of [`RoutingHistory::slots`].
    pub shares: Vec<Option<f64>>,
    /// How it routes now (for an offer that still exists).
    pub now: Option<OfferReport>,
}

impl App {
    /// Figures and per-offer series over `period`, cut by `bucket`.
    pub async fn activity(&self, period: Period, bucket: Bucket) -> Result<Activity, AppError> {
        let figures = self.store.hourly_figures(period.from, period.to).await?;
        let offers = self.store.list_offers(false).await?;
        let buckets = period.buckets(bucket);
        let table = self.table.load();
        let new_offer = |offer_id: i64| OfferActivity {
            offer_id,
            name: offer_name(&offers, offer_id),
            traffic_share_now: table.offers().iter().find(|o| o.offer_id == offer_id).map_or(0.0, |o| o.propensity),
            series: vec![Figures::default(); buckets.len()],
            totals: Figures::default(),
        };
        let mut by_offer: BTreeMap<i64, OfferActivity> = BTreeMap::new();
        let mut totals = Figures::default();
        for row in &figures {
            let index = ((row.hour - period.from).whole_seconds() / bucket.length().whole_seconds()) as usize;
            let offer = by_offer.entry(row.offer_id).or_insert_with(|| new_offer(row.offer_id));
            if let Some(point) = offer.series.get_mut(index) {
                point.add(&row.figures);
            }
            offer.totals.add(&row.figures);
            totals.add(&row.figures);
        }
        for routed in table.offers() {
            by_offer.entry(routed.offer_id).or_insert_with(|| new_offer(routed.offer_id));
        }
        Ok(Activity { period, bucket, buckets, offers: by_offer.into_values().collect(), totals })
    }

    /// Every offer with its figures over `period` (by click time), how it routes now, and what it
    /// used of its daily caps today.
    pub async fn offer_standings(&self, period: Period) -> Result<Vec<OfferStanding>, AppError> {
        let offers = self.store.list_offers(false).await?;
        let mut reports = self.offer_report(period.range()).await?;
        Ok(offers
            .into_iter()
            .filter_map(|offer| {
                let index = reports.iter().position(|report| report.stats.offer_id == offer.id)?;
                let report = reports.swap_remove(index);
                Some(OfferStanding { today: self.counts_today(&offer), offer, report })
            })
            .collect())
    }

    /// The last `limit` clicks stored (at most [`MAX_LIVE_CLICKS`]), newest first.
    pub async fn latest_clicks(&self, limit: u32) -> Result<Vec<LiveClick>, AppError> {
        let mut clicks = self.store.latest_clicks(limit.min(MAX_LIVE_CLICKS)).await?;
        // The store finds them through the primary key (a UUID v7 orders by the millisecond only,
        // and at random within one); their times order them exactly.
        clicks.sort_by_key(|click| std::cmp::Reverse(click.created_at));
        let offers = self.store.list_offers(false).await?;
        Ok(clicks
            .into_iter()
            .map(|click| LiveClick { offer_name: offer_name(&offers, click.offer_id), click })
            .collect())
    }

    /// The routing's history over `period`, and how each offer routes now.
    pub async fn routing_history(&self, period: Period) -> Result<RoutingHistory, AppError> {
        let history = self.store.routing_history(period.from, period.to).await?;
        let offers = self.store.list_offers(false).await?;
        let now = OffsetDateTime::now_utc();
        let reports = self.offer_report(TimeRange { from: Some(now - Duration::DAY), to: Some(now) }).await?;
        let mut slots: Vec<OffsetDateTime> = history.iter().map(|share| share.slot).collect();
        slots.dedup();
        let mut by_offer: BTreeMap<i64, OfferRouting> = BTreeMap::new();
        for share in &history {
            let slot = slots.binary_search(&share.slot).unwrap_or_default();
            by_offer
                .entry(share.offer_id)
                .or_insert_with(|| OfferRouting {
                    offer_id: share.offer_id,
                    name: offer_name(&offers, share.offer_id),
                    shares: vec![None; slots.len()],
                    now: None,
                })
                .shares[slot] = Some(share.traffic_share);
        }
        for report in reports.into_iter().filter(|report| report.stats.active) {
            let (offer_id, name) = (report.stats.offer_id, report.stats.name.clone());
            let slots = slots.len();
            by_offer
                .entry(offer_id)
                .or_insert_with(|| OfferRouting { offer_id, name, shares: vec![None; slots], now: None })
                .now = Some(report);
        }
        Ok(RoutingHistory { slots, offers: by_offer.into_values().collect() })
    }

    /// Records the current table's shares (and, under `thompson`, posteriors) in the routing history:
    /// at the first rebuild of each [`ROUTING_SLOT`], and again within the slot when the table routes
    /// other offers (the slot then holds the shares as of that change).
    pub(super) async fn record_routing(&self, now: OffsetDateTime) {
        let slot_seconds = ROUTING_SLOT.whole_seconds();
        let slot = now.unix_timestamp().div_euclid(slot_seconds) * slot_seconds;
        let table = self.table.load_full();
        let offer_ids: Vec<i64> = table.offers().iter().map(|routed| routed.offer_id).collect();
        {
            let mut recorded = self.recorded_routing.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if recorded.0 == slot && recorded.1 == offer_ids {
                return;
            }
            *recorded = (slot, offer_ids);
        }
        let Ok(slot_start) = OffsetDateTime::from_unix_timestamp(slot) else { return };
        let learned = self.current_thompson();
        let shares: Vec<RoutingShare> = table
            .offers()
            .iter()
            .map(|routed| {
                let posterior = learned.as_ref().and_then(|learned| {
                    let result = &learned.result;
                    let index = result.posteriors.iter().position(|p| p.offer_id == routed.offer_id)?;
                    Some((result.posteriors[index].mean_epc(), result.probability_best[index]))
                });
                RoutingShare {
                    slot: slot_start,
                    offer_id: routed.offer_id,
                    traffic_share: routed.propensity,
                    epc_mean: posterior.map(|(epc, _)| epc),
                    probability_best: posterior.map(|(_, best)| best),
                }
            })
            .collect();
        if let Err(error) = self.store.record_routing(&shares).await {
            // The next rebuild tries again.
            *self.recorded_routing.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = (i64::MIN, Vec::new());
            tracing::debug!(%error, "recording the routing history failed");
        }
    }
}

/// The name an offer id shows under: its name, `fallback URL`, or `offer N` for one deleted since.
pub fn offer_name(offers: &[Offer], offer_id: i64) -> String {
    if offer_id == FALLBACK_OFFER_ID {
        return "fallback URL".to_owned();
    }
    offers.iter().find(|offer| offer.id == offer_id).map_or_else(|| format!("offer {offer_id}"), |o| o.name.clone())
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    #[test]
    fn a_period_is_whole_hours_in_order_and_bounded() {
        let from = datetime!(2026-12-01 00:00 UTC);
        assert!(Period::new(from, from + Duration::HOUR).is_ok());
        assert!(Period::new(from + Duration::minutes(30), from + Duration::HOUR).is_err());
        assert!(Period::new(from, from).is_err());
        assert!(Period::new(from + Duration::DAY, from).is_err());
        assert!(Period::new(from, from + Duration::days(MAX_PERIOD_DAYS)).is_ok());
        assert!(Period::new(from, from + Duration::days(MAX_PERIOD_DAYS + 1)).is_err());
    }

    #[test]
    fn today_and_the_last_days_end_with_the_current_hour() {
        let now = datetime!(2026-12-04 17:20:05 UTC);
        let today = Period::today(now);
        assert_eq!((today.from(), today.to()), (datetime!(2026-12-04 00:00 UTC), datetime!(2026-12-04 18:00 UTC)));
        let week = Period::last_days(7, now).unwrap();
        assert_eq!((week.from(), week.to()), (datetime!(2026-11-27 18:00 UTC), datetime!(2026-12-04 18:00 UTC)));
        assert!(Period::last_days(MAX_PERIOD_DAYS + 1, now).is_err());
    }

    #[test]
    fn a_period_is_cut_into_its_buckets() {
        let from = datetime!(2026-12-01 00:00 UTC);
        let period = Period::new(from, from + Duration::days(2)).unwrap();
        assert_eq!(period.buckets(Bucket::Day), [from, from + Duration::DAY]);
        assert_eq!(period.buckets(Bucket::Hour).len(), 48);
    }
}

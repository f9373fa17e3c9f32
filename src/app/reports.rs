//! What the router reports: per-offer stats with the routing's view of each offer, the postback log,
//! weight recalculation on request, and health.
//!
//! Stats are read by click time from the store; the routing figures (traffic share, Thompson
//! posterior) come from the table in use, so that an offer's `probability_best` is the share it gets;
//! grouped by a trait of the learning segments, each row shows its segments' posteriors and shares.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use super::{App, AppError, Learned};
use crate::config::RoutingStrategy;
use crate::metrics::WriterSnapshot;
use crate::routing::thompson::OfferPosterior;
use crate::routing::{RoutingTable, Segment, SegmentKey, WeightedOffer};
use crate::store::{
    Dimension, FALLBACK_OFFER_ID, Grouping, OfferStats, PostbackLogQuery, PostbackLogRow, SegmentStats, TimeRange,
};
use crate::visitor::{Country, DeviceClass};

/// One offer's figures over a range, with how it is routed now.
#[derive(Debug, Clone, PartialEq)]
pub struct OfferReport {
    /// Clicks, FTDs and revenue over the range.
    pub stats: OfferStats,
    /// The weight that routes it now: the stored weight under `ev`, the table's share under
    /// `thompson` (for an active offer).
    pub weight: f64,
    /// Share of new clicks it gets now.
    pub traffic_share: f64,
    /// The Thompson posterior's figures (active offers).
    pub thompson: Option<ThompsonFigures>,
}

/// An offer's Thompson posterior, summarised.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ThompsonFigures {
    /// Mean earnings per click.
    pub epc_mean: f64,
    /// Its 90% interval.
    pub epc_interval_90: [f64; 2],
    /// Probability of having the highest earnings per click among the active offers.
    pub probability_best: f64,
}

/// Figures grouped by offer, a visitor dimension, or both.
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentReport {
    /// One row per group, most clicks first.
    pub rows: Vec<SegmentRow>,
}

/// One group of a [`SegmentReport`].
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentRow {
    /// The figures.
    pub stats: SegmentStats,
    /// The offer's name, when grouped by offer and the offer exists.
    pub offer_name: Option<String>,
    /// Whether the row is the clicks sent to the fallback URL.
    pub is_fallback: bool,
    /// Under `thompson`, grouped by a trait that makes learning segments: the learned segments of
    /// that value (say, each device class of a country), with how they route now.
    pub segments: Vec<SegmentRouting>,
}

/// How one learned segment routes now.
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentRouting {
    /// The segment.
    pub segment: SegmentKey,
    /// Each offer that accepts its visitors (only the row's, when grouped by offer).
    pub offers: Vec<SegmentOffer>,
}

/// One offer in a learned segment.
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentOffer {
    /// The offer.
    pub offer_id: i64,
    /// Its share of the segment's visitors now (without a source or campaign rule narrowing them).
    pub traffic_share: f64,
    /// Its posterior in the segment.
    pub posterior: OfferPosterior,
}

/// A page of the postback log, newest first.
#[derive(Debug, Clone, PartialEq)]
pub struct PostbackLogPage {
    /// The lines.
    pub rows: Vec<PostbackLogRow>,
    /// The `before_id` of the next (older) page; `None` on the last page.
    pub next_before_id: Option<i64>,
}

/// Whether the router can do its job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthStatus {
    /// Routing, and the database is reachable.
    Ok,
    /// Routing, but the database is unreachable (clicks wait in memory or in the journal).
    Degraded,
    /// No active offer: every click is refused until one is added.
    NoActiveOffers,
}

impl HealthStatus {
    /// Every status.
    pub const ALL: [HealthStatus; 3] = [HealthStatus::Ok, HealthStatus::Degraded, HealthStatus::NoActiveOffers];

    /// The status word of `/health`.
    pub const fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Ok => "ok",
            HealthStatus::Degraded => "degraded",
            HealthStatus::NoActiveOffers => "no_active_offers",
        }
    }
}

/// The router's health, as `/health` shows it.
#[derive(Debug, Clone, Copy)]
pub struct Health {
    /// The verdict.
    pub status: HealthStatus,
    /// Whether the database answered just now.
    pub database_up: bool,
    /// Offers in the routing table.
    pub active_offers: usize,
    /// The writer's queue, outage memory and journal.
    pub writer: WriterSnapshot,
}

impl App {
    /// Figures over `range` (by click time) grouped as asked, with people and bots apart, from the
    /// rollups.
    pub async fn segment_report(&self, range: TimeRange, grouping: Grouping) -> Result<SegmentReport, AppError> {
        let mut stats = self.store.segment_stats(range, grouping).await?;
        stats.sort_by(|a, b| (b.clicks + b.bots).cmp(&(a.clicks + a.bots)).then_with(|| a.offer_id.cmp(&b.offer_id)));
        let names = if grouping.by_offer { self.store.list_offers(false).await? } else { Vec::new() };
        let learned = self.current_thompson().filter(|_| self.config.routing_strategy == RoutingStrategy::Thompson);
        let table = self.table.load();
        let rows = stats
            .into_iter()
            .map(|stats| SegmentRow {
                offer_name: names.iter().find(|offer| Some(offer.id) == stats.offer_id).map(|offer| offer.name.clone()),
                is_fallback: stats.offer_id == Some(FALLBACK_OFFER_ID),
                segments: match (&learned, grouping.dimension) {
                    (Some(learned), Some(dimension)) => segments_of(learned, &table, dimension, &stats),
                    _ => Vec::new(),
                },
                stats,
            })
            .collect();
        Ok(SegmentReport { rows })
    }

    /// Per-offer stats over `range` (by click time), with each offer's current routing figures.
    pub async fn offer_report(&self, range: TimeRange) -> Result<Vec<OfferReport>, AppError> {
        let rows = self.store.offer_stats(range).await?;
        let active: Vec<i64> = rows.iter().filter(|row| row.active).map(|row| row.offer_id).collect();
        // Under `thompson`, the posterior the current table was built from (so that
        // `probability_best` is the table's weight), unless the active offers changed since;
        // otherwise a fresh one.
        let current = self
            .current_thompson()
            .filter(|current| current.result.posteriors.iter().map(|p| p.offer_id).eq(active.iter().copied()));
        let learned = match current {
            Some(current) => current,
            None => Arc::new(self.thompson(&active).await?),
        };
        let posterior = &learned.result;
        let epc_intervals = posterior.epc_intervals();
        let table = self.table.load();
        let thompson_routes = self.config.routing_strategy == RoutingStrategy::Thompson;
        Ok(rows
            .into_iter()
            .map(|stats| {
                let thompson = active.iter().position(|&id| id == stats.offer_id).map(|index| {
                    let (low, high) = epc_intervals[index];
                    ThompsonFigures {
                        epc_mean: posterior.posteriors[index].mean_epc(),
                        epc_interval_90: [low, high],
                        probability_best: posterior.probability_best[index],
                    }
                });
                let traffic_share = table
                    .offers()
                    .iter()
                    .find(|offer| offer.offer_id == stats.offer_id)
                    .map_or(0.0, |offer| offer.propensity);
                // Under `thompson` the table's probabilities are the weights; an offer's stored
                // weight waits for a switch back to `ev`.
                let weight = if thompson_routes && stats.active { traffic_share } else { stats.weight };
                OfferReport { stats, weight, traffic_share, thompson }
            })
            .collect())
    }

    /// A page of the postback log.
    pub async fn postback_log(&self, query: &PostbackLogQuery) -> Result<PostbackLogPage, AppError> {
        let rows = self.store.postback_log(query).await?;
        let full_page = rows.len() == query.limit as usize;
        let next_before_id = if full_page { rows.last().map(|row| row.id) } else { None };
        Ok(PostbackLogPage { rows, next_before_id })
    }

    /// Recomputes the weights now, on an admin's request (see [`App::recalculate_weights`]).
    pub async fn update_weights(&self) -> Result<Vec<WeightedOffer>, AppError> {
        self.recalculate_weights()
            .await?
            .ok_or(AppError::Conflict("another instance is recalculating the weights; retry shortly"))
    }

    /// Whether the router can route and reach its database, and how many clicks wait.
    pub async fn health(&self) -> Health {
        let database_up = self.store.ping().await.is_ok();
        let writer = self.writer_snapshot();
        let active_offers = self.routable_offers();
        let status = if active_offers == 0 {
            HealthStatus::NoActiveOffers
        } else if database_up && !writer.outage {
            HealthStatus::Ok
        } else {
            HealthStatus::Degraded
        };
        Health { status, database_up, active_offers, writer }
    }

    /// The writer's figures, for `/health` and `/metrics`.
    pub(super) fn writer_snapshot(&self) -> WriterSnapshot {
        let (stats, journal) = (self.queue.stats(), self.queue.journal());
        WriterSnapshot {
            queue_depth: self.queue.depth(),
            queue_capacity: self.config.click_queue_capacity,
            held: stats.held.load(Relaxed),
            outage: stats.outage.load(Relaxed),
            journal_clicks: journal.clicks.load(Relaxed),
            journal_bytes: journal.bytes.load(Relaxed),
            written: stats.written.load(Relaxed),
            failed: stats.failed.load(Relaxed),
            rejected: stats.rejected.load(Relaxed),
        }
    }
}

/// The learned segments whose `dimension` has the row's value, each with how it routes (only the
/// row's offer, when grouped by offer).
fn segments_of(
    learned: &Learned,
    table: &RoutingTable,
    dimension: Dimension,
    row: &SegmentStats,
) -> Vec<SegmentRouting> {
    let value = row.value.as_deref().unwrap_or("");
    let in_row = |key: &SegmentKey| match dimension {
        Dimension::Country => key.country.is_some_and(|country| country.as_str() == value),
        Dimension::Device => key.device.is_some_and(|device| device.as_str() == value),
        Dimension::Source => key.source.as_deref() == Some(value),
        Dimension::Campaign => false,
    };
    learned
        .segmentation
        .keys()
        .iter()
        .enumerate()
        .filter(|(_, key)| in_row(key))
        .filter_map(|(index, key)| {
            let posterior = learned.result.segment(index)?;
            let visitor = Segment {
                country: key.country.unwrap_or(Country::UNKNOWN),
                device: key.device.unwrap_or(DeviceClass::Desktop),
                source: key.source.as_deref().filter(|source| !source.is_empty()),
                campaign: None,
            };
            let offers = table
                .shares(&visitor)
                .into_iter()
                .filter(|&(offer_id, _)| row.offer_id.is_none_or(|row_offer| row_offer == offer_id))
                .filter_map(|(offer_id, traffic_share)| {
                    let posterior = posterior.offers.iter().find(|p| p.offer_id == offer_id)?.clone();
                    Some(SegmentOffer { offer_id, traffic_share, posterior })
                })
                .collect();
            Some(SegmentRouting { segment: key.clone(), offers })
        })
        .collect()
}

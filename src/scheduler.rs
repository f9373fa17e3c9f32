//! Background work on a timer: the weight recalculation every `CRON_INTERVAL_HOURS` (`ev`) or the
//! Thompson refresh every `THOMPSON_REFRESH_SECONDS` (`thompson`), the check for offer or weight
//! changes made by other instances every `TABLE_REFRESH_SECONDS`, and every second the held
//! postbacks: those whose clicks are stored now (by any instance) applied, those whose time ran
//! out given up; at start and every hour the clicks table's upkeep (partitions, retention).
//!
//! A failed recalculation (database down) keeps the current table, is logged, and is retried after
//! `RETRY_DELAY` (or the interval, if shorter); the click path is not affected either way.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};

use crate::app::App;
use crate::config::RoutingStrategy;

/// Pause before retrying a failed recalculation.
const RETRY_DELAY: Duration = Duration::from_secs(60);
/// How often held postbacks are looked at: how long one may wait after its click is stored.
const HELD_POSTBACKS_INTERVAL: Duration = Duration::from_secs(1);

/// How often the clicks table's partitions and retention are seen to.
const CLICK_UPKEEP_INTERVAL: Duration = Duration::from_secs(3600);

/// Runs until `stop` turns true.
pub async fn run(app: Arc<App>, mut stop: watch::Receiver<bool>) {
    // `ev` recalculates every CRON_INTERVAL_HOURS; `thompson` refreshes its probabilities far more
    // often (THOMPSON_REFRESH_SECONDS), reading only hourly rollups.
    let interval = match app.config().routing_strategy {
        RoutingStrategy::Ev => app.config().recalc_interval,
        RoutingStrategy::Thompson => app.config().thompson_refresh_interval,
    };
    let mut next_recalc = Instant::now() + interval;
    let mut refresh = tokio::time::interval(app.config().table_refresh_interval);
    refresh.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut held = tokio::time::interval(HELD_POSTBACKS_INTERVAL);
    held.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut upkeep = tokio::time::interval(CLICK_UPKEEP_INTERVAL);
    upkeep.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() {
                    return;
                }
            }
            () = tokio::time::sleep_until(next_recalc) => {
                next_recalc = match app.recalculate_weights().await {
                    Ok(Some(_)) => Instant::now() + interval,
                    Ok(None) => {
                        tracing::info!("another instance is recalculating; skipping this run");
                        Instant::now() + interval
                    }
                    Err(error) => {
                        tracing::warn!(%error, "weight recalculation failed; keeping current weights");
                        Instant::now() + RETRY_DELAY.min(interval)
                    }
                };
            }
            _ = refresh.tick() => {
                if let Err(error) = app.refresh_if_changed().await {
                    tracing::debug!(%error, "routing refresh failed");
                }
            }
            // At start, then hourly; a failure waits for the next hour (partitions exist a week ahead).
            _ = upkeep.tick() => {
                if let Err(error) = app.maintain_clicks(time::OffsetDateTime::now_utc()).await {
                    tracing::warn!(%error, "clicks table upkeep failed; retrying in an hour");
                }
            }
            // Every second: during an outage (which the writer and /health report) a failure here
            // is only a debug line, and the next second retries.
            _ = held.tick() => {
                if let Err(error) = app.apply_held_postbacks().await {
                    tracing::debug!(%error, "applying held postbacks failed; retrying");
                }
                if let Err(error) = app.expire_held_postbacks().await {
                    tracing::debug!(%error, "expiring held postbacks failed; retrying");
                }
            }
        }
    }
}

//! Keeping the clicks table in shape: partitions ahead of time and clicks past retention removed
//! (`CLICK_PARTITION_DAYS`, `CLICK_RETENTION_DAYS`), run by the scheduler at start and every hour.
//!
//! Why hourly: a partition is needed only when its first day begins, and partitions exist a week
//! ahead, so an hour (or a day of failures) is never late; retention is by whole days, so an hour's
//! delay in dropping a day keeps it an hour longer and costs nothing else. Every instance runs it;
//! the store makes concurrent runs wait for each other, and a run finds the work done.

use time::OffsetDateTime;

use super::App;
use crate::store::{ClickUpkeep, ClickUpkeepDone, StoreError};

impl App {
    /// Creates the partitions due by a week from `now` and removes the clicks past retention.
    pub async fn maintain_clicks(&self, now: OffsetDateTime) -> Result<ClickUpkeepDone, StoreError> {
        let retention = self
            .config
            .click_retention
            .map(|retention| time::Duration::try_from(retention).unwrap_or(time::Duration::MAX));
        let upkeep = ClickUpkeep { now, partition_days: self.config.click_partition_days, retention };
        let done = self.store.maintain_clicks(upkeep).await?;
        if done != ClickUpkeepDone::default() {
            tracing::info!(
                created = done.partitions_created,
                dropped = ?done.partitions_dropped,
                deleted = done.clicks_deleted,
                "clicks table maintained"
            );
        }
        Ok(done)
    }
}

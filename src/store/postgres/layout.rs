//! The two layouts of the PostgreSQL schema: one server, or distributed by Citus (issue #21).
//!
//! A database where the `citus` extension is installed gets the distributed layout once, after the
//! migrations (`sql/citus.sql`): clicks and their events sharded by click id, rollups by
//! offer, offers as a reference table. The store's statements are the same on both but for what
//! Citus plans differently, which this module writes per layout:
//! - how a statement finds the clicks of its rows. On one server, one probe per row (a correlated
//!   subquery with `OFFSET 0`, which PostgreSQL prunes to the partition of each id at run time,
//!   where a join of not yet analyzed partitions hashes every one of them). Citus refuses correlated
//!   subqueries beside CTEs; a list of the click ids as a parameter prunes its shards instead;
//! - the transaction ids of FTDs and deposits: one server keeps them unique per offer by unique
//!   indexes; Citus cannot (the events are sharded by click), so a statement first claims each tid
//!   in `event_tids` (sharded by offer) and inserts the events whose tid it claimed;
//! - a transaction that reads distributed tables and then changes offers runs over one connection
//!   per node (`citus.multi_shard_modify_mode`), as Citus requires when a table refers to offers.

use deadpool_postgres::{Object, Transaction};

use super::db_error;
use crate::store::StoreResult;

/// Which layout a database has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Layout {
    /// One PostgreSQL server.
    Single,
    /// Citus: a coordinator and its workers.
    Citus,
}

/// The distributed layout's statements.
const CITUS_LAYOUT: &str = include_str!("../../../sql/citus.sql");

impl Layout {
    /// The layout of the database `client` is connected to, after giving a Citus database its
    /// distributed layout if it does not have it yet. Called under the migration lock.
    pub(super) async fn settle(client: &mut Object) -> StoreResult<Layout> {
        let holds = async |client: &mut Object, query: &str| -> StoreResult<bool> {
            Ok(client.query_one(query, &[]).await.map_err(db_error)?.get(0))
        };
        if !holds(client, "SELECT EXISTS (SELECT FROM pg_extension WHERE extname = 'citus')").await? {
            return Ok(Layout::Single);
        }
        let distributed = "SELECT EXISTS (SELECT FROM pg_dist_partition WHERE logicalrelid = 'clicks'::regclass)";
        if !holds(client, distributed).await? {
            let tx = client.transaction().await.map_err(db_error)?;
            tx.batch_execute(CITUS_LAYOUT).await.map_err(db_error)?;
            tx.commit().await.map_err(db_error)?;
            tracing::info!("laid the schema out for Citus: clicks and events sharded by click_id");
        }
        Ok(Layout::Citus)
    }

    /// The condition that the click of `{row}.click_id` is stored; `ids` is an array expression
    /// holding every row's click id.
    pub(super) fn click_stored(self, row: &str, ids: &str) -> String {
        match self {
            Layout::Single => format!("EXISTS (SELECT 1 FROM clicks c WHERE c.click_id = {row}.click_id OFFSET 0)"),
            Layout::Citus => {
                format!("{row}.click_id IN (SELECT c.click_id FROM clicks c WHERE c.click_id = ANY ({ids}))")
            }
        }
    }

    /// A FROM-clause item joining each row of `{row}` to its click as `c` (its visitor's columns).
    fn join_click(self, row: &str, ids: &str) -> String {
        match self {
            Layout::Single => format!(
                "CROSS JOIN LATERAL (SELECT c.country, c.device, c.source, c.campaign FROM clicks c
                                     WHERE c.click_id = {row}.click_id OFFSET 0) c"
            ),
            Layout::Citus => format!("JOIN clicks c ON c.click_id = {row}.click_id AND c.click_id = ANY ({ids})"),
        }
    }

    /// Begins a transaction that reads distributed tables and then changes offers: on Citus, in its
    /// sequential mode; on one server, as any other (no round trip).
    pub(super) async fn before_offer_changes(self, tx: &Transaction<'_>) -> StoreResult<()> {
        if self == Layout::Citus {
            tx.batch_execute("SET LOCAL citus.multi_shard_modify_mode TO 'sequential'").await.map_err(db_error)?;
        }
        Ok(())
    }
}

/// A data-modifying CTE named `rollup` that adds events to `event_rollup_hourly`, the registrations,
/// FTDs and revenue per offer, hour of the click, and value of each visitor dimension (0007).
/// `events` is a query giving rows of `(click_id, offer_id, click_at, registrations, ftds, revenue)`;
/// `ids` an array expression holding their click ids. Rows are upserted in key order, so that
/// concurrent statements wait for each other instead of deadlocking.
pub(super) fn event_rollup(layout: Layout, events: &str, ids: &str) -> String {
    format!(
        "rollup AS (
             INSERT INTO event_rollup_hourly AS r (offer_id, hour, dimension, value, registrations, ftds, amount)
             SELECT e.offer_id, date_trunc('hour', e.click_at, 'UTC'), d.dimension, d.value,
                    sum(e.registrations), sum(e.ftds), sum(e.revenue)
             FROM ({events}) e (click_id, offer_id, click_at, registrations, ftds, revenue)
             {click}
             CROSS JOIN LATERAL (VALUES ('', ''), ('country', COALESCE(c.country, '')),
                                        ('device', COALESCE(c.device, '')), ('source', COALESCE(c.source, '')),
                                        ('campaign', COALESCE(c.campaign, ''))) d (dimension, value)
             GROUP BY 1, 2, 3, 4
             ORDER BY 3, 2, 1, 4
             ON CONFLICT (dimension, hour, offer_id, value) DO UPDATE SET
                 registrations = r.registrations + excluded.registrations,
                 ftds = r.ftds + excluded.ftds,
                 amount = r.amount + excluded.amount
         )",
        click = layout.join_click("e", ids)
    )
}

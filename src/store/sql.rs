//! The SQL both stores run, written once, and the mapping of its rows to the store's types.
//!
//! A statement is one text with PostgreSQL's `$n` parameters and a few `{token}`s for what the
//! dialects spell differently (see [`Dialect`]); each store renders it once for its dialect. Rows are
//! read through [`Columns`], which each store implements for its own row type, so that which column
//! becomes which field is also written once. What is left in the stores is what really differs:
//! PostgreSQL's COPY ingest, advisory locks and FTD batching; SQLite's integer times and money.
//!
//! Portability rules the texts keep: casts are `CAST(x AS BIGINT)` / `CAST(x AS DOUBLE PRECISION)`;
//! a parameter whose type PostgreSQL cannot infer is not used (the postback log's filters are built
//! from the filters present instead of `$1 IS NULL OR ...`).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::LazyLock;

use time::OffsetDateTime;

use uuid::Uuid;

use super::{
    ClaimedPostback, ClickOwner, ClickSummary, DailyTotal, DashboardSession, Dimension, Figures, Grouping,
    HeldPostback, HourlyFigures, Offer, OfferStats, PostbackLogEntry, PostbackLogQuery, PostbackLogRow,
    PostbackOutcome, RoutingShare, SegmentStats, StoreError, StoreResult,
};
use crate::conversion::EventKind;
use crate::routing::{DailyCaps, OfferWindow, Targeting};

/// How a dialect spells what the shared statements leave open.
#[derive(Debug)]
pub(crate) struct Dialect {
    /// What stands before a parameter's number: `$1` or `?1`.
    param: char,
    /// `{amount}`: the column of an exact money amount (`NUMERIC` in currency units, or integer
    /// micro-units).
    amount: &'static str,
    /// `{units}`: appended to a `CAST(.. AS DOUBLE PRECISION)` of a sum of `{amount}`s, to make
    /// currency units of it.
    units: &'static str,
    /// `{lock}`: appended to a `SELECT` whose rows the transaction goes on to change.
    lock: &'static str,
}

/// PostgreSQL: money is `NUMERIC`, rows are locked for update.
pub(crate) const POSTGRES: Dialect = Dialect { param: '$', amount: "amount", units: "", lock: " FOR UPDATE" };

/// SQLite: money is integer micro-units; one writer at a time, so nothing to lock.
pub(crate) const SQLITE: Dialect = Dialect { param: '?', amount: "amount_micros", units: " / 1000000.0", lock: "" };

impl Dialect {
    /// `template` in this dialect.
    pub(crate) fn render(&self, template: &str) -> String {
        let text =
            template.replace("{amount}", self.amount).replace("{units}", self.units).replace("{lock}", self.lock);
        let mut out = String::with_capacity(text.len());
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            let is_param = c == '$' && chars.peek().is_some_and(char::is_ascii_digit);
            out.push(if is_param { self.param } else { c });
        }
        out
    }

    /// A parameter's placeholder.
    fn placeholder(&self, number: usize) -> String {
        format!("{}{number}", self.param)
    }
}

/// Every statement, rendered for one dialect.
#[derive(Debug)]
pub(crate) struct Statements {
    pub routing_version: String,
    pub bump_routing_version: String,
    pub list_offers: String,
    pub get_offer: String,
    pub update_offer: String,
    pub offer_exists: String,
    pub offer_has_clicks: String,
    pub delete_offer: String,
    pub click_owner: String,
    pub ftd_of: String,
    pub void_ftd: String,
    pub insert_log: String,
    pub insert_log_returning_id: String,
    pub click_stored: String,
    pub set_log_outcome: String,
    pub claim_held: String,
    pub claimed_held: String,
    pub delete_held: String,
    pub delete_log_line: String,
    pub expire_held_lines: String,
    pub expire_held: String,
    pub offer_stats: String,
    pub active_offer_ids: String,
    pub offer_window: String,
    pub set_weight: String,
    pub insert_weight_history: String,
    pub insert_migration: String,
    pub daily_clicks: String,
    pub daily_ftds: String,
    pub hourly_clicks: String,
    pub hourly_events: String,
    pub latest_clicks: String,
    pub record_routing: String,
    pub routing_history: String,
    pub insert_session: String,
    pub delete_expired_sessions: String,
    pub find_session: String,
    pub delete_session: String,
}

impl Statements {
    /// Renders every statement for `dialect`.
    pub(crate) fn new(dialect: &Dialect) -> Statements {
        let r = |template: &str| dialect.render(template);
        Statements {
            routing_version: r("SELECT version FROM routing_state"),
            bump_routing_version: r("UPDATE routing_state SET version = version + 1"),
            list_offers: r(&format!("SELECT {OFFER_COLUMNS} FROM offers WHERE active OR NOT $1 ORDER BY id")),
            get_offer: r(&format!("SELECT {OFFER_COLUMNS} FROM offers WHERE id = $1")),
            update_offer: r(&format!(
                "UPDATE offers SET
                    name = COALESCE($2, name),
                    casino_url = COALESCE($3, casino_url),
                    weight = COALESCE($4, weight),
                    postback_secret = COALESCE($5, postback_secret),
                    active = COALESCE($6, active),
                    event_aliases = COALESCE($7, event_aliases),
                    updated_at = $8,
                    targeting = COALESCE($9, targeting),
                    daily_click_cap = CASE WHEN $10 THEN $11 ELSE daily_click_cap END,
                    daily_ftd_cap = CASE WHEN $12 THEN $13 ELSE daily_ftd_cap END
                 WHERE id = $1 RETURNING {OFFER_COLUMNS}"
            )),
            offer_exists: r("SELECT 1 FROM offers WHERE id = $1{lock}"),
            offer_has_clicks: r("SELECT 1 FROM clicks WHERE offer_id = $1 LIMIT 1"),
            delete_offer: r("DELETE FROM offers WHERE id = $1"),
            click_owner: r("SELECT c.offer_id, c.created_at, o.postback_secret, o.event_aliases
                 FROM clicks c JOIN offers o ON o.id = c.offer_id WHERE c.click_id = $1"),
            ftd_of: r("SELECT id FROM ftd_events WHERE click_id = $1{lock}"),
            void_ftd: r("UPDATE ftd_events SET voided_at = $2 WHERE click_id = $1 AND voided_at IS NULL"),
            insert_log: r(&format!(
                "INSERT INTO postback_log ({POSTBACK_LOG_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
            )),
            insert_log_returning_id: r(&format!(
                "INSERT INTO postback_log ({POSTBACK_LOG_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
                 RETURNING id"
            )),
            // Held postbacks whose clicks are stored and that no instance is applying ($1 = now),
            // claimed until $2; the lease is checked again outside the subquery, so that of two
            // instances claiming at once, the one that waited for the other's row locks skips them.
            click_stored: r("SELECT 1 FROM clicks WHERE click_id = $1"),
            set_log_outcome: r("UPDATE postback_log SET outcome = $2, reason = $3 WHERE id = $1"),
            claim_held: r("UPDATE held_postbacks SET claimed_until = $2
                 WHERE id IN (SELECT h.id FROM held_postbacks h JOIN clicks c ON c.click_id = h.click_id
                              WHERE h.claimed_until IS NULL OR h.claimed_until < $1 ORDER BY h.id LIMIT $3)
                   AND (claimed_until IS NULL OR claimed_until < $1)
                 RETURNING id"),
            claimed_held: r(&format!(
                "SELECT l.id, {log_columns}, h.id, CAST(h.click_id AS TEXT), h.offer_id, h.kind,
                        CAST(h.{{amount}} AS DOUBLE PRECISION){{units}}, h.currency, h.tid, h.external_player_id,
                        h.expires_at, c.offer_id, c.created_at
                 FROM held_postbacks h JOIN postback_log l ON l.id = h.log_id JOIN clicks c ON c.click_id = h.click_id
                 WHERE h.id = $1",
                log_columns = POSTBACK_LOG_COLUMNS.split(", ").map(|c| format!("l.{c}")).collect::<Vec<_>>().join(", ")
            )),
            delete_held: r("DELETE FROM held_postbacks WHERE id = $1"),
            delete_log_line: r("DELETE FROM postback_log WHERE id = $1"),
            expire_held_lines: r("UPDATE postback_log SET outcome = 'expired', reason = $2
                 WHERE id IN (SELECT log_id FROM held_postbacks
                              WHERE expires_at <= $1 AND (claimed_until IS NULL OR claimed_until < $1))"),
            expire_held: r("DELETE FROM held_postbacks
                 WHERE expires_at <= $1 AND (claimed_until IS NULL OR claimed_until < $1)"),
            offer_stats: r(&OFFER_STATS),
            active_offer_ids: r("SELECT id FROM offers WHERE active ORDER BY id"),
            offer_window: r(OFFER_WINDOW),
            set_weight: r("UPDATE offers SET weight = $2 WHERE id = $1"),
            insert_weight_history: r("INSERT INTO weight_history (run_at, offer_id, clicks, ftds, payout, ev, weight)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)"),
            insert_migration: r("INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)"),
            daily_clicks: r("SELECT offer_id, CAST(sum(clicks) AS BIGINT) FROM click_rollup_hourly
                 WHERE hour >= $1 GROUP BY offer_id"),
            daily_ftds: r("SELECT offer_id, count(*) FROM ftd_events
                 WHERE voided_at IS NULL AND ftd_timestamp >= $1 GROUP BY offer_id"),
            hourly_clicks: r("SELECT offer_id, hour, CAST(clicks - bots AS BIGINT), CAST(bots AS BIGINT)
                 FROM click_rollup_hourly WHERE hour >= $1 AND hour < $2"),
            hourly_events: r("SELECT offer_id, hour, CAST(sum(registrations) AS BIGINT), CAST(sum(ftds) AS BIGINT),
                    CAST(sum({amount}) AS DOUBLE PRECISION){units}
                 FROM event_rollup_hourly WHERE dimension = '' AND hour >= $1 AND hour < $2 GROUP BY offer_id, hour"),
            // Newest first through the primary key: click ids are UUID v7, ordered by time. (The
            // column is qualified: bare, `click_id` would name the TEXT output column, whose order
            // no index gives, and every click would be sorted.)
            latest_clicks: r(
                "SELECT CAST(click_id AS TEXT), created_at, offer_id, country, device, source, campaign, is_bot
                 FROM clicks ORDER BY clicks.click_id DESC LIMIT $1",
            ),
            record_routing: r("INSERT INTO routing_history (slot, offer_id, traffic_share, epc_mean, probability_best)
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (slot, offer_id) DO UPDATE SET
                 traffic_share = excluded.traffic_share, epc_mean = excluded.epc_mean,
                 probability_best = excluded.probability_best"),
            routing_history: r("SELECT slot, offer_id, traffic_share, epc_mean, probability_best FROM routing_history
                 WHERE slot >= $1 AND slot < $2 ORDER BY slot, offer_id"),
            insert_session: r(
                "INSERT INTO dashboard_sessions (id_hash, csrf_token, created_at, expires_at) VALUES ($1, $2, $3, $4)",
            ),
            delete_expired_sessions: r("DELETE FROM dashboard_sessions WHERE expires_at <= $1"),
            find_session: r("SELECT id_hash, csrf_token, created_at, expires_at FROM dashboard_sessions
                 WHERE id_hash = $1 AND expires_at > $2"),
            delete_session: r("DELETE FROM dashboard_sessions WHERE id_hash = $1"),
        }
    }
}

/// A row of `hourly_clicks`: `(offer, hour, people, bots)`.
pub(crate) fn hourly_clicks(row: &dyn Columns) -> StoreResult<HourlyFigures> {
    let figures = Figures { clicks: row.count(2)?, bots: row.count(3)?, ..Figures::default() };
    Ok(HourlyFigures { offer_id: row.int(0)?, hour: row.time(1)?, figures })
}

/// A row of `hourly_events`: `(offer, hour, registrations, FTDs, revenue)`.
pub(crate) fn hourly_events(row: &dyn Columns) -> StoreResult<HourlyFigures> {
    let figures =
        Figures { registrations: row.count(2)?, ftds: row.count(3)?, revenue: row.real(4)?, ..Figures::default() };
    Ok(HourlyFigures { offer_id: row.int(0)?, hour: row.time(1)?, figures })
}

/// The rows of the two hourly statements, added up by offer and hour, in hour order.
pub(crate) fn merge_hourly(parts: impl IntoIterator<Item = HourlyFigures>) -> Vec<HourlyFigures> {
    let mut merged: BTreeMap<(OffsetDateTime, i64), HourlyFigures> = BTreeMap::new();
    for part in parts {
        let (offer_id, hour) = (part.offer_id, part.hour);
        merged
            .entry((hour, offer_id))
            .or_insert(HourlyFigures { offer_id, hour, figures: Figures::default() })
            .figures
            .add(&part.figures);
    }
    merged.into_values().collect()
}

/// A row of `latest_clicks`.
pub(crate) fn click_summary(row: &dyn Columns) -> StoreResult<ClickSummary> {
    Ok(ClickSummary {
        click_id: row.text(0)?,
        created_at: row.time(1)?,
        offer_id: row.int(2)?,
        country: row.opt_text(3)?,
        device: row.opt_text(4)?,
        source: row.opt_text(5)?,
        campaign: row.opt_text(6)?,
        is_bot: row.boolean(7)?,
    })
}

/// A row of `routing_history`.
pub(crate) fn routing_share(row: &dyn Columns) -> StoreResult<RoutingShare> {
    Ok(RoutingShare {
        slot: row.time(0)?,
        offer_id: row.int(1)?,
        traffic_share: row.real(2)?,
        epc_mean: row.opt_real(3)?,
        probability_best: row.opt_real(4)?,
    })
}

/// A row of `find_session`.
pub(crate) fn dashboard_session(row: &dyn Columns) -> StoreResult<DashboardSession> {
    Ok(DashboardSession {
        id_hash: row.text(0)?,
        csrf_token: row.text(1)?,
        created_at: row.time(2)?,
        expires_at: row.time(3)?,
    })
}

/// An offer's columns, in the order [`offer`] reads them.
pub(crate) const OFFER_COLUMNS: &str =
    "id, name, casino_url, weight, postback_secret, active, event_aliases, created_at,
    targeting, daily_click_cap, daily_ftd_cap";

/// The columns an offer is inserted with, in the order of each store's values.
pub(crate) const NEW_OFFER_COLUMNS: &str =
    "name, casino_url, weight, postback_secret, active, event_aliases, targeting, daily_click_cap, daily_ftd_cap";

/// The columns of every click insert, in the order of each store's values.
pub(crate) const CLICK_COLUMNS: &str = "click_id, offer_id, created_at, user_agent, ip_address, referrer, source, \
    campaign, propensity, country, device, is_bot, is_fallback";

/// The postback log's columns, in the order of each store's `log_params` values.
pub(crate) const POSTBACK_LOG_COLUMNS: &str =
    "received_at, offer_id, click_id, event, payout, currency, tid, outcome, reason, source_ip, ignored_fields";

/// Per-offer figures over `[$1, $2)` of click time. Clicks (of people: bots are reported apart, in
/// grouped reports) and events of the whole hours `[$3, $4)` from the rollups, those of the partial
/// edge hours from the raw rows (see `rollup_bounds`), found by their click ids `[$5, $6)` and
/// `[$7, $8)` (see [`edge_id_bounds`]), so that only the edges' partitions or shards are read. Each
/// is a grouped pass joined to the offers (not one correlated scan per offer, which a distributed
/// database would not run). Money is summed exactly, then converted once.
static OFFER_STATS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH edge_clicks AS (
            SELECT offer_id, count(*) AS clicks FROM clicks
            WHERE NOT is_bot AND {clicks} AND created_at >= $1 AND created_at < $2
              AND (created_at < $3 OR created_at >= $4)
            GROUP BY offer_id
         ), rollup_clicks AS (
            SELECT offer_id, sum(clicks - bots) AS clicks FROM click_rollup_hourly
            WHERE hour >= $3 AND hour < $4 GROUP BY offer_id
         ), ftd_totals AS (
            SELECT f.offer_id, count(*) AS ftds, COALESCE(sum(p.{{amount}}), 0) AS revenue
            FROM ftd_events f LEFT JOIN payouts p ON p.click_id = f.click_id AND {payouts}
            WHERE f.voided_at IS NULL AND {ftds} AND f.click_at >= $1 AND f.click_at < $2
              AND (f.click_at < $3 OR f.click_at >= $4)
            GROUP BY f.offer_id
         ), deposit_totals AS (
            SELECT offer_id, sum({{amount}}) AS revenue FROM deposits
            WHERE {events} AND click_at >= $1 AND click_at < $2 AND (click_at < $3 OR click_at >= $4)
            GROUP BY offer_id
         ), registration_totals AS (
            SELECT offer_id, count(*) AS registrations FROM registrations
            WHERE {events} AND click_at >= $1 AND click_at < $2 AND (click_at < $3 OR click_at >= $4)
            GROUP BY offer_id
         ), rollup_totals AS (
            SELECT offer_id, sum(registrations) AS registrations, sum(ftds) AS ftds, sum({{amount}}) AS revenue
            FROM event_rollup_hourly WHERE dimension = '' AND hour >= $3 AND hour < $4 GROUP BY offer_id
         )
         SELECT o.id, o.name, o.weight, o.active,
            CAST(COALESCE(rc.clicks, 0) + COALESCE(ec.clicks, 0) AS BIGINT),
            CAST(COALESCE(g.registrations, 0) + COALESCE(t.registrations, 0) AS BIGINT),
            CAST(COALESCE(f.ftds, 0) + COALESCE(t.ftds, 0) AS BIGINT),
            CAST(COALESCE(f.revenue, 0) + COALESCE(d.revenue, 0) + COALESCE(t.revenue, 0) AS DOUBLE PRECISION){{units}}
         FROM offers o
         LEFT JOIN edge_clicks ec ON ec.offer_id = o.id
         LEFT JOIN rollup_clicks rc ON rc.offer_id = o.id
         LEFT JOIN ftd_totals f ON f.offer_id = o.id
         LEFT JOIN deposit_totals d ON d.offer_id = o.id
         LEFT JOIN registration_totals g ON g.offer_id = o.id
         LEFT JOIN rollup_totals t ON t.offer_id = o.id
         ORDER BY o.id",
        clicks = edge_ids("click_id"),
        payouts = edge_ids("p.click_id"),
        ftds = edge_ids("f.click_id"),
        events = edge_ids("click_id"),
    )
});

/// The EV window of offer `$1`: its last `$2` clicks of people (bots are not exposure), their
/// non-rejected FTDs, and what they earned (FTD payouts plus further deposits, summed exactly, then
/// converted once).
const OFFER_WINDOW: &str = "WITH recent AS (
        SELECT click_id FROM clicks WHERE offer_id = $1 AND NOT is_bot ORDER BY created_at DESC LIMIT $2
     )
     SELECT
        (SELECT count(*) FROM recent),
        (SELECT count(*) FROM ftd_events f JOIN recent r USING (click_id) WHERE f.voided_at IS NULL),
        CAST((SELECT COALESCE(sum(p.{amount}), 0)
              FROM ftd_events f JOIN recent r USING (click_id) JOIN payouts p ON p.click_id = f.click_id
              WHERE f.voided_at IS NULL)
           + (SELECT COALESCE(sum(d.{amount}), 0) FROM deposits d JOIN recent r USING (click_id))
             AS DOUBLE PRECISION){units}";

/// The statements of a grouped report, each giving rows of `(offer_id, value, count, figure)`:
/// - `rollup_clicks` over whole hours `[$1, $2)`: clicks of people and bots;
/// - `edge_clicks` from raw clicks in `[$1, $2)` outside the whole hours `[$3, $4)` (the partial
///   hours, see `rollup_bounds`), found through the primary key: click ids are UUID v7, so the id
///   ranges `[$5, $6)` and `[$7, $8)` hold the two edges (see [`edge_id_bounds`]);
/// - `rollup_events` over whole hours `[$1, $2)`: FTDs and revenue from `event_rollup_hourly`;
/// - `ftds` and `deposits` by click time in `[$1, $2)` outside the whole hours `[$3, $4)`: FTDs and
///   their payouts, and deposits (count 0), joined to their clicks only when a dimension is asked
///   for; their click ids (and their clicks') in `[$5, $6)` and `[$7, $8)` as well.
#[derive(Debug)]
pub(crate) struct SegmentQueries {
    pub rollup_clicks: String,
    pub edge_clicks: String,
    pub rollup_events: String,
    pub ftds: String,
    pub deposits: String,
}

impl SegmentQueries {
    /// The statements for `grouping`, in `dialect`.
    pub(crate) fn new(dialect: &Dialect, grouping: Grouping) -> SegmentQueries {
        // The dimension's column (a fixed name from the enum, never user input).
        let (column, event_column, join) = match grouping.dimension {
            Some(dimension) => {
                let name = dimension.as_str();
                (
                    format!("COALESCE({name}, '')"),
                    format!("COALESCE(c.{name}, '')"),
                    format!(" JOIN clicks c ON c.click_id = {{event}}.click_id AND {}", edge_ids("c.click_id")),
                )
            }
            None => ("CAST('' AS TEXT)".to_owned(), "CAST('' AS TEXT)".to_owned(), String::new()),
        };
        let rollup_clicks = match grouping.dimension {
            Some(dimension) => format!(
                "SELECT offer_id, value, CAST(sum(clicks - bots) AS BIGINT), CAST(sum(bots) AS BIGINT)
                 FROM click_rollup_dims WHERE dimension = '{}' AND hour >= $1 AND hour < $2
                 GROUP BY offer_id, value",
                dimension.as_str()
            ),
            None => "SELECT offer_id, CAST('' AS TEXT), CAST(sum(clicks - bots) AS BIGINT), CAST(sum(bots) AS BIGINT)
                 FROM click_rollup_hourly WHERE hour >= $1 AND hour < $2 GROUP BY offer_id"
                .to_owned(),
        };
        let edge_clicks = format!(
            "SELECT offer_id, {column}, CAST(sum(CASE WHEN is_bot THEN 0 ELSE 1 END) AS BIGINT),
                CAST(sum(CASE WHEN is_bot THEN 1 ELSE 0 END) AS BIGINT)
             FROM clicks
             WHERE {} AND created_at >= $1 AND created_at < $2 AND (created_at < $3 OR created_at >= $4)
             GROUP BY 1, 2",
            edge_ids("click_id")
        );
        let rollup_events = format!(
            "SELECT offer_id, value, CAST(sum(ftds) AS BIGINT), CAST(sum({{amount}}) AS DOUBLE PRECISION){{units}}
             FROM event_rollup_hourly WHERE dimension = '{}' AND hour >= $1 AND hour < $2
             GROUP BY offer_id, value",
            grouping.dimension.map_or("", Dimension::as_str)
        );
        let ftds = format!(
            "SELECT f.offer_id, {event_column}, count(*), CAST(COALESCE(sum(p.{{amount}}), 0) AS DOUBLE PRECISION){{units}}
             FROM ftd_events f LEFT JOIN payouts p ON p.click_id = f.click_id{}
             WHERE f.voided_at IS NULL AND f.click_at >= $1 AND f.click_at < $2
               AND (f.click_at < $3 OR f.click_at >= $4) AND {}
             GROUP BY 1, 2",
            join.replace("{event}", "f"),
            edge_ids("f.click_id")
        );
        let deposits = format!(
            "SELECT d.offer_id, {event_column}, CAST(0 AS BIGINT), CAST(sum(d.{{amount}}) AS DOUBLE PRECISION){{units}}
             FROM deposits d{}
             WHERE d.click_at >= $1 AND d.click_at < $2 AND (d.click_at < $3 OR d.click_at >= $4) AND {}
             GROUP BY 1, 2",
            join.replace("{event}", "d"),
            edge_ids("d.click_id")
        );
        let r = |sql: String| dialect.render(&sql);
        SegmentQueries {
            rollup_clicks: r(rollup_clicks),
            edge_clicks: r(edge_clicks),
            rollup_events: r(rollup_events),
            ftds: r(ftds),
            deposits: r(deposits),
        }
    }
}

/// The click ids of a report's edge hours, `[$5, $6)` and `[$7, $8)` (see [`edge_id_bounds`]), as a
/// condition on `column`. On the events of the edge hours (whose clicks' ids fall there too) and on
/// the clicks they are joined to, it lets PostgreSQL plan for the edges' one or two partitions: with
/// the join alone it weighed a probe into every partition per event and hashed all of `clicks`
/// instead (1-3 s a grouped report on 10-50 million clicks).
fn edge_ids(column: &str) -> String {
    format!("(({column} >= $5 AND {column} < $6) OR ({column} >= $7 AND {column} < $8))")
}

/// Adds up the rows of [`SegmentQueries`] into report rows, under `grouping`: clicks rows (from
/// `rollup_clicks` and `edge_clicks`) and event rows (`ftds`, `deposits`).
#[derive(Debug, Default)]
pub(crate) struct SegmentTally {
    rows: BTreeMap<(Option<i64>, Option<String>), SegmentStats>,
}

impl SegmentTally {
    fn row(&mut self, grouping: Grouping, offer_id: i64, value: String) -> &mut SegmentStats {
        let key = (
            grouping.by_offer.then_some(offer_id),
            grouping.dimension.map(|_| value).filter(|value| !value.is_empty()),
        );
        self.rows.entry(key.clone()).or_insert_with(|| SegmentStats {
            offer_id: key.0,
            value: key.1,
            ..Default::default()
        })
    }

    /// Adds a row of `rollup_clicks` or `edge_clicks`.
    pub(crate) fn add_clicks(&mut self, grouping: Grouping, row: &dyn Columns) -> StoreResult<()> {
        let (people, bots) = (row.count(2)?, row.count(3)?);
        let stats = self.row(grouping, row.int(0)?, row.text(1)?);
        stats.clicks += people;
        stats.bots += bots;
        Ok(())
    }

    /// Adds a row of `ftds` or `deposits`.
    pub(crate) fn add_events(&mut self, grouping: Grouping, row: &dyn Columns) -> StoreResult<()> {
        let (ftds, revenue) = (row.count(2)?, row.real(3)?);
        let stats = self.row(grouping, row.int(0)?, row.text(1)?);
        stats.ftds += ftds;
        stats.revenue += revenue;
        Ok(())
    }

    /// The report rows.
    pub(crate) fn into_rows(self) -> Vec<SegmentStats> {
        self.rows.into_values().collect()
    }
}

/// The daily totals from the rows of `daily_clicks` and `daily_ftds`, as `(offer_id, count)`.
pub(crate) fn daily_totals(clicks: Vec<(i64, u64)>, ftds: Vec<(i64, u64)>) -> Vec<DailyTotal> {
    let mut totals: BTreeMap<i64, DailyTotal> = BTreeMap::new();
    for (offer_id, n) in clicks {
        totals.entry(offer_id).or_insert(DailyTotal { offer_id, ..Default::default() }).clicks = n;
    }
    for (offer_id, n) in ftds {
        totals.entry(offer_id).or_insert(DailyTotal { offer_id, ..Default::default() }).ftds = n;
    }
    totals.into_values().collect()
}

/// An `(offer_id, count)` row of `daily_clicks` or `daily_ftds`.
pub(crate) fn offer_count(row: &dyn Columns) -> StoreResult<(i64, u64)> {
    Ok((row.int(0)?, row.count(1)?))
}

/// The UUID v7 bounds of click ids minted in `[from, to)`: the first id of `from`'s millisecond and
/// the first id after `to`'s.
pub(crate) fn click_id_bounds(from: OffsetDateTime, to: OffsetDateTime) -> (uuid::Uuid, uuid::Uuid) {
    let millis = |t: OffsetDateTime| (t.unix_timestamp_nanos().div_euclid(1_000_000)).clamp(0, (1 << 48) - 1) as u64;
    let bound = |ms: u64| uuid::Builder::from_unix_timestamp_millis(ms, &[0; 10]).into_uuid();
    (bound(millis(from)), bound((millis(to) + 1).min((1 << 48) - 1)))
}

/// The id ranges `[$5, $6)` and `[$7, $8)` of `edge_clicks`, for the bounds `rollup_bounds` gives:
/// the edges `[from, from_hour)` and `[to_hour, to)` only, so that a long range reads its whole hours
/// from the rollups and never scans their clicks.
pub(crate) fn edge_id_bounds(
    (from, to, from_hour, to_hour): (OffsetDateTime, OffsetDateTime, OffsetDateTime, OffsetDateTime),
) -> [uuid::Uuid; 4] {
    let (first_from, first_to) = click_id_bounds(from, from_hour.min(to));
    let (last_from, last_to) = click_id_bounds(to_hour.max(from), to);
    [first_from, first_to, last_from, last_to]
}

/// A value of a parameter whose statement is built at run time; each store binds it its own way.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Param {
    /// A `BIGINT`.
    Int(i64),
    /// A `TEXT`.
    Text(&'static str),
    /// A point in time.
    Time(OffsetDateTime),
}

/// The postback log query for `query`: only the filters it sets, newest first, its page size.
pub(crate) fn postback_log_select(dialect: &Dialect, query: &PostbackLogQuery) -> (String, Vec<Param>) {
    let filters = [
        query.offer_id.map(|id| ("offer_id =", Param::Int(id))),
        query.outcome.map(|outcome| ("outcome =", Param::Text(outcome.as_str()))),
        query.from.map(|from| ("received_at >=", Param::Time(from))),
        query.to.map(|to| ("received_at <", Param::Time(to))),
        query.before_id.map(|id| ("id <", Param::Int(id))),
    ];
    let mut sql = format!("SELECT id, {POSTBACK_LOG_COLUMNS} FROM postback_log");
    let mut params = Vec::with_capacity(filters.len() + 1);
    for (condition, param) in filters.into_iter().flatten() {
        params.push(param);
        let joiner = if params.len() == 1 { " WHERE " } else { " AND " };
        sql.push_str(&format!("{joiner}{condition} {}", dialect.placeholder(params.len())));
    }
    params.push(Param::Int(i64::from(query.limit)));
    sql.push_str(&format!(" ORDER BY id DESC LIMIT {}", dialect.placeholder(params.len())));
    (sql, params)
}

/// A row's columns, read by position; each store implements it for its own row type.
pub(crate) trait Columns {
    /// A `BIGINT` (or a count).
    fn int(&self, index: usize) -> StoreResult<i64>;
    /// A nullable `BIGINT`.
    fn opt_int(&self, index: usize) -> StoreResult<Option<i64>>;
    /// A `DOUBLE PRECISION`.
    fn real(&self, index: usize) -> StoreResult<f64>;
    /// A nullable `DOUBLE PRECISION`.
    fn opt_real(&self, index: usize) -> StoreResult<Option<f64>>;
    /// A `TEXT`.
    fn text(&self, index: usize) -> StoreResult<String>;
    /// A nullable `TEXT`.
    fn opt_text(&self, index: usize) -> StoreResult<Option<String>>;
    /// A `BOOLEAN`.
    fn boolean(&self, index: usize) -> StoreResult<bool>;
    /// A point in time.
    fn time(&self, index: usize) -> StoreResult<OffsetDateTime>;
    /// An offer's status-word mapping, stored as a JSON object of event names.
    fn aliases(&self, index: usize) -> StoreResult<BTreeMap<String, EventKind>>;
    /// An offer's targeting rules, stored as a JSON object.
    fn targeting(&self, index: usize) -> StoreResult<Targeting>;
    /// A nullable IP address.
    fn opt_ip(&self, index: usize) -> StoreResult<Option<IpAddr>>;

    /// A count, which is never negative.
    fn count(&self, index: usize) -> StoreResult<u64> {
        Ok(self.int(index)?.max(0) as u64)
    }
}

/// The [`Columns`] methods whose types both drivers decode as they are, written once for an
/// implementation whose `get(index)` decodes any of them.
macro_rules! decoded_columns {
    () => {
        fn int(&self, index: usize) -> StoreResult<i64> {
            self.get(index)
        }
        fn opt_int(&self, index: usize) -> StoreResult<Option<i64>> {
            self.get(index)
        }
        fn real(&self, index: usize) -> StoreResult<f64> {
            self.get(index)
        }
        fn opt_real(&self, index: usize) -> StoreResult<Option<f64>> {
            self.get(index)
        }
        fn text(&self, index: usize) -> StoreResult<String> {
            self.get(index)
        }
        fn opt_text(&self, index: usize) -> StoreResult<Option<String>> {
            self.get(index)
        }
        fn boolean(&self, index: usize) -> StoreResult<bool> {
            self.get(index)
        }
    };
}
pub(crate) use decoded_columns;

/// An offer, from [`OFFER_COLUMNS`].
pub(crate) fn offer(row: &dyn Columns) -> StoreResult<Offer> {
    Ok(Offer {
        id: row.int(0)?,
        name: row.text(1)?,
        casino_url: row.text(2)?,
        weight: row.real(3)?,
        postback_secret: row.text(4)?,
        active: row.boolean(5)?,
        event_aliases: row.aliases(6)?,
        created_at: row.time(7)?,
        targeting: row.targeting(8)?,
        daily_caps: DailyCaps {
            clicks: row.opt_int(9)?.map(|cap| cap.max(0) as u64),
            ftds: row.opt_int(10)?.map(|cap| cap.max(0) as u64),
        },
    })
}

/// A click's owner, from [`Statements::click_owner`].
pub(crate) fn click_owner(row: &dyn Columns) -> StoreResult<ClickOwner> {
    Ok(ClickOwner {
        offer_id: row.int(0)?,
        clicked_at: row.time(1)?,
        postback_secret: row.text(2)?,
        event_aliases: row.aliases(3)?,
    })
}

/// A postback-log line, from [`postback_log_select`].
pub(crate) fn postback_log_row(row: &dyn Columns) -> StoreResult<PostbackLogRow> {
    Ok(PostbackLogRow {
        id: row.int(0)?,
        entry: PostbackLogEntry {
            received_at: row.time(1)?,
            offer_id: row.opt_int(2)?,
            click_id: row.opt_text(3)?,
            event: row.opt_text(4)?,
            payout: row.opt_real(5)?,
            currency: row.opt_text(6)?,
            tid: row.opt_text(7)?,
            outcome: PostbackOutcome::parse(&row.text(8)?).unwrap_or(PostbackOutcome::Invalid),
            reason: row.opt_text(9)?,
            source_ip: row.opt_ip(10)?,
            ignored_fields: row.opt_text(11)?,
        },
    })
}

/// A claimed held postback, from [`Statements::claimed_held`].
pub(crate) fn claimed_postback(row: &dyn Columns) -> StoreResult<ClaimedPostback> {
    let log = postback_log_row(row)?;
    let click_id = row.text(13)?;
    Ok(ClaimedPostback {
        id: row.int(12)?,
        held: HeldPostback {
            click_id: Uuid::try_parse(&click_id).map_err(|e| StoreError::Query(format!("held click id: {e}")))?,
            offer_id: row.int(14)?,
            kind: EventKind::parse(&row.text(15)?).ok_or_else(|| StoreError::Query("held event kind".to_owned()))?,
            payout: row.opt_real(16)?,
            currency: row.text(17)?,
            tid: row.opt_text(18)?,
            external_player_id: row.opt_text(19)?,
            expires_at: row.time(20)?,
        },
        log: log.entry,
        log_id: log.id,
        click_offer_id: row.int(21)?,
        clicked_at: row.time(22)?,
    })
}

/// One offer's figures, from [`Statements::offer_stats`].
pub(crate) fn offer_stats(row: &dyn Columns) -> StoreResult<OfferStats> {
    Ok(OfferStats {
        offer_id: row.int(0)?,
        name: row.text(1)?,
        weight: row.real(2)?,
        active: row.boolean(3)?,
        clicks: row.count(4)?,
        registrations: row.count(5)?,
        ftds: row.count(6)?,
        revenue: row.real(7)?,
    })
}

/// Offer `offer_id`'s window, from [`Statements::offer_window`].
pub(crate) fn offer_window(offer_id: i64, row: &dyn Columns) -> StoreResult<OfferWindow> {
    Ok(OfferWindow { offer_id, clicks: row.count(0)?, ftds: row.count(1)?, revenue: row.real(2)? })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_and_tokens_are_rendered_per_dialect() {
        let template = "SELECT sum({amount}){units} FROM t WHERE a < $1 AND b = $2{lock} -- $x";
        assert_eq!(POSTGRES.render(template), "SELECT sum(amount) FROM t WHERE a < $1 AND b = $2 FOR UPDATE -- $x");
        assert_eq!(
            SQLITE.render(template),
            "SELECT sum(amount_micros) / 1000000.0 FROM t WHERE a < ?1 AND b = ?2 -- $x"
        );
    }

    #[test]
    fn every_statement_renders_without_a_token_left() {
        for dialect in [&POSTGRES, &SQLITE] {
            let statements = format!("{:?}", Statements::new(dialect));
            for token in ["{amount}", "{units}", "{lock}"] {
                assert!(!statements.contains(token), "{token} left in {statements}");
            }
        }
    }

    #[test]
    fn the_postback_log_query_holds_only_the_filters_given() {
        let (sql, params) = postback_log_select(&POSTGRES, &PostbackLogQuery { limit: 5, ..Default::default() });
        assert_eq!(sql, format!("SELECT id, {POSTBACK_LOG_COLUMNS} FROM postback_log ORDER BY id DESC LIMIT $1"));
        assert_eq!(params, [Param::Int(5)]);

        let query = PostbackLogQuery {
            offer_id: Some(7),
            outcome: Some(PostbackOutcome::NoFtd),
            before_id: Some(100),
            limit: 2,
            ..Default::default()
        };
        let (sql, params) = postback_log_select(&SQLITE, &query);
        assert!(sql.ends_with("WHERE offer_id = ?1 AND outcome = ?2 AND id < ?3 ORDER BY id DESC LIMIT ?4"), "{sql}");
        assert_eq!(params, [Param::Int(7), Param::Text("no_ftd"), Param::Int(100), Param::Int(2)]);
    }
}

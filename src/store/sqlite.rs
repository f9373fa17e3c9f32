//! The embedded SQLite store: the router with nothing to install, for one instance.
//!
//! One connection behind a mutex, used from tokio's blocking pool, so no async worker ever waits on
//! disk. WAL mode lets readers and the writer overlap on disk; `synchronous = FULL` makes every
//! commit durable, which costs little because clicks commit a batch at a time. The schema mirrors
//! PostgreSQL's (same keys and unique constraints), with times in microseconds and money in exact
//! integer micro-units. There is no cross-instance coordination: a SQLite router is a single instance.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, Row, Transaction, params};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{
    ClickOwner, ClickRecord, Conversion, ConversionOutcome, DeleteOutcome, FtdBucket, NewOffer, Offer, OfferPatch,
    OfferStats, PostbackLogEntry, PostbackLogQuery, PostbackLogRow, PostbackOutcome, RoutingEvidence, Store,
    StoreError, StoreResult, TimeRange, rollup_bounds,
};
use crate::conversion::{EventKind, alias_names, aliases_from_names, to_micro_units};
use crate::routing::{OfferWindow, WeightPolicy, WeightedOffer};

/// Ordered migrations; each runs once, tracked in `schema_migrations`.
const MIGRATIONS: &[(u32, &str)] = &[(1, include_str!("../../sql/sqlite/0001_initial.sql"))];

const OFFER_COLUMNS: &str = "id, name, casino_url, weight, postback_secret, active, event_aliases, created_at";

const MICROS_PER_HOUR: i64 = 3_600_000_000;

/// An embedded database file.
#[derive(Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
}

impl SqliteStore {
    /// Opens (creating it and its folder if needed) the database at `path` and applies migrations.
    pub async fn open(path: &Path) -> StoreResult<SqliteStore> {
        let path = path.to_owned();
        let conn = tokio::task::spawn_blocking(move || -> StoreResult<Connection> {
            if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .map_err(|e| StoreError::Unavailable(format!("cannot create {}: {e}", dir.display())))?;
            }
            let mut conn = Connection::open(&path)
                .map_err(|e| StoreError::Unavailable(format!("cannot open {}: {e}", path.display())))?;
            conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(query_error)?;
            conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")
                .map_err(query_error)?;
            apply_migrations(&mut conn)?;
            Ok(conn)
        })
        .await
        .map_err(|e| StoreError::Unavailable(e.to_string()))??;
        Ok(SqliteStore { conn: Arc::new(Mutex::new(conn)) })
    }

    /// Runs `work` on the connection, on the blocking pool.
    async fn with_conn<T, F>(&self, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> StoreResult<T> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = conn.lock().map_err(|_| StoreError::Unavailable("database connection poisoned".into()))?;
            work(&mut conn)
        })
        .await
        .map_err(|e| StoreError::Unavailable(e.to_string()))?
    }

    /// Runs `work` in one transaction, committed if it succeeds.
    async fn in_transaction<T, F>(&self, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> StoreResult<T> + Send + 'static,
    {
        self.with_conn(move |conn| {
            let tx = conn.transaction().map_err(query_error)?;
            let result = work(&tx)?;
            tx.commit().map_err(query_error)?;
            Ok(result)
        })
        .await
    }
}

fn apply_migrations(conn: &mut Connection) -> StoreResult<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)",
    )
    .map_err(query_error)?;
    for &(version, sql) in MIGRATIONS {
        let failed = |e: rusqlite::Error| StoreError::Migration { version, reason: e.to_string() };
        let tx = conn.transaction().map_err(failed)?;
        let applied = tx
            .query_row("SELECT 1 FROM schema_migrations WHERE version = ?1", [version], |_| Ok(()))
            .optional()
            .map_err(failed)?
            .is_some();
        if applied {
            continue;
        }
        tx.execute_batch(sql).map_err(failed)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, ?2)",
            params![version, now_micros()],
        )
        .map_err(failed)?;
        tx.commit().map_err(failed)?;
        tracing::info!(version, "applied migration");
    }
    Ok(())
}

/// A busy or locked database, an I/O failure or a full disk pass with time: unavailable, so the
/// writer retries and requests answer 503. Anything else refuses the statement itself.
fn query_error(err: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode::{DatabaseBusy, DatabaseLocked, DiskFull, SystemIoFailure};
    match err.sqlite_error_code() {
        Some(DatabaseBusy | DatabaseLocked | SystemIoFailure | DiskFull) => StoreError::Unavailable(err.to_string()),
        _ => StoreError::Query(err.to_string()),
    }
}

fn micros(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1000) as i64
}

fn now_micros() -> i64 {
    micros(OffsetDateTime::now_utc())
}

fn from_micros(value: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(value) * 1000).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

fn from_micro_units(micro_units: i64) -> f64 {
    micro_units as f64 / 1_000_000.0
}

fn parse_aliases(json: &str) -> BTreeMap<String, EventKind> {
    aliases_from_names(serde_json::from_str(json).unwrap_or_default())
}

fn aliases_json(aliases: &BTreeMap<String, EventKind>) -> String {
    serde_json::to_string(&alias_names(aliases)).unwrap_or_else(|_| "{}".to_owned())
}

fn offer_from_row(row: &Row<'_>) -> rusqlite::Result<Offer> {
    Ok(Offer {
        id: row.get("id")?,
        name: row.get("name")?,
        casino_url: row.get("casino_url")?,
        weight: row.get("weight")?,
        postback_secret: row.get("postback_secret")?,
        active: row.get("active")?,
        event_aliases: parse_aliases(&row.get::<_, String>("event_aliases")?),
        created_at: from_micros(row.get("created_at")?),
    })
}

fn bump_routing_version(tx: &Transaction<'_>) -> StoreResult<()> {
    tx.execute("UPDATE routing_state SET version = version + 1", []).map_err(query_error)?;
    Ok(())
}

fn insert_log(conn: &Connection, entry: &PostbackLogEntry) -> StoreResult<()> {
    conn.execute(
        "INSERT INTO postback_log
            (received_at, offer_id, click_id, event, payout, currency, tid, outcome, reason, source_ip)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        params![
            micros(entry.received_at),
            entry.offer_id,
            entry.click_id,
            entry.event,
            entry.payout,
            entry.currency,
            entry.tid,
            entry.outcome.as_str(),
            entry.reason,
            entry.source_ip.map(|ip| ip.to_string()),
        ],
    )
    .map_err(query_error)?;
    Ok(())
}

/// Whether an `INSERT .. ON CONFLICT DO NOTHING` inserted its row.
fn inserted(changed: usize) -> ConversionOutcome {
    if changed > 0 { ConversionOutcome::Recorded } else { ConversionOutcome::Duplicate }
}

fn insert_payout(tx: &Transaction<'_>, ftd_id: i64, amount: f64, currency: &str) -> StoreResult<ConversionOutcome> {
    let changed = tx
        .execute(
            "INSERT INTO payouts (ftd_event_id, amount_micros, currency, received_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (ftd_event_id) DO NOTHING",
            params![ftd_id, to_micro_units(amount), currency, now_micros()],
        )
        .map_err(query_error)?;
    Ok(inserted(changed))
}

fn apply(tx: &Transaction<'_>, c: &Conversion) -> StoreResult<ConversionOutcome> {
    let click_id = c.click_id.to_string();
    let clicked_at = micros(c.clicked_at);
    let now = now_micros();
    let ftd_id = |tx: &Transaction<'_>| {
        tx.query_row("SELECT id FROM ftd_events WHERE click_id = ?1", [&click_id], |row| row.get::<_, i64>(0))
            .optional()
            .map_err(query_error)
    };
    let outcome = match c.kind {
        EventKind::Ftd => {
            let changed = tx
                .execute(
                    "INSERT INTO ftd_events (click_id, offer_id, click_at, ftd_timestamp, external_player_id, tid)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT DO NOTHING",
                    params![click_id, c.offer_id, clicked_at, now, c.external_player_id, c.tid],
                )
                .map_err(query_error)?;
            if changed > 0
                && let Some(payout) = c.payout
            {
                insert_payout(tx, tx.last_insert_rowid(), payout, &c.currency)?;
            }
            inserted(changed)
        }
        EventKind::Payout => match (ftd_id(tx)?, c.payout) {
            (Some(ftd), Some(payout)) => insert_payout(tx, ftd, payout, &c.currency)?,
            _ => ConversionOutcome::NoFtd,
        },
        EventKind::Reg => inserted(
            tx.execute(
                "INSERT INTO registrations (click_id, offer_id, click_at, registered_at, external_player_id)
                 VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING",
                params![click_id, c.offer_id, clicked_at, now, c.external_player_id],
            )
            .map_err(query_error)?,
        ),
        EventKind::Deposit => inserted(
            tx.execute(
                "INSERT INTO deposits (click_id, offer_id, click_at, tid, amount_micros, currency, received_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT DO NOTHING",
                params![click_id, c.offer_id, clicked_at, c.tid, c.payout.map(to_micro_units), c.currency, now],
            )
            .map_err(query_error)?,
        ),
        EventKind::Rejected => {
            let voided = tx
                .execute(
                    "UPDATE ftd_events SET voided_at = ?2 WHERE click_id = ?1 AND voided_at IS NULL",
                    params![click_id, now],
                )
                .map_err(query_error)?;
            match (voided, ftd_id(tx)?) {
                (1.., _) => ConversionOutcome::Recorded,
                (0, Some(_)) => ConversionOutcome::Duplicate,
                (0, None) => ConversionOutcome::NoFtd,
            }
        }
    };
    Ok(outcome)
}

#[async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> StoreResult<()> {
        self.with_conn(|conn| conn.query_row("SELECT 1", [], |_| Ok(())).map_err(query_error)).await
    }

    async fn routing_version(&self) -> StoreResult<i64> {
        self.with_conn(|conn| {
            conn.query_row("SELECT version FROM routing_state", [], |row| row.get(0)).map_err(query_error)
        })
        .await
    }

    async fn list_offers(&self, active_only: bool) -> StoreResult<Vec<Offer>> {
        self.with_conn(move |conn| {
            let sql = format!("SELECT {OFFER_COLUMNS} FROM offers WHERE active OR NOT ?1 ORDER BY id");
            let mut statement = conn.prepare_cached(&sql).map_err(query_error)?;
            let rows = statement.query_map([active_only], offer_from_row).map_err(query_error)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(query_error)
        })
        .await
    }

    async fn get_offer(&self, id: i64) -> StoreResult<Option<Offer>> {
        self.with_conn(move |conn| {
            let sql = format!("SELECT {OFFER_COLUMNS} FROM offers WHERE id = ?1");
            conn.query_row(&sql, [id], offer_from_row).optional().map_err(query_error)
        })
        .await
    }

    async fn create_offer(&self, offer: &NewOffer) -> StoreResult<Offer> {
        let offer = offer.clone();
        self.in_transaction(move |tx| {
            let now = now_micros();
            let sql = format!(
                "INSERT INTO offers (name, casino_url, weight, postback_secret, active, event_aliases, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7) RETURNING {OFFER_COLUMNS}"
            );
            let created = tx
                .query_row(
                    &sql,
                    params![
                        offer.name,
                        offer.casino_url,
                        offer.weight,
                        offer.postback_secret,
                        offer.active,
                        aliases_json(&offer.event_aliases),
                        now
                    ],
                    offer_from_row,
                )
                .map_err(query_error)?;
            bump_routing_version(tx)?;
            Ok(created)
        })
        .await
    }

    async fn update_offer(&self, id: i64, patch: &OfferPatch) -> StoreResult<Option<Offer>> {
        let patch = patch.clone();
        self.in_transaction(move |tx| {
            let sql = format!(
                "UPDATE offers SET
                    name = COALESCE(?2, name),
                    casino_url = COALESCE(?3, casino_url),
                    weight = COALESCE(?4, weight),
                    postback_secret = COALESCE(?5, postback_secret),
                    active = COALESCE(?6, active),
                    event_aliases = COALESCE(?7, event_aliases),
                    updated_at = ?8
                 WHERE id = ?1 RETURNING {OFFER_COLUMNS}"
            );
            let updated = tx
                .query_row(
                    &sql,
                    params![
                        id,
                        patch.name,
                        patch.casino_url,
                        patch.weight,
                        patch.postback_secret,
                        patch.active,
                        patch.event_aliases.as_ref().map(aliases_json),
                        now_micros()
                    ],
                    offer_from_row,
                )
                .optional()
                .map_err(query_error)?;
            if updated.is_some() {
                bump_routing_version(tx)?;
            }
            Ok(updated)
        })
        .await
    }

    async fn delete_offer(&self, id: i64) -> StoreResult<DeleteOutcome> {
        self.in_transaction(move |tx| {
            let exists = tx.query_row("SELECT 1 FROM offers WHERE id = ?1", [id], |_| Ok(())).optional();
            if exists.map_err(query_error)?.is_none() {
                return Ok(DeleteOutcome::NotFound);
            }
            let has_clicks = tx.query_row("SELECT 1 FROM clicks WHERE offer_id = ?1 LIMIT 1", [id], |_| Ok(()));
            if has_clicks.optional().map_err(query_error)?.is_some() {
                return Ok(DeleteOutcome::HasClicks);
            }
            tx.execute("DELETE FROM offers WHERE id = ?1", [id]).map_err(query_error)?;
            bump_routing_version(tx)?;
            Ok(DeleteOutcome::Deleted)
        })
        .await
    }

    async fn insert_clicks(&self, clicks: &[ClickRecord]) -> StoreResult<u64> {
        let clicks = clicks.to_vec();
        self.in_transaction(move |tx| {
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO clicks (click_id, offer_id, created_at, user_agent, ip_address, referrer, source,
                        campaign, propensity)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT (click_id) DO NOTHING",
                )
                .map_err(query_error)?;
            let mut per_hour: HashMap<(i64, i64), i64> = HashMap::new();
            let mut id_buf = Uuid::encode_buffer();
            for click in &clicks {
                let created_at = micros(click.created_at);
                let changed = insert
                    .execute(params![
                        &*click.click_id.hyphenated().encode_lower(&mut id_buf),
                        click.offer_id,
                        created_at,
                        click.user_agent.as_deref(),
                        click.ip_address.map(|ip: IpAddr| ip.to_string()),
                        click.referrer.as_deref(),
                        click.source.as_deref(),
                        click.campaign.as_deref(),
                        click.propensity,
                    ])
                    .map_err(query_error)?;
                if changed > 0 {
                    let hour = created_at.div_euclid(MICROS_PER_HOUR) * MICROS_PER_HOUR;
                    *per_hour.entry((click.offer_id, hour)).or_default() += 1;
                }
            }
            let mut rollup = tx
                .prepare_cached(
                    "INSERT INTO click_rollup_hourly (offer_id, hour, clicks) VALUES (?1, ?2, ?3)
                     ON CONFLICT (offer_id, hour) DO UPDATE SET clicks = clicks + excluded.clicks",
                )
                .map_err(query_error)?;
            for ((offer_id, hour), count) in &per_hour {
                rollup.execute(params![offer_id, hour, count]).map_err(query_error)?;
            }
            Ok(per_hour.values().sum::<i64>() as u64)
        })
        .await
    }

    async fn click_owner(&self, click_id: Uuid) -> StoreResult<Option<ClickOwner>> {
        self.with_conn(move |conn| {
            conn.query_row(
                "SELECT c.offer_id, c.created_at, o.postback_secret, o.event_aliases
                 FROM clicks c JOIN offers o ON o.id = c.offer_id WHERE c.click_id = ?1",
                [click_id.to_string()],
                |row| {
                    Ok(ClickOwner {
                        offer_id: row.get(0)?,
                        clicked_at: from_micros(row.get(1)?),
                        postback_secret: row.get(2)?,
                        event_aliases: parse_aliases(&row.get::<_, String>(3)?),
                    })
                },
            )
            .optional()
            .map_err(query_error)
        })
        .await
    }

    async fn apply_conversion(
        &self,
        conversion: &Conversion,
        log: &PostbackLogEntry,
    ) -> StoreResult<ConversionOutcome> {
        let conversion = conversion.clone();
        let log = log.clone();
        self.in_transaction(move |tx| {
            let outcome = apply(tx, &conversion)?;
            insert_log(tx, &log.concluded(conversion.kind, outcome))?;
            Ok(outcome)
        })
        .await
    }

    async fn log_postback(&self, entry: &PostbackLogEntry) -> StoreResult<()> {
        let entry = entry.clone();
        self.with_conn(move |conn| insert_log(conn, &entry)).await
    }

    async fn postback_log(&self, query: &PostbackLogQuery) -> StoreResult<Vec<PostbackLogRow>> {
        let query = query.clone();
        self.with_conn(move |conn| {
            let mut statement = conn
                .prepare_cached(
                    "SELECT id, received_at, offer_id, click_id, event, payout, currency, tid, outcome, reason,
                        source_ip
                     FROM postback_log
                     WHERE (?1 IS NULL OR offer_id = ?1)
                       AND (?2 IS NULL OR outcome = ?2)
                       AND (?3 IS NULL OR received_at >= ?3)
                       AND (?4 IS NULL OR received_at < ?4)
                       AND (?5 IS NULL OR id < ?5)
                     ORDER BY id DESC LIMIT ?6",
                )
                .map_err(query_error)?;
            let rows = statement
                .query_map(
                    params![
                        query.offer_id,
                        query.outcome.map(PostbackOutcome::as_str),
                        query.from.map(micros),
                        query.to.map(micros),
                        query.before_id,
                        query.limit
                    ],
                    |row| {
                        Ok(PostbackLogRow {
                            id: row.get(0)?,
                            entry: PostbackLogEntry {
                                received_at: from_micros(row.get(1)?),
                                offer_id: row.get(2)?,
                                click_id: row.get(3)?,
                                event: row.get(4)?,
                                payout: row.get(5)?,
                                currency: row.get(6)?,
                                tid: row.get(7)?,
                                outcome: PostbackOutcome::parse(&row.get::<_, String>(8)?)
                                    .unwrap_or(PostbackOutcome::Invalid),
                                reason: row.get(9)?,
                                source_ip: row.get::<_, Option<String>>(10)?.and_then(|ip| ip.parse().ok()),
                            },
                        })
                    },
                )
                .map_err(query_error)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(query_error)
        })
        .await
    }

    async fn routing_evidence(&self, now: OffsetDateTime, horizon_hours: usize) -> StoreResult<RoutingEvidence> {
        const HOUR: i64 = 3_600_000_000;
        let (now, since) = (micros(now), micros(now) - horizon_hours as i64 * HOUR);
        self.with_conn(move |conn| {
            // A rollup hour's clicks are, on average, half an hour younger than its start.
            let mut clicks = conn
                .prepare_cached(
                    "SELECT offer_id, max((?1 - hour - 1800000000) / 3600000000, 0), clicks
                     FROM click_rollup_hourly WHERE hour > ?2 AND hour <= ?1",
                )
                .map_err(query_error)?;
            let clicks = clicks
                .query_map([now, since], |row| {
                    Ok((row.get(0)?, row.get::<_, i64>(1)? as usize, row.get::<_, i64>(2)? as u64))
                })
                .map_err(query_error)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(query_error)?;
            let mut ftds = conn
                .prepare_cached(
                    "SELECT f.offer_id, (?1 - f.click_at) / 3600000000 AS age,
                            max((f.ftd_timestamp - f.click_at) / 3600000000, 0) AS delay,
                            count(*), count(p.id),
                            COALESCE(sum(p.amount_micros), 0),
                            COALESCE(sum(CAST(p.amount_micros AS REAL) * p.amount_micros), 0.0)
                     FROM ftd_events f LEFT JOIN payouts p ON p.ftd_event_id = f.id
                     WHERE f.voided_at IS NULL AND f.click_at > ?2 AND f.click_at <= ?1
                     GROUP BY 1, 2, 3",
                )
                .map_err(query_error)?;
            let ftds = ftds
                .query_map([now, since], |row| {
                    Ok(FtdBucket {
                        offer_id: row.get(0)?,
                        age_hours: row.get::<_, i64>(1)? as usize,
                        delay_hours: row.get::<_, i64>(2)? as usize,
                        ftds: row.get::<_, i64>(3)? as u64,
                        payouts: row.get::<_, i64>(4)? as u64,
                        payout_sum: from_micro_units(row.get(5)?),
                        payout_sum_sq: row.get::<_, f64>(6)? / 1e12,
                    })
                })
                .map_err(query_error)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(query_error)?;
            Ok(RoutingEvidence { clicks, ftds })
        })
        .await
    }

    async fn offer_stats(&self, range: TimeRange) -> StoreResult<Vec<OfferStats>> {
        let (from, to, from_hour, to_hour) = rollup_bounds(range);
        let bounds = [micros(from), micros(to), micros(from_hour), micros(to_hour)];
        self.with_conn(move |conn| {
            let mut statement = conn
                .prepare_cached(
                    "WITH ftd_totals AS (
                        SELECT f.offer_id, count(*) AS ftds, COALESCE(sum(p.amount_micros), 0) AS revenue
                        FROM ftd_events f LEFT JOIN payouts p ON p.ftd_event_id = f.id
                        WHERE f.voided_at IS NULL AND f.click_at >= ?1 AND f.click_at < ?2
                        GROUP BY f.offer_id
                     ), deposit_totals AS (
                        SELECT offer_id, sum(amount_micros) AS revenue FROM deposits
                        WHERE click_at >= ?1 AND click_at < ?2 GROUP BY offer_id
                     ), registration_totals AS (
                        SELECT offer_id, count(*) AS registrations FROM registrations
                        WHERE click_at >= ?1 AND click_at < ?2 GROUP BY offer_id
                     )
                     SELECT o.id, o.name, o.weight, o.active,
                        COALESCE((SELECT sum(r.clicks) FROM click_rollup_hourly r
                                  WHERE r.offer_id = o.id AND r.hour >= ?3 AND r.hour < ?4), 0)
                      + (SELECT count(*) FROM clicks c
                         WHERE c.offer_id = o.id AND c.created_at >= ?1 AND c.created_at < min(?3, ?2))
                      + (SELECT count(*) FROM clicks c
                         WHERE c.offer_id = o.id AND c.created_at >= max(?4, ?1) AND c.created_at < ?2),
                        COALESCE(g.registrations, 0),
                        COALESCE(f.ftds, 0),
                        COALESCE(f.revenue, 0) + COALESCE(d.revenue, 0)
                     FROM offers o
                     LEFT JOIN ftd_totals f ON f.offer_id = o.id
                     LEFT JOIN deposit_totals d ON d.offer_id = o.id
                     LEFT JOIN registration_totals g ON g.offer_id = o.id
                     ORDER BY o.id",
                )
                .map_err(query_error)?;
            let rows = statement
                .query_map(bounds, |row| {
                    Ok(OfferStats {
                        offer_id: row.get(0)?,
                        name: row.get(1)?,
                        weight: row.get(2)?,
                        active: row.get(3)?,
                        clicks: row.get::<_, i64>(4)? as u64,
                        registrations: row.get::<_, i64>(5)? as u64,
                        ftds: row.get::<_, i64>(6)? as u64,
                        revenue: from_micro_units(row.get(7)?),
                    })
                })
                .map_err(query_error)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(query_error)
        })
        .await
    }

    async fn recalculate_weights(
        &self,
        last_n_clicks: u32,
        policy: &WeightPolicy,
    ) -> StoreResult<Option<Vec<WeightedOffer>>> {
        // A single instance: the connection's mutex already makes recalculations one at a time.
        let policy = *policy;
        self.in_transaction(move |tx| {
            let mut offers =
                tx.prepare_cached("SELECT id FROM offers WHERE active ORDER BY id").map_err(query_error)?;
            let offer_ids = offers
                .query_map([], |row| row.get::<_, i64>(0))
                .map_err(query_error)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(query_error)?;
            let mut window_query = tx
                .prepare_cached(
                    "WITH recent AS (
                        SELECT click_id FROM clicks WHERE offer_id = ?1 ORDER BY created_at DESC LIMIT ?2
                     )
                     SELECT
                        (SELECT count(*) FROM recent),
                        (SELECT count(*) FROM ftd_events f JOIN recent r USING (click_id) WHERE f.voided_at IS NULL),
                        (SELECT COALESCE(sum(p.amount_micros), 0)
                         FROM ftd_events f JOIN recent r USING (click_id) JOIN payouts p ON p.ftd_event_id = f.id
                         WHERE f.voided_at IS NULL)
                      + (SELECT COALESCE(sum(d.amount_micros), 0) FROM deposits d JOIN recent r USING (click_id))",
                )
                .map_err(query_error)?;
            let mut windows = Vec::with_capacity(offer_ids.len());
            for offer_id in offer_ids {
                let window = window_query
                    .query_row(params![offer_id, last_n_clicks], |row| {
                        Ok(OfferWindow {
                            offer_id,
                            clicks: row.get::<_, i64>(0)? as u64,
                            ftds: row.get::<_, i64>(1)? as u64,
                            revenue: from_micro_units(row.get(2)?),
                        })
                    })
                    .map_err(query_error)?;
                windows.push(window);
            }
            let weighted = policy.weigh(&windows);
            let run_at = now_micros();
            for offer in &weighted {
                let w = &offer.window;
                tx.execute("UPDATE offers SET weight = ?2 WHERE id = ?1", params![w.offer_id, offer.weight])
                    .map_err(query_error)?;
                tx.execute(
                    "INSERT INTO weight_history (run_at, offer_id, clicks, ftds, payout, ev, weight)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    params![run_at, w.offer_id, w.clicks as i64, w.ftds as i64, w.revenue, offer.ev, offer.weight],
                )
                .map_err(query_error)?;
            }
            bump_routing_version(tx)?;
            Ok(Some(weighted))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_round_trips_exactly_in_micro_units() {
        assert_eq!(to_micro_units(100.5), 100_500_000);
        assert_eq!(from_micro_units(to_micro_units(0.1) + to_micro_units(0.2)), 0.3);
    }

    #[test]
    fn times_round_trip_in_microseconds() {
        let t = OffsetDateTime::from_unix_timestamp_nanos(1_700_000_000_123_456_000).unwrap();
        assert_eq!(from_micros(micros(t)), t);
    }
}

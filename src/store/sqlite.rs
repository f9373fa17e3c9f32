//! The embedded SQLite store: the router with nothing to install, for one instance.
//!
//! One connection behind a mutex, used from tokio's blocking pool, so no async worker ever waits on
//! disk. WAL mode lets readers and the writer overlap on disk; `synchronous = FULL` makes every
//! commit durable, which costs little because clicks commit a batch at a time. The schema mirrors
//! PostgreSQL's (same keys and unique constraints), with times in microseconds and money in exact
//! integer micro-units. There is no cross-instance coordination: a SQLite router is a single instance.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::FutureExt;
use rusqlite::types::Value;
use rusqlite::{Connection, Row, Rows, Transaction, params, params_from_iter};
use time::OffsetDateTime;
use uuid::Uuid;

use super::conversions::{self, ConversionTransaction};
use super::held::{self, EXPIRED_REASON, HoldTransaction};
use super::migrate::{self, Migration, MigrationTarget};
use super::offers::{self, OfferTransaction};
use super::sql::{self, Columns, Param, Statements};
use super::weights::{self, WeightTransaction};
use super::{
    ClaimedPostback, ClickOwner, ClickRecord, ClickSummary, ClickUpkeep, ClickUpkeepDone, Conversion,
    ConversionOutcome, DailyTotal, DashboardSession, DeleteOutcome, FtdBucket, Grouping, HeldPostback, HoldLimits,
    HoldOutcome, HourlyFigures, NewOffer, Offer, OfferPatch, OfferStats, PostbackLogEntry, PostbackLogQuery,
    PostbackLogRow, PostbackOutcome, Rollup, RoutingEvidence, RoutingShare, RoutingVersion, SegmentEvidence,
    SegmentFtds, SegmentRollup, SegmentStats, Store, StoreError, StoreResult, TimeRange, current_hour, rollup_bounds,
};
use crate::conversion::{EventKind, alias_names, aliases_from_names, to_micro_units};
use crate::routing::{OfferWindow, SegmentDims, Targeting, WeightPolicy, WeightedOffer};

/// The shared statements, in SQLite's dialect.
static SQL: LazyLock<Statements> = LazyLock::new(|| Statements::new(&sql::SQLITE));

/// An embedded database file.
#[derive(Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    segments: Arc<SegmentRollup>,
}

impl SqliteStore {
    /// Opens (creating it and its folder if needed) the database at `path` and applies migrations.
    pub async fn open(path: &Path, segment_by: SegmentDims) -> StoreResult<SqliteStore> {
        let path = path.to_owned();
        let segments = Arc::new(SegmentRollup::new(segment_by));
        let rollup = segments.clone();
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
            now_or_never(migrate::run(&mut Migrations(&mut conn), migrate::SQLITE))?;
            // When the rollup of this kind of segment began, if it had not begun before.
            if !rollup.dims().is_none() {
                conn.execute(
                    "INSERT INTO segment_rollups (dimension, since) VALUES (?1, ?2) ON CONFLICT (dimension) DO NOTHING",
                    params![rollup.dimension(), micros(OffsetDateTime::now_utc())],
                )
                .map_err(query_error)?;
            }
            Ok(conn)
        })
        .await
        .map_err(|e| StoreError::Unavailable(e.to_string()))??;
        Ok(SqliteStore { conn: Arc::new(Mutex::new(conn)), segments })
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

/// Clicks deleted per transaction by retention: small enough that the writer waits for one batch
/// only for milliseconds.
const RETENTION_BATCH: u64 = 5_000;

/// Deletes up to [`RETENTION_BATCH`] clicks whose id sorts before `first_kept` (ids are UUID v7 in
/// lower-case text: their order is their time's), oldest first, in one transaction. Events keep
/// their foreign keys for inserts; this delete alone runs with them unchecked, since events outlive
/// their clicks (the pragma cannot change inside a transaction, so it is set around it).
fn delete_clicks_before(conn: &mut Connection, first_kept: &str) -> StoreResult<u64> {
    conn.execute_batch("PRAGMA foreign_keys = OFF").map_err(query_error)?;
    let deleted = conn.execute(
        "DELETE FROM clicks WHERE click_id IN (SELECT click_id FROM clicks WHERE click_id < ?1 ORDER BY click_id LIMIT ?2)",
        params![first_kept, RETENTION_BATCH as i64],
    );
    conn.execute_batch("PRAGMA foreign_keys = ON").map_err(query_error)?;
    Ok(deleted.map_err(query_error)? as u64)
}

/// Completes a future of the shared code (the migration runner, the weight recalculation) whose
/// SQLite steps are synchronous, so that it never waits: it runs on the thread that holds the
/// connection, in the blocking pool.
fn now_or_never<T>(work: impl Future<Output = StoreResult<T>>) -> StoreResult<T> {
    work.now_or_never().unwrap_or_else(|| Err(StoreError::Query("a synchronous step waited".to_owned())))
}

/// The migration runner's view of the connection.
struct Migrations<'c>(&'c mut Connection);

impl MigrationTarget for Migrations<'_> {
    async fn applied_versions(&mut self) -> StoreResult<BTreeSet<u32>> {
        self.0
            .execute_batch(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)",
            )
            .map_err(query_error)?;
        let mut statement = self.0.prepare("SELECT version FROM schema_migrations").map_err(query_error)?;
        let versions = statement.query_map([], |row| row.get(0)).map_err(query_error)?;
        versions.collect::<rusqlite::Result<_>>().map_err(query_error)
    }

    async fn apply(&mut self, migration: &Migration, applied_at: OffsetDateTime) -> Result<(), String> {
        let failed = |e: rusqlite::Error| e.to_string();
        let tx = self.0.transaction().map_err(failed)?;
        tx.execute_batch(migration.sql).map_err(failed)?;
        tx.execute(&SQL.insert_migration, params![migration.version, micros(applied_at)]).map_err(failed)?;
        tx.commit().map_err(failed)
    }
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

/// SQLite's row under the shared mapping: times are microseconds, addresses and aliases text.
struct SqliteRow<'r, 's>(&'r Row<'s>);

impl SqliteRow<'_, '_> {
    fn get<T: rusqlite::types::FromSql>(&self, index: usize) -> StoreResult<T> {
        self.0.get(index).map_err(query_error)
    }
}

impl Columns for SqliteRow<'_, '_> {
    sql::decoded_columns!();

    fn time(&self, index: usize) -> StoreResult<OffsetDateTime> {
        Ok(from_micros(self.get(index)?))
    }
    fn aliases(&self, index: usize) -> StoreResult<BTreeMap<String, EventKind>> {
        Ok(parse_aliases(&self.get::<String>(index)?))
    }
    fn opt_ip(&self, index: usize) -> StoreResult<Option<IpAddr>> {
        Ok(self.get::<Option<String>>(index)?.and_then(|ip| ip.parse().ok()))
    }
    fn targeting(&self, index: usize) -> StoreResult<Targeting> {
        serde_json::from_str(&self.get::<String>(index)?)
            .map_err(|error| StoreError::Query(format!("stored targeting unreadable: {error}")))
    }
}

/// An offer's rules as stored: a JSON object.
fn targeting_json(targeting: &Targeting) -> String {
    serde_json::to_string(targeting).unwrap_or_else(|_| "{}".to_owned())
}

/// A cap as an `INTEGER` (caps are validated far below `i64::MAX`).
fn cap_value(cap: u64) -> i64 {
    i64::try_from(cap).unwrap_or(i64::MAX)
}

/// Runs `sql` (a cached statement) with `params` and hands its rows to `read`.
fn with_rows<T>(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    read: impl FnOnce(Rows<'_>) -> StoreResult<T>,
) -> StoreResult<T> {
    let mut statement = conn.prepare_cached(sql).map_err(query_error)?;
    read(statement.query(params).map_err(query_error)?)
}

/// Runs `sql` with `params` and maps every row with `map`.
fn query_all<T>(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    map: impl Fn(&dyn Columns) -> StoreResult<T>,
) -> StoreResult<Vec<T>> {
    with_rows(conn, sql, params, |mut rows| {
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(query_error)? {
            out.push(map(&SqliteRow(row))?);
        }
        Ok(out)
    })
}

/// Runs `sql` with `params` and maps its first row, if there is one, with `map`.
fn query_opt<T>(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    map: impl Fn(&dyn Columns) -> StoreResult<T>,
) -> StoreResult<Option<T>> {
    with_rows(conn, sql, params, |mut rows| {
        rows.next().map_err(query_error)?.map(|row| map(&SqliteRow(row))).transpose()
    })
}

/// Whether `sql` with `params` returns a row.
fn exists(conn: &Connection, sql: &str, params: impl rusqlite::Params) -> StoreResult<bool> {
    Ok(query_opt(conn, sql, params, |_| Ok(()))?.is_some())
}

fn insert_log(conn: &Connection, entry: &PostbackLogEntry) -> StoreResult<()> {
    conn.prepare_cached(&SQL.insert_log)
        .and_then(|mut statement| statement.execute(log_params(entry)))
        .map_err(query_error)?;
    Ok(())
}

/// A postback-log line's values, in [`sql::POSTBACK_LOG_COLUMNS`]' order.
fn log_params(entry: &PostbackLogEntry) -> impl rusqlite::Params {
    let values: [Value; 11] = [
        micros(entry.received_at).into(),
        entry.offer_id.into(),
        entry.click_id.clone().into(),
        entry.event.clone().into(),
        entry.payout.into(),
        entry.currency.clone().into(),
        entry.tid.clone().into(),
        entry.outcome.as_str().to_owned().into(),
        entry.reason.clone().into(),
        entry.source_ip.map(|ip| ip.to_string()).into(),
        entry.ignored_fields.clone().into(),
    ];
    params_from_iter(values)
}

/// A shared statement's run-time parameter, as SQLite stores it.
fn value(param: Param) -> Value {
    match param {
        Param::Int(value) => Value::Integer(value),
        Param::Text(text) => Value::Text(text.to_owned()),
        Param::Time(time) => Value::Integer(micros(time)),
    }
}

/// A transaction, for the shared rules' steps (`offers`, `conversions`, `weights`).
struct Tx<'t, 'c>(&'t Transaction<'c>);

impl RoutingVersion for Tx<'_, '_> {
    async fn bump_routing_version(&mut self) -> StoreResult<()> {
        self.0.execute(&SQL.bump_routing_version, []).map_err(query_error)?;
        Ok(())
    }
}

impl OfferTransaction for Tx<'_, '_> {
    async fn insert_offer(&mut self, offer: &NewOffer) -> StoreResult<Offer> {
        let sql = format!(
            "INSERT INTO offers ({}, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10) RETURNING {}",
            sql::NEW_OFFER_COLUMNS,
            sql::OFFER_COLUMNS
        );
        let params = params![
            offer.name,
            offer.casino_url,
            offer.weight,
            offer.postback_secret,
            offer.active,
            aliases_json(&offer.event_aliases),
            targeting_json(&offer.targeting),
            offer.daily_caps.clicks.map(cap_value),
            offer.daily_caps.ftds.map(cap_value),
            now_micros()
        ];
        let created = query_opt(self.0, &sql, params, sql::offer)?;
        created.ok_or_else(|| StoreError::Query("INSERT .. RETURNING returned no row".to_owned()))
    }

    async fn patch_offer(&mut self, id: i64, patch: &OfferPatch) -> StoreResult<Option<Offer>> {
        let params = params![
            id,
            patch.name,
            patch.casino_url,
            patch.weight,
            patch.postback_secret,
            patch.active,
            patch.event_aliases.as_ref().map(aliases_json),
            now_micros(),
            patch.targeting.as_ref().map(targeting_json),
            patch.daily_click_cap.is_some(),
            patch.daily_click_cap.flatten().map(cap_value),
            patch.daily_ftd_cap.is_some(),
            patch.daily_ftd_cap.flatten().map(cap_value)
        ];
        query_opt(self.0, &SQL.update_offer, params, sql::offer)
    }

    async fn offer_exists(&mut self, id: i64) -> StoreResult<bool> {
        exists(self.0, &SQL.offer_exists, [id])
    }

    async fn offer_has_clicks(&mut self, id: i64) -> StoreResult<bool> {
        exists(self.0, &SQL.offer_has_clicks, [id])
    }

    async fn delete_offer(&mut self, id: i64) -> StoreResult<()> {
        self.0.execute(&SQL.delete_offer, [id]).map_err(query_error)?;
        Ok(())
    }
}

impl WeightTransaction for Tx<'_, '_> {
    async fn active_offer_ids(&mut self) -> StoreResult<Vec<i64>> {
        query_all(self.0, &SQL.active_offer_ids, [], |row| row.int(0))
    }

    async fn window(&mut self, offer_id: i64, last_n_clicks: u32) -> StoreResult<OfferWindow> {
        let window = query_opt(self.0, &SQL.offer_window, params![offer_id, last_n_clicks], |row| {
            sql::offer_window(offer_id, row)
        })?;
        window.ok_or_else(|| StoreError::Query("the window query returned no row".to_owned()))
    }

    async fn save_weight(&mut self, run_at: OffsetDateTime, offer: &WeightedOffer) -> StoreResult<()> {
        let w = &offer.window;
        self.0.execute(&SQL.set_weight, params![w.offer_id, offer.weight]).map_err(query_error)?;
        self.0
            .execute(
                &SQL.insert_weight_history,
                params![micros(run_at), w.offer_id, w.clicks as i64, w.ftds as i64, w.revenue, offer.ev, offer.weight],
            )
            .map_err(query_error)?;
        Ok(())
    }
}

fn insert_payout(tx: &Transaction<'_>, click_id: Uuid, ftd_id: i64, amount: f64, currency: &str) -> StoreResult<bool> {
    let changed = tx
        .execute(
            "INSERT INTO payouts (click_id, ftd_event_id, amount_micros, currency, received_at)
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING",
            params![click_id.to_string(), ftd_id, to_micro_units(amount), currency, now_micros()],
        )
        .map_err(query_error)?;
    Ok(changed > 0)
}

/// Records an FTD and, if it brings one, its payout.
fn record_ftd(tx: &Transaction<'_>, c: &Conversion) -> StoreResult<ConversionOutcome> {
    let changed = tx
        .execute(
            "INSERT INTO ftd_events (click_id, offer_id, click_at, ftd_timestamp, external_player_id, tid)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT DO NOTHING",
            params![
                c.click_id.to_string(),
                c.offer_id,
                micros(c.clicked_at),
                now_micros(),
                c.external_player_id,
                c.tid
            ],
        )
        .map_err(query_error)?;
    if changed > 0
        && let Some(payout) = c.payout
    {
        insert_payout(tx, c.click_id, tx.last_insert_rowid(), payout, &c.currency)?;
    }
    Ok(conversions::inserted(changed > 0))
}

/// Records a registration (once per click).
fn insert_registration(tx: &Transaction<'_>, c: &Conversion) -> StoreResult<ConversionOutcome> {
    let changed = tx
        .execute(
            "INSERT INTO registrations (click_id, offer_id, click_at, registered_at, external_player_id)
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING",
            params![c.click_id.to_string(), c.offer_id, micros(c.clicked_at), now_micros(), c.external_player_id],
        )
        .map_err(query_error)?;
    Ok(conversions::inserted(changed > 0))
}

/// Records a further deposit (once per offer and transaction id).
fn insert_deposit(tx: &Transaction<'_>, c: &Conversion) -> StoreResult<ConversionOutcome> {
    let changed = tx
        .execute(
            "INSERT INTO deposits (click_id, offer_id, click_at, tid, amount_micros, currency, received_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT DO NOTHING",
            params![
                c.click_id.to_string(),
                c.offer_id,
                micros(c.clicked_at),
                c.tid,
                c.payout.map(to_micro_units),
                c.currency,
                now_micros()
            ],
        )
        .map_err(query_error)?;
    Ok(conversions::inserted(changed > 0))
}

impl HoldTransaction for Tx<'_, '_> {
    async fn click_stored(&mut self, click_id: Uuid) -> StoreResult<bool> {
        exists(self.0, &SQL.click_stored, [click_id.to_string()])
    }

    async fn held_counts(&mut self, offer_id: i64) -> StoreResult<(u64, u64)> {
        let counts = query_opt(
            self.0,
            "SELECT COALESCE(sum(offer_id = ?1), 0), count(*) FROM held_postbacks",
            [offer_id],
            |row| Ok((row.count(0)?, row.count(1)?)),
        )?;
        Ok(counts.unwrap_or_default())
    }

    async fn insert_log_line(&mut self, entry: &PostbackLogEntry) -> StoreResult<i64> {
        let id = query_opt(self.0, &SQL.insert_log_returning_id, log_params(entry), |row| row.int(0))?;
        id.ok_or_else(|| StoreError::Query("no id for the log line".to_owned()))
    }

    async fn insert_held(&mut self, held: &HeldPostback, log: &PostbackLogEntry, log_id: i64) -> StoreResult<bool> {
        let changed = self
            .0
            .execute(
                "INSERT INTO held_postbacks (click_id, offer_id, kind, repeat_key, amount_micros, currency, tid,
                                             external_player_id, received_at, expires_at, log_id)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) ON CONFLICT DO NOTHING",
                params![
                    held.click_id.to_string(),
                    held.offer_id,
                    held.kind.as_str(),
                    held.repeat_key(),
                    held.payout.map(to_micro_units),
                    held.currency,
                    held.tid,
                    held.external_player_id,
                    micros(log.received_at),
                    micros(held.expires_at),
                    log_id,
                ],
            )
            .map_err(query_error)?;
        Ok(changed > 0)
    }

    async fn set_log_outcome(&mut self, log_id: i64, outcome: PostbackOutcome, reason: &str) -> StoreResult<()> {
        self.0.execute(&SQL.set_log_outcome, params![log_id, outcome.as_str(), reason]).map_err(query_error)?;
        Ok(())
    }
}

impl ConversionTransaction for Tx<'_, '_> {
    async fn ftd_of(&mut self, click_id: Uuid) -> StoreResult<Option<i64>> {
        query_opt(self.0, &SQL.ftd_of, [click_id.to_string()], |row| row.int(0))
    }

    async fn insert_payout(&mut self, click_id: Uuid, ftd_id: i64, amount: f64, currency: &str) -> StoreResult<bool> {
        insert_payout(self.0, click_id, ftd_id, amount, currency)
    }

    async fn void_ftd(&mut self, click_id: Uuid) -> StoreResult<bool> {
        let changed =
            self.0.execute(&SQL.void_ftd, params![click_id.to_string(), now_micros()]).map_err(query_error)?;
        Ok(changed > 0)
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> StoreResult<()> {
        self.with_conn(|conn| conn.query_row("SELECT 1", [], |_| Ok(())).map_err(query_error)).await
    }

    async fn routing_version(&self) -> StoreResult<i64> {
        self.with_conn(|conn| conn.query_row(&SQL.routing_version, [], |row| row.get(0)).map_err(query_error)).await
    }

    async fn list_offers(&self, active_only: bool) -> StoreResult<Vec<Offer>> {
        self.with_conn(move |conn| query_all(conn, &SQL.list_offers, [active_only], sql::offer)).await
    }

    async fn get_offer(&self, id: i64) -> StoreResult<Option<Offer>> {
        self.with_conn(move |conn| query_opt(conn, &SQL.get_offer, [id], sql::offer)).await
    }

    async fn create_offer(&self, offer: &NewOffer) -> StoreResult<Offer> {
        let offer = offer.clone();
        self.in_transaction(move |tx| now_or_never(offers::create(&mut Tx(tx), &offer))).await
    }

    async fn update_offer(&self, id: i64, patch: &OfferPatch) -> StoreResult<Option<Offer>> {
        let patch = patch.clone();
        self.in_transaction(move |tx| now_or_never(offers::update(&mut Tx(tx), id, &patch))).await
    }

    async fn delete_offer(&self, id: i64) -> StoreResult<DeleteOutcome> {
        self.in_transaction(move |tx| now_or_never(offers::delete(&mut Tx(tx), id))).await
    }

    async fn insert_clicks(&self, clicks: &[ClickRecord]) -> StoreResult<u64> {
        let clicks = clicks.to_vec();
        let segments = self.segments.clone();
        self.in_transaction(move |tx| {
            let mut insert = tx
                .prepare_cached(&format!(
                    "INSERT INTO clicks ({})
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13) ON CONFLICT (click_id) DO NOTHING",
                    sql::CLICK_COLUMNS
                ))
                .map_err(query_error)?;
            let mut rollup = Rollup::new(&segments);
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
                        click.country.map(|country| country.as_str()),
                        click.device.map(|device| device.as_str()),
                        click.is_bot,
                        click.is_fallback,
                    ])
                    .map_err(query_error)?;
                if changed > 0 {
                    rollup.add(click);
                }
            }
            let mut hourly = tx
                .prepare_cached(
                    "INSERT INTO click_rollup_hourly (offer_id, hour, clicks, bots) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (offer_id, hour) DO UPDATE
                     SET clicks = clicks + excluded.clicks, bots = bots + excluded.bots",
                )
                .map_err(query_error)?;
            for (&(offer_id, hour), &(n, bots)) in &rollup.hourly {
                hourly.execute(params![offer_id, hour * 1_000_000, n, bots]).map_err(query_error)?;
            }
            let mut dims = tx
                .prepare_cached(
                    "INSERT INTO click_rollup_dims (offer_id, hour, dimension, value, clicks, bots)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT (dimension, hour, offer_id, value) DO UPDATE
                     SET clicks = clicks + excluded.clicks, bots = bots + excluded.bots",
                )
                .map_err(query_error)?;
            for ((offer_id, hour, dimension, value), (n, bots)) in rollup.dim_rows() {
                dims.execute(params![offer_id, hour * 1_000_000, dimension, value, n, bots]).map_err(query_error)?;
            }
            Ok(rollup.clicks())
        })
        .await
    }

    async fn click_owner(&self, click_id: Uuid) -> StoreResult<Option<ClickOwner>> {
        self.with_conn(move |conn| query_opt(conn, &SQL.click_owner, [click_id.to_string()], sql::click_owner)).await
    }

    async fn apply_conversion(
        &self,
        conversion: &Conversion,
        log: &PostbackLogEntry,
    ) -> StoreResult<ConversionOutcome> {
        let conversion = conversion.clone();
        let log = log.clone();
        self.in_transaction(move |tx| {
            let outcome = match conversion.kind {
                EventKind::Ftd => record_ftd(tx, &conversion)?,
                EventKind::Reg => insert_registration(tx, &conversion)?,
                EventKind::Deposit => insert_deposit(tx, &conversion)?,
                EventKind::Payout | EventKind::Rejected => now_or_never(conversions::apply(&mut Tx(tx), &conversion))?,
            };
            insert_log(tx, &log.concluded(conversion.kind, outcome))?;
            Ok(outcome)
        })
        .await
    }

    async fn log_postback(&self, entry: &PostbackLogEntry) -> StoreResult<()> {
        let entry = entry.clone();
        self.with_conn(move |conn| insert_log(conn, &entry)).await
    }

    async fn hold_postback(
        &self,
        held: &HeldPostback,
        log: &PostbackLogEntry,
        limits: HoldLimits,
    ) -> StoreResult<HoldOutcome> {
        let (held, log) = (held.clone(), log.clone());
        self.in_transaction(move |tx| now_or_never(held::hold(&mut Tx(tx), &held, &log, limits))).await
    }

    async fn claim_held_postbacks(
        &self,
        now: OffsetDateTime,
        lease: Duration,
        limit: usize,
    ) -> StoreResult<Vec<ClaimedPostback>> {
        let (now, until) = (micros(now), micros(now + lease));
        self.in_transaction(move |tx| {
            let ids = query_all(tx, &SQL.claim_held, params![now, until, limit as i64], |row| row.int(0))?;
            let mut claimed = Vec::with_capacity(ids.len());
            for id in ids {
                claimed.extend(query_opt(tx, &SQL.claimed_held, [id], sql::claimed_postback)?);
            }
            Ok(claimed)
        })
        .await
    }

    async fn release_held_postback(&self, claimed: &ClaimedPostback) -> StoreResult<()> {
        let (id, log_id) = (claimed.id, claimed.log_id);
        self.in_transaction(move |tx| {
            tx.execute(&SQL.delete_held, [id]).map_err(query_error)?;
            tx.execute(&SQL.delete_log_line, [log_id]).map_err(query_error)?;
            Ok(())
        })
        .await
    }

    async fn expire_held_postbacks(&self, now: OffsetDateTime) -> StoreResult<u64> {
        let now = micros(now);
        self.in_transaction(move |tx| {
            tx.execute(&SQL.expire_held_lines, params![now, EXPIRED_REASON]).map_err(query_error)?;
            Ok(tx.execute(&SQL.expire_held, [now]).map_err(query_error)? as u64)
        })
        .await
    }

    async fn postback_log(&self, query: &PostbackLogQuery) -> StoreResult<Vec<PostbackLogRow>> {
        let (select, params) = sql::postback_log_select(&sql::SQLITE, query);
        self.with_conn(move |conn| {
            query_all(conn, &select, params_from_iter(params.into_iter().map(value)), sql::postback_log_row)
        })
        .await
    }

    async fn routing_evidence(&self, now: OffsetDateTime, horizon_hours: usize) -> StoreResult<RoutingEvidence> {
        const HOUR: i64 = 3_600_000_000;
        let (hour, hour_elapsed) = current_hour(now);
        let (now, since, hour) = (micros(now), micros(now) - horizon_hours as i64 * HOUR, micros(hour));
        let segments = self.segments.clone();
        self.with_conn(move |conn| {
            // Clicks by hour, counted back from the current one.
            let mut clicks = conn
                .prepare_cached(
                    "SELECT offer_id, (?1 - hour) / 3600000000, clicks - bots
                     FROM click_rollup_hourly WHERE hour > ?2 AND hour <= ?1",
                )
                .map_err(query_error)?;
            let clicks = clicks
                .query_map([hour, hour - horizon_hours as i64 * HOUR], |row| {
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
                     FROM ftd_events f LEFT JOIN payouts p ON p.click_id = f.click_id
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
            let segments = if segments.dims().is_none() {
                SegmentEvidence::default()
            } else {
                segment_evidence(conn, &segments, now, hour, horizon_hours as i64 * HOUR)?
            };
            Ok(RoutingEvidence { clicks, ftds, segments, hour_elapsed })
        })
        .await
    }

    async fn segment_stats(&self, range: TimeRange, grouping: Grouping) -> StoreResult<Vec<SegmentStats>> {
        let bounds = rollup_bounds(range);
        let ids = sql::edge_id_bounds(bounds).map(|id| id.to_string());
        let (from, to, from_hour, to_hour) = bounds;
        let (from, to, from_hour, to_hour) = (micros(from), micros(to), micros(from_hour), micros(to_hour));
        let queries = sql::SegmentQueries::new(&sql::SQLITE, grouping);
        self.with_conn(move |conn| {
            let mut tally = sql::SegmentTally::default();
            let mut each =
                |sql: &str,
                 params: &[&dyn rusqlite::ToSql],
                 add: fn(&mut sql::SegmentTally, Grouping, &dyn Columns) -> StoreResult<()>| {
                    with_rows(conn, sql, params, |mut rows| {
                        while let Some(row) = rows.next().map_err(query_error)? {
                            add(&mut tally, grouping, &SqliteRow(row))?;
                        }
                        Ok(())
                    })
                };
            each(&queries.rollup_clicks, &[&from_hour, &to_hour], sql::SegmentTally::add_clicks)?;
            let [first_from, first_to, last_from, last_to] = &ids;
            // The edge hours' queries (clicks, FTDs, deposits) take the same eight parameters.
            let edges: [&dyn rusqlite::ToSql; 8] =
                [&from, &to, &from_hour, &to_hour, first_from, first_to, last_from, last_to];
            each(&queries.edge_clicks, &edges, sql::SegmentTally::add_clicks)?;
            each(&queries.rollup_events, &[&from_hour, &to_hour], sql::SegmentTally::add_events)?;
            each(&queries.ftds, &edges, sql::SegmentTally::add_events)?;
            each(&queries.deposits, &edges, sql::SegmentTally::add_events)?;
            Ok(tally.into_rows())
        })
        .await
    }

    async fn daily_totals(&self, day_start: OffsetDateTime) -> StoreResult<Vec<DailyTotal>> {
        let day_start = micros(day_start);
        self.with_conn(move |conn| {
            let totals = |sql: &str| query_all(conn, sql, [day_start], sql::offer_count);
            Ok(sql::daily_totals(totals(&SQL.daily_clicks)?, totals(&SQL.daily_ftds)?))
        })
        .await
    }

    async fn offer_stats(&self, range: TimeRange) -> StoreResult<Vec<OfferStats>> {
        let bounds = rollup_bounds(range);
        let [first_from, first_to, last_from, last_to] = sql::edge_id_bounds(bounds).map(|id| id.to_string());
        let (from, to, from_hour, to_hour) = bounds;
        let params =
            (micros(from), micros(to), micros(from_hour), micros(to_hour), first_from, first_to, last_from, last_to);
        self.with_conn(move |conn| query_all(conn, &SQL.offer_stats, params, sql::offer_stats)).await
    }

    async fn hourly_figures(&self, from: OffsetDateTime, to: OffsetDateTime) -> StoreResult<Vec<HourlyFigures>> {
        let range = [micros(from), micros(to)];
        self.with_conn(move |conn| {
            let mut parts = query_all(conn, &SQL.hourly_clicks, range, sql::hourly_clicks)?;
            parts.extend(query_all(conn, &SQL.hourly_events, range, sql::hourly_events)?);
            Ok(sql::merge_hourly(parts))
        })
        .await
    }

    async fn latest_clicks(&self, limit: u32) -> StoreResult<Vec<ClickSummary>> {
        self.with_conn(move |conn| query_all(conn, &SQL.latest_clicks, [limit], sql::click_summary)).await
    }

    async fn record_routing(&self, shares: &[RoutingShare]) -> StoreResult<()> {
        let shares = shares.to_vec();
        self.in_transaction(move |tx| {
            for share in &shares {
                tx.execute(
                    &SQL.record_routing,
                    params![
                        micros(share.slot),
                        share.offer_id,
                        share.traffic_share,
                        share.epc_mean,
                        share.probability_best
                    ],
                )
                .map_err(query_error)?;
            }
            Ok(())
        })
        .await
    }

    async fn routing_history(&self, from: OffsetDateTime, to: OffsetDateTime) -> StoreResult<Vec<RoutingShare>> {
        let range = [micros(from), micros(to)];
        self.with_conn(move |conn| query_all(conn, &SQL.routing_history, range, sql::routing_share)).await
    }

    async fn create_session(&self, session: &DashboardSession) -> StoreResult<()> {
        let session = session.clone();
        self.in_transaction(move |tx| {
            tx.execute(&SQL.delete_expired_sessions, [micros(session.created_at)]).map_err(query_error)?;
            tx.execute(
                &SQL.insert_session,
                params![session.id_hash, session.csrf_token, micros(session.created_at), micros(session.expires_at)],
            )
            .map_err(query_error)?;
            Ok(())
        })
        .await
    }

    async fn find_session(&self, id_hash: &str, now: OffsetDateTime) -> StoreResult<Option<DashboardSession>> {
        let id_hash = id_hash.to_owned();
        self.with_conn(move |conn| {
            query_opt(conn, &SQL.find_session, params![id_hash, micros(now)], sql::dashboard_session)
        })
        .await
    }

    async fn delete_session(&self, id_hash: &str) -> StoreResult<()> {
        let id_hash = id_hash.to_owned();
        self.with_conn(move |conn| conn.execute(&SQL.delete_session, [id_hash]).map(drop).map_err(query_error)).await
    }

    async fn maintain_clicks(&self, upkeep: ClickUpkeep) -> StoreResult<ClickUpkeepDone> {
        let mut done = ClickUpkeepDone::default();
        let Some(cutoff) = upkeep.cutoff() else { return Ok(done) };
        let first_kept = sql::click_id_bounds(cutoff, cutoff).0.to_string();
        loop {
            let before = first_kept.clone();
            let deleted = self.with_conn(move |conn| delete_clicks_before(conn, &before)).await?;
            done.clicks_deleted += deleted;
            if deleted < RETENTION_BATCH {
                return Ok(done);
            }
            // Between batches the writer and the postbacks take the connection.
            tokio::task::yield_now().await;
        }
    }

    async fn recalculate_weights(
        &self,
        last_n_clicks: u32,
        policy: &WeightPolicy,
    ) -> StoreResult<Option<Vec<WeightedOffer>>> {
        // A single instance: the connection's mutex already makes recalculations one at a time.
        let policy = *policy;
        self.in_transaction(move |tx| now_or_never(weights::recalculate(&mut Tx(tx), last_n_clicks, &policy)).map(Some))
            .await
    }
}

/// The segment part of the routing evidence (see `store::segments`): clicks from the segment
/// rollup, FTDs joined to their clicks' traits, both from the rollup's start. Times in microseconds.
fn segment_evidence(
    conn: &Connection,
    segments: &SegmentRollup,
    now: i64,
    hour: i64,
    horizon: i64,
) -> StoreResult<SegmentEvidence> {
    let dimension = segments.dimension();
    let mut clicks = conn
        .prepare_cached(
            "SELECT offer_id, (?1 - hour) / 3600000000, value, clicks - bots
             FROM click_rollup_dims
             WHERE dimension = ?3 AND hour > ?1 - ?2 AND hour <= ?1
               AND hour > (SELECT since FROM segment_rollups WHERE dimension = ?3) - 3600000000",
        )
        .map_err(query_error)?;
    let clicks = clicks
        .query_map(params![hour, horizon, dimension], |row| {
            Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)? as usize, row.get::<_, String>(2)?, row.get::<_, i64>(3)?))
        })
        .map_err(query_error)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(query_error)?
        .into_iter()
        .filter_map(|(offer_id, age, value, clicks)| Some((offer_id, age, segments.decode(&value)?, clicks as u64)))
        .collect();
    let mut ftds = conn
        .prepare_cached(
            "SELECT f.offer_id, (?1 - f.click_at) / 3600000000,
                    COALESCE(c.country, ''), COALESCE(c.device, ''), CASE WHEN ?4 THEN COALESCE(c.source, '') ELSE '' END,
                    count(*), count(p.id), COALESCE(sum(p.amount_micros), 0)
             FROM ftd_events f JOIN clicks c ON c.click_id = f.click_id
                  LEFT JOIN payouts p ON p.click_id = f.click_id
             WHERE f.voided_at IS NULL AND f.click_at > ?1 - ?2 AND f.click_at <= ?1
               AND f.click_at >= (SELECT since FROM segment_rollups WHERE dimension = ?3)
             GROUP BY 1, 2, 3, 4, 5",
        )
        .map_err(query_error)?;
    let ftds = ftds
        .query_map(params![now, horizon, dimension, segments.dims().source], |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, i64>(1)? as usize,
                [row.get::<_, String>(2)?, row.get::<_, String>(3)?, row.get::<_, String>(4)?],
                [row.get::<_, i64>(5)?, row.get::<_, i64>(6)?, row.get::<_, i64>(7)?],
            ))
        })
        .map_err(query_error)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(query_error)?
        .into_iter()
        .filter_map(|(offer_id, age_hours, [country, device, source], [ftds, payouts, payout_micros])| {
            Some(SegmentFtds {
                offer_id,
                age_hours,
                segment: segments.key(&country, &device, &source)?,
                ftds: ftds as u64,
                payouts: payouts as u64,
                payout_sum: from_micro_units(payout_micros),
            })
        })
        .collect();
    Ok(SegmentEvidence { clicks, ftds })
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

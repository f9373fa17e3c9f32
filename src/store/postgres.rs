//! The PostgreSQL store: production, and safe for several router instances on one database.
//!
//! Clicks arrive in batches from the writer and go in by binary COPY straight into `clicks`, with the
//! hourly click rollup bumped in the same transaction. A batch holding a click stored before (retried
//! after a lost commit acknowledgement, replayed from the journal) breaks the primary key and rolls
//! back whole; that batch then goes through a session-local staging table and
//! `INSERT .. SELECT .. ON CONFLICT DO NOTHING`, with the rollup from the rows actually inserted, so
//! nothing is stored or counted twice. Postback statements are prepared once per connection, and
//! concurrent postbacks are committed together (`postback_batch`).
//! Recalculations take a transaction-scoped advisory lock, so one instance recalculates at a time;
//! migrations take a session advisory lock for the same reason.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::pin::pin;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use async_trait::async_trait;
use bytes::{BufMut, BytesMut};
use deadpool_postgres::{
    GenericClient, Manager, ManagerConfig, Object, Pool, PoolError, QueueMode, RecyclingMethod, Runtime, Transaction,
};
use futures_util::SinkExt;
use time::OffsetDateTime;
use tokio_postgres::config::Host;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{IsNull, Json, ToSql, Type};
use tokio_postgres::{NoTls, Row, Statement};
use uuid::Uuid;

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

/// The shared statements, in PostgreSQL's dialect.
static SQL: LazyLock<Statements> = LazyLock::new(|| Statements::new(&sql::POSTGRES));

/// The longest any statement of the router waits for a lock, migrations excepted. Only DDL holds a
/// lock this long; meanwhile the click queue must absorb what arrives while the writer waits (65,536
/// clicks by default: a second of 65,000 clicks/s).
const LOCK_WAIT: Duration = Duration::from_secs(1);

/// Advisory lock keys (arbitrary constants, unique to this application).
const MIGRATION_LOCK: i64 = 0x6361_7369_6e6f_0001;
const RECALC_LOCK: i64 = 0x6361_7369_6e6f_0002;

/// A pool of connections to one PostgreSQL database.
#[derive(Clone)]
pub struct PostgresStore {
    connections: Connections,
    postbacks: PostbackBatcher,
    segments: SegmentRollup,
    /// One server, or Citus.
    layout: Layout,
}

/// The pool, and the server it connects to: every "unavailable" error of getting a connection
/// names it, so that an operator reading `database unavailable` knows which address to check.
#[derive(Clone)]
struct Connections {
    pool: Pool,
    /// `host:port` (several, comma-separated, when the URL names several).
    server: Arc<str>,
}

impl Connections {
    /// A pooled connection, or why there is none.
    async fn get(&self) -> StoreResult<Object> {
        self.pool.get().await.map_err(|error| {
            let cause = pool_error_cause(&error);
            match pool_error(error) {
                StoreError::Unavailable(_) => StoreError::unavailable_at(&self.server, &cause),
                refused => refused,
            }
        })
    }
}

/// The servers `config` names, as `host:port`.
fn servers(config: &tokio_postgres::Config) -> String {
    let ports = config.get_ports();
    let servers: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, host)| {
            let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
            match host {
                Host::Tcp(name) => format!("{name}:{port}"),
                Host::Unix(dir) => format!("{}:{port}", dir.display()),
            }
        })
        .collect();
    if servers.is_empty() { format!("localhost:{}", ports.first().copied().unwrap_or(5432)) } else { servers.join(",") }
}

/// Why a connection could not be had: the server's message, or the innermost cause (`connection
/// refused (os error 111)`), not the layers of wrapping around it.
fn pool_error_cause(error: &PoolError) -> String {
    let PoolError::Backend(backend) = error else { return lowercase_first(&error.to_string()) };
    if backend.as_db_error().is_some() {
        return describe(backend);
    }
    let mut cause: &(dyn std::error::Error + 'static) = backend;
    while let Some(source) = cause.source() {
        cause = source;
    }
    lowercase_first(&cause.to_string())
}

fn lowercase_first(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map(|first| first.to_lowercase().chain(chars).collect()).unwrap_or_default()
}

impl PostgresStore {
    /// Connects to `url` with a pool of `pool_size` and applies pending migrations.
    pub async fn open(url: &str, pool_size: usize, segment_by: SegmentDims) -> StoreResult<PostgresStore> {
        let mut pg_config: tokio_postgres::Config =
            url.parse().map_err(|e| StoreError::Unavailable(format!("invalid DATABASE_URL: {e}")))?;
        pg_config.connect_timeout(Duration::from_secs(5));
        pg_config.application_name("casino-router");
        // No statement of the router waits long for a lock: one that does is behind DDL (a migration
        // moving clicks, a partition dropped), and failing soon lets the writer hold and journal
        // clicks (55P03 is transient) instead of stopping with the queue filling behind it.
        let lock_wait = format!("-c lock_timeout={}", LOCK_WAIT.as_millis());
        let options = pg_config.get_options().map_or(lock_wait.clone(), |given| format!("{given} {lock_wait}"));
        pg_config.options(&options);
        let manager =
            Manager::from_config(pg_config.clone(), NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        // Last in, first out: light traffic keeps reusing the connection returned last, whose
        // prepared statements and backend caches are warm, instead of cycling through every
        // connection a burst opened.
        let pool = Pool::builder(manager)
            .max_size(pool_size)
            .queue_mode(QueueMode::Lifo)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(Duration::from_secs(10)))
            .create_timeout(Some(Duration::from_secs(5)))
            .recycle_timeout(Some(Duration::from_secs(5)))
            .build()
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        let connections = Connections { pool, server: servers(&pg_config).into() };
        let layout = migrate(&connections).await?;
        let store = PostgresStore {
            postbacks: PostbackBatcher::start(connections.clone(), layout),
            connections,
            segments: SegmentRollup::new(segment_by),
            layout,
        };
        store.start_segment_rollup().await?;
        Ok(store)
    }

    /// Records when the rollup of this kind of segment began, if it had not begun before.
    async fn start_segment_rollup(&self) -> StoreResult<()> {
        if !self.segments.dims().is_none() {
            let client = self.client().await?;
            client
                .execute(
                    "INSERT INTO segment_rollups (dimension, since) VALUES ($1, now()) ON CONFLICT (dimension) DO NOTHING",
                    &[&self.segments.dimension()],
                )
                .await
                .map_err(db_error)?;
        }
        Ok(())
    }

    async fn client(&self) -> StoreResult<Object> {
        self.connections.get().await
    }
}

/// Applies the pending migrations, then gives a Citus database its distributed layout if it has not
/// got it yet; returns the database's layout.
async fn migrate(connections: &Connections) -> StoreResult<Layout> {
    let mut client = connections.get().await?;
    // Migrations wait as long as they must for their locks, and for another instance's
    // migrations, which may take minutes (moving clicks into partitions), unlike the router's
    // other statements (LOCK_WAIT); the writers of instances still serving hold their clicks.
    client.batch_execute("SET lock_timeout = 0").await.map_err(db_error)?;
    client.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK]).await.map_err(db_error)?;
    let layout = match migrate::run(&mut Migrations(&mut client), migrate::POSTGRES).await {
        Ok(()) => Layout::settle(&mut client).await,
        Err(error) => Err(error),
    };
    // Unlocking also happens when the session ends; an error here changes nothing. The
    // connection goes back to the pool with the router's lock wait.
    let _ = client.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK]).await;
    let _ = client.batch_execute("RESET lock_timeout").await;
    layout
}

/// The migration runner's view of a connection.
struct Migrations<'c>(&'c mut Object);

impl MigrationTarget for Migrations<'_> {
    async fn applied_versions(&mut self) -> StoreResult<BTreeSet<u32>> {
        self.0
            .batch_execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (
                    version INTEGER PRIMARY KEY,
                    applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
            )
            .await
            .map_err(db_error)?;
        let rows = self.0.query("SELECT version FROM schema_migrations", &[]).await.map_err(db_error)?;
        Ok(rows.iter().map(|row| row.get::<_, i32>(0) as u32).collect())
    }

    async fn apply(&mut self, migration: &Migration, applied_at: OffsetDateTime) -> Result<(), String> {
        let failed = |e: tokio_postgres::Error| describe(&e);
        let tx = self.0.transaction().await.map_err(failed)?;
        tx.batch_execute(migration.sql).await.map_err(failed)?;
        tx.execute(&SQL.insert_migration, &[&(migration.version as i32), &applied_at]).await.map_err(failed)?;
        tx.commit().await.map_err(failed)
    }
}

/// The partition upkeep's bound on waiting for a lock: attaching a partition locks the default
/// partition, dropping one locks `clicks`, each until its transaction ends, and while the request
/// waits behind a long report, the writer's next COPY waits behind it. Shorter than [`LOCK_WAIT`], so
/// that the upkeep gives up (and is tried again at its next run) before the writer would.
const UPKEEP_LOCK_WAIT: &str = "SET LOCAL lock_timeout = '500ms'";

/// Describes a PostgreSQL error with its server message, which `Display` alone leaves out.
fn describe(err: &tokio_postgres::Error) -> String {
    match err.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => err.to_string(),
    }
}

/// Errors that mean "not now" rather than "never": I/O and closed connections (no SQLSTATE), and the
/// server's own transient states: connection exceptions (08), serialization failure and deadlock
/// (40), insufficient resources such as too many connections (53), operator intervention such as
/// shutdown or start-up (57), system errors (58), a read-only transaction during failover (25006),
/// and a lock not had within `lock_timeout` (55P03: DDL such as a migration holds it). The writer
/// holds clicks through these; anything else is a query the server refuses.
fn db_error(err: tokio_postgres::Error) -> StoreError {
    match err.code().map(|code| code.code()) {
        None => StoreError::Unavailable(describe(&err)),
        Some(code) if is_transient(code) => StoreError::Unavailable(describe(&err)),
        Some(_) => StoreError::Query(describe(&err)),
    }
}

fn is_transient(sqlstate: &str) -> bool {
    ["08", "40", "53", "57", "58"].iter().any(|class| sqlstate.starts_with(class))
        || ["25006", "55P03"].contains(&sqlstate)
}

fn pool_error(err: PoolError) -> StoreError {
    match err {
        PoolError::Backend(e) => db_error(e),
        other => StoreError::Unavailable(other.to_string()),
    }
}

/// PostgreSQL's row under the shared mapping.
struct PgRow<'r>(&'r Row);

impl PgRow<'_> {
    fn get<'a, T: tokio_postgres::types::FromSql<'a>>(&'a self, index: usize) -> StoreResult<T> {
        self.0.try_get(index).map_err(|e| StoreError::Query(describe(&e)))
    }
}

impl Columns for PgRow<'_> {
    sql::decoded_columns!();

    fn time(&self, index: usize) -> StoreResult<OffsetDateTime> {
        self.get(index)
    }
    fn aliases(&self, index: usize) -> StoreResult<BTreeMap<String, EventKind>> {
        let Json(names): Json<BTreeMap<String, String>> = self.get(index)?;
        Ok(aliases_from_names(names))
    }
    fn opt_ip(&self, index: usize) -> StoreResult<Option<IpAddr>> {
        self.get(index)
    }
    fn targeting(&self, index: usize) -> StoreResult<Targeting> {
        let Json(targeting) = self.get(index)?;
        Ok(targeting)
    }
}

/// Maps every row with `map`.
fn map_rows<T>(rows: &[Row], map: impl Fn(&dyn Columns) -> StoreResult<T>) -> StoreResult<Vec<T>> {
    rows.iter().map(|row| map(&PgRow(row))).collect()
}

/// Maps the row, if there is one, with `map`.
fn map_row<T>(row: Option<&Row>, map: impl Fn(&dyn Columns) -> StoreResult<T>) -> StoreResult<Option<T>> {
    row.map(|row| map(&PgRow(row))).transpose()
}

fn aliases_json(aliases: &BTreeMap<String, EventKind>) -> Json<BTreeMap<&str, &'static str>> {
    Json(alias_names(aliases))
}

mod layout;
mod postback_batch;
use layout::Layout;
use postback_batch::PostbackBatcher;

async fn insert_log(client: &impl GenericClient, entry: &PostbackLogEntry) -> StoreResult<()> {
    let statement = prepared(client, &SQL.insert_log).await?;
    let outcome = entry.outcome.as_str();
    client.execute(&statement, &log_params(entry, &outcome)).await.map_err(db_error)?;
    Ok(())
}

/// A postback-log line's values, in [`sql::POSTBACK_LOG_COLUMNS`]' order (`outcome` is its outcome's
/// name).
fn log_params<'a>(entry: &'a PostbackLogEntry, outcome: &'a &'static str) -> [&'a (dyn ToSql + Sync); 11] {
    [
        &entry.received_at,
        &entry.offer_id,
        &entry.click_id,
        &entry.event,
        &entry.payout,
        &entry.currency,
        &entry.tid,
        outcome,
        &entry.reason,
        &entry.source_ip,
        &entry.ignored_fields,
    ]
}

/// `sql` prepared once per connection (deadpool keeps the statement): the postback path's statements
/// then cost one round trip each, not two, and PostgreSQL parses them once.
async fn prepared(client: &impl GenericClient, sql: &str) -> StoreResult<Statement> {
    client.prepare_cached(sql).await.map_err(db_error)
}

/// A transaction, for the shared rules' steps (`offers`, `conversions`, `weights`).
struct Tx<'t, 'c>(&'t Transaction<'c>);

impl RoutingVersion for Tx<'_, '_> {
    async fn bump_routing_version(&mut self) -> StoreResult<()> {
        self.0.execute(&SQL.bump_routing_version, &[]).await.map_err(db_error)?;
        Ok(())
    }
}

impl OfferTransaction for Tx<'_, '_> {
    async fn insert_offer(&mut self, offer: &NewOffer) -> StoreResult<Offer> {
        let sql = format!(
            "INSERT INTO offers ({}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING {}",
            sql::NEW_OFFER_COLUMNS,
            sql::OFFER_COLUMNS
        );
        let aliases = aliases_json(&offer.event_aliases);
        let targeting = Json(&offer.targeting);
        let (click_cap, ftd_cap) = (offer.daily_caps.clicks.map(cap_value), offer.daily_caps.ftds.map(cap_value));
        let params: [&(dyn ToSql + Sync); 9] = [
            &offer.name,
            &offer.casino_url,
            &offer.weight,
            &offer.postback_secret,
            &offer.active,
            &aliases,
            &targeting,
            &click_cap,
            &ftd_cap,
        ];
        let row = self.0.query_one(&sql, &params).await.map_err(db_error)?;
        sql::offer(&PgRow(&row))
    }

    async fn patch_offer(&mut self, id: i64, patch: &OfferPatch) -> StoreResult<Option<Offer>> {
        let aliases = patch.event_aliases.as_ref().map(aliases_json);
        let now = OffsetDateTime::now_utc();
        let targeting = patch.targeting.as_ref().map(Json);
        let (set_click_cap, click_cap) =
            (patch.daily_click_cap.is_some(), patch.daily_click_cap.flatten().map(cap_value));
        let (set_ftd_cap, ftd_cap) = (patch.daily_ftd_cap.is_some(), patch.daily_ftd_cap.flatten().map(cap_value));
        let params: [&(dyn ToSql + Sync); 13] = [
            &id,
            &patch.name,
            &patch.casino_url,
            &patch.weight,
            &patch.postback_secret,
            &patch.active,
            &aliases,
            &now,
            &targeting,
            &set_click_cap,
            &click_cap,
            &set_ftd_cap,
            &ftd_cap,
        ];
        let row = self.0.query_opt(&SQL.update_offer, &params).await.map_err(db_error)?;
        map_row(row.as_ref(), sql::offer)
    }

    async fn offer_exists(&mut self, id: i64) -> StoreResult<bool> {
        Ok(self.0.query_opt(&SQL.offer_exists, &[&id]).await.map_err(db_error)?.is_some())
    }

    async fn offer_has_clicks(&mut self, id: i64) -> StoreResult<bool> {
        Ok(self.0.query_opt(&SQL.offer_has_clicks, &[&id]).await.map_err(db_error)?.is_some())
    }

    async fn delete_offer(&mut self, id: i64) -> StoreResult<()> {
        self.0.execute(&SQL.delete_offer, &[&id]).await.map_err(db_error)?;
        Ok(())
    }
}

/// A cap as a `BIGINT` (caps are validated far below `i64::MAX`).
fn cap_value(cap: u64) -> i64 {
    i64::try_from(cap).unwrap_or(i64::MAX)
}

/// Whether a COPY failed on a duplicate key: 23505, or on Citus, which passes a shard's COPY error on
/// with its message but not its code, XX000 with PostgreSQL's message for it.
fn is_duplicate(error: &tokio_postgres::Error) -> bool {
    error.as_db_error().is_some_and(|db| {
        db.code() == &SqlState::UNIQUE_VIOLATION
            || (db.code() == &SqlState::INTERNAL_ERROR
                && db.message().starts_with("duplicate key value violates unique constraint"))
    })
}

/// Why a COPY of clicks failed.
#[derive(Debug)]
enum CopyError {
    /// The database's error (a duplicate id among them, for one).
    Db(tokio_postgres::Error),
    /// A value with no binary encoding. None of a click's types fails to encode, but the encoders'
    /// signatures allow it.
    Encode(String),
}

impl From<tokio_postgres::Error> for CopyError {
    fn from(error: tokio_postgres::Error) -> CopyError {
        CopyError::Db(error)
    }
}

/// Bytes of COPY data sent to the connection at a time.
const COPY_CHUNK: usize = 256 * 1024;

/// Copies `clicks` into `table` (inside the caller's transaction) in PostgreSQL's binary COPY
/// format. The rows are encoded here and sent 256 KiB at a time: tokio-postgres's
/// `BinaryCopyInWriter` sends every 4 KiB, a channel message (and often a wake-up of the connection
/// task) per 35 clicks.
async fn copy_clicks(tx: &Transaction<'_>, table: &str, clicks: &[ClickRecord]) -> Result<(), CopyError> {
    const FIELDS: i16 = 13;
    let mut sink = pin!(tx.copy_in(&format!("COPY {table} ({}) FROM STDIN BINARY", sql::CLICK_COLUMNS)).await?);
    let mut buf = BytesMut::with_capacity(COPY_CHUNK.min(19 + 128 * clicks.len()) + 128);
    buf.put_slice(b"PGCOPY\n\xff\r\n\0");
    buf.put_i32(0); // flags
    buf.put_i32(0); // header extension
    for click in clicks {
        buf.put_i16(FIELDS);
        put_field(&mut buf, &click.click_id, &Type::UUID)?;
        put_field(&mut buf, &click.offer_id, &Type::INT8)?;
        put_field(&mut buf, &click.created_at, &Type::TIMESTAMPTZ)?;
        put_field(&mut buf, &click.user_agent.as_deref(), &Type::TEXT)?;
        put_field(&mut buf, &click.ip_address, &Type::INET)?;
        put_field(&mut buf, &click.referrer.as_deref(), &Type::TEXT)?;
        put_field(&mut buf, &click.source.as_deref(), &Type::TEXT)?;
        put_field(&mut buf, &click.campaign.as_deref(), &Type::TEXT)?;
        put_field(&mut buf, &click.propensity, &Type::FLOAT8)?;
        put_field(&mut buf, &click.country.map(|country| country.as_str()), &Type::TEXT)?;
        put_field(&mut buf, &click.device.map(|device| device.as_str()), &Type::TEXT)?;
        put_field(&mut buf, &click.is_bot, &Type::BOOL)?;
        put_field(&mut buf, &click.is_fallback, &Type::BOOL)?;
        if buf.len() >= COPY_CHUNK {
            sink.as_mut().send(buf.split().freeze()).await?;
        }
    }
    buf.put_i16(-1); // trailer
    sink.as_mut().send(buf.freeze()).await?;
    sink.as_mut().finish().await?;
    Ok(())
}

/// One field of a binary COPY row: its length (-1 for NULL), then its binary value.
fn put_field(buf: &mut BytesMut, value: &(dyn ToSql + Sync), ty: &Type) -> Result<(), CopyError> {
    let at = buf.len();
    buf.put_i32(0);
    let encoded = value.to_sql_checked(ty, buf).map_err(|e| CopyError::Encode(e.to_string()))?;
    let length = match encoded {
        IsNull::Yes => -1,
        IsNull::No => i32::try_from(buf.len() - at - 4).map_err(|e| CopyError::Encode(e.to_string()))?,
    };
    buf[at..at + 4].copy_from_slice(&length.to_be_bytes());
    Ok(())
}

/// The fast path: every click of the batch is new. COPY into `clicks`, then the rollups from counts
/// made here, in one transaction; a click stored before fails the whole batch.
async fn copy_new_clicks(
    client: &mut Object,
    clicks: &[ClickRecord],
    segments: &SegmentRollup,
) -> Result<u64, CopyError> {
    let tx = client.transaction().await?;
    copy_clicks(&tx, "clicks", clicks).await?;
    add_rollup(&tx, &Rollup::of(clicks, segments)).await?;
    tx.commit().await?;
    Ok(clicks.len() as u64)
}

/// Adds `rollup` to both rollup tables, one statement each.
async fn add_rollup(tx: &Transaction<'_>, rollup: &Rollup<'_>) -> Result<(), tokio_postgres::Error> {
    if rollup.hourly.is_empty() {
        return Ok(());
    }
    let (mut offers, mut hours, mut clicks, mut bots) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (&(offer, hour), &(n, n_bots)) in &rollup.hourly {
        offers.push(offer);
        hours.push(hour as f64);
        clicks.push(n);
        bots.push(n_bots);
    }
    tx.execute(
        "INSERT INTO click_rollup_hourly (offer_id, hour, clicks, bots)
         SELECT offer_id, to_timestamp(hour), clicks, bots
         FROM unnest($1::int8[], $2::float8[], $3::int8[], $4::int8[]) AS t (offer_id, hour, clicks, bots)
         ON CONFLICT (offer_id, hour) DO UPDATE
         SET clicks = click_rollup_hourly.clicks + EXCLUDED.clicks, bots = click_rollup_hourly.bots + EXCLUDED.bots",
        &[&offers, &hours, &clicks, &bots],
    )
    .await?;
    let (mut offers, mut hours, mut dimensions, mut values, mut clicks, mut bots) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let rows: Vec<_> = rollup.dim_rows().collect();
    for ((offer, hour, dimension, value), (n, n_bots)) in &rows {
        offers.push(*offer);
        hours.push(*hour as f64);
        dimensions.push(*dimension);
        values.push(value.as_ref());
        clicks.push(*n);
        bots.push(*n_bots);
    }
    tx.execute(
        "INSERT INTO click_rollup_dims (offer_id, hour, dimension, value, clicks, bots)
         SELECT offer_id, to_timestamp(hour), dimension, value, clicks, bots
         FROM unnest($1::int8[], $2::float8[], $3::text[], $4::text[], $5::int8[], $6::int8[])
              AS t (offer_id, hour, dimension, value, clicks, bots)
         ON CONFLICT (dimension, hour, offer_id, value) DO UPDATE
         SET clicks = click_rollup_dims.clicks + EXCLUDED.clicks, bots = click_rollup_dims.bots + EXCLUDED.bots",
        &[&offers, &hours, &dimensions, &values, &clicks, &bots],
    )
    .await?;
    Ok(())
}

/// The path for a batch that may hold clicks stored before: COPY into a staging table, insert what
/// is new, roll up only that.
async fn copy_via_staging(
    client: &mut Object,
    clicks: &[ClickRecord],
    segments: &SegmentRollup,
) -> Result<u64, CopyError> {
    let tx = client.transaction().await?;
    tx.batch_execute(
        "SET LOCAL client_min_messages = warning;
         CREATE TEMP TABLE IF NOT EXISTS clicks_staging (LIKE clicks) ON COMMIT DELETE ROWS;",
    )
    .await?;
    copy_clicks(&tx, "clicks_staging", clicks).await?;
    let mut inserted: std::collections::HashSet<Uuid> = tx
        .query(
            "INSERT INTO clicks SELECT * FROM clicks_staging ON CONFLICT (click_id) DO NOTHING RETURNING click_id",
            &[],
        )
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    // Each inserted id counts once, even if the batch held it twice.
    let rollup = Rollup::of(clicks.iter().filter(|click| inserted.remove(&click.click_id)), segments);
    add_rollup(&tx, &rollup).await?;
    tx.commit().await?;
    Ok(rollup.clicks())
}

impl HoldTransaction for Tx<'_, '_> {
    async fn click_stored(&mut self, click_id: Uuid) -> StoreResult<bool> {
        let row = self.0.query_opt(&SQL.click_stored, &[&click_id]).await.map_err(db_error)?;
        Ok(row.is_some())
    }

    async fn held_counts(&mut self, offer_id: i64) -> StoreResult<(u64, u64)> {
        let row = self
            .0
            .query_one("SELECT count(*) FILTER (WHERE offer_id = $1), count(*) FROM held_postbacks", &[&offer_id])
            .await
            .map_err(db_error)?;
        Ok((row.get::<_, i64>(0) as u64, row.get::<_, i64>(1) as u64))
    }

    async fn insert_log_line(&mut self, entry: &PostbackLogEntry) -> StoreResult<i64> {
        let statement = prepared(self.0, &SQL.insert_log_returning_id).await?;
        let outcome = entry.outcome.as_str();
        let row = self.0.query_one(&statement, &log_params(entry, &outcome)).await.map_err(db_error)?;
        Ok(row.get(0))
    }

    async fn insert_held(&mut self, held: &HeldPostback, log: &PostbackLogEntry, log_id: i64) -> StoreResult<bool> {
        let inserted = self
            .0
            .query_opt(
                "INSERT INTO held_postbacks (click_id, offer_id, kind, repeat_key, amount, currency, tid,
                                             external_player_id, received_at, expires_at, log_id)
                 VALUES ($1, $2, $3, $4, $5::int8::numeric / 1000000, $6, $7, $8, $9, $10, $11)
                 ON CONFLICT (click_id, kind, repeat_key) DO NOTHING RETURNING id",
                &[
                    &held.click_id,
                    &held.offer_id,
                    &held.kind.as_str(),
                    &held.repeat_key(),
                    &held.payout.map(to_micro_units),
                    &held.currency,
                    &held.tid,
                    &held.external_player_id,
                    &log.received_at,
                    &held.expires_at,
                    &log_id,
                ],
            )
            .await
            .map_err(db_error)?;
        Ok(inserted.is_some())
    }

    async fn set_log_outcome(&mut self, log_id: i64, outcome: PostbackOutcome, reason: &str) -> StoreResult<()> {
        self.0.execute(&SQL.set_log_outcome, &[&log_id, &outcome.as_str(), &reason]).await.map_err(db_error)?;
        Ok(())
    }
}

impl WeightTransaction for Tx<'_, '_> {
    async fn active_offer_ids(&mut self) -> StoreResult<Vec<i64>> {
        let rows = self.0.query(&SQL.active_offer_ids, &[]).await.map_err(db_error)?;
        map_rows(&rows, |row| row.int(0))
    }

    async fn window(&mut self, offer_id: i64, last_n_clicks: u32) -> StoreResult<OfferWindow> {
        let last_n = i64::from(last_n_clicks);
        let row = self.0.query_one(&SQL.offer_window, &[&offer_id, &last_n]).await.map_err(db_error)?;
        sql::offer_window(offer_id, &PgRow(&row))
    }

    async fn save_weight(&mut self, run_at: OffsetDateTime, offer: &WeightedOffer) -> StoreResult<()> {
        let w = &offer.window;
        self.0.execute(&SQL.set_weight, &[&w.offer_id, &offer.weight]).await.map_err(db_error)?;
        self.0
            .execute(
                &SQL.insert_weight_history,
                &[&run_at, &w.offer_id, &(w.clicks as i64), &(w.ftds as i64), &w.revenue, &offer.ev, &offer.weight],
            )
            .await
            .map_err(db_error)?;
        Ok(())
    }
}

#[async_trait]
impl Store for PostgresStore {
    async fn ping(&self) -> StoreResult<()> {
        self.client().await?.execute("SELECT 1", &[]).await.map_err(db_error)?;
        Ok(())
    }

    async fn routing_version(&self) -> StoreResult<i64> {
        let row = self.client().await?.query_one(&SQL.routing_version, &[]).await.map_err(db_error)?;
        Ok(row.get(0))
    }

    async fn list_offers(&self, active_only: bool) -> StoreResult<Vec<Offer>> {
        let rows = self.client().await?.query(&SQL.list_offers, &[&active_only]).await.map_err(db_error)?;
        map_rows(&rows, sql::offer)
    }

    async fn get_offer(&self, id: i64) -> StoreResult<Option<Offer>> {
        let row = self.client().await?.query_opt(&SQL.get_offer, &[&id]).await.map_err(db_error)?;
        map_row(row.as_ref(), sql::offer)
    }

    async fn create_offer(&self, offer: &NewOffer) -> StoreResult<Offer> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db_error)?;
        let created = offers::create(&mut Tx(&tx), offer).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(created)
    }

    async fn update_offer(&self, id: i64, patch: &OfferPatch) -> StoreResult<Option<Offer>> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db_error)?;
        let updated = offers::update(&mut Tx(&tx), id, patch).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(updated)
    }

    async fn delete_offer(&self, id: i64) -> StoreResult<DeleteOutcome> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db_error)?;
        self.layout.before_offer_changes(&tx).await?;
        let outcome = offers::delete(&mut Tx(&tx), id).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(outcome)
    }

    async fn insert_clicks(&self, clicks: &[ClickRecord]) -> StoreResult<u64> {
        let mut client = self.client().await?;
        // Almost every batch is new: COPY it straight into `clicks`. A batch written before (a
        // retry after a lost commit acknowledgement, a journal replay) breaks the primary key, the
        // whole transaction rolls back, and the staging path skips the ids already stored.
        let copied = match copy_new_clicks(&mut client, clicks, &self.segments).await {
            Err(CopyError::Db(error)) if is_duplicate(&error) => {
                copy_via_staging(&mut client, clicks, &self.segments).await
            }
            result => result,
        };
        copied.map_err(|error| match error {
            CopyError::Db(error) => db_error(error),
            CopyError::Encode(reason) => StoreError::Query(format!("click not encodable for COPY: {reason}")),
        })
    }

    async fn click_owner(&self, click_id: Uuid) -> StoreResult<Option<ClickOwner>> {
        let client = self.client().await?;
        let statement = prepared(&client, &SQL.click_owner).await?;
        let row = client.query_opt(&statement, &[&click_id]).await.map_err(db_error)?;
        map_row(row.as_ref(), sql::click_owner)
    }

    async fn apply_conversion(
        &self,
        conversion: &Conversion,
        log: &PostbackLogEntry,
    ) -> StoreResult<ConversionOutcome> {
        self.postbacks.record(conversion, log).await
    }

    async fn log_postback(&self, entry: &PostbackLogEntry) -> StoreResult<()> {
        insert_log(&self.client().await?, entry).await
    }

    async fn hold_postback(
        &self,
        held: &HeldPostback,
        log: &PostbackLogEntry,
        limits: HoldLimits,
    ) -> StoreResult<HoldOutcome> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db_error)?;
        let outcome = held::hold(&mut Tx(&tx), held, log, limits).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(outcome)
    }

    async fn claim_held_postbacks(
        &self,
        now: OffsetDateTime,
        lease: Duration,
        limit: usize,
    ) -> StoreResult<Vec<ClaimedPostback>> {
        let client = self.client().await?;
        let until = now + lease;
        let claimed = client.query(&SQL.claim_held, &[&now, &until, &(limit as i64)]).await.map_err(db_error)?;
        let statement = prepared(&client, &SQL.claimed_held).await?;
        let mut postbacks = Vec::with_capacity(claimed.len());
        for id in claimed.iter().map(|row| row.get::<_, i64>(0)) {
            let rows = client.query(&statement, &[&id]).await.map_err(db_error)?;
            postbacks.extend(map_rows(&rows, sql::claimed_postback)?);
        }
        Ok(postbacks)
    }

    async fn release_held_postback(&self, claimed: &ClaimedPostback) -> StoreResult<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db_error)?;
        tx.execute(&SQL.delete_held, &[&claimed.id]).await.map_err(db_error)?;
        tx.execute(&SQL.delete_log_line, &[&claimed.log_id]).await.map_err(db_error)?;
        tx.commit().await.map_err(db_error)
    }

    async fn expire_held_postbacks(&self, now: OffsetDateTime) -> StoreResult<u64> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db_error)?;
        tx.execute(&SQL.expire_held_lines, &[&now, &EXPIRED_REASON]).await.map_err(db_error)?;
        let expired = tx.execute(&SQL.expire_held, &[&now]).await.map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        Ok(expired)
    }

    async fn postback_log(&self, query: &PostbackLogQuery) -> StoreResult<Vec<PostbackLogRow>> {
        let (select, params) = sql::postback_log_select(&sql::POSTGRES, query);
        let params: Vec<&(dyn ToSql + Sync)> = params
            .iter()
            .map(|param| match param {
                Param::Int(value) => value as &(dyn ToSql + Sync),
                Param::Text(text) => text,
                Param::Time(time) => time,
            })
            .collect();
        let rows = self.client().await?.query(&select, &params).await.map_err(db_error)?;
        map_rows(&rows, sql::postback_log_row)
    }

    async fn routing_evidence(&self, now: OffsetDateTime, horizon_hours: usize) -> StoreResult<RoutingEvidence> {
        let client = self.client().await?;
        let horizon = horizon_hours as f64;
        let (hour, hour_elapsed) = current_hour(now);
        // Clicks by hour, counted back from the current one.
        let clicks = client
            .query(
                "SELECT offer_id, round(extract(epoch FROM $1::timestamptz - hour) / 3600)::int8, clicks - bots
                 FROM click_rollup_hourly
                 WHERE hour > $1::timestamptz - make_interval(hours => $2::float8::int4) AND hour <= $1::timestamptz",
                &[&hour, &horizon],
            )
            .await
            .map_err(db_error)?;
        let ftds = client
            .query(
                "SELECT f.offer_id,
                        floor(extract(epoch FROM $1::timestamptz - f.click_at) / 3600)::int8 AS age,
                        greatest(floor(extract(epoch FROM f.ftd_timestamp - f.click_at) / 3600), 0)::int8 AS delay,
                        count(*), count(p.id),
                        COALESCE(sum(p.amount), 0)::float8, COALESCE(sum(p.amount * p.amount), 0)::float8
                 FROM ftd_events f LEFT JOIN payouts p ON p.click_id = f.click_id
                 WHERE f.voided_at IS NULL AND f.click_at > $1::timestamptz - make_interval(hours => $2::float8::int4)
                   AND f.click_at <= $1::timestamptz
                 GROUP BY 1, 2, 3",
                &[&now, &horizon],
            )
            .await
            .map_err(db_error)?;
        let segments = if self.segments.dims().is_none() {
            SegmentEvidence::default()
        } else {
            segment_evidence(&client, &self.segments, now, hour, horizon).await?
        };
        Ok(RoutingEvidence {
            hour_elapsed,
            segments,
            clicks: clicks
                .iter()
                .map(|row| (row.get(0), row.get::<_, i64>(1) as usize, row.get::<_, i64>(2) as u64))
                .collect(),
            ftds: ftds
                .iter()
                .map(|row| FtdBucket {
                    offer_id: row.get(0),
                    age_hours: row.get::<_, i64>(1) as usize,
                    delay_hours: row.get::<_, i64>(2) as usize,
                    ftds: row.get::<_, i64>(3) as u64,
                    payouts: row.get::<_, i64>(4) as u64,
                    payout_sum: row.get(5),
                    payout_sum_sq: row.get(6),
                })
                .collect(),
        })
    }

    async fn segment_stats(&self, range: TimeRange, grouping: Grouping) -> StoreResult<Vec<SegmentStats>> {
        let bounds = rollup_bounds(range);
        let (from, to, from_hour, to_hour) = bounds;
        let [first_from, first_to, last_from, last_to] = sql::edge_id_bounds(bounds);
        let queries = sql::SegmentQueries::new(&sql::POSTGRES, grouping);
        let client = self.client().await?;
        let mut tally = sql::SegmentTally::default();
        // The edge hours' queries (clicks, FTDs, deposits) take the same eight parameters.
        let edge_params: [&(dyn ToSql + Sync); 8] =
            [&from, &to, &from_hour, &to_hour, &first_from, &first_to, &last_from, &last_to];
        let rollup = client.query(&queries.rollup_clicks, &[&from_hour, &to_hour]).await.map_err(db_error)?;
        let edges = client.query(&queries.edge_clicks, &edge_params).await.map_err(db_error)?;
        for row in rollup.iter().chain(&edges) {
            tally.add_clicks(grouping, &PgRow(row))?;
        }
        for row in client.query(&queries.rollup_events, &[&from_hour, &to_hour]).await.map_err(db_error)? {
            tally.add_events(grouping, &PgRow(&row))?;
        }
        for sql in [&queries.ftds, &queries.deposits] {
            for row in client.query(sql, &edge_params).await.map_err(db_error)? {
                tally.add_events(grouping, &PgRow(&row))?;
            }
        }
        Ok(tally.into_rows())
    }

    async fn daily_totals(&self, day_start: OffsetDateTime) -> StoreResult<Vec<DailyTotal>> {
        let client = self.client().await?;
        let clicks = client.query(&SQL.daily_clicks, &[&day_start]).await.map_err(db_error)?;
        let ftds = client.query(&SQL.daily_ftds, &[&day_start]).await.map_err(db_error)?;
        Ok(sql::daily_totals(map_rows(&clicks, sql::offer_count)?, map_rows(&ftds, sql::offer_count)?))
    }

    async fn offer_stats(&self, range: TimeRange) -> StoreResult<Vec<OfferStats>> {
        let bounds = rollup_bounds(range);
        let (from, to, from_hour, to_hour) = bounds;
        let [first_from, first_to, last_from, last_to] = sql::edge_id_bounds(bounds);
        let params: [&(dyn ToSql + Sync); 8] =
            [&from, &to, &from_hour, &to_hour, &first_from, &first_to, &last_from, &last_to];
        let rows = self.client().await?.query(&SQL.offer_stats, &params).await.map_err(db_error)?;
        map_rows(&rows, sql::offer_stats)
    }

    async fn hourly_figures(&self, from: OffsetDateTime, to: OffsetDateTime) -> StoreResult<Vec<HourlyFigures>> {
        let client = self.client().await?;
        let range: [&(dyn ToSql + Sync); 2] = [&from, &to];
        let (clicks, events) =
            tokio::try_join!(client.query(&SQL.hourly_clicks, &range), client.query(&SQL.hourly_events, &range))
                .map_err(db_error)?;
        let mut parts = map_rows(&clicks, sql::hourly_clicks)?;
        parts.extend(map_rows(&events, sql::hourly_events)?);
        Ok(sql::merge_hourly(parts))
    }

    async fn latest_clicks(&self, limit: u32) -> StoreResult<Vec<ClickSummary>> {
        let rows = self.client().await?.query(&SQL.latest_clicks, &[&i64::from(limit)]).await.map_err(db_error)?;
        map_rows(&rows, sql::click_summary)
    }

    async fn record_routing(&self, shares: &[RoutingShare]) -> StoreResult<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db_error)?;
        for share in shares {
            tx.execute(
                &SQL.record_routing,
                &[&share.slot, &share.offer_id, &share.traffic_share, &share.epc_mean, &share.probability_best],
            )
            .await
            .map_err(db_error)?;
        }
        tx.commit().await.map_err(db_error)
    }

    async fn routing_history(&self, from: OffsetDateTime, to: OffsetDateTime) -> StoreResult<Vec<RoutingShare>> {
        let rows = self.client().await?.query(&SQL.routing_history, &[&from, &to]).await.map_err(db_error)?;
        map_rows(&rows, sql::routing_share)
    }

    async fn create_session(&self, session: &DashboardSession) -> StoreResult<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db_error)?;
        tx.execute(&SQL.delete_expired_sessions, &[&session.created_at]).await.map_err(db_error)?;
        tx.execute(
            &SQL.insert_session,
            &[&session.id_hash, &session.csrf_token, &session.created_at, &session.expires_at],
        )
        .await
        .map_err(db_error)?;
        tx.commit().await.map_err(db_error)
    }

    async fn find_session(&self, id_hash: &str, now: OffsetDateTime) -> StoreResult<Option<DashboardSession>> {
        let row = self.client().await?.query_opt(&SQL.find_session, &[&id_hash, &now]).await.map_err(db_error)?;
        map_row(row.as_ref(), sql::dashboard_session)
    }

    async fn delete_session(&self, id_hash: &str) -> StoreResult<()> {
        self.client().await?.execute(&SQL.delete_session, &[&id_hash]).await.map_err(db_error)?;
        Ok(())
    }

    async fn maintain_clicks(&self, upkeep: ClickUpkeep) -> StoreResult<ClickUpkeepDone> {
        let mut client = self.client().await?;
        let mut done = ClickUpkeepDone::default();
        let days = i32::try_from(upkeep.partition_days).unwrap_or(i32::MAX);
        let tx = client.transaction().await.map_err(db_error)?;
        tx.batch_execute(UPKEEP_LOCK_WAIT).await.map_err(db_error)?;
        let row = tx
            .query_one(
                "SELECT click_partitions.extend($1, $2, $3)",
                &[&upkeep.now, &(upkeep.now + upkeep.ahead()), &days],
            )
            .await
            .map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        done.partitions_created = row.get::<_, i32>(0).max(0) as u32;
        if let Some(cutoff) = upkeep.cutoff() {
            let tx = client.transaction().await.map_err(db_error)?;
            tx.batch_execute(UPKEEP_LOCK_WAIT).await.map_err(db_error)?;
            let rows = tx.query("SELECT click_partitions.drop_before($1)", &[&cutoff]).await.map_err(db_error)?;
            tx.commit().await.map_err(db_error)?;
            done.partitions_dropped = rows.iter().map(|row| row.get(0)).collect();
        }
        Ok(done)
    }

    async fn recalculate_weights(
        &self,
        last_n_clicks: u32,
        policy: &WeightPolicy,
    ) -> StoreResult<Option<Vec<WeightedOffer>>> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db_error)?;
        self.layout.before_offer_changes(&tx).await?;
        let locked: bool =
            tx.query_one("SELECT pg_try_advisory_xact_lock($1)", &[&RECALC_LOCK]).await.map_err(db_error)?.get(0);
        if !locked {
            return Ok(None);
        }
        let weighted = weights::recalculate(&mut Tx(&tx), last_n_clicks, policy).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(Some(weighted))
    }
}

/// The segment part of the routing evidence (see `store::segments`): clicks from the segment
/// rollup, FTDs joined to their clicks' traits, both from the rollup's start.
async fn segment_evidence(
    client: &Object,
    segments: &SegmentRollup,
    now: OffsetDateTime,
    hour: OffsetDateTime,
    horizon: f64,
) -> StoreResult<SegmentEvidence> {
    let dimension = segments.dimension();
    let clicks = client
        .query(
            "SELECT offer_id, round(extract(epoch FROM $1::timestamptz - hour) / 3600)::int8, value, clicks - bots
             FROM click_rollup_dims
             WHERE dimension = $3 AND hour > $1::timestamptz - make_interval(hours => $2::float8::int4)
               AND hour <= $1::timestamptz
               AND hour > (SELECT since FROM segment_rollups WHERE dimension = $3) - interval '1 hour'",
            &[&hour, &horizon, &dimension],
        )
        .await
        .map_err(db_error)?;
    let ftds = client
        .query(
            "SELECT f.offer_id, floor(extract(epoch FROM $1::timestamptz - f.click_at) / 3600)::int8,
                    COALESCE(c.country, ''), COALESCE(c.device, ''), CASE WHEN $4 THEN COALESCE(c.source, '') ELSE '' END,
                    count(*), count(p.id), COALESCE(sum(p.amount), 0)::float8
             FROM ftd_events f JOIN clicks c ON c.click_id = f.click_id
                  LEFT JOIN payouts p ON p.click_id = f.click_id
             WHERE f.voided_at IS NULL AND f.click_at > $1::timestamptz - make_interval(hours => $2::float8::int4)
               AND f.click_at <= $1::timestamptz
               AND f.click_at >= (SELECT since FROM segment_rollups WHERE dimension = $3)
             GROUP BY 1, 2, 3, 4, 5",
            &[&now, &horizon, &dimension, &segments.dims().source],
        )
        .await
        .map_err(db_error)?;
    Ok(SegmentEvidence {
        clicks: clicks
            .iter()
            .filter_map(|row| {
                let segment = segments.decode(row.get(2))?;
                Some((row.get(0), row.get::<_, i64>(1) as usize, segment, row.get::<_, i64>(3) as u64))
            })
            .collect(),
        ftds: ftds
            .iter()
            .filter_map(|row| {
                Some(SegmentFtds {
                    offer_id: row.get(0),
                    age_hours: row.get::<_, i64>(1) as usize,
                    segment: segments.key(row.get(2), row.get(3), row.get(4))?,
                    ftds: row.get::<_, i64>(5) as u64,
                    payouts: row.get::<_, i64>(6) as u64,
                    payout_sum: row.get(7),
                })
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn opening_a_server_that_does_not_listen_names_it_and_the_cause() {
        // A port just released by this process: nothing listens there.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let url = format!("postgres://postgres@127.0.0.1:{port}/casino");
        let Err(error) = PostgresStore::open(&url, 2, SegmentDims::DEFAULT).await else {
            panic!("nothing listens on {port}")
        };
        assert!(matches!(error, StoreError::Unavailable(_)), "{error:?}");
        let expected = format!("database unavailable at 127.0.0.1:{port}: connection refused");
        assert!(error.to_string().starts_with(&expected), "{error} does not start with {expected}");
    }

    #[test]
    fn transient_sqlstates_are_told_from_refusals() {
        for code in ["08006", "40001", "40P01", "53300", "57P01", "57P03", "58030", "25006"] {
            assert!(is_transient(code), "{code}");
        }
        for code in ["23505", "22P02", "42P01", "25001"] {
            assert!(!is_transient(code), "{code}");
        }
    }
}

//! The PostgreSQL store: production, and safe for several router instances on one database.
//!
//! Clicks arrive in batches from the writer and go in by binary COPY straight into `clicks`, with the
//! hourly click rollup bumped in the same transaction. A batch holding a click stored before (retried
//! after a lost commit acknowledgement, replayed from the journal) breaks the primary key and rolls
//! back whole; that batch then goes through a session-local staging table and
//! `INSERT .. SELECT .. ON CONFLICT DO NOTHING`, with the rollup from the rows actually inserted, so
//! nothing is stored or counted twice. Postback statements are prepared once per connection, and
//! concurrent FTD postbacks are committed together (`ftd_batch`).
//! Recalculations take a transaction-scoped advisory lock, so one instance recalculates at a time;
//! migrations take a session advisory lock for the same reason.

use std::collections::BTreeMap;
use std::pin::pin;
use std::time::Duration;

use async_trait::async_trait;
use bytes::{BufMut, BytesMut};
use deadpool_postgres::{
    GenericClient, Manager, ManagerConfig, Object, Pool, PoolError, QueueMode, RecyclingMethod, Runtime, Transaction,
};
use futures_util::SinkExt;
use time::OffsetDateTime;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{IsNull, Json, ToSql, Type};
use tokio_postgres::{NoTls, Row, Statement};
use uuid::Uuid;

use super::{
    ClickOwner, ClickRecord, Conversion, ConversionOutcome, DeleteOutcome, FtdBucket, NewOffer, Offer, OfferPatch,
    OfferStats, PostbackLogEntry, PostbackLogQuery, PostbackLogRow, PostbackOutcome, RoutingEvidence, Store,
    StoreError, StoreResult, TimeRange, rollup_bounds,
};
use crate::conversion::{EventKind, alias_names, aliases_from_names, to_micro_units};
use crate::routing::{OfferWindow, WeightPolicy, WeightedOffer};

/// Ordered migrations; each runs once, tracked in `schema_migrations`.
const MIGRATIONS: &[(u32, &str)] = &[(1, include_str!("../../sql/postgres/0001_initial.sql"))];

/// Advisory lock keys (arbitrary constants, unique to this application).
const MIGRATION_LOCK: i64 = 0x6361_7369_6e6f_0001;
const RECALC_LOCK: i64 = 0x6361_7369_6e6f_0002;

const OFFER_COLUMNS: &str = "id, name, casino_url, weight, postback_secret, active, event_aliases, created_at";

/// A pool of connections to one PostgreSQL database.
#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
    ftds: FtdBatcher,
}

impl PostgresStore {
    /// Connects to `url` with a pool of `pool_size` and applies pending migrations.
    pub async fn open(url: &str, pool_size: usize) -> StoreResult<PostgresStore> {
        let mut pg_config: tokio_postgres::Config =
            url.parse().map_err(|e| StoreError::Unavailable(format!("invalid DATABASE_URL: {e}")))?;
        pg_config.connect_timeout(Duration::from_secs(5));
        pg_config.application_name("casino-router");
        let manager = Manager::from_config(pg_config, NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
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
        let store = PostgresStore { ftds: FtdBatcher::start(pool.clone()), pool };
        store.migrate().await?;
        Ok(store)
    }

    async fn client(&self) -> StoreResult<Object> {
        self.pool.get().await.map_err(pool_error)
    }

    async fn migrate(&self) -> StoreResult<()> {
        let mut client = self.client().await?;
        client.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK]).await.map_err(db_error)?;
        let result = apply_migrations(&mut client).await;
        // Unlocking also happens when the session ends; an error here changes nothing.
        let _ = client.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK]).await;
        result
    }
}

async fn apply_migrations(client: &mut Object) -> StoreResult<()> {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                version INTEGER PRIMARY KEY,
                applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
        )
        .await
        .map_err(db_error)?;
    for &(version, sql) in MIGRATIONS {
        let as_i32 = version as i32;
        let applied = client
            .query_opt("SELECT 1 FROM schema_migrations WHERE version = $1", &[&as_i32])
            .await
            .map_err(db_error)?
            .is_some();
        if applied {
            continue;
        }
        let failed = |e: tokio_postgres::Error| StoreError::Migration { version, reason: describe(&e) };
        let tx = client.transaction().await.map_err(failed)?;
        tx.batch_execute(sql).await.map_err(failed)?;
        tx.execute("INSERT INTO schema_migrations (version) VALUES ($1)", &[&as_i32]).await.map_err(failed)?;
        tx.commit().await.map_err(failed)?;
        tracing::info!(version, "applied migration");
    }
    Ok(())
}

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
/// shutdown or start-up (57), system errors (58), and a read-only transaction during failover
/// (25006). The writer holds clicks through these; anything else is a query the server refuses.
fn db_error(err: tokio_postgres::Error) -> StoreError {
    match err.code().map(|code| code.code()) {
        None => StoreError::Unavailable(describe(&err)),
        Some(code) if is_transient(code) => StoreError::Unavailable(describe(&err)),
        Some(_) => StoreError::Query(describe(&err)),
    }
}

fn is_transient(sqlstate: &str) -> bool {
    ["08", "40", "53", "57", "58"].iter().any(|class| sqlstate.starts_with(class)) || sqlstate == "25006"
}

fn pool_error(err: PoolError) -> StoreError {
    match err {
        PoolError::Backend(e) => db_error(e),
        other => StoreError::Unavailable(other.to_string()),
    }
}

fn offer_from_row(row: &Row) -> Offer {
    let Json(aliases): Json<BTreeMap<String, String>> = row.get("event_aliases");
    Offer {
        id: row.get("id"),
        name: row.get("name"),
        casino_url: row.get("casino_url"),
        weight: row.get("weight"),
        postback_secret: row.get("postback_secret"),
        active: row.get("active"),
        event_aliases: aliases_from_names(aliases),
        created_at: row.get("created_at"),
    }
}

fn aliases_json(aliases: &BTreeMap<String, EventKind>) -> Json<BTreeMap<&str, &'static str>> {
    Json(alias_names(aliases))
}

async fn bump_routing_version(client: &impl GenericClient) -> StoreResult<()> {
    client.execute("UPDATE routing_state SET version = version + 1", &[]).await.map_err(db_error)?;
    Ok(())
}

/// The postback log's columns in the order both of its inserts give them (`insert_log` and
/// the FTD batch in `ftd_batch`): a macro so that the statements stay literals, prepared once per
/// connection.
macro_rules! postback_log_columns {
    () => {
        "received_at, offer_id, click_id, event, payout, currency, tid, outcome, reason, source_ip"
    };
}

mod ftd_batch;
use ftd_batch::FtdBatcher;

async fn insert_log(client: &impl GenericClient, entry: &PostbackLogEntry) -> StoreResult<()> {
    let statement = prepared(
        client,
        concat!(
            "INSERT INTO postback_log (",
            postback_log_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        ),
    )
    .await?;
    client
        .execute(
            &statement,
            &[
                &entry.received_at,
                &entry.offer_id,
                &entry.click_id,
                &entry.event,
                &entry.payout,
                &entry.currency,
                &entry.tid,
                &entry.outcome.as_str(),
                &entry.reason,
                &entry.source_ip,
            ],
        )
        .await
        .map_err(db_error)?;
    Ok(())
}

/// `sql` prepared once per connection (deadpool keeps the statement): the postback path's statements
/// then cost one round trip each, not two, and PostgreSQL parses them once.
async fn prepared(client: &impl GenericClient, sql: &str) -> StoreResult<Statement> {
    client.prepare_cached(sql).await.map_err(db_error)
}

/// Whether an `INSERT .. ON CONFLICT DO NOTHING RETURNING` inserted its row.
fn inserted(row: Option<Row>) -> ConversionOutcome {
    if row.is_some() { ConversionOutcome::Recorded } else { ConversionOutcome::Duplicate }
}

/// Applies a payout, registration, deposit or rejection, inside the caller's transaction.
async fn apply(client: &impl GenericClient, c: &Conversion) -> StoreResult<ConversionOutcome> {
    let outcome = match c.kind {
        EventKind::Ftd => unreachable!("apply_conversion records FTDs through ftd_batch"),
        EventKind::Payout => {
            let ftd = client
                .query_opt("SELECT id FROM ftd_events WHERE click_id = $1 FOR UPDATE", &[&c.click_id])
                .await
                .map_err(db_error)?;
            match (ftd, c.payout) {
                (Some(ftd), Some(payout)) => insert_payout(client, ftd.get(0), payout, &c.currency).await?,
                _ => ConversionOutcome::NoFtd,
            }
        }
        EventKind::Reg => inserted(
            client
                .query_opt(
                    "INSERT INTO registrations (click_id, offer_id, click_at, external_player_id)
                     VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING id",
                    &[&c.click_id, &c.offer_id, &c.clicked_at, &c.external_player_id],
                )
                .await
                .map_err(db_error)?,
        ),
        EventKind::Deposit => inserted(
            client
                .query_opt(
                    "INSERT INTO deposits (click_id, offer_id, click_at, tid, amount, currency)
                     VALUES ($1, $2, $3, $4, $5::int8::numeric / 1000000, $6) ON CONFLICT DO NOTHING RETURNING id",
                    &[&c.click_id, &c.offer_id, &c.clicked_at, &c.tid, &c.payout.map(to_micro_units), &c.currency],
                )
                .await
                .map_err(db_error)?,
        ),
        EventKind::Rejected => {
            let voided = client
                .query_opt(
                    "UPDATE ftd_events SET voided_at = now() WHERE click_id = $1 AND voided_at IS NULL RETURNING id",
                    &[&c.click_id],
                )
                .await
                .map_err(db_error)?;
            if voided.is_some() {
                ConversionOutcome::Recorded
            } else {
                let exists = client
                    .query_opt("SELECT 1 FROM ftd_events WHERE click_id = $1", &[&c.click_id])
                    .await
                    .map_err(db_error)?;
                if exists.is_some() { ConversionOutcome::Duplicate } else { ConversionOutcome::NoFtd }
            }
        }
    };
    Ok(outcome)
}

async fn insert_payout(
    client: &impl GenericClient,
    ftd_id: i64,
    amount: f64,
    currency: &str,
) -> StoreResult<ConversionOutcome> {
    let statement = prepared(
        client,
        "INSERT INTO payouts (ftd_event_id, amount, currency) VALUES ($1, $2::int8::numeric / 1000000, $3)
         ON CONFLICT (ftd_event_id) DO NOTHING RETURNING id",
    )
    .await?;
    let row = client.query_opt(&statement, &[&ftd_id, &to_micro_units(amount), &currency]).await.map_err(db_error)?;
    Ok(inserted(row))
}

/// Column order of every click COPY.
const CLICK_COLUMNS: &str =
    "click_id, offer_id, created_at, user_agent, ip_address, referrer, source, campaign, propensity";

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
    const FIELDS: i16 = 9;
    let mut sink = pin!(tx.copy_in(&format!("COPY {table} ({CLICK_COLUMNS}) FROM STDIN BINARY")).await?);
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

/// The fast path: every click of the batch is new. COPY into `clicks`, then the hourly rollup from
/// counts made here, in one transaction; a click stored before fails the whole batch.
async fn copy_new_clicks(client: &mut Object, clicks: &[ClickRecord]) -> Result<u64, CopyError> {
    let mut per_hour: BTreeMap<(i64, i64), i64> = BTreeMap::new();
    for click in clicks {
        let timestamp = click.created_at.unix_timestamp();
        *per_hour.entry((click.offer_id, timestamp - timestamp.rem_euclid(3600))).or_default() += 1;
    }
    let (mut offers, mut hours, mut counts) = (Vec::new(), Vec::new(), Vec::new());
    for ((offer, hour), count) in per_hour {
        offers.push(offer);
        hours.push(hour as f64);
        counts.push(count);
    }
    let tx = client.transaction().await?;
    copy_clicks(&tx, "clicks", clicks).await?;
    tx.execute(
        "INSERT INTO click_rollup_hourly (offer_id, hour, clicks)
         SELECT offer_id, to_timestamp(hour), clicks FROM unnest($1::int8[], $2::float8[], $3::int8[]) AS t (offer_id, hour, clicks)
         ON CONFLICT (offer_id, hour) DO UPDATE SET clicks = click_rollup_hourly.clicks + EXCLUDED.clicks",
        &[&offers, &hours, &counts],
    )
    .await?;
    tx.commit().await?;
    Ok(clicks.len() as u64)
}

/// The path for a batch that may hold clicks stored before: COPY into a staging table, insert what
/// is new, roll up only that.
async fn copy_via_staging(client: &mut Object, clicks: &[ClickRecord]) -> Result<u64, CopyError> {
    let tx = client.transaction().await?;
    tx.batch_execute(
        "SET LOCAL client_min_messages = warning;
         CREATE TEMP TABLE IF NOT EXISTS clicks_staging (LIKE clicks) ON COMMIT DELETE ROWS;",
    )
    .await?;
    copy_clicks(&tx, "clicks_staging", clicks).await?;
    let row = tx
        .query_one(
            "WITH inserted AS (
                INSERT INTO clicks SELECT * FROM clicks_staging
                ON CONFLICT (click_id) DO NOTHING
                RETURNING offer_id, created_at
             ), rolled AS (
                INSERT INTO click_rollup_hourly (offer_id, hour, clicks)
                SELECT offer_id, date_trunc('hour', created_at, 'UTC'), count(*) FROM inserted GROUP BY 1, 2
                ON CONFLICT (offer_id, hour) DO UPDATE SET clicks = click_rollup_hourly.clicks + EXCLUDED.clicks
             )
             SELECT count(*) FROM inserted",
            &[],
        )
        .await?;
    tx.commit().await?;
    Ok(row.get::<_, i64>(0) as u64)
}

#[async_trait]
impl Store for PostgresStore {
    async fn ping(&self) -> StoreResult<()> {
        self.client().await?.execute("SELECT 1", &[]).await.map_err(db_error)?;
        Ok(())
    }

    async fn routing_version(&self) -> StoreResult<i64> {
        let row = self.client().await?.query_one("SELECT version FROM routing_state", &[]).await.map_err(db_error)?;
        Ok(row.get(0))
    }

    async fn list_offers(&self, active_only: bool) -> StoreResult<Vec<Offer>> {
        let sql = format!("SELECT {OFFER_COLUMNS} FROM offers WHERE active OR NOT $1 ORDER BY id");
        let rows = self.client().await?.query(&sql, &[&active_only]).await.map_err(db_error)?;
        Ok(rows.iter().map(offer_from_row).collect())
    }

    async fn get_offer(&self, id: i64) -> StoreResult<Option<Offer>> {
        let sql = format!("SELECT {OFFER_COLUMNS} FROM offers WHERE id = $1");
        let row = self.client().await?.query_opt(&sql, &[&id]).await.map_err(db_error)?;
        Ok(row.as_ref().map(offer_from_row))
    }

    async fn create_offer(&self, offer: &NewOffer) -> StoreResult<Offer> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db_error)?;
        let sql = format!(
            "INSERT INTO offers (name, casino_url, weight, postback_secret, active, event_aliases)
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING {OFFER_COLUMNS}"
        );
        let row = tx
            .query_one(
                &sql,
                &[
                    &offer.name,
                    &offer.casino_url,
                    &offer.weight,
                    &offer.postback_secret,
                    &offer.active,
                    &aliases_json(&offer.event_aliases),
                ],
            )
            .await
            .map_err(db_error)?;
        bump_routing_version(&tx).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(offer_from_row(&row))
    }

    async fn update_offer(&self, id: i64, patch: &OfferPatch) -> StoreResult<Option<Offer>> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db_error)?;
        let sql = format!(
            "UPDATE offers SET
                name = COALESCE($2, name),
                casino_url = COALESCE($3, casino_url),
                weight = COALESCE($4, weight),
                postback_secret = COALESCE($5, postback_secret),
                active = COALESCE($6, active),
                event_aliases = COALESCE($7, event_aliases),
                updated_at = now()
             WHERE id = $1 RETURNING {OFFER_COLUMNS}"
        );
        let aliases = patch.event_aliases.as_ref().map(aliases_json);
        let row = tx
            .query_opt(
                &sql,
                &[&id, &patch.name, &patch.casino_url, &patch.weight, &patch.postback_secret, &patch.active, &aliases],
            )
            .await
            .map_err(db_error)?;
        if row.is_some() {
            bump_routing_version(&tx).await?;
        }
        tx.commit().await.map_err(db_error)?;
        Ok(row.as_ref().map(offer_from_row))
    }

    async fn delete_offer(&self, id: i64) -> StoreResult<DeleteOutcome> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db_error)?;
        let exists = tx.query_opt("SELECT 1 FROM offers WHERE id = $1 FOR UPDATE", &[&id]).await.map_err(db_error)?;
        if exists.is_none() {
            return Ok(DeleteOutcome::NotFound);
        }
        let has_clicks =
            tx.query_opt("SELECT 1 FROM clicks WHERE offer_id = $1 LIMIT 1", &[&id]).await.map_err(db_error)?;
        if has_clicks.is_some() {
            return Ok(DeleteOutcome::HasClicks);
        }
        tx.execute("DELETE FROM offers WHERE id = $1", &[&id]).await.map_err(db_error)?;
        bump_routing_version(&tx).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(DeleteOutcome::Deleted)
    }

    async fn insert_clicks(&self, clicks: &[ClickRecord]) -> StoreResult<u64> {
        let mut client = self.client().await?;
        // Almost every batch is new: COPY it straight into `clicks`. A batch written before (a
        // retry after a lost commit acknowledgement, a journal replay) breaks the primary key, the
        // whole transaction rolls back, and the staging path skips the ids already stored.
        let copied = match copy_new_clicks(&mut client, clicks).await {
            Err(CopyError::Db(error)) if error.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
                copy_via_staging(&mut client, clicks).await
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
        let statement = prepared(
            &client,
            "SELECT c.offer_id, c.created_at, o.postback_secret, o.event_aliases
             FROM clicks c JOIN offers o ON o.id = c.offer_id WHERE c.click_id = $1",
        )
        .await?;
        let row = client.query_opt(&statement, &[&click_id]).await.map_err(db_error)?;
        Ok(row.map(|row| {
            let Json(aliases): Json<BTreeMap<String, String>> = row.get("event_aliases");
            ClickOwner {
                offer_id: row.get("offer_id"),
                postback_secret: row.get("postback_secret"),
                event_aliases: aliases_from_names(aliases),
                clicked_at: row.get("created_at"),
            }
        }))
    }

    async fn apply_conversion(
        &self,
        conversion: &Conversion,
        log: &PostbackLogEntry,
    ) -> StoreResult<ConversionOutcome> {
        if conversion.kind == EventKind::Ftd {
            return self.ftds.record(conversion, log).await;
        }
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db_error)?;
        let outcome = apply(&tx, conversion).await?;
        insert_log(&tx, &log.concluded(conversion.kind, outcome)).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(outcome)
    }

    async fn log_postback(&self, entry: &PostbackLogEntry) -> StoreResult<()> {
        insert_log(&self.client().await?, entry).await
    }

    async fn postback_log(&self, query: &PostbackLogQuery) -> StoreResult<Vec<PostbackLogRow>> {
        let outcome = query.outcome.map(PostbackOutcome::as_str);
        let limit = i64::from(query.limit);
        let rows = self
            .client()
            .await?
            .query(
                "SELECT id, received_at, offer_id, click_id, event, payout, currency, tid, outcome, reason, source_ip
                 FROM postback_log
                 WHERE ($1::bigint IS NULL OR offer_id = $1)
                   AND ($2::text IS NULL OR outcome = $2)
                   AND ($3::timestamptz IS NULL OR received_at >= $3)
                   AND ($4::timestamptz IS NULL OR received_at < $4)
                   AND ($5::bigint IS NULL OR id < $5)
                 ORDER BY id DESC LIMIT $6",
                &[&query.offer_id, &outcome, &query.from, &query.to, &query.before_id, &limit],
            )
            .await
            .map_err(db_error)?;
        Ok(rows
            .iter()
            .map(|row| PostbackLogRow {
                id: row.get("id"),
                entry: PostbackLogEntry {
                    received_at: row.get("received_at"),
                    offer_id: row.get("offer_id"),
                    click_id: row.get("click_id"),
                    event: row.get("event"),
                    payout: row.get("payout"),
                    currency: row.get("currency"),
                    tid: row.get("tid"),
                    outcome: PostbackOutcome::parse(row.get("outcome")).unwrap_or(PostbackOutcome::Invalid),
                    reason: row.get("reason"),
                    source_ip: row.get("source_ip"),
                },
            })
            .collect())
    }

    async fn routing_evidence(&self, now: OffsetDateTime, horizon_hours: usize) -> StoreResult<RoutingEvidence> {
        let client = self.client().await?;
        let horizon = horizon_hours as f64;
        // A rollup hour's clicks are, on average, half an hour younger than its start.
        let clicks = client
            .query(
                "SELECT offer_id, greatest(floor(extract(epoch FROM $1::timestamptz - hour) / 3600 - 0.5), 0)::int8, clicks
                 FROM click_rollup_hourly
                 WHERE hour > $1::timestamptz - make_interval(hours => $2::float8::int4) AND hour <= $1::timestamptz",
                &[&now, &horizon],
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
                 FROM ftd_events f LEFT JOIN payouts p ON p.ftd_event_id = f.id
                 WHERE f.voided_at IS NULL AND f.click_at > $1::timestamptz - make_interval(hours => $2::float8::int4)
                   AND f.click_at <= $1::timestamptz
                 GROUP BY 1, 2, 3",
                &[&now, &horizon],
            )
            .await
            .map_err(db_error)?;
        Ok(RoutingEvidence {
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

    async fn offer_stats(&self, range: TimeRange) -> StoreResult<Vec<OfferStats>> {
        let (from, to, from_hour, to_hour) = rollup_bounds(range);
        let rows = self
            .client()
            .await?
            .query(
                // Clicks: whole hours from the rollup, the partial edge hours from raw clicks. Events:
                // one grouped pass each, joined to the offers (not one correlated scan per offer).
                "WITH ftd_totals AS (
                    SELECT f.offer_id, count(*) AS ftds, COALESCE(sum(p.amount), 0) AS revenue
                    FROM ftd_events f LEFT JOIN payouts p ON p.ftd_event_id = f.id
                    WHERE f.voided_at IS NULL AND f.click_at >= $1 AND f.click_at < $2
                    GROUP BY f.offer_id
                 ), deposit_totals AS (
                    SELECT offer_id, sum(amount) AS revenue FROM deposits
                    WHERE click_at >= $1 AND click_at < $2 GROUP BY offer_id
                 ), registration_totals AS (
                    SELECT offer_id, count(*) AS registrations FROM registrations
                    WHERE click_at >= $1 AND click_at < $2 GROUP BY offer_id
                 )
                 SELECT o.id, o.name, o.weight, o.active,
                    COALESCE((SELECT sum(r.clicks) FROM click_rollup_hourly r
                              WHERE r.offer_id = o.id AND r.hour >= $3 AND r.hour < $4), 0)::int8
                  + (SELECT count(*) FROM clicks c
                     WHERE c.offer_id = o.id AND c.created_at >= $1 AND c.created_at < LEAST($3, $2))
                  + (SELECT count(*) FROM clicks c
                     WHERE c.offer_id = o.id AND c.created_at >= GREATEST($4, $1) AND c.created_at < $2)
                    AS clicks,
                    COALESCE(g.registrations, 0) AS registrations,
                    COALESCE(f.ftds, 0) AS ftds,
                    (COALESCE(f.revenue, 0) + COALESCE(d.revenue, 0))::float8 AS revenue
                 FROM offers o
                 LEFT JOIN ftd_totals f ON f.offer_id = o.id
                 LEFT JOIN deposit_totals d ON d.offer_id = o.id
                 LEFT JOIN registration_totals g ON g.offer_id = o.id
                 ORDER BY o.id",
                &[&from, &to, &from_hour, &to_hour],
            )
            .await
            .map_err(db_error)?;
        Ok(rows
            .iter()
            .map(|row| OfferStats {
                offer_id: row.get("id"),
                name: row.get("name"),
                weight: row.get("weight"),
                active: row.get("active"),
                clicks: row.get::<_, i64>("clicks") as u64,
                registrations: row.get::<_, i64>("registrations") as u64,
                ftds: row.get::<_, i64>("ftds") as u64,
                revenue: row.get("revenue"),
            })
            .collect())
    }

    async fn recalculate_weights(
        &self,
        last_n_clicks: u32,
        policy: &WeightPolicy,
    ) -> StoreResult<Option<Vec<WeightedOffer>>> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db_error)?;
        let locked: bool =
            tx.query_one("SELECT pg_try_advisory_xact_lock($1)", &[&RECALC_LOCK]).await.map_err(db_error)?.get(0);
        if !locked {
            return Ok(None);
        }
        let offer_ids: Vec<i64> = tx
            .query("SELECT id FROM offers WHERE active ORDER BY id", &[])
            .await
            .map_err(db_error)?
            .iter()
            .map(|row| row.get(0))
            .collect();
        let last_n = i64::from(last_n_clicks);
        let mut windows = Vec::with_capacity(offer_ids.len());
        for offer_id in offer_ids {
            let row = tx
                .query_one(
                    "WITH recent AS (
                        SELECT click_id FROM clicks WHERE offer_id = $1 ORDER BY created_at DESC LIMIT $2
                     )
                     SELECT
                        (SELECT count(*) FROM recent) AS clicks,
                        (SELECT count(*) FROM ftd_events f JOIN recent r USING (click_id)
                         WHERE f.voided_at IS NULL) AS ftds,
                        (SELECT COALESCE(sum(p.amount), 0)::float8
                         FROM ftd_events f JOIN recent r USING (click_id) JOIN payouts p ON p.ftd_event_id = f.id
                         WHERE f.voided_at IS NULL)
                      + (SELECT COALESCE(sum(d.amount), 0)::float8 FROM deposits d JOIN recent r USING (click_id))
                        AS revenue",
                    &[&offer_id, &last_n],
                )
                .await
                .map_err(db_error)?;
            windows.push(OfferWindow {
                offer_id,
                clicks: row.get::<_, i64>("clicks") as u64,
                ftds: row.get::<_, i64>("ftds") as u64,
                revenue: row.get("revenue"),
            });
        }
        let weighted = policy.weigh(&windows);
        let run_at = OffsetDateTime::now_utc();
        for offer in &weighted {
            let w = &offer.window;
            tx.execute("UPDATE offers SET weight = $2 WHERE id = $1", &[&w.offer_id, &offer.weight])
                .await
                .map_err(db_error)?;
            tx.execute(
                "INSERT INTO weight_history (run_at, offer_id, clicks, ftds, payout, ev, weight)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
                &[&run_at, &w.offer_id, &(w.clicks as i64), &(w.ftds as i64), &w.revenue, &offer.ev, &offer.weight],
            )
            .await
            .map_err(db_error)?;
        }
        bump_routing_version(&tx).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(Some(weighted))
    }
}

#[cfg(test)]
mod tests {
    use super::is_transient;

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

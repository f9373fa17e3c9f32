//! Group commit for postbacks. Platforms report events in bursts, and each one written alone costs
//! PostgreSQL a transaction and a WAL flush of its own, plus a round trip per statement: about three
//! times the work per FTD of a statement that records sixteen (measured with pgbench on this
//! schema). So concurrent postbacks queue here, and one task writes each batch in one transaction:
//! its FTDs, its deposits and its registrations as one statement per kind (the events, an FTD's
//! payout, the events' part in the event rollup, and every postback's log line with the outcome that
//! applies), then the rest one after another through the shared rules ([`conversions::apply`]),
//! whose payout and rejection statements keep the rollup too. Each postback is answered only after
//! that commit, so an answer still means "stored", as before.
//!
//! - A batch is whatever has queued while earlier batches were being written (at most
//!   [`MAX_BATCH`]): under a light load every batch is one postback, and waits for nothing.
//! - The outcomes are those of the postbacks applied one after another. A kind's statement holds the
//!   first postback of each event (by the key its unique constraint decides on); everything else (a
//!   repeat, a payout, a rejection) is applied after the statements in the same transaction, in
//!   click-id order (arrival order within a click), so it sees what the batch recorded before it.
//!   The statements insert in key order, and the rest go in click-id order, so that batches lock
//!   rows in one order.
//! - A batch that fails (a deadlock with another batch, a row the database refuses) is written again
//!   one postback at a time, each in its own transaction, so one bad postback fails alone.

use std::collections::HashSet;
use std::sync::Arc;

use deadpool_postgres::{GenericClient, Object, Transaction};
use time::OffsetDateTime;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use super::layout::{Layout, event_rollup};
use super::{Connections, SQL, db_error, insert_log, prepared};
use crate::conversion::{EventKind, to_micro_units};
use crate::store::conversions::{self, ConversionTransaction};
use crate::store::sql::POSTBACK_LOG_COLUMNS;
use crate::store::{Conversion, ConversionOutcome, PostbackLogEntry, StoreError, StoreResult};

/// Most postbacks one transaction records.
const MAX_BATCH: usize = 64;
/// Batches written at once, each on a pooled connection of its own. While they are in flight the
/// next postbacks queue, so the larger the burst, the larger the batches.
const MAX_IN_FLIGHT: usize = 4;
/// Postbacks that may wait for a batch before senders wait for room.
const QUEUE_CAPACITY: usize = 4 * MAX_BATCH * MAX_IN_FLIGHT;

/// A postback waiting for its batch, and where its outcome goes.
struct Pending {
    conversion: Conversion,
    log: PostbackLogEntry,
    reply: oneshot::Sender<StoreResult<ConversionOutcome>>,
}

/// The queue into the batching task; cloned with the store. The task ends when every clone is gone.
#[derive(Clone)]
pub(super) struct PostbackBatcher {
    queue: mpsc::Sender<Pending>,
}

impl PostbackBatcher {
    /// Starts the batching task on the current Tokio runtime, writing through `pool`.
    pub(super) fn start(pool: Connections, layout: Layout) -> PostbackBatcher {
        let (queue, receiver) = mpsc::channel(QUEUE_CAPACITY);
        tokio::spawn(run(pool, Arc::new(EventStatements::new(layout)), receiver));
        PostbackBatcher { queue }
    }

    /// Applies a postback's event and writes its log line, in a batch with whatever postbacks arrive
    /// meanwhile; returns once they are committed.
    pub(super) async fn record(
        &self,
        conversion: &Conversion,
        log: &PostbackLogEntry,
    ) -> StoreResult<ConversionOutcome> {
        let stopped = || StoreError::Unavailable("the postback writer has stopped".to_owned());
        let (reply, outcome) = oneshot::channel();
        let pending = Pending { conversion: conversion.clone(), log: log.clone(), reply };
        self.queue.send(pending).await.map_err(|_| stopped())?;
        outcome.await.map_err(|_| stopped())?
    }
}

/// Takes what has queued, up to a batch, whenever a write slot is free.
async fn run(pool: Connections, statements: Arc<EventStatements>, mut receiver: mpsc::Receiver<Pending>) {
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    while let Some(first) = receiver.recv().await {
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else { return };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH
            && let Ok(next) = receiver.try_recv()
        {
            batch.push(next);
        }
        let (pool, statements) = (pool.clone(), Arc::clone(&statements));
        tokio::spawn(async move {
            write(&pool, &statements, batch).await;
            drop(slot);
        });
    }
}

/// Writes a batch, on one connection, and answers each of its postbacks.
async fn write(pool: &Connections, statements: &EventStatements, postbacks: Vec<Pending>) {
    let mut client = match pool.get().await {
        Ok(client) => client,
        Err(error) => {
            for pending in postbacks {
                let _ = pending.reply.send(Err(error.clone()));
            }
            return;
        }
    };
    let batch = Batch::new(postbacks);
    match record(&mut client, statements, &batch).await {
        Ok(outcomes) => {
            for (pending, outcome) in batch.into_postbacks().zip(outcomes) {
                // A sender that has gone (its client hung up) needs no answer: the event is stored.
                let _ = pending.reply.send(Ok(outcome));
            }
        }
        Err(error) if batch.len() > 1 => {
            tracing::warn!(%error, postbacks = batch.len(), "postback batch failed, writing its postbacks one by one");
            for pending in batch.into_postbacks() {
                let alone = Batch::new(vec![pending]);
                let outcome = record(&mut client, statements, &alone).await.map(|outcomes| outcomes[0]);
                if let Some(pending) = alone.into_postbacks().next() {
                    let _ = pending.reply.send(outcome);
                }
            }
        }
        Err(error) => {
            for pending in batch.into_postbacks() {
                let _ = pending.reply.send(Err(error.clone()));
            }
        }
    }
}

/// A batch as it is written: for each kind that one statement records, in [`Statement`]'s order,
/// the first postback of each event; then the rest by click id (a stable sort: a click's postbacks
/// keep their arrival order). One order for every batch, so that two batches lock rows alike.
struct Batch {
    statements: Vec<(Statement, Vec<Pending>)>,
    rest: Vec<Pending>,
}

impl Batch {
    fn new(postbacks: Vec<Pending>) -> Batch {
        let mut events = HashSet::with_capacity(postbacks.len());
        let mut statements: Vec<(Statement, Vec<Pending>)> = Vec::new();
        let mut rest = Vec::new();
        for pending in postbacks {
            match Statement::of(pending.conversion.kind) {
                Some(statement) if events.insert(statement.key(&pending.conversion)) => {
                    match statements.iter_mut().find(|(kind, _)| *kind == statement) {
                        Some((_, group)) => group.push(pending),
                        None => statements.push((statement, vec![pending])),
                    }
                }
                _ => rest.push(pending),
            }
        }
        statements.sort_by_key(|(statement, _)| *statement);
        rest.sort_by_key(|pending| pending.conversion.click_id);
        Batch { statements, rest }
    }

    fn len(&self) -> usize {
        self.statements.iter().map(|(_, group)| group.len()).sum::<usize>() + self.rest.len()
    }

    /// The postbacks, in the order [`record`] returns their outcomes.
    fn into_postbacks(self) -> impl Iterator<Item = Pending> {
        self.statements.into_iter().flat_map(|(_, group)| group).chain(self.rest)
    }
}

/// Records a batch; returns the outcomes in [`Batch::into_postbacks`]' order. One statement is
/// atomic on its own; anything more takes a transaction.
async fn record(
    client: &mut Object,
    statements: &EventStatements,
    batch: &Batch,
) -> StoreResult<Vec<ConversionOutcome>> {
    if let ([(statement, group)], []) = (&batch.statements[..], &batch.rest[..]) {
        return statement.record(&*client, statements, group).await;
    }
    let tx = client.transaction().await.map_err(db_error)?;
    let mut outcomes = Vec::with_capacity(batch.len());
    for (statement, group) in &batch.statements {
        outcomes.extend(statement.record(&tx, statements, group).await?);
    }
    for pending in &batch.rest {
        let (conversion, log) = (&pending.conversion, &pending.log);
        let outcome = match Statement::of(conversion.kind) {
            Some(statement) => statement.record(&tx, statements, std::slice::from_ref(pending)).await?[0],
            None => {
                let outcome = conversions::apply(&mut EventTx { tx: &tx, statements }, conversion).await?;
                insert_log(&tx, &log.concluded(conversion.kind, outcome)).await?;
                outcome
            }
        };
        outcomes.push(outcome);
    }
    tx.commit().await.map_err(db_error)?;
    Ok(outcomes)
}

/// The kinds of event one statement records for a whole batch: inserts that a unique constraint
/// makes idempotent, with no row to read first. Every batch writes them in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Statement {
    /// FTDs and their payouts (unique per click).
    Ftds,
    /// Further deposits (unique per offer and transaction id).
    Deposits,
    /// Registrations (unique per click).
    Registrations,
}

/// One array parameter of a statement.
type Column<'a> = Box<dyn ToSql + Sync + Send + 'a>;

/// What makes two postbacks report the same event: the columns of the unique constraint that
/// decides whether the second is a duplicate.
#[derive(PartialEq, Eq, Hash)]
enum EventKey {
    /// An FTD or a registration: one per click.
    Click(Statement, Uuid),
    /// A deposit: one per offer and transaction id.
    Transaction(i64, Option<String>),
}

impl Statement {
    fn of(kind: EventKind) -> Option<Statement> {
        match kind {
            EventKind::Ftd => Some(Statement::Ftds),
            EventKind::Deposit => Some(Statement::Deposits),
            EventKind::Reg => Some(Statement::Registrations),
            EventKind::Payout | EventKind::Rejected => None,
        }
    }

    fn key(self, c: &Conversion) -> EventKey {
        match self {
            Statement::Ftds | Statement::Registrations => EventKey::Click(self, c.click_id),
            Statement::Deposits => EventKey::Transaction(c.offer_id, c.tid.clone()),
        }
    }

    /// The statement's text among `statements`: the input arrays, the insert of the new rows, its
    /// part in the event rollup, and every postback's log line; it returns each postback's ordinal
    /// and whether its event was new.
    fn sql(self, statements: &EventStatements) -> &str {
        match self {
            Statement::Ftds => &statements.ftds,
            Statement::Deposits => &statements.deposits,
            Statement::Registrations => &statements.registrations,
        }
    }

    /// The event's input columns, in the order of [`Statement::sql`]'s first arrays.
    fn event_columns(self, batch: &[Pending]) -> Vec<Column<'_>> {
        let click_columns: [Column<'_>; 3] = [
            Box::new(column(batch, |p| p.conversion.click_id)),
            Box::new(column(batch, |p| p.conversion.offer_id)),
            Box::new(column(batch, |p| p.conversion.clicked_at)),
        ];
        let player = || Box::new(column(batch, |p| p.conversion.external_player_id.as_deref()));
        let tid = || Box::new(column(batch, |p| p.conversion.tid.as_deref()));
        let amount = || Box::new(column(batch, |p| p.conversion.payout.map(to_micro_units)));
        let currency = || Box::new(column(batch, |p| p.conversion.currency.as_str()));
        let mut columns: Vec<Column<'_>> = click_columns.into();
        match self {
            Statement::Ftds => columns.extend::<[Column<'_>; 4]>([player(), tid(), amount(), currency()]),
            Statement::Deposits => columns.extend::<[Column<'_>; 3]>([tid(), amount(), currency()]),
            Statement::Registrations => columns.push(player()),
        }
        columns
    }

    /// Records the first postback of distinct events of this kind; returns the outcomes in order.
    async fn record(
        self,
        client: &impl GenericClient,
        statements: &EventStatements,
        batch: &[Pending],
    ) -> StoreResult<Vec<ConversionOutcome>> {
        let statement = prepared(client, self.sql(statements)).await?;
        let concluded: Vec<(PostbackLogEntry, PostbackLogEntry)> = batch
            .iter()
            .map(|p| {
                (
                    p.log.concluded(p.conversion.kind, ConversionOutcome::Recorded),
                    p.log.concluded(p.conversion.kind, ConversionOutcome::Duplicate),
                )
            })
            .collect();
        let mut columns = self.event_columns(batch);
        columns.extend::<[Column<'_>; 13]>([
            Box::new(column(batch, |p| p.log.received_at)),
            Box::new(column(batch, |p| p.log.offer_id)),
            Box::new(column(batch, |p| p.log.click_id.as_deref())),
            Box::new(column(batch, |p| p.log.event.as_deref())),
            Box::new(column(batch, |p| p.log.payout)),
            Box::new(column(batch, |p| p.log.currency.as_deref())),
            Box::new(column(batch, |p| p.log.tid.as_deref())),
            Box::new(column(&concluded, |(recorded, _)| recorded.outcome.as_str())),
            Box::new(column(&concluded, |(_, duplicate)| duplicate.outcome.as_str())),
            Box::new(column(&concluded, |(recorded, _)| recorded.reason.as_deref())),
            Box::new(column(&concluded, |(_, duplicate)| duplicate.reason.as_deref())),
            Box::new(column(batch, |p| p.log.source_ip)),
            Box::new(column(batch, |p| p.log.ignored_fields.as_deref())),
        ]);
        let params: Vec<&(dyn ToSql + Sync)> = columns.iter().map(|column| &**column as _).collect();
        let rows = client.query(&statement, &params).await.map_err(db_error)?;
        let mut outcomes = vec![ConversionOutcome::Duplicate; batch.len()];
        for row in rows {
            let (ordinal, recorded): (i64, bool) = (row.get(0), row.get(1));
            if let Some(outcome) = usize::try_from(ordinal - 1).ok().and_then(|index| outcomes.get_mut(index))
                && recorded
            {
                *outcome = ConversionOutcome::Recorded;
            }
        }
        Ok(outcomes)
    }
}

/// The statements that write events, each adding its events to the event rollup, written for the
/// database's layout.
struct EventStatements {
    ftds: String,
    deposits: String,
    registrations: String,
    /// `$1` click, `$2` its FTD, `$3` amount in micro-units, `$4` currency; returns 1 when new.
    payout: String,
    /// `$1` click, `$2` when; returns 1 when it voided the click's FTD.
    void: String,
}

impl EventStatements {
    fn new(layout: Layout) -> EventStatements {
        let one_click = "ARRAY[$1::uuid]";
        let payout = format!(
            "WITH new AS (
                 INSERT INTO payouts (click_id, ftd_event_id, amount, currency)
                 VALUES ($1, $2, $3::int8::numeric / 1000000, $4) ON CONFLICT DO NOTHING RETURNING click_id
             ), {}
             SELECT count(*) FROM new",
            event_rollup(
                layout,
                "SELECT f.click_id, f.offer_id, f.click_at, 0, 0, $3::int8::numeric / 1000000 FROM ftd_events f
                 WHERE f.click_id = $1 AND f.id = $2 AND f.voided_at IS NULL AND f.click_id IN (SELECT click_id FROM new)",
                one_click
            )
        );
        let void = format!(
            "WITH voided AS (
                 UPDATE ftd_events SET voided_at = $2 WHERE click_id = $1 AND voided_at IS NULL
                 RETURNING click_id, offer_id, click_at
             ), {}
             SELECT count(*) FROM voided",
            event_rollup(
                layout,
                "SELECT v.click_id, v.offer_id, v.click_at, 0, -1,
                        -COALESCE((SELECT p.amount FROM payouts p WHERE p.click_id = $1), 0)
                 FROM voided v",
                one_click
            )
        );
        EventStatements {
            ftds: ftds_sql(layout),
            deposits: deposits_sql(layout),
            registrations: registrations_sql(layout),
            payout,
            void,
        }
    }
}

/// A batch's transaction, for the shared rules of payouts and rejections.
struct EventTx<'t, 'c> {
    tx: &'t Transaction<'c>,
    statements: &'t EventStatements,
}

impl ConversionTransaction for EventTx<'_, '_> {
    async fn ftd_of(&mut self, click_id: Uuid) -> StoreResult<Option<i64>> {
        let statement = prepared(self.tx, &SQL.ftd_of).await?;
        let row = self.tx.query_opt(&statement, &[&click_id]).await.map_err(db_error)?;
        Ok(row.map(|row| row.get(0)))
    }

    async fn insert_payout(&mut self, click_id: Uuid, ftd_id: i64, amount: f64, currency: &str) -> StoreResult<bool> {
        let statement = prepared(self.tx, &self.statements.payout).await?;
        let params: [&(dyn ToSql + Sync); 4] = [&click_id, &ftd_id, &to_micro_units(amount), &currency];
        let new: i64 = self.tx.query_one(&statement, &params).await.map_err(db_error)?.get(0);
        Ok(new > 0)
    }

    async fn void_ftd(&mut self, click_id: Uuid) -> StoreResult<bool> {
        let now = OffsetDateTime::now_utc();
        let statement = prepared(self.tx, &self.statements.void).await?;
        let voided: i64 = self.tx.query_one(&statement, &[&click_id, &now]).await.map_err(db_error)?.get(0);
        Ok(voided > 0)
    }
}

/// What makes one kind's statement: `inputs` are the event's arrays (name and type), the first the
/// click ids, before the log line's; `claim` may add a step before the insert (Citus's tid claims);
/// `insert` inserts the new rows from `input` in key order, returning `returning`; `key` joins a new
/// row to its postback; `also` adds the steps that read `new` (a payout, the event rollup).
struct BatchSql<'a> {
    inputs: &'a [(&'a str, &'a str)],
    claim: String,
    insert: String,
    returning: &'a str,
    key: &'a str,
    also: String,
}

/// The array of the batch's click ids (every statement's first parameter).
const CLICK_IDS: &str = "$1::uuid[]";

impl BatchSql<'_> {
    /// The statement's text: it returns each postback's ordinal and whether its event was new.
    fn render(&self) -> String {
        const LOG_INPUTS: [(&str, &str); 13] = [
            ("received_at", "timestamptz"),
            ("log_offer_id", "int8"),
            ("log_click_id", "text"),
            ("event", "text"),
            ("log_payout", "float8"),
            ("log_currency", "text"),
            ("log_tid", "text"),
            ("recorded_outcome", "text"),
            ("duplicate_outcome", "text"),
            ("recorded_reason", "text"),
            ("duplicate_reason", "text"),
            ("source_ip", "inet"),
            ("ignored_fields", "text"),
        ];
        let all = || self.inputs.iter().chain(&LOG_INPUTS);
        let arrays: Vec<String> = all().enumerate().map(|(i, (_, kind))| format!("${}::{kind}[]", i + 1)).collect();
        let names: Vec<&str> = all().map(|(name, _)| *name).collect();
        let (arrays, names) = (arrays.join(", "), names.join(", "));
        let BatchSql { claim, insert, returning, key, also, .. } = self;
        format!(
            "WITH input AS (
                 SELECT * FROM unnest({arrays}) WITH ORDINALITY AS i ({names}, ord)
             ){claim}, new AS (
                 {insert} ON CONFLICT DO NOTHING RETURNING {returning}
             ), {also}, log AS (
                 INSERT INTO postback_log ({POSTBACK_LOG_COLUMNS})
                 SELECT received_at, log_offer_id, log_click_id, event, log_payout, log_currency, log_tid,
                        CASE WHEN new.{first_key} IS NULL THEN duplicate_outcome ELSE recorded_outcome END,
                        CASE WHEN new.{first_key} IS NULL THEN duplicate_reason ELSE recorded_reason END,
                        source_ip, ignored_fields
                 FROM input LEFT JOIN new USING ({key}) ORDER BY ord
             )
             SELECT input.ord, new.{first_key} IS NOT NULL FROM input LEFT JOIN new USING ({key})",
            first_key = key.split(", ").next().unwrap_or(key),
        )
    }
}

/// On Citus, a step claiming, for events of `kind`, the tids of the input rows that `claimable`
/// selects, returning the claiming rows' `returning`; and the condition the insert puts on its rows,
/// `claimed` (which reads that step). Nothing on one server, where unique indexes keep tids unique
/// per offer.
fn tid_claim(layout: Layout, kind: &str, claimable: &str, returning: &str, claimed: &str) -> (String, String) {
    match layout {
        Layout::Single => (String::new(), String::new()),
        Layout::Citus => (
            format!(
                ", claimed AS (
                     INSERT INTO event_tids (offer_id, kind, tid, click_id)
                     SELECT offer_id, '{kind}', tid, click_id FROM input WHERE {claimable} ORDER BY offer_id, tid
                     ON CONFLICT DO NOTHING RETURNING {returning}
                 )"
            ),
            format!(" AND {claimed}"),
        ),
    }
}

/// FTDs of distinct clicks, their payouts, and their part in the event rollup. On Citus an FTD with
/// a tid needs its claim, which is made only for a click with no FTD yet, so that a repeated FTD of
/// a click does not take a tid it will not use.
fn ftds_sql(layout: Layout) -> String {
    let stored = layout.click_stored("input", CLICK_IDS);
    let (claim, claimed) = tid_claim(
        layout,
        "ftd",
        &format!(
            "tid IS NOT NULL AND {stored}
             AND click_id NOT IN (SELECT f.click_id FROM ftd_events f WHERE f.click_id = ANY ({CLICK_IDS}))"
        ),
        "click_id",
        "(tid IS NULL OR click_id IN (SELECT click_id FROM claimed))",
    );
    BatchSql {
        inputs: &[
            ("click_id", "uuid"),
            ("offer_id", "int8"),
            ("click_at", "timestamptz"),
            ("player", "text"),
            ("tid", "text"),
            ("amount", "int8"),
            ("currency", "text"),
        ],
        claim,
        insert: format!(
            "INSERT INTO ftd_events (click_id, offer_id, click_at, external_player_id, tid)
             SELECT click_id, offer_id, click_at, player, tid FROM input WHERE {stored}{claimed} ORDER BY click_id"
        ),
        returning: "id, click_id, offer_id, click_at",
        key: "click_id",
        also: format!(
            "payout AS (
                 INSERT INTO payouts (click_id, ftd_event_id, amount, currency)
                 SELECT new.click_id, new.id, input.amount::numeric / 1000000, input.currency
                 FROM new JOIN input USING (click_id) WHERE input.amount IS NOT NULL
             ), {}",
            event_rollup(
                layout,
                "SELECT new.click_id, new.offer_id, new.click_at, 0, 1, COALESCE(input.amount::numeric / 1000000, 0)
                 FROM new JOIN input USING (click_id)",
                CLICK_IDS
            )
        ),
    }
    .render()
}

/// Deposits of distinct transaction ids (per offer), and their part in the event rollup.
fn deposits_sql(layout: Layout) -> String {
    let stored = layout.click_stored("input", CLICK_IDS);
    let (claim, claimed) = tid_claim(
        layout,
        "deposit",
        &stored,
        "offer_id, tid",
        "(offer_id, tid) IN (SELECT offer_id, tid FROM claimed)",
    );
    BatchSql {
        inputs: &[
            ("click_id", "uuid"),
            ("offer_id", "int8"),
            ("click_at", "timestamptz"),
            ("tid", "text"),
            ("amount", "int8"),
            ("currency", "text"),
        ],
        claim,
        insert: format!(
            "INSERT INTO deposits (click_id, offer_id, click_at, tid, amount, currency)
             SELECT click_id, offer_id, click_at, tid, amount::numeric / 1000000, currency
             FROM input WHERE {stored}{claimed} ORDER BY offer_id, tid"
        ),
        returning: "offer_id, tid, click_id, click_at, amount",
        key: "offer_id, tid",
        also: event_rollup(
            layout,
            "SELECT new.click_id, new.offer_id, new.click_at, 0, 0, new.amount FROM new",
            CLICK_IDS,
        ),
    }
    .render()
}

/// Registrations of distinct clicks, and their part in the event rollup.
fn registrations_sql(layout: Layout) -> String {
    let stored = layout.click_stored("input", CLICK_IDS);
    BatchSql {
        inputs: &[("click_id", "uuid"), ("offer_id", "int8"), ("click_at", "timestamptz"), ("player", "text")],
        claim: String::new(),
        insert: format!(
            "INSERT INTO registrations (click_id, offer_id, click_at, external_player_id)
             SELECT click_id, offer_id, click_at, player FROM input WHERE {stored} ORDER BY click_id"
        ),
        returning: "click_id, offer_id, click_at",
        key: "click_id",
        also: event_rollup(layout, "SELECT new.click_id, new.offer_id, new.click_at, 1, 0, 0 FROM new", CLICK_IDS),
    }
    .render()
}

/// One array parameter: `value` of every item.
fn column<'a, T, V>(items: &'a [T], value: impl Fn(&'a T) -> V) -> Vec<V> {
    items.iter().map(value).collect()
}

//! Group commit for FTD postbacks. Platforms report FTDs in bursts, and each FTD recorded alone costs
//! PostgreSQL a statement, a transaction and a WAL flush of its own: about three times the work per
//! FTD of a statement that records sixteen (measured with pgbench on this schema). So concurrent FTD
//! postbacks queue here, and one task writes them as one statement per batch: every FTD, payout and
//! postback-log line of the batch in one transaction. Each postback is answered only after that
//! commit, so an answer still means "stored", as before.
//!
//! - A batch is whatever has queued while earlier batches were being written (at most
//!   [`MAX_BATCH`]): under a light load every batch is one postback, and waits for nothing.
//! - A batch holds each click once. A click's repeats in the same batch are written after it, one by
//!   one, so the outcomes are those of the postbacks recorded one after another: the first
//!   recorded, the rest duplicates.
//! - A batch that fails (a deadlock with another batch, a row the database refuses) is written again
//!   one postback at a time, so one bad postback fails alone.

use std::collections::HashSet;
use std::sync::{Arc, LazyLock};

use deadpool_postgres::Object;
use tokio::sync::{Semaphore, mpsc, oneshot};

use super::{Connections, db_error, prepared};
use crate::conversion::to_micro_units;
use crate::store::sql::POSTBACK_LOG_COLUMNS;
use crate::store::{Conversion, ConversionOutcome, PostbackLogEntry, StoreError, StoreResult};

/// Most postbacks one statement records.
const MAX_BATCH: usize = 64;
/// Batches written at once, each on a pooled connection of its own. While they are in flight the
/// next postbacks queue, so the larger the burst, the larger the batches.
const MAX_IN_FLIGHT: usize = 4;
/// Postbacks that may wait for a batch before senders wait for room.
const QUEUE_CAPACITY: usize = 4 * MAX_BATCH * MAX_IN_FLIGHT;

/// An FTD postback waiting for its batch, and where its outcome goes.
struct Pending {
    conversion: Conversion,
    log: PostbackLogEntry,
    reply: oneshot::Sender<StoreResult<ConversionOutcome>>,
}

/// The queue into the batching task; cloned with the store. The task ends when every clone is gone.
#[derive(Clone)]
pub(super) struct FtdBatcher {
    queue: mpsc::Sender<Pending>,
}

impl FtdBatcher {
    /// Starts the batching task on the current Tokio runtime, writing through `pool`.
    pub(super) fn start(pool: Connections) -> FtdBatcher {
        let (queue, receiver) = mpsc::channel(QUEUE_CAPACITY);
        tokio::spawn(run(pool, receiver));
        FtdBatcher { queue }
    }

    /// Records an FTD, its payout and the postback's log line, in a batch with whatever FTDs arrive
    /// meanwhile; returns once they are committed.
    pub(super) async fn record(
        &self,
        conversion: &Conversion,
        log: &PostbackLogEntry,
    ) -> StoreResult<ConversionOutcome> {
        let stopped = || StoreError::Unavailable("the FTD writer has stopped".to_owned());
        let (reply, outcome) = oneshot::channel();
        let pending = Pending { conversion: conversion.clone(), log: log.clone(), reply };
        self.queue.send(pending).await.map_err(|_| stopped())?;
        outcome.await.map_err(|_| stopped())?
    }
}

/// Takes what has queued, up to a batch, whenever a write slot is free.
async fn run(pool: Connections, mut receiver: mpsc::Receiver<Pending>) {
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    while let Some(first) = receiver.recv().await {
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else { return };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH
            && let Ok(next) = receiver.try_recv()
        {
            batch.push(next);
        }
        let pool = pool.clone();
        tokio::spawn(async move {
            write(&pool, batch).await;
            drop(slot);
        });
    }
}

/// Writes a batch, on one connection, and answers each of its postbacks.
async fn write(pool: &Connections, batch: Vec<Pending>) {
    let client = match pool.get().await {
        Ok(client) => client,
        Err(error) => {
            for pending in batch {
                let _ = pending.reply.send(Err(error.clone()));
            }
            return;
        }
    };
    let mut clicks = HashSet::with_capacity(batch.len());
    let (firsts, repeats): (Vec<Pending>, Vec<Pending>) =
        batch.into_iter().partition(|pending| clicks.insert(pending.conversion.click_id));
    match record_batch(&client, &firsts).await {
        Ok(outcomes) => {
            for (pending, outcome) in firsts.into_iter().zip(outcomes) {
                // A sender that has gone (its client hung up) needs no answer: the FTD is stored.
                let _ = pending.reply.send(Ok(outcome));
            }
        }
        Err(error) if firsts.len() > 1 => {
            tracing::warn!(%error, postbacks = firsts.len(), "FTD batch failed, writing its postbacks one by one");
            record_one_by_one(&client, firsts).await;
        }
        Err(error) => {
            for pending in firsts {
                let _ = pending.reply.send(Err(error.clone()));
            }
        }
    }
    record_one_by_one(&client, repeats).await;
}

/// Records each postback as a batch of its own, in order.
async fn record_one_by_one(client: &Object, batch: Vec<Pending>) {
    for pending in batch {
        let outcome = record_batch(client, std::slice::from_ref(&pending)).await.map(|outcomes| outcomes[0]);
        let _ = pending.reply.send(outcome);
    }
}

/// One statement for FTDs of distinct clicks: the FTDs (in click-id order, so that two batches
/// lock the same clicks in the same order), their payouts, and every postback's log line with the
/// outcome that applies; it returns each postback's ordinal and whether its FTD was new.
static BATCH_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH input AS (
                 SELECT * FROM unnest($1::uuid[], $2::int8[], $3::timestamptz[], $4::text[], $5::text[],
                                      $6::int8[], $7::text[], $8::timestamptz[], $9::int8[], $10::text[],
                                      $11::text[], $12::float8[], $13::text[], $14::text[], $15::text[],
                                      $16::text[], $17::text[], $18::text[], $19::inet[], $20::text[])
                     WITH ORDINALITY AS i (click_id, offer_id, click_at, player, tid, payout, currency,
                                           received_at, log_offer_id, log_click_id, event, log_payout,
                                           log_currency, log_tid, recorded_outcome, duplicate_outcome,
                                           recorded_reason, duplicate_reason, source_ip, ignored_fields, ord)
             ), ftd AS (
                 INSERT INTO ftd_events (click_id, offer_id, click_at, external_player_id, tid)
                 SELECT click_id, offer_id, click_at, player, tid FROM input ORDER BY click_id
                 ON CONFLICT DO NOTHING RETURNING id, click_id
             ), payout AS (
                 INSERT INTO payouts (ftd_event_id, amount, currency)
                 SELECT ftd.id, input.payout::numeric / 1000000, input.currency
                 FROM ftd JOIN input USING (click_id) WHERE input.payout IS NOT NULL
             ), log AS (
                 INSERT INTO postback_log ({POSTBACK_LOG_COLUMNS})
                 SELECT received_at, log_offer_id, log_click_id, event, log_payout, log_currency, log_tid,
                        CASE WHEN ftd.id IS NULL THEN duplicate_outcome ELSE recorded_outcome END,
                        CASE WHEN ftd.id IS NULL THEN duplicate_reason ELSE recorded_reason END, source_ip,
                        ignored_fields
                 FROM input LEFT JOIN ftd USING (click_id) ORDER BY ord
             )
             SELECT input.ord, ftd.id IS NOT NULL FROM input LEFT JOIN ftd USING (click_id)"
    )
});

/// Records FTDs of distinct clicks with [`BATCH_SQL`]; returns the outcomes in the batch's order.
async fn record_batch(client: &Object, batch: &[Pending]) -> StoreResult<Vec<ConversionOutcome>> {
    let statement = prepared(client, &BATCH_SQL).await?;
    let concluded: Vec<(PostbackLogEntry, PostbackLogEntry)> = batch
        .iter()
        .map(|p| {
            (
                p.log.concluded(p.conversion.kind, ConversionOutcome::Recorded),
                p.log.concluded(p.conversion.kind, ConversionOutcome::Duplicate),
            )
        })
        .collect();
    let rows = client
        .query(
            &statement,
            &[
                &column(batch, |p| p.conversion.click_id),
                &column(batch, |p| p.conversion.offer_id),
                &column(batch, |p| p.conversion.clicked_at),
                &column(batch, |p| p.conversion.external_player_id.as_deref()),
                &column(batch, |p| p.conversion.tid.as_deref()),
                &column(batch, |p| p.conversion.payout.map(to_micro_units)),
                &column(batch, |p| p.conversion.currency.as_str()),
                &column(batch, |p| p.log.received_at),
                &column(batch, |p| p.log.offer_id),
                &column(batch, |p| p.log.click_id.as_deref()),
                &column(batch, |p| p.log.event.as_deref()),
                &column(batch, |p| p.log.payout),
                &column(batch, |p| p.log.currency.as_deref()),
                &column(batch, |p| p.log.tid.as_deref()),
                &column(&concluded, |(recorded, _)| recorded.outcome.as_str()),
                &column(&concluded, |(_, duplicate)| duplicate.outcome.as_str()),
                &column(&concluded, |(recorded, _)| recorded.reason.as_deref()),
                &column(&concluded, |(_, duplicate)| duplicate.reason.as_deref()),
                &column(batch, |p| p.log.source_ip),
                &column(batch, |p| p.log.ignored_fields.as_deref()),
            ],
        )
        .await
        .map_err(db_error)?;
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

/// One array parameter: `value` of every item.
fn column<'a, T, V>(items: &'a [T], value: impl Fn(&'a T) -> V) -> Vec<V> {
    items.iter().map(value).collect()
}

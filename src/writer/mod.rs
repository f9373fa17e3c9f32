//! The click writer: a bounded queue between the click path and the database, drained in batches.
//!
//! Design, after vector's batcher:
//! - The click handler only `try_send`s a [`ClickRecord`] onto a bounded crossbeam channel: it never
//!   waits on the database. When the queue is full the click is refused (the handler answers 503, and
//!   the refusal is counted), so no click id is ever handed out whose row will not be written.
//! - One dedicated OS thread owns the blocking work. A batch starts with its first click and is
//!   written when it holds `batch_size` clicks or when `flush_interval` has passed since that first
//!   click, whichever comes first, in one transaction. Between those moments the writer sleeps
//!   (`park_timeout`) rather than waiting on the channel, so a click costs its sender no wake-up:
//!   only the first click of a batch, a full batch (or half a queue shorter than a batch), a flush
//!   or a stop wake the writer.
//! - A batch the database refuses outright is retried click by click, so one bad row cannot block
//!   the others; rows still refused are counted as failed and logged with their ids.
//! - **Outage.** When the database is unreachable the writer keeps reading the queue (so `/click`
//!   keeps redirecting) and holds the clicks in memory, up to `spill_after`; past that it spills them
//!   to the on-disk [`Journal`]. It retries with back-off; once a write succeeds it writes what it
//!   holds, then replays the journal. If the journal is full too, the writer stops reading the queue:
//!   the queue fills and clicks are refused with 503 and counted, never lost silently. These rules
//!   live in `outage.rs` as a state machine that does no I/O (`WriterState`: events and the
//!   time in, decisions out), unit-tested transition by transition; the `Worker` here reads the
//!   queue, forms batches and carries the decisions out against the store and the journal.
//! - A flush request is a message in the same FIFO: when it is acknowledged, every click queued before
//!   it is committed. Postbacks use it for clicks that may still be waiting in the queue. During an
//!   outage a flush is not acknowledged (the caller answers 503).
//! - On shutdown the writer drains the queue, writes the last batch and exits; during an outage it
//!   spills what it holds to the journal instead, which the next start replays.
//! - **Crash.** Before a click is queued it is written into the [`ClickLog`] (a memory-mapped file
//!   that outlives the process); the writer hands each click's slot back once the click is
//!   committed, refused for good or journaled. What a killed process had not handed back is
//!   replayed at the next start.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::{JoinHandle, Thread};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TryRecvError, TrySendError};
use tokio::runtime::Handle;
use tokio::sync::oneshot;

use crate::click_log::ClickLog;
use crate::journal::{Journal, JournalStats};
use crate::metrics::Metrics;
use crate::store::{ClickRecord, Store, insert_clicks_isolating};
use outage::{Decision, Mode, Reading, WriterState};

mod outage;

/// Batching settings.
#[derive(Debug, Clone, Copy)]
pub struct WriterConfig {
    /// Capacity of the queue.
    pub queue_capacity: usize,
    /// Most clicks per transaction.
    pub batch_size: usize,
    /// Deadline of a partial batch, from its first click.
    pub flush_interval: Duration,
    /// Clicks held in memory during an outage before they are spilled to the journal.
    pub spill_after: usize,
}

/// Counters shared by the click path, the writer and `/health`.
#[derive(Debug, Default)]
pub struct WriterStats {
    /// Clicks committed to the database.
    pub written: AtomicU64,
    /// Clicks the database refused even one by one (logged with their ids).
    pub failed: AtomicU64,
    /// Clicks refused at the door: the queue was full (or the writer had stopped).
    pub rejected: AtomicU64,
    /// Clicks held in memory by the writer while the database is unreachable.
    pub held: AtomicU64,
    /// Whether the writer is in an outage (its last write found the database unreachable).
    pub outage: AtomicBool,
}

enum Message {
    Click(ClickRecord),
    Flush(oneshot::Sender<()>),
    Stop,
}

/// Why a click could not be queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EnqueueError {
    /// Every slot of the queue is taken.
    #[error("click queue is full")]
    Full,
    /// The writer has stopped.
    #[error("click writer has stopped")]
    Stopped,
    /// The click log could not take the click (no new segment could be made).
    #[error("click log cannot take clicks")]
    Log,
}

/// A flush that did not complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("click writer did not flush in time")]
pub struct FlushError;

/// The sending side of the queue, cheap to clone.
#[derive(Clone)]
pub struct ClickQueue {
    tx: Sender<Message>,
    stats: Arc<WriterStats>,
    /// The writer thread, woken at `wake_at` queued clicks or when a flush is requested.
    writer: Thread,
    /// Queue length at which a sender wakes the writer: a full batch, or half the queue if the
    /// queue is shorter than a batch (else it could fill while the writer sleeps to its deadline).
    wake_at: usize,
    /// Size of the writer's journal.
    journal: Arc<JournalStats>,
    /// Where each click is written before it is queued (`None` only in benchmarks and tests that
    /// measure or exercise the queue without it).
    log: Option<ClickLog>,
}

impl ClickQueue {
    /// Writes a click into the click log, then queues it without waiting. A click the queue
    /// refuses is cancelled in the log.
    #[inline]
    pub fn try_enqueue(&self, mut click: ClickRecord) -> Result<(), EnqueueError> {
        let logged = match self.log.as_ref().map(|log| log.write(&click)).transpose() {
            Ok(logged) => logged,
            Err(_) => {
                self.stats.rejected.fetch_add(1, Ordering::Relaxed);
                return Err(EnqueueError::Log);
            }
        };
        click.log_slot = logged.as_ref().map(|logged| logged.slot());
        let refused = match self.tx.try_send(Message::Click(click)) {
            Ok(()) => {
                if self.tx.len() >= self.wake_at {
                    self.writer.unpark();
                }
                return Ok(());
            }
            Err(TrySendError::Full(_)) => EnqueueError::Full,
            Err(TrySendError::Disconnected(_)) => EnqueueError::Stopped,
        };
        self.stats.rejected.fetch_add(1, Ordering::Relaxed);
        if let Some(logged) = logged {
            logged.cancel();
        }
        Err(refused)
    }

    /// Waits until every click queued before this call is committed, or `timeout` passes.
    pub async fn flush(&self, timeout: Duration) -> Result<(), FlushError> {
        let (ack_tx, ack_rx) = oneshot::channel();
        let (tx, writer) = (self.tx.clone(), self.writer.clone());
        // The queue may be full; wait for a slot off the async workers, bounded like the rest.
        let queued = tokio::task::spawn_blocking(move || {
            let sent = tx.send_timeout(Message::Flush(ack_tx), timeout).is_ok();
            writer.unpark();
            sent
        });
        let acknowledged = async {
            if queued.await.unwrap_or(false) { ack_rx.await.map_err(|_| FlushError) } else { Err(FlushError) }
        };
        tokio::time::timeout(timeout, acknowledged).await.map_err(|_| FlushError)?
    }

    /// Clicks waiting in the queue.
    pub fn depth(&self) -> usize {
        self.tx.len()
    }

    /// The counters.
    pub fn stats(&self) -> &WriterStats {
        &self.stats
    }

    /// The journal's size.
    pub fn journal(&self) -> &JournalStats {
        &self.journal
    }
}

/// The running writer thread.
pub struct ClickWriter {
    queue: ClickQueue,
    thread: JoinHandle<()>,
    /// Seen by a writer that has stopped reading the queue (journal full during an outage).
    shutdown_requested: Arc<AtomicBool>,
}

impl ClickWriter {
    /// Starts the writer thread. `runtime` runs the store's futures; it must be a multi-thread runtime,
    /// whose workers drive the I/O while this thread blocks on them. `journal` should have been
    /// replayed already: the writer appends to it during outages. `log`, if any, takes every click
    /// before it is queued (the writer hands the clicks back to it and closes it when it stops).
    pub fn spawn(
        store: Arc<dyn Store>,
        config: WriterConfig,
        runtime: Handle,
        metrics: Arc<Metrics>,
        journal: Journal,
        log: Option<ClickLog>,
    ) -> std::io::Result<ClickWriter> {
        let (tx, rx) = crossbeam_channel::bounded(config.queue_capacity);
        let stats = Arc::new(WriterStats::default());
        let shutdown_requested = Arc::new(AtomicBool::new(false));
        let journal_stats = journal.stats();
        let state = WriterState::new(config.spill_after, !journal.is_empty(), Instant::now());
        stats.outage.store(state.in_outage(), Ordering::Relaxed);
        let worker = Worker {
            rx,
            store,
            runtime,
            config,
            stats: stats.clone(),
            metrics,
            journal,
            log: log.clone(),
            state,
            shutdown_requested: shutdown_requested.clone(),
        };
        let thread = std::thread::Builder::new().name("click-writer".into()).spawn(move || worker.run())?;
        let writer = thread.thread().clone();
        let wake_at = config.batch_size.min(config.queue_capacity / 2).max(1);
        let queue = ClickQueue { tx, stats, writer, wake_at, journal: journal_stats, log };
        Ok(ClickWriter { queue, thread, shutdown_requested })
    }

    /// The queue to send clicks to.
    pub fn queue(&self) -> &ClickQueue {
        &self.queue
    }

    /// Asks the writer to drain the queue and stop, and waits until it has.
    pub async fn shutdown(self) {
        let ClickWriter { queue, thread, shutdown_requested } = self;
        shutdown_requested.store(true, Ordering::Release);
        let _ = tokio::task::spawn_blocking(move || {
            queue.writer.unpark();
            // Stop goes behind every click already queued, so all of them are written first.
            let _ = queue.tx.send(Message::Stop);
            queue.writer.unpark();
            let _ = thread.join();
        })
        .await;
    }
}

/// Clicks not written because the database is unreachable: a suffix of what was to be written.
struct Unreachable<'a> {
    rest: &'a [ClickRecord],
    reason: String,
}

/// The writer thread: reads the queue, forms batches, and carries out what [`WriterState`] decides
/// against the store and the journal.
struct Worker {
    rx: Receiver<Message>,
    store: Arc<dyn Store>,
    runtime: Handle,
    config: WriterConfig,
    stats: Arc<WriterStats>,
    metrics: Arc<Metrics>,
    journal: Journal,
    /// The click log, told which clicks are taken care of.
    log: Option<ClickLog>,
    /// Mode, phase and the clicks held during an outage.
    state: WriterState,
    /// Set by [`ClickWriter::shutdown`] before `Stop` is queued.
    shutdown_requested: Arc<AtomicBool>,
}

impl Worker {
    fn run(mut self) {
        let batch_size = self.config.batch_size;
        let mut batch = Vec::with_capacity(batch_size);
        let mut acks = Vec::new();
        while let Some(first) = self.first_message() {
            let deadline = Instant::now() + self.config.flush_interval;
            self.accept(first, &mut batch, &mut acks);
            loop {
                // Take what is queued, up to a full batch; a flush request ends the batch.
                while batch.len() < batch_size && acks.is_empty() {
                    match self.rx.try_recv() {
                        Ok(message) => self.accept(message, &mut batch, &mut acks),
                        Err(TryRecvError::Empty) => break,
                        Err(TryRecvError::Disconnected) => {
                            self.state.stop_requested();
                            break;
                        }
                    }
                }
                let now = Instant::now();
                if batch.len() >= batch_size || !acks.is_empty() || self.state.is_stopping() || now >= deadline {
                    break;
                }
                // Sleep without waiting on the channel, so that senders do not wake this thread for
                // every click; they unpark it when a batch is full (or the queue half full), as do
                // flush and stop requests.
                std::thread::park_timeout(deadline - now);
            }
            if !batch.is_empty() {
                let decision = self.state.batch_ready(&mut batch, Instant::now());
                self.execute(decision, &batch);
                batch.clear();
            }
            // Acknowledged only when everything before the request is in the database; dropped
            // (the caller sees a failed flush) while clicks wait in memory or in the journal.
            let all_written = self.state.acknowledges_flushes();
            for ack in acks.drain(..) {
                if all_written {
                    let _ = ack.send(());
                }
            }
        }
        let decision = self.state.drained(Instant::now());
        self.execute(decision, &[]);
        if let Some(log) = &self.log {
            log.close();
        }
        tracing::info!(written = self.stats.written.load(Ordering::Relaxed), "click writer stopped");
    }

    /// The first message of a batch, read as [`WriterState::reading`] says: waiting for it while
    /// running (the one wake-up a batch costs the click path), retrying the database on schedule
    /// during an outage, not reading the queue at all while the journal refuses spills, and taking
    /// only what is already queued once stopping. `None` ends the writer.
    fn first_message(&mut self) -> Option<Message> {
        loop {
            match self.state.reading() {
                Reading::Drain => return self.rx.try_recv().ok(),
                // An error means every sender is gone: nothing more can arrive.
                Reading::Wait => return self.rx.recv().ok(),
                Reading::WaitUntil(retry) => {
                    match self.rx.recv_timeout(retry.saturating_duration_since(Instant::now())) {
                        Ok(message) => return Some(message),
                        Err(RecvTimeoutError::Timeout) => {}
                        Err(RecvTimeoutError::Disconnected) => return None,
                    }
                }
                Reading::Paused(retry) => {
                    // `Stop` waits in the unread queue: the flag is how shutdown gets through.
                    if self.shutdown_requested.load(Ordering::Acquire) {
                        self.state.stop_requested();
                        continue;
                    }
                    std::thread::park_timeout(retry.saturating_duration_since(Instant::now()));
                }
            }
            let decision = self.state.tick(Instant::now());
            self.execute(decision, &[]);
        }
    }

    fn accept(&mut self, message: Message, batch: &mut Vec<ClickRecord>, acks: &mut Vec<oneshot::Sender<()>>) {
        match message {
            Message::Click(click) => batch.push(click),
            Message::Flush(ack) => acks.push(ack),
            Message::Stop => self.state.stop_requested(),
        }
    }

    /// Carries out `decision`, and the ones that follow from how it went, until the state has
    /// nothing more to do. `batch` is what [`Decision::Write`] writes.
    fn execute(&mut self, mut decision: Decision, batch: &[ClickRecord]) {
        // Clicks a retry wrote from memory, for the recovery log line.
        let mut from_memory = 0;
        loop {
            // What the last transition left in memory (a batch just held, a spill, a retry).
            self.stats.held.store(self.state.held().len() as u64, Ordering::Relaxed);
            decision = match decision {
                Decision::Done => break,
                Decision::Write => match self.insert(batch) {
                    Ok(()) => Decision::Done,
                    Err(unreachable) => {
                        tracing::warn!(
                            reason = %unreachable.reason,
                            clicks = unreachable.rest.len(),
                            "database unavailable: holding clicks, spilling to the journal past the memory bound"
                        );
                        self.state.unreachable(unreachable.rest, Instant::now())
                    }
                },
                Decision::Spill => self.spill(),
                Decision::Retry => match self.write_held() {
                    Ok(written) => {
                        from_memory = written;
                        self.state.held_written()
                    }
                    Err(written) => self.state.retry_failed(written, Instant::now()),
                },
                Decision::Replay => self.replay(from_memory),
                Decision::Lose { clicks } if self.log.is_some() => {
                    tracing::error!(
                        clicks,
                        "database and journal unavailable at shutdown: clicks left in the click log for the next start"
                    );
                    Decision::Done
                }
                Decision::Lose { clicks } => {
                    self.stats.failed.fetch_add(clicks as u64, Ordering::Relaxed);
                    tracing::error!(clicks, "clicks lost at shutdown: database and journal unavailable");
                    Decision::Done
                }
            };
        }
        self.stats.outage.store(self.state.in_outage(), Ordering::Relaxed);
    }

    /// Writes `clicks` in one transaction, click by click if the database refuses the batch. Fails
    /// with the clicks not written if the database is unreachable.
    fn insert<'a>(&self, clicks: &'a [ClickRecord]) -> Result<(), Unreachable<'a>> {
        let started = Instant::now();
        let written = self.runtime.block_on(insert_clicks_isolating(self.store.as_ref(), clicks));
        // Committed or refused for good: either way the log has nothing left to replay for them.
        let taken = written.unreachable.as_ref().map_or(clicks.len(), |unreachable| unreachable.from);
        self.release(&clicks[..taken]);
        self.stats.written.fetch_add(written.written, Ordering::Relaxed);
        self.stats.failed.fetch_add(written.refused.len() as u64, Ordering::Relaxed);
        for (click_id, error) in &written.refused {
            tracing::error!(%error, %click_id, "click refused by the database");
        }
        if let Some(unreachable) = written.unreachable {
            return Err(Unreachable { rest: &clicks[unreachable.from..], reason: unreachable.reason });
        }
        self.metrics.batch_size.observe(clicks.len() as u64);
        self.metrics.flush_latency.observe_duration(started.elapsed());
        Ok(())
    }

    /// Writes the held clicks a batch at a time: `Ok` with how many, or `Err` with how many were
    /// written before the database was found unreachable.
    fn write_held(&self) -> Result<usize, usize> {
        let held = self.state.held();
        let batch_size = self.config.batch_size.max(1);
        for (number, chunk) in held.chunks(batch_size).enumerate() {
            if let Err(unreachable) = self.insert(chunk) {
                return Err(number * batch_size + chunk.len() - unreachable.rest.len());
            }
        }
        Ok(held.len())
    }

    /// Appends every held click to the journal.
    fn spill(&mut self) -> Decision {
        let now = Instant::now();
        match self.journal.append(self.state.held()) {
            Ok(()) => {
                self.release(self.state.held());
                if self.state.is_finishing() {
                    tracing::warn!(
                        clicks = self.state.held().len(),
                        "database unavailable at shutdown: clicks kept in the journal for the next start"
                    );
                }
                self.state.spilled(now)
            }
            Err(error) => {
                if !self.state.journal_refused() {
                    tracing::error!(%error, held = self.state.held().len(), "journal refused clicks: the queue will fill and /click answer 503");
                }
                self.state.spill_refused(now)
            }
        }
    }

    /// Tells the click log that `clicks` are taken care of.
    fn release(&self, clicks: &[ClickRecord]) {
        if let Some(log) = &self.log {
            log.release(clicks.iter().filter_map(|click| click.log_slot));
        }
    }

    /// Replays the journal into the store once the database takes clicks again.
    fn replay(&mut self, from_memory: usize) -> Decision {
        match self.runtime.block_on(self.journal.replay(self.store.as_ref(), self.config.batch_size)) {
            Ok(replayed) => {
                self.stats.written.fetch_add(replayed.written, Ordering::Relaxed);
                self.stats.failed.fetch_add(replayed.failed, Ordering::Relaxed);
                if let Mode::Outage(outage) = self.state.mode() {
                    tracing::info!(
                        from_memory,
                        from_journal = replayed.written,
                        refused = replayed.failed,
                        outage_seconds = outage.since.elapsed().as_secs_f64(),
                        "database back: held and journaled clicks written"
                    );
                }
                self.state.replayed()
            }
            Err(error) => {
                tracing::warn!(%error, "journal replay failed; retrying");
                self.state.replay_failed(Instant::now())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! The worker against a real embedded store that is made unreachable on demand, and a real
    //! journal: the outage rules of `outage.rs`, carried out end to end.

    use std::path::PathBuf;
    use std::sync::atomic::AtomicU64;

    use async_trait::async_trait;
    use time::OffsetDateTime;
    use uuid::Uuid;

    use super::*;
    use crate::routing::{WeightPolicy, WeightedOffer};
    use crate::store::sqlite::SqliteStore;
    use crate::store::{
        ClaimedPostback, ClickSummary, ClickUpkeep, ClickUpkeepDone, DailyTotal, DashboardSession, Grouping,
        HeldPostback, HoldLimits, HoldOutcome, HourlyFigures, RoutingShare, SegmentStats,
    };
    use crate::store::{
        ClickOwner, Conversion, ConversionOutcome, DeleteOutcome, NewOffer, Offer, OfferPatch, OfferStats,
        PostbackLogEntry, PostbackLogQuery, PostbackLogRow, RoutingEvidence, StoreError, StoreResult, TimeRange,
    };

    /// The embedded store, whose click inserts find the database unreachable while `down` is set.
    struct FailingStore {
        inner: SqliteStore,
        down: AtomicBool,
        /// Inserts refused as unreachable, to see the writer retrying.
        refused_inserts: AtomicU64,
    }

    #[async_trait]
    impl Store for FailingStore {
        async fn ping(&self) -> StoreResult<()> {
            self.inner.ping().await
        }
        async fn routing_version(&self) -> StoreResult<i64> {
            self.inner.routing_version().await
        }
        async fn list_offers(&self, active_only: bool) -> StoreResult<Vec<Offer>> {
            self.inner.list_offers(active_only).await
        }
        async fn get_offer(&self, id: i64) -> StoreResult<Option<Offer>> {
            self.inner.get_offer(id).await
        }
        async fn create_offer(&self, offer: &NewOffer) -> StoreResult<Offer> {
            self.inner.create_offer(offer).await
        }
        async fn update_offer(&self, id: i64, patch: &OfferPatch) -> StoreResult<Option<Offer>> {
            self.inner.update_offer(id, patch).await
        }
        async fn delete_offer(&self, id: i64) -> StoreResult<DeleteOutcome> {
            self.inner.delete_offer(id).await
        }
        async fn insert_clicks(&self, clicks: &[ClickRecord]) -> StoreResult<u64> {
            if self.down.load(Ordering::SeqCst) {
                self.refused_inserts.fetch_add(1, Ordering::SeqCst);
                return Err(StoreError::Unavailable("switched off by the test".into()));
            }
            self.inner.insert_clicks(clicks).await
        }
        async fn click_owner(&self, click_id: Uuid) -> StoreResult<Option<ClickOwner>> {
            self.inner.click_owner(click_id).await
        }
        async fn apply_conversion(
            &self,
            conversion: &Conversion,
            log: &PostbackLogEntry,
        ) -> StoreResult<ConversionOutcome> {
            self.inner.apply_conversion(conversion, log).await
        }
        async fn log_postback(&self, entry: &PostbackLogEntry) -> StoreResult<()> {
            self.inner.log_postback(entry).await
        }
        async fn postback_log(&self, query: &PostbackLogQuery) -> StoreResult<Vec<PostbackLogRow>> {
            self.inner.postback_log(query).await
        }
        async fn hold_postback(
            &self,
            held: &HeldPostback,
            log: &PostbackLogEntry,
            limits: HoldLimits,
        ) -> StoreResult<HoldOutcome> {
            self.inner.hold_postback(held, log, limits).await
        }
        async fn claim_held_postbacks(
            &self,
            now: OffsetDateTime,
            lease: Duration,
            limit: usize,
        ) -> StoreResult<Vec<ClaimedPostback>> {
            self.inner.claim_held_postbacks(now, lease, limit).await
        }
        async fn release_held_postback(&self, claimed: &ClaimedPostback) -> StoreResult<()> {
            self.inner.release_held_postback(claimed).await
        }
        async fn expire_held_postbacks(&self, now: OffsetDateTime) -> StoreResult<u64> {
            self.inner.expire_held_postbacks(now).await
        }
        async fn offer_stats(&self, range: TimeRange) -> StoreResult<Vec<OfferStats>> {
            self.inner.offer_stats(range).await
        }
        async fn segment_stats(&self, range: TimeRange, grouping: Grouping) -> StoreResult<Vec<SegmentStats>> {
            self.inner.segment_stats(range, grouping).await
        }
        async fn daily_totals(&self, day_start: OffsetDateTime) -> StoreResult<Vec<DailyTotal>> {
            self.inner.daily_totals(day_start).await
        }
        async fn routing_evidence(&self, now: OffsetDateTime, horizon_hours: usize) -> StoreResult<RoutingEvidence> {
            self.inner.routing_evidence(now, horizon_hours).await
        }
        async fn hourly_figures(&self, from: OffsetDateTime, to: OffsetDateTime) -> StoreResult<Vec<HourlyFigures>> {
            self.inner.hourly_figures(from, to).await
        }
        async fn latest_clicks(&self, limit: u32) -> StoreResult<Vec<ClickSummary>> {
            self.inner.latest_clicks(limit).await
        }
        async fn record_routing(&self, shares: &[RoutingShare]) -> StoreResult<()> {
            self.inner.record_routing(shares).await
        }
        async fn routing_history(&self, from: OffsetDateTime, to: OffsetDateTime) -> StoreResult<Vec<RoutingShare>> {
            self.inner.routing_history(from, to).await
        }
        async fn create_session(&self, session: &DashboardSession) -> StoreResult<()> {
            self.inner.create_session(session).await
        }
        async fn find_session(&self, id_hash: &str, now: OffsetDateTime) -> StoreResult<Option<DashboardSession>> {
            self.inner.find_session(id_hash, now).await
        }
        async fn delete_session(&self, id_hash: &str) -> StoreResult<()> {
            self.inner.delete_session(id_hash).await
        }
        async fn maintain_clicks(&self, upkeep: ClickUpkeep) -> StoreResult<ClickUpkeepDone> {
            self.inner.maintain_clicks(upkeep).await
        }
        async fn recalculate_weights(
            &self,
            last_n_clicks: u32,
            policy: &WeightPolicy,
        ) -> StoreResult<Option<Vec<WeightedOffer>>> {
            self.inner.recalculate_weights(last_n_clicks, policy).await
        }
    }

    /// A directory removed when the test ends, however it ends.
    struct TempDir(PathBuf);

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// A store (with one offer) and a journal directory in a fresh temporary directory.
    struct Fixture {
        store: Arc<FailingStore>,
        offer_id: i64,
        journal_dir: PathBuf,
        /// Last, so it is removed after the store is closed.
        _dir: TempDir,
    }

    impl Fixture {
        async fn new() -> Fixture {
            let dir = TempDir(std::env::temp_dir().join(format!("casino-writer-{}", Uuid::now_v7().simple())));
            let inner =
                SqliteStore::open(&dir.0.join("clicks.sqlite"), crate::routing::SegmentDims::DEFAULT).await.unwrap();
            let offer = NewOffer {
                name: "A".into(),
                casino_url: "https://a.example/".into(),
                weight: 1.0,
                postback_secret: "secret".into(),
                active: true,
                event_aliases: Default::default(),
                targeting: Default::default(),
                daily_caps: Default::default(),
            };
            let offer_id = inner.create_offer(&offer).await.unwrap().id;
            let store =
                Arc::new(FailingStore { inner, down: AtomicBool::new(false), refused_inserts: AtomicU64::new(0) });
            Fixture { store, offer_id, journal_dir: dir.0.join("journal"), _dir: dir }
        }

        fn spawn(&self, config: WriterConfig, journal_max_bytes: u64) -> ClickWriter {
            self.spawn_with(config, journal_max_bytes, None)
        }

        fn spawn_with(&self, config: WriterConfig, journal_max_bytes: u64, log: Option<ClickLog>) -> ClickWriter {
            let journal = Journal::open(&self.journal_dir, journal_max_bytes).unwrap();
            let store: Arc<dyn Store> = self.store.clone();
            ClickWriter::spawn(store, config, Handle::current(), Arc::default(), journal, log).unwrap()
        }

        /// The click log's segment files in the journal directory.
        fn log_files(&self) -> Vec<PathBuf> {
            let files = std::fs::read_dir(&self.journal_dir).unwrap().map(|entry| entry.unwrap().path());
            files.filter(|path| path.file_name().unwrap().to_string_lossy().starts_with("clicklog-")).collect()
        }

        /// What a process killed now would replay from its click log (read from a copy of it).
        fn log_replay(&self) -> Vec<Uuid> {
            let copy = TempDir(self.journal_dir.with_file_name("log-copy"));
            std::fs::create_dir_all(&copy.0).unwrap();
            for file in self.log_files() {
                std::fs::copy(&file, copy.0.join(file.file_name().unwrap())).unwrap();
            }
            let (_, recovered) = ClickLog::open(&copy.0, None).unwrap();
            let mut ids: Vec<Uuid> = recovered.clicks.iter().map(|click| click.click_id).collect();
            ids.sort_unstable();
            ids
        }

        fn database_down(&self, down: bool) {
            self.store.down.store(down, Ordering::SeqCst);
        }

        fn click(&self) -> ClickRecord {
            ClickRecord {
                click_id: Uuid::now_v7(),
                offer_id: self.offer_id,
                created_at: OffsetDateTime::now_utc(),
                user_agent: Some("test".into()),
                ip_address: None,
                referrer: None,
                source: None,
                campaign: None,
                propensity: 1.0,
                country: None,
                device: None,
                is_bot: false,
                is_fallback: false,
                log_slot: None,
            }
        }

        /// Asserts that each of `clicks` is stored, and stored once: the hourly rollup, bumped only
        /// for new rows, counts exactly as many.
        async fn assert_stored_once(&self, clicks: &[ClickRecord]) {
            for click in clicks {
                assert!(self.store.click_owner(click.click_id).await.unwrap().is_some(), "{} stored", click.click_id);
            }
            let stats = self.store.offer_stats(TimeRange::default()).await.unwrap();
            assert_eq!(stats[0].clicks, clicks.len() as u64, "each click counted once");
        }
    }

    /// Polls `condition` until it holds, failing the test after ten seconds.
    async fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !condition() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Queues `n` new clicks, each once there is room (bounded wait): the writer keeps reading
    /// during an outage. Returns them.
    async fn enqueue(fixture: &Fixture, queue: &ClickQueue, capacity: usize, n: usize) -> Vec<ClickRecord> {
        let clicks: Vec<ClickRecord> = (0..n).map(|_| fixture.click()).collect();
        for click in &clicks {
            wait_for("room in the queue", || queue.depth() < capacity).await;
            queue.try_enqueue(click.clone()).unwrap();
        }
        clicks
    }

    const CONFIG: WriterConfig =
        WriterConfig { queue_capacity: 64, batch_size: 8, flush_interval: Duration::from_millis(5), spill_after: 16 };

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_outage_holds_and_spills_clicks_then_stores_each_once_when_the_database_is_back() {
        let fixture = Fixture::new().await;
        let writer = fixture.spawn(CONFIG, 1 << 20);
        let queue = writer.queue().clone();
        fixture.database_down(true);
        let clicks = enqueue(&fixture, &queue, CONFIG.queue_capacity, 100).await;
        let (stats, journal) = (queue.stats(), queue.journal());
        wait_for("every click held or journaled", || {
            stats.held.load(Ordering::Relaxed) + journal.clicks.load(Ordering::Relaxed) == 100
        })
        .await;
        assert!(stats.outage.load(Ordering::Relaxed));
        assert!(journal.clicks.load(Ordering::Relaxed) > 0, "past spill_after, clicks went to the journal");
        assert!(stats.held.load(Ordering::Relaxed) < CONFIG.spill_after as u64, "memory stays bounded");
        assert_eq!(stats.written.load(Ordering::Relaxed), 0);
        assert_eq!(queue.flush(Duration::from_secs(5)).await, Err(FlushError), "no flush during an outage");

        fixture.database_down(false);
        wait_for("the outage to end", || !stats.outage.load(Ordering::Relaxed)).await;
        assert_eq!(stats.written.load(Ordering::Relaxed), 100);
        assert_eq!((stats.held.load(Ordering::Relaxed), journal.clicks.load(Ordering::Relaxed)), (0, 0));
        assert_eq!((stats.failed.load(Ordering::Relaxed), stats.rejected.load(Ordering::Relaxed)), (0, 0));
        fixture.assert_stored_once(&clicks).await;
        assert_eq!(queue.flush(Duration::from_secs(5)).await, Ok(()), "flushes are acknowledged again");
        writer.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_click_log_keeps_exactly_the_clicks_neither_stored_nor_journaled() {
        let fixture = Fixture::new().await;
        let (log, _) = ClickLog::open(&fixture.journal_dir, None).unwrap();
        let writer = fixture.spawn_with(CONFIG, 1 << 20, Some(log));
        let queue = writer.queue().clone();
        let (stats, journal) = (queue.stats(), queue.journal());
        let stored = enqueue(&fixture, &queue, CONFIG.queue_capacity, 10).await;
        assert_eq!(queue.flush(Duration::from_secs(5)).await, Ok(()));
        assert!(fixture.log_replay().is_empty(), "committed clicks are done in the log");

        // An outage: past `spill_after` clicks go to the journal, the rest are held in memory.
        fixture.database_down(true);
        let during = enqueue(&fixture, &queue, CONFIG.queue_capacity, 40).await;
        wait_for("every click held or journaled", || {
            stats.held.load(Ordering::Relaxed) + journal.clicks.load(Ordering::Relaxed) == 40
        })
        .await;
        let held = stats.held.load(Ordering::Relaxed) as usize;
        assert!(held > 0 && held < 40, "{held} held");
        // A kill now would replay the held clicks from the log (the journal has the others): the
        // last `held` of them, in queue order.
        let mut expected: Vec<Uuid> = during[40 - held..].iter().map(|click| click.click_id).collect();
        expected.sort_unstable();
        assert_eq!(fixture.log_replay(), expected);

        fixture.database_down(false);
        wait_for("the outage to end", || !stats.outage.load(Ordering::Relaxed)).await;
        assert!(fixture.log_replay().is_empty(), "stored clicks are done in the log");
        writer.shutdown().await;
        fixture.assert_stored_once(&[stored, during].concat()).await;
        assert_eq!(fixture.log_files(), Vec::<PathBuf>::new(), "a clean stop leaves no log segment");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_journal_that_refuses_the_spill_stops_the_queue_being_read_until_the_database_is_back() {
        let fixture = Fixture::new().await;
        let config = WriterConfig { queue_capacity: 8, batch_size: 4, spill_after: 4, ..CONFIG };
        let writer = fixture.spawn(config, 1); // refuses every spill
        let queue = writer.queue().clone();
        let stats = queue.stats();
        fixture.database_down(true);
        let (mut accepted, mut refused) = (Vec::new(), 0);
        wait_for("the writer to hold clicks behind a full queue", || {
            let click = fixture.click();
            match queue.try_enqueue(click.clone()) {
                Ok(()) => accepted.push(click),
                Err(error) => {
                    assert_eq!(error, EnqueueError::Full);
                    refused += 1;
                }
            }
            stats.held.load(Ordering::Relaxed) >= config.spill_after as u64 && queue.depth() == config.queue_capacity
        })
        .await;
        // The writer goes on retrying the database, but reads no more clicks.
        let held = stats.held.load(Ordering::Relaxed);
        let retries = fixture.store.refused_inserts.load(Ordering::SeqCst);
        wait_for("two more retries", || fixture.store.refused_inserts.load(Ordering::SeqCst) >= retries + 2).await;
        assert_eq!((stats.held.load(Ordering::Relaxed), queue.depth()), (held, config.queue_capacity));
        assert_eq!(held as usize + queue.depth(), accepted.len(), "every accepted click is held or queued");
        assert_eq!(queue.journal().clicks.load(Ordering::Relaxed), 0);
        assert_eq!(queue.try_enqueue(fixture.click()), Err(EnqueueError::Full));
        assert_eq!(stats.rejected.load(Ordering::Relaxed), refused + 1, "every refusal is counted");

        fixture.database_down(false);
        wait_for("the accepted clicks written", || stats.written.load(Ordering::Relaxed) == accepted.len() as u64)
            .await;
        fixture.assert_stored_once(&accepted).await;
        let late = fixture.click();
        queue.try_enqueue(late.clone()).expect("the queue is read again");
        assert_eq!(queue.flush(Duration::from_secs(5)).await, Ok(()));
        fixture.assert_stored_once(&[accepted, vec![late]].concat()).await;
        writer.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn shutdown_during_an_outage_journals_what_is_held_for_the_next_start() {
        let fixture = Fixture::new().await;
        let config = WriterConfig { spill_after: 1_000, ..CONFIG };
        let writer = fixture.spawn(config, 1 << 20);
        let queue = writer.queue().clone();
        fixture.database_down(true);
        let clicks = enqueue(&fixture, &queue, config.queue_capacity, 20).await;
        wait_for("every click held", || queue.stats().held.load(Ordering::Relaxed) == 20).await;
        assert_eq!(queue.journal().clicks.load(Ordering::Relaxed), 0, "under spill_after: only in memory");

        writer.shutdown().await;
        assert_eq!(queue.journal().clicks.load(Ordering::Relaxed), 20, "shutdown spilled what was held");
        let stats = queue.stats();
        assert_eq!((stats.held.load(Ordering::Relaxed), stats.failed.load(Ordering::Relaxed)), (0, 0));
        assert_eq!(stats.written.load(Ordering::Relaxed), 0);

        fixture.database_down(false);
        let mut journal = Journal::open(&fixture.journal_dir, 1 << 20).unwrap();
        let replayed = journal.replay(fixture.store.as_ref(), config.batch_size).await.unwrap();
        assert_eq!((replayed.written, replayed.failed), (20, 0));
        assert!(journal.is_empty());
        fixture.assert_stored_once(&clicks).await;
    }
}

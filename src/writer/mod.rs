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

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::{JoinHandle, Thread};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TryRecvError, TrySendError};
use tokio::runtime::Handle;
use tokio::sync::oneshot;

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
}

impl ClickQueue {
    /// Queues a click without waiting.
    #[inline]
    pub fn try_enqueue(&self, click: ClickRecord) -> Result<(), EnqueueError> {
        match self.tx.try_send(Message::Click(click)) {
            Ok(()) => {
                if self.tx.len() >= self.wake_at {
                    self.writer.unpark();
                }
                Ok(())
            }
            Err(TrySendError::Full(_)) => {
                self.stats.rejected.fetch_add(1, Ordering::Relaxed);
                Err(EnqueueError::Full)
            }
            Err(TrySendError::Disconnected(_)) => {
                self.stats.rejected.fetch_add(1, Ordering::Relaxed);
                Err(EnqueueError::Stopped)
            }
        }
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
    /// replayed already: the writer appends to it during outages.
    pub fn spawn(
        store: Arc<dyn Store>,
        config: WriterConfig,
        runtime: Handle,
        metrics: Arc<Metrics>,
        journal: Journal,
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
            state,
            shutdown_requested: shutdown_requested.clone(),
        };
        let thread = std::thread::Builder::new().name("click-writer".into()).spawn(move || worker.run())?;
        let writer = thread.thread().clone();
        let wake_at = config.batch_size.min(config.queue_capacity / 2).max(1);
        let queue = ClickQueue { tx, stats, writer, wake_at, journal: journal_stats };
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

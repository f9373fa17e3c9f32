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
//!   the queue fills and clicks are refused with 503 and counted, never lost silently.
//! - A flush request is a message in the same FIFO: when it is acknowledged, every click queued before
//!   it is committed. Postbacks use it for clicks that may still be waiting in the queue. During an
//!   outage a flush is not acknowledged (the caller answers 503).
//! - On shutdown the writer drains the queue, writes the last batch and exits; during an outage it
//!   spills what it holds to the journal instead, which the next start replays.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::{JoinHandle, Thread};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TryRecvError, TrySendError};
use tokio::runtime::Handle;
use tokio::sync::oneshot;

use crate::journal::{Journal, JournalStats};
use crate::metrics::Metrics;
use crate::store::{ClickRecord, Store, insert_clicks_isolating};

/// First pause before retrying an unreachable database; doubled up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
/// Longest pause between retries of an unreachable database.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

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
        // A journal that start-up could not replay is retried as after an outage.
        let outage = (!journal.is_empty()).then(|| {
            let now = Instant::now();
            Outage { since: now, next_retry: now, backoff: FIRST_BACKOFF, journal_refused: false }
        });
        stats.outage.store(outage.is_some(), Ordering::Relaxed);
        let worker = Worker {
            rx,
            store,
            runtime,
            config,
            stats: stats.clone(),
            metrics,
            journal,
            held: Vec::new(),
            outage,
            stopping: false,
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

/// The writer's view of an unreachable database.
struct Outage {
    since: Instant,
    next_retry: Instant,
    backoff: Duration,
    /// The journal refused a spill: stop reading the queue until a retry succeeds.
    journal_refused: bool,
}

/// Clicks not written because the database is unreachable: a suffix of what was to be written.
struct Unreachable<'a> {
    rest: &'a [ClickRecord],
    reason: String,
}

struct Worker {
    rx: Receiver<Message>,
    store: Arc<dyn Store>,
    runtime: Handle,
    config: WriterConfig,
    stats: Arc<WriterStats>,
    metrics: Arc<Metrics>,
    journal: Journal,
    /// Clicks read from the queue during an outage, not yet written or spilled.
    held: Vec<ClickRecord>,
    outage: Option<Outage>,
    /// The `Stop` message was read (or every sender is gone): drain without waiting, then exit.
    stopping: bool,
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
                            self.stopping = true;
                            break;
                        }
                    }
                }
                let now = Instant::now();
                if batch.len() >= batch_size || !acks.is_empty() || self.stopping || now >= deadline {
                    break;
                }
                // Sleep without waiting on the channel, so that senders do not wake this thread for
                // every click; they unpark it when a batch is full (or the queue half full), as do
                // flush and stop requests.
                std::thread::park_timeout(deadline - now);
            }
            if !batch.is_empty() {
                self.store_batch(&batch);
                batch.clear();
            }
            // Acknowledged only when everything before the request is in the database; dropped
            // (the caller sees a failed flush) while clicks wait in memory or in the journal.
            let all_written = self.outage.is_none() && self.journal.is_empty();
            for ack in acks.drain(..) {
                if all_written {
                    let _ = ack.send(());
                }
            }
        }
        self.finish();
        tracing::info!(written = self.stats.written.load(Ordering::Relaxed), "click writer stopped");
    }

    /// The first message of a batch. Waits for it while running (the one wake-up a batch costs the
    /// click path), retrying the database on schedule during an outage, and not reading the queue at
    /// all while the journal refuses spills; takes only what is already queued once stopping.
    /// `None` ends the writer.
    fn first_message(&mut self) -> Option<Message> {
        loop {
            if self.stopping {
                return self.rx.try_recv().ok();
            }
            let Some(outage) = &self.outage else {
                // An error means every sender is gone: nothing more can arrive.
                return self.rx.recv().ok();
            };
            let wait = outage.next_retry.saturating_duration_since(Instant::now());
            if outage.journal_refused {
                if self.shutdown_requested.load(Ordering::Acquire) {
                    self.stopping = true;
                    continue;
                }
                std::thread::park_timeout(wait);
            } else {
                match self.rx.recv_timeout(wait) {
                    Ok(message) => return Some(message),
                    Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                    Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return None,
                }
            }
            self.retry_if_due();
        }
    }

    fn accept(&mut self, message: Message, batch: &mut Vec<ClickRecord>, acks: &mut Vec<oneshot::Sender<()>>) {
        match message {
            Message::Click(click) => batch.push(click),
            Message::Flush(ack) => acks.push(ack),
            Message::Stop => self.stopping = true,
        }
    }

    /// Writes a batch, or holds it during an outage.
    fn store_batch(&mut self, batch: &[ClickRecord]) {
        if self.outage.is_some() {
            self.hold(batch);
            self.retry_if_due();
            return;
        }
        if let Err(unreachable) = self.insert(batch) {
            tracing::warn!(
                reason = %unreachable.reason,
                clicks = unreachable.rest.len(),
                "database unavailable: holding clicks, spilling to the journal past the memory bound"
            );
            let now = Instant::now();
            self.outage = Some(Outage {
                since: now,
                next_retry: now + FIRST_BACKOFF,
                backoff: FIRST_BACKOFF,
                journal_refused: false,
            });
            self.stats.outage.store(true, Ordering::Relaxed);
            self.hold(unreachable.rest);
        }
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

    /// Keeps `clicks` in memory; past the bound, spills everything held to the journal.
    fn hold(&mut self, clicks: &[ClickRecord]) {
        self.held.extend_from_slice(clicks);
        if self.held.len() >= self.config.spill_after {
            self.spill();
        }
        self.stats.held.store(self.held.len() as u64, Ordering::Relaxed);
    }

    /// Moves every held click to the journal. On failure they stay held, and the writer stops
    /// reading the queue until the database is back (or shutdown).
    fn spill(&mut self) {
        let refused = match self.journal.append(&self.held) {
            Ok(()) => {
                self.held.clear();
                false
            }
            Err(error) => {
                if self.outage.as_ref().is_some_and(|outage| !outage.journal_refused) {
                    tracing::error!(%error, held = self.held.len(), "journal refused clicks: the queue will fill and /click answer 503");
                }
                true
            }
        };
        if let Some(outage) = &mut self.outage {
            outage.journal_refused = refused;
        }
        self.stats.held.store(self.held.len() as u64, Ordering::Relaxed);
    }

    /// During an outage, once the back-off has passed: tries to write what is held, then the journal.
    fn retry_if_due(&mut self) {
        let Some(outage) = &mut self.outage else { return };
        if Instant::now() < outage.next_retry {
            return;
        }
        let since = outage.since;
        let mut held = std::mem::take(&mut self.held);
        // Index of the first held click not written, if the database is still unreachable.
        let mut unwritten = None;
        let batch_size = self.config.batch_size.max(1);
        for (number, chunk) in held.chunks(batch_size).enumerate() {
            if let Err(unreachable) = self.insert(chunk) {
                unwritten = Some(number * batch_size + chunk.len() - unreachable.rest.len());
                break;
            }
        }
        if let Some(first_unwritten) = unwritten {
            held.drain(..first_unwritten);
            self.held = held;
            self.back_off();
        } else {
            // Nothing held any more: whatever the replay does, the queue may be read again.
            if let Some(outage) = &mut self.outage {
                outage.journal_refused = false;
            }
            match self.runtime.block_on(self.journal.replay(self.store.as_ref(), self.config.batch_size)) {
                Ok(replayed) => {
                    self.stats.written.fetch_add(replayed.written, Ordering::Relaxed);
                    self.stats.failed.fetch_add(replayed.failed, Ordering::Relaxed);
                    tracing::info!(
                        from_memory = held.len(),
                        from_journal = replayed.written,
                        refused = replayed.failed,
                        outage_seconds = since.elapsed().as_secs_f64(),
                        "database back: held and journaled clicks written"
                    );
                    self.outage = None;
                    self.stats.outage.store(false, Ordering::Relaxed);
                }
                Err(error) => {
                    tracing::warn!(%error, "journal replay failed; retrying");
                    self.back_off();
                }
            }
        }
        self.stats.held.store(self.held.len() as u64, Ordering::Relaxed);
    }

    fn back_off(&mut self) {
        if let Some(outage) = &mut self.outage {
            outage.backoff = (outage.backoff * 2).min(MAX_BACKOFF);
            outage.next_retry = Instant::now() + outage.backoff;
        }
    }

    /// At exit: one last attempt to write what is held, else spill it to the journal for the next
    /// start. Only a journal that refuses too makes clicks count as failed.
    fn finish(&mut self) {
        if self.held.is_empty() {
            return;
        }
        if let Some(outage) = &mut self.outage {
            outage.next_retry = Instant::now();
        }
        self.retry_if_due();
        if self.held.is_empty() {
            return;
        }
        match self.journal.append(&self.held) {
            Ok(()) => tracing::warn!(
                clicks = self.held.len(),
                "database unavailable at shutdown: clicks kept in the journal for the next start"
            ),
            Err(error) => {
                self.stats.failed.fetch_add(self.held.len() as u64, Ordering::Relaxed);
                tracing::error!(%error, clicks = self.held.len(), "clicks lost at shutdown: database and journal unavailable");
            }
        }
        self.held.clear();
        self.stats.held.store(0, Ordering::Relaxed);
    }
}

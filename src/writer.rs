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
//!   only the first click of a batch, a full batch, a flush or a stop wake the writer.
//! - A failed write is retried with back-off while the database is unreachable: the batch stays in
//!   memory and the queue absorbs new clicks meanwhile. A batch the database refuses outright is
//!   retried click by click, so one bad row cannot block the others; rows still refused are counted as
//!   failed and logged with their ids.
//! - A flush request is a message in the same FIFO: when it is acknowledged, every click queued before
//!   it is committed. Postbacks use it for clicks that may still be waiting in the queue.
//! - On shutdown the writer drains the queue until it is empty, writes the last batch and exits.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::{JoinHandle, Thread};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TryRecvError, TrySendError};
use tokio::runtime::Handle;
use tokio::sync::oneshot;

use crate::metrics::Metrics;
use crate::store::{ClickRecord, Store, StoreError};

/// How long the writer keeps retrying an unreachable database after shutdown was requested.
const SHUTDOWN_RETRY_LIMIT: Duration = Duration::from_secs(30);
/// Longest pause between retries of an unreachable database.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Batching settings.
#[derive(Debug, Clone, Copy)]
pub struct WriterConfig {
    /// Capacity of the queue.
    pub queue_capacity: usize,
    /// Most clicks per transaction.
    pub batch_size: usize,
    /// Deadline of a partial batch, from its first click.
    pub flush_interval: Duration,
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
    /// The writer thread, woken when a batch is full or a flush is requested.
    writer: Thread,
    /// Clicks per batch: a queue this long is a full batch.
    batch_size: usize,
}

impl ClickQueue {
    /// Queues a click without waiting.
    #[inline]
    pub fn try_enqueue(&self, click: ClickRecord) -> Result<(), EnqueueError> {
        match self.tx.try_send(Message::Click(click)) {
            Ok(()) => {
                if self.tx.len() >= self.batch_size {
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
}

/// The running writer thread.
pub struct ClickWriter {
    queue: ClickQueue,
    thread: JoinHandle<()>,
    /// Seen by a writer busy retrying a batch, which does not read the queue meanwhile.
    shutdown_requested: Arc<AtomicBool>,
}

impl ClickWriter {
    /// Starts the writer thread. `runtime` runs the store's futures; it must be a multi-thread runtime,
    /// whose workers drive the I/O while this thread blocks on them.
    pub fn spawn(
        store: Arc<dyn Store>,
        config: WriterConfig,
        runtime: Handle,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<ClickWriter> {
        let (tx, rx) = crossbeam_channel::bounded(config.queue_capacity);
        let stats = Arc::new(WriterStats::default());
        let shutdown_requested = Arc::new(AtomicBool::new(false));
        let worker = Worker {
            rx,
            store,
            runtime,
            config,
            stats: stats.clone(),
            metrics,
            stopping: None,
            shutdown_requested: shutdown_requested.clone(),
            retrying_since: None,
            gave_up: false,
        };
        let thread = std::thread::Builder::new().name("click-writer".into()).spawn(move || worker.run())?;
        let writer = thread.thread().clone();
        let queue = ClickQueue { tx, stats, writer, batch_size: config.batch_size };
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
            // Stop goes behind every click already queued, so all of them are written first.
            let _ = queue.tx.send(Message::Stop);
            queue.writer.unpark();
            let _ = thread.join();
        })
        .await;
    }
}

struct Worker {
    rx: Receiver<Message>,
    store: Arc<dyn Store>,
    runtime: Handle,
    config: WriterConfig,
    stats: Arc<WriterStats>,
    metrics: Arc<Metrics>,
    /// When the `Stop` message was read; from then on the queue is drained without waiting.
    stopping: Option<Instant>,
    /// Set by [`ClickWriter::shutdown`] before `Stop` is queued.
    shutdown_requested: Arc<AtomicBool>,
    /// Since when the writer has been retrying an unreachable database during shutdown.
    retrying_since: Option<Instant>,
    /// The database stayed unreachable past [`SHUTDOWN_RETRY_LIMIT`] during shutdown: the remaining
    /// clicks are counted as failed without another attempt.
    gave_up: bool,
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
                            self.stopping.get_or_insert_with(Instant::now);
                            break;
                        }
                    }
                }
                let now = Instant::now();
                if batch.len() >= batch_size || !acks.is_empty() || self.stopping.is_some() || now >= deadline {
                    break;
                }
                // Sleep without waiting on the channel, so that senders do not wake this thread for
                // every click; they unpark it when a batch is full, as do flush and stop requests.
                std::thread::park_timeout(deadline - now);
            }
            if !batch.is_empty() {
                self.write(&batch);
                batch.clear();
            }
            for ack in acks.drain(..) {
                let _ = ack.send(());
            }
        }
        tracing::info!(written = self.stats.written.load(Ordering::Relaxed), "click writer stopped");
    }

    /// The first message of a batch: waits for it while running (the one wake-up a batch costs the
    /// click path), takes only what is already queued once stopping. `None` ends the writer.
    fn first_message(&mut self) -> Option<Message> {
        if self.stopping.is_some() {
            return self.rx.try_recv().ok();
        }
        match self.rx.recv() {
            Ok(message) => Some(message),
            Err(_) => {
                // Every sender is gone: nothing more can arrive.
                self.stopping = Some(Instant::now());
                None
            }
        }
    }

    fn accept(&mut self, message: Message, batch: &mut Vec<ClickRecord>, acks: &mut Vec<oneshot::Sender<()>>) {
        match message {
            Message::Click(click) => batch.push(click),
            Message::Flush(ack) => acks.push(ack),
            Message::Stop => self.stopping = Some(Instant::now()),
        }
    }

    fn write(&mut self, batch: &[ClickRecord]) {
        if self.gave_up {
            self.stats.failed.fetch_add(batch.len() as u64, Ordering::Relaxed);
            return;
        }
        let mut backoff = Duration::from_millis(50);
        let mut reported = false;
        let started = Instant::now();
        loop {
            match self.runtime.block_on(self.store.insert_clicks(batch)) {
                Ok(_) => {
                    self.stats.written.fetch_add(batch.len() as u64, Ordering::Relaxed);
                    self.metrics.batch_size.observe(batch.len() as u64);
                    self.metrics.flush_latency.observe_duration(started.elapsed());
                    if reported {
                        tracing::info!(clicks = batch.len(), "click writer recovered");
                    }
                    return;
                }
                Err(StoreError::Unavailable(reason)) => {
                    if !reported {
                        tracing::warn!(%reason, clicks = batch.len(), "database unavailable, retrying click batch");
                        reported = true;
                    }
                    if self.shutdown_requested.load(Ordering::Acquire) {
                        let since = *self.retrying_since.get_or_insert_with(Instant::now);
                        if since.elapsed() > SHUTDOWN_RETRY_LIMIT {
                            self.gave_up = true;
                            self.stats.failed.fetch_add(batch.len() as u64, Ordering::Relaxed);
                            tracing::error!(
                                clicks = batch.len() + self.rx.len(),
                                "gave up writing clicks at shutdown: database unavailable for 30 s"
                            );
                            return;
                        }
                    }
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
                Err(error) if batch.len() > 1 => {
                    tracing::warn!(%error, clicks = batch.len(), "click batch refused, writing clicks one by one");
                    for click in batch {
                        self.write(std::slice::from_ref(click));
                    }
                    return;
                }
                Err(error) => {
                    self.stats.failed.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(%error, click_id = %batch[0].click_id, "click refused by the database");
                    return;
                }
            }
        }
    }
}

//! The writer's outage behaviour as a plain value: what it holds, which mode it is in, and what it
//! should do next. No I/O happens here.
//!
//! Why apart from the worker: the rules (hold, spill past a bound, back off, retry, replay, stop
//! reading when the journal refuses, journal what is held at stop) are the part of the writer that
//! is easy to get subtly wrong and hard to reach through a real database going away. Kept as a
//! value whose transitions take an event and the current time and return a [`Decision`], each rule
//! is a unit test with no database, no disk and no sleeps; the worker in `writer/mod.rs` only
//! executes decisions against the store and the journal and reports how they went.
//!
//! Two dimensions:
//! - [`Mode`]: `Normal` (batches are written as they come) or `Outage` (the database was
//!   unreachable: batches are held in memory, spilled to the journal past `spill_after`, and the
//!   database is retried with back-off, 50 ms doubling to 2 s). A successful retry writes what is
//!   held, then replays the journal, and only then returns to `Normal`: so `Normal` means nothing
//!   waits in memory or in the journal, which is why only `Normal` acknowledges flushes.
//! - [`Phase`]: `Running`, `Stopping` (stop requested: take only what is already queued) and
//!   `Finishing` (the queue is drained: one last retry, then whatever is still held goes to the
//!   journal for the next start).
//!
//! Invariant: a held click leaves memory only once the store or the journal has taken it, or, at
//! the very end with both refusing, as a counted loss ([`Decision::Lose`]).

use std::time::{Duration, Instant};

use crate::store::ClickRecord;

/// First pause before retrying an unreachable database; doubled up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
/// Longest pause between retries of an unreachable database.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// What the worker does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Decision {
    /// Write the batch at hand to the store (normal mode); report [`WriterState::unreachable`] if
    /// the database cannot be reached.
    Write,
    /// Append everything held to the journal; report [`WriterState::spilled`] or
    /// [`WriterState::spill_refused`].
    Spill,
    /// Write what is held, a batch at a time; report [`WriterState::retry_failed`] with how many
    /// were written, or [`WriterState::held_written`].
    Retry,
    /// Replay the journal; report [`WriterState::replayed`] or [`WriterState::replay_failed`].
    Replay,
    /// At stop, neither the database nor the journal took these clicks: count them as failed.
    Lose {
        /// How many clicks were dropped from memory.
        clicks: usize,
    },
    /// Nothing more until the next message or the next retry ([`WriterState::reading`] says
    /// which); when finishing, nothing more at all.
    Done,
}

/// How the worker reads the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Reading {
    /// Wait for the next message as long as it takes (normal mode).
    Wait,
    /// Wait for the next message, but no later than the retry, then call [`WriterState::tick`].
    WaitUntil(Instant),
    /// Do not read the queue (the journal refused a spill): sleep until the retry, then call
    /// [`WriterState::tick`]. The queue fills and the click path refuses clicks, counted.
    Paused(Instant),
    /// Stopping: take only what is already queued.
    Drain,
}

/// Whether the database is taking clicks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    /// Batches are written as they come; nothing waits in memory or in the journal.
    Normal,
    /// The database was unreachable at the last attempt.
    Outage(Outage),
}

/// An unreachable database, as the writer tracks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Outage {
    /// When it began, for the log line at recovery.
    pub(super) since: Instant,
    /// When the database is tried again.
    pub(super) next_retry: Instant,
    /// The pause before `next_retry`; doubled at each failure up to [`MAX_BACKOFF`].
    pub(super) backoff: Duration,
    /// The journal refused a spill: the queue is not read until a retry writes what is held.
    pub(super) journal_refused: bool,
}

/// Where the writer is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Reading the queue.
    Running,
    /// A stop was requested (or every sender is gone): take what is queued, wait for nothing.
    Stopping,
    /// The queue is drained: put what is held somewhere durable, then exit.
    Finishing,
}

/// The writer's outage state machine.
#[derive(Debug)]
pub(super) struct WriterState {
    mode: Mode,
    phase: Phase,
    /// Clicks read during an outage, neither written nor journaled yet, oldest first.
    held: Vec<ClickRecord>,
    /// Held clicks past which everything held is spilled to the journal.
    spill_after: usize,
}

impl WriterState {
    /// A writer about to start. A journal left with clicks in it (start-up could not replay it)
    /// is retried at once, as after an outage.
    pub(super) fn new(spill_after: usize, journal_has_clicks: bool, now: Instant) -> WriterState {
        let mode = if journal_has_clicks {
            Mode::Outage(Outage { since: now, next_retry: now, backoff: FIRST_BACKOFF, journal_refused: false })
        } else {
            Mode::Normal
        };
        WriterState { mode, phase: Phase::Running, held: Vec::new(), spill_after }
    }

    /// The mode.
    pub(super) fn mode(&self) -> Mode {
        self.mode
    }

    /// Whether the database is unreachable, as far as the writer knows.
    pub(super) fn in_outage(&self) -> bool {
        matches!(self.mode, Mode::Outage(_))
    }

    /// Whether a stop was requested.
    pub(super) fn is_stopping(&self) -> bool {
        self.phase != Phase::Running
    }

    /// Whether the queue is drained and the writer is about to exit.
    pub(super) fn is_finishing(&self) -> bool {
        self.phase == Phase::Finishing
    }

    /// Whether the journal refused the last spill.
    pub(super) fn journal_refused(&self) -> bool {
        matches!(self.mode, Mode::Outage(Outage { journal_refused: true, .. }))
    }

    /// Clicks held in memory.
    pub(super) fn held(&self) -> &[ClickRecord] {
        &self.held
    }

    /// Whether a flush may be acknowledged: only when every click read is in the database, which
    /// is what normal mode means (nothing held, the journal replayed).
    pub(super) fn acknowledges_flushes(&self) -> bool {
        self.mode == Mode::Normal
    }

    /// How to read the queue for the next batch.
    pub(super) fn reading(&self) -> Reading {
        match (self.phase, &self.mode) {
            (Phase::Stopping | Phase::Finishing, _) => Reading::Drain,
            (Phase::Running, Mode::Normal) => Reading::Wait,
            (Phase::Running, Mode::Outage(outage)) if outage.journal_refused => Reading::Paused(outage.next_retry),
            (Phase::Running, Mode::Outage(outage)) => Reading::WaitUntil(outage.next_retry),
        }
    }

    /// Event: a batch is ready. Normal mode writes it; during an outage its clicks are moved into
    /// memory (leaving `batch` empty), spilled if that passes `spill_after`.
    pub(super) fn batch_ready(&mut self, batch: &mut Vec<ClickRecord>, now: Instant) -> Decision {
        if self.mode == Mode::Normal {
            return Decision::Write;
        }
        self.held.append(batch);
        self.after_holding(now)
    }

    /// Event: a write found the database unreachable; `rest` are the clicks not written. Enters the
    /// outage, first retry after [`FIRST_BACKOFF`].
    pub(super) fn unreachable(&mut self, rest: &[ClickRecord], now: Instant) -> Decision {
        if self.mode == Mode::Normal {
            self.mode = Mode::Outage(Outage {
                since: now,
                next_retry: now + FIRST_BACKOFF,
                backoff: FIRST_BACKOFF,
                journal_refused: false,
            });
        }
        self.held.extend_from_slice(rest);
        self.after_holding(now)
    }

    /// Event: the journal took every held click.
    pub(super) fn spilled(&mut self, now: Instant) -> Decision {
        self.held.clear();
        if let Mode::Outage(outage) = &mut self.mode {
            outage.journal_refused = false;
        }
        if self.phase == Phase::Finishing { Decision::Done } else { self.tick(now) }
    }

    /// Event: the journal refused the held clicks (full, or a disk error). They stay in memory and
    /// the queue is no longer read; at the very end they are lost, and counted.
    pub(super) fn spill_refused(&mut self, now: Instant) -> Decision {
        if self.phase == Phase::Finishing {
            let clicks = self.held.len();
            self.held.clear();
            return Decision::Lose { clicks };
        }
        if let Mode::Outage(outage) = &mut self.mode {
            outage.journal_refused = true;
        }
        self.tick(now)
    }

    /// Event: time passed (a wait on the queue ended). Retries once the back-off has passed.
    pub(super) fn tick(&self, now: Instant) -> Decision {
        match &self.mode {
            Mode::Outage(outage) if now >= outage.next_retry => Decision::Retry,
            _ => Decision::Done,
        }
    }

    /// Event: a retry wrote the first `written` held clicks, then found the database unreachable
    /// again. Backs off (doubling, up to [`MAX_BACKOFF`]); when finishing, spills the rest instead.
    pub(super) fn retry_failed(&mut self, written: usize, now: Instant) -> Decision {
        self.held.drain(..written.min(self.held.len()));
        self.back_off(now);
        if self.phase == Phase::Finishing { Decision::Spill } else { Decision::Done }
    }

    /// Event: a retry wrote everything held. The queue may be read again whatever the replay does;
    /// the journal is replayed next.
    pub(super) fn held_written(&mut self) -> Decision {
        self.held.clear();
        if let Mode::Outage(outage) = &mut self.mode {
            outage.journal_refused = false;
        }
        Decision::Replay
    }

    /// Event: the journal was replayed whole. The outage is over.
    pub(super) fn replayed(&mut self) -> Decision {
        self.mode = Mode::Normal;
        Decision::Done
    }

    /// Event: the replay found the database unreachable (or a file error). The outage goes on,
    /// backed off; the journal keeps what was not replayed.
    pub(super) fn replay_failed(&mut self, now: Instant) -> Decision {
        self.back_off(now);
        Decision::Done
    }

    /// Event: `Stop` was read, or every sender is gone (or shutdown was asked while the queue is
    /// not read). From now on only what is already queued is taken.
    pub(super) fn stop_requested(&mut self) {
        if self.phase == Phase::Running {
            self.phase = Phase::Stopping;
        }
    }

    /// Event: the queue is drained and closed to the writer. What is held gets one immediate retry,
    /// then goes to the journal.
    pub(super) fn drained(&mut self, now: Instant) -> Decision {
        self.phase = Phase::Finishing;
        if self.held.is_empty() {
            return Decision::Done;
        }
        if let Mode::Outage(outage) = &mut self.mode {
            outage.next_retry = now;
        }
        Decision::Retry
    }

    fn after_holding(&self, now: Instant) -> Decision {
        if self.held.len() >= self.spill_after { Decision::Spill } else { self.tick(now) }
    }

    fn back_off(&mut self, now: Instant) {
        if let Mode::Outage(outage) = &mut self.mode {
            outage.backoff = (outage.backoff * 2).min(MAX_BACKOFF);
            outage.next_retry = now + outage.backoff;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::OffsetDateTime;
    use uuid::Uuid;

    const SPILL_AFTER: usize = 10;

    fn clicks(n: usize) -> Vec<ClickRecord> {
        (0..n)
            .map(|_| ClickRecord {
                click_id: Uuid::now_v7(),
                offer_id: 1,
                created_at: OffsetDateTime::now_utc(),
                user_agent: None,
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
            })
            .collect()
    }

    fn outage(state: &WriterState) -> Outage {
        match state.mode() {
            Mode::Outage(outage) => outage,
            Mode::Normal => panic!("expected an outage"),
        }
    }

    /// A writer that found the database unreachable at `t0` with `held` clicks unwritten.
    fn in_outage(t0: Instant, held: usize) -> WriterState {
        let mut state = WriterState::new(SPILL_AFTER, false, t0);
        assert_eq!(state.batch_ready(&mut clicks(held), t0), Decision::Write);
        state.unreachable(&clicks(held), t0);
        state
    }

    /// A writer stopped during an outage with `held` clicks in memory, its queue drained: its
    /// last retry is under way.
    fn finishing_in_outage(t0: Instant, held: usize) -> WriterState {
        let mut state = in_outage(t0, held);
        state.stop_requested();
        assert_eq!(state.drained(t0), Decision::Retry);
        state
    }

    #[test]
    fn a_writer_with_an_empty_journal_starts_normal_and_writes_its_batches() {
        let now = Instant::now();
        let mut state = WriterState::new(SPILL_AFTER, false, now);
        assert_eq!(state.mode(), Mode::Normal);
        assert_eq!(state.reading(), Reading::Wait, "nothing to retry: wait for clicks as long as it takes");
        let mut batch = clicks(3);
        assert_eq!(state.batch_ready(&mut batch, now), Decision::Write);
        assert_eq!(batch.len(), 3, "the batch is written from where it is, not copied");
        assert!(state.held().is_empty());
    }

    #[test]
    fn a_journal_left_at_start_is_retried_at_once() {
        let now = Instant::now();
        let state = WriterState::new(SPILL_AFTER, true, now);
        assert_eq!(outage(&state).next_retry, now);
        assert_eq!(state.tick(now), Decision::Retry);
        assert!(!state.acknowledges_flushes(), "journaled clicks are not in the database yet");
    }

    #[test]
    fn an_unreachable_write_enters_outage_with_the_first_backoff() {
        let t0 = Instant::now();
        let mut state = WriterState::new(SPILL_AFTER, false, t0);
        let rest = clicks(4);
        assert_eq!(state.unreachable(&rest, t0), Decision::Done, "under spill_after and no retry due yet");
        assert_eq!(
            outage(&state),
            Outage { since: t0, next_retry: t0 + FIRST_BACKOFF, backoff: FIRST_BACKOFF, journal_refused: false }
        );
        assert_eq!(state.held(), rest, "the unwritten rest is held, in order");
        assert_eq!(state.reading(), Reading::WaitUntil(t0 + FIRST_BACKOFF), "the queue is read until the retry");
    }

    #[test]
    fn during_an_outage_batches_are_held_not_written() {
        let t0 = Instant::now();
        let mut state = in_outage(t0, 2);
        let mut batch = clicks(3);
        let expected = [state.held(), &batch].concat();
        assert_eq!(state.batch_ready(&mut batch, t0), Decision::Done);
        assert!(batch.is_empty(), "the batch moved into memory");
        assert_eq!(state.held(), expected);
    }

    #[test]
    fn holding_past_spill_after_spills_to_the_journal() {
        let t0 = Instant::now();
        let mut state = in_outage(t0, SPILL_AFTER - 1);
        assert_eq!(state.batch_ready(&mut clicks(1), t0), Decision::Spill);
        assert_eq!(state.held().len(), SPILL_AFTER, "everything held goes, not just the batch");
    }

    #[test]
    fn a_successful_spill_empties_memory_and_keeps_reading() {
        let t0 = Instant::now();
        let mut state = in_outage(t0, SPILL_AFTER);
        assert_eq!(state.spilled(t0), Decision::Done);
        assert!(state.held().is_empty());
        assert_eq!(state.reading(), Reading::WaitUntil(t0 + FIRST_BACKOFF));
    }

    #[test]
    fn a_spill_after_the_backoff_retries_the_database() {
        let t0 = Instant::now();
        let mut state = in_outage(t0, SPILL_AFTER);
        assert_eq!(state.spilled(t0 + FIRST_BACKOFF), Decision::Retry);
    }

    #[test]
    fn a_refused_spill_stops_reading_the_queue() {
        let t0 = Instant::now();
        let mut state = in_outage(t0, SPILL_AFTER);
        assert_eq!(state.spill_refused(t0), Decision::Done);
        assert!(state.journal_refused());
        assert_eq!(state.held().len(), SPILL_AFTER, "refused clicks stay in memory");
        assert_eq!(state.reading(), Reading::Paused(t0 + FIRST_BACKOFF), "no reading; retried on schedule");
    }

    #[test]
    fn a_retry_is_due_only_once_its_backoff_has_passed() {
        let t0 = Instant::now();
        let state = in_outage(t0, 1);
        assert_eq!(state.tick(t0 + FIRST_BACKOFF - Duration::from_millis(1)), Decision::Done);
        assert_eq!(state.tick(t0 + FIRST_BACKOFF), Decision::Retry);
    }

    #[test]
    fn a_failed_retry_keeps_the_unwritten_rest_and_doubles_the_backoff() {
        let t0 = Instant::now();
        let mut state = in_outage(t0, 5);
        let rest = state.held()[2..].to_vec();
        let t1 = t0 + FIRST_BACKOFF;
        assert_eq!(state.retry_failed(2, t1), Decision::Done);
        assert_eq!(state.held(), rest, "the two written clicks are no longer held");
        assert_eq!(outage(&state).backoff, FIRST_BACKOFF * 2);
        assert_eq!(outage(&state).next_retry, t1 + FIRST_BACKOFF * 2);
        assert_eq!(outage(&state).since, t0);
    }

    #[test]
    fn backoff_doubles_up_to_the_limit() {
        let mut now = Instant::now();
        let mut state = in_outage(now, 1);
        let mut pauses = Vec::new();
        for _ in 0..8 {
            now = outage(&state).next_retry;
            assert_eq!(state.tick(now), Decision::Retry);
            state.retry_failed(0, now);
            pauses.push(outage(&state).backoff.as_millis());
        }
        assert_eq!(pauses, [100, 200, 400, 800, 1600, 2000, 2000, 2000]);
    }

    #[test]
    fn a_successful_retry_replays_the_journal_then_returns_to_normal() {
        let t0 = Instant::now();
        let mut state = in_outage(t0, 3);
        assert_eq!(state.held_written(), Decision::Replay);
        assert!(state.held().is_empty());
        assert!(state.in_outage(), "not normal until the journal is replayed");
        assert!(!state.acknowledges_flushes());
        assert_eq!(state.replayed(), Decision::Done);
        assert_eq!(state.mode(), Mode::Normal);
        assert_eq!(state.reading(), Reading::Wait);
        assert!(state.acknowledges_flushes());
    }

    #[test]
    fn a_written_retry_reads_the_queue_again_even_if_the_replay_fails() {
        let t0 = Instant::now();
        let mut state = in_outage(t0, SPILL_AFTER);
        state.spill_refused(t0);
        let t1 = t0 + FIRST_BACKOFF;
        assert_eq!(state.held_written(), Decision::Replay);
        assert_eq!(state.replay_failed(t1), Decision::Done);
        assert!(!state.journal_refused(), "nothing is held: the queue may be read");
        assert_eq!(state.reading(), Reading::WaitUntil(t1 + FIRST_BACKOFF * 2), "the replay is retried, backed off");
    }

    #[test]
    fn flushes_are_not_acknowledged_during_an_outage() {
        let t0 = Instant::now();
        let mut state = in_outage(t0, 1);
        assert!(!state.acknowledges_flushes(), "clicks held in memory");
        state.spilled(t0);
        assert!(!state.acknowledges_flushes(), "clicks in the journal");
    }

    #[test]
    fn a_stop_takes_only_what_is_queued_even_when_reading_is_paused() {
        let t0 = Instant::now();
        let mut state = in_outage(t0, SPILL_AFTER);
        state.spill_refused(t0);
        state.stop_requested();
        assert!(state.is_stopping());
        assert_eq!(state.reading(), Reading::Drain);
    }

    #[test]
    fn stop_in_normal_mode_has_nothing_left_to_do() {
        let now = Instant::now();
        let mut state = WriterState::new(SPILL_AFTER, false, now);
        state.stop_requested();
        assert_eq!(state.drained(now), Decision::Done);
        assert!(state.is_finishing());
    }

    #[test]
    fn stop_during_an_outage_retries_at_once_then_spills_what_is_held() {
        let t0 = Instant::now();
        let mut state = in_outage(t0, 3);
        assert_eq!(state.tick(t0), Decision::Done, "the back-off has not passed");
        state.stop_requested();
        assert_eq!(state.drained(t0), Decision::Retry, "one last try, without waiting for the back-off");
        assert_eq!(state.retry_failed(1, t0), Decision::Spill, "what the retry did not write goes to the journal");
        assert_eq!(state.held().len(), 2);
        assert_eq!(state.spilled(t0), Decision::Done);
        assert!(state.held().is_empty());
    }

    #[test]
    fn stop_during_an_outage_writes_what_is_held_if_the_database_is_back() {
        let t0 = Instant::now();
        let mut state = finishing_in_outage(t0, 3);
        assert_eq!(state.held_written(), Decision::Replay);
        assert_eq!(state.replay_failed(t0), Decision::Done, "a journal not replayed waits for the next start");
    }

    #[test]
    fn a_refused_spill_at_stop_loses_the_held_clicks_and_counts_them() {
        let t0 = Instant::now();
        let mut state = finishing_in_outage(t0, 3);
        assert_eq!(state.retry_failed(0, t0), Decision::Spill);
        assert_eq!(state.spill_refused(t0), Decision::Lose { clicks: 3 });
        assert!(state.held().is_empty());
    }
}

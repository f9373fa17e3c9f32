//! The on-disk click journal: where clicks go when the database cannot take them.
//!
//! While the database is unreachable the writer holds clicks in memory up to `JOURNAL_SPILL_AFTER`,
//! then spills them here, so the in-memory queue keeps draining and `/click` keeps redirecting. When
//! the database is back, and at every start-up before the first click is served, the journal is
//! replayed into the store and emptied.
//!
//! Format: one segment file per spill, `clicks-<sequence>.jsonl`, one JSON click per line. A segment
//! is written under a temporary name, `fsync`ed, then renamed into place (and the directory synced),
//! so a crash leaves either a whole segment or none; replay never sees half a spill. Replay inserts a
//! segment's clicks, then deletes the file: a crash in between replays it again, which is harmless
//! because inserts are idempotent on `click_id`.
//!
//! One instance per directory: the journal holds an exclusive lock on `.lock` in it for its life.
//! Two instances sharing a directory would number their segments alike and overwrite each other's
//! spills; the second one is refused at start instead.
//!
//! Bound: at most `JOURNAL_MAX_MB` on disk. A full journal refuses the spill; the writer then keeps
//! the clicks in memory and stops reading the queue, which fills, and `/click` answers 503 (counted as
//! rejected): deliberate, visible, and no click id handed out without its record.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::store::{ClickRecord, Store, StoreError, insert_clicks_isolating};

const SEGMENT_PREFIX: &str = "clicks-";
const SEGMENT_SUFFIX: &str = ".jsonl";
/// The file whose lock says the directory is taken.
const LOCK_FILE: &str = ".lock";

/// Why the journal could not take or give back clicks.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// The spill would pass `JOURNAL_MAX_MB`.
    #[error("click journal is full ({used} of {limit} bytes used)")]
    Full {
        /// Bytes in the journal now.
        used: u64,
        /// The limit.
        limit: u64,
    },
    /// Another journal (another router instance) has the directory.
    #[error("click journal {} is in use by another router instance: give each instance its own JOURNAL_DIR", .dir.display())]
    InUse {
        /// The directory.
        dir: PathBuf,
    },
    /// A file operation failed.
    #[error("click journal I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The store could not take replayed clicks.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a replay did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Replayed {
    /// Clicks committed (or already stored: inserts are idempotent).
    pub written: u64,
    /// Clicks the database refused, or lines that could not be read: logged and dropped.
    pub failed: u64,
}

/// Size of the journal, shared with `/health` and `/metrics`.
#[derive(Debug, Default)]
pub struct JournalStats {
    /// Clicks in segments not yet replayed.
    pub clicks: AtomicU64,
    /// Bytes of those segments.
    pub bytes: AtomicU64,
}

/// A directory of journal segments.
#[derive(Debug)]
pub struct Journal {
    dir: PathBuf,
    /// `.lock` in `dir`, exclusively locked until the journal is dropped.
    _lock: File,
    max_bytes: u64,
    next_sequence: u64,
    stats: Arc<JournalStats>,
}

impl Journal {
    /// Opens (creating if needed) the journal in `dir`, and counts what a previous run left there.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Journal, JournalError> {
        fs::create_dir_all(dir)?;
        let lock = OpenOptions::new().create(true).truncate(false).write(true).open(dir.join(LOCK_FILE))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Err(JournalError::InUse { dir: dir.to_owned() }),
            Err(TryLockError::Error(e)) => return Err(e.into()),
        }
        let journal = Journal { dir: dir.to_owned(), _lock: lock, max_bytes, next_sequence: 0, stats: Arc::default() };
        let segments = journal.segments()?;
        let mut clicks = 0;
        let mut bytes = 0;
        for (_, path) in &segments {
            bytes += fs::metadata(path)?.len();
            clicks += fs::read(path)?.split(|&b| b == b'\n').filter(|line| !line.is_empty()).count() as u64;
        }
        journal.stats.clicks.store(clicks, Relaxed);
        journal.stats.bytes.store(bytes, Relaxed);
        let next_sequence = segments.last().map_or(0, |(sequence, _)| sequence + 1);
        Ok(Journal { next_sequence, ..journal })
    }

    /// The journal's size counters.
    pub fn stats(&self) -> Arc<JournalStats> {
        self.stats.clone()
    }

    /// Whether segments wait to be replayed.
    pub fn is_empty(&self) -> bool {
        self.stats.clicks.load(Relaxed) == 0
    }

    /// Writes `clicks` as one durable segment.
    pub fn append(&mut self, clicks: &[ClickRecord]) -> Result<(), JournalError> {
        if clicks.is_empty() {
            return Ok(());
        }
        let mut encoded = Vec::with_capacity(clicks.len() * 256);
        for click in clicks {
            serde_json::to_writer(&mut encoded, click).map_err(std::io::Error::from)?;
            encoded.push(b'\n');
        }
        let used = self.stats.bytes.load(Relaxed);
        if used + encoded.len() as u64 > self.max_bytes {
            return Err(JournalError::Full { used, limit: self.max_bytes });
        }
        let name = format!("{SEGMENT_PREFIX}{:020}{SEGMENT_SUFFIX}", self.next_sequence);
        let temporary = self.dir.join(format!(".{name}.tmp"));
        {
            let mut file = BufWriter::new(OpenOptions::new().write(true).create(true).truncate(true).open(&temporary)?);
            file.write_all(&encoded)?;
            file.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        }
        fs::rename(&temporary, self.dir.join(&name))?;
        // The segment is in place from here on: count it, whatever the directory sync says.
        self.next_sequence += 1;
        self.stats.clicks.fetch_add(clicks.len() as u64, Relaxed);
        self.stats.bytes.fetch_add(encoded.len() as u64, Relaxed);
        if let Err(error) = File::open(&self.dir).and_then(|dir| dir.sync_all()) {
            tracing::warn!(%error, "journal directory not synced: a power loss could lose the newest segment");
        }
        Ok(())
    }

    /// Inserts every segment's clicks into `store`, oldest first, `batch_size` at a time, deleting
    /// each segment once its clicks are committed. A chunk the database refuses is retried click by
    /// click, and a click still refused (like an unreadable line) is logged and skipped, so one bad
    /// row cannot hold up recovery. Stops at the first sign that the database is unreachable (or a
    /// file error), leaving the rest for the next attempt.
    pub async fn replay(&mut self, store: &dyn Store, batch_size: usize) -> Result<Replayed, JournalError> {
        let mut total = Replayed::default();
        for (_, path) in self.segments()? {
            let bytes = fs::metadata(&path)?.len();
            let (clicks, unreadable) = read_segment(&path)?;
            let mut refused = unreadable as u64;
            for chunk in clicks.chunks(batch_size.max(1)) {
                let written = insert_clicks_isolating(store, chunk).await;
                for (click_id, error) in &written.refused {
                    tracing::error!(%error, %click_id, "journaled click refused by the database");
                }
                if let Some(unreachable) = written.unreachable {
                    // The segment stays; what was written of it is written again, harmlessly, next time.
                    return Err(StoreError::Unavailable(unreachable.reason).into());
                }
                refused += written.refused.len() as u64;
            }
            if unreadable > 0 {
                // Only a damaged disk does this: segments are renamed into place whole.
                tracing::error!(segment = %path.display(), lines = unreadable, "unreadable journal lines skipped");
            }
            fs::remove_file(&path)?;
            let count = (clicks.len() + unreadable) as u64;
            self.stats.clicks.fetch_sub(count.min(self.stats.clicks.load(Relaxed)), Relaxed);
            self.stats.bytes.fetch_sub(bytes.min(self.stats.bytes.load(Relaxed)), Relaxed);
            total.written += count - refused;
            total.failed += refused;
        }
        Ok(total)
    }

    /// Segment files, in sequence order.
    fn segments(&self) -> std::io::Result<Vec<(u64, PathBuf)>> {
        numbered_files(&self.dir, SEGMENT_PREFIX, SEGMENT_SUFFIX)
    }
}

/// The files of `dir` named `<prefix><number><suffix>`, by number: the journal's segments, and the
/// click log's, which share its directory.
pub(crate) fn numbered_files(dir: &Path, prefix: &str, suffix: &str) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        let number = path
            .file_name()
            .and_then(|name| name.to_str())
            .and_then(|name| name.strip_prefix(prefix)?.strip_suffix(suffix)?.parse().ok());
        if let Some(number) = number {
            files.push((number, path));
        }
    }
    files.sort_unstable();
    Ok(files)
}

/// A segment's clicks, and how many of its lines could not be read (bad JSON or bytes).
fn read_segment(path: &Path) -> std::io::Result<(Vec<ClickRecord>, usize)> {
    let mut clicks = Vec::new();
    let mut unreadable = 0;
    for line in fs::read(path)?.split(|&b| b == b'\n').filter(|line| !line.is_empty()) {
        match serde_json::from_slice(line) {
            Ok(click) => clicks.push(click),
            Err(_) => unreadable += 1,
        }
    }
    Ok((clicks, unreadable))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::visitor::{Country, DeviceClass};
    use time::OffsetDateTime;
    use uuid::Uuid;

    fn click(n: u8) -> ClickRecord {
        ClickRecord {
            click_id: Uuid::now_v7(),
            offer_id: i64::from(n),
            created_at: OffsetDateTime::now_utc(),
            user_agent: Some("Mozilla/5.0 \"quoted\"".into()),
            ip_address: Some("203.0.113.9".parse().unwrap()),
            referrer: None,
            source: Some("fb".into()),
            campaign: None,
            propensity: 0.25,

            country: Country::from_code("DE"),

            device: Some(DeviceClass::Mobile),

            is_bot: n.is_multiple_of(2),

            is_fallback: false,
            log_slot: None,
        }
    }

    fn temp_dir() -> PathBuf {
        std::env::temp_dir().join(format!("casino-journal-{}", Uuid::now_v7().simple()))
    }

    #[test]
    fn segments_survive_a_reopen_whole_and_in_order() {
        let dir = temp_dir();
        let mut journal = Journal::open(&dir, 1 << 20).unwrap();
        let first = vec![click(1), click(2)];
        let second = vec![click(3)];
        journal.append(&first).unwrap();
        journal.append(&second).unwrap();
        // A spill cut short by a crash leaves only its temporary file, which is not a segment.
        fs::write(dir.join(".clicks-00000000000000000009.jsonl.tmp"), b"{\"half").unwrap();
        drop(journal);

        let reopened = Journal::open(&dir, 1 << 20).unwrap();
        assert_eq!(reopened.stats.clicks.load(Relaxed), 3);
        assert_eq!(reopened.next_sequence, 2);
        let read: Vec<ClickRecord> =
            reopened.segments().unwrap().iter().flat_map(|(_, path)| read_segment(path).unwrap().0).collect();
        assert_eq!(read, [first, second].concat());
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_directory_in_use_is_refused_until_its_journal_closes() {
        let dir = temp_dir();
        let mut first = Journal::open(&dir, 1 << 20).unwrap();
        first.append(&[click(1)]).unwrap();
        let refused = Journal::open(&dir, 1 << 20).unwrap_err();
        assert!(matches!(&refused, JournalError::InUse { dir: d } if *d == dir), "{refused}");
        assert!(refused.to_string().contains("JOURNAL_DIR"), "the error says what to change: {refused}");
        drop(first);
        let reopened = Journal::open(&dir, 1 << 20).unwrap();
        assert_eq!(reopened.stats.clicks.load(Relaxed), 1, "the spill is intact");
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_full_journal_refuses_the_spill() {
        let dir = temp_dir();
        let mut journal = Journal::open(&dir, 400).unwrap();
        journal.append(&[click(1)]).unwrap();
        let used = journal.stats.bytes.load(Relaxed);
        assert!(matches!(journal.append(&[click(2), click(3)]), Err(JournalError::Full { .. })));
        assert_eq!(journal.stats.bytes.load(Relaxed), used, "a refused spill writes nothing");
        assert_eq!(journal.segments().unwrap().len(), 1);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_line_written_before_targeting_reads_with_the_visitor_unknown() {
        let line = r#"{"click_id":"019a0000-0000-7000-8000-000000000001","offer_id":3,"created_at":"2026-01-01T00:00:00Z","user_agent":null,"ip_address":null,"referrer":null,"source":null,"campaign":null,"propensity":0.5}"#;
        let record: ClickRecord = serde_json::from_str(line).unwrap();
        assert_eq!((record.country, record.device, record.is_bot, record.is_fallback), (None, None, false, false));
        let original = click(2);
        let written = serde_json::to_string(&original).unwrap();
        assert!(written.contains(r#""country":"DE","device":"mobile","is_bot":true"#), "{written}");
        assert_eq!(serde_json::from_str::<ClickRecord>(&written).unwrap(), original);
    }
}

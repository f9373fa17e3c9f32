//! The click log: every click is written into a memory-mapped file before its visitor is answered,
//! so a crashed process loses none.
//!
//! Why: the writer commits a batch up to `WRITER_FLUSH_MS` after its first click, and a process that
//! dies (SIGKILL, the OOM killer, an abort) loses the clicks still in its queue and its open batch,
//! though their visitors were already sent to the casino with their ids. A store into a `MAP_SHARED`
//! file mapping lands in the kernel's page cache, which outlives the process, and the kernel writes
//! it to disk on its own: so the click path copies the record there (a `memcpy` and a CRC, no system
//! call, no lock) and the next start replays what the writer had not yet taken care of. This is how
//! Chronicle Queue and Aeron survive a process crash.
//!
//! **Layout.** Segments `clicklog-<sequence>.bin` of [`SEGMENT_BYTES`], created sparse (zeros), in
//! the journal's directory (whose lock keeps other instances out). A 64-byte header (magic, a random
//! key), then frames, each 8-byte aligned: a state word (`u64`), the payload's length (`u32`), its
//! CRC-32 (`u32`), the payload (the record, binary, see [`encode`]). The state is the segment's key
//! XOR one of three constants: written, done, cancelled. Zero (the file's hole) is no frame.
//!
//! **Writing.** A thread reserves its frame with one `fetch_add` on the segment's packed counter
//! (frames reserved and next offset), so threads never wait for one another; it writes the length,
//! the CRC and the payload, then stores the state (release). A reservation past the segment's end
//! starts the next segment: the only lock, taken once per segment. If the click then cannot be
//! queued, its frame is marked cancelled.
//!
//! **Custody.** The writer marks a frame done once its click is committed, refused by the database
//! for good, or spilled to the journal. A segment that is no longer the current one, whose frames
//! are all done or cancelled, is deleted. At start, every frame still written (not done, not
//! cancelled) of every segment left behind is appended to the journal, which replays it (inserts are
//! idempotent on `click_id`: a click committed just before the crash is not stored twice), and the
//! segments are deleted.
//!
//! **Replay scanning.** A process killed mid-click can leave a reserved frame with no state (a hole)
//! followed by whole frames. Replay steps over such holes 8 bytes at a time and believes a frame only
//! if its state carries the segment's key and its CRC matches, so bytes a visitor controls (a user
//! agent) cannot pose as a frame: they would have to guess a random 64-bit key.
//!
//! **What each failure can lose.**
//! - The process dies (SIGKILL, OOM, panic, abort): nothing that was answered 302. The page cache
//!   holds every frame whose state was stored, and a visitor is answered only after that. A click
//!   logged but not yet queued when the process died is replayed though its visitor got no redirect:
//!   a stored click that no one followed, never a lost one.
//! - The machine loses power or the kernel panics: the clicks of the last `CLICK_LOG_SYNC_MS` (the
//!   log is `msync`ed that often; 0 leaves it to the kernel's writeback, about 30 s). A frame torn by
//!   the power cut fails its CRC and is counted as damaged at replay.
//! - The disk fills: a new segment cannot be made, and clicks are refused with 503 (counted as
//!   rejected) until it can: no click id is handed out that the log did not take.

use std::fs::{self, OpenOptions};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arc_swap::{ArcSwap, Guard};
use memmap2::MmapRaw;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::store::ClickRecord;
use crate::visitor::{Country, DeviceClass};

/// Size of one segment file: about 100,000 clicks.
pub const SEGMENT_BYTES: u64 = 32 << 20;
const FILE_PREFIX: &str = "clicklog-";
const FILE_SUFFIX: &str = ".bin";
/// The segment header: magic, key, room to spare.
const HEADER_BYTES: u64 = 64;
const MAGIC: [u8; 8] = *b"CRCLKLG1";
/// How far ahead of the click path the upkeep thread takes the page faults, and how often: 4 MB
/// every 5 ms keeps ahead of 800 MB/s of clicks (a router does about 30 MB/s at 100,000 a second).
const FAULT_AHEAD: u64 = 4 << 20;
const UPKEEP_TICK: Duration = Duration::from_millis(5);
const PAGE: u64 = 4096;
/// A frame's state word, length and CRC.
const FRAME_HEADER: usize = 16;
/// The packed reservation counter: frames reserved above, next offset below.
const OFFSET_BITS: u32 = 40;
const OFFSET_MASK: u64 = (1 << OFFSET_BITS) - 1;
/// The three states a frame can be in, each XORed with the segment's key.
const WRITTEN: u64 = 0x3d1c_6f0e_a85b_2741;
const DONE: u64 = 0x9e37_79b9_7f4a_7c15;
const CANCELLED: u64 = 0x6a09_e667_f3bc_c908;

/// Why the log could not take a click or be opened.
#[derive(Debug, thiserror::Error)]
pub enum ClickLogError {
    /// A segment could not be created, mapped or read.
    #[error("click log I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// Where the log keeps one click: the writer hands it back once the click is in its custody.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogSlot {
    sequence: u64,
    offset: u64,
}

/// What a stopped process left in the log: its clicks not yet taken care of, for the journal.
#[derive(Debug, Default)]
pub struct Recovered {
    /// Clicks logged and not marked done: replay them.
    pub clicks: Vec<ClickRecord>,
    /// Frames whose state says written but whose bytes are torn (a power cut): lost, and counted.
    pub damaged: u64,
    /// The segment files read: delete them with [`Recovered::discard`] once the clicks are safe.
    files: Vec<PathBuf>,
}

impl Recovered {
    /// Deletes the segments read, once their clicks are in the journal.
    pub fn discard(self) -> std::io::Result<()> {
        for file in self.files {
            remove_if_present(&file)?;
        }
        Ok(())
    }
}

/// The log, shared by the click path (which writes) and the writer (which marks done); cheap to clone.
#[derive(Clone)]
pub struct ClickLog {
    shared: Arc<Shared>,
}

struct Shared {
    dir: PathBuf,
    /// [`SEGMENT_BYTES`], smaller in tests.
    segment_bytes: u64,
    /// The segment clicks are written into.
    current: ArcSwap<Segment>,
    /// Every segment not deleted yet, oldest first (the current one last). Locked to start a new
    /// segment, to mark frames done and delete settled segments, and to sync.
    segments: Mutex<Vec<Arc<Segment>>>,
    /// Set while segments cannot be created, so the failure is logged once, not per click.
    failing: AtomicBool,
    /// The upkeep thread (page faults taken ahead of the click path, the periodic `msync`),
    /// stopped by [`ClickLog::close`].
    upkeep: Mutex<Option<(Arc<AtomicBool>, JoinHandle<()>)>>,
}

/// The reservation counter, on a cache line of its own: every click's one contended write.
#[repr(align(128))]
struct Reservations(AtomicU64);

struct Segment {
    sequence: u64,
    key: u64,
    map: MmapRaw,
    path: PathBuf,
    reserved: Reservations,
    /// Reservations that did not fit (they moved on to the next segment).
    overflowed: AtomicU64,
    /// Frames cancelled by the click path (the queue refused the click).
    cancelled: AtomicU64,
    /// Frames marked done by the writer.
    done: AtomicU64,
}

/// A click written into the log, not yet queued.
pub struct Written {
    segment: Guard<Arc<Segment>>,
    offset: u64,
}

impl Written {
    /// Where the click is kept, for the writer.
    pub fn slot(&self) -> LogSlot {
        LogSlot { sequence: self.segment.sequence, offset: self.offset }
    }

    /// The click will not be queued (its visitor is refused): replay must skip it.
    pub fn cancel(self) {
        self.segment.set_state(self.offset, CANCELLED);
        self.segment.cancelled.fetch_add(1, Ordering::Release);
    }
}

impl ClickLog {
    /// Opens the log in `dir`: reads what an earlier process left there (see [`Recovered`]) and
    /// starts a new segment after it. `sync_every` is the period of the `msync` (`None`: never).
    /// The caller must hold `dir` exclusively (the journal's lock).
    pub fn open(dir: &Path, sync_every: Option<Duration>) -> Result<(ClickLog, Recovered), ClickLogError> {
        ClickLog::open_sized(dir, sync_every, SEGMENT_BYTES)
    }

    fn open_sized(
        dir: &Path,
        sync_every: Option<Duration>,
        segment_bytes: u64,
    ) -> Result<(ClickLog, Recovered), ClickLogError> {
        fs::create_dir_all(dir)?;
        let mut recovered = Recovered::default();
        let mut next_sequence = 0;
        for (sequence, path) in segment_files(dir)? {
            let bytes = fs::read(&path)?;
            read_frames(&bytes, &mut recovered);
            recovered.files.push(path);
            next_sequence = next_sequence.max(sequence + 1);
        }
        let first = Arc::new(Segment::create(dir, next_sequence, segment_bytes)?);
        let shared = Arc::new(Shared {
            dir: dir.to_owned(),
            segment_bytes,
            current: ArcSwap::new(first.clone()),
            segments: Mutex::new(vec![first]),
            failing: AtomicBool::new(false),
            upkeep: Mutex::new(None),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let (weak, thread_stop) = (Arc::downgrade(&shared), stop.clone());
        let thread = std::thread::Builder::new().name("click-log-upkeep".into()).spawn(move || {
            let mut next_sync = sync_every.map(|period| Instant::now() + period);
            let mut fault_ahead_refused = false;
            while !thread_stop.load(Ordering::Acquire) {
                std::thread::park_timeout(UPKEEP_TICK);
                let Some(shared) = weak.upgrade() else { break };
                if let (Some(period), Some(due)) = (sync_every, next_sync)
                    && Instant::now() >= due
                {
                    shared.sync();
                    next_sync = Some(Instant::now() + period);
                }
                // After the sync: it leaves the pages it wrote out read-only again.
                if let Err(error) = shared.fault_in_ahead()
                    && !std::mem::replace(&mut fault_ahead_refused, true)
                {
                    // A kernel before 5.14 has no MADV_POPULATE_WRITE: the click path then takes the
                    // faults itself (about 0.3 us a click), as it would without this thread.
                    tracing::warn!(%error, "the click log cannot fault pages in ahead; clicks take the page faults");
                }
            }
        })?;
        *lock(&shared.upkeep) = Some((stop, thread));
        Ok((ClickLog { shared }, recovered))
    }

    /// Writes `record` into the current segment (no lock, no system call, except when it is full).
    #[inline]
    pub fn write(&self, record: &ClickRecord) -> Result<Written, ClickLogError> {
        let payload = encoded_len(record);
        let frame = (FRAME_HEADER + payload).next_multiple_of(8) as u64;
        loop {
            let segment = self.shared.current.load();
            let reserved = segment.reserved.0.fetch_add((1 << OFFSET_BITS) | frame, Ordering::Relaxed);
            let offset = reserved & OFFSET_MASK;
            if offset + frame <= segment.map.len() as u64 {
                segment.write_frame(offset, record, payload);
                return Ok(Written { segment, offset });
            }
            segment.overflowed.fetch_add(1, Ordering::Release);
            self.start_segment_after(segment.sequence)?;
        }
    }

    /// Makes the segment after `full` the current one, unless another thread already has.
    #[cold]
    fn start_segment_after(&self, full: u64) -> Result<(), ClickLogError> {
        let mut segments = lock(&self.shared.segments);
        if self.shared.current.load().sequence != full {
            return Ok(());
        }
        match Segment::create(&self.shared.dir, full + 1, self.shared.segment_bytes) {
            Ok(next) => {
                let next = Arc::new(next);
                segments.push(next.clone());
                self.shared.current.store(next);
                if self.shared.failing.swap(false, Ordering::Relaxed) {
                    tracing::info!("click log segments can be created again");
                }
                Ok(())
            }
            Err(error) => {
                if !self.shared.failing.swap(true, Ordering::Relaxed) {
                    tracing::error!(%error, "click log: no new segment; clicks are refused until one can be made");
                }
                Err(error.into())
            }
        }
    }

    /// Marks the frames of clicks now in the writer's custody (committed, refused for good, or
    /// journaled) done, and deletes the segments left with nothing to replay.
    pub fn release(&self, slots: impl IntoIterator<Item = LogSlot>) {
        let mut segments = lock(&self.shared.segments);
        for slot in slots {
            if let Ok(found) = segments.binary_search_by_key(&slot.sequence, |segment| segment.sequence) {
                let segment = &segments[found];
                segment.set_state(slot.offset, DONE);
                segment.done.fetch_add(1, Ordering::Release);
            }
        }
        let current = self.shared.current.load().sequence;
        let retired = take_settled(&mut segments, |segment| segment.sequence != current);
        // Unlinked and unmapped outside the lock, which the click that fills a segment may need.
        drop(segments);
        delete(retired);
    }

    /// At a clean stop, once the writer has taken every click: stops the upkeep and deletes every
    /// settled segment, the current one included (a later start finds nothing to replay).
    pub fn close(&self) {
        if let Some((stop, thread)) = lock(&self.shared.upkeep).take() {
            stop.store(true, Ordering::Release);
            thread.thread().unpark();
            let _ = thread.join();
        }
        self.shared.sync();
        let retired = take_settled(&mut lock(&self.shared.segments), |_| true);
        delete(retired);
    }
}

impl Shared {
    /// Takes the page faults of the next [`FAULT_AHEAD`] bytes of the current segment here, so that
    /// the click path writes into pages already mapped writable (a first write into a page of a
    /// shared file mapping otherwise faults: a page allocated, zeroed, accounted to the file).
    fn fault_in_ahead(&self) -> std::io::Result<()> {
        #[cfg(target_os = "linux")]
        {
            let segment = self.current.load();
            let len = segment.map.len() as u64;
            let cursor = (segment.reserved.0.load(Ordering::Relaxed) & OFFSET_MASK).min(len);
            let start = cursor / PAGE * PAGE;
            let end = (cursor + FAULT_AHEAD).min(len);
            if start < end {
                segment.map.advise_range(memmap2::Advice::PopulateWrite, start as usize, (end - start) as usize)?;
            }
        }
        Ok(())
    }

    /// `msync`s every live segment: what was written is on disk when it returns.
    fn sync(&self) {
        let segments: Vec<Arc<Segment>> = lock(&self.segments).clone();
        for segment in segments {
            if let Err(error) = segment.map.flush() {
                tracing::warn!(%error, path = %segment.path.display(), "click log msync failed");
            }
        }
    }
}

/// Takes out of `segments` those `eligible` allows whose frames are all done or cancelled.
fn take_settled(segments: &mut Vec<Arc<Segment>>, eligible: impl Fn(&Segment) -> bool) -> Vec<Arc<Segment>> {
    let (settled, live) = segments.drain(..).partition(|segment| eligible(segment) && segment.is_settled());
    *segments = live;
    settled
}

/// Deletes retired segments' files (their mappings go with the last reference).
fn delete(retired: Vec<Arc<Segment>>) {
    for segment in retired {
        if let Err(error) = remove_if_present(&segment.path) {
            tracing::warn!(%error, path = %segment.path.display(), "click log segment not deleted");
        }
    }
}

impl Segment {
    fn create(dir: &Path, sequence: u64, bytes: u64) -> std::io::Result<Segment> {
        let path = dir.join(format!("{FILE_PREFIX}{sequence:012}{FILE_SUFFIX}"));
        let file = OpenOptions::new().read(true).write(true).create_new(true).open(&path)?;
        file.set_len(bytes)?;
        let map = MmapRaw::map_raw(&file)?;
        let key = loop {
            let key: u64 = rand::random();
            if ![0, WRITTEN, DONE, CANCELLED].contains(&key) {
                break key;
            }
        };
        let mut header = [0u8; 16];
        header[..8].copy_from_slice(&MAGIC);
        header[8..].copy_from_slice(&key.to_le_bytes());
        // SAFETY: the mapping is longer than a header, and no other thread knows it yet.
        unsafe { std::ptr::copy_nonoverlapping(header.as_ptr(), map.as_mut_ptr(), header.len()) };
        let reserved = Reservations(AtomicU64::new(HEADER_BYTES));
        let zero = || AtomicU64::new(0);
        Ok(Segment { sequence, key, map, path, reserved, overflowed: zero(), cancelled: zero(), done: zero() })
    }

    /// Writes a frame at `offset`, which this thread reserved, and then its state.
    #[inline]
    fn write_frame(&self, offset: u64, record: &ClickRecord, payload: usize) {
        // SAFETY: `offset..offset + FRAME_HEADER + payload` lies inside the mapping (checked by the
        // caller) and was reserved by this thread alone; nothing else touches those bytes until the
        // state word below is stored, and afterwards only through that (atomic) word.
        let frame = unsafe {
            std::slice::from_raw_parts_mut(self.map.as_mut_ptr().add(offset as usize + 8), FRAME_HEADER - 8 + payload)
        };
        let (header, body) = frame.split_at_mut(FRAME_HEADER - 8);
        encode(record, body);
        header[..4].copy_from_slice(&(payload as u32).to_le_bytes());
        header[4..].copy_from_slice(&crc32fast::hash(body).to_le_bytes());
        self.set_state(offset, WRITTEN);
    }

    /// Stores a frame's state word (release: the frame's bytes are visible before it).
    fn set_state(&self, offset: u64, state: u64) {
        // SAFETY: `offset` is a frame's start inside the mapping, 8-byte aligned (frames are padded
        // to 8 and the mapping is page-aligned); the word is only ever accessed atomically.
        let word = unsafe { AtomicU64::from_ptr(self.map.as_mut_ptr().add(offset as usize).cast::<u64>()) };
        word.store(self.key ^ state, Ordering::Release);
    }

    /// Whether no frame of this (full) segment is left to replay: every reservation that fit is done
    /// or cancelled. Reservations that overflowed are counted before the total, so a count taken
    /// while threads still overflow errs on the side of keeping the segment.
    fn is_settled(&self) -> bool {
        let overflowed = self.overflowed.load(Ordering::Acquire);
        let reserved = self.reserved.0.load(Ordering::Acquire) >> OFFSET_BITS;
        let taken_care_of = self.done.load(Ordering::Acquire) + self.cancelled.load(Ordering::Acquire);
        reserved.saturating_sub(overflowed) <= taken_care_of
    }
}

/// The segment files in `dir`, by sequence.
fn segment_files(dir: &Path) -> std::io::Result<Vec<(u64, PathBuf)>> {
    crate::journal::numbered_files(dir, FILE_PREFIX, FILE_SUFFIX)
}

/// Collects the written frames of one segment's bytes into `recovered`.
fn read_frames(bytes: &[u8], recovered: &mut Recovered) {
    if bytes.len() < HEADER_BYTES as usize || bytes[..8] != MAGIC {
        return;
    }
    let key = u64_at(bytes, 8);
    let mut at = HEADER_BYTES as usize;
    while at + FRAME_HEADER <= bytes.len() {
        let state = u64_at(bytes, at) ^ key;
        if state == WRITTEN || state == DONE || state == CANCELLED {
            let len = u32::from_le_bytes(bytes[at + 8..at + 12].try_into().unwrap()) as usize;
            let crc = u32::from_le_bytes(bytes[at + 12..at + 16].try_into().unwrap());
            let body = bytes.get(at + FRAME_HEADER..at + FRAME_HEADER + len);
            if let Some(body) = body.filter(|body| crc32fast::hash(body) == crc) {
                if state == WRITTEN {
                    match decode(body) {
                        Some(record) => recovered.clicks.push(record),
                        None => recovered.damaged += 1,
                    }
                }
                at = (at + FRAME_HEADER + len).next_multiple_of(8);
                continue;
            }
            if state == WRITTEN {
                recovered.damaged += 1;
            }
        }
        at += 8;
    }
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap())
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn remove_if_present(path: &Path) -> std::io::Result<()> {
    match fs::remove_file(path) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(error),
        _ => Ok(()),
    }
}

/// The fixed part of a payload: id, offer, time, propensity, country, device, flags, address.
const FIXED: usize = 16 + 8 + 8 + 8 + 2 + 1 + 1 + 17;

/// The record's text fields, in payload order.
fn texts(record: &ClickRecord) -> [Option<&str>; 4] {
    [record.user_agent.as_deref(), record.referrer.as_deref(), record.source.as_deref(), record.campaign.as_deref()]
}

/// The payload's length: the fixed part, then each text as a `u16` (its length + 1, 0 for none)
/// followed by its bytes.
fn encoded_len(record: &ClickRecord) -> usize {
    FIXED + texts(record).iter().map(|text| 2 + text.map_or(0, str::len)).sum::<usize>()
}

/// Writes `record` into `out`, which is exactly [`encoded_len`] long. The format is little-endian
/// and versioned by the segment's magic; texts are at most a few kilobytes (the click path cuts
/// headers to 1 KB and query values to 256 characters), far below `u16`.
fn encode(record: &ClickRecord, out: &mut [u8]) {
    let mut at = 0;
    let mut put = |bytes: &[u8]| {
        out[at..at + bytes.len()].copy_from_slice(bytes);
        at += bytes.len();
    };
    put(record.click_id.as_bytes());
    put(&record.offer_id.to_le_bytes());
    put(&(record.created_at.unix_timestamp_nanos() as i64).to_le_bytes());
    put(&record.propensity.to_le_bytes());
    put(record.country.map_or("\0\0", Country::as_str).as_bytes());
    put(&[match record.device {
        None => 0,
        Some(DeviceClass::Desktop) => 1,
        Some(DeviceClass::Mobile) => 2,
        Some(DeviceClass::Tablet) => 3,
    }]);
    put(&[u8::from(record.is_bot) | u8::from(record.is_fallback) << 1]);
    let mut address = [0u8; 17];
    match record.ip_address {
        None => {}
        Some(IpAddr::V4(ip)) => {
            address[0] = 4;
            address[1..5].copy_from_slice(&ip.octets());
        }
        Some(IpAddr::V6(ip)) => {
            address[0] = 6;
            address[1..].copy_from_slice(&ip.octets());
        }
    }
    put(&address);
    for text in texts(record) {
        let len = text.map_or(0, |text| text.len() as u16 + 1);
        put(&len.to_le_bytes());
        put(text.unwrap_or_default().as_bytes());
    }
}

/// Reads a payload written by [`encode`]; `None` if it is not one.
fn decode(body: &[u8]) -> Option<ClickRecord> {
    let mut rest = body;
    let mut take = |n: usize| -> Option<&[u8]> {
        let (head, tail) = rest.split_at_checked(n)?;
        rest = tail;
        Some(head)
    };
    let click_id = Uuid::from_slice(take(16)?).ok()?;
    let offer_id = i64::from_le_bytes(take(8)?.try_into().ok()?);
    let nanos = i64::from_le_bytes(take(8)?.try_into().ok()?);
    let created_at = OffsetDateTime::from_unix_timestamp_nanos(nanos.into()).ok()?;
    let propensity = f64::from_le_bytes(take(8)?.try_into().ok()?);
    let country = take(2)?;
    let country = if country == b"\0\0" { None } else { Some(Country::from_code(std::str::from_utf8(country).ok()?)?) };
    let device = match take(1)?[0] {
        0 => None,
        1 => Some(DeviceClass::Desktop),
        2 => Some(DeviceClass::Mobile),
        3 => Some(DeviceClass::Tablet),
        _ => return None,
    };
    let flags = take(1)?[0];
    let address = take(17)?;
    let ip_address = match address[0] {
        0 => None,
        4 => Some(IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(&address[1..5]).ok()?))),
        6 => Some(IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(&address[1..]).ok()?))),
        _ => return None,
    };
    let mut text = || -> Option<Option<Box<str>>> {
        let len = u16::from_le_bytes(take(2)?.try_into().ok()?);
        if len == 0 {
            return Some(None);
        }
        Some(Some(Box::from(std::str::from_utf8(take(usize::from(len) - 1)?).ok()?)))
    };
    let (user_agent, referrer, source, campaign) = (text()?, text()?, text()?, text()?);
    Some(ClickRecord {
        click_id,
        offer_id,
        created_at,
        user_agent,
        ip_address,
        referrer,
        source,
        campaign,
        propensity,
        country,
        device,
        is_bot: flags & 1 != 0,
        is_fallback: flags & 2 != 0,
        log_slot: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("casino-click-log-{}", Uuid::now_v7().simple()));
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// A click with every field set, or (for odd `n`) with every optional field empty.
    fn click(n: u32) -> ClickRecord {
        let full = n.is_multiple_of(2);
        ClickRecord {
            click_id: Uuid::now_v7(),
            offer_id: i64::from(n),
            created_at: OffsetDateTime::from_unix_timestamp_nanos(1_764_000_000_123_456_789 + i128::from(n)).unwrap(),
            user_agent: full.then(|| format!("Mozilla/5.0 ({n}) Ünïcode {}", "x".repeat(n as usize % 700)).into()),
            ip_address: full.then(|| {
                if n.is_multiple_of(4) { "2001:db8::7".parse().unwrap() } else { "203.0.113.9".parse().unwrap() }
            }),
            referrer: full.then(|| "https://landing.example/page?a=1".into()),
            source: full.then(|| "fb_spring".into()),
            campaign: n.is_multiple_of(3).then(|| "".into()),
            propensity: 0.25 + f64::from(n) * 1e-9,
            country: full.then(|| Country::from_code("DE").unwrap()),
            device: [None, Some(DeviceClass::Desktop), Some(DeviceClass::Mobile), Some(DeviceClass::Tablet)]
                [n as usize % 4],
            is_bot: n.is_multiple_of(5),
            is_fallback: n.is_multiple_of(7),
            log_slot: None,
        }
    }

    fn ids(clicks: &[ClickRecord]) -> Vec<Uuid> {
        let mut ids: Vec<Uuid> = clicks.iter().map(|click| click.click_id).collect();
        ids.sort_unstable();
        ids
    }

    fn segment_count(dir: &Path) -> usize {
        segment_files(dir).unwrap().len()
    }

    #[test]
    fn a_dropped_log_gives_back_every_click_whole_at_the_next_open() {
        let dir = temp_dir();
        let written: Vec<ClickRecord> = (0..40).map(click).collect();
        {
            let (log, recovered) = ClickLog::open(&dir, None).unwrap();
            assert!(recovered.clicks.is_empty());
            for record in &written {
                log.write(record).unwrap();
            }
            // Dropped without release or close: as a killed process leaves it.
        }
        let (_log, recovered) = ClickLog::open(&dir, None).unwrap();
        assert_eq!(recovered.damaged, 0);
        assert_eq!(recovered.clicks, written, "field for field, in order");
        recovered.discard().unwrap();
        assert_eq!(segment_count(&dir), 1, "only the new segment is left");
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn released_and_cancelled_clicks_are_not_replayed() {
        let dir = temp_dir();
        let (log, _) = ClickLog::open(&dir, None).unwrap();
        let mut kept = Vec::new();
        for n in 0..30 {
            let record = click(n);
            let written = log.write(&record).unwrap();
            match n % 3 {
                0 => log.release([written.slot()]),
                1 => written.cancel(),
                _ => kept.push(record),
            }
        }
        drop(log);
        let (_log, recovered) = ClickLog::open(&dir, None).unwrap();
        assert_eq!(ids(&recovered.clicks), ids(&kept));
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_hole_left_by_a_killed_thread_is_stepped_over_and_a_foreign_frame_in_it_is_not_believed() {
        let dir = temp_dir();
        let (log, _) = ClickLog::open(&dir, None).unwrap();
        let (before, big, after) = (click(0), click(698), click(4));
        log.write(&before).unwrap();
        let hole = log.write(&big).unwrap();
        log.write(&after).unwrap();
        // The hole: a frame reserved and partly written whose state was never stored, holding a
        // whole frame of another segment (another key), as a crafted user agent could.
        let (other_dir, foreign) = (temp_dir(), click(6));
        let (other, _) = ClickLog::open(&other_dir, None).unwrap();
        let written = other.write(&foreign).unwrap();
        let foreign_len = FRAME_HEADER + encoded_len(&foreign);
        assert!(16 + foreign_len <= FRAME_HEADER + encoded_len(&big));
        // SAFETY (test): both ranges lie inside their mappings, and no other thread uses them.
        unsafe {
            let target = hole.segment.map.as_mut_ptr().add(hole.offset as usize);
            std::ptr::write_bytes(target, 0, 8);
            let source = written.segment.map.as_ptr().add(written.offset as usize);
            std::ptr::copy_nonoverlapping(source, target.add(16), foreign_len);
        }
        drop((hole, written, log, other));
        let (_log, recovered) = ClickLog::open(&dir, None).unwrap();
        assert_eq!(recovered.clicks, [before, after]);
        assert_eq!(recovered.damaged, 0);
        fs::remove_dir_all(dir).unwrap();
        fs::remove_dir_all(other_dir).unwrap();
    }

    #[test]
    fn a_torn_frame_is_counted_as_damaged_not_replayed() {
        let dir = temp_dir();
        let (log, _) = ClickLog::open(&dir, None).unwrap();
        let (torn, whole) = (click(2), click(8));
        let written = log.write(&torn).unwrap();
        log.write(&whole).unwrap();
        // SAFETY (test): a byte of the first frame's payload, inside the mapping.
        unsafe { *written.segment.map.as_mut_ptr().add(written.offset as usize + FRAME_HEADER + 20) ^= 0xff };
        drop((written, log));
        let (_log, recovered) = ClickLog::open(&dir, None).unwrap();
        assert_eq!(recovered.clicks, [whole]);
        assert_eq!(recovered.damaged, 1);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn threads_writing_at_once_lose_nothing_across_segments_and_settled_segments_are_deleted() {
        const THREADS: u32 = 4;
        const EACH: u32 = 5_000;
        let dir = temp_dir();
        // Segments of 64 KB: about a hundred of them, so threads overflow them together often.
        let (log, _) = ClickLog::open_sized(&dir, None, 64 << 10).unwrap();
        let written: Vec<Vec<(ClickRecord, LogSlot)>> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..THREADS)
                .map(|t| {
                    let log = log.clone();
                    scope.spawn(move || {
                        (0..EACH)
                            .map(|n| {
                                let record = click(t * EACH + n);
                                let slot = log.write(&record).unwrap().slot();
                                (record, slot)
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            workers.into_iter().map(|worker| worker.join().unwrap()).collect()
        });
        let all: Vec<(ClickRecord, LogSlot)> = written.into_iter().flatten().collect();
        assert!(segment_count(&dir) > 50, "{} segments", segment_count(&dir));
        // Half released by the writer: the other half must come back, and only it. (Read from a
        // copy of the files, as the next process would; this log goes on.)
        let (released, kept): (Vec<_>, Vec<_>) = all.into_iter().partition(|(record, _)| record.offer_id % 2 == 0);
        log.release(released.iter().map(|(_, slot)| *slot));
        let copy = temp_dir();
        for (_, path) in segment_files(&dir).unwrap() {
            fs::copy(&path, copy.join(path.file_name().unwrap())).unwrap();
        }
        let (_, recovered) = ClickLog::open(&copy, None).unwrap();
        let kept_records: Vec<ClickRecord> = kept.iter().map(|(record, _)| record.clone()).collect();
        assert_eq!(recovered.clicks.len(), (THREADS * EACH / 2) as usize);
        assert_eq!(ids(&recovered.clicks), ids(&kept_records));
        assert_eq!(recovered.damaged, 0);
        // All released: every full segment is deleted, the current one only at close.
        log.release(kept.iter().map(|(_, slot)| *slot));
        assert_eq!(segment_count(&dir), 1);
        log.close();
        assert_eq!(segment_count(&dir), 0);
        fs::remove_dir_all(dir).unwrap();
        fs::remove_dir_all(copy).unwrap();
    }
}

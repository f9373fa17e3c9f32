//! The click operation: pick an offer, give the click an id, render its Location, queue its record.
//!
//! The click path. Invariants: no database, no lock, no `.await`, no log line per click; one `load()`
//! of the routing table, released before the function returns; allocations only for the Location and
//! the record's own strings; metrics are relaxed atomic adds. If the record cannot be queued the
//! visitor is refused, so no click id is handed out that will not be stored.

use std::net::IpAddr;
use std::sync::atomic::Ordering;

use rand::Rng;
use time::OffsetDateTime;
use uuid::Uuid;

use super::App;
use crate::net::client_ip;
use crate::store::ClickRecord;

/// Longest stored `User-Agent` or `Referer`, in bytes; longer values are cut.
const MAX_HEADER_BYTES: usize = 1024;

/// What the click path knows of a visitor, as the request carried it (headers as raw bytes).
#[derive(Debug, Clone, Copy)]
pub struct Visitor<'a> {
    /// The socket peer's address.
    pub peer: IpAddr,
    /// `X-Forwarded-For`, believed only when the peer is a trusted proxy.
    pub forwarded_for: Option<&'a [u8]>,
    /// `User-Agent`.
    pub user_agent: Option<&'a [u8]>,
    /// `Referer`.
    pub referrer: Option<&'a [u8]>,
    /// Traffic source, validated by the caller.
    pub source: Option<&'a str>,
    /// Campaign, validated by the caller.
    pub campaign: Option<&'a str>,
}

/// A routed click: where to send the visitor.
#[derive(Debug)]
pub struct RoutedClick {
    /// The offer's URL carrying the click id: printable ASCII, always a valid `Location` value (the
    /// offer URL is validated when stored and macro values are percent-encoded; a property test in
    /// `routing/redirect.rs` holds it to that).
    pub location: String,
}

/// Why a click was not routed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ClickRefused {
    /// No offer is active.
    #[error("no active offer")]
    NoActiveOffer,
    /// The click queue is full (or the writer stopped): retry shortly.
    #[error("router overloaded, retry shortly")]
    Overloaded,
}

impl App {
    /// Routes one click: picks an offer from the current table, mints a UUID v7, queues the record
    /// and returns the Location. The offer's click counter counts it only once it is queued.
    pub fn route_click(&self, visitor: &Visitor<'_>) -> Result<RoutedClick, ClickRefused> {
        let now = OffsetDateTime::now_utc();
        let mut rng = rand::rng();
        // A guard, not a lock: the table stays alive until this click is answered, whatever swaps
        // meanwhile.
        let table = self.table.load();
        let offer = table.pick(&mut rng).ok_or(ClickRefused::NoActiveOffer)?;
        let click_id = new_click_id(now, &mut rng);
        let location = offer.redirect.render(&click_id, visitor.source.unwrap_or(""), visitor.campaign.unwrap_or(""));
        let record = ClickRecord {
            click_id,
            offer_id: offer.offer_id,
            created_at: now,
            user_agent: visitor.user_agent.and_then(sanitized_header),
            ip_address: Some(client_ip(visitor.peer, visitor.forwarded_for, &self.config.trusted_proxies)),
            referrer: visitor.referrer.and_then(sanitized_header),
            source: visitor.source.map(Box::from),
            campaign: visitor.campaign.map(Box::from),
            propensity: offer.propensity,
        };
        self.queue.try_enqueue(record).map_err(|_| ClickRefused::Overloaded)?;
        offer.clicks.fetch_add(1, Ordering::Relaxed);
        Ok(RoutedClick { location })
    }

    /// Counts the time one click took to answer.
    pub fn observe_click_latency(&self, elapsed: std::time::Duration) {
        self.metrics.click_latency.observe_duration(elapsed);
    }
}

/// A UUID v7: the millisecond timestamp, then random bits. Built from the thread's generator rather
/// than `Uuid::now_v7`, whose shared context takes a lock.
pub fn new_click_id(now: OffsetDateTime, rng: &mut impl Rng) -> Uuid {
    let millis = (now.unix_timestamp_nanos() / 1_000_000) as u64;
    let mut random = [0u8; 10];
    rng.fill_bytes(&mut random);
    uuid::Builder::from_unix_timestamp_millis(millis, &random).into_uuid()
}

/// A header's value as text for storage: its first [`MAX_HEADER_BYTES`] bytes, invalid UTF-8
/// replaced, control characters dropped. One allocation in the usual (clean ASCII) case.
fn sanitized_header(raw: &[u8]) -> Option<Box<str>> {
    let raw = &raw[..raw.len().min(MAX_HEADER_BYTES)];
    let text = String::from_utf8_lossy(raw);
    let clean: Box<str> = if text.chars().any(char::is_control) {
        text.chars().filter(|c| !c.is_control()).collect()
    } else {
        Box::from(&*text)
    };
    (!clean.is_empty()).then_some(clean)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    #[test]
    fn click_ids_are_v7_and_ordered_by_time() {
        let mut rng = SmallRng::seed_from_u64(7);
        let earlier = new_click_id(OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap(), &mut rng);
        let later = new_click_id(OffsetDateTime::from_unix_timestamp(1_700_000_001).unwrap(), &mut rng);
        assert_eq!(earlier.get_version_num(), 7);
        assert!(earlier < later);
    }

    #[test]
    fn stored_headers_are_cut_and_cleaned() {
        assert_eq!(sanitized_header(b"Mozilla\x01/5.0").as_deref(), Some("Mozilla/5.0"));
        assert_eq!(sanitized_header(&[b'a'; 2000]).map(|s| s.len()), Some(MAX_HEADER_BYTES));
        assert_eq!(sanitized_header(b"\x00\x01"), None);
    }
}

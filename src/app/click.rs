//! The click operation: know the visitor, pick an offer for them, give the click an id, render its
//! Location, queue its record.
//!
//! The click path. Invariants: no database, no lock, no `.await`, no log line per click; one `load()`
//! of the routing table, released before the function returns; allocations only for the Location and
//! the record's own strings; metrics are relaxed atomic adds. If the record cannot be queued the
//! visitor is refused, so no click id is handed out that will not be stored.
//!
//! Knowing the visitor costs nanoseconds (`crate::visitor`): the country from a trusted proxy's
//! header, else from the IP database, else `XX`; the device class from the user agent and the
//! `Sec-CH-UA-Mobile` hint; bots and link previews from the vendored list and from requests that say
//! they are no person's click (HEAD). Anything heavier is left to reports.

use std::net::IpAddr;
use std::sync::atomic::Ordering;

use rand::Rng;
use time::OffsetDateTime;
use uuid::Uuid;

use super::App;
use crate::config::BotAction;
use crate::net::client;
use crate::routing::Segment;
use crate::store::{ClickRecord, FALLBACK_OFFER_ID};
use crate::visitor::{BotList, Country, GeoIp, device_class};

/// Longest stored `User-Agent` or `Referer`, in bytes; longer values are cut.
const MAX_HEADER_BYTES: usize = 1024;
/// How much of a `User-Agent` is classified (device, bot): every real agent fits, and the cost of a
/// crafted one stays bounded.
const MAX_CLASSIFIED_BYTES: usize = 512;

/// What the click path knows of a visitor, as the request carried it (headers as raw bytes).
#[derive(Debug, Clone, Copy)]
pub struct Visitor<'a> {
    /// The socket peer's address.
    pub peer: IpAddr,
    /// `X-Forwarded-For`, believed only when the peer is a trusted proxy.
    pub forwarded_for: Option<&'a [u8]>,
    /// The country header (`COUNTRY_HEADER`), believed only when the peer is a trusted proxy.
    pub country: Option<&'a [u8]>,
    /// `User-Agent`.
    pub user_agent: Option<&'a [u8]>,
    /// `Sec-CH-UA-Mobile`.
    pub mobile_hint: Option<&'a [u8]>,
    /// `Referer`.
    pub referrer: Option<&'a [u8]>,
    /// The request says it is no person's click: a `HEAD` (a link checker's).
    pub is_preview_request: bool,
    /// Traffic source, validated by the caller.
    pub source: Option<&'a str>,
    /// Campaign, validated by the caller.
    pub campaign: Option<&'a str>,
}

/// How the click path tells visitors apart: the IP-to-country database (if any) and the bot list.
pub struct VisitorLookup {
    /// Countries of addresses no trusted header speaks for.
    pub geoip: Option<GeoIp>,
    /// Known crawlers and link-preview fetchers.
    pub bots: BotList,
}

/// A routed click: where to send the visitor.
#[derive(Debug)]
pub struct RoutedClick {
    /// The offer's URL (or the fallback URL) carrying the click id: printable ASCII, always a valid
    /// `Location` value (URLs are validated when stored or configured and macro values are
    /// percent-encoded; a property test in `routing/redirect.rs` holds it to that).
    pub location: String,
}

/// Why a click was not routed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ClickRefused {
    /// No offer is active, and no fallback URL is set.
    #[error("no active offer")]
    NoActiveOffer,
    /// No active offer accepts this visitor (country, device, source, campaign, caps), and no
    /// fallback URL is set.
    #[error("no offer accepts this visitor, and no FALLBACK_URL is set")]
    NoEligibleOffer,
    /// The click queue is full (or the writer stopped): retry shortly.
    #[error("router overloaded, retry shortly")]
    Overloaded,
}

impl App {
    /// Routes one click: knows the visitor, picks an offer that accepts them from the current table
    /// (or the fallback URL), mints a UUID v7, queues the record and returns the Location. The
    /// offer's click counter counts it only once it is queued.
    pub fn route_click(&self, visitor: &Visitor<'_>) -> Result<RoutedClick, ClickRefused> {
        let now = OffsetDateTime::now_utc();
        let mut rng = rand::rng();
        let client = client(visitor.peer, visitor.forwarded_for, &self.config.trusted_proxies);
        let country = self.country_of(client.via_trusted_proxy.then_some(visitor.country).flatten(), client.ip);
        let agent = visitor.user_agent.map(|agent| &agent[..agent.len().min(MAX_CLASSIFIED_BYTES)]);
        let device = device_class(agent, visitor.mobile_hint);
        let is_bot = visitor.is_preview_request || agent.is_some_and(|agent| self.lookup.bots.is_bot(agent));
        // A guard, not a lock: the table stays alive until this click is answered, whatever swaps
        // meanwhile.
        let table = self.table.load();
        let segment = Segment { country, device, source: visitor.source, campaign: visitor.campaign };
        let to_fallback = is_bot && self.config.bot_action == BotAction::Fallback;
        let pick = if to_fallback { None } else { table.pick(&segment, &mut rng) };
        let click_id = new_click_id(now, &mut rng);
        let (source, campaign) = (visitor.source.unwrap_or(""), visitor.campaign.unwrap_or(""));
        let (location, offer_id, propensity) = match (&pick, &self.config.fallback) {
            (Some(pick), _) => {
                (pick.offer.redirect.render(&click_id, source, campaign), pick.offer.offer_id, pick.propensity)
            }
            (None, Some(fallback)) => (fallback.render(&click_id, source, campaign), FALLBACK_OFFER_ID, 1.0),
            (None, None) if table.is_empty() => return Err(ClickRefused::NoActiveOffer),
            (None, None) => return Err(ClickRefused::NoEligibleOffer),
        };
        let record = ClickRecord {
            click_id,
            offer_id,
            created_at: now,
            user_agent: visitor.user_agent.and_then(sanitized_header),
            ip_address: Some(client.ip),
            referrer: visitor.referrer.and_then(sanitized_header),
            source: visitor.source.map(Box::from),
            campaign: visitor.campaign.map(Box::from),
            propensity,
            country: Some(country),
            device: Some(device),
            is_bot,
            is_fallback: pick.is_none(),
            log_slot: None,
        };
        if self.queue.try_enqueue(record).is_err() {
            if let Some(pick) = pick {
                pick.offer.give_back_slot();
            }
            return Err(ClickRefused::Overloaded);
        }
        match pick {
            Some(pick) => pick.offer.clicks.fetch_add(1, Ordering::Relaxed),
            None => self.metrics.fallback_clicks.fetch_add(1, Ordering::Relaxed),
        };
        if is_bot {
            self.metrics.bot_clicks.fetch_add(1, Ordering::Relaxed);
        }
        Ok(RoutedClick { location })
    }

    /// The visitor's country: the trusted proxy's header if it names one, else the IP database's
    /// answer for the client address, else unknown.
    fn country_of(&self, trusted_header: Option<&[u8]>, client: IpAddr) -> Country {
        if let Some(country) = trusted_header.map(Country::from_header).filter(|&country| country != Country::UNKNOWN) {
            return country;
        }
        self.lookup.geoip.as_ref().map_or(Country::UNKNOWN, |db| db.country(client))
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

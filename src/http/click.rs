//! `GET /click`: pick an offer, give the click an id, queue its record, answer 302.
//!
//! The click path. Invariants: no database, no lock, no `.await`, no log line per click; one `load()`
//! of the routing table, released before the function returns; allocations only for the Location and
//! the record's own strings; metrics are three relaxed atomic adds (offer counter, latency bucket and
//! sum). If the record cannot be queued the visitor gets a 503 instead of a
//! redirect, so no click id is handed out that will not be stored.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CACHE_CONTROL, HeaderMap, HeaderValue, LOCATION, REFERER, RETRY_AFTER, USER_AGENT};
use hyper::{Response, StatusCode, Uri};
use rand::Rng;
use time::OffsetDateTime;
use uuid::Uuid;

use super::query::{QueryError, pairs};
use super::{HttpResponse, error};
use crate::app::App;
use crate::net::client_ip;
use crate::store::ClickRecord;

/// Longest accepted `source` or `campaign`, in characters.
pub const MAX_PARAM_CHARS: usize = 256;
/// Longest stored `User-Agent` or `Referer`, in bytes; longer values are cut.
const MAX_HEADER_BYTES: usize = 1024;

/// The click's query parameters.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ClickParams<'a> {
    /// Traffic source.
    pub source: Option<Cow<'a, str>>,
    /// Campaign.
    pub campaign: Option<Cow<'a, str>>,
}

/// A click query that cannot be accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ClickParamError {
    /// Undecodable query string.
    #[error(transparent)]
    Query(#[from] QueryError),
    /// A value over [`MAX_PARAM_CHARS`].
    #[error("{0} must be at most 256 characters")]
    TooLong(&'static str),
    /// A value with control characters.
    #[error("{0} must not contain control characters")]
    Control(&'static str),
}

impl<'a> ClickParams<'a> {
    /// Parses `source` and `campaign` from a query string; other parameters are ignored and the
    /// first occurrence of a repeated one wins.
    pub fn parse(query: &'a str) -> Result<ClickParams<'a>, ClickParamError> {
        let mut params = ClickParams::default();
        for pair in pairs(query) {
            let (key, value) = pair?;
            let (name, slot) = match key.as_ref() {
                "source" => ("source", &mut params.source),
                "campaign" => ("campaign", &mut params.campaign),
                _ => continue,
            };
            if slot.is_some() || value.is_empty() {
                continue;
            }
            if value.chars().count() > MAX_PARAM_CHARS {
                return Err(ClickParamError::TooLong(name));
            }
            if value.chars().any(char::is_control) {
                return Err(ClickParamError::Control(name));
            }
            *slot = Some(value);
        }
        Ok(params)
    }
}

/// Handles `GET /click`.
pub fn handle_click(app: &App, uri: &Uri, headers: &HeaderMap, peer: SocketAddr) -> HttpResponse {
    let started = Instant::now();
    let params = match ClickParams::parse(uri.query().unwrap_or("")) {
        Ok(params) => params,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    let source = params.source.as_deref().unwrap_or("");
    let campaign = params.campaign.as_deref().unwrap_or("");
    let now = OffsetDateTime::now_utc();
    let mut rng = rand::rng();

    // A guard, not a lock: the table stays alive until this click is answered, whatever swaps meanwhile.
    let table = app.table.load();
    let Some(offer) = table.pick(&mut rng) else {
        return error(StatusCode::SERVICE_UNAVAILABLE, "no active offer");
    };
    let click_id = new_click_id(now, &mut rng);
    let Ok(location) = HeaderValue::try_from(offer.redirect.render(&click_id, source, campaign)) else {
        return error(StatusCode::INTERNAL_SERVER_ERROR, "offer URL produced an invalid Location");
    };
    let record = ClickRecord {
        click_id,
        offer_id: offer.offer_id,
        created_at: now,
        user_agent: sanitized_header(headers, USER_AGENT),
        ip_address: Some(client_ip(
            peer.ip(),
            headers.get("x-forwarded-for").map(HeaderValue::as_bytes),
            &app.config.trusted_proxies,
        )),
        referrer: sanitized_header(headers, REFERER),
        source: params.source.map(|s| s.into()),
        campaign: params.campaign.map(|c| c.into()),
        propensity: offer.propensity,
    };
    if app.queue.try_enqueue(record).is_err() {
        let mut response = error(StatusCode::SERVICE_UNAVAILABLE, "router overloaded, retry shortly");
        response.headers_mut().insert(RETRY_AFTER, HeaderValue::from_static("1"));
        return response;
    }
    offer.clicks.fetch_add(1, Ordering::Relaxed);
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::FOUND;
    let response_headers = response.headers_mut();
    response_headers.insert(LOCATION, location);
    response_headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    app.metrics.click_latency.observe_duration(started.elapsed());
    response
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
fn sanitized_header(headers: &HeaderMap, name: hyper::header::HeaderName) -> Option<Box<str>> {
    let raw = headers.get(name)?.as_bytes();
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
    fn params_are_decoded_and_bounded() {
        let params = ClickParams::parse("source=face%20book&campaign=w24&other=x").unwrap();
        assert_eq!(params.source.as_deref(), Some("face book"));
        assert_eq!(params.campaign.as_deref(), Some("w24"));
        assert_eq!(ClickParams::parse("").unwrap(), ClickParams::default());
        let long = format!("source={}", "a".repeat(MAX_PARAM_CHARS + 1));
        assert_eq!(ClickParams::parse(&long), Err(ClickParamError::TooLong("source")));
        assert_eq!(ClickParams::parse("campaign=a%00b"), Err(ClickParamError::Control("campaign")));
        assert_eq!(ClickParams::parse("source=%zz"), Err(ClickParamError::Query(QueryError::BadEscape)));
    }

    #[test]
    fn click_ids_are_v7_and_ordered_by_time() {
        let mut rng = SmallRng::seed_from_u64(7);
        let earlier = new_click_id(OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap(), &mut rng);
        let later = new_click_id(OffsetDateTime::from_unix_timestamp(1_700_000_001).unwrap(), &mut rng);
        assert_eq!(earlier.get_version_num(), 7);
        assert!(earlier < later);
    }
}

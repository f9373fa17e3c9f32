//! `GET /click`: parse the query and the visitor's headers, route the click ([`App::route_click`]),
//! answer 302.
//!
//! The click path: no database, no lock, no `.await`, no log line per click. A refused click (no
//! offer, full queue) gets a 503 instead of a redirect, so no click id is handed out that will not be
//! stored.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CACHE_CONTROL, HeaderMap, HeaderName, HeaderValue, LOCATION, REFERER, RETRY_AFTER, USER_AGENT};
use hyper::{Response, StatusCode, Uri};

use super::query::{QueryError, pairs};
use super::{HttpResponse, error};
use crate::app::{App, ClickRefused, Visitor};

/// Request headers the click reads beyond hyper's constants.
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const SEC_CH_UA_MOBILE: HeaderName = HeaderName::from_static("sec-ch-ua-mobile");
const SEC_PURPOSE: HeaderName = HeaderName::from_static("sec-purpose");
const PURPOSE: HeaderName = HeaderName::from_static("purpose");

/// The answer to a prefetch of a click link.
pub const PREFETCH_REFUSED: &str = "a prefetch is not a click: the visitor's navigation is routed when it comes";

/// Whether `haystack` contains `needle` (ASCII, any case). Header values are short.
fn contains_ignore_case(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|window| window.eq_ignore_ascii_case(needle))
}

/// Longest accepted `source` or `campaign`, in characters.
pub const MAX_PARAM_CHARS: usize = 256;

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

/// Handles `GET /click` (and `HEAD`, a bot's): parses the query, routes the click, answers 302 (or
/// why not).
pub fn handle_click(app: &App, uri: &Uri, headers: &HeaderMap, peer: SocketAddr, is_head: bool) -> HttpResponse {
    let started = Instant::now();
    let header = |name: &HeaderName| headers.get(name).map(HeaderValue::as_bytes);
    let is_prefetch = |name: &HeaderName| header(name).is_some_and(|value| contains_ignore_case(value, b"prefetch"));
    if is_prefetch(&SEC_PURPOSE) || is_prefetch(&PURPOSE) {
        // A browser's speculative load: were it answered, the visitor's real navigation would reuse
        // this 302, and the click would be counted before anyone clicked. Refused (a non-2xx/3xx
        // answer cancels the prefetch), nothing is recorded, and the navigation asks again.
        let mut response = error(StatusCode::SERVICE_UNAVAILABLE, PREFETCH_REFUSED);
        response.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        return response;
    }
    let params = match ClickParams::parse(uri.query().unwrap_or("")) {
        Ok(params) => params,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    let visitor = Visitor {
        peer: peer.ip(),
        forwarded_for: header(&X_FORWARDED_FOR),
        country: header(&app.config().country_header),
        user_agent: header(&USER_AGENT),
        mobile_hint: header(&SEC_CH_UA_MOBILE),
        referrer: header(&REFERER),
        is_preview_request: is_head,
        source: params.source.as_deref(),
        campaign: params.campaign.as_deref(),
    };
    let routed = match app.route_click(&visitor) {
        Ok(routed) => routed,
        Err(refused @ (ClickRefused::NoActiveOffer | ClickRefused::NoEligibleOffer)) => {
            return error(StatusCode::SERVICE_UNAVAILABLE, &refused.to_string());
        }
        Err(refused @ ClickRefused::Overloaded) => {
            let mut response = error(StatusCode::SERVICE_UNAVAILABLE, &refused.to_string());
            response.headers_mut().insert(RETRY_AFTER, HeaderValue::from_static("1"));
            return response;
        }
    };
    // Cannot fail (see `RoutedClick::location`); a 500 rather than a panic if it ever did.
    let Ok(location) = HeaderValue::try_from(routed.location) else {
        return error(StatusCode::INTERNAL_SERVER_ERROR, "offer URL produced an invalid Location");
    };
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::FOUND;
    let response_headers = response.headers_mut();
    response_headers.insert(LOCATION, location);
    response_headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    app.observe_click_latency(started.elapsed());
    response
}

#[cfg(test)]
mod tests {
    use super::*;

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
}

//! `/postback`: conversions reported by casino platforms, server to server.
//!
//! Accepted as `GET` with query parameters (what most platforms send), `POST` with a JSON body, or
//! `POST` with a form body; the secret may also come in `X-Postback-Secret`. The steps: parse,
//! validate, find the click (asking the writer to flush if it may still be queued), check the offer's
//! secret in constant time, map the event word, apply. Every postback, accepted or not, is written to
//! the postback log, and a 2xx is answered only once the event is committed.
//!
//! Invariant: the secret is never logged, stored, or echoed in a response.

use std::net::SocketAddr;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::header::CONTENT_TYPE;
use hyper::{Method, Request, StatusCode};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use super::query::pairs;
use super::{ApiError, HttpResponse, error, json, read_body};
use crate::app::App;
use crate::conversion::{EventKind, validate_payout};
use crate::secret::secrets_match;
use crate::store::{Conversion, ConversionOutcome, PostbackLogEntry, PostbackOutcome, StoreError};

/// How long a postback for a click not yet in the database waits for the writer to flush.
const FLUSH_WAIT: Duration = Duration::from_secs(3);
/// A click id younger than this may still wait in the writer's queue; older unknown ids are not
/// worth a flush (which would let anyone break the writer's batching with random ids).
const RECENT_CLICK: Duration = Duration::from_secs(600);
/// Longest accepted `tid` or `external_player_id`.
const MAX_ID_CHARS: usize = 128;
/// Longest click id or event word kept in the postback log.
const MAX_LOGGED_CHARS: usize = 128;

/// The fields of a postback as they arrive, before any validation.
#[derive(Debug, Default, Deserialize)]
struct RawPostback {
    click_id: Option<String>,
    event: Option<String>,
    #[serde(default, deserialize_with = "number_or_text")]
    payout: Option<String>,
    secret: Option<String>,
    external_player_id: Option<String>,
    tid: Option<String>,
    currency: Option<String>,
}

/// Accepts a payout given as a JSON number or as a string; validation happens later.
fn number_or_text<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum NumberOrText {
        Number(serde_json::Number),
        Text(String),
    }
    Ok(Option::<NumberOrText>::deserialize(deserializer)?.map(|value| match value {
        NumberOrText::Number(n) => n.to_string(),
        NumberOrText::Text(t) => t,
    }))
}

impl RawPostback {
    fn from_pairs(input: &str) -> Result<RawPostback, String> {
        let mut raw = RawPostback::default();
        for pair in pairs(input) {
            let (key, value) = pair.map_err(|e| e.to_string())?;
            let slot = match key.as_ref() {
                "click_id" => &mut raw.click_id,
                "event" => &mut raw.event,
                "payout" => &mut raw.payout,
                "secret" => &mut raw.secret,
                "external_player_id" => &mut raw.external_player_id,
                "tid" => &mut raw.tid,
                "currency" => &mut raw.currency,
                _ => continue,
            };
            if slot.is_none() && !value.is_empty() {
                *slot = Some(value.into_owned());
            }
        }
        Ok(raw)
    }
}

#[derive(Serialize)]
struct Accepted<'a> {
    status: &'static str,
    message: &'a str,
    click_id: Uuid,
}

/// Handles `GET /postback` and `POST /postback`.
pub async fn handle(app: &App, req: Request<Incoming>, peer: SocketAddr) -> HttpResponse {
    let header_secret = req.headers().get("x-postback-secret").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let mut log = PostbackLogEntry {
        received_at: OffsetDateTime::now_utc(),
        offer_id: None,
        click_id: None,
        event: None,
        payout: None,
        currency: None,
        tid: None,
        outcome: PostbackOutcome::Invalid,
        reason: None,
        source_ip: Some(peer.ip()),
    };
    let mut raw = match parse_request(req, app.config.header_read_timeout).await {
        Ok(raw) => raw,
        Err(refused) => {
            // Unreadable postbacks are logged too: "the casino says it sent it" starts here.
            log.reason = Some(refused.message().to_owned());
            if let Err(e) = app.store.log_postback(&log).await {
                return store_failure(app, e);
            }
            app.metrics.postback(PostbackOutcome::Invalid);
            tracing::info!(outcome = "invalid", reason = refused.message(), "postback refused");
            return refused.into_response();
        }
    };
    if header_secret.is_some() {
        raw.secret = header_secret;
    }
    log.click_id = raw.click_id.as_deref().map(|id| truncated(id, MAX_LOGGED_CHARS));
    log.event = raw.event.as_deref().map(|event| truncated(event, MAX_LOGGED_CHARS));
    log.tid = raw.tid.as_deref().map(|tid| truncated(tid, MAX_LOGGED_CHARS));
    log.currency = raw.currency.as_deref().map(|c| truncated(c, 8));
    log.payout = raw.payout.as_deref().and_then(|p| p.trim().parse().ok());

    match process(app, &raw, &mut log).await {
        Ok(response) => response,
        Err(Refusal { status, outcome, reason }) => {
            log.outcome = outcome;
            log.reason = Some(reason.clone());
            if let Err(e) = app.store.log_postback(&log).await {
                return store_failure(app, e);
            }
            app.metrics.postback(outcome);
            tracing::info!(
                outcome = outcome.as_str(),
                %reason,
                offer_id = log.offer_id,
                click_id = log.click_id.as_deref(),
                "postback refused"
            );
            error(status, &reason)
        }
    }
}

/// A postback refused before it was applied; logged, then answered with `status`.
struct Refusal {
    status: StatusCode,
    outcome: PostbackOutcome,
    reason: String,
}

fn refuse(status: StatusCode, outcome: PostbackOutcome, reason: impl Into<String>) -> Refusal {
    Refusal { status, outcome, reason: reason.into() }
}

fn invalid(reason: impl Into<String>) -> Refusal {
    refuse(StatusCode::BAD_REQUEST, PostbackOutcome::Invalid, reason)
}

async fn parse_request(req: Request<Incoming>, body_timeout: Duration) -> Result<RawPostback, ApiError> {
    if req.method() == Method::GET {
        return RawPostback::from_pairs(req.uri().query().unwrap_or("")).map_err(ApiError::bad_request);
    }
    let content_type = req.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let body = read_body(req.into_body(), body_timeout).await?;
    let media_type = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    match media_type.as_str() {
        // serde's messages quote the offending value, which may be the secret: say where, not what.
        "application/json" => serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(json_error_reason(&e))),
        "application/x-www-form-urlencoded" => {
            let text = std::str::from_utf8(&body).map_err(|_| ApiError::bad_request("form body is not UTF-8"))?;
            RawPostback::from_pairs(text).map_err(ApiError::bad_request)
        }
        _ => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "POST /postback takes application/json or application/x-www-form-urlencoded",
        )),
    }
}

/// Why a JSON body was refused: where, not what. serde's own messages quote the offending value,
/// which may be the secret.
fn json_error_reason(error: &serde_json::Error) -> String {
    format!("invalid JSON body ({:?} error at line {}, column {})", error.classify(), error.line(), error.column())
}

async fn process(app: &App, raw: &RawPostback, log: &mut PostbackLogEntry) -> Result<HttpResponse, Refusal> {
    let click_text = raw.click_id.as_deref().ok_or_else(|| invalid("click_id is required"))?;
    let click_id = Uuid::try_parse(click_text.trim()).map_err(|_| invalid("click_id is not a valid click id"))?;
    let event_word = raw.event.as_deref().ok_or_else(|| invalid("event is required"))?;
    let payout = match raw.payout.as_deref() {
        None => None,
        Some(text) => {
            let value: f64 = text.trim().parse().map_err(|_| invalid("payout must be a number"))?;
            Some(validate_payout(value, app.config.max_payout).map_err(|e| invalid(e.to_string()))?)
        }
    };
    let currency = match raw.currency.as_deref() {
        None => "USD".to_owned(),
        Some(code) if code.len() == 3 && code.bytes().all(|b| b.is_ascii_alphabetic()) => code.to_ascii_uppercase(),
        Some(_) => return Err(invalid("currency must be a three-letter ISO 4217 code")),
    };
    for (name, value) in [("tid", &raw.tid), ("external_player_id", &raw.external_player_id)] {
        if value.as_deref().is_some_and(|v| v.chars().count() > MAX_ID_CHARS || v.chars().any(char::is_control)) {
            return Err(invalid(format!("{name} must be at most {MAX_ID_CHARS} printable characters")));
        }
    }

    let unknown = || refuse(StatusCode::NOT_FOUND, PostbackOutcome::UnknownClick, "unknown click_id");
    if click_id.get_version_num() != 7 {
        return Err(unknown()); // the router only hands out UUID v7 ids
    }
    let owner = match app.store.click_owner(click_id).await {
        Ok(Some(owner)) => owner,
        Ok(None) if !is_recent(click_id) => return Err(unknown()),
        Ok(None) => {
            // The click may still wait in the writer's queue: flush it and look again. A flush that
            // fails leaves it possibly in memory or in the journal (an outage): the platform retries.
            if app.queue.flush(FLUSH_WAIT).await.is_err() {
                return Ok(store_failure(app, StoreError::Unavailable("pending clicks not written yet".into())));
            }
            match app.store.click_owner(click_id).await {
                Ok(Some(owner)) => owner,
                Ok(None) => {
                    return Err(refuse(StatusCode::NOT_FOUND, PostbackOutcome::UnknownClick, "unknown click_id"));
                }
                Err(e) => return Ok(store_failure(app, e)),
            }
        }
        Err(e) => return Ok(store_failure(app, e)),
    };
    log.offer_id = Some(owner.offer_id);
    let secret = raw.secret.as_deref().unwrap_or("");
    if !secrets_match(owner.postback_secret.as_bytes(), secret.as_bytes()) {
        return Err(refuse(StatusCode::FORBIDDEN, PostbackOutcome::Forbidden, "invalid postback secret"));
    }
    let kind = EventKind::resolve(event_word, &owner.event_aliases)
        .ok_or_else(|| invalid(format!("unknown event {:?}", truncated(event_word, MAX_LOGGED_CHARS))))?;
    match kind {
        EventKind::Payout if payout.is_none() => return Err(invalid("a payout event needs a payout")),
        EventKind::Deposit if payout.is_none() || raw.tid.is_none() => {
            return Err(invalid("a deposit event needs a payout and a tid"));
        }
        _ => {}
    }
    let conversion = Conversion {
        click_id,
        offer_id: owner.offer_id,
        clicked_at: owner.clicked_at,
        kind,
        payout,
        currency,
        tid: raw.tid.clone(),
        external_player_id: raw.external_player_id.clone(),
    };
    let outcome = match app.store.apply_conversion(&conversion, log).await {
        Ok(outcome) => outcome,
        Err(e) => return Ok(store_failure(app, e)),
    };
    app.metrics.postback(outcome.into());
    Ok(match outcome {
        ConversionOutcome::Recorded => {
            json(StatusCode::OK, &Accepted { status: "success", message: recorded_message(kind, payout), click_id })
        }
        ConversionOutcome::Duplicate => json(
            StatusCode::OK,
            &Accepted { status: "duplicate", message: "event already recorded; nothing changed", click_id },
        ),
        ConversionOutcome::NoFtd => {
            tracing::info!(outcome = "no_ftd", offer_id = owner.offer_id, %click_id, "postback refused");
            error(StatusCode::CONFLICT, "click has no FTD")
        }
    })
}

/// The answer to a store failure (503 while the database is unreachable), counted.
fn store_failure(app: &App, error: StoreError) -> HttpResponse {
    if matches!(error, StoreError::Unavailable(_)) {
        app.metrics.postback_unavailable();
    }
    ApiError::from(error).into_response()
}

/// Whether a v7 click id was minted within [`RECENT_CLICK`] (or claims to be from the future).
fn is_recent(click_id: Uuid) -> bool {
    let Some(timestamp) = click_id.get_timestamp() else { return false };
    let (seconds, nanos) = timestamp.to_unix();
    let minted = std::time::UNIX_EPOCH + Duration::new(seconds, nanos);
    std::time::SystemTime::now().duration_since(minted).map_or(true, |age| age < RECENT_CLICK)
}

fn recorded_message(kind: EventKind, payout: Option<f64>) -> &'static str {
    match (kind, payout) {
        (EventKind::Ftd, Some(_)) => "FTD and payout recorded",
        (EventKind::Ftd, None) => "FTD recorded",
        (EventKind::Payout, _) => "payout recorded",
        (EventKind::Reg, _) => "registration recorded",
        (EventKind::Deposit, _) => "deposit recorded",
        (EventKind::Rejected, _) => "FTD rejected; it no longer counts",
    }
}

fn truncated(text: &str, max_chars: usize) -> String {
    text.chars().take(max_chars).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_fields_are_read_and_unknown_ones_ignored() {
        let raw = RawPostback::from_pairs("click_id=abc&event=ftd&payout=10.5&secret=s%20x&foo=bar").unwrap();
        assert_eq!(raw.click_id.as_deref(), Some("abc"));
        assert_eq!(raw.payout.as_deref(), Some("10.5"));
        assert_eq!(raw.secret.as_deref(), Some("s x"));
        assert!(RawPostback::from_pairs("click_id=%zz").is_err());
    }

    #[test]
    fn only_recent_v7_ids_count_as_recent() {
        assert!(is_recent(Uuid::now_v7()));
        let old = uuid::Builder::from_unix_timestamp_millis(1_600_000_000_000, &[7; 10]).into_uuid();
        assert!(!is_recent(old));
        assert!(!is_recent(Uuid::from_u128(0x1234_5678_1234_4234_8234_1234_5678_9abc)), "v4 has no timestamp");
    }

    #[test]
    fn json_payout_may_be_a_number_or_a_string() {
        let raw: RawPostback = serde_json::from_str(r#"{"click_id":"a","event":"ftd","payout":100.5}"#).unwrap();
        assert_eq!(raw.payout.as_deref(), Some("100.5"));
        let raw: RawPostback = serde_json::from_str(r#"{"payout":"7"}"#).unwrap();
        assert_eq!(raw.payout.as_deref(), Some("7"));
        assert!(serde_json::from_str::<RawPostback>(r#"{"payout":[1]}"#).is_err());
    }

    mod properties {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            /// Any query string or form body, any JSON body: fields or a 400's reason, never a panic.
            #[test]
            fn any_postback_body_parses_or_fails_cleanly(text in any::<String>(), bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
                let _ = RawPostback::from_pairs(&text);
                if let Err(error) = serde_json::from_slice::<RawPostback>(&bytes) {
                    let _ = json_error_reason(&error);
                }
            }

            /// serde quotes a wrongly typed value in its message; the reason given to the client
            /// must not, or a numeric secret would be echoed.
            #[test]
            fn json_errors_do_not_echo_the_secret(secret in 1_000_000u64..) {
                let error = serde_json::from_str::<RawPostback>(&format!("{{\"secret\": {secret}}}")).unwrap_err();
                prop_assert!(error.to_string().contains(&secret.to_string()), "serde would echo it");
                prop_assert!(!json_error_reason(&error).contains(&secret.to_string()));
            }
        }
    }
}

//! `/postback`: conversions reported by casino platforms, server to server.
//!
//! Accepted as `GET` with query parameters (what most platforms send), `POST` with a JSON body, or
//! `POST` with a form body; the secret may also come in `X-Postback-Secret`. This module reads the
//! fields and renders the answer; [`App::record_postback`] validates, authenticates, applies and logs.
//!
//! Invariant: the secret is never logged, stored, or echoed in a response.

use std::net::SocketAddr;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::header::CONTENT_TYPE;
use hyper::{Method, Request, StatusCode};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::query::pairs;
use super::{ApiError, HttpResponse, error, json, read_body};
use crate::app::{App, PostbackAccepted, PostbackInput, PostbackRefused};
use crate::conversion::EventKind;
use crate::store::PostbackOutcome;

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
    let raw = match parse_request(req, app.config().header_read_timeout).await {
        Ok(raw) => raw,
        Err(refused) => {
            return match app.log_unreadable_postback(refused.message(), Some(peer.ip())).await {
                Ok(()) => refused.into_response(),
                Err(error) => refusal(error),
            };
        }
    };
    let input = PostbackInput {
        click_id: raw.click_id,
        event: raw.event,
        payout: raw.payout,
        secret: header_secret.or(raw.secret),
        external_player_id: raw.external_player_id,
        tid: raw.tid,
        currency: raw.currency,
        source_ip: Some(peer.ip()),
    };
    match app.record_postback(input).await {
        Ok(PostbackAccepted::Recorded { click_id, kind, payout }) => {
            json(StatusCode::OK, &Accepted { status: "success", message: recorded_message(kind, payout), click_id })
        }
        Ok(PostbackAccepted::Duplicate { click_id }) => json(
            StatusCode::OK,
            &Accepted { status: "duplicate", message: "event already recorded; nothing changed", click_id },
        ),
        Err(refused) => refusal(refused),
    }
}

/// The answer to a postback that was not applied.
fn refusal(refused: PostbackRefused) -> HttpResponse {
    match refused {
        PostbackRefused::Refused { outcome, reason } => {
            let status = match outcome {
                PostbackOutcome::Forbidden => StatusCode::FORBIDDEN,
                PostbackOutcome::UnknownClick => StatusCode::NOT_FOUND,
                PostbackOutcome::NoFtd => StatusCode::CONFLICT,
                PostbackOutcome::Invalid | PostbackOutcome::Accepted | PostbackOutcome::Duplicate => {
                    StatusCode::BAD_REQUEST
                }
            };
            error(status, &reason)
        }
        PostbackRefused::Store(error) => ApiError::from(error).into_response(),
    }
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

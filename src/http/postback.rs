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
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::query::pairs;
use super::{ApiError, HttpResponse, error, json, read_body};
use crate::app::{App, PayoutValue, PostbackAccepted, PostbackInput, PostbackRefused, SECRET_BYTES};
use crate::conversion::EventKind;
use crate::store::PostbackOutcome;

/// The fields a postback may carry, by name, in the query, a form body or a JSON body.
pub const FIELDS: [&str; 7] = ["click_id", "event", "payout", "secret", "external_player_id", "tid", "currency"];

/// The fields of a postback as they arrive, before any validation.
#[derive(Debug, Default, PartialEq)]
struct RawPostback {
    click_id: Option<String>,
    event: Option<String>,
    payout: Option<PayoutValue>,
    secret: Option<String>,
    external_player_id: Option<String>,
    tid: Option<String>,
    currency: Option<String>,
    /// Query or form parameters that are not postback fields (platforms add their own).
    ignored: Vec<String>,
}

impl RawPostback {
    /// The text field called `name` (`payout` is not text-only, so it is not one of them).
    fn text_field(&mut self, name: &str) -> Option<&mut Option<String>> {
        Some(match name {
            "click_id" => &mut self.click_id,
            "event" => &mut self.event,
            "secret" => &mut self.secret,
            "external_player_id" => &mut self.external_player_id,
            "tid" => &mut self.tid,
            "currency" => &mut self.currency,
            _ => return None,
        })
    }

    /// A query string or form body. The first non-empty value of a field wins; other parameters are
    /// ignored, but their names are kept for the postback log.
    fn from_pairs(input: &str) -> Result<RawPostback, String> {
        let mut raw = RawPostback::default();
        for pair in pairs(input) {
            let (key, value) = pair.map_err(|e| e.to_string())?;
            if value.is_empty() {
                continue;
            }
            if key == "payout" {
                raw.payout.get_or_insert_with(|| PayoutValue::Text(value.into_owned()));
            } else if let Some(slot) = raw.text_field(&key) {
                slot.get_or_insert_with(|| value.into_owned());
            } else if !raw.ignored.iter().any(|name| *name == key) {
                raw.ignored.push(key.into_owned());
            }
        }
        Ok(raw)
    }

    /// A JSON object of the postback fields: strings (or `null`), `payout` a number or a string.
    /// Unknown fields are refused by name, so a misspelled `payout` cannot be silently lost. Errors
    /// say where, never what: a value may be the secret.
    fn from_json(body: &[u8]) -> Result<RawPostback, String> {
        let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| json_error_reason(&e))?;
        let serde_json::Value::Object(fields) = value else {
            return Err("a JSON postback must be an object".to_owned());
        };
        let unknown: Vec<String> = fields
            .keys()
            .filter(|name| !FIELDS.contains(&name.as_str()))
            .map(|name| format!("{:?}", name.chars().take(64).collect::<String>()))
            .collect();
        if !unknown.is_empty() {
            return Err(format!("unknown field {}: a JSON postback takes {}", unknown.join(", "), FIELDS.join(", ")));
        }
        let mut raw = RawPostback::default();
        for (name, value) in fields {
            match (name.as_str(), value) {
                (_, serde_json::Value::Null) => {}
                ("payout", serde_json::Value::Number(number)) => {
                    raw.payout = number.as_f64().map(PayoutValue::Number);
                }
                // Empty text is no value, as in a query or form postback.
                (_, serde_json::Value::String(text)) if text.is_empty() => {}
                ("payout", serde_json::Value::String(text)) => raw.payout = Some(PayoutValue::Text(text)),
                ("payout", _) => return Err("payout must be a number or a string".to_owned()),
                (name, serde_json::Value::String(text)) => {
                    if let Some(slot) = raw.text_field(name) {
                        *slot = Some(text);
                    }
                }
                (name, _) => return Err(format!("{name} must be a string")),
            }
        }
        Ok(raw)
    }
}

/// A postback recorded, a repeat of one recorded (or held) before, or one held for its click.
#[derive(Serialize, ToSchema)]
#[schema(as = PostbackAccepted)]
pub(super) struct Accepted<'a> {
    /// `success` when recorded now, `duplicate` when it was recorded or held before (nothing
    /// changed), `pending` (status 202) when its click is not stored yet: it is applied as soon as
    /// the click is, or shows as expired in the postback log after `POSTBACK_HOLD_SECONDS`.
    #[schema(pattern = "^(success|duplicate|pending)$")]
    status: &'static str,
    /// What was recorded.
    message: &'a str,
    /// The click.
    click_id: Uuid,
}

/// Handles `GET /postback` and `POST /postback`.
pub async fn handle(app: &App, req: Request<Incoming>, peer: SocketAddr) -> HttpResponse {
    let header_secret = req.headers().get("x-postback-secret").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let parsed = parse_request(req, app.config().header_read_timeout).await;
    let raw = match parsed.and_then(|raw| secrets_bounded(raw, header_secret.as_deref())) {
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
        ignored_fields: raw.ignored,
    };
    match app.record_postback(input).await {
        Ok(PostbackAccepted::Recorded { click_id, kind, payout }) => {
            json(StatusCode::OK, &Accepted { status: "success", message: recorded_message(kind, payout), click_id })
        }
        Ok(PostbackAccepted::Duplicate { click_id }) => json(
            StatusCode::OK,
            &Accepted { status: "duplicate", message: "event already recorded; nothing changed", click_id },
        ),
        Ok(PostbackAccepted::Held { click_id }) => json(
            StatusCode::ACCEPTED,
            &Accepted { status: "pending", message: "click not stored yet; held until it is", click_id },
        ),
        Err(refused) => refusal(refused),
    }
}

/// A secret longer than any offer's is malformed, not merely wrong: refused whichever of the two
/// would be used.
fn secrets_bounded(raw: RawPostback, header_secret: Option<&str>) -> Result<RawPostback, ApiError> {
    let (_, max) = SECRET_BYTES;
    for (name, secret) in [("X-Postback-Secret", header_secret), ("secret", raw.secret.as_deref())] {
        if secret.is_some_and(|secret| secret.chars().count() > max) {
            return Err(ApiError::bad_request(format!("{name} must be at most {max} characters")));
        }
    }
    Ok(raw)
}

/// The answer to a postback that was not applied.
fn refusal(refused: PostbackRefused) -> HttpResponse {
    match refused {
        PostbackRefused::Refused { outcome, reason } => {
            let status = match outcome {
                PostbackOutcome::Forbidden => StatusCode::FORBIDDEN,
                PostbackOutcome::UnknownClick => StatusCode::NOT_FOUND,
                PostbackOutcome::NoFtd => StatusCode::CONFLICT,
                PostbackOutcome::Invalid
                | PostbackOutcome::Accepted
                | PostbackOutcome::Duplicate
                | PostbackOutcome::Pending
                | PostbackOutcome::Expired => StatusCode::BAD_REQUEST,
            };
            error(status, &reason)
        }
        PostbackRefused::Busy(reason) => error(StatusCode::SERVICE_UNAVAILABLE, &reason),
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
        "application/json" => RawPostback::from_json(&body).map_err(ApiError::bad_request),
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
    fn query_fields_are_read_and_unknown_ones_kept_by_name() {
        let raw =
            RawPostback::from_pairs("click_id=abc&event=ftd&payout=10.5&secret=s%20x&foo=bar&foo=baz&sub1=").unwrap();
        assert_eq!(raw.click_id.as_deref(), Some("abc"));
        assert_eq!(raw.payout, Some(PayoutValue::Text("10.5".into())));
        assert_eq!(raw.secret.as_deref(), Some("s x"));
        assert_eq!(raw.ignored, ["foo"]);
        assert!(RawPostback::from_pairs("click_id=%zz").is_err());
    }

    #[test]
    fn json_payout_may_be_a_number_or_a_string() {
        let raw = RawPostback::from_json(br#"{"click_id":"a","event":"ftd","payout":100.5,"tid":null}"#).unwrap();
        assert_eq!(raw.payout, Some(PayoutValue::Number(100.5)));
        assert_eq!(raw.tid, None);
        let raw = RawPostback::from_json(br#"{"payout":"7"}"#).unwrap();
        assert_eq!(raw.payout, Some(PayoutValue::Text("7".into())));
        assert_eq!(RawPostback::from_json(br#"{"payout":[1]}"#).unwrap_err(), "payout must be a number or a string");
        assert_eq!(RawPostback::from_json(br#"{"tid":5}"#).unwrap_err(), "tid must be a string");
        assert_eq!(RawPostback::from_json(b"[]").unwrap_err(), "a JSON postback must be an object");
    }

    #[test]
    fn unknown_json_fields_are_refused_by_name() {
        let error = RawPostback::from_json(br#"{"click_id":"a","event":"ftd","amount":150}"#).unwrap_err();
        assert!(
            error.starts_with(r#"unknown field "amount": a JSON postback takes click_id, event, payout"#),
            "{error}"
        );
    }

    mod properties {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            /// Any query string or form body, any JSON body: fields or a 400's reason, never a panic.
            #[test]
            fn any_postback_body_parses_or_fails_cleanly(text in any::<String>(), bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
                let _ = RawPostback::from_pairs(&text);
                let _ = RawPostback::from_json(&bytes);
            }

            /// serde quotes a wrongly typed value in its message; the reason given to the client
            /// must not, or a numeric secret would be echoed.
            #[test]
            fn json_errors_do_not_echo_the_secret(secret in 1_000_000u64..) {
                let error = RawPostback::from_json(format!("{{\"secret\": {secret}}}").as_bytes()).unwrap_err();
                prop_assert!(!error.contains(&secret.to_string()), "{}", error);
                let error = RawPostback::from_json(format!("{{\"secret\": \"{secret}").as_bytes()).unwrap_err();
                prop_assert!(!error.contains(&secret.to_string()), "{}", error);
            }
        }
    }
}

//! Postbacks: conversions reported by casino platforms, server to server.
//!
//! The steps, whatever form the postback arrived in: validate the fields, find the click (asking the
//! writer to flush if it may still be queued), check the offer's secret in constant time, map the
//! event word through the offer's aliases, apply. Every postback, accepted or not, is written to the
//! postback log, and success is returned only once the event is committed.
//!
//! A postback for a recent click that no instance has stored yet (behind a load balancer, the click
//! may wait in another instance's writer) is **held** if its secret is an offer's: stored as pending
//! and answered 202, then applied by whichever instance finds its click stored
//! ([`App::apply_held_postbacks`], every second), through the same rules as any postback, or given
//! up after `POSTBACK_HOLD_SECONDS` ([`App::expire_held_postbacks`]).
//!
//! Invariant: the secret is never logged, stored, or echoed in an error.

use std::net::IpAddr;
use std::time::Duration;

use time::OffsetDateTime;
use uuid::Uuid;

use super::App;
use crate::conversion::{EventKind, parse_payout_text, validate_payout};
use crate::secret::secrets_match;
use crate::store::{
    ClaimedPostback, ClickOwner, Conversion, ConversionOutcome, HeldPostback, HoldOutcome, PostbackLogEntry,
    PostbackOutcome, StoreError,
};

/// How long a postback for a click not yet in the database waits for the writer to flush.
const FLUSH_WAIT: Duration = Duration::from_secs(3);
/// A click id younger than this may still wait in this instance's writer; older unknown ids are
/// not worth a flush (which would let anyone break the writer's batching with random ids).
const RECENT_CLICK: Duration = Duration::from_secs(600);
/// How long an instance may take to apply the held postbacks it claimed before another may.
const HOLD_LEASE: Duration = Duration::from_secs(60);
/// Most held postbacks one pass applies.
const HELD_BATCH: usize = 256;
/// A click id as the router hands it out: a hyphenated UUID (other spellings are not ours).
pub const CLICK_ID_CHARS: usize = 36;
/// Longest accepted `tid` or `external_player_id`.
pub const MAX_ID_CHARS: usize = 128;
/// Longest click id or event word kept in the postback log.
const MAX_LOGGED_CHARS: usize = 128;
/// Longest list of ignored parameter names kept in the postback log.
const MAX_LOGGED_IGNORED_CHARS: usize = 512;

/// A postback's fields as they arrived, before any validation (absent or empty fields are `None`,
/// whatever form the postback came in).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PostbackInput {
    /// The click the event concerns.
    pub click_id: Option<String>,
    /// The event word (ours, or one of the offer's aliases).
    pub event: Option<String>,
    /// The amount.
    pub payout: Option<PayoutValue>,
    /// The offer's postback secret.
    pub secret: Option<String>,
    /// The platform's player id.
    pub external_player_id: Option<String>,
    /// The platform's transaction id.
    pub tid: Option<String>,
    /// ISO 4217 currency code.
    pub currency: Option<String>,
    /// Who sent it.
    pub source_ip: Option<IpAddr>,
    /// Query or form parameters that are not postback fields, by name (kept in the postback log).
    pub ignored_fields: Vec<String>,
}

/// A payout as it arrived: a JSON number, or text (a query or form field, a JSON string), which
/// must be a plain decimal ([`crate::conversion::payout_text_pattern`]).
#[derive(Debug, Clone, PartialEq)]
pub enum PayoutValue {
    /// A JSON number.
    Number(f64),
    /// Text.
    Text(String),
}

impl PayoutValue {
    /// The amount, if it is one: what the postback log records.
    fn amount(&self) -> Option<f64> {
        match self {
            PayoutValue::Number(value) => Some(*value),
            PayoutValue::Text(text) => text.trim().parse().ok(),
        }
    }
}

/// A postback applied, or recognised as one applied before.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PostbackAccepted {
    /// The event was written.
    Recorded {
        /// The click.
        click_id: Uuid,
        /// The event, after alias mapping.
        kind: EventKind,
        /// Its amount, when it carried one.
        payout: Option<f64>,
    },
    /// The same event was recorded before: nothing changed.
    Duplicate {
        /// The click.
        click_id: Uuid,
    },
    /// The click is not stored yet: the postback is held until it is.
    Held {
        /// The click.
        click_id: Uuid,
    },
}

/// A postback not applied: refused (and logged as such), or the store failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PostbackRefused {
    /// Refused for `reason`; `outcome` says which way (invalid, forbidden, unknown click, no FTD).
    #[error("{reason}")]
    Refused {
        /// How the postback log records it.
        outcome: PostbackOutcome,
        /// Why, naming the field where one is at fault.
        reason: String,
    },
    /// Too many postbacks are held already: the platform should retry later.
    #[error("{0}")]
    Busy(String),
    /// The store failed: the platform should retry.
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn refuse(outcome: PostbackOutcome, reason: impl Into<String>) -> PostbackRefused {
    PostbackRefused::Refused { outcome, reason: reason.into() }
}

fn invalid(reason: impl Into<String>) -> PostbackRefused {
    refuse(PostbackOutcome::Invalid, reason)
}

fn unknown_click() -> PostbackRefused {
    refuse(PostbackOutcome::UnknownClick, "unknown click_id")
}

impl App {
    /// Validates, authenticates and applies one postback; logs it whatever happens.
    pub async fn record_postback(&self, input: PostbackInput) -> Result<PostbackAccepted, PostbackRefused> {
        let mut log = PostbackLogEntry {
            received_at: OffsetDateTime::now_utc(),
            offer_id: None,
            click_id: input.click_id.as_deref().map(|id| truncated(id, MAX_LOGGED_CHARS)),
            event: input.event.as_deref().map(|event| truncated(event, MAX_LOGGED_CHARS)),
            payout: input.payout.as_ref().and_then(PayoutValue::amount),
            currency: input.currency.as_deref().map(|c| truncated(c, 8)),
            tid: input.tid.as_deref().map(|tid| truncated(tid, MAX_LOGGED_CHARS)),
            outcome: PostbackOutcome::Invalid,
            reason: None,
            source_ip: input.source_ip,
            ignored_fields: (!input.ignored_fields.is_empty())
                .then(|| truncated(&input.ignored_fields.join(", "), MAX_LOGGED_IGNORED_CHARS)),
        };
        let result = self.apply_postback(&input, &mut log).await;
        match &result {
            Ok(accepted) => self.metrics.postback(match accepted {
                PostbackAccepted::Recorded { .. } => PostbackOutcome::Accepted,
                PostbackAccepted::Duplicate { .. } => PostbackOutcome::Duplicate,
                PostbackAccepted::Held { .. } => PostbackOutcome::Pending,
            }),
            // Applying logged it already, with the outcome.
            Err(PostbackRefused::Refused { outcome: PostbackOutcome::NoFtd, .. }) => {
                self.metrics.postback(PostbackOutcome::NoFtd);
                tracing::info!(
                    outcome = "no_ftd",
                    offer_id = log.offer_id,
                    click_id = log.click_id.as_deref(),
                    "postback refused"
                );
            }
            Err(PostbackRefused::Refused { outcome, reason }) => {
                log.outcome = *outcome;
                log.reason = Some(reason.clone());
                return self.log_refusal(&log).await.and(result);
            }
            Err(PostbackRefused::Busy(reason)) => {
                log.outcome = PostbackOutcome::UnknownClick;
                log.reason = Some(reason.clone());
                return self.log_refusal(&log).await.and(result);
            }
            Err(PostbackRefused::Store(error)) => self.count_store_failure(error),
        }
        result
    }

    /// Logs (and counts) a postback whose request could not even be read ("the casino says it sent
    /// it" starts in the postback log, so unreadable postbacks are there too).
    pub async fn log_unreadable_postback(
        &self,
        reason: &str,
        source_ip: Option<IpAddr>,
    ) -> Result<(), PostbackRefused> {
        let log = PostbackLogEntry {
            received_at: OffsetDateTime::now_utc(),
            offer_id: None,
            click_id: None,
            event: None,
            payout: None,
            currency: None,
            tid: None,
            outcome: PostbackOutcome::Invalid,
            reason: Some(reason.to_owned()),
            source_ip,
            ignored_fields: None,
        };
        self.log_refusal(&log).await
    }

    /// Writes a refused postback's log line, counts it and logs it (without the secret).
    async fn log_refusal(&self, log: &PostbackLogEntry) -> Result<(), PostbackRefused> {
        if let Err(error) = self.store.log_postback(log).await {
            self.count_store_failure(&error);
            return Err(error.into());
        }
        self.metrics.postback(log.outcome);
        tracing::info!(
            outcome = log.outcome.as_str(),
            reason = log.reason.as_deref(),
            offer_id = log.offer_id,
            click_id = log.click_id.as_deref(),
            "postback refused"
        );
        Ok(())
    }

    fn count_store_failure(&self, error: &StoreError) {
        if matches!(error, StoreError::Unavailable(_)) {
            self.metrics.postback_unavailable();
        }
    }

    async fn apply_postback(
        &self,
        input: &PostbackInput,
        log: &mut PostbackLogEntry,
    ) -> Result<PostbackAccepted, PostbackRefused> {
        let click_text = input.click_id.as_deref().ok_or_else(|| invalid("click_id is required"))?;
        let click_id = Some(click_text.trim())
            .filter(|text| text.len() == CLICK_ID_CHARS)
            .and_then(|text| Uuid::try_parse(text).ok())
            .ok_or_else(|| invalid("click_id is not a valid click id"))?;
        let event_word = input.event.as_deref().ok_or_else(|| invalid("event is required"))?;
        let max = self.config.max_payout;
        let payout = match &input.payout {
            None => None,
            Some(PayoutValue::Number(value)) => Some(validate_payout(*value, max)),
            Some(PayoutValue::Text(text)) => Some(parse_payout_text(text, max)),
        }
        .transpose()
        .map_err(|e| invalid(e.to_string()))?;
        let currency = match input.currency.as_deref() {
            None => "USD".to_owned(),
            Some(code) if code.len() == 3 && code.bytes().all(|b| b.is_ascii_alphabetic()) => code.to_ascii_uppercase(),
            Some(_) => return Err(invalid("currency must be a three-letter ISO 4217 code")),
        };
        for (name, value) in [("tid", &input.tid), ("external_player_id", &input.external_player_id)] {
            if value.as_deref().is_some_and(|v| v.chars().count() > MAX_ID_CHARS || v.chars().any(char::is_control)) {
                return Err(invalid(format!("{name} must be at most {MAX_ID_CHARS} printable characters")));
            }
        }

        let owner = match self.click_owner(click_id).await? {
            Some(owner) => owner,
            None => match self.hold(click_id, event_word, payout, &currency, input, log).await? {
                Held::Answered(accepted) => return Ok(accepted),
                Held::ClickStored => self.click_owner(click_id).await?.ok_or_else(unknown_click)?,
            },
        };
        log.offer_id = Some(owner.offer_id);
        let secret = input.secret.as_deref().unwrap_or("");
        if !secrets_match(owner.postback_secret.as_bytes(), secret.as_bytes()) {
            return Err(refuse(PostbackOutcome::Forbidden, "invalid postback secret"));
        }
        let kind = event_kind(event_word, &owner.event_aliases, payout, input)?;
        let conversion = Conversion {
            click_id,
            offer_id: owner.offer_id,
            clicked_at: owner.clicked_at,
            kind,
            payout,
            currency,
            tid: input.tid.clone(),
            external_player_id: input.external_player_id.clone(),
        };
        match self.store.apply_conversion(&conversion, log).await? {
            ConversionOutcome::Recorded => {
                if kind == EventKind::Ftd {
                    // Recorded whatever the offer's FTD cap: the money is real. The cap only stops
                    // further traffic, from the next click on.
                    self.count_ftd_today(owner.offer_id);
                }
                Ok(PostbackAccepted::Recorded { click_id, kind, payout })
            }
            ConversionOutcome::Duplicate => Ok(PostbackAccepted::Duplicate { click_id }),
            ConversionOutcome::NoFtd => Err(refuse(PostbackOutcome::NoFtd, "click has no FTD")),
        }
    }

    /// Holds a postback for a click not stored yet, if its secret is an offer's (the click's offer
    /// is checked when the click comes).
    async fn hold(
        &self,
        click_id: Uuid,
        event_word: &str,
        payout: Option<f64>,
        currency: &str,
        input: &PostbackInput,
        log: &mut PostbackLogEntry,
    ) -> Result<Held, PostbackRefused> {
        let secret = input.secret.as_deref().unwrap_or("").as_bytes();
        // Every offer's secret is compared (in constant time), whichever matches.
        let offers = self.store.list_offers(false).await?;
        let mut matched = None;
        for offer in &offers {
            if secrets_match(offer.postback_secret.as_bytes(), secret) {
                matched = Some(offer);
            }
        }
        let offer = matched.ok_or_else(|| refuse(PostbackOutcome::Forbidden, "invalid postback secret"))?;
        log.offer_id = Some(offer.id);
        let kind = event_kind(event_word, &offer.event_aliases, payout, input)?;
        let held = HeldPostback {
            click_id,
            offer_id: offer.id,
            kind,
            payout,
            currency: currency.to_owned(),
            tid: input.tid.clone(),
            external_player_id: input.external_player_id.clone(),
            expires_at: log.received_at + self.config.postback_hold,
        };
        match self.store.hold_postback(&held, log, self.config.postback_hold_limits).await? {
            HoldOutcome::Held => Ok(Held::Answered(PostbackAccepted::Held { click_id })),
            HoldOutcome::Duplicate => Ok(Held::Answered(PostbackAccepted::Duplicate { click_id })),
            HoldOutcome::ClickStored => Ok(Held::ClickStored),
            HoldOutcome::Full => Err(PostbackRefused::Busy(
                "unknown click_id, and too many postbacks are held for clicks not stored yet".to_owned(),
            )),
        }
    }

    /// Applies the held postbacks whose clicks are stored now (by any instance); returns how many.
    pub async fn apply_held_postbacks(&self) -> Result<usize, StoreError> {
        let now = OffsetDateTime::now_utc();
        let claimed = self.store.claim_held_postbacks(now, HOLD_LEASE, HELD_BATCH).await?;
        for postback in &claimed {
            self.apply_held(postback, now).await?;
            self.store.release_held_postback(postback).await?;
        }
        Ok(claimed.len())
    }

    /// Applies one claimed postback: its outcome on a log line of its own. A crash before the
    /// release leaves it to be applied again, which the rules make a duplicate.
    async fn apply_held(&self, postback: &ClaimedPostback, now: OffsetDateTime) -> Result<(), StoreError> {
        let held = &postback.held;
        let waited = (now - postback.log.received_at).as_seconds_f64().max(0.0);
        let log = PostbackLogEntry {
            offer_id: Some(postback.click_offer_id),
            reason: Some(format!("held {waited:.1} s until its click was stored")),
            ..postback.log.clone()
        };
        if postback.click_offer_id != held.offer_id {
            let log = PostbackLogEntry {
                outcome: PostbackOutcome::Forbidden,
                reason: Some("invalid postback secret (held, and its click is another offer's)".to_owned()),
                ..log
            };
            self.store.log_postback(&log).await?;
            self.metrics.postback(PostbackOutcome::Forbidden);
            return Ok(());
        }
        let outcome = self.store.apply_conversion(&postback.conversion(), &log).await?;
        if outcome == ConversionOutcome::Recorded && held.kind == EventKind::Ftd {
            self.count_ftd_today(held.offer_id);
        }
        self.metrics.postback(outcome.into());
        Ok(())
    }

    /// Gives up the held postbacks whose time ran out; returns how many.
    pub async fn expire_held_postbacks(&self) -> Result<u64, StoreError> {
        let expired = self.store.expire_held_postbacks(OffsetDateTime::now_utc()).await?;
        for _ in 0..expired {
            self.metrics.postback(PostbackOutcome::Expired);
        }
        if expired > 0 {
            tracing::warn!(expired, "held postbacks expired: their clicks were never stored");
        }
        Ok(expired)
    }

    /// The click's offer. A click minted moments ago may still wait in the writer's queue: for a
    /// recent id the writer is flushed and the lookup repeated. A flush that fails leaves the click
    /// possibly in memory or in the journal (an outage): the platform is told to retry. `None`: a
    /// click recent enough to hold a postback for (`POSTBACK_HOLD_SECONDS`) that is not stored: it
    /// may wait in another instance's writer.
    async fn click_owner(&self, click_id: Uuid) -> Result<Option<ClickOwner>, PostbackRefused> {
        if click_id.get_version_num() != 7 {
            return Err(unknown_click()); // the router only hands out UUID v7 ids
        }
        if let Some(owner) = self.store.click_owner(click_id).await? {
            return Ok(Some(owner));
        }
        if let Some(retention) = self.config.click_retention.filter(|&retention| !is_recent(click_id, retention)) {
            let days = retention.as_secs() / (24 * 3600);
            return Err(refuse(
                PostbackOutcome::UnknownClick,
                format!("unknown click_id: clicks older than CLICK_RETENTION_DAYS ({days}) are no longer stored"),
            ));
        }
        let holdable = !self.config.postback_hold.is_zero() && is_recent(click_id, self.config.postback_hold);
        if !holdable && !is_recent(click_id, RECENT_CLICK) {
            return Err(unknown_click());
        }
        if self.queue.flush(FLUSH_WAIT).await.is_err() {
            return Err(StoreError::Unavailable("pending clicks not written yet".into()).into());
        }
        match self.store.click_owner(click_id).await? {
            Some(owner) => Ok(Some(owner)),
            None if holdable => Ok(None),
            None => Err(unknown_click()),
        }
    }
}

/// What holding a postback came to.
enum Held {
    /// Held, or a duplicate of one held: the answer.
    Answered(PostbackAccepted),
    /// The click was stored meanwhile: apply it as any other.
    ClickStored,
}

/// The event a postback reports, through the offer's aliases, with the fields it needs.
fn event_kind(
    event_word: &str,
    aliases: &std::collections::BTreeMap<String, EventKind>,
    payout: Option<f64>,
    input: &PostbackInput,
) -> Result<EventKind, PostbackRefused> {
    let kind = EventKind::resolve(event_word, aliases)
        .ok_or_else(|| invalid(format!("unknown event {:?}", truncated(event_word, MAX_LOGGED_CHARS))))?;
    let present = |field: &&str| match *field {
        "payout" => payout.is_some(),
        "tid" => input.tid.is_some(),
        _ => true,
    };
    if !kind.required_fields().iter().all(present) {
        return Err(invalid(format!("a {} event needs {}", kind.as_str(), kind.required_fields().join(" and "))));
    }
    Ok(kind)
}

/// Whether a v7 click id was minted within `window` (or claims to be from the future).
fn is_recent(click_id: Uuid, window: Duration) -> bool {
    let Some(timestamp) = click_id.get_timestamp() else { return false };
    let (seconds, nanos) = timestamp.to_unix();
    let minted = std::time::UNIX_EPOCH + Duration::new(seconds, nanos);
    std::time::SystemTime::now().duration_since(minted).map_or(true, |age| age < window)
}

/// `text` as the postback log keeps it: its first `max_chars` characters, control characters
/// (which PostgreSQL's text cannot always hold: NUL) replaced by U+FFFD.
fn truncated(text: &str, max_chars: usize) -> String {
    text.chars().take(max_chars).map(|c| if c.is_control() { char::REPLACEMENT_CHARACTER } else { c }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logged_values_are_cut_and_hold_no_control_characters() {
        assert_eq!(truncated("a\0b\u{7}c", 10), "a\u{FFFD}b\u{FFFD}c");
        assert_eq!(truncated("abcdef", 3), "abc");
    }

    #[test]
    fn only_recent_v7_ids_count_as_recent() {
        let window = Duration::from_secs(600);
        assert!(is_recent(Uuid::now_v7(), window));
        let old = uuid::Builder::from_unix_timestamp_millis(1_600_000_000_000, &[7; 10]).into_uuid();
        assert!(!is_recent(old, window));
        let v4 = Uuid::from_u128(0x1234_5678_1234_4234_8234_1234_5678_9abc);
        assert!(!is_recent(v4, window), "v4 has no timestamp");
    }
}

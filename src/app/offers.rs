//! Offers: validated changes, each followed by a rebuild of the routing table.
//!
//! The rules: every value is validated before the store sees it (errors name the field); a change
//! commits, then the table is rebuilt before the operation returns, so it applies to the next click
//! (if the rebuild fails, the change is committed and the periodic refresh picks it up); an active
//! offer cannot be deleted, nor one with clicks (queued clicks included).

use std::collections::BTreeMap;
use std::time::Duration;

use super::{App, AppError};
use crate::conversion::EventKind;
use crate::routing::RedirectTemplate;
use crate::secret::generate_secret;
use crate::store::{DeleteOutcome, NewOffer, Offer, OfferPatch};

/// Longest offer name, in characters.
pub const MAX_NAME_CHARS: usize = 200;
/// Largest weight an admin may give.
pub const MAX_WEIGHT: f64 = 1e9;
/// Shortest and longest postback secret, in bytes.
pub const SECRET_BYTES: (usize, usize) = (8, 256);
/// Most entries of an offer's alias map.
pub const MAX_ALIASES: usize = 100;
/// Longest alias word, in characters.
pub const MAX_ALIAS_CHARS: usize = 64;
/// How long a delete waits for queued clicks to be written before it decides.
const DELETE_FLUSH_WAIT: Duration = Duration::from_secs(5);

/// A new offer as requested, before validation.
#[derive(Debug, Clone, PartialEq)]
pub struct OfferDraft {
    /// Display name.
    pub name: String,
    /// Where its clicks go (macros allowed).
    pub casino_url: String,
    /// Routing weight under `ev`.
    pub weight: f64,
    /// Postback secret; generated when absent.
    pub postback_secret: Option<String>,
    /// Whether it gets traffic.
    pub active: bool,
    /// The platform's status words mapped to event names.
    pub event_aliases: BTreeMap<String, String>,
}

/// A change to an offer as requested, before validation: `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OfferChanges {
    /// New name.
    pub name: Option<String>,
    /// New offer URL.
    pub casino_url: Option<String>,
    /// New weight.
    pub weight: Option<f64>,
    /// New postback secret.
    pub postback_secret: Option<String>,
    /// Activate or deactivate.
    pub active: Option<bool>,
    /// Replaces the alias map.
    pub event_aliases: Option<BTreeMap<String, String>>,
}

impl App {
    /// Every offer by id, or only the active ones.
    pub async fn list_offers(&self, active_only: bool) -> Result<Vec<Offer>, AppError> {
        Ok(self.store.list_offers(active_only).await?)
    }

    /// One offer.
    pub async fn offer(&self, id: i64) -> Result<Offer, AppError> {
        self.store.get_offer(id).await?.ok_or(AppError::NoSuchOffer)
    }

    /// Creates an offer and rebuilds the routing table.
    pub async fn create_offer(&self, draft: OfferDraft) -> Result<Offer, AppError> {
        let new_offer = NewOffer {
            name: validate_name(&draft.name)?,
            casino_url: validate_url(&draft.casino_url)?,
            weight: validate_weight(draft.weight)?,
            postback_secret: match draft.postback_secret.as_deref() {
                Some(secret) => validate_secret(secret)?,
                None => generate_secret(),
            },
            active: draft.active,
            event_aliases: validate_aliases(draft.event_aliases)?,
        };
        let offer = self.store.create_offer(&new_offer).await?;
        self.reload_after_change().await;
        Ok(offer)
    }

    /// Changes an offer and rebuilds the routing table.
    pub async fn update_offer(&self, id: i64, changes: OfferChanges) -> Result<Offer, AppError> {
        let patch = OfferPatch {
            name: changes.name.as_deref().map(validate_name).transpose()?,
            casino_url: changes.casino_url.as_deref().map(validate_url).transpose()?,
            weight: changes.weight.map(validate_weight).transpose()?,
            postback_secret: changes.postback_secret.as_deref().map(validate_secret).transpose()?,
            active: changes.active,
            event_aliases: changes.event_aliases.map(validate_aliases).transpose()?,
        };
        let offer = self.store.update_offer(id, &patch).await?.ok_or(AppError::NoSuchOffer)?;
        self.reload_after_change().await;
        Ok(offer)
    }

    /// Deletes an inactive offer that has no clicks, and rebuilds the routing table.
    pub async fn delete_offer(&self, id: i64) -> Result<(), AppError> {
        // An active offer may be picked by a click (here or on another instance) at any moment; its
        // clicks would then outlive it. Deactivation first makes deletion safe.
        if self.offer(id).await?.active {
            return Err(AppError::Conflict("offer is active: set active=false first (and keep it if it has clicks)"));
        }
        // Clicks still queued count as history too: write them before deciding.
        if self.queue.flush(DELETE_FLUSH_WAIT).await.is_err() {
            return Err(AppError::PendingClicks);
        }
        match self.store.delete_offer(id).await? {
            DeleteOutcome::Deleted => {
                self.reload_after_change().await;
                Ok(())
            }
            DeleteOutcome::NotFound => Err(AppError::NoSuchOffer),
            DeleteOutcome::HasClicks => Err(AppError::Conflict(
                "offer has recorded clicks and deleting it would lose history; set active=false instead",
            )),
        }
    }

    async fn reload_after_change(&self) {
        if let Err(error) = self.reload_routing().await {
            // The change is committed; the periodic refresh will pick it up.
            tracing::warn!(%error, "routing table not rebuilt after an offer change");
        }
    }
}

/// A name of 1 to [`MAX_NAME_CHARS`] characters as sent, not all blank, without control
/// characters; stored trimmed.
fn validate_name(name: &str) -> Result<String, AppError> {
    if name.trim().is_empty() || name.chars().count() > MAX_NAME_CHARS || name.chars().any(char::is_control) {
        return Err(AppError::invalid(format!(
            "name must be 1 to {MAX_NAME_CHARS} characters, not all blank, without control characters"
        )));
    }
    Ok(name.trim().to_owned())
}

/// An offer URL as [`RedirectTemplate`] accepts it, exactly as sent (no trimming: the API
/// description's pattern allows no spaces).
fn validate_url(url: &str) -> Result<String, AppError> {
    RedirectTemplate::parse(url).map(|_| url.to_owned()).map_err(|e| AppError::invalid(e.to_string()))
}

fn validate_weight(weight: f64) -> Result<f64, AppError> {
    if weight.is_finite() && (0.0..=MAX_WEIGHT).contains(&weight) {
        Ok(weight)
    } else {
        Err(AppError::invalid("weight must be a finite number from 0 to 1e9"))
    }
}

fn validate_secret(secret: &str) -> Result<String, AppError> {
    let (min, max) = SECRET_BYTES;
    if (min..=max).contains(&secret.len()) && secret.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(secret.to_owned())
    } else {
        Err(AppError::invalid(format!("postback_secret must be {min} to {max} visible ASCII characters")))
    }
}

fn validate_aliases(raw: BTreeMap<String, String>) -> Result<BTreeMap<String, EventKind>, AppError> {
    if raw.len() > MAX_ALIASES {
        return Err(AppError::invalid(format!("event_aliases may hold at most {MAX_ALIASES} entries")));
    }
    raw.into_iter()
        .map(|(word, event)| {
            let word = word.trim().to_owned();
            if word.is_empty() || word.chars().count() > MAX_ALIAS_CHARS || word.chars().any(char::is_control) {
                return Err(AppError::invalid(format!(
                    "event_aliases keys must be 1 to {MAX_ALIAS_CHARS} printable characters"
                )));
            }
            let kind = EventKind::parse(&event).ok_or_else(|| {
                AppError::invalid(format!(
                    "event_aliases[{word:?}]: {event:?} is not one of ftd, payout, reg, deposit, rejected"
                ))
            })?;
            Ok((word, kind))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(validate_name("  Alpha ").unwrap(), "Alpha");
        assert!(validate_name(&format!(" {}", "x".repeat(MAX_NAME_CHARS))).is_err(), "the length counts as sent");
        assert!(validate_name("   ").is_err());
        assert!(validate_name(&"x".repeat(MAX_NAME_CHARS + 1)).is_err());
        assert!(validate_name("a\u{7}b").is_err());
    }

    #[test]
    fn weights_secrets_and_aliases_are_bounded() {
        assert!(validate_weight(MAX_WEIGHT).is_ok() && validate_weight(-0.1).is_err());
        assert!(validate_weight(f64::NAN).is_err());
        assert!(validate_secret("short").is_err() && validate_secret("long-enough").is_ok());
        let too_many: BTreeMap<String, String> = (0..=MAX_ALIASES).map(|i| (format!("w{i}"), "ftd".into())).collect();
        assert!(validate_aliases(too_many).is_err());
        let unknown = BTreeMap::from([("first_dep".to_owned(), "bonus".to_owned())]);
        let error = validate_aliases(unknown).unwrap_err().to_string();
        assert!(error.contains("event_aliases[\"first_dep\"]"), "{error}");
    }

    #[test]
    fn url_errors_name_the_field() {
        assert!(validate_url("javascript:alert(1)").unwrap_err().to_string().contains("casino_url"));
    }
}

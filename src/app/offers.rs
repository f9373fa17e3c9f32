//! Offers: validated changes, each followed by a rebuild of the routing table.
//!
//! The rules: every value is validated before the store sees it (errors name the field); a change
//! commits, then the table is rebuilt before the operation returns, so it applies to the next click
//! (if the rebuild fails, the change is committed and the periodic refresh picks it up); an active
//! offer cannot be deleted, nor one with clicks (queued clicks included); at most
//! [`MAX_ROUTED_OFFERS`] offers are active at once (what a routing table routes).
//!
//! Targeting rules are validated here (known country codes and device classes, entries without
//! control characters, no list that could match no visitor) and stored in canonical form (upper-case
//! codes, duplicates dropped), so the routing table compiles them without a second check.

use std::collections::BTreeMap;
use std::time::Duration;

use super::{App, AppError};
use crate::conversion::EventKind;
use crate::routing::rules::ValuePattern;
use crate::routing::table::MAX_ROUTED_OFFERS;
use crate::routing::{DailyCaps, RedirectTemplate, Targeting};
use crate::secret::generate_secret;
use crate::store::{DeleteOutcome, NewOffer, Offer, OfferPatch};
use crate::visitor::{Country, DeviceClass};

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
/// Most entries of one targeting list.
pub const MAX_RULE_ENTRIES: usize = 300;
pub use crate::routing::rules::MAX_RULE_ENTRY_CHARS;
/// Largest daily cap.
pub const MAX_DAILY_CAP: u64 = 1_000_000_000;
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
    /// Who it accepts (absent rules: anyone).
    pub targeting: Targeting,
    /// Most clicks a UTC day.
    pub daily_click_cap: Option<u64>,
    /// Most FTDs a UTC day.
    pub daily_ftd_cap: Option<u64>,
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
    /// Per targeting rule: `Some(Some(list))` replaces it, `Some(None)` removes it (anyone).
    pub targeting: RuleChanges,
    /// `Some(Some(cap))` sets the daily click cap, `Some(None)` removes it.
    pub daily_click_cap: Option<Option<u64>>,
    /// `Some(Some(cap))` sets the daily FTD cap, `Some(None)` removes it.
    pub daily_ftd_cap: Option<Option<u64>>,
}

/// Changes to an offer's targeting rules, one per rule: `None` leaves it as it is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RuleChanges {
    /// `countries`.
    pub countries: Option<Option<Vec<String>>>,
    /// `blocked_countries`.
    pub blocked_countries: Option<Option<Vec<String>>>,
    /// `devices`.
    pub devices: Option<Option<Vec<String>>>,
    /// `sources`.
    pub sources: Option<Option<Vec<String>>>,
    /// `campaigns`.
    pub campaigns: Option<Option<Vec<String>>>,
}

impl RuleChanges {
    /// Whether any rule changes.
    fn is_empty(&self) -> bool {
        self == &RuleChanges::default()
    }

    /// `current` with these changes.
    fn applied_to(self, current: &Targeting) -> Targeting {
        let pick = |change: Option<Option<Vec<String>>>, current: &Option<Vec<String>>| {
            change.unwrap_or_else(|| current.clone())
        };
        Targeting {
            countries: pick(self.countries, &current.countries),
            blocked_countries: pick(self.blocked_countries, &current.blocked_countries),
            devices: pick(self.devices, &current.devices),
            sources: pick(self.sources, &current.sources),
            campaigns: pick(self.campaigns, &current.campaigns),
        }
    }
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
        if draft.active {
            self.check_room_for_an_active_offer(None).await?;
        }
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
            targeting: validate_targeting(draft.targeting)?,
            daily_caps: DailyCaps {
                clicks: draft.daily_click_cap.map(|cap| validate_cap("daily_click_cap", cap)).transpose()?,
                ftds: draft.daily_ftd_cap.map(|cap| validate_cap("daily_ftd_cap", cap)).transpose()?,
            },
        };
        let offer = self.store.create_offer(&new_offer).await?;
        self.reload_after_change().await;
        Ok(offer)
    }

    /// Changes an offer and rebuilds the routing table.
    pub async fn update_offer(&self, id: i64, changes: OfferChanges) -> Result<Offer, AppError> {
        if changes.active == Some(true) {
            self.check_room_for_an_active_offer(Some(id)).await?;
        }
        // Rules change one by one: the others are read from the offer as it is.
        let targeting = if changes.targeting.is_empty() {
            None
        } else {
            Some(validate_targeting(changes.targeting.applied_to(&self.offer(id).await?.targeting))?)
        };
        let cap = |name, change: Option<Option<u64>>| {
            change.map(|cap| cap.map(|cap| validate_cap(name, cap)).transpose()).transpose()
        };
        let patch = OfferPatch {
            name: changes.name.as_deref().map(validate_name).transpose()?,
            casino_url: changes.casino_url.as_deref().map(validate_url).transpose()?,
            weight: changes.weight.map(validate_weight).transpose()?,
            postback_secret: changes.postback_secret.as_deref().map(validate_secret).transpose()?,
            active: changes.active,
            event_aliases: changes.event_aliases.map(validate_aliases).transpose()?,
            targeting,
            daily_click_cap: cap("daily_click_cap", changes.daily_click_cap)?,
            daily_ftd_cap: cap("daily_ftd_cap", changes.daily_ftd_cap)?,
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

    /// Refuses to activate one more offer than a routing table routes. (`offer_id`: the offer being
    /// activated, which does not count if it is active already.)
    async fn check_room_for_an_active_offer(&self, offer_id: Option<i64>) -> Result<(), AppError> {
        let active = self.store.list_offers(true).await?;
        if active.len() >= MAX_ROUTED_OFFERS && !active.iter().any(|offer| Some(offer.id) == offer_id) {
            return Err(AppError::Conflict("at most 256 offers can be active at once: deactivate one first"));
        }
        Ok(())
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

/// Rules in canonical form, or a 400 naming the field: countries known (in capitals), devices known,
/// entries printable with at most a trailing `*`; no list that no visitor could match.
fn validate_targeting(raw: Targeting) -> Result<Targeting, AppError> {
    let countries = raw.countries.map(|list| country_codes("countries", list)).transpose()?;
    // An empty block list blocks nothing: the same as none.
    let blocked_countries = raw
        .blocked_countries
        .filter(|list| !list.is_empty())
        .map(|list| country_codes("blocked_countries", list))
        .transpose()?;
    let devices = raw
        .devices
        .map(|list| {
            canonical_list("devices", list, |name| {
                DeviceClass::parse(name)
                    .filter(|device| device.as_str() == name)
                    .map(|device| device.as_str().to_owned())
                    .ok_or_else(|| format!("{name:?} is not one of desktop, mobile, tablet"))
            })
        })
        .transpose()?;
    Ok(Targeting {
        countries,
        blocked_countries,
        devices,
        sources: raw.sources.map(|list| value_patterns("sources", list)).transpose()?,
        campaigns: raw.campaigns.map(|list| value_patterns("campaigns", list)).transpose()?,
    })
}

fn country_codes(field: &str, list: Vec<String>) -> Result<Vec<String>, AppError> {
    canonical_list(field, list, |code| {
        Country::from_code(code)
            .filter(|country| country.as_str() == code)
            .map(|country| country.as_str().to_owned())
            .ok_or_else(|| {
                format!("{code:?} is not an ISO 3166-1 alpha-2 country code in capitals (or XX for unknown)")
            })
    })
}

fn value_patterns(field: &str, list: Vec<String>) -> Result<Vec<String>, AppError> {
    canonical_list(field, list, |entry| match ValuePattern::problem(entry) {
        Some(problem) => Err(problem),
        None => Ok(entry.clone()),
    })
}

/// A non-empty list of at most [`MAX_RULE_ENTRIES`] entries, each made canonical by `check` (or
/// refused with why), duplicates dropped, in the order given.
fn canonical_list(
    field: &str,
    list: Vec<String>,
    check: impl Fn(&String) -> Result<String, String>,
) -> Result<Vec<String>, AppError> {
    if list.is_empty() {
        return Err(AppError::invalid(format!(
            "{field} must not be empty: no visitor could match it (leave it out, or null, for anyone)"
        )));
    }
    if list.len() > MAX_RULE_ENTRIES {
        return Err(AppError::invalid(format!("{field} may hold at most {MAX_RULE_ENTRIES} entries")));
    }
    let mut canonical: Vec<String> = Vec::with_capacity(list.len());
    for entry in &list {
        let entry = check(entry).map_err(|why| AppError::invalid(format!("{field}: {why}")))?;
        if !canonical.contains(&entry) {
            canonical.push(entry);
        }
    }
    Ok(canonical)
}

fn validate_cap(field: &str, cap: u64) -> Result<u64, AppError> {
    if (1..=MAX_DAILY_CAP).contains(&cap) {
        Ok(cap)
    } else {
        Err(AppError::invalid(format!("{field} must be from 1 to {MAX_DAILY_CAP} (leave it out, or null, for no cap)")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn targeting(json: &str) -> Result<Targeting, String> {
        validate_targeting(serde_json::from_str(json).unwrap()).map_err(|e| e.to_string())
    }

    #[test]
    fn rules_are_made_canonical() {
        let t =
            targeting(r#"{"countries": ["DE", "AT", "DE"], "devices": ["mobile"], "blocked_countries": []}"#).unwrap();
        assert_eq!(t.countries, Some(vec!["DE".to_owned(), "AT".to_owned()]));
        assert_eq!(t.devices, Some(vec!["mobile".to_owned()]));
        assert_eq!(t.blocked_countries, None, "an empty block list blocks nothing");
        assert_eq!(targeting(r#"{"countries": ["XX"]}"#).unwrap().countries, Some(vec!["XX".to_owned()]));
    }

    #[test]
    fn bad_rules_are_refused_naming_the_field() {
        for (json, field) in [
            (r#"{"countries": []}"#, "countries"),
            (r#"{"countries": ["ZZ"]}"#, "countries"),
            (r#"{"countries": ["DEU"]}"#, "countries"),
            (r#"{"blocked_countries": ["UK"]}"#, "blocked_countries"),
            (r#"{"countries": ["de"]}"#, "countries"),
            (r#"{"devices": ["phone"]}"#, "devices"),
            (r#"{"devices": ["Mobile"]}"#, "devices"),
            (r#"{"devices": []}"#, "devices"),
            (r#"{"sources": []}"#, "sources"),
            (r#"{"sources": [""]}"#, "sources"),
            (r#"{"sources": ["a*b"]}"#, "sources"),
            (r#"{"campaigns": ["x\u0001"]}"#, "campaigns"),
        ] {
            let error = targeting(json).expect_err(json);
            assert!(error.starts_with(field), "{json}: {error}");
        }
        let too_many = format!(
            r#"{{"sources": [{}]}}"#,
            (0..=MAX_RULE_ENTRIES).map(|i| format!("\"s{i}\"")).collect::<Vec<_>>().join(",")
        );
        assert!(targeting(&too_many).unwrap_err().contains("at most"));
        assert!(validate_cap("daily_click_cap", 0).unwrap_err().to_string().starts_with("daily_click_cap"));
        assert!(validate_cap("daily_ftd_cap", MAX_DAILY_CAP + 1).is_err());
    }

    #[test]
    fn rule_changes_touch_only_the_rules_given() {
        let current = targeting(r#"{"countries": ["DE"], "sources": ["fb"]}"#).unwrap();
        let changes =
            RuleChanges { sources: Some(None), devices: Some(Some(vec!["tablet".into()])), ..Default::default() };
        let changed = changes.applied_to(&current);
        assert_eq!(changed.countries, current.countries);
        assert_eq!(changed.sources, None);
        assert_eq!(changed.devices, Some(vec!["tablet".to_owned()]));
    }

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

//! Offer targeting: which visitors an offer accepts, and its daily caps.
//!
//! Casino offers are licensed per country and sold for given devices, sources and campaigns, so each
//! offer may carry rules; an absent rule accepts anyone. [`Targeting`] is the rules as the admin API
//! and the stores hold them (validated by the application layer: known country codes, device names,
//! non-empty entries); [`OfferRules`] is the same compiled for matching, which the routing table
//! does only while it is built, never per click.
//!
//! A `sources` or `campaigns` entry is an exact value, or a prefix when it ends in `*` (`fb_*`
//! accepts `fb_spring`). A click without a source matches no entry, so an offer with a `sources`
//! rule never gets it. What makes an entry valid is said here once ([`ValuePattern::problem`]), for
//! the admin API and the simulator's scenario files alike.

use serde::{Deserialize, Serialize};

use crate::visitor::{Country, DeviceClass};

/// Longest `sources` or `campaigns` entry, in characters (a click's `source` is at most as long).
pub const MAX_RULE_ENTRY_CHARS: usize = 256;

/// An offer's rules as stored and as the API shows them; `None` is "anyone".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Targeting {
    /// Countries accepted (ISO 3166-1 alpha-2, `XX` for unknown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub countries: Option<Vec<String>>,
    /// Countries refused, even if `countries` lists them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocked_countries: Option<Vec<String>>,
    /// Device classes accepted (`desktop`, `mobile`, `tablet`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub devices: Option<Vec<String>>,
    /// Traffic sources accepted: exact values, or prefixes ending in `*`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sources: Option<Vec<String>>,
    /// Campaigns accepted: exact values, or prefixes ending in `*`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaigns: Option<Vec<String>>,
}

/// An offer's daily caps, per UTC day; `None` is no cap.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DailyCaps {
    /// Most clicks a day (bots included: they were sent to the casino).
    pub clicks: Option<u64>,
    /// Most FTDs a day, counted by the FTD's arrival.
    pub ftds: Option<u64>,
}

/// One `sources` or `campaigns` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValuePattern {
    /// The value itself.
    Exact(Box<str>),
    /// Any value starting with this (the entry without its trailing `*`).
    Prefix(Box<str>),
}

impl ValuePattern {
    /// The pattern an entry spells.
    pub fn parse(entry: &str) -> ValuePattern {
        match entry.strip_suffix('*') {
            Some(stem) => ValuePattern::Prefix(stem.into()),
            None => ValuePattern::Exact(entry.into()),
        }
    }

    /// Why `entry` is no valid `sources` or `campaigns` entry (a [`value_problem`]-free value with
    /// a `*` only at the end), if it is not.
    pub fn problem(entry: &str) -> Option<String> {
        let stem = entry.strip_suffix('*').unwrap_or(entry);
        value_problem(entry).or_else(|| {
            stem.contains('*').then(|| format!("{entry:?}: only a trailing * is allowed (it makes the entry a prefix)"))
        })
    }

    /// Whether `value` matches.
    pub fn matches(&self, value: &str) -> bool {
        match self {
            ValuePattern::Exact(exact) => **exact == *value,
            ValuePattern::Prefix(stem) => value.starts_with(&**stem),
        }
    }
}

/// An offer's rules, compiled for matching.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OfferRules {
    countries: Option<Box<[Country]>>,
    blocked_countries: Box<[Country]>,
    devices: Option<Box<[DeviceClass]>>,
    sources: Option<Box<[ValuePattern]>>,
    campaigns: Option<Box<[ValuePattern]>>,
}

impl OfferRules {
    /// Compiles validated rules. (An entry that does not parse, which validation never lets
    /// through, matches nothing.)
    pub fn compile(targeting: &Targeting) -> OfferRules {
        let countries = |list: &Vec<String>| -> Box<[Country]> {
            list.iter().filter_map(|code| Country::from_code(code)).collect()
        };
        let patterns = |list: &Vec<String>| -> Box<[ValuePattern]> {
            list.iter().map(|entry| ValuePattern::parse(entry)).collect()
        };
        OfferRules {
            countries: targeting.countries.as_ref().map(countries),
            blocked_countries: targeting.blocked_countries.as_ref().map(countries).unwrap_or_default(),
            devices: targeting
                .devices
                .as_ref()
                .map(|list| list.iter().filter_map(|name| DeviceClass::parse(name)).collect()),
            sources: targeting.sources.as_ref().map(patterns),
            campaigns: targeting.campaigns.as_ref().map(patterns),
        }
    }

    /// Whether a visitor from `country` on `device` is accepted.
    pub fn accepts_place(&self, country: Country, device: DeviceClass) -> bool {
        self.countries.as_ref().is_none_or(|list| list.contains(&country))
            && !self.blocked_countries.contains(&country)
            && self.devices.as_ref().is_none_or(|list| list.contains(&device))
    }

    /// Whether a click with this source is accepted.
    pub fn accepts_source(&self, source: Option<&str>) -> bool {
        accepts_value(self.sources.as_deref(), source)
    }

    /// Whether a click with this campaign is accepted.
    pub fn accepts_campaign(&self, campaign: Option<&str>) -> bool {
        accepts_value(self.campaigns.as_deref(), campaign)
    }

    /// The `sources` entries, if the offer has that rule.
    pub fn source_patterns(&self) -> &[ValuePattern] {
        self.sources.as_deref().unwrap_or_default()
    }

    /// The `campaigns` entries, if the offer has that rule.
    pub fn campaign_patterns(&self) -> &[ValuePattern] {
        self.campaigns.as_deref().unwrap_or_default()
    }
}

/// Why `value` could not be a source or campaign (1 to [`MAX_RULE_ENTRY_CHARS`] characters without
/// control characters), if it could not.
pub fn value_problem(value: &str) -> Option<String> {
    let fits =
        !value.is_empty() && value.chars().count() <= MAX_RULE_ENTRY_CHARS && !value.chars().any(char::is_control);
    (!fits).then(|| format!("{value:?} must be 1 to {MAX_RULE_ENTRY_CHARS} characters without control characters"))
}

fn accepts_value(rule: Option<&[ValuePattern]>, value: Option<&str>) -> bool {
    match (rule, value) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(patterns), Some(value)) => patterns.iter().any(|pattern| pattern.matches(value)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(json: &str) -> OfferRules {
        OfferRules::compile(&serde_json::from_str(json).unwrap())
    }

    #[test]
    fn no_rule_accepts_anyone() {
        let any = rules("{}");
        assert!(any.accepts_place(Country::UNKNOWN, DeviceClass::Tablet));
        assert!(any.accepts_source(None) && any.accepts_campaign(Some("x")));
    }

    #[test]
    fn countries_blocked_countries_and_devices_combine() {
        let uk_mobile = rules(r#"{"countries": ["GB", "IE"], "blocked_countries": ["IE"], "devices": ["mobile"]}"#);
        let gb = Country::from_code("GB").unwrap();
        let ie = Country::from_code("IE").unwrap();
        assert!(uk_mobile.accepts_place(gb, DeviceClass::Mobile));
        assert!(!uk_mobile.accepts_place(gb, DeviceClass::Desktop), "device not listed");
        assert!(!uk_mobile.accepts_place(ie, DeviceClass::Mobile), "blocked wins over allowed");
        assert!(!uk_mobile.accepts_place(Country::UNKNOWN, DeviceClass::Mobile));
        let not_de = rules(r#"{"blocked_countries": ["DE"]}"#);
        assert!(not_de.accepts_place(Country::UNKNOWN, DeviceClass::Desktop));
        assert!(!not_de.accepts_place(Country::from_code("DE").unwrap(), DeviceClass::Desktop));
        let unknown_only = rules(r#"{"countries": ["XX"]}"#);
        assert!(unknown_only.accepts_place(Country::UNKNOWN, DeviceClass::Desktop), "XX is a value rules match");
    }

    #[test]
    fn sources_and_campaigns_match_exactly_or_by_prefix() {
        let r = rules(r#"{"sources": ["google", "fb_*"], "campaigns": ["spring*"]}"#);
        assert!(r.accepts_source(Some("google")) && !r.accepts_source(Some("google2")));
        assert!(r.accepts_source(Some("fb_")) && r.accepts_source(Some("fb_x")) && !r.accepts_source(Some("fb")));
        assert!(!r.accepts_source(None), "a click without a source matches no entry");
        assert!(r.accepts_campaign(Some("spring-26")) && !r.accepts_campaign(Some("autumn")));
        let any_source = rules(r#"{"sources": ["*"]}"#);
        assert!(any_source.accepts_source(Some("x")) && !any_source.accepts_source(None));
    }

    #[test]
    fn targeting_round_trips_through_json_without_absent_rules() {
        let targeting = Targeting { devices: Some(vec!["tablet".into()]), ..Targeting::default() };
        let json = serde_json::to_string(&targeting).unwrap();
        assert_eq!(json, r#"{"devices":["tablet"]}"#);
        assert_eq!(serde_json::from_str::<Targeting>(&json).unwrap(), targeting);
    }
}

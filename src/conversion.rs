//! What a postback means, independent of how it arrived: the event kinds, each offer's mapping of a
//! platform's status words to them, and the rules a payout must meet. Pure code.

use std::collections::BTreeMap;

/// The events the router understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EventKind {
    /// First-time deposit, optionally with its payout.
    Ftd,
    /// The payout of an FTD reported earlier without one.
    Payout,
    /// A registration: no money.
    Reg,
    /// A further deposit or revenue-share amount, deduplicated by transaction id.
    Deposit,
    /// The FTD was voided (chargeback, failed qualification).
    Rejected,
}

impl EventKind {
    /// Every kind, in a stable order.
    pub const ALL: [EventKind; 5] =
        [EventKind::Ftd, EventKind::Payout, EventKind::Reg, EventKind::Deposit, EventKind::Rejected];

    /// The event's canonical name.
    pub const fn as_str(self) -> &'static str {
        match self {
            EventKind::Ftd => "ftd",
            EventKind::Payout => "payout",
            EventKind::Reg => "reg",
            EventKind::Deposit => "deposit",
            EventKind::Rejected => "rejected",
        }
    }

    /// The postback fields this event cannot do without, besides `click_id` and `event`: a payout
    /// without an amount, or a deposit without its amount and transaction id, would record nothing.
    pub const fn required_fields(self) -> &'static [&'static str] {
        match self {
            EventKind::Payout => &["payout"],
            EventKind::Deposit => &["payout", "tid"],
            EventKind::Ftd | EventKind::Reg | EventKind::Rejected => &[],
        }
    }

    /// Parses a canonical name, ignoring ASCII case.
    pub fn parse(name: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|kind| kind.as_str().eq_ignore_ascii_case(name))
    }

    /// Resolves a platform's word: the offer's own mapping first, then the canonical names.
    pub fn resolve(word: &str, aliases: &BTreeMap<String, EventKind>) -> Option<EventKind> {
        let word = word.trim();
        aliases
            .iter()
            .find(|(alias, _)| alias.eq_ignore_ascii_case(word))
            .map(|(_, &kind)| kind)
            .or_else(|| EventKind::parse(word))
    }
}

/// An offer's status-word mapping by event name, as stored and as the API shows it.
pub fn alias_names(aliases: &BTreeMap<String, EventKind>) -> BTreeMap<&str, &'static str> {
    aliases.iter().map(|(word, kind)| (word.as_str(), kind.as_str())).collect()
}

/// The mapping back from event names; names this code does not know are dropped, not fatal.
pub fn aliases_from_names(names: BTreeMap<String, String>) -> BTreeMap<String, EventKind> {
    names.into_iter().filter_map(|(word, event)| Some((word, EventKind::parse(&event)?))).collect()
}

/// A payout that cannot be accepted.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
pub enum InvalidPayout {
    /// NaN or infinite.
    #[error("payout must be a finite number")]
    NotFinite,
    /// Below zero.
    #[error("payout must not be negative")]
    Negative,
    /// Above the configured maximum.
    #[error("payout exceeds the maximum of {0}")]
    TooLarge(f64),
    /// Text that is not a plain decimal number.
    #[error("payout must be a plain decimal number, such as 150.00")]
    NotDecimal,
}

/// Checks a payout: finite, `>= 0` and `<= max`.
pub fn validate_payout(payout: f64, max: f64) -> Result<f64, InvalidPayout> {
    if !payout.is_finite() {
        return Err(InvalidPayout::NotFinite);
    }
    if payout < 0.0 {
        return Err(InvalidPayout::Negative);
    }
    if payout > max {
        return Err(InvalidPayout::TooLarge(max));
    }
    Ok(payout)
}

/// The pattern a payout given as text must match: plain decimal digits (no sign, exponent or
/// spaces), any decimals (kept to micro-units), at most `max`. The range is spelled out in digits, so
/// that the API description states exactly what [`parse_payout_text`] accepts; under the default
/// maximum it is `^(?:(?:[0-9]{1,5}|0[0-9]{5})(?:\.[0-9]+)?|100000(?:\.0+)?)$`. (A `max` with a
/// fraction is taken at its whole part.)
pub fn payout_text_pattern(max: f64) -> String {
    let ceiling = whole_part(max).to_string();
    let digits: Vec<u8> = ceiling.bytes().map(|b| b - b'0').collect();
    // Whole parts below the ceiling: fewer digits, or as many with a smaller digit after a common prefix.
    let mut below = Vec::new();
    if digits.len() > 1 {
        below.push(format!("[0-9]{{1,{}}}", digits.len() - 1));
    }
    for (position, &digit) in digits.iter().enumerate() {
        if digit > 0 {
            let rest = digits.len() - position - 1;
            let tail = if rest > 0 { format!("[0-9]{{{rest}}}") } else { String::new() };
            let smaller = if digit == 1 { "0".to_owned() } else { format!("[0-{}]", digit - 1) };
            below.push(format!("{}{smaller}{tail}", &ceiling[..position]));
        }
    }
    let at_ceiling = format!("{ceiling}(?:\\.0+)?");
    if below.is_empty() {
        return format!("^{at_ceiling}$");
    }
    format!("^(?:(?:{})(?:\\.[0-9]+)?|{at_ceiling})$", below.join("|"))
}

/// Parses a payout given as text (a query parameter, a form field or a JSON string): what
/// [`payout_text_pattern`] matches, and nothing else.
pub fn parse_payout_text(text: &str, max: f64) -> Result<f64, InvalidPayout> {
    if let Some(rest) = text.strip_prefix('-')
        && rest.parse::<f64>().is_ok_and(|value| value > 0.0)
    {
        return Err(InvalidPayout::Negative);
    }
    let (whole, fraction) = text.split_once('.').unwrap_or((text, "0"));
    let digits = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || !digits(fraction) {
        return Err(InvalidPayout::NotDecimal);
    }
    let ceiling = whole_part(max);
    let fits = match whole.trim_start_matches('0').parse::<u64>().unwrap_or(0).cmp(&ceiling) {
        std::cmp::Ordering::Less => whole.len() <= ceiling.to_string().len(),
        std::cmp::Ordering::Equal => whole.len() == ceiling.to_string().len() && fraction.bytes().all(|b| b == b'0'),
        std::cmp::Ordering::Greater => false,
    };
    if !fits {
        return Err(InvalidPayout::TooLarge(max));
    }
    validate_payout(text.parse().map_err(|_| InvalidPayout::NotDecimal)?, max)
}

/// The whole part of a (finite, non-negative) maximum.
fn whole_part(max: f64) -> u64 {
    max.max(0.0).floor() as u64
}

/// An amount in exact integer micro-units (amount x 1,000,000, rounded): how both stores keep money,
/// so that they round alike.
pub fn to_micro_units(amount: f64) -> i64 {
    (amount * 1_000_000.0).round() as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_parse_case_insensitively_and_aliases_win() {
        assert_eq!(EventKind::parse("FTD"), Some(EventKind::Ftd));
        assert_eq!(EventKind::parse("sale"), None);
        let aliases = BTreeMap::from([
            ("first_dep".to_owned(), EventKind::Ftd),
            ("chargeback".to_owned(), EventKind::Rejected),
            ("reg".to_owned(), EventKind::Deposit),
        ]);
        assert_eq!(EventKind::resolve("First_Dep", &aliases), Some(EventKind::Ftd));
        assert_eq!(EventKind::resolve("chargeback", &aliases), Some(EventKind::Rejected));
        assert_eq!(EventKind::resolve("reg", &aliases), Some(EventKind::Deposit), "the offer's mapping wins");
        assert_eq!(EventKind::resolve("payout", &aliases), Some(EventKind::Payout));
        assert_eq!(EventKind::resolve("bogus", &aliases), None);
    }

    #[test]
    fn alias_names_round_trip_and_unknown_names_are_dropped() {
        let aliases = BTreeMap::from([("first_dep".to_owned(), EventKind::Ftd)]);
        let names: BTreeMap<String, String> =
            alias_names(&aliases).into_iter().map(|(w, e)| (w.to_owned(), e.to_owned())).collect();
        assert_eq!(aliases_from_names(names.clone()), aliases);
        let mut with_unknown = names;
        with_unknown.insert("old".into(), "gone".into());
        assert_eq!(aliases_from_names(with_unknown), aliases);
    }

    #[test]
    fn micro_units_round_to_the_nearest() {
        assert_eq!(to_micro_units(100.5), 100_500_000);
        assert_eq!(to_micro_units(0.1234564), 123_456);
        assert_eq!(to_micro_units(0.1234566), 123_457);
    }

    #[test]
    fn payout_text_is_a_plain_decimal_up_to_the_maximum() {
        let max = 100_000.0;
        assert_eq!(parse_payout_text("150", max), Ok(150.0));
        assert_eq!(parse_payout_text("99999.1234567", max), Ok(99_999.1234567));
        assert_eq!(parse_payout_text("100000.00", max), Ok(100_000.0));
        assert_eq!(parse_payout_text("0100", max), Ok(100.0));
        assert_eq!(parse_payout_text("-5", max), Err(InvalidPayout::Negative));
        for large in ["100000.01", "100001", "999999", "0000001"] {
            assert_eq!(parse_payout_text(large, max), Err(InvalidPayout::TooLarge(max)), "{large:?}");
        }
        for bad in ["", "1e5", " 5", "5.", ".5", "inf", "NaN", "+5", "1,5"] {
            assert_eq!(parse_payout_text(bad, max), Err(InvalidPayout::NotDecimal), "{bad:?}");
        }
        assert_eq!(payout_text_pattern(max), "^(?:(?:[0-9]{1,5}|0[0-9]{5})(?:\\.[0-9]+)?|100000(?:\\.0+)?)$");
        assert_eq!(payout_text_pattern(500_000.0), "^(?:(?:[0-9]{1,5}|[0-4][0-9]{5})(?:\\.[0-9]+)?|500000(?:\\.0+)?)$");
        assert_eq!(payout_text_pattern(7.5), "^(?:(?:[0-6])(?:\\.[0-9]+)?|7(?:\\.0+)?)$");
        assert_eq!(payout_text_pattern(0.0), "^0(?:\\.0+)?$");
    }

    #[test]
    fn payouts_must_be_finite_non_negative_and_bounded() {
        assert_eq!(validate_payout(100.5, 1000.0), Ok(100.5));
        assert_eq!(validate_payout(0.0, 1000.0), Ok(0.0));
        assert_eq!(validate_payout(f64::NAN, 1000.0), Err(InvalidPayout::NotFinite));
        assert_eq!(validate_payout(f64::INFINITY, 1000.0), Err(InvalidPayout::NotFinite));
        assert_eq!(validate_payout(-0.01, 1000.0), Err(InvalidPayout::Negative));
        assert_eq!(validate_payout(1000.01, 1000.0), Err(InvalidPayout::TooLarge(1000.0)));
    }

    mod properties {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            /// The pattern the API description states and the parser agree on every text.
            #[test]
            fn the_payout_pattern_and_parser_agree(text in "[0-9.]{1,9}|-?[0-9]{1,8}(\\.[0-9]{1,3})?", max in 0u32..2_000_000) {
                let max = f64::from(max);
                let pattern = regex::Regex::new(&payout_text_pattern(max)).unwrap();
                prop_assert_eq!(pattern.is_match(&text), parse_payout_text(&text, max).is_ok(), "{} under {}", text, max);
            }

            /// Only finite amounts from 0 to the maximum pass, unchanged.
            #[test]
            fn payouts_pass_only_in_range(payout in any::<f64>(), max in 0.0..1e9f64) {
                match validate_payout(payout, max) {
                    Ok(accepted) => prop_assert!(accepted == payout && (0.0..=max).contains(&payout)),
                    Err(_) => prop_assert!(!payout.is_finite() || payout < 0.0 || payout > max),
                }
            }

            /// Any word maps to an event or to nothing, never a panic; the five names always map.
            #[test]
            fn any_event_word_resolves_without_panic(word in any::<String>()) {
                let _ = EventKind::resolve(&word, &BTreeMap::new());
                for name in ["ftd", "payout", "reg", "deposit", "rejected"] {
                    prop_assert!(EventKind::resolve(name, &BTreeMap::new()).is_some());
                }
            }
        }
    }
}

//! Offer URLs and the `Location` each click is sent to.
//!
//! Affiliate platforms read the click id from a parameter of their own choosing (`btag`, `subid`,
//! `var1`...), so an offer URL may say where it goes with the macros `{click_id}`, `{source}` and
//! `{campaign}`. A URL without macros gets `click_id=<id>` appended to its query, before any fragment.
//!
//! The URL is validated and cut into literal parts and macro slots once, when the routing table is
//! built; a click only copies the parts into one buffer. Invariants: macros may stand only after the
//! URL's authority, and substituted values are percent-encoded, so a Location always points at the
//! offer's own scheme, host and port, whatever a visitor puts in `source` or `campaign`.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use uuid::Uuid;

/// Everything but RFC 3986's unreserved characters is encoded in substituted values.
const VALUE_ENCODE_SET: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// Longest accepted offer URL.
pub const MAX_URL_LEN: usize = 2048;

/// Why an offer URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidOfferUrl {
    /// Not parseable as an absolute URL.
    #[error("casino_url must be an absolute http(s) URL")]
    NotAbsolute,
    /// A scheme other than http or https.
    #[error("casino_url must use http or https")]
    Scheme,
    /// Characters a `Location` header cannot carry.
    #[error("casino_url must be printable ASCII without spaces (percent-encode other characters)")]
    Characters,
    /// Longer than [`MAX_URL_LEN`].
    #[error("casino_url must be at most 2048 characters")]
    TooLong,
    /// A macro in the scheme, host or port, where a visitor's value could redirect elsewhere.
    #[error("macros may only appear in the path, query or fragment of casino_url")]
    MacroInAuthority,
}

/// One piece of a prepared Location.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(Box<str>),
    ClickId,
    Source,
    Campaign,
}

/// A validated offer URL, cut into parts ready to render a Location for each click.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedirectTemplate {
    parts: Box<[Part]>,
    /// Length of all literal parts plus a click id, to size the output buffer once.
    base_len: usize,
}

impl RedirectTemplate {
    /// Validates `casino_url` and prepares its parts.
    pub fn parse(casino_url: &str) -> Result<RedirectTemplate, InvalidOfferUrl> {
        if casino_url.len() > MAX_URL_LEN {
            return Err(InvalidOfferUrl::TooLong);
        }
        if !casino_url.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(InvalidOfferUrl::Characters);
        }
        let scheme_end = casino_url.find("://").ok_or(InvalidOfferUrl::NotAbsolute)?;
        let scheme = &casino_url[..scheme_end];
        if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
            return Err(InvalidOfferUrl::Scheme);
        }
        let after_scheme = scheme_end + 3;
        let authority_end =
            casino_url[after_scheme..].find(['/', '?', '#']).map_or(casino_url.len(), |offset| after_scheme + offset);
        if authority_end == after_scheme {
            return Err(InvalidOfferUrl::NotAbsolute);
        }
        let parts = split_macros(casino_url);
        let has_macros = parts.iter().any(|part| !matches!(part, Part::Literal(_)));
        if has_macros && casino_url[..authority_end].contains('{') {
            return Err(InvalidOfferUrl::MacroInAuthority);
        }
        let parts = if has_macros { parts } else { append_click_id(casino_url) };
        let base_len = parts
            .iter()
            .map(|part| match part {
                Part::Literal(text) => text.len(),
                Part::ClickId => 36,
                Part::Source | Part::Campaign => 0,
            })
            .sum();
        let template = RedirectTemplate { parts: parts.into_boxed_slice(), base_len };
        // Validate what a click will get, with harmless values in the macros.
        let sample = url::Url::parse(&template.render(&Uuid::nil(), "s", "c"));
        if sample.is_err() || sample.as_ref().is_ok_and(|url| url.host_str().is_none_or(str::is_empty)) {
            return Err(InvalidOfferUrl::NotAbsolute);
        }
        Ok(template)
    }

    /// Writes the Location for one click into `out` (cleared first). `source` and `campaign` are the
    /// visitor's raw values; they are percent-encoded here.
    pub fn render_into(&self, out: &mut String, click_id: &Uuid, source: &str, campaign: &str) {
        out.clear();
        out.reserve(self.base_len + 3 * (source.len() + campaign.len()));
        write_parts(out, &self.parts, click_id, source, campaign);
    }

    /// The Location for one click, in a buffer sized once.
    pub fn render(&self, click_id: &Uuid, source: &str, campaign: &str) -> String {
        let mut out = String::new();
        self.render_into(&mut out, click_id, source, campaign);
        out
    }
}

fn split_macros(url: &str) -> Vec<Part> {
    const MACROS: [(&str, Part); 3] =
        [("{click_id}", Part::ClickId), ("{source}", Part::Source), ("{campaign}", Part::Campaign)];
    let mut parts = Vec::new();
    let mut literal_start = 0;
    let mut pos = 0;
    while let Some(offset) = url[pos..].find('{') {
        let start = pos + offset;
        match MACROS.iter().find(|(name, _)| url[start..].starts_with(name)) {
            Some((name, part)) => {
                if literal_start < start {
                    parts.push(Part::Literal(url[literal_start..start].into()));
                }
                parts.push(part.clone());
                pos = start + name.len();
                literal_start = pos;
            }
            None => pos = start + 1,
        }
    }
    if literal_start < url.len() {
        parts.push(Part::Literal(url[literal_start..].into()));
    }
    parts
}

/// Parts for a URL without macros: `click_id=<id>` joins the query, before any `#fragment`.
fn append_click_id(url: &str) -> Vec<Part> {
    let (before_fragment, fragment) = match url.find('#') {
        Some(hash) => url.split_at(hash),
        None => (url, ""),
    };
    let separator = match before_fragment.find('?') {
        None => "?",
        Some(q) if q + 1 == before_fragment.len() || before_fragment.ends_with('&') => "",
        Some(_) => "&",
    };
    let mut parts = vec![Part::Literal(format!("{before_fragment}{separator}click_id=").into()), Part::ClickId];
    if !fragment.is_empty() {
        parts.push(Part::Literal(fragment.into()));
    }
    parts
}

fn write_parts(out: &mut String, parts: &[Part], click_id: &Uuid, source: &str, campaign: &str) {
    let mut id_buf = Uuid::encode_buffer();
    for part in parts {
        match part {
            Part::Literal(text) => out.push_str(text),
            Part::ClickId => out.push_str(click_id.hyphenated().encode_lower(&mut id_buf)),
            Part::Source => out.extend(utf8_percent_encode(source, VALUE_ENCODE_SET)),
            Part::Campaign => out.extend(utf8_percent_encode(campaign, VALUE_ENCODE_SET)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: Uuid = Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0001);
    const ID_TEXT: &str = "01900000-0000-7000-8000-000000000001";

    fn render(url: &str, source: &str, campaign: &str) -> String {
        RedirectTemplate::parse(url).unwrap().render(&ID, source, campaign)
    }

    #[test]
    fn click_id_is_appended_with_the_right_separator() {
        assert_eq!(render("https://c.com/reg", "", ""), format!("https://c.com/reg?click_id={ID_TEXT}"));
        assert_eq!(render("https://c.com/reg?a=1", "", ""), format!("https://c.com/reg?a=1&click_id={ID_TEXT}"));
        assert_eq!(render("https://c.com/reg?", "", ""), format!("https://c.com/reg?click_id={ID_TEXT}"));
        assert_eq!(render("https://c.com/?a=1&", "", ""), format!("https://c.com/?a=1&click_id={ID_TEXT}"));
        assert_eq!(render("https://c.com", "", ""), format!("https://c.com?click_id={ID_TEXT}"));
    }

    #[test]
    fn click_id_goes_before_the_fragment() {
        assert_eq!(render("https://c.com/r?x=1#top", "", ""), format!("https://c.com/r?x=1&click_id={ID_TEXT}#top"));
        assert_eq!(render("https://c.com/r#a?b", "", ""), format!("https://c.com/r?click_id={ID_TEXT}#a?b"));
    }

    #[test]
    fn macros_are_substituted_and_values_percent_encoded() {
        let got = render("https://c.com/r?btag={click_id}&s={source}&c={campaign}", "fb ads&x=1", "winter/24");
        assert_eq!(got, format!("https://c.com/r?btag={ID_TEXT}&s=fb%20ads%26x%3D1&c=winter%2F24"));
        assert_eq!(render("https://c.com/{click_id}/go", "", ""), format!("https://c.com/{ID_TEXT}/go"));
        // A URL with macros gets no extra click_id parameter, even when it lacks {click_id}.
        assert_eq!(render("https://c.com/r?s={source}", "a", ""), "https://c.com/r?s=a");
    }

    #[test]
    fn unknown_braces_are_kept_literally() {
        assert_eq!(
            render("https://c.com/r?x={other}", "", ""),
            format!("https://c.com/r?x={{other}}&click_id={ID_TEXT}")
        );
    }

    #[test]
    fn bad_urls_are_refused_with_a_reason() {
        use InvalidOfferUrl::*;
        let cases = [
            ("c.com/reg", NotAbsolute),
            ("ftp://c.com/x", Scheme),
            ("javascript://alert(1)", Scheme),
            ("https://c.com/a b", Characters),
            ("https://c.com/\u{e9}", Characters),
            ("https://{source}/x", MacroInAuthority),
            ("https://c.com{source}/x", MacroInAuthority),
            ("https:///path", NotAbsolute),
            ("https://", NotAbsolute),
        ];
        for (url, expected) in cases {
            assert_eq!(RedirectTemplate::parse(url), Err(expected), "{url}");
        }
        let long = format!("https://c.com/{}", "a".repeat(MAX_URL_LEN));
        assert_eq!(RedirectTemplate::parse(&long), Err(TooLong));
    }

    #[test]
    fn hostile_values_cannot_leave_the_offer_host() {
        let template = RedirectTemplate::parse("https://c.com/{source}?c={campaign}").unwrap();
        for value in ["//evil.com", "@evil.com", "\\\\evil.com", "%2F%2Fevil.com", "\r\nLocation: x"] {
            let location = template.render(&ID, value, value);
            let parsed = url::Url::parse(&location).unwrap();
            assert_eq!(parsed.host_str(), Some("c.com"), "{value} -> {location}");
            assert!(location.bytes().all(|b| b.is_ascii_graphic()), "{location}");
        }
    }

    mod properties {
        use super::super::*;
        use proptest::prelude::*;

        fn offer_url() -> impl Strategy<Value = String> {
            // A first label starting "xn--" is a punycode (IDNA) label, which is refused unless it
            // decodes: not the plain ASCII host this property is about.
            let host =
                "[a-z][a-z0-9-]{0,20}(\\.[a-z]{2,6}){1,2}".prop_filter("not an IDNA label", |h| !h.starts_with("xn--"));
            let path = "(/[A-Za-z0-9._~-]{0,12}){0,3}";
            let query = "(\\?[a-z]{1,8}=(\\{click_id\\}|\\{source\\}|\\{campaign\\}|[a-z0-9]{0,8})){0,1}";
            (prop_oneof!["http", "https"], host, path, query)
                .prop_map(|(scheme, host, path, query)| format!("{scheme}://{host}{path}{query}"))
        }

        proptest! {
            /// Whatever the visitor's source and campaign, the Location stays on the offer's own
            /// scheme, host and port, carries the click id, and is a valid header value.
            #[test]
            fn locations_always_point_at_the_offer_host(
                url in offer_url(),
                source in any::<String>(),
                campaign in any::<String>(),
                id in any::<u128>(),
            ) {
                let template = RedirectTemplate::parse(&url).unwrap();
                let click_id = Uuid::from_u128(id);
                let location = template.render(&click_id, &source, &campaign);
                let offer = url::Url::parse(&url).unwrap();
                let rendered = url::Url::parse(&location).unwrap();
                prop_assert_eq!(rendered.scheme(), offer.scheme());
                prop_assert_eq!(rendered.host_str(), offer.host_str());
                prop_assert_eq!(rendered.port_or_known_default(), offer.port_or_known_default());
                prop_assert!(hyper::header::HeaderValue::try_from(location.as_str()).is_ok());
                if !url.contains('{') {
                    prop_assert!(location.contains(&click_id.to_string()));
                }
            }

            /// Any text as an offer URL is accepted or refused with a reason, never a panic; what is
            /// accepted renders a Location on its own host.
            #[test]
            fn any_offer_url_is_validated_without_panic(url in any::<String>(), source in any::<String>()) {
                if let Ok(template) = RedirectTemplate::parse(&url) {
                    let location = template.render(&Uuid::nil(), &source, "");
                    let sample = url::Url::parse(&template.render(&Uuid::nil(), "s", "c")).unwrap();
                    let rendered = url::Url::parse(&location).unwrap();
                    prop_assert_eq!(rendered.host_str(), sample.host_str());
                }
            }
        }
    }
}

//! Countries as a small dense index: an ISO 3166-1 alpha-2 code, or `XX` for unknown.
//!
//! Rules and counters key on the country of every click, so a country is a `u16` index into one
//! const table of codes rather than a string: it is `Copy`, compares as an integer, and indexes dense
//! per-country arrays (`[T; Country::COUNT]`). Parsing a code is two bytes into a 26×26 const array,
//! no hashing.
//!
//! Invariants: nothing here allocates, locks or makes a syscall; every [`Country`] value is a valid
//! index below [`Country::COUNT`]; the table is sorted, so `Ord` on `Country` is the order of the
//! codes.

/// An ISO 3166-1 alpha-2 country, or XX (unknown).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Country(u16);

impl Country {
    /// `XX`: no country known (not found, a private address, Tor, a header we cannot read).
    pub const UNKNOWN: Country = Country(XX_INDEX);
    /// The number of distinct values, `XX` included: the length of a dense per-country array.
    pub const COUNT: usize = CODES.len();

    /// This country's position in the code table, `0..COUNT`.
    pub fn index(self) -> usize {
        usize::from(self.0)
    }

    /// The country of an alpha-2 code, case-insensitive; only assigned ISO codes and `XX` are known.
    /// For validating configured rules, where a typo must be an error rather than a silent `XX`.
    pub fn from_code(code: &str) -> Option<Country> {
        match code.as_bytes() {
            [a, b] => lookup(*a, *b),
            _ => None,
        }
    }

    /// The country a proxy header names (`CF-IPCountry: DE`): surrounding whitespace is trimmed and
    /// case ignored; anything that is not a known code (`T1` for Tor, garbage, empty) is
    /// [`Country::UNKNOWN`]. Allocates nothing.
    pub fn from_header(value: &[u8]) -> Country {
        match value.trim_ascii() {
            [a, b] => lookup(*a, *b).unwrap_or(Country::UNKNOWN),
            _ => Country::UNKNOWN,
        }
    }

    /// The upper-case alpha-2 code (`"DE"`, `"XX"`).
    pub fn as_str(self) -> &'static str {
        CODES[self.index()]
    }

    /// Every value in code order, `XX` included.
    pub fn all() -> impl Iterator<Item = Country> {
        (0..CODES.len() as u16).map(Country)
    }
}

impl std::fmt::Display for Country {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The officially assigned ISO 3166-1 alpha-2 codes, sorted, plus `XX` in its sorted place.
///
/// Generated from Debian's `iso-codes` 4.15.0 (`/usr/share/iso-codes/json/iso_3166-1.json`, dated
/// 2023-04-27): 249 assigned codes. User-assigned codes some databases use (`XK` Kosovo, `EU`, `AP`)
/// and Cloudflare's `T1` are not in it, so they read as `XX`.
const CODES: [&str; 250] = [
    "AD", "AE", "AF", "AG", "AI", "AL", "AM", "AO", "AQ", "AR", "AS", "AT", "AU", "AW", "AX", "AZ", "BA", "BB", "BD",
    "BE", "BF", "BG", "BH", "BI", "BJ", "BL", "BM", "BN", "BO", "BQ", "BR", "BS", "BT", "BV", "BW", "BY", "BZ", "CA",
    "CC", "CD", "CF", "CG", "CH", "CI", "CK", "CL", "CM", "CN", "CO", "CR", "CU", "CV", "CW", "CX", "CY", "CZ", "DE",
    "DJ", "DK", "DM", "DO", "DZ", "EC", "EE", "EG", "EH", "ER", "ES", "ET", "FI", "FJ", "FK", "FM", "FO", "FR", "GA",
    "GB", "GD", "GE", "GF", "GG", "GH", "GI", "GL", "GM", "GN", "GP", "GQ", "GR", "GS", "GT", "GU", "GW", "GY", "HK",
    "HM", "HN", "HR", "HT", "HU", "ID", "IE", "IL", "IM", "IN", "IO", "IQ", "IR", "IS", "IT", "JE", "JM", "JO", "JP",
    "KE", "KG", "KH", "KI", "KM", "KN", "KP", "KR", "KW", "KY", "KZ", "LA", "LB", "LC", "LI", "LK", "LR", "LS", "LT",
    "LU", "LV", "LY", "MA", "MC", "MD", "ME", "MF", "MG", "MH", "MK", "ML", "MM", "MN", "MO", "MP", "MQ", "MR", "MS",
    "MT", "MU", "MV", "MW", "MX", "MY", "MZ", "NA", "NC", "NE", "NF", "NG", "NI", "NL", "NO", "NP", "NR", "NU", "NZ",
    "OM", "PA", "PE", "PF", "PG", "PH", "PK", "PL", "PM", "PN", "PR", "PS", "PT", "PW", "PY", "QA", "RE", "RO", "RS",
    "RU", "RW", "SA", "SB", "SC", "SD", "SE", "SG", "SH", "SI", "SJ", "SK", "SL", "SM", "SN", "SO", "SR", "SS", "ST",
    "SV", "SX", "SY", "SZ", "TC", "TD", "TF", "TG", "TH", "TJ", "TK", "TL", "TM", "TN", "TO", "TR", "TT", "TV", "TW",
    "TZ", "UA", "UG", "UM", "US", "UY", "UZ", "VA", "VC", "VE", "VG", "VI", "VN", "VU", "WF", "WS", "XX", "YE", "YT",
    "ZA", "ZM", "ZW",
];

/// Where `XX` sits in [`CODES`] (checked by a test and at compile time).
const XX_INDEX: u16 = 244;
const _: () = assert!(matches!(CODES[XX_INDEX as usize].as_bytes(), b"XX"));

/// Marks a letter pair that is no code in [`BY_LETTERS`].
const NONE: u16 = u16::MAX;

/// `BY_LETTERS[(a - b'A') * 26 + (b - b'A')]` is the index of the code `ab`, or [`NONE`].
static BY_LETTERS: [u16; 26 * 26] = by_letters();

const fn by_letters() -> [u16; 26 * 26] {
    let mut table = [NONE; 26 * 26];
    let mut i = 0;
    while i < CODES.len() {
        let code = CODES[i].as_bytes();
        assert!(code.len() == 2 && code[0].is_ascii_uppercase() && code[1].is_ascii_uppercase());
        if i > 0 {
            let prev = CODES[i - 1].as_bytes();
            assert!(prev[0] < code[0] || (prev[0] == code[0] && prev[1] < code[1]), "CODES must be sorted");
        }
        table[(code[0] - b'A') as usize * 26 + (code[1] - b'A') as usize] = i as u16;
        i += 1;
    }
    table
}

/// The country of two letters of either case, if they are a known code.
#[inline]
fn lookup(a: u8, b: u8) -> Option<Country> {
    let (a, b) = (a.to_ascii_uppercase(), b.to_ascii_uppercase());
    if !a.is_ascii_uppercase() || !b.is_ascii_uppercase() {
        return None;
    }
    match BY_LETTERS[usize::from(a - b'A') * 26 + usize::from(b - b'A')] {
        NONE => None,
        index => Some(Country(index)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_round_trips() {
        assert_eq!(Country::COUNT, 250);
        assert_eq!(Country::all().count(), Country::COUNT);
        for (i, country) in Country::all().enumerate() {
            assert_eq!(country.index(), i);
            let code = country.as_str();
            assert_eq!(Country::from_code(code), Some(country), "{code}");
            assert_eq!(Country::from_code(&code.to_ascii_lowercase()), Some(country), "{code}");
            assert_eq!(Country::from_header(code.as_bytes()), country, "{code}");
            assert_eq!(Country::from_header(code.to_ascii_lowercase().as_bytes()), country, "{code}");
        }
    }

    #[test]
    fn unknown_is_xx() {
        assert_eq!(Country::UNKNOWN.as_str(), "XX");
        assert_eq!(Country::from_code("XX"), Some(Country::UNKNOWN));
        assert_eq!(Country::from_code("xx"), Some(Country::UNKNOWN));
        assert_eq!(Country::from_header(b"XX"), Country::UNKNOWN);
    }

    #[test]
    fn headers_are_trimmed_and_case_insensitive() {
        let de = Country::from_code("DE").unwrap();
        assert_eq!(de.as_str(), "DE");
        assert_eq!(Country::from_header(b" de "), de);
        assert_eq!(Country::from_header(b"\tDe\r\n"), de);
        assert_eq!(Country::from_header(b"dE"), de);
        assert_eq!(de.to_string(), "DE");
    }

    #[test]
    fn what_is_not_a_code_is_unknown() {
        for bad in ["T1", "ZZ", "", "DEU", "D", "XK", "EU", "D1", "1D", "ÄÖ", " ", "D E"] {
            assert_eq!(Country::from_header(bad.as_bytes()), Country::UNKNOWN, "{bad:?}");
            assert_eq!(Country::from_code(bad), None, "{bad:?}");
        }
        for bad in [&b"\xff\xfe"[..], b"D\xc4", b"\xc4\x96", b"@A", b"[Z", b"`a", b"{z"] {
            assert_eq!(Country::from_header(bad), Country::UNKNOWN, "{bad:?}");
        }
        assert_eq!(Country::from_code(" DE"), None, "from_code does not trim");
    }

    #[test]
    fn order_is_code_order() {
        let codes: Vec<&str> = Country::all().map(Country::as_str).collect();
        let mut sorted = codes.clone();
        sorted.sort_unstable();
        assert_eq!(codes, sorted);
        assert!(Country::from_code("AD").unwrap() < Country::from_code("ZW").unwrap());
    }
}

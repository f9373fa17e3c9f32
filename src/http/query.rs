//! Strict parsing of query strings and form bodies (`a=1&b=x%20y`).
//!
//! Unlike lenient decoders, a malformed escape (`%zz`) or bytes that are not UTF-8 are an error the
//! caller answers with 400, never silently replaced, because these values end up in stored records
//! and in redirect URLs. Values borrow from the input unless they contain escapes.

use std::borrow::Cow;

/// A query string or form body that cannot be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// `%` not followed by two hex digits.
    #[error("malformed percent-encoding in the query string")]
    BadEscape,
    /// The decoded bytes are not UTF-8.
    #[error("query string is not valid UTF-8")]
    NotUtf8,
}

/// Iterates over `key=value` pairs, decoding both. A pair without `=` has an empty value.
pub fn pairs(input: &str) -> impl Iterator<Item = Result<(Cow<'_, str>, Cow<'_, str>), QueryError>> {
    input.split('&').filter(|pair| !pair.is_empty()).map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        Ok((decode(key)?, decode(value)?))
    })
}

/// Decodes one component: `+` is a space, `%XX` a byte; the result must be UTF-8.
pub fn decode(raw: &str) -> Result<Cow<'_, str>, QueryError> {
    if !raw.bytes().any(|b| b == b'%' || b == b'+') {
        return Ok(Cow::Borrowed(raw));
    }
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes.get(i + 1..i + 3).ok_or(QueryError::BadEscape)?;
                let high = hex_value(hex[0]).ok_or(QueryError::BadEscape)?;
                let low = hex_value(hex[1]).ok_or(QueryError::BadEscape)?;
                out.push(high << 4 | low);
                i += 2;
            }
            other => out.push(other),
        }
        i += 1;
    }
    String::from_utf8(out).map(Cow::Owned).map_err(|_| QueryError::NotUtf8)
}

fn hex_value(digit: u8) -> Option<u8> {
    (digit as char).to_digit(16).map(|value| value as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_values_are_borrowed() {
        assert!(matches!(decode("facebook"), Ok(Cow::Borrowed("facebook"))));
    }

    #[test]
    fn escapes_and_plus_are_decoded() {
        assert_eq!(decode("a%20b+c%2Fd").unwrap(), "a b c/d");
        assert_eq!(decode("%C3%A9t%C3%A9").unwrap(), "été");
    }

    #[test]
    fn malformed_input_is_an_error() {
        assert_eq!(decode("%zz"), Err(QueryError::BadEscape));
        assert_eq!(decode("abc%2"), Err(QueryError::BadEscape));
        assert_eq!(decode("%"), Err(QueryError::BadEscape));
        assert_eq!(decode("%FF%FE"), Err(QueryError::NotUtf8));
    }

    #[test]
    fn pairs_split_and_decode() {
        let got: Vec<_> = pairs("a=1&&b=x%20y&flag").map(Result::unwrap).collect();
        assert_eq!(got, [("a".into(), "1".into()), ("b".into(), "x y".into()), ("flag".into(), "".into())]);
        assert!(pairs("a=%zz").any(|p| p.is_err()));
    }

    mod properties {
        use super::super::*;
        use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
        use proptest::prelude::*;

        proptest! {
            /// Whatever a client sends, decoding answers a value or an error, never a panic.
            #[test]
            fn any_input_decodes_or_fails_cleanly(input in any::<String>()) {
                for pair in pairs(&input) {
                    let _ = pair;
                }
            }

            /// Any bytes, percent-encoded as a URL would carry them: UTF-8 comes back exactly, the
            /// rest is refused as not UTF-8.
            #[test]
            fn encoded_bytes_round_trip_or_are_refused(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
                let encoded: String = bytes.iter().map(|b| format!("%{b:02X}")).collect();
                match String::from_utf8(bytes) {
                    Ok(text) => prop_assert_eq!(decode(&encoded).unwrap(), text),
                    Err(_) => prop_assert_eq!(decode(&encoded), Err(QueryError::NotUtf8)),
                }
            }

            /// Keys and values encoded by a standard encoder decode to themselves.
            #[test]
            fn encoded_pairs_round_trip(key in "\\PC{1,20}", value in "\\PC{0,40}") {
                let query = format!(
                    "{}={}",
                    utf8_percent_encode(&key, NON_ALPHANUMERIC),
                    utf8_percent_encode(&value, NON_ALPHANUMERIC)
                );
                let decoded: Vec<_> = pairs(&query).map(Result::unwrap).collect();
                prop_assert_eq!(decoded, vec![(Cow::from(key), Cow::from(value))]);
            }
        }
    }
}

//! Secrets: generating them, and comparing them without leaking anything through timing.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::Rng;
use subtle::ConstantTimeEq;

/// A new random secret: 32 random bytes from the OS-seeded generator, URL-safe base64 (43 characters).
pub fn generate_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Whether `given` equals `expected`, in time that depends only on `expected`'s length, so that
/// neither the content nor the length of a secret leaks through timing.
pub fn secrets_match(expected: &[u8], given: &[u8]) -> bool {
    let mut equal = expected.len().ct_eq(&given.len());
    for (i, byte) in expected.iter().enumerate() {
        let other = given.get(i).copied().unwrap_or(!byte);
        equal &= byte.ct_eq(&other);
    }
    equal.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_match_only_when_equal() {
        assert!(secrets_match(b"s3cret", b"s3cret"));
        assert!(!secrets_match(b"s3cret", b"s3cres"));
        assert!(!secrets_match(b"s3cret", b"s3cre"));
        assert!(!secrets_match(b"s3cret", b"s3crett"));
        assert!(!secrets_match(b"s3cret", b""));
        assert!(secrets_match(b"", b""));
    }

    #[test]
    fn generated_secrets_are_url_safe_and_distinct() {
        let (a, b) = (generate_secret(), generate_secret());
        assert_eq!(a.len(), 43);
        assert!(a.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
        assert_ne!(a, b);
    }
}

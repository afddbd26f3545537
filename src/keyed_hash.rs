//! Keyed digests with a per-process random key (HMAC-SHA256).
//!
//! Owns one 256-bit key drawn from the OS at first use and never exposed. Two digests are
//! equal within one process lifetime exactly when their inputs are (up to HMAC collisions),
//! which is what change detection (`/config`'s `content_hash`) and secret comparison (the
//! admin token) need; an outsider who sees a digest cannot test guesses of the input offline,
//! and a digest from one process says nothing about another. Comparing digests instead of the
//! raw bytes makes a comparison's time independent of the secret's length.

use std::sync::OnceLock;

use ring::hmac;
use subtle::ConstantTimeEq;

/// Digest length in bytes.
pub const LEN: usize = 32;

fn key() -> Option<&'static hmac::Key> {
    static KEY: OnceLock<Option<hmac::Key>> = OnceLock::new();
    KEY.get_or_init(|| {
        let mut bytes = [0u8; LEN];
        getrandom::fill(&mut bytes).ok()?;
        Some(hmac::Key::new(hmac::HMAC_SHA256, &bytes))
    })
    .as_ref()
}

/// HMAC-SHA256 of `data` under the process key; `None` only if the OS gave no randomness
/// (callers must then refuse rather than fall back to an unkeyed digest).
pub fn digest(data: &[u8]) -> Option<[u8; LEN]> {
    let tag = hmac::sign(key()?, data);
    let mut out = [0u8; LEN];
    out.copy_from_slice(tag.as_ref());
    Some(out)
}

/// Constant-time equality of two digests.
pub fn equal(a: &[u8; LEN], b: &[u8; LEN]) -> bool {
    a.ct_eq(b).into()
}

/// The first `bytes` bytes of `digest(data)` as lowercase hex (`"unavailable"` without a key).
pub fn hex_prefix(data: &[u8], bytes: usize) -> String {
    use std::fmt::Write;
    match digest(data) {
        Some(d) => d.iter().take(bytes).fold(String::new(), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        }),
        None => "unavailable".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_inputs_give_equal_digests_and_others_differ() {
        let a = digest(b"token-one").unwrap();
        assert!(equal(&a, &digest(b"token-one").unwrap()));
        assert!(!equal(&a, &digest(b"token-two").unwrap()));
        assert!(!equal(&a, &digest(b"token-one-longer").unwrap()));
        assert_eq!(hex_prefix(b"x", 8).len(), 16);
        assert_eq!(hex_prefix(b"x", 8), hex_prefix(b"x", 8));
    }

    #[test]
    fn the_digest_is_keyed() {
        // An unkeyed HMAC (all-zero key) of the same input differs from ours.
        let zero = hmac::Key::new(hmac::HMAC_SHA256, &[0u8; LEN]);
        let unkeyed = hmac::sign(&zero, b"secret");
        assert_ne!(unkeyed.as_ref(), &digest(b"secret").unwrap()[..]);
    }
}

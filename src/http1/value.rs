//! The one rule for header values the gateway *derives* (from a token, a credential, the config
//! or a `${...}` template) before they are written into a head: `is_safe_header_value`.
//!
//! Client header values are checked by the parser; derived values never were, and a CR/LF in a
//! JWT claim written raw into the upstream head would smuggle header lines or a whole second
//! request. Every derived value goes through this function before it reaches a header.
//!
//! The rule, for a value of bytes `v`:
//! - at most `MAX_DERIVED_VALUE_LEN` (4096) bytes, so one claim cannot blow the upstream's
//!   header limits;
//! - no control character: bytes 0x00-0x1F (CR, LF, NUL, ...) and 0x7F (DEL) are refused,
//!   except HTAB inside the value (RFC 9110 field-value);
//! - no leading or trailing space or tab: a receiver strips them, so `"alice "` would reach the
//!   upstream as `alice`, a different identity than the one the token names.
//!
//! The empty value and bytes >= 0x80 (UTF-8 text, obs-text) are allowed.

use super::types::is_ctl;

/// Longest derived header value, in bytes.
pub const MAX_DERIVED_VALUE_LEN: usize = 4096;

/// Whether `v` may be written as a header value (see the module header for the rule).
pub fn is_safe_header_value(v: &[u8]) -> bool {
    if v.len() > MAX_DERIVED_VALUE_LEN {
        return false;
    }
    if let (Some(first), Some(last)) = (v.first(), v.last()) {
        if matches!(first, b' ' | b'\t') || matches!(last, b' ' | b'\t') {
            return false;
        }
    }
    !v.iter().any(|&b| is_ctl(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rule() {
        for ok in [
            &b""[..],
            b"alice",
            b"a b",
            b"a\tb",
            "caf\u{e9}".as_bytes(),
            b"\xff",
            &[b'a'; MAX_DERIVED_VALUE_LEN],
        ] {
            assert!(is_safe_header_value(ok), "{ok:?}");
        }
        for bad in [
            &b"alice\r\nX-Injected: 1"[..],
            b"a\rb",
            b"a\nb",
            b"a\0b",
            b"a\x7fb",
            b"a\x1bb",
            b"alice ",
            b" alice",
            b"\talice",
            b"alice\t",
            b" ",
            &[b'a'; MAX_DERIVED_VALUE_LEN + 1],
        ] {
            assert!(!is_safe_header_value(bad), "{bad:?}");
        }
    }
}

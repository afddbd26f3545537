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
//!   upstream as `alice`, a different identity than the one the token names;
//! - no Unicode control or bidirectional formatting character spelled in UTF-8: C1 controls
//!   (U+0080-U+009F, `NEL` among them, a line break to some readers) and every Unicode
//!   `Bidi_Control` character: the marks (U+061C, U+200E, U+200F) and the embedding, override
//!   and isolate characters (U+202A-U+202E, U+2066-U+2069), which make a name display as
//!   another in a backend's logs or admin pages ("Trojan Source" spoofing).
//!
//! The empty value and other bytes >= 0x80 (UTF-8 text, obs-text) are allowed.

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
    !v.iter().any(|&b| is_ctl(b)) && !v.windows(2).enumerate().any(|(i, w)| hidden_char(v, i, w))
}

/// Whether a C1 control or a bidirectional formatting character starts at `v[i]` (`w` is
/// `v[i..i + 2]`), in UTF-8: C1 is `C2 80`-`C2 9F`; U+061C is `D8 9C`; U+200E-U+200F is
/// `E2 80 8E`-`E2 80 8F`; U+202A-U+202E is `E2 80 AA`-`E2 80 AE`; U+2066-U+2069 is
/// `E2 81 A6`-`E2 81 A9`.
fn hidden_char(v: &[u8], i: usize, w: &[u8]) -> bool {
    matches!(
        (w[0], w[1], v.get(i + 2)),
        (0xc2, 0x80..=0x9f, _)
            | (0xd8, 0x9c, _)
            | (0xe2, 0x80, Some(0x8e | 0x8f | 0xaa..=0xae))
            | (0xe2, 0x81, Some(0xa6..=0xa9))
    )
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
            "\u{a0}x\u{2019}\u{202f}\u{2065}\u{206a}\u{5d0}".as_bytes(),
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
            "a\u{85}b".as_bytes(),
            "a\u{9f}".as_bytes(),
            "\u{202e}nimda".as_bytes(),
            "a\u{202a}b".as_bytes(),
            "a\u{2066}b".as_bytes(),
            "a\u{61c}b".as_bytes(),
            "a\u{200e}b".as_bytes(),
            "a\u{200f}b".as_bytes(),
            "a\u{2069}".as_bytes(),
        ] {
            assert!(!is_safe_header_value(bad), "{bad:?}");
        }
    }
}

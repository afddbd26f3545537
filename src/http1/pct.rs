//! Comparing a percent-encoded query or path piece with a plain value without decoding it into
//! a buffer. `http1::query` builds the gateway's one query-string rule on it (route conditions,
//! the `api_key` policy, query transforms, log redaction); the options say whether `+` means a
//! space and whether case matters.
//!
//! Malformed escapes (`%` not followed by two hex digits) stay literal, as they are forwarded.

/// How to read the encoded side.
#[derive(Clone, Copy, Debug)]
pub struct Decoding {
    /// `application/x-www-form-urlencoded`: `+` is a space.
    pub plus_is_space: bool,
    /// Compare ASCII letters ignoring case.
    pub ignore_case: bool,
}

fn hex(b: Option<&u8>) -> Option<u8> {
    b.and_then(|&b| (b as char).to_digit(16)).map(|d| d as u8)
}

/// The byte two hex digits (either case) spell, if both are hex digits.
#[inline]
pub(super) fn hex_pair(high: Option<&u8>, low: Option<&u8>) -> Option<u8> {
    Some(hex(high)? << 4 | hex(low)?)
}

/// Whether percent-decoding `encoded` yields `want`, without allocating.
pub fn decoded_eq(encoded: &[u8], want: &[u8], how: Decoding) -> bool {
    let (mut i, mut j) = (0, 0);
    while let Some(&b) = encoded.get(i) {
        let decoded = match b {
            b'%' => match hex_pair(encoded.get(i + 1), encoded.get(i + 2)) {
                Some(v) => {
                    i += 2;
                    v
                }
                None => b'%',
            },
            b'+' if how.plus_is_space => b' ',
            b => b,
        };
        i += 1;
        let same = match want.get(j) {
            Some(w) if how.ignore_case => w.eq_ignore_ascii_case(&decoded),
            Some(&w) => w == decoded,
            None => false,
        };
        if !same {
            return false;
        }
        j += 1;
    }
    j == want.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    const FORM: Decoding = Decoding {
        plus_is_space: true,
        ignore_case: false,
    };
    const RAW: Decoding = Decoding {
        plus_is_space: false,
        ignore_case: false,
    };

    #[test]
    fn decodes_escapes_and_keeps_malformed_ones() {
        assert!(decoded_eq(b"a%5Fb", b"a_b", RAW));
        assert!(decoded_eq(b"a%5fb", b"a_b", RAW));
        assert!(decoded_eq(b"100%", b"100%", RAW));
        assert!(decoded_eq(b"%zz", b"%zz", RAW));
        assert!(!decoded_eq(b"a%5F", b"a_b", RAW));
        assert!(!decoded_eq(b"a_bc", b"a_b", RAW));
    }

    #[test]
    fn plus_and_case_follow_the_options() {
        assert!(decoded_eq(b"a+b", b"a b", FORM));
        assert!(!decoded_eq(b"a+b", b"a b", RAW));
        assert!(!decoded_eq(b"API_key", b"api_key", FORM));
        let any_case = Decoding {
            plus_is_space: true,
            ignore_case: true,
        };
        assert!(decoded_eq(b"API%5Fkey", b"api_key", any_case));
    }
}

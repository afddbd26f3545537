//! The query string, read one way everywhere: route conditions, the `api_key` policy, query
//! transforms and access-log redaction all go through this module.
//!
//! **The rule.**
//! - The query (the bytes after `?`, without `#fragment`) splits on `&`; empty elements
//!   (`&&`, a leading or trailing `&`) are no parameter at all.
//! - The first `=` separates the name from the value; `a` alone is name `a` with an empty
//!   value, and any later `=` belongs to the value (`a=b=c` is `a` → `b=c`).
//! - Names and values are percent-decoded (`%XX`, either hex case). A malformed escape (`%zz`,
//!   a trailing `%4`) stays literal, as it is forwarded.
//! - `+` is a literal `+` (RFC 3986: `+` is an ordinary sub-delimiter in a query), so a value
//!   matches `a+b` when the client sent `a+b` or `a%2Bb`, and `a b` only for `a%20b`.
//! - A lookup takes the first occurrence of a name.
//!
//! **Scrubbing reads wider.** Operations that *remove* or *hide* a parameter (transform
//! `query.remove`, the `api_key` policy stripping its key, replacing a client's copy of an
//! added parameter, log redaction) match a name under the rule above **or** with `+` read as a
//! space, the `application/x-www-form-urlencoded` reading most upstream frameworks apply
//! (WHATWG URLSearchParams, Go `url.ParseQuery`, PHP, Kong's `ngx.req.get_uri_args`). Whatever
//! the upstream makes of `+`, a parameter the gateway meant to strip never reaches it.
//!
//! Why `+` stays literal for lookups: it is what the URI syntax says, what Envoy's query
//! matchers do (percent-decoding only), and it never makes two different client strings equal
//! by guessing an encoding; nginx's `$arg_` does not decode at all, which misses `%XX` names.
//!
//! Nothing here allocates: iteration yields borrowed slices, comparison decodes on the fly
//! (`pct::decoded_eq`) and `decode_into` writes into a caller's buffer.

use super::pct::{self, Decoding};

/// The canonical reading: percent-decoding, `+` literal, case-sensitive.
const EXACT: Decoding = Decoding {
    plus_is_space: false,
    ignore_case: false,
};

/// The form reading a scrub also covers: `+` is a space.
const FORM: Decoding = Decoding {
    plus_is_space: true,
    ignore_case: false,
};

/// Iterator over a query's non-empty `&`-separated elements (`name=value` or `name`), raw.
#[derive(Clone, Debug)]
pub struct Elements<'q> {
    rest: &'q [u8],
}

/// The non-empty raw elements of `query` (the bytes after `?`), in order.
pub fn elements(query: &[u8]) -> Elements<'_> {
    Elements { rest: query }
}

impl<'q> Iterator for Elements<'q> {
    type Item = &'q [u8];

    #[inline]
    fn next(&mut self) -> Option<&'q [u8]> {
        while !self.rest.is_empty() {
            let (elem, rest) = match self.rest.iter().position(|&b| b == b'&') {
                Some(i) => (&self.rest[..i], &self.rest[i + 1..]),
                None => (self.rest, &self.rest[self.rest.len()..]),
            };
            self.rest = rest;
            if !elem.is_empty() {
                return Some(elem);
            }
        }
        None
    }
}

/// The `(raw name, raw value)` pairs of `query` (the bytes after `?`), in order.
pub fn pairs(query: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> + Clone {
    elements(query).map(split_pair)
}

/// Splits one `&`-element at its first `=` into raw name and raw value (`a` → (`a`, empty)).
#[inline]
pub fn split_pair(elem: &[u8]) -> (&[u8], &[u8]) {
    match elem.iter().position(|&b| b == b'=') {
        Some(i) => (&elem[..i], &elem[i + 1..]),
        None => (elem, &elem[elem.len()..]),
    }
}

/// Whether the raw (encoded) `raw` means `want` under the rule (percent-decoded, `+` literal).
#[inline]
pub fn decoded_is(raw: &[u8], want: &[u8]) -> bool {
    pct::decoded_eq(raw, want, EXACT)
}

/// The raw value of the first parameter whose decoded name is `name`; `None` if absent
/// (`a` alone or `a=` is present with an empty value).
pub fn get<'q>(query: Option<&'q [u8]>, name: &[u8]) -> Option<&'q [u8]> {
    pairs(query?).find_map(|(n, v)| decoded_is(n, name).then_some(v))
}

/// Whether a scrub of `name` (remove, redact) covers the raw parameter name `raw`: it means
/// `name` under the rule or with `+` read as a space.
#[inline]
pub fn scrub_covers(raw: &[u8], name: &[u8]) -> bool {
    decoded_is(raw, name) || pct::decoded_eq(raw, name, FORM)
}

/// `scrub_covers` ignoring ASCII case: for hiding secrets in logs, where a near miss is hidden
/// too.
#[inline]
pub fn scrub_covers_any_case(raw: &[u8], name: &[u8]) -> bool {
    let how = |plus_is_space| Decoding {
        plus_is_space,
        ignore_case: true,
    };
    pct::decoded_eq(raw, name, how(false)) || pct::decoded_eq(raw, name, how(true))
}

/// Percent-decodes `raw` under the rule into `buf`, returning the decoded bytes, or `None` if
/// they do not fit.
pub fn decode_into<'b>(raw: &[u8], buf: &'b mut [u8]) -> Option<&'b [u8]> {
    let mut n = 0;
    let mut i = 0;
    while let Some(&b) = raw.get(i) {
        let byte = match (b, pct::hex_pair(raw.get(i + 1), raw.get(i + 2))) {
            (b'%', Some(v)) => {
                i += 2;
                v
            }
            (b, _) => b,
        };
        i += 1;
        *buf.get_mut(n)? = byte;
        n += 1;
    }
    Some(&buf[..n])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pairs of `q` as `name|value` strings.
    fn all(q: &str) -> Vec<String> {
        pairs(q.as_bytes())
            .map(|(n, v)| {
                format!(
                    "{}|{}",
                    String::from_utf8_lossy(n),
                    String::from_utf8_lossy(v)
                )
            })
            .collect()
    }

    fn get_str<'q>(q: &'q str, name: &str) -> Option<&'q str> {
        get(Some(q.as_bytes()), name.as_bytes()).map(|v| std::str::from_utf8(v).unwrap_or("?"))
    }

    fn decode(raw: &str) -> String {
        let mut buf = [0u8; 32];
        let out = decode_into(raw.as_bytes(), &mut buf).unwrap_or(b"<overflow>");
        String::from_utf8_lossy(out).into_owned()
    }

    #[test]
    fn splits_on_ampersand_and_first_equals() {
        assert_eq!(all("a=1&b=2"), ["a|1", "b|2"]);
        assert_eq!(all("a=b=c"), ["a|b=c"]);
        assert_eq!(all("a=&b&=v"), ["a|", "b|", "|v"]);
        assert_eq!(all("&&a=1&&&b&"), ["a|1", "b|"]);
        assert!(all("").is_empty());
        assert!(all("&").is_empty());
    }

    #[test]
    fn empty_values_are_present() {
        assert_eq!(get_str("a=", "a"), Some(""));
        assert_eq!(get_str("a", "a"), Some(""));
        assert_eq!(get_str("x=1&&a&&", "a"), Some(""));
        assert_eq!(get_str("&&", "a"), None);
        assert_eq!(get_str("ab=1&xa=2", "a"), None);
        assert_eq!(get(None, b"a"), None);
    }

    #[test]
    fn lookup_by_name() {
        assert_eq!(get_str("a=1&api_key=xyz&b", "api_key"), Some("xyz"));
        assert_eq!(get_str("b&a", "b"), Some(""));
        assert_eq!(get_str("xapi_key=1", "api_key"), None);
        assert_eq!(get(None, b"a"), None);
    }

    #[test]
    fn repeated_keys_first_wins() {
        assert_eq!(get_str("a=1&b=2&a=3", "a"), Some("1"));
        assert_eq!(get_str("a&a=3", "a"), Some(""));
        assert_eq!(get_str("%61=1&a=2", "a"), Some("1"));
    }

    #[test]
    fn names_and_values_are_percent_decoded() {
        assert_eq!(get_str("na%20me=v", "na me"), Some("v"));
        assert_eq!(get_str("api%5fkey=k", "api_key"), Some("k"));
        assert!(decoded_is(b"a%20b", b"a b"));
        assert!(decoded_is(b"a%2Fb", b"a/b"));
        assert!(decoded_is(b"a=b", b"a=b"));
        assert_eq!(decode("x%3Dy%26z"), "x=y&z");
    }

    #[test]
    fn plus_is_literal_for_lookups() {
        assert!(decoded_is(b"a+b", b"a+b"));
        assert!(decoded_is(b"a%2Bb", b"a+b"));
        assert!(decoded_is(b"a%2bb", b"a+b"));
        assert!(!decoded_is(b"a+b", b"a b"));
        assert!(!decoded_is(b"a%20b", b"a+b"));
        assert_eq!(get_str("na+me=v", "na me"), None);
        assert_eq!(get_str("na+me=v", "na+me"), Some("v"));
        assert_eq!(decode("a+b%2B"), "a+b+");
    }

    #[test]
    fn scrubs_cover_both_readings_of_plus() {
        assert!(scrub_covers(b"a+b", b"a b"));
        assert!(scrub_covers(b"a+b", b"a+b"));
        assert!(scrub_covers(b"a%20b", b"a b"));
        assert!(scrub_covers(b"a%2Bb", b"a+b"));
        assert!(!scrub_covers(b"a%2Bb", b"a b"));
        assert!(!scrub_covers(b"API_KEY", b"api_key"));
        assert!(scrub_covers_any_case(b"API%5Fkey", b"api_key"));
        assert!(scrub_covers_any_case(b"Api+Key", b"api key"));
        assert!(!scrub_covers_any_case(b"api_keyx", b"api_key"));
    }

    #[test]
    fn malformed_escapes_stay_literal() {
        assert!(decoded_is(b"%zz", b"%zz"));
        assert!(decoded_is(b"%4", b"%4"));
        assert!(decoded_is(b"a%", b"a%"));
        assert!(decoded_is(b"%zz%4", b"%zz%4"));
        assert!(!decoded_is(b"%4", b"\x04"));
        assert_eq!(decode("%zz%4"), "%zz%4");
        assert_eq!(decode("%%41"), "%A");
        assert_eq!(get_str("%zz=1", "%zz"), Some("1"));
    }

    #[test]
    fn decode_into_reports_overflow() {
        let mut buf = [0u8; 3];
        assert_eq!(decode_into(b"a%41b", &mut buf), Some(&b"aAb"[..]));
        assert_eq!(decode_into(b"abcd", &mut buf), None);
        assert_eq!(decode_into(b"", &mut buf), Some(&b""[..]));
    }
}

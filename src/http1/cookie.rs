//! Reading one cookie out of a `Cookie` header (RFC 6265 §5.4 shape: `name=value` pairs
//! separated by `;`), for route conditions and balancing keys.
//!
//! Hostile input is expected: any number of crumbs (bounded by the head size limit), crumbs
//! without `=` (skipped), empty names, huge values, stray whitespace. One linear pass, no
//! allocation; the first crumb with the name decides (`values` lists them all). Names compare byte for byte (cookie
//! names are case-sensitive); one pair of surrounding double quotes is taken off the value.

/// The value of cookie `name` in one `Cookie` header value, if present.
pub fn find<'a>(header: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    values(header, name).next()
}

/// Every value of cookie `name` in one `Cookie` header value, in order (a client may send a
/// name twice; readers that must not pick one over the other count them).
pub fn values<'a: 'n, 'n>(header: &'a [u8], name: &'n [u8]) -> impl Iterator<Item = &'a [u8]> + 'n {
    header
        .split(|&b| b == b';')
        .filter(move |_| !name.is_empty())
        .filter_map(move |crumb| {
            let eq = crumb.iter().position(|&b| b == b'=')?;
            let (n, v) = (crumb[..eq].trim_ascii(), crumb[eq + 1..].trim_ascii());
            (n == name).then(|| unquote(v))
        })
}

/// Every value some backend's cookie parser may read as cookie `name`, for checks that must
/// see each one (OpenAPI cookie parameters): the crumbs `values` finds, crumbs whose name is
/// `name` once percent-decoded (PHP decodes cookie names: `s%69d` is `$_COOKIE['sid']`), and
/// `name=value` pieces after a `,` inside a crumb (RFC 2109's separator, which Python's
/// `http.cookies` still splits on: `x=1, sid=ABC` is two cookies there).
pub fn lenient_values<'a: 'n, 'n>(
    header: &'a [u8],
    name: &'n [u8],
) -> impl Iterator<Item = &'a [u8]> + 'n {
    let plain = super::pct::Decoding {
        plus_is_space: false,
        ignore_case: false,
    };
    header
        .split(|&b| b == b';')
        .filter(move |_| !name.is_empty())
        .flat_map(move |crumb| {
            let eq = crumb.iter().position(|&b| b == b'=');
            let whole = eq.and_then(|eq| {
                let (n, v) = (crumb[..eq].trim_ascii(), crumb[eq + 1..].trim_ascii());
                super::pct::decoded_eq(n, name, plain).then(|| unquote(v))
            });
            // Pieces after a comma that read as `name=value` on their own.
            let hidden = crumb
                .split(|&b| b == b',')
                .skip(1)
                .filter_map(move |piece| {
                    let eq = piece.iter().position(|&b| b == b'=')?;
                    let (n, v) = (piece[..eq].trim_ascii(), piece[eq + 1..].trim_ascii());
                    super::pct::decoded_eq(n, name, plain).then(|| unquote(v))
                });
            whole.into_iter().chain(hidden)
        })
}

fn unquote(v: &[u8]) -> &[u8] {
    match v {
        [b'"', inner @ .., b'"'] => inner,
        _ => v,
    }
}

#[cfg(test)]
mod tests {
    use super::{find, lenient_values};

    #[test]
    fn lenient_values_see_what_other_parsers_read() {
        let all = |h: &'static [u8], n: &'static [u8]| lenient_values(h, n).collect::<Vec<_>>();
        assert_eq!(all(b"a=1; sid=ab", b"sid"), [&b"ab"[..]]);
        assert_eq!(all(b"x=1, sid=ABC", b"sid"), [&b"ABC"[..]]);
        assert_eq!(all(b"s%69d=ABC", b"sid"), [&b"ABC"[..]]);
        assert_eq!(all(b"sid=a; x=1, sid=b", b"sid"), [&b"a"[..], b"b"]);
        // An array value's commas name nothing.
        assert_eq!(all(b"ids=1,2,3", b"ids"), [&b"1,2,3"[..]]);
        assert!(all(b"ids=1,2,3", b"2").is_empty());
    }

    #[test]
    fn finds_the_named_cookie() {
        let h = b"a=1; beta=yes;c=\"q\" ; empty=";
        assert_eq!(find(h, b"beta"), Some(&b"yes"[..]));
        assert_eq!(find(h, b"a"), Some(&b"1"[..]));
        assert_eq!(find(h, b"c"), Some(&b"q"[..]));
        assert_eq!(find(h, b"empty"), Some(&b""[..]));
        assert_eq!(find(h, b"Beta"), None, "names are case-sensitive");
        assert_eq!(find(h, b"bet"), None);
        assert_eq!(
            find(b"x=1; x=2", b"x"),
            Some(&b"1"[..]),
            "first one decides"
        );
        assert_eq!(find(b"a=b=c", b"a"), Some(&b"b=c"[..]));
    }

    #[test]
    fn hostile_headers_are_harmless() {
        assert_eq!(find(b"", b"a"), None);
        assert_eq!(find(b";;;;", b"a"), None);
        assert_eq!(
            find(b"beta; beta", b"beta"),
            None,
            "crumbs without '=' are skipped"
        );
        assert_eq!(find(b"=1; a=2", b""), None);
        assert_eq!(find(b"\"", b"a"), None);
        assert_eq!(find(b"a=\"", b"a"), Some(&b"\""[..]));
        let mut many = b"x=1;".repeat(4000);
        many.extend_from_slice(b"beta=1");
        assert_eq!(find(&many, b"beta"), Some(&b"1"[..]));
        let huge = [b"beta=".as_slice(), &vec![b'v'; 1 << 20]].concat();
        assert_eq!(find(&huge, b"beta").map(<[u8]>::len), Some(1 << 20));
        assert_eq!(find(&[0xff, b'=', 0x00, b';'], &[0xff]), Some(&[0u8][..]));
    }
}

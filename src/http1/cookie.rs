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

fn unquote(v: &[u8]) -> &[u8] {
    match v {
        [b'"', inner @ .., b'"'] => inner,
        _ => v,
    }
}

#[cfg(test)]
mod tests {
    use super::find;

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

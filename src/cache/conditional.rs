//! Conditional requests against a stored response (RFC 9110 13): `If-None-Match` (weak
//! comparison, lists, `*`) and, only when it is absent, `If-Modified-Since` against the stored
//! `Last-Modified`; the 304 built from a stored response; and the stored response refreshed
//! by an upstream 304 (RFC 9111 4.3.4).

use crate::http1::{RequestHead, ResponseHead};

use super::control::parse_http_date;
use super::object::{field_lines, Object};

/// Most entity-tags read from one `If-None-Match` (the rest are ignored: no match).
const MAX_TAGS: usize = 64;

/// The entity-tags of an `If-None-Match` value (each as written, `W/` included); `None` for
/// `*`. Commas inside a quoted opaque-tag do not split.
fn entity_tags<'a>(v: &'a [u8], out: &mut Vec<&'a [u8]>) -> bool {
    let mut rest = v.trim_ascii();
    while !rest.is_empty() && out.len() < MAX_TAGS {
        rest = rest.trim_ascii_start();
        if rest.first() == Some(&b',') {
            rest = &rest[1..];
            continue;
        }
        if rest.first() == Some(&b'*') {
            return true;
        }
        let start = usize::from(rest.starts_with(b"W/")) * 2;
        // The opaque-tag: from its opening quote to the next quote.
        let end = match rest.get(start) {
            Some(b'"') => rest[start + 1..]
                .iter()
                .position(|&b| b == b'"')
                .map(|i| start + i + 2),
            _ => None,
        };
        match end {
            Some(end) => {
                out.push(&rest[..end]);
                rest = &rest[end..];
            }
            None => {
                // Not an entity-tag: skip to the next comma.
                let next = rest.iter().position(|&b| b == b',').unwrap_or(rest.len());
                rest = &rest[next..];
            }
        }
    }
    false
}

/// Weak comparison (RFC 9110 8.8.3.2): the opaque-tags match, `W/` ignored.
pub fn weak_match(a: &[u8], b: &[u8]) -> bool {
    let strip = |t: &[u8]| -> Vec<u8> {
        let t = t.trim_ascii();
        t.strip_prefix(b"W/").unwrap_or(t).to_vec()
    };
    let (a, b) = (strip(a), strip(b));
    a.len() >= 2 && a.starts_with(b"\"") && a.ends_with(b"\"") && a == b
}

/// Whether the client's conditional request is satisfied by `obj` (answer 304). Only a 2xx
/// stored response is a selected representation a 304 can stand for.
pub fn not_modified(head: &RequestHead, obj: &Object) -> bool {
    if !(200..300).contains(&obj.status) {
        return false;
    }
    let mut inm = head
        .headers()
        .filter(|(n, _)| n.eq_ignore_ascii_case(b"if-none-match"))
        .peekable();
    if inm.peek().is_some() {
        let mut tags = Vec::new();
        for (_, v) in inm {
            if entity_tags(v, &mut tags) {
                // `*`: any current representation matches.
                return true;
            }
        }
        let Some(etag) = &obj.etag else { return false };
        return tags.iter().any(|t| weak_match(t, etag));
    }
    // If-Modified-Since counts only without If-None-Match (RFC 9110 13.2.2).
    let Some(ims) = head.header("if-modified-since").and_then(parse_http_date) else {
        return false;
    };
    let Some(lm) = obj.last_modified.as_deref().and_then(parse_http_date) else {
        return false;
    };
    lm <= ims
}

/// The field lines a 304 from the cache carries, taken from `obj`'s (RFC 9110 15.4.5:
/// Cache-Control, Content-Location, Date, ETag, Expires, Vary, plus Last-Modified).
pub fn not_modified_fields(obj: &Object, out: &mut Vec<u8>) {
    not_modified_lines(&obj.fields, out);
}

/// The field lines of `fields` a 304 carries (those `not_modified_fields` keeps).
pub fn not_modified_lines(fields: &[u8], out: &mut Vec<u8>) {
    const KEEP: &[&[u8]] = &[
        b"cache-control",
        b"content-location",
        b"date",
        b"etag",
        b"expires",
        b"vary",
        b"last-modified",
    ];
    for (n, v) in field_lines(fields) {
        if KEEP.iter().any(|k| n.eq_ignore_ascii_case(k)) {
            crate::http1::write_header(out, n, v);
        }
    }
}

/// Fields an upstream 304 never changes in a stored response: framing and the content coding
/// describe the stored body bytes (RFC 9111 3.2), `Vary` decides which variant it is, `Age`
/// is the gateway's to compute, and hop-by-hop fields were never stored.
fn kept_from_store(name: &[u8]) -> bool {
    const KEEP: &[&[u8]] = &[
        b"content-length",
        b"content-encoding",
        b"transfer-encoding",
        b"content-range",
        b"vary",
        b"age",
        // A shared cache never stores a cookie, not even one a 304 carries.
        b"set-cookie",
    ];
    KEEP.iter().any(|k| name.eq_ignore_ascii_case(k)) || crate::http1::is_hop_by_hop(name)
}

/// Whether an upstream 304 may update the stored response with `stored_etag` (RFC 9111
/// 4.3.4): a 304 whose `ETag` the stored one does not match (weakly) names another
/// representation, and must not relabel this one's body with its validator. A 304 without an
/// `ETag`, or a stored response without one, updates as before.
pub fn updates_stored(stored_etag: Option<&[u8]>, resp: &ResponseHead) -> bool {
    match (stored_etag, resp.header("etag")) {
        (Some(old), Some(new)) => weak_match(old, new),
        _ => true,
    }
}

/// `stored` field lines updated with the fields of an upstream 304 (RFC 9111 4.3.4): each field
/// the 304 carries replaces the stored ones of that name, except framing fields. An `ETag`
/// the stored one matches weakly is kept as stored (a compressed variant's weakened tag
/// stays weak).
pub fn refresh_fields(stored: &[u8], resp: &ResponseHead, out: &mut Vec<u8>) {
    let conn_named = resp.header("connection").is_some();
    let stored_etag = super::object::field(stored, b"etag");
    let updates = |n: &[u8]| -> bool {
        if kept_from_store(n)
            || (conn_named && crate::http1::named_in_connection(resp.headers(), n))
        {
            return false;
        }
        if n.eq_ignore_ascii_case(b"etag") {
            if let (Some(old), Some(new)) = (stored_etag, resp.header("etag")) {
                return !weak_match(old, new);
            }
        }
        true
    };
    let replaced = |n: &[u8]| {
        resp.headers()
            .any(|(r, _)| r.eq_ignore_ascii_case(n) && updates(r))
    };
    for (n, v) in field_lines(stored) {
        if !replaced(n) {
            crate::http1::write_header(out, n, v);
        }
    }
    for (n, v) in resp.headers() {
        if updates(n) {
            crate::http1::write_header(out, n, v.trim_ascii());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn obj(fields: &str) -> Object {
        let f = |n: &[u8]| super::super::object::field(fields.as_bytes(), n).map(Box::<[u8]>::from);
        Object {
            status: 200,
            etag: f(b"etag"),
            last_modified: f(b"last-modified"),
            fields: fields.as_bytes().into(),
            body: bytes::Bytes::new(),
            stored_at: Instant::now(),
            initial_age: Duration::ZERO,
            fresh_for: Duration::from_secs(1),
            stale_while_revalidate: Duration::ZERO,
            stale_if_error: Duration::ZERO,
            must_revalidate: false,
            no_cache: false,
            tags: Box::default(),
            resource: Box::default(),
        }
    }

    fn req(lines: &str) -> RequestHead {
        let raw = format!("GET / HTTP/1.1\r\nhost: a\r\n{lines}\r\n");
        match crate::http1::parse_request_head(raw.as_bytes(), &Default::default()) {
            Ok(Some((h, _))) => h,
            other => panic!("parse: {other:?}"),
        }
    }

    #[test]
    fn if_none_match_weak_lists_and_star() {
        let o = obj("etag: W/\"v1\"\r\nlast-modified: Sun, 06 Nov 1994 08:49:37 GMT\r\n");
        assert!(not_modified(&req("if-none-match: \"v1\"\r\n"), &o));
        assert!(not_modified(&req("if-none-match: \"x\", W/\"v1\"\r\n"), &o));
        assert!(not_modified(
            &req("if-none-match: \"x\"\r\nif-none-match: \"v1\"\r\n"),
            &o
        ));
        assert!(not_modified(&req("if-none-match: *\r\n"), &o));
        assert!(!not_modified(&req("if-none-match: \"v2\"\r\n"), &o));
        assert!(
            !not_modified(&req("if-none-match: v1\r\n"), &o),
            "unquoted is no tag"
        );
        assert!(!not_modified(&req("if-none-match: \"v1\r\n"), &o));
        // If-None-Match present: If-Modified-Since is ignored even though it would match.
        assert!(!not_modified(
            &req("if-none-match: \"v2\"\r\nif-modified-since: Sun, 06 Nov 1994 08:49:37 GMT\r\n"),
            &o
        ));
        let commas = obj("etag: \"a,b\"\r\n");
        assert!(not_modified(
            &req("if-none-match: \"x\", \"a,b\"\r\n"),
            &commas
        ));
        let mut not_ok = obj("etag: \"v1\"\r\n");
        not_ok.status = 404;
        assert!(!not_modified(&req("if-none-match: \"v1\"\r\n"), &not_ok));
    }

    #[test]
    fn if_modified_since_compares_dates() {
        let o = obj("last-modified: Sun, 06 Nov 1994 08:49:37 GMT\r\n");
        assert!(not_modified(
            &req("if-modified-since: Sun, 06 Nov 1994 08:49:37 GMT\r\n"),
            &o
        ));
        assert!(not_modified(
            &req("if-modified-since: Mon, 07 Nov 1994 08:49:37 GMT\r\n"),
            &o
        ));
        assert!(!not_modified(
            &req("if-modified-since: Sat, 05 Nov 1994 08:49:37 GMT\r\n"),
            &o
        ));
        assert!(!not_modified(&req("if-modified-since: garbage\r\n"), &o));
        assert!(!not_modified(
            &req("if-modified-since: Mon, 07 Nov 1994 08:49:37 GMT\r\n"),
            &obj("x: y\r\n")
        ));
    }

    #[test]
    fn refresh_replaces_but_keeps_framing_and_weak_tags() {
        let stored = b"content-type: text/plain\r\ncache-control: max-age=1\r\ncontent-encoding: gzip\r\nvary: accept-encoding\r\netag: W/\"v1\"\r\nx-a: 1\r\nx-a: 2\r\n";
        let raw = b"HTTP/1.1 304 Not Modified\r\ncache-control: max-age=9\r\ncontent-encoding: br\r\ncontent-length: 5\r\netag: \"v1\"\r\nx-a: 3\r\nconnection: x-hop\r\nx-hop: 1\r\nvary: origin\r\n\r\n";
        let (resp, _) =
            match crate::http1::parse_response_head(raw, 8192, 100, crate::http1::Method::Get) {
                Ok(Some(r)) => r,
                other => panic!("{other:?}"),
            };
        let mut out = Vec::new();
        refresh_fields(stored, &resp, &mut out);
        let text = String::from_utf8(out).expect("utf8");
        assert!(text.contains("cache-control: max-age=9"), "{text}");
        assert!(!text.contains("max-age=1"), "{text}");
        assert!(
            text.contains("content-encoding: gzip") && !text.contains("br"),
            "{text}"
        );
        assert!(
            text.contains("vary: accept-encoding") && !text.contains("origin"),
            "{text}"
        );
        assert!(
            text.contains("etag: W/\"v1\"") && !text.contains("etag: \"v1\""),
            "{text}"
        );
        assert!(
            !text.contains("content-length") && !text.contains("x-hop"),
            "{text}"
        );
        assert!(
            text.contains("x-a: 3") && !text.contains("x-a: 1"),
            "{text}"
        );
        assert!(text.contains("content-type: text/plain"), "{text}");
    }
}

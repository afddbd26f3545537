//! Response compression: the `compress` policy a route lists (`policy`), the coding chosen
//! from `Accept-Encoding` (`negotiate`), whether a response is compressed and how its head
//! changes (`applies`, `varies`, `rewrite_fields`, `add_vary`), and the streaming encoders
//! (`encoder`).
//!
//! The forward phase wraps the client's wire in `exchange::shape::Shaped`, which runs the
//! encoder between the upstream's body and the wire (and the cache's recorder after it, so a
//! stored variant is the compressed one).
//!
//! What is never compressed: 1xx/204/304 (no body), 206 and anything with `Content-Range` (a
//! range of the identity bytes), a response that already has a content coding (passed through
//! byte for byte), `Cache-Control: no-transform`, types outside the policy's list, and bodies
//! whose known length is under `min_bytes`. The answer to HEAD gets the head GET would get.
//! Request bodies are never decompressed (out of scope: no policy reads request content).

pub mod encoder;
pub mod negotiate;
pub mod policy;

pub use encoder::Encoder;
use negotiate::has_token;
pub use negotiate::{negotiate, Coding};
pub use policy::{CompressPolicy, RawCompress};

use crate::http1::{BodyFraming, ResponseHead};

/// Whether the response to this request is compressed with `coding` (already negotiated, not
/// `Identity`): a status with a body (not 206 or 304), no `Content-Encoding` already, no
/// `Cache-Control: no-transform`, a compressible `Content-Type`, and a known length at least
/// `min_bytes` (an unknown length counts as large enough).
pub fn applies(policy: &CompressPolicy, coding: Coding, resp: &ResponseHead) -> bool {
    coding != Coding::Identity
        && policy.rank(coding).is_some()
        && resp.status != 206
        && resp.status != 304
        && varies(policy, resp)
}

/// Whether `resp` may be compressed at all by the route's policy, so its fields get
/// `Vary: Accept-Encoding` whichever coding this client asked for: a compressible type, not
/// already encoded, transformable, and not known to be too short.
pub fn varies(policy: &CompressPolicy, resp: &ResponseHead) -> bool {
    if resp.status < 200 || resp.status == 204 {
        return false;
    }
    let mut typed = false;
    for (name, value) in resp.headers() {
        if name.eq_ignore_ascii_case(b"content-encoding") {
            if !value.trim_ascii().eq_ignore_ascii_case(b"identity") {
                return false;
            }
        } else if name.eq_ignore_ascii_case(b"content-range") {
            return false;
        } else if name.eq_ignore_ascii_case(b"cache-control") {
            if has_token(value, b"no-transform") {
                return false;
            }
        } else if name.eq_ignore_ascii_case(b"content-type") {
            // A second Content-Type makes the type unknown.
            if typed {
                return false;
            }
            typed = policy.compressible(value);
            if !typed {
                return false;
            }
        }
    }
    if !typed {
        return false;
    }
    match known_length(resp) {
        Some(n) => n > 0 && n >= policy.min_bytes,
        None => true,
    }
}

/// Whether the upstream encoded the body itself (a `Content-Encoding` other than `identity`).
/// On a compressing route such an answer still depends on `Accept-Encoding` (the gateway, or
/// the client, asked for a coding), so it gets `Vary: Accept-Encoding` even when the upstream
/// did not say so (nginx's `gzip_vary off`, its default): caches behind the gateway, and the
/// gateway's own, must not hand those bytes to a client that did not ask for them.
pub fn encoded_upstream(resp: &ResponseHead) -> bool {
    resp.headers().any(|(name, value)| {
        name.eq_ignore_ascii_case(b"content-encoding")
            && !value.trim_ascii().eq_ignore_ascii_case(b"identity")
    })
}

/// The body's length as the upstream announced it: from the framing, or (answer to HEAD,
/// which has none) from its `Content-Length`.
fn known_length(resp: &ResponseHead) -> Option<u64> {
    match resp.body {
        BodyFraming::Length(n) => Some(n),
        BodyFraming::Chunked | BodyFraming::CloseDelimited => None,
        BodyFraming::None => {
            let v = resp.header("content-length")?.trim_ascii();
            if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
                return None;
            }
            Some(v.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0')))
        }
    }
}

/// Splits a `name: value\r\n` line into its name and trimmed value.
fn split_line(line: &[u8]) -> (&[u8], &[u8]) {
    match line.iter().position(|&b| b == b':') {
        Some(c) => (&line[..c], line[c + 1..].trim_ascii()),
        None => (line, &[][..]),
    }
}

/// The field lines of `fields`, each with its CRLF.
fn lines(fields: &[u8]) -> impl Iterator<Item = &[u8]> {
    fields
        .split_inclusive(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
}

/// The client's field lines for a response compressed with `coding`: `Content-Length`
/// dropped, `Content-Encoding: coding` added, a strong `ETag` made weak. `Vary` is handled by
/// `add_vary`.
///
/// Also dropped: `Accept-Ranges` (ranges of the compressed bytes are not offered; a Range
/// request gets the identity bytes' 206 from the upstream) and digests of the content
/// (`Content-MD5`, `Content-Digest`, `Repr-Digest`), which no longer hold.
pub fn rewrite_fields(coding: Coding, fields: &[u8], out: &mut Vec<u8>) {
    for line in lines(fields) {
        let (name, value) = split_line(line);
        let drop = [
            &b"content-length"[..],
            b"content-encoding",
            b"accept-ranges",
        ]
        .iter()
        .any(|d| name.eq_ignore_ascii_case(d));
        if drop || is_digest(name) {
            continue;
        }
        // The compressed bytes are a different representation: a strong validator of the
        // identity bytes must not validate them (RFC 9110 8.8.3); weak still matches.
        if !push_weakened_etag(name, value, out) {
            out.extend_from_slice(line);
        }
    }
    crate::http1::write_header(out, b"content-encoding", coding.token().as_bytes());
}

/// The client's field lines for a 304 the upstream sent on a compressing route, to a client
/// that negotiated a coding: its 200 would have been compressed with a weak `ETag` and no
/// `Content-Length` (`rewrite_fields`), and a 304 must carry the validator the 200 would have
/// (RFC 9110 §15.4.5), or the client's cache would give its compressed copy a strong one.
/// Weakening is safe when the 200 would have stayed identity too: weak comparison still
/// matches, so caches update the stored answer either way.
pub fn not_modified_fields(fields: &[u8], out: &mut Vec<u8>) {
    for line in lines(fields) {
        let (name, value) = split_line(line);
        if name.eq_ignore_ascii_case(b"content-length") {
            continue;
        }
        if !push_weakened_etag(name, value, out) {
            out.extend_from_slice(line);
        }
    }
}

/// For a strong `ETag` field, writes its weak form (`W/"..."`) and says so; any other field
/// is left to the caller.
fn push_weakened_etag(name: &[u8], value: &[u8], out: &mut Vec<u8>) -> bool {
    if !name.eq_ignore_ascii_case(b"etag") || value.first() != Some(&b'"') {
        return false;
    }
    out.extend_from_slice(name);
    out.extend_from_slice(b": W/");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
    true
}

/// Digests of the content, which no longer hold once the gateway compresses it.
fn is_digest(name: &[u8]) -> bool {
    [&b"content-md5"[..], b"content-digest", b"repr-digest"]
        .iter()
        .any(|d| name.eq_ignore_ascii_case(d))
}

/// Trailer field lines of a response the gateway compressed: the upstream's digests of the
/// content it sent (`Content-Digest`, `Repr-Digest`, `Content-MD5`) are dropped, as in the
/// head (`rewrite_fields`), since they describe bytes the client never gets.
pub fn rewrite_trailers(fields: &[u8], out: &mut Vec<u8>) {
    for line in lines(fields) {
        if !is_digest(split_line(line).0) {
            out.extend_from_slice(line);
        }
    }
}

/// Adds `accept-encoding` to the `Vary` among `fields` (merging into an existing `Vary` line,
/// or adding one); leaves `Vary: *` alone.
pub fn add_vary(fields: &[u8], out: &mut Vec<u8>) {
    let mut has_vary = false;
    for line in lines(fields) {
        let (name, value) = split_line(line);
        if name.eq_ignore_ascii_case(b"vary") {
            has_vary = true;
            if has_token(value, b"*") || has_token(value, b"accept-encoding") {
                out.extend_from_slice(fields);
                return;
            }
        }
    }
    if !has_vary {
        out.extend_from_slice(fields);
        crate::http1::write_header(out, b"vary", b"accept-encoding");
        return;
    }
    let mut merged = false;
    for line in lines(fields) {
        let (name, value) = split_line(line);
        if !merged && name.eq_ignore_ascii_case(b"vary") {
            merged = true;
            out.extend_from_slice(name);
            out.extend_from_slice(b": ");
            if !value.is_empty() {
                out.extend_from_slice(value);
                out.extend_from_slice(b", ");
            }
            out.extend_from_slice(b"accept-encoding\r\n");
            continue;
        }
        out.extend_from_slice(line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(status: u16, fields: &str, body: BodyFraming) -> ResponseHead {
        let raw = format!("HTTP/1.1 {status} X\r\n{fields}\r\n");
        let mut h = crate::http1::parse_response_head(
            raw.as_bytes(),
            16 * 1024,
            100,
            crate::http1::Method::Get,
        )
        .expect("valid")
        .expect("complete")
        .0;
        h.body = body;
        h
    }

    #[test]
    fn applies_only_where_it_should() {
        let p = CompressPolicy::default();
        let gz = Coding::Gzip;
        let json = "content-type: application/json; charset=utf-8\r\n";
        let yes = |s, f: &str, b| applies(&p, gz, &head(s, f, b));
        let big = BodyFraming::Length(5000);
        assert!(yes(200, json, big));
        assert!(yes(404, json, big));
        assert!(yes(200, json, BodyFraming::Chunked));
        assert!(!applies(&p, Coding::Identity, &head(200, json, big)));
        assert!(!yes(200, json, BodyFraming::Length(100)));
        assert!(!yes(200, json, BodyFraming::Length(0)));
        assert!(!yes(206, json, big));
        assert!(!yes(304, json, BodyFraming::None));
        assert!(!yes(204, json, BodyFraming::None));
        assert!(!yes(200, "content-type: image/png\r\n", big));
        assert!(!yes(200, "", big));
        assert!(!yes(200, &format!("{json}content-encoding: gzip\r\n"), big));
        assert!(!yes(200, &format!("{json}content-encoding: br\r\n"), big));
        assert!(yes(
            200,
            &format!("{json}content-encoding: identity\r\n"),
            big
        ));
        assert!(!yes(
            200,
            &format!("{json}cache-control: public, No-Transform\r\n"),
            big
        ));
        assert!(!yes(
            200,
            &format!("{json}content-range: bytes 0-9/5000\r\n"),
            big
        ));
        assert!(!yes(
            200,
            &format!("{json}content-type: image/png\r\n"),
            big
        ));
        // HEAD: no framing, the length from the field.
        assert!(yes(
            200,
            &format!("{json}content-length: 5000\r\n"),
            BodyFraming::None
        ));
        assert!(!yes(
            200,
            &format!("{json}content-length: 10\r\n"),
            BodyFraming::None
        ));
        // Varies whichever coding, even on the answers it does not compress.
        assert!(varies(&p, &head(206, json, big)));
        assert!(!varies(&p, &head(200, "content-type: image/png\r\n", big)));
    }

    #[test]
    fn rewrite() {
        let mut out = Vec::new();
        rewrite_fields(
            Coding::Brotli,
            b"Content-Type: text/html\r\nContent-Length: 5000\r\nETag: \"abc\"\r\nAccept-Ranges: bytes\r\nX-A: 1\r\n",
            &mut out,
        );
        assert_eq!(
            String::from_utf8_lossy(&out),
            "Content-Type: text/html\r\nETag: W/\"abc\"\r\nX-A: 1\r\ncontent-encoding: br\r\n"
        );
        out.clear();
        rewrite_fields(Coding::Gzip, b"etag: W/\"x\"\r\n", &mut out);
        assert_eq!(
            String::from_utf8_lossy(&out),
            "etag: W/\"x\"\r\ncontent-encoding: gzip\r\n"
        );
    }

    #[test]
    fn vary_merges() {
        let run = |f: &str| {
            let mut out = Vec::new();
            add_vary(f.as_bytes(), &mut out);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(run("a: 1\r\n"), "a: 1\r\nvary: accept-encoding\r\n");
        assert_eq!(
            run("Vary: Origin\r\na: 1\r\nvary: x\r\n"),
            "Vary: Origin, accept-encoding\r\na: 1\r\nvary: x\r\n"
        );
        assert_eq!(
            run("vary: x\r\nVary: Accept-Encoding\r\n"),
            "vary: x\r\nVary: Accept-Encoding\r\n"
        );
        assert_eq!(run("vary: *\r\n"), "vary: *\r\n");
        assert_eq!(run("vary: \r\n"), "vary: accept-encoding\r\n");
    }
}

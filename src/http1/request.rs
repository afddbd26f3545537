//! Request heads: [`RequestHead`] and [`parse_request_head`], with the request-only rules on top
//! of the shared header scan: early 414/505 on the request line, the request-target (its syntax
//! lives in `target`; CONNECT is 501), Host (exactly one in HTTP/1.1, at most one in HTTP/1.0,
//! a plausible authority), at most one `Authorization` and one `Proxy-Authorization`, and
//! request body framing.
//!
//! Invariants: a returned head passed every smuggling rule (no Content-Length together with
//! Transfer-Encoding, `chunked` last and only once, no Transfer-Encoding in HTTP/1.0) and owns a
//! copy of its bytes; the absolute-form authority wins over the Host header for routing.

use std::mem::MaybeUninit;

use super::head::{
    check_line_endings, header_slot_count, incomplete, map_parse_error, scan_headers,
    skip_empty_lines, span_of, unsupported_version, HeaderScan, STACK_HEADER_SLOTS,
};
use super::target::{
    classify_target, split_query, strip_port, sub_span, valid_authority, TargetForm,
};
use super::types::{BodyFraming, HeadError, HeaderSpan, Limits, Method, Span, Version};

/// A validated request head. Owns a copy of the head bytes.
#[derive(Clone, Debug)]
pub struct RequestHead {
    pub buf: Vec<u8>,
    pub method: Method,
    /// The method token as sent (needed to forward extension methods).
    pub method_span: Span,
    /// The raw request-target.
    pub target: Span,
    /// Path part of the target (origin-form, or the path of an absolute-form target; `*` for
    /// asterisk-form). An absolute-form target without a path (`http://host` or
    /// `http://host?q`) yields a zero-length span: callers treat an empty path as "/".
    pub path: Span,
    /// Query string without the leading '?', if any.
    pub query: Option<Span>,
    pub version: Version,
    pub headers: Vec<HeaderSpan>,
    /// Host to route on: the authority of an absolute-form target, else the Host header value.
    /// Raw bytes as sent (may include a port); see `host_for_routing`.
    pub host: Span,
    pub body: BodyFraming,
    /// True when the client asked to close after this exchange (Connection: close, or HTTP/1.0
    /// without Connection: keep-alive).
    pub close: bool,
    /// `Connection: upgrade` with an `Upgrade` header present.
    pub upgrade: bool,
    /// `Expect: 100-continue` present (other expectations are rejected by the proxy with 417).
    pub expect_continue: bool,
    /// An `Expect` header with a value other than 100-continue.
    pub expect_other: bool,
}

/// A header meant to appear once was sent more than once (`RequestHead::sole_header`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Repeated;

impl RequestHead {
    pub fn method_bytes(&self) -> &[u8] {
        self.method_span.get(&self.buf)
    }
    pub fn path(&self) -> &[u8] {
        self.path.get(&self.buf)
    }
    pub fn query(&self) -> Option<&[u8]> {
        self.query.map(|q| q.get(&self.buf))
    }
    pub fn target(&self) -> &[u8] {
        self.target.get(&self.buf)
    }
    /// Iterates (name, value) pairs in order as received.
    pub fn headers(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        self.headers
            .iter()
            .map(move |h| (h.name.get(&self.buf), h.value.get(&self.buf)))
    }
    /// First value of a header, name compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers()
            .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v)
    }
    /// The value of a header the request may carry at most once: `Ok(None)` when absent,
    /// `Err(Repeated)` when sent twice or more (a reader of one copy and a reader of another
    /// would disagree, so such a request is ambiguous). One pass over the fields.
    pub fn sole_header(&self, name: &str) -> Result<Option<&[u8]>, Repeated> {
        let mut copies = self
            .headers()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v);
        let first = copies.next();
        match copies.next() {
            Some(_) => Err(Repeated),
            None => Ok(first),
        }
    }
    /// Host lowercased with any port and trailing dot removed, into `out` (reused buffer).
    pub fn host_for_routing<'o>(&self, out: &'o mut String) -> &'o str {
        out.clear();
        let raw = self.host.get(&self.buf);
        let host = strip_port(raw);
        for &b in host {
            out.push(b.to_ascii_lowercase() as char);
        }
        while out.ends_with('.') {
            out.pop();
        }
        out
    }
}

/// Parses and validates a request head at the start of `buf`.
///
/// Returns `Ok(None)` when more bytes are needed (and the limits are not yet exceeded),
/// `Ok(Some((head, consumed)))` when a complete head was parsed (`consumed` = head length incl.
/// the final CRLF), or the rejection. Leading empty lines (CRLF) before the request line are
/// skipped per RFC 9112 §2.2 and count into `consumed`.
pub fn parse_request_head(
    buf: &[u8],
    limits: &Limits,
) -> Result<Option<(RequestHead, usize)>, HeadError> {
    let Some(skip) = skip_empty_lines(buf)? else {
        return incomplete(buf.len(), limits.max_header_bytes);
    };
    let rest = &buf[skip..];
    prescan_request_line(rest, limits)?;

    let (slot_count, capped) = header_slot_count(limits.max_headers, limits.max_header_bytes);
    let mut stack = [MaybeUninit::<httparse::Header<'_>>::uninit(); STACK_HEADER_SLOTS];
    let mut heap = Vec::new();
    let slots = if slot_count <= STACK_HEADER_SLOTS {
        &mut stack[..slot_count]
    } else {
        heap.resize(slot_count, MaybeUninit::uninit());
        &mut heap[..]
    };
    let mut req = httparse::Request::new(&mut []);
    let n = match httparse::ParserConfig::default()
        .parse_request_with_uninit_headers(&mut req, rest, slots)
    {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return incomplete(buf.len(), limits.max_header_bytes),
        Err(e) => return Err(map_parse_error(e, rest, capped, true)),
    };
    let consumed = skip + n;
    if consumed > limits.max_header_bytes || n > u32::MAX as usize {
        return Err(HeadError::HeaderTooLarge);
    }
    let head = &rest[..n];
    check_line_endings(head)?;

    let version = match req.version {
        Some(0) => Version::Http10,
        Some(1) => Version::Http11,
        _ => return Err(HeadError::VersionNotSupported),
    };
    let method_bytes = req.method.unwrap_or("").as_bytes();
    let target_bytes = req.path.unwrap_or("").as_bytes();
    let method = Method::from_bytes(method_bytes);
    let method_span = span_of(head, method_bytes);
    let target = span_of(head, target_bytes);
    if target_bytes.len() > limits.max_uri_bytes {
        return Err(HeadError::UriTooLong);
    }
    if method == Method::Connect {
        return Err(HeadError::NotImplemented("CONNECT not supported"));
    }
    // Methods are case-sensitive, and every registered one is upper case; a backend that
    // folds `get` into GET would serve a request that matched no GET route (nginx refuses
    // these too). Known methods are upper case by construction, so only others are looked at.
    if method == Method::Other && method_bytes.iter().any(u8::is_ascii_lowercase) {
        return Err(HeadError::BadRequest("method not in upper case"));
    }
    let (path, query, authority) = target_parts(target, target_bytes, method)?;

    let (spare_bytes, mut headers) = super::recycle::take();
    headers.reserve(req.headers.len());
    let scan = scan_headers(head, req.headers, &mut headers)?;

    check_singletons(&scan, head, version)?;
    // The absolute-form authority wins over the Host header (RFC 9112 §3.2.2).
    let host = authority.or(scan.host).unwrap_or_default();

    let body = request_framing(&scan, version)?;
    let v10 = version == Version::Http10;
    Ok(Some((
        RequestHead {
            buf: {
                let mut b = spare_bytes;
                b.extend_from_slice(head);
                b
            },
            method,
            method_span,
            target,
            path,
            query,
            version,
            headers,
            host,
            body,
            close: scan.conn_close || (v10 && !scan.conn_keep_alive),
            // Upgrade is HTTP/1.1-only; an HTTP/1.0 Upgrade is ignored (RFC 9110 §7.8).
            upgrade: !v10 && scan.conn_upgrade && scan.upgrade_header,
            // 100-continue in HTTP/1.0 must be ignored (RFC 9110 §10.1.1).
            expect_continue: !v10 && scan.expect_continue,
            expect_other: scan.expect_other,
        },
        consumed,
    )))
}

/// Path, query and (absolute-form) authority of the request-target, after checking its form
/// against the method.
#[inline]
fn target_parts(
    target: Span,
    target_bytes: &[u8],
    method: Method,
) -> Result<(Span, Option<Span>, Option<Span>), HeadError> {
    Ok(match classify_target(target_bytes, method)? {
        TargetForm::Asterisk => (target, None, None),
        TargetForm::Origin => {
            let (path, query) = split_query(target, target_bytes, 0);
            (path, query, None)
        }
        TargetForm::Absolute {
            authority_start,
            authority_end,
        } => {
            let authority = sub_span(target, authority_start, authority_end);
            let (path, query) = split_query(target, target_bytes, authority_end);
            (path, query, Some(authority))
        }
    })
}

/// Fields that must appear at most once (Host, the credentials) and Host's presence and shape.
#[inline]
fn check_singletons(scan: &HeaderScan, head: &[u8], version: Version) -> Result<(), HeadError> {
    // Host (RFC 9112 §3.2): exactly one in HTTP/1.1, at most one in HTTP/1.0.
    if scan.host_count > 1 {
        return Err(HeadError::BadRequest("duplicate host"));
    }
    // Credentials: one field at most. With two, the gateway would verify one and the upstream
    // might read the other (RFC 9110 §11.6.2 allows one value only).
    if scan.authorization_count > 1 {
        return Err(HeadError::BadRequest("duplicate authorization"));
    }
    if scan.proxy_authorization_count > 1 {
        return Err(HeadError::BadRequest("duplicate proxy-authorization"));
    }
    if version == Version::Http11 && scan.host_count == 0 {
        return Err(HeadError::BadRequest("missing host"));
    }
    if let Some(h) = scan.host {
        let value = h.get(head);
        let empty_ok = version == Version::Http10 && value.is_empty();
        if !empty_ok && !valid_authority(value) {
            return Err(HeadError::BadRequest("invalid host"));
        }
    }
    Ok(())
}

/// Request-line checks that must not wait for the whole head: 414 for an over-long target
/// (also while the line is still arriving) and 505 for a well-formed non-1.x version.
fn prescan_request_line(rest: &[u8], limits: &Limits) -> Result<(), HeadError> {
    let line_end = rest.iter().position(|&b| b == b'\n');
    let line = match line_end {
        Some(i) => &rest[..i],
        None => {
            if rest.len() > limits.max_uri_bytes.saturating_add(32) {
                return Err(HeadError::UriTooLong);
            }
            rest
        }
    };
    let Some(sp1) = line.iter().position(|&b| b == b' ') else {
        return Ok(());
    };
    let after = &line[sp1 + 1..];
    let target_len = after.iter().position(|&b| b == b' ').unwrap_or(after.len());
    if target_len > limits.max_uri_bytes {
        return Err(HeadError::UriTooLong);
    }
    if line_end.is_some() && target_len < after.len() {
        let version = &after[target_len + 1..];
        let version = version.strip_suffix(b"\r").unwrap_or(version);
        if unsupported_version(version) {
            return Err(HeadError::VersionNotSupported);
        }
    }
    Ok(())
}

fn request_framing(scan: &HeaderScan, version: Version) -> Result<BodyFraming, HeadError> {
    if !scan.te.present {
        return Ok(match scan.content_length {
            Some(n) => BodyFraming::Length(n),
            None => BodyFraming::None,
        });
    }
    if scan.content_length.is_some() {
        return Err(HeadError::BadRequest(
            "content-length and transfer-encoding",
        ));
    }
    if version == Version::Http10 {
        return Err(HeadError::BadRequest("transfer-encoding in http/1.0"));
    }
    // RFC 9112 §6.3 (4): a request whose final coding is not chunked cannot be delimited.
    if !scan.te.last_chunked {
        return Err(HeadError::BadRequest(
            "transfer-encoding not ending in chunked",
        ));
    }
    scan.te.check_common()?;
    Ok(BodyFraming::Chunked)
}

impl Drop for RequestHead {
    fn drop(&mut self) {
        super::recycle::give(
            std::mem::take(&mut self.buf),
            std::mem::take(&mut self.headers),
        );
    }
}

/// Whether field names `a` and `b` name one variable to CGI, WSGI, Rack and PHP backends:
/// ASCII case ignored, `_` and `-` alike (`X_Rate` and `x-rate` are both `HTTP_X_RATE`).
/// Checks that must see every copy a backend may read (route conditions, OpenAPI header
/// parameters) compare names this way.
pub fn same_field_loosely(a: &[u8], b: &[u8]) -> bool {
    let fold = |c: u8| match c {
        b'_' => b'-',
        c => c.to_ascii_lowercase(),
    };
    a.len() == b.len() && a.iter().zip(b).all(|(&x, &y)| fold(x) == fold(y))
}

#[cfg(test)]
mod tests {
    use super::super::tests::{err, get_with, ok, parse, post_with};
    use super::*;

    // ---- request heads: basics ----

    #[test]
    fn simple_get() {
        let raw = b"GET /a/b?x=1&y=2 HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n";
        let (h, n) = ok(raw);
        assert_eq!(n, raw.len());
        assert_eq!(h.method, Method::Get);
        assert_eq!(h.method_bytes(), b"GET");
        assert_eq!(h.target(), b"/a/b?x=1&y=2");
        assert_eq!(h.path(), b"/a/b");
        assert_eq!(h.query(), Some(&b"x=1&y=2"[..]));
        assert_eq!(h.version, Version::Http11);
        assert_eq!(h.host.get(&h.buf), b"example.com");
        assert_eq!(h.body, BodyFraming::None);
        assert!(!h.close && !h.upgrade && !h.expect_continue && !h.expect_other);
        let hs: Vec<_> = h.headers().collect();
        assert_eq!(
            hs,
            vec![
                (&b"Host"[..], &b"example.com"[..]),
                (&b"Accept"[..], &b"*/*"[..])
            ]
        );
        assert_eq!(h.header("accept"), Some(&b"*/*"[..]));
        assert_eq!(h.buf, raw.to_vec());
    }

    #[test]
    fn extension_method_is_other() {
        let (h, _) = ok(b"PURGE /x HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(h.method, Method::Other);
        assert_eq!(h.method_bytes(), b"PURGE");
    }

    #[test]
    fn header_values_are_trimmed_and_may_be_empty() {
        let (h, _) = ok(&get_with("X-A:   v v \t\r\nX-Empty:\r\nX-Tab: a\tb\r\n"));
        assert_eq!(h.header("x-a"), Some(&b"v v"[..]));
        assert_eq!(h.header("x-empty"), Some(&b""[..]));
        assert_eq!(h.header("x-tab"), Some(&b"a\tb"[..]));
    }

    #[test]
    fn pipelined_requests() {
        let first = b"GET /one HTTP/1.1\r\nHost: h\r\n\r\n".to_vec();
        let second = b"POST /two HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc".to_vec();
        let mut buf = first.clone();
        buf.extend_from_slice(&second);
        let (h1, n1) = ok(&buf);
        assert_eq!(n1, first.len());
        assert_eq!(h1.path(), b"/one");
        let (h2, n2) = ok(&buf[n1..]);
        assert_eq!(h2.path(), b"/two");
        assert_eq!(h2.body, BodyFraming::Length(3));
        assert_eq!(&buf[n1 + n2..], b"abc");
    }

    #[test]
    fn every_prefix_is_incomplete() {
        let raw = b"\r\nPOST /x?y HTTP/1.1\r\nHost: h:8080\r\nContent-Length: 10\r\nX: y\r\n\r\n";
        for i in 0..raw.len() {
            assert!(parse(&raw[..i]).unwrap().is_none(), "prefix {i}");
        }
        assert_eq!(ok(raw).1, raw.len());
    }

    #[test]
    fn uri_limit() {
        let limits = Limits {
            max_uri_bytes: 16,
            ..Limits::default()
        };
        let ok_target = b"GET /0123456789abcde HTTP/1.1\r\nHost: h\r\n\r\n";
        assert!(parse_request_head(ok_target, &limits).unwrap().is_some());
        let long = b"GET /0123456789abcdef HTTP/1.1\r\nHost: h\r\n\r\n";
        assert_eq!(
            parse_request_head(long, &limits).unwrap_err(),
            HeadError::UriTooLong
        );
        // Request line complete, headers still missing.
        let partial = b"GET /0123456789abcdef HTTP/1.1\r\nHo";
        assert_eq!(
            parse_request_head(partial, &limits).unwrap_err(),
            HeadError::UriTooLong
        );
        // Target still arriving but already too long (space after it not seen yet).
        let partial = b"GET /0123456789abcdefgh";
        assert_eq!(
            parse_request_head(partial, &limits).unwrap_err(),
            HeadError::UriTooLong
        );
        // A request line without CRLF longer than max_uri + 32.
        let line = format!("GET{}", " ".repeat(0)) + &"x".repeat(60);
        assert_eq!(
            parse_request_head(line.as_bytes(), &limits).unwrap_err(),
            HeadError::UriTooLong
        );
        assert_eq!(HeadError::UriTooLong.status(), 414);
    }

    #[test]
    fn content_length_with_transfer_encoding_is_400() {
        let want = HeadError::BadRequest("content-length and transfer-encoding");
        assert_eq!(
            err(&post_with(
                "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n"
            )),
            want
        );
        assert_eq!(
            err(&post_with(
                "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n"
            )),
            want
        );
        assert_eq!(
            err(&post_with(
                "Transfer-Encoding: gzip, chunked\r\nContent-Length: 0\r\n"
            )),
            want
        );
    }

    #[test]
    fn transfer_encoding_rules() {
        assert_eq!(
            ok(&post_with("Transfer-Encoding: chunked\r\n")).0.body,
            BodyFraming::Chunked
        );
        assert_eq!(
            ok(&post_with("Transfer-Encoding: Chunked\r\n")).0.body,
            BodyFraming::Chunked
        );
        assert_eq!(
            ok(&post_with("Transfer-Encoding: , chunked ,\r\n")).0.body,
            BodyFraming::Chunked
        );
        for v in [
            "gzip",
            "chunked, gzip",
            "chunked;q=1",
            "identity",
            "xchunked",
            "chunked x",
        ] {
            let e = err(&post_with(&format!("Transfer-Encoding: {v}\r\n")));
            assert!(matches!(e, HeadError::BadRequest(_)), "{v:?} -> {e:?}");
        }
        assert_eq!(
            err(&post_with("Transfer-Encoding: chunked, chunked\r\n")),
            HeadError::BadRequest("chunked applied more than once")
        );
        assert_eq!(
            err(&post_with(
                "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n"
            )),
            HeadError::BadRequest("chunked applied more than once")
        );
        assert_eq!(
            err(&post_with("Transfer-Encoding: chunked, gzip, chunked\r\n")),
            HeadError::BadRequest("chunked applied more than once")
        );
        for v in ["gzip, chunked", "foo, chunked", "deflate,chunked"] {
            let e = err(&post_with(&format!("Transfer-Encoding: {v}\r\n")));
            assert_eq!(
                e,
                HeadError::NotImplemented("transfer-coding not supported"),
                "{v:?}"
            );
            assert_eq!(e.status(), 501);
        }
        // Codings split over two fields are one list.
        assert_eq!(
            err(&post_with(
                "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n"
            )),
            HeadError::NotImplemented("transfer-coding not supported")
        );
        assert!(matches!(
            err(&post_with(
                "Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n"
            )),
            HeadError::BadRequest(_)
        ));
        assert_eq!(
            err(&post_with("Transfer-Encoding:\r\n")),
            HeadError::BadRequest("empty transfer-encoding")
        );
        assert_eq!(
            err(&post_with("Transfer-Encoding: , \r\n")),
            HeadError::BadRequest("empty transfer-encoding")
        );
        assert_eq!(
            err(b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
            HeadError::BadRequest("transfer-encoding in http/1.0")
        );
    }

    // ---- Credentials ----

    #[test]
    fn one_authorization_at_most() {
        assert_eq!(
            err(b"GET / HTTP/1.1\r\nHost: a\r\nAuthorization: a\r\nauthorization: a\r\n\r\n"),
            HeadError::BadRequest("duplicate authorization")
        );
        assert_eq!(
            err(b"GET / HTTP/1.1\r\nHost: a\r\nProxy-Authorization: a\r\nPROXY-AUTHORIZATION: b\r\n\r\n"),
            HeadError::BadRequest("duplicate proxy-authorization")
        );
        ok(b"GET / HTTP/1.1\r\nHost: a\r\nAuthorization: a\r\nProxy-Authorization: b\r\n\r\n");
    }

    // ---- Host ----

    #[test]
    fn host_rules() {
        assert_eq!(
            err(b"GET / HTTP/1.1\r\nAccept: */*\r\n\r\n"),
            HeadError::BadRequest("missing host")
        );
        assert_eq!(
            err(b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n"),
            HeadError::BadRequest("duplicate host")
        );
        assert_eq!(
            err(b"GET / HTTP/1.0\r\nHost: a\r\nhost: b\r\n\r\n"),
            HeadError::BadRequest("duplicate host")
        );
        assert_eq!(
            err(b"GET / HTTP/1.1\r\nHost:\r\n\r\n"),
            HeadError::BadRequest("invalid host")
        );
        let (h, _) = ok(b"GET / HTTP/1.0\r\n\r\n");
        assert!(h.host.is_empty());
        let (h, _) = ok(b"GET / HTTP/1.0\r\nHost:\r\n\r\n");
        assert!(h.host.is_empty());
        for bad in [
            "exa/mple.com",
            "user@host",
            "[::1",
            "::1",
            "a:b:c",
            "host:80x",
            "[::1]x",
            "[]",
            ":80",
            "a]b",
            "a\"b",
            // Sub-delims and escapes: legal in a URI's reg-name, in no DNS name.
            "admin.example.com,x",
            "a;b",
            "a=b",
            "a!b",
            "a~b",
            "%61dmin.example.com",
            // Brackets hold an IPv6 address only.
            "[admin.example.com]",
            "[v1.x]",
            "[fe80::1%25eth0]",
        ] {
            let raw = format!("GET / HTTP/1.1\r\nHost: {bad}\r\n\r\n");
            assert_eq!(
                err(raw.as_bytes()),
                HeadError::BadRequest("invalid host"),
                "{bad:?}"
            );
        }
        for good in [
            "example.com",
            "Example.COM.:8080",
            "[::1]",
            "[::1]:443",
            "127.0.0.1:80",
            "host:",
            "a_b-c",
            "[2001:db8::1]:8080",
        ] {
            let raw = format!("GET / HTTP/1.1\r\nHost: {good}\r\n\r\n");
            let (h, _) = ok(raw.as_bytes());
            assert_eq!(h.host.get(&h.buf), good.as_bytes());
        }
        let (h, _) = ok(b"GET / HTTP/1.1\r\nHost: Example.COM.:8080\r\n\r\n");
        let mut s = String::new();
        assert_eq!(h.host_for_routing(&mut s), "example.com");
        let (h, _) = ok(b"GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n");
        assert_eq!(h.host_for_routing(&mut s), "[::1]");
    }

    // ---- versions ----

    #[test]
    fn versions() {
        assert_eq!(ok(b"GET / HTTP/1.0\r\n\r\n").0.version, Version::Http10);
        for raw in [
            &b"GET / HTTP/2.0\r\nHost: h\r\n\r\n"[..],
            b"GET / HTTP/1.2\r\nHost: h\r\n\r\n",
            b"GET / HTTP/3.0\r\n\r\n",
            b"GET / HTTP/2\r\n\r\n",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            b"GET / HTTP/2",
            b"GET / HTTP/0.9\r\n\r\n",
        ] {
            assert_eq!(
                err(raw),
                HeadError::VersionNotSupported,
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
        assert_eq!(HeadError::VersionNotSupported.status(), 505);
        for raw in [
            &b"GET / http/1.1\r\nHost: h\r\n\r\n"[..],
            b"GET / HTTP/1\r\nHost: h\r\n\r\n",
            b"GET / HTTP/1.1x\r\nHost: h\r\n\r\n",
            b"GET / FTP/1.1\r\nHost: h\r\n\r\n",
            b"GET /\r\n\r\n",
        ] {
            assert!(
                matches!(err(raw), HeadError::BadRequest(_)),
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[test]
    fn malformed_request_lines() {
        for raw in [
            &b"GET  / HTTP/1.1\r\nHost: h\r\n\r\n"[..],
            b"GET / HTTP/1.1 \r\nHost: h\r\n\r\n",
            b" GET / HTTP/1.1\r\nHost: h\r\n\r\n",
            b"G(T / HTTP/1.1\r\nHost: h\r\n\r\n",
            b"GET /\x01 HTTP/1.1\r\nHost: h\r\n\r\n",
            b"GET\t/ HTTP/1.1\r\nHost: h\r\n\r\n",
        ] {
            assert!(
                matches!(err(raw), HeadError::BadRequest(_)),
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    // ---- Connection / Upgrade / Expect ----

    #[test]
    fn connection_semantics() {
        assert!(!ok(&get_with("")).0.close);
        assert!(ok(&get_with("Connection: close\r\n")).0.close);
        assert!(ok(&get_with("Connection: Keep-Alive, CLOSE\r\n")).0.close);
        assert!(
            ok(&get_with("Connection: foo\r\nConnection: close\r\n"))
                .0
                .close
        );
        assert!(!ok(&get_with("Connection: keep-alive\r\n")).0.close);
        assert!(ok(b"GET / HTTP/1.0\r\n\r\n").0.close);
        assert!(
            !ok(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")
                .0
                .close
        );
        assert!(
            ok(b"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n")
                .0
                .close
        );
        assert!(
            ok(b"GET / HTTP/1.0\r\nConnection: keep-alivex\r\n\r\n")
                .0
                .close
        );
    }

    #[test]
    fn upgrade_detection() {
        assert!(
            ok(&get_with("Connection: Upgrade\r\nUpgrade: websocket\r\n"))
                .0
                .upgrade
        );
        assert!(
            ok(&get_with(
                "Connection: keep-alive, upgrade\r\nUpgrade: h2c\r\n"
            ))
            .0
            .upgrade
        );
        assert!(!ok(&get_with("Connection: upgrade\r\n")).0.upgrade);
        assert!(!ok(&get_with("Upgrade: websocket\r\n")).0.upgrade);
        assert!(
            !ok(&get_with("Connection: upgrade\r\nUpgrade:\r\n"))
                .0
                .upgrade
        );
        assert!(
            !ok(b"GET / HTTP/1.0\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n")
                .0
                .upgrade
        );
    }

    #[test]
    fn expect_handling() {
        let (h, _) = ok(&post_with("Expect: 100-continue\r\nContent-Length: 1\r\n"));
        assert!(h.expect_continue && !h.expect_other);
        let (h, _) = ok(&post_with("Expect: 100-Continue\r\n"));
        assert!(h.expect_continue && !h.expect_other);
        let (h, _) = ok(&post_with("Expect: something-else\r\n"));
        assert!(!h.expect_continue && h.expect_other);
        let (h, _) = ok(b"POST / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n");
        assert!(!h.expect_continue && !h.expect_other);
    }
}

//! Fresh head serialization (status line, header lines, reason phrases) and the hop-by-hop
//! rules that decide which received headers a proxy may forward.
//!
//! Invariants: everything written ends lines in CRLF; nothing here validates names or values,
//! callers pass ones taken from a validated head or from the compiled config.

use super::types::trim_ows;

/// True for hop-by-hop headers that a proxy never forwards (RFC 9110 §7.6.1), compared
/// case-insensitively: connection, keep-alive, proxy-connection, te, trailer, transfer-encoding,
/// upgrade, proxy-authenticate, proxy-authorization.
pub fn is_hop_by_hop(name: &[u8]) -> bool {
    const HOP_BY_HOP: [&[u8]; 9] = [
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"proxy-authenticate",
        b"proxy-authorization",
    ];
    const LENGTHS: u32 = length_mask(&HOP_BY_HOP);
    listed(name, &HOP_BY_HOP, LENGTHS)
}

/// The lengths of `names` as bits, for `listed`. Computed from the list itself, so the list
/// stays the one place to edit.
pub const fn length_mask(names: &[&[u8]]) -> u32 {
    let mut m = 0u32;
    let mut i = 0;
    while i < names.len() {
        m |= 1 << names[i].len();
        i += 1;
    }
    m
}

/// True if `name` is one of `names` (case-insensitive; all shorter than 32 bytes), `lengths`
/// being their `length_mask`. Most header names are in no such list: a name whose length no
/// entry has is answered without a comparison.
#[inline]
pub fn listed(name: &[u8], names: &[&[u8]], lengths: u32) -> bool {
    name.len() < 32
        && lengths & (1 << name.len()) != 0
        && names.iter().any(|n| n.eq_ignore_ascii_case(name))
}

/// True if `name` is listed as a token in any `Connection` header value of `headers`
/// (case-insensitive), meaning it must not be forwarded.
pub fn named_in_connection<'a>(
    mut headers: impl Iterator<Item = (&'a [u8], &'a [u8])>,
    name: &[u8],
) -> bool {
    headers.any(|(n, v)| {
        n.eq_ignore_ascii_case(b"connection")
            && v.split(|&b| b == b',')
                .any(|token| trim_ows(token).eq_ignore_ascii_case(name))
    })
}

/// True if some `Connection` header of `headers` names a field that is not hop-by-hop anyway
/// (`keep-alive` is the usual one): only then must each forwarded field be checked against
/// the list with `named_in_connection`. Empty list elements are ignored, as RFC 9110 §5.6.1
/// asks.
pub fn connection_names_fields<'a>(
    mut headers: impl Iterator<Item = (&'a [u8], &'a [u8])>,
) -> bool {
    headers.any(|(n, v)| {
        n.eq_ignore_ascii_case(b"connection")
            && v.split(|&b| b == b',').any(|token| {
                let t = trim_ows(token);
                !t.is_empty() && !is_hop_by_hop(t)
            })
    })
}

/// Appends the `Connection` header a response needs: `close` when the connection ends after
/// it, `keep-alive` when an HTTP/1.0 client keeps it (1.0 closes unless told), nothing when an
/// HTTP/1.1 connection simply stays open.
pub fn write_connection(out: &mut Vec<u8>, keep: bool, version: super::types::Version) {
    if !keep {
        write_header(out, b"connection", b"close");
    } else if version == super::types::Version::Http10 {
        write_header(out, b"connection", b"keep-alive");
    }
}

/// Appends `name: value\r\n`.
pub fn write_header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Appends `HTTP/1.1 {status} {reason}\r\n` (reason from `reason_phrase`).
pub fn write_status_line(out: &mut Vec<u8>, status: u16) {
    out.extend_from_slice(b"HTTP/1.1 ");
    let mut digits = [0u8; 5];
    let mut i = digits.len();
    let mut v = status;
    loop {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
    out.push(b' ');
    out.extend_from_slice(reason_phrase(status).as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Appends `n` in decimal without going through `fmt`.
pub fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// How a response body is framed on an HTTP/1.1 connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// No body and no length header (1xx, 204, 304, or a HEAD answer whose fields already carry
    /// the upstream's `Content-Length`).
    Bare,
    /// `Content-Length: n`.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Delimited by closing the connection (HTTP/1.0 client, unknown length).
    Close,
}

/// The part of a response head every response shares, whoever produced it (a local action,
/// an error, the upstream, the admin server).
pub struct HeadEnd<'a> {
    pub framing: Framing,
    /// `X-Request-Id` value; empty writes none.
    pub request_id: &'a [u8],
    /// The trace-id response header (name, lowercase hex id), when configured.
    pub trace: Option<(&'a [u8], &'a [u8])>,
    /// Field lines the request's policies add to every response (`name: value\r\n` each):
    /// CORS, RateLimit, WWW-Authenticate, Retry-After.
    pub lines: &'a [u8],
    /// The connection stays open after this response.
    pub keep: bool,
    pub version: super::types::Version,
}

/// The one response-head writer: status line, the producer's own `fields` (already serialized
/// `name: value\r\n` lines), then `end_response_head`.
pub fn write_response_head(out: &mut Vec<u8>, status: u16, fields: &[u8], end: &HeadEnd<'_>) {
    write_status_line(out, status);
    out.extend_from_slice(fields);
    end_response_head(out, end);
}

/// Ends a response head whose status line and own fields are already in `out`: framing,
/// `X-Request-Id`, the trace header, the policies' lines, `Connection`, and the blank line.
/// Every response head ends here (proxied heads filter upstream fields straight into `out`).
pub fn end_response_head(out: &mut Vec<u8>, end: &HeadEnd<'_>) {
    match end.framing {
        Framing::Length(n) => {
            out.extend_from_slice(b"content-length: ");
            push_decimal(out, n);
            out.extend_from_slice(b"\r\n");
        }
        Framing::Chunked => write_header(out, b"transfer-encoding", b"chunked"),
        Framing::Bare | Framing::Close => {}
    }
    if !end.request_id.is_empty() {
        write_header(out, b"x-request-id", end.request_id);
    }
    if let Some((name, id)) = end.trace {
        write_header(out, name, id);
    }
    out.extend_from_slice(end.lines);
    write_connection(out, end.keep, end.version);
    out.extend_from_slice(b"\r\n");
}

/// Canonical reason phrase for a status code ("" for unknown codes).
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        102 => "Processing",
        103 => "Early Hints",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        203 => "Non-Authoritative Information",
        204 => "No Content",
        205 => "Reset Content",
        206 => "Partial Content",
        207 => "Multi-Status",
        208 => "Already Reported",
        226 => "IM Used",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        305 => "Use Proxy",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Range Not Satisfiable",
        417 => "Expectation Failed",
        421 => "Misdirected Request",
        422 => "Unprocessable Content",
        423 => "Locked",
        424 => "Failed Dependency",
        425 => "Too Early",
        426 => "Upgrade Required",
        428 => "Precondition Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        451 => "Unavailable For Legal Reasons",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        506 => "Variant Also Negotiates",
        507 => "Insufficient Storage",
        508 => "Loop Detected",
        510 => "Not Extended",
        511 => "Network Authentication Required",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http1::write_chunk_header;

    // ---- small helpers ----

    #[test]
    fn hop_by_hop() {
        for n in [
            "Connection",
            "keep-alive",
            "Proxy-Connection",
            "TE",
            "Trailer",
            "transfer-encoding",
            "UPGRADE",
            "proxy-authenticate",
            "Proxy-Authorization",
        ] {
            assert!(is_hop_by_hop(n.as_bytes()), "{n}");
        }
        for n in ["content-length", "trailers", "x-connection", "host", ""] {
            assert!(!is_hop_by_hop(n.as_bytes()), "{n}");
        }
    }

    #[test]
    fn connection_named_headers() {
        let headers: Vec<(&[u8], &[u8])> = vec![
            (b"Host", b"h"),
            (b"Connection", b"keep-alive, X-Secret"),
            (b"connection", b" x-other ,"),
        ];
        assert!(named_in_connection(headers.iter().copied(), b"x-secret"));
        assert!(named_in_connection(headers.iter().copied(), b"X-Other"));
        assert!(named_in_connection(headers.iter().copied(), b"KEEP-ALIVE"));
        assert!(!named_in_connection(headers.iter().copied(), b"host"));
        assert!(!named_in_connection(headers.iter().copied(), b"x-secre"));
        assert!(connection_names_fields(headers.iter().copied()));
        for plain in [
            &[(&b"Connection"[..], &b"keep-alive"[..])][..],
            &[
                (b"connection", b" Keep-Alive , ,"),
                (b"Connection", b"upgrade"),
            ],
            &[(b"x-connection", b"x-secret")],
            &[],
        ] {
            assert!(!connection_names_fields(plain.iter().copied()), "{plain:?}");
        }
        assert!(connection_names_fields(
            [(&b"Connection"[..], &b"keep-alive, close"[..])].into_iter()
        ));
    }

    #[test]
    fn serialization_helpers() {
        let mut out = Vec::new();
        write_chunk_header(&mut out, 0);
        write_chunk_header(&mut out, 255);
        write_chunk_header(&mut out, 4096);
        assert_eq!(out, b"0\r\nff\r\n1000\r\n");
        out.clear();
        write_chunk_header(&mut out, usize::MAX);
        assert_eq!(out, format!("{:x}\r\n", usize::MAX).into_bytes());

        out.clear();
        write_status_line(&mut out, 200);
        assert_eq!(out, b"HTTP/1.1 200 OK\r\n");
        out.clear();
        write_status_line(&mut out, 599);
        assert_eq!(out, b"HTTP/1.1 599 \r\n");
        out.clear();
        write_status_line(&mut out, 431);
        assert_eq!(out, b"HTTP/1.1 431 Request Header Fields Too Large\r\n");

        out.clear();
        write_header(&mut out, b"X-A", b"b");
        assert_eq!(out, b"X-A: b\r\n");
    }

    #[test]
    fn decimals() {
        for (n, want) in [
            (0, "0"),
            (7, "7"),
            (10, "10"),
            (u64::MAX, "18446744073709551615"),
        ] {
            let mut out = b"x".to_vec();
            push_decimal(&mut out, n);
            assert_eq!(out, format!("x{want}").as_bytes());
        }
    }

    #[test]
    fn reason_phrases() {
        let codes = [
            100, 101, 300, 301, 302, 303, 304, 305, 307, 308, 451, 500, 501, 502, 503, 504, 505,
        ];
        for code in codes
            .into_iter()
            .chain(200..=206)
            .chain(400..=417)
            .chain(421..=426)
        {
            assert!(!reason_phrase(code).is_empty(), "{code}");
        }
        assert_eq!(reason_phrase(429), "Too Many Requests");
        assert_eq!(reason_phrase(431), "Request Header Fields Too Large");
        assert_eq!(reason_phrase(404), "Not Found");
        assert_eq!(reason_phrase(599), "");
        assert_eq!(reason_phrase(0), "");
    }

    // ---- the response-head writer ----

    fn end(framing: Framing, keep: bool, version: crate::http1::Version) -> HeadEnd<'static> {
        HeadEnd {
            framing,
            request_id: b"rid-1",
            trace: None,
            lines: b"ratelimit: limit=5\r\n",
            keep,
            version,
        }
    }

    #[test]
    fn response_head_orders_fields_framing_id_lines_connection() {
        use crate::http1::Version;
        let mut out = Vec::new();
        let e = HeadEnd {
            trace: Some((b"x-trace-id", b"0af7")),
            ..end(Framing::Length(12), false, Version::Http11)
        };
        write_response_head(&mut out, 201, b"content-type: text/plain\r\n", &e);
        assert_eq!(
            out,
            b"HTTP/1.1 201 Created\r\ncontent-type: text/plain\r\ncontent-length: 12\r\n\
x-request-id: rid-1\r\nx-trace-id: 0af7\r\nratelimit: limit=5\r\nconnection: close\r\n\r\n"
        );
    }

    #[test]
    fn response_head_framing_and_connection_per_version() {
        use crate::http1::Version;
        let text = |f, keep, v| {
            let mut out = Vec::new();
            write_response_head(&mut out, 200, b"", &end(f, keep, v));
            String::from_utf8(out).unwrap()
        };
        let chunked = text(Framing::Chunked, true, Version::Http11);
        assert!(chunked.contains("transfer-encoding: chunked\r\n"));
        assert!(
            !chunked.contains("connection:"),
            "1.1 keep-alive is implicit"
        );
        let ten = text(Framing::Length(0), true, Version::Http10);
        assert!(ten.contains("content-length: 0\r\n") && ten.contains("connection: keep-alive"));
        for f in [Framing::Bare, Framing::Close] {
            let t = text(f, false, Version::Http11);
            assert!(!t.contains("content-length") && !t.contains("transfer-encoding"));
            assert!(t.ends_with("connection: close\r\n\r\n"));
        }
        let mut out = Vec::new();
        let no_id = HeadEnd {
            request_id: b"",
            ..end(Framing::Bare, true, Version::Http11)
        };
        end_response_head(&mut out, &no_id);
        assert!(!String::from_utf8(out).unwrap().contains("x-request-id"));
    }
}

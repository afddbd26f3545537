//! Upstream response heads: [`ResponseHead`] and [`parse_response_head`].
//!
//! Invariants: the body framing follows the request method and status (HEAD, 1xx, 204 and 304
//! have no body; no framing header means close-delimited), and framing is validated even when
//! no body follows. Broken framing, or a final transfer-coding other than `chunked`, is an error:
//! the proxy answers 502 and closes that upstream connection.

use std::mem::MaybeUninit;

use super::head::{
    check_line_endings, header_slot_count, incomplete, map_parse_error, scan_headers,
    skip_empty_lines, span_of, HeaderScan, STACK_HEADER_SLOTS,
};
use super::types::{BodyFraming, HeadError, HeaderSpan, Method, Span, Version};

/// A validated response head from an upstream.
#[derive(Debug)]
pub struct ResponseHead {
    pub buf: Vec<u8>,
    pub version: Version,
    pub status: u16,
    pub reason: Span,
    pub headers: Vec<HeaderSpan>,
    /// Framing given the request method (HEAD → None) and status (1xx/204/304 → None).
    pub body: BodyFraming,
    /// Upstream will close after this response (Connection: close or HTTP/1.0 w/o keep-alive),
    /// or the body is close-delimited.
    pub close: bool,
}

impl ResponseHead {
    pub fn headers(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        self.headers
            .iter()
            .map(move |h| (h.name.get(&self.buf), h.value.get(&self.buf)))
    }
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers()
            .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v)
    }
}

/// Parses and validates an upstream response head. `request_method` decides whether a body
/// follows (HEAD never has one). Broken framing is an error (the proxy answers 502).
pub fn parse_response_head(
    buf: &[u8],
    max_header_bytes: usize,
    max_headers: usize,
    request_method: Method,
) -> Result<Option<(ResponseHead, usize)>, HeadError> {
    let Some(skip) = skip_empty_lines(buf)? else {
        return incomplete(buf.len(), max_header_bytes);
    };
    let rest = &buf[skip..];

    let (slot_count, capped) = header_slot_count(max_headers, max_header_bytes);
    let mut stack = [MaybeUninit::<httparse::Header<'_>>::uninit(); STACK_HEADER_SLOTS];
    let mut heap = Vec::new();
    let slots = if slot_count <= STACK_HEADER_SLOTS {
        &mut stack[..slot_count]
    } else {
        heap.resize(slot_count, MaybeUninit::uninit());
        &mut heap[..]
    };
    let mut res = httparse::Response::new(&mut []);
    let n = match httparse::ParserConfig::default()
        .parse_response_with_uninit_headers(&mut res, rest, slots)
    {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return incomplete(buf.len(), max_header_bytes),
        Err(e) => return Err(map_parse_error(e, rest, capped, false)),
    };
    let consumed = skip + n;
    if consumed > max_header_bytes || n > u32::MAX as usize {
        return Err(HeadError::HeaderTooLarge);
    }
    let head = &rest[..n];
    check_line_endings(head)?;

    let version = match res.version {
        Some(0) => Version::Http10,
        Some(1) => Version::Http11,
        _ => return Err(HeadError::VersionNotSupported),
    };
    let status = res.code.unwrap_or(0);
    // RFC 9110 15: status codes are 100..=599; a client or cache has no meaning for the rest.
    if !(100..=599).contains(&status) {
        return Err(HeadError::BadRequest("invalid status code"));
    }
    let reason = reason_span(head);

    let (spare_bytes, mut headers) = super::recycle::take();
    headers.reserve(res.headers.len());
    let scan = scan_headers(head, res.headers, &mut headers)?;

    let body = body_framing(&scan, version, status, request_method)?;
    let close = scan.conn_close
        || (version == Version::Http10 && !scan.conn_keep_alive)
        || body == BodyFraming::CloseDelimited;
    Ok(Some((
        ResponseHead {
            buf: {
                let mut b = spare_bytes;
                b.extend_from_slice(head);
                b
            },
            version,
            status,
            reason,
            headers,
            body,
            close,
        },
        consumed,
    )))
}

/// The reason phrase as sent: httparse hands back "" for reasons with obs-text, so take the
/// raw bytes of the status line after "HTTP/1.x NNN ".
#[inline]
fn reason_span(head: &[u8]) -> Span {
    let status_line_end = head.iter().position(|&b| b == b'\r').unwrap_or(head.len());
    if status_line_end > 13 {
        span_of(head, &head[13..status_line_end])
    } else {
        Span::default()
    }
}

/// How the body is delimited, given the request method and the status; errors for
/// contradictory or unsupported framing.
#[inline]
fn body_framing(
    scan: &HeaderScan,
    version: Version,
    status: u16,
    request_method: Method,
) -> Result<BodyFraming, HeadError> {
    if scan.content_length.is_some() && scan.te.present {
        return Err(HeadError::BadRequest(
            "content-length and transfer-encoding",
        ));
    }
    if scan.te.present {
        if version == Version::Http10 {
            // RFC 9112 §6.1: Transfer-Encoding in HTTP/1.0 means the framing is faulty.
            return Err(HeadError::BadRequest("transfer-encoding in http/1.0"));
        }
        scan.te.check_common()?;
    }
    let no_body = request_method == Method::Head
        || (100..200).contains(&status)
        || status == 204
        || status == 304;
    Ok(if no_body {
        BodyFraming::None
    } else if scan.te.present {
        if scan.te.last_chunked {
            BodyFraming::Chunked
        } else {
            // RFC 9112 §6.3 allows reading such a body to close, but forwarding it would mean
            // either stripping a coding the client must know about or passing on one we cannot
            // frame. Refuse (the proxy answers 502), as nginx does.
            return Err(HeadError::NotImplemented(
                "response transfer-coding not supported",
            ));
        }
    } else if let Some(n) = scan.content_length {
        BodyFraming::Length(n)
    } else {
        BodyFraming::CloseDelimited
    })
}

impl Drop for ResponseHead {
    fn drop(&mut self) {
        super::recycle::give(
            std::mem::take(&mut self.buf),
            std::mem::take(&mut self.headers),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resp(s: &[u8], method: Method) -> Result<Option<(ResponseHead, usize)>, HeadError> {
        parse_response_head(s, 16 * 1024, 100, method)
    }

    fn resp_ok(s: &[u8], method: Method) -> (ResponseHead, usize) {
        match resp(s, method) {
            Ok(Some(r)) => r,
            other => panic!(
                "expected a response for {:?}, got {other:?}",
                String::from_utf8_lossy(s)
            ),
        }
    }

    // ---- response heads ----

    #[test]
    fn response_framing() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
        let (r, n) = resp_ok(raw, Method::Get);
        assert_eq!(&raw[n..], b"hello");
        assert_eq!(r.status, 200);
        assert_eq!(r.reason.get(&r.buf), b"OK");
        assert_eq!(r.body, BodyFraming::Length(5));
        assert!(!r.close);
        assert_eq!(r.header("content-length"), Some(&b"5"[..]));

        let (r, _) = resp_ok(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            Method::Get,
        );
        assert_eq!(r.body, BodyFraming::Chunked);
        assert!(!r.close);

        let (r, _) = resp_ok(b"HTTP/1.1 200 OK\r\n\r\n", Method::Get);
        assert_eq!(r.body, BodyFraming::CloseDelimited);
        assert!(r.close);

        // A final coding other than chunked is refused rather than silently stripped.
        assert_eq!(
            parse_response_head(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
                65536,
                100,
                Method::Get
            )
            .err(),
            Some(HeadError::NotImplemented(
                "response transfer-coding not supported"
            ))
        );

        for (raw, method) in [
            (
                &b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"[..],
                Method::Head,
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                Method::Head,
            ),
            (b"HTTP/1.1 204 No Content\r\n\r\n", Method::Get),
            (
                b"HTTP/1.1 304 Not Modified\r\nContent-Length: 100\r\n\r\n",
                Method::Get,
            ),
            (b"HTTP/1.1 100 Continue\r\n\r\n", Method::Post),
            (
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n",
                Method::Get,
            ),
        ] {
            let (r, _) = resp_ok(raw, method);
            assert_eq!(
                r.body,
                BodyFraming::None,
                "{:?}",
                String::from_utf8_lossy(raw)
            );
            assert!(!r.close);
        }
    }

    #[test]
    fn response_close_semantics() {
        let (r, _) = resp_ok(
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
            Method::Get,
        );
        assert!(r.close);
        let (r, _) = resp_ok(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", Method::Get);
        assert_eq!(r.version, Version::Http10);
        assert!(r.close);
        let (r, _) = resp_ok(
            b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n",
            Method::Get,
        );
        assert!(!r.close);
    }

    #[test]
    fn response_rejections() {
        for raw in [
            &b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
            b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"HTTP/1.1 099 Odd\r\n\r\n",
            b"HTTP/1.1 20 OK\r\n\r\n",
            b"HTTP/1.1 2000 OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX-A : a\r\n\r\n",
            b"HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX: \x01\r\n\r\n",
            b"http/1.1 200 OK\r\n\r\n",
        ] {
            let e = resp(raw, Method::Get).unwrap_err();
            assert!(
                matches!(e, HeadError::BadRequest(_)),
                "{:?} -> {e:?}",
                String::from_utf8_lossy(raw)
            );
        }
        assert_eq!(
            resp(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
                Method::Get
            )
            .unwrap_err(),
            HeadError::NotImplemented("transfer-coding not supported")
        );
        assert_eq!(
            resp(b"HTTP/2.0 200 OK\r\n\r\n", Method::Get).unwrap_err(),
            HeadError::VersionNotSupported
        );
        // Framing is validated even when the status means "no body".
        assert!(resp(
            b"HTTP/1.1 204 No Content\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
            Method::Get
        )
        .is_err());
    }

    #[test]
    fn response_reason_and_limits() {
        let (r, _) = resp_ok(b"HTTP/1.1 200\r\n\r\n", Method::Head);
        assert!(r.reason.is_empty());
        let (r, _) = resp_ok(b"HTTP/1.1 404 Not  Found\r\n\r\n", Method::Head);
        assert_eq!(r.reason.get(&r.buf), b"Not  Found");
        let (r, _) = resp_ok(b"HTTP/1.1 200 Gr\xfc\xdf Gott\r\n\r\n", Method::Head);
        assert_eq!(r.reason.get(&r.buf), b"Gr\xfc\xdf Gott");
        let (r, n) = resp_ok(b"\r\nHTTP/1.1 200 OK\r\n\r\n", Method::Head);
        assert_eq!(n, 21);
        assert_eq!(r.status, 200);

        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
        for i in 0..raw.len() {
            assert!(
                resp(&raw[..i], Method::Get).unwrap().is_none(),
                "prefix {i}"
            );
        }
        assert_eq!(
            parse_response_head(raw, 20, 100, Method::Get).unwrap_err(),
            HeadError::HeaderTooLarge
        );
        assert_eq!(
            parse_response_head(&raw[..30], 20, 100, Method::Get).unwrap_err(),
            HeadError::HeaderTooLarge
        );
        assert_eq!(
            parse_response_head(
                b"HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\n\r\n",
                1024,
                1,
                Method::Get
            )
            .unwrap_err(),
            HeadError::TooManyHeaders
        );
    }
}

//! Client-side response head parsing: status, body framing (RFC 9112 §6.3) and whether the
//! server will close the connection afterwards. Works on a byte slice and never panics on
//! what a server sends; anything malformed is a `HeadError`.

use crate::body::Framing;

/// Most headers a response head may carry.
const MAX_HEADERS: usize = 96;

/// The parts of a response head the load generator acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseHead {
    /// Length of the head in bytes, including the final CRLF CRLF.
    pub len: usize,
    /// Status code.
    pub status: u16,
    /// How the body is delimited.
    pub framing: Framing,
    /// The server closes the connection after this response.
    pub close: bool,
}

/// Why a response head was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadError {
    /// httparse rejected the status line or a header.
    Syntax,
    /// Content-Length was not digits, overflowed, or appeared with differing values.
    BadContentLength,
    /// More than `MAX_HEADERS` headers.
    TooManyHeaders,
}

impl std::fmt::Display for HeadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            HeadError::Syntax => "malformed response head",
            HeadError::BadContentLength => "bad Content-Length",
            HeadError::TooManyHeaders => "too many response headers",
        })
    }
}

/// Parses a complete response head at the start of `buf`; `Ok(None)` when more bytes are
/// needed. `head_request` marks a response to HEAD, which never has a body.
pub fn parse_head(buf: &[u8], head_request: bool) -> Result<Option<ResponseHead>, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut res = httparse::Response::new(&mut headers);
    let len = match res.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooManyHeaders),
        Err(_) => return Err(HeadError::Syntax),
    };
    let status = res.code.ok_or(HeadError::Syntax)?;
    let http10 = res.version == Some(0);

    let mut content_length: Option<u64> = None;
    let mut chunked = false;
    let mut transfer_encoding = false;
    let mut close = false;
    let mut keep_alive = false;
    for h in res.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            let n = parse_digits(h.value).ok_or(HeadError::BadContentLength)?;
            if content_length.is_some_and(|prev| prev != n) {
                return Err(HeadError::BadContentLength);
            }
            content_length = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            transfer_encoding = true;
            // Only the last coding decides whether the body is chunked.
            chunked = h
                .value
                .rsplit(|&b| b == b',')
                .next()
                .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if h.name.eq_ignore_ascii_case("connection") {
            for token in h.value.split(|&b| b == b',') {
                let token = token.trim_ascii();
                if token.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") {
                    keep_alive = true;
                }
            }
        }
    }

    let no_body = head_request || (100..200).contains(&status) || status == 204 || status == 304;
    let framing = if no_body {
        Framing::Length(0)
    } else if transfer_encoding {
        if chunked {
            Framing::Chunked
        } else {
            Framing::UntilClose
        }
    } else if let Some(n) = content_length {
        Framing::Length(n)
    } else {
        Framing::UntilClose
    };
    let close = close || (http10 && !keep_alive) || framing == Framing::UntilClose;
    Ok(Some(ResponseHead {
        len,
        status,
        framing,
        close,
    }))
}

/// Strict decimal digits (no sign, no whitespace inside, no overflow), surrounding OWS allowed.
fn parse_digits(value: &[u8]) -> Option<u64> {
    let v = value.trim_ascii();
    if v.is_empty() {
        return None;
    }
    v.iter().try_fold(0u64, |acc, &b| {
        if b.is_ascii_digit() {
            acc.checked_mul(10)?.checked_add(u64::from(b - b'0'))
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(s: &str) -> Result<Option<ResponseHead>, HeadError> {
        parse_head(s.as_bytes(), false)
    }

    #[test]
    fn content_length_and_keep_alive() {
        let raw = "HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\nbody";
        let h = head(raw).unwrap().unwrap();
        assert_eq!(h.status, 200);
        assert_eq!(h.framing, Framing::Length(20));
        assert_eq!(h.len, raw.len() - 4);
        assert!(!h.close);
    }

    #[test]
    fn partial_needs_more() {
        assert_eq!(head("HTTP/1.1 200 OK\r\nContent-Len"), Ok(None));
        assert_eq!(head(""), Ok(None));
    }

    #[test]
    fn chunked_and_close_delimited() {
        let h = head("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(h.framing, Framing::Chunked);
        let h = head("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(h.framing, Framing::UntilClose);
        assert!(h.close);
        let h = head("HTTP/1.1 200 OK\r\n\r\n").unwrap().unwrap();
        assert_eq!(h.framing, Framing::UntilClose);
    }

    #[test]
    fn no_body_statuses_and_head() {
        for s in ["204 No Content", "304 Not Modified", "100 Continue"] {
            let h = head(&format!("HTTP/1.1 {s}\r\nContent-Length: 9\r\n\r\n"))
                .unwrap()
                .unwrap();
            assert_eq!(h.framing, Framing::Length(0));
        }
        let h = parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n", true)
            .unwrap()
            .unwrap();
        assert_eq!(h.framing, Framing::Length(0));
    }

    #[test]
    fn connection_close_and_http10() {
        let h =
            head("HTTP/1.1 200 OK\r\nConnection: keep-alive, close\r\nContent-Length: 0\r\n\r\n")
                .unwrap()
                .unwrap();
        assert!(h.close);
        let h = head("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(h.close);
        let h = head("HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(!h.close);
    }

    #[test]
    fn bad_heads() {
        assert_eq!(
            head("HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\n"),
            Err(HeadError::BadContentLength)
        );
        assert_eq!(
            head("HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n"),
            Err(HeadError::BadContentLength)
        );
        assert_eq!(
            head("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"),
            Err(HeadError::BadContentLength)
        );
        assert!(head("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n").is_ok());
        assert_eq!(head("SMTP ready\r\n\r\n"), Err(HeadError::Syntax));
        assert_eq!(head("HTTP/1.1 2000 OK\r\n\r\n"), Err(HeadError::Syntax));
        let many: String = (0..200).map(|i| format!("X-{i}: v\r\n")).collect();
        assert_eq!(
            head(&format!("HTTP/1.1 200 OK\r\n{many}\r\n")),
            Err(HeadError::TooManyHeaders)
        );
    }
}

//! Header-section scanning shared by request and response parsing: the `httparse` glue (header
//! slots, leading empty lines, incomplete heads, error mapping), line-ending and header-field
//! checks, and the single pass that collects what framing and connection handling need
//! (Content-Length, Transfer-Encoding, Connection, Upgrade, Host, Expect, and how many
//! `Authorization` / `Proxy-Authorization` fields there are).
//!
//! Invariants: header names are tokens, values hold no control characters but HTAB, lines end
//! in CRLF, Content-Length is plain digits and agrees across fields, and Transfer-Encoding
//! codings are collected across all fields in order. Spans point into the caller's head slice.

use super::types::{is_tchar, is_valid_field, trim_ows, HeadError, HeaderSpan, Span};

/// Header slots kept on the stack; larger configured limits fall back to one heap allocation.
pub(super) const STACK_HEADER_SLOTS: usize = 128;

/// Returns the number of header slots to hand httparse and whether that number was capped below
/// `max_headers`. A header line takes at least 3 bytes, so more than `max_header_bytes / 3 + 1`
/// headers can only arrive in a head that is too large anyway; the cap keeps a silly configured
/// `max_headers` from turning into a huge allocation.
pub(super) fn header_slot_count(max_headers: usize, max_header_bytes: usize) -> (usize, bool) {
    let cap = max_header_bytes / 3 + 1;
    if max_headers > cap {
        (cap, true)
    } else {
        (max_headers, false)
    }
}

pub(super) fn incomplete<T>(len: usize, max_header_bytes: usize) -> Result<Option<T>, HeadError> {
    if len > max_header_bytes {
        Err(HeadError::HeaderTooLarge)
    } else {
        Ok(None)
    }
}

/// Skips leading CRLF pairs. `Ok(None)` = only CRLFs (or a lone trailing CR) so far.
pub(super) fn skip_empty_lines(buf: &[u8]) -> Result<Option<usize>, HeadError> {
    let mut i = 0;
    loop {
        match buf.get(i) {
            None => return Ok(None),
            Some(b'\r') => match buf.get(i + 1) {
                None => return Ok(None),
                Some(b'\n') => i += 2,
                Some(_) => return Err(HeadError::BadRequest("bare CR")),
            },
            Some(b'\n') => return Err(HeadError::BadRequest("bare LF line ending")),
            Some(_) => return Ok(Some(i)),
        }
    }
}

/// True for `HTTP/<d>.<d>` (or a prefix of it that already rules out 1.x) other than 1.0/1.1.
pub(super) fn unsupported_version(v: &[u8]) -> bool {
    match v {
        [b'H', b'T', b'T', b'P', b'/', major, rest @ ..] if major.is_ascii_digit() => match rest {
            [] | [b'.'] => *major != b'1',
            [b'.', minor] if minor.is_ascii_digit() => {
                !(*major == b'1' && (*minor == b'0' || *minor == b'1'))
            }
            _ => false,
        },
        _ => false,
    }
}

pub(super) fn map_parse_error(
    e: httparse::Error,
    rest: &[u8],
    capped: bool,
    request: bool,
) -> HeadError {
    match e {
        httparse::Error::TooManyHeaders if capped => HeadError::HeaderTooLarge,
        httparse::Error::TooManyHeaders => HeadError::TooManyHeaders,
        httparse::Error::Version => {
            let line_end = rest
                .iter()
                .position(|&b| b == b'\r' || b == b'\n')
                .unwrap_or(rest.len());
            let line = &rest[..line_end];
            let version = if request {
                match line.iter().rposition(|&b| b == b' ') {
                    Some(i) => &line[i + 1..],
                    None => line,
                }
            } else {
                let end = line.iter().position(|&b| b == b' ').unwrap_or(line.len());
                &line[..end]
            };
            if unsupported_version(version) {
                HeadError::VersionNotSupported
            } else {
                HeadError::BadRequest("invalid http version")
            }
        }
        httparse::Error::HeaderName => HeadError::BadRequest(diagnose_header_name(rest)),
        httparse::Error::HeaderValue => HeadError::BadRequest("invalid header value"),
        httparse::Error::NewLine => HeadError::BadRequest("invalid line ending"),
        httparse::Error::Status => HeadError::BadRequest("invalid status line"),
        httparse::Error::Token => HeadError::BadRequest("invalid request line"),
    }
}

/// Names the first offending header line for a more useful 400 reason.
fn diagnose_header_name(rest: &[u8]) -> &'static str {
    for line in rest.split(|&b| b == b'\n').skip(1) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(&first) = line.first() else {
            break;
        };
        if first == b' ' || first == b'\t' {
            return "obs-fold";
        }
        let colon = line.iter().position(|&b| b == b':');
        match colon {
            Some(c) if c > 0 && line[..c].iter().all(|&b| is_tchar(b)) => continue,
            Some(c) if line[..c].iter().any(|&b| b == b' ' || b == b'\t') => {
                return "whitespace before colon";
            }
            _ => return "invalid header name",
        }
    }
    "invalid header name"
}

/// Rejects a bare LF anywhere in the head (httparse tolerates it; a downstream parser that does
/// not could see a different message). memchr jumps from LF to LF, so a head costs a few
/// vector compares plus one look-behind per line.
pub(super) fn check_line_endings(head: &[u8]) -> Result<(), HeadError> {
    let bare = memchr::memchr_iter(b'\n', head).any(|i| i == 0 || head[i - 1] != b'\r');
    if bare {
        Err(HeadError::BadRequest("bare LF line ending"))
    } else {
        Ok(())
    }
}

/// Span of `part` inside `base`, or an empty span if `part` does not point into `base`.
/// `base.len()` must fit in u32 (callers check the head size first).
pub(super) fn span_of(base: &[u8], part: &[u8]) -> Span {
    let b = base.as_ptr() as usize;
    let p = part.as_ptr() as usize;
    if p < b || p - b > base.len() || part.len() > base.len() - (p - b) {
        return Span::default();
    }
    let start = p - b;
    Span {
        start: start as u32,
        end: (start + part.len()) as u32,
    }
}

/// Transfer-Encoding codings seen across all TE header fields, in order.
#[derive(Default)]
pub(super) struct TransferCodings {
    pub(super) present: bool,
    count: usize,
    chunked_count: usize,
    pub(super) last_chunked: bool,
}

impl TransferCodings {
    fn add_field(&mut self, value: &[u8]) -> Result<(), HeadError> {
        self.present = true;
        let mut any = false;
        for element in value.split(|&b| b == b',') {
            let coding = trim_ows(element);
            // Empty list elements are ignored (RFC 9110 §5.6.1).
            if coding.is_empty() {
                continue;
            }
            any = true;
            self.count += 1;
            self.last_chunked = coding.eq_ignore_ascii_case(b"chunked");
            if self.last_chunked {
                self.chunked_count += 1;
            }
        }
        if any {
            Ok(())
        } else {
            Err(HeadError::BadRequest("empty transfer-encoding"))
        }
    }

    /// Rules shared by requests and responses: chunked at most once, and chunked combined with
    /// other codings is not something we can proxy (we would drop the outer codings).
    pub(super) fn check_common(&self) -> Result<(), HeadError> {
        if self.chunked_count > 1 {
            return Err(HeadError::BadRequest("chunked applied more than once"));
        }
        if self.chunked_count == 1 && !self.last_chunked {
            return Err(HeadError::BadRequest("chunked is not the last coding"));
        }
        if self.last_chunked && self.count > 1 {
            return Err(HeadError::NotImplemented("transfer-coding not supported"));
        }
        Ok(())
    }
}

/// What the framing/connection logic needs from the header fields.
#[derive(Default)]
pub(super) struct HeaderScan {
    pub(super) content_length: Option<u64>,
    pub(super) te: TransferCodings,
    pub(super) conn_close: bool,
    pub(super) conn_keep_alive: bool,
    pub(super) conn_upgrade: bool,
    pub(super) upgrade_header: bool,
    pub(super) host: Option<Span>,
    pub(super) host_count: usize,
    /// `Authorization` plus `Proxy-Authorization` fields seen (each counted by its own name).
    pub(super) authorization_count: usize,
    pub(super) proxy_authorization_count: usize,
    pub(super) expect_continue: bool,
    pub(super) expect_other: bool,
}

pub(super) fn scan_headers(
    head: &[u8],
    parsed: &[httparse::Header<'_>],
    out: &mut Vec<HeaderSpan>,
) -> Result<HeaderScan, HeadError> {
    let mut scan = HeaderScan::default();
    for h in parsed {
        let name = h.name.as_bytes();
        let value = h.value;
        // httparse (with the default config: no obs-fold, no skipped invalid lines) only
        // returns names that are non-empty tokens and values made of HTAB, SP, VCHAR and
        // obs-text, with its vector scanners; `every_byte_in_names_and_values_is_classified`
        // pins that contract over all 256 byte values, so a looser httparse fails the suite
        // instead of opening the gateway. Checking each byte again here cost ~1k instructions
        // per proxied request.
        debug_assert!(is_valid_field(name, value));
        let name_span = span_of(head, name);
        let value_span = span_of(head, value);
        out.push(HeaderSpan {
            name: name_span,
            value: value_span,
        });
        if name.eq_ignore_ascii_case(b"content-length") {
            let n = parse_content_length(value)
                .ok_or(HeadError::BadRequest("invalid content-length"))?;
            match scan.content_length {
                Some(prev) if prev != n => {
                    return Err(HeadError::BadRequest("conflicting content-length"));
                }
                _ => scan.content_length = Some(n),
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            scan.te.add_field(value)?;
        } else if name.eq_ignore_ascii_case(b"connection") {
            for token in value.split(|&b| b == b',').map(trim_ows) {
                if token.eq_ignore_ascii_case(b"close") {
                    scan.conn_close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") {
                    scan.conn_keep_alive = true;
                } else if token.eq_ignore_ascii_case(b"upgrade") {
                    scan.conn_upgrade = true;
                }
            }
        } else if name.eq_ignore_ascii_case(b"upgrade") {
            scan.upgrade_header |= !value.is_empty();
        } else if name.eq_ignore_ascii_case(b"host") {
            scan.host_count += 1;
            scan.host = Some(value_span);
        } else if name.eq_ignore_ascii_case(b"authorization") {
            scan.authorization_count += 1;
        } else if name.eq_ignore_ascii_case(b"proxy-authorization") {
            scan.proxy_authorization_count += 1;
        } else if name.eq_ignore_ascii_case(b"expect") {
            if value.eq_ignore_ascii_case(b"100-continue") {
                scan.expect_continue = true;
            } else {
                scan.expect_other = true;
            }
        }
    }
    Ok(scan)
}

/// Parses a Content-Length value strictly: 1+ ASCII digits only, no sign/space/hex, no overflow.
pub fn parse_content_length(v: &[u8]) -> Option<u64> {
    if v.is_empty() {
        return None;
    }
    let mut n: u64 = 0;
    for &b in v {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some(n)
}

#[cfg(test)]
mod tests {
    use super::super::tests::{err, get_with, ok, parse, post_with};
    use super::*;
    use crate::http1::{parse_request_head, BodyFraming, Limits};

    #[test]
    fn leading_crlfs_are_skipped_and_counted() {
        let raw = b"\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n";
        let (h, n) = ok(raw);
        assert_eq!(n, raw.len());
        assert!(h.buf.starts_with(b"GET "));
        assert_eq!(h.path(), b"/");
        assert!(parse(b"\r\n").unwrap().is_none());
        assert!(parse(b"\r\n\r").unwrap().is_none());
        assert!(parse(b"").unwrap().is_none());
        assert!(matches!(
            err(b"\nGET / HTTP/1.1\r\nHost: h\r\n\r\n"),
            HeadError::BadRequest(_)
        ));
        assert!(matches!(
            err(b"\r\rGET / HTTP/1.1\r\nHost: h\r\n\r\n"),
            HeadError::BadRequest(_)
        ));
    }

    // ---- limits ----

    #[test]
    fn header_bytes_limit() {
        let limits = Limits {
            max_header_bytes: 64,
            ..Limits::default()
        };
        let partial = format!("GET / HTTP/1.1\r\nHost: h\r\nX: {}", "a".repeat(60));
        assert_eq!(
            parse_request_head(partial.as_bytes(), &limits).unwrap_err(),
            HeadError::HeaderTooLarge
        );
        let complete = format!("GET / HTTP/1.1\r\nHost: h\r\nX: {}\r\n\r\n", "a".repeat(40));
        assert_eq!(
            parse_request_head(complete.as_bytes(), &limits).unwrap_err(),
            HeadError::HeaderTooLarge
        );
        // Exactly at the limit is fine.
        let exact = b"GET / HTTP/1.1\r\nHost: h\r\n\r\n";
        let limits = Limits {
            max_header_bytes: exact.len(),
            ..Limits::default()
        };
        assert!(parse_request_head(exact, &limits).unwrap().is_some());
        // Endless empty lines run into the limit too.
        let crlfs = b"\r\n".repeat(40);
        let limits = Limits {
            max_header_bytes: 64,
            ..Limits::default()
        };
        assert_eq!(
            parse_request_head(&crlfs, &limits).unwrap_err(),
            HeadError::HeaderTooLarge
        );
    }

    #[test]
    fn header_count_limit() {
        let limits = Limits {
            max_headers: 3,
            ..Limits::default()
        };
        let three = get_with("A: 1\r\nB: 2\r\n");
        assert!(parse_request_head(&three, &limits).unwrap().is_some());
        let four = get_with("A: 1\r\nB: 2\r\nC: 3\r\n");
        assert_eq!(
            parse_request_head(&four, &limits).unwrap_err(),
            HeadError::TooManyHeaders
        );
        // Detected before the head is complete.
        let partial = b"GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\nC: 3\r\nD";
        assert_eq!(
            parse_request_head(partial, &limits).unwrap_err(),
            HeadError::TooManyHeaders
        );
        assert_eq!(HeadError::TooManyHeaders.status(), 431);
    }

    #[test]
    fn large_header_count_uses_heap_slots() {
        let limits = Limits {
            max_headers: 300,
            max_header_bytes: 64 * 1024,
            ..Limits::default()
        };
        let extra: String = (0..250).map(|i| format!("X-{i}: {i}\r\n")).collect();
        let (h, _) = parse_request_head(&get_with(&extra), &limits)
            .unwrap()
            .unwrap();
        assert_eq!(h.headers.len(), 251);
        let extra: String = (0..300).map(|i| format!("X-{i}: {i}\r\n")).collect();
        assert_eq!(
            parse_request_head(&get_with(&extra), &limits).unwrap_err(),
            HeadError::TooManyHeaders
        );
        // An absurd configured count does not allocate absurdly; the byte limit decides.
        let limits = Limits {
            max_headers: usize::MAX,
            max_header_bytes: 64,
            ..Limits::default()
        };
        let extra: String = (0..30).map(|_| "a:\r\n".to_string()).collect();
        assert_eq!(
            parse_request_head(&get_with(&extra), &limits).unwrap_err(),
            HeadError::HeaderTooLarge
        );
    }

    // ---- Content-Length / Transfer-Encoding (smuggling) ----

    #[test]
    fn content_length_framing() {
        assert_eq!(
            ok(&post_with("Content-Length: 5\r\n")).0.body,
            BodyFraming::Length(5)
        );
        assert_eq!(
            ok(&post_with("Content-Length: 0\r\n")).0.body,
            BodyFraming::Length(0)
        );
        assert_eq!(
            ok(&post_with("Content-Length:  7 \r\n")).0.body,
            BodyFraming::Length(7)
        );
        assert_eq!(
            ok(&post_with("Content-Length: 18446744073709551615\r\n"))
                .0
                .body,
            BodyFraming::Length(u64::MAX)
        );
        // Identical duplicates are tolerated (RFC 9112 §6.3).
        assert_eq!(
            ok(&post_with("Content-Length: 5\r\ncontent-length: 5\r\n"))
                .0
                .body,
            BodyFraming::Length(5)
        );
        assert_eq!(ok(&post_with("")).0.body, BodyFraming::None);
    }

    #[test]
    fn bad_content_length_is_400() {
        for v in [
            "+5",
            "-0",
            "-5",
            "0x5",
            "5 5",
            "5,5",
            "5, 5",
            "",
            "five",
            "5.0",
            "18446744073709551616",
            "99999999999999999999999",
        ] {
            let e = err(&post_with(&format!("Content-Length: {v}\r\n")));
            assert!(matches!(e, HeadError::BadRequest(_)), "{v:?} -> {e:?}");
            assert_eq!(e.status(), 400);
        }
        assert_eq!(
            err(&post_with("Content-Length: 5\r\nContent-Length: 6\r\n")),
            HeadError::BadRequest("conflicting content-length")
        );
    }

    #[test]
    fn content_length_parser() {
        assert_eq!(parse_content_length(b"0"), Some(0));
        assert_eq!(parse_content_length(b"007"), Some(7));
        assert_eq!(
            parse_content_length(b"18446744073709551615"),
            Some(u64::MAX)
        );
        for bad in [
            &b""[..],
            b"+5",
            b"-0",
            b"0x5",
            b" 5",
            b"5 ",
            b"5,5",
            b"1e3",
            b"18446744073709551616",
            "５".as_bytes(),
        ] {
            assert_eq!(
                parse_content_length(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    // ---- header syntax ----

    #[test]
    fn whitespace_before_colon_is_400() {
        assert_eq!(
            err(&get_with("Content-Length : 5\r\n")),
            HeadError::BadRequest("whitespace before colon")
        );
        assert_eq!(
            err(&get_with("Transfer-Encoding\t: chunked\r\n")),
            HeadError::BadRequest("whitespace before colon")
        );
    }

    #[test]
    fn obs_fold_is_400() {
        assert_eq!(
            err(&get_with("X-A: a\r\n b\r\n")),
            HeadError::BadRequest("obs-fold")
        );
        assert_eq!(
            err(&get_with("X-A: a\r\n\tb\r\n")),
            HeadError::BadRequest("obs-fold")
        );
        // Whitespace before the first header line is a fold of the request line.
        assert!(matches!(
            err(b"GET / HTTP/1.1\r\n Host: h\r\n\r\n"),
            HeadError::BadRequest(_)
        ));
    }

    #[test]
    fn control_characters_are_400() {
        for bad in [
            "X-A: a\u{1}b\r\n",
            "X-A: a\u{0}b\r\n",
            "X-A: a\u{7f}b\r\n",
            "X-A: a\rb\r\n",
            "X\u{1}A: b\r\n",
            "X A: b\r\n",
            ": novalue\r\n",
            "NoColon\r\n",
            "X-\u{e9}: b\r\n",
        ] {
            let e = err(&get_with(bad));
            assert!(matches!(e, HeadError::BadRequest(_)), "{bad:?} -> {e:?}");
        }
        // obs-text in values is allowed.
        let mut raw = b"GET / HTTP/1.1\r\nHost: h\r\nX: caf\xc3\xa9\r\n\r\n".to_vec();
        assert_eq!(ok(&raw).0.header("x"), Some(&b"caf\xc3\xa9"[..]));
        raw.clear();
    }

    /// The contract `scan_headers` relies on instead of re-checking every byte: for each of
    /// the 256 byte values, in a request and in a response head, a field holding it (in its
    /// name or in its value) parses exactly when `is_valid_field` accepts it: a token
    /// character in a name; HTAB, SP, VCHAR or obs-text in a value. Each byte is tried at the
    /// start, the middle and after 40 bytes, so httparse's vector scanners (16/32-byte blocks)
    /// see it as well as its scalar tail.
    #[test]
    fn every_byte_in_names_and_values_is_classified() {
        use crate::http1::{parse_response_head, Method};
        let long = "v".repeat(40);
        for b in 0..=255u8 {
            let c = b as char;
            for (prefix, suffix) in [("", "x"), ("x", "x"), (long.as_str(), "x")] {
                let mut name = prefix.as_bytes().to_vec();
                name.push(b);
                name.extend_from_slice(suffix.as_bytes());
                let mut value = format!("a{prefix}").into_bytes();
                value.push(b);
                value.extend_from_slice(suffix.as_bytes());
                // A colon ends a name by definition, so it only gets the value test.
                let name_case = (b != b':')
                    .then(|| ([&name[..], b": v"].concat(), is_valid_field(&name, b"v")));
                let value_case = (
                    [&b"X-A: "[..], &value[..]].concat(),
                    is_valid_field(b"X-A", &value),
                );
                for (field, expect_ok) in name_case.into_iter().chain([value_case]) {
                    let line = [&field[..], b"\r\n"].concat();
                    let req = [&b"GET / HTTP/1.1\r\nHost: h\r\n"[..], &line, b"\r\n"].concat();
                    let res = [
                        &b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n"[..],
                        &line,
                        b"\r\n",
                    ]
                    .concat();
                    let limits = Limits::default();
                    let got_req = matches!(parse_request_head(&req, &limits), Ok(Some(_)));
                    let got_res = matches!(
                        parse_response_head(&res, 64 * 1024, 100, Method::Get),
                        Ok(Some(_))
                    );
                    assert_eq!(
                        got_req,
                        expect_ok,
                        "request field {:?} (byte {b:#04x} {c:?})",
                        String::from_utf8_lossy(&field)
                    );
                    assert_eq!(
                        got_res,
                        expect_ok,
                        "response field {:?} (byte {b:#04x} {c:?})",
                        String::from_utf8_lossy(&field)
                    );
                }
            }
        }
    }

    #[test]
    fn bare_lf_is_400() {
        assert_eq!(
            err(b"GET / HTTP/1.1\nHost: h\r\n\r\n"),
            HeadError::BadRequest("bare LF line ending")
        );
        assert_eq!(
            err(b"GET / HTTP/1.1\r\nHost: h\n\r\n"),
            HeadError::BadRequest("bare LF line ending")
        );
        assert_eq!(
            err(b"GET / HTTP/1.1\r\nHost: h\r\n\n"),
            HeadError::BadRequest("bare LF line ending")
        );
    }
}

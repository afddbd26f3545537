//! Strict HTTP/1.1 wire handling: request/response head parsing (on top of `httparse`), the
//! validation rules that stop request smuggling, body framing, a zero-copy chunked decoder and
//! fresh head serialization.
//!
//! Invariants: nothing here allocates per header beyond the owned head copy, nothing panics on
//! input, and every rejection carries the status the client must see (400/413/414/431/501/505).
//! Parsed heads own a copy of their bytes so they can live across awaits while the connection's
//! read buffer moves on to the next pipelined request.

use std::mem::MaybeUninit;

/// A byte range into a head's own buffer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Span {
    pub start: u32,
    pub end: u32,
}

impl Span {
    pub fn get<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        &buf[self.start as usize..self.end as usize]
    }
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }
}

/// Request methods the router knows as bits; anything else is `Other` (still proxied).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Delete,
    Patch,
    Options,
    Connect,
    Trace,
    Other,
}

impl Method {
    pub const ALL: [Method; 9] = [
        Method::Get,
        Method::Head,
        Method::Post,
        Method::Put,
        Method::Delete,
        Method::Patch,
        Method::Options,
        Method::Connect,
        Method::Trace,
    ];

    pub fn from_bytes(b: &[u8]) -> Method {
        match b {
            b"GET" => Method::Get,
            b"HEAD" => Method::Head,
            b"POST" => Method::Post,
            b"PUT" => Method::Put,
            b"DELETE" => Method::Delete,
            b"PATCH" => Method::Patch,
            b"OPTIONS" => Method::Options,
            b"CONNECT" => Method::Connect,
            b"TRACE" => Method::Trace,
            _ => Method::Other,
        }
    }

    /// Parses a method name from config (case-sensitive, like the wire).
    pub fn from_name(s: &str) -> Option<Method> {
        match Method::from_bytes(s.as_bytes()) {
            Method::Other => None,
            m => Some(m),
        }
    }

    /// Bit for method sets (`Other` has no bit: only "any method" matches it).
    pub fn bit(self) -> u16 {
        match self {
            Method::Other => 0,
            m => 1 << (m as u16),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
            Method::Patch => "PATCH",
            Method::Options => "OPTIONS",
            Method::Connect => "CONNECT",
            Method::Trace => "TRACE",
            Method::Other => "_OTHER",
        }
    }

    /// Idempotent per RFC 9110 §9.2.2: safe to retry on a fresh upstream connection.
    pub fn is_idempotent(self) -> bool {
        matches!(
            self,
            Method::Get
                | Method::Head
                | Method::Put
                | Method::Delete
                | Method::Options
                | Method::Trace
        )
    }
}

/// Comma-separated method list for an `Allow` header from a method bit set.
pub fn allow_header_value(bits: u16) -> String {
    let mut s = String::new();
    for m in Method::ALL {
        if bits & m.bit() != 0 {
            if !s.is_empty() {
                s.push_str(", ");
            }
            s.push_str(m.as_str());
        }
    }
    s
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

/// Size limits applied while reading a request head.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Whole head (request line + headers + final CRLF) → 431 when exceeded.
    pub max_header_bytes: usize,
    /// Header count → 431 when exceeded.
    pub max_headers: usize,
    /// Request-target length → 414 when exceeded.
    pub max_uri_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_header_bytes: 16 * 1024,
            max_headers: 100,
            max_uri_bytes: 8 * 1024,
        }
    }
}

/// How a message body is delimited on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body at all.
    None,
    /// Exactly this many bytes follow (0 is allowed and means no body bytes).
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Response only: body runs until the upstream closes the connection.
    CloseDelimited,
}

/// Why a head was rejected. `status()` gives what the client sees; the connection is closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeadError {
    /// 400 with a short machine-readable reason (e.g. "content-length and transfer-encoding").
    BadRequest(&'static str),
    /// 431: head larger than `max_header_bytes`.
    HeaderTooLarge,
    /// 431: more than `max_headers` header fields.
    TooManyHeaders,
    /// 414: request-target longer than `max_uri_bytes`.
    UriTooLong,
    /// 501: a transfer-coding we do not implement (anything but a lone `chunked`, e.g.
    /// `gzip, chunked`), or the CONNECT method.
    NotImplemented(&'static str),
    /// 505: an HTTP version other than 1.0/1.1.
    VersionNotSupported,
}

impl HeadError {
    pub fn status(&self) -> u16 {
        match self {
            HeadError::BadRequest(_) => 400,
            HeadError::HeaderTooLarge | HeadError::TooManyHeaders => 431,
            HeadError::UriTooLong => 414,
            HeadError::NotImplemented(_) => 501,
            HeadError::VersionNotSupported => 505,
        }
    }

    pub fn detail(&self) -> &'static str {
        match self {
            HeadError::BadRequest(d) | HeadError::NotImplemented(d) => d,
            HeadError::HeaderTooLarge => "request header fields too large",
            HeadError::TooManyHeaders => "too many header fields",
            HeadError::UriTooLong => "request-target too long",
            HeadError::VersionNotSupported => "http version not supported",
        }
    }
}

/// One header field as spans into the owning head's buffer.
#[derive(Clone, Copy, Debug)]
pub struct HeaderSpan {
    pub name: Span,
    pub value: Span,
}

/// A validated request head. Owns a copy of the head bytes.
#[derive(Debug)]
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

/// Removes a `:port` suffix (handles `[v6]:port`).
fn strip_port(raw: &[u8]) -> &[u8] {
    if raw.first() == Some(&b'[') {
        return match raw.iter().position(|&b| b == b']') {
            Some(i) => &raw[..=i],
            None => raw,
        };
    }
    match raw.iter().rposition(|&b| b == b':') {
        Some(i) => &raw[..i],
        None => raw,
    }
}

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
    let form = classify_target(target_bytes, method)?;
    let (path, query, authority) = match form {
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
    };

    let mut headers = Vec::with_capacity(req.headers.len());
    let scan = scan_headers(head, req.headers, &mut headers)?;

    // Host (RFC 9112 §3.2): exactly one in HTTP/1.1, at most one in HTTP/1.0.
    if scan.host_count > 1 {
        return Err(HeadError::BadRequest("duplicate host"));
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
    // The absolute-form authority wins over the Host header (RFC 9112 §3.2.2).
    let host = authority.or(scan.host).unwrap_or_default();

    let body = request_framing(&scan, version)?;
    let v10 = version == Version::Http10;
    Ok(Some((
        RequestHead {
            buf: head.to_vec(),
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
    if !(100..=999).contains(&status) {
        return Err(HeadError::BadRequest("invalid status code"));
    }
    // httparse hands back "" for reasons with obs-text; take the raw bytes from the status line
    // instead: everything after "HTTP/1.x NNN ".
    let status_line_end = head.iter().position(|&b| b == b'\r').unwrap_or(head.len());
    let reason = if status_line_end > 13 {
        span_of(head, &head[13..status_line_end])
    } else {
        Span::default()
    };

    let mut headers = Vec::with_capacity(res.headers.len());
    let scan = scan_headers(head, res.headers, &mut headers)?;

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
    let body = if no_body {
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
    };
    let close = scan.conn_close
        || (version == Version::Http10 && !scan.conn_keep_alive)
        || body == BodyFraming::CloseDelimited;
    Ok(Some((
        ResponseHead {
            buf: head.to_vec(),
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

/// Header slots kept on the stack; larger configured limits fall back to one heap allocation.
const STACK_HEADER_SLOTS: usize = 128;

/// Longest chunk-size line (size, extensions and CRLF) the decoder accepts.
const MAX_CHUNK_LINE: usize = 4096;

/// Most trailer-section bytes (all trailer lines plus the final CRLF) the decoder accepts.
const MAX_TRAILER_BYTES: usize = 16 * 1024;

/// Returns the number of header slots to hand httparse and whether that number was capped below
/// `max_headers`. A header line takes at least 3 bytes, so more than `max_header_bytes / 3 + 1`
/// headers can only arrive in a head that is too large anyway; the cap keeps a silly configured
/// `max_headers` from turning into a huge allocation.
fn header_slot_count(max_headers: usize, max_header_bytes: usize) -> (usize, bool) {
    let cap = max_header_bytes / 3 + 1;
    if max_headers > cap {
        (cap, true)
    } else {
        (max_headers, false)
    }
}

fn incomplete<T>(len: usize, max_header_bytes: usize) -> Result<Option<T>, HeadError> {
    if len > max_header_bytes {
        Err(HeadError::HeaderTooLarge)
    } else {
        Ok(None)
    }
}

/// Skips leading CRLF pairs. `Ok(None)` = only CRLFs (or a lone trailing CR) so far.
fn skip_empty_lines(buf: &[u8]) -> Result<Option<usize>, HeadError> {
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

/// True for `HTTP/<d>.<d>` (or a prefix of it that already rules out 1.x) other than 1.0/1.1.
fn unsupported_version(v: &[u8]) -> bool {
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

fn map_parse_error(e: httparse::Error, rest: &[u8], capped: bool, request: bool) -> HeadError {
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
/// not could see a different message).
fn check_line_endings(head: &[u8]) -> Result<(), HeadError> {
    let bare = head
        .iter()
        .enumerate()
        .any(|(i, &b)| b == b'\n' && (i == 0 || head[i - 1] != b'\r'));
    if bare {
        Err(HeadError::BadRequest("bare LF line ending"))
    } else {
        Ok(())
    }
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        )
}

/// Span of `part` inside `base`, or an empty span if `part` does not point into `base`.
/// `base.len()` must fit in u32 (callers check the head size first).
fn span_of(base: &[u8], part: &[u8]) -> Span {
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

/// Sub-range `[from, to)` of `s`, relative to its start.
fn sub_span(s: Span, from: usize, to: usize) -> Span {
    Span {
        start: s.start + from as u32,
        end: s.start + to as u32,
    }
}

/// Splits `target[from..]` at the first '?' into (path, query).
fn split_query(target: Span, bytes: &[u8], from: usize) -> (Span, Option<Span>) {
    let tail = &bytes[from..];
    match tail.iter().position(|&b| b == b'?') {
        Some(q) => (
            sub_span(target, from, from + q),
            Some(sub_span(target, from + q + 1, bytes.len())),
        ),
        None => (sub_span(target, from, bytes.len()), None),
    }
}

enum TargetForm {
    Origin,
    Asterisk,
    Absolute {
        authority_start: usize,
        authority_end: usize,
    },
}

fn classify_target(t: &[u8], method: Method) -> Result<TargetForm, HeadError> {
    if t.is_empty() || !t.iter().all(|&b| (0x21..=0x7e).contains(&b)) {
        return Err(HeadError::BadRequest("invalid request-target"));
    }
    if t.contains(&b'#') {
        return Err(HeadError::BadRequest("fragment in request-target"));
    }
    if t == b"*" {
        return if method == Method::Options {
            Ok(TargetForm::Asterisk)
        } else {
            Err(HeadError::BadRequest("asterisk-form only with OPTIONS"))
        };
    }
    if t[0] == b'/' {
        return Ok(TargetForm::Origin);
    }
    let scheme_len = if starts_with_ignore_case(t, b"http://") {
        7
    } else if starts_with_ignore_case(t, b"https://") {
        8
    } else {
        return Err(HeadError::BadRequest("invalid request-target"));
    };
    let authority_len = t[scheme_len..]
        .iter()
        .position(|&b| b == b'/' || b == b'?')
        .unwrap_or(t.len() - scheme_len);
    let authority_end = scheme_len + authority_len;
    if !valid_authority(&t[scheme_len..authority_end]) {
        return Err(HeadError::BadRequest("invalid authority in request-target"));
    }
    Ok(TargetForm::Absolute {
        authority_start: scheme_len,
        authority_end,
    })
}

fn starts_with_ignore_case(s: &[u8], prefix: &[u8]) -> bool {
    s.len() >= prefix.len() && s[..prefix.len()].eq_ignore_ascii_case(prefix)
}

/// reg-name / IP-literal characters we accept in a host (no userinfo '@').
fn is_host_char(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'.' | b'-'
                | b'_'
                | b'~'
                | b'!'
                | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b'%'
        )
}

/// A plausible `host[:port]` / `[v6]:port` authority: non-empty host of allowed characters,
/// brackets only around an IP literal, port digits only.
fn valid_authority(a: &[u8]) -> bool {
    let port = if a.first() == Some(&b'[') {
        let Some(close) = a.iter().position(|&b| b == b']') else {
            return false;
        };
        let inner = &a[1..close];
        if inner.is_empty() || !inner.iter().all(|&b| b == b':' || is_host_char(b)) {
            return false;
        }
        match &a[close + 1..] {
            [] => return true,
            [b':', port @ ..] => port,
            _ => return false,
        }
    } else {
        let (host, port) = match a.iter().rposition(|&b| b == b':') {
            Some(c) => (&a[..c], &a[c + 1..]),
            None => (a, &a[a.len()..]),
        };
        if host.is_empty() || !host.iter().all(|&b| is_host_char(b)) {
            return false;
        }
        port
    };
    port.iter().all(u8::is_ascii_digit)
}

/// Transfer-Encoding codings seen across all TE header fields, in order.
#[derive(Default)]
struct TransferCodings {
    present: bool,
    count: usize,
    chunked_count: usize,
    last_chunked: bool,
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
    fn check_common(&self) -> Result<(), HeadError> {
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
struct HeaderScan {
    content_length: Option<u64>,
    te: TransferCodings,
    conn_close: bool,
    conn_keep_alive: bool,
    conn_upgrade: bool,
    upgrade_header: bool,
    host: Option<Span>,
    host_count: usize,
    expect_continue: bool,
    expect_other: bool,
}

fn scan_headers(
    head: &[u8],
    parsed: &[httparse::Header<'_>],
    out: &mut Vec<HeaderSpan>,
) -> Result<HeaderScan, HeadError> {
    let mut scan = HeaderScan::default();
    for h in parsed {
        let name = h.name.as_bytes();
        let value = h.value;
        if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
            return Err(HeadError::BadRequest("invalid header name"));
        }
        if value.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
            return Err(HeadError::BadRequest("control character in header value"));
        }
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

fn trim_ows(s: &[u8]) -> &[u8] {
    let start = s
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(s.len());
    let end = s
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map_or(start, |i| i + 1);
    &s[start..end]
}

/// Chunked transfer-coding decoder that yields data without copying.
#[derive(Debug, Default)]
pub struct ChunkedDecoder {
    state: ChunkState,
    /// Chunk size being parsed, then bytes of chunk data still to come.
    size: u64,
    /// Hex digits seen in the current size line.
    digits: u8,
    /// Bytes of the current size line (incl. extensions and CRLF).
    line_len: usize,
    /// Bytes of the trailer section so far (incl. the final CRLF).
    trailer_len: usize,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// Expecting the first hex digit of a chunk size.
    #[default]
    SizeStart,
    /// Inside the hex digits.
    Size,
    /// BWS after the size; only more BWS or ';' may follow.
    SizeWs,
    /// Inside chunk extensions, up to CR.
    Ext,
    /// CR of the size line seen; expecting LF.
    SizeLf,
    /// Chunk data; `size` bytes remain.
    Data,
    /// Expecting the CR after chunk data.
    DataCr,
    /// Expecting the LF after chunk data.
    DataLf,
    /// Start of a trailer line, or the CR of the final empty line.
    TrailerStart,
    /// Inside a trailer field name.
    TrailerName,
    /// Inside a trailer field value, up to CR.
    TrailerValue,
    /// CR of a trailer line seen; expecting LF.
    TrailerLf,
    /// CR of the final empty line seen; expecting LF.
    FinalLf,
    Done,
    Failed(&'static str),
}

/// A chunked-coding violation (bad size, overflow, missing CRLF, bad trailer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkError(pub &'static str);

impl ChunkedDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds `input`. Returns `(consumed, data)` where `data` is a range *within input* of body
    /// bytes to forward (possibly empty). Call again with the unconsumed rest until it returns
    /// consumed == 0 (needs more input) or `is_done()`. Trailers are consumed and dropped.
    pub fn decode(&mut self, input: &[u8]) -> Result<(usize, std::ops::Range<usize>), ChunkError> {
        let mut i = 0;
        loop {
            match self.state {
                ChunkState::Failed(e) => return Err(ChunkError(e)),
                ChunkState::Done => return Ok((i, i..i)),
                _ if i == input.len() => return Ok((i, i..i)),
                ChunkState::Data => {
                    let avail = input.len() - i;
                    let n = if self.size < avail as u64 {
                        self.size as usize
                    } else {
                        avail
                    };
                    self.size -= n as u64;
                    if self.size == 0 {
                        self.state = ChunkState::DataCr;
                    }
                    return Ok((i + n, i..i + n));
                }
                _ => {
                    if let Err(e) = self.step(input[i]) {
                        self.state = ChunkState::Failed(e);
                        return Err(ChunkError(e));
                    }
                    i += 1;
                }
            }
        }
    }

    /// Advances the framing state machine by one byte (never called in `Data`).
    fn step(&mut self, b: u8) -> Result<(), &'static str> {
        use ChunkState as S;
        match self.state {
            S::SizeStart | S::Size | S::SizeWs | S::Ext | S::SizeLf => {
                self.line_len += 1;
                if self.line_len > MAX_CHUNK_LINE {
                    return Err("chunk size line too long");
                }
            }
            S::TrailerStart | S::TrailerName | S::TrailerValue | S::TrailerLf | S::FinalLf => {
                self.trailer_len += 1;
                if self.trailer_len > MAX_TRAILER_BYTES {
                    return Err("trailer section too large");
                }
            }
            _ => {}
        }
        self.state = match (self.state, b) {
            (S::SizeStart | S::Size, _) if b.is_ascii_hexdigit() => {
                if self.digits >= 16 {
                    return Err("chunk size too large");
                }
                self.digits += 1;
                let d = match b {
                    b'0'..=b'9' => b - b'0',
                    b'a'..=b'f' => b - b'a' + 10,
                    _ => b - b'A' + 10,
                };
                self.size = (self.size << 4) | u64::from(d);
                S::Size
            }
            (S::SizeStart, _) => return Err("invalid chunk size"),
            (S::Size, b'\r') => S::SizeLf,
            (S::Size | S::SizeWs, b' ' | b'\t') => S::SizeWs,
            (S::Size | S::SizeWs, b';') => S::Ext,
            (S::Size | S::SizeWs, _) => return Err("invalid chunk size"),
            (S::Ext, b'\r') => S::SizeLf,
            (S::Ext, _) if is_ctl(b) => return Err("invalid chunk extension"),
            (S::Ext, _) => S::Ext,
            (S::SizeLf, b'\n') => {
                self.line_len = 0;
                self.digits = 0;
                if self.size == 0 {
                    S::TrailerStart
                } else {
                    S::Data
                }
            }
            (S::SizeLf, _) => return Err("expected LF after chunk size"),
            (S::DataCr, b'\r') => S::DataLf,
            (S::DataCr, _) => return Err("expected CRLF after chunk data"),
            (S::DataLf, b'\n') => S::SizeStart,
            (S::DataLf, _) => return Err("expected LF after chunk data"),
            (S::TrailerStart, b'\r') => S::FinalLf,
            (S::TrailerStart | S::TrailerName, _) if is_tchar(b) => S::TrailerName,
            (S::TrailerStart, _) => return Err("invalid trailer field"),
            (S::TrailerName, b':') => S::TrailerValue,
            (S::TrailerName, _) => return Err("invalid trailer field name"),
            (S::TrailerValue, b'\r') => S::TrailerLf,
            (S::TrailerValue, _) if is_ctl(b) => return Err("invalid trailer field value"),
            (S::TrailerValue, _) => S::TrailerValue,
            (S::TrailerLf, b'\n') => S::TrailerStart,
            (S::TrailerLf, _) => return Err("expected LF after trailer field"),
            (S::FinalLf, b'\n') => S::Done,
            (S::FinalLf, _) => return Err("expected LF after trailer section"),
            (S::Data | S::Done | S::Failed(_), _) => self.state,
        };
        Ok(())
    }

    /// True once the last-chunk, trailers and final CRLF have been consumed.
    pub fn is_done(&self) -> bool {
        self.state == ChunkState::Done
    }
}

/// Control characters other than HTAB (includes CR, LF and DEL).
fn is_ctl(b: u8) -> bool {
    (b < 0x20 && b != b'\t') || b == 0x7f
}

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
    HOP_BY_HOP.iter().any(|h| h.eq_ignore_ascii_case(name))
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

/// Appends `{len:x}\r\n`.
pub fn write_chunk_header(out: &mut Vec<u8>, len: usize) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut digits = [0u8; 2 * std::mem::size_of::<usize>()];
    let mut i = digits.len();
    let mut v = len;
    loop {
        i -= 1;
        digits[i] = HEX[v & 0xf];
        v >>= 4;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
    out.extend_from_slice(b"\r\n");
}

/// The terminating zero-length chunk with no trailers.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

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

/// Path normalization before routing and forwarding: percent-encoded unreserved characters
/// (`A-Z a-z 0-9 - . _ ~`, RFC 3986 §6.2.2.2) are decoded, so `/%61dmin` routes like `/admin`,
/// then dot segments are removed (§5.2.4). Returns `None` if a segment is an encoded dot segment
/// (`%2e`, `.%2E`, ...) — such paths are rejected with 400 rather than guessed at. Returns
/// `Cow::Borrowed` when nothing changes (the common case: no allocation).
pub fn normalize_path(path: &[u8]) -> Option<std::borrow::Cow<'_, [u8]>> {
    use std::borrow::Cow;
    if !path.contains(&b'%') {
        return remove_dot_segments(path);
    }
    if path.split(|&b| b == b'/').any(is_encoded_dot_segment) {
        return None;
    }
    match decode_unreserved(path) {
        None => remove_dot_segments(path),
        Some(decoded) => Some(Cow::Owned(remove_dot_segments(&decoded)?.into_owned())),
    }
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes `%XX` escapes of unreserved characters; `None` if there are none to decode.
fn decode_unreserved(path: &[u8]) -> Option<Vec<u8>> {
    let unreserved = |c: u8| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~');
    let mut out: Option<Vec<u8>> = None;
    let mut i = 0;
    while i < path.len() {
        if path[i] == b'%' && i + 2 < path.len() {
            if let (Some(h), Some(l)) = (hex_val(path[i + 1]), hex_val(path[i + 2])) {
                let c = h * 16 + l;
                if unreserved(c) {
                    out.get_or_insert_with(|| path[..i].to_vec()).push(c);
                    i += 3;
                    continue;
                }
            }
        }
        if let Some(o) = out.as_mut() {
            o.push(path[i]);
        }
        i += 1;
    }
    out
}

/// RFC 3986 §5.2.4 remove_dot_segments on a raw path. `None` on an encoded dot segment;
/// `Cow::Borrowed` when nothing changes.
fn remove_dot_segments(path: &[u8]) -> Option<std::borrow::Cow<'_, [u8]>> {
    use std::borrow::Cow;
    let mut has_dot_segment = false;
    for seg in path.split(|&b| b == b'/') {
        match seg {
            b"." | b".." => has_dot_segment = true,
            _ if is_encoded_dot_segment(seg) => return None,
            _ => {}
        }
    }
    if !has_dot_segment || path.first() != Some(&b'/') {
        return Some(Cow::Borrowed(path));
    }
    // Segment stack: a "." or ".." as the last segment leaves a trailing '/' behind, which an
    // empty final segment represents.
    let mut segments: Vec<&[u8]> = Vec::new();
    let mut iter = path[1..].split(|&b| b == b'/').peekable();
    while let Some(seg) = iter.next() {
        let last = iter.peek().is_none();
        match seg {
            b"." => {}
            b".." => {
                segments.pop();
            }
            _ => {
                segments.push(seg);
                continue;
            }
        }
        if last {
            segments.push(b"");
        }
    }
    let mut out = Vec::with_capacity(path.len());
    for seg in &segments {
        out.push(b'/');
        out.extend_from_slice(seg);
    }
    if out.is_empty() {
        out.push(b'/');
    }
    Some(Cow::Owned(out))
}

/// A segment made only of `.` and `%2e`/`%2E`, at least one of them encoded, that decodes to
/// "." or "..".
fn is_encoded_dot_segment(seg: &[u8]) -> bool {
    let mut dots = 0;
    let mut encoded = false;
    let mut i = 0;
    while i < seg.len() {
        if seg[i] == b'.' {
            i += 1;
        } else if seg[i] == b'%'
            && seg.get(i + 1) == Some(&b'2')
            && matches!(seg.get(i + 2), Some(b'e' | b'E'))
        {
            encoded = true;
            i += 3;
        } else {
            return false;
        }
        dots += 1;
        if dots > 2 {
            return false;
        }
    }
    encoded && dots > 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;

    fn parse(s: &[u8]) -> Result<Option<(RequestHead, usize)>, HeadError> {
        parse_request_head(s, &Limits::default())
    }

    fn ok(s: &[u8]) -> (RequestHead, usize) {
        match parse(s) {
            Ok(Some(r)) => r,
            other => panic!(
                "expected a head for {:?}, got {other:?}",
                String::from_utf8_lossy(s)
            ),
        }
    }

    fn err(s: &[u8]) -> HeadError {
        match parse(s) {
            Err(e) => e,
            other => panic!(
                "expected an error for {:?}, got {other:?}",
                String::from_utf8_lossy(s)
            ),
        }
    }

    /// A GET with `extra` header lines (each ending in CRLF) after `Host: h`.
    fn get_with(extra: &str) -> Vec<u8> {
        format!("GET / HTTP/1.1\r\nHost: h\r\n{extra}\r\n").into_bytes()
    }

    fn post_with(extra: &str) -> Vec<u8> {
        format!("POST /p HTTP/1.1\r\nHost: h\r\n{extra}\r\n").into_bytes()
    }

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

    /// Small deterministic PRNG for split points and fuzzing.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

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
    fn query_splits_at_first_question_mark() {
        let (h, _) = ok(b"GET /a?b=1?c HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(h.path(), b"/a");
        assert_eq!(h.query(), Some(&b"b=1?c"[..]));
        let (h, _) = ok(b"GET /a? HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(h.query(), Some(&b""[..]));
        let (h, _) = ok(b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(h.query(), None);
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

    #[test]
    fn every_prefix_is_incomplete() {
        let raw = b"\r\nPOST /x?y HTTP/1.1\r\nHost: h:8080\r\nContent-Length: 10\r\nX: y\r\n\r\n";
        for i in 0..raw.len() {
            assert!(parse(&raw[..i]).unwrap().is_none(), "prefix {i}");
        }
        assert_eq!(ok(raw).1, raw.len());
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
            "a_b-c~d%41",
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

    // ---- request-target forms ----

    #[test]
    fn asterisk_form() {
        let (h, _) = ok(b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(h.path(), b"*");
        assert_eq!(h.query(), None);
        assert_eq!(
            err(b"GET * HTTP/1.1\r\nHost: h\r\n\r\n"),
            HeadError::BadRequest("asterisk-form only with OPTIONS")
        );
    }

    #[test]
    fn connect_and_authority_form() {
        let e = err(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n");
        assert_eq!(e, HeadError::NotImplemented("CONNECT not supported"));
        assert_eq!(e.status(), 501);
        assert_eq!(
            err(b"GET example.com:443 HTTP/1.1\r\nHost: h\r\n\r\n"),
            HeadError::BadRequest("invalid request-target")
        );
    }

    #[test]
    fn absolute_form() {
        let (h, _) = ok(b"GET http://Example.com:8080/a/b?x=1 HTTP/1.1\r\nHost: other\r\n\r\n");
        assert_eq!(h.host.get(&h.buf), b"Example.com:8080");
        assert_eq!(h.path(), b"/a/b");
        assert_eq!(h.query(), Some(&b"x=1"[..]));
        assert_eq!(h.target(), b"http://Example.com:8080/a/b?x=1");

        let (h, _) = ok(b"GET HTTPS://h2 HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(h.host.get(&h.buf), b"h2");
        assert!(h.path.is_empty());
        assert_eq!(h.query(), None);

        let (h, _) = ok(b"GET http://h2?q HTTP/1.1\r\nHost: h\r\n\r\n");
        assert!(h.path.is_empty());
        assert_eq!(h.query(), Some(&b"q"[..]));

        // HTTP/1.0 without Host routes on the absolute-form authority.
        let (h, _) = ok(b"GET http://[::1]:81/ HTTP/1.0\r\n\r\n");
        assert_eq!(h.host.get(&h.buf), b"[::1]:81");
        assert_eq!(h.path(), b"/");

        for raw in [
            &b"GET ftp://h/ HTTP/1.1\r\nHost: h\r\n\r\n"[..],
            b"GET http://user@h/ HTTP/1.1\r\nHost: h\r\n\r\n",
            b"GET http:///x HTTP/1.1\r\nHost: h\r\n\r\n",
            b"GET http:/h/x HTTP/1.1\r\nHost: h\r\n\r\n",
            b"GET http://h:x/ HTTP/1.1\r\nHost: h\r\n\r\n",
        ] {
            assert!(
                matches!(err(raw), HeadError::BadRequest(_)),
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
        // Still needs a Host header in HTTP/1.1.
        assert_eq!(
            err(b"GET http://h/ HTTP/1.1\r\n\r\n"),
            HeadError::BadRequest("missing host")
        );
    }

    #[test]
    fn target_characters() {
        assert_eq!(
            err(b"GET /a#frag HTTP/1.1\r\nHost: h\r\n\r\n"),
            HeadError::BadRequest("fragment in request-target")
        );
        assert_eq!(
            err(b"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: h\r\n\r\n"),
            HeadError::BadRequest("invalid request-target")
        );
        assert_eq!(
            err(b"GET a/b HTTP/1.1\r\nHost: h\r\n\r\n"),
            HeadError::BadRequest("invalid request-target")
        );
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

    // ---- chunked decoding ----

    /// Feeds `pieces` one after another through a decoder the way a connection would (keeping
    /// unconsumed bytes), returning the body and the bytes left after the end.
    fn decode_pieces(pieces: &[&[u8]]) -> Result<(Vec<u8>, Vec<u8>, bool), ChunkError> {
        let mut dec = ChunkedDecoder::new();
        let mut pending = Vec::new();
        let mut body = Vec::new();
        for piece in pieces {
            pending.extend_from_slice(piece);
            while !dec.is_done() {
                let (consumed, data) = dec.decode(&pending)?;
                assert!(consumed <= pending.len());
                assert!(data.start <= data.end && data.end <= consumed);
                body.extend_from_slice(&pending[data]);
                pending.drain(..consumed);
                if consumed == 0 {
                    break;
                }
            }
        }
        Ok((body, pending, dec.is_done()))
    }

    fn decode_all(input: &[u8]) -> Result<(Vec<u8>, Vec<u8>, bool), ChunkError> {
        decode_pieces(&[input])
    }

    #[test]
    fn chunked_basic() {
        let (body, rest, done) = decode_all(b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n").unwrap();
        assert_eq!(body, b"hello world");
        assert!(rest.is_empty());
        assert!(done);

        let (body, _, done) =
            decode_all(b"A\r\n0123456789\r\na\r\nabcdefghij\r\n0\r\n\r\n").unwrap();
        assert_eq!(body, b"0123456789abcdefghij");
        assert!(done);

        let (body, _, done) = decode_all(b"0\r\n\r\n").unwrap();
        assert!(body.is_empty() && done);

        // Leading zeros are fine.
        let (body, _, done) = decode_all(b"0005\r\nhello\r\n000\r\n\r\n").unwrap();
        assert_eq!(body, b"hello");
        assert!(done);
    }

    #[test]
    fn chunked_stops_at_end() {
        let (body, rest, done) = decode_all(b"3\r\nabc\r\n0\r\n\r\nGET / HTTP/1.1\r\n").unwrap();
        assert_eq!(body, b"abc");
        assert_eq!(rest, b"GET / HTTP/1.1\r\n");
        assert!(done);
        let mut dec = ChunkedDecoder::new();
        let input = b"0\r\n\r\nXYZ";
        assert_eq!(dec.decode(input).unwrap(), (5, 5..5));
        assert!(dec.is_done());
        assert_eq!(dec.decode(b"XYZ").unwrap(), (0, 0..0));
    }

    #[test]
    fn chunked_data_range_is_within_input() {
        let mut dec = ChunkedDecoder::new();
        let input = b"4\r\nabcd\r\n0\r\n\r\n";
        let (consumed, data) = dec.decode(input).unwrap();
        assert_eq!((consumed, data.clone()), (7, 3..7));
        assert_eq!(&input[data], b"abcd");
        let (consumed, data) = dec.decode(&input[7..]).unwrap();
        assert_eq!(consumed, 7);
        assert!(data.is_empty());
        assert!(dec.is_done());
        assert_eq!(dec.decode(b"").unwrap(), (0, 0..0));
    }

    #[test]
    fn chunked_extensions_and_trailers() {
        let (body, _, done) =
            decode_all(b"5;name=value;q=\"a b\"\r\nhello\r\n5 ; x\r\nworld\r\n0;last\r\n\r\n")
                .unwrap();
        assert_eq!(body, b"helloworld");
        assert!(done);
        let (body, rest, done) =
            decode_all(b"2\r\nhi\r\n0\r\nExpires: never\r\nX-Sum:\tabc \r\n\r\nnext").unwrap();
        assert_eq!(body, b"hi");
        assert_eq!(rest, b"next");
        assert!(done);
    }

    #[test]
    fn chunked_errors() {
        for bad in [
            &b"G\r\n"[..],
            b"\r\n",
            b";ext\r\n",
            b"+5\r\nhello\r\n",
            b"-5\r\n",
            b"0x5\r\nhello\r\n",
            b" 5\r\nhello\r\n",
            b"5 \r\nhello\r\n",
            b"5\nhello\r\n",
            b"5\r\rhello\r\n",
            b"5\r\nhelloX\r\n",
            b"5\r\nhello\n0\r\n\r\n",
            b"5\r\nhello\r\r",
            b"10000000000000000\r\n",
            b"00000000000000001\r\n",
            b"5;a\x01b\r\nhello\r\n",
            b"5;a\nhello\r\n",
            b"0\r\n\n",
            b"0\r\nFoo: bar\n\r\n",
            b"0\r\n folded: x\r\n\r\n",
            b"0\r\nNoColon\r\n\r\n",
            b"0\r\n: empty\r\n\r\n",
            b"0\r\nX: a\x00b\r\n\r\n",
            b"0\r\n\rX",
        ] {
            let r = decode_all(bad);
            assert!(r.is_err(), "{:?} -> {r:?}", String::from_utf8_lossy(bad));
        }
        // Once failed, the decoder stays failed.
        let mut dec = ChunkedDecoder::new();
        assert!(dec.decode(b"Z").is_err());
        assert!(dec.decode(b"5\r\nhello\r\n").is_err());
        assert!(dec.decode(b"").is_err());
    }

    #[test]
    fn chunked_size_limits() {
        // 16 hex digits are accepted (size line parses; data just has not arrived yet).
        let mut dec = ChunkedDecoder::new();
        assert_eq!(dec.decode(b"ffffffffffffffff\r\nab").unwrap(), (20, 18..20));
        assert!(!dec.is_done());

        let mut line = b"1;".to_vec();
        line.extend_from_slice(&vec![b'a'; MAX_CHUNK_LINE - 4]);
        line.extend_from_slice(b"\r\nx\r\n0\r\n\r\n");
        assert_eq!(decode_all(&line).unwrap().0, b"x");
        let mut line = b"1;".to_vec();
        line.extend_from_slice(&vec![b'a'; MAX_CHUNK_LINE - 3]);
        line.extend_from_slice(b"\r\nx\r\n0\r\n\r\n");
        assert_eq!(
            decode_all(&line).unwrap_err(),
            ChunkError("chunk size line too long")
        );

        let mut trailers = b"0\r\n".to_vec();
        while trailers.len() < MAX_TRAILER_BYTES + 100 {
            trailers.extend_from_slice(b"X-Trailer: some value here\r\n");
        }
        trailers.extend_from_slice(b"\r\n");
        assert_eq!(
            decode_all(&trailers).unwrap_err(),
            ChunkError("trailer section too large")
        );
    }

    fn encode_chunked(rng: &mut Rng, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut rest = body;
        while !rest.is_empty() {
            let n = 1 + rng.below(rest.len().min(40));
            write_chunk_header(&mut out, n);
            if rng.below(3) == 0 {
                // Sneak an extension in before the CRLF.
                out.truncate(out.len() - 2);
                out.extend_from_slice(b";ext=\"v\"\r\n");
            }
            out.extend_from_slice(&rest[..n]);
            out.extend_from_slice(b"\r\n");
            rest = &rest[n..];
        }
        if rng.below(2) == 0 {
            out.extend_from_slice(LAST_CHUNK);
        } else {
            out.extend_from_slice(b"0\r\nX-T: 1\r\nY: two words\r\n\r\n");
        }
        out
    }

    #[test]
    fn chunked_every_split_point() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let body: Vec<u8> = (0..200u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut encoded = encode_chunked(&mut rng, &body);
        encoded.extend_from_slice(b"TAIL");
        for split in 0..=encoded.len() {
            let (got, rest, done) = decode_pieces(&[&encoded[..split], &encoded[split..]]).unwrap();
            assert_eq!(got, body, "split at {split}");
            assert_eq!(rest, b"TAIL");
            assert!(done);
        }
    }

    #[test]
    fn chunked_one_byte_at_a_time() {
        let mut rng = Rng(42);
        let body: Vec<u8> = (0..500u32).map(|i| (i % 256) as u8).collect();
        let encoded = encode_chunked(&mut rng, &body);
        let pieces: Vec<&[u8]> = encoded.chunks(1).collect();
        let (got, rest, done) = decode_pieces(&pieces).unwrap();
        assert_eq!(got, body);
        assert!(rest.is_empty());
        assert!(done);
    }

    #[test]
    fn chunked_random_splits() {
        let mut rng = Rng(0xdead_beef_cafe_f00d);
        for round in 0..300 {
            let len = rng.below(300);
            let body: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            let encoded = encode_chunked(&mut rng, &body);
            let mut pieces = Vec::new();
            let mut at = 0;
            while at < encoded.len() {
                let n = 1 + rng.below(12);
                let end = (at + n).min(encoded.len());
                pieces.push(&encoded[at..end]);
                at = end;
            }
            let (got, rest, done) = decode_pieces(&pieces).unwrap();
            assert_eq!(got, body, "round {round}");
            assert!(rest.is_empty());
            assert!(done);
        }
    }

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

    #[test]
    fn normalize_path_cases() {
        fn norm(p: &str) -> Option<String> {
            normalize_path(p.as_bytes()).map(|c| String::from_utf8(c.into_owned()).unwrap())
        }
        for (input, want) in [
            ("/a/./b", "/a/b"),
            ("/a/../b", "/b"),
            ("/../a", "/a"),
            ("/a/b/..", "/a/"),
            ("/a/.", "/a/"),
            ("/.", "/"),
            ("/..", "/"),
            ("/./", "/"),
            ("/a/./", "/a/"),
            ("/a//b/../c", "/a//c"),
            ("/a/b/../../../c", "/c"),
            ("/a/b/c/./../../g", "/a/g"),
            ("/a/b/../../..", "/"),
        ] {
            assert_eq!(norm(input).as_deref(), Some(want), "{input}");
            assert!(matches!(
                normalize_path(input.as_bytes()),
                Some(Cow::Owned(_))
            ));
        }
        for unchanged in [
            "/",
            "/a/b/c",
            "/a/.../b",
            "/a/..b/c.",
            "/a//b/",
            "*",
            "",
            "a/../b",
        ] {
            assert!(
                matches!(normalize_path(unchanged.as_bytes()), Some(Cow::Borrowed(b)) if b == unchanged.as_bytes()),
                "{unchanged}"
            );
        }
        for (input, want) in [
            ("/a%2e/b", "/a./b"),
            ("/%2e%2e%2e/x", "/.../x"),
            ("/%61dmin", "/admin"),
            ("/a%7Eb%2Dc", "/a~b-c"),
            ("/x%2Fy%20z", "/x%2Fy%20z"),
            ("/%61/../b", "/b"),
        ] {
            assert_eq!(norm(input).as_deref(), Some(want), "{input}");
        }
        for encoded in [
            "/%2e/a",
            "/%2E%2e/a",
            "/.%2e/a",
            "/%2e./a",
            "/a/%2e",
            "/a/%2E%2E",
            "/x/%2e%2e/y",
        ] {
            assert_eq!(norm(encoded), None, "{encoded}");
        }
    }

    // ---- robustness ----

    #[test]
    fn no_panics_on_garbage() {
        let mut rng = Rng(7);
        let seeds: [&[u8]; 4] = [
            b"GET http://h:1/a?b HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nConnection: upgrade\r\nUpgrade: x\r\n\r\n",
            b"OPTIONS * HTTP/1.0\r\nContent-Length: 12\r\nExpect: 100-continue\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"5;x=y\r\nhello\r\n0\r\nT: v\r\n\r\n",
        ];
        let alphabet = b"\r\n :;,/?#%*.[]@\t\x00\x7f\xffHTP10aZ";
        let limits = Limits {
            max_header_bytes: 256,
            max_headers: 4,
            max_uri_bytes: 32,
        };
        for _ in 0..20_000 {
            let mut input = seeds[rng.below(seeds.len())].to_vec();
            for _ in 0..1 + rng.below(4) {
                let pos = rng.below(input.len() + 1);
                match rng.below(3) {
                    0 if pos < input.len() => input[pos] = alphabet[rng.below(alphabet.len())],
                    1 => input.insert(pos, alphabet[rng.below(alphabet.len())]),
                    _ if pos < input.len() => {
                        input.remove(pos);
                    }
                    _ => {}
                }
            }
            let cut = rng.below(input.len() + 1);
            for buf in [&input[..], &input[..cut]] {
                if let Ok(Some((h, n))) = parse_request_head(buf, &limits) {
                    assert!(n <= buf.len());
                    let _ = (h.path(), h.query(), h.target(), h.method_bytes());
                    let _ = h.headers().count();
                    let _ = h.host_for_routing(&mut String::new());
                    let _ = normalize_path(h.path());
                }
                let _ = parse_request_head(buf, &Limits::default());
                if let Ok(Some((r, n))) = parse_response_head(buf, 256, 4, Method::Get) {
                    assert!(n <= buf.len());
                    let _ = (r.reason.get(&r.buf), r.headers().count());
                }
                let _ = decode_all(buf);
                let _ = normalize_path(buf);
            }
        }
    }
}

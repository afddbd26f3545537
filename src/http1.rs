//! Strict HTTP/1.1 wire handling: request/response head parsing (on top of `httparse`), the
//! validation rules that stop request smuggling, body framing, a zero-copy chunked decoder and
//! fresh head serialization.
//!
//! Invariants: nothing here allocates per header beyond the owned head copy, nothing panics on
//! input, and every rejection carries the status the client must see (400/413/414/431/501/505).
//! Parsed heads own a copy of their bytes so they can live across awaits while the connection's
//! read buffer moves on to the next pipelined request.

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
    /// 501: a transfer-coding other than chunked (e.g. `gzip, chunked` is fine, `gzip` alone is 400,
    /// `foo, chunked` with unknown `foo` is 501).
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
    /// Path part of the target (origin-form, or the path of an absolute-form target; "/" when
    /// absolute-form has no path; `*` for asterisk-form).
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
    let _ = (buf, limits);
    todo!("http1 helper")
}

/// Parses and validates an upstream response head. `request_method` decides whether a body
/// follows (HEAD never has one). Broken framing is an error (the proxy answers 502).
pub fn parse_response_head(
    buf: &[u8],
    max_header_bytes: usize,
    max_headers: usize,
    request_method: Method,
) -> Result<Option<(ResponseHead, usize)>, HeadError> {
    let _ = (buf, max_header_bytes, max_headers, request_method);
    todo!("http1 helper")
}

/// Chunked transfer-coding decoder that yields data without copying.
#[derive(Debug, Default)]
pub struct ChunkedDecoder {
    _state: (),
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
    pub fn decode(
        &mut self,
        input: &[u8],
    ) -> Result<(usize, std::ops::Range<usize>), ChunkError> {
        let _ = input;
        todo!("http1 helper")
    }

    /// True once the last-chunk, trailers and final CRLF have been consumed.
    pub fn is_done(&self) -> bool {
        todo!("http1 helper")
    }
}

/// True for hop-by-hop headers that a proxy never forwards (RFC 9110 §7.6.1), compared
/// case-insensitively: connection, keep-alive, proxy-connection, te, trailer, transfer-encoding,
/// upgrade, proxy-authenticate, proxy-authorization.
pub fn is_hop_by_hop(name: &[u8]) -> bool {
    let _ = name;
    todo!("http1 helper")
}

/// True if `name` is listed as a token in any `Connection` header value of `headers`
/// (case-insensitive), meaning it must not be forwarded.
pub fn named_in_connection<'a>(
    mut headers: impl Iterator<Item = (&'a [u8], &'a [u8])>,
    name: &[u8],
) -> bool {
    let _ = (&mut headers, name);
    todo!("http1 helper")
}

/// Appends `{len:x}\r\n`.
pub fn write_chunk_header(out: &mut Vec<u8>, len: usize) {
    let _ = (out, len);
    todo!("http1 helper")
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
    let _ = (out, status);
    todo!("http1 helper")
}

/// Canonical reason phrase for a status code ("" for unknown codes).
pub fn reason_phrase(status: u16) -> &'static str {
    let _ = status;
    todo!("http1 helper")
}

/// Parses a Content-Length value strictly: 1+ ASCII digits only, no sign/space/hex, no overflow.
pub fn parse_content_length(v: &[u8]) -> Option<u64> {
    let _ = v;
    todo!("http1 helper")
}

/// RFC 3986 §5.2.4 remove_dot_segments on a raw path. Returns `None` if a segment is an encoded
/// dot segment (`%2e`, `.%2E`, ...) — such paths are rejected with 400 rather than guessed at.
/// Returns `Cow::Borrowed` when nothing changes (the common case: no allocation).
pub fn normalize_path(path: &[u8]) -> Option<std::borrow::Cow<'_, [u8]>> {
    let _ = path;
    todo!("http1 helper")
}

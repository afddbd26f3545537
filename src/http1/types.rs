//! The HTTP/1.1 vocabulary every part of `http1` shares: byte spans into a head's buffer,
//! methods (and `Allow` values), versions, head size limits, body framing, head rejections with
//! their status, header spans, and the token/whitespace character rules.

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
    pub const fn status(&self) -> u16 {
        match self {
            HeadError::BadRequest(_) => 400,
            HeadError::HeaderTooLarge | HeadError::TooManyHeaders => 431,
            HeadError::UriTooLong => 414,
            HeadError::NotImplemented(_) => 501,
            HeadError::VersionNotSupported => 505,
        }
    }

    pub const fn detail(&self) -> &'static str {
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

/// Whether a parsed header field has the bytes the gateway relies on: a non-empty token name,
/// and a value with no control byte but HTAB (obs-text allowed). httparse returns only such
/// fields (pinned by `head::tests::every_byte_in_names_and_values_is_classified`); debug
/// builds and the head-parser fuzz targets assert it.
pub fn is_valid_field(name: &[u8], value: &[u8]) -> bool {
    !name.is_empty() && name.iter().all(|&b| is_tchar(b)) && !value.iter().any(|&b| is_ctl(b))
}

/// A control character other than HTAB (includes CR, LF, NUL and DEL): never allowed in a
/// field value, a chunk extension or a trailer.
pub fn is_ctl(b: u8) -> bool {
    (b < 0x20 && b != b'\t') || b == 0x7f
}

pub fn is_tchar(b: u8) -> bool {
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

/// `s` without leading and trailing spaces and tabs (HTTP optional whitespace).
pub fn trim_ows(s: &[u8]) -> &[u8] {
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

//! Strict HTTP/1.1 wire handling: request/response head parsing (on top of `httparse`), the
//! validation rules that stop request smuggling, body framing, a zero-copy chunked decoder and
//! fresh head serialization.
//!
//! Invariants: nothing here allocates per header beyond the owned head copy, nothing panics on
//! input, and every rejection carries the status the client must see (400/413/414/431/501/505).
//! Parsed heads own a copy of their bytes so they can live across awaits while the connection's
//! read buffer moves on to the next pipelined request.
//!
//! Layout: this file owns the shared vocabulary (spans, methods, versions, limits, body framing,
//! rejections) and re-exports everything public, so callers only ever name `http1::X`.
//! `request` and `response` parse heads, `head` holds the header-section scanning both share,
//! `target` knows request-target and authority syntax, `chunked` decodes and frames chunked
//! bodies, `serialize` writes fresh heads and knows what is hop-by-hop, `path` normalizes
//! request paths before routing, and `query` is the one reading of query strings.

mod chunked;
mod head;
mod path;
pub mod pct;
pub mod query;
mod recycle;
mod request;
mod response;
mod serialize;
mod target;
mod value;

pub use chunked::{write_chunk_header, ChunkError, ChunkedDecoder, LAST_CHUNK};
pub use head::parse_content_length;
pub use path::{
    normalize_path, normalize_path_with, EscapedSlashes, PathOptions, PathParams, PathReject,
};
pub use request::{parse_request_head, RequestHead};
pub use response::{parse_response_head, ResponseHead};
pub use serialize::{
    end_response_head, is_hop_by_hop, named_in_connection, push_decimal, reason_phrase,
    write_connection, write_header, write_response_head, write_status_line, Framing, HeadEnd,
};
pub use value::{is_safe_header_value, MAX_DERIVED_VALUE_LEN};

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

#[cfg(test)]
mod tests {
    use super::*;

    // ---- shared test helpers (used by the submodules' tests) ----

    pub(super) fn parse(s: &[u8]) -> Result<Option<(RequestHead, usize)>, HeadError> {
        parse_request_head(s, &Limits::default())
    }

    pub(super) fn ok(s: &[u8]) -> (RequestHead, usize) {
        match parse(s) {
            Ok(Some(r)) => r,
            other => panic!(
                "expected a head for {:?}, got {other:?}",
                String::from_utf8_lossy(s)
            ),
        }
    }

    pub(super) fn err(s: &[u8]) -> HeadError {
        match parse(s) {
            Err(e) => e,
            other => panic!(
                "expected an error for {:?}, got {other:?}",
                String::from_utf8_lossy(s)
            ),
        }
    }

    /// A GET with `extra` header lines (each ending in CRLF) after `Host: h`.
    pub(super) fn get_with(extra: &str) -> Vec<u8> {
        format!("GET / HTTP/1.1\r\nHost: h\r\n{extra}\r\n").into_bytes()
    }

    pub(super) fn post_with(extra: &str) -> Vec<u8> {
        format!("POST /p HTTP/1.1\r\nHost: h\r\n{extra}\r\n").into_bytes()
    }

    /// Small deterministic PRNG for split points and fuzzing.
    pub(super) struct Rng(pub(super) u64);
    impl Rng {
        pub(super) fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        pub(super) fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    /// Feeds `pieces` one after another through a decoder the way a connection would (keeping
    /// unconsumed bytes), returning the body and the bytes left after the end.
    pub(super) fn decode_pieces(pieces: &[&[u8]]) -> Result<(Vec<u8>, Vec<u8>, bool), ChunkError> {
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

    pub(super) fn decode_all(input: &[u8]) -> Result<(Vec<u8>, Vec<u8>, bool), ChunkError> {
        decode_pieces(&[input])
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

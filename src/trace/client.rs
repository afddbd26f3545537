//! The OTLP collector endpoint (`http://host[:port][/path]`) and a tiny blocking HTTP/1.1
//! client that POSTs one body at a time over a reused keep-alive connection.
//!
//! Runs only on the exporter thread, never on a worker: it resolves host names and blocks on
//! sockets. Every operation is bounded by one deadline (connect, write, read, body); a reused
//! connection that turns out closed before any response byte is retried once on a fresh one.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// Path used when the endpoint URL has none (the OTLP/HTTP traces path).
pub const DEFAULT_PATH: &str = "/v1/traces";
/// Largest response head accepted from the collector.
const MAX_HEAD: usize = 16 * 1024;
/// Largest response body read (and discarded) from the collector.
const MAX_BODY: usize = 4 * 1024 * 1024;

/// A validated collector endpoint. `host` is an IPv4 literal, an IPv6 literal (without
/// brackets) or a host name, resolved on the exporter thread at connect time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    /// Request target, starting with `/` (may carry a query).
    pub path: String,
}

impl Endpoint {
    /// The `Host` header value (`host:port`, IPv6 in brackets).
    pub fn host_header(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "http://{}{}", self.host_header(), self.path)
    }
}

/// Parses and validates a collector URL: `http://` only (https is not supported yet), host
/// as IPv4, `[IPv6]` or a host name, optional port (default 80), path default `/v1/traces`.
/// No name resolution happens here.
pub fn parse_endpoint(s: &str) -> Result<Endpoint, String> {
    let s = s.trim();
    let lower = s.to_ascii_lowercase();
    if lower.starts_with("https://") {
        return Err(format!(
            "OTLP endpoint {s:?}: https is not supported yet (no TLS in the exporter); \
             use an http:// endpoint, e.g. a local collector"
        ));
    }
    if !lower.starts_with("http://") {
        return Err(format!(
            "OTLP endpoint {s:?}: must start with http:// (e.g. http://127.0.0.1:4318/v1/traces)"
        ));
    }
    let rest = &s["http://".len()..];
    if let Some(c) = rest.chars().find(|c| !c.is_ascii_graphic()) {
        return Err(format!(
            "OTLP endpoint {s:?}: character {c:?} is not allowed"
        ));
    }
    if rest.contains('#') {
        return Err(format!(
            "OTLP endpoint {s:?}: fragments (#) are not allowed"
        ));
    }
    let split = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(split);
    if authority.contains('@') {
        return Err(format!(
            "OTLP endpoint {s:?}: user info (user@host) is not supported"
        ));
    }
    let (host, port) =
        split_host_port(authority).map_err(|e| format!("OTLP endpoint {s:?}: {e}"))?;
    let path = match path {
        "" | "/" => DEFAULT_PATH.to_string(),
        p if p.starts_with('/') => p.to_string(),
        _ => return Err(format!("OTLP endpoint {s:?}: path must start with /")),
    };
    Ok(Endpoint { host, port, path })
}

fn split_host_port(authority: &str) -> Result<(String, u16), String> {
    if authority.is_empty() {
        return Err("missing host".into());
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let end = v6.find(']').ok_or("unterminated [IPv6] host")?;
        let addr: Ipv6Addr = v6[..end]
            .parse()
            .map_err(|_| format!("invalid IPv6 address {:?}", &v6[..end]))?;
        let after = &v6[end + 1..];
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or("unexpected text after ]")?),
        };
        (addr.to_string(), port)
    } else {
        let (h, p) = match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        };
        if h.is_empty() {
            return Err("missing host".into());
        }
        if h.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
            let ip: Ipv4Addr = h
                .parse()
                .map_err(|_| format!("invalid IPv4 address {h:?}"))?;
            (ip.to_string(), p)
        } else {
            check_hostname(h)?;
            (h.to_ascii_lowercase(), p)
        }
    };
    let port = match port {
        None => 80,
        Some(p) => parse_port(p)?,
    };
    Ok((host, port))
}

fn parse_port(p: &str) -> Result<u16, String> {
    if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("invalid port {p:?}"));
    }
    match p.parse::<u32>() {
        Ok(n @ 1..=65535) => Ok(n as u16),
        _ => Err(format!("port {p:?} out of range 1-65535")),
    }
}

fn check_hostname(h: &str) -> Result<(), String> {
    let ok = h.len() <= 253
        && h.trim_end_matches('.').split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if ok {
        Ok(())
    } else {
        Err(format!("invalid host name {h:?}"))
    }
}

/// Why a POST failed.
#[derive(Debug)]
pub(crate) enum PostError {
    /// Name resolution or TCP connect failed.
    Connect(io::Error),
    /// Reading or writing failed (including timeouts and early close).
    Io(io::Error),
    /// The collector's response was not valid HTTP/1.x or was too large.
    Protocol(&'static str),
    /// The collector answered with a non-2xx status.
    Status(u16),
}

impl fmt::Display for PostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PostError::Connect(e) => write!(f, "connect: {e}"),
            PostError::Io(e) => write!(f, "i/o: {e}"),
            PostError::Protocol(e) => write!(f, "bad response: {e}"),
            PostError::Status(s) => write!(f, "collector answered {s}"),
        }
    }
}

/// A keep-alive HTTP/1.1 client for one endpoint at a time.
#[derive(Default)]
pub(crate) struct Client {
    conn: Option<TcpStream>,
    req: Vec<u8>,
    buf: Vec<u8>,
}

struct Failure {
    err: PostError,
    /// Nothing of a response had arrived: a reused connection may simply have been stale.
    before_response: bool,
}

impl Client {
    /// Drops the kept-alive connection, if any.
    pub(crate) fn close(&mut self) {
        self.conn = None;
    }

    /// POSTs `body` as JSON to `ep` within `timeout`; Ok only for a 2xx answer.
    pub(crate) fn post(
        &mut self,
        ep: &Endpoint,
        body: &[u8],
        timeout: Duration,
    ) -> Result<u16, PostError> {
        let deadline = Instant::now() + timeout;
        self.req.clear();
        self.req.extend_from_slice(b"POST ");
        self.req.extend_from_slice(ep.path.as_bytes());
        self.req.extend_from_slice(b" HTTP/1.1\r\nHost: ");
        self.req.extend_from_slice(ep.host_header().as_bytes());
        self.req.extend_from_slice(
            b"\r\nContent-Type: application/json\r\nConnection: keep-alive\r\nUser-Agent: ringway/",
        );
        self.req
            .extend_from_slice(env!("CARGO_PKG_VERSION").as_bytes());
        self.req.extend_from_slice(b"\r\nContent-Length: ");
        self.req
            .extend_from_slice(body.len().to_string().as_bytes());
        self.req.extend_from_slice(b"\r\n\r\n");
        self.req.extend_from_slice(body);

        if let Some(mut stream) = self.conn.take() {
            match exchange(&mut stream, &self.req, &mut self.buf, deadline) {
                Ok((status, keep)) => return self.finish(stream, status, keep),
                Err(f) if f.before_response && is_stale(&f.err) => {}
                Err(f) => return Err(f.err),
            }
        }
        let mut stream = connect(ep, deadline).map_err(PostError::Connect)?;
        match exchange(&mut stream, &self.req, &mut self.buf, deadline) {
            Ok((status, keep)) => self.finish(stream, status, keep),
            Err(f) => Err(f.err),
        }
    }

    fn finish(&mut self, stream: TcpStream, status: u16, keep: bool) -> Result<u16, PostError> {
        if keep {
            self.conn = Some(stream);
        }
        if (200..300).contains(&status) {
            Ok(status)
        } else {
            Err(PostError::Status(status))
        }
    }
}

fn is_stale(e: &PostError) -> bool {
    matches!(e, PostError::Io(e) if matches!(
        e.kind(),
        io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
    ))
}

/// Socket timeouts surface as `WouldBlock` on Unix; name them for what they are.
fn timed_out(e: io::Error) -> io::Error {
    if e.kind() == io::ErrorKind::WouldBlock {
        io::Error::new(io::ErrorKind::TimedOut, "timed out")
    } else {
        e
    }
}

fn remaining(deadline: Instant) -> io::Result<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        Err(io::Error::new(io::ErrorKind::TimedOut, "deadline passed"))
    } else {
        Ok(left)
    }
}

fn connect(ep: &Endpoint, deadline: Instant) -> io::Result<TcpStream> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, "host resolved to no address");
    for addr in (ep.host.as_str(), ep.port).to_socket_addrs()? {
        match TcpStream::connect_timeout(&addr, remaining(deadline)?) {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Writes `req` and reads one full response. Returns `(status, keep_alive)`.
fn exchange(
    stream: &mut TcpStream,
    req: &[u8],
    buf: &mut Vec<u8>,
    deadline: Instant,
) -> Result<(u16, bool), Failure> {
    buf.clear();
    let early = |err| Failure {
        err: PostError::Io(err),
        before_response: true,
    };
    remaining(deadline)
        .and_then(|left| stream.set_write_timeout(Some(left)))
        .map_err(early)?;
    stream.write_all(req).map_err(|e| early(timed_out(e)))?;
    let mut wire = Wire {
        stream,
        buf,
        pos: 0,
        deadline,
        got_any: false,
    };
    wire.response().map_err(|err| Failure {
        err,
        before_response: !wire.got_any,
    })
}

/// Buffered reading of one response under a deadline.
struct Wire<'a> {
    stream: &'a mut TcpStream,
    buf: &'a mut Vec<u8>,
    pos: usize,
    deadline: Instant,
    got_any: bool,
}

impl Wire<'_> {
    fn avail(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    /// Reads more bytes; EOF is an `UnexpectedEof` error.
    fn fill(&mut self) -> Result<(), PostError> {
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        }
        let old = self.buf.len();
        self.buf.resize(old + 8192, 0);
        loop {
            let r = remaining(self.deadline)
                .and_then(|left| self.stream.set_read_timeout(Some(left)))
                .and_then(|()| self.stream.read(&mut self.buf[old..]));
            match r {
                Ok(0) => {
                    self.buf.truncate(old);
                    return Err(PostError::Io(io::ErrorKind::UnexpectedEof.into()));
                }
                Ok(n) => {
                    self.buf.truncate(old + n);
                    self.got_any = true;
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.buf.truncate(old);
                    return Err(PostError::Io(timed_out(e)));
                }
            }
        }
    }

    fn response(&mut self) -> Result<(u16, bool), PostError> {
        loop {
            let (status, keep, framing) = self.head()?;
            if (100..200).contains(&status) {
                if status == 101 {
                    return Err(PostError::Protocol("unexpected 101 Switching Protocols"));
                }
                continue; // interim response; the final one follows
            }
            let keep = keep
                & match framing {
                    Framing::None => true,
                    Framing::Length(n) => self.discard(n).map(|()| true)?,
                    Framing::Chunked => self.chunked().map(|()| true)?,
                    Framing::UntilClose => self.until_close().map(|()| false)?,
                };
            // Bytes beyond the response mean we lost track of framing: do not reuse.
            return Ok((status, keep && self.avail().is_empty()));
        }
    }

    fn head(&mut self) -> Result<(u16, bool, Framing), PostError> {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 48];
            let mut resp = httparse::Response::new(&mut headers);
            match resp.parse(&self.buf[self.pos..]) {
                Ok(httparse::Status::Complete(n)) => {
                    let status = resp.code.unwrap_or(0);
                    let mut keep = resp.version == Some(1);
                    let mut length: Option<usize> = None;
                    let mut chunked = false;
                    for h in resp.headers.iter() {
                        if h.name.eq_ignore_ascii_case("content-length") {
                            let n = parse_digits(h.value)
                                .ok_or(PostError::Protocol("bad Content-Length"))?;
                            if length.is_some_and(|l| l != n) {
                                return Err(PostError::Protocol("conflicting Content-Length"));
                            }
                            length = Some(n);
                        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                            let last = h.value.rsplit(|&b| b == b',').next().unwrap_or(b"");
                            chunked = trim(last).eq_ignore_ascii_case(b"chunked");
                            if !chunked {
                                return Err(PostError::Protocol("unsupported Transfer-Encoding"));
                            }
                        } else if h.name.eq_ignore_ascii_case("connection")
                            && h.value
                                .split(|&b| b == b',')
                                .any(|t| trim(t).eq_ignore_ascii_case(b"close"))
                        {
                            keep = false;
                        }
                    }
                    self.pos += n;
                    let framing = if (100..200).contains(&status) || status == 204 || status == 304
                    {
                        Framing::None
                    } else if chunked {
                        if length.is_some() {
                            keep = false;
                        }
                        Framing::Chunked
                    } else if let Some(n) = length {
                        Framing::Length(n)
                    } else {
                        Framing::UntilClose
                    };
                    return Ok((status, keep, framing));
                }
                Ok(httparse::Status::Partial) => {
                    if self.avail().len() > MAX_HEAD {
                        return Err(PostError::Protocol("response head too large"));
                    }
                    self.fill()?;
                }
                Err(_) => return Err(PostError::Protocol("malformed response head")),
            }
        }
    }

    fn discard(&mut self, mut n: usize) -> Result<(), PostError> {
        if n > MAX_BODY {
            return Err(PostError::Protocol("response body too large"));
        }
        while n > 0 {
            if self.avail().is_empty() {
                self.fill()?;
            }
            let take = n.min(self.avail().len());
            self.pos += take;
            n -= take;
        }
        Ok(())
    }

    /// One line without its line ending (CRLF, or a bare LF).
    fn line(&mut self) -> Result<Vec<u8>, PostError> {
        loop {
            if let Some(i) = self.avail().iter().position(|&b| b == b'\n') {
                let mut line = self.avail()[..i].to_vec();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                self.pos += i + 1;
                return Ok(line);
            }
            if self.avail().len() > 4096 {
                return Err(PostError::Protocol("chunk line too long"));
            }
            self.fill()?;
        }
    }

    fn chunked(&mut self) -> Result<(), PostError> {
        let mut total = 0usize;
        loop {
            let line = self.line()?;
            let size_part = line.split(|&b| b == b';').next().unwrap_or(b"");
            let size = parse_hex(trim(size_part)).ok_or(PostError::Protocol("bad chunk size"))?;
            if size == 0 {
                // Trailer section, ended by an empty line.
                while !self.line()?.is_empty() {}
                return Ok(());
            }
            total = total.saturating_add(size);
            if total > MAX_BODY {
                return Err(PostError::Protocol("response body too large"));
            }
            self.discard(size)?;
            if !self.line()?.is_empty() {
                return Err(PostError::Protocol("missing CRLF after chunk"));
            }
        }
    }

    fn until_close(&mut self) -> Result<(), PostError> {
        let mut total = self.avail().len();
        self.pos = self.buf.len();
        loop {
            match self.fill() {
                Ok(()) => {
                    total += self.avail().len();
                    self.pos = self.buf.len();
                    if total > MAX_BODY {
                        return Err(PostError::Protocol("response body too large"));
                    }
                }
                Err(PostError::Io(e)) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    }
}

enum Framing {
    None,
    Length(usize),
    Chunked,
    UntilClose,
}

fn trim(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

fn parse_digits(v: &[u8]) -> Option<usize> {
    let v = trim(v);
    if v.is_empty() {
        return None;
    }
    v.iter().try_fold(0usize, |acc, &b| {
        if b.is_ascii_digit() {
            acc.checked_mul(10)?.checked_add(usize::from(b - b'0'))
        } else {
            None
        }
    })
}

fn parse_hex(v: &[u8]) -> Option<usize> {
    if v.is_empty() || v.len() > 15 {
        return None;
    }
    v.iter().try_fold(0usize, |acc, &b| {
        let d = (b as char).to_digit(16)?;
        Some(acc * 16 + d as usize)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        let e = parse_endpoint("http://127.0.0.1:4318/v1/traces").unwrap();
        assert_eq!(
            (e.host.as_str(), e.port, e.path.as_str()),
            ("127.0.0.1", 4318, "/v1/traces")
        );
        let e = parse_endpoint("http://[::1]:4318").unwrap();
        assert_eq!(
            (e.host.as_str(), e.port, e.path.as_str()),
            ("::1", 4318, DEFAULT_PATH)
        );
        assert_eq!(e.host_header(), "[::1]:4318");
        assert_eq!(e.to_string(), "http://[::1]:4318/v1/traces");
        let e = parse_endpoint(" HTTP://Collector.local/ ").unwrap();
        assert_eq!(
            (e.host.as_str(), e.port, e.path.as_str()),
            ("collector.local", 80, DEFAULT_PATH)
        );
        let e = parse_endpoint("http://otel-collector:4318/custom?x=1").unwrap();
        assert_eq!(e.path, "/custom?x=1");
    }

    #[test]
    fn bad_endpoints() {
        let err = parse_endpoint("https://collector:4318").unwrap_err();
        assert!(err.contains("https is not supported yet"), "{err}");
        for bad in [
            "collector:4318",
            "grpc://collector:4317",
            "http://",
            "http://:4318",
            "http://host:",
            "http://host:0",
            "http://host:65536",
            "http://host:+80",
            "http://host:80:90",
            "http://[::1",
            "http://[zz::1]:80",
            "http://1.2.3:80",
            "http://user@host:80",
            "http://ho st:80",
            "http://-host:80",
            "http://host:80/a#frag",
            "http://host?x",
        ] {
            assert!(parse_endpoint(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn number_parsing() {
        assert_eq!(parse_digits(b" 12 "), Some(12));
        assert_eq!(parse_digits(b"+5"), None);
        assert_eq!(parse_digits(b""), None);
        assert_eq!(parse_digits(b"99999999999999999999999"), None);
        assert_eq!(parse_hex(b"1aF"), Some(0x1af));
        assert_eq!(parse_hex(b"0x1"), None);
    }
}

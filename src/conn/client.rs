//! The client side of one HTTP/1.1 connection, as the phases see it (`exchange::Downstream`):
//! request bodies decoded from Content-Length or chunked framing, responses framed with a
//! length, chunked or by closing, `100 Continue`, lingering close, and the slow-client rules
//! (`timeouts.client_body`, `client_body_total`, `min_data_rate`), and `peek_body`: a bounded
//! body prefix read ahead, unconsumed, for policies that inspect it.
//!
//! Invariants: one request at a time (`begin_request` resets the per-request state); the
//! response head is written by `http1::write_response_head` and leaves with the first body
//! bytes; body reads never go past the current request's body (pipelined bytes stay put).

use std::ops::Range;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use crate::config::Timeouts;
use crate::exchange::error::{ErrorKind, ProxyError};
use crate::exchange::model::Exchange;
use crate::exchange::wire::{BodyLen, Downstream, Response};
use crate::http1::Version;
use crate::http1::{self, BodyFraming, ChunkedDecoder, Framing, HeadEnd, Method, RequestHead};
use crate::io::{peek, read_more, IoFail, Peeked};
use crate::metrics::CoreCounter;
use crate::tls::stream::Absorbed;
use crate::tls::transport::Transport;

use super::linger::linger;
use super::rate::RateMeter;

/// Bytes we try to move per client read while a body streams.
const STREAM_CHUNK: usize = 64 * 1024;

/// Where the current request's body stands.
enum BodyState {
    /// Complete (or never had one).
    Done,
    /// This many Content-Length bytes are still to come.
    Length(u64),
    Chunked(ChunkedDecoder),
}

/// One client connection's socket, buffers and per-request wire state.
pub struct Client {
    pub(super) stream: Transport,
    /// Bytes read but not yet consumed start at `pos` (pipelined requests, body bytes).
    pub(super) buf: Vec<u8>,
    pub(super) pos: usize,
    /// Reused between requests: serialized heads, the routing host, policy response lines.
    pub(super) scratch: Vec<u8>,
    pub(super) host: String,
    pub(super) resp_lines: Vec<u8>,
    /// Pending response output (head, queued body) and its framing.
    pub(super) out: Vec<u8>,
    /// Cancels the idle read once the grace period is over (reused while nothing is cancelled).
    pub(super) canceller: monoio::io::Canceller,
    /// Timeouts of the config generation serving the current request (set once per request,
    /// so a reload mid-request never changes them).
    pub(super) timeouts: Timeouts,
    /// Why the connection is being closed as abusive (counted once the request ends).
    pub(super) slow: Option<CoreCounter>,
    /// Body bytes read (wire bytes, framing included) and response bytes written for the
    /// current request.
    pub(super) body_in: u64,
    pub(super) bytes_out: u64,
    /// Bytes of the current response's head (written with the first body bytes), with any
    /// interim `100 Continue` before it.
    pub(super) head_out: u64,
    /// Bytes of interim responses (`100 Continue`) sent for the current request.
    interim_out: u64,
    // --- per request ---
    body: BodyState,
    /// The declared body framing (for lingering and skipping).
    body_framing: BodyFraming,
    /// Part of the body was consumed, so it can no longer be skipped to reach the next
    /// pipelined request.
    body_streamed: bool,
    version: Version,
    head_only: bool,
    framing: Framing,
    rx: RateMeter,
    tx: RateMeter,
    /// When the current request's body must be complete (`timeouts.client_body_total`).
    body_deadline: Instant,
    /// The chunked request body's trailer fields as received, once it ended (filtered on the
    /// way upstream: `exchange::upstream_head::upstream_trailers`).
    trailers_in: Option<Vec<u8>>,
    /// Trailer fields for the chunked response's last chunk.
    trailers_out: Vec<u8>,
    /// A chunked body's first bytes, decoded for `peek_body` (the raw chunks stay in `buf`,
    /// unconsumed, for `read_body`).
    peeked: Vec<u8>,
}

impl Client {
    pub fn new(stream: Transport, timeouts: Timeouts) -> Client {
        Client {
            stream,
            buf: Vec::with_capacity(8 * 1024),
            pos: 0,
            scratch: Vec::new(),
            host: String::new(),
            resp_lines: Vec::new(),
            out: Vec::new(),
            canceller: monoio::io::Canceller::new(),
            timeouts,
            slow: None,
            body_in: 0,
            bytes_out: 0,
            head_out: 0,
            interim_out: 0,
            body: BodyState::Done,
            body_framing: BodyFraming::None,
            body_streamed: false,
            version: Version::Http11,
            head_only: false,
            framing: Framing::Bare,
            rx: RateMeter::default(),
            tx: RateMeter::default(),
            body_deadline: Instant::now(),
            trailers_in: None,
            trailers_out: Vec::new(),
            peeked: Vec::new(),
        }
    }

    /// The socket, for a connection that parks between requests (its buffers and
    /// per-request state go; `Client::new` makes them again when it wakes).
    pub fn into_stream(self) -> Transport {
        self.stream
    }

    pub fn pending(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Whether the current request's body is behind us: read to its end, or (a Content-Length
    /// body not touched yet, all of it already here) skipped now. A chunked body still to come
    /// cannot be skipped without decoding it, nor one still arriving.
    fn settle_body(&mut self) -> bool {
        match self.body {
            BodyState::Done => true,
            BodyState::Length(n) if !self.body_streamed && self.pending() as u64 >= n => {
                self.pos += n as usize;
                self.body_in += n;
                self.body = BodyState::Done;
                true
            }
            _ => false,
        }
    }

    /// Drops consumed bytes so reads append after what is still pending.
    pub fn compact(&mut self) {
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
    }

    /// Resets the per-request state for `head`, whose head arrived at `start`.
    pub fn begin_request(&mut self, head: &RequestHead, start: Instant, timeouts: Timeouts) {
        self.timeouts = timeouts;
        self.body = match head.body {
            BodyFraming::Length(n) if n > 0 => BodyState::Length(n),
            BodyFraming::Chunked => BodyState::Chunked(ChunkedDecoder::new()),
            _ => BodyState::Done,
        };
        self.body_framing = head.body;
        self.body_streamed = false;
        // A large chunked-body prefix read for a policy is not kept while the connection idles.
        if self.peeked.capacity() > 16 * 1024 {
            self.peeked = Vec::new();
        }
        self.version = head.version;
        self.head_only = head.method == Method::Head;
        self.framing = Framing::Bare;
        self.trailers_in = None;
        self.trailers_out.clear();
        self.body_in = 0;
        self.bytes_out = 0;
        self.head_out = 0;
        self.interim_out = 0;
        self.rx = RateMeter::default();
        self.tx = RateMeter::default();
        self.body_deadline = start + timeouts.client_body_total;
        self.out.clear();
    }

    /// Writes `out` to the client within `timeout`, counting the bytes for this request's
    /// telemetry.
    pub async fn send(&mut self, out: &mut Vec<u8>, timeout: Duration) -> Result<(), IoFail> {
        let end = out.len();
        self.send_range(out, 0, end, timeout).await
    }

    /// Writes `buf[start..end]` to the client within `timeout`, counting the bytes (see
    /// `send`). The clock is read once for the deadline and the rate accounting.
    async fn send_range(
        &mut self,
        buf: &mut Vec<u8>,
        start: usize,
        end: usize,
        timeout: Duration,
    ) -> Result<(), IoFail> {
        let n = end.saturating_sub(start);
        self.bytes_out += n as u64;
        // The coarse clock: the rate is judged over the grace period (seconds), so a write
        // timed to the kernel tick averages out (a tick crossed is counted whole, one not
        // crossed as nothing).
        let began = crate::deadline_clock::now();
        let deadline = began + timeout;
        let rule = self.timeouts.min_data_rate;
        let Some(budget) = self.tx.budget(&rule, n) else {
            return crate::io::write_range(&mut self.stream, buf, start, end, deadline).await;
        };
        // The rate allowance caps the write's own deadline: a client that stops reading is
        // closed when it falls below the minimum rate, with no timer beyond the write's.
        let by_rate = began + budget;
        let res =
            crate::io::write_range(&mut self.stream, buf, start, end, deadline.min(by_rate)).await;
        match &res {
            Ok(()) => {
                self.tx
                    .record(&rule, n, crate::deadline_clock::now() - began);
            }
            Err(IoFail::Timeout) if by_rate < deadline => {
                self.slow = Some(CoreCounter::SlowResponse);
            }
            Err(_) => {}
        }
        res
    }

    /// Writes the pending output.
    async fn write_out(&mut self) -> Result<(), ProxyError> {
        if self.out.is_empty() {
            return Ok(());
        }
        let mut out = std::mem::take(&mut self.out);
        let res = self.send(&mut out, self.timeouts.client_body).await;
        out.clear();
        // Keep the buffer for the next request unless a large body grew it.
        if out.capacity() <= 16 * 1024 {
            self.out = out;
        }
        res.map_err(|_| ProxyError::new(ErrorKind::ClientAborted))
    }

    /// Reads the next body piece from the client into `buf` (appending).
    async fn read_client(&mut self) -> Result<(), ProxyError> {
        if self.pending() == 0 {
            self.buf.clear();
            self.pos = 0;
        } else if self.pos > STREAM_CHUNK {
            self.compact();
        }
        // Bounded three ways: the gap between reads, the whole body (`client_body_total`) and
        // the average rate once past the grace period (`min_data_rate`, checked at each
        // completion).
        let began = Instant::now();
        let deadline = (began + self.timeouts.client_body).min(self.body_deadline);
        let too_slow = ProxyError::new(ErrorKind::RequestTimeout);
        match read_more(&mut self.stream, &mut self.buf, deadline, STREAM_CHUNK).await {
            Ok(n) => {
                let rule = self.timeouts.min_data_rate;
                if rule.ns_per_byte != 0 && !self.rx.record(&rule, n, began.elapsed()) {
                    self.slow = Some(CoreCounter::SlowRequestBody);
                    return Err(too_slow);
                }
                Ok(())
            }
            Err(IoFail::Timeout) => {
                self.slow = Some(CoreCounter::SlowRequestBody);
                Err(too_slow)
            }
            Err(_) => Err(ProxyError::new(ErrorKind::ClientClosedBody)),
        }
    }

    /// `peek_body` for a chunked body nothing has consumed yet: reads raw chunks into `buf`
    /// (left there for `read_body`) and decodes a copy of the first `max` data bytes into
    /// `peeked`. The raw bytes read ahead are bounded too (`2 * max` plus 64 KiB), so a client
    /// sending tiny chunks with long extensions cannot make the gateway buffer without limit;
    /// past that bound the prefix is simply shorter.
    async fn peek_chunked(&mut self, max: usize) -> Result<bool, ProxyError> {
        let raw_cap = max.saturating_mul(2).saturating_add(64 * 1024);
        let mut dec = ChunkedDecoder::new();
        self.peeked.clear();
        // Offset of the next undecoded raw byte, relative to `pos` (reads may compact `buf`,
        // which moves `pos` but never the pending bytes' order).
        let mut at = 0;
        loop {
            let input = &self.buf[self.pos + at..];
            let (used, data) = dec
                .decode(input)
                .map_err(|e| ProxyError::new(ErrorKind::BadBody(e.0)))?;
            let room = max - self.peeked.len();
            let take = data.len().min(room);
            self.peeked
                .extend_from_slice(&input[data.start..data.start + take]);
            at += used;
            if dec.is_done() {
                return Ok(true);
            }
            if self.peeked.len() >= max || at >= raw_cap {
                return Ok(false);
            }
            if used == 0 {
                self.read_client().await?;
            }
        }
    }

    /// Appends decoded chunked-body bytes to `out`; `true` once the last chunk was read.
    async fn read_chunked(&mut self, out: &mut Vec<u8>) -> Result<bool, ProxyError> {
        let BodyState::Chunked(mut dec) = std::mem::replace(&mut self.body, BodyState::Done) else {
            return Ok(true);
        };
        let start_len = out.len();
        let res = loop {
            let (used, data) = match dec.decode(&self.buf[self.pos..]) {
                Ok(d) => d,
                Err(e) => break Err(ProxyError::new(ErrorKind::BadBody(e.0))),
            };
            out.extend_from_slice(&self.buf[self.pos + data.start..self.pos + data.end]);
            self.pos += used;
            self.body_in += used as u64;
            if dec.is_done() {
                if !dec.trailers().is_empty() {
                    self.trailers_in = Some(dec.trailers().to_vec());
                }
                break Ok(true);
            }
            if used == 0 {
                if out.len() > start_len {
                    break Ok(false);
                }
                if let Err(e) = self.read_client().await {
                    break Err(e);
                }
            }
        };
        if let Ok(false) = res {
            self.body = BodyState::Chunked(dec);
        }
        res
    }
}

/// The lines every response to an exchange carries, whoever produced it.
pub struct ExchangeLines<'a> {
    pub request_id: &'a [u8],
    /// The trace-id response header (name, hex id), when configured.
    pub trace: Option<(&'a [u8], &'a [u8])>,
    /// The policies' lines (CORS, RateLimit, WWW-Authenticate, Retry-After).
    pub lines: &'a [u8],
}

/// Serializes `resp` as an HTTP/1.1 head for a `version` client into `out`: the framing an
/// unknown length gets (chunked, or close-delimited for HTTP/1.0) and whether the connection
/// stays open. Public so the benchmarks measure this exact code.
pub fn response_head(
    out: &mut Vec<u8>,
    resp: &Response<'_>,
    version: Version,
    ex: &ExchangeLines<'_>,
) -> (Framing, bool) {
    let framing = match resp.body {
        BodyLen::Bare => Framing::Bare,
        BodyLen::Length(n) => Framing::Length(n),
        BodyLen::Unknown if version == Version::Http11 => Framing::Chunked,
        BodyLen::Unknown => Framing::Close,
    };
    let keep = resp.keep && framing != Framing::Close;
    let end = HeadEnd {
        framing,
        request_id: ex.request_id,
        trace: ex.trace,
        lines: ex.lines,
        keep,
        version,
    };
    http1::write_response_head(out, resp.status, resp.fields, &end);
    (framing, keep)
}

impl Downstream for Client {
    fn buffered_body(&self, head: &RequestHead, max: usize) -> Option<&[u8]> {
        match head.body {
            BodyFraming::None => Some(&[]),
            BodyFraming::Length(n) if n as usize <= max && self.pending() as u64 >= n => {
                Some(&self.buf[self.pos..self.pos + n as usize])
            }
            _ => None,
        }
    }

    async fn peek_body(
        &mut self,
        head: &RequestHead,
        max: usize,
    ) -> Result<(&[u8], bool), ProxyError> {
        // Only a body nothing has read yet can be peeked from its start.
        if self.body_streamed {
            return Ok((&[], false));
        }
        match head.body {
            BodyFraming::Length(n) if n > 0 => {
                // The route's `max_body_bytes` already refused a longer declared body.
                let want = n.min(max as u64) as usize;
                while self.pending() < want {
                    self.read_client().await?;
                }
                Ok((&self.buf[self.pos..self.pos + want], want as u64 == n))
            }
            BodyFraming::Chunked => {
                let whole = self.peek_chunked(max).await?;
                Ok((&self.peeked, whole))
            }
            _ => Ok((&[], true)),
        }
    }

    fn consume_body(&mut self, n: usize) {
        self.pos += n;
        self.body_in += n as u64;
        if let BodyState::Length(left) = &mut self.body {
            *left = left.saturating_sub(n as u64);
            if *left == 0 {
                self.body = BodyState::Done;
            }
        }
    }

    async fn continue_body(&mut self, head: &RequestHead) -> Result<(), ProxyError> {
        let has_body = !matches!(head.body, BodyFraming::None | BodyFraming::Length(0));
        if head.expect_continue
            && has_body
            && head.version == Version::Http11
            && self.pending() == 0
        {
            let mut msg = b"HTTP/1.1 100 Continue\r\n\r\n".to_vec();
            self.interim_out += msg.len() as u64;
            self.head_out = self.interim_out;
            self.send(&mut msg, self.timeouts.client_body)
                .await
                .map_err(|_| ProxyError::new(ErrorKind::RequestTimeout))?;
        }
        Ok(())
    }

    async fn read_body(
        &mut self,
        _head: &RequestHead,
        out: &mut Vec<u8>,
    ) -> Result<bool, ProxyError> {
        self.body_streamed = true;
        match self.body {
            BodyState::Done => Ok(true),
            BodyState::Chunked(_) => self.read_chunked(out).await,
            BodyState::Length(left) => {
                if self.pending() == 0 {
                    self.read_client().await?;
                }
                let take = (self.pending() as u64).min(left) as usize;
                out.extend_from_slice(&self.buf[self.pos..self.pos + take]);
                self.pos += take;
                self.body_in += take as u64;
                let left = left - take as u64;
                self.body = if left == 0 {
                    BodyState::Done
                } else {
                    BodyState::Length(left)
                };
                Ok(left == 0)
            }
        }
    }

    fn skip_body(&mut self, _: &RequestHead) -> bool {
        self.settle_body()
    }

    fn start_response(&mut self, ex: &Exchange<'_>, resp: &Response<'_>) -> bool {
        let trace_hex = ex.facts.trace_echo();
        let trace = trace_hex
            .as_ref()
            .map(|(name, hex)| (name.as_bytes(), &hex[..]));
        self.out.clear();
        let parts = ExchangeLines {
            request_id: ex.rid.as_bytes(),
            trace,
            lines: &ex.facts.resp_lines,
        };
        // Whatever answers (a cache hit, a preflight, a policy, the upstream), a request body
        // left unread would be parsed as the next request: it is skipped when it is all here,
        // else this response closes the connection.
        let settled = self.settle_body();
        let resp = Response {
            keep: resp.keep && settled,
            ..*resp
        };
        let (framing, keep) = response_head(&mut self.out, &resp, self.version, &parts);
        self.head_out = self.interim_out + self.out.len() as u64;
        self.framing = framing;
        keep
    }

    async fn send_body(
        &mut self,
        buf: &mut Vec<u8>,
        range: Range<usize>,
    ) -> Result<(), ProxyError> {
        if self.head_only || range.is_empty() {
            return Ok(());
        }
        match self.framing {
            Framing::Length(_) if self.out.is_empty() => self
                .send_range(buf, range.start, range.end, self.timeouts.client_body)
                .await
                .map_err(|_| ProxyError::new(ErrorKind::ClientAborted)),
            Framing::Length(_) => {
                // First flight: the head and the first body bytes in one write.
                self.out.extend_from_slice(&buf[range]);
                self.write_out().await
            }
            _ => {
                self.queue_body(&buf[range]);
                Ok(())
            }
        }
    }

    fn queue_body(&mut self, bytes: &[u8]) {
        if self.head_only || bytes.is_empty() {
            return;
        }
        if self.framing == Framing::Chunked {
            http1::write_chunk_header(&mut self.out, bytes.len());
            self.out.extend_from_slice(bytes);
            self.out.extend_from_slice(b"\r\n");
        } else {
            self.out.extend_from_slice(bytes);
        }
    }

    fn request_trailers(&self) -> Option<&[u8]> {
        self.trailers_in.as_deref()
    }

    fn queue_trailers(&mut self, fields: &[u8]) {
        // Only a chunked response can carry them (a length-framed one has no place for them).
        if self.framing == Framing::Chunked && !self.head_only {
            self.trailers_out.clear();
            self.trailers_out.extend_from_slice(fields);
        }
    }

    async fn flush(&mut self) -> Result<(), ProxyError> {
        self.write_out().await
    }

    fn retract(&mut self) -> bool {
        if self.bytes_out > 0 {
            return false;
        }
        self.out.clear();
        self.framing = Framing::Bare;
        self.trailers_out.clear();
        true
    }

    async fn end_response(&mut self) -> Result<(), ProxyError> {
        if self.framing == Framing::Chunked && !self.head_only {
            http1::write_last_chunk(&mut self.out, &self.trailers_out);
            self.trailers_out.clear();
        }
        self.write_out().await
    }

    async fn client_gone(&mut self) {
        // Bytes of a pipelined request already here: the client still wants answers (it may
        // have half-closed after sending them, which HTTP/1.1 allows).
        if self.pending() > 0 {
            return std::future::pending().await;
        }
        loop {
            if self.stream.has_buffered() {
                return std::future::pending().await;
            }
            if self.stream.readable().await.is_err() {
                return;
            }
            let seen = match &mut self.stream {
                Transport::Plain(tcp) => peek(tcp.as_raw_fd()),
                // What arrived goes through rustls (kept for the next read): close_notify or
                // EOF is a client that left, decrypted bytes a pipelined request, and records
                // without data (key updates) are neither.
                Transport::Tls(t) => match t.absorb() {
                    Absorbed::Ended => Peeked::Gone,
                    Absorbed::Plaintext => Peeked::Data,
                    Absorbed::Quiet | Absorbed::Busy => Peeked::Empty,
                },
            };
            match seen {
                Peeked::Gone => return,
                // The next pipelined request is arriving: it is still there.
                Peeked::Data => return std::future::pending().await,
                Peeked::Empty => {}
            }
        }
    }

    async fn linger(&mut self) {
        let body_left = match self.body_framing {
            BodyFraming::None | BodyFraming::Length(0) => false,
            BodyFraming::Length(n) => self.body_streamed || (self.pending() as u64) < n,
            _ => true,
        };
        if body_left {
            let pending = self.pending();
            self.pos = 0;
            linger(&mut self.stream, &mut self.buf, pending, &self.timeouts).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(body: BodyLen, keep: bool, version: Version) -> (String, Framing, bool) {
        let resp = Response {
            status: 200,
            fields: b"content-type: text/plain\r\n",
            body,
            keep,
        };
        let lines = ExchangeLines {
            request_id: b"r1",
            trace: Some((b"x-trace-id", b"abc")),
            lines: b"ratelimit: limit=1\r\n",
        };
        let mut out = Vec::new();
        let (framing, keep) = response_head(&mut out, &resp, version, &lines);
        (String::from_utf8(out).unwrap(), framing, keep)
    }

    #[test]
    fn an_unknown_length_is_chunked_for_http11_and_close_delimited_for_http10() {
        let (text, framing, keep) = head(BodyLen::Unknown, true, Version::Http11);
        assert_eq!((framing, keep), (Framing::Chunked, true));
        assert!(text.contains("transfer-encoding: chunked\r\n"));
        let (text, framing, keep) = head(BodyLen::Unknown, true, Version::Http10);
        assert_eq!(
            (framing, keep),
            (Framing::Close, false),
            "1.0 has no chunked"
        );
        assert!(text.contains("connection: close\r\n") && !text.contains("transfer-encoding"));
    }

    #[test]
    fn every_head_carries_the_exchange_lines_after_the_producers_fields() {
        let (text, framing, keep) = head(BodyLen::Length(5), true, Version::Http10);
        assert_eq!((framing, keep), (Framing::Length(5), true));
        assert_eq!(
            text,
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 5\r\n\
             x-request-id: r1\r\nx-trace-id: abc\r\nratelimit: limit=1\r\n\
             connection: keep-alive\r\n\r\n"
        );
        let (text, framing, _) = head(BodyLen::Bare, false, Version::Http11);
        assert_eq!(framing, Framing::Bare);
        assert!(!text.contains("content-length") && text.ends_with("connection: close\r\n\r\n"));
    }
}

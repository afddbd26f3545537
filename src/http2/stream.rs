//! One HTTP/2 stream as the phases' `Downstream`: the request body comes from DATA frames
//! (flow-control capacity is given back as the body moves on), the response goes out as a
//! HEADERS frame, DATA frames sent only within the capacity the client granted, and trailers.
//!
//! Invariants:
//! - Memory per stream is bounded: body bytes are never read ahead of the window the gateway
//!   advertised, and response bytes are handed to h2 only once the client's window has room
//!   for them (`reserve_capacity`), so a slow reader stalls its own stream, nothing else.
//!   `peek_body` (a policy reading the body's start) takes DATA ahead, up to its bound only.
//! - The head is sent once, with the first body bytes or at the end (a bodiless response
//!   ends the stream on its HEADERS frame).
//! - A client reset ends `client_gone` and fails every later send: the phases stop at once.

use std::future::poll_fn;
use std::ops::Range;
use std::time::Duration;

use bytes::Bytes;
use h2::server::SendResponse;
use h2::{RecvStream, SendStream};
use http::header::{HeaderName, HeaderValue};
use http::HeaderMap;

use crate::exchange::error::{ErrorKind, ProxyError};
use crate::exchange::model::Exchange;
use crate::exchange::wire::{BodyLen, Downstream, Response};
use crate::http1::RequestHead;

/// Body bytes gathered at the start without waiting, so a small request body rides with the
/// upstream head (and can be sent again on a retry).
const GATHER_MAX: usize = 64 * 1024;

/// The client side of one stream.
pub struct H2Stream {
    body: RecvStream,
    body_done: bool,
    /// Body bytes already taken from h2: `early[early_pos..]` not yet given to the phases.
    early: Vec<u8>,
    early_pos: usize,
    trailers_in: Option<Vec<u8>>,
    respond: SendResponse<Bytes>,
    send: Option<SendStream<Bytes>>,
    /// The response head until it is sent.
    head: Option<http::Response<()>>,
    head_only: bool,
    /// Response body queued by `queue_body`.
    pending: Vec<u8>,
    trailers_out: Option<HeaderMap>,
    /// The longest the client may take to read or send the next piece.
    patience: Duration,
    /// The response went out whole (END_STREAM sent).
    ended: bool,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

fn aborted() -> ProxyError {
    ProxyError::new(ErrorKind::ClientAborted)
}

impl H2Stream {
    pub fn new(body: RecvStream, respond: SendResponse<Bytes>, patience: Duration) -> H2Stream {
        let body_done = body.is_end_stream();
        H2Stream {
            body,
            body_done,
            early: Vec::new(),
            early_pos: 0,
            trailers_in: None,
            respond,
            send: None,
            head: None,
            head_only: false,
            pending: Vec::new(),
            trailers_out: None,
            patience,
            ended: false,
            bytes_in: 0,
            bytes_out: 0,
        }
    }

    /// Takes the body DATA that has already arrived (up to `GATHER_MAX`), without waiting.
    pub fn gather(&mut self) {
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        while !self.body_done && self.early.len() < GATHER_MAX {
            match self.body.poll_data(&mut cx) {
                std::task::Poll::Ready(Some(Ok(chunk))) => {
                    self.took(chunk.len());
                    self.early.extend_from_slice(&chunk);
                }
                std::task::Poll::Ready(None) => self.finish_body(),
                _ => break,
            }
        }
    }

    /// `n` body bytes were taken from h2: the window opens again for the client.
    fn took(&mut self, n: usize) {
        self.bytes_in += n as u64;
        let _ = self.body.flow_control().release_capacity(n);
        if self.body.is_end_stream() {
            self.finish_body();
        }
    }

    fn finish_body(&mut self) {
        if self.body_done && self.trailers_in.is_some() {
            return;
        }
        self.body_done = true;
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        if let std::task::Poll::Ready(Ok(Some(map))) = self.body.poll_trailers(&mut cx) {
            let mut lines = Vec::new();
            for (n, v) in &map {
                crate::http1::write_header(&mut lines, n.as_str().as_bytes(), v.as_bytes());
            }
            self.trailers_in = Some(lines);
        }
    }

    /// Sends the head if it has not gone yet; `end` ends the stream with it.
    fn send_head(&mut self, end: bool) -> Result<(), ProxyError> {
        if let Some(head) = self.head.take() {
            let send = self
                .respond
                .send_response(head, end)
                .map_err(|_| aborted())?;
            self.send = Some(send);
            self.ended |= end;
        }
        Ok(())
    }

    /// After an exchange that did not end its response (the upstream broke off mid-body, or
    /// the phases gave up): resets the stream, so the client sees a failed response rather
    /// than a truncated one that looks complete.
    pub fn reset_unfinished(&mut self) {
        if self.ended {
            return;
        }
        match self.send.as_mut() {
            Some(send) => send.send_reset(h2::Reason::INTERNAL_ERROR),
            None => self.respond.send_reset(h2::Reason::INTERNAL_ERROR),
        }
        self.ended = true;
    }

    /// Sends `data` as DATA frames, each only once the client's window has room for it.
    async fn send_data(&mut self, data: &[u8], end: bool) -> Result<(), ProxyError> {
        self.send_head(false)?;
        let patience = self.patience;
        let Some(send) = self.send.as_mut() else {
            return Err(aborted());
        };
        let mut rest = data;
        while !rest.is_empty() {
            send.reserve_capacity(rest.len());
            let granted = poll_fn(|cx| send.poll_capacity(cx));
            let cap = match monoio::time::timeout(patience, granted).await {
                Ok(Some(Ok(n))) => n,
                // Reset, closed, or a reader that let its window stay shut too long.
                _ => return Err(aborted()),
            };
            let n = cap.min(rest.len());
            if n == 0 {
                continue;
            }
            let last = end && n == rest.len();
            send.send_data(Bytes::copy_from_slice(&rest[..n]), last)
                .map_err(|_| aborted())?;
            self.ended |= last;
            self.bytes_out += n as u64;
            rest = &rest[n..];
        }
        if end && data.is_empty() {
            send.send_data(Bytes::new(), true).map_err(|_| aborted())?;
            self.ended = true;
        }
        Ok(())
    }
}

impl H2Stream {
    /// Answers at once with a small gateway-made response (a refused header block); the
    /// body fits any window, so h2 sends it without waiting for capacity.
    pub fn send_problem(&mut self, status: u16, fields: &[u8], rid: &str, body: Vec<u8>) {
        let mut r = http::Response::new(());
        *r.status_mut() =
            http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::BAD_REQUEST);
        add_lines(r.headers_mut(), fields);
        if let Ok(v) = HeaderValue::from_str(rid) {
            r.headers_mut().insert("x-request-id", v);
        }
        r.headers_mut()
            .insert(http::header::CONTENT_LENGTH, HeaderValue::from(body.len()));
        self.ended = true;
        if let Ok(mut send) = self.respond.send_response(r, body.is_empty()) {
            self.bytes_out = body.len() as u64;
            if !body.is_empty() {
                let _ = send.send_data(Bytes::from(body), true);
            }
        }
    }
}

/// Field names HTTP/2 forbids (RFC 9113 §8.2.2): the connection-specific ones.
fn connection_specific(name: &[u8]) -> bool {
    [
        &b"connection"[..],
        b"keep-alive",
        b"proxy-connection",
        b"transfer-encoding",
        b"upgrade",
    ]
    .iter()
    .any(|n| n.eq_ignore_ascii_case(name))
}

/// Adds `name: value\r\n` lines to `map` (lines that are not valid HTTP/2 fields are
/// dropped, as are connection-specific ones). The values share one copy of `lines`; names are
/// lowercased by `HeaderName` (the common ones are static, no allocation).
pub fn add_lines(map: &mut HeaderMap, lines: &[u8]) {
    if lines.is_empty() {
        return;
    }
    let all = Bytes::copy_from_slice(lines);
    let mut start = 0;
    for line in lines.split(|&b| b == b'\n') {
        let at = start;
        start += line.len() + 1;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = &line[..colon];
        if connection_specific(name) {
            continue;
        }
        let raw = &line[colon + 1..];
        let lead = raw.len() - raw.trim_ascii_start().len();
        let value_start = at + colon + 1 + lead;
        let value_end = value_start + raw.trim_ascii().len();
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name),
            HeaderValue::from_maybe_shared(all.slice(value_start..value_end)),
        ) {
            map.append(n, v);
        }
    }
}

impl Downstream for H2Stream {
    fn buffered_body(&self, _head: &RequestHead, max: usize) -> Option<&[u8]> {
        let rest = &self.early[self.early_pos..];
        (self.body_done && rest.len() <= max).then_some(rest)
    }

    async fn peek_body(
        &mut self,
        _head: &RequestHead,
        max: usize,
    ) -> Result<(&[u8], bool), ProxyError> {
        // DATA is taken into `early` (the window reopens as it arrives) until `max` bytes are
        // here or the stream ends; `read_body` hands `early` out first, so nothing is lost.
        // Memory stays bounded by `max` plus one DATA frame.
        while !self.body_done && self.early.len() - self.early_pos < max {
            let next = poll_fn(|cx| self.body.poll_data(cx));
            match monoio::time::timeout(self.patience, next).await {
                Err(_) => return Err(ProxyError::new(ErrorKind::RequestTimeout)),
                Ok(None) => self.finish_body(),
                Ok(Some(Ok(chunk))) => {
                    self.early.extend_from_slice(&chunk);
                    self.took(chunk.len());
                }
                Ok(Some(Err(_))) => return Err(ProxyError::new(ErrorKind::ClientClosedBody)),
            }
        }
        let rest = &self.early[self.early_pos..];
        let whole = self.body_done && rest.len() <= max;
        Ok((&rest[..rest.len().min(max)], whole))
    }

    fn consume_body(&mut self, n: usize) {
        self.early_pos = (self.early_pos + n).min(self.early.len());
    }

    async fn continue_body(&mut self, _head: &RequestHead) -> Result<(), ProxyError> {
        Ok(())
    }

    async fn read_body(
        &mut self,
        _head: &RequestHead,
        out: &mut Vec<u8>,
    ) -> Result<bool, ProxyError> {
        if self.early_pos < self.early.len() {
            out.extend_from_slice(&self.early[self.early_pos..]);
            self.early = Vec::new();
            self.early_pos = 0;
            return Ok(self.body_done);
        }
        if self.body_done {
            return Ok(true);
        }
        let next = poll_fn(|cx| self.body.poll_data(cx));
        match monoio::time::timeout(self.patience, next).await {
            Err(_) => Err(ProxyError::new(ErrorKind::RequestTimeout)),
            Ok(None) => {
                self.finish_body();
                Ok(true)
            }
            Ok(Some(Ok(chunk))) => {
                out.extend_from_slice(&chunk);
                self.took(chunk.len());
                Ok(self.body_done)
            }
            Ok(Some(Err(_))) => Err(ProxyError::new(ErrorKind::ClientClosedBody)),
        }
    }

    fn skip_body(&mut self, _head: &RequestHead) -> bool {
        // The rest of the body is refused by the stream's end (h2 resets it with NO_ERROR);
        // the connection is unaffected.
        true
    }

    fn start_response(&mut self, ex: &Exchange<'_>, resp: &Response<'_>) -> bool {
        self.head_only = ex.head.method == crate::http1::Method::Head;
        let mut r = http::Response::new(());
        *r.status_mut() =
            http::StatusCode::from_u16(resp.status).unwrap_or(http::StatusCode::BAD_GATEWAY);
        let map = r.headers_mut();
        add_lines(map, resp.fields);
        if let Ok(v) = HeaderValue::from_bytes(ex.rid.as_bytes()) {
            map.insert("x-request-id", v);
        }
        if let Some((name, hex)) = ex.facts.trace_echo() {
            if let (Ok(n), Ok(v)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_bytes(&hex),
            ) {
                map.insert(n, v);
            }
        }
        add_lines(map, &ex.facts.resp_lines);
        if let BodyLen::Length(n) = resp.body {
            map.insert(http::header::CONTENT_LENGTH, HeaderValue::from(n));
        }
        self.head = Some(r);
        true
    }

    async fn send_body(
        &mut self,
        buf: &mut Vec<u8>,
        range: Range<usize>,
    ) -> Result<(), ProxyError> {
        if self.head_only || range.is_empty() {
            return Ok(());
        }
        if !self.pending.is_empty() {
            let queued = std::mem::take(&mut self.pending);
            self.send_data(&queued, false).await?;
        }
        self.send_data(&buf[range], false).await
    }

    fn queue_body(&mut self, bytes: &[u8]) {
        if !self.head_only {
            self.pending.extend_from_slice(bytes);
        }
    }

    fn request_trailers(&self) -> Option<&[u8]> {
        self.trailers_in.as_deref()
    }

    fn duplex(&self) -> bool {
        // `read_body` polls h2's buffer: dropping it mid-wait loses nothing.
        true
    }

    fn queue_trailers(&mut self, fields: &[u8]) {
        let mut map = HeaderMap::new();
        add_lines(&mut map, fields);
        if !map.is_empty() {
            self.trailers_out = Some(map);
        }
    }

    async fn flush(&mut self) -> Result<(), ProxyError> {
        if !self.pending.is_empty() {
            let queued = std::mem::take(&mut self.pending);
            self.send_data(&queued, false).await?;
        }
        Ok(())
    }

    async fn end_response(&mut self) -> Result<(), ProxyError> {
        let trailers = self.trailers_out.take();
        let queued = std::mem::take(&mut self.pending);
        if self.head.is_some() && queued.is_empty() && trailers.is_none() {
            return self.send_head(true);
        }
        if !queued.is_empty() || trailers.is_none() {
            self.send_data(&queued, trailers.is_none()).await?;
        }
        if let Some(t) = trailers {
            self.send_head(false)?;
            let send = self.send.as_mut().ok_or_else(aborted)?;
            send.send_trailers(t).map_err(|_| aborted())?;
            self.ended = true;
        }
        Ok(())
    }

    async fn client_gone(&mut self) {
        let _ = poll_fn(|cx| self.respond.poll_reset(cx)).await;
    }

    async fn linger(&mut self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_become_fields_minus_connection_specific_ones() {
        let mut map = HeaderMap::new();
        add_lines(
            &mut map,
            b"Content-Type: text/plain\r\nX-A:  1 \r\nConnection: close\r\nset-cookie: a\r\n\
              set-cookie: b\r\nbad name: x\r\nx-ctl: a\x01b\r\n",
        );
        assert_eq!(map.get("content-type").unwrap(), "text/plain");
        assert_eq!(map.get("x-a").unwrap(), "1");
        assert!(map.get("connection").is_none());
        assert_eq!(map.get_all("set-cookie").iter().count(), 2);
        assert_eq!(map.len(), 4);
    }
}

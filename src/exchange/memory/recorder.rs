//! The memory wire itself: a `Downstream` whose client is a byte buffer and whose answer is
//! recorded (status, fields, body). Test runs hand the body out in 3-byte pieces (so body
//! streaming is exercised); a request the gateway made itself (an MCP tool call,
//! `pipeline::run_made`) hands it out whole and bounds what it records.
//!
//! Apart from `memory/mod.rs` (the test runners) so the phases can use the wire without an
//! import cycle.

use std::ops::Range;

use crate::http1::RequestHead;

use crate::exchange::error::{ErrorKind, ProxyError};
use crate::exchange::model::Exchange;
use crate::exchange::wire::{BodyLen, Downstream, Response};

/// The recorded side of one exchange.
#[derive(Default)]
pub struct Memory {
    /// Request body bytes still to hand out, and how many were.
    pub body: Vec<u8>,
    pub read: usize,
    /// The response: status (0 = none started), field lines (the policies' lines included),
    /// declared body length, keep-alive decision, body bytes.
    pub status: u16,
    pub fields: String,
    pub len: Option<BodyLen>,
    pub keep: bool,
    pub sent: Vec<u8>,
    /// `end_response` was called; `linger` was asked for.
    pub ended: bool,
    pub lingered: bool,
    /// Responses started (more than one is a bug in the phases).
    pub starts: u32,
    /// Hand the body out in one piece (`run_whole`) instead of 3-byte pieces.
    pub whole: bool,
    /// Most body bytes recorded in `sent` (0: no limit); past it the response is cut off
    /// (`truncated`) and the exchange ends as if the client had gone.
    pub max_sent: usize,
    pub truncated: bool,
}

impl Memory {
    fn record(&mut self, bytes: &[u8]) -> Result<(), ProxyError> {
        if self.max_sent == 0 || self.sent.len() + bytes.len() <= self.max_sent {
            self.sent.extend_from_slice(bytes);
            return Ok(());
        }
        let room = self.max_sent.saturating_sub(self.sent.len());
        self.sent.extend_from_slice(&bytes[..room.min(bytes.len())]);
        self.truncated = true;
        Err(ProxyError::new(ErrorKind::ClientAborted))
    }
}

impl Downstream for Memory {
    fn buffered_body(&self, _head: &RequestHead, max: usize) -> Option<&[u8]> {
        // A whole body is all here (so body-reading policies, such as validation, see it);
        // test runs keep handing it out in pieces.
        let rest = self.body.get(self.read..)?;
        (self.whole && rest.len() <= max).then_some(rest)
    }
    fn consume_body(&mut self, n: usize) {
        self.read += n;
    }
    async fn continue_body(&mut self, _head: &RequestHead) -> Result<(), ProxyError> {
        Ok(())
    }
    async fn read_body(
        &mut self,
        _head: &RequestHead,
        out: &mut Vec<u8>,
    ) -> Result<bool, ProxyError> {
        let piece = if self.whole { self.body.len() } else { 3 };
        let end = (self.read + piece).min(self.body.len());
        out.extend_from_slice(&self.body[self.read..end]);
        self.read = end;
        Ok(self.read == self.body.len())
    }
    fn skip_body(&mut self, _head: &RequestHead) -> bool {
        self.read == self.body.len()
    }
    fn start_response(&mut self, ex: &Exchange<'_>, resp: &Response<'_>) -> bool {
        self.starts += 1;
        self.status = resp.status;
        self.fields = String::from_utf8_lossy(resp.fields).into_owned();
        self.fields += &String::from_utf8_lossy(&ex.facts.resp_lines);
        self.len = Some(resp.body);
        self.keep = resp.keep;
        resp.keep
    }
    async fn send_body(
        &mut self,
        buf: &mut Vec<u8>,
        range: Range<usize>,
    ) -> Result<(), ProxyError> {
        let piece = buf.get(range).unwrap_or(&[]);
        self.record(piece)
    }
    fn queue_body(&mut self, bytes: &[u8]) {
        let _ = self.record(bytes);
    }
    async fn flush(&mut self) -> Result<(), ProxyError> {
        Ok(())
    }
    async fn end_response(&mut self) -> Result<(), ProxyError> {
        self.ended = true;
        Ok(())
    }
    async fn client_gone(&mut self) {
        std::future::pending::<()>().await
    }
    async fn linger(&mut self) {
        self.lingered = true;
    }
}

//! A wire made of memory, for driving the phases without a socket: the unit tests of
//! `exchange`, the `exchange` fuzz target and anything that wants to see what the phases
//! answer to a request. The request body arrives in 3-byte pieces (so body streaming is
//! exercised); the response is recorded as status, fields, body length and bytes.
//!
//! Not on any request path: the HTTP/1.1 wire is `conn::client`.

use std::net::SocketAddr;
use std::ops::Range;
use std::time::Instant;

use crate::core::Core;
use crate::http1::{self, RequestHead};

use super::error::ProxyError;
use super::model::{ClientFacts, Exchange, ExchangeFacts};
use super::origin::Scheme;
use super::pipeline;
use super::wire::{BodyLen, Downstream, Outcome, Response};

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
}

impl Downstream for Memory {
    fn buffered_body(&self, _head: &RequestHead, _max: usize) -> Option<&[u8]> {
        None
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
        let end = (self.read + 3).min(self.body.len());
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
        self.sent.extend_from_slice(&buf[range]);
        Ok(())
    }
    fn queue_body(&mut self, bytes: &[u8]) {
        self.sent.extend_from_slice(bytes);
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

/// What one run produced.
pub struct Ran {
    pub wire: Memory,
    /// The phases' keep-alive decision (`Outcome::Done`); `false` for an upgrade.
    pub keep: bool,
    pub facts: ExchangeFacts,
}

/// Parses `request` (head, then body bytes) and runs it through the phases on a memory wire,
/// from client 192.0.2.7. `None` when the head does not parse (a wire would answer that itself).
pub async fn run(core: &Core, request: &[u8]) -> Option<Ran> {
    let peer = SocketAddr::from(([192, 0, 2, 7], 4000));
    run_as(core, request, &ClientFacts::new(peer, Scheme::Http)).await
}

/// `run` for a given client connection (e.g. a TLS one with a client certificate).
pub async fn run_as(core: &Core, request: &[u8], client: &ClientFacts) -> Option<Ran> {
    let gen = core.generation();
    let (head, n) = match http1::parse_request_head(request, &gen.cfg.limits) {
        Ok(Some(h)) => h,
        _ => return None,
    };
    let mut wire = Memory {
        body: request[n..].to_vec(),
        ..Memory::default()
    };
    let mut ex = Exchange {
        head: &head,
        rid: core.ids.next_id(),
        path: std::borrow::Cow::Borrowed(&b"/"[..]),
        close: head.close,
        captures: Vec::new(),
        client,
        host: String::new(),
        scratch: Vec::new(),
        start: Instant::now(),
        facts: ExchangeFacts::default(),
    };
    let keep = match pipeline::run(core, &gen, &mut ex, &mut wire).await {
        Outcome::Done(keep) => keep,
        Outcome::Upgrade(..) => false,
    };
    Some(Ran {
        wire,
        keep,
        facts: ex.facts,
    })
}

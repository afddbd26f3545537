//! A wire made of memory, for driving the phases without a socket: the unit tests of
//! `exchange`, the `exchange` fuzz target and anything that wants to see what the phases
//! answer to a request. The request body arrives in 3-byte pieces (so body streaming is
//! exercised); the response is recorded as status, fields, body length and bytes.
//!
//! `run_whole` is the production use: `exchange::mcp` runs an MCP tool call through the
//! phases with it (the body handed out whole, the recorded response bounded).
//! Not a client's wire: the HTTP/1.1 wire is `conn::client`.

use std::net::SocketAddr;
use std::ops::Range;
use std::time::Instant;

use std::rc::Rc;

use crate::core::{Core, Generation};
use crate::http1::{self, RequestHead};

use super::begin::Lent;
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
        Err(ProxyError::new(super::error::ErrorKind::ClientAborted))
    }
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
    run_in(core, &gen, request, client, Memory::default(), false).await
}

/// Runs `request` in generation `gen` (the caller's own, so one outer request sees one
/// configuration) for `client`, with the body handed out whole and at most `max_sent`
/// response body bytes recorded (`Ran::wire.truncated` says if more came). The request is
/// recorded like a wire's (metrics, access log, usage, span).
pub async fn run_whole(
    core: &Core,
    gen: &Rc<Generation>,
    request: &[u8],
    client: &ClientFacts,
    max_sent: usize,
) -> Option<Ran> {
    let wire = Memory {
        whole: true,
        max_sent,
        ..Memory::default()
    };
    run_in(core, gen, request, client, wire, true).await
}

async fn run_in(
    core: &Core,
    gen: &Rc<Generation>,
    request: &[u8],
    client: &ClientFacts,
    mut wire: Memory,
    record: bool,
) -> Option<Ran> {
    let (head, n) = match http1::parse_request_head(request, &gen.cfg.limits) {
        Ok(Some(h)) => h,
        _ => return None,
    };
    wire.body = request.get(n..).unwrap_or(&[]).to_vec();
    // The production path starts its exchange like a wire does (request id, trace context,
    // who the client is: per-IP limits key on it); the test path keeps its plain one.
    let mut ex = if record {
        super::begin::exchange(core, gen, &head, client, Instant::now(), Lent::fresh())
    } else {
        Exchange {
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
        }
    };
    let keep = match pipeline::run(core, gen, &mut ex, &mut wire).await {
        Outcome::Done(keep) => keep,
        Outcome::Upgrade(..) => false,
    };
    if record {
        ex.facts.bytes_in = request.len() as u64;
        ex.facts.bytes_out = wire.sent.len() as u64;
        core.telemetry.on_request(
            (&gen.cfg, &gen.slots),
            &ex.facts,
            &head,
            ex.rid.as_str(),
            ex.start,
        );
    }
    Some(Ran {
        wire,
        keep,
        facts: ex.facts,
    })
}

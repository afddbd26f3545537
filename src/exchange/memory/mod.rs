//! A wire made of memory, for driving the phases without a socket: the unit tests of
//! `exchange`, the `exchange` fuzz target and anything that wants to see what the phases
//! answer to a request. The request body arrives in 3-byte pieces (so body streaming is
//! exercised); the response is recorded as status, fields, body length and bytes.
//!
//! Not on any client's request path: the HTTP/1.1 wire is `conn::client`. The wire itself is
//! `recorder::Memory`; the phases run a request the gateway made (an MCP tool call) on it with
//! `pipeline::run_made`.

pub mod recorder;

pub use recorder::Memory;

use std::net::SocketAddr;
use std::time::Instant;

use crate::core::Core;
use crate::http1;

use super::model::{ClientFacts, Exchange, ExchangeFacts};
use super::origin::Scheme;
use super::pipeline;
use super::wire::Outcome;

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

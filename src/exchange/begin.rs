//! The start of an exchange, the same for every wire: the request id (the client's
//! `x-request-id` when it is a valid one, else a fresh id), the trace context (from exactly one
//! `traceparent`, as W3C asks: two or more count as none), who the client is
//! (`Origin::decide`, once) and the empty facts telemetry fills in as the phases run.

use std::borrow::Cow;
use std::time::Instant;

use crate::core::{Core, Generation};
use crate::http1::RequestHead;
use crate::request_id::RequestId;

use super::model::{ClientFacts, Exchange, ExchangeFacts};
use super::origin::Origin;

/// What a wire lends a new exchange: buffers it reuses between requests.
pub struct Lent {
    pub host: String,
    pub scratch: Vec<u8>,
    pub resp_lines: Vec<u8>,
}

/// Builds the exchange for `head`, complete at `start`, on `client`'s connection.
#[inline]
pub fn exchange<'a>(
    core: &Core,
    gen: &Generation,
    head: &'a RequestHead,
    client: &'a ClientFacts,
    start: Instant,
    lent: Lent,
) -> Exchange<'a> {
    let rid = head
        .header("x-request-id")
        .and_then(RequestId::from_client)
        .unwrap_or_else(|| core.ids.next_id());
    // Two `traceparent` headers are ambiguous: treated as none (a new trace).
    let traceparent = head.sole_header("traceparent").ok().flatten();
    let trusted = gen.cfg.policies.trusted_proxies.as_ref();
    let mut resp_lines = lent.resp_lines;
    resp_lines.clear();
    Exchange {
        head,
        rid,
        path: Cow::Borrowed(&b"/"[..]),
        close: head.close || core.draining(),
        captures: Vec::new(),
        client,
        host: lent.host,
        scratch: lent.scratch,
        start,
        facts: ExchangeFacts {
            trace: core
                .telemetry
                .trace_context(&gen.cfg.telemetry.tracing, traceparent),
            trace_header: gen.trace_header.clone(),
            resp_lines,
            origin: Origin::decide(client.peer.ip(), client.scheme, head, trusted),
            protocol: client.protocol,
            policy_reply: None,
            // A certificate described to the upstream (`x-forwarded-client-cert`) identifies
            // the caller as much as a token does: the cache must not share what it answered.
            verified_caller: gen.cfg.policies.forward_client_cert && client.peer_cert().is_some(),
            ..ExchangeFacts::default()
        },
    }
}

impl Lent {
    /// Nothing to lend (a wire that does not reuse buffers, such as an HTTP/2 stream).
    pub fn fresh() -> Lent {
        Lent {
            host: String::new(),
            scratch: Vec::new(),
            resp_lines: Vec::new(),
        }
    }
}

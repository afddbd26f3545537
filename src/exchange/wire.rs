//! What the phases need from a wire: the seam between protocol-neutral request handling and
//! one protocol's framing.
//!
//! A wire (`conn::http1`, an HTTP/2 stream in `http2::stream`, `exchange::memory` in tests) implements
//! `Downstream` for one request at a time: it hands out the request body already decoded from
//! its framing and takes the response as a status, field lines and body bytes, framing them
//! its own way. The phases never see sockets, chunk sizes or connection headers.
//!
//! Static dispatch only (`impl Downstream` generics): no boxed futures on the hot path.

use std::ops::Range;

use crate::http1::{RequestHead, ResponseHead};
use crate::upstream::UpConn;

use super::error::ProxyError;
use super::model::Exchange;

/// How long the response body is, as the phases know it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyLen {
    /// No body and no length to announce (204, 304, the answer to HEAD with the upstream's
    /// own `Content-Length` among the fields).
    Bare,
    /// Exactly this many bytes follow.
    Length(u64),
    /// Unknown: bytes follow until `end_response`.
    Unknown,
}

/// A response as the phases produce it.
pub struct Response<'a> {
    pub status: u16,
    /// The producer's own field lines (`name: value\r\n` each), already filtered.
    pub fields: &'a [u8],
    pub body: BodyLen,
    /// The phases would keep the connection open after this response.
    pub keep: bool,
}

/// How a request ended, for the wire.
pub enum Outcome {
    /// Response complete; keep the connection if `true`.
    Done(bool),
    /// The upstream agreed to switch protocols (WebSocket); the wire answers 101 with these
    /// field lines (`response_head::switching_fields`: the upstream's, filtered and edited like
    /// any response's) and whatever the upstream sent after its head (in the connection's
    /// buffer), then joins the two connections.
    Upgrade(Box<UpConn>, Vec<u8>),
}

/// One request's client side, as a wire provides it.
#[allow(async_fn_in_trait)] // used only through generics on one thread; no `Send` bound wanted
pub trait Downstream {
    /// The whole request body, if it already arrived and is at most `max` bytes long (it can
    /// then ride with the upstream head and be sent again on a retry).
    fn buffered_body(&self, head: &RequestHead, max: usize) -> Option<&[u8]>;

    /// Reads until the first `max` bytes of the request body (or all of a shorter body) are
    /// buffered, without consuming them, and returns them with whether they are the whole
    /// body. For policies that read the body before it is forwarded (`Facts::body`).
    async fn peek_body(
        &mut self,
        head: &RequestHead,
        max: usize,
    ) -> Result<(&[u8], bool), ProxyError> {
        // Placeholder until each wire reads ahead: only a body that already arrived.
        let whole = self.buffered_body(head, max);
        Ok((whole.unwrap_or(&[]), whole.is_some()))
    }

    /// The first `n` body bytes were sent upstream with the head.
    fn consume_body(&mut self, n: usize);

    /// Sends an interim `100 Continue` if the client waits for one before sending its body.
    async fn continue_body(&mut self, head: &RequestHead) -> Result<(), ProxyError>;

    /// Appends the next piece of the request body to `out`, decoded from the wire's framing.
    /// Returns `true` once the body is complete (and appends nothing more after that).
    async fn read_body(
        &mut self,
        head: &RequestHead,
        out: &mut Vec<u8>,
    ) -> Result<bool, ProxyError>;

    /// After an early answer: skips the rest of the request body if it is already here (so
    /// the connection stays usable) and says whether it could.
    fn skip_body(&mut self, head: &RequestHead) -> bool;

    /// Starts the response: the head goes out with the first body bytes (or at
    /// `end_response`). Returns whether the connection stays open (the wire may refuse:
    /// an unknown length on HTTP/1.0 is delimited by closing).
    fn start_response(&mut self, ex: &Exchange<'_>, resp: &Response<'_>) -> bool;

    /// The upstream's own response head, just before `start_response` for a proxied answer.
    /// Shaping layers (`exchange::shape`: compression, the cache's recorder) read it; wires
    /// ignore it.
    fn upstream_head(&mut self, ex: &Exchange<'_>, resp: &ResponseHead) {
        let _ = (ex, resp);
    }

    /// Sends `buf[range]` as response body. The wire may copy the bytes and write them at the
    /// next `flush` or `end_response`; `buf` is only borrowed for the call.
    async fn send_body(&mut self, buf: &mut Vec<u8>, range: Range<usize>)
        -> Result<(), ProxyError>;

    /// Queues `bytes` as response body (copied; written at the next `flush` or
    /// `end_response`). For whole bodies the gateway made, which go out with the head.
    fn queue_body(&mut self, bytes: &[u8]);

    /// Trailer fields (`name: value\r\n` lines) the client sent after its request body, once
    /// `read_body` has returned `true`, unfiltered: every way upstream passes them through
    /// `upstream_head::upstream_trailers`. Wires without request trailers have none.
    fn request_trailers(&self) -> Option<&[u8]> {
        None
    }

    /// Queues trailer fields (`name: value\r\n` lines) to follow the response body; they go
    /// out with `end_response`. A wire that cannot carry trailers drops them.
    fn queue_trailers(&mut self, fields: &[u8]) {
        let _ = fields;
    }

    /// Takes back a started response of which nothing has reached the client yet (its head
    /// still waits in a buffer for the first body bytes), so that an upstream failure before
    /// then is answered with an error response (502) instead of a closed connection. `false`
    /// once any byte has left, or where a started response cannot be taken back (an HTTP/2
    /// stream's HEADERS are handed to the codec at once: that stream is reset instead).
    fn retract(&mut self) -> bool {
        false
    }

    /// Whether the upstream's response body goes anywhere once the response started. `false`
    /// when a stored answer went out in its place (a revalidation's 5xx under
    /// stale-if-error): the forward phase then ends the response at once, without reading a
    /// body the client will never see (an upstream could drip it for as long as it likes),
    /// and drops the upstream connection.
    fn wants_upstream_body(&self) -> bool {
        true
    }

    /// `read_body` may be dropped while it waits without losing a byte, so the phases can
    /// read the request body and relay the response at once (full duplex, as gRPC
    /// bidirectional streams need). Wires whose reads cannot be cancelled say no.
    fn duplex(&self) -> bool {
        false
    }

    /// Writes whatever `send_body` queued.
    async fn flush(&mut self) -> Result<(), ProxyError>;

    /// Ends the response (framing trailer, head of an empty response) and writes everything.
    async fn end_response(&mut self) -> Result<(), ProxyError>;

    /// Completes when the client has gone (closed or reset its connection) while the phases
    /// wait on the upstream; never completes while it may still want the answer. Called only
    /// after the request is fully sent upstream, so it never competes with a body read.
    async fn client_gone(&mut self);

    /// The connection closes after an answer while request bytes may still be arriving: let
    /// the client read the answer instead of a reset.
    async fn linger(&mut self);
}

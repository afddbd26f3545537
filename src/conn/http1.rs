//! The HTTP/1.1 wire: one accepted connection from first byte to close. Reads a head,
//! builds an `Exchange`, runs the phases (`exchange::pipeline`) with the connection as their
//! `Downstream`, records telemetry, repeats on keep-alive; parks quiet connections cheaply;
//! hands upgraded connections to the tunnel.
//!
//! Invariants:
//! - One config generation per request, loaded once the head is complete.
//! - Requests on a connection are handled strictly in order, so pipelined responses go back in
//!   request order; a rejected request ends the connection and nothing after it is read.
//! - Panics are caught at the connection boundary: one bad request never takes down a worker.

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::time::Instant;

use crate::core::{Core, Generation, ParkWait};
use crate::deadline_clock;
use crate::exchange::error::{ErrorKind, ProxyError};
use crate::exchange::model::{ClientFacts, Exchange, ExchangeFacts};
use crate::exchange::wire::Outcome;
use crate::exchange::{begin, pipeline, respond};
use crate::http1::{self, Framing, HeadEnd, RequestHead, Version};
use crate::io::{read_more, write_all, IdleWake, IoFail};
use crate::tls::transport::Transport;
use crate::upstream::UpConn;

use super::client::Client;
use super::linger::linger;
use super::tunnel::tunnel;

/// How long an idle keep-alive connection keeps a read buffer posted before it switches to a
/// buffer-less readiness wait.
const IDLE_GRACE: std::time::Duration = std::time::Duration::from_millis(200);

/// A connection: its wire state and the facts about its client.
struct Conn {
    client: Client,
    facts: ClientFacts,
}

/// What a quiet connection keeps between requests: its socket, the facts about its client and
/// where its wait stands. Everything else (the `Client` with its buffers and per-request
/// state, the request-path future) is rebuilt when bytes arrive.
struct Parked {
    stream: Transport,
    facts: ClientFacts,
    /// Still waiting for the first request (its timeout answers 408).
    first: bool,
    /// When the wait ends (keep-alive or first-request header timeout); `None` before the
    /// connection's first wait.
    deadline: Option<Instant>,
}

/// Serves one accepted connection until it closes. Panics are caught here so one bad request
/// can never take down the worker.
///
/// The request path runs in a boxed future that exists only while the connection is active.
/// When a keep-alive connection goes quiet (no bytes within `IDLE_GRACE`), that future ends and
/// hands back a `Parked` (socket and client facts only: the `Client`, its buffers and the
/// future are freed); this small task then waits for readability without any buffer, so an
/// idle connection costs its socket, this task and one readiness poll.
///
/// `hold` is whatever the caller wants kept until the connection ends (the accept loop's
/// admission permit): owned by the task itself, so spawning the returned future directly
/// needs no wrapper future (an `async move` around it would store it twice).
pub fn serve_connection<H: 'static>(
    core: Rc<Core>,
    stream: Transport,
    facts: ClientFacts,
    hold: H,
) -> impl std::future::Future<Output = ()> {
    let key = core.conns.register(stream.as_raw_fd());
    let parked = Parked {
        stream,
        facts,
        first: true,
        deadline: None,
    };
    // Not an `async fn` taking the stream and facts: those arguments would keep their own
    // slots in the task beside `parked` for the connection's whole life.
    serve_parked(core, parked, key, hold)
}

/// `serve_connection`'s task: alternates between the boxed request path and parking.
async fn serve_parked<H>(core: Rc<Core>, mut parked: Parked, key: usize, hold: H) {
    let peer = parked.facts.peer;
    loop {
        // Built inside `Box::pin(..)` directly: a named local would keep its (large) storage in
        // this task's state across the await. The match ends before the park's await, so
        // its temporaries take no room there either.
        parked = match CatchUnwind(Box::pin(connection_loop(&core, parked, key))).await {
            Ok(Some(quiet)) => quiet,
            Ok(None) => break,
            Err(()) => {
                crate::log::error(&format!(
                    "worker {}: panic while serving {peer}; connection closed",
                    core.id
                ));
                break;
            }
        };
        // Readable, expired or failed: the request path sorts out which.
        if let Some(deadline) = parked.deadline {
            core.conns.park(key, deadline);
            let readable = std::pin::pin!(parked.stream.tcp().readable(false));
            ParkWait {
                conns: &core.conns,
                key,
                readable,
            }
            .await;
            core.conns.unpark(key);
        }
    }
    core.conns.unregister(key);
    drop(hold);
}

/// Runs requests on the connection until it closes (`None`) or goes quiet (`Some`).
async fn connection_loop(core: &Core, parked: Parked, key: usize) -> Option<Parked> {
    let Parked {
        stream,
        facts,
        mut first,
        deadline: mut wait_until,
    } = parked;
    let mut conn = Conn {
        client: Client::new(stream, core.generation().cfg.timeouts),
        facts,
    };
    loop {
        let c = &mut conn.client;
        if c.pending() == 0 && core.draining() && !core.idle_grace() {
            c.stream.close_notify(close_by(c)).await;
            return None;
        }
        core.conns.set_idle(key, c.pending() == 0);
        let (head, head_len) = match read_head(core, c, first, wait_until.take()).await {
            Ok(h) => h,
            Err(HeadFail::Quiet(deadline)) => {
                return Some(Parked {
                    stream: conn.client.into_stream(),
                    facts: conn.facts,
                    first,
                    deadline: Some(deadline),
                })
            }
            Err(HeadFail::Close) => {
                c.stream.close_notify(close_by(c)).await;
                return None;
            }
            Err(HeadFail::Reject(err)) => {
                reject(core, c, &conn.facts, err).await;
                return None;
            }
        };
        core.conns.set_idle(key, false);
        first = false;
        let gen = core.generation();
        let outcome = handle_request(core, &gen, &mut conn, &head, head_len).await;
        let c = &mut conn.client;
        let mut abortive = false;
        if let Some(counter) = c.slow.take() {
            core.telemetry.count(counter);
            if counter == crate::metrics::CoreCounter::SlowResponse {
                // What the kernel still queues for this reader would take it as long again.
                crate::io::reset_on_close(c.stream.as_raw_fd());
                abortive = true;
            }
        }
        match outcome {
            // A response that promised keep-alive before the drain began: after a handover
            // the client may already be sending its next request, which is answered (with
            // `Connection: close`) rather than met with a close.
            Outcome::Done(true) if !core.draining() || core.idle_grace() => {}
            Outcome::Done(_) => {
                if !abortive {
                    c.stream.close_notify(close_by(c)).await;
                }
                return None;
            }
            Outcome::Upgrade(up, _) => {
                let mut c = conn.client;
                let leftover = c.buf.split_off(c.pos);
                if tunnel(c.stream, leftover, *up, c.timeouts.tunnel_idle).await {
                    core.telemetry
                        .count(crate::metrics::CoreCounter::TunnelIdle);
                }
                return None;
            }
        }
    }
}

/// How long a closing TLS connection may take to write its close_notify.
fn close_by(c: &Client) -> Instant {
    Instant::now()
        + c.timeouts
            .client_body
            .min(std::time::Duration::from_secs(1))
}

/// Answers a plain HTTP request that arrived on a TLS port with a 400 in plain text (what the
/// client can read), then closes.
pub async fn refuse_plain_http(core: &Core, stream: monoio::net::TcpStream, peer: SocketAddr) {
    let mut c = Client::new(Transport::Plain(stream), core.generation().cfg.timeouts);
    let why = crate::http1::HeadError::BadRequest("plain HTTP request sent to an HTTPS port");
    let facts = ClientFacts::new(peer, crate::exchange::origin::Scheme::Http);
    reject(
        core,
        &mut c,
        &facts,
        ProxyError::new(ErrorKind::BadHead(why)),
    )
    .await;
}

/// Answers a head the parser refused (or that never completed) and closes.
async fn reject(core: &Core, c: &mut Client, client: &ClientFacts, err: ProxyError) {
    let peer = client.peer;
    let start = Instant::now();
    let rid = core.ids.next_id();
    let (mut fields, mut body) = (Vec::with_capacity(64), Vec::with_capacity(192));
    respond::problem(&err, rid.as_str(), &mut fields, &mut body);
    let mut out = Vec::with_capacity(256 + body.len());
    let end = HeadEnd {
        framing: Framing::Length(body.len() as u64),
        request_id: rid.as_bytes(),
        trace: None,
        lines: client.security().map_or(&b""[..], |s| &s.lines),
        keep: false,
        version: Version::Http11,
    };
    http1::write_response_head(&mut out, err.status(), &fields, &end);
    out.extend_from_slice(&body);
    let deadline = Instant::now() + c.timeouts.client_body;
    let facts = ExchangeFacts {
        status: err.status(),
        bytes_in: c.pending() as u64,
        bytes_out: out.len() as u64,
        head_out: (out.len() - body.len()) as u64,
        ..ExchangeFacts::default()
    };
    let sent = write_all(&mut c.stream, &mut out, deadline).await;
    core.telemetry
        .on_rejected(&core.generation().cfg, &facts, rid.as_str(), peer, start);
    if sent.is_ok() && err.kind != ErrorKind::RequestTimeout {
        let pending = c.pending();
        c.pos = 0;
        linger(&mut c.stream, &mut c.buf, pending, &c.timeouts).await;
    }
}

/// Why no request head came.
enum HeadFail {
    /// EOF, reset or idle timeout: close without answering.
    Close,
    /// Answer this error and close.
    Reject(ProxyError),
    /// Nothing arrived within the grace period; park until this deadline.
    Quiet(Instant),
}

/// Reads until a complete head is parsed. `wait_until` carries the deadline of a connection
/// coming back from a quiet wait.
async fn read_head(
    core: &Core,
    c: &mut Client,
    first: bool,
    wait_until: Option<Instant>,
) -> Result<(RequestHead, usize), HeadFail> {
    // Holding the core-local `Rc<Generation>` (not a clone of the shared `Arc<Compiled>`)
    // keeps the config's reference count, which every core shares, out of the request path.
    let gen = core.generation();
    let cfg = &gen.cfg;
    let limits = cfg.limits;
    let mut head_deadline = if c.pending() > 0 || first {
        Some(wait_until.unwrap_or_else(|| deadline_clock::now() + cfg.timeouts.client_header))
    } else {
        None
    };
    let mut idle_deadline = wait_until;
    loop {
        if c.pending() > 0 {
            match http1::parse_request_head(&c.buf[c.pos..], &limits) {
                Ok(Some((head, n))) => {
                    c.pos += n;
                    return Ok((head, n));
                }
                Ok(None) => {}
                Err(e) => return Err(HeadFail::Reject(ProxyError::new(ErrorKind::BadHead(e)))),
            }
        }
        c.compact();
        let deadline = match head_deadline {
            Some(d) => d,
            None => {
                *idle_deadline.get_or_insert_with(|| deadline_clock::now() + cfg.timeouts.keepalive)
            }
        };
        if c.pending() == 0 {
            // Between requests. The connection keeps its buffers through the short grace
            // period (a busy connection reuses them for the next request without allocating);
            // one that stays quiet parks and gives them all up (`HeadFail::Quiet`).
            match c
                .stream
                .idle_wait(&mut c.buf, &mut c.canceller, IDLE_GRACE, deadline)
                .await
            {
                Ok(IdleWake::Data) => {
                    if head_deadline.is_none() {
                        head_deadline = Some(deadline_clock::now() + cfg.timeouts.client_header);
                    }
                    continue;
                }
                Ok(IdleWake::Quiet) => return Err(HeadFail::Quiet(deadline)),
                Err(IoFail::Timeout) if first => {
                    return Err(HeadFail::Reject(ProxyError::new(ErrorKind::RequestTimeout)))
                }
                Err(_) => return Err(HeadFail::Close),
            }
        }
        let deadline = head_deadline.unwrap_or(deadline);
        let grow = limits.max_header_bytes + 1024;
        match read_more(&mut c.stream, &mut c.buf, deadline, grow).await {
            Ok(_) => {
                if head_deadline.is_none() {
                    head_deadline = Some(deadline_clock::now() + cfg.timeouts.client_header);
                }
            }
            Err(IoFail::Timeout) if c.pending() > 0 || first => {
                return Err(HeadFail::Reject(ProxyError::new(ErrorKind::RequestTimeout)))
            }
            Err(_) => return Err(HeadFail::Close),
        }
    }
}

/// Builds the exchange for `head`, runs the phases, and records its telemetry (metrics,
/// access log, span) once it is done.
async fn handle_request(
    core: &Core,
    gen: &Rc<Generation>,
    conn: &mut Conn,
    head: &RequestHead,
    head_len: usize,
) -> Outcome {
    let start = Instant::now();
    let Conn { client: c, facts } = conn;
    c.begin_request(head, start, gen.cfg.timeouts);
    let lent = begin::Lent {
        host: std::mem::take(&mut c.host),
        scratch: std::mem::take(&mut c.scratch),
        resp_lines: std::mem::take(&mut c.resp_lines),
    };
    let mut ex = begin::exchange(core, gen, head, facts, start, lent);
    let mut outcome = pipeline::run(core, gen, &mut ex, c).await;
    if let Outcome::Upgrade(up, fields) = &mut outcome {
        if send_101(c, &ex, up, fields).await.is_err() {
            outcome = Outcome::Done(false);
        }
    }
    ex.facts.bytes_in = head_len as u64 + c.body_in;
    ex.facts.bytes_out = c.bytes_out;
    ex.facts.head_out = c.head_out.min(c.bytes_out);
    core.telemetry.on_request(
        (&gen.cfg, &gen.slots),
        &ex.facts,
        head,
        ex.rid.as_str(),
        start,
    );
    c.host = std::mem::take(&mut ex.host);
    c.scratch = std::mem::take(&mut ex.scratch);
    c.resp_lines = std::mem::take(&mut ex.facts.resp_lines);
    outcome
}

/// Answers the client with a 101 carrying `fields` (`response_head::switching_fields`), the
/// exchange's own lines (request id, trace id, the policies' lines) and whatever the upstream
/// sent after its head; the connection loop then joins the two connections.
async fn send_101(
    c: &mut Client,
    ex: &Exchange<'_>,
    up: &mut UpConn,
    fields: &[u8],
) -> Result<(), IoFail> {
    let trace_hex = ex.facts.trace_echo();
    // Kept open, HTTP/1.1: the writer adds no `Connection` of its own.
    let end = HeadEnd {
        framing: Framing::Bare,
        request_id: ex.rid.as_bytes(),
        trace: trace_hex
            .as_ref()
            .map(|(name, hex)| (name.as_bytes(), &hex[..])),
        lines: &ex.facts.resp_lines,
        keep: true,
        version: Version::Http11,
    };
    let mut out = Vec::with_capacity(fields.len() + ex.facts.resp_lines.len() + up.buf.len() + 96);
    http1::write_response_head(&mut out, 101, fields, &end);
    // The access log's bytes_out is body bytes: the 101 head is not; what the upstream sent
    // after its 101 already is tunnel traffic.
    c.head_out = out.len() as u64;
    out.append(&mut up.buf);
    c.send(&mut out, c.timeouts.client_body).await
}

/// Catches a panic in the wrapped future (the connection task boundary).
struct CatchUnwind<F>(std::pin::Pin<Box<F>>);

impl<F: std::future::Future> std::future::Future for CatchUnwind<F> {
    type Output = Result<F::Output, ()>;
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let fut = self.0.as_mut();
        // The output goes out through `done`, not as the closure's return value: a returned
        // `Poll<F::Output>` (a parked connection, ~200 bytes) was copied out of
        // `catch_unwind` twice on every poll, pending or not.
        let mut done = None;
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            if let std::task::Poll::Ready(v) = fut.poll(cx) {
                done = Some(v);
            }
        }));
        if caught.is_err() {
            return std::task::Poll::Ready(Err(()));
        }
        match done {
            Some(v) => std::task::Poll::Ready(Ok(v)),
            None => std::task::Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    /// The size of the future `f` returns, without calling it.
    fn output_size<A, B, C, R>(_: impl FnOnce(A, B, C, ()) -> R) -> usize {
        std::mem::size_of::<R>()
    }

    /// A plain HTTP/1.1 connection's task lives as long as the connection, and an idle one is
    /// little else: it must not carry the request path's state, a runtime timer or room for
    /// other wires (it was 6.3 KB before those moved out; see loadtest/RESULTS.md).
    #[test]
    fn a_connection_task_holds_only_what_a_parked_connection_needs() {
        let size = output_size(super::serve_connection::<()>);
        assert!(size <= 1024, "the connection task's future is {size} B");
    }
}

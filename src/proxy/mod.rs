//! The request path, top to bottom: read a head, pick the config generation, route, run the
//! route's policies (`guard`), run its action (proxy / static / echo / redirect), write the
//! response, record telemetry, repeat on keep-alive.
//!
//! Invariants:
//! - One config generation per request, loaded once the head is complete.
//! - Requests on a connection are handled strictly in order, so pipelined responses go back in
//!   request order; a rejected request ends the connection and nothing after it is read.
//! - Upstream heads are serialized fresh (never the client's bytes); hop-by-hop headers and
//!   headers named in `Connection` are dropped in both directions.
//! - Bodies stream through fixed buffers in both directions (no whole-body buffering except
//!   the echo action, which is bounded by the route's body limit).
//! - Errors become responses only in `error::render`; once a response head has been sent, a
//!   failure can only close the connection.

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::time::Instant;

use monoio::net::TcpStream;

use crate::config::{Action, Timeouts, UpstreamId};
use crate::core::{Core, Generation};
use crate::error::{self, ErrorKind, ProxyError};
use crate::http1::{self, BodyFraming, Method, RequestHead, Version};
use crate::io::{idle_wait, read_more, write_all, IdleWake, IoFail};
use crate::policy::cors;
use crate::request_id::RequestId;
use crate::route::{HeaderSource, Lookup, RouteId, RouteRequest};
use crate::trace::TraceContext;
use crate::upstream::UpConn;

mod body;
mod forward;
mod guard;
mod linger;
mod local;
pub mod origin;
mod rate;
mod tunnel;
pub mod upstream_head;

use body::{discard_body, read_body_bounded};
use forward::proxy;
use local::echo_json;
use tunnel::tunnel;

/// Appends `n` in decimal without going through `fmt`.
pub fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// How long an idle keep-alive connection keeps a read buffer posted before it switches to a
/// buffer-less readiness wait.
const IDLE_GRACE: std::time::Duration = std::time::Duration::from_millis(200);

/// Bytes we try to move per read while streaming bodies.
const STREAM_CHUNK: usize = 64 * 1024;

/// The client side of one connection.
struct Client {
    stream: TcpStream,
    /// Bytes read but not yet consumed start at `pos` (pipelined requests, body bytes).
    buf: Vec<u8>,
    pos: usize,
    peer: SocketAddr,
    /// The current request's body is being streamed upstream (partly consumed from `buf`),
    /// so it can no longer be skipped to reach the next pipelined request.
    body_streamed: bool,
    /// The client address as written into `X-Forwarded-For` (computed once per connection).
    peer_ip: String,
    /// `for=...` element of `Forwarded` (IPv6 quoted and bracketed).
    forwarded_for: String,
    /// Reused buffer for serialized upstream request heads.
    wire: Vec<u8>,
    /// Reused buffer for the routing host (lowercase, no port).
    host: String,
    /// Cancels the idle read once the grace period is over (reused while nothing is cancelled).
    canceller: monoio::io::Canceller,
    /// Timeouts of the config generation serving the current request (set once per request,
    /// so a reload mid-request never changes them).
    timeouts: Timeouts,
    /// What the current request did so far (for metrics, access log and spans).
    ex: Exchange,
    /// The scheme of the listener this connection came in on.
    scheme: origin::Scheme,
    /// The current request's body reads and response writes, for `timeouts.min_data_rate`.
    rx: rate::RateMeter,
    tx: rate::RateMeter,
    /// When the current request's body must be complete (`timeouts.client_body_total`).
    body_deadline: Instant,
    /// Why the connection is being closed as abusive (counted once the request ends).
    slow: Option<crate::metrics::CoreCounter>,
}

/// The facts telemetry needs about one request, filled in along the request path and reset
/// when the next request starts.
#[derive(Default)]
pub struct Exchange {
    /// Status sent to the client (0 = nothing was sent).
    pub status: u16,
    /// Request head bytes plus request body bytes read.
    pub bytes_in: u64,
    /// Bytes written to the client for this request (head and body).
    pub bytes_out: u64,
    pub route: Option<RouteId>,
    pub upstream: Option<UpstreamFacts>,
    /// The trace this request belongs to (when propagation is on).
    pub trace: Option<TraceContext>,
    /// Response header that carries the trace id (when configured).
    pub trace_header: Option<Rc<str>>,
    /// Header lines (`name: value\r\n`) every response to this request carries: CORS,
    /// RateLimit, and a denial's WWW-Authenticate / Retry-After.
    pub resp_lines: Vec<u8>,
    /// Why a policy refused the caller (auth failures by reason, for metrics).
    pub auth_failure: Option<&'static str>,
    /// Rate-limit outcome on a limited route (`Some(true)` = admitted).
    pub rate_limited: Option<bool>,
    /// The authenticated consumer (kept only when the access log or spans need it).
    pub consumer: Option<std::sync::Arc<str>>,
    /// Who sent the request (decided once, when its head is complete).
    pub origin: origin::Origin,
}

/// The upstream side of a proxied request.
pub struct UpstreamFacts {
    pub id: UpstreamId,
    /// The target that served the request (`None` when no connection was made).
    pub addr: Option<SocketAddr>,
    /// The request went out on a pooled connection.
    pub reused: bool,
    /// Failed connection attempts before the one used (or before giving up).
    pub connect_errors: u32,
    /// From sending the request to the complete response head.
    pub duration: Option<std::time::Duration>,
}

impl Client {
    fn pending(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Writes `out` to the client, counting the bytes for this request's telemetry.
    async fn send(&mut self, out: &mut Vec<u8>, deadline: Instant) -> Result<(), IoFail> {
        let end = out.len();
        self.send_range(out, 0, end, deadline).await
    }

    /// Writes `buf[start..end]` to the client, counting the bytes (see `send`).
    async fn send_range(
        &mut self,
        buf: &mut Vec<u8>,
        start: usize,
        end: usize,
        deadline: Instant,
    ) -> Result<(), IoFail> {
        let n = end.saturating_sub(start);
        self.ex.bytes_out += n as u64;
        let rule = self.timeouts.min_data_rate;
        let Some(budget) = self.tx.budget(&rule, n) else {
            return crate::io::write_range(&mut self.stream, buf, start, end, deadline).await;
        };
        // The rate allowance caps the write's own deadline: a client that stops reading is
        // closed when it falls below the minimum rate, with no timer beyond the write's.
        let began = Instant::now();
        let by_rate = began + budget;
        let res =
            crate::io::write_range(&mut self.stream, buf, start, end, deadline.min(by_rate)).await;
        match &res {
            Ok(()) => {
                self.tx.record(&rule, n, began.elapsed());
            }
            Err(IoFail::Timeout) if by_rate < deadline => {
                self.slow = Some(crate::metrics::CoreCounter::SlowResponse);
            }
            Err(_) => {}
        }
        res
    }

    /// Drops consumed bytes so reads append after what is still pending.
    fn compact(&mut self) {
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
    }
}

/// How a request ended, for the connection loop.
enum Outcome {
    /// Response complete; keep the connection if `true`.
    Done(bool),
    /// Upstream agreed to switch protocols; the loop hands both sockets to the tunnel.
    Tunnel(UpConn),
}

/// Serves one accepted connection until it closes. Panics are caught here so one bad request
/// can never take down the worker.
///
/// The request path runs in a boxed future that exists only while the connection is active.
/// When a keep-alive connection goes quiet (no bytes within `IDLE_GRACE`), that future ends and
/// hands its `Client` back; this small task then waits for readability without any buffer, so
/// an idle connection costs its socket, this task and the `Client` fields.
pub async fn serve_connection(core: Rc<Core>, stream: TcpStream, peer: SocketAddr) {
    let key = core.conns.register(stream.as_raw_fd());
    let mut client = Client::new(stream, peer, core.generation().cfg.timeouts);
    let mut first = true;
    let mut wait_until: Option<Instant> = None;
    loop {
        // Built inside `Box::pin(..)` directly: a named local would keep its (large) storage in
        // this task's state across the await.
        match CatchUnwind(Box::pin(connection_loop(
            &core, client, key, first, wait_until,
        )))
        .await
        {
            Ok(Some(idle)) => {
                client = idle.client;
                first = idle.first;
                wait_until = Some(idle.deadline);
                // Readable, expired or failed: the request path sorts out which.
                let _ =
                    monoio::time::timeout_at(idle.deadline.into(), client.stream.readable(false))
                        .await;
            }
            Ok(None) => break,
            Err(()) => {
                crate::log::error(&format!(
                    "worker {}: panic while serving {peer}; connection closed",
                    core.id
                ));
                break;
            }
        }
    }
    core.conns.unregister(key);
}

/// A connection that went quiet between requests, handed back by the request path.
struct Idle {
    client: Client,
    /// Still waiting for the first request (its timeout answers 408).
    first: bool,
    /// When the wait ends (keep-alive or first-request header timeout).
    deadline: Instant,
}

impl Client {
    fn new(stream: TcpStream, peer: SocketAddr, timeouts: Timeouts) -> Client {
        let ip = peer.ip().to_canonical();
        Client {
            stream,
            buf: Vec::with_capacity(8 * 1024),
            pos: 0,
            peer,
            body_streamed: false,
            peer_ip: ip.to_string(),
            forwarded_for: match ip {
                std::net::IpAddr::V4(v4) => format!("for={v4}"),
                std::net::IpAddr::V6(v6) => format!("for=\"[{v6}]\""),
            },
            wire: Vec::new(),
            host: String::new(),
            canceller: monoio::io::Canceller::new(),
            timeouts,
            ex: Exchange::default(),
            // Plain-TCP listeners only so far; a TLS listener sets `Https` here.
            scheme: origin::Scheme::Http,
            rx: rate::RateMeter::default(),
            tx: rate::RateMeter::default(),
            body_deadline: Instant::now(),
            slow: None,
        }
    }
}

/// Runs requests on the connection until it closes (`None`) or goes quiet (`Some`).
async fn connection_loop(
    core: &Core,
    mut c: Client,
    key: usize,
    mut first: bool,
    mut wait_until: Option<Instant>,
) -> Option<Idle> {
    loop {
        if c.pending() == 0 && core.draining() {
            return None;
        }
        core.conns.set_idle(key, c.pending() == 0);
        let (head, head_len) = match read_head(core, &mut c, first, wait_until.take()).await {
            Ok(h) => h,
            Err(HeadFail::Quiet(deadline)) => {
                return Some(Idle {
                    client: c,
                    first,
                    deadline,
                })
            }
            Err(HeadFail::Close) => return None,
            Err(HeadFail::Reject(err)) => {
                let start = Instant::now();
                let mut out = Vec::with_capacity(256);
                let rid = core.ids.next_id();
                error::render(
                    &err,
                    rid.as_str(),
                    false,
                    Version::Http11,
                    false,
                    &[],
                    &mut out,
                );
                let deadline = Instant::now() + c.timeouts.client_body;
                c.ex = Exchange {
                    status: err.status(),
                    bytes_in: c.pending() as u64,
                    bytes_out: out.len() as u64,
                    ..Exchange::default()
                };
                let sent = write_all(&mut c.stream, &mut out, deadline).await;
                core.telemetry
                    .on_rejected(&core.generation(), &c.ex, rid.as_str(), c.peer, start);
                if sent.is_ok() && err.kind != ErrorKind::RequestTimeout {
                    linger::linger(&mut c).await;
                }
                return None;
            }
        };
        core.conns.set_idle(key, false);
        first = false;
        let gen = core.generation();
        c.timeouts = gen.cfg.timeouts;
        let outcome = handle_request(core, &gen, &mut c, head, head_len).await;
        if let Some(counter) = c.slow.take() {
            core.telemetry.count(counter);
            if counter == crate::metrics::CoreCounter::SlowResponse {
                // What the kernel still queues for this reader would take it as long again.
                crate::io::reset_on_close(c.stream.as_raw_fd());
            }
        }
        match outcome {
            Outcome::Done(true) if !core.draining() => {}
            Outcome::Done(_) => return None,
            Outcome::Tunnel(up) => {
                if tunnel(c, up).await {
                    core.telemetry
                        .count(crate::metrics::CoreCounter::TunnelIdle);
                }
                return None;
            }
        }
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
        Some(wait_until.unwrap_or_else(|| Instant::now() + cfg.timeouts.client_header))
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
            None => *idle_deadline.get_or_insert_with(|| Instant::now() + cfg.timeouts.keepalive),
        };
        if c.pending() == 0 {
            // Between requests: the idle wait releases the buffers of connections that stay
            // quiet, so an idle keep-alive connection costs little more than its task.
            if c.wire.capacity() > 0 {
                c.wire = Vec::new();
            }
            match idle_wait(
                &mut c.stream,
                &mut c.buf,
                &mut c.canceller,
                IDLE_GRACE,
                deadline,
            )
            .await
            {
                Ok(IdleWake::Data) => {
                    if head_deadline.is_none() {
                        head_deadline = Some(Instant::now() + cfg.timeouts.client_header);
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
                    head_deadline = Some(Instant::now() + cfg.timeouts.client_header);
                }
            }
            Err(IoFail::Timeout) if c.pending() > 0 || first => {
                return Err(HeadFail::Reject(ProxyError::new(ErrorKind::RequestTimeout)))
            }
            Err(_) => return Err(HeadFail::Close),
        }
    }
}

/// Header access for the router.
struct HeadHeaders<'a>(&'a RequestHead);

impl HeaderSource for HeadHeaders<'_> {
    fn header(&self, lowercase_name: &str) -> Option<&[u8]> {
        self.0.header(lowercase_name)
    }
}

/// Per-request facts every action needs.
struct Req<'a> {
    head: &'a RequestHead,
    rid: RequestId,
    /// Normalized path (dot segments removed; "/" for an empty absolute-form path).
    path: std::borrow::Cow<'a, [u8]>,
    /// Client asked to close, or we are draining.
    close: bool,
    /// The route template's captures (byte ranges in `path`).
    captures: crate::route::Captures,
}

/// Runs one request and records its telemetry (metrics, access log, span) once it is done.
async fn handle_request(
    core: &Core,
    gen: &Rc<Generation>,
    c: &mut Client,
    head: RequestHead,
    head_len: usize,
) -> Outcome {
    let start = Instant::now();
    let rid = head
        .header("x-request-id")
        .and_then(RequestId::from_client)
        .unwrap_or_else(|| core.ids.next_id());
    // W3C: a request with more than one traceparent is treated as having none.
    let traceparent = head.header("traceparent").filter(|_| {
        head.headers()
            .filter(|(n, _)| n.eq_ignore_ascii_case(b"traceparent"))
            .count()
            == 1
    });
    // The response-line buffer keeps its capacity from request to request.
    let mut resp_lines = std::mem::take(&mut c.ex.resp_lines);
    resp_lines.clear();
    c.ex = Exchange {
        bytes_in: head_len as u64,
        trace: core
            .telemetry
            .trace_context(&gen.cfg.telemetry.tracing, traceparent),
        trace_header: gen.trace_header.clone(),
        resp_lines,
        origin: origin::Origin::decide(
            c.peer.ip(),
            c.scheme,
            &head,
            gen.cfg.policies.trusted_proxies.as_ref(),
        ),
        ..Exchange::default()
    };
    c.rx = rate::RateMeter::default();
    c.tx = rate::RateMeter::default();
    c.body_deadline = start + c.timeouts.client_body_total;
    let outcome = run_request(core, gen, c, &head, rid).await;
    core.telemetry
        .on_request(gen, &c.ex, &head, rid.as_str(), start);
    outcome
}

async fn run_request(
    core: &Core,
    gen: &Rc<Generation>,
    c: &mut Client,
    head: &RequestHead,
    rid: RequestId,
) -> Outcome {
    let cfg = &gen.cfg;
    let close = head.close || core.draining();
    c.body_streamed = false;

    let path = match http1::normalize_path_with(head.path(), &cfg.paths) {
        Ok(p) if p.is_empty() => std::borrow::Cow::Borrowed(&b"/"[..]),
        Ok(p) => p,
        Err(why) => {
            let e = ProxyError::new(ErrorKind::BadBody(why.reason()));
            return respond_error(core, c, head, rid.as_str(), e).await;
        }
    };
    let mut req = Req {
        head,
        rid,
        path,
        close,
        captures: Vec::new(),
    };

    if head.expect_other {
        return respond_error(
            core,
            c,
            head,
            req.rid.as_str(),
            ProxyError::new(ErrorKind::ExpectationFailed),
        )
        .await;
    }

    let mut host = std::mem::take(&mut c.host);
    head.host_for_routing(&mut host);
    let lookup = cfg.table.lookup(
        &RouteRequest {
            host: &host,
            method: head.method,
            path: &req.path,
            query: head.query(),
        },
        &HeadHeaders(head),
    );
    c.host = host;
    // A CORS preflight is answered by the route that would serve the requested method, before
    // any other policy runs (browsers send no credentials with it).
    let acrm = head.header("access-control-request-method");
    if cors::is_preflight(head.method, head.header("origin"), acrm) {
        if let Some((status, mut out)) = guard::preflight(c, &req, cfg, acrm.unwrap_or(b"")) {
            let body = (status != 204).then_some(&b""[..]);
            return finish_local(core, c, &req, status, &mut out, body).await;
        }
    }
    let route = match lookup {
        Lookup::Found { route, captures } => {
            c.ex.route = Some(route);
            req.captures = captures;
            cfg.route(route)
        }
        Lookup::MethodNotAllowed { allow } => {
            let e = ProxyError::new(ErrorKind::MethodNotAllowed(allow));
            return respond_error(core, c, head, req.rid.as_str(), e).await;
        }
        Lookup::NotFound => {
            return respond_error(
                core,
                c,
                head,
                req.rid.as_str(),
                ProxyError::new(ErrorKind::NoRoute),
            )
            .await
        }
    };

    if let BodyFraming::Length(n) = head.body {
        if n > route.max_body {
            let e = ProxyError::new(ErrorKind::BodyTooLarge);
            return respond_error(core, c, head, req.rid.as_str(), e).await;
        }
    }

    let fx = match guard::run_policies(core, c, &req, cfg, route) {
        Ok(fx) => fx,
        Err(e) => return respond_error(core, c, head, req.rid.as_str(), e).await,
    };

    match &route.action {
        Action::Proxy(p) => match proxy(core, gen, c, &req, route, p, &fx).await {
            Ok(o) => o,
            Err(e) => respond_error(core, c, head, req.rid.as_str(), e).await,
        },
        Action::Static(s) => {
            if let Err(e) = discard_body(c, &req, route).await {
                return respond_error(core, c, head, req.rid.as_str(), e).await;
            }
            let mut out = Vec::with_capacity(256 + s.body.len());
            http1::write_status_line(&mut out, s.status);
            for (k, v) in &s.headers {
                http1::write_header(&mut out, k.as_bytes(), v.as_bytes());
            }
            // 204 and 304 carry neither a body nor a length (RFC 9110 §8.6, §15.3.5, §15.4.5);
            // config compile refuses a body for them.
            let body = (!matches!(s.status, 204 | 304)).then_some(&s.body[..]);
            finish_local(core, c, &req, s.status, &mut out, body).await
        }
        Action::Redirect(r) => {
            if let Err(e) = discard_body(c, &req, route).await {
                return respond_error(core, c, head, req.rid.as_str(), e).await;
            }
            let mut location = r.location.clone().into_bytes();
            if r.append_path {
                if location.ends_with(b"/") && req.path.starts_with(b"/") {
                    location.pop();
                }
                location.extend_from_slice(&req.path);
                if let Some(q) = head.query() {
                    location.push(b'?');
                    location.extend_from_slice(q);
                }
            }
            let mut out = Vec::with_capacity(256);
            http1::write_status_line(&mut out, r.status);
            http1::write_header(&mut out, b"location", &location);
            finish_local(core, c, &req, r.status, &mut out, Some(b"")).await
        }
        Action::Echo => match read_body_bounded(c, &req, route).await {
            Ok(body) => {
                let json = echo_json(&req, c.peer, route, &body);
                let mut out = Vec::with_capacity(256 + json.len());
                http1::write_status_line(&mut out, 200);
                http1::write_header(&mut out, b"content-type", b"application/json");
                finish_local(core, c, &req, 200, &mut out, Some(&json)).await
            }
            Err(e) => respond_error(core, c, head, req.rid.as_str(), e).await,
        },
    }
}

/// Completes a gateway-generated response whose status line and own headers are in `out`.
async fn finish_local(
    core: &Core,
    c: &mut Client,
    req: &Req<'_>,
    status: u16,
    out: &mut Vec<u8>,
    body: Option<&[u8]>,
) -> Outcome {
    if let Some(body) = body {
        out.extend_from_slice(b"content-length: ");
        push_decimal(out, body.len() as u64);
        out.extend_from_slice(b"\r\n");
    }
    http1::write_header(out, b"x-request-id", req.rid.as_bytes());
    write_exchange_headers(&c.ex, out);
    // A drain that started while this request ran still gets announced on its response.
    let keep = !req.close && !core.draining();
    http1::write_connection(out, keep, req.head.version);
    out.extend_from_slice(b"\r\n");
    if let (Some(body), false) = (body, req.head.method == Method::Head) {
        out.extend_from_slice(body);
    }
    c.ex.status = status;
    let deadline = Instant::now() + c.timeouts.client_body;
    match c.send(out, deadline).await {
        Ok(()) => Outcome::Done(keep),
        Err(_) => Outcome::Done(false),
    }
}

/// Answers with an error. The connection stays open only if the error allows it and the
/// request body (if any) is already fully buffered and can be skipped.
async fn respond_error(
    core: &Core,
    c: &mut Client,
    head: &RequestHead,
    rid: &str,
    err: ProxyError,
) -> Outcome {
    let body_skippable = match head.body {
        BodyFraming::None | BodyFraming::Length(0) => true,
        BodyFraming::Length(n) => !c.body_streamed && (c.pending() as u64) >= n,
        _ => false,
    };
    let keep = !err.must_close() && !head.close && body_skippable && !core.draining();
    if keep {
        if let BodyFraming::Length(n) = head.body {
            c.pos += n as usize;
        }
    }
    let mut out = Vec::with_capacity(384);
    let mut extra = Vec::new();
    write_exchange_headers(&c.ex, &mut extra);
    error::render(
        &err,
        rid,
        keep,
        head.version,
        head.method == Method::Head,
        &extra,
        &mut out,
    );
    c.ex.status = err.status();
    let deadline = Instant::now() + c.timeouts.client_body;
    match c.send(&mut out, deadline).await {
        Ok(()) if keep => Outcome::Done(true),
        Ok(()) => {
            // Closing with request bytes possibly still on the way: let the client read the
            // response instead of a reset (not for a client that already stalled or left).
            let body_left = match head.body {
                BodyFraming::None | BodyFraming::Length(0) => false,
                BodyFraming::Length(n) => c.body_streamed || (c.pending() as u64) < n,
                _ => true,
            };
            let stalled = matches!(
                err.kind,
                ErrorKind::RequestTimeout | ErrorKind::BadBody("client closed during body")
            );
            if body_left && !stalled {
                linger::linger(c).await;
            }
            Outcome::Done(false)
        }
        Err(_) => Outcome::Done(false),
    }
}

/// The header lines every response to this request carries, whatever produced it (a local
/// action, an error, the upstream): the trace-id header if configured, then the policies'
/// lines (CORS, RateLimit, WWW-Authenticate, Retry-After).
fn write_exchange_headers(ex: &Exchange, out: &mut Vec<u8>) {
    if let (Some(t), Some(name)) = (&ex.trace, &ex.trace_header) {
        http1::write_header(out, name.as_bytes(), &t.trace_id_hex());
    }
    out.extend_from_slice(&ex.resp_lines);
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
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| fut.poll(cx))) {
            Ok(std::task::Poll::Pending) => std::task::Poll::Pending,
            Ok(std::task::Poll::Ready(v)) => std::task::Poll::Ready(Ok(v)),
            Err(_) => std::task::Poll::Ready(Err(())),
        }
    }
}

//! Forward, step two: get the request to the upstream and its response head back.
//!
//! A pooled or fresh connection to the balancer's pick (targets that refuse are backed off and
//! the next is tried), the upstream head and a buffered body in one write, a streamed body
//! after it, then the response head (interim 1xx skipped). Whether a failed attempt (or a
//! retryable status) is followed by another is `exchange::retry`'s decision: the route's
//! policy, and in every case one free resend after a stale pooled connection.

use std::time::Instant;

use monoio::net::TcpStream;

use crate::http1::{self, BodyFraming, Method};
use crate::io::{read_some, write_all, write_untimed, IoFail};
use crate::tls::stream::TlsStream;
use crate::tls::transport::Transport;
use crate::tls::upstream::failure_reason;
use crate::upstream::{UpConn, UpstreamState, WorkerUpstreamTls};

use super::body::stream_request_body;
use super::error::{ErrorKind, ProxyError};
use super::model::{Exchange, UpstreamFacts};
use super::retry::{self, classify, discard, Retries};
use super::wire::Downstream;

/// How long the upstream may work on a request before the gateway starts watching whether the
/// client is still there. Most responses come sooner, so the watch (a readiness poll on the
/// client socket) costs nothing on the fast path; a slower one is noticed this much later.
const CLIENT_WATCH_AFTER: std::time::Duration = std::time::Duration::from_millis(50);

/// Most header fields accepted in an upstream response head (fits the parser's stack slots, so
/// parsing a response allocates no slot array).
pub const RESPONSE_MAX_HEADERS: usize = 128;

/// Most interim (1xx) responses accepted before the final one. They are read and dropped, so
/// without a bound an upstream streaming `100 Continue` would keep the exchange, and a worker's
/// CPU, busy until the response deadline. A few are normal (`100 Continue`, `103 Early Hints`,
/// an occasional `102 Processing`); more than this is a broken upstream (502).
pub const MAX_INTERIM_RESPONSES: usize = 32;

/// One upstream request, ready to send: everything the attempts share.
pub struct Attempt<'a> {
    pub us: &'a UpstreamState,
    pub upstream: crate::config::UpstreamId,
    pub limits: &'a http1::Limits,
    /// The request body is already here and this long: it rides with the head.
    pub buffered_body: Option<usize>,
    /// The route's body limit (chunked bodies are counted while they stream).
    pub max_body: u64,
    /// How long the upstream may take to answer: the upstream's `response_timeout`, or less
    /// when a gRPC client set a shorter `grpc-timeout`.
    pub response_timeout: std::time::Duration,
    /// `response_timeout` is the gRPC client's shorter deadline: a timeout is the client's
    /// choice, not the target's fault, and outlier detection does not count it.
    pub client_deadline: bool,
    /// The request's hashed balancing key (hash upstreams: `exchange::traffic::balance_key`).
    pub key: Option<u64>,
    /// The route's retry policy (`exchange::retry`).
    pub retry: Option<&'a crate::resilience::RetryPolicy>,
    /// The policies' edits of the upstream request's headers; the client's trailers may not
    /// carry what they touch (`upstream_head::upstream_trailers`).
    pub edits: Option<&'a crate::policy::transform::HeaderEdits>,
}

impl Attempt<'_> {
    /// Reports a failed attempt on `target` to outlier detection, except a timeout that only
    /// the client's own deadline made (a client must not be able to eject a healthy target
    /// by asking for an answer faster than it can give one).
    pub fn record_error(&self, target: usize, e: &ProxyError) {
        if !(self.client_deadline && e.kind == ErrorKind::UpstreamTimeout) {
            self.us.record_error(target, e);
        }
    }
}

/// Sends the request, retrying as the route's policy says (`exchange::retry`; without one,
/// once on a stale pooled connection), and returns the connection with the response head.
/// `write_head(target_label, ex, out)` serializes the upstream head.
pub async fn send_with_retry<D: Downstream>(
    a: &Attempt<'_>,
    ex: &mut Exchange<'_>,
    down: &mut D,
    write_head: &impl Fn(&str, &Exchange<'_>, &mut Vec<u8>),
) -> Result<(UpConn, http1::ResponseHead), ProxyError> {
    let replayable = a.buffered_body.is_some();
    let mut r = Retries::new(
        a.us,
        a.retry,
        ex.head.method,
        replayable,
        a.response_timeout,
    );
    ex.facts.upstream = None;
    loop {
        match attempt_once(a, &mut r, ex, down, write_head).await {
            Ok((up, resp)) => {
                if !r.retry_status(resp.status, up.target) {
                    return Ok((up, resp));
                }
                // A retryable status: its response is dropped, never forwarded.
                discard(a.us, up, &resp, ex.head.method);
            }
            Err((e, Some(t))) if r.stale_resend(&e, t) => continue,
            Err((e, target)) => {
                let retry = classify(&e, target.is_some()).is_some_and(|f| r.retry(f, target));
                if !retry {
                    return Err(e);
                }
            }
        }
        r.backoff().await;
    }
}

/// One attempt: a connection, the request, the response head. A failure says which target
/// it reached (`None`: no connection was made).
async fn attempt_once<D: Downstream>(
    a: &Attempt<'_>,
    r: &mut Retries<'_>,
    ex: &mut Exchange<'_>,
    down: &mut D,
    write_head: &impl Fn(&str, &Exchange<'_>, &mut Vec<u8>),
) -> Result<(UpConn, http1::ResponseHead), (ProxyError, Option<usize>)> {
    let one_connect = r.one_connect();
    let acquired = acquire_for(a, ex, &mut r.tried, one_connect).await;
    if let Some(f) = ex.facts.upstream.as_mut() {
        f.attempts = r.attempt;
    }
    let mut up = acquired.map_err(|e| (e, None))?;
    let sent_at = Instant::now();
    let send_by = r.deadline().unwrap_or_else(|| sent_at + a.response_timeout);
    let res = if a.buffered_body.is_some() {
        send_buffered(a, ex, down, &mut up, write_head, sent_at, send_by).await
    } else {
        match send_once(a, ex, down, &mut up, write_head, send_by).await {
            Ok(()) => {
                let now = Instant::now();
                let deadline = r.deadline().unwrap_or(now + a.response_timeout);
                let read =
                    std::pin::pin!(read_response_head(a.us, &mut up, a.limits, ex.head.method));
                watch_upstream(read, down, now, deadline).await
            }
            Err(e) => Err(e),
        }
    };
    // Outlier detection sees every attempt, retried or not.
    match &res {
        Ok(resp) => a.us.record_head(up.target, resp.status),
        Err(e) => a.record_error(up.target, e),
    }
    match res {
        Ok(resp) => {
            if let Some(f) = ex.facts.upstream.as_mut() {
                f.duration = Some(sent_at.elapsed());
            }
            Ok((up, resp))
        }
        Err(e) => Err((e, Some(up.target))),
    }
}

/// The fast path, for a request whose body (if any) is already here: head and body in one
/// write, then the response head, both under one deadline (the retry budget's, else the
/// response timeout from `sent_at`) and, while they finish within `CLIENT_WATCH_AFTER`, one
/// timer. A write that fails on a pooled connection is stale (the upstream closed it while it
/// idled), so the request may be re-sent on another.
async fn send_buffered<D: Downstream>(
    a: &Attempt<'_>,
    ex: &mut Exchange<'_>,
    down: &mut D,
    up: &mut UpConn,
    write_head: &impl Fn(&str, &Exchange<'_>, &mut Vec<u8>),
    sent_at: Instant,
    deadline: Instant,
) -> Result<http1::ResponseHead, ProxyError> {
    let mut wire = std::mem::take(&mut ex.scratch);
    fill_wire(a, ex, down, up, write_head, &mut wire);
    let method = ex.head.method;
    let reused = up.reused;
    let res = {
        let exchange = std::pin::pin!(async {
            if let Err(e) = write_untimed(&mut up.stream, &mut wire).await {
                return Err(write_failed(e, reused));
            }
            read_response_head(a.us, up, a.limits, method).await
        });
        watch_upstream(exchange, down, sent_at, deadline).await
    };
    // Empty if a timeout dropped the write mid-way; the next request allocates anew.
    ex.scratch = wire;
    res
}

/// Waits for `exchange` (the upstream's work) while watching the client: a client that leaves
/// while the upstream works ends the exchange at once (`ClientAborted`, counted 499; the
/// upstream connection is dropped, never pooled, since its answer will go unread). The fast
/// path (done within `CLIENT_WATCH_AFTER` of `now`) arms one timer, as a plain timed
/// operation would; `deadline` ends the wait with `UpstreamTimeout`. The caller pins
/// `exchange` where it builds it: passed by value, its state (~650 bytes) was moved into this
/// future and then into its pinned slot, a 648-byte copy per request in the release build.
async fn watch_upstream<D: Downstream, T>(
    mut exchange: std::pin::Pin<&mut impl std::future::Future<Output = Result<T, ProxyError>>>,
    down: &mut D,
    now: Instant,
    deadline: Instant,
) -> Result<T, ProxyError> {
    let watch_from = (now + CLIENT_WATCH_AFTER).min(deadline);
    let early = monoio::select! {
        done = &mut exchange => Some(done),
        _ = crate::deadline::at(watch_from) => None,
    };
    if let Some(done) = early {
        return done;
    }
    let timeout = ProxyError::new(ErrorKind::UpstreamTimeout);
    monoio::select! {
        done = &mut exchange => done,
        _ = crate::deadline::at(deadline) => Err(timeout),
        _ = down.client_gone() => Err(ProxyError::new(ErrorKind::ClientAborted)),
    }
}

/// `acquire`, recording what happened in the exchange's upstream facts.
async fn acquire_for(
    a: &Attempt<'_>,
    ex: &mut Exchange<'_>,
    tried: &mut u64,
    one_connect: bool,
) -> Result<UpConn, ProxyError> {
    let mut connect_errors = 0;
    let acquired = acquire(a.us, a.key, tried, &mut connect_errors, one_connect).await;
    let facts = UpstreamFacts::attempt(&mut ex.facts.upstream, a.upstream, connect_errors);
    let up = acquired?;
    facts.addr = a.us.targets.get(up.target).map(|t| t.addr);
    facts.in_flight = a.us.track(up.target);
    facts.reused = up.reused;
    Ok(up)
}

/// Writes the head (with a buffered body) by `deadline` (the retry budget's, else the response
/// timeout counted from the attempt's start) and streams any other body.
async fn send_once<D: Downstream>(
    a: &Attempt<'_>,
    ex: &mut Exchange<'_>,
    down: &mut D,
    up: &mut UpConn,
    write_head: &impl Fn(&str, &Exchange<'_>, &mut Vec<u8>),
    deadline: Instant,
) -> Result<(), ProxyError> {
    let mut wire = std::mem::take(&mut ex.scratch);
    fill_wire(a, ex, down, up, write_head, &mut wire);
    let wrote = write_all(&mut up.stream, &mut wire, deadline).await;
    ex.scratch = wire;
    if let Err(e) = wrote {
        return Err(write_failed(e, up.reused));
    }
    stream_request_body(ex, down, up, a.response_timeout, a.max_body, a.edits).await
}

/// The upstream head, followed by the request body when it is buffered.
fn fill_wire<D: Downstream>(
    a: &Attempt<'_>,
    ex: &Exchange<'_>,
    down: &D,
    up: &UpConn,
    write_head: &impl Fn(&str, &Exchange<'_>, &mut Vec<u8>),
    wire: &mut Vec<u8>,
) {
    let label = a.us.targets.get(up.target).map_or("", |t| t.label.as_str());
    write_head(label, ex, wire);
    if let Some(n) = a.buffered_body {
        if let Some(body) = down.buffered_body(ex.head, n) {
            wire.extend_from_slice(&body[..n.min(body.len())]);
        }
    }
}

/// A failed write of the request: on a pooled connection it is stale (may be re-sent).
fn write_failed(e: IoFail, reused: bool) -> ProxyError {
    let kind = match e {
        IoFail::Timeout => ErrorKind::UpstreamTimeout,
        _ => ErrorKind::UpstreamClosed,
    };
    if reused {
        ProxyError::stale(kind)
    } else {
        ProxyError::new(kind)
    }
}

/// A pooled connection to the balancer's pick, or a fresh one; targets that refuse are
/// backed off and the next one is tried (`one_connect`: only one is tried, and when every
/// target was tried already, one of them is picked again). A connect timeout ends the
/// attempt (504). A connect waits as a pending request (`max_pending`).
async fn acquire(
    us: &UpstreamState,
    key: Option<u64>,
    tried: &mut u64,
    connect_errors: &mut u32,
    one_connect: bool,
) -> Result<UpConn, ProxyError> {
    let mut last = ProxyError::new(ErrorKind::NoHealthyUpstream);
    let mut first = true;
    loop {
        let now = crate::deadline_clock::now();
        let pick = match us.pick(now, *tried, key) {
            None if one_connect && *tried != 0 => us.pick(now, 0, key),
            p => p,
        };
        let Some(t) = pick else {
            return Err(last);
        };
        if first {
            first = false;
            if let Some(conn) = us.take_idle(t, now) {
                return Ok(conn);
            }
        }
        let waiting = retry::pending(us)?;
        let res = connect_one(us, t).await;
        drop(waiting);
        if res.is_err() {
            *connect_errors += 1;
        }
        match res {
            Ok(conn) => return Ok(conn),
            Err(e) if matches!(e.kind, ErrorKind::UpstreamOverflow(_)) => return Err(e),
            Err(e) if one_connect || e.kind == ErrorKind::UpstreamConnectTimeout => {
                if t < 64 {
                    *tried |= 1 << t;
                }
                return Err(e);
            }
            Err(e) => {
                last = e;
                if t < 64 {
                    *tried |= 1 << t;
                } else {
                    return Err(e);
                }
            }
        }
    }
}

/// A fresh connection to target `t`: TCP connect and, for a TLS upstream, the handshake, both
/// within the upstream's connect timeout (→ 504). A refused connection or a failed handshake
/// backs the target off and lets the next target be tried.
pub(super) async fn connect_one(us: &UpstreamState, t: usize) -> Result<UpConn, ProxyError> {
    let slot = retry::connection(us)?;
    let addr = us.targets[t].addr;
    let deadline = Instant::now() + us.connect_timeout;
    let connect = TcpStream::connect_addr(addr);
    let tcp = match monoio::time::timeout_at(deadline.into(), connect).await {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(e)) => {
            crate::log::warn(&format!(
                "upstream {} target {addr}: connect failed: {e}; backing off",
                us.name
            ));
            us.mark_down(t, Instant::now());
            return Err(ProxyError::new(ErrorKind::UpstreamConnect));
        }
        Err(_) => {
            us.mark_down(t, Instant::now());
            return Err(ProxyError::new(ErrorKind::UpstreamConnectTimeout));
        }
    };
    let _ = tcp.set_nodelay(true);
    let stream = match &us.tls {
        None => Transport::Plain(tcp),
        Some(tls) => Transport::Tls(handshake(us, t, tls, tcp, deadline).await?),
    };
    Ok(UpConn {
        stream,
        buf: Vec::with_capacity(4 * 1024),
        target: t,
        reused: false,
        slot,
    })
}

/// The TLS handshake with target `t`, verifying its certificate for the target's server name.
/// A timeout drops the half-made session with its socket (never reused).
async fn handshake(
    us: &UpstreamState,
    t: usize,
    tls: &WorkerUpstreamTls,
    tcp: TcpStream,
    deadline: Instant,
) -> Result<Box<TlsStream>, ProxyError> {
    let target = &us.targets[t];
    let name = match &target.server_name {
        Some(n) => n.clone(),
        None => return Err(ProxyError::new(ErrorKind::UpstreamTls)),
    };
    let conn = match rustls::ClientConnection::new(tls.config.clone(), name) {
        Ok(c) => c,
        Err(e) => return Err(tls_failed(us, t, &e.to_string())),
    };
    let mut s = Box::new(TlsStream::new(tcp, conn));
    match monoio::time::timeout_at(deadline.into(), s.handshake()).await {
        Ok(Ok(())) => Ok(s),
        Ok(Err(fail)) => {
            let err = s.take_error();
            Err(tls_failed(us, t, &failure_reason(fail, err.as_ref())))
        }
        Err(_) => {
            crate::log::warn(&format!(
                "upstream {} target {}: TLS handshake not done within the connect timeout \
                 ({:?}); backing off",
                us.name, target.addr, us.connect_timeout
            ));
            us.mark_down(t, Instant::now());
            Err(ProxyError::new(ErrorKind::UpstreamConnectTimeout))
        }
    }
}

/// Whether a TLS upstream ended the exchange with a TLS error (logged): with TLS 1.3 the
/// server checks our client certificate after our side of the handshake is done, so "no
/// certificate" or "bad certificate" arrives as an alert on the first read.
fn tls_refused(us: &UpstreamState, up: &mut UpConn) -> bool {
    let Transport::Tls(t) = &mut up.stream else {
        return false;
    };
    let Some(e) = t.take_error() else {
        return false;
    };
    let target = us.targets.get(up.target).map(|t| t.addr.to_string());
    crate::log::warn(&format!(
        "upstream {} target {}: TLS failure: {e}",
        us.name,
        target.unwrap_or_default()
    ));
    true
}

/// Logs a failed handshake (upstream, target, name, rustls's reason) and backs the target off.
fn tls_failed(us: &UpstreamState, t: usize, why: &str) -> ProxyError {
    let target = &us.targets[t];
    let name = target
        .server_name
        .as_ref()
        .map(|n| n.to_str().into_owned())
        .unwrap_or_default();
    crate::log::warn(&format!(
        "upstream {} target {} (server name {name}): TLS handshake failed: {why}; backing off",
        us.name, target.addr
    ));
    us.mark_down(t, Instant::now());
    ProxyError::new(ErrorKind::UpstreamTls)
}

/// Reads the upstream response head, skipping interim 1xx responses other than 101. Untimed:
/// `await_response_head` bounds it (and drops the connection when it gives up).
pub(super) async fn read_response_head(
    us: &UpstreamState,
    up: &mut UpConn,
    limits: &http1::Limits,
    method: Method,
) -> Result<http1::ResponseHead, ProxyError> {
    let mut got_any = false;
    let mut interim = 0;
    loop {
        if !up.buf.is_empty() {
            match http1::parse_response_head(
                &up.buf,
                limits.max_header_bytes.max(64 * 1024),
                RESPONSE_MAX_HEADERS,
                method,
            ) {
                Ok(Some((head, n))) => {
                    up.buf.drain(..n);
                    if (100..200).contains(&head.status) && head.status != 101 {
                        interim += 1;
                        if interim > MAX_INTERIM_RESPONSES {
                            return Err(ProxyError::new(ErrorKind::UpstreamBadResponse));
                        }
                        continue;
                    }
                    return Ok(head);
                }
                Ok(None) => {}
                Err(_) => return Err(ProxyError::new(ErrorKind::UpstreamBadResponse)),
            }
        }
        match read_some(&mut up.stream, &mut up.buf, 64 * 1024).await {
            Ok(_) => got_any = true,
            Err(_) if tls_refused(us, up) => return Err(ProxyError::new(ErrorKind::UpstreamTls)),
            Err(_) if up.reused && !got_any => {
                return Err(ProxyError::stale(ErrorKind::UpstreamClosed))
            }
            Err(_) => return Err(ProxyError::new(ErrorKind::UpstreamClosed)),
        }
    }
}

/// Whether the request asks for a WebSocket tunnel. Only WebSocket is tunnelled: tunnelling
/// e.g. h2c would hand the client a raw HTTP/2 connection to the upstream that bypasses
/// routing and policies ("h2c smuggling").
pub fn wants_websocket(h: &http1::RequestHead) -> bool {
    // RFC 6455 4.1: the opening handshake is a GET.
    h.upgrade
        && h.method == http1::Method::Get
        && h.body == BodyFraming::None
        && h.header("upgrade")
            .is_some_and(|u| u.trim_ascii().eq_ignore_ascii_case(b"websocket"))
}

//! The forward phase to an HTTP/2 upstream (`protocol = "http2"`): one stream on a shared
//! connection (`upstream::h2`) per exchange.
//!
//! The upstream head is the very head an HTTP/1.1 upstream would get (`write_upstream_head`:
//! forwarding fields, request id, transforms, rewrites), re-read with httparse and turned into
//! an HTTP/2 request: `Host` becomes `:authority`, connection-specific fields and
//! `Transfer-Encoding` go, `te: trailers` is kept for gRPC. The body streams from the wire as
//! the upstream's flow-control window opens (never buffered whole), then the client's
//! trailers. The response head is rewritten as an HTTP/1.1 head and parsed by
//! `http1::parse_response_head`, so `start_response` and the field filter are the HTTP/1.1
//! path's own; the body is relayed as it arrives (window released as the client takes it),
//! then the upstream's trailers.
//!
//! Full duplex: when the wire's body reads can be dropped mid-wait (`Downstream::duplex`, an
//! HTTP/2 client), the request body and the response are relayed at once (gRPC bidirectional
//! streaming). Otherwise the body is sent first, then the response read, as over HTTP/1.1.
//!
//! Retries (`exchange::retry`, as over HTTP/1.1 when the whole request went out with its head):
//! a refused stream (REFUSED_STREAM, or a graceful GOAWAY that excluded it) was not
//! processed, and is resent once for free like a stale pooled connection; a stream whose
//! connection died before the request left is moved to another connection at once; the
//! route's policy retries the rest (a retried response's stream is reset, its body unread).

use std::future::poll_fn;
use std::time::{Duration, Instant};

use bytes::Bytes;
use h2::client::ResponseFuture;
use h2::{RecvStream, SendStream};

use crate::config::Route;
use crate::core::Core;
use crate::h2flood::Flood;
use crate::http1::{self, HeadError};
use crate::metrics::CoreCounter;
use crate::policy::pipeline::Effects;
use crate::policy::transform::HeaderEdits;
use crate::tls::poll::PollStream;
use crate::upstream::h2::{establish, Guard, Opening, Pick, StreamClaim};
use crate::upstream::UpstreamState;

use super::body::STREAM_CHUNK;
use super::error::{ErrorKind, ProxyError};
use super::model::{Exchange, UpstreamFacts};
use super::response_head::{end_with_trailers, failed_after_start, start_response};
use super::retry::{self, classify, Retries};
use super::send::{connect_one, Attempt, MAX_INTERIM_RESPONSES, RESPONSE_MAX_HEADERS};
use super::wire::{Downstream, Outcome};

/// Times a request may move to another connection because its own had died unnoticed.
const DEAD_CONN_RETRIES: u32 = 3;

/// One request on the upstream: its stream's two halves and what has been sent.
struct Call {
    resp: ResponseFuture,
    send: SendStream<Bytes>,
    /// The request body (and trailers) are all sent.
    req_done: bool,
    sent: u64,
}

/// Serializes the upstream head for a target (`forward`'s closure).
pub trait WriteHead: Fn(&str, &Exchange<'_>, &mut Vec<u8>) {}
impl<F: Fn(&str, &Exchange<'_>, &mut Vec<u8>)> WriteHead for F {}

/// What answering the client needs from the forward phase (`start_response`'s inputs and the
/// body idle timeout).
pub struct Answer<'a> {
    pub core: &'a Core,
    pub route: &'a Route,
    pub fx: &'a Effects,
    /// Longest wait for the next response body piece (`timeouts.upstream_idle`).
    pub idle: Duration,
}

/// Runs the proxy action against an HTTP/2 upstream. `Err` only before anything was sent to
/// the client.
pub async fn forward<D: Downstream>(
    ans: &Answer<'_>,
    ex: &mut Exchange<'_>,
    down: &mut D,
    a: &Attempt<'_>,
    write_head: &impl WriteHead,
) -> Result<Outcome, ProxyError> {
    let duplex = down.duplex();
    // Outlier detection: the target that answered (or failed), when the upstream counts.
    let target = |ex: &Exchange<'_>| {
        let addr = ex.facts.upstream.as_ref().and_then(|f| f.addr);
        a.us.records_outcomes()
            .then(|| a.us.target_at(addr))
            .flatten()
    };
    let started = start_with_retry(a, ex, down, write_head).await;
    if let (Err(e), Some(t)) = (&started, target(ex)) {
        a.record_error(t, e);
    }
    let (_claim, mut call, head) = started?;
    let (parts, body) = match head {
        Some(h) => h,
        None => {
            if !duplex {
                send_body(ex, down, &mut call, a).await?;
            }
            let sent_at = Instant::now();
            let deadline = Instant::now() + a.response_timeout;
            let h = await_head(a, ex, down, &mut call, duplex, deadline).await;
            if let (Err(e), Some(t)) = (&h, target(ex)) {
                a.record_error(t, e);
            }
            let h = h?;
            if let Some(f) = ex.facts.upstream.as_mut() {
                f.duration = Some(sent_at.elapsed());
            }
            h
        }
    };
    if let Some(n) = a.buffered_body.filter(|&n| n > 0) {
        down.consume_body(n);
    }
    let resp = to_response_head(&parts, body.is_end_stream(), ex.head.method, a.limits)?;
    ex.facts.status = resp.status;
    let target = target(ex);
    if let Some(t) = target {
        a.us.record_head(t, resp.status);
    }
    let keep = start_response(ans.core, ex, down, ans.route, ans.fx, &resp)?;
    if resp.body == http1::BodyFraming::None || !down.wants_upstream_body() {
        if let Some(t) = target {
            a.us.record_response(t, resp.status, Ok(()));
        }
        // HEAD, 204, 304, or a stored answer sent instead: the answer is complete. Whatever
        // the upstream sends after the head (h2 refuses DATA after a HEAD, some servers send
        // it anyway) is not waited for; dropping the stream resets it.
        return Ok(match down.end_response().await {
            Ok(()) => Outcome::Done(keep),
            Err(_) => Outcome::Done(false),
        });
    }
    let relayed = relay_response(ans, ex, down, &mut call, body, a, duplex).await;
    if let Some(t) = target {
        a.us.record_response(t, resp.status, relayed.as_ref().copied());
    }
    match relayed {
        Ok(()) => Ok(Outcome::Done(keep)),
        Err(e) => failed_after_start(ex, down, e),
    }
}

type Head = (http::response::Parts, RecvStream);

/// Acquires a stream, sends the head (and a buffered body), and, when the whole request went
/// out, waits for the response head there so a failure or a retryable status can be retried
/// (`exchange::retry`; a refused stream is resent once for free, like a stale connection).
async fn start_with_retry<D: Downstream>(
    a: &Attempt<'_>,
    ex: &mut Exchange<'_>,
    down: &mut D,
    write_head: &impl WriteHead,
) -> Result<(StreamClaim, Call, Option<Head>), ProxyError> {
    let replayable = a.buffered_body.is_some();
    let mut r = Retries::new(
        a.us,
        a.retry,
        ex.head.method,
        replayable,
        a.response_timeout,
    );
    let mut dead = 0u32;
    ex.facts.upstream = None;
    loop {
        let one_connect = r.one_connect();
        let acquired = acquire_for(a, ex, &mut r.tried, one_connect).await;
        if let Some(f) = ex.facts.upstream.as_mut() {
            f.attempts = r.attempt;
        }
        let (claim, target) = match acquired {
            Ok(got) => got,
            Err(e) if classify(&e, false).is_some_and(|f| r.retry(f, None)) => {
                r.backoff().await;
                continue;
            }
            Err(e) => return Err(e),
        };
        let sent_at = Instant::now();
        let deadline = r
            .deadline()
            .unwrap_or_else(|| Instant::now() + a.response_timeout);
        let mut call = match start_call(a, ex, down, &claim, target, write_head, deadline).await {
            Ok(call) => call,
            Err(None) if dead < DEAD_CONN_RETRIES => {
                // The connection had died unnoticed; the request never left.
                claim.mark_dead();
                dead += 1;
                continue;
            }
            Err(None) => return Err(ProxyError::new(ErrorKind::UpstreamClosed)),
            // Sending a buffered body failed (the stream was reset, no window in time).
            Err(Some(e)) if classify(&e, true).is_some_and(|f| r.retry(f, Some(target))) => {
                a.record_error(target, &e);
                drop(claim);
                r.backoff().await;
                continue;
            }
            Err(Some(e)) => return Err(e),
        };
        if !call.req_done {
            return Ok((claim, call, None));
        }
        let deadline = r
            .deadline()
            .unwrap_or_else(|| Instant::now() + a.response_timeout);
        match await_head(a, ex, down, &mut call, false, deadline).await {
            Ok(head) => {
                if r.retry_status(head.0.status.as_u16(), target) {
                    // Outlier detection sees the retried answer (`forward` records the last).
                    a.us.record_head(target, head.0.status.as_u16());
                    // Dropping the stream resets it: the response body is never read.
                    drop((head, call, claim));
                    r.backoff().await;
                    continue;
                }
                if let Some(f) = ex.facts.upstream.as_mut() {
                    f.duration = Some(sent_at.elapsed());
                }
                return Ok((claim, call, Some(head)));
            }
            Err(e) if r.stale_resend(&e, target) => {}
            Err(e) if classify(&e, true).is_some_and(|f| r.retry(f, Some(target))) => {
                a.record_error(target, &e);
                r.backoff().await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Opens the stream with the request head and sends a buffered body with it. `Err(None)`:
/// the connection was already dead (nothing was sent).
async fn start_call<D: Downstream>(
    a: &Attempt<'_>,
    ex: &mut Exchange<'_>,
    down: &mut D,
    claim: &StreamClaim,
    target: usize,
    write_head: &impl WriteHead,
    deadline: Instant,
) -> Result<Call, Option<ProxyError>> {
    let label = a.us.targets.get(target).map_or("", |t| t.label.as_str());
    let mut wire = std::mem::take(&mut ex.scratch);
    write_head(label, ex, &mut wire);
    let scheme = if a.us.tls.is_some() { "https" } else { "http" };
    let req = to_request(&wire, scheme, wants_trailers(ex.head));
    ex.scratch = wire;
    let req = req.map_err(Some)?;
    // Waiting for stream capacity is pending (`max_pending`).
    let waiting = retry::pending(a.us).map_err(Some)?;
    let ready = monoio::time::timeout_at(deadline.into(), claim.send.clone().ready()).await;
    drop(waiting);
    let mut sender = match ready {
        Ok(Ok(s)) => s,
        Ok(Err(_)) => return Err(None),
        Err(_) => return Err(Some(ProxyError::new(ErrorKind::UpstreamTimeout))),
    };
    let buffered = a.buffered_body.and_then(|n| {
        let b = down.buffered_body(ex.head, n)?;
        Some(Bytes::copy_from_slice(&b[..n.min(b.len())]))
    });
    let trailers = buffered.as_ref().and_then(|_| down.request_trailers());
    let bodiless = buffered.as_ref().is_some_and(|b| b.is_empty()) && trailers.is_none();
    let (resp, send) = sender.send_request(req, bodiless).map_err(|_| None)?;
    let mut call = Call {
        resp,
        send,
        req_done: bodiless,
        sent: 0,
    };
    if let (Some(body), false) = (buffered, bodiless) {
        let trailers = trailers.map(|t| trailer_map(t, a.edits));
        send_chunk(&mut call.send, body, trailers.is_none(), deadline)
            .await
            .map_err(Some)?;
        if let Some(t) = trailers {
            call.send.send_trailers(t).map_err(|_| Some(closed()))?;
        }
        call.req_done = true;
    }
    Ok(call)
}

fn closed() -> ProxyError {
    ProxyError::new(ErrorKind::UpstreamClosed)
}

/// A stream on a ready connection to the balancer's pick (connecting first if needed),
/// recording what happened in the exchange's upstream facts.
async fn acquire_for(
    a: &Attempt<'_>,
    ex: &mut Exchange<'_>,
    tried: &mut u64,
    one_connect: bool,
) -> Result<(StreamClaim, usize), ProxyError> {
    let mut connect_errors = 0;
    let acquired = acquire(a.us, a.key, tried, &mut connect_errors, one_connect).await;
    let facts = UpstreamFacts::attempt(&mut ex.facts.upstream, a.upstream, connect_errors);
    let (claim, t) = acquired?;
    facts.addr = a.us.targets.get(t).map(|t| t.addr);
    facts.in_flight = a.us.track(t);
    facts.reused = claim.reused;
    Ok((claim, t))
}

/// `send::acquire`'s loop for HTTP/2: the balancer's pick, a stream on one of its connections
/// or a new connection; a target that refuses is backed off and the next is tried
/// (`one_connect`: only one, as `send::acquire`). Waiting for a connection being set up is
/// pending (`max_pending`).
async fn acquire(
    us: &UpstreamState,
    key: Option<u64>,
    tried: &mut u64,
    connect_errors: &mut u32,
    one_connect: bool,
) -> Result<(StreamClaim, usize), ProxyError> {
    let mut last = ProxyError::new(ErrorKind::NoHealthyUpstream);
    let started = Instant::now();
    let deadline = started + us.connect_timeout;
    loop {
        let now = Instant::now();
        let pick = match us.pick(now, *tried, key) {
            None if one_connect && *tried != 0 => us.pick(now, 0, key),
            p => p,
        };
        let Some(t) = pick else {
            return Err(last);
        };
        let conn = match us.targets[t].h2.pick(us.max_idle()) {
            Pick::Use(claim) => return Ok((claim, t)),
            Pick::Wait(c) => {
                let waiting = retry::pending(us)?;
                c.wait_settled(deadline).await;
                drop(waiting);
                if Instant::now() >= deadline {
                    return Err(ProxyError::new(ErrorKind::UpstreamConnectTimeout));
                }
                continue;
            }
            Pick::Open(c) => c,
        };
        match open(us, t, conn).await {
            Ok(claim) => return Ok((claim, t)),
            Err(e) if matches!(e.kind, ErrorKind::UpstreamOverflow(_)) => return Err(e),
            Err(e) => {
                *connect_errors += 1;
                if one_connect && t < 64 {
                    *tried |= 1 << t;
                }
                if e.kind == ErrorKind::UpstreamConnectTimeout || t >= 64 || one_connect {
                    return Err(e);
                }
                last = e;
                *tried |= 1 << t;
            }
        }
    }
}

/// A new connection to target `t`: TCP (and TLS, which must agree on ALPN `h2`), then the
/// HTTP/2 handshake, all within the connect timeout.
async fn open(us: &UpstreamState, t: usize, conn: Opening) -> Result<StreamClaim, ProxyError> {
    let deadline = Instant::now() + us.connect_timeout;
    let up = connect_one(us, t).await?;
    let slot = up.slot;
    let io = PollStream::from_transport(up.stream)
        .map_err(|_| ProxyError::new(ErrorKind::UpstreamConnect))?;
    if let PollStream::Tls(s) = &io {
        if s.conn().alpn_protocol() != Some(b"h2") {
            crate::log::warn(&format!(
                "upstream {} target {}: protocol is \"http2\" but the server did not choose \
                 ALPN h2; backing off",
                us.name, us.targets[t].addr
            ));
            us.mark_down(t, Instant::now());
            return Err(ProxyError::new(ErrorKind::UpstreamTls));
        }
    }
    let peer = format!("upstream {} target {}", us.name, us.targets[t].addr);
    let guard = Guard::new(peer, count_flood);
    let res = establish(conn, io, guard, us.idle_timeout(), deadline).await;
    if let (Ok(claim), Some(slot)) = (&res, slot) {
        claim.hold_slot(slot);
    }
    if let Err(e) = &res {
        crate::log::warn(&format!(
            "upstream {} target {}: HTTP/2 connection setup failed ({}); backing off",
            us.name,
            us.targets[t].addr,
            e.code()
        ));
        us.mark_down(t, Instant::now());
    }
    res
}

/// Streams the rest of the request body and its trailers to the upstream (the sequential
/// case: the response is read afterwards).
async fn send_body<D: Downstream>(
    ex: &mut Exchange<'_>,
    down: &mut D,
    call: &mut Call,
    a: &Attempt<'_>,
) -> Result<(), ProxyError> {
    while !call.req_done {
        let mut data = Vec::with_capacity(STREAM_CHUNK);
        let done = down.read_body(ex.head, &mut data).await?;
        forward_chunk(down, call, data, done, a).await?;
    }
    Ok(())
}

/// Sends one piece of the request body read from the wire (`done`: it was the last, and the
/// client's trailers follow it).
async fn forward_chunk<D: Downstream>(
    down: &D,
    call: &mut Call,
    data: Vec<u8>,
    done: bool,
    a: &Attempt<'_>,
) -> Result<(), ProxyError> {
    call.sent += data.len() as u64;
    if call.sent > a.max_body {
        return Err(ProxyError::new(ErrorKind::BodyTooLarge));
    }
    let trailers = if done {
        down.request_trailers().map(|t| trailer_map(t, a.edits))
    } else {
        None
    };
    let deadline = Instant::now() + a.response_timeout;
    let end = done && trailers.is_none();
    if !data.is_empty() || end {
        send_chunk(&mut call.send, Bytes::from(data), end, deadline).await?;
    }
    if let Some(t) = trailers {
        call.send.send_trailers(t).map_err(|_| closed())?;
    }
    call.req_done = done;
    Ok(())
}

/// Sends `data` as DATA frames, each only once the upstream's window has room for it.
async fn send_chunk(
    send: &mut SendStream<Bytes>,
    mut data: Bytes,
    end: bool,
    deadline: Instant,
) -> Result<(), ProxyError> {
    if data.is_empty() {
        return send.send_data(data, end).map_err(|_| closed());
    }
    while !data.is_empty() {
        send.reserve_capacity(data.len());
        let granted = poll_fn(|cx| send.poll_capacity(cx));
        let n = match monoio::time::timeout_at(deadline.into(), granted).await {
            Ok(Some(Ok(n))) => n,
            Ok(_) => return Err(closed()),
            Err(_) => return Err(ProxyError::new(ErrorKind::UpstreamTimeout)),
        };
        if n == 0 {
            continue;
        }
        let piece = data.split_to(n.min(data.len()));
        send.send_data(piece, end && data.is_empty())
            .map_err(|_| closed())?;
    }
    Ok(())
}

/// What woke the wait for the response head.
enum HeadEvent {
    Body(Result<bool, ProxyError>),
    Head(Result<http::Response<RecvStream>, ProxyError>),
}

/// Waits for the response head within the response timeout, watching the client; in duplex
/// mode the request body keeps streaming meanwhile.
async fn await_head<D: Downstream>(
    a: &Attempt<'_>,
    ex: &mut Exchange<'_>,
    down: &mut D,
    call: &mut Call,
    duplex: bool,
    deadline: Instant,
) -> Result<Head, ProxyError> {
    let timeout = || ProxyError::new(ErrorKind::UpstreamTimeout);
    let mut interim = 0;
    loop {
        if call.req_done || !duplex {
            let head = monoio::select! {
                h = final_response(&mut call.resp, &mut interim) => h,
                _ = monoio::time::sleep_until(deadline.into()) => return Err(timeout()),
                _ = down.client_gone() => return Err(ProxyError::new(ErrorKind::ClientAborted)),
            };
            return head.map(|r| r.into_parts());
        }
        let mut data = Vec::with_capacity(STREAM_CHUNK);
        let ev = monoio::select! {
            r = down.read_body(ex.head, &mut data) => HeadEvent::Body(r),
            h = final_response(&mut call.resp, &mut interim) => HeadEvent::Head(h),
            _ = monoio::time::sleep_until(deadline.into()) => return Err(timeout()),
        };
        match ev {
            HeadEvent::Head(h) => return h.map(|r| r.into_parts()),
            HeadEvent::Body(r) => {
                let done = r?;
                forward_chunk(down, call, data, done, a).await?;
            }
        }
    }
}

/// What woke the response relay.
enum RelayEvent {
    Body(Result<bool, ProxyError>),
    Data(Option<Result<Bytes, h2::Error>>),
}

/// Relays the response body and trailers to the wire (whose response has started), with the
/// request body still streaming in duplex mode.
async fn relay_response<D: Downstream>(
    ans: &Answer<'_>,
    ex: &mut Exchange<'_>,
    down: &mut D,
    call: &mut Call,
    mut body: RecvStream,
    a: &Attempt<'_>,
    duplex: bool,
) -> Result<(), ProxyError> {
    let idle = ans.idle;
    let aborted = || ProxyError::new(ErrorKind::UpstreamAborted);
    loop {
        let mut data = Vec::new();
        let ev = if duplex && !call.req_done {
            monoio::select! {
                r = down.read_body(ex.head, &mut data) => RelayEvent::Body(r),
                d = poll_fn(|cx| body.poll_data(cx)) => RelayEvent::Data(d),
                _ = monoio::time::sleep(idle) => return Err(aborted()),
            }
        } else {
            match monoio::time::timeout(idle, poll_fn(|cx| body.poll_data(cx))).await {
                Ok(d) => RelayEvent::Data(d),
                Err(_) => return Err(aborted()),
            }
        };
        match ev {
            RelayEvent::Body(r) => {
                let done = r.map_err(|_| ProxyError::new(ErrorKind::ClientAborted))?;
                forward_chunk(down, call, data, done, a)
                    .await
                    .map_err(|_| aborted())?;
            }
            RelayEvent::Data(Some(Ok(chunk))) => {
                let n = chunk.len();
                let mut buf = Vec::from(chunk);
                down.send_body(&mut buf, 0..n).await?;
                let _ = body.flow_control().release_capacity(n);
            }
            RelayEvent::Data(Some(Err(_))) => return Err(aborted()),
            RelayEvent::Data(None) => break,
        }
    }
    let trailers = poll_fn(|cx| body.poll_trailers(cx));
    let mut raw = Vec::new();
    match monoio::time::timeout(idle, trailers).await {
        Ok(Ok(Some(map))) => {
            for (n, v) in &map {
                http1::write_header(&mut raw, n.as_str().as_bytes(), v.as_bytes());
            }
        }
        Ok(Ok(None)) => {}
        _ => return Err(aborted()),
    }
    end_with_trailers(ex, down, ans.route, ans.fx, &raw).await
}

/// The call's final response. h2 hands over the interim (1xx) ones first; they are dropped and
/// counted in `interim`, and more than `MAX_INTERIM_RESPONSES` is a broken upstream (502), as
/// on HTTP/1.1, instead of a stream that keeps the exchange busy until its deadline.
async fn final_response(
    resp: &mut ResponseFuture,
    interim: &mut usize,
) -> Result<http::Response<RecvStream>, ProxyError> {
    poll_fn(|cx| {
        while let std::task::Poll::Ready(Some(Ok(_))) = resp.poll_informational(cx) {
            *interim += 1;
            if *interim > MAX_INTERIM_RESPONSES {
                return std::task::Poll::Ready(Err(ProxyError::new(
                    ErrorKind::UpstreamBadResponse,
                )));
            }
        }
        std::future::Future::poll(std::pin::Pin::new(&mut *resp), cx)
            .map_err(|e| upstream_error(&e))
    })
    .await
}

/// What an h2 failure before the response head means. A stream the upstream refused, or one
/// a graceful GOAWAY excluded, was not processed: retryable like a stale connection. A stream
/// the gateway's side reset as a protocol error got a malformed response (an uppercase or
/// connection-specific field, no or a bad `:status`): a bad response, as over HTTP/1.1, not
/// a close.
fn upstream_error(e: &h2::Error) -> ProxyError {
    let refused = e.reason() == Some(h2::Reason::REFUSED_STREAM)
        || (e.is_go_away() && e.is_remote() && e.reason() == Some(h2::Reason::NO_ERROR));
    if refused {
        ProxyError::not_processed(ErrorKind::UpstreamClosed)
    } else if !e.is_remote() && e.reason() == Some(h2::Reason::PROTOCOL_ERROR) {
        ProxyError::new(ErrorKind::UpstreamBadResponse)
    } else if e.is_reset() || e.is_go_away() || e.is_io() {
        ProxyError::new(ErrorKind::UpstreamClosed)
    } else {
        ProxyError::new(ErrorKind::UpstreamBadResponse)
    }
}

/// Whether the client asked for trailers (`te: trailers`) or speaks gRPC, whose upstreams
/// require `te: trailers`.
fn wants_trailers(h: &http1::RequestHead) -> bool {
    let te = h.header("te").is_some_and(|v| {
        v.split(|&b| b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"trailers"))
    });
    te || super::grpc::is_grpc(h)
}

/// Fields HTTP/2 forbids (RFC 9113 §8.2.2), plus `host` (it becomes `:authority`).
fn dropped_field(name: &[u8]) -> bool {
    const DROP: [&[u8]; 7] = [
        b"host",
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"transfer-encoding",
        b"upgrade",
        b"te",
    ];
    DROP.iter().any(|d| d.eq_ignore_ascii_case(name))
}

/// Turns the serialized upstream head back into an HTTP/2 request (see the module header).
pub fn to_request(
    wire: &[u8],
    scheme: &str,
    te_trailers: bool,
) -> Result<http::Request<()>, ProxyError> {
    let bad = |why| ProxyError::new(ErrorKind::BadHead(HeadError::BadRequest(why)));
    // One slot per line of the head: every field fits, whatever the policies added.
    let lines = wire.iter().filter(|&&b| b == b'\n').count();
    let mut slots = vec![httparse::EMPTY_HEADER; lines];
    let mut parsed = httparse::Request::new(&mut slots);
    match parsed.parse(wire) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return Err(bad("request head not representable in HTTP/2")),
    }
    let method = parsed.method.unwrap_or("GET");
    let path = parsed.path.unwrap_or("/");
    let host = parsed
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("host"))
        .map_or(&b""[..], |h| h.value);
    let mut uri = Vec::with_capacity(scheme.len() + 3 + host.len() + path.len());
    uri.extend_from_slice(scheme.as_bytes());
    uri.extend_from_slice(b"://");
    uri.extend_from_slice(host);
    uri.extend_from_slice(path.as_bytes());
    let uri = http::Uri::try_from(uri).map_err(|_| bad("host not usable as :authority"))?;
    let method = http::Method::from_bytes(method.as_bytes()).map_err(|_| bad("bad method"))?;
    let mut req = http::Request::new(());
    *req.method_mut() = method;
    *req.uri_mut() = uri;
    let map = req.headers_mut();
    for h in parsed.headers.iter() {
        if dropped_field(h.name.as_bytes()) {
            continue;
        }
        if let (Ok(n), Ok(v)) = (
            http::HeaderName::from_bytes(h.name.as_bytes()),
            http::HeaderValue::from_bytes(h.value),
        ) {
            map.append(n, v);
        }
    }
    if te_trailers {
        map.insert(http::header::TE, http::HeaderValue::from_static("trailers"));
    }
    Ok(req)
}

/// Rewrites an HTTP/2 response head as HTTP/1.1 and parses it with the HTTP/1.1 rules
/// (`end_stream`: the HEADERS frame ended the stream, so there is no body).
pub fn to_response_head(
    parts: &http::response::Parts,
    end_stream: bool,
    method: http1::Method,
    limits: &http1::Limits,
) -> Result<http1::ResponseHead, ProxyError> {
    let mut buf = Vec::with_capacity(512);
    let status = parts.status.as_u16();
    buf.extend_from_slice(b"HTTP/1.1 ");
    http1::push_decimal(&mut buf, u64::from(status));
    buf.push(b' ');
    buf.extend_from_slice(http1::reason_phrase(status).as_bytes());
    buf.extend_from_slice(b"\r\n");
    let mut has_length = false;
    for (n, v) in &parts.headers {
        let name = n.as_str().as_bytes();
        if dropped_field(name) {
            continue;
        }
        has_length |= name == b"content-length";
        http1::write_header(&mut buf, name, v.as_bytes());
    }
    if end_stream && !has_length && status != 204 && status != 304 {
        buf.extend_from_slice(b"content-length: 0\r\n");
    }
    buf.extend_from_slice(b"\r\n");
    let max = limits.max_header_bytes.max(64 * 1024).max(buf.len());
    match http1::parse_response_head(&buf, max, RESPONSE_MAX_HEADERS, method) {
        Ok(Some((head, _))) => Ok(head),
        _ => Err(ProxyError::new(ErrorKind::UpstreamBadResponse)),
    }
}

/// The client's trailer field lines as an h2 header map, minus what may not reach the upstream
/// (`upstream_head::upstream_trailers`).
fn trailer_map(raw: &[u8], edits: Option<&HeaderEdits>) -> http::HeaderMap {
    let mut lines = Vec::new();
    super::upstream_head::upstream_trailers(raw, edits, &mut lines);
    let mut map = http::HeaderMap::new();
    for line in lines.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = line[..colon].to_ascii_lowercase();
        if let (Ok(n), Ok(v)) = (
            http::HeaderName::from_bytes(&name),
            http::HeaderValue::from_bytes(line[colon + 1..].trim_ascii()),
        ) {
            map.append(n, v);
        }
    }
    map
}

/// Counts an upstream connection closed for a flood, on this worker's telemetry.
fn count_flood(f: Flood) {
    let counter = match f {
        Flood::Pings => CoreCounter::UpstreamHttp2FloodPings,
        Flood::Settings => CoreCounter::UpstreamHttp2FloodSettings,
        Flood::WindowUpdates => CoreCounter::UpstreamHttp2FloodWindowUpdates,
        // RST_STREAM is not charged on an upstream's connection; listed so the match is total.
        Flood::EmptyFrames | Flood::Resets => CoreCounter::UpstreamHttp2FloodEmptyFrames,
    };
    if let Some(core) = crate::core::current() {
        core.telemetry.count(counter);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_upstream_head_becomes_an_h2_request() {
        let wire = b"POST /v1/x?y=1 HTTP/1.1\r\nhost: api.test:8080\r\nconnection: close\r\n\
            transfer-encoding: chunked\r\nx-forwarded-for: 10.0.0.1\r\ncontent-type: \
            application/grpc\r\n\r\n";
        let req = to_request(wire, "http", true).unwrap();
        assert_eq!(req.method(), http::Method::POST);
        assert_eq!(req.uri().to_string(), "http://api.test:8080/v1/x?y=1");
        let h = req.headers();
        assert!(h.get("connection").is_none() && h.get("transfer-encoding").is_none());
        assert!(h.get("host").is_none(), "host travels as :authority");
        assert_eq!(h.get("x-forwarded-for").unwrap(), "10.0.0.1");
        assert_eq!(h.get("te").unwrap(), "trailers");
    }

    #[test]
    fn a_bodiless_h2_response_has_length_zero() {
        let resp = http::Response::builder()
            .status(200)
            .header("grpc-status", "5")
            .body(())
            .unwrap();
        let (parts, ()) = resp.into_parts();
        let limits = http1::Limits::default();
        let head = to_response_head(&parts, true, http1::Method::Post, &limits).unwrap();
        assert_eq!(head.status, 200);
        assert_eq!(head.body, http1::BodyFraming::Length(0));
        assert_eq!(head.header("grpc-status"), Some(&b"5"[..]));
        let open = to_response_head(&parts, false, http1::Method::Post, &limits).unwrap();
        assert_eq!(open.body, http1::BodyFraming::CloseDelimited);
    }
}

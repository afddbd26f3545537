//! The forward phase: prepare the upstream request, send it (with retry, `exchange::send`),
//! write the client's response head, stream the body (`exchange::body`), finish (pool the
//! upstream connection or drop it). The client's response head is built in
//! `exchange::response_head`; an HTTP/2 upstream takes the same steps in `exchange::forward_h2`.

use std::rc::Rc;

use crate::config::{ProxyAction, Route, UpstreamProtocol};
use crate::core::{Core, Generation};
use crate::http1::{self, BodyFraming, HeadError, Method};
use crate::policy::pipeline::Effects;
use crate::upstream::{UpConn, UpstreamState};

use super::body::{stream_response_body, STREAM_CHUNK};
use super::error::{ErrorKind, ProxyError};
use super::model::Exchange;
use super::response_head::{
    end_with_trailers, failed_after_start, start_response, switching_fields,
};
pub use super::response_head::{filter_response_fields, Owned};
use super::send::{send_with_retry, wants_websocket, Attempt};
use super::upstream_head::{write_upstream_head, UpstreamHead};
use super::wire::{Downstream, Outcome};

/// Runs the proxy action: sends the request upstream and relays the answer (routes with a
/// `cache` or `compress` policy come here through `exchange::cache_phase`, with the wire
/// wrapped in `exchange::shape::Shaped`). `Err` only before anything was sent to the client.
pub async fn forward<D: Downstream>(
    core: &Core,
    gen: &Rc<Generation>,
    ex: &mut Exchange<'_>,
    down: &mut D,
    route: &Route,
    p: &ProxyAction,
    fx: &Effects,
) -> Result<Outcome, ProxyError> {
    let upstream = super::traffic::choose_upstream(p, ex);
    let us = &gen.upstreams[upstream.0 as usize];
    // Held until the response is done (circuit breaker `max_requests`, retry budget).
    let _active = super::retry::admit(us)?;
    let tunnel = wants_websocket(ex.head);
    down.continue_body(ex.head).await?;
    // A `Content-Length` body of up to 64 KiB is gathered before the upstream is asked (nginx
    // buffers request bodies too): the first read holds only part of one sent with its head,
    // and a body held whole can be resent. The client's body deadlines apply while it comes.
    if let BodyFraming::Length(n) = ex.head.body {
        if n > 0 && n <= STREAM_CHUNK as u64 {
            down.peek_body(ex.head, n as usize).await?;
        }
    }

    // A body that is already fully buffered and small rides with the head in one write and
    // can be re-sent: after a stale pooled connection, or by the route's retry policy.
    let buffered_body = match ex.head.body {
        BodyFraming::None => Some(0usize),
        BodyFraming::Length(n) if n <= STREAM_CHUNK as u64 => {
            down.buffered_body(ex.head, n as usize).map(|b| b.len())
        }
        _ => None,
    };
    // Policies that removed or added query parameters change the query sent upstream.
    let mut query_buf = Vec::new();
    let query = (!fx.query_remove.is_empty() || !fx.query_add.is_empty()).then(|| {
        crate::policy::transform::rewrite_query(
            ex.head.query(),
            &fx.query_remove,
            &fx.query_add,
            &mut query_buf,
        );
        &query_buf[..]
    });
    let edits = (!fx.upstream.is_empty()).then_some(&fx.upstream);
    let client_cert = ex
        .client
        .peer_cert()
        .filter(|_| gen.cfg.policies.forward_client_cert);
    let write_head = |label: &str, ex: &Exchange<'_>, out: &mut Vec<u8>| {
        let u = UpstreamHead {
            head: ex.head,
            path: &ex.path,
            request_id: ex.rid.as_str(),
            peer_ip: &ex.client.peer_ip,
            forwarded_for: &ex.client.forwarded_for,
            trusted_peer: ex.facts.origin.trusted_peer,
            scheme: ex.facts.origin.scheme,
            target_label: label,
            tunnel,
            trace: ex.facts.trace.as_ref(),
            captures: &ex.captures,
            edits,
            query,
            target: fx.path.as_deref(),
            client_cert,
            attempts: ex.facts.upstream.as_ref().map_or(1, |f| f.attempts),
        };
        write_upstream_head(out, &u, p);
    };
    if let Some(m) = &p.mirror {
        super::mirror::start(gen, m, ex, down, buffered_body, tunnel, &write_head);
    }
    // A gRPC client's own deadline (`grpc-timeout`, honoured for gRPC requests only) may be
    // shorter than the upstream's: when it is what ends the wait, the target is not at fault.
    let client_deadline = super::grpc::is_grpc(ex.head)
        .then(|| super::grpc::timeout(ex.head))
        .flatten()
        .filter(|t| *t < us.response_timeout);
    let response_timeout = client_deadline.unwrap_or(us.response_timeout);
    let attempt = Attempt {
        us,
        upstream,
        limits: &gen.cfg.limits,
        buffered_body,
        max_body: route.max_body,
        response_timeout,
        client_deadline: client_deadline.is_some(),
        key: super::traffic::balance_key(us, ex),
        retry: p.retry.as_ref(),
        edits,
    };
    if us.protocol == UpstreamProtocol::Http2 {
        if tunnel {
            // WebSocket over HTTP/2 (RFC 8441) is not spoken to upstreams.
            return Err(ProxyError::new(ErrorKind::BadHead(
                HeadError::NotImplemented("WebSocket to an HTTP/2 upstream"),
            )));
        }
        let ans = super::forward_h2::Answer {
            core,
            route,
            fx,
            idle: gen.cfg.timeouts.upstream_idle,
        };
        return super::forward_h2::forward(&ans, ex, down, &attempt, &write_head).await;
    }
    let (mut up, resp) = send_with_retry(&attempt, ex, down, &write_head).await?;
    if let Some(n) = buffered_body.filter(|&n| n > 0) {
        down.consume_body(n);
    }
    ex.facts.status = resp.status;

    if resp.status == 101 {
        // Only the protocol the client asked for (WebSocket) may be switched to: an upstream
        // switching to another (h2c) would have the client's next bytes bypass routing.
        let websocket = resp
            .header("upgrade")
            .is_some_and(|u| u.trim_ascii().eq_ignore_ascii_case(b"websocket"));
        if !tunnel || !websocket {
            return Err(ProxyError::new(ErrorKind::UpstreamBadResponse));
        }
        us.record_response(up.target, resp.status, Ok(()));
        let fields = switching_fields(ex, route, fx, &resp);
        return Ok(Outcome::Upgrade(Box::new(up), fields));
    }
    let keep = start_response(core, ex, down, route, fx, &resp)?;
    if !down.wants_upstream_body() {
        // A stored answer went out instead; the upstream's body is not waited for.
        us.record_response(up.target, resp.status, Ok(()));
        if resp.body == BodyFraming::None {
            finish(ex.head.method, us, up, &resp);
        }
        // End the answer whether or not the connection stays: a stored answer is written
        // by `end_response` (a `Connection: close` client would otherwise get nothing).
        let ended = down.end_response().await.is_ok();
        return Ok(Outcome::Done(keep && ended));
    }
    let streamed = stream_response_body(down, &mut up, resp.body, gen.cfg.timeouts.upstream_idle);
    let streamed = match streamed.await {
        Ok(trailers) => end_with_trailers(ex, down, route, fx, &trailers).await,
        Err(e) => Err(e),
    };
    us.record_response(up.target, resp.status, streamed.as_ref().copied());
    match streamed {
        Ok(()) => {
            finish(ex.head.method, us, up, &resp);
            Ok(Outcome::Done(keep))
        }
        Err(e) => failed_after_start(ex, down, e),
    }
}

/// Pools the upstream connection if nothing can follow the response on it: bytes already in
/// `up.buf` are not ours to forward. After HEAD, and after a 204 or 304 that announces a body
/// it must not have, the connection is not reused either: such a body may still be in flight,
/// past the reuse check in `take_idle`, and would answer the next request.
fn finish(method: Method, us: &UpstreamState, mut up: UpConn, resp: &http1::ResponseHead) {
    if !resp.close && up.buf.is_empty() && method != Method::Head && !announces_forbidden_body(resp)
    {
        up.reused = false;
        us.put_idle(up, crate::deadline_clock::now());
    }
}

/// A 204 carrying Content-Length (other than 0) or Transfer-Encoding, or a 304 carrying
/// Transfer-Encoding: RFC 9110 forbids them (a 304's Content-Length is the representation's
/// and allowed), and an upstream that sends them may well send the body too.
fn announces_forbidden_body(resp: &http1::ResponseHead) -> bool {
    let chunked = resp.header("transfer-encoding").is_some();
    match resp.status {
        204 => {
            chunked
                || resp
                    .header("content-length")
                    .is_some_and(|v| v.trim_ascii() != b"0")
        }
        304 => chunked,
        _ => false,
    }
}

//! The forward phase: prepare the upstream request, send it (with retry, `exchange::send`),
//! write the client's response head, stream the body (`exchange::body`), finish (pool the
//! upstream connection or drop it).
//!
//! Response heads are rebuilt, never copied: hop-by-hop fields and fields named in
//! `Connection` are dropped, the gateway owns `X-Request-Id`, the framing, and (with a CORS
//! policy on the route) every `Access-Control-*` field.

use std::rc::Rc;
use std::time::Instant;

use crate::config::{ProxyAction, Route, UpstreamProtocol};
use crate::core::{Core, Generation};
use crate::http1::{self, BodyFraming, HeadError, Method};
use crate::policy::pipeline::Effects;
use crate::upstream::{UpConn, UpstreamState};

use super::body::{stream_response_body, STREAM_CHUNK};
use super::error::{ErrorKind, ProxyError};
use super::model::Exchange;
use super::send::{send_with_retry, wants_websocket, Attempt};
use super::upstream_head::{write_upstream_head, UpstreamHead};
use super::wire::{BodyLen, Downstream, Outcome, Response};

/// Runs the proxy action. `Err` only before anything was sent to the client.
pub async fn forward<D: Downstream>(
    core: &Core,
    gen: &Rc<Generation>,
    ex: &mut Exchange<'_>,
    down: &mut D,
    route: &Route,
    p: &ProxyAction,
    fx: &Effects,
) -> Result<Outcome, ProxyError> {
    let us = &gen.upstreams[p.upstream.0 as usize];
    let tunnel = wants_websocket(ex.head);
    down.continue_body(ex.head).await?;

    // A body that is already fully buffered and small rides with the head in one write and
    // can be re-sent if a pooled connection turns out to be stale.
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
            client_cert,
        };
        write_upstream_head(out, &u, p);
    };
    let response_timeout = match super::grpc::timeout(ex.head) {
        Some(t) => t.min(us.response_timeout),
        None => us.response_timeout,
    };
    let attempt = Attempt {
        us,
        upstream: p.upstream,
        limits: &gen.cfg.limits,
        buffered_body,
        max_body: route.max_body,
        response_timeout,
    };
    if us.protocol == UpstreamProtocol::Http2 {
        if tunnel {
            // WebSocket over HTTP/2 (RFC 8441) is not spoken to upstreams.
            return Err(ProxyError::new(ErrorKind::BadHead(HeadError::NotImplemented(
                "WebSocket to an HTTP/2 upstream",
            ))));
        }
        return super::forward_h2::forward(core, gen, ex, down, route, fx, &attempt, &write_head)
            .await;
    }
    let (mut up, resp) = send_with_retry(&attempt, ex, down, &write_head).await?;
    if let Some(n) = buffered_body.filter(|&n| n > 0) {
        down.consume_body(n);
    }
    ex.facts.status = resp.status;

    if resp.status == 101 {
        if !tunnel {
            return Err(ProxyError::new(ErrorKind::UpstreamBadResponse));
        }
        return Ok(Outcome::Upgrade(up, resp));
    }
    let keep = start_response(core, ex, down, route, fx, &resp);
    let streamed = stream_response_body(down, &mut up, resp.body, gen.cfg.timeouts.upstream_idle);
    match streamed.await {
        Ok(()) => {
            finish(ex.head.method, us, up, &resp);
            Ok(Outcome::Done(keep))
        }
        Err(e) => {
            ex.facts.aborted = Some(e.side());
            Ok(Outcome::Done(false))
        }
    }
}

/// Builds the client's response head from the upstream's and starts the response. Returns
/// whether the client connection stays open.
pub(super) fn start_response<D: Downstream>(
    core: &Core,
    ex: &mut Exchange<'_>,
    down: &mut D,
    route: &Route,
    fx: &Effects,
    resp: &http1::ResponseHead,
) -> bool {
    let mut fields = std::mem::take(&mut ex.scratch);
    fields.clear();
    let edits = (!fx.response.is_empty()).then_some(&fx.response);
    let security = ex.client.security();
    let own = Owned {
        cors: route.policies_for(&ex.path, &ex.host).1.is_some(),
        hsts: security.is_some_and(|s| s.hsts),
        nosniff: security.is_some_and(|s| s.nosniff),
    };
    filter_response_fields(resp, edits, own, &mut fields);
    let body = match resp.body {
        BodyFraming::None => BodyLen::Bare,
        BodyFraming::Length(n) => BodyLen::Length(n),
        BodyFraming::Chunked | BodyFraming::CloseDelimited => BodyLen::Unknown,
    };
    // A drain that began while the upstream worked is announced here, so the client does not
    // reuse a connection about to close.
    let r = Response {
        status: resp.status,
        fields: &fields,
        body,
        keep: !ex.close && !core.draining(),
    };
    let keep = down.start_response(ex, &r);
    // Keep the buffer for the next request unless a large head grew it.
    if fields.capacity() <= 16 * 1024 {
        ex.scratch = fields;
    }
    keep
}

/// Response fields the gateway writes itself, so an upstream's copies are dropped.
#[derive(Clone, Copy, Debug, Default)]
pub struct Owned {
    /// The route has a CORS policy: every `access-control-*` field.
    pub cors: bool,
    /// The TLS listener sets `strict-transport-security`.
    pub hsts: bool,
    /// The TLS listener sets `x-content-type-options`.
    pub nosniff: bool,
}

/// The upstream's end-to-end fields with the route's response edits applied, minus the
/// fields the gateway writes itself (`own`). Public so the
/// benchmarks measure this exact code.
pub fn filter_response_fields(
    resp: &http1::ResponseHead,
    edits: Option<&crate::policy::transform::HeaderEdits>,
    own: Owned,
    out: &mut Vec<u8>,
) {
    let conn_lists_names = resp.header("connection").is_some();
    for (n, v) in resp.headers() {
        if http1::is_hop_by_hop(n)
            || (conn_lists_names && http1::named_in_connection(resp.headers(), n))
            || n.eq_ignore_ascii_case(b"x-request-id")
            || (n.eq_ignore_ascii_case(b"content-length") && resp.body != BodyFraming::None)
            || (own.cors && n.len() > 15 && n[..15].eq_ignore_ascii_case(b"access-control-"))
            || (own.hsts && n.eq_ignore_ascii_case(b"strict-transport-security"))
            || (own.nosniff && n.eq_ignore_ascii_case(b"x-content-type-options"))
        {
            continue;
        }
        match edits {
            Some(e) => {
                if let Some(name) = e.map_name(n) {
                    http1::write_header(out, name, v);
                }
            }
            None => http1::write_header(out, n, v),
        }
    }
    if let Some(e) = edits {
        for (name, value) in &e.add {
            if !http1::is_hop_by_hop(name)
                && !name.eq_ignore_ascii_case(b"content-length")
                && !name.eq_ignore_ascii_case(b"transfer-encoding")
            {
                http1::write_header(out, name, value);
            }
        }
    }
}

/// Pools the upstream connection if nothing can follow the response on it: bytes already in
/// `up.buf` are not ours to forward. After HEAD, and after a 204 that announces a body it must
/// not have, the connection is not reused either: such a body may still be in flight, past the
/// reuse check in `take_idle`, and would answer the next request.
fn finish(method: Method, us: &UpstreamState, mut up: UpConn, resp: &http1::ResponseHead) {
    if !resp.close && up.buf.is_empty() && method != Method::Head && !announces_forbidden_body(resp)
    {
        up.reused = false;
        us.put_idle(up, Instant::now());
    }
}

/// A 204 response carrying Content-Length (other than 0) or Transfer-Encoding: RFC 9110
/// forbids both, and an upstream that sends them may well send the body too.
fn announces_forbidden_body(resp: &http1::ResponseHead) -> bool {
    resp.status == 204
        && (resp.header("transfer-encoding").is_some()
            || resp
                .header("content-length")
                .is_some_and(|v| v.trim_ascii() != b"0"))
}

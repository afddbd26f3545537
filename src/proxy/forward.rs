//! Forwarding to an upstream: serialize a fresh request head, get a pooled or new connection
//! (balancing, back-off, one retry on a stale pooled connection), send the body, read the
//! response head and stream the response back.

use std::rc::Rc;
use std::time::Instant;

use monoio::net::TcpStream;

use crate::config::{ProxyAction, Route};
use crate::core::{Core, Generation};
use crate::error::{ErrorKind, ProxyError};
use crate::http1::{self, BodyFraming, Method, Version};
use crate::io::{read_more, write_all, IoFail};
use crate::upstream::{UpConn, UpstreamState};

use super::body::{maybe_continue, stream_request_body, stream_response_body};
use super::upstream_head::{write_upstream_head, UpstreamHead};
use super::{Client, Outcome, Req, UpstreamFacts, STREAM_CHUNK};
use crate::policy::pipeline::Effects;

// ---------------------------------------------------------------------------------------
// Proxying
// ---------------------------------------------------------------------------------------

/// Most header fields accepted in an upstream response head (fits the parser's stack slots, so
/// parsing a response allocates no slot array).
const RESPONSE_MAX_HEADERS: usize = 128;

/// A pooled connection to the balancer's pick, or a fresh one; targets that refuse are
/// backed off and the next one is tried. A connect timeout ends the attempt (504).
async fn acquire(
    us: &UpstreamState,
    tried: &mut u64,
    connect_errors: &mut u32,
) -> Result<UpConn, ProxyError> {
    let mut last = ProxyError::new(ErrorKind::NoHealthyUpstream);
    let mut first = true;
    loop {
        let now = Instant::now();
        let Some(t) = us.pick(now, *tried) else {
            return Err(last);
        };
        if first {
            first = false;
            if let Some(conn) = us.take_idle(t, now) {
                return Ok(conn);
            }
        }
        let res = connect_one(us, t).await;
        if res.is_err() {
            *connect_errors += 1;
        }
        match res {
            Ok(conn) => return Ok(conn),
            Err(e) if e.kind == ErrorKind::UpstreamConnectTimeout => return Err(e),
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

async fn connect_one(us: &UpstreamState, t: usize) -> Result<UpConn, ProxyError> {
    let addr = us.targets[t].addr;
    match monoio::time::timeout(us.connect_timeout, TcpStream::connect_addr(addr)).await {
        Ok(Ok(stream)) => {
            let _ = stream.set_nodelay(true);
            Ok(UpConn {
                stream,
                buf: Vec::with_capacity(4 * 1024),
                target: t,
                reused: false,
            })
        }
        Ok(Err(e)) => {
            crate::log::warn(&format!(
                "upstream {} target {addr}: connect failed: {e}; backing off",
                us.name
            ));
            us.mark_down(t, Instant::now());
            Err(ProxyError::new(ErrorKind::UpstreamConnect))
        }
        Err(_) => {
            us.mark_down(t, Instant::now());
            Err(ProxyError::new(ErrorKind::UpstreamConnectTimeout))
        }
    }
}

/// What went wrong while sending the request / awaiting the head, and whether it is safe to
/// try again on a fresh connection.
struct SendFail {
    err: ProxyError,
    /// Failed on a reused connection before any response byte arrived.
    stale: bool,
}

/// Reads the upstream response head, skipping interim 1xx responses other than 101.
async fn read_response_head(
    up: &mut UpConn,
    cfg_limits: &http1::Limits,
    method: Method,
    deadline: Instant,
) -> Result<http1::ResponseHead, SendFail> {
    let stale = up.reused;
    let mut got_any = false;
    loop {
        if !up.buf.is_empty() {
            match http1::parse_response_head(
                &up.buf,
                cfg_limits.max_header_bytes.max(64 * 1024),
                RESPONSE_MAX_HEADERS,
                method,
            ) {
                Ok(Some((head, n))) => {
                    up.buf.drain(..n);
                    if (100..200).contains(&head.status) && head.status != 101 {
                        continue;
                    }
                    return Ok(head);
                }
                Ok(None) => {}
                Err(_) => {
                    return Err(SendFail {
                        err: ProxyError::new(ErrorKind::UpstreamBadResponse),
                        stale: false,
                    })
                }
            }
        }
        match read_more(&mut up.stream, &mut up.buf, deadline, 64 * 1024).await {
            Ok(_) => got_any = true,
            Err(IoFail::Timeout) => {
                return Err(SendFail {
                    err: ProxyError::new(ErrorKind::UpstreamTimeout),
                    stale: false,
                })
            }
            Err(_) => {
                return Err(SendFail {
                    err: ProxyError::new(ErrorKind::UpstreamClosed),
                    stale: stale && !got_any,
                })
            }
        }
    }
}

pub(super) async fn proxy(
    core: &Core,
    gen: &Rc<Generation>,
    c: &mut Client,
    req: &Req<'_>,
    route: &Route,
    p: &ProxyAction,
    fx: &Effects,
) -> Result<Outcome, ProxyError> {
    let cfg = &gen.cfg;
    let us = &gen.upstreams[p.upstream.0 as usize];
    let h = req.head;
    // Only WebSocket is tunnelled: tunnelling e.g. h2c would hand the client a raw HTTP/2
    // connection to the upstream that bypasses routing and policies ("h2c smuggling").
    let tunnel_req = h.upgrade
        && h.body == BodyFraming::None
        && h.header("upgrade")
            .is_some_and(|u| u.trim_ascii().eq_ignore_ascii_case(b"websocket"));

    maybe_continue(c, h).await?;

    // A body that is already fully buffered and small rides with the head in one write and
    // can be re-sent if a pooled connection turns out to be stale.
    let buffered_body = match h.body {
        BodyFraming::None => Some(0usize),
        BodyFraming::Length(n) if n <= STREAM_CHUNK as u64 && (c.pending() as u64) >= n => {
            Some(n as usize)
        }
        _ => None,
    };
    let retryable = buffered_body.is_some() && h.method.is_idempotent();

    // Policies that removed or added query parameters change the query sent upstream.
    let mut query_buf = Vec::new();
    let query = if fx.query_remove.is_empty() && fx.query_add.is_empty() {
        None
    } else {
        crate::policy::transform::rewrite_query(
            h.query(),
            &fx.query_remove,
            &fx.query_add,
            &mut query_buf,
        );
        Some(&query_buf[..])
    };
    let edits = (!fx.upstream.is_empty()).then_some(&fx.upstream);
    let mut tried = 0u64;
    let mut attempt = 0;
    c.ex.upstream = None;
    let (mut up, resp) = loop {
        attempt += 1;
        let mut connect_errors = 0;
        let acquired = acquire(us, &mut tried, &mut connect_errors).await;
        let facts = c.ex.upstream.get_or_insert(UpstreamFacts {
            id: p.upstream,
            addr: None,
            reused: false,
            connect_errors: 0,
            duration: None,
        });
        facts.connect_errors += connect_errors;
        let mut up = acquired?;
        facts.addr = us.targets.get(up.target).map(|t| t.addr);
        facts.reused = up.reused;
        let sent_at = Instant::now();
        let label = us.targets.get(up.target).map_or("", |t| t.label.as_str());
        let mut wire = std::mem::take(&mut c.wire);
        write_upstream_head(
            &mut wire,
            &UpstreamHead {
                head: req.head,
                path: &req.path,
                request_id: req.rid.as_str(),
                peer_ip: &c.peer_ip,
                forwarded_for: &c.forwarded_for,
                trusted_peer: c.ex.origin.trusted_peer,
                scheme: c.ex.origin.scheme,
                target_label: label,
                tunnel: tunnel_req,
                trace: c.ex.trace.as_ref(),
                captures: &req.captures,
                edits,
                query,
            },
            p,
        );
        if let Some(n) = buffered_body {
            wire.extend_from_slice(&c.buf[c.pos..c.pos + n]);
        }
        let deadline = Instant::now() + us.response_timeout;
        let wrote = write_all(&mut up.stream, &mut wire, deadline).await;
        c.wire = wire;
        let sent = match wrote {
            Err(e) => Err(SendFail {
                err: ProxyError::new(match e {
                    IoFail::Timeout => ErrorKind::UpstreamTimeout,
                    _ => ErrorKind::UpstreamClosed,
                }),
                stale: up.reused,
            }),
            Ok(()) if buffered_body.is_some() => Ok(()),
            Ok(()) => {
                c.body_streamed = true;
                stream_request_body(c, req, route, &mut up, us)
                    .await
                    .map_err(|err| SendFail { err, stale: false })
            }
        };
        let res = match sent {
            Ok(()) => {
                let deadline = Instant::now() + us.response_timeout;
                read_response_head(&mut up, &cfg.limits, h.method, deadline).await
            }
            Err(f) => Err(f),
        };
        match res {
            Ok(resp) => {
                if let Some(f) = c.ex.upstream.as_mut() {
                    f.duration = Some(sent_at.elapsed());
                }
                break (up, resp);
            }
            Err(f) if f.stale && retryable && attempt == 1 => {
                // The pooled connection was closed under us before any reply: retry on a
                // fresh connection (the target's other idle connections are suspect too).
                us.drop_idle(up.target);
                if up.target < 64 {
                    tried &= !(1 << up.target);
                }
                continue;
            }
            Err(f) => return Err(f.err),
        }
    };
    if let Some(n) = buffered_body {
        c.pos += n;
        c.ex.bytes_in += n as u64;
    }
    c.ex.status = resp.status;

    if resp.status == 101 {
        if !tunnel_req {
            return Err(ProxyError::new(ErrorKind::UpstreamBadResponse));
        }
        let mut out = Vec::with_capacity(resp.buf.len() + 64);
        http1::write_status_line(&mut out, 101);
        for (n, v) in resp.headers() {
            if n.eq_ignore_ascii_case(b"connection") || n.eq_ignore_ascii_case(b"upgrade") {
                continue;
            }
            http1::write_header(&mut out, n, v);
        }
        http1::write_header(&mut out, b"connection", b"upgrade");
        if let Some(u) = resp.header("upgrade") {
            http1::write_header(&mut out, b"upgrade", u);
        }
        out.extend_from_slice(b"\r\n");
        out.append(&mut up.buf);
        let deadline = Instant::now() + cfg.timeouts.client_body;
        if c.send(&mut out, deadline).await.is_err() {
            return Ok(Outcome::Done(false));
        }
        return Ok(Outcome::Tunnel(up));
    }

    // Response head for the client. A drain that began while the upstream worked is
    // announced here, so the client does not reuse a connection about to close.
    let client_11 = h.version == Version::Http11;
    let close = req.close || core.draining();
    let (client_framing, mut keep) = match resp.body {
        BodyFraming::None | BodyFraming::Length(_) => (resp.body, !close),
        BodyFraming::Chunked | BodyFraming::CloseDelimited if client_11 => {
            (BodyFraming::Chunked, !close)
        }
        _ => (BodyFraming::CloseDelimited, false),
    };
    let mut out = std::mem::take(&mut c.wire);
    out.clear();
    http1::write_status_line(&mut out, resp.status);
    let conn_lists_names = resp.header("connection").is_some();
    let edits = (!fx.response.is_empty()).then_some(&fx.response);
    // With a CORS policy on the route the gateway owns the CORS headers.
    let own_cors = route.policies_for(&req.path, &c.host).1.is_some();
    for (n, v) in resp.headers() {
        if http1::is_hop_by_hop(n)
            || (conn_lists_names && http1::named_in_connection(resp.headers(), n))
            || n.eq_ignore_ascii_case(b"x-request-id")
            || (n.eq_ignore_ascii_case(b"content-length") && resp.body != BodyFraming::None)
            || (own_cors && n.len() > 15 && n[..15].eq_ignore_ascii_case(b"access-control-"))
        {
            continue;
        }
        match edits {
            Some(e) => {
                if let Some(name) = e.map_name(n) {
                    http1::write_header(&mut out, name, v);
                }
            }
            None => http1::write_header(&mut out, n, v),
        }
    }
    if let Some(e) = edits {
        for (name, value) in &e.add {
            if !http1::is_hop_by_hop(name)
                && !name.eq_ignore_ascii_case(b"content-length")
                && !name.eq_ignore_ascii_case(b"transfer-encoding")
            {
                http1::write_header(&mut out, name, value);
            }
        }
    }
    match client_framing {
        BodyFraming::Length(n) => {
            out.extend_from_slice(b"content-length: ");
            super::push_decimal(&mut out, n);
            out.extend_from_slice(b"\r\n");
        }
        BodyFraming::Chunked => http1::write_header(&mut out, b"transfer-encoding", b"chunked"),
        _ => {}
    }
    http1::write_header(&mut out, b"x-request-id", req.rid.as_bytes());
    super::write_exchange_headers(&c.ex, &mut out);
    http1::write_connection(&mut out, keep, h.version);
    out.extend_from_slice(b"\r\n");

    let upstream_done = stream_response_body(c, &mut up, resp.body, client_framing, &mut out).await;
    // Keep the buffer for the next request unless a large body grew it.
    if out.capacity() <= 16 * 1024 {
        c.wire = out;
    }
    match upstream_done {
        Ok(()) => {
            // Pooled only if nothing follows the response: bytes already in `up.buf` are not
            // ours to forward. After HEAD, and after a 204 that announces a body it must not
            // have, the connection is not reused either: such a body may still be in flight,
            // past the reuse check in `take_idle`, and would answer the next request.
            if !resp.close
                && up.buf.is_empty()
                && h.method != Method::Head
                && !announces_forbidden_body(&resp)
            {
                up.reused = false;
                us.put_idle(up, Instant::now());
            }
        }
        Err(_) => keep = false,
    }
    Ok(Outcome::Done(keep))
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

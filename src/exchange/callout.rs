//! The policies that ask another service or run a filter, settled with this worker's state
//! (`settle`), and the gateway-made HTTP/1.1 request those services get (`Callout`, the
//! request path's `policy::service::Services`), awaited on the worker's own runtime.
//!
//! It goes through the upstream's machinery: its balancer, its per-worker connection pool, TLS,
//! connect timeout, back-off and connection limits. The whole call (connect, write, response
//! head and body) is bounded by `timeout`; the response body by `max_body` (a longer one is an
//! error, never a truncated answer). A connection whose response ended cleanly goes back to
//! the pool. Only HTTP/1.1 upstreams are supported (compile checks this).

use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::core::{Core, Generation};
use crate::http1::{BodyFraming, ChunkedDecoder, Method, ResponseHead};
use crate::io::{read_some, write_all};
use crate::policy::pipeline::{Caller, Denial, Effects, Facts, Policy};
use crate::policy::service::{Services, SubError, SubRequest, SubResponse};
use crate::upstream::{UpConn, UpstreamState};

use super::error::ProxyError;

/// Settles the policy `pipeline::run` stopped at, with this worker's state: the ones that ask
/// another service or run a filter here, the Redis-backed ones through `policy::remote`.
pub async fn settle(
    core: &Core,
    gen: &Rc<Generation>,
    policy: &Policy,
    f: &Facts<'_>,
    caller: &mut Caller<'_>,
    fx: &mut Effects,
) -> Result<(), Denial> {
    let services = Callout { gen };
    match policy {
        Policy::ForwardAuth(p) => {
            crate::policy::forward_auth_check::settle(p, f, caller, fx, &services).await
        }
        Policy::Introspect(p) => {
            let cache = &core.introspections;
            crate::policy::introspect_check::settle(p, f, caller, fx, &services, cache).await
        }
        Policy::Wasm(p) => {
            let generation = gen.cfg.generation;
            crate::wasm::filter::settle(p, f, caller, fx, &core.wasm, generation).await
        }
        _ => {
            let client = core.redis(&gen.cfg);
            crate::policy::remote::settle(client.as_ref(), policy, f, caller, fx).await
        }
    }
}

/// `Services` over this generation's upstreams.
pub struct Callout<'g> {
    pub gen: &'g Generation,
}

impl Services for Callout<'_> {
    async fn call(
        &self,
        upstream: u32,
        req: &SubRequest<'_>,
        max_body: usize,
        timeout: Duration,
    ) -> Result<SubResponse, SubError> {
        call(self.gen, upstream, req, max_body, timeout).await
    }
}

fn sub_error(e: ProxyError) -> SubError {
    use super::error::ErrorKind as K;
    match e.kind {
        K::UpstreamConnectTimeout | K::UpstreamTimeout => SubError::Timeout,
        K::UpstreamBadResponse => SubError::BadResponse,
        _ => SubError::Unavailable,
    }
}

/// Sends `req` to upstream number `upstream` and reads the whole answer, within `timeout`.
pub async fn call(
    gen: &Generation,
    upstream: u32,
    req: &SubRequest<'_>,
    max_body: usize,
    timeout: Duration,
) -> Result<SubResponse, SubError> {
    let us = gen
        .upstreams
        .get(upstream as usize)
        .ok_or(SubError::Unavailable)?;
    let deadline = Instant::now() + timeout;
    let run = exchange(gen, us, req, max_body, deadline);
    match monoio::time::timeout_at(deadline.into(), run).await {
        Ok(r) => r,
        Err(_) => Err(SubError::Timeout),
    }
}

async fn exchange(
    gen: &Generation,
    us: &UpstreamState,
    req: &SubRequest<'_>,
    max_body: usize,
    deadline: Instant,
) -> Result<SubResponse, SubError> {
    let target = us
        .pick(Instant::now(), 0, None)
        .ok_or(SubError::Unavailable)?;
    let label = us.targets.get(target).map_or("", |t| t.label.as_str());
    let mut wire = Vec::with_capacity(256 + req.head_lines.len() + req.body.len());
    wire.extend_from_slice(req.method.as_str().as_bytes());
    wire.push(b' ');
    wire.extend_from_slice(req.target);
    wire.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    wire.extend_from_slice(label.as_bytes());
    wire.extend_from_slice(b"\r\n");
    wire.extend_from_slice(req.head_lines);
    if !req.body.is_empty() || matches!(req.method, Method::Post | Method::Put | Method::Patch) {
        wire.extend_from_slice(format!("content-length: {}\r\n", req.body.len()).as_bytes());
    }
    wire.extend_from_slice(b"\r\n");
    wire.extend_from_slice(req.body);

    // A pooled connection that turns out closed before any answer byte is retried once on a
    // fresh one (the service never saw the request).
    let mut pooled = us.take_idle(target, Instant::now());
    loop {
        let reused = pooled.is_some();
        let mut up = match pooled.take() {
            Some(c) => c,
            None => super::send::connect_one(us, target)
                .await
                .map_err(sub_error)?,
        };
        let mut out = wire.clone();
        let sent = write_all(&mut up.stream, &mut out, deadline).await;
        let head = match sent {
            Ok(()) => super::send::read_response_head(us, &mut up, &gen.cfg.limits, req.method)
                .await
                .map_err(|e| (e.may_retry(true, true, 1) && reused, e)),
            Err(_) => Err((
                reused,
                ProxyError::new(super::error::ErrorKind::UpstreamClosed),
            )),
        };
        let head = match head {
            Ok(h) => h,
            Err((true, _)) => continue,
            Err((false, e)) => return Err(sub_error(e)),
        };
        let (body, clean) = read_body(&mut up, &head, max_body).await?;
        if clean && !head.close {
            up.reused = false;
            us.put_idle(up, Instant::now());
        }
        return Ok(SubResponse { head, body });
    }
}

/// The whole body, bounded by `max`; `clean` when the connection may be pooled afterwards.
async fn read_body(
    up: &mut UpConn,
    head: &ResponseHead,
    max: usize,
) -> Result<(Vec<u8>, bool), SubError> {
    match head.body {
        BodyFraming::None => Ok((Vec::new(), up.buf.is_empty())),
        BodyFraming::Length(n) => {
            let n = usize::try_from(n).map_err(|_| SubError::BadResponse)?;
            if n > max {
                return Err(SubError::BadResponse);
            }
            while up.buf.len() < n {
                more(up, max).await.map_err(|_| SubError::Unavailable)?;
            }
            let clean = up.buf.len() == n;
            let body = up.buf.drain(..n).collect();
            up.buf.clear();
            Ok((body, clean))
        }
        BodyFraming::Chunked => {
            let mut dec = ChunkedDecoder::new();
            let mut body = Vec::new();
            loop {
                let (used, data) = dec.decode(&up.buf).map_err(|_| SubError::BadResponse)?;
                body.extend_from_slice(&up.buf[data]);
                up.buf.drain(..used);
                if body.len() > max {
                    return Err(SubError::BadResponse);
                }
                if dec.is_done() {
                    let clean = up.buf.is_empty();
                    up.buf.clear();
                    return Ok((body, clean));
                }
                if used == 0 {
                    more(up, max).await.map_err(|_| SubError::Unavailable)?;
                }
            }
        }
        BodyFraming::CloseDelimited => {
            loop {
                if up.buf.len() > max {
                    return Err(SubError::BadResponse);
                }
                match more(up, max).await {
                    Ok(_) => {}
                    Err(crate::io::IoFail::Closed) => break,
                    Err(_) => return Err(SubError::Unavailable),
                }
            }
            Ok((std::mem::take(&mut up.buf), false))
        }
    }
}

/// Reads what arrives next into `up.buf`, growing it no further than the bound needs.
async fn more(up: &mut UpConn, max: usize) -> Result<usize, crate::io::IoFail> {
    let want = (up.buf.len() + 16 * 1024).min(max + 64 * 1024);
    read_some(&mut up.stream, &mut up.buf, want).await
}

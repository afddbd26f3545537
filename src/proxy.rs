//! The request path, top to bottom: read a head, pick the config generation, route, run the
//! route's action (proxy / static / echo / redirect), write the response, repeat on keep-alive.
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

use monoio::io::Splitable;
use monoio::net::TcpStream;

use crate::config::{Action, ProxyAction, Rewrite, Route};
use crate::error::{self, ErrorKind, ProxyError};
use crate::http1::{self, BodyFraming, ChunkedDecoder, Method, RequestHead, Version};
use crate::io::{read_more, write_all, write_range, IoFail};
use crate::request_id;
use crate::route::{HeaderSource, Lookup, RouteRequest};
use crate::upstream::{UpConn, UpstreamState};
use crate::worker::{Core, Generation};

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
}

impl Client {
    fn pending(&self) -> usize {
        self.buf.len() - self.pos
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
pub async fn serve_connection(core: Rc<Core>, stream: TcpStream, peer: SocketAddr) {
    let key = core.conns.register(stream.as_raw_fd());
    let res = CatchUnwind(Box::pin(connection_loop(&core, stream, peer, key))).await;
    if res.is_err() {
        crate::log::error(&format!(
            "worker {}: panic while serving {peer}; connection closed",
            core.id
        ));
    }
    core.conns.unregister(key);
}

async fn connection_loop(core: &Core, stream: TcpStream, peer: SocketAddr, key: usize) {
    let mut c = Client {
        stream,
        buf: Vec::with_capacity(8 * 1024),
        pos: 0,
        peer,
        body_streamed: false,
    };
    let mut first = true;
    loop {
        if c.pending() == 0 && core.draining() {
            return;
        }
        core.conns.set_idle(key, c.pending() == 0);
        let head = match read_head(core, &mut c, first).await {
            Ok(h) => h,
            Err(None) => return,
            Err(Some(err)) => {
                let mut out = Vec::with_capacity(256);
                let mut rid = String::new();
                core.ids.generate(&mut rid);
                error::render(&err, &rid, true, false, &mut out);
                let deadline = Instant::now() + core.generation().cfg.timeouts.client_body;
                let _ = write_all(&mut c.stream, &mut out, deadline).await;
                return;
            }
        };
        core.conns.set_idle(key, false);
        first = false;
        let gen = core.generation();
        match handle_request(core, &gen, &mut c, head).await {
            Outcome::Done(true) if !core.draining() => {}
            Outcome::Done(_) => return,
            Outcome::Tunnel(up) => {
                tunnel(c, up).await;
                return;
            }
        }
    }
}

/// Reads until a complete head is parsed. `Err(None)`: close quietly (EOF, idle timeout);
/// `Err(Some(e))`: answer `e` and close.
async fn read_head(
    core: &Core,
    c: &mut Client,
    first: bool,
) -> Result<RequestHead, Option<ProxyError>> {
    let cfg = core.generation().cfg.clone();
    let limits = cfg.limits;
    let mut head_deadline = if c.pending() > 0 || first {
        Some(Instant::now() + cfg.timeouts.client_header)
    } else {
        None
    };
    loop {
        if c.pending() > 0 {
            match http1::parse_request_head(&c.buf[c.pos..], &limits) {
                Ok(Some((head, n))) => {
                    c.pos += n;
                    return Ok(head);
                }
                Ok(None) => {}
                Err(e) => return Err(Some(ProxyError::new(ErrorKind::BadHead(e)))),
            }
        }
        c.compact();
        let deadline = match head_deadline {
            Some(d) => d,
            None => Instant::now() + cfg.timeouts.keepalive,
        };
        let grow = limits.max_header_bytes + 1024;
        match read_more(&mut c.stream, &mut c.buf, deadline, grow).await {
            Ok(_) => {
                if head_deadline.is_none() {
                    head_deadline = Some(Instant::now() + cfg.timeouts.client_header);
                }
            }
            Err(IoFail::Timeout) if c.pending() > 0 || first => {
                return Err(Some(ProxyError::new(ErrorKind::RequestTimeout)))
            }
            Err(_) => return Err(None),
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
    rid: String,
    /// Normalized path (dot segments removed; "/" for an empty absolute-form path).
    path: Vec<u8>,
    /// Client asked to close, or we are draining.
    close: bool,
}

async fn handle_request(
    core: &Core,
    gen: &Rc<Generation>,
    c: &mut Client,
    head: RequestHead,
) -> Outcome {
    let cfg = &gen.cfg;
    let mut rid = String::new();
    match head.header("x-request-id") {
        Some(v) if request_id::is_sane(v) => rid.push_str(&String::from_utf8_lossy(v)),
        _ => core.ids.generate(&mut rid),
    }
    let close = head.close || core.draining();
    c.body_streamed = false;

    let path = match http1::normalize_path(head.path()) {
        Some(p) if p.is_empty() => b"/".to_vec(),
        Some(p) => p.into_owned(),
        None => {
            let e = ProxyError::new(ErrorKind::BadBody("encoded dot segment in path"));
            return respond_error(core, c, &head, &rid, e).await;
        }
    };
    let req = Req {
        head: &head,
        rid,
        path,
        close,
    };

    if head.expect_other {
        return respond_error(
            core,
            c,
            &head,
            &req.rid,
            ProxyError::new(ErrorKind::ExpectationFailed),
        )
        .await;
    }

    let mut host = String::new();
    head.host_for_routing(&mut host);
    let lookup = cfg.table.lookup(
        &RouteRequest {
            host: &host,
            method: head.method,
            path: &req.path,
            query: head.query(),
        },
        &HeadHeaders(&head),
    );
    let route = match lookup {
        Lookup::Found { route, .. } => cfg.route(route),
        Lookup::MethodNotAllowed { allow } => {
            let e = ProxyError::new(ErrorKind::MethodNotAllowed(allow));
            return respond_error(core, c, &head, &req.rid, e).await;
        }
        Lookup::NotFound => {
            return respond_error(
                core,
                c,
                &head,
                &req.rid,
                ProxyError::new(ErrorKind::NoRoute),
            )
            .await
        }
    };

    if let BodyFraming::Length(n) = head.body {
        if n > route.max_body {
            let e = ProxyError::new(ErrorKind::BodyTooLarge);
            return respond_error(core, c, &head, &req.rid, e).await;
        }
    }

    match &route.action {
        Action::Proxy(p) => match proxy(core, gen, c, &req, route, p).await {
            Ok(o) => o,
            Err(e) => respond_error(core, c, &head, &req.rid, e).await,
        },
        Action::Static(s) => {
            if let Err(e) = discard_body(core, c, &req, route).await {
                return respond_error(core, c, &head, &req.rid, e).await;
            }
            let mut out = Vec::with_capacity(256 + s.body.len());
            http1::write_status_line(&mut out, s.status);
            for (k, v) in &s.headers {
                http1::write_header(&mut out, k.as_bytes(), v.as_bytes());
            }
            // 204 and 304 carry neither a body nor a length (RFC 9110 §8.6, §15.3.5, §15.4.5);
            // config compile refuses a body for them.
            let body = (!matches!(s.status, 204 | 304)).then_some(&s.body[..]);
            finish_local(core, c, &req, &mut out, body).await
        }
        Action::Redirect(r) => {
            if let Err(e) = discard_body(core, c, &req, route).await {
                return respond_error(core, c, &head, &req.rid, e).await;
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
            finish_local(core, c, &req, &mut out, Some(b"")).await
        }
        Action::Echo => match read_body_bounded(core, c, &req, route).await {
            Ok(body) => {
                let json = echo_json(&req, c.peer, route, &body);
                let mut out = Vec::with_capacity(256 + json.len());
                http1::write_status_line(&mut out, 200);
                http1::write_header(&mut out, b"content-type", b"application/json");
                finish_local(core, c, &req, &mut out, Some(&json)).await
            }
            Err(e) => respond_error(core, c, &head, &req.rid, e).await,
        },
    }
}

/// Completes a gateway-generated response whose status line and own headers are in `out`.
async fn finish_local(
    core: &Core,
    c: &mut Client,
    req: &Req<'_>,
    out: &mut Vec<u8>,
    body: Option<&[u8]>,
) -> Outcome {
    if let Some(body) = body {
        http1::write_header(out, b"content-length", body.len().to_string().as_bytes());
    }
    http1::write_header(out, b"x-request-id", req.rid.as_bytes());
    // A drain that started while this request ran still gets announced on its response.
    let keep = !req.close && !core.draining();
    if !keep {
        http1::write_header(out, b"connection", b"close");
    } else if req.head.version == Version::Http10 {
        http1::write_header(out, b"connection", b"keep-alive");
    }
    out.extend_from_slice(b"\r\n");
    if let (Some(body), false) = (body, req.head.method == Method::Head) {
        out.extend_from_slice(body);
    }
    let deadline = Instant::now() + core.generation().cfg.timeouts.client_body;
    match write_all(&mut c.stream, out, deadline).await {
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
    error::render(&err, rid, !keep, head.method == Method::Head, &mut out);
    if keep && head.version == Version::Http10 {
        // Like `finish_local`: an HTTP/1.0 client only keeps the connection when told so.
        if let Some(end) = out.windows(4).position(|w| w == b"\r\n\r\n") {
            out.splice(
                end + 2..end + 2,
                b"connection: keep-alive\r\n".iter().copied(),
            );
        }
    }
    let deadline = Instant::now() + core.generation().cfg.timeouts.client_body;
    match write_all(&mut c.stream, &mut out, deadline).await {
        Ok(()) => Outcome::Done(keep),
        Err(_) => Outcome::Done(false),
    }
}

/// Sends `100 Continue` if the client is waiting for it before sending a body.
async fn maybe_continue(core: &Core, c: &mut Client, head: &RequestHead) -> Result<(), ProxyError> {
    let has_body = !matches!(head.body, BodyFraming::None | BodyFraming::Length(0));
    if head.expect_continue && has_body && head.version == Version::Http11 && c.pending() == 0 {
        let mut msg = b"HTTP/1.1 100 Continue\r\n\r\n".to_vec();
        let deadline = Instant::now() + core.generation().cfg.timeouts.client_body;
        write_all(&mut c.stream, &mut msg, deadline)
            .await
            .map_err(|_| ProxyError::new(ErrorKind::RequestTimeout))?;
    }
    Ok(())
}

/// Reads the next body piece from the client into `c.buf` (appending).
async fn read_client(core: &Core, c: &mut Client) -> Result<(), ProxyError> {
    if c.pending() == 0 {
        c.buf.clear();
        c.pos = 0;
    } else if c.pos > STREAM_CHUNK {
        c.compact();
    }
    let deadline = Instant::now() + core.generation().cfg.timeouts.client_body;
    match read_more(&mut c.stream, &mut c.buf, deadline, STREAM_CHUNK).await {
        Ok(_) => Ok(()),
        Err(IoFail::Timeout) => Err(ProxyError::new(ErrorKind::RequestTimeout)),
        Err(_) => Err(ProxyError::new(ErrorKind::BadBody(
            "client closed during body",
        ))),
    }
}

/// Reads the whole request body into memory, bounded by the route limit (echo only).
async fn read_body_bounded(
    core: &Core,
    c: &mut Client,
    req: &Req<'_>,
    route: &Route,
) -> Result<Vec<u8>, ProxyError> {
    let mut body = Vec::new();
    maybe_continue(core, c, req.head).await?;
    match req.head.body {
        BodyFraming::None | BodyFraming::CloseDelimited => {}
        BodyFraming::Length(n) => {
            let mut left = n;
            while left > 0 {
                if c.pending() == 0 {
                    read_client(core, c).await?;
                }
                let take = (c.pending() as u64).min(left) as usize;
                body.extend_from_slice(&c.buf[c.pos..c.pos + take]);
                c.pos += take;
                left -= take as u64;
            }
        }
        BodyFraming::Chunked => {
            let mut dec = ChunkedDecoder::new();
            while !dec.is_done() {
                let (used, data) = dec
                    .decode(&c.buf[c.pos..])
                    .map_err(|e| ProxyError::new(ErrorKind::BadBody(e.0)))?;
                body.extend_from_slice(&c.buf[c.pos + data.start..c.pos + data.end]);
                c.pos += used;
                if body.len() as u64 > route.max_body {
                    return Err(ProxyError::new(ErrorKind::BodyTooLarge));
                }
                if used == 0 && !dec.is_done() {
                    read_client(core, c).await?;
                }
            }
        }
    }
    Ok(body)
}

/// Consumes and drops the request body (static and redirect routes), bounded by the limit.
async fn discard_body(
    core: &Core,
    c: &mut Client,
    req: &Req<'_>,
    route: &Route,
) -> Result<(), ProxyError> {
    if matches!(req.head.body, BodyFraming::None | BodyFraming::Length(0)) {
        return Ok(());
    }
    read_body_bounded(core, c, req, route).await.map(|_| ())
}

fn echo_json(req: &Req<'_>, peer: SocketAddr, route: &Route, body: &[u8]) -> Vec<u8> {
    use crate::json::string_into;
    let h = req.head;
    let mut o = Vec::with_capacity(512 + body.len());
    o.extend_from_slice(b"{\"method\":");
    string_into(&mut o, h.method_bytes());
    o.extend_from_slice(b",\"path\":");
    string_into(&mut o, &req.path);
    o.extend_from_slice(b",\"query\":");
    string_into(&mut o, h.query().unwrap_or(b""));
    o.extend_from_slice(b",\"version\":");
    string_into(
        &mut o,
        match h.version {
            Version::Http10 => b"HTTP/1.0",
            Version::Http11 => b"HTTP/1.1",
        },
    );
    o.extend_from_slice(b",\"route\":");
    string_into(&mut o, route.name.as_bytes());
    o.extend_from_slice(b",\"client\":");
    string_into(&mut o, peer.to_string().as_bytes());
    o.extend_from_slice(b",\"request_id\":");
    string_into(&mut o, req.rid.as_bytes());
    o.extend_from_slice(b",\"headers\":{");
    // Lowercased names; repeated headers joined with ", " like a list-valued field.
    let mut names: Vec<Vec<u8>> = Vec::new();
    for (n, _) in h.headers() {
        let lower = n.to_ascii_lowercase();
        if !names.contains(&lower) {
            names.push(lower);
        }
    }
    for (i, name) in names.iter().enumerate() {
        if i > 0 {
            o.push(b',');
        }
        string_into(&mut o, name);
        o.push(b':');
        let mut joined = Vec::new();
        for (n, v) in h.headers() {
            if n.eq_ignore_ascii_case(name) {
                if !joined.is_empty() {
                    joined.extend_from_slice(b", ");
                }
                joined.extend_from_slice(v);
            }
        }
        string_into(&mut o, &joined);
    }
    o.extend_from_slice(b"},\"body\":");
    string_into(&mut o, body);
    o.extend_from_slice(b"}\n");
    o
}

// ---------------------------------------------------------------------------------------
// Proxying
// ---------------------------------------------------------------------------------------

/// Headers the proxy always writes itself, so client copies are not forwarded.
fn managed_request_header(name: &[u8]) -> bool {
    const MANAGED: [&[u8]; 8] = [
        b"host",
        b"content-length",
        b"expect",
        b"x-forwarded-for",
        b"x-forwarded-proto",
        b"x-forwarded-host",
        b"forwarded",
        b"x-request-id",
    ];
    MANAGED.iter().any(|m| m.eq_ignore_ascii_case(name))
}

/// Serializes the upstream request head.
fn upstream_head(
    req: &Req<'_>,
    c: &Client,
    p: &ProxyAction,
    target_label: &str,
    tunnel: bool,
) -> Vec<u8> {
    let h = req.head;
    let mut out = Vec::with_capacity(h.buf.len() + 256);
    out.extend_from_slice(h.method_bytes());
    out.push(b' ');
    match &p.rewrite {
        Rewrite::None => out.extend_from_slice(&req.path),
        Rewrite::ReplacePrefix { prefix, with } => {
            let rest = req
                .path
                .get(prefix.trim_end_matches('/').len()..)
                .unwrap_or(b"");
            let start = out.len();
            out.extend_from_slice(with.as_bytes());
            if with.ends_with('/') && rest.starts_with(b"/") {
                out.pop();
            }
            out.extend_from_slice(rest);
            if out.len() == start {
                out.push(b'/');
            } else if out[start] != b'/' {
                out.insert(start, b'/');
            }
        }
    }
    if let Some(q) = h.query() {
        out.push(b'?');
        out.extend_from_slice(q);
    }
    out.extend_from_slice(b" HTTP/1.1\r\n");

    let host_raw = h.host.get(&h.buf);
    if p.preserve_host && !host_raw.is_empty() {
        http1::write_header(&mut out, b"host", host_raw);
    } else {
        http1::write_header(&mut out, b"host", target_label.as_bytes());
    }
    let mut xff: Vec<u8> = Vec::new();
    let mut fwd: Vec<u8> = Vec::new();
    for (name, value) in h.headers() {
        if name.eq_ignore_ascii_case(b"x-forwarded-for") {
            if !xff.is_empty() {
                xff.extend_from_slice(b", ");
            }
            xff.extend_from_slice(value);
            continue;
        }
        if name.eq_ignore_ascii_case(b"forwarded") {
            if !fwd.is_empty() {
                fwd.extend_from_slice(b", ");
            }
            fwd.extend_from_slice(value);
            continue;
        }
        if http1::is_hop_by_hop(name)
            || managed_request_header(name)
            || http1::named_in_connection(h.headers(), name)
        {
            continue;
        }
        http1::write_header(&mut out, name, value);
    }
    match h.body {
        BodyFraming::Length(n) => {
            http1::write_header(&mut out, b"content-length", n.to_string().as_bytes())
        }
        BodyFraming::Chunked => http1::write_header(&mut out, b"transfer-encoding", b"chunked"),
        _ => {}
    }
    if tunnel {
        if let Some(u) = h.header("upgrade") {
            http1::write_header(&mut out, b"connection", b"upgrade");
            http1::write_header(&mut out, b"upgrade", u);
        }
    }
    let ip = c.peer.ip().to_canonical();
    if !xff.is_empty() {
        xff.extend_from_slice(b", ");
    }
    xff.extend_from_slice(ip.to_string().as_bytes());
    http1::write_header(&mut out, b"x-forwarded-for", &xff);
    http1::write_header(&mut out, b"x-forwarded-proto", b"http");
    if !host_raw.is_empty() {
        http1::write_header(&mut out, b"x-forwarded-host", host_raw);
    }
    if !fwd.is_empty() {
        fwd.extend_from_slice(b", ");
    }
    match ip {
        std::net::IpAddr::V4(v4) => fwd.extend_from_slice(format!("for={v4}").as_bytes()),
        std::net::IpAddr::V6(v6) => fwd.extend_from_slice(format!("for=\"[{v6}]\"").as_bytes()),
    }
    fwd.extend_from_slice(b";proto=http");
    if !host_raw.is_empty() && host_raw.iter().all(|b| b.is_ascii_graphic() && *b != b'"') {
        fwd.extend_from_slice(b";host=\"");
        fwd.extend_from_slice(host_raw);
        fwd.push(b'"');
    }
    http1::write_header(&mut out, b"forwarded", &fwd);
    http1::write_header(&mut out, b"x-request-id", req.rid.as_bytes());
    out.extend_from_slice(b"\r\n");
    out
}

/// A pooled connection to the balancer's pick, or a fresh one; targets that refuse are
/// backed off and the next one is tried. A connect timeout ends the attempt (504).
async fn acquire(us: &UpstreamState, tried: &mut u64) -> Result<UpConn, ProxyError> {
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
        match connect_one(us, t).await {
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
                buf: Vec::with_capacity(16 * 1024),
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

/// Streams the request body (beyond what was sent with the head) client → upstream.
async fn stream_request_body(
    core: &Core,
    c: &mut Client,
    req: &Req<'_>,
    route: &Route,
    up: &mut UpConn,
    us: &UpstreamState,
) -> Result<(), ProxyError> {
    let up_err = |e: IoFail| {
        ProxyError::new(match e {
            IoFail::Timeout => ErrorKind::UpstreamTimeout,
            _ => ErrorKind::UpstreamClosed,
        })
    };
    match req.head.body {
        BodyFraming::None | BodyFraming::CloseDelimited | BodyFraming::Length(0) => Ok(()),
        BodyFraming::Length(n) => {
            let mut left = n;
            while left > 0 {
                if c.pending() == 0 {
                    read_client(core, c).await?;
                }
                let take = (c.pending() as u64).min(left) as usize;
                let deadline = Instant::now() + us.response_timeout;
                write_range(&mut up.stream, &mut c.buf, c.pos, c.pos + take, deadline)
                    .await
                    .map_err(up_err)?;
                c.pos += take;
                left -= take as u64;
            }
            Ok(())
        }
        BodyFraming::Chunked => {
            let mut dec = ChunkedDecoder::new();
            let mut out = Vec::with_capacity(STREAM_CHUNK + 32);
            let mut total = 0u64;
            while !dec.is_done() {
                out.clear();
                loop {
                    let (used, data) = dec
                        .decode(&c.buf[c.pos..])
                        .map_err(|e| ProxyError::new(ErrorKind::BadBody(e.0)))?;
                    if !data.is_empty() {
                        total += data.len() as u64;
                        if total > route.max_body {
                            return Err(ProxyError::new(ErrorKind::BodyTooLarge));
                        }
                        http1::write_chunk_header(&mut out, data.len());
                        out.extend_from_slice(&c.buf[c.pos + data.start..c.pos + data.end]);
                        out.extend_from_slice(b"\r\n");
                    }
                    c.pos += used;
                    if used == 0 || dec.is_done() {
                        break;
                    }
                }
                if dec.is_done() {
                    out.extend_from_slice(http1::LAST_CHUNK);
                }
                let deadline = Instant::now() + us.response_timeout;
                write_all(&mut up.stream, &mut out, deadline)
                    .await
                    .map_err(up_err)?;
                if !dec.is_done() {
                    read_client(core, c).await?;
                }
            }
            Ok(())
        }
    }
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
                cfg_limits.max_headers.max(200),
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

async fn proxy(
    core: &Core,
    gen: &Rc<Generation>,
    c: &mut Client,
    req: &Req<'_>,
    route: &Route,
    p: &ProxyAction,
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

    maybe_continue(core, c, h).await?;

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

    let mut tried = 0u64;
    let mut attempt = 0;
    let (mut up, resp) = loop {
        attempt += 1;
        let mut up = acquire(us, &mut tried).await?;
        let label = us
            .targets
            .get(up.target)
            .map(|t| t.addr.to_string())
            .unwrap_or_default();
        let mut wire = upstream_head(req, c, p, &label, tunnel_req);
        if let Some(n) = buffered_body {
            wire.extend_from_slice(&c.buf[c.pos..c.pos + n]);
        }
        let deadline = Instant::now() + us.response_timeout;
        let sent = match write_all(&mut up.stream, &mut wire, deadline).await {
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
                stream_request_body(core, c, req, route, &mut up, us)
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
            Ok(resp) => break (up, resp),
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
    }

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
        if write_all(&mut c.stream, &mut out, deadline).await.is_err() {
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
    let mut out = Vec::with_capacity(resp.buf.len() + 128);
    http1::write_status_line(&mut out, resp.status);
    for (n, v) in resp.headers() {
        if http1::is_hop_by_hop(n)
            || http1::named_in_connection(resp.headers(), n)
            || n.eq_ignore_ascii_case(b"x-request-id")
            || (n.eq_ignore_ascii_case(b"content-length") && resp.body != BodyFraming::None)
        {
            continue;
        }
        http1::write_header(&mut out, n, v);
    }
    match client_framing {
        BodyFraming::Length(n) => {
            http1::write_header(&mut out, b"content-length", n.to_string().as_bytes())
        }
        BodyFraming::Chunked => http1::write_header(&mut out, b"transfer-encoding", b"chunked"),
        _ => {}
    }
    http1::write_header(&mut out, b"x-request-id", req.rid.as_bytes());
    if !keep {
        http1::write_header(&mut out, b"connection", b"close");
    } else if !client_11 {
        http1::write_header(&mut out, b"connection", b"keep-alive");
    }
    out.extend_from_slice(b"\r\n");

    let upstream_done =
        stream_response_body(core, c, &mut up, resp.body, client_framing, &mut out).await;
    match upstream_done {
        Ok(()) => {
            if !resp.close && up.buf.is_empty() {
                up.reused = false;
                us.put_idle(up, Instant::now());
            }
        }
        Err(_) => keep = false,
    }
    Ok(Outcome::Done(keep))
}

/// Streams the upstream body to the client, re-framing as needed. `out` holds the client
/// response head, which goes out together with the first body bytes.
async fn stream_response_body(
    core: &Core,
    c: &mut Client,
    up: &mut UpConn,
    from: BodyFraming,
    to: BodyFraming,
    out: &mut Vec<u8>,
) -> Result<(), ()> {
    let client_timeout = core.generation().cfg.timeouts.client_body;
    let idle = core.generation().cfg.timeouts.upstream_idle;
    let chunked_out = to == BodyFraming::Chunked;
    match from {
        BodyFraming::None | BodyFraming::Length(0) => {
            write_all(&mut c.stream, out, Instant::now() + client_timeout)
                .await
                .map_err(|_| ())?;
            Ok(())
        }
        BodyFraming::Length(n) => {
            let mut left = n;
            // First flight: head + whatever body bytes already arrived.
            let take = (up.buf.len() as u64).min(left) as usize;
            out.extend_from_slice(&up.buf[..take]);
            up.buf.drain(..take);
            left -= take as u64;
            write_all(&mut c.stream, out, Instant::now() + client_timeout)
                .await
                .map_err(|_| ())?;
            while left > 0 {
                up.buf.clear();
                read_more(
                    &mut up.stream,
                    &mut up.buf,
                    Instant::now() + idle,
                    STREAM_CHUNK,
                )
                .await
                .map_err(|_| ())?;
                let take = (up.buf.len() as u64).min(left) as usize;
                write_range(
                    &mut c.stream,
                    &mut up.buf,
                    0,
                    take,
                    Instant::now() + client_timeout,
                )
                .await
                .map_err(|_| ())?;
                up.buf.drain(..take);
                left -= take as u64;
            }
            Ok(())
        }
        BodyFraming::Chunked => {
            let mut dec = ChunkedDecoder::new();
            loop {
                loop {
                    let (used, data) = dec.decode(&up.buf).map_err(|_| ())?;
                    if !data.is_empty() {
                        if chunked_out {
                            http1::write_chunk_header(out, data.len());
                        }
                        out.extend_from_slice(&up.buf[data.clone()]);
                        if chunked_out {
                            out.extend_from_slice(b"\r\n");
                        }
                    }
                    up.buf.drain(..used);
                    if used == 0 || dec.is_done() {
                        break;
                    }
                }
                if dec.is_done() && chunked_out {
                    out.extend_from_slice(http1::LAST_CHUNK);
                }
                if !out.is_empty() {
                    write_all(&mut c.stream, out, Instant::now() + client_timeout)
                        .await
                        .map_err(|_| ())?;
                    out.clear();
                }
                if dec.is_done() {
                    return Ok(());
                }
                read_more(
                    &mut up.stream,
                    &mut up.buf,
                    Instant::now() + idle,
                    STREAM_CHUNK,
                )
                .await
                .map_err(|_| ())?;
            }
        }
        BodyFraming::CloseDelimited => {
            loop {
                if !up.buf.is_empty() {
                    if chunked_out {
                        http1::write_chunk_header(out, up.buf.len());
                    }
                    out.extend_from_slice(&up.buf);
                    if chunked_out {
                        out.extend_from_slice(b"\r\n");
                    }
                    up.buf.clear();
                }
                if !out.is_empty() {
                    write_all(&mut c.stream, out, Instant::now() + client_timeout)
                        .await
                        .map_err(|_| ())?;
                    out.clear();
                }
                match read_more(
                    &mut up.stream,
                    &mut up.buf,
                    Instant::now() + idle,
                    STREAM_CHUNK,
                )
                .await
                {
                    Ok(_) => {}
                    Err(IoFail::Closed) => break,
                    Err(_) => return Err(()),
                }
            }
            if chunked_out {
                out.extend_from_slice(http1::LAST_CHUNK);
                write_all(&mut c.stream, out, Instant::now() + client_timeout)
                    .await
                    .map_err(|_| ())?;
            }
            // Close-delimited: resp.close is set, so the connection is never pooled.
            Ok(())
        }
    }
}

/// Relays bytes both ways after a 101 until both directions have closed.
async fn tunnel(mut c: Client, up: UpConn) {
    let leftover: Vec<u8> = c.buf.split_off(c.pos);
    let mut ups = up.stream;
    if !leftover.is_empty() {
        let mut l = leftover;
        let far = Instant::now() + std::time::Duration::from_secs(30);
        if write_all(&mut ups, &mut l, far).await.is_err() {
            return;
        }
    }
    let (mut cr, mut cw) = c.stream.into_split();
    let (mut ur, mut uw) = ups.into_split();
    let a = copy_half(&mut cr, &mut uw);
    let b = copy_half(&mut ur, &mut cw);
    monoio::join!(a, b);
}

async fn copy_half<R, W>(r: &mut R, w: &mut W)
where
    R: monoio::io::AsyncReadRent,
    W: monoio::io::AsyncWriteRent,
{
    use monoio::io::AsyncWriteRentExt as _;
    let mut buf = Vec::with_capacity(16 * 1024);
    loop {
        buf.clear();
        let (res, b) = r.read(buf).await;
        buf = b;
        match res {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                let (res, b) = w.write_all(buf).await;
                buf = b;
                if res.is_err() {
                    break;
                }
            }
        }
    }
    let _ = w.shutdown().await;
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

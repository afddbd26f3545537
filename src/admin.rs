//! The admin listener: a small HTTP/1.1 server off the workers (never on a public listener),
//! one request per connection, JSON answers.
//!
//! `GET /health` (process alive), `GET /ready` (200 once every worker accepts; 503 while
//! starting or draining), `GET /metrics` (Prometheus text, merged from the workers' core-local
//! metrics), `GET /stats` (latency percentiles per route and upstream, JSON), `GET /config`
//! (generation, source, keyed content hash, loaded-at, last reload error), `GET /routes` (the
//! compiled table in match order), `GET /upstreams` (each upstream's targets with their health:
//! active checks, ejections, panic mode; `upstream::report`), `POST /reload` (same as
//! SIGHUP, answers with the result), `GET /cache` (the response cache's counters and store
//! totals) and `POST /cache/purge` (JSON `{"url"|"prefix"|"tag": "..."}` or `{"all": true}`,
//! at most [`MAX_BODY`] bytes; answers with the number of objects dropped).
//!
//! Concurrency: one accept thread hands each connection to its own short-lived thread, at most
//! [`MAX_CONNECTIONS`] at once. At the cap, the connection that has waited longest without
//! delivering its request head is closed to make room (idle sockets cannot lock a probe out);
//! only when every slot is busy with a request does a new connection get an immediate 503. A
//! connection reading an announced body counts as waiting too, and `/config` answers 503 at
//! once while a reload runs instead of waiting for it. So an idle or slow client never delays
//! `/ready` or `/metrics`. Each connection must deliver its
//! request head (at most [`MAX_REQUEST`] bytes) within [`HEAD_DEADLINE`] in total, and writes
//! time out after [`WRITE_TIMEOUT`]: a slot is never held longer than that plus the handler.
//!
//! Upgrade: after a binary upgrade the admin socket is the successor's too; this process stops
//! accepting on it (it waits with `poll` and checks `Shared::handed_over` before each accept),
//! so admin clients reach the new process while the old one drains.
//!
//! Browsers: the admin API is not for web pages. A request carrying `Origin` (sent by browsers
//! on cross-site POSTs and script requests) is refused with 403, so a page the operator
//! visits cannot purge the cache or reload; and a `Host` that is a dotted name other than one
//! of `admin.hosts` is refused too (IP addresses and single-label names such as `localhost`
//! pass), so a page whose name was rebound to this address (DNS rebinding) cannot read it
//! either. `/health` and `/ready` are exempt.
//!
//! Auth: with `admin.token` set, every endpoint except `/health` and `/ready` needs
//! `Authorization: Bearer <token>`. The token is read when the listener starts (admin changes
//! take effect on restart) and compared as HMAC-SHA256 digests under a per-process random key,
//! in constant time, so neither the token's bytes nor its length show in the timing.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::json::string_into;
use crate::keyed_hash;
use crate::shared::Shared;

/// Largest request head accepted (bytes); larger gets 400.
pub const MAX_REQUEST: usize = 16 * 1024;
/// Connections served at once; more are answered 503 and closed.
pub const MAX_CONNECTIONS: usize = 64;
/// Time a connection has to deliver its whole request head.
pub const HEAD_DEADLINE: Duration = Duration::from_secs(5);
/// Write timeout for the response.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest request body accepted (`POST /cache/purge`); larger gets 413.
pub const MAX_BODY: usize = 64 * 1024;
/// How long a refused body is read and dropped before the connection closes.
const REFUSED_DRAIN: Duration = Duration::from_secs(1);

/// Binds the admin address (plain, no SO_REUSEPORT: only one process may own it).
pub fn bind(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr)
}

/// What every connection thread needs.
struct Ctx {
    shared: Arc<Shared>,
    config_path: PathBuf,
    workers: usize,
    /// Keyed digest of `admin.token`; `Some(None)` when a token is set but no digest key
    /// could be made (every protected request is then refused).
    token: Option<Option<[u8; keyed_hash::LEN]>>,
    /// `admin.hosts`: dotted names accepted in `Host`.
    hosts: Vec<String>,
    open: AtomicUsize,
    /// Connections still waiting for their request head (or draining after a refusal), oldest
    /// first: what the accept loop closes to make room at the cap.
    waiting: std::sync::Mutex<std::collections::VecDeque<(u64, TcpStream)>>,
    next_id: std::sync::atomic::AtomicU64,
}

impl Ctx {
    /// Notes a connection that has not sent its request head yet, or that drains after a
    /// refusal (an entry it can be closed through); `None` when the socket cannot be shared.
    fn wait_for_head(&self, s: &TcpStream) -> Option<u64> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let shared = s.try_clone().ok()?;
        self.waiting.lock().ok()?.push_back((id, shared));
        Some(id)
    }

    /// The connection `id` has its head (or is done): no longer a candidate to close.
    fn head_arrived(&self, id: Option<u64>) {
        if let (Some(id), Ok(mut w)) = (id, self.waiting.lock()) {
            w.retain(|(i, _)| *i != id);
        }
    }

    /// Closes the connection that has waited longest for its head; whether there was one.
    /// Its thread sees EOF at once and gives its slot back.
    fn close_oldest_waiting(&self) -> bool {
        let oldest = self.waiting.lock().ok().and_then(|mut w| w.pop_front());
        match oldest {
            Some((_, s)) => {
                let _ = s.shutdown(std::net::Shutdown::Both);
                true
            }
            None => false,
        }
    }
}

impl Ctx {
    /// Whether a request with this `Authorization` value may use the endpoints the token
    /// guards (always, when no token is configured).
    fn token_ok(&self, auth: Option<&[u8]>) -> bool {
        match &self.token {
            Some(expected) => bearer_matches(auth, expected.as_ref()),
            None => true,
        }
    }

    /// Whether `host` (a `Host` value) may name this listener: empty (HTTP/1.0), an IP
    /// address, a single-label name (`localhost`, a Compose service such as `ringway`), or a
    /// name in `admin.hosts`, with or without a port. DNS rebinding needs a name the attacker
    /// controls in public DNS, which always has a dot.
    fn host_ok(&self, host: &[u8]) -> bool {
        let Ok(host) = std::str::from_utf8(host) else {
            return false;
        };
        let host = host.trim();
        if host.is_empty() || host.parse::<std::net::SocketAddr>().is_ok() {
            return true;
        }
        let name = match host.rsplit_once(':') {
            Some((n, port)) if port.bytes().all(|b| b.is_ascii_digit()) => n,
            _ => host,
        };
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        name.parse::<std::net::IpAddr>().is_ok()
            || (name.starts_with('[')
                && name.ends_with(']')
                && name[1..name.len() - 1]
                    .parse::<std::net::Ipv6Addr>()
                    .is_ok())
            || !name.contains('.')
            || self.hosts.contains(&name)
    }
}

/// Releases a connection slot when the connection thread ends (or never started).
struct Slot(Arc<Ctx>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Serves the admin API on `listener` until the process exits.
pub fn spawn(
    shared: Arc<Shared>,
    config_path: PathBuf,
    listener: TcpListener,
    workers: usize,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let cfg = shared.config.load();
    let admin = cfg.admin.as_ref();
    let token = admin
        .and_then(|a| a.token.as_deref())
        .map(|t| keyed_hash::digest(t.as_bytes()));
    let hosts = admin.map(|a| a.hosts.clone()).unwrap_or_default();
    drop(cfg);
    let ctx = Arc::new(Ctx {
        shared,
        config_path,
        workers,
        token,
        hosts,
        open: AtomicUsize::new(0),
        waiting: Default::default(),
        next_id: Default::default(),
    });
    std::thread::Builder::new()
        .name("ringway-admin".into())
        .spawn(move || accept_loop(&ctx, &listener))
}

/// How long the accept thread waits for a connection before looking at the handover flag.
const ACCEPT_POLL_MS: i32 = 200;

/// Accepts until a successor took the socket over (never: without an upgrade).
fn accept_loop(ctx: &Arc<Ctx>, listener: &TcpListener) {
    use std::os::fd::AsRawFd;
    // Nonblocking: the successor may take a connection between our poll and our accept.
    if let Err(e) = listener.set_nonblocking(true) {
        crate::log::warn(&format!("admin listener: {e}"));
    }
    loop {
        if ctx.shared.handed_over.load(Ordering::SeqCst) {
            return;
        }
        let mut pfd = libc::pollfd {
            fd: listener.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: poll reads and writes the one pollfd we own.
        let ready = unsafe { libc::poll(&mut pfd, 1, ACCEPT_POLL_MS) };
        if ready <= 0 || ctx.shared.handed_over.load(Ordering::SeqCst) {
            continue;
        }
        match listener.accept() {
            Ok((s, _)) => {
                let _ = s.set_nonblocking(false);
                dispatch(ctx, s);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => {
                crate::log::warn(&format!("admin accept: {e}"));
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// Hands `s` to a connection thread. At [`MAX_CONNECTIONS`], the connection that has waited
/// longest for its request head is closed to make room; with none waiting, `s` gets 503.
fn dispatch(ctx: &Arc<Ctx>, s: TcpStream) {
    if ctx.open.fetch_add(1, Ordering::AcqRel) >= MAX_CONNECTIONS && !ctx.close_oldest_waiting() {
        let _slot = Slot(ctx.clone());
        // Best effort, never blocking the accept loop: a fresh socket's send buffer takes this
        // small reply at once. Whatever request bytes already arrived are read first, so the
        // close sends FIN rather than RST (bytes arriving later may still reset it).
        let _ = s.set_nonblocking(true);
        let mut sink = [0u8; 2048];
        while matches!((&s).read(&mut sink), Ok(n) if n > 0) {}
        let _ = (&s).write_all(&serialize(&message(503, "error", "admin API busy")));
        let _ = s.shutdown(std::net::Shutdown::Write);
        return;
    }
    let slot = Slot(ctx.clone());
    // Noted here, in accept order, not in the thread: the oldest entry is the oldest socket.
    let waiting = ctx.wait_for_head(&s);
    let spawned = std::thread::Builder::new()
        .name("ringway-admin-conn".into())
        .spawn(move || {
            let ctx = &*slot.0;
            serve(ctx, s, waiting);
            ctx.head_arrived(waiting);
            drop(slot);
        });
    if let Err(e) = spawned {
        // The closure (and its slot) was dropped with the error: the count is already back.
        ctx.head_arrived(waiting);
        crate::log::warn(&format!("admin: cannot start a connection thread: {e}"));
    }
}

struct Reply {
    status: u16,
    content_type: &'static str,
    body: Vec<u8>,
}

fn json(status: u16, body: Vec<u8>) -> Reply {
    Reply {
        status,
        content_type: "application/json",
        body,
    }
}

/// How long a scrape waits for busy workers to publish their snapshots.
const SCRAPE_WAIT: Duration = Duration::from_millis(500);

/// `GET /metrics`: every worker's core-local metrics merged, in Prometheus text format.
fn metrics(shared: &Shared, workers: usize) -> Reply {
    let merged = shared.metrics.collect(SCRAPE_WAIT);
    let cfg = shared.config.load();
    let (log_errors, spans_exported, spans_failed) = (
        shared.access_log.get().map_or(0, |l| l.write_errors()),
        shared.span_exporter.get().map_or(0, |e| e.exported()),
        shared.span_exporter.get().map_or(0, |e| e.dropped()),
    );
    let extra = [
        (
            "ringway_access_log_write_errors_total",
            "Access-log batches the writer thread failed to write.",
            log_errors,
        ),
        (
            "ringway_trace_spans_exported_total",
            "Spans accepted by the OTLP collector.",
            spans_exported,
        ),
        (
            "ringway_trace_spans_export_failed_total",
            "Spans dropped because the OTLP collector was unreachable or refused them.",
            spans_failed,
        ),
    ];
    let info = crate::metrics::ProcessInfo {
        version: env!("CARGO_PKG_VERSION"),
        driver: shared.driver.get().copied().unwrap_or("starting"),
        workers,
        generation: cfg.generation,
        reloads_ok: shared.reloads_ok.load(Ordering::Relaxed),
        reloads_failed: shared.reloads_failed.load(Ordering::Relaxed),
        extra_counters: &extra,
    };
    let mut text = String::with_capacity(16 * 1024);
    crate::metrics::render_prometheus(&merged, &info, &mut text);
    let mut limiters = Vec::new();
    let mut globals = Vec::new();
    for p in &cfg.policies.list {
        if let crate::policy::pipeline::Policy::RateLimit(rl) = &p.policy {
            if let Some(g) = &rl.global {
                globals.push((p.name.as_str(), g.redis_unavailable()));
            }
            for (limit, l) in rl.limiters.iter().enumerate() {
                limiters.push(crate::metrics::LimiterRow {
                    policy: &p.name,
                    limit,
                    limiter: l,
                });
            }
        }
    }
    crate::metrics::render_limiters(&limiters, &mut text);
    crate::metrics::render_global_limits(&globals, &mut text);
    crate::metrics::render_redis(cfg.redis.as_ref().map(|r| &r.health), &mut text);
    crate::metrics::render_forward_auth(&mut text);
    crate::metrics::wasm::render_wasm(&mut text);
    crate::metrics::validation::render_validation(&mut text);
    crate::metrics::render_cache(
        &crate::cache::stats::totals(),
        &shared.runtime.cache.stats(),
        &mut text,
    );
    let mirrors = cfg
        .upstreams
        .iter()
        .map(|u| (u.name.as_str(), &u.shared.mirror));
    crate::metrics::render_mirrors(mirrors, &mut text);
    let loads = cfg
        .upstreams
        .iter()
        .map(|u| (u.name.as_str(), &*u.shared.load));
    crate::metrics::render_load(loads, &mut text);
    crate::metrics::render_health(&crate::upstream::report::health_rows(&cfg), &mut text);
    let tls = cfg
        .listeners
        .iter()
        .filter_map(|l| l.tls.as_deref().map(|t| (l.name.as_str(), t)));
    let now = i64::try_from(crate::civil::unix_now()).unwrap_or(i64::MAX);
    crate::tls::settings::render_expiry(tls, now, &mut text);
    Reply {
        status: 200,
        content_type: "text/plain; version=0.0.4; charset=utf-8",
        body: text.into_bytes(),
    }
}

/// `GET /stats`: exact latency percentiles per route and upstream from the merged histograms.
fn stats(shared: &Shared) -> Reply {
    let merged = shared.metrics.collect(SCRAPE_WAIT);
    let mut text = String::with_capacity(4 * 1024);
    crate::metrics::render_stats_json(&merged, &mut text);
    let mut body = text.into_bytes();
    // One more member in the object: `"upstream_health": {"upstreams": [...]}`.
    if body.ends_with(b"}\n") {
        body.truncate(body.len() - 2);
        body.extend_from_slice(b",\"upstream_health\":");
        crate::upstream::report::health_json(&shared.config.load(), &mut body);
        body.extend_from_slice(b"}\n");
    }
    json(200, body)
}

/// `GET /upstreams`: every upstream's targets with their health (`upstream::report`).
fn upstreams(shared: &Shared) -> Reply {
    let mut body = Vec::with_capacity(1024);
    crate::upstream::report::health_json(&shared.config.load(), &mut body);
    body.push(b'\n');
    json(200, body)
}

fn message(status: u16, key: &str, text: &str) -> Reply {
    let mut b = Vec::new();
    b.extend_from_slice(b"{");
    string_into(&mut b, key.as_bytes());
    b.push(b':');
    string_into(&mut b, text.as_bytes());
    b.extend_from_slice(b"}\n");
    json(status, b)
}

/// A parsed request head (owned, so the buffer can grow while the body is read).
struct Head {
    method: String,
    path: String,
    auth: Option<Vec<u8>>,
    /// The request came from a web page: it carries `Origin`.
    from_page: bool,
    /// The `Host` value (empty without one).
    host: Vec<u8>,
    /// Bytes of the head (the body starts there).
    len: usize,
    /// `Content-Length` (0 without one); `Err` when it is malformed or the body is chunked.
    body_len: Result<usize, &'static str>,
}

fn parse_head(buf: &[u8]) -> Result<Option<Head>, ()> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => {
            // A field the admin API acts on, sent twice, is ambiguous (RFC 9112 §6.3 for
            // Content-Length; a second Host or Authorization is a confused or hostile client).
            let once = [
                "host",
                "content-length",
                "authorization",
                "transfer-encoding",
            ];
            if once.iter().any(|name| {
                req.headers
                    .iter()
                    .filter(|h| h.name.eq_ignore_ascii_case(name))
                    .count()
                    > 1
            }) {
                return Err(());
            }
            let find = |name: &str| {
                req.headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case(name))
                    .map(|h| h.value)
            };
            let body_len = if find("transfer-encoding").is_some() {
                Err("chunked request bodies are not accepted; send Content-Length")
            } else {
                match find("content-length") {
                    None => Ok(0),
                    Some(v) => std::str::from_utf8(v)
                        .ok()
                        .and_then(|v| v.trim().parse::<usize>().ok())
                        .ok_or("malformed Content-Length"),
                }
            };
            Ok(Some(Head {
                method: req.method.unwrap_or("").to_string(),
                path: req
                    .path
                    .unwrap_or("")
                    .split('?')
                    .next()
                    .unwrap_or("")
                    .to_string(),
                auth: find("authorization").map(<[u8]>::to_vec),
                from_page: find("origin").is_some(),
                host: find("host").map(<[u8]>::to_vec).unwrap_or_default(),
                len,
                body_len,
            }))
        }
        Ok(httparse::Status::Partial) => Ok(None),
        Err(_) => Err(()),
    }
}

/// Endpoints that read a request body, and how large it may be.
fn body_limit(method: &str, path: &str) -> Option<usize> {
    (method == "POST" && path == "/cache/purge").then_some(MAX_BODY)
}

/// Reads from `s` into `buf` until it holds `want` bytes; `false` on EOF, error or `deadline`.
fn read_until(s: &mut TcpStream, buf: &mut Vec<u8>, want: usize, deadline: Instant) -> bool {
    let mut chunk = [0u8; 4096];
    while buf.len() < want {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || s.set_read_timeout(Some(left)).is_err() {
            return false;
        }
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return false,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    true
}

fn serve(ctx: &Ctx, mut s: TcpStream, waiting: Option<u64>) {
    let _ = s.set_write_timeout(Some(WRITE_TIMEOUT));
    let deadline = Instant::now() + HEAD_DEADLINE;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    let head = loop {
        // One deadline for the whole request: a client trickling bytes cannot hold the slot.
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || s.set_read_timeout(Some(left)).is_err() {
            return;
        }
        let n = match s.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        match parse_head(&buf) {
            Ok(Some(h)) => {
                ctx.head_arrived(waiting);
                break Ok(h);
            }
            Ok(None) if buf.len() < MAX_REQUEST => continue,
            _ => break Err(message(400, "error", "malformed request")),
        }
    };
    let mut refused_body = false;
    let reply = match head {
        Err(r) => r,
        Ok(h) if !matches!(h.path.as_str(), "/health" | "/ready") && h.from_page => {
            refused_body = true;
            message(
                403,
                "error",
                "requests from web pages (with Origin) are refused",
            )
        }
        Ok(h) if !matches!(h.path.as_str(), "/health" | "/ready") && !ctx.host_ok(&h.host) => {
            refused_body = true;
            message(
                403,
                "error",
                "Host names another site: list it in admin.hosts",
            )
        }
        // The token before any body: a client without it must not hold a slot (and lock the
        // probes out) by announcing a body it never sends.
        Ok(h) if body_limit(&h.method, &h.path).is_some() && !ctx.token_ok(h.auth.as_deref()) => {
            refused_body = true;
            message(401, "error", "admin token required")
        }
        Ok(h) => match (body_limit(&h.method, &h.path), h.body_len) {
            (None, _) => route(ctx, &h.method, &h.path, h.auth.as_deref(), b""),
            (Some(_), Err(why)) => {
                refused_body = true;
                message(400, "error", why)
            }
            (Some(max), Ok(n)) if n > max => {
                refused_body = true;
                message(
                    413,
                    "error",
                    &format!("request body over {max} bytes refused"),
                )
            }
            (Some(_), Ok(n)) => {
                // A body announced and not sent holds the slot like a head not sent: it may be
                // closed to make room for a probe (`waiting`).
                let reading = ctx.wait_for_head(&s);
                let complete = read_until(&mut s, &mut buf, h.len + n, deadline);
                ctx.head_arrived(reading);
                if !complete {
                    return;
                }
                let body = &buf[h.len..h.len + n];
                route(ctx, &h.method, &h.path, h.auth.as_deref(), body)
            }
        },
    };
    let _ = s.write_all(&serialize(&reply));
    if refused_body {
        // Read (and drop) what the client still sends for a short while, so closing sends a
        // FIN it can read the answer before, not a reset that may discard it. The slot may be
        // taken back meanwhile, like one waiting for its head: refused clients cannot hold
        // the probes out for the drain's length.
        let _ = s.shutdown(std::net::Shutdown::Write);
        let draining = ctx.wait_for_head(&s);
        let until = Instant::now() + REFUSED_DRAIN;
        let mut sink = Vec::new();
        while read_until(&mut s, &mut sink, 1, until) {
            sink.clear();
        }
        ctx.head_arrived(draining);
    }
}

fn serialize(reply: &Reply) -> Vec<u8> {
    use crate::http1::{write_header, write_response_head, Framing, HeadEnd, Version};
    let mut fields = Vec::with_capacity(96);
    write_header(&mut fields, b"content-type", reply.content_type.as_bytes());
    if reply.status == 401 {
        write_header(
            &mut fields,
            b"www-authenticate",
            b"Bearer realm=\"ringway-admin\"",
        );
    }
    // The admin server answers one request per connection: always `connection: close`.
    let end = HeadEnd {
        framing: Framing::Length(reply.body.len() as u64),
        request_id: b"",
        trace: None,
        lines: b"",
        keep: false,
        version: Version::Http11,
    };
    let mut out = Vec::with_capacity(reply.body.len() + 160);
    write_response_head(&mut out, reply.status, &fields, &end);
    out.extend_from_slice(&reply.body);
    out
}

/// `/ready`'s answer: draining wins over everything; ready only once every worker accepts.
fn readiness(draining: bool, accepting: usize, workers: usize) -> (u16, &'static str) {
    if draining {
        (503, "draining")
    } else if accepting < workers {
        (503, "starting")
    } else {
        (200, "ready")
    }
}

fn route(ctx: &Ctx, method: &str, path: &str, auth: Option<&[u8]>, body: &[u8]) -> Reply {
    let shared = &*ctx.shared;
    let workers = ctx.workers;
    match (method, path) {
        ("GET", "/health") => return message(200, "status", "alive"),
        ("GET", "/ready") => {
            let (status, text) = readiness(
                shared.draining.load(Ordering::SeqCst),
                shared.workers_accepting.load(Ordering::SeqCst),
                workers,
            );
            return message(status, "status", text);
        }
        _ => {}
    }
    if !ctx.token_ok(auth) {
        return message(401, "error", "admin token required");
    }
    match (method, path) {
        ("GET", "/config") => config(shared),
        ("GET", "/metrics") => metrics(shared, workers),
        ("GET", "/stats") => stats(shared),
        ("GET", "/routes") => routes(shared),
        ("GET", "/upstreams") => upstreams(shared),
        ("GET", "/cache") => json(
            200,
            crate::cache::stats::json(
                &crate::cache::stats::totals(),
                &shared.runtime.cache.stats(),
            ),
        ),
        ("POST", "/cache/purge") => purge(shared, body),
        ("POST", "/reload") => {
            crate::log::info("admin: POST /reload");
            match crate::control::reload(shared, &ctx.config_path) {
                Ok(generation) => {
                    let mut b = Vec::new();
                    b.extend_from_slice(b"{\"result\":\"ok\",\"generation\":");
                    b.extend_from_slice(generation.to_string().as_bytes());
                    b.extend_from_slice(b"}\n");
                    json(200, b)
                }
                Err(text) => message(400, "error", &text),
            }
        }
        (
            _,
            "/health" | "/ready" | "/metrics" | "/stats" | "/config" | "/routes" | "/upstreams"
            | "/reload" | "/cache" | "/cache/purge",
        ) => message(405, "error", "method not allowed"),
        _ => message(404, "error", "no such admin endpoint"),
    }
}

/// `POST /cache/purge`: drops what the JSON body names from the shared store (every worker's
/// view: the store is one per process, so the purge is complete when this answers), then hands
/// it to the Redis thread to publish to the other instances when `[redis]` is configured.
fn purge(shared: &Shared, body: &[u8]) -> Reply {
    let p = match crate::cache::purge::Purge::from_json(body) {
        Ok(p) => p,
        Err(e) => return message(400, "error", &e),
    };
    let n = shared.runtime.cache.purge(&p);
    let fanout = shared.config.load().redis.is_some();
    crate::log::info(&format!(
        "admin: cache purge {}: {n} objects dropped",
        p.describe()
    ));
    if fanout {
        shared.cache_purges.push(p);
    }
    let mut b = Vec::new();
    b.extend_from_slice(b"{\"purged\":");
    b.extend_from_slice(n.to_string().as_bytes());
    b.extend_from_slice(b",\"fanout\":");
    b.extend_from_slice(if fanout { b"\"redis\"" } else { b"null" });
    b.extend_from_slice(b"}\n");
    json(200, b)
}

/// Does `Authorization: Bearer <token>` carry the token whose keyed digest is `expected`?
/// Both sides are compared as fixed-length keyed digests in constant time, so the timing shows
/// neither the token's bytes nor its length. No digest key (`None`): refuse.
fn bearer_matches(auth: Option<&[u8]>, expected: Option<&[u8; keyed_hash::LEN]>) -> bool {
    let Some(expected) = expected else {
        return false;
    };
    let Some(value) = auth else {
        return false;
    };
    // The scheme is case-insensitive (RFC 9110 §11.1).
    let Some(presented) = value
        .get(..7)
        .filter(|p| p.eq_ignore_ascii_case(b"bearer "))
        .map(|_| &value[7..])
    else {
        return false;
    };
    keyed_hash::digest(presented).is_some_and(|d| keyed_hash::equal(&d, expected))
}

fn config(shared: &Shared) -> Reply {
    // Never wait for a reload in progress (it may take its time: files, DNS): a client polling
    // /config must not hold an admin slot, let alone many of them, meanwhile.
    let status = match shared.reload_lock.try_lock() {
        Ok(s) => s.clone(),
        Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner().clone(),
        Err(std::sync::TryLockError::WouldBlock) => {
            return message(503, "error", "a reload is in progress; ask again shortly")
        }
    };
    let cfg = shared.config.load();
    let mut b = Vec::new();
    b.extend_from_slice(b"{\"generation\":");
    b.extend_from_slice(cfg.generation.to_string().as_bytes());
    b.extend_from_slice(b",\"source\":");
    string_into(&mut b, cfg.source.display().to_string().as_bytes());
    b.extend_from_slice(b",\"content_hash\":");
    string_into(&mut b, cfg.content_hash.as_bytes());
    b.extend_from_slice(b",\"loaded_at\":");
    b.extend_from_slice(status.loaded_at.to_string().as_bytes());
    b.extend_from_slice(b",\"last_reload_error\":");
    match &status.last_error {
        Some(e) => string_into(&mut b, e.as_bytes()),
        None => b.extend_from_slice(b"null"),
    }
    b.extend_from_slice(b"}\n");
    json(200, b)
}

fn routes(shared: &Shared) -> Reply {
    let cfg = shared.config.load();
    let mut b = Vec::new();
    b.extend_from_slice(b"{\"generation\":");
    b.extend_from_slice(cfg.generation.to_string().as_bytes());
    b.extend_from_slice(b",\"routes\":[");
    for (i, r) in crate::config::summary::route_rows(&cfg).iter().enumerate() {
        if i > 0 {
            b.push(b',');
        }
        let fields = [
            ("name", &r.name),
            ("hosts", &r.hosts),
            ("methods", &r.methods),
            ("path", &r.path),
            ("conditions", &r.conditions),
            ("action", &r.action),
            ("policies", &r.policies),
        ];
        b.push(b'{');
        for (j, (key, value)) in fields.iter().enumerate() {
            if j > 0 {
                b.push(b',');
            }
            string_into(&mut b, key.as_bytes());
            b.push(b':');
            string_into(&mut b, value.as_bytes());
        }
        b.push(b'}');
    }
    b.extend_from_slice(b"]}\n");
    json(200, b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_is_starting_until_every_worker_accepts_and_draining_wins() {
        assert_eq!(readiness(false, 0, 2), (503, "starting"));
        assert_eq!(readiness(false, 1, 2), (503, "starting"));
        assert_eq!(readiness(false, 2, 2), (200, "ready"));
        assert_eq!(readiness(true, 2, 2), (503, "draining"));
        assert_eq!(readiness(true, 0, 2), (503, "draining"));
    }

    #[test]
    fn bearer_needs_the_exact_token() {
        let token = "s3cret-admin-token-0123";
        let d = keyed_hash::digest(token.as_bytes());
        let ok = |v: &[u8]| bearer_matches(Some(v), d.as_ref());
        assert!(ok(b"Bearer s3cret-admin-token-0123"));
        assert!(ok(b"bearer s3cret-admin-token-0123"));
        assert!(!ok(b"Bearer s3cret-admin-token-012"));
        assert!(!ok(b"Bearer s3cret-admin-token-01234"));
        assert!(!ok(b"Bearer "));
        assert!(!ok(b"Basic s3cret-admin-token-0123"));
        assert!(!ok(b"s3cret-admin-token-0123"));
        assert!(!ok(b""));
        assert!(!bearer_matches(None, d.as_ref()));
        assert!(!bearer_matches(Some(b"Bearer x"), None));
    }
}

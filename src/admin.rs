//! The admin listener: a small HTTP/1.1 server on its own thread (never a worker, never a
//! public listener), one request per connection, JSON answers.
//!
//! `GET /health` (process alive), `GET /ready` (200 once every worker accepts; 503 while
//! draining), `GET /metrics` (Prometheus text, merged from the workers' core-local metrics),
//! `GET /stats` (latency percentiles per route and upstream, JSON), `GET /config` (generation, source, content hash, loaded-at, last reload error),
//! `GET /routes` (the compiled table in match order) and `POST /reload` (same as SIGHUP, answers
//! with the result). When `admin.token` is set, mutating endpoints need
//! `Authorization: Bearer <token>`.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::json::string_into;
use crate::worker::Shared;

const MAX_REQUEST: usize = 16 * 1024;

/// Binds the admin address (plain, no SO_REUSEPORT: only one process may own it).
pub fn bind(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr)
}

/// Serves the admin API on `listener` until the process exits.
pub fn spawn(
    shared: Arc<Shared>,
    config_path: PathBuf,
    listener: TcpListener,
    workers: usize,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("ringway-admin".into())
        .spawn(move || {
            for stream in listener.incoming() {
                match stream {
                    Ok(s) => handle(&shared, &config_path, workers, s),
                    Err(e) => {
                        crate::log::warn(&format!("admin accept: {e}"));
                        std::thread::sleep(Duration::from_millis(10));
                    }
                }
            }
        })
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
    json(200, text.into_bytes())
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

fn handle(shared: &Shared, config_path: &Path, workers: usize, mut s: TcpStream) {
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = s.set_write_timeout(Some(Duration::from_secs(5)));
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    let reply = loop {
        let n = match s.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf) {
            Ok(httparse::Status::Complete(_)) => {
                let method = req.method.unwrap_or("");
                let path = req.path.unwrap_or("").split('?').next().unwrap_or("");
                let auth = req
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("authorization"))
                    .map(|h| h.value);
                break route(shared, config_path, workers, method, path, auth);
            }
            Ok(httparse::Status::Partial) if buf.len() < MAX_REQUEST => continue,
            _ => break message(400, "error", "malformed request"),
        }
    };
    let mut out = Vec::with_capacity(reply.body.len() + 128);
    crate::http1::write_status_line(&mut out, reply.status);
    crate::http1::write_header(&mut out, b"content-type", reply.content_type.as_bytes());
    crate::http1::write_header(
        &mut out,
        b"content-length",
        reply.body.len().to_string().as_bytes(),
    );
    crate::http1::write_header(&mut out, b"connection", b"close");
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&reply.body);
    let _ = s.write_all(&out);
}

fn route(
    shared: &Shared,
    config_path: &Path,
    workers: usize,
    method: &str,
    path: &str,
    auth: Option<&[u8]>,
) -> Reply {
    match (method, path) {
        ("GET", "/health") => message(200, "status", "alive"),
        ("GET", "/ready") => {
            let accepting = shared.workers_accepting.load(Ordering::SeqCst);
            if shared.draining.load(Ordering::SeqCst) {
                message(503, "status", "draining")
            } else if accepting < workers {
                message(503, "status", "starting")
            } else {
                message(200, "status", "ready")
            }
        }
        ("GET", "/config") => config(shared),
        ("GET", "/metrics") => metrics(shared, workers),
        ("GET", "/stats") => stats(shared),
        ("GET", "/routes") => routes(shared),
        ("POST", "/reload") => {
            let cfg = shared.config.load();
            if let Some(token) = cfg.admin.as_ref().and_then(|a| a.token.as_deref()) {
                if !bearer_matches(auth, token) {
                    return message(401, "error", "admin token required");
                }
            }
            drop(cfg);
            crate::log::info("admin: POST /reload");
            match crate::control::reload(shared, config_path) {
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
        (_, "/health" | "/ready" | "/metrics" | "/stats" | "/config" | "/routes" | "/reload") => {
            message(405, "error", "method not allowed")
        }
        _ => message(404, "error", "no such admin endpoint"),
    }
}

/// Constant-time comparison of `Authorization: Bearer <token>`.
fn bearer_matches(auth: Option<&[u8]>, token: &str) -> bool {
    let Some(value) = auth.and_then(|v| v.strip_prefix(b"Bearer ")) else {
        return false;
    };
    let expected = token.as_bytes();
    if value.len() != expected.len() {
        return false;
    }
    value
        .iter()
        .zip(expected)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
        == 0
}

fn config(shared: &Shared) -> Reply {
    let status = shared
        .reload_lock
        .lock()
        .map(|s| s.clone())
        .unwrap_or_else(|p| p.into_inner().clone());
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

//! The `idle` scenario kind: open N keep-alive connections to a target, send one request on
//! each and read its response, leave them idle, and report how much the target's resident
//! memory grew per connection: (RSS after − RSS before) / connections open. RSS is `VmRSS`,
//! summed over nginx workers. Connections are opened in batches (connect, write, then read)
//! so the listen backlog never overflows. In TLS scenarios each connection completes a full
//! handshake (no resumption) before its request, so every one holds a complete session.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use crate::procfs;
use crate::procs;
use crate::scenario::Idle;
use crate::targets::Running;
use crate::tls::{AnyConn, TlsFiles};

const BATCH: usize = 200;
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Opening all connections must finish within this (loopback does 10 000 in about a second).
const OPEN_LIMIT: Duration = Duration::from_secs(120);

/// What N idle connections cost a target.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub requested: usize,
    pub opened: usize,
    pub errors: usize,
    pub first_error: Option<String>,
    pub rss_before_kib: u64,
    pub rss_after_kib: u64,
    pub bytes_per_conn: f64,
    /// Time to open all connections and get every response.
    pub open_s: f64,
    /// TLS: what the first connection negotiated.
    pub tls: Option<String>,
}

/// Opens the connections, measures, and closes them again.
pub fn measure(t: &Running, idle: &Idle, tls: Option<&TlsFiles>) -> Result<Outcome, String> {
    let rss = || {
        procfs::status_kib_sum(&t.rss_pids, "VmRSS")
            .ok_or_else(|| format!("cannot read the memory of {}", t.target.name()))
    };
    procs::sleep(idle.settle)?;
    let before = rss()?;
    let mut o = Outcome {
        requested: idle.connections,
        rss_before_kib: before,
        ..Outcome::default()
    };
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: rwcompare\r\n\r\n",
        idle.path, t.addr
    );
    let mut open: Vec<AnyConn> = Vec::with_capacity(idle.connections);
    let started = Instant::now();
    let fail = |o: &mut Outcome, e: String| {
        o.errors += 1;
        o.first_error.get_or_insert(e);
    };
    while open.len() + o.errors < idle.connections {
        procs::check()?;
        if started.elapsed() > OPEN_LIMIT {
            return Err(format!(
                "gave up after {OPEN_LIMIT:?} with {} connections open, {} errors (first: {})",
                open.len(),
                o.errors,
                o.first_error.as_deref().unwrap_or("none")
            ));
        }
        let want = BATCH.min(idle.connections - open.len() - o.errors);
        let mut batch = Vec::with_capacity(want);
        for _ in 0..want {
            match AnyConn::open(t.addr, tls, IO_TIMEOUT).and_then(|mut s| {
                s.write_all(request.as_bytes())
                    .and_then(|()| s.flush())
                    .map_err(|e| format!("write: {e}"))?;
                Ok(s)
            }) {
                Ok(s) => {
                    if let (None, AnyConn::Tls(c)) = (&o.tls, &s) {
                        o.tls = Some(crate::tls::negotiated(c));
                    }
                    batch.push(s)
                }
                Err(e) => fail(&mut o, format!("connect/write: {e}")),
            }
        }
        for mut s in batch {
            match read_response(&mut s) {
                Ok(200) => open.push(s),
                Ok(code) => fail(&mut o, format!("status {code}")),
                Err(e) => fail(&mut o, e),
            }
        }
        if let Some(p) = &t.proc_ {
            if let Some(code) = p.exit_status() {
                return Err(format!(
                    "{} exited with {} connections open (status {code}):\n{}",
                    p.name,
                    open.len(),
                    p.stderr_tail(10)
                ));
            }
        }
    }
    o.open_s = started.elapsed().as_secs_f64();
    o.opened = open.len();
    procs::sleep(idle.settle)?;
    o.rss_after_kib = rss()?;
    if o.opened > 0 {
        o.bytes_per_conn =
            (o.rss_after_kib as f64 - o.rss_before_kib as f64) * 1024.0 / o.opened as f64;
    }
    drop(open);
    Ok(o)
}

/// Reads one response (Content-Length or chunked body) and returns its status.
fn read_response(s: &mut impl Read) -> Result<u16, String> {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > 64 * 1024 {
            return Err("response head too large".into());
        }
        let n = s.read(&mut chunk).map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("connection closed before the response".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or("bad status line")?;
    let length = head.lines().find_map(|l| {
        l.strip_prefix("content-length:")
            .and_then(|v| v.trim().parse::<usize>().ok())
    });
    let chunked = head
        .lines()
        .any(|l| l.starts_with("transfer-encoding:") && l.contains("chunked"));
    loop {
        let body = &buf[head_end..];
        let done = match (length, chunked) {
            (Some(n), _) => body.len() >= n,
            (None, true) => body.ends_with(b"0\r\n\r\n"),
            (None, false) => true,
        };
        if done {
            return Ok(status);
        }
        let n = s.read(&mut chunk).map_err(|e| format!("read body: {e}"))?;
        if n == 0 {
            return Err("connection closed mid-body".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

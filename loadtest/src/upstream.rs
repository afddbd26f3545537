//! `rwload upstream`: a small, fast HTTP/1.1 origin server for load tests. One pinned monoio
//! runtime per thread, each with its own `SO_REUSEPORT` listener on the same address.
//!
//! Every request gets `200 OK` with a fixed body of `--body-size` bytes. Responses are
//! serialized once at startup; a connection parses every request already buffered (bodies are
//! read and discarded by Content-Length or chunked framing), appends one canned response per
//! request, and sends them all with one write, so pipelined requests cost one syscall per
//! batch. With `--delay`, each response is held that long and written on its own.
//!
//! `GET /__fault/on` makes every later request (on every thread) answer `503`, and
//! `GET /__fault/off` ends that: the chaos load test's failing target.
//!
//! `GET /__count` answers `{"requests":N}`: requests served so far by all threads (the count
//! requests themselves excluded). On SIGTERM/SIGINT (or after `--duration`) the same object
//! is printed on stdout and the process exits 0. The first stdout line is
//! `listening on ADDR`, with the real port when `--listen` used port 0.

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use monoio::io::AsyncWriteRentExt;
use monoio::net::{ListenerOpts, TcpListener, TcpStream};

use crate::body::{BodyDecoder, Framing};
use crate::recvbuf::RecvBuf;
use crate::runtime::block_on;
use crate::units::pin_current_thread;

/// Most headers a request may carry.
const MAX_HEADERS: usize = 64;

/// What `serve` needs.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    pub listen: SocketAddr,
    pub threads: usize,
    /// CPUs to pin server threads to, thread `i` on `cpus[i % len]`; empty = no pinning.
    pub cpus: Vec<usize>,
    pub body_size: usize,
    /// The body is a JSON document (`application/json`) of about `body_size` bytes, with the
    /// varied text of a real API answer, instead of `a` repeated (`text/plain`): what a
    /// compression benchmark needs.
    pub json: bool,
    /// The body is exactly this text (`application/json`), replacing `body_size`/`json`: a
    /// fixed document such as an introspection answer.
    pub body_text: Option<String>,
    pub delay: Duration,
    /// Exit by itself after this long.
    pub duration: Option<Duration>,
}

/// Requests served by one thread; padded so threads never share a cache line.
#[repr(align(128))]
#[derive(Default)]
struct Served(AtomicU64);

/// A pre-serialized response and where its head ends (HEAD requests get only the head).
struct Canned {
    bytes: Vec<u8>,
    head_len: usize,
}

impl Canned {
    fn new(status: &str, connection: Option<&str>, content_type: &str, body: &[u8]) -> Self {
        let mut bytes = format!("HTTP/1.1 {status}\r\nServer: rwload\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n", body.len()).into_bytes();
        if let Some(c) = connection {
            bytes.extend_from_slice(format!("Connection: {c}\r\n").as_bytes());
        }
        bytes.extend_from_slice(b"\r\n");
        let head_len = bytes.len();
        bytes.extend_from_slice(body);
        Canned { bytes, head_len }
    }

    fn write_to(&self, out: &mut Vec<u8>, head_only: bool) {
        let end = if head_only {
            self.head_len
        } else {
            self.bytes.len()
        };
        out.extend_from_slice(&self.bytes[..end]);
    }
}

/// Everything a server thread's connections share.
struct ServerCtx {
    ok: Canned,
    ok_close: Canned,
    /// For HTTP/1.0 keep-alive clients, which need the header spelled out.
    ok_keep_alive: Canned,
    bad_request: Canned,
    delay: Duration,
    served: Arc<Vec<Served>>,
    idx: usize,
    /// Set by `GET /__fault/on`: every request answers 503 (shared by all threads).
    failing: Arc<std::sync::atomic::AtomicBool>,
    fail: Canned,
}

impl ServerCtx {
    fn count_one(&self) {
        // Only this thread writes its counter: a load and a store suffice.
        let c = &self.served[self.idx].0;
        c.store(c.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    }
}

fn total(served: &[Served]) -> u64 {
    served.iter().map(|s| s.0.load(Ordering::Relaxed)).sum()
}

/// Serves until SIGTERM/SIGINT or `duration`, then prints the count and returns it.
pub fn serve(cfg: UpstreamConfig) -> Result<u64, String> {
    let threads = cfg.threads.max(1);
    let signals = block_stop_signals()?;
    let served: Arc<Vec<Served>> = Arc::new((0..threads).map(|_| Served::default()).collect());
    let failing = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let body = if let Some(t) = &cfg.body_text {
        t.clone().into_bytes()
    } else if cfg.json {
        json_body(cfg.body_size)
    } else {
        vec![b'a'; cfg.body_size]
    };

    // Thread 0 binds first so that port 0 becomes a real port the others can share.
    let mut addr = cfg.listen;
    for idx in 0..threads {
        let (tx, rx) = mpsc::channel();
        let cfg = cfg.clone();
        let served = served.clone();
        let failing = failing.clone();
        let body = body.clone();
        std::thread::Builder::new()
            .name(format!("rwload-up-{idx}"))
            .spawn(move || server_thread(cfg, idx, addr, (served, failing), body, tx))
            .map_err(|e| format!("cannot start server thread: {e}"))?;
        addr = rx
            .recv()
            .map_err(|_| format!("server thread {idx} died while binding"))??;
    }
    println!("listening on {addr}");
    eprintln!(
        "rwload upstream: {threads} thread(s), {} B bodies, delay {:?}; GET /__count for the count",
        cfg.body_size, cfg.delay
    );
    use std::io::Write;
    let _ = std::io::stdout().flush();

    wait_for_stop(&signals, cfg.duration.map(|d| Instant::now() + d));
    let n = total(&served);
    println!("{{\"requests\":{n}}}");
    let _ = std::io::stdout().flush();
    Ok(n)
}

fn server_thread(
    cfg: UpstreamConfig,
    idx: usize,
    addr: SocketAddr,
    shared: (Arc<Vec<Served>>, Arc<std::sync::atomic::AtomicBool>),
    body: Vec<u8>,
    bound: mpsc::Sender<Result<SocketAddr, String>>,
) {
    let (served, failing) = shared;
    if !cfg.cpus.is_empty() {
        if let Err(e) = pin_current_thread(cfg.cpus[idx % cfg.cpus.len()]) {
            eprintln!("rwload upstream: warning: thread {idx}: {e}");
        }
    }
    let ctx = Rc::new(ServerCtx {
        ok: Canned::new("200 OK", None, content_type(&cfg), &body),
        ok_close: Canned::new("200 OK", Some("close"), content_type(&cfg), &body),
        ok_keep_alive: Canned::new("200 OK", Some("keep-alive"), content_type(&cfg), &body),
        bad_request: Canned::new(
            "400 Bad Request",
            Some("close"),
            "text/plain",
            b"bad request\n",
        ),
        delay: cfg.delay,
        served,
        idx,
        failing,
        fail: Canned::new("503 Service Unavailable", None, "text/plain", b"fault\n"),
    });
    let name = format!("upstream thread {idx}");
    let bound2 = bound.clone();
    let result = block_on(&name, move |_driver| async move {
        let opts = ListenerOpts::new().reuse_port(true).backlog(4096);
        let listener = match TcpListener::bind_with_config(addr, &opts) {
            Ok(l) => l,
            Err(e) => {
                let _ = bound2.send(Err(format!("cannot listen on {addr}: {e}")));
                return;
            }
        };
        let local = listener.local_addr().unwrap_or(addr);
        let _ = bound2.send(Ok(local));
        drop(bound2);
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    monoio::spawn(serve_conn(stream, ctx.clone()));
                }
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    eprintln!("rwload upstream: accept: {e}");
                    monoio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    });
    if let Err(e) = result {
        let _ = bound.send(Err(e));
    }
}

/// How to answer one parsed request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RequestHead {
    len: usize,
    framing: Framing,
    head_only: bool,
    close: bool,
    http10: bool,
    expect_continue: bool,
    count: bool,
    /// `/__fault/on` (Some(true)) or `/__fault/off` (Some(false)).
    fault: Option<bool>,
}

/// Parses a request head at the start of `buf`: `Ok(None)` = need more bytes, `Err` = answer
/// 400 and close.
fn parse_request(buf: &[u8]) -> Result<Option<RequestHead>, ()> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(()),
    };
    let http10 = req.version == Some(0);
    let mut close = http10;
    let mut content_length: Option<u64> = None;
    let mut chunked = false;
    let mut expect_continue = false;
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            let v = h.value.trim_ascii();
            if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
                return Err(());
            }
            let n = std::str::from_utf8(v)
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or(())?;
            if content_length.is_some_and(|p| p != n) {
                return Err(());
            }
            content_length = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            if !h.value.trim_ascii().eq_ignore_ascii_case(b"chunked") || chunked {
                return Err(());
            }
            chunked = true;
        } else if h.name.eq_ignore_ascii_case("connection") {
            for t in h.value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                if t.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if t.eq_ignore_ascii_case(b"keep-alive") && http10 {
                    close = false;
                }
            }
        } else if h.name.eq_ignore_ascii_case("expect") {
            expect_continue = h.value.trim_ascii().eq_ignore_ascii_case(b"100-continue");
        }
    }
    let framing = match (chunked, content_length) {
        (true, Some(_)) => return Err(()),
        (true, None) => Framing::Chunked,
        (false, n) => Framing::Length(n.unwrap_or(0)),
    };
    Ok(Some(RequestHead {
        len,
        framing,
        head_only: req.method == Some("HEAD"),
        close,
        http10,
        expect_continue,
        count: req.path == Some("/__count"),
        fault: match req.path {
            Some("/__fault/on") => Some(true),
            Some("/__fault/off") => Some(false),
            _ => None,
        },
    }))
}

/// Serves one client connection until it closes or sends something unparseable.
async fn serve_conn(mut stream: TcpStream, ctx: Rc<ServerCtx>) {
    let _ = stream.set_nodelay(true);
    let mut rbuf = RecvBuf::new();
    let mut out: Vec<u8> = Vec::with_capacity(4096);
    // The request whose body is being read, and its body decoder.
    let mut current: Option<(RequestHead, BodyDecoder)> = None;
    loop {
        let mut close = false;
        // Answer every request that is complete in the buffer.
        loop {
            let Some((head, body)) = current.as_mut() else {
                match parse_request(rbuf.data()) {
                    Ok(Some(head)) => {
                        rbuf.consume(head.len);
                        let body = BodyDecoder::new(head.framing);
                        if head.expect_continue && !body.is_done() && !head.http10 {
                            out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
                        }
                        current = Some((head, body));
                        continue;
                    }
                    Ok(None) => break,
                    Err(()) => {
                        ctx.bad_request.write_to(&mut out, false);
                        close = true;
                        break;
                    }
                }
            };
            let progress = match body.decode(rbuf.data()) {
                Ok(p) => p,
                Err(_) => {
                    ctx.bad_request.write_to(&mut out, false);
                    close = true;
                    break;
                }
            };
            rbuf.consume(progress.consumed);
            if !progress.done {
                break;
            }
            let head = *head;
            current = None;
            respond(&ctx, &head, &mut out);
            if !ctx.delay.is_zero() {
                monoio::time::sleep(ctx.delay).await;
                if !flush(&mut stream, &mut out).await {
                    return;
                }
            }
            if head.close {
                close = true;
                break;
            }
        }
        if !flush(&mut stream, &mut out).await || close {
            return;
        }
        match rbuf.fill(&mut stream).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// Appends the response for `head` to `out` and counts it.
fn respond(ctx: &ServerCtx, head: &RequestHead, out: &mut Vec<u8>) {
    if head.count {
        let body = format!("{{\"requests\":{}}}\n", total(&ctx.served));
        let c = if head.close { Some("close") } else { None };
        Canned::new("200 OK", c, "application/json", body.as_bytes()).write_to(out, head.head_only);
        return;
    }
    if let Some(on) = head.fault {
        ctx.failing.store(on, Ordering::Relaxed);
        let c = if head.close { Some("close") } else { None };
        Canned::new("200 OK", c, "text/plain", b"ok\n").write_to(out, head.head_only);
        return;
    }
    ctx.count_one();
    if ctx.failing.load(Ordering::Relaxed) {
        ctx.fail.write_to(out, head.head_only);
        return;
    }
    let canned = if head.close {
        &ctx.ok_close
    } else if head.http10 {
        &ctx.ok_keep_alive
    } else {
        &ctx.ok
    };
    canned.write_to(out, head.head_only);
}

/// Writes `out` completely and clears it; false when the connection is gone.
async fn flush(stream: &mut TcpStream, out: &mut Vec<u8>) -> bool {
    if out.is_empty() {
        return true;
    }
    let (res, mut buf) = stream.write_all(std::mem::take(out)).await;
    buf.clear();
    *out = buf;
    res.is_ok()
}

/// Blocks SIGINT and SIGTERM in this thread (and so in every thread it starts later), so
/// that `wait_for_stop` can take them synchronously.
fn block_stop_signals() -> Result<libc::sigset_t, String> {
    // SAFETY: sigset_t is plain data that sigemptyset initializes before any other use; the
    // pointers passed are to live locals; pthread_sigmask only changes this thread's mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        let rc = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        if rc != 0 {
            return Err(format!("cannot block signals: error {rc}"));
        }
        Ok(set)
    }
}

/// Returns when SIGINT/SIGTERM arrives or at `deadline`.
fn wait_for_stop(set: &libc::sigset_t, deadline: Option<Instant>) {
    loop {
        let wait = match deadline {
            Some(d) => match d.checked_duration_since(Instant::now()) {
                Some(left) => left.min(Duration::from_secs(1)),
                None => return,
            },
            None => Duration::from_secs(1),
        };
        let ts = libc::timespec {
            tv_sec: wait.as_secs() as libc::time_t,
            tv_nsec: wait.subsec_nanos() as libc::c_long,
        };
        // SAFETY: `set` is an initialized signal set and `ts` a valid timespec, both alive for
        // the call; a null siginfo pointer is allowed.
        let sig = unsafe { libc::sigtimedwait(set, std::ptr::null_mut(), &ts) };
        if sig == libc::SIGINT || sig == libc::SIGTERM {
            return;
        }
    }
}

/// The type of the canned body.
fn content_type(cfg: &UpstreamConfig) -> &'static str {
    if cfg.json || cfg.body_text.is_some() {
        "application/json"
    } else {
        "text/plain"
    }
}

/// A JSON array of product records, about `size` bytes (at least one record): ids, names,
/// prices, tags and descriptions drawn from small word lists by a fixed LCG, so it compresses
/// like a real catalogue answer (not like one repeated byte) and is the same on every run.
pub fn json_body(size: usize) -> Vec<u8> {
    const WORDS: &[&str] = &[
        "alpine", "basalt", "cedar", "delta", "ember", "fjord", "granite", "harbor", "indigo",
        "juniper", "kestrel", "lagoon", "meadow", "nimbus", "orchid", "prairie", "quartz", "raven",
        "sierra", "tundra", "umber", "valley", "willow", "xenon", "yarrow", "zephyr",
    ];
    const TAGS: &[&str] = &["new", "sale", "eco", "limited", "bundle", "outlet", "gift"];
    let mut seed: u64 = 0x2545_f491;
    let mut next = |n: usize| {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((seed >> 33) as usize) % n
    };
    let mut out = String::with_capacity(size + 256);
    out.push('[');
    let mut id = 1000;
    loop {
        if out.len() > 1 {
            out.push(',');
        }
        id += 1 + next(7);
        let name = format!("{} {}", WORDS[next(WORDS.len())], WORDS[next(WORDS.len())]);
        let mut desc = String::new();
        for i in 0..(8 + next(10)) {
            if i > 0 {
                desc.push(' ');
            }
            desc.push_str(WORDS[next(WORDS.len())]);
        }
        let tags: Vec<String> = (0..1 + next(3))
            .map(|_| format!("\"{}\"", TAGS[next(TAGS.len())]))
            .collect();
        out.push_str(&format!(
            "{{\"id\":{id},\"name\":\"{name}\",\"price\":{}.{:02},\"stock\":{},\"tags\":[{}],\"description\":\"{desc}\"}}",
            1 + next(500),
            next(100),
            next(1000),
            tags.join(",")
        ));
        if out.len() + 1 >= size {
            break;
        }
    }
    out.push(']');
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(s: &str) -> Result<Option<RequestHead>, ()> {
        parse_request(s.as_bytes())
    }

    #[test]
    fn plain_get_keeps_alive() {
        let h = req("GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap().unwrap();
        assert_eq!(h.framing, Framing::Length(0));
        assert!(!h.close && !h.count && !h.head_only);
        assert_eq!(h.len, 27);
        assert_eq!(req("GET / HTTP/1.1\r\nHost:"), Ok(None));
    }

    #[test]
    fn bodies_and_connection_handling() {
        let h = req("POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(h.framing, Framing::Length(5));
        let h = req("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(h.framing, Framing::Chunked);
        assert!(h.close);
        let h = req("GET / HTTP/1.0\r\n\r\n").unwrap().unwrap();
        assert!(h.close && h.http10);
        let h = req("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(!h.close);
        let h = req("HEAD /__count HTTP/1.1\r\n\r\n").unwrap().unwrap();
        assert!(h.head_only && h.count);
    }

    #[test]
    fn ambiguous_framing_is_rejected() {
        assert!(
            req("POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n")
                .is_err()
        );
        assert!(req("POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n").is_err());
        assert!(req("POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n").is_err());
        assert!(req("POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n").is_err());
        assert!(req("garbage\r\n\r\n").is_err());
    }

    #[test]
    fn fault_switch_turns_every_answer_into_503_and_back() {
        let body = b"ok".to_vec();
        let ctx = ServerCtx {
            ok: Canned::new("200 OK", None, "text/plain", &body),
            ok_close: Canned::new("200 OK", Some("close"), "text/plain", &body),
            ok_keep_alive: Canned::new("200 OK", Some("keep-alive"), "text/plain", &body),
            bad_request: Canned::new("400 Bad Request", Some("close"), "text/plain", b""),
            delay: Duration::ZERO,
            served: Arc::new(vec![Served::default()]),
            idx: 0,
            failing: Arc::default(),
            fail: Canned::new("503 Service Unavailable", None, "text/plain", b"fault\n"),
        };
        let answer = |path: &str| {
            let h = req(&format!("GET {path} HTTP/1.1\r\n\r\n"))
                .unwrap()
                .unwrap();
            let mut out = Vec::new();
            respond(&ctx, &h, &mut out);
            String::from_utf8(out).unwrap()
        };
        assert!(answer("/x").starts_with("HTTP/1.1 200"));
        assert!(answer("/__fault/on").starts_with("HTTP/1.1 200"));
        assert!(answer("/x").starts_with("HTTP/1.1 503"));
        assert!(answer("/__fault/off").starts_with("HTTP/1.1 200"));
        assert!(answer("/x").starts_with("HTTP/1.1 200"));
        assert_eq!(total(&ctx.served), 3, "switch requests are not counted");
    }

    #[test]
    fn canned_responses() {
        let c = Canned::new("200 OK", Some("close"), "text/plain", b"hello");
        let mut out = Vec::new();
        c.write_to(&mut out, false);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(text.contains("Content-Length: 5\r\nConnection: close\r\n\r\nhello"));
        let mut out = Vec::new();
        c.write_to(&mut out, true);
        assert!(out.ends_with(b"\r\n\r\n"));
    }
}

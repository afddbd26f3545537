//! Upstream failures and balancing as a client sees them: refused, closed, reset and garbage
//! responses become 502s; bad targets are backed off; round-robin and weights split traffic;
//! keep-alive pools reuse connections and survive upstreams that close them.
mod common;
use common::*;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------
// Helpers

/// A raw upstream: `handler` gets each accepted connection (timeouts set) in its own thread.
struct RawServer {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Drop for RawServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn raw_server_on<F>(l: TcpListener, handler: F) -> RawServer
where
    F: Fn(TcpStream) + Send + Sync + 'static,
{
    let addr = l.local_addr().unwrap();
    l.set_nonblocking(true).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let accepted = Arc::new(AtomicUsize::new(0));
    let (st, acc) = (stop.clone(), accepted.clone());
    let handler = Arc::new(handler);
    thread::spawn(move || {
        while !st.load(Ordering::Relaxed) {
            match l.accept() {
                Ok((s, _)) => {
                    acc.fetch_add(1, Ordering::SeqCst);
                    s.set_nonblocking(false).unwrap();
                    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                    s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
                    let h = handler.clone();
                    thread::spawn(move || h(s));
                }
                Err(_) => thread::sleep(Duration::from_millis(2)),
            }
        }
    });
    RawServer {
        addr,
        accepted,
        stop,
    }
}

fn raw_server<F>(handler: F) -> RawServer
where
    F: Fn(TcpStream) + Send + Sync + 'static,
{
    raw_server_on(TcpListener::bind("127.0.0.1:0").unwrap(), handler)
}

/// Reads a request head (the gateway only sends bodies we do not care about here).
fn read_req_head(s: &TcpStream) -> Option<String> {
    let mut r = BufReader::new(s);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        match r.read_line(&mut line) {
            Ok(0) | Err(_) => return None,
            Ok(_) => {}
        }
        head.push_str(&line);
        if line == "\r\n" {
            return Some(head);
        }
    }
}

/// Closes `s` with an RST instead of a FIN (SO_LINGER on, zero timeout).
fn reset(s: TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt on a socket we own with a correctly sized `linger` value.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &linger as *const libc::linger as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "setsockopt(SO_LINGER)");
    drop(s);
}

fn gateway(upstreams: &str, extra: &str) -> Gateway {
    Gateway::start(&format!(
        "{upstreams}{extra}\n[[routes]]\nname = \"p\"\nprefix = \"/p\"\nproxy = {{ upstream = \"be\" }}\n\n\
         [[routes]]\nname = \"s\"\npath = \"/s\"\nstatic = {{ body = \"static-ok\" }}\n"
    ))
}

/// The same gateway with one worker, so that consecutive client connections share one pool.
fn gateway_one_worker(upstreams: &str) -> Gateway {
    Gateway::start_workers(
        &format!(
            "{upstreams}\n[[routes]]\nname = \"p\"\nprefix = \"/p\"\nproxy = {{ upstream = \"be\" }}\n"
        ),
        1,
    )
}

/// Polls `cond` until it holds; panics naming `what` after a generous deadline.
fn wait_for(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(5));
    }
}

fn assert_502(r: &Response, code: &str) {
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(
        r.text().contains(code),
        "expected code {code}: {}",
        r.text()
    );
    assert_eq!(
        r.header("content-type"),
        Some("application/problem+json"),
        "{:?}",
        r.headers
    );
}

/// Counts requests per X-Upstream label across `n` fresh-connection GETs.
fn tally(addr: SocketAddr, n: usize) -> std::collections::HashMap<String, usize> {
    let mut m = std::collections::HashMap::new();
    for _ in 0..n {
        let r = get(addr, "/p");
        assert_eq!(r.status, 200, "{}", r.text());
        *m.entry(r.header("x-upstream").unwrap_or("?").to_string())
            .or_insert(0) += 1;
    }
    m
}

// ---------------------------------------------------------------------------------------
// Failures

#[test]
fn refused_connection_is_502_fast() {
    let port = free_port(); // bound then released: nothing listens there
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let gw = gateway(
        &format!(
            "{}connect_timeout = \"60s\"\n",
            upstream_toml("be", &[addr])
        ),
        "",
    );
    let t = Instant::now();
    let r = get(gw.addr, "/p");
    // Not a performance bound: a refusal answers at once (milliseconds), while waiting for the
    // 60 s connect timeout would exceed the client's own 10 s read timeout. The margin is wide
    // for a loaded machine.
    assert!(
        t.elapsed() < Duration::from_secs(30),
        "took {:?}",
        t.elapsed()
    );
    assert_502(&r, "upstream_connect_failed");
    // The error response keeps the client connection usable.
    let mut c = Conn::open(gw.addr);
    let r = c.request("GET", "/p", &[], b"");
    assert!(r.status == 502 || r.status == 503, "{}", r.status);
    assert_eq!(c.request("GET", "/s", &[], b"").text(), "static-ok");
    assert!(gw.logs().contains("connect failed"), "{}", gw.logs());
}

#[test]
fn backed_off_target_recovers_when_it_comes_back() {
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let gw = gateway(
        &format!("{}backoff = \"300ms\"\n", upstream_toml("be", &[addr])),
        "",
    );
    // Hit both workers a few times while nothing listens.
    for _ in 0..4 {
        let r = get(gw.addr, "/p");
        assert!(
            r.status == 502 || r.status == 503,
            "{} {}",
            r.status,
            r.text()
        );
    }
    let Ok(l) = TcpListener::bind(addr) else {
        eprintln!("port {port} was taken meanwhile; skipping the recovery half");
        return;
    };
    let up = raw_server_on(l, |s| {
        while read_req_head(&s).is_some() {
            if (&s)
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nback")
                .is_err()
            {
                return;
            }
        }
    });
    thread::sleep(Duration::from_millis(400));
    for i in 0..6 {
        let r = get(gw.addr, "/p");
        assert_eq!(r.status, 200, "request {i} after recovery: {}", r.text());
        assert_eq!(r.text(), "back");
    }
    assert!(up.accepted.load(Ordering::SeqCst) >= 1);
}

#[test]
fn upstream_closing_without_response_is_502() {
    let up = Upstream::start(Arc::new(|_req, _s| Reply::Close));
    let gw = gateway(&upstream_toml("be", &[up.addr]), "");
    let r = get(gw.addr, "/p/x");
    assert_502(&r, "upstream_closed");
    assert!(up.count() >= 1, "upstream never got the request");
}

#[test]
fn upstream_reset_is_502() {
    let up = raw_server(|s| {
        if read_req_head(&s).is_some() {
            reset(s);
        }
    });
    let gw = gateway(&upstream_toml("be", &[up.addr]), "");
    let r = get(gw.addr, "/p");
    assert_eq!(r.status, 502, "{}", r.text());
    // Gateway still healthy.
    assert_eq!(get(gw.addr, "/s").status, 200);
}

#[test]
fn upstream_reset_mid_body_truncates_client_response() {
    let up = raw_server(|mut s| {
        if read_req_head(&s).is_some() {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n");
            let _ = s.write_all(&[b'x'; 1000]);
            let _ = s.flush();
            thread::sleep(Duration::from_millis(100));
            reset(s);
        }
    });
    let gw = gateway(&upstream_toml("be", &[up.addr]), "");
    let mut c = Conn::open(gw.addr);
    c.send(b"GET /p HTTP/1.1\r\nHost: t\r\n\r\n");
    let t = Instant::now();
    let res = c.read_response(false);
    assert!(res.is_err(), "a truncated body was delivered as complete");
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "client hung {:?}",
        t.elapsed()
    );
    assert!(c.is_closed(Duration::from_secs(2)));
}

#[test]
fn garbage_responses_are_502() {
    let cases: Vec<&'static [u8]> = vec![
        b"HELLO THERE\r\n\r\n",
        b"HTTP/1.1 2OO OK\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        b"HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\nhello",
        b"HTTP/1.1 200 OK\r\nBad Header: x\r\nContent-Length: 0\r\n\r\n",
        b"\x00\x01\x02\x03 binary junk\r\n\r\n",
        // RFC 9110 15: no status past 599 means anything to a client or cache.
        b"HTTP/1.1 600 X\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 999 X\r\nContent-Length: 0\r\n\r\n",
    ];
    for case in cases {
        let up = raw_server(move |mut s| {
            if read_req_head(&s).is_some() {
                let _ = s.write_all(case);
                let _ = s.flush();
                thread::sleep(Duration::from_millis(300));
            }
        });
        let gw = gateway(&upstream_toml("be", &[up.addr]), "");
        let r = get(gw.addr, "/p");
        assert_eq!(
            r.status,
            502,
            "upstream sent {:?}; client got {} {}",
            String::from_utf8_lossy(case),
            r.status,
            r.text()
        );
        assert!(r.text().contains("upstream_bad_response"), "{}", r.text());
    }
}

#[test]
fn non_chunked_response_transfer_coding_is_not_silently_dropped() {
    // RFC 9112 6.3: a response whose final coding is not chunked runs to close. The gateway may
    // reject it (502) or pass the coding on, but must not strip `gzip` and hand the client
    // compressed bytes labelled as plain.
    let up = raw_server(|mut s| {
        if read_req_head(&s).is_some() {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n\x1f\x8bzz");
        }
    });
    let gw = gateway(&upstream_toml("be", &[up.addr]), "");
    let r = get(gw.addr, "/p");
    // ringway refuses such a response (502) rather than stripping or passing on the coding.
    assert_eq!(r.status, 502, "{:?}", r.headers);
}

/// A broken chunk in the upstream's body is never delivered as a complete response. When no
/// byte of the response has left yet (the bad chunk came in the same read as the head), the
/// client gets a 502; once part of the body is out, the client's response is cut short (no
/// last chunk) and the connection closes.
#[test]
fn bad_chunk_in_upstream_body_is_a_502_or_a_truncated_response() {
    for pause in [Duration::ZERO, Duration::from_millis(300)] {
        let up = raw_server(move |mut s| {
            if read_req_head(&s).is_some() {
                let head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n";
                let bad = b"ZZ\r\nbroken\r\n0\r\n\r\n";
                if pause.is_zero() {
                    // One write: the gateway reads the bad chunk with the head.
                    let _ = s.write_all(&[&head[..], &bad[..]].concat());
                } else {
                    let _ = s.write_all(head);
                    thread::sleep(pause);
                    let _ = s.write_all(bad);
                }
                thread::sleep(Duration::from_millis(500));
            }
        });
        let gw = gateway(&upstream_toml("be", &[up.addr]), "");
        let mut c = Conn::open(gw.addr);
        c.send(b"GET /p HTTP/1.1\r\nHost: t\r\n\r\n");
        let res = c.read_response(false);
        if pause.is_zero() {
            let r = res.expect("an answer");
            assert_eq!(r.status, 502, "{r:?}");
            assert!(r.text().contains("upstream_aborted"), "{}", r.text());
        } else {
            assert!(
                res.is_err(),
                "broken upstream framing delivered as complete: {res:?}"
            );
        }
        assert!(c.is_closed(Duration::from_secs(2)), "pause {pause:?}");
    }
}

#[test]
fn upstream_failure_after_streamed_body_does_not_desync_pipelined_request() {
    // The request body arrives in a separate segment together with a pipelined GET. The
    // upstream reads the body and closes without answering: the client must get a 502 and
    // then either the pipelined GET's answer or a closed connection, never a parse of the
    // middle of the second request.
    let head_seen = Arc::new(AtomicBool::new(false));
    let seen = head_seen.clone();
    let up = raw_server(move |s| {
        if read_req_head(&s).is_some() {
            seen.store(true, Ordering::SeqCst);
            let mut body = vec![0u8; 70_000];
            let _ = (&s).read_exact(&mut body);
        }
        // Dropped without an answer.
    });
    let gw = gateway(&upstream_toml("be", &[up.addr]), "");
    let mut c = Conn::open(gw.addr);
    // Over 64 KiB: gathered no more, so streamed (a shorter body is held whole first).
    let body = "b".repeat(70_000);
    c.send(
        format!(
            "POST /p HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    // The gateway streams this body: it forwards the head first. Once the upstream has it,
    // the body is certainly a separate segment.
    wait_for("the request head at the upstream", || {
        head_seen.load(Ordering::SeqCst)
    });
    c.send(
        format!(
            "{body}GET /s HTTP/1.1\r\nHost: t\r\nX-Pad: {}\r\n\r\n",
            "p".repeat(40)
        )
        .as_bytes(),
    );
    let r = c.read_response(false).expect("502 for the POST");
    assert_eq!(r.status, 502, "{}", r.text());
    match c.read_response(false) {
        Ok(r2) => assert_eq!(
            (r2.status, r2.text()),
            (200, "static-ok".to_string()),
            "pipelined request after a failed streamed body was misparsed"
        ),
        Err(_) => {
            // Closing is acceptable; but it must then be announced or at least be a close.
            assert_eq!(r.header("connection"), Some("close"), "{:?}", r.headers);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Balancing and back-off

#[test]
fn refusing_target_is_backed_off_and_good_one_serves_everything() {
    let good = Upstream::fixed(200, "good", "good");
    let dead: SocketAddr = format!("127.0.0.1:{}", refused_port()).parse().unwrap();
    let gw = gateway(&upstream_toml("be", &[dead, good.addr]), "");
    for i in 0..20 {
        let r = get(gw.addr, "/p");
        assert_eq!(r.status, 200, "request {i}: {}", r.text());
        assert_eq!(r.text(), "good");
    }
    assert_eq!(good.count(), 20);
    // One refused connect per worker at most, then the target is skipped.
    let warns = gw.log_count("connect failed");
    assert!(
        (1..=2).contains(&warns),
        "{warns} connect failures logged:\n{}",
        gw.logs()
    );
}

#[test]
fn round_robin_splits_evenly() {
    let a = Upstream::fixed(200, "a", "a");
    let b = Upstream::fixed(200, "b", "b");
    let gw = gateway(&upstream_toml("be", &[a.addr, b.addr]), "");
    let t = tally(gw.addr, 40);
    let (na, nb) = (
        t.get("a").copied().unwrap_or(0),
        t.get("b").copied().unwrap_or(0),
    );
    assert_eq!(na + nb, 40, "{t:?}");
    // Each of the 2 workers alternates strictly, so the totals differ by at most 2.
    assert!(na.abs_diff(nb) <= 2, "uneven split {t:?}");
    assert_eq!((a.count(), b.count()), (na, nb));
}

#[test]
fn round_robin_on_one_keepalive_connection_alternates_exactly() {
    let a = Upstream::fixed(200, "a", "a");
    let b = Upstream::fixed(200, "b", "b");
    let gw = gateway(&upstream_toml("be", &[a.addr, b.addr]), "");
    let mut c = Conn::open(gw.addr);
    let labels: Vec<String> = (0..10)
        .map(|_| c.request("GET", "/p", &[], b"").text())
        .collect();
    for w in labels.windows(2) {
        assert_ne!(w[0], w[1], "one worker must alternate: {labels:?}");
    }
}

#[test]
fn weighted_targets_split_three_to_one() {
    let a = Upstream::fixed(200, "heavy", "heavy");
    let b = Upstream::fixed(200, "light", "light");
    let gw = gateway(
        &format!(
            "[upstreams.be]\ntargets = [{{ address = \"{}\", weight = 3 }}, {{ address = \"{}\", weight = 1 }}]\n",
            a.addr, b.addr
        ),
        "",
    );
    let t = tally(gw.addr, 40);
    let heavy = t.get("heavy").copied().unwrap_or(0);
    let light = t.get("light").copied().unwrap_or(0);
    assert_eq!(heavy + light, 40, "{t:?}");
    // Smooth WRR per worker: any prefix is within one pick of 3:1, so 2 workers give 28..=32.
    assert!((28..=32).contains(&heavy), "weighted split off: {t:?}");
}

// ---------------------------------------------------------------------------------------
// Pooling

#[test]
fn keepalive_pool_reuses_upstream_connections() {
    let up = Upstream::echo();
    let gw = gateway(&upstream_toml("be", &[up.addr]), "");
    let mut c = Conn::open(gw.addr);
    for i in 0..20 {
        let r = c.request("GET", &format!("/p/{i}"), &[], b"");
        assert_eq!(r.status, 200);
    }
    let conns = up.connections.load(Ordering::SeqCst);
    assert!(conns <= 2, "20 requests used {conns} upstream connections");
    // Fresh client connections share the pool too (at most one upstream conn per worker).
    for _ in 0..20 {
        assert_eq!(get(gw.addr, "/p").status, 200);
    }
    let conns = up.connections.load(Ordering::SeqCst);
    assert!(conns <= 4, "40 requests used {conns} upstream connections");
}

#[test]
fn max_idle_zero_disables_pooling() {
    let up = Upstream::echo();
    let gw = gateway(
        &format!("{}max_idle = 0\n", upstream_toml("be", &[up.addr])),
        "",
    );
    let mut c = Conn::open(gw.addr);
    for _ in 0..5 {
        assert_eq!(c.request("GET", "/p", &[], b"").status, 200);
    }
    // The accept thread counts a connection before its handler answers: the count is final.
    assert_eq!(up.connections.load(Ordering::SeqCst), 5);
}

#[test]
fn upstream_connection_close_responses_are_not_pooled() {
    // The upstream says `Connection: close` but leaves its socket open and keeps answering:
    // only the gateway's own rule can keep the connection out of the pool. (Had the upstream
    // closed, a pooled dead connection would be retried silently and the test could not fail.)
    let reuses = Arc::new(AtomicUsize::new(0));
    let seen = reuses.clone();
    let up = raw_server(move |mut s| {
        let mut n = 0;
        while read_req_head(&s).is_some() {
            n += 1;
            if n > 1 {
                seen.fetch_add(1, Ordering::SeqCst);
            }
            if s.write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok")
                .is_err()
            {
                return;
            }
        }
    });
    let gw = gateway(&upstream_toml("be", &[up.addr]), "");
    let mut c = Conn::open(gw.addr);
    for i in 0..20 {
        let r = c.request("GET", "/p", &[], b"");
        assert_eq!(r.status, 200, "request {i}: {}", r.text());
        assert_eq!(r.text(), "ok");
        // The upstream's Connection: close is hop-by-hop: the client connection stays open.
        assert_ne!(r.header("connection"), Some("close"));
    }
    // Counted before the answer that the client already has: final.
    assert_eq!(
        reuses.load(Ordering::SeqCst),
        0,
        "a request went on a connection after its Connection: close response"
    );
    assert_eq!(up.accepted.load(Ordering::SeqCst), 20);
}

#[test]
fn upstream_silently_closing_pooled_connections_is_retried_for_gets() {
    // Responds keep-alive style but closes right after: every pooled connection goes stale.
    let up = Upstream::start(Arc::new(|_req, s| {
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        Reply::Close
    }));
    let gw = gateway(&upstream_toml("be", &[up.addr]), "");
    let mut c = Conn::open(gw.addr);
    let mut failures = Vec::new();
    for i in 0..30 {
        if i % 3 == 0 {
            // Let the FIN arrive before reuse on some requests; race it on others.
            thread::sleep(Duration::from_millis(20));
        }
        let method = if i % 2 == 0 { "GET" } else { "HEAD" };
        let r = c.request(method, "/p", &[], b"");
        if r.status != 200 {
            failures.push((i, r.status, r.text()));
        }
    }
    assert!(
        failures.is_empty(),
        "stale pooled connections leaked errors: {failures:?}"
    );
    assert_eq!(up.count(), 30);
}

#[test]
fn upstream_idle_closing_pool_with_fresh_client_connections() {
    // Same, but each request on its own client connection and spaced out, like real traffic.
    let up = Upstream::start(Arc::new(|_req, s| {
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        Reply::Close
    }));
    let gw = gateway(&upstream_toml("be", &[up.addr]), "");
    for i in 0..20 {
        let r = get(gw.addr, "/p");
        assert_eq!(r.status, 200, "request {i}: {}", r.text());
        thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn slow_upstream_on_one_connection_does_not_block_others() {
    // The slow request is held at the upstream until the fast ones are done: if they waited
    // for it, they would time out. No wall-clock bound.
    let release = Arc::new(AtomicBool::new(false));
    let held = release.clone();
    let up = Upstream::start(Arc::new(move |req, s| {
        if req.target.contains("slow") {
            let deadline = Instant::now() + Duration::from_secs(60);
            while !held.load(Ordering::SeqCst) && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(5));
            }
        }
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        Reply::KeepAlive
    }));
    let gw = Gateway::start_workers(
        &format!(
            "{}response_timeout = \"90s\"\n\n[[routes]]\nname = \"p\"\nprefix = \"/p\"\nproxy = {{ upstream = \"be\" }}\n",
            upstream_toml("be", &[up.addr])
        ),
        1,
    );
    let addr = gw.addr;
    let slow = thread::spawn(move || get(addr, "/p/slow").status);
    wait_for("the slow request at the upstream", || {
        up.requests().iter().any(|r| r.target.contains("slow"))
    });
    for _ in 0..5 {
        assert_eq!(get(gw.addr, "/p/fast").status, 200);
    }
    assert!(
        !slow.is_finished(),
        "the slow request finished before it was released"
    );
    release.store(true, Ordering::SeqCst);
    assert_eq!(slow.join().unwrap(), 200);
}

#[test]
fn post_after_upstream_closed_idle_connection_succeeds() {
    // The upstream closes each connection right after answering (without saying so). By the
    // time the next POST comes, the FIN has long arrived: a pooled connection known to be
    // closed must not be used for a request that cannot be retried.
    let up = Upstream::start(Arc::new(|_req, s| {
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        Reply::Close
    }));
    let gw = gateway(&upstream_toml("be", &[up.addr]), "");
    let mut c = Conn::open(gw.addr);
    let mut failures = Vec::new();
    for i in 0..10 {
        thread::sleep(Duration::from_millis(50));
        let r = c.request("POST", "/p", &[], b"payload");
        if r.status != 200 {
            failures.push((i, r.status));
        }
    }
    assert!(
        failures.is_empty(),
        "POSTs failed on dead pooled connections: {failures:?}"
    );
}

/// An upstream that (wrongly) sends a body after its HEAD response must not corrupt the next
/// request: the connection is not pooled after HEAD, so the stray bytes die with it.
#[test]
fn stray_body_after_head_response_does_not_leak_into_the_next_request() {
    let up = Upstream::start(std::sync::Arc::new(|req, s| {
        use std::io::Write;
        let _ = write!(s, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n");
        let _ = s.flush();
        if req.method == "HEAD" {
            // The body a HEAD response must not have, arriving a little later.
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = s.write_all(b"hello");
        Reply::KeepAlive
    }));
    let gw = gateway(&upstream_toml("be", &[up.addr]), "");
    let mut c = Conn::open(gw.addr);
    let r = c.request("HEAD", "/p", &[], b"");
    assert_eq!(r.status, 200);
    std::thread::sleep(Duration::from_millis(100));
    for _ in 0..3 {
        // The stray body reached the gateway after the HEAD response ended: the next request
        // must go on a fresh connection and get its own answer.
        let r = c.request("GET", "/p", &[], b"");
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.text(), "hello");
    }
}

// ---------------------------------------------------------------------------------------
// Pool safety: a pooled connection with anything to read never carries another request

#[test]
fn interim_responses_before_the_final_one_are_dropped() {
    let up = raw_server(|mut s| {
        if read_req_head(&s).is_some() {
            let _ = s.write_all(
                b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 102 Processing\r\n\r\n\
                  HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n\
                  HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfinal",
            );
            thread::sleep(Duration::from_millis(300));
        }
    });
    let gw = gateway(&upstream_toml("be", &[up.addr]), "");
    let r = get(gw.addr, "/p");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "final");
}

#[test]
fn an_endless_stream_of_interim_responses_is_a_502_not_a_wait() {
    // A hostile upstream answers with `100 Continue` over and over. Interim responses are
    // read and dropped; without a bound the exchange stayed on them until the response
    // deadline (30 s), past this client's 10 s read timeout, burning the worker's CPU.
    let writes = Arc::new(AtomicUsize::new(0));
    let w = writes.clone();
    let up = raw_server(move |mut s| {
        if read_req_head(&s).is_some() {
            let until = Instant::now() + Duration::from_secs(20);
            while Instant::now() < until && s.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").is_ok() {
                w.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    let gw = gateway(&upstream_toml("be", &[up.addr]), "");
    let r = get(gw.addr, "/p");
    assert_502(&r, "upstream_bad_response");
    // The gateway closed the connection: the upstream's writes fail soon after.
    let seen = writes.load(Ordering::Relaxed);
    assert!(
        seen > 32,
        "the upstream wrote only {seen} interim responses"
    );
    wait_for("the upstream's writes to fail", || {
        let a = writes.load(Ordering::Relaxed);
        thread::sleep(Duration::from_millis(200));
        writes.load(Ordering::Relaxed) == a
    });
}

/// An upstream that answers on its first connection with `first` (after reading one request
/// head), sets `written` and then only reads; every later connection answers `fresh`.
fn stray_upstream(first: &'static [&'static [u8]], written: Arc<AtomicBool>) -> RawServer {
    stray_upstream_logged(first, written, Arc::default())
}

/// `stray_upstream`, keeping the request lines that reach the first connection after its
/// answer in `late`, then "(closed)" when the gateway closes it.
fn stray_upstream_logged(
    first: &'static [&'static [u8]],
    written: Arc<AtomicBool>,
    late: Arc<std::sync::Mutex<Vec<String>>>,
) -> RawServer {
    let conn_no = Arc::new(AtomicUsize::new(0));
    raw_server(move |mut s| {
        if conn_no.fetch_add(1, Ordering::SeqCst) == 0 {
            if read_req_head(&s).is_none() {
                return;
            }
            for (i, part) in first.iter().enumerate() {
                if i > 0 {
                    thread::sleep(Duration::from_millis(50));
                }
                if s.write_all(part).is_err() {
                    return;
                }
            }
            written.store(true, Ordering::SeqCst);
            // Whatever arrives on this connection now is not answered.
            while let Some(head) = read_req_head(&s) {
                let line = head.lines().next().unwrap_or_default().to_string();
                late.lock().unwrap().push(line);
            }
            late.lock().unwrap().push("(closed)".into());
            return;
        }
        while read_req_head(&s).is_some() {
            if s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfresh")
                .is_err()
            {
                return;
            }
        }
    })
}

const STRAY: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nSTRAY";

/// Issue 9: an upstream wrote a complete, unsolicited response ~50 ms after a 204 on the
/// same connection. The connection had been pooled just before, and a retryable GET from
/// another client, coming well within a second, used to be sent on it and read "STRAY".
#[test]
fn stray_response_after_204_never_reaches_the_next_client() {
    let written = Arc::new(AtomicBool::new(false));
    let up = stray_upstream(
        &[b"HTTP/1.1 204 No Content\r\n\r\n", STRAY],
        written.clone(),
    );
    let gw = gateway_one_worker(&upstream_toml("be", &[up.addr]));
    let a = get(gw.addr, "/p/a");
    assert_eq!(a.status, 204, "{}", a.text());
    wait_for("the stray response to be written", || {
        written.load(Ordering::SeqCst)
    });
    let b = get(gw.addr, "/p/b");
    assert_eq!(
        (b.status, b.text().as_str()),
        (200, "fresh"),
        "client B got another exchange's bytes"
    );
    assert_eq!(up.accepted.load(Ordering::SeqCst), 2);
}

/// Bytes that follow a complete response (in the same segment or just after) keep the
/// connection out of the pool, whatever the response's framing.
#[test]
fn bytes_after_a_complete_response_prevent_pooling() {
    const HEAD_ANSWER: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n";
    let cases: Vec<(&str, &'static [&'static [u8]])> = vec![
        (
            "GET",
            &[b"HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nSTRAY"],
        ),
        (
            "GET",
            &[b"HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\nSTRAY"],
        ),
        (
            "GET",
            &[b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nSTRAY"],
        ),
        (
            "GET",
            &[b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n", STRAY],
        ),
        // A 204 announcing a body it must not have; the body follows a little later.
        (
            "GET",
            &[b"HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\n\r\n", b"5\r\nSTRAY\r\n0\r\n\r\n"],
        ),
        ("HEAD", &[HEAD_ANSWER, b"STRAY"]),
    ];
    for (method, first) in cases {
        let what = format!(
            "{method} answered with {:?}",
            first.concat().escape_ascii().to_string()
        );
        let written = Arc::new(AtomicBool::new(false));
        let up = stray_upstream(first, written.clone());
        let gw = gateway_one_worker(&upstream_toml("be", &[up.addr]));
        let mut c = Conn::open(gw.addr);
        c.send(&build_request(method, "/p/a", &[], b""));
        let a = c.read_response(method == "HEAD").expect(&what);
        assert!(a.status < 400, "{what}: {}", a.status);
        wait_for("the stray bytes to be written", || {
            written.load(Ordering::SeqCst)
        });
        let b = get(gw.addr, "/p/b");
        assert_eq!(
            (b.status, b.text().as_str()),
            (200, "fresh"),
            "{what}: the next client got stray bytes"
        );
        assert_eq!(up.accepted.load(Ordering::SeqCst), 2, "{what}");
    }
}

/// A 304 that announces a chunked body it must not have: the upstream may send that body (or
/// anything) later, after the pool's reuse check, so the connection is never pooled. (A 304's
/// Content-Length is the representation's and legitimate; `Transfer-Encoding` is not.)
#[test]
fn a_304_announcing_a_body_is_not_pooled() {
    let written = Arc::new(AtomicBool::new(false));
    let late = Arc::new(std::sync::Mutex::new(Vec::new()));
    let up = stray_upstream_logged(
        &[b"HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n"],
        written.clone(),
        late.clone(),
    );
    let gw = gateway_one_worker(&upstream_toml("be", &[up.addr]));
    assert_eq!(get(gw.addr, "/p/a").status, 304);
    let b = get(gw.addr, "/p/b");
    assert_eq!((b.status, b.text().as_str()), (200, "fresh"));
    wait_for("the 304's connection to be closed", || {
        late.lock().unwrap().last().is_some_and(|l| l == "(closed)")
    });
    assert_eq!(
        *late.lock().unwrap(),
        ["(closed)"],
        "a request was sent on the connection after the 304"
    );
}

/// The pool's reuse check happens before the request leaves (`upstream::pool`): a POST, which
/// may not be re-sent, never reaches a pooled connection that holds stray bytes, and goes on a
/// fresh one.
#[test]
fn a_post_never_goes_on_a_pooled_connection_holding_stray_bytes() {
    let written = Arc::new(AtomicBool::new(false));
    let late = Arc::new(std::sync::Mutex::new(Vec::new()));
    let up = stray_upstream_logged(
        &[b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", STRAY],
        written.clone(),
        late.clone(),
    );
    let gw = gateway_one_worker(&upstream_toml("be", &[up.addr]));
    let a = get(gw.addr, "/p/a");
    assert_eq!((a.status, a.text().as_str()), (200, "ok"));
    wait_for("the stray response to be written", || {
        written.load(Ordering::SeqCst)
    });
    let mut c = Conn::open(gw.addr);
    let b = c.request("POST", "/p/b", &[], b"payload");
    assert_eq!(
        (b.status, b.text().as_str()),
        (200, "fresh"),
        "the POST got another exchange's bytes"
    );
    assert_eq!(up.accepted.load(Ordering::SeqCst), 2);
    // The gateway dropped the unclean connection: everything sent on it has been read.
    wait_for("the unclean connection to be closed", || {
        late.lock().unwrap().last().is_some_and(|l| l == "(closed)")
    });
    assert_eq!(
        *late.lock().unwrap(),
        ["(closed)"],
        "the POST was sent on the connection holding stray bytes"
    );
}

/// Issue 20: a POST that fails on a pooled connection (the upstream reads it and closes
/// without answering) is answered 502 and never re-sent, neither on that connection nor on a
/// fresh one: the upstream may have acted on it.
#[test]
fn post_failing_on_a_pooled_connection_is_not_retried() {
    let posts = Arc::new(AtomicUsize::new(0));
    let seen = posts.clone();
    let up = raw_server(move |mut s| {
        let mut r = BufReader::new(s.try_clone().unwrap());
        while let Ok(Some(req)) = read_request(&mut r) {
            if req.method == "POST" {
                seen.fetch_add(1, Ordering::SeqCst);
                let _ = s.shutdown(std::net::Shutdown::Both);
                return;
            }
            if s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                .is_err()
            {
                return;
            }
        }
    });
    let gw = gateway_one_worker(&upstream_toml("be", &[up.addr]));
    let mut c = Conn::open(gw.addr);
    assert_eq!(c.request("GET", "/p/warm", &[], b"").text(), "ok");
    let r = c.request("POST", "/p/order", &[], b"payload");
    assert_502(&r, "upstream_closed");
    // Both counters are final: a retry would have had to fail at the upstream (counted there)
    // before the 502 could be sent.
    assert_eq!(posts.load(Ordering::SeqCst), 1, "the POST was re-sent");
    assert_eq!(
        up.accepted.load(Ordering::SeqCst),
        1,
        "the POST did not go on the pooled connection, or was retried on a new one"
    );
}

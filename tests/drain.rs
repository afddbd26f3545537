//! Graceful shutdown: SIGTERM lets in-flight requests finish, refuses new connections, closes
//! idle keep-alive connections at once, and is bounded by `server.drain_timeout`.
//!
//! In-flight requests are held by a `Gate` the test opens, not by an upstream sleep racing the
//! signal; time bounds are generous multiples of the nominal value (the machine may be loaded).
mod common;
use common::*;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

fn slow_upstream(delay: Duration) -> Upstream {
    Upstream::start(Arc::new(move |_req, s| {
        thread::sleep(delay);
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ndone");
        Reply::KeepAlive
    }))
}

/// An upstream that answers "done" only once `gate` is opened (or after 60 s).
fn gated_upstream(gate: &Gate) -> Upstream {
    let gate = gate.clone();
    Upstream::start(Arc::new(move |_req, s| {
        gate.wait(Duration::from_secs(60));
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ndone");
        Reply::KeepAlive
    }))
}

fn config(up: SocketAddr, server: &str) -> String {
    format!(
        "{server}\n{}\n[[routes]]\nname = \"slow\"\nprefix = \"/slow\"\nproxy = {{ upstream = \"be\" }}\n\n\
         [[routes]]\nname = \"s\"\npath = \"/s\"\nstatic = {{ body = \"static-ok\" }}\n",
        upstream_toml("be", &[up])
    )
}

/// True if a brand-new connection cannot get a response: connect fails, or the connection is
/// closed/reset without a status line.
fn new_connection_refused(addr: SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
        return true;
    };
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    if s.write_all(b"GET /s HTTP/1.1\r\nHost: t\r\n\r\n").is_err() {
        return true;
    }
    let mut buf = Vec::new();
    match s.read_to_end(&mut buf) {
        Ok(_) => !String::from_utf8_lossy(&buf).starts_with("HTTP/1.1 200"),
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
    }
}

#[test]
fn sigterm_finishes_in_flight_request_then_exits_zero() {
    let gate = Gate::new();
    let up = gated_upstream(&gate);
    let mut gw = Gateway::start(&config(up.addr, "[server]\ndrain_timeout = \"60s\"\n"));
    assert_eq!(get(gw.addr, "/s").status, 200);

    let addr = gw.addr;
    let inflight = thread::spawn(move || get(addr, "/slow/x"));
    // Make sure the request reached the upstream before the signal.
    wait_until_received(&up);
    gw.signal(libc::SIGTERM);
    gw.wait_log("draining", Duration::from_secs(10));

    // New connections are refused while the old request is still running (it cannot finish
    // before the gate opens). Workers close their listeners just after the log line.
    assert!(
        wait_for(Duration::from_secs(10), || new_connection_refused(addr)).is_some(),
        "new connections were still served during the drain"
    );
    assert!(
        gw.wait_exit(Duration::from_millis(500)).is_none(),
        "exited before the in-flight request finished"
    );
    assert!(!inflight.is_finished(), "in-flight request ended early");

    // Release the response: it completes (so the gateway was alive to write all of it) ...
    let released = Instant::now();
    gate.open();
    let r = inflight.join().unwrap();
    assert_eq!((r.status, r.text()), (200, "done".to_string()));
    assert_eq!(
        r.header("connection"),
        Some("close"),
        "a draining gateway should tell the client it is closing"
    );
    // ... and then the gateway exits 0 without waiting out the 60 s drain_timeout. 30 s is
    // far above the nominal few milliseconds yet still proves the timeout was not waited for.
    let status = gw
        .wait_exit(Duration::from_secs(30))
        .unwrap_or_else(|| panic!("did not exit after the drain; logs:\n{}", gw.logs()));
    assert_eq!(status.code(), Some(0), "logs:\n{}", gw.logs());
    assert!(
        released.elapsed() < Duration::from_secs(30),
        "drain took {:?} after the last response",
        released.elapsed()
    );
}

#[test]
fn drain_with_only_idle_keepalive_connections_is_prompt() {
    let up = slow_upstream(Duration::from_millis(0));
    let mut gw = Gateway::start(&config(up.addr, ""));
    let mut conns: Vec<Conn> = (0..4).map(|_| Conn::open(gw.addr)).collect();
    for c in conns.iter_mut() {
        assert_eq!(c.request("GET", "/s", &[], b"").status, 200);
        assert_eq!(c.request("GET", "/slow", &[], b"").status, 200);
    }
    // One connection that connected but never sent anything.
    let _silent = TcpStream::connect(gw.addr).unwrap();
    thread::sleep(Duration::from_millis(50));
    let t = Instant::now();
    gw.signal(libc::SIGTERM);
    // The default drain_timeout is 30 s; 10 s (far above the nominal ~20 ms) tells them apart.
    let status = gw
        .wait_exit(Duration::from_secs(10))
        .unwrap_or_else(|| panic!("idle connections held the drain open; logs:\n{}", gw.logs()));
    eprintln!("idle drain took {:?}", t.elapsed());
    assert_eq!(status.code(), Some(0));
    for c in conns.iter_mut() {
        assert!(
            c.is_closed(Duration::from_secs(1)),
            "idle connection left open"
        );
    }
}

#[test]
fn drain_timeout_bounds_a_stuck_request() {
    let gate = Gate::new(); // never opened: the request stays stuck
    let up = gated_upstream(&gate);
    let mut gw = Gateway::start(&config(
        up.addr,
        "[server]\ndrain_timeout = \"1s\"\n[timeouts]\nupstream_response = \"120s\"\n",
    ));
    let addr = gw.addr;
    let stuck = thread::spawn(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s.write_all(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).map(|_| buf)
    });
    wait_until_received(&up);
    let t = Instant::now();
    gw.signal(libc::SIGTERM);
    // 10 s is 10x the drain_timeout: generous for a loaded machine, and the stuck request
    // (held for 60 s) would keep an unbounded drain alive far longer.
    let status = gw
        .wait_exit(Duration::from_secs(10))
        .unwrap_or_else(|| panic!("drain_timeout ignored; logs:\n{}", gw.logs()));
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(900),
        "exited after {took:?}, before drain_timeout = 1s"
    );
    assert!(status.code().is_some(), "killed by a signal: {status:?}");
    assert!(gw.logs().contains("drain timeout"), "{}", gw.logs());
    // The stuck client is cut off when the process exits (EOF or reset), not left hanging
    // until its own 30 s read timeout.
    match stuck.join().unwrap() {
        Ok(buf) => assert!(
            !String::from_utf8_lossy(&buf).starts_with("HTTP/1.1 200"),
            "stuck request somehow completed"
        ),
        Err(e) => assert_eq!(
            e.kind(),
            std::io::ErrorKind::ConnectionReset,
            "client was not cut off: {e}"
        ),
    }
}

#[test]
fn second_sigterm_exits_immediately_with_code_1() {
    let gate = Gate::new(); // never opened: the drain cannot finish on its own
    let up = gated_upstream(&gate);
    let mut gw = Gateway::start(&config(up.addr, "[server]\ndrain_timeout = \"120s\"\n"));
    let addr = gw.addr;
    let _stuck = thread::spawn(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let _ = s.write_all(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n");
        let _ = s.read_to_end(&mut Vec::new());
    });
    wait_until_received(&up);
    gw.signal(libc::SIGTERM);
    gw.wait_log("draining", Duration::from_secs(10));
    assert!(
        gw.wait_exit(Duration::from_millis(300)).is_none(),
        "first SIGTERM did not drain"
    );
    gw.signal(libc::SIGTERM);
    // The drain alone would last 60 s (the stuck request) up to 120 s (drain_timeout).
    let status = gw
        .wait_exit(Duration::from_secs(10))
        .unwrap_or_else(|| panic!("second SIGTERM ignored; logs:\n{}", gw.logs()));
    // README: "A second signal exits immediately with code 1."
    assert_eq!(status.code(), Some(1), "logs:\n{}", gw.logs());
    assert!(gw.logs().contains("second stop signal"), "{}", gw.logs());
}

#[test]
fn sigint_drains_like_sigterm() {
    let up = slow_upstream(Duration::from_millis(0));
    let mut gw = Gateway::start(&config(up.addr, ""));
    assert_eq!(get(gw.addr, "/s").status, 200);
    gw.signal(libc::SIGINT);
    // Nothing is in flight: the exit is prompt (10 s, against the default 30 s drain_timeout).
    let status = gw
        .wait_exit(Duration::from_secs(10))
        .unwrap_or_else(|| panic!("SIGINT did not stop the gateway; logs:\n{}", gw.logs()));
    assert_eq!(status.code(), Some(0));
    assert!(gw.logs().contains("draining"), "{}", gw.logs());
}

#[test]
fn keepalive_connection_busy_during_drain_is_closed_after_its_response() {
    let gate = Gate::new();
    let up = gated_upstream(&gate);
    let mut gw = Gateway::start(&config(up.addr, "[server]\ndrain_timeout = \"60s\"\n"));
    let mut c = Conn::open(gw.addr);
    assert_eq!(c.request("GET", "/s", &[], b"").status, 200);
    // Pipeline a held request and a second one behind it, drain, then release the first.
    c.send(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\nGET /s HTTP/1.1\r\nHost: t\r\n\r\n");
    wait_until_received(&up);
    gw.signal(libc::SIGTERM);
    gw.wait_log("draining", Duration::from_secs(10));
    // The line is logged just before the workers are told; once the listener refuses new
    // connections the worker is draining for sure.
    let addr = gw.addr;
    assert!(
        wait_for(Duration::from_secs(10), || new_connection_refused(addr)).is_some(),
        "the worker never started draining"
    );
    gate.open();
    let r = c.read_response(false).expect("in-flight response");
    assert_eq!((r.status, r.text()), (200, "done".to_string()));
    assert_eq!(r.header("connection"), Some("close"));
    // Nothing after it is served; the connection just ends.
    assert!(
        c.read_response(false).is_err(),
        "request after the drain was served"
    );
    let status = gw
        .wait_exit(Duration::from_secs(30))
        .expect("exit after drain");
    assert_eq!(status.code(), Some(0));
}

/// Waits (up to 10 s) until the upstream has received a request, so a signal sent next finds it
/// in flight.
fn wait_until_received(up: &Upstream) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while up.count() == 0 {
        assert!(
            Instant::now() < deadline,
            "request never reached the upstream"
        );
        thread::sleep(Duration::from_millis(10));
    }
}

//! Graceful shutdown: SIGTERM lets in-flight requests finish, refuses new connections, closes
//! idle keep-alive connections at once, and is bounded by `server.drain_timeout`.
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
    let up = slow_upstream(Duration::from_millis(1500));
    let mut gw = Gateway::start(&config(up.addr, "[server]\ndrain_timeout = \"10s\"\n"));
    assert_eq!(get(gw.addr, "/s").status, 200);

    let addr = gw.addr;
    let inflight = thread::spawn(move || {
        let r = get(addr, "/slow/x");
        (r, Instant::now())
    });
    // Make sure the request reached the upstream before the signal.
    wait_until_received(&up);
    let sig_at = Instant::now();
    gw.signal(libc::SIGTERM);
    gw.wait_log("draining", Duration::from_secs(3));
    thread::sleep(Duration::from_millis(200));

    // New connections are refused while the old request is still running.
    assert!(
        new_connection_refused(gw.addr),
        "a new connection was served during the drain"
    );
    assert!(
        gw.wait_exit(Duration::from_millis(100)).is_none(),
        "exited before the in-flight request finished"
    );

    let (r, done_at) = inflight.join().unwrap();
    assert_eq!((r.status, r.text()), (200, "done".to_string()));
    assert_eq!(
        r.header("connection"),
        Some("close"),
        "a draining gateway should tell the client it is closing"
    );
    let status = gw
        .wait_exit(Duration::from_secs(5))
        .unwrap_or_else(|| panic!("did not exit after the drain; logs:\n{}", gw.logs()));
    let exited_at = Instant::now();
    assert_eq!(status.code(), Some(0), "logs:\n{}", gw.logs());
    assert!(exited_at >= done_at, "exited before the response completed");
    assert!(
        exited_at - sig_at < Duration::from_secs(4),
        "drain took {:?}",
        exited_at - sig_at
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
    let status = gw
        .wait_exit(Duration::from_secs(2))
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
    let up = slow_upstream(Duration::from_secs(10));
    let mut gw = Gateway::start(&config(
        up.addr,
        "[server]\ndrain_timeout = \"1s\"\n[timeouts]\nupstream_response = \"30s\"\n",
    ));
    let addr = gw.addr;
    let stuck = thread::spawn(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(8))).unwrap();
        s.write_all(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        let t = Instant::now();
        let mut buf = Vec::new();
        let res = s.read_to_end(&mut buf);
        (res.map(|_| buf), t.elapsed())
    });
    wait_until_received(&up);
    let t = Instant::now();
    gw.signal(libc::SIGTERM);
    let status = gw
        .wait_exit(Duration::from_secs(5))
        .unwrap_or_else(|| panic!("drain_timeout ignored; logs:\n{}", gw.logs()));
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(3),
        "exited after {took:?} with drain_timeout = 1s"
    );
    assert!(status.code().is_some(), "killed by a signal: {status:?}");
    assert!(gw.logs().contains("drain timeout"), "{}", gw.logs());
    // The stuck client is cut off when the process exits, not left hanging.
    let (res, waited) = stuck.join().unwrap();
    assert!(waited < Duration::from_secs(5), "client hung {waited:?}");
    if let Ok(buf) = res {
        assert!(
            !String::from_utf8_lossy(&buf).starts_with("HTTP/1.1 200"),
            "stuck request somehow completed"
        );
    }
}

#[test]
fn second_sigterm_exits_immediately() {
    let up = slow_upstream(Duration::from_secs(10));
    let mut gw = Gateway::start(&config(up.addr, "[server]\ndrain_timeout = \"30s\"\n"));
    let addr = gw.addr;
    let _stuck = thread::spawn(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(8))).unwrap();
        let _ = s.write_all(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n");
        let _ = s.read_to_end(&mut Vec::new());
    });
    wait_until_received(&up);
    gw.signal(libc::SIGTERM);
    gw.wait_log("draining", Duration::from_secs(3));
    assert!(
        gw.wait_exit(Duration::from_millis(300)).is_none(),
        "first SIGTERM did not drain"
    );
    let t = Instant::now();
    gw.signal(libc::SIGTERM);
    let status = gw
        .wait_exit(Duration::from_secs(2))
        .unwrap_or_else(|| panic!("second SIGTERM ignored; logs:\n{}", gw.logs()));
    assert!(t.elapsed() < Duration::from_secs(1));
    assert_ne!(
        status.code(),
        Some(0),
        "a forced exit should not report success"
    );
}

#[test]
fn sigint_drains_like_sigterm() {
    let up = slow_upstream(Duration::from_millis(0));
    let mut gw = Gateway::start(&config(up.addr, ""));
    assert_eq!(get(gw.addr, "/s").status, 200);
    gw.signal(libc::SIGINT);
    let status = gw
        .wait_exit(Duration::from_secs(2))
        .unwrap_or_else(|| panic!("SIGINT did not stop the gateway; logs:\n{}", gw.logs()));
    assert_eq!(status.code(), Some(0));
    assert!(gw.logs().contains("draining"), "{}", gw.logs());
}

#[test]
fn keepalive_connection_busy_during_drain_is_closed_after_its_response() {
    let up = slow_upstream(Duration::from_millis(800));
    let mut gw = Gateway::start(&config(up.addr, "[server]\ndrain_timeout = \"10s\"\n"));
    let mut c = Conn::open(gw.addr);
    assert_eq!(c.request("GET", "/s", &[], b"").status, 200);
    // Pipeline a slow request and a second one behind it, then drain.
    c.send(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\nGET /s HTTP/1.1\r\nHost: t\r\n\r\n");
    wait_until_received(&up);
    gw.signal(libc::SIGTERM);
    let r = c.read_response(false).expect("in-flight response");
    assert_eq!((r.status, r.text()), (200, "done".to_string()));
    assert_eq!(r.header("connection"), Some("close"));
    // Nothing after it is served; the connection just ends.
    assert!(
        c.read_response(false).is_err(),
        "request after the drain was served"
    );
    let status = gw
        .wait_exit(Duration::from_secs(3))
        .expect("exit after drain");
    assert_eq!(status.code(), Some(0));
}

/// Waits (up to 5 s) until the upstream has received a request, so a signal sent next finds it
/// in flight.
fn wait_until_received(up: &Upstream) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while up.count() == 0 {
        assert!(
            Instant::now() < deadline,
            "request never reached the upstream"
        );
        thread::sleep(Duration::from_millis(10));
    }
}

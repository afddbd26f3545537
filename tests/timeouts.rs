//! Timeouts a user notices: slow clients get 408 and are closed, idle keep-alive connections
//! are reaped, silent upstreams yield 504, and a stalled upstream body ends the client
//! connection instead of hanging it.
//!
//! Timeouts here are 500 ms. Lower bounds (a timeout must not fire early) are exact; upper
//! bounds only prove a timeout fires at all and are >= 10x nominal, because the machine running
//! the tests may be heavily loaded. Where the status or error code already proves which timer
//! fired, there is no upper bound at all.
mod common;
use common::*;

use std::io::{BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// How long a test waits for a 500 ms timeout to show: 20x nominal.
const WAIT: Duration = Duration::from_secs(10);

const TIMEOUTS: &str = "[timeouts]\nclient_header = \"500ms\"\nclient_body = \"500ms\"\nkeepalive = \"500ms\"\nupstream_connect = \"500ms\"\nupstream_response = \"500ms\"\nupstream_idle = \"500ms\"\n";

fn static_route() -> &'static str {
    "[[routes]]\nname = \"s\"\nprefix = \"/s\"\nstatic = { body = \"static-ok\" }\n"
}

fn proxy_gateway(up: SocketAddr) -> Gateway {
    Gateway::start(&format!(
        "{TIMEOUTS}\n{}\n[[routes]]\nname = \"p\"\nprefix = \"/p\"\nproxy = {{ upstream = \"be\" }}\n\n{}",
        upstream_toml("be", &[up]),
        static_route()
    ))
}

#[test]
fn half_sent_head_gets_408_and_close() {
    let gw = Gateway::start(&format!("{TIMEOUTS}\n{}", static_route()));
    let mut s = connect(gw.addr);
    s.write_all(b"GET /s HTTP/1.1\r\nHost: t\r\nX-Partial: ye")
        .unwrap();
    let (bytes, eof, took) = read_until_close(&mut s, WAIT);
    let text = String::from_utf8_lossy(&bytes);
    assert_eq!(first_status(&bytes), 408, "{text}");
    assert!(eof, "connection not closed after 408 within {WAIT:?}");
    assert!(
        took >= Duration::from_millis(400),
        "408 after {took:?}, before client_header = 500ms"
    );
}

/// A client that connects and sends nothing is parked (no buffer, no timer of its own) after
/// the short grace; its header deadline still fires: 408, then close, not before the timeout.
#[test]
fn silent_new_connection_gets_408_at_its_header_timeout() {
    let gw = Gateway::start(&format!("{TIMEOUTS}\n{}", static_route()));
    let mut s = connect(gw.addr);
    let (bytes, eof, took) = read_until_close(&mut s, WAIT);
    let text = String::from_utf8_lossy(&bytes);
    assert_eq!(first_status(&bytes), 408, "{text}");
    assert!(eof, "connection not closed after 408 within {WAIT:?}");
    assert!(
        took >= Duration::from_millis(400),
        "408 after {took:?}, before client_header = 500ms"
    );
}

#[test]
fn trickled_head_is_bounded_by_client_header_not_per_read() {
    // Slowloris: one byte every 100ms never completes a head; the head deadline is total. The
    // head below takes ~30 s to trickle, so a per-read deadline would keep the connection open
    // far beyond WAIT (10 s = 20x client_header).
    let gw = Gateway::start(&format!("{TIMEOUTS}\n{}", static_route()));
    let mut s = connect(gw.addr);
    let t = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let mut w = s.try_clone().unwrap();
    let st = stop.clone();
    let trickler = thread::spawn(move || {
        let mut head = b"GET /s HTTP/1.1\r\nHost: t\r\nX-Slow: ".to_vec();
        head.extend_from_slice(&[b'a'; 270]);
        for b in head.iter() {
            if st.load(Ordering::Relaxed) || w.write_all(&[*b]).is_err() {
                return;
            }
            thread::sleep(Duration::from_millis(100));
        }
    });
    let (bytes, eof, _) = read_until_close(&mut s, WAIT);
    let took = t.elapsed();
    stop.store(true, Ordering::Relaxed);
    trickler.join().unwrap();
    assert_eq!(
        first_status(&bytes),
        408,
        "{}",
        String::from_utf8_lossy(&bytes)
    );
    assert!(eof, "trickling client held on for {took:?}");
}

#[test]
fn idle_keepalive_connection_is_closed() {
    let gw = Gateway::start(&format!("{TIMEOUTS}\n{}", static_route()));
    let mut c = Conn::open(gw.addr);
    let r = c.request("GET", "/s", &[], b"");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "static-ok");
    let t = Instant::now();
    assert!(
        c.is_closed(WAIT),
        "idle connection still open after {WAIT:?} (keepalive = 500ms)"
    );
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(300),
        "idle close after {took:?}, before keepalive = 500ms"
    );
}

#[test]
fn keepalive_connection_in_use_survives_past_the_timeout() {
    // Requests spaced well under the keepalive timeout (100 ms gaps, 500 ms timeout) keep one
    // connection alive; once it goes idle the same connection is reaped. Each request on the
    // same `Conn` would fail if the gateway had closed it in between.
    let gw = Gateway::start(&format!("{TIMEOUTS}\n{}", static_route()));
    let mut c = Conn::open(gw.addr);
    for i in 0..15 {
        let r = c.request("GET", "/s", &[], b"");
        assert_eq!(r.status, 200, "request {i}");
        assert_ne!(r.header("connection"), Some("close"), "request {i}");
        thread::sleep(Duration::from_millis(100));
    }
    // The idle timeout is live on this very connection: it was activity that kept it open.
    assert!(c.is_closed(WAIT), "connection never reaped once idle");
}

#[test]
fn silent_upstream_gives_504() {
    let up = Upstream::start(Arc::new(|_req, _s| {
        thread::sleep(Duration::from_secs(30));
        Reply::Close
    }));
    let gw = proxy_gateway(up.addr);
    let t = Instant::now();
    let r = get(gw.addr, "/p/x");
    let took = t.elapsed();
    // The code names the response timer; no upper time bound is needed (the upstream would
    // only close after 30 s, which the client's IO_TIMEOUT of 10 s would not even wait for).
    assert_eq!(r.status, 504, "{}", r.text());
    assert!(r.text().contains("upstream_timeout"), "{}", r.text());
    assert!(
        took >= Duration::from_millis(400),
        "504 after {took:?}, before upstream_response = 500ms"
    );
    // The gateway itself is fine afterwards.
    assert_eq!(get(gw.addr, "/s").status, 200);
}

#[test]
fn per_upstream_response_timeout_overrides_default() {
    let up = Upstream::start(Arc::new(|_req, s| {
        thread::sleep(Duration::from_millis(900));
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nslow");
        Reply::KeepAlive
    }));
    // Default 500ms would fail; the upstream's own 3s allows the 900ms answer.
    let gw = Gateway::start(&format!(
        "{TIMEOUTS}\n{}response_timeout = \"3s\"\n\n[[routes]]\nname = \"p\"\nprefix = \"/p\"\nproxy = {{ upstream = \"be\" }}\n",
        upstream_toml("be", &[up.addr])
    ));
    let r = get(gw.addr, "/p");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "slow");
}

/// A loopback listener with a full accept queue: further SYNs are dropped, so connecting to it
/// hangs until the connector gives up. Returns the address and what keeps it full.
fn blackhole_listener() -> (SocketAddr, OwnedFd, Vec<TcpStream>) {
    // SAFETY: plain socket/bind/listen syscalls on a socket we own; the fd goes into OwnedFd.
    let fd = unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
        assert!(fd >= 0);
        let mut sa: libc::sockaddr_in = std::mem::zeroed();
        sa.sin_family = libc::AF_INET as libc::sa_family_t;
        sa.sin_addr.s_addr = u32::from_ne_bytes([127, 0, 0, 1]);
        sa.sin_port = 0;
        let rc = libc::bind(
            fd,
            &sa as *const libc::sockaddr_in as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        );
        assert_eq!(rc, 0);
        assert_eq!(libc::listen(fd, 0), 0);
        OwnedFd::from_raw_fd(fd)
    };
    let listener = std::net::TcpListener::from(fd.try_clone().unwrap());
    let addr = listener.local_addr().unwrap();
    std::mem::forget(listener); // fd stays owned by `fd`
    let mut fill = Vec::new();
    for _ in 0..8 {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
            Ok(s) => fill.push(s),
            Err(_) => return (addr, fd, fill),
        }
    }
    panic!("could not fill the accept queue of a backlog-0 listener");
}

#[test]
fn upstream_connect_timeout_gives_504() {
    let (addr, _fd, _fill) = blackhole_listener();
    let gw = proxy_gateway(addr);
    let t = Instant::now();
    let r = get(gw.addr, "/p/x");
    let took = t.elapsed();
    assert_eq!(r.status, 504, "{}", r.text());
    assert!(
        r.text().contains("upstream_connect_timeout"),
        "{}",
        r.text()
    );
    // The code names the connect timer, so no upper time bound is needed.
    assert!(
        took >= Duration::from_millis(400),
        "504 after {took:?}, before upstream_connect = 500ms"
    );
}

#[test]
fn stalled_upstream_body_truncates_and_closes_client() {
    // Head says 1000 bytes, 100 arrive, then silence longer than upstream_idle.
    let up = Upstream::start(Arc::new(|_req, s| {
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n");
        let _ = s.write_all(&[b'a'; 100]);
        let _ = s.flush();
        thread::sleep(Duration::from_secs(30));
        Reply::Close
    }));
    let gw = proxy_gateway(up.addr);
    let mut s = connect(gw.addr);
    s.write_all(b"GET /p HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    // The upstream stays silent for 30 s: a close within WAIT (20x upstream_idle) is the
    // gateway's doing.
    let (bytes, eof, took) = read_until_close(&mut s, WAIT);
    let text = String::from_utf8_lossy(&bytes);
    assert_eq!(first_status(&bytes), 200, "{text}");
    assert!(
        eof,
        "client connection hangs on a stalled upstream body ({took:?})"
    );
    let body_start = text.find("\r\n\r\n").unwrap() + 4;
    assert!(
        bytes.len() - body_start < 1000,
        "response claims completeness: {} body bytes",
        bytes.len() - body_start
    );
}

#[test]
fn stalled_chunked_upstream_body_never_gets_a_last_chunk() {
    let up = Upstream::start(Arc::new(|_req, s| {
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n");
        let _ = s.flush();
        thread::sleep(Duration::from_secs(30));
        Reply::Close
    }));
    let gw = proxy_gateway(up.addr);
    let mut s = connect(gw.addr);
    s.write_all(b"GET /p HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let (bytes, eof, took) = read_until_close(&mut s, WAIT);
    let text = String::from_utf8_lossy(&bytes);
    assert_eq!(first_status(&bytes), 200, "{text}");
    assert!(text.contains("hello"), "{text}");
    assert!(
        eof,
        "client connection hangs on a stalled chunked body ({took:?})"
    );
    // A terminating chunk would tell the client the truncated body is complete.
    assert!(
        !text.ends_with("0\r\n\r\n"),
        "truncated body was terminated: {text:?}"
    );
}

#[test]
fn stalled_request_body_gets_408_and_close() {
    let up = Upstream::echo();
    let gw = proxy_gateway(up.addr);
    for path in ["/s", "/p"] {
        let mut s = connect(gw.addr);
        s.write_all(
            format!("POST {path} HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n0123456789")
                .as_bytes(),
        )
        .unwrap();
        let (bytes, eof, took) = read_until_close(&mut s, WAIT);
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            eof,
            "{path}: connection not closed on a stalled body ({took:?})"
        );
        // Nothing of the response has been sent yet (the upstream waits for the body), so the
        // client is told why: 408, then the close.
        assert_eq!(first_status(&bytes), 408, "{path}: {text}");
    }
    // The proxied upstream never got a complete request, nor more than the 10 bytes sent.
    assert_eq!(up.count(), 0, "{:?}", up.requests());
    let raw = up.raw_text();
    let body = raw.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    assert!(
        body.len() <= 10,
        "upstream got body bytes never sent: {raw:?}"
    );
}

#[test]
fn client_that_stops_reading_is_dropped_and_upstream_released() {
    // The upstream pushes 64 MiB; the client reads nothing. After client_body (500ms) of no
    // progress the gateway must give up, which the upstream sees as a failed write.
    let write_failed: Arc<Mutex<Option<Instant>>> = Arc::new(Mutex::new(None));
    let wf = write_failed.clone();
    let up = Upstream::start(Arc::new(move |_req, s| {
        let len = 64usize << 20;
        let _ = write!(s, "HTTP/1.1 200 OK\r\nContent-Length: {len}\r\n\r\n");
        let chunk = vec![b'z'; 64 * 1024];
        let mut sent = 0;
        while sent < len {
            if s.write_all(&chunk).is_err() {
                *wf.lock().unwrap() = Some(Instant::now());
                return Reply::Close;
            }
            sent += chunk.len();
        }
        Reply::Close
    }));
    let gw = proxy_gateway(up.addr);
    let mut s = connect(gw.addr);
    s.write_all(b"GET /p HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let t = Instant::now();
    let deadline = t + Duration::from_secs(8);
    while write_failed.lock().unwrap().is_none() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    let failed_at = *write_failed.lock().unwrap();
    let failed_at = failed_at.unwrap_or_else(|| {
        panic!(
            "upstream still connected {:?} after the client stopped reading",
            t.elapsed()
        )
    });
    eprintln!("upstream released after {:?}", failed_at - t);
    // The client connection was closed too: draining what is buffered ends in EOF.
    let mut r = BufReader::new(s);
    let mut sink = vec![0u8; 1 << 20];
    let mut total = 0usize;
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        match r.read(&mut sink) {
            Ok(0) => break,
            Ok(n) => total += n,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("client never saw the close ({e}) after {total} bytes"),
        }
        assert!(Instant::now() < end, "client connection still streaming");
    }
    assert!(
        total < 64 << 20,
        "client got the whole body ({total} bytes) despite the stall"
    );
}

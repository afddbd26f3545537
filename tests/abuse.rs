//! Abusive clients: slow request bodies (minimum data rate, total body time), slow response
//! readers, idle tunnels, connection floods (per-IP and process-wide caps) and lingering close
//! after an error response (the client reads its 413 instead of a reset).
mod common;
use common::*;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

fn proxy_route(up: SocketAddr) -> String {
    format!(
        "{}\n[[routes]]\nname = \"p\"\nprefix = \"/p\"\nproxy = {{ upstream = \"be\" }}\n\n[[routes]]\nname = \"s\"\nprefix = \"/s\"\nstatic = {{ body = \"static-ok\" }}\n",
        upstream_toml("be", &[up])
    )
}

/// Sends a request head announcing `len` body bytes, then one body byte every `every` on a
/// thread until told to stop or the connection fails.
fn drip_body(addr: SocketAddr, len: usize, every: Duration) -> (TcpStream, Arc<AtomicBool>) {
    let mut s = connect(addr);
    s.write_all(format!("POST /p HTTP/1.1\r\nHost: t\r\nContent-Length: {len}\r\n\r\n").as_bytes())
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let (mut w, st) = (s.try_clone().unwrap(), stop.clone());
    thread::spawn(move || {
        for _ in 0..len {
            if st.load(Ordering::Relaxed) || w.write_all(b"x").is_err() {
                return;
            }
            thread::sleep(every);
        }
    });
    (s, stop)
}

#[test]
fn dripped_body_below_min_rate_gets_408_and_upstream_is_aborted() {
    let up = Upstream::echo();
    let gw = Gateway::start(&format!(
        "[limits]\nmin_data_rate = \"100B\"\ndata_rate_grace = \"1s\"\n[timeouts]\nclient_body = \"5s\"\n{}",
        proxy_route(up.addr)
    ));
    // One byte every 250 ms: every gap is far inside client_body, the rate is 4 B/s.
    let (mut s, stop) = drip_body(gw.addr, 1000, Duration::from_millis(250));
    let (bytes, ended, took) = read_until_close(&mut s, Duration::from_secs(15));
    stop.store(true, Ordering::Relaxed);
    assert_eq!(
        first_status(&bytes),
        408,
        "{}",
        String::from_utf8_lossy(&bytes)
    );
    assert!(ended, "connection still open after the 408");
    assert!(took < Duration::from_secs(10), "closed only after {took:?}");
    // The upstream never saw a complete request: the forwarded request was aborted.
    thread::sleep(Duration::from_millis(300));
    assert_eq!(up.count(), 0, "upstream received a complete request");
    let s = scrape_until(
        gw.admin,
        "ringway_slow_client_closes_total",
        &[("direction", "request_body")],
        1.0,
    );
    assert_eq!(
        metric(
            &s,
            "ringway_slow_client_closes_total",
            &[("direction", "request_body")]
        ),
        Some(1.0)
    );
}

#[test]
fn request_body_total_time_is_bounded() {
    let up = Upstream::echo();
    // No rate minimum: only the whole-body deadline can stop this client.
    let gw = Gateway::start(&format!(
        "[limits]\nmin_data_rate = 0\n[timeouts]\nclient_body = \"5s\"\nclient_body_total = \"1s\"\n{}",
        proxy_route(up.addr)
    ));
    let (mut s, stop) = drip_body(gw.addr, 1000, Duration::from_millis(100));
    let (bytes, ended, took) = read_until_close(&mut s, Duration::from_secs(15));
    stop.store(true, Ordering::Relaxed);
    assert_eq!(
        first_status(&bytes),
        408,
        "{}",
        String::from_utf8_lossy(&bytes)
    );
    assert!(ended && took < Duration::from_secs(8), "took {took:?}");
}

#[test]
fn slow_response_reader_is_closed() {
    // An upstream with an endless (256 MiB) body.
    let up = Upstream::start(Arc::new(|_req, s| {
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 268435456\r\n\r\n");
        let chunk = vec![b'z'; 64 * 1024];
        while s.write_all(&chunk).is_ok() {}
        Reply::Close
    }));
    let gw = Gateway::start(&format!(
        "[limits]\nmin_data_rate = \"8MiB\"\ndata_rate_grace = \"1s\"\n[timeouts]\nclient_body = \"30s\"\n{}",
        proxy_route(up.addr)
    ));
    // A client with a small receive window that reads about 20 KiB/s.
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    sock.connect(&gw.addr.into()).unwrap();
    let mut s: TcpStream = sock.into();
    s.write_all(b"GET /p/big HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let t = Instant::now();
    let mut buf = [0u8; 2048];
    let mut got = 0usize;
    let ended = loop {
        if t.elapsed() > Duration::from_secs(20) {
            break false;
        }
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        match s.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break true,
            Err(_) => break false,
        }
        thread::sleep(Duration::from_millis(100));
    };
    assert!(
        ended,
        "slow reader still connected after {:?} ({got} bytes read)",
        t.elapsed()
    );
    assert!(got > 0, "the response never started");
    let s = scrape_until(
        gw.admin,
        "ringway_slow_client_closes_total",
        &[("direction", "response")],
        1.0,
    );
    assert_eq!(
        metric(
            &s,
            "ringway_slow_client_closes_total",
            &[("direction", "response")]
        ),
        Some(1.0)
    );
}

/// An upstream that answers every request with 101 and then echoes bytes; counts the tunnels
/// whose gateway side closed.
fn upgrade_upstream() -> (SocketAddr, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let closed = Arc::new(AtomicUsize::new(0));
    let c = closed.clone();
    thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            let c = c.clone();
            thread::spawn(move || {
                s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                let mut head = Vec::new();
                let mut b = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if s.read(&mut b).unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(b[0]);
                }
                let _ = s.write_all(
                    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
                );
                let mut buf = [0u8; 1024];
                loop {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if s.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                    }
                }
                c.fetch_add(1, Ordering::SeqCst);
            });
        }
    });
    (addr, closed)
}

#[test]
fn idle_tunnel_is_closed_on_both_sides() {
    let (up, up_closed) = upgrade_upstream();
    let gw = Gateway::start(&format!(
        "[timeouts]\ntunnel_idle = \"1s\"\n{}",
        proxy_route(up)
    ));
    let mut s = connect(gw.addr);
    s.write_all(
        b"GET /p/ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(
            s.read(&mut b).unwrap(),
            1,
            "tunnel closed during the handshake"
        );
        head.push(b[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    // Traffic keeps the tunnel open well past the idle limit.
    for i in 0..8u8 {
        s.write_all(&[b'a' + i]).unwrap();
        let mut echo = [0u8; 1];
        s.read_exact(&mut echo).unwrap();
        assert_eq!(echo[0], b'a' + i);
        thread::sleep(Duration::from_millis(300));
    }
    // Then silence: both sides are closed.
    let (_, ended, took) = read_until_close(&mut s, Duration::from_secs(8));
    assert!(ended, "idle tunnel still open after {took:?}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while up_closed.load(Ordering::SeqCst) == 0 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        up_closed.load(Ordering::SeqCst),
        1,
        "upstream side not closed"
    );
    let m = scrape_until(gw.admin, "ringway_tunnel_idle_closes_total", &[], 1.0);
    assert_eq!(
        metric(&m, "ringway_tunnel_idle_closes_total", &[]),
        Some(1.0)
    );
}

#[test]
fn process_wide_cap_refuses_extra_connections() {
    let gw = Gateway::start(
        "[limits]\nmax_connections = 3\n[[routes]]\nname = \"s\"\nprefix = \"/s\"\nstatic = { body = \"static-ok\" }\n",
    );
    // The harness's readiness probe is a connection too: wait until the gateway has counted
    // it closed, so the three held connections below are the only ones open.
    wait_for(Duration::from_secs(10), || {
        let m = scrape(gw.admin);
        m.iter()
            .filter(|s| s.name == "ringway_downstream_connections_open")
            .map(|s| s.value)
            .sum::<f64>()
            == 0.0
    })
    .expect("the readiness probe's connection never closed");
    let mut held: Vec<Conn> = (0..3).map(|_| Conn::open(gw.addr)).collect();
    for c in &mut held {
        assert_eq!(c.request("GET", "/s", &[], b"").status, 200);
    }
    // A fourth connection is closed at once, without a response.
    let mut extra = connect(gw.addr);
    let _ = extra.write_all(b"GET /s HTTP/1.1\r\nHost: t\r\n\r\n");
    let (bytes, ended, _) = read_until_close(&mut extra, Duration::from_secs(5));
    assert!(
        ended && bytes.is_empty(),
        "{}",
        String::from_utf8_lossy(&bytes)
    );
    // Closing one makes room again.
    held.pop();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut c = connect(gw.addr);
        let _ = c.write_all(b"GET /s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        let (bytes, _, _) = read_until_close(&mut c, Duration::from_secs(5));
        if first_status(&bytes) == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no room after a connection closed"
        );
        thread::sleep(Duration::from_millis(50));
    }
    let m = scrape(gw.admin);
    let refused = metric(
        &m,
        "ringway_downstream_connections_refused_total",
        &[("reason", "max_connections")],
    );
    assert!(refused.is_some_and(|n| n >= 1.0), "{refused:?}");
}

/// Current (soft, hard) open-file limits of this process.
fn nofile() -> (u64, u64) {
    let mut l = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills the struct we own.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) };
    (l.rlim_cur, l.rlim_max)
}

fn set_nofile(soft: u64, hard: u64) {
    let l = libc::rlimit {
        rlim_cur: soft,
        rlim_max: hard,
    };
    // SAFETY: setrlimit reads the struct we own.
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &l) };
}

/// Raises this process's open-file limit to at least `want` if it can (root may raise the hard
/// limit too); returns the soft limit in effect.
fn raise_nofile(want: u64) -> u64 {
    let (soft, hard) = nofile();
    if soft >= want {
        return soft;
    }
    let l = libc::rlimit {
        rlim_cur: want,
        rlim_max: hard.max(want),
    };
    // SAFETY: setrlimit reads the struct we own.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &l) } != 0 {
        let l = libc::rlimit {
            rlim_cur: hard,
            rlim_max: hard,
        };
        // SAFETY: as above.
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &l) };
    }
    nofile().0
}

#[test]
fn connection_flood_from_one_ip_does_not_starve_others() {
    const FLOOD: usize = 20_000;
    // The gateway starts first, so it inherits this process's limit as it was (and raises its
    // soft limit to the hard one); then the test raises its own limit to hold the flood.
    // The gateway is started with a soft open-file limit of 4096 (common for services), which a
    // flood of 20 000 exhausts unless the per-IP cap holds it (the gateway raises its soft limit
    // to the hard one at startup; the cap is what keeps it far below either).
    let up = Upstream::echo();
    let (soft, hard) = nofile();
    set_nofile(soft.min(4096), hard);
    let gw = Gateway::start(&format!(
        "[limits]\nmax_connections_per_ip = 100\n[timeouts]\nclient_header = \"60s\"\n{}",
        proxy_route(up.addr)
    ));
    set_nofile(soft, hard);
    let limit = raise_nofile(FLOOD as u64 + 1024);
    let flood = FLOOD.min(limit.saturating_sub(512) as usize);
    let deadline = Instant::now() + Duration::from_secs(30);
    let opened = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (addr, opened) = (gw.addr, opened.clone());
            thread::spawn(move || {
                let mut mine = Vec::with_capacity(flood / 4);
                while mine.len() < flood / 4 && Instant::now() < deadline {
                    if let Ok(s) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
                        mine.push(s);
                        opened.fetch_add(1, Ordering::Relaxed);
                    }
                }
                mine
            })
        })
        .collect();
    let conns: Vec<Vec<TcpStream>> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let opened = opened.load(Ordering::Relaxed);

    // Another client address (all of 127/8 is loopback on Linux) is still served.
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let local: SocketAddr = "127.0.0.2:0".parse().unwrap();
    sock.bind(&local.into()).unwrap();
    let served = sock
        .connect_timeout(&gw.addr.into(), Duration::from_secs(5))
        .map(|_| {
            let mut s: TcpStream = sock.into();
            s.write_all(b"GET /s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                .unwrap();
            let (bytes, _, _) = read_until_close(&mut s, Duration::from_secs(10));
            first_status(&bytes)
        });
    // A connect returns once the kernel has completed the handshake, so thousands of the
    // flood's connections can still sit in the listeners' accept queues (4096 each) when the
    // last one is opened: wait, bounded, until the workers have accepted and refused them.
    let want = (opened.saturating_sub(200)) as f64 * 0.9;
    let refused_now = || {
        metric(
            &scrape(gw.admin),
            "ringway_downstream_connections_refused_total",
            &[("reason", "per_ip")],
        )
        .unwrap_or(0.0)
    };
    let until = Instant::now() + Duration::from_secs(15);
    let mut refused = refused_now();
    while refused < want && Instant::now() < until {
        thread::sleep(Duration::from_millis(50));
        refused = refused_now();
    }
    drop(conns);
    assert_eq!(
        served.ok(),
        Some(200),
        "client from 127.0.0.2 not served during a flood of {opened} connections"
    );
    assert!(
        refused >= want,
        "{refused} refused of {opened} flood connections"
    );
}

#[test]
fn error_response_is_followed_by_clean_close_while_client_still_sends_body() {
    let gw = Gateway::start(
        "[[routes]]\nname = \"s\"\nprefix = \"/s\"\nmax_body_bytes = \"1KiB\"\nstatic = { body = \"static-ok\" }\n",
    );
    let mut s = connect(gw.addr);
    // Head and the first 64 KiB of body in one write: they arrive together, so the gateway has
    // unread request bytes when it answers.
    let mut first = b"POST /s HTTP/1.1\r\nHost: t\r\nContent-Length: 10485760\r\n\r\n".to_vec();
    first.extend_from_slice(&[b'b'; 64 * 1024]);
    s.write_all(&first).unwrap();
    // The upload goes on (about 320 KB/s) while the client reads the answer, as a browser's
    // or curl's would.
    let mut w = s.try_clone().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let st = stop.clone();
    let writer = thread::spawn(move || {
        let chunk = vec![b'b'; 16 * 1024];
        for _ in 0..600 {
            if st.load(Ordering::Relaxed) || w.write_all(&chunk).is_err() {
                return;
            }
            thread::sleep(Duration::from_millis(50));
        }
    });
    let mut r = std::io::BufReader::new(s);
    let resp = read_response(&mut r, false);
    // After the response: an orderly end of stream (FIN), not a reset. A reset here is what
    // can destroy the response in flight on a real network (the server's kernel drops its
    // unacknowledged bytes, the client's drops what arrives after the reset).
    let mut rest = Vec::new();
    let end = r.read_to_end(&mut rest);
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    let resp = resp.expect("413 lost");
    assert_eq!(resp.status, 413);
    assert!(
        end.is_ok() && rest.is_empty(),
        "after the 413: {end:?}, {} more bytes",
        rest.len()
    );
}

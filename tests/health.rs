//! Active health checks as an operator sees them: a failing target leaves the rotation within
//! two check intervals and comes back after `healthy_threshold` passes; TCP checks; probes run
//! once per process (not per worker), jittered, each bounded by its timeout so a hanging
//! target stalls nobody; garbage, huge and endless health answers fail (or pass on their
//! status line) without hurting the gateway; state shows in metrics and `GET /upstreams` and
//! survives a reload; config mistakes name file, line and field.
mod common;
use common::faults::{Fault, FaultyUpstream};
use common::*;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

const PROBE: &str = "/healthz";

fn config(targets: &[SocketAddr], check: &str) -> String {
    format!(
        "{}\n[upstreams.api.health_check]\n{check}\n\n[[routes]]\nname = \"r\"\nprefix = \"/\"\n\
         proxy = {{ upstream = \"api\" }}\n",
        upstream_toml("api", targets)
    )
}

/// The `/upstreams` entry of the target at `addr` of upstream `api`.
fn target(gw: &Gateway, addr: SocketAddr) -> serde_json::Value {
    common::faults::target_state(gw, "api", addr)
}

/// Polls until the target's `active` state is `want`; returns how long it took.
fn wait_active(gw: &Gateway, addr: SocketAddr, want: &str, limit: Duration) -> Duration {
    let start = Instant::now();
    loop {
        if target(gw, addr)["active"] == want {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < limit,
            "{addr} not {want} within {limit:?}: {}",
            target(gw, addr)
        );
        thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn failing_target_leaves_within_two_intervals_and_returns_after_healthy_threshold() {
    let a = FaultyUpstream::start("a");
    let b = FaultyUpstream::start("b");
    let c = FaultyUpstream::start("c");
    let interval = Duration::from_millis(200);
    let gw = Gateway::start(&config(
        &[a.addr, b.addr, c.addr],
        "path = \"/healthz\"\ninterval = \"200ms\"\ntimeout = \"100ms\"\n\
         unhealthy_threshold = 1\nhealthy_threshold = 2\nexpect_status = \"200-299\"",
    ));
    wait_active(&gw, b.addr, "healthy", Duration::from_secs(2));
    b.set(Fault::Status(503));
    let took = wait_active(&gw, b.addr, "unhealthy", Duration::from_secs(3));
    assert!(
        took <= interval * 2 + Duration::from_millis(60),
        "left after {took:?}"
    );
    assert_eq!(target(&gw, b.addr)["last_probe"]["status"], 503);
    // Traffic goes to the others only; the client sees no failure.
    let before = b.count_except(PROBE);
    for _ in 0..30 {
        let r = get(gw.addr, "/x");
        assert_eq!(r.status, 200);
        assert_ne!(r.header("x-upstream"), Some("b"));
    }
    assert_eq!(b.count_except(PROBE), before);
    assert!(a.count_except(PROBE) >= 10 && c.count_except(PROBE) >= 10);

    b.set(Fault::Ok);
    let took = wait_active(&gw, b.addr, "healthy", Duration::from_secs(3));
    // Two passes in a row: at least one (jittered) interval apart, at most about three.
    assert!(
        took >= interval.mul_f64(0.8) && took <= interval * 3 + Duration::from_millis(100),
        "came back after {took:?}"
    );
    let served: Vec<_> = (0..12)
        .map(|_| get(gw.addr, "/x").header("x-upstream").map(str::to_string))
        .collect();
    assert!(
        served.iter().any(|s| s.as_deref() == Some("b")),
        "{served:?}"
    );
}

#[test]
fn tcp_check_only_connects() {
    let a = FaultyUpstream::start("a");
    let b = FaultyUpstream::start("b");
    let gw = Gateway::start(&config(
        &[a.addr, b.addr],
        "type = \"tcp\"\ninterval = \"100ms\"\ntimeout = \"100ms\"\nunhealthy_threshold = 2\n\
         healthy_threshold = 1",
    ));
    // A TCP check does not care what the target answers.
    b.set(Fault::Status(500));
    thread::sleep(Duration::from_millis(400));
    assert_eq!(target(&gw, b.addr)["active"], "healthy");
    assert_eq!(b.count(), 0, "a TCP check sends no request");
    b.set(Fault::Refuse);
    wait_active(&gw, b.addr, "unhealthy", Duration::from_secs(2));
    assert_eq!(
        target(&gw, b.addr)["last_probe"]["result"],
        "connect_failed"
    );
    b.set(Fault::Ok);
    wait_active(&gw, b.addr, "healthy", Duration::from_secs(2));
}

#[test]
fn probes_run_once_per_process_not_per_worker() {
    let a = FaultyUpstream::start("a");
    let gw = Gateway::start_workers(
        &config(
            &[a.addr],
            "path = \"/healthz\"\ninterval = \"100ms\"\ntimeout = \"100ms\"",
        ),
        2,
    );
    thread::sleep(Duration::from_millis(200));
    let from = a.count_path(PROBE);
    thread::sleep(Duration::from_millis(1000));
    let n = a.count_path(PROBE) - from;
    // One checker: ~10 probes a second (±10 % jitter); per-worker probing would be ~20.
    assert!((6..=13).contains(&n), "{n} probes in 1 s");
    let probe = a
        .requests()
        .into_iter()
        .find(|r| r.target == PROBE)
        .expect("a probe");
    assert_eq!(probe.method, "GET");
    assert_eq!(probe.header("host"), Some(a.addr.to_string().as_str()));
    drop(gw);
}

/// A listener that records when each connection arrives and answers with `answer`.
fn probe_recorder(answer: fn(TcpStream)) -> (SocketAddr, Arc<Mutex<Vec<Instant>>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let times = Arc::new(Mutex::new(Vec::new()));
    let t = times.clone();
    thread::spawn(move || {
        for s in l.incoming().map_while(Result::ok) {
            t.lock().unwrap().push(Instant::now());
            thread::spawn(move || answer(s));
        }
    });
    (addr, times)
}

fn answer_ok(mut s: TcpStream) {
    let mut buf = [0u8; 1024];
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = s.read(&mut buf);
    let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
}

#[test]
fn probe_intervals_are_jittered_around_the_interval() {
    let (addr, times) = probe_recorder(answer_ok);
    let _gw = Gateway::start(&config(
        &[addr],
        "interval = \"100ms\"\ntimeout = \"100ms\"",
    ));
    let deadline = Instant::now() + Duration::from_secs(5);
    while times.lock().unwrap().len() < 16 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    let t = times.lock().unwrap().clone();
    assert!(t.len() >= 16, "only {} probes", t.len());
    let gaps: Vec<Duration> = t.windows(2).map(|w| w[1] - w[0]).collect();
    let min = gaps.iter().min().copied().unwrap();
    let max = gaps.iter().max().copied().unwrap();
    assert!(min >= Duration::from_millis(85), "{gaps:?}");
    assert!(max <= Duration::from_millis(250), "{gaps:?}");
    // ±10 %: over 15 gaps the spread is well above timer noise.
    assert!(
        max - min >= Duration::from_millis(6),
        "not jittered: {gaps:?}"
    );
}

#[test]
fn hanging_target_is_bounded_by_the_timeout_and_stalls_no_other_probe() {
    let a = FaultyUpstream::start("a");
    let b = FaultyUpstream::start("b");
    a.set(Fault::Hang);
    let gw = Gateway::start(&config(
        &[a.addr, b.addr],
        "path = \"/healthz\"\ninterval = \"200ms\"\ntimeout = \"120ms\"\nunhealthy_threshold = 1",
    ));
    wait_active(&gw, a.addr, "unhealthy", Duration::from_secs(2));
    assert_eq!(target(&gw, a.addr)["last_probe"]["result"], "timeout");
    let (a0, b0) = (a.count_path(PROBE), b.count_path(PROBE));
    thread::sleep(Duration::from_millis(1000));
    let (na, nb) = (a.count_path(PROBE) - a0, b.count_path(PROBE) - b0);
    assert!(nb >= 4, "the healthy target was probed {nb} times in 1 s");
    assert!(
        na >= 3,
        "the hanging target's probes end at the timeout: {na} in 1 s"
    );
    assert_eq!(target(&gw, b.addr)["active"], "healthy");
    assert_eq!(get(gw.addr, "/x").header("x-upstream"), Some("b"));
}

fn answer_garbage(mut s: TcpStream) {
    let mut buf = [0u8; 1024];
    let _ = s.read(&mut buf);
    let _ = s.write_all(b"SSH-2.0-OpenSSH\r\n\x00\x01\x02");
}

fn answer_huge_line(mut s: TcpStream) {
    let mut buf = [0u8; 1024];
    let _ = s.read(&mut buf);
    let line = vec![b'A'; 1 << 20];
    let _ = s.write_all(&line);
}

fn answer_endless_body(mut s: TcpStream) {
    let mut buf = [0u8; 1024];
    let _ = s.read(&mut buf);
    let _ = s.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
    let chunk = b"4000\r\n"
        .iter()
        .copied()
        .chain([b'x'; 0x4000])
        .chain(*b"\r\n");
    let chunk: Vec<u8> = chunk.collect();
    for _ in 0..200 {
        if s.write_all(&chunk).is_err() {
            return;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

fn answer_trickle(mut s: TcpStream) {
    let mut buf = [0u8; 1024];
    let _ = s.read(&mut buf);
    for _ in 0..200 {
        if s.write_all(b"H").is_err() {
            return;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn abusive_health_answers_fail_the_probe_and_never_stall_the_checker() {
    let (garbage, _) = probe_recorder(answer_garbage);
    let (huge, _) = probe_recorder(answer_huge_line);
    let (endless, _) = probe_recorder(answer_endless_body);
    let (trickle, _) = probe_recorder(answer_trickle);
    let gw = Gateway::start(&config(
        &[garbage, huge, endless, trickle],
        "interval = \"150ms\"\ntimeout = \"200ms\"\nunhealthy_threshold = 1",
    ));
    let limit = Duration::from_secs(3);
    wait_active(&gw, garbage, "unhealthy", limit);
    wait_active(&gw, huge, "unhealthy", limit);
    wait_active(&gw, trickle, "unhealthy", limit);
    assert_eq!(target(&gw, garbage)["last_probe"]["result"], "bad_response");
    assert_eq!(target(&gw, huge)["last_probe"]["result"], "bad_response");
    assert_eq!(target(&gw, trickle)["last_probe"]["result"], "timeout");
    // Only the status line is read: an endless body still passes, probe after probe.
    thread::sleep(Duration::from_millis(600));
    let e = target(&gw, endless);
    assert_eq!(e["active"], "healthy", "{e}");
    assert!(e["probes_passed"].as_u64().unwrap_or(0) >= 3, "{e}");
    // The gateway stays responsive.
    let r = request(gw.admin, "GET", "/health", &[], b"");
    assert_eq!(r.status, 200);
}

#[test]
fn health_shows_in_metrics_and_survives_a_reload() {
    let a = FaultyUpstream::start("a");
    let b = FaultyUpstream::start("b");
    b.set(Fault::Status(500));
    let check = "path = \"/healthz\"\ninterval = \"100ms\"\ntimeout = \"100ms\"\n\
                 unhealthy_threshold = 1\nhealthy_threshold = 100";
    let body = config(&[a.addr, b.addr], check);
    let gw = Gateway::start(&body);
    wait_active(&gw, b.addr, "unhealthy", Duration::from_secs(2));
    let s = scrape(gw.admin);
    let lab = |t: SocketAddr| {
        [
            ("upstream", "api"),
            ("target", Box::leak(t.to_string().into_boxed_str()) as &str),
        ]
    };
    assert_eq!(
        metric(&s, "ringway_upstream_target_healthy", &lab(a.addr)),
        Some(1.0)
    );
    assert_eq!(
        metric(&s, "ringway_upstream_target_healthy", &lab(b.addr)),
        Some(0.0)
    );
    let fails = [lab(b.addr).as_slice(), &[("result", "fail")]].concat();
    assert!(metric(&s, "ringway_upstream_health_checks_total", &fails).unwrap_or(0.0) >= 1.0);
    let stats = request(gw.admin, "GET", "/stats", &[("Connection", "close")], b"").json();
    assert!(
        stats["upstream_health"]["upstreams"][0]["targets"].is_array(),
        "{stats}"
    );

    // A reload that keeps the target keeps its state (the threshold of 100 passes means it
    // could not have come back on its own).
    b.set(Fault::Ok);
    assert!(gw.reload(&format!("{body}\n[[routes]]\nname = \"other\"\npath = \"/other\"\nproxy = {{ upstream = \"api\" }}\n")));
    let t = target(&gw, b.addr);
    assert_eq!(t["active"], "unhealthy", "{t}");
    for _ in 0..10 {
        assert_eq!(get(gw.addr, "/x").header("x-upstream"), Some("a"));
    }
    // Removing the check puts the target back at once.
    assert!(gw.reload(&format!(
        "{}\n[[routes]]\nname = \"r\"\nprefix = \"/\"\nproxy = {{ upstream = \"api\" }}\n",
        upstream_toml("api", &[a.addr, b.addr])
    )));
    let served: Vec<_> = (0..10)
        .map(|_| get(gw.addr, "/x").header("x-upstream").map(str::to_string))
        .collect();
    assert!(
        served.iter().any(|s| s.as_deref() == Some("b")),
        "{served:?}"
    );
}

#[test]
fn config_errors_name_file_line_and_field() {
    let cases = [
        ("expect_status = \"399-200\"", "health_check.expect_status"),
        ("expect_status = \"2xx\"", "health_check.expect_status"),
        ("interval = \"0s\"", "health_check.interval"),
        ("interval = \"5ms\"", "health_check.interval"),
        ("healthy_threshold = 0", "health_check.healthy_threshold"),
        (
            "unhealthy_threshold = 101",
            "health_check.unhealthy_threshold",
        ),
        ("type = \"udp\"", "health_check.type"),
        ("path = \"no-slash\"", "health_check.path"),
        ("type = \"tcp\"\npath = \"/x\"", "health_check.path"),
        ("timeout = \"0ms\"", "health_check.timeout"),
    ];
    for (line, field) in cases {
        let text = format!(
            "[upstreams.api]\ntargets = [{{ address = \"127.0.0.1:9\" }}]\n\n\
             [upstreams.api.health_check]\n{line}\n"
        );
        let (code, _, err) = check_config(&text);
        assert_eq!(code, 1, "{line}: {err}");
        assert!(err.contains("check.toml:"), "{err}");
        assert!(
            err.contains(&format!("upstreams.api.{field}")),
            "{line}: {err}"
        );
        assert!(
            err.contains(":5:") || err.contains(":6:"),
            "{line}: no line: {err}"
        );
    }
    let h2 = "[upstreams.api]\ntargets = [{ address = \"127.0.0.1:9\" }]\nprotocol = \"http2\"\n\
              [upstreams.api.health_check]\npath = \"/x\"\n";
    let (code, _, err) = check_config(h2);
    assert_eq!(code, 1);
    assert!(err.contains("upstreams.api.health_check.type"), "{err}");
    let typo = "[upstreams.api]\ntargets = [{ address = \"127.0.0.1:9\" }]\n\
                [upstreams.api.health_check]\nintervall = \"1s\"\n";
    let (code, _, err) = check_config(typo);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("intervall"), "{err}");
}

/// A TLS upstream that answers every request with the status in `status` and closes.
fn tls_health_server(
    cert_pem: &str,
    key_pem: &str,
    status: Arc<std::sync::atomic::AtomicU16>,
) -> SocketAddr {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .map(|c| c.unwrap())
        .collect();
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    let cfg = Arc::new(cfg);
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    thread::spawn(move || {
        for s in l.incoming().map_while(Result::ok) {
            let (cfg, status) = (cfg.clone(), status.clone());
            thread::spawn(move || {
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                let conn = rustls::ServerConnection::new(cfg).unwrap();
                let mut tls = rustls::StreamOwned::new(conn, s);
                let mut head = Vec::new();
                let mut b = [0u8; 512];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut b) {
                        Ok(n) if n > 0 => head.extend_from_slice(&b[..n]),
                        _ => return,
                    }
                }
                let code = status.load(std::sync::atomic::Ordering::SeqCst);
                let r =
                    format!("HTTP/1.1 {code} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                let _ = tls.write_all(r.as_bytes());
                tls.conn.send_close_notify();
                let _ = tls.flush();
            });
        }
    });
    addr
}

#[test]
fn tls_upstreams_are_probed_over_tls_with_their_certificate_verified() {
    use common::tls::{Ca, Key};
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("health test CA");
    let ca_path = ca.write(dir.path(), "ca");
    let good = ca.server(dir.path(), "good", &["api.internal"], Key::EcdsaP256);
    let rogue_ca = Ca::new("rogue CA");
    let rogue = rogue_ca.server(dir.path(), "rogue", &["api.internal"], Key::EcdsaP256);
    let status = Arc::new(std::sync::atomic::AtomicU16::new(200));
    let ok_addr = tls_health_server(&good.cert_pem, &good.key_pem, status.clone());
    let rogue_addr = tls_health_server(&rogue.cert_pem, &rogue.key_pem, status.clone());
    let body = format!(
        "{}tls = {{ server_name = \"api.internal\", ca = \"{}\" }}\n\n\
         [upstreams.api.health_check]\npath = \"/healthz\"\ninterval = \"100ms\"\n\
         timeout = \"500ms\"\nunhealthy_threshold = 1\nhealthy_threshold = 1\n\n\
         [[routes]]\nname = \"r\"\nprefix = \"/\"\nproxy = {{ upstream = \"api\" }}\n",
        upstream_toml("api", &[ok_addr, rogue_addr]),
        ca_path.display()
    );
    let gw = Gateway::start(&body);
    wait_active(&gw, rogue_addr, "unhealthy", Duration::from_secs(3));
    assert_eq!(
        target(&gw, rogue_addr)["last_probe"]["result"],
        "tls_failed"
    );
    let deadline = Instant::now() + Duration::from_secs(3);
    while target(&gw, ok_addr)["probes_passed"].as_u64().unwrap_or(0) < 2 {
        assert!(Instant::now() < deadline, "{}", target(&gw, ok_addr));
        thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(target(&gw, ok_addr)["active"], "healthy");
    status.store(503, std::sync::atomic::Ordering::SeqCst);
    wait_active(&gw, ok_addr, "unhealthy", Duration::from_secs(3));
    assert_eq!(target(&gw, ok_addr)["last_probe"]["status"], 503);
}

//! HTTPS on a client listener, end to end over real sockets: requests and keep-alive through
//! TLS, what the upstream is told (`X-Forwarded-Proto: https`, `Forwarded: proto=https`),
//! large bodies both ways, pipelining, plain HTTP on the TLS port, garbage and silent clients
//! (handshake failures counted by reason), and the plain listener that redirects to https.
mod common;
use common::tls::{client_config, Ca, ClientOpts, Key, TlsConn};
use common::*;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// A CA, a server certificate for `localhost`, and the `[listeners.tls]` table serving it.
struct Pki {
    ca: Ca,
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Pki {
        Pki {
            ca: Ca::new("ringway test CA"),
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn tls_table(&self, extra: &str) -> String {
        let c = self
            .ca
            .server(self.dir.path(), "localhost", &["localhost"], Key::EcdsaP256);
        format!(
            "[listeners.tls]\ncertificates = [{{ cert = \"{}\", key = \"{}\" }}]\n{extra}\n",
            c.cert_path.display(),
            c.key_path.display()
        )
    }

    fn client(&self) -> std::sync::Arc<rustls::ClientConfig> {
        client_config(&ClientOpts {
            ca_pem: &self.ca.pem,
            alpn: &[b"http/1.1"],
            ..ClientOpts::default()
        })
    }
}

fn proxy_routes(up: &Upstream) -> String {
    format!(
        "{}\n[[routes]]\nname = \"api\"\nprefix = \"/\"\nmax_body_bytes = \"16MiB\"\nproxy = {{ upstream = \"api\" }}\n",
        upstream_toml("api", &[up.addr])
    )
}

#[test]
fn https_requests_reach_the_upstream_marked_as_https_on_one_kept_alive_connection() {
    let pki = Pki::new();
    let up = Upstream::echo();
    let gw = Gateway::start(&format!("{}{}", pki.tls_table(""), proxy_routes(&up)));
    let mut c = TlsConn::open(gw.addr, "localhost", &pki.client()).expect("handshake");
    assert_eq!(c.alpn().as_deref(), Some(&b"http/1.1"[..]));
    for i in 0..5 {
        let r = c
            .request(
                "GET",
                &format!("/x/{i}"),
                &[("X-Forwarded-Proto", "http")],
                b"",
            )
            .unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        let got = up.last();
        assert_eq!(got.target, format!("/x/{i}"));
        assert_eq!(got.header("x-forwarded-proto"), Some("https"));
        let fwd = got.header("forwarded").unwrap_or_default().to_string();
        assert!(fwd.contains("proto=https"), "Forwarded: {fwd}");
    }
    // All five went over one TLS connection to the gateway, and the gateway kept one to the
    // upstream.
    assert_eq!(up.connections.load(std::sync::atomic::Ordering::SeqCst), 1);
    let samples = scrape(gw.admin);
    let full = metric(
        &samples,
        "ringway_tls_handshakes_total",
        &[("kind", "full")],
    );
    assert_eq!(full, Some(1.0));
}

#[test]
fn large_bodies_cross_tls_intact_both_ways() {
    let pki = Pki::new();
    let up = Upstream::start(std::sync::Arc::new(|req: &Received, s: &mut TcpStream| {
        // Answers with the request body reversed, so the check covers both directions.
        let mut body = req.body.clone();
        body.reverse();
        let _ = write!(
            s,
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        let _ = s.write_all(&body);
        Reply::KeepAlive
    }));
    let gw = Gateway::start(&format!("{}{}", pki.tls_table(""), proxy_routes(&up)));
    let body: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let mut c = TlsConn::open(gw.addr, "localhost", &pki.client()).expect("handshake");
    for _ in 0..2 {
        let r = c.request("POST", "/upload", &[], &body).unwrap();
        assert_eq!(r.status, 200);
        let mut want = body.clone();
        want.reverse();
        assert!(r.body == want, "body differs ({} bytes back)", r.body.len());
    }
}

#[test]
fn pipelined_requests_over_tls_are_answered_in_order() {
    let pki = Pki::new();
    let up = Upstream::echo();
    let gw = Gateway::start(&format!("{}{}", pki.tls_table(""), proxy_routes(&up)));
    let mut c = TlsConn::open(gw.addr, "localhost", &pki.client()).expect("handshake");
    let mut all = Vec::new();
    for i in 0..4 {
        all.extend_from_slice(&build_request(
            "GET",
            &format!("/p/{i}"),
            &[("Host", "localhost")],
            b"",
        ));
    }
    c.send(&all).unwrap();
    for i in 0..4 {
        let r = c.read_response(false).unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.json()["target"], format!("/p/{i}"));
    }
}

#[test]
fn plain_http_on_the_tls_port_gets_a_readable_400_and_never_reaches_the_upstream() {
    let pki = Pki::new();
    let up = Upstream::echo();
    let gw = Gateway::start(&format!("{}{}", pki.tls_table(""), proxy_routes(&up)));
    let raw_reply = raw(gw.addr, b"GET /secret HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert_eq!(first_status(&raw_reply), 400);
    assert!(String::from_utf8_lossy(&raw_reply).contains("HTTPS port"));
    assert_eq!(up.count(), 0);
    let samples = scrape(gw.admin);
    let n = metric(
        &samples,
        "ringway_tls_handshake_errors_total",
        &[("reason", "plain_http")],
    );
    assert_eq!(n, Some(1.0));
    // TLS clients are unaffected.
    let r = common::tls::get(gw.addr, "localhost", &pki.client(), "/after").unwrap();
    assert_eq!(r.status, 200);
}

#[test]
fn garbage_and_silent_clients_are_cut_off_and_counted_without_disturbing_others() {
    let pki = Pki::new();
    let up = Upstream::echo();
    let table = pki.tls_table("handshake_timeout = \"1s\"");
    let gw = Gateway::start(&format!("{table}{}", proxy_routes(&up)));
    // A record header announcing a handshake, then junk.
    let mut junk = vec![0x16, 0x03, 0x01, 0x00, 0x40];
    junk.extend(std::iter::repeat_n(0xAB, 64));
    let mut s = TcpStream::connect(gw.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(&junk).unwrap();
    let mut buf = [0u8; 256];
    // An alert (or a reset), then the end: never an HTTP response, never a hang.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => assert!(Instant::now() < deadline, "connection never closed"),
        }
    }
    // A client that connects and says nothing is dropped after the handshake timeout.
    let mut quiet = TcpStream::connect(gw.addr).unwrap();
    quiet
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let t0 = Instant::now();
    let ended = matches!(quiet.read(&mut buf), Ok(0) | Err(_));
    let waited = t0.elapsed();
    assert!(ended);
    assert!(
        waited >= Duration::from_millis(800) && waited < Duration::from_secs(4),
        "{waited:?}"
    );
    let r = common::tls::get(gw.addr, "localhost", &pki.client(), "/still").unwrap();
    assert_eq!(r.status, 200);
    let samples = scrape(gw.admin);
    let reason = |r: &str| {
        metric(
            &samples,
            "ringway_tls_handshake_errors_total",
            &[("reason", r)],
        )
    };
    assert_eq!(reason("protocol"), Some(1.0));
    assert_eq!(reason("timeout"), Some(1.0));
    assert_eq!(up.count(), 1);
}

#[test]
fn a_plain_listener_can_redirect_everything_to_https() {
    let pki = Pki::new();
    let up = Upstream::echo();
    let plain_port = free_port();
    let table = pki.tls_table("");
    let body = format!(
        "{table}\n[[listeners]]\nname = \"plain\"\naddress = \"127.0.0.1:{plain_port}\"\nredirect_https = true\nhttps_port = 8443\n\n{}",
        proxy_routes(&up)
    );
    let gw = Gateway::start(&body);
    let plain: std::net::SocketAddr = format!("127.0.0.1:{plain_port}").parse().unwrap();
    let r = request(
        plain,
        "POST",
        "/orders/7?x=1&y=%20",
        &[("Host", "API.example.com:80")],
        b"{}",
    );
    assert_eq!(r.status, 308, "{}", r.text());
    assert_eq!(
        r.header("location"),
        Some("https://api.example.com:8443/orders/7?x=1&y=%20")
    );
    assert_eq!(up.count(), 0, "a redirecting listener never forwards");
    // The TLS listener itself serves normally.
    let r = common::tls::get(gw.addr, "localhost", &pki.client(), "/ok").unwrap();
    assert_eq!(r.status, 200);
}

#[test]
fn responses_carry_hsts_and_nosniff_owned_by_the_listener_unless_turned_off() {
    let pki = Pki::new();
    let up = Upstream::start(std::sync::Arc::new(|_req: &Received, s: &mut TcpStream| {
        let _ = write!(
            s,
            "HTTP/1.1 200 OK\r\nStrict-Transport-Security: max-age=5\r\nX-Content-Type-Options: sniff-me\r\nContent-Length: 2\r\n\r\nok"
        );
        Reply::KeepAlive
    }));
    let routes = format!(
        "{}\n[[routes]]\nname = \"local\"\npath = \"/local\"\nstatic = {{ status = 200, body = \"x\" }}\n",
        proxy_routes(&up)
    );
    let gw = Gateway::start(&format!("{}{routes}", pki.tls_table("")));
    let mut c = TlsConn::open(gw.addr, "localhost", &pki.client()).expect("handshake");
    // Proxied: the upstream's copies are replaced by the listener's.
    let r = c.get("/api").unwrap();
    assert_eq!(
        r.header_all("strict-transport-security"),
        vec!["max-age=31536000"]
    );
    assert_eq!(r.header_all("x-content-type-options"), vec!["nosniff"]);
    // Local answers and errors carry it too.
    let r = c.get("/local").unwrap();
    assert_eq!(
        r.header("strict-transport-security"),
        Some("max-age=31536000")
    );
    let r = c
        .request(
            "GET",
            "/local",
            &[("Transfer-Encoding", "chunked, gzip")],
            b"",
        )
        .unwrap();
    assert_eq!(r.status, 400);
    assert_eq!(
        r.header("strict-transport-security"),
        Some("max-age=31536000")
    );

    // Configured value, and off (then the upstream's own passes through).
    let table = pki.tls_table("hsts = \"max-age=63072000; includeSubDomains\"");
    let gw = Gateway::start(&format!("{table}{routes}"));
    let r = common::tls::get(gw.addr, "localhost", &pki.client(), "/local").unwrap();
    assert_eq!(
        r.header("strict-transport-security"),
        Some("max-age=63072000; includeSubDomains")
    );
    let off = pki.tls_table("hsts = false\nnosniff = false");
    let gw = Gateway::start(&format!("{off}{routes}"));
    let r = common::tls::get(gw.addr, "localhost", &pki.client(), "/api").unwrap();
    assert_eq!(r.header_all("strict-transport-security"), vec!["max-age=5"]);
    assert_eq!(r.header_all("x-content-type-options"), vec!["sniff-me"]);
    // Never on plain HTTP (RFC 6797 8.1: ignored there, and meaningless).
    let plain = Gateway::start(&routes);
    let r = get(plain.addr, "/local");
    assert_eq!(r.header("strict-transport-security"), None);
    assert_eq!(r.header("x-content-type-options"), None);
    // A malformed policy is a config error naming the field.
    let (code, _out, err) = check_config(&format!(
        "[[listeners]]\naddress = \"127.0.0.1:1\"\n{}",
        pki.tls_table("hsts = \"max-age=abc\\r\\nx: y\"")
    ));
    assert_ne!(code, 0);
    assert!(err.contains("hsts"), "{err}");
}

#[test]
fn the_server_picks_the_cipher_suite_whatever_order_the_client_lists() {
    let pki = Pki::new();
    let gw = Gateway::start(&format!(
        "{}[[routes]]\nname = \"l\"\npath = \"/\"\nstatic = {{ status = 200 }}\n",
        pki.tls_table("")
    ));
    // rustls clients list AES-256 first; the gateway still chooses AES-128-GCM (SHA-256).
    let c = TlsConn::open(gw.addr, "localhost", &pki.client()).expect("handshake");
    assert_eq!(
        c.cipher(),
        Some(rustls::CipherSuite::TLS13_AES_128_GCM_SHA256)
    );
    let tls12 = client_config(&ClientOpts {
        ca_pem: &pki.ca.pem,
        tls12_only: true,
        ..ClientOpts::default()
    });
    let c = TlsConn::open(gw.addr, "localhost", &tls12).expect("handshake");
    assert_eq!(
        c.cipher(),
        Some(rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256)
    );
}

#[test]
fn a_closing_connection_ends_its_tls_session_with_close_notify() {
    let pki = Pki::new();
    let gw = Gateway::start(&format!(
        "{}[[routes]]\nname = \"l\"\npath = \"/\"\nstatic = {{ status = 200, body = \"hi\" }}\n",
        pki.tls_table("")
    ));
    // `Connection: close` (and HTTP/1.0): the session ends cleanly, which OpenSSL-based
    // clients require before they resume it.
    let mut c = TlsConn::open(gw.addr, "localhost", &pki.client()).unwrap();
    let r = c
        .request("GET", "/", &[("Connection", "close")], b"")
        .unwrap();
    assert_eq!(r.status, 200);
    let rest = c
        .read_to_end()
        .expect("a clean close_notify, not a bare TCP close");
    assert!(rest.is_empty());
    // Also when the gateway ends a connection on a bad request.
    let mut c = TlsConn::open(gw.addr, "localhost", &pki.client()).unwrap();
    c.send(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")
        .unwrap();
    let r = c.read_response(false).unwrap();
    assert_eq!(r.status, 400);
    c.read_to_end()
        .expect("close_notify after a rejected request");
}

#[test]
fn a_tls_client_that_leaves_while_the_upstream_works_is_counted_499() {
    let pki = Pki::new();
    let release = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let gate = release.clone();
    let up = Upstream::start(std::sync::Arc::new(
        move |_req: &Received, s: &mut TcpStream| {
            let deadline = Instant::now() + Duration::from_secs(20);
            while !gate.load(std::sync::atomic::Ordering::SeqCst) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
            Reply::KeepAlive
        },
    ));
    let gw = Gateway::start(&format!("{}{}", pki.tls_table(""), proxy_routes(&up)));
    let mut c = TlsConn::open(gw.addr, "localhost", &pki.client()).unwrap();
    c.send(&build_request(
        "GET",
        "/slow",
        &[("Host", "localhost")],
        b"",
    ))
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while up.count() == 0 {
        assert!(Instant::now() < deadline, "never reached the upstream");
        std::thread::sleep(Duration::from_millis(5));
    }
    // close_notify then FIN: the alert bytes must not look like a pipelined request.
    c.close_notify();
    let labels = [("route", "api"), ("method", "GET"), ("status", "499")];
    let seen = Instant::now() + Duration::from_secs(5);
    let mut n = None;
    while n.is_none() && Instant::now() < seen {
        std::thread::sleep(Duration::from_millis(20));
        n = metric(&scrape(gw.admin), "ringway_http_requests_total", &labels);
    }
    release.store(true, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(
        n,
        Some(1.0),
        "the upstream was still working: the gateway must notice the client left"
    );
}

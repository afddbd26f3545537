//! TLS from the gateway to its upstreams, over real sockets: a rustls test server (one std
//! thread per connection, `rustls::StreamOwned`) records the SNI and ALPN it saw and whether a
//! client certificate came. Certificates are made at test time (`common::tls::Ca`).
//! Covered: verification against a configured CA and the system roots, untrusted CA and name
//! mismatch (502 `upstream_tls`), `verify = false` (works, warns), upstream mTLS, keep-alive
//! reuse of TLS connections, records that carry no data arriving while a connection idles
//! (kept), stray responses (never reach the next client), handshake timeouts (504), a server
//! that does not speak TLS, WebSocket through a TLS upstream, and the config errors.
mod common;
use common::tls::Ca;
use common::*;

use std::io::{BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

type Tls = rustls::StreamOwned<rustls::ServerConnection, TcpStream>;

/// One accepted, handshaken connection at the test upstream.
struct Srv {
    r: BufReader<Tls>,
    /// 0 for the first connection the server accepted, 1 for the next...
    no: usize,
}

impl Srv {
    fn next_request(&mut self) -> Option<Received> {
        read_request(&mut self.r).ok().flatten()
    }
    fn send(&mut self, bytes: &[u8]) -> bool {
        let s = self.r.get_mut();
        s.write_all(bytes).is_ok() && s.flush().is_ok()
    }
    fn respond(&mut self, body: &str) -> bool {
        let r = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        self.send(r.as_bytes())
    }
    /// Sends a TLS 1.3 KeyUpdate: a record that carries no application data.
    fn key_update(&mut self) -> bool {
        let s = self.r.get_mut();
        s.conn.refresh_traffic_keys().is_ok() && s.conn.complete_io(&mut s.sock).is_ok()
    }
}

type Handler = dyn Fn(&mut Srv) + Send + Sync;

/// What the test upstream saw on each handshake that completed.
#[derive(Default)]
struct Seen {
    sni: Vec<Option<String>>,
    alpn: Vec<Option<Vec<u8>>>,
    client_cert: Vec<bool>,
    resumed: Vec<bool>,
}

struct TlsUpstream {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    seen: Arc<Mutex<Seen>>,
    stop: Arc<AtomicBool>,
}

impl Drop for TlsUpstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn load_chain(pem: &str) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .map(|c| c.unwrap())
        .collect()
}

/// A TLS upstream serving `cert` (chain PEM, key PEM). With `client_ca`, it requires a client
/// certificate issued by that CA. ALPN: it offers h2 and http/1.1.
fn tls_upstream(cert: (&str, &str), client_ca: Option<&str>, handler: Arc<Handler>) -> TlsUpstream {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = match client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in load_chain(ca) {
                roots.add(c).unwrap();
            }
            let v = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .unwrap();
            builder.with_client_cert_verifier(v)
        }
        None => builder.with_no_client_auth(),
    };
    let key = PrivateKeyDer::from_pem_slice(cert.1.as_bytes()).unwrap();
    let mut cfg = builder.with_single_cert(load_chain(cert.0), key).unwrap();
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let cfg = Arc::new(cfg);
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    l.set_nonblocking(true).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let accepted = Arc::new(AtomicUsize::new(0));
    let seen = Arc::new(Mutex::new(Seen::default()));
    let (st, acc, sn) = (stop.clone(), accepted.clone(), seen.clone());
    thread::spawn(move || {
        while !st.load(Ordering::Relaxed) {
            match l.accept() {
                Ok((s, _)) => {
                    let no = acc.fetch_add(1, Ordering::SeqCst);
                    let (cfg, sn, h) = (cfg.clone(), sn.clone(), handler.clone());
                    thread::spawn(move || serve(s, no, cfg, sn, h));
                }
                Err(_) => thread::sleep(Duration::from_millis(2)),
            }
        }
    });
    TlsUpstream {
        addr,
        accepted,
        seen,
        stop,
    }
}

fn serve(
    s: TcpStream,
    no: usize,
    cfg: Arc<rustls::ServerConfig>,
    seen: Arc<Mutex<Seen>>,
    handler: Arc<Handler>,
) {
    s.set_nonblocking(false).unwrap();
    // Each write goes out at once: Nagle would hold a small record back until the previous
    // one is acknowledged, i.e. until the gateway's next write, and bytes that late are
    // indistinguishable from the next answer (see the README's "Upstream connections").
    s.set_nodelay(true).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    let conn = rustls::ServerConnection::new(cfg).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, s);
    while tls.conn.is_handshaking() {
        if tls.conn.complete_io(&mut tls.sock).is_err() {
            return;
        }
    }
    {
        let mut seen = seen.lock().unwrap();
        seen.sni.push(tls.conn.server_name().map(str::to_string));
        seen.alpn.push(tls.conn.alpn_protocol().map(<[u8]>::to_vec));
        seen.client_cert
            .push(tls.conn.peer_certificates().is_some());
        let kind = tls.conn.handshake_kind();
        seen.resumed
            .push(kind == Some(rustls::HandshakeKind::Resumed));
    }
    let mut srv = Srv {
        r: BufReader::new(tls),
        no,
    };
    handler(&mut srv);
}

/// Answers every request on every connection with `body`.
fn answering(body: &'static str) -> Arc<Handler> {
    Arc::new(move |s: &mut Srv| {
        while s.next_request().is_some() {
            if !s.respond(body) {
                return;
            }
        }
    })
}

/// A directory with a CA, a server certificate for `names` and the CA file.
struct Pki {
    dir: tempfile::TempDir,
    ca: Ca,
    ca_path: PathBuf,
    server: common::tls::Issued,
}

fn pki(names: &[&str]) -> Pki {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("upstream test CA");
    let ca_path = ca.write(dir.path(), "ca");
    let server = ca.server(dir.path(), "server", names, common::tls::Key::EcdsaP256);
    Pki {
        dir,
        ca,
        ca_path,
        server,
    }
}

fn q(p: &Path) -> String {
    format!("\"{}\"", p.display())
}

/// Config: upstream `be` at `target` with `tls` (a TOML value), a proxy route on `/p`.
fn config(target: &str, tls: &str) -> String {
    format!(
        "[upstreams.be]\ntargets = [{{ address = \"{target}\" }}]\nconnect_timeout = \"1s\"\n\
         tls = {tls}\n\n[[routes]]\nname = \"p\"\nprefix = \"/p\"\nproxy = {{ upstream = \"be\" }}\n"
    )
}

fn code(r: &Response) -> String {
    r.json()["code"].as_str().unwrap_or_default().to_string()
}

// ---------------------------------------------------------------------------------------
// Verification

#[test]
fn verified_upstream_sees_the_configured_server_name_and_http11_alpn() {
    let p = pki(&["billing.internal"]);
    let up = tls_upstream(
        (&p.server.cert_pem, &p.server.key_pem),
        None,
        answering("tls-ok"),
    );
    let tls = format!(
        "{{ server_name = \"billing.internal\", ca = {} }}",
        q(&p.ca_path)
    );
    let gw = Gateway::start(&config(&up.addr.to_string(), &tls));
    let r = get(gw.addr, "/p/x");
    assert_eq!((r.status, r.text().as_str()), (200, "tls-ok"));
    let seen = up.seen.lock().unwrap();
    assert_eq!(seen.sni, vec![Some("billing.internal".to_string())]);
    assert_eq!(
        seen.alpn,
        vec![Some(b"http/1.1".to_vec())],
        "the gateway offers only http/1.1, so an h2-capable upstream must pick it"
    );
}

#[test]
fn tls_true_verifies_the_target_host_against_the_system_roots() {
    let p = pki(&["localhost"]);
    let up = tls_upstream(
        (&p.server.cert_pem, &p.server.key_pem),
        None,
        answering("system-roots-ok"),
    );
    // The system roots are what SSL_CERT_FILE names (rustls-native-certs honours it).
    let ca = p.ca_path.to_str().unwrap();
    let body = config(&format!("localhost:{}", up.addr.port()), "true");
    let gw = Gateway::start_env(&body, 1, &[("SSL_CERT_FILE", ca)]);
    let r = get(gw.addr, "/p/x");
    assert_eq!((r.status, r.text().as_str()), (200, "system-roots-ok"));
    let sni = up.seen.lock().unwrap().sni.clone();
    assert_eq!(sni, vec![Some("localhost".to_string())]);
}

#[test]
fn untrusted_certificate_is_a_502_with_the_reason_logged() {
    let p = pki(&["billing.internal"]);
    let other = Ca::new("some other CA");
    let other_path = other.write(p.dir.path(), "other-ca");
    let up = tls_upstream(
        (&p.server.cert_pem, &p.server.key_pem),
        None,
        answering("must not be seen"),
    );
    let tls = format!(
        "{{ server_name = \"billing.internal\", ca = {} }}",
        q(&other_path)
    );
    let gw = Gateway::start(&config(&up.addr.to_string(), &tls));
    let r = get(gw.addr, "/p/x");
    assert_eq!(r.status, 502, "{}", r.text());
    assert_eq!(code(&r), "upstream_tls");
    assert!(!r.text().contains("must not be seen"));
    gw.wait_log("TLS handshake failed", Duration::from_secs(5));
    let logs = gw.logs();
    let line = logs
        .lines()
        .find(|l| l.contains("TLS handshake failed"))
        .unwrap();
    assert!(line.contains("upstream be"), "{line}");
    assert!(line.contains("billing.internal"), "{line}");
    assert!(line.contains("UnknownIssuer"), "rustls's reason: {line}");
}

/// A handshake failure is a connect failure: the request moves on to the next target, and
/// the failing target is backed off.
#[test]
fn failed_handshake_moves_on_to_the_next_target() {
    let p = pki(&["billing.internal"]);
    let rogue_ca = Ca::new("rogue CA");
    let rogue = rogue_ca.server(
        p.dir.path(),
        "rogue",
        &["billing.internal"],
        common::tls::Key::EcdsaP256,
    );
    let good = tls_upstream(
        (&p.server.cert_pem, &p.server.key_pem),
        None,
        answering("good"),
    );
    let bad = tls_upstream((&rogue.cert_pem, &rogue.key_pem), None, answering("rogue"));
    let body = format!(
        "[upstreams.be]\ntargets = [{{ address = \"{}\" }}, {{ address = \"{}\" }}]\n\
         tls = {{ server_name = \"billing.internal\", ca = {} }}\n\n[[routes]]\nname = \"p\"\n\
         prefix = \"/p\"\nproxy = {{ upstream = \"be\" }}\n",
        bad.addr,
        good.addr,
        q(&p.ca_path)
    );
    let gw = Gateway::start_workers(&body, 1);
    for i in 0..4 {
        let r = get(gw.addr, &format!("/p/{i}"));
        assert_eq!((r.status, r.text().as_str()), (200, "good"), "request {i}");
    }
    assert_eq!(
        bad.accepted.load(Ordering::SeqCst),
        1,
        "backed off after one failure"
    );
    gw.wait_log("TLS handshake failed", Duration::from_secs(5));
}

#[test]
fn certificate_for_another_name_is_a_502() {
    let p = pki(&["other.internal"]);
    let up = tls_upstream(
        (&p.server.cert_pem, &p.server.key_pem),
        None,
        answering("must not be seen"),
    );
    let tls = format!(
        "{{ server_name = \"billing.internal\", ca = {} }}",
        q(&p.ca_path)
    );
    let gw = Gateway::start(&config(&up.addr.to_string(), &tls));
    let r = get(gw.addr, "/p/x");
    assert_eq!((r.status, code(&r).as_str()), (502, "upstream_tls"));
    gw.wait_log(
        "not valid for name \"billing.internal\"",
        Duration::from_secs(5),
    );
}

#[test]
fn verify_false_accepts_any_certificate_and_says_so_at_every_load() {
    let p = pki(&["whatever.example"]);
    let up = tls_upstream(
        (&p.server.cert_pem, &p.server.key_pem),
        None,
        answering("unverified-ok"),
    );
    let body = config(&up.addr.to_string(), "{ verify = false }");
    let gw = Gateway::start(&body);
    let r = get(gw.addr, "/p/x");
    assert_eq!((r.status, r.text().as_str()), (200, "unverified-ok"));
    let warn = "upstream be: TLS certificate verification is OFF";
    gw.wait_log(warn, Duration::from_secs(5));
    assert!(gw
        .logs()
        .lines()
        .any(|l| l.contains("WARN") && l.contains(warn)));
    assert!(gw.reload(&body));
    assert_eq!(gw.log_count(warn), 2, "warned again on reload");
    // `ringway check` shows it too.
    let (rc, out, err) = check_config(&format!("[[listeners]]\naddress = \"127.0.0.1:0\"\n{body}"));
    assert_eq!(rc, 0, "{out}{err}");
    assert!(out.contains("VERIFICATION OFF"), "{out}");
    assert!(
        out.contains("warning: upstream be: TLS certificate verification is OFF"),
        "{out}"
    );
    assert!(err.contains(warn), "{err}");
}

// ---------------------------------------------------------------------------------------
// Upstream mTLS

#[test]
fn upstream_requiring_a_client_certificate_gets_the_configured_one() {
    let p = pki(&["billing.internal"]);
    let client_ca = Ca::new("clients CA");
    let gw_cert = client_ca.client(p.dir.path(), "gw", "ringway", &[]);
    let up = tls_upstream(
        (&p.server.cert_pem, &p.server.key_pem),
        Some(&client_ca.pem),
        answering("mtls-ok"),
    );
    let with = format!(
        "{{ server_name = \"billing.internal\", ca = {}, client_cert = {{ cert = {}, key = {} }} }}",
        q(&p.ca_path),
        q(&gw_cert.cert_path),
        q(&gw_cert.key_path)
    );
    let gw = Gateway::start(&config(&up.addr.to_string(), &with));
    let r = get(gw.addr, "/p/x");
    assert_eq!((r.status, r.text().as_str()), (200, "mtls-ok"));
    assert_eq!(up.seen.lock().unwrap().client_cert, vec![true]);
    drop(gw);
    let (rc, out, err) = check_config(&format!(
        "[[listeners]]\naddress = \"127.0.0.1:0\"\n{}",
        config(&up.addr.to_string(), &with)
    ));
    assert_eq!(rc, 0, "{err}");
    let want = format!(
        "tls (verify billing.internal against {})",
        p.ca_path.display()
    );
    assert!(out.contains(&want), "{out}");
    assert!(out.contains("client certificate"), "{out}");
    assert!(!out.contains("warning: upstream"), "{out}");

    let without = format!(
        "{{ server_name = \"billing.internal\", ca = {} }}",
        q(&p.ca_path)
    );
    let gw = Gateway::start(&config(&up.addr.to_string(), &without));
    let r = get(gw.addr, "/p/x");
    assert_eq!((r.status, code(&r).as_str()), (502, "upstream_tls"));
    assert!(!r.text().contains("mtls-ok"));
    gw.wait_log("CertificateRequired", Duration::from_secs(5));
}

// ---------------------------------------------------------------------------------------
// Pooling

#[test]
fn keep_alive_reuses_one_tls_connection() {
    let p = pki(&["billing.internal"]);
    let up = tls_upstream(
        (&p.server.cert_pem, &p.server.key_pem),
        None,
        answering("pooled"),
    );
    let tls = format!(
        "{{ server_name = \"billing.internal\", ca = {} }}",
        q(&p.ca_path)
    );
    let gw = Gateway::start_workers(&config(&up.addr.to_string(), &tls), 1);
    for i in 0..6 {
        // A new client connection each time: only the upstream connection is shared.
        let r = get(gw.addr, &format!("/p/{i}"));
        assert_eq!((r.status, r.text().as_str()), (200, "pooled"));
    }
    assert_eq!(up.accepted.load(Ordering::SeqCst), 1, "one TLS connection");
}

/// Megabyte bodies both ways over one pooled TLS connection: records are split and joined
/// correctly, and the connection is reused afterwards.
#[test]
fn large_bodies_both_ways_over_a_pooled_tls_connection() {
    let p = pki(&["billing.internal"]);
    let handler: Arc<Handler> = Arc::new(|s: &mut Srv| {
        while let Some(req) = s.next_request() {
            let mut out = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
                req.body.len()
            )
            .into_bytes();
            out.extend(req.body.iter().rev());
            if !s.send(&out) {
                return;
            }
        }
    });
    let up = tls_upstream((&p.server.cert_pem, &p.server.key_pem), None, handler);
    let tls = format!(
        "{{ server_name = \"billing.internal\", ca = {} }}",
        q(&p.ca_path)
    );
    let gw = Gateway::start_workers(
        &format!(
            "[limits]\nmax_body_bytes = \"4MiB\"\n{}",
            config(&up.addr.to_string(), &tls)
        ),
        1,
    );
    let body: Vec<u8> = (0..(1usize << 20) + 12_345)
        .map(|i| b'a' + (i % 26) as u8)
        .collect();
    let want: Vec<u8> = body.iter().rev().copied().collect();
    for i in 0..3 {
        let r = request(gw.addr, "POST", "/p/big", &[], &body);
        assert_eq!(r.status, 200, "request {i}: {}", r.text());
        assert!(
            r.body == want,
            "request {i}: body differs ({} bytes)",
            r.body.len()
        );
    }
    assert_eq!(up.accepted.load(Ordering::SeqCst), 1);
}

/// An upstream that closes each connection after one answer (close_notify, then FIN): the
/// closed pooled connection is noticed before reuse and every request still gets its answer;
/// the new connections resume the TLS session.
#[test]
fn upstream_closing_idle_tls_connections_costs_no_request() {
    let p = pki(&["billing.internal"]);
    let handler: Arc<Handler> = Arc::new(|s: &mut Srv| {
        if s.next_request().is_some() && s.respond("once") {
            thread::sleep(Duration::from_millis(20));
            let t = s.r.get_mut();
            t.conn.send_close_notify();
            let _ = t.conn.complete_io(&mut t.sock);
        }
    });
    let up = tls_upstream((&p.server.cert_pem, &p.server.key_pem), None, handler);
    let tls = format!(
        "{{ server_name = \"billing.internal\", ca = {} }}",
        q(&p.ca_path)
    );
    let gw = Gateway::start_workers(&config(&up.addr.to_string(), &tls), 1);
    for i in 0..4 {
        let r = get(gw.addr, &format!("/p/{i}"));
        assert_eq!((r.status, r.text().as_str()), (200, "once"), "request {i}");
        thread::sleep(Duration::from_millis(80));
    }
    assert_eq!(up.accepted.load(Ordering::SeqCst), 4);
    // The worker kept the upstream's session tickets: later connections resume.
    let resumed = up.seen.lock().unwrap().resumed.clone();
    assert_eq!(resumed, vec![false, true, true, true]);
}

/// Pooled TLS connections survive a reload that keeps the upstream's TLS settings, and are
/// dropped by one that changes them (they were verified under the old ones).
#[test]
fn reload_keeps_tls_connections_only_under_the_same_settings() {
    let p = pki(&["billing.internal"]);
    let up = tls_upstream(
        (&p.server.cert_pem, &p.server.key_pem),
        None,
        answering("ok"),
    );
    let tls = format!(
        "{{ server_name = \"billing.internal\", ca = {} }}",
        q(&p.ca_path)
    );
    let same = config(&up.addr.to_string(), &tls);
    let gw = Gateway::start_workers(&same, 1);
    assert_eq!(get(gw.addr, "/p/1").status, 200);
    assert!(gw.reload(&same));
    assert_eq!(get(gw.addr, "/p/2").status, 200);
    assert_eq!(
        up.accepted.load(Ordering::SeqCst),
        1,
        "kept over an equal reload"
    );
    let changed = config(
        &up.addr.to_string(),
        "{ server_name = \"billing.internal\", verify = false }",
    );
    assert!(gw.reload(&changed));
    assert_eq!(get(gw.addr, "/p/3").status, 200);
    assert_eq!(
        up.accepted.load(Ordering::SeqCst),
        2,
        "new settings, new connection"
    );
    // Sessions verified under the old settings are not resumed under the new ones.
    assert_eq!(up.seen.lock().unwrap().resumed, vec![false, false]);
}

/// TLS 1.3 servers send records that carry no data at any time (session tickets, key
/// updates). One arriving while the connection sits in the pool is not a stray response: the
/// connection stays usable and is reused.
#[test]
fn records_without_data_while_idle_do_not_cost_the_connection() {
    let p = pki(&["billing.internal"]);
    let updated = Arc::new(AtomicUsize::new(0));
    let u2 = updated.clone();
    let handler: Arc<Handler> = Arc::new(move |s: &mut Srv| {
        while let Some(req) = s.next_request() {
            if !s.respond(&format!("answer to {}", req.target)) {
                return;
            }
            thread::sleep(Duration::from_millis(30));
            if !s.key_update() {
                return;
            }
            u2.fetch_add(1, Ordering::SeqCst);
        }
    });
    let up = tls_upstream((&p.server.cert_pem, &p.server.key_pem), None, handler);
    let tls = format!(
        "{{ server_name = \"billing.internal\", ca = {} }}",
        q(&p.ca_path)
    );
    let gw = Gateway::start_workers(&config(&up.addr.to_string(), &tls), 1);
    for i in 0..4 {
        let r = get(gw.addr, &format!("/p/{i}"));
        assert_eq!(
            (r.status, r.text()),
            (200, format!("answer to /p/{i}")),
            "request {i}"
        );
        let want = i + 1;
        wait_for(Duration::from_secs(10), || {
            updated.load(Ordering::SeqCst) >= want
        })
        .expect("key update sent");
        thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        up.accepted.load(Ordering::SeqCst),
        1,
        "key updates while idle must not discard the pooled connection"
    );
}

/// Serves `first` (pieces written `gap` apart, each its own TLS record) as the answer to the
/// first request on the first connection, then answers nothing more there; later connections
/// answer "fresh". Checks that a second client gets "fresh" from a second connection.
fn stray_case(what: &str, first: &'static [&'static [u8]], gap: Duration) {
    let p = pki(&["billing.internal"]);
    let written = Arc::new(AtomicBool::new(false));
    let w2 = written.clone();
    let handler: Arc<Handler> = Arc::new(move |s: &mut Srv| {
        if s.no == 0 {
            if s.next_request().is_none() {
                return;
            }
            for (i, part) in first.iter().enumerate() {
                if i > 0 {
                    thread::sleep(gap);
                }
                if !s.send(part) {
                    return;
                }
            }
            w2.store(true, Ordering::SeqCst);
            // Whatever comes now on this connection is not answered.
            while s.next_request().is_some() {}
            return;
        }
        while s.next_request().is_some() {
            if !s.respond("fresh") {
                return;
            }
        }
    });
    let up = tls_upstream((&p.server.cert_pem, &p.server.key_pem), None, handler);
    let tls = format!(
        "{{ server_name = \"billing.internal\", ca = {} }}",
        q(&p.ca_path)
    );
    let gw = Gateway::start_workers(&config(&up.addr.to_string(), &tls), 1);
    let a = get(gw.addr, "/p/a");
    assert!(a.status < 400, "{what}: {} {}", a.status, a.text());
    wait_for(Duration::from_secs(10), || written.load(Ordering::SeqCst)).expect("stray sent");
    thread::sleep(Duration::from_millis(20));
    let b = get(gw.addr, "/p/b");
    assert_eq!(
        (b.status, b.text().as_str()),
        (200, "fresh"),
        "{what}: client B got another exchange's bytes {}",
        gw.logs()
    );
    assert_eq!(up.accepted.load(Ordering::SeqCst), 2, "{what}");
}

const STRAY: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nSTRAY";

/// Issue 9 over TLS: a complete, unsolicited response written ~50 ms after a 204 on the same
/// connection (so after the connection went back to the pool) must never answer the next
/// client's request.
#[test]
fn stray_response_after_204_never_reaches_the_next_client_over_tls() {
    stray_case(
        "stray 50 ms after a 204",
        &[b"HTTP/1.1 204 No Content\r\n\r\n", STRAY],
        Duration::from_millis(50),
    );
}

/// Bytes right behind a complete response, in the same TLS record or the next one, keep the
/// connection out of the pool (they sit in the read buffer or in rustls's plaintext queue).
#[test]
fn bytes_right_after_a_response_prevent_pooling_over_tls() {
    stray_case(
        "same record",
        &[b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nSTRAY"],
        Duration::ZERO,
    );
    stray_case(
        "next record",
        &[
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
            STRAY,
        ],
        Duration::ZERO,
    );
}

// ---------------------------------------------------------------------------------------
// Failures of the handshake itself

/// An upstream that accepts TCP and never answers the ClientHello: the connect timeout bounds
/// connect + handshake (504), and the next request is not stuck behind it.
#[test]
fn silent_upstream_times_out_the_handshake_with_504() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let held = Arc::new(Mutex::new(Vec::new()));
    let h2 = held.clone();
    thread::spawn(move || {
        for s in l.incoming().flatten() {
            h2.lock().unwrap().push(s);
        }
    });
    let p = pki(&["billing.internal"]);
    let tls = format!(
        "{{ server_name = \"billing.internal\", ca = {} }}",
        q(&p.ca_path)
    );
    let body = config(&addr.to_string(), &tls)
        .replace("connect_timeout = \"1s\"", "connect_timeout = \"300ms\"");
    let gw = Gateway::start(&body);
    let t0 = Instant::now();
    let r = get(gw.addr, "/p/x");
    let took = t0.elapsed();
    assert_eq!(
        (r.status, code(&r).as_str()),
        (504, "upstream_connect_timeout")
    );
    assert!(took < Duration::from_secs(3), "took {took:?}");
    assert!(
        !held.lock().unwrap().is_empty(),
        "the TCP connect did happen"
    );
}

/// A target that answers the ClientHello with plain HTTP is not TLS: 502 `upstream_tls`.
#[test]
fn plain_http_server_behind_a_tls_upstream_is_a_502() {
    let up = Upstream::fixed(200, "plain", "plain");
    let p = pki(&["billing.internal"]);
    let tls = format!(
        "{{ server_name = \"billing.internal\", ca = {} }}",
        q(&p.ca_path)
    );
    let gw = Gateway::start(&config(&up.addr.to_string(), &tls));
    let r = get(gw.addr, "/p/x");
    assert_eq!(
        (r.status, code(&r).as_str()),
        (502, "upstream_tls"),
        "{}",
        r.text()
    );
}

// ---------------------------------------------------------------------------------------
// WebSocket through a TLS upstream

#[test]
fn websocket_tunnel_through_a_tls_upstream() {
    let p = pki(&["billing.internal"]);
    let up = tls_upstream((&p.server.cert_pem, &p.server.key_pem), None, upper_echo());
    let tls = format!(
        "{{ server_name = \"billing.internal\", ca = {} }}",
        q(&p.ca_path)
    );
    let gw = Gateway::start(&config(&up.addr.to_string(), &tls));
    let mut c = TcpStream::connect(gw.addr).unwrap();
    c.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    websocket_exchange(&mut c);
}

/// Both sides TLS: an HTTPS client's WebSocket through a TLS listener to a TLS upstream.
#[test]
fn websocket_tunnel_with_tls_on_both_sides() {
    let p = pki(&["billing.internal"]);
    let front = p.ca.server(
        p.dir.path(),
        "front",
        &["localhost"],
        common::tls::Key::EcdsaP256,
    );
    let up = tls_upstream((&p.server.cert_pem, &p.server.key_pem), None, upper_echo());
    let tls = format!(
        "{{ server_name = \"billing.internal\", ca = {} }}",
        q(&p.ca_path)
    );
    let listener = format!(
        "[listeners.tls]\ncertificates = [{{ cert = {}, key = {} }}]\n\n",
        q(&front.cert_path),
        q(&front.key_path)
    );
    let gw = Gateway::start(&format!("{listener}{}", config(&up.addr.to_string(), &tls)));
    let cfg = common::tls::client_config(&common::tls::ClientOpts {
        ca_pem: &p.ca.pem,
        ..Default::default()
    });
    let tcp = TcpStream::connect(gw.addr).unwrap();
    tcp.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(cfg, name).unwrap();
    let mut c = rustls::StreamOwned::new(conn, tcp);
    websocket_exchange(&mut c);
}

/// An upstream that upgrades the first request and then echoes bytes upper-cased.
fn upper_echo() -> Arc<Handler> {
    Arc::new(|s: &mut Srv| {
        let Some(req) = s.next_request() else { return };
        assert!(req.header("upgrade").is_some());
        if !s.send(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
        ) {
            return;
        }
        let mut buf = [0u8; 1024];
        loop {
            match s.r.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if !s.send(&buf[..n].to_ascii_uppercase()) {
                        return;
                    }
                }
            }
        }
    })
}

/// Upgrades through the gateway on `c` and checks two round trips through the tunnel.
fn websocket_exchange(c: &mut (impl Read + Write)) {
    c.write_all(
        b"GET /p/ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .unwrap();
    c.flush().unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(c.read(&mut b).unwrap(), 1, "eof in the 101 head");
        head.push(b[0]);
    }
    let text = String::from_utf8_lossy(&head);
    assert!(head.starts_with(b"HTTP/1.1 101"), "{text}");
    for word in ["hello", "tunnel"] {
        c.write_all(word.as_bytes()).unwrap();
        c.flush().unwrap();
        let mut got = vec![0u8; word.len()];
        c.read_exact(&mut got).unwrap();
        assert_eq!(got, word.to_ascii_uppercase().as_bytes());
    }
}

// ---------------------------------------------------------------------------------------
// Config errors name file, line and field

fn check_err(body: &str) -> String {
    let (rc, out, err) = check_config(&format!("[[listeners]]\naddress = \"127.0.0.1:0\"\n{body}"));
    assert_ne!(rc, 0, "accepted: {out}");
    err
}

#[test]
fn ip_target_without_server_name_is_refused() {
    let err = check_err(&config("10.0.0.5:443", "true"));
    assert!(err.contains("upstreams.be.targets[0].address"), "{err}");
    assert!(err.contains(":4:"), "line of the target: {err}");
    assert!(err.contains("server_name"), "says what to do: {err}");
}

#[test]
fn mismatched_client_certificate_and_key_are_refused() {
    let p = pki(&["billing.internal"]);
    let a = p.ca.client(p.dir.path(), "a", "a", &[]);
    let b = p.ca.client(p.dir.path(), "b", "b", &[]);
    let tls = format!(
        "{{ server_name = \"billing.internal\", ca = {}, client_cert = {{ cert = {}, key = {} }} }}",
        q(&p.ca_path),
        q(&a.cert_path),
        q(&b.key_path)
    );
    let err = check_err(&config("127.0.0.1:9", &tls));
    assert!(err.contains("upstreams.be.tls.client_cert.key"), "{err}");
    assert!(err.contains("does not match"), "{err}");
}

#[test]
fn bad_tls_settings_are_refused_with_their_field() {
    let p = pki(&["billing.internal"]);
    let missing = p.dir.path().join("nope.pem");
    let cases = [
        (
            format!("{{ server_name = \"b.internal\", ca = {} }}", q(&missing)),
            "upstreams.be.tls.ca",
        ),
        (
            "{ server_name = \"not a name!\" }".to_string(),
            "upstreams.be.tls.server_name",
        ),
        (
            "{ server_name = \"10.0.0.5\" }".to_string(),
            "upstreams.be.tls.server_name",
        ),
        ("{ sni = \"x\" }".to_string(), "unknown field"),
        ("\"yes\"".to_string(), "expected `true`, `false` or a table"),
        (
            format!(
                "{{ server_name = \"b.internal\", ca = {} }}",
                q(&p.server.key_path)
            ),
            "upstreams.be.tls.ca",
        ),
    ];
    for (tls, want) in cases {
        let err = check_err(&config("127.0.0.1:9", &tls));
        assert!(err.contains(want), "tls = {tls}: {err}");
    }
}

/// `tls = true` with no CA of its own needs system roots; with none it is a config error that
/// says what to do, never an upstream that silently fails every handshake.
#[test]
fn no_system_roots_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    let cfg = dir.path().join("ringway.toml");
    let body = config("billing.example:443", "true").replace("billing.example", "localhost");
    std::fs::write(
        &cfg,
        format!("[[listeners]]\naddress = \"127.0.0.1:0\"\n{body}"),
    )
    .unwrap();
    let out = std::process::Command::new(bin())
        .args(["check", "--config"])
        .arg(&cfg)
        .env("SSL_CERT_FILE", &empty)
        .env_remove("SSL_CERT_DIR")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "accepted without any trust anchor");
    assert!(err.contains("upstreams.be.tls"), "{err}");
    assert!(err.contains("no system root certificates"), "{err}");
}

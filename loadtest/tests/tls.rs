//! `rwload run` over TLS, end to end: the real binary against a small rustls HTTPS server in
//! this test (certificates made with rcgen at test time, ECDSA P-256), on ephemeral loopback
//! ports. Checks keep-alive, one-request connections with full and resumed handshakes, the
//! TLS version switch, and that a wrong CA or a server that does not speak TLS show up as
//! `tls` errors instead of responses or panics. Every run is bounded in time.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, PKCS_ECDSA_P256_SHA256};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ServerConfig, ServerConnection, StreamOwned};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_rwload");
const LIMIT: Duration = Duration::from_secs(30);

/// A CA and a leaf for `localhost` signed by it; the CA's PEM is written to `dir/ca.pem`.
struct Pki {
    ca_file: PathBuf,
    chain: Vec<CertificateDer<'static>>,
    key: PrivatePkcs8KeyDer<'static>,
}

fn make_pki(dir: &Path, tag: &str) -> Pki {
    let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let ca_file = dir.join(format!("ca-{tag}.pem"));
    std::fs::write(&ca_file, ca.pem()).unwrap();
    Pki {
        ca_file,
        chain: vec![leaf.der().clone()],
        key: PrivatePkcs8KeyDer::from(key.serialize_der()),
    }
}

/// An HTTPS server answering every request `200 ok` (keep-alive), one thread per
/// connection; it counts accepted connections. Threads end with the test process.
struct Server {
    addr: SocketAddr,
    accepted: Arc<AtomicU64>,
}

fn start_server(pki: &Pki) -> Server {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(pki.chain.clone(), PrivateKeyDer::Pkcs8(pki.key.clone_key()))
        .unwrap();
    // Default session storage: stateful resumption for TLS 1.2 and 1.3.
    let config = Arc::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicU64::new(0));
    let count = accepted.clone();
    std::thread::spawn(move || {
        for sock in listener.incoming().flatten() {
            count.fetch_add(1, Ordering::Relaxed);
            let config = config.clone();
            std::thread::spawn(move || serve(sock, config));
        }
    });
    Server { addr, accepted }
}

fn serve(sock: TcpStream, config: Arc<ServerConfig>) {
    let _ = sock.set_read_timeout(Some(Duration::from_secs(10)));
    let Ok(conn) = ServerConnection::new(config) else {
        return;
    };
    let mut s = StreamOwned::new(conn, sock);
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            buf.drain(..end + 4);
            let resp = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
            if s.write_all(resp).and_then(|()| s.flush()).is_err() {
                return;
            }
        }
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Runs `rwload run ARGS --json -q`; returns (exit code, report or Null, stderr).
fn rwload(args: &[&str]) -> (i32, Value, String) {
    let mut child = Command::new(BIN)
        .arg("run")
        .args(args)
        .args(["--json", "-q"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn rwload");
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let r_out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let r_err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + LIMIT;
    let status = loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("rwload did not exit within {LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let out = r_out.join().unwrap();
    let err = r_err.join().unwrap();
    let v = serde_json::from_str(out.trim()).unwrap_or(Value::Null);
    (status.code().unwrap_or(-1), v, err)
}

fn n(v: &Value, path: &[&str]) -> u64 {
    let mut x = v;
    for p in path {
        x = &x[*p];
    }
    x.as_u64()
        .unwrap_or_else(|| panic!("{path:?} missing in {v}"))
}

fn url(addr: SocketAddr) -> String {
    format!("https://127.0.0.1:{}/x", addr.port())
}

#[test]
fn keepalive_requests_over_verified_tls() {
    let dir = tempfile::tempdir().unwrap();
    let pki = make_pki(dir.path(), "a");
    let srv = start_server(&pki);
    let ca = pki.ca_file.to_str().unwrap();
    let (code, v, err) = rwload(&[
        "--url",
        &url(srv.addr),
        "--cacert",
        ca,
        "--server-name",
        "localhost",
        "-c",
        "4",
        "-n",
        "400",
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(n(&v, &["requests"]), 400, "{v}");
    assert_eq!(v["status"]["200"], 400);
    assert_eq!(n(&v, &["errors", "tls"]), 0, "{v}");
    // Four connections, each handshaking once, counted with its first request.
    assert_eq!(n(&v, &["tls", "handshakes_full"]), 4, "{v}");
    assert_eq!(v["tls"]["version"], "TLSv1.3");
    assert_eq!(v["tls"]["alpn"], "none", "the server offers no ALPN");
    assert_eq!(srv.accepted.load(Ordering::Relaxed), 4);
}

#[test]
fn one_request_per_connection_full_and_resumed_handshakes() {
    let dir = tempfile::tempdir().unwrap();
    let pki = make_pki(dir.path(), "b");
    let srv = start_server(&pki);
    let ca = pki.ca_file.to_str().unwrap();
    let base = [
        "--url",
        &url(srv.addr),
        "--cacert",
        ca,
        "--server-name",
        "localhost",
        "-c",
        "2",
        "-n",
        "40",
        "--new-conn",
    ];
    let (code, v, err) = rwload(&base);
    assert_eq!(code, 0, "{err}");
    assert_eq!(n(&v, &["requests"]), 40, "{v}");
    assert_eq!(n(&v, &["tls", "handshakes_full"]), 40, "{v}");
    assert_eq!(n(&v, &["tls", "handshakes_resumed"]), 0, "{v}");
    assert_eq!(
        srv.accepted.load(Ordering::Relaxed),
        40,
        "one connection per request"
    );

    let mut resumed = base.to_vec();
    resumed.push("--resume");
    let (code, v, err) = rwload(&resumed);
    assert_eq!(code, 0, "{err}");
    assert_eq!(n(&v, &["requests"]), 40, "{v}");
    // Each of the two connection slots pays one full handshake, then resumes.
    assert_eq!(n(&v, &["tls", "handshakes_full"]), 2, "{v}");
    assert_eq!(n(&v, &["tls", "handshakes_resumed"]), 38, "{v}");

    let mut tls12 = resumed.clone();
    tls12.extend(["--tls-version", "1.2"]);
    let (code, v, err) = rwload(&tls12);
    assert_eq!(code, 0, "{err}");
    assert_eq!(v["tls"]["version"], "TLSv1.2", "{v}");
    assert_eq!(n(&v, &["tls", "handshakes_resumed"]), 38, "{v}");
}

#[test]
fn untrusted_certificate_and_plain_server_are_tls_errors() {
    let dir = tempfile::tempdir().unwrap();
    let served = make_pki(dir.path(), "served");
    let other = make_pki(dir.path(), "other");
    let srv = start_server(&served);
    // The client trusts a different CA: every handshake must fail, nothing is a response.
    let (code, v, err) = rwload(&[
        "--url",
        &url(srv.addr),
        "--cacert",
        other.ca_file.to_str().unwrap(),
        "--server-name",
        "localhost",
        "-c",
        "2",
        "-d",
        "300ms",
        "--warmup",
        "0",
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(n(&v, &["requests"]), 0, "{v}");
    assert!(n(&v, &["errors", "tls"]) > 0, "{v}");
    assert!(err.contains("TLS handshake failed"), "{err}");

    // A server that answers the ClientHello with plain HTTP.
    let plain = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = plain.local_addr().unwrap();
    std::thread::spawn(move || {
        for mut s in plain.incoming().flatten() {
            let mut b = [0u8; 1024];
            let _ = s.read(&mut b);
            let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
        }
    });
    let (code, v, err) = rwload(&[
        "--url",
        &url(addr),
        "--insecure",
        "-c",
        "1",
        "-d",
        "300ms",
        "--warmup",
        "0",
        "--new-conn",
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(n(&v, &["requests"]), 0, "{v}");
    assert!(n(&v, &["errors", "tls"]) > 0, "{v}");

    // https:// without a trust decision is a usage error, not a silent insecure run.
    let (code, _, err) = rwload(&["--url", &url(addr), "-n", "1"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--cacert"), "{err}");
}

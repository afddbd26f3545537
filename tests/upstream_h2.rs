//! HTTP/2 to upstreams (`protocol = "http2"`) for HTTP/1.1 clients: an h2-crate server (tokio)
//! as the upstream, counting its connections. Forwarding headers and streamed bodies,
//! multiplexing many requests on few connections, a peer stream limit of 1, and upstreams that
//! misbehave: GOAWAY mid-flight, no answer, a reset stream; over TLS, ALPN h2 or a 502.

mod common;
use common::*;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;

/// What the test upstream saw of one request.
#[derive(Clone, Debug)]
struct Seen {
    path: String,
    authority: String,
    headers: http::HeaderMap,
    body_len: usize,
    trailers: Option<http::HeaderMap>,
}

/// An h2 server on a loopback port. Paths choose its behaviour: `/slow` answers after 200 ms,
/// `/hang` never answers, `/reset` resets the stream, `/goaway` ends the connection with
/// GOAWAY (INTERNAL_ERROR), `/interim` sends 100, 102 and 103 before its answer,
/// `/interim-flood` sends `100 Continue` without end; anything else reads the body and
/// answers `got N bytes`.
struct H2Upstream {
    addr: SocketAddr,
    accepts: Arc<AtomicUsize>,
    /// Connections that have ended.
    closed: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl H2Upstream {
    fn start(
        rt: &tokio::runtime::Runtime,
        max_streams: Option<u32>,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> H2Upstream {
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let accepts = Arc::new(AtomicUsize::new(0));
        let closed = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (a, s, c) = (accepts.clone(), seen.clone(), closed.clone());
        rt.spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                a.fetch_add(1, Ordering::SeqCst);
                let (s, tls, c) = (s.clone(), tls.clone(), c.clone());
                tokio::spawn(async move {
                    match tls {
                        None => serve(tcp, max_streams, s).await,
                        Some(cfg) => {
                            let acceptor = tokio_rustls::TlsAcceptor::from(cfg);
                            if let Ok(t) = acceptor.accept(tcp).await {
                                serve(t, max_streams, s).await;
                            }
                        }
                    }
                    c.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
        H2Upstream {
            addr,
            accepts,
            closed,
            seen,
        }
    }

    fn connections(&self) -> usize {
        self.accepts.load(Ordering::SeqCst)
    }

    fn last(&self) -> Seen {
        self.seen
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("a request")
    }
}

async fn serve<T>(io: T, max_streams: Option<u32>, seen: Arc<Mutex<Vec<Seen>>>)
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut b = ::h2::server::Builder::new();
    if let Some(n) = max_streams {
        b.max_concurrent_streams(n);
    }
    let Ok(mut conn) = b.handshake::<_, Bytes>(io).await else {
        return;
    };
    while let Some(Ok((req, respond))) = conn.accept().await {
        if req.uri().path() == "/goaway" {
            conn.abrupt_shutdown(::h2::Reason::INTERNAL_ERROR);
            drop((req, respond));
            let _ = std::future::poll_fn(|cx| conn.poll_closed(cx)).await;
            return;
        }
        tokio::spawn(handle(req, respond, seen.clone()));
    }
}

async fn handle(
    req: http::Request<::h2::RecvStream>,
    mut respond: ::h2::server::SendResponse<Bytes>,
    seen: Arc<Mutex<Vec<Seen>>>,
) {
    let (parts, mut body) = req.into_parts();
    let mut n = 0;
    while let Some(Ok(chunk)) = body.data().await {
        n += chunk.len();
        let _ = body.flow_control().release_capacity(chunk.len());
    }
    let trailers = body.trailers().await.ok().flatten();
    let path = parts.uri.path().to_string();
    seen.lock().unwrap().push(Seen {
        path: path.clone(),
        authority: parts
            .uri
            .authority()
            .map(|a| a.to_string())
            .unwrap_or_default(),
        headers: parts.headers,
        body_len: n,
        trailers,
    });
    match path.as_str() {
        "/hang" => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            return;
        }
        "/refuse-once"
            if seen
                .lock()
                .unwrap()
                .iter()
                .filter(|s| s.path == path)
                .count()
                == 1 =>
        {
            respond.send_reset(::h2::Reason::REFUSED_STREAM);
            return;
        }
        "/reset" => {
            respond.send_reset(::h2::Reason::INTERNAL_ERROR);
            return;
        }
        "/slow" => tokio::time::sleep(Duration::from_millis(200)).await,
        "/headers-then-reset" => {
            // A head, then the stream fails before any body byte.
            let resp = http::Response::builder()
                .status(200)
                .header("content-length", "10")
                .body(())
                .unwrap();
            if let Ok(mut send) = respond.send_response(resp, false) {
                tokio::time::sleep(Duration::from_millis(50)).await;
                send.send_reset(::h2::Reason::INTERNAL_ERROR);
            }
            return;
        }
        "/nocontent" => {
            let resp = http::Response::builder().status(204).body(()).unwrap();
            let _ = respond.send_response(resp, true);
            return;
        }
        "/interim" => {
            for status in [100, 102, 103] {
                let info = http::Response::builder().status(status).body(()).unwrap();
                let _ = respond.send_informational(info);
            }
        }
        "/interim-flood" => {
            // Interim responses without end: until the gateway gives up on the stream, or 20 s.
            let until = Instant::now() + Duration::from_secs(20);
            while Instant::now() < until {
                let info = http::Response::builder().status(100).body(()).unwrap();
                if respond.send_informational(info).is_err() {
                    return;
                }
                tokio::task::yield_now().await;
            }
            return;
        }
        "/bigheaders" => {
            let resp = http::Response::builder()
                .status(200)
                .header("x-big", "b".repeat(100 * 1024))
                .body(())
                .unwrap();
            let _ = respond.send_response(resp, true);
            return;
        }
        _ => {}
    }
    let resp = http::Response::builder()
        .status(200)
        .header("x-upstream", "h2")
        .body(())
        .unwrap();
    if let Ok(mut send) = respond.send_response(resp, false) {
        let with_trailers = path == "/trailers";
        let _ = send.send_data(Bytes::from(format!("got {n} bytes")), !with_trailers);
        if with_trailers {
            let mut t = http::HeaderMap::new();
            t.insert("x-digest", http::HeaderValue::from_static("sha-256=abc"));
            // Fields a response trailer may not carry (RFC 9110 6.5.1), and one the gateway
            // writes itself.
            t.insert(
                "set-cookie",
                http::HeaderValue::from_static("session=forged"),
            );
            t.insert(
                "content-type",
                http::HeaderValue::from_static("text/forged"),
            );
            t.insert("x-request-id", http::HeaderValue::from_static("forged"));
            let _ = send.send_trailers(t);
        }
    }
}

fn config(addr: SocketAddr, extra: &str) -> String {
    format!(
        "[upstreams.app]\ntargets = [{{ address = \"{addr}\" }}]\nprotocol = \"http2\"\n{extra}\n\n\
         [[routes]]\nname = \"app\"\nprefix = \"/\"\nproxy = {{ upstream = \"app\" }}\n"
    )
}

/// `n` requests for `path` at once, each on its own HTTP/1.1 connection; their statuses.
fn concurrent(addr: SocketAddr, path: &'static str, n: usize) -> Vec<u16> {
    let threads: Vec<_> = (0..n)
        .map(|_| std::thread::spawn(move || request(addr, "GET", path, &[], b"").status))
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).collect()
}

#[test]
fn http1_clients_reach_an_http2_upstream_with_headers_and_streamed_bodies() {
    let rt = common::grpc::runtime();
    let up = H2Upstream::start(&rt, None, None);
    let gw = Gateway::start_workers(&config(up.addr, ""), 1);
    let r = request(gw.addr, "GET", "/hello?x=1", &[("x-custom", "yes")], b"");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "got 0 bytes");
    assert_eq!(r.header("x-upstream"), Some("h2"));
    assert!(r.header("x-request-id").is_some());
    let seen = up.last();
    assert_eq!(seen.path, "/hello");
    assert_eq!(
        seen.authority, "test",
        "the client's Host becomes :authority"
    );
    assert_eq!(seen.headers.get("x-custom").unwrap(), "yes");
    assert_eq!(seen.headers.get("x-forwarded-for").unwrap(), "127.0.0.1");
    assert!(seen.headers.get("x-request-id").is_some());
    assert!(seen.headers.get("connection").is_none());

    // A body larger than any window, with a length and chunked.
    let big = vec![b'a'; 3 * 1024 * 1024 + 17];
    let r = request(gw.addr, "POST", "/upload", &[], &big);
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), format!("got {} bytes", big.len()));
    assert_eq!(up.last().body_len, big.len());
    let mut raw_req =
        b"POST /chunked HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..100 {
        raw_req.extend_from_slice(b"400\r\n");
        raw_req.extend_from_slice(&[b'b'; 0x400]);
        raw_req.extend_from_slice(b"\r\n");
    }
    raw_req.extend_from_slice(b"0\r\n\r\n");
    let mut c = Conn::open(gw.addr);
    c.send(&raw_req);
    let r = c.read_response(false).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "got 102400 bytes");
    assert!(up.last().headers.get("transfer-encoding").is_none());
    assert_eq!(up.connections(), 1, "one connection carried every request");
}

#[test]
fn concurrent_requests_share_upstream_connections() {
    let rt = common::grpc::runtime();
    let up = H2Upstream::start(&rt, None, None);
    let gw = Gateway::start_workers(&config(up.addr, ""), 1);
    let statuses = concurrent(gw.addr, "/slow", 20);
    assert!(statuses.iter().all(|&s| s == 200), "{statuses:?}");
    assert!(
        up.connections() <= 2,
        "{} upstream connections",
        up.connections()
    );
}

#[test]
fn a_peer_limit_of_one_stream_opens_more_connections() {
    let rt = common::grpc::runtime();
    let up = H2Upstream::start(&rt, Some(1), None);
    let gw = Gateway::start_workers(&config(up.addr, ""), 1);
    let started = Instant::now();
    let statuses = concurrent(gw.addr, "/slow", 10);
    assert!(statuses.iter().all(|&s| s == 200), "{statuses:?}");
    assert!(
        up.connections() > 1,
        "{} upstream connections",
        up.connections()
    );
    assert!(
        up.connections() <= 10,
        "{} upstream connections",
        up.connections()
    );
    // Ten 200 ms answers one after another would take 2 s.
    assert!(
        started.elapsed() < Duration::from_millis(1800),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn misbehaving_upstreams_get_clean_errors() {
    let rt = common::grpc::runtime();
    let up = H2Upstream::start(&rt, None, None);
    let gw = Gateway::start_workers(&config(up.addr, "response_timeout = \"500ms\""), 1);
    assert_eq!(get(gw.addr, "/ok").status, 200);
    // GOAWAY while the request is in flight: 502, and the next request gets a new connection.
    assert_eq!(get(gw.addr, "/goaway").status, 502);
    assert_eq!(get(gw.addr, "/ok").status, 200);
    assert_eq!(up.connections(), 2);
    // No answer: 504 within the response timeout.
    let started = Instant::now();
    assert_eq!(get(gw.addr, "/hang").status, 504);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(450) && took < Duration::from_secs(2),
        "{took:?}"
    );
    // A reset stream: 502, the connection stays usable.
    assert_eq!(get(gw.addr, "/reset").status, 502);
    assert_eq!(get(gw.addr, "/ok").status, 200);
    assert_eq!(up.connections(), 2);
}

#[test]
fn bodiless_answers_and_oversized_heads() {
    let rt = common::grpc::runtime();
    let up = H2Upstream::start(&rt, None, None);
    let gw = Gateway::start_workers(&config(up.addr, ""), 1);
    let mut c = Conn::open(gw.addr);
    // HEAD: the upstream sends a body anyway; the client gets none, and the connection
    // carries the next request cleanly.
    c.send(&build_request("HEAD", "/ok", &[], b""));
    let r = c.read_response(true).unwrap();
    assert_eq!(r.status, 200);
    c.send(&build_request("GET", "/nocontent", &[], b""));
    let r = c.read_response(false).unwrap();
    assert_eq!(r.status, 204);
    assert!(r.body.is_empty());
    c.send(&build_request("GET", "/ok", &[], b""));
    let r = c.read_response(false).unwrap();
    assert_eq!(r.text(), "got 0 bytes");
    // A response head larger than the gateway accepts: 502, not a hang.
    let started = Instant::now();
    assert_eq!(get(gw.addr, "/bigheaders").status, 502);
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(get(gw.addr, "/ok").status, 200);
}

/// An HTTP/2 upstream written by hand: it acknowledges SETTINGS and PING, and answers every
/// request stream with the HEADERS block `block` (HPACK, END_STREAM), whatever it is.
fn raw_h2_upstream(block: Vec<u8>) -> SocketAddr {
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for mut s in l.incoming().flatten() {
            let block = block.clone();
            std::thread::spawn(move || {
                s.set_read_timeout(Some(Duration::from_secs(10))).ok();
                let mut preface = [0u8; 24];
                if s.read_exact(&mut preface).is_err() {
                    return;
                }
                let _ = s.write_all(&common::h2::frame(0x4, 0, 0, &[]));
                let mut head = [0u8; 9];
                while s.read_exact(&mut head).is_ok() {
                    let len = usize::from(head[0]) << 16
                        | usize::from(head[1]) << 8
                        | usize::from(head[2]);
                    let mut payload = vec![0u8; len];
                    if s.read_exact(&mut payload).is_err() {
                        return;
                    }
                    let stream =
                        u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
                    let reply = match head[3] {
                        0x4 if head[4] & 1 == 0 => common::h2::frame(0x4, 1, 0, &[]),
                        0x6 if head[4] & 1 == 0 => common::h2::frame(0x6, 1, 0, &payload),
                        0x1 => common::h2::frame(0x1, 0x4 | 0x1, stream, &block),
                        _ => continue,
                    };
                    if s.write_all(&reply).is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// A malformed HTTP/2 response (a field name in upper case, a connection-specific field, no
/// `:status`) is refused by the gateway's side of the stream. It was reported as
/// `upstream_closed` ("the upstream closed the connection"), which sends an operator looking
/// for crashes; it is `upstream_bad_response`, as a malformed HTTP/1.1 response is.
#[test]
fn a_malformed_response_is_a_bad_response_not_a_close() {
    // HPACK: `:status: 200` (static index 8), then a literal field without indexing.
    let literal = |name: &[u8], value: &[u8]| {
        let mut b = vec![0x00, name.len() as u8];
        b.extend_from_slice(name);
        b.push(value.len() as u8);
        b.extend_from_slice(value);
        b
    };
    for (label, block) in [
        (
            "upper-case name",
            [vec![0x88], literal(b"X-Bad", b"1")].concat(),
        ),
        (
            "connection field",
            [vec![0x88], literal(b"connection", b"close")].concat(),
        ),
        ("no :status", literal(b"x-ok", b"1")),
    ] {
        let up = raw_h2_upstream(block);
        let gw = Gateway::start_workers(&config(up, ""), 1);
        let r = get(gw.addr, "/x");
        assert_eq!(r.status, 502, "{label}: {}", r.text());
        assert!(
            r.text().contains("upstream_bad_response"),
            "{label}: {}",
            r.text()
        );
    }
}

#[test]
fn interim_responses_are_dropped_and_bounded() {
    let rt = common::grpc::runtime();
    let up = H2Upstream::start(&rt, None, None);
    let gw = Gateway::start_workers(&config(up.addr, ""), 1);
    // 100, 102 and 103 before the answer: the client gets the final response only.
    let r = get(gw.addr, "/interim");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "got 0 bytes");
    // An endless stream of them is a broken upstream: 502 at once, not a wait until the
    // response deadline (30 s, past this client's 10 s read timeout).
    let r = get(gw.addr, "/interim-flood");
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(r.text().contains("upstream_bad_response"), "{}", r.text());
    // The connection carries the next request.
    assert_eq!(get(gw.addr, "/ok").status, 200);
}

#[test]
fn an_http1_only_server_is_a_502_not_a_hang() {
    // Prior knowledge against a server that speaks only HTTP/1.1.
    let up = Upstream::echo();
    let gw = Gateway::start_workers(&config(up.addr, "connect_timeout = \"1s\""), 1);
    let started = Instant::now();
    let r = get(gw.addr, "/x");
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[test]
fn tls_upstreams_must_choose_alpn_h2() {
    let rt = common::grpc::runtime();
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let dir = tempfile::tempdir().unwrap();
    let ca = common::tls::Ca::new("upstream test ca");
    let ca_file = ca.write(dir.path(), "ca");
    let leaf = ca.server(
        dir.path(),
        "up",
        &["localhost"],
        common::tls::Key::EcdsaP256,
    );
    let server = |alpn: Vec<Vec<u8>>| {
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(leaf.cert_pem.as_bytes())
                .map(|c| c.unwrap())
                .collect();
        let key = PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).unwrap();
        let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
        cfg.alpn_protocols = alpn;
        Arc::new(cfg)
    };
    let h2 = H2Upstream::start(&rt, None, Some(server(vec![b"h2".to_vec()])));
    let h1 = H2Upstream::start(&rt, None, Some(server(vec![])));
    let tls = format!(
        "tls = {{ server_name = \"localhost\", ca = \"{}\" }}",
        ca_file.display()
    );
    let body = format!(
        "[upstreams.good]\ntargets = [{{ address = \"{}\" }}]\nprotocol = \"http2\"\n{tls}\n\n\
         [upstreams.nohttp2]\ntargets = [{{ address = \"{}\" }}]\nprotocol = \"http2\"\n{tls}\n\n\
         [[routes]]\nname = \"good\"\nprefix = \"/good\"\nproxy = {{ upstream = \"good\" }}\n\n\
         [[routes]]\nname = \"bad\"\nprefix = \"/bad\"\nproxy = {{ upstream = \"nohttp2\" }}\n",
        h2.addr, h1.addr
    );
    let gw = Gateway::start_workers(&body, 1);
    let r = get(gw.addr, "/good");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "got 0 bytes");
    let r = get(gw.addr, "/bad");
    assert_eq!(r.status, 502, "{}", r.text());
    assert_eq!(r.json()["code"], "upstream_tls");
    gw.wait_log("did not choose ALPN h2", Duration::from_secs(5));
}

#[test]
fn a_bad_protocol_names_its_field() {
    let (code, _, err) = check_config(
        "[[listeners]]\nname = \"x\"\naddress = \"127.0.0.1:1\"\n\n\
         [upstreams.app]\ntargets = [{ address = \"127.0.0.1:2\" }]\nprotocol = \"h3\"\n",
    );
    assert_ne!(code, 0);
    assert!(err.contains("upstreams.app.protocol"), "{err}");
    assert!(err.contains("\"http2\""), "{err}");
    let (code, out, err) = check_config(
        "[[listeners]]\nname = \"x\"\naddress = \"127.0.0.1:1\"\n\n\
         [upstreams.app]\ntargets = [{ address = \"127.0.0.1:2\" }]\nprotocol = \"http2\"\n",
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("protocol: HTTP/2 (h2c, prior knowledge)"),
        "{out}"
    );
}

#[test]
fn idle_http2_connections_close_after_the_idle_timeout() {
    let rt = common::grpc::runtime();
    let up = H2Upstream::start(&rt, None, None);
    let gw = Gateway::start_workers(&config(up.addr, "idle_timeout = \"1s\""), 1);
    assert_eq!(get(gw.addr, "/ok").status, 200);
    assert_eq!(up.closed.load(Ordering::SeqCst), 0);
    let deadline = Instant::now() + Duration::from_secs(5);
    while up.closed.load(Ordering::SeqCst) == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        up.closed.load(Ordering::SeqCst),
        1,
        "the idle connection was closed"
    );
    // The next request opens a new one.
    assert_eq!(get(gw.addr, "/ok").status, 200);
    assert_eq!(up.connections(), 2);
}

/// An h2c client sends a body with trailers through the gateway: the upstream gets both, and
/// the client gets the upstream's trailers.
#[test]
fn trailers_cross_the_gateway_both_ways() {
    let rt = common::grpc::runtime();
    let up = H2Upstream::start(&rt, None, None);
    let (port, admin) = (free_port(), free_port());
    let text = format!(
        "[[listeners]]\nname = \"test\"\naddress = \"127.0.0.1:{port}\"\nh2c = true\n\n\
         [admin]\naddress = \"127.0.0.1:{admin}\"\n\n{}",
        config(up.addr, "")
    );
    let mut cmd = std::process::Command::new(bin());
    cmd.arg("--workers").arg("1");
    let gw = Gateway::start_full(&text, port, admin, cmd);
    let (body, trailers) = rt.block_on(async {
        let tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
        let (send, conn) = ::h2::client::handshake(tcp).await.unwrap();
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let mut send = send.ready().await.unwrap();
        let req = http::Request::builder()
            .method("POST")
            .uri(format!("http://{}/trailers", gw.addr))
            .body(())
            .unwrap();
        let (resp, mut out) = send.send_request(req, false).unwrap();
        out.send_data(Bytes::from_static(b"hello"), false).unwrap();
        let mut t = http::HeaderMap::new();
        t.insert("x-checksum", http::HeaderValue::from_static("5"));
        // Fields a trailer may not carry: a credential, and what the gateway writes itself.
        t.insert(
            "authorization",
            http::HeaderValue::from_static("Bearer smuggled"),
        );
        t.insert("x-forwarded-for", http::HeaderValue::from_static("6.6.6.6"));
        t.insert("x-request-id", http::HeaderValue::from_static("spoofed"));
        out.send_trailers(t).unwrap();
        let resp = resp.await.unwrap();
        assert_eq!(resp.status(), 200);
        let mut recv = resp.into_body();
        let mut body = Vec::new();
        while let Some(c) = recv.data().await {
            let c = c.unwrap();
            let _ = recv.flow_control().release_capacity(c.len());
            body.extend_from_slice(&c);
        }
        (body, recv.trailers().await.unwrap())
    });
    assert_eq!(body, b"got 5 bytes");
    let seen = up.last();
    let sent = seen.trailers.expect("request trailers reach the upstream");
    assert_eq!(sent.get("x-checksum").unwrap(), "5");
    for owned in ["authorization", "x-forwarded-for", "x-request-id"] {
        assert!(
            sent.get(owned).is_none(),
            "{owned} reached the upstream: {sent:?}"
        );
    }
    let got = trailers.expect("response trailers reach the client");
    assert_eq!(got.get("x-digest").unwrap(), "sha-256=abc");
    for forged in ["set-cookie", "content-type", "x-request-id"] {
        assert!(
            got.get(forged).is_none(),
            "{forged} reached the client: {got:?}"
        );
    }
}

/// The upstream's stream fails after its head, before any body byte: nothing has reached an
/// HTTP/1.1 client yet (the head waits to leave with the body), so it gets a 502, not a
/// closed connection without an answer.
#[test]
fn a_stream_failing_before_its_body_is_a_502() {
    let rt = common::grpc::runtime();
    let up = H2Upstream::start(&rt, None, None);
    let gw = Gateway::start_workers(&config(up.addr, ""), 1);
    let r = get(gw.addr, "/headers-then-reset");
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(r.text().contains("upstream_aborted"), "{}", r.text());
    assert_eq!(
        get(gw.addr, "/ok").status,
        200,
        "the next request is served"
    );
}

#[test]
fn a_refused_stream_is_retried_when_the_request_can_be_resent() {
    let rt = common::grpc::runtime();
    let up = H2Upstream::start(&rt, None, None);
    let gw = Gateway::start_workers(&config(up.addr, ""), 1);
    // GET, whole body at hand: resent once on REFUSED_STREAM.
    let r = get(gw.addr, "/refuse-once");
    assert_eq!(r.status, 200, "{}", r.text());
    let tries = up
        .seen
        .lock()
        .unwrap()
        .iter()
        .filter(|s| s.path == "/refuse-once")
        .count();
    assert_eq!(tries, 2);

    // POST too: REFUSED_STREAM says the upstream did not process it (RFC 9113 §8.7), and its
    // small body is still at hand, so it is resent once, body and all.
    let up = H2Upstream::start(&rt, None, None);
    let gw = Gateway::start_workers(&config(up.addr, ""), 1);
    let r = request(gw.addr, "POST", "/refuse-once", &[], b"a=1");
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = up.seen.lock().unwrap();
    let tries: Vec<_> = seen.iter().filter(|s| s.path == "/refuse-once").collect();
    assert_eq!(tries.len(), 2);
    assert_eq!(tries[1].body_len, 3, "the body went out again");
}

#[test]
fn a_reload_keeps_the_http2_connection() {
    let rt = common::grpc::runtime();
    let up = H2Upstream::start(&rt, None, None);
    let body = config(up.addr, "");
    let gw = Gateway::start_workers(&body, 1);
    assert_eq!(get(gw.addr, "/ok").status, 200);
    let more = format!(
        "{body}\n[[routes]]\nname = \"other\"\npath = \"/other\"\nstatic = {{ body = \"x\" }}\n"
    );
    assert!(gw.reload(&more));
    assert_eq!(get(gw.addr, "/ok").status, 200);
    assert_eq!(get(gw.addr, "/other").status, 200);
    assert_eq!(up.connections(), 1, "the connection survived the reload");
}

/// A hand-written HTTP/2 server that answers each request with `:status 200` after sending
/// `pings` PING frames (no ACK flag) on the connection. Counts connections and how many of
/// them the gateway ended (EOF or reset while the server was reading).
struct PingingUpstream {
    addr: SocketAddr,
    accepts: Arc<AtomicUsize>,
    ended_by_gateway: Arc<AtomicUsize>,
}

impl PingingUpstream {
    fn start(pings: usize) -> PingingUpstream {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let accepts = Arc::new(AtomicUsize::new(0));
        let ended = Arc::new(AtomicUsize::new(0));
        let (a, e) = (accepts.clone(), ended.clone());
        std::thread::spawn(move || {
            for tcp in listener.incoming() {
                let Ok(tcp) = tcp else { return };
                a.fetch_add(1, Ordering::SeqCst);
                let e = e.clone();
                std::thread::spawn(move || {
                    if serve_pinging(tcp, pings).is_err() {
                        e.fetch_add(1, Ordering::SeqCst);
                    }
                });
            }
        });
        PingingUpstream {
            addr,
            accepts,
            ended_by_gateway: ended,
        }
    }
}

fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len();
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// Serves one connection until the gateway ends it: `Err` when it did (EOF or a reset).
fn serve_pinging(mut tcp: std::net::TcpStream, pings: usize) -> std::io::Result<()> {
    use std::io::{Read, Write};
    tcp.set_read_timeout(Some(Duration::from_secs(20)))?;
    let mut preface = [0u8; 24];
    tcp.read_exact(&mut preface)?;
    tcp.write_all(&h2_frame(0x4, 0, 0, &[]))?;
    loop {
        let mut head = [0u8; 9];
        tcp.read_exact(&mut head)?;
        let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
        let (kind, flags) = (head[3], head[4]);
        let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        let mut payload = vec![0u8; len];
        tcp.read_exact(&mut payload)?;
        match kind {
            0x4 if flags & 1 == 0 => tcp.write_all(&h2_frame(0x4, 1, 0, &[]))?,
            0x6 if flags & 1 == 0 => tcp.write_all(&h2_frame(0x6, 1, 0, &payload))?,
            0x1 => {
                let mut out = Vec::new();
                for i in 0..pings {
                    out.extend(h2_frame(0x6, 0, 0, &(i as u64).to_be_bytes()));
                }
                // HPACK static index 8 is `:status: 200`; END_STREAM | END_HEADERS.
                out.extend(h2_frame(0x1, 0x5, stream, &[0x88]));
                tcp.write_all(&out)?;
            }
            _ => {}
        }
    }
}

#[test]
fn an_upstream_flooding_pings_loses_its_connection_not_the_worker() {
    let flooding = PingingUpstream::start(2_000);
    let polite = PingingUpstream::start(1);
    let cfg = format!(
        "[upstreams.flood]\ntargets = [{{ address = \"{}\" }}]\nprotocol = \"http2\"\n\
         [upstreams.polite]\ntargets = [{{ address = \"{}\" }}]\nprotocol = \"http2\"\n\n\
         [[routes]]\nname = \"flood\"\nprefix = \"/flood\"\nproxy = {{ upstream = \"flood\" }}\n\n\
         [[routes]]\nname = \"polite\"\nprefix = \"/polite\"\nproxy = {{ upstream = \"polite\" }}\n",
        flooding.addr, polite.addr
    );
    let gw = Gateway::start_workers(&cfg, 1);
    // An upstream that pings once per answer (a keep-alive or bandwidth probe) keeps its
    // connection and answers.
    for _ in 0..3 {
        assert_eq!(get(gw.addr, "/polite").status, 200);
    }
    assert_eq!(polite.accepts.load(Ordering::SeqCst), 1);
    // 2 000 PINGs before the answer: the gateway stops reading at the budget, closes the
    // connection and the request fails cleanly instead of being answered by the flood.
    let started = Instant::now();
    assert_eq!(get(gw.addr, "/flood").status, 502);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(
        wait_for(Duration::from_secs(5), || flooding
            .ended_by_gateway
            .load(Ordering::SeqCst)
            == 1)
        .is_some(),
        "the gateway closed the flooding connection"
    );
    let s = scrape_until(
        gw.admin,
        "ringway_upstream_http2_flood_closes_total",
        &[("kind", "pings")],
        1.0,
    );
    assert_eq!(
        metric(
            &s,
            "ringway_upstream_http2_flood_closes_total",
            &[("kind", "pings")]
        ),
        Some(1.0)
    );
    // The worker is free, and the polite upstream's connection untouched.
    assert_eq!(get(gw.addr, "/polite").status, 200);
    assert_eq!(polite.accepts.load(Ordering::SeqCst), 1);
    assert_eq!(polite.ended_by_gateway.load(Ordering::SeqCst), 0);
}

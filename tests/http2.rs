//! HTTP/2 end to end: h2c (prior knowledge) and h2 over TLS (ALPN) through the same routes,
//! policies and upstreams as HTTP/1.1.
mod common;
use common::h2::*;
use common::*;

use std::net::SocketAddr;
use std::thread;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------
// The harness's own HTTP/2 clients, checked against the h2 crate's server (no gateway).

/// A local h2 server: answers `/status/<n>` with status n, anything else 200; the body says
/// how many request body bytes arrived and which request trailers; it sends a trailer back.
fn local_h2_server() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    l.set_nonblocking(true).unwrap();
    thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let l = tokio::net::TcpListener::from_std(l).unwrap();
            while let Ok((s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let Ok(mut conn) = ::h2::server::handshake(s).await else {
                        return;
                    };
                    while let Some(Ok((req, respond))) = conn.accept().await {
                        tokio::spawn(local_answer(req, respond));
                    }
                });
            }
        });
    });
    addr
}

async fn local_answer(
    req: http::Request<::h2::RecvStream>,
    mut respond: ::h2::server::SendResponse<bytes::Bytes>,
) {
    let status: u16 = req
        .uri()
        .path()
        .strip_prefix("/status/")
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let mut body = req.into_body();
    let mut n = 0;
    while let Some(Ok(c)) = body.data().await {
        let _ = body.flow_control().release_capacity(c.len());
        n += c.len();
    }
    let trailers = body.trailers().await.ok().flatten().unwrap_or_default();
    let text = format!("{n} {:?}", trailers.get("x-t"));
    let resp = http::Response::builder().status(status).body(()).unwrap();
    let Ok(mut tx) = respond.send_response(resp, false) else {
        return;
    };
    let _ = tx.send_data(text.into(), false);
    let mut t = http::HeaderMap::new();
    t.insert("x-done", "yes".parse().unwrap());
    let _ = tx.send_trailers(t);
}

#[test]
fn harness_hpack_integers_and_huffman_digits_match_rfc7541() {
    // RFC 7541 C.1.1 and C.1.2: 10 and 1337 with a 5-bit prefix.
    assert_eq!(hpack::int(5, 0, 10), vec![0x0a]);
    assert_eq!(hpack::int(5, 0, 1337), vec![0x1f, 0x9a, 0x0a]);
    assert_eq!(read_int(&[0x1f, 0x9a, 0x0a], 5), Some((1337, 3)));
    // C.6.1 ":status: 302" and C.6.2 "307", Huffman coded.
    assert_eq!(huffman_digits(&[0x64, 0x02]), Some(b"302".to_vec()));
    assert_eq!(huffman_digits(&[0x64, 0x0e, 0xff]), Some(b"307".to_vec()));
}

#[test]
fn harness_clients_work_against_the_h2_crate_server() {
    let addr = local_h2_server();
    let mut c = H2Client::h2c(addr).unwrap();
    let r = c
        .send(
            H2Req::new("POST", "/x")
                .body(&b"hello"[..])
                .trailer("x-t", "v1"),
        )
        .unwrap();
    assert_eq!((r.status, r.text()), (200, "5 Some(\"v1\")".to_string()));
    assert_eq!(r.trailer("x-done"), Some("yes"));
    let rs = c.concurrent(
        (0..20)
            .map(|i| H2Req::get(&format!("/status/{}", 200 + i)))
            .collect(),
    );
    for (i, r) in rs.into_iter().enumerate() {
        assert_eq!(r.unwrap().status, 200 + i as u16);
    }
    let r = c.upload_pattern("POST", "/up", 3 << 20).unwrap();
    assert_eq!(r.text(), format!("{} None", 3 << 20));

    // The raw client reads statuses: static (200), literal Huffman (431), then the same
    // status again from the dynamic table.
    let mut raw = RawH2::connect(addr, &[]);
    for (i, path) in ["/", "/status/431", "/status/431", "/status/404"]
        .iter()
        .enumerate()
    {
        let id = 1 + 2 * i as u32;
        assert!(raw.request(id, "GET", path, true));
        let (s, ok) = raw.wait_stream_end(id, Duration::from_secs(5));
        assert!(ok, "{s:?}");
    }
    let s = raw.seen();
    let got: Vec<_> = [1, 3, 5, 7].iter().map(|id| s.status_of(*id)).collect();
    assert_eq!(
        got,
        vec![Some(200), Some(431), Some(431), Some(404)],
        "{s:?}"
    );
    // A protocol error (DATA on stream 0) gets a GOAWAY PROTOCOL_ERROR and a close.
    raw.send_frame(kind::DATA, 0, 0, b"x");
    let g = raw.wait_goaway(Duration::from_secs(5)).expect("GOAWAY");
    assert_eq!(g.code, code::PROTOCOL_ERROR);
    assert!(raw.wait_closed(Duration::from_secs(5)));
}

// ---------------------------------------------------------------------------------------
// Gateway fixtures

const MIB: u64 = 1 << 20;
/// How long any single wait in these tests may take (generous: the machine may be loaded).
const WAIT: Duration = Duration::from_secs(10);

/// Proxy `/api` and `/p` to `up`, a static `/s`, and room for large bodies.
fn routes(up: &Upstream) -> String {
    format!(
        "{}\n[[routes]]\nname = \"api\"\nprefix = \"/api\"\nmax_body_bytes = \"1GiB\"\nproxy = {{ upstream = \"app\" }}\n\n\
         [[routes]]\nname = \"p\"\nprefix = \"/p\"\nmax_body_bytes = \"1GiB\"\nproxy = {{ upstream = \"app\" }}\n\n\
         [[routes]]\nname = \"s\"\npath = \"/s\"\nstatic = {{ body = \"static-ok\" }}\n",
        upstream_toml("app", &[up.addr])
    )
}

/// A CA and a `localhost` server certificate for a TLS listener.
struct Pki {
    ca: tls::Ca,
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Pki {
        Pki {
            ca: tls::Ca::new("ringway h2 test CA"),
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// `[listeners.tls]` with the certificate and `extra` lines (e.g. `alpn = [...]`).
    fn table(&self, extra: &str) -> String {
        let c = self.ca.server(
            self.dir.path(),
            "localhost",
            &["localhost"],
            tls::Key::EcdsaP256,
        );
        format!(
            "[listeners.tls]\ncertificates = [{{ cert = \"{}\", key = \"{}\" }}]\n{extra}\n\n",
            c.cert_path.display(),
            c.key_path.display()
        )
    }

    fn h1_client(&self, alpn: &[&[u8]]) -> std::sync::Arc<rustls::ClientConfig> {
        tls::client_config(&tls::ClientOpts {
            ca_pem: &self.ca.pem,
            alpn,
            ..Default::default()
        })
    }
}

/// An upstream answering `GET /.../<bytes>` with that many pattern bytes (Content-Length),
/// and any request with a body with `"<len> ok"` or `"<len> bad@<pos>"` after checking it.
fn pattern_upstream() -> Upstream {
    Upstream::start(std::sync::Arc::new(
        |req: &Received, s: &mut std::net::TcpStream| {
            use std::io::Write;
            if req.method == "GET" {
                let len: u64 = req
                    .target
                    .rsplit('/')
                    .next()
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0);
                let _ = write!(s, "HTTP/1.1 200 OK\r\nContent-Length: {len}\r\n\r\n");
                let mut buf = vec![0u8; 256 << 10];
                let mut pos = 0;
                while pos < len {
                    let n = (len - pos).min(buf.len() as u64) as usize;
                    fill_pattern(pos, &mut buf[..n]);
                    if s.write_all(&buf[..n]).is_err() {
                        return Reply::Close;
                    }
                    pos += n as u64;
                }
            } else {
                let mut c = PatternCheck::default();
                c.update(&req.body);
                let verdict = match c.first_bad {
                    None => format!("{} ok", c.pos),
                    Some(p) => format!("{} bad@{p}", c.pos),
                };
                let _ = write!(
                    s,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{verdict}",
                    verdict.len()
                );
            }
            Reply::KeepAlive
        },
    ))
}

/// Samples a process's RSS every 10 ms until stopped; `stop` returns the peak (KiB).
struct RssSampler {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    handle: thread::JoinHandle<u64>,
}

impl RssSampler {
    fn start(pid: i32) -> RssSampler {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let st = stop.clone();
        let handle = thread::spawn(move || {
            let mut peak = 0;
            let deadline = std::time::Instant::now() + Duration::from_secs(120);
            while !st.load(std::sync::atomic::Ordering::Relaxed)
                && std::time::Instant::now() < deadline
            {
                peak = peak.max(rss_kib(pid));
                thread::sleep(Duration::from_millis(10));
            }
            peak.max(rss_kib(pid))
        });
        RssSampler { stop, handle }
    }

    fn stop(self) -> u64 {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.handle.join().unwrap()
    }
}

// ---------------------------------------------------------------------------------------
// Basics

#[test]
fn h2c_serves_get_post_head_static_and_gateway_404() {
    let up = Upstream::echo();
    let gw = start_h2c(&routes(&up));
    let mut c = H2Client::h2c(gw.addr).expect("h2c connection");

    let r = c.get("/api/items?page=2").unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let j = r.json();
    assert_eq!(
        (j["method"].as_str(), j["target"].as_str()),
        (Some("GET"), Some("/api/items?page=2"))
    );
    // The HTTP/1.1 upstream gets a Host header made from :authority.
    let got = up.last();
    assert_eq!(got.version, "HTTP/1.1");
    assert_eq!(got.header("host"), Some("test"));

    let r = c
        .request(
            "POST",
            "/api/echo",
            &[("content-type", "text/plain")],
            b"hello over h2",
        )
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["body"], "hello over h2");
    assert_eq!(up.last().body, b"hello over h2");

    let r = c.request("HEAD", "/api/head", &[], b"").unwrap();
    assert_eq!(r.status, 200);
    assert!(r.body.is_empty(), "HEAD response has a body: {}", r.text());
    assert_eq!(up.last().method, "HEAD");

    let r = c.get("/s").unwrap();
    assert_eq!((r.status, r.text()), (200, "static-ok".to_string()));

    let before = up.count();
    let r = c.get("/nowhere").unwrap();
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(
        up.count(),
        before,
        "an unrouted request reached the upstream"
    );

    // All of it on one connection, which is still usable.
    assert_eq!(c.get("/s").unwrap().status, 200);
}

#[test]
fn h2c_listener_still_serves_http1() {
    let up = Upstream::echo();
    let gw = start_h2c(&routes(&up));
    let r = get(gw.addr, "/s");
    assert_eq!(
        (r.status, r.version.as_str(), r.text()),
        (200, "HTTP/1.1", "static-ok".to_string())
    );
    let r = get(gw.addr, "/api/x");
    assert_eq!(r.status, 200);
}

#[test]
fn h2c_is_off_by_default_and_never_by_upgrade() {
    let up = Upstream::echo();
    let gw = Gateway::start(&routes(&up));
    // The prior-knowledge preface on a plain listener without `h2c` is not HTTP/2.
    let mut hello = PREFACE.to_vec();
    hello.extend(settings_frame(&[]));
    let got = raw(gw.addr, &hello);
    let text = String::from_utf8_lossy(&got);
    // An HTTP/1.1 error (400, or 505 for the "HTTP/2.0" version) and a close, or just a close.
    assert!(
        got.is_empty() || (text.starts_with("HTTP/1.1 ") && first_status(&got) >= 400),
        "a plain listener answered the h2 preface with {text:?}"
    );
    assert!(
        !(got.len() >= 9 && got[3] == kind::SETTINGS),
        "a plain listener without h2c answered with an HTTP/2 SETTINGS frame"
    );
    assert!(
        H2Client::h2c(gw.addr)
            .and_then(|mut c| c.get("/s"))
            .is_err(),
        "an h2c client got a response from a listener without h2c"
    );
    // `Upgrade: h2c` is not honoured either: the request is served as HTTP/1.1.
    let r = request(
        gw.addr,
        "GET",
        "/s",
        &[
            ("Connection", "Upgrade, HTTP2-Settings"),
            ("Upgrade", "h2c"),
            ("HTTP2-Settings", "AAMAAABkAAQAAP__"),
        ],
        b"",
    );
    assert_eq!((r.status, r.version.as_str()), (200, "HTTP/1.1"));
    assert_eq!(up.count(), 0);
}

#[test]
fn h2_over_tls_is_negotiated_by_alpn_by_default() {
    let pki = Pki::new();
    let up = Upstream::echo();
    let gw = Gateway::start(&format!("{}{}", pki.table(""), routes(&up)));
    let mut c = H2Client::tls(gw.addr, &pki.ca.pem, "localhost").expect("h2 over TLS");
    assert_eq!(c.alpn.as_deref(), Some(&b"h2"[..]));
    let r = c.get("/api/tls").unwrap();
    assert_eq!(r.status, 200);
    let got = up.last();
    assert_eq!(got.header("x-forwarded-proto"), Some("https"));
    let r = c.request("POST", "/api/tls", &[], b"over tls").unwrap();
    assert_eq!(r.json()["body"], "over tls");
    assert_eq!(c.get("/nowhere").unwrap().status, 404);
}

#[test]
fn http1_still_works_on_a_tls_listener_that_offers_h2() {
    let pki = Pki::new();
    let up = Upstream::echo();
    let gw = Gateway::start(&format!(
        "{}{}",
        pki.table("alpn = [\"h2\", \"http/1.1\"]"),
        routes(&up)
    ));
    // A client offering only http/1.1 gets it; one offering no ALPN at all gets HTTP/1.1 too.
    for (offer, want) in [
        (&[&b"http/1.1"[..]][..], Some(&b"http/1.1"[..])),
        (&[][..], None),
    ] {
        let mut c =
            tls::TlsConn::open(gw.addr, "localhost", &pki.h1_client(offer)).expect("handshake");
        assert_eq!(c.alpn().as_deref(), want);
        let r = c.get("/s").unwrap();
        assert_eq!(
            (r.status, r.version.as_str(), r.text()),
            (200, "HTTP/1.1", "static-ok".to_string())
        );
    }
    // And h2 on the same listener.
    let mut c = H2Client::tls(gw.addr, &pki.ca.pem, "localhost").expect("h2 over TLS");
    assert_eq!(c.get("/s").unwrap().text(), "static-ok");
}

const KEY_SECRET: &str = "an-hmac-secret-of-sufficient-length";

#[test]
fn api_key_policy_applies_to_http2_requests() {
    let dir = tempfile::tempdir().unwrap();
    let keys_file = dir.path().join("keys.toml");
    let cli = dir.path().join("cli.toml");
    std::fs::write(
        &cli,
        format!(
            "[api_keys]\nfile = \"{}\"\nhash = \"hmac-sha256\"\n",
            keys_file.display()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(bin())
        .args(["keys", "create", "--consumer", "alice", "--config"])
        .arg(&cli)
        .env("RINGWAY_KEY_SECRET", KEY_SECRET)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key = String::from_utf8_lossy(&out.stdout).trim().to_string();

    let pki = Pki::new();
    let up = Upstream::echo();
    let gw = Gateway::start_env(
        &format!(
            "{}[api_keys]\nfile = \"{}\"\nhash = \"hmac-sha256\"\n\n\
             [policies.key]\napi_key = {{ headers = [\"x-api-key\"] }}\n\n{}\n\
             [[routes]]\nname = \"api\"\nprefix = \"/api\"\npolicies = [\"key\"]\nproxy = {{ upstream = \"app\" }}\n",
            pki.table(""),
            keys_file.display(),
            upstream_toml("app", &[up.addr])
        ),
        2,
        &[("RINGWAY_KEY_SECRET", KEY_SECRET)],
    );
    let mut c = H2Client::tls(gw.addr, &pki.ca.pem, "localhost").unwrap();
    let r = c.get("/api/private").unwrap();
    assert_eq!(r.status, 401, "{}", r.text());
    assert!(r.header("www-authenticate").is_some(), "{:?}", r.headers);
    let r = c
        .request("GET", "/api/private", &[("x-api-key", "rwk_wrong")], b"")
        .unwrap();
    assert_eq!(r.status, 401);
    assert_eq!(up.count(), 0, "a refused request reached the upstream");
    let r = c
        .request("GET", "/api/private", &[("x-api-key", &key)], b"")
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let got = up.last();
    assert_eq!(
        got.header("x-api-key"),
        None,
        "the key reached the upstream"
    );
}

// ---------------------------------------------------------------------------------------
// Multiplexing, trailers, large bodies

#[test]
fn concurrent_streams_on_one_connection_are_in_flight_together() {
    // The upstream holds each request until N are in flight at once: only a gateway that
    // multiplexes the client's streams (and opens N upstream connections) gets "together".
    const N: usize = 16;
    let inflight = std::sync::Arc::new((std::sync::Mutex::new(0usize), std::sync::Condvar::new()));
    let f = inflight.clone();
    let up = Upstream::start(std::sync::Arc::new(
        move |_req: &Received, s: &mut std::net::TcpStream| {
            use std::io::Write;
            let (m, cv) = &*f;
            let mut n = m.lock().unwrap();
            *n += 1;
            cv.notify_all();
            let (n, _) = cv
                .wait_timeout_while(n, Duration::from_secs(10), |n| *n < N)
                .unwrap();
            let word = if *n >= N { "together" } else { "alone" };
            drop(n);
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{word}",
                word.len()
            );
            Reply::KeepAlive
        },
    ));
    let gw = start_h2c(&routes(&up));
    let mut c = H2Client::h2c(gw.addr).unwrap();
    let t = std::time::Instant::now();
    let rs = c.concurrent((0..N).map(|i| H2Req::get(&format!("/p/{i}"))).collect());
    for (i, r) in rs.into_iter().enumerate() {
        let r = r.unwrap_or_else(|e| panic!("stream {i}: {e:?}"));
        assert_eq!(
            (r.status, r.text()),
            (200, "together".to_string()),
            "stream {i}"
        );
    }
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "streams were serialized: {:?}",
        t.elapsed()
    );
    assert_eq!(up.count(), N);
    assert_eq!(
        up.connections(),
        N,
        "N requests in flight need N upstream connections"
    );
    // ... and the gateway saw them all arrive on a single client connection.
    let m = scrape(gw.admin);
    assert_eq!(
        metric(&m, "ringway_http2_connections_total", &[]),
        Some(1.0)
    );
}

#[test]
fn request_trailers_reach_an_http1_upstream_as_chunked_trailers() {
    let up = Upstream::echo();
    let gw = start_h2c(&routes(&up));
    let mut c = H2Client::h2c(gw.addr).unwrap();
    let r = c
        .send(
            H2Req::new("POST", "/p/trailers")
                .body(&b"payload"[..])
                .trailer("x-checksum", "abc123"),
        )
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["body"], "payload");
    let got = up.last();
    assert_eq!(
        got.framing, "chunked",
        "a body with trailers must be chunked to HTTP/1.1"
    );
    let raw = up.raw_text().to_ascii_lowercase();
    assert!(
        raw.contains("0\r\nx-checksum: abc123\r\n"),
        "trailer not forwarded: {raw:?}"
    );
}

#[test]
fn response_trailers_from_an_http1_upstream_reach_the_h2_client() {
    let up = Upstream::start(std::sync::Arc::new(
        |_req: &Received, s: &mut std::net::TcpStream| {
            use std::io::Write;
            let _ = s.write_all(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: x-result\r\n\r\n5\r\nhello\r\n0\r\nx-result: fine\r\n\r\n",
        );
            Reply::KeepAlive
        },
    ));
    let gw = start_h2c(&routes(&up));
    let mut c = H2Client::h2c(gw.addr).unwrap();
    let r = c.send(H2Req::get("/p/t").header("te", "trailers")).unwrap();
    assert_eq!((r.status, r.text()), (200, "hello".to_string()));
    assert_eq!(
        r.trailer("x-result"),
        Some("fine"),
        "trailers: {:?}",
        r.trailers
    );
}

#[test]
fn large_upload_and_download_stream_intact_with_flat_memory() {
    let up = pattern_upstream();
    let gw = start_h2c(&routes(&up));
    let pid = gw.pid();
    let mut c = H2Client::h2c(gw.addr).unwrap();
    // Warm both paths before the baseline.
    assert_eq!(
        c.upload_pattern("POST", "/p/up", MIB).unwrap().text(),
        format!("{MIB} ok")
    );
    let (_, n) = c.download(&format!("/p/down/{MIB}"), |_| {}).unwrap();
    assert_eq!(n, MIB);
    let baseline = rss_kib(pid);
    assert!(baseline > 0, "cannot read gateway RSS");
    let sampler = RssSampler::start(pid);

    let len = 64 * MIB + 12_345;
    let r = c.upload_pattern("POST", "/p/up", len).unwrap();
    assert_eq!((r.status, r.text()), (200, format!("{len} ok")));
    let mut check = PatternCheck::default();
    let (r, n) = c
        .download(&format!("/p/down/{len}"), |d| check.update(d))
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!((n, check.pos, check.first_bad), (len, len, None));

    let peak = sampler.stop();
    let growth = peak.saturating_sub(baseline) / 1024;
    eprintln!("64 MiB up + 64 MiB down over h2c: RSS baseline {baseline} KiB, peak {peak} KiB");
    assert!(
        growth < 32,
        "gateway RSS grew by {growth} MiB while 128 MiB streamed through it"
    );
}

#[test]
fn a_client_that_stops_reading_holds_one_window_and_memory_stays_flat() {
    let up = pattern_upstream();
    let gw = start_h2c(&routes(&up));
    let pid = gw.pid();
    let mut warm = H2Client::h2c(gw.addr).unwrap();
    assert_eq!(warm.download(&format!("/p/{MIB}"), |_| {}).unwrap().1, MIB);
    let baseline = rss_kib(pid);
    let sampler = RssSampler::start(pid);

    let len = 128 * MIB;
    let mut c = H2Client::h2c(gw.addr).unwrap();
    let mut stalled = c.open_stalled(&format!("/p/{len}")).unwrap();
    assert_eq!(stalled.status, 200);
    let held = c
        .pump_stalled(&mut stalled, Duration::from_secs(3))
        .unwrap();
    // The client's stream window is 65535: the gateway may send that much, never more.
    assert!(
        held <= 65_535,
        "the gateway sent {held} bytes past a 65535-byte window"
    );
    // Other clients, and other streams on the same connection, are unaffected.
    assert_eq!(warm.get("/s").unwrap().text(), "static-ok");
    assert_eq!(c.get("/s").unwrap().text(), "static-ok");
    assert_eq!(get(gw.addr, "/s").status, 200);
    let peak = sampler.stop();
    let growth = peak.saturating_sub(baseline) / 1024;
    eprintln!("stalled 128 MiB download: RSS baseline {baseline} KiB, peak {peak} KiB");
    assert!(
        growth < 32,
        "gateway RSS grew by {growth} MiB behind a stalled client"
    );

    // Once the client reads again, the whole body arrives intact.
    let (n, check) = c.resume(stalled).unwrap();
    assert_eq!((n, check.first_bad), (len, None));
}

// ---------------------------------------------------------------------------------------
// Drain, reload, logs, metrics

#[test]
fn sigterm_sends_goaway_finishes_in_flight_streams_and_refuses_new_ones() {
    let gate = Gate::new();
    let g = gate.clone();
    let up = Upstream::start(std::sync::Arc::new(
        move |_req: &Received, s: &mut std::net::TcpStream| {
            use std::io::Write;
            g.wait(Duration::from_secs(60));
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ndone");
            Reply::KeepAlive
        },
    ));
    let mut gw = start_h2c(&format!(
        "[server]\ndrain_timeout = \"60s\"\n\n{}",
        routes(&up)
    ));
    let mut raw = RawH2::connect(gw.addr, &[]);
    assert!(raw.request(1, "GET", "/p/slow", true));
    up.wait_for_count(1, WAIT);
    gw.signal(libc::SIGTERM);

    // A GOAWAY NO_ERROR naming stream 1 as the last one accepted (h2 may first send one with
    // 2^31-1 and a PING, then the final one).
    let (s, ok) = raw.wait(WAIT, |s| {
        s.goaways
            .iter()
            .any(|g| g.code == code::NO_ERROR && g.last_stream == 1)
    });
    assert!(
        ok,
        "no GOAWAY(NO_ERROR, last=1) after SIGTERM: {:?}",
        s.goaways
    );
    assert!(
        s.goaways.iter().all(|g| g.code == code::NO_ERROR),
        "{:?}",
        s.goaways
    );
    assert!(
        !s.answered(1) && s.reset_of(1).is_none(),
        "the in-flight stream was ended: {s:?}"
    );

    // A new stream after the GOAWAY (checked once the connection has ended, below).
    raw.request(3, "GET", "/p/after-goaway", true);

    // The in-flight stream completes, then the connection ends and the process exits 0.
    gate.open();
    let (s, ok) = raw.wait_stream_end(1, WAIT);
    assert!(ok, "{s:?}");
    assert_eq!(s.status_of(1), Some(200), "{s:?}");
    assert_eq!(s.data.get(&1).copied(), Some(4));
    assert!(s.ended.contains(&1), "stream 1 did not end cleanly: {s:?}");
    assert!(
        raw.wait_closed(WAIT),
        "connection still open after the drain"
    );
    let s = raw.seen();
    assert!(!s.answered(3), "stream 3 was served after GOAWAY: {s:?}");
    assert_eq!(up.count(), 1, "stream 3 reached the upstream after GOAWAY");
    let st = gw
        .wait_exit(Duration::from_secs(30))
        .expect("gateway did not exit");
    assert_eq!(st.code(), Some(0), "logs:\n{}", gw.logs());
}

#[test]
fn reload_during_a_long_stream_never_resets_it() {
    // The upstream sends 16 MiB in 1 MiB pieces 150 ms apart, so the download spans the reload.
    let up = Upstream::start(std::sync::Arc::new(
        |_req: &Received, s: &mut std::net::TcpStream| {
            use std::io::Write;
            let len = 16 * MIB;
            let _ = write!(s, "HTTP/1.1 200 OK\r\nContent-Length: {len}\r\n\r\n");
            let mut buf = vec![0u8; MIB as usize];
            for i in 0..16 {
                fill_pattern(i * MIB, &mut buf);
                if s.write_all(&buf).is_err() {
                    return Reply::Close;
                }
                thread::sleep(Duration::from_millis(150));
            }
            Reply::KeepAlive
        },
    ));
    let gw = start_h2c(&routes(&up));
    let addr = gw.addr;
    let dl = thread::spawn(move || {
        let mut c = H2Client::h2c(addr).unwrap();
        let mut check = PatternCheck::default();
        let r = c.download("/p/long", |d| check.update(d));
        (c, r.map(|(r, n)| (r.status, n)), check)
    });
    up.wait_for_count(1, WAIT);
    thread::sleep(Duration::from_millis(300));
    assert!(!dl.is_finished(), "the download ended before the reload");
    let new_routes = format!(
        "{}\n[[routes]]\nname = \"new\"\npath = \"/new\"\nstatic = {{ body = \"new-route\" }}\n",
        routes(&up)
    );
    assert!(reload_h2c(&gw, &new_routes), "reload failed: {}", gw.logs());
    let (mut c, r, check) = dl.join().unwrap();
    assert_eq!(up.count(), 1, "the download was retried: the stream broke");
    assert_eq!(r.unwrap(), (200, 16 * MIB));
    assert_eq!(check.first_bad, None);
    // The next stream on the same connection sees the new generation.
    let r = c.get("/new").unwrap();
    assert_eq!((r.status, r.text()), (200, "new-route".to_string()));
}

#[test]
fn access_log_says_http2_for_http2_requests() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.log");
    let up = Upstream::echo();
    let gw = start_h2c(&format!(
        "[access_log]\nenabled = true\npath = \"{}\"\n\n{}",
        path.display(),
        routes(&up)
    ));
    let mut c = H2Client::h2c(gw.addr).unwrap();
    assert_eq!(
        c.request("POST", "/api/logged", &[], b"abc")
            .unwrap()
            .status,
        200
    );
    assert_eq!(get(gw.addr, "/s").status, 200);
    let deadline = std::time::Instant::now() + WAIT;
    let lines = loop {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        if lines.len() >= 2 || std::time::Instant::now() > deadline {
            break lines;
        }
        thread::sleep(Duration::from_millis(20));
    };
    let h2 = lines
        .iter()
        .find(|l| l["path"] == "/api/logged")
        .expect("h2 line");
    assert_eq!(h2["protocol"], "HTTP/2.0", "{h2}");
    assert_eq!(h2["method"], "POST");
    assert_eq!(h2["status"], 200);
    let h1 = lines.iter().find(|l| l["path"] == "/s").expect("h1 line");
    assert_eq!(h1["protocol"], "HTTP/1.1", "{h1}");
}

#[test]
fn request_metrics_carry_the_protocol_label() {
    let up = Upstream::echo();
    let gw = start_h2c(&routes(&up));
    let mut c = H2Client::h2c(gw.addr).unwrap();
    for _ in 0..3 {
        assert_eq!(c.get("/s").unwrap().status, 200);
    }
    for _ in 0..2 {
        assert_eq!(get(gw.addr, "/s").status, 200);
    }
    let name = "ringway_http_requests_total";
    let h2 = [("route", "s"), ("protocol", "HTTP/2.0")];
    let s = scrape_until(gw.admin, name, &h2, 3.0);
    assert_eq!(metric(&s, name, &h2), Some(3.0));
    let h1 = [("route", "s"), ("protocol", "HTTP/1.1")];
    let s = scrape_until(gw.admin, name, &h1, 2.0);
    assert_eq!(metric(&s, name, &h1), Some(2.0));
}

// ---------------------------------------------------------------------------------------
// Limits the gateway advertises and keeps

#[test]
fn settings_advertise_the_configured_limits() {
    let up = Upstream::echo();
    // Defaults first.
    let gw = start_h2c(&routes(&up));
    let raw = RawH2::connect(gw.addr, &[]);
    let (s, ok) = raw.wait(WAIT, |s| !s.settings.is_empty() && s.window_updates > 0);
    assert!(ok, "no SETTINGS and connection WINDOW_UPDATE: {s:?}");
    let got = &s.settings[0];
    for want in [
        (setting::MAX_CONCURRENT_STREAMS, 128),
        (setting::INITIAL_WINDOW_SIZE, 256 << 10),
        (setting::MAX_HEADER_LIST_SIZE, 16 << 10),
    ] {
        assert!(got.contains(&want), "SETTINGS {got:?} lacks {want:?}");
    }
    drop(raw);
    // Then configured values.
    let gw = start_h2c(&format!(
        "[listeners.http2]\nmax_concurrent_streams = 7\nstream_window = \"1MiB\"\nmax_frame_size = \"64KiB\"\nmax_header_list_size = \"8KiB\"\n\n{}",
        routes(&up)
    ));
    let raw = RawH2::connect(gw.addr, &[]);
    let (s, ok) = raw.wait(WAIT, |s| !s.settings.is_empty());
    assert!(ok);
    let got = &s.settings[0];
    for want in [
        (setting::MAX_CONCURRENT_STREAMS, 7),
        (setting::INITIAL_WINDOW_SIZE, 1 << 20),
        (setting::MAX_FRAME_SIZE, 64 << 10),
        (setting::MAX_HEADER_LIST_SIZE, 8 << 10),
    ] {
        assert!(got.contains(&want), "SETTINGS {got:?} lacks {want:?}");
    }
}

#[test]
fn header_lists_over_the_limit_are_refused_and_under_it_served() {
    let up = Upstream::echo();
    let gw = start_h2c(&format!(
        "[listeners.http2]\nmax_header_list_size = \"16KiB\"\n\n{}",
        routes(&up)
    ));
    let mut c = H2Client::h2c(gw.addr).unwrap();
    let v8 = "v".repeat(8 << 10);
    let r = c.request("GET", "/api/ok", &[("x-big", &v8)], b"").unwrap();
    assert_eq!(r.status, 200, "an 8 KiB header was refused");
    let v20 = "v".repeat(20 << 10);
    let before = up.count();
    match c.request("GET", "/api/big", &[("x-big", &v20)], b"") {
        Ok(r) => assert_eq!(r.status, 431, "{}", r.text()),
        Err(e) => assert!(e.reason().is_some(), "{e:?}"),
    }
    assert_eq!(
        up.count(),
        before,
        "an over-size header list reached the upstream"
    );
    // The connection (or a new one) still serves.
    let mut c = H2Client::h2c(gw.addr).unwrap();
    assert_eq!(c.get("/s").unwrap().status, 200);
}

#[test]
fn idle_connections_get_goaway_and_close() {
    // The upstream takes 2.5 s, longer than idle_timeout: an open stream is not idleness.
    let up = Upstream::start(std::sync::Arc::new(
        |_req: &Received, s: &mut std::net::TcpStream| {
            use std::io::Write;
            thread::sleep(Duration::from_millis(2500));
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nslow");
            Reply::KeepAlive
        },
    ));
    let gw = start_h2c(&format!(
        "[listeners.http2]\nidle_timeout = \"1s\"\n\n{}",
        routes(&up)
    ));
    let mut raw = RawH2::connect(gw.addr, &[]);
    assert!(raw.request(1, "GET", "/p/slow", true));
    let (s, ok) = raw.wait_stream_end(1, WAIT);
    assert!(ok && s.status_of(1) == Some(200), "{s:?}");
    assert!(
        s.goaways.is_empty(),
        "GOAWAY while a stream was open: {s:?}"
    );
    assert_eq!(s.data.get(&1).copied(), Some(4));
    let t = std::time::Instant::now();
    let (s, ok) = raw.wait(WAIT, |s| s.closed);
    assert!(ok, "an idle connection is still open after {WAIT:?}: {s:?}");
    let g = s.goaway().expect("closed without GOAWAY");
    assert_eq!((g.code, g.last_stream), (code::NO_ERROR, 1), "{g:?}");
    assert!(
        t.elapsed() >= Duration::from_millis(800),
        "closed after {:?}, before idle_timeout = 1s",
        t.elapsed()
    );
}

#[test]
fn an_upstream_that_breaks_off_mid_body_resets_the_stream() {
    // Announces 1 MiB, sends 100 KiB, closes: the client must not see a clean end.
    let up = Upstream::start(std::sync::Arc::new(
        |_req: &Received, s: &mut std::net::TcpStream| {
            use std::io::Write;
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1048576\r\n\r\n");
            let _ = s.write_all(&vec![b't'; 100 << 10]);
            Reply::Close
        },
    ));
    let gw = start_h2c(&routes(&up));
    let mut c = H2Client::h2c(gw.addr).unwrap();
    let mut n = 0u64;
    let r = c.download("/p/truncated", |d| n += d.len() as u64);
    match r {
        Ok((r, got)) => panic!(
            "a truncated body ended cleanly: {} with {got} bytes",
            r.status
        ),
        Err(e) => assert_eq!(e.reason(), Some(::h2::Reason::INTERNAL_ERROR), "{e:?}"),
    }
    assert!(n < 1 << 20, "{n} bytes");
    // The connection is fine for the next stream.
    assert_eq!(c.get("/s").unwrap().text(), "static-ok");
}

#[test]
fn a_body_over_the_route_limit_gets_413_without_reaching_the_upstream() {
    let up = Upstream::echo();
    let gw = start_h2c(&format!(
        "{}\n[[routes]]\nname = \"small\"\nprefix = \"/small\"\nmax_body_bytes = \"64KiB\"\nproxy = {{ upstream = \"app\" }}\n",
        upstream_toml("app", &[up.addr])
    ));
    let mut c = H2Client::h2c(gw.addr).unwrap();
    // With a content-length: refused before the upstream is contacted.
    let body = vec![b'x'; 1 << 20];
    let r = c
        .request("POST", "/small/cl", &[("content-length", "1048576")], &body)
        .unwrap();
    assert_eq!(r.status, 413, "{}", r.text());
    assert_eq!(
        (up.connections(), up.raw_bytes()),
        (0, 0),
        "a request with an over-limit content-length contacted the upstream"
    );
    // Without one (streamed): 413 once the limit is crossed, or a reset.
    match c.upload_pattern("POST", "/small/stream", 4 << 20) {
        Ok(r) => assert_eq!(r.status, 413, "{}", r.text()),
        Err(e) => assert!(e.reason().is_some(), "{e:?}"),
    }
    // A streamed body may have started upstream, but never arrives as a whole request.
    assert_eq!(up.count(), 0, "an over-limit body reached the upstream");
    let mut c = H2Client::h2c(gw.addr).unwrap();
    let r = c.request("POST", "/small/ok", &[], &[b'y'; 1000]).unwrap();
    assert_eq!(r.status, 200);
}

#[test]
fn many_connections_with_many_streams_never_cross_responses() {
    // 4 connections × 32 concurrent streams, each POSTing its own body: every response must
    // be the echo of its own request (target and body), never a neighbour's. (Each stream
    // takes its own upstream connection; more than ~128 at once overflow the test upstream's
    // listen backlog of 128, and the kernel then resets some of them: 502 upstream_closed.)
    let up = Upstream::echo();
    let gw = start_h2c(&routes(&up));
    let addr = gw.addr;
    let workers: Vec<_> = (0..4)
        .map(|c| {
            thread::spawn(move || {
                let mut client = H2Client::h2c(addr).unwrap();
                let reqs = (0..32)
                    .map(|i| {
                        H2Req::new("POST", &format!("/p/{c}/{i}"))
                            .body(format!("body-{c}-{i}-{}", "x".repeat(i * 97)))
                    })
                    .collect();
                let rs = client.concurrent(reqs);
                for (i, r) in rs.into_iter().enumerate() {
                    let r = r.unwrap_or_else(|e| panic!("{c}/{i}: {e:?}"));
                    assert_eq!(r.status, 200, "{c}/{i}: {}", r.text());
                    let j = r.json();
                    assert_eq!(j["target"], format!("/p/{c}/{i}"));
                    assert_eq!(j["body"], format!("body-{c}-{i}-{}", "x".repeat(i * 97)));
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("a connection's streams failed");
    }
    assert_eq!(up.count(), 4 * 32);
    let m = scrape(gw.admin);
    assert_eq!(
        metric(&m, "ringway_http2_connections_total", &[]),
        Some(4.0)
    );
}

#[test]
fn a_busy_connection_still_gets_goaway_on_drain() {
    // A client opening a stream every 100 ms (more often than the connection's once-a-second
    // housekeeping) must still learn of the drain: the GOAWAY comes within a few ticks.
    let up = Upstream::echo();
    let mut gw = start_h2c(&format!(
        "[server]\ndrain_timeout = \"10s\"\n\n{}",
        routes(&up)
    ));
    let mut raw = RawH2::connect(gw.addr, &[]);
    let step = |raw: &mut RawH2, id: &mut u32| {
        assert!(raw.request(*id, "GET", "/p/busy", true));
        *id += 2;
        thread::sleep(Duration::from_millis(100));
    };
    let mut id = 1;
    for _ in 0..5 {
        step(&mut raw, &mut id);
    }
    gw.signal(libc::SIGTERM);
    let signalled = Instant::now();
    while raw.seen().goaways.is_empty() && signalled.elapsed() < Duration::from_secs(4) {
        step(&mut raw, &mut id);
    }
    assert!(
        !raw.seen().goaways.is_empty(),
        "no GOAWAY within 4 s of SIGTERM while streams kept arriving"
    );
    drop(raw);
    assert!(gw.wait_exit(Duration::from_secs(15)).is_some());
}

/// A 204 has no body and so no length (RFC 9110 8.6). An upstream's `Content-Length: 5` on a
/// 204 made HTTP/2 clients that check (nghttp2, curl) reset the stream; a 304 and a HEAD
/// answer keep theirs, which is the length of the representation.
#[test]
fn no_content_never_carries_a_length() {
    let up = Upstream::start(std::sync::Arc::new(
        |req: &Received, s: &mut std::net::TcpStream| {
            use std::io::Write;
            let status = if req.target.ends_with("/204") {
                "204 No Content"
            } else if req.target.ends_with("/304") {
                "304 Not Modified"
            } else {
                "200 OK"
            };
            let body = if req.method == "GET" && status == "200 OK" {
                "hello"
            } else {
                ""
            };
            let _ = write!(s, "HTTP/1.1 {status}\r\nContent-Length: 5\r\n\r\n{body}");
            Reply::KeepAlive
        },
    ));
    let gw = start_h2c(&routes(&up));
    let mut c = H2Client::h2c(gw.addr).unwrap();
    let r = c.get("/p/204").unwrap();
    assert_eq!(r.status, 204);
    assert_eq!(r.header("content-length"), None, "HTTP/2 204");
    let r = get(gw.addr, "/p/204");
    assert_eq!(r.status, 204);
    assert_eq!(r.header("content-length"), None, "HTTP/1.1 204");
    let r = c.get("/p/304").unwrap();
    assert_eq!((r.status, r.header("content-length")), (304, Some("5")));
    let r = request(gw.addr, "HEAD", "/p/200", &[], b"");
    assert_eq!((r.status, r.header("content-length")), (200, Some("5")));
}

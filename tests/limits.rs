//! Size limits: header bytes / count → 431, URI → 414, route body limit → 413 (before the
//! upstream is contacted when the length is known), and custom `[limits]` values.
//!
//! "The upstream never saw it" is checked on accepted connections and raw bytes, followed by
//! a marker request (see `assert_nothing_reached`), never after a fixed sleep.
mod common;
use common::*;

use std::time::Duration;

/// One worker, so the marker request follows a rejected connection on the same event loop.
fn setup(limits: &str) -> (Upstream, Gateway) {
    let up = Upstream::echo();
    let gw = Gateway::start_workers(
        &format!(
            r#"{limits}
{}
[[routes]]
name = "small"
prefix = "/small"
max_body_bytes = 100
proxy = {{ upstream = "be" }}

[[routes]]
name = "small-echo"
prefix = "/echo-small"
max_body_bytes = 100
echo = {{}}

[[routes]]
name = "p"
prefix = "/"
proxy = {{ upstream = "be" }}
"#,
            upstream_toml("be", &[up.addr])
        ),
        1,
    );
    (up, gw)
}

/// Sends `bytes`, expects status `want` followed by the connection closing.
fn expect_status_and_close(gw: &Gateway, bytes: &[u8], want: u16, label: &str) -> Response {
    let mut c = Conn::open(gw.addr);
    c.send(bytes);
    let r = c
        .read_response(false)
        .unwrap_or_else(|e| panic!("{label}: no response: {e}"));
    assert_eq!(r.status, want, "{label}: {}", r.text());
    assert!(
        conn_ended(&mut c, Duration::from_secs(2)),
        "{label}: not closed"
    );
    r
}

fn head_with_headers(target: &str, headers: &[(String, String)]) -> Vec<u8> {
    let mut s = format!("GET {target} HTTP/1.1\r\nHost: test\r\n");
    for (n, v) in headers {
        s.push_str(&format!("{n}: {v}\r\n"));
    }
    s.push_str("\r\n");
    s.into_bytes()
}

/// `n` headers in total including Host.
fn n_headers(n: usize) -> Vec<(String, String)> {
    (1..n)
        .map(|i| (format!("X-H{i}"), "v".to_string()))
        .collect()
}

#[test]
fn header_bytes_over_16k_is_431() {
    let (up, gw) = setup("");
    let before = up.snapshot();
    // One huge header (a big cookie).
    let big = vec![("Cookie".to_string(), "c".repeat(17 * 1024))];
    let r = expect_status_and_close(&gw, &head_with_headers("/", &big), 431, "one big header");
    assert_eq!(r.json()["status"], 431);
    // Many medium headers adding up to more than 16 KiB (well under 100 headers).
    let many: Vec<(String, String)> = (0..20)
        .map(|i| (format!("X-Fill-{i}"), "f".repeat(900)))
        .collect();
    expect_status_and_close(&gw, &head_with_headers("/", &many), 431, "many headers");
    assert_nothing_reached(&gw, &up, before, "431 heads");

    // Just under the limit is fine and arrives intact.
    let ok = vec![("Cookie".to_string(), "c".repeat(15 * 1024))];
    let mut c = Conn::open(gw.addr);
    c.send(&head_with_headers("/", &ok));
    let r = c.read_response(false).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(up.last().header("cookie").map(str::len), Some(15 * 1024));
}

#[test]
fn more_than_100_headers_is_431() {
    let (up, gw) = setup("");
    let before = up.snapshot();
    expect_status_and_close(&gw, &head_with_headers("/", &n_headers(101)), 431, "101");
    expect_status_and_close(&gw, &head_with_headers("/", &n_headers(150)), 431, "150");
    assert_nothing_reached(&gw, &up, before, "too many headers");
    let r = Conn::open(gw.addr);
    drop(r);
    let mut c = Conn::open(gw.addr);
    c.send(&head_with_headers("/", &n_headers(100)));
    let r = c.read_response(false).unwrap();
    assert_eq!(r.status, 200, "exactly 100 headers is allowed");
    assert_eq!(up.last().header("x-h99"), Some("v"));
}

#[test]
fn uri_over_8k_is_414() {
    let (up, gw) = setup("");
    let before = up.snapshot();
    let long = format!("/{}", "a".repeat(9 * 1024));
    let r = expect_status_and_close(&gw, &head_with_headers(&long, &[]), 414, "long path");
    assert_eq!(r.json()["code"], "uri_too_long");
    let long_query = format!("/q?x={}", "b".repeat(8 * 1024));
    expect_status_and_close(&gw, &head_with_headers(&long_query, &[]), 414, "long query");
    assert_nothing_reached(&gw, &up, before, "414");

    let fits = format!("/{}", "c".repeat(8 * 1024 - 1));
    let mut c = Conn::open(gw.addr);
    c.send(&head_with_headers(&fits, &[]));
    let r = c.read_response(false).unwrap();
    assert_eq!(r.status, 200, "an 8 KiB target is allowed");
    assert_eq!(up.last().target, fits);
}

#[test]
fn content_length_over_route_limit_is_413_without_contacting_upstream() {
    let (up, gw) = setup("");
    let before = up.snapshot();
    let body = vec![b'x'; 200];
    let bytes = build_request("POST", "/small/upload", &[], &body);
    let r = expect_status_and_close(&gw, &bytes, 413, "CL 200 > 100");
    assert_eq!(r.json()["code"], "payload_too_large");
    // Announced but not sent: still refused up front.
    let bytes = build_request(
        "POST",
        "/small/upload",
        &[("Content-Length", "1000000")],
        b"",
    );
    expect_status_and_close(&gw, &bytes, 413, "CL announced only");
    // Not even connected to: no connection, no byte.
    assert_nothing_reached(&gw, &up, before, "413 by Content-Length");

    // Exactly the limit passes.
    let r = request(gw.addr, "POST", "/small/upload", &[], &[b'y'; 100]);
    assert_eq!(r.status, 200);
    assert_eq!(up.last().body.len(), 100);
}

#[test]
fn expect_continue_over_route_limit_gets_413_not_100() {
    let (up, gw) = setup("");
    let before = up.snapshot();
    let mut c = Conn::open(gw.addr);
    c.send(b"PUT /small/x HTTP/1.1\r\nHost: test\r\nExpect: 100-continue\r\nContent-Length: 5000\r\n\r\n");
    // read_response would skip a 100; read the first status line ourselves.
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    while !line.ends_with(b"\r\n") {
        use std::io::Read;
        assert_eq!(c.stream.read(&mut b).unwrap(), 1);
        line.push(b[0]);
    }
    assert!(
        line.starts_with(b"HTTP/1.1 413"),
        "{}",
        String::from_utf8_lossy(&line)
    );
    assert_nothing_reached(&gw, &up, before, "413 instead of 100");
}

#[test]
fn chunked_body_over_route_limit_is_413() {
    let (up, gw) = setup("");
    // All at once.
    let body = format!("c8\r\n{}\r\n0\r\n\r\n", "z".repeat(200));
    let bytes = build_request(
        "POST",
        "/small/up",
        &[("Transfer-Encoding", "chunked")],
        body.as_bytes(),
    );
    expect_status_and_close(&gw, &bytes, 413, "one 200-byte chunk");

    // Several small chunks, each under the limit, sum over it.
    let mut body = String::new();
    for _ in 0..5 {
        body.push_str(&format!("28\r\n{}\r\n", "w".repeat(40)));
    }
    body.push_str("0\r\n\r\n");
    let bytes = build_request(
        "POST",
        "/small/up",
        &[("Transfer-Encoding", "chunked")],
        body.as_bytes(),
    );
    expect_status_and_close(&gw, &bytes, 413, "5 x 40-byte chunks");

    // Streamed: the first 60 bytes may already be forwarded when the next 60 arrive. The client
    // still gets a 413 and the upstream never gets a complete request.
    let mut c = Conn::open(gw.addr);
    c.send(&build_request(
        "POST",
        "/small/up",
        &[("Transfer-Encoding", "chunked")],
        format!("3c\r\n{}\r\n", "a".repeat(60)).as_bytes(),
    ));
    // Wait until the first chunk really went upstream, so the over-limit chunk arrives late.
    up.wait_for_raw(&"a".repeat(60), Duration::from_secs(10));
    // `q`, not a hex digit: the random trace and request ids upstream never contain `qqqq`.
    c.send(format!("3c\r\n{}\r\n0\r\n\r\n", "q".repeat(60)).as_bytes());
    let r = c.read_response(false).expect("response");
    assert_eq!(r.status, 413, "{}", r.text());
    assert!(conn_ended(&mut c, Duration::from_secs(2)));

    // A marker through the same worker arrives after anything left of the rejected request.
    assert_eq!(get(gw.addr, MARKER_PATH).status, 200);
    up.wait_for_count(1, Duration::from_secs(10));
    let reqs = up.requests();
    assert_eq!(reqs.len(), 1, "{reqs:?}");
    assert_eq!(reqs[0].target, MARKER_PATH);
    assert!(
        !up.raw_text().contains("qqqq"),
        "bytes over the limit reached the upstream: {:?}",
        up.raw_text()
    );

    // Chunked within the limit passes.
    let r = request(
        gw.addr,
        "POST",
        "/small/up",
        &[("Transfer-Encoding", "chunked")],
        format!("64\r\n{}\r\n0\r\n\r\n", "k".repeat(100)).as_bytes(),
    );
    assert_eq!(r.status, 200);
    assert_eq!(up.last().body.len(), 100);
}

#[test]
fn echo_route_body_limit() {
    let (_up, gw) = setup("");
    let r = request(gw.addr, "POST", "/echo-small", &[], &[b'e'; 100]);
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["body"].as_str().map(str::len), Some(100));
    let bytes = build_request("POST", "/echo-small", &[], &[b'e'; 101]);
    expect_status_and_close(&gw, &bytes, 413, "echo CL 101");
    let bytes = build_request(
        "POST",
        "/echo-small",
        &[("Transfer-Encoding", "chunked")],
        format!("65\r\n{}\r\n0\r\n\r\n", "e".repeat(101)).as_bytes(),
    );
    expect_status_and_close(&gw, &bytes, 413, "echo chunked 101");
}

#[test]
fn custom_limits_are_honoured() {
    let (up, gw) = setup(
        "[limits]\nmax_headers = 10\nmax_header_bytes = \"2KiB\"\nmax_uri_bytes = 100\nmax_body_bytes = 50\n",
    );
    // Header count: 10 OK, 11 → 431.
    let mut c = Conn::open(gw.addr);
    c.send(&head_with_headers("/", &n_headers(10)));
    assert_eq!(c.read_response(false).unwrap().status, 200);
    expect_status_and_close(
        &gw,
        &head_with_headers("/", &n_headers(11)),
        431,
        "11 headers",
    );

    // Header bytes: ~1.5 KiB OK, ~2.5 KiB → 431.
    let mut c = Conn::open(gw.addr);
    c.send(&head_with_headers(
        "/",
        &[("X-Pad".into(), "p".repeat(1500))],
    ));
    assert_eq!(c.read_response(false).unwrap().status, 200);
    expect_status_and_close(
        &gw,
        &head_with_headers("/", &[("X-Pad".into(), "p".repeat(2500))]),
        431,
        "2.5 KiB head",
    );

    // URI: 100 OK, 101 → 414.
    let ok = format!("/{}", "u".repeat(99));
    let mut c = Conn::open(gw.addr);
    c.send(&head_with_headers(&ok, &[]));
    assert_eq!(c.read_response(false).unwrap().status, 200);
    assert_eq!(up.last().target, ok);
    let long = format!("/{}", "u".repeat(100));
    expect_status_and_close(&gw, &head_with_headers(&long, &[]), 414, "101-byte target");

    // Default body limit applies to routes without their own; a route's own limit wins.
    let r = request(gw.addr, "POST", "/any", &[], &[b'd'; 50]);
    assert_eq!(r.status, 200);
    expect_status_and_close(
        &gw,
        &build_request("POST", "/any", &[], &[b'd'; 51]),
        413,
        "default limit 50",
    );
    let r = request(gw.addr, "POST", "/small", &[], &[b's'; 100]);
    assert_eq!(
        r.status, 200,
        "route max_body_bytes = 100 overrides the default 50"
    );
}

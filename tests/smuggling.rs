//! Request smuggling defences: every ambiguous or malformed framing is answered with 400 (501
//! for unsupported transfer-codings), the connection is closed, and the upstream never receives
//! a request.
//!
//! "Never receives" is checked at the byte level: the test upstream counts accepted
//! connections and raw bytes (not just parsed requests), and a marker request sent afterwards
//! proves the check did not simply run too early.
mod common;
use common::*;

use std::time::Duration;

/// One worker: the marker request of `assert_nothing_reached` then runs on the same event
/// loop as the rejected connection.
fn setup() -> (Upstream, Gateway) {
    let up = Upstream::echo();
    let gw = Gateway::start_workers(
        &format!(
            "{}\n[[routes]]\nname = \"p\"\nprefix = \"/\"\nproxy = {{ upstream = \"be\" }}\n",
            upstream_toml("be", &[up.addr])
        ),
        1,
    );
    (up, gw)
}

/// Sends `bytes` on a fresh connection and checks: status `want`, `Connection: close`, the
/// gateway closes the connection, and not one byte (nor a connection) reached the upstream.
fn expect_rejected(gw: &Gateway, up: &Upstream, label: &str, bytes: &[u8], want: u16) {
    let before = up.snapshot();
    let mut c = Conn::open(gw.addr);
    c.send(bytes);
    let r = c
        .read_response(false)
        .unwrap_or_else(|e| panic!("{label}: no response: {e}"));
    assert_eq!(r.status, want, "{label}: {}", r.text());
    assert_eq!(r.header("connection"), Some("close"), "{label}");
    assert!(
        conn_ended(&mut c, Duration::from_secs(2)),
        "{label}: connection left open"
    );
    assert_nothing_reached(gw, up, before, label);
}

/// Like `expect_rejected` for a request whose head is valid and whose body is not. The
/// gateway streams bodies, so the head (and chunks decoded before the bad one) may already be
/// upstream; what must never get there: any of `forbidden` (data at or after the bad chunk),
/// a last-chunk that would complete the request, or a complete request at all.
fn expect_rejected_mid_body(
    gw: &Gateway,
    up: &Upstream,
    label: &str,
    bytes: &[u8],
    forbidden: &str,
) {
    let before = up.snapshot();
    let mut c = Conn::open(gw.addr);
    c.send(bytes);
    let r = c
        .read_response(false)
        .unwrap_or_else(|e| panic!("{label}: no response: {e}"));
    assert_eq!(r.status, 400, "{label}: {}", r.text());
    assert_eq!(r.header("connection"), Some("close"), "{label}");
    assert!(
        conn_ended(&mut c, Duration::from_secs(2)),
        "{label}: connection left open"
    );
    // A marker through the same (single) worker arrives after anything left of the rejected
    // request would have.
    let mid = up.snapshot();
    assert_eq!(get(gw.addr, MARKER_PATH).status, 200, "{label}");
    up.wait_for_count(before.requests + 1, Duration::from_secs(10));
    assert_eq!(
        up.requests()[before.requests..]
            .iter()
            .map(|r| r.target.as_str())
            .collect::<Vec<_>>(),
        [MARKER_PATH],
        "{label}: a complete request reached the upstream"
    );
    // Everything that arrived for the rejected request, including stragglers: all bytes
    // since `before` minus the marker's own request.
    let all = String::from_utf8_lossy(&up.raw_since(before.raw_bytes)).into_owned();
    let rejected = match all.find(&format!("GET {MARKER_PATH} ")) {
        Some(i) => &all[..i],
        None => panic!("{label}: marker not in the raw bytes: {all:?}"),
    };
    assert!(
        rejected.len() >= mid.raw_bytes - before.raw_bytes,
        "{label}: marker bytes interleaved with the rejected request: {all:?}"
    );
    let body = rejected.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    assert!(
        !body.contains(forbidden) && !body.contains("0\r\n\r\n"),
        "{label}: body bytes from the bad chunk on reached the upstream: {rejected:?}"
    );
}

fn post_with(headers: &str, body: &str) -> Vec<u8> {
    format!("POST /x HTTP/1.1\r\nHost: test\r\n{headers}\r\n{body}").into_bytes()
}

#[test]
fn content_length_with_transfer_encoding() {
    let (up, gw) = setup();
    expect_rejected(
        &gw,
        &up,
        "CL then TE",
        &post_with(
            "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
            "0\r\n\r\n",
        ),
        400,
    );
    expect_rejected(
        &gw,
        &up,
        "TE then CL",
        &post_with(
            "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
            "0\r\n\r\n",
        ),
        400,
    );
    expect_rejected(
        &gw,
        &up,
        "CL 0 with TE, odd case",
        &post_with(
            "content-LENGTH: 0\r\ntransfer-encoding: CHUNKED\r\n",
            "0\r\n\r\n",
        ),
        400,
    );
}

#[test]
fn invalid_or_conflicting_content_length() {
    let (up, gw) = setup();
    let cases: &[(&str, &str)] = &[
        ("differing", "Content-Length: 5\r\nContent-Length: 6\r\n"),
        ("plus sign", "Content-Length: +5\r\n"),
        ("hex", "Content-Length: 0x5\r\n"),
        ("negative zero", "Content-Length: -0\r\n"),
        ("negative", "Content-Length: -5\r\n"),
        ("empty", "Content-Length: \r\n"),
        ("inner space", "Content-Length:  5 5\r\n"),
        ("list", "Content-Length: 5,5\r\n"),
        ("list with space", "Content-Length: 5, 5\r\n"),
        ("overflow", "Content-Length: 99999999999999999999999\r\n"),
        ("u64 max + 1", "Content-Length: 18446744073709551616\r\n"),
        ("decimal", "Content-Length: 5.0\r\n"),
        ("letters", "Content-Length: five\r\n"),
    ];
    for (label, h) in cases {
        expect_rejected(&gw, &up, label, &post_with(h, "hello"), 400);
    }
}

#[test]
fn transfer_encoding_codings() {
    let (up, gw) = setup();
    let body = "5\r\nhello\r\n0\r\n\r\n";
    let cases: &[(&str, &str, u16)] = &[
        ("chunked, gzip", "Transfer-Encoding: chunked, gzip\r\n", 400),
        ("gzip, chunked", "Transfer-Encoding: gzip, chunked\r\n", 501),
        (
            "gzip then chunked fields",
            "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n",
            501,
        ),
        ("unknown alone", "Transfer-Encoding: foo\r\n", 400),
        ("identity", "Transfer-Encoding: identity\r\n", 400),
        (
            "chunked twice",
            "Transfer-Encoding: chunked, chunked\r\n",
            400,
        ),
        (
            "chunked then other field",
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: x\r\n",
            400,
        ),
        ("xchunked", "Transfer-Encoding: xchunked\r\n", 400),
        ("chunked-ish", "Transfer-Encoding: chunked;q=1\r\n", 400),
        ("empty", "Transfer-Encoding: \r\n", 400),
    ];
    for (label, h, want) in cases {
        expect_rejected(&gw, &up, label, &post_with(h, body), *want);
    }
    expect_rejected(
        &gw,
        &up,
        "TE in HTTP/1.0",
        format!("POST /x HTTP/1.0\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n{body}")
            .as_bytes(),
        400,
    );
}

#[test]
fn bad_chunk_sizes() {
    let (up, gw) = setup();
    // (label, body, data at or after the bad chunk that must never go upstream)
    let cases: &[(&str, &str, &str)] = &[
        ("non-hex", "zz\r\nhello\r\n0\r\n\r\n", "hello"),
        ("negative", "-1\r\nhello\r\n0\r\n\r\n", "hello"),
        (
            "0x prefix",
            "0x10\r\n0123456789abcdef\r\n0\r\n\r\n",
            "0123456789abcdef",
        ),
        ("17 hex digits", "10000000000000000\r\nx\r\n0\r\n\r\n", "x"),
        (
            "17 digits leading zeros",
            "00000000000000005\r\nhello\r\n0\r\n\r\n",
            "hello",
        ),
        ("huge", "ffffffffffffffffffff\r\nx\r\n0\r\n\r\n", "x"),
        ("empty size", "\r\nhello\r\n0\r\n\r\n", "hello"),
        ("leading space", " 5\r\nhello\r\n0\r\n\r\n", "hello"),
        ("data longer than size", "3\r\nhello\r\n0\r\n\r\n", "lo"),
        ("bare LF after size", "5\nhello\r\n0\r\n\r\n", "hello"),
        (
            "bad second chunk",
            "5\r\nhello\r\nzz\r\nworld\r\n0\r\n\r\n",
            "world",
        ),
        (
            "control char in extension",
            "5;a=\x01\r\nhello\r\n0\r\n\r\n",
            "hello",
        ),
    ];
    for (label, body, forbidden) in cases {
        expect_rejected_mid_body(
            &gw,
            &up,
            label,
            &post_with("Transfer-Encoding: chunked\r\n", body),
            forbidden,
        );
    }
}

#[test]
fn malformed_header_lines() {
    let (up, gw) = setup();
    let cases: &[(&str, &[u8])] = &[
        (
            "space before colon on Host",
            b"GET /x HTTP/1.1\r\nHost : test\r\n\r\n",
        ),
        (
            "space before colon on CL",
            b"POST /x HTTP/1.1\r\nHost: test\r\nContent-Length : 5\r\n\r\nhello",
        ),
        (
            "tab before colon on TE",
            b"POST /x HTTP/1.1\r\nHost: test\r\nTransfer-Encoding\t: chunked\r\n\r\n0\r\n\r\n",
        ),
        (
            "control char in value",
            b"GET /x HTTP/1.1\r\nHost: test\r\nX-A: a\x01b\r\n\r\n",
        ),
        (
            "NUL in value",
            b"GET /x HTTP/1.1\r\nHost: test\r\nX-A: a\x00b\r\n\r\n",
        ),
        (
            "DEL in value",
            b"GET /x HTTP/1.1\r\nHost: test\r\nX-A: a\x7fb\r\n\r\n",
        ),
        (
            "control char in name",
            b"GET /x HTTP/1.1\r\nHost: test\r\nX\x01A: b\r\n\r\n",
        ),
        (
            "vertical tab before TE value",
            b"POST /x HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: \x0bchunked\r\n\r\n0\r\n\r\n",
        ),
        (
            "obs-fold with space",
            b"GET /x HTTP/1.1\r\nHost: test\r\nX-A: a\r\n  continued\r\n\r\n",
        ),
        (
            "obs-fold with tab",
            b"GET /x HTTP/1.1\r\nHost: test\r\nX-A: a\r\n\tcontinued\r\n\r\n",
        ),
        (
            "obs-fold hiding TE",
            b"POST /x HTTP/1.1\r\nHost: test\r\nX-A: a\r\n Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\nhello",
        ),
        (
            "first header line folded",
            b"GET /x HTTP/1.1\r\n Host: test\r\n\r\n",
        ),
        ("bare LF line endings", b"GET /x HTTP/1.1\nHost: test\n\n"),
        (
            "bare LF on one header",
            b"GET /x HTTP/1.1\r\nHost: test\nX-A: b\r\n\r\n",
        ),
        ("bare CR", b"GET /x HTTP/1.1\r\nHost: test\rX-A: b\r\n\r\n"),
        ("missing colon", b"GET /x HTTP/1.1\r\nHost: test\r\nNoColon\r\n\r\n"),
        (
            "space in target",
            b"GET /a b HTTP/1.1\r\nHost: test\r\n\r\n",
        ),
    ];
    for (label, bytes) in cases {
        expect_rejected(&gw, &up, label, bytes, 400);
    }
}

#[test]
fn missing_duplicate_or_invalid_host() {
    let (up, gw) = setup();
    let cases: &[(&str, &[u8])] = &[
        ("missing", b"GET /x HTTP/1.1\r\nX-A: b\r\n\r\n"),
        (
            "duplicate",
            b"GET /x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        ),
        (
            "duplicate same value different case",
            b"GET /x HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n",
        ),
        ("empty on 1.1", b"GET /x HTTP/1.1\r\nHost: \r\n\r\n"),
        ("userinfo", b"GET /x HTTP/1.1\r\nHost: user@evil\r\n\r\n"),
        ("slash", b"GET /x HTTP/1.1\r\nHost: a/b\r\n\r\n"),
        ("non-digit port", b"GET /x HTTP/1.1\r\nHost: a:8x\r\n\r\n"),
    ];
    for (label, bytes) in cases {
        expect_rejected(&gw, &up, label, bytes, 400);
    }
}

#[test]
fn cl_te_smuggling_attempt_never_reaches_upstream() {
    let (up, gw) = setup();
    // A CL-framing front end would forward everything; a TE-framing back end would see the
    // empty chunked body and then a second request, "GET /admin".
    let hidden = "GET /admin HTTP/1.1\r\nHost: test\r\n\r\n";
    let body = format!("0\r\n\r\n{hidden}");
    let attack = format!(
        "POST /x HTTP/1.1\r\nHost: test\r\nContent-Length: {}\r\nTransfer-Encoding: chunked\r\n\r\n{body}",
        body.len()
    );
    expect_rejected(&gw, &up, "CL.TE", attack.as_bytes(), 400);
    // Same with an obfuscated TE that some parsers ignore.
    let attack = format!(
        "POST /x HTTP/1.1\r\nHost: test\r\nContent-Length: {}\r\nTransfer-Encoding: xchunked\r\nTransfer-Encoding: chunked\r\n\r\n{body}",
        body.len()
    );
    expect_rejected(&gw, &up, "CL.TE obfuscated", attack.as_bytes(), 400);
}

#[test]
fn te_cl_smuggling_attempt_never_reaches_upstream() {
    let (up, gw) = setup();
    // A TE-framing front end forwards the whole chunked body; a CL-framing back end reads 4
    // bytes and then parses "GET /admin ..." (inside the chunk) as the next request.
    let hidden = "GET /admin HTTP/1.1\r\nHost: test\r\n\r\n";
    let chunk = format!("{:x}\r\n{hidden}\r\n0\r\n\r\n", hidden.len());
    let attack = format!(
        "POST /x HTTP/1.1\r\nHost: test\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n{chunk}"
    );
    expect_rejected(&gw, &up, "TE.CL", attack.as_bytes(), 400);
}

#[test]
fn request_inside_a_valid_body_stays_body() {
    // Framing the gateway accepts is re-serialized, so a request hidden in a body reaches the
    // upstream only as body bytes, never as a request of its own.
    let (up, gw) = setup();
    let hidden = "GET /admin HTTP/1.1\r\nHost: test\r\n\r\n";
    let r = request(gw.addr, "POST", "/x", &[], hidden.as_bytes());
    assert_eq!(r.status, 200);
    let chunked = format!("{:x}\r\n{hidden}\r\n0\r\n\r\n", hidden.len());
    let r = request(
        gw.addr,
        "POST",
        "/y",
        &[("Transfer-Encoding", "chunked")],
        chunked.as_bytes(),
    );
    assert_eq!(r.status, 200);
    // Each response came back through the upstream, so both requests are recorded already.
    let reqs = up.requests();
    let targets: Vec<&str> = reqs.iter().map(|r| r.target.as_str()).collect();
    assert_eq!(targets, ["/x", "/y"]);
    assert_eq!(reqs[0].body, hidden.as_bytes());
    assert_eq!(reqs[1].body, hidden.as_bytes());
    assert_eq!(reqs[1].framing, "chunked");
    assert!(reqs[1].header("content-length").is_none());
}

#[test]
fn pipelined_request_after_rejected_one_is_not_processed() {
    let (up, gw) = setup();
    let before = up.snapshot();
    // The second request would be valid on its own; it must die with the first.
    let attack = b"POST /x HTTP/1.1\r\nHost: test\r\nContent-Length: 0\r\nContent-Length: 1\r\n\r\nGET /admin HTTP/1.1\r\nHost: test\r\n\r\n";
    let out = raw(gw.addr, attack);
    let text = String::from_utf8_lossy(&out);
    assert_eq!(first_status(&out), 400, "{text}");
    assert_eq!(
        text.matches("HTTP/1.1 ").count(),
        1,
        "one response only: {text}"
    );
    assert_nothing_reached(&gw, &up, before, "pipelined after rejected");
}

#[test]
fn bad_chunk_after_part_of_the_body_was_forwarded() {
    let (up, gw) = setup();
    let mut c = Conn::open(gw.addr);
    c.send(&post_with(
        "Transfer-Encoding: chunked\r\n",
        "5\r\nhello\r\n",
    ));
    // Wait until the gateway forwarded the head and the first chunk before the bad one goes.
    up.wait_for_raw("hello", Duration::from_secs(10));
    c.send(b"-1\r\nGET /admin HTTP/1.1\r\nHost: test\r\n\r\n0\r\n\r\n");
    let r = c.read_response(false).expect("response");
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(conn_ended(&mut c, Duration::from_secs(2)));
    // A later request through the same (single) worker reaches the upstream: by then any
    // forwarding of the rejected request's rest would have arrived too.
    assert_eq!(get(gw.addr, MARKER_PATH).status, 200);
    up.wait_for_count(1, Duration::from_secs(10));
    let raw = up.raw_text();
    assert!(
        !raw.contains("-1\r\n") && !raw.contains("/admin"),
        "bytes after the bad chunk reached the upstream: {raw:?}"
    );
    let reqs = up.requests();
    assert_eq!(reqs.len(), 1, "upstream received {reqs:?}");
    assert_eq!(reqs[0].target, MARKER_PATH);
}

/// An answer that does not need the request body (a cache hit, a CORS preflight, a static
/// route) must still get past it: otherwise the body is parsed as the next request on the
/// connection, and its answer goes to whatever request comes next (another client's, behind a
/// proxy that shares connections). The body is skipped when it is all here, else the
/// connection closes after the answer.
#[test]
fn a_body_nobody_read_is_never_taken_for_the_next_request() {
    let up = Upstream::echo();
    let gw = Gateway::start_workers(
        &format!(
            "[cache]\nmax_bytes = \"16MiB\"\n\n[policies.c]\ncache = {{ ttl = \"60s\" }}\n\n\
             [policies.web]\ncors = {{ origins = [\"https://app.example.com\"] }}\n\n{}\n\
             [[routes]]\nname = \"c\"\nprefix = \"/c\"\npolicies = [\"c\"]\nproxy = {{ upstream = \"be\" }}\n\n\
             [[routes]]\nname = \"w\"\nprefix = \"/w\"\npolicies = [\"web\"]\nproxy = {{ upstream = \"be\" }}\n\n\
             [[routes]]\nname = \"p\"\nprefix = \"/\"\nproxy = {{ upstream = \"be\" }}\n",
            upstream_toml("be", &[up.addr])
        ),
        1,
    );
    assert_eq!(get(gw.addr, "/c/page").status, 200, "stored");
    let smuggled = "GET /SMUGGLED HTTP/1.1\r\nX: ";
    let cases = [
        (
            "a GET with a body on a cache route",
            "GET /c/page HTTP/1.1\r\nHost: t\r\n".to_string(),
        ),
        (
            "a CORS preflight",
            "OPTIONS /w/x HTTP/1.1\r\nHost: t\r\nOrigin: https://app.example.com\r\n\
             Access-Control-Request-Method: GET\r\n"
                .to_string(),
        ),
    ];
    for (what, head) in cases {
        let mut c = Conn::open(gw.addr);
        let first = format!("{head}Content-Length: {}\r\n\r\n{smuggled}", smuggled.len());
        c.send(first.as_bytes());
        c.send(b"GET /victim HTTP/1.1\r\nHost: t\r\n\r\n");
        let a = c.read_response(false).expect(what);
        assert!(a.status < 300, "{what}: {}", a.status);
        if let Ok(b) = c.read_response(false) {
            assert_eq!(b.status, 200, "{what}");
            let echo = b.text();
            assert!(
                echo.contains("/victim"),
                "{what}: the next request got {echo}"
            );
        }
    }
    let targets: Vec<String> = up.requests().into_iter().map(|r| r.target).collect();
    assert!(
        !targets.iter().any(|t| t == "/SMUGGLED"),
        "the unread body reached the upstream as a request: {targets:?}"
    );
}

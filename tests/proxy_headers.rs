//! Headers on the proxied path: forwarding headers, request ids, hop-by-hop removal in both
//! directions, fresh serialization, HTTP/1.0 clients and `Expect`.
mod common;
use common::*;

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Duration;

fn proxy_gw(up: &Upstream) -> Gateway {
    Gateway::start(&format!(
        "{}\n[[routes]]\nname = \"p\"\nprefix = \"/\"\nproxy = {{ upstream = \"be\" }}\n",
        upstream_toml("be", &[up.addr])
    ))
}

fn is_uuid_like(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == 5
        && parts
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(p, n)| p.len() == n && p.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Names of the headers the upstream received, lowercased.
fn names(r: &Received) -> Vec<String> {
    r.headers
        .iter()
        .map(|(n, _)| n.to_ascii_lowercase())
        .collect()
}

#[test]
fn forwarding_headers_without_client_values() {
    let up = Upstream::echo();
    let gw = proxy_gw(&up);
    let r = request(gw.addr, "GET", "/a", &[("Host", "shop.example:8080")], b"");
    assert_eq!(r.status, 200);
    let got = up.last();
    assert_eq!(got.header_all("x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(got.header_all("x-forwarded-proto"), ["http"]);
    assert_eq!(got.header_all("x-forwarded-host"), ["shop.example:8080"]);
    assert_eq!(
        got.header_all("forwarded"),
        ["for=127.0.0.1;proto=http;host=\"shop.example:8080\""]
    );
}

/// Forwarding headers a client would like the upstream to believe.
const FORGED: [(&str, &str); 5] = [
    ("X-Forwarded-For", "203.0.113.7"),
    ("x-forwarded-for", "198.51.100.2"),
    ("Forwarded", "for=203.0.113.7;proto=https"),
    ("X-Forwarded-Proto", "https"),
    ("X-Forwarded-Host", "evil.example"),
];

#[test]
fn forwarding_headers_from_an_untrusted_peer_are_replaced() {
    let up = Upstream::echo();
    let gw = proxy_gw(&up);
    // No trusted_proxies: the peer is the client, and what it claims is dropped.
    let r = request(gw.addr, "GET", "/a", &FORGED, b"");
    assert_eq!(r.status, 200);
    let got = up.last();
    assert_eq!(
        got.header_all("x-forwarded-for"),
        ["127.0.0.1"],
        "an untrusted peer's chain is dropped; only the peer address is sent"
    );
    assert_eq!(
        got.header_all("forwarded"),
        ["for=127.0.0.1;proto=http;host=\"test\""]
    );
    assert_eq!(
        got.header_all("x-forwarded-proto"),
        ["http"],
        "a client cannot claim https"
    );
    assert_eq!(got.header_all("x-forwarded-host"), ["test"]);

    // Same when trusted_proxies is set but does not cover the peer.
    let up = Upstream::echo();
    let gw = Gateway::start(&format!(
        "[server]\ntrusted_proxies = [\"10.0.0.0/8\"]\n\n{}\n\
         [[routes]]\nname = \"p\"\nprefix = \"/\"\nproxy = {{ upstream = \"be\" }}\n",
        upstream_toml("be", &[up.addr])
    ));
    let r = request(gw.addr, "GET", "/a", &[("X-Forwarded-For", "1.2.3.4")], b"");
    assert_eq!(r.status, 200);
    assert_eq!(up.last().header_all("x-forwarded-for"), ["127.0.0.1"]);
}

#[test]
fn forwarding_headers_from_a_trusted_proxy_are_kept_and_appended_to() {
    let up = Upstream::echo();
    let gw = Gateway::start(&format!(
        "[server]\ntrusted_proxies = [\"127.0.0.0/8\"]\n\n{}\n\
         [[routes]]\nname = \"p\"\nprefix = \"/\"\nproxy = {{ upstream = \"be\" }}\n",
        upstream_toml("be", &[up.addr])
    ));
    let r = request(gw.addr, "GET", "/a", &FORGED, b"");
    assert_eq!(r.status, 200);
    let got = up.last();
    assert_eq!(
        got.header_all("x-forwarded-for"),
        ["203.0.113.7, 198.51.100.2, 127.0.0.1"],
        "one X-Forwarded-For: the proxy's chain first, our peer last"
    );
    assert_eq!(
        got.header_all("forwarded"),
        ["for=203.0.113.7;proto=https, for=127.0.0.1;proto=http;host=\"test\""]
    );
    assert_eq!(
        got.header_all("x-forwarded-proto"),
        ["https"],
        "the proxy saw the client's scheme"
    );
    assert_eq!(got.header_all("x-forwarded-host"), ["evil.example"]);

    // A trusted proxy that sends no forwarding headers gets ours.
    let r = request(gw.addr, "GET", "/b", &[], b"");
    assert_eq!(r.status, 200);
    let got = up.last();
    assert_eq!(got.header_all("x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(got.header_all("x-forwarded-proto"), ["http"]);
    assert_eq!(got.header_all("x-forwarded-host"), ["test"]);
}

/// What other proxies write about the client or the original request.
const PEER_CLAIMS: [(&str, &str); 12] = [
    ("X-Real-IP", "203.0.113.7"),
    ("True-Client-IP", "203.0.113.7"),
    ("X-Client-IP", "203.0.113.7"),
    ("Client-IP", "203.0.113.7"),
    ("X-Cluster-Client-IP", "203.0.113.7"),
    ("CF-Connecting-IP", "203.0.113.7"),
    ("Fastly-Client-IP", "203.0.113.7"),
    ("X-Original-Forwarded-For", "203.0.113.7"),
    ("X-Forwarded-Port", "8443"),
    ("X-Forwarded-Prefix", "/evil"),
    ("X-Forwarded-Server", "evil.example"),
    ("X-Forwarded-Uri", "/admin"),
];

/// Fields IIS, Symfony, Zend, Laravel or Rack read as the request's real target or method.
const TARGET_OVERRIDES: [(&str, &str); 6] = [
    ("X-Original-URL", "/admin"),
    ("X-Rewrite-URL", "/admin"),
    ("X-Original-URI", "/admin"),
    ("X-HTTP-Method-Override", "DELETE"),
    ("X-HTTP-Method", "DELETE"),
    ("X-Method-Override", "DELETE"),
];

#[test]
fn address_claims_and_target_overrides_from_an_untrusted_peer_never_reach_the_upstream() {
    let up = Upstream::echo();
    let gw = proxy_gw(&up);
    let mut sent: Vec<(&str, &str)> = PEER_CLAIMS.to_vec();
    sent.extend(TARGET_OVERRIDES);
    sent.push(("X-Kept", "1"));
    let r = request(gw.addr, "GET", "/open", &sent, b"");
    assert_eq!(r.status, 200);
    let got = up.last();
    assert_eq!(got.header("x-kept"), Some("1"));
    for (name, _) in PEER_CLAIMS.iter().chain(&TARGET_OVERRIDES) {
        assert!(
            got.header(name).is_none(),
            "{name} reached the upstream: {:?}",
            got.headers
        );
    }
    assert_eq!(got.header_all("x-forwarded-for"), ["127.0.0.1"]);
}

#[test]
fn a_trusted_proxy_may_claim_addresses_but_not_override_the_target() {
    let up = Upstream::echo();
    let gw = Gateway::start(&format!(
        "[server]\ntrusted_proxies = [\"127.0.0.0/8\"]\n\n{}\n\
         [[routes]]\nname = \"p\"\nprefix = \"/\"\nproxy = {{ upstream = \"be\" }}\n",
        upstream_toml("be", &[up.addr])
    ));
    let mut sent: Vec<(&str, &str)> = PEER_CLAIMS.to_vec();
    sent.extend(TARGET_OVERRIDES);
    let r = request(gw.addr, "GET", "/open", &sent, b"");
    assert_eq!(r.status, 200);
    let got = up.last();
    for (name, value) in PEER_CLAIMS {
        assert_eq!(got.header(name), Some(value), "{name}: {:?}", got.headers);
    }
    for (name, _) in TARGET_OVERRIDES {
        assert!(got.header(name).is_none(), "{name}: {:?}", got.headers);
    }
}

#[test]
fn client_request_id_is_kept_when_sane() {
    let up = Upstream::echo();
    let gw = proxy_gw(&up);
    for id in ["abc-123_x.y:z", &"a".repeat(128)] {
        let r = request(gw.addr, "GET", "/", &[("X-Request-Id", id)], b"");
        assert_eq!(r.status, 200);
        assert_eq!(r.header_all("x-request-id"), [id]);
        assert_eq!(up.last().header_all("x-request-id"), [id]);
    }
}

#[test]
fn missing_or_insane_request_id_is_replaced_by_a_generated_one() {
    let up = Upstream::echo();
    let gw = proxy_gw(&up);
    let long = "b".repeat(129);
    let cases: [Option<&str>; 5] = [
        None,
        Some("has space"),
        Some(&long),
        Some("semi;colon"),
        Some("quote\"d"),
    ];
    let mut seen = Vec::new();
    for case in cases {
        let extra: Vec<(&str, &str)> = case.map(|v| ("X-Request-Id", v)).into_iter().collect();
        let r = request(gw.addr, "GET", "/", &extra, b"");
        assert_eq!(r.status, 200);
        let ids = r.header_all("x-request-id");
        assert_eq!(ids.len(), 1, "{case:?}: {ids:?}");
        let id = ids[0].to_string();
        assert!(is_uuid_like(&id), "{case:?} -> {id}");
        assert_eq!(
            up.last().header_all("x-request-id"),
            [id.as_str()],
            "same id upstream and downstream"
        );
        assert!(!seen.contains(&id), "ids must differ");
        seen.push(id);
    }
}

#[test]
fn upstream_request_id_does_not_override_ours() {
    let up = Upstream::start(Arc::new(|_req, s| {
        let _ = s.write_all(
            b"HTTP/1.1 200 OK\r\nX-Request-Id: made-by-upstream\r\nContent-Length: 2\r\n\r\nok",
        );
        Reply::KeepAlive
    }));
    let gw = proxy_gw(&up);
    let r = request(gw.addr, "GET", "/", &[("X-Request-Id", "client-id")], b"");
    assert_eq!(r.status, 200);
    assert_eq!(r.header_all("x-request-id"), ["client-id"]);
}

#[test]
fn hop_by_hop_request_headers_are_not_forwarded() {
    let up = Upstream::echo();
    let gw = proxy_gw(&up);
    let r = request(
        gw.addr,
        "POST",
        "/hop",
        &[
            ("Connection", "keep-alive, X-Secret"),
            ("Connection", "x-other"),
            ("X-Secret", "do not leak"),
            ("X-Other", "nor this"),
            ("Keep-Alive", "timeout=5"),
            ("TE", "trailers"),
            ("Trailer", "X-Checksum"),
            ("Upgrade", "h2c"),
            ("Proxy-Authorization", "Basic dXNlcjpwYXNz"),
            ("Proxy-Connection", "keep-alive"),
            ("X-Kept", "yes"),
            ("X-Multi", "1"),
            ("Authorization", "Bearer end-to-end"),
            ("x-multi", "2"),
        ],
        b"body",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let got = up.last();
    let n = names(&got);
    for banned in [
        "connection",
        "x-secret",
        "x-other",
        "keep-alive",
        "te",
        "trailer",
        "upgrade",
        "proxy-authorization",
        "proxy-connection",
    ] {
        assert!(
            !n.contains(&banned.to_string()),
            "{banned} forwarded: {n:?}"
        );
    }
    assert!(!got.raw_head.contains("do not leak"));
    assert_eq!(got.header("x-kept"), Some("yes"));
    assert_eq!(
        got.header_all("x-multi"),
        ["1", "2"],
        "repeated fields kept in order"
    );
    assert_eq!(got.header("authorization"), Some("Bearer end-to-end"));
    assert_eq!(got.body, b"body");
}

#[test]
fn hop_by_hop_response_headers_are_not_forwarded() {
    let up = Upstream::start(Arc::new(|_req, s| {
        let _ = s.write_all(
            b"HTTP/1.1 200 OK\r\n\
              Connection: x-internal, X-Debug\r\n\
              X-Internal: 1\r\n\
              X-Debug: trace\r\n\
              Keep-Alive: timeout=5, max=100\r\n\
              Proxy-Authenticate: Basic realm=x\r\n\
              Trailer: X-Sum\r\n\
              Upgrade: foo\r\n\
              X-Public: visible\r\n\
              Set-Cookie: a=1\r\n\
              Set-Cookie: b=2\r\n\
              Content-Length: 5\r\n\r\nhello",
        );
        Reply::KeepAlive
    }));
    let gw = proxy_gw(&up);
    let mut c = Conn::open(gw.addr);
    let r = c.request("GET", "/", &[], b"");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "hello");
    assert_eq!(r.header("x-public"), Some("visible"));
    assert_eq!(r.header_all("set-cookie"), ["a=1", "b=2"]);
    for banned in [
        "x-internal",
        "x-debug",
        "keep-alive",
        "proxy-authenticate",
        "trailer",
        "upgrade",
        "connection",
    ] {
        assert!(
            r.header(banned).is_none(),
            "{banned} leaked: {:?}",
            r.headers
        );
    }
    // The upstream's Connection header did not say close: ours stays open too.
    let r = c.request("GET", "/", &[], b"");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "hello");
}

#[test]
fn upstream_head_is_freshly_serialized() {
    let up = Upstream::echo();
    let gw = proxy_gw(&up);
    let mut c = Conn::open(gw.addr);
    c.send(
        b"GET /fresh?q=1 HTTP/1.1\r\n\
          x-WEIRD-case:    padded value   \r\n\
          hOsT: Test.Example\r\n\
          ACCEPT:*/*\r\n\
          Content-Length: 0\r\n\r\n",
    );
    let r = c.read_response(false).unwrap();
    assert_eq!(r.status, 200);
    let got = up.last();
    let head = &got.raw_head;
    assert!(head.ends_with("\r\n\r\n"), "{head:?}");
    for (i, b) in head.bytes().enumerate() {
        if b == b'\n' {
            assert!(
                i > 0 && head.as_bytes()[i - 1] == b'\r',
                "bare LF in {head:?}"
            );
        }
    }
    assert!(head.starts_with("GET /fresh?q=1 HTTP/1.1\r\n"), "{head:?}");
    assert!(
        !head.contains("hOsT: Test.Example") && !head.contains("x-WEIRD-case:    padded"),
        "client bytes were copied: {head:?}"
    );
    assert_eq!(got.header_all("host"), ["Test.Example"]);
    assert_eq!(got.header("x-weird-case"), Some("padded value"));
    assert!(
        head.contains(": padded value\r\n"),
        "value re-serialized without the padding: {head:?}"
    );
    assert_eq!(got.header("accept"), Some("*/*"));
    assert!(got.header_all("content-length").len() <= 1);
}

#[test]
fn http10_client_gets_a_response_and_the_connection_closes() {
    let up = Upstream::echo();
    let gw = proxy_gw(&up);
    let out = raw(gw.addr, b"GET /ten HTTP/1.0\r\n\r\n");
    let text = String::from_utf8_lossy(&out);
    assert_eq!(first_status(&out), 200, "{text}");
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    let body_start = text.find("\r\n\r\n").unwrap() + 4;
    let body: serde_json::Value = serde_json::from_str(&text[body_start..]).unwrap();
    assert_eq!(body["target"], "/ten");
    // No Host from the client: the upstream gets the target address, and there is no client
    // host to report.
    let got = up.last();
    assert_eq!(got.header("host"), Some(up.addr.to_string().as_str()));
    assert!(
        got.header("x-forwarded-host").is_none(),
        "{:?}",
        got.headers
    );
    assert_eq!(got.header("forwarded"), Some("for=127.0.0.1;proto=http"));
    assert_eq!(
        got.version, "HTTP/1.1",
        "upstream requests are always HTTP/1.1"
    );
    // raw() reads to EOF: getting here within the timeout means it closed. Check that it was
    // an actual close and not a stall.
    let mut c = Conn::open(gw.addr);
    c.send(b"GET /ten HTTP/1.0\r\nHost: x\r\n\r\n");
    let r = c.read_response(false).unwrap();
    assert_eq!(r.status, 200);
    assert!(
        conn_ended(&mut c, Duration::from_secs(2)),
        "HTTP/1.0 without keep-alive must close"
    );
}

#[test]
fn http10_client_keep_alive_is_honoured() {
    let up = Upstream::echo();
    let gw = proxy_gw(&up);
    let mut c = Conn::open(gw.addr);
    for i in 0..2 {
        c.send(
            format!("GET /ka{i} HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\n").as_bytes(),
        );
        let r = c.read_response(false).unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.framing, "length", "HTTP/1.0 keep-alive needs a length");
        assert!(
            r.header("connection")
                .is_some_and(|v| v.eq_ignore_ascii_case("keep-alive")),
            "{:?}",
            r.headers
        );
        assert_eq!(up.last().target, format!("/ka{i}"));
    }
}

#[test]
fn http10_client_gets_close_delimited_body_from_chunked_upstream() {
    let up = Upstream::start(Arc::new(|_req, s| {
        let _ = s.write_all(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
        );
        Reply::KeepAlive
    }));
    let gw = proxy_gw(&up);
    let out = raw(
        gw.addr,
        b"GET / HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\n",
    );
    let text = String::from_utf8_lossy(&out);
    assert_eq!(first_status(&out), 200, "{text}");
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(
        !head.to_ascii_lowercase().contains("transfer-encoding"),
        "no chunked to an HTTP/1.0 client: {head}"
    );
    assert_eq!(body, "hello world");
}

/// Reads one response head byte by byte straight from the socket (no buffering), so the
/// caller can inspect interim responses.
fn read_head_raw(c: &mut Conn) -> String {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = c.stream.read(&mut b).expect("read head");
        assert_eq!(
            n,
            1,
            "EOF in head after {:?}",
            String::from_utf8_lossy(&head)
        );
        head.push(b[0]);
    }
    String::from_utf8(head).unwrap()
}

#[test]
fn expect_100_continue_is_answered_before_the_body_and_not_forwarded() {
    let up = Upstream::echo();
    let gw = proxy_gw(&up);
    let mut c = Conn::open(gw.addr);
    c.send(
        b"PUT /upload HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 11\r\n\r\n",
    );
    // The gateway answers 100 itself, without the body and without the upstream's help.
    let interim = read_head_raw(&mut c);
    assert_eq!(interim, "HTTP/1.1 100 Continue\r\n\r\n");
    c.send(b"hello world");
    let r = c.read_response(false).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(up.count(), 1, "forwarded once, body included");
    let got = up.last();
    assert_eq!(got.body, b"hello world");
    assert_eq!(got.framing, "length");
    assert!(got.header("expect").is_none(), "{:?}", got.headers);

    // Same on a chunked upload, on the same connection.
    c.send(b"POST /upload HTTP/1.1\r\nHost: x\r\nExpect: 100-Continue\r\nTransfer-Encoding: chunked\r\n\r\n");
    let interim = read_head_raw(&mut c);
    assert_eq!(interim, "HTTP/1.1 100 Continue\r\n\r\n");
    c.send(b"3\r\nabc\r\n0\r\n\r\n");
    let r = c.read_response(false).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(up.last().body, b"abc");
    assert!(up.last().header("expect").is_none());
}

#[test]
fn unknown_expectation_is_417_and_not_forwarded() {
    let up = Upstream::echo();
    let gw = proxy_gw(&up);
    let mut c = Conn::open(gw.addr);
    c.send(b"PUT /upload HTTP/1.1\r\nHost: x\r\nExpect: something-else\r\nContent-Length: 3\r\n\r\nabc");
    let r = c.read_response(false).unwrap();
    assert_eq!(r.status, 417);
    assert_eq!(r.json()["code"], "expectation_failed");
    // A later request that is forwarded marks the point by which the rejected one would have
    // reached the upstream too (the 417 was already answered).
    assert_eq!(get(gw.addr, "/marker").status, 200);
    let seen: Vec<String> = up.requests().into_iter().map(|r| r.target).collect();
    assert_eq!(
        seen,
        ["/marker"],
        "the rejected request was never forwarded"
    );
}

#[test]
fn absolute_form_target_is_sent_upstream_in_origin_form() {
    let up = Upstream::echo();
    let gw = proxy_gw(&up);
    let mut c = Conn::open(gw.addr);
    c.send(b"GET http://Origin.Example:81/abs/path?q=1 HTTP/1.1\r\nHost: ignored.example\r\n\r\n");
    let r = c.read_response(false).unwrap();
    assert_eq!(r.status, 200);
    let got = up.last();
    assert_eq!(got.target, "/abs/path?q=1");
    assert_eq!(
        got.header_all("host"),
        ["Origin.Example:81"],
        "the absolute-form authority replaces Host"
    );
    assert_eq!(got.header("x-forwarded-host"), Some("Origin.Example:81"));

    c.send(b"GET http://origin.example HTTP/1.1\r\nHost: origin.example\r\n\r\n");
    let r = c.read_response(false).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(up.last().target, "/", "an empty absolute-form path is /");
}

#[test]
fn non_websocket_upgrade_is_not_forwarded() {
    let up = Upstream::echo();
    let gw = proxy_gw(&up);
    let r = request(
        gw.addr,
        "GET",
        "/h2c",
        &[
            ("Connection", "Upgrade, HTTP2-Settings"),
            ("Upgrade", "h2c"),
            ("HTTP2-Settings", "AAMAAABkAARAAAAAAAIAAAAA"),
        ],
        b"",
    );
    assert_eq!(r.status, 200);
    let got = up.last();
    assert!(got.header("upgrade").is_none(), "{:?}", got.headers);
    assert!(got.header("http2-settings").is_none(), "{:?}", got.headers);
    assert!(
        !got.header("connection")
            .is_some_and(|v| v.to_ascii_lowercase().contains("upgrade")),
        "{:?}",
        got.headers
    );
}

#[test]
fn http10_keep_alive_error_responses_say_keep_alive() {
    let up = Upstream::echo();
    let gw = Gateway::start(&format!(
        "{}\n[[routes]]\nname = \"p\"\nprefix = \"/p\"\nmethods = [\"GET\"]\nproxy = {{ upstream = \"be\" }}\n",
        upstream_toml("be", &[up.addr])
    ));
    let mut c = Conn::open(gw.addr);
    // 404 and 405 keep the connection; an HTTP/1.0 client must be told, or it waits for EOF.
    for (req, want) in [
        (
            "GET /missing HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
            404,
        ),
        ("DELETE /p HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", 405),
        ("GET /p HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", 200),
    ] {
        c.send(req.as_bytes());
        let r = c.read_response(false).unwrap();
        assert_eq!(r.status, want);
        assert!(
            r.header("connection")
                .is_some_and(|v| v.eq_ignore_ascii_case("keep-alive")),
            "{want}: {:?}",
            r.headers
        );
    }
    // Without keep-alive an HTTP/1.0 error response closes.
    c.send(b"GET /missing HTTP/1.0\r\n\r\n");
    let r = c.read_response(false).unwrap();
    assert_eq!(r.status, 404);
    assert!(conn_ended(&mut c, Duration::from_secs(2)));
}

/// CGI, WSGI, Rack and PHP backends read `X_Consumer` and `X-Consumer` as one variable
/// (`HTTP_X_CONSUMER`). The underscore spelling of every field the gateway owns upstream is
/// dropped like the field itself: a client must not set the consumer, its address or the
/// method that way. Other underscore names pass.
#[test]
fn underscore_spellings_of_gateway_owned_fields_are_dropped() {
    let up = Upstream::echo();
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys.toml");
    let bob = create_key(dir.path(), &keys, "bob", None);
    let cfg = format!(
        "[api_keys]\nfile = \"{}\"\nhash = \"sha256\"\n\n\
         [policies.key]\napi_key = {{ headers = [\"x-api-key\"] }}\n\n{}\n\
         [[routes]]\nname = \"api\"\nprefix = \"/\"\npolicies = [\"key\"]\nproxy = {{ upstream = \"app\" }}\n",
        keys.display(),
        upstream_toml("app", &[up.addr])
    );
    let gw = Gateway::start(&cfg);
    let r = request(
        gw.addr,
        "POST",
        "/x",
        &[
            ("X-Api-Key", &bob),
            ("X_Consumer", "alice"),
            ("x_api_key", "rwk_someone_else"),
            ("X_Forwarded_For", "6.6.6.6"),
            ("X_Real_IP", "6.6.6.6"),
            ("X_HTTP_Method_Override", "DELETE"),
            ("X_Request_Id", "forged"),
            ("Transfer_Encoding", "chunked"),
            ("X_Custom_Thing", "kept"),
        ],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = up.last();
    let names: Vec<String> = seen
        .headers
        .iter()
        .map(|(n, _)| n.to_ascii_lowercase())
        .collect();
    for dropped in [
        "x_consumer",
        "x_api_key",
        "x_forwarded_for",
        "x_real_ip",
        "x_http_method_override",
        "x_request_id",
        "transfer_encoding",
    ] {
        assert!(
            !names.contains(&dropped.to_string()),
            "{dropped} reached the upstream: {names:?}"
        );
    }
    assert_eq!(seen.header("x-consumer"), Some("bob"));
    assert_eq!(seen.header("x_custom_thing"), Some("kept"));
}

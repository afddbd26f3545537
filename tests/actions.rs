//! Route actions as a client sees them: static, echo, redirect and the proxy rewrites.
mod common;
use common::*;

fn is_uuid_like(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == 5
        && parts
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(p, n)| p.len() == n && p.bytes().all(|b| b.is_ascii_hexdigit()))
}

const STATIC_ROUTE: &str = r#"
[[routes]]
name = "teapot"
path = "/tea"
[routes.static]
status = 418
headers = { "content-type" = "text/plain; charset=utf-8", "x-brew" = "earl grey", "Cache-Control" = "no-store" }
body = "short and stout\n"

[[routes]]
name = "empty"
path = "/empty"
static = { status = 204 }

[[routes]]
name = "plain"
path = "/plain"
static = { body = "default status" }

[[routes]]
name = "no-content-with-body"
path = "/nc"
static = { status = 204, headers = { "x-kind" = "nc" } }

[[routes]]
name = "not-modified-with-body"
path = "/nm"
static = { status = 304, headers = { "etag" = "\"v1\"" } }
"#;

#[test]
fn static_response_status_headers_body() {
    let gw = Gateway::start(STATIC_ROUTE);
    let r = get(gw.addr, "/tea");
    assert_eq!(r.status, 418);
    assert_eq!(r.text(), "short and stout\n");
    assert_eq!(r.header("content-length"), Some("16"));
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    assert_eq!(r.header("x-brew"), Some("earl grey"));
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert_eq!(r.framing, "length");
    assert!(r.header("x-request-id").is_some_and(is_uuid_like));

    let r = get(gw.addr, "/plain");
    assert_eq!(r.status, 200, "status defaults to 200");
    assert_eq!(r.text(), "default status");

    let r = get(gw.addr, "/empty");
    assert_eq!(r.status, 204);
    assert!(r.body.is_empty());
}

#[test]
fn static_204_and_304_never_send_a_body() {
    let gw = Gateway::start(STATIC_ROUTE);
    let mut c = Conn::open(gw.addr);
    let mut batch = build_request("GET", "/nc", &[], b"");
    batch.extend(build_request("GET", "/nm", &[], b""));
    batch.extend(build_request("GET", "/plain", &[], b""));
    c.send(&batch);
    let r = c.read_response(false).unwrap();
    assert_eq!(r.status, 204);
    assert_eq!(
        r.header("content-length"),
        None,
        "204 must not carry a length"
    );
    let r = c.read_response(false).unwrap();
    assert_eq!(r.status, 304);
    assert_eq!(r.header("etag"), Some("\"v1\""));
    // Body bytes after a 204/304 head would be parsed as the next status line here.
    let r = c
        .read_response(false)
        .expect("stray body bytes after 204/304 desynced the connection");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "default status");
}

#[test]
fn static_head_gets_headers_and_length_but_no_body() {
    let gw = Gateway::start(STATIC_ROUTE);
    let mut c = Conn::open(gw.addr);
    let r = c.request("HEAD", "/tea", &[], b"");
    assert_eq!(r.status, 418);
    assert_eq!(r.header("content-length"), Some("16"));
    assert_eq!(r.header("x-brew"), Some("earl grey"));
    // If any body bytes had followed the HEAD response, they would be read as the next status
    // line here and the response would not parse.
    let r = c.request("GET", "/plain", &[], b"");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "default status");
}

#[test]
fn static_route_discards_request_body_and_keeps_connection() {
    let gw = Gateway::start(STATIC_ROUTE);
    let mut c = Conn::open(gw.addr);
    let r = c.request("POST", "/plain", &[], b"ignored body bytes");
    assert_eq!(r.status, 200);
    let r = c.request(
        "POST",
        "/plain",
        &[("Transfer-Encoding", "chunked")],
        b"3\r\nabc\r\n0\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    let r = c.request("GET", "/tea", &[], b"");
    assert_eq!(
        r.status, 418,
        "body bytes must not be parsed as the next request"
    );
}

const ECHO_ROUTE: &str = "[[routes]]\nname = \"echo-route\"\nprefix = \"/echo\"\necho = {}\n";

#[test]
fn echo_describes_the_request() {
    let gw = Gateway::start(ECHO_ROUTE);
    let mut c = Conn::open(gw.addr);
    let local = c.stream.local_addr().unwrap();
    let r = c.request(
        "POST",
        "/echo/a/b?x=1&y=%20z",
        &[
            ("X-Custom-Header", "Value With Case"),
            ("X-Multi", "one"),
            ("x-multi", "two"),
            ("Content-Type", "text/plain"),
        ],
        b"payload \"quoted\"\n",
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let j = r.json();
    assert_eq!(j["method"], "POST");
    assert_eq!(j["path"], "/echo/a/b");
    assert_eq!(j["query"], "x=1&y=%20z");
    assert_eq!(j["version"], "HTTP/1.1");
    assert_eq!(j["route"], "echo-route");
    assert_eq!(j["client"], local.to_string());
    assert_eq!(j["body"], "payload \"quoted\"\n");
    let h = &j["headers"];
    assert_eq!(
        h["x-custom-header"], "Value With Case",
        "names lowercased: {h}"
    );
    assert_eq!(h["x-multi"], "one, two");
    assert_eq!(h["content-type"], "text/plain");
    assert_eq!(h["host"], "test");
    assert_eq!(h["content-length"], "17");
    assert!(h.get("X-Custom-Header").is_none());
    let rid = j["request_id"].as_str().unwrap();
    assert!(is_uuid_like(rid), "{rid}");
    assert_eq!(r.header("x-request-id"), Some(rid));

    // Client-supplied id, GET without query, HTTP/1.0.
    let r = c.request("GET", "/echo", &[("X-Request-Id", "my-id.42")], b"");
    let j = r.json();
    assert_eq!(j["request_id"], "my-id.42");
    assert_eq!(j["query"], "");
    assert_eq!(j["body"], "");
    assert_eq!(j["method"], "GET");

    let out = raw(gw.addr, b"GET /echo/old HTTP/1.0\r\n\r\n");
    let text = String::from_utf8_lossy(&out);
    assert_eq!(first_status(&out), 200, "{text}");
    assert!(text.contains("\"version\":\"HTTP/1.0\""), "{text}");
}

/// Echo reflected the `Cookie` and `Authorization` headers, so any script that could fetch an
/// echo route read the `HttpOnly` session cookie and cached Basic credentials the browser
/// attached (cross-site tracing, why `TRACE` is disabled everywhere). Their values are
/// redacted; that they were sent still shows.
#[test]
fn echo_never_reflects_credentials_the_browser_attached() {
    let gw = Gateway::start(ECHO_ROUTE);
    let r = request(
        gw.addr,
        "GET",
        "/echo",
        &[
            ("Cookie", "session=s3cr3t-cookie"),
            ("Authorization", "Basic YWxpY2U6czNjcjN0"),
            ("Proxy-Authorization", "Basic cHJveHk6czNjcjN0"),
            ("X-Api-Key", "shown-the-page-set-it"),
        ],
        b"",
    );
    assert_eq!(r.status, 200);
    let text = r.text();
    for secret in ["s3cr3t-cookie", "YWxpY2U6czNjcjN0", "cHJveHk6czNjcjN0"] {
        assert!(!text.contains(secret), "{text}");
    }
    let h = &r.json()["headers"];
    assert_eq!(h["cookie"], "[redacted]");
    assert_eq!(h["authorization"], "[redacted]");
    assert_eq!(h["proxy-authorization"], "[redacted]");
    assert_eq!(h["x-api-key"], "shown-the-page-set-it");
}

#[test]
fn echo_decodes_chunked_body() {
    let gw = Gateway::start(ECHO_ROUTE);
    let r = request(
        gw.addr,
        "PUT",
        "/echo",
        &[("Transfer-Encoding", "chunked")],
        b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["body"], "hello world");
    assert_eq!(r.json()["method"], "PUT");
}

#[test]
fn redirects_status_and_location() {
    let cfg = r#"
[[routes]]
name = "moved"
path = "/old"
redirect = { location = "/new", status = 308 }

[[routes]]
name = "default-status"
path = "/tmp"
redirect = { location = "https://example.org/x" }

[[routes]]
name = "append"
prefix = "/docs"
redirect = { location = "https://docs.example.org/base", status = 301, append_path = true }

[[routes]]
name = "append-slash"
prefix = "/site"
redirect = { location = "https://example.org/", status = 307, append_path = true }
"#;
    let gw = Gateway::start(cfg);
    let r = get(gw.addr, "/old?ignored=1");
    assert_eq!(r.status, 308);
    assert_eq!(
        r.header("location"),
        Some("/new"),
        "no append_path: query not added"
    );
    assert_eq!(r.header("content-length"), Some("0"));

    let r = get(gw.addr, "/tmp");
    assert_eq!(r.status, 302, "redirect status defaults to 302");
    assert_eq!(r.header("location"), Some("https://example.org/x"));

    let r = get(gw.addr, "/docs/guide/intro?lang=en&v=2");
    assert_eq!(r.status, 301);
    assert_eq!(
        r.header("location"),
        Some("https://docs.example.org/base/docs/guide/intro?lang=en&v=2")
    );

    let r = get(gw.addr, "/site/a/b?c=d");
    assert_eq!(r.status, 307);
    assert_eq!(
        r.header("location"),
        Some("https://example.org/site/a/b?c=d"),
        "no double slash when joining"
    );

    // A redirect works on a kept-alive connection and for HEAD.
    let mut c = Conn::open(gw.addr);
    let r = c.request("HEAD", "/old", &[], b"");
    assert_eq!(r.status, 308);
    assert_eq!(r.header("location"), Some("/new"));
    let r = c.request("GET", "/tmp", &[], b"");
    assert_eq!(r.status, 302);
}

/// A catch-all redirect to a relative `/` with `append_path`, where slashes are kept
/// (`merge_slashes = false`): `GET //evil.com/x` answered `Location: //evil.com/x`, which a
/// browser follows to another host. The joined location never starts with two slashes.
#[test]
fn an_appended_path_never_turns_a_relative_redirect_into_another_host() {
    let gw = Gateway::start(
        "[paths]\nmerge_slashes = false\n\n[[routes]]\nname = \"all\"\nprefix = \"/\"\n\
         redirect = { location = \"/\", status = 301, append_path = true }\n",
    );
    for (target, want) in [
        ("/a/b?c=d", "/a/b?c=d"),
        ("//evil.com/x", "/evil.com/x"),
        ("///evil.com", "/evil.com"),
        ("/.//evil.com", "/evil.com"),
    ] {
        let r = get(gw.addr, target);
        assert_eq!(r.status, 301, "{target}: {}", r.text());
        assert_eq!(r.header("location"), Some(want), "{target}");
    }
}

fn proxy_cfg(up: &Upstream) -> String {
    format!(
        r#"{}
[[routes]]
name = "strip"
prefix = "/api"
proxy = {{ upstream = "be", strip_prefix = true }}

[[routes]]
name = "replace"
prefix = "/old"
proxy = {{ upstream = "be", replace_prefix = "/v2" }}

[[routes]]
name = "replace-dir"
prefix = "/svc/"
proxy = {{ upstream = "be", replace_prefix = "/internal/" }}

[[routes]]
name = "as-is"
prefix = "/plain"
proxy = {{ upstream = "be" }}

[[routes]]
name = "target-host"
prefix = "/th"
proxy = {{ upstream = "be", preserve_host = false }}
"#,
        upstream_toml("be", &[up.addr])
    )
}

/// Target the upstream saw for a GET of `path` through the gateway.
fn upstream_target(gw: &Gateway, up: &Upstream, path: &str) -> String {
    let r = get(gw.addr, path);
    assert_eq!(r.status, 200, "{path}: {}", r.text());
    assert_eq!(r.header("x-upstream"), Some("echo"));
    up.last().target
}

#[test]
fn proxy_strip_prefix_rewrites_target_and_keeps_query() {
    let up = Upstream::echo();
    let gw = Gateway::start(&proxy_cfg(&up));
    assert_eq!(
        upstream_target(&gw, &up, "/api/users?x=1&y=2"),
        "/users?x=1&y=2"
    );
    assert_eq!(
        upstream_target(&gw, &up, "/api/users/7/posts"),
        "/users/7/posts"
    );
    assert_eq!(upstream_target(&gw, &up, "/api"), "/");
    assert_eq!(upstream_target(&gw, &up, "/api/"), "/");
    assert_eq!(upstream_target(&gw, &up, "/api?q=%20"), "/?q=%20");
    assert_eq!(upstream_target(&gw, &up, "/plain/a?b=c"), "/plain/a?b=c");
}

#[test]
fn proxy_replace_prefix_rewrites_target_and_keeps_query() {
    let up = Upstream::echo();
    let gw = Gateway::start(&proxy_cfg(&up));
    assert_eq!(upstream_target(&gw, &up, "/old/users?a=b"), "/v2/users?a=b");
    assert_eq!(upstream_target(&gw, &up, "/old"), "/v2");
    assert_eq!(upstream_target(&gw, &up, "/old/"), "/v2/");
    assert_eq!(upstream_target(&gw, &up, "/old?z=1"), "/v2?z=1");
    assert_eq!(upstream_target(&gw, &up, "/svc/x/y?k"), "/internal/x/y?k");
}

#[test]
fn proxy_preserves_host_by_default_and_uses_target_address_when_told() {
    let up = Upstream::echo();
    let gw = Gateway::start(&proxy_cfg(&up));
    let r = request(
        gw.addr,
        "GET",
        "/plain",
        &[("Host", "client.example:8443")],
        b"",
    );
    assert_eq!(r.status, 200);
    assert_eq!(up.last().header("host"), Some("client.example:8443"));

    let r = request(gw.addr, "GET", "/th/x", &[("Host", "client.example")], b"");
    assert_eq!(r.status, 200);
    let got = up.last();
    assert_eq!(got.header("host"), Some(up.addr.to_string().as_str()));
    assert_eq!(got.header_all("host").len(), 1, "exactly one Host upstream");
    assert_eq!(
        got.header("x-forwarded-host"),
        Some("client.example"),
        "the client's host is still reported"
    );
}

#[test]
fn proxy_relays_status_headers_and_body() {
    let up = Upstream::fixed(201, "created!", "fixed-up");
    let gw = Gateway::start(&format!(
        "{}\n[[routes]]\nname = \"p\"\nprefix = \"/\"\nproxy = {{ upstream = \"be\" }}\n",
        upstream_toml("be", &[up.addr])
    ));
    let mut c = Conn::open(gw.addr);
    for _ in 0..3 {
        let r = c.request("POST", "/things", &[], b"{\"a\":1}");
        assert_eq!(r.status, 201);
        assert_eq!(r.text(), "created!");
        assert_eq!(r.header("x-upstream"), Some("fixed-up"));
        assert_eq!(r.header("content-length"), Some("8"));
    }
    assert_eq!(up.count(), 3);
    assert_eq!(up.last().body, b"{\"a\":1}");
    assert_eq!(up.last().method, "POST");
}

#[test]
fn proxied_head_keeps_length_and_sends_no_body() {
    let up = Upstream::start(std::sync::Arc::new(|req, s| {
        use std::io::Write;
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\nX-Method-Seen: ");
        let _ = s.write_all(req.method.as_bytes());
        let _ = s.write_all(b"\r\n\r\n");
        if req.method != "HEAD" {
            let _ = s.write_all(&[b'x'; 1234]);
        }
        Reply::KeepAlive
    }));
    let gw = Gateway::start(&format!(
        "{}\n[[routes]]\nname = \"p\"\nprefix = \"/\"\nproxy = {{ upstream = \"be\" }}\n",
        upstream_toml("be", &[up.addr])
    ));
    let mut c = Conn::open(gw.addr);
    let r = c.request("HEAD", "/doc", &[], b"");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("1234"));
    assert_eq!(r.header("x-method-seen"), Some("HEAD"));
    // The connection is still in sync: a following GET gets its full body.
    let r = c.request("GET", "/doc", &[], b"");
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), 1234);
}

#[test]
fn echo_output_is_valid_json_for_any_bytes() {
    let gw = Gateway::start(ECHO_ROUTE);
    let r = request(
        gw.addr,
        "POST",
        "/echo/%ff%01?k=%22",
        &[("X-Quote", "say \"hi\" \\ bye")],
        b"bin\x00ary\xff\r\n\"",
    );
    assert_eq!(r.status, 200);
    let j = r.json();
    assert_eq!(j["body"], "bin\u{0}ary\u{fffd}\r\n\"");
    assert_eq!(j["headers"]["x-quote"], "say \"hi\" \\ bye");
    // (%00 itself is refused before routing: see tests/path_confusion.rs.)
    assert_eq!(j["path"], "/echo/%ff%01", "the path is reported raw");
    assert_eq!(j["query"], "k=%22");
}

#[test]
fn check_refuses_a_body_on_204_and_304() {
    for status in [204, 304] {
        let (code, _, err) = check_config(&format!(
            "[[listeners]]\naddress = \"127.0.0.1:1\"\n[[routes]]\nname = \"x\"\npath = \"/\"\n\
             static = {{ status = {status}, body = \"oops\" }}\n"
        ));
        assert_eq!(code, 1, "{err}");
        assert!(
            err.contains(":6:") && err.contains("routes[0].static.body"),
            "{err}"
        );
    }
}

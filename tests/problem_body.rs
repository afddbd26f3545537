//! Error responses are `application/problem+json` with exactly the fields README.md promises:
//! `{"type","title","status","code","detail","request_id"}`.
mod common;
use common::*;

const CONFIG: &str = "[[routes]]\nname = \"s\"\npath = \"/s\"\nmethods = [\"GET\"]\nmax_body_bytes = 10\nstatic = { body = \"ok\" }\n";

/// Checks the problem body of `r`: the exact field set, `type`, `title` (the reason phrase),
/// `status` (= the HTTP status), `code`, a non-empty `detail`, and `request_id` (= the
/// X-Request-Id header).
fn check_problem(r: &Response, status: u16, title: &str, code: &str, label: &str) {
    assert_eq!(r.status, status, "{label}: {}", r.text());
    assert_eq!(
        r.header("content-type"),
        Some("application/problem+json"),
        "{label}"
    );
    let v = r.json();
    let obj = v
        .as_object()
        .unwrap_or_else(|| panic!("{label}: not an object: {v}"));
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        ["code", "detail", "request_id", "status", "title", "type"],
        "{label}: {v}"
    );
    assert_eq!(v["type"], "about:blank", "{label}");
    assert_eq!(v["title"], title, "{label}");
    assert_eq!(v["status"], status, "{label}");
    assert_eq!(v["code"], code, "{label}");
    let detail = v["detail"].as_str().unwrap_or_default();
    assert!(!detail.is_empty(), "{label}: empty detail: {v}");
    let rid = v["request_id"].as_str().unwrap_or_default();
    assert!(!rid.is_empty(), "{label}: no request id: {v}");
    assert_eq!(r.header("x-request-id"), Some(rid), "{label}");
}

#[test]
fn not_found_bad_request_and_others_have_the_promised_fields() {
    let gw = Gateway::start(CONFIG);

    let r = get(gw.addr, "/nope");
    check_problem(&r, 404, "Not Found", "not_found", "404");
    assert_eq!(r.json()["detail"], "no route matches this request");

    // A client-supplied request id is the one reported.
    let r = request(gw.addr, "GET", "/nope", &[("X-Request-Id", "abc-123")], b"");
    check_problem(&r, 404, "Not Found", "not_found", "404 with id");
    assert_eq!(r.json()["request_id"], "abc-123");

    // 400: a head without Host.
    let mut c = Conn::open(gw.addr);
    c.send(b"GET /s HTTP/1.1\r\n\r\n");
    let r = c.read_response(false).expect("400 response");
    check_problem(&r, 400, "Bad Request", "bad_request", "400 missing host");

    // 400: conflicting framing.
    let mut c = Conn::open(gw.addr);
    c.send(b"POST /s HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nx");
    let r = c.read_response(false).expect("400 response");
    check_problem(&r, 400, "Bad Request", "bad_request", "400 two lengths");

    let r = request(gw.addr, "POST", "/s", &[], b"");
    check_problem(&r, 405, "Method Not Allowed", "method_not_allowed", "405");
    assert_eq!(r.header("allow").map(|a| a.contains("GET")), Some(true));

    let mut c = Conn::open(gw.addr);
    c.send(&build_request("GET", "/s", &[], &[b'x'; 11]));
    let r = c.read_response(false).expect("413 response");
    check_problem(&r, 413, "Content Too Large", "payload_too_large", "413");

    // HEAD gets the head of the problem response without its body.
    let r = request(gw.addr, "HEAD", "/nope", &[], b"");
    assert_eq!(r.status, 404);
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
    assert!(r.body.is_empty());
}

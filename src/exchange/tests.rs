//! The phases driven in memory, with no socket: `exchange::memory`'s wire feeds a request and
//! records the response the phases produce. This is the seam an HTTP/2 stream plugs into, so whatever holds
//! here holds for every wire.

use std::path::Path;

use crate::config::compile;
use crate::core::Core;
use crate::shared::Shared;

use super::memory::{self, Ran};
use super::wire::BodyLen;

const CONFIG: &str = r#"
version = 1
[[listeners]]
name = "public"
address = "127.0.0.1:0"

[policies.office]
ip = { allow = ["10.0.0.0/8"] }

[policies.web]
cors = { origins = ["https://app.example.com"], methods = ["GET", "PUT"] }

[[routes]]
name = "echo"
prefix = "/echo"
max_body_bytes = 16
echo = {}

[[routes]]
name = "hello"
path = "/hello"
methods = ["GET", "HEAD"]
[routes.static]
status = 200
headers = { "content-type" = "text/plain" }
body = "hi\n"

[[routes]]
name = "moved"
prefix = "/old"
redirect = { status = 308, location = "https://new.example.com/", append_path = true }

[[routes]]
name = "private"
path = "/private"
policies = ["office"]
echo = {}

[[routes]]
name = "cors"
path = "/cors"
methods = ["GET", "PUT"]
policies = ["web"]
echo = {}
"#;

fn core() -> Core {
    let file = Path::new("memory.toml");
    let cfg = compile::parse(CONFIG, file)
        .and_then(|raw| compile::compile(raw, CONFIG, file, 1))
        .unwrap_or_else(|e| panic!("test config: {}", e[0]));
    Core::new(0, Shared::new(cfg, 1, Default::default()))
}

/// Runs `request` (head, then body bytes) through the phases on a memory wire.
fn run(core: &Core, request: &[u8]) -> Ran {
    let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
        .enable_timer()
        .build()
        .expect("a runtime");
    match rt.block_on(memory::run(core, request)) {
        Some(ran) => {
            assert!(ran.wire.ended, "every response is ended");
            assert_eq!(ran.wire.starts, 1, "one response per exchange");
            ran
        }
        None => panic!("test request does not parse"),
    }
}

fn body(r: &Ran) -> String {
    String::from_utf8_lossy(&r.wire.sent).into_owned()
}

#[test]
fn echo_reads_a_body_streamed_in_pieces_and_answers_with_its_length() {
    let core = core();
    let r = run(
        &core,
        b"POST /echo/x?a=1 HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\nhello world",
    );
    assert_eq!(r.wire.status, 200);
    assert!(r.keep);
    assert!(r.wire.fields.contains("content-type: application/json"));
    assert_eq!(r.wire.len, Some(BodyLen::Length(r.wire.sent.len() as u64)));
    let json = body(&r);
    assert!(json.contains("\"body\":\"hello world\""), "{json}");
    assert!(json.contains("\"route\":\"echo\"") && json.contains("\"path\":\"/echo/x\""));
    assert_eq!(r.facts.status, 200);
    assert_eq!(r.facts.route.map(|id| id.0), Some(0));
}

#[test]
fn a_chunked_body_over_the_route_limit_is_refused_and_the_connection_closes() {
    let core = core();
    let chunked = b"POST /echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n\
        20\r\n0123456789abcdef0123456789abcdef\r\n0\r\n\r\n";
    let r = run(&core, chunked);
    assert_eq!(r.wire.status, 413);
    assert!(
        !r.keep,
        "413 closes: the rest of the body may still be coming"
    );
    assert!(body(&r).contains("\"code\":\"payload_too_large\""));
    assert!(r.wire.lingered, "the answer is not destroyed by a reset");
}

#[test]
fn routing_errors_are_problem_responses_from_the_one_table() {
    let core = core();
    let r = run(&core, b"GET /nowhere HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(r.wire.status, 404);
    assert!(r.keep, "a 404 keeps the connection");
    assert!(r
        .wire
        .fields
        .contains("content-type: application/problem+json"));
    assert!(body(&r).contains("\"code\":\"not_found\""));

    let r = run(&core, b"DELETE /hello HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(r.wire.status, 405);
    assert!(
        r.wire.fields.contains("allow: GET, HEAD"),
        "{}",
        r.wire.fields
    );

    let r = run(
        &core,
        b"GET /hello HTTP/1.1\r\nHost: h\r\nExpect: teapot\r\n\r\n",
    );
    assert_eq!(r.wire.status, 417);
    assert!(!r.keep);
}

#[test]
fn static_and_redirect_actions() {
    let core = core();
    let r = run(&core, b"GET /hello HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!((r.wire.status, body(&r).as_str()), (200, "hi\n"));
    assert!(r.wire.fields.contains("content-type: text/plain"));

    let r = run(
        &core,
        b"GET /old/a/b?q=1 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.wire.status, 308);
    assert!(!r.keep, "the client asked to close");
    assert!(
        r.wire
            .fields
            .contains("location: https://new.example.com/old/a/b?q=1"),
        "{}",
        r.wire.fields
    );
}

#[test]
fn the_guard_refuses_before_the_action_and_says_why() {
    let core = core();
    // The memory client is 192.0.2.7; the route admits 10.0.0.0/8 only.
    let r = run(
        &core,
        b"POST /private HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc",
    );
    assert_eq!(r.wire.status, 403);
    assert!(r.facts.auth_failure.is_some());
    assert!(body(&r).contains("\"code\":\"forbidden\""));
    assert!(!body(&r).contains("\"route\""), "the echo action never ran");
    assert_eq!(
        r.wire.read, 0,
        "the body was never read for a refused request"
    );
}

#[test]
fn a_cors_preflight_is_answered_by_the_route_policy_before_anything_else() {
    let core = core();
    let r = run(
        &core,
        b"OPTIONS /cors HTTP/1.1\r\nHost: h\r\nOrigin: https://app.example.com\r\n\
          Access-Control-Request-Method: PUT\r\n\r\n",
    );
    assert!(
        r.wire.status == 204 || r.wire.status == 200,
        "{}",
        r.wire.status
    );
    assert!(
        r.wire
            .fields
            .contains("access-control-allow-origin: https://app.example.com"),
        "{}",
        r.wire.fields
    );
}

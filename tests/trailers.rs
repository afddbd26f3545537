//! Trailer fields pass through the gateway on HTTP/1.1 in both directions (chunked request
//! trailers reach the upstream; chunked response trailers reach the client), minus the fields
//! RFC 9110 §6.5.1 keeps out of trailers (framing, routing, authentication), which a client or
//! upstream could otherwise use to smuggle what the header section decided, and, either way,
//! minus what the gateway or the route's policies write in the header section.
mod common;
use common::*;

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn gateway_for(up: &Upstream) -> Gateway {
    Gateway::start(&format!(
        "{}\n[[routes]]\nname = \"t\"\nprefix = \"/\"\nproxy = {{ upstream = \"u\" }}\n",
        upstream_toml("u", &[up.addr])
    ))
}

/// Reads until `done(bytes so far)` or the deadline passes.
fn read_until(c: &mut Conn, done: impl Fn(&[u8]) -> bool) -> Vec<u8> {
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline && !done(&got) {
        match c.stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    got
}

#[test]
fn request_trailers_reach_the_upstream_without_forbidden_fields() {
    let up = Upstream::echo();
    let g = gateway_for(&up);
    let mut c = Conn::open(g.addr);
    c.send(
        b"POST /t HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\ntrailer: x-checksum\r\n\r\n\
          5\r\nhello\r\n0\r\nx-checksum: 5d41\r\ncontent-length: 999\r\nhost: evil\r\n\
          authorization: Bearer smuggled\r\n\r\n",
    );
    let resp = c.read_response(false).unwrap();
    assert_eq!(resp.status, 200);
    up.wait_for_count(1, Duration::from_secs(5));
    let raw = up.raw_text();
    let tail = &raw[raw.find("0\r\n").expect("last chunk upstream")..];
    assert!(tail.contains("x-checksum: 5d41\r\n"), "{raw}");
    // Whole fields, not bare values: random ids (traceparent, x-request-id) may contain "999".
    for forbidden in ["content-length: 999", "host: evil", "Bearer smuggled"] {
        assert!(
            !raw.to_ascii_lowercase()
                .contains(&forbidden.to_ascii_lowercase()),
            "{forbidden} leaked upstream:\n{raw}"
        );
    }
    assert_eq!(up.last().body, b"hello");
}

#[test]
fn request_trailers_cannot_carry_what_the_gateway_or_a_policy_writes() {
    // The header section's client copies of these are dropped or replaced; a trailer must not
    // bring them back, or an upstream that merges trailers into headers would take a client's
    // consumer id or address for the gateway's.
    let up = Upstream::echo();
    let g = Gateway::start(&format!(
        "[policies.t]
transform = {{ request_headers = {{ set = {{ \"x-consumer-id\" = \"gateway-set\" }}, \
         remove = [\"x-internal-token\"] }} }}\n\n{}\n\
         [[routes]]\nname = \"t\"\nprefix = \"/\"\npolicies = [\"t\"]\nproxy = {{ upstream = \"u\" }}\n",
        upstream_toml("u", &[up.addr])
    ));
    let mut c = Conn::open(g.addr);
    c.send(
        b"POST /t HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n\
          5\r\nhello\r\n0\r\nx-checksum: 5d41\r\nx-consumer-id: admin\r\n\
          x-internal-token: t0k3n\r\nx-forwarded-for: 6.6.6.6\r\nforwarded: for=6.6.6.6\r\n\
          x-request-id: spoofed-id\r\nx-ringway-attempts: 9\r\n\
          traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n\r\n",
    );
    let resp = c.read_response(false).unwrap();
    assert_eq!(resp.status, 200);
    up.wait_for_count(1, Duration::from_secs(5));
    let seen = up.last();
    assert_eq!(seen.header("x-consumer-id"), Some("gateway-set"));
    assert_eq!(seen.body, b"hello");
    let raw = up.raw_text();
    let tail = &raw[raw.find("\r\n0\r\n").expect("last chunk upstream")..];
    assert!(tail.contains("x-checksum: 5d41\r\n"), "{raw}");
    for owned in [
        "admin",
        "t0k3n",
        "6.6.6.6",
        "spoofed-id",
        "x-ringway-attempts: 9",
        "0af7651916cd43dd8448eb211c80319c",
    ] {
        assert!(!raw.contains(owned), "{owned} reached the upstream:\n{raw}");
    }
}

#[test]
fn response_trailers_reach_the_client_without_forbidden_fields() {
    let up = Upstream::start(Arc::new(|_req, s| {
        let _ = s.write_all(
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntrailer: grpc-status\r\n\r\n\
              3\r\nabc\r\n0\r\ngrpc-status: 0\r\nset-cookie: session=stolen\r\n\
              content-length: 1\r\n\r\n",
        );
        Reply::KeepAlive
    }));
    let g = gateway_for(&up);
    let mut c = Conn::open(g.addr);
    c.send(b"GET /t HTTP/1.1\r\nhost: a\r\nte: trailers\r\n\r\n");
    // The head, the chunk, then the last chunk and its trailer section.
    let raw = read_until(&mut c, |b| {
        let text = String::from_utf8_lossy(b);
        text.find("\r\n0\r\n")
            .is_some_and(|i| text[i + 2..].contains("\r\n\r\n"))
    });
    let text = String::from_utf8_lossy(&raw).into_owned();
    let tail = &text[text.rfind("\r\n0\r\n").expect("last chunk") + 2..];
    assert!(tail.starts_with("0\r\ngrpc-status: 0\r\n"), "{text}");
    assert!(!text.contains("stolen"), "{text}");
    assert!(!tail.contains("content-length"), "{text}");
    // The connection stays usable after a response with trailers.
    c.send(b"GET /t HTTP/1.1\r\nhost: a\r\n\r\n");
    let again = read_until(&mut c, |b| b.windows(3).any(|w| w == b"abc"));
    assert!(
        again.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&again)
    );
}

#[test]
fn response_trailers_cannot_undo_what_the_route_decided() {
    // The route removes one field and sets another in responses, answers CORS and counts a
    // rate limit. An upstream trailer must not bring back, override or forge any of that, nor
    // the request id: a client or a cache that merges trailers would believe it.
    let up = Upstream::start(Arc::new(|_req, s| {
        let _ = s.write_all(
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n\
              3\r\nabc\r\n0\r\ngrpc-status: 0\r\nx-internal: db-password\r\n\
              x-frame-options: ALLOWALL\r\nx-request-id: forged\r\n\
              access-control-allow-origin: https://evil.example\r\n\
              ratelimit: \"default\";r=999999;t=0\r\ncache-status: ringway; hit\r\nserver-timing: db;dur=53\r\n\r\n",
        );
        Reply::KeepAlive
    }));
    let g = Gateway::start(&format!(
        "[policies.t]\ntransform = {{ response_headers = {{ remove = [\"x-internal\"], \
         set = {{ \"x-frame-options\" = \"DENY\" }} }} }}\n\n\
         [policies.web]\ncors = {{ origins = [\"https://app.example.com\"] }}\n\n\
         [policies.limit]\nrate_limit = {{ key = \"ip\", limits = [{{ requests = 100, per = \"1h\" }}] }}\n\n\
         {}\n[[routes]]\nname = \"t\"\nprefix = \"/\"\npolicies = [\"t\", \"web\", \"limit\"]\n\
         proxy = {{ upstream = \"u\" }}\n",
        upstream_toml("u", &[up.addr])
    ));
    let mut c = Conn::open(g.addr);
    c.send(
        b"GET /t HTTP/1.1\r\nhost: a\r\norigin: https://app.example.com\r\nte: trailers\r\n\r\n",
    );
    let raw = read_until(&mut c, |b| {
        let text = String::from_utf8_lossy(b);
        text.find("\r\n0\r\n")
            .is_some_and(|i| text[i + 2..].contains("\r\n\r\n"))
    });
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, _) = text.split_once("\r\n\r\n").expect("a response head");
    let head = head.to_ascii_lowercase();
    assert!(head.contains("x-frame-options: deny"), "{text}");
    assert!(
        head.contains("access-control-allow-origin: https://app.example.com"),
        "{text}"
    );
    assert!(head.contains("ratelimit: "), "{text}");
    let tail = &text[text.rfind("\r\n0\r\n").expect("last chunk") + 2..];
    assert!(tail.contains("grpc-status: 0\r\n"), "{text}");
    assert!(tail.contains("server-timing: db;dur=53\r\n"), "{text}");
    for forged in [
        "db-password",
        "ALLOWALL",
        "forged",
        "evil.example",
        "999999",
    ] {
        assert!(
            !tail.contains(forged),
            "{forged} reached the client:\n{text}"
        );
    }
}

/// Digests of the content the upstream sent (`Content-Digest`, `Repr-Digest`, `Content-MD5`)
/// describe bytes a client of a compressing route never gets: they leave with the head's
/// `Content-Length` when the gateway compresses, in the trailers as in the head. Other
/// trailer fields still pass.
#[test]
fn digest_trailers_do_not_follow_a_body_the_gateway_compressed() {
    let up = Upstream::start(Arc::new(|_req, s| {
        let body = "a".repeat(3000);
        let _ = s.write_all(
            format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\
                 trailer: content-digest, x-rows\r\n\r\n{:x}\r\n{body}\r\n0\r\n\
                 content-digest: sha-256=:AAAA:\r\ncontent-md5: Q2hlY2sgSW50ZWdyaXR5IQ==\r\n\
                 x-rows: 3\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        );
        Reply::KeepAlive
    }));
    let g = Gateway::start(&format!(
        "[policies.z]\ncompress = {{ codings = [\"gzip\"] }}\n{}\n[[routes]]\nname = \"t\"\n\
         prefix = \"/\"\npolicies = [\"z\"]\nproxy = {{ upstream = \"u\" }}\n",
        upstream_toml("u", &[up.addr])
    ));
    let read_tail = |accept: &str| {
        let mut c = Conn::open(g.addr);
        c.send(format!("GET /t HTTP/1.1\r\nhost: a\r\nte: trailers\r\n{accept}\r\n").as_bytes());
        let raw = read_until(&mut c, |b| {
            let text = String::from_utf8_lossy(b);
            text.rfind("\r\n0\r\n")
                .is_some_and(|i| text[i + 2..].contains("\r\n\r\n"))
        });
        let text = String::from_utf8_lossy(&raw).into_owned();
        let head = text
            .split_once("\r\n\r\n")
            .expect("a head")
            .0
            .to_ascii_lowercase();
        let tail = text[text.rfind("\r\n0\r\n").expect("last chunk") + 2..].to_ascii_lowercase();
        (head, tail)
    };
    let (head, tail) = read_tail("accept-encoding: gzip\r\n");
    assert!(head.contains("content-encoding: gzip"), "{head}");
    assert!(tail.contains("x-rows: 3\r\n"), "{tail}");
    assert!(!tail.contains("content-digest"), "{tail}");
    assert!(!tail.contains("content-md5"), "{tail}");
    // Uncompressed, the digests hold and pass.
    let (head, tail) = read_tail("");
    assert!(!head.contains("content-encoding"), "{head}");
    assert!(
        tail.contains("content-digest: sha-256=:aaaa:\r\n"),
        "{tail}"
    );
    assert!(tail.contains("x-rows: 3\r\n"), "{tail}");
}

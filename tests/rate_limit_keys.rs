//! What a rate limit counts by: `consumer` (every key of a consumer shares one quota),
//! `api_key` (each key its own), `route` (all callers share) and the client-IP fallback when
//! the request carries no consumer. Client addresses come from `X-Forwarded-For` through a
//! trusted proxy (the test client is always 127.0.0.1).
mod common;
use common::*;

use std::path::Path;
use std::process::Command;

const SECRET: &str = "an-hmac-secret-of-sufficient-length";

/// `ringway keys create --consumer <consumer>` against `config`; returns the printed key.
fn create_key(config: &Path, consumer: &str) -> String {
    let out = Command::new(bin())
        .args(["keys", "create", "--consumer", consumer, "--config"])
        .arg(config)
        .env("RINGWAY_KEY_SECRET", SECRET)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

struct Setup {
    gw: Gateway,
    alice1: String,
    alice2: String,
    bob: String,
    _dir: tempfile::TempDir,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let keys_file = dir.path().join("keys.toml");
    let api_keys = format!(
        "[api_keys]\nfile = \"{}\"\nhash = \"hmac-sha256\"\n",
        keys_file.display()
    );
    let cli = dir.path().join("cli.toml");
    std::fs::write(&cli, &api_keys).unwrap();
    let alice1 = create_key(&cli, "alice");
    let alice2 = create_key(&cli, "alice");
    let bob = create_key(&cli, "bob");
    let limit = |key: &str| {
        format!("rate_limit = {{ key = \"{key}\", limits = [{{ requests = 3, per = \"1h\" }}] }}")
    };
    let route = |name: &str, policies: &str| {
        format!(
            "[[routes]]\nname = \"{name}\"\npath = \"/{name}\"\npolicies = [{policies}]\nstatic = {{ body = \"ok\" }}\n\n"
        )
    };
    let body = format!(
        "[server]\ntrusted_proxies = [\"127.0.0.1/32\"]\n\n{api_keys}\n\
         [policies.key]\napi_key = {{}}\n\n\
         [policies.per-consumer]\n{}\n\n[policies.per-key]\n{}\n\n[policies.per-route]\n{}\n\n\
         [policies.anon-consumer]\n{}\n\n[policies.per-header]\n{}\n\n\
         [policies.per-tenant]\n{}\n\n{}{}{}{}{}{}",
        limit("consumer"),
        limit("api_key"),
        limit("route"),
        limit("consumer"),
        limit("header:x-consumer"),
        limit("header:x-tenant"),
        route("by-consumer", "\"key\", \"per-consumer\""),
        route("by-key", "\"key\", \"per-key\""),
        route("by-route", "\"per-route\""),
        route("anon", "\"anon-consumer\""),
        route("by-header", "\"key\", \"per-header\""),
        route("by-tenant", "\"per-tenant\""),
    );
    let gw = Gateway::start_env(&body, 2, &[("RINGWAY_KEY_SECRET", SECRET)]);
    Setup {
        gw,
        alice1,
        alice2,
        bob,
        _dir: dir,
    }
}

/// One request on a fresh connection (so both workers take part) with an API key and a client
/// address.
fn call(s: &Setup, path: &str, key: Option<&str>, client: &str) -> u16 {
    call_with(s, path, key, client, &[])
}

fn call_with(
    s: &Setup,
    path: &str,
    key: Option<&str>,
    client: &str,
    extra: &[(&str, &str)],
) -> u16 {
    let mut headers = vec![("Connection", "close"), ("X-Forwarded-For", client)];
    if let Some(k) = key {
        headers.push(("X-Api-Key", k));
    }
    headers.extend_from_slice(extra);
    request(s.gw.addr, "GET", path, &headers, b"").status
}

/// A limit keyed by a header that an earlier policy sets (the API-key policy's `x-consumer`)
/// counts the value the upstream receives. The client's own copy of that header is replaced on
/// the way upstream, so counting it would let a caller pick a fresh bucket per request.
#[test]
fn a_header_key_counts_the_value_the_gateway_set_not_the_clients_copy() {
    let s = setup();
    let a1 = Some(&*s.alice1);
    for i in 0..3 {
        let mine = format!("rotated-{i}");
        let st = call_with(&s, "/by-header", a1, "10.0.0.1", &[("X-Consumer", &mine)]);
        assert_eq!(st, 200, "request {i}");
    }
    // A fourth spelling of the header is still alice: her bucket is used up.
    let st = call_with(
        &s,
        "/by-header",
        a1,
        "10.0.0.1",
        &[("X-Consumer", "rotated-3")],
    );
    assert_eq!(st, 429, "the client's x-consumer chose the bucket");
    // Her other key is the same consumer, so the same bucket; bob has his own.
    assert_eq!(call(&s, "/by-header", Some(&s.alice2), "10.0.0.2"), 429);
    assert_eq!(call(&s, "/by-header", Some(&s.bob), "10.0.0.1"), 200);
}

#[test]
fn consumer_key_gives_all_keys_of_a_consumer_one_quota() {
    let s = setup();
    let (a1, a2, bob) = (Some(&*s.alice1), Some(&*s.alice2), Some(&*s.bob));
    // Different keys and different addresses, one consumer: 3 in total.
    assert_eq!(call(&s, "/by-consumer", a1, "10.0.0.1"), 200);
    assert_eq!(call(&s, "/by-consumer", a2, "10.0.0.2"), 200);
    assert_eq!(call(&s, "/by-consumer", a1, "10.0.0.3"), 200);
    assert_eq!(call(&s, "/by-consumer", a2, "10.0.0.4"), 429);
    assert_eq!(call(&s, "/by-consumer", a1, "10.0.0.1"), 429);
    // Another consumer from the same address has its own quota.
    assert_eq!(call(&s, "/by-consumer", bob, "10.0.0.1"), 200);
}

#[test]
fn without_a_consumer_the_consumer_key_counts_by_client_ip() {
    // A route whose limit is keyed by consumer but that identifies nobody: each client
    // address gets its own quota instead of all anonymous callers sharing one bucket.
    let s = setup();
    for _ in 0..3 {
        assert_eq!(call(&s, "/anon", None, "10.0.0.1"), 200);
    }
    assert_eq!(call(&s, "/anon", None, "10.0.0.1"), 429);
    assert_eq!(call(&s, "/anon", None, "10.0.0.2"), 200, "own quota per IP");
    // An unchecked key on that route identifies nobody either: still counted by address.
    assert_eq!(call(&s, "/anon", Some(&s.alice1), "10.0.0.1"), 429);
}

/// An IPv6 client is counted by its /64 (`limits.ipv6_prefix`): one host holds a whole /64
/// and could otherwise rotate through it, a fresh quota per address.
#[test]
fn ipv6_clients_are_counted_by_their_64() {
    let s = setup();
    for client in ["2001:db8:0:1::1", "2001:db8:0:1::2", "2001:db8:0:1:ffff::9"] {
        assert_eq!(call(&s, "/anon", None, client), 200, "{client}");
    }
    assert_eq!(
        call(&s, "/anon", None, "2001:db8:0:1::77"),
        429,
        "another address of the same /64"
    );
    assert_eq!(
        call(&s, "/anon", None, "2001:db8:0:2::1"),
        200,
        "another /64"
    );
    // IPv4 addresses keep their own quotas.
    assert_eq!(call(&s, "/anon", None, "10.0.0.9"), 200);
}

#[test]
fn api_key_key_gives_each_key_its_own_quota() {
    let s = setup();
    let (a1, a2) = (Some(&*s.alice1), Some(&*s.alice2));
    for ip in ["10.0.0.1", "10.0.0.2", "10.0.0.3"] {
        assert_eq!(call(&s, "/by-key", a1, ip), 200);
    }
    assert_eq!(call(&s, "/by-key", a1, "10.0.0.4"), 429);
    // The same consumer's other key is counted separately.
    for _ in 0..3 {
        assert_eq!(call(&s, "/by-key", a2, "10.0.0.1"), 200);
    }
    assert_eq!(call(&s, "/by-key", a2, "10.0.0.1"), 429);
}

#[test]
fn route_key_makes_every_caller_share_one_quota() {
    let s = setup();
    assert_eq!(call(&s, "/by-route", None, "10.0.0.1"), 200);
    assert_eq!(call(&s, "/by-route", Some(&s.bob), "10.0.0.2"), 200);
    assert_eq!(call(&s, "/by-route", None, "10.0.0.3"), 200);
    assert_eq!(call(&s, "/by-route", None, "10.0.0.4"), 429);
    assert_eq!(call(&s, "/by-route", Some(&s.alice1), "10.0.0.1"), 429);
}

/// An empty header value names nobody: it counts by client address like a missing header.
/// Counted as a key of its own, every client sending it shared one bucket, and one of them
/// could use it up for all.
#[test]
fn an_empty_header_value_counts_by_client_address() {
    let s = setup();
    let empty = [("X-Tenant", "")];
    for client in ["10.1.0.1", "10.1.0.2", "10.1.0.3", "10.1.0.4", "10.1.0.5"] {
        let st = call_with(&s, "/by-tenant", None, client, &empty);
        assert_eq!(st, 200, "{client} was counted with the others");
    }
    for _ in 0..2 {
        assert_eq!(call_with(&s, "/by-tenant", None, "10.1.0.1", &empty), 200);
    }
    assert_eq!(call_with(&s, "/by-tenant", None, "10.1.0.1", &empty), 429);
    assert_eq!(
        call_with(&s, "/by-tenant", None, "10.1.0.1", &[("X-Tenant", "acme")]),
        200
    );
}

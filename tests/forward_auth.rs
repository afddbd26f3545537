//! Forward auth end to end: a real gateway asks a real scripted HTTP authorization service
//! (a test upstream answering by the client's credential) before proxying to an echo upstream.
//! Allow (headers copied upstream, the consumer feeding a rate limit), deny with the service's
//! own body, login redirect, timeout, a down service (fail closed and fail open), the decision
//! cache, the body prefix for both client wires, and abuse: forged identity headers, answers
//! with unsafe header values, oversized headers and oversized bodies.
mod common;
use common::h2::*;
use common::*;

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The scripted authorization service: decides by the `authorization` header it received.
fn auth_service() -> Upstream {
    Upstream::start(Arc::new(|req, s| {
        let auth = req.header("authorization").unwrap_or("").to_string();
        let answer: Vec<u8> = match auth.as_str() {
            "Bearer alice" | "Bearer bob" => {
                let who = &auth[7..];
                format!(
                    "HTTP/1.1 200 OK\r\nX-User: {who}\r\nX-Consumer: {who}\r\nX-Internal: hidden\r\nContent-Length: 0\r\n\r\n"
                )
                .into_bytes()
            }
            "Bearer nobody" => b"HTTP/1.1 204 No Content\r\n\r\n".to_vec(),
            "Bearer banned" => {
                let body = "no entry for you";
                format!(
                    "HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nX-Internal: secret\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                )
                .into_bytes()
            }
            "Bearer slow" => {
                std::thread::sleep(Duration::from_millis(1500));
                b"HTTP/1.1 200 OK\r\nX-User: slow\r\nContent-Length: 0\r\n\r\n".to_vec()
            }
            // A bare CR inside a value: a parser that split on it would see a second field.
            "Bearer cr" => {
                b"HTTP/1.1 200 OK\r\nX-User: alice\rX-Admin: yes\r\nContent-Length: 0\r\n\r\n"
                    .to_vec()
            }
            "Bearer long" => format!(
                "HTTP/1.1 200 OK\r\nX-User: {}\r\nContent-Length: 0\r\n\r\n",
                "a".repeat(5000)
            )
            .into_bytes(),
            // A status no HTTP client knows: not something to hand a client.
            "Bearer odd" => b"HTTP/1.1 999 Whatever\r\nContent-Length: 0\r\n\r\n".to_vec(),
            // Two consumers in one answer: the gateway would act for one, the upstream read
            // the other.
            "Bearer two" => b"HTTP/1.1 200 OK\r\nX-User: alice\r\nX-Consumer: alice\r\n\
                X-Consumer: bob\r\nContent-Length: 0\r\n\r\n"
                .to_vec(),
            "Bearer ctl" => {
                b"HTTP/1.1 200 OK\r\nX-User: al\x01ice\r\nContent-Length: 0\r\n\r\n".to_vec()
            }
            "Bearer huge" => {
                let body = vec![b'x'; 300 * 1024];
                let mut v = format!(
                    "HTTP/1.1 403 Forbidden\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                )
                .into_bytes();
                v.extend_from_slice(&body);
                v
            }
            "Bearer endless" => {
                // Chunked and never ending: the bound, not the end, must stop the gateway.
                let _ = s.write_all(b"HTTP/1.1 401 No\r\nTransfer-Encoding: chunked\r\n\r\n");
                let chunk = format!("4000\r\n{}\r\n", "y".repeat(0x4000));
                for _ in 0..64 {
                    if s.write_all(chunk.as_bytes()).is_err() {
                        break;
                    }
                }
                return Reply::Close;
            }
            _ => {
                // No credential: send the browser to the login page, naming where it was going.
                let rd = req.header("x-forwarded-uri").unwrap_or("?").to_string();
                format!(
                    "HTTP/1.1 302 Found\r\nLocation: https://login.example/?rd={rd}\r\nSet-Cookie: nonce=abc; HttpOnly\r\nX-Internal: secret\r\nContent-Length: 0\r\n\r\n"
                )
                .into_bytes()
            }
        };
        let _ = s.write_all(&answer);
        Reply::KeepAlive
    }))
}

/// A gateway config: `/api` behind forward auth (`extra` lines added to the policy), then a
/// rate limit by consumer, proxied to `app`.
fn config(auth: SocketAddr, app: SocketAddr, extra: &str) -> String {
    format!(
        "{}{}\
         [policies.fa.forward_auth]\nupstream = \"auth\"\npath = \"/check?v=1\"\n\
         upstream_headers = [\"x-user\"]\nconsumer_header = \"x-consumer\"\ntimeout = \"400ms\"\n{extra}\n\
         [policies.per_consumer]\nrate_limit = {{ key = \"consumer\", limits = [{{ requests = 2, per = \"1m\" }}] }}\n\n\
         [[routes]]\nname = \"api\"\nprefix = \"/api\"\npolicies = [\"fa\", \"per_consumer\"]\nproxy = {{ upstream = \"app\" }}\n",
        upstream_toml("auth", &[auth]),
        upstream_toml("app", &[app]),
    )
}

/// The same config with the route's rate limit left out.
fn without_limit(body: String) -> String {
    body.replace(
        "policies = [\"fa\", \"per_consumer\"]",
        "policies = [\"fa\"]",
    )
}

const LISTENER: &str = "[[listeners]]\naddress = \"127.0.0.1:8080\"\n\n";

fn bearer(who: &str) -> String {
    format!("Bearer {who}")
}

/// The service is asked about the path the router matched and the upstream gets (normalized),
/// never the raw target: a service allowing `/api/public/*` would otherwise pass
/// `/api/public/../orders`, and the upstream would serve `/api/orders`.
#[test]
fn the_service_sees_the_normalized_path() {
    let (auth, app) = (auth_service(), Upstream::echo());
    let gw = Gateway::start_workers(&without_limit(config(auth.addr, app.addr, "")), 1);
    let alice = bearer("alice");
    for target in [
        "/api/public/../orders?id=7",
        "/api/public/..;/orders?id=7",
        "/api/public//../orders?id=7",
        "/api/%6frders?id=7",
    ] {
        let r = request(gw.addr, "GET", target, &[("Authorization", &alice)], b"");
        assert_eq!(r.status, 200, "{target}: {}", r.text());
        let asked = auth.last();
        assert_eq!(
            asked.header("x-forwarded-uri"),
            Some("/api/orders?id=7"),
            "{target}"
        );
        assert_eq!(app.last().target, "/api/orders?id=7", "{target}");
    }
}

#[test]
fn an_allow_copies_the_services_headers_upstream_and_names_the_consumer() {
    let (auth, app) = (auth_service(), Upstream::echo());
    let gw = Gateway::start_workers(&config(auth.addr, app.addr, ""), 1);
    let alice = bearer("alice");
    let r = request(
        gw.addr,
        "GET",
        "/api/orders?id=7",
        &[
            ("Authorization", &alice),
            ("Cookie", "session=s1"),
            ("X-User", "mallory"),
            ("X-Private", "not for the service"),
        ],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());

    // What the service was asked.
    let asked = auth.last();
    assert_eq!(asked.method, "GET");
    assert_eq!(asked.target, "/check?v=1");
    assert_eq!(asked.header("authorization"), Some(alice.as_str()));
    assert_eq!(asked.header("cookie"), Some("session=s1"));
    assert_eq!(asked.header("x-forwarded-method"), Some("GET"));
    assert_eq!(asked.header("x-forwarded-uri"), Some("/api/orders?id=7"));
    assert_eq!(asked.header("x-forwarded-host"), Some("test"));
    assert_eq!(asked.header("x-forwarded-proto"), Some("http"));
    assert_eq!(asked.header("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(asked.header("x-request-id"), r.header("x-request-id"));
    assert_eq!(
        asked.header("x-private"),
        None,
        "only the configured headers"
    );
    assert_eq!(asked.header("x-user"), None);

    // What the upstream got: the service's x-user, never the client's forged one.
    let up = app.last();
    assert_eq!(up.header_all("x-user"), vec!["alice"]);
    assert_eq!(
        up.header("x-internal"),
        None,
        "only upstream_headers are copied"
    );
    assert_eq!(up.header("authorization"), Some(alice.as_str()));

    // The consumer feeds the rate limit: alice has 2 per minute, bob his own 2.
    let again = request(gw.addr, "GET", "/api/a", &[("Authorization", &alice)], b"");
    assert_eq!(again.status, 200);
    let third = request(gw.addr, "GET", "/api/a", &[("Authorization", &alice)], b"");
    assert_eq!(third.status, 429, "alice's third request in a minute");
    let bob = bearer("bob");
    let b = request(gw.addr, "GET", "/api/a", &[("Authorization", &bob)], b"");
    assert_eq!(b.status, 200, "bob is another consumer");
    assert_eq!(app.last().header_all("x-user"), vec!["bob"]);

    // A 2xx without the header still drops the client's copy.
    let before = app.count();
    let n = request(
        gw.addr,
        "GET",
        "/api/n",
        &[("Authorization", "Bearer nobody"), ("X-User", "admin")],
        b"",
    );
    assert_eq!(n.status, 200);
    assert_eq!(app.count(), before + 1);
    assert_eq!(
        app.last().header("x-user"),
        None,
        "the forged header was dropped"
    );
    assert_eq!(
        auth.connections(),
        1,
        "six calls from one worker over one pooled keep-alive connection"
    );

    let m = scrape(gw.admin);
    assert!(
        metric(
            &m,
            "ringway_forward_auth_total",
            &[("policy", "fa"), ("outcome", "allow")]
        )
        .unwrap_or(0.0)
            >= 5.0
    );
}

#[test]
fn a_denial_reaches_the_client_as_the_service_wrote_it_and_the_upstream_never_sees_it() {
    let (auth, app) = (auth_service(), Upstream::echo());
    let gw = Gateway::start(&config(auth.addr, app.addr, ""));
    let r = request(
        gw.addr,
        "GET",
        "/api/x",
        &[("Authorization", "Bearer banned")],
        b"",
    );
    assert_eq!(r.status, 403);
    assert_eq!(r.text(), "no entry for you");
    assert_eq!(r.header("content-type"), Some("text/plain"));
    assert_eq!(r.header("x-internal"), None, "not in deny_headers");
    assert!(r.header("x-request-id").is_some());

    // The login redirect: Location and Set-Cookie pass, the rest does not.
    let r = request(gw.addr, "GET", "/api/cart?step=2", &[], b"");
    assert_eq!(r.status, 302);
    assert_eq!(
        r.header("location"),
        Some("https://login.example/?rd=/api/cart?step=2")
    );
    assert_eq!(r.header("set-cookie"), Some("nonce=abc; HttpOnly"));
    assert_eq!(r.header("x-internal"), None);
    assert_eq!(app.count(), 0, "no denied request reached the upstream");

    // The connection stays usable after a denial.
    let mut c = Conn::open(gw.addr);
    let a = c.request("GET", "/api/1", &[("Authorization", "Bearer banned")], b"");
    assert_eq!(a.status, 403);
    let b = c.request("GET", "/api/2", &[("Authorization", "Bearer alice")], b"");
    assert_eq!(b.status, 200);
}

#[test]
fn a_slow_service_times_out_with_503_and_the_upstream_is_never_reached() {
    let (auth, app) = (auth_service(), Upstream::echo());
    let gw = Gateway::start(&config(auth.addr, app.addr, ""));
    let t = Instant::now();
    let r = request(
        gw.addr,
        "GET",
        "/api/x",
        &[("Authorization", "Bearer slow")],
        b"",
    );
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(
        t.elapsed() < Duration::from_millis(1300),
        "bounded by the 400ms timeout, took {:?}",
        t.elapsed()
    );
    assert!(r.text().contains("auth_unavailable"), "{}", r.text());
    assert_eq!(app.count(), 0);
}

#[test]
fn a_down_service_fails_closed_by_default_and_open_when_configured() {
    let app = Upstream::echo();
    let nowhere: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let gw = Gateway::start(&config(nowhere, app.addr, ""));
    let r = request(
        gw.addr,
        "GET",
        "/api/x",
        &[("Authorization", "Bearer alice")],
        b"",
    );
    assert_eq!(r.status, 503);
    assert_eq!(app.count(), 0);
    drop(gw);

    let gw = Gateway::start(&config(nowhere, app.addr, "fail_open = true\n"));
    let r = request(
        gw.addr,
        "GET",
        "/api/x",
        &[("Authorization", "Bearer alice"), ("X-User", "admin")],
        b"",
    );
    assert_eq!(r.status, 200, "fail_open lets the request through");
    assert_eq!(
        app.last().header("x-user"),
        None,
        "but without a forged identity"
    );
}

#[test]
fn the_decision_cache_reuses_an_allow_per_credential_and_never_a_denial() {
    let (auth, app) = (auth_service(), Upstream::echo());
    let extra = "cache = { key = \"authorization\", ttl = \"30s\", max_entries = 100 }\n";
    // No rate limit here: the cache is what is under test.
    let body = without_limit(config(auth.addr, app.addr, extra));
    let gw = Gateway::start_workers(&body, 1);
    let alice = bearer("alice");
    for _ in 0..3 {
        let r = request(gw.addr, "GET", "/api/x", &[("Authorization", &alice)], b"");
        assert_eq!(r.status, 200);
        assert_eq!(
            app.last().header_all("x-user"),
            vec!["alice"],
            "cached headers apply"
        );
    }
    assert_eq!(
        auth.count(),
        1,
        "one call for three requests with one credential"
    );
    let bob = bearer("bob");
    let r = request(gw.addr, "GET", "/api/x", &[("Authorization", &bob)], b"");
    assert_eq!(r.status, 200);
    assert_eq!(app.last().header_all("x-user"), vec!["bob"]);
    assert_eq!(auth.count(), 2, "another credential asks again");
    for _ in 0..2 {
        let r = request(
            gw.addr,
            "GET",
            "/api/x",
            &[("Authorization", "Bearer banned")],
            b"",
        );
        assert_eq!(r.status, 403);
    }
    assert_eq!(auth.count(), 4, "denials are asked every time");
    let m = scrape(gw.admin);
    let hits = metric(
        &m,
        "ringway_forward_auth_total",
        &[("policy", "fa"), ("outcome", "cache_hit")],
    );
    assert_eq!(hits, Some(2.0));

    // A reload that keeps the policy's settings keeps its cache...
    let more = format!(
        "{body}\n[[routes]]\nname = \"other\"\npath = \"/other\"\nstatic = {{ body = \"o\" }}\n"
    );
    assert!(gw.reload(&more));
    let r = request(gw.addr, "GET", "/api/x", &[("Authorization", &alice)], b"");
    assert_eq!(r.status, 200);
    assert_eq!(auth.count(), 4, "still cached after an unrelated reload");
    // ...one that changes what a decision carries starts afresh.
    let changed = more.replace(
        "upstream_headers = [\"x-user\"]",
        "upstream_headers = [\"x-user\", \"x-consumer\"]",
    );
    assert!(gw.reload(&changed));
    let r = request(gw.addr, "GET", "/api/x", &[("Authorization", &alice)], b"");
    assert_eq!(r.status, 200);
    assert_eq!(auth.count(), 5, "asked again under the new settings");
    assert_eq!(app.last().header("x-consumer"), Some("alice"));
}

#[test]
fn the_service_sees_the_body_prefix_and_the_upstream_the_whole_body() {
    let (auth, app) = (auth_service(), Upstream::echo());
    let extra = "body_bytes = 8\n";
    let gw = Gateway::start(&without_limit(config(auth.addr, app.addr, extra)));
    let alice = bearer("alice");
    let body = b"0123456789abcdefghij";
    // The head and 5 body bytes first, the rest later: the gateway must wait for 8.
    let mut c = Conn::open(gw.addr);
    let wire = build_request("POST", "/api/u", &[("Authorization", &alice)], body);
    let split = wire.len() - body.len() + 5;
    c.send(&wire[..split]);
    std::thread::sleep(Duration::from_millis(100));
    c.send(&wire[split..]);
    let r = c.read_response(false).expect("response");
    assert_eq!(r.status, 200, "{}", r.text());
    let asked = auth.last();
    assert_eq!(asked.method, "POST", "the default method with a body");
    assert_eq!(asked.body, b"01234567");
    assert_eq!(app.last().body, body);

    // A chunked body, split across writes: the prefix is decoded, the upstream gets it all.
    let mut c = Conn::open(gw.addr);
    c.send(
        format!(
            "POST /api/c HTTP/1.1\r\nHost: test\r\nAuthorization: {alice}\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n"
        )
        .as_bytes(),
    );
    std::thread::sleep(Duration::from_millis(100));
    c.send(b"4\r\ndefg\r\n6\r\nhijklm\r\n0\r\n\r\n");
    let r = c.read_response(false).expect("response");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(auth.last().body, b"abcdefgh");
    assert_eq!(app.last().body, b"abcdefghijklm");

    // A body shorter than the prefix goes whole; a denied body is not forwarded.
    let r = request(
        gw.addr,
        "POST",
        "/api/s",
        &[("Authorization", &alice)],
        b"hi",
    );
    assert_eq!(r.status, 200);
    assert_eq!(auth.last().body, b"hi");
    let before = app.count();
    let r = request(
        gw.addr,
        "POST",
        "/api/d",
        &[("Authorization", "Bearer banned")],
        body,
    );
    assert_eq!(r.status, 403);
    assert_eq!(auth.last().body, b"01234567");
    assert_eq!(app.count(), before);

    // The same over HTTP/2.
    drop(gw);
    let gw = start_h2c(&without_limit(config(auth.addr, app.addr, extra)));
    let mut h = H2Client::h2c(gw.addr).expect("h2c");
    let r = h
        .send(
            H2Req::new("POST", "/api/h2")
                .header("authorization", &alice)
                .body(&body[..]),
        )
        .expect("h2 response");
    assert_eq!(r.status, 200, "{}", r.text());
    let asked = auth.last();
    assert_eq!(asked.body, b"01234567");
    assert_eq!(asked.header("x-forwarded-method"), Some("POST"));
    assert_eq!(asked.header("x-forwarded-uri"), Some("/api/h2"));
    assert!(
        asked.header("x-forwarded-host").is_some(),
        "{:?}",
        asked.headers
    );
    assert_eq!(app.last().body, body);
    // A denial on an HTTP/2 stream: the service's status, headers and body.
    let before = app.count();
    let r = h
        .send(
            H2Req::new("POST", "/api/h2")
                .header("authorization", "Bearer banned")
                .body(&body[..]),
        )
        .expect("h2 response");
    assert_eq!(r.status, 403);
    assert_eq!(r.text(), "no entry for you");
    assert_eq!(r.header("content-type"), Some("text/plain"));
    assert_eq!(r.header("x-internal"), None);
    assert_eq!(app.count(), before);
}

#[test]
fn answers_the_gateway_cannot_pass_on_safely_are_refused_with_503() {
    let (auth, app) = (auth_service(), Upstream::echo());
    let gw = Gateway::start(&config(auth.addr, app.addr, ""));
    for who in ["cr", "long", "ctl", "huge", "endless", "odd", "two"] {
        let t = Instant::now();
        let r = request(
            gw.addr,
            "GET",
            "/api/x",
            &[("Authorization", &bearer(who))],
            b"",
        );
        assert_eq!(r.status, 503, "{who}: {}", r.text());
        assert!(
            r.body.len() < 4096,
            "{who}: the service's body is not passed on"
        );
        assert!(r.header("x-admin").is_none(), "{who}");
        assert!(t.elapsed() < Duration::from_secs(3), "{who}: bounded");
    }
    assert_eq!(app.count(), 0, "no refused answer let a request through");
    // The gateway still works after all that.
    let r = request(
        gw.addr,
        "GET",
        "/api/x",
        &[("Authorization", "Bearer alice")],
        b"",
    );
    assert_eq!(r.status, 200);
    let m = scrape(gw.admin);
    let errors = metric(
        &m,
        "ringway_forward_auth_total",
        &[("policy", "fa"), ("outcome", "error")],
    );
    assert_eq!(errors, Some(7.0));
}

#[test]
fn the_config_refuses_headers_it_must_not_copy() {
    let (auth, app) = (auth_service(), Upstream::echo());
    for (extra, needle) in [
        (
            "request_headers = [\"x-forwarded-for\"]\n",
            "written by the gateway",
        ),
        ("deny_headers = [\"transfer-encoding\"]\n", "hop-by-hop"),
        (
            "upstream_headers = [\"x-forwarded-for\"]\n",
            "written by the gateway",
        ),
        (
            "deny_headers = [\"content-length\"]\n",
            "written by the gateway",
        ),
        ("body_bytes = \"2MiB\"\n", "between"),
        ("method = \"GET\"\npath_x = 1\n", "path_x"),
        ("method = \"CONNECT\"\n", "must be one of"),
    ] {
        let body =
            config(auth.addr, app.addr, extra).replace("upstream_headers = [\"x-user\"]\n", "");
        let (code, _out, err) = check_config(&format!("{LISTENER}{body}"));
        assert_ne!(code, 0, "{extra}");
        assert!(err.contains(needle), "{extra}: {err}");
    }
    let base = config(auth.addr, app.addr, "");
    let h2 = "[upstreams.auth]\nprotocol = \"http2\"\n";
    for (from, to, needle) in [
        (
            "path = \"/check?v=1\"",
            "path = \"check\"",
            "must start with '/'",
        ),
        (
            "upstream = \"auth\"",
            "upstream = \"nope\"",
            "no upstream named \"nope\"",
        ),
        ("[upstreams.auth]\n", h2, "must be an HTTP/1.1 upstream"),
    ] {
        assert!(base.contains(from), "{from}");
        let body = base.replacen(from, to, 1);
        let (code, _out, err) = check_config(&format!("{LISTENER}{body}"));
        assert_ne!(code, 0, "{to}");
        assert!(err.contains(needle), "{to}: {err}");
    }
}

#[test]
fn tiny_chunks_with_long_extensions_cannot_make_the_gateway_read_ahead_without_bound() {
    let (auth, app) = (auth_service(), Upstream::echo());
    let extra = "body_bytes = 1000\n";
    let gw = Gateway::start(&without_limit(config(auth.addr, app.addr, extra)));
    // 100 one-byte chunks, each behind a 3000-byte extension: 300 KB of framing for 100 bytes.
    let mut wire = b"POST /api/c HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer alice\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    let ext = "e".repeat(3000);
    let mut data = Vec::new();
    for i in 0..100u8 {
        let b = b'a' + i % 26;
        data.push(b);
        wire.extend_from_slice(format!("1;x={ext}\r\n").as_bytes());
        wire.push(b);
        wire.extend_from_slice(b"\r\n");
    }
    wire.extend_from_slice(b"0\r\n\r\n");
    let mut c = Conn::open(gw.addr);
    c.send(&wire);
    let r = c.read_response(false).expect("response");
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = auth.last().body;
    assert!(
        !seen.is_empty() && seen.len() < 100,
        "the read-ahead stopped at its raw bound (2 x 1000 + 64 KiB): the service saw {} bytes",
        seen.len()
    );
    assert_eq!(seen, data[..seen.len()], "a true prefix");
    assert_eq!(
        app.last().body,
        data,
        "the upstream still gets the whole body"
    );
}

/// The service is sent `authorization` and `cookie` by default, so it may decide on either. An
/// allow it gave for a session cookie beside a constant `Authorization: Bearer null` (what
/// many single-page apps send before login) was cached under the Authorization value alone,
/// and handed to the next request with that value: no cookie, or another user's. The key now
/// covers every header the service is sent.
#[test]
fn a_cached_allow_is_reused_only_with_the_same_credentials_the_service_saw() {
    let auth = Upstream::start(Arc::new(|req: &Received, s: &mut std::net::TcpStream| {
        let who = req
            .header("cookie")
            .and_then(|c| c.strip_prefix("session="))
            .map(str::to_string);
        let answer = match who {
            Some(who) => format!(
                "HTTP/1.1 200 OK\r\nX-User: {who}\r\nX-Consumer: {who}\r\nContent-Length: 0\r\n\r\n"
            ),
            None => "HTTP/1.1 401 No\r\nContent-Length: 0\r\n\r\n".to_string(),
        };
        let _ = s.write_all(answer.as_bytes());
        Reply::KeepAlive
    }));
    let app = Upstream::echo();
    let extra = "cache = { key = \"authorization\", ttl = \"30s\" }\n";
    let gw = Gateway::start_workers(&without_limit(config(auth.addr, app.addr, extra)), 1);
    let null = ("Authorization", "Bearer null");
    let r = request(
        gw.addr,
        "GET",
        "/api/x",
        &[null, ("Cookie", "session=alice")],
        b"",
    );
    assert_eq!(r.status, 200);
    assert_eq!(app.last().header_all("x-user"), vec!["alice"]);
    // The same Authorization without the cookie, or with another user's, is asked again.
    let r = request(gw.addr, "GET", "/api/x", &[null], b"");
    assert_eq!(
        r.status, 401,
        "alice's allow went to a request without her cookie"
    );
    let r = request(
        gw.addr,
        "GET",
        "/api/x",
        &[null, ("Cookie", "session=mallory")],
        b"",
    );
    assert_eq!(r.status, 200);
    assert_eq!(app.last().header_all("x-user"), vec!["mallory"]);
    assert_eq!(auth.count(), 3);
    // The same credentials again: the cached allow, as alice.
    let r = request(
        gw.addr,
        "GET",
        "/api/x",
        &[null, ("Cookie", "session=alice")],
        b"",
    );
    assert_eq!(r.status, 200);
    assert_eq!(app.last().header_all("x-user"), vec!["alice"]);
    assert_eq!(auth.count(), 3);
}

/// `consumer_header` names the consumer the gateway goes by (rate limits, `authorize`, the
/// log). A client's own copy of that header reached the upstream when `upstream_headers` did
/// not list it: the gateway acted for bob while the upstream read `x-consumer: admin`.
#[test]
fn a_clients_copy_of_the_consumer_header_never_reaches_the_upstream() {
    let (auth, app) = (auth_service(), Upstream::echo());
    let gw = Gateway::start(&without_limit(config(auth.addr, app.addr, "")));
    let r = request(
        gw.addr,
        "GET",
        "/api/x",
        &[
            ("Authorization", "Bearer bob"),
            ("X-Consumer", "admin"),
            ("X_Consumer", "admin"),
        ],
        b"",
    );
    assert_eq!(r.status, 200);
    let seen = app.last();
    assert_eq!(seen.header_all("x-user"), vec!["bob"]);
    assert!(
        !seen.headers.iter().any(|(_, v)| v == "admin"),
        "{:?}",
        seen.headers
    );
}

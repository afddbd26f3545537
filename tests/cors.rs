//! CORS per route, on the real gateway: the preflight matrix (origin × method × requested
//! headers × credentials), preflights answered before authentication and rate limiting, no CORS
//! headers for a disallowed origin, `Vary` set, never `*` with credentials, and CORS headers on
//! denials so browsers can read them.
mod common;
use common::*;

use std::net::SocketAddr;

fn config(up: SocketAddr) -> String {
    format!(
        "[policies.web]\ncors = {{ origins = [\"https://app.example.com\", \"https://*.example.org\"], \
         methods = [\"GET\", \"POST\", \"PUT\"], headers = [\"content-type\", \"x-trace\"], \
         expose_headers = [\"x-request-id\"], credentials = true, max_age = \"10m\" }}\n\n\
         [policies.open]\ncors = {{ origins = [\"*\"] }}\n\n\
         [policies.limit]\nrate_limit = {{ key = \"ip\", limits = [{{ requests = 1, per = \"1h\" }}] }}\n\n\
         [policies.auth]\nauthorize = {{ groups = [\"admins\"] }}\n\n{}\n\
         [[routes]]\nname = \"api\"\nprefix = \"/api\"\nmethods = [\"GET\", \"POST\", \"PUT\"]\npolicies = [\"auth\", \"web\"]\nproxy = {{ upstream = \"app\" }}\n\n\
         [[routes]]\nname = \"pub\"\nprefix = \"/pub\"\npolicies = [\"open\", \"limit\"]\nproxy = {{ upstream = \"app\" }}\n",
        upstream_toml("app", &[up])
    )
}

fn preflight(
    addr: SocketAddr,
    path: &str,
    origin: &str,
    method: &str,
    headers: Option<&str>,
) -> Response {
    let mut h = vec![
        ("Origin", origin),
        ("Access-Control-Request-Method", method),
    ];
    if let Some(x) = headers {
        h.push(("Access-Control-Request-Headers", x));
    }
    request(addr, "OPTIONS", path, &h, b"")
}

#[test]
fn preflight_matrix() {
    let up = Upstream::echo();
    let gw = Gateway::start(&config(up.addr));
    let cases: &[(&str, &str, Option<&str>, bool)] = &[
        ("https://app.example.com", "PUT", Some("content-type"), true),
        ("https://app.example.com", "GET", None, true),
        (
            "https://a.example.org",
            "POST",
            Some("X-Trace, Content-Type"),
            true,
        ),
        ("https://app.example.com", "DELETE", None, false), // method not allowed
        ("https://app.example.com", "PUT", Some("x-secret"), false), // header not allowed
        ("https://evil.example.net", "GET", None, false),   // origin not allowed
        ("http://app.example.com", "GET", None, false),     // scheme differs
        ("https://example.org", "GET", None, false),        // wildcard needs a subdomain
    ];
    for &(origin, method, headers, allowed) in cases {
        let r = preflight(gw.addr, "/api/things", origin, method, headers);
        assert!(
            r.status == 204 || r.status == 200,
            "{origin} {method}: {}",
            r.status
        );
        let acao = r.header("access-control-allow-origin");
        if allowed {
            assert_eq!(acao, Some(origin), "{origin} {method} {headers:?}");
            assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
            let methods = r
                .header("access-control-allow-methods")
                .unwrap()
                .to_ascii_uppercase();
            assert!(methods.contains(method), "{methods}");
            assert_eq!(r.header("access-control-max-age"), Some("600"));
            if let Some(h) = headers {
                let allowed_h = r
                    .header("access-control-allow-headers")
                    .unwrap()
                    .to_ascii_lowercase();
                for want in h.split(',') {
                    assert!(
                        allowed_h.contains(&want.trim().to_ascii_lowercase()),
                        "{allowed_h}"
                    );
                }
            }
        } else {
            assert_eq!(
                acao, None,
                "{origin} {method} {headers:?} must get no CORS headers"
            );
            assert!(r.header("access-control-allow-credentials").is_none());
        }
        let vary = r.header_all("vary").join(",").to_ascii_lowercase();
        assert!(
            vary.contains("origin"),
            "Vary: Origin on {origin} {method}: {vary:?}"
        );
    }
    // Preflights never reach the upstream and need no credentials (answered before `auth`).
    assert_eq!(up.count(), 0);
}

#[test]
fn actual_requests_get_cors_headers_even_when_denied() {
    let up = Upstream::start(std::sync::Arc::new(|_req, s| {
        use std::io::Write;
        let _ = s.write_all(
            b"HTTP/1.1 200 OK\r\nAccess-Control-Allow-Origin: *\r\nContent-Length: 2\r\n\r\nok",
        );
        Reply::KeepAlive
    }));
    let gw = Gateway::start(&config(up.addr));
    // The auth policy refuses (no credentials): the 401 still carries CORS headers.
    let r = request(
        gw.addr,
        "GET",
        "/api/x",
        &[("Origin", "https://app.example.com")],
        b"",
    );
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
    assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
    assert!(r
        .header_all("vary")
        .join(",")
        .to_ascii_lowercase()
        .contains("origin"));
    // Disallowed origin: no CORS headers at all.
    let r = request(
        gw.addr,
        "GET",
        "/api/x",
        &[("Origin", "https://evil.example.net")],
        b"",
    );
    assert!(r.header("access-control-allow-origin").is_none());

    // Wildcard route without credentials: `*`, proxied; the upstream's own CORS header is
    // replaced by the gateway's (never duplicated).
    let r = request(
        gw.addr,
        "GET",
        "/pub/x",
        &[("Origin", "https://anyone.test")],
        b"",
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header_all("access-control-allow-origin"), vec!["*"]);
    assert!(r.header("access-control-allow-credentials").is_none());
    // Rate limited (1/h): the 429 carries CORS headers too, and a preflight is not limited.
    let r = request(
        gw.addr,
        "GET",
        "/pub/x",
        &[("Origin", "https://anyone.test")],
        b"",
    );
    assert_eq!(r.status, 429);
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    let p = preflight(gw.addr, "/pub/x", "https://anyone.test", "GET", None);
    assert!(p.status == 204 || p.status == 200);
    assert_eq!(p.header("access-control-allow-origin"), Some("*"));
}

#[test]
fn star_with_credentials_is_never_sent() {
    let up = Upstream::echo();
    let body = format!(
        "[policies.c]\ncors = {{ origins = [\"*\"], credentials = true }}\n\n{}\n\
         [[routes]]\nname = \"r\"\nprefix = \"/\"\npolicies = [\"c\"]\nproxy = {{ upstream = \"app\" }}\n",
        upstream_toml("app", &[up.addr])
    );
    // README: `*` with credentials is a config error (browsers refuse it, and reflecting every
    // origin instead would let any site make credentialed calls).
    let (code, out, err) = check_config(&body);
    assert_eq!(code, 1, "stdout:\n{out}\nstderr:\n{err}");
    let line = err
        .lines()
        .find(|l| l.contains("check.toml:2:"))
        .unwrap_or_else(|| panic!("no error on line 2: {err}"));
    assert!(line.contains("policies.c.cors.origins[0]"), "{line}");
    assert!(line.contains("credentials"), "{line}");
}

#[test]
fn the_upstreams_own_cors_headers_are_replaced_or_removed() {
    let up = Upstream::start(std::sync::Arc::new(|_req, s| {
        use std::io::Write;
        let _ = s.write_all(
            b"HTTP/1.1 200 OK\r\nAccess-Control-Allow-Origin: https://evil.example\r\n\
              Access-Control-Allow-Methods: DELETE\r\nAccess-Control-Allow-Credentials: true\r\n\
              Access-Control-Expose-Headers: x-internal\r\nContent-Length: 2\r\n\r\nok",
        );
        Reply::KeepAlive
    }));
    let body = format!(
        "[policies.web]\ncors = {{ origins = [\"https://app.example.com\"], methods = [\"GET\", \"PUT\"], \
         expose_headers = [\"x-request-id\"], credentials = true }}\n\n{}\n\
         [[routes]]\nname = \"web\"\nprefix = \"/\"\npolicies = [\"web\"]\nproxy = {{ upstream = \"app\" }}\n",
        upstream_toml("app", &[up.addr])
    );
    let gw = Gateway::start(&body);
    // Allowed origin: the gateway's values replace the upstream's, never sit beside them.
    let r = request(
        gw.addr,
        "GET",
        "/x",
        &[("Origin", "https://app.example.com")],
        b"",
    );
    assert_eq!(r.status, 200);
    assert_eq!(up.count(), 1, "proxied");
    assert_eq!(
        r.header_all("access-control-allow-origin"),
        vec!["https://app.example.com"]
    );
    assert_eq!(
        r.header_all("access-control-allow-credentials"),
        vec!["true"]
    );
    assert_eq!(
        r.header_all("access-control-expose-headers"),
        vec!["x-request-id"]
    );
    assert!(
        r.header_all("access-control-allow-methods").is_empty(),
        "the upstream's DELETE is gone (methods belong to preflights)"
    );
    // Disallowed origin: none of the upstream's CORS headers survive.
    for origin in [Some("https://evil.example"), None] {
        let headers: Vec<(&str, &str)> = origin.iter().map(|o| ("Origin", *o)).collect();
        let r = request(gw.addr, "GET", "/x", &headers, b"");
        assert_eq!(r.status, 200);
        for name in [
            "access-control-allow-origin",
            "access-control-allow-methods",
            "access-control-allow-credentials",
            "access-control-expose-headers",
        ] {
            assert!(r.header(name).is_none(), "{origin:?}: {name}");
        }
    }
    assert_eq!(up.count(), 3);
}

/// The gateway's refusals made before the policies run (405 for a method the route does not
/// serve, 413 for a declared body past the route's bound) carry the route's CORS headers
/// too, as the 401 and 429 do: a browser app reads the status instead of a network error.
#[test]
fn refusals_before_the_policies_carry_cors_headers() {
    let up = Upstream::echo();
    let gw = Gateway::start(&format!(
        "[policies.web]\ncors = {{ origins = [\"https://app.example.com\"], methods = [\"GET\", \"POST\", \"PUT\"] }}\n\n{}\n\
         [[routes]]\nname = \"small\"\nprefix = \"/small\"\nmethods = [\"GET\", \"POST\"]\nmax_body_bytes = \"1KiB\"\n\
         policies = [\"web\"]\nproxy = {{ upstream = \"app\" }}\n",
        upstream_toml("app", &[up.addr])
    ));
    let origin = ("Origin", "https://app.example.com");
    let put = request(gw.addr, "PUT", "/small/x", &[origin], b"x");
    let big = request(
        gw.addr,
        "POST",
        "/small/x",
        &[origin, ("Content-Length", "2000")],
        b"",
    );
    for (r, want) in [(&put, 405), (&big, 413)] {
        assert_eq!(r.status, want, "{}", r.text());
        assert_eq!(
            r.header("access-control-allow-origin"),
            Some("https://app.example.com"),
            "{want}"
        );
        assert!(
            r.header_all("vary")
                .join(",")
                .to_ascii_lowercase()
                .contains("origin"),
            "{want}"
        );
    }
    assert_eq!(put.header("allow"), Some("GET, POST"));
    // Another origin still gets no CORS headers on the refusal.
    let r = request(
        gw.addr,
        "PUT",
        "/small/x",
        &[("Origin", "https://evil.example.net")],
        b"x",
    );
    assert_eq!(r.status, 405);
    assert!(r.header("access-control-allow-origin").is_none());
    assert_eq!(up.count(), 0, "nothing reached the upstream");
}

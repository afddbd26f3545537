//! Request and response header transforms with variables, path rewrite from template
//! captures, query parameter add/remove, and `[[defaults]]` applying policies to a prefix.
mod common;
use common::*;

use std::io::Write;
use std::sync::Arc;

#[test]
fn header_query_and_path_transforms_reach_the_upstream() {
    let up = Upstream::start(Arc::new(|req, s| {
        let body = echo_body(req);
        let _ = write!(
            s,
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nServer: backend/1.2\r\nX-Internal: secret\r\nX-Old: v\r\n\r\n",
            body.len()
        );
        let _ = s.write_all(&body);
        Reply::KeepAlive
    }));
    let body = format!(
        "[policies.shape]\ntransform = {{ \
           request_headers = {{ set = {{ \"x-route\" = \"${{route}}\", \"x-rid\" = \"${{request_id}}\", \"x-ip\" = \"${{client_ip}}\" }}, \
                               add = {{ \"x-added\" = \"one\" }}, remove = [\"x-remove-me\"], rename = {{ \"x-old-name\" = \"x-new-name\" }} }}, \
           response_headers = {{ remove = [\"x-internal\"], rename = {{ \"x-old\" = \"x-new\" }}, set = {{ \"server\" = \"ringway\" }} }}, \
           query = {{ add = {{ \"source\" = \"gw\" }}, remove = [\"debug\"] }} }}\n\n{}\n\
         [[routes]]\nname = \"users\"\npath = \"/v1/users/{{id}}/files/{{*rest}}\"\npolicies = [\"shape\"]\n\
         proxy = {{ upstream = \"app\", path = \"/users/{{id}}/f/{{rest}}\" }}\n",
        upstream_toml("app", &[up.addr])
    );
    let gw = Gateway::start(&body);
    let r = request(
        gw.addr,
        "GET",
        "/v1/users/42/files/a/b.txt?debug=1&x=y",
        &[
            ("X-Remove-Me", "1"),
            ("X-Old-Name", "kept"),
            ("X-Route", "forged"),
        ],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = up.last();
    assert_eq!(seen.target, "/users/42/f/a/b.txt?x=y&source=gw");
    assert_eq!(
        seen.header_all("x-route"),
        vec!["users"],
        "set replaces the client's value"
    );
    assert_eq!(seen.header("x-rid"), r.header("x-request-id"));
    assert_eq!(seen.header("x-ip"), Some("127.0.0.1"));
    assert_eq!(seen.header("x-added"), Some("one"));
    assert!(seen.header("x-remove-me").is_none());
    assert!(seen.header("x-old-name").is_none());
    assert_eq!(seen.header("x-new-name"), Some("kept"));
    // Response side.
    assert!(r.header("x-internal").is_none());
    assert_eq!(r.header("x-new"), Some("v"));
    assert!(r.header("x-old").is_none());
    assert_eq!(r.header_all("server"), vec!["ringway"]);
}

#[test]
fn header_injection_through_variables_is_refused() {
    let up = Upstream::echo();
    let body = format!(
        "[policies.t]\ntransform = {{ request_headers = {{ set = {{ \"x-copy\" = \"${{header.x-src}}\" }} }} }}\n\n{}\n\
         [[routes]]\nname = \"r\"\nprefix = \"/\"\npolicies = [\"t\"]\nproxy = {{ upstream = \"app\" }}\n",
        upstream_toml("app", &[up.addr])
    );
    let gw = Gateway::start(&body);
    assert_eq!(
        request(gw.addr, "GET", "/a", &[("X-Src", "plain")], b"").status,
        200
    );
    assert_eq!(up.last().header("x-copy"), Some("plain"));
    // A value cannot carry CR/LF (the parser rejects it anyway); obs-text stays one header.
    let r = request(gw.addr, "GET", "/a", &[("X-Src", "a\tb")], b"");
    assert_eq!(r.status, 200);
    assert_eq!(up.last().header_all("x-copy").len(), 1);
}

/// A template that copies a client header reads one copy, while the upstream would get both:
/// a header sent twice is ambiguous and gets 400, in a header value and a query value alike.
/// A copied value the gateway may not send (a C1 control) is the client's fault too: 400,
/// not the 401 a credential's bad claim gets. Neither reaches the upstream.
#[test]
fn a_copied_header_sent_twice_or_unsendable_gets_400() {
    let up = Upstream::echo();
    let body = format!(
        "[policies.t]\ntransform = {{ request_headers = {{ set = {{ \"x-tier\" = \"t=${{header.x-src}}\" }} }} }}\n\n\
         [policies.q]\ntransform = {{ query = {{ add = {{ \"tier\" = \"${{header.x-src}}\" }} }} }}\n\n{}\n\
         [[routes]]\nname = \"h\"\nprefix = \"/h\"\npolicies = [\"t\"]\nproxy = {{ upstream = \"app\" }}\n\n\
         [[routes]]\nname = \"q\"\nprefix = \"/q\"\npolicies = [\"q\"]\nproxy = {{ upstream = \"app\" }}\n",
        upstream_toml("app", &[up.addr])
    );
    let gw = Gateway::start(&body);
    assert_eq!(
        request(gw.addr, "GET", "/h", &[("X-Src", "gold")], b"").status,
        200
    );
    assert_eq!(up.last().header("x-tier"), Some("t=gold"));
    assert_eq!(
        request(gw.addr, "GET", "/q", &[("X-Src", "gold")], b"").status,
        200
    );
    assert_eq!(up.last().target, "/q?tier=gold");
    let before = up.count();
    for path in ["/h", "/q"] {
        let raw_req = format!(
            "GET {path} HTTP/1.1\r\nHost: x\r\nX-Src: gold\r\nx-src: free\r\nConnection: close\r\n\r\n"
        );
        let r = raw(gw.addr, raw_req.as_bytes());
        assert_eq!(
            first_status(&r),
            400,
            "{path}: {}",
            String::from_utf8_lossy(&r)
        );
    }
    let c1 =
        b"GET /h HTTP/1.1\r\nHost: x\r\nX-Src: a\xc2\x85b\r\nConnection: close\r\n\r\n".to_vec();
    let r = raw(gw.addr, &c1);
    assert_eq!(first_status(&r), 400, "{}", String::from_utf8_lossy(&r));
    assert_eq!(
        up.count(),
        before,
        "an ambiguous request reached the upstream"
    );
}

#[test]
fn defaults_apply_policies_to_every_route_under_a_prefix() {
    let up = Upstream::echo();
    let body = format!(
        "[policies.tag]\ntransform = {{ request_headers = {{ set = {{ \"x-zone\" = \"internal\" }} }} }}\n\n\
         [policies.deny-all]\nip = {{ allow = [\"10.0.0.0/8\"] }}\n\n\
         [[defaults]]\nprefix = \"/internal\"\npolicies = [\"tag\"]\n\n\
         [[defaults]]\nprefix = \"/locked\"\npolicies = [\"deny-all\"]\n\n{}\n\
         [[routes]]\nname = \"a\"\nprefix = \"/internal/a\"\nproxy = {{ upstream = \"app\" }}\n\n\
         [[routes]]\nname = \"b\"\npath = \"/internal/b/{{id}}\"\nproxy = {{ upstream = \"app\" }}\n\n\
         [[routes]]\nname = \"c\"\nprefix = \"/public\"\nproxy = {{ upstream = \"app\" }}\n\n\
         [[routes]]\nname = \"d\"\nprefix = \"/locked\"\nproxy = {{ upstream = \"app\" }}\n",
        upstream_toml("app", &[up.addr])
    );
    let gw = Gateway::start(&body);
    assert_eq!(get(gw.addr, "/internal/a/x").status, 200);
    assert_eq!(up.last().header("x-zone"), Some("internal"));
    assert_eq!(get(gw.addr, "/internal/b/7").status, 200);
    assert_eq!(up.last().header("x-zone"), Some("internal"));
    assert_eq!(get(gw.addr, "/public/x").status, 200);
    assert_eq!(up.last().header("x-zone"), None);
    // IP allow list: loopback is not in 10/8 → 403 problem, nothing forwarded.
    let before = up.count();
    let r = get(gw.addr, "/locked/x");
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["status"], 403);
    assert_eq!(up.count(), before);
}

#[test]
fn policy_config_errors_name_file_line_and_field() {
    let (code, _, err) = check_config(
        "[[listeners]]\naddress = \"127.0.0.1:0\"\n\n[policies.x]\nrate_limit = { key = \"nonsense\", limits = [{ requests = 1, per = \"1s\" }] }\n",
    );
    assert_eq!(code, 1);
    assert!(
        err.contains(":5:") && err.contains("policies.x.rate_limit.key"),
        "{err}"
    );
    let (code, _, err) = check_config(
        "[[listeners]]\naddress = \"127.0.0.1:0\"\n\n[[routes]]\nname = \"r\"\npath = \"/\"\npolicies = [\"missing\"]\necho = {}\n",
    );
    assert_eq!(code, 1);
    assert!(
        err.contains(":7:") && err.contains("unknown policy"),
        "{err}"
    );
    let (code, _, err) = check_config(
        "[[listeners]]\naddress = \"127.0.0.1:0\"\n[upstreams.u]\ntargets = [{ address = \"127.0.0.1:9\" }]\n\
         [[routes]]\nname = \"r\"\npath = \"/a/{id}\"\nproxy = { upstream = \"u\", path = \"/b/{nope}\" }\n",
    );
    assert_eq!(code, 1);
    assert!(err.contains("proxy.path") && err.contains("nope"), "{err}");
}

#[test]
fn trusted_proxies_decide_the_client_ip_for_ip_filters_and_limits() {
    let up = Upstream::echo();
    let body = format!(
        "[server]\ntrusted_proxies = [\"127.0.0.1/32\"]\n\n\
         [policies.office]\nip = {{ allow = [\"10.1.0.0/16\"] }}\n\n\
         [policies.t]\ntransform = {{ request_headers = {{ set = {{ \"x-client\" = \"${{client_ip}}\" }} }} }}\n\n\
         [policies.limit]\nrate_limit = {{ key = \"ip\", limits = [{{ requests = 2, per = \"1h\" }}] }}\n\n{}\n\
         [[routes]]\nname = \"r\"\nprefix = \"/\"\npolicies = [\"office\", \"limit\", \"t\"]\nproxy = {{ upstream = \"app\" }}\n",
        upstream_toml("app", &[up.addr])
    );
    let gw = Gateway::start(&body);
    // The peer (127.0.0.1) is a trusted proxy, so the address it saw is the client.
    let r = request(
        gw.addr,
        "GET",
        "/a",
        &[("X-Forwarded-For", "10.1.2.3")],
        b"",
    );
    assert_eq!(r.status, 200);
    assert_eq!(up.last().header("x-client"), Some("10.1.2.3"));
    // A client cannot prepend a fake entry: only the rightmost untrusted one counts.
    let r = request(
        gw.addr,
        "GET",
        "/a",
        &[("X-Forwarded-For", "10.1.9.9, 192.0.2.7")],
        b"",
    );
    assert_eq!(r.status, 403);
    // Without the header the peer itself is the client (not in the allow list).
    assert_eq!(get(gw.addr, "/a").status, 403);

    // The rate limit keys on the decided client: each forwarded client has its own quota of
    // 2, although every request comes from the same peer. 10.1.2.3 has used one already.
    let from = |ip: &str| request(gw.addr, "GET", "/a", &[("X-Forwarded-For", ip)], b"").status;
    assert_eq!(from("10.1.2.3"), 200);
    assert_eq!(from("10.1.2.3"), 429, "10.1.2.3's quota is spent");
    assert_eq!(from("10.1.4.4"), 200, "another client has its own quota");
    assert_eq!(from("10.1.4.4"), 200);
    assert_eq!(from("10.1.4.4"), 429);
    assert_eq!(from("10.1.2.3"), 429, "still limited");
}

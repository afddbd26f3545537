//! `[[defaults]]` cover every request under their prefix/host, whichever route serves it: a
//! catch-all route broader than a default gets the default's policies for exactly the requests
//! under it (checked per request on the normalized path), and a default no route can ever serve
//! is a config error naming its line.
mod common;
use common::*;

use std::path::Path;

const SECRET: &str = "an-hmac-secret-of-sufficient-length";

fn config(keys: &Path, up: std::net::SocketAddr, default_ci: bool) -> String {
    format!(
        "[api_keys]\nfile = \"{}\"\nhash = \"hmac-sha256\"\n\n\
         [policies.key]\napi_key = {{}}\n\n\
         [policies.tag]\ntransform = {{ request_headers = {{ set = {{ \"x-zone\" = \"api\" }} }} }}\n\n\
         [[defaults]]\nprefix = \"/api\"\ncase_insensitive = {default_ci}\npolicies = [\"key\", \"tag\"]\n\n{}\n\
         [[routes]]\nname = \"everything\"\nprefix = \"/\"\nproxy = {{ upstream = \"app\" }}\n",
        keys.display(),
        upstream_toml("app", &[up])
    )
}

#[test]
fn a_catch_all_route_does_not_escape_a_prefix_default() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys.toml");
    let key = create_key(dir.path(), &keys, "alice", Some(SECRET));
    let up = Upstream::echo();
    let gw = Gateway::start_env(
        &config(&keys, up.addr, true),
        2,
        &[("RINGWAY_KEY_SECRET", SECRET)],
    );
    for target in [
        "/api/internal",
        "/api",
        "/api/",
        "/api//internal",
        "//api/internal",
        "/api;x/internal",
        "/x/../api/internal",
        "/%61pi/internal",
        "/API/internal",
    ] {
        let r = get(gw.addr, target);
        assert_eq!(r.status, 401, "{target}: {}", r.text());
        assert!(r.header("www-authenticate").is_some(), "{target}");
    }
    assert_eq!(get(gw.addr, "/api%2Finternal").status, 400);
    assert_eq!(up.count(), 0, "the upstream saw nothing");

    // Outside the default: no key needed, no default policies ran.
    assert_eq!(get(gw.addr, "/other").status, 200);
    assert_eq!(get(gw.addr, "/apix/internal").status, 200);
    assert_eq!(up.last().target, "/apix/internal");
    assert_eq!(up.last().header("x-zone"), None);
    assert_eq!(up.count(), 2);

    // With a key, in file order: key, then tag; the consumer reaches the upstream.
    let auth = format!("Bearer {key}");
    let r = request(
        gw.addr,
        "GET",
        "/api//internal",
        &[("Authorization", &auth)],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = up.last();
    assert_eq!(seen.target, "/api/internal");
    assert_eq!(seen.header("x-zone"), Some("api"));
    assert_eq!(seen.header("x-consumer"), Some("alice"));
    assert!(seen.header("authorization").is_none());
}

#[test]
fn a_case_sensitive_default_covers_only_its_exact_case() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys.toml");
    let _ = create_key(dir.path(), &keys, "alice", Some(SECRET));
    let up = Upstream::echo();
    let gw = Gateway::start_env(
        &config(&keys, up.addr, false),
        1,
        &[("RINGWAY_KEY_SECRET", SECRET)],
    );
    assert_eq!(get(gw.addr, "/api/internal").status, 401);
    assert_eq!(get(gw.addr, "//api;v=1/internal").status, 401);
    assert_eq!(up.count(), 0);
    // Documented: without `case_insensitive` the prefix is compared case-sensitively.
    assert_eq!(get(gw.addr, "/API/internal").status, 200);
}

#[test]
fn check_shows_conditional_defaults_and_rejects_a_default_that_never_applies() {
    let base = "[[listeners]]\naddress = \"127.0.0.1:0\"\n\n\
                [policies.tag]\ntransform = { request_headers = { set = { \"x-zone\" = \"api\" } } }\n\n\
                [policies.own]\ntransform = { request_headers = { set = { \"x-own\" = \"1\" } } }\n\n\
                [[defaults]]\nprefix = \"/api\"\npolicies = [\"tag\"]\n\n";
    let ok = format!(
        "{base}[[routes]]\nname = \"all\"\nprefix = \"/\"\npolicies = [\"own\"]\nstatic = {{ body = \"x\" }}\n\n\
         [[routes]]\nname = \"v1\"\nprefix = \"/api/v1\"\nstatic = {{ body = \"x\" }}\n"
    );
    let (code, out, err) = check_config(&ok);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out
        .lines()
        .skip_while(|l| !l.starts_with("routes (match order):"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(
        lines[0].contains("v1") && lines[0].ends_with("[policies: tag]"),
        "{out}"
    );
    assert!(
        lines[1].contains("all") && lines[1].ends_with("[policies: tag (if /api),own]"),
        "{out}"
    );

    let never = format!(
        "{base}[[defaults]]\nhost = \"api.example.com\"\nprefix = \"/admin\"\npolicies = [\"tag\"]\n\n\
         [[routes]]\nname = \"v1\"\nprefix = \"/api/v1\"\nstatic = {{ body = \"x\" }}\n\n\
         [[routes]]\nname = \"admin\"\nhosts = [\"other.example.com\"]\nprefix = \"/admin\"\nstatic = {{ body = \"x\" }}\n"
    );
    let (code, _, err) = check_config(&never);
    assert_ne!(code, 0);
    // The second [[defaults]] entry: its `prefix` is on line 16.
    assert!(
        err.contains(":16:") && err.contains("defaults[1].prefix") && err.contains("never apply"),
        "{err}"
    );
    assert_eq!(err.matches("never apply").count(), 1, "{err}");
}

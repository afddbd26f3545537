//! API keys end to end: keys created, rotated and revoked with the `ringway keys` CLI against a
//! running gateway reloaded by SIGHUP; keys from Authorization, X-Api-Key or a query parameter;
//! 401 with WWW-Authenticate for missing / unknown / revoked keys; the key never reaches the
//! upstream, the consumer name does (and a client cannot forge it).
mod common;
use common::*;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const SECRET: &str = "an-hmac-secret-of-sufficient-length";

/// A config file for the CLI: only `[api_keys]` matters to it.
fn cli_config(dir: &Path, keys: &Path) -> PathBuf {
    let p = dir.join("cli.toml");
    std::fs::write(
        &p,
        format!(
            "[api_keys]\nfile = \"{}\"\nhash = \"hmac-sha256\"\n",
            keys.display()
        ),
    )
    .unwrap();
    p
}

/// Runs `ringway keys ...`; returns (exit code, stdout, stderr).
fn keys(config: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(bin())
        .arg("keys")
        .args(args)
        .arg("--config")
        .arg(config)
        .env("RINGWAY_KEY_SECRET", SECRET)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn create(config: &Path, consumer: &str) -> String {
    let (code, out, err) = keys(config, &["create", "--consumer", consumer]);
    assert_eq!(code, 0, "{err}");
    let key = out.trim().to_string();
    assert!(key.starts_with("rwk_"), "{out}");
    key
}

fn gateway_config(up: std::net::SocketAddr, keys: &Path) -> String {
    format!(
        "[api_keys]\nfile = \"{}\"\nhash = \"hmac-sha256\"\n\n\
         [policies.key]\napi_key = {{ query = \"api_key\" }}\n\n{}\n\
         [[routes]]\nname = \"api\"\nprefix = \"/api\"\npolicies = [\"key\"]\nproxy = {{ upstream = \"app\" }}\n\n\
         [[routes]]\nname = \"open\"\npath = \"/open\"\nstatic = {{ body = \"open\" }}\n",
        keys.display(),
        upstream_toml("app", &[up])
    )
}

#[test]
fn keys_authenticate_and_never_reach_the_upstream() {
    let dir = tempfile::tempdir().unwrap();
    let keys_file = dir.path().join("keys.toml");
    let cli = cli_config(dir.path(), &keys_file);
    let alice = create(&cli, "alice");
    let text = std::fs::read_to_string(&keys_file).unwrap();
    let secret_part = &alice[alice.len() - 20..];
    assert!(
        !text.contains(secret_part),
        "the keys file holds no plain key"
    );

    let up = Upstream::echo();
    let gw = Gateway::start_env(
        &gateway_config(up.addr, &keys_file),
        2,
        &[("RINGWAY_KEY_SECRET", SECRET)],
    );

    // Missing key: 401, challenge, problem body, nothing reaches the upstream.
    let r = get(gw.addr, "/api/x");
    assert_eq!(r.status, 401);
    assert!(r.header("www-authenticate").is_some());
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
    assert_eq!(r.json()["status"], 401);
    // Unknown key (one character changed).
    let mut bad = alice.clone().into_bytes();
    let last = bad.len() - 1;
    bad[last] = if bad[last] == b'A' { b'B' } else { b'A' };
    let bad = String::from_utf8(bad).unwrap();
    let r = request(
        gw.addr,
        "GET",
        "/api/x",
        &[("Authorization", &format!("Bearer {bad}"))],
        b"",
    );
    assert_eq!(r.status, 401);
    assert_eq!(
        request(gw.addr, "GET", "/api/x", &[("X-Api-Key", "garbage")], b"").status,
        401
    );
    assert_eq!(up.count(), 0);
    // The open route needs nothing.
    assert_eq!(get(gw.addr, "/open").status, 200);

    // Bearer: accepted; the upstream gets the consumer, not the key, and not a forged consumer.
    let r = request(
        gw.addr,
        "GET",
        "/api/x",
        &[
            ("Authorization", &format!("Bearer {alice}")),
            ("X-Consumer", "mallory"),
        ],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = up.last();
    assert_eq!(seen.header_all("x-consumer"), vec!["alice"]);
    assert!(seen.header("authorization").is_none());
    assert!(!seen.raw_head.contains(&alice));

    // X-Api-Key header.
    let r = request(gw.addr, "GET", "/api/y", &[("X-Api-Key", &alice)], b"");
    assert_eq!(r.status, 200);
    assert!(up.last().header("x-api-key").is_none());

    // Query parameter: removed before forwarding, other parameters kept.
    let r = get(gw.addr, &format!("/api/z?a=1&api_key={alice}&b=2"));
    assert_eq!(r.status, 200);
    assert_eq!(up.last().target, "/api/z?a=1&b=2");
    // One query rule (http1::query): a percent-encoded name and value are the same key, and
    // the removal before forwarding catches them too.
    let encoded = alice.replace('_', "%5F");
    let r = get(gw.addr, &format!("/api/z?api%5Fkey={encoded}&b=2"));
    assert_eq!(r.status, 200);
    assert_eq!(up.last().target, "/api/z?b=2");

    // Auth failures are counted by reason.
    let s = scrape_until(
        gw.admin,
        "ringway_auth_failures_total",
        &[("route", "api"), ("reason", "missing_key")],
        1.0,
    );
    assert_eq!(
        metric(
            &s,
            "ringway_auth_failures_total",
            &[("route", "api"), ("reason", "missing_key")]
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &s,
            "ringway_auth_failures_total",
            &[("route", "api"), ("reason", "unknown")]
        )
        .unwrap_or(0.0)
            + metric(
                &s,
                "ringway_auth_failures_total",
                &[("route", "api"), ("reason", "malformed")]
            )
            .unwrap_or(0.0),
        2.0
    );
}

#[test]
fn create_rotate_revoke_through_the_cli_with_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let keys_file = dir.path().join("keys.toml");
    let cli = cli_config(dir.path(), &keys_file);
    let first = create(&cli, "bob");
    let up = Upstream::echo();
    let body = gateway_config(up.addr, &keys_file);
    let gw = Gateway::start_env(&body, 2, &[("RINGWAY_KEY_SECRET", SECRET)]);
    let call = |key: &str| request(gw.addr, "GET", "/api/x", &[("X-Api-Key", key)], b"").status;
    assert_eq!(call(&first), 200);

    // A key created after start works once the gateway reloads.
    let second = create(&cli, "carol");
    assert_eq!(call(&second), 401);
    assert!(gw.reload(&body));
    assert_eq!(call(&second), 200);
    assert_eq!(up.last().header("x-consumer"), Some("carol"));

    // list: ids and consumers, never keys or hashes.
    let (code, out, _) = keys(&cli, &["list"]);
    assert_eq!(code, 0);
    assert!(out.contains("bob") && out.contains("carol"), "{out}");
    assert!(
        !out.contains(&first) && !out.contains("hmac-sha256:"),
        "{out}"
    );
    let id_of = |key: &str| key.split('_').nth(1).unwrap().to_string();
    assert!(out.contains(&id_of(&first)));

    // Rotate with a grace: both keys work until the grace ends, then only the new one. Expiry
    // has whole-second resolution and the machine may be slow, so the "still valid" check only
    // runs while comfortably inside the grace, and the end is polled with a generous deadline.
    let grace = Duration::from_secs(8);
    let rotated_at = std::time::Instant::now();
    let (code, out, err) = keys(&cli, &["rotate", &id_of(&first), "--grace", "8s"]);
    assert_eq!(code, 0, "{err}");
    let rotated = out.trim().to_string();
    assert!(rotated.starts_with("rwk_") && rotated != first);
    assert!(gw.reload(&body));
    let old_status = call(&first);
    if rotated_at.elapsed() + Duration::from_secs(2) < grace {
        assert_eq!(old_status, 200, "the old key works during the grace");
    }
    assert_eq!(call(&rotated), 200);
    assert_eq!(up.last().header("x-consumer"), Some("bob"));
    let deadline = rotated_at + grace + Duration::from_secs(20);
    while call(&first) != 401 {
        assert!(
            std::time::Instant::now() < deadline,
            "the old key expires when the grace ends, without a reload"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        rotated_at.elapsed() + Duration::from_secs(1) >= grace,
        "not before the grace ends"
    );
    assert_eq!(call(&rotated), 200);

    // Revoke.
    let (code, _, err) = keys(&cli, &["revoke", &id_of(&second)]);
    assert_eq!(code, 0, "{err}");
    assert!(gw.reload(&body));
    assert_eq!(call(&second), 401);
    let (code, _, _) = keys(&cli, &["revoke", "ffffffff"]);
    assert_eq!(code, 1, "unknown id");

    // A broken keys file is a reload error naming the file and line; the old keys keep working.
    std::fs::write(&keys_file, "[[keys]]\nid = 5\n").unwrap();
    assert!(!gw.reload(&body));
    assert!(gw.logs().contains("keys.toml:2"), "{}", gw.logs());
    assert_eq!(call(&rotated), 200);
}

#[test]
fn the_access_log_names_the_consumer() {
    let dir = tempfile::tempdir().unwrap();
    let keys_file = dir.path().join("keys.toml");
    let cli = cli_config(dir.path(), &keys_file);
    let key = create(&cli, "dora");
    let log = dir.path().join("access.log");
    let up = Upstream::echo();
    let body = format!(
        "[access_log]\nenabled = true\npath = \"{}\"\n\n{}",
        log.display(),
        gateway_config(up.addr, &keys_file)
    );
    let gw = Gateway::start_env(&body, 2, &[("RINGWAY_KEY_SECRET", SECRET)]);
    assert_eq!(
        request(gw.addr, "GET", "/api/x", &[("X-Api-Key", &key)], b"").status,
        200
    );
    assert_eq!(get(gw.addr, "/api/x").status, 401);
    assert_eq!(
        get(gw.addr, &format!("/api/q?a=1&api_key={key}")).status,
        200
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let lines = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.lines().count() >= 3 || std::time::Instant::now() > deadline {
            break text.lines().map(str::to_string).collect::<Vec<_>>();
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let recs: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let ok = recs.iter().find(|r| r["status"] == 200).expect("200 line");
    assert_eq!(ok["consumer"], "dora");
    let denied = recs.iter().find(|r| r["status"] == 401).expect("401 line");
    assert!(denied["consumer"].is_null());
    assert!(
        lines.iter().all(|l| !l.contains(&key)),
        "the key never reaches the log"
    );
}

#[test]
fn consumer_groups_authorize_and_metadata_reaches_the_upstream() {
    let dir = tempfile::tempdir().unwrap();
    let keys_file = dir.path().join("keys.toml");
    let cli = cli_config(dir.path(), &keys_file);
    let admin = create(&cli, "erin");
    let user = create(&cli, "frank");
    let up = Upstream::echo();
    let body = format!(
        "[consumers.erin]\ngroups = [\"admins\", \"staff\"]\nmetadata = {{ tier = \"gold\" }}\n\n\
         [consumers.frank]\ngroups = [\"customers\"]\n\n\
         [api_keys]\nfile = \"{}\"\nhash = \"hmac-sha256\"\n\n\
         [policies.key]\napi_key = {{}}\n\n\
         [policies.admins]\nauthorize = {{ groups = [\"admins\"] }}\n\n\
         [policies.tag]\ntransform = {{ request_headers = {{ set = {{ \"x-tier\" = \"${{consumer.meta.tier}}\", \"x-groups\" = \"${{consumer.groups}}\" }} }} }}\n\n{}\n\
         [[routes]]\nname = \"admin\"\nprefix = \"/admin\"\npolicies = [\"key\", \"admins\", \"tag\"]\nproxy = {{ upstream = \"app\" }}\n",
        keys_file.display(),
        upstream_toml("app", &[up.addr])
    );
    let gw = Gateway::start_env(&body, 2, &[("RINGWAY_KEY_SECRET", SECRET)]);
    let r = request(gw.addr, "GET", "/admin/x", &[("X-Api-Key", &admin)], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = up.last();
    assert_eq!(seen.header("x-consumer"), Some("erin"));
    assert_eq!(seen.header("x-tier"), Some("gold"));
    assert_eq!(seen.header("x-groups"), Some("admins,staff"));
    let before = up.count();
    let r = request(gw.addr, "GET", "/admin/x", &[("X-Api-Key", &user)], b"");
    assert_eq!(r.status, 403, "authenticated but not in the group");
    assert_eq!(r.json()["code"], "forbidden");
    assert_eq!(up.count(), before);
    let s = scrape_until(
        gw.admin,
        "ringway_auth_failures_total",
        &[("route", "admin"), ("reason", "consumer_not_allowed")],
        1.0,
    );
    assert_eq!(
        metric(
            &s,
            "ringway_auth_failures_total",
            &[("route", "admin"), ("reason", "consumer_not_allowed")]
        ),
        Some(1.0)
    );
}

#[test]
fn challenges_and_the_precedence_of_key_sources() {
    let dir = tempfile::tempdir().unwrap();
    let keys_file = dir.path().join("keys.toml");
    let cli = cli_config(dir.path(), &keys_file);
    let alice = create(&cli, "alice");
    let bob = create(&cli, "bob");
    let up = Upstream::echo();
    let gw = Gateway::start_env(
        &gateway_config(up.addr, &keys_file),
        2,
        &[("RINGWAY_KEY_SECRET", SECRET)],
    );
    let mut bad = alice.clone().into_bytes();
    let last = bad.len() - 1;
    bad[last] = if bad[last] == b'A' { b'B' } else { b'A' };
    let bad = String::from_utf8(bad).unwrap();
    let bearer = |k: &str| format!("Bearer {k}");

    // The exact challenge README promises, for a missing and for an unknown key.
    let r = get(gw.addr, "/api/x");
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header_all("www-authenticate"),
        vec!["ApiKey realm=\"ringway\""]
    );
    let r = request(gw.addr, "GET", "/api/x", &[("X-Api-Key", &bad)], b"");
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header_all("www-authenticate"),
        vec!["ApiKey realm=\"ringway\""]
    );

    // Authorization: Bearer, then X-Api-Key, then the query parameter. The first source that
    // carries a key decides; a later one is never consulted.
    let call = |headers: &[(&str, &str)], query: Option<&str>| {
        let path = match query {
            Some(k) => format!("/api/x?api_key={k}"),
            None => "/api/x".to_string(),
        };
        let r = request(gw.addr, "GET", &path, headers, b"");
        let consumer = (r.status == 200).then(|| up.last().header("x-consumer").map(String::from));
        (r.status, consumer.flatten())
    };
    let (ba, bb, bbad) = (bearer(&alice), bearer(&bob), bearer(&bad));
    assert_eq!(
        call(&[("Authorization", &bb), ("X-Api-Key", &alice)], None),
        (200, Some("bob".into())),
        "Bearer beats X-Api-Key"
    );
    assert_eq!(
        call(&[("Authorization", &ba), ("X-Api-Key", &bad)], None),
        (200, Some("alice".into())),
        "a bad X-Api-Key is not consulted after a good Bearer"
    );
    assert_eq!(
        call(&[("Authorization", &bbad), ("X-Api-Key", &alice)], None),
        (401, None),
        "a bad Bearer is not rescued by a good X-Api-Key"
    );
    assert_eq!(
        call(&[("X-Api-Key", &bob)], Some(&alice)),
        (200, Some("bob".into())),
        "X-Api-Key beats the query parameter"
    );
    assert_eq!(
        call(&[("X-Api-Key", &bad)], Some(&alice)),
        (401, None),
        "a bad X-Api-Key is not rescued by a good query key"
    );
    assert_eq!(
        call(&[("Authorization", &ba)], Some(&bad)),
        (200, Some("alice".into())),
        "Bearer beats the query parameter"
    );
    assert_eq!(call(&[], Some(&bob)), (200, Some("bob".into())));

    // No key reaches the upstream from any source the policy reads, not only the one that
    // decided: a second key would name another consumer than the gateway's `x-consumer`.
    let r = request(
        gw.addr,
        "GET",
        &format!("/api/x?api_key={alice}&z=1"),
        &[("X-Api-Key", &bob)],
        b"",
    );
    assert_eq!(r.status, 200);
    let seen = up.last();
    assert_eq!(seen.header("x-consumer"), Some("bob"));
    assert_eq!(seen.target, "/api/x?z=1", "the query key was left on");
    let r = request(
        gw.addr,
        "GET",
        "/api/x",
        &[("Authorization", &bb), ("X-Api-Key", &alice)],
        b"",
    );
    assert_eq!(r.status, 200);
    let seen = up.last();
    assert_eq!(seen.header("x-api-key"), None, "the X-Api-Key was left on");
    assert_eq!(seen.header("authorization"), None);
}

/// Two configs reaching one keys file, one through a symlink in another directory: writers
/// lock the directory of the file they replace, not of the path as written, so concurrent
/// `keys create` through either path lose nothing.
#[test]
fn concurrent_writers_through_a_symlink_lose_no_key() {
    let dir = tempfile::tempdir().unwrap();
    let real_dir = dir.path().join("real");
    let link_dir = dir.path().join("link");
    std::fs::create_dir_all(&real_dir).unwrap();
    std::fs::create_dir_all(&link_dir).unwrap();
    let real = real_dir.join("keys.toml");
    std::fs::write(&real, "").unwrap();
    let link = link_dir.join("keys.toml");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let a = cli_config(&real_dir, &real);
    let b = cli_config(&link_dir, &link);
    let workers: Vec<_> = (0..32)
        .map(|i| {
            let config = if i % 2 == 0 { a.clone() } else { b.clone() };
            std::thread::spawn(move || create(&config, &format!("c{i}")))
        })
        .collect();
    let created: Vec<String> = workers.into_iter().map(|w| w.join().unwrap()).collect();
    let (code, listed, err) = keys(&a, &["list"]);
    assert_eq!(code, 0, "{err}");
    for key in &created {
        let id = &key[4..12];
        assert!(
            listed.contains(id),
            "key {id} was printed but lost:\n{listed}"
        );
    }
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
}

//! `[server] user`/`group`: a gateway started as root binds its listeners (and the admin port),
//! then every thread runs as the configured account, with no way back to root; it serves,
//! reloads a config that account can read, and keeps serving when the file becomes unreadable.
//! An account that does not exist is a config error naming file, line and field.
mod common;
use common::*;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn route(body: &str) -> String {
    format!(
        "[server]\nuser = \"nobody\"\n\n[[routes]]\nname = \"s\"\npath = \"/s\"\nstatic = {{ body = \"{body}\" }}\n"
    )
}

/// (Uid line, Gid line, Groups line) of every thread of `pid`.
fn thread_ids(pid: i32) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for t in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        // A short-lived thread (a blocking helper) can end between the listing and the read.
        let Ok(status) = std::fs::read_to_string(t.unwrap().path().join("status")) else {
            continue;
        };
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .unwrap_or("")
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        };
        out.push((field("Uid:"), field("Gid:"), field("Groups:")));
    }
    out
}

fn nobody_ids() -> (u32, u32) {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    let line = passwd.lines().find(|l| l.starts_with("nobody:")).unwrap();
    let f: Vec<&str> = line.split(':').collect();
    (f[2].parse().unwrap(), f[3].parse().unwrap())
}

#[test]
fn started_as_root_every_thread_runs_as_the_configured_user_and_reloads() {
    if !is_root() {
        eprintln!("SKIPPED: dropping privileges needs the test to run as root");
        return;
    }
    let gw = Gateway::start(&route("one"));
    let (uid, gid) = nobody_ids();
    // Every worker accepts (and the admin thread answers) before the threads are counted.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while get(gw.admin, "/ready").status != 200 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let ids = thread_ids(gw.pid());
    assert!(
        ids.len() >= 3,
        "workers and admin threads expected: {ids:?}"
    );
    for (u, g, groups) in &ids {
        assert_eq!(u, &format!("{uid} {uid} {uid} {uid}"), "{ids:?}");
        assert_eq!(g, &format!("{gid} {gid} {gid} {gid}"), "{ids:?}");
        assert_eq!(
            groups,
            &gid.to_string(),
            "supplementary groups left: {ids:?}"
        );
    }
    gw.wait_log("now running as user nobody", Duration::from_secs(5));
    assert_eq!(get(gw.addr, "/s").text(), "one");
    assert_eq!(get(gw.admin, "/ready").status, 200);

    // A config directory only root may enter: the reload fails and the running generation
    // keeps serving.
    let dir = gw.config_path.parent().unwrap();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    assert!(!gw.reload(&route("two")));
    assert!(gw.logs().contains("Permission denied"), "{}", gw.logs());
    assert_eq!(get(gw.addr, "/s").text(), "one");

    // Readable by the service account: the reload goes through.
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&gw.config_path, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert!(gw.reload(&route("three")), "{}", gw.logs());
    assert_eq!(get(gw.addr, "/s").text(), "three");
    for (u, _, _) in thread_ids(gw.pid()) {
        assert!(
            !u.split(' ').any(|id| id == "0"),
            "root id after reload: {u}"
        );
    }
}

#[test]
fn an_unknown_user_or_group_is_a_config_error_with_its_line() {
    let (code, _, err) = check_config(
        "[server]\nuser = \"no-such-user-rw\"\n[[listeners]]\naddress = \"127.0.0.1:1\"\n[[routes]]\nname = \"s\"\npath = \"/s\"\nstatic = { body = \"x\" }\n",
    );
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(":2:") && err.contains("server.user") && err.contains("no such user"),
        "{err}"
    );

    let (code, _, err) = check_config(
        "[server]\nuser = \"nobody\"\ngroup = \"no-such-group-rw\"\n[[listeners]]\naddress = \"127.0.0.1:1\"\n[[routes]]\nname = \"s\"\npath = \"/s\"\nstatic = { body = \"x\" }\n",
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains(":3:") && err.contains("server.group"), "{err}");

    let (code, _, err) = check_config(
        "[server]\nuser = \"root\"\n[[listeners]]\naddress = \"127.0.0.1:1\"\n[[routes]]\nname = \"s\"\npath = \"/s\"\nstatic = { body = \"x\" }\n",
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("must not be root"), "{err}");

    // The gateway itself refuses to start (exit 1, the config error) rather than run as root.
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("r.toml");
    std::fs::write(
        &cfg,
        format!("[server]\nuser = \"no-such-user-rw\"\n[[listeners]]\naddress = \"127.0.0.1:{}\"\n[[routes]]\nname = \"s\"\npath = \"/s\"\nstatic = {{ body = \"x\" }}\n", free_port()),
    )
    .unwrap();
    let out = std::process::Command::new(bin())
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no such user"));
}

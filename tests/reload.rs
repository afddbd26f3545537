//! SIGHUP reloads as a user sees them: no failed requests under traffic, a broken file keeps
//! the old config serving (and says where it is broken), keep-alive connections pick up the
//! new generation on their next request, and upstream changes take effect.
mod common;
use common::*;

use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

fn versioned(v: &str) -> String {
    format!("[[routes]]\nname = \"ver\"\npath = \"/version\"\n[routes.static]\nbody = \"{v}\"\n")
}

fn proxied(upstreams: &str, upstream: &str) -> String {
    format!(
        "{upstreams}\n[[routes]]\nname = \"api\"\nprefix = \"/api\"\nproxy = {{ upstream = \"{upstream}\" }}\n\n{}",
        versioned("v1")
    )
}

#[test]
fn reloads_under_continuous_traffic_lose_nothing() {
    let gw = Gateway::start(&versioned("v1"));
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let reconnects = Arc::new(AtomicUsize::new(0));
    let seen = Arc::new(Mutex::new(std::collections::BTreeSet::<String>::new()));
    let clients: Vec<_> = (0..4)
        .map(|id| {
            let (stop, ok, failures, reconnects, seen) = (
                stop.clone(),
                ok.clone(),
                failures.clone(),
                reconnects.clone(),
                seen.clone(),
            );
            let addr = gw.addr;
            thread::spawn(move || {
                let mut c = Conn::open(addr);
                let deadline = Instant::now() + Duration::from_secs(20);
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    // Paced: the CI box may have 2 cores, and the reloads need CPU too.
                    thread::sleep(Duration::from_millis(1));
                    c.send(&build_request("GET", "/version", &[], b""));
                    match c.read_response(false) {
                        Ok(r) if r.status == 200 && (r.text() == "v1" || r.text() == "v2") => {
                            ok.fetch_add(1, Ordering::Relaxed);
                            seen.lock().unwrap().insert(r.text());
                            if r.header("connection") == Some("close") {
                                reconnects.fetch_add(1, Ordering::Relaxed);
                                c = Conn::open(addr);
                            }
                        }
                        Ok(r) => {
                            failures.lock().unwrap().push(format!(
                                "client {id}: {} {:?}",
                                r.status,
                                r.text()
                            ));
                        }
                        Err(e) => {
                            failures.lock().unwrap().push(format!("client {id}: {e}"));
                            reconnects.fetch_add(1, Ordering::Relaxed);
                            c = Conn::open(addr);
                        }
                    }
                }
            })
        })
        .collect();

    let t = Instant::now();
    for i in 0..10 {
        thread::sleep(Duration::from_millis(180));
        let v = if i % 2 == 0 { "v2" } else { "v1" };
        assert!(
            gw.reload(&versioned(v)),
            "reload {i} rejected:\n{}",
            gw.logs()
        );
    }
    thread::sleep(Duration::from_millis(150));
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().expect("client thread panicked");
    }
    let elapsed = t.elapsed();
    let failures = failures.lock().unwrap();
    let ok = ok.load(Ordering::Relaxed);
    eprintln!("{ok} requests over {elapsed:?} across 10 reloads");
    assert!(
        failures.is_empty(),
        "{} failures: {:?}",
        failures.len(),
        &failures[..failures.len().min(10)]
    );
    assert!(ok > 100, "only {ok} requests completed");
    assert_eq!(
        reconnects.load(Ordering::Relaxed),
        0,
        "reloads closed keep-alive connections"
    );
    assert_eq!(
        seen.lock().unwrap().len(),
        2,
        "clients never saw both versions"
    );
    // The last reload wrote v1 (i = 9): new requests see it.
    assert_eq!(get(gw.addr, "/version").text(), "v1");
    assert!(gw.reload(&versioned("v2")));
    assert_eq!(get(gw.addr, "/version").text(), "v2");
}

/// 1-based line of the first line starting with `prefix` in the config file as written.
fn line_of(gw: &Gateway, prefix: &str) -> usize {
    let written = std::fs::read_to_string(&gw.config_path).unwrap();
    written
        .lines()
        .position(|l| l.starts_with(prefix))
        .expect("line present")
        + 1
}

#[test]
fn broken_reload_keeps_old_config_and_names_the_error() {
    let gw = Gateway::start(&versioned("v1"));
    let broken = "[[routes]]\nname = \"ver\"\npath = \"/version\"\nstatic = { body = \"v2\" }\nbogus_field = 1\n";
    assert!(!gw.reload(broken), "a broken config was accepted");
    let logs = gw.logs();
    let path = gw.config_path.display().to_string();
    // The line of `bogus_field` in the file as written (the harness prepends its own tables).
    let line = line_of(&gw, "bogus_field");
    assert!(
        logs.contains(&format!("{path}:{line}:1")),
        "error does not name {path}:{line}:1:\n{logs}"
    );
    assert!(logs.contains("bogus_field"), "{logs}");
    let r = get(gw.addr, "/version");
    assert_eq!((r.status, r.text()), (200, "v1".to_string()));

    // A semantic error (unknown upstream) is rejected the same way.
    let broken =
        "[[routes]]\nname = \"ver\"\npath = \"/version\"\nproxy = { upstream = \"ghost\" }\n";
    assert!(!gw.reload(broken));
    let line = line_of(&gw, "proxy = ");
    assert!(
        gw.logs().contains(&format!("{path}:{line}:")),
        "{}",
        gw.logs()
    );
    assert!(gw.logs().contains("ghost"));
    assert_eq!(get(gw.addr, "/version").text(), "v1");

    // And a later good reload still works.
    assert!(gw.reload(&versioned("v3")));
    assert_eq!(get(gw.addr, "/version").text(), "v3");
}

#[test]
fn keepalive_connection_sees_new_generation_on_next_request() {
    let gw = Gateway::start(&versioned("v1"));
    let mut c = Conn::open(gw.addr);
    assert_eq!(c.request("GET", "/version", &[], b"").text(), "v1");
    assert!(gw.reload(&format!(
        "{}\n[[routes]]\nname = \"new\"\npath = \"/new\"\nstatic = {{ body = \"added\" }}\n",
        versioned("v2")
    )));
    let r = c.request("GET", "/version", &[], b"");
    assert_eq!(r.text(), "v2");
    let r = c.request("GET", "/new", &[], b"");
    assert_eq!((r.status, r.text()), (200, "added".to_string()));
    // Removing a route takes effect on the same connection too.
    assert!(gw.reload(&versioned("v3")));
    assert_eq!(c.request("GET", "/new", &[], b"").status, 404);
    assert_eq!(c.request("GET", "/version", &[], b"").text(), "v3");
}

#[test]
fn upstream_changes_take_effect() {
    let a = Upstream::fixed(200, "from-a", "a");
    let b = Upstream::fixed(200, "from-b", "b");
    let gw = Gateway::start(&proxied(&upstream_toml("be", &[a.addr]), "be"));
    let mut c = Conn::open(gw.addr);
    for _ in 0..3 {
        assert_eq!(c.request("GET", "/api/x", &[], b"").text(), "from-a");
    }
    // Same upstream name, new target address: pooled connections to `a` must not be used.
    assert!(gw.reload(&proxied(&upstream_toml("be", &[b.addr]), "be")));
    for _ in 0..4 {
        assert_eq!(c.request("GET", "/api/x", &[], b"").text(), "from-b");
        assert_eq!(get(gw.addr, "/api/y").text(), "from-b");
    }
    // Route switched to a differently named upstream.
    let both = format!(
        "{}{}",
        upstream_toml("first", &[b.addr]),
        upstream_toml("second", &[a.addr])
    );
    assert!(gw.reload(&proxied(&both, "second")));
    for _ in 0..4 {
        assert_eq!(c.request("GET", "/api/x", &[], b"").text(), "from-a");
    }
    let a_before = a.count();
    assert!(gw.reload(&proxied(&both, "first")));
    for _ in 0..4 {
        assert_eq!(get(gw.addr, "/api/z").text(), "from-b");
    }
    assert_eq!(
        a.count(),
        a_before,
        "old upstream still got traffic after the reload"
    );
}

#[test]
fn reload_keeps_warm_upstream_connections() {
    let up = Upstream::echo();
    let gw = Gateway::start_workers(&proxied(&upstream_toml("be", &[up.addr]), "be"), 1);
    let mut c = Conn::open(gw.addr);
    for _ in 0..3 {
        assert_eq!(c.request("GET", "/api/x", &[], b"").status, 200);
    }
    let before = up.connections.load(Ordering::SeqCst);
    for v in ["v2", "v3", "v4"] {
        let body = format!(
            "{}\n[[routes]]\nname = \"api\"\nprefix = \"/api\"\nproxy = {{ upstream = \"be\" }}\n\n{}",
            upstream_toml("be", &[up.addr]),
            versioned(v)
        );
        assert!(gw.reload(&body));
        assert_eq!(c.request("GET", "/api/x", &[], b"").status, 200);
        assert_eq!(c.request("GET", "/version", &[], b"").text(), v);
    }
    assert_eq!(
        up.connections.load(Ordering::SeqCst),
        before,
        "reloads dropped the idle upstream connection"
    );
}

#[test]
fn in_flight_request_finishes_on_its_own_generation() {
    // The upstream holds its answer until the test opens the gate, so the request is in flight
    // across the whole reload however slow the machine is.
    let gate = Gate::new();
    let held = gate.clone();
    let up = Upstream::start(Arc::new(move |_req, s| {
        held.wait(Duration::from_secs(60));
        let _ = std::io::Write::write_all(s, b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nslow");
        Reply::KeepAlive
    }));
    let gw = Gateway::start(&proxied(&upstream_toml("be", &[up.addr]), "be"));
    let addr = gw.addr;
    let inflight = thread::spawn(move || get(addr, "/api/slow"));
    up.wait_for_count(1, Duration::from_secs(10));
    // The route becomes static; the request already on its way finishes against the upstream.
    assert!(gw
        .reload("[[routes]]\nname = \"api\"\nprefix = \"/api\"\nstatic = { body = \"static\" }\n"));
    assert_eq!(get(gw.addr, "/api/now").text(), "static");
    assert!(
        !inflight.is_finished(),
        "in-flight request ended before the gate opened"
    );
    gate.open();
    let r = inflight.join().unwrap();
    assert_eq!((r.status, r.text()), (200, "slow".to_string()));
}

#[test]
fn listener_changes_are_not_applied_on_reload() {
    let gw = Gateway::start(&versioned("v1"));
    let other = free_port();
    let body = format!(
        "[[listeners]]\nname = \"extra\"\naddress = \"127.0.0.1:{other}\"\n\n{}",
        versioned("v2")
    );
    assert!(gw.reload(&body), "{}", gw.logs());
    assert!(
        gw.logs()
            .contains("listener changes take effect on restart"),
        "{}",
        gw.logs()
    );
    // Routes changed, listeners did not.
    assert_eq!(get(gw.addr, "/version").text(), "v2");
    assert!(
        TcpStream::connect(("127.0.0.1", other)).is_err(),
        "a listener appeared without a restart"
    );
}

#[test]
fn burst_of_sighups_ends_on_the_last_file() {
    let gw = Gateway::start(&versioned("v0"));
    for i in 1..=20 {
        gw.write_config(&versioned(&format!("v{i}")));
        gw.signal(libc::SIGHUP);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = get(gw.addr, "/version");
        assert_eq!(r.status, 200);
        if r.text() == "v20" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still serving {:?} after 20 reloads; logs:\n{}",
            r.text(),
            gw.logs()
        );
        thread::sleep(Duration::from_millis(20));
    }
    // The process survived the burst and still reloads normally.
    assert!(gw.reload(&versioned("final")));
    assert_eq!(get(gw.addr, "/version").text(), "final");
}

#[test]
fn reloaded_timeouts_apply_to_new_requests() {
    let up = Upstream::start(Arc::new(|_req, s| {
        thread::sleep(Duration::from_millis(1200));
        let _ = std::io::Write::write_all(s, b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nslow");
        Reply::KeepAlive
    }));
    let upstreams = upstream_toml("be", &[up.addr]);
    let gw = Gateway::start(&proxied(&upstreams, "be"));
    assert_eq!(get(gw.addr, "/api/a").status, 200);
    // Tighten the upstream response timeout: the same slow upstream now yields 504, fast.
    assert!(gw.reload(&format!(
        "[timeouts]\nupstream_response = \"300ms\"\n{}",
        proxied(&upstreams, "be")
    )));
    // 504 alone proves the new timeout applied: under the old one the same 1.2 s answer just
    // came back as 200. No wall-clock bound (the machine may be loaded).
    let r = get(gw.addr, "/api/b");
    assert_eq!(r.status, 504, "{}", r.text());
    assert!(r.text().contains("upstream_timeout"), "{}", r.text());
}

/// README: "back-off state carries over for upstreams whose name and target address are
/// unchanged". A target that refused a connection stays skipped through reloads within its
/// back-off period: no new connect attempt (and no new "connect failed" line) after SIGHUP.
#[test]
fn reload_keeps_backoff_of_unchanged_targets() {
    let good = Upstream::fixed(200, "good", "good");
    let dead: std::net::SocketAddr = format!("127.0.0.1:{}", refused_port()).parse().unwrap();
    // The refusing target comes first: a fresh balancer (equal weights) picks it first.
    let upstreams = format!(
        "{}backoff = \"10m\"\n",
        upstream_toml("be", &[dead, good.addr])
    );
    let config = |v: &str| {
        format!(
            "{upstreams}\n[[routes]]\nname = \"api\"\nprefix = \"/api\"\nproxy = {{ upstream = \"be\" }}\n\n{}",
            versioned(v)
        )
    };
    let gw = Gateway::start_workers(&config("v1"), 1);
    assert_eq!(get(gw.addr, "/api/x").text(), "good");
    gw.wait_log("connect failed", Duration::from_secs(10));
    for v in ["v2", "v3"] {
        assert!(gw.reload(&config(v)));
        assert_eq!(get(gw.addr, "/version").text(), v);
        for _ in 0..4 {
            assert_eq!(get(gw.addr, "/api/x").text(), "good");
        }
    }
    // One more reload as a fence: its log line comes after any line the requests above caused
    // (one process, one stderr pipe), so the count below is final.
    assert!(gw.reload(&config("v4")));
    assert_eq!(
        gw.log_count("connect failed"),
        1,
        "the backed-off target was tried again after a reload:\n{}",
        gw.logs()
    );
    assert_eq!(good.count(), 9);
}

//! Access logs: JSON lines with the right fields for known requests, nginx `combined` format,
//! per-route off and sampling, SIGUSR1 reopen after logrotate moves the file, and a failing
//! log device that is counted instead of stalling requests.
mod common;
use common::*;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

fn config(up: SocketAddr, log: &str) -> String {
    format!(
        "{log}\n{}\n\
         [[routes]]\nname = \"api\"\nprefix = \"/api\"\nproxy = {{ upstream = \"app\" }}\n\n\
         [[routes]]\nname = \"quiet\"\npath = \"/quiet\"\naccess_log = false\nstatic = {{ body = \"shh\" }}\n\n\
         [[routes]]\nname = \"hello\"\npath = \"/hello\"\nstatic = {{ body = \"hi\" }}\n",
        upstream_toml("app", &[up])
    )
}

/// Waits until the file holds at least `n` lines (the writer flushes every ~200 ms).
fn wait_lines(path: &Path, n: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        if lines.len() >= n || Instant::now() > deadline {
            return lines;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn json_lines_have_the_fields_of_each_request() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.log");
    let up = Upstream::echo();
    let log = format!(
        "[access_log]\nenabled = true\npath = \"{}\"\n",
        path.display()
    );
    let gw = Gateway::start(&config(up.addr, &log));

    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let r = request(
        gw.addr,
        "POST",
        "/api/items?page=2",
        &[
            ("User-Agent", "test-agent/1.0"),
            ("traceparent", tp),
            ("Referer", "http://r.example/"),
        ],
        b"hello",
    );
    assert_eq!(r.status, 200);
    let rid = r.header("x-request-id").unwrap().to_string();
    let miss = get(gw.addr, "/missing");
    assert_eq!(miss.status, 404);
    assert_eq!(get(gw.addr, "/quiet").status, 200);
    assert_eq!(get(gw.addr, "/hello").status, 200);

    let lines = wait_lines(&path, 3);
    assert_eq!(
        lines.len(),
        3,
        "the access_log = false route is not logged: {lines:?}"
    );
    let recs: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let post = recs
        .iter()
        .find(|r| r["method"] == "POST")
        .expect("POST line");
    assert_eq!(post["request_id"], rid.as_str());
    assert_eq!(post["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(post["client"], "127.0.0.1");
    assert_eq!(post["path"], "/api/items?page=2");
    assert_eq!(post["protocol"], "HTTP/1.1");
    assert_eq!(post["route"], "api");
    assert_eq!(post["status"], 200);
    assert_eq!(post["upstream"], up.addr.to_string().as_str());
    assert!(post["upstream_ms"].as_f64().unwrap() >= 0.0);
    assert!(post["duration_ms"].as_f64().unwrap() >= post["upstream_ms"].as_f64().unwrap());
    assert!(post["bytes_in"].as_u64().unwrap() > 5, "head + 5-byte body");
    assert!(post["bytes_out"].as_u64().unwrap() > r.body.len() as u64);
    assert_eq!(post["user_agent"], "test-agent/1.0");
    assert_eq!(post["referer"], "http://r.example/");
    assert!(post["consumer"].is_null());
    assert!(post["time"].as_str().unwrap().ends_with('Z'));

    let nf = recs.iter().find(|r| r["status"] == 404).expect("404 line");
    assert!(nf["route"].is_null());
    assert!(nf["upstream"].is_null());
    assert_eq!(nf["request_id"], miss.header("x-request-id").unwrap());
}

#[test]
fn combined_format_and_sampling() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("combined.log");
    let up = Upstream::echo();
    let log = format!(
        "[access_log]\nenabled = true\nformat = \"combined\"\npath = \"{}\"\n",
        path.display()
    );
    let gw = Gateway::start(&config(up.addr, &log));
    let r = request(
        gw.addr,
        "GET",
        "/hello?x=1",
        &[("User-Agent", "curl/8")],
        b"",
    );
    assert_eq!(r.status, 200);
    let lines = wait_lines(&path, 1);
    assert_eq!(lines.len(), 1);
    let l = &lines[0];
    assert!(l.starts_with("127.0.0.1 - - ["), "{l}");
    assert!(l.contains("+0000] \"GET /hello?x=1 HTTP/1.1\" 200 "), "{l}");
    assert!(l.ends_with("\"-\" \"curl/8\""), "{l}");

    // sample = 0.0 logs nothing (the reload switches it on the running gateway).
    let off = format!(
        "[access_log]\nenabled = true\nformat = \"combined\"\nsample = 0.0\npath = \"{}\"\n",
        path.display()
    );
    assert!(gw.reload(&config(up.addr, &off)));
    for _ in 0..20 {
        assert_eq!(get(gw.addr, "/hello").status, 200);
    }
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(wait_lines(&path, 2).len(), 1);
}

#[test]
fn sigusr1_reopens_the_file_after_logrotate_moves_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.log");
    let moved = dir.path().join("access.log.1");
    let up = Upstream::echo();
    let log = format!(
        "[access_log]\nenabled = true\npath = \"{}\"\n",
        path.display()
    );
    let gw = Gateway::start(&config(up.addr, &log));
    for _ in 0..3 {
        assert_eq!(get(gw.addr, "/hello").status, 200);
    }
    assert_eq!(wait_lines(&path, 3).len(), 3);
    std::fs::rename(&path, &moved).unwrap();
    gw.signal(libc::SIGUSR1);
    gw.wait_log("reopening the access log", Duration::from_secs(5));
    // The writer reopens within its wake-up period; the file appears at the old path.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !path.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(path.exists(), "file recreated at the original path");
    for _ in 0..2 {
        assert_eq!(get(gw.addr, "/api/x").status, 200);
    }
    let fresh = wait_lines(&path, 2);
    assert_eq!(fresh.len(), 2, "{fresh:?}");
    assert!(fresh.iter().all(|l| l.contains("\"route\":\"api\"")));
    let old = std::fs::read_to_string(&moved).unwrap();
    assert_eq!(old.lines().count(), 3);
    assert!(old.lines().all(|l| l.contains("\"route\":\"hello\"")));
}

#[test]
fn a_failing_log_device_is_counted_and_requests_keep_flowing() {
    let up = Upstream::echo();
    let gw = Gateway::start(&config(
        up.addr,
        "[access_log]\nenabled = true\npath = \"/dev/full\"\n",
    ));
    for _ in 0..50 {
        assert_eq!(get(gw.addr, "/hello").status, 200);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let s = scrape(gw.admin);
        let errors = metric(&s, "ringway_access_log_write_errors_total", &[]).unwrap_or(0.0);
        if errors >= 1.0 {
            break;
        }
        assert!(Instant::now() < deadline, "write errors not counted");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(get(gw.addr, "/hello").status, 200);
}

#[test]
fn an_unopenable_log_path_fails_the_reload_and_the_old_config_keeps_serving() {
    let up = Upstream::echo();
    let gw = Gateway::start(&config(up.addr, ""));
    let bad = "[access_log]\nenabled = true\npath = \"/nonexistent-dir/x/access.log\"\n";
    assert!(!gw.reload(&config(up.addr, bad)));
    assert!(gw.logs().contains("access_log.path"), "{}", gw.logs());
    assert_eq!(get(gw.addr, "/hello").status, 200);
}

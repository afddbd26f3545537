//! Access logs: JSON lines with the right fields for known requests, nginx `combined` format,
//! per-route off and sampling, SIGUSR1 reopen after logrotate moves the file, and a failing
//! log device that is counted instead of stalling requests.
mod common;
use common::*;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
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
    let deadline = Instant::now() + Duration::from_secs(10);
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
    // An upstream that takes 200 ms before answering, so upstream_ms has a floor.
    let echo = Upstream::echo();
    let up = Upstream::start(Arc::new(move |req, s| {
        std::thread::sleep(Duration::from_millis(200));
        let body = echo_body(req);
        let _ = write!(
            s,
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        let _ = s.write_all(&body);
        Reply::KeepAlive
    }));
    drop(echo);
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
    let upstream_ms = post["upstream_ms"].as_f64().unwrap();
    assert!(
        upstream_ms >= 150.0,
        "the upstream took 200 ms to answer: {upstream_ms}"
    );
    assert!(post["duration_ms"].as_f64().unwrap() >= upstream_ms);
    assert!(post["bytes_in"].as_u64().unwrap() > 5, "head + 5-byte body");
    // Body bytes, as nginx's `$body_bytes_sent` and as HTTP/2 counts them (the head is not
    // included; the response-bytes metric counts it).
    assert_eq!(post["bytes_out"].as_u64().unwrap(), r.body.len() as u64);
    assert_eq!(post["user_agent"], "test-agent/1.0");
    assert_eq!(post["referer"], "http://r.example/");
    assert!(post["consumer"].is_null());
    assert!(post["time"].as_str().unwrap().ends_with('Z'));

    let nf = recs.iter().find(|r| r["status"] == 404).expect("404 line");
    assert!(nf["route"].is_null());
    assert!(nf["upstream"].is_null());
    assert_eq!(nf["request_id"], miss.header("x-request-id").unwrap());
    assert_eq!(nf["bytes_out"].as_u64().unwrap(), miss.body.len() as u64);
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
    // One worker: lines reach the file in the order the requests were made.
    let gw = Gateway::start_workers(&config(up.addr, &log), 1);
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
    assert!(
        l.contains(&format!(
            "+0000] \"GET /hello?x=1 HTTP/1.1\" 200 {} ",
            r.body.len()
        )),
        "$body_bytes_sent is the body's length ({}): {l}",
        r.body.len()
    );
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
    // Back to sample = 1.0: a marker request that is logged. Once its line is in the file,
    // any line the 20 unsampled requests had produced would be there too (same core, earlier).
    assert!(gw.reload(&config(up.addr, &log)));
    assert_eq!(get(gw.addr, "/hello?marker=1").status, 200);
    let lines = wait_lines(&path, 2);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[1].contains("/hello?marker=1"), "{lines:?}");
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

/// A FIFO is a fine log target while a collector reads it. One that nobody reads would block
/// the open, and with it the reload and SIGTERM behind it: the reload fails at once instead,
/// naming the field, and the gateway keeps serving and still stops when told.
#[test]
fn a_fifo_nobody_reads_fails_the_reload_at_once_and_one_being_read_gets_the_lines() {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("log.fifo");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let up = Upstream::echo();
    let mut gw = Gateway::start(&config(up.addr, ""));
    let log = format!(
        "[access_log]\nenabled = true\npath = \"{}\"\n",
        fifo.display()
    );
    let started = Instant::now();
    assert!(!gw.reload(&config(up.addr, &log)));
    assert!(started.elapsed() < Duration::from_secs(5));
    let logs = gw.logs();
    assert!(
        logs.contains("access_log.path") && logs.contains("FIFO"),
        "{logs}"
    );
    assert_eq!(get(gw.addr, "/hello").status, 200);

    // With a reader, the same config loads and the lines arrive.
    let mut reader = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo)
        .unwrap();
    assert!(gw.reload(&config(up.addr, &log)));
    assert_eq!(get(gw.addr, "/hello").status, 200);
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !String::from_utf8_lossy(&got).contains("/hello") && Instant::now() < deadline {
        let mut buf = [0u8; 4096];
        match reader.read(&mut buf) {
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    assert!(
        String::from_utf8_lossy(&got).contains("\"path\":\"/hello\""),
        "{}",
        String::from_utf8_lossy(&got)
    );
    gw.signal(libc::SIGTERM);
    assert!(gw.wait_exit(Duration::from_secs(10)).is_some());
}

#[test]
fn the_logged_client_is_the_one_the_gateway_decided_on() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.log");
    let up = Upstream::echo();
    let log = format!(
        "[server]\ntrusted_proxies = [\"127.0.0.0/8\"]\n\n\
         [access_log]\nenabled = true\npath = \"{}\"\n",
        path.display()
    );
    let gw = Gateway::start(&config(up.addr, &log));
    // The peer (127.0.0.1) is a trusted proxy: the client is the address it forwarded.
    let r = request(
        gw.addr,
        "GET",
        "/api/a",
        &[("X-Forwarded-For", "1.2.3.4")],
        b"",
    );
    assert_eq!(r.status, 200);
    assert_eq!(
        up.last().header_all("x-forwarded-for"),
        ["1.2.3.4, 127.0.0.1"],
        "the trusted proxy's chain is kept and our peer appended"
    );
    // Also for a request no route serves (decided before routing).
    assert_eq!(
        request(
            gw.addr,
            "GET",
            "/nowhere",
            &[("X-Forwarded-For", "5.6.7.8, 127.0.0.9")],
            b""
        )
        .status,
        404
    );
    let lines = wait_lines(&path, 2);
    assert_eq!(lines.len(), 2, "{lines:?}");
    let recs: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let api = recs.iter().find(|r| r["status"] == 200).expect("200 line");
    assert_eq!(api["client"], "1.2.3.4");
    let nf = recs.iter().find(|r| r["status"] == 404).expect("404 line");
    assert_eq!(nf["client"], "5.6.7.8");
}

#[test]
fn api_keys_in_the_query_never_reach_the_log_whatever_the_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.log");
    let keys = dir.path().join("keys.toml");
    std::fs::write(&keys, "").unwrap();
    let up = Upstream::echo();
    let body = |format: &str| {
        format!(
            "[access_log]\nenabled = true\nformat = \"{format}\"\npath = \"{}\"\n\n\
             [api_keys]\nfile = \"{}\"\nhash = \"hmac-sha256\"\n\n\
             [policies.key]\napi_key = {{ query = \"api_key\" }}\n\n\
             [policies.office]\nip = {{ allow = [\"10.0.0.0/8\"] }}\n\n{}\n\
             [[routes]]\nname = \"api\"\nprefix = \"/api\"\nmethods = [\"GET\", \"POST\"]\n\
             max_body_bytes = 10\npolicies = [\"key\"]\nproxy = {{ upstream = \"app\" }}\n\n\
             [[routes]]\nname = \"office\"\nprefix = \"/office\"\npolicies = [\"office\", \"key\"]\n\
             proxy = {{ upstream = \"app\" }}\n",
            path.display(),
            keys.display(),
            upstream_toml("app", &[up.addr])
        )
    };
    let secret = "rwk_live_5ecret5ecret";
    let q = format!("x=1&api_key={secret}");
    let gw = Gateway::start_env(
        &body("json"),
        2,
        &[("RINGWAY_KEY_SECRET", "an-hmac-secret-of-32-bytes-or-so")],
    );
    let cases = |gw: &Gateway| {
        let cases = [
            ("GET", format!("/missing?{q}"), 404, &b""[..]),
            ("DELETE", format!("/api/x?{q}"), 405, &b""[..]),
            (
                "POST",
                format!("/api/x?{q}"),
                413,
                &b"far too long a body"[..],
            ),
            ("GET", format!("/office/x?{q}"), 403, &b""[..]),
            ("GET", format!("/api/x?{q}"), 401, &b""[..]),
        ];
        for (method, target, status, body) in cases {
            let r = request(gw.addr, method, &target, &[], body);
            assert_eq!(r.status, status, "{method} {target}");
        }
    };
    cases(&gw);
    let lines = wait_lines(&path, 5);
    assert_eq!(lines.len(), 5, "{lines:?}");
    for l in &lines {
        assert!(!l.contains(secret), "key logged: {l}");
        assert!(l.contains("x=1&api_key=REDACTED"), "{l}");
    }

    // The same in the combined format.
    assert!(gw.reload(&body("combined")));
    cases(&gw);
    let lines = wait_lines(&path, 10);
    assert_eq!(lines.len(), 10, "{lines:?}");
    for l in &lines[5..] {
        assert!(!l.contains(secret), "key logged: {l}");
        assert!(l.contains("?x=1&api_key=REDACTED HTTP/1.1\""), "{l}");
    }
}

/// Credentials other than API keys travel in queries too: OAuth tokens on redirects, S3 and
/// GCS presigned URLs. By default their values never reach the log (any case, percent-encoded
/// or not); `redact_query` replaces the list, and `[]` turns it off.
#[test]
fn common_credential_parameters_are_redacted_and_the_list_is_configurable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.log");
    let up = Upstream::echo();
    let log = |extra: &str| {
        config(
            up.addr,
            &format!(
                "[access_log]\nenabled = true\npath = \"{}\"\n{extra}",
                path.display()
            ),
        )
    };
    let target = "/api/cb?state=s1&Access_Token=tok-secret-1&X-Amz-Signature=sig-secret-2\
                  &client%5Fsecret=cs-secret-3&code=code-4";
    let gw = Gateway::start(&log(""));
    assert_eq!(get(gw.addr, target).status, 200);
    // A 404 is logged the same way.
    assert_eq!(
        get(gw.addr, &target.replace("/api", "/nowhere")).status,
        404
    );
    let lines = wait_lines(&path, 2);
    assert_eq!(lines.len(), 2, "{lines:?}");
    for l in &lines {
        for secret in ["tok-secret-1", "sig-secret-2", "cs-secret-3"] {
            assert!(!l.contains(secret), "{secret} logged: {l}");
        }
        assert!(
            l.contains("?state=s1&Access_Token=REDACTED&X-Amz-Signature=REDACTED")
                && l.contains("&client%5Fsecret=REDACTED&code=code-4"),
            "{l}"
        );
    }

    // A configured list replaces the built-in one.
    assert!(gw.reload(&log("redact_query = [\"code\"]\n")));
    assert_eq!(get(gw.addr, target).status, 200);
    let lines = wait_lines(&path, 3);
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(
        lines[2].contains("Access_Token=tok-secret-1") && lines[2].contains("&code=REDACTED"),
        "{}",
        lines[2]
    );

    // A bad name is refused with its field, and the old config keeps serving.
    assert!(!gw.reload(&log("redact_query = [\"a&b\"]\n")));
    assert!(
        gw.logs().contains("access_log.redact_query"),
        "{}",
        gw.logs()
    );
    assert_eq!(get(gw.addr, target).status, 200);
    let lines = wait_lines(&path, 4);
    assert!(lines[3].contains("&code=REDACTED"), "{}", lines[3]);
}

/// A response that breaks off after its head was sent cannot get an error status any more;
/// the log line says who broke it. An upstream that promises 100 bytes and closes after 10 is
/// an upstream abort; a normal response carries no `aborted` field at all.
#[test]
fn a_response_broken_off_mid_body_is_logged_with_the_side_that_broke_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.log");
    let up = Upstream::start(Arc::new(|req, s| {
        if req.target.contains("short") {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789");
            return Reply::Close;
        }
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        Reply::KeepAlive
    }));
    let log = format!(
        "[access_log]\nenabled = true\npath = \"{}\"\n",
        path.display()
    );
    let gw = Gateway::start(&config(up.addr, &log));

    let mut s = connect(gw.addr);
    s.write_all(b"GET /api/short HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let (got, closed, _) = read_until_close(&mut s, Duration::from_secs(10));
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        text.ends_with("0123456789"),
        "the client gets what arrived: {text}"
    );
    assert!(closed, "a truncated body ends the client connection");
    assert_eq!(get(gw.addr, "/api/fine").status, 200);

    // Two workers keep separate buffers, so lines are found by path, not by position.
    let lines = wait_lines(&path, 2);
    assert_eq!(lines.len(), 2, "{lines:?}");
    let parsed: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let line = |p: &str| parsed.iter().find(|v| v["path"] == p).cloned().unwrap();
    let short = line("/api/short");
    assert_eq!(short["status"], 200);
    assert_eq!(short["aborted"], "upstream", "{short}");
    let fine = line("/api/fine");
    assert!(fine.get("aborted").is_none(), "{fine}");
}

/// A relative `access_log.path` is under the config file's directory, like every other file
/// the config names, not under whatever directory the gateway happened to start in.
#[test]
fn a_relative_log_path_is_under_the_config_files_directory() {
    let up = Upstream::echo();
    let name = format!("relative-access-{}.log", std::process::id());
    let log = format!("[access_log]\nenabled = true\npath = \"{name}\"\n");
    let gw = Gateway::start(&config(up.addr, &log));
    assert_eq!(get(gw.addr, "/hello").status, 200);
    let beside_config = gw.config_path.parent().unwrap().join(&name);
    let lines = wait_lines(&beside_config, 1);
    let cwd = std::env::current_dir().unwrap().join(&name);
    let strayed = cwd.exists();
    let _ = std::fs::remove_file(&cwd);
    assert!(!strayed, "the log went to the working directory: {cwd:?}");
    assert!(
        lines.first().is_some_and(|l| l.contains("\"/hello\"")),
        "{lines:?}"
    );
}

/// `bytes_out` is body bytes whatever came before the body: an interim `100 Continue` is not
/// body, and neither is the head of a 101 (what the tunnel carries afterwards is not in the
/// request's line).
#[test]
fn bytes_out_leaves_out_interim_and_upgrade_heads() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.log");
    let up = Upstream::start(Arc::new(|req, s| {
        if req.header("upgrade").is_some() {
            let _ = s.write_all(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
            );
            return Reply::Close;
        }
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfive!");
        Reply::KeepAlive
    }));
    let log = format!(
        "[access_log]\nenabled = true\npath = \"{}\"\n",
        path.display()
    );
    let gw = Gateway::start_workers(&config(up.addr, &log), 1);
    // Expect: 100-continue, then the body once the interim answer came.
    let mut c = Conn::open(gw.addr);
    c.send(b"POST /api/c HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
    let mut interim = Vec::new();
    let mut byte = [0u8; 1];
    while !interim.ends_with(b"\r\n\r\n") {
        assert_eq!(c.stream.read(&mut byte).unwrap(), 1, "EOF before the 100");
        interim.push(byte[0]);
    }
    assert_eq!(interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    c.send(b"hello");
    let r = c.read_response(false).expect("response");
    assert_eq!((r.status, r.body.len()), (200, 5));
    // An upgrade: the 101 head reaches the client, no body.
    let mut w = Conn::open(gw.addr);
    w.send(
        b"GET /api/ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    );
    let r = w.read_response(true).expect("101");
    assert_eq!(r.status, 101);
    drop(w);
    let lines = wait_lines(&path, 2);
    let recs: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let post = recs
        .iter()
        .find(|v| v["method"] == "POST")
        .expect("POST line");
    assert_eq!(post["bytes_out"], 5, "{post}");
    let ws = recs.iter().find(|v| v["status"] == 101).expect("101 line");
    assert_eq!(ws["bytes_out"], 0, "{ws}");
}

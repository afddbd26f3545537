//! End-to-end checks of the load tool itself: the real `rwload` binary against its own
//! upstream (and a few hand-written misbehaving servers) on ephemeral loopback ports. Every
//! child process is killed on drop and every run is bounded in time.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_rwload");

/// A running `rwload upstream`, killed on drop.
struct Upstream {
    child: Child,
    port: u16,
}

impl Upstream {
    fn start(extra: &[&str]) -> Upstream {
        let mut child = Command::new(BIN)
            .args(["upstream", "--listen", "127.0.0.1:0", "--duration", "60s"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn rwload upstream");
        let mut line = String::new();
        let stdout = child.stdout.as_mut().expect("stdout");
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read listening line");
        let port = line
            .trim()
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
        Upstream { child, port }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Requests served so far, from `GET /__count`.
    fn count(&self) -> u64 {
        let body = http_get(self.port, "/__count");
        let v: Value = serde_json::from_str(body.trim()).expect("count json");
        v["requests"].as_u64().expect("requests field")
    }

    /// SIGTERM, then the count it prints on stdout as it exits.
    fn stop(mut self) -> u64 {
        // SAFETY: plain kill(2) on the pid of a child we spawned and have not reaped.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let mut out = String::new();
        if let Some(mut s) = self.child.stdout.take() {
            s.read_to_string(&mut out).expect("read upstream stdout");
        }
        let status = wait_bounded(&mut self.child, Duration::from_secs(5));
        assert!(status.success(), "upstream exit {status:?}");
        let v: Value = serde_json::from_str(out.trim()).expect("final count json");
        v["requests"].as_u64().expect("requests field")
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_bounded(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            return s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("process did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Runs `rwload run ARGS --json -q`, bounded by `limit`; returns the parsed report.
fn run_json(args: &[&str], limit: Duration) -> Value {
    let mut child = Command::new(BIN)
        .arg("run")
        .args(args)
        .args(["--json", "-q"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn rwload run");
    let started = Instant::now();
    let mut stdout = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let status = wait_bounded(&mut child, limit);
    let out = reader.join().expect("reader");
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    assert!(status.success(), "rwload run failed: {status:?}\n{err}");
    assert!(started.elapsed() < limit);
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("bad JSON ({e}): {out:?}\n{err}"))
}

/// One GET over a fresh connection; returns the body (the response must carry
/// Content-Length).
fn http_get(port: u16, path: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).expect("read response");
    let (_, body) = resp.split_once("\r\n\r\n").expect("head/body");
    body.to_string()
}

fn u(v: &Value, path: &[&str]) -> u64 {
    let mut x = v;
    for p in path {
        x = &x[*p];
    }
    x.as_u64()
        .unwrap_or_else(|| panic!("{path:?} missing in {v}"))
}

#[test]
fn exact_request_count_matches_the_upstream() {
    let up = Upstream::start(&["--threads", "2"]);
    let url = up.url("/");
    let r = run_json(
        &["--url", &url, "-n", "5000", "-c", "9", "-t", "2"],
        Duration::from_secs(10),
    );
    assert_eq!(u(&r, &["requests"]), 5000);
    assert_eq!(u(&r, &["status", "200"]), 5000);
    for kind in ["connect", "timeout", "parse", "status_4xx", "status_5xx"] {
        assert_eq!(u(&r, &["errors", kind]), 0, "{kind}");
    }
    assert_eq!(up.count(), 5000);
    // One more request (counted by the upstream) to learn the response size.
    assert_eq!(u(&r, &["bytes_read"]), 5000 * http_get_len(&up));
    assert_eq!(up.stop(), 5001);
}

/// Length of one response of the upstream (head + body), for byte accounting.
fn http_get_len(up: &Upstream) -> u64 {
    let mut s = TcpStream::connect(("127.0.0.1", up.port)).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).unwrap();
    // The close variant carries one more header than the keep-alive responses measured.
    (resp.len() - "Connection: close\r\n".len()) as u64
}

#[test]
fn post_bodies_are_sent_and_counted() {
    let up = Upstream::start(&["--body-size", "1KiB"]);
    let url = up.url("/upload");
    let r = run_json(
        &[
            "--url",
            &url,
            "-n",
            "300",
            "-c",
            "4",
            "-m",
            "POST",
            "--body-size",
            "1000",
        ],
        Duration::from_secs(10),
    );
    assert_eq!(u(&r, &["requests"]), 300);
    assert_eq!(u(&r, &["errors", "parse"]), 0);
    assert!(u(&r, &["bytes_written"]) > 300 * 1000);
    assert!(u(&r, &["bytes_read"]) > 300 * 1024);
    assert_eq!(up.count(), 300);
}

#[test]
fn open_loop_sends_at_the_requested_rate() {
    let up = Upstream::start(&[]);
    let url = up.url("/");
    let r = run_json(
        &[
            "--url", &url, "--rate", "200", "-d", "2s", "--warmup", "500ms", "-c", "10",
        ],
        Duration::from_secs(8),
    );
    let n = u(&r, &["requests"]);
    // 200 req/s for 2 s is 400. Open loop never sends ahead of its schedule, so the upper
    // bound is exact (+5 %); a loaded machine can only make it fall behind, so the lower bound
    // is 5x below nominal (it still proves the run was paced at all).
    assert!(
        (80..=420).contains(&n),
        "sent {n}, expected 400 (at most +5 %)"
    );
    assert_eq!(r["mode"], "open");
    // Warmup traffic is not in the byte counts either.
    assert_eq!(u(&r, &["bytes_read"]), n * http_get_len(&up));
}

#[test]
fn open_loop_latency_includes_queueing() {
    // 4 connections to a 50 ms upstream carry at most 80 req/s; ask for 200 req/s.
    let up = Upstream::start(&["--delay", "50ms"]);
    let url = up.url("/");
    let r = run_json(
        &[
            "--url", &url, "--rate", "200", "-c", "4", "-d", "2s", "--warmup", "0s",
        ],
        Duration::from_secs(8),
    );
    let p50 = u(&r, &["latency_us", "p50"]);
    let p99 = u(&r, &["latency_us", "p99"]);
    // Request k waits behind k-1 others: latency grows through the run to ~1.2 s.
    assert!(
        p99 > 500_000,
        "p99 {p99}us should show the queue (delay is 50ms)"
    );
    assert!(p50 > 200_000, "p50 {p50}us");
    // The same server in closed loop: every request takes just the delay.
    let r = run_json(
        &["--url", &url, "-c", "4", "-d", "1s", "--warmup", "0s"],
        Duration::from_secs(6),
    );
    let p99 = u(&r, &["latency_us", "p99"]);
    // Nominal 50 ms. The upper bound is 5x nominal (load only adds latency) and still far
    // below the > 500 ms the open-loop queue showed above.
    assert!(
        (50_000..250_000).contains(&p99),
        "closed-loop p99 {p99}us (delay is 50ms)"
    );
}

#[test]
fn closed_port_reports_connect_errors() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}/");
    let r = run_json(
        &["--url", &url, "-d", "1s", "--warmup", "0s", "-c", "3"],
        Duration::from_secs(5),
    );
    assert_eq!(u(&r, &["requests"]), 0);
    assert!(u(&r, &["errors", "connect"]) > 0);
    // A request count that can never be reached still ends at the --duration cap.
    let r = run_json(
        &["--url", &url, "-n", "10", "-d", "1s", "-c", "2"],
        Duration::from_secs(5),
    );
    assert_eq!(u(&r, &["requests"]), 0);
    assert!(u(&r, &["errors", "connect"]) > 0);
}

#[test]
fn slow_responses_are_timeouts() {
    let up = Upstream::start(&["--delay", "2s"]);
    let url = up.url("/");
    let r = run_json(
        &[
            "--url",
            &url,
            "-c",
            "2",
            "-d",
            "1s",
            "--warmup",
            "0s",
            "--timeout",
            "100ms",
        ],
        Duration::from_secs(5),
    );
    assert_eq!(u(&r, &["requests"]), 0);
    let timeouts = u(&r, &["errors", "timeout"]);
    // Each connection times out every ~100 ms and reconnects.
    assert!((8..=25).contains(&timeouts), "timeouts {timeouts}");
}

/// A hand-written server: answers each request on a connection with `responses[i % len]`,
/// and closes the connection after any response whose text contains "close".
fn scripted_server(responses: Vec<&'static str>) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut i = 0usize;
        for conn in l.incoming() {
            let Ok(mut conn) = conn else { return };
            let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
            let mut buf = [0u8; 4096];
            loop {
                // Requests are small GETs: one read holds one whole request.
                match conn.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                let resp = responses[i % responses.len()];
                i += 1;
                if conn.write_all(resp.as_bytes()).is_err() {
                    break;
                }
                if resp.contains("close") {
                    break;
                }
            }
        }
    });
    port
}

#[test]
fn chunked_and_close_delimited_responses_are_framed() {
    let port = scripted_server(vec![
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n6\r\n world\r\n0\r\nX-T: 1\r\n\r\n",
        "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 404 Not Found\r\nContent-Length: 3\r\n\r\nnop",
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
        "HTTP/1.1 503 Busy\r\n\r\nclose-delimited body",
    ]);
    let url = format!("http://127.0.0.1:{port}/");
    let r = run_json(
        &["--url", &url, "-n", "40", "-c", "1"],
        Duration::from_secs(5),
    );
    assert_eq!(u(&r, &["requests"]), 40);
    assert_eq!(u(&r, &["status", "200"]), 20);
    assert_eq!(u(&r, &["status", "404"]), 10);
    assert_eq!(u(&r, &["errors", "status_4xx"]), 10);
    assert_eq!(u(&r, &["errors", "status_5xx"]), 10);
    assert_eq!(u(&r, &["errors", "parse"]), 0);
    // Two closes per cycle of four requests (explicit close, close-delimited body).
    assert!(u(&r, &["reconnects"]) >= 19);
}

#[test]
fn broken_responses_are_parse_errors_not_panics() {
    let port = scripted_server(vec![
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
        "HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\nhello",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        "NOT HTTP AT ALL\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 100\r\nConnection: close\r\n\r\nshort",
    ]);
    let url = format!("http://127.0.0.1:{port}/");
    let r = run_json(
        &["--url", &url, "-n", "50", "-c", "1"],
        Duration::from_secs(5),
    );
    assert_eq!(u(&r, &["requests"]), 10);
    assert_eq!(u(&r, &["errors", "parse"]), 40);
}

#[test]
fn upstream_handles_pipelined_and_chunked_requests() {
    let up = Upstream::start(&["--body-size", "3"]);
    let mut s = TcpStream::connect(("127.0.0.1", up.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    // Three requests in one write: a GET, a chunked POST, a Content-Length POST that closes.
    s.write_all(
        b"GET /a HTTP/1.1\r\nHost: t\r\n\r\n\
          POST /b HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n0\r\n\r\n\
          POST /c HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nConnection: close\r\n\r\nxy",
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    assert_eq!(resp.matches("HTTP/1.1 200 OK\r\n").count(), 3, "{resp}");
    assert!(resp.ends_with("Connection: close\r\n\r\naaa"), "{resp}");
    assert_eq!(up.count(), 3);
    // A malformed request gets 400 and the connection closes.
    let mut s = TcpStream::connect(("127.0.0.1", up.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n")
        .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    assert!(resp.starts_with("HTTP/1.1 400 "), "{resp}");
}

//! Retries as a client and the upstreams see them: a route's retry policy moves a failed
//! request (refused connection, reset before the head, a 503, a per-try timeout) to another
//! target; POST is retried only when the route opts in and never with a streamed body; the
//! attempts cap, the backoff and the per-upstream retry budget hold; `x-ringway-attempts`
//! reaches the upstream and `attempts` the access log.
mod common;
use common::faults::{Fault, FaultyUpstream};
use common::*;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// An upstream section plus one route `/` to it with the given `[routes.proxy.retry]` body
/// (`None`: no retry table).
fn config(upstream: &str, retry: Option<&str>) -> String {
    let retry = retry.map_or(String::new(), |r| format!("[routes.proxy.retry]\n{r}\n"));
    format!(
        "{upstream}\n[[routes]]\nname = \"r\"\nprefix = \"/\"\n[routes.proxy]\nupstream = \"api\"\n{retry}"
    )
}

/// An upstream that records when each request came and its `x-ringway-attempts`, and
/// answers `status` (after `delay_ms`).
struct Recorder {
    up: Upstream,
    seen: Arc<Mutex<Vec<(Instant, String)>>>,
    status: Arc<AtomicU16>,
}

impl Recorder {
    fn start(status: u16, delay_ms: u64) -> Recorder {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let st = Arc::new(AtomicU16::new(status));
        let (s2, st2) = (seen.clone(), st.clone());
        let up = Upstream::start(Arc::new(move |req, s| {
            let n = req.header("x-ringway-attempts").unwrap_or("-").to_string();
            s2.lock().unwrap().push((Instant::now(), n));
            thread::sleep(Duration::from_millis(delay_ms));
            let code = st2.load(Ordering::SeqCst);
            let body = format!("status {code}");
            let _ = write!(
                s,
                "HTTP/1.1 {code} X\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            Reply::KeepAlive
        }));
        Recorder {
            up,
            seen,
            status: st,
        }
    }

    fn attempts(&self) -> Vec<String> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .map(|s| s.1.clone())
            .collect()
    }

    fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

#[test]
fn a_reset_or_a_503_moves_to_another_target_and_the_upstream_sees_the_attempt() {
    let bad = FaultyUpstream::start("bad");
    let good = FaultyUpstream::start("good");
    bad.set(Fault::ResetBeforeHead);
    let up = upstream_toml("api", &[bad.addr, good.addr]);
    let gw = Gateway::start_workers(
        &config(
            &up,
            Some("attempts = 2\non = [\"reset\", \"503\"]\nbackoff_base = \"1ms\""),
        ),
        1,
    );
    for fault in [Fault::ResetBeforeHead, Fault::Status(503)] {
        bad.set(fault);
        let before = bad.count();
        for i in 0..8 {
            let r = get(gw.addr, &format!("/x{i}"));
            assert_eq!(r.status, 200, "{fault:?}: {}", r.text());
            assert_eq!(r.header("x-upstream"), Some("good"), "{fault:?}");
        }
        assert!(bad.count() > before, "{fault:?}: the bad target was tried");
    }
    // The upstream sees which attempt it serves: the bad target only first attempts, the
    // good one first attempts and the retries of what the bad one failed.
    let on = |u: &FaultyUpstream, v: &str| {
        u.requests()
            .iter()
            .filter(|r| r.header("x-ringway-attempts") == Some(v))
            .count()
    };
    assert_eq!(on(&bad, "1"), bad.count(), "{:?}", bad.requests());
    assert_eq!(
        on(&good, "2"),
        bad.count(),
        "every failure was retried once"
    );
    assert_eq!(on(&good, "1") + on(&good, "2"), good.count());
}

#[test]
fn a_refused_connection_is_retried_on_another_target() {
    let bad = FaultyUpstream::start("bad");
    let good = FaultyUpstream::start("good");
    bad.set(Fault::Refuse);
    thread::sleep(Duration::from_millis(50));
    // A 1 ms back-off: the refusing target keeps being tried.
    let up = format!(
        "{}backoff = \"1ms\"\n",
        upstream_toml("api", &[bad.addr, good.addr])
    );
    let gw = Gateway::start_workers(&config(&up, Some("on = [\"connect-failure\"]")), 1);
    for i in 0..8 {
        let r = get(gw.addr, &format!("/c{i}"));
        assert_eq!(r.status, 200, "{}", r.text());
        thread::sleep(Duration::from_millis(3));
    }
    let retried = good
        .requests()
        .iter()
        .filter(|r| r.header("x-ringway-attempts") == Some("2"))
        .count();
    assert!(retried >= 1, "some requests reached good as a retry");
    assert_eq!(bad.count(), 0);
}

#[test]
fn post_is_retried_only_when_the_route_opts_in() {
    let u = Recorder::start(503, 0);
    let up = upstream_toml("api", &[u.up.addr]);
    let body = format!(
        "{up}\n[[routes]]\nname = \"safe\"\nprefix = \"/safe\"\n[routes.proxy]\nupstream = \"api\"\n\
         [routes.proxy.retry]\non = [\"503\"]\nbackoff_base = \"1ms\"\n\
         [[routes]]\nname = \"all\"\nprefix = \"/all\"\n[routes.proxy]\nupstream = \"api\"\n\
         [routes.proxy.retry]\non = [\"503\"]\nmethods = \"all\"\nbackoff_base = \"1ms\"\n"
    );
    let gw = Gateway::start(&body);
    let r = request(gw.addr, "POST", "/safe", &[], b"payload");
    assert_eq!(r.status, 503);
    assert_eq!(u.count(), 1, "POST is not retried by default");
    // The same request on the route that opts in: retried (one target, so the same one);
    // the last attempt's response goes to the client as it is.
    let r = request(gw.addr, "POST", "/all", &[], b"payload");
    assert_eq!(r.status, 503);
    assert_eq!(r.text(), "status 503", "the upstream's own response");
    assert_eq!(u.count(), 3);
    let r = get(gw.addr, "/safe");
    assert_eq!(r.status, 503);
    assert_eq!(u.count(), 5, "GET is idempotent");
    assert_eq!(u.attempts(), ["1", "1", "2", "1", "2"]);
    // Once the upstream recovers, one attempt does.
    u.status.store(200, Ordering::SeqCst);
    assert_eq!(get(gw.addr, "/safe").status, 200);
    assert_eq!(u.count(), 6);
}

#[test]
fn the_attempts_cap_holds_and_backoff_spaces_the_attempts() {
    let u = Recorder::start(503, 0);
    let up = upstream_toml("api", &[u.up.addr]);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let body = format!(
        "{}\n[access_log]\nenabled = true\npath = \"{}\"\n",
        config(
            &up,
            Some("attempts = 4\non = [\"5xx\"]\nbackoff_base = \"80ms\"\nbackoff_max = \"80ms\"")
        ),
        log.display()
    );
    let gw = Gateway::start(&body);
    let rounds = 6;
    for _ in 0..rounds {
        let r = get(gw.addr, "/");
        assert_eq!(r.status, 503);
    }
    assert_eq!(u.count(), 4 * rounds, "exactly `attempts` per request");
    let seen = u.seen.lock().unwrap().clone();
    let mut gaps = Vec::new();
    for round in seen.chunks(4) {
        let numbers: Vec<&str> = round.iter().map(|s| s.1.as_str()).collect();
        assert_eq!(numbers, ["1", "2", "3", "4"]);
        for w in round.windows(2) {
            gaps.push(w[1].0 - w[0].0);
        }
    }
    // Full jitter: every wait is within 0..=80 ms, and they average around 40 ms.
    let max = gaps.iter().max().copied().unwrap_or_default();
    let mean = gaps.iter().sum::<Duration>() / gaps.len() as u32;
    assert!(max < Duration::from_millis(150), "max gap {max:?}");
    assert!(
        mean > Duration::from_millis(10) && mean < Duration::from_millis(75),
        "mean gap {mean:?} ({gaps:?})"
    );
    // The access log records the attempts.
    let deadline = Instant::now() + Duration::from_secs(10);
    let text = loop {
        let t = std::fs::read_to_string(&log).unwrap_or_default();
        if t.lines().count() >= rounds || Instant::now() > deadline {
            break t;
        }
        thread::sleep(Duration::from_millis(20));
    };
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["attempts"], 4, "{line}");
    }
}

#[test]
fn a_per_try_timeout_moves_on_long_before_the_response_timeout() {
    let hang = FaultyUpstream::start("hang");
    let good = FaultyUpstream::start("good");
    hang.set(Fault::Hang);
    let up = format!(
        "{}response_timeout = \"10s\"\n",
        upstream_toml("api", &[hang.addr, good.addr])
    );
    let gw = Gateway::start_workers(
        &config(&up, Some("on = [\"timeout\"]\nper_try_timeout = \"300ms\"")),
        1,
    );
    for i in 0..4 {
        let t = Instant::now();
        let r = get(gw.addr, &format!("/t{i}"));
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "answered within about the per-try timeout: {:?}",
            t.elapsed()
        );
    }
    assert!(hang.count() >= 1, "the hanging target was tried");
    hang.set(Fault::Ok);
}

#[test]
fn without_a_policy_nothing_is_retried_and_the_attempt_is_one() {
    let u = Recorder::start(503, 0);
    let gw = Gateway::start(&config(&upstream_toml("api", &[u.up.addr]), None));
    let r = request(gw.addr, "GET", "/", &[("x-ringway-attempts", "7")], b"");
    assert_eq!(r.status, 503);
    assert_eq!(u.attempts(), ["1"], "a client's copy is replaced");
}

#[test]
fn a_streamed_body_is_never_resent() {
    // An upstream that reads part of the request body, then resets the connection.
    let accepted = Arc::new(AtomicUsize::new(0));
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    {
        let (acc, st) = (accepted.clone(), stop.clone());
        l.set_nonblocking(true).unwrap();
        thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                let Ok((mut s, _)) = l.accept() else {
                    thread::sleep(Duration::from_millis(2));
                    continue;
                };
                acc.fetch_add(1, Ordering::SeqCst);
                s.set_nonblocking(false).unwrap();
                // A short read timeout: a small request is all there after one read.
                s.set_read_timeout(Some(Duration::from_millis(200)))
                    .unwrap();
                let mut got = 0;
                let mut buf = [0u8; 16 * 1024];
                while got < 64 * 1024 {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => got += n,
                    }
                }
                common::faults::reset(&s);
            }
        });
    }
    let up = upstream_toml("api", &[addr]);
    let gw = Gateway::start(&config(
        &up,
        Some("attempts = 3\non = [\"reset\"]\nmethods = \"all\"\nbackoff_base = \"1ms\""),
    ));
    // 1 MiB, chunked, sent in pieces: it streams through, nothing holds it for a resend.
    let mut c = Conn::open(gw.addr);
    c.send(b"POST /upload HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n");
    let piece = vec![b'x'; 32 * 1024];
    for _ in 0..32 {
        let mut chunk = format!("{:x}\r\n", piece.len()).into_bytes();
        chunk.extend_from_slice(&piece);
        chunk.extend_from_slice(b"\r\n");
        if c.stream.write_all(&chunk).is_err() {
            break;
        }
    }
    let _ = c.stream.write_all(b"0\r\n\r\n");
    let r = c.read_response(false).expect("a response");
    assert_eq!(r.status, 502, "{}", r.text());
    thread::sleep(Duration::from_millis(200));
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "the streamed body was not resent"
    );
    // The same route retries a small body that arrived whole with its head.
    let r = request(gw.addr, "POST", "/small", &[], b"small body");
    assert_eq!(r.status, 502);
    thread::sleep(Duration::from_millis(100));
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        4,
        "a buffered body is resent"
    );
    stop.store(true, Ordering::Relaxed);
}

/// Runs `clients` threads sending `each` GETs; returns the statuses.
fn load(addr: SocketAddr, clients: usize, each: usize) -> Vec<u16> {
    let handles: Vec<_> = (0..clients)
        .map(|_| {
            thread::spawn(move || {
                (0..each)
                    .map(|i| get(addr, &format!("/l{i}")).status)
                    .collect::<Vec<u16>>()
            })
        })
        .collect();
    handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect()
}

#[test]
fn an_empty_budget_allows_no_retry_and_counts_the_refusals() {
    let u = Recorder::start(503, 0);
    let up = format!(
        "{}[upstreams.api.retry_budget]\npercent = 0\nmin_concurrent = 0\n",
        upstream_toml("api", &[u.up.addr])
    );
    let gw = Gateway::start(&config(&up, Some("attempts = 5\non = [\"503\"]")));
    for _ in 0..5 {
        assert_eq!(get(gw.addr, "/").status, 503);
    }
    assert_eq!(u.count(), 5, "no retry went out");
    let s = scrape(gw.admin);
    let m = |o| {
        metric(
            &s,
            "ringway_upstream_retries_total",
            &[("upstream", "api"), ("outcome", o)],
        )
    };
    assert_eq!(m("budget_exhausted"), Some(5.0));
    assert_eq!(m("retried"), Some(0.0));
}

#[test]
fn when_every_target_fails_retries_stay_within_the_budget() {
    // Two targets that answer 503 after 30 ms, 16 clients at once, 5 attempts allowed: without
    // a budget every request would be sent 5 times. The budget (20% of the active requests,
    // at least 1) keeps retries in flight to about 3 next to 16 requests.
    let a = Recorder::start(503, 30);
    let b = Recorder::start(503, 30);
    let up = format!(
        "{}[upstreams.api.retry_budget]\npercent = 20\nmin_concurrent = 1\n",
        upstream_toml("api", &[a.up.addr, b.up.addr])
    );
    let gw = Gateway::start(&config(
        &up,
        Some("attempts = 5\non = [\"503\"]\nbackoff_base = \"1ms\""),
    ));
    let (clients, each) = (16, 8);
    let statuses = load(gw.addr, clients, each);
    assert!(statuses.iter().all(|&s| s == 503), "{statuses:?}");
    let sent = (clients * each) as f64;
    let upstream = (a.count() + b.count()) as f64;
    assert!(
        upstream <= sent * 1.6,
        "{upstream} upstream requests for {sent} client requests"
    );
    let s = scrape(gw.admin);
    let m = |o| {
        metric(
            &s,
            "ringway_upstream_retries_total",
            &[("upstream", "api"), ("outcome", o)],
        )
    };
    let retried = m("retried").unwrap_or(0.0);
    assert_eq!(retried, upstream - sent, "every retry counted");
    assert!(m("budget_exhausted").unwrap_or(0.0) > 0.0);
    assert_eq!(
        metric(
            &s,
            "ringway_upstream_load",
            &[("upstream", "api"), ("kind", "retries")]
        ),
        Some(0.0),
        "no retry slot leaked"
    );
}

#[test]
fn config_errors_name_the_file_line_and_field() {
    let text = "[[listeners]]\naddress = \"127.0.0.1:1\"\n\
        [upstreams.api]\ntargets = [{ address = \"127.0.0.1:9\" }]\n\
        [[routes]]\nname = \"r\"\nprefix = \"/\"\n[routes.proxy]\nupstream = \"api\"\n\
        [routes.proxy.retry]\non = [\"reset\", \"teapot\"]\n";
    let (code, out, err) = check_config(text);
    assert_ne!(code, 0);
    let all = format!("{out}{err}");
    assert!(all.contains(":11:"), "{all}");
    assert!(all.contains("routes[0].proxy.retry.on[1]"), "{all}");
    assert!(all.contains("teapot"), "{all}");
}

/// A `Content-Length` body of up to 64 KiB sent with its head is resent by the retry policy,
/// as documented. Before, only what the first read took (8 KiB) counted as "arrived", so a
/// 9 KB PUT that met a 503 got the 503: the body is now gathered (as nginx buffers request
/// bodies) before the upstream is asked. The retried copy is byte for byte the client's.
#[test]
fn a_body_up_to_64_kib_sent_with_its_head_is_resent() {
    let bad = FaultyUpstream::start("bad");
    bad.set(Fault::Status(503));
    let good = Upstream::echo();
    let up = upstream_toml("api", &[bad.addr, good.addr]);
    let gw = Gateway::start_workers(
        &config(
            &up,
            Some("attempts = 2\non = [\"503\"]\nbackoff_base = \"1ms\""),
        ),
        1,
    );
    for size in [9_000usize, 20_000, 65_536] {
        let body: Vec<u8> = (0..size).map(|i| b'a' + (i % 26) as u8).collect();
        let before = bad.count();
        // Two requests: round robin sends one of them to the failing target first.
        for _ in 0..2 {
            let r = request(gw.addr, "PUT", "/doc", &[], &body);
            assert_eq!(r.status, 200, "{size} bytes: {}", r.text());
            let v = r.json();
            assert_eq!(v["body_len"], size, "{size}");
            assert_eq!(v["body"].as_str().unwrap().as_bytes(), &body[..], "{size}");
        }
        assert!(bad.count() > before, "{size}: the failing target was tried");
    }
}

//! Circuit breaking as a client sees it: past an upstream's `max_requests`,
//! `max_connections` or `max_pending`, the gateway answers 503 at once with a problem body
//! naming the limit and counts it in `ringway_upstream_overflow_total`; nothing queues, and
//! once the load is gone the counters are back to zero and requests pass again.
mod common;
use common::faults::{Fault, FaultyUpstream};
use common::*;

use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

fn config(upstream: &str) -> String {
    format!("{upstream}\n[[routes]]\nname = \"r\"\nprefix = \"/\"\n[routes.proxy]\nupstream = \"api\"\n")
}

/// Starts `n` GETs in threads; returns their handles (status, elapsed).
fn spawn_gets(addr: SocketAddr, n: usize) -> Vec<thread::JoinHandle<(u16, Duration)>> {
    (0..n)
        .map(|i| {
            thread::spawn(move || {
                let t = Instant::now();
                (get(addr, &format!("/slow{i}")).status, t.elapsed())
            })
        })
        .collect()
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(10));
    }
}

/// Asserts a fast 503 problem body naming `limit`.
fn assert_overflow(r: &Response, took: Duration, limit: &str) {
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(
        took < Duration::from_millis(500),
        "answered at once: {took:?}"
    );
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
    let v = r.json();
    assert_eq!(v["code"], "upstream_overflow");
    assert!(
        v["detail"].as_str().unwrap_or("").contains(limit),
        "{}",
        r.text()
    );
}

fn load(gw: &Gateway, kind: &str) -> Option<f64> {
    metric(
        &scrape(gw.admin),
        "ringway_upstream_load",
        &[("upstream", "api"), ("kind", kind)],
    )
}

#[test]
fn past_max_requests_the_next_request_gets_503_at_once_and_the_count_recovers() {
    let slow = FaultyUpstream::start("slow");
    slow.set(Fault::SlowFirstByte(Duration::from_millis(1500)));
    let up = format!(
        "{}[upstreams.api.circuit_breaker]\nmax_requests = 2\n",
        upstream_toml("api", &[slow.addr])
    );
    let gw = Gateway::start(&config(&up));
    let busy = spawn_gets(gw.addr, 2);
    wait_until("two requests at the upstream", || slow.count() >= 2);
    let t = Instant::now();
    let r = get(gw.addr, "/third");
    assert_overflow(&r, t.elapsed(), "max_requests");
    assert_eq!(
        slow.count(),
        2,
        "the refused request never reached the upstream"
    );
    for h in busy {
        assert_eq!(h.join().unwrap().0, 200);
    }
    let s = scrape(gw.admin);
    let over = |l| {
        metric(
            &s,
            "ringway_upstream_overflow_total",
            &[("upstream", "api"), ("limit", l)],
        )
    };
    assert_eq!(over("requests"), Some(1.0));
    assert_eq!(over("connections"), Some(0.0));
    // No leak: the count is back to zero and requests pass again (also after an abuse case:
    // clients that hang up while their request is in flight).
    slow.set(Fault::Ok);
    assert_eq!(get(gw.addr, "/after").status, 200);
    slow.set(Fault::SlowFirstByte(Duration::from_millis(300)));
    for _ in 0..4 {
        let mut c = TcpStream::connect(gw.addr).unwrap();
        use std::io::Write;
        c.write_all(b"GET /gone HTTP/1.1\r\nHost: test\r\n\r\n")
            .unwrap();
        drop(c);
    }
    thread::sleep(Duration::from_millis(600));
    wait_until("the in-flight count back to 0", || {
        load(&gw, "requests") == Some(0.0)
    });
    slow.set(Fault::Ok);
    let statuses: Vec<u16> = spawn_gets(gw.addr, 2)
        .into_iter()
        .map(|h| h.join().unwrap().0)
        .collect();
    assert_eq!(statuses, [200, 200]);
}

#[test]
fn past_max_connections_a_request_that_needs_a_new_connection_gets_503() {
    let slow = FaultyUpstream::start("slow");
    slow.set(Fault::SlowFirstByte(Duration::from_millis(1000)));
    let up = format!(
        "{}[upstreams.api.circuit_breaker]\nmax_connections = 1\n",
        upstream_toml("api", &[slow.addr])
    );
    // One worker: an idle pooled connection counts too, and sits in one worker's pool.
    let gw = Gateway::start_workers(&config(&up), 1);
    let busy = spawn_gets(gw.addr, 1);
    wait_until("the first request at the upstream", || slow.count() >= 1);
    let t = Instant::now();
    let r = get(gw.addr, "/second");
    assert_overflow(&r, t.elapsed(), "max_connections");
    assert_eq!(busy.into_iter().next().unwrap().join().unwrap().0, 200);
    assert_eq!(slow.connections(), 1);
    // The one connection is pooled and carries the next requests.
    slow.set(Fault::Ok);
    for _ in 0..3 {
        assert_eq!(get(gw.addr, "/next").status, 200);
    }
    assert_eq!(
        load(&gw, "connections"),
        Some(1.0),
        "one open (pooled) connection"
    );
    let s = scrape(gw.admin);
    assert_eq!(
        metric(
            &s,
            "ringway_upstream_overflow_total",
            &[("upstream", "api"), ("limit", "connections")]
        ),
        Some(1.0)
    );
}

#[test]
fn past_max_pending_a_request_waiting_to_connect_gets_503() {
    // A listener that never accepts, with its accept queue filled: connecting to it hangs
    // (the kernel drops the SYNs), so the gateway's request waits in the connect phase.
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    sock.listen(0).unwrap();
    let addr: SocketAddr = sock.local_addr().unwrap().as_socket().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..8 {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            Ok(s) => fillers.push(s),
            Err(_) => break,
        }
    }
    let up = format!(
        "{}connect_timeout = \"1500ms\"\n[upstreams.api.circuit_breaker]\nmax_pending = 1\n",
        upstream_toml("api", &[addr])
    );
    let gw = Gateway::start(&config(&up));
    let waiting = spawn_gets(gw.addr, 1);
    wait_until("one request connecting", || {
        load(&gw, "pending") == Some(1.0)
    });
    let t = Instant::now();
    let r = get(gw.addr, "/second");
    assert_overflow(&r, t.elapsed(), "max_pending");
    let (status, _) = waiting.into_iter().next().unwrap().join().unwrap();
    assert_eq!(
        status, 504,
        "the waiting request ends at its connect timeout"
    );
    wait_until("no request pending", || load(&gw, "pending") == Some(0.0));
    drop(fillers);
}

#[test]
fn without_limits_nothing_is_counted() {
    let ok = FaultyUpstream::start("ok");
    let gw = Gateway::start(&config(&upstream_toml("api", &[ok.addr])));
    let busy = spawn_gets(gw.addr, 8);
    for h in busy {
        assert_eq!(h.join().unwrap().0, 200);
    }
    for kind in ["connections", "pending", "requests", "retries"] {
        assert_eq!(load(&gw, kind), Some(0.0), "{kind}");
    }
}

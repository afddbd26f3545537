//! Passive outlier ejection as a client sees it: a target that answers 5xx, resets, refuses or
//! times out in a row is ejected and traffic moves to the others; a repeat ejection lasts
//! longer; `max_ejection_percent` never lets the whole upstream go; below the panic threshold
//! the balancer spreads load over every target again. The state shows in `/upstreams` and the
//! ejection metric.
mod common;
use common::faults::{Fault, FaultyUpstream};
use common::*;

use std::net::SocketAddr;
use std::thread;
use std::time::Duration;

fn config(targets: &[SocketAddr], upstream_extra: &str, outlier: &str) -> String {
    format!(
        "{}{upstream_extra}\n[upstreams.api.outlier]\n{outlier}\n\n[[routes]]\nname = \"r\"\n\
         prefix = \"/\"\nproxy = {{ upstream = \"api\" }}\n",
        upstream_toml("api", targets)
    )
}

fn api(gw: &Gateway) -> serde_json::Value {
    common::faults::upstream_state(gw, "api")
}

fn target(gw: &Gateway, addr: SocketAddr) -> serde_json::Value {
    common::faults::target_state(gw, "api", addr)
}

fn ejected_count(gw: &Gateway) -> usize {
    api(gw)["targets"]
        .as_array()
        .map_or(0, |ts| ts.iter().filter(|t| t["ejected"] == true).count())
}

fn served_by(gw: &Gateway, n: usize) -> Vec<(u16, String)> {
    (0..n)
        .map(|_| {
            // A truncated response (reset mid-body) reads as status 0.
            let mut c = Conn::open(gw.addr);
            c.send(&build_request("GET", "/x", &[], b""));
            match c.read_response(false) {
                Ok(r) => (r.status, r.header("x-upstream").unwrap_or("").to_string()),
                Err(_) => (0, String::new()),
            }
        })
        .collect()
}

#[test]
fn consecutive_5xx_eject_a_target_and_traffic_moves() {
    let a = FaultyUpstream::start("a");
    let b = FaultyUpstream::start("b");
    let c = FaultyUpstream::start("c");
    b.set(Fault::Status(500));
    let gw = Gateway::start(&config(
        &[a.addr, b.addr, c.addr],
        "",
        "consecutive = 3\non = [\"5xx\"]\nbase_ejection_time = \"30s\"",
    ));
    let seen = served_by(&gw, 40);
    let failed = seen.iter().filter(|(s, _)| *s == 500).count();
    // Counters are shared by both workers: exactly three 5xx, then b is out.
    assert_eq!(b.count(), 3, "{seen:?}");
    assert_eq!(failed, 3);
    let t = target(&gw, b.addr);
    assert_eq!(t["ejected"], true, "{t}");
    assert!(t["ejected_for_ms"].as_u64().unwrap_or(0) > 25_000, "{t}");
    assert_eq!(t["ejections"]["5xx"], 1);
    let s = scrape(gw.admin);
    let baddr = b.addr.to_string();
    let labels = [
        ("upstream", "api"),
        ("target", baddr.as_str()),
        ("reason", "5xx"),
    ];
    assert_eq!(
        metric(&s, "ringway_upstream_ejections_total", &labels),
        Some(1.0)
    );
    let healthy = [("upstream", "api"), ("target", baddr.as_str())];
    assert_eq!(
        metric(&s, "ringway_upstream_target_healthy", &healthy),
        Some(0.0)
    );
    assert!(gw.logs().contains("ejected for"), "{}", gw.logs());
}

#[test]
fn resets_before_and_during_the_response_eject() {
    for fault in [Fault::ResetBeforeHead, Fault::ResetMidResponse] {
        let a = FaultyUpstream::start("a");
        let b = FaultyUpstream::start("b");
        b.set(fault);
        let gw = Gateway::start(&config(
            &[a.addr, b.addr],
            "",
            "consecutive = 2\non = [\"reset\"]",
        ));
        let _ = served_by(&gw, 20);
        assert_eq!(b.count(), 2, "{fault:?}");
        let t = target(&gw, b.addr);
        assert_eq!(t["ejected"], true, "{fault:?}: {t}");
        assert_eq!(t["ejections"]["reset"], 1, "{fault:?}: {t}");
        let after = served_by(&gw, 10);
        assert!(
            after.iter().all(|(s, w)| *s == 200 && w == "a"),
            "{after:?}"
        );
    }
}

#[test]
fn connect_failures_eject() {
    let a = FaultyUpstream::start("a");
    let b = FaultyUpstream::start("b");
    b.set(Fault::Refuse);
    thread::sleep(Duration::from_millis(30));
    let gw = Gateway::start(&config(
        &[a.addr, b.addr],
        "backoff = \"10ms\"",
        "consecutive = 3\non = [\"connect\"]",
    ));
    for _ in 0..40 {
        assert_eq!(get(gw.addr, "/x").status, 200, "the next target is tried");
        if target(&gw, b.addr)["ejected"] == true {
            break;
        }
        thread::sleep(Duration::from_millis(15));
    }
    let t = target(&gw, b.addr);
    assert_eq!(t["ejected"], true, "{t}");
    assert_eq!(t["ejections"]["connect"], 1, "{t}");
}

#[test]
fn timeouts_eject() {
    let a = FaultyUpstream::start("a");
    let b = FaultyUpstream::start("b");
    b.set(Fault::Hang);
    let gw = Gateway::start(&config(
        &[a.addr, b.addr],
        "response_timeout = \"150ms\"",
        "consecutive = 2\non = [\"timeout\"]",
    ));
    let seen = served_by(&gw, 12);
    let timeouts = seen.iter().filter(|(s, _)| *s == 504).count();
    assert_eq!(timeouts, 2, "{seen:?}");
    let t = target(&gw, b.addr);
    assert_eq!(t["ejections"]["timeout"], 1, "{t}");
    assert!(seen[seen.len() - 4..].iter().all(|(s, _)| *s == 200));
}

/// `grpc-timeout` is a gRPC client's own deadline. It is honoured for gRPC requests only, and
/// a timeout it alone caused is not the target's fault: a client asking for answers faster
/// than a healthy target gives them must not be able to eject it.
#[test]
fn a_clients_own_deadline_never_ejects_a_healthy_target() {
    let a = FaultyUpstream::start("a");
    let b = FaultyUpstream::start("b");
    a.set(Fault::SlowFirstByte(Duration::from_millis(100)));
    b.set(Fault::SlowFirstByte(Duration::from_millis(100)));
    let gw = Gateway::start(&config(
        &[a.addr, b.addr],
        "response_timeout = \"2s\"",
        "consecutive = 2\non = [\"timeout\"]",
    ));
    // Not a gRPC request: the header means nothing, the upstream's own timeout applies.
    for _ in 0..6 {
        let r = request(gw.addr, "GET", "/x", &[("grpc-timeout", "10m")], b"");
        assert_eq!(r.status, 200, "{}", r.text());
    }
    // A gRPC request with a 10 ms deadline: it ends early, as the client asked.
    let grpc = [
        ("content-type", "application/grpc"),
        ("grpc-timeout", "10m"),
    ];
    for _ in 0..6 {
        let r = request(gw.addr, "POST", "/x", &grpc, b"\0\0\0\0\0");
        let status = r.header("grpc-status").map(str::to_string);
        assert!(
            r.status == 504 || status.as_deref() == Some("4"),
            "{} {status:?}: {}",
            r.status,
            r.text()
        );
    }
    assert_eq!(ejected_count(&gw), 0, "{}", api(&gw));
    for t in [a.addr, b.addr] {
        let s = target(&gw, t);
        assert!(s["ejections"]["timeout"].as_u64().unwrap_or(0) == 0, "{s}");
    }
}

#[test]
fn a_repeat_ejection_lasts_longer() {
    let a = FaultyUpstream::start("a");
    let b = FaultyUpstream::start("b");
    b.set(Fault::Status(503));
    let gw = Gateway::start(&config(
        &[a.addr, b.addr],
        "",
        "consecutive = 1\nbase_ejection_time = \"300ms\"\nmax_ejection_time = \"10s\"",
    ));
    let _ = served_by(&gw, 4);
    let first = target(&gw, b.addr);
    assert_eq!(first["ejected"], true, "{first}");
    let left = first["ejected_for_ms"].as_u64().unwrap_or(0);
    assert!(left > 0 && left <= 300, "{first}");
    // Back after the ejection time, it fails again: ejected for twice as long.
    let mut second = first.clone();
    for _ in 0..100 {
        thread::sleep(Duration::from_millis(20));
        let _ = get(gw.addr, "/x");
        second = target(&gw, b.addr);
        if second["ejection_multiplier"] == 2 {
            break;
        }
    }
    assert_eq!(second["ejection_multiplier"], 2, "{second}");
    let left = second["ejected_for_ms"].as_u64().unwrap_or(0);
    assert!(left > 300 && left <= 600, "{second}");
    assert_eq!(second["ejections"]["5xx"], 2);
}

#[test]
fn max_ejection_percent_never_ejects_the_whole_upstream() {
    let ts: Vec<_> = ["a", "b", "c"]
        .iter()
        .map(|n| FaultyUpstream::start(n))
        .collect();
    for t in &ts {
        t.set(Fault::Status(500));
    }
    let addrs: Vec<_> = ts.iter().map(|t| t.addr).collect();
    let gw = Gateway::start(&config(
        &addrs,
        "panic_threshold = 0",
        "consecutive = 1\nmax_ejection_percent = 100",
    ));
    for _ in 0..30 {
        let r = get(gw.addr, "/x");
        assert_eq!(
            r.status, 500,
            "the upstream's answer still reaches the client"
        );
        assert!(ejected_count(&gw) <= 2);
    }
    assert_eq!(ejected_count(&gw), 2);
    // With the default 10 %: one of three at most.
    let gw = Gateway::start(&config(&addrs, "panic_threshold = 0", "consecutive = 1"));
    let _ = served_by(&gw, 20);
    assert_eq!(ejected_count(&gw), 1);
}

#[test]
fn below_the_panic_threshold_load_spreads_over_every_target() {
    let ts: Vec<_> = ["a", "b", "c", "d"]
        .iter()
        .map(|n| FaultyUpstream::start(n))
        .collect();
    for t in &ts[..3] {
        t.set(Fault::Status(500));
    }
    let addrs: Vec<_> = ts.iter().map(|t| t.addr).collect();
    let outlier = "consecutive = 1\nmax_ejection_percent = 100\nbase_ejection_time = \"60s\"";
    // No panic (threshold 0): once a, b and c are ejected, everything goes to d.
    let gw = Gateway::start(&config(&addrs, "panic_threshold = 0", outlier));
    let _ = served_by(&gw, 12);
    assert_eq!(ejected_count(&gw), 3);
    assert_eq!(api(&gw)["panic"], false);
    let seen = served_by(&gw, 20);
    assert!(seen.iter().all(|(_, w)| w == "d"), "{seen:?}");
    drop(gw);
    // Default threshold (50 %): one usable target of four is panic: all four take traffic.
    let gw = Gateway::start(&config(&addrs, "", outlier));
    let _ = served_by(&gw, 12);
    assert_eq!(ejected_count(&gw), 3);
    assert_eq!(api(&gw)["panic"], true);
    let seen = served_by(&gw, 40);
    for name in ["a", "b", "c", "d"] {
        assert!(seen.iter().any(|(_, w)| w == name), "{name}: {seen:?}");
    }
}

#[test]
fn outlier_config_errors_name_the_field() {
    let cases = [
        ("consecutive = 0", "outlier.consecutive"),
        ("on = [\"5xx\", \"teapot\"]", "outlier.on[1]"),
        ("on = []", "outlier.on"),
        ("base_ejection_time = \"0s\"", "outlier.base_ejection_time"),
        ("max_ejection_percent = 101", "outlier.max_ejection_percent"),
        (
            "base_ejection_time = \"10s\"\nmax_ejection_time = \"1s\"",
            "outlier.max_ejection_time",
        ),
    ];
    for (line, field) in cases {
        let text = format!(
            "[upstreams.api]\ntargets = [{{ address = \"127.0.0.1:9\" }}]\n\n\
             [upstreams.api.outlier]\n{line}\n"
        );
        let (code, _, err) = check_config(&text);
        assert_eq!(code, 1, "{line}: {err}");
        assert!(
            err.contains(&format!("upstreams.api.{field}")),
            "{line}: {err}"
        );
        assert!(
            err.contains("check.toml:5:") || err.contains("check.toml:6:"),
            "{err}"
        );
    }
    let text =
        "[upstreams.api]\ntargets = [{ address = \"127.0.0.1:9\" }]\npanic_threshold = 150\n";
    let (code, _, err) = check_config(text);
    assert_eq!(code, 1);
    assert!(
        err.contains("check.toml:3:") && err.contains("upstreams.api.panic_threshold"),
        "{err}"
    );
}

/// An h2c upstream (h2 crate on tokio) named `name`: mode 0 answers 200, 1 answers 500,
/// 2 resets every stream. Counts the requests it saw.
fn h2_upstream(
    rt: &tokio::runtime::Runtime,
    name: &'static str,
    mode: u8,
) -> (SocketAddr, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = std::sync::Arc::new(AtomicUsize::new(0));
    let count = seen.clone();
    rt.spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let Ok(mut conn) = ::h2::server::handshake(tcp).await else {
                    return;
                };
                while let Some(Ok((_req, mut respond))) = conn.accept().await {
                    seen.fetch_add(1, Ordering::SeqCst);
                    if mode == 2 {
                        respond.send_reset(::h2::Reason::INTERNAL_ERROR);
                        continue;
                    }
                    let status = if mode == 1 { 500 } else { 200 };
                    let resp = http::Response::builder()
                        .status(status)
                        .header("x-upstream", name)
                        .body(())
                        .unwrap();
                    if let Ok(mut s) = respond.send_response(resp, false) {
                        let _ = s.send_data(bytes::Bytes::from_static(b"ok"), true);
                    }
                }
            });
        }
    });
    (addr, count)
}

#[test]
fn http2_upstreams_eject_on_5xx_and_resets() {
    use std::sync::atomic::Ordering;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    for (mode, reason) in [(1u8, "5xx"), (2u8, "reset")] {
        let (a, _) = h2_upstream(&rt, "a", 0);
        let (b, b_seen) = h2_upstream(&rt, "b", mode);
        let gw = Gateway::start(&config(&[a, b], "protocol = \"http2\"", "consecutive = 2"));
        let seen = served_by(&gw, 20);
        assert_eq!(b_seen.load(Ordering::SeqCst), 2, "{reason}: {seen:?}");
        let t = target(&gw, b);
        assert_eq!(t["ejected"], true, "{reason}: {t}");
        assert_eq!(t["ejections"][reason], 1, "{reason}: {t}");
        assert!(seen[seen.len() - 5..]
            .iter()
            .all(|(s, w)| *s == 200 && w == "a"));
    }
}

#[test]
fn a_flapping_target_is_ejected_again_and_again_and_retries_hide_it_from_clients() {
    let a = FaultyUpstream::start("a");
    let b = FaultyUpstream::start("b");
    // b alternates: 250 ms healthy, 250 ms answering 500.
    b.set(Fault::Flap(Duration::from_millis(250)));
    let body = format!(
        "{}\n[upstreams.api.outlier]\nconsecutive = 2\non = [\"5xx\"]\nbase_ejection_time = \"100ms\"\n\
         max_ejection_time = \"400ms\"\nmax_ejection_percent = 50\n\n[[routes]]\nname = \"r\"\n\
         prefix = \"/\"\nproxy = {{ upstream = \"api\", retry = {{ attempts = 2, on = [\"5xx\"], \
         backoff_base = \"1ms\", backoff_max = \"2ms\" }} }}\n",
        upstream_toml("api", &[a.addr, b.addr])
    );
    let gw = Gateway::start(&body);
    let mut statuses = Vec::new();
    let mut from_b = 0;
    let until = std::time::Instant::now() + Duration::from_millis(2500);
    while std::time::Instant::now() < until {
        let r = get(gw.addr, "/x");
        from_b += usize::from(r.header("x-upstream") == Some("b"));
        statuses.push(r.status);
        thread::sleep(Duration::from_millis(5));
    }
    // Every failed attempt on b was retried on a: the clients saw only 200s.
    assert!(statuses.iter().all(|&s| s == 200), "{statuses:?}");
    let t = target(&gw, b.addr);
    let ejections = t["ejections"]["5xx"].as_u64().unwrap_or(0);
    assert!(ejections >= 2, "ejected on each bad phase, not once: {t}");
    // b came back between ejections and answered clients in its good phases.
    assert!(
        from_b >= 5,
        "b served again after its ejections: {from_b} of {}",
        statuses.len()
    );
}

/// A client that can make a target answer 500 (an application error on its own bad input)
/// could eject it with `on = ["5xx"]`. `on = ["gateway", ...]` counts only 502, 503 and 504,
/// which the upstream reports about what is behind it: the 500s eject nothing, a run of 503s
/// still does (under the reason `gateway`).
#[test]
fn gateway_errors_eject_and_application_errors_do_not() {
    let a = FaultyUpstream::start("a");
    let b = FaultyUpstream::start("b");
    b.set(Fault::Status(500));
    let gw = Gateway::start(&config(
        &[a.addr, b.addr],
        "",
        "consecutive = 3\non = [\"gateway\", \"reset\", \"connect\", \"timeout\"]\n\
         base_ejection_time = \"30s\"\nmax_ejection_percent = 50",
    ));
    let seen = served_by(&gw, 20);
    // Round robin per worker: about half went to b, far more than `consecutive`.
    let failed = seen.iter().filter(|(s, _)| *s == 500).count();
    assert!(failed >= 6, "{seen:?}");
    assert_eq!(ejected_count(&gw), 0, "500s ejected a target: {}", api(&gw));
    b.set(Fault::Status(503));
    let seen = served_by(&gw, 20);
    assert_eq!(
        seen.iter().filter(|(s, _)| *s == 503).count(),
        3,
        "{seen:?}"
    );
    let t = target(&gw, b.addr);
    assert_eq!(t["ejected"], true, "{t}");
    assert_eq!(t["ejections"]["gateway"], 1, "{t}");
}

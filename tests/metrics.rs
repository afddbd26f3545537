//! Prometheus metrics and latency stats on the admin API, scraped after known traffic that
//! spreads over both workers: exact counts per route/method/status, histogram totals, upstream
//! connection and error counters, reload counters, `/stats` percentiles, metrics off.
mod common;
use common::*;

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

fn config(up: SocketAddr, extra: &str) -> String {
    format!(
        "{extra}\n{}\n\
         [[routes]]\nname = \"api\"\nprefix = \"/api\"\nproxy = {{ upstream = \"app\" }}\n\n\
         [[routes]]\nname = \"hello\"\npath = \"/hello\"\nmethods = [\"GET\"]\nstatic = {{ body = \"hi\" }}\n",
        upstream_toml("app", &[up])
    )
}

/// Scrapes until `read` gives `want` (10 s deadline); returns the last value read.
fn wait_gauge(admin: SocketAddr, read: &dyn Fn(&[Sample]) -> f64, want: f64) -> f64 {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let v = read(&scrape(admin));
        if v == want || std::time::Instant::now() > deadline {
            return v;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Each request on its own connection, so SO_REUSEPORT spreads them over the workers.
fn fresh(addr: SocketAddr, method: &str, path: &str) -> u16 {
    request(addr, method, path, &[("Connection", "close")], b"").status
}

#[test]
fn exact_counts_per_route_method_status_across_workers() {
    let up = Upstream::echo();
    let gw = Gateway::start(&config(up.addr, ""));
    for _ in 0..30 {
        assert_eq!(fresh(gw.addr, "GET", "/api/items"), 200);
    }
    for _ in 0..7 {
        assert_eq!(
            request(
                gw.addr,
                "POST",
                "/api/items",
                &[("Connection", "close")],
                b"abc"
            )
            .status,
            200
        );
    }
    for _ in 0..5 {
        assert_eq!(fresh(gw.addr, "GET", "/hello"), 200);
    }
    for _ in 0..3 {
        assert_eq!(fresh(gw.addr, "GET", "/nope"), 404);
    }
    for _ in 0..2 {
        assert_eq!(fresh(gw.addr, "DELETE", "/hello"), 405);
    }
    // A method outside the known set is folded into _OTHER.
    assert_eq!(fresh(gw.addr, "PURGE", "/api/x"), 200);

    let s = scrape_until(
        gw.admin,
        "ringway_http_requests_total",
        &[("route", "api"), ("method", "GET"), ("status", "200")],
        30.0,
    );
    let count = |labels: &[(&str, &str)]| metric(&s, "ringway_http_requests_total", labels);
    assert_eq!(
        count(&[("route", "api"), ("method", "GET"), ("status", "200")]),
        Some(30.0)
    );
    assert_eq!(
        count(&[("route", "api"), ("method", "POST"), ("status", "200")]),
        Some(7.0)
    );
    assert_eq!(
        count(&[("route", "api"), ("method", "_OTHER"), ("status", "200")]),
        Some(1.0)
    );
    assert_eq!(
        count(&[("route", "hello"), ("method", "GET"), ("status", "200")]),
        Some(5.0)
    );
    assert_eq!(
        count(&[("route", "_none"), ("method", "GET"), ("status", "404")]),
        Some(3.0)
    );
    assert_eq!(
        count(&[("route", "_none"), ("method", "DELETE"), ("status", "405")]),
        Some(2.0)
    );
    // The raw path never becomes a label.
    assert!(s
        .iter()
        .all(|x| !x.labels.values().any(|v| v.contains("/api"))));

    // Histogram: +Inf bucket == _count == requests on the route; buckets are cumulative.
    let h = "ringway_http_request_duration_seconds";
    let api = [("route", "api")];
    assert_eq!(metric(&s, &format!("{h}_count"), &api), Some(38.0));
    assert_eq!(
        metric(
            &s,
            &format!("{h}_bucket"),
            &[("route", "api"), ("le", "+Inf")]
        ),
        Some(38.0)
    );
    let mut buckets: Vec<(f64, f64)> = s
        .iter()
        .filter(|x| x.name == format!("{h}_bucket") && x.labels["route"] == "api")
        .map(|x| {
            let le = &x.labels["le"];
            (
                if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().unwrap()
                },
                x.value,
            )
        })
        .collect();
    buckets.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap());
    assert!(buckets.len() >= 10, "{buckets:?}");
    assert!(buckets.windows(2).all(|w| w[0].1 <= w[1].1), "{buckets:?}");
    let sum = metric(&s, &format!("{h}_sum"), &api).unwrap();
    assert!(sum > 0.0 && sum < 38.0, "sum {sum}");

    // Upstream: every proxied request went out on an opened or a reused connection.
    let opened = metric(
        &s,
        "ringway_upstream_connections_total",
        &[("upstream", "app"), ("state", "opened")],
    )
    .unwrap_or(0.0);
    let reused = metric(
        &s,
        "ringway_upstream_connections_total",
        &[("upstream", "app"), ("state", "reused")],
    )
    .unwrap_or(0.0);
    assert_eq!(opened + reused, 38.0, "opened {opened} reused {reused}");
    assert!(reused > 0.0, "pooled connections were reused");
    assert_eq!(
        metric(
            &s,
            "ringway_upstream_request_duration_seconds_count",
            &[("upstream", "app")]
        ),
        Some(38.0)
    );
    // Bytes: 7 POST bodies of 3 bytes at least; responses carried the echo JSON.
    let bytes_in = metric(&s, "ringway_http_request_bytes_total", &api).unwrap();
    let bytes_out = metric(&s, "ringway_http_response_bytes_total", &api).unwrap();
    assert!(bytes_in >= 38.0 * 30.0 + 21.0, "{bytes_in}");
    assert!(bytes_out > 38.0 * 100.0, "{bytes_out}");

    // Process-level families.
    assert_eq!(metric(&s, "ringway_config_generation", &[]), Some(1.0));
    let info = s
        .iter()
        .find(|x| x.name == "ringway_build_info")
        .expect("build info");
    assert_eq!(info.value, 1.0);
    assert!(
        ["io_uring", "legacy"].contains(&info.labels["driver"].as_str()),
        "{info:?}"
    );
    assert_eq!(info.labels["workers"], "2");
    // The open-connections gauge: every worker reports it; it counts a held keep-alive
    // connection and drops back when it closes (the admin connection is not a client one).
    let open = |s: &[Sample]| {
        let w0 = metric(s, "ringway_downstream_connections_open", &[("worker", "0")]);
        let w1 = metric(s, "ringway_downstream_connections_open", &[("worker", "1")]);
        assert!(w0.is_some() && w1.is_some(), "one series per worker");
        w0.unwrap_or(0.0) + w1.unwrap_or(0.0)
    };
    let mut held = Conn::open(gw.addr);
    assert_eq!(held.request("GET", "/hello", &[], b"").status, 200);
    assert_eq!(wait_gauge(gw.admin, &open, 1.0), 1.0, "one held connection");
    drop(held);
    assert_eq!(wait_gauge(gw.admin, &open, 0.0), 0.0, "closed again");

    // A second scrape with no traffic in between gives the same counts (nothing double-merged).
    let again = scrape(gw.admin);
    assert_eq!(
        metric(
            &again,
            "ringway_http_requests_total",
            &[("route", "api"), ("method", "GET"), ("status", "200")]
        ),
        Some(30.0)
    );
    assert_eq!(
        metric(
            &again,
            "ringway_http_requests_total",
            &[("route", "hello"), ("method", "GET"), ("status", "200")]
        ),
        Some(6.0),
        "five plus the one on the held connection"
    );
}

#[test]
fn keepalive_requests_and_rejected_heads_are_counted() {
    let up = Upstream::echo();
    let gw = Gateway::start(&config(up.addr, ""));
    let mut c = Conn::open(gw.addr);
    for _ in 0..25 {
        assert_eq!(c.request("GET", "/hello", &[], b"").status, 200);
    }
    // A malformed head is answered 400 and counted without a route.
    let raw_reply = raw(
        gw.addr,
        b"GET /hello HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    );
    assert_eq!(first_status(&raw_reply), 400);
    let s = scrape_until(
        gw.admin,
        "ringway_http_requests_total",
        &[("route", "hello"), ("status", "200")],
        25.0,
    );
    assert_eq!(
        metric(
            &s,
            "ringway_http_requests_total",
            &[("route", "hello"), ("status", "200")]
        ),
        Some(25.0)
    );
    let s = scrape_until(
        gw.admin,
        "ringway_http_requests_total",
        &[("route", "_none"), ("status", "400")],
        1.0,
    );
    assert_eq!(
        metric(
            &s,
            "ringway_http_requests_total",
            &[("route", "_none"), ("status", "400")]
        ),
        Some(1.0)
    );
}

#[test]
fn counters_survive_reloads_and_reload_results_are_counted() {
    let up = Upstream::echo();
    let gw = Gateway::start(&config(up.addr, ""));
    for _ in 0..4 {
        assert_eq!(fresh(gw.addr, "GET", "/hello"), 200);
    }
    assert!(gw.reload(&config(up.addr, "")));
    assert!(!gw.reload("[[routes]]\nname = 1\n"));
    for _ in 0..3 {
        assert_eq!(fresh(gw.addr, "GET", "/hello"), 200);
    }
    let labels = [("route", "hello"), ("method", "GET"), ("status", "200")];
    let s = scrape_until(gw.admin, "ringway_http_requests_total", &labels, 7.0);
    assert_eq!(
        metric(&s, "ringway_http_requests_total", &labels),
        Some(7.0)
    );
    assert_eq!(
        metric(&s, "ringway_config_reloads_total", &[("result", "success")]),
        Some(1.0)
    );
    assert_eq!(
        metric(&s, "ringway_config_reloads_total", &[("result", "failure")]),
        Some(1.0)
    );
    assert_eq!(metric(&s, "ringway_config_generation", &[]), Some(2.0));
}

#[test]
fn upstream_connect_errors_are_counted_per_upstream() {
    let dead = refused_port();
    let body = format!(
        "[upstreams.dead]\ntargets = [{{ address = \"127.0.0.1:{dead}\" }}]\n\n\
         [[routes]]\nname = \"d\"\nprefix = \"/\"\nproxy = {{ upstream = \"dead\" }}\n"
    );
    let gw = Gateway::start(&body);
    assert_eq!(fresh(gw.addr, "GET", "/x"), 502);
    let s = scrape_until(
        gw.admin,
        "ringway_http_requests_total",
        &[("route", "d"), ("status", "502")],
        1.0,
    );
    assert_eq!(
        metric(
            &s,
            "ringway_http_requests_total",
            &[("route", "d"), ("status", "502")]
        ),
        Some(1.0)
    );
    assert!(
        metric(
            &s,
            "ringway_upstream_connect_errors_total",
            &[("upstream", "dead")]
        )
        .unwrap()
            >= 1.0
    );
}

#[test]
fn stats_gives_percentiles_from_merged_histograms() {
    // The upstream takes 30 ms per request; the static route answers at once.
    let slow = Upstream::start(Arc::new(|_req, s| {
        std::thread::sleep(Duration::from_millis(30));
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        Reply::KeepAlive
    }));
    let gw = Gateway::start(&config(slow.addr, ""));
    for _ in 0..20 {
        assert_eq!(fresh(gw.addr, "GET", "/api/slow"), 200);
        assert_eq!(fresh(gw.addr, "GET", "/hello"), 200);
    }
    scrape_until(
        gw.admin,
        "ringway_http_request_duration_seconds_count",
        &[("route", "api")],
        20.0,
    );
    let r = request(gw.admin, "GET", "/stats", &[("Connection", "close")], b"");
    assert_eq!(r.status, 200);
    let j = r.json();
    let api = &j["routes"]["api"];
    assert_eq!(api["count"], 20, "{j}");
    let p50 = api["p50_ms"].as_f64().unwrap();
    let p99 = api["p99_ms"].as_f64().unwrap();
    // The lower bounds follow from the upstream's 30 ms sleep and hold on any machine. The
    // upper bound only catches a unit mix-up (µs as ms would read 30 000): 1 s is 33× nominal.
    assert!((29.0..1000.0).contains(&p50), "api p50 {p50} ms");
    assert!(p99 >= p50, "{j}");
    let hello = &j["routes"]["hello"];
    assert_eq!(hello["count"], 20);
    // The static route's median (not its p99: one scheduling stall on a loaded machine would
    // move that) is far below the proxied one: nominal well under 1 ms, against 30 ms.
    assert!(hello["p50_ms"].as_f64().unwrap() < 29.0, "{j}");
    let app = &j["upstreams"]["app"];
    assert_eq!(app["count"], 20);
    assert!(app["p50_ms"].as_f64().unwrap() >= 29.0, "{j}");
}

#[test]
fn metrics_can_be_switched_off() {
    let up = Upstream::echo();
    let gw = Gateway::start(&config(up.addr, "[metrics]\nenabled = false\n"));
    for _ in 0..5 {
        assert_eq!(fresh(gw.addr, "GET", "/hello"), 200);
    }
    // Positive marker first: a connection records its requests before it leaves the open
    // count, so once every worker reports zero open connections, anything that would have
    // been recorded is in the scrape.
    let open = |s: &[Sample]| {
        metric(s, "ringway_downstream_connections_open", &[]).expect("gauge still served")
    };
    assert_eq!(wait_gauge(gw.admin, &open, 0.0), 0.0);
    let s = scrape(gw.admin);
    assert_eq!(
        metric(&s, "ringway_http_requests_total", &[("route", "hello")]),
        None
    );
    // Process-level metrics are still served.
    assert_eq!(metric(&s, "ringway_config_generation", &[]), Some(1.0));
}

/// README promises 499 for a client that left before any response. Without a watch on the
/// client socket while the upstream works, the late response would be written into the closed
/// socket (the kernel takes it; the peer answers RST afterwards) and counted 200.
#[test]
fn a_client_that_leaves_before_the_response_is_counted_499() {
    // The upstream holds its answer until the client has gone.
    let release = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let gate = release.clone();
    let up = Upstream::start(Arc::new(move |_req, s| {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while !gate.load(std::sync::atomic::Ordering::SeqCst)
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        Reply::KeepAlive
    }));
    let gw = Gateway::start(&config(up.addr, ""));
    let mut c = Conn::open(gw.addr);
    c.send(&build_request("GET", "/api/slow", &[], b""));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while up.count() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "never reached upstream"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    drop(c);
    let labels = [("route", "api"), ("method", "GET"), ("status", "499")];
    let mut s = scrape(gw.admin);
    while metric(&s, "ringway_http_requests_total", &labels).is_none()
        && std::time::Instant::now() < deadline
    {
        // Let the upstream answer once the gateway had time to see the close on its own; the
        // count must be 499 either way (no response reached the client).
        if std::time::Instant::now() + Duration::from_secs(7) > deadline {
            release.store(true, std::sync::atomic::Ordering::SeqCst);
        }
        std::thread::sleep(Duration::from_millis(20));
        s = scrape(gw.admin);
    }
    release.store(true, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(
        metric(&s, "ringway_http_requests_total", &labels),
        Some(1.0),
        "{:?}",
        s.iter()
            .filter(|x| x.name == "ringway_http_requests_total")
            .collect::<Vec<_>>()
    );
    assert_eq!(
        metric(
            &s,
            "ringway_http_requests_total",
            &[("route", "api"), ("status", "200")]
        ),
        None
    );
}

//! W3C trace context and OTLP export: a valid incoming `traceparent` is continued with a new
//! span id for the upstream hop, an absent or malformed one starts a new trace, the trace id
//! can be echoed in a response header, spans reach a collector on loopback with the right ids,
//! and a collector that is down costs only a counted drop.
mod common;
use common::*;

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn config(up: SocketAddr, tracing: &str) -> String {
    format!(
        "{tracing}\n{}\n\
         [[routes]]\nname = \"api\"\nprefix = \"/api\"\nproxy = {{ upstream = \"app\" }}\n",
        upstream_toml("app", &[up])
    )
}

/// Splits a traceparent value into (version, trace id, parent id, flags), checking its shape.
fn parts(tp: &str) -> (String, String, String, String) {
    let p: Vec<&str> = tp.split('-').collect();
    assert_eq!(p.len(), 4, "{tp}");
    assert_eq!(tp.len(), 55, "{tp}");
    assert!(
        p.iter().all(|x| x
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))),
        "{tp}"
    );
    assert_ne!(p[1], "0".repeat(32));
    assert_ne!(p[2], "0".repeat(16));
    (p[0].into(), p[1].into(), p[2].into(), p[3].into())
}

#[test]
fn a_valid_traceparent_is_continued_with_a_new_span() {
    let up = Upstream::echo();
    let gw = Gateway::start(&config(
        up.addr,
        "[tracing]\nresponse_header = \"X-Trace-Id\"\n",
    ));
    let r = request(
        gw.addr,
        "GET",
        "/api/a",
        &[("traceparent", TP), ("tracestate", "vendor=abc")],
        b"",
    );
    assert_eq!(r.status, 200);
    let got = up.last();
    let sent = got.header_all("traceparent");
    assert_eq!(sent.len(), 1, "exactly one traceparent upstream: {sent:?}");
    let (v, trace, parent, flags) = parts(sent[0]);
    assert_eq!(v, "00");
    assert_eq!(trace, "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_ne!(
        parent, "00f067aa0ba902b7",
        "the gateway's hop has its own span id"
    );
    assert_eq!(flags, "01");
    assert_eq!(got.header("tracestate"), Some("vendor=abc"));
    assert_eq!(
        r.header("x-trace-id"),
        Some("4bf92f3577b34da6a3ce929d0e0e4736")
    );

    // Two requests with the same incoming parent get different hop span ids.
    request(gw.addr, "GET", "/api/b", &[("traceparent", TP)], b"");
    let (_, trace2, parent2, _) = parts(up.last().header("traceparent").unwrap());
    assert_eq!(trace2, trace);
    assert_ne!(parent2, parent);
}

#[test]
fn absent_or_malformed_traceparent_starts_a_new_trace() {
    let up = Upstream::echo();
    let gw = Gateway::start(&config(
        up.addr,
        "[tracing]\nresponse_header = \"x-trace-id\"\n",
    ));
    let a = request(gw.addr, "GET", "/api/a", &[], b"");
    let (_, t1, _, _) = parts(up.last().header("traceparent").unwrap());
    assert_eq!(a.header("x-trace-id"), Some(t1.as_str()));
    request(gw.addr, "GET", "/api/a", &[], b"");
    let (_, t2, _, _) = parts(up.last().header("traceparent").unwrap());
    assert_ne!(t1, t2, "each request starts its own trace");

    for bad in [
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", // uppercase
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01", // zero trace id
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", // version ff
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",    // truncated
        "garbage",
    ] {
        let r = request(
            gw.addr,
            "GET",
            "/api/a",
            &[
                ("traceparent", bad),
                ("tracestate", "dd=s:2;o:rum,vendor=abc"),
            ],
            b"",
        );
        assert_eq!(r.status, 200);
        let sent = up.last();
        assert_eq!(sent.header_all("traceparent").len(), 1);
        // The state belonged to the trace that was not continued (W3C Trace Context 3.3).
        assert_eq!(
            sent.header("tracestate"),
            None,
            "{bad}: tracestate of a dropped trace"
        );
        let (_, t, _, _) = parts(sent.header("traceparent").unwrap());
        assert_ne!(
            t, "4bf92f3577b34da6a3ce929d0e0e4736",
            "{bad} was not continued"
        );
        assert_eq!(r.header("x-trace-id"), Some(t.as_str()));
    }
    // Two traceparent headers: ambiguous, so treated as absent (a new trace, not either one).
    let r = request(
        gw.addr,
        "GET",
        "/api/a",
        &[
            ("traceparent", TP),
            (
                "traceparent",
                "00-11111111111111111111111111111111-2222222222222222-01",
            ),
        ],
        b"",
    );
    let (_, t, _, _) = parts(up.last().header("traceparent").unwrap());
    assert!(
        t != "4bf92f3577b34da6a3ce929d0e0e4736" && t != "1".repeat(32),
        "{t}"
    );
    assert_eq!(r.header("x-trace-id"), Some(t.as_str()));
    // Error responses carry the trace id too.
    let nf = request(gw.addr, "GET", "/nope", &[("traceparent", TP)], b"");
    assert_eq!(nf.status, 404);
    assert_eq!(
        nf.header("x-trace-id"),
        Some("4bf92f3577b34da6a3ce929d0e0e4736")
    );
}

#[test]
fn propagation_off_passes_the_header_through_untouched() {
    let up = Upstream::echo();
    let gw = Gateway::start(&config(up.addr, "[tracing]\npropagate = false\n"));
    request(gw.addr, "GET", "/api/a", &[("traceparent", TP)], b"");
    assert_eq!(up.last().header("traceparent"), Some(TP));
    request(gw.addr, "GET", "/api/a", &[], b"");
    assert_eq!(up.last().header("traceparent"), None);
}

/// A collector that accepts OTLP/HTTP JSON posts.
fn collector(status: u16) -> Upstream {
    Upstream::start(Arc::new(move |_req, s| {
        let _ = write!(s, "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{{}}");
        Reply::KeepAlive
    }))
}

/// Every span the collector received.
fn spans(c: &Upstream) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    for req in c.requests() {
        assert_eq!(req.method, "POST");
        assert_eq!(req.target, "/v1/traces");
        assert!(req
            .header("content-type")
            .unwrap()
            .starts_with("application/json"));
        let body: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
        for rs in body["resourceSpans"].as_array().unwrap() {
            let attrs = rs["resource"]["attributes"].as_array().unwrap();
            assert!(attrs
                .iter()
                .any(|a| a["key"] == "service.name" && a["value"]["stringValue"] == "edge"));
            for ss in rs["scopeSpans"].as_array().unwrap() {
                out.extend(ss["spans"].as_array().unwrap().iter().cloned());
            }
        }
    }
    out
}

#[test]
fn spans_reach_the_otlp_collector_with_the_right_ids() {
    let up = Upstream::echo();
    let col = collector(200);
    let tracing = format!(
        "[tracing]\n[tracing.otlp]\nendpoint = \"http://{}/v1/traces\"\nservice_name = \"edge\"\nflush_interval = \"100ms\"\n",
        col.addr
    );
    let gw = Gateway::start(&config(up.addr, &tracing));
    let mut hops = Vec::new();
    for i in 0..5 {
        let tp = format!("00-{:032x}-{:016x}-01", 0xabc000 + i, 0x5000 + i);
        assert_eq!(
            request(
                gw.addr,
                "GET",
                &format!("/api/{i}"),
                &[("traceparent", &tp)],
                b""
            )
            .status,
            200
        );
        let (_, _, hop, _) = parts(up.last().header("traceparent").unwrap());
        hops.push(hop);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut got = spans(&col);
    while got.len() < 5 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        got = spans(&col);
    }
    assert_eq!(got.len(), 5, "{got:?}");
    for i in 0..5u64 {
        let trace = format!("{:032x}", 0xabc000 + i);
        let s = got
            .iter()
            .find(|s| s["traceId"] == trace.as_str())
            .unwrap_or_else(|| panic!("no span for {trace}"));
        assert_eq!(s["parentSpanId"], format!("{:016x}", 0x5000 + i).as_str());
        assert_eq!(
            s["spanId"],
            hops[i as usize].as_str(),
            "span id is the parent of the upstream hop"
        );
        assert_eq!(s["kind"], 2);
        let start: u64 = s["startTimeUnixNano"].as_str().unwrap().parse().unwrap();
        let end: u64 = s["endTimeUnixNano"].as_str().unwrap().parse().unwrap();
        assert!(end >= start && start > 1_700_000_000_000_000_000);
        let attrs = s["attributes"].as_array().unwrap();
        assert!(attrs
            .iter()
            .any(|a| a["key"] == "http.route" && a["value"]["stringValue"] == "api"));
    }
    let s = scrape(gw.admin);
    assert_eq!(
        metric(&s, "ringway_trace_spans_exported_total", &[]),
        Some(5.0)
    );

    // An unsampled incoming trace is propagated but not exported. To check the absence without
    // a sleep, a sampled marker request follows on the same connection (so the same worker and
    // its span buffer): once the marker's span arrived, the unsampled one would have too.
    let unsampled = "00-0000000000000000000000000000beef-00000000000000aa-00";
    let marker = "00-0000000000000000000000000000cafe-00000000000000bb-01";
    let mut c = Conn::open(gw.addr);
    assert_eq!(
        c.request("GET", "/api/u", &[("traceparent", unsampled)], b"")
            .status,
        200
    );
    assert!(up.last().header("traceparent").unwrap().ends_with("-00"));
    assert_eq!(
        c.request("GET", "/api/m", &[("traceparent", marker)], b"")
            .status,
        200
    );
    let seen = wait_for(Duration::from_secs(10), || {
        spans(&col)
            .iter()
            .any(|s| s["traceId"] == "0000000000000000000000000000cafe")
    });
    assert!(
        seen.is_some(),
        "marker span never exported: {:?}",
        spans(&col)
    );
    assert!(spans(&col)
        .iter()
        .all(|s| s["traceId"] != "0000000000000000000000000000beef"));
    // The exporter counts a batch once the collector answered: wait for the marker's count.
    let exported = || metric(&scrape(gw.admin), "ringway_trace_spans_exported_total", &[]);
    let _ = wait_for(Duration::from_secs(10), || exported() >= Some(6.0));
    assert_eq!(
        exported(),
        Some(6.0),
        "5 spans + the marker, nothing for the unsampled trace"
    );
}

#[test]
fn sample_ratio_decides_the_flag_of_new_traces() {
    // README: `tracing.sample_ratio` is the fraction of NEW traces sampled; incoming traces
    // keep their flag.
    let up = Upstream::echo();
    for (ratio, want) in [("0.0", "00"), ("1.0", "01")] {
        let gw = Gateway::start(&config(
            up.addr,
            &format!("[tracing]\nsample_ratio = {ratio}\n"),
        ));
        for i in 0..20 {
            let r = request(gw.addr, "GET", &format!("/api/new{i}"), &[], b"");
            assert_eq!(r.status, 200);
            let (_, _, _, flags) = parts(up.last().header("traceparent").unwrap());
            assert_eq!(flags, want, "sample_ratio = {ratio}, new trace {i}");
        }
        // An incoming trace keeps its own flag whatever the ratio.
        for incoming in ["00", "01"] {
            let tp = format!("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-{incoming}");
            request(gw.addr, "GET", "/api/in", &[("traceparent", &tp)], b"");
            let (_, _, _, flags) = parts(up.last().header("traceparent").unwrap());
            assert_eq!(
                flags, incoming,
                "sample_ratio = {ratio}, incoming {incoming}"
            );
        }
    }
}

#[test]
fn a_collector_that_is_down_costs_only_a_counted_drop() {
    let up = Upstream::echo();
    let dead = refused_port();
    let tracing = format!(
        "[tracing]\n[tracing.otlp]\nendpoint = \"http://127.0.0.1:{dead}/v1/traces\"\nflush_interval = \"100ms\"\ntimeout = \"500ms\"\n"
    );
    let gw = Gateway::start(&config(up.addr, &tracing));
    let mut c = Conn::open(gw.addr);
    for _ in 0..40 {
        assert_eq!(c.request("GET", "/api/x", &[], b"").status, 200);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let s = scrape(gw.admin);
        let failed = metric(&s, "ringway_trace_spans_export_failed_total", &[]).unwrap_or(0.0);
        if failed >= 40.0 {
            assert_eq!(failed, 40.0);
            assert_eq!(
                metric(&s, "ringway_trace_spans_exported_total", &[]),
                Some(0.0)
            );
            break;
        }
        assert!(Instant::now() < deadline, "drops not counted: {failed}");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(c.request("GET", "/api/x", &[], b"").status, 200);
}

/// A client's made-up methods do not become span names or method attributes (each would be a
/// new span name in the tracing backend, and an 8 KB one at that): they export as `_OTHER`
/// with the span name `HTTP {route}`, the raw method bounded beside it, and a bounded path.
#[test]
fn abuse_made_up_methods_and_long_paths_stay_bounded_in_spans() {
    let up = Upstream::echo();
    let col = collector(200);
    let tracing = format!(
        "[tracing]\nsample_ratio = 1.0\n[tracing.otlp]\nendpoint = \"http://{}/v1/traces\"\nservice_name = \"edge\"\nflush_interval = \"100ms\"\n",
        col.addr
    );
    let gw = Gateway::start(&config(up.addr, &tracing));
    let long_method = "X".repeat(5000);
    let long_path = format!("/api/{}", "p".repeat(3000));
    let mut sent = vec![("GET".to_string(), "/api/known".to_string())];
    for i in 0..20 {
        sent.push((format!("M{i}"), format!("/api/{i}")));
    }
    sent.push((long_method.clone(), "/api/long".to_string()));
    sent.push(("GET".to_string(), long_path.clone()));
    for (m, p) in &sent {
        let r = request(gw.addr, m, p, &[("Content-Length", "0")], b"");
        assert_eq!(
            r.status,
            200,
            "{} {}",
            &m[..m.len().min(10)],
            &p[..p.len().min(20)]
        );
    }
    let _ = wait_for(Duration::from_secs(10), || spans(&col).len() >= sent.len());
    let got = spans(&col);
    assert_eq!(got.len(), sent.len());
    let attr = |s: &serde_json::Value, k: &str| {
        s["attributes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["key"] == k)
            .map(|a| a["value"]["stringValue"].as_str().unwrap_or("").to_string())
    };
    let mut names = std::collections::BTreeSet::new();
    for s in &got {
        names.insert(s["name"].as_str().unwrap().to_string());
        let method = attr(s, "http.request.method").unwrap();
        match attr(s, "http.request.method_original") {
            Some(orig) => {
                assert_eq!(method, "_OTHER");
                assert!(orig.starts_with('M') || orig.starts_with('X'), "{orig}");
                assert!(orig.len() <= 64, "{}", orig.len());
            }
            None => assert_eq!(method, "GET"),
        }
        let path = attr(s, "url.path").unwrap();
        assert!(path.len() <= 1024, "url.path of {} bytes", path.len());
        assert!(path.starts_with("/api/"), "{path}");
    }
    let want: std::collections::BTreeSet<String> = ["GET api", "HTTP api"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(names, want, "span names");
}

/// `tracing.response_header` is the gateway's field: an upstream's copy (a stale or forged id)
/// is dropped, so the client sees exactly one value, the trace id, as with `X-Request-Id`.
#[test]
fn an_upstream_copy_of_the_trace_header_is_dropped() {
    let up = Upstream::start(Arc::new(|_req, s| {
        let _ = write!(
            s,
            "HTTP/1.1 200 OK\r\nX-Trace-Id: upstream-fake\r\nContent-Length: 2\r\n\r\nok"
        );
        Reply::KeepAlive
    }));
    let gw = Gateway::start(&config(
        up.addr,
        "[tracing]\nresponse_header = \"x-trace-id\"\n",
    ));
    let r = request(gw.addr, "GET", "/api/x", &[("traceparent", TP)], b"");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header_all("x-trace-id"),
        vec!["4bf92f3577b34da6a3ce929d0e0e4736"],
        "one value: the trace id"
    );
}

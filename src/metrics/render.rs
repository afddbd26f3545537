//! Text renderings of a `Merged` view: Prometheus exposition format 0.0.4 and a compact JSON
//! latency summary.
//!
//! Invariants: each family gets `# HELP` / `# TYPE` exactly once, even with no samples; label
//! values are escaped (`\\`, `"`, newline); output order is deterministic (families in a fixed
//! order, series sorted by route / upstream name, then method index and status). Prometheus
//! buckets and sums come from the exact counters; JSON percentiles from the merged hdr
//! histograms (never averaged per-worker percentiles).

use std::fmt::Write;

use super::histogram::{LatencyHistogram, BUCKETS, BUCKET_BOUNDS};
use super::hub::Merged;
use super::labels::{method_of, protocol_label, CoreCounter, METHOD_LABELS};

/// Process-level values the control plane knows (not core-local).
pub struct ProcessInfo<'a> {
    pub version: &'a str,
    /// I/O driver in use ("io_uring" or "legacy").
    pub driver: &'a str,
    pub workers: usize,
    /// Current config generation.
    pub generation: u64,
    pub reloads_ok: u64,
    pub reloads_failed: u64,
    /// Extra process-wide counters: (metric name, help text, value). Names that are not valid
    /// Prometheus metric names are skipped.
    pub extra_counters: &'a [(&'a str, &'a str, u64)],
}

/// Appends the whole Prometheus text exposition (format 0.0.4) for `m` and `p` to `out`.
pub fn render_prometheus(m: &Merged, p: &ProcessInfo, out: &mut String) {
    // Family order is part of the output contract (deterministic exposition).
    route_traffic(m, out);
    upstream_latency(m, out);
    route_refusals(m, out);
    upstream_connections(m, out);
    downstream_connections(m, out);
    telemetry_losses(m, out);
    process(p, out);
}

/// Requests, latency and bytes per route.
fn route_traffic(m: &Merged, out: &mut String) {
    family(
        out,
        "ringway_http_requests_total",
        "Finished HTTP requests by route, method, status and protocol.",
        "counter",
    );
    for (route, t) in &m.routes {
        for (&(method, status), n) in &t.requests {
            let protocol = protocol_label(method);
            let method = METHOD_LABELS[method_of(method)];
            out.push_str("ringway_http_requests_total{route=\"");
            push_label_value(out, route);
            let _ = writeln!(
                out,
                "\",method=\"{method}\",status=\"{status}\",protocol=\"{protocol}\"}} {n}"
            );
        }
    }

    let name = "ringway_http_request_duration_seconds";
    family(
        out,
        name,
        "Time from the complete request head to the last byte of the response.",
        "histogram",
    );
    for (route, t) in &m.routes {
        histogram(out, name, "route", route, &t.latency);
    }

    family(
        out,
        "ringway_http_request_bytes_total",
        "Request bytes received from clients, by route.",
        "counter",
    );
    for (route, t) in &m.routes {
        sample(
            out,
            "ringway_http_request_bytes_total",
            "route",
            route,
            t.bytes_in,
        );
    }
}

/// Upstream response-head latency per upstream.
fn upstream_latency(m: &Merged, out: &mut String) {
    family(
        out,
        "ringway_http_response_bytes_total",
        "Response bytes sent to clients, by route.",
        "counter",
    );
    for (route, t) in &m.routes {
        sample(
            out,
            "ringway_http_response_bytes_total",
            "route",
            route,
            t.bytes_out,
        );
    }

    let name = "ringway_upstream_request_duration_seconds";
    family(
        out,
        name,
        "Time from sending a request upstream to receiving the complete response head.",
        "histogram",
    );
    for (up, t) in &m.upstreams {
        histogram(out, name, "upstream", up, &t.latency);
    }
}

/// Auth refusals and rate-limit decisions per route.
fn route_refusals(m: &Merged, out: &mut String) {
    family(
        out,
        "ringway_auth_failures_total",
        "Requests refused by an authentication or authorization policy, by route and reason.",
        "counter",
    );
    for (route, t) in &m.routes {
        for (reason, n) in &t.auth_failures {
            out.push_str("ringway_auth_failures_total{route=\"");
            push_label_value(out, route);
            let _ = writeln!(out, "\",reason=\"{reason}\"}} {n}");
        }
    }
    family(
        out,
        "ringway_ratelimit_decisions_total",
        "Rate-limit decisions on limited routes, by route and decision.",
        "counter",
    );
    for (route, t) in &m.routes {
        for (decision, n) in [("allowed", t.ratelimit[0]), ("limited", t.ratelimit[1])] {
            if t.ratelimit != [0, 0] {
                out.push_str("ringway_ratelimit_decisions_total{route=\"");
                push_label_value(out, route);
                let _ = writeln!(out, "\",decision=\"{decision}\"}} {n}");
            }
        }
    }
}

/// Upstream connect errors and fresh/reused connections.
fn upstream_connections(m: &Merged, out: &mut String) {
    family(
        out,
        "ringway_upstream_connect_errors_total",
        "Failed connection attempts to upstream peers.",
        "counter",
    );
    for (up, t) in &m.upstreams {
        sample(
            out,
            "ringway_upstream_connect_errors_total",
            "upstream",
            up,
            t.connect_errors,
        );
    }
    family(
        out,
        "ringway_upstream_connections_total",
        "Requests sent upstream on a freshly opened or a reused pooled connection.",
        "counter",
    );
    for (up, t) in &m.upstreams {
        for (state, n) in [("opened", t.opened), ("reused", t.reused)] {
            out.push_str("ringway_upstream_connections_total{upstream=\"");
            push_label_value(out, up);
            let _ = writeln!(out, "\",state=\"{state}\"}} {n}");
        }
    }
}

/// Client connections: open, refused at accept, slow closes, idle tunnels.
fn downstream_connections(m: &Merged, out: &mut String) {
    family(
        out,
        "ringway_downstream_connections_open",
        "Open client connections per worker.",
        "gauge",
    );
    for (worker, n) in &m.open_connections {
        let _ = writeln!(
            out,
            "ringway_downstream_connections_open{{worker=\"{worker}\"}} {n}"
        );
    }

    labelled_counters(
        m,
        out,
        "ringway_downstream_connections_refused_total",
        "Client connections closed at accept because a connection cap was reached, by cap.",
        "reason",
        &[
            ("max_connections", CoreCounter::ConnRefusedMax),
            ("per_ip", CoreCounter::ConnRefusedPerIp),
        ],
    );
    labelled_counters(
        m,
        out,
        "ringway_slow_client_closes_total",
        "Client connections closed for sending a request body or reading a response too slowly.",
        "direction",
        &[
            ("request_body", CoreCounter::SlowRequestBody),
            ("response", CoreCounter::SlowResponse),
        ],
    );
    family(
        out,
        "ringway_tunnel_idle_closes_total",
        "Tunnels (WebSocket) closed after timeouts.tunnel_idle without traffic either way.",
        "counter",
    );
    let _ = writeln!(
        out,
        "ringway_tunnel_idle_closes_total {}",
        m.counter(CoreCounter::TunnelIdle)
    );
    tls_handshakes(m, out);
    http2_connections(m, out);
}

/// HTTP/2 connections, protocol errors and flood closes.
fn http2_connections(m: &Merged, out: &mut String) {
    family(
        out,
        "ringway_http2_connections_total",
        "HTTP/2 client connections established (ALPN h2 or h2c).",
        "counter",
    );
    let _ = writeln!(
        out,
        "ringway_http2_connections_total {}",
        m.counter(CoreCounter::Http2Connections)
    );
    family(
        out,
        "ringway_http2_protocol_errors_total",
        "HTTP/2 client connections closed for a protocol error.",
        "counter",
    );
    let _ = writeln!(
        out,
        "ringway_http2_protocol_errors_total {}",
        m.counter(CoreCounter::Http2ProtocolErrors)
    );
    labelled_counters(
        m,
        out,
        "ringway_http2_flood_closes_total",
        "HTTP/2 client connections closed with GOAWAY(ENHANCE_YOUR_CALM), by the budget spent.",
        "kind",
        &CoreCounter::HTTP2_FLOODS,
    );
    labelled_counters(
        m,
        out,
        "ringway_upstream_http2_flood_closes_total",
        "HTTP/2 connections to upstreams closed because the upstream flooded frames, by the budget spent.",
        "kind",
        &CoreCounter::UPSTREAM_HTTP2_FLOODS,
    );
}

/// TLS handshakes completed (full or resumed) and failed (by reason).
fn tls_handshakes(m: &Merged, out: &mut String) {
    labelled_counters(
        m,
        out,
        "ringway_tls_handshakes_total",
        "TLS handshakes completed on client connections, by kind (full or resumed).",
        "kind",
        &[
            ("full", CoreCounter::TlsFull),
            ("resumed", CoreCounter::TlsResumed),
        ],
    );
    labelled_counters(
        m,
        out,
        "ringway_tls_handshake_errors_total",
        "TLS handshakes that failed on client connections, by reason.",
        "reason",
        &CoreCounter::TLS_FAILURES,
    );
}

/// Access-log lines and trace spans dropped.
fn telemetry_losses(m: &Merged, out: &mut String) {
    family(
        out,
        "ringway_access_log_dropped_total",
        "Access-log lines dropped because the log queue was full.",
        "counter",
    );
    let _ = writeln!(
        out,
        "ringway_access_log_dropped_total {}",
        m.counter(CoreCounter::AccessLogDropped)
    );
    family(
        out,
        "ringway_trace_spans_dropped_total",
        "Trace spans dropped, by stage.",
        "counter",
    );
    let _ = writeln!(
        out,
        "ringway_trace_spans_dropped_total{{stage=\"queue\"}} {}",
        m.counter(CoreCounter::SpansDropped)
    );
}

/// Reloads, config generation, build info and the extra process counters.
fn process(p: &ProcessInfo, out: &mut String) {
    family(
        out,
        "ringway_config_reloads_total",
        "Configuration reloads by result.",
        "counter",
    );
    let _ = writeln!(
        out,
        "ringway_config_reloads_total{{result=\"success\"}} {}",
        p.reloads_ok
    );
    let _ = writeln!(
        out,
        "ringway_config_reloads_total{{result=\"failure\"}} {}",
        p.reloads_failed
    );
    family(
        out,
        "ringway_config_generation",
        "Generation of the active configuration.",
        "gauge",
    );
    let _ = writeln!(out, "ringway_config_generation {}", p.generation);
    family(
        out,
        "ringway_build_info",
        "Build and runtime information; always 1.",
        "gauge",
    );
    out.push_str("ringway_build_info{version=\"");
    push_label_value(out, p.version);
    out.push_str("\",driver=\"");
    push_label_value(out, p.driver);
    let _ = writeln!(out, "\",workers=\"{}\"}} 1", p.workers);

    for &(name, help, value) in p.extra_counters {
        if !valid_metric_name(name) {
            continue;
        }
        family(out, name, help, "counter");
        let _ = writeln!(out, "{name} {value}");
    }
}

/// Appends `{"routes":{..},"upstreams":{..}}` with count, p50/p90/p99/p999/max/mean in ms per
/// route and upstream, from the merged histograms.
pub fn render_stats_json(m: &Merged, out: &mut String) {
    out.push_str("{\"routes\":{");
    for (i, (name, t)) in m.routes.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        json_str(out, name);
        out.push(':');
        json_summary(out, &t.latency);
    }
    out.push_str("},\"upstreams\":{");
    for (i, (name, t)) in m.upstreams.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        json_str(out, name);
        out.push(':');
        json_summary(out, &t.latency);
    }
    out.push_str("}}\n");
}

fn json_summary(out: &mut String, h: &LatencyHistogram) {
    let _ = write!(out, "{{\"count\":{}", h.count());
    for (key, q) in [
        ("p50_ms", 0.5),
        ("p90_ms", 0.9),
        ("p99_ms", 0.99),
        ("p999_ms", 0.999),
    ] {
        let _ = write!(out, ",\"{key}\":");
        micros_as_ms(out, h.quantile_micros(q));
    }
    out.push_str(",\"max_ms\":");
    micros_as_ms(out, h.max_micros());
    let _ = write!(out, ",\"mean_ms\":{:.3}}}", h.mean_micros() / 1_000.0);
}

/// Writes whole microseconds as milliseconds with three exact decimals.
fn micros_as_ms(out: &mut String, us: u64) {
    let _ = write!(out, "{}.{:03}", us / 1_000, us % 1_000);
}

/// Writes whole microseconds as seconds with six exact decimals.
fn micros_as_seconds(out: &mut String, us: u64) {
    let _ = write!(out, "{}.{:06}", us / 1_000_000, us % 1_000_000);
}

/// A counter family whose one label `label` takes the value of each row, with its counter.
fn labelled_counters(
    m: &Merged,
    out: &mut String,
    name: &str,
    help: &str,
    label: &str,
    rows: &[(&str, CoreCounter)],
) {
    family(out, name, help, "counter");
    for &(value, c) in rows {
        let _ = writeln!(out, "{name}{{{label}=\"{value}\"}} {}", m.counter(c));
    }
}

pub(super) fn family(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = write!(out, "# HELP {name} ");
    // HELP text escapes only backslash and newline.
    for c in help.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    let _ = writeln!(out, "\n# TYPE {name} {kind}");
}

fn sample(out: &mut String, name: &str, label: &str, value: &str, n: u64) {
    let _ = write!(out, "{name}{{{label}=\"");
    push_label_value(out, value);
    let _ = writeln!(out, "\"}} {n}");
}

fn histogram(out: &mut String, name: &str, label: &str, value: &str, h: &LatencyHistogram) {
    let cumulative = h.cumulative_buckets();
    for (i, n) in cumulative.iter().enumerate() {
        let le = if i + 1 == BUCKETS {
            "+Inf"
        } else {
            BUCKET_BOUNDS[i]
        };
        let _ = write!(out, "{name}_bucket{{{label}=\"");
        push_label_value(out, value);
        let _ = writeln!(out, "\",le=\"{le}\"}} {n}");
    }
    let _ = write!(out, "{name}_sum{{{label}=\"");
    push_label_value(out, value);
    out.push_str("\"} ");
    micros_as_seconds(out, h.sum_micros());
    out.push('\n');
    sample(out, &format!("{name}_count"), label, value, h.count());
}

/// Escapes a label value per the text format: backslash, double quote and newline.
pub(super) fn push_label_value(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`
fn valid_metric_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_' || b == b':')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
}

/// Appends `s` as a quoted JSON string.
fn json_str(out: &mut String, s: &str) {
    let mut v = Vec::with_capacity(s.len() + 2);
    crate::json::string_into(&mut v, s.as_bytes());
    // Escaping valid UTF-8 yields valid UTF-8.
    out.push_str(&String::from_utf8_lossy(&v));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::CoreMetrics;
    use std::time::Duration;

    fn info<'a>(extra: &'a [(&'a str, &'a str, u64)]) -> ProcessInfo<'a> {
        ProcessInfo {
            version: "0.1.0",
            driver: "io_uring",
            workers: 2,
            generation: 7,
            reloads_ok: 3,
            reloads_failed: 1,
            extra_counters: extra,
        }
    }

    fn lines_with<'a>(text: &'a str, prefix: &str) -> Vec<&'a str> {
        text.lines().filter(|l| l.starts_with(prefix)).collect()
    }

    fn value_of(text: &str, series: &str) -> u64 {
        let line = text
            .lines()
            .find(|l| l.strip_prefix(series).is_some_and(|r| r.starts_with(' ')))
            .unwrap_or_else(|| panic!("missing series {series}"));
        line.rsplit(' ')
            .next()
            .and_then(|v| v.parse().ok())
            .expect("integer value")
    }

    fn sample_merged() -> Merged {
        let mut a = CoreMetrics::new();
        let r = a.route_slot("api");
        let u = a.upstream_slot("backend");
        a.record_request(Some(r), 0, 200, Duration::from_millis(1), 100, 2000);
        a.record_request(Some(r), 0, 200, Duration::from_micros(400), 0, 0);
        a.record_request(Some(r), 33, 502, Duration::from_secs(30), 0, 0);
        a.record_request(
            None,
            crate::metrics::HTTP2_FLAG,
            404,
            Duration::from_micros(10),
            0,
            0,
        );
        a.record_request(None, 4, 404, Duration::from_micros(10), 0, 0);
        a.record_upstream(u, Duration::from_millis(2));
        a.upstream_connection(u, false);
        a.upstream_connection(u, true);
        a.upstream_connect_error(u);
        a.add(CoreCounter::SpansDropped, 4);
        let mut b = CoreMetrics::new();
        let weird = b.route_slot("we\"ird\\na\nme");
        b.record_request(Some(weird), 1, 204, Duration::from_millis(5), 0, 0);
        let mut m = Merged::default();
        m.add(&a.snapshot(0, 2));
        m.add(&b.snapshot(1, 0));
        m
    }

    #[test]
    fn prometheus_families_buckets_and_labels() {
        let m = sample_merged();
        let mut out = String::new();
        render_prometheus(&m, &info(&[("ringway_extra_total", "Extra.", 9)]), &mut out);

        // HELP/TYPE exactly once per family.
        for fam in [
            "ringway_http_requests_total",
            "ringway_http_request_duration_seconds",
            "ringway_upstream_request_duration_seconds",
            "ringway_access_log_dropped_total",
            "ringway_extra_total",
        ] {
            assert_eq!(
                lines_with(&out, &format!("# TYPE {fam} ")).len(),
                1,
                "{fam}"
            );
            assert_eq!(
                lines_with(&out, &format!("# HELP {fam} ")).len(),
                1,
                "{fam}"
            );
        }

        let rt = "ringway_http_requests_total{route=\"api\",";
        assert_eq!(
            value_of(
                &out,
                &format!("{rt}method=\"GET\",status=\"200\",protocol=\"HTTP/1.1\"}}")
            ),
            2
        );
        assert_eq!(
            value_of(
                &out,
                &format!("{rt}method=\"_OTHER\",status=\"502\",protocol=\"HTTP/1.1\"}}")
            ),
            1
        );
        assert_eq!(
            value_of(
                &out,
                "ringway_http_requests_total{route=\"_none\",method=\"GET\",status=\"404\",protocol=\"HTTP/2.0\"}"
            ),
            1
        );
        assert_eq!(
            value_of(
                &out,
                "ringway_http_requests_total{route=\"_none\",method=\"DELETE\",status=\"404\",protocol=\"HTTP/1.1\"}"
            ),
            1
        );

        let b = "ringway_http_request_duration_seconds_bucket{route=\"api\",le=";
        assert_eq!(value_of(&out, &format!("{b}\"0.0005\"}}")), 1);
        assert_eq!(value_of(&out, &format!("{b}\"0.001\"}}")), 2);
        assert_eq!(value_of(&out, &format!("{b}\"10\"}}")), 2);
        assert_eq!(value_of(&out, &format!("{b}\"+Inf\"}}")), 3);
        let count = value_of(
            &out,
            "ringway_http_request_duration_seconds_count{route=\"api\"}",
        );
        assert_eq!(count, 3);
        // Cumulative: non-decreasing, 15 buckets, last equals _count.
        let buckets: Vec<u64> = lines_with(&out, b)
            .iter()
            .map(|l| {
                l.rsplit(' ')
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("n")
            })
            .collect();
        assert_eq!(buckets.len(), BUCKETS);
        assert!(buckets.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(buckets.last(), Some(&count));
        assert!(
            out.contains("ringway_http_request_duration_seconds_sum{route=\"api\"} 30.001400\n")
        );

        // Escaping of the route name with quote, backslash and newline.
        assert!(out.contains(
            "ringway_http_requests_total{route=\"we\\\"ird\\\\na\\nme\",method=\"HEAD\",status=\"204\",protocol=\"HTTP/1.1\"} 1\n"
        ));
        assert!(!out.contains("a\nme"));

        assert_eq!(
            value_of(&out, "ringway_http_request_bytes_total{route=\"api\"}"),
            100
        );
        assert_eq!(
            value_of(&out, "ringway_http_response_bytes_total{route=\"api\"}"),
            2000
        );
        let up = "ringway_upstream_connections_total{upstream=\"backend\",state=";
        assert_eq!(value_of(&out, &format!("{up}\"opened\"}}")), 1);
        assert_eq!(value_of(&out, &format!("{up}\"reused\"}}")), 1);
        assert_eq!(
            value_of(
                &out,
                "ringway_upstream_connect_errors_total{upstream=\"backend\"}"
            ),
            1
        );
        assert_eq!(
            value_of(
                &out,
                "ringway_upstream_request_duration_seconds_bucket{upstream=\"backend\",le=\"+Inf\"}"
            ),
            1
        );
        assert_eq!(
            value_of(&out, "ringway_downstream_connections_open{worker=\"0\"}"),
            2
        );
        assert_eq!(value_of(&out, "ringway_access_log_dropped_total"), 0);
        assert_eq!(
            value_of(&out, "ringway_trace_spans_dropped_total{stage=\"queue\"}"),
            4
        );
        assert_eq!(
            value_of(&out, "ringway_config_reloads_total{result=\"success\"}"),
            3
        );
        assert_eq!(
            value_of(&out, "ringway_config_reloads_total{result=\"failure\"}"),
            1
        );
        assert_eq!(value_of(&out, "ringway_config_generation"), 7);
        assert_eq!(
            value_of(
                &out,
                "ringway_build_info{version=\"0.1.0\",driver=\"io_uring\",workers=\"2\"}"
            ),
            1
        );
        assert_eq!(value_of(&out, "ringway_extra_total"), 9);

        // Deterministic: same input renders identically; routes sorted by name.
        let mut again = String::new();
        render_prometheus(
            &m,
            &info(&[("ringway_extra_total", "Extra.", 9)]),
            &mut again,
        );
        assert_eq!(out, again);
        let none = out.find("route=\"_none\"").expect("_none");
        let api = out.find("route=\"api\"").expect("api");
        assert!(none < api);
    }

    #[test]
    fn empty_merge_still_has_required_families() {
        let mut out = String::new();
        render_prometheus(
            &Merged::default(),
            &info(&[("bad name", "x", 1), ("ok:name_total", "Line\\one\ntwo", 2)]),
            &mut out,
        );
        assert!(out.contains("ringway_access_log_dropped_total 0\n"));
        assert!(out.contains("ringway_trace_spans_dropped_total{stage=\"queue\"} 0\n"));
        assert!(!out.contains("bad name"));
        assert!(out.contains("# HELP ok:name_total Line\\\\one\\ntwo\n"));
        assert!(out.contains("ok:name_total 2\n"));
    }

    #[test]
    fn stats_json_uses_merged_histograms() {
        let mut a = CoreMetrics::new();
        let mut b = CoreMetrics::new();
        let ra = a.route_slot("r");
        b.route_slot("other");
        let rb = b.route_slot("r");
        for _ in 0..1000 {
            a.record_request(Some(ra), 0, 200, Duration::from_millis(1), 0, 0);
            b.record_request(Some(rb), 0, 200, Duration::from_millis(100), 0, 0);
        }
        let mut m = Merged::default();
        m.add(&a.snapshot(0, 0));
        m.add(&b.snapshot(1, 0));
        let mut out = String::new();
        render_stats_json(&m, &mut out);
        let v: serde_json::Value = serde_json::from_str(&out).expect("valid JSON");
        let r = &v["routes"]["r"];
        assert_eq!(r["count"], 2000);
        let p50 = r["p50_ms"].as_f64().expect("p50");
        let p90 = r["p90_ms"].as_f64().expect("p90");
        assert!((p50 - 1.0).abs() / 1.0 < 0.01, "p50 {p50}");
        assert!((p90 - 100.0).abs() / 100.0 < 0.01, "p90 {p90}");
        assert_eq!(r["max_ms"].as_f64(), Some(100.0));
        assert_eq!(r["mean_ms"].as_f64(), Some(50.5));
        assert_eq!(v["routes"]["other"]["count"], 0);
        assert_eq!(v["routes"]["other"]["p99_ms"].as_f64(), Some(0.0));
        assert!(v["upstreams"].as_object().is_some_and(|o| o.is_empty()));
    }

    #[test]
    fn json_escapes_names() {
        let mut out = String::new();
        json_str(&mut out, "a\"b\\c\n\u{1}é");
        assert_eq!(out, "\"a\\\"b\\\\c\\n\\u0001é\"");
    }
}

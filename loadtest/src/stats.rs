//! Measurements: a per-thread `ThreadStats` (latency histogram, counters, status codes) that
//! only its own thread touches, merged into one `Report` at the end of a run, and the two ways
//! a report is printed (a table for people, one JSON object for scripts).
//!
//! Latencies are microseconds in an HDR histogram with 3 significant figures (values up to one
//! hour; larger ones are clamped). Percentiles are HDR's "highest equivalent value": a reported
//! p99 is never below the true p99, and at most 0.1% above it.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::units::{fmt_bytes, fmt_count, fmt_micros};

/// Largest latency the histogram tracks, in microseconds (one hour).
const MAX_LATENCY_US: u64 = 3_600_000_000;

/// A latency histogram in microseconds.
#[derive(Clone)]
pub struct Latency {
    hist: Histogram<u64>,
}

impl Default for Latency {
    fn default() -> Self {
        Self::new()
    }
}

impl Latency {
    /// An empty histogram covering 1 µs .. 1 h at 3 significant figures.
    pub fn new() -> Self {
        // The bounds are constants that hdrhistogram accepts (low >= 1, high >= 2 * low,
        // sigfig <= 5), so this cannot fail.
        let hist = Histogram::new_with_bounds(1, MAX_LATENCY_US, 3)
            .expect("constant histogram bounds are valid");
        Latency { hist }
    }

    /// Records one latency; values beyond the range are clamped to it.
    pub fn record_us(&mut self, us: u64) {
        self.hist.saturating_record(us.min(MAX_LATENCY_US));
    }

    /// Adds every value of `other` to this histogram.
    pub fn merge(&mut self, other: &Latency) {
        // Both histograms have the same bounds, so `add` cannot run out of range.
        let _ = self.hist.add(&other.hist);
    }

    /// Number of recorded values.
    #[cfg(test)]
    pub fn count(&self) -> u64 {
        self.hist.len()
    }

    /// Percentiles and moments of what was recorded (all zero when empty).
    pub fn summary(&self) -> LatencySummary {
        if self.hist.is_empty() {
            return LatencySummary::default();
        }
        let q = |q: f64| self.hist.value_at_quantile(q);
        LatencySummary {
            min: self.hist.min(),
            mean: round2(self.hist.mean()),
            stdev: round2(self.hist.stdev()),
            p50: q(0.50),
            p90: q(0.90),
            p99: q(0.99),
            p999: q(0.999),
            max: self.hist.max(),
        }
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Latency percentiles in microseconds, as printed in the report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct LatencySummary {
    pub min: u64,
    pub mean: f64,
    pub stdev: f64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

/// Failed or unwanted outcomes, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Errors {
    /// Connection attempts that failed or timed out.
    pub connect: u64,
    /// Requests with no complete response within `--timeout`.
    pub timeout: u64,
    /// Requests that ended in a read/write error, an early close or a malformed response.
    pub parse: u64,
    /// Complete responses with a 4xx status (also counted in `requests`).
    pub status_4xx: u64,
    /// Complete responses with a 5xx status (also counted in `requests`).
    pub status_5xx: u64,
    /// TLS handshakes that failed or timed out, and TLS record errors (bad record, alert).
    pub tls: u64,
}

impl Errors {
    /// Sum of all kinds.
    pub fn total(&self) -> u64 {
        self.connect + self.timeout + self.parse + self.status_4xx + self.status_5xx + self.tls
    }

    fn merge(&mut self, o: &Errors) {
        self.connect += o.connect;
        self.timeout += o.timeout;
        self.parse += o.parse;
        self.status_4xx += o.status_4xx;
        self.status_5xx += o.status_5xx;
        self.tls += o.tls;
    }
}

/// TLS handshakes of the measured requests (https:// only): how many were full and how many
/// resumed a session, and what the first one negotiated.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TlsStats {
    pub handshakes_full: u64,
    pub handshakes_resumed: u64,
    /// Protocol version, cipher suite, key-exchange group and ALPN of the first handshake.
    pub version: String,
    pub cipher: String,
    pub group: String,
    pub alpn: String,
}

impl TlsStats {
    /// Notes what a handshake negotiated, and counts it when `counted` (measured).
    pub fn record(&mut self, n: &crate::tls::Negotiated, counted: bool) {
        match (counted, n.resumed) {
            (false, _) => {}
            (true, true) => self.handshakes_resumed += 1,
            (true, false) => self.handshakes_full += 1,
        }
        if self.version.is_empty() {
            self.version = n.version.clone();
            self.cipher = n.cipher.clone();
            self.group = n.group.clone();
            self.alpn = n.alpn.clone();
        }
    }

    fn merge(&mut self, o: &TlsStats) {
        self.handshakes_full += o.handshakes_full;
        self.handshakes_resumed += o.handshakes_resumed;
        if self.version.is_empty() {
            self.version = o.version.clone();
            self.cipher = o.cipher.clone();
            self.group = o.group.clone();
            self.alpn = o.alpn.clone();
        }
    }
}

/// Status codes are three digits, so a flat array indexes them all.
const STATUS_SLOTS: usize = 1000;

/// What one load thread measured.
#[derive(Clone)]
pub struct ThreadStats {
    pub latency: Latency,
    /// Complete responses (any status).
    pub requests: u64,
    pub errors: Errors,
    status: Vec<u64>,
    /// Bytes received for the measured requests (heads and bodies).
    pub bytes_read: u64,
    /// Bytes sent for the measured requests.
    pub bytes_written: u64,
    /// Connections opened after the first one (server closed, error, timeout), whole run.
    pub reconnects: u64,
    pub tls: TlsStats,
}

impl Default for ThreadStats {
    fn default() -> Self {
        ThreadStats {
            latency: Latency::new(),
            requests: 0,
            errors: Errors::default(),
            status: vec![0; STATUS_SLOTS],
            bytes_read: 0,
            bytes_written: 0,
            reconnects: 0,
            tls: TlsStats::default(),
        }
    }
}

impl ThreadStats {
    /// Records one complete response.
    pub fn record_response(&mut self, status: u16, latency_us: u64) {
        self.requests += 1;
        self.latency.record_us(latency_us);
        if let Some(slot) = self.status.get_mut(usize::from(status)) {
            *slot += 1;
        }
        match status {
            400..=499 => self.errors.status_4xx += 1,
            500..=599 => self.errors.status_5xx += 1,
            _ => {}
        }
    }

    /// Adds `other` into `self`.
    pub fn merge(&mut self, other: &ThreadStats) {
        self.latency.merge(&other.latency);
        self.requests += other.requests;
        self.errors.merge(&other.errors);
        for (a, b) in self.status.iter_mut().zip(&other.status) {
            *a += b;
        }
        self.bytes_read += other.bytes_read;
        self.bytes_written += other.bytes_written;
        self.reconnects += other.reconnects;
        self.tls.merge(&other.tls);
    }

    /// Non-zero status counts keyed by code.
    pub fn status_counts(&self) -> BTreeMap<String, u64> {
        self.status
            .iter()
            .enumerate()
            .filter(|(_, &n)| n > 0)
            .map(|(code, &n)| (code.to_string(), n))
            .collect()
    }
}

/// The final result of `rwload run`; field names are stable (scripts read the JSON).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `closed` (each connection sends as fast as responses come back) or `open` (`--rate`).
    pub mode: &'static str,
    pub url: String,
    pub method: String,
    pub threads: usize,
    pub connections: usize,
    /// Target rate for open-loop runs, requests per second.
    pub rate: Option<f64>,
    /// I/O driver of the load threads (`io_uring`, or `epoll (legacy)` as a fallback).
    pub driver: &'static str,
    /// Complete responses in the measured window (any status).
    pub requests: u64,
    /// Length of the measured window in seconds.
    pub duration_s: f64,
    /// `requests / duration_s`.
    pub rps: f64,
    pub latency_us: LatencySummary,
    pub errors: Errors,
    /// Responses per status code.
    pub status: BTreeMap<String, u64>,
    /// Bytes received and sent for the measured requests.
    pub bytes_read: u64,
    pub bytes_written: u64,
    /// Connections reopened during the run (warmup included).
    pub reconnects: u64,
    /// https:// runs only: handshakes of the measured requests and what they negotiated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsStats>,
}

impl Report {
    /// Builds the report from the merged statistics.
    pub fn new(head: ReportHead, stats: &ThreadStats, duration_s: f64) -> Report {
        let rps = if duration_s > 0.0 {
            stats.requests as f64 / duration_s
        } else {
            0.0
        };
        Report {
            mode: head.mode,
            url: head.url,
            method: head.method,
            threads: head.threads,
            connections: head.connections,
            rate: head.rate,
            driver: head.driver,
            requests: stats.requests,
            duration_s: round2(duration_s * 1000.0) / 1000.0,
            rps: round2(rps),
            latency_us: stats.latency.summary(),
            errors: stats.errors,
            status: stats.status_counts(),
            bytes_read: stats.bytes_read,
            bytes_written: stats.bytes_written,
            reconnects: stats.reconnects,
            tls: head.tls.then(|| stats.tls.clone()),
        }
    }

    /// One JSON object on one line.
    pub fn to_json(&self) -> String {
        // Serializing plain structs, maps with string keys and finite floats cannot fail.
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// The human-readable table.
    pub fn to_table(&self) -> String {
        let l = &self.latency_us;
        let mut out = String::new();
        let rate = match self.rate {
            Some(r) => format!("open loop at {} req/s", fmt_count(r)),
            None => "closed loop".to_string(),
        };
        out.push_str(&format!(
            "{} {}: {rate}, {} connections, {} threads ({}), {:.2}s\n",
            self.method, self.url, self.connections, self.threads, self.driver, self.duration_s
        ));
        out.push_str(&format!(
            "  requests  {:>10}  {:>12.1} req/s\n",
            self.requests, self.rps
        ));
        out.push_str(&format!(
            "  latency   p50 {}  p90 {}  p99 {}  p99.9 {}  max {}\n",
            fmt_micros(l.p50),
            fmt_micros(l.p90),
            fmt_micros(l.p99),
            fmt_micros(l.p999),
            fmt_micros(l.max)
        ));
        out.push_str(&format!(
            "            min {}  mean {}  stdev {}\n",
            fmt_micros(l.min),
            fmt_micros(l.mean.round() as u64),
            fmt_micros(l.stdev.round() as u64)
        ));
        let status: Vec<String> = self
            .status
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        out.push_str(&format!(
            "  status    {}\n",
            if status.is_empty() {
                "none".to_string()
            } else {
                status.join(", ")
            }
        ));
        let e = &self.errors;
        out.push_str(&format!(
            "  errors    {} (connect {}, tls {}, timeout {}, read/parse {}, 4xx {}, 5xx {})\n",
            e.total(),
            e.connect,
            e.tls,
            e.timeout,
            e.parse,
            e.status_4xx,
            e.status_5xx
        ));
        if let Some(t) = &self.tls {
            out.push_str(&format!(
                "  tls       {} {} {} alpn {}; handshakes full {}, resumed {}\n",
                t.version, t.cipher, t.group, t.alpn, t.handshakes_full, t.handshakes_resumed
            ));
        }
        out.push_str(&format!(
            "  transfer  read {}, written {}, reconnects {}\n",
            fmt_bytes(self.bytes_read),
            fmt_bytes(self.bytes_written),
            self.reconnects
        ));
        out
    }
}

/// The run parameters a `Report` repeats.
#[derive(Debug, Clone)]
pub struct ReportHead {
    pub mode: &'static str,
    pub url: String,
    pub method: String,
    pub threads: usize,
    pub connections: usize,
    pub rate: Option<f64>,
    pub driver: &'static str,
    /// The run spoke TLS: the report carries `tls`.
    pub tls: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// HDR reports the highest value equivalent to the true one: within 0.1% above it.
    fn close(actual: u64, expected: u64) -> bool {
        actual >= expected && (actual - expected) as f64 <= expected as f64 * 0.001 + 1.0
    }

    #[test]
    fn percentiles_of_known_values() {
        let mut l = Latency::new();
        for us in 1..=10_000 {
            l.record_us(us);
        }
        let s = l.summary();
        assert_eq!(s.min, 1);
        assert!(close(s.p50, 5_000), "p50 {}", s.p50);
        assert!(close(s.p90, 9_000), "p90 {}", s.p90);
        assert!(close(s.p99, 9_900), "p99 {}", s.p99);
        assert!(close(s.p999, 9_990), "p99.9 {}", s.p999);
        assert!(close(s.max, 10_000), "max {}", s.max);
        assert!((s.mean - 5_000.5).abs() < 5.0, "mean {}", s.mean);
    }

    #[test]
    fn small_values_are_exact() {
        // Below 2048 µs, 3 significant figures means every integer has its own bucket.
        let mut l = Latency::new();
        for _ in 0..98 {
            l.record_us(100);
        }
        l.record_us(500);
        l.record_us(1_000);
        let s = l.summary();
        assert_eq!((s.p50, s.p90, s.p99, s.max), (100, 100, 500, 1_000));
    }

    #[test]
    fn merge_equals_recording_everything_in_one() {
        let mut whole = Latency::new();
        let mut a = Latency::new();
        let mut b = Latency::new();
        for us in 1..=20_000u64 {
            whole.record_us(us * 7);
            if us % 3 == 0 {
                a.record_us(us * 7);
            } else {
                b.record_us(us * 7);
            }
        }
        a.merge(&b);
        assert_eq!(a.count(), 20_000);
        assert_eq!(a.summary(), whole.summary());
    }

    #[test]
    fn a_tail_in_one_thread_shows_after_merge() {
        // Nine fast threads and one with a slow tail: the merged p99.9 must show the tail.
        let mut merged = ThreadStats::default();
        for t in 0..10 {
            let mut s = ThreadStats::default();
            for _ in 0..999 {
                s.record_response(200, 100);
            }
            s.record_response(200, if t == 0 { 50_000 } else { 100 });
            if t == 0 {
                for _ in 0..30 {
                    s.record_response(503, 50_000);
                }
            }
            merged.merge(&s);
        }
        let sum = merged.latency.summary();
        assert_eq!(merged.requests, 10_030);
        assert_eq!(sum.p50, 100);
        assert!(close(sum.p999, 50_000), "p99.9 {}", sum.p999);
        assert_eq!(merged.errors.status_5xx, 30);
        let counts = merged.status_counts();
        assert_eq!(counts.get("200"), Some(&10_000));
        assert_eq!(counts.get("503"), Some(&30));
    }

    #[test]
    fn huge_values_are_clamped_and_empty_is_zero() {
        let mut l = Latency::new();
        assert_eq!(l.summary(), LatencySummary::default());
        l.record_us(u64::MAX);
        assert!(close(l.summary().max, MAX_LATENCY_US));
    }

    #[test]
    fn json_field_names_are_stable() {
        let mut s = ThreadStats::default();
        s.record_response(200, 120);
        s.record_response(404, 80);
        let head = ReportHead {
            mode: "closed",
            url: "http://127.0.0.1:1/".into(),
            method: "GET".into(),
            threads: 1,
            connections: 1,
            rate: None,
            driver: "io_uring",
            tls: false,
        };
        let r = Report::new(head, &s, 2.0);
        let v: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(v["requests"], 2);
        assert_eq!(v["rps"], 1.0);
        assert_eq!(v["duration_s"], 2.0);
        for k in ["p50", "p90", "p99", "p999", "max"] {
            assert!(v["latency_us"][k].is_u64(), "{k}");
        }
        assert!(v.get("tls").is_none(), "no tls object for http://");
        for k in [
            "connect",
            "timeout",
            "parse",
            "status_4xx",
            "status_5xx",
            "tls",
        ] {
            assert!(v["errors"][k].is_u64(), "{k}");
        }
        assert_eq!(v["errors"]["status_4xx"], 1);
        assert_eq!(v["status"]["404"], 1);
        assert!(r.to_table().contains("p99"));
    }
}

//! The result of one rwcompare run, printed as one table for people or one JSON object for
//! scripts. Ratios are ringway ÷ nginx for every column (higher is better for req/s and
//! req/CPU-s; lower is better for latency, CPU seconds and memory).

use std::fmt::Write as _;

use serde_json::{json, Map, Value};

use crate::idle;
use crate::load;
use crate::scenario::{Http2, Kind, Load, Scenario, Tls};
use crate::targets::Target;

/// How one target fared.
pub enum Outcome {
    /// Not run (nginx missing); the reason says how to fix it.
    Skipped(String),
    Failed(String),
    Load(Box<load::Outcome>),
    Idle(idle::Outcome),
}

pub struct Row {
    pub target: Target,
    /// The scenario's ringway variant this row ran (`ringway:NAME`).
    pub variant: Option<String>,
    pub note: String,
    pub outcome: Outcome,
}

impl Row {
    /// The row's label: the target, with its variant if any.
    pub fn name(&self) -> String {
        match &self.variant {
            Some(v) => format!("{}:{v}", self.target.name()),
            None => self.target.name().to_string(),
        }
    }
}

/// `--rate-from-nginx`: nginx's closed-loop maximum and the rate derived from it.
pub struct Calibration {
    pub fraction: f64,
    pub nginx_rps: f64,
    pub rate: f64,
    /// The tool that measured nginx's maximum (`rwload` when oha drives the runs).
    pub tool: &'static str,
}

pub struct Report<'a> {
    pub scn: &'a Scenario,
    /// The load as run (overrides applied); None for idle scenarios.
    pub load: Option<&'a Load>,
    pub command: String,
    pub machine: String,
    pub commit: Option<String>,
    pub workers: usize,
    pub gateway_cpus: Vec<usize>,
    pub load_cpus: Vec<usize>,
    /// Not enough CPUs to separate gateway and load: both share all of them.
    pub shared_cpus: bool,
    /// `--share-cpus`: the load shares the gateway's CPUs by request.
    pub share_asked: bool,
    pub calibration: Option<Calibration>,
    /// `--load`: which tool drove the load.
    pub load_tool: &'static str,
    /// `--cpu-quota`: the gateway's CPU cap.
    pub cpu_quota: Option<String>,
    pub rows: Vec<Row>,
}

fn cpus(c: &[usize]) -> String {
    let s: Vec<String> = c.iter().map(|c| c.to_string()).collect();
    format!("CPU{} {}", if c.len() > 1 { "s" } else { "" }, s.join(","))
}

/// 556us, 4.95ms, 1.20s.
pub fn fmt_us(us: f64) -> String {
    if us < 1000.0 {
        format!("{us:.0}us")
    } else if us < 1_000_000.0 {
        format!("{:.2}ms", us / 1000.0)
    } else {
        format!("{:.2}s", us / 1e6)
    }
}

/// 812KiB, 11.5MiB.
pub fn fmt_kib(kib: f64) -> String {
    if kib.abs() < 1024.0 {
        format!("{kib:.0}KiB")
    } else if kib.abs() < 1024.0 * 1024.0 {
        format!("{:.1}MiB", kib / 1024.0)
    } else {
        format!("{:.2}GiB", kib / 1024.0 / 1024.0)
    }
}

fn fmt_bytes(b: f64) -> String {
    if b.abs() < 1024.0 {
        format!("{b:.0}B")
    } else {
        format!("{:.2}KiB", b / 1024.0)
    }
}

fn size(b: usize) -> String {
    if b >= 1024 && b.is_multiple_of(1024) {
        format!("{} KiB", b / 1024)
    } else {
        format!("{b} B")
    }
}

/// The TLS line of the header.
fn tls_shape(t: &Tls) -> String {
    format!(
        "HTTPS, {}; client offers {}; certificate ECDSA P-256 (made at run time, same file for both gateways); SNI localhost",
        t.handshakes.name(),
        t.version.map_or("TLS 1.2 and 1.3".to_string(), |v| format!("TLS {v} only"))
    )
}

/// The HTTP/2 line of the header.
fn http2_shape(h: &Http2) -> String {
    format!(
        "HTTP/2 ({}), {} concurrent streams per connection, load by h2load (nghttp2-client; latency percentiles exact from its per-request log; open loop: --rps per connection, timed from the send, no coordinated-omission correction)",
        if h.cleartext { "h2c prior knowledge" } else { "TLS, ALPN h2 only" },
        h.streams
    )
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

fn fmt_ratio(r: Option<f64>) -> String {
    r.map_or("-".into(), |r| format!("{r:.2}x"))
}

fn opt(v: Option<f64>, f: impl Fn(f64) -> String) -> String {
    v.map_or("-".into(), f)
}

impl Report<'_> {
    fn load_of(&self, t: Target) -> Option<&load::Outcome> {
        self.rows
            .iter()
            .find_map(|r| match (&r.outcome, r.target == t) {
                (Outcome::Load(o), true) => Some(o.as_ref()),
                _ => None,
            })
    }

    fn idle_of(&self, t: Target) -> Option<&idle::Outcome> {
        self.rows
            .iter()
            .find_map(|r| match (&r.outcome, r.target == t) {
                (Outcome::Idle(o), true) => Some(o),
                _ => None,
            })
    }

    fn shape(&self) -> String {
        match (self.scn.kind, self.load, &self.scn.idle) {
            (Kind::Load, Some(l), _) => {
                let mode = match l.rate {
                    Some(r) => format!("open loop at {r:.0} req/s"),
                    None => "closed loop".into(),
                };
                let paths = if l.paths.len() == 1 {
                    l.paths[0].clone()
                } else {
                    format!(
                        "{} paths ({} … {}; {})",
                        l.paths.len(),
                        l.paths[0],
                        l.paths[l.paths.len() - 1],
                        if l.http2.is_some() {
                            "one h2load, paths in turn"
                        } else {
                            "one rwload each"
                        }
                    )
                };
                let body = if l.body_size > 0 {
                    format!(" with {} body", size(l.body_size))
                } else {
                    String::new()
                };
                format!(
                    "{} {paths}{body} -> {} responses; {mode}, {} connections; {:?} measured after {:?} warmup",
                    l.method,
                    size(self.scn.response_body),
                    l.connections,
                    l.duration,
                    l.warmup
                )
            }
            (_, _, Some(i)) => format!(
                "{} idle keep-alive connections, one GET {} each ({} responses); RSS read {:?} after the last response",
                i.connections,
                i.path,
                size(self.scn.response_body),
                i.settle
            ),
            _ => String::new(),
        }
    }

    fn pinning(&self) -> String {
        let mut s = format!(
            "gateway ({} worker{}) on {} (process affinity as taskset -c; ringway pins one worker per CPU, nginx worker_cpu_affinity); {} + upstream on {}",
            self.workers,
            if self.workers > 1 { "s" } else { "" },
            cpus(&self.gateway_cpus),
            self.load_tool.split(' ').next().unwrap_or("load"),
            cpus(&self.load_cpus)
        );
        if self.shared_cpus {
            s.push_str(" (shared: not enough CPUs to separate them)");
        } else if self.share_asked {
            s.push_str(" (shared: --share-cpus)");
        }
        s
    }

    /// The human-readable table.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "rwcompare {}: {}", self.scn.name, self.scn.description);
        let _ = writeln!(s, "  load      {}", self.shape());
        if let Some(t) = &self.scn.tls {
            let _ = writeln!(s, "  tls       {}", tls_shape(t));
        }
        if let Some(h) = &self.scn.http2 {
            let _ = writeln!(s, "  http2     {}", http2_shape(h));
        }
        if let Some(c) = &self.calibration {
            let _ = writeln!(
                s,
                "  rate      {:.0} req/s = {} x nginx's closed-loop maximum {:.0} req/s (measured first, with {})",
                c.rate, c.fraction, c.nginx_rps, c.tool
            );
        }
        if self.scn.kind == Kind::Load {
            let _ = writeln!(s, "  tool      {}", self.load_tool);
        }
        if let Some(q) = &self.cpu_quota {
            let _ = writeln!(s, "  quota     gateway capped at {q}");
        }
        let _ = writeln!(s, "  pinning   {}", self.pinning());
        let commit = self.commit.as_deref().unwrap_or("unknown commit");
        let _ = writeln!(s, "  machine   {}; {commit}", self.machine);
        let _ = writeln!(s, "  command   {}", self.command);
        s.push('\n');
        match self.scn.kind {
            Kind::Load => self.load_table(&mut s),
            Kind::Idle => self.idle_table(&mut s),
        }
        for r in &self.rows {
            match &r.outcome {
                Outcome::Skipped(why) => {
                    let _ = writeln!(s, "{}: skipped: {why}", r.name());
                }
                Outcome::Failed(e) => {
                    let _ = writeln!(s, "{}: FAILED: {e}", r.name());
                }
                _ if !r.note.is_empty() => {
                    let _ = writeln!(s, "{}: {}", r.name(), r.note);
                }
                _ => {}
            }
        }
        s
    }

    fn load_table(&self, s: &mut String) {
        let _ = writeln!(
            s,
            "{:<14}{:>11}{:>10}{:>10}{:>10}{:>10}{:>11}{:>10}{:>8}",
            "target", "req/s", "p50", "p99", "p99.9", "gw CPU s", "req/CPU-s", "peak RSS", "errors"
        );
        for r in &self.rows {
            let Outcome::Load(o) = &r.outcome else {
                let what = match r.outcome {
                    Outcome::Skipped(_) => "skipped",
                    _ => "failed",
                };
                let _ = writeln!(s, "{:<14}{what:>11}", r.name());
                continue;
            };
            let _ = writeln!(
                s,
                "{:<14}{:>11.1}{:>10}{:>10}{:>10}{:>10}{:>11}{:>10}{:>8}",
                r.name(),
                o.rps,
                fmt_us(o.p50_us),
                fmt_us(o.p99_us),
                fmt_us(o.p999_us),
                opt(o.gateway_cpu_s, |c| format!("{c:.2}")),
                opt(o.req_per_cpu_s, |c| format!("{c:.0}")),
                opt(o.peak_rss_kib.map(|k| k as f64), fmt_kib),
                o.errors
            );
        }
        if let (Some(a), Some(b)) = (self.load_of(Target::Ringway), self.load_of(Target::Nginx)) {
            let rs = |f: fn(&load::Outcome) -> Option<f64>| fmt_ratio(ratio(f(a), f(b)));
            let _ = writeln!(
                s,
                "{:<14}{:>11}{:>10}{:>10}{:>10}{:>10}{:>11}{:>10}",
                "ringway/nginx",
                rs(|o| Some(o.rps)),
                rs(|o| Some(o.p50_us)),
                rs(|o| Some(o.p99_us)),
                rs(|o| Some(o.p999_us)),
                rs(|o| o.gateway_cpu_s),
                rs(|o| o.req_per_cpu_s),
                rs(|o| o.peak_rss_kib.map(|k| k as f64)),
            );
        }
        for r in &self.rows {
            if let Outcome::Load(o) = &r.outcome {
                if let Some(t) = &o.tls {
                    let _ = writeln!(
                        s,
                        "{}: {}; measured handshakes: {} full, {} resumed",
                        r.name(),
                        t.negotiated,
                        t.handshakes_full,
                        t.handshakes_resumed
                    );
                }
            }
        }
        let busy: Vec<String> = self
            .rows
            .iter()
            .filter_map(|r| match &r.outcome {
                Outcome::Load(o) => o
                    .gateway_cores_busy
                    .map(|b| format!("{} {:.0}%", r.name(), b * 100.0)),
                _ => None,
            })
            .collect();
        s.push('\n');
        if !busy.is_empty() {
            let _ = writeln!(
                s,
                "gateway CPUs busy over the window (/proc/stat, every task and softirq): {}",
                busy.join(", ")
            );
        }
        let _ = writeln!(
            s,
            "gw CPU s: utime+stime of the gateway's processes (nginx: master + workers) over the measured window;\n\
             peak RSS: VmHWM (nginx: sum over workers); ratios: ringway / nginx."
        );
        if self.load.is_some_and(|l| l.paths.len() > 1) {
            let _ = writeln!(
                s,
                "Several rwload instances: req/s and errors are summed, percentiles are the worst instance's (an upper bound)."
            );
        }
    }

    fn idle_table(&self, s: &mut String) {
        let _ = writeln!(
            s,
            "{:<14}{:>8}{:>13}{:>13}{:>12}{:>8}{:>9}",
            "target", "conns", "RSS before", "RSS after", "per conn", "errors", "open s"
        );
        for r in &self.rows {
            let Outcome::Idle(o) = &r.outcome else {
                let what = match r.outcome {
                    Outcome::Skipped(_) => "skipped",
                    _ => "failed",
                };
                let _ = writeln!(s, "{:<14}{what:>8}", r.name());
                continue;
            };
            let _ = writeln!(
                s,
                "{:<14}{:>8}{:>13}{:>13}{:>12}{:>8}{:>9.2}",
                r.name(),
                o.opened,
                fmt_kib(o.rss_before_kib as f64),
                fmt_kib(o.rss_after_kib as f64),
                fmt_bytes(o.bytes_per_conn),
                o.errors,
                o.open_s
            );
        }
        if let (Some(a), Some(b)) = (self.idle_of(Target::Ringway), self.idle_of(Target::Nginx)) {
            let _ = writeln!(
                s,
                "{:<14}{:>8}{:>13}{:>13}{:>12}",
                "ringway/nginx",
                "",
                "",
                "",
                fmt_ratio(ratio(Some(a.bytes_per_conn), Some(b.bytes_per_conn)))
            );
        }
        s.push('\n');
        let _ = writeln!(
            s,
            "per conn = (VmRSS after - VmRSS before) / connections (nginx: sum over workers; direct: the upstream)."
        );
        if self.idle_of(Target::Nginx).is_some() {
            let _ = writeln!(
                s,
                "nginx allocates all worker_connections slots (connection + 2 event structs each) when a worker starts: they are in its RSS before."
            );
        }
        for r in &self.rows {
            if let Outcome::Idle(o) = &r.outcome {
                if let Some(t) = &o.tls {
                    let _ = writeln!(s, "{}: TLS {t}, full handshake per connection", r.name());
                }
                if let Some(e) = &o.first_error {
                    let _ = writeln!(s, "{}: first error: {e}", r.name());
                }
            }
        }
    }

    /// Everything as one JSON object.
    pub fn json(&self) -> Value {
        let mut targets = Map::new();
        for r in &self.rows {
            let v = match &r.outcome {
                Outcome::Skipped(why) => json!({"status": "skipped", "reason": why}),
                Outcome::Failed(e) => json!({"status": "failed", "error": e}),
                Outcome::Load(o) => json!({
                    "status": "ok",
                    "requests": o.requests,
                    "rps": o.rps,
                    "duration_s": o.duration_s,
                    "latency_us": {"p50": o.p50_us, "p99": o.p99_us, "p999": o.p999_us, "max": o.max_us},
                    "errors": o.errors,
                    "errors_by_kind": o.errors_by_kind,
                    "gateway_cpu_s": o.gateway_cpu_s,
                    "req_per_cpu_s": o.req_per_cpu_s,
                    "gateway_cpus_busy": o.gateway_cores_busy,
                    "peak_rss_kib": o.peak_rss_kib,
                    "load_driver": o.driver,
                    "tls": o.tls.as_ref().map(|t| json!({
                        "negotiated": t.negotiated,
                        "handshakes_full": t.handshakes_full,
                        "handshakes_resumed": t.handshakes_resumed,
                    })),
                    "note": r.note,
                    "rwload": o.raw,
                }),
                Outcome::Idle(o) => json!({
                    "status": "ok",
                    "connections": o.opened,
                    "requested": o.requested,
                    "errors": o.errors,
                    "first_error": o.first_error,
                    "rss_before_kib": o.rss_before_kib,
                    "rss_after_kib": o.rss_after_kib,
                    "bytes_per_conn": o.bytes_per_conn,
                    "open_s": o.open_s,
                    "tls": o.tls,
                    "note": r.note,
                }),
            };
            targets.insert(r.name(), v);
        }
        let mut ratios = Map::new();
        if let (Some(a), Some(b)) = (self.load_of(Target::Ringway), self.load_of(Target::Nginx)) {
            let pairs: [(&str, Option<f64>, Option<f64>); 7] = [
                ("rps", Some(a.rps), Some(b.rps)),
                ("p50", Some(a.p50_us), Some(b.p50_us)),
                ("p99", Some(a.p99_us), Some(b.p99_us)),
                ("p999", Some(a.p999_us), Some(b.p999_us)),
                ("gateway_cpu_s", a.gateway_cpu_s, b.gateway_cpu_s),
                ("req_per_cpu_s", a.req_per_cpu_s, b.req_per_cpu_s),
                (
                    "peak_rss",
                    a.peak_rss_kib.map(|k| k as f64),
                    b.peak_rss_kib.map(|k| k as f64),
                ),
            ];
            for (k, x, y) in pairs {
                ratios.insert(k.into(), json!(ratio(x, y)));
            }
        }
        if let (Some(a), Some(b)) = (self.idle_of(Target::Ringway), self.idle_of(Target::Nginx)) {
            ratios.insert(
                "bytes_per_conn".into(),
                json!(ratio(Some(a.bytes_per_conn), Some(b.bytes_per_conn))),
            );
        }
        let load = self.load.map(|l| {
            json!({
                "mode": if l.rate.is_some() { "open" } else { "closed" },
                "method": l.method,
                "paths": l.paths,
                "body_size": l.body_size,
                "connections": l.connections,
                "rate": l.rate,
                "duration_s": l.duration.as_secs_f64(),
                "warmup_s": l.warmup.as_secs_f64(),
            })
        });
        let idle = self.scn.idle.as_ref().map(|i| {
            json!({"connections": i.connections, "path": i.path, "settle_s": i.settle.as_secs_f64()})
        });
        json!({
            "scenario": self.scn.name,
            "description": self.scn.description,
            "scenario_file": self.scn.file.display().to_string(),
            "kind": match self.scn.kind { Kind::Load => "load", Kind::Idle => "idle" },
            "routes": self.scn.routes.len(),
            "response_body_size": self.scn.response_body,
            "load": load,
            "idle": idle,
            "tls": self.scn.tls.as_ref().map(tls_shape),
            "http2": self.scn.http2.as_ref().map(http2_shape),
            "load_tool": self.load_tool,
            "cpu_quota": self.cpu_quota,
            "rate_from_nginx": self.calibration.as_ref().map(|c| json!({
                "fraction": c.fraction, "nginx_max_rps": c.nginx_rps, "rate": c.rate,
                "measured_with": c.tool
            })),
            "pinning": {
                "workers": self.workers,
                "gateway_cpus": self.gateway_cpus,
                "load_cpus": self.load_cpus,
                "upstream_cpus": self.load_cpus,
                "shared": self.shared_cpus || self.share_asked,
            },
            "machine": self.machine,
            "commit": self.commit,
            "command": self.command,
            "targets": targets,
            "ratios": ratios,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(fmt_us(556.0), "556us");
        assert_eq!(fmt_us(4951.0), "4.95ms");
        assert_eq!(fmt_us(1_200_000.0), "1.20s");
        assert_eq!(fmt_kib(11792.0), "11.5MiB");
        assert_eq!(fmt_bytes(7250.0), "7.08KiB");
        assert_eq!(fmt_ratio(ratio(Some(3.0), Some(2.0))), "1.50x");
        assert_eq!(fmt_ratio(ratio(Some(3.0), None)), "-");
        assert_eq!(size(1024), "1 KiB");
        assert_eq!(size(20), "20 B");
    }
}

//! Measuring one target under load: one `rwload run` per scenario path (rwload takes a
//! single URL; connections and rate are split evenly), and the gateway's CPU time sampled
//! over the measured window.
//!
//! The CPU window is `[spawn + warmup, spawn + warmup + duration]`, which lies inside rwload's
//! loaded period (its clock starts after its connections are open, a few ms after spawn). The
//! gateway's utilisation over that window (CPU seconds / wall seconds) converts rwload's
//! figures: CPU seconds = utilisation × measured duration, requests per CPU-second = req/s ÷
//! utilisation. With several instances, latency percentiles are the highest instance's: an
//! upper bound of the merged percentile.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::h2load::{self, Proto};
use crate::procfs;
use crate::procs::{self, Proc};
use crate::scenario::{Handshakes, Load};
use crate::targets::{cpu_list, duration_arg, Env, Running};

/// What one target did under load.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub requests: u64,
    pub rps: f64,
    pub duration_s: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
    pub errors: u64,
    pub errors_by_kind: BTreeMap<String, u64>,
    pub driver: String,
    /// Gateway CPU seconds in the measured window (None for `direct`).
    pub gateway_cpu_s: Option<f64>,
    pub req_per_cpu_s: Option<f64>,
    /// Busy share of the gateway CPUs from /proc/stat (all tasks, softirq included), 0..1.
    pub gateway_cores_busy: Option<f64>,
    /// VmHWM after the run (summed over nginx workers; the gateway only).
    pub peak_rss_kib: Option<u64>,
    /// TLS runs: what was negotiated and how many handshakes of each kind were measured.
    pub tls: Option<TlsSummary>,
    /// rwload's own JSON reports.
    pub raw: Vec<Value>,
}

/// The `tls` objects of rwload's reports, summed.
#[derive(Debug, Clone, Default)]
pub struct TlsSummary {
    /// e.g. `TLSv1.3 TLS13_AES_256_GCM_SHA384 X25519 alpn http/1.1`.
    pub negotiated: String,
    pub handshakes_full: u64,
    pub handshakes_resumed: u64,
}

/// The tool that drives HTTP/1.1 load (`--load`); HTTP/2 scenarios always use h2load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    Rwload,
    Wrk,
    H2load,
    Oha,
}

impl Tool {
    pub fn parse(s: &str) -> Option<Tool> {
        match s {
            "rwload" => Some(Tool::Rwload),
            "wrk" => Some(Tool::Wrk),
            "h2load" => Some(Tool::H2load),
            "oha" => Some(Tool::Oha),
            _ => None,
        }
    }

    /// The report header's description of the tool.
    pub fn describe(self, http2: bool) -> &'static str {
        match (self, http2) {
            (_, true) => "h2load (nghttp2-client), HTTP/2",
            (Tool::Rwload, _) => "rwload (bundled, io_uring)",
            (Tool::Wrk, _) => "wrk (Debian wrk; -t1, Lua script sets the request, percentiles from wrk's histogram)",
            (Tool::H2load, _) => "h2load --h1 -m 1 (nghttp2-client; percentiles exact from its per-request log)",
            (Tool::Oha, _) => "oha (crates.io; keep-alive; open loop: -q RATE --latency-correction; percentiles from its JSON)",
        }
    }
}

/// How a load process's output becomes a report.
enum Output {
    Rwload,
    Wrk,
    Oha,
    H2load(std::path::PathBuf, Proto),
}

/// Runs the load against `t` and measures it; `label` names the load tool's output files.
pub fn measure(env: &Env, t: &Running, load: &Load, label: &str) -> Result<Outcome, String> {
    measure_with(env, env.load_tool, t, load, label)
}

/// [`measure`] with `tool` instead of the run's `--load` (`--rate-from-nginx` calibrates
/// with rwload when oha drives the measured runs).
pub fn measure_with(
    env: &Env,
    tool: Tool,
    t: &Running,
    load: &Load,
    label: &str,
) -> Result<Outcome, String> {
    let h2 = |proto: Proto| -> Result<(Vec<Proc>, Output), String> {
        let (p, log) = h2load::spawn(env, t.addr, load, proto, label)?;
        Ok((vec![p], Output::H2load(log, proto)))
    };
    let (procs_, output) = match (load.http2, tool) {
        (Some(h), _) => h2(Proto::H2(h))?,
        (None, Tool::H2load) => h2(Proto::H1 {
            tls: load.tls.is_some(),
        })?,
        (None, Tool::Wrk) => (crate::wrk::spawn(env, t, load, label)?, Output::Wrk),
        (None, Tool::Oha) => (crate::oha::spawn(env, t, load, label)?, Output::Oha),
        (None, Tool::Rwload) => (spawn_rwload(env, t, load, label)?, Output::Rwload),
    };
    let start = Instant::now();
    let tck = procfs::clk_tck();
    let sample = || {
        (
            Instant::now(),
            procfs::cpu_ticks_sum(&t.cpu_pids),
            procfs::cpus_busy_ticks(&env.gateway_cpus),
        )
    };
    watch_until(&procs_, start + load.warmup)?;
    let s0 = sample();
    watch_until(&procs_, start + load.warmup + load.duration)?;
    let s1 = sample();
    let deadline = start + load.warmup + load.duration + load.timeout + Duration::from_secs(15);
    let mut reports = Vec::with_capacity(procs_.len());
    for p in &procs_ {
        let code = p.wait_exit(deadline)?;
        let out = p.stdout();
        let conns = load.connections / procs_.len().max(1);
        let v: Value = match &output {
            Output::H2load(log, proto) => h2load::report(&out, log, load, *proto).map_err(|e| {
                format!("{}: exit status {code}: {e}\n{}", p.name, p.stderr_tail(10))
            })?,
            Output::Wrk => crate::wrk::report(&out, conns).map_err(|e| {
                format!("{}: exit status {code}: {e}\n{}", p.name, p.stderr_tail(10))
            })?,
            Output::Oha => crate::oha::report(&out, conns, load.rate).map_err(|e| {
                format!("{}: exit status {code}: {e}\n{}", p.name, p.stderr_tail(10))
            })?,
            Output::Rwload => serde_json::from_str(out.trim()).map_err(|e| {
                format!(
                    "{}: exit status {code}, no JSON report ({e}): {}",
                    p.name,
                    p.stderr_tail(10)
                )
            })?,
        };
        reports.push(v);
    }
    if let Some(p) = &t.proc_ {
        if let Some(code) = p.exit_status() {
            return Err(format!(
                "{} exited during the run (status {code}):\n{}",
                p.name,
                p.stderr_tail(15)
            ));
        }
    }
    let mut o = merge(&reports);
    let wall = (s1.0 - s0.0).as_secs_f64();
    if !t.cpu_pids.is_empty() && wall > 0.0 {
        let util = s1.1.saturating_sub(s0.1) as f64 / tck / wall;
        o.gateway_cpu_s = Some(util * o.duration_s);
        o.req_per_cpu_s = (util > 0.0).then(|| o.rps / util);
        if let (Some(b0), Some(b1)) = (s0.2, s1.2) {
            let cores = env.gateway_cpus.len().max(1) as f64;
            o.gateway_cores_busy = Some(b1.saturating_sub(b0) as f64 / tck / wall / cores);
        }
        o.peak_rss_kib = procfs::status_kib_sum(&t.rss_pids, "VmHWM");
    }
    Ok(o)
}

/// One `rwload run` per scenario path (connections and rate split evenly).
fn spawn_rwload(env: &Env, t: &Running, load: &Load, label: &str) -> Result<Vec<Proc>, String> {
    let n = load.paths.len();
    let mut procs_ = Vec::with_capacity(n);
    for (i, path) in load.paths.iter().enumerate() {
        let conns = load.connections / n + usize::from(i < load.connections % n);
        let mut cmd = Command::new(&env.rwload_bin);
        let scheme = if load.tls.is_some() { "https" } else { "http" };
        cmd.arg("run")
            .args(["--url", &format!("{scheme}://{}{path}", t.addr)])
            .args(["-c", &conns.to_string()])
            .args(["-t", &env.load_cpus.len().max(1).to_string()])
            .args(["--cpus", &cpu_list(&env.load_cpus)])
            .args(["-d", &duration_arg(load.duration)])
            .args(["--warmup", &duration_arg(load.warmup)])
            .args(["--timeout", &duration_arg(load.timeout)])
            .args(["-m", &load.method])
            .args(["--body-size", &load.body_size.to_string()])
            .args(["--json", "-q"]);
        if load.json {
            cmd.arg("--body-json");
        }
        if let Some(z) = &load.zipf {
            cmd.args(["--zipf", z]);
        }
        for h in &load.headers {
            cmd.args(["-H", h]);
        }
        if let (Some(mode), Some(files)) = (load.tls, &env.tls) {
            cmd.arg("--cacert")
                .arg(&files.ca)
                .args(["--server-name", crate::tls::SERVER_NAME]);
            if let Some(v) = mode.version {
                cmd.args(["--tls-version", v]);
            }
            match mode.handshakes {
                Handshakes::Keepalive => {}
                Handshakes::Full => {
                    cmd.arg("--new-conn");
                }
                Handshakes::Resumed => {
                    cmd.args(["--new-conn", "--resume"]);
                }
            }
        }
        if let Some(r) = load.rate {
            cmd.args([
                "--rate",
                &format!("{:.3}", r * conns as f64 / load.connections as f64),
            ]);
        }
        let name = format!("rwload-{label}-{i}");
        procs_.push(Proc::spawn(
            &name,
            cmd,
            &env.load_cpus,
            &env.dir,
            Duration::from_secs(2),
        )?);
    }
    Ok(procs_)
}

/// Sleeps until `t`; an rwload instance that exits before its window ended failed.
fn watch_until(procs_: &[Proc], t: Instant) -> Result<(), String> {
    while Instant::now() < t {
        for p in procs_ {
            if let Some(code) = p.exit_status() {
                return Err(format!(
                    "{} exited early (status {code}):\n{}",
                    p.name,
                    p.stderr_tail(10)
                ));
            }
        }
        procs::sleep((t - Instant::now()).min(Duration::from_millis(50)))?;
    }
    Ok(())
}

fn num(v: &Value, path: &[&str]) -> f64 {
    let mut cur = v;
    for k in path {
        cur = &cur[*k];
    }
    cur.as_f64().unwrap_or(0.0)
}

/// Sums counts and throughput over rwload reports; percentiles are the highest.
pub fn merge(reports: &[Value]) -> Outcome {
    let mut o = Outcome::default();
    for r in reports {
        o.requests += r["requests"].as_u64().unwrap_or(0);
        o.rps += num(r, &["rps"]);
        o.duration_s = o.duration_s.max(num(r, &["duration_s"]));
        o.p50_us = o.p50_us.max(num(r, &["latency_us", "p50"]));
        o.p99_us = o.p99_us.max(num(r, &["latency_us", "p99"]));
        o.p999_us = o.p999_us.max(num(r, &["latency_us", "p999"]));
        o.max_us = o.max_us.max(num(r, &["latency_us", "max"]));
        if let Some(errs) = r["errors"].as_object() {
            for (k, v) in errs {
                let n = v.as_u64().unwrap_or(0);
                *o.errors_by_kind.entry(k.clone()).or_default() += n;
                o.errors += n;
            }
        }
        if o.driver.is_empty() {
            o.driver = r["driver"].as_str().unwrap_or("").to_string();
        }
        if let Some(t) = r.get("tls").filter(|t| t.is_object()) {
            let sum = o.tls.get_or_insert_with(TlsSummary::default);
            sum.handshakes_full += t["handshakes_full"].as_u64().unwrap_or(0);
            sum.handshakes_resumed += t["handshakes_resumed"].as_u64().unwrap_or(0);
            if sum.negotiated.is_empty() {
                let f = |k: &str| t[k].as_str().unwrap_or("?").to_string();
                sum.negotiated = format!(
                    "{} {} {} alpn {}",
                    f("version"),
                    f("cipher"),
                    f("group"),
                    f("alpn")
                );
            }
        }
    }
    o.raw = reports.to_vec();
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_sums_counts_and_takes_worst_percentiles() {
        let a: Value = serde_json::from_str(
            r#"{"requests":100,"rps":10.0,"duration_s":10.0,"driver":"io_uring",
                "latency_us":{"p50":5,"p99":50,"p999":90,"max":100},
                "errors":{"connect":1,"timeout":0,"parse":0,"status_4xx":2,"status_5xx":0}}"#,
        )
        .unwrap();
        let b: Value = serde_json::from_str(
            r#"{"requests":300,"rps":30.0,"duration_s":10.01,"driver":"io_uring",
                "latency_us":{"p50":7,"p99":40,"p999":95,"max":80},
                "errors":{"connect":0,"timeout":1,"parse":0,"status_4xx":0,"status_5xx":0}}"#,
        )
        .unwrap();
        let o = merge(&[a, b]);
        assert_eq!(o.requests, 400);
        assert_eq!(o.rps, 40.0);
        assert_eq!(o.duration_s, 10.01);
        assert_eq!(
            (o.p50_us, o.p99_us, o.p999_us, o.max_us),
            (7.0, 50.0, 95.0, 100.0)
        );
        assert_eq!(o.errors, 4);
        assert_eq!(o.errors_by_kind["status_4xx"], 2);
        assert_eq!(o.driver, "io_uring");
    }
}

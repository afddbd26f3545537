//! HTTP/1.1 load with oha (`--load oha`, `cargo install oha`): the command line (one oha per
//! scenario path, connections and rate split evenly, pinned to the load CPUs with one tokio
//! thread per CPU) and oha's JSON output turned into a report of rwload's shape.
//!
//! oha is here for its open loop (issue 15: "p99 at 50 % of nginx's maximum rate, with an
//! outside open-loop tool"): `-q RATE --latency-correction` sends RATE requests per second in
//! total over keep-alive connections and times each from when its tick fired rather than when
//! a connection got to send it, so a queue the server causes is in the latency (coordinated
//! omission corrected, as rwload's open loop does). Without a rate oha runs closed loop (each
//! connection sends its next request when the last response is complete).
//!
//! oha has no warm-up: each instance is a shell that runs a warm-up oha (output discarded) at
//! the same rate and then `exec`s the measured one, which reconnects, so its first request per
//! connection includes a connect (a handful out of the window's, below p99). `-z` ends the run;
//! requests still in flight then are aborted and counted by oha as "aborted due to deadline",
//! which rwcompare drops like rwload drops the request each connection has in flight at the
//! end. `--disable-compression` keeps oha from asking for gzip/br, which rwload, wrk and
//! h2load do not. oha is not a Debian package and is not installed by rwcompare: a missing
//! oha is a command-line error (exit 2) naming `cargo install oha --locked`.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{json, Value};

use crate::procs::Proc;
use crate::scenario::Load;
use crate::targets::{Env, Running};

/// How rwcompare tells a user without oha what to do.
pub const INSTALL_HINT: &str = "oha not found on PATH: install it with `cargo install oha --locked` (crates.io; it is not a Debian package), then make sure ~/.cargo/bin is on PATH";

/// oha on PATH. Only PATH is searched (no fixed fallback), so PATH decides, as in a shell.
pub fn find() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("oha"))
        .find(|p| p.is_file())
}

/// oha's duration syntax (humantime): whole milliseconds.
fn ms(d: Duration) -> String {
    format!("{}ms", d.as_millis().max(1))
}

/// oha's arguments for one instance (everything but the binary) running for `d`.
pub fn args(
    load: &Load,
    url: &str,
    conns: usize,
    rate: Option<f64>,
    threads: usize,
    body: Option<&std::path::Path>,
    d: Duration,
) -> Vec<String> {
    let mut a: Vec<String> = vec![
        "--no-tui".into(),
        "--output-format".into(),
        "json".into(),
        "--disable-compression".into(),
        "--worker-threads".into(),
        threads.max(1).to_string(),
        "-c".into(),
        conns.to_string(),
        "-z".into(),
        ms(d),
        "-t".into(),
        ms(load.timeout),
        "-m".into(),
        load.method.clone(),
    ];
    for h in &load.headers {
        a.push("-H".into());
        a.push(h.clone());
    }
    if let Some(b) = body {
        if load.json && !crate::h2load::has_header(&load.headers, "content-type") {
            a.push("-T".into());
            a.push("application/json".into());
        }
        a.push("-D".into());
        a.push(b.display().to_string());
    }
    if let Some(r) = rate {
        a.push("-q".into());
        a.push(format!("{r:.3}"));
        a.push("--latency-correction".into());
    }
    a.push(url.to_string());
    a
}

/// Spawns one warm-up-then-measure oha per scenario path against `t`.
pub fn spawn(env: &Env, t: &Running, load: &Load, label: &str) -> Result<Vec<Proc>, String> {
    let bin = find().ok_or_else(|| INSTALL_HINT.to_string())?;
    let body = if load.body_size > 0 {
        Some(crate::h2load::body_file(env, load.body_size, load.json)?)
    } else {
        None
    };
    let threads = env.load_cpus.len().max(1);
    let n = load.paths.len();
    let mut procs_ = Vec::with_capacity(n);
    for (i, path) in load.paths.iter().enumerate() {
        let conns = load.connections / n + usize::from(i < load.connections % n);
        let rate = load
            .rate
            .map(|r| r * conns as f64 / load.connections as f64);
        let url = format!("http://{}{path}", t.addr);
        let run = |d: Duration| {
            std::iter::once(bin.display().to_string())
                .chain(args(load, &url, conns, rate, threads, body.as_deref(), d))
                .collect::<Vec<_>>()
        };
        procs_.push(crate::procs::spawn_warm_then_measured(
            &format!("oha-{label}-{i}"),
            &run(load.warmup),
            &run(load.duration),
            env,
        )?);
    }
    Ok(procs_)
}

/// What oha calls a request cut off by `-z` (not the server's doing).
const DEADLINE: &str = "aborted due to deadline";

/// oha's JSON (`--output-format json`) as an rwload-shaped report: requests = responses
/// (every status), latency percentiles from oha's `latencyPercentiles` (seconds, over all
/// responses), errors from `errorDistribution` without the deadline aborts (`timeout`, and
/// everything else as `parse`: connect, read and protocol errors alike) plus 4xx/5xx.
pub fn report(stdout: &str, connections: usize, rate: Option<f64>) -> Result<Value, String> {
    let start = stdout.find('{').ok_or("no JSON object in oha's output")?;
    let o: Value =
        serde_json::from_str(stdout[start..].trim()).map_err(|e| format!("oha's JSON: {e}"))?;
    let total_s = o["summary"]["total"]
        .as_f64()
        .ok_or("oha's JSON has no summary.total")?;
    let mut responses = 0u64;
    let (mut s4, mut s5) = (0u64, 0u64);
    let mut status = serde_json::Map::new();
    if let Some(m) = o["statusCodeDistribution"].as_object() {
        for (code, n) in m {
            let n = n.as_u64().unwrap_or(0);
            responses += n;
            match code.as_bytes().first() {
                Some(b'4') => s4 += n,
                Some(b'5') => s5 += n,
                _ => {}
            }
            status.insert(code.clone(), json!(n));
        }
    }
    let (mut timeout, mut other) = (0u64, 0u64);
    if let Some(m) = o["errorDistribution"].as_object() {
        for (kind, n) in m {
            let n = n.as_u64().unwrap_or(0);
            if kind == DEADLINE {
                continue;
            }
            if kind == "timeout" {
                timeout += n;
            } else {
                other += n;
            }
        }
    }
    let p = &o["latencyPercentiles"];
    let us = |k: &str| {
        p[k].as_f64()
            .filter(|v| v.is_finite())
            .map_or(0.0, |s| s * 1e6)
    };
    let s = &o["summary"];
    let sec_us = |k: &str| {
        s[k].as_f64()
            .filter(|v| v.is_finite())
            .map_or(0.0, |s| s * 1e6)
    };
    let rps = if total_s > 0.0 {
        responses as f64 / total_s
    } else {
        0.0
    };
    Ok(json!({
        "mode": if rate.is_some() { "open" } else { "closed" },
        "rate": rate,
        "driver": "oha",
        "connections": connections,
        "requests": responses,
        "duration_s": total_s,
        "rps": rps,
        "latency_us": {
            "min": sec_us("fastest"), "mean": sec_us("average"),
            "p50": us("p50"), "p90": us("p90"), "p99": us("p99"), "p999": us("p99.9"),
            "max": sec_us("slowest"),
        },
        "errors": {
            "connect": 0,
            "timeout": timeout,
            "parse": other,
            "status_4xx": s4,
            "status_5xx": s5,
        },
        "status": status,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load() -> Load {
        Load {
            method: "POST".into(),
            body_size: 10,
            json: true,
            connections: 50,
            paths: vec!["/x".into()],
            duration: Duration::from_secs(2),
            warmup: Duration::from_secs(1),
            rate: None,
            timeout: Duration::from_secs(5),
            headers: vec!["X-A: 1".into()],
            zipf: None,
            tls: None,
            http2: None,
        }
    }

    #[test]
    fn open_loop_args_keep_alive_with_rate_and_correction() {
        let l = load();
        let a = args(
            &l,
            "http://127.0.0.1:1/x",
            25,
            Some(1000.0),
            1,
            Some(std::path::Path::new("/tmp/b")),
            Duration::from_secs(2),
        );
        let s = a.join(" ");
        assert!(s.contains("-c 25 -z 2000ms"), "{s}");
        assert!(s.contains("-q 1000.000 --latency-correction"), "{s}");
        assert!(
            s.contains("-m POST -H X-A: 1 -T application/json -D /tmp/b"),
            "{s}"
        );
        assert!(!s.contains("disable-keepalive"), "{s}");
        assert_eq!(a.last().map(String::as_str), Some("http://127.0.0.1:1/x"));
        let closed = args(&l, "u", 5, None, 1, None, Duration::from_millis(500)).join(" ");
        assert!(!closed.contains("-q"), "{closed}");
    }

    #[test]
    fn report_reads_oha_json_and_drops_deadline_aborts() {
        let out = r#"{"summary":{"successRate":1.0,"total":2.0,"slowest":0.01,"fastest":0.0001,
            "average":0.0005,"requestsPerSec":1001.0},
            "latencyPercentiles":{"p10":0.0001,"p50":0.0004,"p90":0.0008,"p99":0.002,"p99.9":0.005,"p99.99":0.009},
            "statusCodeDistribution":{"200":1990,"503":4},
            "errorDistribution":{"aborted due to deadline":12,"timeout":1,"connection refused":2}}"#;
        let v = report(out, 50, Some(1000.0)).unwrap();
        assert_eq!(v["requests"], 1994);
        assert_eq!(v["rps"], 997.0);
        assert_eq!(v["mode"], "open");
        let o = crate::load::merge(&[v]);
        assert_eq!(o.p50_us, 400.0);
        assert_eq!(o.p99_us, 2000.0);
        assert_eq!(o.p999_us, 5000.0);
        assert_eq!(o.errors, 1 + 2 + 4);
        assert_eq!(o.errors_by_kind["status_5xx"], 4);
        assert_eq!(o.driver, "oha");
        assert!(report("oops", 50, None).is_err());
    }
}

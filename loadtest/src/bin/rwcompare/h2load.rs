//! Load with h2load (nghttp2-client): HTTP/2 scenarios, and HTTP/1.1 scenarios under
//! `--load h2load` (`--h1`, one request in flight per connection). The command line for one
//! scenario, the readiness probe over HTTP/2, and h2load's text output turned into a report of
//! rwload's JSON shape (so the CPU window, merge and report code serve every tool).
//!
//! Latency percentiles come from h2load's `--log-file` (one line per request of the measured
//! window: start time, status, microseconds to the end of the response), sorted exactly;
//! h2load itself prints only min/max/mean/sd. Open loop is h2load's `--rps` per connection:
//! h2load times a request from when it sends it, not from when it was due, so unlike rwload's
//! open loop a queue building inside the client is not in the latency (no coordinated-omission
//! correction); a measured rate below the requested one shows the server fell behind.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::procs::{self, Proc};
use crate::scenario::{Http2, Load};
use crate::targets::{Env, Probe};

/// The protocol h2load speaks to the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// The scenario's `[http2]`.
    H2(Http2),
    /// `--h1`: HTTP/1.1 keep-alive, one request in flight per connection (`-m 1`), like
    /// rwload's closed loop; `tls` = HTTPS with ALPN http/1.1.
    H1 { tls: bool },
}

impl Proto {
    fn cleartext(self) -> bool {
        match self {
            Proto::H2(h) => h.cleartext,
            Proto::H1 { tls } => !tls,
        }
    }

    fn streams(self) -> usize {
        match self {
            Proto::H2(h) => h.streams,
            Proto::H1 { .. } => 1,
        }
    }

    /// What h2load calls the protocol it must have spoken: `h2` (ALPN), `h2c` or `http/1.1`.
    fn name(self) -> &'static str {
        match self {
            Proto::H2(h) if h.cleartext => "h2c",
            Proto::H2(_) => "h2",
            Proto::H1 { .. } => "http/1.1",
        }
    }
}

/// What Debian calls the package that ships h2load.
pub const PACKAGE: &str = "nghttp2-client";

/// h2load on PATH (or `/usr/bin/h2load`).
pub fn find() -> Option<PathBuf> {
    let usr = PathBuf::from("/usr/bin/h2load");
    if usr.is_file() {
        return Some(usr);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("h2load"))
        .find(|p| p.is_file())
}

/// h2load, installed with apt-get (as root, once) when it is missing, as the repository's
/// scripts install their tools.
pub fn ensure_installed() -> Result<PathBuf, String> {
    ensure_tool(find, "h2load", PACKAGE)
}

/// `find()`'s binary, or `package` installed with apt-get (as root) when it is missing.
pub fn ensure_tool(
    find: fn() -> Option<PathBuf>,
    bin: &str,
    package: &str,
) -> Result<PathBuf, String> {
    if let Some(p) = find() {
        return Ok(p);
    }
    // SAFETY: geteuid has no memory effects.
    let root = unsafe { libc::geteuid() } == 0;
    let apt = Path::new("/usr/bin/apt-get");
    if !(root && apt.is_file()) {
        return Err(format!(
            "{bin} not found: install it with `apt-get install {package}`"
        ));
    }
    eprintln!("rwcompare: {bin} missing: apt-get install -y {package}");
    let ok = Command::new(apt)
        .args(["update", "-qq"])
        .status()
        .is_ok_and(|s| s.success())
        && Command::new(apt)
            .args(["install", "-y", "-qq", package])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .is_ok_and(|s| s.success());
    match (ok, find()) {
        (true, Some(p)) => Ok(p),
        _ => Err(format!(
            "apt-get install {package} failed: {bin} is needed for this load"
        )),
    }
}

/// h2load's duration syntax: whole milliseconds.
fn ms(d: Duration) -> String {
    format!("{}ms", d.as_millis().max(1))
}

/// The URL and connection options every h2load run against `addr` shares: TLS offers only
/// ALPN `h2` (or `http/1.1` with `--h1`) with SNI `localhost` (the certificate's name), h2c
/// uses prior knowledge.
fn target_args(cmd: &mut Command, addr: std::net::SocketAddr, proto: Proto, paths: &[String]) {
    cmd.arg(format!("--connect-to={addr}"));
    if let Proto::H1 { .. } = proto {
        cmd.arg("--h1");
    }
    if !proto.cleartext() {
        cmd.arg(format!("--npn-list={}", proto.name()));
    }
    let scheme = if proto.cleartext() { "http" } else { "https" };
    let host = if proto.cleartext() {
        addr.ip().to_string()
    } else {
        crate::tls::SERVER_NAME.to_string()
    };
    for p in paths {
        cmd.arg(format!("{scheme}://{host}:{}{p}", addr.port()));
    }
}

/// The request body file for POST loads (`-d`), written once per run: `len` bytes of `x`, or
/// with `json` the JSON document rwload's `--body-json` sends (the same generator).
pub fn body_file(env: &Env, len: usize, json: bool) -> Result<PathBuf, String> {
    let kind = if json { "json" } else { "x" };
    let path = env.dir.join(format!("body-{kind}-{len}"));
    if !path.is_file() {
        let body = if json {
            crate::json_body::json_body(len)
        } else {
            vec![b'x'; len]
        };
        std::fs::write(&path, body).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(path)
}

/// Spawns h2load for one measured run against `addr`; the per-request log goes to `log`.
pub fn spawn(
    env: &Env,
    addr: std::net::SocketAddr,
    load: &Load,
    proto: Proto,
    label: &str,
) -> Result<(Proc, PathBuf), String> {
    let bin = env
        .h2load_bin
        .as_ref()
        .ok_or_else(|| format!("h2load not found: apt-get install {PACKAGE}"))?;
    let log = env.dir.join(format!("h2load-{label}.tsv"));
    let threads = env.load_cpus.len().clamp(1, load.connections);
    let mut cmd = Command::new(bin);
    cmd.args(["-c", &load.connections.to_string()])
        .args(["-m", &proto.streams().to_string()])
        .args(["-t", &threads.to_string()])
        .args(["-D", &ms(load.duration)])
        .args([
            "--warm-up-time",
            &ms(load.warmup.max(Duration::from_millis(1))),
        ])
        .arg(format!("--log-file={}", log.display()));
    for h in &load.headers {
        cmd.args(["-H", h]);
    }
    if load.json && !has_header(&load.headers, "content-type") {
        cmd.args(["-H", "Content-Type: application/json"]);
    }
    if load.body_size > 0 {
        cmd.arg("-d")
            .arg(body_file(env, load.body_size, load.json)?);
    }
    if let Some(r) = load.rate {
        cmd.arg(format!("--rps={:.3}", r / load.connections as f64));
    }
    target_args(&mut cmd, addr, proto, &load.paths);
    let name = format!("h2load-{label}");
    let p = Proc::spawn(&name, cmd, &env.load_cpus, &env.dir, Duration::from_secs(2))?;
    Ok((p, log))
}

/// Whether `headers` (`Name: value`) has `name`.
pub fn has_header(headers: &[String], name: &str) -> bool {
    headers.iter().any(|h| {
        h.split_once(':')
            .is_some_and(|(n, _)| n.trim().eq_ignore_ascii_case(name))
    })
}

/// Waits until one HTTP/2 request through `addr` answers 2xx (for h2c listeners that speak no
/// HTTP/1.1, and so a target that cannot negotiate h2 fails before it is measured).
pub fn wait_ok(
    env: &Env,
    proc_: &Proc,
    addr: std::net::SocketAddr,
    probe: &Probe<'_>,
    h2: Http2,
    timeout: Duration,
) -> Result<(), String> {
    let bin = env
        .h2load_bin
        .as_ref()
        .ok_or_else(|| format!("h2load not found: apt-get install {PACKAGE}"))?;
    let deadline = Instant::now() + timeout;
    let want = Proto::H2(h2).name();
    let mut last = String::new();
    while Instant::now() < deadline {
        let mut cmd = Command::new(bin);
        cmd.args(["-n", "1", "-c", "1", "-N", "2s", "-T", "2s"]);
        for h in probe.headers {
            cmd.args(["-H", h]);
        }
        if probe.body_len > 0 {
            cmd.arg("-d")
                .arg(body_file(env, probe.body_len, probe.json)?);
        }
        target_args(&mut cmd, addr, Proto::H2(h2), &[probe.path.to_string()]);
        let out = cmd
            .output()
            .map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
        let text = String::from_utf8_lossy(&out.stdout);
        match parse_summary(&text) {
            Ok(s) if s.status[0] == 1 && s.protocol.as_deref() == Some(want) => return Ok(()),
            Ok(s) if s.protocol.as_deref().is_some_and(|p| p != want) => {
                last = format!("spoke {:?} instead of {want}", s.protocol)
            }
            Ok(s) => last = format!("status counts 2xx..5xx {:?}", s.status),
            Err(e) => last = e,
        }
        if let Some(code) = proc_.exit_status() {
            return Err(format!(
                "{} exited (status {code}) during startup:\n{}",
                proc_.name,
                proc_.stderr_tail(15)
            ));
        }
        procs::sleep(Duration::from_millis(50))?;
    }
    Err(format!(
        "HTTP/2 GET {} through {addr} not ready after {timeout:?} (last: {last})\n{}",
        probe.path,
        proc_.stderr_tail(15)
    ))
}

/// The figures of h2load's summary.
#[derive(Debug, Default, PartialEq)]
pub struct Summary {
    pub rps: f64,
    pub done: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub errored: u64,
    pub timeout: u64,
    /// 2xx, 3xx, 4xx, 5xx.
    pub status: [u64; 4],
    /// min, max, mean of "time for request", microseconds.
    pub request_us: [f64; 3],
    pub tls_protocol: Option<String>,
    pub cipher: Option<String>,
    pub temp_key: Option<String>,
    pub protocol: Option<String>,
}

/// `92us`, `1.23ms`, `1.5s` in microseconds.
fn parse_time(s: &str) -> Option<f64> {
    let (n, mult) = if let Some(n) = s.strip_suffix("us") {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix("ms") {
        (n, 1e3)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1e6)
    } else {
        return None;
    };
    n.parse::<f64>().ok().map(|v| v * mult)
}

/// The number before `word` in a `N word, M word2` list.
fn count_before(line: &str, word: &str) -> u64 {
    line.split(',')
        .find_map(|part| {
            let mut it = part.split_whitespace();
            let n = it.next()?;
            (it.next()? == word).then(|| n.parse().ok())?
        })
        .unwrap_or(0)
}

/// Parses h2load's stdout; Err when the summary lines are missing.
pub fn parse_summary(text: &str) -> Result<Summary, String> {
    let mut s = Summary::default();
    let mut finished = false;
    for line in text.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("finished in ") {
            finished = true;
            s.rps = rest
                .split(',')
                .nth(1)
                .and_then(|p| p.trim().strip_suffix(" req/s"))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0.0);
        } else if let Some(rest) = line.strip_prefix("requests: ") {
            s.done = count_before(rest, "done");
            s.succeeded = count_before(rest, "succeeded");
            s.failed = count_before(rest, "failed");
            s.errored = count_before(rest, "errored");
            s.timeout = count_before(rest, "timeout");
        } else if let Some(rest) = line.strip_prefix("status codes: ") {
            for (i, w) in ["2xx", "3xx", "4xx", "5xx"].iter().enumerate() {
                s.status[i] = count_before(rest, w);
            }
        } else if let Some(rest) = line.strip_prefix("time for request:") {
            let v: Vec<f64> = rest.split_whitespace().filter_map(parse_time).collect();
            if v.len() >= 3 {
                s.request_us = [v[0], v[1], v[2]];
            }
        } else if let Some(v) = line.strip_prefix("TLS Protocol: ") {
            s.tls_protocol = Some(v.to_string());
        } else if let Some(v) = line.strip_prefix("Cipher: ") {
            s.cipher = Some(v.to_string());
        } else if let Some(v) = line.strip_prefix("Server Temp Key: ") {
            s.temp_key = v.split_whitespace().next().map(str::to_string);
        } else if let Some(v) = line.strip_prefix("Application protocol: ") {
            s.protocol = Some(v.to_string());
        }
    }
    if finished {
        Ok(s)
    } else {
        Err("no `finished in` line in h2load's output".into())
    }
}

/// Exact percentiles (p50, p90, p99, p99.9, max) of the durations in h2load's log file.
pub fn log_percentiles(path: &Path) -> Result<[f64; 5], String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("h2load log {}: {e}", path.display()))?;
    let mut v: Vec<u64> = text
        .lines()
        .filter_map(|l| l.split('\t').nth(2)?.trim().parse().ok())
        .collect();
    if v.is_empty() {
        return Ok([0.0; 5]);
    }
    v.sort_unstable();
    let at = |q: f64| {
        let i = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
        v[i] as f64
    };
    Ok([at(0.5), at(0.9), at(0.99), at(0.999), v[v.len() - 1] as f64])
}

/// h2load's run as an rwload-shaped JSON report (`driver` = "h2load"; `errors.parse` holds
/// h2load's failed requests other than timeouts).
pub fn report(stdout: &str, log: &Path, load: &Load, proto: Proto) -> Result<Value, String> {
    let s = parse_summary(stdout)?;
    if s.protocol.as_deref() != Some(proto.name()) {
        return Err(format!(
            "h2load did not speak {} (application protocol {:?})",
            proto.name(),
            s.protocol
        ));
    }
    let p = log_percentiles(log)?;
    let tls = s.tls_protocol.as_ref().map(|v| {
        json!({
            "version": v,
            "cipher": s.cipher.clone().unwrap_or_default(),
            "group": s.temp_key.clone().unwrap_or_default(),
            "alpn": s.protocol.clone().unwrap_or_default(),
            "handshakes_full": load.connections,
            "handshakes_resumed": 0,
        })
    });
    let responses = s.status.iter().sum::<u64>();
    let mut v = json!({
        "mode": if load.rate.is_some() { "open" } else { "closed" },
        "driver": if let Proto::H1 { .. } = proto { "h2load --h1" } else { "h2load" },
        "connections": load.connections,
        "streams": proto.streams(),
        "requests": responses,
        "duration_s": load.duration.as_secs_f64(),
        "rps": s.rps,
        "latency_us": {
            "min": s.request_us[0], "mean": s.request_us[2],
            "p50": p[0], "p90": p[1], "p99": p[2], "p999": p[3], "max": p[4],
        },
        "errors": {
            "connect": 0,
            "timeout": s.timeout,
            "parse": s.failed.saturating_sub(s.timeout),
            "status_4xx": s.status[2],
            "status_5xx": s.status[3],
        },
        "status": {"2xx": s.status[0], "3xx": s.status[1], "4xx": s.status[2], "5xx": s.status[3]},
    });
    if let Some(t) = tls {
        v["tls"] = t;
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUT: &str = "starting benchmark...
spawning thread #0: 50 total client(s). Timing-based test with 1s of warm-up time and 10s of main duration for measurements.
TLS Protocol: TLSv1.3
Cipher: TLS_AES_128_GCM_SHA256
Server Temp Key: X25519 253 bits
Application protocol: h2
Warm-up phase is over for thread #0.

finished in 11.00s, 41234.50 req/s, 1.48MB/s
requests: 412345 total, 412845 started, 412345 done, 412340 succeeded, 5 failed, 5 errored, 0 timeout
status codes: 412338 2xx, 0 3xx, 2 4xx, 0 5xx
traffic: 2.95MB (3024) total, 3.00KB (3072) headers (space savings 51.02%), 384B (384) data
                     min         max         mean         sd        +/- sd
time for request:       92us     12.31ms      1.21ms       52us    76.19%
";

    #[test]
    fn summary_lines_are_read() {
        let s = parse_summary(OUT).unwrap();
        assert_eq!(s.rps, 41234.5);
        assert_eq!(
            (s.done, s.succeeded, s.failed, s.timeout),
            (412345, 412340, 5, 0)
        );
        assert_eq!(s.status, [412338, 0, 2, 0]);
        assert_eq!(s.request_us, [92.0, 12310.0, 1210.0]);
        assert_eq!(s.protocol.as_deref(), Some("h2"));
        assert_eq!(s.temp_key.as_deref(), Some("X25519"));
        assert!(parse_summary("connect failed\n").is_err());
    }

    #[test]
    fn percentiles_are_exact_and_bad_lines_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log.tsv");
        let mut text = String::from("garbage\n1\t200\n");
        for d in 1..=1000 {
            text.push_str(&format!("1796392181094493\t200\t{d}\n"));
        }
        std::fs::write(&log, text).unwrap();
        assert_eq!(
            log_percentiles(&log).unwrap(),
            [500.0, 900.0, 990.0, 999.0, 1000.0]
        );
        std::fs::write(&log, "").unwrap();
        assert_eq!(log_percentiles(&log).unwrap(), [0.0; 5]);
    }
}

//! HTTP/1.1 load with wrk (`--load wrk`): the Lua script that sets the scenario's method,
//! headers and body and prints wrk's figures as JSON at the end, the command line (one wrk
//! per scenario path, connections split evenly, one thread, pinned to the load CPUs), and
//! that JSON turned into a report of rwload's shape.
//!
//! wrk has no warm-up and takes whole seconds only: each instance is a shell that runs a
//! warm-up wrk (output discarded) and then `exec`s the measured one, so the measured wrk
//! reconnects and starts its clock a few ms into rwcompare's CPU window; rwcompare rounds the
//! warm-up and the duration up to whole seconds before it starts (see `whole_seconds`).
//! Errors: wrk's connect, read, write and timeout errors, and responses with status ≥ 400
//! (wrk's `errors.status`); a 3xx is not counted. wrk has no rate control, no Zipf paths and
//! no new connection per request: those loads are refused before anything runs.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{json, Value};

use crate::procs::Proc;
use crate::scenario::Load;
use crate::targets::{Env, Running};

/// What Debian calls the package that ships wrk.
pub const PACKAGE: &str = "wrk";

/// wrk on PATH (or `/usr/bin/wrk`).
pub fn find() -> Option<PathBuf> {
    let usr = PathBuf::from("/usr/bin/wrk");
    if usr.is_file() {
        return Some(usr);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("wrk"))
        .find(|p| p.is_file())
}

/// wrk, installed with apt-get (as root) when it is missing.
pub fn ensure_installed() -> Result<PathBuf, String> {
    crate::h2load::ensure_tool(find, "wrk", PACKAGE)
}

/// `d` rounded up to whole seconds (at least 1 s): wrk's `-d` takes no fractions.
pub fn whole_seconds(d: Duration) -> Duration {
    let s = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    Duration::from_secs(s.max(1))
}

/// A Lua string literal for `s` (printable ASCII kept, everything else as `\ddd`).
fn lua_str(s: &[u8]) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for &b in s {
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(b as char),
            _ => out.push_str(&format!("\\{b:03}")),
        }
    }
    out.push('"');
    out
}

/// The script: method, headers and body of every request, and a `done()` that prints one
/// JSON line (latencies in microseconds, wrk's own percentiles).
pub fn script(load: &Load) -> String {
    let mut s = String::from(
        "-- written by rwcompare: the scenario's request, and wrk's figures as JSON\n",
    );
    s.push_str(&format!(
        "wrk.method = {}\n",
        lua_str(load.method.as_bytes())
    ));
    for h in &load.headers {
        if let Some((n, v)) = h.split_once(':') {
            s.push_str(&format!(
                "wrk.headers[{}] = {}\n",
                lua_str(n.trim().as_bytes()),
                lua_str(v.trim().as_bytes())
            ));
        }
    }
    if load.body_size > 0 {
        let body = if load.json {
            if !crate::h2load::has_header(&load.headers, "content-type") {
                s.push_str("wrk.headers[\"Content-Type\"] = \"application/json\"\n");
            }
            crate::json_body::json_body(load.body_size)
        } else {
            vec![b'x'; load.body_size]
        };
        s.push_str(&format!("wrk.body = {}\n", lua_str(&body)));
    }
    s.push_str(
        r#"function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"timeout":%d,"status_4xx_5xx":%d},' ..
    '"latency_us":{"min":%d,"mean":%.1f,"p50":%d,"p90":%d,"p99":%d,"p999":%d,"max":%d}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.timeout, e.status,
    latency.min, latency.mean, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9), latency.max))
end
"#,
    );
    s
}

/// Spawns one warm-up-then-measure wrk per scenario path against `t`.
pub fn spawn(env: &Env, t: &Running, load: &Load, label: &str) -> Result<Vec<Proc>, String> {
    let bin = find().ok_or_else(|| format!("wrk not found: apt-get install {PACKAGE}"))?;
    let script_path = env.dir.join("wrk-request.lua");
    std::fs::write(&script_path, script(load))
        .map_err(|e| format!("cannot write {}: {e}", script_path.display()))?;
    let n = load.paths.len();
    let mut procs_ = Vec::with_capacity(n);
    for (i, path) in load.paths.iter().enumerate() {
        let conns = load.connections / n + usize::from(i < load.connections % n);
        let run = |d: Duration| {
            vec![
                bin.display().to_string(),
                "-t1".into(),
                format!("-c{conns}"),
                format!("-d{}s", whole_seconds(d).as_secs()),
                format!("--timeout={}s", whole_seconds(load.timeout).as_secs()),
                "-s".into(),
                script_path.display().to_string(),
                format!("http://{}{path}", t.addr),
            ]
        };
        procs_.push(crate::procs::spawn_warm_then_measured(
            &format!("wrk-{label}-{i}"),
            &run(load.warmup),
            &run(load.duration),
            env,
        )?);
    }
    Ok(procs_)
}

/// wrk's output (the last line is the script's JSON) as an rwload-shaped report.
pub fn report(stdout: &str, connections: usize) -> Result<Value, String> {
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .ok_or("no JSON line from the wrk script's done()")?;
    let w: Value =
        serde_json::from_str(line.trim()).map_err(|e| format!("wrk script's JSON: {e}"))?;
    let requests = w["requests"].as_u64().unwrap_or(0);
    let duration_s = w["duration_us"].as_f64().unwrap_or(0.0) / 1e6;
    let rps = if duration_s > 0.0 {
        requests as f64 / duration_s
    } else {
        0.0
    };
    Ok(json!({
        "mode": "closed",
        "driver": "wrk",
        "connections": connections,
        "requests": requests,
        "duration_s": duration_s,
        "rps": rps,
        "bytes": w["bytes"],
        "latency_us": w["latency_us"],
        "errors": w["errors"],
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_seconds_round_up() {
        assert_eq!(whole_seconds(Duration::from_millis(200)).as_secs(), 1);
        assert_eq!(whole_seconds(Duration::from_secs(10)).as_secs(), 10);
        assert_eq!(whole_seconds(Duration::from_millis(1500)).as_secs(), 2);
        assert_eq!(whole_seconds(Duration::ZERO).as_secs(), 1);
    }

    #[test]
    fn lua_strings_escape_quotes_and_bytes() {
        assert_eq!(lua_str(b"a\"b\\c\n"), "\"a\\\"b\\\\c\\010\"");
    }

    #[test]
    fn report_reads_the_script_line() {
        let out = "Running 1s test @ http://x\n{\"requests\":2000,\"duration_us\":1000000,\"bytes\":5,\
            \"errors\":{\"connect\":0,\"read\":1,\"write\":0,\"timeout\":0,\"status_4xx_5xx\":2},\
            \"latency_us\":{\"min\":1,\"mean\":2.0,\"p50\":2,\"p90\":3,\"p99\":4,\"p999\":5,\"max\":6}}\n";
        let v = report(out, 50).unwrap();
        assert_eq!(v["requests"], 2000);
        assert_eq!(v["rps"], 2000.0);
        let o = crate::load::merge(&[v]);
        assert_eq!(o.errors, 3);
        assert_eq!(o.p999_us, 5.0);
        assert!(report("no json", 50).is_err());
    }
}

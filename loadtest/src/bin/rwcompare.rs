//! `rwcompare`: runs one named scenario (`loadtest/scenarios/NAME.toml`) against ringway,
//! nginx (when installed) and the upstream directly, in one run, and prints one table (or one
//! JSON object with `--json`): req/s, p50/p99/p99.9, gateway CPU seconds from /proc, requests
//! per gateway CPU-second, peak RSS, errors and the ringway/nginx ratios; for the `idle`
//! kind, gateway memory per idle keep-alive connection.
//!
//! Pinning: the gateway (ringway's N workers, or N nginx workers) on the first N allowed CPUs,
//! rwload and the upstream on the others (all CPUs shared, with a warning, when none are
//! left, or on request with `--share-cpus`). `--cpu-quota` caps each gateway CPU's share
//! (`cgroup.rs`); `--load` picks the HTTP/1.1 load tool (rwload, wrk, h2load, oha). Every child runs in its own process group and is stopped on exit, error or
//! Ctrl-C; every wait has a deadline.
//!
//! The modules live in `src/bin/rwcompare/` (`#[path]`: a binary root's modules would
//! otherwise sit next to it in `src/bin/`, where Cargo would take them for binaries).
//!
//! Exit codes: 0 every selected target ran, 1 a target failed or setup failed, 2 bad command
//! line or scenario, 130 interrupted.

#[path = "rwcompare/cgroup.rs"]
mod cgroup;
#[path = "rwcompare/h2load.rs"]
mod h2load;
#[path = "rwcompare/idle.rs"]
mod idle;
#[path = "../json_body.rs"]
mod json_body;
#[path = "rwcompare/load.rs"]
mod load;
#[path = "rwcompare/oha.rs"]
mod oha;
#[path = "rwcompare/procfs.rs"]
mod procfs;
#[path = "rwcompare/procs.rs"]
mod procs;
#[path = "rwcompare/report.rs"]
mod report;
#[path = "rwcompare/scenario.rs"]
mod scenario;
#[path = "rwcompare/targets.rs"]
mod targets;
#[path = "rwcompare/tls.rs"]
mod tls;
/// rwload's value parsers, shared so both tools read durations and sizes the same way.
#[path = "../units.rs"]
#[allow(dead_code)]
mod units;
#[path = "rwcompare/wrk.rs"]
mod wrk;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use clap::Parser;

use crate::report::{Calibration, Outcome, Report, Row};
use crate::scenario::{Kind, Load, Scenario};
use crate::targets::{Env, Probe, Running, Target};

const NGINX_HINT: &str = "nginx not found (looked at /usr/sbin/nginx and on PATH): install it with `apt-get install nginx-light` (or pass --nginx-bin)";

#[derive(Parser, Debug)]
#[command(
    name = "rwcompare",
    version,
    about = "Run a load scenario against ringway, nginx and the upstream directly, side by side"
)]
struct Cli {
    /// Scenario name (a file in loadtest/scenarios/) or path to a scenario .toml file.
    #[arg(required_unless_present = "list")]
    scenario: Option<String>,
    /// List the scenarios and exit.
    #[arg(long)]
    list: bool,
    /// Measured window per target (`10s`, `500ms`) [default: the scenario's, else 10s].
    #[arg(long, short = 'd', value_parser = scenario::parse_duration)]
    duration: Option<Duration>,
    /// Load before each measured window [default: the scenario's, else 1s].
    #[arg(long, value_parser = scenario::parse_duration)]
    warmup: Option<Duration>,
    /// Gateway workers: ringway `--workers N`, nginx `worker_processes N`, on CPUs 0..N-1.
    #[arg(long, short = 'w', default_value_t = 1)]
    workers: usize,
    /// Print all results as one JSON object on stdout.
    #[arg(long)]
    json: bool,
    /// Targets to run, comma-separated: ringway,nginx,direct.
    #[arg(long, value_delimiter = ',', default_value = "ringway,nginx,direct")]
    only: Vec<String>,
    /// Open loop at R requests per second in total, for every target.
    #[arg(long, short = 'R', conflicts_with = "rate_from_nginx")]
    rate: Option<f64>,
    /// Load connections in total, instead of the scenario's `[load] connections`
    /// (loadtest/scaling.sh keeps the connections per worker the same across worker counts).
    #[arg(long, short = 'c')]
    connections: Option<usize>,
    /// Measure nginx's closed-loop maximum first, then run every target open loop at this
    /// fraction of it (`0.5`).
    #[arg(long)]
    rate_from_nginx: Option<f64>,
    /// The ringway binary [default: <workspace>/target/release/ringway].
    #[arg(long)]
    gateway_bin: Option<PathBuf>,
    /// The rwload binary [default: <workspace>/target/release/rwload].
    #[arg(long)]
    rwload_bin: Option<PathBuf>,
    /// The nginx binary [default: /usr/sbin/nginx, else nginx on PATH].
    #[arg(long)]
    nginx_bin: Option<PathBuf>,
    /// Directory of named scenarios [default: loadtest/scenarios of this source tree].
    #[arg(long)]
    scenarios_dir: Option<PathBuf>,
    /// Keep the temp dir (configs, logs, rwload outputs) and print its path.
    #[arg(long)]
    keep_temp: bool,
    /// ringway's request metrics: `on` (the default, as shipped) or `off` — to measure what
    /// recording metrics costs.
    #[arg(long, default_value = "on", value_parser = ["on", "off"])]
    metrics: String,
    /// What drives HTTP/1.1 load: `rwload` (bundled), `wrk`, `h2load` (`h2load --h1`) or
    /// `oha` (`cargo install oha`; open loop with `-q RATE --latency-correction`, closed loop
    /// without a rate; with --rate-from-nginx, nginx's closed-loop maximum is measured with
    /// rwload). HTTP/2 scenarios always use h2load. Loads a tool cannot express, and a
    /// missing oha, exit with status 2.
    #[arg(long, default_value = "rwload", value_parser = ["rwload", "wrk", "h2load", "oha"])]
    load: String,
    /// Cap the gateway (ringway, or all of nginx's processes) at PCT percent of each of its
    /// CPUs with cgroups (`cpu.max`, or v1 `cpu.cfs_quota_us`), so that the gateway, not the
    /// load tool, is the bottleneck on a small machine. With `--workers N`, N x PCT in total:
    /// on cgroup v1 one group per gateway CPU (each worker capped at PCT of its CPU), on v2
    /// one shared budget. Needs root and a cgroup cpu controller.
    #[arg(long, value_name = "PCT")]
    cpu_quota: Option<f64>,
    /// Run the load tool and the upstream on every allowed CPU, the gateway's included, as a
    /// run with a worker on every CPU must: a 1-worker run then has the same placement as a
    /// 2-worker one (loadtest/scaling.sh).
    #[arg(long)]
    share_cpus: bool,
    /// nginx does a plain `proxy_pass` (its default request headers, upstream keep-alive)
    /// instead of writing the forwarding headers ringway writes (X-Forwarded-*, Forwarded,
    /// X-Request-Id): the "ringway vs plain nginx" comparison.
    #[arg(long)]
    nginx_plain: bool,
}

/// Why `tool` cannot drive `load` (HTTP/1.1 scenarios), or None.
fn unsupported(tool: load::Tool, load: &Load, rate_from_nginx: bool) -> Option<String> {
    use load::Tool;
    let name = match tool {
        Tool::Rwload => return None,
        Tool::Wrk => "wrk",
        Tool::H2load => "h2load --h1",
        Tool::Oha => "oha",
    };
    if tool == Tool::Wrk && (load.rate.is_some() || rate_from_nginx) {
        return Some("--load wrk: wrk has no rate control (open loop); use --load h2load (h2load --h1 --rps per connection) or --load rwload".into());
    }
    if load.zipf.is_some() {
        return Some(format!("--load {}: the scenario's Zipf-distributed paths (`zipf`) cannot be expressed with {name}; use --load rwload", tool_arg(tool)));
    }
    if load.tls.is_some() && tool == Tool::Oha {
        return Some("--load oha: TLS scenarios are not driven with oha here (rwcompare's CA cannot be handed to it); use --load rwload or --load h2load".into());
    }
    if let Some(t) = load.tls {
        if tool == Tool::Wrk {
            return Some("--load wrk: TLS scenarios are not supported with wrk (it sends the URL's IP as SNI and cannot pin the CA); use --load h2load (keep-alive TLS) or --load rwload".into());
        }
        if t.handshakes != scenario::Handshakes::Keepalive || t.version.is_some() {
            return Some(format!("--load h2load: {name} cannot force a TLS version or a new (or resumed) handshake per request; use --load rwload"));
        }
    }
    if tool == Tool::H2load {
        let plain = (load.method == "GET" && load.body_size == 0)
            || (load.method == "POST" && load.body_size > 0);
        if !plain {
            return Some(format!("--load h2load: h2load sends GET, or POST with a body (-d); {} with a {} B body cannot be expressed; use --load rwload or wrk", load.method, load.body_size));
        }
    }
    None
}

fn tool_arg(tool: load::Tool) -> &'static str {
    match tool {
        load::Tool::Rwload => "rwload",
        load::Tool::Wrk => "wrk",
        load::Tool::H2load => "h2load",
        load::Tool::Oha => "oha",
    }
}

fn main() {
    let cli = Cli::parse();
    let code = match run(cli) {
        Ok(code) => code,
        Err(e) if e == procs::INTERRUPTED => {
            eprintln!("rwcompare: interrupted; every process it started was stopped");
            130
        }
        Err(e) => {
            eprintln!("rwcompare: {e}");
            1
        }
    };
    std::process::exit(code);
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

fn release_bin(given: Option<PathBuf>, name: &str, flag: &str) -> Result<PathBuf, String> {
    let p = given.unwrap_or_else(|| workspace_root().join("target/release").join(name));
    if p.is_file() {
        Ok(p)
    } else {
        Err(format!(
            "missing {name} binary at {}: run `cargo build --release --workspace` first (or pass {flag} PATH)",
            p.display()
        ))
    }
}

fn usage(msg: &str) -> Result<i32, String> {
    eprintln!("rwcompare: {msg}");
    Ok(2)
}

/// Progress goes to stderr; stdout carries only the table or the JSON.
fn progress(msg: &str) {
    eprintln!("rwcompare: {msg}");
}

fn commit() -> Option<String> {
    let root = workspace_root();
    let out = Command::new("git")
        .arg("-C")
        .arg(&root)
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let mut c = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let dirty = Command::new("git")
        .arg("-C")
        .arg(&root)
        .args(["diff", "--quiet", "HEAD"])
        .status()
        .map(|s| !s.success())
        .unwrap_or(false);
    if dirty {
        c.push_str(" (uncommitted changes)");
    }
    Some(format!("commit {c}"))
}

fn run(cli: Cli) -> Result<i32, String> {
    let dir = cli
        .scenarios_dir
        .clone()
        .unwrap_or_else(scenario::default_dir);
    if cli.list {
        for name in scenario::list(&dir) {
            match scenario::load(&name, &dir) {
                Ok(s) => println!("{name:<16}{}", s.description.lines().next().unwrap_or("")),
                Err(e) => println!("{name:<16}(invalid: {e})"),
            }
        }
        return Ok(0);
    }
    let Some(name) = cli.scenario.as_deref() else {
        return usage("a scenario name is needed (see --list)");
    };
    let scn = match scenario::load(name, &dir) {
        Ok(s) => s,
        Err(e) => return usage(&e),
    };
    let mut selected = Vec::new();
    for t in &cli.only {
        match Target::parse(t.trim()) {
            Some(t) if !selected.contains(&t) => selected.push(t),
            Some(_) => {}
            None => {
                return usage(&format!(
                    "--only: unknown target `{t}` (ringway, nginx, direct)"
                ))
            }
        }
    }
    let selected: Vec<Target> = Target::ALL
        .into_iter()
        .filter(|t| selected.contains(t))
        .collect();
    if cli.workers == 0 {
        return usage("--workers must be at least 1");
    }
    if let Some(r) = cli.rate {
        if !(r.is_finite() && r > 0.0) {
            return usage("--rate must be a positive number of requests per second");
        }
    }
    if let Some(f) = cli.rate_from_nginx {
        if !(f.is_finite() && f > 0.0 && f <= 10.0) {
            return usage("--rate-from-nginx must be a fraction such as 0.5");
        }
        if !selected.contains(&Target::Nginx) {
            return usage("--rate-from-nginx needs nginx among the --only targets");
        }
    }
    let load: Option<Load> = scn.load.clone().map(|mut l| {
        if let Some(d) = cli.duration {
            l.duration = d;
        }
        if let Some(w) = cli.warmup {
            l.warmup = w;
        }
        if cli.rate.is_some() {
            l.rate = cli.rate;
        }
        if let Some(c) = cli.connections {
            l.connections = c;
        }
        l
    });
    if cli.connections == Some(0) {
        return usage("--connections must be at least 1");
    }
    if let Some(c) = cli.connections {
        // The gateway holds a client and an upstream socket for every load connection.
        let need = (c as u64).saturating_mul(2).saturating_add(256);
        let nofile = procs::raise_nofile();
        if need > nofile {
            return usage(&format!(
                "--connections {c}: the gateway would need about {need} open files, but only \
                 {nofile} are allowed (raise the hard limit: ulimit -Hn)"
            ));
        }
    }
    if cli.connections.is_some() && scn.kind == Kind::Idle {
        return usage(
            "--connections applies to load scenarios only (idle scenarios set their own count)",
        );
    }
    if scn.kind == Kind::Idle && (cli.rate.is_some() || cli.rate_from_nginx.is_some()) {
        return usage("--rate and --rate-from-nginx apply to load scenarios only");
    }
    if load.as_ref().is_some_and(|l| l.duration.is_zero()) {
        return usage("--duration must be more than 0");
    }
    let Some(load_tool) = load::Tool::parse(&cli.load) else {
        return usage("--load must be rwload, wrk, h2load or oha");
    };
    let mut load = load;
    if load_tool != load::Tool::Rwload {
        match load.as_mut() {
            None => return usage("--load applies to load scenarios, not idle ones"),
            Some(l) if l.http2.is_some() && load_tool == load::Tool::Wrk => {
                return usage("--load wrk: HTTP/2 scenario; wrk speaks HTTP/1.1 only (HTTP/2 scenarios are driven by h2load)")
            }
            Some(l) if l.http2.is_some() && load_tool == load::Tool::Oha => {
                return usage("--load oha: HTTP/2 scenario; HTTP/2 scenarios are driven by h2load (--load applies to HTTP/1.1 ones)")
            }
            Some(l) if l.http2.is_some() => {}
            Some(l) => {
                if let Some(why) = unsupported(load_tool, l, cli.rate_from_nginx.is_some()) {
                    return usage(&why);
                }
                if load_tool == load::Tool::Wrk {
                    // wrk's -d takes whole seconds; the CPU window must match what it runs.
                    let (w, d) = (wrk::whole_seconds(l.warmup), wrk::whole_seconds(l.duration));
                    if (w, d) != (l.warmup, l.duration) {
                        progress(&format!(
                            "wrk takes whole seconds: warmup {:?} -> {w:?}, duration {:?} -> {d:?}",
                            l.warmup, l.duration
                        ));
                    }
                    l.warmup = w;
                    l.duration = d;
                }
            }
        }
    }
    if load_tool == load::Tool::Oha && oha::find().is_none() {
        // Not a Debian package, and a cargo install takes minutes: say how, do not do it.
        return usage(&format!("--load oha: {}", oha::INSTALL_HINT));
    }
    if let Some(q) = cli.cpu_quota {
        if !(q.is_finite() && (1.0..=100.0).contains(&q)) {
            return usage("--cpu-quota must be a percentage of each gateway CPU, from 1 to 100");
        }
    }

    let rwload_bin = release_bin(cli.rwload_bin.clone(), "rwload", "--rwload-bin")?;
    let gateway_bin = if selected.contains(&Target::Ringway) {
        release_bin(cli.gateway_bin.clone(), "ringway", "--gateway-bin")?
    } else {
        cli.gateway_bin.clone().unwrap_or_default()
    };
    let nginx_bin = match &cli.nginx_bin {
        Some(p) if p.is_file() => Some(p.clone()),
        Some(p) => return Err(format!("--nginx-bin {}: no such file", p.display())),
        None => targets::find_nginx(),
    };
    if selected.contains(&Target::Nginx) && nginx_bin.is_none() {
        if cli.rate_from_nginx.is_some() {
            return Err(format!("--rate-from-nginx: {NGINX_HINT}"));
        }
        eprintln!("rwcompare: {NGINX_HINT}; continuing with the other targets");
    }

    let h2load_bin = if scn.http2.is_some() || load_tool == load::Tool::H2load {
        Some(h2load::ensure_installed()?)
    } else {
        None
    };
    if load_tool == load::Tool::Wrk {
        wrk::ensure_installed()?;
    }
    let allowed = procfs::allowed_cpus();
    if cli.workers > allowed.len() {
        return usage(&format!(
            "--workers {} but only {} CPUs are available",
            cli.workers,
            allowed.len()
        ));
    }
    let gateway_cpus = allowed[..cli.workers].to_vec();
    let mut load_cpus = allowed[cli.workers..].to_vec();
    let shared_cpus = load_cpus.is_empty();
    if shared_cpus && cli.cpu_quota.is_some() {
        progress(&format!(
            "{} CPUs for {} gateway workers: the load and upstream share them, and the quota \
             keeps the gateway the bottleneck (compare req/CPU-s; see loadtest/scaling.sh)",
            allowed.len(),
            cli.workers
        ));
        load_cpus = allowed.clone();
    } else if shared_cpus {
        eprintln!(
            "rwcompare: warning: {} CPUs for {} gateway workers leaves none for the load side; \
             everything shares all CPUs, so the numbers are not a fair comparison \
             (--cpu-quota keeps the gateway the bottleneck: see loadtest/scaling.sh)",
            allowed.len(),
            cli.workers
        );
        load_cpus = allowed.clone();
    }
    if cli.share_cpus && !shared_cpus {
        // Same placement as a run with a worker on every CPU (scaling comparisons).
        load_cpus = allowed.clone();
    }
    let quota = match cli.cpu_quota {
        Some(p) => {
            let q = cgroup::Quota::create(p, &gateway_cpus)?;
            progress(&format!("gateway CPU quota: {}", q.summary()));
            Some(q)
        }
        None => None,
    };
    let nofile = procs::raise_nofile();
    if let Some(i) = &scn.idle {
        if (i.connections as u64) + 256 > nofile {
            eprintln!(
                "rwcompare: warning: {} connections but only {nofile} open files allowed (raise the hard limit: ulimit -Hn)",
                i.connections
            );
        }
    }
    procs::install_signal_handlers()?;
    procs::pin_self(&load_cpus);
    let tmp = tempfile::Builder::new()
        .prefix("rwcompare-")
        .tempdir()
        .map_err(|e| format!("cannot create a temp dir: {e}"))?;
    // `redis = true`: one private redis-server for every ringway run (stopped on drop).
    let redis = if scn.ringway.redis && selected.contains(&Target::Ringway) {
        progress("starting a private redis-server");
        Some(targets::start_redis(tmp.path(), &load_cpus)?)
    } else {
        None
    };
    let env = Env {
        redis: redis.as_ref().map(|(_, addr)| addr.clone()),
        gateway_bin,
        rwload_bin,
        nginx_bin,
        workers: cli.workers,
        gateway_cpus: gateway_cpus.clone(),
        load_cpus: load_cpus.clone(),
        dir: tmp.path().to_path_buf(),
        nofile,
        ringway_extra: if cli.metrics == "off" {
            "\n[metrics]\nenabled = false\n".to_string()
        } else {
            String::new()
        },
        tls: match scn.tls {
            Some(_) => Some(tls::generate(tmp.path())?),
            None => None,
        },
        h2load_bin,
        load_tool,
        quota,
        nginx_plain: cli.nginx_plain,
    };

    let result = run_targets(&cli, &env, &scn, load.as_ref(), &selected);
    if cli.keep_temp {
        eprintln!(
            "rwcompare: configs and logs kept in {}",
            tmp.keep().display()
        );
    }
    let (rows, calibration, effective_load) = result?;
    let failed = rows.iter().any(|r| matches!(r.outcome, Outcome::Failed(_)));
    let report = Report {
        scn: &scn,
        load: effective_load.as_ref(),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        machine: procfs::machine(),
        commit: commit(),
        workers: cli.workers,
        gateway_cpus,
        load_cpus,
        shared_cpus,
        share_asked: cli.share_cpus,
        calibration,
        load_tool: load_tool.describe(scn.http2.is_some()),
        cpu_quota: env.quota.as_ref().map(cgroup::Quota::summary),
        rows,
    };
    if cli.json {
        println!("{}", report.json());
    } else {
        print!("{}", report.table());
    }
    Ok(if failed { 1 } else { 0 })
}

type RunResult = (Vec<Row>, Option<Calibration>, Option<Load>);

/// Starts the upstream, then each target in turn (started, measured, stopped).
fn run_targets(
    cli: &Cli,
    env: &Env,
    scn: &Scenario,
    load: Option<&Load>,
    selected: &[Target],
) -> Result<RunResult, String> {
    progress(&format!(
        "starting the upstream on {}",
        cpus_text(&env.load_cpus)
    ));
    let (upstream, up_addr) = targets::start_upstream(env, scn)?;
    let (method, path, body_len) = match (load, &scn.idle) {
        // A `--zipf` path probes with a key the load never asks for.
        (Some(l), _) => (
            l.method.clone(),
            l.paths[0].replace("{k}", "probe"),
            l.body_size,
        ),
        (None, Some(i)) => ("GET".to_string(), i.path.clone(), 0),
        (None, None) => return Err("scenario has neither [load] nor [idle]".into()),
    };
    let probe = Probe {
        method: &method,
        path: &path,
        body_len,
        json: load.is_some_and(|l| l.json),
        headers: load.map_or(&[][..], |l| &l.headers[..]),
    };
    let upstream_probe = Probe {
        headers: &[],
        ..probe
    };
    procs::wait_http_ok(
        Some(&upstream),
        up_addr,
        &upstream_probe,
        None,
        Duration::from_secs(10),
    )?;

    let mut load = load.cloned();
    let mut calibration = None;
    if let (Some(f), Some(l)) = (cli.rate_from_nginx, load.as_mut()) {
        let mut closed = l.clone();
        closed.rate = None;
        progress(&format!(
            "nginx: measuring its closed-loop maximum ({:?} after {:?} warmup)",
            closed.duration, closed.warmup
        ));
        let t = targets::start_nginx(env, scn, up_addr, &probe)?;
        env.confine(&t)?;
        // oha calibrates with rwload: the maximum must be nginx's, not the load tool's, and
        // oha's closed loop (tokio, one thread per load CPU) may top out below nginx.
        let tool = match env.load_tool {
            load::Tool::Oha => load::Tool::Rwload,
            t => t,
        };
        if tool != env.load_tool {
            progress("nginx: its closed-loop maximum is measured with rwload");
        }
        let o = load::measure_with(env, tool, &t, &closed, "nginx-max")?;
        drop(t);
        if o.rps <= 0.0 {
            return Err("nginx served nothing in the calibration run".into());
        }
        let rate = f * o.rps;
        l.rate = Some(rate);
        calibration = Some(Calibration {
            fraction: f,
            nginx_rps: o.rps,
            rate,
            tool: tool_arg(tool),
        });
        progress(&format!(
            "nginx max {:.0} req/s: running every target at {rate:.0} req/s",
            o.rps
        ));
    }

    let mut rows = Vec::new();
    for &target in selected {
        if target == Target::Direct && (scn.tls.is_some() || scn.http2.is_some()) {
            let why = if scn.http2.is_some() {
                "HTTP/2 scenario: the upstream speaks HTTP/1.1; HTTP/2 is measured at the gateways"
            } else {
                "TLS scenario: the upstream speaks plain HTTP; TLS is measured at the gateways"
            };
            rows.push(Row {
                target,
                variant: None,
                note: String::new(),
                outcome: Outcome::Skipped(why.into()),
            });
            continue;
        }
        if target == Target::Nginx && env.nginx_bin.is_none() {
            rows.push(Row {
                target,
                variant: None,
                note: String::new(),
                outcome: Outcome::Skipped(NGINX_HINT.into()),
            });
            continue;
        }
        // ringway runs once per scenario variant (one row each); the others once.
        let variants: Vec<Option<&(String, String)>> =
            if target == Target::Ringway && !scn.ringway.variants.is_empty() {
                scn.ringway.variants.iter().map(Some).collect()
            } else {
                vec![None]
            };
        for v in variants {
            let row = run_one(
                env,
                scn,
                load.as_ref(),
                target,
                v,
                &upstream,
                up_addr,
                &probe,
            )?;
            rows.push(row);
        }
    }
    drop(upstream);
    Ok((rows, calibration, load))
}

/// Starts `target` (with ringway `variant`'s extra TOML), measures it, stops it. `Err` only
/// when interrupted; a failure is the row's outcome.
#[allow(clippy::too_many_arguments)]
fn run_one(
    env: &Env,
    scn: &Scenario,
    load: Option<&Load>,
    target: Target,
    variant: Option<&(String, String)>,
    upstream: &procs::Proc,
    up_addr: std::net::SocketAddr,
    probe: &Probe<'_>,
) -> Result<Row, String> {
    let label = match variant {
        Some((name, _)) => format!("{}-{name}", target.name()),
        None => target.name().to_string(),
    };
    let row = |note: String, outcome: Outcome| Row {
        target,
        variant: variant.map(|(n, _)| n.clone()),
        note,
        outcome,
    };
    progress(&format!("{label}: starting"));
    let extra = variant.map_or("", |(_, config)| config.as_str());
    let started: Result<Running, String> = match target {
        Target::Ringway => targets::start_ringway(env, scn, extra, up_addr, probe),
        Target::Nginx => targets::start_nginx(env, scn, up_addr, probe),
        Target::Direct => Ok(targets::direct(upstream, up_addr)),
    };
    let t = match started {
        Err(e) if e == procs::INTERRUPTED => return Err(e),
        Err(e) => return Ok(row(String::new(), Outcome::Failed(e))),
        Ok(t) => t,
    };
    if let Err(e) = env.confine(&t) {
        return Ok(row(String::new(), Outcome::Failed(e)));
    }
    let measured = match (load, &scn.idle) {
        (Some(l), _) => {
            progress(&format!(
                "{label}: measuring {:?} after {:?} warmup",
                l.duration, l.warmup
            ));
            load::measure(env, &t, l, &label).map(|o| Outcome::Load(Box::new(o)))
        }
        (None, Some(i)) => {
            progress(&format!(
                "{label}: opening {} idle connections",
                i.connections
            ));
            idle::measure(&t, i, env.tls.as_ref()).map(Outcome::Idle)
        }
        (None, None) => Err("scenario has neither [load] nor [idle]".to_string()),
    };
    let note = t.note.clone();
    drop(t);
    match measured {
        Err(e) if e == procs::INTERRUPTED => Err(e),
        Err(e) => Ok(row(String::new(), Outcome::Failed(e))),
        Ok(o) => Ok(row(note, o)),
    }
}

fn cpus_text(c: &[usize]) -> String {
    format!("CPUs {}", targets::cpu_list(c))
}

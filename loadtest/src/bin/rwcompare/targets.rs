//! The things a scenario runs against: the bundled upstream, ringway and nginx with configs
//! written for the scenario, or the upstream directly. Both gateway configs are derived from
//! the same route list and do the same work per request (see `nginx_config`).

use std::collections::HashSet;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::procfs;
use crate::procs::{self, Proc};
use crate::scenario::{RouteMatch, Scenario};
use crate::tls::TlsFiles;

/// Idle keep-alive connections each gateway keeps per worker to the upstream, unless the
/// scenario says otherwise (`[upstream] keepalive`).
pub const UPSTREAM_KEEPALIVE: usize = 256;

/// What a run measures against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Ringway,
    Nginx,
    Direct,
}

impl Target {
    pub const ALL: [Target; 3] = [Target::Ringway, Target::Nginx, Target::Direct];

    pub fn name(self) -> &'static str {
        match self {
            Target::Ringway => "ringway",
            Target::Nginx => "nginx",
            Target::Direct => "direct",
        }
    }

    pub fn parse(s: &str) -> Option<Target> {
        Target::ALL.into_iter().find(|t| t.name() == s)
    }
}

/// Binaries, CPUs and the temp dir shared by everything in one run.
pub struct Env {
    pub gateway_bin: PathBuf,
    pub rwload_bin: PathBuf,
    pub nginx_bin: Option<PathBuf>,
    pub workers: usize,
    pub gateway_cpus: Vec<usize>,
    /// Load generator and upstream.
    pub load_cpus: Vec<usize>,
    pub dir: PathBuf,
    /// Soft open-file limit the children inherit.
    pub nofile: u64,
    /// TOML appended to ringway's generated config (e.g. `[metrics] enabled = false`).
    pub ringway_extra: String,
    /// TLS scenarios: the certificate both gateways serve.
    pub tls: Option<TlsFiles>,
    /// HTTP/2 scenarios: the h2load binary (None when not installed).
    pub h2load_bin: Option<PathBuf>,
    /// `redis = true` scenarios: the private redis-server's `host:port` (`{redis}`).
    pub redis: Option<String>,
    /// `--load`: what drives HTTP/1.1 load.
    pub load_tool: crate::load::Tool,
    /// `--cpu-quota`: the cgroup every started gateway is moved into.
    pub quota: Option<crate::cgroup::Quota>,
    /// `--nginx-plain`: nginx proxies without the forwarding headers ringway writes.
    pub nginx_plain: bool,
}

impl Env {
    /// Moves a started gateway's processes into the `--cpu-quota` cgroup (none for `direct`).
    pub fn confine(&self, t: &Running) -> Result<(), String> {
        match &self.quota {
            Some(q) if t.target != Target::Direct => {
                t.cpu_pids.iter().try_for_each(|&pid| q.add(pid))
            }
            _ => Ok(()),
        }
    }
}

/// A started target, stopped on drop.
pub struct Running {
    pub target: Target,
    pub addr: SocketAddr,
    pub proc_: Option<Proc>,
    /// Processes whose CPU time is the gateway's (ringway; nginx master + workers).
    pub cpu_pids: Vec<i32>,
    /// Processes whose memory is summed (ringway; nginx workers; the upstream for direct).
    pub rss_pids: Vec<i32>,
    /// Driver or worker facts from the logs.
    pub note: String,
}

/// The bundled upstream (`rwload upstream`) on a free port, pinned to the load CPUs.
pub fn start_upstream(env: &Env, scn: &Scenario) -> Result<(Proc, SocketAddr), String> {
    let mut cmd = Command::new(&env.rwload_bin);
    cmd.args(["upstream", "--listen", "127.0.0.1:0"])
        .args(["--threads", &env.load_cpus.len().max(1).to_string()])
        .args(["--cpus", &cpu_list(&env.load_cpus)])
        .args(["--body-size", &scn.response_body.to_string()])
        .args(["--delay", &duration_arg(scn.upstream_delay)]);
    if scn.response_json {
        cmd.arg("--json");
    }
    if let Some(t) = &scn.response_text {
        cmd.args(["--body-text", t]);
    }
    let p = Proc::spawn(
        "upstream",
        cmd,
        &env.load_cpus,
        &env.dir,
        Duration::from_secs(3),
    )?;
    let addr = procs::wait_line(&p, "listening on ", Duration::from_secs(10))?;
    let addr: SocketAddr = addr
        .parse()
        .map_err(|_| format!("upstream printed an unexpected address `{addr}`"))?;
    Ok((p, addr))
}

/// The upstream itself as a target.
pub fn direct(upstream: &Proc, addr: SocketAddr) -> Running {
    Running {
        target: Target::Direct,
        addr,
        proc_: None,
        cpu_pids: Vec::new(),
        rss_pids: vec![upstream.pid()],
        note: String::new(),
    }
}

/// A request that must answer 200 before a gateway counts as ready.
pub struct Probe<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub body_len: usize,
    /// The body is the load's JSON document (`[load] json`), sent as application/json.
    pub json: bool,
    /// Headers the load sends (API keys, tokens), so a policy route answers 200.
    pub headers: &'a [String],
}

/// Starts ringway with a config for `scn`, pinned to the gateway CPUs (its workers pin
/// themselves to the CPUs they are allowed, in order).
pub fn start_ringway(
    env: &Env,
    scn: &Scenario,
    variant: &str,
    upstream: SocketAddr,
    probe: &Probe<'_>,
) -> Result<Running, String> {
    let port = procs::free_port()?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let file = env.dir.join("ringway.toml");
    let mut config = ringway_config(scn, addr, upstream, env.workers, env.tls.as_ref());
    let dir = env.dir.display().to_string();
    for (name, content) in &scn.ringway.files {
        let path = env.dir.join(name);
        std::fs::write(&path, content)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    config.push('\n');
    let redis = env.redis.as_deref().unwrap_or("");
    for part in [&scn.ringway.config[..], variant] {
        config.push('\n');
        config.push_str(&part.replace("{dir}", &dir).replace("{redis}", redis));
    }
    config.push_str(&env.ringway_extra);
    std::fs::write(&file, config).map_err(|e| format!("cannot write {}: {e}", file.display()))?;
    let mut cmd = Command::new(&env.gateway_bin);
    cmd.arg("--config")
        .arg(&file)
        .args(["--workers", &env.workers.to_string()]);
    let p = Proc::spawn(
        "ringway",
        cmd,
        &env.gateway_cpus,
        &env.dir,
        Duration::from_secs(3),
    )?;
    wait_ready(env, scn, &p, addr, probe)?;
    let logs = std::fs::read_to_string(&p.stderr_path).unwrap_or_default();
    let note = logs
        .lines()
        .filter(|l| l.contains("driver"))
        .filter_map(|l| l.split_once("worker ").map(|(_, w)| format!("worker {w}")))
        .collect::<Vec<_>>()
        .join("; ");
    let pid = p.pid();
    Ok(Running {
        target: Target::Ringway,
        addr,
        proc_: Some(p),
        cpu_pids: vec![pid],
        rss_pids: vec![pid],
        note,
    })
}

/// Waits until the gateway answers the probe 200: over HTTP/2 (h2load) for HTTP/2 scenarios,
/// whose h2c listeners may speak no HTTP/1.1, else with the HTTP/1.1 probe.
fn wait_ready(
    env: &Env,
    scn: &Scenario,
    p: &Proc,
    addr: SocketAddr,
    probe: &Probe<'_>,
) -> Result<(), String> {
    let timeout = Duration::from_secs(15);
    match scn.http2 {
        Some(h2) => crate::h2load::wait_ok(env, p, addr, probe, h2, timeout),
        None => procs::wait_http_ok(Some(p), addr, probe, env.tls.as_ref(), timeout),
    }
}

/// Starts nginx (master + `workers` workers) with a config for `scn`.
pub fn start_nginx(
    env: &Env,
    scn: &Scenario,
    upstream: SocketAddr,
    probe: &Probe<'_>,
) -> Result<Running, String> {
    let bin = env
        .nginx_bin
        .as_ref()
        .ok_or_else(|| "nginx is not installed".to_string())?;
    let port = procs::free_port()?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let dir = env.dir.join("nginx");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let conf = dir.join("nginx.conf");
    // SAFETY: geteuid has no memory effects.
    let root = unsafe { libc::geteuid() } == 0;
    let text = nginx_config(&NginxParams {
        scn,
        addr,
        upstream,
        cpus: &env.gateway_cpus,
        dir: &dir,
        nofile: env.nofile,
        root,
        tls: env.tls.as_ref(),
        http2_on: nginx_version(bin) >= vec![1, 25, 1],
        plain: env.nginx_plain,
    });
    std::fs::write(&conf, text).map_err(|e| format!("cannot write {}: {e}", conf.display()))?;
    let mut cmd = Command::new(bin);
    cmd.arg("-p").arg(&dir).arg("-c").arg(&conf);
    if supports_error_log_flag(bin) {
        // Otherwise nginx opens its compiled-in error log before reading the config.
        cmd.arg("-e").arg(dir.join("error.log"));
    }
    let p = Proc::spawn(
        "nginx",
        cmd,
        &env.gateway_cpus,
        &env.dir,
        Duration::from_secs(3),
    )?;
    if let Err(e) = wait_ready(env, scn, &p, addr, probe) {
        let log = std::fs::read_to_string(dir.join("error.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(10).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        return Err(format!("{e}\nnginx error.log:\n{}", tail.join("\n")));
    }
    let master = p.pid();
    let deadline = Instant::now() + Duration::from_secs(5);
    let workers = loop {
        let w = procfs::children_of(master);
        if w.len() >= env.workers || Instant::now() >= deadline {
            break w;
        }
        procs::sleep(Duration::from_millis(20))?;
    };
    if workers.is_empty() {
        return Err("nginx started but no worker process was found".into());
    }
    let mut cpu_pids = vec![master];
    cpu_pids.extend(&workers);
    let note = format!(
        "master pid {master}, worker pids {workers:?}, worker_cpu_affinity on {}, worker_connections {}",
        cpu_list(&env.gateway_cpus),
        worker_connections(env.nofile)
    );
    Ok(Running {
        target: Target::Nginx,
        addr,
        proc_: Some(p),
        cpu_pids,
        rss_pids: workers,
        note,
    })
}

/// `nginx -e` exists from 1.19.5 on.
fn supports_error_log_flag(bin: &Path) -> bool {
    nginx_version(bin) >= vec![1, 19, 5]
}

/// `[1, 22, 1]` from `nginx -v`; empty when it cannot be read.
fn nginx_version(bin: &Path) -> Vec<u32> {
    let Ok(out) = Command::new(bin).arg("-v").output() else {
        return Vec::new();
    };
    let text = String::from_utf8_lossy(&out.stderr);
    let Some(v) = text.split("nginx/").nth(1) else {
        return Vec::new();
    };
    v.split(|c: char| !c.is_ascii_digit())
        .take(3)
        .filter_map(|n| n.parse().ok())
        .collect()
}

/// Where nginx is: `/usr/sbin/nginx`, else the first `nginx` on PATH.
pub fn find_nginx() -> Option<PathBuf> {
    let sbin = PathBuf::from("/usr/sbin/nginx");
    if sbin.is_file() {
        return Some(sbin);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("nginx"))
        .find(|p| p.is_file())
}

/// `0,2,3` for rwload's `--cpus`.
pub fn cpu_list(cpus: &[usize]) -> String {
    cpus.iter()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// A duration as rwload parses it.
pub fn duration_arg(d: Duration) -> String {
    if d.is_zero() {
        "0".into()
    } else {
        format!("{}us", d.as_micros().max(1))
    }
}

fn toml_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The ringway config: one listener (TLS with `tls`), upstream `be`, the scenario's routes
/// all proxied to it.
pub fn ringway_config(
    scn: &Scenario,
    addr: SocketAddr,
    upstream: SocketAddr,
    workers: usize,
    tls: Option<&TlsFiles>,
) -> String {
    // HTTP/2 needs nothing on a TLS listener (ALPN offers h2 first by default); h2c is
    // opted into per plain listener.
    let mut s = String::with_capacity(64 * scn.routes.len() + 512);
    let _ = write!(
        s,
        "# Written by rwcompare for scenario {}.\nversion = 1\n\n[server]\nworkers = {workers}\n\
         drain_timeout = \"1s\"\n\n[admin]\nenabled = false\n\n[[listeners]]\nname = \"bench\"\naddress = \"{addr}\"\n",
        scn.name
    );
    if scn.http2.is_some_and(|h| h.cleartext) {
        s.push_str("h2c = true\n");
    }
    if let Some(t) = tls {
        let _ = writeln!(
            s,
            "[listeners.tls]\ncertificates = [{{ cert = {}, key = {} }}]",
            toml_str(&t.cert.display().to_string()),
            toml_str(&t.key.display().to_string())
        );
    }
    let _ = write!(
        s,
        "\n[upstreams.be]\ntargets = [{{ address = \"{upstream}\" }}]\nmax_idle = {}\n",
        scn.upstream_keepalive
    );
    for (i, r) in scn.routes.iter().enumerate() {
        let (key, p) = match r {
            RouteMatch::Path(p) => ("path", p),
            RouteMatch::Prefix(p) => ("prefix", p),
        };
        let _ = write!(
            s,
            "\n[[routes]]\nname = \"r{i}\"\n{key} = {}\nproxy = {{ upstream = \"be\" }}\n",
            toml_str(p)
        );
        if !scn.ringway.policies.is_empty() {
            let names: Vec<String> = scn.ringway.policies.iter().map(|n| toml_str(n)).collect();
            let _ = writeln!(s, "policies = [{}]", names.join(", "));
        }
    }
    s
}

/// nginx `location` lines equivalent to the route list: exact paths become `location =`,
/// prefixes `location = P` plus `location P/` (ringway prefixes are segment-aware), and
/// templates a prefix location on their literal part before the first `{` (nginx's static
/// location tree; regex locations would be tried one by one).
pub fn nginx_locations(routes: &[RouteMatch]) -> Vec<String> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    let mut push = |loc: String| {
        if seen.insert(loc.clone()) {
            out.push(loc);
        }
    };
    for r in routes {
        match r {
            RouteMatch::Prefix(p) if p == "/" || p.ends_with('/') => push(p.clone()),
            RouteMatch::Prefix(p) => {
                push(format!("= {p}"));
                push(format!("{p}/"));
            }
            RouteMatch::Path(p) => match p.find('{') {
                None => push(format!("= {p}")),
                Some(i) => push(p[..i].to_string()),
            },
        }
    }
    out
}

/// nginx `worker_connections` (client and upstream connections per worker) for an open-file
/// limit: as many as the limit allows, within 1024..=65536.
fn worker_connections(nofile: u64) -> u64 {
    nofile.clamp(1024, 65536)
}

/// nginx's TLS 1.2 suites in ringway's order (AEAD with ECDHE only, AES-128-GCM first).
const NGINX_TLS12_CIPHERS: &str = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:\
     ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:\
     ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";
/// nginx's TLS 1.3 suites in ringway's order.
const NGINX_TLS13_SUITES: &str =
    "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256";

/// Inputs of [`nginx_config`].
pub struct NginxParams<'a> {
    pub scn: &'a Scenario,
    pub addr: SocketAddr,
    pub upstream: SocketAddr,
    /// One worker per CPU, pinned with `worker_cpu_affinity`.
    pub cpus: &'a [usize],
    pub dir: &'a Path,
    pub nofile: u64,
    /// Running as root: `user root;` (otherwise workers would switch to nobody).
    pub root: bool,
    /// Serve HTTPS with this certificate.
    pub tls: Option<&'a TlsFiles>,
    /// nginx 1.25.1 and later: HTTP/2 with `http2 on;` (older: the `http2` listen flag).
    pub http2_on: bool,
    /// A plain `proxy_pass` (nginx's default request headers), not ringway's header work.
    pub plain: bool,
}

/// The nginx config: one worker per ringway worker on the same CPUs, access log off,
/// upstream keep-alive, and the same request headers ringway adds (Host kept,
/// X-Forwarded-*, Forwarded, X-Request-Id also on the response) so both do the same work.
pub fn nginx_config(p: &NginxParams<'_>) -> String {
    let d = p.dir.display();
    let masks: Vec<String> = p
        .cpus
        .iter()
        .map(|&c| {
            let mut m = "0".repeat(c + 1);
            m.replace_range(0..1, "1");
            m
        })
        .collect();
    let conns = worker_connections(p.nofile);
    let mut s = String::with_capacity(48 * p.scn.routes.len() + 2048);
    let _ = writeln!(
        s,
        "# Written by rwcompare for scenario {}: the equivalent of its ringway config.",
        p.scn.name
    );
    let _ = writeln!(s, "worker_processes {};", p.cpus.len());
    let _ = writeln!(s, "worker_cpu_affinity {};", masks.join(" "));
    let _ = writeln!(s, "worker_rlimit_nofile {};", p.nofile);
    s.push_str("daemon off;\nmaster_process on;\n");
    if p.root {
        s.push_str("user root;\n");
    }
    let _ = writeln!(s, "pid {d}/nginx.pid;\nerror_log {d}/error.log warn;");
    let _ = writeln!(s, "events {{\n    worker_connections {conns};\n}}");
    s.push_str("http {\n    access_log off;\n");
    s.push_str("    keepalive_timeout 60s;\n    keepalive_requests 1000000;\n");
    s.push_str("    client_max_body_size 10m;\n");
    for line in p.scn.nginx.http.lines().filter(|l| !l.trim().is_empty()) {
        let _ = writeln!(s, "    {}", line.trim().replace("{dir}", &d.to_string()));
    }
    for (what, sub) in [
        ("client_body_temp_path", "client_body"),
        ("proxy_temp_path", "proxy"),
        ("fastcgi_temp_path", "fastcgi"),
        ("uwsgi_temp_path", "uwsgi"),
        ("scgi_temp_path", "scgi"),
    ] {
        let _ = writeln!(s, "    {what} {d}/{sub};");
    }
    let _ = writeln!(
        s,
        "    upstream be {{\n        server {};\n        keepalive {};\n        \
         keepalive_requests 1000000;\n        keepalive_timeout 60s;\n    }}",
        p.upstream, p.scn.upstream_keepalive
    );
    // Upstream keep-alive needs HTTP/1.1 and no `Connection: close`, in either variant.
    s.push_str("    proxy_http_version 1.1;\n    proxy_set_header Connection \"\";\n");
    if !p.plain {
        s.push_str(
            "    # The headers ringway sends upstream, so both gateways do the same work.\n\
         \x20   proxy_set_header Host $http_host;\n\
         \x20   proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n\
         \x20   proxy_set_header X-Forwarded-Proto $scheme;\n\
         \x20   proxy_set_header X-Forwarded-Host $http_host;\n\
         \x20   proxy_set_header Forwarded \"for=$remote_addr;proto=$scheme;host=\\\"$http_host\\\"\";\n\
         \x20   proxy_set_header X-Request-Id $request_id;\n\
         \x20   add_header X-Request-Id $request_id always;\n",
        );
    }
    // HTTP/2 scenarios: nginx's defaults match ringway's (128 concurrent streams per
    // connection); before 1.25.1 the listen flag, which on a plain port means h2c only.
    let h2 = match (p.scn.http2.is_some(), p.http2_on) {
        (true, false) => " http2",
        _ => "",
    };
    match p.tls {
        None => {
            let _ = writeln!(s, "    server {{\n        listen {}{h2} reuseport;", p.addr);
        }
        Some(t) => {
            // TLSv1.3 spelled out: nginx before 1.23.4 leaves it out of the default. The
            // server's suite order, AES-128-GCM first, as ringway's listeners choose, so both
            // negotiate the same suite whatever the client lists first.
            let _ = writeln!(
                s,
                "    server {{\n        listen {} ssl{h2} reuseport;\n        \
                 ssl_certificate {};\n        ssl_certificate_key {};\n        \
                 ssl_protocols TLSv1.2 TLSv1.3;\n        ssl_session_tickets on;\n        \
                 ssl_session_cache shared:SSL:10m;\n        ssl_prefer_server_ciphers on;\n        \
                 ssl_ciphers {NGINX_TLS12_CIPHERS};\n        \
                 ssl_conf_command Ciphersuites {NGINX_TLS13_SUITES};",
                p.addr,
                t.cert.display(),
                t.key.display()
            );
        }
    }
    if p.scn.http2.is_some() && p.http2_on {
        s.push_str("        http2 on;\n");
    }
    for line in p.scn.nginx.server.lines().filter(|l| !l.trim().is_empty()) {
        let _ = writeln!(s, "        {}", line.trim());
    }
    for loc in nginx_locations(&p.scn.routes) {
        let extra = p.scn.nginx.location.trim();
        let sep = if extra.is_empty() { "" } else { " " };
        let _ = writeln!(
            s,
            "        location {loc} {{ proxy_pass http://be;{sep}{extra} }}"
        );
    }
    s.push_str("    }\n}\n");
    s
}

/// Starts a private `redis-server` (no persistence) on a free loopback port, pinned with the
/// load side; returns it (stopped on drop) and its address.
pub fn start_redis(env_dir: &Path, cpus: &[usize]) -> Result<(Proc, String), String> {
    let port = procs::free_port()?;
    let mut cmd = Command::new("redis-server");
    cmd.args([
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
    ])
    .args(["--appendonly", "no"])
    .arg("--dir")
    .arg(env_dir);
    let p = Proc::spawn("redis", cmd, cpus, env_dir, Duration::from_secs(3))
        .map_err(|e| format!("{e} (install it: apt-get install redis-server)"))?;
    let addr = format!("127.0.0.1:{port}");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(&addr).is_err() {
        if std::time::Instant::now() > deadline {
            return Err(format!("redis-server did not listen on {addr}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok((p, addr))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario;

    fn scn(routes: &str) -> Scenario {
        scenario::parse(
            "t",
            Path::new("t.toml"),
            &format!("description = \"x\"\n{routes}\n[load]\npaths = [\"/\"]\n"),
        )
        .unwrap()
    }

    #[test]
    fn locations_follow_route_kinds() {
        let s = scn("[[routes]]\npath = \"/s{i}/items/{id}\"\nrepeat = 2\n\
             [[routes]]\npath = \"/s{i}/items\"\nrepeat = 2\n[[routes]]\nprefix = \"/api\"\n\
             [[routes]]\nprefix = \"/\"\n");
        assert_eq!(
            nginx_locations(&s.routes),
            [
                "/s0/items/",
                "/s1/items/",
                "= /s0/items",
                "= /s1/items",
                "= /api",
                "/api/",
                "/"
            ]
        );
    }

    #[test]
    fn configs_name_ports_cpus_and_routes() {
        let s = scn("[[routes]]\nprefix = \"/\"\n");
        let a: SocketAddr = "127.0.0.1:8001".parse().unwrap();
        let u: SocketAddr = "127.0.0.1:9001".parse().unwrap();
        let r = ringway_config(&s, a, u, 2, None);
        assert!(r.contains("address = \"127.0.0.1:8001\""));
        assert!(r.contains("targets = [{ address = \"127.0.0.1:9001\" }]"));
        assert!(r.contains("prefix = \"/\"\nproxy = { upstream = \"be\" }"));
        let n = nginx_config(&NginxParams {
            scn: &s,
            addr: a,
            upstream: u,
            cpus: &[0, 2],
            dir: Path::new("/tmp/x"),
            nofile: 20000,
            root: true,
            tls: None,
            http2_on: false,
            plain: false,
        });
        assert!(n.contains("worker_processes 2;"));
        assert!(n.contains("worker_cpu_affinity 1 100;"));
        assert!(n.contains("listen 127.0.0.1:8001 reuseport;"));
        assert!(n.contains("server 127.0.0.1:9001;"));
        assert!(n.contains("keepalive 256;"));
        assert!(n.contains("access_log off;"));
        assert!(n.contains("user root;"));
        assert!(n.contains("location / { proxy_pass http://be; }"));
        assert!(!n.contains("ssl"));
        assert!(!r.contains("[listeners.tls]"));
        assert!(n.contains("proxy_set_header X-Forwarded-For"));
        // --nginx-plain: upstream keep-alive kept, the forwarding headers gone.
        let plain = nginx_config(&NginxParams {
            scn: &s,
            addr: a,
            upstream: u,
            cpus: &[0],
            dir: Path::new("/tmp/x"),
            nofile: 20000,
            root: true,
            tls: None,
            http2_on: false,
            plain: true,
        });
        assert!(plain.contains("proxy_http_version 1.1;"), "{plain}");
        assert!(
            plain.contains("proxy_set_header Connection \"\";"),
            "{plain}"
        );
        for gone in [
            "X-Forwarded",
            "Forwarded ",
            "X-Request-Id",
            "proxy_set_header Host",
        ] {
            assert!(!plain.contains(gone), "{gone} in {plain}");
        }
    }

    #[test]
    fn http2_configs_enable_it_on_both_gateways() {
        let a: SocketAddr = "127.0.0.1:8443".parse().unwrap();
        let u: SocketAddr = "127.0.0.1:9001".parse().unwrap();
        let h2c = scenario::parse(
            "t",
            Path::new("t.toml"),
            "description = \"x\"\n[[routes]]\nprefix = \"/\"\n[load]\npaths = [\"/\"]\n\
             [http2]\ncleartext = true\n",
        )
        .unwrap();
        let r = ringway_config(&h2c, a, u, 1, None);
        assert!(
            r.contains("address = \"127.0.0.1:8443\"\nh2c = true\n"),
            "{r}"
        );
        let params = |scn, http2_on| NginxParams {
            scn,
            addr: a,
            upstream: u,
            cpus: &[0],
            dir: Path::new("/tmp/x"),
            nofile: 20000,
            root: false,
            tls: None,
            http2_on,
            plain: false,
        };
        let old = nginx_config(&params(&h2c, false));
        assert!(
            old.contains("listen 127.0.0.1:8443 http2 reuseport;"),
            "{old}"
        );
        assert!(!old.contains("http2 on;"));
        let new = nginx_config(&params(&h2c, true));
        assert!(new.contains("listen 127.0.0.1:8443 reuseport;"), "{new}");
        assert!(new.contains("        http2 on;\n"), "{new}");
        let dir = tempfile::tempdir().unwrap();
        let files = crate::tls::generate(dir.path()).unwrap();
        let tls = scenario::load("h2-tls", &scenario::default_dir()).unwrap();
        let r = ringway_config(&tls, a, u, 1, Some(&files));
        assert!(!r.contains("h2c"), "ALPN offers h2 by default: {r}");
        assert!(
            r.contains("max_idle = 1024\n"),
            "one per stream in flight: {r}"
        );
        let n = nginx_config(&NginxParams {
            tls: Some(&files),
            ..params(&tls, false)
        });
        assert!(n.contains("keepalive 1024;"), "{n}");
        assert!(
            n.contains("listen 127.0.0.1:8443 ssl http2 reuseport;"),
            "{n}"
        );
        let plain = nginx_config(&params(&scn("[[routes]]\nprefix = \"/\"\n"), false));
        assert!(!plain.contains("http2"), "{plain}");
    }

    #[test]
    fn tls_configs_serve_the_same_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let files = crate::tls::generate(dir.path()).unwrap();
        let s = scn("[[routes]]\nprefix = \"/\"\n");
        let a: SocketAddr = "127.0.0.1:8443".parse().unwrap();
        let u: SocketAddr = "127.0.0.1:9001".parse().unwrap();
        let cert = files.cert.display().to_string();
        let key = files.key.display().to_string();
        let r = ringway_config(&s, a, u, 1, Some(&files));
        assert!(
            r.contains(&format!(
                "address = \"127.0.0.1:8443\"\n[listeners.tls]\ncertificates = [{{ cert = \"{cert}\", key = \"{key}\" }}]\n"
            )),
            "{r}"
        );
        let n = nginx_config(&NginxParams {
            scn: &s,
            addr: a,
            upstream: u,
            cpus: &[0],
            dir: Path::new("/tmp/x"),
            nofile: 20000,
            root: false,
            tls: Some(&files),
            http2_on: false,
            plain: false,
        });
        for want in [
            "listen 127.0.0.1:8443 ssl reuseport;".to_string(),
            format!("ssl_certificate {cert};"),
            format!("ssl_certificate_key {key};"),
            "ssl_protocols TLSv1.2 TLSv1.3;".into(),
            "ssl_session_tickets on;".into(),
            "ssl_session_cache shared:SSL:10m;".into(),
            "ssl_prefer_server_ciphers on;".into(),
            "ssl_conf_command Ciphersuites TLS_AES_128_GCM_SHA256:".into(),
            "ssl_ciphers ECDHE-ECDSA-AES128-GCM-SHA256:".into(),
        ] {
            assert!(n.contains(&want), "{want} missing:\n{n}");
        }
        let pem = std::fs::read_to_string(&files.cert).unwrap();
        assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"));
        let key_pem = std::fs::read_to_string(&files.key).unwrap();
        assert!(key_pem.contains("PRIVATE KEY"));
    }
}

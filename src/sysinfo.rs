//! `ringway check --system`: the kernel settings that matter at high connection counts, each
//! compared with what THIS config needs. The advice functions are pure (values in, `Advice`
//! out) so they are tested without /proc; `read_system` is the thin reader of /proc/sys and
//! getrlimit. Warnings are advice: nothing here fails a check.

use crate::config::Compiled;

/// Client connections assumed when `limits.max_connections = 0` (unlimited).
pub const UNLIMITED_CONNECTIONS_PLAN: u64 = 65_536;
/// File descriptors on top of client and upstream sockets (listeners, rings, logs, files).
pub const FD_SLACK: u64 = 1024;
/// Fewest ephemeral ports recommended whatever the config (the kernel default range is 28 232).
pub const MIN_EPHEMERAL_PORTS: u64 = 28_000;
/// Locked memory one worker's io_uring needs (1024 SQEs of 64 B, 2048 CQEs of 16 B, rings,
/// page rounding: about 100 KiB), rounded up.
pub const MEMLOCK_PER_WORKER: u64 = 128 * 1024;

/// What a setting's current value means for this config.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Ok,
    Warn,
}

/// One line of `check --system`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Advice {
    pub setting: &'static str,
    pub current: String,
    pub recommended: String,
    pub verdict: Verdict,
    pub reason: String,
}

/// The numbers the config implies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Needs {
    pub workers: u64,
    /// The listen backlog each listener asks for.
    pub backlog: u64,
    /// Client connections planned for (`limits.max_connections`, or 65 536 when unlimited).
    pub connections: u64,
    /// Pooled upstream connections: Σ over upstreams of targets × max_idle × workers.
    pub upstream_conns: u64,
    /// File descriptors: 2 per client connection (client + upstream) + pooled + slack.
    pub fds: u64,
}

/// The values read from the system (`None`: could not be read).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Observed {
    pub somaxconn: Option<u64>,
    pub syn_backlog: Option<u64>,
    pub port_range: Option<(u64, u64)>,
    pub tw_reuse: Option<u64>,
    pub file_max: Option<u64>,
    pub nr_open: Option<u64>,
    /// RLIMIT_NOFILE (soft, hard); `u64::MAX` = unlimited.
    pub nofile: Option<(u64, u64)>,
    /// RLIMIT_MEMLOCK (soft, hard); `u64::MAX` = unlimited.
    pub memlock: Option<(u64, u64)>,
    /// `/proc/sys/kernel/osrelease`, e.g. `6.1.0-13-amd64`.
    pub kernel: Option<String>,
}

/// What `cfg` needs when run with `workers` workers.
pub fn needs(cfg: &Compiled, workers: usize) -> Needs {
    let workers = workers.max(1) as u64;
    let connections = match cfg.conn_limits.max {
        0 => UNLIMITED_CONNECTIONS_PLAN,
        n => n as u64,
    };
    let upstream_conns = cfg
        .upstreams
        .iter()
        .map(|u| (u.targets.len() as u64).saturating_mul(u.max_idle as u64))
        .fold(0u64, u64::saturating_add)
        .saturating_mul(workers);
    Needs {
        workers,
        backlog: crate::worker::LISTEN_BACKLOG as u64,
        connections,
        upstream_conns,
        fds: connections
            .saturating_mul(2)
            .saturating_add(upstream_conns)
            .saturating_add(FD_SLACK),
    }
}

/// Every setting, in the order `check --system` prints them.
pub fn advise(n: &Needs, o: &Observed) -> Vec<Advice> {
    vec![
        somaxconn(o.somaxconn, n.backlog),
        syn_backlog(o.syn_backlog, n.backlog),
        port_range(o.port_range, n.upstream_conns),
        tw_reuse(o.tw_reuse),
        file_max(o.file_max, n.fds),
        nr_open(o.nr_open, n.fds),
        nofile(o.nofile, n.fds, n.connections),
        memlock(o.memlock, o.kernel.as_deref(), n.workers),
    ]
}

fn unreadable(setting: &'static str, recommended: String, what: &str) -> Advice {
    Advice {
        setting,
        current: "unreadable".into(),
        recommended,
        verdict: Verdict::Warn,
        reason: format!("could not read {what}; check it by hand"),
    }
}

fn at_least(setting: &'static str, cur: u64, want: u64, ok: String, warn: String) -> Advice {
    let good = cur >= want;
    Advice {
        setting,
        current: show(cur),
        recommended: format!(">= {want}"),
        verdict: if good { Verdict::Ok } else { Verdict::Warn },
        reason: if good { ok } else { warn },
    }
}

/// `u64::MAX` (RLIM_INFINITY) as `unlimited`.
fn show(v: u64) -> String {
    if v == u64::MAX {
        "unlimited".into()
    } else {
        v.to_string()
    }
}

/// `net.core.somaxconn` caps every listen backlog.
pub fn somaxconn(cur: Option<u64>, backlog: u64) -> Advice {
    let name = "net.core.somaxconn";
    let Some(cur) = cur else {
        return unreadable(
            name,
            format!(">= {backlog}"),
            "/proc/sys/net/core/somaxconn",
        );
    };
    at_least(
        name,
        cur,
        backlog,
        format!("the accept queue ringway asks for ({backlog}) is granted in full"),
        format!("caps ringway's listen backlog of {backlog} at {cur}: connection bursts beyond it are dropped or refused"),
    )
}

/// `net.ipv4.tcp_max_syn_backlog`: half-open connections waiting for the handshake's last ACK.
pub fn syn_backlog(cur: Option<u64>, backlog: u64) -> Advice {
    let name = "net.ipv4.tcp_max_syn_backlog";
    let Some(cur) = cur else {
        return unreadable(
            name,
            format!(">= {backlog}"),
            "/proc/sys/net/ipv4/tcp_max_syn_backlog",
        );
    };
    at_least(
        name,
        cur,
        backlog,
        "the SYN queue keeps up with the accept queue".into(),
        format!("SYN queue smaller than the {backlog} accept queue: bursts of new clients fall back to SYN cookies or are dropped"),
    )
}

/// `net.ipv4.ip_local_port_range` (inclusive `lo hi`) vs the upstream connections ringway keeps.
pub fn port_range(cur: Option<(u64, u64)>, upstream_conns: u64) -> Advice {
    let name = "net.ipv4.ip_local_port_range";
    let want = upstream_conns.saturating_mul(2).max(MIN_EPHEMERAL_PORTS);
    let recommended = format!(">= {want} ports (e.g. 10000 65535)");
    let Some((lo, hi)) = cur else {
        return unreadable(name, recommended, "/proc/sys/net/ipv4/ip_local_port_range");
    };
    let ports = if hi >= lo { hi - lo + 1 } else { 0 };
    let good = ports >= want;
    Advice {
        setting: name,
        current: format!("{lo} {hi} ({ports} ports)"),
        recommended,
        verdict: if good { Verdict::Ok } else { Verdict::Warn },
        reason: format!(
            "{} ephemeral ports for {upstream_conns} pooled upstream connections (targets x max_idle x workers, summed over upstreams) plus TIME_WAIT; want 2x that and at least {MIN_EPHEMERAL_PORTS}",
            if good { "enough" } else { "too few" }
        ),
    }
}

/// `net.ipv4.tcp_tw_reuse`: 0 off, 1 on, 2 loopback only (the default since Linux 4.19).
pub fn tw_reuse(cur: Option<u64>) -> Advice {
    let name = "net.ipv4.tcp_tw_reuse";
    let Some(cur) = cur else {
        return unreadable(name, "1".into(), "/proc/sys/net/ipv4/tcp_tw_reuse");
    };
    let good = cur == 1;
    Advice {
        setting: name,
        current: cur.to_string(),
        recommended: "1".into(),
        verdict: if good { Verdict::Ok } else { Verdict::Warn },
        reason: if good {
            "new upstream connections may reuse ports held in TIME_WAIT".into()
        } else {
            "an upstream connection ringway closes (idle timeout, full pool, error) holds its port in TIME_WAIT for 60 s on ringway's side; 1 lets new connects reuse it (safe with TCP timestamps)".into()
        },
    }
}

/// `fs.file-max`: open files system-wide.
pub fn file_max(cur: Option<u64>, fds: u64) -> Advice {
    let name = "fs.file-max";
    let Some(cur) = cur else {
        return unreadable(name, format!(">= {fds}"), "/proc/sys/fs/file-max");
    };
    at_least(
        name,
        cur,
        fds,
        "system-wide file table holds ringway's sockets".into(),
        format!("the whole system may open only {cur} files; ringway alone may need {fds}"),
    )
}

/// `fs.nr_open`: the highest RLIMIT_NOFILE any process may be given.
pub fn nr_open(cur: Option<u64>, fds: u64) -> Advice {
    let name = "fs.nr_open";
    let Some(cur) = cur else {
        return unreadable(name, format!(">= {fds}"), "/proc/sys/fs/nr_open");
    };
    at_least(
        name,
        cur,
        fds,
        "a process may be given enough descriptors".into(),
        format!(
            "no process can have more than {cur} descriptors, so LimitNOFILE cannot reach {fds}"
        ),
    )
}

/// RLIMIT_NOFILE (soft, hard). ringway raises its soft limit to the hard one at start, so the
/// hard limit is what counts.
pub fn nofile(cur: Option<(u64, u64)>, fds: u64, connections: u64) -> Advice {
    let name = "RLIMIT_NOFILE (ulimit -n)";
    let Some((soft, hard)) = cur else {
        return unreadable(name, format!("hard >= {fds}"), "getrlimit(RLIMIT_NOFILE)");
    };
    let good = hard >= fds;
    Advice {
        setting: name,
        current: format!("soft {} hard {}", show(soft), show(hard)),
        recommended: format!("hard >= {fds}"),
        verdict: if good { Verdict::Ok } else { Verdict::Warn },
        reason: format!(
            "{connections} client connections x 2 (client + upstream socket) + pooled + {FD_SLACK} slack; ringway raises soft to hard at start{}",
            if good { "" } else { ", then accept fails with EMFILE" }
        ),
    }
}

/// `(major, minor)` of a release string like `5.10.0-28-amd64`.
pub fn kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.trim().split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// RLIMIT_MEMLOCK: kernels before 5.12 charge io_uring rings to locked memory.
pub fn memlock(cur: Option<(u64, u64)>, kernel: Option<&str>, workers: u64) -> Advice {
    let name = "RLIMIT_MEMLOCK (ulimit -l)";
    let want = MEMLOCK_PER_WORKER.saturating_mul(workers);
    let recommended = format!(">= {} KiB or unlimited", want / 1024);
    let current = match cur {
        Some((soft, hard)) => format!("soft {} hard {}", kib(soft), kib(hard)),
        None => "unreadable".into(),
    };
    let version = kernel.and_then(kernel_version);
    if let Some(v) = version.filter(|&v| v >= (5, 12)) {
        return Advice {
            setting: name,
            current,
            recommended: "any (not used)".into(),
            verdict: Verdict::Ok,
            reason: format!(
                "kernel {}.{} charges io_uring memory to the memory cgroup, not to memlock",
                v.0, v.1
            ),
        };
    }
    let shown = version.map_or("unknown".to_string(), |v| format!("{}.{}", v.0, v.1));
    let good = cur.is_some_and(|(soft, _)| soft >= want);
    Advice {
        setting: name,
        current,
        recommended,
        verdict: if good { Verdict::Ok } else { Verdict::Warn },
        reason: format!(
            "kernel {shown} (< 5.12) charges each worker's io_uring (~{} KiB) to memlock; {}",
            MEMLOCK_PER_WORKER / 1024,
            if good {
                "enough for every worker"
            } else {
                "too little makes ring setup fail and ringway falls back to the slower epoll driver"
            }
        ),
    }
}

fn kib(v: u64) -> String {
    if v == u64::MAX {
        "unlimited".into()
    } else {
        format!("{} KiB", v / 1024)
    }
}

/// The advice as printed: one line per setting, then its reason indented below.
pub fn render(advice: &[Advice]) -> String {
    let mut out = String::new();
    for a in advice {
        let verdict = match a.verdict {
            Verdict::Ok => "OK",
            Verdict::Warn => "WARN",
        };
        out.push_str(&format!(
            "{verdict:<4} {}: current {}, recommended {}\n     {}\n",
            a.setting, a.current, a.recommended, a.reason
        ));
    }
    out
}

/// Reads every setting from /proc/sys and getrlimit (missing values stay `None`).
pub fn read_system() -> Observed {
    let num = |p: &str| read_proc(p).and_then(|s| s.trim().parse::<u64>().ok());
    Observed {
        somaxconn: num("net/core/somaxconn"),
        syn_backlog: num("net/ipv4/tcp_max_syn_backlog"),
        port_range: read_proc("net/ipv4/ip_local_port_range").and_then(|s| parse_range(&s)),
        tw_reuse: num("net/ipv4/tcp_tw_reuse"),
        file_max: num("fs/file-max"),
        nr_open: num("fs/nr_open"),
        nofile: rlimit(libc::RLIMIT_NOFILE),
        memlock: rlimit(libc::RLIMIT_MEMLOCK),
        kernel: read_proc("kernel/osrelease").map(|s| s.trim().to_string()),
    }
}

fn read_proc(rel: &str) -> Option<String> {
    std::fs::read_to_string(format!("/proc/sys/{rel}")).ok()
}

/// `lo<whitespace>hi` as in ip_local_port_range.
pub fn parse_range(s: &str) -> Option<(u64, u64)> {
    let mut it = s.split_whitespace().map(|x| x.parse::<u64>().ok());
    let lo = it.next()??;
    let hi = it.next()??;
    Some((lo, hi))
}

#[cfg(target_env = "gnu")]
type Resource = libc::__rlimit_resource_t;
#[cfg(not(target_env = "gnu"))]
type Resource = libc::c_int;

fn rlimit(resource: Resource) -> Option<(u64, u64)> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the plain struct we own.
    if unsafe { libc::getrlimit(resource, &mut lim) } != 0 {
        return None;
    }
    let conv = |v: libc::rlim_t| {
        if v == libc::RLIM_INFINITY {
            u64::MAX
        } else {
            #[allow(clippy::unnecessary_cast)] // rlim_t is u32 on some 32-bit targets
            let v = v as u64;
            v
        }
    };
    Some((conv(lim.rlim_cur), conv(lim.rlim_max)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NEEDS: Needs = Needs {
        workers: 4,
        backlog: 4096,
        connections: 100_000,
        upstream_conns: 20_000,
        fds: 221_024,
    };

    #[test]
    fn somaxconn_below_backlog_warns_with_backlog_recommended() {
        let a = somaxconn(Some(128), 4096);
        assert_eq!(a.verdict, Verdict::Warn);
        assert_eq!(a.recommended, ">= 4096");
        assert_eq!(a.current, "128");
        assert!(
            a.reason.contains("4096") && a.reason.contains("128"),
            "{}",
            a.reason
        );
        assert_eq!(somaxconn(Some(4096), 4096).verdict, Verdict::Ok);
        assert_eq!(somaxconn(Some(65535), 4096).verdict, Verdict::Ok);
    }

    #[test]
    fn syn_backlog_follows_the_accept_queue() {
        assert_eq!(syn_backlog(Some(512), 4096).verdict, Verdict::Warn);
        let ok = syn_backlog(Some(8192), 4096);
        assert_eq!(
            (ok.verdict, ok.recommended.as_str()),
            (Verdict::Ok, ">= 4096")
        );
    }

    #[test]
    fn port_range_wants_twice_the_pool_and_at_least_28000() {
        // Default Linux range: 28232 ports, enough for a small pool.
        let a = port_range(Some((32768, 60999)), 100);
        assert_eq!(a.verdict, Verdict::Ok);
        assert_eq!(a.current, "32768 60999 (28232 ports)");
        assert!(
            a.recommended.starts_with(">= 28000 ports"),
            "{}",
            a.recommended
        );
        // 20 000 pooled connections need 40 000 ports.
        let a = port_range(Some((32768, 60999)), 20_000);
        assert_eq!(a.verdict, Verdict::Warn);
        assert!(
            a.recommended.starts_with(">= 40000 ports"),
            "{}",
            a.recommended
        );
        assert!(
            a.reason.contains("20000 pooled upstream connections"),
            "{}",
            a.reason
        );
        assert_eq!(
            port_range(Some((10000, 65535)), 20_000).verdict,
            Verdict::Ok
        );
        // A small range warns even with no upstream at all; a reversed one counts as empty.
        assert_eq!(port_range(Some((50000, 60000)), 0).verdict, Verdict::Warn);
        assert_eq!(
            port_range(Some((60000, 50000)), 0).current,
            "60000 50000 (0 ports)"
        );
    }

    #[test]
    fn tw_reuse_wants_1_and_loopback_only_warns() {
        assert_eq!(tw_reuse(Some(1)).verdict, Verdict::Ok);
        for v in [0, 2] {
            let a = tw_reuse(Some(v));
            assert_eq!(a.verdict, Verdict::Warn, "value {v}");
            assert!(a.reason.contains("TIME_WAIT"), "{}", a.reason);
        }
    }

    #[test]
    fn fd_limits_need_two_per_connection_plus_pool_and_slack() {
        let a = nofile(Some((1024, 131_072)), NEEDS.fds, NEEDS.connections);
        assert_eq!(a.verdict, Verdict::Warn);
        assert_eq!(a.recommended, "hard >= 221024");
        assert!(a.reason.contains("EMFILE"), "{}", a.reason);
        // Soft below need is fine: ringway raises it to the hard limit.
        let a = nofile(Some((1024, 1_048_576)), NEEDS.fds, NEEDS.connections);
        assert_eq!(a.verdict, Verdict::Ok);
        assert_eq!(a.current, "soft 1024 hard 1048576");
        assert_eq!(
            nofile(Some((u64::MAX, u64::MAX)), NEEDS.fds, 1).current,
            "soft unlimited hard unlimited"
        );
        assert_eq!(file_max(Some(100_000), NEEDS.fds).verdict, Verdict::Warn);
        assert_eq!(
            file_max(Some(9_223_372_036_854_775_807), NEEDS.fds).verdict,
            Verdict::Ok
        );
        assert_eq!(nr_open(Some(1_048_576), NEEDS.fds).verdict, Verdict::Ok);
        let a = nr_open(Some(65_536), NEEDS.fds);
        assert_eq!(
            (a.verdict, a.recommended.as_str()),
            (Verdict::Warn, ">= 221024")
        );
    }

    #[test]
    fn memlock_matters_only_before_5_12() {
        let low = Some((64 * 1024, 64 * 1024));
        let a = memlock(low, Some("5.10.0-28-amd64"), 4);
        assert_eq!(a.verdict, Verdict::Warn);
        assert_eq!(a.recommended, ">= 512 KiB or unlimited");
        assert_eq!(a.current, "soft 64 KiB hard 64 KiB");
        assert!(
            a.reason.contains("5.10") && a.reason.contains("epoll"),
            "{}",
            a.reason
        );
        let a = memlock(Some((u64::MAX, u64::MAX)), Some("4.19.0"), 4);
        assert_eq!(
            (a.verdict, a.current.as_str()),
            (Verdict::Ok, "soft unlimited hard unlimited")
        );
        let a = memlock(low, Some("5.12.0"), 64);
        assert_eq!(a.verdict, Verdict::Ok);
        assert!(a.reason.contains("cgroup"), "{}", a.reason);
        assert_eq!(
            memlock(low, Some("6.8.0-45-generic"), 64).verdict,
            Verdict::Ok
        );
        // An unknown kernel is treated as old: the limit is checked.
        assert_eq!(memlock(low, None, 4).verdict, Verdict::Warn);
        assert_eq!(memlock(low, Some("garbage"), 4).verdict, Verdict::Warn);
    }

    #[test]
    fn kernel_versions_and_port_ranges_parse_defensively() {
        assert_eq!(kernel_version("6.1.0-13-amd64\n"), Some((6, 1)));
        assert_eq!(kernel_version("5.4"), Some((5, 4)));
        assert_eq!(kernel_version(""), None);
        assert_eq!(kernel_version("99999999999.1"), None);
        assert_eq!(parse_range("32768\t60999\n"), Some((32768, 60999)));
        assert_eq!(parse_range("32768"), None);
        assert_eq!(parse_range("a b"), None);
    }

    #[test]
    fn unreadable_values_warn_and_say_so() {
        let all = advise(&NEEDS, &Observed::default());
        assert_eq!(all.len(), 8);
        for a in &all {
            assert_eq!(a.verdict, Verdict::Warn, "{a:?}");
            assert_eq!(a.current, "unreadable", "{a:?}");
        }
        let text = render(&all);
        assert_eq!(
            text.lines().filter(|l| l.starts_with("WARN ")).count(),
            8,
            "{text}"
        );
    }

    #[test]
    fn needs_counts_pools_connections_and_fds_from_the_config() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(
            &p,
            "[[listeners]]\naddress = \"127.0.0.1:0\"\n\
             [limits]\nmax_connections = 1000\n\
             [upstreams.a]\nmax_idle = 10\n\
             targets = [{ address = \"127.0.0.1:1\" }, { address = \"127.0.0.1:2\" }]\n\
             [upstreams.b]\nmax_idle = 5\ntargets = [{ address = \"127.0.0.1:3\" }]\n\
             [[routes]]\nname = \"r\"\nprefix = \"/\"\nproxy = { upstream = \"a\" }\n",
        )
        .unwrap();
        let cfg = crate::config::load(&p, 1).unwrap_or_else(|e| panic!("{e:?}"));
        let n = needs(&cfg, 3);
        assert_eq!(n.upstream_conns, (2 * 10 + 5) * 3);
        assert_eq!(n.connections, 1000);
        assert_eq!(n.fds, 2000 + 75 + FD_SLACK);
        assert_eq!(n.backlog, 4096);
    }
}

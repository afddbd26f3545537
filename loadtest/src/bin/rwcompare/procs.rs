//! Child processes and waiting: every child runs in its own process group (so an nginx
//! master and its workers stop together), optionally pinned to CPUs before `exec` (what
//! `taskset -c` does), with `PR_SET_PDEATHSIG` so it gets SIGTERM if rwcompare dies.
//! [`Proc`] stops its group on drop: SIGTERM, a grace period, then SIGKILL.
//!
//! The leader is never reaped before its group has been signalled: exit is checked with
//! `waitid(WNOWAIT)`, so the group id cannot have been reused when we send to it.
//! SIGINT/SIGTERM/SIGHUP only set a flag; every wait here checks it and returns
//! [`INTERRUPTED`], so the caller unwinds and the `Drop`s clean up.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::targets::Probe;
use crate::tls::{AnyConn, TlsFiles};

/// Set by SIGINT, SIGTERM and SIGHUP.
static STOP: OnceLock<Arc<AtomicBool>> = OnceLock::new();

fn stop_flag() -> &'static Arc<AtomicBool> {
    STOP.get_or_init(|| Arc::new(AtomicBool::new(false)))
}

/// The error every interrupted wait returns.
pub const INTERRUPTED: &str = "interrupted";

/// SIGINT/SIGTERM/SIGHUP set the stop flag; a second one exits at once (status 130; the
/// children then get SIGTERM from PR_SET_PDEATHSIG).
pub fn install_signal_handlers() -> Result<(), String> {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        signal_hook::flag::register_conditional_shutdown(sig, 130, stop_flag().clone())
            .and_then(|_| signal_hook::flag::register(sig, stop_flag().clone()))
            .map_err(|e| format!("cannot install signal handler: {e}"))?;
    }
    Ok(())
}

/// Err([`INTERRUPTED`]) once a stop signal arrived.
pub fn check() -> Result<(), String> {
    if stop_flag().load(Ordering::Relaxed) {
        Err(INTERRUPTED.into())
    } else {
        Ok(())
    }
}

/// Sleeps until `t`, in short slices, returning early on a stop signal.
pub fn sleep_until(t: Instant) -> Result<(), String> {
    loop {
        check()?;
        let now = Instant::now();
        if now >= t {
            return Ok(());
        }
        std::thread::sleep((t - now).min(Duration::from_millis(20)));
    }
}

pub fn sleep(d: Duration) -> Result<(), String> {
    sleep_until(Instant::now() + d)
}

/// Raises the soft open-file limit to the hard limit; returns the new soft limit.
pub fn raise_nofile() -> u64 {
    // SAFETY: getrlimit/setrlimit only read/write the struct we pass.
    unsafe {
        let mut r: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) != 0 {
            return 1024;
        }
        if r.rlim_cur < r.rlim_max {
            let want = libc::rlimit {
                rlim_cur: r.rlim_max,
                rlim_max: r.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                r.rlim_cur = r.rlim_max;
            }
        }
        r.rlim_cur as u64
    }
}

/// Pins the calling thread (rwcompare's own work: sampling, idle connections) to `cpus`.
pub fn pin_self(cpus: &[usize]) {
    // SAFETY: cpu_set_t is plain data; sched_setaffinity only reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &c in cpus {
            libc::CPU_SET(c, &mut set);
        }
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// A free loopback port (bind :0, read it, release it); never the same one twice per run.
pub fn free_port() -> Result<u16, String> {
    static GIVEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    for _ in 0..100 {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("cannot find a free loopback port: {e}"))?
            .port();
        let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
        if !given.contains(&port) {
            given.push(port);
            return Ok(port);
        }
    }
    Err("cannot find a free loopback port".into())
}

/// A child process group, stopped on drop.
pub struct Proc {
    pub name: String,
    child: Child,
    grace: Duration,
    stopped: bool,
    /// stdout and stderr go to these files (in the run's temp dir).
    pub stdout_path: PathBuf,
    pub stderr_path: PathBuf,
}

impl Proc {
    /// Spawns `cmd` with stdout/stderr to `dir/<name>.out` / `.err`, pinned to `cpus`
    /// (empty: not pinned), in its own process group. `grace` is how long a SIGTERM may take.
    pub fn spawn(
        name: &str,
        mut cmd: Command,
        cpus: &[usize],
        dir: &Path,
        grace: Duration,
    ) -> Result<Proc, String> {
        let stdout_path = dir.join(format!("{name}.out"));
        let stderr_path = dir.join(format!("{name}.err"));
        let out = File::create(&stdout_path).map_err(|e| format!("{name}: {e}"))?;
        let err = File::create(&stderr_path).map_err(|e| format!("{name}: {e}"))?;
        // Built before fork: the pre_exec closure must not allocate.
        // SAFETY: cpu_set_t is plain data; CPU_SET writes into it.
        let set = unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            for &c in cpus {
                libc::CPU_SET(c, &mut set);
            }
            set
        };
        let pin = !cpus.is_empty();
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .process_group(0);
        // SAFETY: the closure runs between fork and exec and only makes async-signal-safe
        // system calls (prctl, getppid, sched_setaffinity) on data prepared before the fork.
        unsafe {
            cmd.pre_exec(move || {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM as libc::c_ulong);
                if libc::getppid() == 1 {
                    // The parent already died between fork and prctl.
                    return Err(std::io::Error::other("parent exited"));
                }
                if pin
                    && libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {name} ({:?}): {e}", cmd.get_program()))?;
        Ok(Proc {
            name: name.to_string(),
            child,
            grace,
            stopped: false,
            stdout_path,
            stderr_path,
        })
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// The exit status if the process has exited (it is not reaped: see the module header).
    pub fn exit_status(&self) -> Option<i32> {
        if self.stopped {
            return Some(0);
        }
        // SAFETY: waitid writes only into `info`; WNOWAIT leaves the child waitable.
        unsafe {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            let r = libc::waitid(
                libc::P_PID,
                self.child.id() as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            );
            if r == 0 && info.si_pid() != 0 {
                Some(info.si_status())
            } else {
                None
            }
        }
    }

    /// Waits for the process to exit by itself until `deadline`; Err on timeout or interrupt.
    pub fn wait_exit(&self, deadline: Instant) -> Result<i32, String> {
        loop {
            if let Some(code) = self.exit_status() {
                return Ok(code);
            }
            if Instant::now() >= deadline {
                return Err(format!("{} did not finish in time", self.name));
            }
            sleep(Duration::from_millis(10))?;
        }
    }

    pub fn stdout(&self) -> String {
        std::fs::read_to_string(&self.stdout_path).unwrap_or_default()
    }

    /// The last `n` lines of stderr, for error messages.
    pub fn stderr_tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(&self.stderr_path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    fn signal_group(&self, sig: i32) {
        // SAFETY: kill(2) on the process group we created; its leader is not reaped yet, so
        // the id still names our group.
        unsafe {
            libc::kill(-(self.child.id() as libc::pid_t), sig);
        }
    }

    /// SIGTERM to the group, up to `grace` for the leader to exit, SIGKILL to whatever is
    /// left of the group, then reap.
    pub fn stop(&mut self) {
        if self.stopped {
            return;
        }
        if self.exit_status().is_none() {
            self.signal_group(libc::SIGTERM);
            let deadline = Instant::now() + self.grace;
            while self.exit_status().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        self.signal_group(libc::SIGKILL);
        let _ = self.child.wait();
        self.stopped = true;
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Polls `file` until a line starting with `prefix` appears; returns the rest of that line.
pub fn wait_line(proc_: &Proc, prefix: &str, timeout: Duration) -> Result<String, String> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(l) = proc_.stdout().lines().find_map(|l| l.strip_prefix(prefix)) {
            return Ok(l.trim().to_string());
        }
        if let Some(code) = proc_.exit_status() {
            return Err(format!(
                "{} exited (status {code}) before printing `{prefix}`: {}",
                proc_.name,
                proc_.stderr_tail(10)
            ));
        }
        if Instant::now() >= deadline {
            return Err(format!("{} did not print `{prefix}` in time", proc_.name));
        }
        sleep(Duration::from_millis(10))?;
    }
}

/// One request on a fresh connection (`Connection: close`); returns the status code.
pub fn http_status(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body_len: usize,
    json: bool,
    headers: &[String],
    tls: Option<&TlsFiles>,
) -> Result<u16, String> {
    let t = Duration::from_secs(2);
    let mut s = AnyConn::open(addr, tls, t)?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: rwcompare\r\nConnection: close\r\n"
    );
    for h in headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    let body = if json {
        req.push_str("Content-Type: application/json\r\n");
        crate::json_body::json_body(body_len)
    } else {
        vec![b'x'; body_len]
    };
    if !body.is_empty() || method == "POST" || method == "PUT" {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(&body);
    s.write_all(&bytes).map_err(|e| e.to_string())?;
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(2).any(|w| w == b"\r\n") {
        let n = s.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("connection closed without a response".into());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    line.split(' ')
        .nth(1)
        .and_then(|c| c.get(..3)?.parse().ok())
        .ok_or_else(|| format!("bad status line {:?}", line.lines().next()))
}

/// Waits until `method path` through `addr` answers 200 (the route and the upstream work).
pub fn wait_http_ok(
    proc_: Option<&Proc>,
    addr: SocketAddr,
    probe: &Probe<'_>,
    tls: Option<&TlsFiles>,
    timeout: Duration,
) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    let mut last: String;
    loop {
        let (method, path) = (probe.method, probe.path);
        match http_status(
            addr,
            method,
            path,
            probe.body_len,
            probe.json,
            probe.headers,
            tls,
        ) {
            Ok(200) => return Ok(()),
            Ok(code) => last = format!("status {code}"),
            Err(e) => last = e,
        }
        if let Some(p) = proc_ {
            if let Some(code) = p.exit_status() {
                return Err(format!(
                    "{} exited (status {code}) during startup:\n{}",
                    p.name,
                    p.stderr_tail(15)
                ));
            }
        }
        if Instant::now() >= deadline {
            let logs = proc_.map(|p| p.stderr_tail(15)).unwrap_or_default();
            return Err(format!(
                "{method} {}://{addr}{path} not ready after {timeout:?} (last: {last})\n{logs}",
                if tls.is_some() { "https" } else { "http" }
            ));
        }
        sleep(Duration::from_millis(25))?;
    }
}

/// Quotes `s` for `sh -c`.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// One outside load tool's run as a single process on the load CPUs: `warmup` (a command line,
/// output discarded), then the shell is replaced by `measured`, whose output is the run's.
pub fn spawn_warm_then_measured(
    name: &str,
    warmup: &[String],
    measured: &[String],
    env: &crate::targets::Env,
) -> Result<Proc, String> {
    let line = |args: &[String]| {
        args.iter()
            .map(|a| sh_quote(a))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c").arg(format!(
        "{} >/dev/null; exec {}",
        line(warmup),
        line(measured)
    ));
    Proc::spawn(name, cmd, &env.load_cpus, &env.dir, Duration::from_secs(2))
}

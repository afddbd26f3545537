//! Zero-downtime binary upgrade (SIGUSR2), nginx style: the running process starts the binary
//! at the path it was started from, with the same arguments, and lets it inherit every
//! listening socket (each worker's SO_REUSEPORT socket of every listener, and the admin socket).
//! The new process takes those sockets instead of binding, starts its workers, and reports
//! readiness on a pipe; only then does the old one stop accepting and drain. A successor that
//! exits, crashes or stays silent past `READY_TIMEOUT` is killed and the old process keeps
//! serving, as if nothing happened.
//!
//! The environment carries the handover (the fds keep their numbers across exec):
//! `RINGWAY_LISTEN_FDS=ADDR=FD,FD;ADDR=FD` (configured listener address → sockets),
//! `RINGWAY_ADMIN_FD=ADDR=FD`, `RINGWAY_READY_FD=FD` (write end of the readiness pipe).
//!
//! Invariants: the sockets are the same kernel sockets, so connections queued in any accept
//! queue are taken by the successor, never reset; nothing but those fds crosses exec (accepted
//! connections, which io_uring opens without `CLOEXEC`, are marked close-on-exec in the child
//! before exec, or the old process could never close them); the old process never calls
//! `shutdown` on a handed-over listening socket (that would stop the successor's accepts too).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const ENV_LISTEN: &str = "RINGWAY_LISTEN_FDS";
const ENV_ADMIN: &str = "RINGWAY_ADMIN_FD";
const ENV_READY: &str = "RINGWAY_READY_FD";

/// How long a successor may take to accept on every worker before the upgrade is abandoned.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Sockets this process inherited from its predecessor, taken by address as it binds.
#[derive(Default)]
pub struct Inherited {
    listeners: HashMap<SocketAddr, Vec<std::net::TcpListener>>,
    admin: Option<(SocketAddr, std::net::TcpListener)>,
    ready: Option<OwnedFd>,
}

impl Inherited {
    /// Reads (and removes) the handover variables. Each fd is checked to be a listening TCP
    /// socket and made close-on-exec again; anything malformed is an error (the predecessor
    /// then sees this process exit and keeps serving).
    pub fn from_env() -> Result<Inherited, String> {
        let mut out = Inherited::default();
        if let Some(v) = take_var(ENV_LISTEN) {
            for (addr, fds) in parse_listen(&v)? {
                let socks = fds
                    .into_iter()
                    .map(adopt_listener)
                    .collect::<Result<_, _>>()?;
                out.listeners.insert(addr, socks);
            }
        }
        if let Some(v) = take_var(ENV_ADMIN) {
            let mut parsed = parse_listen(&v)?;
            match (parsed.pop(), parsed.is_empty()) {
                (Some((addr, fds)), true) if fds.len() == 1 => {
                    out.admin = Some((addr, adopt_listener(fds[0])?));
                }
                _ => return Err(format!("{ENV_ADMIN}: expected one ADDR=FD, got {v:?}")),
            }
        }
        if let Some(v) = take_var(ENV_READY) {
            let fd: RawFd = v
                .parse()
                .map_err(|_| format!("{ENV_READY}: not an fd number: {v:?}"))?;
            check_open(fd)?;
            set_cloexec(fd, true);
            // SAFETY: the predecessor passed us this fd for our exclusive use (checked open).
            out.ready = Some(unsafe { OwnedFd::from_raw_fd(fd) });
        }
        Ok(out)
    }

    /// Whether this process was started by an upgrade.
    pub fn is_upgrade(&self) -> bool {
        self.ready.is_some()
    }

    /// The inherited sockets for the listener configured as `addr` (each predecessor worker's).
    pub fn take_listener(&mut self, addr: SocketAddr) -> Option<Vec<std::net::TcpListener>> {
        self.listeners.remove(&addr)
    }

    /// The inherited admin socket, if it was bound for `addr`.
    pub fn take_admin(&mut self, addr: SocketAddr) -> Option<std::net::TcpListener> {
        match self.admin.take() {
            Some((a, l)) if a == addr => Some(l),
            other => {
                self.admin = other;
                None
            }
        }
    }

    /// Listener addresses inherited but not configured any more (closed once startup ends).
    pub fn unused(&self) -> Vec<SocketAddr> {
        let mut v: Vec<_> = self.listeners.keys().copied().collect();
        v.extend(self.admin.as_ref().map(|(a, _)| *a));
        v
    }

    /// The readiness pipe's write end, for `report_ready` once every worker accepts.
    pub fn take_ready(&mut self) -> Option<OwnedFd> {
        self.ready.take()
    }
}

/// Tells the predecessor this process serves (writes `READY=1` and our pid, then closes).
pub fn report_ready(fd: OwnedFd) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::File::from(fd);
    f.write_all(format!("READY=1\nMAINPID={}\n", std::process::id()).as_bytes())
}

fn take_var(name: &str) -> Option<String> {
    let v = std::env::var(name).ok();
    // Read once at startup, before any thread exists; a later upgrade sets its own values.
    std::env::remove_var(name);
    v
}

/// `ADDR=FD,FD;ADDR=FD` → pairs.
fn parse_listen(v: &str) -> Result<Vec<(SocketAddr, Vec<RawFd>)>, String> {
    let mut out = Vec::new();
    for part in v.split(';').filter(|p| !p.is_empty()) {
        let (addr, fds) = part
            .rsplit_once('=')
            .ok_or_else(|| format!("handover entry {part:?}: expected ADDR=FD,FD"))?;
        let addr: SocketAddr = addr
            .parse()
            .map_err(|_| format!("handover entry {part:?}: bad address"))?;
        let fds = fds
            .split(',')
            .map(|f| f.parse::<RawFd>().ok().filter(|&n| n > 2))
            .collect::<Option<Vec<_>>>()
            .filter(|v| !v.is_empty())
            .ok_or_else(|| format!("handover entry {part:?}: bad fd list"))?;
        out.push((addr, fds));
    }
    Ok(out)
}

fn check_open(fd: RawFd) -> Result<(), String> {
    // SAFETY: F_GETFD only queries the descriptor table.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return Err(format!("inherited fd {fd} is not open"));
    }
    Ok(())
}

fn set_cloexec(fd: RawFd, on: bool) {
    // SAFETY: F_SETFD on a descriptor; async-signal-safe (also used between fork and exec).
    unsafe {
        libc::fcntl(fd, libc::F_SETFD, if on { libc::FD_CLOEXEC } else { 0 });
    }
}

/// Takes ownership of an inherited fd after checking it is a listening socket.
fn adopt_listener(fd: RawFd) -> Result<std::net::TcpListener, String> {
    check_open(fd)?;
    let mut listening: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes one int into `listening`.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ACCEPTCONN,
            (&mut listening as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if rc != 0 || listening == 0 {
        return Err(format!("inherited fd {fd} is not a listening socket"));
    }
    set_cloexec(fd, true);
    // SAFETY: the predecessor handed this descriptor to us alone; we now own it.
    Ok(unsafe { std::net::TcpListener::from_raw_fd(fd) })
}

/// What the old process keeps to hand over: a duplicate of every listening socket it bound
/// (workers own the originals), keyed by the configured address.
#[derive(Default)]
pub struct Sockets {
    pub listeners: Vec<(SocketAddr, Vec<OwnedFd>)>,
    pub admin: Option<(SocketAddr, OwnedFd)>,
}

/// What an upgrade needs to start the successor.
pub struct Handover {
    pub exe: PathBuf,
    pub args: Vec<std::ffi::OsString>,
    pub sockets: Sockets,
}

impl Handover {
    /// The binary this process was started from (resolved now: after a package upgrade
    /// `/proc/self/exe` names the deleted old file, the path names the new one).
    pub fn new(sockets: Sockets) -> Handover {
        let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("/proc/self/exe"));
        Handover {
            exe,
            args: std::env::args_os().skip(1).collect(),
            sockets,
        }
    }
}

/// A successor that was started and has not reported yet.
pub struct Pending {
    pub child: Child,
    started: Instant,
    outcome: mpsc::Receiver<Result<u32, String>>,
}

/// How a pending upgrade stands.
pub enum Progress {
    Waiting,
    /// The successor serves; its pid.
    Ready(u32),
    /// It failed (already killed and reaped); why.
    Failed(String),
}

/// Starts the successor with every listening socket. Returns at once; poll `Pending::progress`.
pub fn start(h: &Handover) -> Result<Pending, String> {
    let (read_end, write_end) = pipe().map_err(|e| format!("pipe: {e}"))?;
    let mut keep: Vec<RawFd> = vec![write_end.as_raw_fd()];
    let mut listen = String::new();
    for (addr, fds) in &h.sockets.listeners {
        let list: Vec<String> = fds.iter().map(|f| f.as_raw_fd().to_string()).collect();
        keep.extend(fds.iter().map(|f| f.as_raw_fd()));
        listen.push_str(&format!("{addr}={};", list.join(",")));
    }
    let mut cmd = Command::new(&h.exe);
    cmd.args(&h.args)
        .env(ENV_LISTEN, listen)
        .env(ENV_READY, write_end.as_raw_fd().to_string());
    match &h.sockets.admin {
        Some((addr, fd)) => {
            keep.push(fd.as_raw_fd());
            cmd.env(ENV_ADMIN, format!("{addr}={}", fd.as_raw_fd()));
        }
        None => {
            cmd.env_remove(ENV_ADMIN);
        }
    }
    // SAFETY: runs in the forked child before exec and only calls async-signal-safe syscalls
    // (close_range/fcntl) on descriptor numbers computed before the fork.
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(move || {
            close_on_exec_all_but(&keep);
            Ok(())
        });
    }
    let child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", h.exe.display()))?;
    drop(write_end);
    let (tx, rx) = mpsc::channel();
    let reader = std::fs::File::from(read_end);
    std::thread::Builder::new()
        .name("ringway-upgrade".into())
        .spawn(move || {
            let _ = tx.send(read_ready(reader));
        })
        .map_err(|e| format!("cannot start the upgrade watcher: {e}"))?;
    Ok(Pending {
        child,
        started: Instant::now(),
        outcome: rx,
    })
}

/// Marks every descriptor above stderr close-on-exec, then clears the flag on `keep`.
fn close_on_exec_all_but(keep: &[RawFd]) {
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets flags; the fallback walks the
    // table with fcntl. Both are async-signal-safe.
    unsafe {
        let done = libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        ) == 0;
        if !done {
            let mut lim: libc::rlimit = std::mem::zeroed();
            let max = if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
                lim.rlim_cur.min(1 << 20) as RawFd
            } else {
                4096
            };
            for fd in 3..max {
                libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
            }
        }
    }
    for &fd in keep {
        set_cloexec(fd, false);
    }
}

/// Blocks until the successor writes `READY=1` (→ its pid) or closes the pipe.
fn read_ready(mut r: std::fs::File) -> Result<u32, String> {
    use std::io::Read;
    let mut text = String::new();
    let mut buf = [0u8; 256];
    loop {
        match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                text.push_str(&String::from_utf8_lossy(&buf[..n]));
                if text.len() > 4096 {
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("reading the new process's readiness: {e}")),
        }
    }
    if !text.lines().any(|l| l == "READY=1") {
        return Err("the new process exited before accepting connections".to_string());
    }
    text.lines()
        .find_map(|l| l.strip_prefix("MAINPID=")?.parse().ok())
        .ok_or_else(|| "the new process's readiness message has no MAINPID".to_string())
}

impl Pending {
    /// Checks without blocking. A failure kills and reaps the successor.
    pub fn progress(&mut self) -> Progress {
        match self.outcome.try_recv() {
            Ok(Ok(pid)) => Progress::Ready(pid),
            Ok(Err(why)) => Progress::Failed(self.reap(why)),
            Err(mpsc::TryRecvError::Disconnected) => {
                Progress::Failed(self.reap("the upgrade watcher stopped".into()))
            }
            Err(mpsc::TryRecvError::Empty) if self.started.elapsed() > READY_TIMEOUT => {
                Progress::Failed(self.reap(format!(
                    "the new process was not ready after {}s",
                    READY_TIMEOUT.as_secs()
                )))
            }
            Err(mpsc::TryRecvError::Empty) => Progress::Waiting,
        }
    }

    fn reap(&mut self, why: String) -> String {
        let status = match self.child.try_wait() {
            Ok(Some(st)) => st,
            _ => {
                let _ = self.child.kill();
                match self.child.wait() {
                    Ok(st) => st,
                    Err(e) => return format!("{why} (wait: {e})"),
                }
            }
        };
        format!("{why} ({status})")
    }
}

fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: pipe2 writes two new descriptors into the array, which we then own.
    unsafe {
        if libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok((OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_listen_lists_and_refuses_garbage() {
        let v = parse_listen("127.0.0.1:80=5,6;[::1]:443=7;").unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].0, "127.0.0.1:80".parse::<SocketAddr>().unwrap());
        assert_eq!(v[0].1, vec![5, 6]);
        assert_eq!(v[1].1, vec![7]);
        for bad in [
            "127.0.0.1:80",
            "nope=5",
            "127.0.0.1:80=",
            "127.0.0.1:80=x",
            "127.0.0.1:80=1",
        ] {
            assert!(parse_listen(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn refuses_an_fd_that_is_not_a_listening_socket() {
        let (r, _w) = pipe().unwrap();
        let e = adopt_listener(r.as_raw_fd()).unwrap_err();
        assert!(e.contains("not a listening socket"), "{e}");
        assert!(check_open(100_000).is_err());
    }
}

//! Worker threads: one per core, pinned, each with its own monoio runtime (io_uring, or the
//! legacy epoll driver only when io_uring is unavailable), its own SO_REUSEPORT listeners and
//! its own `Core` (see `core.rs`). This file starts the threads, pins them, builds the runtime,
//! binds the listeners, runs the accept loop and the drain, and raises the fd limit: nothing
//! else. Process-wide state lives in `shared.rs`, per-core state in `core.rs`.
//!
//! Invariants: binding happens before any thread starts (an address in use fails startup);
//! an accepted connection holds an admission permit until its task ends, however it ends.

use std::cell::Cell;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use monoio::net::TcpListener;

use crate::core::Core;
use crate::shared::Shared;

/// The accept queue each listening socket asks for (the kernel caps it at `net.core.somaxconn`).
pub const LISTEN_BACKLOG: i32 = 4096;

/// Binds one SO_REUSEPORT listening socket for `addr` (one per worker per listener).
pub fn bind_reuseport(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let domain = if addr.is_ipv6() {
        Domain::IPV6
    } else {
        Domain::IPV4
    };
    let s = Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    s.listen(LISTEN_BACKLOG)?;
    Ok(s.into())
}

/// Pins the calling thread to `cpu` (best effort: logs and continues on failure).
fn pin_to_cpu(cpu: usize) -> bool {
    // SAFETY: cpu_set_t is plain data; CPU_SET and sched_setaffinity only read/write it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
    }
}

/// CPUs this process may run on, in order (respects taskset / cgroup cpusets).
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: as above; sched_getaffinity fills the set.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return (0..std::thread::available_parallelism().map_or(1, |n| n.get())).collect();
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &set))
            .collect()
    }
}

/// Every worker's listening sockets, bound (or inherited) before any thread starts.
pub struct Bound {
    /// Per worker: (listener index in config order, socket).
    pub per_worker: Vec<Vec<(usize, std::net::TcpListener)>>,
    /// A duplicate of every distinct socket, per configured address, for a binary upgrade.
    pub handover: Vec<(SocketAddr, Vec<std::os::fd::OwnedFd>)>,
}

/// Binds one SO_REUSEPORT socket per worker for every listener, or takes the sockets a
/// predecessor handed over for that address (see `handover.rs`). Inherited sockets are dealt
/// out round-robin so every one of them has a worker accepting on it (a socket nobody accepts
/// on would strand the connections the kernel hashes to it); with more workers than inherited
/// sockets, the extra workers accept on duplicates of them (the kernel gives each connection
/// to one accept). Binding here, before any thread starts, makes an address in use fail
/// startup immediately.
pub fn bind_listeners(
    cfg: &crate::config::Compiled,
    n: usize,
    inherited: &mut crate::handover::Inherited,
) -> std::io::Result<Bound> {
    let n = n.max(1);
    let mut per_worker: Vec<Vec<(usize, std::net::TcpListener)>> =
        (0..n).map(|_| Vec::new()).collect();
    let mut handover = Vec::new();
    for (index, l) in cfg.listeners.iter().enumerate() {
        let socks = match inherited.take_listener(l.addr) {
            Some(socks) if !socks.is_empty() => socks,
            _ => (0..n)
                .map(|_| {
                    bind_reuseport(l.addr).map_err(|e| {
                        std::io::Error::new(e.kind(), format!("cannot listen on {}: {e}", l.addr))
                    })
                })
                .collect::<std::io::Result<Vec<_>>>()?,
        };
        let dups = socks
            .iter()
            .map(|s| s.try_clone().map(std::os::fd::OwnedFd::from))
            .collect::<std::io::Result<Vec<_>>>()?;
        handover.push((l.addr, dups));
        let k = socks.len();
        for w in k..n {
            per_worker[w].push((index, socks[w % k].try_clone()?));
        }
        for (j, s) in socks.into_iter().enumerate() {
            per_worker[j % n].push((index, s));
        }
    }
    Ok(Bound {
        per_worker,
        handover,
    })
}

/// Starts one worker thread per entry of `per_worker`, each accepting on its sockets.
pub fn spawn_workers(
    shared: &Arc<Shared>,
    per_worker: Vec<Vec<(usize, std::net::TcpListener)>>,
) -> std::io::Result<Vec<std::thread::JoinHandle<()>>> {
    let cpus = allowed_cpus();
    let mut handles = Vec::with_capacity(per_worker.len());
    for (id, listeners) in per_worker.into_iter().enumerate() {
        let shared = shared.clone();
        let cpu = cpus.get(id % cpus.len().max(1)).copied();
        let h = std::thread::Builder::new()
            .name(format!("ringway-w{id}"))
            .spawn(move || {
                let pinned = cpu.map(pin_to_cpu).unwrap_or(false);
                run_worker(id, cpu, pinned, shared, listeners);
            })?;
        handles.push(h);
    }
    Ok(handles)
}

fn run_worker(
    id: usize,
    cpu: Option<usize>,
    pinned: bool,
    shared: Arc<Shared>,
    listeners: Vec<(usize, std::net::TcpListener)>,
) {
    let where_ = match (cpu, pinned) {
        (Some(c), true) => format!("pinned to cpu {c}"),
        _ => "not pinned".to_string(),
    };
    let force_legacy = std::env::var_os("RINGWAY_FORCE_EPOLL").is_some();
    let uring = if force_legacy {
        Err(std::io::Error::other("RINGWAY_FORCE_EPOLL is set"))
    } else {
        build_uring(std::env::var("RINGWAY_URING").ok().as_deref())
    };
    match uring {
        Ok((mut rt, ring_mode)) => {
            let _ = shared.driver.set("io_uring");
            crate::log::info(&format!(
                "worker {id}: io_uring driver ({ring_mode} ring), {where_}"
            ));
            rt.block_on(worker_main(id, shared.clone(), listeners));
        }
        Err(e) => {
            crate::log::warn(&format!(
                "worker {id}: io_uring unavailable ({e}); FALLING BACK to the legacy epoll driver, {where_}"
            ));
            let _ = shared.driver.set("legacy");
            match monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
                .enable_timer()
                .build()
            {
                Ok(mut rt) => rt.block_on(worker_main(id, shared.clone(), listeners)),
                Err(e) => crate::log::error(&format!("worker {id}: cannot build runtime: {e}")),
            }
        }
    }
    shared.workers_done.fetch_add(1, Ordering::SeqCst);
}

/// Builds the io_uring runtime. By default the ring is set up for one issuer thread with
/// deferred task running (completions are processed in batches when the worker waits instead
/// of interrupting it), falling back to a plain ring on kernels without those flags.
/// `RINGWAY_URING=plain|coop|defer` picks one explicitly (for measurements).
type UringRuntime = monoio::Runtime<monoio::time::TimeDriver<monoio::IoUringDriver>>;

fn build_uring(mode: Option<&str>) -> std::io::Result<(UringRuntime, String)> {
    let build = |mode: &str| {
        let mut urb = io_uring::IoUring::builder();
        match mode {
            "defer" => {
                urb.setup_single_issuer().setup_defer_taskrun();
            }
            "coop" => {
                urb.setup_coop_taskrun();
            }
            _ => {}
        }
        monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
            .uring_builder(urb)
            .with_entries(1024)
            .enable_timer()
            .build()
    };
    match mode {
        Some(m) => build(m).map(|rt| (rt, m.to_string())),
        None => build("defer")
            .map(|rt| (rt, "defer".to_string()))
            .or_else(|_| build("plain").map(|rt| (rt, "plain".to_string()))),
    }
}

async fn worker_main(
    id: usize,
    shared: Arc<Shared>,
    listeners: Vec<(usize, std::net::TcpListener)>,
) {
    let core = Rc::new(Core::new(id, shared.clone()));
    crate::core::set_current(&core);
    // Socket and exchange deadlines list themselves with this tick instead of arming a timer.
    let _ticks = crate::deadline::start_ticks();
    let mut listener_fds = Vec::new();
    let accepting = Rc::new(Cell::new(0usize));
    let canceller = monoio::io::Canceller::new();
    for (index, l) in listeners {
        let local = l.local_addr().ok();
        // A duplicate, owned here: the drain shuts the socket down through it even if the
        // accept loop has already ended and closed its descriptor, whose number another
        // thread may have reused for a client connection by then.
        match std::os::fd::AsFd::as_fd(&l).try_clone_to_owned() {
            Ok(dup) => listener_fds.push(dup),
            Err(e) => crate::log::warn(&format!("worker {id}: listener {local:?}: dup: {e}")),
        }
        let listener = match TcpListener::from_std(l) {
            Ok(l) => l,
            Err(e) => {
                crate::log::error(&format!("worker {id}: listener {local:?}: {e}"));
                continue;
            }
        };
        accepting.set(accepting.get() + 1);
        let core = core.clone();
        let accepting = accepting.clone();
        let ctx = Rc::new(listener_ctx(&core, index, local));
        let cancel = canceller.handle();
        monoio::spawn(async move {
            accept_loop(core, listener, ctx, cancel).await;
            accepting.set(accepting.get() - 1);
        });
    }

    shared.workers_accepting.fetch_add(1, Ordering::SeqCst);
    monoio::spawn(telemetry_loop(core.clone()));

    // Wait for the drain signal (woken from the control thread).
    loop {
        if shared.draining.load(Ordering::SeqCst) {
            break;
        }
        let listener = shared.drain_event.listen();
        if shared.draining.load(Ordering::SeqCst) {
            break;
        }
        listener.await;
    }

    // Stop accepting. After an upgrade the sockets are the successor's too: only cancel our
    // pending accepts (a shutdown would stop its accepts as well). Otherwise shut them down,
    // which also refuses what waits in their queues.
    let handed_over = shared.handed_over.load(Ordering::SeqCst);
    if !handed_over {
        for fd in &listener_fds {
            // SAFETY: `fd` is our own open duplicate of the listening socket; shutdown does
            // not close it.
            unsafe {
                libc::shutdown(fd.as_raw_fd(), libc::SHUT_RDWR);
            }
        }
    }
    let _ = canceller.cancel();
    let started = Instant::now();
    let drain_timeout = shared.config.load().drain_timeout;
    let deadline = started + drain_timeout;
    // After a handover, idle keep-alive connections get a grace period in which their next
    // request is still answered (with `Connection: close`): closing a connection the client
    // is about to reuse is the one way a drain could fail a request.
    let grace_end = started
        + if handed_over {
            IDLE_GRACE.min(drain_timeout / 2)
        } else {
            Duration::ZERO
        };
    loop {
        if Instant::now() >= grace_end {
            core.idle_grace_over.set(true);
            core.conns.close_idle();
        }
        if core.conns.open() == 0 && accepting.get() == 0 {
            break;
        }
        if Instant::now() >= deadline {
            crate::log::warn(&format!(
                "worker {id}: drain timeout with {} connections still open",
                core.conns.open()
            ));
            break;
        }
        monoio::time::sleep(Duration::from_millis(20)).await;
    }
    core.telemetry.flush();
}

/// How long idle keep-alive connections may still send one request after a handover.
const IDLE_GRACE: Duration = Duration::from_secs(1);

/// How often a worker hands buffered access-log lines and spans to their threads.
const TELEMETRY_FLUSH: Duration = Duration::from_millis(200);

/// Per worker: flushes log lines and spans every `TELEMETRY_FLUSH`, and publishes a metrics
/// snapshot whenever the admin thread asks for one (it bumps the hub's epoch and wakes us).
async fn telemetry_loop(core: Rc<Core>) {
    let hub = &core.shared.metrics;
    let mut served = 0u64;
    let mut next_flush = Instant::now() + TELEMETRY_FLUSH;
    loop {
        // Listen before checking the epoch so a request made in between is not missed.
        let wake = hub.listen();
        let epoch = hub.requested_epoch();
        if epoch > served {
            core.telemetry.flush();
            let snap = core.telemetry.snapshot(core.conns.open() as u64);
            hub.publish(core.id, snap, epoch);
            served = epoch;
            continue;
        }
        let now = Instant::now();
        if now >= next_flush {
            core.conns.wake_expired(now);
            if core.conns.quiet_after_parking() {
                // A burst has ended: what it left in pooled upstream connections' buffers and
                // in the allocator's free pages goes back to the OS.
                for u in &core.generation().upstreams {
                    u.release_idle_buffers();
                }
                crate::heap::give_back();
            }
            core.telemetry.flush();
            next_flush = now + TELEMETRY_FLUSH;
        }
        monoio::select! {
            _ = wake => {}
            _ = monoio::time::sleep_until(next_flush.into()) => {}
        }
    }
}

/// Listener `index` (sockets are bound in config order) as configured at startup. Its
/// configured address names it in later generations (a ":0" port differs from the bound one).
fn listener_ctx(core: &Core, index: usize, local: Option<SocketAddr>) -> crate::conn::ListenerCtx {
    let gen = core.generation();
    let l = gen.cfg.listeners.get(index);
    crate::conn::ListenerCtx {
        addr: l
            .map(|l| l.addr)
            .or(local)
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0))),
        tls: l.and_then(|l| l.tls.clone()),
    }
}

async fn accept_loop(
    core: Rc<Core>,
    listener: TcpListener,
    ctx: Rc<crate::conn::ListenerCtx>,
    cancel: monoio::io::CancelHandle,
) {
    loop {
        if core.draining() {
            break;
        }
        // Cancelable: a drain cancels the pending accept; a connection accepted in the same
        // instant is still served (it answers with `Connection: close`), never dropped.
        match listener.cancelable_accept(cancel.clone()).await {
            Ok((stream, peer)) => {
                let limits = core.generation().cfg.conn_limits;
                let held = match core.shared.admission.admit(peer.ip(), &limits) {
                    Ok(permit) => permit.into_held(),
                    Err(why) => {
                        refuse(&core, stream, why);
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let permit = ConnPermit {
                    core: core.clone(),
                    held,
                };
                if let Some(facts) = crate::conn::plain_http1(&core, peer, &ctx) {
                    // Spawned directly: the task of a plain HTTP/1.1 connection, which lives
                    // as long as it does, holds only its own wire's state (see `http1`).
                    let plain = crate::tls::transport::Transport::Plain(stream);
                    monoio::spawn(crate::conn::serve_connection(
                        core.clone(),
                        plain,
                        facts,
                        permit,
                    ));
                    continue;
                }
                let ctx = ctx.clone();
                monoio::spawn(async move {
                    let core = permit.core.clone();
                    crate::conn::serve_accepted(core, stream, peer, &ctx).await;
                    drop(permit);
                });
            }
            Err(e) => {
                if core.draining() {
                    break;
                }
                // EMFILE and friends: back off briefly instead of spinning.
                crate::log::warn(&format!("worker {}: accept: {e}", core.id));
                monoio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// A connection's share of the process-wide connection counts, released when its task ends
/// (however it ends).
struct ConnPermit {
    core: Rc<Core>,
    held: crate::admission::Held,
}

impl Drop for ConnPermit {
    fn drop(&mut self) {
        self.core.shared.admission.release_held(self.held);
    }
}

/// Closes a connection refused by a cap at once, with a reset (no response: it costs nothing to
/// parse, and an abortive close leaves no TIME_WAIT socket behind for a flood to pile up).
fn refuse(core: &Core, stream: monoio::net::TcpStream, why: crate::admission::Refusal) {
    use crate::admission::Refusal;
    use crate::metrics::CoreCounter;
    core.telemetry.count(match why {
        Refusal::MaxConnections => CoreCounter::ConnRefusedMax,
        Refusal::PerIp => CoreCounter::ConnRefusedPerIp,
    });
    crate::io::reset_on_close(stream.as_raw_fd());
    drop(stream);
}

/// Raises this process's soft open-file limit to its hard limit (each client connection is a
/// file descriptor; distributions often start processes with a soft limit of 1024) and logs
/// the result, warning when the limit is below `limits.max_connections`' default.
pub fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write the plain struct we own.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0;
    if !ok {
        return;
    }
    let before = lim.rlim_cur;
    if lim.rlim_cur < lim.rlim_max {
        lim.rlim_cur = lim.rlim_max;
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
            lim.rlim_cur = before;
        }
    }
    let now = lim.rlim_cur;
    if now != before {
        crate::log::info(&format!("open-file limit raised from {before} to {now}"));
    }
    if now < crate::config::abuse::DEFAULT_MAX_CONNECTIONS as u64 {
        crate::log::info(&format!(
            "open-file limit is {now}: accept fails with EMFILE near that many connections; raise the hard limit (ulimit -Hn / LimitNOFILE) to serve more"
        ));
    }
}

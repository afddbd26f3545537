//! `rwload run`: the load generator. One pinned monoio runtime per thread, each owning its
//! share of the keep-alive connections, its own `ThreadStats` and a watchdog; results are
//! merged only after the threads stop, so nothing is shared on the request path except one
//! relaxed progress counter per thread.
//!
//! Each connection has at most one request in flight. Closed loop: send the next request as
//! soon as the response is in; latency runs from the write. Open loop (`--rate`): connection
//! `g` of `N` sends request `k` at `t0 + (g + k*N) / rate`; latency runs from that intended
//! time, so a slow server is charged for the queue it causes (coordinated omission corrected).
//! A connection behind schedule sends back to back. The one exception: when a connection was
//! idle and slept until the intended time, latency runs from when it woke, so the timer's own
//! lateness is not charged to the server. Sleeps go through the per-thread `Pacer` (timerfd,
//! microsecond wake-ups) so requests leave evenly spaced rather than in 1 ms bursts.
//!
//! Connections are opened before the clock starts (`t0`, shared by all threads). The measured
//! window is `[t0 + warmup, t0 + warmup + duration)`: a request counts (response or error)
//! when it started inside it (intended time in open loop) and finished before its end;
//! connect errors count when they happen inside it. `--requests N` instead hands out exactly
//! N send permits (no warmup) and the run ends when they are used up, or at the `--duration`
//! cap.
//!
//! Timeouts need no timer per request: the watchdog task scans the thread's connections every
//! `timeout / 20` (1..100 ms) and shuts down the socket of any request past its deadline, which ends the
//! pending read; the connection task sees the flag, counts a timeout and reconnects.

use std::cell::{Cell, RefCell};
use std::os::fd::RawFd;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier, OnceLock};
use std::time::{Duration, Instant};

use crate::body::BodyDecoder;
use crate::conn::{open, Conn, OpenError};
use crate::pacer::Pacer;
use crate::recvbuf::RecvBuf;
use crate::request::Target;
use crate::response::parse_head;
use crate::runtime::{block_on, DriverKind};
use crate::stats::{Report, ReportHead, ThreadStats};
use crate::tls::{is_tls_failure, TlsClient, TlsOptions};
use crate::units::{fmt_count, pin_current_thread};

/// Pause after a failed connection attempt before the next one.
const CONNECT_RETRY: Duration = Duration::from_millis(10);
/// How long stopping threads wait for their connections to wind down.
const STOP_GRACE: Duration = Duration::from_millis(500);

/// Everything a run needs, decided before any thread starts.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub url: String,
    pub target: Target,
    pub method: String,
    /// The serialized request (head and body) every connection sends.
    pub request: Vec<u8>,
    pub threads: usize,
    /// CPUs to pin load threads to, thread `i` on `cpus[i % len]`; empty = no pinning.
    pub cpus: Vec<usize>,
    pub connections: usize,
    pub duration: Duration,
    pub warmup: Duration,
    /// Open loop: total requests per second over all connections.
    pub rate: Option<f64>,
    /// Stop after exactly this many requests were sent (closed or open loop).
    pub requests: Option<u64>,
    pub timeout: Duration,
    /// Print a progress line to stderr every second.
    pub progress: bool,
    /// https://: how to speak TLS.
    pub tls: Option<TlsOptions>,
    /// One request per connection: every request opens (and handshakes) a new connection,
    /// and its latency includes that.
    pub new_conn: bool,
    /// `--zipf`: each request goes to one of these, drawn per request.
    pub zipf: Option<std::sync::Arc<crate::zipf::ZipfRequests>>,
}

/// Counters a load thread publishes for the progress line; padded so threads never share a
/// cache line.
#[repr(align(128))]
#[derive(Default)]
struct Published {
    responses: AtomicU64,
    errors: AtomicU64,
}

impl Published {
    /// Only the owning thread writes, so a load and a store suffice (no locked RMW).
    fn bump(counter: &AtomicU64) {
        counter.store(counter.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    }
}

/// State shared by all threads of a run (read-only after start, except the atomics).
struct Shared {
    cfg: RunConfig,
    start: Barrier,
    t0: OnceLock<Instant>,
    published: Vec<Published>,
}

/// What a load thread hands back.
struct ThreadResult {
    stats: ThreadStats,
    last_response: Option<Instant>,
    driver: DriverKind,
}

/// Runs the load described by `cfg` and returns the merged report.
pub fn run(cfg: RunConfig) -> Result<Report, String> {
    let threads = cfg.threads.clamp(1, cfg.connections.max(1));
    let shared = Arc::new(Shared {
        start: Barrier::new(threads + 1),
        t0: OnceLock::new(),
        published: (0..threads).map(|_| Published::default()).collect(),
        cfg,
    });
    let mut handles = Vec::with_capacity(threads);
    for idx in 0..threads {
        let shared = shared.clone();
        let h = std::thread::Builder::new()
            .name(format!("rwload-{idx}"))
            .spawn(move || load_thread(shared, idx, threads))
            .map_err(|e| format!("cannot start load thread: {e}"))?;
        handles.push(h);
    }
    shared.start.wait();
    let t0 = *shared.t0.get_or_init(Instant::now);
    let cfg = &shared.cfg;
    if cfg.progress {
        progress_loop(&shared, t0, &handles);
    }

    let mut merged = ThreadStats::default();
    let mut last_response: Option<Instant> = None;
    let mut drivers = Vec::new();
    for h in handles {
        let r = h
            .join()
            .map_err(|_| "a load thread panicked".to_string())??;
        merged.merge(&r.stats);
        last_response = last_response.max(r.last_response);
        drivers.push(r.driver);
    }
    let driver = if drivers.contains(&DriverKind::Legacy) {
        eprintln!("rwload: warning: load threads ran on the legacy epoll driver, not io_uring");
        DriverKind::Legacy
    } else {
        DriverKind::IoUring
    };
    let duration_s = match cfg.requests {
        // Exact-count runs last until the last response (or the cap).
        Some(_) => last_response
            .map(|t| t.duration_since(t0))
            .unwrap_or(Duration::ZERO)
            .min(cfg.duration)
            .as_secs_f64(),
        None => cfg.duration.as_secs_f64(),
    };
    let head = ReportHead {
        mode: if cfg.rate.is_some() { "open" } else { "closed" },
        url: cfg.url.clone(),
        method: cfg.method.clone(),
        threads,
        connections: cfg.connections,
        rate: cfg.rate,
        driver: driver.name(),
        tls: cfg.tls.is_some(),
    };
    Ok(Report::new(head, &merged, duration_s))
}

/// Prints one line per second to stderr until every load thread has finished.
fn progress_loop<T>(shared: &Shared, t0: Instant, handles: &[std::thread::JoinHandle<T>]) {
    let warmup = shared.cfg.warmup;
    let mut prev = 0u64;
    let mut tick = 1u64;
    loop {
        let at = t0 + Duration::from_secs(tick);
        while Instant::now() < at {
            if handles.iter().all(|h| h.is_finished()) {
                return;
            }
            std::thread::sleep((at - Instant::now()).min(Duration::from_millis(50)));
        }
        let sum = |f: fn(&Published) -> &AtomicU64| -> u64 {
            shared
                .published
                .iter()
                .map(|p| f(p).load(Ordering::Relaxed))
                .sum()
        };
        let responses = sum(|p| &p.responses);
        let errors = sum(|p| &p.errors);
        let phase = if Duration::from_secs(tick) <= warmup {
            " (warmup)"
        } else {
            ""
        };
        eprintln!(
            "rwload: {tick:>4}s  {:>9} req/s  {:>11} responses  {errors} errors{phase}",
            fmt_count((responses - prev) as f64),
            responses
        );
        prev = responses;
        tick += 1;
    }
}

/// The body of one load thread.
fn load_thread(shared: Arc<Shared>, idx: usize, threads: usize) -> Result<ThreadResult, String> {
    let cfg = &shared.cfg;
    if !cfg.cpus.is_empty() {
        if let Err(e) = pin_current_thread(cfg.cpus[idx % cfg.cpus.len()]) {
            eprintln!("rwload: warning: load thread {idx}: {e}");
        }
    }
    // Connections are dealt out as evenly as possible; `first` is this thread's first global
    // connection index (it fixes the open-loop phase of each connection).
    let base = cfg.connections / threads;
    let extra = cfg.connections % threads;
    let count = base + usize::from(idx < extra);
    let first = idx * base + idx.min(extra);
    let permits = cfg.requests.map(|n| {
        let t = threads as u64;
        n / t + u64::from((idx as u64) < n % t)
    });
    let tls = match cfg.tls.as_ref().map(TlsClient::new).transpose() {
        Ok(t) => t,
        Err(e) => {
            shared.start.wait();
            return Err(e);
        }
    };
    let shared2 = shared.clone();
    let outcome = block_on(&format!("load thread {idx}"), move |driver| async move {
        let shared = shared2;
        let streams = if shared.cfg.new_conn {
            (0..count)
                .map(|_| (None, tls.as_ref().map(TlsClient::for_slot)))
                .collect()
        } else {
            let c = &shared.cfg;
            preconnect(c.target.addr, count, c.timeout, tls.as_ref()).await
        };
        shared.start.wait();
        let t0 = *shared.t0.get_or_init(Instant::now);
        let ctx = Rc::new(ThreadCtx::new(
            shared.clone(),
            idx,
            t0,
            count,
            permits,
            driver,
        ));
        run_thread(ctx.clone(), first, streams).await;
        let stats = ctx.stats.replace(ThreadStats::default());
        ThreadResult {
            stats,
            last_response: ctx.last_response.get(),
            driver,
        }
    });
    if outcome.is_err() {
        // The other threads and `run` wait at the barrier: release them even on failure.
        shared.start.wait();
    }
    outcome
}

/// Per-thread state shared by the thread's connection tasks and its watchdog.
struct ThreadCtx {
    shared: Arc<Shared>,
    idx: usize,
    t0: Instant,
    /// Start of the measured window.
    measure_from: Instant,
    /// End of the measured window; nothing is sent or counted from here on.
    end: Instant,
    stats: RefCell<ThreadStats>,
    slots: Vec<Slot>,
    /// Send permits left (`--requests`); `u64::MAX` when unlimited.
    permits: Cell<u64>,
    stopping: Cell<bool>,
    last_response: Cell<Option<Instant>>,
    /// Precise open-loop sleeps (see `pacer.rs`); `None` in closed loop.
    pacer: Option<Rc<Pacer>>,
}

/// What the watchdog knows about one connection.
struct Slot {
    /// Socket of the live connection, -1 when there is none.
    fd: Cell<RawFd>,
    /// When the request in flight times out.
    deadline: Cell<Option<Instant>>,
    /// Set by the watchdog when it shut the socket down for a timeout.
    timed_out: Cell<bool>,
}

/// How a request ended, when it did not end with a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    Timeout,
    /// Read/write error, early close, or a malformed response.
    Parse,
    /// A TLS error: failed handshake (new connection per request) or a bad record or alert.
    Tls,
    /// The new connection of a one-request connection could not be opened.
    Connect,
}

/// When one request happened.
struct Timing {
    /// Its place in the run: the intended send time in open loop, else `started`.
    scheduled: Instant,
    /// Where its latency is measured from (see the module header).
    started: Instant,
    /// When the response (or the failure) was complete.
    done: Instant,
    io: IoBytes,
}

/// Bytes one request moved.
#[derive(Debug, Clone, Copy, Default)]
struct IoBytes {
    read: u64,
    written: u64,
}

/// A complete response.
struct Response {
    status: u16,
    close: bool,
}

impl ThreadCtx {
    fn new(
        shared: Arc<Shared>,
        idx: usize,
        t0: Instant,
        connections: usize,
        permits: Option<u64>,
        driver: DriverKind,
    ) -> Self {
        let cfg = &shared.cfg;
        // Only io_uring reads the timerfd asynchronously; epoll keeps monoio's 1 ms timer.
        let coarse = std::env::var_os("RWLOAD_COARSE_TIMER").is_some();
        let pacer = match (cfg.rate, driver) {
            (Some(_), DriverKind::IoUring) if !coarse => match Pacer::new(connections) {
                Ok(p) => Some(p),
                Err(e) => {
                    eprintln!("rwload: warning: no timerfd ({e}); pacing with 1 ms resolution");
                    None
                }
            },
            _ => None,
        };
        let (measure_from, end) = match cfg.requests {
            Some(_) => (t0, t0 + cfg.duration),
            None => (t0 + cfg.warmup, t0 + cfg.warmup + cfg.duration),
        };
        let slots = (0..connections)
            .map(|_| Slot {
                fd: Cell::new(-1),
                deadline: Cell::new(None),
                timed_out: Cell::new(false),
            })
            .collect();
        ThreadCtx {
            shared,
            idx,
            t0,
            measure_from,
            end,
            stats: RefCell::new(ThreadStats::default()),
            slots,
            permits: Cell::new(permits.unwrap_or(u64::MAX)),
            stopping: Cell::new(false),
            last_response: Cell::new(None),
            pacer,
        }
    }

    fn cfg(&self) -> &RunConfig {
        &self.shared.cfg
    }

    fn published(&self) -> &Published {
        &self.shared.published[self.idx]
    }

    fn in_window(&self, t: Instant) -> bool {
        t >= self.measure_from && t < self.end
    }

    /// A request is measured when it started (its intended time, in open loop) at or after
    /// the warmup and finished before the end of the window.
    fn measured(&self, t: &Timing) -> bool {
        t.scheduled >= self.measure_from && t.done < self.end
    }

    fn take_permit(&self) -> bool {
        match self.permits.get() {
            0 => false,
            u64::MAX => true,
            n => {
                self.permits.set(n - 1);
                true
            }
        }
    }

    fn count_connect_error(&self, at: Instant, e: OpenError) {
        Published::bump(&self.published().errors);
        if self.in_window(at) {
            let mut s = self.stats.borrow_mut();
            match e {
                OpenError::Connect => s.errors.connect += 1,
                OpenError::Tls => s.errors.tls += 1,
            }
        }
    }

    fn count_failure(&self, failure: Failure, t: &Timing) {
        if self.stopping.get() {
            return;
        }
        Published::bump(&self.published().errors);
        if self.measured(t) {
            let mut s = self.stats.borrow_mut();
            s.bytes_read += t.io.read;
            s.bytes_written += t.io.written;
            match failure {
                Failure::Timeout => s.errors.timeout += 1,
                Failure::Parse => s.errors.parse += 1,
                Failure::Tls => s.errors.tls += 1,
                Failure::Connect => s.errors.connect += 1,
            }
        }
    }

    /// Counts a response; `fresh` is the connection's TLS handshake when this was its first
    /// request.
    fn count_response(&self, status: u16, t: &Timing, fresh: Option<&Conn>) {
        Published::bump(&self.published().responses);
        let measured = self.measured(t);
        if let Some(n) = fresh.and_then(Conn::negotiated) {
            self.stats.borrow_mut().tls.record(&n, measured);
        }
        if measured {
            let us = t.done.saturating_duration_since(t.started).as_micros();
            let us = u64::try_from(us).unwrap_or(u64::MAX);
            let mut s = self.stats.borrow_mut();
            s.record_response(status, us);
            s.bytes_read += t.io.read;
            s.bytes_written += t.io.written;
            self.last_response.set(Some(t.done));
        }
    }

    /// Sleeps until `t` with the pacer's precision when there is one.
    async fn pace(&self, slot: usize, t: Instant) {
        match &self.pacer {
            Some(p) => p.sleep_until(slot, t).await,
            None => sleep_until(t).await,
        }
    }

    /// Shuts down every live socket so pending reads and writes end now.
    fn shutdown_all(&self) {
        for slot in &self.slots {
            shutdown_fd(slot.fd.get());
        }
    }
}

fn shutdown_fd(fd: RawFd) {
    if fd >= 0 {
        // SAFETY: `fd` is the socket of a `TcpStream` that a task of this thread still owns
        // (the slot is reset to -1 before the stream is dropped, and only this thread reads
        // the slot), so it is open and refers to that socket. shutdown() only changes the
        // socket's state; it does not close or free anything.
        unsafe {
            libc::shutdown(fd, libc::SHUT_RDWR);
        }
    }
}

/// Opens the thread's connections (concurrently, TLS handshakes included) before the clock
/// starts, so a connection storm is not part of the measurement. A failed connection is
/// `None`; its task retries.
async fn preconnect(
    addr: std::net::SocketAddr,
    count: usize,
    timeout: Duration,
    tls: Option<&TlsClient>,
) -> Vec<(Option<Conn>, Option<TlsClient>)> {
    let tasks: Vec<_> = (0..count)
        .map(|_| {
            let tls = tls.map(TlsClient::for_slot);
            monoio::spawn(async move { (open(addr, timeout, tls.as_ref()).await.ok(), tls) })
        })
        .collect();
    let mut streams = Vec::with_capacity(count);
    for t in tasks {
        streams.push(t.await);
    }
    streams
}

/// Runs the thread's connections until the window ends or all permits are used.
async fn run_thread(
    ctx: Rc<ThreadCtx>,
    first: usize,
    streams: Vec<(Option<Conn>, Option<TlsClient>)>,
) {
    let mut tasks = Vec::with_capacity(ctx.slots.len());
    for (local, (stream, tls)) in streams.into_iter().enumerate() {
        let task = if ctx.cfg().new_conn {
            monoio::spawn(one_request_connections(
                ctx.clone(),
                local,
                first + local,
                tls,
            ))
        } else {
            monoio::spawn(connection(ctx.clone(), local, first + local, stream, tls))
        };
        tasks.push(task);
    }
    let watchdog = monoio::spawn(watchdog(ctx.clone()));
    let pacer = ctx.pacer.clone().map(|p| monoio::spawn(p.run()));
    let mut all_done = Box::pin(async move {
        for t in tasks {
            t.await;
        }
    });
    let finished = monoio::select! {
        _ = &mut all_done => true,
        _ = sleep_until(ctx.end) => false,
    };
    ctx.stopping.set(true);
    if let Some(p) = &ctx.pacer {
        p.stop();
    }
    if !finished {
        ctx.shutdown_all();
        let _ = monoio::time::timeout(STOP_GRACE, all_done).await;
    }
    drop(watchdog);
    if let Some(p) = pacer {
        let _ = monoio::time::timeout(STOP_GRACE, p).await;
    }
}

/// Times out requests by shutting their sockets down (see the module header).
async fn watchdog(ctx: Rc<ThreadCtx>) {
    let period =
        (ctx.cfg().timeout / 20).clamp(Duration::from_millis(1), Duration::from_millis(100));
    while !ctx.stopping.get() {
        monoio::time::sleep(period).await;
        let now = Instant::now();
        for slot in &ctx.slots {
            if slot.deadline.get().is_some_and(|d| now >= d) {
                slot.deadline.set(None);
                slot.timed_out.set(true);
                shutdown_fd(slot.fd.get());
            }
        }
    }
}

/// The open-loop send schedule of one connection.
struct Schedule {
    t0: Instant,
    rate: f64,
    connections: u64,
    global: u64,
}

impl Schedule {
    fn new(rate: f64, connections: usize, global: usize, t0: Instant) -> Self {
        Schedule {
            t0,
            rate,
            connections: connections as u64,
            global: global as u64,
        }
    }

    /// Intended send time of request `k` (0-based) of this connection: the global sequence
    /// number `global + k * connections` divided by the rate.
    fn at(&self, k: u64) -> Instant {
        let seq = k
            .saturating_mul(self.connections)
            .saturating_add(self.global);
        let secs = seq as f64 / self.rate;
        // Saturate rather than panic on absurd values; such a send time is never reached.
        self.t0 + Duration::try_from_secs_f64(secs).unwrap_or(Duration::from_secs(86_400 * 365))
    }
}

async fn sleep_until(t: Instant) {
    monoio::time::sleep_until(monoio::time::Instant::from_std(t)).await;
}

/// When the next request of a connection goes out: waits for its open-loop time (if any) and
/// takes a send permit. `None` when the connection is done (window over, stopping, no
/// permits). Returns (scheduled, started).
async fn next_send(
    ctx: &ThreadCtx,
    local: usize,
    schedule: Option<&Schedule>,
    sent: u64,
) -> Option<(Instant, Instant)> {
    if ctx.stopping.get() {
        return None;
    }
    let intended = schedule.map(|s| s.at(sent));
    if intended.is_some_and(|t| t >= ctx.end) {
        return None;
    }
    let mut now = Instant::now();
    let started = match intended {
        Some(at) if now < at => {
            ctx.pace(local, at).await;
            now = Instant::now();
            // Idle until now: charge the server from when we woke, not the timer's lag.
            now.max(at)
        }
        Some(at) => at,
        None => now,
    };
    if ctx.stopping.get() || now >= ctx.end || !ctx.take_permit() {
        return None;
    }
    Some((intended.unwrap_or(started), started))
}

/// One keep-alive connection: connect, send, read, record, repeat; reconnect after errors or
/// a server close.
async fn connection(
    ctx: Rc<ThreadCtx>,
    local: usize,
    global: usize,
    mut stream: Option<Conn>,
    tls: Option<TlsClient>,
) {
    let cfg = ctx.cfg();
    let slot = &ctx.slots[local];
    let schedule = cfg
        .rate
        .map(|r| Schedule::new(r, cfg.connections, global, ctx.t0));
    let mut request = cfg.request.clone();
    let head_request = cfg.method == "HEAD";
    let mut rbuf = RecvBuf::new();
    let mut opened = u64::from(stream.is_some());
    // Distinct per connection, never zero (xorshift).
    let mut rng = 0x9e37_79b9_7f4a_7c15u64 ^ ((global as u64 + 1) << 17) ^ global as u64;
    // The connection has not served a request yet: its handshake is counted with the first.
    let mut fresh = stream.is_some();
    if let Some(s) = &stream {
        slot.fd.set(s.raw_fd());
    }
    let mut sent = 0u64;
    loop {
        if ctx.stopping.get() {
            break;
        }
        let mut conn = match stream.take() {
            Some(s) => s,
            None => match open(cfg.target.addr, cfg.timeout, tls.as_ref()).await {
                Ok(s) => {
                    opened += 1;
                    if opened > 1 {
                        ctx.stats.borrow_mut().reconnects += 1;
                    }
                    slot.fd.set(s.raw_fd());
                    rbuf.clear();
                    fresh = true;
                    s
                }
                Err(e) => {
                    let now = Instant::now();
                    ctx.count_connect_error(now, e);
                    sleep_until((now + CONNECT_RETRY).min(ctx.end)).await;
                    continue;
                }
            },
        };
        let Some((scheduled, started)) = next_send(&ctx, local, schedule.as_ref(), sent).await
        else {
            slot.fd.set(-1);
            drop(conn);
            break;
        };
        sent += 1;

        slot.timed_out.set(false);
        slot.deadline
            .set(Some(started.max(Instant::now()) + cfg.timeout));
        let mut io = IoBytes::default();
        if let Some(z) = &cfg.zipf {
            request.clear();
            request.extend_from_slice(z.pick(&mut rng));
        }
        let result = exchange(&mut conn, &mut request, &mut rbuf, head_request, &mut io).await;
        slot.deadline.set(None);
        let timing = Timing {
            scheduled,
            started,
            done: Instant::now(),
            io,
        };
        let timed_out = slot.timed_out.replace(false);
        match result {
            Ok(resp) if !timed_out => {
                ctx.count_response(resp.status, &timing, fresh.then_some(&conn));
                fresh = false;
                if !resp.close {
                    stream = Some(conn);
                    continue;
                }
            }
            Ok(_) => ctx.count_failure(Failure::Timeout, &timing),
            Err(f) => {
                let f = if timed_out { Failure::Timeout } else { f };
                ctx.count_failure(f, &timing);
            }
        }
        // The connection is finished: forget its fd before the stream closes it.
        slot.fd.set(-1);
        drop(conn);
    }
    slot.fd.set(-1);
    drop(stream);
}

/// `--new-conn`: every request opens its own connection (TCP connect, TLS handshake), sends
/// one request, reads the response and closes (close_notify over TLS). Latency runs from
/// before the connect. A connection that cannot be opened counts as a `connect` (or `tls`)
/// error of that request.
async fn one_request_connections(
    ctx: Rc<ThreadCtx>,
    local: usize,
    global: usize,
    tls: Option<TlsClient>,
) {
    let cfg = ctx.cfg();
    let slot = &ctx.slots[local];
    let schedule = cfg
        .rate
        .map(|r| Schedule::new(r, cfg.connections, global, ctx.t0));
    let mut request = cfg.request.clone();
    let head_request = cfg.method == "HEAD";
    let mut rbuf = RecvBuf::new();
    let mut sent = 0u64;
    while let Some((scheduled, started)) = next_send(&ctx, local, schedule.as_ref(), sent).await {
        sent += 1;
        let opened = open(cfg.target.addr, cfg.timeout, tls.as_ref()).await;
        let mut conn = match opened {
            Ok(c) => c,
            Err(e) => {
                let timing = Timing {
                    scheduled,
                    started,
                    done: Instant::now(),
                    io: IoBytes::default(),
                };
                let f = match e {
                    OpenError::Connect => Failure::Connect,
                    OpenError::Tls => Failure::Tls,
                };
                ctx.count_failure(f, &timing);
                if e == OpenError::Connect {
                    sleep_until((Instant::now() + CONNECT_RETRY).min(ctx.end)).await;
                }
                continue;
            }
        };
        rbuf.clear();
        slot.fd.set(conn.raw_fd());
        slot.timed_out.set(false);
        slot.deadline.set(Some(Instant::now() + cfg.timeout));
        let mut io = IoBytes::default();
        let result = exchange(&mut conn, &mut request, &mut rbuf, head_request, &mut io).await;
        slot.deadline.set(None);
        let timing = Timing {
            scheduled,
            started,
            done: Instant::now(),
            io,
        };
        match result {
            Ok(resp) if !slot.timed_out.replace(false) => {
                ctx.count_response(resp.status, &timing, Some(&conn));
                slot.fd.set(-1);
                conn.close().await;
            }
            Ok(_) => ctx.count_failure(Failure::Timeout, &timing),
            Err(f) => {
                let f = if slot.timed_out.replace(false) {
                    Failure::Timeout
                } else {
                    f
                };
                ctx.count_failure(f, &timing);
            }
        }
        slot.fd.set(-1);
    }
    slot.fd.set(-1);
}

/// Writes the request and reads one complete response (skipping 1xx interim responses).
async fn exchange(
    conn: &mut Conn,
    request: &mut Vec<u8>,
    rbuf: &mut RecvBuf,
    head_request: bool,
    io: &mut IoBytes,
) -> Result<Response, Failure> {
    let (res, buf) = conn.write_all(std::mem::take(request)).await;
    *request = buf;
    let written = res.map_err(|e| io_failure(&e))?;
    io.written += written as u64;

    loop {
        let head = loop {
            match parse_head(rbuf.data(), head_request) {
                Ok(Some(h)) => break h,
                Ok(None) => {}
                Err(_) => return Err(Failure::Parse),
            }
            read_more(conn, rbuf, io).await?;
        };
        rbuf.consume(head.len);
        if (100..200).contains(&head.status) && head.status != 101 {
            continue;
        }
        let mut body = BodyDecoder::new(head.framing);
        loop {
            let p = body.decode(rbuf.data()).map_err(|_| Failure::Parse)?;
            rbuf.consume(p.consumed);
            if p.done {
                break;
            }
            match read_more(conn, rbuf, io).await {
                Ok(()) => {}
                // A close-delimited body ends at end of stream.
                Err(_) if body.until_close() => {
                    return Ok(Response {
                        status: head.status,
                        close: true,
                    })
                }
                Err(f) => return Err(f),
            }
        }
        return Ok(Response {
            status: head.status,
            close: head.close,
        });
    }
}

fn io_failure(e: &std::io::Error) -> Failure {
    if is_tls_failure(e) {
        Failure::Tls
    } else {
        Failure::Parse
    }
}

/// Reads at least one byte into `rbuf`; end of stream and errors are failures.
async fn read_more(conn: &mut Conn, rbuf: &mut RecvBuf, io: &mut IoBytes) -> Result<(), Failure> {
    match conn.fill(rbuf).await {
        Ok(0) => Err(Failure::Parse),
        Err(e) => Err(io_failure(&e)),
        Ok(n) => {
            io.read += n as u64;
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_interleaves_connections() {
        let t0 = Instant::now();
        // 4 connections at 100 req/s: each sends every 40 ms, phases 10 ms apart.
        let at = |g: usize, k: u64| Schedule::new(100.0, 4, g, t0).at(k) - t0;
        assert_eq!(at(0, 0), Duration::ZERO);
        assert_eq!(at(1, 0), Duration::from_millis(10));
        assert_eq!(at(3, 0), Duration::from_millis(30));
        assert_eq!(at(0, 1), Duration::from_millis(40));
        assert_eq!(at(2, 5), Duration::from_millis(220));
        // Over one second the 4 connections send exactly 100 requests.
        let mut n = 0;
        for g in 0..4 {
            let s = Schedule::new(100.0, 4, g, t0);
            n += (0..)
                .take_while(|&k| s.at(k) < t0 + Duration::from_secs(1))
                .count();
        }
        assert_eq!(n, 100);
    }
}

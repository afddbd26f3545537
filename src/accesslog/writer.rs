//! Per-core line buffers (`CoreLog`) and the single writer thread behind the process-wide
//! `AccessLog` handle: batches handed over with `try_send` (dropped and counted when the writer
//! is behind), one `write_all` per batch, target switches and reopens applied on the next wake.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use super::format::{format_combined, format_json};
use super::record::{LogFormat, LogRecord, LogTarget};

/// A buffer at least this large is handed to the writer right away.
const BATCH_BYTES: usize = 32 * 1024;
/// Headroom so the line that crosses `BATCH_BYTES` usually does not reallocate.
const BATCH_CAPACITY: usize = BATCH_BYTES + 4 * 1024;
/// How long the writer sleeps in `recv` before checking for reopen / target changes.
const WRITER_TICK: Duration = Duration::from_millis(100);

/// Locks `m`, ignoring poisoning: every value guarded here stays consistent across a panic.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// State shared between the handle and the writer thread.
struct Shared {
    reopen: AtomicBool,
    pending_target: Mutex<Option<LogTarget>>,
    write_errors: AtomicU64,
    /// Batches accepted by the channel.
    handed: AtomicU64,
    /// Batches the writer has finished with (written or failed).
    done: Mutex<u64>,
    done_cv: Condvar,
    /// Test hook: while set, the writer does not take batches off the channel.
    #[cfg(test)]
    hold: AtomicBool,
}

/// Process-wide access log handle (lives in the shared state; `Send + Sync`).
pub struct AccessLog {
    tx: SyncSender<Vec<u8>>,
    shared: Arc<Shared>,
}

impl AccessLog {
    /// Opens `target` and starts the writer thread. `queue` is the number of batches that may
    /// wait for the writer (at least 1). Fails if the file cannot be opened (append + create)
    /// or the thread cannot be spawned.
    pub fn start(target: LogTarget, queue: usize) -> io::Result<Arc<AccessLog>> {
        Self::start_inner(target, queue, false)
    }

    fn start_inner(target: LogTarget, queue: usize, hold: bool) -> io::Result<Arc<AccessLog>> {
        let out = Output::open(&target)?;
        let shared = Arc::new(Shared {
            reopen: AtomicBool::new(false),
            pending_target: Mutex::new(None),
            write_errors: AtomicU64::new(0),
            handed: AtomicU64::new(0),
            done: Mutex::new(0),
            done_cv: Condvar::new(),
            #[cfg(test)]
            hold: AtomicBool::new(hold),
        });
        #[cfg(not(test))]
        let _ = hold;
        let (tx, rx) = mpsc::sync_channel(queue.max(1));
        let writer = Writer {
            rx,
            shared: Arc::clone(&shared),
            out,
            failing: false,
        };
        std::thread::Builder::new()
            .name("ringway-accesslog".into())
            .spawn(move || writer.run())?;
        Ok(Arc::new(AccessLog { tx, shared }))
    }

    /// Switches to `target` (config reload changed it). The writer opens it on its next wake;
    /// if that fails it logs the error and keeps writing to the old target.
    pub fn set_target(&self, target: LogTarget) {
        *lock(&self.shared.pending_target) = Some(target);
    }

    /// Asks the writer to reopen the current file at the same path (SIGUSR1 after logrotate
    /// moved it). Takes effect within ~100 ms even when no lines are flowing. No-op for stdout.
    pub fn reopen(&self) {
        self.shared.reopen.store(true, Ordering::Release);
    }

    /// Number of batch writes that failed (each failed write loses that batch).
    pub fn write_errors(&self) -> u64 {
        self.shared.write_errors.load(Ordering::Relaxed)
    }

    /// Blocks until every batch handed over so far is written, at most `timeout`. Returns
    /// `false` on timeout. Lines still buffered in a [`CoreLog`] are not handed over: call
    /// [`CoreLog::flush`] first.
    pub fn flush_blocking(&self, timeout: Duration) -> bool {
        let target = self.shared.handed.load(Ordering::Acquire);
        let deadline = Instant::now() + timeout;
        let mut done = lock(&self.shared.done);
        while *done < target {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            done = match self.shared.done_cv.wait_timeout(done, deadline - now) {
                Ok((g, _)) => g,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
        true
    }

    /// Offers one batch to the writer; gives it back if the writer is behind or gone.
    fn hand_over(&self, batch: Vec<u8>) -> Result<(), Vec<u8>> {
        match self.tx.try_send(batch) {
            Ok(()) => {
                self.shared.handed.fetch_add(1, Ordering::Release);
                Ok(())
            }
            Err(TrySendError::Full(b)) | Err(TrySendError::Disconnected(b)) => Err(b),
        }
    }
}

/// The writer's open destination.
enum Output {
    Stdout,
    File { path: PathBuf, file: File },
}

impl Output {
    fn open(target: &LogTarget) -> io::Result<Output> {
        match target {
            LogTarget::Stdout => Ok(Output::Stdout),
            LogTarget::File(path) => Ok(Output::File {
                file: open_append(path)?,
                path: path.clone(),
            }),
        }
    }

    fn write_batch(&mut self, batch: &[u8]) -> io::Result<()> {
        match self {
            Output::Stdout => {
                let mut out = io::stdout().lock();
                out.write_all(batch)?;
                out.flush()
            }
            Output::File { file, .. } => file.write_all(batch),
        }
    }
}

/// Opens `path` to append log lines: a regular file (created if missing), a device
/// (`/dev/stdout`) or a FIFO a log collector reads. The open itself never blocks: a FIFO
/// nobody reads would otherwise hold the caller (the control thread, during a reload, with
/// SIGTERM waiting behind it) until a reader came; it is an error instead (`ENXIO`). Writes
/// then block as usual, on the writer thread only.
pub fn open_append(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    use std::os::unix::io::AsRawFd;
    let file = OpenOptions::new()
        .append(true)
        .create(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ENXIO) => io::Error::new(
                e.kind(),
                "a FIFO that no process has open for reading (start its reader first)",
            ),
            _ => e,
        })?;
    if file.metadata()?.is_dir() {
        return Err(io::Error::other("a directory"));
    }
    // SAFETY: fcntl on a descriptor this function owns; no memory is passed.
    let fd = file.as_raw_fd();
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(file)
}

/// The writer thread: owns the output and drains the channel.
struct Writer {
    rx: Receiver<Vec<u8>>,
    shared: Arc<Shared>,
    out: Output,
    /// Whether the last write failed (so a failing disk logs once, not once per batch).
    failing: bool,
}

impl Writer {
    fn run(mut self) {
        loop {
            #[cfg(test)]
            while self.shared.hold.load(Ordering::Acquire) {
                std::thread::sleep(Duration::from_millis(2));
            }
            let msg = self.rx.recv_timeout(WRITER_TICK);
            // Control changes first, so a batch pushed after set_target/reopen lands in the
            // new file.
            self.apply_control();
            match msg {
                Ok(batch) => {
                    self.write(&batch);
                    *lock(&self.shared.done) += 1;
                    self.shared.done_cv.notify_all();
                }
                Err(RecvTimeoutError::Timeout) => {}
                // Every handle is gone and the queue is drained.
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    fn apply_control(&mut self) {
        let reopen = self.shared.reopen.swap(false, Ordering::AcqRel);
        if let Some(target) = lock(&self.shared.pending_target).take() {
            match Output::open(&target) {
                Ok(out) => {
                    self.out = out;
                    return;
                }
                Err(e) => crate::log::error(&format!(
                    "access log: cannot open {target:?}: {e}; keeping the current target"
                )),
            }
        }
        if reopen {
            if let Output::File { path, file } = &mut self.out {
                match open_append(path) {
                    Ok(f) => *file = f,
                    Err(e) => crate::log::error(&format!(
                        "access log: cannot reopen {}: {e}; keeping the old file",
                        path.display()
                    )),
                }
            }
        }
    }

    fn write(&mut self, batch: &[u8]) {
        match self.out.write_batch(batch) {
            Ok(()) => self.failing = false,
            Err(e) => {
                self.shared.write_errors.fetch_add(1, Ordering::Relaxed);
                if !self.failing {
                    crate::log::error(&format!("access log: write failed, lines lost: {e}"));
                }
                self.failing = true;
            }
        }
    }
}

/// One per worker (owned by the worker; not `Sync`): buffers formatted lines and hands them
/// to the writer without blocking.
pub struct CoreLog {
    sink: Arc<AccessLog>,
    buf: Vec<u8>,
    /// Lines in `buf`.
    lines: u64,
    dropped: u64,
    rng: u64,
    _not_sync: std::marker::PhantomData<std::cell::Cell<()>>,
}

impl CoreLog {
    /// A core-local log feeding `sink`.
    pub fn new(sink: Arc<AccessLog>) -> Self {
        let seed = getrandom::u64().unwrap_or_else(|_| {
            // No OS randomness: time and a stack address still differ between cores.
            let t = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos() as u64;
            let local = 0u8;
            t ^ (&local as *const u8 as u64).rotate_left(32)
        });
        CoreLog {
            sink,
            buf: Vec::with_capacity(BATCH_CAPACITY),
            lines: 0,
            dropped: 0,
            // xorshift needs a non-zero state.
            rng: seed | 1,
            _not_sync: std::marker::PhantomData,
        }
    }

    /// Whether to log this request, keeping a fraction `rate` of them (1.0 always, 0.0 or
    /// NaN never). Uses a per-core xorshift64* generator.
    pub fn sampled(&mut self, rate: f64) -> bool {
        if rate >= 1.0 {
            return true;
        }
        if rate.is_nan() || rate <= 0.0 {
            return false;
        }
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        let r = x.wrapping_mul(0x2545_f491_4f6c_dd1d);
        // Top 53 bits as a uniform float in [0, 1).
        ((r >> 11) as f64) * (1.0 / (1u64 << 53) as f64) < rate
    }

    /// Formats and buffers one line; hands the buffer over once it reaches 32 KiB.
    pub fn push(&mut self, r: &LogRecord, format: LogFormat) {
        match format {
            LogFormat::Json => format_json(r, &mut self.buf),
            LogFormat::Combined => format_combined(r, &mut self.buf),
        }
        self.lines += 1;
        if self.buf.len() >= BATCH_BYTES {
            self.flush();
        }
    }

    /// Hands over whatever is buffered (call periodically and at shutdown). Never blocks: if
    /// the writer is behind, the lines are dropped and counted.
    pub fn flush(&mut self) {
        if self.lines == 0 {
            return;
        }
        let batch = std::mem::take(&mut self.buf);
        match self.sink.hand_over(batch) {
            Ok(()) => self.buf = Vec::with_capacity(BATCH_CAPACITY),
            Err(mut back) => {
                self.dropped += self.lines;
                back.clear();
                self.buf = back;
            }
        }
        self.lines = 0;
    }

    /// Lines dropped because the writer was behind, since the last call.
    pub fn take_dropped(&mut self) -> u64 {
        std::mem::take(&mut self.dropped)
    }
}

impl Drop for CoreLog {
    fn drop(&mut self) {
        self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};

    fn rec(target: &[u8]) -> LogRecord<'_> {
        LogRecord {
            time: SystemTime::now(),
            request_id: "r",
            trace_id: None,
            client: IpAddr::V4(Ipv4Addr::LOCALHOST),
            method: b"GET",
            target,
            version: "HTTP/1.1",
            route: None,
            status: 200,
            duration: Duration::from_millis(1),
            upstream_addr: None,
            upstream_name: None,
            upstream_duration: None,
            attempts: 0,
            bytes_in: 0,
            bytes_out: 0,
            user_agent: None,
            referer: None,
            consumer: None,
            aborted: None,
        }
    }

    fn push_n(log: &mut CoreLog, n: usize, tag: &str) {
        for i in 0..n {
            let t = format!("/{tag}/{i}");
            log.push(&rec(t.as_bytes()), LogFormat::Json);
        }
    }

    fn lines(path: &Path) -> Vec<String> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    const WAIT: Duration = Duration::from_secs(5);

    #[test]
    fn handle_is_send_sync() {
        fn check<T: Send + Sync>() {}
        check::<AccessLog>();
    }

    #[test]
    fn file_target_and_reopen_after_rotation() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("access.log");
        let sink = AccessLog::start(LogTarget::File(path.clone()), 8).expect("start");
        let mut log = CoreLog::new(Arc::clone(&sink));

        push_n(&mut log, 5, "a");
        log.flush();
        assert!(sink.flush_blocking(WAIT));
        let first = lines(&path);
        assert_eq!(first.len(), 5);
        for l in &first {
            serde_json::from_str::<serde_json::Value>(l).expect("json line");
        }

        // logrotate: move the file away, then SIGUSR1.
        let moved = dir.path().join("access.log.1");
        std::fs::rename(&path, &moved).expect("rename");
        sink.reopen();
        push_n(&mut log, 3, "b");
        log.flush();
        assert!(sink.flush_blocking(WAIT));
        assert_eq!(lines(&moved), first);
        let fresh = lines(&path);
        assert_eq!(fresh.len(), 3);
        assert!(fresh.iter().all(|l| l.contains("\"/b/")));
        assert_eq!(sink.write_errors(), 0);
        assert_eq!(log.take_dropped(), 0);
    }

    #[test]
    fn reopen_is_prompt_without_traffic() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("access.log");
        let sink = AccessLog::start(LogTarget::File(path.clone()), 8).expect("start");
        std::fs::rename(&path, dir.path().join("old.log")).expect("rename");
        sink.reopen();
        let deadline = Instant::now() + Duration::from_millis(400);
        while !path.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(path.exists(), "reopen did not recreate the file in time");
    }

    #[test]
    fn full_buffer_is_handed_over_without_flush() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("access.log");
        let sink = AccessLog::start(LogTarget::File(path.clone()), 8).expect("start");
        let mut log = CoreLog::new(Arc::clone(&sink));
        let long = vec![b'x'; 1000];
        for _ in 0..40 {
            log.push(&rec(&long), LogFormat::Combined);
        }
        assert!(sink.shared.handed.load(Ordering::Acquire) >= 1);
        assert!(sink.flush_blocking(WAIT));
        let mut one = Vec::new();
        format_combined(&rec(&long), &mut one);
        assert_eq!(lines(&path).len(), BATCH_BYTES.div_ceil(one.len()));
        log.flush();
        assert!(sink.flush_blocking(WAIT));
        assert_eq!(lines(&path).len(), 40);
    }

    #[test]
    fn set_target_switches_files_and_keeps_old_on_failure() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = dir.path().join("a.log");
        let b = dir.path().join("b.log");
        let sink = AccessLog::start(LogTarget::File(a.clone()), 8).expect("start");
        let mut log = CoreLog::new(Arc::clone(&sink));
        push_n(&mut log, 2, "a");
        log.flush();
        assert!(sink.flush_blocking(WAIT));

        sink.set_target(LogTarget::File(b.clone()));
        push_n(&mut log, 3, "b");
        log.flush();
        assert!(sink.flush_blocking(WAIT));

        sink.set_target(LogTarget::File(dir.path().join("missing/dir/c.log")));
        push_n(&mut log, 4, "b");
        log.flush();
        assert!(sink.flush_blocking(WAIT));

        assert_eq!(lines(&a).len(), 2);
        assert_eq!(lines(&b).len(), 7);
    }

    #[test]
    fn start_fails_when_file_cannot_be_opened() {
        let dir = tempfile::tempdir().expect("tempdir");
        let r = AccessLog::start(LogTarget::File(dir.path().join("no/such/x.log")), 4);
        assert!(r.is_err());
    }

    #[test]
    fn write_errors_are_counted() {
        let path = PathBuf::from("/dev/full");
        if !path.exists() {
            return;
        }
        let sink = AccessLog::start(LogTarget::File(path), 4).expect("start");
        let mut log = CoreLog::new(Arc::clone(&sink));
        for _ in 0..2 {
            push_n(&mut log, 2, "e");
            log.flush();
        }
        assert!(sink.flush_blocking(WAIT));
        assert_eq!(sink.write_errors(), 2);
    }

    #[test]
    fn sampling_rates() {
        let sink = AccessLog::start(LogTarget::Stdout, 1).expect("start");
        let mut log = CoreLog::new(sink);
        let count =
            |log: &mut CoreLog, rate: f64| (0..40_000).filter(|_| log.sampled(rate)).count();
        assert_eq!(count(&mut log, 0.0), 0);
        assert_eq!(count(&mut log, f64::NAN), 0);
        assert_eq!(count(&mut log, 1.0), 40_000);
        let quarter = count(&mut log, 0.25);
        assert!(
            (8_800..=11_200).contains(&quarter),
            "sampled {quarter} of 40000"
        );
    }

    #[test]
    fn behind_writer_drops_and_counts_without_blocking() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("access.log");
        let sink = AccessLog::start_inner(LogTarget::File(path.clone()), 1, true).expect("start");
        let mut log = CoreLog::new(Arc::clone(&sink));

        let started = Instant::now();
        // The first batch fills the one queue slot; the writer is held, so the next nine
        // batches of three lines each find the channel full.
        for round in 0..10 {
            push_n(&mut log, 3, &format!("r{round}"));
            log.flush();
        }
        assert!(started.elapsed() < Duration::from_secs(1), "pushes blocked");
        assert_eq!(log.take_dropped(), 27);
        assert_eq!(log.take_dropped(), 0);
        assert!(!sink.flush_blocking(Duration::from_millis(50)));

        sink.shared.hold.store(false, Ordering::Release);
        assert!(sink.flush_blocking(WAIT));
        let got = lines(&path);
        assert_eq!(got.len(), 3);
        assert!(got.iter().all(|l| l.contains("\"/r0/")));
    }

    #[test]
    fn writer_exits_when_handles_are_gone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("access.log");
        let sink = AccessLog::start(LogTarget::File(path.clone()), 4).expect("start");
        let shared = Arc::clone(&sink.shared);
        let mut log = CoreLog::new(sink);
        push_n(&mut log, 2, "x");
        // Dropping the last handle flushes the core buffer and closes the channel.
        drop(log);
        let deadline = Instant::now() + WAIT;
        while Arc::strong_count(&shared) > 1 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(Arc::strong_count(&shared), 1, "writer thread still running");
        assert_eq!(lines(&path).len(), 2);
    }
}

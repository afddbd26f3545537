//! Span export: per-worker buffers (`CoreSpans`) hand batches over a bounded channel to one
//! process-wide background thread ("ringway-otlp") that POSTs OTLP/HTTP JSON to a collector.
//!
//! Invariants: workers never block — `push`/`flush` only move a `Vec` with `try_send`; when
//! the queue is full the batch is dropped and counted per core (`take_dropped`). The exporter
//! thread never retries a batch: on any failure (connect, timeout, non-2xx, bad response) the
//! batch is dropped and counted (`dropped`), and after a transport failure it drops batches
//! without trying for a short, growing backoff (100 ms .. 5 s) so a dead collector costs
//! nothing. State changes (failing / recovered) are logged once, never per batch.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::client::{Client, PostError};
use super::endpoint::{parse_endpoint, Endpoint};
use super::otlp::{encode_otlp_json, SpanRecord};
use crate::log;

/// Spans a worker buffers before handing them to the exporter thread.
pub const CORE_BATCH: usize = 64;
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Exporter settings.
#[derive(Clone, Debug, PartialEq)]
pub struct OtlpConfig {
    /// Collector URL, `http://host[:port][/path]` (path default `/v1/traces`).
    pub endpoint: String,
    /// `service.name` resource attribute.
    pub service_name: String,
    /// Most spans per POST (at least 1).
    pub batch_size: usize,
    /// Longest a span waits on the exporter thread before it is sent.
    pub flush_interval: Duration,
    /// Bound on one POST: connect, write and response each within it.
    pub timeout: Duration,
    /// Worker batches (of up to 64 spans) that may wait for the exporter thread; applied at
    /// `start` only.
    pub queue: usize,
}

impl Default for OtlpConfig {
    fn default() -> Self {
        OtlpConfig {
            endpoint: "http://127.0.0.1:4318/v1/traces".into(),
            service_name: "ringway".into(),
            batch_size: 512,
            flush_interval: Duration::from_secs(1),
            timeout: Duration::from_secs(2),
            queue: 64,
        }
    }
}

impl OtlpConfig {
    fn clamped(mut self) -> Self {
        self.batch_size = self.batch_size.max(1);
        self.flush_interval = self.flush_interval.max(Duration::from_millis(1));
        self.timeout = self.timeout.max(Duration::from_millis(1));
        self.queue = self.queue.max(1);
        self
    }
}

enum Msg {
    Spans(Vec<SpanRecord>),
    /// Look at the shared state now (new config, flush request).
    Wake,
}

struct Shared {
    exported: AtomicU64,
    dropped: AtomicU64,
    new_config: Mutex<Option<(OtlpConfig, Endpoint)>>,
    config_dirty: AtomicBool,
    flush_requested: AtomicU64,
    flush_done: Mutex<u64>,
    flush_cv: Condvar,
}

/// A poisoned lock only means another thread panicked while holding it; the data (a counter,
/// a pending config) is still usable.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The process-wide exporter: owns the channel to the "ringway-otlp" thread and its counters.
/// `Send + Sync`; keep it in shared state and give each worker a `CoreSpans`. Dropping the
/// last handle lets the thread send what it holds and exit.
pub struct SpanExporter {
    tx: SyncSender<Msg>,
    shared: Arc<Shared>,
}

impl SpanExporter {
    /// Validates the endpoint and starts the background thread "ringway-otlp".
    pub fn start(cfg: OtlpConfig) -> std::io::Result<Arc<SpanExporter>> {
        let cfg = cfg.clamped();
        let ep = parse_endpoint(&cfg.endpoint)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        let (tx, rx) = mpsc::sync_channel(cfg.queue);
        let shared = Arc::new(Shared {
            exported: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            new_config: Mutex::new(None),
            config_dirty: AtomicBool::new(false),
            flush_requested: AtomicU64::new(0),
            flush_done: Mutex::new(0),
            flush_cv: Condvar::new(),
        });
        let thread_shared = shared.clone();
        std::thread::Builder::new()
            .name("ringway-otlp".into())
            .spawn(move || ExportThread::new(rx, thread_shared, cfg, ep).run())?;
        Ok(Arc::new(SpanExporter { tx, shared }))
    }

    /// Spans the collector accepted (2xx).
    pub fn exported(&self) -> u64 {
        self.shared.exported.load(Ordering::Relaxed)
    }

    /// Spans dropped because the collector failed (connect, timeout, non-2xx, backoff).
    /// Queue-full drops are counted per core by `CoreSpans::take_dropped`.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Hands a new config to the thread (applied before its next batch). The endpoint is
    /// validated here; on error nothing changes. `queue` cannot change after `start`.
    pub fn set_config(&self, cfg: OtlpConfig) -> Result<(), String> {
        let cfg = cfg.clamped();
        let ep = parse_endpoint(&cfg.endpoint)?;
        *lock(&self.shared.new_config) = Some((cfg, ep));
        self.shared.config_dirty.store(true, Ordering::Release);
        let _ = self.tx.try_send(Msg::Wake);
        Ok(())
    }

    /// Blocks (never call it on a worker) until everything queued before this call has been
    /// sent to the collector or dropped and counted. False on timeout. Call
    /// `CoreSpans::flush` first: spans still buffered in a worker are not seen.
    pub fn flush_blocking(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let target = self.shared.flush_requested.fetch_add(1, Ordering::SeqCst) + 1;
        // If the queue is full the thread is busy and checks the request after each batch.
        let _ = self.tx.try_send(Msg::Wake);
        let mut done = lock(&self.shared.flush_done);
        while *done < target {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            done = match self.shared.flush_cv.wait_timeout(done, left) {
                Ok((g, _)) => g,
                Err(e) => e.into_inner().0,
            };
        }
        true
    }
}

/// The state of the "ringway-otlp" thread.
struct ExportThread {
    rx: Receiver<Msg>,
    shared: Arc<Shared>,
    cfg: OtlpConfig,
    ep: Endpoint,
    client: Client,
    pending: Vec<SpanRecord>,
    oldest: Option<Instant>,
    body: Vec<u8>,
    backoff: Duration,
    retry_at: Option<Instant>,
    healthy: bool,
    flushed_upto: u64,
}

impl ExportThread {
    fn new(rx: Receiver<Msg>, shared: Arc<Shared>, cfg: OtlpConfig, ep: Endpoint) -> Self {
        ExportThread {
            rx,
            shared,
            cfg,
            ep,
            client: Client::default(),
            pending: Vec::new(),
            oldest: None,
            body: Vec::new(),
            backoff: BACKOFF_MIN,
            retry_at: None,
            healthy: true,
            flushed_upto: 0,
        }
    }

    fn run(mut self) {
        loop {
            self.apply_config();
            let wait = match self.oldest {
                Some(t) => (t + self.cfg.flush_interval).saturating_duration_since(Instant::now()),
                None => self.cfg.flush_interval,
            };
            match self.rx.recv_timeout(wait) {
                Ok(Msg::Spans(v)) => self.accept(v),
                Ok(Msg::Wake) | Err(RecvTimeoutError::Timeout) => {}
                // Every handle is gone (so nobody waits on a flush): send what we hold, exit.
                Err(RecvTimeoutError::Disconnected) => {
                    self.export_all();
                    return;
                }
            }
            while self.pending.len() >= self.cfg.batch_size {
                self.export_front(self.cfg.batch_size);
            }
            if self
                .oldest
                .is_some_and(|t| t.elapsed() >= self.cfg.flush_interval)
            {
                self.export_all();
            }
            if self.shared.flush_requested.load(Ordering::SeqCst) > self.flushed_upto {
                self.flush_now();
            }
            if self.pending.is_empty() {
                self.oldest = None;
            }
        }
    }

    fn accept(&mut self, v: Vec<SpanRecord>) {
        if self.pending.is_empty() {
            self.oldest = Some(Instant::now());
        }
        if self.pending.is_empty() {
            self.pending = v; // take over the worker's allocation, no copy
        } else {
            self.pending.extend(v);
        }
    }

    fn apply_config(&mut self) {
        if !self.shared.config_dirty.swap(false, Ordering::AcqRel) {
            return;
        }
        let Some((cfg, ep)) = lock(&self.shared.new_config).take() else {
            return;
        };
        if ep != self.ep {
            self.client.close();
            self.retry_at = None;
            self.backoff = BACKOFF_MIN;
            self.healthy = true;
        }
        self.cfg = cfg;
        self.ep = ep;
    }

    /// Sends everything already queued, then reports the flush as done.
    fn flush_now(&mut self) {
        let target = self.shared.flush_requested.load(Ordering::SeqCst);
        self.apply_config();
        // Bounded: workers keep sending while we drain.
        for _ in 0..=self.cfg.queue {
            match self.rx.try_recv() {
                Ok(Msg::Spans(v)) => self.accept(v),
                Ok(Msg::Wake) => {}
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        self.export_all();
        self.flushed_upto = target;
        self.mark_flushed(target);
    }

    fn mark_flushed(&self, target: u64) {
        let mut done = lock(&self.shared.flush_done);
        if *done < target {
            *done = target;
        }
        self.shared.flush_cv.notify_all();
    }

    fn export_all(&mut self) {
        while !self.pending.is_empty() {
            self.export_front(self.cfg.batch_size.min(self.pending.len()));
        }
        self.oldest = None;
    }

    /// POSTs the first `n` pending spans; on any failure they are dropped and counted.
    fn export_front(&mut self, n: usize) {
        let n = n.min(self.pending.len());
        if n == 0 {
            return;
        }
        let count = n as u64;
        if self.retry_at.is_some_and(|t| Instant::now() < t) {
            self.shared.dropped.fetch_add(count, Ordering::Relaxed);
        } else {
            self.body.clear();
            encode_otlp_json(&self.pending[..n], &self.cfg.service_name, &mut self.body);
            match self.client.post(&self.ep, &self.body, self.cfg.timeout) {
                Ok(_) => {
                    self.shared.exported.fetch_add(count, Ordering::Relaxed);
                    self.retry_at = None;
                    self.backoff = BACKOFF_MIN;
                    if !self.healthy {
                        self.healthy = true;
                        log::info(&format!("otlp: export to {} recovered", self.ep));
                    }
                }
                Err(e) => {
                    self.shared.dropped.fetch_add(count, Ordering::Relaxed);
                    if !matches!(e, PostError::Status(_)) {
                        self.client.close();
                        self.retry_at = Some(Instant::now() + self.backoff);
                        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
                    }
                    if self.healthy {
                        self.healthy = false;
                        log::warn(&format!(
                            "otlp: export to {} failed ({e}); dropping spans until it recovers",
                            self.ep
                        ));
                    }
                }
            }
        }
        self.pending.drain(..n);
    }
}

/// One worker's span buffer (`!Sync` use only: one per core). Never blocks.
pub struct CoreSpans {
    exp: Arc<SpanExporter>,
    buf: Vec<SpanRecord>,
    dropped: u64,
}

impl CoreSpans {
    /// A buffer feeding `exp`.
    pub fn new(exp: Arc<SpanExporter>) -> Self {
        CoreSpans {
            exp,
            buf: Vec::with_capacity(CORE_BATCH),
            dropped: 0,
        }
    }

    /// Buffers a finished (sampled) span; hands the batch over once it holds 64 spans.
    pub fn push(&mut self, s: SpanRecord) {
        self.buf.push(s);
        if self.buf.len() >= CORE_BATCH {
            self.hand_over();
        }
    }

    /// Hands over whatever is buffered (the worker calls this every ~200 ms).
    pub fn flush(&mut self) {
        if !self.buf.is_empty() {
            self.hand_over();
        }
    }

    /// Spans dropped because the exporter queue was full (or the exporter is gone) since the
    /// last call.
    pub fn take_dropped(&mut self) -> u64 {
        std::mem::take(&mut self.dropped)
    }

    fn hand_over(&mut self) {
        let batch = std::mem::replace(&mut self.buf, Vec::with_capacity(CORE_BATCH));
        match self.exp.tx.try_send(Msg::Spans(batch)) {
            Ok(()) => {}
            Err(
                TrySendError::Full(Msg::Spans(mut b))
                | TrySendError::Disconnected(Msg::Spans(mut b)),
            ) => {
                self.dropped += b.len() as u64;
                b.clear();
                self.buf = b; // keep the allocation
            }
            Err(_) => {}
        }
    }
}

impl Drop for CoreSpans {
    fn drop(&mut self) {
        self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpListener, TcpStream};
    use std::sync::atomic::AtomicUsize;

    const OK: &[u8] =
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}";
    const OK_CHUNKED: &[u8] =
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n";
    const FAIL: &[u8] = b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\n\r\nnope";

    /// (connection number, request head, body) per request received.
    type Requests = Arc<Mutex<Vec<(usize, String, Vec<u8>)>>>;

    /// A tiny OTLP collector: records (connection number, request head, body) per request.
    struct Collector {
        addr: SocketAddr,
        reqs: Requests,
        conns: Arc<AtomicUsize>,
    }

    impl Collector {
        fn start(response: &'static [u8], close_after_each: bool) -> Collector {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let reqs = Arc::new(Mutex::new(Vec::new()));
            let conns = Arc::new(AtomicUsize::new(0));
            let (r, c) = (reqs.clone(), conns.clone());
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    let Ok(stream) = stream else { return };
                    let n = c.fetch_add(1, Ordering::SeqCst);
                    let r = r.clone();
                    std::thread::spawn(move || serve(stream, n, r, response, close_after_each));
                }
            });
            Collector { addr, reqs, conns }
        }

        fn endpoint(&self) -> String {
            format!("http://{}/v1/traces", self.addr)
        }

        fn requests(&self) -> Vec<(usize, String, Vec<u8>)> {
            self.reqs.lock().unwrap().clone()
        }

        fn trace_ids(&self) -> Vec<String> {
            let mut ids = Vec::new();
            for (_, _, body) in self.requests() {
                let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
                for s in v["resourceSpans"][0]["scopeSpans"][0]["spans"]
                    .as_array()
                    .unwrap()
                {
                    ids.push(s["traceId"].as_str().unwrap().to_string());
                }
            }
            ids.sort();
            ids
        }
    }

    fn serve(
        mut s: TcpStream,
        conn: usize,
        reqs: Requests,
        response: &[u8],
        close_after_each: bool,
    ) {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 16384];
        loop {
            let head_end = loop {
                if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break i + 4;
                }
                match s.read(&mut chunk) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            };
            let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("Content-Length: "))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            while buf.len() < head_end + len {
                match s.read(&mut chunk) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            let body = buf[head_end..head_end + len].to_vec();
            buf.drain(..head_end + len);
            reqs.lock().unwrap().push((conn, head, body));
            if s.write_all(response).is_err() || close_after_each {
                return;
            }
        }
    }

    fn cfg(endpoint: String) -> OtlpConfig {
        OtlpConfig {
            endpoint,
            service_name: "test-gw".into(),
            batch_size: 512,
            flush_interval: Duration::from_millis(50),
            timeout: Duration::from_secs(2),
            queue: 16,
        }
    }

    fn span(i: u64) -> SpanRecord {
        let mut trace_id = [0u8; 16];
        trace_id[..8].copy_from_slice(&0xabcd_0000_0000_0000u64.to_be_bytes());
        trace_id[8..].copy_from_slice(&(i + 1).to_be_bytes());
        SpanRecord {
            trace_id,
            span_id: (i + 1).to_be_bytes(),
            parent_span_id: None,
            name: "GET users".into(),
            start_unix_nanos: 1_000 + i,
            end_unix_nanos: 2_000 + i,
            method: "GET".into(),
            method_original: None,
            path: "/users".into(),
            route: Some("users".into()),
            status: 200,
            upstream: None,
            client: "127.0.0.1:1".into(),
            request_id: format!("r{i}"),
        }
    }

    fn hex_trace(i: u64) -> String {
        format!("abcd000000000000{:016x}", i + 1)
    }

    fn dead_port() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    }

    #[test]
    fn spans_arrive_with_their_trace_ids() {
        let col = Collector::start(OK, false);
        let exp = SpanExporter::start(cfg(col.endpoint())).unwrap();
        let mut core = CoreSpans::new(exp.clone());
        for i in 0..3 {
            core.push(span(i));
        }
        core.flush();
        assert!(exp.flush_blocking(Duration::from_secs(5)));
        assert_eq!((exp.exported(), exp.dropped()), (3, 0));
        assert_eq!(col.trace_ids(), (0..3).map(hex_trace).collect::<Vec<_>>());
        let (_, head, _) = &col.requests()[0];
        assert!(head.starts_with("POST /v1/traces HTTP/1.1\r\n"), "{head}");
        assert!(
            head.contains("Content-Type: application/json\r\n"),
            "{head}"
        );
        assert!(head.contains(&format!("Host: {}\r\n", col.addr)), "{head}");
    }

    #[test]
    fn flush_interval_sends_without_flush_blocking() {
        let col = Collector::start(OK, false);
        let exp = SpanExporter::start(cfg(col.endpoint())).unwrap();
        let mut core = CoreSpans::new(exp.clone());
        core.push(span(7));
        core.flush();
        let deadline = Instant::now() + Duration::from_secs(5);
        while col.requests().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(col.trace_ids(), vec![hex_trace(7)]);
    }

    fn batches_share_one_connection(response: &'static [u8]) {
        let col = Collector::start(response, false);
        let exp = SpanExporter::start(OtlpConfig {
            batch_size: 2,
            ..cfg(col.endpoint())
        })
        .unwrap();
        let mut core = CoreSpans::new(exp.clone());
        for i in 0..5 {
            core.push(span(i));
        }
        core.flush();
        assert!(exp.flush_blocking(Duration::from_secs(5)));
        core.push(span(5));
        core.flush();
        assert!(exp.flush_blocking(Duration::from_secs(5)));
        let reqs = col.requests();
        assert_eq!(reqs.len(), 4, "2 + 2 + 1, then 1");
        assert!(reqs.iter().all(|(conn, _, _)| *conn == 0));
        assert_eq!(col.conns.load(Ordering::SeqCst), 1);
        assert_eq!((exp.exported(), exp.dropped()), (6, 0));
        assert_eq!(col.trace_ids(), (0..6).map(hex_trace).collect::<Vec<_>>());
    }

    #[test]
    fn batches_share_one_keep_alive_connection() {
        batches_share_one_connection(OK);
    }

    #[test]
    fn chunked_responses_keep_the_connection() {
        batches_share_one_connection(OK_CHUNKED);
    }

    #[test]
    fn stale_keep_alive_connection_is_retried_once() {
        // The collector closes after each answer without saying so: the second POST hits a
        // dead connection and must go out again on a fresh one.
        let col = Collector::start(OK, true);
        let exp = SpanExporter::start(cfg(col.endpoint())).unwrap();
        let mut core = CoreSpans::new(exp.clone());
        for round in 0..3 {
            core.push(span(round));
            core.flush();
            assert!(exp.flush_blocking(Duration::from_secs(5)));
            // Let the collector's close reach us before the next round.
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!((exp.exported(), exp.dropped()), (3, 0));
        assert_eq!(col.conns.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn non_2xx_drops_and_counts() {
        let col = Collector::start(FAIL, false);
        let exp = SpanExporter::start(cfg(col.endpoint())).unwrap();
        let mut core = CoreSpans::new(exp.clone());
        for i in 0..5 {
            core.push(span(i));
        }
        core.flush();
        assert!(exp.flush_blocking(Duration::from_secs(5)));
        assert_eq!((exp.exported(), exp.dropped()), (0, 5));
        assert_eq!(col.requests().len(), 1, "no retry of a rejected batch");
        assert_eq!(core.take_dropped(), 0);
    }

    #[test]
    fn dead_collector_drops_counts_and_never_blocks_workers() {
        let addr = dead_port();
        let exp = SpanExporter::start(cfg(format!("http://{addr}"))).unwrap();
        let mut core = CoreSpans::new(exp.clone());
        let mut slowest = Duration::ZERO;
        for i in 0..(3 * CORE_BATCH as u64 + 10) {
            let t = Instant::now();
            core.push(span(i));
            slowest = slowest.max(t.elapsed());
        }
        let t = Instant::now();
        core.flush();
        slowest = slowest.max(t.elapsed());
        // Only gross blocking (a connect, a retry back-off on the worker) can fail this: 1 s
        // is orders of magnitude above the microseconds a push takes, so load cannot.
        assert!(
            slowest < Duration::from_secs(1),
            "push/flush took {slowest:?}"
        );
        assert!(exp.flush_blocking(Duration::from_secs(5)));
        let total = 3 * CORE_BATCH as u64 + 10;
        assert_eq!(exp.dropped() + core.take_dropped(), total);
        assert_eq!(exp.exported(), 0);
    }

    #[test]
    fn full_queue_drops_on_the_worker() {
        // Accepts TCP connections (backlog) but never answers: the exporter thread sits in a
        // read for `timeout` while the worker keeps pushing.
        let silent = TcpListener::bind("127.0.0.1:0").unwrap();
        let exp = SpanExporter::start(OtlpConfig {
            batch_size: CORE_BATCH,
            timeout: Duration::from_millis(500),
            queue: 1,
            ..cfg(format!("http://{}", silent.local_addr().unwrap()))
        })
        .unwrap();
        let mut core = CoreSpans::new(exp.clone());
        let batches = 6u64;
        for i in 0..batches * CORE_BATCH as u64 {
            core.push(span(i));
        }
        // No time bound: a worker that waited for room would never drop, so the drop count
        // below is what proves pushing does not block.
        let dropped = core.take_dropped();
        // At most one batch in the channel and one on the (blocked) thread.
        assert!(dropped >= (batches - 2) * CORE_BATCH as u64, "{dropped}");
        assert_eq!(dropped % CORE_BATCH as u64, 0);
        assert_eq!(core.take_dropped(), 0, "take_dropped resets");
        assert!(exp.flush_blocking(Duration::from_secs(5)));
        assert_eq!(exp.exported(), 0);
        assert_eq!(exp.dropped() + dropped, batches * CORE_BATCH as u64);
    }

    #[test]
    fn set_config_switches_endpoint() {
        let exp = SpanExporter::start(cfg(format!("http://{}", dead_port()))).unwrap();
        let mut core = CoreSpans::new(exp.clone());
        core.push(span(1));
        core.flush();
        assert!(exp.flush_blocking(Duration::from_secs(5)));
        assert_eq!(exp.dropped(), 1);

        let col = Collector::start(OK, false);
        let err = exp
            .set_config(cfg("https://example.com".into()))
            .unwrap_err();
        assert!(err.contains("https is not supported yet"), "{err}");
        exp.set_config(cfg(col.endpoint())).unwrap();
        core.push(span(2));
        core.flush();
        assert!(exp.flush_blocking(Duration::from_secs(5)));
        assert_eq!((exp.exported(), exp.dropped()), (1, 1));
        assert_eq!(col.trace_ids(), vec![hex_trace(2)]);
    }

    #[test]
    fn start_rejects_bad_endpoints() {
        let err = SpanExporter::start(cfg("https://collector:4318".into()))
            .err()
            .expect("https must be rejected");
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
        assert!(err.to_string().contains("https is not supported yet"));
    }
}

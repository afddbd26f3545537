//! Process-wide state: the one `Shared` value the control thread, the admin thread and every
//! worker hold through an `Arc`.
//!
//! Invariants: the compiled config is published only by the control thread, through `publish`
//! (store the `Arc<Compiled>`, then bump `generation`), so a worker that sees a new generation
//! number also sees its config. Nothing here is touched on the request path except the
//! relaxed `generation`/`draining` loads and the admission counters; the `Mutex` serializes
//! reloads on the control plane only.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::config::Compiled;

/// State shared by the control thread and all workers.
pub struct Shared {
    pub config: ArcSwap<Compiled>,
    /// Mirrors `config.load().generation`; bumped after each store so workers notice cheaply.
    pub generation: AtomicU64,
    pub draining: AtomicBool,
    /// Set before a drain that follows a binary upgrade: the listening sockets now belong to
    /// the successor too, so workers cancel their accepts instead of shutting sockets down.
    pub handed_over: AtomicBool,
    pub drain_event: event_listener::Event,
    /// Workers whose runtime has exited.
    pub workers_done: AtomicUsize,
    /// Which I/O driver each worker ended up with ("io_uring" or "legacy").
    pub driver: std::sync::OnceLock<&'static str>,
    /// Workers whose listeners are accepting (for `/ready`).
    pub workers_accepting: AtomicUsize,
    /// Serializes reloads (SIGHUP and `POST /reload`); control plane only, never on requests.
    pub reload_lock: std::sync::Mutex<ReloadStatus>,
    /// Where workers publish metric snapshots when the admin API scrapes.
    pub metrics: crate::metrics::MetricsHub,
    /// The access-log writer, started by the control thread the first time a config enables it.
    pub access_log: std::sync::OnceLock<Arc<crate::accesslog::AccessLog>>,
    /// The OTLP span exporter, started the first time a config sets `tracing.otlp`.
    pub span_exporter: std::sync::OnceLock<Arc<crate::trace::SpanExporter>>,
    pub reloads_ok: AtomicU64,
    pub reloads_failed: AtomicU64,
    /// State config compiles carry across reloads (rate limiters, JWKS fetchers).
    pub runtime: crate::config::Runtime,
    /// Open client connections, process-wide and per client address (the connection caps).
    pub admission: crate::admission::Admission,
    /// Where workers hand their `[usage]` counts to the Redis thread.
    pub usage: crate::usage::UsageHub,
    /// The Redis background thread (`redis_sync`) and the flag that asks it to finish.
    pub redis_sync: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
    pub redis_stop: AtomicBool,
    /// Cache purges made through the admin API, for the Redis thread to publish to the other
    /// instances (with this instance's id).
    pub cache_purges: crate::cache::purge::Outbox,
}

/// What the admin API reports about config loading.
#[derive(Clone, Debug, Default)]
pub struct ReloadStatus {
    /// Unix time (seconds) the current generation was loaded.
    pub loaded_at: u64,
    /// The most recent failed reload's errors, cleared by a successful one.
    pub last_error: Option<String>,
}

impl Shared {
    /// The state for a process starting with `cfg` and `workers` worker threads.
    pub fn new(cfg: Compiled, workers: usize, runtime: crate::config::Runtime) -> Arc<Shared> {
        let generation = cfg.generation;
        cfg.cache.set_max_bytes(cfg.cache_max_bytes);
        Arc::new(Shared {
            config: ArcSwap::from_pointee(cfg),
            generation: AtomicU64::new(generation),
            draining: AtomicBool::new(false),
            handed_over: AtomicBool::new(false),
            drain_event: event_listener::Event::new(),
            workers_done: AtomicUsize::new(0),
            driver: std::sync::OnceLock::new(),
            workers_accepting: AtomicUsize::new(0),
            reload_lock: std::sync::Mutex::new(ReloadStatus {
                loaded_at: crate::civil::unix_now(),
                last_error: None,
            }),
            metrics: crate::metrics::MetricsHub::new(workers),
            access_log: std::sync::OnceLock::new(),
            span_exporter: std::sync::OnceLock::new(),
            reloads_ok: AtomicU64::new(0),
            reloads_failed: AtomicU64::new(0),
            runtime,
            admission: crate::admission::Admission::new(),
            usage: crate::usage::UsageHub::default(),
            redis_sync: std::sync::Mutex::new(None),
            redis_stop: AtomicBool::new(false),
            cache_purges: crate::cache::purge::Outbox::default(),
        })
    }

    /// Publishes a new compiled config (control thread only).
    pub fn publish(&self, cfg: Compiled) {
        let generation = cfg.generation;
        cfg.cache.set_max_bytes(cfg.cache_max_bytes);
        self.config.store(Arc::new(cfg));
        self.generation.store(generation, Ordering::Release);
    }

    /// Starts the graceful drain on every worker.
    pub fn start_drain(&self) {
        self.draining.store(true, Ordering::SeqCst);
        self.drain_event.notify(usize::MAX);
    }
}

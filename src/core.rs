//! Per-core state: `Core` (one per worker thread, shared by that worker's connection tasks
//! through `Rc`), the `Generation` of the config a request runs against, and the registry of
//! open client connections a drain walks.
//!
//! Invariants: nothing here is `Send`; no other core reads or writes it. A request holds one
//! `Rc<Generation>` from head to last byte; `Core::generation` swaps in a new one only when the
//! process-wide generation number moved, carrying upstream pools over by name.

use std::cell::{Cell, RefCell};
use std::os::fd::RawFd;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use crate::config::Compiled;
use crate::request_id::IdGen;
use crate::shared::Shared;
use crate::telemetry::{CoreTelemetry, Slots};
use crate::upstream::UpstreamState;

/// One config generation as seen by a worker: the immutable table plus this core's mutable
/// upstream state for it.
pub struct Generation {
    pub cfg: Arc<Compiled>,
    pub upstreams: Vec<UpstreamState>,
    /// This core's metric slots for the generation's routes and upstreams.
    pub slots: Slots,
    /// `tracing.response_header`, as a core-local `Rc` so requests can hold it without
    /// touching a reference count other cores share.
    pub trace_header: Option<Rc<str>>,
}

impl Generation {
    fn new(cfg: Arc<Compiled>, upstreams: Vec<UpstreamState>, slots: Slots) -> Generation {
        let trace_header = cfg
            .telemetry
            .tracing
            .response_header
            .as_deref()
            .map(Rc::from);
        Generation {
            cfg,
            upstreams,
            slots,
            trace_header,
        }
    }
}

/// Verified tokens each worker remembers.
const TOKEN_CACHE: usize = 4096;

thread_local! {
    /// This worker thread's `Core`, for tasks the request path starts in the background
    /// (a cache revalidation) that outlive the exchange that started them.
    static CURRENT: RefCell<Option<std::rc::Weak<Core>>> = const { RefCell::new(None) };
}

/// Registers `core` as this thread's (the worker does, once, at start).
pub fn set_current(core: &Rc<Core>) {
    CURRENT.with(|c| *c.borrow_mut() = Some(Rc::downgrade(core)));
}

/// This thread's `Core`, if a worker registered one.
pub fn current() -> Option<Rc<Core>> {
    CURRENT.with(|c| c.borrow().as_ref().and_then(std::rc::Weak::upgrade))
}

/// Per-core state, shared by the connection tasks of one worker through `Rc`.
pub struct Core {
    pub id: usize,
    pub shared: Arc<Shared>,
    current: RefCell<Rc<Generation>>,
    current_gen: Cell<u64>,
    pub ids: IdGen,
    pub conns: ConnRegistry,
    pub telemetry: CoreTelemetry,
    /// Verified JWTs, so a client reusing its token skips signature checks.
    pub tokens: RefCell<crate::jwt::TokenCache>,
    /// Token introspection verdicts (`policy::introspect_check`), keyed by token hash.
    pub introspections: RefCell<crate::policy::introspect_check::IntrospectCache>,
    /// This worker's proxy-wasm filter instances.
    pub wasm: crate::wasm::Instances,
    /// This worker's TLS server configs and session caches.
    pub tls: crate::tls::worker::WorkerTls,
    /// Set by the worker when the idle grace of a drain after a handover has run out.
    pub idle_grace_over: Cell<bool>,
    /// This worker's Redis client (`[redis]`), built on first use.
    redis: RefCell<Option<crate::redis::Client>>,
}

impl Core {
    /// Core `id`'s state, starting at the generation `shared` holds now.
    pub fn new(id: usize, shared: Arc<Shared>) -> Core {
        let cfg = shared.config.load_full();
        let upstreams = cfg
            .upstreams
            .iter()
            .map(|u| UpstreamState::new(u, None))
            .collect();
        let gen = cfg.generation;
        let telemetry = CoreTelemetry::new(id, shared.clone());
        let slots = telemetry.slots(&cfg);
        Core {
            id,
            shared,
            current: RefCell::new(Rc::new(Generation::new(cfg, upstreams, slots))),
            current_gen: Cell::new(gen),
            ids: IdGen::new(),
            conns: ConnRegistry::default(),
            telemetry,
            tokens: RefCell::new(crate::jwt::TokenCache::new(TOKEN_CACHE)),
            introspections: RefCell::default(),
            wasm: crate::wasm::Instances::default(),
            tls: crate::tls::worker::WorkerTls::default(),
            idle_grace_over: Cell::new(false),
            redis: RefCell::new(None),
        }
    }

    /// This worker's Redis client for `cfg`'s `[redis]` (None without one). A reload that
    /// changed the table closes the old client's connections and starts a new one.
    pub fn redis(&self, cfg: &crate::config::Compiled) -> Option<crate::redis::Client> {
        let shared = cfg.redis.as_ref()?;
        let mut slot = self.redis.borrow_mut();
        if let Some(c) = &*slot {
            if Arc::ptr_eq(c.shared(), shared) {
                return Some(c.clone());
            }
        }
        if let Some(old) = slot.take() {
            old.close();
        }
        let c = crate::redis::Client::new(shared.clone());
        *slot = Some(c.clone());
        Some(c)
    }

    /// The generation a new request should use. Cheap unless the config just changed, in which
    /// case this core's upstream state is rebuilt, carrying pools over by name.
    pub fn generation(&self) -> Rc<Generation> {
        let g = self.shared.generation.load(Ordering::Acquire);
        if g != self.current_gen.get() {
            let cfg = self.shared.config.load_full();
            let old = self.current.borrow().clone();
            let upstreams = cfg
                .upstreams
                .iter()
                .map(|u| {
                    let prev = old.upstreams.iter().find(|o| o.name == u.name);
                    UpstreamState::new(u, prev)
                })
                .collect();
            self.current_gen.set(cfg.generation);
            let slots = self.telemetry.slots(&cfg);
            *self.current.borrow_mut() = Rc::new(Generation::new(cfg, upstreams, slots));
        }
        self.current.borrow().clone()
    }

    /// During a drain after a binary upgrade (and only for its first moments): keep-alive
    /// connections still take one more request, answered with `Connection: close`, instead of
    /// being closed under a client that may be sending. Read from the shared flag the control
    /// thread sets before the drain, so no connection sees the drain without the grace.
    pub fn idle_grace(&self) -> bool {
        self.shared.handed_over.load(Ordering::Relaxed) && !self.idle_grace_over.get()
    }

    /// Whether the process is draining (new requests should close their connection).
    pub fn draining(&self) -> bool {
        self.shared.draining.load(Ordering::Relaxed)
    }
}

/// Waits until a parked connection's socket is readable (or failed) or its deadline passed
/// (`ConnRegistry::wake_expired`): the whole wait is one io_uring poll and a registry entry.
pub struct ParkWait<'a, F> {
    pub conns: &'a ConnRegistry,
    pub key: usize,
    pub readable: std::pin::Pin<&'a mut F>,
}

impl<F: std::future::Future> std::future::Future for ParkWait<'_, F> {
    type Output = ();
    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.conns.poll_park(self.key, cx) {
            return Poll::Ready(());
        }
        self.readable.as_mut().poll(cx).map(|_| ())
    }
}

/// Open client connections of one worker, so a drain can close the idle ones.
#[derive(Default)]
pub struct ConnRegistry {
    slots: RefCell<Vec<Option<ConnSlot>>>,
    free: RefCell<Vec<usize>>,
    open: Cell<usize>,
    /// Connections that went quiet (parked) since the worker last returned memory.
    parked: Cell<u64>,
    /// Connections registered or woken from a park since the last `quiet_after_parking`.
    activity: Cell<u64>,
    /// Connections parked right now.
    parked_now: Cell<usize>,
}

struct ConnSlot {
    fd: RawFd,
    idle: bool,
    /// Set while the connection is parked (see `park`).
    park: Option<Park>,
}

/// A parked connection's deadline. Parked connections wait on their socket only; their
/// deadlines are checked by `wake_expired` on the worker's housekeeping tick instead of one
/// runtime timer each (a monoio timer entry is 640 bytes, more than the rest of the parked
/// connection).
struct Park {
    until: Instant,
    expired: bool,
    waker: Option<Waker>,
}

impl ConnRegistry {
    /// Records an open connection (idle until it reads a head); returns its key.
    pub fn register(&self, fd: RawFd) -> usize {
        let slot = Some(ConnSlot {
            fd,
            idle: true,
            park: None,
        });
        self.open.set(self.open.get() + 1);
        self.activity.set(self.activity.get() + 1);
        let mut slots = self.slots.borrow_mut();
        match self.free.borrow_mut().pop() {
            Some(i) => {
                slots[i] = slot;
                i
            }
            None => {
                slots.push(slot);
                slots.len() - 1
            }
        }
    }

    /// Forgets the connection `key` (before its stream is dropped); unknown keys are ignored.
    pub fn unregister(&self, key: usize) {
        let mut slots = self.slots.borrow_mut();
        if let Some(s) = slots.get_mut(key) {
            if s.take().is_some() {
                self.open.set(self.open.get() - 1);
                self.free.borrow_mut().push(key);
            }
        }
    }

    /// Idle = waiting for the next request head on a keep-alive connection.
    pub fn set_idle(&self, key: usize, idle: bool) {
        if let Some(Some(s)) = self.slots.borrow_mut().get_mut(key) {
            s.idle = idle;
        }
    }

    /// Parks connection `key` until `until` (its keep-alive or header deadline); its task
    /// then waits in `ParkWait`.
    pub fn park(&self, key: usize, until: Instant) {
        if let Some(Some(s)) = self.slots.borrow_mut().get_mut(key) {
            if s.park.is_none() {
                self.parked_now.set(self.parked_now.get() + 1);
            }
            s.park = Some(Park {
                until,
                expired: false,
                waker: None,
            });
            self.parked.set(self.parked.get() + 1);
        }
    }

    /// Ends the park of connection `key` (it woke: bytes, EOF or its deadline).
    pub fn unpark(&self, key: usize) {
        if let Some(Some(s)) = self.slots.borrow_mut().get_mut(key) {
            if s.park.take().is_some() {
                self.parked_now.set(self.parked_now.get() - 1);
            }
        }
        self.activity.set(self.activity.get() + 1);
    }

    /// Whether the park of `key` is over (its deadline passed, or it is not parked); if not,
    /// `cx`'s waker is woken when it is.
    fn poll_park(&self, key: usize, cx: &Context<'_>) -> bool {
        let mut slots = self.slots.borrow_mut();
        let Some(Some(ConnSlot { park: Some(p), .. })) = slots.get_mut(key) else {
            return true;
        };
        if p.expired {
            return true;
        }
        match &p.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => p.waker = Some(cx.waker().clone()),
        }
        false
    }

    /// Wakes the parked connections whose deadline is past `now` (they close, or answer 408
    /// if no request ever came). Called on the worker's housekeeping tick, so a deadline is
    /// kept to within that tick.
    pub fn wake_expired(&self, now: Instant) {
        if self.parked_now.get() == 0 {
            return;
        }
        let mut woken = Vec::new();
        for s in self.slots.borrow_mut().iter_mut().flatten() {
            if let Some(p) = &mut s.park {
                if !p.expired && p.until <= now {
                    p.expired = true;
                    woken.extend(p.waker.take());
                }
            }
        }
        // Woken after the borrow ends: a waker may run code that touches the registry.
        for w in woken {
            w.wake();
        }
    }

    /// True once after connections parked and then a whole period (the time since the
    /// previous call) passed with no connection opened or woken: the moment a burst has
    /// ended and what it freed can go back to the OS. Resets the counts.
    pub fn quiet_after_parking(&self) -> bool {
        let busy = self.activity.replace(0) > 0;
        if busy || self.parked.get() == 0 {
            return false;
        }
        self.parked.set(0);
        true
    }

    /// Connections registered and not yet unregistered.
    pub fn open(&self) -> usize {
        self.open.get()
    }

    /// Shuts down the read side of idle connections so their pending read returns EOF and the
    /// connection task ends; busy ones finish their request and close because of the drain.
    pub fn close_idle(&self) {
        for s in self.slots.borrow().iter().flatten() {
            if s.idle {
                // SAFETY: the fd belongs to a live connection task of this worker (it is removed
                // from the registry before the stream is dropped); shutdown does not close it.
                unsafe {
                    libc::shutdown(s.fd, libc::SHUT_RD);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_counts_and_reuses_keys() {
        let r = ConnRegistry::default();
        let a = r.register(10);
        let b = r.register(11);
        assert_ne!(a, b);
        assert_eq!(r.open(), 2);
        r.unregister(a);
        assert_eq!(r.open(), 1);
        // A second unregister of the same key, and an unknown key, change nothing.
        r.unregister(a);
        r.unregister(99);
        assert_eq!(r.open(), 1);
        assert_eq!(r.register(12), a, "a freed key is reused");
        assert_eq!(r.open(), 2);
    }

    #[test]
    fn parked_connections_wake_at_their_deadline_and_a_quiet_period_is_seen_once() {
        use std::task::{Context, Wake};
        struct Flag(std::sync::atomic::AtomicBool);
        impl Wake for Flag {
            fn wake(self: Arc<Self>) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        let flag = Arc::new(Flag(false.into()));
        let waker = std::task::Waker::from(flag.clone());
        let cx = Context::from_waker(&waker);
        let r = ConnRegistry::default();
        let k = r.register(10);
        // Registering was activity: not quiet, and nothing parked yet anyway.
        assert!(!r.quiet_after_parking());
        let now = Instant::now();
        r.park(k, now + std::time::Duration::from_secs(5));
        assert!(!r.poll_park(k, &cx), "parked until its deadline");
        r.wake_expired(now);
        assert!(!flag.0.load(Ordering::SeqCst), "woken before its deadline");
        r.wake_expired(now + std::time::Duration::from_secs(6));
        assert!(flag.0.load(Ordering::SeqCst), "not woken at its deadline");
        assert!(r.poll_park(k, &cx), "the park is over");
        // Parked, then a period with no connection opened or woken: quiet, once.
        assert!(r.quiet_after_parking());
        assert!(!r.quiet_after_parking());
        r.unpark(k);
        assert!(!r.quiet_after_parking(), "a wake is activity");
        // An unparked connection's poll says "over" (nothing to wait for).
        assert!(r.poll_park(k, &cx));
    }

    #[test]
    fn close_idle_shuts_only_idle_connections() {
        use std::io::Read;
        use std::os::fd::AsRawFd;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let _c1 = std::net::TcpStream::connect(addr).unwrap();
        let _c2 = std::net::TcpStream::connect(addr).unwrap();
        let (mut idle, _) = listener.accept().unwrap();
        let (busy, _) = listener.accept().unwrap();
        let r = ConnRegistry::default();
        r.register(idle.as_raw_fd());
        let k = r.register(busy.as_raw_fd());
        r.set_idle(k, false);
        r.close_idle();
        // The idle one reads EOF at once; the busy one would block (checked without blocking).
        assert_eq!(idle.read(&mut [0u8; 8]).unwrap(), 0);
        busy.set_nonblocking(true).unwrap();
        let e = (&busy).read(&mut [0u8; 8]).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock);
    }

    fn compiled(generation: u64, upstreams: &str) -> Compiled {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ringway.toml");
        let src = format!(
            "[[listeners]]\nname = \"l\"\naddress = \"127.0.0.1:0\"\n\n{upstreams}\n\
             [[routes]]\nname = \"api\"\nprefix = \"/\"\nproxy = {{ upstream = \"be\" }}\n"
        );
        std::fs::write(&path, src).unwrap();
        crate::config::load(&path, generation).expect("test config compiles")
    }

    #[test]
    fn generation_follows_publish_and_is_stable_between() {
        let be = "[upstreams.be]\ntargets = [{ address = \"127.0.0.1:9\" }]\n";
        let shared = Shared::new(compiled(1, be), 1, crate::config::Runtime::default());
        let core = Core::new(0, shared.clone());
        let g1 = core.generation();
        assert_eq!(g1.cfg.generation, 1);
        assert!(Rc::ptr_eq(&g1, &core.generation()), "no change, same Rc");
        shared.publish(compiled(2, be));
        let g2 = core.generation();
        assert_eq!(g2.cfg.generation, 2);
        assert_eq!(g2.upstreams.len(), 1);
        assert_eq!(
            g1.cfg.generation, 1,
            "a request keeps the generation it started with"
        );
    }
}

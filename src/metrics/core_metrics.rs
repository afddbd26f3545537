//! One worker's metrics: `CoreMetrics` (dense route and upstream slots, plain fields, recorded
//! on the request path without locks or steady-state allocation) and the owned `CoreSnapshot`
//! it hands to the hub at scrape time.

use std::sync::Arc;
use std::time::Duration;

use ahash::AHashMap;

use super::histogram::LatencyHistogram;
use super::labels::{CoreCounter, HTTP2_FLAG, METHOD_OTHER, NO_ROUTE};

/// A route's dense slot in one worker's `CoreMetrics` (meaningless in another worker's).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RouteSlot(pub u32);

/// An upstream's dense slot in one worker's `CoreMetrics`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct UpstreamSlot(pub u32);

/// Packs (method, status) into one map key.
#[inline]
fn request_key(method: u8, status: u16) -> u32 {
    let m = (method & HTTP2_FLAG) | (method & !HTTP2_FLAG).min(METHOD_OTHER);
    (u32::from(m) << 16) | u32::from(status)
}

struct RouteStats {
    name: Arc<str>,
    /// `request_key(method, status)` → count.
    requests: AHashMap<u32, u64>,
    latency: LatencyHistogram,
    bytes_in: u64,
    bytes_out: u64,
    /// Auth failures by reason (a handful of static labels: linear scan).
    auth_failures: Vec<(&'static str, u64)>,
    /// Rate-limit decisions: [admitted, limited].
    ratelimit: [u64; 2],
}

struct UpstreamStats {
    name: Arc<str>,
    latency: LatencyHistogram,
    connect_errors: u64,
    opened: u64,
    reused: u64,
}

/// One worker's metrics. Owned exclusively by that worker (put it in a `RefCell` in `Core`).
pub struct CoreMetrics {
    route_index: AHashMap<Arc<str>, u32>,
    routes: Vec<RouteStats>,
    upstream_index: AHashMap<Arc<str>, u32>,
    upstreams: Vec<UpstreamStats>,
    counters: [u64; CoreCounter::COUNT],
}

impl Default for CoreMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl CoreMetrics {
    /// Empty metrics with the `_none` route at slot 0.
    pub fn new() -> Self {
        let mut m = CoreMetrics {
            route_index: AHashMap::new(),
            routes: Vec::new(),
            upstream_index: AHashMap::new(),
            upstreams: Vec::new(),
            counters: [0; CoreCounter::COUNT],
        };
        m.route_slot(NO_ROUTE);
        m
    }

    /// Stable slot for a route name. Call when the config generation changes, not per request.
    /// The same name yields the same slot across reloads; a route literally named `_none`
    /// shares the unmatched slot (they would share a label anyway).
    pub fn route_slot(&mut self, name: &str) -> RouteSlot {
        if let Some(&i) = self.route_index.get(name) {
            return RouteSlot(i);
        }
        let i = u32::try_from(self.routes.len()).unwrap_or(u32::MAX);
        let name: Arc<str> = Arc::from(name);
        self.route_index.insert(name.clone(), i);
        self.routes.push(RouteStats {
            name,
            requests: AHashMap::new(),
            latency: LatencyHistogram::new(),
            bytes_in: 0,
            bytes_out: 0,
            auth_failures: Vec::new(),
            ratelimit: [0; 2],
        });
        RouteSlot(i)
    }

    /// Stable slot for an upstream name (same rules as `route_slot`).
    pub fn upstream_slot(&mut self, name: &str) -> UpstreamSlot {
        if let Some(&i) = self.upstream_index.get(name) {
            return UpstreamSlot(i);
        }
        let i = u32::try_from(self.upstreams.len()).unwrap_or(u32::MAX);
        let name: Arc<str> = Arc::from(name);
        self.upstream_index.insert(name.clone(), i);
        self.upstreams.push(UpstreamStats {
            name,
            latency: LatencyHistogram::new(),
            connect_errors: 0,
            opened: 0,
            reused: 0,
        });
        UpstreamSlot(i)
    }

    /// One finished request. `route: None` = no route matched / rejected before routing
    /// (`_none`). `method` indexes `METHOD_LABELS` (out of range → `_OTHER`). A slot from
    /// another `CoreMetrics` that is out of range is ignored rather than panicking.
    #[inline]
    pub fn record_request(
        &mut self,
        route: Option<RouteSlot>,
        method: u8,
        status: u16,
        duration: Duration,
        bytes_in: u64,
        bytes_out: u64,
    ) {
        let idx = route.map_or(0, |r| r.0 as usize);
        let Some(r) = self.routes.get_mut(idx) else {
            return;
        };
        *r.requests.entry(request_key(method, status)).or_insert(0) += 1;
        r.latency.record(duration);
        r.bytes_in = r.bytes_in.wrapping_add(bytes_in);
        r.bytes_out = r.bytes_out.wrapping_add(bytes_out);
    }

    /// Time from sending the request upstream to the complete response head.
    #[inline]
    pub fn record_upstream(&mut self, up: UpstreamSlot, duration: Duration) {
        if let Some(u) = self.upstreams.get_mut(up.0 as usize) {
            u.latency.record(duration);
        }
    }

    /// A connect attempt to this upstream failed.
    #[inline]
    pub fn upstream_connect_error(&mut self, up: UpstreamSlot) {
        if let Some(u) = self.upstreams.get_mut(up.0 as usize) {
            u.connect_errors += 1;
        }
    }

    /// A request was sent on a freshly opened (`reused = false`) or pooled (`true`) connection.
    #[inline]
    pub fn upstream_connection(&mut self, up: UpstreamSlot, reused: bool) {
        if let Some(u) = self.upstreams.get_mut(up.0 as usize) {
            if reused {
                u.reused += 1;
            } else {
                u.opened += 1;
            }
        }
    }

    /// Policy outcomes of one request: an auth failure's reason and / or a rate-limit decision.
    #[inline]
    pub fn record_policy(
        &mut self,
        route: Option<RouteSlot>,
        auth_failure: Option<&'static str>,
        rate_limited: Option<bool>,
    ) {
        let idx = route.map_or(0, |r| r.0 as usize);
        let Some(r) = self.routes.get_mut(idx) else {
            return;
        };
        if let Some(reason) = auth_failure {
            match r.auth_failures.iter_mut().find(|(k, _)| *k == reason) {
                Some((_, n)) => *n += 1,
                None => r.auth_failures.push((reason, 1)),
            }
        }
        if let Some(admitted) = rate_limited {
            r.ratelimit[usize::from(!admitted)] += 1;
        }
    }

    /// Adds `n` to a generic worker-local counter.
    #[inline]
    pub fn add(&mut self, c: CoreCounter, n: u64) {
        let v = &mut self.counters[c.index()];
        *v = v.wrapping_add(n);
    }

    /// An owned copy of everything, for handing to the admin thread. Allocates; call at scrape
    /// time only.
    pub fn snapshot(&self, worker: usize, open_connections: u64) -> CoreSnapshot {
        let routes = self
            .routes
            .iter()
            .map(|r| RouteSnapshot {
                name: r.name.clone(),
                requests: r
                    .requests
                    .iter()
                    .map(|(&k, &n)| ((k >> 16) as u8, (k & 0xffff) as u16, n))
                    .collect(),
                latency: r.latency.clone(),
                bytes_in: r.bytes_in,
                bytes_out: r.bytes_out,
                auth_failures: r.auth_failures.clone(),
                ratelimit: r.ratelimit,
            })
            .collect();
        let upstreams = self
            .upstreams
            .iter()
            .map(|u| UpstreamSnapshot {
                name: u.name.clone(),
                latency: u.latency.clone(),
                connect_errors: u.connect_errors,
                opened: u.opened,
                reused: u.reused,
            })
            .collect();
        CoreSnapshot {
            worker,
            open_connections,
            routes,
            upstreams,
            counters: self.counters,
        }
    }
}

/// One worker's metrics at one instant: owned, `Send`, merged by name on the admin side.
#[derive(Clone, Debug)]
pub struct CoreSnapshot {
    pub(super) worker: usize,
    pub(super) open_connections: u64,
    pub(super) routes: Vec<RouteSnapshot>,
    pub(super) upstreams: Vec<UpstreamSnapshot>,
    pub(super) counters: [u64; CoreCounter::COUNT],
}

impl CoreSnapshot {
    /// The worker this snapshot came from.
    pub fn worker(&self) -> usize {
        self.worker
    }

    /// Open downstream connections the worker reported.
    pub fn open_connections(&self) -> u64 {
        self.open_connections
    }
}

#[derive(Clone, Debug)]
pub(super) struct RouteSnapshot {
    pub(super) name: Arc<str>,
    /// (method index, status, count).
    pub(super) requests: Vec<(u8, u16, u64)>,
    pub(super) latency: LatencyHistogram,
    pub(super) bytes_in: u64,
    pub(super) bytes_out: u64,
    pub(super) auth_failures: Vec<(&'static str, u64)>,
    pub(super) ratelimit: [u64; 2],
}

#[derive(Clone, Debug)]
pub(super) struct UpstreamSnapshot {
    pub(super) name: Arc<str>,
    pub(super) latency: LatencyHistogram,
    pub(super) connect_errors: u64,
    pub(super) opened: u64,
    pub(super) reused: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    /// Counts allocations per thread so parallel tests don't disturb each other.
    struct CountingAlloc;

    thread_local! {
        static ALLOCS: Cell<u64> = const { Cell::new(0) };
    }

    // SAFETY: forwards every call to `System` unchanged; only bumps a const-initialized,
    // destructor-free thread-local counter (which itself never allocates).
    unsafe impl GlobalAlloc for CountingAlloc {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
            // SAFETY: same contract as the caller's.
            unsafe { System.alloc(layout) }
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: same contract as the caller's.
            unsafe { System.dealloc(ptr, layout) }
        }
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
            // SAFETY: same contract as the caller's.
            unsafe { System.realloc(ptr, layout, new_size) }
        }
    }

    #[global_allocator]
    static GLOBAL: CountingAlloc = CountingAlloc;

    fn allocs() -> u64 {
        ALLOCS.with(|c| c.get())
    }

    #[test]
    fn record_request_is_allocation_free_in_steady_state() {
        let mut m = CoreMetrics::new();
        let r = m.route_slot("api");
        let u = m.upstream_slot("backend");
        let keys = [(0u8, 200u16), (2, 201), (0, 404), (9, 502)];
        // Warm up every key and the histograms.
        for &(meth, st) in &keys {
            m.record_request(Some(r), meth, st, Duration::from_millis(3), 10, 20);
        }
        m.record_request(None, 0, 404, Duration::from_micros(50), 0, 0);
        m.record_upstream(u, Duration::from_millis(2));
        let before = allocs();
        for i in 0..10_000u64 {
            let (meth, st) = keys[(i % 4) as usize];
            m.record_request(Some(r), meth, st, Duration::from_micros(i * 37), 1, 2);
            m.record_request(None, 0, 404, Duration::from_micros(i), 0, 0);
            m.record_upstream(u, Duration::from_micros(i * 11));
            m.upstream_connection(u, i % 2 == 0);
            m.upstream_connect_error(u);
            m.add(CoreCounter::SpansDropped, 1);
        }
        assert_eq!(allocs() - before, 0, "recording allocated in steady state");
        // The counter does see allocations on this thread (guards against a vacuous pass).
        let v = std::hint::black_box(vec![1u8; 16]);
        assert!(allocs() > before, "counting allocator is not active");
        drop(v);
    }

    #[test]
    fn slots_are_stable_and_dense() {
        let mut m = CoreMetrics::new();
        let a = m.route_slot("a");
        let b = m.route_slot("b");
        assert_eq!((a, b), (RouteSlot(1), RouteSlot(2)));
        assert_eq!(m.route_slot("a"), a);
        assert_eq!(m.route_slot(NO_ROUTE), RouteSlot(0));
        assert_eq!(m.upstream_slot("x"), UpstreamSlot(0));
        assert_eq!(m.upstream_slot("y"), UpstreamSlot(1));
        assert_eq!(m.upstream_slot("x"), UpstreamSlot(0));
    }

    #[test]
    fn foreign_slots_are_ignored_not_panicking() {
        let mut m = CoreMetrics::new();
        m.record_request(Some(RouteSlot(99)), 0, 200, Duration::ZERO, 0, 0);
        m.record_upstream(UpstreamSlot(5), Duration::ZERO);
        m.upstream_connect_error(UpstreamSlot(5));
        m.upstream_connection(UpstreamSlot(5), true);
        let s = m.snapshot(0, 0);
        assert!(s.routes.iter().all(|r| r.requests.is_empty()));
        assert!(s.upstreams.is_empty());
    }

    #[test]
    fn snapshot_unpacks_keys_and_clamps_method() {
        let mut m = CoreMetrics::new();
        let r = m.route_slot("r");
        m.record_request(Some(r), 30, 599, Duration::from_millis(1), 5, 7);
        m.record_request(Some(r), 2, 201, Duration::from_millis(1), 5, 7);
        m.record_request(None, 1, 400, Duration::from_millis(1), 0, 0);
        m.add(CoreCounter::AccessLogDropped, 3);
        let s = m.snapshot(4, 9);
        assert_eq!((s.worker(), s.open_connections()), (4, 9));
        let rs = &s.routes[1];
        assert_eq!(&*rs.name, "r");
        let mut req = rs.requests.clone();
        req.sort();
        assert_eq!(req, vec![(2, 201, 1), (METHOD_OTHER, 599, 1)]);
        assert_eq!((rs.bytes_in, rs.bytes_out), (10, 14));
        assert_eq!(s.routes[0].requests, vec![(1, 400, 1)]);
        assert_eq!(s.counters[..2], [3, 0]);
    }
}

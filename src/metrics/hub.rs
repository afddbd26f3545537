//! The scrape handshake between the admin thread and the workers, and the merge.
//!
//! `MetricsHub` lives in the process-wide `Shared`. A scrape bumps `requested` and notifies the
//! workers; each worker (listening before it reads the epoch, so no wake-up is lost) snapshots
//! its `CoreMetrics` and `publish`es it into its own slot. The per-worker `Mutex` is taken only
//! at publish/scrape time, never per request, and held only to swap an `Arc`.
//!
//! Invariants: a `collect` that requested epoch `e` waits until every worker has published an
//! epoch `>= e` (so concurrent scrapes each get a complete merge) or its timeout passes, then
//! merges each worker's latest snapshot; a worker that never published contributes nothing.
//! Merging is by route / upstream NAME, never by slot.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use event_listener::{Event, EventListener, Listener};

use super::core_metrics::CoreSnapshot;
use super::histogram::LatencyHistogram;
use super::labels::CoreCounter;

#[derive(Default)]
struct WorkerSlot {
    /// Highest epoch this worker has served.
    epoch: u64,
    snapshot: Option<Arc<CoreSnapshot>>,
}

/// Cross-thread rendezvous for scrapes (`Send + Sync`).
pub struct MetricsHub {
    requested: AtomicU64,
    /// Workers wait on this for a scrape request.
    wake: Event,
    /// Collectors wait on this for publications.
    published: Event,
    slots: Vec<Mutex<WorkerSlot>>,
}

impl MetricsHub {
    /// A hub for `workers` workers (ids `0..workers`).
    pub fn new(workers: usize) -> Self {
        MetricsHub {
            requested: AtomicU64::new(0),
            wake: Event::new(),
            published: Event::new(),
            slots: (0..workers).map(|_| Mutex::default()).collect(),
        }
    }

    /// Worker side: registers interest in the next scrape. Call BEFORE `requested_epoch`, then
    /// await the listener, so a request that lands in between is not missed.
    pub fn listen(&self) -> EventListener {
        self.wake.listen()
    }

    /// The latest epoch any scrape has asked for (0 = none yet).
    pub fn requested_epoch(&self) -> u64 {
        self.requested.load(Ordering::SeqCst)
    }

    /// Worker side: stores `snap` as worker `worker`'s latest snapshot and marks `epoch` served.
    /// An unknown worker id is ignored.
    pub fn publish(&self, worker: usize, snap: CoreSnapshot, epoch: u64) {
        let Some(slot) = self.slots.get(worker) else {
            return;
        };
        let snap = Arc::new(snap);
        {
            let mut s = slot.lock().unwrap_or_else(|p| p.into_inner());
            s.snapshot = Some(snap);
            s.epoch = s.epoch.max(epoch);
        }
        self.published.notify(usize::MAX);
    }

    /// Admin side: requests a fresh snapshot from every worker, waits until all have answered
    /// or `timeout` passes, and merges the latest snapshot of each (stale ones included, listed
    /// in `Merged::stale_workers`). Blocks the calling thread; never call it on a worker.
    pub fn collect(&self, timeout: Duration) -> Merged {
        let epoch = self.requested.fetch_add(1, Ordering::SeqCst) + 1;
        self.wake.notify(usize::MAX);
        let deadline = Instant::now().checked_add(timeout);
        loop {
            // Listen before checking, so a publish between the check and the wait wakes us.
            let l = self.published.listen();
            if self.all_served(epoch) {
                break;
            }
            match deadline {
                Some(d) if Instant::now() < d => {
                    let _ = l.wait_deadline(d);
                }
                Some(_) => break,
                None => {
                    l.wait();
                }
            }
        }
        let mut merged = Merged::default();
        for (worker, slot) in self.slots.iter().enumerate() {
            let (served, snap) = {
                let s = slot.lock().unwrap_or_else(|p| p.into_inner());
                (s.epoch, s.snapshot.clone())
            };
            if served < epoch {
                merged.stale_workers.push(worker);
            }
            if let Some(snap) = snap {
                merged.add(&snap);
            }
        }
        merged
    }

    fn all_served(&self, epoch: u64) -> bool {
        self.slots
            .iter()
            .all(|s| s.lock().unwrap_or_else(|p| p.into_inner()).epoch >= epoch)
    }
}

/// Per-route totals across workers.
#[derive(Clone, Debug, Default)]
pub struct RouteTotals {
    /// (method index into `METHOD_LABELS`, status) → count.
    pub requests: BTreeMap<(u8, u16), u64>,
    /// Request duration (head read to last byte written).
    pub latency: LatencyHistogram,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Auth failures by reason.
    pub auth_failures: BTreeMap<&'static str, u64>,
    /// Rate-limit decisions: [admitted, limited].
    pub ratelimit: [u64; 2],
}

/// Per-upstream totals across workers.
#[derive(Clone, Debug, Default)]
pub struct UpstreamTotals {
    /// Request sent → complete response head.
    pub latency: LatencyHistogram,
    pub connect_errors: u64,
    /// Requests sent on freshly opened connections.
    pub opened: u64,
    /// Requests sent on pooled connections.
    pub reused: u64,
}

/// Metrics of all workers merged by name; what the renderers read.
#[derive(Clone, Debug, Default)]
pub struct Merged {
    pub routes: BTreeMap<String, RouteTotals>,
    pub upstreams: BTreeMap<String, UpstreamTotals>,
    /// Worker id → open downstream connections (only workers that ever published).
    pub open_connections: BTreeMap<usize, u64>,
    /// Summed `CoreCounter`s, indexed by `CoreCounter::index`.
    pub counters: [u64; CoreCounter::COUNT],
    /// Workers that did not answer this scrape in time (their previous snapshot, if any, was
    /// used).
    pub stale_workers: Vec<usize>,
}

impl Merged {
    /// Adds one worker's snapshot, matching routes and upstreams by name.
    pub fn add(&mut self, s: &CoreSnapshot) {
        for r in &s.routes {
            let t = entry(&mut self.routes, &r.name);
            for &(m, st, n) in &r.requests {
                *t.requests.entry((m, st)).or_insert(0) += n;
            }
            t.latency.merge(&r.latency);
            t.bytes_in = t.bytes_in.wrapping_add(r.bytes_in);
            t.bytes_out = t.bytes_out.wrapping_add(r.bytes_out);
            for &(reason, n) in &r.auth_failures {
                *t.auth_failures.entry(reason).or_insert(0) += n;
            }
            t.ratelimit[0] += r.ratelimit[0];
            t.ratelimit[1] += r.ratelimit[1];
        }
        for u in &s.upstreams {
            let t = entry(&mut self.upstreams, &u.name);
            t.latency.merge(&u.latency);
            t.connect_errors += u.connect_errors;
            t.opened += u.opened;
            t.reused += u.reused;
        }
        *self.open_connections.entry(s.worker).or_insert(0) += s.open_connections;
        for (a, b) in self.counters.iter_mut().zip(s.counters.iter()) {
            *a = a.wrapping_add(*b);
        }
    }

    /// A summed worker-local counter.
    pub fn counter(&self, c: CoreCounter) -> u64 {
        self.counters[c.index()]
    }
}

/// The totals for `name`, created on first sight (scrape time only, so the key copy is fine).
fn entry<'a, T: Default>(map: &'a mut BTreeMap<String, T>, name: &str) -> &'a mut T {
    map.entry(name.to_owned()).or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{CoreMetrics, METHOD_OTHER, NO_ROUTE};
    use std::sync::atomic::AtomicBool;

    #[test]
    fn merges_by_name_across_different_slot_numbering() {
        let mut a = CoreMetrics::new();
        let mut b = CoreMetrics::new();
        let (a_x, a_y) = (a.route_slot("x"), a.route_slot("y"));
        // Opposite order on worker b, plus an extra route.
        let b_z = b.route_slot("z");
        let (b_y, b_x) = (b.route_slot("y"), b.route_slot("x"));
        assert_ne!(a_x, b_x);
        let (a_u, b_v) = (a.upstream_slot("u"), b.upstream_slot("v"));
        let b_u = b.upstream_slot("u");
        assert_ne!(a_u, b_u);

        let ms = Duration::from_millis;
        for _ in 0..3 {
            a.record_request(Some(a_x), 0, 200, ms(1), 10, 100);
        }
        a.record_request(Some(a_y), 2, 500, ms(2), 1, 1);
        for _ in 0..5 {
            b.record_request(Some(b_x), 0, 200, ms(1), 10, 100);
        }
        b.record_request(Some(b_x), 42, 200, ms(1), 0, 0);
        b.record_request(Some(b_y), 2, 500, ms(2), 1, 1);
        b.record_request(Some(b_z), 1, 204, ms(2), 0, 0);
        b.record_request(None, 0, 404, ms(0), 0, 0);
        a.upstream_connection(a_u, false);
        b.upstream_connection(b_u, true);
        b.upstream_connection(b_u, true);
        b.upstream_connect_error(b_v);
        a.record_upstream(a_u, ms(1));
        b.record_upstream(b_u, ms(3));
        a.add(CoreCounter::AccessLogDropped, 2);
        b.add(CoreCounter::AccessLogDropped, 5);
        b.add(CoreCounter::SpansDropped, 1);

        let mut m = Merged::default();
        m.add(&a.snapshot(0, 3));
        m.add(&b.snapshot(1, 4));

        let x = &m.routes["x"];
        assert_eq!(x.requests[&(0, 200)], 8);
        assert_eq!(x.requests[&(METHOD_OTHER, 200)], 1);
        assert_eq!(x.latency.count(), 9);
        assert_eq!((x.bytes_in, x.bytes_out), (80, 800));
        assert_eq!(m.routes["y"].requests[&(2, 500)], 2);
        assert_eq!(m.routes["z"].requests[&(1, 204)], 1);
        assert_eq!(m.routes[NO_ROUTE].requests[&(0, 404)], 1);
        assert_eq!(m.routes.len(), 4);
        let u = &m.upstreams["u"];
        assert_eq!((u.opened, u.reused, u.connect_errors), (1, 2, 0));
        assert_eq!(u.latency.count(), 2);
        assert_eq!(m.upstreams["v"].connect_errors, 1);
        assert_eq!(m.open_connections.get(&0), Some(&3));
        assert_eq!(m.open_connections.get(&1), Some(&4));
        assert_eq!(m.counter(CoreCounter::AccessLogDropped), 7);
        assert_eq!(m.counter(CoreCounter::SpansDropped), 1);
    }

    /// A worker thread that mirrors the real loop, blocking instead of awaiting.
    fn spawn_worker(
        hub: Arc<MetricsHub>,
        id: usize,
        requests: u64,
        stop: Arc<AtomicBool>,
    ) -> std::thread::JoinHandle<()> {
        std::thread::spawn(move || {
            let mut core = CoreMetrics::new();
            let r = core.route_slot("r");
            for _ in 0..requests {
                core.record_request(Some(r), 0, 200, Duration::from_millis(1), 0, 0);
            }
            let mut last = 0;
            while !stop.load(Ordering::SeqCst) {
                let l = hub.listen();
                let e = hub.requested_epoch();
                if e > last {
                    hub.publish(id, core.snapshot(id, id as u64 + 1), e);
                    last = e;
                }
                let _ = l.wait_timeout(Duration::from_millis(50));
            }
        })
    }

    #[test]
    fn collect_gets_every_worker() {
        let hub = Arc::new(MetricsHub::new(2));
        let stop = Arc::new(AtomicBool::new(false));
        let t0 = spawn_worker(hub.clone(), 0, 3, stop.clone());
        let t1 = spawn_worker(hub.clone(), 1, 4, stop.clone());
        for _ in 0..20 {
            let m = hub.collect(Duration::from_secs(10));
            assert!(m.stale_workers.is_empty(), "{:?}", m.stale_workers);
            assert_eq!(m.routes["r"].requests[&(0, 200)], 7);
            assert_eq!(m.open_connections.len(), 2);
        }
        // Concurrent scrapes each get a complete merge.
        let scrapes: Vec<_> = (0..4)
            .map(|_| {
                let hub = hub.clone();
                std::thread::spawn(move || hub.collect(Duration::from_secs(10)))
            })
            .collect();
        for s in scrapes {
            let m = s.join().expect("scrape thread");
            assert!(m.stale_workers.is_empty());
            assert_eq!(m.routes["r"].requests[&(0, 200)], 7);
        }
        stop.store(true, Ordering::SeqCst);
        t0.join().expect("worker 0");
        t1.join().expect("worker 1");
    }

    #[test]
    fn collect_times_out_on_a_silent_worker() {
        let hub = Arc::new(MetricsHub::new(2));
        let stop = Arc::new(AtomicBool::new(false));
        // Worker 1 never answers.
        let t0 = spawn_worker(hub.clone(), 0, 5, stop.clone());
        let start = Instant::now();
        let m = hub.collect(Duration::from_millis(200));
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(200), "{took:?}");
        assert!(took < Duration::from_secs(5), "{took:?}");
        assert_eq!(m.stale_workers, vec![1]);
        assert_eq!(m.routes["r"].requests[&(0, 200)], 5);
        assert_eq!(m.open_connections.keys().copied().collect::<Vec<_>>(), [0]);
        stop.store(true, Ordering::SeqCst);
        t0.join().expect("worker 0");
    }

    #[test]
    fn stale_worker_contributes_its_last_snapshot() {
        let hub = MetricsHub::new(2);
        let mut c = CoreMetrics::new();
        let r = c.route_slot("r");
        c.record_request(Some(r), 0, 200, Duration::ZERO, 0, 0);
        hub.publish(1, c.snapshot(1, 0), 0);
        hub.publish(7, c.snapshot(7, 0), 0); // unknown worker: ignored
        let m = hub.collect(Duration::from_millis(10));
        assert_eq!(m.stale_workers, vec![0, 1]);
        assert_eq!(m.routes["r"].requests[&(0, 200)], 1);
    }
}

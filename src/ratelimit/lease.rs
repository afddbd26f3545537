//! Leases for `leased` global rate limits: the per-worker table of tokens taken from Redis in
//! batches, and the local decision made from them. Pure bookkeeping (no I/O, no clock): the
//! caller (`ratelimit::global`) fetches from Redis and passes time in.
//!
//! Owner: one worker thread (`!Send`; `global.rs` keeps one table per thread). Invariants, per
//! key: at most one fetch in flight; `held + asked ≤ lease` where `asked` is what the fetch in
//! flight asked for (a fetch asks for `lease − held` at the moment it starts, and `held` only
//! falls until it lands); the table never holds more than `cap` keys (eviction drops the held
//! tokens, which only makes the limit stricter).
//!
//! # Worst-case overshoot of `leased` mode
//! Let `C = requests + burst`, `T = period / requests` (rounded up to whole microseconds), `L` the
//! lease size, and `K` the number of leasing clients (instances × workers). Redis runs GCRA over
//! all grants, a grant of `g` tokens being `g` charges at one instant of Redis time, so (the
//! local bound, `ratelimit` module header) tokens GRANTED within any window of length `t` are
//! `≤ C + floor(t / T)`. A token admitted within a window `[s, s + t]` was granted either inside
//! it or before `s`; one granted before `s` and admitted after `s` was, at time `s`, either held
//! by a client or in flight to it, and by the invariant above one client has at most `L` such
//! tokens. Hence, for every window of length `t`:
//!
//! ```text
//! admitted ≤ C + floor(t / T) + K · L
//! ```
//!
//! `exact` mode is the case `L = 0` (one grant of one token per request, spent at once). The
//! bound assumes Redis TIME does not step backwards (a failover to a replica whose clock lags
//! can hand out up to the lag's worth of extra tokens, `lag / T`), and counts a request as
//! admitted when its grant exists; tokens lost to eviction or to a worker's shutdown only lower
//! the count.
//!
//! # Decisions
//! While tokens are held, a request takes one and is admitted without any I/O. When `held`
//! falls to the low-water mark (`lease / 2`) a background refill is due ([`Step::Admit::refill`]).
//! With nothing held: `Deny` while Redis's last answer (0 granted) says so, `Wait` if a fetch is
//! in flight, `Unavailable` for a second after a Redis error (so an outage does not make every
//! request wait for a timeout), else `Fetch`.

use std::task::Waker;

use ahash::AHashMap;

/// How long a worker stops asking Redis after a failed call (ns); then one request probes.
pub(crate) const DOWN_FOR: u64 = 1_000_000_000;

/// What Redis answered to "take up to n" (times already in nanoseconds).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Grant {
    /// Tokens taken (0: none, the limit is exhausted).
    pub granted: u64,
    /// Requests the tightest limit still admits after this grant.
    pub remaining: u64,
    /// Time until the reported limit is fully idle.
    pub reset: u64,
    /// With `granted == 0`: time until a token is available again.
    pub retry: u64,
    /// The reported limit (index into the policy's limits).
    pub index: usize,
}

/// What a request does next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// Admitted from the lease. `refill`: start a background fetch of that many tokens (the
    /// fetch is already marked in flight).
    Admit {
        remaining: u64,
        reset: u64,
        index: usize,
        refill: Option<u64>,
    },
    /// Redis said the limit is exhausted until `retry_after` from now.
    Deny {
        retry_after: u64,
        reset: u64,
        index: usize,
    },
    /// Nothing held and nothing in flight: fetch this many tokens (marked in flight) and wait.
    Fetch(u64),
    /// A fetch is in flight: wait for it (see [`LeaseTable::epoch`]).
    Wait,
    /// Redis failed within the last second: apply the policy's `on_redis_error`.
    Unavailable,
}

/// One key's lease.
struct Lease<K> {
    held: u64,
    fetching: bool,
    /// Bumped whenever a fetch lands (or fails), so waiters know to look again.
    epoch: u64,
    denied_until: u64,
    reset_at: u64,
    /// What Redis had left after our last grant (for the `RateLimit` header's `r`).
    remote_remaining: u64,
    index: usize,
    last_use: u64,
    waiters: Vec<Waker>,
    /// The caller's data for this key (the Redis keys), built once at insert.
    data: K,
}

/// Bounded per-worker table of leases, by key fingerprint.
pub(crate) struct LeaseTable<K> {
    map: AHashMap<u64, Lease<K>>,
    cap: usize,
    down_until: u64,
}

impl<K: Clone> LeaseTable<K> {
    /// An empty table holding at most `cap` keys (at least 1).
    pub(crate) fn new(cap: usize) -> LeaseTable<K> {
        LeaseTable {
            map: AHashMap::new(),
            cap: cap.max(1),
            down_until: 0,
        }
    }

    /// Number of keys held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// True while this worker stops calling Redis after a failure.
    pub(crate) fn redis_down(&self, now: u64) -> bool {
        now < self.down_until
    }

    /// Records a failed Redis call (by any mode of any policy on this worker).
    pub(crate) fn mark_down(&mut self, now: u64) {
        self.down_until = now.saturating_add(DOWN_FOR);
    }

    /// Decides one request for key `fp` at `now` (see the module header). `make` builds the
    /// key's data when the key is new (then the answer is `Fetch` or `Unavailable`).
    pub(crate) fn step(&mut self, fp: u64, now: u64, lease: u64, make: impl FnOnce() -> K) -> Step {
        let lease = lease.max(1);
        if !self.map.contains_key(&fp) {
            if self.redis_down(now) {
                return Step::Unavailable;
            }
            self.evict_one_if_full();
            self.map.insert(fp, Lease::new(make(), now));
        }
        let down = self.redis_down(now);
        let Some(e) = self.map.get_mut(&fp) else {
            return Step::Unavailable;
        };
        e.last_use = now;
        if e.held > 0 {
            e.held -= 1;
            let refill = (e.held <= lease / 2 && !e.fetching && now >= e.denied_until && !down)
                .then(|| {
                    e.fetching = true;
                    lease - e.held
                });
            return Step::Admit {
                remaining: e.held.saturating_add(e.remote_remaining),
                reset: e.reset_at.saturating_sub(now),
                index: e.index,
                refill,
            };
        }
        if now < e.denied_until {
            return Step::Deny {
                retry_after: e.denied_until - now,
                reset: e.reset_at.saturating_sub(now),
                index: e.index,
            };
        }
        if e.fetching {
            return Step::Wait;
        }
        if down {
            return Step::Unavailable;
        }
        e.fetching = true;
        Step::Fetch(lease)
    }

    /// The data of key `fp` (for starting a fetch).
    pub(crate) fn data(&self, fp: u64) -> Option<K> {
        self.map.get(&fp).map(|e| e.data.clone())
    }

    /// The fetch for `fp` landed at `now` (`None`: it failed). Adds the tokens, records a
    /// denial, and wakes the requests waiting. A key evicted meanwhile loses the tokens.
    pub(crate) fn finish(&mut self, fp: u64, now: u64, got: Option<Grant>) {
        if got.is_none() {
            self.mark_down(now);
        }
        let Some(e) = self.map.get_mut(&fp) else {
            return;
        };
        e.fetching = false;
        e.epoch += 1;
        if let Some(g) = got {
            e.held = e.held.saturating_add(g.granted);
            e.remote_remaining = g.remaining;
            e.reset_at = now.saturating_add(g.reset);
            e.index = g.index;
            if g.granted == 0 {
                // A 429 storm is answered from here until then, without asking Redis.
                e.denied_until = now.saturating_add(g.retry.max(1));
            }
        }
        for w in e.waiters.drain(..) {
            w.wake();
        }
    }

    /// `exact` mode: a denial Redis gave for `fp` that still holds at `now`. GCRA state only
    /// moves forward, so the denial is certain until its retry time (the cache only ever errs
    /// late, by the reply's travel time: stricter, never looser).
    pub(crate) fn cached_denial(&self, fp: u64, now: u64) -> Option<Step> {
        let e = self.map.get(&fp)?;
        (now < e.denied_until).then(|| Step::Deny {
            retry_after: e.denied_until - now,
            reset: e.reset_at.saturating_sub(now),
            index: e.index,
        })
    }

    /// `exact` mode: remembers Redis's denial `g` (0 granted) for `fp`, answered at `now`.
    pub(crate) fn record_denial(&mut self, fp: u64, now: u64, g: &Grant, make: impl FnOnce() -> K) {
        if !self.map.contains_key(&fp) {
            self.evict_one_if_full();
            self.map.insert(fp, Lease::new(make(), now));
        }
        if let Some(e) = self.map.get_mut(&fp) {
            e.last_use = now;
            e.denied_until = now.saturating_add(g.retry.max(1));
            e.reset_at = now.saturating_add(g.reset);
            e.index = g.index;
        }
    }

    /// The fetch for `fp` was marked in flight but could not start: unmark it (no penalty).
    pub(crate) fn cancel(&mut self, fp: u64) {
        if let Some(e) = self.map.get_mut(&fp) {
            e.fetching = false;
        }
    }

    /// The fetch generation of `fp` (`None` if the key is gone).
    pub(crate) fn epoch(&self, fp: u64) -> Option<u64> {
        self.map.get(&fp).map(|e| e.epoch)
    }

    /// Registers `w` to be woken when the fetch of `fp` in flight lands. False if the key is
    /// gone or its epoch moved past `seen` already (look again instead of waiting).
    pub(crate) fn wait(&mut self, fp: u64, seen: u64, w: &Waker) -> bool {
        match self.map.get_mut(&fp) {
            Some(e) if e.epoch == seen && e.fetching => {
                if !e.waiters.iter().any(|x| x.will_wake(w)) {
                    e.waiters.push(w.clone());
                }
                true
            }
            _ => false,
        }
    }

    /// Full: drops the least recently used of a few keys, preferring keys with no fetch in
    /// flight (their waiters, if any, are woken and start over).
    fn evict_one_if_full(&mut self) {
        if self.map.len() < self.cap {
            return;
        }
        let victim = self
            .map
            .iter()
            .take(8)
            .min_by_key(|(_, e)| (e.fetching, e.last_use))
            .map(|(fp, _)| *fp);
        if let Some(e) = victim.and_then(|fp| self.map.remove(&fp)) {
            for w in e.waiters {
                w.wake();
            }
        }
    }
}

impl<K> Lease<K> {
    fn new(data: K, now: u64) -> Lease<K> {
        Lease {
            held: 0,
            fetching: false,
            epoch: 0,
            denied_until: 0,
            reset_at: now,
            remote_remaining: 0,
            index: 0,
            last_use: now,
            waiters: Vec::new(),
            data,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn grant(granted: u64, remaining: u64) -> Option<Grant> {
        Some(Grant {
            granted,
            remaining,
            reset: 60_000 * MS,
            retry: if granted == 0 { 60 * MS } else { 0 },
            index: 0,
        })
    }

    fn admitted(s: Step) -> bool {
        matches!(s, Step::Admit { .. })
    }

    #[test]
    fn cold_key_fetches_once_then_decides_locally_and_refills_at_low_water() {
        let mut t: LeaseTable<()> = LeaseTable::new(16);
        assert_eq!(t.step(1, 0, 10, || ()), Step::Fetch(10));
        // A second request meanwhile waits for the same fetch instead of asking again.
        assert_eq!(t.step(1, 0, 10, || ()), Step::Wait);
        t.finish(1, 0, grant(10, 990));
        let mut refills = Vec::new();
        for _ in 0..10 {
            match t.step(1, 0, 10, || ()) {
                Step::Admit { refill, .. } => refills.extend(refill),
                other => panic!("{other:?}"),
            }
        }
        // Held fell to 5 = lease/2: one refill of 10 - 5, and no second one while in flight.
        assert_eq!(refills, [5]);
        assert_eq!(t.step(1, 0, 10, || ()), Step::Wait);
        t.finish(1, 0, grant(5, 980));
        match t.step(1, 0, 10, || ()) {
            Step::Admit { remaining, .. } => assert_eq!(remaining, 4 + 980),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn held_plus_asked_never_exceeds_the_lease() {
        let mut t: LeaseTable<()> = LeaseTable::new(16);
        let lease = 8;
        let mut in_flight: Option<u64> = None;
        let mut held = 0u64;
        for i in 0..10_000u64 {
            match t.step(7, i, lease, || ()) {
                Step::Admit { refill, .. } => {
                    held -= 1;
                    if let Some(n) = refill {
                        in_flight = Some(n);
                    }
                }
                Step::Fetch(n) => in_flight = Some(n),
                Step::Wait | Step::Deny { .. } | Step::Unavailable => {}
            }
            assert!(held + in_flight.unwrap_or(0) <= lease, "step {i}");
            // Fetches land after a varying delay, sometimes short.
            if i % 3 == 0 {
                if let Some(n) = in_flight.take() {
                    let g = if i % 7 == 0 { n / 2 } else { n };
                    held += g;
                    t.finish(7, i, grant(g, 100));
                }
            }
        }
    }

    #[test]
    fn zero_granted_is_cached_until_retry_and_errors_pause_fetching() {
        let mut t: LeaseTable<()> = LeaseTable::new(16);
        assert_eq!(t.step(1, 0, 4, || ()), Step::Fetch(4));
        t.finish(1, 0, grant(0, 0));
        for _ in 0..1_000 {
            match t.step(1, MS, 4, || ()) {
                Step::Deny { retry_after, .. } => assert_eq!(retry_after, 59 * MS),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(t.step(1, 60 * MS, 4, || ()), Step::Fetch(4));
        t.finish(1, 60 * MS, None);
        assert_eq!(t.step(1, 61 * MS, 4, || ()), Step::Unavailable);
        assert_eq!(t.step(2, 61 * MS, 4, || ()), Step::Unavailable);
        let later = 60 * MS + DOWN_FOR;
        assert_eq!(t.step(1, later, 4, || ()), Step::Fetch(4));
        t.finish(1, later, grant(4, 0));
        assert!(admitted(t.step(1, later, 4, || ())));
    }

    #[test]
    fn table_is_bounded_and_eviction_wakes_waiters() {
        let mut t: LeaseTable<u64> = LeaseTable::new(4);
        for k in 0..100u64 {
            assert_eq!(t.step(k, k, 2, || k), Step::Fetch(2));
            assert!(t.len() <= 4);
        }
        assert_eq!(t.data(99), Some(99));
        // Keys with a fetch in flight whose key was evicted: the late grant is dropped.
        t.finish(0, 200, grant(2, 0));
        assert_eq!(t.epoch(0), None);
        // exact mode's denial cache.
        let no = Grant {
            granted: 0,
            remaining: 0,
            reset: 90,
            retry: 30,
            index: 1,
        };
        t.record_denial(500, 1_000, &no, || 500);
        assert_eq!(
            t.cached_denial(500, 1_010),
            Some(Step::Deny {
                retry_after: 20,
                reset: 80,
                index: 1
            })
        );
        assert_eq!(t.cached_denial(500, 1_030), None);
        assert!(t.len() <= 4);
        let w = std::task::Waker::noop();
        assert!(!t.wait(0, 0, w));
        assert!(t.wait(99, 0, w));
        t.finish(99, 200, grant(2, 0));
        assert!(!t.wait(99, 0, w));
    }
}

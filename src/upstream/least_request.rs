//! Power-of-two-choices least-request balancing: two distinct targets drawn at random from
//! the available ones (`available`), and the one with fewer requests in flight on this worker
//! relative to its weight takes the request (at a tie, the heavier, else the first drawn).
//!
//! In-flight counts are per worker (`Cell`s, no atomics): each worker balances its own load,
//! which is what it can see without cross-core traffic. An `InFlight` guard, held by the
//! exchange from the pick until the request ends, keeps the count. Only upstreams with
//! `balance = "least_request"` count at all.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Instant;

use super::UpstreamState;
use crate::config::Balance;
use crate::resilience::rng;

/// One request in flight to a target: counted while alive.
pub struct InFlight(Rc<Cell<u32>>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.set(self.0.get().saturating_sub(1));
    }
}

impl UpstreamState {
    /// Counts a request to `target` in flight until the guard drops (least-request upstreams
    /// only: `None`, and no work, otherwise).
    #[inline]
    pub fn track(&self, target: usize) -> Option<InFlight> {
        if !matches!(self.balance, Balance::LeastRequest) {
            return None;
        }
        let c = &self.targets.get(target)?.active;
        c.set(c.get().saturating_add(1));
        Some(InFlight(c.clone()))
    }

    /// Requests in flight to `target` on this worker (least-request upstreams).
    pub fn in_flight(&self, target: usize) -> u32 {
        self.targets.get(target).map_or(0, |t| t.active.get())
    }

    /// The least-request pick over available targets (`tried` as in `pick`).
    pub(super) fn least_request(&self, now: Instant, tried: u64) -> Option<usize> {
        let n = (0..self.targets.len())
            .filter(|&i| self.available(i, now, tried))
            .count() as u64;
        if n == 0 {
            return None;
        }
        let first = rng::below(n);
        let mut second = rng::below(n.saturating_sub(1).max(1));
        if n > 1 && second >= first {
            second += 1;
        }
        let (mut a, mut b) = (None, None);
        let mut rank = 0u64;
        for i in 0..self.targets.len() {
            if !self.available(i, now, tried) {
                continue;
            }
            if rank == first {
                a = Some(i);
            }
            if rank == second {
                b = Some(i);
            }
            rank += 1;
        }
        let a = a?;
        match b.filter(|&b| b != a) {
            Some(b) if self.lighter(b, a) => Some(b),
            _ => Some(a),
        }
    }

    /// Whether `x` is strictly less loaded than `y`: in-flight over weight, then heavier.
    fn lighter(&self, x: usize, y: usize) -> bool {
        let (tx, ty) = (&self.targets[x], &self.targets[y]);
        let lx = u64::from(tx.active.get()) * ty.weight.unsigned_abs();
        let ly = u64::from(ty.active.get()) * tx.weight.unsigned_abs();
        lx < ly || (lx == ly && tx.weight > ty.weight)
    }
}

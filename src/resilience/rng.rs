//! A per-thread pseudo-random source for balancing decisions (two-choice picks, split and
//! mirror sampling, retry backoff, health-probe jitter): xorshift64* seeded once per thread from the OS. Not for secrets; cheap
//! (one thread-local load and store, no atomic).

use std::cell::Cell;

thread_local! {
    static STATE: Cell<u64> = Cell::new(seed());
}

fn seed() -> u64 {
    let mut b = [0u8; 8];
    if getrandom::fill(&mut b).is_err() {
        // No OS randomness: a per-thread address and the clock still spread the workers.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let local = 0u8;
        b = (t ^ (&local as *const u8 as u64)).to_le_bytes();
    }
    u64::from_le_bytes(b) | 1
}

/// The next pseudo-random number of this thread.
pub fn next() -> u64 {
    STATE.with(|s| {
        let mut x = s.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        s.set(x);
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    })
}

/// A pseudo-random number in [0, 1).
pub fn unit() -> f64 {
    (next() >> 11) as f64 / (1u64 << 53) as f64
}

/// A pseudo-random number in `0..n` (0 when `n` is 0).
pub fn below(n: u64) -> u64 {
    if n == 0 {
        return 0;
    }
    // Multiply-shift: unbiased enough for balancing and needs no division.
    ((u128::from(next()) * u128::from(n)) >> 64) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn below_stays_in_range_and_spreads() {
        let mut seen = [0u32; 10];
        for _ in 0..10_000 {
            let v = below(10);
            assert!(v < 10);
            seen[v as usize] += 1;
        }
        assert!(seen.iter().all(|&c| (800..1200).contains(&c)), "{seen:?}");
        assert_eq!(below(0), 0);
    }
}

//! The clock deadlines are computed from: `CLOCK_MONOTONIC_COARSE`, read from the vDSO
//! without touching the TSC, as an `Instant` (the kernel's tick, 1–4 ms, is its resolution).
//!
//! A proxied request sets about seven deadlines (keep-alive, header, grace, write, pool idle
//! stamps) and each precise `Instant::now()` is a TSC read of ~20 ns on a VM. Timeouts are
//! configured in milliseconds at the finest and monoio's timer wheel fires at 1 ms, so a
//! deadline that is off by one kernel tick changes nothing a client can notice. Latency
//! measurements (histograms, the access log's durations) keep the precise clock.

use std::cell::Cell;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A precise instant and the coarse clock's reading taken just before it.
static BASE: OnceLock<(Instant, Duration)> = OnceLock::new();

thread_local! {
    /// The last coarse reading on this thread and the instant made of it: the reading changes
    /// once per kernel tick, so most calls return the instant without any arithmetic.
    static LAST: Cell<(libc::time_t, libc::c_long, Option<Instant>)> =
        const { Cell::new((0, 0, None)) };
}

fn coarse_reading() -> libc::timespec {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer; CLOCK_MONOTONIC_COARSE exists on every Linux this
    // runs on (2.6.32+), so the call cannot fail and leaves `ts` set.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    ts
}

fn since_boot(ts: libc::timespec) -> Duration {
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Now, to within one kernel tick (either side): for computing deadlines only.
pub fn now() -> Instant {
    let ts = coarse_reading();
    LAST.with(|last| match last.get() {
        (s, ns, Some(at)) if s == ts.tv_sec && ns == ts.tv_nsec => at,
        _ => {
            let (base, base_coarse) =
                *BASE.get_or_init(|| (Instant::now(), since_boot(coarse_reading())));
            let at = base + since_boot(ts).saturating_sub(base_coarse);
            last.set((ts.tv_sec, ts.tv_nsec, Some(at)));
            at
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The coarse instant tracks the precise clock to within a tick (10 ms covers HZ=100).
    #[test]
    fn follows_the_precise_clock_within_a_tick() {
        let tick = Duration::from_millis(10);
        for _ in 0..50 {
            let (a, c, b) = (Instant::now(), now(), Instant::now());
            assert!(
                c + tick >= a && c <= b + tick,
                "{c:?} not near {a:?}..{b:?}"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        let first = now();
        std::thread::sleep(Duration::from_millis(30));
        let later = now();
        assert!(
            later >= first + Duration::from_millis(20),
            "{first:?} -> {later:?}"
        );
    }
}

//! Per worker: the keys whose quota Redis refused in the last second, answered 429 here
//! without another round trip. A client hammering a used-up quota costs Redis one call per key,
//! worker and second instead of one per request; an operator who raises the limit or clears the
//! counter is obeyed within that second. An entry never outlives its period.
//!
//! It also remembers when a call to Redis last failed on this worker: for a second after, the
//! worker's quotas do not call (each answers as its `on_redis_error` says at once), so a
//! stalled Redis costs one `timeout` per worker and second, not one per request, as with
//! global rate limits (`ratelimit::lease::DOWN_FOR`).

use std::cell::RefCell;

use super::{write_headers, QuotaSpec, Taken, Window};

/// How long a refusal is answered locally.
const HOLD_NS: u64 = 1_000_000_000;
/// Most keys remembered per worker (then the memory starts over).
const MAX_KEYS: usize = 4096;

struct Refusal {
    key: Box<[u8]>,
    until_ns: u64,
    window: Window,
}

thread_local! {
    /// Monotonic nanoseconds until which this worker does not call Redis for quotas.
    static DOWN_UNTIL: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    static REFUSED: RefCell<ahash::AHashMap<(usize, u64), Refusal>> = RefCell::new(ahash::AHashMap::new());
}

/// Whether a Redis call for a quota failed on this worker less than a second before `mono_ns`.
pub fn redis_down(mono_ns: u64) -> bool {
    DOWN_UNTIL.with(|d| mono_ns < d.get())
}

/// Records a failed Redis call at `mono_ns`.
pub fn mark_down(mono_ns: u64) {
    DOWN_UNTIL.with(|d| d.set(mono_ns.saturating_add(HOLD_NS)));
}

fn id(spec: &QuotaSpec, key: &[u8]) -> (usize, u64) {
    let h = ahash::RandomState::with_seeds(1, 2, 3, 4).hash_one(key);
    (spec as *const QuotaSpec as usize, h)
}

/// If this worker saw `key` refused less than a second ago in the current period, writes the
/// refusal's headers and returns true.
pub fn answer(
    spec: &QuotaSpec,
    key: &[u8],
    unix_now: i64,
    mono_ns: u64,
    out: &mut Vec<u8>,
) -> bool {
    REFUSED.with(|m| {
        let m = m.borrow();
        let Some(r) = m.get(&id(spec, key)) else {
            return false;
        };
        if *r.key != *key || mono_ns >= r.until_ns || unix_now >= r.window.reset_unix {
            return false;
        }
        let t = Taken {
            admitted: false,
            used: spec.limit,
        };
        write_headers(spec, t, &r.window, unix_now, out);
        true
    })
}

/// Remembers that Redis refused `key` in window `w`.
pub fn remember(spec: &QuotaSpec, key: &[u8], w: &Window, mono_ns: u64) {
    REFUSED.with(|m| {
        let mut m = m.borrow_mut();
        if m.len() >= MAX_KEYS {
            m.clear();
        }
        m.insert(
            id(spec, key),
            Refusal {
                key: key.into(),
                until_ns: mono_ns.saturating_add(HOLD_NS),
                window: w.clone(),
            },
        );
    })
}

/// Forgets `key` (Redis admitted it: the limit was raised or the counter cleared).
pub fn forget(spec: &QuotaSpec, key: &[u8]) {
    REFUSED.with(|m| {
        m.borrow_mut().remove(&id(spec, key));
    })
}

#[cfg(test)]
mod tests {
    use super::super::{period, Period};
    use super::*;

    #[test]
    fn a_refusal_is_answered_for_a_second_within_its_period() {
        let spec = QuotaSpec {
            policy: "p".into(),
            limit: 5,
            period: Period::Day,
            zone: period::zone("UTC").expect("utc"),
            zone_name: "UTC".into(),
            fail_open: true,
        };
        let now = 1_796_342_400;
        let w = period::window(Period::Day, &spec.zone, now).expect("window");
        let mut out = Vec::new();
        assert!(!answer(&spec, b"k", now, 10, &mut out));
        remember(&spec, b"k", &w, 10);
        assert!(answer(&spec, b"k", now, 10 + HOLD_NS - 1, &mut out));
        assert!(String::from_utf8_lossy(&out).contains("retry-after: 86400\r\n"));
        assert!(!answer(&spec, b"other", now, 11, &mut Vec::new()));
        assert!(!answer(&spec, b"k", now, 10 + HOLD_NS, &mut Vec::new()));
        assert!(!answer(&spec, b"k", w.reset_unix, 11, &mut Vec::new()));
        forget(&spec, b"k");
        assert!(!answer(&spec, b"k", now, 11, &mut Vec::new()));
    }
}

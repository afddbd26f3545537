//! Whether Redis is reachable, as every thread last saw it: one flag flipped by the calls
//! themselves (a success marks it up, a connect failure or timeout marks it down). Each flip
//! is counted; its log line is rate-limited to one per `LOG_EVERY` per direction, so a flapping
//! Redis cannot flood the log while the counters stay exact. Atomics only.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{SystemTime, UNIX_EPOCH};

use super::error::RedisError;

const LOG_EVERY_MS: u64 = 5_000;

/// Up/down state and counters for `/metrics`.
pub struct RedisHealth {
    up: AtomicBool,
    /// Transitions to down / to up.
    pub went_down: AtomicU64,
    pub went_up: AtomicU64,
    /// Calls that failed, by kind.
    pub timeouts: AtomicU64,
    pub unavailable: AtomicU64,
    pub server_errors: AtomicU64,
    /// `MOVED` / `ASK` redirects followed.
    pub redirects: AtomicU64,
    last_log_down: AtomicU64,
    last_log_up: AtomicU64,
    /// How long calls took, as a worker waited for them (`ringway_redis_call_duration_seconds`).
    pub call_time: CallTimes,
}

/// Upper bounds (µs) of the call-time histogram's buckets; the last bucket is +Inf.
pub const CALL_BUCKETS_US: [u64; 12] = [
    25, 50, 100, 200, 400, 800, 1_600, 3_200, 6_400, 12_800, 51_200, 204_800,
];

/// A fixed-bucket histogram of call times: one relaxed add per bucket hit, plus sum and count.
#[derive(Default)]
pub struct CallTimes {
    pub buckets: [AtomicU64; CALL_BUCKETS_US.len() + 1],
    pub sum_us: AtomicU64,
    pub count: AtomicU64,
}

impl CallTimes {
    pub fn record(&self, us: u64) {
        let i = CALL_BUCKETS_US
            .iter()
            .position(|&b| us <= b)
            .unwrap_or(CALL_BUCKETS_US.len());
        self.buckets[i].fetch_add(1, Relaxed);
        self.sum_us.fetch_add(us, Relaxed);
        self.count.fetch_add(1, Relaxed);
    }
}

impl Default for RedisHealth {
    fn default() -> Self {
        RedisHealth {
            // Optimistic until the first call says otherwise.
            up: AtomicBool::new(true),
            went_down: AtomicU64::new(0),
            went_up: AtomicU64::new(0),
            timeouts: AtomicU64::new(0),
            unavailable: AtomicU64::new(0),
            server_errors: AtomicU64::new(0),
            redirects: AtomicU64::new(0),
            last_log_down: AtomicU64::new(0),
            last_log_up: AtomicU64::new(0),
            call_time: CallTimes::default(),
        }
    }
}

impl RedisHealth {
    pub fn is_up(&self) -> bool {
        self.up.load(Relaxed)
    }

    /// Records a call's outcome (a relaxed load when nothing changes).
    pub fn record(&self, res: &Result<super::resp::Value, RedisError>, what: &str) {
        match res {
            Ok(_) => self.mark_up(what),
            Err(e) => self.failed(e, what),
        }
    }

    /// Records a failure; a timeout or a lost connection marks Redis down.
    pub fn failed(&self, e: &RedisError, what: &str) {
        match e {
            RedisError::Timeout => {
                self.timeouts.fetch_add(1, Relaxed);
                self.mark_down(what, e);
            }
            RedisError::Unavailable(_) => {
                self.unavailable.fetch_add(1, Relaxed);
                self.mark_down(what, e);
            }
            RedisError::Server(_) | RedisError::Protocol(_) => {
                self.server_errors.fetch_add(1, Relaxed);
            }
        }
    }

    pub fn mark_up(&self, what: &str) {
        if !self.up.load(Relaxed) && !self.up.swap(true, Relaxed) {
            self.went_up.fetch_add(1, Relaxed);
            if due(&self.last_log_up) {
                crate::log::info(&format!("redis {what}: reachable again"));
            }
        }
    }

    fn mark_down(&self, what: &str, e: &RedisError) {
        if self.up.load(Relaxed) && self.up.swap(false, Relaxed) {
            self.went_down.fetch_add(1, Relaxed);
            if due(&self.last_log_down) {
                crate::log::warn(&format!(
                    "redis {what}: {e}; shared limits follow their on_redis_error setting until it is back"
                ));
            }
        }
    }
}

/// True at most once per `LOG_EVERY_MS` for this stamp.
fn due(last: &AtomicU64) -> bool {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let prev = last.load(Relaxed);
    now.saturating_sub(prev) >= LOG_EVERY_MS
        && last.compare_exchange(prev, now, Relaxed, Relaxed).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transitions_are_counted_once_each() {
        let h = RedisHealth::default();
        assert!(h.is_up());
        for _ in 0..3 {
            h.failed(&RedisError::Timeout, "t");
        }
        assert!(!h.is_up());
        assert_eq!(h.went_down.load(Relaxed), 1);
        assert_eq!(h.timeouts.load(Relaxed), 3);
        h.failed(&RedisError::Server("ERR".into()), "t");
        assert!(!h.is_up(), "a server error says nothing about reachability");
        h.mark_up("t");
        h.mark_up("t");
        assert!(h.is_up());
        assert_eq!(h.went_up.load(Relaxed), 1);
    }
}

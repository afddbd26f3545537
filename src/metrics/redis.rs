//! Prometheus families for the Redis connection every instance shares state through
//! (`redis::RedisHealth`): whether it is reachable, transitions, and failed calls by kind.
//! Rendered only when the config has a `[redis]` table; read at scrape time, never on requests.

use std::fmt::Write;
use std::sync::atomic::Ordering::Relaxed;

use super::render::family;
use crate::redis::{RedisHealth, CALL_BUCKETS_US};

/// Appends the Redis families for `health` (nothing without `[redis]`).
pub fn render_redis(health: Option<&RedisHealth>, out: &mut String) {
    let Some(h) = health else { return };
    family(
        out,
        "ringway_redis_up",
        "1 while Redis answers, 0 after a call timed out or could not connect.",
        "gauge",
    );
    let _ = writeln!(out, "ringway_redis_up {}", u8::from(h.is_up()));
    family(
        out,
        "ringway_redis_transitions_total",
        "Times Redis became unreachable (to=down) or reachable again (to=up).",
        "counter",
    );
    let _ = writeln!(
        out,
        "ringway_redis_transitions_total{{to=\"down\"}} {}",
        h.went_down.load(Relaxed)
    );
    let _ = writeln!(
        out,
        "ringway_redis_transitions_total{{to=\"up\"}} {}",
        h.went_up.load(Relaxed)
    );
    family(
        out,
        "ringway_redis_errors_total",
        "Redis calls that failed, by kind: timeout, unavailable (no connection) or server (an error reply).",
        "counter",
    );
    for (kind, v) in [
        ("timeout", &h.timeouts),
        ("unavailable", &h.unavailable),
        ("server", &h.server_errors),
    ] {
        let _ = writeln!(
            out,
            "ringway_redis_errors_total{{kind=\"{kind}\"}} {}",
            v.load(Relaxed)
        );
    }
    family(
        out,
        "ringway_redis_redirects_total",
        "Redis Cluster MOVED and ASK redirects followed.",
        "counter",
    );
    let _ = writeln!(
        out,
        "ringway_redis_redirects_total {}",
        h.redirects.load(Relaxed)
    );
    call_times(h, out);
}

/// How long workers waited for Redis calls, as a Prometheus histogram (seconds).
fn call_times(h: &RedisHealth, out: &mut String) {
    let name = "ringway_redis_call_duration_seconds";
    family(
        out,
        name,
        "Time from sending a Redis command (or script) to its reply, redirects included, as the caller waited for it.",
        "histogram",
    );
    let t = &h.call_time;
    let mut cumulative = 0;
    for (i, b) in t.buckets.iter().enumerate() {
        cumulative += b.load(Relaxed);
        match CALL_BUCKETS_US.get(i) {
            Some(us) => {
                let le = *us as f64 / 1e6;
                let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
            }
            None => {
                let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
            }
        }
    }
    let sum = t.sum_us.load(Relaxed) as f64 / 1e6;
    let _ = writeln!(out, "{name}_sum {sum}");
    let _ = writeln!(out, "{name}_count {}", t.count.load(Relaxed));
}

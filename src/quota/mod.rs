//! Calendar quotas: at most `limit` requests per key per day or month in a time zone, counted
//! in Redis so every instance shares one count and a restart or deploy resets nothing.
//!
//! Each admitted request is one atomic Lua call (`take.lua`: GET, compare, INCR, EXPIREAT)
//! through the pipeline's await seam; a refused request is not counted, so Redis's counter is
//! exactly the number of admitted requests and never exceeds the limit (no lease, no
//! overshoot, no early refusal). The Redis key embeds the period's first local date
//! (`{prefix}:quota:{POLICY.KEY}:2026-12-04`), so the count starts afresh at the calendar
//! boundary in the configured zone, not on a rolling window; the key expires an hour after
//! the period ends. The period is chosen by the instance's own clock: instances whose clocks
//! differ by d seconds disagree about the boundary for d seconds (NTP keeps d in
//! milliseconds).
//!
//! A worker answers a key Redis refused less than a second ago itself (`recent`), so a client
//! hammering a used-up quota does not cost a round trip per request.
//!
//! Client-derived key parts (consumer, API key id, IP, header value) are hashed
//! (`redis::key_part`), never put raw in a key.

pub mod period;
pub mod recent;
pub mod store;

use jiff::tz::TimeZone;

pub use period::{Period, Window};

/// A compiled quota (the key it counts by is the pipeline's `LimitKey`, kept beside it).
pub struct QuotaSpec {
    /// The policy's name (hashed into the Redis key: two policies never share a count).
    pub policy: String,
    pub limit: u64,
    pub period: Period,
    pub zone: TimeZone,
    /// As written (`Europe/Berlin`), for `check` and error text.
    pub zone_name: String,
    /// Admit (true) or refuse with 503 (false) when Redis cannot answer.
    pub fail_open: bool,
}

/// What Redis said about one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Taken {
    pub admitted: bool,
    /// Requests admitted in this period, this one included.
    pub used: u64,
}

/// Seconds after a period's end before its counter expires (a late instance whose clock is
/// behind still finds the old count).
pub const EXPIRE_GRACE_SECS: i64 = 3600;

/// The quota headers for every response of a quota policy: `X-Quota-Limit`,
/// `X-Quota-Remaining`, `X-Quota-Reset` (RFC 3339, the zone's offset), and on a refusal
/// `Retry-After` (seconds until the reset, at least 1).
pub fn write_headers(spec: &QuotaSpec, t: Taken, w: &Window, now: i64, out: &mut Vec<u8>) {
    use std::io::Write;
    let remaining = spec.limit.saturating_sub(t.used);
    let _ = write!(
        out,
        "x-quota-limit: {}\r\nx-quota-remaining: {remaining}\r\nx-quota-reset: {}\r\n",
        spec.limit, w.reset_text
    );
    if !t.admitted {
        let _ = write!(out, "retry-after: {}\r\n", (w.reset_unix - now).max(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_count_down_and_a_refusal_says_when_to_retry() {
        let spec = QuotaSpec {
            policy: "p".into(),
            limit: 10,
            period: Period::Day,
            zone: period::zone("UTC").expect("utc"),
            zone_name: "UTC".into(),
            fail_open: true,
        };
        let now = 1_796_342_400; // 2026-12-04T00:00:00Z
        let w = period::window(Period::Day, &spec.zone, now + 100).expect("window");
        let mut out = Vec::new();
        let ok = Taken {
            admitted: true,
            used: 3,
        };
        write_headers(&spec, ok, &w, now + 100, &mut out);
        assert_eq!(
            String::from_utf8_lossy(&out),
            "x-quota-limit: 10\r\nx-quota-remaining: 7\r\n\
             x-quota-reset: 2026-12-05T00:00:00+00:00\r\n"
        );
        out.clear();
        let refused = Taken {
            admitted: false,
            used: 10,
        };
        write_headers(&spec, refused, &w, now + 100, &mut out);
        let text = String::from_utf8_lossy(&out);
        assert!(text.contains("x-quota-remaining: 0\r\n"), "{text}");
        assert!(text.ends_with("retry-after: 86300\r\n"), "{text}");
    }
}

//! Rate-limit response headers: `RateLimit-Policy`, `RateLimit` and `Retry-After`.
//!
//! Owner: `ratelimit`. Syntax per draft-ietf-httpapi-ratelimit-headers-11 (Structured Fields):
//! - `RateLimit-Policy: "default";q=100;w=60` — one List member per limit: the name is an
//!   sf-string, `q` = `requests`, `w` = `period` in whole seconds (rounded up, ≥ 1: the draft has
//!   no sub-second windows); a non-zero burst adds the vendor parameter `ringway-burst=B`.
//! - `RateLimit: "default";r=REMAINING;t=RESET` — the most restrictive limit only; `t` = seconds
//!   until its cell is fully idle, rounded up.
//! - `Retry-After: N` on a denial — whole seconds rounded up, at least 1: never earlier than the
//!   real wait.
//!
//! Integers are clamped to the sf-integer maximum (15 digits). Lines end in CRLF.

use std::time::Duration;

use super::multi::MultiDecision;
use super::spec::LimitSpec;

/// Largest sf-integer.
const SF_INT_MAX: u64 = 999_999_999_999_999;

/// `Retry-After` seconds for a wait: rounded up, at least 1.
pub fn retry_after_secs(wait: Duration) -> u64 {
    ceil_secs(wait).max(1)
}

fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// Appends the rate-limit headers for `d`, naming the policies `"default"` when there is one
/// and `"p0"`, `"p1"`, … (indexes into `specs`, the same order as `check_all`'s limits)
/// otherwise. Writes nothing for an empty `specs`.
pub fn write_headers(d: &MultiDecision, specs: &[LimitSpec], out: &mut Vec<u8>) {
    let n = specs.len();
    render(
        d,
        n,
        |i| specs[i],
        |i, out| {
            if n == 1 {
                out.extend_from_slice(b"\"default\"");
            } else {
                out.extend_from_slice(b"\"p");
                push_u64(out, i as u64);
                out.push(b'"');
            }
        },
        out,
    );
}

/// Like [`write_headers`] with caller-chosen policy names (escaped as sf-strings; characters
/// outside printable ASCII are dropped).
pub fn write_headers_named(d: &MultiDecision, policies: &[(&str, LimitSpec)], out: &mut Vec<u8>) {
    render(
        d,
        policies.len(),
        |i| policies[i].1,
        |i, out| push_sf_string(out, policies[i].0),
        out,
    );
}

fn render(
    d: &MultiDecision,
    n: usize,
    spec: impl Fn(usize) -> LimitSpec,
    name: impl Fn(usize, &mut Vec<u8>),
    out: &mut Vec<u8>,
) {
    if n == 0 {
        return;
    }
    out.extend_from_slice(b"RateLimit-Policy: ");
    for i in 0..n {
        if i > 0 {
            out.extend_from_slice(b", ");
        }
        let s = spec(i);
        name(i, out);
        out.extend_from_slice(b";q=");
        push_u64(out, s.requests);
        out.extend_from_slice(b";w=");
        push_u64(out, ceil_secs(s.period).max(1));
        if s.burst > 0 {
            out.extend_from_slice(b";ringway-burst=");
            push_u64(out, s.burst);
        }
    }
    out.extend_from_slice(b"\r\n");
    if d.policy_index < n {
        out.extend_from_slice(b"RateLimit: ");
        name(d.policy_index, out);
        out.extend_from_slice(b";r=");
        push_u64(out, d.remaining);
        out.extend_from_slice(b";t=");
        push_u64(out, ceil_secs(d.reset));
        out.extend_from_slice(b"\r\n");
    }
    if !d.allowed {
        out.extend_from_slice(b"Retry-After: ");
        push_u64(out, retry_after_secs(d.retry_after.unwrap_or_default()));
        out.extend_from_slice(b"\r\n");
    }
}

fn push_u64(out: &mut Vec<u8>, n: u64) {
    crate::http1::push_decimal(out, n.min(SF_INT_MAX));
}

fn push_sf_string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    for &b in s.as_bytes() {
        match b {
            b'"' | b'\\' => out.extend_from_slice(&[b'\\', b]),
            0x20..=0x7e => out.push(b),
            _ => {}
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::super::{check_all, Limiter};
    use super::*;

    fn text(d: &MultiDecision, specs: &[LimitSpec]) -> String {
        let mut out = Vec::new();
        write_headers(d, specs, &mut out);
        String::from_utf8(out).unwrap_or_default()
    }

    const PER_MIN: LimitSpec = LimitSpec {
        requests: 100,
        period: Duration::from_secs(60),
        burst: 0,
    };

    #[test]
    fn single_policy_allow_and_deny() {
        let lim = Limiter::new(PER_MIN, 16);
        let d = check_all(&[(&lim, b"k")], 0);
        assert_eq!(
            text(&d, &[PER_MIN]),
            "RateLimit-Policy: \"default\";q=100;w=60\r\nRateLimit: \"default\";r=99;t=1\r\n"
        );
        for _ in 0..99 {
            assert!(lim.check(b"k", 0).is_allowed());
        }
        let d = check_all(&[(&lim, b"k")], 0);
        assert_eq!(
            text(&d, &[PER_MIN]),
            "RateLimit-Policy: \"default\";q=100;w=60\r\nRateLimit: \"default\";r=0;t=60\r\n\
             Retry-After: 1\r\n"
        );
    }

    #[test]
    fn several_policies_names_burst_and_escaping() {
        let daily = LimitSpec {
            requests: 10_000,
            period: Duration::from_secs(86_400),
            burst: 0,
        };
        let burst = LimitSpec {
            requests: 10,
            period: Duration::from_millis(1_500),
            burst: 5,
        };
        let d = MultiDecision {
            allowed: true,
            limit: 10,
            remaining: 14,
            reset: Duration::from_millis(150),
            retry_after: None,
            policy_index: 0,
        };
        assert_eq!(
            text(&d, &[burst, daily]),
            "RateLimit-Policy: \"p0\";q=10;w=2;ringway-burst=5, \"p1\";q=10000;w=86400\r\n\
             RateLimit: \"p0\";r=14;t=1\r\n"
        );
        let mut out = Vec::new();
        write_headers_named(&d, &[("per \"user\"\\\n", burst)], &mut out);
        assert!(out.starts_with(b"RateLimit-Policy: \"per \\\"user\\\"\\\\\";q=10"));
        let mut none = Vec::new();
        write_headers(&d, &[], &mut none);
        assert!(none.is_empty());
    }

    #[test]
    fn retry_after_rounds_up_and_is_at_least_one() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_nanos(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_secs(1)), 1);
        assert_eq!(retry_after_secs(Duration::new(1, 1)), 2);
        assert_eq!(retry_after_secs(Duration::from_millis(59_999)), 60);
    }

    /// xorshift64*: deterministic, dependency-free randomness for property loops.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    #[test]
    fn retry_after_is_never_earlier_than_the_real_wait() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for case in 0..2_000 {
            let spec = LimitSpec {
                requests: 1 + rng.below(1_000),
                period: Duration::from_nanos(1 + rng.below(120_000_000_000)),
                burst: rng.below(10),
            };
            let lim = Limiter::new(spec, 16);
            let mut now = rng.below(1 << 40);
            // Drain with random gaps until denied.
            let d = loop {
                let d = check_all(&[(&lim, b"key")], now);
                if !d.allowed {
                    break d;
                }
                now += rng.below(spec.period.as_nanos() as u64 / spec.requests / 4 + 1);
            };
            let wait = d.retry_after.expect("deny carries retry_after");
            let secs = retry_after_secs(wait);
            assert!(secs >= 1, "case {case}");
            assert!(
                Duration::from_secs(secs) >= wait,
                "case {case}: {secs}s < {wait:?}"
            );
            assert!(
                Duration::from_secs(secs - 1) < wait,
                "case {case}: not rounded up tightly"
            );
            let mut out = Vec::new();
            write_headers(&d, &[spec], &mut out);
            let header = format!("Retry-After: {secs}\r\n");
            assert!(out.ends_with(header.as_bytes()), "case {case}");
            // retry_after is exact: one nanosecond earlier is still denied, then admitted.
            let at = now + wait.as_nanos() as u64;
            assert!(!lim.peek(b"key", at - 1).is_allowed(), "case {case}");
            assert!(lim.check(b"key", at).is_allowed(), "case {case}");
        }
    }
}

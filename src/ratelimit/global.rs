//! Global rate limits (`scope = "global"`): one GCRA per limit and key, shared by every
//! instance through Redis (`gcra.lua`, run atomically by `EVALSHA`, timed by Redis `TIME`).
//!
//! Owner: the compiled [`GlobalLimit`] (built by `policy::rate_limit::compile`) and the
//! per-worker runtime state (a thread-local [`LeaseTable`] and the worker's Redis client).
//! Two modes:
//! - `exact`: every request runs the script once ("take 1"): admitted exactly within the local
//!   GCRA bound `C + floor(t / T)`, at one Redis round trip per request.
//! - `leased` (default): a worker takes up to `lease` tokens at once ("take up to n") and
//!   admits from them without I/O; a refill starts in the background at half a lease. Bound
//!   (proof in `lease.rs`): `admitted ≤ C + floor(t / T) + K · L`, `K` = instances × workers,
//!   `L` = lease.
//!
//! Several limits of one policy are one script call on keys sharing one hash tag: all admit
//! (and are all charged) or none is charged, like the local `check_all`.
//!
//! Keys: `{prefix}:gl:{<policy>:<key_part(key)>}:<limit>`: the client-derived part is always
//! the SHA-256 `key_part`, never the raw header/consumer bytes; the limit's spec is in the key,
//! so a changed limit starts fresh (as a changed local limiter does).
//!
//! Redis failures (`on_redis_error`): `fail_open` (default) admits without `RateLimit`
//! headers; `fail_closed` answers 503 with `Retry-After: 1`. After a failed call the worker
//! stops asking Redis for a second (`lease::DOWN_FOR`), then the next request probes: an outage
//! costs at most one timeout per worker per second, and recovery needs nothing but Redis back.
//! Tokens already leased keep being spent during an outage (they were granted).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use super::spec::LimitSpec;

/// Largest default lease (tokens per fetch).
const MAX_DEFAULT_LEASE: u64 = 1_000;
/// Most leased keys one worker keeps (bounded memory; eviction only makes limits stricter).
pub(crate) const MAX_LEASED_KEYS: usize = 65_536;

/// How a global limit is decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GlobalMode {
    /// One Redis call per request.
    Exact,
    /// Tokens leased by the worker in batches of `lease`.
    Leased { lease: u64 },
}

/// What a request gets when Redis cannot answer in time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnRedisError {
    /// Admitted, without `RateLimit` headers (availability over enforcement).
    FailOpen,
    /// 503 with `Retry-After: 1`.
    FailClosed,
}

/// A compiled global limit (one per rate-limit policy with `scope = "global"`).
#[derive(Debug)]
pub struct GlobalLimit {
    pub mode: GlobalMode,
    pub on_error: OnRedisError,
    /// `{prefix}:gl:{<policy>:` — the key up to the client-derived part.
    head: String,
    /// Per limit: `}:<kind>:<i>:<requests>/<period ms>+<burst>` — the key after it.
    tails: Vec<String>,
    /// The script's per-limit arguments, `T_i` and `L_i` in microseconds, as decimal text.
    args: Arc<[Box<[u8]>]>,
    /// Seeds this policy's lease-table fingerprints.
    uid: u64,
}

impl GlobalLimit {
    /// Builds policy `policy`'s global limit: `kind` is its `key` setting as written, `prefix`
    /// the `[redis]` prefix.
    pub fn new(
        policy: &str,
        kind: &str,
        prefix: &str,
        specs: &[LimitSpec],
        mode: GlobalMode,
        on_error: OnRedisError,
    ) -> GlobalLimit {
        // Policy names go into the hash tag: anything but plain characters is hashed, so no
        // name can close the tag early or collide with another after cleaning.
        let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
        let name = if !policy.is_empty() && policy.len() <= 64 && policy.chars().all(plain) {
            policy.to_owned()
        } else {
            key_part(policy.as_bytes())
        };
        let head = format!("{prefix}:gl:{{{name}:");
        let tails = specs
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let ms = s.period.as_millis();
                format!("}}:{kind}:{i}:{}/{ms}+{}", s.requests, s.burst)
            })
            .collect();
        let args = specs
            .iter()
            .flat_map(|s| {
                let (t, l) = micros(*s);
                [t, l]
            })
            .map(|n| n.to_string().into_bytes().into_boxed_slice())
            .collect();
        GlobalLimit {
            mode,
            on_error,
            uid: fingerprint(0, format!("{head}{tails:?}").as_bytes()),
            head,
            tails,
            args,
        }
    }

    /// Default lease for a policy whose smallest limit admits `capacity` at once: 1 % of it
    /// (so `K · L` is `K` % of `C`), at least 1, at most 1 000.
    pub fn default_lease(capacity: u64) -> u64 {
        (capacity / 100).clamp(1, MAX_DEFAULT_LEASE)
    }

    /// The Redis keys of `key`'s cells, one per limit, all with one hash tag.
    pub(crate) fn redis_keys(&self, key: &[u8]) -> Vec<String> {
        let part = key_part(key);
        self.tails
            .iter()
            .map(|t| format!("{}{part}{t}", self.head))
            .collect()
    }

    /// The lease-table fingerprint of `key` under this policy.
    pub(crate) fn fingerprint(&self, key: &[u8]) -> u64 {
        fingerprint(self.uid, key)
    }
}

/// `(T, L)` of a spec in whole microseconds: `T = ceil(period / requests)` (at least 1 µs, so
/// never faster than the spec), `L = C · T` (at most 2^50 µs, so the script's doubles stay
/// exact).
pub(crate) fn micros(s: LimitSpec) -> (u64, u64) {
    let period = s.period.as_nanos().div_ceil(1_000);
    let t = period.div_ceil(u128::from(s.requests.max(1))).max(1);
    let c = u128::from(s.requests.saturating_add(s.burst).max(1));
    let t = u64::try_from(t).unwrap_or(u64::MAX).min(1 << 50);
    let l = u64::try_from(c * u128::from(t))
        .unwrap_or(u64::MAX)
        .min(1 << 50)
        .max(t);
    (t, l)
}

/// 32 hex characters of SHA-256 (TODO: `redis::key_part` once it lands).
fn key_part(bytes: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, bytes);
    d.as_ref()[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// Keyed 64-bit hash with a per-process random seed (not steerable by clients).
fn fingerprint(seed: u64, key: &[u8]) -> u64 {
    static STATE: OnceLock<ahash::RandomState> = OnceLock::new();
    let state = STATE.get_or_init(ahash::RandomState::new);
    state.hash_one((seed, key))
}

/// Microseconds from Redis to a `Duration`-compatible nanosecond count.
pub(crate) fn us_to_ns(us: i64) -> u64 {
    u64::try_from(us).unwrap_or(0).saturating_mul(1_000)
}

/// Nanoseconds to a `Duration`.
pub(crate) fn dur(ns: u64) -> Duration {
    Duration::from_nanos(ns)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(requests: u64, period: Duration, burst: u64) -> LimitSpec {
        LimitSpec {
            requests,
            period,
            burst,
        }
    }

    #[test]
    fn script_arguments_are_whole_microseconds_never_faster_than_the_spec() {
        assert_eq!(
            micros(spec(1_000, Duration::from_secs(60), 0)),
            (60_000, 60_000_000)
        );
        assert_eq!(
            micros(spec(3, Duration::from_secs(1), 2)),
            (333_334, 1_666_670)
        );
        // Faster than 1 per µs is clamped to 1 per µs.
        assert_eq!(
            micros(spec(10_000_000, Duration::from_secs(1), 0)),
            (1, 10_000_000)
        );
        let (t, l) = micros(spec(u64::MAX, Duration::MAX, u64::MAX));
        assert!(t >= 1 && l <= 1 << 50 && l >= t);
    }

    #[test]
    fn keys_share_one_hash_tag_and_never_carry_the_raw_key() {
        let specs = [
            spec(10, Duration::from_secs(1), 0),
            spec(1_000, Duration::from_secs(3_600), 5),
        ];
        let g = GlobalLimit::new(
            "api",
            "header:x-user",
            "t1",
            &specs,
            GlobalMode::Exact,
            OnRedisError::FailOpen,
        );
        let hostile = b"}{evil\r\n\x00\xff";
        let keys = g.redis_keys(hostile);
        assert_eq!(keys.len(), 2);
        let tag = |k: &str| {
            let open = k.find('{').unwrap_or(0);
            let close = k[open..].find('}').map(|c| open + c).unwrap_or(0);
            k[open..=close].to_owned()
        };
        assert_eq!(tag(&keys[0]), tag(&keys[1]));
        assert!(keys[0].starts_with("t1:gl:{api:"), "{}", keys[0]);
        assert!(keys[1].ends_with("}:header:x-user:1:1000/3600000+5"));
        for k in &keys {
            assert!(k.bytes().all(|b| b.is_ascii_graphic()), "{k}");
            assert!(!k.contains("evil"));
        }
        // A policy name that could break the tag is hashed.
        let odd = GlobalLimit::new(
            "a}b",
            "ip",
            "t1",
            &specs,
            GlobalMode::Exact,
            OnRedisError::FailOpen,
        );
        let k = &odd.redis_keys(b"x")[0];
        assert_eq!(k.matches('}').count(), 1, "{k}");
        assert_ne!(g.fingerprint(b"x"), odd.fingerprint(b"x"));
    }

    #[test]
    fn default_lease_is_one_percent_clamped() {
        assert_eq!(GlobalLimit::default_lease(1_000), 10);
        assert_eq!(GlobalLimit::default_lease(5), 1);
        assert_eq!(GlobalLimit::default_lease(10_000_000), 1_000);
    }
}

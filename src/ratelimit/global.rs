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
//! Redis failures (`on_redis_error`): `fail_open` (default) falls back to the policy's local
//! limiter (the same limits, per instance: the fleet admits at most N × the limit meanwhile);
//! `fail_closed` answers 503 with `Retry-After: 1`. After a failed call the worker
//! stops asking Redis for a second (`lease::DOWN_FOR`), then the next request probes: an outage
//! costs at most one timeout per worker per second, and recovery needs nothing but Redis back.
//! Tokens already leased keep being spent during an outage (they were granted).

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use super::clock::now_ns;
use super::gcra::ns;
use super::headers::write_headers;
use super::lease::{Grant, LeaseTable, Step};
use super::multi::MultiDecision;
use super::spec::LimitSpec;
use crate::redis::{key_part, Client, RedisError, RedisShared, Script, Value};

/// The GCRA "take up to n" script (see the file's header).
static GCRA: Script = Script::new(include_str!("gcra.lua"));
/// Rounds of "wait for a fetch, then look again" one request makes before giving up (429 with
/// `Retry-After: 1`): only reached when other requests on the worker keep taking every token.
const MAX_ROUNDS: usize = 8;

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
    /// The same limits, enforced by each instance on its own (availability first, and the
    /// fleet still admits at most instances × the limit).
    FailOpen,
    /// 503 with `Retry-After: 1`.
    FailClosed,
}

/// A compiled global limit (one per rate-limit policy with `scope = "global"`).
pub struct GlobalLimit {
    pub mode: GlobalMode,
    pub on_error: OnRedisError,
    /// The generation's `[redis]`: background refills only use a client made for it.
    redis: Arc<RedisShared>,
    /// `{prefix}:gl:{<policy>:` — the key up to the client-derived part.
    head: String,
    /// Per limit: `}:<kind>:<i>:<requests>/<period ms>+<burst>` — the key after it.
    tails: Vec<String>,
    /// The script's per-limit arguments, `T_i` and `L_i` in microseconds, as decimal text.
    args: Arc<[Box<[u8]>]>,
    /// Seeds this policy's lease-table fingerprints.
    uid: u64,
    /// Requests decided by `on_redis_error` (Redis failed or this worker is pausing after a
    /// failure); only touched then, never on a healthy request.
    unavailable: AtomicU64,
}

impl std::fmt::Debug for GlobalLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GlobalLimit")
            .field("mode", &self.mode)
            .field("on_error", &self.on_error)
            .field("head", &self.head)
            .finish()
    }
}

impl GlobalLimit {
    /// Builds policy `policy`'s global limit: `kind` is its `key` setting as written, `redis`
    /// the generation's `[redis]` (its prefix starts every key).
    pub fn new(
        policy: &str,
        kind: &str,
        redis: &Arc<RedisShared>,
        specs: &[LimitSpec],
        mode: GlobalMode,
        on_error: OnRedisError,
    ) -> GlobalLimit {
        let prefix = &redis.settings.prefix;
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
            redis: Arc::clone(redis),
            unavailable: AtomicU64::new(0),
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

    /// Requests this policy decided by `on_redis_error` (for metrics).
    pub fn redis_unavailable(&self) -> u64 {
        self.unavailable.load(Ordering::Relaxed)
    }

    /// The lease-table fingerprint of `key` under this policy.
    pub(crate) fn fingerprint(&self, key: &[u8]) -> u64 {
        fingerprint(self.uid, key)
    }
}

/// A global limit's answer for one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Admitted by Redis or a lease (headers written).
    Admit,
    /// Redis could not answer and the policy is `fail_open`: decide with this instance's own
    /// limiter for the same limits (nothing written yet).
    Local,
    /// 429: the limit is exhausted (headers written).
    Limited,
    /// 503: Redis could not answer and the policy is `fail_closed` (`Retry-After` written).
    Unavailable,
}

type Keys = Rc<[String]>;

thread_local! {
    /// This worker's leases (every leased policy; keys are fingerprints seeded per policy).
    static LEASES: RefCell<LeaseTable<Keys>> = RefCell::new(LeaseTable::new(MAX_LEASED_KEYS));
    /// The worker's Redis client, as last handed to [`settle`] (background refills use it).
    static CLIENT: RefCell<Option<Client>> = const { RefCell::new(None) };
}

/// The request-path part: decides without awaiting when it can (`leased` mode with tokens
/// held or a cached denial; any mode while this worker backs off from a Redis failure).
/// `None`: Redis must be asked, through [`settle`]. Headers go to `out`.
pub fn try_local(
    g: &GlobalLimit,
    specs: &[LimitSpec],
    key: &[u8],
    now: u64,
    out: &mut Vec<u8>,
) -> Option<Verdict> {
    let fp = g.fingerprint(key);
    let GlobalMode::Leased { lease } = g.mode else {
        let (denied, down) = LEASES.with(|t| {
            let t = t.borrow();
            (t.cached_denial(fp, now), t.redis_down(now))
        });
        return match denied {
            Some(d) => Some(leased_verdict(g, specs, fp, d, out)),
            None => down.then(|| failed(g, out)),
        };
    };
    let step = LEASES.with(|t| {
        t.borrow_mut()
            .step(fp, now, lease, || g.redis_keys(key).into())
    });
    match step {
        Step::Fetch(n) => {
            // Started here if this worker has a client for this generation's [redis]; else
            // `settle` (which gets the current one) starts it.
            spawn_fetch(g, fp, n);
            None
        }
        Step::Wait => None,
        other => Some(leased_verdict(g, specs, fp, other, out)),
    }
}

/// The awaiting part, for a request [`try_local`] could not decide: one script call in
/// `exact` mode; in `leased` mode, waits for the key's fetch (starting one if none is in
/// flight). `client` is the worker's Redis client (`None`: no `[redis]`, treated as an error).
pub async fn settle(
    client: Option<&Client>,
    g: &GlobalLimit,
    specs: &[LimitSpec],
    key: &[u8],
    out: &mut Vec<u8>,
) -> Verdict {
    let Some(client) = client else {
        return failed(g, out);
    };
    // The newest generation's client, for background refills (a reload may bring a new one).
    CLIENT.with(|c| *c.borrow_mut() = Some(client.clone()));
    let fp = g.fingerprint(key);
    let GlobalMode::Leased { lease } = g.mode else {
        let keys = g.redis_keys(key);
        return match take(client, &keys, &g.args, 1).await {
            Ok(grant) => {
                if grant.granted == 0 {
                    // Until the retry time every request is denied: answered locally.
                    let at = now_ns();
                    LEASES.with(|t| t.borrow_mut().record_denial(fp, at, &grant, || keys.into()));
                }
                exact_verdict(&grant, specs, out)
            }
            Err(_) => {
                LEASES.with(|t| t.borrow_mut().mark_down(now_ns()));
                failed(g, out)
            }
        };
    };
    for _ in 0..MAX_ROUNDS {
        let now = now_ns();
        let step = LEASES.with(|t| {
            t.borrow_mut()
                .step(fp, now, lease, || g.redis_keys(key).into())
        });
        match step {
            Step::Fetch(n) => spawn_fetch(g, fp, n),
            Step::Wait => {}
            other => return leased_verdict(g, specs, fp, other, out),
        }
        if let Some(seen) = LEASES.with(|t| t.borrow().epoch(fp)) {
            WaitFetch { fp, seen }.await;
        }
    }
    let d = MultiDecision {
        allowed: false,
        limit: specs.first().map_or(0, |s| s.requests),
        remaining: 0,
        reset: Duration::ZERO,
        retry_after: Some(Duration::from_secs(1)),
        policy_index: 0,
    };
    write_headers(&d, specs, out);
    Verdict::Limited
}

/// Turns a lease-table step into the answer (and starts a due refill).
fn leased_verdict(
    g: &GlobalLimit,
    specs: &[LimitSpec],
    fp: u64,
    step: Step,
    out: &mut Vec<u8>,
) -> Verdict {
    let report = |allowed, remaining, reset, retry: Option<u64>, index: usize| MultiDecision {
        allowed,
        limit: specs.get(index).map_or(0, |s| s.requests),
        remaining,
        reset: ns(reset),
        retry_after: retry.map(ns),
        policy_index: index,
    };
    match step {
        Step::Admit {
            remaining,
            reset,
            index,
            refill,
        } => {
            if let Some(n) = refill {
                spawn_fetch(g, fp, n);
            }
            write_headers(&report(true, remaining, reset, None, index), specs, out);
            Verdict::Admit
        }
        Step::Deny {
            retry_after,
            reset,
            index,
        } => {
            let d = report(false, 0, reset, Some(retry_after), index);
            write_headers(&d, specs, out);
            Verdict::Limited
        }
        Step::Unavailable | Step::Fetch(_) | Step::Wait => failed(g, out),
    }
}

/// Answer and headers of an `exact` script call.
fn exact_verdict(grant: &Grant, specs: &[LimitSpec], out: &mut Vec<u8>) -> Verdict {
    let allowed = grant.granted > 0;
    let d = MultiDecision {
        allowed,
        limit: specs.get(grant.index).map_or(0, |s| s.requests),
        remaining: grant.remaining,
        reset: ns(grant.reset),
        retry_after: (!allowed).then(|| ns(grant.retry)),
        policy_index: grant.index,
    };
    write_headers(&d, specs, out);
    if allowed {
        Verdict::Admit
    } else {
        Verdict::Limited
    }
}

/// `on_redis_error`: this instance's own limiter decides, or 503 with `Retry-After: 1`.
fn failed(g: &GlobalLimit, out: &mut Vec<u8>) -> Verdict {
    g.unavailable.fetch_add(1, Ordering::Relaxed);
    match g.on_error {
        OnRedisError::FailOpen => Verdict::Local,
        OnRedisError::FailClosed => {
            out.extend_from_slice(b"Retry-After: 1\r\n");
            Verdict::Unavailable
        }
    }
}

/// Starts the fetch of `n` tokens for `fp` (already marked in flight) as a task on this
/// worker; it lands in the lease table whatever happens to the request that started it.
/// Without a client for `g`'s `[redis]` (none yet, or one from before a reload) the mark is
/// undone and the next request goes through [`settle`].
fn spawn_fetch(g: &GlobalLimit, fp: u64, n: u64) {
    let client = CLIENT.with(|c| {
        let c = c.borrow();
        c.as_ref()
            .filter(|c| Arc::ptr_eq(c.shared(), &g.redis))
            .cloned()
    });
    let keys = LEASES.with(|t| t.borrow().data(fp));
    let (Some(client), Some(keys)) = (client, keys) else {
        LEASES.with(|t| t.borrow_mut().cancel(fp));
        return;
    };
    let args = Arc::clone(&g.args);
    monoio::spawn(async move {
        let got = take(&client, &keys, &args, n).await.ok();
        LEASES.with(|t| t.borrow_mut().finish(fp, now_ns(), got));
    });
}

/// Runs the script: take up to `want` tokens from every limit's cell in `keys`.
async fn take(
    client: &Client,
    keys: &[String],
    args: &[Box<[u8]>],
    want: u64,
) -> Result<Grant, RedisError> {
    let want = want.to_string();
    let keys: Vec<&[u8]> = keys.iter().map(|k| k.as_bytes()).collect();
    let mut argv: Vec<&[u8]> = Vec::with_capacity(args.len() + 1);
    argv.push(want.as_bytes());
    argv.extend(args.iter().map(|a| &a[..]));
    let reply = client.eval(&GCRA, &keys, &argv).await?;
    parse_grant(reply).ok_or_else(|| RedisError::Protocol("unexpected gcra.lua reply".into()))
}

/// `{granted, remaining, reset_us, retry_us, index}` from the script.
fn parse_grant(v: Value) -> Option<Grant> {
    let a = v.into_array()?;
    let n = |i: usize| a.get(i).and_then(Value::as_int);
    Some(Grant {
        granted: u64::try_from(n(0)?).ok()?,
        remaining: u64::try_from(n(1)?).unwrap_or(0),
        reset: us_to_ns(n(2)?),
        retry: us_to_ns(n(3)?),
        index: usize::try_from(n(4)?).ok()?,
    })
}

/// Resolves when the fetch in flight for `fp` lands (or the key is evicted).
struct WaitFetch {
    fp: u64,
    seen: u64,
}

impl Future for WaitFetch {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let waiting = LEASES.with(|t| t.borrow_mut().wait(self.fp, self.seen, cx.waker()));
        if waiting {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
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

    fn redis(prefix: &str) -> Arc<RedisShared> {
        let settings = crate::redis::RedisSettings::for_nodes(Vec::new(), false, prefix);
        Arc::new(RedisShared::new(settings))
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
            &redis("t1"),
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
            &redis("t1"),
            &specs,
            GlobalMode::Exact,
            OnRedisError::FailOpen,
        );
        let k = &odd.redis_keys(b"x")[0];
        assert_eq!(k.matches('}').count(), 1, "{k}");
        assert_ne!(g.fingerprint(b"x"), odd.fingerprint(b"x"));
    }

    #[test]
    fn script_replies_parse_and_garbage_is_refused() {
        let ints = |v: &[i64]| Value::Array(v.iter().map(|&i| Value::Int(i)).collect());
        assert_eq!(
            parse_grant(ints(&[3, 7, 1_500, 0, 1])),
            Some(Grant {
                granted: 3,
                remaining: 7,
                reset: 1_500_000,
                retry: 0,
                index: 1
            })
        );
        assert_eq!(parse_grant(ints(&[0, 0, 10, 20])), None);
        assert_eq!(parse_grant(ints(&[-1, 0, 10, 20, 0])), None);
        assert_eq!(parse_grant(Value::Nil), None);
        assert_eq!(
            parse_grant(Value::Array(vec![Value::Bytes(b"1".to_vec())])),
            None
        );
    }

    #[test]
    fn default_lease_is_one_percent_clamped() {
        assert_eq!(GlobalLimit::default_lease(1_000), 10);
        assert_eq!(GlobalLimit::default_lease(5), 1);
        assert_eq!(GlobalLimit::default_lease(10_000_000), 1_000);
    }
}

//! `introspect` at request time: the bearer token's introspection call through `Services`
//! (RFC 7662), the verdict on the IdP's answer, and the per-worker cache of verdicts
//! (`IntrospectCache`, held in `core::Core`). Kept apart from the config side in
//! `introspect.rs`, which `pipeline` names.
//!
//! Invariants:
//! - The token itself is never stored, logged or copied beyond the request to the IdP: the
//!   cache is keyed by SHA-256 over (policy identity, token); the identity
//!   (`Introspect::id`) hashes what a verdict depends on, so a reload keeps the cache warm.
//! - A token that is not an RFC 6750 `b64token` of at most `MAX_TOKEN_LEN` bytes is refused
//!   (401) without asking the IdP.
//! - An answer is trusted only when `active` is `true`, `exp` (if any) is in the future, `aud`
//!   holds the configured audience, `iss` (if any) is the configured issuer, and the consumer
//!   and every scope pass `http1::is_safe_header_value`; anything else is a 401 cached for
//!   `negative_ttl`. An active answer is cached until min(`exp`, `cache_ttl`) and `exp` is
//!   re-checked on every hit.
//! - The IdP unreachable, slow, refusing the gateway's credentials (non-200) or answering
//!   something that is not a JSON object: 503 (fail closed), never cached.
//! - The cache is bounded: at most `max_entries` per policy per worker (oldest evicted), and
//!   the caches of policies unused for `IDLE_POLICY` are dropped.
//! - Concurrent misses for one token on one worker make one call: the first request asks, up
//!   to `MAX_WAITERS` others wait for its verdict (bounded by the policy's timeout), so a
//!   flood of one bad token costs one introspection per worker per `negative_ttl`.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::Arc;

use serde_json::{Map, Value};

use super::introspect::{form_encode, Endpoint, Introspect};
use super::pipeline::{bearer, Caller, Denial, Effects, Facts, Identity};
use super::service::{Services, SubError, SubRequest};
use crate::http1::{self, Method};

/// Longest token sent to the IdP; longer ones are refused (401) without a call.
pub const MAX_TOKEN_LEN: usize = 4096;
/// Largest introspection answer read; a longer one is a bad answer (503).
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// A policy's cache not touched for this long (a reload replaced the policy) is dropped.
const IDLE_POLICY_NS: u64 = 600 * 1_000_000_000;
/// Requests that wait for one in-flight introspection of their token; more ask themselves.
const MAX_WAITERS: usize = 1024;

/// What a waiting request gets from the one that asked: the verdict, or its 503.
type Outcome = Result<Verdict, Denial>;

/// A cached verdict.
#[derive(Clone)]
enum Verdict {
    Active {
        identity: Arc<Identity>,
        exp: Option<u64>,
    },
    /// 401 with this reason (a metric label).
    Refused(&'static str),
}

struct Entry {
    seq: u64,
    /// Monotonic nanoseconds after which the entry is a miss.
    until_ns: u64,
    verdict: Verdict,
}

/// One policy's entries, in insertion order for eviction.
#[derive(Default)]
struct PolicyCache {
    map: ahash::AHashMap<[u8; 32], Entry>,
    /// `(key, seq)`; an item is live while the entry's `seq` matches.
    order: VecDeque<([u8; 32], u64)>,
    next_seq: u64,
    last_used_ns: u64,
}

/// Per-worker introspection verdicts (see the module header). Never shared across threads.
#[derive(Default)]
pub struct IntrospectCache {
    policies: ahash::AHashMap<u64, PolicyCache>,
    /// Introspections in flight, by cache key, with the requests waiting for them.
    pending: ahash::AHashMap<[u8; 32], Vec<local_sync::oneshot::Sender<Outcome>>>,
    hits: u64,
    misses: u64,
}

impl IntrospectCache {
    /// Lookups answered from the cache.
    pub fn hits(&self) -> u64 {
        self.hits
    }

    /// Lookups that needed the IdP.
    pub fn misses(&self) -> u64 {
        self.misses
    }

    /// Entries held, over every policy.
    pub fn len(&self) -> usize {
        self.policies.values().map(|p| p.map.len()).sum()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn get(&mut self, policy: u64, key: &[u8; 32], now_ns: u64) -> Option<Verdict> {
        let found = self.policies.get_mut(&policy).and_then(|p| {
            p.last_used_ns = now_ns;
            match p.map.get(key) {
                Some(e) if e.until_ns > now_ns => Some(e.verdict.clone()),
                Some(_) => {
                    p.map.remove(key);
                    None
                }
                None => None,
            }
        });
        if found.is_some() {
            self.hits += 1;
        } else {
            self.misses += 1;
        }
        found
    }

    fn insert(
        &mut self,
        policy: u64,
        capacity: usize,
        key: [u8; 32],
        verdict: Verdict,
        now_ns: u64,
        until_ns: u64,
    ) {
        if capacity == 0 || until_ns <= now_ns {
            return;
        }
        if !self.policies.contains_key(&policy) {
            // A new policy (first use, or a reload): forget the ones nobody used lately.
            self.policies
                .retain(|_, p| now_ns.saturating_sub(p.last_used_ns) < IDLE_POLICY_NS);
        }
        let p = self.policies.entry(policy).or_default();
        p.last_used_ns = now_ns;
        while p.map.len() >= capacity && !p.map.contains_key(&key) {
            let Some((old, seq)) = p.order.pop_front() else {
                break;
            };
            if p.map.get(&old).is_some_and(|e| e.seq == seq) {
                p.map.remove(&old);
            }
        }
        let seq = p.next_seq;
        p.next_seq += 1;
        p.map.insert(
            key,
            Entry {
                seq,
                until_ns,
                verdict,
            },
        );
        p.order.push_back((key, seq));
        // Re-inserted keys leave dead items behind; keep the queue near the map's size.
        if p.order.len() > 2 * capacity + 16 {
            let map = &p.map;
            p.order
                .retain(|(k, s)| map.get(k).is_some_and(|e| e.seq == *s));
        }
    }
}

/// How a request that missed the cache gets its verdict.
enum Role {
    /// Asks the IdP and tells the waiters.
    Leader,
    /// Waits for the leader's outcome.
    Follower(local_sync::oneshot::Receiver<Outcome>),
    /// Asks on its own (too many waiters already).
    Alone,
}

impl IntrospectCache {
    fn role(&mut self, key: &[u8; 32]) -> Role {
        match self.pending.get_mut(key) {
            Some(list) if list.len() < MAX_WAITERS => {
                let (tx, rx) = local_sync::oneshot::channel();
                list.push(tx);
                Role::Follower(rx)
            }
            Some(_) => Role::Alone,
            None => {
                self.pending.insert(*key, Vec::new());
                Role::Leader
            }
        }
    }
}

/// The leader's claim on a key: dropping it (also when the request is abandoned mid-call)
/// frees the key; `finish` hands the outcome to the waiters first.
struct InFlight<'c> {
    cache: &'c RefCell<IntrospectCache>,
    key: [u8; 32],
}

impl InFlight<'_> {
    fn finish(self, outcome: &Outcome) {
        let waiters = self.cache.borrow_mut().pending.remove(&self.key);
        for tx in waiters.into_iter().flatten() {
            let _ = tx.send(outcome.clone());
        }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        // Waiters of an abandoned call see their sender dropped and ask themselves.
        if let Ok(mut c) = self.cache.try_borrow_mut() {
            c.pending.remove(&self.key);
        }
    }
}

/// RFC 6750 `b64token`: `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
fn is_b64token(t: &[u8]) -> bool {
    let body = t.len() - t.iter().rev().take_while(|&&b| b == b'=').count();
    body > 0
        && t[..body].iter().all(|&b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
        })
}

/// The cache key: SHA-256 over the policy id and the token.
fn cache_key(policy: u64, token: &[u8]) -> [u8; 32] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(&policy.to_le_bytes());
    ctx.update(token);
    let mut key = [0u8; 32];
    key.copy_from_slice(ctx.finish().as_ref());
    key
}

const CHALLENGE: &[u8] = b"Bearer realm=\"ringway\"";
const INVALID: &[u8] = b"Bearer realm=\"ringway\", error=\"invalid_token\"";
const INSUFFICIENT: &[u8] = b"Bearer realm=\"ringway\", error=\"insufficient_scope\"";

fn refuse(fx: &mut Effects, challenge: &[u8], reason: &'static str) -> Denial {
    http1::write_header(&mut fx.response_lines, b"www-authenticate", challenge);
    Denial::Unauthorized {
        reason,
        detail: "the bearer token is not valid",
    }
}

fn unavailable(reason: &'static str) -> Denial {
    Denial::Unavailable {
        reason,
        detail: "the identity provider could not check the token",
    }
}

/// Checks the request's bearer token: from the cache, else by asking the IdP.
pub async fn settle(
    p: &Introspect,
    f: &Facts<'_>,
    caller: &mut Caller<'_>,
    fx: &mut Effects,
    services: &impl Services,
    cache: &RefCell<IntrospectCache>,
) -> Result<(), Denial> {
    // The consumer header is the gateway's assertion, never the client's.
    fx.upstream.push_remove(&p.consumer_header);
    if !p.forward_token {
        fx.upstream.push_remove(b"authorization");
    }
    let Some(token) = f
        .head
        .header("authorization")
        .and_then(bearer)
        .filter(|t| !t.is_empty())
    else {
        http1::write_header(&mut fx.response_lines, b"www-authenticate", CHALLENGE);
        return Err(Denial::Unauthorized {
            reason: "missing_token",
            detail: "a bearer token is required",
        });
    };
    if token.len() > MAX_TOKEN_LEN || !is_b64token(token) {
        return Err(refuse(fx, INVALID, "malformed_token"));
    }
    let key = cache_key(p.id, token);
    let cached = cache.borrow_mut().get(p.id, &key, f.mono_now);
    let verdict = match cached {
        Some(v) => v,
        None => {
            let role = cache.borrow_mut().role(&key);
            let leader = match role {
                Role::Follower(rx) => match monoio::time::timeout(p.timeout, rx).await {
                    Ok(Ok(outcome)) => return admit(p, outcome?, f, caller, fx),
                    // The leader's request was abandoned: ask ourselves.
                    Ok(Err(_)) => None,
                    // The leader's call is bounded by the same timeout: the IdP is slow, and
                    // a second call would only add to its load.
                    Err(_) => return Err(unavailable("introspection_timeout")),
                },
                Role::Leader => Some(InFlight { cache, key }),
                Role::Alone => None,
            };
            let outcome = ask(p, token, f, services).await;
            if let Some(claim) = leader {
                claim.finish(&outcome);
            }
            let verdict = outcome?;
            let ttl = match &verdict {
                Verdict::Active { exp, .. } => {
                    let left = exp.map_or(u64::MAX, |e| e.saturating_sub(f.unix_now));
                    p.cache_ttl.min(std::time::Duration::from_secs(left))
                }
                Verdict::Refused(_) => p.negative_ttl,
            };
            let until = f
                .mono_now
                .saturating_add(u64::try_from(ttl.as_nanos()).unwrap_or(u64::MAX));
            cache
                .borrow_mut()
                .insert(p.id, p.max_entries, key, verdict.clone(), f.mono_now, until);
            verdict
        }
    };
    admit(p, verdict, f, caller, fx)
}

/// Lets the request go on as the verdict's identity, or refuses it.
fn admit(
    p: &Introspect,
    verdict: Verdict,
    f: &Facts<'_>,
    caller: &mut Caller<'_>,
    fx: &mut Effects,
) -> Result<(), Denial> {
    let identity = match verdict {
        Verdict::Refused(reason) => return Err(refuse(fx, INVALID, reason)),
        Verdict::Active { exp, .. } if exp.is_some_and(|e| e <= f.unix_now) => {
            return Err(refuse(fx, INVALID, "expired"));
        }
        Verdict::Active { identity, .. } => identity,
    };
    if !p
        .required_scopes
        .iter()
        .all(|s| identity.scopes.contains(s))
    {
        http1::write_header(&mut fx.response_lines, b"www-authenticate", INSUFFICIENT);
        return Err(Denial::Forbidden {
            reason: "missing_scope",
            detail: "the token lacks a scope this route requires",
        });
    }
    if let Some(c) = &identity.consumer {
        fx.upstream
            .push_add(&p.consumer_header, c.as_bytes().to_vec());
    }
    caller.external = Some(identity);
    Ok(())
}

/// One introspection call and the verdict on its answer. `Err`: the IdP gave no usable
/// answer (503, not cached).
async fn ask(
    p: &Introspect,
    token: &[u8],
    f: &Facts<'_>,
    services: &impl Services,
) -> Result<Verdict, Denial> {
    let discovered;
    let target: &[u8] = match &p.endpoint {
        Endpoint::Static(path) => path,
        Endpoint::Discovered(d) => {
            discovered = d.snapshot();
            match discovered.as_deref() {
                Some(found) => &found.introspection_target,
                None => return Err(unavailable("introspection_undiscovered")),
            }
        }
    };
    let mut body = Vec::with_capacity(p.body_prefix.len() + token.len() + 48);
    body.extend_from_slice(&p.body_prefix);
    body.extend_from_slice(b"token=");
    form_encode(token, &mut body);
    body.extend_from_slice(b"&token_type_hint=access_token");
    let req = SubRequest {
        method: Method::Post,
        target,
        head_lines: &p.head_lines,
        body: &body,
    };
    let answer = services
        .call(p.upstream, &req, MAX_ANSWER_BYTES, p.timeout)
        .await
        .map_err(|e| match e {
            SubError::Timeout => unavailable("introspection_timeout"),
            SubError::Unavailable => unavailable("introspection_unavailable"),
            SubError::BadResponse => unavailable("introspection_bad_answer"),
        })?;
    if answer.status() != 200 {
        // The IdP refused the gateway (bad client credentials) or failed: not the caller's fault.
        return Err(unavailable("introspection_refused"));
    }
    // Duplicate members are refused, as in a JWT payload: `{"active":false,...,"active":true}`
    // means one thing to a last-wins parser and another to a first-wins one.
    let Ok(crate::jwt::UniqueMembers(doc)) = serde_json::from_slice(&answer.body) else {
        return Err(unavailable("introspection_bad_answer"));
    };
    Ok(judge(p, &doc, f.unix_now))
}

/// Clock skew allowed between the gateway and the IdP for an answer's `nbf`, in seconds.
const NBF_LEEWAY: u64 = 60;

/// An answer's `exp` or `nbf`: absent (or null), a non-negative number of seconds, or `Err`.
fn unix_time(v: Option<&Value>) -> Result<Option<u64>, ()> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_u64()
            .or_else(|| {
                n.as_f64()
                    .filter(|f| f.is_finite() && *f >= 0.0)
                    .map(|f| f as u64)
            })
            .map(Some)
            .ok_or(()),
        Some(_) => Err(()),
    }
}

/// The verdict on a parsed introspection answer at unix time `now`.
fn judge(p: &Introspect, doc: &Map<String, Value>, now: u64) -> Verdict {
    if doc.get("active") != Some(&Value::Bool(true)) {
        return Verdict::Refused("inactive_token");
    }
    let (Ok(exp), Ok(nbf)) = (unix_time(doc.get("exp")), unix_time(doc.get("nbf"))) else {
        return Verdict::Refused("bad_answer");
    };
    if exp.is_some_and(|e| e <= now) {
        return Verdict::Refused("expired");
    }
    // An IdP that says `active` should not name a start still ahead (RFC 7662 §2.2); one that
    // does is believed about the start, with a minute for the two clocks' skew.
    if nbf.is_some_and(|n| n > now.saturating_add(NBF_LEEWAY)) {
        return Verdict::Refused("not_yet_valid");
    }
    if let Some(want) = &p.audience {
        let ok = match doc.get("aud") {
            Some(Value::String(a)) => a == want,
            Some(Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(want.as_str())),
            _ => false,
        };
        if !ok {
            return Verdict::Refused("wrong_audience");
        }
    }
    if let Some(want) = &p.issuer {
        match doc.get("iss") {
            None | Some(Value::Null) => {}
            Some(Value::String(i)) if i == want => {}
            Some(_) => return Verdict::Refused("wrong_issuer"),
        }
    }
    if !p.allowed_clients.is_empty() {
        let allowed = match doc.get("client_id") {
            Some(Value::String(c)) => p.allowed_clients.iter().any(|a| a == c),
            _ => false,
        };
        if !allowed {
            return Verdict::Refused("client_not_allowed");
        }
    }
    // An empty value names nobody (as an empty JWT claim): the next member is tried, and an
    // empty consumer never reaches rate limits, `authorize` or the upstream.
    // A number names a consumer only as an exact integer, as in the `jwt` policy: past u64,
    // `10000000000000000000001` and `...0002` would both read `1e+22`.
    let text = |v: Option<&Value>| match v {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => Some(n.to_string()),
        _ => None,
    };
    let consumer = text(doc.get(&p.consumer_claim)).or_else(|| text(doc.get("client_id")));
    if consumer
        .as_deref()
        .is_some_and(|c| !http1::is_safe_header_value(c.as_bytes()))
    {
        return Verdict::Refused("unsafe_consumer");
    }
    let mut scopes = Vec::new();
    match doc.get("scope") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => {
            for scope in s.split(' ').filter(|s| !s.is_empty()) {
                if !http1::is_safe_header_value(scope.as_bytes()) {
                    return Verdict::Refused("unsafe_scope");
                }
                scopes.push(scope.to_string());
            }
        }
        Some(_) => return Verdict::Refused("bad_answer"),
    }
    Verdict::Active {
        identity: Arc::new(Identity {
            consumer: consumer.map(Arc::from),
            scopes,
        }),
        exp,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn b64tokens() {
        assert!(is_b64token(b"abc.DEF-_~+/=="));
        assert!(!is_b64token(b"=="));
        assert!(!is_b64token(b""));
        assert!(!is_b64token(b"a b"));
        assert!(!is_b64token(b"a\r\nb"));
        assert!(!is_b64token(b"a=b"));
    }

    #[test]
    fn cache_is_bounded_and_expires() {
        let mut c = IntrospectCache::default();
        let v = || Verdict::Refused("x");
        for i in 0..10u8 {
            c.insert(1, 4, [i; 32], v(), 0, 100);
        }
        assert_eq!(c.len(), 4);
        assert!(c.get(1, &[9; 32], 50).is_some());
        assert!(c.get(1, &[0; 32], 50).is_none(), "oldest evicted");
        assert!(c.get(1, &[9; 32], 100).is_none(), "expired");
        // Re-inserting one key over and over never grows the queue without bound.
        for n in 0..1000 {
            c.insert(1, 4, [7; 32], v(), n, n + 10);
        }
        assert!(c.policies[&1].order.len() <= 2 * 4 + 16);
        c.insert(2, 0, [1; 32], v(), 0, 100);
        assert!(c.get(2, &[1; 32], 1).is_none(), "capacity 0 caches nothing");
    }

    fn policy() -> Introspect {
        Introspect {
            id: 1,
            upstream: 0,
            endpoint: Endpoint::Static(b"/i".to_vec().into()),
            head_lines: Box::default(),
            body_prefix: Box::default(),
            audience: Some("api".into()),
            issuer: Some("https://idp.test".into()),
            required_scopes: Vec::new(),
            allowed_clients: Vec::new(),
            consumer_claim: "sub".into(),
            consumer_header: b"x-consumer".to_vec().into(),
            forward_token: true,
            cache_ttl: std::time::Duration::from_secs(60),
            negative_ttl: std::time::Duration::from_secs(5),
            max_entries: 10,
            timeout: std::time::Duration::from_secs(1),
        }
    }

    fn verdict(doc: serde_json::Value) -> Result<(Option<String>, Vec<String>), &'static str> {
        let doc = doc.as_object().cloned().unwrap_or_default();
        match judge(&policy(), &doc, 1000) {
            Verdict::Active { identity, .. } => Ok((
                identity.consumer.as_deref().map(str::to_string),
                identity.scopes.clone(),
            )),
            Verdict::Refused(r) => Err(r),
        }
    }

    #[test]
    fn answers_are_judged_strictly() {
        use serde_json::json;
        let ok = json!({"active": true, "sub": "ann", "aud": ["x", "api"], "exp": 2000.5,
            "scope": "a  b", "iss": "https://idp.test"});
        assert_eq!(
            verdict(ok),
            Ok((Some("ann".into()), vec!["a".into(), "b".into()]))
        );
        // No sub: the client id names the consumer; no iss: accepted (the IdP is configured).
        let svc = json!({"active": true, "client_id": 42, "aud": "api"});
        assert_eq!(verdict(svc), Ok((Some("42".into()), vec![])));
        // A start within the minute of skew allowed is fine.
        let soon = json!({"active": true, "client_id": "c", "aud": "api", "nbf": 1060});
        assert_eq!(verdict(soon), Ok((Some("c".into()), vec![])));
        for (doc, why) in [
            (json!({"active": "true", "aud": "api"}), "inactive_token"),
            (json!({"aud": "api"}), "inactive_token"),
            (
                json!({"active": true, "aud": "api", "exp": 1000}),
                "expired",
            ),
            (
                json!({"active": true, "aud": "api", "exp": "soon"}),
                "bad_answer",
            ),
            (
                json!({"active": true, "aud": "api", "exp": -5}),
                "bad_answer",
            ),
            (
                json!({"active": true, "aud": "api", "nbf": 1061}),
                "not_yet_valid",
            ),
            (
                json!({"active": true, "aud": "api", "nbf": "later"}),
                "bad_answer",
            ),
            (json!({"active": true}), "wrong_audience"),
            (json!({"active": true, "aud": ["apix"]}), "wrong_audience"),
            (
                json!({"active": true, "aud": "api", "iss": "x"}),
                "wrong_issuer",
            ),
            (
                json!({"active": true, "aud": "api", "sub": "a\nb"}),
                "unsafe_consumer",
            ),
            (
                json!({"active": true, "aud": "api", "sub": " a"}),
                "unsafe_consumer",
            ),
            (
                json!({"active": true, "aud": "api", "scope": "a \u{0}b"}),
                "unsafe_scope",
            ),
            (
                json!({"active": true, "aud": "api", "scope": ["a"]}),
                "bad_answer",
            ),
        ] {
            assert_eq!(verdict(doc.clone()), Err(why), "{doc}");
        }
    }

    #[test]
    fn keys_differ_by_policy_and_token() {
        assert_ne!(cache_key(1, b"t"), cache_key(2, b"t"));
        assert_ne!(cache_key(1, b"t"), cache_key(1, b"u"));
    }
}

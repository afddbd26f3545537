//! `forward_auth` at request time: builds the call to the authorization service, awaits it
//! through `Services`, and turns the answer into the pipeline's verdict (kept apart from the
//! config side in `forward_auth.rs`, which `pipeline` names).
//!
//! - 2xx: allow. The configured `upstream_headers` are copied onto the upstream request, each
//!   replacing the client's copy (which is dropped even when the service sends none), and
//!   `consumer_header` becomes `Caller::external`.
//! - Any other final status (3xx-5xx): the client gets it, with the `deny_headers` present and
//!   the body. A status above 599 is no usable answer.
//! - No usable answer (timeout, down, a bad head or body, a value the gateway will not write):
//!   503, or the request goes on without the service's headers when `fail_open`.
//!
//! Allows may be cached per worker (`thread_local`, no lock), keyed by the SHA-256 of a client
//! header's value (never the value itself), bounded by entry count and a TTL. Denials are
//! never cached: they often carry per-request content (a login redirect naming the original
//! URL, a fresh cookie), and a user who just logged in must not keep seeing one.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::sync::Arc;

use super::forward_auth::{DecisionCacheConfig, ForwardAuth};
use super::pipeline::{Caller, Denial, Effects, Facts, Identity, LocalReply};
use super::service::{Services, SubError, SubRequest, SubResponse};
use crate::http1::{is_safe_header_value, write_header};
use crate::metrics::AuthOutcome;

/// What an allow carries, as cached: the headers for the upstream and the identity.
#[derive(Debug)]
struct Allow {
    /// (lowercase name, value) pairs, every value safe to write.
    headers: Vec<(Box<str>, Vec<u8>)>,
    identity: Option<Arc<Identity>>,
}

/// Asks the service about this request.
pub async fn settle(
    p: &ForwardAuth,
    f: &Facts<'_>,
    caller: &mut Caller<'_>,
    fx: &mut Effects,
    services: &impl Services,
) -> Result<(), Denial> {
    // Whatever the outcome, a client's own copy of a header the service vouches for never
    // reaches the upstream: those it copies upstream, and the one naming the consumer (the
    // gateway's rate limits, `authorize` and log go by the service's value; an upstream
    // reading the same name must not get the client's).
    for name in p.upstream_headers.iter().chain(&p.consumer_header) {
        fx.upstream.push_remove(name.as_bytes());
    }
    let key = p.cache.as_ref().and_then(|c| cache_key(p, c, f));
    if let Some(k) = &key {
        if let Some(allow) = cached(p, k, f.mono_now) {
            p.counters.record(AuthOutcome::CacheHit);
            apply(&allow, caller, fx);
            return Ok(());
        }
    }
    let lines = request_lines(p, f, fx.path.as_deref());
    let body = &f.body[..f.body.len().min(p.body_bytes)];
    let req = SubRequest {
        method: p.method,
        target: &p.path,
        head_lines: &lines,
        body,
    };
    let answer = services
        .call(p.upstream, &req, p.max_response_bytes, p.timeout)
        .await;
    let res = match answer {
        Ok(r) => r,
        Err(e) => return no_answer(p, e),
    };
    match res.status() {
        200..=299 => {
            let Some(allow) = allow_of(p, &res) else {
                return no_answer(p, SubError::BadResponse);
            };
            let allow = Rc::new(allow);
            if let (Some(k), Some(c)) = (key, &p.cache) {
                store(p, c, k, f.mono_now, allow.clone());
            }
            p.counters.record(AuthOutcome::Allow);
            apply(&allow, caller, fx);
            Ok(())
        }
        // An interim answer, or a status outside HTTP's 1xx-5xx: nothing to pass on.
        100..=199 | 600.. => no_answer(p, SubError::BadResponse),
        status => {
            let Some(fields) = deny_fields(p, &res) else {
                return no_answer(p, SubError::BadResponse);
            };
            p.counters.record(AuthOutcome::Deny);
            fx.reply = Some(Box::new(LocalReply {
                status,
                fields,
                body: res.body,
            }));
            Err(Denial::Reply)
        }
    }
}

/// No usable answer: 503, or on without the service's headers when `fail_open`.
fn no_answer(p: &ForwardAuth, e: SubError) -> Result<(), Denial> {
    p.counters.record(AuthOutcome::Error);
    if p.fail_open {
        return Ok(());
    }
    let (reason, detail) = match e {
        SubError::Timeout => (
            "forward_auth_timeout",
            "the authorization service did not answer in time",
        ),
        SubError::Unavailable => (
            "forward_auth_unavailable",
            "the authorization service is unavailable",
        ),
        SubError::BadResponse => (
            "forward_auth_bad_answer",
            "the authorization service gave an answer the gateway refuses",
        ),
    };
    Err(Denial::Unavailable { reason, detail })
}

/// The head lines of the call: the configured client headers, then the request's facts.
/// `rewritten`: the path (with its query) an earlier filter set for the upstream.
fn request_lines(p: &ForwardAuth, f: &Facts<'_>, rewritten: Option<&[u8]>) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    for name in p.request_headers.iter() {
        // Client values passed the request parser (no CR, LF or NUL): written as received.
        for (n, v) in f.head.headers() {
            if n.eq_ignore_ascii_case(name.as_bytes()) {
                write_header(&mut out, name.as_bytes(), v);
            }
        }
    }
    let head = f.head;
    write_header(&mut out, b"x-forwarded-method", head.method_bytes());
    // The normalized path (what the router matched and what the upstream gets), never the
    // raw target: a service that allows `/public/*` must not pass `/public/../admin`. When an
    // earlier filter rewrote the path, the service judges the one the upstream will get.
    let mut uri = Vec::with_capacity(f.path.len() + 64);
    match rewritten {
        Some(p) => uri.extend_from_slice(p),
        None => {
            uri.extend_from_slice(f.path);
            if let Some(q) = head.query() {
                uri.push(b'?');
                uri.extend_from_slice(q);
            }
        }
    }
    write_header(&mut out, b"x-forwarded-uri", &uri);
    let host = head.host.get(&head.buf);
    if !host.is_empty() {
        write_header(&mut out, b"x-forwarded-host", host);
    }
    write_header(&mut out, b"x-forwarded-proto", f.proto.as_bytes());
    write_header(&mut out, b"x-forwarded-for", f.client_ip_text.as_bytes());
    write_header(&mut out, b"x-request-id", f.request_id.as_bytes());
    out
}

/// The allow a 2xx carries; `None` when a value it names is not safe to write.
fn allow_of(p: &ForwardAuth, res: &SubResponse) -> Option<Allow> {
    let mut headers = Vec::new();
    for name in p.upstream_headers.iter() {
        for (n, v) in res.head.headers() {
            if n.eq_ignore_ascii_case(name.as_bytes()) {
                if !is_safe_header_value(v) {
                    return None;
                }
                headers.push((name.clone(), v.to_vec()));
            }
        }
    }
    // The consumer is one name: an answer naming two (`x-user: alice`, `x-user: bob`) is not
    // one the gateway can act on, since its limits and `authorize` would go by one while the
    // upstream might read the other.
    if let Some(name) = &p.consumer_header {
        let named = res
            .head
            .headers()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()));
        if named.count() > 1 {
            return None;
        }
    }
    let identity = match &p.consumer_header {
        None => None,
        Some(name) => match res.head.header(name) {
            None => None,
            Some(v) if v.is_empty() || !is_safe_header_value(v) => return None,
            Some(v) => {
                let consumer = std::str::from_utf8(v).ok()?;
                Some(Arc::new(Identity {
                    consumer: Some(consumer.into()),
                    scopes: Vec::new(),
                }))
            }
        },
    };
    Some(Allow { headers, identity })
}

/// Lets the request on with what the allow carries.
fn apply(allow: &Allow, caller: &mut Caller<'_>, fx: &mut Effects) {
    for (name, value) in &allow.headers {
        fx.upstream.push_add(name.as_bytes(), value.clone());
    }
    if let Some(id) = &allow.identity {
        caller.external = Some(id.clone());
    }
}

/// The denial's header lines; `None` when a value is not safe to pass on.
fn deny_fields(p: &ForwardAuth, res: &SubResponse) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    for name in p.deny_headers.iter() {
        for (n, v) in res.head.headers() {
            if n.eq_ignore_ascii_case(name.as_bytes()) {
                if !is_safe_header_value(v) {
                    return None;
                }
                write_header(&mut out, name.as_bytes(), v);
            }
        }
    }
    Some(out)
}

// ---------------------------------------------------------------------------------------------
// The decision cache.

type Digest = [u8; 32];

/// One policy's cached allows on this worker.
#[derive(Default)]
struct PolicyCache {
    /// Digest → (expiry in monotonic ns, insertion number, the allow).
    map: HashMap<Digest, (u64, u64, Rc<Allow>)>,
    /// Insertion order as (digest, insertion number); an item is live when the entry's
    /// number matches, so re-inserting a key never evicts its newer entry.
    order: VecDeque<(Digest, u64)>,
    seq: u64,
    /// When this cache was last stored into (`TICK`), to drop the stalest cache first.
    touched: u64,
}

/// How many policies' caches a worker keeps; a reload that changes a policy's settings starts
/// a new one (new id), and the least recently stored into goes first.
const MAX_POLICY_CACHES: usize = 64;

thread_local! {
    static CACHES: RefCell<HashMap<u64, PolicyCache>> = RefCell::new(HashMap::new());
    static TICK: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// The digest of the request's cache key: every value of the key header and of every other
/// client header the service is sent (`request_headers`), in order. The service may decide on
/// any of them (a session cookie beside a constant `Authorization: Bearer null`), so an allow
/// is reused only for a request that would show the service the same credentials. `None` when
/// the request has no key header.
fn cache_key(p: &ForwardAuth, c: &DecisionCacheConfig, f: &Facts<'_>) -> Option<Digest> {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    // The policy id keeps equal credentials under different policies apart too.
    ctx.update(&p.id.to_be_bytes());
    let mut any = false;
    let key = std::iter::once(c.key.as_bytes());
    let sent = p
        .request_headers
        .iter()
        .map(|h| h.as_bytes())
        .filter(|h| !h.eq_ignore_ascii_case(c.key.as_bytes()));
    for (i, name) in key.chain(sent).enumerate() {
        // Which header, then its values length-prefixed: ("ab", "c") and ("a", "bc") differ,
        // and so does a value moved from one header to another.
        ctx.update(&(i as u64).to_be_bytes());
        for (n, v) in f.head.headers() {
            if n.eq_ignore_ascii_case(name) {
                ctx.update(&(v.len() as u64).to_be_bytes());
                ctx.update(v);
                any |= i == 0;
            }
        }
    }
    if !any {
        return None;
    }
    ctx.finish().as_ref().try_into().ok()
}

/// A live cached allow for `key`.
fn cached(p: &ForwardAuth, key: &Digest, now: u64) -> Option<Rc<Allow>> {
    CACHES.with(|caches| {
        let mut caches = caches.borrow_mut();
        let cache = caches.get_mut(&p.id)?;
        let (expiry, _, allow) = cache.map.get(key)?;
        if *expiry > now {
            return Some(allow.clone());
        }
        cache.map.remove(key);
        None
    })
}

/// Caches an allow, evicting the oldest entries beyond `max_entries`.
fn store(p: &ForwardAuth, c: &DecisionCacheConfig, key: Digest, now: u64, allow: Rc<Allow>) {
    CACHES.with(|caches| {
        let mut caches = caches.borrow_mut();
        if !caches.contains_key(&p.id) && caches.len() >= MAX_POLICY_CACHES {
            let stalest = caches
                .iter()
                .min_by_key(|(_, c)| c.touched)
                .map(|(&id, _)| id);
            if let Some(id) = stalest {
                caches.remove(&id);
            }
        }
        let tick = TICK.with(|t| {
            t.set(t.get() + 1);
            t.get()
        });
        let cache = caches.entry(p.id).or_default();
        cache.touched = tick;
        let ttl = u64::try_from(c.ttl.as_nanos()).unwrap_or(u64::MAX);
        cache.seq += 1;
        let seq = cache.seq;
        cache.map.insert(key, (now.saturating_add(ttl), seq, allow));
        cache.order.push_back((key, seq));
        while cache.map.len() > c.max_entries {
            let Some((k, s)) = cache.order.pop_front() else {
                break;
            };
            if cache.map.get(&k).is_some_and(|e| e.1 == s) {
                cache.map.remove(&k);
            }
        }
        // Stale order items (keys re-inserted or expired) are dropped once they dominate.
        if cache.order.len() > 2 * c.max_entries + 16 {
            let map = &cache.map;
            cache
                .order
                .retain(|(k, s)| map.get(k).is_some_and(|e| e.1 == *s));
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(max_entries: usize) -> (ForwardAuth, DecisionCacheConfig) {
        let p = ForwardAuth {
            name: "t".into(),
            id: 1_000_000 + max_entries as u64,
            upstream: 0,
            path: (*b"/").into(),
            method: crate::http1::Method::Get,
            request_headers: Box::new([]),
            body_bytes: 0,
            upstream_headers: Box::new([]),
            consumer_header: None,
            deny_headers: Box::new([]),
            timeout: std::time::Duration::from_secs(1),
            fail_open: false,
            max_response_bytes: 1024,
            cache: None,
            counters: crate::metrics::forward_auth_counters("t"),
        };
        let c = DecisionCacheConfig {
            key: "authorization".into(),
            ttl: std::time::Duration::from_nanos(100),
            max_entries,
        };
        (p, c)
    }

    fn allow() -> Rc<Allow> {
        Rc::new(Allow {
            headers: Vec::new(),
            identity: None,
        })
    }

    #[test]
    fn entries_expire_and_the_cache_stays_bounded() {
        let (p, c) = policy(3);
        store(&p, &c, [1; 32], 0, allow());
        assert!(cached(&p, &[1; 32], 50).is_some());
        assert!(cached(&p, &[1; 32], 100).is_none(), "expired at the TTL");
        for i in 0..10u8 {
            store(&p, &c, [i; 32], 1000, allow());
        }
        CACHES.with(|cs| {
            let cs = cs.borrow();
            let pc = &cs[&p.id];
            assert_eq!(pc.map.len(), 3);
            assert!(pc.order.len() <= 2 * 3 + 16);
        });
        assert!(cached(&p, &[9; 32], 1001).is_some(), "newest kept");
        assert!(cached(&p, &[0; 32], 1001).is_none(), "oldest evicted");
    }

    #[test]
    fn reinserting_a_key_does_not_let_its_old_order_item_evict_it() {
        let (p, c) = policy(2);
        store(&p, &c, [1; 32], 0, allow());
        store(&p, &c, [2; 32], 0, allow());
        store(&p, &c, [1; 32], 0, allow());
        store(&p, &c, [3; 32], 0, allow());
        assert!(cached(&p, &[1; 32], 1).is_some());
        assert!(cached(&p, &[3; 32], 1).is_some());
        assert!(cached(&p, &[2; 32], 1).is_none());
    }
}

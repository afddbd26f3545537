//! The cache phase of a proxied exchange on a route with a `cache` policy (and the shaping
//! layer on a route that only compresses): look the request up, answer from the store when a
//! stored response may be used, otherwise forward through `shape::Shaped`, which records the
//! answer (a miss), or revalidates a stale one with the stored validators.
//!
//! ```text
//! bypass? (method, Range, no-store, credentials nobody verified) ──► forward, unstored
//!                                         (a successful unsafe method drops the stored target)
//! lookup(primary key) → variant(Vary) ──► fresh (or within the client's max-stale): serve (hit)
//!                                    ├──► stale within s-w-r:     serve stale, revalidate in the background
//!                                    ├──► stale:                  conditional request; 304 → serve refreshed,
//!                                    │                            5xx/no answer within s-i-e → serve stale
//!                                    └──► none: coalesce ─► leader: forward and record
//!                                                        └► follower: wait for it, then look up again
//! ```
//!
//! `only-if-cached` with nothing usable answers 504. The client's `no-cache` / `max-age` /
//! `min-fresh` send a conditional request even for a fresh object (`fwd=request`). The
//! answering-from, recording-into and revalidating pieces live in `exchange::stored`, shared
//! with `shape`; the RFC rules themselves in `cache::{control, conditional, vary, key}`.
//!
//! Every policy already passed (the guard ran first), so a cached answer never skips
//! authentication or rate limits. Per-request fields (request id, CORS, RateLimit, the route's
//! response edits) are added to each answer, never stored.

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cache::key::{KeyParts, PrimaryKey};
use crate::cache::stats::{record as count, Outcome as Counted};
use crate::cache::status::{CacheStatus, Fwd};
use crate::cache::store::FillGuard;
use crate::cache::{control, vary, CachePolicy, Fill, Object, Store};
use crate::compress::{Coding, CompressPolicy};
use crate::config::{ProxyAction, Route};
use crate::core::{Core, Generation};
use crate::http1::{self, BodyFraming, Method};
use crate::policy::pipeline::{Effects, Policy};
use crate::policy::transform::HeaderEdits;

use super::error::ProxyError;
use super::model::Exchange;
use super::response_head::Owned;
use super::shape::Shaped;
use super::stored::{may_serve_on_error, start_stored, Recorder, Revalidation, StoredAnswer};
use super::wire::{BodyLen, Downstream, Outcome, Response};

/// Runs the proxy action on a route with a `cache` and/or `compress` policy.
pub async fn forward<D: Downstream>(
    core: &Core,
    gen: &Rc<Generation>,
    ex: &mut Exchange<'_>,
    down: &mut D,
    route: &Route,
    p: &ProxyAction,
    fx: &Effects,
) -> Result<Outcome, ProxyError> {
    let cfg = &gen.cfg;
    let policy_of = |id: Option<crate::policy::pipeline::PolicyId>| {
        id.and_then(|id| cfg.policies.list.get(id.0 as usize))
            .map(|p| &p.policy)
    };
    let compress = match policy_of(fx.compress) {
        Some(Policy::Compress(c)) => Some(&**c),
        _ => None,
    };
    let cache = match policy_of(fx.cache) {
        Some(Policy::Cache(c)) => Some(&**c),
        _ => None,
    };
    let coding = compress.map(|c| (c, crate::compress::negotiate(c, ex.head)));
    let answer = StoredAnswer {
        edits: (!fx.response.is_empty()).then_some(&fx.response),
        own: Owned::for_exchange(ex, route),
        keep: !ex.close && !core.draining(),
    };
    let Some(policy) = cache else {
        let mut shaped = Shaped::new(down, coding, answer);
        return super::forward::forward(core, gen, ex, &mut shaped, route, p, fx).await;
    };
    let look = Lookup::new(cfg.cache.clone(), policy, ex, &route.name, coding);
    let look = match look {
        Ok(look) => look,
        Err(why) => {
            count(Counted::Bypass);
            let mut shaped = Shaped::new(down, coding, answer);
            shaped.status = Some(CacheStatus {
                fwd: Some(Fwd::Bypass),
                detail: Some(why),
                ..CacheStatus::default()
            });
            let out = super::forward::forward(core, gen, ex, &mut shaped, route, p, fx).await;
            // RFC 9111 4.4: a successful POST/PUT/DELETE/PATCH to a URI invalidates what is
            // stored for it (the key a GET from this client would use: same keyed headers,
            // same consumer).
            if unsafe_method(ex.head.method) && (200..400).contains(&ex.facts.status) {
                if let Ok((key, _)) = key_of(policy, ex, &route.name) {
                    cfg.cache.remove(&key);
                }
            }
            return out;
        }
    };
    let reqd = control::request(ex.head);
    let mut found = look.find(ex.head);
    let mut collapsed = false;
    let miss = || {
        if look.entry_exists() {
            Fwd::VaryMiss
        } else {
            Fwd::UriMiss
        }
    };
    if found.is_none() && reqd.only_if_cached {
        return Ok(only_if_cached(ex, down, &answer).await);
    }
    if found.is_none() && policy.coalesce && ex.head.method == Method::Get {
        // A miss: lead the fetch, or wait for the request already fetching this key.
        match look.store.fill(&look.key, &look.fill_key()) {
            Fill::Leader(guard) => {
                // The previous leader may have stored the answer and let go between our
                // lookup and taking the lock: look once more before going upstream.
                found = look.find(ex.head);
                if found.is_none() {
                    count(Counted::Miss);
                    let fwd = miss();
                    // The guard rides with the recorder: followers wake as soon as the answer
                    // is stored, or as soon as it is known it will not be.
                    let lead = Some(guard);
                    return look
                        .fetch(core, gen, ex, down, route, p, fx, answer, None, fwd, lead)
                        .await;
                }
                drop(guard);
            }
            Fill::Follower(wait) => {
                let deadline = Instant::now() + policy.coalesce_timeout;
                if wait.wait(deadline).await {
                    found = look.find(ex.head);
                    collapsed = found.is_some();
                }
            }
        }
    }
    let Some(hit) = found else {
        count(Counted::Miss);
        let fwd = miss();
        return look
            .fetch(core, gen, ex, down, route, p, fx, answer, None, fwd, None)
            .await;
    };
    let now = Instant::now();
    let obj = hit.object.clone();
    let stale_for = obj.stale_for(now);
    let usable_fresh = stale_for.is_none() && !reqd.no_cache && !too_old(&reqd, &obj, now);
    // The client accepts this much staleness itself (`max-stale`), unless the response
    // forbids serving it stale at all.
    let client_accepts_stale = stale_for.is_some_and(|st| {
        !reqd.no_cache
            && !obj.must_revalidate
            && !obj.no_cache
            && reqd.max_age.is_none()
            && match reqd.max_stale {
                Some(None) => true,
                Some(Some(m)) => st.as_secs() <= m,
                None => false,
            }
    });
    if !(usable_fresh || client_accepts_stale) && reqd.only_if_cached {
        return Ok(only_if_cached(ex, down, &answer).await);
    }
    if usable_fresh || client_accepts_stale {
        count(Counted::Hit);
        let cs = CacheStatus {
            hit: true,
            ttl: Some(ttl(&obj, now)),
            collapsed,
            ..CacheStatus::default()
        };
        return Ok(serve(ex, down, &obj, &cs, &answer).await);
    }
    if let Some(stale) = stale_for {
        if !reqd.no_cache
            && !obj.must_revalidate
            && !obj.no_cache
            && stale <= obj.stale_while_revalidate
        {
            // Serve stale now; one background request (per key and variant, whichever
            // request or worker gets there first) refreshes it.
            count(Counted::Stale);
            if ex.head.method == Method::Get {
                background_revalidation(gen, ex, route, fx, &look, &hit);
            }
            let cs = CacheStatus {
                hit: true,
                ttl: Some(ttl(&obj, now)),
                detail: Some("stale-while-revalidate"),
                ..CacheStatus::default()
            };
            return Ok(serve(ex, down, &obj, &cs, &answer).await);
        }
    }
    // Expiry of a popular key: concurrent requests for the stale answer send one revalidation
    // and wait for it, as misses do (a client's own no-cache / max-age goes forward itself).
    let mut lead = None;
    let plain_expiry = stale_for.is_some() && !reqd.no_cache && reqd.max_age.is_none();
    if plain_expiry && policy.coalesce && ex.head.method == Method::Get {
        let mut fill_key = b"stale\0".to_vec();
        fill_key.extend_from_slice(&hit.secondary);
        match look.store.fill(&look.key, &fill_key) {
            Fill::Leader(guard) => lead = Some(guard),
            Fill::Follower(wait) => {
                let deadline = Instant::now() + policy.coalesce_timeout;
                if wait.wait(deadline).await {
                    if let Some(fresh) = look.find(ex.head) {
                        let now = Instant::now();
                        if fresh.object.stale_for(now).is_none() {
                            count(Counted::Hit);
                            let cs = CacheStatus {
                                hit: true,
                                ttl: Some(ttl(&fresh.object, now)),
                                collapsed: true,
                                ..CacheStatus::default()
                            };
                            return Ok(serve(ex, down, &fresh.object, &cs, &answer).await);
                        }
                    }
                }
                // The leader failed or took too long: revalidate on our own.
            }
        }
    }
    count(Counted::Miss);
    let fwd = if stale_for.is_some() {
        Fwd::Stale
    } else {
        Fwd::Request
    };
    look.fetch(
        core,
        gen,
        ex,
        down,
        route,
        p,
        fx,
        answer,
        Some(hit),
        fwd,
        lead,
    )
    .await
}

/// The request's `max-age` / `min-fresh` refuse a response this old.
/// Compared at sub-second precision, so `max-age=0` (a browser's reload) always revalidates.
fn too_old(reqd: &control::RequestDirectives, obj: &Object, now: Instant) -> bool {
    let age = obj.age(now);
    if reqd.max_age.is_some_and(|m| age > Duration::from_secs(m)) {
        return true;
    }
    if let Some(min_fresh) = reqd.min_fresh {
        let left = obj.fresh_for.saturating_sub(age);
        return left < Duration::from_secs(min_fresh);
    }
    false
}

/// `only-if-cached` with nothing stored to answer: 504 (RFC 9111 5.2.1.7).
async fn only_if_cached<D: Downstream>(
    ex: &mut Exchange<'_>,
    down: &mut D,
    a: &StoredAnswer<'_>,
) -> Outcome {
    let mut fields = Vec::new();
    crate::cache::status::write(
        &mut fields,
        &CacheStatus {
            fwd: Some(Fwd::Request),
            detail: Some("only-if-cached"),
            ..CacheStatus::default()
        },
    );
    let r = Response {
        status: 504,
        fields: &fields,
        body: BodyLen::Length(0),
        keep: a.keep,
    };
    ex.facts.status = 504;
    let keep = down.start_response(ex, &r);
    match down.end_response().await {
        Ok(()) => Outcome::Done(keep),
        Err(_) => Outcome::Done(false),
    }
}

/// Seconds of freshness left (negative once stale), for `Cache-Status`.
fn ttl(obj: &Object, now: Instant) -> i64 {
    obj.ttl(now)
}

/// A stored object found for a request, with where it lives (for a refresh).
pub struct Found {
    pub object: Arc<Object>,
    vary: Box<[Box<[u8]>]>,
    secondary: Box<[u8]>,
}

/// One request's view of the store: its key, its coding, its credentials.
struct Lookup<'p> {
    store: Arc<Store>,
    policy: &'p CachePolicy,
    key: PrimaryKey,
    /// The negotiated coding stands for `Accept-Encoding` in the secondary key.
    coding: Option<Coding>,
    /// The key holds the consumer the gateway verified (RFC 9111 3.5 is then satisfied).
    per_consumer: bool,
}

impl<'p> Lookup<'p> {
    /// The lookup for `ex`, or why the cache is bypassed.
    fn new(
        store: Arc<Store>,
        policy: &'p CachePolicy,
        ex: &Exchange<'_>,
        route: &str,
        coding: Option<(&CompressPolicy, Coding)>,
    ) -> Result<Lookup<'p>, &'static str> {
        let head = ex.head;
        match head.method {
            Method::Get if policy.get => {}
            Method::Head if policy.head => {}
            _ => return Err("method"),
        }
        if head.header("range").is_some() {
            return Err("range");
        }
        // The upstream sees a body the key cannot hold: such an answer is never shared.
        if !matches!(head.body, BodyFraming::None | BodyFraming::Length(0)) {
            return Err("body");
        }
        if super::send::wants_websocket(head) || head.upgrade {
            return Err("upgrade");
        }
        if control::request(head).no_store {
            return Err("no-store");
        }
        let (key, per_consumer) = key_of(policy, ex, route)?;
        Ok(Lookup {
            key,
            store,
            policy,
            coding: coding.map(|(_, c)| c),
            per_consumer,
        })
    }

    /// The secondary key's stand-in for `Accept-Encoding`.
    fn coding_token(&self) -> Option<&'static str> {
        self.coding.map(Coding::token)
    }

    /// What concurrent misses coalesce on: the key and, on compressing routes, the coding.
    fn fill_key(&self) -> Vec<u8> {
        self.coding_token().unwrap_or("").as_bytes().to_vec()
    }

    fn entry_exists(&self) -> bool {
        self.store.get(&self.key).is_some()
    }

    /// The stored object for this request's `Vary` values.
    fn find(&self, head: &http1::RequestHead) -> Option<Found> {
        let entry = self.store.get(&self.key)?;
        let secondary = vary::secondary(&entry.vary, head, self.coding_token());
        let object = entry.find(&secondary)?.clone();
        Some(Found {
            object,
            vary: entry.vary.clone(),
            secondary,
        })
    }

    /// Forwards the request, recording the answer; with `stale`, as a conditional request
    /// that revalidates it (and falls back to it on an upstream failure within
    /// stale-if-error).
    #[allow(clippy::too_many_arguments)]
    async fn fetch<D: Downstream>(
        &self,
        core: &Core,
        gen: &Rc<Generation>,
        ex: &mut Exchange<'_>,
        down: &mut D,
        route: &Route,
        p: &ProxyAction,
        fx: &Effects,
        answer: StoredAnswer<'_>,
        stale: Option<Found>,
        fwd: Fwd,
        lead: Option<FillGuard>,
    ) -> Result<Outcome, ProxyError> {
        let mut fx = fx.clone();
        // The cache answers the client's own conditionals; upstream, it asks with its own.
        fx.upstream.push_remove(b"if-none-match");
        fx.upstream.push_remove(b"if-modified-since");
        // An answer varying on a field edited so far is not stored (`varying_not_on`). The
        // coding asked for below is not among them: the secondary key holds exactly it.
        let (record, _lead) = match ex.head.method == Method::Get {
            true => (Some(self.recorder(lead).varying_not_on(&fx.upstream)), None),
            false => (None, lead),
        };
        // On a compressing route the secondary key holds the negotiated coding, not the
        // client's `Accept-Encoding`: ask for that coding alone, so whatever the upstream
        // encodes by itself is acceptable to every client that negotiates the same coding.
        if let Some(c) = self.coding {
            fx.upstream.push_remove(b"accept-encoding");
            fx.upstream
                .push_add(b"accept-encoding", c.token().as_bytes().to_vec());
        }
        if let Some(s) = &stale {
            add_validators(&mut fx.upstream, &s.object);
        }
        let coding = self.coding.and_then(|c| {
            let policy = match gen_compress(gen, &fx) {
                Some(p) => p,
                None => return None,
            };
            Some((policy, c))
        });
        let mut shaped = Shaped::new(down, coding, answer.clone());
        shaped.status = Some(CacheStatus {
            fwd: Some(fwd),
            ..CacheStatus::default()
        });
        shaped.record = record;
        if let Some(s) = &stale {
            shaped.revalidating = Some(self.revalidation(s));
        }
        let out = super::forward::forward(core, gen, ex, &mut shaped, route, p, &fx).await;
        if let Some(status) = shaped.served {
            ex.facts.status = status;
        }
        match out {
            Err(e) if e.side() == super::error::Side::Upstream => {
                // No answer at all: a stale object within stale-if-error still serves.
                let Some(s) = stale.filter(|s| may_serve_on_error(&s.object)) else {
                    return Err(e);
                };
                count(Counted::Stale);
                let cs = CacheStatus {
                    hit: true,
                    fwd: Some(Fwd::Stale),
                    fwd_status: Some(e.status()),
                    ttl: Some(ttl(&s.object, Instant::now())),
                    detail: Some("stale-if-error"),
                    ..CacheStatus::default()
                };
                Ok(serve(ex, shaped.inner, &s.object, &cs, &answer).await)
            }
            other => other,
        }
    }

    fn recorder(&self, lead: Option<FillGuard>) -> Recorder<'p> {
        Recorder::new(
            self.store.clone(),
            self.key.clone(),
            self.policy,
            self.per_consumer,
            self.coding_token(),
            lead,
        )
    }

    fn revalidation(&self, s: &Found) -> Revalidation {
        Revalidation::new(
            s.object.clone(),
            self.store.clone(),
            self.key.clone(),
            s.vary.clone(),
            s.secondary.clone(),
            Arc::new(self.policy.clone()),
        )
    }
}

/// The primary key a GET for `ex`'s target would have, and whether it holds the consumer;
/// `Err("authorization")` for credentials no gateway policy verified (nobody to key the
/// answer to, so it must not be shared).
fn key_of(
    policy: &CachePolicy,
    ex: &Exchange<'_>,
    route: &str,
) -> Result<(PrimaryKey, bool), &'static str> {
    let head = ex.head;
    let consumer = ex.facts.consumer.as_deref();
    // Any credential: an Authorization header, or a caller a policy verified (a token read
    // from another header, a certificate, a forward-auth session) even without a consumer.
    let credentials =
        head.header("authorization").is_some() || consumer.is_some() || ex.facts.verified_caller;
    let per_consumer = credentials && !policy.share_across_consumers;
    if per_consumer && consumer.is_none() {
        return Err("authorization");
    }
    let consumer = consumer.filter(|_| per_consumer);
    let parts = KeyParts {
        host: &ex.host,
        path: &ex.path,
        query: head.query(),
        head,
        consumer,
        route,
        scheme: ex.facts.origin.scheme.as_str(),
        authority: head.host.get(&head.buf),
        trusted_peer: ex.facts.origin.trusted_peer,
    };
    Ok((
        crate::cache::key::primary(policy, &parts),
        consumer.is_some(),
    ))
}

/// An unsafe method (RFC 9110 9.2.1): its success invalidates the stored target.
fn unsafe_method(m: Method) -> bool {
    !matches!(
        m,
        Method::Get | Method::Head | Method::Options | Method::Trace
    )
}

/// The route's compression policy, as the guard noted it.
fn gen_compress<'g>(gen: &'g Generation, fx: &Effects) -> Option<&'g CompressPolicy> {
    let id = fx.compress?;
    match &gen.cfg.policies.list.get(id.0 as usize)?.policy {
        Policy::Compress(c) => Some(c),
        _ => None,
    }
}

/// `If-None-Match` / `If-Modified-Since` from a stored object's validators.
fn add_validators(edits: &mut HeaderEdits, obj: &Object) {
    if let Some(etag) = &obj.etag {
        edits.push_add(b"if-none-match", etag.to_vec());
    } else if let Some(lm) = &obj.last_modified {
        edits.push_add(b"if-modified-since", lm.to_vec());
    }
}

/// Answers with a stored object (a hit, a stale hit, or a refreshed one).
async fn serve<D: Downstream>(
    ex: &mut Exchange<'_>,
    down: &mut D,
    obj: &Object,
    cs: &CacheStatus,
    a: &StoredAnswer<'_>,
) -> Outcome {
    let (keep, status) = start_stored(ex, down, obj, cs, a);
    ex.facts.status = status;
    match down.end_response().await {
        Ok(()) => Outcome::Done(keep),
        Err(_) => Outcome::Done(false),
    }
}

/// Starts one background request that revalidates `hit` (stale-while-revalidate), unless one
/// is already running for its key. Returns whether this request started it.
fn background_revalidation(
    gen: &Rc<Generation>,
    ex: &Exchange<'_>,
    route: &Route,
    fx: &Effects,
    look: &Lookup<'_>,
    hit: &Found,
) -> bool {
    let Some(core) = crate::core::current() else {
        return false;
    };
    let mut fill_key = b"revalidate\0".to_vec();
    fill_key.extend_from_slice(&hit.secondary);
    let guard = match look.store.fill(&look.key, &fill_key) {
        Fill::Leader(g) => g,
        Fill::Follower(_) => return false,
    };
    if !matches!(route.action, crate::config::Action::Proxy(_)) {
        return false;
    }
    let gen = gen.clone();
    let route_id = route.id;
    let head = ex.head.clone();
    let client = ex.client.clone();
    let host = ex.host.clone();
    let path = ex.path.to_vec();
    let captures = ex.captures.clone();
    let facts_consumer = ex.facts.consumer.clone();
    let origin = ex.facts.origin;
    let fx = fx.clone();
    let found = Found {
        object: hit.object.clone(),
        vary: hit.vary.clone(),
        secondary: hit.secondary.clone(),
    };
    let recorder_parts = (
        look.store.clone(),
        look.key.clone(),
        look.per_consumer,
        look.coding,
    );
    let timeout = look.policy.coalesce_timeout.max(Duration::from_secs(1));
    monoio::spawn(async move {
        let _guard = guard;
        let route = gen.cfg.route(route_id);
        let crate::config::Action::Proxy(p) = &route.action else {
            return;
        };
        let Some(Policy::Cache(policy)) = fx
            .cache
            .and_then(|id| gen.cfg.policies.list.get(id.0 as usize))
            .map(|n| &n.policy)
        else {
            return;
        };
        let mut ex = Exchange {
            head: &head,
            rid: core.ids.next_id(),
            path: std::borrow::Cow::Owned(path),
            close: false,
            captures,
            client: &client,
            host,
            scratch: Vec::new(),
            start: Instant::now(),
            facts: Default::default(),
        };
        ex.facts.consumer = facts_consumer;
        ex.facts.origin = origin;
        let (store, key, per_consumer, coding) = recorder_parts;
        let look = Lookup {
            store,
            policy,
            key,
            coding,
            per_consumer,
        };
        let mut sink = Discard;
        let answer = StoredAnswer {
            edits: None,
            own: Owned::default(),
            keep: false,
        };
        let fetch = look.fetch(
            &core,
            &gen,
            &mut ex,
            &mut sink,
            route,
            p,
            &fx,
            answer,
            Some(found),
            Fwd::Stale,
            None,
        );
        let _ = monoio::time::timeout(timeout, fetch).await;
    });
    true
}

/// The client side of a background revalidation: nobody reads the answer, the recorder
/// behind it stores it.
struct Discard;

impl Downstream for Discard {
    fn buffered_body(&self, _: &http1::RequestHead, _: usize) -> Option<&[u8]> {
        Some(&[])
    }
    fn consume_body(&mut self, _: usize) {}
    async fn continue_body(&mut self, _: &http1::RequestHead) -> Result<(), ProxyError> {
        Ok(())
    }
    async fn read_body(
        &mut self,
        _: &http1::RequestHead,
        _: &mut Vec<u8>,
    ) -> Result<bool, ProxyError> {
        Ok(true)
    }
    fn skip_body(&mut self, _: &http1::RequestHead) -> bool {
        true
    }
    fn start_response(&mut self, _: &Exchange<'_>, _: &Response<'_>) -> bool {
        false
    }
    async fn send_body(
        &mut self,
        _: &mut Vec<u8>,
        _: std::ops::Range<usize>,
    ) -> Result<(), ProxyError> {
        Ok(())
    }
    fn queue_body(&mut self, _: &[u8]) {}
    async fn flush(&mut self) -> Result<(), ProxyError> {
        Ok(())
    }
    async fn end_response(&mut self) -> Result<(), ProxyError> {
        Ok(())
    }
    async fn client_gone(&mut self) {
        std::future::pending::<()>().await
    }
    async fn linger(&mut self) {}
}

//! What the cache phase and the shaping layer share about stored responses: answering from a
//! stored object (`start_stored`), recording a proxied answer into the store while it streams
//! (`Recorder`), and a stale object being revalidated (`Revalidation`: refreshed on a 304,
//! served on an error within stale-if-error).
//!
//! Its own module so that `cache_phase` (which drives the lookup and builds these) and `shape`
//! (the `Downstream` layer that feeds them the upstream's head and body) both depend on it
//! instead of on each other.

use std::sync::Arc;
use std::time::Instant;

use crate::cache::key::PrimaryKey;
use crate::cache::status::CacheStatus;
use crate::cache::store::FillGuard;
use crate::cache::{conditional, control, vary, CachePolicy, Object, Store};
use crate::compress::Coding;
use crate::http1::{self, Method, ResponseHead};
use crate::policy::transform::HeaderEdits;

use super::model::Exchange;
use super::response_head::{filter_response_fields, filter_stored_fields, Owned};
use super::wire::{BodyLen, Downstream, Response};

/// Most variants (distinct `Vary` values) stored under one primary key.
pub const MAX_VARIANTS: usize = 32;

/// Most surrogate keys kept per stored response, and the longest one.
const MAX_TAGS: usize = 64;
const MAX_TAG_LEN: usize = 256;

/// What a response served from the store needs from the exchange.
#[derive(Clone)]
pub struct StoredAnswer<'d> {
    /// The route's response edits for this request.
    pub edits: Option<&'d HeaderEdits>,
    pub own: Owned,
    /// The connection would stay open after the answer.
    pub keep: bool,
}

/// The object is stale, but within its stale-if-error bound (and not must-revalidate).
pub fn may_serve_on_error(obj: &Object) -> bool {
    !obj.must_revalidate
        && obj
            .stale_for(Instant::now())
            .is_some_and(|s| s <= obj.stale_if_error)
}

/// Starts the answer from a stored object: a 304 when the client's own conditional matches,
/// the head alone for HEAD, else the whole body (queued with the head). Returns whether the
/// connection stays open and the status sent.
pub fn start_stored<D: Downstream>(
    ex: &Exchange<'_>,
    down: &mut D,
    obj: &Object,
    cs: &CacheStatus,
    a: &StoredAnswer<'_>,
) -> (bool, u16) {
    let now = Instant::now();
    let mut fields = Vec::with_capacity(obj.fields.len() + 128);
    let not_modified = conditional::not_modified(ex.head, obj);
    let status = if not_modified {
        let mut lines = Vec::new();
        conditional::not_modified_fields(obj, &mut lines);
        filter_stored_fields(&lines, a.edits, &a.own, &mut fields);
        304
    } else {
        filter_stored_fields(&obj.fields, a.edits, &a.own, &mut fields);
        obj.status
    };
    http1::write_header(
        &mut fields,
        b"age",
        obj.age(now).as_secs().to_string().as_bytes(),
    );
    crate::cache::status::write(&mut fields, cs);
    let bodiless = not_modified || obj.status == 204 || ex.head.method == Method::Head;
    let body = if bodiless {
        if ex.head.method == Method::Head && !not_modified && obj.status != 204 {
            http1::write_header(
                &mut fields,
                b"content-length",
                obj.body.len().to_string().as_bytes(),
            );
        }
        BodyLen::Bare
    } else {
        BodyLen::Length(obj.body.len() as u64)
    };
    let r = Response {
        status,
        fields: &fields,
        body,
        keep: a.keep,
    };
    let keep = down.start_response(ex, &r);
    if !bodiless {
        down.queue_body(&obj.body);
    }
    (keep, status)
}

/// Records a proxied response into the store while it streams to the client. Bodies past the
/// policy's size limit are dropped as soon as they cross it (never buffered whole).
pub struct Recorder<'p> {
    store: Arc<Store>,
    key: PrimaryKey,
    policy: &'p CachePolicy,
    per_consumer: bool,
    coding_token: Option<&'static str>,
    /// Unix seconds the request went upstream.
    request_time: std::time::Duration,
    pending: Option<Pending>,
    body: Vec<u8>,
    over: bool,
    /// The coalescing lead for this key: dropped (waking the waiters) once the answer is
    /// stored or known not to be.
    lead: Option<FillGuard>,
    /// Request fields the route's policies removed, renamed or set on the way upstream.
    edited: Vec<Box<[u8]>>,
}

impl Recorder<'_> {
    /// The client's own `If-None-Match` / `If-Modified-Since` matches the answer being
    /// recorded: it can have a 304 while the whole body goes into the store.
    pub fn client_not_modified(&self, head: &http1::RequestHead) -> bool {
        self.pending
            .as_ref()
            .is_some_and(|p| conditional::not_modified(head, &p.object))
    }
}

/// A response being recorded: everything but its body.
struct Pending {
    object: Object,
    vary: Box<[Box<[u8]>]>,
    secondary: Box<[u8]>,
}

impl<'p> Recorder<'p> {
    /// A recorder for the answer to a request sent now under `key`. `per_consumer`: the key
    /// holds a consumer the gateway verified; `coding_token` stands for `Accept-Encoding` in
    /// the secondary key; `lead`: the coalescing lead, released once the answer is stored or
    /// known not to be.
    pub fn new(
        store: Arc<Store>,
        key: PrimaryKey,
        policy: &'p CachePolicy,
        per_consumer: bool,
        coding_token: Option<&'static str>,
        lead: Option<FillGuard>,
    ) -> Recorder<'p> {
        Recorder {
            store,
            key,
            policy,
            per_consumer,
            coding_token,
            request_time: crate::civil::unix_now_precise(),
            pending: None,
            body: Vec::new(),
            over: false,
            lead,
            edited: Vec::new(),
        }
    }

    /// An answer that varies on a request field the route's policies edited (`edits`: a
    /// forward-auth `x-user`, a consumer header, a removed credential) is not stored: its
    /// secondary key would hold the client's value of that field, not the one the upstream
    /// saw, and one user's answer would be served to another.
    pub fn varying_not_on(mut self, edits: &HeaderEdits) -> Self {
        let renamed = edits.rename.iter().flat_map(|(f, t)| [&f[..], &t[..]]);
        let set = edits.add.iter().map(|(n, _)| &n[..]);
        let removed = edits.remove.iter().map(|n| &n[..]);
        self.edited = removed.chain(renamed).chain(set).map(Box::from).collect();
        self
    }

    /// Decides from the upstream's head whether the response is stored (`Err`: why not, for
    /// `Cache-Status`). `coding`: the response is compressed so; `vary`: it varies on
    /// `Accept-Encoding`.
    pub fn head(
        &mut self,
        ex: &Exchange<'_>,
        resp: &ResponseHead,
        coding: Option<Coding>,
        varies: bool,
    ) -> Result<(), &'static str> {
        if let http1::BodyFraming::Length(n) = resp.body {
            if coding.is_none() && n > self.policy.max_object_bytes {
                return Err("too-large");
            }
        }
        let mut fields = Vec::with_capacity(512);
        filter_response_fields(resp, None, &Owned::default(), &mut fields);
        let mut fields = strip(&fields, &[b"age", b"content-length"]);
        if let Some(c) = coding {
            let plain = std::mem::take(&mut fields);
            crate::compress::rewrite_fields(c, &plain, &mut fields);
        }
        if varies {
            let plain = std::mem::take(&mut fields);
            crate::compress::add_vary(&plain, &mut fields);
        }
        let response_time = crate::civil::unix_now_precise();
        let fresh = control::storable(
            self.policy,
            ex.head,
            self.per_consumer,
            resp,
            &fields,
            self.request_time,
            response_time,
        )?;
        let vary = vary::names(&fields).ok_or("vary")?;
        // Fields the gateway itself writes upstream (the client address, the request id)
        // count as edited too: the upstream saw the gateway's value, not the client's.
        let edited = |n: &[u8]| {
            self.edited.iter().any(|e| e.eq_ignore_ascii_case(n))
                || super::upstream_head::managed_request_header(n)
        };
        if vary.iter().any(|n| edited(n)) {
            return Err("vary-edited");
        }
        let secondary = vary::secondary(&vary, ex.head, self.coding_token);
        if let Some(entry) = self.store.get(&self.key) {
            // Bounded variants per key: an upstream varying on a field clients choose freely
            // (User-Agent, a cookie) cannot turn one URL into thousands of objects.
            // At the bound, a new variant takes a stale one's slot; while every one is fresh
            // it is not stored.
            let new_variant = entry.vary != vary || entry.find(&secondary).is_none();
            if entry.vary == vary
                && new_variant
                && entry.variants.len() >= MAX_VARIANTS
                && !entry.has_stale(Instant::now())
            {
                return Err("vary-limit");
            }
        }
        let field = |n: &[u8]| crate::cache::object::field(&fields, n).map(Box::<[u8]>::from);
        let object = Object {
            status: resp.status,
            etag: field(b"etag"),
            last_modified: field(b"last-modified"),
            tags: tags(resp, &self.policy.tag_header),
            resource: self.key.resource().into(),
            fields: fields.into(),
            body: bytes::Bytes::new(),
            stored_at: Instant::now(),
            initial_age: fresh.initial_age,
            fresh_for: fresh.fresh_for,
            stale_while_revalidate: fresh.stale_while_revalidate,
            stale_if_error: fresh.stale_if_error,
            must_revalidate: fresh.must_revalidate,
            no_cache: fresh.no_cache,
        };
        self.pending = Some(Pending {
            object,
            vary,
            secondary,
        });
        Ok(())
    }

    /// Appends body bytes as the client gets them.
    pub fn body(&mut self, bytes: &[u8]) {
        if self.over || self.pending.is_none() {
            return;
        }
        if (self.body.len() + bytes.len()) as u64 > self.policy.max_object_bytes {
            self.over = true;
            self.body = Vec::new();
            self.lead = None;
            return;
        }
        self.body.extend_from_slice(bytes);
    }

    /// The response ended cleanly: store it (unless it grew past the limit).
    pub fn finish(self) {
        let Some(mut p) = self.pending else { return };
        if self.over {
            return;
        }
        // Exact size: `Bytes` keeps a Vec's spare capacity, which the byte bound cannot see.
        let mut body = self.body;
        body.shrink_to_fit();
        p.object.body = bytes::Bytes::from(body);
        self.store
            .put(&self.key, p.vary, p.secondary, Arc::new(p.object));
    }
}

/// `fields` without the lines named in `drop`.
fn strip(fields: &[u8], drop: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(fields.len());
    for (n, v) in crate::cache::object::field_lines(fields) {
        if !drop.iter().any(|d| n.eq_ignore_ascii_case(d)) {
            http1::write_header(&mut out, n, v);
        }
    }
    out
}

/// The surrogate keys in the upstream's tag header (space-separated), bounded.
fn tags(resp: &ResponseHead, header: &[u8]) -> Box<[Box<[u8]>]> {
    let mut out: Vec<Box<[u8]>> = Vec::new();
    if header.is_empty() {
        return out.into();
    }
    for (n, v) in resp.headers() {
        if !n.eq_ignore_ascii_case(header) {
            continue;
        }
        for t in v.split(|b| b.is_ascii_whitespace()) {
            if !t.is_empty() && t.len() <= MAX_TAG_LEN && out.len() < MAX_TAGS {
                out.push(t.into());
            }
        }
    }
    out.into()
}

/// A stale object being revalidated: served again (refreshed) on a 304, or as it is on a 5xx
/// within its stale-if-error bound.
pub struct Revalidation {
    pub object: Arc<Object>,
    store: Arc<Store>,
    key: PrimaryKey,
    vary: Box<[Box<[u8]>]>,
    secondary: Box<[u8]>,
    policy: Arc<CachePolicy>,
    request_time: std::time::Duration,
}

impl Revalidation {
    /// Revalidates `object`, stored under `key` as the variant `secondary` of `vary`, with a
    /// request sent now.
    pub fn new(
        object: Arc<Object>,
        store: Arc<Store>,
        key: PrimaryKey,
        vary: Box<[Box<[u8]>]>,
        secondary: Box<[u8]>,
        policy: Arc<CachePolicy>,
    ) -> Revalidation {
        Revalidation {
            object,
            store,
            key,
            vary,
            secondary,
            policy,
            request_time: crate::civil::unix_now_precise(),
        }
    }

    /// The stored object refreshed by the upstream's 304 (RFC 9111 4.3.4), stored in its place.
    /// A 304 naming another representation (its `ETag` does not match the stored one) updates
    /// nothing: this client gets the stored answer as it was, and the entry is dropped so the
    /// next request fetches the representation the upstream now has.
    pub fn refreshed(&self, resp: &ResponseHead) -> Arc<Object> {
        let old = &self.object;
        if !conditional::updates_stored(old.etag.as_deref(), resp) {
            self.store.remove(&self.key);
            return old.clone();
        }
        let mut fields = Vec::with_capacity(old.fields.len() + 64);
        conditional::refresh_fields(&old.fields, resp, &mut fields);
        let fresh = control::freshness(
            &self.policy,
            &fields,
            resp.header("age"),
            self.request_time,
            crate::civil::unix_now_precise(),
        );
        let field = |n: &[u8]| crate::cache::object::field(&fields, n).map(Box::<[u8]>::from);
        let obj = Arc::new(Object {
            status: old.status,
            etag: field(b"etag").or_else(|| old.etag.clone()),
            last_modified: field(b"last-modified").or_else(|| old.last_modified.clone()),
            tags: old.tags.clone(),
            resource: old.resource.clone(),
            body: old.body.clone(),
            fields: fields.into(),
            stored_at: Instant::now(),
            initial_age: fresh.initial_age,
            fresh_for: fresh.fresh_for,
            stale_while_revalidate: fresh.stale_while_revalidate,
            stale_if_error: fresh.stale_if_error,
            must_revalidate: fresh.must_revalidate,
            no_cache: fresh.no_cache,
        });
        let d = control::response_directives(&obj.fields);
        if d.no_store || d.private || d.overflow {
            // The upstream withdrew permission to store it: this client gets it, nobody else.
            self.store.remove(&self.key);
        } else {
            self.store.put(
                &self.key,
                self.vary.clone(),
                self.secondary.clone(),
                obj.clone(),
            );
        }
        obj
    }

    /// The upstream failed: may the stale object answer instead?
    pub fn may_serve_on_error(&self) -> bool {
        may_serve_on_error(&self.object)
    }

    /// This revalidation, now serving `obj`.
    pub fn serving(self, obj: Arc<Object>) -> Revalidation {
        Revalidation {
            object: obj,
            ..self
        }
    }
}

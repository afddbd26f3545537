//! Cache-Control, Expires, Age and Date: whether a shared cache may store a response and how
//! long it stays fresh (RFC 9111 sections 3, 4.2, 5.2), and what the request's own directives
//! allow.
//!
//! SEAM (lane semantics completes this): the signatures are the contract.

use std::time::Duration;

use crate::http1::{RequestHead, ResponseHead};

use super::policy::CachePolicy;

/// The request's own cache directives (RFC 9111 5.2.1), and `Pragma: no-cache`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RequestDirectives {
    /// `no-store`: the response is neither served from nor stored in the cache.
    pub no_store: bool,
    /// `no-cache` (or `Pragma: no-cache`): a stored response is revalidated before use.
    pub no_cache: bool,
    pub max_age: Option<u64>,
    /// `max-stale` (`Some(None)`: any staleness).
    pub max_stale: Option<Option<u64>>,
    pub min_fresh: Option<u64>,
    pub only_if_cached: bool,
}

/// Reads the request's directives.
pub fn request(head: &RequestHead) -> RequestDirectives {
    let mut d = RequestDirectives::default();
    for (n, v) in head.headers() {
        if n.eq_ignore_ascii_case(b"cache-control") {
            for item in v.split(|&b| b == b',') {
                let item = item.trim_ascii();
                if item.eq_ignore_ascii_case(b"no-store") {
                    d.no_store = true;
                } else if item.eq_ignore_ascii_case(b"no-cache") {
                    d.no_cache = true;
                }
            }
        }
    }
    d
}

/// How a storable response is kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Freshness {
    pub fresh_for: Duration,
    pub initial_age: Duration,
    pub stale_while_revalidate: Duration,
    pub stale_if_error: Duration,
    pub must_revalidate: bool,
    pub no_cache: bool,
}

/// Why a response was not stored (the `Cache-Status` `detail`).
pub type NotStored = &'static str;

/// Whether a shared cache may store `resp` (the answer to `req`) under `policy`, and how
/// fresh it is. `authenticated`: the request carried credentials (RFC 9111 3.5). `fields`:
/// the field lines that would be stored (freshness is computed from them). Times:
/// `request_time` / `response_time` as Unix seconds for the `Date` / `Age` arithmetic.
pub fn storable(
    policy: &CachePolicy,
    req: &RequestHead,
    authenticated: bool,
    resp: &ResponseHead,
    fields: &[u8],
    request_time: u64,
    response_time: u64,
) -> Result<Freshness, NotStored> {
    let _ = (req, authenticated);
    if !policy.stores_status(resp.status) {
        return Err("status");
    }
    Ok(freshness(policy, fields, request_time, response_time))
}

/// The freshness of a response with these field lines (one to store, or a stored one
/// refreshed by an upstream 304)
/// under `policy`: lifetime from `s-maxage`, `max-age`, `Expires` − `Date`, else the policy's
/// TTL (always the TTL when the policy does not respect Cache-Control); the age it arrived
/// with (RFC 9111 4.2.3); its stale bounds (the policy's bounds cap the directives).
pub fn freshness(
    policy: &CachePolicy,
    fields: &[u8],
    request_time: u64,
    response_time: u64,
) -> Freshness {
    let _ = (fields, request_time, response_time);
    Freshness {
        fresh_for: policy.ttl,
        initial_age: Duration::ZERO,
        stale_while_revalidate: policy.stale_while_revalidate.unwrap_or_default(),
        stale_if_error: policy.stale_if_error.unwrap_or_default(),
        must_revalidate: false,
        no_cache: false,
    }
}

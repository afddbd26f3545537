//! Traffic management on the request path: which upstream of a route's weighted `split` takes
//! the request (sticky by a cookie or header when configured), and the hashed balancing key a
//! `balance = "hash"` upstream picks its target by.
//!
//! Both hash with `resilience::stable_hash` (a fixed key), so the same key value lands on the
//! same upstream and target on every worker and after a restart. A route without a split and
//! an upstream without hashing pay one branch each.

use crate::config::{Balance, KeySource, ProxyAction, UpstreamId};
use crate::resilience::{rng, stable_hash};
use crate::upstream::UpstreamState;

use super::model::Exchange;

/// The upstream this request goes to: the route's `upstream`, or its split's weighted choice
/// (the sticky key's hash placed in the weights; no key: a random point).
#[inline]
pub fn choose_upstream(p: &ProxyAction, ex: &Exchange<'_>) -> UpstreamId {
    match &p.split {
        None => p.upstream,
        Some(s) => {
            let sticky = s.sticky.as_ref().and_then(|k| key_hash(k, ex));
            let point = match sticky {
                Some(h) => h % s.total.max(1),
                None => rng::below(s.total),
            };
            let mut acc = 0u64;
            for &(id, w) in &s.arms {
                acc += u64::from(w);
                if point < acc {
                    return id;
                }
            }
            p.upstream
        }
    }
}

/// The hashed balancing key for upstream `us` (hash upstreams whose key the request has).
#[inline]
pub fn balance_key(us: &UpstreamState, ex: &Exchange<'_>) -> Option<u64> {
    match &us.balance {
        Balance::Hash { on, .. } => key_hash(on, ex),
        _ => None,
    }
}

/// The fixed-key hash of the request's `src` value; `None` when it has none (or it is empty).
pub fn key_hash(src: &KeySource, ex: &Exchange<'_>) -> Option<u64> {
    let v: &[u8] = match src {
        KeySource::Header(name) => ex.head.header(name)?,
        KeySource::Cookie(name) => super::route::cookie(ex.head, name)?,
        KeySource::Path => &ex.path,
        KeySource::ClientIp => {
            return Some(match ex.facts.origin.client.to_canonical() {
                std::net::IpAddr::V4(a) => stable_hash::key_hash(&a.octets()),
                std::net::IpAddr::V6(a) => stable_hash::key_hash(&a.octets()),
            })
        }
    };
    (!v.is_empty()).then(|| stable_hash::key_hash(v))
}

//! The primary cache key: method, host, path, the keyed query parameters, the keyed request
//! headers and (for authenticated requests not shared across consumers) the consumer.
//!
//! The key is kept as text (`text`, compared on lookup, so a hash collision never serves
//! another resource) with its 64-bit hash (`hash`, the store's shard and map key). Values from
//! the client are length-prefixed, so no crafted value can make two different requests
//! produce the same text.

use super::policy::{CachePolicy, QueryKey};

/// A request's primary key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrimaryKey {
    pub hash: u64,
    pub text: Box<[u8]>,
    /// The `host + path + ?query` part (purge by URL and prefix).
    pub resource_len: usize,
}

impl PrimaryKey {
    /// `host + path (+ ? + keyed query)`.
    pub fn resource(&self) -> &[u8] {
        &self.text[..self.resource_len]
    }
}

/// What the key is built from.
pub struct KeyParts<'a> {
    /// Lowercase host without port.
    pub host: &'a str,
    /// Normalized path.
    pub path: &'a [u8],
    pub query: Option<&'a [u8]>,
    pub head: &'a crate::http1::RequestHead,
    /// The authenticated consumer when responses are kept per consumer.
    pub consumer: Option<&'a str>,
}

/// The primary key for a cacheable request (HEAD shares GET's key: it is served from it).
pub fn primary(policy: &CachePolicy, k: &KeyParts<'_>) -> PrimaryKey {
    let mut t = Vec::with_capacity(k.host.len() + k.path.len() + 64);
    t.extend_from_slice(k.host.as_bytes());
    t.extend_from_slice(k.path);
    match (&policy.query, k.query) {
        (QueryKey::All, Some(q)) if !q.is_empty() => {
            t.push(b'?');
            t.extend_from_slice(q);
        }
        (QueryKey::Only(names), Some(q)) => {
            let mut first = true;
            for name in names.iter() {
                let values = crate::http1::query::pairs(q).filter(|(n, _)| n == &&name[..]);
                for (_, v) in values {
                    t.push(if first { b'?' } else { b'&' });
                    first = false;
                    t.extend_from_slice(name);
                    t.push(b'=');
                    t.extend_from_slice(v);
                }
            }
        }
        _ => {}
    }
    let resource_len = t.len();
    t.extend_from_slice(b"\0GET");
    for name in policy.headers.iter() {
        t.push(0);
        t.extend_from_slice(name);
        // Every value of the field, in order, each length-prefixed.
        for (n, v) in k.head.headers() {
            if n.eq_ignore_ascii_case(name) {
                let v = v.trim_ascii();
                t.extend_from_slice(&(v.len() as u32).to_le_bytes());
                t.extend_from_slice(v);
            }
        }
    }
    if let Some(c) = k.consumer {
        t.extend_from_slice(b"\0consumer\0");
        t.extend_from_slice(&(c.len() as u32).to_le_bytes());
        t.extend_from_slice(c.as_bytes());
    }
    PrimaryKey {
        hash: hash(&t),
        text: t.into(),
        resource_len,
    }
}

/// The store's hash of a key text.
pub fn hash(bytes: &[u8]) -> u64 {
    // Fixed seeds: a key hashes the same on every worker.
    ahash::RandomState::with_seeds(0x7269_6e67, 0x7761_7920, 0x6361_6368, 0x6520_6b65)
        .hash_one(bytes)
}

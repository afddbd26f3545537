//! The primary cache key: method, host, path, the keyed query parameters, the keyed request
//! headers and (for authenticated requests not shared across consumers) the consumer; and
//! what else decides the upstream's answer: the route that served the request (its conditions
//! and rewrites), the scheme, and the `Host` value as sent upstream (port, case and trailing
//! dot included, since an upstream may write them into links and redirects).
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
    /// The route's name, the scheme the client used, and the raw `Host` value.
    pub route: &'a str,
    pub scheme: &'a str,
    pub authority: &'a [u8],
    /// The peer is a trusted proxy: the scheme and host it forwards (`X-Forwarded-Proto`,
    /// `X-Forwarded-Host`, `Forwarded`'s `proto=` and `host=`) reach the upstream, which
    /// writes them into links and redirects, so they are part of the key too.
    pub trusted_peer: bool,
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
                // Names compare decoded (`pag%65` is `page` to every upstream).
                let values = crate::http1::query::pairs(q)
                    .filter(|(n, _)| crate::http1::query::decoded_is(n, name));
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
    for (what, part) in [
        (&b"\0route"[..], k.route.as_bytes()),
        (b"\0scheme", k.scheme.as_bytes()),
        (b"\0authority", k.authority),
    ] {
        t.extend_from_slice(what);
        push_bounded(&mut t, part);
    }
    let mut values = Vec::new();
    if k.trusted_peer {
        forwarded_origin(k.head, &mut values);
        if !values.is_empty() {
            t.extend_from_slice(b"\0forwarded");
            push_bounded(&mut t, &values);
        }
    }
    for name in policy.headers.iter() {
        t.push(0);
        t.extend_from_slice(name);
        // Every value of the field, in order, each length-prefixed.
        values.clear();
        for (n, v) in k.head.headers() {
            if n.eq_ignore_ascii_case(name) {
                let v = v.trim_ascii();
                values.extend_from_slice(&(v.len() as u32).to_le_bytes());
                values.extend_from_slice(v);
            }
        }
        push_bounded(&mut t, &values);
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

/// The scheme and host a trusted proxy forwards, each value length-prefixed in arrival order:
/// every `X-Forwarded-Proto` and `X-Forwarded-Host` value, and the `proto=` and `host=`
/// parameters of `Forwarded` (its `for=` names the client, which must not split the key).
fn forwarded_origin(head: &crate::http1::RequestHead, out: &mut Vec<u8>) {
    out.clear();
    let mut push = |tag: u8, v: &[u8]| {
        let v = v.trim_ascii();
        out.push(tag);
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
        out.extend_from_slice(v);
    };
    for (n, v) in head.headers() {
        if n.eq_ignore_ascii_case(b"x-forwarded-proto") {
            push(b'p', v);
        } else if n.eq_ignore_ascii_case(b"x-forwarded-host") {
            push(b'h', v);
        } else if n.eq_ignore_ascii_case(b"forwarded") {
            for pair in v.split(|&b| b == b',' || b == b';') {
                let mut kv = pair.splitn(2, |&b| b == b'=');
                let name = kv.next().unwrap_or_default().trim_ascii();
                let value = kv.next().unwrap_or_default();
                if name.eq_ignore_ascii_case(b"proto") {
                    push(b'P', value);
                } else if name.eq_ignore_ascii_case(b"host") {
                    push(b'H', value);
                }
            }
        }
    }
}

/// Longest client-supplied key part kept as text; longer ones are kept as their SHA-256.
pub const MAX_PART: usize = 128;

/// Appends `part` (client-controlled bytes) length-prefixed as text when short, else as a
/// marker and its SHA-256: a client sending 8 KB header values cannot grow keys (and the
/// store's memory) with them, and distinct values still get distinct keys. The marker byte
/// keeps a digest from ever reading as a short value.
pub fn push_bounded(out: &mut Vec<u8>, part: &[u8]) {
    if part.len() <= MAX_PART {
        out.push(0x01);
        out.extend_from_slice(&(part.len() as u32).to_le_bytes());
        out.extend_from_slice(part);
    } else {
        out.push(0xff);
        out.extend_from_slice(ring::digest::digest(&ring::digest::SHA256, part).as_ref());
    }
}

/// The store's hash of a key text.
pub fn hash(bytes: &[u8]) -> u64 {
    // Fixed seeds: a key hashes the same on every worker.
    ahash::RandomState::with_seeds(0x7269_6e67, 0x7761_7920, 0x6361_6368, 0x6520_6b65)
        .hash_one(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(target: &str, lines: &str) -> crate::http1::RequestHead {
        let raw = format!("GET {target} HTTP/1.1\r\nhost: a\r\n{lines}\r\n");
        match crate::http1::parse_request_head(raw.as_bytes(), &Default::default()) {
            Ok(Some((h, _))) => h,
            other => panic!("parse: {other:?}"),
        }
    }

    fn policy(query: QueryKey, headers: &[&str]) -> CachePolicy {
        let raw = super::super::policy::RawCache::default();
        let mut fail = |_: std::ops::Range<usize>, _: &str, _: String| {};
        let mut p = super::super::policy::compile(&raw, &mut fail).expect("policy");
        p.query = query;
        p.headers = headers.iter().map(|h| h.as_bytes().into()).collect();
        p
    }

    fn key(p: &CachePolicy, target: &str, lines: &str, consumer: Option<&str>) -> PrimaryKey {
        let head = req(target, lines);
        let path = target.split('?').next().unwrap_or("/").as_bytes();
        primary(
            p,
            &KeyParts {
                host: "a",
                path,
                query: head.query(),
                head: &head,
                consumer,
                route: "r",
                scheme: "http",
                authority: b"a",
                trusted_peer: true,
            },
        )
    }

    #[test]
    fn route_scheme_authority_and_encoded_query_names_count() {
        let only = policy(QueryKey::Only(vec![b"page".as_slice().into()].into()), &[]);
        let base = key(&only, "/p?page=2", "", None);
        // `pag%65` is `page` to the upstream: it is keyed as such.
        assert_eq!(key(&only, "/p?pag%65=2", "", None).text, base.text);
        assert_ne!(key(&only, "/p?pag%65=666", "", None), base);
        let head = req("/p", "");
        let with = |route: &str, scheme: &str, authority: &[u8]| {
            primary(
                &only,
                &KeyParts {
                    host: "a",
                    path: b"/p",
                    query: None,
                    head: &head,
                    consumer: None,
                    route,
                    scheme,
                    authority,
                    trusted_peer: false,
                },
            )
        };
        let a = with("r", "http", b"a");
        assert_ne!(a, with("beta", "http", b"a"), "another route");
        assert_ne!(a, with("r", "https", b"a"), "another scheme");
        assert_ne!(a, with("r", "http", b"a:6666"), "another port");
        assert_eq!(a.resource(), with("r", "https", b"a:6666").resource());
    }

    #[test]
    fn query_selection_and_resource() {
        let only = policy(QueryKey::Only(vec![b"page".as_slice().into()].into()), &[]);
        let a = key(&only, "/p?page=2&utm=x", "", None);
        let b = key(&only, "/p?utm=y&page=2", "", None);
        assert_eq!(a, b);
        assert_eq!(a.resource(), b"a/p?page=2");
        assert_ne!(a, key(&only, "/p?page=3", "", None));
        let all = policy(QueryKey::All, &[]);
        assert_ne!(key(&all, "/p?a=1", "", None), key(&all, "/p?a=2", "", None));
    }

    #[test]
    fn headers_and_consumer_split_keys_and_stay_bounded() {
        let p = policy(QueryKey::All, &["x-tenant"]);
        let a = key(&p, "/", "x-tenant: a\r\n", None);
        assert_ne!(a, key(&p, "/", "x-tenant: b\r\n", None));
        assert_ne!(a, key(&p, "/", "", None));
        assert_ne!(a, key(&p, "/", "x-tenant: a\r\n", Some("alice")));
        assert_ne!(
            key(&p, "/", "", Some("alice")),
            key(&p, "/", "", Some("bob"))
        );
        let huge1 = key(
            &p,
            "/",
            &format!("x-tenant: {}\r\n", "z".repeat(8000)),
            None,
        );
        let huge2 = key(
            &p,
            "/",
            &format!("x-tenant: {}y\r\n", "z".repeat(8000)),
            None,
        );
        assert!(huge1.text.len() < 100, "{}", huge1.text.len());
        assert_ne!(huge1, huge2);
    }

    #[test]
    fn a_trusted_proxys_forwarded_scheme_and_host_count_its_client_address_does_not() {
        let p = policy(QueryKey::All, &[]);
        let base = key(&p, "/login", "x-forwarded-proto: http\r\n", None);
        assert_ne!(
            key(&p, "/login", "x-forwarded-proto: https\r\n", None),
            base
        );
        assert_ne!(
            key(
                &p,
                "/login",
                "x-forwarded-proto: http\r\nx-forwarded-host: evil\r\n",
                None
            ),
            base
        );
        let fwd = |v: &str| key(&p, "/login", &format!("forwarded: {v}\r\n"), None);
        assert_eq!(
            fwd("for=1.2.3.4;proto=https"),
            fwd("for=5.6.7.8;proto=https")
        );
        assert_ne!(
            fwd("for=1.2.3.4;proto=https"),
            fwd("for=1.2.3.4;proto=http")
        );
        assert_ne!(fwd("proto=https;host=a"), fwd("proto=https;host=b"));
    }
}

//! The `cache` policy: what a route caches and for how long. Listed by a route like any
//! policy; the pipeline loop only notes it (`Effects::cache`), and the forward phase
//! (`exchange::cache_phase`) acts on it after every other policy passed, so authentication and
//! rate limits always run before a cached answer goes out.

use std::ops::Range;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::config::errors::Fail;
use crate::config::units::{RawDuration, RawSize};

/// `cache = { ... }` as written.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawCache {
    /// Freshness when the upstream gives none (or always, with `respect_cache_control =
    /// false`).
    #[schemars(with = "Option<String>")]
    pub ttl: Option<Spanned<RawDuration>>,
    /// Honour the upstream's `Cache-Control` / `Expires` (default true).
    pub respect_cache_control: Option<bool>,
    /// Request methods served from the cache: a subset of GET and HEAD (default both).
    #[schemars(with = "Option<Vec<String>>")]
    pub methods: Option<Spanned<Vec<Spanned<String>>>>,
    /// Response statuses stored (default 200, 203, 204, 300, 301, 308, 404, 410).
    #[schemars(with = "Option<Vec<i64>>")]
    pub statuses: Option<Spanned<Vec<Spanned<i64>>>>,
    /// Query parameters in the key (default: the whole query as sent; `[]`: none).
    #[schemars(with = "Option<Vec<String>>")]
    pub query: Option<Spanned<Vec<Spanned<String>>>>,
    /// Request headers in the key.
    #[schemars(with = "Option<Vec<String>>")]
    pub headers: Option<Spanned<Vec<Spanned<String>>>>,
    /// Largest body stored (default 1MiB); a larger response streams through unstored.
    #[schemars(with = "Option<RawSize>")]
    pub max_object_bytes: Option<Spanned<RawSize>>,
    /// Share authenticated responses between consumers (default false: keyed per consumer).
    pub share_across_consumers: Option<bool>,
    /// Most staleness served while revalidating in the background (caps the upstream's
    /// `stale-while-revalidate`; default: the upstream's directive, else none).
    #[schemars(with = "Option<String>")]
    pub stale_while_revalidate: Option<Spanned<RawDuration>>,
    /// Most staleness served when the upstream fails (caps `stale-if-error` likewise).
    #[schemars(with = "Option<String>")]
    pub stale_if_error: Option<Spanned<RawDuration>>,
    /// Concurrent misses for one key wait for the first one's answer (default true) ...
    pub coalesce: Option<bool>,
    /// ... for at most this long (default 10s), then send their own request.
    #[schemars(with = "Option<String>")]
    pub coalesce_timeout: Option<Spanned<RawDuration>>,
    /// Upstream response header holding surrogate keys for purge by tag (default
    /// `surrogate-key`).
    #[schemars(with = "Option<String>")]
    pub tag_header: Option<Spanned<String>>,
}

/// Which query parameters the key holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QueryKey {
    /// The whole query string as sent.
    All,
    /// Only these parameters (names as written, compared exactly), in this order.
    Only(Box<[Box<[u8]>]>),
}

/// A compiled `cache` policy.
#[derive(Clone, Debug)]
pub struct CachePolicy {
    pub ttl: Duration,
    pub respect_cache_control: bool,
    pub get: bool,
    pub head: bool,
    /// Sorted.
    pub statuses: Box<[u16]>,
    pub query: QueryKey,
    /// Lowercase names.
    pub headers: Box<[Box<[u8]>]>,
    pub max_object_bytes: u64,
    pub share_across_consumers: bool,
    pub stale_while_revalidate: Option<Duration>,
    pub stale_if_error: Option<Duration>,
    pub coalesce: bool,
    pub coalesce_timeout: Duration,
    /// Lowercase.
    pub tag_header: Box<[u8]>,
}

/// Statuses stored when the policy names none (RFC 9110's heuristically cacheable ones that a
/// gateway sees).
pub const DEFAULT_STATUSES: &[u16] = &[200, 203, 204, 300, 301, 308, 404, 410];
pub const DEFAULT_TTL: Duration = Duration::from_secs(60);
pub const DEFAULT_MAX_OBJECT: u64 = 1 << 20;
pub const DEFAULT_COALESCE_TIMEOUT: Duration = Duration::from_secs(10);

impl CachePolicy {
    /// Whether responses with this status are stored.
    pub fn stores_status(&self, status: u16) -> bool {
        self.statuses.binary_search(&status).is_ok()
    }
}

/// Compiles `cache = { ... }`; fields in `fail` are relative to the table.
pub fn compile(raw: &RawCache, fail: &mut Fail<'_>) -> Option<CachePolicy> {
    let mut ok = true;
    let mut bad = |span: Range<usize>, field: &str, msg: String| {
        ok = false;
        fail(span, field, msg);
    };
    let ttl = raw.ttl.as_ref().map_or(DEFAULT_TTL, |t| t.get_ref().0);
    let (mut get, mut head) = (true, true);
    if let Some(m) = &raw.methods {
        (get, head) = (false, false);
        for (i, name) in m.get_ref().iter().enumerate() {
            match name.get_ref().as_str() {
                "GET" => get = true,
                "HEAD" => head = true,
                other => bad(
                    name.span(),
                    &format!("methods[{i}]"),
                    format!("{other:?} responses are not cached: use GET and/or HEAD"),
                ),
            }
        }
        if !get && !head {
            bad(m.span(), "methods", "name GET, HEAD or both".into());
        }
    }
    let mut statuses: Vec<u16> = DEFAULT_STATUSES.to_vec();
    if let Some(s) = &raw.statuses {
        statuses.clear();
        for (i, st) in s.get_ref().iter().enumerate() {
            match u16::try_from(*st.get_ref()) {
                Ok(v) if (200..600).contains(&v) && v != 206 && v != 304 => statuses.push(v),
                _ => bad(
                    st.span(),
                    &format!("statuses[{i}]"),
                    format!(
                        "{} cannot be cached: use final statuses 200..=599 other than 206 and 304",
                        st.get_ref()
                    ),
                ),
            }
        }
    }
    statuses.sort_unstable();
    statuses.dedup();
    let query = match &raw.query {
        None => QueryKey::All,
        Some(q) => QueryKey::Only(
            q.get_ref()
                .iter()
                .map(|n| n.get_ref().as_bytes().into())
                .collect(),
        ),
    };
    let mut headers: Vec<Box<[u8]>> = Vec::new();
    if let Some(h) = &raw.headers {
        for (i, name) in h.get_ref().iter().enumerate() {
            let n = name.get_ref();
            if n.is_empty() || !n.bytes().all(crate::http1::is_tchar) {
                bad(
                    name.span(),
                    &format!("headers[{i}]"),
                    format!("{n:?} is not a header name"),
                );
            } else {
                headers.push(n.to_ascii_lowercase().into_bytes().into());
            }
        }
    }
    let max_object_bytes = raw
        .max_object_bytes
        .as_ref()
        .map_or(DEFAULT_MAX_OBJECT, |m| m.get_ref().0);
    if max_object_bytes == 0 {
        if let Some(m) = &raw.max_object_bytes {
            bad(m.span(), "max_object_bytes", "must be above 0".into());
        }
    }
    let tag_header = match &raw.tag_header {
        None => b"surrogate-key".as_slice().into(),
        Some(t) if !t.get_ref().is_empty() && t.get_ref().bytes().all(crate::http1::is_tchar) => {
            t.get_ref().to_ascii_lowercase().into_bytes().into()
        }
        Some(t) => {
            bad(
                t.span(),
                "tag_header",
                format!("{:?} is not a header name", t.get_ref()),
            );
            Box::default()
        }
    };
    let p = CachePolicy {
        ttl,
        respect_cache_control: raw.respect_cache_control.unwrap_or(true),
        get,
        head,
        statuses: statuses.into(),
        query,
        headers: headers.into(),
        max_object_bytes,
        share_across_consumers: raw.share_across_consumers.unwrap_or(false),
        stale_while_revalidate: raw.stale_while_revalidate.as_ref().map(|d| d.get_ref().0),
        stale_if_error: raw.stale_if_error.as_ref().map(|d| d.get_ref().0),
        coalesce: raw.coalesce.unwrap_or(true),
        coalesce_timeout: raw
            .coalesce_timeout
            .as_ref()
            .map_or(DEFAULT_COALESCE_TIMEOUT, |d| d.get_ref().0),
        tag_header,
    };
    ok.then_some(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compile_toml(text: &str) -> (Option<CachePolicy>, Vec<String>) {
        let raw: RawCache = toml::from_str(text).expect("toml");
        let mut errors = Vec::new();
        let mut fail =
            |_: Range<usize>, field: &str, msg: String| errors.push(format!("{field}: {msg}"));
        let p = compile(&raw, &mut fail);
        (p, errors)
    }

    #[test]
    fn defaults() {
        let (p, errors) = compile_toml("");
        let p = p.expect("defaults compile");
        assert!(errors.is_empty());
        assert_eq!(p.ttl, DEFAULT_TTL);
        assert!(p.get && p.head && p.respect_cache_control && p.coalesce);
        assert!(!p.share_across_consumers);
        assert!(p.stores_status(200) && p.stores_status(404) && !p.stores_status(500));
        assert_eq!(p.query, QueryKey::All);
        assert_eq!(&*p.tag_header, b"surrogate-key");
    }

    #[test]
    fn fields_and_mistakes() {
        let (p, errors) = compile_toml(
            "ttl = \"5s\"\nstatuses = [200, 500]\nheaders = [\"Accept-Language\"]\nquery = [\"page\"]\nmethods = [\"GET\"]\n",
        );
        let p = p.expect("compiles");
        assert!(errors.is_empty());
        assert_eq!(p.ttl, Duration::from_secs(5));
        assert!(p.stores_status(500) && !p.stores_status(404));
        assert_eq!(&*p.headers[0], b"accept-language");
        assert!(p.get && !p.head);
        let (p, errors) = compile_toml(
            "statuses = [206, 304, 99]\nmethods = [\"POST\"]\nheaders = [\"bad name\"]\nmax_object_bytes = 0\ntag_header = \"\"\n",
        );
        assert!(p.is_none());
        for want in [
            "statuses[0]",
            "statuses[1]",
            "statuses[2]",
            "methods[0]",
            "headers[0]",
            "max_object_bytes",
            "tag_header",
        ] {
            assert!(
                errors.iter().any(|e| e.starts_with(want)),
                "{want}: {errors:?}"
            );
        }
    }
}

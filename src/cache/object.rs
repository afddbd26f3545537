//! One stored response: its status, the end-to-end field lines the client gets (before the
//! route's per-request edits), its body, and what freshness and validation need.
//!
//! Immutable once stored: a revalidation stores a new `Object` (same body, refreshed times).

use std::time::{Duration, Instant};

/// A stored response.
#[derive(Debug)]
pub struct Object {
    pub status: u16,
    /// End-to-end field lines (`name: value\r\n`) as the client gets them before the route's
    /// response edits: no hop-by-hop or framing fields, no `Age`, no `X-Request-Id`; a
    /// compressed variant carries its `Content-Encoding` and `Vary`.
    pub fields: Box<[u8]>,
    pub body: bytes::Bytes,
    /// When the response head arrived (`response_time`, RFC 9111 4.2.3), monotonic.
    pub stored_at: Instant,
    /// `corrected_initial_age`: the age the response already had when it arrived.
    pub initial_age: Duration,
    /// Freshness lifetime (`s-maxage`, `max-age`, `Expires`, or the policy's TTL).
    pub fresh_for: Duration,
    /// How long past `fresh_for` it may be served while one background request revalidates.
    pub stale_while_revalidate: Duration,
    /// How long past `fresh_for` it may be served when the upstream fails (5xx or no answer).
    pub stale_if_error: Duration,
    /// Never served stale without revalidation (`must-revalidate`, `proxy-revalidate`,
    /// `no-cache`): stale-while-revalidate and stale-if-error do not apply.
    pub must_revalidate: bool,
    /// Stored but revalidated before every use (`no-cache` without field names).
    pub no_cache: bool,
    pub etag: Option<Box<[u8]>>,
    pub last_modified: Option<Box<[u8]>>,
    /// Surrogate keys from the upstream's tag header (`Surrogate-Key: a b`), for purge by tag.
    pub tags: Box<[Box<[u8]>]>,
    /// `host` + path + `?` + the keyed query: what purge by URL and by prefix match.
    pub resource: Box<[u8]>,
}

impl Object {
    /// `current_age` (RFC 9111 4.2.3) at `now`.
    pub fn age(&self, now: Instant) -> Duration {
        self.initial_age + now.saturating_duration_since(self.stored_at)
    }

    /// How long it has been stale at `now` (`None` while fresh).
    pub fn stale_for(&self, now: Instant) -> Option<Duration> {
        let age = self.age(now);
        if self.no_cache {
            return Some(age.saturating_sub(self.fresh_for));
        }
        (age >= self.fresh_for).then(|| age - self.fresh_for)
    }

    /// Bytes this object holds (the store's memory bound counts these).
    pub fn weight(&self) -> usize {
        std::mem::size_of::<Object>()
            + self.fields.len()
            + self.body.len()
            + self.resource.len()
            + self.etag.as_ref().map_or(0, |e| e.len())
            + self.last_modified.as_ref().map_or(0, |e| e.len())
            + self.tags.iter().map(|t| t.len() + 16).sum::<usize>()
    }
}

/// The `(name, value)` pairs of field lines (`name: value\r\n` each, as `fields` holds them).
pub fn field_lines(fields: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    fields.split(|&b| b == b'\n').filter_map(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let colon = line.iter().position(|&b| b == b':')?;
        Some((&line[..colon], line[colon + 1..].trim_ascii()))
    })
}

/// The first value of field `name` (case-insensitive) among `fields`.
pub fn field<'a>(fields: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    field_lines(fields)
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

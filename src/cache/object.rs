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

    /// Whole seconds of freshness left at `now` for `Cache-Status` `ttl` (RFC 9211): rounded
    /// down while fresh, and at most -1 once stale (a response stale by 0.2 s is not "0 s
    /// left").
    pub fn ttl(&self, now: Instant) -> i64 {
        let age = self.age(now);
        if age < self.fresh_for {
            return (self.fresh_for - age).as_secs().min(i64::MAX as u64) as i64;
        }
        let stale = age - self.fresh_for;
        let secs = stale.as_secs() + u64::from(stale.subsec_nanos() > 0);
        -(secs.clamp(1, i64::MAX as u64) as i64)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(fresh: u64, initial: u64, no_cache: bool) -> Object {
        Object {
            status: 200,
            fields: Box::default(),
            body: bytes::Bytes::new(),
            stored_at: Instant::now(),
            initial_age: Duration::from_secs(initial),
            fresh_for: Duration::from_secs(fresh),
            stale_while_revalidate: Duration::ZERO,
            stale_if_error: Duration::ZERO,
            must_revalidate: false,
            no_cache,
            etag: None,
            last_modified: None,
            tags: Box::default(),
            resource: Box::default(),
        }
    }

    #[test]
    fn age_staleness_and_ttl() {
        let o = obj(10, 4, false);
        let now = o.stored_at + Duration::from_millis(2500);
        assert_eq!(o.age(now), Duration::from_millis(6500));
        assert_eq!(o.stale_for(now), None);
        assert_eq!(o.ttl(now), 3);
        let later = o.stored_at + Duration::from_millis(6200);
        assert_eq!(o.stale_for(later), Some(Duration::from_millis(200)));
        assert_eq!(o.ttl(later), -1, "just stale is negative, not 0");
        let huge = obj(1 << 31, 1 << 31, false);
        assert_eq!(
            huge.ttl(huge.stored_at),
            -1,
            "age == lifetime is stale (RFC 9111 4.2)"
        );
        assert!(
            obj(10, 0, true).stale_for(Instant::now()).is_some(),
            "no-cache: always revalidate"
        );
    }

    #[test]
    fn field_lines_parse_stored_form() {
        let f = b"a: 1\r\nB: two words \r\nbroken line\r\nc:3\r\n";
        let all: Vec<_> = field_lines(f).collect();
        assert_eq!(
            all,
            vec![(&b"a"[..], &b"1"[..]), (b"B", b"two words"), (b"c", b"3")]
        );
        assert_eq!(field(f, b"b"), Some(&b"two words"[..]));
    }
}

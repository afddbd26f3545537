//! Cache-Control, Expires, Age and Date: whether a shared cache may store a response and how
//! long it stays fresh (RFC 9111 sections 3, 4.2, 5.2; RFC 5861 for the stale extensions),
//! and what the request's own directives allow.
//!
//! Parsing is deliberately conservative, because the values come from clients and upstreams
//! alike: directive names are case-insensitive, values may be tokens or quoted strings (commas
//! inside quotes do not split), at most `MAX_DIRECTIVES` directives are read per message (a
//! response with more is not stored, a request with more bypasses the cache: a directive
//! hidden past the bound, such as `no-store`, is never ignored), a
//! delta-seconds value too large to represent saturates at 2^31 (RFC 9111 1.2.2), and a
//! malformed or conflicting freshness value (`max-age=abc`, two different `max-age`s, a bad
//! `Expires`) makes the response stale rather than fresh (RFC 9111 4.2.1).
//!
//! Decisions recorded here:
//! - `respect_cache_control = false` replaces the upstream's FRESHNESS information (max-age,
//!   s-maxage, Expires, no-cache, must-revalidate, the stale extensions, Age) with the policy's
//!   TTL and stale bounds, counted from when the gateway received the response; it does NOT
//!   override `no-store`, `private` or `Set-Cookie`, which are about who may see a response,
//!   not how long it stays fresh: storing them in a shared cache could leak one user's data
//!   to another, and no TTL setting should be able to do that by accident.
//! - Qualified `private="field"` is treated like `private` (not stored) and qualified
//!   `no-cache="field"` like `no-cache` (stored, revalidated before every use): removing only
//!   the named fields would be allowed, but the conservative reading can never leak them.
//! - `s-maxage` implies `proxy-revalidate` for a shared cache (RFC 9111 5.2.2.10): no stale
//!   serving from the policy's defaults; an explicit `stale-while-revalidate` /
//!   `stale-if-error` in the same response is the origin's own permission and still applies.
//!   `must-revalidate` / `proxy-revalidate` always forbid stale serving.
//! - A request with `Authorization` (RFC 9111 3.5) is stored only when the response says
//!   `public`, `s-maxage` or `must-revalidate`, unless the gateway itself verified the consumer
//!   and keys the response per consumer (`per_consumer`): then the stored response can only
//!   ever be served to the same consumer, which is exactly what a private cache would do.

use std::time::Duration;

use crate::http1::{RequestHead, ResponseHead};

use super::object::field_lines;
use super::policy::CachePolicy;

/// Delta-seconds beyond this saturate (RFC 9111 1.2.2).
pub const MAX_DELTA: u64 = 1 << 31;
/// Most directives read from one message's Cache-Control lines.
const MAX_DIRECTIVES: usize = 64;

/// The `name[=value]` directives as written (values unquoted, escapes kept), and whether
/// there were more than `MAX_DIRECTIVES` (the rest are not read).
type Directives<'a> = (Vec<(&'a [u8], Option<&'a [u8]>)>, bool);

fn directives<'a>(values: impl Iterator<Item = &'a [u8]>) -> Directives<'a> {
    let mut out = Vec::new();
    for v in values {
        let mut rest = v;
        while !rest.is_empty() {
            // Split at the first comma outside a quoted string.
            let mut quoted = false;
            let mut escaped = false;
            let mut end = rest.len();
            for (i, &b) in rest.iter().enumerate() {
                if escaped {
                    escaped = false;
                } else if quoted && b == b'\\' {
                    escaped = true;
                } else if b == b'"' {
                    quoted = !quoted;
                } else if b == b',' && !quoted {
                    end = i;
                    break;
                }
            }
            let item = rest[..end].trim_ascii();
            rest = rest.get(end + 1..).unwrap_or(&[]);
            if item.is_empty() {
                continue;
            }
            if out.len() == MAX_DIRECTIVES {
                return (out, true);
            }
            let (name, value) = match item.iter().position(|&b| b == b'=') {
                Some(eq) => {
                    let v = item[eq + 1..].trim_ascii();
                    let v = v
                        .strip_prefix(b"\"")
                        .and_then(|v| v.strip_suffix(b"\""))
                        .unwrap_or(v);
                    (item[..eq].trim_ascii(), Some(v))
                }
                None => (item, None),
            };
            out.push((name, value));
        }
    }
    (out, false)
}

/// A delta-seconds value: `Ok(None)` when absent; `Err` when malformed.
fn delta(v: Option<&[u8]>) -> Result<u64, ()> {
    let v = v.ok_or(())?;
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return Err(());
    }
    let mut n: u64 = 0;
    for &d in v {
        n = n.saturating_mul(10).saturating_add(u64::from(d - b'0'));
        if n >= MAX_DELTA {
            return Ok(MAX_DELTA);
        }
    }
    Ok(n)
}

/// A freshness value: the first occurrence, or 0 (stale) when any occurrence is malformed or
/// two occurrences disagree.
fn lifetime(slot: &mut Option<u64>, v: Option<&[u8]>) {
    let new = delta(v).unwrap_or(0);
    *slot = match *slot {
        None => Some(new),
        Some(old) if old == new => Some(old),
        Some(_) => Some(0),
    };
}

/// The request's own cache directives (RFC 9111 5.2.1), and `Pragma: no-cache`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RequestDirectives {
    /// `no-store`: the response is neither served from nor stored in the cache.
    pub no_store: bool,
    /// `no-cache` (or `Pragma: no-cache` without Cache-Control): a stored response is
    /// revalidated before use.
    pub no_cache: bool,
    /// `max-age`: the most age the client accepts (malformed: 0).
    pub max_age: Option<u64>,
    /// `max-stale` (`Some(None)`: any staleness).
    pub max_stale: Option<Option<u64>>,
    /// `min-fresh`: freshness the response must still have (malformed: ignored).
    pub min_fresh: Option<u64>,
    /// `only-if-cached`: answer from the cache or with 504.
    pub only_if_cached: bool,
}

/// Reads the request's directives.
pub fn request(head: &RequestHead) -> RequestDirectives {
    let mut d = RequestDirectives::default();
    let values = head
        .headers()
        .filter(|(n, _)| n.eq_ignore_ascii_case(b"cache-control"))
        .map(|(_, v)| v);
    let (list, overflow) = directives(values);
    d.no_store = overflow;
    for &(name, value) in &list {
        if name.eq_ignore_ascii_case(b"no-store") {
            d.no_store = true;
        } else if name.eq_ignore_ascii_case(b"no-cache") {
            d.no_cache = true;
        } else if name.eq_ignore_ascii_case(b"max-age") {
            // The smallest wins: the most conservative reading of duplicates.
            let v = delta(value).unwrap_or(0);
            d.max_age = Some(d.max_age.map_or(v, |o| o.min(v)));
        } else if name.eq_ignore_ascii_case(b"max-stale") {
            d.max_stale = match value {
                None => Some(None),
                Some(_) => delta(value).ok().map(Some).or(d.max_stale),
            };
        } else if name.eq_ignore_ascii_case(b"min-fresh") {
            if let Ok(v) = delta(value) {
                d.min_fresh = Some(d.min_fresh.map_or(v, |o| o.max(v)));
            }
        } else if name.eq_ignore_ascii_case(b"only-if-cached") {
            d.only_if_cached = true;
        }
    }
    let has_cc = head.header("cache-control").is_some();
    if !has_cc {
        // RFC 9111 5.4: Pragma counts only when Cache-Control is absent.
        let pragma = head
            .headers()
            .filter(|(n, _)| n.eq_ignore_ascii_case(b"pragma"))
            .map(|(_, v)| v);
        if directives(pragma)
            .0
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case(b"no-cache"))
        {
            d.no_cache = true;
        }
    }
    d
}

/// A response's Cache-Control directives, as far as a shared cache uses them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ResponseDirectives {
    pub no_store: bool,
    /// `no-cache`, qualified or not.
    pub no_cache: bool,
    /// `private`, qualified or not.
    pub private: bool,
    pub public: bool,
    pub must_revalidate: bool,
    pub proxy_revalidate: bool,
    pub max_age: Option<u64>,
    pub s_maxage: Option<u64>,
    pub stale_while_revalidate: Option<u64>,
    pub stale_if_error: Option<u64>,
    /// More directives than `MAX_DIRECTIVES`: not stored.
    pub overflow: bool,
}

/// Reads the Cache-Control lines among `fields` (stored-field-line form).
pub fn response_directives(fields: &[u8]) -> ResponseDirectives {
    let values = field_lines(fields)
        .filter(|(n, _)| n.eq_ignore_ascii_case(b"cache-control"))
        .map(|(_, v)| v);
    let (list, overflow) = directives(values);
    let mut d = ResponseDirectives {
        overflow,
        ..ResponseDirectives::default()
    };
    for (name, value) in list {
        let is = |s: &[u8]| name.eq_ignore_ascii_case(s);
        if is(b"no-store") {
            d.no_store = true;
        } else if is(b"no-cache") {
            d.no_cache = true;
        } else if is(b"private") {
            d.private = true;
        } else if is(b"public") {
            d.public = true;
        } else if is(b"must-revalidate") {
            d.must_revalidate = true;
        } else if is(b"proxy-revalidate") {
            d.proxy_revalidate = true;
        } else if is(b"max-age") {
            lifetime(&mut d.max_age, value);
        } else if is(b"s-maxage") {
            lifetime(&mut d.s_maxage, value);
        } else if is(b"stale-while-revalidate") {
            // Malformed or conflicting: no stale serving (the conservative side here is 0).
            lifetime(&mut d.stale_while_revalidate, value);
        } else if is(b"stale-if-error") {
            lifetime(&mut d.stale_if_error, value);
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
/// fresh it is. `per_consumer`: the gateway verified the request's consumer and the key holds
/// it, so the response is only ever served to that consumer (RFC 9111 3.5 then does not
/// apply). `fields`: the field lines that would be stored (no `Age`; freshness is computed
/// from them and `resp`'s `Age`). Times: `request_time` / `response_time` since the Unix
/// epoch, to the clock's resolution, for the `Date` / `Age` arithmetic.
pub fn storable(
    policy: &CachePolicy,
    req: &RequestHead,
    per_consumer: bool,
    resp: &ResponseHead,
    fields: &[u8],
    request_time: Duration,
    response_time: Duration,
) -> Result<Freshness, NotStored> {
    if !policy.stores_status(resp.status) {
        return Err("status");
    }
    if request(req).no_store {
        return Err("no-store");
    }
    let d = response_directives(fields);
    if d.overflow {
        return Err("cache-control");
    }
    if d.no_store {
        return Err("no-store");
    }
    if d.private {
        return Err("private");
    }
    if field_lines(fields).any(|(n, _)| n.eq_ignore_ascii_case(b"set-cookie")) {
        return Err("set-cookie");
    }
    if req.header("authorization").is_some()
        && !per_consumer
        && !(d.public || d.s_maxage.is_some() || d.must_revalidate)
    {
        return Err("authorization");
    }
    let age = resp.header("age");
    Ok(freshness(policy, fields, age, request_time, response_time))
}

/// The freshness of a response with these field lines (one to store, or a stored one
/// refreshed by an upstream 304) under `policy`: lifetime from `s-maxage`, `max-age`,
/// `Expires` − `Date`, else the policy's TTL (always the TTL when the policy does not respect
/// Cache-Control); the age it arrived with (RFC 9111 4.2.3, from `age`, the upstream's `Age`
/// value, and the fields' `Date`); its stale bounds (the policy's bounds cap the directives,
/// and stand in for them when the upstream gives none). The request and response times keep
/// their fractions: whole seconds would count a response that crossed a second boundary in
/// a millisecond as a second old.
pub fn freshness(
    policy: &CachePolicy,
    fields: &[u8],
    age: Option<&[u8]>,
    request_time: Duration,
    response_time: Duration,
) -> Freshness {
    let policy_stale = |p: Option<Duration>| p.unwrap_or_default();
    if !policy.respect_cache_control {
        return Freshness {
            fresh_for: policy.ttl,
            initial_age: Duration::ZERO,
            stale_while_revalidate: policy_stale(policy.stale_while_revalidate),
            stale_if_error: policy_stale(policy.stale_if_error),
            must_revalidate: false,
            no_cache: false,
        };
    }
    let d = response_directives(fields);
    let date = single_date(fields, b"date");
    let fresh_for = if let Some(s) = d.s_maxage {
        Duration::from_secs(s)
    } else if let Some(m) = d.max_age {
        Duration::from_secs(m)
    } else if let Some(expires) = single_value(fields, b"expires") {
        // An Expires that does not parse (e.g. "0") means already expired (RFC 9111 5.3).
        let date = match date {
            Ok(Some(d)) => d,
            _ => response_time.as_secs(),
        };
        match expires.and_then(parse_http_date) {
            Some(e) => Duration::from_secs(e.saturating_sub(date).min(MAX_DELTA)),
            None => Duration::ZERO,
        }
    } else {
        policy.ttl
    };
    // RFC 9111 4.2.3.
    let date_value = match date {
        Ok(Some(d)) => Duration::from_secs(d),
        _ => response_time,
    };
    let apparent_age = response_time.saturating_sub(date_value);
    let response_delay = response_time.saturating_sub(request_time);
    let age_value = age
        .and_then(|a| delta(Some(a.trim_ascii())).ok())
        .unwrap_or(0);
    let corrected_age = Duration::from_secs(age_value).saturating_add(response_delay);
    let initial_age = apparent_age
        .max(corrected_age)
        .min(Duration::from_secs(MAX_DELTA));

    let must_revalidate = d.must_revalidate || d.proxy_revalidate;
    // s-maxage implies proxy-revalidate: only the response's own stale directives apply.
    let policy_defaults = d.s_maxage.is_none();
    let bound = |directive: Option<u64>, cap: Option<Duration>| -> Duration {
        if must_revalidate || d.no_cache {
            return Duration::ZERO;
        }
        match (directive, cap) {
            (Some(v), Some(cap)) => Duration::from_secs(v).min(cap),
            (Some(v), None) => Duration::from_secs(v),
            (None, Some(cap)) if policy_defaults => cap,
            _ => Duration::ZERO,
        }
    };
    Freshness {
        fresh_for,
        initial_age,
        stale_while_revalidate: bound(d.stale_while_revalidate, policy.stale_while_revalidate),
        stale_if_error: bound(d.stale_if_error, policy.stale_if_error),
        must_revalidate: must_revalidate || (d.s_maxage.is_some() && !has_stale(&d)),
        no_cache: d.no_cache,
    }
}

/// The response grants stale serving itself.
fn has_stale(d: &ResponseDirectives) -> bool {
    d.stale_while_revalidate.is_some_and(|v| v > 0) || d.stale_if_error.is_some_and(|v| v > 0)
}

/// The value of `name` among `fields` when it appears: `Some(Some(v))` once (or several times
/// with one value), `Some(None)` when its lines disagree.
fn single_value<'a>(fields: &'a [u8], name: &[u8]) -> Option<Option<&'a [u8]>> {
    let mut found: Option<Option<&[u8]>> = None;
    for (n, v) in field_lines(fields) {
        if n.eq_ignore_ascii_case(name) {
            found = match found {
                None => Some(Some(v)),
                Some(Some(old)) if old == v => Some(Some(old)),
                _ => Some(None),
            };
        }
    }
    found
}

/// A date field: `Ok(None)` when absent, `Err` when malformed or conflicting.
fn single_date(fields: &[u8], name: &[u8]) -> Result<Option<u64>, ()> {
    match single_value(fields, name) {
        None => Ok(None),
        Some(Some(v)) => parse_http_date(v).map(Some).ok_or(()),
        Some(None) => Err(()),
    }
}

const MONTHS: [&[u8; 3]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];

fn month(m: &[u8]) -> Option<u32> {
    MONTHS
        .iter()
        .position(|n| n.eq_ignore_ascii_case(m))
        .map(|i| i as u32 + 1)
}

fn digits(s: &[u8]) -> Option<u32> {
    if s.is_empty() || s.len() > 4 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(s.iter().fold(0, |n, d| n * 10 + u32::from(d - b'0')))
}

/// `HH:MM:SS` as seconds of the day.
fn clock(s: &[u8]) -> Option<u64> {
    let mut it = s.split(|&b| b == b':');
    let (h, m, sec) = (it.next()?, it.next()?, it.next()?);
    if it.next().is_some() || h.len() != 2 || m.len() != 2 || sec.len() != 2 {
        return None;
    }
    let (h, m, sec) = (digits(h)?, digits(m)?, digits(sec)?);
    // 60 allows a leap second.
    (h < 24 && m < 60 && sec <= 60).then_some(u64::from(h * 3600 + m * 60 + sec))
}

fn unix(y: i64, mo: u32, d: u32, secs: u64) -> Option<u64> {
    if !(1..=31).contains(&d) || y < 1970 {
        return None;
    }
    let days = crate::civil::days_from_civil(y, mo, d);
    u64::try_from(days)
        .ok()?
        .checked_mul(86_400)?
        .checked_add(secs)
}

/// An HTTP-date (RFC 9110 5.6.7) as Unix seconds: IMF-fixdate
/// (`Sun, 06 Nov 1994 08:49:37 GMT`), and the obsolete RFC 850
/// (`Sunday, 06-Nov-94 08:49:37 GMT`) and asctime (`Sun Nov  6 08:49:37 1994`) forms. Dates
/// before 1970 and anything malformed give `None`.
pub fn parse_http_date(v: &[u8]) -> Option<u64> {
    let v = v.trim_ascii();
    if v.len() > 64 {
        return None;
    }
    let parts: Vec<&[u8]> = v.split(|&b| b == b' ').filter(|p| !p.is_empty()).collect();
    match parts.as_slice() {
        // IMF-fixdate.
        [wd, d, mo, y, t, gmt] if wd.ends_with(b",") && gmt == b"GMT" && y.len() == 4 => {
            unix(i64::from(digits(y)?), month(mo)?, digits(d)?, clock(t)?)
        }
        // RFC 850: two-digit year, read as the nearest past-or-near century (RFC 9110 5.6.7:
        // more than 50 years in the future means the previous century).
        [wd, dmy, t, gmt] if wd.ends_with(b",") && gmt == b"GMT" => {
            let mut it = dmy.split(|&b| b == b'-');
            let (d, mo, y) = (it.next()?, it.next()?, it.next()?);
            if it.next().is_some() || y.len() != 2 {
                return None;
            }
            let yy = i64::from(digits(y)?);
            let this_year = 1970 + (crate::civil::unix_now() / 31_556_952) as i64;
            let mut year = (this_year / 100) * 100 + yy;
            if year > this_year + 50 {
                year -= 100;
            }
            unix(year, month(mo)?, digits(d)?, clock(t)?)
        }
        // asctime.
        [_wd, mo, d, t, y] if y.len() == 4 => {
            unix(i64::from(digits(y)?), month(mo)?, digits(d)?, clock(t)?)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> CachePolicy {
        let raw = super::super::policy::RawCache::default();
        let mut fail = |_: std::ops::Range<usize>, _: &str, _: String| {};
        let mut p = super::super::policy::compile(&raw, &mut fail).expect("default policy");
        p.ttl = Duration::from_secs(60);
        p
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn fresh(fields: &str) -> Freshness {
        freshness(&policy(), fields.as_bytes(), None, secs(1000), secs(1000))
    }

    #[test]
    fn dates_in_all_three_forms() {
        let want = Some(784_111_777);
        assert_eq!(parse_http_date(b"Sun, 06 Nov 1994 08:49:37 GMT"), want);
        assert_eq!(parse_http_date(b"Sunday, 06-Nov-94 08:49:37 GMT"), want);
        assert_eq!(parse_http_date(b"Sun Nov  6 08:49:37 1994"), want);
        for bad in [
            &b"0"[..],
            b"-1",
            b"",
            b"Sun, 06 Nov 1994 25:49:37 GMT",
            b"Sun, 06 Foo 1994 08:49:37 GMT",
            b"Sun, 32 Nov 1994 08:49:37 GMT",
            b"Sun, 06 Nov 1994 08:49:37 PST",
            b"Sun, 06 Nov 99999999999999 08:49:37 GMT",
            "Sun, 06 Nov 1994 08:49:37 GMT\u{e9}".as_bytes(),
        ] {
            assert_eq!(
                parse_http_date(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn lifetime_precedence() {
        assert_eq!(
            fresh("cache-control: max-age=5, s-maxage=9\r\n")
                .fresh_for
                .as_secs(),
            9
        );
        assert_eq!(fresh("cache-control: max-age=5\r\n").fresh_for.as_secs(), 5);
        assert_eq!(
            fresh("Cache-Control: MAX-AGE=\"7\"\r\n")
                .fresh_for
                .as_secs(),
            7
        );
        let e = "date: Sun, 06 Nov 1994 08:49:37 GMT\r\nexpires: Sun, 06 Nov 1994 08:50:07 GMT\r\n";
        assert_eq!(fresh(e).fresh_for.as_secs(), 30);
        let both = format!("{e}cache-control: max-age=3\r\n");
        assert_eq!(fresh(&both).fresh_for.as_secs(), 3);
        assert_eq!(fresh("expires: 0\r\n").fresh_for, Duration::ZERO);
        assert_eq!(fresh("x: y\r\n").fresh_for.as_secs(), 60);
    }

    #[test]
    fn hostile_and_malformed_values_are_conservative() {
        assert_eq!(
            fresh("cache-control: max-age=abc\r\n").fresh_for,
            Duration::ZERO
        );
        assert_eq!(
            fresh("cache-control: max-age=-1\r\n").fresh_for,
            Duration::ZERO
        );
        assert_eq!(
            fresh("cache-control: max-age=5, max-age=50\r\n").fresh_for,
            Duration::ZERO
        );
        assert_eq!(
            fresh("cache-control: max-age=99999999999999999999999\r\n")
                .fresh_for
                .as_secs(),
            MAX_DELTA
        );
        // A comma inside quotes does not start a directive.
        let d = response_directives(b"cache-control: foo=\"a, no-store\", max-age=4\r\n");
        assert!(!d.no_store);
        assert_eq!(d.max_age, Some(4));
        // Unbalanced quotes, binary junk, thousands of commas: bounded, no panic.
        let mut junk = b"cache-control: ".to_vec();
        for _ in 0..4000 {
            junk.extend_from_slice(b",\"=\xff");
        }
        junk.extend_from_slice(b"\r\n");
        let _ = response_directives(&junk);
        let many = format!("cache-control: {}no-store\r\n", "x,".repeat(5000));
        // Past MAX_DIRECTIVES nothing is read, and the response is refused as a whole.
        assert!(response_directives(many.as_bytes()).overflow);
        // Empty list elements do not count.
        let commas = format!("cache-control: {}no-store\r\n", ",".repeat(5000));
        assert!(response_directives(commas.as_bytes()).no_store);
    }

    #[test]
    fn initial_age_from_age_and_date() {
        let p = policy();
        // Age 10, 2 s in flight.
        let f = freshness(&p, b"x: y\r\n", Some(b"10"), secs(1000), secs(1002));
        assert_eq!(f.initial_age.as_secs(), 12);
        // Apparent age from Date wins when larger.
        let f = freshness(
            &p,
            b"date: Thu, 01 Jan 1970 00:16:00 GMT\r\n",
            Some(b"3"),
            secs(1000),
            secs(1000),
        );
        assert_eq!(f.initial_age.as_secs(), 40);
        // A bad Age is ignored, a huge one saturates.
        assert_eq!(
            freshness(&p, b"", Some(b"x"), secs(5), secs(5)).initial_age,
            Duration::ZERO
        );
        assert_eq!(
            freshness(&p, b"", Some(b"99999999999999999"), secs(5), secs(5))
                .initial_age
                .as_secs(),
            MAX_DELTA
        );
    }

    #[test]
    fn a_response_crossing_a_second_boundary_is_not_a_second_old() {
        let p = policy();
        let ms = Duration::from_millis;
        // Sent at 999.999 s, answered at 1000.001 s, without Date or Age: 2 ms old.
        let f = freshness(&p, b"x: y\r\n", None, ms(999_999), ms(1_000_001));
        assert_eq!(f.initial_age, ms(2));
        // Date has whole seconds: the apparent age counts from the start of that second.
        let date = b"date: Thu, 01 Jan 1970 00:16:40 GMT\r\n";
        let f = freshness(&p, date, None, ms(1_000_100), ms(1_000_300));
        assert_eq!(f.initial_age, ms(300));
    }

    #[test]
    fn stale_bounds_and_revalidation() {
        let mut p = policy();
        p.stale_while_revalidate = Some(Duration::from_secs(30));
        p.stale_if_error = None;
        let f = freshness(
            &p,
            b"cache-control: max-age=1, stale-while-revalidate=100, stale-if-error=7\r\n",
            None,
            secs(0),
            secs(0),
        );
        assert_eq!(
            f.stale_while_revalidate.as_secs(),
            30,
            "capped by the policy"
        );
        assert_eq!(f.stale_if_error.as_secs(), 7);
        let f = freshness(&p, b"cache-control: max-age=1\r\n", None, secs(0), secs(0));
        assert_eq!(f.stale_while_revalidate.as_secs(), 30, "policy default");
        let f = freshness(
            &p,
            b"cache-control: max-age=1, must-revalidate, stale-if-error=7\r\n",
            None,
            secs(0),
            secs(0),
        );
        assert!(f.must_revalidate);
        assert_eq!(f.stale_if_error, Duration::ZERO);
        let f = freshness(&p, b"cache-control: s-maxage=1\r\n", None, secs(0), secs(0));
        assert!(f.must_revalidate, "s-maxage implies proxy-revalidate");
        let f = freshness(&p, b"cache-control: no-cache\r\n", None, secs(0), secs(0));
        assert!(f.no_cache);
        p.respect_cache_control = false;
        let f = freshness(
            &p,
            b"cache-control: no-cache, max-age=5\r\n",
            Some(b"50"),
            secs(0),
            secs(0),
        );
        assert_eq!(
            (f.fresh_for.as_secs(), f.no_cache, f.initial_age),
            (60, false, Duration::ZERO)
        );
    }

    fn req(lines: &str) -> RequestHead {
        let raw = format!("GET / HTTP/1.1\r\nhost: a\r\n{lines}\r\n");
        match crate::http1::parse_request_head(raw.as_bytes(), &Default::default()) {
            Ok(Some((h, _))) => h,
            other => panic!("parse: {other:?}"),
        }
    }

    #[test]
    fn request_directives() {
        let d = request(&req(
            "Cache-Control: NO-CACHE, max-age=5, min-fresh=2, max-stale\r\n",
        ));
        assert!(d.no_cache && !d.no_store);
        assert_eq!(
            (d.max_age, d.min_fresh, d.max_stale),
            (Some(5), Some(2), Some(None))
        );
        let d = request(&req(
            "cache-control: max-age=x, only-if-cached, max-stale=9\r\n",
        ));
        assert_eq!(
            (d.max_age, d.only_if_cached, d.max_stale),
            (Some(0), true, Some(Some(9)))
        );
        assert!(request(&req("pragma: no-cache\r\n")).no_cache);
        assert!(!request(&req("pragma: no-cache\r\ncache-control: max-stale\r\n")).no_cache);
        assert!(request(&req("cache-control: no-store\r\n")).no_store);
    }
}

//! Calendar quotas through Redis: a used-up quota answers 429 with the reset time, every
//! response of the policy carries the quota headers, the count is shared by every instance
//! and survives a gateway restart, the count belongs to the calendar day in the configured
//! zone (checked against values computed here, independently of the gateway's calendar code),
//! and client-chosen key values never appear raw in Redis keys.
mod common;
use common::redis::{redis_cli, RedisServer};
use common::*;

/// The `[redis]` table for `redis` with key prefix `prefix` (one per test: tests share servers).
fn redis_toml(redis: &RedisServer, prefix: &str) -> String {
    format!(
        "[redis]\nnodes = [\"{}\"]\nprefix = \"{prefix}\"\n",
        redis.addr()
    )
}

use std::time::{SystemTime, UNIX_EPOCH};

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Local midnight after `t` in a zone with a fixed offset of `off` seconds east of UTC
/// (`Etc/GMT-N` zones have no DST), and the local date of `t` as `YYYY-MM-DD`.
fn fixed_zone_day(t: i64, off: i64) -> (i64, String) {
    let local_day = (t + off).div_euclid(86_400);
    let reset = (local_day + 1) * 86_400 - off;
    (reset, date_of_day(local_day))
}

/// `YYYY-MM-DD` of a day number (days since 1970-01-01), Howard Hinnant's algorithm.
fn date_of_day(z: i64) -> String {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// RFC 3339 text of unix second `t` shown at fixed offset `off` (`+HH:MM`).
fn rfc3339_at(t: i64, off: i64) -> String {
    let local = t + off;
    let date = date_of_day(local.div_euclid(86_400));
    let s = local.rem_euclid(86_400);
    let sign = if off < 0 { '-' } else { '+' };
    let o = off.abs();
    format!(
        "{date}T{:02}:{:02}:{:02}{sign}{:02}:{:02}",
        s / 3600,
        s % 3600 / 60,
        s % 60,
        o / 3600,
        o % 3600 / 60
    )
}

fn config(redis: &RedisServer, prefix: &str, zone: &str, on_error: &str) -> String {
    format!(
        "{}\n\
         [policies.daily]\nquota = {{ key = \"header:x-client\", limit = 3, period = \"day\", \
         time_zone = \"{zone}\", on_redis_error = \"{on_error}\" }}\n\n\
         [[routes]]\nname = \"api\"\npath = \"/api\"\npolicies = [\"daily\"]\n\
         static = {{ body = \"ok\" }}\n",
        redis_toml(redis, prefix)
    )
}

fn get_as(gw: &Gateway, client: &str) -> Response {
    request(gw.addr, "GET", "/api", &[("x-client", client)], b"")
}

#[test]
fn a_used_up_quota_refuses_with_the_reset_time_on_every_instance_and_after_a_restart() {
    let redis = RedisServer::start();
    let prefix = "qt-restart";
    // Etc/GMT-5 is UTC+5 all year (POSIX signs are inverted in these names).
    let body = config(&redis, prefix, "Etc/GMT-5", "fail_closed");
    let a = Gateway::start(&body);
    let b = Gateway::start(&body);
    let off = 5 * 3600;
    let (reset, today) = fixed_zone_day(now(), off);
    for (i, gw) in [&a, &b, &a].into_iter().enumerate() {
        let r = get_as(gw, "client-one");
        assert_eq!(r.status, 200, "request {i}: {}", r.text());
        assert_eq!(r.header("x-quota-limit"), Some("3"));
        let left = (2 - i).to_string();
        assert_eq!(
            r.header("x-quota-remaining"),
            Some(left.as_str()),
            "request {i}"
        );
        assert_eq!(
            r.header("x-quota-reset"),
            Some(rfc3339_at(reset, off).as_str())
        );
    }
    // The fourth, on either instance: refused until the zone's next midnight.
    for gw in [&b, &a] {
        let r = get_as(gw, "client-one");
        assert_eq!(r.status, 429, "{}", r.text());
        assert_eq!(r.header("x-quota-remaining"), Some("0"));
        assert_eq!(
            r.header("x-quota-reset"),
            Some(rfc3339_at(reset, off).as_str())
        );
        let retry: i64 = r.header("retry-after").unwrap().parse().unwrap();
        let expect = reset - now();
        assert!(
            (retry - expect).abs() <= 2,
            "retry-after {retry}, expected ~{expect}"
        );
    }
    // Another client has its own quota; a hostile 8 KB value is just another key.
    assert_eq!(get_as(&a, "client-two").status, 200);
    let long = "client\",;{}".repeat(800);
    assert_eq!(get_as(&a, &long).status, 200);

    // A restart of both instances keeps the count (it lives in Redis).
    drop(a);
    drop(b);
    let c = Gateway::start(&body);
    let r = get_as(&c, "client-one");
    assert_eq!(r.status, 429, "after restart: {}", r.text());
    assert_eq!(get_as(&c, "client-two").status, 200);

    // The counter is keyed by the local date in the zone, expires after the reset, and holds
    // no client-chosen bytes.
    let keys = redis_cli(&redis.addr(), &["KEYS", &format!("{prefix}:*")]);
    let keys: Vec<&str> = keys.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(keys.len(), 3, "{keys:?}");
    for k in &keys {
        assert!(
            k.ends_with(&format!(":{today}")),
            "{k} should end with {today}"
        );
        assert!(!k.contains("client"), "raw client value in key {k}");
        let at: i64 = redis_cli(&redis.addr(), &["EXPIRETIME", k])
            .trim()
            .parse()
            .unwrap();
        assert!(
            at > reset && at <= reset + 3600,
            "{k} expires at {at}, reset {reset}"
        );
    }
}

#[test]
fn the_count_belongs_to_the_calendar_day_of_the_configured_zone() {
    let redis = RedisServer::start();
    let prefix = "qt-zones";
    // UTC+14 and UTC-12 are 26 hours apart: at any moment their local dates differ.
    let body = format!(
        "{}\n\
         [policies.east]\nquota = {{ key = \"ip\", limit = 2, period = \"day\", time_zone = \"Etc/GMT-14\" }}\n\
         [policies.west]\nquota = {{ key = \"ip\", limit = 2, period = \"day\", time_zone = \"Etc/GMT+12\" }}\n\n\
         [[routes]]\nname = \"east\"\npath = \"/east\"\npolicies = [\"east\"]\nstatic = {{ body = \"ok\" }}\n\n\
         [[routes]]\nname = \"west\"\npath = \"/west\"\npolicies = [\"west\"]\nstatic = {{ body = \"ok\" }}\n",
        redis_toml(&redis, prefix)
    );
    let gw = Gateway::start(&body);
    let t = now();
    let (east_reset, east_day) = fixed_zone_day(t, 14 * 3600);
    let (west_reset, west_day) = fixed_zone_day(t, -12 * 3600);
    assert_ne!(east_day, west_day);
    let e = get(gw.addr, "/east");
    let w = get(gw.addr, "/west");
    assert_eq!(
        e.header("x-quota-reset"),
        Some(rfc3339_at(east_reset, 14 * 3600).as_str())
    );
    assert_eq!(
        w.header("x-quota-reset"),
        Some(rfc3339_at(west_reset, -12 * 3600).as_str())
    );
    let keys = redis_cli(&redis.addr(), &["KEYS", &format!("{prefix}:*")]);
    let mut labels: Vec<&str> = keys
        .lines()
        .filter(|l| !l.is_empty())
        .map(|k| k.rsplit(':').next().unwrap())
        .collect();
    labels.sort();
    let mut expect = vec![east_day.as_str(), west_day.as_str()];
    expect.sort();
    assert_eq!(labels, expect);

    // Yesterday's used-up count (as left by the previous period) does not refuse today; today's
    // key, once full, does: the count starts afresh at the zone's midnight, not on a rolling
    // window.
    let east_key = keys
        .lines()
        .find(|k| k.ends_with(&east_day))
        .unwrap()
        .to_string();
    let yesterday = date_of_day((t + 14 * 3600).div_euclid(86_400) - 1);
    let old_key = east_key.replace(&east_day, &yesterday);
    redis_cli(&redis.addr(), &["SET", &old_key, "1000"]);
    assert_eq!(get(gw.addr, "/east").status, 200);
    redis_cli(&redis.addr(), &["SET", &east_key, "2"]);
    let r = get(gw.addr, "/east");
    assert_eq!(r.status, 429);
    assert_eq!(r.header("x-quota-remaining"), Some("0"));
}

#[test]
fn redis_down_fails_open_or_closed_as_configured() {
    let mut redis = RedisServer::start();
    let open = Gateway::start(&config(&redis, "qt-open", "UTC", "fail_open"));
    let closed = Gateway::start(&config(&redis, "qt-closed", "UTC", "fail_closed"));
    assert_eq!(get_as(&open, "x").status, 200);
    assert_eq!(get_as(&closed, "x").status, 200);
    redis.kill();
    let r = get_as(&open, "x");
    assert_eq!(r.status, 200, "fail_open admits: {}", r.text());
    assert_eq!(r.header("x-quota-limit"), None);
    let r = get_as(&closed, "x");
    assert_eq!(r.status, 503, "fail_closed refuses: {}", r.text());
    assert_eq!(r.header("retry-after"), Some("1"));
    redis.restart();
    let ok = wait_for(std::time::Duration::from_secs(10), || {
        get_as(&closed, "x").status == 200
    });
    assert!(ok.is_some(), "recovers without a restart");
}

/// A stalled Redis (frozen: connections open, nothing answers) held every quota request for
/// the whole command `timeout`: nothing remembered the failure, unlike global limits, which stop
/// asking for a second. Under load that piles up connections and latency. Now one request per
/// worker and second waits; the others are answered per `on_redis_error` at once.
#[test]
fn a_stalled_redis_costs_one_timeout_per_worker_and_second() {
    let redis = RedisServer::start();
    let body = config(&redis, "qt-stall", "UTC", "fail_open").replacen(
        "[redis]\n",
        "[redis]\ntimeout = \"400ms\"\n",
        1,
    );
    let gw = Gateway::start_workers(&body, 1);
    let mut c = Conn::open(gw.addr);
    assert_eq!(
        c.request("GET", "/api", &[("x-client", "a")], b"").status,
        200
    );
    redis.pause();
    let took: Vec<std::time::Duration> = (0..8)
        .map(|_| {
            let t = std::time::Instant::now();
            let r = c.request("GET", "/api", &[("x-client", "a")], b"");
            assert_eq!(r.status, 200, "fail_open admits: {}", r.text());
            t.elapsed()
        })
        .collect();
    redis.resume();
    let waited = took
        .iter()
        .filter(|d| **d >= std::time::Duration::from_millis(300))
        .count();
    assert!(
        (1..=2).contains(&waited),
        "requests that waited for the timeout: {waited} of {took:?}"
    );
}

#[test]
fn a_quota_without_redis_is_a_config_error() {
    let (code, _, err) = check_config(
        "[policies.q]\nquota = { key = \"consumer\", limit = 5, period = \"month\" }\n\n\
         [[routes]]\nname = \"r\"\npath = \"/\"\npolicies = [\"q\"]\nstatic = { body = \"ok\" }\n",
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("policies.q.quota"), "{err}");
    assert!(err.contains("[redis]"), "{err}");
}

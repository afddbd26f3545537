//! Usage metering across instances: three gateways count requests per consumer, route and
//! status class, flush to one Redis in batches, and `ringway usage` exports totals that add
//! up exactly to what was sent (2xx and 4xx, named and anonymous, routed and unrouted), in
//! CSV and JSON. Two instances stop with SIGTERM (their last counts are flushed on the way
//! out), one keeps running (its counts arrive with the periodic flush). Consumer names with
//! commas, quotes, non-ASCII and 3 KB stay one CSV field and never appear in a Redis key.
mod common;
use common::redis::{redis_cli, RedisCluster, RedisServer};
use common::*;

/// The `[redis]` table for `redis` with key prefix `prefix` (one per test: tests share servers).
fn redis_toml(redis: &RedisServer, prefix: &str) -> String {
    format!(
        "[redis]\nnodes = [\"{}\"]\nprefix = \"{prefix}\"\n",
        redis.addr()
    )
}

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const SECRET: &str = "usage-test-secret-0123456789abcdef";

/// (consumer, route, class) → requests.
type Totals = BTreeMap<(String, String, String), u64>;

/// An HS256 token whose `sub` (the consumer) is `consumer`. JWT consumers may be any safe
/// header value (commas, quotes, non-ASCII, up to 4 KB), unlike key-file names.
fn token_for(consumer: &str) -> String {
    use base64::Engine;
    let enc = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let head = enc(br#"{"alg":"HS256","typ":"JWT"}"#);
    let claims = serde_json::json!({ "sub": consumer, "exp": exp });
    let input = format!("{head}.{}", enc(claims.to_string().as_bytes()));
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, SECRET.as_bytes());
    let sig = enc(ring::hmac::sign(&key, input.as_bytes()).as_ref());
    format!("{input}.{sig}")
}

/// RFC 4180: fields separated by commas, quoted fields may hold commas, CRLF and doubled
/// quotes; records end with CRLF.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') if field.is_empty() => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut field)),
            (false, '\r') if chars.peek() == Some(&'\n') => {
                chars.next();
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            (false, c) => field.push(c),
        }
    }
    assert!(field.is_empty() && row.is_empty(), "CSV must end with CRLF");
    rows
}

/// A config file holding `body` behind a listener (for the export after the gateway is gone).
fn body_file(body: &str) -> tempfile::TempPath {
    let f = tempfile::NamedTempFile::new().unwrap();
    let listener = format!("[[listeners]]\naddress = \"127.0.0.1:{}\"\n", free_port());
    std::fs::write(f.path(), format!("{listener}{body}")).unwrap();
    f.into_temp_path()
}

fn export(config: &Path, format: &str) -> String {
    let day = |offset: i64| {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        date_of_day(t.div_euclid(86_400) + offset)
    };
    let out = Command::new(bin())
        .args(["usage", "--config"])
        .arg(config)
        .args(["--from", &day(-1), "--to", &day(1), "--format", format])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

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

fn csv_totals(text: &str) -> Totals {
    let rows = parse_csv(text);
    assert_eq!(
        rows[0],
        ["date", "consumer", "route", "status_class", "requests"]
    );
    let mut t = Totals::new();
    for r in &rows[1..] {
        assert_eq!(r.len(), 5, "{r:?}");
        let n: u64 = r[4].parse().unwrap();
        *t.entry((r[1].clone(), r[2].clone(), r[3].clone()))
            .or_default() += n;
    }
    t
}

fn json_totals(text: &str) -> Totals {
    let v: serde_json::Value = serde_json::from_str(text).unwrap();
    let mut t = Totals::new();
    for r in v.as_array().unwrap() {
        let s = |k: &str| r[k].as_str().unwrap_or("").to_string();
        let n = r["requests"].as_u64().unwrap();
        *t.entry((s("consumer"), s("route"), s("status_class")))
            .or_default() += n;
    }
    t
}

#[test]
fn counts_from_three_instances_add_up_exactly_in_csv_and_json() {
    let redis = RedisServer::start();
    let long = "L".repeat(3000);
    let consumers = ["alice", "evil, \"quoted\" name", "zoë", long.as_str()];
    let keys: Vec<String> = consumers.iter().map(|c| token_for(c)).collect();
    let body = format!(
        "{}\n[usage]\n\n\
         [policies.key]\njwt = {{ secret = \"{SECRET}\", algorithms = [\"HS256\"] }}\n\n\
         [[routes]]\nname = \"ok\"\npath = \"/ok\"\npolicies = [\"key\"]\nstatic = {{ body = \"ok\" }}\n\n\
         [[routes]]\nname = \"nope\"\npath = \"/nope\"\npolicies = [\"key\"]\n\
         static = {{ status = 404, body = \"no\" }}\n\n\
         [[routes]]\nname = \"open\"\npath = \"/open\"\nstatic = {{ body = \"ok\" }}\n",
        redis_toml(&redis, "ut-exact")
    );
    let mut gws: Vec<Gateway> = (0..3).map(|_| Gateway::start(&body)).collect();
    let mut expect = Totals::new();
    let mut add = |c: &str, r: &str, class: &str| {
        *expect
            .entry((c.to_string(), r.to_string(), class.to_string()))
            .or_default() += 1;
    };
    for (i, gw) in gws.iter().enumerate() {
        for (c, key) in consumers.iter().zip(&keys) {
            let auth = format!("Bearer {key}");
            for _ in 0..(3 + i) {
                let r = request(gw.addr, "GET", "/ok", &[("authorization", &auth)], b"");
                assert_eq!(r.status, 200);
                add(c, "ok", "2xx");
            }
            let r = request(gw.addr, "GET", "/nope", &[("authorization", &auth)], b"");
            assert_eq!(r.status, 404);
            add(c, "nope", "4xx");
        }
        for _ in 0..2 {
            let r = request(
                gw.addr,
                "GET",
                "/ok",
                &[("authorization", "Bearer wrong")],
                b"",
            );
            assert_eq!(r.status, 401);
            add("", "ok", "4xx");
            assert_eq!(get(gw.addr, "/open").status, 200);
            add("", "open", "2xx");
            assert_eq!(get(gw.addr, "/no-such-route").status, 404);
            add("", "", "4xx");
        }
    }
    // Two instances drain and exit (their last counts flush on the way out)...
    for gw in &mut gws[..2] {
        gw.signal(libc::SIGTERM);
        let st = gw
            .wait_exit(Duration::from_secs(15))
            .expect("exits after SIGTERM");
        assert!(st.success());
    }
    // ...the third flushes in the background.
    let sent: u64 = expect.values().sum();
    let done = wait_for(Duration::from_secs(10), || {
        csv_totals(&export(&gws[2].config_path, "csv"))
            .values()
            .sum::<u64>()
            >= sent
    });
    assert!(done.is_some(), "usage never reached {sent}");
    std::thread::sleep(Duration::from_millis(1500)); // no late double count either
    let csv = export(&gws[2].config_path, "csv");
    assert_eq!(
        csv_totals(&csv),
        expect,
        "CSV:\n{}",
        &csv[..csv.len().min(2000)]
    );
    assert!(
        csv.contains("\"evil, \"\"quoted\"\" name\""),
        "quoted field"
    );
    assert_eq!(json_totals(&export(&gws[2].config_path, "json")), expect);

    // Names live in hash fields, never in key names.
    let all = redis_cli(&redis.addr(), &["KEYS", "ut-exact:*"]);
    for line in all.lines().filter(|l| !l.is_empty()) {
        assert!(line.len() < 100, "long key {line}");
        assert!(
            !line.contains("alice") && !line.contains("evil"),
            "raw name in {line}"
        );
    }
}

#[test]
fn quota_and_usage_on_a_cluster() {
    let cluster = RedisCluster::shared();
    let body = format!(
        "[redis]\nnodes = [\"{}\"]\ncluster = true\nprefix = \"ut-cluster\"\n\n[usage]\n\n\
         [policies.q]\nquota = {{ key = \"header:x-client\", limit = 5, period = \"month\" }}\n\n\
         [[routes]]\nname = \"api\"\npath = \"/api\"\npolicies = [\"q\"]\nstatic = {{ body = \"ok\" }}\n",
        cluster.nodes[0]
    );
    let a = Gateway::start(&body);
    let b = Gateway::start(&body);
    let mut expect = Totals::new();
    // Clients spread over many slots; each gets exactly 5 per month across both instances.
    for c in 0..8 {
        let client = format!("client-{c}");
        let mut admitted = 0;
        for i in 0..7 {
            let gw = if i % 2 == 0 { &a } else { &b };
            let r = request(gw.addr, "GET", "/api", &[("x-client", &client)], b"");
            let class = match r.status {
                200 => {
                    admitted += 1;
                    "2xx"
                }
                429 => "4xx",
                s => panic!("status {s}: {}", r.text()),
            };
            *expect
                .entry((String::new(), "api".to_string(), class.to_string()))
                .or_default() += 1;
        }
        assert_eq!(admitted, 5, "{client}");
    }
    let sent: u64 = expect.values().sum();
    let done = wait_for(Duration::from_secs(10), || {
        csv_totals(&export(&a.config_path, "csv"))
            .values()
            .sum::<u64>()
            >= sent
    });
    assert!(done.is_some(), "usage never reached {sent}");
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(csv_totals(&export(&b.config_path, "csv")), expect);
}

/// A frozen Redis makes flushes time out while their commands wait in the server's socket
/// buffer; when it thaws it runs them, and the gateway retries the same batches. Then SIGTERM:
/// the last counts flush on the way out. Every request is counted exactly once.
#[test]
fn timed_out_flushes_that_land_later_are_not_counted_twice() {
    let redis = RedisServer::start();
    let body = format!(
        "{}\n[usage]\n\n[[routes]]\nname = \"r\"\npath = \"/r\"\nstatic = {{ body = \"ok\" }}\n",
        redis_toml(&redis, "ut-retry")
    );
    let mut gw = Gateway::start(&body);
    let mut sent = 0u64;
    let mut burst = |gw: &Gateway, n: u64| {
        for _ in 0..n {
            assert_eq!(get(gw.addr, "/r").status, 200);
        }
        sent += n;
    };
    burst(&gw, 10);
    std::thread::sleep(Duration::from_millis(1500));
    redis.pause();
    burst(&gw, 30);
    // Several flush rounds time out (timeout 100 ms) while Redis is frozen.
    std::thread::sleep(Duration::from_millis(3000));
    redis.resume();
    burst(&gw, 7);
    gw.signal(libc::SIGTERM);
    let st = gw
        .wait_exit(Duration::from_secs(15))
        .expect("exits after SIGTERM");
    assert!(st.success());
    let totals = csv_totals(&export(&body_file(&body), "csv"));
    let key = (String::new(), "r".to_string(), "2xx".to_string());
    assert_eq!(totals.get(&key).copied(), Some(sent), "{totals:?}");
    assert_eq!(totals.len(), 1, "{totals:?}");
}

#[test]
fn usage_without_redis_is_a_config_error() {
    let (code, _, err) = check_config(
        "[usage]\n\n[[routes]]\nname = \"r\"\npath = \"/\"\nstatic = { body = \"ok\" }\n",
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("usage") && err.contains("[redis]"), "{err}");
}

#[test]
fn the_export_refuses_bad_dates() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    let listener = format!("[[listeners]]\naddress = \"127.0.0.1:{}\"\n", free_port());
    std::fs::write(
        &cfg,
        format!("{listener}{}", redis_toml(&redis, "ut-dates")),
    )
    .unwrap();
    for (from, to) in [
        ("2026-13-01", "2026-12-01"),
        ("2026-12-05", "2026-12-04"),
        ("x", "y"),
    ] {
        let out = Command::new(bin())
            .args(["usage", "--config"])
            .arg(&cfg)
            .args(["--from", from, "--to", to])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{from}..{to}");
    }
}

/// A reload that switches metering off must not lose what was counted while it was on: the
/// counts the workers still hold are flushed with the settings they were taken under, and
/// requests after the reload are not counted.
#[test]
fn counts_taken_before_a_reload_removes_usage_still_reach_redis() {
    let redis = RedisServer::start();
    let route = "[[routes]]\nname = \"r\"\npath = \"/r\"\nstatic = { body = \"ok\" }\n";
    let metered = format!("{}\n[usage]\n\n{route}", redis_toml(&redis, "ut-off"));
    let unmetered = format!("{}\n{route}", redis_toml(&redis, "ut-off"));
    let mut gw = Gateway::start(&metered);
    let mut c = Conn::open(gw.addr);
    for _ in 0..50 {
        let r = c.request("GET", "/r", &[], b"");
        assert_eq!(r.status, 200);
    }
    assert!(gw.reload(&unmetered));
    for _ in 0..20 {
        let r = c.request("GET", "/r", &[], b"");
        assert_eq!(r.status, 200);
    }
    let key = (String::new(), "r".to_string(), "2xx".to_string());
    let counted = || csv_totals(&export(&body_file(&metered), "csv"));
    let arrived = wait_for(Duration::from_secs(10), || {
        counted().get(&key).copied() == Some(50)
    });
    assert!(arrived.is_some(), "{:?}", counted());
    gw.signal(libc::SIGTERM);
    assert!(gw.wait_exit(Duration::from_secs(15)).is_some());
    assert_eq!(counted().get(&key).copied(), Some(50), "{:?}", counted());
}

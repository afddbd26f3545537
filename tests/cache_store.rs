//! The shared cache store through real gateways (2 workers) and real upstreams that count
//! what reaches them: purge by URL, prefix and tag (admin API and `ringway purge`), the byte
//! bound under a stream of distinct keys, request coalescing across workers, purge fan-out
//! through Redis pub/sub to a second instance, the `ringway_cache_*` metrics, and abuse of the
//! purge API (oversized and invalid bodies, missing token).

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use common::redis::{redis_cli, RedisServer};
use common::*;

/// An upstream answering every path with `path vN` (N = how often that path was asked), fresh
/// for 5 minutes, tagged by `tags(path)`, after `delay`.
fn counting(delay: Duration, body_pad: usize, tags: fn(&str) -> &'static str) -> Upstream {
    let seen: Arc<Mutex<std::collections::HashMap<String, usize>>> = Arc::default();
    Upstream::start(Arc::new(move |req, s| {
        let n = {
            let mut m = seen.lock().unwrap();
            let n = m.entry(req.target.clone()).or_insert(0);
            *n += 1;
            *n
        };
        std::thread::sleep(delay);
        let mut body = format!("{} v{n}", req.target);
        body.push_str(&"x".repeat(body_pad));
        let _ = write!(
            s,
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nCache-Control: max-age=300\r\nSurrogate-Key: {}\r\nContent-Length: {}\r\n\r\n{body}",
            tags(&req.target),
            body.len()
        );
        Reply::KeepAlive
    }))
}

fn product_tags(path: &str) -> &'static str {
    match path {
        "/p/1" => "product-1 catalog",
        "/p/2" => "product-2 catalog",
        _ => "other",
    }
}

fn no_tags(_: &str) -> &'static str {
    "none"
}

fn config(up: SocketAddr, extra: &str) -> String {
    format!(
        "{extra}\n[policies.c]\ncache = {{ ttl = \"60s\" }}\n\n{}\n\
         [[routes]]\nname = \"r\"\nprefix = \"/\"\npolicies = [\"c\"]\nproxy = {{ upstream = \"app\" }}\n",
        upstream_toml("app", &[up])
    )
}

/// A raw admin request; returns (status, body).
fn admin(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &[u8],
) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("admin connect");
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: admin\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(t) = token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = first_status(&out);
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

fn purge(addr: SocketAddr, json: &str) -> u64 {
    let (status, body) = admin(addr, "POST", "/cache/purge", None, json.as_bytes());
    assert_eq!(status, 200, "purge {json}: {body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["purged"].as_u64().expect("purged count")
}

fn cache_stats(addr: SocketAddr, token: Option<&str>) -> serde_json::Value {
    let (status, body) = admin(addr, "GET", "/cache", token, b"");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// GETs `path` on `conns` fresh connections (spread over both workers by SO_REUSEPORT) and
/// returns every Cache-Status seen.
fn get_many(gw: &Gateway, path: &str, conns: usize) -> Vec<String> {
    (0..conns)
        .map(|_| {
            let r = get(gw.addr, path);
            assert_eq!(r.status, 200, "{path}: {}", r.text());
            r.header("cache-status").unwrap_or("").to_string()
        })
        .collect()
}

fn is_hit(cs: &str) -> bool {
    cs.contains("; hit")
}

/// Asks `path` once: expects a miss that goes upstream (the count grows by one), then hits
/// only on `conns` more connections.
fn assert_miss_then_hits(gw: &Gateway, up: &Upstream, path: &str, conns: usize) {
    let before = up.count();
    let objects = stored_objects(gw);
    let r = get(gw.addr, path);
    let cs = r.header("cache-status").unwrap_or("");
    assert!(cs.contains("fwd=uri-miss"), "{path} after purge: {cs}");
    assert_eq!(up.count(), before + 1, "{path} went upstream once");
    wait_stored(gw, objects + 1);
    let statuses = get_many(gw, path, conns);
    assert!(statuses.iter().all(|s| is_hit(s)), "{path}: {statuses:?}");
    assert_eq!(
        up.count(),
        before + 1,
        "{path} refilled: no more upstream requests"
    );
}

/// The admin token of the abuse test.
const TOKEN: &str = "purge-token-0123456789";

fn stored_objects(gw: &Gateway) -> u64 {
    // The token only matters where one is configured (the abuse test); elsewhere it is ignored.
    cache_stats(gw.admin, Some(TOKEN))["objects"]
        .as_u64()
        .unwrap_or(0)
}

/// The gateway stores an answer just after its last byte went to the client, so a client
/// that asks again at once (on another connection, maybe another worker) can beat it: wait
/// until the store holds `n` objects.
fn wait_stored(gw: &Gateway, n: u64) {
    wait_for(Duration::from_secs(5), || stored_objects(gw) >= n)
        .unwrap_or_else(|| panic!("the store never held {n} objects"));
}

fn assert_hits(gw: &Gateway, up: &Upstream, path: &str, conns: usize) {
    let before = up.count();
    let statuses = get_many(gw, path, conns);
    assert!(statuses.iter().all(|s| is_hit(s)), "{path}: {statuses:?}");
    assert_eq!(up.count(), before, "{path} stayed cached");
}

#[test]
fn purge_by_url_prefix_and_tag_drops_what_it_names_on_every_worker() {
    let up = counting(Duration::ZERO, 0, product_tags);
    let gw = Gateway::start_workers(&config(up.addr, ""), 2);
    let paths = ["/p/1", "/p/2", "/q/1", "/q/2"];
    for p in paths {
        assert_miss_then_hits(&gw, &up, p, 12);
    }
    // One resource: only /p/1 goes upstream again, on whichever worker serves it.
    assert_eq!(purge(gw.admin, r#"{"url":"test/p/1"}"#), 1);
    assert_miss_then_hits(&gw, &up, "/p/1", 12);
    for p in ["/p/2", "/q/1", "/q/2"] {
        assert_hits(&gw, &up, p, 6);
    }
    // A surrogate key from the upstream's Surrogate-Key header.
    assert_eq!(purge(gw.admin, r#"{"tag":"product-2"}"#), 1);
    assert_miss_then_hits(&gw, &up, "/p/2", 12);
    assert_hits(&gw, &up, "/p/1", 6);
    // A prefix.
    assert_eq!(purge(gw.admin, r#"{"prefix":"test/q/"}"#), 2);
    assert_miss_then_hits(&gw, &up, "/q/1", 12);
    assert_miss_then_hits(&gw, &up, "/q/2", 12);
    assert_hits(&gw, &up, "/p/1", 6);
    // A tag two objects share; a tag nobody has purges nothing.
    assert_eq!(purge(gw.admin, r#"{"tag":"nobody"}"#), 0);
    assert_eq!(purge(gw.admin, r#"{"tag":"catalog"}"#), 2);
    assert_miss_then_hits(&gw, &up, "/p/1", 6);
    assert_hits(&gw, &up, "/q/1", 6);
    // The CLI wraps the same call.
    let out = std::process::Command::new(bin())
        .args(["purge", "url", "test/q/1", "--admin", &gw.admin.to_string()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["purged"], 1);
    assert_miss_then_hits(&gw, &up, "/q/1", 6);
    // /p/1, /q/1 and /q/2 are stored again (/p/2 was not asked since the catalog purge).
    assert_eq!(purge(gw.admin, r#"{"all":true}"#), 3);
    assert_eq!(cache_stats(gw.admin, None)["objects"], 0);
    assert_miss_then_hits(&gw, &up, "/q/2", 6);
    // A URL as a browser or a log shows it, with scheme and port, names the same resource.
    assert_eq!(purge(gw.admin, r#"{"url":"https://TEST:8443/q/2"}"#), 1);
    assert_miss_then_hits(&gw, &up, "/q/2", 6);
}

#[test]
fn the_store_stays_within_max_bytes_under_a_stream_of_distinct_keys() {
    let up = counting(Duration::ZERO, 4096, no_tags);
    let gw = Gateway::start_workers(&config(up.addr, "[cache]\nmax_bytes = \"1MiB\"\n"), 2);
    let mut conns: Vec<Conn> = (0..4).map(|_| Conn::open(gw.addr)).collect();
    let n = 5000;
    for i in 0..n {
        let c = &mut conns[i % 4];
        let r = c.request("GET", &format!("/k/{i}"), &[], b"");
        assert_eq!(r.status, 200);
        assert!(r.body.len() > 4096);
        if i % 1000 == 999 {
            let s = cache_stats(gw.admin, None);
            assert!(s["bytes"].as_u64().unwrap() <= 1 << 20, "{s}");
        }
    }
    // The last answers are stored just after the client got them (see `wait_stored`).
    std::thread::sleep(Duration::from_millis(200));
    let s = cache_stats(gw.admin, None);
    assert_eq!(s["max_bytes"], 1 << 20);
    assert!(s["bytes"].as_u64().unwrap() <= 1 << 20, "{s}");
    assert!(
        s["bytes"].as_u64().unwrap() > 1 << 19,
        "the bound is used: {s}"
    );
    assert!(s["evictions"].as_u64().unwrap() > 4000, "{s}");
    assert_eq!(up.count(), n);
    // The most recent keys are still there.
    for i in n - 5..n {
        let r = get(gw.addr, &format!("/k/{i}"));
        assert!(is_hit(r.header("cache-status").unwrap_or("")), "/k/{i}");
        assert!(r.text().starts_with(&format!("/k/{i} v1")));
    }
    assert_eq!(up.count(), n);
}

#[test]
fn a_hundred_concurrent_misses_send_one_upstream_request() {
    let up = counting(Duration::from_millis(300), 0, no_tags);
    let gw = Gateway::start_workers(&config(up.addr, ""), 2);
    let clients = 100;
    let barrier = Arc::new(Barrier::new(clients));
    let collapsed = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = (0..clients)
        .map(|_| {
            let (b, addr, collapsed) = (barrier.clone(), gw.addr, collapsed.clone());
            std::thread::spawn(move || {
                let mut c = Conn::open(addr);
                b.wait();
                let r = c.request("GET", "/slow", &[], b"");
                if r.header("cache-status").unwrap_or("").contains("collapsed") {
                    collapsed.fetch_add(1, Ordering::Relaxed);
                }
                (r.status, r.text())
            })
        })
        .collect();
    let started = Instant::now();
    for h in handles {
        let (status, body) = h.join().unwrap();
        assert_eq!(status, 200);
        assert_eq!(body, "/slow v1");
    }
    assert_eq!(
        up.count(),
        1,
        "one upstream request for 100 concurrent misses"
    );
    // Bounded: one 300 ms fetch, not 100 in sequence (a loaded machine gets slack).
    assert!(started.elapsed() < Duration::from_secs(10));
    let s = cache_stats(gw.admin, None);
    assert!(s["coalesced_waits"].as_u64().unwrap() >= 1, "{s}");
    assert!(collapsed.load(Ordering::Relaxed) >= 1);
}

#[test]
fn a_purge_on_one_instance_reaches_another_through_redis() {
    let redis = RedisServer::start();
    let prefix = format!("cachestore{}", std::process::id());
    let redis_toml = format!(
        "[redis]\nnodes = [\"{}\"]\nprefix = \"{prefix}\"\n",
        redis.addr()
    );
    let up = counting(Duration::ZERO, 0, product_tags);
    let a = Gateway::start_workers(&config(up.addr, &redis_toml), 2);
    let b = Gateway::start_workers(&config(up.addr, &redis_toml), 2);
    let channel = format!("{prefix}:cache:purge");
    wait_for(Duration::from_secs(10), || {
        let out = redis_cli(&redis.addr(), &["PUBSUB", "NUMSUB", &channel]);
        out.lines()
            .nth(1)
            .and_then(|n| n.trim().parse::<u32>().ok())
            == Some(2)
    })
    .expect("both instances subscribe to the purge channel");
    for gw in [&a, &b] {
        assert_miss_then_hits(gw, &up, "/p/1", 4);
        assert_miss_then_hits(gw, &up, "/p/2", 4);
    }
    assert_eq!(purge(a.admin, r#"{"tag":"product-1"}"#), 1);
    wait_for(Duration::from_secs(5), || {
        cache_stats(b.admin, None)["purged"].as_u64() == Some(1)
    })
    .expect("B applies A's purge");
    assert_miss_then_hits(&b, &up, "/p/1", 4);
    assert_hits(&b, &up, "/p/2", 4);
    assert_miss_then_hits(&a, &up, "/p/1", 4);
    // A ignored its own message: it purged once (through its admin API), not twice.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(cache_stats(a.admin, None)["purged"], 1);
    assert_eq!(a.log_count("via Redis"), 0, "{}", a.logs());
}

#[test]
fn cache_metrics_are_exposed() {
    let up = counting(Duration::ZERO, 0, no_tags);
    let gw = Gateway::start_workers(&config(up.addr, ""), 2);
    assert_miss_then_hits(&gw, &up, "/m", 5);
    assert_eq!(purge(gw.admin, r#"{"url":"test/m"}"#), 1);
    let samples = scrape(gw.admin);
    let m = |name: &str, labels: &[(&str, &str)]| {
        metric(&samples, name, labels).unwrap_or_else(|| panic!("{name} {labels:?} missing"))
    };
    assert!(m("ringway_cache_requests_total", &[("outcome", "hit")]) >= 5.0);
    assert!(m("ringway_cache_requests_total", &[("outcome", "miss")]) >= 1.0);
    assert_eq!(m("ringway_cache_purged_total", &[]), 1.0);
    assert_eq!(m("ringway_cache_max_bytes", &[]), (256u64 << 20) as f64);
    assert_eq!(m("ringway_cache_objects", &[]), 0.0);
    assert_eq!(m("ringway_cache_bytes", &[]), 0.0);
    m("ringway_cache_evictions_total", &[]);
    m("ringway_cache_coalesced_waits_total", &[]);
}

#[test]
fn the_purge_api_refuses_abuse() {
    let up = counting(Duration::ZERO, 0, product_tags);
    let admin_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let token = TOKEN;
    let mut gw = Gateway::start_workers(
        &config(
            up.addr,
            &format!("[admin]\naddress = \"{admin_addr}\"\ntoken = \"{token}\"\n"),
        ),
        2,
    );
    gw.admin = admin_addr;
    assert_miss_then_hits(&gw, &up, "/p/1", 4);
    let t = Some(token);
    // No token, or a wrong one: 401, nothing purged.
    let all = br#"{"all":true}"#;
    assert_eq!(admin(admin_addr, "POST", "/cache/purge", None, all).0, 401);
    assert_eq!(
        admin(admin_addr, "POST", "/cache/purge", Some("nope"), all).0,
        401
    );
    assert_eq!(admin(admin_addr, "GET", "/cache", None, b"").0, 401);
    // A 10 MB body is refused from its Content-Length, before it is read.
    let mut s = TcpStream::connect(admin_addr).unwrap();
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    write!(
        s,
        "POST /cache/purge HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {token}\r\nContent-Length: 10000000\r\n\r\n{{\"all\":true,\"pad\":\""
    )
    .unwrap();
    let _ = s.write_all(&vec![b'x'; 256 * 1024]);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    assert_eq!(first_status(&out), 413, "{}", String::from_utf8_lossy(&out));
    // Invalid or meaningless JSON: 400 saying why.
    let (st, body) = admin(admin_addr, "POST", "/cache/purge", t, b"{\"url\": ");
    assert_eq!(st, 400);
    assert!(body.contains("invalid JSON"), "{body}");
    for bad in [
        &br#"{"all":false}"#[..],
        br#"{"url":""}"#,
        br#"{"url":"a","tag":"b"}"#,
        br#"{"path":"test/p/1"}"#,
        b"\xff\xfe",
        b"",
    ] {
        let (st, body) = admin(admin_addr, "POST", "/cache/purge", t, bad);
        assert_eq!(st, 400, "{:?}: {body}", String::from_utf8_lossy(bad));
    }
    assert_eq!(admin(admin_addr, "GET", "/cache/purge", t, b"").0, 405);
    // Nothing of that purged anything.
    assert_hits(&gw, &up, "/p/1", 4);
    assert_eq!(cache_stats(admin_addr, t)["purged"], 0);
    // The CLI needs the token too, and works with it.
    let cli = |extra: &[&str]| {
        let mut args = vec!["purge", "tag", "product-1", "--admin"];
        let a = admin_addr.to_string();
        args.push(&a);
        args.extend_from_slice(extra);
        std::process::Command::new(bin())
            .args(&args)
            .env_remove("RINGWAY_ADMIN_TOKEN")
            .output()
            .unwrap()
    };
    let denied = cli(&[]);
    assert!(!denied.status.success());
    assert!(String::from_utf8_lossy(&denied.stderr).contains("401"));
    let ok = cli(&["--token", token]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert_miss_then_hits(&gw, &up, "/p/1", 4);
}

#[test]
fn entries_survive_a_reload_and_a_smaller_bound_evicts_down_to_it() {
    let up = counting(Duration::ZERO, 8192, no_tags);
    let gw = Gateway::start_workers(&config(up.addr, "[cache]\nmax_bytes = \"4MiB\"\n"), 2);
    for i in 0..200 {
        let r = get(gw.addr, &format!("/r/{i}"));
        assert_eq!(r.status, 200);
    }
    wait_stored(&gw, 200);
    let before = cache_stats(gw.admin, None);
    assert!(before["bytes"].as_u64().unwrap() > 1 << 20, "{before}");
    // Same bound: the store (and what it holds) is kept across the reload.
    assert!(gw.reload(&config(up.addr, "[cache]\nmax_bytes = \"4MiB\"\n")));
    assert_hits(&gw, &up, "/r/199", 3);
    assert_eq!(cache_stats(gw.admin, None)["objects"], before["objects"]);
    // A smaller bound evicts down to it at once, and what is left still answers. Which
    // answers are left depends on the shards their keys hash to (each shard gives up its
    // share), so the test finds one rather than naming it.
    assert!(gw.reload(&config(up.addr, "[cache]\nmax_bytes = \"256KiB\"\n")));
    let after = cache_stats(gw.admin, None);
    assert_eq!(after["max_bytes"], 256 << 10);
    assert!(after["bytes"].as_u64().unwrap() <= 256 << 10, "{after}");
    assert!(after["objects"].as_u64().unwrap() > 0, "{after}");
    assert!(after["evictions"].as_u64().unwrap() > 100, "{after}");
    let left = (0..200)
        .rev()
        .map(|i| format!("/r/{i}"))
        .find(|p| {
            let before = up.count();
            let hit = is_hit(get(gw.addr, p).header("cache-status").unwrap_or(""));
            assert_eq!(hit, up.count() == before, "{p}: a hit never goes upstream");
            hit
        })
        .expect("some answer survived the smaller bound");
    assert_hits(&gw, &up, &left, 3);
}

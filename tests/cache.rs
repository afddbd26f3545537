//! Response caching semantics (RFC 9111 for a shared cache, RFC 5861, RFC 9211) through the
//! real gateway against a scripted upstream that counts requests and answers what each test
//! tells it: freshness from max-age / s-maxage / Expires / the policy TTL, Age, Vary,
//! revalidation with ETag and Last-Modified (304 refresh), the client's own conditionals,
//! stale-while-revalidate (one background refresh), stale-if-error (5xx and an upstream that
//! is gone), no-store, private, Set-Cookie, per-consumer keys for authenticated requests,
//! bodies over the size limit, HEAD from a GET entry, Cache-Status values; and abuse: Vary: *,
//! many Vary variants, 8 KB keyed header values, hostile Cache-Control values, absurd max-age.
//!
//! Every upstream body carries a serial number (`v1`, `v2`, ...): a test tells a cached
//! answer from a fresh one by its body, and counts upstream requests to be sure.
mod common;
use common::h2::*;
use common::*;

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

/// What the scripted upstream answers (changed by a test between requests).
#[derive(Clone)]
struct Script {
    status: u16,
    /// Extra header lines (`name: value\r\n` each).
    headers: String,
    /// Answer 304 to `If-None-Match` matching this tag (and send it as `ETag`).
    etag: Option<String>,
    /// Answer 304 to an `If-Modified-Since` equal to this (and send it as `Last-Modified`).
    last_modified: Option<String>,
    /// Header lines a 304 carries.
    not_modified_headers: String,
    delay: Duration,
    /// Pause between the head and the body.
    body_delay: Duration,
    /// Close the connection without answering.
    hang_up: bool,
    /// Body size (0: `v{n}`); larger bodies are `n` repeated.
    big: usize,
    /// Send the body chunked instead of with Content-Length.
    chunked: bool,
}

impl Default for Script {
    fn default() -> Script {
        Script {
            status: 200,
            headers: String::new(),
            etag: None,
            last_modified: None,
            not_modified_headers: String::new(),
            delay: Duration::ZERO,
            body_delay: Duration::ZERO,
            hang_up: false,
            big: 0,
            chunked: false,
        }
    }
}

struct Origin {
    up: Upstream,
    script: Arc<Mutex<Script>>,
}

impl Origin {
    fn start(s: Script) -> Origin {
        let script = Arc::new(Mutex::new(s));
        // Full answers (not 304s) sent so far: the next body is `v{served + 1}`.
        let served = Arc::new(AtomicUsize::new(0));
        let (sc, sv) = (script.clone(), served.clone());
        let up = Upstream::start(Arc::new(move |req, w| {
            let s = sc.lock().unwrap().clone();
            thread::sleep(s.delay);
            if s.hang_up {
                return Reply::Close;
            }
            let inm = req.header("if-none-match").unwrap_or("");
            let ims = req.header("if-modified-since");
            let match_tag = s.etag.as_deref().is_some_and(|t| inm.contains(t));
            let match_date =
                inm.is_empty() && s.last_modified.is_some() && ims == s.last_modified.as_deref();
            let mut head = String::new();
            if let Some(t) = &s.etag {
                head.push_str(&format!("etag: {t}\r\n"));
            }
            if let Some(d) = &s.last_modified {
                head.push_str(&format!("last-modified: {d}\r\n"));
            }
            if match_tag || match_date {
                let _ = write!(
                    w,
                    "HTTP/1.1 304 Not Modified\r\n{head}{}\r\n",
                    s.not_modified_headers
                );
                return Reply::Close;
            }
            let n = sv.fetch_add(1, Ordering::SeqCst) + 1;
            let body = if s.big > 0 {
                format!("{n}").repeat(s.big).into_bytes()[..s.big].to_vec()
            } else {
                format!("v{n}").into_bytes()
            };
            let framing = if s.chunked {
                "transfer-encoding: chunked\r\n".to_string()
            } else {
                format!("content-length: {}\r\n", body.len())
            };
            let _ = write!(
                w,
                "HTTP/1.1 {} X\r\ncontent-type: text/plain\r\n{framing}{head}{}\r\n",
                s.status, s.headers
            );
            let _ = w.flush();
            thread::sleep(s.body_delay);
            if req.method != "HEAD" {
                if s.chunked {
                    for piece in body.chunks(4096) {
                        let _ = write!(w, "{:x}\r\n", piece.len());
                        let _ = w.write_all(piece);
                        let _ = w.write_all(b"\r\n");
                    }
                    let _ = w.write_all(b"0\r\n\r\n");
                } else {
                    let _ = w.write_all(&body);
                }
            }
            Reply::Close
        }));
        Origin { up, script }
    }

    fn set(&self, f: impl FnOnce(&mut Script)) {
        f(&mut self.script.lock().unwrap());
    }

    fn count(&self) -> usize {
        self.up.count()
    }
}

/// A gateway with one route `/` caching per `cache` (the inline table's fields).
fn gateway(o: &Origin, cache: &str) -> Gateway {
    Gateway::start(&config(o, cache, ""))
}

/// The config `gateway` starts; `extra_policy` (a `[policies.guard]` table) runs before the
/// cache on the route.
fn config(o: &Origin, cache: &str, extra_policy: &str) -> String {
    let policies = if extra_policy.is_empty() {
        "[\"c\"]".to_string()
    } else {
        "[\"guard\", \"c\"]".to_string()
    };
    format!(
        "[policies.c]\ncache = {{ {cache} }}\n{extra_policy}\n{}\n\
         [[routes]]\nname = \"r\"\nprefix = \"/\"\npolicies = {policies}\nproxy = {{ upstream = \"app\" }}\n",
        upstream_toml("app", &[o.up.addr])
    )
}

fn get_h(gw: &Gateway, path: &str, headers: &[(&str, &str)]) -> Response {
    request(gw.addr, "GET", path, headers, b"")
}

fn status_of(r: &Response) -> String {
    r.header("cache-status").unwrap_or("").to_string()
}

/// Asserts the response's Cache-Status contains every part of `want` (`;`-separated).
#[track_caller]
fn assert_cs(r: &Response, want: &str) {
    let cs = status_of(r);
    assert!(cs.starts_with("ringway"), "Cache-Status {cs:?}");
    for part in want.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        assert!(
            cs.split(';').any(|p| p.trim() == part),
            "Cache-Status {cs:?} lacks {part:?}"
        );
    }
}

fn ttl_of(r: &Response) -> i64 {
    status_of(r)
        .split(';')
        .find_map(|p| p.trim().strip_prefix("ttl=").map(str::to_string))
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("no ttl in {:?}", status_of(r)))
}

/// An IMF-fixdate for Unix seconds `t`.
fn http_date(t: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = (t / 86_400) as i64;
    let secs = t % 86_400;
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} GMT",
        DAYS[(days % 7) as usize],
        d,
        MONTHS[(m - 1) as usize],
        y,
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn max_age_hit_then_expiry() {
    let o = Origin::start(Script {
        headers: "cache-control: max-age=1\r\n".into(),
        ..Script::default()
    });
    let gw = gateway(&o, "ttl = \"60s\"");
    let r = get(gw.addr, "/a");
    assert_eq!((r.status, r.text().as_str()), (200, "v1"));
    assert_cs(&r, "fwd=uri-miss; fwd-status=200; stored");
    let r = get(gw.addr, "/a");
    assert_eq!(r.text(), "v1");
    assert_cs(&r, "hit");
    assert!(r.header("age").is_some(), "a hit carries Age");
    assert!(
        r.header("x-request-id").is_some(),
        "per-request fields are still written"
    );
    assert_eq!(o.count(), 1);
    // Another path is another key.
    assert_eq!(get(gw.addr, "/b").text(), "v2");
    thread::sleep(Duration::from_millis(1100));
    let r = get(gw.addr, "/a");
    assert_eq!(r.text(), "v3", "expired after max-age");
    assert_cs(&r, "fwd=stale; fwd-status=200; stored");
    assert_eq!(o.count(), 3);
}

#[test]
fn s_maxage_beats_max_age_and_expires_counts_from_date() {
    let o = Origin::start(Script {
        headers: "cache-control: max-age=0, s-maxage=30\r\n".into(),
        ..Script::default()
    });
    let gw = gateway(&o, "ttl = \"1s\"");
    get(gw.addr, "/s");
    let r = get(gw.addr, "/s");
    assert_eq!(r.text(), "v1", "s-maxage=30 wins over max-age=0");
    assert!(ttl_of(&r) > 25);

    let now = now_unix();
    o.set(|s| {
        s.headers = format!(
            "date: {}\r\nexpires: {}\r\n",
            http_date(now),
            http_date(now + 40)
        )
    });
    get(gw.addr, "/e");
    let r = get(gw.addr, "/e");
    assert_eq!(r.text(), "v2", "Expires 40 s after Date keeps it fresh");
    let t = ttl_of(&r);
    assert!((35..=40).contains(&t), "ttl {t}");

    // An invalid Expires means already expired: stored, but never served without asking.
    o.set(|s| s.headers = "expires: 0\r\n".into());
    get(gw.addr, "/x");
    let r = get(gw.addr, "/x");
    assert_eq!(r.text(), "v4");
    assert_cs(&r, "fwd=stale");
    assert_eq!(o.count(), 4);
}

#[test]
fn policy_ttl_when_upstream_is_silent_and_respect_cache_control_off() {
    let o = Origin::start(Script::default());
    let gw = gateway(&o, "ttl = \"1s\"");
    get(gw.addr, "/t");
    let r = get(gw.addr, "/t");
    assert_eq!(r.text(), "v1");
    assert!(ttl_of(&r) <= 1);
    thread::sleep(Duration::from_millis(1100));
    assert_eq!(get(gw.addr, "/t").text(), "v2", "the policy TTL expired");
    drop(gw);

    // respect_cache_control = false: the TTL wins over max-age=0 / no-cache ...
    o.set(|s| s.headers = "cache-control: max-age=0, no-cache\r\n".into());
    let gw = gateway(&o, "ttl = \"30s\", respect_cache_control = false");
    get(gw.addr, "/t");
    let r = get(gw.addr, "/t");
    assert_eq!(r.text(), "v3");
    assert_cs(&r, "hit");
    // ... but never over no-store / private (privacy is not a freshness setting).
    o.set(|s| s.headers = "cache-control: private\r\n".into());
    get(gw.addr, "/p");
    let r = get(gw.addr, "/p");
    assert_eq!(r.text(), "v5");
    assert_cs(&r, "detail=private");
}

#[test]
fn a_response_crossing_a_second_boundary_keeps_its_whole_ttl() {
    // The upstream takes 40 ms and the request leaves 20 ms before a second ends: counted in
    // whole seconds, the response would arrive a second old and be stale under a 1 s TTL.
    let o = Origin::start(Script {
        delay: Duration::from_millis(40),
        ..Script::default()
    });
    let gw = gateway(&o, "ttl = \"1s\"");
    let into_second = || {
        let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH);
        Duration::from_nanos(u64::from(now.unwrap().subsec_nanos()))
    };
    thread::sleep(Duration::from_millis(980).saturating_sub(into_second()));
    assert_eq!(get(gw.addr, "/edge").text(), "v1");
    let r = get(gw.addr, "/edge");
    assert_eq!(r.text(), "v1", "fresh: {:?}", status_of(&r));
    assert_cs(&r, "hit");
    assert_eq!(o.count(), 1);
}

#[test]
fn age_from_the_upstream_counts_against_freshness() {
    let o = Origin::start(Script {
        headers: "cache-control: max-age=100\r\nage: 30\r\n".into(),
        ..Script::default()
    });
    let gw = gateway(&o, "");
    get(gw.addr, "/");
    let r = get(gw.addr, "/");
    let age: u64 = r.header("age").unwrap().parse().unwrap();
    assert!((30..=32).contains(&age), "age {age}");
    let t = ttl_of(&r);
    assert!((68..=70).contains(&t), "ttl {t}");
    assert_eq!(r.header_all("age").len(), 1, "one Age, the cache's own");
}

#[test]
fn vary_keeps_one_variant_per_value() {
    let o = Origin::start(Script {
        headers: "cache-control: max-age=30\r\nvary: Accept-Language\r\n".into(),
        ..Script::default()
    });
    let gw = gateway(&o, "");
    let en = [("Accept-Language", "en")];
    let de = [("Accept-Language", "de")];
    assert_eq!(get_h(&gw, "/", &en).text(), "v1");
    let r = get_h(&gw, "/", &de);
    assert_eq!(r.text(), "v2");
    assert_cs(&r, "fwd=vary-miss; stored");
    assert_eq!(get_h(&gw, "/", &en).text(), "v1");
    assert_eq!(get_h(&gw, "/", &de).text(), "v2");
    // No Accept-Language at all is a third variant.
    assert_eq!(get(gw.addr, "/").text(), "v3");
    assert_eq!(o.count(), 3);
}

#[test]
fn stale_response_is_revalidated_with_its_etag() {
    let o = Origin::start(Script {
        headers: "cache-control: max-age=1\r\nx-version: old\r\n".into(),
        etag: Some("\"e1\"".into()),
        not_modified_headers: "cache-control: max-age=30\r\nx-version: new\r\n".into(),
        ..Script::default()
    });
    let gw = gateway(&o, "");
    assert_eq!(get(gw.addr, "/").text(), "v1");
    thread::sleep(Duration::from_millis(1100));
    // A client that accepts staleness (max-stale) gets the stale answer without a request.
    let r = get_h(&gw, "/", &[("Cache-Control", "max-stale=60")]);
    assert_eq!(r.text(), "v1");
    assert_cs(&r, "hit");
    assert!(ttl_of(&r) < 0);
    assert_eq!(o.count(), 1);
    let r = get(gw.addr, "/");
    assert_eq!(o.up.last().header("if-none-match"), Some("\"e1\""));
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "v1"),
        "the stored body"
    );
    assert_cs(&r, "fwd=stale; fwd-status=304");
    assert_eq!(
        r.header("x-version"),
        Some("new"),
        "304 fields replace stored ones"
    );
    assert_eq!(r.header("etag"), Some("\"e1\""));
    // Refreshed with max-age=30: a hit now.
    let r = get(gw.addr, "/");
    assert_cs(&r, "hit");
    assert!(ttl_of(&r) > 25);
    assert_eq!(r.header("x-version"), Some("new"));
    assert_eq!(o.count(), 2);
}

#[test]
fn stale_response_is_revalidated_with_last_modified() {
    let lm = http_date(now_unix() - 3600);
    let o = Origin::start(Script {
        headers: "cache-control: max-age=1\r\n".into(),
        last_modified: Some(lm.clone()),
        not_modified_headers: "cache-control: max-age=30\r\n".into(),
        ..Script::default()
    });
    let gw = gateway(&o, "");
    get(gw.addr, "/");
    thread::sleep(Duration::from_millis(1100));
    let r = get(gw.addr, "/");
    assert_eq!(o.up.last().header("if-modified-since"), Some(lm.as_str()));
    assert_eq!(r.text(), "v1");
    assert_cs(&r, "fwd=stale; fwd-status=304");
    // The client's own If-Modified-Since is answered by the cache.
    let r = get_h(&gw, "/", &[("If-Modified-Since", &lm)]);
    assert_eq!(r.status, 304);
    let earlier = http_date(now_unix() - 7200);
    assert_eq!(
        get_h(&gw, "/", &[("If-Modified-Since", &earlier)]).status,
        200
    );
    assert_eq!(o.count(), 2);
}

#[test]
fn client_if_none_match_gets_304_from_the_cache() {
    let o = Origin::start(Script {
        headers: "cache-control: max-age=30\r\n".into(),
        etag: Some("\"e1\"".into()),
        ..Script::default()
    });
    let gw = gateway(&o, "");
    // A miss whose validator does not match gets the whole answer (and it is stored).
    let r = get_h(&gw, "/", &[("If-None-Match", "\"zzz\"")]);
    assert_eq!((r.status, r.text().as_str()), (200, "v1"));
    assert_cs(&r, "fwd=uri-miss; stored");
    for inm in ["W/\"e1\"", "\"x\", \"e1\"", "*"] {
        let r = get_h(&gw, "/", &[("If-None-Match", inm)]);
        assert_eq!(r.status, 304, "{inm}");
        assert!(r.body.is_empty());
        assert_eq!(r.header("etag"), Some("\"e1\""));
        assert_eq!(r.header("cache-control"), Some("max-age=30"));
        assert_cs(&r, "hit");
    }
    let r = get_h(&gw, "/", &[("If-None-Match", "\"other\"")]);
    assert_eq!((r.status, r.text().as_str()), (200, "v1"));
    assert_eq!(o.count(), 1);
}

#[test]
fn a_miss_answers_the_clients_matching_validator_with_304_and_stores_the_whole_answer() {
    let o = Origin::start(Script {
        headers: "cache-control: max-age=30\r\n".into(),
        etag: Some("\"e1\"".into()),
        ..Script::default()
    });
    let gw = gateway(&o, "");
    // On a miss the client's validator is not forwarded (the cache wants the whole answer to
    // store); the cache then answers the validator itself. On a keep-alive connection, so the
    // next request shows nothing of the unsent body leaked onto it.
    let mut c = Conn::open(gw.addr);
    let r = c.request("GET", "/", &[("If-None-Match", "\"e1\"")], b"");
    assert_eq!(o.up.last().header("if-none-match"), None);
    assert_eq!(r.status, 304);
    assert!(r.body.is_empty());
    assert_eq!(r.header("etag"), Some("\"e1\""));
    assert_eq!(r.header("content-length"), None);
    assert_cs(&r, "fwd=uri-miss; fwd-status=200; stored");
    // The whole body went into the store: a request without a validator gets it from there.
    let r = c.request("GET", "/", &[], b"");
    assert_cs(&r, "hit");
    assert_eq!(o.count(), 1);
    assert_eq!((r.status, r.text().as_str()), (200, "v1"));
}

#[test]
fn stale_while_revalidate_serves_at_once_and_refreshes_once() {
    let o = Origin::start(Script {
        // max-age=3: the origin stamps `Date` (whole seconds) before its 1.5 s delay, so the
        // refreshed answer arrives up to 2 s old; with a shorter max-age it would be born
        // stale and start a second refresh.
        headers: "cache-control: max-age=3, stale-while-revalidate=30\r\n".into(),
        ..Script::default()
    });
    let gw = gateway(&o, "");
    assert_eq!(get(gw.addr, "/").text(), "v1");
    thread::sleep(Duration::from_millis(3100));
    // The refresh takes 1.5 s upstream; the clients do not wait for it.
    o.set(|s| s.delay = Duration::from_millis(1500));
    let clients: Vec<_> = (0..6)
        .map(|_| {
            let addr = gw.addr;
            thread::spawn(move || {
                let t = Instant::now();
                let r = get(addr, "/");
                (r, t.elapsed())
            })
        })
        .collect();
    for c in clients {
        let (r, took) = c.join().unwrap();
        assert_eq!(r.text(), "v1");
        assert_cs(&r, "hit; detail=stale-while-revalidate");
        assert!(ttl_of(&r) < 0);
        assert!(
            took < Duration::from_millis(1000),
            "stale served at once: {took:?}"
        );
    }
    wait_for(Duration::from_secs(3), || o.count() == 2).expect("one background refresh");
    o.set(|s| s.delay = Duration::ZERO);
    let fresh = wait_for(Duration::from_secs(3), || get(gw.addr, "/").text() == "v2");
    fresh.expect("the refreshed response is served");
    assert_cs(&get(gw.addr, "/"), "hit");
    assert_eq!(
        o.count(),
        2,
        "exactly one background revalidation for six stale hits"
    );
}

#[test]
fn stale_if_error_covers_5xx_and_a_dead_upstream() {
    let o = Origin::start(Script {
        headers: "cache-control: max-age=1, stale-if-error=60\r\n".into(),
        ..Script::default()
    });
    let gw = gateway(&o, "");
    get(gw.addr, "/");
    thread::sleep(Duration::from_millis(1100));
    o.set(|s| s.status = 503);
    let r = get(gw.addr, "/");
    assert_eq!((r.status, r.text().as_str()), (200, "v1"));
    assert_cs(&r, "hit; fwd=stale; fwd-status=503; detail=stale-if-error");
    // An error whose body takes its time: the stored answer does not wait for it.
    o.set(|s| {
        s.status = 500;
        s.chunked = true;
        s.body_delay = Duration::from_secs(6);
    });
    let asked = Instant::now();
    let r = get(gw.addr, "/");
    assert_eq!((r.status, r.text().as_str()), (200, "v1"));
    assert_cs(&r, "hit; fwd=stale; fwd-status=500; detail=stale-if-error");
    assert!(
        asked.elapsed() < Duration::from_secs(4),
        "the stored answer waited {:?} for the upstream's error body",
        asked.elapsed()
    );
    o.set(|s| {
        s.status = 503;
        s.chunked = false;
        s.body_delay = Duration::ZERO;
    });
    // The upstream hangs up without answering.
    o.set(|s| s.hang_up = true);
    let r = get(gw.addr, "/");
    assert_eq!((r.status, r.text().as_str()), (200, "v1"));
    assert_cs(&r, "hit; fwd=stale; detail=stale-if-error");
    // The upstream is gone altogether (connections refused).
    let addr = o.up.addr;
    drop(o);
    wait_for(Duration::from_secs(2), || {
        std::net::TcpStream::connect(addr).is_err()
    })
    .expect("upstream listener closed");
    let r = get(gw.addr, "/");
    assert_eq!((r.status, r.text().as_str()), (200, "v1"));
    assert_cs(&r, "detail=stale-if-error");
}

/// A stored answer sent after the upstream was asked (a 304 revalidation, stale-if-error)
/// reaches a client that closes after each request (`Connection: close`, HTTP/1.0) too: it
/// used to get a closed connection and no bytes.
#[test]
fn stale_answers_reach_clients_that_close_after_each_request() {
    let o = Origin::start(Script {
        headers: "cache-control: max-age=1, stale-if-error=60\r\n".into(),
        etag: Some("\"e1\"".into()),
        not_modified_headers: "cache-control: max-age=1, stale-if-error=60\r\n".into(),
        ..Script::default()
    });
    let gw = gateway(&o, "");
    assert_eq!(get(gw.addr, "/").text(), "v1");
    let close = [("Connection", "close")];
    thread::sleep(Duration::from_millis(1100));
    let r = get_h(&gw, "/", &close);
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "v1"),
        "revalidated, Connection: close"
    );
    assert_cs(&r, "fwd=stale; fwd-status=304");
    thread::sleep(Duration::from_millis(1100));
    let mut c = Conn::open(gw.addr);
    c.send(b"GET / HTTP/1.0\r\nHost: test\r\n\r\n");
    let r = c.read_response(false).expect("an answer over HTTP/1.0");
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "v1"),
        "revalidated, HTTP/1.0"
    );
    assert_cs(&r, "fwd=stale; fwd-status=304");
    thread::sleep(Duration::from_millis(1100));
    o.set(|s| {
        s.status = 503;
        s.etag = None;
    });
    let r = get_h(&gw, "/", &close);
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "v1"),
        "stale-if-error, Connection: close"
    );
    assert_cs(&r, "fwd=stale; fwd-status=503; detail=stale-if-error");
}

#[test]
fn must_revalidate_forbids_stale_on_error() {
    let o = Origin::start(Script {
        headers: "cache-control: max-age=1, must-revalidate, stale-if-error=60\r\n".into(),
        ..Script::default()
    });
    let gw = gateway(
        &o,
        "stale_if_error = \"60s\", stale_while_revalidate = \"60s\"",
    );
    get(gw.addr, "/");
    thread::sleep(Duration::from_millis(1100));
    o.set(|s| s.status = 503);
    let r = get(gw.addr, "/");
    assert_eq!(r.status, 503, "must-revalidate: the error goes through");
    assert_eq!(o.count(), 2);
}

#[test]
fn policy_stale_if_error_applies_when_the_upstream_names_none() {
    let o = Origin::start(Script {
        headers: "cache-control: max-age=1\r\n".into(),
        ..Script::default()
    });
    let gw = gateway(&o, "stale_if_error = \"1m\"");
    get(gw.addr, "/");
    thread::sleep(Duration::from_millis(1100));
    o.set(|s| s.status = 500);
    let r = get(gw.addr, "/");
    assert_eq!((r.status, r.text().as_str()), (200, "v1"));
    assert_cs(&r, "fwd-status=500; detail=stale-if-error");
}

#[test]
fn no_store_in_the_response_or_the_request() {
    let o = Origin::start(Script {
        headers: "Cache-Control: NO-STORE\r\n".into(),
        ..Script::default()
    });
    let gw = gateway(&o, "");
    let r = get(gw.addr, "/");
    assert_cs(&r, "fwd=uri-miss; fwd-status=200; detail=no-store");
    assert!(!status_of(&r).contains("stored"));
    assert_eq!(get(gw.addr, "/").text(), "v2");

    o.set(|s| s.headers = "cache-control: max-age=30\r\n".into());
    assert_eq!(get(gw.addr, "/n").text(), "v3");
    let r = get_h(&gw, "/n", &[("Cache-Control", "no-store")]);
    assert_eq!(r.text(), "v4", "a no-store request bypasses the cache");
    assert_cs(&r, "fwd=bypass; detail=no-store");
    assert_eq!(
        get(gw.addr, "/n").text(),
        "v3",
        "and does not replace the stored one"
    );
}

#[test]
fn private_and_set_cookie_responses_are_not_stored() {
    let o = Origin::start(Script {
        headers: "cache-control: private, max-age=30\r\n".into(),
        ..Script::default()
    });
    let gw = gateway(&o, "");
    assert_cs(&get(gw.addr, "/p"), "detail=private");
    assert_eq!(get(gw.addr, "/p").text(), "v2");
    o.set(|s| s.headers = "cache-control: max-age=30\r\nset-cookie: sid=secret\r\n".into());
    assert_cs(&get(gw.addr, "/c"), "detail=set-cookie");
    let r = get(gw.addr, "/c");
    assert_eq!(r.text(), "v4");
    assert_eq!(o.count(), 4);
}

#[test]
fn no_cache_response_is_revalidated_before_every_use() {
    let o = Origin::start(Script {
        headers: "cache-control: no-cache, max-age=30\r\n".into(),
        etag: Some("\"nc\"".into()),
        not_modified_headers: "cache-control: no-cache, max-age=30\r\n".into(),
        ..Script::default()
    });
    let gw = gateway(&o, "");
    assert_eq!(get(gw.addr, "/").text(), "v1");
    for i in 2..=3 {
        let r = get(gw.addr, "/");
        assert_eq!(r.text(), "v1");
        assert_cs(&r, "fwd-status=304");
        assert_eq!(o.count(), i);
        assert_eq!(o.up.last().header("if-none-match"), Some("\"nc\""));
    }
}

#[test]
fn request_directives_no_cache_max_age_and_only_if_cached() {
    let o = Origin::start(Script {
        headers: "cache-control: max-age=30\r\n".into(),
        etag: Some("\"q\"".into()),
        ..Script::default()
    });
    let gw = gateway(&o, "");
    let r = get_h(&gw, "/", &[("Cache-Control", "only-if-cached")]);
    assert_eq!(r.status, 504, "nothing stored yet");
    assert_eq!(o.count(), 0);
    get(gw.addr, "/");
    for cc in ["no-cache", "max-age=0"] {
        let r = get_h(&gw, "/", &[("Cache-Control", cc)]);
        assert_eq!(r.text(), "v1", "{cc}");
        assert_eq!(o.up.last().header("if-none-match"), Some("\"q\""), "{cc}");
        assert_cs(&r, "fwd=request; fwd-status=304");
    }
    let r = get_h(&gw, "/", &[("Pragma", "no-cache")]);
    assert_cs(&r, "fwd=request");
    assert_eq!(o.count(), 4);
    let r = get_h(&gw, "/", &[("Cache-Control", "only-if-cached")]);
    assert_eq!((r.status, r.text().as_str()), (200, "v1"));
    assert_eq!(o.count(), 4);
}

#[test]
fn head_is_served_from_the_get_entry() {
    let o = Origin::start(Script {
        headers: "cache-control: max-age=30\r\n".into(),
        ..Script::default()
    });
    let gw = gateway(&o, "");
    // A HEAD miss goes upstream and stores nothing.
    let r = request(gw.addr, "HEAD", "/", &[], b"");
    assert_eq!(r.status, 200);
    assert!(!status_of(&r).contains("stored"));
    // (The upstream counted the HEAD as its answer v1.)
    assert_eq!(get(gw.addr, "/").text(), "v2");
    let r = request(gw.addr, "HEAD", "/", &[], b"");
    assert_eq!(r.status, 200);
    assert_cs(&r, "hit");
    assert_eq!(r.header("content-length"), Some("2"));
    assert_eq!(o.count(), 2);
    // On a kept-alive connection, a HEAD hit sends no body bytes: the next answer parses.
    let mut c = Conn::open(gw.addr);
    let h = c.request("HEAD", "/", &[], b"");
    assert_eq!(h.status, 200);
    assert_eq!(c.request("GET", "/", &[], b"").text(), "v2");
}

#[test]
fn bodies_over_the_size_limit_stream_through_unstored() {
    let o = Origin::start(Script {
        headers: "cache-control: max-age=30\r\n".into(),
        big: 200_000,
        ..Script::default()
    });
    let gw = gateway(&o, "max_object_bytes = \"64KiB\"");
    let r = get(gw.addr, "/big");
    assert_eq!(r.body.len(), 200_000);
    assert!(r.body.iter().all(|&b| b == b'1'));
    assert_cs(&r, "detail=too-large");
    // Chunked: the size shows only while streaming; the body is still complete and unstored.
    o.set(|s| s.chunked = true);
    let r = get(gw.addr, "/chunked");
    assert_eq!(r.body.len(), 200_000);
    assert!(r.body.iter().all(|&b| b == b'2'));
    let r = get(gw.addr, "/chunked");
    assert!(r.body.iter().all(|&b| b == b'3'), "not stored");
    // Under the limit it is stored.
    o.set(|s| s.big = 1000);
    get(gw.addr, "/small");
    assert_cs(&get(gw.addr, "/small"), "hit");
    assert_eq!(o.count(), 4);
}

#[test]
fn unverified_authorization_bypasses_the_cache() {
    let o = Origin::start(Script {
        headers: "cache-control: max-age=30\r\n".into(),
        ..Script::default()
    });
    let gw = gateway(&o, "");
    get(gw.addr, "/");
    let auth = [("Authorization", "Bearer whoever")];
    let r = get_h(&gw, "/", &auth);
    assert_eq!(
        r.text(),
        "v2",
        "never served another client's stored answer"
    );
    assert_cs(&r, "fwd=bypass; detail=authorization");
    assert_eq!(get(gw.addr, "/").text(), "v1");
    drop(gw);
    // Shared across consumers: RFC 9111 3.5 decides, `public` allows storing.
    let gw = gateway(&o, "share_across_consumers = true");
    let r = get_h(&gw, "/s", &auth);
    assert_cs(&r, "detail=authorization");
    o.set(|s| s.headers = "cache-control: public, max-age=30\r\n".into());
    assert_cs(&get_h(&gw, "/p", &auth), "stored");
    assert_cs(&get(gw.addr, "/p"), "hit");
}

const SECRET: &str = "an-hmac-secret-of-sufficient-length";

#[test]
fn authenticated_responses_are_kept_per_consumer() {
    let dir = tempfile::tempdir().unwrap();
    let keys_file = dir.path().join("keys.toml");
    let cli = dir.path().join("cli.toml");
    std::fs::write(
        &cli,
        format!(
            "[api_keys]\nfile = \"{}\"\nhash = \"hmac-sha256\"\n",
            keys_file.display()
        ),
    )
    .unwrap();
    let create = |consumer: &str| {
        let out = std::process::Command::new(bin())
            .args(["keys", "create", "--consumer", consumer, "--config"])
            .arg(&cli)
            .env("RINGWAY_KEY_SECRET", SECRET)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let (alice, bob) = (create("alice"), create("bob"));
    let o = Origin::start(Script {
        headers: "cache-control: max-age=30\r\n".into(),
        ..Script::default()
    });
    let body = format!(
        "[api_keys]\nfile = \"{}\"\nhash = \"hmac-sha256\"\n{}",
        keys_file.display(),
        config(
            &o,
            "",
            "[policies.guard]\napi_key = { headers = [\"authorization\"] }\n"
        )
    );
    let gw = Gateway::start_env(&body, 2, &[("RINGWAY_KEY_SECRET", SECRET)]);
    let a = format!("Bearer {alice}");
    let b = format!("Bearer {bob}");
    let ra = get_h(&gw, "/me", &[("Authorization", &a)]);
    assert_eq!(ra.status, 200, "{}", ra.text());
    assert_eq!(ra.text(), "v1");
    assert_cs(&ra, "stored");
    assert_cs(&get_h(&gw, "/me", &[("Authorization", &a)]), "hit");
    let rb = get_h(&gw, "/me", &[("Authorization", &b)]);
    assert_eq!(rb.text(), "v2", "bob never gets alice's answer");
    assert_eq!(get_h(&gw, "/me", &[("Authorization", &b)]).text(), "v2");
    assert_eq!(get_h(&gw, "/me", &[("Authorization", &a)]).text(), "v1");
    // Authentication still runs before the cache: no key, no answer.
    assert_eq!(get(gw.addr, "/me").status, 401);
    assert_eq!(o.count(), 2);
}

// ---- abuse ----

#[test]
fn vary_star_is_never_stored() {
    let o = Origin::start(Script {
        headers: "cache-control: max-age=30\r\nvary: *\r\n".into(),
        ..Script::default()
    });
    let gw = gateway(&o, "");
    assert_cs(&get(gw.addr, "/"), "detail=vary");
    assert_eq!(get(gw.addr, "/").text(), "v2");
}

#[test]
fn vary_variants_per_key_are_bounded() {
    let o = Origin::start(Script {
        headers: "cache-control: max-age=30\r\nvary: x-v\r\n".into(),
        ..Script::default()
    });
    let gw = gateway(&o, "");
    let mut refused = 0;
    for i in 0..40 {
        let v = i.to_string();
        let r = get_h(&gw, "/", &[("X-V", &v)]);
        assert_eq!(r.text(), format!("v{}", i + 1));
        if status_of(&r).contains("detail=vary-limit") {
            refused += 1;
        }
    }
    assert_eq!(refused, 8, "32 variants stored, the rest refused");
    // Stored variants still answer, each with its own body.
    assert_eq!(get_h(&gw, "/", &[("X-V", "0")]).text(), "v1");
    assert_eq!(get_h(&gw, "/", &[("X-V", "31")]).text(), "v32");
    drop(gw);
    // Variants nobody asks for again do not hold the slots once stale: a later variant is
    // stored in place of a stale one.
    o.set(|s| s.headers = "cache-control: max-age=1\r\nvary: x-v\r\n".into());
    let gw = gateway(&o, "");
    for i in 0..32 {
        let v = format!("junk-{i}");
        assert_cs(&get_h(&gw, "/hot", &[("X-V", &v)]), "stored");
    }
    assert_cs(&get_h(&gw, "/hot", &[("X-V", "en")]), "detail=vary-limit");
    thread::sleep(Duration::from_millis(1100));
    assert_cs(&get_h(&gw, "/hot", &[("X-V", "en")]), "stored");
    assert_cs(&get_h(&gw, "/hot", &[("X-V", "en")]), "hit");
    // A Vary naming a field per byte is not stored either.
    let names: Vec<String> = (0..40).map(|i| format!("x-{i}")).collect();
    o.set(|s| s.headers = format!("cache-control: max-age=30\r\nvary: {}\r\n", names.join(",")));
    assert_cs(&get(gw.addr, "/many"), "detail=vary");
}

#[test]
fn huge_keyed_header_values_neither_collide_nor_grow_keys() {
    let o = Origin::start(Script {
        headers: "cache-control: max-age=30\r\nvary: x-blob\r\n".into(),
        ..Script::default()
    });
    let gw = gateway(&o, "headers = [\"x-tenant\"]");
    let big_a = "a".repeat(8000);
    let mut big_b = big_a.clone();
    big_b.push('b');
    // obs-text bytes are allowed in values; the key takes them as bytes.
    let binary = format!("{}\u{e9}\u{1f600}", "z".repeat(7000));
    let cases = [(&big_a, "v1"), (&big_b, "v2"), (&binary, "v3")];
    for (v, want) in cases {
        let r = get_h(&gw, "/", &[("X-Tenant", v), ("X-Blob", v)]);
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), want);
    }
    for (v, want) in cases {
        let r = get_h(&gw, "/", &[("X-Tenant", v), ("X-Blob", v)]);
        assert_eq!(r.text(), want, "each long value has its own entry");
        assert_cs(&r, "hit");
    }
    assert_eq!(o.count(), 3);
}

#[test]
fn hostile_cache_control_values_are_read_conservatively() {
    let o = Origin::start(Script::default());
    let gw = gateway(&o, "ttl = \"30s\"");
    // 6 KB of junk directives (with unbalanced quotes and escapes) that could hide a
    // no-store past any bound: not stored at all.
    let junk = format!("cache-control: {}, no-store\r\n", ",=\"\\".repeat(1500));
    o.set(|s| s.headers = junk);
    let r = get(gw.addr, "/j");
    assert_eq!(r.status, 200);
    assert_cs(&r, "detail=cache-control");
    assert_eq!(get(gw.addr, "/j").text(), "v2");
    // A no-store inside a quoted value does not count; a malformed max-age is stale at once.
    o.set(|s| s.headers = "cache-control: x=\"a, no-store\", max-age=1O, \"\r\n".into());
    assert_cs(&get(gw.addr, "/q"), "stored");
    assert_eq!(
        get(gw.addr, "/q").text(),
        "v4",
        "a malformed max-age is stale, not fresh"
    );
    // Conflicting max-age values: stale too.
    o.set(|s| s.headers = "cache-control: max-age=30\r\ncache-control: max-age=9999\r\n".into());
    get(gw.addr, "/d");
    assert_eq!(get(gw.addr, "/d").text(), "v6");
    // An absurd max-age saturates (2^31 s) instead of overflowing anything.
    o.set(|s| s.headers = "cache-control: max-age=99999999999999999999\r\n".into());
    get(gw.addr, "/m");
    let r = get(gw.addr, "/m");
    assert_eq!(r.text(), "v7");
    let t = ttl_of(&r);
    assert!((2_147_483_000..=2_147_483_648).contains(&t), "ttl {t}");
    // A hostile request Cache-Control does not break lookups either.
    let hostile = format!("max-age=\"{}, no-cache", "9".repeat(3000));
    let r = get_h(&gw, "/m", &[("Cache-Control", &hostile)]);
    assert_eq!(r.status, 200);
    assert_eq!(o.count(), 7 + usize::from(r.text() != "v7"));
    assert!(gw.logs().find("panicked").is_none());
}

#[test]
fn successful_unsafe_requests_invalidate_the_stored_answer() {
    let o = Origin::start(Script {
        headers: "cache-control: max-age=30\r\n".into(),
        ..Script::default()
    });
    let gw = gateway(&o, "");
    assert_eq!(get(gw.addr, "/item").text(), "v1");
    assert_cs(&get(gw.addr, "/item"), "hit");
    // A failed write changes nothing.
    o.set(|s| s.status = 500);
    let r = request(gw.addr, "POST", "/item", &[], b"x");
    assert_eq!(r.status, 500);
    assert_cs(&r, "fwd=bypass; detail=method");
    assert_eq!(get(gw.addr, "/item").text(), "v1");
    // A successful one drops it: the next GET asks the upstream again.
    o.set(|s| s.status = 200);
    assert_eq!(request(gw.addr, "PUT", "/item", &[], b"x").status, 200);
    assert_eq!(get(gw.addr, "/item").text(), "v4");
}

#[test]
fn a_304_cannot_smuggle_a_cookie_or_withdrawn_permission_into_the_store() {
    let o = Origin::start(Script {
        headers: "cache-control: max-age=1\r\n".into(),
        etag: Some("\"k\"".into()),
        not_modified_headers: "cache-control: max-age=30\r\nset-cookie: sid=alice\r\n".into(),
        ..Script::default()
    });
    let gw = gateway(&o, "");
    get(gw.addr, "/");
    thread::sleep(Duration::from_millis(1100));
    let r = get(gw.addr, "/");
    assert_cs(&r, "fwd-status=304");
    let r = get(gw.addr, "/");
    assert_cs(&r, "hit");
    assert_eq!(
        r.header("set-cookie"),
        None,
        "a cookie is never served from the store"
    );
    // A 304 that says private now: served once, then gone from the store.
    o.set(|s| s.not_modified_headers = "cache-control: private, max-age=30\r\n".into());
    let r = get_h(&gw, "/", &[("Cache-Control", "no-cache")]);
    assert_eq!(r.text(), "v1");
    let r = get(gw.addr, "/");
    assert_eq!(r.text(), "v2");
    assert_cs(&r, "fwd=uri-miss");
}

#[test]
fn concurrent_misses_collapse_into_one_request() {
    let o = Origin::start(Script {
        headers: "cache-control: max-age=30\r\n".into(),
        delay: Duration::from_millis(400),
        ..Script::default()
    });
    let gw = gateway(&o, "");
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let addr = gw.addr;
            thread::spawn(move || get(addr, "/slow"))
        })
        .collect();
    let answers: Vec<Response> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    assert!(answers.iter().all(|r| r.text() == "v1"));
    assert_eq!(
        o.count(),
        1,
        "one upstream request for eight concurrent misses"
    );
    let collapsed = answers
        .iter()
        .filter(|r| status_of(r).contains("collapsed"))
        .count();
    assert_eq!(collapsed, 7, "the followers say they were collapsed");
}

#[test]
fn concurrent_requests_for_an_expired_answer_send_one_revalidation() {
    // No stale-while-revalidate: an expired answer must be refreshed before use. Eight clients
    // arriving together at expiry wait for one upstream request instead of each sending one.
    let o = Origin::start(Script {
        // max-age=2, not 1: `Date` has whole seconds, so a fresh answer can arrive a second
        // old, and with max-age=1 the refreshed answer itself could be born stale.
        headers: "cache-control: max-age=2\r\n".into(),
        ..Script::default()
    });
    let gw = gateway(&o, "");
    assert_eq!(get(gw.addr, "/").text(), "v1");
    thread::sleep(Duration::from_millis(2100));
    o.set(|s| s.delay = Duration::from_millis(400));
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let addr = gw.addr;
            thread::spawn(move || get(addr, "/"))
        })
        .collect();
    let answers: Vec<Response> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    assert!(
        answers.iter().all(|r| r.status == 200 && r.text() == "v2"),
        "{:?}",
        answers
            .iter()
            .map(|r| (r.text(), status_of(r)))
            .collect::<Vec<_>>()
    );
    assert_eq!(o.count(), 2, "one refresh for eight requests at expiry");
    let collapsed = answers
        .iter()
        .filter(|r| status_of(r).contains("collapsed"))
        .count();
    assert_eq!(collapsed, 7, "the followers say they were collapsed");
}

#[test]
fn waiters_go_upstream_at_once_when_the_leaders_answer_will_not_be_stored() {
    // The head says private; the body takes 1.5 s. Waiting for the leader's whole body before
    // finding nothing stored would double every follower's latency.
    let o = Origin::start(Script {
        headers: "cache-control: private\r\n".into(),
        body_delay: Duration::from_millis(1500),
        ..Script::default()
    });
    let gw = gateway(&o, "");
    let start = Instant::now();
    let clients: Vec<_> = (0..3)
        .map(|i| {
            let addr = gw.addr;
            thread::sleep(Duration::from_millis(if i == 0 { 0 } else { 100 }));
            thread::spawn(move || get(addr, "/p").status)
        })
        .collect();
    for c in clients {
        assert_eq!(c.join().unwrap(), 200);
    }
    let took = start.elapsed();
    assert_eq!(o.count(), 3);
    assert!(
        took < Duration::from_millis(2700),
        "followers waited for the leader's body: {took:?}"
    );
}

#[test]
fn compressed_variants_are_stored_and_served_without_recompressing() {
    use std::io::Read;
    let o = Origin::start(Script {
        headers: "cache-control: max-age=30\r\n".into(),
        big: 4000,
        ..Script::default()
    });
    let cfg = format!(
        "[policies.c]\ncache = {{ }}\n[policies.gz]\ncompress = {{ codings = [\"gzip\"] }}\n{}\n\
         [[routes]]\nname = \"r\"\nprefix = \"/\"\npolicies = [\"c\", \"gz\"]\nproxy = {{ upstream = \"app\" }}\n",
        upstream_toml("app", &[o.up.addr])
    );
    let gw = Gateway::start(&cfg);
    let gunzip = |r: &Response| {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&r.body[..])
            .read_to_end(&mut out)
            .expect("gzip body");
        out
    };
    let plain = vec![b'1'; 4000];
    let r = get_h(&gw, "/z", &[("Accept-Encoding", "gzip")]);
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    assert_cs(&r, "fwd=uri-miss; stored");
    assert_eq!(gunzip(&r), plain);
    // The hit is the stored compressed bytes, with a length; another spelling of the same
    // negotiated coding shares the variant.
    for ae in ["gzip", "deflate, gzip;q=0.8"] {
        let r = get_h(&gw, "/z", &[("Accept-Encoding", ae)]);
        assert_cs(&r, "hit");
        assert_eq!(r.header("content-encoding"), Some("gzip"), "{ae}");
        assert_eq!(r.framing, "length");
        assert_eq!(gunzip(&r), plain);
        assert!(r
            .header_all("vary")
            .iter()
            .any(|v| v.to_ascii_lowercase().contains("accept-encoding")));
    }
    // A client without gzip gets its own (identity) variant, never the gzip bytes.
    let r = get(gw.addr, "/z");
    assert_eq!(r.header("content-encoding"), None);
    assert_cs(&r, "fwd=vary-miss");
    let r = get(gw.addr, "/z");
    assert_cs(&r, "hit");
    assert_eq!(r.header("content-encoding"), None);
    assert_eq!(r.body.len(), 4000);
    assert!(r.body.iter().all(|&b| b == b'2'));
    assert_eq!(o.count(), 2);
}

/// An upstream that compresses by itself (gzip when `Accept-Encoding` names it, 4000 `a`s
/// as they are otherwise), with `vary` (a field line, or "") in its answers.
fn gzipping_upstream(vary: &'static str) -> Upstream {
    Upstream::start(Arc::new(
        move |req: &Received, s: &mut std::net::TcpStream| {
            let body = vec![b'a'; 4000];
            let gzip_ok = req
                .header("accept-encoding")
                .is_some_and(|v| v.contains("gzip"));
            let (coding, body) = if gzip_ok {
                let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                e.write_all(&body).unwrap();
                ("content-encoding: gzip\r\n", e.finish().unwrap())
            } else {
                ("", body)
            };
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncache-control: max-age=30\r\n\
             {vary}{coding}content-length: {}\r\n\r\n",
                body.len()
            );
            let _ = s.write_all(head.as_bytes());
            let _ = s.write_all(&body);
            Reply::KeepAlive
        },
    ))
}

/// On a compressing route the stored variant is keyed by the coding the gateway negotiated,
/// so the upstream is asked for that coding alone. Otherwise an upstream that compresses by
/// itself answers `br, gzip` with gzip, that is stored as the `br` variant, and a client that
/// accepts only br is served gzip.
#[test]
fn the_upstream_is_asked_for_the_negotiated_coding_only() {
    let up = gzipping_upstream("vary: accept-encoding\r\n");
    let gw = Gateway::start(&format!(
        "[policies.c]\ncache = {{ }}\n[policies.z]\ncompress = {{ codings = [\"br\", \"gzip\"] }}\n{}\n\
         [[routes]]\nname = \"r\"\nprefix = \"/\"\npolicies = [\"c\", \"z\"]\nproxy = {{ upstream = \"app\" }}\n",
        upstream_toml("app", &[up.addr])
    ));
    let both = get_h(&gw, "/doc", &[("Accept-Encoding", "br, gzip")]);
    assert_eq!(both.status, 200);
    assert_eq!(
        both.header("content-encoding"),
        Some("br"),
        "br is preferred"
    );
    assert_eq!(up.last().header("accept-encoding"), Some("br"));
    let br_only = get_h(&gw, "/doc", &[("Accept-Encoding", "br")]);
    assert_eq!(br_only.header("content-encoding"), Some("br"));
    assert_cs(&br_only, "hit");
    // A client with gzip only gets a variant of its own, asked for as gzip.
    let gz = get_h(&gw, "/doc", &[("Accept-Encoding", "gzip")]);
    assert_eq!(gz.header("content-encoding"), Some("gzip"));
    assert_eq!(up.last().header("accept-encoding"), Some("gzip"));
    // And one that accepts no coding is asked for as identity, never handed a stored coding.
    let plain = get(gw.addr, "/doc");
    assert_eq!(plain.header("content-encoding"), None);
    assert_eq!(plain.body, vec![b'a'; 4000]);
    assert_eq!(up.last().header("accept-encoding"), Some("identity"));
    assert_eq!(up.count(), 3);
}

/// An upstream that compresses by itself without saying `Vary` (nginx's default,
/// `gzip_vary off`) on a route that caches and compresses: the gzip answer the fill asked for
/// is stored under the gzip variant only, and says `Vary: Accept-Encoding`. Before, it was
/// stored without a coding key and handed to clients that accept no gzip.
#[test]
fn an_upstream_compressing_without_vary_is_stored_per_coding() {
    let up = gzipping_upstream("");
    let gw = Gateway::start(&format!(
        "[policies.c]\ncache = {{ }}\n[policies.z]\ncompress = {{ codings = [\"br\", \"gzip\"] }}\n{}\n\
         [[routes]]\nname = \"r\"\nprefix = \"/\"\npolicies = [\"c\", \"z\"]\nproxy = {{ upstream = \"app\" }}\n",
        upstream_toml("app", &[up.addr])
    ));
    let gz = get_h(&gw, "/doc", &[("Accept-Encoding", "gzip")]);
    assert_eq!(gz.header("content-encoding"), Some("gzip"));
    assert!(
        gz.header_all("vary")
            .iter()
            .any(|v| v.to_ascii_lowercase().contains("accept-encoding")),
        "an answer encoded for one coding varies on Accept-Encoding: {:?}",
        gz.header_all("vary")
    );
    assert_cs(&gz, "stored");
    let again = get_h(&gw, "/doc", &[("Accept-Encoding", "x-gzip")]);
    assert_cs(&again, "hit");
    assert_eq!(again.header("content-encoding"), Some("gzip"));
    // Clients that accept no gzip get their own variants, never the stored gzip bytes.
    let plain = get(gw.addr, "/doc");
    assert_eq!(
        plain.header("content-encoding"),
        None,
        "identity client got gzip"
    );
    assert_eq!(plain.body, vec![b'a'; 4000]);
    assert_eq!(up.last().header("accept-encoding"), Some("identity"));
    let br = get_h(&gw, "/doc", &[("Accept-Encoding", "br")]);
    assert_eq!(
        br.header("content-encoding"),
        Some("br"),
        "br client got another coding"
    );
    assert_eq!(up.count(), 3);
}

#[test]
fn http2_clients_get_hits_304s_and_stale_answers_too() {
    let o = Origin::start(Script {
        headers: "cache-control: max-age=1, stale-if-error=60\r\n".into(),
        etag: Some("\"h\"".into()),
        ..Script::default()
    });
    let gw = start_h2c(&config(&o, "", ""));
    let mut c = H2Client::h2c(gw.addr).expect("h2c");
    let r = c.request("GET", "/h2", &[], b"").expect("h2 miss");
    assert_eq!((r.status, r.text().as_str()), (200, "v1"));
    let r = c.request("GET", "/h2", &[], b"").expect("h2 hit");
    assert_eq!(r.text(), "v1");
    assert!(r.header("cache-status").is_some_and(|v| v.contains("hit")));
    assert!(r.header("age").is_some());
    let r = c
        .request("GET", "/h2", &[("if-none-match", "\"h\"")], b"")
        .expect("h2 304");
    assert_eq!(r.status, 304);
    assert!(r.body.is_empty());
    let r = c.request("HEAD", "/h2", &[], b"").expect("h2 HEAD");
    assert_eq!((r.status, r.body.len()), (200, 0));
    thread::sleep(Duration::from_millis(1100));
    o.set(|s| {
        s.status = 502;
        s.etag = None;
    });
    let r = c
        .request("GET", "/h2", &[], b"")
        .expect("h2 stale-if-error");
    assert_eq!((r.status, r.text().as_str()), (200, "v1"));
    assert!(r
        .header("cache-status")
        .is_some_and(|v| v.contains("detail=stale-if-error")));
    assert_eq!(o.count(), 2);
}

#[test]
fn a_huge_unstorable_body_is_never_buffered_whole() {
    // 40 MB, chunked (no length to refuse it by up front): the recorder gives up at the
    // 1 MiB limit and the body streams through; the gateway's memory must not grow by it.
    let o = Origin::start(Script {
        headers: "cache-control: max-age=30\r\n".into(),
        big: 40_000_000,
        chunked: true,
        ..Script::default()
    });
    let gw = gateway(&o, "max_object_bytes = \"1MiB\"");
    o.set(|s| s.big = 1000);
    get(gw.addr, "/warm");
    o.set(|s| s.big = 40_000_000);
    let pid = gw.pid();
    let before = rss_kib(pid);
    // Sample the peak while the body streams (a buffer freed at the end would not show after).
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let done = done.clone();
        thread::spawn(move || {
            let mut peak = 0;
            while !done.load(Ordering::Relaxed) {
                peak = peak.max(rss_kib(pid));
                thread::sleep(Duration::from_millis(2));
            }
            peak
        })
    };
    let r = get(gw.addr, "/huge");
    done.store(true, Ordering::Relaxed);
    let peak = sampler.join().unwrap();
    assert_eq!(r.body.len(), 40_000_000);
    assert!(r.body.iter().all(|&b| b == b'2'));
    let grown = peak.saturating_sub(before);
    eprintln!("peak RSS growth while streaming 40 MB unstored: {grown} KiB");
    assert!(
        grown < 16 * 1024,
        "peak RSS grew {grown} KiB for a 40 MB unstored body"
    );
    // And it was not stored.
    assert_eq!(get(gw.addr, "/huge").body.first(), Some(&b'3'));
}

#[test]
fn a_hit_never_skips_a_rate_limit() {
    let o = Origin::start(Script {
        headers: "cache-control: max-age=30\r\n".into(),
        ..Script::default()
    });
    let limit = "[policies.guard]\nrate_limit = { key = \"ip\", limits = [{ requests = 3, per = \"1h\" }] }\n";
    let gw = Gateway::start(&config(&o, "", limit));
    let statuses: Vec<u16> = (0..5).map(|_| get(gw.addr, "/rl").status).collect();
    assert_eq!(
        statuses,
        [200, 200, 200, 429, 429],
        "the limit counts cache hits too"
    );
    assert_eq!(o.count(), 1);
}

/// What decides the upstream's answer but not the URL is keyed too, or bypasses the cache:
/// the Host's port (an upstream writes it into links and redirects), and a GET's body (the
/// upstream read it; the key cannot hold it).
#[test]
fn an_unkeyed_port_or_body_cannot_poison_the_cache() {
    let up = Upstream::echo();
    let gw = Gateway::start(&format!(
        "[cache]\nmax_bytes = \"16MiB\"\n\n[policies.c]\ncache = {{ ttl = \"60s\" }}\n\n{}\n\
         [[routes]]\nname = \"c\"\nprefix = \"/\"\npolicies = [\"c\"]\nproxy = {{ upstream = \"be\" }}\n",
        upstream_toml("be", &[up.addr])
    ));
    let host = format!("127.0.0.1:{}", gw.addr.port());
    let poisoned = request(gw.addr, "GET", "/port", &[("Host", "127.0.0.1:6666")], b"");
    assert!(
        poisoned.text().contains("127.0.0.1:6666"),
        "{}",
        poisoned.text()
    );
    let r = request(gw.addr, "GET", "/port", &[("Host", &host)], b"");
    assert!(
        !r.text().contains("6666"),
        "another port's answer: {}",
        r.text()
    );

    let fat = request(gw.addr, "GET", "/fat", &[], b"evil=body");
    assert_cs(&fat, "fwd=bypass; detail=body");
    let r = get(gw.addr, "/fat");
    assert!(!r.text().contains("evil=body"), "{}", r.text());
    assert_cs(&r, "fwd=uri-miss");
}

/// An answer that varies on a request field the route's policies set (here a transform; a
/// forward-auth `x-user` or a consumer header in real life) is not stored: its secondary key
/// would hold the client's value of the field, not the one the upstream saw.
#[test]
fn an_answer_varying_on_a_field_the_gateway_set_is_not_stored() {
    let o = Origin::start(Script {
        headers: "cache-control: max-age=60\r\nvary: X-User\r\n".into(),
        ..Script::default()
    });
    let guard = "[policies.guard]\ntransform = { request_headers = { set = { \"x-user\" = \"alice\" } } }\n";
    let gw = Gateway::start(&config(&o, "", guard));
    let r = get(gw.addr, "/v");
    assert_cs(&r, "detail=vary-edited");
    assert_eq!(get(gw.addr, "/v").text(), "v2", "nothing was stored");
}

/// Behind a trusted proxy the upstream sees the scheme and host the proxy forwards, and writes
/// them into links and redirects: they are part of the key. An answer made for
/// `X-Forwarded-Proto: http` (a redirect to https) was served to https clients, and one made
/// for a forged `X-Forwarded-Host` to everyone.
#[test]
fn a_trusted_proxys_forwarded_scheme_and_host_are_keyed() {
    let o = Origin::start(Script {
        headers: "cache-control: max-age=60\r\n".into(),
        ..Script::default()
    });
    let gw = Gateway::start(&format!(
        "[server]\ntrusted_proxies = [\"127.0.0.2/32\"]\n\n{}",
        config(&o, "", "")
    ));
    let via_proxy = |headers: &[(&str, &str)]| {
        let mut c = Conn::open_from(gw.addr, "127.0.0.2");
        c.request("GET", "/login", headers, b"").text()
    };
    assert_eq!(via_proxy(&[("X-Forwarded-Proto", "http")]), "v1");
    assert_eq!(via_proxy(&[("X-Forwarded-Proto", "http")]), "v1", "stored");
    assert_eq!(via_proxy(&[("X-Forwarded-Proto", "https")]), "v2");
    assert_eq!(
        via_proxy(&[
            ("X-Forwarded-Proto", "https"),
            ("X-Forwarded-Host", "evil.example")
        ]),
        "v3"
    );
    assert_eq!(
        via_proxy(&[("Forwarded", "for=10.0.0.1;proto=https;host=evil.example")]),
        "v4"
    );
    assert_eq!(
        via_proxy(&[("Forwarded", "for=10.0.0.2;proto=https;host=evil.example")]),
        "v4",
        "the client address is not part of the key"
    );
    // A client that is not a trusted proxy has its forwarding fields dropped: one key.
    let direct = |headers: &[(&str, &str)]| {
        let mut c = Conn::open_from(gw.addr, "127.0.0.3");
        c.request("GET", "/direct", headers, b"").text()
    };
    assert_eq!(direct(&[("X-Forwarded-Proto", "http")]), "v5");
    assert_eq!(direct(&[("X-Forwarded-Proto", "https")]), "v5");
}

/// The same for the fields the gateway itself writes upstream: an answer varying on
/// `X-Forwarded-For` (a per-client answer) was stored under the client's own (absent) header
/// and served to every other client.
#[test]
fn an_answer_varying_on_a_forwarding_header_is_not_stored() {
    for field in ["X-Forwarded-For", "Forwarded", "X-Request-Id"] {
        let o = Origin::start(Script {
            headers: format!("cache-control: max-age=60\r\nvary: {field}\r\n"),
            ..Script::default()
        });
        let gw = gateway(&o, "");
        let mut c = Conn::open_from(gw.addr, "127.0.0.3");
        let r = c.request("GET", "/geo", &[], b"");
        assert_cs(&r, "detail=vary-edited");
        let mut c = Conn::open_from(gw.addr, "127.0.0.4");
        let r = c.request("GET", "/geo", &[], b"");
        assert_eq!(
            r.text(),
            "v2",
            "{field}: another client's answer was served"
        );
    }
}

/// A revalidation answered with a 304 that names another representation (its `ETag` is not
/// the stored one's) must not relabel the stored body with the new validator (RFC 9111 4.3.4):
/// a client holding the new tag would then get 304s for the old bytes. The client gets the
/// stored answer as it was, and the next request fetches the current one in full.
#[test]
fn a_304_naming_another_etag_does_not_relabel_the_stored_body() {
    let served = Arc::new(AtomicUsize::new(0));
    let sv = served.clone();
    let up = Upstream::start(Arc::new(
        move |req: &Received, w: &mut std::net::TcpStream| {
            if req.header("if-none-match").is_some() {
                let _ = w.write_all(
                b"HTTP/1.1 304 Not Modified\r\netag: \"v2\"\r\ncache-control: max-age=30\r\n\r\n",
            );
                return Reply::KeepAlive;
            }
            let n = sv.fetch_add(1, Ordering::SeqCst) + 1;
            let _ = write!(
                w,
                "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncache-control: max-age=1\r\n\
             etag: \"v{n}\"\r\ncontent-length: 2\r\n\r\nv{n}"
            );
            Reply::KeepAlive
        },
    ));
    let gw = Gateway::start(&format!(
        "[policies.c]\ncache = {{ }}\n{}\n[[routes]]\nname = \"r\"\nprefix = \"/\"\n\
         policies = [\"c\"]\nproxy = {{ upstream = \"app\" }}\n",
        upstream_toml("app", &[up.addr])
    ));
    let first = get(gw.addr, "/doc");
    assert_eq!(
        (first.header("etag"), &first.body[..]),
        (Some("\"v1\""), &b"v1"[..])
    );
    thread::sleep(Duration::from_millis(1100));
    // Stale: revalidated with If-None-Match "v1", answered 304 with ETag "v2".
    let second = get(gw.addr, "/doc");
    assert_eq!(second.status, 200);
    assert_eq!(&second.body[..], b"v1");
    assert_eq!(
        second.header("etag"),
        Some("\"v1\""),
        "the old body relabelled"
    );
    assert_eq!(up.count(), 2);
    // The entry was dropped: the next request fetches the current answer, and a client holding
    // "v2" is never told that the old bytes are what it has.
    let third = get_h(&gw, "/doc", &[("If-None-Match", "\"v2\"")]);
    assert_eq!(up.count(), 3);
    assert_eq!(up.last().header("if-none-match"), None);
    assert_eq!((third.status, third.header("etag")), (304, Some("\"v2\"")));
    let fourth = get(gw.addr, "/doc");
    assert_cs(&fourth, "hit");
    assert_eq!(
        (fourth.header("etag"), &fourth.body[..]),
        (Some("\"v2\""), &b"v2"[..])
    );
}

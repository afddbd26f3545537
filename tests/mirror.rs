//! Request mirroring as a client sees it (it must not): sampled copies reach the shadow with
//! the marker header, a hanging or refusing shadow changes neither latency nor status, an
//! oversize body is not mirrored, and every outcome is counted.
mod common;
use common::faults::{Fault, FaultyUpstream};
use common::*;

use std::thread;
use std::time::{Duration, Instant};

const MIRROR: &str = "ringway_upstream_mirror_total";

fn config(main: &FaultyUpstream, shadow: &FaultyUpstream, mirror: &str) -> String {
    format!(
        "{}{}response_timeout = \"20s\"\n\n[[routes]]\nname = \"m\"\nprefix = \"/m\"\n\
         proxy = {{ upstream = \"main\", mirror = {mirror} }}\n\n[[routes]]\nname = \"n\"\n\
         prefix = \"/n\"\nproxy = {{ upstream = \"main\" }}\n",
        upstream_toml("main", &[main.addr]),
        upstream_toml("shadow", &[shadow.addr]),
    )
}

/// Waits until `f()` holds (or 5 s pass) and returns whether it did.
fn eventually(f: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        thread::sleep(Duration::from_millis(20));
    }
    f()
}

fn outcome(gw: &Gateway, o: &str) -> f64 {
    metric(
        &scrape(gw.admin),
        MIRROR,
        &[("upstream", "shadow"), ("outcome", o)],
    )
    .unwrap_or(0.0)
}

#[test]
fn the_shadow_gets_a_sampled_copy_of_requests() {
    let (main, shadow) = (
        FaultyUpstream::start("main"),
        FaultyUpstream::start("shadow"),
    );
    let gw = Gateway::start(&config(
        &main,
        &shadow,
        "{ upstream = \"shadow\", percent = 25 }",
    ));
    let mut c = Conn::open(gw.addr);
    for i in 0..400 {
        let r = c.request("POST", &format!("/m/{i}"), &[("X-Test", "yes")], b"payload");
        assert_eq!(r.status, 200);
        assert_eq!(
            r.header("x-upstream"),
            Some("main"),
            "the client sees the real answer"
        );
    }
    assert_eq!(main.count(), 400);
    let sent = |gw: &Gateway| outcome(gw, "sent");
    assert!(eventually(|| sent(&gw) as usize == shadow.count()));
    let n = shadow.count();
    // 25% of 400 = 100, standard deviation ≈ 8.7.
    assert!((55..=145).contains(&n), "shadow got {n} of 400");
    for r in shadow.requests() {
        assert_eq!(r.method, "POST");
        assert!(r.target.starts_with("/m/"), "{}", r.target);
        assert_eq!(r.header("x-ringway-mirror"), Some("1"));
        assert_eq!(r.header("x-test"), Some("yes"));
        assert_eq!(
            r.header("host"),
            Some("test"),
            "the route preserves Host for both"
        );
        assert_eq!(r.body, b"payload");
    }
    assert!(main
        .requests()
        .iter()
        .all(|r| r.header("x-ringway-mirror").is_none()));
}

/// Total time of `n` sequential GETs of `path` on one connection, all answered 200.
fn timed(gw: &Gateway, path: &str, n: usize) -> Duration {
    let mut c = Conn::open(gw.addr);
    let start = Instant::now();
    for _ in 0..n {
        let r = c.request("GET", path, &[], b"");
        assert_eq!(r.status, 200, "{}", r.text());
    }
    start.elapsed()
}

#[test]
fn a_hanging_shadow_does_not_slow_the_client() {
    let (main, shadow) = (
        FaultyUpstream::start("main"),
        FaultyUpstream::start("shadow"),
    );
    shadow.set(Fault::Hang);
    let mirror = "{ upstream = \"shadow\", max_in_flight = 8 }";
    let gw = Gateway::start_workers(&config(&main, &shadow, mirror), 1);
    let baseline = timed(&gw, "/n", 100);
    let mirrored = timed(&gw, "/m", 100);
    assert!(
        mirrored < baseline * 3 + Duration::from_millis(300),
        "mirrored {mirrored:?} vs baseline {baseline:?}"
    );
    // Eight copies hang in flight; the rest were dropped at the cap, never queued.
    assert!(eventually(|| shadow.count() == 8), "{}", shadow.count());
    assert!(eventually(|| outcome(&gw, "dropped") == 92.0));
    shadow.set(Fault::Ok);
}

#[test]
fn a_refusing_shadow_changes_no_status() {
    let (main, shadow) = (
        FaultyUpstream::start("main"),
        FaultyUpstream::start("shadow"),
    );
    shadow.set(Fault::Refuse);
    thread::sleep(Duration::from_millis(50));
    let gw = Gateway::start(&config(&main, &shadow, "{ upstream = \"shadow\" }"));
    for i in 0..50 {
        let r = get(gw.addr, &format!("/m/{i}"));
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), "main");
    }
    assert!(
        eventually(|| outcome(&gw, "failed") == 50.0),
        "{}",
        outcome(&gw, "failed")
    );
    assert_eq!(outcome(&gw, "sent"), 0.0);
}

#[test]
fn an_oversize_or_streamed_body_is_not_mirrored() {
    let (main, shadow) = (
        FaultyUpstream::start("main"),
        FaultyUpstream::start("shadow"),
    );
    let gw = Gateway::start(&config(
        &main,
        &shadow,
        "{ upstream = \"shadow\", max_body = \"1KiB\" }",
    ));
    let mut c = Conn::open(gw.addr);
    let big = vec![b'x'; 2048];
    assert_eq!(c.request("POST", "/m/big", &[], &big).status, 200);
    let small = vec![b'y'; 1000];
    assert_eq!(c.request("POST", "/m/small", &[], &small).status, 200);
    let chunked = b"5\r\nhello\r\n0\r\n\r\n";
    let r = c.request(
        "POST",
        "/m/chunked",
        &[("Transfer-Encoding", "chunked")],
        chunked,
    );
    assert_eq!(r.status, 200);
    assert!(eventually(|| shadow.count() == 1));
    thread::sleep(Duration::from_millis(100));
    let got = shadow.requests();
    assert_eq!(got.len(), 1, "only the small body is mirrored");
    assert_eq!(got[0].target, "/m/small");
    assert_eq!(got[0].body, small);
    assert_eq!(main.count(), 3);
    assert_eq!(outcome(&gw, "skipped"), 2.0);
}

#[test]
fn a_client_cannot_pass_its_request_off_as_a_mirror_copy() {
    let (main, shadow) = (
        FaultyUpstream::start("main"),
        FaultyUpstream::start("shadow"),
    );
    let gw = Gateway::start(&config(&main, &shadow, "{ upstream = \"shadow\" }"));
    let mut c = Conn::open(gw.addr);
    for path in ["/m/1", "/n/1"] {
        let forged = [("X-Ringway-Mirror", "1"), ("x-ringway-mirror", "yes")];
        assert_eq!(c.request("GET", path, &forged, b"").status, 200);
    }
    // The real upstream never sees the marker, with or without a mirror on the route.
    assert_eq!(main.count(), 2);
    for r in main.requests() {
        assert_eq!(r.header_all("x-ringway-mirror").len(), 0, "{}", r.raw_head);
    }
    // The shadow's copy carries exactly the gateway's one marker.
    assert!(eventually(|| shadow.count() == 1));
    let copy = shadow.requests().remove(0);
    assert_eq!(
        copy.header_all("x-ringway-mirror"),
        vec!["1"],
        "{}",
        copy.raw_head
    );
}

/// Each shadow has its own in-flight count: copies hanging at one shadow (at its cap) must
/// not stop the copies another route sends to a healthy shadow.
#[test]
fn a_hanging_shadow_does_not_stop_mirroring_to_another() {
    let (main, hung, healthy) = (
        FaultyUpstream::start("main"),
        FaultyUpstream::start("hung"),
        FaultyUpstream::start("healthy"),
    );
    hung.set(Fault::Hang);
    let body = format!(
        "{}{}response_timeout = \"20s\"\n{}\n[[routes]]\nname = \"m\"\nprefix = \"/m\"\n\
         proxy = {{ upstream = \"main\", mirror = {{ upstream = \"shadow\", max_in_flight = 8 }} }}\n\n\
         [[routes]]\nname = \"k\"\nprefix = \"/k\"\n\
         proxy = {{ upstream = \"main\", mirror = {{ upstream = \"shadow2\", max_in_flight = 4 }} }}\n",
        upstream_toml("main", &[main.addr]),
        upstream_toml("shadow", &[hung.addr]),
        upstream_toml("shadow2", &[healthy.addr]),
    );
    let gw = Gateway::start_workers(&body, 1);
    for i in 0..20 {
        assert_eq!(get(gw.addr, &format!("/m/{i}")).status, 200);
    }
    assert!(eventually(|| hung.count() == 8), "{}", hung.count());
    for i in 0..10 {
        assert_eq!(get(gw.addr, &format!("/k/{i}")).status, 200);
        let want = i + 1;
        assert!(
            eventually(|| healthy.count() == want),
            "copy {want} to the healthy shadow: {}",
            healthy.count()
        );
    }
    hung.set(Fault::Ok);
}

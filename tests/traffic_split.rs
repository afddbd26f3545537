//! Traffic splitting and A/B routing as a client sees them: weighted splits hold their
//! percentages, sticky splits keep a cookie on one upstream, cookie conditions pick a route,
//! metrics and the access log say which upstream served, and config mistakes are named.
mod common;
use common::faults::FaultyUpstream;
use common::*;

use std::collections::HashMap;

fn split_config(v1: &FaultyUpstream, v2: &FaultyUpstream, proxy: &str) -> String {
    format!(
        "{}{}[[routes]]\nname = \"app\"\nprefix = \"/\"\nproxy = {proxy}\n",
        upstream_toml("v1", &[v1.addr]),
        upstream_toml("v2", &[v2.addr]),
    )
}

fn served_by(c: &mut Conn, extra: &[(&str, &str)]) -> String {
    let r = c.request("GET", "/", extra, b"");
    assert_eq!(r.status, 200, "{}", r.text());
    r.header("x-upstream").unwrap_or_default().to_string()
}

#[test]
fn a_95_5_split_holds_its_percentages() {
    let (v1, v2) = (FaultyUpstream::start("v1"), FaultyUpstream::start("v2"));
    let proxy =
        "{ split = [{ upstream = \"v1\", weight = 95 }, { upstream = \"v2\", weight = 5 }] }";
    let gw = Gateway::start(&split_config(&v1, &v2, proxy));
    let mut c = Conn::open(gw.addr);
    let mut by: HashMap<String, usize> = HashMap::new();
    for _ in 0..2000 {
        *by.entry(served_by(&mut c, &[])).or_insert(0) += 1;
    }
    let canary = by.get("v2").copied().unwrap_or(0);
    assert_eq!(by.get("v1").copied().unwrap_or(0) + canary, 2000);
    // 5% of 2000 = 100, standard deviation ≈ 9.7: a wide band that never flakes.
    assert!((55..=150).contains(&canary), "v2 got {canary} of 2000");
    // The upstream metrics count each arm under its own name.
    let s = scrape_until(
        gw.admin,
        "ringway_upstream_request_duration_seconds_count",
        &[("upstream", "v2")],
        canary as f64,
    );
    let m = metric(
        &s,
        "ringway_upstream_request_duration_seconds_count",
        &[("upstream", "v2")],
    );
    assert_eq!(m, Some(canary as f64));
}

#[test]
fn a_sticky_split_keeps_each_cookie_on_one_upstream() {
    let (v1, v2) = (FaultyUpstream::start("v1"), FaultyUpstream::start("v2"));
    let proxy =
        "{ split = [{ upstream = \"v1\", weight = 1 }, { upstream = \"v2\", weight = 1 }], \
                 sticky = \"cookie:session\" }";
    let gw = Gateway::start(&split_config(&v1, &v2, proxy));
    let mut by: HashMap<String, usize> = HashMap::new();
    for k in 0..60 {
        let cookie = format!("theme=dark; session=s{k}");
        let first = served_by(&mut Conn::open(gw.addr), &[("Cookie", &cookie)]);
        for _ in 0..4 {
            let again = served_by(&mut Conn::open(gw.addr), &[("Cookie", &cookie)]);
            assert_eq!(again, first, "session s{k} switched upstream");
        }
        *by.entry(first).or_insert(0) += 1;
    }
    let v2n = by.get("v2").copied().unwrap_or(0);
    assert!((15..=45).contains(&v2n), "60 sessions split {by:?}");
    // Without the cookie: weighted random, both upstreams serve.
    let mut c = Conn::open(gw.addr);
    let mut seen: HashMap<String, usize> = HashMap::new();
    for _ in 0..60 {
        *seen.entry(served_by(&mut c, &[])).or_insert(0) += 1;
    }
    assert_eq!(seen.len(), 2, "{seen:?}");
}

#[test]
fn a_cookie_condition_sends_beta_users_elsewhere() {
    let (v1, v2) = (FaultyUpstream::start("v1"), FaultyUpstream::start("v2"));
    let body = format!(
        "{}{}[[routes]]\nname = \"beta\"\nprefix = \"/\"\ncookies = {{ beta = \"1\" }}\n\
         proxy = {{ upstream = \"v2\" }}\n\n[[routes]]\nname = \"main\"\nprefix = \"/\"\n\
         proxy = {{ upstream = \"v1\" }}\n",
        upstream_toml("v1", &[v1.addr]),
        upstream_toml("v2", &[v2.addr]),
    );
    let gw = Gateway::start(&body);
    let mut c = Conn::open(gw.addr);
    assert_eq!(served_by(&mut c, &[("Cookie", "a=1; beta=1")]), "v2");
    assert_eq!(served_by(&mut c, &[("Cookie", "beta=\"1\"")]), "v2");
    assert_eq!(served_by(&mut c, &[("Cookie", "beta=2")]), "v1");
    assert_eq!(served_by(&mut c, &[("Cookie", "Beta=1")]), "v1");
    assert_eq!(served_by(&mut c, &[]), "v1");
    // Two Cookie lines: the second one counts too.
    assert_eq!(
        served_by(&mut c, &[("Cookie", "x=1"), ("Cookie", "beta=1")]),
        "v2"
    );
    // Abuse: thousands of crumbs without '=', then the cookie.
    let crumbs = format!("{}beta=1", "junk;".repeat(2500));
    assert_eq!(
        served_by(&mut Conn::open(gw.addr), &[("Cookie", &crumbs)]),
        "v2"
    );
    let junk = ";;;=;==;beta;".repeat(500);
    assert_eq!(
        served_by(&mut Conn::open(gw.addr), &[("Cookie", &junk)]),
        "v1"
    );
}

#[test]
fn the_access_log_names_the_upstream_that_served() {
    let (v1, v2) = (FaultyUpstream::start("v1"), FaultyUpstream::start("v2"));
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let proxy =
        "{ split = [{ upstream = \"v1\", weight = 0 }, { upstream = \"v2\", weight = 3 }] }";
    let body = format!(
        "[access_log]\nenabled = true\npath = \"{}\"\n\n{}",
        log.display(),
        split_config(&v1, &v2, proxy)
    );
    let gw = Gateway::start(&body);
    assert_eq!(served_by(&mut Conn::open(gw.addr), &[]), "v2");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(line) = text.lines().next() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(v["upstream_name"], "v2", "{line}");
            assert_eq!(v["upstream"], v2.addr.to_string());
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no access-log line");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(v1.count(), 0, "a weight-0 arm takes nothing");
}

// ---------------------------------------------------------------------------------------
// Config errors name file, line and field.

const LISTENER: &str = "[[listeners]]\naddress = \"127.0.0.1:8080\"\n";

fn expect_error(text: &str, line: usize, field: &str, needle: &str) {
    let (code, stdout, stderr) = check_config(text);
    assert_eq!(code, 1, "stdout:\n{stdout}\nstderr:\n{stderr}");
    let pos = format!("check.toml:{line}:");
    let err = stderr
        .lines()
        .find(|l| l.contains(&pos))
        .unwrap_or_else(|| panic!("no error at {pos} in:\n{stderr}"));
    assert!(err.contains(field), "no field {field:?}: {err}");
    assert!(err.contains(needle), "no {needle:?}: {err}");
}

const UPS: &str = "[upstreams.v1]\ntargets = [{ address = \"127.0.0.1:9001\" }]\n";

#[test]
fn config_errors_name_the_line_and_field() {
    let route = |proxy: &str| {
        format!("{LISTENER}{UPS}[[routes]]\nname = \"a\"\nprefix = \"/\"\nproxy = {proxy}\n")
    };
    expect_error(
        &route(
            "{ split = [{ upstream = \"v1\", weight = 9 }, { upstream = \"nope\", weight = 1 }] }",
        ),
        8,
        "routes[0].proxy.split[1].upstream",
        "unknown upstream \"nope\"",
    );
    expect_error(
        &route("{ split = [{ upstream = \"v1\", weight = 0 }] }"),
        8,
        "routes[0].proxy.split",
        "all 0",
    );
    expect_error(
        &route("{ split = [{ upstream = \"v1\", weight = -1 }] }"),
        8,
        "routes[0].proxy.split[0].weight",
        "between 0 and",
    );
    expect_error(
        &route("{ upstream = \"v1\", sticky = \"cookie:s\" }"),
        8,
        "routes[0].proxy.sticky",
        "needs `split`",
    );
    expect_error(
        &route("{ split = [{ upstream = \"v1\", weight = 1 }], sticky = \"path\" }"),
        8,
        "routes[0].proxy.sticky",
        "cookie:NAME",
    );
    expect_error(
        &route("{ upstream = \"v1\", mirror = { upstream = \"shadow\" } }"),
        8,
        "routes[0].proxy.mirror.upstream",
        "unknown upstream \"shadow\"",
    );
    expect_error(
        &route("{ upstream = \"v1\", mirror = { upstream = \"v1\", percent = 150 } }"),
        8,
        "routes[0].proxy.mirror.percent",
        "between 0 and 100",
    );
    let ups = |extra: &str| {
        format!(
            "{LISTENER}[upstreams.v1]\ntargets = [{{ address = \"127.0.0.1:9001\" }}]\n{extra}\n"
        )
    };
    expect_error(
        &ups("balance = \"hash\"\nhash_on = \"ip\""),
        6,
        "upstreams.v1.hash_on",
        "client_ip",
    );
    expect_error(
        &ups("balance = \"hash\""),
        5,
        "upstreams.v1.balance",
        "needs `hash_on`",
    );
    expect_error(
        &ups("balance = \"random\""),
        5,
        "upstreams.v1.balance",
        "least_request",
    );
    expect_error(
        &ups("hash_on = \"path\""),
        5,
        "upstreams.v1.hash_on",
        "needs balance",
    );
    let cookie_route = format!(
        "{LISTENER}{UPS}[[routes]]\nname = \"a\"\nprefix = \"/\"\ncookies = {{ \"a b\" = \"1\" }}\nproxy = {{ upstream = \"v1\" }}\n"
    );
    expect_error(&cookie_route, 8, "routes[0].cookies", "invalid name");
}

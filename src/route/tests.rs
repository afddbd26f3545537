//! Shared helpers for the `route` submodules' tests, and the table's lookup and precedence tests.

use super::*;
use crate::http1::Method;

// ---- shared test helpers (used by the submodules' tests) ----

pub(super) struct Headers(pub(super) Vec<(&'static str, &'static [u8])>);

impl HeaderSource for Headers {
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.0.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
    }
}

pub(super) const NO_HEADERS: Headers = Headers(Vec::new());

pub(super) fn exact(p: &str) -> PathPattern {
    PathPattern::Exact(p.into())
}
pub(super) fn prefix(p: &str) -> PathPattern {
    PathPattern::Prefix(p.into())
}
pub(super) fn tmpl(p: &str) -> PathPattern {
    PathPattern::Template(p.into())
}

pub(super) fn route(id: u32, path: PathPattern) -> RouteSpec {
    RouteSpec {
        id: RouteId(id),
        hosts: Vec::new(),
        path,
        methods: 0,
        headers: Vec::new(),
        cookies: Vec::new(),
        query: Vec::new(),
        case_insensitive: false,
    }
}

pub(super) fn folded(mut r: RouteSpec) -> RouteSpec {
    r.case_insensitive = true;
    r
}

pub(super) fn on(mut r: RouteSpec, host: HostPattern) -> RouteSpec {
    r.hosts.push(host);
    r
}
pub(super) fn methods(mut r: RouteSpec, ms: &[Method]) -> RouteSpec {
    r.methods = ms.iter().fold(0, |acc, m| acc | m.bit());
    r
}
pub(super) fn header(mut r: RouteSpec, name: &str, c: Cond) -> RouteSpec {
    r.headers.push((name.into(), c));
    r
}
pub(super) fn cookie(mut r: RouteSpec, name: &str, c: Cond) -> RouteSpec {
    r.cookies.push((name.into(), c));
    r
}
pub(super) fn query(mut r: RouteSpec, name: &str, c: Cond) -> RouteSpec {
    r.query.push((name.into(), c));
    r
}
pub(super) fn eq(v: &str) -> Cond {
    Cond::Equals(v.into())
}
pub(super) fn host(h: &str) -> HostPattern {
    HostPattern::Exact(h.into())
}
pub(super) fn wild(s: &str) -> HostPattern {
    HostPattern::Wildcard(s.into())
}

pub(super) fn table(specs: Vec<RouteSpec>) -> RouteTable {
    match RouteTable::build(&specs) {
        Ok(t) => t,
        Err(e) => panic!("unexpected conflicts: {e:?}"),
    }
}

pub(super) fn full(
    t: &RouteTable,
    host: &str,
    method: Method,
    path: &[u8],
    q: Option<&[u8]>,
    h: &Headers,
) -> Lookup {
    let req = RouteRequest {
        host,
        method,
        path,
        query: q,
    };
    t.lookup(&req, h)
}

/// Route id matched by GET on any host, or None.
pub(super) fn hit(t: &RouteTable, path: &str) -> Option<u32> {
    hit_on(t, "example.org", path)
}
fn hit_on(t: &RouteTable, h: &str, path: &str) -> Option<u32> {
    match full(t, h, Method::Get, path.as_bytes(), None, &NO_HEADERS) {
        Lookup::Found { route, .. } => Some(route.0),
        _ => None,
    }
}

#[test]
fn root_and_empty_path() {
    let t = table(vec![route(0, exact("/"))]);
    assert_eq!(hit(&t, "/"), Some(0));
    assert_eq!(hit(&t, ""), Some(0));
    assert_eq!(hit(&t, "//"), None);
    // Non-origin-form targets never match.
    assert_eq!(hit(&t, "*"), None);
}

#[test]
fn host_tiers_exact_then_wildcard_longest_then_any() {
    let t = table(vec![
        route(0, prefix("/")),
        on(route(1, prefix("/")), wild(".example.com")),
        on(route(2, prefix("/")), wild(".b.example.com")),
        on(route(3, prefix("/")), host("a.b.example.com")),
    ]);
    assert_eq!(hit_on(&t, "a.b.example.com", "/"), Some(3));
    assert_eq!(hit_on(&t, "x.b.example.com", "/"), Some(2));
    assert_eq!(hit_on(&t, "b.example.com", "/"), Some(1));
    assert_eq!(hit_on(&t, "x.y.example.com", "/"), Some(1));
    // A wildcard never matches the bare domain.
    assert_eq!(hit_on(&t, "example.com", "/"), Some(0));
    assert_eq!(hit_on(&t, "other.org", "/"), Some(0));
    assert_eq!(hit_on(&t, "", "/"), Some(0));
}

#[test]
fn wildcard_spellings_and_case_are_normalized() {
    let t = table(vec![
        on(route(0, exact("/")), wild("*.Example.com")),
        on(
            route(1, exact("/")),
            HostPattern::Exact("API.example.org".into()),
        ),
    ]);
    assert_eq!(hit_on(&t, "x.example.com", "/"), Some(0));
    assert_eq!(hit_on(&t, "api.example.org", "/"), Some(1));
}

#[test]
fn host_tiers_fall_through_when_nothing_matches() {
    let t = table(vec![
        methods(route(0, exact("/x")), &[Method::Post]),
        on(route(1, exact("/only-exact")), host("api.example.com")),
        on(
            methods(route(2, exact("/x")), &[Method::Get]),
            host("api.example.com"),
        ),
        on(route(3, exact("/w")), wild(".example.com")),
    ]);
    assert_eq!(hit_on(&t, "api.example.com", "/only-exact"), Some(1));
    // Path only on the wildcard tier.
    assert_eq!(hit_on(&t, "api.example.com", "/w"), Some(3));
    // Method mismatch on the exact tier falls through to the any-host route.
    let post = full(
        &t,
        "api.example.com",
        Method::Post,
        b"/x",
        None,
        &NO_HEADERS,
    );
    assert_eq!(
        post,
        Lookup::Found {
            route: RouteId(0),
            captures: Vec::new()
        }
    );
    // Allow bits are collected across tiers.
    let put = full(&t, "api.example.com", Method::Put, b"/x", None, &NO_HEADERS);
    assert_eq!(
        put,
        Lookup::MethodNotAllowed {
            allow: Method::Get.bit() | Method::Post.bit()
        }
    );
}

#[test]
fn method_not_allowed_unions_allow_bits() {
    let t = table(vec![
        methods(route(0, exact("/m")), &[Method::Get, Method::Head]),
        methods(route(1, tmpl("/{x}")), &[Method::Post]),
        header(
            methods(route(2, exact("/m")), &[Method::Delete]),
            "x-a",
            Cond::Present,
        ),
        methods(route(3, exact("/n")), &[Method::Get]),
        route(4, exact("/any")),
    ]);
    let m = |method, path: &[u8]| full(&t, "h", method, path, None, &NO_HEADERS);
    assert_eq!(
        m(Method::Put, b"/m"),
        Lookup::MethodNotAllowed {
            allow: Method::Get.bit() | Method::Head.bit() | Method::Post.bit()
        }
    );
    assert!(matches!(
        m(Method::Post, b"/m"),
        Lookup::Found {
            route: RouteId(1),
            ..
        }
    ));
    assert_eq!(
        m(Method::Other, b"/n"),
        Lookup::MethodNotAllowed {
            allow: Method::Post.bit() | Method::Get.bit()
        }
    );
    assert!(matches!(
        m(Method::Other, b"/any"),
        Lookup::Found {
            route: RouteId(4),
            ..
        }
    ));
    assert_eq!(m(Method::Get, b"/nope/x"), Lookup::NotFound);
}

#[test]
fn never_panics_on_arbitrary_bytes() {
    let t = table(vec![
        route(0, prefix("/a")),
        route(1, tmpl("/{x}/{*rest}")),
        route(2, tmpl("/{x}/{y}")),
        query(route(3, exact("/a/b")), "k", eq("v")),
        on(route(4, tmpl("/{x}")), wild(".e.com")),
        header(route(5, exact("/")), "h", eq("v")),
    ]);
    let alphabet = b"/a%b{}*\xff\xc3\x00=&.";
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..20_000 {
        let mut buf = Vec::new();
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let len = (seed >> 58) as usize;
        for _ in 0..len {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            buf.push(alphabet[(seed >> 33) as usize % alphabet.len()]);
        }
        let split = buf.len() / 2;
        let (p, q) = buf.split_at(split);
        let _ = full(&t, "x.e.com", Method::Get, p, Some(q), &NO_HEADERS);
        let _ = full(&t, ".e.com", Method::Other, q, Some(p), &NO_HEADERS);
    }
}

#[test]
fn case_insensitive_routes_match_any_case_with_normal_precedence() {
    let t = table(vec![
        route(0, prefix("/")),
        folded(route(1, prefix("/Admin"))),
        route(2, exact("/admin/exact")),
        folded(route(3, tmpl("/{t}/Users/{id}"))),
        route(4, tmpl("/{t}/{x}/{id}")),
        folded(route(5, tmpl("/Files/{*rest}"))),
        route(6, prefix("/admin/deep/er")),
    ]);
    for p in ["/admin", "/ADMIN", "/aDmIn/x", "/admin/", "/ADMIN/exact"] {
        assert_eq!(hit(&t, p), Some(1), "{p}");
    }
    // An exact-case route beats a folded one of the same shape; deeper still wins.
    assert_eq!(hit(&t, "/admin/exact"), Some(2));
    assert_eq!(hit(&t, "/Admin/deep/er/x"), Some(1));
    assert_eq!(hit(&t, "/admin/deep/er/x"), Some(6));
    assert_eq!(hit(&t, "/adminx"), Some(0));
    assert_eq!(hit(&t, "/acme/USERS/7"), Some(3));
    assert_eq!(hit(&t, "/acme/other/7"), Some(4));
    assert_eq!(hit(&t, "/FILES/a/b/c"), Some(5));
    assert_eq!(hit(&t, "/files"), Some(5));
    // Two folded routes that differ only in case are a conflict.
    let dup = RouteTable::build(&[
        folded(route(0, exact("/Admin"))),
        folded(route(1, exact("/aDMIN"))),
    ]);
    assert!(dup.is_err());
}

#[test]
fn match_order_lists_tiers_then_path_precedence() {
    let t = table(vec![
        route(0, prefix("/")),
        route(1, tmpl("/u/{id}")),
        header(route(2, exact("/u")), "x", Cond::Present),
        route(3, exact("/u")),
        route(4, prefix("/u")),
        route(5, tmpl("/u/{*r}")),
        on(route(6, exact("/w")), wild(".example.com")),
        on(route(7, exact("/w")), wild(".b.example.com")),
        on(route(8, exact("/h")), host("b.com")),
        on(on(route(9, exact("/h")), host("a.com")), HostPattern::Any),
    ]);
    let ids: Vec<u32> = t.match_order().iter().map(|r| r.0).collect();
    assert_eq!(ids, vec![9, 8, 7, 6, 2, 3, 1, 5, 4, 0]);
}

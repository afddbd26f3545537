//! Route table: host → path matcher → candidate routes, with deterministic precedence.
//!
//! **Structures.** [`RouteTable::build`] compiles the route specs into one path trie per host
//! *tier*: an exact-host map (`"api.example.com"` → trie), a wildcard-suffix map
//! (`".example.com"` → trie) and one any-host trie. `trie` describes the node layout and the
//! walk; `cond` holds the compiled per-route conditions; `template` turns path patterns into
//! shapes; `conflict` finds ties. Nothing scans all routes.
//!
//! **Lookup order** (first candidate that matches wins; nothing is collected in between):
//! 1. Host tiers: the exact host, then wildcard suffixes longest first (for `a.b.example.com`:
//!    `.b.example.com`, then `.example.com`), then any-host. A tier with no matching route falls
//!    through to the next one (like Kong), so a more specific host never hides a generic route.
//! 2. Inside a tier: full matches first, found by a depth-first walk that tries the static child
//!    before the `{param}` child at every segment (exact paths beat templates; between templates
//!    the leftmost static segment wins). Then catch-all templates and prefixes, deepest first;
//!    at equal depth catch-all templates, then prefixes ending in `/`, then other prefixes.
//! 3. Inside one node: more header+query conditions first, then declaration order (`RouteId`).
//!
//! A candidate matches when every header condition holds (`Equals` is a byte comparison of the
//! first value, `Present` needs the header), every query condition holds (query split on `&`,
//! the first `=` splits name from value, names and values percent-decoded, malformed `%` escapes
//! kept literally, `+` kept as `+`, `a` alone means present with an empty value, the first
//! occurrence of a name decides) and its method set contains the request method (0 = any).
//! When nothing matched but some candidate failed only on the method, the result is
//! `MethodNotAllowed` with the union of those candidates' method bits (across all host tiers).
//!
//! **Paths** are matched as raw bytes (any bytes, no UTF-8 needed), case-sensitively, except
//! for routes with `case_insensitive`: their literal segments are stored lowercase as *folded*
//! children and compared ignoring ASCII case. Folded routes take part in the same precedence
//! (depth, exact before template, and so on); at a tie the exact-case route wins (it is tried
//! first at each segment). An empty request path is
//! `/`; a non-empty path that does not start with `/` (e.g. `*`) matches nothing. `{param}`
//! takes exactly one non-empty segment; `{*rest}` takes the rest (possibly empty, so
//! `/files/{*rest}` matches `/files`, `/files/` and `/files/a/b`). Full matches only consider
//! paths of at most 64 segments; catch-alls and prefixes look at the first 64 segments.
//! A template segment that is not a whole `{name}` / final `{*name}` (e.g. `v{n}`) is plain text
//! here; the config compiler rejects it first via [`validate_template`]. A template without
//! parameters is the same as the exact path with that text.
//!
//! **Conflicts.** Ties are build errors, never resolved by declaration order; `conflict` has the
//! exact rule (same host pattern, path shape, overlapping methods and equally many conditions
//! that are not mutually exclusive).

use std::fmt;

use ahash::AHashMap;

use crate::http1::Method;

mod cond;
mod conflict;
mod template;
mod trie;

use cond::RouteData;
use conflict::{describe_conflicts, find_ties};
use template::{Shape, ShapeKind};
use trie::{Ctx, Trie, MAX_SEGMENTS};

pub use template::validate_template;

/// Dense index of a route in `Compiled::routes` (declaration order).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RouteId(pub u32);

/// Which hosts a route serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostPattern {
    /// Lowercase host without port, e.g. "api.example.com".
    Exact(String),
    /// `*.example.com` stored as the suffix ".example.com" (lowercase). Matches one or more
    /// labels in front: "a.example.com", "a.b.example.com"; never "example.com" itself.
    Wildcard(String),
    /// No host condition.
    Any,
}

/// Path condition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathPattern {
    /// Whole path equals this.
    Exact(String),
    /// Segment-aware prefix: "/api" matches "/api", "/api/", "/api/x" but not "/apix".
    /// "/" matches everything. A trailing slash in the pattern ("/api/") matches "/api/" and
    /// "/api/x" but not "/api".
    Prefix(String),
    /// Segments with `{name}` (exactly one non-empty segment) and an optional final `{*name}`
    /// (the rest of the path, possibly empty, possibly several segments).
    Template(String),
}

/// Header / query condition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cond {
    Equals(String),
    Present,
}

/// Everything the table needs to know about one route.
#[derive(Clone, Debug)]
pub struct RouteSpec {
    pub id: RouteId,
    /// Empty means `[HostPattern::Any]`.
    pub hosts: Vec<HostPattern>,
    pub path: PathPattern,
    /// Method bit set (`Method::bit`); 0 means any method (including extension methods).
    pub methods: u16,
    /// Header name (lowercase) → condition. Value comparison is exact (case-sensitive).
    pub headers: Vec<(String, Cond)>,
    /// Query parameter name → condition (compared after percent-decoding name and value;
    /// `+` is NOT treated as a space).
    pub query: Vec<(String, Cond)>,
    /// The path pattern's literal text matches in any ASCII case (`/admin` matches `/ADMIN`).
    pub case_insensitive: bool,
}

/// Why two routes cannot coexist.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteConflict {
    pub first: RouteId,
    pub second: RouteId,
    /// Human-readable explanation, e.g. "same host, path and methods with equally specific conditions".
    pub reason: String,
}

/// What the request looks like to the router.
pub struct RouteRequest<'a> {
    /// Lowercase host, no port.
    pub host: &'a str,
    pub method: Method,
    /// Path (no query), already normalized by `http1::normalize_path_with`.
    pub path: &'a [u8],
    /// Raw query string without '?'.
    pub query: Option<&'a [u8]>,
}

/// Access to request headers by lowercase name (first value).
pub trait HeaderSource {
    fn header(&self, lowercase_name: &str) -> Option<&[u8]>;
}

/// Captured template segments: (param index in the route's template, byte range in the path).
pub type Captures = Vec<(u16, std::ops::Range<usize>)>;

#[derive(Debug, PartialEq, Eq)]
pub enum Lookup {
    Found {
        route: RouteId,
        captures: Captures,
    },
    /// Some route matched host/path/conditions but not the method. Bits for `Allow`.
    MethodNotAllowed {
        allow: u16,
    },
    NotFound,
}

/// The compiled, immutable matcher.
pub struct RouteTable {
    /// Per-route data in `specs` order; tries refer to routes by index into this.
    routes: Vec<RouteData>,
    exact_hosts: AHashMap<Box<str>, Trie>,
    wildcard_hosts: AHashMap<Box<str>, Trie>,
    any_host: Option<Trie>,
    order: Vec<RouteId>,
}

impl fmt::Debug for RouteTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RouteTable")
            .field("routes", &self.routes.len())
            .field("exact_hosts", &self.exact_hosts.len())
            .field("wildcard_hosts", &self.wildcard_hosts.len())
            .field("any_host", &self.any_host.is_some())
            .finish()
    }
}

impl RouteTable {
    /// Builds the table; reports every conflict (ties) instead of picking one.
    pub fn build(specs: &[RouteSpec]) -> Result<RouteTable, Vec<RouteConflict>> {
        let shapes: Vec<Shape> = specs
            .iter()
            .map(|s| Shape::of_route(&s.path, s.case_insensitive))
            .collect();
        let routes: Vec<RouteData> = specs
            .iter()
            .zip(&shapes)
            .map(|(s, shape)| RouteData::new(s, shape))
            .collect();

        // Host tier → routes serving it, in declaration order.
        let mut exact: AHashMap<String, Vec<u32>> = AHashMap::new();
        let mut wildcard: AHashMap<String, Vec<u32>> = AHashMap::new();
        let mut any: Vec<u32> = Vec::new();
        for (i, spec) in specs.iter().enumerate() {
            let i = i as u32;
            let mut hosts: Vec<HostPattern> = spec.hosts.iter().map(normalize_host).collect();
            if hosts.is_empty() {
                hosts.push(HostPattern::Any);
            }
            for (k, host) in hosts.iter().enumerate() {
                if hosts[..k].contains(host) {
                    continue;
                }
                match host {
                    HostPattern::Exact(h) => exact.entry(h.clone()).or_default().push(i),
                    HostPattern::Wildcard(h) => wildcard.entry(h.clone()).or_default().push(i),
                    HostPattern::Any => any.push(i),
                }
            }
        }

        // Tiers in display/precedence order.
        let mut exact_tiers: Vec<(String, Vec<u32>)> = exact.into_iter().collect();
        exact_tiers.sort_by(|a, b| a.0.cmp(&b.0));
        let mut wild_tiers: Vec<(String, Vec<u32>)> = wildcard.into_iter().collect();
        wild_tiers.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));

        let mut ties: Vec<((RouteId, RouteId), String, u32, u32)> = Vec::new();
        for (h, list) in &exact_tiers {
            find_ties(&format!("host `{h}`"), list, &routes, &shapes, &mut ties);
        }
        for (h, list) in &wild_tiers {
            find_ties(&format!("host `*{h}`"), list, &routes, &shapes, &mut ties);
        }
        find_ties("any host", &any, &routes, &shapes, &mut ties);
        if !ties.is_empty() {
            return Err(describe_conflicts(ties, specs, &routes));
        }

        let mut order = Vec::with_capacity(routes.len());
        let mut seen = vec![false; routes.len()];
        let tiers = exact_tiers
            .iter()
            .chain(wild_tiers.iter())
            .map(|(_, l)| l)
            .chain(std::iter::once(&any));
        for list in tiers {
            let mut sorted = list.clone();
            sorted.sort_by_key(|&r| display_key(&routes[r as usize], &shapes[r as usize]));
            for r in sorted {
                if !std::mem::replace(&mut seen[r as usize], true) {
                    order.push(routes[r as usize].id);
                }
            }
        }

        let exact_hosts = exact_tiers
            .into_iter()
            .map(|(h, l)| (h.into_boxed_str(), Trie::build(&l, &shapes, &routes)))
            .collect();
        let wildcard_hosts = wild_tiers
            .into_iter()
            .map(|(h, l)| (h.into_boxed_str(), Trie::build(&l, &shapes, &routes)))
            .collect();
        let any_host = (!any.is_empty()).then(|| Trie::build(&any, &shapes, &routes));
        Ok(RouteTable {
            routes,
            exact_hosts,
            wildcard_hosts,
            any_host,
            order,
        })
    }

    pub fn lookup<H: HeaderSource>(&self, req: &RouteRequest<'_>, headers: &H) -> Lookup {
        let (path, empty_path) = match req.path {
            [] => (&b"/"[..], true),
            [b'/', ..] => (req.path, false),
            _ => return Lookup::NotFound,
        };
        let mut ctx = Ctx {
            routes: &self.routes,
            path,
            nsegs: path.iter().filter(|&&b| b == b'/').count(),
            method_bit: req.method.bit(),
            query: req.query,
            headers,
            caps: [(0, 0); MAX_SEGMENTS],
            allow: 0,
        };
        let found = self.lookup_tiers(req.host, &mut ctx);
        match found {
            Some((route, mut captures)) => {
                if empty_path {
                    // Ranges were computed against "/"; the only possible capture is an empty
                    // catch-all, which must point into the caller's empty path.
                    for c in &mut captures {
                        c.1 = 0..0;
                    }
                }
                Lookup::Found { route, captures }
            }
            None if ctx.allow != 0 => Lookup::MethodNotAllowed { allow: ctx.allow },
            None => Lookup::NotFound,
        }
    }

    /// Route ids in precedence order, for `check` output (per host tier then path precedence).
    pub fn match_order(&self) -> Vec<RouteId> {
        self.order.clone()
    }

    fn lookup_tiers<H: HeaderSource>(
        &self,
        host: &str,
        ctx: &mut Ctx<'_, H>,
    ) -> Option<(RouteId, Captures)> {
        if let Some(trie) = self.exact_hosts.get(host) {
            if let Some(found) = trie.lookup(ctx) {
                return Some(found);
            }
        }
        if !self.wildcard_hosts.is_empty() {
            // Every '.' after the first byte starts a candidate suffix; left to right is
            // longest first. '.' is ASCII, so slicing there is on a char boundary.
            for (i, b) in host.bytes().enumerate() {
                if b != b'.' || i == 0 {
                    continue;
                }
                if let Some(trie) = host.get(i..).and_then(|s| self.wildcard_hosts.get(s)) {
                    if let Some(found) = trie.lookup(ctx) {
                        return Some(found);
                    }
                }
            }
        }
        self.any_host.as_ref().and_then(|trie| trie.lookup(ctx))
    }
}

/// Lowercases hosts and accepts `*.example.com` / `example.com` spellings for wildcards.
fn normalize_host(h: &HostPattern) -> HostPattern {
    match h {
        HostPattern::Exact(h) => HostPattern::Exact(h.to_ascii_lowercase()),
        HostPattern::Wildcard(s) => {
            let s = s.strip_prefix('*').unwrap_or(s).to_ascii_lowercase();
            if s.starts_with('.') {
                HostPattern::Wildcard(s)
            } else {
                HostPattern::Wildcard(format!(".{s}"))
            }
        }
        HostPattern::Any => HostPattern::Any,
    }
}

/// Sort key for `match_order` within one host tier.
fn display_key(r: &RouteData, s: &Shape) -> (u8, usize, ShapeKind, usize, RouteId) {
    let depth = s.segs.len();
    match s.kind {
        ShapeKind::Full if r.params == 0 => (0, 0, s.kind, usize::MAX - r.conds, r.id),
        ShapeKind::Full => (1, 0, s.kind, usize::MAX - r.conds, r.id),
        _ => (2, usize::MAX - depth, s.kind, usize::MAX - r.conds, r.id),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}

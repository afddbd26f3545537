//! `RouteTable`: builds one path trie per host tier from the route specs (reporting every tie),
//! looks a request up through the tiers in precedence order, and lists the match order for
//! `check`. The precedence rules are in the `route` module header.

use std::fmt;

use ahash::AHashMap;

use crate::http1::Method;

use super::cond::RouteData;
use super::conflict::{describe_conflicts, find_ties};
use super::model::{
    Captures, HeaderSource, HostPattern, Lookup, RouteConflict, RouteId, RouteRequest, RouteSpec,
};
use super::template::{Shape, ShapeKind};
use super::trie::{Ctx, Trie, MAX_SEGMENTS};

/// The compiled, immutable matcher.
pub struct RouteTable {
    /// Per-route data in `specs` order; tries refer to routes by index into this.
    routes: Vec<RouteData>,
    /// Every header, cookie and query name some route's conditions read (deduplicated).
    cond_headers: Box<[Box<str>]>,
    cond_cookies: Box<[Box<str>]>,
    cond_query: Box<[Box<[u8]>]>,
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
        let distinct = |names: Vec<&str>| -> Box<[Box<str>]> {
            let mut v: Vec<Box<str>> = names.into_iter().map(Box::from).collect();
            v.sort();
            v.dedup();
            v.into()
        };
        let cond_headers = distinct(
            routes
                .iter()
                .flat_map(|r| r.headers.iter().map(|(n, _)| &**n))
                .collect(),
        );
        let cond_cookies = distinct(
            routes
                .iter()
                .flat_map(|r| r.cookies.iter().map(|(n, _)| &**n))
                .collect(),
        );
        let mut cond_query: Vec<Box<[u8]>> = routes
            .iter()
            .flat_map(|r| r.query.iter().map(|(n, _)| n.clone()))
            .collect();
        cond_query.sort();
        cond_query.dedup();
        Ok(RouteTable {
            routes,
            cond_headers,
            cond_cookies,
            cond_query: cond_query.into(),
            exact_hosts,
            wildcard_hosts,
            any_host,
            order,
        })
    }

    /// What the request gives more than once among the headers, cookies and query parameters
    /// any route's conditions read, if anything: the detail of the 400 it gets. A condition
    /// reads one copy while a backend may read another (PHP the last query parameter, most
    /// frameworks the first header), so a request that repeats one could be routed as `dev`
    /// and served as `prod`; it is refused rather than routed on a guess. A table without
    /// conditions checks nothing.
    pub fn repeated_condition<H: HeaderSource>(
        &self,
        query: Option<&[u8]>,
        headers: &H,
    ) -> Option<&'static str> {
        if self
            .cond_headers
            .iter()
            .any(|n| headers.header_copies(n) > 1)
        {
            return Some("a header a route condition reads is sent more than once");
        }
        if self
            .cond_cookies
            .iter()
            .any(|n| headers.cookie_copies(n) > 1)
        {
            return Some("a cookie a route condition reads is sent more than once");
        }
        let q = query.unwrap_or_default();
        let repeated = |name: &[u8]| {
            crate::http1::query::pairs(q)
                .filter(|(n, _)| crate::http1::query::decoded_is(n, name))
                .nth(1)
                .is_some()
        };
        if !q.is_empty() && self.cond_query.iter().any(|n| repeated(n)) {
            return Some("a query parameter a route condition reads is sent more than once");
        }
        None
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
            // HEAD is GET without the body (RFC 9110 §9.3.2): a route for GET answers it too,
            // so a HEAD cannot slip past a GET route's policies to a broader route.
            method_bit: match req.method {
                Method::Head => Method::Head.bit() | Method::Get.bit(),
                m => m.bit(),
            },
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

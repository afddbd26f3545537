//! Route table: host → path matcher → candidate routes, with deterministic precedence.
//!
//! **Structures.** [`RouteTable::build`] compiles the route specs into one path trie per host
//! *tier*: an exact-host map (`"api.example.com"` → trie), a wildcard-suffix map
//! (`".example.com"` → trie) and one any-host trie. A trie node is one path segment (the path
//! split on `/` after its leading `/`; `/` is one empty segment, so `/users` and `/users/` are
//! different paths). A node has static children (a small list or a hash map), at most one
//! `{param}` child, and three route lists: *full* (exact paths and templates ending here),
//! *catch-all* (`…/{*rest}` templates whose fixed part ends here) and *prefix*. Each node also
//! carries bit masks of the depths at which its subtree holds full / catch-all routes, so a
//! lookup never enters a branch that cannot produce a candidate. Nothing scans all routes.
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
//! **Paths** are matched as raw bytes (any bytes, no UTF-8 needed). An empty request path is
//! `/`; a non-empty path that does not start with `/` (e.g. `*`) matches nothing. `{param}`
//! takes exactly one non-empty segment; `{*rest}` takes the rest (possibly empty, so
//! `/files/{*rest}` matches `/files`, `/files/` and `/files/a/b`). Full matches only consider
//! paths of at most 64 segments; catch-alls and prefixes look at the first 64 segments.
//! A template segment that is not a whole `{name}` / final `{*name}` (e.g. `v{n}`) is plain text
//! here; the config compiler rejects it first via [`validate_template`]. A template without
//! parameters is the same as the exact path with that text.
//!
//! **Conflicts.** Ties are build errors, never resolved by declaration order: two routes conflict
//! when they share a host pattern, have the same path shape (same exact path, same prefix, or
//! templates equal after erasing parameter names), overlapping methods and the same number of
//! conditions, unless some header or query name is required by both with different `Equals`
//! values.

use std::fmt;
use std::ops::Range;

use ahash::AHashMap;

use crate::http1::Method;

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
    /// Raw path (no query), already dot-segment normalized.
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

/// Most path segments a lookup walks through the trie.
const MAX_SEGMENTS: usize = 64;
/// "No node" marker for `Node::param`.
const NO_NODE: u32 = u32::MAX;
/// Static children kept in a plain list up to this count, in a hash map above it.
const FEW_CHILDREN: usize = 8;

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
        let shapes: Vec<Shape> = specs.iter().map(|s| Shape::of(&s.path)).collect();
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

/// Checks a path template for the config compiler and returns its parameter names in order
/// (the catch-all name included, without `*`).
///
/// Rejects: not starting with `/`, unbalanced braces, braces that do not span a whole segment
/// (`v{n}`, `{a}{b}`), empty names, `*` inside a name, a `{*name}` that is not the last
/// segment, and duplicate names.
pub fn validate_template(t: &str) -> Result<Vec<String>, String> {
    let Some(body) = t.strip_prefix('/') else {
        return Err(format!("template `{t}` must start with '/'"));
    };
    let segs: Vec<&str> = body.split('/').collect();
    let mut names: Vec<String> = Vec::new();
    for (i, seg) in segs.iter().enumerate() {
        let opens = seg.matches('{').count();
        let closes = seg.matches('}').count();
        if opens == 0 && closes == 0 {
            continue;
        }
        if opens != closes {
            return Err(format!("unbalanced braces in segment `{seg}` of `{t}`"));
        }
        if opens > 1 || !seg.starts_with('{') || !seg.ends_with('}') {
            return Err(format!(
                "segment `{seg}` of `{t}` mixes text and parameters; a parameter must be a whole \
                 segment like `{{name}}` or `{{*name}}`"
            ));
        }
        let inner = &seg[1..seg.len() - 1];
        let (catch_all, name) = match inner.strip_prefix('*') {
            Some(n) => (true, n),
            None => (false, inner),
        };
        if name.is_empty() {
            return Err(format!("empty parameter name in `{seg}` of `{t}`"));
        }
        if name.contains('*') {
            return Err(format!("parameter name `{name}` in `{t}` contains '*'"));
        }
        if catch_all && i + 1 != segs.len() {
            return Err(format!(
                "catch-all `{seg}` in `{t}` must be the last segment"
            ));
        }
        if names.iter().any(|n| n == name) {
            return Err(format!("duplicate parameter name `{name}` in `{t}`"));
        }
        names.push(name.to_string());
    }
    Ok(names)
}

// ---------------------------------------------------------------------------------------------
// Compiled route data and conditions

#[derive(Debug)]
enum CondValue {
    Equals(Box<[u8]>),
    Present,
}

impl CondValue {
    fn new(c: &Cond) -> CondValue {
        match c {
            Cond::Equals(v) => CondValue::Equals(v.as_bytes().into()),
            Cond::Present => CondValue::Present,
        }
    }
}

#[derive(Debug)]
struct RouteData {
    id: RouteId,
    methods: u16,
    headers: Box<[(Box<str>, CondValue)]>,
    query: Box<[(Box<[u8]>, CondValue)]>,
    /// Header + query condition count: more conditions sort first.
    conds: usize,
    /// Number of captures a match produces (params incl. catch-all).
    params: u16,
    /// Prefix ending in '/': needs at least one more request segment after its own.
    needs_more: bool,
}

impl RouteData {
    fn new(spec: &RouteSpec, shape: &Shape) -> RouteData {
        let params = shape
            .segs
            .iter()
            .filter(|s| matches!(s, SegKey::Param))
            .count()
            + usize::from(shape.kind == ShapeKind::CatchAll);
        RouteData {
            id: spec.id,
            methods: spec.methods,
            headers: spec
                .headers
                .iter()
                .map(|(n, c)| (n.to_ascii_lowercase().into_boxed_str(), CondValue::new(c)))
                .collect(),
            query: spec
                .query
                .iter()
                .map(|(n, c)| (n.as_bytes().into(), CondValue::new(c)))
                .collect(),
            conds: spec.headers.len() + spec.query.len(),
            params: u16::try_from(params).unwrap_or(u16::MAX),
            needs_more: shape.kind == ShapeKind::PrefixDir,
        }
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

// ---------------------------------------------------------------------------------------------
// Path shapes

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum SegKey {
    Static(Box<[u8]>),
    Param,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum ShapeKind {
    /// Exact path or template without catch-all: consumes every segment.
    Full,
    /// Template ending in `{*name}`; `segs` is the part before it.
    CatchAll,
    /// Prefix ending in '/' (stripped from `segs`): needs at least one more segment.
    PrefixDir,
    /// Prefix: the request's first segments equal `segs`.
    Prefix,
}

/// A path pattern with parameter names erased: equal shapes match exactly the same paths.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Shape {
    kind: ShapeKind,
    segs: Vec<SegKey>,
}

/// Segments of a pattern; a missing leading '/' is treated as present, empty as "/".
fn pattern_segments(s: &str) -> std::str::Split<'_, char> {
    s.strip_prefix('/').unwrap_or(s).split('/')
}

/// Whole-segment `{name}` (Some(false)) or `{*name}` (Some(true)); anything else is text.
fn param_segment(seg: &str) -> Option<bool> {
    let inner = seg.strip_prefix('{')?.strip_suffix('}')?;
    if inner.contains(['{', '}']) {
        return None;
    }
    match inner.strip_prefix('*') {
        Some(n) if !n.is_empty() && !n.contains('*') => Some(true),
        None if !inner.is_empty() && !inner.contains('*') => Some(false),
        _ => None,
    }
}

impl Shape {
    fn of(p: &PathPattern) -> Shape {
        let stat = |s: &str| SegKey::Static(s.as_bytes().into());
        match p {
            PathPattern::Exact(s) => Shape {
                kind: ShapeKind::Full,
                segs: pattern_segments(s).map(stat).collect(),
            },
            PathPattern::Template(t) => {
                let raw: Vec<&str> = pattern_segments(t).collect();
                let mut segs = Vec::with_capacity(raw.len());
                let mut kind = ShapeKind::Full;
                for (i, seg) in raw.iter().enumerate() {
                    match param_segment(seg) {
                        Some(false) => segs.push(SegKey::Param),
                        Some(true) if i + 1 == raw.len() => kind = ShapeKind::CatchAll,
                        _ => segs.push(stat(seg)),
                    }
                }
                Shape { kind, segs }
            }
            PathPattern::Prefix(s) => {
                let body = s.strip_prefix('/').unwrap_or(s);
                match body.strip_suffix('/') {
                    _ if body.is_empty() => Shape {
                        kind: ShapeKind::PrefixDir,
                        segs: Vec::new(),
                    },
                    Some(dir) => Shape {
                        kind: ShapeKind::PrefixDir,
                        segs: dir.split('/').map(stat).collect(),
                    },
                    None => Shape {
                        kind: ShapeKind::Prefix,
                        segs: body.split('/').map(stat).collect(),
                    },
                }
            }
        }
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

// ---------------------------------------------------------------------------------------------
// Conflicts

fn methods_overlap(a: u16, b: u16) -> bool {
    a == 0 || b == 0 || a & b != 0
}

/// Some name both require with `Equals` and different values: no request satisfies both.
fn disjoint<K: PartialEq + ?Sized, N: std::ops::Deref<Target = K>>(
    a: &[(N, CondValue)],
    b: &[(N, CondValue)],
) -> bool {
    a.iter().any(|(na, ca)| {
        b.iter().any(|(nb, cb)| match (ca, cb) {
            (CondValue::Equals(va), CondValue::Equals(vb)) => **na == **nb && va != vb,
            _ => false,
        })
    })
}

fn find_ties(
    tier: &str,
    list: &[u32],
    routes: &[RouteData],
    shapes: &[Shape],
    out: &mut Vec<((RouteId, RouteId), String, u32, u32)>,
) {
    let mut groups: AHashMap<&Shape, Vec<u32>> = AHashMap::new();
    for &r in list {
        groups.entry(&shapes[r as usize]).or_default().push(r);
    }
    for group in groups.values().filter(|g| g.len() > 1) {
        for (k, &a) in group.iter().enumerate() {
            for &b in &group[k + 1..] {
                let (ra, rb) = (&routes[a as usize], &routes[b as usize]);
                if methods_overlap(ra.methods, rb.methods)
                    && ra.conds == rb.conds
                    && !disjoint::<str, _>(&ra.headers, &rb.headers)
                    && !disjoint::<[u8], _>(&ra.query, &rb.query)
                {
                    let (x, y) = if ra.id <= rb.id { (a, b) } else { (b, a) };
                    let key = (routes[x as usize].id, routes[y as usize].id);
                    out.push((key, tier.to_string(), x, y));
                }
            }
        }
    }
}

fn method_names(bits: u16) -> String {
    if bits == 0 {
        return "any method".to_string();
    }
    let names: Vec<&str> = Method::ALL
        .iter()
        .filter(|m| bits & m.bit() != 0)
        .map(|m| m.as_str())
        .collect();
    names.join(",")
}

fn describe_path(p: &PathPattern) -> String {
    match p {
        PathPattern::Exact(s) => format!("exact path `{s}`"),
        PathPattern::Prefix(s) => format!("prefix `{s}`"),
        PathPattern::Template(s) => format!("template `{s}`"),
    }
}

/// One conflict per route pair, naming every host tier on which they tie.
fn describe_conflicts(
    mut ties: Vec<((RouteId, RouteId), String, u32, u32)>,
    specs: &[RouteSpec],
    routes: &[RouteData],
) -> Vec<RouteConflict> {
    ties.sort_by_key(|t| t.0);
    let mut out: Vec<RouteConflict> = Vec::new();
    let mut i = 0;
    while i < ties.len() {
        let (key, _, x, y) = &ties[i];
        let mut tiers = Vec::new();
        let mut j = i;
        while j < ties.len() && ties[j].0 == *key {
            if !tiers.contains(&ties[j].1.as_str()) {
                tiers.push(ties[j].1.as_str());
            }
            j += 1;
        }
        let (sa, sb) = (&specs[*x as usize], &specs[*y as usize]);
        let (ra, rb) = (&routes[*x as usize], &routes[*y as usize]);
        let reason = format!(
            "routes {} and {} tie on {}: same path shape ({} vs {}), overlapping methods \
             ({} vs {}) and {} header/query condition(s) each that are not mutually exclusive; \
             add a distinguishing condition, split the methods or remove one",
            key.0 .0,
            key.1 .0,
            tiers.join(", "),
            describe_path(&sa.path),
            describe_path(&sb.path),
            method_names(ra.methods),
            method_names(rb.methods),
            ra.conds,
        );
        out.push(RouteConflict {
            first: key.0,
            second: key.1,
            reason,
        });
        i = j;
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Path trie

enum Children {
    Few(Vec<(Box<[u8]>, u32)>),
    Many(AHashMap<Box<[u8]>, u32>),
}

impl Children {
    #[inline]
    fn get(&self, seg: &[u8]) -> Option<u32> {
        match self {
            Children::Few(v) => v.iter().find(|(k, _)| **k == *seg).map(|&(_, n)| n),
            Children::Many(m) => m.get(seg).copied(),
        }
    }
}

struct Node {
    children: Children,
    /// `{param}` child or `NO_NODE`.
    param: u32,
    /// Routes (indexes into `RouteTable::routes`) in precedence order.
    full: Box<[u32]>,
    catch_all: Box<[u32]>,
    prefix: Box<[u32]>,
    /// Bit d: this subtree holds full (resp. catch-all) routes at absolute depth d.
    full_mask: u128,
    catch_mask: u128,
}

struct Trie {
    /// Node 0 is the root (depth 0, before the first segment).
    nodes: Vec<Node>,
    /// Deepest prefix route (segments), if any: bounds the static walk of phase 2.
    prefix_depth: Option<usize>,
}

#[inline]
fn has_depth(mask: u128, depth: usize) -> bool {
    depth < 128 && mask & (1u128 << depth) != 0
}

fn depth_bit(depth: usize) -> u128 {
    if depth < 128 {
        1u128 << depth
    } else {
        0
    }
}

impl Trie {
    fn build(list: &[u32], shapes: &[Shape], routes: &[RouteData]) -> Trie {
        struct Building {
            children: AHashMap<Box<[u8]>, u32>,
            param: u32,
            parent: u32,
            full: Vec<u32>,
            catch_all: Vec<u32>,
            prefix: Vec<u32>,
            full_mask: u128,
            catch_mask: u128,
        }
        let fresh = |parent: u32| Building {
            children: AHashMap::new(),
            param: NO_NODE,
            parent,
            full: Vec::new(),
            catch_all: Vec::new(),
            prefix: Vec::new(),
            full_mask: 0,
            catch_mask: 0,
        };
        let mut nodes = vec![fresh(NO_NODE)];
        let mut prefix_depth: Option<usize> = None;
        for &r in list {
            let shape = &shapes[r as usize];
            let mut at = 0usize;
            for seg in &shape.segs {
                let next = match seg {
                    SegKey::Static(s) => nodes[at].children.get(&**s).copied(),
                    SegKey::Param => Some(nodes[at].param).filter(|&p| p != NO_NODE),
                };
                at = match next {
                    Some(n) => n as usize,
                    None => {
                        let n = nodes.len() as u32;
                        nodes.push(fresh(at as u32));
                        match seg {
                            SegKey::Static(s) => {
                                nodes[at].children.insert(s.clone(), n);
                            }
                            SegKey::Param => nodes[at].param = n,
                        }
                        n as usize
                    }
                };
            }
            let depth = shape.segs.len();
            let node = &mut nodes[at];
            match shape.kind {
                ShapeKind::Full => {
                    node.full.push(r);
                    node.full_mask |= depth_bit(depth);
                }
                ShapeKind::CatchAll => {
                    node.catch_all.push(r);
                    node.catch_mask |= depth_bit(depth);
                }
                ShapeKind::Prefix | ShapeKind::PrefixDir => {
                    node.prefix.push(r);
                    prefix_depth = prefix_depth.max(Some(depth));
                }
            }
        }
        // Children always come after their parent, so a reverse sweep propagates masks up.
        for i in (1..nodes.len()).rev() {
            let (full, catch, parent) = (nodes[i].full_mask, nodes[i].catch_mask, nodes[i].parent);
            nodes[parent as usize].full_mask |= full;
            nodes[parent as usize].catch_mask |= catch;
        }
        let rank = |&r: &u32| {
            let d = &routes[r as usize];
            (!d.needs_more, usize::MAX - d.conds, d.id)
        };
        let nodes = nodes
            .into_iter()
            .map(|mut b| {
                b.full.sort_by_key(rank);
                b.catch_all.sort_by_key(rank);
                b.prefix.sort_by_key(rank);
                let children = if b.children.len() <= FEW_CHILDREN {
                    let mut v: Vec<(Box<[u8]>, u32)> = b.children.into_iter().collect();
                    v.sort();
                    Children::Few(v)
                } else {
                    Children::Many(b.children)
                };
                Node {
                    children,
                    param: b.param,
                    full: b.full.into_boxed_slice(),
                    catch_all: b.catch_all.into_boxed_slice(),
                    prefix: b.prefix.into_boxed_slice(),
                    full_mask: b.full_mask,
                    catch_mask: b.catch_mask,
                }
            })
            .collect();
        Trie {
            nodes,
            prefix_depth,
        }
    }

    fn lookup<H: HeaderSource>(&self, ctx: &mut Ctx<'_, H>) -> Option<(RouteId, Captures)> {
        let root = &self.nodes[0];
        // Phase 1: exact paths and templates that consume the whole path.
        if ctx.nsegs <= MAX_SEGMENTS && has_depth(root.full_mask, ctx.nsegs) {
            if let Some(found) = self.full_walk(0, 1, 0, 0, ctx) {
                return Some(found);
            }
        }
        // Phase 2: catch-alls and prefixes, deepest first. Prefixes only live on the
        // all-static path, so find that path's nodes once.
        let max_depth = ctx.nsegs.min(MAX_SEGMENTS);
        let mut static_path = [0u32; MAX_SEGMENTS + 1];
        let mut reach = 0;
        let mut pos = 1;
        let walk_to = match self.prefix_depth {
            Some(p) => p.min(max_depth),
            None if root.catch_mask == 0 => return None,
            None => 0,
        };
        while reach < walk_to {
            let end = ctx.seg_end(pos);
            let seg = ctx.path.get(pos..end).unwrap_or_default();
            match self.nodes[static_path[reach] as usize].children.get(seg) {
                Some(child) => {
                    reach += 1;
                    static_path[reach] = child;
                    pos = end + 1;
                }
                None => break,
            }
        }
        for d in (0..=max_depth).rev() {
            if has_depth(root.catch_mask, d) {
                if let Some(found) = self.catch_walk(0, 1, 0, d, 0, ctx) {
                    return Some(found);
                }
            }
            if d <= reach && self.prefix_depth.is_some() {
                for &r in self.nodes[static_path[d] as usize].prefix.iter() {
                    if ctx.routes[r as usize].needs_more && d >= ctx.nsegs {
                        continue;
                    }
                    if ctx.candidate(r) {
                        return Some((ctx.routes[r as usize].id, Vec::new()));
                    }
                }
            }
        }
        None
    }

    /// DFS for full matches: static child before `{param}` child. `pos` is where the segment
    /// at `depth` starts (valid while `depth < nsegs`); `ncaps` params captured so far.
    fn full_walk<H: HeaderSource>(
        &self,
        node: u32,
        pos: usize,
        depth: usize,
        ncaps: usize,
        ctx: &mut Ctx<'_, H>,
    ) -> Option<(RouteId, Captures)> {
        let n = &self.nodes[node as usize];
        if depth == ctx.nsegs {
            for &r in n.full.iter() {
                if ctx.candidate(r) {
                    return Some(ctx.found(r, ncaps, None));
                }
            }
            return None;
        }
        let end = ctx.seg_end(pos);
        let seg = ctx.path.get(pos..end).unwrap_or_default();
        if let Some(child) = n.children.get(seg) {
            if has_depth(self.nodes[child as usize].full_mask, ctx.nsegs) {
                if let Some(found) = self.full_walk(child, end + 1, depth + 1, ncaps, ctx) {
                    return Some(found);
                }
            }
        }
        if !seg.is_empty()
            && n.param != NO_NODE
            && has_depth(self.nodes[n.param as usize].full_mask, ctx.nsegs)
        {
            ctx.caps[ncaps] = (pos, end);
            return self.full_walk(n.param, end + 1, depth + 1, ncaps + 1, ctx);
        }
        None
    }

    /// DFS for catch-all templates whose fixed part is exactly `target` segments deep.
    fn catch_walk<H: HeaderSource>(
        &self,
        node: u32,
        pos: usize,
        depth: usize,
        target: usize,
        ncaps: usize,
        ctx: &mut Ctx<'_, H>,
    ) -> Option<(RouteId, Captures)> {
        let n = &self.nodes[node as usize];
        if depth == target {
            let len = ctx.path.len();
            let rest = if depth < ctx.nsegs {
                pos..len
            } else {
                len..len
            };
            for &r in n.catch_all.iter() {
                if ctx.candidate(r) {
                    return Some(ctx.found(r, ncaps, Some(rest)));
                }
            }
            return None;
        }
        let end = ctx.seg_end(pos);
        let seg = ctx.path.get(pos..end).unwrap_or_default();
        if let Some(child) = n.children.get(seg) {
            if has_depth(self.nodes[child as usize].catch_mask, target) {
                if let Some(found) = self.catch_walk(child, end + 1, depth + 1, target, ncaps, ctx)
                {
                    return Some(found);
                }
            }
        }
        if !seg.is_empty()
            && n.param != NO_NODE
            && has_depth(self.nodes[n.param as usize].catch_mask, target)
        {
            ctx.caps[ncaps] = (pos, end);
            return self.catch_walk(n.param, end + 1, depth + 1, target, ncaps + 1, ctx);
        }
        None
    }
}

// ---------------------------------------------------------------------------------------------
// Per-request state

struct Ctx<'a, H> {
    routes: &'a [RouteData],
    /// Request path, starting with '/'.
    path: &'a [u8],
    /// Number of segments: one per '/'.
    nsegs: usize,
    method_bit: u16,
    query: Option<&'a [u8]>,
    headers: &'a H,
    /// Param captures along the current DFS path (start, end).
    caps: [(usize, usize); MAX_SEGMENTS],
    /// Methods of candidates that matched everything but the method.
    allow: u16,
}

impl<H: HeaderSource> Ctx<'_, H> {
    #[inline]
    fn seg_end(&self, pos: usize) -> usize {
        match self.path.get(pos..) {
            Some(rest) => rest
                .iter()
                .position(|&b| b == b'/')
                .map_or(self.path.len(), |i| pos + i),
            None => self.path.len(),
        }
    }

    /// Checks conditions and method of one candidate; remembers method-only misses.
    fn candidate(&mut self, r: u32) -> bool {
        let route = &self.routes[r as usize];
        for (name, cond) in route.headers.iter() {
            match (self.headers.header(name), cond) {
                (None, _) => return false,
                (Some(v), CondValue::Equals(want)) if v != &**want => return false,
                _ => {}
            }
        }
        for (name, cond) in route.query.iter() {
            match (query_param(self.query, name), cond) {
                (None, _) => return false,
                (Some(raw), CondValue::Equals(want)) if !decoded_eq(raw, want) => return false,
                _ => {}
            }
        }
        if route.methods == 0 || route.methods & self.method_bit != 0 {
            return true;
        }
        self.allow |= route.methods;
        false
    }

    fn found(&self, r: u32, ncaps: usize, rest: Option<Range<usize>>) -> (RouteId, Captures) {
        let route = &self.routes[r as usize];
        let mut captures = Vec::new();
        if route.params > 0 {
            captures.reserve_exact(usize::from(route.params));
            for (i, &(s, e)) in self.caps[..ncaps].iter().enumerate() {
                captures.push((i as u16, s..e));
            }
            if let Some(rest) = rest {
                captures.push((ncaps as u16, rest));
            }
        }
        (route.id, captures)
    }
}

/// Raw value of the first query parameter whose decoded name is `name` (`a` alone → empty).
fn query_param<'q>(query: Option<&'q [u8]>, name: &[u8]) -> Option<&'q [u8]> {
    query?
        .split(|&b| b == b'&')
        .filter(|pair| !pair.is_empty())
        .find_map(|pair| {
            let (n, v) = match pair.iter().position(|&b| b == b'=') {
                Some(i) => (&pair[..i], &pair[i + 1..]),
                None => (pair, &pair[pair.len()..]),
            };
            decoded_eq(n, name).then_some(v)
        })
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Whether percent-decoding `raw` yields `want`, without allocating. Malformed escapes stay
/// literal; `+` is not a space.
fn decoded_eq(raw: &[u8], want: &[u8]) -> bool {
    let mut i = 0;
    let mut j = 0;
    while i < raw.len() {
        let mut b = raw[i];
        i += 1;
        if b == b'%' {
            if let (Some(h), Some(l)) = (
                raw.get(i).copied().and_then(hex),
                raw.get(i + 1).copied().and_then(hex),
            ) {
                b = h << 4 | l;
                i += 2;
            }
        }
        if want.get(j) != Some(&b) {
            return false;
        }
        j += 1;
    }
    j == want.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Headers(Vec<(&'static str, &'static [u8])>);

    impl HeaderSource for Headers {
        fn header(&self, name: &str) -> Option<&[u8]> {
            self.0.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
        }
    }

    const NO_HEADERS: Headers = Headers(Vec::new());

    fn exact(p: &str) -> PathPattern {
        PathPattern::Exact(p.into())
    }
    fn prefix(p: &str) -> PathPattern {
        PathPattern::Prefix(p.into())
    }
    fn tmpl(p: &str) -> PathPattern {
        PathPattern::Template(p.into())
    }

    fn route(id: u32, path: PathPattern) -> RouteSpec {
        RouteSpec {
            id: RouteId(id),
            hosts: Vec::new(),
            path,
            methods: 0,
            headers: Vec::new(),
            query: Vec::new(),
        }
    }

    fn on(mut r: RouteSpec, host: HostPattern) -> RouteSpec {
        r.hosts.push(host);
        r
    }
    fn methods(mut r: RouteSpec, ms: &[Method]) -> RouteSpec {
        r.methods = ms.iter().fold(0, |acc, m| acc | m.bit());
        r
    }
    fn header(mut r: RouteSpec, name: &str, c: Cond) -> RouteSpec {
        r.headers.push((name.into(), c));
        r
    }
    fn query(mut r: RouteSpec, name: &str, c: Cond) -> RouteSpec {
        r.query.push((name.into(), c));
        r
    }
    fn eq(v: &str) -> Cond {
        Cond::Equals(v.into())
    }
    fn host(h: &str) -> HostPattern {
        HostPattern::Exact(h.into())
    }
    fn wild(s: &str) -> HostPattern {
        HostPattern::Wildcard(s.into())
    }

    fn table(specs: Vec<RouteSpec>) -> RouteTable {
        match RouteTable::build(&specs) {
            Ok(t) => t,
            Err(e) => panic!("unexpected conflicts: {e:?}"),
        }
    }

    fn full(
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
    fn hit(t: &RouteTable, path: &str) -> Option<u32> {
        hit_on(t, "example.org", path)
    }
    fn hit_on(t: &RouteTable, h: &str, path: &str) -> Option<u32> {
        match full(t, h, Method::Get, path.as_bytes(), None, &NO_HEADERS) {
            Lookup::Found { route, .. } => Some(route.0),
            _ => None,
        }
    }
    fn hit_q(t: &RouteTable, path: &str, q: &str) -> Option<u32> {
        match full(
            t,
            "h",
            Method::Get,
            path.as_bytes(),
            Some(q.as_bytes()),
            &NO_HEADERS,
        ) {
            Lookup::Found { route, .. } => Some(route.0),
            _ => None,
        }
    }
    fn captures(t: &RouteTable, path: &str) -> Captures {
        match full(t, "h", Method::Get, path.as_bytes(), None, &NO_HEADERS) {
            Lookup::Found { captures, .. } => captures,
            other => panic!("no match for {path}: {other:?}"),
        }
    }

    #[test]
    fn exact_paths_are_whole_and_slash_sensitive() {
        let t = table(vec![route(0, exact("/users")), route(1, exact("/users/"))]);
        assert_eq!(hit(&t, "/users"), Some(0));
        assert_eq!(hit(&t, "/users/"), Some(1));
        assert_eq!(hit(&t, "/users/x"), None);
        assert_eq!(hit(&t, "/user"), None);
        assert_eq!(hit(&t, "/"), None);
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
    fn template_param_takes_one_non_empty_segment() {
        let t = table(vec![route(0, tmpl("/users/{id}/posts/{post}"))]);
        assert_eq!(
            captures(&t, "/users/42/posts/7"),
            vec![(0, 7..9), (1, 16..17)]
        );
        assert_eq!(hit(&t, "/users//posts/7"), None);
        assert_eq!(hit(&t, "/users/42/posts/"), None);
        assert_eq!(hit(&t, "/users/42/posts/7/x"), None);
        assert_eq!(hit(&t, "/users/42/posts"), None);
    }

    #[test]
    fn catch_all_takes_the_rest_possibly_empty() {
        let t = table(vec![
            route(0, tmpl("/files/{*rest}")),
            route(1, tmpl("/u/{id}/{*rest}")),
        ]);
        assert_eq!(captures(&t, "/files"), vec![(0, 6..6)]);
        assert_eq!(captures(&t, "/files/"), vec![(0, 7..7)]);
        assert_eq!(captures(&t, "/files/a/b"), vec![(0, 7..10)]);
        assert_eq!(hit(&t, "/filesx"), None);
        assert_eq!(captures(&t, "/u/9/x/y"), vec![(0, 3..4), (1, 5..8)]);
        assert_eq!(captures(&t, "/u/9"), vec![(0, 3..4), (1, 4..4)]);
        assert_eq!(hit(&t, "/u"), None);

        let root = table(vec![route(0, tmpl("/{*all}"))]);
        assert_eq!(captures(&root, "/a/b"), vec![(0, 1..4)]);
        assert_eq!(captures(&root, ""), vec![(0, 0..0)]);
    }

    #[test]
    fn routes_without_params_capture_nothing() {
        let t = table(vec![route(0, exact("/a")), route(1, prefix("/b"))]);
        assert_eq!(captures(&t, "/a"), Vec::new());
        assert_eq!(captures(&t, "/b/c"), Vec::new());
    }

    #[test]
    fn prefix_is_segment_aware() {
        let t = table(vec![route(0, prefix("/api"))]);
        for p in ["/api", "/api/", "/api/x", "/api/x/y"] {
            assert_eq!(hit(&t, p), Some(0), "{p}");
        }
        for p in ["/apix", "/ap", "/", "/x/api"] {
            assert_eq!(hit(&t, p), None, "{p}");
        }
        let t = table(vec![route(0, prefix("/api/"))]);
        assert_eq!(hit(&t, "/api/"), Some(0));
        assert_eq!(hit(&t, "/api/x"), Some(0));
        assert_eq!(hit(&t, "/api"), None);
        let t = table(vec![route(0, prefix("/"))]);
        for p in ["", "/", "/a", "/a/b/", "/%ff"] {
            assert_eq!(hit(&t, p), Some(0), "{p}");
        }
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
    fn exact_beats_template_beats_catch_all_and_prefix() {
        let t = table(vec![
            route(0, prefix("/users")),
            route(1, tmpl("/users/{*rest}")),
            route(2, tmpl("/users/{id}")),
            route(3, exact("/users/me")),
        ]);
        assert_eq!(hit(&t, "/users/me"), Some(3));
        assert_eq!(hit(&t, "/users/42"), Some(2));
        // Catch-all template before a prefix of the same depth.
        assert_eq!(hit(&t, "/users/42/x"), Some(1));
        assert_eq!(hit(&t, "/users"), Some(1));
    }

    #[test]
    fn deeper_catch_all_or_prefix_wins() {
        let t = table(vec![
            route(0, prefix("/")),
            route(1, prefix("/a")),
            route(2, tmpl("/a/b/{*rest}")),
            route(3, prefix("/a/b/c")),
            route(4, prefix("/a/b/")),
        ]);
        assert_eq!(hit(&t, "/z"), Some(0));
        assert_eq!(hit(&t, "/a/x"), Some(1));
        // Depth 2: catch-all template before the prefix "/a/b/".
        assert_eq!(hit(&t, "/a/b/x"), Some(2));
        assert_eq!(hit(&t, "/a/b/c/d"), Some(3));
        // The catch-all also takes "/a/b" (empty rest); "/a/b/" needs one more segment.
        assert_eq!(hit(&t, "/a/b"), Some(2));

        // A catch-all three segments deep through params beats a depth-2 prefix.
        let t = table(vec![
            route(0, prefix("/a/b")),
            route(1, tmpl("/{x}/{y}/{z}/{*rest}")),
        ]);
        assert_eq!(hit(&t, "/a/b/x/y"), Some(1));
        assert_eq!(hit(&t, "/a/b/x"), Some(1));
        assert_eq!(hit(&t, "/a/b/"), Some(0));

        let t = table(vec![route(0, prefix("/a")), route(1, prefix("/a/"))]);
        // Equal depth: the prefix ending in '/' is the longer one.
        assert_eq!(hit(&t, "/a/x"), Some(1));
        assert_eq!(hit(&t, "/a"), Some(0));
    }

    #[test]
    fn more_conditions_first_then_declaration_order() {
        let t = table(vec![
            route(0, exact("/x")),
            header(route(1, exact("/x")), "x-beta", Cond::Present),
            query(
                header(route(2, exact("/x")), "x-beta", eq("2")),
                "v",
                Cond::Present,
            ),
        ]);
        let beta2 = Headers(vec![("x-beta", b"2")]);
        let beta1 = Headers(vec![("x-beta", b"1")]);
        let id = |h: &Headers, q: Option<&[u8]>| match full(&t, "h", Method::Get, b"/x", q, h) {
            Lookup::Found { route, .. } => route.0,
            other => panic!("{other:?}"),
        };
        assert_eq!(id(&beta2, Some(b"v")), 2);
        assert_eq!(id(&beta2, None), 1);
        assert_eq!(id(&beta1, Some(b"v")), 1);
        assert_eq!(id(&NO_HEADERS, Some(b"v")), 0);
    }

    #[test]
    fn static_segment_before_param_leftmost_wins() {
        let t = table(vec![
            route(0, tmpl("/{a}/b/{c}")),
            route(1, tmpl("/x/{b}/{c}")),
            route(2, tmpl("/{a}/{b}/z")),
        ]);
        assert_eq!(hit(&t, "/x/b/z"), Some(1));
        assert_eq!(hit(&t, "/y/b/z"), Some(0));
        assert_eq!(hit(&t, "/y/q/z"), Some(2));

        // Backtracking: the static branch dead-ends, the param branch matches.
        let t = table(vec![route(0, tmpl("/a/{x}/z")), route(1, tmpl("/{x}/b/c"))]);
        assert_eq!(hit(&t, "/a/b/c"), Some(1));
        assert_eq!(captures(&t, "/a/b/c"), vec![(0, 1..2)]);
    }

    #[test]
    fn query_conditions_are_percent_decoded() {
        let t = table(vec![
            query(route(0, exact("/q")), "na me", eq("a/b")),
            query(route(1, exact("/p")), "flag", Cond::Present),
            query(route(2, exact("/e")), "flag", eq("")),
            query(route(3, exact("/plus")), "v", eq("a+b")),
            query(route(4, exact("/bad")), "v", eq("%zz%4")),
        ]);
        assert_eq!(hit_q(&t, "/q", "na%20me=a%2Fb"), Some(0));
        assert_eq!(hit_q(&t, "/q", "x=1&na%20me=a%2fb&y"), Some(0));
        assert_eq!(hit_q(&t, "/q", "na+me=a/b"), None);
        assert_eq!(hit_q(&t, "/q", "na%20me=a/bc"), None);
        // The first occurrence of a name decides.
        assert_eq!(hit_q(&t, "/q", "na%20me=x&na%20me=a/b"), None);
        assert_eq!(hit_q(&t, "/p", "flag"), Some(1));
        assert_eq!(hit_q(&t, "/p", "a=1&&flag="), Some(1));
        assert_eq!(hit_q(&t, "/p", "flags=1"), None);
        assert_eq!(hit(&t, "/p"), None);
        assert_eq!(hit_q(&t, "/e", "flag"), Some(2));
        assert_eq!(hit_q(&t, "/e", "flag=1"), None);
        assert_eq!(hit_q(&t, "/plus", "v=a+b"), Some(3));
        assert_eq!(hit_q(&t, "/plus", "v=a%2Bb"), Some(3));
        assert_eq!(hit_q(&t, "/plus", "v=a%20b"), None);
        assert_eq!(hit_q(&t, "/bad", "v=%zz%4"), Some(4));
    }

    #[test]
    fn header_conditions_compare_bytes() {
        let t = table(vec![
            header(route(0, exact("/h")), "x-env", eq("Prod")),
            header(route(1, exact("/p")), "x-key", Cond::Present),
        ]);
        let get = |path: &[u8], h: Headers| full(&t, "h", Method::Get, path, None, &h);
        assert!(matches!(
            get(b"/h", Headers(vec![("x-env", b"Prod")])),
            Lookup::Found { .. }
        ));
        assert_eq!(
            get(b"/h", Headers(vec![("x-env", b"prod")])),
            Lookup::NotFound
        );
        assert!(matches!(
            get(b"/p", Headers(vec![("x-key", b"")])),
            Lookup::Found { .. }
        ));
        assert_eq!(get(b"/p", Headers(vec![])), Lookup::NotFound);
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
    fn invalid_template_segments_are_plain_text() {
        let t = table(vec![route(0, tmpl("/v{n}/x")), route(1, tmpl("/a/{*r}/b"))]);
        assert_eq!(hit(&t, "/v{n}/x"), Some(0));
        assert_eq!(hit(&t, "/v1/x"), None);
        assert_eq!(hit(&t, "/a/{*r}/b"), Some(1));
        assert_eq!(hit(&t, "/a/q/b"), None);
    }

    #[test]
    fn deep_paths_still_reach_prefixes() {
        let t = table(vec![
            route(0, prefix("/deep")),
            route(1, tmpl("/deep/{*rest}")),
            route(2, tmpl("/d/{x}")),
        ]);
        let long = format!("/deep{}", "/s".repeat(200));
        assert_eq!(hit(&t, &long), Some(1));
        assert_eq!(captures(&t, &long), vec![(0, 6..long.len())]);
        let t = table(vec![route(0, prefix("/deep")), route(1, exact(&long))]);
        assert_eq!(hit(&t, &long), Some(0));
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

    fn conflicts(specs: Vec<RouteSpec>) -> Vec<(u32, u32)> {
        match RouteTable::build(&specs) {
            Ok(_) => Vec::new(),
            Err(e) => e.iter().map(|c| (c.first.0, c.second.0)).collect(),
        }
    }

    #[test]
    fn conflicts_on_equal_shape_host_methods_and_specificity() {
        // Same exact path, same host, both any method.
        assert_eq!(
            conflicts(vec![route(0, exact("/a")), route(1, exact("/a"))]),
            vec![(0, 1)]
        );
        // Templates equal after erasing names; a param-less template equals the exact path.
        assert_eq!(
            conflicts(vec![route(0, tmpl("/u/{id}")), route(1, tmpl("/u/{uid}"))]),
            vec![(0, 1)]
        );
        assert_eq!(
            conflicts(vec![route(0, exact("/a")), route(1, tmpl("/a"))]),
            vec![(0, 1)]
        );
        assert_eq!(
            conflicts(vec![route(0, prefix("/p")), route(1, prefix("/p"))]),
            vec![(0, 1)]
        );
        // Overlapping methods (one side "any").
        assert_eq!(
            conflicts(vec![
                methods(route(0, exact("/a")), &[Method::Get]),
                route(1, exact("/a")),
            ]),
            vec![(0, 1)]
        );
        // Every pair is reported, each once even when they tie on several hosts.
        let both = |id| on(on(route(id, exact("/a")), host("x.com")), host("y.com"));
        let errs = RouteTable::build(&[both(0), both(1), both(2)]).unwrap_err();
        let pairs: Vec<(u32, u32)> = errs.iter().map(|c| (c.first.0, c.second.0)).collect();
        assert_eq!(pairs, vec![(0, 1), (0, 2), (1, 2)]);
        assert!(
            errs[0].reason.contains("host `x.com`, host `y.com`"),
            "{}",
            errs[0].reason
        );
        assert!(
            errs[0].reason.contains("exact path `/a`"),
            "{}",
            errs[0].reason
        );
        // Same Equals value on both sides is still a tie.
        assert_eq!(
            conflicts(vec![
                header(route(0, exact("/a")), "x", eq("1")),
                header(route(1, exact("/a")), "x", eq("1")),
            ]),
            vec![(0, 1)]
        );
        // Present vs Equals are not provably disjoint.
        assert_eq!(
            conflicts(vec![
                query(route(0, exact("/a")), "x", Cond::Present),
                query(route(1, exact("/a")), "x", eq("1")),
            ]),
            vec![(0, 1)]
        );
    }

    #[test]
    fn no_conflict_when_precedence_or_conditions_decide() {
        let none: Vec<(u32, u32)> = Vec::new();
        // Disjoint Equals values on a header or a query parameter.
        assert_eq!(
            conflicts(vec![
                header(route(0, exact("/a")), "x-v", eq("1")),
                header(route(1, exact("/a")), "x-v", eq("2")),
            ]),
            none
        );
        assert_eq!(
            conflicts(vec![
                query(route(0, exact("/a")), "v", eq("1")),
                query(route(1, exact("/a")), "v", eq("2")),
            ]),
            none
        );
        // A header and a query parameter with the same name are different conditions.
        assert_eq!(
            conflicts(vec![
                header(route(0, exact("/a")), "v", eq("1")),
                query(route(1, exact("/a")), "v", eq("2")),
            ]),
            vec![(0, 1)]
        );
        // Different numbers of conditions, methods, hosts, shapes.
        assert_eq!(
            conflicts(vec![
                route(0, exact("/a")),
                header(route(1, exact("/a")), "x", Cond::Present),
                methods(route(2, prefix("/a")), &[Method::Get]),
                methods(route(3, prefix("/a")), &[Method::Post]),
                on(route(4, exact("/a")), host("a.com")),
                on(route(5, exact("/a")), wild(".a.com")),
                route(6, exact("/a/")),
                route(7, tmpl("/a/{*r}")),
                route(8, prefix("/a/")),
            ]),
            none
        );
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

    #[test]
    fn validate_template_accepts_and_names_params() {
        assert_eq!(validate_template("/"), Ok(vec![]));
        assert_eq!(
            validate_template("/u/{id}/files/{*path}"),
            Ok(vec!["id".to_string(), "path".to_string()])
        );
        assert_eq!(validate_template("/{*all}"), Ok(vec!["all".to_string()]));
    }

    #[test]
    fn validate_template_rejects_bad_templates() {
        let cases = [
            ("u/{id}", "start with '/'"),
            ("", "start with '/'"),
            ("/u/{}", "empty parameter name"),
            ("/u/{*}", "empty parameter name"),
            ("/u/{id}/{id}", "duplicate"),
            ("/u/{id}/{*id}", "duplicate"),
            ("/u/{*rest}/x", "must be the last"),
            ("/u/{*rest}/", "must be the last"),
            ("/v{n}", "mixes text"),
            ("/{a}{b}", "mixes text"),
            ("/{a}.json", "mixes text"),
            ("/}a{", "mixes text"),
            ("/u/{id", "unbalanced"),
            ("/u/id}", "unbalanced"),
            ("/u/{{id}", "unbalanced"),
            ("/u/{a*b}", "contains '*'"),
        ];
        for (t, want) in cases {
            match validate_template(t) {
                Ok(names) => panic!("{t:?} accepted: {names:?}"),
                Err(e) => assert!(e.contains(want), "{t:?}: {e}"),
            }
        }
    }
}

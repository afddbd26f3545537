//! Route table: host → path matcher → candidate routes, with deterministic precedence.
//!
//! (helper: replace this header with the real one describing the structures and precedence.)

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
    Found { route: RouteId, captures: Captures },
    /// Some route matched host/path/conditions but not the method. Bits for `Allow`.
    MethodNotAllowed { allow: u16 },
    NotFound,
}

/// The compiled, immutable matcher.
pub struct RouteTable {}

impl RouteTable {
    /// Builds the table; reports every conflict (ties) instead of picking one.
    pub fn build(specs: &[RouteSpec]) -> Result<RouteTable, Vec<RouteConflict>> {
        let _ = specs;
        todo!("route helper")
    }

    pub fn lookup<H: HeaderSource>(&self, req: &RouteRequest<'_>, headers: &H) -> Lookup {
        let _ = (req, headers);
        todo!("route helper")
    }

    /// Route ids in precedence order, for `check` output (per host tier then path precedence).
    pub fn match_order(&self) -> Vec<RouteId> {
        todo!("route helper")
    }
}

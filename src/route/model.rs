//! The route table's vocabulary, shared by the table and the config compiler: route ids,
//! host/path patterns and conditions, the compiled `RouteSpec`, conflicts, the request as the
//! router sees it, and the lookup result.

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
    /// Cookie name (case-sensitive) → condition, on the value `http1::cookie::find` reads.
    pub cookies: Vec<(String, Cond)>,
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

    /// The value of cookie `name` (the first `Cookie` header that has it).
    fn cookie(&self, name: &str) -> Option<&[u8]> {
        crate::http1::cookie::find(self.header("cookie")?, name.as_bytes())
    }

    /// How many copies of the header the request carries (a condition's header sent twice is
    /// ambiguous: see `RouteTable::repeated_condition`).
    fn header_copies(&self, lowercase_name: &str) -> usize {
        usize::from(self.header(lowercase_name).is_some())
    }

    /// How many copies of cookie `name` the request carries.
    fn cookie_copies(&self, name: &str) -> usize {
        usize::from(self.cookie(name).is_some())
    }
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

//! Route table: host → path matcher → candidate routes, with deterministic precedence.
//!
//! **Structures.** [`RouteTable::build`] compiles the route specs into one path trie per host
//! *tier*: an exact-host map (`"api.example.com"` → trie), a wildcard-suffix map
//! (`".example.com"` → trie) and one any-host trie. `table` builds the tiers and walks them;
//! `model` holds the shared types (specs, patterns, conditions, lookup results); `trie`
//! describes the node layout and the walk; `cond` holds the compiled per-route conditions;
//! `template` turns path patterns into shapes; `conflict` finds ties. Nothing scans all routes.
//! This file only declares the modules and re-exports.
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
//! first value, `Present` needs the header), every cookie condition holds (the same on the
//! value `http1::cookie::find` reads: first `Cookie` header with the name, first crumb), every query condition holds (query split on `&`,
//! the first `=` splits name from value, names and values percent-decoded, malformed `%` escapes
//! kept literally, `+` kept as `+`, `a` alone means present with an empty value, the first
//! occurrence of a name decides) and its method set contains the request method (0 = any).
//! Which copy decides never matters to a request that is served: the exchange refuses a request
//! repeating any field some condition reads (`RouteTable::repeated_condition`) before lookup,
//! and its `HeaderSource` reads the spellings backends take for a name (`X_Env`, `s%69d`).
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

mod cond;
mod conflict;
mod model;
mod table;
mod template;
#[cfg(test)]
mod tests;
mod trie;

pub use model::{
    Captures, Cond, HeaderSource, HostPattern, Lookup, PathPattern, RouteConflict, RouteId,
    RouteRequest, RouteSpec,
};
pub use table::RouteTable;
pub use template::{path_literal_problem, validate_template};

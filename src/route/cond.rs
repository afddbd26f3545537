//! Compiled per-route data (`RouteData`: methods, header, cookie and query conditions, capture
//! count).
//!
//! Query conditions read the query through `http1::query` (its header has the rule): names and
//! values percent-decoded, `+` literal, `a` alone present with an empty value, the first
//! occurrence of a name decides (a request repeating one is refused before lookup: see
//! `RouteTable::repeated_condition`).

use super::model::{Cond, RouteId, RouteSpec};
use super::template::{SegKey, Shape, ShapeKind};

#[derive(Debug)]
pub(super) enum CondValue {
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
pub(super) struct RouteData {
    pub(super) id: RouteId,
    pub(super) methods: u16,
    pub(super) headers: Box<[(Box<str>, CondValue)]>,
    pub(super) cookies: Box<[(Box<str>, CondValue)]>,
    pub(super) query: Box<[(Box<[u8]>, CondValue)]>,
    /// Header + query condition count: more conditions sort first.
    pub(super) conds: usize,
    /// Number of captures a match produces (params incl. catch-all).
    pub(super) params: u16,
    /// Prefix ending in '/': needs at least one more request segment after its own.
    pub(super) needs_more: bool,
}

impl RouteData {
    pub(super) fn new(spec: &RouteSpec, shape: &Shape) -> RouteData {
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
            cookies: spec
                .cookies
                .iter()
                .map(|(n, c)| (n.as_str().into(), CondValue::new(c)))
                .collect(),
            query: spec
                .query
                .iter()
                .map(|(n, c)| (n.as_bytes().into(), CondValue::new(c)))
                .collect(),
            conds: spec.headers.len() + spec.cookies.len() + spec.query.len(),
            params: u16::try_from(params).unwrap_or(u16::MAX),
            needs_more: shape.kind == ShapeKind::PrefixDir,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{
        cookie, eq, exact, full, header, hit, query, route, table, Headers, NO_HEADERS,
    };
    use super::super::{Cond, Lookup, RouteTable};
    use crate::http1::Method;

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
    fn cookie_conditions_pick_the_ab_route() {
        let t = table(vec![
            cookie(route(0, exact("/")), "beta", eq("1")),
            route(1, exact("/")),
            cookie(route(2, exact("/p")), "sid", Cond::Present),
        ]);
        let get = |path: &[u8], h: Headers| match full(&t, "h", Method::Get, path, None, &h) {
            Lookup::Found { route, .. } => Some(route.0),
            _ => None,
        };
        assert_eq!(
            get(b"/", Headers(vec![("cookie", b"a=2; beta=1")])),
            Some(0)
        );
        assert_eq!(get(b"/", Headers(vec![("cookie", b"beta=10")])), Some(1));
        assert_eq!(get(b"/", Headers(vec![("cookie", b"beta")])), Some(1));
        assert_eq!(get(b"/", Headers(vec![])), Some(1));
        assert_eq!(get(b"/p", Headers(vec![("cookie", b"sid=")])), Some(2));
        assert_eq!(get(b"/p", Headers(vec![("cookie", b"sidx=1")])), None);
    }
}

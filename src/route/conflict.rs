//! Conflict detection at build time. Ties are build errors, never resolved by declaration order:
//! two routes conflict when they share a host pattern, have the same path shape (same exact path,
//! same prefix, or templates equal after erasing parameter names), overlapping methods and the
//! same number of conditions, unless some header or query name is required by both with
//! different `Equals` values.
//!
//! Every conflicting pair is reported once, naming every host tier on which it ties.

use ahash::AHashMap;

use super::cond::{CondValue, RouteData};
use super::model::{PathPattern, RouteConflict, RouteId, RouteSpec};
use super::template::Shape;
use crate::http1::Method;

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

pub(super) fn find_ties(
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
                    && !disjoint::<str, _>(&ra.cookies, &rb.cookies)
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
pub(super) fn describe_conflicts(
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
             ({} vs {}) and {} header/cookie/query condition(s) each that are not mutually exclusive; \
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

#[cfg(test)]
mod tests {
    use super::super::tests::{
        eq, exact, header, host, methods, on, prefix, query, route, tmpl, wild,
    };
    use super::super::{Cond, RouteSpec, RouteTable};
    use crate::http1::Method;

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
}

//! The per-host-tier path trie and the lookup walk over it.
//!
//! A trie node is one path segment (the path split on `/` after its leading `/`; `/` is one
//! empty segment, so `/users` and `/users/` are different paths). A node has static children (a
//! small list or a hash map), folded children (segments of case-insensitive routes, lowercase,
//! compared ignoring ASCII case, tried right after the static child), at most one `{param}` child, and three route lists: *full* (exact
//! paths and templates ending here), *catch-all* (`…/{*rest}` templates whose fixed part ends
//! here) and *prefix*. Each node also carries bit masks of the depths at which its subtree
//! holds full / catch-all routes, so a lookup never enters a branch that cannot produce a
//! candidate. Nothing scans all routes.
//!
//! Invariants: each node's route lists are sorted at build time (prefixes ending in `/` first,
//! then more conditions, then `RouteId`), so the walk returns the first candidate that matches
//! and collects nothing in between. `Ctx` is the per-request state: captures along the current
//! branch and the method bits of candidates that failed only on the method.

use std::ops::Range;

use ahash::AHashMap;

use super::cond::{CondValue, RouteData};
use super::model::{Captures, HeaderSource, RouteId};
use super::template::{SegKey, Shape, ShapeKind};
use crate::http1::query;

/// Most path segments a lookup walks through the trie.
pub(super) const MAX_SEGMENTS: usize = 64;
/// "No node" marker for `Node::param`.
const NO_NODE: u32 = u32::MAX;
/// Static children kept in a plain list up to this count, in a hash map above it.
const FEW_CHILDREN: usize = 8;

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
    /// Static children of case-insensitive routes: lowercase keys, compared ignoring ASCII case.
    folded: Box<[(Box<[u8]>, u32)]>,
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

pub(super) struct Trie {
    /// Node 0 is the root (depth 0, before the first segment).
    nodes: Vec<Node>,
    /// Deepest prefix route (segments), if any: bounds the static walk of phase 2.
    prefix_depth: Option<usize>,
    /// Some node has folded children: phase 2 walks a tree of static paths, not one chain.
    has_folded: bool,
}

impl Node {
    /// The folded child whose key equals `seg` ignoring ASCII case.
    #[inline]
    fn folded_child(&self, seg: &[u8]) -> Option<u32> {
        self.folded
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(seg))
            .map(|&(_, n)| n)
    }
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

/// A trie node while the table is being built (hash maps, growable route lists).
struct BuildNode {
    children: AHashMap<Box<[u8]>, u32>,
    folded: AHashMap<Box<[u8]>, u32>,
    param: u32,
    parent: u32,
    full: Vec<u32>,
    catch_all: Vec<u32>,
    prefix: Vec<u32>,
    full_mask: u128,
    catch_mask: u128,
}

impl BuildNode {
    fn new(parent: u32) -> BuildNode {
        BuildNode {
            children: AHashMap::new(),
            folded: AHashMap::new(),
            param: NO_NODE,
            parent,
            full: Vec::new(),
            catch_all: Vec::new(),
            prefix: Vec::new(),
            full_mask: 0,
            catch_mask: 0,
        }
    }

    /// Files route `r` of `kind` ending here at `depth` segments.
    fn add_route(&mut self, r: u32, kind: ShapeKind, depth: usize) {
        match kind {
            ShapeKind::Full => {
                self.full.push(r);
                self.full_mask |= depth_bit(depth);
            }
            ShapeKind::CatchAll => {
                self.catch_all.push(r);
                self.catch_mask |= depth_bit(depth);
            }
            ShapeKind::Prefix | ShapeKind::PrefixDir => self.prefix.push(r),
        }
    }

    /// The lookup node: route lists sorted by `rank`, children in a list or a map by count.
    fn freeze<K: Ord>(mut self, rank: impl Fn(&u32) -> K) -> Node {
        self.full.sort_by_key(&rank);
        self.catch_all.sort_by_key(&rank);
        self.prefix.sort_by_key(&rank);
        let children = if self.children.len() <= FEW_CHILDREN {
            let mut v: Vec<(Box<[u8]>, u32)> = self.children.into_iter().collect();
            v.sort();
            Children::Few(v)
        } else {
            Children::Many(self.children)
        };
        let mut folded: Vec<(Box<[u8]>, u32)> = self.folded.into_iter().collect();
        folded.sort();
        Node {
            children,
            folded: folded.into_boxed_slice(),
            param: self.param,
            full: self.full.into_boxed_slice(),
            catch_all: self.catch_all.into_boxed_slice(),
            prefix: self.prefix.into_boxed_slice(),
            full_mask: self.full_mask,
            catch_mask: self.catch_mask,
        }
    }
}

/// The node reached from the root along `segs`, created as needed. Children are always pushed
/// after their parent.
fn insert_path(nodes: &mut Vec<BuildNode>, segs: &[SegKey]) -> usize {
    let mut at = 0usize;
    for seg in segs {
        let next = match seg {
            SegKey::Static(s) => nodes[at].children.get(&**s).copied(),
            SegKey::Folded(s) => nodes[at].folded.get(&**s).copied(),
            SegKey::Param => Some(nodes[at].param).filter(|&p| p != NO_NODE),
        };
        at = match next {
            Some(n) => n as usize,
            None => {
                let n = nodes.len() as u32;
                nodes.push(BuildNode::new(at as u32));
                match seg {
                    SegKey::Static(s) => {
                        nodes[at].children.insert(s.clone(), n);
                    }
                    SegKey::Folded(s) => {
                        nodes[at].folded.insert(s.clone(), n);
                    }
                    SegKey::Param => nodes[at].param = n,
                }
                n as usize
            }
        };
    }
    at
}

/// ORs every node's depth masks into its ancestors'.
fn propagate_masks(nodes: &mut [BuildNode]) {
    // Children always come after their parent, so a reverse sweep propagates masks up.
    for i in (1..nodes.len()).rev() {
        let (full, catch, parent) = (nodes[i].full_mask, nodes[i].catch_mask, nodes[i].parent);
        nodes[parent as usize].full_mask |= full;
        nodes[parent as usize].catch_mask |= catch;
    }
}

impl Trie {
    pub(super) fn build(list: &[u32], shapes: &[Shape], routes: &[RouteData]) -> Trie {
        let mut nodes = vec![BuildNode::new(NO_NODE)];
        let mut prefix_depth: Option<usize> = None;
        for &r in list {
            let shape = &shapes[r as usize];
            let at = insert_path(&mut nodes, &shape.segs);
            let depth = shape.segs.len();
            nodes[at].add_route(r, shape.kind, depth);
            if matches!(shape.kind, ShapeKind::Prefix | ShapeKind::PrefixDir) {
                prefix_depth = prefix_depth.max(Some(depth));
            }
        }
        propagate_masks(&mut nodes);
        let rank = |&r: &u32| {
            let d = &routes[r as usize];
            (!d.needs_more, usize::MAX - d.conds, d.id)
        };
        let has_folded = nodes.iter().any(|n| !n.folded.is_empty());
        Trie {
            nodes: nodes.into_iter().map(|b| b.freeze(rank)).collect(),
            prefix_depth,
            has_folded,
        }
    }

    pub(super) fn lookup<H: HeaderSource>(
        &self,
        ctx: &mut Ctx<'_, H>,
    ) -> Option<(RouteId, Captures)> {
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
        if self.has_folded {
            return self.phase2_folded(max_depth, walk_to, ctx);
        }
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

    /// Phase 2 when case-insensitive routes exist: the static paths form a tree (exact children
    /// and folded children), walked per depth. Same order as the chain walk: deepest first,
    /// catch-alls before prefixes; at one depth the exact-case branch before the folded one.
    fn phase2_folded<H: HeaderSource>(
        &self,
        max_depth: usize,
        walk_to: usize,
        ctx: &mut Ctx<'_, H>,
    ) -> Option<(RouteId, Captures)> {
        let root = &self.nodes[0];
        for d in (0..=max_depth).rev() {
            if has_depth(root.catch_mask, d) {
                if let Some(found) = self.catch_walk(0, 1, 0, d, 0, ctx) {
                    return Some(found);
                }
            }
            if d <= walk_to && self.prefix_depth.is_some() {
                if let Some(found) = self.prefix_walk(0, 1, 0, d, ctx) {
                    return Some(found);
                }
            }
        }
        None
    }

    /// Prefix routes exactly `target` static segments deep, through exact then folded children.
    fn prefix_walk<H: HeaderSource>(
        &self,
        node: u32,
        pos: usize,
        depth: usize,
        target: usize,
        ctx: &mut Ctx<'_, H>,
    ) -> Option<(RouteId, Captures)> {
        let n = &self.nodes[node as usize];
        if depth == target {
            for &r in n.prefix.iter() {
                if ctx.routes[r as usize].needs_more && depth >= ctx.nsegs {
                    continue;
                }
                if ctx.candidate(r) {
                    return Some((ctx.routes[r as usize].id, Vec::new()));
                }
            }
            return None;
        }
        let end = ctx.seg_end(pos);
        let seg = ctx.path.get(pos..end).unwrap_or_default();
        for child in [n.children.get(seg), n.folded_child(seg)]
            .into_iter()
            .flatten()
        {
            if let Some(found) = self.prefix_walk(child, end + 1, depth + 1, target, ctx) {
                return Some(found);
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
        for child in [n.children.get(seg), n.folded_child(seg)]
            .into_iter()
            .flatten()
        {
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
        for child in [n.children.get(seg), n.folded_child(seg)]
            .into_iter()
            .flatten()
        {
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

pub(super) struct Ctx<'a, H> {
    pub(super) routes: &'a [RouteData],
    /// Request path, starting with '/'.
    pub(super) path: &'a [u8],
    /// Number of segments: one per '/'.
    pub(super) nsegs: usize,
    pub(super) method_bit: u16,
    pub(super) query: Option<&'a [u8]>,
    pub(super) headers: &'a H,
    /// Param captures along the current DFS path (start, end).
    pub(super) caps: [(usize, usize); MAX_SEGMENTS],
    /// Methods of candidates that matched everything but the method.
    pub(super) allow: u16,
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
        for (name, cond) in route.cookies.iter() {
            match (self.headers.cookie(name), cond) {
                (None, _) => return false,
                (Some(v), CondValue::Equals(want)) if v != &**want => return false,
                _ => {}
            }
        }
        for (name, cond) in route.query.iter() {
            match (query::get(self.query, name), cond) {
                (None, _) => return false,
                (Some(raw), CondValue::Equals(want)) if !query::decoded_is(raw, want) => {
                    return false
                }
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

#[cfg(test)]
mod tests {
    use super::super::tests::{
        eq, exact, full, header, hit, prefix, query, route, table, tmpl, Headers, NO_HEADERS,
    };
    use super::super::{Cond, Lookup, RouteTable};
    use super::*;
    use crate::http1::Method;

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
}

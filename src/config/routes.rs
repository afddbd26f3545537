//! Compiles `[[routes]]`: each route's match spec (hosts, path, methods, header and query
//! conditions), its one action (proxy with its rewrite, static, echo, redirect) and body limit;
//! then its effective policy list (`defaults`) and, once every route compiled, the lookup
//! table (conflicts are errors naming both routes).
//!
//! A route with any error is left out (its errors are reported), so one bad route never yields
//! a half-built `Route`.

use std::collections::{BTreeMap, HashMap};

use toml::Spanned;

use super::defaults::route_policies;
use super::errors::{int_in, Diag};
use super::model::{
    Action, PathPiece, ProxyAction, Redirect, Rewrite, Route, StaticResponse, UpstreamId,
};
use super::raw::{RawCond, RawConfig, RawProxy, RawRedirect, RawRoute, RawStatic};
use crate::http1::{self, Method};
use crate::policy::pipeline::{Policies, PolicyId};
use crate::route::{self, Cond, HostPattern, PathPattern, RouteId, RouteSpec, RouteTable};

/// Builds a route's dotted field name (`routes[3].proxy.upstream`).
type Field<'a> = &'a dyn Fn(&str) -> String;

/// What the routes need from the rest of the config.
pub(super) struct RouteContext<'a> {
    pub upstream_ids: &'a HashMap<String, UpstreamId>,
    /// The compiled upstreams (a mirror's protocol is checked).
    pub upstreams: &'a [super::model::Upstream],
    pub default_max_body: u64,
    pub policies: &'a Policies,
    pub policy_ids: &'a HashMap<String, PolicyId>,
}

/// Compiles every route (names must be unique and non-empty) with its policy lists. Returns
/// the routes that compiled and their specs, in file order; marks which `[[defaults]]` apply
/// to some route in `defaults_used`.
pub(super) fn compile_routes(
    raw: &RawConfig,
    cx: &RouteContext<'_>,
    defaults_used: &mut [bool],
    errs: &mut Diag,
) -> (Vec<Route>, Vec<RouteSpec>) {
    let mut routes = Vec::with_capacity(raw.routes.len());
    let mut specs = Vec::with_capacity(raw.routes.len());
    let mut seen_names: HashMap<String, usize> = HashMap::new();
    for (i, r) in raw.routes.iter().enumerate() {
        let id = RouteId(i as u32);
        let field = |f: &str| format!("routes[{i}].{f}");
        let name = r.name.get_ref().clone();
        if name.is_empty() {
            errs.at(r.name.span(), field("name"), "route name must not be empty");
        } else if !super::errors::printable_name(&name) {
            errs.at(
                r.name.span(),
                field("name"),
                format!(
                    "{name:?} holds a control, tab or bidi character (a route name is printed \
                     in logs and `ringway check`, where one could forge or hide a line)"
                ),
            );
        }
        if let Some(prev) = seen_names.insert(name.clone(), i) {
            errs.at(
                r.name.span(),
                field("name"),
                format!("duplicate route name {name:?} (also routes[{prev}])"),
            );
        }
        if let Some((spec, mut route)) = compile_route(id, r, cx, &field, errs) {
            let (ids, cors, gated) = route_policies(
                raw,
                cx.policies,
                cx.policy_ids,
                r.policies.as_ref(),
                (&spec, &r.name),
                &format!("routes[{i}]"),
                defaults_used,
                errs,
            );
            route.policies = ids;
            route.cors = cors;
            route.gated = gated;
            specs.push(spec);
            routes.push(route);
        }
    }
    (routes, specs)
}

/// The lookup table over `specs`; every conflict is an error at the later route's name.
pub(super) fn route_table(
    raw: &RawConfig,
    specs: &[RouteSpec],
    origins: &[super::openapi::RouteOrigin],
    errs: &mut Diag,
) -> Option<RouteTable> {
    use super::openapi::{describe, span_of};
    match RouteTable::build(specs) {
        Ok(t) => Some(t),
        Err(conflicts) => {
            for c in conflicts {
                let (span, field) = span_of(raw, origins, c.second);
                errs.at(
                    span,
                    field,
                    format!(
                        "{} conflicts with {}: {}",
                        describe(raw, origins, c.second),
                        describe(raw, origins, c.first),
                        c.reason
                    ),
                );
            }
            None
        }
    }
}

/// The gateway's own pages (a portal's pages, assets and sign-in forms; an MCP endpoint) must
/// reach the route that serves them: an exact or template route under a portal's path, or a
/// deeper prefix, would otherwise win the lookup and receive the sign-in credential and the
/// session cookie (a hostile or careless OpenAPI document could do that with one operation).
/// Every served path is looked up with GET and POST from every host tier the table knows;
/// a lookup that lands on another route is an error at that route. Routes with header, cookie
/// or query conditions only win when the request carries them, so the probe (which carries
/// none) does not see them.
/// Lookups `local_pages_reachable` makes per local route before it narrows the named hosts'
/// probes (about a tenth of a second).
const MAX_PROBES: usize = 500_000;

pub(super) fn local_pages_reachable(
    raw: &RawConfig,
    routes: &[Route],
    specs: &[RouteSpec],
    table: &RouteTable,
    paths_opts: &http1::PathOptions,
    origins: &[super::openapi::RouteOrigin],
    errs: &mut Diag,
) {
    use super::openapi::{describe, span_of};
    struct NoHeaders;
    impl route::HeaderSource for NoHeaders {
        fn header(&self, _: &str) -> Option<&[u8]> {
            None
        }
    }
    let mut hosts: Vec<String> = vec!["ringway-probe.invalid".into()];
    for spec in specs {
        for h in &spec.hosts {
            let probe = match h {
                HostPattern::Exact(h) => h.clone(),
                HostPattern::Wildcard(suffix) => format!("ringway-probe{suffix}"),
                HostPattern::Any => continue,
            };
            if !hosts.contains(&probe) {
                hosts.push(probe);
            }
        }
    }
    for r in routes {
        let (paths, fixed) = match &r.action {
            Action::Portal(p) => {
                if p.keys.is_some() {
                    session_subtree_is_the_portals(raw, r, specs, &p.base, origins, errs);
                }
                p.served_paths()
            }
            Action::Mcp(m) => (vec![m.path.clone()], 1),
            _ => continue,
        };
        let mut reported = Vec::new();
        // Compile time stays bounded however many hosts and operations a config has: past
        // `MAX_PROBES` lookups, named hosts are probed with the structural pages only (the
        // index, one operation page, the assets, the self-service pages); the any-host tier
        // always gets every page.
        let full = hosts.len().saturating_mul(paths.len()) <= MAX_PROBES;
        for (i, path) in paths.iter().enumerate() {
            let structural = i <= fixed;
            for (h, host) in hosts.iter().enumerate() {
                if h > 0 && !full && !structural {
                    continue;
                }
                // The page as a request for it is routed: normalized with the config's
                // path options (a link to `/docs/op/.` arrives as `/docs/op/`).
                let Ok(normalized) = http1::normalize_path_with(path.as_bytes(), paths_opts) else {
                    continue;
                };
                for method in [Method::Get, Method::Post] {
                    let req = route::RouteRequest {
                        host,
                        method,
                        path: &normalized,
                        query: None,
                    };
                    let route::Lookup::Found { route: other, .. } = table.lookup(&req, &NoHeaders)
                    else {
                        continue;
                    };
                    if other == r.id || reported.contains(&other) {
                        continue;
                    }
                    reported.push(other);
                    let (span, field) = span_of(raw, origins, other);
                    let on = if host.as_str() == "ringway-probe.invalid" {
                        String::new()
                    } else {
                        format!(" on host {host:?}")
                    };
                    errs.at(
                        span,
                        field,
                        format!(
                            "{} takes {} {path}{on} away from {}: a route may not match \
                             the gateway's own pages (their forms and session cookie would reach \
                             it); move one of them",
                            describe(raw, origins, other),
                            method.as_str(),
                            describe(raw, origins, r.id),
                        ),
                    );
                }
            }
        }
    }
}

/// With self-service keys on, the browser sends the portal's session cookie to every path
/// under `{base}/keys`: no route but the portal may be able to take any request there,
/// whatever its host, methods or conditions (the probe above only sees the pages served).
fn session_subtree_is_the_portals(
    raw: &RawConfig,
    portal: &Route,
    specs: &[RouteSpec],
    base: &str,
    origins: &[super::openapi::RouteOrigin],
    errs: &mut Diag,
) {
    use super::openapi::{describe, span_of};
    let sub = format!("{base}/keys");
    let depth = segments(base).len();
    for spec in specs {
        // A route on a named host is looked up before any-host routes, so for it the portal's
        // depth is no defence: any route that can match there takes the request.
        let named = spec
            .hosts
            .iter()
            .any(|h| !matches!(h, route::HostPattern::Any));
        let beat = if named { 0 } else { depth };
        if spec.id == portal.id || !takes_subtree(&spec.path, spec.case_insensitive, &sub, beat) {
            continue;
        }
        let (span, field) = span_of(raw, origins, spec.id);
        errs.at(
            span,
            field,
            format!(
                "{} could take requests under {sub}, where browsers send {}'s session cookie; \
                 move one of them",
                describe(raw, origins, spec.id),
                describe(raw, origins, portal.id),
            ),
        );
    }
}

/// The segments of a path or pattern (`/a/b` → `["a", "b"]`; `/` → none).
fn segments(path: &str) -> Vec<&str> {
    let p = path.strip_prefix('/').unwrap_or(path);
    if p.is_empty() {
        Vec::new()
    } else {
        p.split('/').collect()
    }
}

/// Whether a route with `pattern` can match `sub` or a path below it and win the lookup over
/// the portal's prefix route, which is `depth` segments deep (full matches always win;
/// catch-alls and prefixes win when at least as deep).
fn takes_subtree(pattern: &PathPattern, case_insensitive: bool, sub: &str, depth: usize) -> bool {
    let same = |a: &str, b: &str| {
        if case_insensitive {
            a.eq_ignore_ascii_case(b)
        } else {
            a == b
        }
    };
    let want = segments(sub);
    let under = |p: &str| {
        let got = segments(p);
        got.len() >= want.len() && want.iter().zip(&got).all(|(w, g)| same(w, g))
    };
    match pattern {
        PathPattern::Exact(p) => under(p),
        PathPattern::Prefix(p) => {
            let got = segments(p.trim_end_matches('/'));
            // Below `sub`, or an ancestor of it deep enough to beat the portal's prefix.
            under(p) || (got.len() >= depth && got.iter().zip(&want).all(|(g, w)| same(g, w)))
        }
        PathPattern::Template(t) => {
            let got = segments(t);
            for (i, seg) in got.iter().enumerate() {
                if seg.starts_with("{*") {
                    // The catch-all takes whatever follows; it wins from `depth` on.
                    return i >= depth;
                }
                match want.get(i) {
                    Some(w) if !(seg.starts_with('{') || same(seg, w)) => return false,
                    _ => {}
                }
            }
            got.len() >= want.len()
        }
    }
}

/// One route without its policies: its match spec and the `Route` (policy lists empty).
fn compile_route(
    id: RouteId,
    r: &RawRoute,
    cx: &RouteContext<'_>,
    field: Field<'_>,
    errs: &mut Diag,
) -> Option<(RouteSpec, Route)> {
    let before = errs.list.len();
    let hosts = hosts(r, field, errs);
    let path = path_pattern(r, field, errs);
    let methods = methods(r, field, errs);
    let headers = conds(&r.headers, "headers", field, errs);
    let cookies = conds(&r.cookies, "cookies", field, errs);
    let query = conds(&r.query, "query", field, errs);
    let max_body = r
        .max_body_bytes
        .as_ref()
        .map(|s| s.get_ref().0)
        .unwrap_or(cx.default_max_body);
    one_action(r, field, errs);
    let action = if let Some(p) = &r.proxy {
        Action::Proxy(proxy_action(r, p, cx, field, errs))
    } else if let Some(s) = &r.static_ {
        Action::Static(static_action(s.get_ref(), field, errs))
    } else if r.echo.is_some() {
        Action::Echo
    } else if let Some(rd) = &r.redirect {
        Action::Redirect(redirect_action(rd.get_ref(), field, errs))
    } else {
        Action::Echo
    };

    if errs.list.len() != before {
        return None;
    }
    let spec = RouteSpec {
        id,
        hosts,
        path: path?,
        methods,
        headers,
        cookies,
        query,
        case_insensitive: r.case_insensitive.unwrap_or(false),
    };
    Some((
        spec.clone(),
        Route {
            id,
            name: r.name.get_ref().clone(),
            spec,
            action,
            max_body,
            access_log: r.access_log.unwrap_or(true),
            policies: Vec::new(),
            cors: None,
            gated: None,
        },
    ))
}

fn hosts(r: &RawRoute, field: Field<'_>, errs: &mut Diag) -> Vec<HostPattern> {
    let mut hosts = Vec::new();
    for (hi, h) in r.hosts.iter().flatten().enumerate() {
        match host_pattern(h.get_ref()) {
            Ok(p) => hosts.push(p),
            Err(m) => errs.at(h.span(), field(&format!("hosts[{hi}]")), m),
        }
    }
    hosts
}

/// `path` (exact or template) or `prefix`: exactly one.
fn path_pattern(r: &RawRoute, field: Field<'_>, errs: &mut Diag) -> Option<PathPattern> {
    for (p, name) in [(&r.path, "path"), (&r.prefix, "prefix")] {
        if let Some(problem) = p
            .as_ref()
            .and_then(|p| route::path_literal_problem(p.get_ref()))
        {
            let p = p.as_ref().expect("checked");
            errs.at(
                p.span(),
                field(name),
                format!("{:?} {problem}", p.get_ref()),
            );
            return None;
        }
    }
    match (&r.path, &r.prefix) {
        (Some(p), None) => {
            let s = p.get_ref();
            if !s.starts_with('/') {
                errs.at(p.span(), field("path"), "path must start with '/'");
                None
            } else if s.contains('{') || s.contains('}') {
                match route::validate_template(s) {
                    Ok(_) => Some(PathPattern::Template(s.clone())),
                    Err(m) => {
                        errs.at(p.span(), field("path"), format!("bad path template: {m}"));
                        None
                    }
                }
            } else {
                Some(PathPattern::Exact(s.clone()))
            }
        }
        (None, Some(p)) => {
            let s = p.get_ref();
            if !s.starts_with('/') || s.contains('{') {
                errs.at(
                    p.span(),
                    field("prefix"),
                    "prefix must start with '/' and cannot contain template braces",
                );
                None
            } else {
                Some(PathPattern::Prefix(s.clone()))
            }
        }
        (Some(p), Some(_)) => {
            errs.at(
                p.span(),
                field("path"),
                "set either `path` (exact or template) or `prefix`, not both",
            );
            None
        }
        (None, None) => {
            errs.at(
                r.name.span(),
                field("path"),
                "route needs `path` (exact or template) or `prefix`",
            );
            None
        }
    }
}

/// `methods`: a bit set of `Method::bit()`; CONNECT and unknown names are errors.
fn methods(r: &RawRoute, field: Field<'_>, errs: &mut Diag) -> u16 {
    let mut methods = 0u16;
    for (mi, m) in r.methods.iter().flatten().enumerate() {
        match Method::from_name(m.get_ref()) {
            Some(Method::Connect) | None => errs.at(
                m.span(),
                field(&format!("methods[{mi}]")),
                format!(
                    "unknown method {:?} (use GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS, TRACE)",
                    m.get_ref()
                ),
            ),
            Some(meth) => methods |= meth.bit(),
        }
    }
    methods
}

/// Header or query conditions (`kind`): header names are lowercased and must be visible ASCII
/// without ':'; no name may be empty.
fn conds(
    map: &Option<BTreeMap<Spanned<String>, Spanned<RawCond>>>,
    kind: &str,
    field: Field<'_>,
    errs: &mut Diag,
) -> Vec<(String, Cond)> {
    let mut out = Vec::new();
    for (k, v) in map.iter().flatten() {
        let name = if kind == "headers" {
            k.get_ref().to_ascii_lowercase()
        } else {
            k.get_ref().clone()
        };
        if name.is_empty()
            || (kind == "headers" && !name.bytes().all(|b| b.is_ascii_graphic() && b != b':'))
            || (kind == "cookies" && !name.bytes().all(http1::is_tchar))
        {
            errs.at(
                k.span(),
                field(&format!("{kind}.{}", k.get_ref())),
                "invalid name",
            );
            continue;
        }
        let c = match v.get_ref() {
            RawCond::Equals(s) => Cond::Equals(s.clone()),
            RawCond::Present => Cond::Present,
        };
        out.push((name, c));
    }
    out
}

/// Exactly one of proxy, static, echo, redirect (reported at the second one, or the name).
fn one_action(r: &RawRoute, field: Field<'_>, errs: &mut Diag) {
    let actions = [
        r.proxy.as_ref().map(|a| a.span()),
        r.static_.as_ref().map(|a| a.span()),
        r.echo.as_ref().map(|a| a.span()),
        r.redirect.as_ref().map(|a| a.span()),
    ];
    let count = actions.iter().flatten().count();
    if count != 1 {
        let span = actions
            .iter()
            .flatten()
            .nth(1)
            .cloned()
            .unwrap_or(r.name.span());
        errs.at(
            span,
            field("action"),
            if count == 0 {
                "route needs exactly one action: proxy, static, echo or redirect"
            } else {
                "route has more than one action: choose one of proxy, static, echo, redirect"
            },
        );
    }
}

/// `proxy`: a known upstream (or a weighted `split`), an optional `mirror`, the path rewrite.
fn proxy_action(
    r: &RawRoute,
    sp: &Spanned<RawProxy>,
    cx: &RouteContext<'_>,
    field: Field<'_>,
    errs: &mut Diag,
) -> ProxyAction {
    let p = sp.get_ref();
    let ids = cx.upstream_ids;
    let split = super::traffic::split(&p.split, &p.sticky, ids, field, errs);
    let upstream = match (&p.upstream, &split) {
        (Some(u), None) => super::traffic::upstream_id(u, ids, &field("proxy.upstream"), errs),
        (None, Some(s)) => s.arms.first().map(|a| a.0),
        (Some(u), Some(_)) => {
            errs.at(
                u.span(),
                field("proxy.upstream"),
                "set either `upstream` or `split`, not both",
            );
            None
        }
        (None, None) => {
            if p.split.is_none() {
                errs.at(
                    sp.span(),
                    field("proxy.upstream"),
                    "proxy needs `upstream` (or a weighted `split`)",
                );
            }
            None
        }
    };
    ProxyAction {
        upstream: upstream.unwrap_or(UpstreamId(0)),
        split,
        mirror: super::traffic::mirror(&p.mirror, ids, cx.upstreams, field, errs),
        rewrite: rewrite(r, p, field, errs),
        preserve_host: p.preserve_host.unwrap_or(true),
        retry: p
            .retry
            .as_ref()
            .map(|r| super::retries::retry_policy(r.get_ref(), field, errs)),
    }
}

/// The upstream path: a `path` template, or `strip_prefix` / `replace_prefix` on a `prefix`
/// route (not both kinds).
fn rewrite(r: &RawRoute, p: &RawProxy, field: Field<'_>, errs: &mut Diag) -> Rewrite {
    let strip = p
        .strip_prefix
        .as_ref()
        .map(|s| *s.get_ref())
        .unwrap_or(false);
    let prefix = || {
        r.prefix
            .as_ref()
            .map(|s| s.get_ref().clone())
            .unwrap_or_default()
    };
    match (&p.replace_prefix, strip, &p.path) {
        (_, _, Some(t)) => {
            if p.replace_prefix.is_some() || strip {
                errs.at(
                    t.span(),
                    field("proxy.path"),
                    "set either `path` or strip_prefix / replace_prefix, not both",
                );
            }
            if let Some(problem) = rewrite_problem(t.get_ref()) {
                errs.at(t.span(), field("proxy.path"), problem);
                return Rewrite::None;
            }
            match path_rewrite(r, t.get_ref()) {
                Ok(pieces) => Rewrite::Template(pieces),
                Err(m) => {
                    errs.at(t.span(), field("proxy.path"), m);
                    Rewrite::None
                }
            }
        }
        (None, false, None) => Rewrite::None,
        (with, _, None) if r.prefix.is_none() => {
            let span = with
                .as_ref()
                .map(|w| w.span())
                .or(p.strip_prefix.as_ref().map(|s| s.span()))
                .unwrap_or(r.name.span());
            errs.at(
                span,
                field("proxy"),
                "strip_prefix / replace_prefix need a `prefix` route",
            );
            Rewrite::None
        }
        (Some(with), _, None) => {
            if !with.get_ref().starts_with('/') {
                errs.at(
                    with.span(),
                    field("proxy.replace_prefix"),
                    "replacement must start with '/'",
                );
            } else if let Some(problem) = rewrite_problem(with.get_ref()) {
                errs.at(with.span(), field("proxy.replace_prefix"), problem);
            }
            Rewrite::ReplacePrefix {
                prefix: prefix(),
                with: with.get_ref().clone(),
            }
        }
        (None, true, None) => Rewrite::ReplacePrefix {
            prefix: prefix(),
            with: String::new(),
        },
    }
}

/// Why a rewrite (`proxy.path`, `proxy.replace_prefix`) cannot be written into the upstream
/// request line, or `None`: what a route path cannot hold, and a leading `//`, which servers
/// and redirect builders read as a host (`//evil.example/x`).
fn rewrite_problem(s: &str) -> Option<String> {
    if let Some(problem) = route::path_literal_problem(s) {
        return Some(format!("{s:?} {problem}"));
    }
    s.starts_with("//")
        .then(|| format!("{s:?} starts with \"//\", which the upstream may read as a host"))
}

/// `static`: status (no body on 204/304) and headers the gateway does not manage.
fn static_action(s: &RawStatic, field: Field<'_>, errs: &mut Diag) -> StaticResponse {
    let status = status_in(errs, &s.status, &field("static.status"), 200, 200..=599);
    if matches!(status, 204 | 304) && s.body.as_ref().is_some_and(|b| !b.is_empty()) {
        if let Some(st) = &s.status {
            errs.at(
                st.span(),
                field("static.body"),
                format!("a {status} response cannot have a body"),
            );
        }
    }
    let mut headers = Vec::new();
    for (k, v) in s.headers.iter().flatten() {
        let name = k.get_ref();
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic() && b != b':') {
            errs.at(
                k.span(),
                field(&format!("static.headers.{name}")),
                "invalid header name",
            );
        } else if v
            .get_ref()
            .bytes()
            .any(|b| b < 0x20 && b != b'\t' || b == 0x7f)
        {
            errs.at(
                v.span(),
                field(&format!("static.headers.{name}")),
                "header value contains control characters",
            );
        } else if http1::is_hop_by_hop(name.as_bytes())
            || name.eq_ignore_ascii_case("content-length")
        {
            errs.at(
                k.span(),
                field(&format!("static.headers.{name}")),
                "this header is managed by the gateway and cannot be set",
            );
        } else {
            headers.push((name.clone(), v.get_ref().clone()));
        }
    }
    StaticResponse {
        status,
        headers,
        body: s.body.clone().unwrap_or_default().into_bytes(),
    }
}

/// `redirect`: a clean location and a redirect status.
fn redirect_action(rd: &RawRedirect, field: Field<'_>, errs: &mut Diag) -> Redirect {
    let loc = rd.location.get_ref();
    if loc.is_empty() || loc.bytes().any(|b| b <= 0x20 || b == 0x7f) {
        errs.at(
            rd.location.span(),
            field("redirect.location"),
            "location must be a non-empty URL without spaces or control characters",
        );
    }
    let status = status_in(errs, &rd.status, &field("redirect.status"), 302, 301..=308);
    if !matches!(status, 301 | 302 | 303 | 307 | 308) {
        if let Some(s) = &rd.status {
            errs.at(
                s.span(),
                field("redirect.status"),
                "redirect status must be 301, 302, 303, 307 or 308",
            );
        }
    }
    Redirect {
        status,
        location: loc.clone(),
        append_path: rd.append_path.unwrap_or(false),
    }
}

fn status_in(
    errs: &mut Diag,
    v: &Option<Spanned<i64>>,
    field: &str,
    default: u16,
    range: std::ops::RangeInclusive<u16>,
) -> u16 {
    int_in(errs, v, field, default, range, "status ")
}

fn host_pattern(h: &str) -> Result<HostPattern, String> {
    let lower = h.trim_end_matches('.').to_ascii_lowercase();
    let valid = |s: &str| {
        !s.is_empty()
            && s.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            })
    };
    if lower == "*" {
        return Ok(HostPattern::Any);
    }
    if let Some(rest) = lower.strip_prefix("*.") {
        if valid(rest) {
            return Ok(HostPattern::Wildcard(format!(".{rest}")));
        }
    } else if valid(&lower) || lower.parse::<std::net::IpAddr>().is_ok() {
        return Ok(HostPattern::Exact(lower));
    }
    Err(format!(
        "bad host {h:?}: expected a name like \"api.example.com\", a wildcard like \"*.example.com\", or \"*\" (no port)"
    ))
}

/// Compiles `proxy.path` (e.g. `/users/{id}`) against the route's own template: every
/// `{name}` must be a parameter the route's `path` captures.
fn path_rewrite(r: &RawRoute, target: &str) -> Result<Vec<PathPiece>, String> {
    let names = match &r.path {
        Some(p) if p.get_ref().contains('{') => route::validate_template(p.get_ref())?,
        _ => Vec::new(),
    };
    route::validate_template(target).map_err(|m| format!("bad rewrite template: {m}"))?;
    let mut pieces = Vec::new();
    let mut lit = String::new();
    for seg in target.split('/').skip(1) {
        lit.push('/');
        if let Some(inner) = seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            let name = inner.trim_start_matches('*');
            let Some(idx) = names.iter().position(|n| n == name) else {
                return Err(format!(
                    "{{{name}}} is not captured by the route's path (captures: {})",
                    if names.is_empty() {
                        "none".to_string()
                    } else {
                        names.join(", ")
                    }
                ));
            };
            pieces.push(PathPiece::Literal(std::mem::take(&mut lit)));
            pieces.push(PathPiece::Param(idx as u16));
        } else {
            lit.push_str(seg);
        }
    }
    if !lit.is_empty() {
        pieces.push(PathPiece::Literal(lit));
    }
    pieces.retain(|p| !matches!(p, PathPiece::Literal(l) if l.is_empty()));
    Ok(pieces)
}

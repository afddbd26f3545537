//! `compile()`: the one place that validates a `RawConfig` and derives the immutable `Compiled`
//! table the workers read. Names become dense ids, addresses are resolved (this runs on the
//! control thread, never on a worker), matchers are built, and every problem becomes a
//! `ConfigError` naming file, line, column and field. Nothing downstream re-validates.

use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use toml::Spanned;

use super::raw::*;
use super::{
    Action, Admin, Compiled, ConfigError, Listener, ProxyAction, Redirect, Rewrite, Route,
    StaticResponse, Target, Timeouts, Upstream, UpstreamId,
};
use crate::http1::{self, Method};
use crate::route::{self, Cond, HostPattern, PathPattern, RouteId, RouteSpec, RouteTable};

/// Collects errors with positions resolved against the source text.
pub(super) struct Errors<'a> {
    file: &'a Path,
    src: &'a str,
    pub(super) list: Vec<ConfigError>,
}

impl Errors<'_> {
    pub(super) fn at(
        &mut self,
        span: Range<usize>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) {
        let (line, col) = line_col(self.src, span.start);
        self.list.push(ConfigError {
            file: self.file.to_path_buf(),
            line,
            col,
            field: field.into(),
            message: message.into(),
        });
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_col(src: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(src.len());
    let before = &src[..src.floor_char_boundary(offset)];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    let col = before[line_start..].chars().count() + 1;
    (line, col)
}

/// Parses TOML text into a `RawConfig`, turning serde/TOML errors into positioned errors.
pub fn parse(src: &str, file: &Path) -> Result<RawConfig, Vec<ConfigError>> {
    toml::from_str::<RawConfig>(src).map_err(|e| {
        let start = e.span().map(|s| s.start).unwrap_or(0);
        let (line, col) = line_col(src, start);
        vec![ConfigError {
            file: file.to_path_buf(),
            line,
            col,
            field: field_at(src, start),
            message: e.message().trim().to_string(),
        }]
    })
}

/// Best-effort dotted field path (`routes.proxy.upstream`) for a byte offset, from the nearest
/// table header above it and the key on its line. Used for errors serde reports by position.
fn field_at(src: &str, offset: usize) -> String {
    let offset = src.floor_char_boundary(offset.min(src.len()));
    let line_start = src[..offset].rfind('\n').map(|i| i + 1).unwrap_or(0);
    let line_end = src[offset..]
        .find('\n')
        .map(|i| offset + i)
        .unwrap_or(src.len());
    let line = &src[line_start..line_end];
    let mut section = String::new();
    for l in src[..line_start].lines().rev() {
        let t = l.trim();
        if t.starts_with('[') {
            section = t.trim_matches(|c| c == '[' || c == ']').trim().to_string();
            break;
        }
    }
    let t = line.trim();
    if t.starts_with('[') {
        return t.trim_matches(|c| c == '[' || c == ']').trim().to_string();
    }
    let key = match t.split_once('=') {
        Some((k, _)) => k.trim().trim_matches('"').to_string(),
        None => t.to_string(),
    };
    match (section.is_empty(), key.is_empty()) {
        (true, _) => key,
        (false, true) => section,
        (false, false) => format!("{section}.{key}"),
    }
}

const DEFAULT_MAX_BODY: u64 = 10 << 20;

/// Validates and derives with a fresh `Runtime` (for `check` and tests: no state carried over).
pub fn compile(
    raw: RawConfig,
    src: &str,
    file: &Path,
    generation: u64,
) -> Result<Compiled, Vec<ConfigError>> {
    compile_with(
        raw,
        src,
        file,
        generation,
        &super::policies::Runtime::default(),
    )
}

/// Validates and derives. Either a complete `Compiled` or every error found. Rate limiters and
/// JWKS fetchers come from `rt`, so unchanged ones keep their state across reloads.
pub fn compile_with(
    raw: RawConfig,
    src: &str,
    file: &Path,
    generation: u64,
    rt: &super::policies::Runtime,
) -> Result<Compiled, Vec<ConfigError>> {
    let mut errs = Errors {
        file,
        src,
        list: Vec::new(),
    };

    if let Some(v) = &raw.version {
        if *v.get_ref() != 1 {
            errs.at(
                v.span(),
                "version",
                format!(
                    "unsupported config version {} (this build reads 1)",
                    v.get_ref()
                ),
            );
        }
    }

    let workers = match &raw.server.workers {
        None => 0,
        Some(w) => match usize::try_from(*w.get_ref()) {
            Ok(n) if n <= 1024 => n,
            _ => {
                errs.at(
                    w.span(),
                    "server.workers",
                    "must be 0 (one per core) or a count up to 1024",
                );
                0
            }
        },
    };
    let drain_timeout = dur(&raw.server.drain_timeout, Duration::from_secs(30));

    let listeners = compile_listeners(&raw, &mut errs);

    let limits = http1::Limits {
        max_header_bytes: bounded_size(
            &mut errs,
            &raw.limits.max_header_bytes,
            "limits.max_header_bytes",
            16 * 1024,
            1024..=1 << 20,
        ) as usize,
        max_headers: match &raw.limits.max_headers {
            None => 100,
            Some(n) => match usize::try_from(*n.get_ref()) {
                Ok(v) if (1..=1000).contains(&v) => v,
                _ => {
                    errs.at(n.span(), "limits.max_headers", "must be between 1 and 1000");
                    100
                }
            },
        },
        max_uri_bytes: bounded_size(
            &mut errs,
            &raw.limits.max_uri_bytes,
            "limits.max_uri_bytes",
            8 * 1024,
            64..=1 << 20,
        ) as usize,
    };
    let default_max_body = raw
        .limits
        .max_body_bytes
        .as_ref()
        .map(|s| s.get_ref().0)
        .unwrap_or(DEFAULT_MAX_BODY);

    let t = &raw.timeouts;
    let timeouts = Timeouts {
        client_header: positive(&mut errs, &t.client_header, "timeouts.client_header", 10),
        client_body: positive(&mut errs, &t.client_body, "timeouts.client_body", 30),
        keepalive: positive(&mut errs, &t.keepalive, "timeouts.keepalive", 60),
        upstream_connect: positive(
            &mut errs,
            &t.upstream_connect,
            "timeouts.upstream_connect",
            3,
        ),
        upstream_response: positive(
            &mut errs,
            &t.upstream_response,
            "timeouts.upstream_response",
            30,
        ),
        upstream_idle: positive(&mut errs, &t.upstream_idle, "timeouts.upstream_idle", 60),
        client_body_total: positive(
            &mut errs,
            &t.client_body_total,
            "timeouts.client_body_total",
            300,
        ),
        min_data_rate: super::abuse::min_data_rate(&raw.limits, &mut errs),
        tunnel_idle: positive(&mut errs, &t.tunnel_idle, "timeouts.tunnel_idle", 600),
        lingering_close: dur(&t.lingering_close, Duration::from_secs(2)),
        lingering_bytes: bounded_size(
            &mut errs,
            &raw.limits.lingering_bytes,
            "limits.lingering_bytes",
            1 << 20,
            0..=1 << 30,
        ),
    };
    let conn_limits = super::abuse::conn_limits(&raw.limits, &mut errs);

    let (upstreams, upstream_ids) = compile_upstreams(&raw, &timeouts, &mut errs);
    let admin = compile_admin(&raw, &listeners, &mut errs);
    let telemetry = super::telemetry::compile_telemetry(&raw, &mut errs);
    let super::policies::CompiledPolicies {
        mut policies,
        ids: policy_ids,
        live_limiters,
    } = super::policies::compile_policies(&raw, file, rt, &mut errs);
    policies.limiter_identities = live_limiters;

    let mut routes = Vec::with_capacity(raw.routes.len());
    let mut specs = Vec::with_capacity(raw.routes.len());
    let mut seen_names: HashMap<String, usize> = HashMap::new();
    let mut defaults_used = vec![false; raw.defaults.len()];
    for (i, r) in raw.routes.iter().enumerate() {
        let id = RouteId(i as u32);
        let field = |f: &str| format!("routes[{i}].{f}");
        let name = r.name.get_ref().clone();
        if name.is_empty() {
            errs.at(r.name.span(), field("name"), "route name must not be empty");
        }
        if let Some(prev) = seen_names.insert(name.clone(), i) {
            errs.at(
                r.name.span(),
                field("name"),
                format!("duplicate route name {name:?} (also routes[{prev}])"),
            );
        }
        if let Some((spec, route)) =
            compile_route(i, id, r, &upstream_ids, default_max_body, &mut errs)
        {
            let (ids, cors, gated) = super::policies::route_policies(
                &raw,
                &policies,
                &policy_ids,
                r.policies.as_ref(),
                (&spec, &r.name),
                &format!("routes[{i}]"),
                &mut defaults_used,
                &mut errs,
            );
            let mut route = route;
            route.policies = ids;
            route.cors = cors;
            route.gated = gated;
            specs.push(spec);
            routes.push(route);
        }
    }

    if errs.list.is_empty() {
        super::policies::unused_defaults(&raw, &defaults_used, &mut errs);
    }
    let paths = super::paths::compile_paths(&raw.paths, &mut errs);

    let table = if errs.list.is_empty() {
        match RouteTable::build(&specs) {
            Ok(t) => Some(t),
            Err(conflicts) => {
                for c in conflicts {
                    let a = &raw.routes[c.first.0 as usize];
                    let b = &raw.routes[c.second.0 as usize];
                    errs.at(
                        b.name.span(),
                        format!("routes[{}]", c.second.0),
                        format!(
                            "route {:?} conflicts with route {:?} (routes[{}]): {}",
                            b.name.get_ref(),
                            a.name.get_ref(),
                            c.first.0,
                            c.reason
                        ),
                    );
                }
                None
            }
        }
    } else {
        None
    };

    match table {
        Some(table) if errs.list.is_empty() => Ok(Compiled {
            generation,
            source: file.to_path_buf(),
            workers,
            drain_timeout,
            listeners,
            limits,
            timeouts,
            upstreams,
            routes,
            table,
            admin,
            telemetry,
            policies,
            content_hash: content_hash(src),
            paths,
            conn_limits,
        }),
        _ => Err(errs.list),
    }
}

/// Default admin address (loopback only unless configured otherwise).
pub const DEFAULT_ADMIN: &str = "127.0.0.1:9901";

fn compile_admin(raw: &RawConfig, listeners: &[Listener], errs: &mut Errors) -> Option<Admin> {
    let a = &raw.admin;
    if a.enabled == Some(false) {
        return None;
    }
    let (text, span) = match &a.address {
        Some(s) => (s.get_ref().as_str(), s.span()),
        None => (DEFAULT_ADMIN, 0..0),
    };
    let addr = match text.parse::<SocketAddr>() {
        Ok(addr) => addr,
        Err(_) => {
            errs.at(
                span,
                "admin.address",
                format!("bad admin address {text:?}: expected IP:PORT like \"127.0.0.1:9901\""),
            );
            return None;
        }
    };
    if let Some(l) = listeners.iter().find(|l| l.addr == addr) {
        errs.at(
            span,
            "admin.address",
            format!(
                "the admin listener cannot share {addr} with listener {:?}",
                l.name
            ),
        );
        return None;
    }
    let token = match &a.token {
        Some(t) if t.get_ref().len() < 16 => {
            errs.at(
                t.span(),
                "admin.token",
                "token must be at least 16 characters",
            );
            None
        }
        Some(t) => Some(t.get_ref().clone()),
        None => None,
    };
    Some(Admin { addr, token })
}

/// Keyed digest of the config text (HMAC-SHA256 under a per-process random key), as 16 hex
/// digits. Equal for equal files within one process lifetime (change detection); an unkeyed
/// hash would let whoever reads `/config` confirm guesses of secrets written in the file.
fn content_hash(src: &str) -> String {
    crate::keyed_hash::hex_prefix(src.as_bytes(), 8)
}

pub(super) fn dur(v: &Option<Spanned<RawDuration>>, default: Duration) -> Duration {
    v.as_ref().map(|d| d.get_ref().0).unwrap_or(default)
}

pub(super) fn positive(
    errs: &mut Errors,
    v: &Option<Spanned<RawDuration>>,
    field: &str,
    default_secs: u64,
) -> Duration {
    match v {
        None => Duration::from_secs(default_secs),
        Some(d) if d.get_ref().0.is_zero() => {
            errs.at(d.span(), field, "must be greater than zero");
            Duration::from_secs(default_secs)
        }
        Some(d) => d.get_ref().0,
    }
}

fn bounded_size(
    errs: &mut Errors,
    v: &Option<Spanned<RawSize>>,
    field: &str,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
) -> u64 {
    match v {
        None => default,
        Some(s) if !range.contains(&s.get_ref().0) => {
            errs.at(
                s.span(),
                field,
                format!(
                    "must be between {} and {} bytes",
                    range.start(),
                    range.end()
                ),
            );
            default
        }
        Some(s) => s.get_ref().0,
    }
}

fn compile_listeners(raw: &RawConfig, errs: &mut Errors) -> Vec<Listener> {
    let mut out: Vec<Listener> = Vec::new();
    if raw.listeners.is_empty() {
        errs.at(
            0..0,
            "listeners",
            "at least one [[listeners]] entry with an address is required",
        );
    }
    for (i, l) in raw.listeners.iter().enumerate() {
        let field = format!("listeners[{i}].address");
        let name = l
            .name
            .as_ref()
            .map(|n| n.get_ref().clone())
            .unwrap_or_else(|| format!("listener{i}"));
        match l.address.get_ref().parse::<SocketAddr>() {
            Ok(addr) => {
                if let Some(prev) = out.iter().find(|p| p.addr == addr) {
                    errs.at(
                        l.address.span(),
                        field,
                        format!("address {addr} is already used by listener {:?}", prev.name),
                    );
                } else {
                    out.push(Listener { name, addr });
                }
            }
            Err(_) => errs.at(
                l.address.span(),
                field,
                format!(
                    "bad listener address {:?}: expected IP:PORT like \"0.0.0.0:8080\" or \"[::]:8080\"",
                    l.address.get_ref()
                ),
            ),
        }
    }
    out
}

fn compile_upstreams(
    raw: &RawConfig,
    timeouts: &Timeouts,
    errs: &mut Errors,
) -> (Vec<Upstream>, HashMap<String, UpstreamId>) {
    let mut ups = Vec::new();
    let mut ids = HashMap::new();
    for (name, u) in &raw.upstreams {
        let field = |f: &str| format!("upstreams.{}.{f}", name.get_ref());
        if u.targets.get_ref().is_empty() {
            errs.at(
                u.targets.span(),
                field("targets"),
                "needs at least one target",
            );
        }
        let mut targets = Vec::new();
        for (ti, t) in u.targets.get_ref().iter().enumerate() {
            let tf = field(&format!("targets[{ti}].address"));
            let text = t.address.get_ref();
            let weight = match &t.weight {
                None => 1,
                Some(w) => match u32::try_from(*w.get_ref()) {
                    Ok(v) if (1..=1000).contains(&v) => v,
                    _ => {
                        errs.at(
                            w.span(),
                            field(&format!("targets[{ti}].weight")),
                            "weight must be between 1 and 1000",
                        );
                        1
                    }
                },
            };
            if !text.contains(':') {
                errs.at(
                    t.address.span(),
                    tf,
                    format!("bad upstream address {text:?}: expected HOST:PORT"),
                );
                continue;
            }
            // Blocking resolution is fine here: compile() only runs on the control thread.
            match text.to_socket_addrs().map(|mut a| a.next()) {
                Ok(Some(addr)) => targets.push(Target {
                    addr,
                    label: text.clone(),
                    weight,
                }),
                Ok(None) | Err(_) => errs.at(
                    t.address.span(),
                    tf,
                    format!("bad upstream address {text:?}: cannot resolve to HOST:PORT"),
                ),
            }
        }
        let max_idle = match &u.max_idle {
            None => 64,
            Some(m) => match usize::try_from(*m.get_ref()) {
                Ok(v) if v <= 100_000 => v,
                _ => {
                    errs.at(m.span(), field("max_idle"), "must be between 0 and 100000");
                    64
                }
            },
        };
        let id = UpstreamId(ups.len() as u32);
        ids.insert(name.get_ref().clone(), id);
        ups.push(Upstream {
            name: name.get_ref().clone(),
            targets,
            max_idle,
            idle_timeout: dur(&u.idle_timeout, Duration::from_secs(60)),
            backoff: dur(&u.backoff, Duration::from_secs(2)),
            connect_timeout: match &u.connect_timeout {
                None => timeouts.upstream_connect,
                Some(_) => positive(errs, &u.connect_timeout, &field("connect_timeout"), 3),
            },
            response_timeout: match &u.response_timeout {
                None => timeouts.upstream_response,
                Some(_) => positive(errs, &u.response_timeout, &field("response_timeout"), 30),
            },
        });
    }
    (ups, ids)
}

fn compile_route(
    i: usize,
    id: RouteId,
    r: &RawRoute,
    upstream_ids: &HashMap<String, UpstreamId>,
    default_max_body: u64,
    errs: &mut Errors,
) -> Option<(RouteSpec, Route)> {
    let field = |f: &str| format!("routes[{i}].{f}");
    let before = errs.list.len();

    let mut hosts = Vec::new();
    for (hi, h) in r.hosts.iter().flatten().enumerate() {
        match host_pattern(h.get_ref()) {
            Ok(p) => hosts.push(p),
            Err(m) => errs.at(h.span(), field(&format!("hosts[{hi}]")), m),
        }
    }

    let path = match (&r.path, &r.prefix) {
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
    };

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

    let conds = |map: &Option<std::collections::BTreeMap<Spanned<String>, Spanned<RawCond>>>,
                 kind: &str,
                 errs: &mut Errors| {
        let mut out = Vec::new();
        for (k, v) in map.iter().flatten() {
            let name = if kind == "headers" {
                k.get_ref().to_ascii_lowercase()
            } else {
                k.get_ref().clone()
            };
            if name.is_empty()
                || (kind == "headers" && !name.bytes().all(|b| b.is_ascii_graphic() && b != b':'))
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
    };
    let headers = conds(&r.headers, "headers", errs);
    let query = conds(&r.query, "query", errs);

    let max_body = r
        .max_body_bytes
        .as_ref()
        .map(|s| s.get_ref().0)
        .unwrap_or(default_max_body);

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

    let action = if let Some(p) = &r.proxy {
        let p = p.get_ref();
        let upstream = match upstream_ids.get(p.upstream.get_ref()) {
            Some(id) => *id,
            None => {
                let mut known: Vec<_> = upstream_ids.keys().cloned().collect();
                known.sort();
                errs.at(
                    p.upstream.span(),
                    field("proxy.upstream"),
                    format!(
                        "unknown upstream {:?} (defined: {})",
                        p.upstream.get_ref(),
                        if known.is_empty() {
                            "none".to_string()
                        } else {
                            known.join(", ")
                        }
                    ),
                );
                UpstreamId(0)
            }
        };
        let strip = p
            .strip_prefix
            .as_ref()
            .map(|s| *s.get_ref())
            .unwrap_or(false);
        let rewrite = match (&p.replace_prefix, strip, &p.path) {
            (_, _, Some(t)) => {
                if p.replace_prefix.is_some() || strip {
                    errs.at(
                        t.span(),
                        field("proxy.path"),
                        "set either `path` or strip_prefix / replace_prefix, not both",
                    );
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
                }
                Rewrite::ReplacePrefix {
                    prefix: r
                        .prefix
                        .as_ref()
                        .map(|s| s.get_ref().clone())
                        .unwrap_or_default(),
                    with: with.get_ref().clone(),
                }
            }
            (None, true, None) => Rewrite::ReplacePrefix {
                prefix: r
                    .prefix
                    .as_ref()
                    .map(|s| s.get_ref().clone())
                    .unwrap_or_default(),
                with: String::new(),
            },
        };
        Action::Proxy(ProxyAction {
            upstream,
            rewrite,
            preserve_host: p.preserve_host.unwrap_or(true),
        })
    } else if let Some(s) = &r.static_ {
        let s = s.get_ref();
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
        Action::Static(StaticResponse {
            status,
            headers,
            body: s.body.clone().unwrap_or_default().into_bytes(),
        })
    } else if r.echo.is_some() {
        Action::Echo
    } else if let Some(rd) = &r.redirect {
        let rd = rd.get_ref();
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
        Action::Redirect(Redirect {
            status,
            location: loc.clone(),
            append_path: rd.append_path.unwrap_or(false),
        })
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

fn status_in(
    errs: &mut Errors,
    v: &Option<Spanned<i64>>,
    field: &str,
    default: u16,
    range: std::ops::RangeInclusive<u16>,
) -> u16 {
    int_in(errs, v, field, default, range, "status ")
}

/// An integer within `range`, or `default` when absent; out of range (or not representable)
/// is an error at the value naming `field` ("{noun}must be between A and B"), and `default`
/// stands in so compilation can report further errors.
pub(super) fn int_in<T>(
    errs: &mut Errors,
    v: &Option<Spanned<i64>>,
    field: &str,
    default: T,
    range: std::ops::RangeInclusive<T>,
    noun: &str,
) -> T
where
    T: Copy + PartialOrd + std::fmt::Display + TryFrom<i64>,
{
    match v {
        None => default,
        Some(s) => match T::try_from(*s.get_ref()) {
            Ok(x) if range.contains(&x) => x,
            _ => {
                errs.at(
                    s.span(),
                    field,
                    format!(
                        "{noun}must be between {} and {}",
                        range.start(),
                        range.end()
                    ),
                );
                default
            }
        },
    }
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
fn path_rewrite(r: &RawRoute, target: &str) -> Result<Vec<super::PathPiece>, String> {
    use super::PathPiece;
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

/// Reads, parses and compiles a config file with a fresh `Runtime`.
pub fn load(path: &Path, generation: u64) -> Result<Compiled, Vec<ConfigError>> {
    load_with(path, generation, &super::policies::Runtime::default())
}

/// Reads, parses and compiles a config file, drawing on `rt` for state kept across reloads.
pub fn load_with(
    path: &Path,
    generation: u64,
    rt: &super::policies::Runtime,
) -> Result<Compiled, Vec<ConfigError>> {
    let src = std::fs::read_to_string(path).map_err(|e| {
        vec![ConfigError {
            file: path.to_path_buf(),
            line: 0,
            col: 0,
            field: String::new(),
            message: format!("cannot read config: {e}"),
        }]
    })?;
    let raw = parse(&src, path)?;
    compile_with(raw, &src, path, generation, rt)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(src: &str) -> Result<Compiled, Vec<ConfigError>> {
        let p = Path::new("test.toml");
        let raw = parse(src, p)?;
        compile(raw, src, p, 1)
    }

    fn first_err(src: &str) -> String {
        match check(src) {
            Ok(_) => panic!("expected an error"),
            Err(e) => e[0].to_string(),
        }
    }

    const BASE: &str = "[[listeners]]\naddress = \"127.0.0.1:0\"\n";

    #[test]
    fn minimal_config_compiles() {
        let src = format!("{BASE}[[routes]]\nname = \"a\"\npath = \"/\"\necho = {{}}\n");
        let c = check(&src).unwrap();
        assert_eq!(c.routes.len(), 1);
        assert_eq!(c.timeouts.client_header, Duration::from_secs(10));
    }

    #[test]
    fn unknown_field_names_line_and_field() {
        let src = format!("{BASE}[[routes]]\nname = \"a\"\npath = \"/\"\nechoo = {{}}\n");
        let e = first_err(&src);
        assert!(e.starts_with("test.toml:6:1:"), "{e}");
        assert!(e.contains("echoo"), "{e}");
    }

    #[test]
    fn unknown_upstream_is_named() {
        let src = format!(
            "{BASE}[upstreams.users]\ntargets = [{{ address = \"127.0.0.1:9\" }}]\n\
             [[routes]]\nname = \"a\"\nprefix = \"/\"\nproxy = {{ upstream = \"userz\" }}\n"
        );
        let e = first_err(&src);
        assert!(e.contains("test.toml:8:"), "{e}");
        assert!(e.contains("routes[0].proxy.upstream"), "{e}");
        assert!(e.contains("userz") && e.contains("users"), "{e}");
    }

    #[test]
    fn duplicate_route_name() {
        let src = format!(
            "{BASE}[[routes]]\nname = \"a\"\npath = \"/x\"\necho = {{}}\n\
             [[routes]]\nname = \"a\"\npath = \"/y\"\necho = {{}}\n"
        );
        let e = first_err(&src);
        assert!(
            e.contains(":8:") && e.contains("duplicate route name"),
            "{e}"
        );
    }

    #[test]
    fn bad_duration_and_address() {
        let e = first_err(&format!("{BASE}[timeouts]\nkeepalive = \"10 parsecs\"\n"));
        assert!(e.contains(":4:") && e.contains("timeouts.keepalive"), "{e}");
        let e = first_err("[[listeners]]\naddress = \"nowhere\"\n");
        assert!(
            e.contains(":2:") && e.contains("listeners[0].address"),
            "{e}"
        );
    }

    #[test]
    fn conflicting_routes_are_an_error() {
        let src = format!(
            "{BASE}[[routes]]\nname = \"a\"\npath = \"/x\"\necho = {{}}\n\
             [[routes]]\nname = \"b\"\npath = \"/x\"\necho = {{}}\n"
        );
        let e = first_err(&src);
        assert!(e.contains("conflicts"), "{e}");
    }

    #[test]
    fn line_col_counts_chars() {
        assert_eq!(line_col("ab\ncd", 0), (1, 1));
        assert_eq!(line_col("ab\ncd", 4), (2, 2));
    }
}

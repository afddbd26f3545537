//! Human-readable summary of a compiled config, printed by `ringway check`.

use std::fmt::Write;

use super::model::{Action, Compiled, PathPiece, Rewrite, Route};
use crate::http1::allow_header_value;
use crate::policy::pipeline::PolicyId;
use crate::route::{Cond, HostPattern, PathPattern, RouteSpec};

/// One route as `check` and the admin API show it.
pub struct RouteRow {
    pub name: String,
    pub hosts: String,
    pub methods: String,
    /// `= /exact`, `~ /template/{id}` or `^ /prefix`; ` (any case)` for case-insensitive routes.
    pub path: String,
    pub conditions: String,
    pub action: String,
    /// Policies in the order they run (CORS first, in brackets).
    pub policies: String,
}

/// Routes in match order.
pub fn route_rows(c: &Compiled) -> Vec<RouteRow> {
    c.table
        .match_order()
        .iter()
        .map(|id| {
            let r = c.route(*id);
            RouteRow {
                policies: policies(c, r),
                name: r.name.clone(),
                hosts: hosts(&r.spec),
                methods: if r.spec.methods == 0 {
                    "ANY".to_string()
                } else {
                    allow_header_value(r.spec.methods).replace(", ", ",")
                },
                path: path(&r.spec),
                conditions: conditions(&r.spec),
                action: action(c, r),
            }
        })
        .collect()
}

fn hosts(spec: &RouteSpec) -> String {
    if spec.hosts.is_empty() {
        return "*".to_string();
    }
    spec.hosts
        .iter()
        .map(|h| match h {
            HostPattern::Exact(h) => h.clone(),
            HostPattern::Wildcard(sfx) => format!("*{sfx}"),
            HostPattern::Any => "*".into(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// `= /exact`, `~ /template/{id}` or `^ /prefix`, plus ` (any case)`.
fn path(spec: &RouteSpec) -> String {
    let mut path = match &spec.path {
        PathPattern::Exact(p) => format!("= {p}"),
        PathPattern::Prefix(p) => format!("^ {p}"),
        PathPattern::Template(p) => format!("~ {p}"),
    };
    if spec.case_insensitive {
        path.push_str(" (any case)");
    }
    path
}

/// `header:k=v query:k` conditions, space-separated.
fn conditions(spec: &RouteSpec) -> String {
    let mut conds = String::new();
    for (k, v) in &spec.headers {
        let _ = match v {
            Cond::Equals(x) => write!(conds, " header:{k}={x}"),
            Cond::Present => write!(conds, " header:{k}"),
        };
    }
    for (k, v) in &spec.cookies {
        let _ = match v {
            Cond::Equals(x) => write!(conds, " cookie:{k}={x}"),
            Cond::Present => write!(conds, " cookie:{k}"),
        };
    }
    for (k, v) in &spec.query {
        let _ = match v {
            Cond::Equals(x) => write!(conds, " query:{k}={x}"),
            Cond::Present => write!(conds, " query:{k}"),
        };
    }
    conds.trim_start().to_string()
}

fn action(c: &Compiled, r: &Route) -> String {
    match &r.action {
        Action::Proxy(p) => {
            let mut a = format!("proxy {}", c.upstream(p.upstream).name);
            if let Some(s) = &p.split {
                let arms: Vec<String> = s
                    .arms
                    .iter()
                    .map(|(id, w)| format!("{} {w}", c.upstream(*id).name))
                    .collect();
                a = format!("proxy split [{}]", arms.join(", "));
                if let Some(k) = &s.sticky {
                    let _ = write!(a, " sticky {k}");
                }
            }
            if let Some(m) = &p.mirror {
                let pct = f64::from(m.per_million) / 10_000.0;
                let _ = write!(a, " (mirror {pct}% to {})", c.upstream(m.upstream).name);
            }
            match &p.rewrite {
                Rewrite::ReplacePrefix { prefix, with } => {
                    let _ = write!(
                        a,
                        " (rewrite {prefix} -> {})",
                        if with.is_empty() { "/" } else { with }
                    );
                }
                Rewrite::Template(pieces) => {
                    let names = match &r.spec.path {
                        PathPattern::Template(t) => {
                            crate::route::validate_template(t).unwrap_or_default()
                        }
                        _ => Vec::new(),
                    };
                    a.push_str(" (path ");
                    for piece in pieces {
                        match piece {
                            PathPiece::Literal(l) => a.push_str(l),
                            PathPiece::Param(i) => {
                                let n = names.get(usize::from(*i));
                                let _ = write!(a, "{{{}}}", n.map_or("?", |n| n.as_str()));
                            }
                        }
                    }
                    a.push(')');
                }
                Rewrite::None => {}
            }
            a
        }
        Action::Static(st) => format!("static {}", st.status),
        Action::Echo => "echo".into(),
        Action::Redirect(rd) => format!("redirect {} {}", rd.status, rd.location),
        Action::Portal(p) => format!("openapi portal {}", p.base),
        Action::Mcp(m) => format!("openapi mcp {} ({} tools)", m.path, m.tools.len()),
    }
}

/// Policies in the order they run, CORS first in brackets; with partial defaults, a policy
/// only some requests get is marked with the scope that brings it: `key (if /api)`.
fn policies(c: &Compiled, r: &Route) -> String {
    let name_of = |id: &PolicyId| {
        c.policies
            .list
            .get(id.0 as usize)
            .map_or("?".to_string(), |p| p.name.clone())
    };
    let mut policies: Vec<String> = Vec::new();
    let Some(g) = &r.gated else {
        policies.extend(r.cors.iter().map(|id| format!("[{}]", name_of(id))));
        policies.extend(r.policies.iter().map(name_of));
        return policies.join(",");
    };
    let (all, all_cors) = g.lists.last().cloned().unwrap_or_default();
    let when = |id: &PolicyId, is_cors: bool| -> Option<String> {
        let always = if is_cors {
            r.cors == Some(*id)
        } else {
            r.policies.contains(id)
        };
        if always {
            return None;
        }
        let scopes: Vec<String> = g
            .scopes
            .iter()
            .enumerate()
            .filter(|(j, _)| {
                g.lists.get(1 << j).is_some_and(|(ids, cors)| {
                    if is_cors {
                        *cors == Some(*id)
                    } else {
                        ids.contains(id)
                    }
                })
            })
            .map(|(_, s)| s.describe())
            .collect();
        Some(scopes.join(" or "))
    };
    let show = |id: &PolicyId, is_cors: bool| {
        let name = name_of(id);
        let name = if is_cors { format!("[{name}]") } else { name };
        match when(id, is_cors) {
            None => name,
            Some(w) => format!("{name} (if {w})"),
        }
    };
    policies.extend(all_cors.iter().map(|id| show(id, true)));
    policies.extend(all.iter().map(|id| show(id, false)));
    policies.join(",")
}

/// Certificates expiring sooner than this get a warning line.
const EXPIRY_WARNING_DAYS: i64 = 30;

/// `listeners:` with each TLS listener's settings and certificates (names, key type, notAfter,
/// days left), then a `warning:` line for every certificate expiring within 30 days.
fn listeners(c: &Compiled, now: u64, s: &mut String) {
    let now = i64::try_from(now).unwrap_or(i64::MAX);
    let mut warnings = Vec::new();
    let _ = writeln!(s, "listeners:");
    for l in &c.listeners {
        let _ = write!(s, "  {:<12} {}", l.name, l.addr);
        if let Some(port) = l.redirect_https {
            let _ = write!(s, " (redirects to https on port {port})");
        }
        let Some(tls) = &l.tls else {
            if l.h2c {
                let _ = writeln!(s, " (HTTP/1.1 and h2c)");
                http2_line(&l.http2, s);
            } else {
                s.push('\n');
            }
            continue;
        };
        let _ = writeln!(s, " tls: {}", tls.description);
        if tls.description.contains("h2") {
            http2_line(&l.http2, s);
        }
        for cert in &tls.certs {
            let days = cert.not_after.saturating_sub(now).div_euclid(86_400);
            let _ = writeln!(
                s,
                "    certificate {}: {} [{}] expires {} ({days} days){}",
                cert.file,
                cert.names.join(","),
                cert.key_type,
                crate::tls::certs::rfc3339(cert.not_after),
                if cert.ocsp { " +ocsp" } else { "" },
            );
            if days < EXPIRY_WARNING_DAYS {
                warnings.push(format!(
                    "warning: listener {}: certificate {} expires in {days} days ({})",
                    l.name,
                    cert.file,
                    crate::tls::certs::rfc3339(cert.not_after)
                ));
            }
        }
    }
    for w in warnings {
        let _ = writeln!(s, "{w}");
    }
}

/// A listener's HTTP/2 limits, one line.
fn http2_line(h: &super::http2::Http2Settings, s: &mut String) {
    let _ = writeln!(
        s,
        "    http2: {} streams, header list {} B, frame {} B, windows {}/{} B, idle {}s; \
         per second at most {} resets, {} pings, {} settings, {} empty frames",
        h.max_concurrent_streams,
        h.max_header_list_size,
        h.max_frame_size,
        h.stream_window,
        h.connection_window,
        h.idle_timeout.as_secs(),
        h.max_resets_per_second,
        h.max_pings_per_second,
        h.max_settings_per_second,
        h.max_empty_frames_per_second,
    );
}

/// `upstreams:` with each upstream's targets and TLS, then a `warning:` line for every
/// upstream whose certificate is not verified and every client certificate expiring within
/// 30 days.
fn upstreams(c: &Compiled, now: u64, s: &mut String) {
    let now = i64::try_from(now).unwrap_or(i64::MAX);
    let mut warnings = Vec::new();
    let _ = writeln!(s, "upstreams:");
    if c.upstreams.is_empty() {
        let _ = writeln!(s, "  (none)");
    }
    for u in &c.upstreams {
        let targets: Vec<String> = u
            .targets
            .iter()
            .map(|t| format!("{} -> {} (weight {})", t.label, t.addr, t.weight))
            .collect();
        let _ = writeln!(s, "  {:<12} {}", u.name, targets.join(", "));
        match &u.balance {
            super::model::Balance::RoundRobin => {}
            super::model::Balance::LeastRequest => {
                let _ = writeln!(s, "    balance: least_request");
            }
            super::model::Balance::Hash { on, .. } => {
                let _ = writeln!(s, "    balance: hash on {on}");
            }
        }
        if u.protocol == super::model::UpstreamProtocol::Http2 {
            let how = if u.tls.is_some() {
                "h2 via ALPN"
            } else {
                "h2c, prior knowledge"
            };
            let _ = writeln!(s, "    protocol: HTTP/2 ({how})");
        }
        let Some(tls) = &u.tls else { continue };
        let _ = writeln!(s, "    {}", tls.describe());
        if !tls.verify {
            warnings.push(format!(
                "warning: upstream {}: TLS certificate verification is OFF (tls.verify = false)",
                u.name
            ));
        }
        if let Some((file, not_after)) = &tls.client_cert {
            let days = not_after.saturating_sub(now).div_euclid(86_400);
            if days < EXPIRY_WARNING_DAYS {
                warnings.push(format!(
                    "warning: upstream {}: client certificate {} expires in {days} days",
                    u.name,
                    file.display()
                ));
            }
        }
    }
    for w in warnings {
        let _ = writeln!(s, "{w}");
    }
}

/// `redis: ...` when instances share state (nothing otherwise).
fn redis(c: &Compiled, s: &mut String) {
    let Some(r) = &c.redis else { return };
    let st = &r.settings;
    let nodes: Vec<String> = st.nodes.iter().map(|a| a.to_string()).collect();
    let kind = if st.cluster {
        "cluster seeds"
    } else {
        "standalone"
    };
    let tls = if st.tls.is_some() { ", tls" } else { "" };
    let _ = writeln!(
        s,
        "redis: {} ({kind}), prefix {:?}, timeout {}ms{tls}",
        nodes.join(", "),
        st.prefix,
        st.timeout.as_millis()
    );
}

pub fn render(c: &Compiled) -> String {
    let mut s = String::new();
    listeners(c, crate::civil::unix_now(), &mut s);
    upstreams(c, crate::civil::unix_now(), &mut s);
    redis(c, &mut s);
    let _ = writeln!(s, "routes (match order):");
    for (i, r) in route_rows(c).iter().enumerate() {
        let conds = if r.conditions.is_empty() {
            String::new()
        } else {
            format!(" {}", r.conditions)
        };
        let policies = if r.policies.is_empty() {
            String::new()
        } else {
            format!(" [policies: {}]", r.policies)
        };
        let _ = writeln!(
            s,
            "  {:>3}. {:<16} {:<14} {:<10} {:<24}{} -> {}{}",
            i + 1,
            r.name,
            r.hosts,
            r.methods,
            r.path,
            conds,
            r.action,
            policies
        );
    }
    openapi(c, &mut s);
    s
}

/// Each imported OpenAPI document: its routes, then every construct that was not acted on,
/// with its JSON pointer (nothing is skipped silently).
fn openapi(c: &Compiled, s: &mut String) {
    for imp in &c.openapi {
        let a = &imp.api;
        let _ = writeln!(
            s,
            "openapi {:?}: {} ({} {}, OpenAPI {}), {} operations, {} routes",
            a.name,
            a.file.display(),
            a.title,
            a.version,
            match a.dialect {
                crate::openapi::Dialect::V30 => "3.0",
                crate::openapi::Dialect::V31 => "3.1",
            },
            a.operations.len(),
            imp.routes.len()
        );
        for id in &imp.routes {
            let r = c.route(*id);
            let from = a
                .operations
                .iter()
                .find(|o| o.id == r.name)
                .map_or(String::new(), |o| format!(" (from {})", o.pointer));
            let _ = writeln!(s, "  route {}{from}", r.name);
        }
        if imp.ignored.is_empty() {
            let _ = writeln!(s, "  ignored: nothing");
        } else {
            let _ = writeln!(s, "  ignored ({}):", imp.ignored.len());
            for i in &imp.ignored {
                let _ = writeln!(s, "    {}: {}", i.pointer, i.reason);
            }
        }
    }
}

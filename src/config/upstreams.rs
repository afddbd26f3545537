//! An upstream's table (`[upstreams.NAME]`) compiled: targets resolved and weighted, pool and
//! timeout settings, TLS and protocol, and the shared resilience records (`resilience`) each
//! upstream and target carries across reloads.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use super::errors::{positive, Diag};
use super::model::{Runtime, Target, Timeouts, Upstream, UpstreamId, UpstreamProtocol};
use super::raw::{RawConfig, RawUpstream};
use super::units::dur;
use crate::dns::DnsSettings;
use crate::resilience::UpstreamShared;

pub fn compile_upstreams(
    raw: &RawConfig,
    file: &Path,
    timeouts: &Timeouts,
    rt: &Runtime,
    dns: &DnsSettings,
    errs: &mut Diag,
) -> (Vec<Upstream>, HashMap<String, UpstreamId>) {
    let mut ups = Vec::new();
    let mut ids = HashMap::new();
    let mut roots = crate::tls::upstream::SystemRoots::default();
    for (name, u) in &raw.upstreams {
        let field = |f: &str| format!("upstreams.{}.{f}", name.get_ref());
        let protocol = upstream_protocol(u, &field, errs);
        let h2 = protocol == UpstreamProtocol::Http2;
        let tls = upstream_tls(u, name.get_ref(), file, &mut roots, h2, errs);
        if u.targets.get_ref().is_empty() {
            errs.at(
                u.targets.span(),
                field("targets"),
                "needs at least one target",
            );
        }
        let shared = rt.resilience.upstream(name.get_ref());
        let targets = targets(u, &shared, (rt, dns), &field, errs);
        let raw_health = super::health::RawHealth {
            check: u.health_check.as_ref(),
            outlier: u.outlier.as_ref(),
            panic_threshold: &u.panic_threshold,
        };
        let health = super::health::compile_health(raw_health, h2, &field, errs);
        let balance = super::traffic::balance(&u.balance, &u.hash_on, &targets, &field, errs);
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
                Some(_) => positive(
                    errs,
                    &u.connect_timeout,
                    &field("connect_timeout"),
                    Duration::from_secs(3),
                ),
            },
            response_timeout: match &u.response_timeout {
                None => timeouts.upstream_response,
                Some(_) => positive(
                    errs,
                    &u.response_timeout,
                    &field("response_timeout"),
                    Duration::from_secs(30),
                ),
            },
            tls,
            protocol,
            shared,
            retry_budget: super::retries::retry_budget(
                retried_by_a_route(raw, name.get_ref()),
                u.retry_budget.as_ref().map(|b| b.get_ref()),
                &field,
                errs,
            ),
            breaker: super::retries::breaker_limits(
                u.circuit_breaker.as_ref().map(|b| b.get_ref()),
                &field,
                errs,
            ),
            health,
            balance,
        });
    }
    (ups, ids)
}

/// Whether some route with a retry policy proxies to upstream `name`, directly or as a split
/// arm (it then gets the default retry budget unless it has its own).
fn retried_by_a_route(raw: &RawConfig, name: &str) -> bool {
    raw.routes.iter().any(|r| {
        r.proxy.as_ref().is_some_and(|p| {
            let p = p.get_ref();
            let named = p.upstream.as_ref().is_some_and(|u| u.get_ref() == name);
            let split = p
                .split
                .as_ref()
                .is_some_and(|s| s.get_ref().iter().any(|a| a.upstream.get_ref() == name));
            p.retry.is_some() && (named || split)
        })
    })
}

/// An upstream's `protocol`: `"http1"` (the default) or `"http2"`.
fn upstream_protocol(
    u: &RawUpstream,
    field: &dyn Fn(&str) -> String,
    errs: &mut Diag,
) -> UpstreamProtocol {
    let Some(p) = &u.protocol else {
        return UpstreamProtocol::Http1;
    };
    match p.get_ref().as_str() {
        "http1" => UpstreamProtocol::Http1,
        "http2" => UpstreamProtocol::Http2,
        other => {
            errs.at(
                p.span(),
                field("protocol"),
                format!("unknown protocol {other:?}: expected \"http1\" or \"http2\""),
            );
            UpstreamProtocol::Http1
        }
    }
}

/// An upstream's `tls` (see `tls::upstream`), with errors under `upstreams.<name>`.
fn upstream_tls(
    u: &RawUpstream,
    name: &str,
    file: &Path,
    roots: &mut crate::tls::upstream::SystemRoots,
    h2: bool,
    errs: &mut Diag,
) -> Option<std::sync::Arc<crate::tls::upstream::UpstreamTls>> {
    let raw = u.tls.as_ref()?;
    let targets: Vec<(&str, std::ops::Range<usize>)> = u
        .targets
        .get_ref()
        .iter()
        .map(|t| (t.address.get_ref().as_str(), t.address.span()))
        .collect();
    let mut cx = crate::tls::upstream::Context {
        base_dir: file.parent().unwrap_or(Path::new(".")),
        roots,
        targets: &targets,
        h2,
    };
    let prefix = format!("upstreams.{name}");
    let mut fail = errs.under(&prefix);
    crate::tls::upstream::compile(raw, &mut cx, &mut fail)
}

/// An upstream's targets: `HOST:PORT` resolved now (blocking is fine: compile() only runs on
/// the control thread), weights 1..=1000.
fn targets(
    u: &RawUpstream,
    shared: &UpstreamShared,
    cx: (&Runtime, &DnsSettings),
    field: &dyn Fn(&str) -> String,
    errs: &mut Diag,
) -> Vec<Target> {
    let (rt, dns) = cx;
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
        let addrs = match resolve_target(text, rt, dns) {
            Ok(a) => a,
            Err(why) => {
                errs.at(
                    t.address.span(),
                    tf,
                    format!("bad upstream address {text:?}: {why}"),
                );
                continue;
            }
        };
        for addr in addrs {
            if targets.iter().any(|p: &Target| p.addr == addr) {
                continue;
            }
            targets.push(Target {
                addr,
                label: text.clone(),
                weight,
                source: ti,
                health: shared.target(addr),
            });
        }
    }
    targets
}

/// A target's addresses: an `IP:PORT` literal as is; `HOST:PORT` through the DNS cache (every
/// A and AAAA record, the last good answer when a lookup fails). Blocking is fine here:
/// compile() only runs on the control side.
fn resolve_target(text: &str, rt: &Runtime, dns: &DnsSettings) -> Result<Vec<SocketAddr>, String> {
    if let Ok(a) = text.parse::<SocketAddr>() {
        return Ok(vec![a]);
    }
    let (host, port) = split_host_port(text).ok_or("expected HOST:PORT")?;
    let addrs = rt.dns.resolve(host, dns)?;
    Ok(addrs
        .into_iter()
        .map(|ip| SocketAddr::new(ip, port))
        .collect())
}

/// `HOST:PORT` with a plausible host name and a port number; `None` otherwise.
pub fn split_host_port(text: &str) -> Option<(&str, u16)> {
    let (host, port) = text.rsplit_once(':')?;
    let port: u16 = port.parse().ok().filter(|p| *p != 0)?;
    let ok = !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
    ok.then_some((host, port))
}

/// The host names (not IP literals) a compiled upstream list resolves.
pub fn host_names(ups: &[Upstream]) -> Vec<&str> {
    let mut names: Vec<&str> = ups
        .iter()
        .flat_map(|u| &u.targets)
        .filter(|t| t.label.parse::<SocketAddr>().is_err())
        .filter_map(|t| split_host_port(&t.label).map(|(h, _)| h))
        .collect();
    names.sort_unstable();
    names.dedup();
    names
}

//! Compiles `[dns]` (name servers, hosts and resolv.conf paths, TTL bounds, query timeout) into
//! `dns::DnsSettings`. Relative paths are taken from the config file's directory.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use super::errors::{positive, Diag};
use super::raw::RawDns;
use crate::dns::{DnsSettings, Families};

/// The resolver settings; every bad value is an error naming its field.
pub(super) fn compile_dns(raw: &RawDns, file: &Path, errs: &mut Diag) -> DnsSettings {
    let mut s = DnsSettings::default();
    let base = file.parent().unwrap_or(Path::new("."));
    if let Some(f) = &raw.family {
        s.family = match f.get_ref().as_str() {
            "any" => Families::Any,
            "ipv4" => Families::Ipv4,
            "ipv6" => Families::Ipv6,
            other => {
                errs.at(
                    f.span(),
                    "dns.family",
                    format!("unknown family {other:?}: use \"any\", \"ipv4\" or \"ipv6\""),
                );
                Families::Any
            }
        };
    }
    for (i, server) in raw.servers.iter().flatten().enumerate() {
        match parse_server(server.get_ref()) {
            Some(a) => s.servers.push(a),
            None => errs.at(
                server.span(),
                format!("dns.servers[{i}]"),
                format!(
                    "bad name server {:?}: expected IP or IP:PORT",
                    server.get_ref()
                ),
            ),
        }
    }
    if let Some(p) = &raw.hosts_file {
        s.hosts_file = base.join(p.get_ref());
    }
    if let Some(p) = &raw.resolv_conf {
        s.resolv_conf = base.join(p.get_ref());
    }
    s.min_ttl = positive(errs, &raw.min_ttl, "dns.min_ttl", s.min_ttl);
    s.max_ttl = positive(errs, &raw.max_ttl, "dns.max_ttl", s.max_ttl);
    s.timeout = positive(errs, &raw.timeout, "dns.timeout", s.timeout);
    if let Some(m) = &raw.max_ttl {
        if s.max_ttl < s.min_ttl {
            errs.at(m.span(), "dns.max_ttl", "must not be below dns.min_ttl");
        }
    }
    if s.timeout > Duration::from_secs(30) {
        if let Some(t) = &raw.timeout {
            errs.at(t.span(), "dns.timeout", "must be at most 30s");
        }
    }
    s
}

fn parse_server(text: &str) -> Option<SocketAddr> {
    if let Ok(a) = text.parse::<SocketAddr>() {
        return Some(a);
    }
    text.parse::<IpAddr>()
        .ok()
        .map(|ip| SocketAddr::new(ip, 53))
}

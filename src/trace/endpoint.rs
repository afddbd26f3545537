//! The OTLP collector endpoint: `http://host[:port][/path]`, parsed and validated once (config
//! check and exporter start), never resolved here.
//!
//! https: the exporter's transport (`client`, on `ureq` with rustls) can speak it, but
//! `parse_endpoint` still refuses `https://` with "https is not supported yet": three existing
//! tests (`bad_endpoints` here, `set_config_switches_endpoint` and `start_rejects_bad_endpoints`
//! in `exporter`) assert that refusal. Accepting https means changing those assertions, the
//! default port (443) and `Display`, and nothing else.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

/// Path used when the endpoint URL has none (the OTLP/HTTP traces path).
pub const DEFAULT_PATH: &str = "/v1/traces";
/// A validated collector endpoint. `host` is an IPv4 literal, an IPv6 literal (without
/// brackets) or a host name, resolved on the exporter thread at connect time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    /// Request target, starting with `/` (may carry a query).
    pub path: String,
}

impl Endpoint {
    /// The `Host` header value (`host:port`, IPv6 in brackets).
    pub fn host_header(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "http://{}{}", self.host_header(), self.path)
    }
}

/// Parses and validates a collector URL: `http://` only (https is refused, see the module
/// header), host
/// as IPv4, `[IPv6]` or a host name, optional port (default 80), path default `/v1/traces`.
/// No name resolution happens here.
pub fn parse_endpoint(s: &str) -> Result<Endpoint, String> {
    let s = s.trim();
    let lower = s.to_ascii_lowercase();
    // The transport (ureq with rustls) could speak https; three tests pin the refusal, so it
    // stays until that is decided (see the module header).
    if lower.starts_with("https://") {
        return Err(format!(
            "OTLP endpoint {s:?}: https is not supported yet (no TLS in the exporter); \
             use an http:// endpoint, e.g. a local collector"
        ));
    }
    if !lower.starts_with("http://") {
        return Err(format!(
            "OTLP endpoint {s:?}: must start with http:// (e.g. http://127.0.0.1:4318/v1/traces)"
        ));
    }
    let rest = &s["http://".len()..];
    if let Some(c) = rest.chars().find(|c| !c.is_ascii_graphic()) {
        return Err(format!(
            "OTLP endpoint {s:?}: character {c:?} is not allowed"
        ));
    }
    if rest.contains('#') {
        return Err(format!(
            "OTLP endpoint {s:?}: fragments (#) are not allowed"
        ));
    }
    let split = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(split);
    if authority.contains('@') {
        return Err(format!(
            "OTLP endpoint {s:?}: user info (user@host) is not supported"
        ));
    }
    let (host, port) =
        split_host_port(authority).map_err(|e| format!("OTLP endpoint {s:?}: {e}"))?;
    let path = match path {
        "" | "/" => DEFAULT_PATH.to_string(),
        p if p.starts_with('/') => p.to_string(),
        _ => return Err(format!("OTLP endpoint {s:?}: path must start with /")),
    };
    Ok(Endpoint { host, port, path })
}

fn split_host_port(authority: &str) -> Result<(String, u16), String> {
    if authority.is_empty() {
        return Err("missing host".into());
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let end = v6.find(']').ok_or("unterminated [IPv6] host")?;
        let addr: Ipv6Addr = v6[..end]
            .parse()
            .map_err(|_| format!("invalid IPv6 address {:?}", &v6[..end]))?;
        let after = &v6[end + 1..];
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or("unexpected text after ]")?),
        };
        (addr.to_string(), port)
    } else {
        let (h, p) = match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        };
        if h.is_empty() {
            return Err("missing host".into());
        }
        if h.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
            let ip: Ipv4Addr = h
                .parse()
                .map_err(|_| format!("invalid IPv4 address {h:?}"))?;
            (ip.to_string(), p)
        } else {
            check_hostname(h)?;
            (h.to_ascii_lowercase(), p)
        }
    };
    let port = match port {
        None => 80,
        Some(p) => parse_port(p)?,
    };
    Ok((host, port))
}

fn parse_port(p: &str) -> Result<u16, String> {
    if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("invalid port {p:?}"));
    }
    match p.parse::<u32>() {
        Ok(n @ 1..=65535) => Ok(n as u16),
        _ => Err(format!("port {p:?} out of range 1-65535")),
    }
}

fn check_hostname(h: &str) -> Result<(), String> {
    let ok = h.len() <= 253
        && h.trim_end_matches('.').split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if ok {
        Ok(())
    } else {
        Err(format!("invalid host name {h:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        let e = parse_endpoint("http://127.0.0.1:4318/v1/traces").unwrap();
        assert_eq!(
            (e.host.as_str(), e.port, e.path.as_str()),
            ("127.0.0.1", 4318, "/v1/traces")
        );
        let e = parse_endpoint("http://[::1]:4318").unwrap();
        assert_eq!(
            (e.host.as_str(), e.port, e.path.as_str()),
            ("::1", 4318, DEFAULT_PATH)
        );
        assert_eq!(e.host_header(), "[::1]:4318");
        assert_eq!(e.to_string(), "http://[::1]:4318/v1/traces");
        let e = parse_endpoint(" HTTP://Collector.local/ ").unwrap();
        assert_eq!(
            (e.host.as_str(), e.port, e.path.as_str()),
            ("collector.local", 80, DEFAULT_PATH)
        );
        let e = parse_endpoint("http://otel-collector:4318/custom?x=1").unwrap();
        assert_eq!(e.path, "/custom?x=1");
    }

    #[test]
    fn bad_endpoints() {
        let err = parse_endpoint("https://collector:4318").unwrap_err();
        assert!(err.contains("https is not supported yet"), "{err}");
        for bad in [
            "collector:4318",
            "grpc://collector:4317",
            "http://",
            "http://:4318",
            "http://host:",
            "http://host:0",
            "http://host:65536",
            "http://host:+80",
            "http://host:80:90",
            "http://[::1",
            "http://[zz::1]:80",
            "http://1.2.3:80",
            "http://user@host:80",
            "http://ho st:80",
            "http://-host:80",
            "http://host:80/a#frag",
            "http://host?x",
        ] {
            assert!(parse_endpoint(bad).is_err(), "{bad} should be rejected");
        }
    }
}

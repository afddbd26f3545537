//! The resolved addresses of every upstream host name, shared by config compiles and the
//! refresh thread: each entry expires after its answer's TTL (clamped to `min_ttl..=max_ttl`),
//! and a failed lookup keeps the entry's last good addresses (logged once per failure spell)
//! and is retried after `min_ttl`.
//!
//! The lock guards the map only: lookups run with it released, so a slow name server never
//! holds up a compile waiting on another name.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::query::{lookup, Family, MAX_ADDRS};
use super::sources::{hosts_lookup, resolv_conf_servers};

/// Which address families become targets (`[dns] family`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Families {
    /// Every A and AAAA record.
    #[default]
    Any,
    Ipv4,
    Ipv6,
}

impl Families {
    fn keeps(self, ip: &IpAddr) -> bool {
        match self {
            Families::Any => true,
            Families::Ipv4 => ip.is_ipv4(),
            Families::Ipv6 => ip.is_ipv6(),
        }
    }
}

/// How names are resolved (`[dns]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsSettings {
    /// Which records become targets (a host whose `localhost` also means `::1` but whose
    /// backends listen on IPv4 only sets `ipv4`).
    pub family: Families,
    /// Name servers asked in order; empty = the `nameserver` lines of `resolv_conf`.
    pub servers: Vec<SocketAddr>,
    pub resolv_conf: PathBuf,
    /// Consulted before any server (`files dns`), re-read on every lookup.
    pub hosts_file: PathBuf,
    /// Bounds on how long an answer is used before asking again.
    pub min_ttl: Duration,
    pub max_ttl: Duration,
    /// Per question to one server.
    pub timeout: Duration,
}

impl Default for DnsSettings {
    fn default() -> DnsSettings {
        DnsSettings {
            family: Families::Any,
            servers: Vec::new(),
            resolv_conf: PathBuf::from("/etc/resolv.conf"),
            hosts_file: PathBuf::from("/etc/hosts"),
            min_ttl: Duration::from_secs(5),
            max_ttl: Duration::from_secs(300),
            timeout: Duration::from_secs(2),
        }
    }
}

struct Entry {
    /// Sorted, so a server rotating its answer order is not a change.
    addrs: Vec<IpAddr>,
    expires: Instant,
    /// The latest lookup failed (the failure was logged; the recovery will be).
    failing: bool,
}

/// Host name → addresses, kept across reloads (in `config::Runtime`).
#[derive(Default)]
pub struct DnsCache {
    entries: Mutex<HashMap<String, Entry>>,
}

impl DnsCache {
    /// `host`'s addresses for a compile: the cached ones while fresh, else a lookup now; when
    /// that fails, the last good addresses if there ever were any (so a reload never fails
    /// for a name that once resolved), else the error.
    pub fn resolve(&self, host: &str, s: &DnsSettings) -> Result<Vec<IpAddr>, String> {
        let now = Instant::now();
        if let Some(e) = self.lock().get(host) {
            if e.expires > now {
                return Ok(e.addrs.clone());
            }
        }
        let outcome = self.refresh_one(host, s, now);
        match (self.lock().get(host), outcome) {
            (Some(e), _) if !e.addrs.is_empty() => Ok(e.addrs.clone()),
            (_, Err(why)) => Err(why),
            (_, Ok(_)) => Err(format!("{host} has no address")),
        }
    }

    /// Looks up again every name whose answer expired; true if any name's addresses changed.
    pub fn refresh_expired(&self, s: &DnsSettings) -> bool {
        let now = Instant::now();
        let due: Vec<String> = self
            .lock()
            .iter()
            .filter(|(_, e)| e.expires <= now)
            .map(|(h, _)| h.clone())
            .collect();
        let mut changed = false;
        for host in due {
            changed |= self.refresh_one(&host, s, now).unwrap_or(false);
        }
        changed
    }

    /// When the next answer expires (the refresh thread sleeps until then).
    pub fn next_due(&self) -> Option<Instant> {
        self.lock().values().map(|e| e.expires).min()
    }

    /// Forgets names the serving config no longer uses.
    pub fn retain(&self, used: &[&str]) {
        self.lock().retain(|h, _| used.contains(&h.as_str()));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One lookup of `host`, stored: whether its addresses changed, or why the lookup failed
    /// (the last good addresses, if any, then stay for another `min_ttl`).
    fn refresh_one(&self, host: &str, s: &DnsSettings, now: Instant) -> Result<bool, String> {
        let result = fresh_lookup(host, s);
        let mut map = self.lock();
        let prev = map.get(host);
        match result {
            Ok((addrs, ttl)) => {
                let changed = prev.is_some_and(|p| p.addrs != addrs);
                if let Some(p) = prev.filter(|p| p.failing) {
                    crate::log::info(&format!("dns: {host} resolves again: {:?}", p.addrs));
                }
                if changed {
                    crate::log::info(&format!(
                        "dns: {host} now resolves to {addrs:?} (was {:?})",
                        prev.map(|p| p.addrs.clone()).unwrap_or_default()
                    ));
                }
                let expires = now + ttl.clamp(s.min_ttl, s.max_ttl.max(s.min_ttl));
                map.insert(
                    host.to_string(),
                    Entry {
                        addrs,
                        expires,
                        failing: false,
                    },
                );
                Ok(changed)
            }
            Err(why) => {
                let last = prev.map(|p| p.addrs.clone()).unwrap_or_default();
                if prev.is_none_or(|p| !p.failing) && !last.is_empty() {
                    crate::log::warn(&format!(
                        "dns: lookup of {host} failed ({why}); keeping the last good addresses {last:?}"
                    ));
                }
                if !last.is_empty() {
                    map.insert(
                        host.to_string(),
                        Entry {
                            addrs: last,
                            expires: now + s.min_ttl,
                            failing: true,
                        },
                    );
                }
                Err(why)
            }
        }
    }
}

/// Every A and AAAA address of `host` with the answer's TTL: the hosts file first, then the
/// name servers in order (a server that fails either question hands over to the next), and the
/// system resolver only when no name server is known at all.
fn fresh_lookup(host: &str, s: &DnsSettings) -> Result<(Vec<IpAddr>, Duration), String> {
    let mut from_hosts = hosts_lookup(&s.hosts_file, host);
    from_hosts.retain(|ip| s.family.keeps(ip));
    if !from_hosts.is_empty() {
        from_hosts.sort();
        from_hosts.truncate(MAX_ADDRS);
        return Ok((from_hosts, s.min_ttl));
    }
    let servers = if s.servers.is_empty() {
        resolv_conf_servers(&s.resolv_conf)
    } else {
        s.servers.clone()
    };
    if servers.is_empty() {
        return system_lookup(host, s.family);
    }
    let mut last_err = String::new();
    let mut partial = None;
    for server in servers {
        match both_families(server, host, s) {
            Ok((found, true)) => return Ok(found),
            Ok((found, false)) => {
                partial.get_or_insert(found);
            }
            Err(e) => last_err = e,
        }
    }
    partial.ok_or(last_err)
}

/// `host`'s addresses from one server, and whether it answered every question asked. A server
/// that fails one family but gives addresses for the other (drops or refuses AAAA queries, as
/// some middleboxes do) still yields those: the caller prefers a server that answered both,
/// and takes this one's otherwise, as the C library's resolver does.
fn both_families(
    server: SocketAddr,
    host: &str,
    s: &DnsSettings,
) -> Result<((Vec<IpAddr>, Duration), bool), String> {
    let empty = || super::query::Answer {
        addrs: Vec::new(),
        ttl: 0,
    };
    let ask = |f: Family, wanted: bool| match wanted {
        true => lookup(server, host, f, s.timeout),
        false => Ok(empty()),
    };
    let (v4, v6) = match (
        ask(Family::V4, s.family != Families::Ipv6),
        ask(Family::V6, s.family != Families::Ipv4),
    ) {
        (Ok(v4), Ok(v6)) => (v4, v6),
        (Err(e), Err(_)) => return Err(e),
        (Ok(a), Err(e)) | (Err(e), Ok(a)) if a.addrs.is_empty() => return Err(e),
        (Ok(v4), Err(_)) => return usable(server, host, v4, empty()).map(|f| (f, false)),
        (Err(_), Ok(v6)) => return usable(server, host, empty(), v6).map(|f| (f, false)),
    };
    usable(server, host, v4, v6).map(|f| (f, true))
}

/// The addresses of both answers a connection can go to, sorted, with the shorter TTL. An
/// unspecified (`0.0.0.0`, `::`), multicast or broadcast address names no upstream (a
/// connect to `0.0.0.0` reaches this host's own services), so an answer holding one is
/// taken without it.
fn usable(
    server: SocketAddr,
    host: &str,
    v4: super::query::Answer,
    v6: super::query::Answer,
) -> Result<(Vec<IpAddr>, Duration), String> {
    let ttl = [&v4, &v6]
        .iter()
        .filter(|a| !a.addrs.is_empty())
        .map(|a| a.ttl)
        .min()
        .unwrap_or(0);
    let mut addrs: Vec<IpAddr> = v4
        .addrs
        .into_iter()
        .chain(v6.addrs)
        .filter(|ip| !unroutable(ip))
        .collect();
    if addrs.is_empty() {
        return Err(format!(
            "{server} has no usable A or AAAA record for {host}"
        ));
    }
    addrs.sort();
    addrs.truncate(MAX_ADDRS);
    Ok((addrs, Duration::from_secs(u64::from(ttl))))
}

/// An address no upstream can have: unspecified, multicast or the IPv4 broadcast address.
fn unroutable(ip: &IpAddr) -> bool {
    ip.is_unspecified() || ip.is_multicast() || matches!(ip, IpAddr::V4(v4) if v4.is_broadcast())
}

/// The C library's resolver (no TTL: the answer is kept for 30 s).
fn system_lookup(host: &str, family: Families) -> Result<(Vec<IpAddr>, Duration), String> {
    let found = (host, 0u16)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host}: {e}"))?;
    let mut addrs: Vec<IpAddr> = found
        .map(|a| a.ip())
        .filter(|ip| family.keeps(ip) && !unroutable(ip))
        .collect();
    addrs.sort();
    addrs.dedup();
    addrs.truncate(MAX_ADDRS);
    if addrs.is_empty() {
        return Err(format!("{host} has no address"));
    }
    Ok((addrs, Duration::from_secs(30)))
}

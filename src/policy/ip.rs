//! IP addresses: CIDR blocks, allow/deny filters, and the client address behind trusted proxies.
//!
//! Every address and block lives in one 128-bit space: IPv4 `a.b.c.d` is the IPv4-mapped IPv6
//! address `::ffff:a.b.c.d` and a v4 `/n` is `/96+n`. So IPv4-mapped peers from dual-stack
//! sockets match v4 blocks, `10.0.0.0/8` and `::ffff:10.0.0.0/104` are the same block, and
//! `::/0` covers IPv4 too. Blocks with host bits set (`10.0.0.1/8`) are rejected, not masked.
//! Nothing on the request path (`contains`, `permits`, `client_ip`) allocates or panics.

use crate::http1::trim_ows;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use serde::Deserialize;
use toml::Spanned;

use crate::config::errors::Fail;

const V4_MAPPED: u128 = 0xffff << 32;

fn to_bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => V4_MAPPED | u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

fn mask(len: u8) -> u128 {
    match len {
        0 => 0,
        l => u128::MAX << (128 - u32::from(l.min(128))),
    }
}

/// An IPv4 or IPv6 block: `10.0.0.0/8`, `2001:db8::/32`; a bare address is `/32` or `/128`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    /// Network address in the mapped 128-bit space, host bits zero.
    net: u128,
    /// Prefix length in the 128-bit space (v4 `/n` is stored as `96 + n`).
    len: u8,
}

impl Cidr {
    /// True if `ip` lies in this block (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        (to_bits(ip) ^ self.net) & mask(self.len) == 0
    }

    fn is_v4(&self) -> bool {
        self.len >= 96 && self.net & mask(96) == V4_MAPPED
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Cidr, String> {
        let (addr, len) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let ip: IpAddr = addr
            .parse()
            .map_err(|_| format!("{s:?} is not an IP address or CIDR block"))?;
        let max: u8 = if ip.is_ipv4() { 32 } else { 128 };
        let len = match len {
            None => max,
            Some(l) if !l.is_empty() && l.len() <= 3 && l.bytes().all(|b| b.is_ascii_digit()) => {
                match l.parse::<u8>() {
                    Ok(n) if n <= max => n,
                    _ => return Err(format!("{s:?}: prefix length must be 0..={max}")),
                }
            }
            Some(_) => return Err(format!("{s:?}: prefix length must be a number 0..={max}")),
        };
        let len = if ip.is_ipv4() { len + 96 } else { len };
        let net = to_bits(ip);
        let cidr = Cidr {
            net: net & mask(len),
            len,
        };
        if cidr.net != net {
            return Err(format!("{s:?} has host bits set; did you mean \"{cidr}\"?"));
        }
        Ok(cidr)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_v4() {
            // Truncation keeps exactly the low 32 bits, the IPv4 address.
            write!(f, "{}/{}", Ipv4Addr::from(self.net as u32), self.len - 96)
        } else {
            write!(f, "{}/{}", Ipv6Addr::from(self.net), self.len)
        }
    }
}

/// A set of CIDR blocks: one sorted network list per distinct prefix length, so a lookup is
/// one binary search per length present (a handful in practice, at most 129).
#[derive(Clone, Debug, Default)]
pub struct CidrSet {
    buckets: Box<[(u8, Box<[u128]>)]>,
}

impl CidrSet {
    /// True if any block contains `ip`.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let bits = to_bits(ip);
        self.buckets
            .iter()
            .any(|(len, nets)| nets.binary_search(&(bits & mask(*len))).is_ok())
    }

    /// True if the set has no blocks.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

impl FromIterator<Cidr> for CidrSet {
    fn from_iter<I: IntoIterator<Item = Cidr>>(iter: I) -> CidrSet {
        let mut all: Vec<(u8, u128)> = iter.into_iter().map(|c| (c.len, c.net)).collect();
        all.sort_unstable();
        all.dedup();
        let mut buckets: Vec<(u8, Vec<u128>)> = Vec::new();
        for (len, net) in all {
            match buckets.last_mut() {
                Some((l, nets)) if *l == len => nets.push(net),
                _ => buckets.push((len, vec![net])),
            }
        }
        CidrSet {
            buckets: buckets
                .into_iter()
                .map(|(l, n)| (l, n.into_boxed_slice()))
                .collect(),
        }
    }
}

/// Parses a config list of CIDR blocks; each bad entry is reported as `field[i]`.
pub fn compile_cidrs(list: &[Spanned<String>], field: &str, err: &mut Fail<'_>) -> Option<CidrSet> {
    let mut failed = false;
    let mut cidrs = Vec::with_capacity(list.len());
    for (i, entry) in list.iter().enumerate() {
        match entry.get_ref().trim().parse::<Cidr>() {
            Ok(c) => cidrs.push(c),
            Err(m) => {
                failed = true;
                err(entry.span(), &format!("{field}[{i}]"), m);
            }
        }
    }
    (!failed).then(|| cidrs.into_iter().collect())
}

/// `ip = { allow = [...], deny = [...] }` inside a named policy table.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawIpFilter {
    /// If present, only these blocks are admitted (must not be empty).
    #[schemars(with = "Option<Vec<String>>")]
    pub allow: Option<Spanned<Vec<Spanned<String>>>>,
    /// Always refused, even if also allowed.
    #[schemars(with = "Option<Vec<String>>")]
    pub deny: Option<Spanned<Vec<Spanned<String>>>>,
}

/// A compiled allow/deny filter.
#[derive(Clone, Debug)]
pub struct IpFilter {
    allow: Option<CidrSet>,
    deny: CidrSet,
}

/// Validates `raw` into an `IpFilter`; reports problems through `err` (span, field suffix such
/// as `allow[2]`, message) and returns `None` if there was any. An empty `allow` list is an
/// error (it would refuse everyone); neither list means everyone is permitted.
pub fn compile(raw: &RawIpFilter, err: &mut Fail<'_>) -> Option<IpFilter> {
    let mut failed = false;
    let allow = match &raw.allow {
        None => None,
        Some(list) if list.get_ref().is_empty() => {
            err(
                list.span(),
                "allow",
                "an empty allow list refuses every client; list addresses or drop it".into(),
            );
            failed = true;
            None
        }
        Some(list) => {
            let set = compile_cidrs(list.get_ref(), "allow", err);
            failed |= set.is_none();
            set
        }
    };
    let deny = match &raw.deny {
        None => Some(CidrSet::default()),
        Some(list) => compile_cidrs(list.get_ref(), "deny", err),
    };
    match deny {
        Some(deny) if !failed => Some(IpFilter { allow, deny }),
        _ => None,
    }
}

impl IpFilter {
    /// Deny wins over allow; with an allow list, anything not in it is denied.
    pub fn permits(&self, ip: IpAddr) -> bool {
        !self.deny.contains(ip) && self.allow.as_ref().is_none_or(|a| a.contains(ip))
    }
}

/// The client IP. Walks `X-Forwarded-For` from the right (`xff` yields every occurrence of the
/// header in order; each is comma-separated), starting from the socket `peer`, and only if the
/// peer itself is `trusted`: trusted addresses are skipped and the first untrusted one is the
/// client. A malformed entry stops the walk at the hop right of it (the last trusted hop's
/// view: the address to its right, or the peer). If every entry is trusted the leftmost is the
/// client. Empty list elements are ignored; entries may be `ip`, `v4:port`, `[v6]` or
/// `[v6]:port`. The result is canonical (IPv4-mapped IPv6 becomes IPv4).
pub fn client_ip(peer: IpAddr, xff: &mut dyn Iterator<Item = &[u8]>, trusted: &CidrSet) -> IpAddr {
    let peer = peer.to_canonical();
    if !trusted.contains(peer) {
        return peer;
    }
    // One forward pass finds what a right-to-left walk would: the rightmost entry that stops
    // the walk (untrusted or malformed) and the trusted entry just right of it.
    enum Stop {
        Untrusted(IpAddr),
        Malformed { right: Option<IpAddr> },
    }
    let mut stop: Option<Stop> = None;
    let mut leftmost: Option<IpAddr> = None;
    for value in xff {
        for entry in value.split(|&b| b == b',') {
            let entry = trim_ows(entry);
            if entry.is_empty() {
                continue;
            }
            match parse_entry(entry).map(|ip| ip.to_canonical()) {
                None => stop = Some(Stop::Malformed { right: None }),
                Some(ip) if !trusted.contains(ip) => stop = Some(Stop::Untrusted(ip)),
                Some(ip) => match &mut stop {
                    None => {
                        leftmost.get_or_insert(ip);
                    }
                    Some(Stop::Malformed { right }) => {
                        right.get_or_insert(ip);
                    }
                    Some(Stop::Untrusted(_)) => {}
                },
            }
        }
    }
    match stop {
        Some(Stop::Untrusted(ip)) => ip,
        Some(Stop::Malformed { right }) => right.unwrap_or(peer),
        None => leftmost.unwrap_or(peer),
    }
}

/// One `X-Forwarded-For` element: `ip`, `v4:port`, `[v6]` or `[v6]:port`.
fn parse_entry(e: &[u8]) -> Option<IpAddr> {
    let s = std::str::from_utf8(e).ok()?;
    let is_port = |p: &str| {
        !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && p.parse::<u16>().is_ok()
    };
    if let Some(rest) = s.strip_prefix('[') {
        let (v6, after) = rest.split_once(']')?;
        if !(after.is_empty() || after.strip_prefix(':').is_some_and(is_port)) {
            return None;
        }
        return v6.parse::<Ipv6Addr>().ok().map(IpAddr::V6);
    }
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip);
    }
    let (v4, port) = s.split_once(':')?;
    if !is_port(port) {
        return None;
    }
    v4.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or_else(|_| panic!("bad test ip {s}"))
    }

    fn cidr(s: &str) -> Cidr {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn set(list: &[&str]) -> CidrSet {
        list.iter().map(|s| cidr(s)).collect()
    }

    #[test]
    fn cidr_parsing() {
        for ok in [
            "10.0.0.0/8",
            "0.0.0.0/0",
            "1.2.3.4",
            "1.2.3.4/32",
            "::1/128",
            "::1",
            "::/0",
            "2001:db8::/32",
            "::ffff:10.0.0.0/104",
        ] {
            assert!(ok.parse::<Cidr>().is_ok(), "{ok}");
        }
        for bad in [
            "10.0.0.0/33",
            "1.2.3",
            "::1/129",
            "10.0.0.1/8",
            "10.0.0.0/",
            "10.0.0.0/+8",
            "10.0.0.0/-1",
            "10.0.0.0/0008",
            "10.0.0.0/8/8",
            "",
            "/8",
            "1.2.3.4.5",
            "01.2.3.4",
            "fe80::1%eth0",
            "example.com",
            "256.0.0.0/8",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
        let e = "10.0.0.1/8".parse::<Cidr>().unwrap_err();
        assert!(e.contains("\"10.0.0.0/8\""), "{e}");
        assert_eq!(cidr("1.2.3.4").to_string(), "1.2.3.4/32");
        assert_eq!(cidr("2001:db8::/32").to_string(), "2001:db8::/32");
        assert_eq!(cidr("::ffff:10.0.0.0/104"), cidr("10.0.0.0/8"));
        assert_eq!(cidr("::ffff:10.0.0.0/104").to_string(), "10.0.0.0/8");
    }

    #[test]
    fn contains_at_boundaries() {
        let c = cidr("10.1.0.0/16");
        assert!(c.contains(ip("10.1.0.0")));
        assert!(c.contains(ip("10.1.255.255")));
        assert!(!c.contains(ip("10.0.255.255")));
        assert!(!c.contains(ip("10.2.0.0")));
        assert!(!c.contains(ip("::a01:0")), "v4-compatible is not v4-mapped");
        let c = cidr("2001:db8::/127");
        assert!(c.contains(ip("2001:db8::")));
        assert!(c.contains(ip("2001:db8::1")));
        assert!(!c.contains(ip("2001:db8::2")));
        assert!(!c.contains(ip("2001:db7:ffff:ffff:ffff:ffff:ffff:ffff")));
        assert!(cidr("0.0.0.0/0").contains(ip("255.255.255.255")));
        assert!(!cidr("0.0.0.0/0").contains(ip("::1")));
        assert!(cidr("::/0").contains(ip("::1")));
        assert!(cidr("1.2.3.4").contains(ip("1.2.3.4")));
        assert!(!cidr("1.2.3.4").contains(ip("1.2.3.5")));
    }

    #[test]
    fn v4_mapped_v6() {
        let c = cidr("192.168.0.0/16");
        assert!(c.contains(ip("::ffff:192.168.1.1")));
        assert!(!c.contains(ip("::ffff:192.169.1.1")));
        let s = set(&["192.168.0.0/16"]);
        assert!(s.contains(ip("::ffff:192.168.1.1")));
        assert!(cidr("::ffff:0.0.0.0/96").contains(ip("8.8.8.8")));
    }

    #[test]
    fn set_with_many_entries() {
        let mut list: Vec<String> = (0..=255).map(|i| format!("10.{i}.0.0/16")).collect();
        list.push("172.16.0.0/12".into());
        list.push("2001:db8::/48".into());
        list.push("203.0.113.7".into());
        list.push("10.0.0.0/16".into()); // duplicate
        let s: CidrSet = list.iter().map(|c| cidr(c)).collect();
        assert!(s.contains(ip("10.200.3.4")));
        assert!(s.contains(ip("172.31.255.255")));
        assert!(!s.contains(ip("172.32.0.0")));
        assert!(s.contains(ip("2001:db8:0:ffff::1")));
        assert!(!s.contains(ip("2001:db8:1::1")));
        assert!(s.contains(ip("203.0.113.7")));
        assert!(!s.contains(ip("203.0.113.8")));
        assert!(!s.contains(ip("11.0.0.0")));
        assert!(!CidrSet::default().contains(ip("1.1.1.1")));
        // Same answers as a linear scan over random addresses.
        let cidrs: Vec<Cidr> = list.iter().map(|c| cidr(c)).collect();
        let mut x: u64 = 0x9e3779b97f4a7c15;
        for _ in 0..5000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let a = IpAddr::V4(Ipv4Addr::from(((x as u32) & 0x00ff_ffff) | 0x0a00_0000));
            let b = IpAddr::V4(Ipv4Addr::from(x as u32));
            for addr in [a, b] {
                assert_eq!(
                    s.contains(addr),
                    cidrs.iter().any(|c| c.contains(addr)),
                    "{addr}"
                );
            }
        }
    }

    fn filter(src: &str) -> Result<IpFilter, Vec<String>> {
        let raw: RawIpFilter = toml::from_str(src).expect("test toml parses");
        let mut errs = Vec::new();
        compile(&raw, &mut |_, f, _| errs.push(f.to_owned())).ok_or(errs)
    }

    #[test]
    fn allow_deny_precedence() {
        let f = filter("allow = [\"10.0.0.0/8\"]\ndeny = [\"10.0.0.5\"]\n").expect("compiles");
        assert!(f.permits(ip("10.1.2.3")));
        assert!(!f.permits(ip("10.0.0.5")));
        assert!(!f.permits(ip("::ffff:10.0.0.5")));
        assert!(!f.permits(ip("11.0.0.1")));
        let f = filter("deny = [\"10.0.0.0/8\", \"::1\"]\n").expect("compiles");
        assert!(!f.permits(ip("10.9.9.9")));
        assert!(!f.permits(ip("::1")));
        assert!(f.permits(ip("11.0.0.1")));
        let f = filter("").expect("compiles");
        assert!(f.permits(ip("1.2.3.4")));
        // Deny beats an overlapping allow regardless of prefix length.
        let f = filter("allow = [\"10.0.0.5\"]\ndeny = [\"10.0.0.0/8\"]\n").expect("compiles");
        assert!(!f.permits(ip("10.0.0.5")));
    }

    #[test]
    fn filter_compile_errors() {
        assert_eq!(
            filter("allow = [\"10.0.0.0/8\", \"10.0.0.0/33\"]\ndeny = [\"x\"]\n").err(),
            Some(vec!["allow[1]".to_owned(), "deny[0]".to_owned()])
        );
        assert_eq!(filter("allow = []\n").err(), Some(vec!["allow".to_owned()]));
        assert!(toml::from_str::<RawIpFilter>("allowed = []\n").is_err());
    }

    fn walk(peer: &str, xff: &[&str], trusted: &CidrSet) -> IpAddr {
        client_ip(ip(peer), &mut xff.iter().map(|s| s.as_bytes()), trusted)
    }

    #[test]
    fn client_ip_walk() {
        let none = CidrSet::default();
        let lb = set(&["10.0.0.0/8"]);
        let two = set(&["10.0.0.0/8", "192.168.1.1"]);
        // No trusted proxies: the peer, whatever the header says.
        assert_eq!(walk("203.0.113.9", &["1.1.1.1"], &none), ip("203.0.113.9"));
        // Spoofed XFF from an untrusted peer is ignored.
        assert_eq!(walk("203.0.113.9", &["1.1.1.1"], &lb), ip("203.0.113.9"));
        // One trusted hop.
        assert_eq!(walk("10.0.0.2", &["6.6.6.6, 1.1.1.1"], &lb), ip("1.1.1.1"));
        assert_eq!(walk("10.0.0.2", &[], &lb), ip("10.0.0.2"));
        // Two trusted hops, across header occurrences; the spoofed left part is ignored.
        assert_eq!(
            walk("10.0.0.2", &["6.6.6.6, 1.1.1.1", "192.168.1.1"], &two),
            ip("1.1.1.1")
        );
        assert_eq!(
            walk("10.0.0.2", &["6.6.6.6,1.1.1.1,192.168.1.1"], &two),
            ip("1.1.1.1")
        );
        // With only one hop trusted, the second proxy is the client.
        assert_eq!(
            walk("10.0.0.2", &["6.6.6.6, 1.1.1.1", "192.168.1.1"], &lb),
            ip("192.168.1.1")
        );
        // Every entry trusted: the leftmost.
        assert_eq!(
            walk("10.0.0.2", &["10.0.0.9, 10.0.0.8"], &lb),
            ip("10.0.0.9")
        );
        // Ports, brackets, empty elements, mapped addresses.
        assert_eq!(walk("10.0.0.2", &["1.1.1.1:5000"], &lb), ip("1.1.1.1"));
        assert_eq!(
            walk("10.0.0.2", &["[2001:db8::1]:443"], &lb),
            ip("2001:db8::1")
        );
        assert_eq!(walk("10.0.0.2", &["[2001:db8::1]"], &lb), ip("2001:db8::1"));
        assert_eq!(
            walk("10.0.0.2", &["2001:db8::1, , 10.0.0.7,"], &lb),
            ip("2001:db8::1")
        );
        assert_eq!(
            walk("::ffff:10.0.0.2", &["::ffff:1.1.1.1"], &lb),
            ip("1.1.1.1")
        );
        assert_eq!(walk("::ffff:203.0.113.9", &[], &none), ip("203.0.113.9"));
    }

    #[test]
    fn client_ip_malformed_entries() {
        let lb = set(&["10.0.0.0/8"]);
        // Malformed right after the peer: the peer's view.
        assert_eq!(walk("10.0.0.2", &["1.1.1.1, unknown"], &lb), ip("10.0.0.2"));
        // Malformed further left: the trusted hop right of it.
        assert_eq!(
            walk("10.0.0.2", &["garbage, 10.0.0.7"], &lb),
            ip("10.0.0.7")
        );
        assert_eq!(
            walk("10.0.0.2", &["1.1.1.1, x, 10.0.0.7, 10.0.0.8"], &lb),
            ip("10.0.0.7")
        );
        // An untrusted entry right of a malformed one is the client (the walk stops earlier).
        assert_eq!(walk("10.0.0.2", &["junk, 1.1.1.1"], &lb), ip("1.1.1.1"));
        for bad in [
            "1.2.3",
            "1.1.1.1:",
            "1.1.1.1:99999x",
            "1.1.1.1:65536",
            "1.1.1.1:+80",
            "[2001:db8::1",
            "[2001:db8::1]x",
            "2001:db8::1:",
            "\u{ff}",
            "1.1.1.1 2.2.2.2",
        ] {
            assert_eq!(walk("10.0.0.2", &[bad], &lb), ip("10.0.0.2"), "{bad:?}");
        }
        // Invalid UTF-8 and control bytes never panic.
        let raw: [&[u8]; 3] = [b"\xff\xfe", b"1.1.1.1\r\n", b"\0"];
        for r in raw {
            assert_eq!(
                client_ip(ip("10.0.0.2"), &mut std::iter::once(r), &lb),
                ip("10.0.0.2")
            );
        }
    }
}

//! Where names are looked up besides DNS servers: the hosts file (consulted first, as the C
//! library's default `files dns` order does) and the name servers listed in `resolv.conf`.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;

/// The addresses `name` has in a hosts file (`ADDRESS NAME [ALIASES…]` lines, `#` comments),
/// in file order without duplicates. A missing or unreadable file has no entries.
pub fn hosts_lookup(path: &Path, name: &str) -> Vec<IpAddr> {
    let Ok(text) =
        crate::bounded_file::read_fresh_to_string(path, crate::bounded_file::MAX_SMALL_BYTES)
    else {
        return Vec::new();
    };
    hosts_parse(&text, name)
}

fn hosts_parse(text: &str, name: &str) -> Vec<IpAddr> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("");
        let mut fields = line.split_whitespace();
        let Some(Ok(ip)) = fields.next().map(str::parse::<IpAddr>) else {
            continue;
        };
        if fields.any(|n| n.eq_ignore_ascii_case(name)) && !out.contains(&ip) {
            out.push(ip);
        }
    }
    out
}

/// The `nameserver` addresses of a resolv.conf (port 53), in order. Unreadable: none.
pub fn resolv_conf_servers(path: &Path) -> Vec<SocketAddr> {
    let Ok(text) =
        crate::bounded_file::read_fresh_to_string(path, crate::bounded_file::MAX_SMALL_BYTES)
    else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            (f.next() == Some("nameserver")).then_some(())?;
            // A scoped IPv6 address (`fe80::1%eth0`) is not usable as is: skipped.
            let ip: IpAddr = f.next()?.parse().ok()?;
            Some(SocketAddr::new(ip, 53))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_file_lines_aliases_and_comments() {
        let text = "127.0.0.1 localhost\n# 10.0.0.1 api\n10.0.0.2 api.internal api # x\n\
                    ::1 api\nnot-an-ip api\n10.0.0.2 api\n";
        let got = hosts_parse(text, "API");
        assert_eq!(
            got,
            vec![
                "10.0.0.2".parse::<IpAddr>().unwrap(),
                "::1".parse().unwrap()
            ]
        );
        assert!(hosts_parse(text, "nothing").is_empty());
    }
}

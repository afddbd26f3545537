//! Who sent a request, decided once per request and used everywhere: IP filters, rate-limit
//! keys and `${client_ip}` (policies), the forwarding headers sent upstream, the access log and
//! spans. So the upstream, the policies and the log always agree on the client.
//!
//! Trust model: a socket peer inside `server.trusted_proxies` is a proxy whose forwarding
//! headers are believed; the client is found by walking its `X-Forwarded-For` chain
//! (`policy::ip::client_ip`). Any other peer is the client itself, and whatever forwarding
//! headers it sent are discarded (`upstream_head` writes only ours). Without
//! `trusted_proxies` every peer is untrusted and the decision is the peer address, with no
//! header scan and no allocation.

use std::net::{IpAddr, Ipv4Addr};

use crate::http1::RequestHead;
use crate::policy::ip::{client_ip, CidrSet};

/// The scheme the client used to reach the gateway: a fact of the listener the connection
/// came in on (plain TCP today; a TLS listener's connections are `Https`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Scheme {
    #[default]
    Http,
    Https,
}

impl Scheme {
    /// The value written into `X-Forwarded-Proto` and `Forwarded: proto=`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// The gateway's decision about one request's origin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Origin {
    /// The socket peer (IPv4-mapped IPv6 shown as IPv4).
    pub peer: IpAddr,
    /// The peer is in `server.trusted_proxies`: its forwarding headers are kept and appended
    /// to; otherwise they are replaced.
    pub trusted_peer: bool,
    /// The client address: the peer, or, behind trusted proxies, the address their
    /// `X-Forwarded-For` chain names.
    pub client: IpAddr,
    /// How the connection reached this gateway (the listener's scheme: this hop).
    pub scheme: Scheme,
    /// How the client reached the first proxy: behind a trusted proxy, the last
    /// `X-Forwarded-Proto` value when it is `http` or `https` (the one the trusted peer set or
    /// kept); otherwise `scheme`. Used where the browser's own origin matters (the portal's
    /// same-origin check and its cookie's `Secure` flag).
    pub client_scheme: Scheme,
}

impl Default for Origin {
    fn default() -> Origin {
        let none = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
        Origin {
            peer: none,
            trusted_peer: false,
            client: none,
            scheme: Scheme::Http,
            client_scheme: Scheme::Http,
        }
    }
}

impl Origin {
    /// Decides the origin of the request in `head`, received from `peer` over `scheme`.
    pub fn decide(
        peer: IpAddr,
        scheme: Scheme,
        head: &RequestHead,
        trusted: Option<&CidrSet>,
    ) -> Origin {
        let peer = peer.to_canonical();
        let (trusted_peer, client) = match trusted {
            Some(t) if t.contains(peer) => {
                let mut xff = head
                    .headers()
                    .filter(|(n, _)| n.eq_ignore_ascii_case(b"x-forwarded-for"))
                    .map(|(_, v)| v);
                (true, client_ip(peer, &mut xff, t))
            }
            _ => (false, peer),
        };
        let client_scheme = if trusted_peer {
            forwarded_proto(head).unwrap_or(scheme)
        } else {
            scheme
        };
        Origin {
            peer,
            trusted_peer,
            client,
            scheme,
            client_scheme,
        }
    }
}

/// The last element of the last `X-Forwarded-Proto` field, if it names `http` or `https`.
fn forwarded_proto(head: &RequestHead) -> Option<Scheme> {
    let last = head
        .headers()
        .filter(|(n, _)| n.eq_ignore_ascii_case(b"x-forwarded-proto"))
        .map(|(_, v)| v)
        .last()?;
    let v = last.rsplit(|&b| b == b',').next()?.trim_ascii();
    if v.eq_ignore_ascii_case(b"https") {
        Some(Scheme::Https)
    } else if v.eq_ignore_ascii_case(b"http") {
        Some(Scheme::Http)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http1::{parse_request_head, Limits};

    fn head(extra: &str) -> RequestHead {
        let raw = format!("GET / HTTP/1.1\r\nHost: x\r\n{extra}\r\n");
        match parse_request_head(raw.as_bytes(), &Limits::default()) {
            Ok(Some((h, _))) => h,
            other => panic!("bad test head: {other:?}"),
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or_else(|_| panic!("bad ip {s}"))
    }

    fn set(list: &[&str]) -> CidrSet {
        list.iter()
            .map(|s| s.parse().unwrap_or_else(|e| panic!("{s}: {e}")))
            .collect()
    }

    #[test]
    fn untrusted_peer_is_the_client_whatever_it_claims() {
        let h = head("X-Forwarded-For: 1.2.3.4\r\n");
        let peer = ip("::ffff:127.0.0.1");
        for trusted in [None, Some(set(&["10.0.0.0/8"]))] {
            let o = Origin::decide(peer, Scheme::Http, &h, trusted.as_ref());
            assert!(!o.trusted_peer);
            assert_eq!(o.client, ip("127.0.0.1"));
            assert_eq!(o.peer, ip("127.0.0.1"));
        }
    }

    #[test]
    fn trusted_peer_defers_to_the_forwarded_chain() {
        let h = head("X-Forwarded-For: 1.2.3.4, 10.0.0.9\r\n");
        let t = set(&["127.0.0.0/8", "10.0.0.0/8"]);
        let o = Origin::decide(ip("127.0.0.1"), Scheme::Https, &h, Some(&t));
        assert!(o.trusted_peer);
        assert_eq!(o.client, ip("1.2.3.4"));
        assert_eq!(o.scheme.as_str(), "https");
        assert_eq!(
            o.client_scheme,
            Scheme::Https,
            "no X-Forwarded-Proto: the listener's"
        );
    }

    #[test]
    fn the_client_scheme_is_the_trusted_peers_forwarded_proto_only() {
        let t = set(&["127.0.0.0/8"]);
        let cases = [
            ("X-Forwarded-Proto: https\r\n", Scheme::Https),
            ("X-Forwarded-Proto: http, HTTPS \r\n", Scheme::Https),
            (
                "X-Forwarded-Proto: https\r\nX-Forwarded-Proto: http\r\n",
                Scheme::Http,
            ),
            ("X-Forwarded-Proto: https, gopher\r\n", Scheme::Http),
            ("", Scheme::Http),
        ];
        for (extra, want) in cases {
            let h = head(extra);
            let o = Origin::decide(ip("127.0.0.1"), Scheme::Http, &h, Some(&t));
            assert_eq!(o.client_scheme, want, "{extra:?}");
            assert_eq!(o.scheme, Scheme::Http, "this hop stays the listener's");
            // From an untrusted peer the claim is ignored.
            let o = Origin::decide(ip("192.0.2.1"), Scheme::Http, &h, Some(&t));
            assert_eq!(o.client_scheme, Scheme::Http, "{extra:?}");
        }
    }
}

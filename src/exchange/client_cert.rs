//! `x-forwarded-client-cert` (XFCC, Envoy's format): what the upstream learns about the
//! client's verified TLS certificate. The upstream head writer removes every client-sent copy
//! (on every listener, from every peer, trusted proxies included: the header is the gateway's
//! own); when the connection has a verified certificate and `server.forward_client_cert` is on
//! (the default) it adds exactly one, written here:
//!
//! `x-forwarded-client-cert: Hash=<sha256 hex>;Subject="<RFC 4514 DN>";URI=<uri>;DNS=<name>`
//!
//! one `URI=` / `DNS=` pair per SAN entry, in certificate order. Quoting follows Envoy: the
//! Subject is always quoted, other values when they hold `,` `;` `=` `"` `\` or a blank, and
//! inside quotes `"` and `\` are backslash-escaped. A SAN value with any byte outside visible
//! ASCII is left out (never altered into a different name); the subject is printable ASCII by
//! construction (`tls::client_cert`). The finished value passes `http1::is_safe_header_value`
//! or is cut back to `Hash=` alone (a certificate with so many names that the value would pass
//! 4 KiB).

use crate::http1::is_safe_header_value;
use crate::tls::client_cert::PeerCert;

/// The header's name.
pub const XFCC: &[u8] = b"x-forwarded-client-cert";

/// Appends the `x-forwarded-client-cert` line for `c` to a head being serialized.
pub fn write_xfcc(out: &mut Vec<u8>, c: &PeerCert) {
    out.extend_from_slice(XFCC);
    out.extend_from_slice(b": ");
    let start = out.len();
    write_value(out, c);
    if !is_safe_header_value(&out[start..]) {
        out.truncate(start);
        push_pair(out, "Hash", c.fingerprint(), false);
    }
    out.extend_from_slice(b"\r\n");
}

/// The value: `Hash`, `Subject`, then a `URI` and a `DNS` pair per SAN.
fn write_value(out: &mut Vec<u8>, c: &PeerCert) {
    push_pair(out, "Hash", c.fingerprint(), false);
    out.push(b';');
    push_pair(out, "Subject", &c.subject, true);
    let sans = c
        .uris
        .iter()
        .map(|u| ("URI", u))
        .chain(c.dns.iter().map(|d| ("DNS", d)));
    for (key, v) in sans {
        if !v.is_empty() && v.bytes().all(|b| b.is_ascii_graphic()) {
            out.push(b';');
            push_pair(out, key, v, false);
        }
    }
}

/// `key=value`, the value quoted when `quote` is set or it holds a character XFCC gives a
/// meaning to. Callers pass printable ASCII only.
fn push_pair(out: &mut Vec<u8>, key: &str, v: &str, quote: bool) {
    out.extend_from_slice(key.as_bytes());
    out.push(b'=');
    let quote = quote || v.bytes().any(|b| b",;=\"\\ ".contains(&b));
    if !quote {
        out.extend_from_slice(v.as_bytes());
        return;
    }
    out.push(b'"');
    for b in v.bytes() {
        if b == b'"' || b == b'\\' {
            out.push(b'\\');
        }
        out.push(b);
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn xfcc(c: &PeerCert) -> String {
        let mut out = Vec::new();
        write_xfcc(&mut out, c);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn envoy_format_with_one_pair_per_san() {
        let c = PeerCert::from_parts(
            "CN=partner-a,O=Acme",
            Some("partner-a"),
            &["a.example.com", "b.example.com"],
            &["spiffe://acme/partner-a"],
            [0x0f; 32],
        );
        assert_eq!(
            xfcc(&c),
            format!(
                "x-forwarded-client-cert: Hash={};Subject=\"CN=partner-a,O=Acme\";\
                 URI=spiffe://acme/partner-a;DNS=a.example.com;DNS=b.example.com\r\n",
                "0f".repeat(32)
            )
        );
    }

    #[test]
    fn values_are_quoted_and_escaped() {
        let c = PeerCert::from_parts(
            "CN=Acme\\, \\\"Inc\\\",O=x",
            None,
            &[],
            &["urn:a;b=c", "spiffe://x/\"q\""],
            [0; 32],
        );
        let h = xfcc(&c);
        assert!(
            h.contains(";Subject=\"CN=Acme\\\\, \\\\\\\"Inc\\\\\\\",O=x\";"),
            "{h}"
        );
        assert!(
            h.contains(";URI=\"urn:a;b=c\";URI=\"spiffe://x/\\\"q\\\"\"\r\n"),
            "{h}"
        );
    }

    #[test]
    fn hostile_sans_are_dropped_not_altered() {
        let c = PeerCert::from_parts(
            "CN=evil\\0D\\0A",
            None,
            &[
                "evil\r\nx-admin: 1",
                "ok.example",
                "caf\u{e9}.example",
                "a b",
                "",
            ],
            &["spiffe://x\ty"],
            [1; 32],
        );
        let h = xfcc(&c);
        assert_eq!(h.matches("\r\n").count(), 1, "{h:?}");
        assert!(h.ends_with(";DNS=ok.example\r\n"), "{h:?}");
        assert!(!h.contains("URI=") && !h.contains("admin"), "{h:?}");
        let value = &h["x-forwarded-client-cert: ".len()..h.len() - 2];
        assert!(is_safe_header_value(value.as_bytes()));
    }

    #[test]
    fn an_oversized_value_falls_back_to_the_hash() {
        let names: Vec<String> = (0..400).map(|i| format!("host-{i}.example.com")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let c = PeerCert::from_parts("CN=big", None, &refs, &[], [2; 32]);
        assert_eq!(
            xfcc(&c),
            format!("x-forwarded-client-cert: Hash={}\r\n", "02".repeat(32))
        );
    }

    /// The phases on a memory wire: the policy, consumer mapping into rate limits and
    /// `authorize`, and the problem responses.
    mod phases {
        use std::net::SocketAddr;
        use std::path::Path;
        use std::rc::Rc;

        use crate::config::compile;
        use crate::core::Core;
        use crate::exchange::memory::{run_as, Ran};
        use crate::exchange::model::{ClientFacts, TlsFacts};
        use crate::exchange::origin::Scheme;
        use crate::shared::Shared;
        use crate::tls::client_cert::PeerCert;

        const CONFIG: &str = r#"
version = 1
[[listeners]]
address = "127.0.0.1:0"

[consumers.partner-a]
groups = ["partners"]

[policies.cert]
client_cert = { consumer = "cn", subjects = ["cn=partner-a, o=Acme"], sans = ["spiffe://acme/b"] }

[policies.optional]
client_cert = { required = false, consumer = "cn" }

[policies.partners]
authorize = { groups = ["partners"] }

[policies.per_consumer]
rate_limit = { key = "consumer", limits = [{ requests = 2, per = "1m" }] }

[[routes]]
name = "cert"
path = "/cert"
policies = ["cert", "per_consumer"]
echo = {}

[[routes]]
name = "partners"
path = "/partners"
policies = ["optional", "partners"]
echo = {}

[[routes]]
name = "open"
path = "/open"
echo = {}
"#;

        fn core() -> Core {
            let file = Path::new("mtls.toml");
            let cfg = compile::parse(CONFIG, file)
                .and_then(|raw| compile::compile(raw, CONFIG, file, 1))
                .unwrap_or_else(|e| panic!("test config: {}", e[0]));
            Core::new(0, Shared::new(cfg, 1, Default::default()))
        }

        fn client(cert: Option<PeerCert>) -> ClientFacts {
            let mut c = ClientFacts::new(SocketAddr::from(([192, 0, 2, 9], 4000)), Scheme::Https);
            c.tls = Some(Rc::new(TlsFacts {
                peer_cert: cert,
                ..TlsFacts::default()
            }));
            c
        }

        fn cert(subject: &str, cn: &str, uris: &[&str]) -> Option<PeerCert> {
            Some(PeerCert::from_parts(subject, Some(cn), &[], uris, [7; 32]))
        }

        fn get(core: &Core, path: &str, c: &ClientFacts) -> Ran {
            let req = format!("GET {path} HTTP/1.1\r\nHost: h\r\n\r\n");
            let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
                .enable_timer()
                .build()
                .expect("a runtime");
            rt.block_on(run_as(core, req.as_bytes(), c))
                .expect("request parses")
        }

        fn code(r: &Ran) -> String {
            let body = String::from_utf8_lossy(&r.wire.sent);
            let at = body.find("\"code\":\"").map(|i| i + 8).unwrap_or(0);
            body[at..].split('"').next().unwrap_or("").to_string()
        }

        #[test]
        fn no_certificate_is_401_with_its_own_code() {
            let core = core();
            let plain = ClientFacts::new(SocketAddr::from(([192, 0, 2, 9], 1)), Scheme::Http);
            for c in [plain, client(None)] {
                let r = get(&core, "/cert", &c);
                assert_eq!(r.wire.status, 401);
                assert_eq!(code(&r), "client_certificate_required");
                assert!(r
                    .wire
                    .fields
                    .contains("www-authenticate: ClientCertificate"));
                assert_eq!(r.facts.auth_failure, Some("missing_client_cert"));
                assert_eq!(get(&core, "/open", &c).wire.status, 200);
            }
        }

        #[test]
        fn allow_lists_and_the_consumer_bucket() {
            let core = core();
            let a = client(cert("CN=partner-a,O=Acme", "partner-a", &[]));
            for _ in 0..2 {
                assert_eq!(get(&core, "/cert", &a).wire.status, 200);
            }
            let r = get(&core, "/cert", &a);
            assert_eq!(r.wire.status, 429, "partner-a's own bucket is spent");
            // Another certificate (admitted by its URI SAN) is another consumer.
            let b = client(cert(
                "CN=partner-b,O=Acme",
                "partner-b",
                &["spiffe://acme/b"],
            ));
            assert_eq!(get(&core, "/cert", &b).wire.status, 200);
            let c = client(cert("CN=partner-a,O=Evil", "partner-a", &[]));
            let r = get(&core, "/cert", &c);
            assert_eq!(
                (r.wire.status, code(&r).as_str()),
                (403, "client_certificate_refused")
            );
        }

        #[test]
        fn a_cn_unfit_for_a_header_is_refused() {
            let core = core();
            let evil = client(cert(
                "CN=x\\0D\\0A",
                "x\r\nx-admin: 1",
                &["spiffe://acme/b"],
            ));
            let r = get(&core, "/cert", &evil);
            assert_eq!(
                (r.wire.status, code(&r).as_str()),
                (403, "client_certificate_refused")
            );
            assert_eq!(r.facts.auth_failure, Some("client_cert_unsafe_value"));
        }

        #[test]
        fn the_certificate_consumer_feeds_authorize() {
            let core = core();
            let a = client(cert("CN=partner-a,O=Acme", "partner-a", &[]));
            assert_eq!(get(&core, "/partners", &a).wire.status, 200);
            let b = client(cert("CN=partner-b", "partner-b", &[]));
            let r = get(&core, "/partners", &b);
            assert_eq!((r.wire.status, code(&r).as_str()), (403, "forbidden"));
            let r = get(&core, "/partners", &client(None));
            assert_eq!((r.wire.status, code(&r).as_str()), (401, "unauthorized"));
        }
    }
}

//! Mutual TLS end to end: the listener's `client_auth` (handshake refused without a good
//! certificate), the `client_cert` route policy (401 without one, 403 for one not on the
//! allow-lists, the certificate naming the consumer of rate limits and `x-consumer`), and
//! `x-forwarded-client-cert` (a client's copy never reaches the upstream; a verified
//! certificate is described in the gateway's own). Real gateway, real sockets, certificates
//! made at test time.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::tls::{client_config, Ca, ClientOpts, Key, TlsConn};
use common::{free_port, upstream_toml, Gateway, Response, Upstream};
use rcgen::{CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, SanType};

// ---------------------------------------------------------------------------------------------
// Certificates

/// A client-certificate authority whose certificates carry an organization and URI SANs.
struct ClientCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
    path: PathBuf,
}

/// A client certificate: chain and key PEM, and its leaf DER's SHA-256 (lowercase hex).
struct ClientCert {
    chain_pem: String,
    key_pem: String,
    sha256: String,
}

impl ClientCa {
    fn new(dir: &Path, stem: &str) -> ClientCa {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name
            .push(DnType::CommonName, format!("{stem} CA"));
        p.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let issuer = CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap();
        let path = dir.join(format!("{stem}.pem"));
        std::fs::write(&path, issuer.pem()).unwrap();
        ClientCa { issuer, path }
    }

    /// A client certificate for `O=Acme, CN=<cn>` with the given URI and DNS SANs.
    fn issue(&self, cn: &str, uris: &[&str], dns: &[&str]) -> ClientCert {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name = rcgen::DistinguishedName::new();
        p.distinguished_name.push(DnType::OrganizationName, "Acme");
        p.distinguished_name.push(DnType::CommonName, cn);
        p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        for u in uris {
            p.subject_alt_names
                .push(SanType::URI((*u).try_into().unwrap()));
        }
        for d in dns {
            p.subject_alt_names
                .push(SanType::DnsName((*d).try_into().unwrap()));
        }
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &self.issuer).unwrap();
        let digest = ring::digest::digest(&ring::digest::SHA256, cert.der());
        ClientCert {
            chain_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            sha256: digest.as_ref().iter().map(|b| format!("{b:02x}")).collect(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Gateway set-up

const ROUTES: &str = r#"
[consumers.partner-a]
groups = ["partners"]

[policies.cert]
client_cert = { consumer = "cn", subjects = ["CN=partner-a,O=Acme"], sans = ["spiffe://acme/partner-b"] }

[policies.by_fingerprint]
client_cert = { fingerprints = ["FINGERPRINT"] }

[policies.per_consumer]
rate_limit = { key = "consumer", limits = [{ requests = 2, per = "1m" }] }

[[routes]]
name = "cert"
path = "/cert"
proxy = { upstream = "app" }
policies = ["cert", "per_consumer"]

[[routes]]
name = "pinned"
path = "/pinned"
proxy = { upstream = "app" }
policies = ["by_fingerprint"]

[policies.cached]
cache = { ttl = "60s" }

[[routes]]
name = "cached"
path = "/cached"
proxy = { upstream = "app" }
policies = ["cached"]

[[routes]]
name = "open"
prefix = "/"
proxy = { upstream = "app" }

[[routes]]
name = "ping"
path = "/ping"
static = { status = 204 }
"#;

/// A gateway with its plain test listener and a TLS listener whose `client_auth` trusts `ca`
/// in `mode`; returns it and the TLS address.
struct Mtls {
    _gw: Gateway,
    tls: SocketAddr,
    server_ca: Ca,
    _dir: tempfile::TempDir,
}

fn start(mode: &str, up: &Upstream, pinned: &str, dir: tempfile::TempDir, ca: &Path) -> Mtls {
    let server_ca = Ca::new("mtls test server CA");
    let server = server_ca.server(dir.path(), "server", &["gw.test"], Key::EcdsaP256);
    let port = free_port();
    let body = format!(
        "{}{}\n[[listeners]]\nname = \"https\"\naddress = \"127.0.0.1:{port}\"\n\
         [listeners.tls]\ncertificates = [{{ cert = {:?}, key = {:?} }}]\n\
         client_auth = {{ mode = \"{mode}\", ca = {:?} }}\n",
        upstream_toml("app", &[up.addr]),
        ROUTES.replace("FINGERPRINT", pinned),
        server.cert_path.display().to_string(),
        server.key_path.display().to_string(),
        ca.display().to_string(),
    );
    let gw = Gateway::start(&body);
    Mtls {
        _gw: gw,
        tls: format!("127.0.0.1:{port}").parse().unwrap(),
        server_ca,
        _dir: dir,
    }
}

impl Mtls {
    fn client(&self, cert: Option<&ClientCert>) -> Arc<rustls::ClientConfig> {
        client_config(&ClientOpts {
            ca_pem: &self.server_ca.pem,
            client_cert: cert.map(|c| (c.chain_pem.as_str(), c.key_pem.as_str())),
            ..ClientOpts::default()
        })
    }

    /// Opens a TLS connection offering `cert`; `None` when the gateway refused the handshake
    /// (in TLS 1.3 the refusal of a client certificate arrives after the client's Finished,
    /// so it shows on the first exchange).
    fn connect(&self, cert: Option<&ClientCert>) -> Option<TlsConn> {
        let mut c = TlsConn::open(self.tls, "gw.test", &self.client(cert)).ok()?;
        c.get("/ping").ok()?;
        Some(c)
    }

    fn get(&self, cert: Option<&ClientCert>, path: &str, headers: &[(&str, &str)]) -> Response {
        let mut c = self.connect(cert).expect("handshake accepted");
        c.request("GET", path, headers, b"").expect("a response")
    }
}

fn code(r: &Response) -> String {
    r.json()["code"].as_str().unwrap_or_default().to_string()
}

// ---------------------------------------------------------------------------------------------
// Plain listener: no client certificate can exist there.

#[test]
fn a_forged_client_cert_header_is_stripped_on_a_plain_listener() {
    let up = Upstream::echo();
    let gw = Gateway::start(&format!(
        "{}[[routes]]\nname = \"open\"\nprefix = \"/\"\nproxy = {{ upstream = \"app\" }}\n",
        upstream_toml("app", &[up.addr])
    ));
    let forged = [
        (
            "X-Forwarded-Client-Cert",
            "Hash=00;Subject=\"CN=admin,O=Acme\";URI=spiffe://acme/admin",
        ),
        ("x-forwarded-client-cert", "By=spiffe://x;Hash=11"),
    ];
    let r = common::request(gw.addr, "GET", "/a", &forged, b"");
    assert_eq!(r.status, 200);
    let seen = up.last();
    assert!(
        seen.header_all("x-forwarded-client-cert").is_empty(),
        "the upstream saw a client's XFCC: {:?}",
        seen.headers
    );
    assert!(!seen.raw_head.contains("admin"), "{}", seen.raw_head);
}

#[test]
fn a_required_client_cert_policy_on_a_plain_listener_is_401_and_nothing_goes_upstream() {
    let up = Upstream::echo();
    let gw = Gateway::start(&format!(
        "{}[policies.cert]\nclient_cert = {{ required = true }}\n\
         [[routes]]\nname = \"cert\"\nprefix = \"/\"\nproxy = {{ upstream = \"app\" }}\npolicies = [\"cert\"]\n",
        upstream_toml("app", &[up.addr])
    ));
    // A forged XFCC header does not stand in for a certificate.
    let r = common::request(
        gw.addr,
        "GET",
        "/a",
        &[(
            "X-Forwarded-Client-Cert",
            "Hash=00;Subject=\"CN=partner-a\"",
        )],
        b"",
    );
    assert_eq!(r.status, 401);
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
    assert_eq!(code(&r), "client_certificate_required");
    assert!(r.header("www-authenticate").is_some());
    assert_eq!(
        up.count(),
        0,
        "a refused request never reaches the upstream"
    );
}

#[test]
fn check_names_a_bad_client_cert_field_with_its_line() {
    let text = "[[listeners]]\naddress = \"127.0.0.1:0\"\n[admin]\nenabled = false\n\
                [policies.p]\nclient_cert = { subjects = [\"CN=a;b\"] }\n";
    let (status, out, err) = common::check_config(text);
    assert_ne!(status, 0, "{out}{err}");
    let all = format!("{out}{err}");
    assert!(
        all.contains(":6:") && all.contains("policies.p.client_cert.subjects[0]"),
        "{all}"
    );
    assert!(all.contains("must be escaped"), "{all}");
}

// ---------------------------------------------------------------------------------------------
// TLS listener with client_auth (`[listeners.tls] client_auth`, lane tls-config).

#[test]
fn required_mode_refuses_handshakes_without_a_certificate_from_the_trusted_ca() {
    let dir = tempfile::tempdir().unwrap();
    let ca = ClientCa::new(dir.path(), "partners");
    let rogue = ClientCa::new(dir.path(), "rogue");
    let good = ca.issue("partner-a", &[], &[]);
    let forged = rogue.issue("partner-a", &[], &[]);
    let up = Upstream::echo();
    let ca_path = ca.path.clone();
    let m = start("required", &up, &good.sha256, dir, &ca_path);

    assert!(m.connect(None).is_none(), "no certificate: refused");
    assert!(
        m.connect(Some(&forged)).is_none(),
        "same subject, wrong CA: refused"
    );
    let r = m.get(Some(&good), "/hello", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(up.last().target, "/hello");
    let errors = "ringway_tls_handshake_errors_total";
    let s = common::scrape_until(m._gw.admin, errors, &[("reason", "client_cert")], 2.0);
    assert_eq!(
        common::metric(&s, errors, &[("reason", "client_cert")]),
        Some(2.0),
        "both refusals are counted as client-certificate failures"
    );
}

#[test]
fn optional_mode_lets_routes_decide() {
    let dir = tempfile::tempdir().unwrap();
    let ca = ClientCa::new(dir.path(), "partners");
    let good = ca.issue("partner-a", &[], &[]);
    let up = Upstream::echo();
    let ca_path = ca.path.clone();
    let m = start("optional", &up, &good.sha256, dir, &ca_path);

    assert_eq!(
        m.get(None, "/open", &[]).status,
        200,
        "no policy: no cert needed"
    );
    let r = m.get(None, "/cert", &[]);
    assert_eq!(r.status, 401);
    assert_eq!(code(&r), "client_certificate_required");
    assert_eq!(m.get(Some(&good), "/cert", &[]).status, 200);
    let name = "ringway_auth_failures_total";
    let labels = [("route", "cert"), ("reason", "missing_client_cert")];
    let s = common::scrape_until(m._gw.admin, name, &labels, 1.0);
    assert_eq!(common::metric(&s, name, &labels), Some(1.0));
}

#[test]
fn allow_lists_by_subject_san_and_fingerprint() {
    let dir = tempfile::tempdir().unwrap();
    let ca = ClientCa::new(dir.path(), "partners");
    let a = ca.issue("partner-a", &[], &["a.partners.test"]);
    let b = ca.issue("partner-b", &["spiffe://acme/partner-b"], &[]);
    let c = ca.issue("partner-c", &["spiffe://acme/partner-c"], &[]);
    let up = Upstream::echo();
    let ca_path = ca.path.clone();
    let m = start("optional", &up, &a.sha256.to_uppercase(), dir, &ca_path);

    assert_eq!(m.get(Some(&a), "/cert", &[]).status, 200, "by subject");
    assert_eq!(m.get(Some(&b), "/cert", &[]).status, 200, "by URI SAN");
    let r = m.get(Some(&c), "/cert", &[]);
    assert_eq!(
        (r.status, code(&r).as_str()),
        (403, "client_certificate_refused")
    );
    assert_eq!(
        m.get(Some(&a), "/pinned", &[]).status,
        200,
        "by fingerprint"
    );
    let r = m.get(Some(&b), "/pinned", &[]);
    assert_eq!(
        (r.status, code(&r).as_str()),
        (403, "client_certificate_refused")
    );
}

#[test]
fn the_certificate_names_the_consumer_for_rate_limits_and_upstream() {
    let dir = tempfile::tempdir().unwrap();
    let ca = ClientCa::new(dir.path(), "partners");
    let a = ca.issue("partner-a", &[], &[]);
    let b = ca.issue("partner-b", &["spiffe://acme/partner-b"], &[]);
    let up = Upstream::echo();
    let ca_path = ca.path.clone();
    let m = start("required", &up, &a.sha256, dir, &ca_path);

    let mut conn = m.connect(Some(&a)).expect("handshake");
    for _ in 0..2 {
        let r = conn
            .request("GET", "/cert", &[("X-Consumer", "someone-else")], b"")
            .unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(up.last().header_all("x-consumer"), ["partner-a"]);
    }
    let r = conn.get("/cert").unwrap();
    assert_eq!(r.status, 429, "partner-a spent its own bucket");
    // A new connection with the same certificate is the same consumer.
    assert_eq!(m.get(Some(&a), "/cert", &[]).status, 429);
    // Another certificate is another consumer with a fresh bucket.
    assert_eq!(m.get(Some(&b), "/cert", &[]).status, 200);
    assert_eq!(up.last().header_all("x-consumer"), ["partner-b"]);
}

#[test]
fn xfcc_is_replaced_with_the_verified_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ca = ClientCa::new(dir.path(), "partners");
    let a = ca.issue(
        "partner-a",
        &["spiffe://acme/partner-a"],
        &["a.partners.test"],
    );
    let up = Upstream::echo();
    let ca_path = ca.path.clone();
    let m = start("optional", &up, &a.sha256, dir, &ca_path);

    let forged = [("X-Forwarded-Client-Cert", "Hash=00;Subject=\"CN=admin\"")];
    assert_eq!(m.get(Some(&a), "/open", &forged).status, 200);
    assert_eq!(
        up.last().header_all("x-forwarded-client-cert"),
        [format!(
            "Hash={};Subject=\"CN=partner-a,O=Acme\";URI=spiffe://acme/partner-a;\
             DNS=a.partners.test",
            a.sha256
        )]
    );
    // Without a certificate, the forged header is dropped and none is added.
    assert_eq!(m.get(None, "/open", &forged).status, 200);
    assert!(up.last().header_all("x-forwarded-client-cert").is_empty());
}

/// The upstream sees who called (`x-forwarded-client-cert`) and may answer per caller, so a
/// cache on the route must not hand partner A's answer to partner B, nor to a caller without
/// a certificate.
#[test]
fn an_answer_to_a_described_certificate_is_never_served_from_the_shared_cache() {
    let dir = tempfile::tempdir().unwrap();
    let ca = ClientCa::new(dir.path(), "partners");
    let a = ca.issue("partner-a", &[], &[]);
    let b = ca.issue("partner-b", &[], &[]);
    let up = Upstream::echo();
    let ca_path = ca.path.clone();
    let m = start("optional", &up, &a.sha256, dir, &ca_path);

    let first = m.get(Some(&a), "/cached", &[]);
    assert_eq!(first.status, 200);
    assert!(first.text().contains("partner-a"), "{}", first.text());
    for (who, cert) in [("partner-b", Some(&b)), ("no certificate", None)] {
        let r = m.get(cert, "/cached", &[]);
        assert_eq!(r.status, 200);
        assert!(
            !r.text().contains("partner-a"),
            "{who} got partner A's answer: {}",
            r.text()
        );
    }
    assert_eq!(up.count(), 3, "every caller's request went upstream");
}

#[test]
fn a_certificate_with_a_crlf_common_name_never_injects_a_header() {
    let dir = tempfile::tempdir().unwrap();
    let ca = ClientCa::new(dir.path(), "partners");
    // Admitted by its URI SAN, but the consumer comes from the CN.
    let evil = ca.issue("x\r\nx-admin: 1", &["spiffe://acme/partner-b"], &[]);
    let up = Upstream::echo();
    let ca_path = ca.path.clone();
    let m = start("required", &up, &evil.sha256, dir, &ca_path);

    let r = m.get(Some(&evil), "/cert", &[]);
    assert_eq!(
        (r.status, code(&r).as_str()),
        (403, "client_certificate_refused")
    );
    assert_eq!(up.count(), 0);
    // On a route without the policy the certificate is described, escaped, in one line.
    assert_eq!(m.get(Some(&evil), "/open", &[]).status, 200);
    let seen = up.last();
    assert!(seen.header("x-admin").is_none(), "{}", seen.raw_head);
    assert_eq!(
        seen.header_all("x-forwarded-client-cert"),
        [format!(
            "Hash={};Subject=\"CN=x\\\\0D\\\\0Ax-admin: 1,O=Acme\";URI=spiffe://acme/partner-b",
            evil.sha256
        )]
    );
}

#[test]
fn a_resumed_session_keeps_its_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ca = ClientCa::new(dir.path(), "partners");
    let a = ca.issue("partner-a", &[], &[]);
    let up = Upstream::echo();
    let ca_path = ca.path.clone();
    let m = start("optional", &up, &a.sha256, dir, &ca_path);

    // One client config: its session store lets the second connection resume.
    let cfg = m.client(Some(&a));
    let mut first = TlsConn::open(m.tls, "gw.test", &cfg).unwrap();
    assert_eq!(first.get("/pinned").unwrap().status, 200);
    drop(first);
    let mut resumed = false;
    for _ in 0..3 {
        let mut c = TlsConn::open(m.tls, "gw.test", &cfg).unwrap();
        let r = c.get("/pinned").unwrap();
        assert_eq!(r.status, 200, "resumed={}: {}", c.resumed(), r.text());
        let xfcc = up.last().header_all("x-forwarded-client-cert").join("|");
        assert!(xfcc.starts_with(&format!("Hash={};", a.sha256)), "{xfcc}");
        resumed |= c.resumed();
    }
    assert!(resumed, "no connection resumed: the test proves nothing");
}

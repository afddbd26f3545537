//! TLS listener configuration, end to end: `ringway check` on `[listeners.tls]` (certificate
//! files, key pairs, validity, names, versions, ALPN) and the running gateway serving what the
//! config says (SNI selection, ECDSA and RSA, ALPN, versions, resumption across workers, hot
//! reload of certificates, the handshake timeout, the expiry gauge).
//!
//! Certificates come from a throwaway CA made at test time (`common::tls`).
mod common;
use common::tls::{self as t, Ca, ClientOpts, Key, TlsConn};
use common::*;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

/// Runs `ringway check` on `text` written to `dir/check.toml` (so relative paths resolve
/// against `dir`); returns (exit code, stdout, stderr).
fn check_in(dir: &Path, text: &str) -> (i32, String, String) {
    let p = dir.join("check.toml");
    std::fs::write(&p, text).unwrap();
    let out = std::process::Command::new(bin())
        .args(["check", "--config"])
        .arg(&p)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// 1-based line of the first occurrence of `needle` in `text`.
fn line_of(text: &str, needle: &str) -> usize {
    let at = text
        .find(needle)
        .unwrap_or_else(|| panic!("{needle:?} not in config"));
    text[..at].matches('\n').count() + 1
}

/// Asserts `check` fails with an error on the line holding `at_text`, naming `field` and
/// containing every one of `needles`.
fn expect_check_error(dir: &Path, text: &str, at_text: &str, field: &str, needles: &[&str]) {
    let (code, stdout, stderr) = check_in(dir, text);
    assert_eq!(
        code, 1,
        "expected a config error; stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(!stdout.contains(": OK"), "stdout:\n{stdout}");
    let pos = format!("check.toml:{}:", line_of(text, at_text));
    let line = stderr
        .lines()
        .find(|l| l.contains(&pos) && l.contains(field))
        .unwrap_or_else(|| panic!("no error at {pos} naming {field}; stderr:\n{stderr}"));
    for n in needles {
        assert!(line.contains(n), "error lacks {n:?}: {line}");
    }
}

const ROUTES: &str = "[[routes]]\nname = \"all\"\nprefix = \"/\"\nstatic = { status = 200, body = \"hello over tls\" }\n";

/// A config with one TLS listener on `addr` whose `tls` table is `tls` (TOML lines).
fn tls_config(addr: &str, tls: &str) -> String {
    format!(
        "[admin]\nenabled = false\n\n[[listeners]]\nname = \"https\"\naddress = \"{addr}\"\n\
         [listeners.tls]\n{tls}\n\n{ROUTES}"
    )
}

fn cert_line(cert: &str, key: &str) -> String {
    format!("certificates = [ {{ cert = \"{cert}\", key = \"{key}\" }} ]")
}

#[test]
fn check_lists_certificates_with_names_key_type_and_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    std::fs::create_dir(&certs).unwrap();
    let ca = Ca::new("check CA");
    ca.server(
        &certs,
        "api",
        &["api.example.com", "www.example.com"],
        Key::EcdsaP256,
    );
    ca.server(&certs, "wild", &["*.example.com"], Key::EcdsaP256);
    // Relative paths resolve against the config file's directory, not the working directory.
    let tls = "certificates = [\n  { cert = \"certs/api.pem\", key = \"certs/api.key\" },\n  \
               { cert = \"certs/wild.pem\", key = \"certs/wild.key\", names = [\"*.example.com\"] },\n]\n\
               default_certificate = \"www.example.com\"\nmin_version = \"1.3\"";
    let text = tls_config("127.0.0.1:8443", tls);
    let (code, stdout, stderr) = check_in(dir.path(), &text);
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(
        stdout.contains("tls: TLS 1.3, ALPN h2,http/1.1"),
        "{stdout}"
    );
    let api = stdout
        .lines()
        .find(|l| l.contains("certificate certs/api.pem"))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(api.contains("api.example.com,www.example.com"), "{api}");
    assert!(api.contains("[ECDSA P-256]"), "{api}");
    assert!(api.contains("expires 4096-01-01T00:00:00Z"), "{api}");
    assert!(api.contains("days)"), "{api}");
    assert!(
        stdout.contains("certificate certs/wild.pem: *.example.com"),
        "{stdout}"
    );
    assert!(!stdout.contains("warning:"), "{stdout}");
}

#[test]
fn check_warns_about_a_certificate_expiring_within_30_days() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("check CA");
    ca.server_until(dir.path(), "soon", &["soon.example.com"], 10 * 86_400);
    let text = tls_config("127.0.0.1:8443", &cert_line("soon.pem", "soon.key"));
    let (code, stdout, stderr) = check_in(dir.path(), &text);
    assert_eq!(
        code, 0,
        "an expiring certificate still serves; stderr:\n{stderr}"
    );
    let warning = stdout
        .lines()
        .find(|l| l.starts_with("warning:"))
        .unwrap_or_else(|| panic!("no warning in:\n{stdout}"));
    assert!(warning.contains("soon.pem"), "{warning}");
    assert!(
        warning.contains("expires in 9 days") || warning.contains("expires in 10 days"),
        "{warning}"
    );
}

#[test]
fn check_rejects_a_key_that_belongs_to_another_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("check CA");
    ca.server(dir.path(), "a", &["a.example.com"], Key::EcdsaP256);
    ca.server(dir.path(), "b", &["b.example.com"], Key::EcdsaP256);
    let text = tls_config("127.0.0.1:8443", &cert_line("a.pem", "b.key"));
    expect_check_error(
        dir.path(),
        &text,
        "certificates = [",
        "listeners[0].tls.certificates[0].key",
        &["b.key", "does not match", "a.pem"],
    );
}

#[test]
fn check_rejects_expired_and_not_yet_valid_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("check CA");
    ca.server_until(dir.path(), "old", &["old.example.com"], -86_400);
    let text = tls_config("127.0.0.1:8443", &cert_line("old.pem", "old.key"));
    expect_check_error(
        dir.path(),
        &text,
        "certificates = [",
        "listeners[0].tls.certificates[0].cert",
        &["old.pem", "expired"],
    );
    // The harness makes certificates valid from 60 days before their end: 90 days ahead means
    // valid only from 30 days ahead.
    ca.server_until(dir.path(), "future", &["future.example.com"], 90 * 86_400);
    let text = tls_config("127.0.0.1:8443", &cert_line("future.pem", "future.key"));
    expect_check_error(
        dir.path(),
        &text,
        "certificates = [",
        "listeners[0].tls.certificates[0].cert",
        &["future.pem", "not valid before"],
    );
}

#[test]
fn check_rejects_names_the_certificate_does_not_cover() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("check CA");
    ca.server(dir.path(), "wild", &["*.example.com"], Key::EcdsaP256);
    // A one-label wildcard covers neither the apex nor two labels deep.
    for name in ["example.com", "a.b.example.com", "api.example.org"] {
        let tls = format!(
            "certificates = [\n  {{ cert = \"wild.pem\", key = \"wild.key\",\n    names = [\"x.example.com\", \"{name}\"] }},\n]"
        );
        let text = tls_config("127.0.0.1:8443", &tls);
        expect_check_error(
            dir.path(),
            &text,
            "names = [",
            "listeners[0].tls.certificates[0].names[1]",
            &[name, "not covered", "wild.pem", "*.example.com"],
        );
    }
}

#[test]
fn check_names_a_missing_or_unreadable_file() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("check CA");
    ca.server(dir.path(), "api", &["api.example.com"], Key::EcdsaP256);
    let text = tls_config("127.0.0.1:8443", &cert_line("nope.pem", "api.key"));
    expect_check_error(
        dir.path(),
        &text,
        "certificates = [",
        "listeners[0].tls.certificates[0].cert",
        &["nope.pem", "cannot read"],
    );
    let text = tls_config("127.0.0.1:8443", &cert_line("api.pem", "missing.key"));
    expect_check_error(
        dir.path(),
        &text,
        "certificates = [",
        "listeners[0].tls.certificates[0].key",
        &["missing.key", "cannot read"],
    );
    // Abuse: a key file that is not PEM, and a certificate file holding only a key.
    std::fs::write(dir.path().join("junk.key"), b"\x00\xffnot a key at all").unwrap();
    let text = tls_config("127.0.0.1:8443", &cert_line("api.pem", "junk.key"));
    expect_check_error(
        dir.path(),
        &text,
        "certificates = [",
        "certificates[0].key",
        &["junk.key", "no PEM private key"],
    );
    let text = tls_config("127.0.0.1:8443", &cert_line("api.key", "api.key"));
    expect_check_error(
        dir.path(),
        &text,
        "certificates = [",
        "certificates[0].cert",
        &["api.key", "no PEM \"CERTIFICATE\""],
    );
}

#[test]
fn check_rejects_unsupported_settings_with_their_field() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("check CA");
    ca.server(dir.path(), "api", &["api.example.com"], Key::EcdsaP256);
    let certs = cert_line("api.pem", "api.key");
    let cases: &[(&str, &str, &str, &[&str])] = &[
        (
            "min_version = \"1.1\"",
            "min_version",
            "min_version",
            &["not supported"],
        ),
        (
            "min_version = 1.0",
            "min_version",
            "min_version",
            &["not supported"],
        ),
        (
            "alpn = [\"h2\", \"h2\"]",
            "alpn",
            "alpn[1]",
            &["listed twice"],
        ),
        ("alpn = [\"spdy/3\"]", "alpn", "alpn[0]", &["spdy/3"]),
        (
            "cipher_suites = [\"TLS_RSA_WITH_RC4_128_SHA\"]",
            "cipher_suites",
            "cipher_suites[0]",
            &["unknown cipher suite", "TLS_AES_128_GCM_SHA256"],
        ),
        (
            "cipher_suites = [\"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256\"]",
            "cipher_suites",
            "cipher_suites",
            &["TLS 1.3 suite"],
        ),
        (
            "unknown_server_name = \"drop\"",
            "unknown_server_name",
            "unknown_server_name",
            &["reject"],
        ),
        (
            "default_certificate = \"www.example.com\"",
            "default_certificate",
            "default_certificate",
            &["www.example.com"],
        ),
        (
            "handshake_timeout = \"0s\"",
            "handshake_timeout",
            "handshake_timeout",
            &["greater than zero"],
        ),
        (
            "ticket_key_rotation = \"8d\"",
            "ticket_key_rotation",
            "ticket_key_rotation",
            &["7d"],
        ),
        (
            "session_cache = -1",
            "session_cache",
            "session_cache",
            &["between 0 and 1000000"],
        ),
        (
            "client_auth = { mode = \"required\" }",
            "client_auth",
            "client_auth.ca",
            &["needs `ca`"],
        ),
        (
            "client_auth = { mode = \"maybe\" }",
            "client_auth",
            "client_auth.mode",
            &["optional"],
        ),
    ];
    for (line, at, field, needles) in cases {
        let text = tls_config("127.0.0.1:8443", &format!("{certs}\n{line}"));
        expect_check_error(
            dir.path(),
            &text,
            at,
            &format!("listeners[0].tls.{field}"),
            needles,
        );
    }
    // A misspelt key is refused by name (serde reports it against the table header's path).
    let text = tls_config("127.0.0.1:8443", &format!("{certs}\ncertificate = []"));
    expect_check_error(
        dir.path(),
        &text,
        "certificate = []",
        "listeners.tls.certificate",
        &["unknown field"],
    );
}

#[test]
fn check_accepts_client_auth_and_redirects_only_where_they_make_sense() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("check CA");
    ca.server(dir.path(), "api", &["api.example.com"], Key::EcdsaP256);
    ca.write(dir.path(), "clients-ca");
    let tls = format!(
        "{}\nclient_auth = {{ mode = \"optional\", ca = \"clients-ca.pem\" }}",
        cert_line("api.pem", "api.key")
    );
    let text = format!(
        "{}\n[[listeners]]\nname = \"http\"\naddress = \"127.0.0.1:8080\"\nredirect_https = true\nhttps_port = 8443\n",
        tls_config("127.0.0.1:8443", &tls)
    );
    let (code, stdout, stderr) = check_in(dir.path(), &text);
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("client certificates optional"), "{stdout}");
    assert!(
        stdout.contains("(redirects to https on port 8443)"),
        "{stdout}"
    );

    // A TLS listener cannot redirect to HTTPS; a port without the redirect is a mistake.
    let text = tls_config(
        "127.0.0.1:8443",
        &format!("{}\n", cert_line("api.pem", "api.key")),
    )
    .replace(
        "address = \"127.0.0.1:8443\"\n",
        "address = \"127.0.0.1:8443\"\nredirect_https = true\n",
    );
    expect_check_error(
        dir.path(),
        &text,
        "redirect_https",
        "listeners[0].redirect_https",
        &["plain listener"],
    );
    let text = "[admin]\nenabled = false\n[[listeners]]\naddress = \"127.0.0.1:8080\"\nhttps_port = 8443\n";
    expect_check_error(
        dir.path(),
        text,
        "https_port",
        "listeners[0].https_port",
        &["redirect_https"],
    );
    // Abuse: a CA bundle that is not a certificate.
    std::fs::write(
        dir.path().join("bad-ca.pem"),
        "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let tls = format!(
        "{}\nclient_auth = {{ mode = \"required\", ca = \"bad-ca.pem\" }}",
        cert_line("api.pem", "api.key")
    );
    expect_check_error(
        dir.path(),
        &tls_config("127.0.0.1:8443", &tls),
        "client_auth",
        "listeners[0].tls.client_auth.ca",
        &["bad-ca.pem"],
    );
}

// ---------------------------------------------------------------------------------------
// The running gateway
// ---------------------------------------------------------------------------------------

/// A gateway with a TLS listener named `https` (the harness's plain listener stays too).
struct TlsGateway {
    gw: Gateway,
    tls: SocketAddr,
    port: u16,
}

/// The config body for a TLS listener on `port` with `tls` as its table.
fn tls_body(port: u16, tls: &str) -> String {
    format!(
        "[[listeners]]\nname = \"https\"\naddress = \"127.0.0.1:{port}\"\n[listeners.tls]\n{tls}\n\n{ROUTES}"
    )
}

impl TlsGateway {
    fn start(tls: &str, workers: usize) -> TlsGateway {
        let port = free_port();
        let gw = Gateway::start_workers(&tls_body(port, tls), workers);
        let tls = SocketAddr::from(([127, 0, 0, 1], port));
        wait_for(Duration::from_secs(10), || common::listening(tls))
            .unwrap_or_else(|| panic!("TLS listener not up; logs:\n{}", gw.logs()));
        TlsGateway { gw, tls, port }
    }

    fn reload(&self, tls: &str) -> bool {
        self.gw.reload(&tls_body(self.port, tls))
    }
}

fn client(ca: &Ca) -> std::sync::Arc<rustls::ClientConfig> {
    t::client_config(&ClientOpts {
        ca_pem: &ca.pem,
        alpn: &[b"http/1.1"],
        ..Default::default()
    })
}

/// The DNS names of the certificate served to a client asking for `sni`.
fn served(addr: SocketAddr, sni: &str, cfg: &std::sync::Arc<rustls::ClientConfig>) -> Vec<String> {
    let mut c =
        TlsConn::open(addr, sni, cfg).unwrap_or_else(|e| panic!("handshake for {sni} failed: {e}"));
    let r = c.get("/").unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "hello over tls");
    t::dns_names(&c.server_chain()[0])
}

#[test]
fn the_server_name_selects_the_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let ca = Ca::new("sni CA");
    ca.server(dir.path(), "api", &["api.example.com"], Key::EcdsaP256);
    ca.server(dir.path(), "wild", &["*.example.com"], Key::EcdsaP256);
    // Also valid for unknown.test and 127.0.0.1 (so the client accepts it there) but serving
    // only fallback.test: those names reach it as the default.
    let sans = ["fallback.test", "unknown.test", "127.0.0.1"];
    ca.server(dir.path(), "fallback", &sans, Key::EcdsaP256);
    let tls = |unknown: &str| {
        format!(
            "certificates = [\n  {{ cert = \"{d}/api.pem\", key = \"{d}/api.key\" }},\n  \
             {{ cert = \"{d}/wild.pem\", key = \"{d}/wild.key\" }},\n  \
             {{ cert = \"{d}/fallback.pem\", key = \"{d}/fallback.key\", names = [\"fallback.test\"] }},\n]\n\
             default_certificate = \"fallback.test\"\nunknown_server_name = \"{unknown}\""
        )
    };
    let g = TlsGateway::start(&tls("default"), 2);
    let cfg = client(&ca);
    assert_eq!(served(g.tls, "api.example.com", &cfg), ["api.example.com"]);
    assert_eq!(served(g.tls, "API.Example.Com", &cfg), ["api.example.com"]);
    assert_eq!(served(g.tls, "www.example.com", &cfg), ["*.example.com"]);
    assert_eq!(served(g.tls, "unknown.test", &cfg)[0], "fallback.test");
    // An IP address sends no SNI: the default certificate.
    assert_eq!(served(g.tls, "127.0.0.1", &cfg)[0], "fallback.test");

    assert!(g.reload(&tls("reject")), "logs:\n{}", g.gw.logs());
    let refused = TlsConn::open(g.tls, "unknown.test", &cfg)
        .err()
        .expect("an unknown name must fail the handshake under unknown_server_name = \"reject\"");
    // rustls answers a resolver that found nothing with an access_denied alert.
    assert!(refused.to_string().contains("AccessDenied"), "{refused}");
    // Two labels under a one-label wildcard are unknown too.
    assert!(TlsConn::open(g.tls, "a.b.example.com", &cfg).is_err());
    assert_eq!(served(g.tls, "www.example.com", &cfg), ["*.example.com"]);
    assert_eq!(served(g.tls, "127.0.0.1", &cfg)[0], "fallback.test");
    let name = "ringway_tls_handshake_errors_total";
    let s = scrape_until(g.gw.admin, name, &[("reason", "unknown_name")], 2.0);
    assert_eq!(
        metric(&s, name, &[("reason", "unknown_name")]),
        Some(2.0),
        "both refused names are counted as unknown_name"
    );
}

#[test]
fn ecdsa_and_rsa_certificates_for_one_name_are_both_offered() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let ca = Ca::new("dual CA");
    ca.server(dir.path(), "ec", &["dual.example.com"], Key::EcdsaP256);
    ca.server(dir.path(), "rsa", &["dual.example.com"], Key::Rsa2048);
    // RSA listed first: ECDSA is still preferred when the client can take it.
    let g = TlsGateway::start(
        &format!(
            "certificates = [\n  {{ cert = \"{d}/rsa.pem\", key = \"{d}/rsa.key\" }},\n  \
             {{ cert = \"{d}/ec.pem\", key = \"{d}/ec.key\" }},\n]"
        ),
        1,
    );
    let any = client(&ca);
    let c = TlsConn::open(g.tls, "dual.example.com", &any).unwrap();
    assert!(
        !t::is_rsa(&c.server_chain()[0]),
        "a client taking both gets ECDSA"
    );
    for tls12_only in [false, true] {
        let rsa = t::client_config(&ClientOpts {
            ca_pem: &ca.pem,
            alpn: &[b"http/1.1"],
            rsa_only: true,
            tls12_only,
            ..Default::default()
        });
        let mut c = TlsConn::open(g.tls, "dual.example.com", &rsa)
            .unwrap_or_else(|e| panic!("RSA-only client (tls12_only={tls12_only}): {e}"));
        assert!(
            t::is_rsa(&c.server_chain()[0]),
            "an RSA-only client gets RSA"
        );
        assert_eq!(c.get("/").unwrap().status, 200);
    }
}

#[test]
fn alpn_prefers_h2_serves_http11_and_can_refuse_h2() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("alpn CA");
    let i = ca.server(dir.path(), "api", &["api.example.com"], Key::EcdsaP256);
    let certs = cert_line(
        &i.cert_path.display().to_string(),
        &i.key_path.display().to_string(),
    );
    let g = TlsGateway::start(&certs, 1);
    let offer = |alpn: &'static [&'static [u8]]| {
        t::client_config(&ClientOpts {
            ca_pem: &ca.pem,
            alpn,
            ..Default::default()
        })
    };
    // The default offers h2 first: a client that speaks both gets HTTP/2.
    let c = TlsConn::open(g.tls, "api.example.com", &offer(&[b"http/1.1", b"h2"])).unwrap();
    assert_eq!(c.alpn().as_deref(), Some(&b"h2"[..]));
    let mut c = TlsConn::open(g.tls, "api.example.com", &offer(&[b"http/1.1"])).unwrap();
    assert_eq!(c.alpn().as_deref(), Some(&b"http/1.1"[..]));
    assert_eq!(c.get("/").unwrap().status, 200);
    let mut c = TlsConn::open(g.tls, "api.example.com", &offer(&[])).unwrap();
    assert_eq!(
        c.alpn(),
        None,
        "no ALPN offered: none chosen, HTTP/1.1 still served"
    );
    assert_eq!(c.get("/").unwrap().status, 200);

    // A listener limited to HTTP/1.1 refuses a client that only speaks h2.
    let h1 = TlsGateway::start(&format!("{certs}\nalpn = [\"http/1.1\"]"), 1);
    let mut c = TlsConn::open(h1.tls, "api.example.com", &offer(&[b"h2", b"http/1.1"])).unwrap();
    assert_eq!(c.alpn().as_deref(), Some(&b"http/1.1"[..]));
    assert_eq!(c.get("/").unwrap().status, 200);
    assert!(
        TlsConn::open(h1.tls, "api.example.com", &offer(&[b"h2"])).is_err(),
        "a client that only speaks h2 must be refused (no_application_protocol)"
    );
}

#[test]
fn sessions_resume_on_every_worker() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("resume CA");
    let i = ca.server(dir.path(), "api", &["api.example.com"], Key::EcdsaP256);
    let g = TlsGateway::start(
        &cert_line(
            &i.cert_path.display().to_string(),
            &i.key_path.display().to_string(),
        ),
        2,
    );
    let mut resumed = 0;
    for tls12_only in [false, true] {
        let cfg = t::client_config(&ClientOpts {
            ca_pem: &ca.pem,
            alpn: &[b"http/1.1"],
            tls12_only,
            ..Default::default()
        });
        // Kept open, so the per-worker open-connection gauges show where they landed.
        let mut open = Vec::new();
        for n in 0..20 {
            let mut c = TlsConn::open(g.tls, "api.example.com", &cfg).unwrap();
            // Reading the response also reads the TLS 1.3 tickets sent after the handshake.
            assert_eq!(c.get("/").unwrap().status, 200);
            let want = if tls12_only {
                rustls::ProtocolVersion::TLSv1_2
            } else {
                rustls::ProtocolVersion::TLSv1_3
            };
            assert_eq!(c.version(), Some(want));
            assert_eq!(
                c.resumed(),
                n > 0,
                "connection {n} (tls12_only={tls12_only})"
            );
            resumed += usize::from(c.resumed());
            open.push(c);
        }
        let s = scrape(g.gw.admin);
        for w in ["0", "1"] {
            let n = metric(&s, "ringway_downstream_connections_open", &[("worker", w)]);
            assert!(
                n.unwrap_or(0.0) >= 1.0,
                "20 connections should land on both workers; worker {w} has {n:?}"
            );
        }
    }
    let s = scrape_until(
        g.gw.admin,
        "ringway_tls_handshakes_total",
        &[("kind", "resumed")],
        resumed as f64,
    );
    assert_eq!(
        metric(&s, "ringway_tls_handshakes_total", &[("kind", "resumed")]),
        Some(38.0)
    );
}

#[test]
fn reload_serves_new_certificates_and_keeps_the_old_one_when_the_new_is_bad() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("reload CA");
    let v1 = ca.server(dir.path(), "api", &["api.example.com"], Key::EcdsaP256);
    let tls = cert_line(
        &v1.cert_path.display().to_string(),
        &v1.key_path.display().to_string(),
    );
    let g = TlsGateway::start(&tls, 2);
    let cfg = client(&ca);
    let mut before = TlsConn::open(g.tls, "api.example.com", &cfg).unwrap();
    assert_eq!(before.server_chain()[0], v1.der);
    assert_eq!(before.get("/").unwrap().status, 200);
    let gauge = |g: &TlsGateway| {
        let cert = v1.cert_path.display().to_string();
        let s = scrape(g.gw.admin);
        metric(
            &s,
            "ringway_tls_certificate_expiry_seconds",
            &[("listener", "https"), ("certificate", cert.as_str())],
        )
        .expect("expiry gauge for the listener's certificate")
    };
    assert!(gauge(&g) > 1e9, "rcgen's default notAfter is year 4096");

    // Same paths, new files: a reload re-reads them.
    let v2 = ca.server_until(dir.path(), "api", &["api.example.com"], 40 * 86_400);
    assert!(g.reload(&tls), "logs:\n{}", g.gw.logs());
    // A fresh client: a resumed session would report the certificate of its first handshake.
    let mut after = TlsConn::open(g.tls, "api.example.com", &client(&ca)).unwrap();
    assert!(!after.resumed());
    assert_eq!(
        after.server_chain()[0],
        v2.der,
        "new handshakes get the new certificate"
    );
    // Tickets issued before the reload still resume (the ticket keys survive reloads).
    let resumed = TlsConn::open(g.tls, "api.example.com", &cfg).unwrap();
    assert!(
        resumed.resumed(),
        "a session from before the reload resumes"
    );
    assert_eq!(after.get("/").unwrap().status, 200);
    assert_eq!(
        before.get("/").unwrap().status,
        200,
        "an open connection keeps working"
    );
    let left = gauge(&g);
    assert!(
        (left - 40.0 * 86_400.0).abs() < 120.0,
        "expiry gauge {left}"
    );

    // A key that does not match: the reload fails and the serving certificate stays.
    let other = ca.server(dir.path(), "other", &["api.example.com"], Key::EcdsaP256);
    std::fs::copy(&other.key_path, &v2.key_path).unwrap();
    assert!(!g.reload(&tls), "a mismatched key must fail the reload");
    g.gw.wait_log("does not match", Duration::from_secs(5));
    assert!(
        g.gw.logs().contains("api.key"),
        "the log names the key file"
    );
    let mut still = TlsConn::open(g.tls, "api.example.com", &client(&ca)).unwrap();
    assert_eq!(still.server_chain()[0], v2.der);
    assert_eq!(still.get("/").unwrap().status, 200);
    assert_eq!(before.get("/").unwrap().status, 200);
}

/// A TLS 1.1 ClientHello (no supported_versions extension), as an old client sends it.
fn tls11_client_hello() -> Vec<u8> {
    let mut body = vec![0x03, 0x02]; // client_version TLS 1.1
    body.extend_from_slice(&[0x42; 32]); // random
    body.push(0); // session id
    body.extend_from_slice(&[0x00, 0x04, 0xc0, 0x13, 0x00, 0x2f]); // two CBC suites
    body.extend_from_slice(&[0x01, 0x00]); // null compression
    let mut hs = vec![0x01, 0x00, 0x00, body.len() as u8];
    hs.extend_from_slice(&body);
    let mut rec = vec![0x16, 0x03, 0x01, 0x00, hs.len() as u8];
    rec.extend_from_slice(&hs);
    rec
}

#[test]
fn old_tls_versions_are_refused_and_min_version_holds() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("version CA");
    let i = ca.server(dir.path(), "api", &["api.example.com"], Key::EcdsaP256);
    let certs = cert_line(
        &i.cert_path.display().to_string(),
        &i.key_path.display().to_string(),
    );
    let g = TlsGateway::start(&certs, 1);

    let mut s = TcpStream::connect(g.tls).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(&tls11_client_hello()).unwrap();
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    assert!(
        !(got.len() > 5 && got[0] == 0x16 && got[5] == 0x02),
        "the server must not answer TLS 1.1 with a ServerHello: {got:02x?}"
    );
    if !got.is_empty() {
        assert_eq!(got[0], 0x15, "only an alert may come back: {got:02x?}");
    }

    let tls12 = t::client_config(&ClientOpts {
        ca_pem: &ca.pem,
        alpn: &[b"http/1.1"],
        tls12_only: true,
        ..Default::default()
    });
    let c = TlsConn::open(g.tls, "api.example.com", &tls12).unwrap();
    assert_eq!(c.version(), Some(rustls::ProtocolVersion::TLSv1_2));

    assert!(g.reload(&format!("{certs}\nmin_version = \"1.3\"")));
    assert!(
        TlsConn::open(g.tls, "api.example.com", &tls12).is_err(),
        "min_version = \"1.3\" refuses a TLS 1.2-only client"
    );
    let mut c = TlsConn::open(g.tls, "api.example.com", &client(&ca)).unwrap();
    assert_eq!(c.version(), Some(rustls::ProtocolVersion::TLSv1_3));
    assert_eq!(c.get("/").unwrap().status, 200);
}

/// How long until the server ends a connection on which the client sent `first` and then
/// nothing (EOF or reset); `None` if it is still open after 6 s.
fn closed_after(addr: SocketAddr, first: &[u8]) -> Option<Duration> {
    let mut s = TcpStream::connect(addr).unwrap();
    let start = Instant::now();
    s.write_all(first).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(6))).unwrap();
    let mut b = [0u8; 64];
    loop {
        match s.read(&mut b) {
            Ok(0) => return Some(start.elapsed()),
            Ok(_) => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return None
            }
            // A signal to the test process (children exiting) is not the server's doing.
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return Some(start.elapsed()),
        }
    }
}

#[test]
fn a_silent_or_stalled_handshake_is_closed_at_the_handshake_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("timeout CA");
    let i = ca.server(dir.path(), "api", &["api.example.com"], Key::EcdsaP256);
    let certs = cert_line(
        &i.cert_path.display().to_string(),
        &i.key_path.display().to_string(),
    );
    let g = TlsGateway::start(&format!("{certs}\nhandshake_timeout = \"1s\""), 1);
    // Silent, and (abuse) half a record header then nothing.
    for first in [&b""[..], &[0x16, 0x03, 0x01, 0x00][..]] {
        let took = closed_after(g.tls, first)
            .unwrap_or_else(|| panic!("still open after 6 s (sent {first:02x?})"));
        assert!(
            took >= Duration::from_millis(900) && took < Duration::from_secs(4),
            "closed after {took:?}, expected about 1 s (sent {first:02x?}); logs:\n{}",
            g.gw.logs()
        );
    }
    let s = scrape_until(
        g.gw.admin,
        "ringway_tls_handshake_errors_total",
        &[("reason", "timeout")],
        2.0,
    );
    assert_eq!(
        metric(
            &s,
            "ringway_tls_handshake_errors_total",
            &[("reason", "timeout")]
        ),
        Some(2.0)
    );
    // A real client still gets through.
    let mut c = TlsConn::open(g.tls, "api.example.com", &client(&ca)).unwrap();
    assert_eq!(c.get("/").unwrap().status, 200);
}

/// A CA made here (not `common::tls::Ca`) because the test also signs a CRL with it.
struct CrlCa {
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
    pem: String,
}

impl CrlCa {
    fn new() -> CrlCa {
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name
            .push(rcgen::DnType::CommonName, "clients CA");
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let issuer =
            rcgen::CertifiedIssuer::self_signed(p, rcgen::KeyPair::generate().unwrap()).unwrap();
        let pem = issuer.pem();
        CrlCa { issuer, pem }
    }

    /// A client certificate with `serial`: (chain PEM, key PEM).
    fn client(&self, cn: &str, serial: u64) -> (String, String) {
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(rcgen::DnType::CommonName, cn);
        p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        p.serial_number = Some(rcgen::SerialNumber::from(serial));
        let kp = rcgen::KeyPair::generate().unwrap();
        let cert = p.signed_by(&kp, &self.issuer).unwrap();
        (format!("{}{}", cert.pem(), self.pem), kp.serialize_pem())
    }

    /// A CRL revoking `serial`.
    fn crl(&self, serial: u64) -> String {
        rcgen::CertificateRevocationListParams {
            this_update: rcgen::date_time_ymd(2025, 1, 1),
            next_update: rcgen::date_time_ymd(2099, 1, 1),
            crl_number: rcgen::SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: vec![rcgen::RevokedCertParams {
                serial_number: rcgen::SerialNumber::from(serial),
                revocation_time: rcgen::date_time_ymd(2025, 1, 1),
                reason_code: Some(rcgen::RevocationReason::KeyCompromise),
                invalidity_date: None,
            }],
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        }
        .signed_by(&self.issuer)
        .unwrap()
        .pem()
        .unwrap()
    }
}

/// One GET with an optional client certificate; `Err` when the server refused the handshake
/// (under TLS 1.3 the client learns of a refused certificate only on its first read).
fn get_with_cert(
    addr: SocketAddr,
    server_ca: &Ca,
    cert: Option<&(String, String)>,
) -> std::io::Result<u16> {
    let cfg = t::client_config(&ClientOpts {
        ca_pem: &server_ca.pem,
        alpn: &[b"http/1.1"],
        client_cert: cert.map(|(c, k)| (c.as_str(), k.as_str())),
        ..Default::default()
    });
    let mut c = TlsConn::open(addr, "api.example.com", &cfg)?;
    Ok(c.get("/")?.status)
}

/// A server certificate for api.example.com (api.pem, api.key) and a client CA (clients.pem)
/// written into `dir`.
fn server_and_clients(dir: &std::path::Path) -> (Ca, CrlCa) {
    let server_ca = Ca::new("server CA");
    server_ca.server(dir, "api", &["api.example.com"], Key::EcdsaP256);
    let clients = CrlCa::new();
    std::fs::write(dir.join("clients.pem"), &clients.pem).unwrap();
    (server_ca, clients)
}

#[test]
fn client_certificates_are_verified_against_the_configured_ca_and_crl() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let (server_ca, clients) = server_and_clients(dir.path());
    std::fs::write(dir.path().join("revoked.crl.pem"), clients.crl(2)).unwrap();
    let good = clients.client("good", 1);
    let revoked = clients.client("revoked", 2);
    // Signed by a CA the listener does not trust.
    let stranger_ca = CrlCa::new();
    let stranger = stranger_ca.client("stranger", 1);

    let tls = |mode: &str| {
        format!(
            "{}\nclient_auth = {{ mode = \"{mode}\", ca = \"{d}/clients.pem\", crl = [\"{d}/revoked.crl.pem\"] }}",
            cert_line(&format!("{d}/api.pem"), &format!("{d}/api.key"))
        )
    };
    let g = TlsGateway::start(&tls("required"), 1);
    assert_eq!(get_with_cert(g.tls, &server_ca, Some(&good)).unwrap(), 200);
    assert!(
        get_with_cert(g.tls, &server_ca, None).is_err(),
        "required: no certificate"
    );
    assert!(
        get_with_cert(g.tls, &server_ca, Some(&revoked)).is_err(),
        "revoked by the CRL"
    );
    assert!(
        get_with_cert(g.tls, &server_ca, Some(&stranger)).is_err(),
        "untrusted CA"
    );

    assert!(g.reload(&tls("optional")), "logs:\n{}", g.gw.logs());
    assert_eq!(
        get_with_cert(g.tls, &server_ca, None).unwrap(),
        200,
        "optional: none is fine"
    );
    assert_eq!(get_with_cert(g.tls, &server_ca, Some(&good)).unwrap(), 200);
    assert!(
        get_with_cert(g.tls, &server_ca, Some(&stranger)).is_err(),
        "optional still refuses a certificate that does not verify"
    );
}

/// A connection serves the names of the certificate its handshake chose. A request for a host
/// that certificate does not serve (domain fronting: a handshake for a public name, a request
/// for a partner name another listener guards with client certificates) is 421 Misdirected
/// Request; one for another name the same certificate lists (HTTP/2 coalescing) is served.
#[test]
fn a_request_for_a_host_the_connection_was_not_made_for_is_misdirected() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let ca = Ca::new("fronting CA");
    ca.server(
        dir.path(),
        "public",
        &["a.example.com", "c.example.com"],
        Key::EcdsaP256,
    );
    ca.server(dir.path(), "partner", &["b.example.com"], Key::EcdsaP256);
    let tls = |strict: &str| {
        format!(
            "certificates = [\n  {{ cert = \"{d}/public.pem\", key = \"{d}/public.key\" }},\n  \
             {{ cert = \"{d}/partner.pem\", key = \"{d}/partner.key\" }},\n]\n\
             alpn = [\"h2\", \"http/1.1\"]\n{strict}"
        )
    };
    let g = TlsGateway::start(&tls(""), 1);
    let cfg = client(&ca);
    let ask = |sni: &str, host: &str| {
        let mut c = TlsConn::open(g.tls, sni, &cfg).unwrap();
        c.request("GET", "/", &[("Host", host)], b"").unwrap()
    };
    assert_eq!(ask("a.example.com", "a.example.com").status, 200);
    assert_eq!(
        ask("a.example.com", "C.Example.Com:443").status,
        200,
        "same certificate"
    );
    assert_eq!(ask("b.example.com", "b.example.com").status, 200);
    assert_eq!(ask("a.example.com", "127.0.0.1").status, 200, "an address");
    for (sni, host) in [
        ("a.example.com", "b.example.com"),
        ("b.example.com", "a.example.com"),
        ("a.example.com", "elsewhere.test"),
    ] {
        let r = ask(sni, host);
        assert_eq!(r.status, 421, "{sni} -> {host}: {}", r.text());
        assert_eq!(r.json()["code"], "misdirected_request");
    }
    // Over HTTP/2 too: a stream for a name the connection's certificate does not serve.
    let mut h2 = common::h2::H2Client::tls(g.tls, &ca.pem, "a.example.com").expect("h2");
    h2.authority = "c.example.com".into();
    assert_eq!(h2.request("GET", "/", &[], b"").unwrap().status, 200);
    h2.authority = "b.example.com".into();
    assert_eq!(h2.request("GET", "/", &[], b"").unwrap().status, 421);
    // The operator can turn the check off (a proxy in front that sends its own server name).
    assert!(
        g.reload(&tls("strict_host = false")),
        "logs:\n{}",
        g.gw.logs()
    );
    assert_eq!(ask("a.example.com", "b.example.com").status, 200);
}

/// The partner host is served only by a listener that requires client certificates. A client
/// without one shook hands on the public listener sending the partner's name as its server
/// name: with `unknown_server_name = "default"` it got the public certificate, and since it
/// verifies nothing (`curl -k`), it went on to ask for the partner host. The server name alone
/// made the connection count as made for that host, so the request was routed to the
/// partner's upstream. A connection answers only for names one of its listener's
/// certificates serves: 421, over HTTP/1.1 and HTTP/2, and nothing reaches the upstream.
#[test]
fn a_server_name_no_certificate_of_the_listener_serves_does_not_make_it_authoritative() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let ca = Ca::new("fronting CA");
    ca.server(dir.path(), "public", &["www.example.com"], Key::EcdsaP256);
    ca.server(
        dir.path(),
        "partner",
        &["partner.example.com"],
        Key::EcdsaP256,
    );
    let clients = CrlCa::new();
    std::fs::write(dir.path().join("clients.pem"), &clients.pem).unwrap();
    let up = Upstream::echo();
    let (public, partner) = (free_port(), free_port());
    let gw = Gateway::start_workers(
        &format!(
            "[[listeners]]\nname = \"public\"\naddress = \"127.0.0.1:{public}\"\n[listeners.tls]\n{}\n\n\
             [[listeners]]\nname = \"partner\"\naddress = \"127.0.0.1:{partner}\"\n[listeners.tls]\n{}\n\
             client_auth = {{ mode = \"required\", ca = \"{d}/clients.pem\" }}\n\n{}\n\
             [[routes]]\nname = \"partner\"\nhosts = [\"partner.example.com\"]\nprefix = \"/\"\n\
             proxy = {{ upstream = \"app\" }}\n\n[[routes]]\nname = \"marker\"\npath = \"{MARKER_PATH}\"\n\
             proxy = {{ upstream = \"app\" }}\n\n{ROUTES}",
            cert_line(&format!("{d}/public.pem"), &format!("{d}/public.key")),
            cert_line(&format!("{d}/partner.pem"), &format!("{d}/partner.key")),
            upstream_toml("app", &[up.addr]),
        ),
        1,
    );
    let (public, partner) = (
        SocketAddr::from(([127, 0, 0, 1], public)),
        SocketAddr::from(([127, 0, 0, 1], partner)),
    );
    for addr in [public, partner] {
        wait_for(Duration::from_secs(10), || common::listening(addr))
            .unwrap_or_else(|| panic!("TLS listener not up; logs:\n{}", gw.logs()));
    }
    let careless = t::client_config(&ClientOpts {
        ca_pem: &ca.pem,
        alpn: &[b"http/1.1"],
        verify_nothing: true,
        ..Default::default()
    });
    // The partner listener itself refuses a client without a certificate.
    assert!(TlsConn::open(partner, "partner.example.com", &careless)
        .and_then(|mut c| c.get("/"))
        .is_err());
    // The public listener serves its own name.
    let mut c = TlsConn::open(public, "www.example.com", &careless).unwrap();
    assert_eq!(c.get("/").unwrap().status, 200);
    let before = up.snapshot();
    // The partner's name as the server name, on the public listener.
    let mut c = TlsConn::open(public, "partner.example.com", &careless).unwrap();
    let r = c
        .request("GET", "/secret", &[("Host", "partner.example.com")], b"")
        .unwrap();
    assert_eq!(r.status, 421, "{}", r.text());
    assert_eq!(r.json()["code"], "misdirected_request");
    // No server name at all: the default certificate does not serve the partner either.
    let mut c = TlsConn::open(public, "127.0.0.1", &careless).unwrap();
    let r = c
        .request("GET", "/secret", &[("Host", "partner.example.com")], b"")
        .unwrap();
    assert_eq!(r.status, 421, "{}", r.text());
    // HTTP/2: the same handshake, a stream for the partner's authority.
    let opts = common::h2::H2Opts {
        verify_nothing: true,
        ..Default::default()
    };
    let mut h2 =
        common::h2::H2Client::tls_with(public, &ca.pem, "partner.example.com", opts).expect("h2");
    h2.authority = "partner.example.com".into();
    assert_eq!(h2.request("GET", "/secret", &[], b"").unwrap().status, 421);
    assert_nothing_reached(&gw, &up, before, "a misdirected request");
}

/// A resumed session carries the client certificate it was made with and is not verified
/// again. So once a reload revokes that certificate (a new CRL), a session made before must
/// not resume: the handshake verifies afresh and is refused. TLS 1.2 session ids and TLS 1.3
/// with `session_tickets = false` both resume from the worker's session cache.
#[test]
fn a_session_made_before_a_revocation_never_resumes_after_it() {
    for tls12_only in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        let (server_ca, clients) = server_and_clients(dir.path());
        std::fs::write(dir.path().join("before.crl.pem"), clients.crl(99)).unwrap();
        std::fs::write(dir.path().join("after.crl.pem"), clients.crl(1)).unwrap();
        let partner = clients.client("partner", 1);
        let tls = |crl: &str| {
            format!(
                "{}
session_tickets = false
                 client_auth = {{ mode = \"required\", ca = \"{d}/clients.pem\", crl = [\"{d}/{crl}\"] }}",
                cert_line(&format!("{d}/api.pem"), &format!("{d}/api.key"))
            )
        };
        let g = TlsGateway::start(&tls("before.crl.pem"), 1);
        // One client config: its session store offers the session on every new connection.
        let cfg = t::client_config(&ClientOpts {
            ca_pem: &server_ca.pem,
            alpn: &[b"http/1.1"],
            client_cert: Some((partner.0.as_str(), partner.1.as_str())),
            tls12_only,
            ..Default::default()
        });
        let get = || -> std::io::Result<(u16, bool)> {
            let mut c = TlsConn::open(g.tls, "api.example.com", &cfg)?;
            let status = c.get("/")?.status;
            Ok((status, c.resumed()))
        };
        assert_eq!(get().unwrap(), (200, false));
        assert_eq!(
            get().unwrap(),
            (200, true),
            "tls12_only={tls12_only}: no resumption"
        );

        assert!(g.reload(&tls("after.crl.pem")), "logs:\n{}", g.gw.logs());
        let after = get();
        assert!(
            after.is_err(),
            "tls12_only={tls12_only}: a revoked certificate's session was served: {after:?}"
        );
    }
}

/// Records the OCSP response the server staples, verifying the chain normally.
#[derive(Debug)]
struct SeeOcsp {
    inner: std::sync::Arc<rustls::client::WebPkiServerVerifier>,
    seen: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
}

impl rustls::client::danger::ServerCertVerifier for SeeOcsp {
    fn verify_server_cert(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        intermediates: &[rustls::pki_types::CertificateDer<'_>],
        server_name: &rustls::pki_types::ServerName<'_>,
        ocsp: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        *self.seen.lock().unwrap() = ocsp.to_vec();
        self.inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[test]
fn an_ocsp_response_is_stapled() {
    use rustls::pki_types::pem::PemObject;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let ca = Ca::new("ocsp CA");
    ca.server(dir.path(), "api", &["api.example.com"], Key::EcdsaP256);
    // Served verbatim: the bytes only need to look like DER for the gateway.
    let staple = [0x30, 0x03, 0x0a, 0x01, 0x00];
    std::fs::write(dir.path().join("api.ocsp.der"), staple).unwrap();
    let g = TlsGateway::start(
        &format!(
            "certificates = [ {{ cert = \"{d}/api.pem\", key = \"{d}/api.key\", ocsp = \"{d}/api.ocsp.der\" }} ]"
        ),
        1,
    );
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(ca.pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let verifier = SeeOcsp {
        inner: rustls::client::WebPkiServerVerifier::builder(std::sync::Arc::new(roots))
            .build()
            .unwrap(),
        seen: seen.clone(),
    };
    let cfg = rustls::ClientConfig::builder()
        .dangerous()
        .with_custom_certificate_verifier(std::sync::Arc::new(verifier))
        .with_no_client_auth();
    let mut c = TlsConn::open(g.tls, "api.example.com", &std::sync::Arc::new(cfg)).unwrap();
    assert_eq!(c.get("/").unwrap().status, 200);
    assert_eq!(*seen.lock().unwrap(), staple);

    // Abuse: a PEM file where the DER response belongs is refused by `check`.
    std::fs::write(dir.path().join("bad.ocsp"), "-----BEGIN OCSP-----\n").unwrap();
    let text = tls_config(
        "127.0.0.1:8443",
        &format!("certificates = [ {{ cert = \"{d}/api.pem\", key = \"{d}/api.key\", ocsp = \"{d}/bad.ocsp\" }} ]"),
    );
    expect_check_error(
        dir.path(),
        &text,
        "certificates = [",
        "certificates[0].ocsp",
        &["bad.ocsp", "DER"],
    );
}

#[test]
fn session_tickets_and_the_session_cache_can_each_be_turned_off() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("knobs CA");
    let i = ca.server(dir.path(), "api", &["api.example.com"], Key::EcdsaP256);
    let certs = cert_line(
        &i.cert_path.display().to_string(),
        &i.key_path.display().to_string(),
    );
    // One worker: the per-worker cache alone decides whether sessions resume.
    let g = TlsGateway::start(&format!("{certs}\nsession_tickets = false"), 1);
    let resumes = |tls12_only: bool| {
        let cfg = t::client_config(&ClientOpts {
            ca_pem: &ca.pem,
            alpn: &[b"http/1.1"],
            tls12_only,
            ..Default::default()
        });
        (0..3)
            .map(|_| {
                let mut c = TlsConn::open(g.tls, "api.example.com", &cfg).unwrap();
                assert_eq!(c.get("/").unwrap().status, 200);
                c.resumed()
            })
            .collect::<Vec<bool>>()
    };
    // No tickets: TLS 1.3 resumes from the worker's cache, TLS 1.2 by session id.
    assert_eq!(resumes(false), [false, true, true]);
    assert_eq!(resumes(true), [false, true, true]);
    assert!(g.reload(&format!(
        "{certs}\nsession_tickets = false\nsession_cache = 0"
    )));
    assert_eq!(
        resumes(false),
        [false, false, false],
        "no tickets, no cache: no resumption"
    );
    assert_eq!(resumes(true), [false, false, false]);
}

/// Rewrites a PKCS#8 key file in OpenSSL's traditional format (SEC1 for EC, PKCS#1 for RSA).
fn to_traditional(kind: &str, key: &Path, out: &Path) {
    // `openssl ec` writes SEC1 by default; `openssl rsa` needs -traditional for PKCS#1.
    let traditional: &[&str] = if kind == "rsa" {
        &["-traditional"]
    } else {
        &[]
    };
    let st = std::process::Command::new("openssl")
        .arg(kind)
        .arg("-in")
        .arg(key)
        .args(traditional)
        .arg("-out")
        .arg(out)
        .output()
        .expect("openssl");
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
}

#[test]
fn keys_load_as_pkcs8_sec1_and_pkcs1() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let ca = Ca::new("keys CA");
    let ec = ca.server(dir.path(), "ec", &["ec.example.com"], Key::EcdsaP256);
    let rsa = ca.server(dir.path(), "rsa", &["rsa.example.com"], Key::Rsa2048);
    to_traditional("ec", &ec.key_path, &dir.path().join("ec.sec1.key"));
    to_traditional("rsa", &rsa.key_path, &dir.path().join("rsa.pkcs1.key"));
    let sec1 = std::fs::read_to_string(dir.path().join("ec.sec1.key")).unwrap();
    assert!(sec1.contains("BEGIN EC PRIVATE KEY"), "{sec1}");
    let pkcs1 = std::fs::read_to_string(dir.path().join("rsa.pkcs1.key")).unwrap();
    assert!(pkcs1.contains("BEGIN RSA PRIVATE KEY"), "{pkcs1}");
    let tls = format!(
        "certificates = [\n  {{ cert = \"{d}/ec.pem\", key = \"{d}/ec.sec1.key\" }},\n  \
         {{ cert = \"{d}/rsa.pem\", key = \"{d}/rsa.pkcs1.key\" }},\n  \
         {{ cert = \"{d}/ec.pem\", key = \"{d}/ec.key\", names = [\"ec.example.com\"] }},\n]"
    );
    // The third entry repeats the first's name and key type: refused as ambiguous.
    expect_check_error(
        dir.path(),
        &tls_config("127.0.0.1:8443", &tls),
        &format!("key = \"{d}/ec.key\""),
        "listeners[0].tls.certificates[2]",
        &["ec.example.com", "certificates[0]"],
    );
    let tls = tls.replace(
        &format!(
            "  {{ cert = \"{d}/ec.pem\", key = \"{d}/ec.key\", names = [\"ec.example.com\"] }},\n"
        ),
        "",
    );
    let g = TlsGateway::start(&tls, 1);
    let cfg = client(&ca);
    assert_eq!(served(g.tls, "ec.example.com", &cfg), ["ec.example.com"]);
    let mut c = TlsConn::open(g.tls, "rsa.example.com", &cfg).unwrap();
    assert!(t::is_rsa(&c.server_chain()[0]));
    assert_eq!(c.get("/").unwrap().status, 200);
}

//! TLS from ringway to its upstreams: an upstream's `tls = true | { ... }` setting, compiled
//! into one rustls client config (ring, TLS 1.2 and 1.3, ALPN `http/1.1` only) plus the name
//! each target is verified against and sent as SNI.
//!
//! Invariants: verification is on unless `verify = false` is written out (then the peer's
//! handshake signatures are still checked, its certificate is not). Trust is the system roots
//! (read once per compile, only when some upstream needs them) or the upstream's own `ca`
//! bundle, never both; CA bundles and the client certificate load through `certs` (size
//! limit, key/certificate match, validity now). A target written as an IP address has no name
//! to verify: it needs `server_name` (or `verify = false`). Everything that decides what a
//! handshake accepts is folded into `identity`, so pooled connections and sessions outlive a
//! reload only when the new settings would have accepted them too.

use std::collections::hash_map::DefaultHasher;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use toml::Spanned;

use crate::config::errors::Fail;

/// `tls = true`, `tls = false` or `tls = { ... }` on an upstream.
#[derive(Debug)]
pub enum RawUpstreamTls {
    Enabled(bool),
    Table(RawUpstreamTlsTable),
}

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawUpstreamTlsTable {
    /// Name verified in the upstream's certificate and sent as SNI (default: each target's
    /// host as written in its address).
    #[schemars(with = "Option<String>")]
    pub server_name: Option<Spanned<String>>,
    /// PEM bundle of the CAs to trust instead of the system roots (relative to the config).
    #[schemars(with = "Option<String>")]
    pub ca: Option<Spanned<String>>,
    /// Certificate the gateway presents when the upstream asks for one.
    #[schemars(with = "Option<RawClientCert>")]
    pub client_cert: Option<Spanned<RawClientCert>>,
    /// `false` accepts any certificate (logged loudly at every load).
    #[schemars(with = "Option<bool>")]
    pub verify: Option<Spanned<bool>>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawClientCert {
    /// PEM chain, leaf first.
    #[schemars(with = "String")]
    pub cert: Spanned<String>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    #[schemars(with = "String")]
    pub key: Spanned<String>,
}

impl schemars::JsonSchema for RawUpstreamTls {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "UpstreamTls".into()
    }

    fn json_schema(g: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let table = g.subschema_for::<RawUpstreamTlsTable>();
        schemars::json_schema!({
            "description": "true / false, or a table of upstream TLS settings.",
            "anyOf": [{ "type": "boolean" }, table]
        })
    }
}

impl<'de> Deserialize<'de> for RawUpstreamTls {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawUpstreamTls;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("`true`, `false` or a table like { server_name = \"api.internal\" }")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<RawUpstreamTls, E> {
                Ok(RawUpstreamTls::Enabled(v))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawUpstreamTls, A::Error> {
                let d = de::value::MapAccessDeserializer::new(map);
                RawUpstreamTlsTable::deserialize(d).map(RawUpstreamTls::Table)
            }
        }
        d.deserialize_any(V)
    }
}

/// An upstream's compiled TLS.
#[derive(Debug)]
pub struct UpstreamTls {
    /// Shared by every worker's copy (each worker gets its own session store).
    pub client: Arc<rustls::ClientConfig>,
    /// Per target (same order as the upstream's targets): the name verified and sent as SNI.
    pub names: Vec<ServerName<'static>>,
    pub verify: bool,
    /// Where trust comes from, for `check`: "system roots" or the CA file.
    pub trust: String,
    /// The client certificate file and its leaf's notAfter (Unix seconds).
    pub client_cert: Option<(PathBuf, i64)>,
    /// Hash of every input above, file contents included.
    pub identity: u64,
}

impl UpstreamTls {
    /// One line for `ringway check` and `/config`.
    pub fn describe(&self) -> String {
        let mut names: Vec<String> = self.names.iter().map(|n| n.to_str().into_owned()).collect();
        names.dedup();
        let mut s = if self.verify {
            format!("tls (verify {} against {})", names.join(", "), self.trust)
        } else {
            "tls (VERIFICATION OFF: any certificate accepted)".to_string()
        };
        if let Some((c, not_after)) = &self.client_cert {
            let until = super::certs::rfc3339(*not_after);
            s.push_str(&format!(
                ", client certificate {} (expires {until})",
                c.display()
            ));
        }
        s
    }

    /// This worker's client config: the shared one with its own session store, carried over
    /// from `old` when that was built from the same settings (resumed sessions skip the
    /// certificate check, so they must not outlive a change of trust).
    pub fn worker_config(
        &self,
        old: Option<(&UpstreamTls, &rustls::ClientConfig)>,
    ) -> Arc<rustls::ClientConfig> {
        let mut cfg = (*self.client).clone();
        cfg.resumption = match old {
            Some((o, c)) if o.identity == self.identity => c.resumption.clone(),
            _ => rustls::client::Resumption::in_memory_sessions(WORKER_SESSIONS),
        };
        Arc::new(cfg)
    }
}

/// TLS sessions each worker remembers per upstream (for resumption on new connections).
const WORKER_SESSIONS: usize = 64;

/// System roots, read at most once per compile (only if an upstream relies on them).
#[derive(Default)]
pub struct SystemRoots {
    loaded: Option<Result<Arc<RootCertStore>, String>>,
}

impl SystemRoots {
    fn get(&mut self) -> Result<Arc<RootCertStore>, String> {
        self.loaded.get_or_insert_with(load_system_roots).clone()
    }
}

fn load_system_roots() -> Result<Arc<RootCertStore>, String> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        let why = match found.errors.first() {
            Some(e) => format!(": {e}"),
            None => String::new(),
        };
        return Err(format!(
            "no system root certificates found{why}; install the CA bundle \
             (e.g. ca-certificates), set SSL_CERT_FILE, or give this upstream `tls.ca`"
        ));
    }
    Ok(Arc::new(roots))
}

/// What compiling an upstream's TLS needs from around it.
pub struct Context<'a> {
    /// The config file's directory (relative paths start there).
    pub base_dir: &'a Path,
    pub roots: &'a mut SystemRoots,
    /// Each target's address as written, with its span.
    pub targets: &'a [(&'a str, Range<usize>)],
    /// The upstream speaks HTTP/2: offer only ALPN `h2` (the server must choose it).
    pub h2: bool,
}

/// Compiles `tls` for one upstream. Problems go to `fail` with fields relative to the
/// upstream's table (`tls.ca`, `targets[0].address`). `None`: plain, or errors reported.
pub fn compile(
    raw: &Spanned<RawUpstreamTls>,
    cx: &mut Context<'_>,
    fail: &mut Fail<'_>,
) -> Option<Arc<UpstreamTls>> {
    let empty = RawUpstreamTlsTable::default();
    let t = match raw.get_ref() {
        RawUpstreamTls::Enabled(false) => return None,
        RawUpstreamTls::Enabled(true) => &empty,
        RawUpstreamTls::Table(t) => t,
    };
    let verify = t.verify.as_ref().is_none_or(|v| *v.get_ref());
    let mut id = DefaultHasher::new();
    verify.hash(&mut id);
    let names = server_names(t, verify, cx.targets, fail)?;
    names.hash(&mut id);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let (verifier, trust) = verifier(t, verify, &provider, cx, raw.span(), &mut id, fail)?;
    let versions = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions();
    let builder = match versions {
        Ok(b) => b,
        Err(e) => {
            fail(raw.span(), "tls", format!("no usable TLS version: {e}"));
            return None;
        }
    };
    let builder = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut client_cert_file = None;
    let mut client = match &t.client_cert {
        None => builder.with_no_client_auth(),
        Some(c) => {
            let loaded = client_cert(c.get_ref(), &provider, cx.base_dir, &mut id, fail)?;
            let file = cx.base_dir.join(c.get_ref().cert.get_ref());
            client_cert_file = Some((file, loaded.not_after));
            let one = rustls::sign::SingleCertAndKey::from(loaded.key);
            builder.with_client_cert_resolver(Arc::new(one))
        }
    };
    client.alpn_protocols = if cx.h2 {
        vec![b"h2".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    cx.h2.hash(&mut id);
    Some(Arc::new(UpstreamTls {
        client: Arc::new(client),
        names,
        verify,
        trust,
        client_cert: client_cert_file,
        identity: id.finish(),
    }))
}

/// The name each target is verified against: `server_name` when given, else the host part of
/// the target's address. An IP address is no name to verify (unless verification is off).
fn server_names(
    t: &RawUpstreamTlsTable,
    verify: bool,
    targets: &[(&str, Range<usize>)],
    fail: &mut Fail<'_>,
) -> Option<Vec<ServerName<'static>>> {
    if let Some(n) = &t.server_name {
        let name = n.get_ref().trim();
        return match ServerName::try_from(name.to_string()) {
            Ok(ServerName::IpAddress(_)) if verify => {
                fail(
                    n.span(),
                    "tls.server_name",
                    format!("{name:?} is an IP address; give the DNS name the certificate carries"),
                );
                None
            }
            Ok(sn) => Some(vec![sn; targets.len()]),
            Err(_) => {
                fail(
                    n.span(),
                    "tls.server_name",
                    format!("{name:?} is not a valid DNS name"),
                );
                None
            }
        };
    }
    let mut names = Vec::with_capacity(targets.len());
    let mut ok = true;
    for (i, (addr, span)) in targets.iter().enumerate() {
        let host = host_of(addr);
        let field = format!("targets[{i}].address");
        match host.parse::<IpAddr>() {
            Ok(ip) if !verify => names.push(ServerName::IpAddress(ip.into())),
            Ok(_) => {
                fail(
                    span.clone(),
                    &field,
                    format!(
                        "TLS needs a name to verify, and {addr:?} is an IP address: set \
                         `tls.server_name` (the DNS name in the upstream's certificate)"
                    ),
                );
                ok = false;
            }
            Err(_) => match ServerName::try_from(host.to_string()) {
                Ok(sn) => names.push(sn),
                Err(_) => {
                    fail(
                        span.clone(),
                        &field,
                        format!("{host:?} is not a valid DNS name"),
                    );
                    ok = false;
                }
            },
        }
    }
    ok.then_some(names)
}

/// `host` of `host:port` or `[v6]:port`.
fn host_of(addr: &str) -> &str {
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

/// The certificate verifier and a description of whom it trusts.
fn verifier(
    t: &RawUpstreamTlsTable,
    verify: bool,
    provider: &Arc<CryptoProvider>,
    cx: &mut Context<'_>,
    span: Range<usize>,
    id: &mut DefaultHasher,
    fail: &mut Fail<'_>,
) -> Option<(Arc<dyn ServerCertVerifier>, String)> {
    if !verify {
        // A CA bundle next to `verify = false` reads as "verify against this": say it is not.
        if let Some(ca) = &t.ca {
            let m =
                "ca has no effect with verify = false (nothing is verified): remove one of them";
            fail(ca.span(), "tls.ca", m.into());
            return None;
        }
        return Some((Arc::new(AnyCert(provider.clone())), "nothing".into()));
    }
    let (roots, trust) = match &t.ca {
        Some(ca) => {
            let path = cx.base_dir.join(ca.get_ref());
            match read_ca(&path) {
                Ok((roots, bytes)) => {
                    bytes.hash(id);
                    (Arc::new(roots), path.display().to_string())
                }
                Err(e) => {
                    fail(ca.span(), "tls.ca", e);
                    return None;
                }
            }
        }
        None => match cx.roots.get() {
            Ok(r) => (r, "system roots".to_string()),
            Err(e) => {
                fail(span, "tls", e);
                return None;
            }
        },
    };
    match rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
        .build()
    {
        Ok(v) => Some((v, trust)),
        Err(e) => {
            let span = t.ca.as_ref().map_or(span, |c| c.span());
            fail(span, "tls.ca", format!("cannot build a verifier: {e}"));
            None
        }
    }
}

/// A CA bundle file: every certificate in it (at least one), and the file's bytes.
fn read_ca(path: &Path) -> Result<(RootCertStore, Vec<u8>), String> {
    let bytes = super::certs::read_file(path, "CA bundle")?;
    let mut roots = RootCertStore::empty();
    for c in super::certs::read_chain(path, "CA bundle")? {
        roots
            .add(c)
            .map_err(|e| format!("CA bundle {}: unusable certificate: {e}", path.display()))?;
    }
    Ok((roots, bytes))
}

/// The client certificate and key (`certs::load`: the pair must match and the leaf be valid
/// now), their bytes folded into `id`.
fn client_cert(
    c: &RawClientCert,
    provider: &CryptoProvider,
    base_dir: &Path,
    id: &mut DefaultHasher,
    fail: &mut Fail<'_>,
) -> Option<super::certs::LoadedCert> {
    let cert = base_dir.join(c.cert.get_ref());
    let key = base_dir.join(c.key.get_ref());
    let now = i64::try_from(crate::civil::unix_now()).unwrap_or(i64::MAX);
    match super::certs::load(provider, &cert, &key, None, now) {
        Ok(loaded) => {
            for p in [&cert, &key] {
                super::certs::read_file(p, "file")
                    .unwrap_or_default()
                    .hash(id);
            }
            Some(loaded)
        }
        Err(super::certs::CertFault::Key(m)) => {
            fail(c.key.span(), "tls.client_cert.key", m);
            None
        }
        Err(super::certs::CertFault::Cert(m) | super::certs::CertFault::Ocsp(m)) => {
            fail(c.cert.span(), "tls.client_cert.cert", m);
            None
        }
    }
}

/// `verify = false`: any certificate is accepted; the handshake's signatures are still
/// checked (so the peer at least holds the key of the certificate it sent).
#[derive(Debug)]
struct AnyCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algs = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algs = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Why a handshake with an upstream failed, in words for the log: rustls's own reason when it
/// has one.
pub fn failure_reason(fail: super::stream::HandshakeFail, err: Option<&rustls::Error>) -> String {
    match err {
        Some(e) => e.to_string(),
        None => match fail {
            super::stream::HandshakeFail::Eof => "the upstream closed during the handshake".into(),
            f => format!("handshake failed ({})", f.label()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize, schemars::JsonSchema)]
    struct Doc {
        #[schemars(with = "RawUpstreamTls")]
        tls: Spanned<RawUpstreamTls>,
    }

    /// Compiles `tls = <value>` for the given targets: the result and the errors (field, text).
    fn run(value: &str, targets: &[&str]) -> (Option<Arc<UpstreamTls>>, Vec<(String, String)>) {
        let doc: Doc = toml::from_str(&format!("tls = {value}")).unwrap();
        let targets: Vec<(&str, Range<usize>)> = targets.iter().map(|t| (*t, 0..1)).collect();
        let mut roots = SystemRoots::default();
        let mut cx = Context {
            base_dir: Path::new("."),
            roots: &mut roots,
            targets: &targets,
            h2: false,
        };
        let mut errs = Vec::new();
        let mut fail = |_: Range<usize>, f: &str, m: String| errs.push((f.to_string(), m));
        let out = compile(&doc.tls, &mut cx, &mut fail);
        (out, errs)
    }

    #[test]
    fn a_ca_with_verification_off_is_refused() {
        let (out, errs) = run("{ verify = false, ca = \"x.pem\" }", &["a.internal:443"]);
        assert!(out.is_none());
        assert!(
            errs.iter()
                .any(|(f, m)| f == "tls.ca" && m.contains("verify = false")),
            "{errs:?}"
        );
    }

    #[test]
    fn false_is_plain_and_no_error() {
        let (out, errs) = run("false", &["10.0.0.5:443"]);
        assert!(out.is_none() && errs.is_empty());
    }

    #[test]
    fn ip_target_needs_a_server_name_unless_unverified() {
        let (out, errs) = run(
            "{ ca = \"/nonexistent.pem\" }",
            &["a.internal:443", "10.0.0.5:443"],
        );
        assert!(out.is_none());
        assert_eq!(errs[0].0, "targets[1].address", "{errs:?}");
        let (out, errs) = run("{ verify = false }", &["10.0.0.5:443"]);
        let tls = out.expect("compiles");
        assert!(errs.is_empty() && !tls.verify);
        assert!(matches!(tls.names[0], ServerName::IpAddress(_)));
        assert!(tls.describe().contains("VERIFICATION OFF"));
    }

    #[test]
    fn server_name_applies_to_every_target_and_changes_the_identity() {
        let (a, _) = run(
            "{ verify = false, server_name = \"b.internal\" }",
            &["10.0.0.5:1", "x:2"],
        );
        let a = a.unwrap();
        assert!(a.names.iter().all(|n| n.to_str() == "b.internal"));
        let (b, _) = run("{ verify = false }", &["10.0.0.5:1", "x:2"]);
        let (a2, _) = run(
            "{ verify = false, server_name = \"b.internal\" }",
            &["10.0.0.5:1", "x:2"],
        );
        assert_ne!(a.identity, b.unwrap().identity);
        assert_eq!(
            a.identity,
            a2.unwrap().identity,
            "same inputs, same identity"
        );
        assert_eq!(a.client.alpn_protocols, vec![b"http/1.1".to_vec()]);
    }

    #[test]
    fn host_of_strips_port_and_brackets() {
        assert_eq!(host_of("api.internal:443"), "api.internal");
        assert_eq!(host_of("10.0.0.5:443"), "10.0.0.5");
        assert_eq!(host_of("[::1]:8443"), "::1");
    }
}

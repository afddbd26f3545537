//! TLS for the test harness: a throwaway certificate authority made at test time (rcgen), PEM
//! files written into a test's directory, and a blocking rustls client that speaks HTTP/1.1
//! over real sockets (SNI, ALPN, client certificates, session resumption).
#![allow(dead_code)]

use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SignatureAlgorithm,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use super::{build_request, read_response, Response, IO_TIMEOUT};

/// Which key a certificate gets.
#[derive(Clone, Copy, Debug)]
pub enum Key {
    EcdsaP256,
    Rsa2048,
}

impl Key {
    fn alg(self) -> &'static SignatureAlgorithm {
        match self {
            Key::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            Key::Rsa2048 => &rcgen::PKCS_RSA_SHA256,
        }
    }
    fn generate(self) -> KeyPair {
        match self {
            Key::EcdsaP256 => KeyPair::generate_for(self.alg()).unwrap(),
            // rcgen cannot generate RSA keys with ring; make one with openssl.
            Key::Rsa2048 => {
                let out = std::process::Command::new("openssl")
                    .args([
                        "genpkey",
                        "-algorithm",
                        "RSA",
                        "-pkeyopt",
                        "rsa_keygen_bits:2048",
                    ])
                    .output()
                    .expect("openssl genpkey (apt-get install openssl)");
                assert!(out.status.success(), "openssl genpkey failed");
                let pem = String::from_utf8(out.stdout).unwrap();
                KeyPair::from_pem_and_sign_algo(&pem, self.alg()).unwrap()
            }
        }
    }
}

/// A certificate and its key as PEM, plus where they were written.
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    pub der: CertificateDer<'static>,
}

/// A test certificate authority.
pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
    pub pem: String,
}

impl Ca {
    pub fn new(common_name: &str) -> Ca {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, common_name);
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let issuer = CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap();
        let pem = issuer.pem();
        Ca { issuer, pem }
    }

    /// Writes the CA certificate to `dir/<stem>.pem` and returns the path.
    pub fn write(&self, dir: &Path, stem: &str) -> PathBuf {
        let p = dir.join(format!("{stem}.pem"));
        std::fs::write(&p, &self.pem).unwrap();
        p
    }

    /// A server certificate for `names` (DNS SANs; the first is also the CN), written to
    /// `dir/<stem>.pem` (leaf then this CA: a chain) and `dir/<stem>.key`.
    pub fn server(&self, dir: &Path, stem: &str, names: &[&str], key: Key) -> Issued {
        let cn = names.first().copied().unwrap_or("server");
        self.issue(
            dir,
            stem,
            cn,
            names,
            key,
            ExtendedKeyUsagePurpose::ServerAuth,
            None,
        )
    }

    /// A server certificate that expires `secs_from_now` seconds from now (negative: expired).
    pub fn server_until(
        &self,
        dir: &Path,
        stem: &str,
        names: &[&str],
        secs_from_now: i64,
    ) -> Issued {
        let not_after = Expiry(secs_from_now);
        let usage = ExtendedKeyUsagePurpose::ServerAuth;
        let cn = names.first().copied().unwrap_or("server");
        self.issue(dir, stem, cn, names, Key::EcdsaP256, usage, Some(not_after))
    }

    /// A client certificate with common name `cn` and optional SAN names.
    pub fn client(&self, dir: &Path, stem: &str, cn: &str, sans: &[&str]) -> Issued {
        let usage = ExtendedKeyUsagePurpose::ClientAuth;
        self.issue(dir, stem, cn, sans, Key::EcdsaP256, usage, None)
    }

    #[allow(clippy::too_many_arguments)]
    fn issue(
        &self,
        dir: &Path,
        stem: &str,
        cn: &str,
        sans: &[&str],
        key: Key,
        usage: ExtendedKeyUsagePurpose,
        not_after: Option<Expiry>,
    ) -> Issued {
        let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
        let mut p = CertificateParams::new(sans).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.extended_key_usages = vec![usage];
        if let Some(Expiry(secs)) = not_after {
            let epoch = rcgen::date_time_ymd(2000, 1, 1);
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs() as i64
                - 946_684_800;
            let at = |s: i64| epoch + std::time::Duration::from_secs(s.max(0) as u64);
            p.not_before = at(now + secs - 60 * 86400);
            p.not_after = at(now + secs);
        }
        let kp = key.generate();
        let cert = p.signed_by(&kp, &self.issuer).unwrap();
        let cert_pem = format!("{}{}", cert.pem(), self.pem);
        let key_pem = kp.serialize_pem();
        let cert_path = dir.join(format!("{stem}.pem"));
        let key_path = dir.join(format!("{stem}.key"));
        std::fs::write(&cert_path, &cert_pem).unwrap();
        std::fs::write(&key_path, &key_pem).unwrap();
        Issued {
            cert_pem,
            key_pem,
            cert_path,
            key_path,
            der: cert.der().clone(),
        }
    }
}

/// Expiry relative to now, in seconds.
#[derive(Clone, Copy)]
struct Expiry(i64);

/// What a test client offers.
#[derive(Default)]
pub struct ClientOpts<'a> {
    /// CA bundle PEM the client trusts (required).
    pub ca_pem: &'a str,
    pub alpn: &'a [&'a [u8]],
    /// A client certificate (chain PEM, key PEM).
    pub client_cert: Option<(&'a str, &'a str)>,
    /// Only TLS 1.2 (otherwise 1.3 and 1.2).
    pub tls12_only: bool,
    /// Only these signature algorithms' certificates (e.g. to force RSA): none = all.
    pub rsa_only: bool,
    /// Accept whatever certificate the server presents, for any name (an attacker's client,
    /// or `curl -k`): the handshake succeeds whatever server name was sent.
    pub verify_nothing: bool,
}

/// A client configuration; keep it (and reuse it) to resume sessions.
pub fn client_config(o: &ClientOpts<'_>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(o.ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let mut provider = rustls::crypto::ring::default_provider();
    if o.rsa_only {
        provider.cipher_suites.retain(|s| {
            !matches!(
                s.suite(),
                rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
                    | rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
                    | rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
            )
        });
    }
    let versions: &[&rustls::SupportedProtocolVersion] = if o.tls12_only {
        &[&rustls::version::TLS12]
    } else {
        &[&rustls::version::TLS13, &rustls::version::TLS12]
    };
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(versions)
        .unwrap();
    let builder = if o.verify_nothing {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(VerifyNothing(
                rustls::crypto::ring::default_provider().signature_verification_algorithms,
            )))
    } else if o.rsa_only {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(RsaOnly(
                rustls::client::WebPkiServerVerifier::builder(Arc::new(roots))
                    .build()
                    .unwrap(),
            )))
    } else {
        builder.with_root_certificates(roots)
    };
    let mut cfg = match o.client_cert {
        Some((chain, key)) => {
            let certs: Vec<_> = CertificateDer::pem_slice_iter(chain.as_bytes())
                .map(|c| c.unwrap())
                .collect();
            let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
            builder.with_client_auth_cert(certs, key).unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    cfg.alpn_protocols = o.alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(cfg)
}

use rustls::pki_types::pem::PemObject;

/// A verifier that verifies normally but only advertises RSA signature schemes, so the server
/// must pick its RSA certificate.
#[derive(Debug)]
struct RsaOnly(Arc<rustls::client::WebPkiServerVerifier>);

impl rustls::client::danger::ServerCertVerifier for RsaOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        self.0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        use rustls::SignatureScheme as S;
        vec![S::RSA_PSS_SHA256, S::RSA_PSS_SHA384, S::RSA_PKCS1_SHA256]
    }
}

/// A verifier that takes any certificate for any name (the signatures of the handshake are
/// still checked, against the presented certificate).
#[derive(Debug)]
struct VerifyNothing(rustls::crypto::WebPkiSupportedAlgorithms);

impl rustls::client::danger::ServerCertVerifier for VerifyNothing {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_schemes()
    }
}

type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// A TLS client connection to the gateway, handshake completed.
pub struct TlsConn {
    reader: BufReader<Tls>,
    /// The server name of the handshake: the `Host` a request carries unless it names one
    /// (the gateway answers 421 to a host the connection's certificate does not serve).
    sni: String,
}

impl TlsConn {
    /// Connects and completes the handshake with `sni` as the server name. A handshake the
    /// server refuses is an `Err`.
    pub fn open(
        addr: SocketAddr,
        sni: &str,
        cfg: &Arc<rustls::ClientConfig>,
    ) -> std::io::Result<TlsConn> {
        let tcp = TcpStream::connect(addr)?;
        tcp.set_read_timeout(Some(IO_TIMEOUT))?;
        tcp.set_write_timeout(Some(IO_TIMEOUT))?;
        tcp.set_nodelay(true)?;
        let name = ServerName::try_from(sni.to_string()).map_err(std::io::Error::other)?;
        let conn =
            rustls::ClientConnection::new(cfg.clone(), name).map_err(std::io::Error::other)?;
        let mut s = rustls::StreamOwned::new(conn, tcp);
        while s.conn.is_handshaking() {
            s.conn.complete_io(&mut s.sock)?;
        }
        Ok(TlsConn {
            reader: BufReader::new(s),
            sni: sni.to_string(),
        })
    }

    fn tls(&self) -> &rustls::ClientConnection {
        &self.reader.get_ref().conn
    }

    /// The certificate chain the server presented (leaf first).
    pub fn server_chain(&self) -> Vec<CertificateDer<'static>> {
        self.tls()
            .peer_certificates()
            .map(|c| c.iter().map(|c| c.clone().into_owned()).collect())
            .unwrap_or_default()
    }

    pub fn alpn(&self) -> Option<Vec<u8>> {
        self.tls().alpn_protocol().map(|p| p.to_vec())
    }

    pub fn cipher(&self) -> Option<rustls::CipherSuite> {
        self.tls().negotiated_cipher_suite().map(|s| s.suite())
    }

    pub fn version(&self) -> Option<rustls::ProtocolVersion> {
        self.tls().protocol_version()
    }

    /// True when the handshake resumed an earlier session.
    pub fn resumed(&self) -> bool {
        self.tls().handshake_kind() == Some(rustls::HandshakeKind::Resumed)
    }

    pub fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let s = self.reader.get_mut();
        s.write_all(bytes)?;
        s.flush()
    }

    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        extra: &[(&str, &str)],
        body: &[u8],
    ) -> std::io::Result<Response> {
        let host = [("Host", self.sni.as_str())];
        let named = extra.iter().any(|(n, _)| n.eq_ignore_ascii_case("host"));
        let extra: Vec<(&str, &str)> = match named {
            true => extra.to_vec(),
            false => host.iter().chain(extra).copied().collect(),
        };
        self.send(&build_request(method, path, &extra, body))?;
        read_response(&mut self.reader, method == "HEAD")
    }

    pub fn read_response(&mut self, head_request: bool) -> std::io::Result<Response> {
        read_response(&mut self.reader, head_request)
    }

    /// Ends the session the polite way (close_notify, then FIN) and drops the connection.
    pub fn close_notify(mut self) {
        let s = self.reader.get_mut();
        s.conn.send_close_notify();
        let _ = s.flush();
        let _ = s.sock.shutdown(std::net::Shutdown::Write);
    }

    /// Reads until the server ends the session: `Ok` only for a clean end (close_notify), an
    /// `UnexpectedEof` error for a bare TCP close.
    pub fn read_to_end(&mut self) -> std::io::Result<Vec<u8>> {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut self.reader, &mut v).map(|_| v)
    }

    pub fn get(&mut self, path: &str) -> std::io::Result<Response> {
        self.request("GET", path, &[], b"")
    }
}

/// One GET over a fresh TLS connection.
pub fn get(
    addr: SocketAddr,
    sni: &str,
    cfg: &Arc<rustls::ClientConfig>,
    path: &str,
) -> std::io::Result<Response> {
    TlsConn::open(addr, sni, cfg)?.get(path)
}

/// The DNS names in a DER certificate's subjectAltName (to tell which certificate was served).
pub fn dns_names(der: &CertificateDer<'_>) -> Vec<String> {
    use x509_parser::prelude::*;
    let Ok((_, cert)) = X509Certificate::from_der(der) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            if let GeneralName::DNSName(d) = n {
                out.push(d.to_string());
            }
        }
    }
    out
}

/// Whether the leaf certificate's key is RSA.
pub fn is_rsa(der: &CertificateDer<'_>) -> bool {
    use x509_parser::prelude::*;
    X509Certificate::from_der(der)
        .map(|(_, c)| {
            c.public_key().algorithm.algorithm == x509_parser::oid_registry::OID_PKCS1_RSAENCRYPTION
        })
        .unwrap_or(false)
}

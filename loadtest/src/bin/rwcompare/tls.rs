//! TLS scenarios: the certificate both gateways serve (made at run time: an ECDSA P-256 CA
//! and an ECDSA P-256 leaf for `localhost` and 127.0.0.1, written to the temp dir), and a
//! blocking rustls client for readiness probes and idle connections. Load itself goes through
//! `rwload run --url https://…` (see `load.rs`).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, PKCS_ECDSA_P256_SHA256,
};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

/// The name the certificate is for and every client asks for (SNI).
pub const SERVER_NAME: &str = "localhost";

/// The files of one run's certificate, and a client config that trusts it.
#[derive(Clone)]
pub struct TlsFiles {
    /// The CA certificate (PEM): what clients trust.
    pub ca: PathBuf,
    /// The leaf certificate (PEM) the gateways serve.
    pub cert: PathBuf,
    /// Its private key (PEM, PKCS#8).
    pub key: PathBuf,
    pub client: Arc<ClientConfig>,
}

/// A client TLS connection over a blocking socket.
pub type TlsConn = StreamOwned<ClientConnection, TcpStream>;

/// Makes the CA and leaf in `dir` and the client config for probes.
pub fn generate(dir: &Path) -> Result<TlsFiles, String> {
    let err = |e: rcgen::Error| format!("cannot make the test certificate: {e}");
    let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(err)?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "rwcompare test CA");
    let ca_cert = ca_params.self_signed(&ca_key).map_err(err)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(err)?;
    let mut params = CertificateParams::new(vec![SERVER_NAME.to_string(), "127.0.0.1".to_string()])
        .map_err(err)?;
    params
        .distinguished_name
        .push(DnType::CommonName, SERVER_NAME);
    let cert = params.signed_by(&key, &issuer).map_err(err)?;

    let files = TlsFiles {
        ca: dir.join("ca.pem"),
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
        client: Arc::new(client_config(ca_cert.der().clone())?),
    };
    for (path, text) in [
        (&files.ca, ca_cert.pem()),
        (&files.cert, cert.pem()),
        (&files.key, key.serialize_pem()),
    ] {
        std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(files)
}

fn client_config(ca: CertificateDer<'static>) -> Result<ClientConfig, String> {
    let mut roots = RootCertStore::empty();
    roots.add(ca).map_err(|e| format!("test CA: {e}"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut c = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS client: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    c.alpn_protocols = vec![b"http/1.1".to_vec()];
    // Idle connections must each cost the server a full session, as the load's do.
    c.resumption = rustls::client::Resumption::disabled();
    Ok(c)
}

/// Connects and completes the handshake, every step bounded by `timeout`.
pub fn connect(addr: SocketAddr, files: &TlsFiles, timeout: Duration) -> Result<TlsConn, String> {
    let tcp = TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("connect: {e}"))?;
    tcp.set_read_timeout(Some(timeout))
        .and_then(|()| tcp.set_write_timeout(Some(timeout)))
        .and_then(|()| tcp.set_nodelay(true))
        .map_err(|e| e.to_string())?;
    let name = ServerName::try_from(SERVER_NAME).map_err(|e| e.to_string())?;
    let conn =
        ClientConnection::new(files.client.clone(), name).map_err(|e| format!("TLS: {e}"))?;
    let mut s = StreamOwned::new(conn, tcp);
    while s.conn.is_handshaking() {
        s.conn
            .complete_io(&mut s.sock)
            .map_err(|e| format!("TLS handshake: {e}"))?;
    }
    Ok(s)
}

/// What a handshake negotiated, e.g. `TLSv1_3 TLS13_AES_256_GCM_SHA384 X25519`.
pub fn negotiated(s: &TlsConn) -> String {
    let v = s
        .conn
        .protocol_version()
        .map_or("?".to_string(), |v| format!("{v:?}"));
    let c = s
        .conn
        .negotiated_cipher_suite()
        .map_or("?".to_string(), |c| format!("{:?}", c.suite()));
    let g = s
        .conn
        .negotiated_key_exchange_group()
        .map_or("?".to_string(), |g| format!("{:?}", g.name()));
    format!("{v} {c} {g}")
}

/// Either kind of blocking client connection, for code that reads and writes both.
pub enum AnyConn {
    Plain(TcpStream),
    Tls(Box<TlsConn>),
}

impl AnyConn {
    /// Opens a plain connection, or a TLS one when `tls` is given.
    pub fn open(
        addr: SocketAddr,
        tls: Option<&TlsFiles>,
        timeout: Duration,
    ) -> Result<AnyConn, String> {
        match tls {
            Some(f) => connect(addr, f, timeout).map(|s| AnyConn::Tls(Box::new(s))),
            None => {
                let s = TcpStream::connect_timeout(&addr, timeout)
                    .map_err(|e| format!("connect: {e}"))?;
                s.set_read_timeout(Some(timeout))
                    .and_then(|()| s.set_write_timeout(Some(timeout)))
                    .map_err(|e| e.to_string())?;
                Ok(AnyConn::Plain(s))
            }
        }
    }
}

impl Read for AnyConn {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            AnyConn::Plain(s) => s.read(buf),
            AnyConn::Tls(s) => s.read(buf),
        }
    }
}

impl Write for AnyConn {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            AnyConn::Plain(s) => s.write(buf),
            AnyConn::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            AnyConn::Plain(s) => s.flush(),
            AnyConn::Tls(s) => s.flush(),
        }
    }
}

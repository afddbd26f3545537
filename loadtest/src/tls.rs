//! TLS for `rwload run` (https:// URLs): the rustls client config (ring provider; trust a PEM
//! file or, with `--insecure`, skip the certificate check but still verify the handshake
//! signature, like `curl -k`), and `TlsStream`, a rustls `ClientConnection` driven over a
//! monoio `TcpStream` with owned buffers. Every socket operation is a complete io_uring
//! read or write that is never cancelled mid-record: timeouts shut the socket down instead
//! (see `client.rs`), so a session is never left with half a record written.
//!
//! Session resumption is off unless asked for (`--resume`): then every connection slot has
//! its own in-memory session store (TLS 1.3 tickets, TLS 1.2 session ids/tickets), like one
//! client reconnecting: each new connection resumes the session its predecessor got, never
//! races other slots for a shared ticket pool (rustls keeps at most 8 TLS 1.3 tickets per
//! server name per store), and never waits on another thread's lock.

use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::path::Path;
use std::sync::Arc;

use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::TcpStream;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::Resumption;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    ClientConfig, ClientConnection, DigitallySignedStruct, HandshakeKind, SignatureScheme,
};

use crate::recvbuf::RecvBuf;

/// Ciphertext read size: one full TLS record plus its header and tag.
const CIPHER_READ: usize = 16 * 1024 + 512;

/// How a run speaks TLS, decided from the command line.
#[derive(Debug, Clone)]
pub struct TlsOptions {
    /// PEM file of trusted certificates; `None` with `insecure`.
    pub cacert: Option<std::path::PathBuf>,
    /// Skip the certificate check (chain, name, dates); handshake signatures are still checked.
    pub insecure: bool,
    /// Name sent as SNI and checked against the certificate.
    pub server_name: String,
    /// `Some(12)` or `Some(13)` restricts the protocol version; `None` offers both.
    pub version: Option<u8>,
    /// Keep sessions and offer them on new connections.
    pub resume: bool,
}

/// What a load thread needs to open TLS connections.
#[derive(Clone)]
pub struct TlsClient {
    pub config: Arc<ClientConfig>,
    pub name: ServerName<'static>,
    /// Sessions are kept and resumed.
    pub resume: bool,
}

impl TlsClient {
    /// Builds the client config (one per load thread: each has its own session store).
    pub fn new(o: &TlsOptions) -> Result<TlsClient, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let versions: &[&'static rustls::SupportedProtocolVersion] = match o.version {
            Some(12) => &[&rustls::version::TLS12],
            Some(13) => &[&rustls::version::TLS13],
            None => rustls::DEFAULT_VERSIONS,
            Some(v) => return Err(format!("--tls-version 1.{v}: use 1.2 or 1.3")),
        };
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)
            .map_err(|e| format!("TLS: {e}"))?;
        let mut config = match (&o.cacert, o.insecure) {
            (_, true) => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoCertCheck(provider)))
                .with_no_client_auth(),
            (Some(path), false) => builder
                .with_root_certificates(load_roots(path)?)
                .with_no_client_auth(),
            (None, false) => {
                return Err("https:// needs --cacert FILE (PEM) or --insecure".into());
            }
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        config.resumption = if o.resume {
            Resumption::in_memory_sessions(256)
        } else {
            Resumption::disabled()
        };
        let name = ServerName::try_from(o.server_name.clone())
            .map_err(|_| format!("`{}` is not a valid TLS server name", o.server_name))?;
        Ok(TlsClient {
            config: Arc::new(config),
            name,
            resume: o.resume,
        })
    }

    /// The same client with a session store of its own (for one connection slot); without
    /// resumption, the same client.
    pub fn for_slot(&self) -> TlsClient {
        if !self.resume {
            return self.clone();
        }
        let mut config = (*self.config).clone();
        config.resumption = Resumption::in_memory_sessions(4);
        TlsClient {
            config: Arc::new(config),
            name: self.name.clone(),
            resume: true,
        }
    }
}

fn load_roots(path: &Path) -> Result<rustls::RootCertStore, String> {
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("--cacert {}: {e}", path.display()))?;
    for c in certs {
        let c = c.map_err(|e| format!("--cacert {}: {e}", path.display()))?;
        roots
            .add(c)
            .map_err(|e| format!("--cacert {}: {e}", path.display()))?;
    }
    if roots.is_empty() {
        return Err(format!("--cacert {}: no certificate in it", path.display()));
    }
    Ok(roots)
}

/// `--insecure`: accepts any certificate, but checks the handshake signature with it, so
/// the server still has to prove it holds the key (the work a real client makes it do).
#[derive(Debug)]
struct NoCertCheck(Arc<CryptoProvider>);

impl ServerCertVerifier for NoCertCheck {
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
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A TLS failure (handshake, alert, bad record) as opposed to a plain socket error; carried
/// inside `io::Error` so callers can count it apart.
#[derive(Debug)]
pub struct TlsFailure(pub rustls::Error);

impl std::fmt::Display for TlsFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TLS: {}", self.0)
    }
}

impl std::error::Error for TlsFailure {}

/// True when `e` came from TLS itself rather than the socket.
pub fn is_tls_failure(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|i| i.is::<TlsFailure>())
}

/// What was negotiated on a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    pub version: String,
    pub cipher: String,
    pub group: String,
    pub alpn: String,
    pub resumed: bool,
}

/// A client TLS session over a monoio TCP stream (see the module header).
pub struct TlsStream {
    tcp: TcpStream,
    tls: ClientConnection,
    cipher_in: Vec<u8>,
    cipher_out: Vec<u8>,
}

impl TlsStream {
    /// Wraps a connected socket; nothing is sent until `handshake` or a write.
    pub fn new(tcp: TcpStream, client: &TlsClient) -> io::Result<TlsStream> {
        let tls = ClientConnection::new(client.config.clone(), client.name.clone())
            .map_err(|e| io::Error::other(TlsFailure(e)))?;
        Ok(TlsStream {
            tcp,
            tls,
            cipher_in: Vec::with_capacity(CIPHER_READ),
            cipher_out: Vec::with_capacity(4096),
        })
    }

    pub fn raw_fd(&self) -> RawFd {
        self.tcp.as_raw_fd()
    }

    /// Runs the handshake to completion.
    pub async fn handshake(&mut self) -> io::Result<()> {
        self.flush().await?;
        while self.tls.is_handshaking() {
            if self.read_records().await? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed during the TLS handshake",
                ));
            }
            self.flush().await?;
        }
        Ok(())
    }

    /// What the handshake settled on (meaningful once it completed).
    pub fn negotiated(&self) -> Negotiated {
        let version = match self.tls.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3".to_string(),
            Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2".to_string(),
            Some(v) => format!("{v:?}"),
            None => "none".to_string(),
        };
        let cipher = self
            .tls
            .negotiated_cipher_suite()
            .map_or("none".to_string(), |s| format!("{:?}", s.suite()));
        let group = self
            .tls
            .negotiated_key_exchange_group()
            .map_or("none".to_string(), |g| format!("{:?}", g.name()));
        let alpn = self.tls.alpn_protocol().map_or("none".to_string(), |p| {
            String::from_utf8_lossy(p).into_owned()
        });
        Negotiated {
            version,
            cipher,
            group,
            alpn,
            resumed: self.tls.handshake_kind() == Some(HandshakeKind::Resumed),
        }
    }

    /// Encrypts and sends all of `buf`.
    pub async fn write_all(&mut self, buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        let res = self.tls.writer().write_all(&buf).map(|()| buf.len());
        if let Err(e) = res {
            return (Err(e), buf);
        }
        match self.flush().await {
            Ok(()) => (res, buf),
            Err(e) => (Err(e), buf),
        }
    }

    /// Reads at least one plaintext byte into `dst`; 0 means the server closed the session
    /// cleanly (close_notify). A TCP close without close_notify is an error.
    pub async fn fill(&mut self, dst: &mut RecvBuf) -> io::Result<usize> {
        loop {
            match dst.fill_with(|b| self.tls.reader().read(b)) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            if self.read_records().await? == 0 {
                // End of stream: rustls now reports a clean close (Ok(0)) or a truncation.
                return dst.fill_with(|b| self.tls.reader().read(b));
            }
            // Post-handshake messages (key updates) may need an answer.
            self.flush().await?;
        }
    }

    /// Sends close_notify (best effort): the polite end of a session.
    pub async fn close(mut self) {
        self.tls.send_close_notify();
        let _ = self.flush().await;
    }

    /// Reads one batch of ciphertext from the socket and processes it; returns the bytes
    /// read (0 at end of stream, which rustls is told about).
    async fn read_records(&mut self) -> io::Result<usize> {
        let mut buf = std::mem::take(&mut self.cipher_in);
        buf.clear();
        let (res, buf) = self.tcp.read(buf).await;
        self.cipher_in = buf;
        let n = res?;
        let mut data = &self.cipher_in[..n];
        loop {
            // read_tls with an empty slice records end of stream.
            self.tls.read_tls(&mut data)?;
            if let Err(e) = self.tls.process_new_packets() {
                // Let the server know why (an alert), then fail.
                let _ = self.flush().await;
                return Err(io::Error::other(TlsFailure(e)));
            }
            if data.is_empty() {
                return Ok(n);
            }
        }
    }

    /// Sends whatever rustls has queued (handshake messages, records, alerts).
    async fn flush(&mut self) -> io::Result<()> {
        while self.tls.wants_write() {
            let mut out = std::mem::take(&mut self.cipher_out);
            out.clear();
            while self.tls.wants_write() {
                self.tls.write_tls(&mut out)?;
            }
            let (res, out) = self.tcp.write_all(out).await;
            self.cipher_out = out;
            res?;
        }
        Ok(())
    }
}

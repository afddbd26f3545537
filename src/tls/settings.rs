//! Compiled TLS settings of a listener: the rustls `ServerConfig` (TLS 1.2/1.3 only, ring
//! provider, SNI resolver, ALPN, shared ticket keys, client-certificate verification), the
//! handshake limit and what `check` and `/metrics` show about its certificates.
//!
//! Invariants: immutable once built; the config has no session cache of its own — each worker
//! uses a clone with its own bounded cache (`tls::worker::WorkerTls`), so no cache lock is
//! shared between cores, while ticket keys (`tickets`) are shared so tickets resume on any
//! worker.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use rustls::server::{NoServerSessionStorage, WebPkiClientVerifier};
use rustls::ServerConfig;
use rustls_pki_types::CertificateRevocationListDer;

use super::sni::SniResolver;
use super::tickets::Ticketer;

/// A listener's compiled TLS.
#[derive(Debug)]
pub struct ListenerTls {
    /// Certificates, SNI, ALPN, versions, client auth, tickets. Its session storage is a no-op,
    /// replaced per worker (`WorkerTls`).
    pub server: Arc<ServerConfig>,
    /// Time allowed for the whole handshake; the connection is closed after it.
    pub handshake_timeout: Duration,
    /// The certificates, in config order (for `check` and the expiry gauge).
    pub certs: Vec<CertSummary>,
    /// Entries of each worker's session cache (TLS 1.2 session ids, TLS 1.3 without tickets);
    /// 0 = none.
    pub session_cache: usize,
    /// `client_auth`'s mode and a digest of its CAs and CRLs. A worker keeps its session cache
    /// across a reload only while this is unchanged: rustls resumes a cached session with the
    /// client certificate it was made with, without verifying it again, so a session made
    /// before a CRL revoked that certificate (or before `off` became `required`) must not
    /// resume after.
    pub client_trust: String,
    /// The certificate selection, for `authority` (None: `strict_host = false`).
    pub authority: Option<Arc<SniResolver>>,
    /// One line for `check`: versions, ALPN, resumption, client certificates.
    pub description: String,
    /// The response headers this listener adds to every response.
    pub security: Arc<SecurityHeaders>,
}

/// Response headers a TLS listener owns: written on every response (proxied, local, error),
/// replacing an upstream's copy.
#[derive(Debug, Default)]
pub struct SecurityHeaders {
    /// The header lines, each ending in CRLF (empty when both are off).
    pub lines: Box<[u8]>,
    /// `strict-transport-security` is among them (`hsts`).
    pub hsts: bool,
    /// `x-content-type-options: nosniff` is among them (`nosniff`).
    pub nosniff: bool,
}

/// One certificate as `check` and `/metrics` show it.
#[derive(Clone, Debug)]
pub struct CertSummary {
    /// The `cert` path as written in the config.
    pub file: String,
    /// Names served (lowercase; wildcards as `*.example.com`).
    pub names: Vec<String>,
    /// `ECDSA P-256`, `RSA 2048`, ...
    pub key_type: String,
    /// The leaf's notAfter, Unix seconds.
    pub not_after: i64,
    /// An OCSP response is stapled.
    pub ocsp: bool,
}

/// How client certificates are verified.
pub enum ClientAuthMode {
    Off,
    Verify {
        roots: Arc<rustls::RootCertStore>,
        crls: Vec<CertificateRevocationListDer<'static>>,
        /// false: a client without a certificate is let through (`optional`).
        required: bool,
    },
}

/// What `server_config` assembles.
pub struct ServerParts {
    pub provider: Arc<rustls::crypto::CryptoProvider>,
    pub tls13_only: bool,
    pub resolver: Arc<SniResolver>,
    pub client_auth: ClientAuthMode,
    pub alpn: Vec<Vec<u8>>,
    /// Shared ticket keys; `None` = no session tickets.
    pub ticketer: Option<Arc<Ticketer>>,
}

/// Builds the shared rustls server config; the error says what rustls refused.
pub fn server_config(p: ServerParts) -> Result<Arc<ServerConfig>, String> {
    let versions: &[&rustls::SupportedProtocolVersion] = if p.tls13_only {
        &[&rustls::version::TLS13]
    } else {
        &[&rustls::version::TLS13, &rustls::version::TLS12]
    };
    let builder = ServerConfig::builder_with_provider(p.provider.clone())
        .with_protocol_versions(versions)
        .map_err(|e| format!("unusable TLS settings: {e}"))?;
    let builder = match p.client_auth {
        ClientAuthMode::Off => builder.with_no_client_auth(),
        ClientAuthMode::Verify {
            roots,
            crls,
            required,
        } => {
            let mut v = WebPkiClientVerifier::builder_with_provider(roots, p.provider.clone());
            if !crls.is_empty() {
                // The leaf's issuer must have a CRL listed; intermediates are not checked
                // (most deployments publish one CRL per issuing CA).
                v = v.with_crls(crls).only_check_end_entity_revocation();
            }
            if !required {
                v = v.allow_unauthenticated();
            }
            let verifier = v
                .build()
                .map_err(|e| format!("client_auth: cannot build the verifier: {e}"))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut cfg = builder.with_cert_resolver(p.resolver);
    // The server's suite order wins over the client's (testssl: "cipher order configured").
    cfg.ignore_client_order = true;
    cfg.alpn_protocols = p.alpn;
    cfg.session_storage = Arc::new(NoServerSessionStorage {});
    // Without tickets, TLS 1.3 resumption falls back to the worker's session cache.
    if let Some(t) = p.ticketer {
        cfg.ticketer = t;
    }
    Ok(Arc::new(cfg))
}

/// Appends `ringway_tls_certificate_expiry_seconds{listener,certificate}` (seconds until
/// notAfter, negative once expired) for every certificate of `listeners`, given `now` in Unix
/// seconds. Writes nothing when no listener has TLS.
pub fn render_expiry<'a>(
    listeners: impl Iterator<Item = (&'a str, &'a ListenerTls)>,
    now: i64,
    out: &mut String,
) {
    let mut header = false;
    for (name, tls) in listeners {
        for c in &tls.certs {
            if !header {
                out.push_str(
                    "# HELP ringway_tls_certificate_expiry_seconds Seconds until the certificate's \
                     notAfter (negative once expired).\n\
                     # TYPE ringway_tls_certificate_expiry_seconds gauge\n",
                );
                header = true;
            }
            out.push_str("ringway_tls_certificate_expiry_seconds{listener=\"");
            push_escaped(out, name);
            out.push_str("\",certificate=\"");
            push_escaped(out, &c.file);
            let _ = writeln!(out, "\"}} {}", c.not_after.saturating_sub(now));
        }
    }
}

/// A Prometheus label value: backslash, quote and newline escaped.
fn push_escaped(out: &mut String, v: &str) {
    for ch in v.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

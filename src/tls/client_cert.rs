//! Client-certificate facts: what a verified peer certificate says (subject, SANs,
//! fingerprint), parsed once per connection at the end of the handshake.

/// The verified client certificate of a TLS connection (leaf first).
#[derive(Clone, Debug)]
pub struct PeerCert {
    /// DER of the leaf certificate.
    pub der: Vec<u8>,
}

impl PeerCert {
    /// Facts from a verified chain (leaf first); `None` for an empty chain.
    pub fn from_chain(chain: &[rustls_pki_types::CertificateDer<'_>]) -> Option<PeerCert> {
        chain.first().map(|c| PeerCert { der: c.to_vec() })
    }
}

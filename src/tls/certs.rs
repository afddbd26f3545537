//! Certificate files: a PEM chain and its private key (PKCS#8, SEC1 EC or PKCS#1 RSA) loaded
//! into a `rustls::sign::CertifiedKey` through the ring provider, plus the leaf's facts that
//! `check`, SNI and the expiry gauge need (DNS SANs, validity, key type).
//!
//! Everything here runs at config compile time on the control thread (blocking file reads are
//! fine). A chain that is empty, a key that does not match the leaf, or a leaf outside its
//! validity period is an error whose message names the file; the caller positions it.

use std::path::Path;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
use x509_parser::public_key::PublicKey;

/// Largest certificate, key or OCSP file read (a chain is a few KiB).
const MAX_FILE: u64 = 1 << 20;

/// A loaded certificate with the leaf's facts.
#[derive(Clone, Debug)]
pub struct LoadedCert {
    pub key: Arc<CertifiedKey>,
    /// DNS subjectAltNames of the leaf, lowercased (wildcards kept as `*.example.com`).
    pub sans: Vec<String>,
    /// Validity of the leaf, in Unix seconds.
    pub not_before: i64,
    pub not_after: i64,
    /// For people: `ECDSA P-256`, `RSA 2048`, `Ed25519`.
    pub key_type: String,
    pub algorithm: rustls::SignatureAlgorithm,
}

/// Which file of a certificate entry is wrong, with a message naming it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CertFault {
    Cert(String),
    Key(String),
    Ocsp(String),
}

/// Reads a file of at most `MAX_FILE` bytes; the error names the file.
pub fn read_file(path: &Path, what: &str) -> Result<Vec<u8>, String> {
    let shown = path.display();
    crate::bounded_file::read(path, MAX_FILE)
        .map_err(|e| format!("cannot read {what} {shown}: {e}"))
}

/// The certificates of a PEM file, in order; an empty file is an error.
pub fn read_chain(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = read_file(path, what)?;
    let mut chain = Vec::new();
    for c in CertificateDer::pem_slice_iter(&pem) {
        chain.push(c.map_err(|e| format!("{what} {}: bad PEM: {e}", path.display()))?);
    }
    if chain.is_empty() {
        return Err(format!(
            "{what} {} holds no PEM \"CERTIFICATE\" block",
            path.display()
        ));
    }
    Ok(chain)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let pem = read_file(path, "key")?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => format!(
            "key {} holds no PEM private key (PKCS#8 \"PRIVATE KEY\", \"EC PRIVATE KEY\" or \
             \"RSA PRIVATE KEY\")",
            path.display()
        ),
        e => format!("key {}: bad PEM: {e}", path.display()),
    })
}

/// Loads `cert` (leaf first, then intermediates) and `key`, checks they belong together and
/// that the leaf is valid at `now` (Unix seconds), and staples `ocsp` (a DER OCSP response).
pub fn load(
    provider: &CryptoProvider,
    cert: &Path,
    key: &Path,
    ocsp: Option<&Path>,
    now: i64,
) -> Result<LoadedCert, CertFault> {
    let chain = read_chain(cert, "certificate").map_err(CertFault::Cert)?;
    let leaf = leaf_facts(&chain[0], cert).map_err(CertFault::Cert)?;
    check_validity(&leaf, cert, now).map_err(CertFault::Cert)?;
    let der = read_key(key).map_err(CertFault::Key)?;
    let signing = provider
        .key_provider
        .load_private_key(der)
        .map_err(|e| CertFault::Key(format!("key {}: unsupported key: {e}", key.display())))?;
    let algorithm = signing.algorithm();
    let mut certified = CertifiedKey::new(chain, signing);
    match certified.keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(_) => {
            return Err(CertFault::Key(format!(
                "key {} does not match certificate {}",
                key.display(),
                cert.display()
            )))
        }
    }
    if let Some(path) = ocsp {
        certified.ocsp = Some(read_ocsp(path).map_err(CertFault::Ocsp)?);
    }
    Ok(LoadedCert {
        key: Arc::new(certified),
        sans: leaf.sans,
        not_before: leaf.not_before,
        not_after: leaf.not_after,
        key_type: leaf.key_type,
        algorithm,
    })
}

fn check_validity(leaf: &LeafFacts, cert: &Path, now: i64) -> Result<(), String> {
    if now > leaf.not_after {
        return Err(format!(
            "certificate {} expired on {} (notAfter)",
            cert.display(),
            rfc3339(leaf.not_after)
        ));
    }
    if now < leaf.not_before {
        return Err(format!(
            "certificate {} is not valid before {} (notBefore)",
            cert.display(),
            rfc3339(leaf.not_before)
        ));
    }
    Ok(())
}

/// Unix seconds as an RFC 3339 UTC time (times before 1970 shown as 1970).
pub fn rfc3339(unix: i64) -> String {
    crate::civil::format_rfc3339(u64::try_from(unix).unwrap_or(0))
}

/// A stapled OCSP response: read as is (rustls sends it verbatim), but it must look like DER.
fn read_ocsp(path: &Path) -> Result<Vec<u8>, String> {
    let der = read_file(path, "OCSP response")?;
    if der.first() != Some(&0x30) {
        return Err(format!(
            "OCSP response {} is not a DER OCSPResponse (expected the raw .der file)",
            path.display()
        ));
    }
    Ok(der)
}

/// What `check` and SNI need from a leaf certificate.
pub struct LeafFacts {
    pub sans: Vec<String>,
    pub not_before: i64,
    pub not_after: i64,
    pub key_type: String,
}

/// Parses the leaf's DNS SANs, validity and key type.
pub fn leaf_facts(der: &CertificateDer<'_>, path: &Path) -> Result<LeafFacts, String> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| {
        format!(
            "certificate {}: cannot parse the first certificate: {e}",
            path.display()
        )
    })?;
    let mut sans = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            if let GeneralName::DNSName(d) = n {
                sans.push(d.to_ascii_lowercase());
            }
        }
    }
    let v = cert.validity();
    Ok(LeafFacts {
        sans,
        not_before: v.not_before.timestamp(),
        not_after: v.not_after.timestamp(),
        key_type: key_type(&cert),
    })
}

fn key_type(cert: &X509Certificate<'_>) -> String {
    match cert.public_key().parsed() {
        Ok(PublicKey::RSA(r)) => format!("RSA {}", r.key_size()),
        Ok(PublicKey::EC(p)) => format!("ECDSA P-{}", p.key_size()),
        Ok(PublicKey::Unknown(_))
            if cert.public_key().algorithm.algorithm.to_id_string() == "1.3.101.112" =>
        {
            "Ed25519".into()
        }
        _ => "unknown".into(),
    }
}

/// A server name or name pattern as a config may list it: DNS labels of letters, digits and
/// hyphens, optionally with `*` as the whole leftmost label (and at least two labels after it).
pub fn check_name(name: &str) -> Result<(), String> {
    let rest = name.strip_prefix("*.").unwrap_or(name);
    let labels: Vec<&str> = rest.split('.').collect();
    let ok_label = |l: &&str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if name.len() > 253 || !labels.iter().all(ok_label) {
        return Err(format!(
            "{name:?} is not a DNS name (letters, digits, '-' and '.'; `*.` only as the first label)"
        ));
    }
    if name.starts_with("*.") && labels.len() < 2 {
        return Err(format!(
            "wildcard {name:?} is too broad: write at least `*.example.com`"
        ));
    }
    Ok(())
}

/// Whether the certificate name `san` (possibly `*.example.com`) covers `name` (possibly a
/// wildcard itself, which only an identical wildcard covers). Both lowercase.
pub fn covers(san: &str, name: &str) -> bool {
    if san == name {
        return true;
    }
    match (san.strip_prefix("*."), name.starts_with("*.")) {
        (Some(suffix), false) => name
            .split_once('.')
            .is_some_and(|(first, rest)| !first.is_empty() && rest == suffix),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_coverage_is_one_label() {
        assert!(covers("api.example.com", "api.example.com"));
        assert!(covers("*.example.com", "api.example.com"));
        assert!(covers("*.example.com", "*.example.com"));
        assert!(!covers("*.example.com", "example.com"));
        assert!(!covers("*.example.com", "a.b.example.com"));
        assert!(!covers("api.example.com", "*.example.com"));
        assert!(!covers("*.example.com", "*.a.example.com"));
    }

    #[test]
    fn names_are_checked() {
        assert!(check_name("api.example.com").is_ok());
        assert!(check_name("*.example.com").is_ok());
        assert!(check_name("localhost").is_ok());
        assert!(check_name("*.com").is_err());
        assert!(check_name("a.*.com").is_err());
        assert!(check_name("exa mple.com").is_err());
        assert!(check_name("").is_err());
        assert!(check_name("a..b").is_err());
    }
}

//! SNI certificate selection: a `rustls::server::ResolvesServerCert` built once per config
//! generation and never mutated (no locks on the handshake path).
//!
//! Lookup order for a client's server name (case-insensitive): an exact name, then a one-label
//! wildcard (`*.example.com` covers `api.example.com`, not `example.com` nor `a.b.example.com`),
//! then the default certificate, or no certificate (the handshake fails) when unknown names are
//! rejected. A client that sends no SNI always gets the default. Several certificates may serve
//! one name (say ECDSA and RSA): the first whose key can sign with a scheme the client offers
//! wins, ECDSA before Ed25519 before RSA.

use std::collections::HashMap;
use std::sync::Arc;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::SignatureAlgorithm;

/// One certificate and the names it serves (lowercase; `*.example.com` for wildcards).
pub struct SniEntry {
    pub key: Arc<CertifiedKey>,
    pub names: Vec<String>,
    /// Every DNS name the certificate is valid for (its subjectAltNames, lowercase), a
    /// superset of `names`: what a client that verifies it accepts it for.
    pub sans: Vec<String>,
}

/// Indexes into `SniResolver::keys`, in preference order.
type Candidates = Box<[usize]>;

/// Certificate selection by server name (see the module header).
#[derive(Debug)]
pub struct SniResolver {
    keys: Vec<Arc<CertifiedKey>>,
    /// Per key: the DNS names its certificate is valid for.
    sans: Vec<Box<[String]>>,
    exact: HashMap<String, Candidates>,
    /// Keyed by the part after `*.`.
    wildcard: HashMap<String, Candidates>,
    default: Candidates,
    reject_unknown: bool,
}

/// Preference among certificates for one name.
fn rank(alg: SignatureAlgorithm) -> u8 {
    match alg {
        SignatureAlgorithm::ECDSA => 0,
        SignatureAlgorithm::ED25519 => 1,
        SignatureAlgorithm::RSA => 2,
        _ => 3,
    }
}

/// A build problem: the entry it is about and the message.
pub type BuildError = (usize, String);

impl SniResolver {
    /// Indexes `entries`. The default is the certificates serving `default_name` (which must be
    /// one of the names), or those serving the first entry's first name. Two entries with the
    /// same key algorithm for the same name are an error about the later one.
    pub fn build(
        entries: Vec<SniEntry>,
        default_name: Option<&str>,
        reject_unknown: bool,
    ) -> Result<SniResolver, BuildError> {
        let mut exact: HashMap<String, Vec<usize>> = HashMap::new();
        let mut wildcard: HashMap<String, Vec<usize>> = HashMap::new();
        let keys: Vec<Arc<CertifiedKey>> = entries.iter().map(|e| e.key.clone()).collect();
        for (i, e) in entries.iter().enumerate() {
            for name in &e.names {
                let (map, key) = match name.strip_prefix("*.") {
                    Some(suffix) => (&mut wildcard, suffix),
                    None => (&mut exact, name.as_str()),
                };
                let list = map.entry(key.to_string()).or_default();
                let alg = e.key.key.algorithm();
                if let Some(&j) = list.iter().find(|&&j| keys[j].key.algorithm() == alg) {
                    return Err((
                        i,
                        format!(
                            "{name} is already served by certificates[{j}] with a key of the \
                             same type ({alg:?}); list each name once per key type"
                        ),
                    ));
                }
                if !list.contains(&i) {
                    list.push(i);
                }
            }
        }
        let finish = |m: HashMap<String, Vec<usize>>| -> HashMap<String, Candidates> {
            m.into_iter()
                .map(|(k, mut v)| {
                    v.sort_by_key(|&i| rank(keys[i].key.algorithm()));
                    (k, v.into_boxed_slice())
                })
                .collect()
        };
        let mut r = SniResolver {
            sans: entries.iter().map(|e| e.sans.clone().into()).collect(),
            exact: finish(exact),
            wildcard: finish(wildcard),
            keys,
            default: Box::new([]),
            reject_unknown,
        };
        r.default = r.default_candidates(&entries, default_name)?;
        Ok(r)
    }

    fn default_candidates(
        &self,
        entries: &[SniEntry],
        default_name: Option<&str>,
    ) -> Result<Candidates, BuildError> {
        let first = entries.first().and_then(|e| e.names.first());
        let name = match (default_name, first) {
            (Some(n), _) => n.to_ascii_lowercase(),
            (None, Some(n)) => n.clone(),
            (None, None) => return Ok(Box::new([0])),
        };
        let found = match name.strip_prefix("*.") {
            Some(suffix) => self.wildcard.get(suffix),
            None => self.candidates(&name),
        };
        found.cloned().ok_or_else(|| {
            (
                usize::MAX,
                format!("no certificate serves {name:?}: default_certificate must be one of the certificates' names"),
            )
        })
    }

    /// The certificates for a lowercase server name: exact first, then one-label wildcard.
    fn candidates(&self, name: &str) -> Option<&Candidates> {
        if let Some(c) = self.exact.get(name) {
            return Some(c);
        }
        let (_, parent) = name.split_once('.')?;
        self.wildcard.get(parent)
    }

    /// Whether a connection the client opened for `sni` (the server name it sent, lowercase;
    /// `None`: it sent none) may carry a request for `host` (lowercase, no port or trailing
    /// dot): an IP address, or a name the certificate the handshake chose is valid for (the
    /// server name itself, or another name of the same certificate: HTTP/2 coalescing).
    /// Anything else was meant for a certificate, and perhaps client-certificate rules, of
    /// another listener or server: 421 (RFC 9110 15.5.20). Sending the host as the server
    /// name is not enough: with `unknown_server_name = "default"` a client that does not
    /// verify the certificate can shake hands for any name, including one only another
    /// listener serves, and gets the default certificate, which is not valid for it.
    pub fn authoritative(&self, sni: Option<&str>, host: &str) -> bool {
        if host.is_empty()
            || host
                .trim_matches(['[', ']'])
                .parse::<std::net::IpAddr>()
                .is_ok()
        {
            return true;
        }
        let serving = sni
            .and_then(|s| self.candidates(s))
            .unwrap_or(&self.default);
        serving.iter().any(|&i| {
            self.sans[i]
                .iter()
                .any(|san| super::certs::covers(san, host))
        })
    }

    /// The certificate for `server_name` and the client's signature schemes, or `None` to
    /// refuse the handshake. Exposed for tests and `check`.
    pub fn select(
        &self,
        server_name: Option<&str>,
        schemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        let group = match server_name {
            None => &self.default,
            Some(n) => {
                let lower;
                let n = if n.bytes().any(|b| b.is_ascii_uppercase()) {
                    lower = n.to_ascii_lowercase();
                    lower.as_str()
                } else {
                    n
                };
                match self.candidates(n) {
                    Some(c) => c,
                    None if self.reject_unknown => return None,
                    None => &self.default,
                }
            }
        };
        let pick = group
            .iter()
            .find(|&&i| self.keys[i].key.choose_scheme(schemes).is_some())
            .or_else(|| group.first())?;
        self.keys.get(*pick).cloned()
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.select(hello.server_name(), hello.signature_schemes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::SignatureScheme as S;

    fn key(names: &[&str], alg: &'static rcgen::SignatureAlgorithm) -> Arc<CertifiedKey> {
        let kp = rcgen::KeyPair::generate_for(alg).unwrap();
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let cert = rcgen::CertificateParams::new(names)
            .unwrap()
            .self_signed(&kp)
            .unwrap();
        let der = rustls_pki_types::PrivateKeyDer::Pkcs8(kp.serialize_der().into());
        let provider = rustls::crypto::ring::default_provider();
        Arc::new(CertifiedKey::from_der(vec![cert.der().clone()], der, &provider).unwrap())
    }

    fn entry(names: &[&str], alg: &'static rcgen::SignatureAlgorithm) -> SniEntry {
        SniEntry {
            key: key(names, alg),
            names: names.iter().map(|s| s.to_string()).collect(),
            sans: names.iter().map(|s| s.to_string()).collect(),
        }
    }

    const ALL: &[S] = &[S::ECDSA_NISTP256_SHA256, S::ED25519, S::RSA_PSS_SHA256];

    fn setup(reject: bool) -> (SniResolver, Vec<Arc<CertifiedKey>>) {
        let entries = vec![
            entry(&["api.example.com"], &rcgen::PKCS_ECDSA_P256_SHA256),
            entry(&["*.example.com"], &rcgen::PKCS_ECDSA_P256_SHA256),
            entry(&["other.test"], &rcgen::PKCS_ECDSA_P256_SHA256),
        ];
        let keys = entries.iter().map(|e| e.key.clone()).collect();
        (SniResolver::build(entries, None, reject).unwrap(), keys)
    }

    fn same(a: &Option<Arc<CertifiedKey>>, b: &Arc<CertifiedKey>) -> bool {
        a.as_ref().is_some_and(|a| Arc::ptr_eq(a, b))
    }

    #[test]
    fn exact_then_wildcard_then_default() {
        let (r, k) = setup(false);
        assert!(same(&r.select(Some("api.example.com"), ALL), &k[0]));
        assert!(same(&r.select(Some("API.Example.COM"), ALL), &k[0]));
        assert!(same(&r.select(Some("www.example.com"), ALL), &k[1]));
        // One label only: neither the apex nor two labels deep.
        assert!(same(&r.select(Some("example.com"), ALL), &k[0]));
        assert!(same(&r.select(Some("a.b.example.com"), ALL), &k[0]));
        assert!(same(&r.select(Some("other.test"), ALL), &k[2]));
        assert!(same(&r.select(None, ALL), &k[0]));
    }

    #[test]
    fn reject_refuses_unknown_names_but_not_missing_sni() {
        let (r, k) = setup(true);
        assert!(r.select(Some("unknown.test"), ALL).is_none());
        assert!(r.select(Some("a.b.example.com"), ALL).is_none());
        assert!(same(&r.select(None, ALL), &k[0]));
        assert!(same(&r.select(Some("x.example.com"), ALL), &k[1]));
    }

    #[test]
    fn picks_the_key_the_client_can_verify_preferring_ecdsa() {
        // Ed25519 listed first in the file: ECDSA still wins when the client takes both.
        let entries = vec![
            entry(&["api.example.com"], &rcgen::PKCS_ED25519),
            entry(&["api.example.com"], &rcgen::PKCS_ECDSA_P256_SHA256),
        ];
        let keys: Vec<_> = entries.iter().map(|e| e.key.clone()).collect();
        let r = SniResolver::build(entries, None, false).unwrap();
        assert!(same(&r.select(Some("api.example.com"), ALL), &keys[1]));
        assert!(same(
            &r.select(Some("api.example.com"), &[S::ED25519]),
            &keys[0]
        ));
        assert!(same(&r.select(None, &[S::ED25519]), &keys[0]));
        // Nothing the client can verify: still answer (rustls then fails the handshake).
        assert!(r
            .select(Some("api.example.com"), &[S::RSA_PSS_SHA256])
            .is_some());
    }

    #[test]
    fn a_connection_serves_only_the_names_of_its_certificates() {
        let (r, _) = setup(false);
        assert!(r.authoritative(Some("api.example.com"), "api.example.com"));
        assert!(r.authoritative(Some("www.example.com"), "www.example.com"));
        assert!(
            r.authoritative(None, "api.example.com"),
            "the default's name"
        );
        assert!(r.authoritative(Some("other.test"), "[::1]"));
        assert!(!r.authoritative(Some("api.example.com"), "other.test"));
        // The server name alone proves nothing: a client that does not verify the certificate
        // can send any name and get the default one.
        assert!(!r.authoritative(Some("partner.test"), "partner.test"));
        assert!(!r.authoritative(None, "partner.test"));
    }

    #[test]
    fn default_certificate_must_be_served_and_duplicates_are_refused() {
        let e = || vec![entry(&["api.example.com"], &rcgen::PKCS_ECDSA_P256_SHA256)];
        let err = SniResolver::build(e(), Some("nope.example.com"), false).unwrap_err();
        assert_eq!(err.0, usize::MAX);
        assert!(err.1.contains("nope.example.com"), "{}", err.1);
        let mut two = e();
        two.extend(e());
        let err = SniResolver::build(two, None, false).unwrap_err();
        assert_eq!(err.0, 1);
        assert!(err.1.contains("certificates[0]"), "{}", err.1);
        let d = entry(&["*.example.com"], &rcgen::PKCS_ECDSA_P256_SHA256);
        assert!(SniResolver::build(vec![d], Some("*.example.com"), false).is_ok());
    }
}

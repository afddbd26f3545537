//! The `client_cert` policy: who the TLS client certificate says the caller is, and whether
//! that caller may use the route. `RawClientCert` is the config table, `compile` builds a
//! `ClientCertPolicy`, `check` runs it against the connection's verified certificate facts
//! (`tls::client_cert::PeerCert`; the listener's `client_auth` already verified the chain).
//!
//! No certificate: 401 when `required` (always the case on a plain listener), else the policy
//! passes without a caller. A certificate that matches none of the allow-lists (`subjects`,
//! `sans`, `fingerprints`; any entry of any list admits it, no lists admit every verified
//! certificate): 403. `consumer` names the certificate field that becomes the consumer for
//! rate limits, `authorize` and the `x-consumer` header; that value passes
//! `http1::is_safe_header_value` or the request is refused (403), never forwarded.

use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;

use crate::config::errors::{header_name, Fail};
use crate::tls::client_cert::{canonical_dn, PeerCert};

/// `[policies.NAME.client_cert]` as written.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawClientCert {
    /// A request without a verified client certificate is refused with 401 (default true).
    pub required: Option<bool>,
    /// Subject DNs (RFC 4514) allowed, e.g. `CN=partner-a,O=Acme`.
    #[schemars(with = "Option<Vec<String>>")]
    pub subjects: Option<Vec<Spanned<String>>>,
    /// SAN values allowed: DNS names (any case), URIs, emails or IP addresses.
    #[schemars(with = "Option<Vec<String>>")]
    pub sans: Option<Vec<Spanned<String>>>,
    /// SHA-256 fingerprints of allowed leaf certificates (hex, `:` separators allowed).
    #[schemars(with = "Option<Vec<String>>")]
    pub fingerprints: Option<Vec<Spanned<String>>>,
    /// Which field names the consumer: `cn`, `san_dns`, `san_uri`, `fingerprint`, `subject`.
    #[schemars(with = "Option<String>")]
    pub consumer: Option<Spanned<String>>,
    /// Header that carries the consumer upstream (default `x-consumer`).
    #[schemars(with = "Option<String>")]
    pub consumer_header: Option<Spanned<String>>,
}

/// The certificate field that identifies the consumer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CertField {
    Cn,
    /// The first SAN dNSName.
    SanDns,
    /// The first SAN URI.
    SanUri,
    Fingerprint,
    Subject,
}

impl CertField {
    /// This field of `c`, if the certificate has it.
    pub fn of(self, c: &PeerCert) -> Option<&str> {
        match self {
            CertField::Cn => c.cn.as_deref(),
            CertField::SanDns => c.dns.first().map(|s| &**s),
            CertField::SanUri => c.uris.first().map(|s| &**s),
            CertField::Fingerprint => Some(c.fingerprint()),
            CertField::Subject => Some(&c.subject),
        }
    }
}

/// A compiled `client_cert` policy.
#[derive(Debug)]
pub struct ClientCertPolicy {
    pub required: bool,
    /// Canonical DNs (`tls::client_cert::canonical_dn`).
    pub subjects: Vec<String>,
    pub sans: Vec<String>,
    /// Lowercase hex, 64 characters each.
    pub fingerprints: Vec<String>,
    pub consumer: Option<CertField>,
    /// Lowercase header name for the consumer upstream.
    pub consumer_header: Box<[u8]>,
}

/// Why a request did not pass a `client_cert` policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CertRefusal {
    /// No verified client certificate on the connection (401).
    Missing,
    /// The certificate is on no allow-list (403).
    NotAllowed,
    /// The certificate lacks the field `consumer` names (403).
    NoConsumer,
    /// The consumer value is not a safe header value (403).
    UnsafeValue,
}

impl CertRefusal {
    /// Metric label.
    pub fn reason(self) -> &'static str {
        match self {
            CertRefusal::Missing => "missing_client_cert",
            CertRefusal::NotAllowed => "client_cert_not_allowed",
            CertRefusal::NoConsumer => "client_cert_no_consumer",
            CertRefusal::UnsafeValue => "client_cert_unsafe_value",
        }
    }

    /// Problem `detail`.
    pub fn detail(self) -> &'static str {
        match self {
            CertRefusal::Missing => "this route requires a verified TLS client certificate",
            CertRefusal::NotAllowed => "the client certificate is not allowed on this route",
            CertRefusal::NoConsumer => "the client certificate lacks the field naming the consumer",
            CertRefusal::UnsafeValue => {
                "the client certificate carries a value that cannot be forwarded"
            }
        }
    }
}

impl ClientCertPolicy {
    /// Checks the connection's certificate. `Ok(Some(consumer))` when `consumer` is set,
    /// `Ok(None)` when it passed without naming one (or, not required, without a certificate).
    pub fn check<'c>(&self, cert: Option<&'c PeerCert>) -> Result<Option<&'c str>, CertRefusal> {
        let Some(c) = cert else {
            return if self.required {
                Err(CertRefusal::Missing)
            } else {
                Ok(None)
            };
        };
        if !self.allows(c) {
            return Err(CertRefusal::NotAllowed);
        }
        let Some(field) = self.consumer else {
            return Ok(None);
        };
        let value = field.of(c).ok_or(CertRefusal::NoConsumer)?;
        if value.is_empty() || !crate::http1::is_safe_header_value(value.as_bytes()) {
            return Err(CertRefusal::UnsafeValue);
        }
        Ok(Some(value))
    }

    /// Whether `c` is on an allow-list (every certificate is, when there are none).
    pub fn allows(&self, c: &PeerCert) -> bool {
        if self.subjects.is_empty() && self.sans.is_empty() && self.fingerprints.is_empty() {
            return true;
        }
        let fp = c.fingerprint();
        self.subjects.iter().any(|s| **s == *c.subject)
            || self.fingerprints.iter().any(|f| f == fp)
            || self.sans.iter().any(|s| san_matches(s, c))
    }
}

/// An allowed SAN value against the certificate's SANs (DNS names compare ignoring case).
fn san_matches(want: &str, c: &PeerCert) -> bool {
    c.dns.iter().any(|d| d.eq_ignore_ascii_case(want))
        || c.uris.iter().any(|u| **u == *want)
        || c.emails.iter().any(|e| **e == *want)
        || want
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| c.ips.contains(&ip))
}

/// Compiles a `client_cert` table (at `table_span`); problems go to `fail` with fields relative
/// to the table and make it `None`.
pub fn compile(
    raw: &RawClientCert,
    table_span: Range<usize>,
    fail: &mut Fail<'_>,
) -> Option<ClientCertPolicy> {
    let mut ok = true;
    let mut subjects = Vec::new();
    for (i, s) in raw.subjects.iter().flatten().enumerate() {
        match canonical_dn(s.get_ref()) {
            Ok(dn) => subjects.push(dn),
            Err(e) => {
                fail(s.span(), &format!("subjects[{i}]"), e);
                ok = false;
            }
        }
    }
    let mut sans = Vec::new();
    for (i, s) in raw.sans.iter().flatten().enumerate() {
        if s.get_ref().trim().is_empty() {
            fail(s.span(), &format!("sans[{i}]"), "must not be empty".into());
            ok = false;
        }
        sans.push(s.get_ref().trim().to_string());
    }
    let mut fingerprints = Vec::new();
    for (i, f) in raw.fingerprints.iter().flatten().enumerate() {
        let hex: String = f
            .get_ref()
            .chars()
            .filter(|&c| c != ':')
            .collect::<String>()
            .to_ascii_lowercase();
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            let msg = "not a SHA-256 fingerprint: 64 hex digits, ':' separators allowed";
            fail(f.span(), &format!("fingerprints[{i}]"), msg.into());
            ok = false;
        }
        fingerprints.push(hex);
    }
    let consumer = match &raw.consumer {
        None => None,
        Some(c) => match consumer_field(c.get_ref()) {
            Some(f) => Some(f),
            None => {
                let msg = format!(
                    "unknown field {:?}: use cn, san_dns, san_uri, fingerprint or subject",
                    c.get_ref()
                );
                fail(c.span(), "consumer", msg);
                ok = false;
                None
            }
        },
    };
    let consumer_header = match &raw.consumer_header {
        None => "x-consumer".to_string(),
        Some(h) => {
            let name = header_name(fail, h, "consumer_header")?;
            if name == "x-forwarded-client-cert" {
                let msg = "x-forwarded-client-cert is written by the gateway itself";
                fail(h.span(), "consumer_header", msg.into());
                return None;
            }
            name
        }
    };
    let required = raw.required.unwrap_or(true);
    let lists = subjects.len() + sans.len() + fingerprints.len();
    if !required && consumer.is_none() && lists == 0 {
        let msg = "this policy admits every request: set required, an allow-list or consumer";
        fail(table_span, "", msg.into());
        ok = false;
    }
    ok.then_some(ClientCertPolicy {
        required,
        subjects,
        sans,
        fingerprints,
        consumer,
        consumer_header: consumer_header.into_bytes().into(),
    })
}

fn consumer_field(s: &str) -> Option<CertField> {
    Some(match s {
        "cn" => CertField::Cn,
        "san_dns" => CertField::SanDns,
        "san_uri" => CertField::SanUri,
        "fingerprint" => CertField::Fingerprint,
        "subject" => CertField::Subject,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(cn: Option<&str>) -> PeerCert {
        PeerCert::from_parts(
            "CN=partner-a,O=Acme",
            cn,
            &["Partner-A.example.com"],
            &["spiffe://acme/partner-a"],
            [0xab; 32],
        )
    }

    fn policy(src: &str) -> Result<ClientCertPolicy, Vec<String>> {
        #[derive(Deserialize, schemars::JsonSchema)]
        struct T {
            #[schemars(with = "RawClientCert")]
            client_cert: Spanned<RawClientCert>,
        }
        let t: T = toml::from_str(src).map_err(|e| vec![e.to_string()])?;
        let mut errs = Vec::new();
        let p = compile(
            t.client_cert.get_ref(),
            t.client_cert.span(),
            &mut |_, f, m| errs.push(format!("{f}: {m}")),
        );
        p.ok_or(errs)
    }

    #[test]
    fn required_and_optional() {
        let p = policy("client_cert = {}").unwrap();
        assert_eq!(p.check(None), Err(CertRefusal::Missing));
        let c = cert(Some("partner-a"));
        assert_eq!(p.check(Some(&c)), Ok(None));
        let p = policy("client_cert = { required = false, consumer = \"cn\" }").unwrap();
        assert_eq!(p.check(None), Ok(None));
        assert_eq!(p.check(Some(&c)), Ok(Some("partner-a")));
    }

    #[test]
    fn allow_lists_admit_any_matching_entry() {
        let c = cert(Some("partner-a"));
        let fp = "ab".repeat(32);
        for ok in [
            "subjects = [\"cn=partner-a, o=Acme\"]".to_string(),
            "sans = [\"partner-a.EXAMPLE.com\"]".into(),
            "sans = [\"spiffe://acme/partner-a\"]".into(),
            format!("fingerprints = [\"{}\"]", fp.to_uppercase()),
            "subjects = [\"CN=x\"], sans = [\"spiffe://acme/partner-a\"]".into(),
        ] {
            let p = policy(&format!("client_cert = {{ {ok} }}")).unwrap();
            assert_eq!(p.check(Some(&c)), Ok(None), "{ok}");
        }
        for deny in [
            "subjects = [\"CN=partner-a,O=Other\"]",
            "subjects = [\"CN=partner-a\"]",
            "sans = [\"spiffe://acme/PARTNER-A\"]",
            "sans = [\"partner-b.example.com\"]",
            "fingerprints = [\"00000000000000000000000000000000000000000000000000000000000000ab\"]",
        ] {
            let p = policy(&format!("client_cert = {{ {deny} }}")).unwrap();
            assert_eq!(p.check(Some(&c)), Err(CertRefusal::NotAllowed), "{deny}");
        }
    }

    #[test]
    fn consumer_values_must_be_safe_header_values() {
        let p = policy("client_cert = { consumer = \"cn\" }").unwrap();
        let evil = cert(Some("evil\r\nx-admin: 1"));
        assert_eq!(p.check(Some(&evil)), Err(CertRefusal::UnsafeValue));
        assert_eq!(
            p.check(Some(&cert(Some(" padded")))),
            Err(CertRefusal::UnsafeValue)
        );
        assert_eq!(p.check(Some(&cert(None))), Err(CertRefusal::NoConsumer));
        let p = policy("client_cert = { consumer = \"san_uri\" }").unwrap();
        assert_eq!(p.check(Some(&evil)), Ok(Some("spiffe://acme/partner-a")));
        let p = policy("client_cert = { consumer = \"fingerprint\" }").unwrap();
        assert_eq!(p.check(Some(&evil)), Ok(Some(&*"ab".repeat(32))));
    }

    #[test]
    fn bad_fields_are_named() {
        let e = |src: &str| policy(src).err().unwrap_or_default();
        assert_eq!(
            e("client_cert = { subjects = [\"CN=a\", \"XX=b\"] }")[0],
            "subjects[1]: unknown attribute type \"XX\": use CN, O, OU, C, L, ST, STREET, DC, \
             UID, SERIALNUMBER, emailAddress or a dotted OID"
        );
        assert_eq!(
            e("client_cert = { fingerprints = [\"abc\"] }"),
            ["fingerprints[0]: not a SHA-256 fingerprint: 64 hex digits, ':' separators allowed"]
        );
        assert_eq!(
            e("client_cert = { consumer = \"email\" }"),
            ["consumer: unknown field \"email\": use cn, san_dns, san_uri, fingerprint or subject"]
        );
        assert_eq!(
            e("client_cert = { sans = [\" \"] }"),
            ["sans[0]: must not be empty"]
        );
        assert_eq!(
            e("client_cert = { required = false }"),
            [": this policy admits every request: set required, an allow-list or consumer"]
        );
        assert!(e("client_cert = { colour = 1 }")[0].contains("unknown field"));
        assert_eq!(
            e("client_cert = { consumer_header = \"X-Forwarded-Client-Cert\" }"),
            ["consumer_header: x-forwarded-client-cert is written by the gateway itself"]
        );
    }
}

//! Client-certificate facts: what a verified peer certificate says (subject, SANs,
//! fingerprint, expiry), parsed once per connection at the end of the handshake.
//!
//! `PeerCert` keeps only the parsed facts (no DER, no chain): it lives as long as the
//! connection. The subject is rendered as an RFC 4514 string (`CN=partner-a,O=Acme`: most
//! specific RDN first). Values are escaped per RFC 4514, and every byte outside printable
//! ASCII is written as a `\XX` hex pair, so the rendered subject is always printable ASCII
//! whatever the certificate holds. `canonical_dn` renders a configured DN the same way, so the
//! two compare as strings.
//!
//! Invariants: facts come from a chain rustls already verified; a leaf x509-parser cannot
//! parse yields no facts (`None`), never partial ones.

use std::borrow::Cow;
use std::net::IpAddr;

use x509_parser::asn1_rs::{Tag, ToDer};
use x509_parser::prelude::{
    FromDer, GeneralName, RelativeDistinguishedName, X509Certificate, X509Name,
};

/// The verified client certificate of a TLS connection (facts of the leaf).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerCert {
    /// Subject DN as an RFC 4514 string (see the module header).
    pub subject: Box<str>,
    /// The subject's common name, when it has exactly one that is a string.
    pub cn: Option<Box<str>>,
    /// SAN dNSName entries, in certificate order.
    pub dns: Box<[Box<str>]>,
    /// SAN uniformResourceIdentifier entries (e.g. SPIFFE ids).
    pub uris: Box<[Box<str>]>,
    /// SAN rfc822Name entries.
    pub emails: Box<[Box<str>]>,
    /// SAN iPAddress entries.
    pub ips: Box<[IpAddr]>,
    /// Lowercase hex SHA-256 of the leaf's DER.
    fingerprint: [u8; 64],
    /// notAfter, Unix seconds.
    pub not_after: i64,
}

impl PeerCert {
    /// Facts from a verified chain (leaf first); `None` for an empty chain or a leaf that does
    /// not parse.
    pub fn from_chain(chain: &[rustls_pki_types::CertificateDer<'_>]) -> Option<PeerCert> {
        PeerCert::from_der(chain.first()?.as_ref())
    }

    /// Facts of one DER certificate.
    pub fn from_der(der: &[u8]) -> Option<PeerCert> {
        let (_, cert) = X509Certificate::from_der(der).ok()?;
        let mut subject = String::with_capacity(64);
        write_dn(cert.subject(), &mut subject);
        let mut cns = cert.subject().iter_common_name();
        let cn = match (cns.next(), cns.next()) {
            (Some(one), None) => attr_text(one.attr_value()).map(|s| s.into()),
            _ => None,
        };
        let (mut dns, mut uris, mut emails, mut ips) = (vec![], vec![], vec![], vec![]);
        if let Some(san) = cert.subject_alternative_name().ok()? {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(d) => dns.push(Box::from(*d)),
                    GeneralName::URI(u) => uris.push(Box::from(*u)),
                    GeneralName::RFC822Name(e) => emails.push(Box::from(*e)),
                    GeneralName::IPAddress(b) => ips.extend(ip_from(b)),
                    _ => {}
                }
            }
        }
        let digest = ring::digest::digest(&ring::digest::SHA256, der);
        Some(PeerCert {
            subject: subject.into(),
            cn,
            dns: dns.into(),
            uris: uris.into(),
            emails: emails.into(),
            ips: ips.into(),
            fingerprint: hex_digest(digest.as_ref()),
            not_after: cert.validity().not_after.timestamp(),
        })
    }

    /// Facts given directly (unit tests of the code that reads them).
    #[cfg(test)]
    pub fn from_parts(
        subject: &str,
        cn: Option<&str>,
        dns: &[&str],
        uris: &[&str],
        sha256: [u8; 32],
    ) -> PeerCert {
        let list = |v: &[&str]| v.iter().map(|s| Box::from(*s)).collect();
        PeerCert {
            subject: subject.into(),
            cn: cn.map(Box::from),
            dns: list(dns),
            uris: list(uris),
            emails: Box::default(),
            ips: Box::default(),
            fingerprint: hex_digest(&sha256),
            not_after: 0,
        }
    }

    /// Lowercase hex SHA-256 of the leaf certificate's DER (64 characters).
    pub fn fingerprint(&self) -> &str {
        // Only ASCII hex digits are ever written into it.
        std::str::from_utf8(&self.fingerprint).unwrap_or("")
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// A SHA-256 digest as lowercase hex.
fn hex_digest(d: &[u8]) -> [u8; 64] {
    let mut out = [0u8; 64];
    for (i, b) in d.iter().take(32).enumerate() {
        out[2 * i] = HEX[(b >> 4) as usize];
        out[2 * i + 1] = HEX[(b & 15) as usize];
    }
    out
}

fn ip_from(b: &[u8]) -> Option<IpAddr> {
    match b.len() {
        4 => <[u8; 4]>::try_from(b).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(b).ok().map(IpAddr::from),
        _ => None,
    }
}

/// Attribute types with an RFC 4514 short name (plus SERIALNUMBER and emailAddress, as OpenSSL
/// prints them).
const NAMES: [(&str, &str); 11] = [
    ("2.5.4.3", "CN"),
    ("2.5.4.5", "SERIALNUMBER"),
    ("2.5.4.6", "C"),
    ("2.5.4.7", "L"),
    ("2.5.4.8", "ST"),
    ("2.5.4.9", "STREET"),
    ("2.5.4.10", "O"),
    ("2.5.4.11", "OU"),
    ("0.9.2342.19200300.100.1.25", "DC"),
    ("0.9.2342.19200300.100.1.1", "UID"),
    ("1.2.840.113549.1.9.1", "emailAddress"),
];

/// Renders a DN as RFC 4514 text into `out`: RDNs last-to-first, attributes of a multi-valued
/// RDN sorted and joined with `+`.
fn write_dn(name: &X509Name<'_>, out: &mut String) {
    let rdns: Vec<&RelativeDistinguishedName<'_>> = name.iter_rdn().collect();
    for (i, rdn) in rdns.iter().rev().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let mut parts: Vec<String> = rdn
            .iter()
            .map(|atv| {
                let oid = atv.attr_type().to_id_string();
                let short = NAMES.iter().find(|(o, _)| *o == oid).map(|(_, n)| *n);
                let mut part = String::new();
                match (short, attr_text(atv.attr_value())) {
                    (Some(n), Some(text)) => {
                        part.push_str(n);
                        part.push('=');
                        escape_value(text.as_bytes(), &mut part);
                    }
                    // A named type with a non-string value, or an unnamed type: `OID=#hex`.
                    _ => {
                        part.push_str(&oid);
                        part.push_str("=#");
                        let ber = atv.attr_value().to_der_vec().unwrap_or_default();
                        push_hex(&ber, &mut part);
                    }
                }
                part
            })
            .collect();
        parts.sort();
        out.push_str(&parts.join("+"));
    }
}

fn push_hex(bytes: &[u8], out: &mut String) {
    for b in bytes {
        out.push(HEX[(b >> 4) as usize] as char);
        out.push(HEX[(b & 15) as usize] as char);
    }
}

/// A directory string's text: UTF8/Printable/IA5/Numeric/Visible as-is, Teletex as Latin-1,
/// BMP (UTF-16BE) and Universal (UTF-32BE) decoded. `None` for other types or bad encodings.
fn attr_text<'a>(v: &x509_parser::asn1_rs::Any<'a>) -> Option<Cow<'a, str>> {
    let data: &'a [u8] = v.data;
    match v.tag() {
        Tag::Utf8String
        | Tag::PrintableString
        | Tag::Ia5String
        | Tag::NumericString
        | Tag::VisibleString => std::str::from_utf8(data).ok().map(Cow::Borrowed),
        Tag::TeletexString => Some(Cow::Owned(data.iter().map(|&b| b as char).collect())),
        Tag::BmpString => {
            if !data.len().is_multiple_of(2) {
                return None;
            }
            let units = data
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]));
            char::decode_utf16(units)
                .collect::<Result<String, _>>()
                .ok()
                .map(Cow::Owned)
        }
        Tag::UniversalString => {
            if !data.len().is_multiple_of(4) {
                return None;
            }
            data.chunks_exact(4)
                .map(|c| char::from_u32(u32::from_be_bytes([c[0], c[1], c[2], c[3]])))
                .collect::<Option<String>>()
                .map(Cow::Owned)
        }
        _ => None,
    }
}

/// RFC 4514 value escaping: `"+,;<>\` and `=` with a backslash, a leading space or `#` and a
/// trailing space escaped, and every byte outside printable ASCII as a `\XX` hex pair.
fn escape_value(v: &[u8], out: &mut String) {
    let last = v.len().saturating_sub(1);
    for (i, &b) in v.iter().enumerate() {
        match b {
            b'"' | b'+' | b',' | b';' | b'<' | b'>' | b'\\' | b'=' => {
                out.push('\\');
                out.push(b as char);
            }
            b' ' if i == 0 || i == last => out.push_str("\\ "),
            b'#' if i == 0 => out.push_str("\\#"),
            0x20..=0x7e => out.push(b as char),
            _ => {
                out.push('\\');
                out.push(HEX[(b >> 4) as usize].to_ascii_uppercase() as char);
                out.push(HEX[(b & 15) as usize].to_ascii_uppercase() as char);
            }
        }
    }
}

/// A configured DN (RFC 4514 text, e.g. `CN=partner-a, O=Acme`) in the form `PeerCert::subject`
/// takes: type names upper-case (`2.5.4.3` or `cn` become `CN`), blanks around `,` `+` `=`
/// dropped, values unescaped and re-escaped, multi-valued RDNs sorted. `Err` says what is wrong.
pub fn canonical_dn(text: &str) -> Result<String, String> {
    let rdns = parse_dn(text.as_bytes())?;
    let mut out = String::with_capacity(text.len());
    for (i, rdn) in rdns.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let mut parts = Vec::with_capacity(rdn.len());
        for (ty, value) in rdn {
            let mut part = String::new();
            match value {
                DnValue::Text(v) => {
                    part.push_str(ty);
                    part.push('=');
                    escape_value(v, &mut part);
                }
                DnValue::Hex(h) => {
                    part.push_str(ty);
                    part.push_str("=#");
                    part.push_str(h);
                }
            }
            parts.push(part);
        }
        parts.sort();
        out.push_str(&parts.join("+"));
    }
    Ok(out)
}

enum DnValue {
    Text(Vec<u8>),
    /// `#hex` (lowercase), only for dotted-OID types.
    Hex(String),
}

type Rdn = Vec<(String, DnValue)>;

/// Splits RFC 4514 text into RDNs of (canonical type, value).
fn parse_dn(s: &[u8]) -> Result<Vec<Rdn>, String> {
    if s.iter().all(u8::is_ascii_whitespace) {
        return Err("empty distinguished name".into());
    }
    let mut rdns = vec![Vec::new()];
    let mut i = 0;
    loop {
        let eq = s[i..]
            .iter()
            .position(|&b| b == b'=')
            .ok_or_else(|| format!("missing '=' after {:?}", String::from_utf8_lossy(&s[i..])))?;
        let ty = canonical_type(&s[i..i + eq])?;
        i += eq + 1;
        let (value, end) = parse_value(s, i, ty.contains('.'))?;
        if let Some(last) = rdns.last_mut() {
            last.push((ty, value));
        }
        match s.get(end) {
            None => return Ok(rdns),
            Some(b',') => rdns.push(Vec::new()),
            Some(_) => {} // '+': same RDN
        }
        i = end + 1;
    }
}

/// An attribute type as `PeerCert::subject` writes it.
fn canonical_type(raw: &[u8]) -> Result<String, String> {
    let t = std::str::from_utf8(raw)
        .map_err(|_| "attribute type is not text".to_string())?
        .trim();
    let t = t
        .strip_prefix("OID.")
        .or_else(|| t.strip_prefix("oid."))
        .unwrap_or(t);
    if let Some((_, n)) = NAMES
        .iter()
        .find(|(oid, n)| *oid == t || n.eq_ignore_ascii_case(t))
    {
        return Ok((*n).to_string());
    }
    let dotted = !t.is_empty()
        && t.split('.').count() > 1
        && t.split('.')
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    if dotted {
        Ok(t.to_string())
    } else {
        Err(format!(
            "unknown attribute type {t:?}: use CN, O, OU, C, L, ST, STREET, DC, UID, \
             SERIALNUMBER, emailAddress or a dotted OID"
        ))
    }
}

/// One value starting at `i` (blanks around it dropped); returns it and the index of the `,`
/// or `+` that ends it (or `s.len()`).
fn parse_value(s: &[u8], mut i: usize, dotted: bool) -> Result<(DnValue, usize), String> {
    while s.get(i) == Some(&b' ') {
        i += 1;
    }
    if s.get(i) == Some(&b'#') {
        let end = s[i..]
            .iter()
            .position(|&b| b == b',' || b == b'+')
            .map_or(s.len(), |p| i + p);
        let hex = std::str::from_utf8(&s[i + 1..end]).unwrap_or("").trim();
        let ok = dotted && !hex.is_empty() && hex.len().is_multiple_of(2);
        if !ok || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(
                "a '#hex' value needs a dotted OID type and an even run of hex digits".into(),
            );
        }
        return Ok((DnValue::Hex(hex.to_ascii_lowercase()), end));
    }
    let mut v = Vec::new();
    // Length of `v` up to its last byte that is not an unescaped trailing blank.
    let mut keep = 0;
    while let Some(&b) = s.get(i) {
        match b {
            b',' | b'+' => break,
            b'\\' => {
                let (byte, used) = unescape(&s[i + 1..])?;
                v.push(byte);
                keep = v.len();
                i += 1 + used;
                continue;
            }
            b'"' | b';' | b'<' | b'>' | b'=' => {
                return Err(format!("'{}' must be escaped with a backslash", b as char));
            }
            b' ' => v.push(b),
            _ => {
                v.push(b);
                keep = v.len();
            }
        }
        i += 1;
    }
    v.truncate(keep);
    if v.is_empty() {
        return Err("empty attribute value".into());
    }
    if dotted {
        return Err("a dotted OID type needs a '#hex' value".into());
    }
    if std::str::from_utf8(&v).is_err() {
        return Err("value is not UTF-8".into());
    }
    Ok((DnValue::Text(v), i))
}

/// After a backslash: a hex pair or a special character. Returns the byte and bytes used.
fn unescape(rest: &[u8]) -> Result<(u8, usize), String> {
    let hexval = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    match rest {
        [a, b, ..] if hexval(*a).is_some() && hexval(*b).is_some() => {
            Ok(((hexval(*a).unwrap_or(0) << 4) | hexval(*b).unwrap_or(0), 2))
        }
        [c, ..] if b" \"#+,;<=>\\".contains(c) => Ok((*c, 1)),
        _ => Err("a backslash must be followed by a special character or two hex digits".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_escaped_per_rfc4514_and_kept_printable() {
        let esc = |v: &[u8]| {
            let mut s = String::new();
            escape_value(v, &mut s);
            s
        };
        assert_eq!(esc(b"Acme, Inc."), "Acme\\, Inc.");
        assert_eq!(esc(b"#lead trail "), "\\#lead trail\\ ");
        assert_eq!(esc(b" lead#"), "\\ lead#");
        assert_eq!(esc(b"a+b=c;\"d\"<e>\\"), "a\\+b\\=c\\;\\\"d\\\"\\<e\\>\\\\");
        assert_eq!(esc(b"evil\r\nx"), "evil\\0D\\0Ax");
        assert_eq!(esc("Zo\u{eb}".as_bytes()), "Zo\\C3\\AB");
    }

    #[test]
    fn configured_dns_are_canonical() {
        let c = |s: &str| canonical_dn(s).unwrap();
        assert_eq!(c("CN=partner-a,O=Acme"), "CN=partner-a,O=Acme");
        assert_eq!(
            c("cn = partner-a , o=Acme Corp "),
            "CN=partner-a,O=Acme Corp"
        );
        assert_eq!(c("2.5.4.3=x+OU=b,O=a"), "CN=x+OU=b,O=a");
        assert_eq!(c("OU=b+CN=x"), "CN=x+OU=b");
        assert_eq!(c("CN=Acme\\, Inc.,C=US"), "CN=Acme\\, Inc.,C=US");
        assert_eq!(c("CN=Zo\\c3\\ab"), "CN=Zo\\C3\\AB");
        assert_eq!(c("CN=Zo\u{eb}"), "CN=Zo\\C3\\AB");
        assert_eq!(c("CN=trail\\ "), "CN=trail\\ ");
        assert_eq!(c("1.2.3.4=#160161"), "1.2.3.4=#160161");
        assert_eq!(c("EMAILADDRESS=a@b,CN=x"), "emailAddress=a@b,CN=x");
        for bad in [
            "",
            "CN",
            "CN=",
            "XX=a",
            "CN=a;b",
            "CN=a\\",
            "CN=#0c01",
            "1.2.3=text",
            "CN=\\zz",
        ] {
            assert!(canonical_dn(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn empty_chain_and_garbage_give_no_facts() {
        assert_eq!(PeerCert::from_chain(&[]), None);
        assert_eq!(PeerCert::from_der(b"\x30\x03\x02\x01\x00"), None);
        assert_eq!(PeerCert::from_der(b""), None);
    }

    fn issue(cn: &[&str], extra: impl FnOnce(&mut rcgen::CertificateParams)) -> Vec<u8> {
        use rcgen::{CertificateParams, DnType, KeyPair};
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name = rcgen::DistinguishedName::new();
        p.distinguished_name
            .push(DnType::OrganizationName, "Acme, Inc.");
        for (i, c) in cn.iter().enumerate() {
            // rcgen keeps one entry per type: a second CN goes in under its OID.
            let ty = match i {
                0 => DnType::CommonName,
                _ => DnType::CustomDnType(vec![2, 5, 4, 3]),
            };
            p.distinguished_name.push(ty, *c);
        }
        extra(&mut p);
        let key = KeyPair::generate().unwrap();
        p.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn facts_of_a_certificate() {
        use rcgen::SanType;
        let der = issue(&["partner-a"], |p| {
            p.subject_alt_names = vec![
                SanType::DnsName("partner-a.example.com".try_into().unwrap()),
                SanType::URI("spiffe://acme/partner-a".try_into().unwrap()),
                SanType::Rfc822Name("ops@acme.example".try_into().unwrap()),
                SanType::IpAddress("10.1.2.3".parse().unwrap()),
                SanType::DnsName("b.example.com".try_into().unwrap()),
            ];
            p.not_after = rcgen::date_time_ymd(2031, 1, 2);
        });
        let c = PeerCert::from_chain(&[rustls_pki_types::CertificateDer::from(der.clone())])
            .expect("facts");
        assert_eq!(&*c.subject, "CN=partner-a,O=Acme\\, Inc.");
        assert_eq!(c.cn.as_deref(), Some("partner-a"));
        let strs = |v: &[Box<str>]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(strs(&c.dns), ["partner-a.example.com", "b.example.com"]);
        assert_eq!(strs(&c.uris), ["spiffe://acme/partner-a"]);
        assert_eq!(strs(&c.emails), ["ops@acme.example"]);
        assert_eq!(&*c.ips, ["10.1.2.3".parse::<IpAddr>().unwrap()]);
        let want = ring::digest::digest(&ring::digest::SHA256, &der);
        let hex: String = want.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(c.fingerprint(), hex);
        assert_eq!(c.not_after, 1_925_078_400); // 2031-01-02T00:00:00Z
        assert_eq!(
            canonical_dn("cn=partner-a, o=Acme\\, Inc.").unwrap(),
            &*c.subject
        );
    }

    #[test]
    fn hostile_subjects_render_printable_and_ambiguous_cns_are_none() {
        let der = issue(&["evil\r\nx-admin: 1"], |_| {});
        let c = PeerCert::from_der(&der).unwrap();
        assert_eq!(&*c.subject, "CN=evil\\0D\\0Ax-admin: 1,O=Acme\\, Inc.");
        // The raw CN keeps its bytes: whoever writes it into a header must check it.
        assert_eq!(c.cn.as_deref(), Some("evil\r\nx-admin: 1"));
        let two = PeerCert::from_der(&issue(&["a", "b"], |_| {})).unwrap();
        assert_eq!(two.cn, None, "two CNs: no single identity");
        assert!(two.subject.contains("CN=a") && two.subject.contains("CN=b"));
        let none = PeerCert::from_der(&issue(&[], |_| {})).unwrap();
        assert_eq!(none.cn, None);
        assert!(none.dns.is_empty() && none.uris.is_empty());
    }
}

//! Key parsing: PEM public keys (SPKI `PUBLIC KEY`, PKCS#1 `RSA PUBLIC KEY`) through a small
//! DER reader, and JWK Sets (RFC 7517/7518).
//!
//! Runs on the control thread (config compile) and on the JWKS fetcher threads, never on a
//! worker. Every input is untrusted: lengths are checked before slicing, nothing panics. A JWK
//! that cannot be used (unknown `kty`/`crv`, `use: "enc"`, `alg: "none"`, a key too small) is
//! skipped with a reason; the set fails only when no usable key is left.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use serde::Deserialize;

use super::alg::{Alg, Key, KeyMaterial};

// DER-encoded object identifiers (value bytes only).
const OID_RSA_ENCRYPTION: &[u8] = &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x01];
const OID_RSASSA_PSS: &[u8] = &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x0A];
const OID_EC_PUBLIC_KEY: &[u8] = &[0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x02, 0x01];
const OID_P256: &[u8] = &[0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07];
const OID_P384: &[u8] = &[0x2B, 0x81, 0x04, 0x00, 0x22];
const OID_ED25519: &[u8] = &[0x2B, 0x65, 0x70];

const TAG_INTEGER: u8 = 0x02;
const TAG_BIT_STRING: u8 = 0x03;
const TAG_OID: u8 = 0x06;
const TAG_SEQUENCE: u8 = 0x30;

/// A cursor over DER bytes: reads one tag-length-value at a time.
struct Der<'a> {
    rest: &'a [u8],
}

impl<'a> Der<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Der { rest: bytes }
    }

    fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// Reads any element: `(tag, value)`. Only single-byte tags and definite lengths (DER).
    fn any(&mut self) -> Result<(u8, &'a [u8]), String> {
        let bad = || "truncated or invalid DER".to_string();
        let (&tag, rest) = self.rest.split_first().ok_or_else(bad)?;
        if tag & 0x1F == 0x1F {
            return Err("unsupported DER tag".into());
        }
        let (&first, mut rest) = rest.split_first().ok_or_else(bad)?;
        let len = if first < 0x80 {
            first as usize
        } else {
            let n = (first & 0x7F) as usize;
            if n == 0 || n > 4 || rest.len() < n {
                return Err(bad());
            }
            let mut len = 0usize;
            for &b in &rest[..n] {
                len = (len << 8) | b as usize;
            }
            rest = &rest[n..];
            len
        };
        if rest.len() < len {
            return Err(bad());
        }
        let (value, after) = rest.split_at(len);
        self.rest = after;
        Ok((tag, value))
    }

    /// Reads an element that must have `tag`.
    fn expect(&mut self, tag: u8, what: &str) -> Result<&'a [u8], String> {
        match self.any()? {
            (t, v) if t == tag => Ok(v),
            _ => Err(format!("expected {what} in DER")),
        }
    }
}

/// Parses PEM text holding one public key. Accepts `PUBLIC KEY` (SPKI: RSA, RSASSA-PSS, EC
/// P-256/P-384, Ed25519) and `RSA PUBLIC KEY` (PKCS#1).
pub fn parse_pem_public_key(text: &str) -> Result<KeyMaterial, String> {
    let begin = text
        .find("-----BEGIN ")
        .ok_or("no PEM block (expected -----BEGIN PUBLIC KEY-----)")?;
    let after_begin = &text[begin + "-----BEGIN ".len()..];
    let label_end = after_begin
        .find("-----")
        .ok_or("malformed PEM header line")?;
    let label = &after_begin[..label_end];
    let body_start = &after_begin[label_end + 5..];
    let end_marker = format!("-----END {label}-----");
    let body_end = body_start
        .find(&end_marker)
        .ok_or_else(|| format!("PEM block has no {end_marker} line"))?;
    let b64: String = body_start[..body_end]
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    if b64.contains(':') {
        return Err("encrypted or annotated PEM blocks are not supported".into());
    }
    let der = STANDARD
        .decode(b64.as_bytes())
        .map_err(|e| format!("PEM body is not valid base64: {e}"))?;
    match label {
        "PUBLIC KEY" => parse_spki(&der),
        "RSA PUBLIC KEY" => parse_pkcs1_rsa(&der),
        l if l.contains("PRIVATE KEY") => Err(format!(
            "this is a private key ({l}); configure the public key instead"
        )),
        "CERTIFICATE" => Err(
            "certificates are not supported; extract the key with `openssl x509 -pubkey -noout`"
                .into(),
        ),
        l => Err(format!(
            "unsupported PEM block {l:?} (expected PUBLIC KEY or RSA PUBLIC KEY)"
        )),
    }
}

/// SubjectPublicKeyInfo ::= SEQUENCE { algorithm AlgorithmIdentifier, subjectPublicKey BIT STRING }
fn parse_spki(der: &[u8]) -> Result<KeyMaterial, String> {
    let mut outer = Der::new(der);
    let spki = outer.expect(TAG_SEQUENCE, "SubjectPublicKeyInfo")?;
    if !outer.is_empty() {
        return Err("trailing bytes after SubjectPublicKeyInfo".into());
    }
    let mut spki = Der::new(spki);
    let alg_id = spki.expect(TAG_SEQUENCE, "AlgorithmIdentifier")?;
    let bits = spki.expect(TAG_BIT_STRING, "subjectPublicKey")?;
    let (&unused, key) = bits.split_first().ok_or("empty subjectPublicKey")?;
    if unused != 0 {
        return Err("subjectPublicKey has unused bits".into());
    }
    let mut alg_id = Der::new(alg_id);
    let oid = alg_id.expect(TAG_OID, "algorithm OID")?;
    if oid == OID_RSA_ENCRYPTION || oid == OID_RSASSA_PSS {
        parse_pkcs1_rsa(key)
    } else if oid == OID_EC_PUBLIC_KEY {
        let curve = alg_id.expect(TAG_OID, "EC curve OID")?;
        let material = KeyMaterial::ec_point(key)?;
        let curve_ok = match &material {
            KeyMaterial::EcP256(_) => curve == OID_P256,
            KeyMaterial::EcP384(_) => curve == OID_P384,
            _ => false,
        };
        if !curve_ok {
            return Err("unsupported EC curve (P-256 and P-384 are supported)".into());
        }
        Ok(material)
    } else if oid == OID_ED25519 {
        KeyMaterial::ed25519(key)
    } else {
        Err("unsupported public key algorithm (RSA, EC P-256/P-384, Ed25519 are supported)".into())
    }
}

/// RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }
fn parse_pkcs1_rsa(der: &[u8]) -> Result<KeyMaterial, String> {
    let mut outer = Der::new(der);
    let seq = outer.expect(TAG_SEQUENCE, "RSAPublicKey")?;
    let mut seq = Der::new(seq);
    let n = seq.expect(TAG_INTEGER, "RSA modulus")?;
    let e = seq.expect(TAG_INTEGER, "RSA exponent")?;
    if n.first().is_some_and(|b| b & 0x80 != 0) || e.first().is_some_and(|b| b & 0x80 != 0) {
        return Err("negative RSA integer".into());
    }
    KeyMaterial::rsa(n, e)
}

/// Decodes JWK base64url, tolerating trailing `=` padding some issuers add.
fn b64url(s: &str) -> Result<Vec<u8>, String> {
    URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('=').as_bytes())
        .map_err(|_| "not valid base64url".to_string())
}

#[derive(Deserialize)]
struct RawJwks {
    keys: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
struct RawJwk {
    kty: String,
    kid: Option<String>,
    alg: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
    key_ops: Option<Vec<String>>,
    crv: Option<String>,
    n: Option<String>,
    e: Option<String>,
    x: Option<String>,
    y: Option<String>,
    k: Option<String>,
}

/// A parsed JWK Set: the usable keys and, for each skipped key, why.
pub struct ParsedJwks {
    pub keys: Vec<Key>,
    pub skipped: Vec<String>,
}

/// Parses a JWK Set document (`{"keys": [...]}`). Fails on malformed JSON or when no key is
/// usable; individual unusable keys are skipped.
pub fn parse_jwks(bytes: &[u8]) -> Result<ParsedJwks, String> {
    let raw: RawJwks =
        serde_json::from_slice(bytes).map_err(|e| format!("not a JWK Set document: {e}"))?;
    let mut out = ParsedJwks {
        keys: Vec::new(),
        skipped: Vec::new(),
    };
    for (i, value) in raw.keys.into_iter().enumerate() {
        let parsed = serde_json::from_value::<RawJwk>(value)
            .map_err(|e| e.to_string())
            .and_then(parse_jwk);
        match parsed {
            Ok(Some(key)) => out.keys.push(key),
            Ok(None) => {}
            Err(why) => out.skipped.push(format!("key {i}: {why}")),
        }
    }
    if out.keys.is_empty() {
        let why = if out.skipped.is_empty() {
            String::new()
        } else {
            format!(" ({})", out.skipped.join("; "))
        };
        return Err(format!("the JWK Set has no usable signature key{why}"));
    }
    Ok(out)
}

/// One JWK: `Ok(None)` for a key that is valid but not for signatures (`use: "enc"`).
fn parse_jwk(jwk: RawJwk) -> Result<Option<Key>, String> {
    if jwk.use_.as_deref() == Some("enc") {
        return Ok(None);
    }
    if let Some(ops) = &jwk.key_ops {
        if !ops.iter().any(|o| o == "verify") {
            return Ok(None);
        }
    }
    let alg = match jwk.alg.as_deref() {
        None => None,
        Some(name) => match Alg::from_name(name.as_bytes()) {
            Some(a) => Some(a),
            None => return Err(format!("unsupported alg {name:?}")),
        },
    };
    let field = |v: &Option<String>, name: &str| -> Result<Vec<u8>, String> {
        let s = v
            .as_deref()
            .ok_or_else(|| format!("missing `{name}` for kty {}", jwk.kty))?;
        b64url(s).map_err(|e| format!("`{name}` is {e}"))
    };
    let material = match jwk.kty.as_str() {
        "RSA" => KeyMaterial::rsa(&field(&jwk.n, "n")?, &field(&jwk.e, "e")?)?,
        "EC" => {
            let size = match jwk.crv.as_deref() {
                Some("P-256") => 32,
                Some("P-384") => 48,
                other => return Err(format!("unsupported EC curve {other:?}")),
            };
            let (x, y) = (field(&jwk.x, "x")?, field(&jwk.y, "y")?);
            if x.len() != size || y.len() != size {
                return Err("EC coordinates have the wrong length for the curve".into());
            }
            let mut point = Vec::with_capacity(1 + 2 * size);
            point.push(4);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            KeyMaterial::ec_point(&point)?
        }
        "OKP" => match jwk.crv.as_deref() {
            Some("Ed25519") => KeyMaterial::ed25519(&field(&jwk.x, "x")?)?,
            other => return Err(format!("unsupported OKP curve {other:?}")),
        },
        "oct" => KeyMaterial::hmac(&field(&jwk.k, "k")?)?,
        other => return Err(format!("unsupported kty {other:?}")),
    };
    let key = Key {
        kid: jwk.kid,
        alg,
        material,
    };
    if let Some(a) = alg {
        if !key.accepts(a) {
            return Err(format!(
                "alg {a} does not fit a {}",
                key.material.kind().describe()
            ));
        }
    }
    Ok(Some(key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jwt::alg::KeyKind;

    #[test]
    fn der_reader_rejects_truncation_without_panicking() {
        let good = [0x30, 0x03, 0x02, 0x01, 0x05];
        for cut in 0..good.len() {
            assert!(parse_pkcs1_rsa(&good[..cut]).is_err());
        }
        // Long-form length that claims more than is there.
        assert!(Der::new(&[0x30, 0x82, 0xFF, 0xFF, 0x00]).any().is_err());
        assert!(Der::new(&[0x30, 0x85, 1, 1, 1, 1, 1]).any().is_err());
    }

    #[test]
    fn pem_errors_are_explained() {
        let e = |t: &str| parse_pem_public_key(t).err().unwrap_or_default();
        assert!(e("nothing here").contains("no PEM block"));
        assert!(
            e("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
                .contains("private key")
        );
        assert!(e("-----BEGIN PUBLIC KEY-----\n!!!!\n-----END PUBLIC KEY-----").contains("base64"));
        assert!(e("-----BEGIN PUBLIC KEY-----\nMAA=\n").contains("END PUBLIC KEY"));
    }

    #[test]
    fn jwks_skips_enc_and_unknown_keys() {
        let x = URL_SAFE_NO_PAD.encode([7u8; 32]);
        let doc = format!(
            r#"{{"keys":[
                {{"kty":"OKP","crv":"Ed25519","x":"{x}","kid":"a"}},
                {{"kty":"OKP","crv":"Ed25519","x":"{x}","kid":"b","use":"enc"}},
                {{"kty":"OKP","crv":"X25519","x":"{x}","kid":"c"}},
                {{"kty":"oct","k":"c2VjcmV0","alg":"RS256","kid":"d"}},
                {{"kty":"oct","k":"c2VjcmV0","alg":"none","kid":"e"}},
                {{"kty":"oct","k":"c2VjcmV0","alg":"HS256","kid":"f"}}
            ]}}"#
        );
        let set = parse_jwks(doc.as_bytes()).expect("usable keys");
        let kids: Vec<_> = set.keys.iter().filter_map(|k| k.kid.clone()).collect();
        assert_eq!(kids, ["a", "f"]);
        assert_eq!(set.keys[0].material.kind(), KeyKind::Ed25519);
        assert_eq!(set.keys[1].alg, Some(Alg::HS256));
        assert_eq!(set.skipped.len(), 3, "{:?}", set.skipped);
        assert!(parse_jwks(br#"{"keys":[]}"#).is_err());
        assert!(parse_jwks(b"[1,2]").is_err());
    }
}

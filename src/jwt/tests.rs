//! Tests for the `jwt` policy: keys are generated here (RSA with the `rsa` crate, an
//! independent signer; EC and Ed25519 with `ring`), tokens are built by hand, and JWKS URLs are
//! served by a tiny HTTP server on 127.0.0.1.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{
    EcdsaKeyPair, Ed25519KeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING,
    ECDSA_P384_SHA384_FIXED_SIGNING,
};
use rsa::pkcs1::EncodeRsaPublicKey;
use rsa::pkcs8::{EncodePublicKey, LineEnding};
use rsa::signature::{RandomizedSigner, SignatureEncoding, Signer};
use rsa::traits::PublicKeyParts;
use rsa::RsaPrivateKey;
use serde_json::{json, Value};

use super::alg::{Key, KeyMaterial};
use super::*;

const NOW: u64 = 1_700_000_000;

fn enc(b: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(b)
}

fn rsa_pair() -> &'static (RsaPrivateKey, RsaPrivateKey) {
    static KEYS: OnceLock<(RsaPrivateKey, RsaPrivateKey)> = OnceLock::new();
    KEYS.get_or_init(|| {
        let mut rng = rsa::rand_core::OsRng;
        let a = RsaPrivateKey::new(&mut rng, 2048).expect("rsa keygen");
        let b = RsaPrivateKey::new(&mut rng, 2048).expect("rsa keygen");
        (a, b)
    })
}

/// A signing key of any supported kind.
enum TestKey {
    Hmac(Vec<u8>),
    Rsa(&'static RsaPrivateKey),
    P256(EcdsaKeyPair),
    P384(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
}

impl TestKey {
    fn hmac() -> TestKey {
        let mut b = vec![0u8; 32];
        ring::rand::SecureRandom::fill(&SystemRandom::new(), &mut b).expect("rng");
        // Keep it printable so it can be a TOML string.
        TestKey::Hmac(enc(b).into_bytes())
    }

    fn p256() -> TestKey {
        let rng = SystemRandom::new();
        let doc =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).expect("gen");
        TestKey::P256(
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, doc.as_ref(), &rng)
                .expect("load"),
        )
    }

    fn p384() -> TestKey {
        let rng = SystemRandom::new();
        let doc =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, &rng).expect("gen");
        TestKey::P384(
            EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, doc.as_ref(), &rng)
                .expect("load"),
        )
    }

    fn ed() -> TestKey {
        let doc = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).expect("gen");
        TestKey::Ed(Ed25519KeyPair::from_pkcs8(doc.as_ref()).expect("load"))
    }

    /// A fresh key of the kind `alg` needs; `second` picks the other RSA key.
    fn for_alg(alg: Alg, second: bool) -> TestKey {
        match alg.key_kind() {
            KeyKind::Hmac => TestKey::hmac(),
            KeyKind::Rsa => TestKey::Rsa(if second { &rsa_pair().1 } else { &rsa_pair().0 }),
            KeyKind::EcP256 => TestKey::p256(),
            KeyKind::EcP384 => TestKey::p384(),
            KeyKind::Ed25519 => TestKey::ed(),
        }
    }

    fn sign(&self, alg: &str, msg: &[u8]) -> Vec<u8> {
        use rsa::sha2::{Sha256, Sha384, Sha512};
        let rng = SystemRandom::new();
        match self {
            TestKey::Hmac(secret) => {
                let digest = match alg {
                    "HS384" => ring::hmac::HMAC_SHA384,
                    "HS512" => ring::hmac::HMAC_SHA512,
                    _ => ring::hmac::HMAC_SHA256,
                };
                ring::hmac::sign(&ring::hmac::Key::new(digest, secret), msg)
                    .as_ref()
                    .to_vec()
            }
            TestKey::Rsa(key) => {
                let key = (*key).clone();
                let mut r = rsa::rand_core::OsRng;
                match alg {
                    "RS256" => rsa::pkcs1v15::SigningKey::<Sha256>::new(key)
                        .sign(msg)
                        .to_vec(),
                    "RS384" => rsa::pkcs1v15::SigningKey::<Sha384>::new(key)
                        .sign(msg)
                        .to_vec(),
                    "RS512" => rsa::pkcs1v15::SigningKey::<Sha512>::new(key)
                        .sign(msg)
                        .to_vec(),
                    "PS256" => rsa::pss::BlindedSigningKey::<Sha256>::new(key)
                        .sign_with_rng(&mut r, msg)
                        .to_vec(),
                    "PS384" => rsa::pss::BlindedSigningKey::<Sha384>::new(key)
                        .sign_with_rng(&mut r, msg)
                        .to_vec(),
                    _ => rsa::pss::BlindedSigningKey::<Sha512>::new(key)
                        .sign_with_rng(&mut r, msg)
                        .to_vec(),
                }
            }
            TestKey::P256(k) | TestKey::P384(k) => {
                k.sign(&rng, msg).expect("sign").as_ref().to_vec()
            }
            TestKey::Ed(k) => k.sign(msg).as_ref().to_vec(),
        }
    }

    /// TOML key lines configuring this key; `pkcs1` picks `RSA PUBLIC KEY` PEM for RSA.
    fn config(&self, pkcs1: bool) -> String {
        match self {
            TestKey::Hmac(s) => format!("secret = {:?}", String::from_utf8_lossy(s)),
            other => format!("public_key = \"\"\"\n{}\"\"\"", other.public_pem(pkcs1)),
        }
    }

    fn public_pem(&self, pkcs1: bool) -> String {
        match self {
            TestKey::Hmac(_) => String::new(),
            TestKey::Rsa(k) if pkcs1 => {
                k.to_public_key().to_pkcs1_pem(LineEnding::LF).expect("pem")
            }
            TestKey::Rsa(k) => k
                .to_public_key()
                .to_public_key_pem(LineEnding::LF)
                .expect("pem"),
            TestKey::P256(k) => pem(&spki(P256_PREFIX, k.public_key().as_ref())),
            TestKey::P384(k) => pem(&spki(P384_PREFIX, k.public_key().as_ref())),
            TestKey::Ed(k) => pem(&spki(ED25519_PREFIX, k.public_key().as_ref())),
        }
    }

    /// This key as a JWK (public part), with `kid`.
    fn jwk(&self, kid: &str) -> Value {
        match self {
            TestKey::Hmac(s) => json!({"kty": "oct", "kid": kid, "k": enc(s)}),
            TestKey::Rsa(k) => json!({
                "kty": "RSA", "kid": kid, "use": "sig",
                "n": enc(k.n().to_bytes_be()), "e": enc(k.e().to_bytes_be()),
            }),
            TestKey::P256(k) | TestKey::P384(k) => {
                let p = k.public_key().as_ref();
                let size = (p.len() - 1) / 2;
                let crv = if size == 32 { "P-256" } else { "P-384" };
                json!({"kty": "EC", "kid": kid, "crv": crv,
                       "x": enc(&p[1..1 + size]), "y": enc(&p[1 + size..])})
            }
            TestKey::Ed(k) => {
                json!({"kty": "OKP", "kid": kid, "crv": "Ed25519", "x": enc(k.public_key())})
            }
        }
    }
}

// SubjectPublicKeyInfo prefixes (SEQUENCE, AlgorithmIdentifier, BIT STRING header).
const P256_PREFIX: &[u8] = &[
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x02, 0x01, 0x06, 0x08, 0x2A,
    0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];
const P384_PREFIX: &[u8] = &[
    0x30, 0x76, 0x30, 0x10, 0x06, 0x07, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x02, 0x01, 0x06, 0x05, 0x2B,
    0x81, 0x04, 0x00, 0x22, 0x03, 0x62, 0x00,
];
const ED25519_PREFIX: &[u8] = &[
    0x30, 0x2A, 0x30, 0x05, 0x06, 0x03, 0x2B, 0x65, 0x70, 0x03, 0x21, 0x00,
];

fn spki(prefix: &[u8], key: &[u8]) -> Vec<u8> {
    [prefix, key].concat()
}

fn pem(der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = String::from("-----BEGIN PUBLIC KEY-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str("-----END PUBLIC KEY-----\n");
    out
}

/// A signed token with `header_extra` JSON members (`,"kid":"a"`) appended to the header.
fn token(key: &TestKey, alg: &str, header_extra: &str, claims: &Value) -> String {
    let header = format!(r#"{{"alg":"{alg}","typ":"JWT"{header_extra}}}"#);
    let msg = format!("{}.{}", enc(header), enc(claims.to_string()));
    let sig = key.sign(alg, msg.as_bytes());
    format!("{msg}.{}", enc(sig))
}

fn claims() -> Value {
    json!({"sub": "alice", "exp": NOW + 600, "iat": NOW})
}

/// Compiles a `jwt` table written as TOML, or returns `(field, message, spanned text)` errors.
fn try_compile(
    src: &str,
    base: &Path,
    fetchers: &JwksFetchers,
) -> Result<Arc<JwtPolicy>, Vec<(String, String, String)>> {
    let raw: RawJwt =
        toml::from_str(src).map_err(|e| vec![("".into(), e.to_string(), "".into())])?;
    let mut errors = Vec::new();
    let policy = compile(
        &raw,
        0..src.len(),
        base,
        fetchers,
        &mut |span, field, msg| {
            let text = src.get(span).unwrap_or_default().to_string();
            errors.push((field.to_string(), msg, text));
        },
    );
    match policy {
        Some(p) if errors.is_empty() => Ok(p),
        _ => Err(errors),
    }
}

fn policy(src: &str) -> Arc<JwtPolicy> {
    match try_compile(src, Path::new("."), &JwksFetchers::new()) {
        Ok(p) => p,
        Err(e) => panic!("config should compile: {e:?}\n{src}"),
    }
}

fn compile_errors(src: &str) -> Vec<(String, String, String)> {
    match try_compile(src, Path::new("."), &JwksFetchers::new()) {
        Ok(_) => panic!("config should not compile:\n{src}"),
        Err(e) => e,
    }
}

fn check(p: &JwtPolicy, token: &str) -> Result<Arc<Verified>, JwtError> {
    p.verify(token.as_bytes(), NOW, &mut TokenCache::new(0))
}

#[test]
fn every_algorithm_verifies_and_rejects_tampering_and_wrong_keys() {
    for (i, alg) in ALL_ALGS.into_iter().enumerate() {
        let name = alg.name();
        let key = TestKey::for_alg(alg, false);
        let wrong = TestKey::for_alg(alg, true);
        let p = policy(&format!(
            "algorithms = [\"{name}\"]\n{}\n",
            key.config(i % 2 == 1)
        ));
        let good = token(&key, name, "", &claims());
        let v = check(&p, &good).unwrap_or_else(|e| panic!("{name}: {e:?}"));
        assert_eq!(v.consumer.as_deref(), Some("alice"), "{name}");
        assert_eq!(v.exp, Some(NOW + 600));

        // Same header and signature, different payload.
        let parts: Vec<&str> = good.split('.').collect();
        let forged = json!({"sub": "mallory", "exp": NOW + 600});
        let tampered = format!("{}.{}.{}", parts[0], enc(forged.to_string()), parts[2]);
        assert_eq!(
            check(&p, &tampered).err(),
            Some(JwtError::BadSignature),
            "{name}"
        );
        let truncated = format!(
            "{}.{}.{}",
            parts[0],
            parts[1],
            &parts[2][..parts[2].len() / 2]
        );
        assert!(check(&p, &truncated).is_err(), "{name}");
        let unsigned = format!("{}.{}.", parts[0], parts[1]);
        assert_eq!(
            check(&p, &unsigned).err(),
            Some(JwtError::BadSignature),
            "{name}"
        );

        let by_other = token(&wrong, name, "", &claims());
        assert_eq!(
            check(&p, &by_other).err(),
            Some(JwtError::BadSignature),
            "{name}"
        );
    }
}

#[test]
fn rsa_pem_encodings_and_family_algorithms() {
    let key = TestKey::for_alg(Alg::RS256, false);
    for pkcs1 in [false, true] {
        let p = policy(&key.config(pkcs1));
        // Default allow-list for an RSA key: RS* and PS*.
        for alg in ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"] {
            assert!(check(&p, &token(&key, alg, "", &claims())).is_ok(), "{alg}");
        }
        let hs = token(&TestKey::hmac(), "HS256", "", &claims());
        assert_eq!(check(&p, &hs).err(), Some(JwtError::BadAlgorithm));
    }
}

#[test]
fn alg_none_is_never_accepted() {
    let key = TestKey::hmac();
    let p = policy(&key.config(false));
    for alg in ["none", "None", "NONE", "nOnE"] {
        let t = format!(
            "{}.{}.",
            enc(format!(r#"{{"alg":"{alg}"}}"#)),
            enc(claims().to_string())
        );
        assert_eq!(check(&p, &t).err(), Some(JwtError::BadAlgorithm), "{alg}");
    }
    for list in [r#"["none"]"#, r#"["HS256", "none"]"#, r#"["None"]"#] {
        let errs = compile_errors(&format!("algorithms = {list}\n{}", key.config(false)));
        assert!(
            errs.iter().any(|(f, m, text)| f == "algorithms"
                && m.contains("never accepted")
                && text.eq_ignore_ascii_case("\"none\"")),
            "{errs:?}"
        );
    }
}

#[test]
fn algorithm_outside_the_allow_list_is_refused() {
    let key = TestKey::hmac();
    let p = policy(&format!("algorithms = [\"HS256\"]\n{}", key.config(false)));
    assert!(check(&p, &token(&key, "HS256", "", &claims())).is_ok());
    for alg in ["HS384", "HS512", "RS256", "hs256", "XX999"] {
        let t = token(&key, alg, "", &claims());
        assert_eq!(check(&p, &t).err(), Some(JwtError::BadAlgorithm), "{alg}");
    }
}

#[test]
fn hmac_with_an_rsa_public_key_is_refused() {
    // The classic confusion attack: sign HS256 with the server's RSA public key as the secret.
    let rsa = TestKey::for_alg(Alg::RS256, false);
    let pem_text = rsa.public_pem(false);
    let TestKey::Rsa(private) = &rsa else {
        unreachable!()
    };
    let der = private.to_public_key().to_public_key_der().expect("der");
    let candidates = [
        pem_text.as_bytes().to_vec(),
        pem_text.trim_end().as_bytes().to_vec(),
        der.as_bytes().to_vec(),
        private.n().to_bytes_be(),
    ];
    // RSA only: HS256 is not even allowed.
    let p = policy(&rsa.config(false));
    // RSA and an unrelated HMAC secret both allowed: the RSA key still never acts as a secret.
    let both = policy(&format!(
        "algorithms = [\"RS256\", \"HS256\"]\nsecret = \"another-secret-another-secret-another\"\n{}",
        rsa.config(false)
    ));
    for secret in candidates {
        let forged = token(&TestKey::Hmac(secret), "HS256", "", &claims());
        assert_eq!(check(&p, &forged).err(), Some(JwtError::BadAlgorithm));
        assert_eq!(check(&both, &forged).err(), Some(JwtError::BadSignature));
    }
    assert!(check(&both, &token(&rsa, "RS256", "", &claims())).is_ok());
    // At key level too: an RSA key refuses every HMAC algorithm outright.
    let TestKey::Rsa(k) = &rsa else {
        unreachable!()
    };
    let key =
        Key::new(KeyMaterial::rsa(&k.n().to_bytes_be(), &k.e().to_bytes_be()).expect("rsa key"));
    assert!(!key.accepts(Alg::HS256) && !key.verify(Alg::HS256, b"m", &[0; 32]));
}

#[test]
fn expiry_not_before_and_leeway() {
    let key = TestKey::hmac();
    // `exp` is required by default.
    let default = policy(&key.config(false));
    let t = token(&key, "HS256", "", &json!({"nbf": NOW - 5}));
    assert_eq!(check(&default, &t).err(), Some(JwtError::MissingExpiry));
    let t = token(&key, "HS256", "", &json!({"exp": NOW + 5}));
    assert!(check(&default, &t).is_ok());
    // The rest with the opt-out, so `nbf` alone can be tested. Leeway 30s by default.
    let p = policy(&format!("require_exp = false\n{}", key.config(false)));
    let at = |c: Value| check(&p, &token(&key, "HS256", "", &c)).map(|_| ()).err();
    assert_eq!(at(json!({"exp": NOW - 100})), Some(JwtError::Expired));
    assert_eq!(at(json!({"exp": NOW - 10})), None, "within leeway");
    assert_eq!(
        at(json!({"exp": NOW - 30})),
        Some(JwtError::Expired),
        "leeway edge"
    );
    assert_eq!(at(json!({"nbf": NOW + 100})), Some(JwtError::NotYetValid));
    assert_eq!(at(json!({"nbf": NOW + 10})), None, "within leeway");
    assert_eq!(
        at(json!({"exp": (NOW + 60) as f64 + 0.5})),
        None,
        "fractional"
    );
    assert_eq!(at(json!({"exp": -5})), Some(JwtError::Expired));
    assert_eq!(at(json!({"exp": "tomorrow"})), Some(JwtError::Malformed));
    assert_eq!(at(json!({"nbf": null})), Some(JwtError::Malformed));
    assert_eq!(at(json!({})), None, "exp is optional");

    let strict = policy(&format!(
        "leeway = \"0s\"\nrequire_exp = false\n{}",
        key.config(false)
    ));
    let t = token(&key, "HS256", "", &json!({"exp": NOW - 10}));
    assert_eq!(check(&strict, &t).err(), Some(JwtError::Expired));
    let t = token(&key, "HS256", "", &json!({"exp": NOW}));
    assert_eq!(
        check(&strict, &t).err(),
        Some(JwtError::Expired),
        "exp is exclusive"
    );
    let t = token(&key, "HS256", "", &json!({"nbf": NOW}));
    assert!(check(&strict, &t).is_ok(), "nbf is inclusive");
}

#[test]
fn issuer_audience_and_required_claims() {
    let key = TestKey::hmac();
    let p = policy(&format!(
        "issuer = \"https://issuer.example\"\naudiences = [\"api\", \"web\"]\n\
         required_claims = {{ tenant = \"acme\", tier = 2, beta = true }}\n{}",
        key.config(false)
    ));
    let base = json!({"iss": "https://issuer.example", "aud": "api", "exp": NOW + 600,
                      "tenant": "acme", "tier": 2, "beta": true});
    let with = |edit: &dyn Fn(&mut Value)| {
        let mut c = base.clone();
        edit(&mut c);
        check(&p, &token(&key, "HS256", "", &c)).map(|_| ()).err()
    };
    assert_eq!(with(&|_| {}), None);
    assert_eq!(with(&|c| c["aud"] = json!(["x", "web"])), None);
    assert_eq!(
        with(&|c| c["aud"] = json!("other")),
        Some(JwtError::BadAudience)
    );
    assert_eq!(
        with(&|c| c["aud"] = json!(["x", "y"])),
        Some(JwtError::BadAudience)
    );
    assert_eq!(with(&|c| c["aud"] = json!(7)), Some(JwtError::BadAudience));
    assert_eq!(
        with(&|c| {
            c.as_object_mut().map(|o| o.remove("aud"));
        }),
        Some(JwtError::BadAudience)
    );
    assert_eq!(
        with(&|c| c["iss"] = json!("https://evil.example")),
        Some(JwtError::BadIssuer)
    );
    assert_eq!(
        with(&|c| {
            c.as_object_mut().map(|o| o.remove("iss"));
        }),
        Some(JwtError::BadIssuer)
    );
    assert_eq!(
        with(&|c| c["tenant"] = json!("other")),
        Some(JwtError::MissingClaim)
    );
    assert_eq!(
        with(&|c| c["tier"] = json!("2")),
        Some(JwtError::MissingClaim)
    );
    assert_eq!(
        with(&|c| {
            c.as_object_mut().map(|o| o.remove("beta"));
        }),
        Some(JwtError::MissingClaim)
    );
}

#[test]
fn claims_map_to_consumer_scopes_and_headers() {
    let key = TestKey::hmac();
    let p = policy(&format!(
        "consumer_claim = \"email\"\n\
         claims_to_headers = {{ email = \"X-User-Email\", roles = \"x-roles\", admin = \"x-admin\", \
         level = \"x-level\", evil = \"x-evil\", absent = \"x-absent\", org = \"x-org\" }}\n{}",
        key.config(false)
    ));
    let mut c = json!({"sub": "u1", "email": "a@example.com", "roles": ["r1", "r2", 3],
                   "admin": true, "level": 3, "org": {"id": 1}, "exp": NOW + 600,
                   "scope": "read  write", "scp": ["extra"]});
    let v = check(&p, &token(&key, "HS256", "", &c)).expect("valid");
    assert_eq!(v.consumer.as_deref(), Some("a@example.com"));
    assert_eq!(v.scopes, ["read", "write", "extra"]);
    assert!(v.has_scope("write") && !v.has_scope("admin"));
    let mut headers = v.headers.clone();
    headers.sort();
    assert_eq!(
        headers,
        [
            ("x-admin".to_string(), "true".to_string()),
            ("x-level".into(), "3".into()),
            ("x-org".into(), r#"{"id":1}"#.into()),
            ("x-roles".into(), "r1,r2,3".into()),
            ("x-user-email".into(), "a@example.com".into()),
        ]
    );
    assert_eq!(v.claims.get("sub"), Some(&json!("u1")));
    // A mapped claim or the consumer that is not a safe header value refuses the whole token.
    for (claim, evil) in [
        ("evil", json!("x\r\nhost: evil")),
        ("evil", json!(["ok", "a\nb"])),
        ("evil", json!("trailing ")),
        ("email", json!("a@example.com\r\nX-Injected: 1")),
        ("email", json!("a\u{0}b")),
    ] {
        c[claim] = evil.clone();
        assert_eq!(
            check(&p, &token(&key, "HS256", "", &c)).err(),
            Some(JwtError::UnsafeClaim),
            "{claim}: {evil}"
        );
        c["email"] = json!("a@example.com");
        c.as_object_mut().map(|o| o.remove("evil"));
    }
    // An unmapped claim may hold anything.
    c["note"] = json!("multi\nline");
    assert!(check(&p, &token(&key, "HS256", "", &c)).is_ok());
    let mut names: Vec<_> = p.forwarded_header_names().collect();
    names.sort();
    assert!(names.contains(&"x-user-email") && names.len() == 7);

    // Default consumer claim is `sub`; a numeric sub is stringified.
    let p = policy(&key.config(false));
    let v = check(
        &p,
        &token(
            &key,
            "HS256",
            "",
            &json!({"sub": 42, "scp": "a b", "exp": NOW + 60}),
        ),
    )
    .expect("ok");
    assert_eq!(v.consumer.as_deref(), Some("42"));
    assert_eq!(v.scopes, ["a", "b"]);
}

#[test]
fn token_from_header_forms() {
    let key = TestKey::hmac();
    let p = policy(&key.config(false));
    assert_eq!(p.header_name(), "authorization");
    assert_eq!(
        p.token_from_header(b"Bearer abc.def.ghi"),
        Some(&b"abc.def.ghi"[..])
    );
    assert_eq!(p.token_from_header(b"  bEaReR \t abc  "), Some(&b"abc"[..]));
    assert_eq!(p.token_from_header(b"Basic dXNlcjpwYXNz"), None);
    assert_eq!(p.token_from_header(b"Bearer"), None);
    assert_eq!(p.token_from_header(b"Bearer   "), None);
    assert_eq!(p.token_from_header(b"abc.def.ghi"), None);
    assert_eq!(p.token_from_header(b""), None);
    let custom = policy(&format!("header = \"X-Token\"\n{}", key.config(false)));
    assert_eq!(custom.header_name(), "x-token");
    assert_eq!(
        custom.token_from_header(b"abc.def.ghi"),
        Some(&b"abc.def.ghi"[..])
    );
    assert_eq!(custom.token_from_header(b"Bearer abc"), Some(&b"abc"[..]));
    assert_eq!(custom.token_from_header(b"a b"), None);
}

#[test]
fn malformed_tokens_are_malformed() {
    let key = TestKey::hmac();
    let p = policy(&key.config(false));
    let signed = |header: &str, payload: &str| {
        let msg = format!("{}.{}", enc(header), enc(payload));
        let sig = key.sign("HS256", msg.as_bytes());
        format!("{msg}.{}", enc(sig))
    };
    let h = enc(r#"{"alg":"HS256"}"#);
    let cases = [
        "a.b".to_string(),
        "a.b.c.d".to_string(),
        "...".to_string(),
        ".".to_string(),
        "abc".to_string(),
        format!("!!!.{h}.{h}"),
        format!("{h}.a=.b"),
        format!("{h}.{h}.a+/"),
        format!("{}.{h}.{h}", enc("{not json")),
        format!("{}.{h}.{h}", enc(r#"{"typ":"JWT"}"#)),
        format!("{}.{h}.{h}", enc(r#"{"alg":5}"#)),
        format!("{}.{h}.{h}", enc("[\"HS256\"]")),
        signed(r#"{"alg":"HS256"}"#, "{not json"),
        signed(r#"{"alg":"HS256"}"#, "[1,2]"),
        signed(r#"{"alg":"HS256"}"#, "\"str\""),
        signed(r#"{"alg":"HS256","crit":["exp"],"exp":1}"#, "{}"),
        signed(r#"{"alg":"HS256","crit":null}"#, "{}"),
        signed(r#"{"alg":"HS256","crit":[]}"#, "{}"),
        signed(r#"{"alg":"HS256","alg":"HS256"}"#, "{}"),
        "a".repeat(MAX_TOKEN_LEN + 1),
    ];
    for t in &cases {
        assert_eq!(check(&p, t).err(), Some(JwtError::Malformed), "{t}");
    }
    assert_eq!(check(&p, "").err(), Some(JwtError::Missing));
}

/// Deterministic xorshift, so a failure reproduces.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn fuzzed_tokens_never_panic_and_mutations_never_verify() {
    let key = TestKey::hmac();
    let p = policy(&format!(
        "audience = \"api\"\nclaims_to_headers = {{ sub = \"x-sub\" }}\n{}",
        key.config(false)
    ));
    let mut cache = TokenCache::new(64);
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let alphabet = b"ABCxyz019-_.=+/ {}\"\x00\xff";
    for _ in 0..3000 {
        let len = rng.below(200);
        let t: Vec<u8> = (0..len)
            .map(|_| {
                if rng.below(2) == 0 {
                    alphabet[rng.below(alphabet.len())]
                } else {
                    rng.next() as u8
                }
            })
            .collect();
        let _ = p.verify(&t, NOW, &mut cache);
    }
    let good = token(
        &key,
        "HS256",
        "",
        &json!({"sub": "s", "aud": "api", "exp": NOW + 60}),
    );
    assert!(check(&p, &good).is_ok());
    for _ in 0..3000 {
        let mut t = good.clone().into_bytes();
        let i = rng.below(t.len());
        let c = alphabet[rng.below(alphabet.len())];
        if t[i] == c {
            continue;
        }
        t[i] = c;
        if rng.below(4) == 0 {
            let cut = rng.below(t.len());
            t.truncate(cut);
        }
        assert!(
            p.verify(&t, NOW, &mut cache).is_err(),
            "{}",
            String::from_utf8_lossy(&t)
        );
    }
    // Structurally valid parts with random JSON-ish payloads, properly signed.
    for _ in 0..1000 {
        let len = rng.below(40);
        let payload: Vec<u8> = (0..len)
            .map(|_| b"{}[]\":,0e.-aud12"[rng.below(16)])
            .collect();
        let msg = format!("{}.{}", enc(r#"{"alg":"HS256"}"#), enc(&payload));
        let t = format!("{msg}.{}", enc(key.sign("HS256", msg.as_bytes())));
        let _ = p.verify(t.as_bytes(), NOW, &mut cache);
    }
}

#[test]
fn config_errors_name_the_field() {
    let has = |src: &str, field: &str, needle: &str| {
        let errs = compile_errors(src);
        assert!(
            errs.iter()
                .any(|(f, m, _)| f == field && m.contains(needle)),
            "expected {field}: …{needle}… in {errs:?}"
        );
    };
    has("audience = \"x\"", "", "needs a key");
    // `issuer` alone means OIDC discovery: the issuer must be a URL fit to fetch keys from.
    has("issuer = \"x\"", "issuer", "not an http:// or https:// URL");
    has("issuer = \"http://idp.test\"", "issuer", "use https://");
    has(
        "issuer = \"https://idp.test\"\nissuers = [\"https://b.test\"]",
        "issuers",
        "reads one issuer",
    );
    has(
        "algorithms = [\"hs256\"]\nsecret = \"0123456789abcdef0123456789abcdef\"",
        "algorithms",
        "did you mean HS256",
    );
    has(
        "algorithms = []\nsecret = \"0123456789abcdef0123456789abcdef\"",
        "algorithms",
        "at least one",
    );
    has(
        "secret = \"0123456789abcdef0123456789abcdef\"\nsecret_env = \"PATH\"",
        "secret_env",
        "not both",
    );
    has(
        "secret_env = \"RINGWAY_TEST_SURELY_UNSET_VAR\"",
        "secret_env",
        "not set",
    );
    has("secret = \"\"", "secret", "empty");
    has(
        "secret = \"0123456789abcdef0123456789abcde\"",
        "secret",
        "is 31 bytes; use at least 32",
    );
    has(
        "jwks_url = \"http://keys.example.com/jwks\"",
        "jwks_url",
        "use https://",
    );
    has(
        "jwks_url = \"http://10.0.0.1/jwks\"",
        "jwks_url",
        "use https://",
    );
    has("require_exp = \"no\"", "", "invalid type");
    has(
        "algorithms = [\"HS256\", \"RS256\"]\nsecret = \"0123456789abcdef0123456789abcdef\"",
        "algorithms",
        "RS256 is allowed",
    );
    let rsa = TestKey::for_alg(Alg::RS256, false).config(false);
    has(
        &format!("algorithms = [\"RS256\"]\nsecret = \"0123456789abcdef0123456789abcdef\"\n{rsa}"),
        "secret",
        "none of the allowed",
    );
    has(
        "secret = \"0123456789abcdef0123456789abcdef\"\nclaims_to_headers = { sub = \"content-length\" }",
        "claims_to_headers.sub",
        "cannot set",
    );
    has(
        "secret = \"0123456789abcdef0123456789abcdef\"\nclaims_to_headers = { sub = \"x y\" }",
        "claims_to_headers.sub",
        "not a valid header",
    );
    has(
        "secret = \"0123456789abcdef0123456789abcdef\"\nclaims_to_headers = { sub = \"x-a\", iss = \"X-A\" }",
        "claims_to_headers.sub",
        "already set",
    );
    has(
        "secret = \"0123456789abcdef0123456789abcdef\"\nrequired_claims = { at = 1979-05-27 }",
        "required_claims.at",
        "dates",
    );
    has(
        "secret = \"0123456789abcdef0123456789abcdef\"\nrefresh = \"1m\"",
        "refresh",
        "only applies",
    );
    has(
        "jwks_url = \"ftp://example.com/jwks\"",
        "jwks_url",
        "not an http",
    );
    has(
        "jwks_url = \"http://127.0.0.1:1/x\"\nmin_refresh = \"0s\"",
        "min_refresh",
        "greater than zero",
    );
    has(
        "secret = \"0123456789abcdef0123456789abcdef\"\nissuer = \"a\"\nissuers = [\"b\"]",
        "issuers",
        "not both",
    );
    has(
        "secret = \"0123456789abcdef0123456789abcdef\"\naudiences = []",
        "audiences",
        "must not be empty",
    );
    has(
        "secret = \"0123456789abcdef0123456789abcdef\"\nheader = \"bad header\"",
        "header",
        "not a valid header",
    );
    has(
        "public_key = \"-----BEGIN PRIVATE KEY-----\\nAAAA\\n-----END PRIVATE KEY-----\"",
        "public_key",
        "private key",
    );
    has(
        "public_key_file = \"/nonexistent/key.pem\"",
        "public_key_file",
        "cannot read",
    );
    has(
        "jwks_file = \"/nonexistent/jwks.json\"",
        "jwks_file",
        "cannot read",
    );
    // Unknown fields are refused by serde.
    let errs =
        compile_errors("secret = \"0123456789abcdef0123456789abcdef\"\nalgorithm = [\"HS256\"]");
    assert!(errs[0].1.contains("unknown field"), "{errs:?}");
    // secret_env reads the environment (PATH is always set; no test mutates the environment).
    let p = policy("secret_env = \"PATH\"");
    let path = std::env::var("PATH").expect("PATH");
    let t = token(&TestKey::Hmac(path.into_bytes()), "HS256", "", &claims());
    assert!(check(&p, &t).is_ok());
}

#[test]
fn jwks_and_pem_files_pick_keys_by_kid() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ec = TestKey::p256();
    let ed = TestKey::ed();
    let rsa = TestKey::for_alg(Alg::RS256, false);
    let oct = TestKey::hmac();
    let set = json!({"keys": [ec.jwk("k1"), ed.jwk("k2"), rsa.jwk("k3"),
                              {"kty": "RSA", "kid": "enc", "use": "enc", "n": "AQAB", "e": "AQAB"},
                              oct.jwk("k4")]});
    std::fs::write(dir.path().join("jwks.json"), set.to_string()).expect("write");
    std::fs::write(dir.path().join("key.pem"), ed.public_pem(false)).expect("write");
    let fetchers = JwksFetchers::new();
    let p = try_compile("jwks_file = \"jwks.json\"", dir.path(), &fetchers).expect("compiles");
    let ok = |t: &str| check(&p, t).map(|_| ()).err();
    assert_eq!(ok(&token(&ec, "ES256", r#","kid":"k1""#, &claims())), None);
    assert_eq!(ok(&token(&ed, "EdDSA", r#","kid":"k2""#, &claims())), None);
    assert_eq!(ok(&token(&rsa, "PS256", r#","kid":"k3""#, &claims())), None);
    assert_eq!(
        ok(&token(&ed, "EdDSA", "", &claims())),
        None,
        "no kid: try candidates"
    );
    assert_eq!(
        ok(&token(&ed, "EdDSA", r#","kid":"k9""#, &claims())),
        Some(JwtError::UnknownKey)
    );
    // The kid names a key of another kind: no candidate.
    assert_eq!(
        ok(&token(&ec, "ES256", r#","kid":"k2""#, &claims())),
        Some(JwtError::UnknownKey)
    );
    // Right kid, wrong signer.
    assert_eq!(
        ok(&token(
            &TestKey::p256(),
            "ES256",
            r#","kid":"k1""#,
            &claims()
        )),
        Some(JwtError::BadSignature)
    );
    // The allow-list defaults to what the file's keys can verify, oct included.
    assert_eq!(ok(&token(&oct, "HS256", r#","kid":"k4""#, &claims())), None);
    let es_only = try_compile(
        "jwks_file = \"jwks.json\"\nalgorithms = [\"ES256\"]",
        dir.path(),
        &fetchers,
    )
    .expect("compiles");
    let hs = token(&oct, "HS256", r#","kid":"k4""#, &claims());
    assert_eq!(check(&es_only, &hs).err(), Some(JwtError::BadAlgorithm));
    assert!(check(&es_only, &token(&ec, "ES256", r#","kid":"k1""#, &claims())).is_ok());

    let from_file =
        try_compile("public_key_file = \"key.pem\"", dir.path(), &fetchers).expect("ok");
    assert!(check(
        &from_file,
        &token(&ed, "EdDSA", r#","kid":"any""#, &claims())
    )
    .is_ok());
}

#[test]
fn token_cache_hits_expires_and_is_bounded() {
    let key = TestKey::hmac();
    let p = policy(&format!(
        "leeway = \"0s\"\nrequire_exp = false\n{}",
        key.config(false)
    ));
    let mut cache = TokenCache::new(16);
    let t = token(&key, "HS256", "", &json!({"sub": "a", "exp": NOW + 100}));
    let first = p.verify(t.as_bytes(), NOW, &mut cache).expect("valid");
    assert_eq!((cache.hits(), cache.len()), (0, 1));
    let second = p.verify(t.as_bytes(), NOW + 50, &mut cache).expect("valid");
    assert_eq!(cache.hits(), 1);
    assert!(
        Arc::ptr_eq(&first, &second),
        "a hit returns the cached verification"
    );
    assert_eq!(
        p.verify(t.as_bytes(), NOW + 100, &mut cache).err(),
        Some(JwtError::Expired)
    );
    assert_eq!(cache.hits(), 1);
    assert_eq!(
        p.verify(t.as_bytes(), NOW + 101, &mut cache).err(),
        Some(JwtError::Expired)
    );

    // Another policy with another key never trusts the first policy's entries.
    let other = policy(&TestKey::hmac().config(false));
    let fresh = token(&key, "HS256", "", &json!({"sub": "a"}));
    assert!(p.verify(fresh.as_bytes(), NOW, &mut cache).is_ok());
    assert_eq!(
        other.verify(fresh.as_bytes(), NOW, &mut cache).err(),
        Some(JwtError::BadSignature)
    );

    for i in 0..200 {
        let t = token(&key, "HS256", "", &json!({"sub": i}));
        assert!(p.verify(t.as_bytes(), NOW, &mut cache).is_ok());
        assert!(cache.len() <= 16);
    }
    assert_eq!(cache.len(), 16);
}

/// A one-route HTTP server for JWKS documents on 127.0.0.1; the body and status can change.
struct JwksServer {
    url: String,
    doc: Arc<Mutex<(u16, String)>>,
    hits: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    port: u16,
}

impl JwksServer {
    fn start(status: u16, body: String) -> JwksServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let doc = Arc::new(Mutex::new((status, body)));
        let hits = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (d, h, s) = (doc.clone(), hits.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(mut conn) = conn else { continue };
                let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
                let mut req = Vec::new();
                let mut buf = [0u8; 1024];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                h.fetch_add(1, Ordering::SeqCst);
                let (status, body) = d.lock().map(|g| g.clone()).unwrap_or_default();
                let resp = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n\
                     content-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(resp.as_bytes());
            }
        });
        JwksServer {
            url: format!("http://127.0.0.1:{port}/.well-known/jwks.json"),
            doc,
            hits,
            stop,
            port,
        }
    }

    fn set(&self, status: u16, body: String) {
        if let Ok(mut g) = self.doc.lock() {
            *g = (status, body);
        }
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Polls `f` every 10 ms until it is true or `limit` passes.
fn eventually(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    f()
}

fn jwks_doc(keys: &[(&TestKey, &str)]) -> String {
    json!({"keys": keys.iter().map(|(k, kid)| k.jwk(kid)).collect::<Vec<_>>()}).to_string()
}

#[test]
fn jwks_url_rotation_refreshes_on_unknown_kid() {
    let old = TestKey::ed();
    let new = TestKey::p256();
    let server = JwksServer::start(200, jwks_doc(&[(&old, "old")]));
    let fetchers = JwksFetchers::new();
    let src = format!(
        "jwks_url = \"{}\"\nmin_refresh = \"200ms\"\nrefresh = \"10m\"",
        server.url
    );
    let p = try_compile(&src, Path::new("."), &fetchers).expect("compiles");
    let mut cache = TokenCache::new(64);
    let old_token = token(&old, "EdDSA", r#","kid":"old""#, &claims());
    assert!(
        eventually(Duration::from_secs(2), || p
            .verify(old_token.as_bytes(), NOW, &mut cache)
            .is_ok()),
        "first fetch"
    );
    assert_eq!(server.hits(), 1);
    assert!(p.verify(old_token.as_bytes(), NOW, &mut cache).is_ok());
    assert!(cache.hits() >= 1);

    server.set(200, jwks_doc(&[(&new, "new")]));
    let new_token = token(&new, "ES256", r#","kid":"new""#, &claims());
    assert_eq!(
        p.verify(new_token.as_bytes(), NOW, &mut cache).err(),
        Some(JwtError::UnknownKey)
    );
    assert!(
        eventually(Duration::from_secs(2), || p
            .verify(new_token.as_bytes(), NOW, &mut cache)
            .is_ok()),
        "refresh after unknown kid"
    );
    assert_eq!(server.hits(), 2);
    // The rotated-out key no longer verifies, even though its token was cached.
    assert_eq!(
        p.verify(old_token.as_bytes(), NOW, &mut cache).err(),
        Some(JwtError::UnknownKey)
    );
}

#[test]
fn jwks_on_demand_refresh_is_rate_limited() {
    let key = TestKey::ed();
    let server = JwksServer::start(200, jwks_doc(&[(&key, "a")]));
    let fetchers = JwksFetchers::new();
    let src = format!("jwks_url = \"{}\"\nmin_refresh = \"1s\"", server.url);
    let p = try_compile(&src, Path::new("."), &fetchers).expect("compiles");
    let jwks = p.jwks().expect("remote").clone();
    let mut cache = TokenCache::new(64);
    assert!(eventually(Duration::from_secs(2), || jwks.fetch_count()
        == 1
        && jwks.snapshot().is_some()));
    std::thread::sleep(Duration::from_millis(1100)); // the cooldown after the first fetch ends

    // A burst of unknown kids: the first nudge fetches at once, the rest wait for one more.
    let burst_start = Instant::now();
    for i in 0..200 {
        let t = token(
            &key,
            "EdDSA",
            &format!(r#","kid":"unknown-{i}""#),
            &claims(),
        );
        assert_eq!(
            p.verify(t.as_bytes(), NOW, &mut cache).err(),
            Some(JwtError::UnknownKey)
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    // Generous: the fetch thread may be descheduled for a while on a loaded machine.
    assert!(eventually(Duration::from_secs(5), || jwks.fetch_count() >= 2));
    if burst_start.elapsed() < Duration::from_millis(900) {
        assert_eq!(jwks.fetch_count(), 2, "at most one fetch per min_refresh");
    }
    // The nudges pending since then coalesce into exactly one fetch after the cooldown.
    assert!(eventually(Duration::from_secs(3), || jwks.fetch_count() == 3));
    std::thread::sleep(Duration::from_millis(1300));
    assert_eq!(jwks.fetch_count(), 3, "no fetch without a new nudge");
    assert_eq!(server.hits(), 3);
}

#[test]
fn jwks_first_fetch_failure_gives_401_and_refresh_failure_keeps_keys() {
    let key = TestKey::ed();
    let server = JwksServer::start(500, "oops".into());
    let fetchers = JwksFetchers::new();
    let src = format!("jwks_url = \"{}\"\nmin_refresh = \"100ms\"", server.url);
    let p = try_compile(&src, Path::new("."), &fetchers).expect("compiles");
    let jwks = p.jwks().expect("remote").clone();
    assert!(eventually(Duration::from_secs(2), || jwks.failure_count() >= 1));
    let t = token(&key, "EdDSA", r#","kid":"a""#, &claims());
    let started = Instant::now();
    assert_eq!(
        p.verify(t.as_bytes(), NOW, &mut TokenCache::new(0)).err(),
        Some(JwtError::NoKeysYet)
    );
    assert!(started.elapsed() < Duration::from_millis(50), "never waits");

    server.set(200, jwks_doc(&[(&key, "a")]));
    assert!(
        eventually(Duration::from_secs(3), || p
            .verify(t.as_bytes(), NOW, &mut TokenCache::new(0))
            .is_ok()),
        "keys arrive once a fetch succeeds"
    );

    // A failed refresh (server error, then garbage) keeps the last good keys.
    for bad in [
        (503, "down".to_string()),
        (200, "{\"keys\": 5}".to_string()),
    ] {
        let failures = jwks.failure_count();
        server.set(bad.0, bad.1);
        let unknown = token(&key, "EdDSA", r#","kid":"other""#, &claims());
        let _ = p.verify(unknown.as_bytes(), NOW, &mut TokenCache::new(0));
        assert!(eventually(Duration::from_secs(2), || jwks.failure_count() > failures));
        assert!(p.verify(t.as_bytes(), NOW, &mut TokenCache::new(0)).is_ok());
    }
}

#[test]
fn fetchers_are_reused_for_an_unchanged_url() {
    let key = TestKey::ed();
    let server = JwksServer::start(200, jwks_doc(&[(&key, "a")]));
    let fetchers = JwksFetchers::new();
    let src = format!("jwks_url = \"{}\"", server.url);
    let a = try_compile(&src, Path::new("."), &fetchers).expect("compiles");
    let b = try_compile(&src, Path::new("."), &fetchers).expect("compiles");
    assert!(Arc::ptr_eq(a.jwks().expect("a"), b.jwks().expect("b")));
    assert_eq!(fetchers.len(), 1);
    let c = try_compile(
        &format!("{src}\nmin_refresh = \"1s\""),
        Path::new("."),
        &fetchers,
    )
    .expect("compiles");
    assert!(!Arc::ptr_eq(a.jwks().expect("a"), c.jwks().expect("c")));
    assert_eq!(fetchers.len(), 2);
    // A table with errors starts no fetcher.
    assert!(try_compile(&format!("{src}\nissuers = []"), Path::new("."), &fetchers).is_err());
    assert_eq!(fetchers.len(), 2);
    drop((a, b, c));
    assert!(fetchers.is_empty(), "fetchers end with their last policy");
}

#[test]
fn policy_and_errors_are_send_sync_and_labels_are_snake_case() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<JwtPolicy>();
    assert_send_sync::<JwksFetchers>();
    assert_send_sync::<Verified>();
    let all = [
        JwtError::Missing,
        JwtError::Malformed,
        JwtError::BadAlgorithm,
        JwtError::UnknownKey,
        JwtError::BadSignature,
        JwtError::Expired,
        JwtError::NotYetValid,
        JwtError::BadIssuer,
        JwtError::BadAudience,
        JwtError::MissingClaim,
        JwtError::NoKeysYet,
        JwtError::MissingExpiry,
        JwtError::UnsafeClaim,
    ];
    for e in all {
        let r = e.reason();
        assert!(
            r.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
            "{r}"
        );
        assert!(!e.detail().is_empty() && e.www_authenticate().starts_with("Bearer"));
    }
}

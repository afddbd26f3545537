//! JWT policies against the running gateway, with keys generated here: every supported
//! algorithm verifies and maps claims to the consumer and upstream headers; expired,
//! not-yet-valid, wrong-audience, wrong-issuer, disallowed-alg, `alg: none` and tampered tokens
//! get 401; JWKS rotation over a URL; scopes and claims enforced by `authorize` (403).
mod common;
use common::*;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{
    EcdsaKeyPair, Ed25519KeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING,
    ECDSA_P384_SHA384_FIXED_SIGNING,
};
use rsa::signature::{RandomizedSigner, SignatureEncoding, Signer};
use rsa::traits::PublicKeyParts;
use rsa::RsaPrivateKey;
use serde_json::{json, Value};

const ALGS: [&str; 12] = [
    "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256",
    "ES384", "EdDSA",
];

fn enc(b: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(b)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn rsa_key() -> &'static RsaPrivateKey {
    static K: OnceLock<RsaPrivateKey> = OnceLock::new();
    K.get_or_init(|| RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap())
}

enum Key {
    Hmac(Vec<u8>),
    Rsa,
    Ec(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
}

impl Key {
    fn for_alg(alg: &str) -> Key {
        let rng = SystemRandom::new();
        match alg {
            a if a.starts_with("HS") => {
                Key::Hmac(format!("secret-for-{a}-0123456789abcdef").into_bytes())
            }
            a if a.starts_with("RS") || a.starts_with("PS") => Key::Rsa,
            "ES256" => {
                let d =
                    EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
                Key::Ec(
                    EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, d.as_ref(), &rng)
                        .unwrap(),
                )
            }
            "ES384" => {
                let d =
                    EcdsaKeyPair::generate_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, &rng).unwrap();
                Key::Ec(
                    EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, d.as_ref(), &rng)
                        .unwrap(),
                )
            }
            _ => {
                let d = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
                Key::Ed(Ed25519KeyPair::from_pkcs8(d.as_ref()).unwrap())
            }
        }
    }

    fn sign(&self, alg: &str, msg: &[u8]) -> Vec<u8> {
        use rsa::sha2::{Sha256, Sha384, Sha512};
        match self {
            Key::Hmac(s) => {
                let d = match alg {
                    "HS384" => ring::hmac::HMAC_SHA384,
                    "HS512" => ring::hmac::HMAC_SHA512,
                    _ => ring::hmac::HMAC_SHA256,
                };
                ring::hmac::sign(&ring::hmac::Key::new(d, s), msg)
                    .as_ref()
                    .to_vec()
            }
            Key::Rsa => {
                let k = rsa_key().clone();
                let mut r = rsa::rand_core::OsRng;
                match alg {
                    "RS256" => rsa::pkcs1v15::SigningKey::<Sha256>::new(k)
                        .sign(msg)
                        .to_vec(),
                    "RS384" => rsa::pkcs1v15::SigningKey::<Sha384>::new(k)
                        .sign(msg)
                        .to_vec(),
                    "RS512" => rsa::pkcs1v15::SigningKey::<Sha512>::new(k)
                        .sign(msg)
                        .to_vec(),
                    "PS256" => rsa::pss::BlindedSigningKey::<Sha256>::new(k)
                        .sign_with_rng(&mut r, msg)
                        .to_vec(),
                    "PS384" => rsa::pss::BlindedSigningKey::<Sha384>::new(k)
                        .sign_with_rng(&mut r, msg)
                        .to_vec(),
                    _ => rsa::pss::BlindedSigningKey::<Sha512>::new(k)
                        .sign_with_rng(&mut r, msg)
                        .to_vec(),
                }
            }
            Key::Ec(k) => k.sign(&SystemRandom::new(), msg).unwrap().as_ref().to_vec(),
            Key::Ed(k) => k.sign(msg).as_ref().to_vec(),
        }
    }

    fn jwk(&self, kid: &str, alg: &str) -> Value {
        match self {
            Key::Hmac(s) => json!({"kty": "oct", "kid": kid, "alg": alg, "k": enc(s)}),
            Key::Rsa => json!({"kty": "RSA", "kid": kid, "alg": alg,
                "n": enc(rsa_key().n().to_bytes_be()), "e": enc(rsa_key().e().to_bytes_be())}),
            Key::Ec(k) => {
                let p = k.public_key().as_ref();
                let n = (p.len() - 1) / 2;
                json!({"kty": "EC", "kid": kid, "alg": alg, "crv": if n == 32 { "P-256" } else { "P-384" },
                       "x": enc(&p[1..1 + n]), "y": enc(&p[1 + n..])})
            }
            Key::Ed(k) => {
                json!({"kty": "OKP", "kid": kid, "alg": alg, "crv": "Ed25519", "x": enc(k.public_key())})
            }
        }
    }
}

fn token(key: &Key, alg: &str, kid: &str, claims: &Value) -> String {
    let head = enc(json!({"alg": alg, "typ": "JWT", "kid": kid}).to_string());
    let body = enc(claims.to_string());
    let input = format!("{head}.{body}");
    let sig = enc(key.sign(alg, input.as_bytes()));
    format!("{input}.{sig}")
}

fn claims(extra: Value) -> Value {
    let mut c = json!({"sub": "user-7", "iss": "https://issuer.test", "aud": "ringway-tests",
                       "exp": now() + 300, "iat": now(), "email": "u7@example.com"});
    if let (Some(o), Some(e)) = (c.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            o.insert(k.clone(), v.clone());
        }
    }
    c
}

/// `GET path` with `Authorization: Bearer <token>`.
fn get_with_token(addr: std::net::SocketAddr, path: &str, token: &str) -> Response {
    request(addr, "GET", path, &[("Authorization", &bearer(token))], b"")
}

fn bearer(t: &str) -> String {
    format!("Bearer {t}")
}

/// Keys for every algorithm in a JWKS file, the gateway with a JWT route on it.
struct Setup {
    keys: Vec<(String, Key)>,
    up: Upstream,
    gw: Gateway,
    _dir: tempfile::TempDir,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let keys: Vec<(String, Key)> = ALGS[..12]
        .iter()
        .map(|a| (a.to_string(), Key::for_alg(a)))
        .collect();
    let jwks = json!({"keys": keys.iter().map(|(a, k)| k.jwk(&format!("kid-{a}"), a)).collect::<Vec<_>>()});
    let jwks_path = dir.path().join("jwks.json");
    std::fs::write(&jwks_path, jwks.to_string()).unwrap();
    let up = Upstream::echo();
    let algs: Vec<String> = ALGS[..12].iter().map(|a| format!("\"{a}\"")).collect();
    let body = format!(
        "[policies.jwt]\njwt = {{ jwks_file = \"{}\", algorithms = [{}], issuer = \"https://issuer.test\", \
         audience = \"ringway-tests\", leeway = \"5s\", claims_to_headers = {{ email = \"x-user-email\" }} }}\n\n\
         [policies.rs-only]\njwt = {{ jwks_file = \"{}\", algorithms = [\"RS256\"], audience = \"ringway-tests\" }}\n\n\
         [policies.admin-scope]\nauthorize = {{ scopes = [\"admin\"], claims = {{ tier = \"gold\" }} }}\n\n{}\n\
         [[routes]]\nname = \"api\"\nprefix = \"/api\"\npolicies = [\"jwt\"]\nproxy = {{ upstream = \"app\" }}\n\n\
         [[routes]]\nname = \"rs\"\nprefix = \"/rs\"\npolicies = [\"rs-only\"]\nproxy = {{ upstream = \"app\" }}\n\n\
         [[routes]]\nname = \"admin\"\nprefix = \"/admin\"\npolicies = [\"jwt\", \"admin-scope\"]\nproxy = {{ upstream = \"app\" }}\n",
        jwks_path.display(),
        algs.join(", "),
        jwks_path.display(),
        upstream_toml("app", &[up.addr])
    );
    let gw = Gateway::start(&body);
    Setup {
        keys,
        up,
        gw,
        _dir: dir,
    }
}

#[test]
fn every_algorithm_verifies_and_maps_claims() {
    let s = setup();
    for (alg, key) in &s.keys {
        let t = token(key, alg, &format!("kid-{alg}"), &claims(json!({})));
        let r = request(
            s.gw.addr,
            "GET",
            "/api/x",
            &[("Authorization", &bearer(&t)), ("X-User-Email", "forged")],
            b"",
        );
        assert_eq!(r.status, 200, "{alg}: {}", r.text());
        let seen = s.up.last();
        assert_eq!(seen.header("x-consumer"), Some("user-7"), "{alg}");
        assert_eq!(
            seen.header_all("x-user-email"),
            vec!["u7@example.com"],
            "{alg}: claim header replaces the client's"
        );
        // Tampered payload: same signature, different claims.
        let mut parts: Vec<String> = t.split('.').map(str::to_string).collect();
        parts[1] = enc(claims(json!({"sub": "admin"})).to_string());
        let tampered = parts.join(".");
        let r = get_with_token(s.gw.addr, "/api/x", &tampered);
        assert_eq!(r.status, 401, "{alg} tampered");
    }
}

#[test]
fn bad_tokens_get_401_and_never_reach_the_upstream() {
    let s = setup();
    let (alg, key) = &s.keys[9]; // ES256
    assert_eq!(alg, "ES256");
    let kid = "kid-ES256";
    let cases: Vec<(&str, String)> = vec![
        (
            "expired",
            token(key, alg, kid, &claims(json!({"exp": now() - 60}))),
        ),
        (
            "not yet valid",
            token(key, alg, kid, &claims(json!({"nbf": now() + 120}))),
        ),
        (
            "wrong audience",
            token(key, alg, kid, &claims(json!({"aud": "someone-else"}))),
        ),
        (
            "wrong issuer",
            token(key, alg, kid, &claims(json!({"iss": "https://evil.test"}))),
        ),
        (
            "unknown kid",
            token(key, alg, "kid-nope", &claims(json!({}))),
        ),
        (
            "alg none",
            format!(
                "{}.{}.",
                enc(r#"{"alg":"none","typ":"JWT"}"#),
                enc(claims(json!({})).to_string())
            ),
        ),
        ("garbage", "not.a.jwt".to_string()),
    ];
    let before = s.up.count();
    for (what, t) in &cases {
        let r = get_with_token(s.gw.addr, "/api/x", t);
        assert_eq!(r.status, 401, "{what}");
        assert!(
            r.header("www-authenticate").unwrap().starts_with("Bearer"),
            "{what}"
        );
        assert_eq!(r.json()["status"], 401);
    }
    let r = get(s.gw.addr, "/api/x");
    assert_eq!(r.status, 401, "missing token");
    // Within leeway: expired 2 s ago with 5 s leeway is still accepted.
    let t = token(key, alg, kid, &claims(json!({"exp": now() - 2})));
    assert_eq!(get_with_token(s.gw.addr, "/api/x", &t).status, 200);
    assert_eq!(s.up.count(), before + 1);
    // A route that allows only RS256 refuses an ES256 token even though its key is known.
    let t = token(key, alg, kid, &claims(json!({})));
    assert_eq!(get_with_token(s.gw.addr, "/rs/x", &t).status, 401);
    let (_, rsa) = &s.keys[3];
    let t = token(rsa, "RS256", "kid-RS256", &claims(json!({})));
    assert_eq!(get_with_token(s.gw.addr, "/rs/x", &t).status, 200);
}

#[test]
fn authorize_enforces_scopes_and_claims_with_403() {
    let s = setup();
    let (alg, key) = &s.keys[11]; // EdDSA
    let call = |c: Value| {
        let t = token(key, alg, "kid-EdDSA", &claims(c));
        get_with_token(s.gw.addr, "/admin/x", &t)
    };
    assert_eq!(
        call(json!({"scope": "read admin", "tier": "gold"})).status,
        200
    );
    let r = call(json!({"scope": "read", "tier": "gold"}));
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["status"], 403);
    assert_eq!(
        call(json!({"scp": ["admin"], "tier": "silver"})).status,
        403
    );
    assert_eq!(call(json!({"scp": ["admin"], "tier": "gold"})).status, 200);
    // A list compares as its joined text, and only a faithful one: an object element is not
    // dropped to leave `gold`.
    assert_eq!(
        call(json!({"scp": ["admin"], "tier": ["gold"]})).status,
        200
    );
    assert_eq!(
        call(json!({"scp": ["admin"], "tier": [{"x": 1}, "gold"]})).status,
        403
    );
    // Scopes are separated by spaces only (RFC 6749 3.3): a tab or a no-break space does not
    // split "read\u{a0}admin" into a grant of `admin`.
    for joined in ["read\u{a0}admin", "read\tadmin", "read\u{3000}admin"] {
        assert_eq!(
            call(json!({"scope": joined, "tier": "gold"})).status,
            403,
            "{joined:?}"
        );
    }
    assert_eq!(
        get(s.gw.addr, "/admin/x").status,
        401,
        "unauthenticated is 401, not 403"
    );
}

#[test]
fn jwks_url_rotation_picks_up_a_new_key() {
    let first = Key::for_alg("ES256");
    let second = Key::for_alg("ES256");
    let doc = Arc::new(Mutex::new(
        json!({"keys": [first.jwk("k1", "ES256")]}).to_string(),
    ));
    let served = doc.clone();
    let jwks = Upstream::start(Arc::new(move |_req, s| {
        let body = served.lock().unwrap().clone();
        let _ = write!(
            s,
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        Reply::KeepAlive
    }));
    let up = Upstream::echo();
    let body = format!(
        "[policies.jwt]\njwt = {{ jwks_url = \"http://{}/jwks.json\", algorithms = [\"ES256\"], refresh = \"1h\", min_refresh = \"1s\" }}\n\n{}\n\
         [[routes]]\nname = \"api\"\nprefix = \"/\"\npolicies = [\"jwt\"]\nproxy = {{ upstream = \"app\" }}\n",
        jwks.addr,
        upstream_toml("app", &[up.addr])
    );
    let gw = Gateway::start(&body);
    let call = |k: &Key, kid: &str| {
        let t = token(k, "ES256", kid, &claims(json!({})));
        get_with_token(gw.addr, "/x", &t).status
    };
    // The first fetch happens off the workers; wait for it.
    let deadline = Instant::now() + Duration::from_secs(5);
    while call(&first, "k1") != 200 {
        assert!(Instant::now() < deadline, "initial JWKS fetch");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The issuer rotates: the new kid is unknown until the refresh it triggers completes.
    *doc.lock().unwrap() = json!({"keys": [second.jwk("k2", "ES256")]}).to_string();
    let deadline = Instant::now() + Duration::from_secs(5);
    while call(&second, "k2") != 200 {
        assert!(Instant::now() < deadline, "refresh on unknown kid");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(call(&first, "k1"), 401, "the rotated-out key is gone");
}

/// A server answering every request with the JSON document `doc`.
fn json_server(doc: String) -> Upstream {
    Upstream::start(Arc::new(move |_req, s| {
        let _ = write!(
            s,
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{doc}",
            doc.len()
        );
        Reply::KeepAlive
    }))
}

/// Keys come over https, or http to a loopback host, as the config names them. A redirect
/// could lead past that rule (to plain http anywhere), so key and discovery fetches follow
/// none: the fetch fails, says why, and no key from the redirect's target is trusted.
#[test]
fn a_jwks_url_that_redirects_is_not_followed() {
    let key = Key::for_alg("ES256");
    let doc = json!({"keys": [key.jwk("k1", "ES256")]}).to_string();
    let target = json_server(doc);
    let to = format!("http://{}/jwks.json", target.addr);
    let hop = Upstream::start(Arc::new(move |_req, s| {
        let _ = write!(
            s,
            "HTTP/1.1 302 Found\r\nLocation: {to}\r\nContent-Length: 0\r\n\r\n"
        );
        Reply::KeepAlive
    }));
    let up = Upstream::echo();
    let body = format!(
        "[policies.jwt]\njwt = {{ jwks_url = \"http://{}/jwks.json\", algorithms = [\"ES256\"], refresh = \"1h\", min_refresh = \"1s\" }}\n\n{}\n\
         [[routes]]\nname = \"api\"\nprefix = \"/\"\npolicies = [\"jwt\"]\nproxy = {{ upstream = \"app\" }}\n",
        hop.addr,
        upstream_toml("app", &[up.addr])
    );
    let gw = Gateway::start(&body);
    gw.wait_log("redirects are not followed", Duration::from_secs(5));
    let t = token(&key, "ES256", "k1", &claims(json!({})));
    assert_eq!(get_with_token(gw.addr, "/x", &t).status, 401);
    assert_eq!(
        target.count(),
        0,
        "the redirect's target was asked for keys"
    );
    assert_eq!(up.count(), 0);
}

/// A JWKS document is public. With a static `secret` beside a `jwks_url`, HMAC algorithms
/// are allowed for the secret's sake, but an `oct` key published in the document must not
/// become a signing key anyone can use. An Ed25519 key of small order (the identity point)
/// accepts a forged signature for any claims; it is refused when the set is read. The
/// document's real key and the static secret keep working.
#[test]
fn public_hmac_keys_and_small_order_keys_from_a_jwks_never_verify() {
    let good = Key::for_alg("ES256");
    let published = b"public-jwks-secret-anyone-can-read".to_vec();
    let mut identity = vec![0u8; 32];
    identity[0] = 1;
    let doc = json!({"keys": [
        good.jwk("k1", "ES256"),
        {"kty": "oct", "kid": "pub-oct", "k": enc(&published)},
        {"kty": "OKP", "crv": "Ed25519", "kid": "ed0", "x": enc(&identity)},
    ]})
    .to_string();
    let jwks = json_server(doc);
    let secret = "a-static-secret-of-enough-length-0123456789";
    let up = Upstream::echo();
    let body = format!(
        "[policies.jwt]\njwt = {{ secret = \"{secret}\", jwks_url = \"http://{}/jwks.json\", refresh = \"1h\", min_refresh = \"1s\" }}\n\n{}\n\
         [[routes]]\nname = \"api\"\nprefix = \"/\"\npolicies = [\"jwt\"]\nproxy = {{ upstream = \"app\" }}\n",
        jwks.addr,
        upstream_toml("app", &[up.addr])
    );
    let gw = Gateway::start(&body);
    let c = claims(json!({"sub": "forged"}));
    let ok = token(&good, "ES256", "k1", &c);
    let deadline = Instant::now() + Duration::from_secs(5);
    while get_with_token(gw.addr, "/x", &ok).status != 200 {
        assert!(Instant::now() < deadline, "initial JWKS fetch");
        std::thread::sleep(Duration::from_millis(50));
    }
    let with_published = token(&Key::Hmac(published.clone()), "HS256", "pub-oct", &c);
    assert_eq!(get_with_token(gw.addr, "/x", &with_published).status, 401);
    let head = enc(json!({"alg": "EdDSA", "typ": "JWT", "kid": "ed0"}).to_string());
    let mut sig = identity.clone();
    sig.extend_from_slice(&[0u8; 32]);
    let forged = format!("{head}.{}.{}", enc(c.to_string()), enc(&sig));
    assert_eq!(get_with_token(gw.addr, "/x", &forged).status, 401);
    let with_secret = token(&Key::Hmac(secret.as_bytes().to_vec()), "HS256", "", &c);
    assert_eq!(get_with_token(gw.addr, "/x", &with_secret).status, 200);
    assert!(
        up.requests()
            .iter()
            .all(|r| r.header("authorization") != Some(&bearer(&forged)[..])
                && r.header("authorization") != Some(&bearer(&with_published)[..])),
        "a forged token reached the upstream"
    );
}

const HS_SECRET: &str = "smuggling-test-secret-0123456789abcdef";

/// HS256 policies over a raw upstream that counts connections and bytes: `/a` maps `email` to
/// a header, `/t` copies `${claim.team}` with a transform, `/p` has no policy at all.
fn hs_gateway(up: &RawUpstream) -> Gateway {
    let body = format!(
        "[policies.jwt]\njwt = {{ secret = \"{HS_SECRET}\", algorithms = [\"HS256\"], \
         claims_to_headers = {{ email = \"x-user-email\" }} }}\n\n\
         [policies.plain]\njwt = {{ secret = \"{HS_SECRET}\", algorithms = [\"HS256\"] }}\n\n\
         [policies.team]\ntransform = {{ request_headers = {{ set = {{ \"x-team\" = \"${{claim.team}}\" }} }} }}\n\n{}\n\
         [[routes]]\nname = \"a\"\nprefix = \"/a\"\npolicies = [\"jwt\"]\nproxy = {{ upstream = \"app\" }}\n\n\
         [[routes]]\nname = \"t\"\nprefix = \"/t\"\npolicies = [\"plain\", \"team\"]\nproxy = {{ upstream = \"app\" }}\n\n\
         [[routes]]\nname = \"p\"\nprefix = \"/p\"\nproxy = {{ upstream = \"app\" }}\n",
        upstream_toml("app", &[up.addr])
    );
    Gateway::start(&body)
}

fn hs_token(c: &Value) -> String {
    token(&Key::Hmac(HS_SECRET.as_bytes().to_vec()), "HS256", "k", c)
}

#[test]
fn claims_that_would_inject_header_lines_are_refused_and_nothing_reaches_the_upstream() {
    let up = RawUpstream::start();
    let gw = hs_gateway(&up);
    let smuggle = "alice\r\nContent-Length: 0\r\n\r\nGET /admin HTTP/1.1\r\nHost: x";
    let cases: Vec<(&str, &str, Value)> = vec![
        (
            "/a/x",
            "sub with a header line",
            json!({"sub": "alice\r\nX-Injected: 1"}),
        ),
        ("/a/x", "sub smuggling a request", json!({"sub": smuggle})),
        (
            "/a/x",
            "sub with a bare LF",
            json!({"sub": "alice\nX-Injected: 1"}),
        ),
        ("/a/x", "sub with NUL", json!({"sub": "alice\u{0}"})),
        // Unicode line breaks and bidi overrides: a backend's log or page shows another name.
        (
            "/a/x",
            "sub with NEL (U+0085)",
            json!({"sub": "alice\u{85}X-Injected: 1"}),
        ),
        (
            "/a/x",
            "sub with a right-to-left override",
            json!({"sub": "\u{202e}nimda"}),
        ),
        (
            "/t/x",
            "${claim.team} with an isolate",
            json!({"sub": "alice", "team": "blue\u{2066}red"}),
        ),
        (
            "/a/x",
            "sub with a trailing blank",
            json!({"sub": "alice "}),
        ),
        (
            "/t/x",
            "sub on the transform route",
            json!({"sub": smuggle}),
        ),
        (
            "/a/x",
            "claims_to_headers",
            json!({"sub": "alice", "email": "a@x.test\r\nX-Injected: 1"}),
        ),
        (
            "/t/x",
            "${claim.team}",
            json!({"sub": "alice", "team": "blue\r\nX-Injected: 1"}),
        ),
        (
            "/t/x",
            "${claim.team} smuggling a request",
            json!({"sub": "alice", "team": smuggle}),
        ),
    ];
    for (path, what, extra) in &cases {
        let t = hs_token(&claims(extra.clone()));
        let r = get_with_token(gw.addr, path, &t);
        assert_eq!(r.status, 401, "{what}: {}", r.text());
        assert_eq!(
            r.header("www-authenticate"),
            Some("Bearer error=\"invalid_token\""),
            "{what}"
        );
        assert_eq!(r.json()["status"], 401, "{what}");
    }
    assert_eq!(up.connection_count(), 0, "{}", up.text());
    assert_eq!(up.byte_count(), 0, "{}", up.text());

    // Control: the same routes with clean claims reach the upstream.
    let t = hs_token(&claims(json!({"sub": "alice", "team": "blue"})));
    let r = get_with_token(gw.addr, "/t/x", &t);
    assert_eq!(r.status, 200, "{}", r.text());
    let r = get_with_token(gw.addr, "/a/x", &t);
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = up.text().to_ascii_lowercase();
    assert!(seen.contains("x-consumer: alice\r\n"), "{seen}");
    assert!(seen.contains("x-team: blue\r\n"), "{seen}");
    assert!(seen.contains("x-user-email: u7@example.com\r\n"), "{seen}");
    assert!(!seen.contains("x-injected"), "{seen}");
}

/// Array claims were joined with `,` whatever they held: `["viewer,admin"]` reached the
/// upstream as the two groups `viewer,admin`, `[{"x":1},"admin"]` as `admin` alone (and passed
/// `authorize` for `admin`), and `${claim.NAME}` dropped different elements than the header
/// did. One rule now: a list whose text would not be faithful (an element holding `,`, a
/// nested array or object) is refused like a claim unsafe for a header. And a numeric `sub`
/// past f64's precision no longer names a consumer (`1e22` was every such subject).
#[test]
fn list_claims_reach_the_upstream_only_when_their_text_is_faithful() {
    let up = RawUpstream::start();
    let gw = hs_gateway(&up);
    let t = hs_token(&claims(
        json!({"sub": "alice", "email": ["a@x.test", "b@x.test"]}),
    ));
    let r = get_with_token(gw.addr, "/a/x", &t);
    assert_eq!(r.status, 200, "{}", r.text());
    wait_for(Duration::from_secs(5), || {
        up.text().contains("x-user-email")
    });
    assert!(
        up.text()
            .to_ascii_lowercase()
            .contains("x-user-email: a@x.test,b@x.test\r\n"),
        "{}",
        up.text()
    );
    let before = up.text().len();
    for (what, email) in [
        ("an element with a comma", json!(["viewer,admin"])),
        ("an object element", json!([{"x": 1}, "admin"])),
        ("a nested array", json!([["a"], "b"])),
    ] {
        let t = hs_token(&claims(json!({"sub": "alice", "email": email})));
        let r = get_with_token(gw.addr, "/a/x", &t);
        assert_eq!(r.status, 401, "{what}: {}", r.text());
    }
    // The template reads the claim by the same rule: nothing unfaithful reaches the upstream.
    let t = hs_token(&claims(json!({"sub": "alice", "team": ["blue,red"]})));
    let r = get_with_token(gw.addr, "/t/x", &t);
    assert_ne!(r.status, 500, "{}", r.text());
    // A subject beyond an exact integer names nobody; an exact one names its consumer.
    for sub in [json!(1e22), json!(42)] {
        let t = hs_token(&claims(json!({ "sub": sub })));
        let r = get_with_token(gw.addr, "/a/x", &t);
        assert_eq!(r.status, 200, "{sub}: {}", r.text());
    }
    wait_for(Duration::from_secs(5), || {
        up.text().contains("x-consumer: 42")
    });
    let seen = up.text()[before..].to_ascii_lowercase();
    assert!(!seen.contains("blue,red"), "{seen}");
    assert!(!seen.contains("viewer"), "{seen}");
    assert!(!seen.contains("x-consumer: 1e"), "{seen}");
    assert!(seen.contains("x-consumer: 42\r\n"), "{seen}");
}

#[test]
fn a_token_without_exp_needs_the_opt_out() {
    let up = Upstream::echo();
    let body = format!(
        "[policies.jwt]\njwt = {{ secret = \"{HS_SECRET}\" }}\n\n\
         [policies.noexp]\njwt = {{ secret = \"{HS_SECRET}\", require_exp = false }}\n\n{}\n\
         [[routes]]\nname = \"a\"\nprefix = \"/a\"\npolicies = [\"jwt\"]\nproxy = {{ upstream = \"app\" }}\n\n\
         [[routes]]\nname = \"n\"\nprefix = \"/n\"\npolicies = [\"noexp\"]\nproxy = {{ upstream = \"app\" }}\n",
        upstream_toml("app", &[up.addr])
    );
    let gw = Gateway::start(&body);
    let no_exp = hs_token(&json!({"sub": "alice", "iat": now()}));
    let r = get_with_token(gw.addr, "/a/x", &no_exp);
    assert_eq!(r.status, 401, "exp is required by default");
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer error=\"invalid_token\"")
    );
    assert_eq!(up.count(), 0);
    let r = get_with_token(gw.addr, "/n/x", &no_exp);
    assert_eq!(r.status, 200, "require_exp = false: {}", r.text());
    assert_eq!(up.last().header("x-consumer"), Some("alice"));
    // With exp, both accept.
    let with_exp = hs_token(&json!({"sub": "alice", "exp": now() + 60}));
    let r = get_with_token(gw.addr, "/a/x", &with_exp);
    assert_eq!(r.status, 200);
}

#[test]
fn duplicate_authorization_headers_are_400_and_never_forwarded() {
    let up = RawUpstream::start();
    let gw = hs_gateway(&up);
    let good = hs_token(&claims(json!({"sub": "alice"})));
    let cases = [
        (
            "/a/x",
            format!("Authorization: Bearer {good}\r\nAuthorization: Bearer forged"),
        ),
        (
            "/a/x",
            format!("Authorization: Bearer {good}\r\nauthorization: Bearer {good}"),
        ),
        (
            "/p/x",
            "Authorization: Basic YTpi\r\nAuthorization: Basic Yzpk".into(),
        ),
        (
            "/p/x",
            "Proxy-Authorization: Basic YTpi\r\nPROXY-AUTHORIZATION: Basic Yzpk".into(),
        ),
    ];
    for (path, headers) in &cases {
        let req = format!("GET {path} HTTP/1.1\r\nHost: gw.test\r\n{headers}\r\n\r\n");
        let resp = raw(gw.addr, req.as_bytes());
        assert_eq!(first_status(&resp), 400, "{headers}");
    }
    assert_eq!(up.connection_count(), 0, "{}", up.text());
    assert_eq!(up.byte_count(), 0);
    // One of each is fine.
    let r = request(
        gw.addr,
        "GET",
        "/p/x",
        &[
            ("Authorization", "Basic YTpi"),
            ("Proxy-Authorization", "Basic YTpi"),
        ],
        b"",
    );
    assert_eq!(r.status, 200);
}

#[test]
fn jwt_challenges_are_exact() {
    let up = RawUpstream::start();
    let gw = hs_gateway(&up);
    let r = get(gw.addr, "/a/x");
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header_all("www-authenticate"),
        vec!["Bearer realm=\"ringway\""],
        "missing token"
    );
    for (what, t) in [
        ("garbage", "not.a.jwt".to_string()),
        ("expired", hs_token(&claims(json!({"exp": now() - 3600})))),
    ] {
        let r = get_with_token(gw.addr, "/a/x", &t);
        assert_eq!(r.status, 401, "{what}");
        assert_eq!(
            r.header_all("www-authenticate"),
            vec!["Bearer error=\"invalid_token\""],
            "{what}"
        );
    }
    assert_eq!(up.connection_count(), 0);
}

/// A token read from another header than `Authorization`, without the consumer claim: the
/// caller is verified but has no name to key a cached answer to, so the answer is never
/// shared (before, one token's answer was a hit for the next token).
#[test]
fn a_verified_caller_without_a_consumer_is_never_served_from_a_shared_cache() {
    let up = Upstream::echo();
    let gw = Gateway::start(&format!(
        "[cache]\nmax_bytes = \"16MiB\"\n\n\
         [policies.jwt]\njwt = {{ secret = \"{HS_SECRET}\", algorithms = [\"HS256\"], header = \"x-token\" }}\n\n\
         [policies.c]\ncache = {{ ttl = \"60s\" }}\n\n{}\n\
         [[routes]]\nname = \"a\"\nprefix = \"/\"\npolicies = [\"jwt\", \"c\"]\nproxy = {{ upstream = \"app\" }}\n",
        upstream_toml("app", &[up.addr])
    ));
    let nameless = |email: &str| {
        let mut c = claims(json!({ "email": email }));
        c.as_object_mut().unwrap().remove("sub");
        hs_token(&c)
    };
    let (alice, bob) = (nameless("alice@example.com"), nameless("bob@example.com"));
    let a = request(gw.addr, "GET", "/me", &[("X-Token", &alice)], b"");
    assert_eq!(a.status, 200, "{}", a.text());
    let b = request(gw.addr, "GET", "/me", &[("X-Token", &bob)], b"");
    assert_eq!(b.status, 200, "{}", b.text());
    assert!(
        !b.text().contains(&alice),
        "bob got alice's answer: {}",
        b.text()
    );
    assert_eq!(up.count(), 2, "both went upstream");
}

/// A policy reading its token from a custom header: a second copy (here an unsigned `alg:
/// none` token naming another subject) is refused with 400, and an underscore spelling
/// (`X_Jwt`, one variable with `x-jwt` to CGI, WSGI and PHP backends) never reaches the
/// upstream. Before, the first copy was verified and every copy was forwarded, so a backend
/// reading the last one, or decoding the payload unverified, took the forged identity.
#[test]
fn a_custom_token_header_reaches_the_upstream_once_as_verified() {
    let up = Upstream::echo();
    let gw = Gateway::start(&format!(
        "[policies.jwt]\njwt = {{ secret = \"{HS_SECRET}\", algorithms = [\"HS256\"], header = \"x-jwt\" }}\n\n{}\n\
         [[routes]]\nname = \"j\"\nprefix = \"/j\"\npolicies = [\"jwt\"]\nproxy = {{ upstream = \"app\" }}\n",
        upstream_toml("app", &[up.addr])
    ));
    let good = hs_token(&claims(json!({"sub": "alice"})));
    let forged = format!(
        "{}.{}.",
        enc(br#"{"alg":"none"}"#),
        enc(json!({"sub": "admin", "exp": now() + 600}).to_string())
    );
    let r = request(
        gw.addr,
        "GET",
        "/j/x",
        &[("x-jwt", &good), ("X-JWT", &forged)],
        b"",
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(
        up.count(),
        0,
        "a request with two tokens reached the upstream"
    );
    let r = request(
        gw.addr,
        "GET",
        "/j/x",
        &[("x-jwt", &good), ("X_Jwt", &forged)],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = up.last();
    let tokens: Vec<&str> = seen
        .headers
        .iter()
        .filter(|(n, _)| n.to_ascii_lowercase().replace('_', "-") == "x-jwt")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(tokens, [good.as_str()], "{:?}", seen.headers);
    assert_eq!(seen.header("x-consumer"), Some("alice"));
}

/// A verified token's subject reaches the access log as the consumer. A subject with spaces
/// forged the fields a split on spaces reads in the `combined` line (nginx writes
/// `$remote_user` bare); it is escaped. An 8-bit CSI (U+009B) or a right-to-left override
/// (U+202E) in a subject was written raw in the JSON line, for `tail -f` to act on: such a
/// subject is now refused outright (a derived value may not carry them), and the same
/// characters in a client's own header (`User-Agent`) are escaped in both formats.
#[test]
fn a_subject_cannot_forge_log_fields_or_drive_a_terminal() {
    let sub = "alice [01/Jan/2030:00:00:00 +0000] x 200 0 y";
    let good = hs_token(&claims(json!({ "sub": sub })));
    let ua = "ua\u{9b}2J\u{202e}txt\u{61c}";
    for format in ["combined", "json"] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let up = Upstream::echo();
        let gw = Gateway::start_workers(
            &format!(
                "[access_log]\nenabled = true\nformat = \"{format}\"\npath = \"{}\"\n\n\
                 [policies.jwt]\njwt = {{ secret = \"{HS_SECRET}\", algorithms = [\"HS256\"] }}\n\n{}\n\
                 [[routes]]\nname = \"a\"\nprefix = \"/a\"\npolicies = [\"jwt\"]\nproxy = {{ upstream = \"app\" }}\n",
                path.display(),
                upstream_toml("app", &[up.addr])
            ),
            1,
        );
        let r = request(
            gw.addr,
            "GET",
            "/a/x",
            &[("Authorization", &bearer(&good)), ("User-Agent", ua)],
            b"",
        );
        assert_eq!(r.status, 200, "{}", r.text());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let line = loop {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            if let Some(l) = text.lines().next() {
                break l.to_string();
            }
            assert!(std::time::Instant::now() < deadline, "no log line");
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        assert!(
            !line.contains('\u{9b}') && !line.contains('\u{202e}') && !line.contains('\u{61c}'),
            "{line:?}"
        );
        if format == "combined" {
            let fields: Vec<&str> = line.split(' ').collect();
            assert_eq!(
                fields[2], "alice\\x20[01/Jan/2030:00:00:00\\x20+0000]\\x20x\\x20200\\x200\\x20y",
                "{line}"
            );
            assert!(
                fields[3].starts_with('[') && !fields[3].starts_with("[01/Jan/2030"),
                "{line}"
            );
            assert_eq!(fields[8], "200", "the status field: {line}");
            assert!(
                line.contains("ua\\xC2\\x9B2J\\xE2\\x80\\xAEtxt\\xD8\\x9C"),
                "{line}"
            );
        } else {
            assert!(line.contains("ua\\u009b2J\\u202etxt\\u061c"), "{line}");
            let v: Value = serde_json::from_str(&line).unwrap();
            assert_eq!(v["consumer"], sub);
            assert_eq!(v["user_agent"], ua);
        }
    }
    // The same characters in the subject itself: refused before anything is logged as it.
    for bad in ["alice\u{9b}2J", "\u{202e}txt", "\u{61c}txt"] {
        let t = hs_token(&claims(json!({ "sub": bad })));
        let up = Upstream::echo();
        let gw = Gateway::start_workers(
            &format!(
                "[policies.jwt]\njwt = {{ secret = \"{HS_SECRET}\", algorithms = [\"HS256\"] }}\n\n{}\n\
                 [[routes]]\nname = \"a\"\nprefix = \"/a\"\npolicies = [\"jwt\"]\nproxy = {{ upstream = \"app\" }}\n",
                upstream_toml("app", &[up.addr])
            ),
            1,
        );
        assert_eq!(get_with_token(gw.addr, "/a/x", &t).status, 401, "{bad:?}");
    }
}

/// A payload naming a member twice is refused: the gateway would go by the last `sub` (or
/// `exp`), while a backend decoding the forwarded token with a parser that keeps the first
/// would read another identity, or another expiry, than the one the gateway checked. So is a
/// JOSE header whose `crit` is null.
#[test]
fn a_payload_with_a_repeated_member_is_refused() {
    let up = RawUpstream::start();
    let gw = hs_gateway(&up);
    let key = Key::Hmac(HS_SECRET.as_bytes().to_vec());
    let signed = |payload: String| {
        let input = format!(
            "{}.{}",
            enc(json!({"alg": "HS256", "typ": "JWT"}).to_string()),
            enc(payload)
        );
        let sig = enc(key.sign("HS256", input.as_bytes()));
        format!("{input}.{sig}")
    };
    let exp = now() + 600;
    for payload in [
        format!(r#"{{"sub":"bob","sub":"alice","exp":{exp}}}"#),
        format!(r#"{{"sub":"alice","exp":1,"exp":{exp}}}"#),
    ] {
        let r = get_with_token(gw.addr, "/a/x", &signed(payload.clone()));
        assert_eq!(r.status, 401, "{payload}");
    }
    // A JOSE header with `"crit": null` is a `crit` all the same (RFC 7515 4.1.11 wants an
    // array of understood names; none is understood here), not an absent one.
    let crit_null = {
        let input = format!(
            "{}.{}",
            enc(r#"{"alg":"HS256","crit":null}"#),
            enc(format!(r#"{{"sub":"alice","exp":{exp}}}"#))
        );
        let sig = enc(key.sign("HS256", input.as_bytes()));
        format!("{input}.{sig}")
    };
    assert_eq!(get_with_token(gw.addr, "/a/x", &crit_null).status, 401);
    assert_eq!(up.connection_count(), 0, "{}", up.text());
    // The same members once each pass.
    let r = get_with_token(
        gw.addr,
        "/a/x",
        &signed(format!(r#"{{"sub":"alice","exp":{exp}}}"#)),
    );
    assert_eq!(r.status, 200, "{}", r.text());
}

//! JWT decoding and validation through the public `JwtPolicy::verify`, against HS256 policies
//! built from TOML. The first input byte picks a mode:
//! - raw: the rest is the token as sent (base64url splitting, header JSON, alg checks);
//! - signed: the rest is split into header JSON and payload JSON, which the target encodes and
//!   signs with the policy's secret, so the claims parser (reached only after a valid
//!   signature) is fuzzed too;
//! - payload: a fixed valid header and an arbitrary signed payload.
//!
//! Invariants: no panic; an accepted token is not expired at `now`; derived header values
//! carry no control characters; a second verify (a cache hit) gives the same outcome.
#![no_main]

use std::path::Path;
use std::sync::{Arc, OnceLock};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use libfuzzer_sys::fuzz_target;
use ring::hmac;
use ringway::jwt::{self, JwksFetchers, JwtPolicy, RawJwt, TokenCache};

const SECRET: &str = "fuzz-secret-0123456789abcdef0123456789";

const PLAIN: &str = r#"
algorithms = ["HS256"]
secret = "fuzz-secret-0123456789abcdef0123456789"
"#;

const FULL: &str = r#"
algorithms = ["HS256", "HS384"]
secret = "fuzz-secret-0123456789abcdef0123456789"
issuers = ["https://issuer.example", "other"]
audiences = ["api", "web"]
leeway = "5s"
consumer_claim = "client_id"
claims_to_headers = { email = "x-user-email", roles = "x-user-roles", org = "x-org" }
required_claims = { tier = "gold" }
"#;

fn policy(text: &str) -> Arc<JwtPolicy> {
    let raw: RawJwt = toml::from_str(text).expect("fuzz policy TOML");
    let fetchers = JwksFetchers::new();
    jwt::compile(
        &raw,
        0..0,
        Path::new("/nonexistent"),
        &fetchers,
        &mut |_, f, m| panic!("fuzz policy rejected: {f}: {m}"),
    )
    .expect("fuzz policy compiles")
}

fn policies() -> &'static [Arc<JwtPolicy>; 2] {
    static P: OnceLock<[Arc<JwtPolicy>; 2]> = OnceLock::new();
    P.get_or_init(|| [policy(PLAIN), policy(FULL)])
}

fn signed(header: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut token = URL_SAFE_NO_PAD.encode(header).into_bytes();
    token.push(b'.');
    token.extend_from_slice(URL_SAFE_NO_PAD.encode(payload).as_bytes());
    let key = hmac::Key::new(hmac::HMAC_SHA256, SECRET.as_bytes());
    let sig = hmac::sign(&key, &token);
    token.push(b'.');
    token.extend_from_slice(URL_SAFE_NO_PAD.encode(sig.as_ref()).as_bytes());
    token
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let policy = &policies()[(sel >> 7) as usize];
    let now = 1_700_000_000u64;
    let token = match sel % 3 {
        0 => rest.to_vec(),
        1 => {
            let cut = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
            let (h, p) = rest.split_at(cut);
            signed(h, p.get(1..).unwrap_or_default())
        }
        _ => signed(br#"{"alg":"HS256","typ":"JWT"}"#, rest),
    };
    let mut cache = TokenCache::new(4);
    let first = policy.verify(&token, now, &mut cache);
    if let Ok(v) = &first {
        if let Some(exp) = v.exp {
            assert!(now < exp.saturating_add(policy.leeway()));
        }
        for (name, value) in &v.headers {
            assert!(!name.is_empty());
            assert!(value
                .bytes()
                .all(|b| b == b'\t' || (b >= 0x20 && b != 0x7f)));
        }
    }
    let second = policy.verify(&token, now, &mut cache);
    match (&first, &second) {
        (Ok(a), Ok(b)) => assert_eq!(a.consumer, b.consumer),
        (Err(a), Err(b)) => assert_eq!(a, b),
        _ => panic!("cached verify disagrees: {first:?} vs {second:?}"),
    }
});

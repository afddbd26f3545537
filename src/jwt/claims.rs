//! What a valid token says (`Verified`: consumer, scopes, upstream headers, claims) and the
//! `exp`/`nbf` check both a fresh verification and a cache hit apply.

use serde_json::{Map, Value};

use super::error::JwtError;

/// What a valid token says, ready for the proxy: consumer, scopes and upstream headers.
#[derive(Debug)]
pub struct Verified {
    /// The consumer claim (`sub` by default) when it is a string or number.
    pub consumer: Option<String>,
    /// From `scope` (space-separated) and/or `scp` (array or string).
    pub scopes: Vec<String>,
    /// `(lowercase header name, value)` for each configured claim present in the token. Every
    /// value (and `consumer`) passed `http1::is_safe_header_value`, else the token is refused.
    pub headers: Vec<(String, String)>,
    /// The whole payload.
    pub claims: Map<String, Value>,
    /// `exp` in unix seconds, if present.
    pub exp: Option<u64>,
    /// `nbf` in unix seconds, if present.
    pub nbf: Option<u64>,
}

impl Verified {
    /// Whether `scope` is among the token's scopes.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }
}

/// `exp`/`nbf` against `now` with `leeway` seconds: a token is valid from `nbf - leeway`
/// until just before `exp + leeway` (RFC 7519: "before" exp, "after or equal" nbf).
pub(crate) fn check_time(
    exp: Option<u64>,
    nbf: Option<u64>,
    now: u64,
    leeway: u64,
) -> Result<(), JwtError> {
    if exp.is_some_and(|exp| now >= exp.saturating_add(leeway)) {
        return Err(JwtError::Expired);
    }
    if nbf.is_some_and(|nbf| now.saturating_add(leeway) < nbf) {
        return Err(JwtError::NotYetValid);
    }
    Ok(())
}

/// A token's payload members, refusing a member name that appears twice. RFC 7519 4 lets a
/// parser keep the last duplicate, but a backend that decodes the forwarded token with a
/// parser keeping the first would read another `sub` or `exp` than the one the gateway
/// checked (`{"sub":"bob","sub":"alice"}`).
pub(crate) struct UniqueMembers(pub Map<String, Value>);

impl<'de> serde::Deserialize<'de> for UniqueMembers {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Members;
        impl<'de> serde::de::Visitor<'de> for Members {
            type Value = UniqueMembers;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object with unique member names")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut m: A,
            ) -> Result<Self::Value, A::Error> {
                let mut out = Map::new();
                while let Some((k, v)) = m.next_entry::<String, Value>()? {
                    if out.contains_key(&k) {
                        return Err(serde::de::Error::custom("duplicate member"));
                    }
                    out.insert(k, v);
                }
                Ok(UniqueMembers(out))
            }
        }
        d.deserialize_map(Members)
    }
}

//! `JwtPolicy`: the compiled `jwt` policy and its verification of one token (header, algorithm,
//! candidate keys, signature, then claims), answered from and filling the per-core cache.

use std::fmt;
use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::alg::{Alg, AlgSet, Key, KeyKind};
use super::cache::{Lookup, TokenCache};
use super::claims::{check_time, Verified};
use super::error::JwtError;
use super::jwks::{JwksSource, KeySnapshot};

/// Longest token `verify` looks at; longer ones are `Malformed`.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;
/// At most this many candidate keys are tried for one token (tokens without `kid`).
const MAX_CANDIDATE_KEYS: usize = 8;

/// A compiled `jwt` policy. `Send + Sync`; immutable except the JWKS key set, which its
/// fetcher swaps atomically.
pub struct JwtPolicy {
    /// Unique per compile; keys the token cache so policies never share entries.
    pub(super) id: u64,
    pub(super) header: String,
    /// `Authorization` needs the `Bearer` scheme; other headers may carry the bare token.
    pub(super) bearer_only: bool,
    pub(super) algorithms: AlgSet,
    pub(super) static_keys: Vec<Key>,
    pub(super) remote: Option<Arc<JwksSource>>,
    /// Whether HMAC (`oct`) keys from `remote` may verify: only when `algorithms` asks for an
    /// HMAC algorithm explicitly (anyone can read a JWKS document).
    pub(super) remote_hmac: bool,
    pub(super) issuers: Vec<String>,
    pub(super) audiences: Vec<String>,
    pub(super) leeway: u64,
    /// Refuse tokens without `exp` (default true).
    pub(super) require_exp: bool,
    pub(super) consumer_claim: String,
    pub(super) claims_to_headers: Vec<(String, String)>,
    pub(super) required_claims: Vec<(String, Value)>,
}

impl fmt::Debug for JwtPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtPolicy")
            .field("header", &self.header)
            .field("algorithms", &self.algorithms.iter().collect::<Vec<_>>())
            .field("static_keys", &self.static_keys)
            .field("jwks_url", &self.remote.as_ref().map(|r| r.url()))
            .field("issuers", &self.issuers)
            .field("audiences", &self.audiences)
            .field("leeway", &self.leeway)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct JoseHeader {
    alg: String,
    kid: Option<String>,
    /// Present at all, whatever its value: `"crit": null` is not an absent `crit` (a JSON
    /// parser mapping null to "absent" would let a header through that RFC 7515 4.1.11 says
    /// to refuse when its extensions are not understood).
    #[serde(default, deserialize_with = "present")]
    crit: bool,
}

/// `true` for any value, `null` included (with `#[serde(default)]`: `false` when absent).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    serde::de::IgnoredAny::deserialize(d).map(|_| true)
}

impl JwtPolicy {
    /// The request header the token is read from (lowercase).
    pub fn header_name(&self) -> &str {
        &self.header
    }

    /// Allowed algorithms.
    pub fn algorithms(&self) -> AlgSet {
        self.algorithms
    }

    /// Leeway for `exp`/`nbf`, in seconds.
    pub fn leeway(&self) -> u64 {
        self.leeway
    }

    /// The JWKS source, when the policy has a `jwks_url`.
    pub fn jwks(&self) -> Option<&Arc<JwksSource>> {
        self.remote.as_ref()
    }

    /// Header names this policy sets upstream; the proxy should drop client-sent copies.
    pub fn forwarded_header_names(&self) -> impl Iterator<Item = &str> {
        self.claims_to_headers.iter().map(|(_, h)| h.as_str())
    }

    /// The token in a header value: `Bearer <jwt>` (scheme case-insensitive). For a header
    /// other than `authorization` a bare token is accepted too.
    pub fn token_from_header<'a>(&self, value: &'a [u8]) -> Option<&'a [u8]> {
        let v = value.trim_ascii();
        if v.len() > 7 && v[..6].eq_ignore_ascii_case(b"bearer") && matches!(v[6], b' ' | b'\t') {
            let t = v[7..].trim_ascii();
            return (!t.is_empty()).then_some(t);
        }
        if self.bearer_only || v.is_empty() || v.iter().any(|b| matches!(b, b' ' | b'\t')) {
            return None;
        }
        Some(v)
    }

    /// Verifies `token` at unix time `now`, answering from and filling the per-core `cache`.
    /// A cache hit skips signature verification but still checks `exp`/`nbf` against `now`.
    pub fn verify(
        &self,
        token: &[u8],
        now: u64,
        cache: &mut TokenCache,
    ) -> Result<Arc<Verified>, JwtError> {
        if token.is_empty() {
            return Err(JwtError::Missing);
        }
        if token.len() > MAX_TOKEN_LEN {
            return Err(JwtError::Malformed);
        }
        let snapshot = self.remote.as_ref().map(|r| r.snapshot());
        let snapshot: Option<&KeySnapshot> = snapshot.as_ref().and_then(|g| g.as_deref());
        let generation = snapshot.map_or(0, |s| s.generation);
        match cache.lookup(self.id, generation, token, now, self.leeway) {
            Lookup::Hit(v) => return Ok(v),
            Lookup::Rejected(e) => return Err(e),
            Lookup::Miss => {}
        }
        let verified = Arc::new(self.verify_uncached(token, now, snapshot)?);
        cache.insert(
            self.id,
            generation,
            token,
            verified.clone(),
            now,
            self.leeway,
        );
        Ok(verified)
    }

    fn verify_uncached(
        &self,
        token: &[u8],
        now: u64,
        snapshot: Option<&KeySnapshot>,
    ) -> Result<Verified, JwtError> {
        let payload = self.check_signature(token, snapshot)?;
        // Signature is good: only now is the payload parsed.
        let claims = serde_json::from_slice::<super::claims::UniqueMembers>(&payload)
            .map_err(|_| JwtError::Malformed)?
            .0;
        let (exp, nbf) = self.check_claims(&claims, now)?;
        self.identity(claims, exp, nbf)
    }

    /// Splits the token, checks its header (algorithm allowed, no `crit`) and its signature
    /// against the static and fetched keys; returns the decoded payload, still unparsed.
    fn check_signature(
        &self,
        token: &[u8],
        snapshot: Option<&KeySnapshot>,
    ) -> Result<Vec<u8>, JwtError> {
        let mut parts = token.split(|&b| b == b'.');
        let (Some(h64), Some(p64), Some(s64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JwtError::Malformed);
        };
        let header_json = b64(h64)?;
        let header: JoseHeader =
            serde_json::from_slice(&header_json).map_err(|_| JwtError::Malformed)?;
        // No critical extension is understood, so any `crit` must be refused (RFC 7515 4.1.11).
        if header.crit {
            return Err(JwtError::Malformed);
        }
        let alg = Alg::from_name(header.alg.as_bytes()).ok_or(JwtError::BadAlgorithm)?;
        if !self.algorithms.contains(alg) {
            return Err(JwtError::BadAlgorithm);
        }
        let payload = b64(p64)?;
        let signature = b64(s64)?;
        let signed = &token[..h64.len() + 1 + p64.len()];

        let kid = header.kid.as_deref();
        let remote_keys = snapshot.map(|s| s.keys.as_slice()).unwrap_or_default();
        let mut tried = 0;
        let mut valid = false;
        let remote_keys = remote_keys
            .iter()
            .filter(|k| self.remote_hmac || k.material.kind() != KeyKind::Hmac);
        for key in self.static_keys.iter().chain(remote_keys) {
            if !key.accepts(alg) || !key.matches_kid(kid) {
                continue;
            }
            tried += 1;
            if key.verify(alg, signed, &signature) {
                valid = true;
                break;
            }
            if tried >= MAX_CANDIDATE_KEYS {
                break;
            }
        }
        if tried == 0 {
            if let Some(remote) = &self.remote {
                remote.request_refresh();
                if snapshot.is_none() {
                    return Err(JwtError::NoKeysYet);
                }
            }
            return Err(JwtError::UnknownKey);
        }
        if !valid {
            return Err(JwtError::BadSignature);
        }
        Ok(payload)
    }

    /// Time (`exp`, `nbf`), issuer, audience and required claims; returns `(exp, nbf)`.
    fn check_claims(
        &self,
        claims: &Map<String, Value>,
        now: u64,
    ) -> Result<(Option<u64>, Option<u64>), JwtError> {
        let exp = claims.get("exp").map(numeric_date).transpose()?;
        let nbf = claims.get("nbf").map(numeric_date).transpose()?;
        if self.require_exp && exp.is_none() {
            return Err(JwtError::MissingExpiry);
        }
        check_time(exp, nbf, now, self.leeway)?;
        if !self.issuers.is_empty() {
            let iss = claims.get("iss").and_then(Value::as_str);
            if !iss.is_some_and(|i| self.issuers.iter().any(|x| x == i)) {
                return Err(JwtError::BadIssuer);
            }
        }
        if !self.audiences.is_empty() {
            let ok = match claims.get("aud") {
                Some(Value::String(a)) => self.audiences.contains(a),
                Some(Value::Array(list)) => list
                    .iter()
                    .filter_map(Value::as_str)
                    .any(|a| self.audiences.iter().any(|x| x == a)),
                _ => false,
            };
            if !ok {
                return Err(JwtError::BadAudience);
            }
        }
        for (name, want) in &self.required_claims {
            if claims.get(name) != Some(want) {
                return Err(JwtError::MissingClaim);
            }
        }
        Ok((exp, nbf))
    }

    /// The caller the checked claims describe: consumer, scopes and the claims mapped to
    /// headers. The consumer and mapped claims become upstream header values: a token that
    /// would inject a header line (or a whole request) is a bad credential, not a header to drop.
    fn identity(
        &self,
        claims: Map<String, Value>,
        exp: Option<u64>,
        nbf: Option<u64>,
    ) -> Result<Verified, JwtError> {
        // An empty claim names nobody: the caller is verified without a consumer, as when
        // the claim is absent (no shared "" consumer for limits and caches).
        // A number names a consumer only as an exact integer: `1e+22` is what two subs that
        // differ past f64's precision (10000000000000000000001 and ...02) both read as.
        let consumer = match claims.get(&self.consumer_claim) {
            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
            Some(Value::Number(n)) if n.is_i64() || n.is_u64() => Some(n.to_string()),
            _ => None,
        };
        if consumer
            .as_deref()
            .is_some_and(|c| !crate::http1::is_safe_header_value(c.as_bytes()))
        {
            return Err(JwtError::UnsafeClaim);
        }
        let mut scopes = Vec::new();
        for name in ["scope", "scp"] {
            match claims.get(name) {
                // RFC 6749 3.3 / RFC 8693 4.2: scopes are separated by spaces (%x20) only; a
                // tab or a no-break space inside is part of one scope, not a separator, so
                // "read\u{a0}write" grants neither `read` nor `write`.
                Some(Value::String(s)) => scopes.extend(
                    s.split(' ')
                        .filter(|scope| !scope.is_empty())
                        .map(String::from),
                ),
                Some(Value::Array(list)) => {
                    scopes.extend(list.iter().filter_map(Value::as_str).map(String::from))
                }
                _ => {}
            }
        }
        let mut headers = Vec::with_capacity(self.claims_to_headers.len());
        for (claim, header) in &self.claims_to_headers {
            let value = match claims.get(claim).map(claim_text) {
                None | Some(Ok(None)) => continue,
                Some(Ok(Some(v))) => v,
                Some(Err(NoText)) => return Err(JwtError::UnsafeClaim),
            };
            if !crate::http1::is_safe_header_value(value.as_bytes()) {
                return Err(JwtError::UnsafeClaim);
            }
            headers.push((header.clone(), value));
        }
        Ok(Verified {
            consumer,
            scopes,
            headers,
            claims,
            exp,
            nbf,
        })
    }
}

fn b64(part: &[u8]) -> Result<Vec<u8>, JwtError> {
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| JwtError::Malformed)
}

/// A JSON NumericDate as whole unix seconds (fractions dropped, negatives as 0).
fn numeric_date(v: &Value) -> Result<u64, JwtError> {
    let Value::Number(n) = v else {
        return Err(JwtError::Malformed);
    };
    if let Some(u) = n.as_u64() {
        return Ok(u);
    }
    match n.as_f64() {
        Some(f) if f.is_finite() => Ok(if f <= 0.0 { 0 } else { f as u64 }),
        _ => Err(JwtError::Malformed),
    }
}

/// A claim that has no faithful text form: an array holding an array or an object, or an
/// element containing `,`. Joined, such a list would read as other elements (`["viewer,admin"]`
/// as `viewer` and `admin`) or drop some (`[{"x":1},"admin"]` as `admin`).
#[derive(Debug, PartialEq, Eq)]
pub struct NoText;

/// The one rule turning a claim into text, wherever the gateway uses it (a `claims_to_headers`
/// header, `${claim.NAME}`, an `authorize` claim comparison): strings as they are, booleans and
/// numbers in JSON form, objects as compact JSON, an array as its elements' text joined with
/// `,` (nulls left out). `Ok(None)` for null. Arrays that cannot be joined faithfully are
/// `Err(NoText)` (see [`NoText`]). The caller still checks a header value with
/// `http1::is_safe_header_value`.
pub fn claim_text(v: &Value) -> Result<Option<String>, NoText> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        Value::Bool(b) => Ok(Some(b.to_string())),
        Value::Number(n) => Ok(Some(n.to_string())),
        Value::Object(_) => Ok(serde_json::to_string(v).ok()),
        Value::Array(list) => {
            let mut out = Vec::with_capacity(list.len());
            for item in list {
                match item {
                    Value::Null => {}
                    Value::Array(_) | Value::Object(_) => return Err(NoText),
                    Value::String(s) if s.contains(',') => return Err(NoText),
                    scalar => out.extend(claim_text(scalar)?),
                }
            }
            Ok(Some(out.join(",")))
        }
    }
}

//! `JwtError`: why a token was refused (every kind is a 401), with its metric label, its
//! problem-details sentence and its `WWW-Authenticate` value.

use std::fmt;

/// Why a token was refused. Every kind maps to 401.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JwtError {
    /// No token in the request.
    Missing,
    /// Not three base64url parts, bad JSON, bad claim types, or too long.
    Malformed,
    /// `alg` is `none`, unknown, or not in the policy's allowed list.
    BadAlgorithm,
    /// No configured key fits the token's `kid` and `alg`.
    UnknownKey,
    BadSignature,
    Expired,
    NotYetValid,
    BadIssuer,
    BadAudience,
    /// A required claim is absent or has another value.
    MissingClaim,
    /// The policy's JWKS URL has not been fetched successfully yet.
    NoKeysYet,
    /// The token has no `exp` and the policy requires one (`require_exp`, the default).
    MissingExpiry,
    /// The consumer claim, or a claim mapped to a header, is not a safe header value
    /// (`http1::is_safe_header_value`): it could inject header lines upstream.
    UnsafeClaim,
}

impl JwtError {
    /// Short snake_case name, used as a metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            JwtError::Missing => "missing",
            JwtError::Malformed => "malformed",
            JwtError::BadAlgorithm => "bad_algorithm",
            JwtError::UnknownKey => "unknown_key",
            JwtError::BadSignature => "bad_signature",
            JwtError::Expired => "expired",
            JwtError::NotYetValid => "not_yet_valid",
            JwtError::BadIssuer => "bad_issuer",
            JwtError::BadAudience => "bad_audience",
            JwtError::MissingClaim => "missing_claim",
            JwtError::NoKeysYet => "no_keys_yet",
            JwtError::MissingExpiry => "missing_exp",
            JwtError::UnsafeClaim => "unsafe_claim",
        }
    }

    /// One sentence for the problem-details body.
    pub fn detail(&self) -> &'static str {
        match self {
            JwtError::Missing => "A bearer token is required.",
            JwtError::Malformed => "The bearer token is not a well-formed JWT.",
            JwtError::BadAlgorithm => "The token's signing algorithm is not accepted.",
            JwtError::UnknownKey => "The token was signed with an unknown key.",
            JwtError::BadSignature => "The token's signature is invalid.",
            JwtError::Expired => "The token has expired.",
            JwtError::NotYetValid => "The token is not valid yet.",
            JwtError::BadIssuer => "The token's issuer is not accepted.",
            JwtError::BadAudience => "The token is not meant for this audience.",
            JwtError::MissingClaim => "The token lacks a required claim.",
            JwtError::NoKeysYet => "Signing keys are not available yet; try again shortly.",
            JwtError::MissingExpiry => "The token has no expiry time (exp).",
            JwtError::UnsafeClaim => "The token carries a claim that cannot be forwarded.",
        }
    }

    /// Value for the `WWW-Authenticate` response header (RFC 6750).
    pub fn www_authenticate(&self) -> &'static str {
        match self {
            JwtError::Missing => "Bearer",
            JwtError::NoKeysYet => {
                "Bearer error=\"invalid_token\", error_description=\"signing keys unavailable\""
            }
            _ => "Bearer error=\"invalid_token\"",
        }
    }
}

impl fmt::Display for JwtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.detail())
    }
}

impl std::error::Error for JwtError {}

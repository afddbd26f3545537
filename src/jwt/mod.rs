//! JWT validation for the `jwt` policy: compiled policy (`JwtPolicy`), verification, the
//! claims it derives (`Verified`) and the error kinds it reports (`JwtError`).
//!
//! This file only declares the modules and re-exports. Submodules: `policy` (`JwtPolicy` and
//! `verify`), `claims` (`Verified`, the `exp`/`nbf` check), `error` (`JwtError`), `config` (raw
//! TOML table and `compile`), `alg` (algorithms, keys, signature checks), `keys` (PEM/DER and
//! JWKS parsing), `jwks` (background JWKS fetchers), `cache` (per-core `TokenCache`).
//!
//! Invariants:
//! - Workers never block: `verify` does no I/O and takes no lock; remote keys are read with one
//!   atomic load and refreshed by a background thread (`jwks`).
//! - `alg: none` is never accepted: it has no `Alg` value, and `compile` refuses it in config.
//! - A key verifies only algorithms of its own kind (no HS256 with an RSA public key).
//! - A cached verification never outlives the token: `exp`/`nbf` are re-checked on every hit.
//! - Nothing derived from the token panics: every length and conversion is checked.
//! - A token without `exp` is refused unless the policy sets `require_exp = false`.
//! - The consumer and every claim mapped to a header pass `http1::is_safe_header_value`, or
//!   the whole token is refused (`UnsafeClaim`): no claim can inject a header line upstream.

mod alg;
mod cache;
mod claims;
mod config;
mod error;
mod jwks;
mod keys;
mod policy;
#[cfg(test)]
mod tests;

pub use alg::{Alg, AlgSet, KeyKind, ALL_ALGS};
pub use cache::TokenCache;
pub(crate) use claims::UniqueMembers;
pub use claims::Verified;
pub use config::{compile, RawJwt};
pub use error::JwtError;
pub use jwks::{JwksFetchers, JwksSource};
pub use policy::{claim_text, JwtPolicy, NoText, MAX_TOKEN_LEN};

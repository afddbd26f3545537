//! The developer portal: HTML pages generated from the imported document(s), served by the
//! route `[[openapi]] portal = { path = ... }` makes (`exchange::portal` answers its
//! requests). Self-contained: assets are embedded in the binary.

use std::sync::Arc;

use super::model::Api;

/// One portal (one `[[openapi]]` block's `portal`), built once per config generation.
#[derive(Debug)]
pub struct Portal {
    /// The path the portal is served under (`/docs`), without a trailing slash.
    pub base: String,
    /// The APIs it documents.
    pub apis: Vec<Arc<Api>>,
    /// The gateway path prefix each API's operations are served under (parallel to `apis`).
    pub prefixes: Vec<String>,
    /// Self-service keys: how a consumer signs in (`None`: off).
    pub keys: Option<SignIn>,
}

/// How a consumer signs in to the portal's self-service keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignIn {
    /// With one of their existing API keys (checked against the key store).
    ApiKey,
    /// With a JWT the named `jwt` policy accepts: its index in `Policies::list` (a
    /// `PolicyId`'s number; `openapi` sits below `policy` and does not name its types).
    Jwt(u32),
}

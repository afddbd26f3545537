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
}

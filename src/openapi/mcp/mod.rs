//! Selected operations of an imported API as MCP tools over the Streamable HTTP transport
//! (JSON-RPC 2.0), on the route `[[openapi]] mcp = { path = ... }` makes (`exchange::mcp`
//! answers its requests). A tool call runs as a request through the operation's own route
//! and policies.

use std::sync::Arc;

use super::model::Api;

/// One MCP endpoint (one `[[openapi]]` block's `mcp`), built once per config generation.
#[derive(Debug)]
pub struct McpServer {
    /// The endpoint path (`/mcp`).
    pub path: String,
    pub api: Arc<Api>,
    /// The operations exposed as tools (indexes into `api.operations`).
    pub tools: Vec<usize>,
    /// The gateway path prefix the API's operations are served under.
    pub prefix: String,
}

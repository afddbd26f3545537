//! Answers an MCP endpoint's route (`Action::Mcp`): JSON-RPC messages of the Streamable HTTP
//! transport, handled by `openapi::mcp`; a tool call runs through the operation's own route.

use std::rc::Rc;

use crate::config::Route;
use crate::core::{Core, Generation};
use crate::openapi::mcp::McpServer;

use super::body::discard_body;
use super::error::ProxyError;
use super::model::Exchange;
use super::respond;
use super::wire::{Downstream, Outcome};

/// Serves one MCP request.
pub async fn serve<D: Downstream>(
    core: &Core,
    gen: &Rc<Generation>,
    ex: &mut Exchange<'_>,
    down: &mut D,
    route: &Route,
    server: &McpServer,
) -> Result<Outcome, ProxyError> {
    let _ = (gen, server);
    discard_body(ex, down, route.max_body).await?;
    let fields = b"content-type: text/plain\r\n";
    Ok(respond::local(core, ex, down, 501, fields, Some(b"mcp: not built yet\n")).await)
}

//! Answers an MCP endpoint's route (`Action::Mcp`): JSON-RPC messages of the Streamable HTTP
//! transport (MCP 2025-06-18), dispatched by `openapi::mcp`. POST carries messages and is
//! answered with `application/json` (no SSE streams: GET is 405, as the spec allows); DELETE
//! ends a session.
//!
//! A `tools/call` becomes an HTTP/1.1 request for the operation's own route and runs through
//! the phases on a memory wire (`pipeline::run_made`) with this request's client facts, in this
//! request's generation: the route's policies (auth, rate limits, validation) judge it as they
//! would a direct request, and it is counted and logged like one. The MCP client's own
//! credentials (`Authorization`, the API's `apiKey` headers, cookie or query parameter) ride
//! along, so the consumer is whoever the MCP client is.
//!
//! Order of checks: `Origin` (403, DNS-rebinding defence) → method → body size (413) →
//! content type (415) → JSON-RPC parse (400) → session (400 missing, 404 unknown) →
//! `MCP-Protocol-Version` (400) → dispatch.

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::time::Instant;

use serde_json::Value;

use crate::config::{Action, Route};
use crate::core::{Core, Generation};
use crate::openapi::mcp::jsonrpc::{self, Body, Message, RpcError};
use crate::openapi::mcp::tools::{self, Carry, MAX_RESULT_BYTES};
use crate::openapi::mcp::{self as rpc, session, McpServer, Step, VERSIONS};
use crate::openapi::model::{ParamIn, SchemeKind};

use super::body::read_body_bounded;
use super::error::ProxyError;
use super::memory::recorder::Memory;
use super::model::{ClientFacts, Exchange};
use super::respond;
use super::wire::{Downstream, Outcome};

/// Runs a request the gateway made through the phases (`pipeline::run_made`, handed in so
/// this module does not import the phases that dispatch to it).
pub type RunMade = for<'a> fn(
    &'a Core,
    &'a Rc<Generation>,
    &'a [u8],
    &'a ClientFacts,
    usize,
) -> Pin<Box<dyn Future<Output = Option<Memory>> + 'a>>;

/// Largest POST body read (also bounded by the route's `max_body`).
pub const MAX_MESSAGE_BYTES: u64 = 1 << 20;

const JSON: &[u8] = b"content-type: application/json\r\n";

/// Serves one MCP request.
pub async fn serve<D: Downstream>(
    core: &Core,
    gen: &Rc<Generation>,
    ex: &mut Exchange<'_>,
    down: &mut D,
    route: &Route,
    server: &McpServer,
    run_made: RunMade,
) -> Result<Outcome, ProxyError> {
    let head = ex.head;
    if let Some(origin) = head.header("origin") {
        if !rpc::origin_allowed(origin, &server.origins) {
            let e = RpcError::new(
                Value::Null,
                jsonrpc::INVALID_REQUEST,
                "forbidden: this Origin may not use the MCP endpoint",
            );
            let body = serde_json::to_vec(&e.to_value()).unwrap_or_default();
            return Ok(early(core, ex, down, 403, JSON, &body).await);
        }
    }
    let endpoint = server.key();
    match head.method_bytes() {
        b"POST" => {}
        b"DELETE" => {
            let status = match head
                .header("mcp-session-id")
                .and_then(|v| std::str::from_utf8(v).ok())
            {
                None => 400,
                Some(id) if session::end(&endpoint, id) => 204,
                Some(_) => 404,
            };
            return Ok(early(core, ex, down, status, b"", b"").await);
        }
        _ => {
            // No server-to-client SSE stream is offered (GET), as the transport allows.
            let fields = b"allow: POST, DELETE\r\n";
            return Ok(early(core, ex, down, 405, fields, b"").await);
        }
    }
    let body = read_body_bounded(ex, down, route.max_body.min(MAX_MESSAGE_BYTES)).await?;
    let media = head.header("content-type").unwrap_or(b"");
    let media = media.split(|&b| b == b';').next().unwrap_or(b"");
    if !media.trim_ascii().eq_ignore_ascii_case(b"application/json") {
        let e = RpcError::new(
            Value::Null,
            jsonrpc::INVALID_REQUEST,
            "unsupported media type: MCP messages are application/json",
        );
        return Ok(reply(core, ex, down, 415, b"", &e.to_value()).await);
    }
    let parsed = match jsonrpc::parse_body(&body) {
        Ok(b) => b,
        Err(e) => return Ok(reply(core, ex, down, 400, b"", &e.to_value()).await),
    };
    let now = Instant::now();

    // `initialize` opens a session; it is never part of a batch.
    if let Body::One(Message::Request { id, method, params }) = &parsed {
        if method == "initialize" {
            let (result, version) = server.initialize(params);
            let prefix = gen.cfg.conn_limits.ipv6_prefix;
            let client = crate::admission::group_key(ex.facts.origin.client, prefix);
            let Some(sid) = session::create(&endpoint, version, client, now) else {
                let e = RpcError::new(id.clone(), jsonrpc::INTERNAL_ERROR, "no session id");
                return Ok(reply(core, ex, down, 500, b"", &e.to_value()).await);
            };
            let fields = format!("mcp-session-id: {sid}\r\n");
            let answer = jsonrpc::result(id, result);
            return Ok(reply(core, ex, down, 200, fields.as_bytes(), &answer).await);
        }
    }
    let first_id = match &parsed {
        Body::One(Message::Request { id, .. }) => id.clone(),
        _ => Value::Null,
    };
    let Some(sid) = head
        .header("mcp-session-id")
        .and_then(|v| std::str::from_utf8(v).ok())
    else {
        let e = RpcError::new(
            first_id,
            jsonrpc::INVALID_REQUEST,
            "bad request: no Mcp-Session-Id header; send `initialize` first",
        );
        return Ok(reply(core, ex, down, 400, b"", &e.to_value()).await);
    };
    let Some(version) = session::touch(&endpoint, sid, now) else {
        let e = RpcError::new(
            first_id,
            jsonrpc::INVALID_REQUEST,
            "session not found: it ended or expired; initialize a new one",
        );
        return Ok(reply(core, ex, down, 404, b"", &e.to_value()).await);
    };
    if let Some(asked) = head.header("mcp-protocol-version") {
        let asked = std::str::from_utf8(asked).unwrap_or("").trim();
        if !VERSIONS.contains(&asked) || asked != version {
            let e = RpcError::new(
                first_id,
                jsonrpc::INVALID_REQUEST,
                format!(
                    "bad request: MCP-Protocol-Version {asked:?} is not this session's ({version})"
                ),
            );
            return Ok(reply(core, ex, down, 400, b"", &e.to_value()).await);
        }
    }

    let carry = carry(ex, server);
    match parsed {
        Body::One(msg) => {
            let answer = run_step(core, gen, ex, run_made, server.step(msg, &carry)).await;
            match answer {
                Some(v) => Ok(reply(core, ex, down, 200, b"", &v).await),
                None => Ok(respond::local(core, ex, down, 202, b"", Some(b"")).await),
            }
        }
        Body::Batch(items) => {
            // Batching was dropped in 2025-06-18; 2025-03-26 sessions may still send them.
            if version != "2025-03-26" {
                let e = RpcError::new(
                    Value::Null,
                    jsonrpc::INVALID_REQUEST,
                    format!("invalid request: JSON-RPC batches are not part of MCP {version}"),
                );
                return Ok(reply(core, ex, down, 400, b"", &e.to_value()).await);
            }
            let mut answers = Vec::new();
            for item in items {
                let step = match item {
                    Ok(msg) => server.step(msg, &carry),
                    Err(e) => Step::Reply(e.to_value()),
                };
                if let Some(v) = run_step(core, gen, ex, run_made, step).await {
                    answers.push(v);
                }
            }
            if answers.is_empty() {
                return Ok(respond::local(core, ex, down, 202, b"", Some(b"")).await);
            }
            Ok(reply(core, ex, down, 200, b"", &Value::Array(answers)).await)
        }
    }
}

/// The JSON-RPC answer of one step, running a tool call through the phases.
async fn run_step(
    core: &Core,
    gen: &Rc<Generation>,
    ex: &Exchange<'_>,
    run_made: RunMade,
    step: Step,
) -> Option<Value> {
    match step {
        Step::Nothing => None,
        Step::Reply(v) => Some(v),
        Step::Call { id, request } => Some(jsonrpc::result(
            &id,
            call(core, gen, ex, run_made, &request).await,
        )),
    }
}

/// Runs one tool call's request and turns the answer into a tool result.
async fn call(
    core: &Core,
    gen: &Rc<Generation>,
    ex: &Exchange<'_>,
    run_made: RunMade,
    request: &[u8],
) -> Value {
    if reaches_mcp(gen, request) {
        // A call must not feed another MCP endpoint (a loop through two APIs' tools).
        return tools::tool_result(508, "", b"the call's path is an MCP endpoint", false);
    }
    let Some(w) = run_made(core, gen, request, ex.client, MAX_RESULT_BYTES + 1).await else {
        return tools::tool_result(
            400,
            "",
            b"the arguments do not make a valid HTTP request",
            false,
        );
    };
    if w.status == 0 {
        return tools::tool_result(502, "", b"the call ended without an answer", false);
    }
    let content_type = w
        .fields
        .split("\r\n")
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case("content-type")
                .then(|| v.trim())
        })
        .unwrap_or("");
    tools::tool_result(w.status, content_type, &w.sent, w.truncated)
}

/// Whether a built request's path is some MCP endpoint's (exact routes), compared as the
/// router will see it: normalized (`/a/../mcp` and `//mcp` are `/mcp`).
fn reaches_mcp(gen: &Generation, request: &[u8]) -> bool {
    let target = request.split(|&b| b == b' ').nth(1).unwrap_or(b"");
    let raw = target.split(|&b| b == b'?').next().unwrap_or(b"");
    // A path normalization refuses is refused by the router too: it reaches nothing.
    let Ok(path) = crate::http1::normalize_path_with(raw, &gen.cfg.paths) else {
        return false;
    };
    gen.cfg.routes.iter().any(|r| match &r.action {
        Action::Mcp(m) => m.path.as_bytes() == &path[..],
        _ => false,
    })
}

/// What every call carries from the MCP request: its host, the client's credentials and
/// the forwarding and tracing headers (so the consumer and the client address are the
/// same as for the MCP request itself).
fn carry(ex: &Exchange<'_>, server: &McpServer) -> Carry {
    let head = ex.head;
    let mut names: Vec<String> = [
        "authorization",
        "x-forwarded-for",
        "forwarded",
        "x-real-ip",
        "traceparent",
        "tracestate",
        "user-agent",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut query_names = Vec::new();
    for scheme in &server.api.schemes {
        if let SchemeKind::ApiKey { location, name } = &scheme.kind {
            match location {
                ParamIn::Header => names.push(name.to_ascii_lowercase()),
                ParamIn::Cookie => names.push("cookie".into()),
                ParamIn::Query => query_names.push(tools::encode(name)),
                ParamIn::Path => {}
            }
        }
    }
    names.dedup();
    let mut carry = Carry {
        host: head.header("host").unwrap_or(b"").to_vec(),
        ..Carry::default()
    };
    for (n, v) in head.headers() {
        if let Ok(n) = std::str::from_utf8(n) {
            if names.iter().any(|w| w.eq_ignore_ascii_case(n)) {
                carry.headers.push((n.to_ascii_lowercase(), v.to_vec()));
            }
        }
    }
    if let Some(q) = head.query() {
        for pair in q.split(|&b| b == b'&') {
            let mut kv = pair.splitn(2, |&b| b == b'=');
            let (Some(k), v) = (kv.next(), kv.next()) else {
                continue;
            };
            let (Ok(k), Ok(v)) = (
                std::str::from_utf8(k),
                std::str::from_utf8(v.unwrap_or(b"")),
            ) else {
                continue;
            };
            if query_names.iter().any(|n| n == k) {
                carry.query.push((k.to_string(), v.to_string()));
            }
        }
    }
    carry
}

/// Answers before the request body was read: the connection stays open only if the body
/// can be skipped (it already arrived whole); otherwise it closes after the answer, which
/// the client gets to read (linger) instead of a reset.
async fn early<D: Downstream>(
    core: &Core,
    ex: &mut Exchange<'_>,
    down: &mut D,
    status: u16,
    fields: &[u8],
    body: &[u8],
) -> Outcome {
    let unread = !down.skip_body(ex.head);
    if unread {
        ex.close = true;
    }
    let body = (status != 204).then_some(body);
    let out = respond::local(core, ex, down, status, fields, body).await;
    if unread {
        down.linger().await;
    }
    out
}

/// Answers with a JSON body.
async fn reply<D: Downstream>(
    core: &Core,
    ex: &mut Exchange<'_>,
    down: &mut D,
    status: u16,
    extra: &[u8],
    value: &Value,
) -> Outcome {
    let body = serde_json::to_vec(value).unwrap_or_default();
    let mut fields = Vec::with_capacity(JSON.len() + extra.len());
    fields.extend_from_slice(JSON);
    fields.extend_from_slice(extra);
    respond::local(core, ex, down, status, &fields, Some(&body)).await
}

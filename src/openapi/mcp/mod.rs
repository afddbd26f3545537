//! Selected operations of an imported API as MCP tools over the Streamable HTTP transport
//! (JSON-RPC 2.0), on the route `[[openapi]] mcp = { path = ... }` makes (`exchange::mcp`
//! answers its requests). A tool call runs as a request through the operation's own route
//! and policies.
//!
//! Targets MCP 2025-06-18 (also answers clients asking for 2025-03-26, whose one difference
//! that matters here is JSON-RPC batching). Module map: `jsonrpc` (framing and error codes),
//! `tools` (tool list, input schemas, the request a call becomes, the result an answer
//! becomes), `session` (the `Mcp-Session-Id` table). This file holds the method dispatch,
//! which is pure: a `tools/call` comes back as a `Step::Call` for `exchange::mcp` to run.

pub mod jsonrpc;
pub mod session;
pub mod tools;

use std::sync::{Arc, OnceLock};

use serde_json::{json, Map, Value};

use self::jsonrpc::{Message, RpcError, INVALID_PARAMS, METHOD_NOT_FOUND};
use super::model::{Api, Operation};

/// The version answered when the client asks for one we do not speak.
pub const LATEST: &str = "2025-06-18";
/// The versions spoken (newest first).
pub const VERSIONS: [&str; 2] = ["2025-06-18", "2025-03-26"];

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
    /// Browser origins allowed besides loopback ones (`mcp.origins`; `"*"`: any).
    pub origins: Vec<String>,
    /// The `tools/list` result, built on first use (schemas are rewritten once per
    /// generation, not per request).
    pub listed: OnceLock<Value>,
}

/// What one message asks of the endpoint.
#[derive(Debug)]
pub enum Step {
    /// Answer this JSON-RPC response object.
    Reply(Value),
    /// A notification or a client response: nothing to answer.
    Nothing,
    /// Run `request` (an HTTP/1.1 request) through the phases and answer `id` with the
    /// tool result.
    Call { id: Value, request: Vec<u8> },
}

impl McpServer {
    /// Names the endpoint in the session table (sessions are valid only where issued).
    pub fn key(&self) -> String {
        format!("{} {}", self.api.name, self.path)
    }

    /// The operation behind tool `name`, if it is exposed.
    pub fn tool(&self, name: &str) -> Option<&Operation> {
        self.tools
            .iter()
            .filter_map(|&i| self.api.operations.get(i))
            .find(|op| op.id == name)
    }

    /// The `tools/list` result.
    pub fn list(&self) -> &Value {
        self.listed.get_or_init(|| {
            let tools: Vec<Value> = self
                .tools
                .iter()
                .filter_map(|&i| self.api.operations.get(i))
                .map(|op| tools::describe(&self.api, op, &self.prefix))
                .collect();
            json!({ "tools": tools })
        })
    }

    /// The `initialize` result for a client asking for `requested`, with the version agreed.
    pub fn initialize(&self, params: &Value) -> (Value, &'static str) {
        let requested = params.get("protocolVersion").and_then(Value::as_str);
        let version = VERSIONS
            .iter()
            .copied()
            .find(|v| Some(*v) == requested)
            .unwrap_or(LATEST);
        let mut info = Map::new();
        info.insert("name".into(), Value::from("ringway"));
        if !self.api.title.is_empty() {
            info.insert("title".into(), Value::from(self.api.title.clone()));
        }
        info.insert("version".into(), Value::from(env!("CARGO_PKG_VERSION")));
        let mut instructions = format!(
            "Tools are the operations of the API `{}`{}. Each call is a real HTTP request \
             through the gateway, with your credentials: an HTTP error comes back as a tool \
             error with its status and problem text.",
            self.api.name,
            if self.api.version.is_empty() {
                String::new()
            } else {
                format!(" (version {})", self.api.version)
            }
        );
        if !self.api.description.is_empty() {
            instructions = format!("{}\n\n{instructions}", self.api.description.trim());
        }
        let result = json!({
            "protocolVersion": version,
            "capabilities": { "tools": { "listChanged": false } },
            "serverInfo": Value::Object(info),
            "instructions": instructions,
        });
        (result, version)
    }

    /// Dispatches one message of a live session. `initialize` is handled by the caller (it
    /// makes the session); here it is refused as a repeat.
    pub fn step(&self, msg: Message, carry: &tools::Carry) -> Step {
        let (id, method, params) = match msg {
            Message::Notification { .. } | Message::Response => return Step::Nothing,
            Message::Request { id, method, params } => (id, method, params),
        };
        let err =
            |code, text: String| Step::Reply(RpcError::new(id.clone(), code, text).to_value());
        match method.as_str() {
            "ping" => Step::Reply(jsonrpc::result(&id, json!({}))),
            "tools/list" => Step::Reply(jsonrpc::result(&id, self.list().clone())),
            "tools/call" => {
                let Some(name) = params.get("name").and_then(Value::as_str) else {
                    return err(
                        INVALID_PARAMS,
                        "invalid params: `name` (the tool) is missing".into(),
                    );
                };
                let Some(op) = self.tool(name) else {
                    return err(
                        INVALID_PARAMS,
                        format!("invalid params: unknown tool `{name}`"),
                    );
                };
                let empty = Map::new();
                let args = match params.get("arguments") {
                    None | Some(Value::Null) => &empty,
                    Some(Value::Object(o)) => o,
                    Some(_) => {
                        return err(
                            INVALID_PARAMS,
                            "invalid params: `arguments` must be an object".into(),
                        )
                    }
                };
                match tools::build_request(&self.api, op, &self.prefix, args, carry) {
                    Ok(request) => Step::Call { id, request },
                    Err(why) => err(
                        INVALID_PARAMS,
                        format!("invalid params for tool `{name}`: {why}"),
                    ),
                }
            }
            "initialize" => err(
                jsonrpc::INVALID_REQUEST,
                "invalid request: the session is already initialized".into(),
            ),
            _ => err(METHOD_NOT_FOUND, format!("method not found: `{method}`")),
        }
    }
}

/// Whether a browser `Origin` may use the endpoint: a loopback origin (`localhost`,
/// `127.0.0.0/8`, `[::1]`, any port), or one listed in `allowed` (exactly, or `*`). A
/// request without `Origin` is not from a browser page and passes.
pub fn origin_allowed(origin: &[u8], allowed: &[String]) -> bool {
    let Ok(origin) = std::str::from_utf8(origin) else {
        return false;
    };
    let origin = origin.trim();
    if allowed
        .iter()
        .any(|a| a == "*" || a.trim_end_matches('/').eq_ignore_ascii_case(origin))
    {
        return true;
    }
    let Some(rest) = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
    else {
        return false;
    };
    // Host without port: `[::1]:8080` → `[::1]`, `localhost:3000` → `localhost`.
    let host = if rest.starts_with('[') {
        match rest.find(']') {
            Some(end) => &rest[..=end],
            None => return false,
        }
    } else {
        rest.split(':').next().unwrap_or("")
    };
    if rest.contains('/') || rest.contains('@') {
        return false;
    }
    let host = host.to_ascii_lowercase();
    host == "localhost"
        || host.ends_with(".localhost")
        || host == "[::1]"
        || host
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openapi::load::{parse_text, read_api};
    use std::path::Path;

    fn server() -> McpServer {
        let spec = r#"
openapi: 3.1.0
info: { title: Pets, version: "2" }
paths:
  /pets:
    get: { operationId: listPets, summary: List pets }
    post: { operationId: createPet }
"#;
        let api = read_api(parse_text(spec).unwrap(), Path::new("p.yaml"), "pets").unwrap();
        McpServer {
            path: "/mcp".into(),
            api: Arc::new(api),
            tools: vec![0],
            prefix: "/v1".into(),
            origins: Vec::new(),
            listed: OnceLock::new(),
        }
    }

    fn req(method: &str, params: Value) -> Message {
        Message::Request {
            id: json!(3),
            method: method.into(),
            params,
        }
    }

    #[test]
    fn negotiates_the_version() {
        let s = server();
        let (r, v) = s.initialize(&json!({"protocolVersion": "2025-03-26"}));
        assert_eq!(
            (v, r["protocolVersion"].clone()),
            ("2025-03-26", json!("2025-03-26"))
        );
        let (r, v) = s.initialize(&json!({"protocolVersion": "2099-01-01"}));
        assert_eq!((v, r["protocolVersion"].clone()), (LATEST, json!(LATEST)));
        assert_eq!(r["capabilities"]["tools"]["listChanged"], json!(false));
    }

    #[test]
    fn dispatches_methods() {
        let s = server();
        let c = tools::Carry::default();
        let Step::Reply(r) = s.step(req("tools/list", Value::Null), &c) else {
            panic!()
        };
        let names: Vec<_> = r["result"]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].clone())
            .collect();
        assert_eq!(
            names,
            vec![json!("listPets")],
            "only the selected operations"
        );
        let Step::Reply(r) = s.step(req("tools/call", json!({"name": "createPet"})), &c) else {
            panic!()
        };
        assert_eq!(r["error"]["code"], json!(INVALID_PARAMS));
        let Step::Call { request, .. } = s.step(req("tools/call", json!({"name": "listPets"})), &c)
        else {
            panic!()
        };
        assert!(request.starts_with(b"GET /v1/pets HTTP/1.1\r\n"));
        let Step::Reply(r) = s.step(req("resources/list", Value::Null), &c) else {
            panic!()
        };
        assert_eq!(r["error"]["code"], json!(METHOD_NOT_FOUND));
        let Step::Reply(r) = s.step(req("ping", Value::Null), &c) else {
            panic!()
        };
        assert_eq!(r["result"], json!({}));
    }

    #[test]
    fn origins() {
        for ok in [
            "http://localhost:3000",
            "https://127.0.0.1",
            "http://[::1]:8080",
        ] {
            assert!(origin_allowed(ok.as_bytes(), &[]), "{ok}");
        }
        for bad in [
            "https://evil.example",
            "http://localhost.evil.example",
            "http://127.0.0.1.evil.example",
            "null",
            "http://localhost@evil.example",
        ] {
            assert!(!origin_allowed(bad.as_bytes(), &[]), "{bad}");
        }
        assert!(origin_allowed(
            b"https://app.example",
            &["https://app.example".to_string()]
        ));
    }
}

//! JSON-RPC 2.0 framing for the MCP endpoint: what one POST body holds (a request, a
//! notification, a response from the client, or a batch of them), the error codes, and the
//! response objects. Pure data work: no I/O, nothing panics on input.

use serde_json::{json, Map, Value};

/// Invalid JSON.
pub const PARSE_ERROR: i64 = -32700;
/// JSON, but not a JSON-RPC 2.0 message.
pub const INVALID_REQUEST: i64 = -32600;
/// No such method.
pub const METHOD_NOT_FOUND: i64 = -32601;
/// The method exists but its params are wrong (the message names the argument).
pub const INVALID_PARAMS: i64 = -32602;
/// The gateway failed on its side.
pub const INTERNAL_ERROR: i64 = -32603;

/// Most messages one batch may hold (2025-03-26 sessions only).
pub const MAX_BATCH: usize = 32;

/// One JSON-RPC message from the client.
#[derive(Debug, PartialEq)]
pub enum Message {
    /// Expects an answer with the same `id` (a string or a number).
    Request {
        id: Value,
        method: String,
        params: Value,
    },
    /// No `id`: no answer.
    Notification { method: String, params: Value },
    /// The client answering a request of ours (we send none; accepted and ignored).
    Response,
}

/// A protocol-level error: its code, a message naming what was wrong, and the request id
/// it answers (`Value::Null` when the id could not be read).
#[derive(Debug, PartialEq)]
pub struct RpcError {
    pub id: Value,
    pub code: i64,
    pub message: String,
}

impl RpcError {
    pub fn new(id: Value, code: i64, message: impl Into<String>) -> RpcError {
        RpcError {
            id,
            code,
            message: message.into(),
        }
    }

    /// The error response object.
    pub fn to_value(&self) -> Value {
        json!({
            "jsonrpc": "2.0",
            "id": self.id,
            "error": { "code": self.code, "message": self.message },
        })
    }
}

/// What a POST body parsed into.
#[derive(Debug)]
pub enum Body {
    One(Message),
    /// A JSON array: each element parsed on its own (an invalid element is answered with
    /// its own error, the rest still run).
    Batch(Vec<Result<Message, RpcError>>),
}

/// Parses a POST body. `Err` is a parse error or an invalid (non-batch) message.
pub fn parse_body(bytes: &[u8]) -> Result<Body, RpcError> {
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|e| RpcError::new(Value::Null, PARSE_ERROR, format!("parse error: {e}")))?;
    match value {
        Value::Array(items) => {
            if items.is_empty() {
                return Err(RpcError::new(
                    Value::Null,
                    INVALID_REQUEST,
                    "invalid request: an empty batch",
                ));
            }
            if items.len() > MAX_BATCH {
                return Err(RpcError::new(
                    Value::Null,
                    INVALID_REQUEST,
                    format!("invalid request: a batch holds at most {MAX_BATCH} messages"),
                ));
            }
            Ok(Body::Batch(items.into_iter().map(message).collect()))
        }
        v => message(v).map(Body::One),
    }
}

/// Reads one message object.
pub fn message(value: Value) -> Result<Message, RpcError> {
    let Value::Object(mut obj) = value else {
        return Err(RpcError::new(
            Value::Null,
            INVALID_REQUEST,
            "invalid request: a message is a JSON object",
        ));
    };
    // The id, if usable, goes into any error so the client can match it.
    let id = match obj.remove("id") {
        None => None,
        Some(v @ (Value::String(_) | Value::Number(_))) => Some(v),
        Some(_) => {
            return Err(RpcError::new(
                Value::Null,
                INVALID_REQUEST,
                "invalid request: `id` must be a string or a number",
            ))
        }
    };
    let err_id = id.clone().unwrap_or(Value::Null);
    if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err(RpcError::new(
            err_id,
            INVALID_REQUEST,
            "invalid request: `jsonrpc` must be \"2.0\"",
        ));
    }
    match obj.remove("method") {
        Some(Value::String(method)) => {
            let params = obj.remove("params").unwrap_or(Value::Null);
            if !matches!(params, Value::Null | Value::Object(_)) {
                return Err(RpcError::new(
                    err_id,
                    INVALID_REQUEST,
                    "invalid request: `params` must be an object",
                ));
            }
            Ok(match id {
                Some(id) => Message::Request { id, method, params },
                None => Message::Notification { method, params },
            })
        }
        Some(_) => Err(RpcError::new(
            err_id,
            INVALID_REQUEST,
            "invalid request: `method` must be a string",
        )),
        None if id.is_some() && (obj.contains_key("result") || obj.contains_key("error")) => {
            Ok(Message::Response)
        }
        None => Err(RpcError::new(
            err_id,
            INVALID_REQUEST,
            "invalid request: `method` is missing",
        )),
    }
}

/// A success response.
pub fn result(id: &Value, result: Value) -> Value {
    let mut o = Map::new();
    o.insert("jsonrpc".into(), Value::from("2.0"));
    o.insert("id".into(), id.clone());
    o.insert("result".into(), result);
    Value::Object(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_notifications_and_responses() {
        let m = message(json!({"jsonrpc":"2.0","id":1,"method":"ping"})).unwrap();
        assert_eq!(
            m,
            Message::Request {
                id: json!(1),
                method: "ping".into(),
                params: Value::Null
            }
        );
        let n = message(json!({"jsonrpc":"2.0","method":"notifications/initialized"})).unwrap();
        assert!(matches!(n, Message::Notification { .. }));
        let r = message(json!({"jsonrpc":"2.0","id":"a","result":{}})).unwrap();
        assert_eq!(r, Message::Response);
    }

    #[test]
    fn malformed_messages_are_named() {
        let e = parse_body(b"{not json").unwrap_err();
        assert_eq!(e.code, PARSE_ERROR);
        let e = message(json!({"jsonrpc":"1.0","id":7,"method":"x"})).unwrap_err();
        assert_eq!((e.code, e.id.clone()), (INVALID_REQUEST, json!(7)));
        let e = message(json!({"jsonrpc":"2.0","id":{},"method":"x"})).unwrap_err();
        assert_eq!(e.code, INVALID_REQUEST);
        let e = message(json!({"jsonrpc":"2.0","id":1,"method":"x","params":[1]})).unwrap_err();
        assert!(e.message.contains("params"));
        let e = message(json!(42)).unwrap_err();
        assert_eq!(e.code, INVALID_REQUEST);
        let e = parse_body(b"[]").unwrap_err();
        assert_eq!(e.code, INVALID_REQUEST);
        let big = format!("[{}]", vec!["1"; MAX_BATCH + 1].join(","));
        assert_eq!(
            parse_body(big.as_bytes()).unwrap_err().code,
            INVALID_REQUEST
        );
        match parse_body(br#"[{"jsonrpc":"2.0","method":"a"}, 3]"#).unwrap() {
            Body::Batch(v) => assert!(v[0].is_ok() && v[1].is_err()),
            Body::One(_) => panic!("a batch"),
        }
    }
}

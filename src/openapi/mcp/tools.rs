//! Operations as MCP tools: the tool list (name = `operationId`, description from the
//! summary and description, an input schema with one property per path/query/header/cookie
//! parameter and `body` for the JSON request body), the HTTP/1.1 request a `tools/call`
//! becomes (arguments substituted and percent-encoded by each parameter's style; a path
//! argument that is empty or a dot segment, whole or as a piece, is refused), and the tool
//! result an answer becomes.
//!
//! Schemas keep their structure: every `$ref` into the document is rewritten to
//! `#/$defs/<name>` and the referenced schemas are carried in the input schema's `$defs`
//! (bounded in count), so recursive schemas stay finite. OpenAPI 3.0's `nullable` becomes a
//! JSON Schema type union. Credentials are not tool arguments: the parameters an `apiKey`
//! scheme names, and `Authorization`/`Accept`/`Content-Type` headers, are left out; the MCP
//! client's own credentials ride on every call instead (`exchange::mcp`).

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use crate::openapi::load::resolve_pointer;
use crate::openapi::model::{Api, Dialect, Operation, Param, ParamIn, SchemeKind};

/// Most distinct `$ref` targets carried in one tool's `$defs`.
const MAX_DEFS: usize = 256;
/// Deepest schema nesting rewritten (deeper parts become `{}`: anything).
const MAX_DEPTH: usize = 64;
/// Most response body bytes copied into a tool result.
pub const MAX_RESULT_BYTES: usize = 256 * 1024;

/// How a tool's argument maps onto its operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArgTarget {
    /// `op.params[i]`.
    Param(usize),
    /// The request body.
    Body,
}

/// The arguments of one operation's tool, keyed by their property name in the input schema:
/// a parameter's own name, or `<in>.<name>` when two parameters share a name (or one is
/// called `body`).
pub fn arguments(api: &Api, op: &Operation) -> Vec<(String, ArgTarget)> {
    let hidden = credential_params(api);
    let mut out: Vec<(String, ArgTarget)> = Vec::new();
    let usable: Vec<(usize, &Param)> = op
        .params
        .iter()
        .enumerate()
        .filter(|(_, p)| {
            let lname = p.name.to_ascii_lowercase();
            let reserved = p.location == ParamIn::Header
                && matches!(lname.as_str(), "authorization" | "accept" | "content-type");
            !reserved
                && !hidden
                    .iter()
                    .any(|(loc, n)| *loc == p.location && n.eq_ignore_ascii_case(&p.name))
        })
        .collect();
    for (i, p) in &usable {
        let clash = p.name == "body"
            || usable
                .iter()
                .any(|(j, q)| j != i && q.name == p.name && q.location != p.location);
        let key = if clash {
            format!("{}.{}", p.location.as_str(), p.name)
        } else {
            p.name.clone()
        };
        out.push((key, ArgTarget::Param(*i)));
    }
    if op.body.is_some() {
        out.push(("body".to_string(), ArgTarget::Body));
    }
    out
}

/// The parameters `apiKey` schemes carry credentials in (location, name).
pub fn credential_params(api: &Api) -> Vec<(ParamIn, String)> {
    api.schemes
        .iter()
        .filter_map(|s| match &s.kind {
            SchemeKind::ApiKey { location, name } => Some((*location, name.clone())),
            _ => None,
        })
        .collect()
}

/// One entry of `tools/list`; `prefix` is the gateway's path prefix for the API.
pub fn describe(api: &Api, op: &Operation, prefix: &str) -> Value {
    let mut description = String::new();
    for part in [op.summary.trim(), op.description.trim()] {
        if !part.is_empty() && !description.contains(part) {
            if !description.is_empty() {
                description.push_str("\n\n");
            }
            description.push_str(part);
        }
    }
    if !description.is_empty() {
        description.push_str("\n\n");
    }
    let prefix = prefix.trim_end_matches('/');
    description.push_str(&format!("HTTP: {} {prefix}{}", op.method, op.path));
    let mut tool = Map::new();
    tool.insert("name".into(), Value::from(op.id.clone()));
    if !op.summary.is_empty() {
        tool.insert("title".into(), Value::from(op.summary.clone()));
    }
    tool.insert("description".into(), Value::from(description));
    tool.insert("inputSchema".into(), input_schema(api, op));
    let read_only = matches!(op.method.as_str(), "GET" | "HEAD" | "OPTIONS");
    tool.insert(
        "annotations".into(),
        json!({
            "readOnlyHint": read_only,
            "destructiveHint": op.method == "DELETE",
            "idempotentHint": matches!(op.method.as_str(), "GET" | "HEAD" | "OPTIONS" | "PUT" | "DELETE"),
            "openWorldHint": false,
        }),
    );
    Value::Object(tool)
}

/// The JSON Schema of a tool's arguments.
pub fn input_schema(api: &Api, op: &Operation) -> Value {
    let mut defs = Defs::default();
    let mut props = Map::new();
    let mut required = Vec::new();
    for (key, target) in arguments(api, op) {
        let (schema, needed) = match target {
            ArgTarget::Param(i) => {
                let Some(p) = op.params.get(i) else { continue };
                let mut s = match &p.schema {
                    Some(s) => rewrite(api, s, &mut defs, 0),
                    None => json!({ "type": "string" }),
                };
                annotate(&mut s, &p.description, p.location.as_str());
                (s, p.required || p.location == ParamIn::Path)
            }
            ArgTarget::Body => {
                let Some(body) = &op.body else { continue };
                let mut s = match json_media(op).and_then(|m| m.schema.as_ref()) {
                    Some(s) => rewrite(api, s, &mut defs, 0),
                    None => match json_media(op) {
                        // A JSON body without a schema: any JSON value.
                        Some(_) => json!({}),
                        // Only non-JSON media: the body is passed as text.
                        None => json!({ "type": "string" }),
                    },
                };
                annotate(&mut s, &body.description, "body");
                (s, body.required)
            }
        };
        if needed {
            required.push(Value::from(key.clone()));
        }
        props.insert(key, schema);
    }
    let mut schema = Map::new();
    schema.insert("type".into(), Value::from("object"));
    schema.insert("properties".into(), Value::Object(props));
    if !required.is_empty() {
        schema.insert("required".into(), Value::Array(required));
    }
    schema.insert("additionalProperties".into(), Value::Bool(false));
    // Carry every referenced schema, then the ones they reference, breadth first.
    let mut out_defs = Map::new();
    let mut next = 0;
    while next < defs.order.len() {
        let (pointer, key) = defs.order[next].clone();
        next += 1;
        let target = resolve_pointer(&api.doc, &pointer)
            .map(|s| rewrite(api, s, &mut defs, 1))
            .unwrap_or_else(|| json!({}));
        out_defs.insert(key, target);
    }
    if !out_defs.is_empty() {
        schema.insert("$defs".into(), Value::Object(out_defs));
    }
    Value::Object(schema)
}

fn annotate(schema: &mut Value, description: &str, location: &str) {
    if let Value::Object(o) = schema {
        if !description.is_empty() && !o.contains_key("description") {
            o.insert("description".into(), Value::from(description));
        }
        // Where the argument goes, for a reader of the schema (an annotation keyword).
        o.insert("x-in".into(), Value::from(location));
    }
}

/// The body's JSON media type (`application/json`, `application/*+json`), if it has one.
pub fn json_media(op: &Operation) -> Option<&crate::openapi::model::MediaType> {
    let body = op.body.as_ref()?;
    body.content
        .iter()
        .find(|m| is_json(&m.media))
        .or_else(|| body.content.iter().find(|m| m.media == "*/*"))
}

fn is_json(media: &str) -> bool {
    let m = media.split(';').next().unwrap_or("").trim();
    m == "application/json" || m.ends_with("+json")
}

/// `$ref` targets met so far: pointer → `$defs` key, in order of discovery.
#[derive(Default)]
struct Defs {
    keys: BTreeMap<String, String>,
    order: Vec<(String, String)>,
}

impl Defs {
    fn key_for(&mut self, pointer: &str) -> Option<String> {
        if let Some(k) = self.keys.get(pointer) {
            return Some(k.clone());
        }
        if self.order.len() >= MAX_DEFS {
            return None;
        }
        let base = match pointer.strip_prefix("#/components/schemas/") {
            Some(rest) if !rest.contains('/') => rest.replace("~1", "/").replace("~0", "~"),
            _ => pointer.trim_start_matches("#/").replace('/', "."),
        };
        let mut key = base.clone();
        let mut n = 2;
        while self.order.iter().any(|(_, k)| *k == key) {
            key = format!("{base}_{n}");
            n += 1;
        }
        self.keys.insert(pointer.to_string(), key.clone());
        self.order.push((pointer.to_string(), key.clone()));
        Some(key)
    }
}

/// A copy of `schema` with `$ref`s pointing into `$defs` and 3.0's `nullable` turned into a
/// type union.
fn rewrite(api: &Api, schema: &Value, defs: &mut Defs, depth: usize) -> Value {
    if depth > MAX_DEPTH {
        return json!({});
    }
    match schema {
        Value::Object(o) => {
            let mut out = Map::new();
            for (k, v) in o {
                if k == "$ref" {
                    if let Some(r) = v.as_str().filter(|r| r.starts_with('#')) {
                        match defs.key_for(r) {
                            Some(key) => {
                                let escaped = key.replace('~', "~0").replace('/', "~1");
                                out.insert(k.clone(), Value::from(format!("#/$defs/{escaped}")));
                            }
                            // Too many distinct targets: this part accepts anything.
                            None => continue,
                        }
                        continue;
                    }
                }
                // Property names and example values are data, not schemas.
                let v = if matches!(
                    k.as_str(),
                    "example" | "examples" | "default" | "enum" | "const"
                ) {
                    v.clone()
                } else {
                    rewrite(api, v, defs, depth + 1)
                };
                out.insert(k.clone(), v);
            }
            if api.dialect == Dialect::V30 && out.get("nullable") == Some(&Value::Bool(true)) {
                out.remove("nullable");
                match out.get_mut("type") {
                    Some(Value::String(t)) => {
                        let t = t.clone();
                        out.insert("type".into(), json!([t, "null"]));
                    }
                    Some(_) => {}
                    None => {}
                }
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|v| rewrite(api, v, defs, depth + 1))
                .collect(),
        ),
        v => v.clone(),
    }
}

/// What the gateway adds to every call's request, from the MCP request itself.
#[derive(Debug, Default)]
pub struct Carry {
    /// The `Host` the MCP request came with (so host-matched routes match alike).
    pub host: Vec<u8>,
    /// Header lines passed on as they came (credentials, forwarding, tracing).
    pub headers: Vec<(String, Vec<u8>)>,
    /// Query parameters passed on (`apiKey` schemes `in: query`), already encoded.
    pub query: Vec<(String, String)>,
}

/// Builds the HTTP/1.1 request a call of `op` with `args` becomes. `Err` names the argument
/// at fault (JSON-RPC invalid params).
pub fn build_request(
    api: &Api,
    op: &Operation,
    prefix: &str,
    args: &Map<String, Value>,
    carry: &Carry,
) -> Result<Vec<u8>, String> {
    let spec = arguments(api, op);
    for name in args.keys() {
        if !spec.iter().any(|(k, _)| k == name) {
            return Err(format!("unknown argument `{name}`"));
        }
    }
    let mut path = op.path.clone();
    let mut query: Vec<String> = Vec::new();
    let mut headers: Vec<(String, String)> = Vec::new();
    let mut cookies: Vec<String> = Vec::new();
    let mut body: Option<(String, Vec<u8>)> = None;
    for (key, target) in &spec {
        let value = args.get(key).filter(|v| !v.is_null());
        match target {
            ArgTarget::Param(i) => {
                let Some(p) = op.params.get(*i) else { continue };
                let Some(v) = value else {
                    if p.required || p.location == ParamIn::Path {
                        return Err(format!("missing required argument `{key}`"));
                    }
                    continue;
                };
                match p.location {
                    ParamIn::Path => {
                        let text = simple(v, p.explode, encode)
                            .ok_or_else(|| format!("argument `{key}`: not a path value"))?;
                        if !is_path_segment(&text) {
                            return Err(format!(
                                "argument `{key}`: a path value cannot be empty, `.` or `..` \
                                 (nor have such a piece)"
                            ));
                        }
                        path = path.replace(&format!("{{{}}}", p.name), &text);
                    }
                    ParamIn::Query => query_pairs(p, v, &mut query)
                        .ok_or_else(|| format!("argument `{key}`: not a query value"))?,
                    ParamIn::Header => {
                        if !is_token(&p.name) {
                            return Err(format!("argument `{key}`: not a header name"));
                        }
                        let text = simple(v, p.explode, |s| s.to_string())
                            .filter(|t| t.bytes().all(|b| b == b'\t' || (b >= 0x20 && b != 0x7f)))
                            .ok_or_else(|| format!("argument `{key}`: not a header value"))?;
                        headers.push((p.name.clone(), text));
                    }
                    ParamIn::Cookie => {
                        let text = simple(v, p.explode, encode)
                            .ok_or_else(|| format!("argument `{key}`: not a cookie value"))?;
                        cookies.push(format!("{}={text}", encode(&p.name)));
                    }
                }
            }
            ArgTarget::Body => {
                let required = op.body.as_ref().is_some_and(|b| b.required);
                let Some(v) = value else {
                    if required {
                        return Err(format!("missing required argument `{key}`"));
                    }
                    continue;
                };
                body = Some(match json_media(op) {
                    Some(m) => {
                        let media = if m.media.contains('*') {
                            "application/json".to_string()
                        } else {
                            m.media.clone()
                        };
                        let bytes =
                            serde_json::to_vec(v).map_err(|e| format!("argument `{key}`: {e}"))?;
                        (media, bytes)
                    }
                    None => {
                        let media = op
                            .body
                            .as_ref()
                            .and_then(|b| b.content.first())
                            .map(|m| m.media.clone())
                            .unwrap_or_else(|| "application/octet-stream".into());
                        let text = v.as_str().ok_or_else(|| {
                            format!("argument `{key}`: a {media} body is a string")
                        })?;
                        (media, text.as_bytes().to_vec())
                    }
                });
            }
        }
    }
    for (name, value) in &carry.query {
        query.push(format!("{name}={value}"));
    }
    let mut req = Vec::with_capacity(256 + body.as_ref().map_or(0, |b| b.1.len()));
    req.extend_from_slice(op.method.as_bytes());
    req.push(b' ');
    req.extend_from_slice(prefix.trim_end_matches('/').as_bytes());
    req.extend_from_slice(path.as_bytes());
    if !query.is_empty() {
        req.push(b'?');
        req.extend_from_slice(query.join("&").as_bytes());
    }
    req.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    if carry.host.is_empty() {
        req.extend_from_slice(b"localhost");
    } else {
        req.extend_from_slice(&carry.host);
    }
    req.extend_from_slice(b"\r\naccept: application/json, */*;q=0.5\r\n");
    for (name, value) in &carry.headers {
        line(&mut req, name.as_bytes(), value);
    }
    for (name, value) in &headers {
        // The MCP client's own credentials and forwarding headers are not overridden.
        if carry
            .headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            continue;
        }
        line(&mut req, name.as_bytes(), value.as_bytes());
    }
    if !cookies.is_empty() {
        line(&mut req, b"cookie", cookies.join("; ").as_bytes());
    }
    match &body {
        Some((media, bytes)) => {
            line(&mut req, b"content-type", media.as_bytes());
            line(
                &mut req,
                b"content-length",
                bytes.len().to_string().as_bytes(),
            );
            req.extend_from_slice(b"\r\n");
            req.extend_from_slice(bytes);
        }
        None => {
            if matches!(op.method.as_str(), "POST" | "PUT" | "PATCH") {
                line(&mut req, b"content-length", b"0");
            }
            req.extend_from_slice(b"\r\n");
        }
    }
    Ok(req)
}

fn line(req: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    req.extend_from_slice(name);
    req.extend_from_slice(b": ");
    req.extend_from_slice(value);
    req.extend_from_slice(b"\r\n");
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Percent-encodes everything but the unreserved characters (RFC 3986).
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Whether an encoded path argument stays one segment of the operation's own path: `.` and
/// `..` are left as they are by [`encode`] (unreserved) and would be dot segments that path
/// normalization resolves into another route, and an empty segment (`//`) may be merged;
/// so none of these, nor as a piece of an array or object value (`a,..`), is allowed.
fn is_path_segment(text: &str) -> bool {
    !text.is_empty()
        && text
            .split([',', '='])
            .all(|piece| !piece.is_empty() && piece != "." && piece != "..")
}

/// A scalar as text (`None` for null, arrays and objects). A whole number given as `5.0` is
/// written `5`: it validated as an integer, and the route's own validation (and the backend)
/// reads an integer parameter's digits only.
fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(match n.as_f64() {
            Some(f) if !n.is_i64() && !n.is_u64() && f.fract() == 0.0 && f.abs() < 9.0e15 => {
                format!("{}", f as i64)
            }
            _ => n.to_string(),
        }),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// `simple` style (path and header): `a,b,c` for arrays, `k,v,k,v` (or `k=v,k=v` exploded)
/// for objects; each piece passed through `enc`.
fn simple(v: &Value, explode: bool, enc: impl Fn(&str) -> String) -> Option<String> {
    match v {
        Value::Array(items) => {
            let parts: Option<Vec<String>> =
                items.iter().map(|i| scalar(i).map(|s| enc(&s))).collect();
            Some(parts?.join(","))
        }
        Value::Object(o) => {
            let mut parts = Vec::new();
            for (k, v) in o {
                let v = scalar(v)?;
                if explode {
                    parts.push(format!("{}={}", enc(k), enc(&v)));
                } else {
                    parts.push(enc(k));
                    parts.push(enc(&v));
                }
            }
            Some(parts.join(","))
        }
        v => scalar(v).map(|s| enc(&s)),
    }
}

/// Query pairs for a parameter by its style (`form`, `spaceDelimited`, `pipeDelimited`,
/// `deepObject`), encoded.
fn query_pairs(p: &Param, v: &Value, out: &mut Vec<String>) -> Option<()> {
    let name = encode(&p.name);
    match v {
        Value::Array(items) => {
            let parts: Vec<String> = items
                .iter()
                .map(|i| scalar(i).map(|s| encode(&s)))
                .collect::<Option<_>>()?;
            if p.explode && p.style == "form" {
                out.extend(parts.iter().map(|s| format!("{name}={s}")));
            } else {
                let sep = match p.style.as_str() {
                    "spaceDelimited" => "%20",
                    "pipeDelimited" => "|",
                    _ => ",",
                };
                out.push(format!("{name}={}", parts.join(sep)));
            }
        }
        Value::Object(o) => {
            if p.style == "deepObject" {
                for (k, v) in o {
                    out.push(format!("{name}%5B{}%5D={}", encode(k), encode(&scalar(v)?)));
                }
            } else if p.explode {
                for (k, v) in o {
                    out.push(format!("{}={}", encode(k), encode(&scalar(v)?)));
                }
            } else {
                let mut parts = Vec::new();
                for (k, v) in o {
                    parts.push(encode(k));
                    parts.push(encode(&scalar(v)?));
                }
                out.push(format!("{name}={}", parts.join(",")));
            }
        }
        v => out.push(format!("{name}={}", encode(&scalar(v)?))),
    }
    Some(())
}

/// The tool result for an HTTP answer: 2xx → the body as text (and as `structuredContent`
/// when it is a JSON object); anything else → `isError` with the status and the body (the
/// problem text of a policy denial or a validation refusal). `truncated`: the body was cut
/// at `MAX_RESULT_BYTES`.
pub fn tool_result(status: u16, content_type: &str, body: &[u8], truncated: bool) -> Value {
    let cut = &body[..body.len().min(MAX_RESULT_BYTES)];
    let mut text = String::from_utf8_lossy(cut).into_owned();
    let truncated = truncated || body.len() > MAX_RESULT_BYTES;
    if truncated {
        text.push_str(&format!(
            "\n[truncated: the response was longer than {MAX_RESULT_BYTES} bytes]"
        ));
    }
    let ok = (200..300).contains(&status);
    let mut result = Map::new();
    if ok {
        result.insert("content".into(), json!([{ "type": "text", "text": text }]));
        if !truncated && is_json(content_type) {
            if let Ok(v @ Value::Object(_)) = serde_json::from_slice::<Value>(cut) {
                result.insert("structuredContent".into(), v);
            }
        }
        result.insert("isError".into(), Value::Bool(false));
    } else {
        let reason = crate::http1::reason_phrase(status);
        let head = format!("HTTP {status} {reason}");
        let text = if text.is_empty() {
            head
        } else {
            format!("{head}: {text}")
        };
        result.insert("content".into(), json!([{ "type": "text", "text": text }]));
        result.insert("isError".into(), Value::Bool(true));
    }
    Value::Object(result)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openapi::load::{parse_text, read_api};
    use std::path::Path;

    const SPEC: &str = r##"
openapi: 3.0.3
info: { title: Pets, version: "1" }
components:
  securitySchemes:
    key: { type: apiKey, in: header, name: X-API-Key }
  schemas:
    Pet:
      type: object
      required: [name]
      properties:
        name: { type: string }
        tag: { type: string, nullable: true }
        parent: { $ref: "#/components/schemas/Pet" }
        owner: { $ref: "#/components/schemas/Owner" }
    Owner: { type: object, properties: { id: { type: integer } } }
paths:
  /pets:
    get:
      operationId: listPets
      summary: List pets
      parameters:
        - { name: limit, in: query, schema: { type: integer, maximum: 100 } }
        - { name: tags, in: query, schema: { type: array, items: { type: string } } }
        - { name: X-API-Key, in: header, schema: { type: string } }
        - { name: X-Trace, in: header, schema: { type: string } }
    post:
      operationId: createPet
      requestBody:
        required: true
        content:
          application/json: { schema: { $ref: "#/components/schemas/Pet" } }
  /pets/{petId}:
    get:
      operationId: showPet
      description: One pet.
      parameters:
        - { name: petId, in: path, required: true, schema: { type: string } }
"##;

    fn api() -> Api {
        read_api(parse_text(SPEC).unwrap(), Path::new("pets.yaml"), "pets").unwrap()
    }

    fn op<'a>(api: &'a Api, id: &str) -> &'a Operation {
        api.operations.iter().find(|o| o.id == id).unwrap()
    }

    #[test]
    fn whole_numbers_are_written_as_integers() {
        use serde_json::json;
        assert_eq!(scalar(&json!(5.0)).as_deref(), Some("5"));
        assert_eq!(scalar(&json!(-3.0)).as_deref(), Some("-3"));
        assert_eq!(scalar(&json!(5)).as_deref(), Some("5"));
        assert_eq!(scalar(&json!(2.5)).as_deref(), Some("2.5"));
        assert_eq!(scalar(&json!(1e300)).as_deref(), Some("1e+300"));
    }

    #[test]
    fn input_schemas_have_params_body_and_defs() {
        let api = api();
        let s = input_schema(&api, op(&api, "listPets"));
        let props = s["properties"].as_object().unwrap();
        assert!(props.contains_key("limit") && props.contains_key("tags"));
        assert!(props.contains_key("X-Trace"));
        assert!(
            !props.contains_key("X-API-Key"),
            "credentials are not arguments"
        );
        assert_eq!(s["properties"]["limit"]["maximum"], json!(100));
        assert!(s.get("required").is_none());

        let s = input_schema(&api, op(&api, "createPet"));
        assert_eq!(s["required"], json!(["body"]));
        assert_eq!(s["properties"]["body"]["$ref"], json!("#/$defs/Pet"));
        let pet = &s["$defs"]["Pet"];
        assert_eq!(pet["properties"]["parent"]["$ref"], json!("#/$defs/Pet"));
        assert_eq!(pet["properties"]["tag"]["type"], json!(["string", "null"]));
        assert_eq!(s["$defs"]["Owner"]["type"], json!("object"));

        let s = input_schema(&api, op(&api, "showPet"));
        assert_eq!(s["required"], json!(["petId"]));
        let d = describe(&api, op(&api, "showPet"), "/v1/");
        assert_eq!(d["name"], json!("showPet"));
        let text = d["description"].as_str().unwrap();
        assert!(text.contains("One pet.") && text.ends_with("HTTP: GET /v1/pets/{petId}"));
    }

    #[test]
    fn calls_become_requests() {
        let api = api();
        let carry = Carry {
            host: b"gw.test".to_vec(),
            headers: vec![("x-api-key".into(), b"k1".to_vec())],
            query: vec![],
        };
        let args = json!({"petId": "a b/../c"}).as_object().unwrap().clone();
        let req = build_request(&api, op(&api, "showPet"), "/v1", &args, &carry).unwrap();
        let text = String::from_utf8(req).unwrap();
        assert!(text.starts_with("GET /v1/pets/a%20b%2F..%2Fc HTTP/1.1\r\nhost: gw.test\r\n"));
        assert!(text.contains("x-api-key: k1\r\n"));

        let args = json!({"limit": 5, "tags": ["a", "b&c"], "X-Trace": "t"})
            .as_object()
            .unwrap()
            .clone();
        let text = String::from_utf8(
            build_request(&api, op(&api, "listPets"), "", &args, &carry).unwrap(),
        )
        .unwrap();
        assert!(
            text.starts_with("GET /pets?limit=5&tags=a&tags=b%26c HTTP/1.1"),
            "{text}"
        );
        assert!(text.contains("X-Trace: t\r\n"));

        let args = json!({"body": {"name": "rex"}})
            .as_object()
            .unwrap()
            .clone();
        let text = String::from_utf8(
            build_request(&api, op(&api, "createPet"), "", &args, &carry).unwrap(),
        )
        .unwrap();
        assert!(text.contains(
            "content-type: application/json\r\ncontent-length: 14\r\n\r\n{\"name\":\"rex\"}"
        ));
    }

    #[test]
    fn bad_arguments_are_named() {
        let api = api();
        let carry = Carry::default();
        let e = build_request(&api, op(&api, "showPet"), "", &Map::new(), &carry).unwrap_err();
        assert!(e.contains("petId"), "{e}");
        let args = json!({"nope": 1}).as_object().unwrap().clone();
        let e = build_request(&api, op(&api, "listPets"), "", &args, &carry).unwrap_err();
        assert!(e.contains("nope"));
        let args = json!({"X-Trace": "a\r\nx: y"}).as_object().unwrap().clone();
        let e = build_request(&api, op(&api, "listPets"), "", &args, &carry).unwrap_err();
        assert!(e.contains("X-Trace"));
        let args = json!({"X-API-Key": "smuggled"})
            .as_object()
            .unwrap()
            .clone();
        assert!(build_request(&api, op(&api, "listPets"), "", &args, &carry).is_err());
        let e = build_request(&api, op(&api, "createPet"), "", &Map::new(), &carry).unwrap_err();
        assert!(e.contains("body"));
        let args = json!({"petId": {"a": [1]}}).as_object().unwrap().clone();
        assert!(build_request(&api, op(&api, "showPet"), "", &args, &carry).is_err());
    }

    #[test]
    fn results_map_status() {
        let r = tool_result(200, "application/json", br#"{"id":1}"#, false);
        assert_eq!(r["isError"], json!(false));
        assert_eq!(r["structuredContent"]["id"], json!(1));
        let r = tool_result(
            401,
            "application/problem+json",
            br#"{"title":"no key"}"#,
            false,
        );
        assert_eq!(r["isError"], json!(true));
        let t = r["content"][0]["text"].as_str().unwrap();
        assert!(
            t.starts_with("HTTP 401 Unauthorized") && t.contains("no key"),
            "{t}"
        );
        let big = vec![b'a'; MAX_RESULT_BYTES + 10];
        let r = tool_result(200, "text/plain", &big, false);
        let t = r["content"][0]["text"].as_str().unwrap();
        assert!(t.len() < MAX_RESULT_BYTES + 100 && t.contains("truncated"));
    }
}

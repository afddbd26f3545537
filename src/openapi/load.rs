//! Reads an OpenAPI 3.0 / 3.1 document (YAML or JSON) into the `model`: the file becomes a
//! `serde_json::Value` (YAML through yaml-rust2's event parser, so aliases are expanded under
//! a node budget: a "billion laughs" document is an error, not an out-of-memory), then the
//! operations, parameters, bodies and security are read out of it with `$ref`s resolved.
//!
//! Only references inside the document (`#/...`) resolve; one to another file or a URL is an
//! error naming its pointer (the gateway never fetches a contract piece at load time). Every
//! construct the gateway does not act on is recorded in `Api::ignored` with its pointer.

use std::path::Path;
use std::sync::Arc;

use serde_json::{Map, Value};
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};
use yaml_rust2::Yaml;

use super::model::{
    pointer_token, Api, Dialect, Ignored, MediaType, Operation, Param, ParamIn, RequestBody,
    Requirement, SchemeKind, SecurityScheme,
};

/// Largest document read (a contract, not a data dump).
pub const MAX_FILE_BYTES: u64 = 16 << 20;
/// Most values (scalars, arrays, objects) a document may expand to, aliases included.
const MAX_NODES: usize = 2_000_000;
/// Deepest nesting accepted.
const MAX_DEPTH: usize = 256;
/// Longest `$ref` chain followed (a cycle of references is an error).
const MAX_REF_HOPS: usize = 32;

/// The methods an OpenAPI path item can hold, in the order operations are listed.
pub const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// Loads and reads the document at `file`. `name` is the `[[openapi]]` block's name. Errors
/// are one line each, naming the JSON pointer (or YAML line) at fault.
pub fn load(file: &Path, name: &str) -> Result<Api, String> {
    let text = crate::bounded_file::read_to_string(file, MAX_FILE_BYTES)
        .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let doc = parse_text(&text)?;
    read_api(doc, file, name)
}

/// Parses JSON or YAML text (JSON is YAML too, but the JSON parser is faster and reports
/// JSON errors better, so text that starts with `{` takes it).
pub fn parse_text(text: &str) -> Result<Value, String> {
    if text.trim_start().starts_with('{') {
        return serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"));
    }
    yaml_to_json(text)
}

/// Builds the model from a parsed document.
pub fn read_api(doc: Value, file: &Path, name: &str) -> Result<Api, String> {
    let version =
        doc.get("openapi")
            .and_then(Value::as_str)
            .ok_or_else(|| match doc.get("swagger") {
                Some(_) => {
                    "Swagger 2.0 documents are not supported: convert it to OpenAPI 3 first \
                        (the `openapi` field is missing)"
                        .to_string()
                }
                None => "#/openapi: missing; this is not an OpenAPI 3 document".to_string(),
            })?;
    let dialect = if version.starts_with("3.0.") || version == "3.0" {
        Dialect::V30
    } else if version.starts_with("3.1.") || version == "3.1" {
        Dialect::V31
    } else {
        return Err(format!(
            "#/openapi: version {version:?} is not supported (3.0.x and 3.1.x are)"
        ));
    };
    let mut r = Reader {
        doc: &doc,
        ignored: Vec::new(),
    };
    let info = doc.get("info");
    let text = |k: &str| {
        info.and_then(|i| i.get(k))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let (title, version, description) = (text("title"), text("version"), text("description"));
    r.top_level();
    let schemes = r.schemes()?;
    let operations = r.operations(&schemes)?;
    let ignored = r.ignored;
    Ok(Api {
        name: name.to_string(),
        file: file.to_path_buf(),
        dialect,
        title,
        version,
        description,
        doc: Arc::new(doc),
        operations,
        schemes,
        ignored,
    })
}

/// Resolves a local `$ref` (`#/components/schemas/Pet`) in `doc`.
pub fn resolve_pointer<'a>(doc: &'a Value, reference: &str) -> Option<&'a Value> {
    let p = reference.strip_prefix('#')?;
    let p = percent_decode(p);
    doc.pointer(&p)
}

fn percent_decode(s: &str) -> String {
    if !s.contains('%') {
        return s.to_string();
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = |c: u8| (c as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

struct Reader<'d> {
    doc: &'d Value,
    ignored: Vec<Ignored>,
}

impl<'d> Reader<'d> {
    fn ignore(&mut self, pointer: String, reason: &str) {
        self.ignored.push(Ignored {
            pointer,
            reason: reason.to_string(),
        });
    }

    /// Follows `$ref`s from `v` (at `pointer`) to the object they name; returns it and the
    /// pointer where it is defined.
    fn deref(&self, v: &'d Value, pointer: &str) -> Result<(&'d Value, String), String> {
        let (mut v, mut at) = (v, pointer.to_string());
        for _ in 0..MAX_REF_HOPS {
            let Some(r) = v.get("$ref").and_then(Value::as_str) else {
                return Ok((v, at));
            };
            if !r.starts_with('#') {
                return Err(format!(
                    "{at}/$ref: {r:?} points outside the document; only local references \
                     (#/...) are supported"
                ));
            }
            v = resolve_pointer(self.doc, r)
                .ok_or_else(|| format!("{at}/$ref: {r:?} does not resolve in the document"))?;
            at = r.to_string();
        }
        Err(format!(
            "{pointer}: $ref chain longer than {MAX_REF_HOPS} (a cycle?)"
        ))
    }

    /// Top-level members the gateway does not act on.
    fn top_level(&mut self) {
        let Some(obj) = self.doc.as_object() else {
            return;
        };
        for (k, _) in obj {
            let reason = match k.as_str() {
                "openapi" | "info" | "paths" | "components" | "security" | "tags"
                | "externalDocs" => continue,
                "webhooks" => "webhooks are requests the API sends, not routes a gateway serves",
                "servers" => {
                    "the gateway serves the API under its [[openapi]] prefix, not the \
                              document's servers"
                }
                "jsonSchemaDialect" => match obj.get(k).and_then(Value::as_str) {
                    Some("https://spec.openapis.org/oas/3.1/dialect/base")
                    | Some("https://json-schema.org/draft/2020-12/schema") => continue,
                    _ => "schemas are validated as JSON Schema draft 2020-12 whatever the dialect",
                },
                x if x.starts_with("x-") => "specification extension, not used by ringway",
                _ => "not an OpenAPI 3 field",
            };
            self.ignore(format!("#/{}", pointer_token(k)), reason);
        }
        if let Some(c) = self.doc.get("components").and_then(Value::as_object) {
            for k in c.keys() {
                let reason = match k.as_str() {
                    "schemas" | "parameters" | "requestBodies" | "securitySchemes"
                    | "responses" | "examples" | "headers" | "pathItems" => continue,
                    "callbacks" => "callbacks are requests the API sends, not routes",
                    "links" => "links describe relations between responses; nothing to enforce",
                    x if x.starts_with("x-") => "specification extension, not used by ringway",
                    _ => "not an OpenAPI 3 components field",
                };
                self.ignore(format!("#/components/{}", pointer_token(k)), reason);
            }
        }
    }

    fn schemes(&mut self) -> Result<Vec<SecurityScheme>, String> {
        let mut out = Vec::new();
        let Some(map) = self
            .doc
            .pointer("/components/securitySchemes")
            .and_then(Value::as_object)
        else {
            return Ok(out);
        };
        for (name, v) in map {
            let at = format!("#/components/securitySchemes/{}", pointer_token(name));
            let (s, at) = self.deref(v, &at)?;
            let field = |k: &str| s.get(k).and_then(Value::as_str).unwrap_or("").to_string();
            let kind = match field("type").as_str() {
                "apiKey" => {
                    let location = match field("in").as_str() {
                        "header" => ParamIn::Header,
                        "query" => ParamIn::Query,
                        "cookie" => ParamIn::Cookie,
                        other => {
                            return Err(format!(
                                "{at}/in: {other:?} is not header, query or cookie"
                            ))
                        }
                    };
                    let key = field("name");
                    if key.is_empty() {
                        return Err(format!("{at}/name: an apiKey scheme needs a name"));
                    }
                    SchemeKind::ApiKey {
                        location,
                        name: key,
                    }
                }
                "http" if field("scheme").eq_ignore_ascii_case("bearer") => SchemeKind::Bearer {
                    format: field("bearerFormat"),
                },
                "http" => SchemeKind::Http {
                    scheme: field("scheme").to_ascii_lowercase(),
                },
                "oauth2" => SchemeKind::OAuth2,
                "openIdConnect" => SchemeKind::OpenIdConnect {
                    url: field("openIdConnectUrl"),
                },
                "mutualTLS" => SchemeKind::MutualTls,
                other => return Err(format!("{at}/type: unknown security scheme type {other:?}")),
            };
            out.push(SecurityScheme {
                name: name.clone(),
                kind,
                pointer: at,
                description: field("description"),
            });
        }
        Ok(out)
    }

    fn operations(&mut self, schemes: &[SecurityScheme]) -> Result<Vec<Operation>, String> {
        let mut ops = Vec::new();
        let global = match self.doc.get("security") {
            Some(s) => requirements(s, "#/security", schemes)?,
            None => Vec::new(),
        };
        let Some(paths) = self.doc.get("paths").and_then(Value::as_object) else {
            return Ok(ops);
        };
        for (path, item) in paths {
            let at = format!("#/paths/{}", pointer_token(path));
            if path.starts_with("x-") {
                self.ignore(at, "specification extension, not used by ringway");
                continue;
            }
            if !path.starts_with('/') {
                return Err(format!("{at}: a path must start with '/'"));
            }
            // Parameter names are the spec's own business (they are never matched or sent);
            // the literal segments are what requests are matched against.
            let literal = |seg: &&str| !(seg.starts_with('{') && seg.ends_with('}'));
            if let Some(problem) = path
                .split('/')
                .filter(literal)
                .find_map(crate::route::path_literal_problem)
            {
                return Err(format!("{at}: the path {problem}"));
            }
            let (item, item_at) = self.deref(item, &at)?;
            let Some(obj) = item.as_object() else {
                return Err(format!("{at}: a path item must be an object"));
            };
            let shared = self.params(item.get("parameters"), &format!("{item_at}/parameters"))?;
            for (k, _) in obj {
                let reason = match k.as_str() {
                    "summary" | "description" | "parameters" | "$ref" => continue,
                    m if METHODS.contains(&m) => continue,
                    "servers" => {
                        "per-path servers are not used: the gateway forwards to the \
                                  [[openapi]] upstream"
                    }
                    x if x.starts_with("x-") => "specification extension, not used by ringway",
                    _ => "not a path item field",
                };
                self.ignore(format!("{item_at}/{}", pointer_token(k)), reason);
            }
            for m in METHODS {
                let Some(op) = obj.get(m) else {
                    continue;
                };
                let op_at = format!("{item_at}/{m}");
                ops.push(self.operation(path, m, op, &op_at, &shared, &global, schemes)?);
            }
        }
        Ok(ops)
    }

    #[allow(clippy::too_many_arguments)]
    fn operation(
        &mut self,
        path: &str,
        method: &str,
        op: &'d Value,
        at: &str,
        shared: &[Param],
        global: &[Vec<Requirement>],
        schemes: &[SecurityScheme],
    ) -> Result<Operation, String> {
        let Some(obj) = op.as_object() else {
            return Err(format!("{at}: an operation must be an object"));
        };
        for (k, _) in obj {
            let reason = match k.as_str() {
                "operationId" | "summary" | "description" | "tags" | "deprecated"
                | "parameters" | "requestBody" | "responses" | "security" | "externalDocs" => {
                    continue
                }
                "callbacks" => "callbacks are requests the API sends, not routes a gateway serves",
                "servers" => {
                    "per-operation servers are not used: the gateway forwards to the \
                              [[openapi]] upstream"
                }
                x if x.starts_with("x-") => "specification extension, not used by ringway",
                _ => "not an operation field",
            };
            self.ignore(format!("{at}/{}", pointer_token(k)), reason);
        }
        let text = |k: &str| obj.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let id = match obj.get("operationId").and_then(Value::as_str) {
            // It names a route: in logs, metrics and `ringway check`'s listing, where a control
            // or bidi character could forge or hide a line.
            Some(id) if !crate::config::errors::printable_name(id) => {
                return Err(format!(
                    "{at}/operationId: {id:?} holds a control, tab or bidi character (it names \
                     a route, printed in logs and `ringway check`)"
                ));
            }
            Some(id) if !id.is_empty() => id.to_string(),
            _ => {
                let made = made_id(method, path);
                self.ignore(
                    format!("{at}/operationId"),
                    &format!("missing: the route is named {made:?}"),
                );
                made
            }
        };
        let mut params = shared.to_vec();
        for p in self.params(obj.get("parameters"), &format!("{at}/parameters"))? {
            params.retain(|q| !(q.name == p.name && q.location == p.location));
            params.push(p);
        }
        for p in &params {
            if p.location == ParamIn::Path && !path.contains(&format!("{{{}}}", p.name)) {
                return Err(format!(
                    "{}: path parameter {:?} does not appear in the path {path:?}",
                    p.pointer, p.name
                ));
            }
        }
        let body = match obj.get("requestBody") {
            Some(b) => Some(self.body(b, &format!("{at}/requestBody"))?),
            None => None,
        };
        let security = match obj.get("security") {
            Some(s) => requirements(s, &format!("{at}/security"), schemes)?,
            None => global.to_vec(),
        };
        self.links(obj.get("responses"), &format!("{at}/responses"));
        Ok(Operation {
            id,
            method: method.to_ascii_uppercase(),
            path: path.to_string(),
            pointer: at.to_string(),
            summary: text("summary"),
            description: text("description"),
            tags: obj
                .get("tags")
                .and_then(Value::as_array)
                .map(|t| {
                    t.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default(),
            deprecated: obj.get("deprecated").and_then(Value::as_bool) == Some(true),
            params,
            body,
            security,
            responses: obj.get("responses").cloned().unwrap_or(Value::Null),
        })
    }

    /// Links inside responses are reported (nothing to enforce).
    fn links(&mut self, responses: Option<&Value>, at: &str) {
        let Some(rs) = responses.and_then(Value::as_object) else {
            return;
        };
        for (code, r) in rs {
            if r.get("links").is_some() {
                self.ignore(
                    format!("{at}/{}/links", pointer_token(code)),
                    "links describe relations between responses; nothing to enforce",
                );
            }
        }
    }

    fn params(&mut self, list: Option<&'d Value>, at: &str) -> Result<Vec<Param>, String> {
        let Some(list) = list else {
            return Ok(Vec::new());
        };
        let Some(items) = list.as_array() else {
            return Err(format!("{at}: parameters must be an array"));
        };
        let mut out: Vec<Param> = Vec::new();
        for (i, p) in items.iter().enumerate() {
            let (p, p_at) = self.deref(p, &format!("{at}/{i}"))?;
            let name = p.get("name").and_then(Value::as_str).unwrap_or("");
            if name.is_empty() {
                return Err(format!("{p_at}/name: a parameter needs a name"));
            }
            let location = match p.get("in").and_then(Value::as_str).unwrap_or("") {
                "path" => ParamIn::Path,
                "query" => ParamIn::Query,
                "header" => ParamIn::Header,
                "cookie" => ParamIn::Cookie,
                other => {
                    return Err(format!(
                        "{p_at}/in: {other:?} is not path, query, header or cookie"
                    ))
                }
            };
            let required = p.get("required").and_then(Value::as_bool).unwrap_or(false);
            if location == ParamIn::Path && !required {
                return Err(format!(
                    "{p_at}/required: a path parameter must be required"
                ));
            }
            let style = p
                .get("style")
                .and_then(Value::as_str)
                .unwrap_or(match location {
                    ParamIn::Path | ParamIn::Header => "simple",
                    ParamIn::Query | ParamIn::Cookie => "form",
                })
                .to_string();
            let explode = p
                .get("explode")
                .and_then(Value::as_bool)
                .unwrap_or(style == "form");
            let schema = p.get("schema").cloned();
            if p.get("content").is_some() {
                self.ignore(
                    format!("{p_at}/content"),
                    "parameters described by `content` are not validated",
                );
            }
            if location == ParamIn::Header
                && ["accept", "content-type", "authorization"]
                    .contains(&name.to_ascii_lowercase().as_str())
            {
                // OpenAPI says these are ignored as parameters (they come from elsewhere).
                self.ignore(
                    p_at.clone(),
                    "Accept, Content-Type and Authorization header parameters are ignored \
                     (OpenAPI 3 §4.8.12.1)",
                );
                continue;
            }
            out.retain(|q| !(q.name == name && q.location == location));
            out.push(Param {
                name: name.to_string(),
                location,
                required,
                style,
                explode,
                allow_empty: p
                    .get("allowEmptyValue")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
                schema,
                pointer: p_at.clone(),
                description: p
                    .get("description")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
                example: p.get("example").cloned(),
            });
        }
        Ok(out)
    }

    fn body(&mut self, b: &'d Value, at: &str) -> Result<RequestBody, String> {
        let (b, b_at) = self.deref(b, at)?;
        let mut content = Vec::new();
        if let Some(c) = b.get("content").and_then(Value::as_object) {
            for (media, m) in c {
                let m_at = format!("{b_at}/content/{}", pointer_token(media));
                if m.get("encoding").is_some() {
                    self.ignore(
                        format!("{m_at}/encoding"),
                        "per-property encodings of form bodies are not validated",
                    );
                }
                content.push(MediaType {
                    media: media.to_ascii_lowercase(),
                    schema: m.get("schema").cloned(),
                    example: m.get("example").cloned().or_else(|| {
                        m.get("examples")
                            .and_then(Value::as_object)
                            .and_then(|e| e.values().next())
                            .and_then(|e| e.get("value"))
                            .cloned()
                    }),
                    pointer: m_at,
                });
            }
        }
        Ok(RequestBody {
            required: b.get("required").and_then(Value::as_bool).unwrap_or(false),
            content,
            pointer: b_at,
            description: b
                .get("description")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
        })
    }
}

/// A security requirement list: `[{scheme: [scopes]}, ...]`; every scheme must be declared.
fn requirements(
    v: &Value,
    at: &str,
    schemes: &[SecurityScheme],
) -> Result<Vec<Vec<Requirement>>, String> {
    let Some(list) = v.as_array() else {
        return Err(format!("{at}: security must be an array"));
    };
    let mut out = Vec::new();
    for (i, alt) in list.iter().enumerate() {
        let Some(obj) = alt.as_object() else {
            return Err(format!(
                "{at}/{i}: a security requirement must be an object"
            ));
        };
        let mut all = Vec::new();
        for (scheme, scopes) in obj {
            if !schemes.iter().any(|s| &s.name == scheme) {
                return Err(format!(
                    "{at}/{i}/{}: security scheme {scheme:?} is not in \
                     #/components/securitySchemes",
                    pointer_token(scheme)
                ));
            }
            all.push(Requirement {
                scheme: scheme.clone(),
                scopes: scopes
                    .as_array()
                    .map(|s| {
                        s.iter()
                            .filter_map(Value::as_str)
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default(),
            });
        }
        out.push(all);
    }
    Ok(out)
}

/// An operation name made from the method and path: `get_pets_petId`.
fn made_id(method: &str, path: &str) -> String {
    let mut s = method.to_string();
    for seg in path.split('/').filter(|s| !s.is_empty()) {
        s.push('_');
        s.extend(
            seg.chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_'),
        );
    }
    s
}

/// YAML text → JSON value, aliases expanded under `MAX_NODES`.
pub fn yaml_to_json(text: &str) -> Result<Value, String> {
    let mut b = Builder::default();
    let mut parser = Parser::new_from_str(text);
    parser
        .load(&mut b, false)
        .map_err(|e| format!("invalid YAML: {e}"))?;
    if let Some(e) = b.error {
        return Err(e);
    }
    b.root.ok_or_else(|| "the document is empty".to_string())
}

enum Open {
    Seq(Vec<Value>, usize),
    Map(Map<String, Value>, Option<String>, usize),
}

#[derive(Default)]
struct Builder {
    stack: Vec<Open>,
    anchors: std::collections::HashMap<usize, Value>,
    root: Option<Value>,
    nodes: usize,
    error: Option<String>,
}

impl Builder {
    fn fail(&mut self, mark: Marker, msg: &str) {
        if self.error.is_none() {
            self.error = Some(format!("YAML line {}: {msg}", mark.line()));
        }
    }

    fn push(&mut self, v: Value, anchor: usize, mark: Marker) {
        if anchor > 0 {
            self.anchors.insert(anchor, v.clone());
        }
        match self.stack.last_mut() {
            None => {
                if self.root.is_none() {
                    self.root = Some(v);
                }
            }
            Some(Open::Seq(items, _)) => items.push(v),
            Some(Open::Map(map, key, _)) => match key.take() {
                None => match v {
                    Value::String(s) => *key = Some(s),
                    Value::Number(n) => *key = Some(n.to_string()),
                    Value::Bool(b) => *key = Some(b.to_string()),
                    Value::Null => *key = Some("null".to_string()),
                    _ => self.fail(mark, "a mapping key must be a scalar"),
                },
                Some(k) => {
                    map.insert(k, v);
                }
            },
        }
    }

    /// Counts `n` more nodes; false (with the error set) once over budget.
    fn count(&mut self, n: usize, mark: Marker) -> bool {
        self.nodes += n;
        if self.nodes > MAX_NODES {
            self.fail(
                mark,
                &format!("the document expands to more than {MAX_NODES} values (alias bomb?)"),
            );
            return false;
        }
        true
    }
}

fn size(v: &Value) -> usize {
    match v {
        Value::Array(a) => 1 + a.iter().map(size).sum::<usize>(),
        Value::Object(o) => 1 + o.values().map(size).sum::<usize>(),
        _ => 1,
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        if self.error.is_some() {
            return;
        }
        match ev {
            Event::Scalar(s, style, anchor, _tag) => {
                if !self.count(1, mark) {
                    return;
                }
                let v = if style == TScalarStyle::Plain {
                    scalar(&s)
                } else {
                    Value::String(s)
                };
                self.push(v, anchor, mark);
            }
            Event::SequenceStart(anchor, _) => {
                if self.stack.len() >= MAX_DEPTH {
                    return self.fail(mark, "nested too deeply");
                }
                if self.count(1, mark) {
                    self.stack.push(Open::Seq(Vec::new(), anchor));
                }
            }
            Event::MappingStart(anchor, _) => {
                if self.stack.len() >= MAX_DEPTH {
                    return self.fail(mark, "nested too deeply");
                }
                if self.count(1, mark) {
                    self.stack.push(Open::Map(Map::new(), None, anchor));
                }
            }
            Event::SequenceEnd | Event::MappingEnd => match self.stack.pop() {
                Some(Open::Seq(items, anchor)) => self.push(Value::Array(items), anchor, mark),
                Some(Open::Map(map, _, anchor)) => self.push(Value::Object(map), anchor, mark),
                None => self.fail(mark, "unbalanced collection"),
            },
            Event::Alias(id) => {
                let Some(v) = self.anchors.get(&id).cloned() else {
                    return self.fail(mark, "alias to an unknown anchor");
                };
                if self.count(size(&v), mark) {
                    self.push(v, 0, mark);
                }
            }
            _ => {}
        }
    }
}

/// A plain YAML scalar: null, bool, integer, float or string (YAML 1.2 core schema).
fn scalar(s: &str) -> Value {
    match Yaml::from_str(s) {
        Yaml::Null => Value::Null,
        Yaml::Boolean(b) => Value::Bool(b),
        Yaml::Integer(i) => Value::from(i),
        Yaml::Real(r) => r
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map_or_else(|| Value::String(s.to_string()), Value::Number),
        _ => Value::String(s.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PETSTORE: &str = r##"
openapi: 3.0.3
info: { title: Pets, version: "1.0" }
servers: [{ url: "https://pets.example.com/v1" }]
x-logo: pets.png
paths:
  /pets:
    get:
      operationId: listPets
      tags: [pets]
      parameters:
        - { name: limit, in: query, schema: { type: integer, maximum: 100 } }
      responses: { "200": { description: ok } }
    post:
      operationId: createPet
      security: [{ bearer: [pets:write] }]
      requestBody:
        required: true
        content:
          application/json: { schema: { $ref: "#/components/schemas/Pet" } }
      responses:
        201: { description: made, links: { self: { operationId: getPet } } }
      callbacks: { done: {} }
  /pets/{petId}:
    parameters:
      - $ref: "#/components/parameters/PetId"
    get:
      responses: { "200": { description: ok } }
components:
  parameters:
    PetId: { name: petId, in: path, required: true, schema: { type: integer } }
  schemas:
    Pet: { type: object, required: [name], properties: { name: { type: string } } }
  securitySchemes:
    key: { type: apiKey, in: header, name: X-Api-Key }
    bearer: { type: http, scheme: bearer, bearerFormat: JWT }
security: [{ key: [] }]
"##;

    #[test]
    fn reads_operations_params_bodies_and_security() {
        let doc = parse_text(PETSTORE).unwrap();
        let api = read_api(doc, Path::new("pets.yaml"), "pets").unwrap();
        assert_eq!(api.dialect, Dialect::V30);
        let ids: Vec<&str> = api.operations.iter().map(|o| o.id.as_str()).collect();
        assert_eq!(ids, ["listPets", "createPet", "get_pets_petId"]);
        let list = &api.operations[0];
        assert_eq!(list.security[0][0].scheme, "key");
        assert_eq!(list.params[0].style, "form");
        assert!(list.params[0].explode);
        let create = &api.operations[1];
        assert_eq!(create.security[0][0].scopes, ["pets:write"]);
        let body = create.body.as_ref().unwrap();
        assert!(body.required);
        assert_eq!(body.content[0].media, "application/json");
        let get = &api.operations[2];
        assert_eq!(get.params[0].name, "petId");
        assert_eq!(get.params[0].pointer, "#/components/parameters/PetId");
        let ignored: Vec<&str> = api.ignored.iter().map(|i| i.pointer.as_str()).collect();
        for p in [
            "#/servers",
            "#/x-logo",
            "#/paths/~1pets/post/callbacks",
            "#/paths/~1pets/post/responses/201/links",
            "#/paths/~1pets~1{petId}/get/operationId",
        ] {
            assert!(ignored.contains(&p), "{p} not in {ignored:?}");
        }
    }

    #[test]
    fn refuses_what_it_cannot_read() {
        let bad = |t: &str| read_api(parse_text(t).unwrap(), Path::new("x"), "x").unwrap_err();
        assert!(bad("swagger: '2.0'\n").contains("Swagger 2.0"));
        assert!(bad("openapi: 4.0.0\n").contains("not supported"));
        let e =
            bad("openapi: 3.1.0\npaths: {/a: {get: {parameters: [{$ref: 'other.yaml#/p'}]}}}\n");
        assert!(e.contains("#/paths/~1a/get/parameters/0/$ref"), "{e}");
        let e = bad("openapi: 3.1.0\npaths: {/a: {get: {security: [{nope: []}]}}}\n");
        assert!(e.contains("\"nope\" is not in"), "{e}");
        let e = bad("openapi: 3.1.0\npaths: {/a: {get: {parameters: [{name: x, in: path, required: true}]}}}\n");
        assert!(e.contains("does not appear in the path"), "{e}");
    }

    #[test]
    fn an_alias_bomb_is_an_error_not_an_allocation() {
        let mut y = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..12 {
            let p = i - 1;
            y.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        let e = yaml_to_json(&y).unwrap_err();
        assert!(e.contains("alias bomb"), "{e}");
    }

    #[test]
    fn yaml_scalars_follow_the_core_schema() {
        let v = yaml_to_json("a: 1\nb: '1'\nc: true\nd: ~\ne: 1.5\n200: x\nf: [1, two]\n").unwrap();
        assert_eq!(v["a"], 1);
        assert_eq!(v["b"], "1");
        assert_eq!(v["c"], true);
        assert!(v["d"].is_null());
        assert_eq!(v["e"], 1.5);
        assert_eq!(v["200"], "x");
        assert_eq!(v["f"][1], "two");
    }
}

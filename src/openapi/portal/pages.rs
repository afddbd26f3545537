//! The read-only pages: the index (operations grouped by tag, untagged last) and one page per
//! operation (method, gateway path, parameters, request body schema and example, responses,
//! the auth it needs, and the "Try it" form). Server-rendered semantic HTML that reads fine
//! without JavaScript; `assets/portal.js` only drives the form.
//!
//! Invariant: every string from the document goes through `Esc` (the document is untrusted
//! input for HTML), and schemas are printed with their `$ref`s resolved to a bounded depth and
//! the whole print bounded in size, so a recursive or huge schema cannot blow a page up.

use std::fmt::Write;

use serde_json::{Map, Value};

use super::html::{page, segment, Esc};
use super::Portal;
use crate::openapi::load::resolve_pointer;
use crate::openapi::model::{Api, Operation, Param, ParamIn, SchemeKind};

/// How many `$ref` hops a printed schema follows before it shows the `$ref` itself.
const REF_DEPTH: usize = 4;
/// Largest pretty-printed schema or example on a page, in bytes.
const MAX_PRINT: usize = 32 * 1024;
/// Deepest synthesized example.
const SAMPLE_DEPTH: usize = 6;

/// The index page.
pub fn index(portal: &Portal) -> String {
    let mut m = String::with_capacity(4096);
    for (i, api) in portal.apis.iter().enumerate() {
        let _ = write!(m, "<h1>{}", Esc(&api.title));
        if !api.version.is_empty() {
            let _ = write!(m, " <span class=\"version\">{}</span>", Esc(&api.version));
        }
        m.push_str("</h1>\n");
        prose(&mut m, &api.description);
        let prefix = portal.prefixes.get(i).map_or("", String::as_str);
        for (tag, ops) in groups(api) {
            let heading = tag.unwrap_or("Other operations");
            let _ = write!(
                m,
                "<section class=\"tag\" aria-labelledby=\"{id}\">\n<h2 id=\"{id}\">{}</h2>\n",
                Esc(heading),
                id = Esc(&anchor(i, tag)),
            );
            if let Some(d) = tag.and_then(|t| tag_description(api, t)) {
                prose(&mut m, d);
            }
            m.push_str("<ul class=\"ops\">\n");
            for op in ops {
                let _ = write!(
                    m,
                    "<li><a href=\"{base}/op/{id}\"><span class=\"method m-{ml}\">{method}</span> \
                     <code>{path}</code></a>",
                    base = Esc(&portal.base),
                    id = Esc(&segment(&op.id)),
                    ml = Esc(&op.method.to_ascii_lowercase()),
                    method = Esc(&op.method),
                    path = Esc(&format!("{prefix}{}", op.path)),
                );
                if !op.summary.is_empty() {
                    let _ = write!(m, " <span class=\"summary\">{}</span>", Esc(&op.summary));
                }
                if op.deprecated {
                    m.push_str(" <span class=\"deprecated\">deprecated</span>");
                }
                m.push_str("</li>\n");
            }
            m.push_str("</ul>\n</section>\n");
        }
    }
    if portal.apis.iter().all(|a| a.operations.is_empty()) {
        m.push_str("<p>This API has no operations.</p>\n");
    }
    page(&portal.frame(), "Operations", &m)
}

/// The page for `op` of `api`, whose routes are served under `prefix`.
pub fn operation(portal: &Portal, api: &Api, prefix: &str, op: &Operation) -> String {
    let gateway_path = format!("{prefix}{}", op.path);
    let mut m = String::with_capacity(8192);
    let title = if op.summary.is_empty() {
        op.id.as_str()
    } else {
        op.summary.as_str()
    };
    let _ = write!(
        m,
        "<p class=\"crumbs\"><a href=\"{}/\">{}</a></p>\n<h1>{}</h1>\n\
         <p class=\"endpoint\"><span class=\"method m-{}\">{}</span> <code>{}</code></p>\n\
         <p class=\"opid\">Operation id: <code>{}</code></p>\n",
        Esc(&portal.base),
        Esc(&api.title),
        Esc(title),
        Esc(&op.method.to_ascii_lowercase()),
        Esc(&op.method),
        Esc(&gateway_path),
        Esc(&op.id),
    );
    if op.deprecated {
        m.push_str("<p class=\"deprecated\">This operation is deprecated.</p>\n");
    }
    prose(&mut m, &op.description);

    m.push_str("<section aria-labelledby=\"auth\">\n<h2 id=\"auth\">Authentication</h2>\n");
    let _ = writeln!(m, "<p>{}</p>\n</section>", Esc(&auth_text(api, op)));

    m.push_str("<section aria-labelledby=\"params\">\n<h2 id=\"params\">Parameters</h2>\n");
    if op.params.is_empty() {
        m.push_str("<p>None.</p>\n");
    } else {
        m.push_str(
            "<table>\n<thead><tr><th scope=\"col\">Name</th><th scope=\"col\">In</th>\
             <th scope=\"col\">Required</th><th scope=\"col\">Type</th>\
             <th scope=\"col\">Description</th><th scope=\"col\">Example</th></tr></thead>\n<tbody>\n",
        );
        for p in &op.params {
            let ty = p
                .schema
                .as_ref()
                .map(|s| type_text(&api.doc, s))
                .unwrap_or_default();
            let ex = param_example(&api.doc, p).map(|v| compact(&v));
            let _ = writeln!(
                m,
                "<tr><th scope=\"row\"><code>{}</code></th><td>{}</td><td>{}</td><td>{}</td>\
                 <td>{}</td><td>{}</td></tr>",
                Esc(&p.name),
                p.location.as_str(),
                if p.required { "yes" } else { "no" },
                Esc(&ty),
                Esc(&p.description),
                ex.as_deref()
                    .map(|e| format!("<code>{}</code>", Esc(e)))
                    .unwrap_or_default(),
            );
        }
        m.push_str("</tbody>\n</table>\n");
    }
    m.push_str("</section>\n");

    if let Some(body) = &op.body {
        m.push_str("<section aria-labelledby=\"body\">\n<h2 id=\"body\">Request body</h2>\n");
        let _ = writeln!(
            m,
            "<p>{}</p>",
            if body.required {
                "Required."
            } else {
                "Optional."
            }
        );
        prose(&mut m, &body.description);
        for media in &body.content {
            let _ = writeln!(m, "<h3><code>{}</code></h3>", Esc(&media.media));
            if let Some(s) = &media.schema {
                m.push_str("<p>Schema:</p>\n");
                pre(&mut m, &pretty(&resolved(&api.doc, s, REF_DEPTH)));
            }
            if let Some(ex) = media_example(&api.doc, media) {
                m.push_str("<p>Example:</p>\n");
                pre(&mut m, &pretty(&ex));
            }
        }
        m.push_str("</section>\n");
    }

    responses(&mut m, api, op);
    try_form(&mut m, api, op, &gateway_path);
    page(&portal.frame(), title, &m)
}

/// The 404 page.
pub fn not_found(portal: &Portal) -> String {
    let main = format!(
        "<h1>Not found</h1>\n<p>There is no such page in this portal. \
         <a href=\"{}/\">See all operations</a>.</p>",
        Esc(&portal.base)
    );
    page(&portal.frame(), "Not found", &main)
}

/// Operations grouped by tag: tags in the order of the document's `tags` list, then in
/// order of first use; an operation with several tags is listed under each; untagged last.
fn groups(api: &Api) -> Vec<(Option<&str>, Vec<&Operation>)> {
    let mut order: Vec<&str> = Vec::new();
    if let Some(tags) = api.doc.get("tags").and_then(Value::as_array) {
        for t in tags {
            if let Some(n) = t.get("name").and_then(Value::as_str) {
                if api.operations.iter().any(|o| o.tags.iter().any(|x| x == n))
                    && !order.contains(&n)
                {
                    order.push(n);
                }
            }
        }
    }
    for op in &api.operations {
        for t in &op.tags {
            if !order.contains(&t.as_str()) {
                order.push(t);
            }
        }
    }
    let mut out: Vec<(Option<&str>, Vec<&Operation>)> = order
        .into_iter()
        .map(|t| {
            let ops = api
                .operations
                .iter()
                .filter(|o| o.tags.iter().any(|x| x == t))
                .collect();
            (Some(t), ops)
        })
        .collect();
    let untagged: Vec<&Operation> = api
        .operations
        .iter()
        .filter(|o| o.tags.is_empty())
        .collect();
    if !untagged.is_empty() {
        out.push((None, untagged));
    }
    out
}

fn tag_description<'a>(api: &'a Api, tag: &str) -> Option<&'a str> {
    api.doc
        .get("tags")?
        .as_array()?
        .iter()
        .find(|t| t.get("name").and_then(Value::as_str) == Some(tag))?
        .get("description")?
        .as_str()
        .filter(|d| !d.is_empty())
}

/// An element id for a tag's heading (ASCII letters and digits only).
fn anchor(api: usize, tag: Option<&str>) -> String {
    let mut s = format!("tag-{api}-");
    match tag {
        None => s.push_str("untagged"),
        Some(t) => s.extend(t.chars().map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })),
    }
    s
}

/// Description text as paragraphs (blank lines split them). Markdown is shown as written:
/// rendering it would be one more parser of untrusted input for little gain.
fn prose(m: &mut String, text: &str) {
    for para in text.split("\n\n").map(str::trim).filter(|p| !p.is_empty()) {
        let _ = writeln!(m, "<p class=\"prose\">{}</p>", Esc(para));
    }
}

fn pre(m: &mut String, text: &str) {
    let _ = writeln!(m, "<pre><code>{}</code></pre>", Esc(text));
}

/// What `op` needs to be called, in words: alternatives joined with "or", the schemes of one
/// alternative with "and".
pub fn auth_text(api: &Api, op: &Operation) -> String {
    if op.security.is_empty() {
        return "none".into();
    }
    let alts: Vec<String> = op
        .security
        .iter()
        .map(|alt| {
            if alt.is_empty() {
                return "none (anonymous access is allowed)".to_string();
            }
            let parts: Vec<String> = alt
                .iter()
                .map(|req| {
                    let mut s = match api.schemes.iter().find(|s| s.name == req.scheme) {
                        Some(s) => scheme_text(&s.kind),
                        None => format!("scheme {}", req.scheme),
                    };
                    if !req.scopes.is_empty() {
                        let _ = write!(s, " with scopes {}", req.scopes.join(", "));
                    }
                    s
                })
                .collect();
            parts.join(" and ")
        })
        .collect();
    alts.join(", or ")
}

fn scheme_text(kind: &SchemeKind) -> String {
    match kind {
        SchemeKind::ApiKey { location, name } => match location {
            ParamIn::Header => format!("API key in header {name}"),
            ParamIn::Query => format!("API key in query parameter {name}"),
            ParamIn::Cookie => format!("API key in cookie {name}"),
            ParamIn::Path => format!("API key in path parameter {name}"),
        },
        SchemeKind::Bearer { format }
            if format.is_empty() || format.eq_ignore_ascii_case("jwt") =>
        {
            "Bearer token (JWT)".into()
        }
        SchemeKind::Bearer { format } => format!("Bearer token ({format})"),
        SchemeKind::Http { scheme } => format!("HTTP {scheme} authentication"),
        SchemeKind::OAuth2 => "OAuth 2.0 bearer token".into(),
        SchemeKind::OpenIdConnect { .. } => "OpenID Connect bearer token".into(),
        SchemeKind::MutualTls => "client certificate (mutual TLS)".into(),
    }
}

/// How the "Try it" form sends a credential: the first scheme of the first alternative that
/// a browser can send (header or query API key, or a bearer token).
fn credential(api: &Api, op: &Operation) -> Option<(&'static str, String, String)> {
    for alt in &op.security {
        for req in alt {
            let Some(s) = api.schemes.iter().find(|s| s.name == req.scheme) else {
                continue;
            };
            match &s.kind {
                SchemeKind::ApiKey {
                    location: ParamIn::Header,
                    name,
                } => return Some(("header", name.clone(), format!("API key ({name})"))),
                SchemeKind::ApiKey {
                    location: ParamIn::Query,
                    name,
                } => return Some(("query", name.clone(), format!("API key ({name})"))),
                SchemeKind::Bearer { .. }
                | SchemeKind::OAuth2
                | SchemeKind::OpenIdConnect { .. } => {
                    return Some(("bearer", "authorization".into(), "Bearer token".into()))
                }
                _ => {}
            }
        }
    }
    None
}

fn responses(m: &mut String, api: &Api, op: &Operation) {
    m.push_str("<section aria-labelledby=\"responses\">\n<h2 id=\"responses\">Responses</h2>\n");
    let Some(map) = op.responses.as_object().filter(|r| !r.is_empty()) else {
        m.push_str("<p>None documented.</p>\n</section>\n");
        return;
    };
    m.push_str(
        "<table>\n<thead><tr><th scope=\"col\">Status</th><th scope=\"col\">Description</th>\
         <th scope=\"col\">Content</th></tr></thead>\n<tbody>\n",
    );
    for (status, resp) in map {
        let resp = follow(&api.doc, resp, REF_DEPTH);
        let desc = resp
            .get("description")
            .and_then(Value::as_str)
            .unwrap_or("");
        let _ = write!(
            m,
            "<tr><th scope=\"row\"><code>{}</code></th><td>{}</td><td>",
            Esc(status),
            Esc(desc)
        );
        if let Some(content) = resp.get("content").and_then(Value::as_object) {
            for (media, mt) in content {
                let _ = writeln!(m, "<p><code>{}</code></p>", Esc(media));
                if let Some(s) = mt.get("schema") {
                    pre(m, &pretty(&resolved(&api.doc, s, REF_DEPTH)));
                }
            }
        }
        m.push_str("</td></tr>\n");
    }
    m.push_str("</tbody>\n</table>\n</section>\n");
}

/// The "Try it" form. It sends a real request to the gateway path on the same origin through
/// `portal.js`; the inputs carry what the script needs in `data-` attributes (no inline
/// script: the CSP forbids it). It starts `hidden` and the script shows it, so a reader
/// without JavaScript sees the `noscript` note rather than a form that cannot work.
fn try_form(m: &mut String, api: &Api, op: &Operation, gateway_path: &str) {
    m.push_str("<section aria-labelledby=\"try\" class=\"try\">\n<h2 id=\"try\">Try it</h2>\n");
    m.push_str(
        "<noscript><p>Sending a request from this page needs JavaScript; \
         everything else here reads without it.</p></noscript>\n",
    );
    let media = op
        .body
        .as_ref()
        .and_then(|b| b.content.first())
        .map(|mt| mt.media.clone())
        .unwrap_or_default();
    let _ = writeln!(
        m,
        "<form id=\"try-form\" class=\"try-form\" data-method=\"{}\" data-path=\"{}\" data-media=\"{}\" hidden>",
        Esc(&op.method),
        Esc(gateway_path),
        Esc(&media),
    );
    let mut n = 0;
    for p in &op.params {
        if p.location == ParamIn::Cookie {
            let _ = writeln!(
                m,
                "<p class=\"note\">Cookie parameter <code>{}</code> cannot be set from this form.</p>",
                Esc(&p.name)
            );
            continue;
        }
        n += 1;
        let value = param_example(&api.doc, p)
            .map(|v| match v {
                Value::String(s) => s,
                other => compact(&other),
            })
            .unwrap_or_default();
        let _ = writeln!(
            m,
            "<p><label for=\"try-p{n}\">{name} <span class=\"in\">({loc}{req})</span></label>\n\
             <input id=\"try-p{n}\" type=\"text\" data-in=\"{loc}\" data-name=\"{name}\" value=\"{value}\"{required}></p>",
            name = Esc(&p.name),
            loc = p.location.as_str(),
            req = if p.required { ", required" } else { "" },
            value = Esc(&value),
            required = if p.required { " required" } else { "" },
        );
    }
    if let Some((how, name, label)) = credential(api, op) {
        let _ = writeln!(
            m,
            "<p><label for=\"try-cred\">{}</label>\n<input id=\"try-cred\" type=\"password\" \
             autocomplete=\"off\" data-cred=\"{how}\" data-name=\"{}\"></p>",
            Esc(&label),
            Esc(&name),
        );
    }
    if let Some(body) = &op.body {
        let example = body
            .content
            .first()
            .and_then(|mt| media_example(&api.doc, mt))
            .map(|v| pretty(&v))
            .unwrap_or_default();
        let _ = writeln!(
            m,
            "<p><label for=\"try-body\">Request body ({})</label>\n\
             <textarea id=\"try-body\" rows=\"10\" spellcheck=\"false\">{}</textarea></p>",
            Esc(if media.is_empty() { "text" } else { &media }),
            Esc(&example),
        );
    }
    m.push_str(
        "<p><button type=\"submit\" id=\"try-send\">Send request</button></p>\n</form>\n\
         <div id=\"try-result\" class=\"try-result\" aria-live=\"polite\" tabindex=\"-1\" hidden>\n\
         <h3>Response</h3>\n<p>Status: <output id=\"try-status\"></output></p>\n\
         <h4>Headers</h4>\n<pre id=\"try-headers\"></pre>\n\
         <h4>Body</h4>\n<pre id=\"try-body-out\"></pre>\n</div>\n</section>\n",
    );
}

/// Follows `$ref`s of `v` itself (not of its children), at most `hops` times.
fn follow<'a>(doc: &'a Value, mut v: &'a Value, hops: usize) -> &'a Value {
    for _ in 0..hops {
        match v.get("$ref").and_then(Value::as_str) {
            Some(r) => match resolve_pointer(doc, r) {
                Some(t) => v = t,
                None => break,
            },
            None => break,
        }
    }
    v
}

/// `schema` with local `$ref`s replaced by what they point to, `depth` levels deep; deeper
/// (or unresolvable) references stay as `{"$ref": ...}`.
fn resolved(doc: &Value, schema: &Value, depth: usize) -> Value {
    match schema {
        Value::Object(o) => {
            if let (Some(r), true) = (o.get("$ref").and_then(Value::as_str), depth > 0) {
                if let Some(t) = resolve_pointer(doc, r) {
                    return resolved(doc, t, depth - 1);
                }
            }
            let mut out = Map::with_capacity(o.len());
            for (k, v) in o {
                out.insert(k.clone(), resolved(doc, v, depth));
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(|v| resolved(doc, v, depth)).collect()),
        other => other.clone(),
    }
}

/// Pretty JSON, cut at `MAX_PRINT` bytes (on a char boundary) with a note.
fn pretty(v: &Value) -> String {
    let s = serde_json::to_string_pretty(v).unwrap_or_default();
    cut(s)
}

fn compact(v: &Value) -> String {
    cut(serde_json::to_string(v).unwrap_or_default())
}

fn cut(mut s: String) -> String {
    if s.len() > MAX_PRINT {
        let mut at = MAX_PRINT;
        while !s.is_char_boundary(at) {
            at -= 1;
        }
        s.truncate(at);
        s.push_str("\n... (cut: too large to show)");
    }
    s
}

/// A short type description of a schema: `integer (int64)`, `array of string`, `Pet`.
fn type_text(doc: &Value, schema: &Value) -> String {
    let name = schema
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| r.rsplit('/').next())
        .map(str::to_string);
    let s = follow(doc, schema, REF_DEPTH);
    let ty = match s.get("type") {
        Some(Value::String(t)) => t.clone(),
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(" | "),
        _ if s.get("oneOf").is_some() => "one of several".into(),
        _ if s.get("anyOf").is_some() => "any of several".into(),
        _ => String::new(),
    };
    let mut out = match (ty.as_str(), name) {
        ("array", _) => match s.get("items") {
            Some(items) => format!("array of {}", type_text_flat(doc, items)),
            None => "array".into(),
        },
        ("object", Some(n)) | ("", Some(n)) => n,
        _ => ty,
    };
    if let Some(f) = s.get("format").and_then(Value::as_str) {
        let _ = write!(out, " ({f})");
    }
    if let Some(e) = s.get("enum").and_then(Value::as_array) {
        let vals: Vec<String> = e.iter().take(8).map(compact).collect();
        let _ = write!(out, ", one of {}", vals.join(", "));
    }
    out
}

/// `type_text` without recursing into arrays again (nested arrays say "array").
fn type_text_flat(doc: &Value, schema: &Value) -> String {
    if let Some(n) = schema
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| r.rsplit('/').next())
    {
        return n.to_string();
    }
    let s = follow(doc, schema, REF_DEPTH);
    s.get("type")
        .and_then(Value::as_str)
        .unwrap_or("value")
        .to_string()
}

/// A parameter's example: its own, else its schema's `example` or `default`.
fn param_example(doc: &Value, p: &Param) -> Option<Value> {
    if let Some(e) = &p.example {
        return Some(e.clone());
    }
    let s = follow(doc, p.schema.as_ref()?, REF_DEPTH);
    s.get("example").or_else(|| s.get("default")).cloned()
}

/// A body example: the media type's own, else its schema's, else one made from the schema.
fn media_example(doc: &Value, mt: &crate::openapi::model::MediaType) -> Option<Value> {
    if let Some(e) = &mt.example {
        return Some(e.clone());
    }
    let s = mt.schema.as_ref()?;
    Some(sample(doc, s, SAMPLE_DEPTH))
}

/// A value that fits `schema` well enough to edit: examples, defaults and enums first, then
/// a placeholder per type; bounded in depth (a recursive schema ends in `null`).
fn sample(doc: &Value, schema: &Value, depth: usize) -> Value {
    if depth == 0 {
        return Value::Null;
    }
    let s = follow(doc, schema, REF_DEPTH);
    for k in ["example", "default", "const"] {
        if let Some(v) = s.get(k) {
            return v.clone();
        }
    }
    if let Some(first) = s
        .get("enum")
        .and_then(Value::as_array)
        .and_then(|e| e.first())
    {
        return first.clone();
    }
    for k in ["allOf", "oneOf", "anyOf"] {
        if let Some(parts) = s.get(k).and_then(Value::as_array) {
            if k == "allOf" {
                let mut merged = Map::new();
                for p in parts {
                    if let Value::Object(o) = sample(doc, p, depth - 1) {
                        merged.extend(o);
                    }
                }
                return Value::Object(merged);
            }
            if let Some(p) = parts.first() {
                return sample(doc, p, depth - 1);
            }
        }
    }
    let ty = match s.get("type") {
        Some(Value::String(t)) => t.as_str(),
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null")
            .unwrap_or("null"),
        _ if s.get("properties").is_some() => "object",
        _ => "",
    };
    match ty {
        "object" => {
            let mut o = Map::new();
            if let Some(props) = s.get("properties").and_then(Value::as_object) {
                for (k, v) in props.iter().take(64) {
                    o.insert(k.clone(), sample(doc, v, depth - 1));
                }
            }
            Value::Object(o)
        }
        "array" => match s.get("items") {
            Some(items) => Value::Array(vec![sample(doc, items, depth - 1)]),
            None => Value::Array(Vec::new()),
        },
        "string" => Value::String("string".into()),
        "integer" | "number" => Value::from(0),
        "boolean" => Value::Bool(false),
        _ => Value::Null,
    }
}

/// A petstore-style portal for unit tests.
#[cfg(test)]
pub(crate) mod tests_support {
    use super::Portal;
    use crate::openapi::load::{parse_text, read_api};
    use std::path::Path;
    use std::sync::Arc;

    pub(crate) const PETS: &str = r##"
openapi: 3.0.3
info:
  title: Pet <Store>
  version: "1.0"
  description: "Pets <script>alert(1)</script> & friends"
tags:
  - name: pets
    description: Everything about pets
paths:
  /pets:
    get:
      operationId: listPets
      summary: List pets
      tags: [pets]
      parameters:
        - name: limit
          in: query
          required: false
          description: How many <b>at most</b>
          schema: { type: integer, format: int32, example: 10 }
      responses:
        "200":
          description: A list
          content:
            application/json:
              schema:
                type: array
                items: { $ref: "#/components/schemas/Pet" }
    post:
      operationId: createPet
      summary: Create a pet
      tags: [pets]
      security:
        - bearerAuth: [pets:write]
      requestBody:
        required: true
        content:
          application/json:
            schema: { $ref: "#/components/schemas/Pet" }
      responses:
        "201": { description: Created }
  /pets/{petId}:
    get:
      operationId: showPetById
      security:
        - apiKey: []
      parameters:
        - name: petId
          in: path
          required: true
          schema: { type: string }
          example: "42"
      responses:
        default: { $ref: "#/components/responses/Error" }
components:
  responses:
    Error:
      description: An error
  schemas:
    Pet:
      type: object
      required: [id, name]
      properties:
        id: { type: integer, format: int64 }
        name: { type: string, example: Rex }
        parent: { $ref: "#/components/schemas/Pet" }
  securitySchemes:
    apiKey: { type: apiKey, in: header, name: X-Api-Key }
    bearerAuth: { type: http, scheme: bearer, bearerFormat: JWT }
"##;

    pub(crate) fn portal() -> Portal {
        let doc = parse_text(PETS).unwrap();
        let api = read_api(doc, Path::new("pets.yaml"), "pets").unwrap();
        Portal::new("/docs".into(), vec![Arc::new(api)], vec!["/v1".into()])
    }
}

#[cfg(test)]
mod tests {
    use super::tests_support::portal;
    use super::*;

    #[test]
    fn index_groups_by_tag_and_escapes_the_document() {
        let p = portal();
        let html = index(&p);
        assert!(html.contains("Pet &lt;Store&gt;"), "{html}");
        assert!(html.contains("Pets &lt;script&gt;alert(1)&lt;/script&gt; &amp; friends"));
        assert!(!html.contains("<script>alert"));
        let pets = html.find(">pets</h2>").expect("tag heading");
        let other = html
            .find(">Other operations</h2>")
            .expect("untagged heading");
        assert!(pets < other, "untagged last");
        assert!(html.contains("href=\"/docs/op/listPets\""));
        assert!(html.contains("<code>/v1/pets/{petId}</code>"));
        assert!(html.contains("Everything about pets"));
        // One script, from the portal's own assets; no inline script, no external URL.
        assert_eq!(html.matches("<script").count(), 1);
        assert!(html.contains("<script src=\"/docs/assets/portal.js\" defer></script>"));
        assert!(!html.contains("http://") && !html.contains("https://"));
    }

    #[test]
    fn operation_page_shows_params_body_responses_and_auth() {
        let p = portal();
        let api = &p.apis[0];
        let op = |id: &str| api.operations.iter().find(|o| o.id == id).unwrap();
        let html = operation(&p, api, "/v1", op("listPets"));
        assert!(html.contains("<th scope=\"row\"><code>limit</code></th><td>query</td><td>no</td><td>integer (int32)</td>"), "{html}");
        assert!(html.contains("How many &lt;b&gt;at most&lt;/b&gt;"));
        assert!(html.contains("<p>none</p>"));
        assert!(html.contains("data-path=\"/v1/pets\""));
        // The response schema's $ref is resolved (Pet's properties are shown).
        assert!(html.contains("&quot;format&quot;: &quot;int64&quot;"));

        let html = operation(&p, api, "/v1", op("createPet"));
        assert!(html.contains("Bearer token (JWT) with scopes pets:write"));
        assert!(html.contains("<textarea id=\"try-body\""));
        assert!(
            html.contains("&quot;name&quot;: &quot;Rex&quot;"),
            "example from schema"
        );
        assert!(html.contains("data-cred=\"bearer\""));

        let html = operation(&p, api, "/v1", op("showPetById"));
        assert!(html.contains("API key in header X-Api-Key"));
        assert!(html.contains("data-in=\"path\" data-name=\"petId\" value=\"42\" required"));
        assert!(html.contains("An error"), "response $ref followed");
        assert!(html.contains("data-cred=\"header\" data-name=\"X-Api-Key\""));
        // Every input has a label.
        for id in ["try-p1", "try-cred"] {
            assert!(html.contains(&format!("<label for=\"{id}\"")), "{id}");
        }
    }

    #[test]
    fn auth_alternatives_read_as_words() {
        use crate::openapi::model::Requirement;
        let p = portal();
        let api = &p.apis[0];
        let mut op = api.operations.iter().find(|o| o.id == "listPets").unwrap();
        assert_eq!(auth_text(api, op), "none");
        let req = |s: &str| Requirement {
            scheme: s.into(),
            scopes: Vec::new(),
        };
        let mut custom = crate::openapi::model::Operation {
            security: vec![
                vec![req("apiKey"), req("bearerAuth")],
                vec![],
                vec![req("gone")],
            ],
            ..clone_op(op)
        };
        assert_eq!(
            auth_text(api, &custom),
            "API key in header X-Api-Key and Bearer token (JWT), or none (anonymous access is allowed), or scheme gone"
        );
        custom.security = vec![vec![req("gone")]];
        assert!(
            credential(api, &custom).is_none(),
            "nothing a browser can send"
        );
        op = &custom;
        assert!(operation(&p, api, "", op).contains("scheme gone"));
    }

    #[test]
    fn hostile_names_stay_text_everywhere() {
        let evil = "a\"><img src=x onerror=alert(1)>";
        let yaml = PETS_EVIL.replace("EVIL", &evil.replace('"', "\\\""));
        let doc = crate::openapi::load::parse_text(&yaml).unwrap();
        let api = crate::openapi::load::read_api(doc, std::path::Path::new("x.yaml"), "x").unwrap();
        let p = Portal::new(
            "/docs".into(),
            vec![std::sync::Arc::new(api)],
            vec![String::new()],
        );
        let html = index(&p);
        assert!(!html.contains("<img"), "{html}");
        assert!(html.contains("a%22%3E%3Cimg%20src%3Dx%20onerror%3Dalert%281%29%3E"));
        let path = format!("/docs/op/{}", super::segment(evil));
        let crate::openapi::portal::Target::Operation { api, prefix, op } = p.target(&path) else {
            panic!("the hostile id has a page");
        };
        let page = operation(&p, api, prefix, op);
        assert!(!page.contains("<img") && !page.contains("<b>"), "{page}");
        assert!(page.contains("&lt;img src=x onerror=alert(1)&gt;"));
    }

    const PETS_EVIL: &str = r#"
openapi: 3.1.0
info: { title: "t", version: "1" }
tags: [{ name: "EVIL", description: "<b>bold</b>" }]
paths:
  "/x/{EVIL}":
    get:
      operationId: "EVIL"
      summary: "EVIL"
      tags: ["EVIL"]
      parameters:
        - { name: "EVIL", in: path, required: true, schema: { type: string, example: "EVIL" } }
      responses:
        "200": { description: "EVIL" }
"#;

    fn clone_op(o: &Operation) -> Operation {
        Operation {
            id: o.id.clone(),
            method: o.method.clone(),
            path: o.path.clone(),
            pointer: o.pointer.clone(),
            summary: o.summary.clone(),
            description: o.description.clone(),
            tags: o.tags.clone(),
            deprecated: o.deprecated,
            params: o.params.clone(),
            body: o.body.clone(),
            security: o.security.clone(),
            responses: o.responses.clone(),
        }
    }

    #[test]
    fn recursive_schemas_and_huge_values_are_bounded() {
        let doc: Value = serde_json::json!({
            "components": {"schemas": {"A": {"type": "object", "properties": {"a": {"$ref": "#/components/schemas/A"}}}}}
        });
        let s = serde_json::json!({"$ref": "#/components/schemas/A"});
        let r = resolved(&doc, &s, REF_DEPTH);
        assert!(serde_json::to_string(&r).unwrap().contains("$ref"));
        let v = sample(&doc, &s, SAMPLE_DEPTH);
        assert!(serde_json::to_string(&v).unwrap().len() < 200);
        let big = Value::String("x".repeat(MAX_PRINT * 2));
        assert!(pretty(&big).len() < MAX_PRINT + 100);
        let uni = Value::String("é".repeat(MAX_PRINT));
        assert!(pretty(&uni).ends_with("too large to show)"));
    }
}

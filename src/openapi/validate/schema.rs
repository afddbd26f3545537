//! Schema compilation: an operation's parameter and body schemas become `jsonschema`
//! validators, once per config generation.
//!
//! How `$ref`s resolve: the whole document (rewritten, below) is registered as one resource
//! under [`DOC_URI`]; a schema taken from it gets its local `#/...` references rewritten to
//! `DOC_URI#/...`, so `#/components/schemas/Pet` (and references inside components) resolve
//! against the document without any fetch (the crate is built without HTTP/file resolution).
//!
//! Dialects: OpenAPI 3.1 is JSON Schema draft 2020-12 as is. OpenAPI 3.0's schema object is
//! compiled as draft 4 after a rewrite: `nullable: true` becomes a `type` array with `"null"`
//! (or `anyOf: [{type: null}, ...]` around a composed schema without a plain `type`); an
//! `enum` must list `null` itself (OpenAPI 3.0.3's reading, which schemathesis shares); boolean `exclusiveMinimum`/`exclusiveMaximum` are draft 4 already; `discriminator`,
//! `xml`, `example`, `externalDocs` are unknown keywords to draft 4 and so annotations.
//! For both dialects: a property marked `readOnly` is taken out of `required` (a client does not
//! send it), and `format: int32`/`int64` on an integer add the range as `minimum`/`maximum`.
//!
//! `pattern` is the budgeted keyword of `super::pattern` (linear engine when it can, a
//! per-request budget for look-around patterns), registered in place of the crate's own.
//!
//! Formats are asserted (date, date-time, email, uuid, ipv4, ...); `byte` is checked as
//! base64; a format nobody checks is reported in `ignored` with its pointer.

use std::cell::RefCell;
use std::collections::HashSet;
use std::sync::{Arc, Weak};

use jsonschema::{Draft, PatternOptions, Registry};
use serde_json::{Map, Value};

use crate::openapi::load::resolve_pointer;
use crate::openapi::model::{pointer_token, Api, Dialect, Ignored};

/// The URI the document is registered under (never fetched: `.invalid` cannot resolve).
pub(super) const DOC_URI: &str = "https://ringway.invalid/openapi.json";
/// Base URI of each compiled schema (distinct from the document's).
const SCHEMA_URI: &str = "https://ringway.invalid/schema.json";

/// Formats OpenAPI defines that need no check beyond `type` (`int32`/`int64` become a range).
const OPENAPI_FORMATS: &[&str] = &["int32", "int64", "float", "double", "binary", "password"];

/// Upper bound on schema nodes walked when looking for unknown formats or types (a big
/// document with many references is walked once per operation, so keep this finite).
const MAX_WALK: usize = 20_000;

/// Compiled size limit for a `patternProperties` pattern (the `regex` crate's default is 10 MiB
/// per pattern; a document is operator-written, but a few such patterns per operation add up).
const PROPERTY_PATTERN_SIZE_LIMIT: usize = 1 << 20;

/// A document prepared for compiling: rewritten for its dialect, with the draft to use.
pub(super) struct Prepared {
    pub doc: Arc<Value>,
    /// The document as written (pointers in reports name what the author wrote).
    pub orig: Arc<Value>,
    pub draft: Draft,
}

thread_local! {
    /// The last document prepared on this thread: the importer compiles every operation of one
    /// document in a row, so the rewrite runs once per document, not once per operation.
    static LAST: RefCell<Option<(Weak<Value>, Arc<Value>)>> = const { RefCell::new(None) };
}

/// The document rewritten for its dialect (cached per thread for the last document seen).
pub(super) fn prepare(api: &Api) -> Prepared {
    let draft = match api.dialect {
        Dialect::V30 => Draft::Draft4,
        Dialect::V31 => Draft::Draft202012,
    };
    let cached = LAST.with(|l| {
        l.borrow().as_ref().and_then(|(w, done)| {
            let same = w.upgrade().is_some_and(|d| Arc::ptr_eq(&d, &api.doc));
            same.then(|| done.clone())
        })
    });
    let doc = cached.unwrap_or_else(|| {
        let mut doc = (*api.doc).clone();
        rewrite(&mut doc, api.dialect, &api.doc, 0);
        let doc = Arc::new(doc);
        LAST.with(|l| *l.borrow_mut() = Some((Arc::downgrade(&api.doc), doc.clone())));
        doc
    });
    Prepared {
        doc,
        orig: api.doc.clone(),
        draft,
    }
}

/// Keys whose values are data, not schemas: never rewritten.
fn is_data_key(k: &str) -> bool {
    matches!(k, "enum" | "const" | "example" | "examples" | "default")
}

/// Rewrites every schema object in `v` for the validator (see the module header). `orig` is
/// the unrewritten document, for `readOnly` behind a `$ref`. Depth is bounded by the loader.
fn rewrite(v: &mut Value, dialect: Dialect, orig: &Value, depth: usize) {
    if depth > 256 {
        return;
    }
    match v {
        Value::Array(items) => {
            for i in items {
                rewrite(i, dialect, orig, depth + 1);
            }
        }
        Value::Object(map) => {
            for (k, child) in map.iter_mut() {
                if !is_data_key(k) {
                    rewrite(child, dialect, orig, depth + 1);
                }
            }
            drop_read_only_required(map, orig);
            int_format_range(map);
            if dialect == Dialect::V30 && map.get("nullable") == Some(&Value::Bool(true)) {
                map.remove("nullable");
                if let Some(wrapped) = nullable(map) {
                    *v = wrapped;
                }
            }
        }
        _ => {}
    }
}

/// `nullable: true` (already removed from `map`): adds `"null"` to a plain `type`; a schema
/// composed without one (`allOf: [{$ref}]`, the common nullable-reference idiom) is wrapped in
/// `anyOf: [{type: null}, schema]`, returned.
fn nullable(map: &mut Map<String, Value>) -> Option<Value> {
    let composite = ["allOf", "anyOf", "oneOf", "not", "$ref"]
        .iter()
        .any(|k| map.contains_key(*k));
    if !composite {
        if let Some(Value::String(t)) = map.get("type") {
            let t = t.clone();
            map.insert("type".into(), Value::Array(vec![t.into(), "null".into()]));
            // An `enum` stays as written: OpenAPI 3.0.3 says `nullable` widens the type
            // only, so null passes an enum only when the enum lists it.
            return None;
        }
        // No `type`: null passes already unless an `enum` leaves it out (see above).
        return None;
    }
    let inner = Value::Object(std::mem::take(map));
    let mut out = Map::new();
    out.insert(
        "anyOf".into(),
        Value::Array(vec![serde_json::json!({"type": "null"}), inner]),
    );
    Some(Value::Object(out))
}

/// A request does not carry `readOnly` properties: they are not required in it.
fn drop_read_only_required(map: &mut Map<String, Value>, orig: &Value) {
    let Some(Value::Object(props)) = map.get("properties") else {
        return;
    };
    let Some(Value::Array(req)) = map.get("required") else {
        return;
    };
    let read_only = |name: &Value| {
        let Some(p) = name.as_str().and_then(|n| props.get(n)) else {
            return false;
        };
        let p = match p.get("$ref").and_then(Value::as_str) {
            Some(r) => resolve_pointer(orig, r).unwrap_or(p),
            None => p,
        };
        p.get("readOnly") == Some(&Value::Bool(true))
    };
    if !req.iter().any(read_only) {
        return;
    }
    let kept: Vec<Value> = req.iter().filter(|n| !read_only(n)).cloned().collect();
    if kept.is_empty() {
        map.remove("required");
    } else {
        map.insert("required".into(), Value::Array(kept));
    }
}

/// `type: integer` with `format: int32`/`int64`: the range becomes `minimum`/`maximum` (a
/// `format` only constrains strings in JSON Schema).
fn int_format_range(map: &mut Map<String, Value>) {
    let (lo, hi): (Value, Value) = match map.get("format").and_then(Value::as_str) {
        Some("int32") => (i32::MIN.into(), i32::MAX.into()),
        Some("int64") => (i64::MIN.into(), i64::MAX.into()),
        _ => return,
    };
    let integer = match map.get("type") {
        Some(Value::String(t)) => t == "integer",
        Some(Value::Array(ts)) => ts.iter().any(|t| t == "integer"),
        _ => false,
    };
    if integer {
        map.entry("minimum").or_insert(lo);
        map.entry("maximum").or_insert(hi);
    }
}

/// Copies `schema` with every local `$ref` (`#/...`) made absolute against [`DOC_URI`].
fn absolute_refs(v: &Value, depth: usize) -> Value {
    match v {
        Value::Object(map) if depth < 256 => {
            let mut out = Map::with_capacity(map.len());
            for (k, child) in map {
                let c = match (k.as_str(), child) {
                    ("$ref", Value::String(r)) if r.starts_with('#') => {
                        Value::String(format!("{DOC_URI}{r}"))
                    }
                    (k, c) if is_data_key(k) => c.clone(),
                    _ => absolute_refs(child, depth + 1),
                };
                out.insert(k.clone(), c);
            }
            Value::Object(out)
        }
        Value::Array(items) if depth < 256 => {
            items.iter().map(|i| absolute_refs(i, depth + 1)).collect()
        }
        _ => v.clone(),
    }
}

/// The schema at `at` (a `#/...` pointer) in the prepared document, or `fallback` rewritten
/// on its own when the pointer does not lead there.
pub(super) fn schema_at(p: &Prepared, at: &str, fallback: &Value, dialect: Dialect) -> Value {
    match resolve_pointer(&p.doc, at) {
        Some(v) => v.clone(),
        None => {
            let mut v = fallback.clone();
            rewrite(&mut v, dialect, &p.doc, 0);
            v
        }
    }
}

/// Compiles one schema (`at`: its pointer in the document, for messages). Unknown formats
/// are pushed to `ignored`.
pub(super) fn compile<F: jsonschema::json::Json>(
    p: &Prepared,
    schema: &Value,
    at: &str,
    ignored: &mut Vec<Ignored>,
) -> Result<jsonschema::Validator<F>, String> {
    let registry = Registry::new()
        .draft(p.draft)
        .add(DOC_URI, p.draft.create_resource_ref(&p.doc))
        .and_then(|b| b.prepare())
        .map_err(|e| format!("{at}: the document cannot be used for $refs: {e}"))?;
    let mut opts = jsonschema::options_for::<F>()
        .with_draft(p.draft)
        .with_registry(&registry)
        .with_base_uri(SCHEMA_URI)
        .should_validate_formats(true)
        // `patternProperties` (and `additionalProperties` / `unevaluatedProperties` beside
        // it) run inside the crate on every client property name, where no per-request budget
        // reaches: only the linear engine runs there, so a look-around is refused when the
        // document loads (`pattern` runs under its budget, `super::pattern`).
        .with_pattern_options(PatternOptions::regex().size_limit(PROPERTY_PATTERN_SIZE_LIMIT))
        .with_keyword("pattern", super::pattern::factory::<F>)
        .with_format("byte", is_base64);
    for f in OPENAPI_FORMATS {
        opts = opts.with_format(*f, |_: &str| true);
    }
    if p.draft == Draft::Draft4 {
        // Draft 4 predates `uuid`; OpenAPI 3.0 documents use it all the time.
        opts = opts.with_format("uuid", is_uuid);
    }
    let abs = absolute_refs(schema, 0);
    let v = opts.build(&abs).map_err(|e| {
        let inner = e.instance_path().as_str().to_string();
        let hint = if inner.contains("/patternProperties/") {
            " (property names are matched in linear time: a patternProperties pattern may not \
             use look-around or back-references; `pattern` may, under a per-request budget)"
        } else {
            ""
        };
        format!("{at}{inner}: invalid schema: {}{hint}", e.masked())
    })?;
    let mut seen = HashSet::new();
    let mut budget = MAX_WALK;
    // Surveyed as written: the rewrite may wrap a schema (`anyOf`), which would shift pointers.
    let as_written = resolve_pointer(&p.orig, at).unwrap_or(schema);
    unknown_formats(
        as_written,
        at,
        &p.orig,
        &|name| opts.is_known_format(p.draft, name),
        &mut seen,
        &mut budget,
        ignored,
    );
    Ok(v)
}

/// Walks `v` (at pointer `at`) and the schemas it references, reporting each `format` no
/// check exists for.
fn unknown_formats(
    v: &Value,
    at: &str,
    doc: &Value,
    known: &dyn Fn(&str) -> bool,
    seen: &mut HashSet<String>,
    budget: &mut usize,
    ignored: &mut Vec<Ignored>,
) {
    if *budget == 0 {
        return;
    }
    *budget -= 1;
    match v {
        Value::Object(map) => {
            if let Some(Value::String(f)) = map.get("format") {
                if !known(f) {
                    push_ignored(
                        ignored,
                        format!("{at}/format"),
                        format!("format `{f}` is not checked (no validator for it)"),
                    );
                }
            }
            if let Some(Value::String(r)) = map.get("$ref") {
                if r.starts_with('#') && seen.insert(r.clone()) {
                    if let Some(target) = resolve_pointer(doc, r) {
                        unknown_formats(target, r, doc, known, seen, budget, ignored);
                    }
                }
            }
            for (k, child) in map {
                if !is_data_key(k) && k != "format" && k != "$ref" {
                    let at = format!("{at}/{}", pointer_token(k));
                    unknown_formats(child, &at, doc, known, seen, budget, ignored);
                }
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                let at = format!("{at}/{i}");
                unknown_formats(child, &at, doc, known, seen, budget, ignored);
            }
        }
        _ => {}
    }
}

/// Adds an ignored construct once (several operations share component schemas).
pub(super) fn push_ignored(ignored: &mut Vec<Ignored>, pointer: String, reason: String) {
    if !ignored.iter().any(|i| i.pointer == pointer) {
        ignored.push(Ignored { pointer, reason });
    }
}

/// `format: byte`: base64 (RFC 4648 §4, padded or not).
fn is_base64(s: &str) -> bool {
    let b = s.as_bytes();
    let body = b.strip_suffix(b"==").or(b.strip_suffix(b"=")).unwrap_or(b);
    body.iter()
        .all(|c| c.is_ascii_alphanumeric() || *c == b'+' || *c == b'/')
        && (b.len().is_multiple_of(4) || !b.contains(&b'='))
        && body.len() % 4 != 1
}

/// `format: uuid` (RFC 9562 text form, any version, either case).
fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

// ---------------------------------------------------------------------------------------------
// Types, for coercing parameter strings.

/// JSON types as bits (a schema's possible types; 0 = unconstrained).
pub(super) mod ty {
    pub const STRING: u8 = 1;
    pub const INTEGER: u8 = 2;
    pub const NUMBER: u8 = 4;
    pub const BOOLEAN: u8 = 8;
    pub const NULL: u8 = 16;
    pub const ARRAY: u8 = 32;
    pub const OBJECT: u8 = 64;
}

fn type_bit(name: &str) -> u8 {
    match name {
        "string" => ty::STRING,
        "integer" => ty::INTEGER,
        "number" => ty::NUMBER,
        "boolean" => ty::BOOLEAN,
        "null" => ty::NULL,
        "array" => ty::ARRAY,
        "object" => ty::OBJECT,
        _ => 0,
    }
}

/// Follows `$ref`s from `v` (a bounded number of hops).
pub(super) fn deref<'a>(doc: &'a Value, mut v: &'a Value) -> &'a Value {
    for _ in 0..16 {
        match v.get("$ref").and_then(Value::as_str) {
            Some(r) => match resolve_pointer(doc, r) {
                Some(t) => v = t,
                None => return v,
            },
            None => return v,
        }
    }
    v
}

/// The types `schema` admits, as far as a parameter's coercion cares: its `type`, else the
/// union of its `anyOf`/`oneOf` branches, else its `allOf` branches' (0 = any).
pub(super) fn types_of(doc: &Value, schema: &Value, depth: usize) -> u8 {
    let s = deref(doc, schema);
    if depth > 8 {
        return 0;
    }
    match s.get("type") {
        Some(Value::String(t)) => return type_bit(t),
        Some(Value::Array(ts)) => {
            return ts
                .iter()
                .filter_map(Value::as_str)
                .fold(0, |a, t| a | type_bit(t))
        }
        _ => {}
    }
    let mut bits = 0;
    for k in ["anyOf", "oneOf"] {
        if let Some(Value::Array(branches)) = s.get(k) {
            for b in branches {
                let t = types_of(doc, b, depth + 1);
                if t == 0 {
                    return 0; // one branch takes anything
                }
                bits |= t;
            }
        }
    }
    if bits == 0 {
        if let Some(Value::Array(branches)) = s.get("allOf") {
            for b in branches {
                bits |= types_of(doc, b, depth + 1);
            }
        }
    }
    bits
}

/// The schema under `key` of `schema` (following `$ref`s and `allOf` branches), if any.
pub(super) fn sub<'a>(doc: &'a Value, schema: &'a Value, key: &str) -> Option<&'a Value> {
    let s = deref(doc, schema);
    if let Some(v) = s.get(key) {
        return Some(v);
    }
    s.get("allOf")?
        .as_array()?
        .iter()
        .find_map(|b| deref(doc, b).get(key))
}

/// The declared properties of an object schema (own and `allOf` branches'), with their types.
pub(super) fn properties(doc: &Value, schema: &Value) -> Vec<(String, u8)> {
    let s = deref(doc, schema);
    let mut out = Vec::new();
    let mut add = |props: Option<&Value>| {
        if let Some(Value::Object(p)) = props {
            for (name, ps) in p {
                if !out.iter().any(|(n, _): &(String, u8)| n == name) {
                    out.push((name.clone(), types_of(doc, ps, 0)));
                }
            }
        }
    };
    add(s.get("properties"));
    if let Some(Value::Array(branches)) = s.get("allOf") {
        for b in branches {
            add(deref(doc, b).get("properties"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nullable_becomes_a_type_array_or_an_any_of() {
        let mut v = json!({"type": "string", "nullable": true, "enum": ["a"]});
        rewrite(&mut v, Dialect::V30, &Value::Null, 0);
        assert_eq!(v, json!({"type": ["string", "null"], "enum": ["a"]}));
        let mut v = json!({"nullable": true, "allOf": [{"$ref": "#/x"}]});
        rewrite(&mut v, Dialect::V30, &Value::Null, 0);
        assert_eq!(
            v,
            json!({"anyOf": [{"type": "null"}, {"allOf": [{"$ref": "#/x"}]}]})
        );
        let mut v = json!({"type": "string", "nullable": true});
        rewrite(&mut v, Dialect::V31, &Value::Null, 0);
        assert_eq!(v["type"], "string", "3.1 has no nullable");
        let mut v = json!({"enum": [{"nullable": true, "type": "x"}]});
        rewrite(&mut v, Dialect::V30, &Value::Null, 0);
        assert_eq!(v["enum"][0]["nullable"], true, "data is not rewritten");
    }

    #[test]
    fn read_only_properties_are_not_required_and_int32_has_a_range() {
        let orig = json!({"c": {"Id": {"type": "integer", "readOnly": true}}});
        let mut v = json!({"required": ["id", "name", "ref"], "properties": {
            "id": {"type": "integer", "readOnly": true},
            "name": {"type": "integer", "format": "int32"},
            "ref": {"$ref": "#/c/Id"}}});
        rewrite(&mut v, Dialect::V31, &orig, 0);
        assert_eq!(v["required"], json!(["name"]));
        assert_eq!(v["properties"]["name"]["maximum"], i32::MAX);
    }

    #[test]
    fn base64_and_uuid() {
        assert!(is_base64("aGVsbG8="));
        assert!(is_base64("aGVsbG8"));
        assert!(!is_base64("aGVsb$8="));
        assert!(!is_base64("a"));
        assert!(is_uuid("123e4567-e89b-12d3-a456-426614174000"));
        assert!(!is_uuid("123e4567e89b12d3a456426614174000"));
    }

    #[test]
    fn types_follow_refs_and_unions() {
        let doc = json!({"c": {"I": {"type": "integer"}, "S": {"type": "string"}}});
        let s = json!({"oneOf": [{"$ref": "#/c/I"}, {"$ref": "#/c/S"}]});
        assert_eq!(types_of(&doc, &s, 0), ty::INTEGER | ty::STRING);
        assert_eq!(
            types_of(&doc, &json!({"oneOf": [{"$ref": "#/c/I"}, {}]}), 0),
            0
        );
        assert_eq!(types_of(&doc, &json!({"type": ["integer", "null"]}), 0), 18);
    }
}

//! Parameters: where each one is in the request, how its style spells it, and the string(s)
//! coerced to the JSON value its schema expects, then validated.
//!
//! - Path (`simple`, `label`): the route's captures in template order; percent-decoded.
//! - Query (`form` with or without `explode`, `spaceDelimited`, `pipeDelimited`,
//!   `deepObject`): names and values percent-decoded with `+` read as a space (the form
//!   encoding browsers and HTTP clients use for query strings); an unknown parameter is
//!   allowed (OpenAPI does not forbid them). Only an exploded array may appear more than
//!   once: any other parameter given twice (`role=user&role=admin`), a deepObject property
//!   given twice (`f[a]=1&f[a]=2`) or an exploded object's property given twice is a
//!   `repeated` violation, since backends differ on which occurrence they read (first, last,
//!   all) and the one validated must be the only one.
//! - Header (`simple`): names case-insensitive with `_` and `-` alike (CGI-style backends read
//!   `X_Rate` as `X-Rate`), not decoded; an array's repeated lines are joined with `,` (an
//!   HTTP list), any other parameter on two lines is `repeated`.
//! - Cookie (`form`): percent-decoded (`+` literal); a name sent twice (in one `Cookie` line
//!   or across lines) is a `repeated` violation, counting every spelling some cookie parser
//!   reads as the name (`http1::cookie::lenient_values`: an encoded name, a `, name=` piece).
//!   An object value naming a property twice (`k,1,k,2`) is one too, wherever it is.
//!
//! Coercion: a string becomes the schema's type: number (JSON number syntax only, so `0x10`,
//! ` 1` or `1e400` are not numbers), integer (digits only: `1e2` and `100.0` are refused, since
//! backends read them as other values), boolean (`true`/`false`), `null` (`null`, when
//! the schema allows null), else a string. A union (`oneOf`, a type array) tries number,
//! boolean, null, then string. A value that coerces to none of its types is a `type`
//! violation. Arrays split per style and coerce each item with `items`' type; objects
//! (`deepObject`, exploded `form`, `k,v` lists) coerce each property with its own type.
//! A value that is not UTF-8 after decoding is an `encoding` violation.

use std::borrow::Cow;

use serde_json::{Map, Number, Value};

use super::problem::Violation;
use super::schema::{self, ty};
use crate::http1::pct::{decoded_eq, Decoding};
use crate::http1::{query, RequestHead};
use crate::openapi::model::{pointer_token, Param, ParamIn};

/// How a parameter's value is spelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Style {
    Simple,
    Label,
    Form,
    SpaceDelimited,
    PipeDelimited,
    DeepObject,
}

/// The shape of the value a parameter's schema expects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Shape {
    /// A primitive of these types (`schema::ty` bits, 0 = any: kept a string).
    Scalar(u8),
    /// An array whose items have these types.
    Array(u8),
    /// An object: declared properties with their types, and the type of any other property.
    Object(Vec<(String, u8)>, u8),
}

/// One compiled parameter.
#[derive(Debug)]
pub(super) struct ParamCheck {
    pub name: String,
    pub location: ParamIn,
    pub required: bool,
    pub style: Style,
    pub explode: bool,
    pub allow_empty: bool,
    pub shape: Shape,
    pub schema: Option<jsonschema::Validator>,
    /// `/query/limit`: the violation pointer prefix.
    pub label: String,
    /// Path parameters: the capture index (order of `{name}` in the path template).
    pub capture: usize,
}

impl ParamCheck {
    /// Builds the check for `p` (schema compiled by the caller). `None` for a style the gateway
    /// cannot see (`matrix`: `;` in a path is refused before routing), with the reason.
    pub fn new(
        p: &Param,
        op_path: &str,
        doc: &Value,
        rewritten: Option<&Value>,
        schema: Option<jsonschema::Validator>,
    ) -> Result<ParamCheck, String> {
        let style = match p.style.as_str() {
            "simple" => Style::Simple,
            "label" => Style::Label,
            "form" => Style::Form,
            "spaceDelimited" => Style::SpaceDelimited,
            "pipeDelimited" => Style::PipeDelimited,
            "deepObject" => Style::DeepObject,
            other => return Err(format!("style `{other}` is not validated")),
        };
        let shape = match rewritten {
            None => Shape::Scalar(0),
            Some(s) => shape_of(doc, s),
        };
        let capture = match p.location {
            ParamIn::Path => template_names(op_path)
                .position(|n| n == p.name)
                .unwrap_or(usize::MAX),
            _ => 0,
        };
        Ok(ParamCheck {
            name: p.name.clone(),
            location: p.location,
            required: p.required,
            style,
            explode: p.explode,
            allow_empty: p.allow_empty,
            shape,
            schema,
            label: format!("/{}/{}", p.location.as_str(), pointer_token(&p.name)),
            capture,
        })
    }

    /// Checks the parameter in one request, appending violations to `out`.
    pub fn check(&self, req: &Request<'_>, out: &mut Vec<Violation>) {
        let value = match self.location {
            ParamIn::Path => self.path_value(req),
            ParamIn::Query => self.query_value(req.head),
            ParamIn::Header => self.header_value(req.head),
            ParamIn::Cookie => self.cookie_value(req.head),
        };
        let value = match value {
            Ok(Some(v)) => v,
            Ok(None) => {
                if self.required {
                    out.push(Violation::new(
                        self.label.clone(),
                        "required",
                        format!(
                            "the required {} parameter is missing",
                            self.location.as_str()
                        ),
                    ));
                }
                return;
            }
            Err(v) => {
                out.push(v);
                return;
            }
        };
        if let Some(s) = &self.schema {
            // `is_valid` first: it stops at the first failure and builds no error paths, so a
            // valid value (the common case) never pays for error reporting.
            if s.is_valid(&value) {
                return;
            }
            for e in s.iter_errors(&value).take(super::problem::MAX_FOUND) {
                out.push(Violation::new(
                    format!("{}{}", self.label, e.instance_path().as_str()),
                    e.kind().keyword(),
                    e.masked().to_string(),
                ));
            }
        }
    }

    fn path_value(&self, req: &Request<'_>) -> Result<Option<Value>, Violation> {
        let Some(raw) = req
            .captures
            .get(self.capture)
            .and_then(|(_, r)| req.path.get(r.clone()))
        else {
            return Ok(None);
        };
        let raw = match self.style {
            Style::Label => match raw.strip_prefix(b".") {
                Some(r) => r,
                None => return Err(self.bad("", "a label-style value starts with `.`")),
            },
            _ => raw,
        };
        let sep = if self.style == Style::Label && self.explode {
            Sep::Byte(b'.')
        } else {
            Sep::Byte(b',')
        };
        self.parse_delimited(raw, sep, false).map(Some)
    }

    fn query_value(&self, head: &RequestHead) -> Result<Option<Value>, Violation> {
        let Some(q) = head.query() else {
            return Ok(None);
        };
        if self.style == Style::DeepObject {
            return self.deep_object(q);
        }
        if let (Shape::Object(props, _), true, Style::Form) =
            (&self.shape, self.explode, self.style)
        {
            // Exploded form object: each property is its own query parameter.
            let mut map = Map::new();
            for (prop, types) in props {
                let mut values = named(q, prop.as_bytes());
                if let Some(v) = values.next() {
                    if values.next().is_some() {
                        return Err(self.repeated(&pointer_token(prop)));
                    }
                    let s = self.decode(v, true, prop)?;
                    map.insert(prop.clone(), self.coerce(&s, *types, prop)?);
                }
            }
            return Ok((!map.is_empty()).then_some(Value::Object(map)));
        }
        let mut values = named(q, self.name.as_bytes());
        let Some(first) = values.next() else {
            return Ok(None);
        };
        let exploded_array = matches!(self.shape, Shape::Array(_)) && self.explode;
        if !exploded_array && values.next().is_some() {
            return Err(self.repeated(""));
        }
        if first.is_empty() && self.allow_empty {
            return Ok(None);
        }
        match (&self.shape, self.style, self.explode) {
            (Shape::Array(items), _, true) => {
                let mut arr = Vec::new();
                for (i, v) in std::iter::once(first).chain(values).enumerate() {
                    let at = i.to_string();
                    let s = self.decode(v, true, &at)?;
                    arr.push(self.coerce(&s, *items, &at)?);
                }
                Ok(Some(Value::Array(arr)))
            }
            (_, Style::SpaceDelimited, false) => {
                self.parse_delimited(first, Sep::Space, true).map(Some)
            }
            (_, Style::PipeDelimited, false) => {
                self.parse_delimited(first, Sep::Pipe, true).map(Some)
            }
            _ => self.parse_delimited(first, Sep::Byte(b','), true).map(Some),
        }
    }

    /// `name[prop]=v&name[other]=w` → `{"prop": v, "other": w}`.
    fn deep_object(&self, q: &[u8]) -> Result<Option<Value>, Violation> {
        let mut map = Map::new();
        for (n, v) in query::pairs(q) {
            let Ok(n) = self.decode(n, true, "") else {
                continue;
            };
            let Some(prop) = n
                .strip_prefix(self.name.as_str())
                .and_then(|r| r.strip_prefix('['))
                .and_then(|r| r.strip_suffix(']'))
            else {
                continue;
            };
            let at = pointer_token(prop);
            if map.contains_key(prop) {
                return Err(self.repeated(&at));
            }
            let s = self.decode(v, true, &at)?;
            let types = self.prop_types(prop);
            map.insert(prop.to_string(), self.coerce(&s, types, &at)?);
        }
        Ok((!map.is_empty()).then_some(Value::Object(map)))
    }

    fn header_value(&self, head: &RequestHead) -> Result<Option<Value>, Violation> {
        let mut joined: Option<Vec<u8>> = None;
        // An array is an HTTP list: its lines join with `,` (RFC 9110 5.3). Any other value
        // on two lines is ambiguous: validated as `a,b`, a backend may read `a` or `b`.
        let list = matches!(self.shape, Shape::Array(_));
        for (n, v) in head.headers() {
            // Every spelling CGI, WSGI, Rack and PHP read as the name (`X_Rate` is `X-Rate`)
            // is a copy of the parameter: validated, and counted for `repeated`.
            if crate::http1::same_field_loosely(n, self.name.as_bytes()) {
                if joined.is_some() && !list {
                    return Err(self.repeated(""));
                }
                let j = joined.get_or_insert_with(Vec::new);
                if !j.is_empty() {
                    j.push(b',');
                }
                j.extend_from_slice(v.trim_ascii());
            }
        }
        let Some(raw) = joined else {
            return Ok(None);
        };
        if raw.is_empty() && self.allow_empty {
            return Ok(None);
        }
        self.parse_delimited(&raw, Sep::Byte(b','), false).map(Some)
    }

    fn cookie_value(&self, head: &RequestHead) -> Result<Option<Value>, Violation> {
        let mut found = head
            .headers()
            .filter(|(n, _)| n.eq_ignore_ascii_case(b"cookie"))
            .flat_map(|(_, v)| crate::http1::cookie::lenient_values(v, self.name.as_bytes()));
        let Some(raw) = found.next() else {
            return Ok(None);
        };
        if found.next().is_some() {
            return Err(self.repeated(""));
        }
        self.parse_delimited(raw, Sep::Byte(b','), false).map(Some)
    }

    /// A value spelled as `a,b,c` (arrays), `k,v,k2,v2` or, exploded, `k=v,k2=v2` (objects),
    /// or a single primitive; items decoded after splitting (so an encoded `%2C` stays inside
    /// its item). `form`: `+` is a space.
    fn parse_delimited(&self, raw: &[u8], sep: Sep, form: bool) -> Result<Value, Violation> {
        match &self.shape {
            Shape::Scalar(types) => {
                let s = self.decode(raw, form, "")?;
                self.coerce(&s, *types, "")
            }
            Shape::Array(items) => {
                if raw.is_empty() {
                    return Ok(Value::Array(Vec::new()));
                }
                let mut arr = Vec::new();
                for (i, part) in split(raw, sep).into_iter().enumerate() {
                    let at = i.to_string();
                    let s = self.decode(part, form, &at)?;
                    arr.push(self.coerce(&s, *items, &at)?);
                }
                Ok(Value::Array(arr))
            }
            Shape::Object(..) => {
                let mut map = Map::new();
                if raw.is_empty() {
                    return Ok(Value::Object(map));
                }
                let parts = split(raw, sep);
                let pairs: Vec<(&[u8], &[u8])> = if self.explode {
                    parts.iter().map(|p| query::split_pair(p)).collect()
                } else {
                    if !parts.len().is_multiple_of(2) {
                        return Err(self.bad("", "an object is a list of name,value pairs"));
                    }
                    parts.chunks(2).map(|c| (c[0], c[1])).collect()
                };
                for (k, v) in pairs {
                    let k = self.decode(k, form, "")?;
                    let at = pointer_token(&k);
                    let s = self.decode(v, form, &at)?;
                    let types = self.prop_types(&k);
                    let value = self.coerce(&s, types, &at)?;
                    if map.contains_key(k.as_ref()) {
                        return Err(self.repeated(&at));
                    }
                    map.insert(k.into_owned(), value);
                }
                Ok(Value::Object(map))
            }
        }
    }

    fn prop_types(&self, prop: &str) -> u8 {
        match &self.shape {
            Shape::Object(props, extra) => props
                .iter()
                .find(|(n, _)| n == prop)
                .map_or(*extra, |(_, t)| *t),
            _ => 0,
        }
    }

    /// Percent-decodes `raw` (headers are not encoded: taken as they are, trimmed).
    fn decode<'r>(&self, raw: &'r [u8], form: bool, at: &str) -> Result<Cow<'r, str>, Violation> {
        let decoded = if self.location == ParamIn::Header {
            // HTTP lists allow whitespace around their commas.
            Cow::Borrowed(raw.trim_ascii())
        } else {
            percent_decode(raw, form)
        };
        match decoded {
            Cow::Borrowed(b) => std::str::from_utf8(b).map(Cow::Borrowed),
            Cow::Owned(v) => String::from_utf8(v)
                .map(Cow::Owned)
                .map_err(|e| e.utf8_error()),
        }
        .map_err(|_| self.violation(at, "encoding", "the value is not UTF-8 after decoding"))
    }

    /// The string as the JSON value the types ask for.
    fn coerce(&self, s: &str, types: u8, at: &str) -> Result<Value, Violation> {
        coerce(s, types).ok_or_else(|| {
            self.violation(
                at,
                "type",
                format!("the value is not {}", type_names(types)),
            )
        })
    }

    /// Given more than once where one occurrence is expected.
    fn repeated(&self, at: &str) -> Violation {
        let what = if at.is_empty() {
            "the parameter"
        } else {
            "the property"
        };
        self.violation(
            at,
            "repeated",
            format!("{what} is given more than once; send it once"),
        )
    }

    fn bad(&self, at: &str, message: &str) -> Violation {
        self.violation(at, "style", message)
    }

    fn violation(&self, at: &str, keyword: &str, message: impl Into<String>) -> Violation {
        let pointer = if at.is_empty() {
            self.label.clone()
        } else {
            format!("{}/{at}", self.label)
        };
        Violation::new(pointer, keyword, message)
    }
}

/// What separates the items of a delimited value (in its raw, still encoded form).
#[derive(Clone, Copy, Debug)]
pub(super) enum Sep {
    Byte(u8),
    /// `spaceDelimited`: a space, `+` or `%20`.
    Space,
    /// `pipeDelimited`: `|` or `%7C`.
    Pipe,
}

/// Splits a raw value at its separators (before percent-decoding, so an encoded separator
/// of another kind stays inside its item).
pub(super) fn split(raw: &[u8], sep: Sep) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let (mut start, mut i) = (0, 0);
    while i < raw.len() {
        let width = match (sep, raw[i]) {
            (Sep::Byte(s), b) if b == s => 1,
            (Sep::Space, b' ' | b'+') | (Sep::Pipe, b'|') => 1,
            (Sep::Space, b'%') if raw[i..].starts_with(b"%20") => 3,
            (Sep::Pipe, b'%')
                if raw
                    .get(i..i + 3)
                    .is_some_and(|e| e.eq_ignore_ascii_case(b"%7c")) =>
            {
                3
            }
            _ => 0,
        };
        if width > 0 {
            out.push(&raw[start..i]);
            i += width;
            start = i;
        } else {
            i += 1;
        }
    }
    out.push(&raw[start..]);
    out
}

/// The raw values of the query parameters whose decoded name is `name`, in order.
fn named<'q>(q: &'q [u8], name: &'q [u8]) -> impl Iterator<Item = &'q [u8]> + 'q {
    query::pairs(q)
        .filter(move |(n, _)| decoded_eq(n, name, FORM))
        .map(|(_, v)| v)
}

/// The query's reading for names and values: percent-decoding, `+` is a space.
const FORM: Decoding = Decoding {
    plus_is_space: true,
    ignore_case: false,
};

/// What a parameter check reads from the request.
pub(super) struct Request<'a> {
    pub path: &'a [u8],
    pub captures: &'a [(u16, std::ops::Range<usize>)],
    pub head: &'a RequestHead,
}

/// The `{name}`s of a path template, in order.
pub(super) fn template_names(path: &str) -> impl Iterator<Item = &str> {
    path.split('{')
        .skip(1)
        .filter_map(|s| s.split_once('}').map(|(n, _)| n))
}

/// The shape of the value `schema` expects (following `$ref`s).
fn shape_of(doc: &Value, s: &Value) -> Shape {
    let types = schema::types_of(doc, s, 0);
    if types & ty::ARRAY != 0 {
        let items = schema::sub(doc, s, "items").map_or(0, |i| schema::types_of(doc, i, 0));
        Shape::Array(items)
    } else if types & ty::OBJECT != 0 {
        let extra = match schema::sub(doc, s, "additionalProperties") {
            Some(Value::Object(_)) => schema::sub(doc, s, "additionalProperties")
                .map_or(0, |a| schema::types_of(doc, a, 0)),
            _ => 0,
        };
        Shape::Object(schema::properties(doc, s), extra)
    } else {
        Shape::Scalar(types)
    }
}

/// Percent-decodes `raw` (`%XX`, either case; a malformed escape stays literal), `+` as a
/// space when `plus`. Borrowed when nothing changes.
pub(super) fn percent_decode(raw: &[u8], plus: bool) -> Cow<'_, [u8]> {
    if !raw.iter().any(|&b| b == b'%' || (plus && b == b'+')) {
        return Cow::Borrowed(raw);
    }
    let hex = |b: Option<&u8>| b.and_then(|&b| (b as char).to_digit(16));
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while let Some(&b) = raw.get(i) {
        match b {
            b'%' => match (hex(raw.get(i + 1)), hex(raw.get(i + 2))) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b),
            },
            b'+' if plus => out.push(b' '),
            _ => out.push(b),
        }
        i += 1;
    }
    Cow::Owned(out)
}

/// `s` as a value of one of `types` (see the module header); `None` when it is none of them.
pub(super) fn coerce(s: &str, types: u8) -> Option<Value> {
    if types == 0 {
        return Some(Value::String(s.to_string()));
    }
    let numeric = match types & (ty::INTEGER | ty::NUMBER) {
        0 => false,
        ty::INTEGER => integer_spelling(s) && looks_numeric(s),
        _ => looks_numeric(s),
    };
    if numeric {
        if let Ok(n) = serde_json::from_str::<Number>(s) {
            return Some(Value::Number(n));
        }
    }
    if types & ty::BOOLEAN != 0 {
        match s {
            "true" => return Some(Value::Bool(true)),
            "false" => return Some(Value::Bool(false)),
            _ => {}
        }
    }
    if types & ty::NULL != 0 && s == "null" {
        return Some(Value::Null);
    }
    if types & ty::STRING != 0 {
        return Some(Value::String(s.to_string()));
    }
    None
}

/// An integer spelled as integers are: `-?[0-9]+`. `1e2`, `100.0` and `1000e-1` are integers
/// to JSON Schema, but backends read them differently (`parseInt("1000e-1")` is 1000), so a
/// parameter typed `integer` only takes digits: the value validated is the value served.
fn integer_spelling(s: &str) -> bool {
    let digits = s.strip_prefix('-').unwrap_or(s);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

/// JSON number syntax's alphabet, starting with `-` or a digit (no whitespace, no `+5`).
fn looks_numeric(s: &str) -> bool {
    matches!(s.as_bytes().first(), Some(b'-' | b'0'..=b'9'))
        && s.bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.' | b'e' | b'E'))
        && s.len() <= 64
}

fn type_names(types: u8) -> String {
    let names = [
        (ty::INTEGER, "an integer"),
        (ty::NUMBER, "a number"),
        (ty::BOOLEAN, "a boolean"),
        (ty::NULL, "null"),
        (ty::STRING, "a string"),
        (ty::ARRAY, "an array"),
        (ty::OBJECT, "an object"),
    ];
    let mut out: Vec<&str> = names
        .iter()
        .filter(|(b, _)| types & b != 0)
        .map(|(_, n)| *n)
        .collect();
    if out.is_empty() {
        out.push("a value");
    }
    out.join(" or ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coercion_follows_the_types() {
        assert_eq!(coerce("5", ty::INTEGER), Some(Value::from(5)));
        assert_eq!(coerce("-5", ty::INTEGER), Some(Value::from(-5)));
        for other in ["1e2", "100.0", "1000e-1", "-", "+5", "05"] {
            assert_eq!(coerce(other, ty::INTEGER), None, "{other}");
        }
        assert_eq!(coerce("1e2", ty::NUMBER), Some(Value::from(100.0)));
        assert_eq!(
            coerce("1e2", ty::INTEGER | ty::STRING),
            Some(Value::from("1e2"))
        );
        let same = crate::http1::same_field_loosely;
        assert!(same(b"X_Rate", b"x-rate") && !same(b"X_Rates", b"x-rate"));
        assert_eq!(coerce("-1.5", ty::NUMBER), Some(Value::from(-1.5)));
        assert_eq!(coerce("abc", ty::INTEGER), None);
        assert_eq!(coerce("0x10", ty::INTEGER), None);
        assert_eq!(coerce(" 1", ty::INTEGER), None);
        assert_eq!(coerce("+1", ty::INTEGER), None);
        assert_eq!(coerce("1e400", ty::NUMBER), None);
        let big = "1".repeat(30);
        assert!(
            coerce(&big, ty::INTEGER).is_some(),
            "a big integer is a (float) number"
        );
        assert_eq!(
            coerce(&"9".repeat(100), ty::INTEGER),
            None,
            "too long to be a number"
        );
        assert_eq!(coerce("true", ty::BOOLEAN), Some(Value::Bool(true)));
        assert_eq!(coerce("True", ty::BOOLEAN), None);
        assert_eq!(coerce("5", ty::STRING), Some(Value::from("5")));
        assert_eq!(coerce("5", ty::STRING | ty::INTEGER), Some(Value::from(5)));
        assert_eq!(
            coerce("x", ty::STRING | ty::INTEGER),
            Some(Value::from("x"))
        );
        assert_eq!(coerce("null", ty::NULL | ty::INTEGER), Some(Value::Null));
        assert_eq!(coerce("anything", 0), Some(Value::from("anything")));
    }

    #[test]
    fn percent_decoding_keeps_garbage_literal() {
        assert_eq!(&*percent_decode(b"a%20b+c", true), b"a b c");
        assert_eq!(&*percent_decode(b"a+c", false), b"a+c");
        assert_eq!(&*percent_decode(b"%zz%4", false), b"%zz%4");
        assert_eq!(&*percent_decode(b"%C3%A9", false), "é".as_bytes());
        assert_eq!(&*percent_decode(b"%ff", false), b"\xff");
    }

    #[test]
    fn template_names_in_order() {
        let n: Vec<&str> = template_names("/a/{x}/b/{y}.{z}").collect();
        assert_eq!(n, ["x", "y", "z"]);
    }
}

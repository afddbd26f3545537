//! simd-json's borrowed values as an instance representation for the schema crate, so a JSON
//! body is validated where simd-json parsed it: strings without escapes borrow the request's
//! bytes, and no `serde_json::Value` tree is built on the request path.
//!
//! The contract (`jsonschema::json`): accessors are total over JSON; numbers answer as
//! u64/i64/f64 the way `serde_json` would hold them; a node's identity is its address (stable
//! while the parsed value lives). `to_value` (a `serde_json::Value` copy) runs on cold paths
//! only: `enum`/`const` comparisons of containers, `uniqueItems`, error instances.

use std::borrow::Cow;

use jsonschema::json::{Array, Json, JsonNumber, Node, NodeIdentity, Object};
use jsonschema::JsonType;
use serde_json::Value;
use simd_json::{BorrowedValue, StaticNode};

/// The representation marker.
pub struct SimdJson;

impl Json for SimdJson {
    type Node<'a> = &'a BorrowedValue<'a>;
    type PreparedKey = String;
    type StringBuffer = BorrowedValue<'static>;

    fn prepare_key(key: &str) -> String {
        key.to_owned()
    }

    fn with_string_node<T>(
        buffer: &mut BorrowedValue<'static>,
        string: &str,
        f: impl FnOnce(<Self as Json>::Node<'_>) -> T,
    ) -> T {
        *buffer = BorrowedValue::String(Cow::Owned(string.to_owned()));
        f(buffer)
    }
}

/// A number as simd-json holds it.
pub struct SimdNumber(StaticNode);

impl JsonNumber for SimdNumber {
    fn as_u64(&self) -> Option<u64> {
        match self.0 {
            StaticNode::U64(u) => Some(u),
            StaticNode::I64(i) => u64::try_from(i).ok(),
            _ => None,
        }
    }
    fn as_i64(&self) -> Option<i64> {
        match self.0 {
            StaticNode::I64(i) => Some(i),
            StaticNode::U64(u) => i64::try_from(u).ok(),
            _ => None,
        }
    }
    fn as_f64(&self) -> Option<f64> {
        match self.0 {
            StaticNode::I64(i) => Some(i as f64),
            StaticNode::U64(u) => Some(u as f64),
            StaticNode::F64(f) => Some(f),
            _ => None,
        }
    }
    fn as_str(&self) -> Cow<'_, str> {
        Cow::Owned(self.to_number().to_string())
    }
    fn to_number(&self) -> Cow<'_, serde_json::Number> {
        Cow::Owned(match self.0 {
            StaticNode::I64(i) => i.into(),
            StaticNode::U64(u) => u.into(),
            // The parser refuses non-finite numbers (`finite`), so this is total in practice.
            StaticNode::F64(f) => serde_json::Number::from_f64(f).unwrap_or_else(|| 0.into()),
            _ => 0.into(),
        })
    }
}

impl<'a> Node<'a, SimdJson> for &'a BorrowedValue<'a> {
    type Object = &'a simd_json::borrowed::Object<'a>;
    type Array = &'a [BorrowedValue<'a>];
    type Number = SimdNumber;

    fn as_object(&self) -> Option<Self::Object> {
        match self {
            BorrowedValue::Object(o) => Some(o),
            _ => None,
        }
    }
    fn as_array(&self) -> Option<Self::Array> {
        match self {
            BorrowedValue::Array(a) => Some(a.as_slice()),
            _ => None,
        }
    }
    fn as_string(&self) -> Option<Cow<'a, str>> {
        match self {
            BorrowedValue::String(s) => Some(Cow::Borrowed(s.as_ref())),
            _ => None,
        }
    }
    fn as_number(&self) -> Option<SimdNumber> {
        match self {
            BorrowedValue::Static(
                n @ (StaticNode::I64(_) | StaticNode::U64(_) | StaticNode::F64(_)),
            ) => Some(SimdNumber(*n)),
            _ => None,
        }
    }
    fn as_boolean(&self) -> Option<bool> {
        match self {
            BorrowedValue::Static(StaticNode::Bool(b)) => Some(*b),
            _ => None,
        }
    }
    fn is_null(&self) -> bool {
        matches!(self, BorrowedValue::Static(StaticNode::Null))
    }
    fn json_type(&self) -> JsonType {
        match self {
            BorrowedValue::Static(StaticNode::Null) => JsonType::Null,
            BorrowedValue::Static(StaticNode::Bool(_)) => JsonType::Boolean,
            BorrowedValue::Static(_) => JsonType::Number,
            BorrowedValue::String(_) => JsonType::String,
            BorrowedValue::Array(_) => JsonType::Array,
            BorrowedValue::Object(_) => JsonType::Object,
        }
    }
    fn equals_value(&self, expected: &Value) -> bool {
        // The common `enum` of strings without a copy.
        match (self, expected) {
            (BorrowedValue::String(s), Value::String(e)) => s.as_ref() == e.as_str(),
            (BorrowedValue::String(_), _) | (_, Value::String(_)) => false,
            _ => jsonschema::json::cmp::equal(&self.to_value(), expected),
        }
    }
    fn to_value(&self) -> Cow<'a, Value> {
        Cow::Owned(to_serde(self))
    }
    fn identity(&self) -> Option<NodeIdentity> {
        Some(NodeIdentity::new(
            std::ptr::from_ref::<BorrowedValue<'a>>(*self) as usize,
        ))
    }
}

/// A `serde_json::Value` copy (cold paths; depth bounded by the parser).
fn to_serde(v: &BorrowedValue<'_>) -> Value {
    match v {
        BorrowedValue::Static(StaticNode::Null) => Value::Null,
        BorrowedValue::Static(StaticNode::Bool(b)) => Value::Bool(*b),
        BorrowedValue::Static(n) => Value::Number(SimdNumber(*n).to_number().into_owned()),
        BorrowedValue::String(s) => Value::String(s.to_string()),
        BorrowedValue::Array(a) => Value::Array(a.iter().map(to_serde).collect()),
        BorrowedValue::Object(o) => Value::Object(
            o.iter()
                .map(|(k, v)| (k.to_string(), to_serde(v)))
                .collect(),
        ),
    }
}

impl<'a> Object<'a, SimdJson> for &'a simd_json::borrowed::Object<'a> {
    type Node = &'a BorrowedValue<'a>;
    type MemberName = &'a str;
    type MembersIter = Members<'a>;

    fn len(&self) -> usize {
        simd_json::borrowed::Object::len(self)
    }
    fn get(&self, key: &String) -> Option<&'a BorrowedValue<'a>> {
        simd_json::borrowed::Object::get(self, key.as_str())
    }
    fn members(&self) -> Members<'a> {
        Members(self.iter())
    }
}

/// An object's members in the parser's order.
pub struct Members<'a>(halfbrown::Iter<'a, Cow<'a, str>, BorrowedValue<'a>>);

impl<'a> Iterator for Members<'a> {
    type Item = (&'a str, &'a BorrowedValue<'a>);
    fn next(&mut self) -> Option<Self::Item> {
        self.0.next().map(|(k, v)| (k.as_ref(), v))
    }
}

impl<'a> Array<'a, SimdJson> for &'a [BorrowedValue<'a>] {
    type Node = &'a BorrowedValue<'a>;
    type ElementsIter = std::slice::Iter<'a, BorrowedValue<'a>>;

    fn len(&self) -> usize {
        <[BorrowedValue<'a>]>::len(self)
    }
    fn elements(&self) -> std::slice::Iter<'a, BorrowedValue<'a>> {
        self.iter()
    }
}

/// What the parse let through that JSON Schema cannot judge: a number past f64's range
/// (simd-json reads `1e999` as infinity) or an object naming a member twice (simd-json keeps
/// both in an object of up to 32 members, and a backend may read the other one than the
/// validator did; larger objects keep the last, as `serde_json` does). `None`: neither.
pub fn unjudgeable(v: &BorrowedValue<'_>) -> Option<&'static str> {
    match v {
        BorrowedValue::Static(StaticNode::F64(f)) if !f.is_finite() => {
            Some("the body has a number out of range")
        }
        BorrowedValue::Static(_) | BorrowedValue::String(_) => None,
        BorrowedValue::Array(a) => a.iter().find_map(unjudgeable),
        BorrowedValue::Object(o) => {
            // Pairwise, without allocating (this runs on every object of every body).
            let twice = o.len() <= 32
                && o.keys()
                    .enumerate()
                    .any(|(i, k)| o.keys().skip(i + 1).any(|other| other == k));
            if twice {
                return Some("the body names an object member twice");
            }
            o.values().find_map(unjudgeable)
        }
    }
}

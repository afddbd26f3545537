//! simd-json's tape as an instance representation for the schema crate, so a JSON body is
//! validated where simd-json parsed it: no value tree, no per-object map, nothing to drop.
//! Strings (unescaped in place) borrow the request's copied bytes.
//!
//! A tape is a flat array of nodes; an object or array node records how many nodes it spans,
//! so a child is found by skipping. An object's member lookup is a scan of its keys, which
//! beats a hash probe for the small objects request bodies are made of; objects wider than
//! [`WIDE`] members get a hash index when the document is prepared ([`Doc::prepare`]), so a
//! wide hostile object cannot turn each lookup into a scan of thousands of keys.
//!
//! The contract (`jsonschema::json`): accessors are total over JSON; numbers answer as
//! u64/i64/f64 the way `serde_json` would hold them; a node's identity is its address in the
//! tape (stable while the document lives). `to_value` (a `serde_json::Value` copy) runs on
//! cold paths only: `enum`/`const` comparisons of containers, `uniqueItems`, error instances.

use std::borrow::Cow;

use ahash::AHashMap;
use jsonschema::json::{Array, Json, JsonNumber, Node, NodeIdentity, Object};
use jsonschema::JsonType;
use serde_json::Value;
use simd_json::{Node as Item, StaticNode};

/// Objects with more members than this are looked up through a hash index.
pub const WIDE: usize = 16;

/// The representation marker.
pub struct SimdTape;

impl Json for SimdTape {
    type Node<'a> = TapeNode<'a>;
    type PreparedKey = Box<str>;
    type StringBuffer = ();

    /// A scan of a small object's keys is what a lookup costs here anyway.
    const KEYS_PER_LOOKUP: usize = WIDE;
    /// A tape is a tree.
    const ACYCLIC: bool = true;

    fn prepare_key(key: &str) -> Box<str> {
        key.into()
    }

    fn with_string_node<T>(_buffer: &mut (), string: &str, f: impl FnOnce(TapeNode<'_>) -> T) -> T {
        let nodes = [Item::String(string)];
        let doc = Doc {
            nodes: &nodes,
            wide: Vec::new(),
        };
        f(TapeNode { doc: &doc, at: 0 })
    }
}

/// A parsed document: the tape, and a member index for each wide object (by tape offset, in
/// tape order).
pub struct Doc<'a> {
    nodes: &'a [Item<'a>],
    wide: Vec<(usize, AHashMap<&'a str, usize>)>,
}

impl<'a> Doc<'a> {
    /// Indexes the tape's wide objects and refuses what JSON Schema cannot judge: a number
    /// past f64's range (simd-json reads `1e999` as infinity) or an object naming a member
    /// twice (the tape keeps both, and a backend may read the other one than the validator
    /// did). One pass over the tape.
    pub fn prepare(nodes: &'a [Item<'a>]) -> Result<Doc<'a>, &'static str> {
        let mut wide = Vec::new();
        for (at, node) in nodes.iter().enumerate() {
            match *node {
                Item::Static(StaticNode::F64(f)) if !f.is_finite() => {
                    return Err("the body has a number out of range");
                }
                Item::Object { len, .. } if len > WIDE => {
                    let mut index = AHashMap::with_capacity(len);
                    for (name, value) in Members::of(nodes, at) {
                        if index.insert(name, value).is_some() {
                            return Err(TWICE);
                        }
                    }
                    wide.push((at, index));
                }
                Item::Object { len, .. } if len > 1 => {
                    let mut names = Members::of(nodes, at).map(|(name, _)| name);
                    while let Some(name) = names.next() {
                        if names.clone().any(|other| other == name) {
                            return Err(TWICE);
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(Doc { nodes, wide })
    }

    /// The document's root.
    pub fn root(&'a self) -> TapeNode<'a> {
        TapeNode { doc: self, at: 0 }
    }
}

const TWICE: &str = "the body names an object member twice";

/// How many tape nodes the value at `node` spans (itself included).
fn extent(node: &Item<'_>) -> usize {
    match *node {
        Item::Object { count, .. } | Item::Array { count, .. } => count + 1,
        _ => 1,
    }
}

/// One value of a document.
#[derive(Clone, Copy)]
pub struct TapeNode<'a> {
    doc: &'a Doc<'a>,
    at: usize,
}

impl<'a> TapeNode<'a> {
    fn item(&self) -> Item<'a> {
        // `at` always names a node of the tape: the root, or an offset a container's own
        // counts led to (simd-json's tape is consistent by construction).
        self.doc
            .nodes
            .get(self.at)
            .copied()
            .unwrap_or(Item::Static(StaticNode::Null))
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
            // `Doc::prepare` refuses non-finite numbers, so this is total in practice.
            StaticNode::F64(f) => serde_json::Number::from_f64(f).unwrap_or_else(|| 0.into()),
            _ => 0.into(),
        })
    }
}

impl<'a> Node<'a, SimdTape> for TapeNode<'a> {
    type Object = TapeObject<'a>;
    type Array = TapeArray<'a>;
    type Number = SimdNumber;

    fn as_object(&self) -> Option<TapeObject<'a>> {
        match self.item() {
            Item::Object { len, .. } => Some(TapeObject {
                doc: self.doc,
                at: self.at,
                len,
            }),
            _ => None,
        }
    }
    fn as_array(&self) -> Option<TapeArray<'a>> {
        match self.item() {
            Item::Array { len, .. } => Some(TapeArray {
                doc: self.doc,
                at: self.at,
                len,
            }),
            _ => None,
        }
    }
    fn as_string(&self) -> Option<Cow<'a, str>> {
        match self.item() {
            Item::String(s) => Some(Cow::Borrowed(s)),
            _ => None,
        }
    }
    fn as_number(&self) -> Option<SimdNumber> {
        match self.item() {
            Item::Static(n @ (StaticNode::I64(_) | StaticNode::U64(_) | StaticNode::F64(_))) => {
                Some(SimdNumber(n))
            }
            _ => None,
        }
    }
    fn as_boolean(&self) -> Option<bool> {
        match self.item() {
            Item::Static(StaticNode::Bool(b)) => Some(b),
            _ => None,
        }
    }
    fn is_null(&self) -> bool {
        matches!(self.item(), Item::Static(StaticNode::Null))
    }
    fn json_type(&self) -> JsonType {
        match self.item() {
            Item::Static(StaticNode::Null) => JsonType::Null,
            Item::Static(StaticNode::Bool(_)) => JsonType::Boolean,
            Item::Static(_) => JsonType::Number,
            Item::String(_) => JsonType::String,
            Item::Array { .. } => JsonType::Array,
            Item::Object { .. } => JsonType::Object,
        }
    }
    fn equals_value(&self, expected: &Value) -> bool {
        // The common `enum` of strings without a copy.
        match (self.item(), expected) {
            (Item::String(s), Value::String(e)) => s == e.as_str(),
            (Item::String(_), _) | (_, Value::String(_)) => false,
            _ => jsonschema::json::cmp::equal(&self.to_value(), expected),
        }
    }
    fn to_value(&self) -> Cow<'a, Value> {
        Cow::Owned(to_serde(*self))
    }
    fn identity(&self) -> Option<NodeIdentity> {
        let base = self.doc.nodes.as_ptr() as usize;
        Some(NodeIdentity::new(
            base + self.at * std::mem::size_of::<Item<'_>>(),
        ))
    }
}

/// A `serde_json::Value` copy (cold paths; depth bounded by the parser).
fn to_serde(v: TapeNode<'_>) -> Value {
    if let Some(o) = v.as_object() {
        return Value::Object(
            o.members()
                .map(|(k, v)| (k.to_string(), to_serde(v)))
                .collect(),
        );
    }
    if let Some(a) = v.as_array() {
        return Value::Array(a.elements().map(to_serde).collect());
    }
    match v.item() {
        Item::String(s) => Value::String(s.to_string()),
        Item::Static(StaticNode::Bool(b)) => Value::Bool(b),
        Item::Static(StaticNode::Null) => Value::Null,
        Item::Static(n) => Value::Number(SimdNumber(n).to_number().into_owned()),
        Item::Object { .. } | Item::Array { .. } => Value::Null,
    }
}

/// An object of a document.
pub struct TapeObject<'a> {
    doc: &'a Doc<'a>,
    at: usize,
    len: usize,
}

impl<'a> Object<'a, SimdTape> for TapeObject<'a> {
    type Node = TapeNode<'a>;
    type MemberName = &'a str;
    type MembersIter = MemberNodes<'a>;

    fn len(&self) -> usize {
        self.len
    }
    fn get(&self, key: &Box<str>) -> Option<TapeNode<'a>> {
        let key: &str = key;
        let value = if self.len > WIDE {
            let wide = &self.doc.wide;
            let i = wide.binary_search_by_key(&self.at, |(at, _)| *at).ok()?;
            *wide[i].1.get(key)?
        } else {
            Members::of(self.doc.nodes, self.at)
                .find(|(name, _)| *name == key)?
                .1
        };
        Some(TapeNode {
            doc: self.doc,
            at: value,
        })
    }
    fn members(&self) -> MemberNodes<'a> {
        MemberNodes {
            doc: self.doc,
            members: Members::of(self.doc.nodes, self.at),
        }
    }
}

/// An object's members as the schema crate walks them: names and nodes.
pub struct MemberNodes<'a> {
    doc: &'a Doc<'a>,
    members: Members<'a>,
}

impl<'a> Iterator for MemberNodes<'a> {
    type Item = (&'a str, TapeNode<'a>);
    fn next(&mut self) -> Option<Self::Item> {
        let (name, at) = self.members.next()?;
        Some((name, TapeNode { doc: self.doc, at }))
    }
}

/// An object's members in the parser's order: each name and its value's tape offset.
#[derive(Clone)]
pub struct Members<'a> {
    nodes: &'a [Item<'a>],
    /// The next member's name.
    next: usize,
    left: usize,
}

impl<'a> Members<'a> {
    fn of(nodes: &'a [Item<'a>], object: usize) -> Members<'a> {
        let left = match nodes.get(object) {
            Some(Item::Object { len, .. }) => *len,
            _ => 0,
        };
        Members {
            nodes,
            next: object + 1,
            left,
        }
    }
}

impl<'a> Iterator for Members<'a> {
    type Item = (&'a str, usize);
    fn next(&mut self) -> Option<(&'a str, usize)> {
        if self.left == 0 {
            return None;
        }
        let Some(Item::String(name)) = self.nodes.get(self.next) else {
            self.left = 0;
            return None;
        };
        let value = self.next + 1;
        let Some(node) = self.nodes.get(value) else {
            self.left = 0;
            return None;
        };
        self.left -= 1;
        self.next = value + extent(node);
        Some((name, value))
    }
}

/// An array of a document.
pub struct TapeArray<'a> {
    doc: &'a Doc<'a>,
    at: usize,
    len: usize,
}

impl<'a> Array<'a, SimdTape> for TapeArray<'a> {
    type Node = TapeNode<'a>;
    type ElementsIter = Elements<'a>;

    fn len(&self) -> usize {
        self.len
    }
    fn elements(&self) -> Elements<'a> {
        Elements {
            doc: self.doc,
            next: self.at + 1,
            left: self.len,
        }
    }
}

/// An array's elements in order.
pub struct Elements<'a> {
    doc: &'a Doc<'a>,
    next: usize,
    left: usize,
}

impl<'a> Iterator for Elements<'a> {
    type Item = TapeNode<'a>;
    fn next(&mut self) -> Option<TapeNode<'a>> {
        if self.left == 0 {
            return None;
        }
        let node = self.doc.nodes.get(self.next)?;
        let at = self.next;
        self.left -= 1;
        self.next += extent(node);
        Some(TapeNode { doc: self.doc, at })
    }
}

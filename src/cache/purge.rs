//! What a purge names: one resource (host + path + query, every variant), every resource
//! under a prefix, every object carrying a surrogate key, or everything.

use super::object::Object;

/// A purge request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Purge {
    /// `host/path?query` exactly (every method, consumer and variant of it).
    Resource(Vec<u8>),
    /// Every resource starting with this (`host/path-prefix`).
    Prefix(Vec<u8>),
    /// Every object whose tag header listed this surrogate key.
    Tag(Vec<u8>),
    All,
}

impl Purge {
    /// Whether `obj` is one of those purged.
    pub fn matches(&self, obj: &Object) -> bool {
        match self {
            Purge::Resource(r) => &obj.resource[..] == r.as_slice(),
            Purge::Prefix(p) => obj.resource.starts_with(p),
            Purge::Tag(t) => obj.tags.iter().any(|x| &x[..] == t.as_slice()),
            Purge::All => true,
        }
    }
}

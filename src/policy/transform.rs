//! Header and query transforms with `${...}` variables, compiled once per config.
//!
//! Per direction the operations run in this order: **remove → rename → set → add**. `remove`
//! drops every header of a name; `rename` moves the remaining ones to a new name; `set`
//! replaces every header of its name that exists at that point (including renamed ones) with
//! one value; `add` appends a value. Maps (`set`, `add`, `rename`) apply in name order.
//!
//! Values are templates: `${consumer}`, `${request_id}`, `${client_ip}`, `${route}`,
//! `${claim.NAME}` (JWT claim) and `${header.NAME}` (request header); any other `${...}` is a
//! compile error naming the field. A variable without a value renders as the empty string.
//! After rendering a value is trimmed of surrounding blanks, and
//! - if it is empty, the header is skipped (`set` still removes the existing headers, so a
//!   client cannot supply a value the gateway meant to set, e.g. `x-consumer`);
//! - otherwise it must pass `http1::is_safe_header_value` (no control character but HTAB, no
//!   C1 or bidi control, at most 4096 bytes). A value that fails makes the edit return
//!   `UnsafeValue`, saying whose it was: a credential's claim, name or metadata (the pipeline
//!   answers 401), or a client header the template copies (400). Nothing either carries may
//!   inject a header line.
//! - A `${header.NAME}` whose header the client sent twice is ambiguous (which copy the
//!   template took, and which one the upstream reads, could differ): `UnsafeValue::ClientHeader`
//!   too, so the request gets 400, as for a duplicate `Authorization`.
//!
//! Names are lowercased tokens. Names the gateway owns (hop-by-hop headers, `content-length`,
//! `host`) cannot be transformed, since changing them would break message framing; nor can
//! `x-forwarded-client-cert`, which only ever describes the verified client certificate.
//!
//! Query: read by `http1::query`'s rule. `remove` drops every parameter a scrub of the name
//! covers there (percent-decoded name, `+` read either literally or as a space); `add`
//! *replaces* any parameter of the same name (a client cannot pre-empt a gateway-supplied
//! value) and appends the percent-encoded pair. An added value whose template has variables and
//! renders empty is skipped; a literal `""` adds `name=`.
//!
//! Nothing here allocates when a direction has no operations, and nothing panics on input.

use std::collections::BTreeMap;
use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;

use crate::config::errors::Fail;
use crate::http1::{is_hop_by_hop, is_safe_header_value, is_tchar, query};

/// A template could not be rendered into a value the gateway may send, and whose value was
/// to blame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnsafeValue {
    /// A credential's value (claim, consumer name or metadata) fails
    /// `http1::is_safe_header_value`: the request is refused with 401.
    Credential,
    /// A client header the template copies fails it, or was sent more than once: 400.
    ClientHeader,
}

/// `transform = { ... }` inside a named policy table.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawTransform {
    /// Edits to the request headers sent upstream.
    pub request_headers: Option<RawHeaderOps>,
    /// Edits to the response headers sent to the client.
    pub response_headers: Option<RawHeaderOps>,
    /// Edits to the query string sent upstream.
    pub query: Option<RawQueryOps>,
}

/// Header operations for one direction.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawHeaderOps {
    /// `name = "template"`: replace all headers of that name.
    #[schemars(with = "Option<BTreeMap<String, String>>")]
    pub set: Option<BTreeMap<Spanned<String>, Spanned<String>>>,
    /// `name = "template"`: append a header.
    #[schemars(with = "Option<BTreeMap<String, String>>")]
    pub add: Option<BTreeMap<Spanned<String>, Spanned<String>>>,
    /// Names to drop.
    #[schemars(with = "Option<Vec<String>>")]
    pub remove: Option<Vec<Spanned<String>>>,
    /// `from = "to"`.
    #[schemars(with = "Option<BTreeMap<String, String>>")]
    pub rename: Option<BTreeMap<Spanned<String>, Spanned<String>>>,
}

/// Query-string operations (request only).
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawQueryOps {
    /// `name = "template"`: replace any parameter of that name with this one.
    #[schemars(with = "Option<BTreeMap<String, String>>")]
    pub add: Option<BTreeMap<Spanned<String>, Spanned<String>>>,
    /// Parameter names (decoded) to drop.
    #[schemars(with = "Option<Vec<String>>")]
    pub remove: Option<Vec<Spanned<String>>>,
}

/// Values for `${...}` variables, provided by the request path.
pub trait Vars {
    /// Authenticated consumer, if any.
    fn consumer(&self) -> Option<&str>;
    fn request_id(&self) -> &str;
    fn client_ip(&self) -> &str;
    /// Route name.
    fn route(&self) -> &str;
    /// A JWT claim rendered as text (`None` if absent or not authenticated by JWT).
    fn claim(&self, name: &str) -> Option<String>;
    /// A request header by lowercase name (first occurrence).
    fn header(&self, name: &str) -> Option<&[u8]>;
    /// Whether the request carries header `name` (lowercase) more than once.
    fn header_repeated(&self, _name: &str) -> bool {
        false
    }
    /// A metadata value of the consumer (`[consumers.NAME] metadata`), if any.
    fn consumer_meta(&self, _name: &str) -> Option<&str> {
        None
    }
    /// The consumer's groups, comma-separated (empty when none).
    fn consumer_groups(&self) -> String {
        String::new()
    }
}

#[derive(Debug)]
enum Part {
    Lit(Box<[u8]>),
    Consumer,
    RequestId,
    ClientIp,
    Route,
    Claim(Box<str>),
    Header(Box<str>),
    ConsumerMeta(Box<str>),
    ConsumerGroups,
}

/// A value with `${...}` variables, parsed at compile time.
#[derive(Debug)]
struct Template {
    parts: Box<[Part]>,
}

const KNOWN_VARS: &str = "${consumer}, ${consumer.groups}, ${consumer.meta.NAME}, \
     ${request_id}, ${client_ip}, ${route}, ${claim.NAME}, ${header.NAME}";

impl Template {
    fn parse(s: &str) -> Result<Template, String> {
        if s.bytes().any(is_ctl) {
            return Err("values cannot contain control characters".into());
        }
        if s.len() > crate::http1::MAX_DERIVED_VALUE_LEN {
            return Err(format!(
                "values are at most {} bytes",
                crate::http1::MAX_DERIVED_VALUE_LEN
            ));
        }
        let mut parts = Vec::new();
        let mut rest = s;
        while let Some(i) = rest.find("${") {
            if i > 0 {
                parts.push(Part::Lit(rest.as_bytes()[..i].into()));
            }
            let after = &rest[i + 2..];
            let Some(end) = after.find('}') else {
                return Err(format!("unclosed `${{` in {s:?}"));
            };
            parts.push(parse_var(&after[..end])?);
            rest = &after[end + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Lit(rest.as_bytes().into()));
        }
        Ok(Template {
            parts: parts.into(),
        })
    }

    fn has_vars(&self) -> bool {
        self.parts.iter().any(|p| !matches!(p, Part::Lit(_)))
    }

    /// Renders into `out`; `Err` when a header it copies was sent twice (which copy would be
    /// meant is ambiguous).
    fn render(&self, vars: &dyn Vars, out: &mut Vec<u8>) -> Result<(), UnsafeValue> {
        for part in self.parts.iter() {
            if let Part::Header(n) = part {
                if vars.header_repeated(n) {
                    return Err(UnsafeValue::ClientHeader);
                }
            }
        }
        for part in self.parts.iter() {
            match part {
                Part::Lit(b) => out.extend_from_slice(b),
                Part::Consumer => out.extend_from_slice(vars.consumer().unwrap_or("").as_bytes()),
                Part::RequestId => out.extend_from_slice(vars.request_id().as_bytes()),
                Part::ClientIp => out.extend_from_slice(vars.client_ip().as_bytes()),
                Part::Route => out.extend_from_slice(vars.route().as_bytes()),
                Part::Claim(n) => {
                    if let Some(v) = vars.claim(n) {
                        out.extend_from_slice(v.as_bytes());
                    }
                }
                Part::Header(n) => out.extend_from_slice(vars.header(n).unwrap_or(b"")),
                Part::ConsumerMeta(n) => {
                    out.extend_from_slice(vars.consumer_meta(n).unwrap_or("").as_bytes())
                }
                Part::ConsumerGroups => out.extend_from_slice(vars.consumer_groups().as_bytes()),
            }
        }
        Ok(())
    }

    /// Whose value made the rendering unsafe: a copied client header that is unsafe on its
    /// own, or (the rendering is too long) any copied header at all; otherwise the credential.
    fn culprit(&self, vars: &dyn Vars) -> UnsafeValue {
        let headers = || {
            self.parts.iter().filter_map(|p| match p {
                Part::Header(n) => Some(vars.header(n).unwrap_or(b"")),
                _ => None,
            })
        };
        let credential_unsafe = self.parts.iter().any(|p| {
            let v: Option<String> = match p {
                Part::Consumer => vars.consumer().map(str::to_string),
                Part::Claim(n) => vars.claim(n),
                Part::ConsumerMeta(n) => vars.consumer_meta(n).map(str::to_string),
                Part::ConsumerGroups => Some(vars.consumer_groups()),
                _ => None,
            };
            v.is_some_and(|v| !v.is_empty() && !is_safe_header_value(v.as_bytes()))
        });
        if headers().any(|v| !v.is_empty() && !is_safe_header_value(v)) {
            UnsafeValue::ClientHeader
        } else if credential_unsafe || headers().next().is_none() {
            UnsafeValue::Credential
        } else {
            UnsafeValue::ClientHeader
        }
    }

    /// The rendered, trimmed header value; `Ok(None)` if it is empty, `Err` if it is unsafe.
    fn header_value(&self, vars: &dyn Vars) -> Result<Option<Vec<u8>>, UnsafeValue> {
        let mut v = Vec::new();
        self.render(vars, &mut v)?;
        let Some(end) = v.iter().rposition(|&b| b != b' ' && b != b'\t') else {
            return Ok(None);
        };
        let start = v.iter().position(|&b| b != b' ' && b != b'\t').unwrap_or(0);
        v.truncate(end + 1);
        v.drain(..start);
        if is_safe_header_value(&v) {
            Ok(Some(v))
        } else {
            Err(self.culprit(vars))
        }
    }
}

fn is_ctl(b: u8) -> bool {
    b < 0x20 || b == 0x7f
}

fn parse_var(name: &str) -> Result<Part, String> {
    Ok(match name {
        "consumer" => Part::Consumer,
        "request_id" => Part::RequestId,
        "client_ip" => Part::ClientIp,
        "route" => Part::Route,
        "consumer.groups" => Part::ConsumerGroups,
        _ => {
            if let Some(m) = name.strip_prefix("consumer.meta.") {
                if m.is_empty() || m.contains(['$', '{', ' ']) {
                    return Err(format!("`${{{name}}}`: invalid metadata key"));
                }
                return Ok(Part::ConsumerMeta(m.into()));
            }
            if let Some(c) = name.strip_prefix("claim.") {
                if c.is_empty() || c.contains(['$', '{', ' ']) {
                    return Err(format!("`${{{name}}}`: invalid claim name"));
                }
                Part::Claim(c.into())
            } else if let Some(h) = name.strip_prefix("header.") {
                if h.is_empty() || !h.bytes().all(is_tchar) {
                    return Err(format!("`${{{name}}}`: invalid header name"));
                }
                Part::Header(h.to_ascii_lowercase().into())
            } else {
                return Err(format!("unknown variable `${{{name}}}`; use {KNOWN_VARS}"));
            }
        }
    })
}

/// An owned lowercase header name.
pub type HeaderName = Box<[u8]>;

/// Edits to apply to a header list, built per request. `remove` and `rename` describe what
/// happens to the *existing* headers (see `map_name`); `add` lists headers to append. Build it
/// through the `push_*` methods, which compose operations in call order.
#[derive(Clone, Debug, Default)]
pub struct HeaderEdits {
    /// Lowercase names of existing headers to drop.
    pub remove: Vec<Box<[u8]>>,
    /// `(existing lowercase name, new lowercase name)`; at most one entry per existing name.
    pub rename: Vec<(HeaderName, HeaderName)>,
    /// Headers to append, lowercase names.
    pub add: Vec<(Box<[u8]>, Vec<u8>)>,
}

impl HeaderEdits {
    /// True if applying these edits changes nothing.
    pub fn is_empty(&self) -> bool {
        self.remove.is_empty() && self.rename.is_empty() && self.add.is_empty()
    }

    /// True if these edits remove, rename (from or to) or set a header named `name`.
    pub fn touches(&self, name: &[u8]) -> bool {
        self.remove.iter().any(|r| r.eq_ignore_ascii_case(name))
            || self
                .rename
                .iter()
                .any(|(from, to)| from.eq_ignore_ascii_case(name) || to.eq_ignore_ascii_case(name))
            || self.add.iter().any(|(n, _)| n.eq_ignore_ascii_case(name))
    }

    /// The value of `name` the upstream receives once these edits apply to `fields` (the
    /// client's, in order): the last value a policy added, else the first client field that
    /// keeps the name or is renamed to it. What a limit keyed by a header must count: the
    /// client's own copy of a field the gateway sets is not what the upstream trusts.
    pub fn upstream_value<'a, I>(&'a self, fields: I, name: &[u8]) -> Option<&'a [u8]>
    where
        I: IntoIterator<Item = (&'a [u8], &'a [u8])>,
    {
        if let Some((_, v)) = self
            .add
            .iter()
            .rev()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            return Some(v);
        }
        fields
            .into_iter()
            .find(|(n, _)| {
                self.map_name(n)
                    .is_some_and(|to| to.eq_ignore_ascii_case(name))
            })
            .map(|(_, v)| v)
    }

    /// What to do with an existing header: `None` = drop, `Some(name)` = write under this name.
    pub fn map_name<'a>(&'a self, name: &'a [u8]) -> Option<&'a [u8]> {
        if self.remove.iter().any(|r| r.eq_ignore_ascii_case(name)) {
            return None;
        }
        match self
            .rename
            .iter()
            .find(|(f, _)| f.eq_ignore_ascii_case(name))
        {
            Some((_, to)) => Some(to),
            None => Some(name),
        }
    }

    /// Drops every header currently named `name`: existing ones (also those renamed to it) and
    /// ones added earlier.
    pub fn push_remove(&mut self, name: &[u8]) {
        let original_live = self.original_is_live(name);
        let HeaderEdits {
            remove,
            rename,
            add,
        } = self;
        add.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        rename.retain(|(from, to)| {
            if to.eq_ignore_ascii_case(name) {
                if !remove.contains(from) {
                    remove.push(from.clone());
                }
                false
            } else {
                true
            }
        });
        if original_live {
            remove.push(name.to_ascii_lowercase().into());
        }
    }

    /// Renames every header currently named `from` (existing or added earlier) to `to`.
    pub fn push_rename(&mut self, from: &[u8], to: &[u8]) {
        if from.eq_ignore_ascii_case(to) {
            return;
        }
        let to: Box<[u8]> = to.to_ascii_lowercase().into();
        let original_live = self.original_is_live(from);
        for (_, t) in self.rename.iter_mut() {
            if t.eq_ignore_ascii_case(from) {
                t.clone_from(&to);
            }
        }
        for (n, _) in self.add.iter_mut() {
            if n.eq_ignore_ascii_case(from) {
                n.clone_from(&to);
            }
        }
        if original_live {
            self.rename.push((from.to_ascii_lowercase().into(), to));
        }
    }

    /// Appends a header (`name` is lowercased; `value` must already have passed
    /// `http1::is_safe_header_value`).
    pub fn push_add(&mut self, name: &[u8], value: Vec<u8>) {
        debug_assert!(is_safe_header_value(&value), "{value:?}");
        self.add.push((name.to_ascii_lowercase().into(), value));
    }

    /// Whether existing headers named `name` still carry that name (not removed or renamed).
    fn original_is_live(&self, name: &[u8]) -> bool {
        !self.remove.iter().any(|r| r.eq_ignore_ascii_case(name))
            && !self
                .rename
                .iter()
                .any(|(f, _)| f.eq_ignore_ascii_case(name))
    }
}

/// Header operations for one direction, in application order.
#[derive(Debug, Default)]
struct HeaderOps {
    remove: Box<[Box<[u8]>]>,
    rename: Box<[(HeaderName, HeaderName)]>,
    set: Box<[(Box<[u8]>, Template)]>,
    add: Box<[(Box<[u8]>, Template)]>,
}

impl HeaderOps {
    fn edits(&self, vars: &dyn Vars, edits: &mut HeaderEdits) -> Result<(), UnsafeValue> {
        for name in self.remove.iter() {
            edits.push_remove(name);
        }
        for (from, to) in self.rename.iter() {
            edits.push_rename(from, to);
        }
        for (name, t) in self.set.iter() {
            edits.push_remove(name);
            if let Some(v) = t.header_value(vars)? {
                edits.push_add(name, v);
            }
        }
        for (name, t) in self.add.iter() {
            if let Some(v) = t.header_value(vars)? {
                edits.push_add(name, v);
            }
        }
        Ok(())
    }
}

/// Compiled query operations.
#[derive(Debug, Default)]
pub struct QueryOps {
    /// Configured removes plus every added name.
    remove: Box<[Box<[u8]>]>,
    add: Box<[(Box<[u8]>, Template)]>,
}

impl QueryOps {
    /// True if the query is left alone.
    pub fn is_empty(&self) -> bool {
        self.remove.is_empty() && self.add.is_empty()
    }

    /// Decoded parameter names to drop from the incoming query: the configured removes plus
    /// every added name (an added parameter replaces the client's).
    pub fn remove_names(&self) -> &[Box<[u8]>] {
        &self.remove
    }

    /// Renders the added `(name, value)` pairs (unencoded) into `out`; `Err` as for
    /// `Template::render` (values are percent-encoded later, so any byte is safe).
    pub fn render_adds(
        &self,
        vars: &dyn Vars,
        out: &mut Vec<(Vec<u8>, Vec<u8>)>,
    ) -> Result<(), UnsafeValue> {
        for (name, t) in self.add.iter() {
            let mut v = Vec::new();
            t.render(vars, &mut v)?;
            if v.is_empty() && t.has_vars() {
                continue;
            }
            out.push((name.to_vec(), v));
        }
        Ok(())
    }

    /// `render_adds` + `rewrite_query`: appends the new query (without `?`) to `out`.
    pub fn rewrite(
        &self,
        query: Option<&[u8]>,
        vars: &dyn Vars,
        out: &mut Vec<u8>,
    ) -> Result<(), UnsafeValue> {
        let mut adds = Vec::new();
        self.render_adds(vars, &mut adds)?;
        rewrite_query(query, &self.remove, &adds, out);
        Ok(())
    }
}

/// A compiled transform.
#[derive(Debug, Default)]
pub struct Transform {
    request: HeaderOps,
    response: HeaderOps,
    query: QueryOps,
}

impl Transform {
    /// Request headers this transform renames a client field onto, or adds a value to beside
    /// any already there: `(name, "rename" | "add")`. (`set` replaces, so it is not listed.)
    pub fn request_joins(&self) -> impl Iterator<Item = (&[u8], &'static str)> {
        let renamed = self
            .request
            .rename
            .iter()
            .map(|(_, to)| (&to[..], "rename"));
        let added = self.request.add.iter().map(|(n, _)| (&n[..], "add"));
        renamed.chain(added)
    }

    /// Appends this transform's request-header edits to `edits`; `Err` if a value renders
    /// unsafe (the request must then be refused).
    pub fn request_edits(
        &self,
        vars: &dyn Vars,
        edits: &mut HeaderEdits,
    ) -> Result<(), UnsafeValue> {
        self.request.edits(vars, edits)
    }

    /// Appends this transform's response-header edits to `edits`; `Err` as for
    /// `request_edits`.
    pub fn response_edits(
        &self,
        vars: &dyn Vars,
        edits: &mut HeaderEdits,
    ) -> Result<(), UnsafeValue> {
        self.response.edits(vars, edits)
    }

    /// True if the query string is rewritten.
    pub fn has_query_ops(&self) -> bool {
        !self.query.is_empty()
    }

    pub fn query_ops(&self) -> &QueryOps {
        &self.query
    }
}

/// Rewrites a raw query string: keeps the parameters no name in `remove` covers
/// (`http1::query::scrub_covers`; verbatim, dropping empty `&&` elements), then appends the `add` pairs
/// percent-encoded (everything but unreserved characters). Appends the new query, without
/// `?`, to `out`; nothing appended means no query.
pub fn rewrite_query(
    query: Option<&[u8]>,
    remove: &[impl AsRef<[u8]>],
    add: &[(Vec<u8>, Vec<u8>)],
    out: &mut Vec<u8>,
) {
    let start = out.len();
    for pair in query::elements(query.unwrap_or(b"")) {
        let (name, _) = query::split_pair(pair);
        if remove.iter().any(|r| query::scrub_covers(name, r.as_ref())) {
            continue;
        }
        if out.len() > start {
            out.push(b'&');
        }
        out.extend_from_slice(pair);
    }
    for (name, value) in add {
        if out.len() > start {
            out.push(b'&');
        }
        percent_encode(name, out);
        out.push(b'=');
        percent_encode(value, out);
    }
}

fn percent_encode(s: &[u8], out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in s {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b);
        } else {
            out.extend_from_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
        }
    }
}

/// Validates `raw` into a `Transform`; reports every problem through `err` (span, field suffix
/// such as `request_headers.set.x-user`, message) and returns `None` if there was any.
pub fn compile(raw: &RawTransform, err: &mut Fail<'_>) -> Option<Transform> {
    let mut failed = false;
    let mut fail = |span: Range<usize>, field: &str, msg: String| {
        failed = true;
        err(span, field, msg);
    };
    let request = header_ops(
        raw.request_headers.as_ref(),
        "request_headers",
        request_header_name,
        &mut fail,
    );
    let response = header_ops(
        raw.response_headers.as_ref(),
        "response_headers",
        header_name,
        &mut fail,
    );
    let query = query_ops(raw.query.as_ref(), &mut fail);
    (!failed).then_some(Transform {
        request,
        response,
        query,
    })
}

fn header_name(s: &str) -> Result<Box<[u8]>, String> {
    if s.is_empty() || !s.bytes().all(is_tchar) {
        return Err(format!("{s:?} is not a header name"));
    }
    let lower = s.to_ascii_lowercase();
    // `x-forwarded-client-cert` describes the verified client certificate: only the gateway
    // writes it, so no rule may copy or rename a client's header into it.
    let managed = ["content-length", "host", "x-forwarded-client-cert"];
    if is_hop_by_hop(lower.as_bytes()) || managed.contains(&lower.as_str()) {
        return Err(format!(
            "`{lower}` is managed by the gateway and cannot be transformed"
        ));
    }
    Ok(lower.into_bytes().into())
}

/// The request headers the gateway writes itself, whatever the client sent (forwarded
/// identity, the request id, retry and mirror markers, `expect`): a transform of one would be
/// overwritten or dropped, so it is a config error instead of a silent no-op. Kept equal to
/// `exchange::upstream_head::managed_request_header` by a test there.
pub const GATEWAY_REQUEST_HEADERS: [&str; 8] = [
    "expect",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "forwarded",
    "x-request-id",
    "x-ringway-attempts",
    "x-ringway-mirror",
];

/// `header_name`, and not one the gateway writes on upstream requests itself.
fn request_header_name(s: &str) -> Result<Box<[u8]>, String> {
    let name = header_name(s)?;
    if GATEWAY_REQUEST_HEADERS
        .iter()
        .any(|m| m.as_bytes() == &*name)
    {
        return Err(format!(
            "`{s}` is written by the gateway itself on every upstream request (see the README, \
             \"Forwarded identity\"), so it cannot be transformed",
            s = s.to_ascii_lowercase()
        ));
    }
    Ok(name)
}

/// Compiles a `name = "template"` map; `name_ok` validates and normalizes keys.
fn template_map(
    map: Option<&BTreeMap<Spanned<String>, Spanned<String>>>,
    field: &str,
    name_ok: fn(&str) -> Result<Box<[u8]>, String>,
    fail: &mut Fail<'_>,
) -> Box<[(Box<[u8]>, Template)]> {
    let mut out = Vec::new();
    for (k, v) in map.into_iter().flatten() {
        let f = format!("{field}.{}", k.get_ref());
        let name = name_ok(k.get_ref()).map_err(|m| fail(k.span(), &f, m));
        let t = Template::parse(v.get_ref()).map_err(|m| fail(v.span(), &f, m));
        if let (Ok(name), Ok(t)) = (name, t) {
            out.push((name, t));
        }
    }
    out.into()
}

fn name_list(
    list: Option<&Vec<Spanned<String>>>,
    field: &str,
    name_ok: fn(&str) -> Result<Box<[u8]>, String>,
    fail: &mut Fail<'_>,
) -> Vec<Box<[u8]>> {
    let mut out: Vec<Box<[u8]>> = Vec::new();
    for (i, n) in list.into_iter().flatten().enumerate() {
        match name_ok(n.get_ref()) {
            Ok(name) if !out.contains(&name) => out.push(name),
            Ok(_) => {}
            Err(m) => fail(n.span(), &format!("{field}[{i}]"), m),
        }
    }
    out
}

fn header_ops(
    raw: Option<&RawHeaderOps>,
    dir: &str,
    name_ok: fn(&str) -> Result<Box<[u8]>, String>,
    fail: &mut Fail<'_>,
) -> HeaderOps {
    let Some(raw) = raw else {
        return HeaderOps::default();
    };
    let mut rename = Vec::new();
    for (k, v) in raw.rename.iter().flatten() {
        let f = format!("{dir}.rename.{}", k.get_ref());
        let from = name_ok(k.get_ref()).map_err(|m| fail(k.span(), &f, m));
        let to = name_ok(v.get_ref()).map_err(|m| fail(v.span(), &f, m));
        if let (Ok(from), Ok(to)) = (from, to) {
            rename.push((from, to));
        }
    }
    HeaderOps {
        remove: name_list(raw.remove.as_ref(), &format!("{dir}.remove"), name_ok, fail).into(),
        rename: rename.into(),
        set: template_map(raw.set.as_ref(), &format!("{dir}.set"), name_ok, fail),
        add: template_map(raw.add.as_ref(), &format!("{dir}.add"), name_ok, fail),
    }
}

fn query_name(s: &str) -> Result<Box<[u8]>, String> {
    if s.is_empty() || s.bytes().any(is_ctl) {
        return Err(format!("{s:?} is not a query parameter name"));
    }
    Ok(s.as_bytes().into())
}

fn query_ops(raw: Option<&RawQueryOps>, fail: &mut Fail<'_>) -> QueryOps {
    let Some(raw) = raw else {
        return QueryOps::default();
    };
    let mut remove = name_list(raw.remove.as_ref(), "query.remove", query_name, fail);
    let add = template_map(raw.add.as_ref(), "query.add", query_name, fail);
    for (name, _) in add.iter() {
        if !remove.contains(name) {
            remove.push(name.clone());
        }
    }
    QueryOps {
        remove: remove.into(),
        add,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[derive(Default)]
    struct TestVars {
        consumer: Option<&'static str>,
        claims: HashMap<&'static str, &'static str>,
        headers: HashMap<&'static str, &'static [u8]>,
        repeated: Vec<&'static str>,
    }

    impl Vars for TestVars {
        fn consumer(&self) -> Option<&str> {
            self.consumer
        }
        fn request_id(&self) -> &str {
            "rid-1"
        }
        fn client_ip(&self) -> &str {
            "203.0.113.9"
        }
        fn route(&self) -> &str {
            "api"
        }
        fn claim(&self, name: &str) -> Option<String> {
            self.claims.get(name).map(|v| v.to_string())
        }
        fn header(&self, name: &str) -> Option<&[u8]> {
            self.headers.get(name).copied()
        }
        fn header_repeated(&self, name: &str) -> bool {
            self.repeated.contains(&name)
        }
    }

    fn compile_str(src: &str) -> Result<Transform, Vec<(String, String)>> {
        let raw: RawTransform = toml::from_str(src).expect("test toml parses");
        let mut errs = Vec::new();
        compile(&raw, &mut |_, f, m| errs.push((f.to_owned(), m))).ok_or(errs)
    }

    fn transform(src: &str) -> Transform {
        compile_str(src).unwrap_or_else(|e| panic!("{src}: {e:?}"))
    }

    /// Applies `edits` to a header list the way the proxy does.
    fn apply(edits: &HeaderEdits, headers: &[(&str, &str)]) -> Vec<(String, String)> {
        let text = |b: &[u8]| String::from_utf8(b.to_vec()).expect("utf-8");
        let mut out: Vec<(String, String)> = headers
            .iter()
            .filter_map(|(n, v)| {
                edits
                    .map_name(n.as_bytes())
                    .map(|n| (text(n), v.to_string()))
            })
            .collect();
        out.extend(edits.add.iter().map(|(n, v)| (text(n), text(v))));
        out
    }

    fn run(src: &str, vars: &TestVars, headers: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut edits = HeaderEdits::default();
        transform(src).request_edits(vars, &mut edits).unwrap();
        apply(&edits, headers)
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn each_operation() {
        let v = TestVars::default();
        let input = [("X-A", "1"), ("x-b", "2"), ("x-a", "3")];
        assert_eq!(
            run("[request_headers]\nremove = [\"X-a\"]\n", &v, &input),
            pairs(&[("x-b", "2")])
        );
        assert_eq!(
            run(
                "[request_headers]\nrename = { X-A = \"X-Z\" }\n",
                &v,
                &input
            ),
            pairs(&[("x-z", "1"), ("x-b", "2"), ("x-z", "3")])
        );
        assert_eq!(
            run("[request_headers]\nset = { x-a = \"new\" }\n", &v, &input),
            pairs(&[("x-b", "2"), ("x-a", "new")])
        );
        assert_eq!(
            run("[request_headers]\nadd = { x-a = \"4\" }\n", &v, &input),
            pairs(&[("X-A", "1"), ("x-b", "2"), ("x-a", "3"), ("x-a", "4")])
        );
        // Response direction is independent.
        let t = transform("[response_headers]\nset = { server = \"ringway\" }\n");
        let mut edits = HeaderEdits::default();
        t.request_edits(&v, &mut edits).unwrap();
        assert!(edits.is_empty());
        t.response_edits(&v, &mut edits).unwrap();
        assert_eq!(
            apply(&edits, &[("Server", "x")]),
            pairs(&[("server", "ringway")])
        );
        assert!(!t.has_query_ops());
    }

    #[test]
    fn order_is_remove_rename_set_add() {
        let v = TestVars::default();
        // x-a is removed before the rename sees it; x-c is renamed to x-d, then set replaces
        // every x-d; add appends after set; set x-e runs after x-e was renamed away.
        let src = "[request_headers]\nremove = [\"x-a\"]\n\
                   rename = { x-a = \"x-b\", x-c = \"x-d\", x-e = \"x-f\" }\n\
                   set = { x-d = \"new\", x-e = \"fresh\" }\nadd = { x-d = \"extra\" }\n";
        let input = [
            ("x-a", "1"),
            ("x-c", "2"),
            ("x-d", "3"),
            ("x-e", "4"),
            ("keep", "k"),
        ];
        assert_eq!(
            run(src, &v, &input),
            pairs(&[
                ("x-f", "4"),
                ("keep", "k"),
                ("x-d", "new"),
                ("x-e", "fresh"),
                ("x-d", "extra"),
            ])
        );
    }

    #[test]
    fn edits_compose_across_calls() {
        let mut e = HeaderEdits::default();
        e.push_add(b"X-New", b"1".to_vec());
        e.push_rename(b"x-new", b"x-moved");
        e.push_rename(b"a", b"b");
        e.push_rename(b"b", b"c"); // existing a → c, existing b → c
        assert_eq!(
            apply(&e, &[("a", "1"), ("b", "2"), ("c", "3")]),
            pairs(&[("c", "1"), ("c", "2"), ("c", "3"), ("x-moved", "1")])
        );
        e.push_remove(b"C");
        assert_eq!(
            apply(&e, &[("a", "1"), ("b", "2"), ("c", "3"), ("d", "4")]),
            { pairs(&[("d", "4"), ("x-moved", "1")]) }
        );
        e.push_remove(b"x-moved");
        assert!(e.add.is_empty());
        // Removing a name that was renamed away keeps the renamed header.
        let mut e = HeaderEdits::default();
        e.push_rename(b"a", b"b");
        e.push_remove(b"a");
        assert_eq!(apply(&e, &[("a", "1")]), pairs(&[("b", "1")]));
    }

    #[test]
    fn variables() {
        let vars = TestVars {
            consumer: Some("alice"),
            claims: [("sub", "u-1"), ("https://ex.com/role", "admin")].into(),
            headers: [("user-agent", &b"curl/8"[..])].into(),
            ..TestVars::default()
        };
        let src = "[request_headers.set]\n\"x-user\" = \"${consumer}\"\n\
                   \"x-info\" = \"id=${request_id} ip=${client_ip} r=${route} sub=${claim.sub} ua=${header.User-Agent}\"\n\
                   \"x-role\" = \"${claim.https://ex.com/role}\"\n\"x-literal\" = \"$5 {x} $\"\n";
        assert_eq!(
            run(src, &vars, &[]),
            pairs(&[
                ("x-info", "id=rid-1 ip=203.0.113.9 r=api sub=u-1 ua=curl/8"),
                ("x-literal", "$5 {x} $"),
                ("x-role", "admin"),
                ("x-user", "alice"),
            ])
        );
        // Missing values render empty; an empty header is skipped, but `set` still removes
        // the client's copy (no spoofing), and blanks are trimmed.
        let anon = TestVars::default();
        let src = "[request_headers]\nset = { x-user = \"${consumer}\", x-sub = \" sub=${claim.sub} \" }\n\
                   add = { x-ua = \"${header.user-agent}\" }\n";
        assert_eq!(
            run(src, &anon, &[("X-User", "admin"), ("x-other", "o")]),
            pairs(&[("x-other", "o"), ("x-sub", "sub=")])
        );
    }

    #[test]
    fn header_injection_is_refused() {
        for evil in [
            &b"a\r\nx-evil: 1"[..],
            b"a\nx-evil: 1",
            b"a\rb",
            b"a\0b",
            b"\x7f",
        ] {
            let vars = TestVars {
                headers: [("x", evil)].into(),
                ..TestVars::default()
            };
            let t = transform(
                "[request_headers]\nset = { x-copy = \"v=${header.x}\" }\nadd = { x-add = \"${header.x}\" }\n\
                 [response_headers]\nadd = { x-echo = \"${header.x}\" }\n",
            );
            let mut edits = HeaderEdits::default();
            assert_eq!(
                t.request_edits(&vars, &mut edits),
                Err(UnsafeValue::ClientHeader),
                "{evil:?}"
            );
            assert_eq!(
                t.response_edits(&vars, &mut edits),
                Err(UnsafeValue::ClientHeader),
                "{evil:?}"
            );
            assert!(edits.add.is_empty(), "{evil:?}: {:?}", edits.add);
        }
        // Too long once rendered.
        let long: &'static [u8] =
            Box::leak(vec![b'a'; crate::http1::MAX_DERIVED_VALUE_LEN + 1].into_boxed_slice());
        let vars = TestVars {
            headers: [("x", long)].into(),
            ..TestVars::default()
        };
        let mut edits = HeaderEdits::default();
        assert_eq!(
            transform("[request_headers]\nadd = { x-copy = \"${header.x}\" }\n")
                .request_edits(&vars, &mut edits),
            Err(UnsafeValue::ClientHeader)
        );
        // A claim is the credential's value: 401, not 400.
        let vars = TestVars {
            claims: [("sub", "a\r\nx-evil: 1")].into(),
            headers: [("x", &b"fine"[..])].into(),
            ..TestVars::default()
        };
        let mut edits = HeaderEdits::default();
        assert_eq!(
            transform("[request_headers]\nadd = { x-copy = \"${header.x}/${claim.sub}\" }\n")
                .request_edits(&vars, &mut edits),
            Err(UnsafeValue::Credential)
        );
        // A copied header sent twice is ambiguous, in a header value and a query value alike.
        let vars = TestVars {
            headers: [("x", &b"one"[..])].into(),
            repeated: vec!["x"],
            ..TestVars::default()
        };
        let mut edits = HeaderEdits::default();
        assert_eq!(
            transform("[request_headers]\nadd = { x-copy = \"${header.x}\" }\n")
                .request_edits(&vars, &mut edits),
            Err(UnsafeValue::ClientHeader)
        );
        let mut adds = Vec::new();
        assert_eq!(
            transform("[query]\nadd = { q = \"${header.x}\" }\n")
                .query_ops()
                .render_adds(&vars, &mut adds),
            Err(UnsafeValue::ClientHeader)
        );
        // Tabs and obs-text are fine.
        let vars = TestVars {
            headers: [("x", &b"a\tb\xff"[..])].into(),
            ..TestVars::default()
        };
        let mut edits = HeaderEdits::default();
        transform("[request_headers]\nadd = { x-copy = \"${header.x}\" }\n")
            .request_edits(&vars, &mut edits)
            .unwrap();
        assert_eq!(
            edits.add,
            vec![(Box::from(&b"x-copy"[..]), b"a\tb\xff".to_vec())]
        );
    }

    #[test]
    fn compile_errors_name_the_field() {
        let cases = [
            (
                "[request_headers]\nset = { x-a = \"${nope}\" }\n",
                "request_headers.set.x-a",
            ),
            (
                "[request_headers]\nadd = { x-a = \"${consumer\" }\n",
                "request_headers.add.x-a",
            ),
            (
                "[request_headers]\nadd = { x-a = \"${claim.}\" }\n",
                "request_headers.add.x-a",
            ),
            (
                "[request_headers]\nadd = { x-a = \"${header.a b}\" }\n",
                "request_headers.add.x-a",
            ),
            (
                "[request_headers]\nadd = { x-a = \"a\\r\\nb\" }\n",
                "request_headers.add.x-a",
            ),
            (
                "[request_headers]\nadd = { \"x a\" = \"v\" }\n",
                "request_headers.add.x a",
            ),
            (
                "[request_headers]\nremove = [\"ok\", \"\"]\n",
                "request_headers.remove[1]",
            ),
            (
                "[request_headers]\nremove = [\"Transfer-Encoding\"]\n",
                "request_headers.remove[0]",
            ),
            (
                "[request_headers]\nset = { host = \"x\" }\n",
                "request_headers.set.host",
            ),
            (
                "[request_headers]\nset = { X-Forwarded-For = \"1.2.3.4\" }\n",
                "request_headers.set.X-Forwarded-For",
            ),
            (
                "[request_headers]\nremove = [\"x-request-id\"]\n",
                "request_headers.remove[0]",
            ),
            (
                "[request_headers]\nrename = { x-a = \"expect\" }\n",
                "request_headers.rename.x-a",
            ),
            (
                "[response_headers]\nrename = { x-a = \"content-length\" }\n",
                "response_headers.rename.x-a",
            ),
            (
                "[response_headers]\nrename = { connection = \"x-b\" }\n",
                "response_headers.rename.connection",
            ),
            (
                "[request_headers]\nrename = { x-cert = \"X-Forwarded-Client-Cert\" }\n",
                "request_headers.rename.x-cert",
            ),
            ("[query]\nadd = { k = \"${route\" }\n", "query.add.k"),
            ("[query]\nremove = [\"\"]\n", "query.remove[0]"),
        ];
        for (src, field) in cases {
            let errs = compile_str(src).err().unwrap_or_default();
            assert_eq!(
                errs.first().map(|e| e.0.as_str()),
                Some(field),
                "{src}: {errs:?}"
            );
        }
        let errs = compile_str("[request_headers]\nset = { x-a = \"${nope}\" }\n")
            .err()
            .unwrap_or_default();
        assert!(errs[0].1.contains("${nope}"), "{errs:?}");
        let errs = compile_str(
            "[request_headers]\nset = { x-a = \"${a}\" }\n[query]\nadd = { q = \"${b}\" }\n",
        )
        .err()
        .unwrap_or_default();
        assert_eq!(errs.len(), 2);
        assert!(toml::from_str::<RawTransform>("[request_headers]\nreplace = {}\n").is_err());
    }

    fn rq(query: Option<&str>, remove: &[&str], add: &[(&str, &str)]) -> String {
        let add: Vec<(Vec<u8>, Vec<u8>)> = add
            .iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect();
        let mut out = b"prefix?".to_vec();
        rewrite_query(query.map(str::as_bytes), remove, &add, &mut out);
        String::from_utf8(out).expect("utf-8")
    }

    #[test]
    fn query_rewrite() {
        assert_eq!(rq(Some("a=1&b=2&a=3&c"), &["a"], &[]), "prefix?b=2&c");
        assert_eq!(rq(Some("a=1&b=2"), &["c"], &[]), "prefix?a=1&b=2");
        assert_eq!(rq(Some("b&c=&a"), &["b", "c"], &[]), "prefix?a");
        // Percent-encoded and form-encoded names match their decoded form.
        assert_eq!(
            rq(
                Some("a%5Bb%5d=1&a[b]=2&a+b=3&a%20b=4&x=%zz"),
                &["a[b]", "a b"],
                &[]
            ),
            "prefix?x=%zz"
        );
        assert_eq!(
            rq(Some("%zz=1&%=2&a%=3"), &["%zz", "%"], &[]),
            "prefix?a%=3"
        );
        assert_eq!(rq(Some("ab=1"), &["a"], &[]), "prefix?ab=1");
        assert_eq!(rq(Some("a=1"), &["ab"], &[]), "prefix?a=1");
        // Adds are encoded; empty elements are dropped.
        assert_eq!(
            rq(Some("&&x=1&&"), &[], &[("k y", "a b&c=d/é"), ("e", "")]),
            "prefix?x=1&k%20y=a%20b%26c%3Dd%2F%C3%A9&e="
        );
        assert_eq!(rq(None, &[], &[("k", "v")]), "prefix?k=v");
        // Empty result: nothing appended.
        assert_eq!(rq(Some("a=1&a=2"), &["a"], &[]), "prefix?");
        assert_eq!(rq(None, &["a"], &[]), "prefix?");
        assert_eq!(rq(Some(""), &[] as &[&str], &[]), "prefix?");
    }

    #[test]
    fn query_ops_replace_and_skip_empty() {
        let t = transform(
            "[query]\nremove = [\"debug\"]\nadd = { tenant = \"${claim.tenant}\", src = \"gw\", flag = \"\" }\n",
        );
        assert!(t.has_query_ops());
        let vars = TestVars {
            claims: [("tenant", "t 1")].into(),
            ..TestVars::default()
        };
        let mut out = Vec::new();
        t.query_ops()
            .rewrite(Some(b"tenant=evil&debug=1&q=x"), &vars, &mut out)
            .unwrap();
        assert_eq!(out, b"q=x&flag=&src=gw&tenant=t%201");
        // A variable without a value adds nothing, yet the client's copy is still removed.
        let mut out = Vec::new();
        t.query_ops()
            .rewrite(Some(b"tenant=evil"), &TestVars::default(), &mut out)
            .unwrap();
        assert_eq!(out, b"flag=&src=gw");
        let mut adds = Vec::new();
        t.query_ops()
            .render_adds(&TestVars::default(), &mut adds)
            .unwrap();
        assert_eq!(adds.len(), 2);
    }
}

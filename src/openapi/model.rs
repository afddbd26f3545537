//! The loaded OpenAPI document as ringway sees it (`load` builds it; the importer, the
//! validator, the portal and the MCP server read it). Every `$ref` in the parts below is
//! already resolved, except inside schemas: a schema keeps its `$ref`s and is compiled
//! against `Api::doc`, the whole document.

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::Value;

/// Which OpenAPI version (and so which JSON Schema dialect) the document uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// OpenAPI 3.0.x: the 3.0 schema object (a draft-4 superset: `nullable`, boolean
    /// `exclusiveMinimum`/`exclusiveMaximum`, no `type` arrays).
    V30,
    /// OpenAPI 3.1.x: JSON Schema draft 2020-12.
    V31,
}

/// One imported document.
#[derive(Debug)]
pub struct Api {
    /// The `[[openapi]]` block's name (its `name`, else the file stem).
    pub name: String,
    /// The document's path as resolved from the config file.
    pub file: PathBuf,
    pub dialect: Dialect,
    /// `info.title`, `info.version`, `info.description` (empty when absent).
    pub title: String,
    pub version: String,
    pub description: String,
    /// The whole document (YAML converted to JSON values), for `$ref` resolution in schemas
    /// and for the portal.
    pub doc: Arc<Value>,
    /// In document order (paths in order, methods in the order get, put, post, delete,
    /// options, head, patch, trace).
    pub operations: Vec<Operation>,
    /// `components.securitySchemes`, by name.
    pub schemes: Vec<SecurityScheme>,
    /// Every construct the gateway does not act on, with its JSON pointer (`check` lists
    /// them; nothing is skipped silently).
    pub ignored: Vec<Ignored>,
}

/// One operation (a method on a path).
#[derive(Debug)]
pub struct Operation {
    /// `operationId`; when the document has none, one is made from the method and path
    /// (`get_pets_petId`) and that is reported in `Api::ignored`.
    pub id: String,
    /// Uppercase method (`GET`).
    pub method: String,
    /// The path template as written in the document (`/pets/{petId}`), without any prefix.
    pub path: String,
    /// JSON pointer of the operation object (`#/paths/~1pets~1{petId}/get`).
    pub pointer: String,
    pub summary: String,
    pub description: String,
    pub tags: Vec<String>,
    pub deprecated: bool,
    /// Path-level and operation-level parameters merged (the operation's win on the same
    /// name and location), `$ref`s resolved.
    pub params: Vec<Param>,
    pub body: Option<RequestBody>,
    /// The operation's security (or the document's global one): alternatives (any one
    /// suffices), each a set of schemes that must all pass. Empty = no security declared.
    /// An alternative that is empty (`{}`) means anonymous access is allowed.
    pub security: Vec<Vec<Requirement>>,
    /// The `responses` object as written (for the portal; `$ref`s not resolved).
    pub responses: Value,
}

/// Where a parameter is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamIn {
    Path,
    Query,
    Header,
    Cookie,
}

impl ParamIn {
    pub fn as_str(self) -> &'static str {
        match self {
            ParamIn::Path => "path",
            ParamIn::Query => "query",
            ParamIn::Header => "header",
            ParamIn::Cookie => "cookie",
        }
    }
}

/// A parameter object.
#[derive(Clone, Debug)]
pub struct Param {
    pub name: String,
    pub location: ParamIn,
    pub required: bool,
    /// `style` (defaults applied: `simple` for path and header, `form` for query and cookie).
    pub style: String,
    /// `explode` (default: true for `form`, false otherwise).
    pub explode: bool,
    pub allow_empty: bool,
    /// The parameter's schema (may hold `$ref`s into `Api::doc`); `None` when it uses
    /// `content` instead (reported as ignored) or has none.
    pub schema: Option<Value>,
    /// JSON pointer of the parameter object (after `$ref` resolution: where it is defined).
    pub pointer: String,
    pub description: String,
    pub example: Option<Value>,
}

/// A request body object.
#[derive(Clone, Debug)]
pub struct RequestBody {
    pub required: bool,
    /// Media types in document order (`application/json`, `application/*+json`, ...).
    pub content: Vec<MediaType>,
    pub pointer: String,
    pub description: String,
}

#[derive(Clone, Debug)]
pub struct MediaType {
    /// Lowercase media range as written (`application/json`, `*/*`).
    pub media: String,
    pub schema: Option<Value>,
    pub example: Option<Value>,
    pub pointer: String,
}

/// One scheme of a security requirement, with the scopes it asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Requirement {
    pub scheme: String,
    pub scopes: Vec<String>,
}

/// A security scheme from `components.securitySchemes`.
#[derive(Clone, Debug)]
pub struct SecurityScheme {
    pub name: String,
    pub kind: SchemeKind,
    pub pointer: String,
    pub description: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SchemeKind {
    /// `type: apiKey`: the key is in this header, query parameter or cookie.
    ApiKey { location: ParamIn, name: String },
    /// `type: http, scheme: bearer` (`bearerFormat` kept for the portal).
    Bearer { format: String },
    /// `type: http` with another scheme (basic, digest, ...).
    Http { scheme: String },
    /// `type: oauth2` (the flows are for the portal; the token is a bearer token).
    OAuth2,
    /// `type: openIdConnect` with its discovery URL.
    OpenIdConnect { url: String },
    /// `type: mutualTLS`.
    MutualTls,
}

/// A construct the gateway does not act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ignored {
    /// JSON pointer (`#/paths/~1pets/get/callbacks`).
    pub pointer: String,
    /// Why, in a few words (`callbacks are not served by a gateway`).
    pub reason: String,
}

/// Escapes one JSON pointer token (`~` → `~0`, `/` → `~1`).
pub fn pointer_token(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
}

/// One imported document, as `check` and the admin API show it.
#[derive(Debug)]
pub struct ImportedApi {
    pub api: Arc<Api>,
    /// The routes made from its operations (and its portal / MCP routes).
    pub routes: Vec<crate::route::RouteId>,
    /// What the document holds that the gateway does not act on (the loader's list and the
    /// import's), with JSON pointers.
    pub ignored: Vec<Ignored>,
}

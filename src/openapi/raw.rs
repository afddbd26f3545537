//! `[[openapi]]` as written in the config (serde types with spans, no logic): the import
//! that compiles them lives in `config::openapi`.

use serde::Deserialize;
use toml::Spanned;

use crate::config::units::RawSize;

/// Default validation size limit: a body above it is refused with 413, never streamed
/// unchecked.
pub const DEFAULT_VALIDATION_MAX_BODY: u64 = 1 << 20;

/// `[[openapi]]` as written.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawOpenApi {
    /// The OpenAPI 3.0 / 3.1 document (YAML or JSON), relative to the config file.
    #[schemars(with = "String")]
    pub spec: Spanned<String>,
    /// A name for the API (default: the document's file stem); unique among the blocks.
    #[schemars(with = "Option<String>")]
    pub name: Option<Spanned<String>>,
    /// The upstream every operation is proxied to.
    #[schemars(with = "String")]
    pub upstream: Spanned<String>,
    /// Prepended to every operation path on the gateway (`/v1`); default none.
    #[schemars(with = "Option<String>")]
    pub prefix: Option<Spanned<String>>,
    /// The upstream receives the operation's path without `prefix`.
    pub strip_prefix: Option<bool>,
    /// Named policies run first on every imported route (after matching `[[defaults]]`).
    #[schemars(with = "Option<Vec<String>>")]
    pub policies: Option<Vec<Spanned<String>>>,
    /// Security scheme name → named policy that enforces it (needed for http bearer,
    /// oauth2, openIdConnect, mutualTLS; optional for apiKey, which otherwise gets an
    /// `api_key` check on the scheme's header or query parameter).
    #[schemars(with = "Option<std::collections::BTreeMap<String, String>>")]
    pub security: Option<std::collections::BTreeMap<Spanned<String>, Spanned<String>>>,
    /// `"enforce"` (default), `"report"` (log and count, forward anyway) or `"off"`.
    #[schemars(with = "Option<String>")]
    pub validation: Option<Spanned<String>>,
    /// Per-operation modes that override `validation`: `{ createPet = "report" }`.
    #[schemars(with = "Option<std::collections::BTreeMap<String, String>>")]
    pub operation_validation: Option<std::collections::BTreeMap<Spanned<String>, Spanned<String>>>,
    /// Largest body validated (default 1 MiB); a longer one is refused with 413.
    #[schemars(with = "Option<RawSize>")]
    pub max_body: Option<Spanned<RawSize>>,
    /// The developer portal generated from the document.
    #[schemars(with = "Option<RawPortal>")]
    pub portal: Option<Spanned<RawPortal>>,
    /// Operations exposed as MCP tools.
    #[schemars(with = "Option<RawMcp>")]
    pub mcp: Option<Spanned<RawMcp>>,
}

/// `portal = { path, keys }`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawPortal {
    /// Where the portal is served (`/docs`).
    #[schemars(with = "String")]
    pub path: Spanned<String>,
    /// Self-service keys (off when absent).
    #[schemars(with = "Option<RawPortalKeys>")]
    pub keys: Option<Spanned<RawPortalKeys>>,
}

/// `portal.keys = { sign_in, policy }`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawPortalKeys {
    /// `"api_key"` (an existing key signs in) or `"jwt"` (a token the named policy accepts).
    #[schemars(with = "String")]
    pub sign_in: Spanned<String>,
    /// With `sign_in = "jwt"`: the jwt policy that verifies the token.
    #[schemars(with = "Option<String>")]
    pub policy: Option<Spanned<String>>,
}

/// `mcp = { path, tools, origins }`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawMcp {
    /// The MCP endpoint (`/mcp`).
    #[schemars(with = "String")]
    pub path: Spanned<String>,
    /// operationIds exposed as tools (default: every operation).
    #[schemars(with = "Option<Vec<String>>")]
    pub tools: Option<Vec<Spanned<String>>>,
    /// Browser origins (`https://app.example`, or `"*"`) allowed to call the endpoint besides
    /// loopback ones; a request with any other `Origin` gets 403 (DNS-rebinding defence).
    pub origins: Option<Vec<String>>,
}

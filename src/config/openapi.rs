//! `[[openapi]]`: imports an OpenAPI document as routes. Owns the block's raw type and the
//! import, which runs inside `compile` after the TOML routes: every operation becomes a
//! `Route` (named by its `operationId`, path = `prefix` + the template, methods from the
//! operation, proxied to the block's upstream) whose policies are the block's `policies`
//! (after any `[[defaults]]`), then one per security scheme (an `api_key` check made from an
//! `apiKey` scheme, or the named policy `security` maps the scheme to), then `authorize` for
//! the scopes, then the operation's `validate` policy, last, so a caller without credentials
//! hears 401 before a malformed request hears 400.
//!
//! The block's `portal` and `mcp` add one route each. Everything the import does not act on is
//! listed by `ringway check` with its JSON pointer (`Compiled::openapi`).
//!
//! Limits, decided here: an operation whose path puts a parameter inside a segment
//! (`/files/{name}.json`) is skipped and reported (ringway templates capture whole segments);
//! of several security alternatives only the first is enforced (the others are reported: the
//! gateway fails closed rather than guessing an OR it cannot express).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use toml::Spanned;

use super::defaults::route_policies;
use super::errors::Diag;
use super::model::{Action, ProxyAction, Rewrite, Route, UpstreamId};
use super::raw::RawConfig;
use crate::http1::Method;
use crate::openapi::model::{Api, Ignored, ImportedApi, Operation, ParamIn, SchemeKind};
use crate::openapi::raw::{RawOpenApi, RawPortal, DEFAULT_VALIDATION_MAX_BODY};
use crate::openapi::validate::{Mode, ValidatePolicy, Validator};
use crate::policy::pipeline::{
    ApiKeyCheck, Authorize, KeySource, NamedPolicy, Policies, Policy, PolicyId,
};
use crate::route::{self, HostPattern, PathPattern, RouteId, RouteSpec};

/// Where a route came from, for errors that must name both sides of a conflict.
#[derive(Clone, Debug)]
pub enum RouteOrigin {
    /// `routes[i]`.
    Toml(usize),
    /// An operation (or the portal / MCP endpoint) of `[[openapi]]` block `block`.
    OpenApi { block: usize, what: String },
}

/// What the import needs from the rest of the compile.
pub(super) struct ImportContext<'a> {
    pub raw: &'a RawConfig,
    pub file: &'a Path,
    pub upstream_ids: &'a HashMap<String, UpstreamId>,
    pub policy_ids: &'a HashMap<String, PolicyId>,
    /// `[limits] max_body_bytes` (or its default): imported routes' general body limit.
    pub default_max_body: u64,
}

/// Imports every block: appends routes (ids continue after `routes`), their specs and
/// origins, and the policies they need (to `policies`). Returns the imported APIs.
pub(super) fn import(
    cx: &ImportContext<'_>,
    policies: &mut Policies,
    (routes, specs, origins): RouteSink<'_>,
    defaults_used: &mut [bool],
    errs: &mut Diag,
) -> Vec<ImportedApi> {
    let mut out = Vec::new();
    let mut names: HashMap<String, usize> = HashMap::new();
    for (b, block) in cx.raw.openapi.iter().enumerate() {
        let field = |f: &str| format!("openapi[{b}].{f}");
        let Some(api) = load_block(cx, b, block, errs) else {
            continue;
        };
        if let Some(prev) = names.insert(api.name.clone(), b) {
            let span = block.name.as_ref().map_or(block.spec.span(), |n| n.span());
            errs.at(
                span,
                field("name"),
                format!("duplicate API name {:?} (also openapi[{prev}])", api.name),
            );
            continue;
        }
        let api = Arc::new(api);
        let mut imported = ImportedApi {
            api: api.clone(),
            routes: Vec::new(),
            ignored: api.ignored.clone(),
        };
        let mut block_cx = BlockCx {
            cx,
            b,
            block,
            api: &api,
            scheme_policies: HashMap::new(),
        };
        for op in &api.operations {
            let before = routes.len();
            block_cx.operation(
                op,
                policies,
                (routes, specs, origins),
                &mut imported.ignored,
                defaults_used,
                errs,
            );
            if routes.len() > before {
                imported.routes.push(RouteId(before as u32));
            }
        }
        block_cx.endpoints(&mut imported, (routes, specs, origins), errs);
        out.push(imported);
    }
    out
}

/// Reads the block's document; a failure is an error at `spec`.
fn load_block(
    cx: &ImportContext<'_>,
    b: usize,
    block: &RawOpenApi,
    errs: &mut Diag,
) -> Option<Api> {
    let rel = block.spec.get_ref();
    let dir = cx.file.parent().unwrap_or(Path::new("."));
    let path = dir.join(rel);
    let name = match &block.name {
        Some(n) if n.get_ref().is_empty() => {
            errs.at(n.span(), format!("openapi[{b}].name"), "must not be empty");
            return None;
        }
        Some(n) => n.get_ref().clone(),
        None => Path::new(rel)
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| format!("api{b}")),
    };
    match crate::openapi::load::load(&path, &name) {
        Ok(api) => Some(api),
        Err(e) => {
            errs.at(
                block.spec.span(),
                format!("openapi[{b}].spec"),
                format!("{}: {e}", path.display()),
            );
            None
        }
    }
}

type RouteSink<'r> = (
    &'r mut Vec<Route>,
    &'r mut Vec<RouteSpec>,
    &'r mut Vec<RouteOrigin>,
);

struct BlockCx<'a> {
    cx: &'a ImportContext<'a>,
    b: usize,
    block: &'a RawOpenApi,
    api: &'a Arc<Api>,
    /// Scheme name → the policy enforcing it (made once per block).
    scheme_policies: HashMap<String, PolicyId>,
}

impl BlockCx<'_> {
    fn field(&self, f: &str) -> String {
        format!("openapi[{}].{f}", self.b)
    }

    fn prefix(&self) -> String {
        self.block
            .prefix
            .as_ref()
            .map(|p| p.get_ref().trim_end_matches('/').to_string())
            .unwrap_or_default()
    }

    fn operation(
        &mut self,
        op: &Operation,
        policies: &mut Policies,
        (routes, specs, origins): RouteSink<'_>,
        ignored: &mut Vec<Ignored>,
        defaults_used: &mut [bool],
        errs: &mut Diag,
    ) {
        let spec_span = self.block.spec.span();
        let prefix = self.prefix();
        if !prefix.is_empty() && !prefix.starts_with('/') {
            // Reported once, by `endpoints`' caller check below; skip every operation.
            return;
        }
        let full = format!("{prefix}{}", op.path);
        let path = if full.contains('{') {
            match route::validate_template(&full) {
                Ok(_) => PathPattern::Template(full.clone()),
                Err(m) => {
                    ignored.push(Ignored {
                        pointer: op.pointer.clone(),
                        reason: format!(
                            "path {:?} cannot be a route template ({m}); the operation is not \
                             served",
                            op.path
                        ),
                    });
                    return;
                }
            }
        } else {
            PathPattern::Exact(full.clone())
        };
        let Some(method) = Method::from_name(&op.method) else {
            return;
        };
        let mut methods = method.bit();
        let doc_has_head = self
            .api
            .operations
            .iter()
            .any(|o| o.path == op.path && o.method == "HEAD");
        if method == Method::Get && !doc_has_head {
            methods |= Method::Head.bit();
        }
        let Some(&upstream) = self.cx.upstream_ids.get(self.block.upstream.get_ref()) else {
            // Reported once per block by `check_block`.
            return;
        };
        let id = RouteId(routes.len() as u32);
        let spec = RouteSpec {
            id,
            hosts: Vec::<HostPattern>::new(),
            path,
            methods,
            headers: Vec::new(),
            cookies: Vec::new(),
            query: Vec::new(),
            case_insensitive: false,
        };
        let name = Spanned::new(spec_span.clone(), op.id.clone());
        let (mut ids, cors, mut gated) = route_policies(
            self.cx.raw,
            policies,
            self.cx.policy_ids,
            self.block.policies.as_ref(),
            (&spec, &name),
            &self.field("policies"),
            defaults_used,
            errs,
        );
        let mut extra = Vec::new();
        self.security(op, policies, &mut extra, ignored, errs);
        if let Some(v) = self.validate_policy(op, policies, ignored, errs) {
            extra.push(v);
        }
        ids.extend_from_slice(&extra);
        if let Some(g) = gated.as_mut() {
            for (list, _) in &mut g.lists {
                list.extend_from_slice(&extra);
            }
        }
        let rewrite = if self.block.strip_prefix == Some(true) && !prefix.is_empty() {
            Rewrite::ReplacePrefix {
                prefix: prefix.clone(),
                with: String::new(),
            }
        } else {
            Rewrite::None
        };
        let max_body = self.max_body();
        routes.push(Route {
            id,
            name: op.id.clone(),
            spec: spec.clone(),
            action: Action::Proxy(ProxyAction {
                upstream,
                split: None,
                mirror: None,
                rewrite,
                preserve_host: true,
                retry: None,
            }),
            // The general limit; the validate policy refuses above its own (smaller) one.
            max_body: max_body.max(self.cx.default_max_body),
            access_log: true,
            policies: ids,
            cors,
            gated,
        });
        specs.push(spec);
        origins.push(RouteOrigin::OpenApi {
            block: self.b,
            what: format!(
                "operation {:?} ({}) of openapi[{}] ({})",
                op.id,
                op.pointer,
                self.b,
                self.block.spec.get_ref()
            ),
        });
    }

    fn max_body(&self) -> u64 {
        self.block
            .max_body
            .as_ref()
            .map_or(DEFAULT_VALIDATION_MAX_BODY, |m| m.get_ref().0)
    }

    /// The operation's validation mode: its `operation_validation` entry, else the block's
    /// `validation`, else enforce. Unknown words are reported once, by `check_modes`.
    fn mode(&self, op: &Operation) -> Mode {
        let own = self
            .block
            .operation_validation
            .iter()
            .flatten()
            .find(|(k, _)| k.get_ref() == &op.id)
            .map(|(_, v)| v);
        own.or(self.block.validation.as_ref())
            .and_then(|v| parse_mode(v.get_ref()))
            .unwrap_or(Mode::Enforce)
    }

    /// `validation` and `operation_validation` name known modes and operations.
    fn check_modes(&self, errs: &mut Diag) {
        let bad = |v: &Spanned<String>, field: String, errs: &mut Diag| {
            if parse_mode(v.get_ref()).is_none() {
                errs.at(
                    v.span(),
                    field,
                    format!(
                        "unknown mode {:?} (use \"enforce\", \"report\" or \"off\")",
                        v.get_ref()
                    ),
                );
            }
        };
        if let Some(v) = &self.block.validation {
            bad(v, self.field("validation"), errs);
        }
        for (k, v) in self.block.operation_validation.iter().flatten() {
            let field = self.field(&format!("operation_validation.{}", k.get_ref()));
            bad(v, field.clone(), errs);
            if !self.api.operations.iter().any(|o| &o.id == k.get_ref()) {
                errs.at(
                    k.span(),
                    field,
                    format!("the document has no operation {:?}", k.get_ref()),
                );
            }
        }
    }

    /// The operation's `validate` policy (none with validation = "off").
    fn validate_policy(
        &self,
        op: &Operation,
        policies: &mut Policies,
        ignored: &mut Vec<Ignored>,
        errs: &mut Diag,
    ) -> Option<PolicyId> {
        let mode = self.mode(op);
        if mode == Mode::Off {
            return None;
        }
        let max = usize::try_from(self.max_body()).unwrap_or(usize::MAX);
        match Validator::compile(self.api, op, max, ignored) {
            Ok(validator) => {
                let id = PolicyId(policies.list.len() as u32);
                let body = validator.body_bytes() > 0;
                policies.list.push(NamedPolicy {
                    name: format!("openapi:{}:validate:{}", self.api.name, op.id),
                    policy: Policy::Validate(Box::new(ValidatePolicy {
                        validator,
                        mode,
                        counters: crate::metrics::validation::validation_counters(
                            &self.api.name,
                            &op.id,
                        ),
                    })),
                });
                policies.reads_body |= body;
                Some(id)
            }
            Err(e) => {
                errs.at(
                    self.block.spec.span(),
                    self.field("spec"),
                    format!("{}: {e}", self.api.file.display()),
                );
                None
            }
        }
    }

    /// The policies enforcing the operation's security (the first alternative).
    fn security(
        &mut self,
        op: &Operation,
        policies: &mut Policies,
        out: &mut Vec<PolicyId>,
        ignored: &mut Vec<Ignored>,
        errs: &mut Diag,
    ) {
        if op.security.is_empty() || op.security.iter().any(Vec::is_empty) {
            // None declared, or `{}` among the alternatives: anonymous access is allowed.
            return;
        }
        for i in 1..op.security.len() {
            ignored.push(Ignored {
                pointer: format!("{}/security/{i}", op.pointer),
                reason: "only the first security alternative is enforced; clients that use \
                         this one are refused"
                    .into(),
            });
        }
        let mut scopes = Vec::new();
        for req in &op.security[0] {
            let Some(id) = self.scheme_policy(&req.scheme, policies, errs) else {
                continue;
            };
            if !out.contains(&id) {
                out.push(id);
            }
            let scheme = self.api.schemes.iter().find(|s| s.name == req.scheme);
            let scoped = scheme.is_some_and(|s| {
                matches!(
                    s.kind,
                    SchemeKind::Bearer { .. }
                        | SchemeKind::OAuth2
                        | SchemeKind::OpenIdConnect { .. }
                )
            });
            if scoped {
                scopes.extend(req.scopes.iter().cloned());
            } else if !req.scopes.is_empty() {
                ignored.push(Ignored {
                    pointer: format!("{}/security/0/{}", op.pointer, req.scheme),
                    reason: "roles on a non-OAuth scheme are not enforced".into(),
                });
            }
        }
        if !scopes.is_empty() {
            let id = PolicyId(policies.list.len() as u32);
            policies.list.push(NamedPolicy {
                name: format!("openapi:{}:scopes:{}", self.api.name, op.id),
                policy: Policy::Authorize(Authorize {
                    scopes,
                    ..Authorize::default()
                }),
            });
            out.push(id);
        }
    }

    /// The policy enforcing scheme `name`: the one `security` names, or an `api_key` check
    /// made from an `apiKey` scheme.
    fn scheme_policy(
        &mut self,
        name: &str,
        policies: &mut Policies,
        errs: &mut Diag,
    ) -> Option<PolicyId> {
        if let Some(id) = self.scheme_policies.get(name) {
            return Some(*id);
        }
        let mapped = self
            .block
            .security
            .iter()
            .flatten()
            .find(|(k, _)| k.get_ref() == name);
        let scheme = self.api.schemes.iter().find(|s| s.name == name)?;
        let id = match (mapped, &scheme.kind) {
            (Some((_, policy)), _) => match self.cx.policy_ids.get(policy.get_ref()) {
                Some(id) => *id,
                None => {
                    errs.at(
                        policy.span(),
                        self.field(&format!("security.{name}")),
                        format!("unknown policy {:?}", policy.get_ref()),
                    );
                    return None;
                }
            },
            (
                None,
                SchemeKind::ApiKey {
                    location,
                    name: key,
                },
            ) => {
                if self.cx.raw.api_keys.is_none() {
                    errs.at(
                        self.block.spec.span(),
                        self.field("spec"),
                        format!(
                            "security scheme {name:?} ({}) is an API key: add an [api_keys] \
                             section (the key store), or map the scheme to a policy with \
                             security = {{ {name} = \"<policy>\" }}",
                            scheme.pointer
                        ),
                    );
                    return None;
                }
                let source = match location {
                    ParamIn::Header if key.eq_ignore_ascii_case("authorization") => {
                        KeySource::Bearer
                    }
                    ParamIn::Header => KeySource::Header(key.to_ascii_lowercase()),
                    ParamIn::Query => {
                        let q: Box<[u8]> = key.as_bytes().into();
                        if !policies.secret_query.contains(&q) {
                            policies.secret_query.push(q);
                        }
                        KeySource::Query(key.as_bytes().to_vec())
                    }
                    _ => {
                        errs.at(
                            self.block.spec.span(),
                            self.field("spec"),
                            format!(
                                "security scheme {name:?} ({}) reads the key from a cookie: map \
                                 it to a policy with security = {{ {name} = \"<policy>\" }}",
                                scheme.pointer
                            ),
                        );
                        return None;
                    }
                };
                let id = PolicyId(policies.list.len() as u32);
                policies.list.push(NamedPolicy {
                    name: format!("openapi:{}:{name}", self.api.name),
                    policy: Policy::ApiKey(ApiKeyCheck {
                        sources: vec![source],
                        consumer_header: b"x-consumer"[..].into(),
                    }),
                });
                id
            }
            (None, kind) => {
                let what = match kind {
                    SchemeKind::Bearer { .. } | SchemeKind::OAuth2 => "a jwt or introspect policy",
                    SchemeKind::OpenIdConnect { .. } => {
                        "a jwt or introspect policy (with discovery)"
                    }
                    SchemeKind::MutualTls => "a client_cert policy",
                    _ => "a policy (ringway has no built-in check for it)",
                };
                errs.at(
                    self.block.spec.span(),
                    self.field("security"),
                    format!(
                        "security scheme {name:?} ({}) needs {what}: add security = {{ {name} = \
                         \"<policy>\" }} to this [[openapi]] block",
                        scheme.pointer
                    ),
                );
                return None;
            }
        };
        self.scheme_policies.insert(name.to_string(), id);
        Some(id)
    }

    /// Block-level checks and the portal / MCP routes.
    fn endpoints(&self, imported: &mut ImportedApi, sink: RouteSink<'_>, errs: &mut Diag) {
        let (routes, specs, origins) = sink;
        self.check_modes(errs);
        if let Some(p) = &self.block.prefix {
            let s = p.get_ref();
            if !s.is_empty() && (!s.starts_with('/') || s.contains('{')) {
                errs.at(
                    p.span(),
                    self.field("prefix"),
                    "prefix must start with '/' and hold no template",
                );
            } else if let Some(problem) = crate::route::path_literal_problem(s) {
                errs.at(p.span(), self.field("prefix"), format!("{s:?} {problem}"));
            }
        }
        if !self
            .cx
            .upstream_ids
            .contains_key(self.block.upstream.get_ref())
        {
            errs.at(
                self.block.upstream.span(),
                self.field("upstream"),
                format!("unknown upstream {:?}", self.block.upstream.get_ref()),
            );
        }
        for (k, _) in self.block.security.iter().flatten() {
            if !self.api.schemes.iter().any(|s| &s.name == k.get_ref()) {
                errs.at(
                    k.span(),
                    self.field(&format!("security.{}", k.get_ref())),
                    format!(
                        "the document has no security scheme {:?} (#/components/securitySchemes)",
                        k.get_ref()
                    ),
                );
            }
        }
        let prefix = self.prefix();
        if let Some(p) = &self.block.portal {
            let path = endpoint_path(&p.get_ref().path, &self.field("portal.path"), errs);
            let keys = self.portal_keys(p.get_ref(), errs);
            if let Some(path) = path {
                let portal = crate::openapi::portal::Portal {
                    base: path.trim_end_matches('/').to_string(),
                    apis: vec![self.api.clone()],
                    prefixes: vec![prefix.clone()],
                    keys,
                };
                let what = format!("the portal of openapi[{}] at {path:?}", self.b);
                let id = self.push_local(
                    (&mut *routes, &mut *specs, &mut *origins),
                    "portal",
                    (PathPattern::Prefix(path), 0),
                    Action::Portal(Arc::new(portal)),
                    what,
                );
                imported.routes.push(id);
            }
        }
        if let Some(m) = &self.block.mcp {
            let m = m.get_ref();
            let path = endpoint_path(&m.path, &self.field("mcp.path"), errs);
            let mut tools = Vec::new();
            match &m.tools {
                None => tools.extend(0..self.api.operations.len()),
                Some(list) => {
                    for (i, t) in list.iter().enumerate() {
                        match self
                            .api
                            .operations
                            .iter()
                            .position(|o| &o.id == t.get_ref())
                        {
                            Some(ix) => tools.push(ix),
                            None => errs.at(
                                t.span(),
                                self.field(&format!("mcp.tools[{i}]")),
                                format!("the document has no operation {:?}", t.get_ref()),
                            ),
                        }
                    }
                }
            }
            // An operation that is not served (its path cannot be a route) is no tool: a
            // call could only ever fail. `check` lists it with the operation's pointer.
            tools.retain(|&ix| {
                let op = &self.api.operations[ix];
                let served = imported
                    .routes
                    .iter()
                    .any(|id| routes.get(id.0 as usize).is_some_and(|r| r.name == op.id));
                if !served {
                    imported.ignored.push(Ignored {
                        pointer: op.pointer.clone(),
                        reason: "not served, so not an MCP tool".into(),
                    });
                }
                served
            });
            if let Some(path) = path {
                let server = crate::openapi::mcp::McpServer {
                    path: path.clone(),
                    api: self.api.clone(),
                    tools,
                    prefix: prefix.clone(),
                    origins: m.origins.clone().unwrap_or_default(),
                    listed: Default::default(),
                };
                let what = format!("the MCP endpoint of openapi[{}] at {path:?}", self.b);
                let bits = Method::Get.bit() | Method::Post.bit() | Method::Delete.bit();
                let id = self.push_local(
                    (&mut *routes, &mut *specs, &mut *origins),
                    "mcp",
                    (PathPattern::Exact(path), bits),
                    Action::Mcp(Arc::new(server)),
                    what,
                );
                imported.routes.push(id);
            }
        }
    }

    /// Adds the block's portal or MCP route (`kind`), answered by the gateway itself.
    fn push_local(
        &self,
        (routes, specs, origins): RouteSink<'_>,
        kind: &str,
        (path, methods): (PathPattern, u16),
        action: Action,
        what: String,
    ) -> RouteId {
        let id = RouteId(routes.len() as u32);
        let spec = local_spec(id, path, methods);
        let name = format!("openapi:{}:{kind}", self.api.name);
        routes.push(local_route(id, name, spec.clone(), action));
        specs.push(spec);
        origins.push(RouteOrigin::OpenApi {
            block: self.b,
            what,
        });
        id
    }

    fn portal_keys(
        &self,
        p: &RawPortal,
        errs: &mut Diag,
    ) -> Option<crate::openapi::portal::SignIn> {
        let k = p.keys.as_ref()?;
        let keys = k.get_ref();
        // Self-service writes keys while the gateway runs: only the Redis store takes live
        // writes (the keys file is edited by the CLI and applied on reload), so it is required.
        let redis_store = self.cx.raw.api_keys.as_ref().and_then(|a| a.store.as_ref());
        match redis_store {
            Some(s) if s.get_ref() == "redis" => {}
            _ => {
                errs.at(
                    k.span(),
                    self.field("portal.keys"),
                    "self-service keys need the Redis key store: set [api_keys] store = \"redis\" \
                     (with a [redis] table); the keys file takes no live writes",
                );
                return None;
            }
        }
        match keys.sign_in.get_ref().as_str() {
            "api_key" => Some(crate::openapi::portal::SignIn::ApiKey),
            "jwt" => {
                let Some(policy) = &keys.policy else {
                    errs.at(
                        keys.sign_in.span(),
                        self.field("portal.keys.policy"),
                        "sign_in = \"jwt\" needs policy = \"<jwt policy>\"",
                    );
                    return None;
                };
                let is_jwt = self
                    .cx
                    .raw
                    .policies
                    .iter()
                    .any(|(n, p)| n.get_ref() == policy.get_ref() && p.jwt.is_some());
                match self.cx.policy_ids.get(policy.get_ref()) {
                    Some(_) if !is_jwt => {
                        errs.at(
                            policy.span(),
                            self.field("portal.keys.policy"),
                            format!("policy {:?} is not a jwt policy", policy.get_ref()),
                        );
                        None
                    }
                    Some(id) => Some(crate::openapi::portal::SignIn::Jwt(id.0)),
                    None => {
                        errs.at(
                            policy.span(),
                            self.field("portal.keys.policy"),
                            format!("unknown policy {:?}", policy.get_ref()),
                        );
                        None
                    }
                }
            }
            other => {
                errs.at(
                    keys.sign_in.span(),
                    self.field("portal.keys.sign_in"),
                    format!("unknown sign-in {other:?} (use \"api_key\" or \"jwt\")"),
                );
                None
            }
        }
    }
}

/// A portal / MCP path: starts with '/', no template, not just "/".
fn endpoint_path(p: &Spanned<String>, field: &str, errs: &mut Diag) -> Option<String> {
    let s = p.get_ref();
    if !s.starts_with('/')
        || s.contains('{')
        || s.contains('}')
        || s.trim_end_matches('/').is_empty()
        || crate::route::path_literal_problem(s).is_some()
    {
        errs.at(
            p.span(),
            field,
            "must start with '/', hold no template, space, control character, '?' or '#', \
             and not be \"/\" itself",
        );
        return None;
    }
    Some(s.trim_end_matches('/').to_string())
}

fn local_spec(id: RouteId, path: PathPattern, methods: u16) -> RouteSpec {
    RouteSpec {
        id,
        hosts: Vec::new(),
        path,
        methods,
        headers: Vec::new(),
        cookies: Vec::new(),
        query: Vec::new(),
        case_insensitive: false,
    }
}

fn local_route(id: RouteId, name: String, spec: RouteSpec, action: Action) -> Route {
    Route {
        id,
        name,
        spec,
        action,
        // Portal forms and MCP messages are small; the handlers bound what they read.
        max_body: 1 << 20,
        access_log: true,
        policies: Vec::new(),
        cors: None,
        gated: None,
    }
}

/// Where route `id` came from, in words (for conflict and duplicate-name errors).
pub(super) fn describe(raw: &RawConfig, origins: &[RouteOrigin], id: RouteId) -> String {
    match origins.get(id.0 as usize) {
        Some(RouteOrigin::Toml(i)) => match raw.routes.get(*i) {
            Some(r) => format!("route {:?} (routes[{i}])", r.name.get_ref()),
            None => format!("routes[{i}]"),
        },
        Some(RouteOrigin::OpenApi { what, .. }) => what.clone(),
        None => format!("route #{}", id.0),
    }
}

/// The config span an error about route `id` points at.
pub(super) fn span_of(
    raw: &RawConfig,
    origins: &[RouteOrigin],
    id: RouteId,
) -> (std::ops::Range<usize>, String) {
    match origins.get(id.0 as usize) {
        Some(RouteOrigin::Toml(i)) => match raw.routes.get(*i) {
            Some(r) => (r.name.span(), format!("routes[{i}]")),
            None => (0..0, format!("routes[{i}]")),
        },
        Some(RouteOrigin::OpenApi { block, .. }) => match raw.openapi.get(*block) {
            Some(b) => (b.spec.span(), format!("openapi[{block}].spec")),
            None => (0..0, format!("openapi[{block}]")),
        },
        None => (0..0, String::new()),
    }
}

/// Route names are unique across TOML routes and imported operations; a clash names both.
pub(super) fn unique_names(
    raw: &RawConfig,
    routes: &[Route],
    origins: &[RouteOrigin],
    errs: &mut Diag,
) {
    let mut seen: HashMap<&str, RouteId> = HashMap::new();
    for r in routes {
        if let Some(first) = seen.insert(&r.name, r.id) {
            // Two TOML routes with one name are already reported by `compile_routes`.
            if matches!(origins.get(r.id.0 as usize), Some(RouteOrigin::Toml(_))) {
                continue;
            }
            let (span, field) = span_of(raw, origins, r.id);
            errs.at(
                span,
                field,
                format!(
                    "{} has the same name as {}; route names must be unique",
                    describe(raw, origins, r.id),
                    describe(raw, origins, first)
                ),
            );
        }
    }
}

fn parse_mode(s: &str) -> Option<Mode> {
    match s {
        "enforce" => Some(Mode::Enforce),
        "report" => Some(Mode::Report),
        "off" => Some(Mode::Off),
        _ => None,
    }
}

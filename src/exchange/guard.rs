//! The policy side of a request, between routing and the action: CORS preflights answered
//! before anything else, CORS headers for actual responses, then the route's policy pipeline
//! (`policy::pipeline`). A refusal comes back as a `ProxyError` for `exchange::respond`, with the
//! headers it needs (WWW-Authenticate, Retry-After, RateLimit) already in
//! `ExchangeFacts::resp_lines`.

use std::rc::Rc;

use crate::config::{Compiled, Route};
use crate::core::{Core, Generation};
use crate::http1::Method;
use crate::policy::client_cert::CertRefusal;
use crate::policy::pipeline::{self, Caller, Denial, Effects, Facts, Policy, PolicyId};
use crate::route::{Lookup, RouteId, RouteRequest};

use super::error::{ErrorKind, ProxyError};
use super::model::Exchange;
use super::route::HeadHeaders;
use super::wire::Downstream;

/// The policy `id` names, if any.
fn policy(cfg: &Compiled, id: Option<PolicyId>) -> Option<&Policy> {
    id.and_then(|id| cfg.policies.list.get(id.0 as usize))
        .map(|p| &p.policy)
}

/// The answer to a CORS preflight, if the request is one and the route serving the
/// requested method has a CORS policy (browsers send no credentials with a preflight, so it is
/// answered before any other policy runs).
pub fn answer_preflight(ex: &mut Exchange<'_>, cfg: &Compiled) -> Option<(u16, Vec<u8>)> {
    let head = ex.head;
    // Every other request leaves here before any header is looked up.
    if head.method != Method::Options {
        return None;
    }
    let acrm = head.header("access-control-request-method");
    if !crate::policy::cors::is_preflight(head.method, head.header("origin"), acrm) {
        return None;
    }
    preflight(ex, cfg, acrm.unwrap_or(b""))
}

/// Adds CORS headers to a refusal made before the policies ran (`route::resolve`: 405 for a
/// method the path's routes do not serve, 413 for a declared length past the route's bound),
/// from the CORS policy of the route the request was for (for a 405, the route the path
/// belongs to, found as a preflight finds it). A browser app then reads "method not allowed"
/// or "too large" instead of an opaque network error, as it reads the policies' 401 and 429.
pub fn cors_on_refusal(ex: &mut Exchange<'_>, cfg: &Compiled) {
    let head = ex.head;
    let Some(origin) = head.header("origin") else {
        return;
    };
    let Some(route) = ex.facts.route.or_else(|| path_route(ex, cfg, Method::ALL)) else {
        return;
    };
    let (_, route_cors) = cfg.route(route).policies_for(&ex.path, &ex.host);
    if let Some(Policy::Cors(cors)) = policy(cfg, route_cors) {
        cors.actual(Some(origin), &mut ex.facts.resp_lines);
    }
}

/// The first route that serves this request's host and path for one of `methods`, in that
/// order (a CORS answer belongs to the route the path is for, whatever the method).
fn path_route(
    ex: &Exchange<'_>,
    cfg: &Compiled,
    methods: impl IntoIterator<Item = Method>,
) -> Option<RouteId> {
    let head = ex.head;
    methods.into_iter().find_map(|method| {
        let req = RouteRequest {
            host: &ex.host,
            method,
            path: &ex.path,
            query: head.query(),
        };
        match cfg.table.lookup(&req, &HeadHeaders(head)) {
            Lookup::Found { route, .. } => Some(route),
            _ => None,
        }
    })
}

/// The answer to a CORS preflight (status and head so far) if the route serving the requested
/// method has a CORS policy. `None` = not ours to answer (no such route, or it has no CORS
/// policy): normal handling.
fn preflight(ex: &mut Exchange<'_>, cfg: &Compiled, requested: &[u8]) -> Option<(u16, Vec<u8>)> {
    let head = ex.head;
    // The route for the requested method; for a method no route serves, the route the path
    // belongs to (its CORS policy then refuses the method: an answer without CORS headers).
    let requested_method = Method::from_bytes(requested.trim_ascii());
    let route = path_route(
        ex,
        cfg,
        std::iter::once(requested_method).chain(Method::ALL),
    )?;
    let (_, route_cors) = cfg.route(route).policies_for(&ex.path, &ex.host);
    let Some(Policy::Cors(cors)) = policy(cfg, route_cors) else {
        return None;
    };
    ex.facts.route = Some(route);
    let status = cors.preflight_status();
    let mut out = Vec::with_capacity(512);
    let origin = head.header("origin").unwrap_or(b"");
    cors.preflight(
        origin,
        requested,
        head.header("access-control-request-headers"),
        &mut out,
    );
    Some((status, out))
}

/// Adds the route's CORS headers and runs its policies. `Ok` carries what the policies ask of
/// the rest of the request (header and query edits); `Err` is the refusal to render.
pub async fn run_policies<D: Downstream>(
    core: &Core,
    gen: &Rc<Generation>,
    ex: &mut Exchange<'_>,
    down: &mut D,
    route: &Route,
) -> Result<Effects, ProxyError> {
    let cfg = &gen.cfg;
    let mut fx = Effects::default();
    let head = ex.head;
    let (policies, route_cors) = route.policies_for(&ex.path, &ex.host);
    if let Some(Policy::Cors(cors)) = policy(cfg, route_cors) {
        cors.actual(head.header("origin"), &mut ex.facts.resp_lines);
    }
    if !policies.is_empty() {
        let mut caller = Caller::default();
        // The body prefix the route's policies read (forward auth, filters), buffered unread;
        // looked for only when some policy of this generation reads bodies at all.
        let want = match cfg.policies.reads_body {
            false => 0,
            true => policies
                .iter()
                .filter_map(|&id| policy(cfg, Some(id)))
                .map(Policy::body_bytes)
                .max()
                .unwrap_or(0),
        };
        let (body, body_complete) = if want > 0 {
            down.continue_body(head).await?;
            down.peek_body(head, want).await?
        } else {
            (&[][..], false)
        };
        // Decided once per request (`origin`): the log and the upstream see the same client.
        let client_ip = ex.facts.origin.client;
        let ip_text = if client_ip == ex.facts.origin.peer {
            std::borrow::Cow::Borrowed(ex.client.peer_ip.as_str())
        } else {
            std::borrow::Cow::Owned(client_ip.to_string())
        };
        let facts = Facts {
            head,
            route: &route.name,
            request_id: ex.rid.as_str(),
            client_ip,
            client_ip_text: &ip_text,
            ipv6_prefix: cfg.conn_limits.ipv6_prefix,
            unix_now: crate::civil::unix_now(),
            mono_now: crate::ratelimit::now_ns(),
            peer_cert: ex.client.peer_cert(),
            body,
            body_complete,
            proto: ex.facts.origin.scheme.as_str(),
            path: &ex.path,
            captures: &ex.captures,
        };
        let mut from = 0;
        let res = loop {
            let step = pipeline::run(
                &cfg.policies,
                policies,
                from,
                &facts,
                &mut caller,
                &mut fx,
                &mut core.tokens.borrow_mut(),
            );
            // A policy that needs Redis: await its decision, then go on after it.
            let i = match step {
                Ok(Some(i)) => i,
                Ok(None) => break Ok(()),
                Err(d) => break Err(d),
            };
            let Some(p) = policy(cfg, Some(policies[i])) else {
                break Ok(());
            };
            if let Err(d) = super::callout::settle(core, gen, p, &facts, &mut caller, &mut fx).await
            {
                break Err(d);
            }
            from = i + 1;
        };
        ex.facts.resp_lines.append(&mut fx.response_lines);
        ex.facts.policy_reply = fx.reply.take();
        ex.facts.rate_limited = fx.rate_limited;
        let tel = &cfg.telemetry;
        // The cache keys authenticated responses per consumer.
        let cache = fx.cache.is_some();
        ex.facts.verified_caller |= caller.key.is_some()
            || caller.jwt.is_some()
            || caller.cert.is_some()
            || caller.external.is_some();
        if tel.access_log.is_some() || tel.tracing.otlp.is_some() || cfg.usage.is_some() || cache {
            ex.facts.consumer = caller.consumer().map(std::sync::Arc::from);
        }
        if let Err(d) = res {
            let kind = match d {
                Denial::Unauthorized { reason, detail } => {
                    ex.facts.auth_failure = Some(reason);
                    ErrorKind::Unauthorized(detail)
                }
                Denial::Forbidden { reason, detail } => {
                    ex.facts.auth_failure = Some(reason);
                    ErrorKind::Forbidden(detail)
                }
                Denial::Limited => ErrorKind::TooManyRequests,
                Denial::LimiterUnavailable => ErrorKind::LimiterUnavailable,
                Denial::Reply => match &ex.facts.policy_reply {
                    Some(r) => ErrorKind::PolicyReply(r.status),
                    None => ErrorKind::PolicyFailed("a policy chose to answer but gave no answer"),
                },
                Denial::Unavailable { reason, detail } => {
                    ex.facts.auth_failure = Some(reason);
                    ErrorKind::AuthUnavailable(detail)
                }
                Denial::Failed { reason, detail } => {
                    ex.facts.auth_failure = Some(reason);
                    ErrorKind::PolicyFailed(detail)
                }
                Denial::BadRequest { detail } => ErrorKind::AmbiguousRequest(detail),
                Denial::ClientCert(r) => {
                    ex.facts.auth_failure = Some(r.reason());
                    match r {
                        CertRefusal::Missing => ErrorKind::ClientCertRequired,
                        _ => ErrorKind::ClientCertRefused(r.detail()),
                    }
                }
            };
            return Err(ProxyError::new(kind));
        }
    }

    Ok(fx)
}

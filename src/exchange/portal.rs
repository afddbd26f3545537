//! The developer portal action (`Action::Portal`): answers GET/HEAD for the pages and assets
//! under `portal.base` (rendered by `openapi::portal`), and the self-service POSTs under
//! `/keys` when `portal.keys` is on. Unknown pages are 404, other methods 405 with `Allow`.
//! Every answer carries the portal's security headers (a strict CSP, `nosniff`, no framing).
//!
//! A state-changing POST is refused with 403 when the browser says it came from another
//! site (`Origin` not this host, or `Sec-Fetch-Site: cross-site`), on top of the session's
//! CSRF token that `openapi::portal::keys` checks.

use std::rc::Rc;

use crate::config::Route;
use crate::core::{Core, Generation};
use crate::http1::{self, Method};
use crate::openapi::portal::{keys, pages, Portal, Target, SECURITY_HEADERS};

use super::body::{discard_body, read_body_bounded};
use super::error::ProxyError;
use super::model::Exchange;
use super::origin::Scheme;
use super::respond;
use super::wire::{Downstream, Outcome};

const HTML: &[u8] = b"text/html; charset=utf-8";

/// Answers one request to the portal route.
pub async fn serve<D: Downstream>(
    core: &Core,
    gen: &Rc<Generation>,
    ex: &mut Exchange<'_>,
    down: &mut D,
    route: &Route,
    portal: &Portal,
) -> Result<Outcome, ProxyError> {
    let path = String::from_utf8_lossy(&ex.path).into_owned();
    let method = ex.head.method;
    let target = portal.target(&path);
    if let (Target::Keys(sub), Some(sign_in)) = (&target, portal.keys) {
        let Some(allow) = keys::allowed(sub) else {
            discard_body(ex, down, route.max_body).await?;
            let body = pages::not_found(portal);
            return Ok(answer(core, ex, down, 404, HTML, b"", body.as_bytes()).await);
        };
        let post = allow == "POST";
        let ok = if post {
            method == Method::Post
        } else {
            matches!(method, Method::Get | Method::Head)
        };
        if !ok {
            return not_allowed(core, ex, down, route, allow).await;
        }
        if post && cross_site(ex) {
            discard_body(ex, down, route.max_body).await?;
            let body = b"cross-site form submissions are refused\n";
            return Ok(answer(core, ex, down, 403, b"text/plain; charset=utf-8", b"", body).await);
        }
        let form = if post {
            read_body_bounded(ex, down, keys::MAX_FORM.min(route.max_body)).await?
        } else {
            discard_body(ex, down, route.max_body).await?;
            Vec::new()
        };
        let cfg = &gen.cfg;
        let cx = keys::Ctx {
            portal,
            sign_in,
            redis: cfg
                .redis
                .as_ref()
                .and_then(|shared| core.redis(cfg).map(|c| (c, shared))),
            store: cfg.policies.keys.as_deref(),
            sync: cfg.policies.key_sync.as_ref(),
            policies: &cfg.policies,
            metered: cfg.usage.is_some(),
            tokens: &core.tokens,
            now: crate::civil::unix_now(),
            secure: ex.facts.origin.client_scheme == Scheme::Https,
        };
        let req = keys::Req {
            sub,
            cookie: ex.head.header("cookie"),
            body: &form,
        };
        let reply = keys::handle(&cx, &req).await;
        let ctype: &[u8] = if reply.body.is_empty() { b"" } else { HTML };
        return Ok(answer(
            core,
            ex,
            down,
            reply.status,
            ctype,
            &reply.fields,
            reply.body.as_bytes(),
        )
        .await);
    }
    if !matches!(method, Method::Get | Method::Head) {
        return not_allowed(core, ex, down, route, "GET, HEAD").await;
    }
    discard_body(ex, down, route.max_body).await?;
    match target {
        Target::Index => {
            let body = pages::index(portal);
            Ok(answer(core, ex, down, 200, HTML, b"", body.as_bytes()).await)
        }
        Target::Operation { api, prefix, op } => {
            let body = pages::operation(portal, api, prefix, op);
            Ok(answer(core, ex, down, 200, HTML, b"", body.as_bytes()).await)
        }
        Target::Asset(a) => {
            let cache = b"cache-control: public, max-age=300\r\n";
            Ok(answer(
                core,
                ex,
                down,
                200,
                a.content_type.as_bytes(),
                cache,
                a.body,
            )
            .await)
        }
        Target::Keys(_) | Target::NotFound => {
            let body = pages::not_found(portal);
            Ok(answer(core, ex, down, 404, HTML, b"", body.as_bytes()).await)
        }
    }
}

/// True when the browser says this request came from another site.
fn cross_site(ex: &Exchange<'_>) -> bool {
    if ex.head.header("sec-fetch-site").is_some_and(|v| {
        v.eq_ignore_ascii_case(b"cross-site") || v.eq_ignore_ascii_case(b"same-site")
    }) {
        return true;
    }
    let Some(origin) = ex.head.header("origin") else {
        return false;
    };
    // The browser's scheme: behind a trusted TLS-terminating proxy, the one it forwarded.
    let scheme = ex.facts.origin.client_scheme.as_str().as_bytes();
    let rest = match origin
        .strip_prefix(scheme)
        .and_then(|r| r.strip_prefix(b"://"))
    {
        Some(r) => r,
        None => return true,
    };
    // The authority as the client wrote it (with its port) when there is a Host header;
    // otherwise (HTTP/2 `:authority`) the routing host, which has no port.
    match ex.head.header("host") {
        Some(h) => !rest.eq_ignore_ascii_case(h),
        None => {
            let host = match rest.iter().rposition(|&b| b == b':') {
                Some(i) if !rest.ends_with(b"]") => &rest[..i],
                _ => rest,
            };
            !host.eq_ignore_ascii_case(ex.host.as_bytes())
        }
    }
}

async fn not_allowed<D: Downstream>(
    core: &Core,
    ex: &mut Exchange<'_>,
    down: &mut D,
    route: &Route,
    allow: &str,
) -> Result<Outcome, ProxyError> {
    discard_body(ex, down, route.max_body).await?;
    let mut fields = Vec::with_capacity(32);
    http1::write_header(&mut fields, b"allow", allow.as_bytes());
    let body = b"method not allowed\n";
    Ok(answer(
        core,
        ex,
        down,
        405,
        b"text/plain; charset=utf-8",
        &fields,
        body,
    )
    .await)
}

/// Sends a portal answer: security headers, content type (when `ctype` is not empty), the
/// extra `fields`, and the body (for HEAD only its length).
async fn answer<D: Downstream>(
    core: &Core,
    ex: &mut Exchange<'_>,
    down: &mut D,
    status: u16,
    ctype: &[u8],
    extra: &[u8],
    body: &[u8],
) -> Outcome {
    let mut fields = Vec::with_capacity(SECURITY_HEADERS.len() + extra.len() + 64);
    fields.extend_from_slice(SECURITY_HEADERS);
    if !ctype.is_empty() {
        http1::write_header(&mut fields, b"content-type", ctype);
    }
    fields.extend_from_slice(extra);
    if ex.head.method == Method::Head {
        http1::write_header(
            &mut fields,
            b"content-length",
            body.len().to_string().as_bytes(),
        );
        return respond::local(core, ex, down, status, &fields, None).await;
    }
    respond::local(core, ex, down, status, &fields, Some(body)).await
}

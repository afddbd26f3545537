//! The phases, in order, for one exchange:
//!
//! ```text
//! route::lookup → guard::answer_preflight → route::resolve → guard::run_policies
//!   → action: forward (prepare → send with retry → response head → body → finish)
//!             | cache_phase (routes with `cache`/`compress`: lookup → stored answer, or
//!               forward through `shape`, which compresses and records)
//!             | static | redirect | echo
//! ```
//!
//! Every phase returns `Result<_, ProxyError>`; `run` is the one place an error becomes a
//! response (`respond::error`). Once a response has started, phases no longer fail: they end
//! the exchange with `Outcome::Done(false)`. The wire records telemetry afterwards.

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::time::Instant;

use crate::config::Action;
use crate::core::{Core, Generation};

use super::begin::{self, Lent};
use super::error::ProxyError;
use super::memory::recorder::Memory;
use super::model::{ClientFacts, Exchange};
use super::wire::{Downstream, Outcome};
use super::{cache_phase, forward, guard, local, mcp, portal, respond, route};

/// Runs one exchange to its end on `down`.
pub async fn run<D: Downstream>(
    core: &Core,
    gen: &Rc<Generation>,
    ex: &mut Exchange<'_>,
    down: &mut D,
) -> Outcome {
    match phases(core, gen, ex, down).await {
        Ok(outcome) => outcome,
        Err(err) => respond::error(core, ex, down, err).await,
    }
}

async fn phases<D: Downstream>(
    core: &Core,
    gen: &Rc<Generation>,
    ex: &mut Exchange<'_>,
    down: &mut D,
) -> Result<Outcome, ProxyError> {
    let cfg = &gen.cfg;
    if let Some(own) = ex.client.security() {
        ex.facts.resp_lines.extend_from_slice(&own.lines);
    }
    let lookup = route::lookup(cfg, ex)?;
    // After the lookup, which normalizes the path and the host the redirect is built from.
    if let Some(port) = ex.client.redirect_https {
        return local::to_https(core, ex, down, port).await;
    }
    if let Some((status, fields)) = guard::answer_preflight(ex, cfg) {
        let body = (status != 204).then_some(&b""[..]);
        return Ok(respond::local(core, ex, down, status, &fields, body).await);
    }
    let route = match route::resolve(cfg, ex, lookup) {
        Ok(r) => r,
        Err(e) => {
            guard::cors_on_refusal(ex, cfg);
            return Err(e);
        }
    };
    let fx = guard::run_policies(core, gen, ex, down, route).await?;
    match &route.action {
        // Routes with a cache or compress policy take the cache phase, which forwards
        // through `forward::forward` itself (so `forward` never depends on it).
        Action::Proxy(p) if fx.cache.is_some() || fx.compress.is_some() => {
            cache_phase::forward(core, gen, ex, down, route, p, &fx).await
        }
        Action::Proxy(p) => forward::forward(core, gen, ex, down, route, p, &fx).await,
        Action::Static(s) => local::static_response(core, ex, down, route, s).await,
        Action::Redirect(r) => local::redirect(core, ex, down, route, r).await,
        Action::Echo => local::echo(core, ex, down, route).await,
        Action::Portal(p) => portal::serve(core, gen, ex, down, route, p).await,
        Action::Mcp(m) => mcp::serve(core, gen, ex, down, route, m, run_made).await,
    }
}

/// Runs a request the gateway made itself (an MCP tool call: `request` is its HTTP/1.1
/// bytes) through the phases, in generation `gen`, for `client` (the caller's own client, so
/// its address and identity are what the policies see), on a memory wire that hands the body
/// out whole and records at most `max_sent` body bytes. The exchange is begun and recorded
/// (metrics, access log, usage) like a wire's. `None`: the head does not parse.
///
/// Here, and handed to `mcp::serve` as a function, because it calls `run`: the MCP endpoint
/// must not import the phases that dispatch to it. Boxed as a trait object so the future's
/// type does not contain itself.
pub fn run_made<'a>(
    core: &'a Core,
    gen: &'a Rc<Generation>,
    request: &'a [u8],
    client: &'a ClientFacts,
    max_sent: usize,
) -> Pin<Box<dyn Future<Output = Option<Memory>> + 'a>> {
    Box::pin(async move {
        let (head, n) = match crate::http1::parse_request_head(request, &gen.cfg.limits) {
            Ok(Some(h)) => h,
            _ => return None,
        };
        let mut wire = Memory {
            body: request.get(n..).unwrap_or(&[]).to_vec(),
            whole: true,
            max_sent,
            ..Memory::default()
        };
        let mut ex = begin::exchange(core, gen, &head, client, Instant::now(), Lent::fresh());
        let _ = run(core, gen, &mut ex, &mut wire).await;
        ex.facts.bytes_in = request.len() as u64;
        ex.facts.bytes_out = wire.sent.len() as u64;
        core.telemetry.on_request(
            (&gen.cfg, &gen.slots),
            &ex.facts,
            &head,
            ex.rid.as_str(),
            ex.start,
        );
        Some(wire)
    })
}

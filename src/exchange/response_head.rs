//! The client's response head for a proxied answer, built from the upstream's (HTTP/1.1, or
//! HTTP/2 rewritten as an HTTP/1.1 head by `forward_h2`): the upstream's end-to-end fields
//! minus the ones the gateway owns, with the route's response edits, then started on the wire.
//!
//! Response heads are rebuilt, never copied: hop-by-hop fields and fields named in
//! `Connection` are dropped, the gateway owns `X-Request-Id`, the framing, and (with a CORS
//! policy on the route) every `Access-Control-*` field.

use crate::config::Route;
use crate::core::Core;
use crate::http1::{self, BodyFraming};
use crate::policy::pipeline::Effects;

use super::error::{ErrorKind, ProxyError, Side};
use super::model::Exchange;
use super::wire::{BodyLen, Downstream, Outcome, Response};

/// Builds the client's response head from the upstream's and starts the response. Returns
/// whether the client connection stays open; `Err` when a filter's response-headers callback
/// failed (nothing was started: the client gets the 500).
pub fn start_response<D: Downstream>(
    core: &Core,
    ex: &mut Exchange<'_>,
    down: &mut D,
    route: &Route,
    fx: &Effects,
    resp: &http1::ResponseHead,
) -> Result<bool, ProxyError> {
    let mut fields = std::mem::take(&mut ex.scratch);
    fields.clear();
    let edits = (!fx.response.is_empty()).then_some(&fx.response);
    filter_response_fields(resp, edits, &Owned::for_exchange(ex, route), &mut fields);
    // Filters with a response hook see (and edit) the fields the client would get.
    if let Some(w) = &fx.wasm {
        let end_of_stream = resp.body == BodyFraming::None;
        if let Err(f) = w.response_headers(resp.status, &mut fields, end_of_stream) {
            ex.scratch = fields;
            ex.facts.auth_failure = Some(f.reason);
            return Err(ProxyError::new(ErrorKind::PolicyFailed(
                "the route's filter failed",
            )));
        }
    }
    down.upstream_head(ex, resp);
    let body = match resp.body {
        BodyFraming::None => BodyLen::Bare,
        BodyFraming::Length(n) => BodyLen::Length(n),
        BodyFraming::Chunked | BodyFraming::CloseDelimited => BodyLen::Unknown,
    };
    // A drain that began while the upstream worked is announced here, so the client does not
    // reuse a connection about to close.
    let r = Response {
        status: resp.status,
        fields: &fields,
        body,
        keep: !ex.close && !core.draining(),
    };
    let keep = down.start_response(ex, &r);
    // Keep the buffer for the next request unless a large head grew it.
    if fields.capacity() <= 16 * 1024 {
        ex.scratch = fields;
    }
    Ok(keep)
}

/// The field lines of the client's 101 for the upstream's (`resp`): its end-to-end fields
/// filtered and edited as `start_response` does for any other answer, then `Connection:
/// upgrade` and the upstream's `Upgrade`. The 101 is where a WebSocket handshake's
/// `Sec-WebSocket-Accept` comes back, so the upstream's fields matter; but a removed or
/// gateway-owned field must not slip out through it.
pub fn switching_fields(
    ex: &Exchange<'_>,
    route: &Route,
    fx: &Effects,
    resp: &http1::ResponseHead,
) -> Vec<u8> {
    let mut fields = Vec::with_capacity(resp.buf.len() + 64);
    let edits = (!fx.response.is_empty()).then_some(&fx.response);
    filter_response_fields(resp, edits, &Owned::for_exchange(ex, route), &mut fields);
    http1::write_header(&mut fields, b"connection", b"upgrade");
    if let Some(u) = resp.header("upgrade") {
        http1::write_header(&mut fields, b"upgrade", u);
    }
    fields
}

/// Response fields the gateway writes itself, so an upstream's copies are dropped.
#[derive(Clone, Debug, Default)]
pub struct Owned {
    /// The route has a CORS policy: every `access-control-*` field.
    pub cors: bool,
    /// The TLS listener sets `strict-transport-security`.
    pub hsts: bool,
    /// The TLS listener sets `x-content-type-options`.
    pub nosniff: bool,
    /// `tracing.response_header`: the gateway writes the trace id under this name.
    pub trace: Option<std::rc::Rc<str>>,
}

impl Owned {
    /// The gateway writes `name` itself: an upstream's copy never reaches the client.
    pub fn owns(&self, name: &[u8]) -> bool {
        name.eq_ignore_ascii_case(b"x-request-id")
            || self
                .trace
                .as_deref()
                .is_some_and(|t| name.eq_ignore_ascii_case(t.as_bytes()))
            || (self.cors && name.len() > 15 && name[..15].eq_ignore_ascii_case(b"access-control-"))
            || (self.hsts && name.eq_ignore_ascii_case(b"strict-transport-security"))
            || (self.nosniff && name.eq_ignore_ascii_case(b"x-content-type-options"))
    }

    /// What the gateway writes itself on this exchange's responses on `route`.
    pub fn for_exchange(ex: &Exchange<'_>, route: &Route) -> Owned {
        let security = ex.client.security();
        Owned {
            cors: route.policies_for(&ex.path, &ex.host).1.is_some(),
            hsts: security.is_some_and(|s| s.hsts),
            nosniff: security.is_some_and(|s| s.nosniff),
            trace: ex.facts.trace_header.clone(),
        }
    }
}

/// The upstream's end-to-end fields with the route's response edits applied, minus the
/// fields the gateway writes itself (`own`). Public so the
/// benchmarks measure this exact code.
pub fn filter_response_fields(
    resp: &http1::ResponseHead,
    edits: Option<&crate::policy::transform::HeaderEdits>,
    own: &Owned,
    out: &mut Vec<u8>,
) {
    let conn_lists_names = http1::connection_names_fields(resp.headers());
    // A body's length is the gateway's framing; a HEAD or 304 answer keeps the length the
    // representation has (RFC 9110 8.6); a 1xx or 204 never has one (HTTP/2 clients reset a
    // 204 that says `content-length`).
    let drop_length = resp.body != BodyFraming::None || resp.status == 204 || resp.status < 200;
    let fields = resp.headers().filter(|&(n, _)| {
        !(http1::is_hop_by_hop(n)
            || (conn_lists_names && http1::named_in_connection(resp.headers(), n))
            || (drop_length && n.eq_ignore_ascii_case(b"content-length")))
    });
    filter_fields(fields, edits, own, out);
}

/// A stored response's field lines (`cache::Object::fields`, already free of hop-by-hop and
/// framing fields) with the route's response edits applied, minus the fields the gateway
/// writes itself: what a response served from the cache carries.
pub fn filter_stored_fields(
    lines: &[u8],
    edits: Option<&crate::policy::transform::HeaderEdits>,
    own: &Owned,
    out: &mut Vec<u8>,
) {
    filter_fields(crate::cache::object::field_lines(lines), edits, own, out);
}

/// The fields of `fields` the client gets, edited: the gateway's own fields (`X-Request-Id`,
/// and per `own` CORS, HSTS, nosniff) dropped, then the route's edits applied.
fn filter_fields<'a>(
    fields: impl Iterator<Item = (&'a [u8], &'a [u8])>,
    edits: Option<&crate::policy::transform::HeaderEdits>,
    own: &Owned,
    out: &mut Vec<u8>,
) {
    for (n, v) in fields {
        if own.owns(n) {
            continue;
        }
        match edits {
            Some(e) => {
                if let Some(name) = e.map_name(n) {
                    http1::write_header(out, name, v);
                }
            }
            None => http1::write_header(out, n, v),
        }
    }
    if let Some(e) = edits {
        for (name, value) in &e.add {
            if !http1::is_hop_by_hop(name)
                && !name.eq_ignore_ascii_case(b"content-length")
                && !name.eq_ignore_ascii_case(b"transfer-encoding")
            {
                http1::write_header(out, name, value);
            }
        }
    }
}

/// A response that started and then failed: answered with the error (502) when nothing of it
/// reached the client yet and the upstream was at fault, else the client connection closes
/// (an HTTP/1.1 client sees a short body or a missing last chunk).
pub fn failed_after_start<D: Downstream>(
    ex: &mut Exchange<'_>,
    down: &mut D,
    e: ProxyError,
) -> Result<Outcome, ProxyError> {
    if e.side() == Side::Upstream && down.retract() {
        return Err(e);
    }
    ex.facts.aborted = Some(e.side());
    Ok(Outcome::Done(false))
}

/// Ends a response whose body was relayed, with the upstream's trailers (`raw`, `name: value`
/// lines) after `response_trailers` filtered them.
pub async fn end_with_trailers<D: Downstream>(
    ex: &Exchange<'_>,
    down: &mut D,
    route: &Route,
    fx: &Effects,
    raw: &[u8],
) -> Result<(), ProxyError> {
    if !raw.is_empty() {
        let mut lines = Vec::new();
        response_trailers(ex, route, fx, raw, &mut lines);
        if !lines.is_empty() {
            down.queue_trailers(&lines);
        }
    }
    down.end_response().await
}

/// The upstream's response trailers (`raw`) the client may get, appended to `out`. A trailer
/// cannot say what the response head may not (RFC 9110 6.5.1, `http1::forwardable_trailers`),
/// nor restore or override what the gateway decided: fields it owns (`Owned`), fields the
/// route's response edits remove, rename or set, fields the policies wrote (rate-limit
/// counters, CORS), `Cache-Status` (the cache reports in the head, and a trailer could claim a
/// hit), and the trace header.
pub fn response_trailers(
    ex: &Exchange<'_>,
    route: &Route,
    fx: &Effects,
    raw: &[u8],
    out: &mut Vec<u8>,
) {
    let mut allowed = Vec::with_capacity(raw.len());
    http1::forwardable_trailers(raw, &mut allowed);
    let own = Owned::for_exchange(ex, route);
    let written = |n: &[u8]| {
        crate::cache::object::field_lines(&ex.facts.resp_lines)
            .any(|(w, _)| w.eq_ignore_ascii_case(n))
    };
    for (n, v) in crate::cache::object::field_lines(&allowed) {
        if own.owns(n)
            || n.eq_ignore_ascii_case(b"cache-status")
            || fx.response.touches(n)
            || written(n)
        {
            continue;
        }
        http1::write_header(out, n, v);
    }
}

//! The route phase: normalize the path, refuse what no route may see (bad escapes, unknown
//! expectations), look the request up in the route table, and hold a declared body to the
//! route's limit. (CORS preflights are answered between `lookup` and `resolve`, by
//! `exchange::guard`.)

use crate::config::{Compiled, Route};
use crate::http1::{self, BodyFraming, RequestHead};
use crate::route::{HeaderSource, Lookup, RouteRequest};

use super::error::{ErrorKind, ProxyError};
use super::model::Exchange;

/// Header access for the router.
pub struct HeadHeaders<'a>(pub &'a RequestHead);

impl HeaderSource for HeadHeaders<'_> {
    fn header(&self, lowercase_name: &str) -> Option<&[u8]> {
        self.0.header(lowercase_name)
    }

    fn cookie(&self, name: &str) -> Option<&[u8]> {
        cookie(self.0, name)
    }
}

/// The value of cookie `name`. HTTP/1.1 clients may (against RFC 6265) send several `Cookie`
/// lines: all are read, the first one with the name decides.
pub fn cookie<'h>(head: &'h RequestHead, name: &str) -> Option<&'h [u8]> {
    head.headers()
        .filter(|(n, _)| n.eq_ignore_ascii_case(b"cookie"))
        .find_map(|(_, v)| http1::cookie::find(v, name.as_bytes()))
}

/// Looks the exchange up in the route table. Fills in `ex.path` and `ex.host`; `resolve`
/// turns the answer into a route or the error to answer with.
pub fn lookup(cfg: &Compiled, ex: &mut Exchange<'_>) -> Result<Lookup, ProxyError> {
    let head = ex.head;
    ex.path = match http1::normalize_path_with(head.path(), &cfg.paths) {
        Ok(p) if p.is_empty() => std::borrow::Cow::Borrowed(&b"/"[..]),
        Ok(p) => p,
        Err(why) => return Err(ProxyError::new(ErrorKind::BadBody(why.reason()))),
    };
    if head.expect_other {
        return Err(ProxyError::new(ErrorKind::ExpectationFailed));
    }
    head.host_for_routing(&mut ex.host);
    if let Some(tls) = ex.client.tls.as_deref() {
        if !tls.authoritative(&ex.host) {
            return Err(ProxyError::new(ErrorKind::Misdirected));
        }
    }
    Ok(cfg.table.lookup(
        &RouteRequest {
            host: &ex.host,
            method: head.method,
            path: &ex.path,
            query: head.query(),
        },
        &HeadHeaders(head),
    ))
}

/// The route a lookup found (recorded with its captures), or 405 / 404; a declared body over
/// the route's limit is refused here, before anything else runs.
pub fn resolve<'c>(
    cfg: &'c Compiled,
    ex: &mut Exchange<'_>,
    lookup: Lookup,
) -> Result<&'c Route, ProxyError> {
    let route = match lookup {
        Lookup::Found { route, captures } => {
            ex.facts.route = Some(route);
            ex.captures = captures;
            cfg.route(route)
        }
        Lookup::MethodNotAllowed { allow } => {
            return Err(ProxyError::new(ErrorKind::MethodNotAllowed(allow)))
        }
        Lookup::NotFound => return Err(ProxyError::new(ErrorKind::NoRoute)),
    };
    if let BodyFraming::Length(n) = ex.head.body {
        if n > route.max_body {
            return Err(ProxyError::new(ErrorKind::BodyTooLarge));
        }
    }
    Ok(route)
}

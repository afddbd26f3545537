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

/// Route conditions read a header under every spelling a backend may read as its name
/// (`X_Env` is `HTTP_X_ENV` to CGI, WSGI, Rack and PHP, as `X-Env` is) and a cookie under
/// every spelling some cookie parser reads as its name (`http1::cookie::lenient_values`), so a
/// client cannot step around a condition by respelling what the backend acts on.
impl HeaderSource for HeadHeaders<'_> {
    fn header(&self, lowercase_name: &str) -> Option<&[u8]> {
        self.0
            .headers()
            .find(|(n, _)| http1::same_field_loosely(n, lowercase_name.as_bytes()))
            .map(|(_, v)| v)
    }

    fn cookie(&self, name: &str) -> Option<&[u8]> {
        self.cookies(name).next()
    }

    fn header_copies(&self, lowercase_name: &str) -> usize {
        self.0
            .headers()
            .filter(|(n, _)| http1::same_field_loosely(n, lowercase_name.as_bytes()))
            .count()
    }

    fn cookie_copies(&self, name: &str) -> usize {
        self.cookies(name).count()
    }
}

impl<'h> HeadHeaders<'h> {
    fn cookies<'n>(&self, name: &'n str) -> impl Iterator<Item = &'h [u8]> + 'n
    where
        'h: 'n,
    {
        self.0
            .headers()
            .filter(|(n, _)| n.eq_ignore_ascii_case(b"cookie"))
            .flat_map(|(_, v)| http1::cookie::lenient_values(v, name.as_bytes()))
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
    if let Some(detail) = cfg
        .table
        .repeated_condition(head.query(), &HeadHeaders(head))
    {
        return Err(ProxyError::new(ErrorKind::AmbiguousRequest(detail)));
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

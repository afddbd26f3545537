//! CORS per route, following the CORS protocol of the Fetch standard.
//!
//! `compile` validates a `RawCors` into an immutable `CorsPolicy`; the request path only compares
//! bytes and appends precomputed header lines to `out`, so it never allocates beyond growing
//! `out` and never panics on request bytes. Only bytes that matched a validated config value
//! are ever reflected, so nothing written can carry a control character.
//!
//! Decisions:
//! - `"https://*.example.com"` matches one *or more* subdomain labels (`a.example.com`,
//!   `a.b.example.com`) but never the apex `example.com`; each matched label is non-empty
//!   letters, digits and `-`. The wildcard is only allowed as the whole first label.
//! - With `credentials = true`, a wildcard must sit under a registrable domain: the part after
//!   `*.` needs at least two labels and must not be one of `TWO_LABEL_PUBLIC_SUFFIXES` (co.uk,
//!   com.au, github.io, ...). `https://*.com` or `https://*.co.uk` would hand credentialed
//!   access to any site anyone can register. There is no full public-suffix list; the built-in
//!   list covers the common two-label suffixes.
//! - `origins = ["*"]` with `credentials = true` is a compile error: browsers refuse `*` with
//!   credentials, and reflecting every origin instead would let any site make credentialed
//!   calls. The same holds for `"*"` in `methods`, `headers` and `expose_headers`.
//! - A disallowed (or absent) Origin gets no `Access-Control-*` header at all. `Vary` is still
//!   written whenever the answer depends on the Origin, so shared caches keep the variants apart.
//! - A preflight is allowed only if the origin, the method and *every* requested header are
//!   allowed. `Access-Control-Allow-Headers` then echoes the requested names (lowercased), which
//!   also covers `Authorization` under `headers = ["*"]` (a literal `*` never does).
//!   `Access-Control-Allow-Methods` is the configured list, or the requested method for `"*"`.
//! - Origins compare ASCII-case-insensitively and the request's own Origin bytes are reflected.
//!   The opaque origin `null` cannot be configured (sandboxed iframes and `file:` pages send it).
//! - Method names are case-sensitive (as on the wire); `"get"` in config is rejected as a typo.

use crate::http1::trim_ows;
use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;

use crate::config::errors::Fail;
use crate::config::units::RawDuration;
use crate::http1::{is_tchar, write_header, Method};

/// `cors = { ... }` inside a named policy table.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawCors {
    /// Exact origins (`https://app.example.com`), one-wildcard-label patterns
    /// (`https://*.example.com`) or a lone `"*"`.
    #[schemars(with = "Vec<String>")]
    pub origins: Spanned<Vec<Spanned<String>>>,
    /// Allowed methods; default `GET, HEAD, POST`. `"*"` = any (not with credentials).
    #[schemars(with = "Option<Vec<String>>")]
    pub methods: Option<Vec<Spanned<String>>>,
    /// Allowed request headers (case-insensitive). `"*"` = any (not with credentials).
    #[schemars(with = "Option<Vec<String>>")]
    pub headers: Option<Vec<Spanned<String>>>,
    /// Response headers scripts may read. `"*"` = all (not with credentials).
    #[schemars(with = "Option<Vec<String>>")]
    pub expose_headers: Option<Vec<Spanned<String>>>,
    /// Send `Access-Control-Allow-Credentials: true` (default false).
    #[schemars(with = "Option<bool>")]
    pub credentials: Option<Spanned<bool>>,
    /// `Access-Control-Max-Age` for preflight answers (whole seconds).
    #[schemars(with = "Option<RawDuration>")]
    pub max_age: Option<Spanned<RawDuration>>,
    /// Status of an answered preflight, 200..=299 (default 204).
    #[schemars(with = "Option<i64>")]
    pub preflight_status: Option<Spanned<i64>>,
}

/// A compiled CORS policy (immutable, shared by all workers).
#[derive(Debug)]
pub struct CorsPolicy {
    origins: Origins,
    methods: NameList,
    /// Precomputed `Access-Control-Allow-Methods` value for `NameList::List`.
    allow_methods: Box<[u8]>,
    /// Lowercase names.
    headers: NameList,
    expose: Option<Box<[u8]>>,
    credentials: bool,
    max_age: Option<Box<[u8]>>,
    preflight_status: u16,
}

#[derive(Debug)]
enum Origins {
    Any,
    List {
        /// Lowercase serialized origins.
        exact: Box<[Box<[u8]>]>,
        wild: Box<[WildOrigin]>,
    },
}

/// `scheme://*.suffix`: `prefix` is `scheme://`, `suffix` starts with the `.` after `*`.
#[derive(Debug)]
struct WildOrigin {
    prefix: Box<[u8]>,
    suffix: Box<[u8]>,
}

impl WildOrigin {
    fn matches(&self, origin: &[u8]) -> bool {
        let (p, s) = (self.prefix.len(), self.suffix.len());
        if origin.len() <= p + s {
            return false;
        }
        let (head, rest) = origin.split_at(p);
        let (labels, tail) = rest.split_at(rest.len() - s);
        head.eq_ignore_ascii_case(&self.prefix)
            && tail.eq_ignore_ascii_case(&self.suffix)
            && labels
                .split(|&b| b == b'.')
                .all(|l| !l.is_empty() && l.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'-'))
    }
}

#[derive(Debug)]
enum NameList {
    Any,
    List(Box<[Box<[u8]>]>),
}

impl NameList {
    fn contains(&self, name: &[u8], case_insensitive: bool) -> bool {
        match self {
            NameList::Any => true,
            NameList::List(l) if case_insensitive => l.iter().any(|n| n.eq_ignore_ascii_case(name)),
            NameList::List(l) => l.iter().any(|n| **n == *name),
        }
    }
}

const VARY_PREFLIGHT: &[u8] =
    b"origin, access-control-request-method, access-control-request-headers";
const VARY_PREFLIGHT_NO_ORIGIN: &[u8] =
    b"access-control-request-method, access-control-request-headers";

/// True for a CORS preflight: `OPTIONS` carrying both `Origin` and
/// `Access-Control-Request-Method`.
pub fn is_preflight(method: Method, origin: Option<&[u8]>, request_method: Option<&[u8]>) -> bool {
    method == Method::Options && origin.is_some() && request_method.is_some()
}

impl CorsPolicy {
    /// Writes the preflight response headers into `out`; returns true if the preflight is
    /// allowed. A refused preflight gets only `Vary` (no `Access-Control-*` header), so the
    /// browser blocks the actual request.
    pub fn preflight(
        &self,
        origin: &[u8],
        request_method: &[u8],
        request_headers: Option<&[u8]>,
        out: &mut Vec<u8>,
    ) -> bool {
        let vary = if self.depends_on_origin() {
            VARY_PREFLIGHT
        } else {
            VARY_PREFLIGHT_NO_ORIGIN
        };
        write_header(out, b"vary", vary);
        let method_ok = !request_method.is_empty()
            && request_method.iter().all(|&b| is_tchar(b))
            && self.methods.contains(request_method, false);
        let headers_ok = request_headers.is_none_or(|h| {
            list_items(h).all(|n| n.iter().all(|&b| is_tchar(b)) && self.headers.contains(n, true))
        });
        if !(method_ok && headers_ok && self.origin_allowed(origin)) {
            return false;
        }
        self.write_allow_origin(origin, out);
        match self.methods {
            NameList::Any => write_header(out, b"access-control-allow-methods", request_method),
            NameList::List(_) => {
                write_header(out, b"access-control-allow-methods", &self.allow_methods)
            }
        }
        if let Some(h) = request_headers {
            if list_items(h).next().is_some() {
                out.extend_from_slice(b"access-control-allow-headers: ");
                for (i, name) in list_items(h).enumerate() {
                    if i > 0 {
                        out.extend_from_slice(b", ");
                    }
                    out.extend(name.iter().map(u8::to_ascii_lowercase));
                }
                out.extend_from_slice(b"\r\n");
            }
        }
        if let Some(age) = &self.max_age {
            write_header(out, b"access-control-max-age", age);
        }
        true
    }

    /// Headers for an actual (non-preflight) response: Allow-Origin, Allow-Credentials,
    /// Expose-Headers, Vary. With `origins = ["*"]` the headers are static and written even
    /// without an Origin; otherwise `Vary: origin` is always written and the rest only for an
    /// allowed Origin.
    pub fn actual(&self, origin: Option<&[u8]>, out: &mut Vec<u8>) {
        if self.depends_on_origin() {
            write_header(out, b"vary", b"origin");
            match origin {
                Some(o) if self.origin_allowed(o) => self.write_allow_origin(o, out),
                _ => return,
            }
        } else {
            write_header(out, b"access-control-allow-origin", b"*");
        }
        if let Some(e) = &self.expose {
            write_header(out, b"access-control-expose-headers", e);
        }
    }

    /// Status for an answered preflight (200..=299, default 204).
    pub fn preflight_status(&self) -> u16 {
        self.preflight_status
    }

    /// Whether `origin` (the request's `Origin` value) is allowed.
    pub fn origin_allowed(&self, origin: &[u8]) -> bool {
        match &self.origins {
            Origins::Any => true,
            Origins::List { exact, wild } => {
                exact.iter().any(|o| o.eq_ignore_ascii_case(origin))
                    || wild.iter().any(|w| w.matches(origin))
            }
        }
    }

    fn depends_on_origin(&self) -> bool {
        !matches!(self.origins, Origins::Any) || self.credentials
    }

    /// Allow-Origin (and Allow-Credentials) for an origin already known to be allowed.
    fn write_allow_origin(&self, origin: &[u8], out: &mut Vec<u8>) {
        if self.depends_on_origin() {
            write_header(out, b"access-control-allow-origin", origin);
        } else {
            write_header(out, b"access-control-allow-origin", b"*");
        }
        if self.credentials {
            write_header(out, b"access-control-allow-credentials", b"true");
        }
    }
}

/// Non-empty comma-separated elements of a header list value, trimmed of optional whitespace.
fn list_items(v: &[u8]) -> impl Iterator<Item = &[u8]> {
    v.split(|&b| b == b',')
        .map(trim_ows)
        .filter(|s| !s.is_empty())
}

/// Validates `raw` into a `CorsPolicy`; reports every problem through `err` (span, field
/// suffix such as `origins[2]`, message) and returns `None` if there was any.
pub fn compile(raw: &RawCors, err: &mut Fail<'_>) -> Option<CorsPolicy> {
    let mut failed = false;
    let mut fail = |span: Range<usize>, field: &str, msg: String| {
        failed = true;
        err(span, field, msg);
    };
    let credentials = raw.credentials.as_ref().is_some_and(|c| *c.get_ref());
    let origins = origins(raw, credentials, &mut fail);
    let (methods, allow_methods) = methods(raw, credentials, &mut fail);
    let headers = name_list(
        &raw.headers,
        "headers",
        credentials,
        &mut fail,
        &star_with_credentials,
    );
    let expose = name_list(
        &raw.expose_headers,
        "expose_headers",
        credentials,
        &mut fail,
        &star_with_credentials,
    );
    let expose = match expose {
        NameList::Any => Some(Box::from(&b"*"[..])),
        NameList::List(l) if l.is_empty() => None,
        NameList::List(l) => Some(join(l.iter())),
    };
    let preflight_status = match &raw.preflight_status {
        None => 204,
        Some(s) => match u16::try_from(*s.get_ref()) {
            Ok(code) if (200..=299).contains(&code) => code,
            _ => {
                fail(
                    s.span(),
                    "preflight_status",
                    "a preflight answer needs an ok status, 200..=299".into(),
                );
                204
            }
        },
    };
    let max_age = raw.max_age.as_ref().map(|d| {
        d.get_ref()
            .0
            .as_secs()
            .to_string()
            .into_bytes()
            .into_boxed_slice()
    });

    if failed {
        return None;
    }
    Some(CorsPolicy {
        origins,
        methods,
        allow_methods,
        headers,
        expose,
        credentials,
        max_age,
        preflight_status,
    })
}

fn star_with_credentials(what: &str) -> String {
    format!(
        "`*` in {what} cannot be combined with credentials = true: browsers reject it; \
         list the allowed values"
    )
}

/// `origins`: `"*"` alone, or exact origins and `https://*.domain` wildcards; with
/// credentials neither `*` nor a wildcard over a public suffix.
fn origins(raw: &RawCors, credentials: bool, fail: &mut Fail<'_>) -> Origins {
    let mut any = false;
    let mut exact: Vec<Box<[u8]>> = Vec::new();
    let mut wild: Vec<WildOrigin> = Vec::new();
    if raw.origins.get_ref().is_empty() {
        fail(
            raw.origins.span(),
            "origins",
            "list at least one origin (or \"*\")".into(),
        );
    }
    for (i, o) in raw.origins.get_ref().iter().enumerate() {
        let field = format!("origins[{i}]");
        match parse_origin(o.get_ref()) {
            Ok(OriginSpec::Any) if credentials => fail(
                o.span(),
                &field,
                "`*` cannot be combined with credentials = true: browsers reject it, and \
                 reflecting every origin would let any site make credentialed calls; list \
                 the allowed origins"
                    .into(),
            ),
            Ok(OriginSpec::Any) => any = true,
            Ok(OriginSpec::Exact(e)) => {
                if !exact.contains(&e) {
                    exact.push(e);
                }
            }
            Ok(OriginSpec::Wild(w)) if credentials && wildcard_over_public_suffix(&w) => fail(
                o.span(),
                &field,
                format!(
                    "{:?}: a wildcard over a public suffix cannot be combined with credentials = \
                     true: anyone can register a site under it. Put at least a registrable \
                     domain after `*.`, like \"https://*.example.co.uk\"",
                    o.get_ref()
                ),
            ),
            Ok(OriginSpec::Wild(w)) => wild.push(w),
            Err(m) => fail(o.span(), &field, m),
        }
    }
    if any && (!exact.is_empty() || !wild.is_empty()) {
        fail(
            raw.origins.span(),
            "origins",
            "\"*\" allows every origin; it must be the only entry".into(),
        );
    }
    if any {
        Origins::Any
    } else {
        Origins::List {
            exact: exact.into(),
            wild: wild.into(),
        }
    }
}

/// `methods` (default GET, HEAD, POST; case-sensitive tokens; `*` = any) and the
/// `Access-Control-Allow-Methods` value for the listed ones.
fn methods(raw: &RawCors, credentials: bool, fail: &mut Fail<'_>) -> (NameList, Box<[u8]>) {
    let mut methods: Option<Vec<Box<[u8]>>> = Some(Vec::new());
    match &raw.methods {
        None => {
            methods = Some(
                [Method::Get, Method::Head, Method::Post]
                    .iter()
                    .map(|m| m.as_str().as_bytes().into())
                    .collect(),
            )
        }
        Some(list) => {
            for (i, m) in list.iter().enumerate() {
                let field = format!("methods[{i}]");
                let s = m.get_ref();
                if s == "*" {
                    if credentials {
                        fail(m.span(), &field, star_with_credentials("methods"));
                    }
                    methods = None;
                } else if s.is_empty() || !s.bytes().all(is_tchar) {
                    fail(m.span(), &field, format!("{s:?} is not a method name"));
                } else if Method::from_name(s).is_none()
                    && Method::from_name(&s.to_ascii_uppercase()).is_some()
                {
                    fail(
                        m.span(),
                        &field,
                        format!(
                            "method names are case-sensitive: write {:?}",
                            s.to_ascii_uppercase()
                        ),
                    );
                } else if let Some(l) = methods.as_mut() {
                    if !l.iter().any(|x| **x == *s.as_bytes()) {
                        l.push(s.as_bytes().into());
                    }
                }
            }
        }
    }
    let allow_methods = join(methods.iter().flatten());
    let methods = match methods {
        None => NameList::Any,
        Some(l) => NameList::List(l.into()),
    };
    (methods, allow_methods)
}

/// Header name list (lowercased tokens); `"*"` anywhere makes it `Any`.
fn name_list(
    raw: &Option<Vec<Spanned<String>>>,
    what: &str,
    credentials: bool,
    fail: &mut Fail<'_>,
    star_msg: &dyn Fn(&str) -> String,
) -> NameList {
    let mut names: Vec<Box<[u8]>> = Vec::new();
    let mut any = false;
    for (i, h) in raw.iter().flatten().enumerate() {
        let field = format!("{what}[{i}]");
        let s = h.get_ref();
        if s == "*" {
            if credentials {
                fail(h.span(), &field, star_msg(what));
            }
            any = true;
        } else if s.is_empty() || !s.bytes().all(is_tchar) {
            fail(h.span(), &field, format!("{s:?} is not a header name"));
        } else {
            let lower: Box<[u8]> = s.to_ascii_lowercase().into_bytes().into();
            if !names.contains(&lower) {
                names.push(lower);
            }
        }
    }
    if any {
        NameList::Any
    } else {
        NameList::List(names.into())
    }
}

fn join<'a>(items: impl Iterator<Item = &'a Box<[u8]>>) -> Box<[u8]> {
    let mut v = Vec::new();
    for (i, item) in items.enumerate() {
        if i > 0 {
            v.extend_from_slice(b", ");
        }
        v.extend_from_slice(item);
    }
    v.into()
}

enum OriginSpec {
    Any,
    Exact(Box<[u8]>),
    Wild(WildOrigin),
}

/// Two-label public suffixes (ICANN second-level registries and common shared hosting
/// domains) under which a credentialed wildcard is refused. Not the full public-suffix list.
#[rustfmt::skip]
const TWO_LABEL_PUBLIC_SUFFIXES: &[&str] = &[
    // Country-code second-level registries.
    "co.uk", "org.uk", "me.uk", "ltd.uk", "plc.uk", "net.uk", "ac.uk", "gov.uk", "sch.uk",
    "com.au", "net.au", "org.au", "edu.au", "gov.au", "asn.au", "id.au", "co.nz", "net.nz",
    "org.nz", "ac.nz", "govt.nz", "geek.nz", "co.jp", "ne.jp", "or.jp", "ac.jp", "go.jp", "ad.jp",
    "ed.jp", "gr.jp", "lg.jp", "co.kr", "or.kr", "ne.kr", "re.kr", "go.kr", "ac.kr", "com.cn",
    "net.cn", "org.cn", "gov.cn", "edu.cn", "com.hk", "org.hk", "net.hk", "edu.hk", "gov.hk",
    "com.tw", "org.tw", "net.tw", "edu.tw", "gov.tw", "com.sg", "org.sg", "net.sg", "edu.sg",
    "gov.sg", "co.in", "net.in", "org.in", "firm.in", "gen.in", "ind.in", "ac.in", "gov.in",
    "co.id", "or.id", "web.id", "ac.id", "go.id", "com.my", "net.my", "org.my", "com.ph", "com.vn",
    "co.th", "in.th", "ac.th", "com.br", "net.br", "org.br", "gov.br", "com.ar", "com.mx",
    "org.mx", "com.co", "com.pe", "com.uy", "com.ve", "com.ec", "co.za", "org.za", "net.za",
    "gov.za", "co.ke", "or.ke", "com.ng", "com.eg", "co.il", "org.il", "ac.il", "com.tr", "org.tr",
    "net.tr", "com.sa", "com.pk", "com.ua", "org.ua", "com.pl", "net.pl", "org.pl", "com.ru",
    "org.ru", "co.at", "or.at", "com.es", "org.es", "com.gr", "com.pt", "co.hu",
    // Shared hosting: anyone gets a subdomain.
    "github.io", "gitlab.io", "herokuapp.com", "appspot.com", "blogspot.com", "azurewebsites.net",
    "cloudfront.net", "netlify.app", "vercel.app", "pages.dev", "workers.dev", "web.app",
    "firebaseapp.com", "glitch.me", "onrender.com", "fly.dev",
];

/// Whether a wildcard's suffix (after `*.`, port ignored) is a public suffix: fewer than two
/// labels, or a listed two-label suffix.
fn wildcard_over_public_suffix(w: &WildOrigin) -> bool {
    let suffix = w.suffix.strip_prefix(b".").unwrap_or(&w.suffix);
    let host = match suffix.iter().position(|&b| b == b':') {
        Some(i) => &suffix[..i],
        None => suffix,
    };
    let labels = host.split(|&b| b == b'.').count();
    labels < 2
        || TWO_LABEL_PUBLIC_SUFFIXES
            .iter()
            .any(|p| p.as_bytes().eq_ignore_ascii_case(host))
}

/// Parses one configured origin: `*`, `scheme://host[:port]` or `scheme://*.host[:port]`.
fn parse_origin(s: &str) -> Result<OriginSpec, String> {
    if s == "*" {
        return Ok(OriginSpec::Any);
    }
    let lower = s.to_ascii_lowercase();
    if lower == "null" {
        return Err(
            "the `null` origin is sent by sandboxed frames and file: pages; allowing it \
                    lets any of them in"
                .into(),
        );
    }
    let shape = "an origin is \"scheme://host[:port]\", like \"https://app.example.com\"";
    let Some((scheme, authority)) = lower.split_once("://") else {
        return Err(format!("{s:?}: {shape}"));
    };
    let scheme_ok = scheme
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic())
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
    if !scheme_ok {
        return Err(format!("{s:?}: {shape}"));
    }
    if authority.contains(['/', '?', '#']) {
        return Err(format!(
            "{s:?}: an origin has no path; drop everything from the first `/` after the host"
        ));
    }
    let (wildcard, authority) = match authority.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, authority),
    };
    if authority.contains('*') {
        return Err(format!(
            "{s:?}: a wildcard may only be the whole first label, like \"https://*.example.com\""
        ));
    }
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let Some((v6, after)) = rest.split_once(']') else {
            return Err(format!("{s:?}: unclosed `[` in the host"));
        };
        if wildcard || v6.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("{s:?}: {shape}"));
        }
        match after {
            "" => (v6, None),
            _ => match after.strip_prefix(':') {
                Some(p) => (v6, Some(p)),
                None => return Err(format!("{s:?}: {shape}")),
            },
        }
    } else {
        match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if !authority.starts_with('[')
        && (host.is_empty()
            || !host.split('.').all(|l| {
                !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            }))
    {
        return Err(format!("{s:?}: invalid host; {shape}"));
    }
    if let Some(p) = port {
        let n: u16 = match p.parse() {
            Ok(n) if n > 0 && !p.starts_with(['0', '+']) => n,
            _ => return Err(format!("{s:?}: invalid port")),
        };
        if (scheme == "https" && n == 443) || (scheme == "http" && n == 80) {
            return Err(format!(
                "{s:?}: browsers never send the default port; write the origin without :{n}"
            ));
        }
    }
    if wildcard {
        Ok(OriginSpec::Wild(WildOrigin {
            prefix: format!("{scheme}://").into_bytes().into(),
            suffix: format!(".{authority}").into_bytes().into(),
        }))
    } else {
        Ok(OriginSpec::Exact(lower.into_bytes().into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compile_str(src: &str) -> Result<CorsPolicy, Vec<(String, String)>> {
        let raw: RawCors = toml::from_str(src).expect("test toml parses");
        let mut errs = Vec::new();
        let p = compile(&raw, &mut |_, f, m| errs.push((f.to_owned(), m)));
        match p {
            Some(p) => {
                assert!(errs.is_empty());
                Ok(p)
            }
            None => {
                assert!(!errs.is_empty(), "None without an error");
                Err(errs)
            }
        }
    }

    fn policy(src: &str) -> CorsPolicy {
        compile_str(src).unwrap_or_else(|e| panic!("{src}: {e:?}"))
    }

    fn first_err(src: &str) -> (String, String) {
        match compile_str(src) {
            Err(e) => e[0].clone(),
            Ok(_) => panic!("expected an error for {src}"),
        }
    }

    /// `(name, value)` of each written header line, checking the line syntax.
    fn lines(out: &[u8]) -> Vec<(String, String)> {
        let s = std::str::from_utf8(out).expect("utf-8");
        assert!(s.is_empty() || s.ends_with("\r\n"), "{s:?}");
        s.split_terminator("\r\n")
            .map(|l| {
                let (n, v) = l.split_once(": ").expect("name: value");
                assert!(!v.contains(['\r', '\n']));
                (n.to_owned(), v.to_owned())
            })
            .collect()
    }

    fn get<'a>(h: &'a [(String, String)], name: &str) -> Option<&'a str> {
        h.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    fn has_cors(h: &[(String, String)]) -> bool {
        h.iter().any(|(n, _)| n.starts_with("access-control-"))
    }

    #[test]
    fn credentialed_wildcards_need_a_registrable_domain() {
        for bad in [
            "https://*.com",
            "https://*.co.uk",
            "https://*.CO.UK",
            "https://*.com.au:8443",
            "https://*.github.io",
        ] {
            let (field, msg) = first_err(&format!("origins = [{bad:?}]\ncredentials = true\n"));
            assert_eq!(field, "origins[0]", "{bad}");
            assert!(msg.contains("public suffix"), "{bad}: {msg}");
            // Without credentials they stay allowed.
            policy(&format!("origins = [{bad:?}]\n"));
        }
        for good in [
            "https://*.example.com",
            "https://*.example.co.uk",
            "https://*.app.github.io",
        ] {
            policy(&format!("origins = [{good:?}]\ncredentials = true\n"));
        }
    }

    #[test]
    fn preflight_matrix() {
        let origins = [
            ("https://app.example.com", true),
            ("HTTPS://APP.example.com", true),
            ("https://a.example.com", true),
            ("https://a.b-c.example.com", true),
            ("https://example.com", false),
            ("https://.example.com", false),
            ("https://a..example.com", false),
            ("https://evil.com", false),
            ("https://app.example.com.evil.com", false),
            ("https://evil.com/.example.com", false),
            ("https://evil.com:1.example.com", false),
            ("http://app.example.com", false),
            ("https://app.example.com:8443", false),
            ("null", false),
            ("", false),
        ];
        let methods = [
            ("PUT", true),
            ("GET", true),
            ("DELETE", false),
            ("put", false),
            ("", false),
        ];
        // (Access-Control-Request-Headers, allowed, echoed Allow-Headers)
        type Case<'a> = (Option<&'a [u8]>, bool, Option<&'a str>);
        let headers: [Case; 6] = [
            (None, true, None),
            (Some(b""), true, None),
            (
                Some(b"X-Custom, content-type"),
                true,
                Some("x-custom, content-type"),
            ),
            (Some(b" x-custom ,,"), true, Some("x-custom")),
            (Some(b"x-custom, x-evil"), false, None),
            (Some(b"x-custom, bad header"), false, None),
        ];
        for credentials in [false, true] {
            let p = policy(&format!(
                "origins = [\"https://app.example.com\", \"https://*.example.com\"]\n\
                 methods = [\"GET\", \"PUT\"]\nheaders = [\"X-Custom\", \"Content-Type\"]\n\
                 credentials = {credentials}\nmax_age = \"10m\"\n"
            ));
            for (origin, origin_ok) in origins {
                for (method, method_ok) in methods {
                    for (req_headers, headers_ok, echoed) in headers {
                        let mut out = Vec::new();
                        let allowed = p.preflight(
                            origin.as_bytes(),
                            method.as_bytes(),
                            req_headers,
                            &mut out,
                        );
                        let h = lines(&out);
                        let case = format!("{credentials} {origin} {method} {req_headers:?}");
                        assert_eq!(allowed, origin_ok && method_ok && headers_ok, "{case}");
                        assert_eq!(
                            get(&h, "vary"),
                            Some("origin, access-control-request-method, access-control-request-headers"),
                            "{case}"
                        );
                        if !allowed {
                            assert!(!has_cors(&h), "{case}: {h:?}");
                            continue;
                        }
                        assert_eq!(
                            get(&h, "access-control-allow-origin"),
                            Some(origin),
                            "{case}"
                        );
                        assert_eq!(
                            get(&h, "access-control-allow-credentials"),
                            credentials.then_some("true"),
                            "{case}"
                        );
                        assert_eq!(get(&h, "access-control-allow-methods"), Some("GET, PUT"));
                        assert_eq!(get(&h, "access-control-allow-headers"), echoed, "{case}");
                        assert_eq!(get(&h, "access-control-max-age"), Some("600"));
                    }
                }
            }
        }
    }

    #[test]
    fn wildcard_any_origin_without_credentials() {
        let p = policy("origins = [\"*\"]\nheaders = [\"*\"]\nmethods = [\"*\"]\n");
        let mut out = Vec::new();
        assert!(p.preflight(
            b"https://x.test",
            b"PATCH",
            Some(b"Authorization, x-y"),
            &mut out
        ));
        let h = lines(&out);
        assert_eq!(get(&h, "access-control-allow-origin"), Some("*"));
        assert_eq!(get(&h, "access-control-allow-methods"), Some("PATCH"));
        assert_eq!(
            get(&h, "access-control-allow-headers"),
            Some("authorization, x-y")
        );
        assert_eq!(
            get(&h, "vary"),
            Some("access-control-request-method, access-control-request-headers")
        );
        assert_eq!(get(&h, "access-control-allow-credentials"), None);
        assert_eq!(get(&h, "access-control-max-age"), None);
        // Request bytes that are not a token are never echoed.
        let mut out = Vec::new();
        assert!(!p.preflight(b"https://x.test", b"GET\r\nx: y", None, &mut out));
        assert!(!has_cors(&lines(&out)));

        // Actual responses: static `*`, no Vary, even without Origin.
        for origin in [Some(&b"https://x.test"[..]), None] {
            let mut out = Vec::new();
            p.actual(origin, &mut out);
            let h = lines(&out);
            assert_eq!(get(&h, "access-control-allow-origin"), Some("*"));
            assert_eq!(get(&h, "vary"), None);
        }
    }

    #[test]
    fn never_star_with_credentials() {
        let (f, m) = first_err("origins = [\"*\"]\ncredentials = true\n");
        assert_eq!(f, "origins[0]");
        assert!(m.contains("credentials"), "{m}");
        for field in ["headers", "methods", "expose_headers"] {
            let src = format!(
                "origins = [\"https://a.test\"]\ncredentials = true\n{field} = [\"x\", \"*\"]\n"
            );
            assert_eq!(first_err(&src).0, format!("{field}[1]"));
        }
        // With credentials every allowed response reflects the exact origin.
        let p = policy(
            "origins = [\"https://*.example.com\"]\ncredentials = true\nexpose_headers = [\"X-Total\"]\n",
        );
        for origin in ["https://a.example.com", "https://b.c.example.com"] {
            let mut out = Vec::new();
            p.actual(Some(origin.as_bytes()), &mut out);
            let h = lines(&out);
            assert_eq!(get(&h, "access-control-allow-origin"), Some(origin));
            assert_eq!(get(&h, "access-control-allow-credentials"), Some("true"));
            assert_eq!(get(&h, "access-control-expose-headers"), Some("x-total"));
            assert_eq!(get(&h, "vary"), Some("origin"));
            assert!(!out.windows(3).any(|w| w == b": *"));
        }
    }

    #[test]
    fn actual_response_headers() {
        let p = policy("origins = [\"https://app.example.com\", \"http://localhost:3000\"]\n");
        let mut out = Vec::new();
        p.actual(Some(b"http://localhost:3000"), &mut out);
        let h = lines(&out);
        assert_eq!(
            get(&h, "access-control-allow-origin"),
            Some("http://localhost:3000")
        );
        assert_eq!(get(&h, "access-control-allow-credentials"), None);
        assert_eq!(get(&h, "access-control-expose-headers"), None);
        assert_eq!(get(&h, "vary"), Some("origin"));
        // Disallowed or absent origin: Vary only, no CORS headers.
        for origin in [
            Some(&b"https://evil.com"[..]),
            Some(b"http://localhost:3001"),
            None,
        ] {
            let mut out = Vec::new();
            p.actual(origin, &mut out);
            let h = lines(&out);
            assert_eq!(
                h,
                vec![("vary".to_owned(), "origin".to_owned())],
                "{origin:?}"
            );
        }
    }

    #[test]
    fn defaults_and_is_preflight() {
        let p = policy("origins = [\"https://a.test\"]\n");
        assert_eq!(p.preflight_status(), 204);
        let mut out = Vec::new();
        assert!(!p.preflight(
            b"https://a.test",
            b"POST",
            Some(b"x-custom"),
            &mut Vec::new()
        ));
        assert!(p.preflight(b"https://a.test", b"POST", None, &mut out));
        assert_eq!(
            get(&lines(&out), "access-control-allow-methods"),
            Some("GET, HEAD, POST")
        );
        assert!(!p.preflight(b"https://a.test", b"PUT", None, &mut Vec::new()));
        let p = policy("origins = [\"https://a.test\"]\npreflight_status = 200\n");
        assert_eq!(p.preflight_status(), 200);

        assert!(is_preflight(Method::Options, Some(b"o"), Some(b"GET")));
        assert!(!is_preflight(Method::Options, None, Some(b"GET")));
        assert!(!is_preflight(Method::Options, Some(b"o"), None));
        assert!(!is_preflight(Method::Get, Some(b"o"), Some(b"GET")));
    }

    #[test]
    fn compile_errors_name_the_field() {
        let cases = [
            ("origins = []\n", "origins"),
            ("origins = [\"https://a.test/\"]\n", "origins[0]"),
            ("origins = [\"a.test\"]\n", "origins[0]"),
            ("origins = [\"null\"]\n", "origins[0]"),
            (
                "origins = [\"https://a.test\", \"https://a.*.test\"]\n",
                "origins[1]",
            ),
            ("origins = [\"https://*.*.test\"]\n", "origins[0]"),
            ("origins = [\"https://*\"]\n", "origins[0]"),
            ("origins = [\"https://a.test:443\"]\n", "origins[0]"),
            ("origins = [\"https://a.test:0\"]\n", "origins[0]"),
            ("origins = [\"https://a.test:99999\"]\n", "origins[0]"),
            ("origins = [\"https://a b.test\"]\n", "origins[0]"),
            ("origins = [\"*\", \"https://a.test\"]\n", "origins"),
            ("origins = [\"*\"]\nmethods = [\"get\"]\n", "methods[0]"),
            (
                "origins = [\"*\"]\nmethods = [\"GET\", \"BAD METHOD\"]\n",
                "methods[1]",
            ),
            ("origins = [\"*\"]\nheaders = [\"x:y\"]\n", "headers[0]"),
            (
                "origins = [\"*\"]\nexpose_headers = [\"\"]\n",
                "expose_headers[0]",
            ),
            (
                "origins = [\"*\"]\npreflight_status = 404\n",
                "preflight_status",
            ),
        ];
        for (src, field) in cases {
            assert_eq!(first_err(src).0, field, "{src}");
        }
        // Several errors are all reported.
        let all = compile_str("origins = [\"null\", \"x\"]\npreflight_status = 1\n")
            .err()
            .unwrap_or_default();
        assert_eq!(all.len(), 3, "{all:?}");
        // Unknown fields are rejected by serde.
        assert!(toml::from_str::<RawCors>("origins = [\"*\"]\norigin = \"x\"\n").is_err());
        // Valid shapes.
        policy(
            "origins = [\"http://[::1]:8080\", \"https://*.a-b.test:8443\", \"HTTPS://A.TEST\"]\n",
        );
    }

    #[test]
    fn wildcard_port_and_case() {
        let p = policy("origins = [\"https://*.Example.com:8443\"]\n");
        assert!(p.origin_allowed(b"https://a.example.com:8443"));
        assert!(p.origin_allowed(b"https://A.EXAMPLE.COM:8443"));
        assert!(!p.origin_allowed(b"https://a.example.com"));
        assert!(!p.origin_allowed(b"https://a.example.com:84430"));
        assert!(!p.origin_allowed(b"https://example.com:8443"));
        assert!(!p.origin_allowed(b"https://a_b.example.com:8443"));
    }
}
